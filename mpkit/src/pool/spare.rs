//! Spare byte buffers, kept for reuse: chunk messages once their chunk is
//! done, reply bodies once the caller read them.

use std::sync::Mutex;

/// The message buffers of chunks that are done, and the bodies of replies
/// that were read, for the next chunks to be encoded into and the next
/// replies to be copied into. A map's messages otherwise come and go in
/// the caller's heap beside its results, and past glibc's trim threshold
/// the heap gives their pages back and faults them in again at every map
/// (a 100 000-item map of numbers: ~140 faults, a fifth of its time).
/// Each keeps its bytes: a reply copied into one only zero-fills what it
/// did not hold yet.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// At most this many spare buffers are kept (a map's chunks and replies
/// with two workers)...
const SPARE_MAX: usize = 16;
/// ... each of at most this many bytes (a chunk that fits a worker's
/// arena).
const SPARE_BYTES_MAX: usize = 2 << 20;

fn spare() -> Option<Vec<u8>> {
    SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

/// An empty buffer of at least `capacity` bytes, a spare one when there is.
pub(super) fn buffer(capacity: usize) -> Vec<u8> {
    let mut buf = spare().unwrap_or_default();
    buf.clear();
    buf.reserve(capacity);
    buf
}

/// A buffer of `len` bytes to be overwritten, a spare one when there is
/// (only the bytes it did not hold are zeroed).
pub(super) fn filled(len: usize) -> Vec<u8> {
    let mut buf = spare().unwrap_or_default();
    buf.resize(len, 0);
    buf
}

/// Keeps a buffer for a later chunk or reply.
pub(super) fn recycle(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > SPARE_BYTES_MAX {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() < SPARE_MAX {
        spare.push(buf);
    }
}
