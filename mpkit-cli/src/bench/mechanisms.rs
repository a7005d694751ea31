//! Starting each mechanism: its channels, its child, and this process's
//! ends, as a [`Bench`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use mpkit::msgq::PosixQueue;
use mpkit::net::Listener;
use mpkit::os::{Fifo, Open};
use mpkit::queue::ByteQueue;
use mpkit_bench::ring::{RING_BYTES, SpinRing};

use super::channels::{
    ConnRx, ConnTx, LARGE, OPEN_TIMEOUT, PosixRx, PosixTx, QueueRx, QueueTx, SMALL, Slots, SpinRx,
    SpinTx, StreamRx, StreamTx, SysvRx, SysvTx, spin_side,
};
use super::cleanup::{SysvGuard, leftovers};
use super::cpus::Placement;
use super::worker::{
    Bench, Link, Unblock, fifo_child, pipe_child, posix_child, queue_child, raw_pipe_child,
    ring_child, shm_child, socket_child, spawn, sysv_child,
};
use super::{Context, Result};

/// What the mechanisms share.
pub(super) struct Ctx {
    /// The private temporary directory.
    pub(super) dir: PathBuf,
    /// The Python interpreter, when the Python rows run.
    pub(super) python: Option<String>,
    /// Where this process and the children run.
    pub(super) placement: Option<Placement>,
}

/// Starts the spin-polled rings (the floor).
pub(super) fn start_ring(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (small, large, back) = (
        SpinRing::create().ctx("SharedMemory")?,
        SpinRing::create().ctx("SharedMemory")?,
        SpinRing::create().ctx("SharedMemory")?,
    );
    let theirs = (
        small.try_clone().ctx("clone")?,
        large.try_clone().ctx("clone")?,
        back.try_clone().ctx("clone")?,
    );
    let worker = spawn(ctx, "ring", ring_child, theirs)?;
    let tx = SpinTx {
        small: spin_side(small, SMALL)?,
        large: Some(spin_side(large, LARGE)?),
    };
    let rx = SpinRx {
        small: spin_side(back, SMALL)?,
        large: None,
        buf: vec![0; LARGE],
    };
    Ok(Link::boxed(worker, tx, rx, vec![]))
}

/// Starts mpkit `Pipe`: two `pipe(false)`.
pub(super) fn start_pipe(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a_r, a_w) = mpkit::pipe(false).ctx("pipe")?;
    let (b_r, b_w) = mpkit::pipe(false).ctx("pipe")?;
    let worker = spawn(ctx, "pipe", pipe_child, (a_r, b_w))?;
    Ok(Link::boxed(worker, ConnTx(a_w), ConnRx::new(b_r), vec![]))
}

/// Starts mpkit `ByteQueue`s.
pub(super) fn start_queue(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let a = ByteQueue::with_capacity(0, RING_BYTES).ctx("ByteQueue")?;
    let b = ByteQueue::with_capacity(0, RING_BYTES).ctx("ByteQueue")?;
    let theirs = (a.try_clone().ctx("clone")?, b.try_clone().ctx("clone")?);
    let unblock = vec![
        Unblock::Close(a.try_clone().ctx("clone")?),
        Unblock::Close(b.try_clone().ctx("clone")?),
    ];
    let worker = spawn(ctx, "queue", queue_child, theirs)?;
    let rx = QueueRx(b, Vec::with_capacity(LARGE));
    Ok(Link::boxed(worker, QueueTx(a), rx, unblock))
}

/// Starts a shared `Array` and `Semaphore`s.
pub(super) fn start_shm(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a, b) = (Slots::create()?, Slots::create()?);
    let worker = spawn(ctx, "shm", shm_child, (a.share()?, b.share()?))?;
    Ok(Link::boxed(worker, a, b, vec![]))
}

