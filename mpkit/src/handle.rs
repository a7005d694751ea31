//! Passing descriptors inside serde values.
//!
//! Every mpkit handle (a [`Connection`](crate::Connection) today; queues,
//! shared values and locks later) is backed by one or more file descriptors.
//! A handle serializes as an *index* into the list of descriptors that travel
//! beside the message: as `SCM_RIGHTS` on a Unix socket, which is how both
//! [`Process`](crate::Process) arguments and `Connection::send` carry them.
//!
//! The list lives in a thread-local context that exists only while mpkit
//! itself encodes or decodes a message: [`collect`] around encoding,
//! [`provide`] around decoding. Serializing a handle anywhere else (say
//! `serde_json::to_string(&conn)`) is an error, not a dangling number.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::CodecError;

/// The newtype name handles serialize under.
pub(crate) const HANDLE_NAME: &str = "$mpkit::fd";

thread_local! {
    /// Descriptors referenced by the message being encoded on this thread:
    /// duplicates, so they stay valid until the message is sent whatever the
    /// value's `Serialize` does with its own handles meanwhile.
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors that arrived with the message being decoded on this thread.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// Why the last handle failed to deserialize: formats such as postcard
    /// drop custom error messages, so [`provide`] puts it back.
    static HANDLE_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Puts a thread-local back as it was, even if the code in between panics.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    saved: Option<Option<T>>,
}

impl<T: 'static> Restore<T> {
    /// Installs `value`, remembering what was there.
    fn install(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Restore<T> {
        let saved = key.with(|k| k.borrow_mut().replace(value));
        Restore {
            key,
            saved: Some(saved),
        }
    }

    /// Restores the saved value and returns the one installed.
    fn finish(mut self) -> Option<T> {
        let saved = self.saved.take().flatten();
        self.key
            .with(|k| std::mem::replace(&mut *k.borrow_mut(), saved))
    }
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            self.key.with(|k| *k.borrow_mut() = saved);
        }
    }
}

/// Runs `encode` with a fresh outgoing list, returning its result and
/// duplicates of the descriptors the handles in it referenced (in index
/// order), to be sent with the message.
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outgoing = Restore::install(&OUTGOING, Vec::new());
    let result = encode();
    (result, outgoing.finish().unwrap_or_default())
}

/// As [`collect`], adding to `fds` (the handles' indices go on from its
/// end): one list for a message encoded in several steps, with code that
/// must not add to it (a user's function) run between them.
pub(crate) fn collect_into<R>(fds: &mut Vec<OwnedFd>, encode: impl FnOnce() -> R) -> R {
    let outgoing = Restore::install(&OUTGOING, std::mem::take(fds));
    let result = encode();
    *fds = outgoing.finish().unwrap_or_default();
    result
}

/// Takes back (and closes) the descriptor the last handle serialized on
/// this thread added to the outgoing list: for a format that refused the
/// handle after it serialized (the pool's fixed-width columns), so that
/// the value, serialized again, adds it once.
pub(crate) fn take_back_last() {
    OUTGOING.with(|o| {
        if let Some(list) = o.borrow_mut().as_mut() {
            list.pop();
        }
    });
}

/// Runs `decode` with `fds` available to handles being deserialized; any
/// descriptor no handle claimed is closed afterwards. If decoding failed
/// because of a handle, the error says so.
pub(crate) fn provide<T>(
    fds: Vec<OwnedFd>,
    decode: impl FnOnce() -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let incoming = Restore::install(&INCOMING, fds.into_iter().map(Some).collect());
    HANDLE_ERROR.with(|e| e.borrow_mut().take());
    let result = decode();
    drop(incoming.finish());
    let handle_error = HANDLE_ERROR.with(|e| e.borrow_mut().take());
    match (result, handle_error) {
        (Err(e), Some(why)) => Err(CodecError::new(e.codec(), why)),
        (r, _) => r,
    }
}

