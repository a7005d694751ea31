//! The pool's dispatcher: one thread that owns the workers.
//!
//! It is the only code that talks to workers. It assigns each queued chunk
//! to one idle worker, so at every moment it knows which chunk each worker
//! holds, and it sleeps in one `poll` over everything that can happen:
//!
//! - the wake-up flag, an eventfd (a chunk was queued where none was, or
//!   the pool was closed or terminated),
//! - each worker's socket: readable (a chunk is done; the initializer
//!   failed) and, while a message to it is part-sent, writable,
//! - each worker's pidfd (the worker died: its chunk fails with how it
//!   died, or is queued again while it has retries left, and a replacement
//!   starts),
//! - the earliest task deadline (that worker is killed; its chunk fails
//!   with `TimedOut`), the next retry to start a missing worker, and the
//!   moment tasks stop waiting for one.
//!
//! Nothing it does waits on a worker. Messages go out with sends that
//! never block: what a worker's socket does not take now (a worker stopped
//! with `SIGSTOP` reads nothing) stays in that worker's [`Outgoing`] until
//! `poll` says the socket is writable, so a deadline still fires, and
//! terminate still kills (SIGKILL ends a stopped process too) and reaps,
//! whatever a worker does.
//!
//! Workers are spawned from this thread, and only from it, with
//! `PR_SET_PDEATHSIG` = SIGKILL: the kernel kills them when this thread
//! ends, so when the pool's process dies, even of SIGKILL, even a worker
//! that is stopped dies with it (the daemon watcher thread of a stopped
//! worker cannot run). The signal fires when the *thread* ends, and this
//! thread ends only after it has reaped every worker (`finish`,
//! `terminate`, or the `Dispatcher`'s drop after a panic), so it never
//! kills a worker the pool still owns.
//!
//! A worker that cannot be started (out of descriptors or processes) is
//! retried later (`workers.rs`), with a backoff from `START_RETRY_FIRST`
//! doubling to `START_RETRY_MAX`. Meanwhile queued chunks run on the
//! workers there are; while there is none, they wait up to the pool's
//! `worker_start_timeout` (no wait when the error cannot pass by itself)
//! and then fail with `WorkerStart`, as do chunks queued while that lasts
//! after one more try to start a worker. A result whose handles were lost
//! for want of descriptors fails its chunk alone (`ResultHandlesLost`):
//! the worker is fine.
//!
//! Each chunk handed out gets the next task number, which the worker's
//! reply echoes: a reply is taken only as the result of the chunk its
//! worker holds under that number. Any other reply kills the worker (its
//! chunk fails with `BadReply`, or is queued again while it has retries
//! left). Workers that die before their initializer returned, `INIT_DEATHS`
//! in a row with none getting ready in between, fail the pool as an
//! initializer that panicked does (one such death alone may be a stray
//! kill, and is replaced).
//!
//! Should the dispatcher itself panic, its workers are killed and every
//! held, queued and later chunk fails with `PoolBroken`: no caller waits
//! for ever.
//! Results go to the [`Batch`] their chunk came from; the caller's thread
//! decodes them.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::batch::{Batch, Reply};
use super::spare;
use super::wire::NUMBER_AT;
use super::{TaskError, WorkerExit};
use crate::connection::{Outgoing, RawConnection};
use crate::process::child::panic_message;
use crate::process::{self, JoinError, Process};
use crate::shm::SharedMemory;
use crate::sys::{self, Ready};

mod replies;
mod workers;

use workers::{Sending, Starving};

/// A chunk of tasks on its way to a worker.
pub(super) struct Chunk {
    /// The whole task message (see `wire`).
    pub message: Vec<u8>,
    /// The items' descriptors; kept until the chunk is done, for retries.
    pub fds: Vec<OwnedFd>,
    /// How many items the message holds.
    pub items: usize,
    /// Where the result goes, and under which number.
    pub batch: Arc<Batch>,
    pub seq: u64,
    /// How many more times it may run after its worker dies.
    pub retries: u32,
}

impl Chunk {
    fn fail(self, error: TaskError) {
        self.batch.deliver(self.seq, Err(error));
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        spare::recycle(std::mem::take(&mut self.message));
    }
}

