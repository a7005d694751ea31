//! A mechanism at work: the child's loop (it runs in a re-executed copy of
//! this binary) and this process's side, which the measurements drive
//! through [`Bench`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mpkit::msgq::{PosixQueue, SysvQueue};
use mpkit::net::Client;
use mpkit::os::{Fifo, Open, PipeReader, PipeWriter};
use mpkit::process::{Builder, JoinError};
use mpkit::queue::ByteQueue;
use mpkit::shm::SharedMemory;
use mpkit::{Connection, Process};
use serde::{Deserialize, Serialize};

use super::channels::{
    ACK_TIMEOUT, ConnRx, ConnTx, LARGE, OPEN_TIMEOUT, PAYLOAD, PosixRx, PosixTx, QueueRx, QueueTx,
    Rx, SMALL, Slots, SlotsArgs, SpinRx, SpinTx, StreamRx, StreamTx, SysvRx, SysvTx, Tx, spin_side,
};
use super::cleanup::SysvGuard;
use super::cpus::set_affinity;
use super::mechanisms::Ctx;
use super::{Context, Result};

/// What the control connection tells a child to do next.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) enum Cmd {
    /// Receive `n` messages of `size` bytes on A.
    Sink { n: u64, size: usize },
    /// Send each of the next `n` 64-byte messages on A back on B.
    Echo { n: u64 },
}

/// What a child returns: why it failed, if it did.
pub(super) type ChildResult = std::result::Result<(), String>;

/// A child's loop: runs each command, then acknowledges it with its count;
/// returns at end of file on the control connection.
pub(super) fn serve(mut ctl: Connection, mut rx: impl Rx, mut tx: impl Tx) -> ChildResult {
    loop {
        let n = match ctl.recv::<Cmd>() {
            Ok(Cmd::Sink { n, size }) => {
                for _ in 0..n {
                    rx.recv(size)?;
                }
                n
            }
            Ok(Cmd::Echo { n }) => {
                for _ in 0..n {
                    let msg = rx.recv(SMALL)?;
                    tx.send(msg)?;
                }
                n
            }
            Err(e) if e.is_eof() => return Ok(()),
            Err(e) => return Err(format!("control connection: {e}")),
        };
        ctl.send(&n).ctx("control connection")?;
    }
}

/// Child: over two one-way `pipe(false)` connections.
pub(super) fn pipe_child((ctl, (a, b)): (Connection, (Connection, Connection))) -> ChildResult {
    serve(ctl, ConnRx::new(a), ConnTx(b))
}

/// Child: connects to this process's Unix socket listener.
pub(super) fn socket_child((ctl, address): (Connection, String)) -> ChildResult {
    let conn = Client::connect(&address, None).ctx(format!("connect to {address}"))?;
    let back = conn.try_clone().ctx("clone the connection")?;
    serve(ctl, ConnRx::new(conn), ConnTx(back))
}