/// Serializes `fd` as a handle index. Fails outside an mpkit send.
pub(crate) fn serialize_fd<S: Serializer>(fd: BorrowedFd<'_>, s: S) -> Result<S::Ok, S::Error> {
    let index = OUTGOING.with(|o| {
        o.borrow_mut().as_mut().map(|list| {
            let dup = crate::sys::dup(fd)?;
            list.push(dup);
            Ok::<usize, std::io::Error>(list.len() - 1)
        })
    });
    match index {
        Some(Ok(i)) => s.serialize_newtype_struct(HANDLE_NAME, &(i as u32)),
        Some(Err(e)) => Err(S::Error::custom(format_args!(
            "could not duplicate a handle's descriptor: {e}"
        ))),
        None => Err(S::Error::custom(
            "mpkit handles can only be serialized by mpkit itself \
             (Connection::send, Process arguments and results)",
        )),
    }
}

/// Deserializes a handle index and takes ownership of the descriptor it
/// names. Fails outside an mpkit receive, or if the index is out of range or
/// already taken.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename = "$mpkit::fd")]
    struct Index(u32);
    let Index(i) = Index::deserialize(d)?;
    INCOMING.with(|inc| {
        let mut inc = inc.borrow_mut();
        let table = inc.as_mut().ok_or_else(|| {
            handle_error("mpkit handles can only be deserialized by mpkit itself".into())
        })?;
        let available = table.len();
        table
            .get_mut(i as usize)
            .and_then(Option::take)
            .ok_or_else(|| {
                handle_error(format!(
                    "handle refers to descriptor {i}, but the message carried {available} \
                     (or it was already taken)"
                ))
            })
    })
}

fn handle_error<E: serde::de::Error>(why: String) -> E {
    let err = E::custom(&why);
    HANDLE_ERROR.with(|e| *e.borrow_mut() = Some(why));
    err
}

/// A borrowed descriptor that serializes as an mpkit handle.
pub(crate) struct BorrowedHandle<'a>(pub(crate) BorrowedFd<'a>);

impl Serialize for BorrowedHandle<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0, s)
    }
}

/// A descriptor that serializes as an mpkit handle: the building block for
/// the `Serialize`/`Deserialize` impls of every handle type.
#[derive(Debug)]
pub(crate) struct FdHandle(pub(crate) OwnedFd);

impl Serialize for FdHandle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::os::fd::AsFd;
        serialize_fd(self.0.as_fd(), s)
    }
}

impl<'de> Deserialize<'de> for FdHandle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_fd(d).map(FdHandle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Postcard};
    use std::os::fd::AsRawFd;

    #[test]
    fn handles_round_trip_through_the_context() {
        let (a, _b) = crate::sys::pipe().unwrap();
        let h = FdHandle(a);
        let mut buf = Vec::new();
        let (r, mut fds) = collect(|| Postcard::encode(&(1u8, &h), &mut buf));
        r.unwrap();
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0].as_raw_fd(), h.0.as_raw_fd(), "a duplicate travels");
        let dup = fds.pop().unwrap();
        let dup_raw = dup.as_raw_fd();
        let (n, got): (u8, FdHandle) = provide(vec![dup], || Postcard::decode(&buf)).unwrap();
        assert_eq!(n, 1);
        assert_eq!(got.0.as_raw_fd(), dup_raw);
    }

    #[test]
    fn serializing_outside_a_send_is_an_error() {
        let (a, _b) = crate::sys::pipe().unwrap();
        let err = serde_json::to_string(&FdHandle(a)).unwrap_err();
        assert!(err.to_string().contains("only be serialized by mpkit"));
    }

    #[test]
    fn an_index_out_of_range_is_an_error() {
        let mut buf = Vec::new();
        let (r, _) = collect(|| {
            let (a, _b) = crate::sys::pipe().unwrap();
            Postcard::encode(&FdHandle(a), &mut buf)
        });
        r.unwrap();
        let err = provide(vec![], || Postcard::decode::<FdHandle>(&buf)).unwrap_err();
        assert!(err.to_string().contains("carried 0"), "{err}");
    }
}
