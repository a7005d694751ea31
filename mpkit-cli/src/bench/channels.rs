//! One way of sending and receiving per mechanism: every channel is
//! one-way, a [`Tx`] on one side and an [`Rx`] on the other.

use std::io::{Read, Write};
use std::time::Duration;

use mpkit::Connection;
use mpkit::msgq::{PosixQueue, Selector, SysvQueue};
use mpkit::queue::ByteQueue;
use mpkit::shm::{Array, SharedMemory};
use mpkit::sync::Semaphore;
use mpkit_bench::ring::{Patience, SpinRing};

use super::{Context, Result};

/// The small and the large message size.
pub(super) const SMALL: usize = 64;
pub(super) const LARGE: usize = 4096;

/// What is sent (a prefix of it).
pub(super) static PAYLOAD: [u8; LARGE] = [0x5a; LARGE];

/// How long a child may take to acknowledge a batch, or an open to finish.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending end of a one-way channel.
pub(super) trait Tx {
    fn send(&mut self, msg: &[u8]) -> Result;
}

/// The receiving end of a one-way channel: `recv(size)` takes one message,
/// which must be `size` bytes long.
pub(super) trait Rx {
    fn recv(&mut self, size: usize) -> Result<&[u8]>;
}

/// An error unless a message of `size` bytes arrived whole.
pub(super) fn check_len(got: usize, size: usize) -> Result {
    if got == size {
        Ok(())
    } else {
        Err(format!("received {got} bytes where {size} were sent"))
    }
}

/// An mpkit [`Connection`] (pipe or socket).
pub(super) struct ConnTx(pub(super) Connection);
/// Receives into a reused buffer of [`LARGE`] bytes.
pub(super) struct ConnRx(pub(super) Connection, pub(super) Vec<u8>);

impl Tx for ConnTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.send_bytes(msg).ctx("send_bytes")
    }
}

impl ConnRx {
    pub(super) fn new(conn: Connection) -> ConnRx {
        ConnRx(conn, vec![0; LARGE])
    }
}

impl Rx for ConnRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        let n = self.0.recv_bytes_into(&mut self.1).ctx("recv_bytes_into")?;
        check_len(n, size)?;
        Ok(&self.1[..n])
    }
}

/// A byte stream (FIFO, raw pipe): fixed-size messages, `write_all` and
/// `read_exact`.
pub(super) struct StreamTx<W>(pub(super) W);
/// Reads into a reused buffer of [`LARGE`] bytes.
pub(super) struct StreamRx<R>(pub(super) R, pub(super) Vec<u8>);

impl<W: Write> Tx for StreamTx<W> {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.write_all(msg).ctx("write")
    }
}

impl<R: Read> StreamRx<R> {
    pub(super) fn new(r: R) -> StreamRx<R> {
        StreamRx(r, vec![0; LARGE])
    }
}

impl<R: Read> Rx for StreamRx<R> {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        let buf = &mut self.1[..size];
        self.0.read_exact(buf).ctx("read")?;
        Ok(buf)
    }
}

/// An mpkit [`ByteQueue`]: `put`, and `get_into` one reused buffer.
pub(super) struct QueueTx(pub(super) ByteQueue);
/// Takes messages into a reused buffer.
pub(super) struct QueueRx(pub(super) ByteQueue, pub(super) Vec<u8>);

impl Tx for QueueTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.put(msg).ctx("put")
    }
}

impl Rx for QueueRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.0.get_into(&mut self.1).ctx("get_into")?;
        check_len(self.1.len(), size)?;
        Ok(&self.1)
    }
}

/// Slots in a shared `Array<u8>`, with a `Semaphore` counting the free
/// slots and one counting the filled ones; each message is copied in and
/// out under the array's lock (what a `multiprocessing` program does with
/// `Array` and `Semaphore`). Each side keeps its own position.
pub(super) struct Slots {
    pub(super) arr: Array<u8>,
    pub(super) free: Semaphore,
    pub(super) filled: Semaphore,
    pub(super) pos: usize,
    pub(super) buf: Vec<u8>,
}

/// How many slots (of [`LARGE`] bytes) each direction has.
pub(super) const SHM_SLOTS: usize = 16;