/// How many workers in a row may die in their initializer (none getting
/// ready in between) before the pool gives up on it.
const INIT_DEATHS: u32 = 3;

/// What every worker gets, fixed when the pool is built.
pub(super) struct Config {
    pub processes: usize,
    pub max_tasks_per_child: Option<u64>,
    pub task_timeout: Option<Duration>,
    pub name: String,
    pub retries: u32,
    /// How long queued chunks wait for a worker while none runs and none
    /// can start.
    pub worker_start_timeout: Duration,
    /// The initializer message and its descriptors.
    pub init: Option<super::InitMessage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Open,
    Closed,
    Terminating,
}

struct State {
    queue: VecDeque<Chunk>,
    phase: Phase,
    /// Set when the pool can run nothing more (the initializer failed, the
    /// dispatcher failed): every queued and later chunk fails with it.
    failure: Option<TaskError>,
}

/// What the pool's handles and the dispatcher share.
pub(super) struct Shared {
    state: Mutex<State>,
    /// The dispatcher's wake-up: an eventfd, raised by anyone, lowered by
    /// the dispatcher once `poll` saw it. Not a pipe: writing a pipe is a
    /// *synchronous* wake-up, which tells the scheduler the writer is
    /// about to sleep, so it ran the dispatcher on the caller's CPU,
    /// behind the caller still encoding the rest of a map (up to 0.2 ms
    /// a map with the other CPU idle). An eventfd's wake-up is not, and
    /// unlike a pipe it has no reader to lose (no `SIGPIPE` after the
    /// dispatcher exited).
    wake: OwnedFd,
    pub config: Config,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues chunks, or fails them at once when the pool takes no more.
    pub(super) fn submit(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let (wake, refused) = {
            let mut st = self.lock();
            let refusal = match (&st.failure, st.phase) {
                (Some(e), _) => Some(e.clone()),
                (None, Phase::Open) => None,
                (None, Phase::Closed) => Some(TaskError::PoolClosed),
                (None, Phase::Terminating) => Some(TaskError::PoolTerminated),
            };
            match refusal {
                None => {
                    // Only a queue that was empty needs a wake-up: chunks
                    // left queued mean every worker is busy, and the
                    // dispatcher looks at the queue again as each replies.
                    let was_empty = st.queue.is_empty();
                    st.queue.extend(chunks);
                    (was_empty, None)
                }
                Some(e) => (false, Some((e, chunks.into_iter().collect::<Vec<_>>()))),
            }
        };
        if wake {
            self.wake();
        }
        if let Some((e, chunks)) = refused {
            chunks.into_iter().for_each(|c| c.fail(e.clone()));
        }
    }

    /// Moves the pool to `phase` (never back towards `Open`).
    pub(super) fn set_phase(&self, phase: Phase) {
        {
            let mut st = self.lock();
            if phase == Phase::Terminating || st.phase == Phase::Open {
                st.phase = phase;
            }
        }
        self.wake();
    }

    fn wake(&self) {
        // Fails only on a counter at its maximum, which is raised anyway.
        let _ = sys::raise_ready_flag(self.wake.as_fd());
    }

    /// Lowers the wake-up flag (after `poll` saw it raised).
    fn woken(&self) {
        sys::lower_ready_flag(self.wake.as_fd());
    }
}

/// One worker process as the dispatcher sees it.
struct Worker {
    process: Process<()>,
    /// `None` once retired (the worker then exits at end of file) or once
    /// the socket reached end of file.
    conn: Option<RawConnection>,
    held: Option<Held>,
    /// A message part-sent (the socket was full): the rest goes when the
    /// socket is writable.
    out: Option<(Outgoing, Sending)>,
    chunks_done: u64,
    /// Its initializer has returned (or there is none): only then does it
    /// get a chunk, so the initializer message and a chunk are never on
    /// their way at once.
    ready: bool,
    /// Where its chunks' payloads and replies' bodies go (see `wire`).
    arena: Option<SharedMemory>,
    /// The message saying the held chunk's payload is in the arena.
    short: Vec<u8>,
}

