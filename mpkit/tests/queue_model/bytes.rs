//! A `ByteQueue` under test: its messages and how each command runs on it.

use std::fmt;

use mpkit::queue::{ByteQueue, TryGetError};

use crate::TINY;
use crate::check::{Checked, Cmd, Out};
use crate::model::{GetKind, GetOutcome, PutOut, get_kind, put_out};

/// A byte message: its first 8 bytes are its number, the rest a
/// pseudo-random fill from it, so that a swapped or torn message shows.
#[derive(Clone, PartialEq, Eq)]
pub struct Msg(pub Vec<u8>);

pub fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Msg {
    pub fn new(id: u64, len: usize) -> Msg {
        let mut bytes = id.to_le_bytes().to_vec();
        bytes.resize(len.max(8), 0);
        let mut state = id;
        for chunk in bytes[8..].chunks_mut(8) {
            let r = splitmix(&mut state).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        bytes.truncate(len);
        Msg(bytes)
    }
}

impl fmt::Debug for Msg {
    /// Number, length and a checksum, not kilobytes of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut id = [0u8; 8];
        let n = self.0.len().min(8);
        id[..n].copy_from_slice(&self.0[..n]);
        let sum = self.0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        write!(
            f,
            "#{}[{} B, {:04x}]",
            u64::from_le_bytes(id),
            self.0.len(),
            sum & 0xffff
        )
    }
}

impl Checked for ByteQueue {
    type Item = Msg;
    fn make(id: u64, len: usize) -> Msg {
        Msg::new(id, len)
    }
    fn size(m: &Msg) -> usize {
        m.0.len()
    }
    fn try_take(&self) -> Result<Msg, TryGetError> {
        self.try_get().map(Msg)
    }
    fn capacity(&self) -> usize {
        ByteQueue::capacity(self)
    }
    fn maxsize(&self) -> usize {
        ByteQueue::maxsize(self)
    }
    fn len(&self) -> usize {
        ByteQueue::len(self)
    }
    fn is_empty(&self) -> bool {
        ByteQueue::is_empty(self)
    }
    fn is_closed(&self) -> bool {
        ByteQueue::is_closed(self)
    }
    fn is_full(&self) -> Option<bool> {
        None
    }
}

fn got_one(r: Result<Vec<u8>, impl GetOutcome>) -> Out<Msg> {
    Out::Got(r.map(|m| vec![Msg(m)]).map_err(get_kind))
}

/// Runs `cmd` on the real queue.
pub fn exec(q: &ByteQueue, cmd: &Cmd<Msg>) -> Out<Msg> {
    match cmd {
        Cmd::TryPut(m) => Out::Put(put_out(q.try_put(&m.0)).0),
        Cmd::PutTimeout(m) => Out::Put(put_out(q.put_timeout(&m.0, TINY)).0),
        Cmd::Put(m) => Out::Put(put_out(q.put(&m.0)).0),
        Cmd::PutMany(ms) => {
            let slices: Vec<&[u8]> = ms.iter().map(|m| m.0.as_slice()).collect();
            match put_out(q.put_many(&slices)) {
                (PutOut::Ok, _) => Out::PutMany(PutOut::Ok, ms.len()),
                (out, done) => Out::PutMany(out, done.unwrap_or(usize::MAX)),
            }
        }
        Cmd::TryGet => got_one(q.try_get()),
        Cmd::Get => got_one(q.get()),
        Cmd::GetTimeout => got_one(q.get_timeout(TINY)),
        Cmd::GetInto => {
            let mut buf = b"stale bytes".to_vec();
            match q.get_into(&mut buf) {
                Ok(()) => Out::Got(Ok(vec![Msg(buf)])),
                Err(e) if buf.is_empty() => Out::Got(Err(get_kind(e))),
                Err(e) => Out::Got(Err(GetKind::Other(format!(
                    "{e}, and the buffer was not cleared: {buf:?}"
                )))),
            }
        }
        Cmd::GetMany(max) => Out::Got(
            q.get_many(*max)
                .map(|v| v.into_iter().map(Msg).collect())
                .map_err(get_kind),
        ),
        Cmd::GetManyTimeout(_) => unreachable!("generated for typed queues only"),
        Cmd::Len => Out::Len {
            len: q.len(),
            empty: q.is_empty(),
        },
        Cmd::Close => {
            q.close();
            Out::Closed(q.is_closed())
        }
    }
}