/// What a child needs of [`Slots`].
pub(super) type SlotsArgs = (Array<u8>, Semaphore, Semaphore);

impl Slots {
    pub(super) fn create() -> Result<Slots> {
        Ok(Slots::attach((
            Array::zeroed(SHM_SLOTS * LARGE).ctx("Array")?,
            Semaphore::new(SHM_SLOTS as u32).ctx("Semaphore")?,
            Semaphore::new(0).ctx("Semaphore")?,
        )))
    }

    pub(super) fn attach((arr, free, filled): SlotsArgs) -> Slots {
        Slots {
            arr,
            free,
            filled,
            pos: 0,
            buf: vec![0; LARGE],
        }
    }

    pub(super) fn share(&self) -> Result<SlotsArgs> {
        Ok((
            self.arr.try_clone().ctx("clone the Array")?,
            self.free.try_clone().ctx("clone a Semaphore")?,
            self.filled.try_clone().ctx("clone a Semaphore")?,
        ))
    }

    pub(super) fn at(&self) -> usize {
        (self.pos % SHM_SLOTS) * LARGE
    }
}

impl Tx for Slots {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.free.acquire().ctx("Semaphore::acquire")?;
        let at = self.at();
        {
            let mut slots = self.arr.lock().ctx("Array::lock")?;
            slots[at..at + msg.len()].copy_from_slice(msg);
        }
        self.pos += 1;
        self.filled.release().ctx("Semaphore::release")?;
        Ok(())
    }
}

impl Rx for Slots {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.filled.acquire().ctx("Semaphore::acquire")?;
        let at = self.at();
        {
            let slots = self.arr.lock().ctx("Array::lock")?;
            self.buf[..size].copy_from_slice(&slots[at..at + size]);
        }
        self.pos += 1;
        self.free.release().ctx("Semaphore::release")?;
        Ok(&self.buf[..size])
    }
}

/// A System V queue: messages of type 1, received with `Selector::Any`.
pub(super) struct SysvTx(pub(super) SysvQueue);
/// Keeps the last message received.
pub(super) struct SysvRx(pub(super) SysvQueue, pub(super) Vec<u8>);

impl Tx for SysvTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.send(1, msg).ctx("msgsnd")
    }
}

impl Rx for SysvRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.1 = self.0.recv(Selector::Any).ctx("msgrcv")?.1;
        check_len(self.1.len(), size)?;
        Ok(&self.1)
    }
}

/// A POSIX queue: messages of priority 0.
pub(super) struct PosixTx(pub(super) PosixQueue);
/// Keeps the last message received.
pub(super) struct PosixRx(pub(super) PosixQueue, pub(super) Vec<u8>);

impl Tx for PosixTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.send(msg, 0).ctx("mq_send")
    }
}

impl Rx for PosixRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.1 = self.0.recv().ctx("mq_receive")?.0;
        check_len(self.1.len(), size)?;
        Ok(&self.1)
    }
}

/// This process's side of a spin ring (the floor) of `slot`-byte slots in
/// `shm`: a side spins only while a message is due, so it gives up after
/// [`Patience::BOUNDED`]'s time.
pub(super) fn spin_side(shm: SharedMemory, slot: usize) -> Result<SpinRing> {
    SpinRing::attach(shm, slot, Patience::BOUNDED)
        .ok_or_else(|| "the spin ring's block has the wrong size".to_string())
}

/// A ring for each message size (or one, for the way back).
pub(super) struct SpinTx {
    pub(super) small: SpinRing,
    pub(super) large: Option<SpinRing>,
}

/// The receiving side of [`SpinTx`], copying into a reused buffer.
pub(super) struct SpinRx {
    pub(super) small: SpinRing,
    pub(super) large: Option<SpinRing>,
    pub(super) buf: Vec<u8>,
}

impl Tx for SpinTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        match &mut self.large {
            Some(large) if msg.len() > SMALL => large.push(msg),
            _ => self.small.push(msg),
        }
        .map_err(|e| e.to_string())
    }
}

impl Rx for SpinRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        let out = &mut self.buf[..size];
        match &mut self.large {
            Some(large) if size > SMALL => large.pop(out),
            _ => self.small.pop(out),
        }
        .map_err(|e| e.to_string())?;
        Ok(out)
    }
}
