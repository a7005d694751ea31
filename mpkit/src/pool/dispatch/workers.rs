//! Starting workers, and sending to them without blocking.
//!
//! Every worker is spawned here, from the dispatcher thread, with the
//! parent-death signal set (see the parent module). A start that fails is
//! retried after `START_RETRY_FIRST`, doubling up to `START_RETRY_MAX`;
//! while no worker runs, the pool is [`Starving`] and `maintain` fails
//! queued chunks once they have waited long enough.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::{Chunk, Dispatcher, Phase, Worker};
use crate::connection::{Outgoing, RawConnection};
use crate::pool::TaskError;
use crate::pool::wire;
use crate::process::{self, Process, SpawnError};
use crate::shm::SharedMemory;
use crate::sys;

/// The wait before retrying a worker start that failed, doubled after each
/// further failure up to `START_RETRY_MAX`: quick when descriptors come
/// back at once, about one attempt a second while they do not.
const START_RETRY_FIRST: Duration = Duration::from_millis(10);
const START_RETRY_MAX: Duration = Duration::from_secs(1);

/// Which message a worker's [`Outgoing`] carries.
#[derive(Clone, Copy)]
pub(super) enum Sending {
    /// The pool's initializer message (`Config::init`).
    Init,
    /// The chunk the worker holds.
    Chunk,
    /// The message saying the held chunk's payload is in the arena
    /// (`Worker::short`).
    ChunkInArena,
}

/// No worker runs and starting one failed: since when, and why.
pub(super) struct Starving {
    pub(super) since: Instant,
    pub(super) error: String,
    /// The error may pass by itself (out of descriptors, of processes).
    pub(super) transient: bool,
}

impl Dispatcher {
    /// Spawns one worker (from this, the dispatcher's, thread) and starts
    /// sending it the initializer message.
    pub(super) fn start_worker(&mut self) -> Result<(), SpawnError> {
        self.started += 1;
        // Without an arena (no memory or descriptors for it now), the
        // worker's chunks go whole through its socket. Its size is sealed:
        // a task that finds the memfd cannot cut it under this process's
        // mapping (which would fault, and stay mapped for good).
        let arena = SharedMemory::anonymous(2 * wire::ARENA_HALF)
            .ok()
            .filter(|a| sys::seal_size(a.as_fd()).is_ok());
        let (mine, process, arena) = match self.spawn_worker(arena) {
            // The arena took the last descriptors the start needed: start
            // without it.
            Err(SpawnError::Io(e)) if sys::is_resource_shortage(&e) => self.spawn_worker(None)?,
            started => started?,
        };
        let cfg = &self.shared.config;
        let out = cfg
            .init
            .as_ref()
            .map(|(message, fds)| (Outgoing::new(message.len(), fds.len()), Sending::Init));
        self.workers.push(Worker {
            process,
            conn: Some(mine),
            held: None,
            out,
            chunks_done: 0,
            ready: cfg.init.is_none(),
            arena,
            short: Vec::new(),
        });
        self.flush(self.workers.len() - 1);
        Ok(())
    }

    /// Spawns a worker process with a new socket pair and `arena` (if it
    /// can pass it): this end of the socket, the process, and the arena
    /// it got.
    fn spawn_worker(
        &self,
        arena: Option<SharedMemory>,
    ) -> Result<(RawConnection, Process<()>, Option<SharedMemory>), SpawnError> {
        let cfg = &self.shared.config;
        let (mine, theirs) = crate::Connection::<crate::codec::Postcard>::pair(true)?;
        let theirs_arena = arena.as_ref().and_then(|a| a.try_clone().ok());
        let arena = arena.filter(|_| theirs_arena.is_some());
        let process = process::Builder::new()
            .name(format!("{}-{}", cfg.name, self.started))
            .daemon(true)
            .die_with_thread(true)
            .spawn(wire::worker_main, (theirs, theirs_arena))?;
        Ok((mine.into_raw(), process, arena))
    }

    /// Sends what the socket of worker `i` takes now of its pending message.
    pub(super) fn flush(&mut self, i: usize) {
        let Worker {
            process,
            conn,
            held,
            out,
            short,
            ..
        } = &mut self.workers[i];
        let Some((progress, what)) = out.as_mut() else {
            return;
        };
        let message = match what {
            Sending::Init => (self.shared.config.init.as_ref()).map(|(m, f)| (&m[..], &f[..])),
            Sending::Chunk => held
                .as_ref()
                .map(|h| (&h.chunk.message[..], &h.chunk.fds[..])),
            Sending::ChunkInArena => held.as_ref().map(|_| (&short[..], &[][..])),
        };
        let (Some(conn), Some((bytes, fds))) = (conn.as_mut(), message) else {
            *out = None;
            return;
        };
        match conn.send_nowait(progress, bytes, fds) {
            Ok(false) => {}
            Ok(true) => *out = None,
            // The worker is gone: its pidfd tells the rest.
            Err(crate::SendError::Disconnected) => *out = None,
            Err(_) => {
                // The socket is unusable: end the worker, which fails or
                // retries its chunk as a death would.
                let _ = process.kill();
                *out = None;
            }
        }
    }