struct Held {
    chunk: Chunk,
    /// The task number its message went out with.
    number: u64,
    deadline: Option<Instant>,
    allowed: Duration,
    timed_out: bool,
    /// Set when the worker sent a reply that was not for this chunk (the
    /// worker was killed): what was wrong.
    bad_reply: Option<String>,
}

/// Starts the workers and the dispatcher thread.
pub(super) fn start(
    config: Config,
) -> Result<(Arc<Shared>, std::thread::JoinHandle<()>), super::BuildError> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            phase: Phase::Open,
            failure: None,
        }),
        wake: sys::ready_flag()?,
        config,
    });
    let mut d = Dispatcher {
        shared: Arc::clone(&shared),
        workers: Vec::new(),
        started: 0,
        next_number: 1,
        init_deaths: 0,
        start_failures: 0,
        retry_at: None,
        starving: None,
    };
    let guarded = Arc::clone(&shared);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("mpkit-pool".into())
        .spawn(move || {
            // A panic drops `d`, which kills its workers and fails their
            // chunks; what is queued, and everything later, fails here.
            let run = move || {
                // The first workers start here too: every worker's parent
                // thread is this one (see the module docs).
                let started = (0..d.shared.config.processes).try_for_each(|_| d.start_worker());
                let ok = started.is_ok();
                let _ = started_tx.send(started);
                if ok {
                    d.run();
                }
                // Otherwise dropping `d` kills and reaps those started.
            };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(run)) {
                broken(&guarded, &panic_message(payload));
            }
        })?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok((shared, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e.into())
        }
        Err(_) => {
            let _ = thread.join();
            Err(
                io::Error::other("the pool's dispatcher thread panicked while starting workers")
                    .into(),
            )
        }
    }
}