/// Child: opens FIFO A for reading, then FIFO B for writing.
pub(super) fn fifo_child((ctl, (a, b)): (Connection, (PathBuf, PathBuf))) -> ChildResult {
    let r = Fifo::open_reader(&a, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO A")?;
    let w = Fifo::open_writer(&b, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO B")?;
    serve(ctl, StreamRx::new(r), StreamTx(w))
}

/// Child: over two raw pipes, no framing.
pub(super) fn raw_pipe_child((ctl, (r, w)): (Connection, (PipeReader, PipeWriter))) -> ChildResult {
    serve(ctl, StreamRx::new(r), StreamTx(w))
}

/// Child: over two `ByteQueue`s.
pub(super) fn queue_child((ctl, (a, b)): (Connection, (ByteQueue, ByteQueue))) -> ChildResult {
    serve(ctl, QueueRx(a, Vec::with_capacity(LARGE)), QueueTx(b))
}

/// Child: over two rings of [`Slots`].
pub(super) fn shm_child((ctl, (a, b)): (Connection, (SlotsArgs, SlotsArgs))) -> ChildResult {
    serve(ctl, Slots::attach(a), Slots::attach(b))
}

/// Child: over two System V queues.
pub(super) fn sysv_child((ctl, (a, b)): (Connection, (SysvQueue, SysvQueue))) -> ChildResult {
    serve(ctl, SysvRx(a, Vec::new()), SysvTx(b))
}

/// Child: over two POSIX queues (handles opened for it; the names are
/// removed once it has them).
pub(super) fn posix_child((ctl, (a, b)): (Connection, (PosixQueue, PosixQueue))) -> ChildResult {
    serve(ctl, PosixRx(a, Vec::new()), PosixTx(b))
}

/// Rings A (64 B and 4 KiB slots) and B (64 B slots).
pub(super) type RingArgs = (SharedMemory, SharedMemory, SharedMemory);

/// Child: over the spin rings.
pub(super) fn ring_child((ctl, (small, large, back)): (Connection, RingArgs)) -> ChildResult {
    let rx = SpinRx {
        small: spin_side(small, SMALL)?,
        large: Some(spin_side(large, LARGE)?),
        buf: vec![0; LARGE],
    };
    let tx = SpinTx {
        small: spin_side(back, SMALL)?,
        large: None,
    };
    serve(ctl, rx, tx)
}

/// What the measurement loop needs of a mechanism.
pub(super) trait Bench {
    /// Sends `n` messages of `size` bytes; the time until the child has
    /// them all.
    fn throughput(&mut self, n: u64, size: usize) -> Result<Duration>;
    /// `n` round trips of a 64-byte message; adds each one's nanoseconds
    /// to `samples`.
    fn roundtrip(&mut self, n: u64, samples: &mut Vec<u32>) -> Result;
    /// Stops the child (and anything else) and reports how it ended.
    fn finish(self: Box<Self>) -> Result;
}

/// A long-lived child and its control connection. Dropping it closes the
/// connection and waits a moment for the child to end, then kills it.
pub(super) struct Worker {
    pub(super) ctl: Option<Connection>,
    pub(super) child: Option<Process<ChildResult>>,
}

/// Starts `f((its end of a new control connection, args))` as a daemon
/// child (killed if this process dies), on the children's CPU.
pub(super) fn spawn<A>(
    ctx: &Ctx,
    name: &str,
    f: fn((Connection, A)) -> ChildResult,
    args: A,
) -> Result<Worker>
where
    A: Serialize + serde::de::DeserializeOwned,
{
    let (ctl, theirs) = mpkit::pipe(true).ctx("control connection")?;
    let child = Builder::new()
        .name(format!("mpkit-bench-{name}"))
        .daemon(true)
        .spawn(f, (theirs, args))
        .ctx("start the child process")?;
    let pid = child.pid();
    let worker = Worker {
        ctl: Some(ctl),
        child: Some(child),
    };
    if let Some(p) = ctx.placement {
        set_affinity(pid, &[p.child_cpu])?;
    }
    Ok(worker)
}

impl Worker {
    pub(super) fn ctl(&mut self) -> Result<&mut Connection> {
        self.ctl
            .as_mut()
            .ok_or_else(|| "the control connection is closed".to_string())
    }

    /// Tells the child `cmd`.
    pub(super) fn start(&mut self, cmd: Cmd) -> Result {
        self.ctl()?.send(&cmd).ctx("control connection")
    }

    /// Waits for the child's acknowledgement of `n` messages.
    pub(super) fn ack(&mut self, n: u64) -> Result {
        let got: u64 = self
            .ctl()?
            .recv_timeout(ACK_TIMEOUT)
            .ctx("waiting for the child")?;
        if got == n {
            Ok(())
        } else {
            Err(format!("the child acknowledged {got} of {n} messages"))
        }
    }

    /// `e`, with the child's own error if it has ended.
    pub(super) fn explain(&mut self, e: String) -> String {
        let ended = self.child.as_mut().is_some_and(|c| !c.is_alive());
        if !ended {
            return e;
        }
        match self.child.take().map(Process::join) {
            Some(Ok(Err(why))) => format!("{e} (the child: {why})"),
            Some(Err(why)) => format!("{e} (the child: {why})"),
            _ => e,
        }
    }

    /// Closes the control connection (the child's loop returns) and waits
    /// for the child.
    pub(super) fn finish(mut self) -> Result {
        self.ctl = None;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        match child.join_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(format!("the child failed: {why}")),
            Err(JoinError::Timeout) => {
                let _ = child.kill();
                let _ = child.join();
                Err("the child did not stop; it was killed".into())
            }
            Err(e) => Err(format!("the child: {e}")),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.ctl = None;
        if let Some(mut child) = self.child.take() {
            if let Err(JoinError::Timeout) = child.join_timeout(Duration::from_secs(2)) {
                let _ = child.kill();
                let _ = child.join();
            }
        }
    }
}

/// What wakes a child stuck on a channel when a bench ends early.
pub(super) enum Unblock {
    /// Closing a queue ends a waiting `get`.
    Close(ByteQueue),
    /// Removing a System V queue ends a waiting `msgrcv` (and removes it).
    Sysv(SysvGuard),
}

/// A mechanism between this process (`tx` on A, `rx` on B) and a worker.
pub(super) struct Link<T, R> {
    pub(super) tx: Option<T>,
    pub(super) rx: Option<R>,
    pub(super) worker: Option<Worker>,
    pub(super) unblock: Vec<Unblock>,
}

impl<T: Tx + 'static, R: Rx + 'static> Link<T, R> {
    pub(super) fn boxed(worker: Worker, tx: T, rx: R, unblock: Vec<Unblock>) -> Box<dyn Bench> {
        Box::new(Link {
            tx: Some(tx),
            rx: Some(rx),
            worker: Some(worker),
            unblock,
        })
    }

    pub(super) fn parts(&mut self) -> Result<(&mut Worker, &mut T, &mut R)> {
        match (&mut self.worker, &mut self.tx, &mut self.rx) {
            (Some(w), Some(tx), Some(rx)) => Ok((w, tx, rx)),
            _ => Err("the bench is closed".into()),
        }
    }

    pub(super) fn explain(&mut self, e: String) -> String {
        match &mut self.worker {
            Some(w) => w.explain(e),
            None => e,
        }
    }
}

impl<T: Tx + 'static, R: Rx + 'static> Bench for Link<T, R> {
    fn throughput(&mut self, n: u64, size: usize) -> Result<Duration> {
        let (worker, tx, _) = self.parts()?;
        let result = (|| {
            worker.start(Cmd::Sink { n, size })?;
            let start = Instant::now();
            for _ in 0..n {
                tx.send(&PAYLOAD[..size])?;
            }
            worker.ack(n)?;
            Ok(start.elapsed())
        })();
        result.map_err(|e| self.explain(e))
    }

    fn roundtrip(&mut self, n: u64, samples: &mut Vec<u32>) -> Result {
        let (worker, tx, rx) = self.parts()?;
        let result = (|| {
            worker.start(Cmd::Echo { n })?;
            for _ in 0..n {
                let start = Instant::now();
                tx.send(&PAYLOAD[..SMALL])?;
                rx.recv(SMALL)?;
                samples.push(nanos(start.elapsed()));
            }
            worker.ack(n)
        })();
        result.map_err(|e| self.explain(e))
    }

    fn finish(mut self: Box<Self>) -> Result {
        self.tx = None;
        self.rx = None;
        match self.worker.take() {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}

impl<T, R> Drop for Link<T, R> {
    fn drop(&mut self) {
        for u in &mut self.unblock {
            match u {
                Unblock::Close(q) => q.close(),
                Unblock::Sysv(g) => g.remove(),
            }
        }
        self.tx = None;
        self.rx = None;
        self.worker = None; // closes the control connection; kills a stuck child
    }
}

pub(super) fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}
