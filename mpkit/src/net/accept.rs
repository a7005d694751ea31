//! Accepting with many handshakes in flight at once.
//!
//! A peer that connects and then says nothing must not hold up the peers
//! behind it, so the listener never waits on one handshake. Each accepted
//! peer gets a small state machine (challenge sent → answer judged → our
//! answer sent → verdict read), driven only when its socket is readable,
//! with its own deadline (accepted + the handshake timeout). One epoll
//! instance watches the listening socket and every pending handshake, so a
//! single wait covers them all, and [`wait`](super::wait) on a `Listener`
//! wakes for either.
//!
//! At most `max_pending` handshakes are in flight; when another peer
//! arrives, the one that has made no progress for longest is dropped
//! (disconnected without a word). An honest peer answers each step within a
//! round trip, so it is never the idlest for long; a flood of silent peers
//! only pushes out one another.
//!
//! Several threads may accept on one listener at once: the set of pending
//! handshakes is shared, and whichever thread takes one out of it steps it.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::NetError;
use super::auth;
use crate::connection::RawConnection;
use crate::sys::{self, Deadline};

/// The epoll token of the listening socket.
const LISTENING: u64 = u64::MAX;

/// Where one listener-side handshake stands.
enum Awaiting {
    /// Our challenge is out; the peer's answer must authenticate `message`.
    Answer { message: Vec<u8> },
    /// We welcomed the peer; its challenge to us comes next.
    Challenge,
    /// We answered its challenge; its verdict comes next.
    Verdict,
}

/// A peer accepted but not yet authenticated.
struct Handshake {
    token: u64,
    raw: RawConnection,
    step: Awaiting,
    deadline: Instant,
    /// When the peer last completed a step (or was accepted).
    progress: Instant,
}

/// What stepping a handshake led to.
enum Outcome {
    Done(RawConnection),
    Waiting(Handshake),
}

impl Handshake {
    /// Handles every whole message that has arrived, without waiting.
    fn advance(mut self, key: &[u8]) -> Result<Outcome, NetError> {
        while let Some(message) = auth::try_recv_preauth(&mut self.raw)? {
            self.progress = Instant::now();
            self.step = match std::mem::replace(&mut self.step, Awaiting::Challenge) {
                Awaiting::Answer { message: ours } => {
                    auth::judge_response(&mut self.raw, key, &ours, &message)?;
                    Awaiting::Challenge
                }
                Awaiting::Challenge => {
                    auth::answer(&mut self.raw, key, &message)?;
                    Awaiting::Verdict
                }
                Awaiting::Verdict => {
                    auth::check_verdict(&message)?;
                    return Ok(Outcome::Done(self.raw));
                }
            };
        }
        Ok(Outcome::Waiting(self))
    }
}

/// The handshakes in flight on one listener.
pub(super) struct Acceptor {
    /// Watches the listening socket and every pending handshake.
    poller: OwnedFd,
    pending: Mutex<Pending>,
    max_pending: usize,
    handshake_timeout: Duration,
}

#[derive(Default)]
struct Pending {
    next_token: u64,
    /// In the order they were accepted.
    list: VecDeque<Handshake>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("max_pending", &self.max_pending)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Watches `listening`, which must be non-blocking.
    pub(super) fn new(
        listening: BorrowedFd<'_>,
        max_pending: usize,
        handshake_timeout: Duration,
    ) -> Result<Acceptor, NetError> {
        let poller = sys::epoll_new()?;
        sys::epoll_watch(poller.as_fd(), listening, LISTENING)?;
        Ok(Acceptor {
            poller,
            pending: Mutex::new(Pending::default()),
            max_pending: max_pending.max(1),
            handshake_timeout,
        })
    }

    /// Readable while a peer is queued or a pending handshake has data.
    pub(super) fn ready_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Nothing in the set can be left half-updated by a panic.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts peers and drives handshakes until one completes (its
    /// connection is returned), one fails (its error is returned: call
    /// again for the next), or `deadline` passes ([`NetError::Timeout`]).
    /// `wrap` turns an accepted socket into a connection (TCP options).
    pub(super) fn accept(
        &self,
        listening: BorrowedFd<'_>,
        key: &[u8],
        deadline: Deadline,
        wrap: impl Fn(OwnedFd) -> RawConnection,
    ) -> Result<RawConnection, NetError> {
        loop {
            let now = Instant::now();
            if let Some(expired) = self.take_expired(now) {
                drop(expired);
                return Err(auth::preauth_error(crate::connection::RecvError::Timeout));
            }
            if deadline.is_some_and(|d| d <= now) {
                return Err(NetError::Timeout);
            }
            let next_expiry = self.pending().list.iter().map(|h| h.deadline).min();
            let wake = match (deadline, next_expiry) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            for token in sys::epoll_ready(self.poller.as_fd(), wake)? {
                if token == LISTENING {
                    self.accept_queued(listening, &wrap)?;
                    continue;
                }
                let Some(h) = self.take(token) else {
                    // Another thread is stepping it.
                    continue;
                };
                match h.advance(key)? {
                    Outcome::Done(raw) => {
                        let _ = sys::epoll_unwatch(self.poller.as_fd(), raw.as_fd());
                        return Ok(raw);
                    }
                    Outcome::Waiting(h) => self.pending().list.push_back(h),
                }
            }
        }
    }

    /// Accepts every queued peer and sends each its challenge.
    fn accept_queued(
        &self,
        listening: BorrowedFd<'_>,
        wrap: &impl Fn(OwnedFd) -> RawConnection,
    ) -> Result<(), NetError> {
        // Bounded, so a flood of connections cannot keep this loop from
        // stepping the handshakes already in flight.
        for _ in 0..self.max_pending {
            let fd = match sys::accept(listening) {
                Ok(fd) => fd,
                // Nobody queued (any more, or another thread took it).
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let mut raw = wrap(fd);
            let Ok(message) = auth::send_challenge(&mut raw) else {
                continue;
            };
            let now = Instant::now();
            let mut pending = self.pending();
            if pending.list.len() >= self.max_pending {
                // The peer idle for longest goes (closing it unwatches it).
                if let Some(i) = (0..pending.list.len()).min_by_key(|&i| pending.list[i].progress) {
                    pending.list.remove(i);
                }
            }
            let token = pending.next_token;
            pending.next_token += 1;
            if sys::epoll_watch(self.poller.as_fd(), raw.as_fd(), token).is_err() {
                continue;
            }
            pending.list.push_back(Handshake {
                token,
                raw,
                step: Awaiting::Answer { message },
                deadline: now + self.handshake_timeout,
                progress: now,
            });
        }
        Ok(())
    }

    fn take(&self, token: u64) -> Option<Handshake> {
        let mut pending = self.pending();
        let i = pending.list.iter().position(|h| h.token == token)?;
        pending.list.remove(i)
    }

    fn take_expired(&self, now: Instant) -> Option<Handshake> {
        let mut pending = self.pending();
        let i = pending.list.iter().position(|h| h.deadline <= now)?;
        pending.list.remove(i)
    }
}