/// The dispatcher panicked: every queued and later chunk fails.
fn broken(shared: &Shared, why: &str) {
    let queued: Vec<Chunk> = {
        let mut st = shared.lock();
        st.failure.get_or_insert(TaskError::PoolBroken {
            message: format!("the pool's dispatcher thread panicked: {why}"),
        });
        st.queue.drain(..).collect()
    };
    let error = shared.lock().failure.clone();
    if let Some(error) = error {
        queued.into_iter().for_each(|c| c.fail(error.clone()));
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    /// Workers started so far (names are numbered from 1).
    started: u64,
    /// The task number the next chunk handed out gets (0 is the
    /// initializer's).
    next_number: u64,
    /// Workers that died in their initializer since one last got ready.
    init_deaths: u32,
    /// Worker starts that failed since one last succeeded.
    start_failures: u32,
    /// When a missing worker may be started again after a failure.
    retry_at: Option<Instant>,
    /// Set while no worker runs and starting one failed.
    starving: Option<Starving>,
}

impl Dispatcher {
    fn run(mut self) {
        loop {
            self.maintain();
            let (phase, closed_and_empty, fresh) = self.assign();
            if phase == Phase::Terminating {
                return self.terminate();
            }
            for i in fresh {
                self.send(i);
            }
            if closed_and_empty && self.workers.iter().all(|w| w.held.is_none()) {
                return self.finish();
            }
            if let Err(e) = self.wait_and_handle() {
                // poll itself failing leaves nothing to wait with: fail
                // everything rather than spin or hang.
                self.shared.lock().failure = Some(TaskError::PoolBroken {
                    message: format!("the pool's dispatcher could not wait (poll): {e}"),
                });
                return self.terminate();
            }
        }
    }

    /// Hands queued chunks to idle workers. Returns the phase, whether the
    /// pool is closed with nothing queued, and the workers given a chunk.
    fn assign(&mut self) -> (Phase, bool, Vec<usize>) {
        let mut st = self.shared.lock();
        let mut fresh = Vec::new();
        if st.phase != Phase::Terminating {
            if let Some(e) = st.failure.clone() {
                st.queue.drain(..).for_each(|c| c.fail(e.clone()));
            }
            for (i, w) in self.workers.iter_mut().enumerate() {
                if w.held.is_some() || w.conn.is_none() || !w.ready {
                    continue;
                }
                let chunk = loop {
                    match st.queue.pop_front() {
                        Some(c) if !c.batch.start() => continue,
                        other => break other,
                    }
                };
                let Some(mut chunk) = chunk else { break };
                let items = u32::try_from(chunk.items.max(1)).unwrap_or(u32::MAX);
                let allowed = self
                    .shared
                    .config
                    .task_timeout
                    .map(|t| t.saturating_mul(items));
                let number = self.next_number;
                self.next_number += 1;
                chunk.message[NUMBER_AT].copy_from_slice(&number.to_le_bytes());
                w.held = Some(Held {
                    deadline: allowed.and_then(|a| Instant::now().checked_add(a)),
                    allowed: allowed.unwrap_or_default(),
                    chunk,
                    number,
                    timed_out: false,
                    bad_reply: None,
                });
                fresh.push(i);
            }
        }
        (
            st.phase,
            st.phase == Phase::Closed && st.queue.is_empty(),
            fresh,
        )
    }

    /// When `poll` must return even if nothing happens: the earliest task
    /// deadline, start retry, or end of the wait for a worker.
    fn next_deadline(&self) -> Option<Instant> {
        let tasks = self
            .workers
            .iter()
            .filter_map(|w| w.held.as_ref().filter(|h| !h.timed_out)?.deadline);
        let retry = self
            .retry_at
            .filter(|_| self.running() < self.shared.config.processes);
        let starving = self.starving.as_ref().and_then(|s| {
            s.since
                .checked_add(self.shared.config.worker_start_timeout)
                .filter(|_| s.transient)
        });
        tasks.chain(retry).chain(starving).min()
    }

    fn wait_and_handle(&mut self) -> io::Result<()> {
        let readable = Ready {
            readable: true,
            writable: false,
        };
        let deadline = self.next_deadline();
        let ready = {
            let mut fds = vec![(self.shared.wake.as_fd(), readable)];
            for w in &self.workers {
                fds.push((w.process.sentinel(), readable));
                if let Some(conn) = &w.conn {
                    let want = Ready {
                        readable: true,
                        writable: w.out.is_some(),
                    };
                    fds.push((conn.as_fd(), want));
                }
            }
            sys::wait_fds(&fds, deadline)?
        };
        if ready[0].readable {
            self.shared.woken();
        }
        // Which workers had what ready, by position in `ready`.
        let mut events = Vec::new();
        let mut at = 1;
        for (i, w) in self.workers.iter().enumerate() {
            let exited = ready[at].readable;
            at += 1;
            let mut conn_ready = Ready::default();
            if w.conn.is_some() {
                conn_ready = ready[at];
                at += 1;
            }
            events.push((i, exited, conn_ready));
        }
        let mut dead = Vec::new();
        for (i, exited, conn_ready) in events {
            if conn_ready.readable || exited {
                self.read_replies(i);
            }
            if conn_ready.writable && !exited {
                self.flush(i);
            }
            if exited {
                dead.push(i);
            }
        }
        // Highest index first, so earlier indices stay valid.
        for i in dead.into_iter().rev() {
            self.bury(i);
        }
        let now = Instant::now();
        for w in &mut self.workers {
            if let Some(h) = w.held.as_mut() {
                if !h.timed_out && h.deadline.is_some_and(|d| d <= now) {
                    h.timed_out = true;
                    let _ = w.process.kill();
                }
            }
        }
        Ok(())
    }

    /// Worker `i` has exited: reaps it, settles its chunk, replaces it.
    fn bury(&mut self, i: usize) {
        let w = self.workers.swap_remove(i);
        let pid = w.process.pid();
        let how = match w.process.join() {
            Ok(()) => WorkerExit::Code(0),
            Err(JoinError::Signaled { signal }) => WorkerExit::Signal(signal),
            Err(JoinError::Exited { code }) => WorkerExit::Code(code),
            Err(JoinError::Panicked { .. }) => WorkerExit::Code(process::child::EXIT_PANIC),
            Err(_) => WorkerExit::Unknown,
        };
        if let Some(held) = w.held {
            let mut chunk = held.chunk;
            if held.timed_out {
                chunk.fail(TaskError::TimedOut {
                    timeout: held.allowed,
                });
            } else if chunk.retries > 0 {
                chunk.retries -= 1;
                self.shared.lock().queue.push_front(chunk);
            } else if let Some(message) = held.bad_reply {
                chunk.fail(TaskError::BadReply { pid, message });
            } else {
                chunk.fail(TaskError::WorkerDied { pid, how });
            }
        } else if !w.ready {
            // Dead before its initializer returned (it exited, aborted, was
            // killed). Again and again: as for an initializer that panicked,
            // the pool starts no more workers, rather than start them for
            // ever.
            self.init_deaths += 1;
            if self.init_deaths >= INIT_DEATHS {
                let error = TaskError::InitializerFailed {
                    message: format!(
                        "{INIT_DEATHS} workers in a row died before the initializer returned; the last, process {pid}, {how}"
                    ),
                };
                self.shared.lock().failure.get_or_insert(error);
            }
        }
        self.replace();
    }

    /// Close finished: every worker gets end of file, exits and is reaped.
    /// A worker still busy in user code (an initializer that does not
    /// return) is waited for, unless the pool is terminated meanwhile.
    fn finish(mut self) {
        for w in &mut self.workers {
            w.conn = None;
            w.out = None;
        }
        let readable = Ready {
            readable: true,
            writable: false,
        };
        while !self.workers.is_empty() {
            let ready = {
                let mut fds = vec![(self.shared.wake.as_fd(), readable)];
                fds.extend(
                    self.workers
                        .iter()
                        .map(|w| (w.process.sentinel(), readable)),
                );
                match sys::wait_fds(&fds, None) {
                    Ok(ready) => ready,
                    Err(_) => return self.terminate(),
                }
            };
            if ready[0].readable {
                self.shared.woken();
                if self.shared.lock().phase == Phase::Terminating {
                    return self.terminate();
                }
            }
            for i in (0..self.workers.len()).rev() {
                if ready[i + 1].readable {
                    let _ = self.workers.swap_remove(i).process.join();
                }
            }
        }
    }

    /// Terminate: kills every worker, reaps it, and fails all unfinished
    /// work with `PoolTerminated`.
    fn terminate(mut self) {
        for w in &self.workers {
            let _ = w.process.kill();
        }
        let queued: Vec<Chunk> = self.shared.lock().queue.drain(..).collect();
        let error = self
            .shared
            .lock()
            .failure
            .clone()
            .unwrap_or(TaskError::PoolTerminated);
        for w in self.workers.drain(..) {
            let _ = w.process.join();
            if let Some(held) = w.held {
                held.chunk.fail(error.clone());
            }
        }
        queued.into_iter().for_each(|c| c.fail(error.clone()));
    }
}

impl Drop for Dispatcher {
    /// Only reached with workers left when start-up failed half-way, or
    /// when the dispatcher panicked: they are killed and reaped, and the
    /// chunks they held fail.
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.process.kill();
        }
        let error = TaskError::PoolBroken {
            message: "the pool's dispatcher thread panicked".into(),
        };
        for w in self.workers.drain(..) {
            let _ = w.process.join();
            if let Some(held) = w.held {
                held.chunk.fail(error.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::{Pool, TaskError};

    /// Makes the dispatcher panic at the next reply it reads.
    pub(super) static PANIC_ON_REPLY: AtomicBool = AtomicBool::new(false);

    fn broken(r: &Result<impl std::fmt::Debug, TaskError>) -> bool {
        matches!(r, Err(TaskError::PoolBroken { .. }))
    }

    #[test]
    fn a_dispatcher_panic_fails_held_queued_and_later_tasks() {
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.apply(|x: u8| x + 1, 1), Ok(2));
        PANIC_ON_REPLY.store(true, Ordering::SeqCst);
        // The first reply panics the dispatcher while the others are held
        // or queued: none of them may wait for ever.
        // On a thread, so that a hang fails the test in seconds.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = pool.map_outcomes_chunked(|x: u8| x, 0..4, 1);
            let later = pool.apply(|x: u8| x, 1);
            drop(pool);
            let _ = tx.send((out, later));
        });
        let (out, later) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("callers still waiting 20 s after the dispatcher panicked");
        assert!(out.iter().all(broken), "{out:?}");
        assert!(broken(&later), "{later:?}");
    }
}