    /// Starts sending worker `i` the chunk it was just given: its payload
    /// into the worker's arena and a message saying so, when it has no
    /// descriptors and fits; otherwise the whole message.
    pub(super) fn send(&mut self, i: usize) {
        let w = &mut self.workers[i];
        if let Some(held) = &w.held {
            let chunk = &held.chunk;
            let payload = chunk.message.get(wire::HEADER..).unwrap_or_default();
            let in_arena = chunk.fds.is_empty()
                && (wire::ARENA_MIN..=wire::ARENA_HALF).contains(&payload.len())
                && w.arena
                    .as_ref()
                    .is_some_and(|a| a.write(0, payload).is_ok());
            w.out = Some(if in_arena {
                w.short.clear();
                w.short.extend_from_slice(&chunk.message[..wire::HEADER]);
                w.short[0] = wire::MSG_TASK_IN_ARENA;
                w.short
                    .extend_from_slice(&(payload.len() as u64).to_le_bytes());
                (Outgoing::new(w.short.len(), 0), Sending::ChunkInArena)
            } else {
                (
                    Outgoing::new(chunk.message.len(), chunk.fds.len()),
                    Sending::Chunk,
                )
            });
            self.flush(i);
        }
    }

    /// Workers that take work (retiring ones, and those whose socket
    /// closed, do not).
    pub(super) fn running(&self) -> usize {
        self.workers.iter().filter(|w| w.conn.is_some()).count()
    }

    /// Starts missing workers when a retry is due; while no worker runs
    /// and none could start, fails the queued chunks once they have waited
    /// long enough (see the module docs).
    pub(super) fn maintain(&mut self) {
        if self.running() < self.shared.config.processes {
            self.replace();
        }
        let Some(starving) = &self.starving else {
            return;
        };
        let patience = match starving.transient {
            true => self.shared.config.worker_start_timeout,
            false => Duration::ZERO,
        };
        match starving.since.checked_add(patience) {
            // Never, for a timeout past the end of time.
            None => return,
            Some(t) if Instant::now() < t => return,
            Some(_) => {}
        }
        {
            let st = self.shared.lock();
            if st.queue.is_empty() || st.phase == Phase::Terminating {
                return;
            }
        }
        // One more try first: what was short may be back.
        self.retry_at = None;
        self.replace();
        let Some(starving) = &self.starving else {
            return;
        };
        let error = TaskError::WorkerStart {
            message: format!(
                "{}; no worker has run for {:.1?}, and the pool goes on trying",
                starving.error,
                starving.since.elapsed()
            ),
        };
        let queued: Vec<Chunk> = self.shared.lock().queue.drain(..).collect();
        queued.into_iter().for_each(|c| c.fail(error.clone()));
    }

    /// Starts workers until there are as many as configured (counting
    /// retiring ones, which take no work, as gone), unless a failed start
    /// is still backing off. A start that fails is retried later; while
    /// no worker runs, the pool is starving (see `maintain`).
    pub(super) fn replace(&mut self) {
        let st = self.shared.lock();
        if st.failure.is_some() || st.phase == Phase::Terminating {
            return;
        }
        drop(st);
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        while self.running() < self.shared.config.processes {
            match self.start_worker() {
                Ok(()) => {
                    self.start_failures = 0;
                    self.retry_at = None;
                    self.starving = None;
                }
                Err(e) => {
                    self.start_failures = self.start_failures.saturating_add(1);
                    let backoff = START_RETRY_FIRST
                        .saturating_mul(1 << (self.start_failures - 1).min(16))
                        .min(START_RETRY_MAX);
                    self.retry_at = Some(Instant::now() + backoff);
                    if self.running() == 0 {
                        let transient = match &e {
                            SpawnError::Io(e) => sys::is_resource_shortage(e),
                            _ => false,
                        };
                        let since = self
                            .starving
                            .as_ref()
                            .map_or_else(Instant::now, |s| s.since);
                        self.starving = Some(Starving {
                            since,
                            error: e.to_string(),
                            transient,
                        });
                    }
                    return;
                }
            }
        }
    }
}
