//! Descriptors that travel beside the bytes: which message they belong
//! to, and closing those no message announced.
//!
//! The kernel attaches descriptors to the buffer of the `sendmsg` that
//! carried them and hands them to the `recvmsg` that reads that buffer's
//! first byte; that `recvmsg` may have read other buffers before it, but
//! never a second one with descriptors. So each `recvmsg`'s descriptors are
//! kept with the stream range its bytes cover ([`FdBatch`]), and an honest
//! sender's `-2` announcement starts inside that range. Walking the frames
//! from the receive position tells, as soon as the bytes arrive, whether
//! one does: descriptors attached to plain frames, or more than announced,
//! are closed at once.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{FD_MARK, LONG_MARK, RawConnection, RecvError};
use crate::sys;

/// Most received descriptors a connection keeps for messages not yet
/// parsed. An honest peer never comes near it: a read happens only while
/// the message at the front is incomplete, and one `recvmsg` delivers the
/// descriptors of at most one `sendmsg` (at most `SCM_MAX_FD`), so at most
/// one announced batch waits behind the message being received. A batch
/// that would pass the bound is closed at once and its message reported as
/// [`RecvError::HandlesLost`]. With the descriptors announced for the
/// message at the front (`frame_fds`), a connection holds at most
/// `MAX_QUEUED_FDS + SCM_MAX_FD` received descriptors.
pub(crate) const MAX_QUEUED_FDS: usize = 2 * sys::MAX_FDS_PER_MESSAGE;

/// The descriptors one `recvmsg` delivered, and where the bytes it read lie
/// in the stream. The kernel attaches descriptors to the buffer of the
/// `sendmsg` that carried them and hands them to the `recvmsg` that reads
/// that buffer's first byte; that `recvmsg` may have read other buffers
/// before it (never another one with descriptors after it). So the buffer
/// began somewhere in `from..to`, and an honest sender put a `-2`
/// announcement exactly there.
pub(crate) struct FdBatch {
    /// Stream offset of the first byte this `recvmsg` read.
    from: u64,
    /// Stream offset one past the last byte it read.
    pub(super) to: u64,
    fds: Vec<OwnedFd>,
    /// Some of them were lost: the kernel could not deliver them all
    /// (`MSG_CTRUNC`), or they would have passed [`MAX_QUEUED_FDS`].
    lost: bool,
}

/// What the frame chain holds at one stream offset.
enum Step {
    /// A descriptor announcement; its count once all 8 bytes arrived.
    Mark(Option<usize>),
    /// A message header: the frame (header and body) is this many bytes.
    Frame(u64),
    /// Not enough bytes yet, or not a header at all (parsing will say so).
    Unknown,
}

/// What the frame chain says about one batch of received descriptors.
enum Verdict {
    /// No announcement starts inside the bytes that came with them.
    Unannounced,
    /// An announcement (of this many, once known) starts among those bytes.
    Announced(Option<usize>),
    /// The bytes that would tell have not arrived yet.
    Unknown,
}

impl RawConnection {
    /// Whether some received descriptors were lost in transit (a message
    /// will report [`RecvError::HandlesLost`]).
    pub(in crate::connection) fn fds_lost(&self) -> bool {
        self.lost_frame || self.fds_in.iter().any(|b| b.lost)
    }

    /// The queued descriptor batches, with their stream ranges counted from
    /// the first unconsumed byte (what [`preload`](Self::preload) will see
    /// as offset 0 after a move to another process).
    pub(in crate::connection) fn queued_fds(&self) -> Vec<(u64, u64, Vec<BorrowedFd<'_>>)> {
        let base = self.abs_at(self.rstart);
        self.fds_in
            .iter()
            .map(|b| {
                (
                    b.from.saturating_sub(base),
                    b.to.saturating_sub(base),
                    b.fds.iter().map(AsFd::as_fd).collect(),
                )
            })
            .collect()
    }

    /// Restores batches saved by [`queued_fds`](Self::queued_fds) after
    /// [`preload`](Self::preload). Batches out of order, past the buffered
    /// bytes or past the bound are closed.
    pub(in crate::connection) fn restore_queued_fds(
        &mut self,
        batches: Vec<(u64, u64, Vec<OwnedFd>)>,
    ) {
        let mut held = 0;
        for (from, to, fds) in batches {
            let after = self.fds_in.back().map_or(0, |b| b.to);
            if from < after || to <= from || to > self.abs_end {
                continue;
            }
            if held + fds.len() > MAX_QUEUED_FDS {
                continue;
            }
            held += fds.len();
            self.fds_in.push_back(FdBatch {
                from,
                to,
                fds,
                lost: false,
            });
        }
        self.settle_fds();
    }