/// Starts a Unix socket `Connection` through `net::Listener` / `Client`.
pub(super) fn start_socket(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let path = ctx.dir.join("mpkit.sock");
    let address = path
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", path.display()))?
        .to_string();
    let listener = Listener::bind(&address, None).ctx(format!("listen on {address}"))?;
    let worker = spawn(ctx, "socket", socket_child, address)?;
    let conn = listener
        .accept_timeout(OPEN_TIMEOUT)
        .ctx("accept the child's connection")?;
    drop(listener); // removes the socket file
    let tx = conn.try_clone().ctx("clone the connection")?;
    Ok(Link::boxed(worker, ConnTx(tx), ConnRx::new(conn), vec![]))
}

/// Starts two FIFOs in the private directory.
pub(super) fn start_fifo(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a, b) = (ctx.dir.join("a.fifo"), ctx.dir.join("b.fifo"));
    Fifo::create(&a, 0o600).ctx("mkfifo")?;
    Fifo::create(&b, 0o600).ctx("mkfifo")?;
    let worker = spawn(ctx, "fifo", fifo_child, (a.clone(), b.clone()))?;
    // The same order as the child: A, then B.
    let w = Fifo::open_writer(&a, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO A")?;
    let r = Fifo::open_reader(&b, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO B")?;
    // Both ends are open: the names are no longer needed.
    Fifo::remove(&a).ctx("remove FIFO A")?;
    Fifo::remove(&b).ctx("remove FIFO B")?;
    Ok(Link::boxed(worker, StreamTx(w), StreamRx::new(r), vec![]))
}

/// Starts two private System V queues.
pub(super) fn start_sysv(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a, b) = (SysvGuard::new()?, SysvGuard::new()?);
    let (qa, qb) = (a.queue()?, b.queue()?);
    let worker = spawn(ctx, "sysv", sysv_child, (qa, qb))?;
    let unblock = vec![Unblock::Sysv(a), Unblock::Sysv(b)];
    Ok(Link::boxed(
        worker,
        SysvTx(qa),
        SysvRx(qb, Vec::new()),
        unblock,
    ))
}

/// A POSIX queue under a fresh name, registered for cleanup.
pub(super) fn posix_queue(tag: &str) -> Result<PosixQueue> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "/mpkit-bench-{}-{tag}{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    // At most 10 messages (the usual limit for unprivileged users).
    let depth = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 10);
    leftovers(|l| {
        let q = PosixQueue::builder()
            .max_messages(depth)
            .max_size(LARGE)
            .create(&name)
            .ctx("create a POSIX queue")?;
        l.posix.push(name);
        Ok(q)
    })
}

/// Removes a POSIX queue's name (the queue lives on while open).
pub(super) fn unlink_posix(q: &mut PosixQueue) {
    let name = q.name().to_string();
    let _ = PosixQueue::unlink(&name);
    q.keep(); // already unlinked
    leftovers(|l| l.posix.retain(|n| n != &name));
}

/// Starts two POSIX queues.
pub(super) fn start_posix(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let mut a = posix_queue("a")?;
    let b = posix_queue("b");
    let mut b = match b {
        Ok(b) => b,
        Err(e) => {
            unlink_posix(&mut a);
            return Err(e);
        }
    };
    let theirs = (
        PosixQueue::open(a.name()).ctx("open the POSIX queue"),
        PosixQueue::open(b.name()).ctx("open the POSIX queue"),
    );
    let worker = match theirs {
        (Ok(ta), Ok(tb)) => spawn(ctx, "posix", posix_child, (ta, tb)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    // Open on both sides (or failed): the names are no longer needed.
    unlink_posix(&mut a);
    unlink_posix(&mut b);
    Ok(Link::boxed(
        worker?,
        PosixTx(a),
        PosixRx(b, Vec::new()),
        vec![],
    ))
}

/// Starts two raw `os::pipe()`s.
pub(super) fn start_raw_pipe(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a_r, a_w) = mpkit::os::pipe().ctx("pipe")?;
    let (b_r, b_w) = mpkit::os::pipe().ctx("pipe")?;
    let worker = spawn(ctx, "raw-pipe", raw_pipe_child, (a_r, b_w))?;
    Ok(Link::boxed(
        worker,
        StreamTx(a_w),
        StreamRx::new(b_r),
        vec![],
    ))
}
