//! One handle's connection to the server: socket timeouts on every call,
//! and retries with backoff until a deadline when the connection is lost.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError};

use super::error::Fail;

/// The first pause between two attempts to reach a server that refused or
/// dropped a connection; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// The longest pause between two attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// A lazily made connection, remade after any transport error.
pub(crate) struct Conn {
    client: Client,
    con: Mutex<Option<Connection>>,
    /// How long one reply may take beyond the time the server was told to
    /// block (socket read and write timeouts, and the connect timeout).
    pub(crate) io_timeout: Duration,
    /// How long an operation keeps trying to reach a server it lost.
    pub(crate) retry_for: Duration,
}

/// Whether `e` says the connection (not the command) failed, so that a new
/// connection may succeed: I/O errors, timeouts, refusals, and a server
/// still loading its data after a restart.
fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("LOADING" | "TRYAGAIN" | "MASTERDOWN"))
}

impl Conn {
    pub(crate) fn new(client: Client, io_timeout: Duration, retry_for: Duration) -> Conn {
        Conn {
            client,
            con: Mutex::new(None),
            io_timeout,
            retry_for,
        }
    }

    /// Runs `f` on the connection, where the server may block for `block`
    /// (0 for a command that does not block). A transport error drops the
    /// connection (a reply may still be on its way: the stream would be out
    /// of step) and `f` is tried again on a new one, pausing with backoff,
    /// until `retry_for` after the first failure or until `deadline`,
    /// whichever is first (at least one attempt is made).
    pub(crate) fn call<R>(
        &self,
        deadline: Option<Instant>,
        block: Duration,
        mut f: impl FnMut(&mut Connection) -> Result<R, RedisError>,
    ) -> Result<R, Fail> {
        let mut give_up: Option<Instant> = None;
        let mut pause = BACKOFF_FIRST;
        let mut slot = self.con.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let outcome = self.attempt(&mut slot, block, &mut f);
            let e = match outcome {
                Ok(r) => return Ok(r),
                Err(e) if transient(&e) => e,
                Err(e) => return Err(Fail::Redis(e)),
            };
            *slot = None;
            let now = Instant::now();
            let limit = *give_up.get_or_insert_with(|| {
                let end = now + self.retry_for;
                deadline.map_or(end, |d| d.min(end))
            });
            if now >= limit {
                return Err(Fail::Unavailable(e));
            }
            std::thread::sleep(pause.min(limit - now));
            pause = (pause * 2).min(BACKOFF_MAX);
        }
    }

    fn attempt<R>(
        &self,
        slot: &mut Option<Connection>,
        block: Duration,
        f: &mut impl FnMut(&mut Connection) -> Result<R, RedisError>,
    ) -> Result<R, RedisError> {
        if slot.is_none() {
            let con = self.client.get_connection_with_timeout(self.io_timeout)?;
            con.set_write_timeout(Some(self.io_timeout))?;
            *slot = Some(con);
        }
        let con = slot.as_mut().expect("connected above");
        // A blocking command's reply may take the whole block; past that,
        // only the usual reply time.
        con.set_read_timeout(Some(block + self.io_timeout))?;
        f(con)
    }
}