    /// Takes the descriptors announced (`count`) by the `-2` header at
    /// `rstart`: those of the batch whose bytes include the header.
    pub(super) fn claim_fds(&mut self, count: usize) -> Result<(), RecvError> {
        let here = self.abs_at(self.rstart);
        let batch = match self.fds_in.front() {
            Some(b) if b.from <= here && here < b.to => self.fds_in.pop_front(),
            _ => None,
        };
        match batch {
            // These are the descriptors that were lost: this message
            // reports it, the next ones are unaffected.
            Some(b) if b.lost => self.lost_frame = true,
            Some(mut b) if b.fds.len() >= count => {
                b.fds.truncate(count);
                self.frame_fds = b.fds;
            }
            None if count == 0 => {}
            b => {
                return Err(RecvError::Malformed(format!(
                    "a message announced {count} descriptors but {} arrived",
                    b.map_or(0, |b| b.fds.len())
                )));
            }
        }
        Ok(())
    }

    /// The frame chain at stream offset `pos` (at or after `rstart`, on a
    /// frame boundary).
    fn step_at(&self, pos: u64) -> Step {
        let Some(avail) = self.abs_end.checked_sub(pos) else {
            return Step::Unknown;
        };
        let i = self.rend - avail.min(self.rend as u64) as usize;
        let bytes = &self.rbuf[i..self.rend];
        let Some(head) = bytes.get(..4) else {
            return Step::Unknown;
        };
        match i32::from_be_bytes(head.try_into().expect("4 bytes")) {
            n if n >= 0 => Step::Frame(4 + n as u64),
            LONG_MARK => match bytes.get(4..12) {
                Some(len) => Step::Frame(
                    u64::from_be_bytes(len.try_into().expect("8 bytes")).saturating_add(12),
                ),
                None => Step::Unknown,
            },
            FD_MARK => Step::Mark(
                bytes
                    .get(4..8)
                    .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize),
            ),
            _ => Step::Unknown,
        }
    }

    /// Closes the queued descriptors nobody announced, as soon as the
    /// bytes that came with them show it: walking the frames from
    /// `rstart`, a batch is kept only if an announcement starts among its
    /// bytes (and then only as many as announced). Descriptors a peer
    /// attaches to plain frames, or more than it announced, are closed here.
    fn settle_fds(&mut self) {
        let mut pos = self.abs_at(self.rstart);
        let mut i = 0;
        while let Some(batch) = self.fds_in.get(i) {
            let (from, to) = (batch.from, batch.to);
            let verdict = loop {
                if pos >= to {
                    break Verdict::Unannounced;
                }
                match self.step_at(pos) {
                    Step::Mark(count) if pos >= from => break Verdict::Announced(count),
                    Step::Mark(_) => pos += 8,
                    Step::Frame(len) => pos = pos.saturating_add(len),
                    Step::Unknown => break Verdict::Unknown,
                }
            };
            match verdict {
                Verdict::Unannounced => {
                    self.fds_in.remove(i);
                }
                Verdict::Announced(count) => {
                    if let Some(count) = count {
                        self.fds_in[i].fds.truncate(count);
                    }
                    pos += 8;
                    i += 1;
                }
                Verdict::Unknown => return,
            }
        }
    }

    /// Queues the descriptors one `recvmsg` delivered with the bytes now at
    /// `abs_end - n .. abs_end`, closes those nobody announced, and keeps
    /// the total within [`MAX_QUEUED_FDS`].
    pub(super) fn queue_fds(&mut self, n: usize, fds: Vec<OwnedFd>, truncated: bool) {
        let from = self.abs_end - n as u64;
        if !fds.is_empty() || truncated {
            self.fds_in.push_back(FdBatch {
                from,
                to: self.abs_end,
                fds,
                lost: truncated,
            });
        }
        if self.fds_in.is_empty() {
            return;
        }
        self.settle_fds();
        let held: usize = self.fds_in.iter().map(|b| b.fds.len()).sum();
        if held > MAX_QUEUED_FDS {
            if let Some(b) = self.fds_in.back_mut().filter(|b| b.from == from) {
                b.fds.clear();
                b.lost = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::time::Duration;

    use super::*;
    use crate::connection::{Connection, pipe};

    /// Sends `bytes` raw (already framed) with `fds` attached, as a peer
    /// that ignores the protocol might.
    fn send_raw(to: &Connection, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        let n = sys::send_with_fds(to.as_fd(), &[IoSlice::new(bytes)], fds).unwrap();
        assert_eq!(n, bytes.len());
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    fn announced(count: u32, body: &[u8]) -> Vec<u8> {
        let mut f = FD_MARK.to_be_bytes().to_vec();
        f.extend_from_slice(&count.to_be_bytes());
        f.extend_from_slice(&frame(body));
        f
    }

    fn queued(c: &Connection) -> usize {
        c.raw.fds_in.iter().map(|b| b.fds.len()).sum()
    }

    #[test]
    fn descriptors_on_plain_frames_are_closed_at_once() {
        let (a, mut b) = pipe(true).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let many = vec![null.as_fd(); sys::MAX_FDS_PER_MESSAGE];
        for i in 0..20u8 {
            send_raw(&a, &frame(&[i]), &many);
            assert_eq!(b.recv_bytes().unwrap(), [i]);
            assert_eq!(queued(&b), 0);
        }
        // Attached in the middle of a frame's body: closed when they arrive.
        let mut big = frame(&[7; 1000]);
        let rest = big.split_off(500);
        send_raw(&a, &big, &[]);
        assert!(matches!(
            b.recv_bytes_timeout(Duration::from_millis(1)),
            Err(RecvError::Timeout)
        ));
        send_raw(&a, &rest, &many);
        assert_eq!(b.recv_bytes().unwrap(), [7; 1000]);
        assert_eq!(queued(&b), 0);
    }

    #[test]
    fn more_descriptors_than_announced_are_closed() {
        let (a, mut b) = pipe(true).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        send_raw(&a, &announced(1, b"x"), &[null.as_fd(); 5]);
        let (bytes, fds) = b.raw.recv_with_fds(None).unwrap();
        assert_eq!((bytes.as_slice(), fds.len()), (&b"x"[..], 1));
        assert_eq!(queued(&b), 0);
    }

    #[test]
    fn announced_descriptors_behind_plain_bytes_in_one_read_are_kept() {
        // Both buffers are read by one recvmsg: the descriptors come with
        // bytes that start with a plain frame.
        let (a, mut b) = pipe(true).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        send_raw(&a, &frame(b"plain"), &[]);
        send_raw(&a, &announced(2, b"two"), &[null.as_fd(), null.as_fd()]);
        send_raw(&a, &frame(b"after"), &[]);
        assert_eq!(b.recv_bytes().unwrap(), b"plain");
        assert_eq!(queued(&b), 2);
        let (bytes, fds) = b.raw.recv_with_fds(None).unwrap();
        assert_eq!((bytes.as_slice(), fds.len()), (&b"two"[..], 2));
        assert_eq!(b.recv_bytes().unwrap(), b"after");
    }

    #[test]
    fn descriptors_past_the_bound_fail_their_message() {
        let (a, mut b) = pipe(true).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let many = vec![null.as_fd(); sys::MAX_FDS_PER_MESSAGE];
        // A frame still incomplete, then announced batches behind it,
        // read before the first one is delivered.
        let mut head = frame(b"first");
        let tail = head.split_off(6);
        send_raw(&a, &head, &[]);
        assert!(matches!(
            b.recv_bytes_timeout(Duration::from_millis(1)),
            Err(RecvError::Timeout)
        ));
        let mut rest = tail;
        rest.extend_from_slice(&announced(sys::MAX_FDS_PER_MESSAGE as u32, b"a"));
        send_raw(&a, &rest, &many);
        for _ in 0..3 {
            b.raw.read_once(false).unwrap();
            send_raw(&a, &announced(sys::MAX_FDS_PER_MESSAGE as u32, b"b"), &many);
        }
        while b.raw.read_once(true).unwrap() {}
        assert!(queued(&b) <= MAX_QUEUED_FDS);
        assert_eq!(b.recv_bytes().unwrap(), b"first");
        let mut lost = 0;
        let mut got = 0;
        for _ in 0..4 {
            match b.raw.recv_with_fds(None) {
                Ok((_, fds)) => got += fds.len(),
                Err(RecvError::HandlesLost) => lost += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(lost >= 1, "lost {lost}, got {got}");
        assert_eq!(
            got + lost * sys::MAX_FDS_PER_MESSAGE,
            4 * sys::MAX_FDS_PER_MESSAGE
        );
    }
}
