//! Surviving a shared file that shrinks under its mappings: a `SIGBUS`
//! handler for mpkit's own mappings.
//!
//! Any process of the user may `ftruncate` an object's file in `/dev/shm`.
//! The pages past the new end leave every mapping of the file at once, and
//! the next access to one of them is `SIGBUS` (`BUS_ADRERR`), which by
//! default kills the process: another process's mistake (or malice) would
//! crash this one. So mpkit installs, once, when it maps its first segment,
//! a process-wide `SIGBUS` handler that, for a fault inside a mapping
//! registered here:
//!
//! 1. raises that mapping's `truncated` flag (a [`FaultSlot`] the mapping
//!    owns), then
//! 2. maps private, zero-filled anonymous pages over the whole mapping
//!    (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)` of the same range),
//!    and returns: the faulting access runs again and reads zeros.
//!
//! From then on this process sees its own private zeros where the object
//! was: the object's users check the flag (one relaxed load) after each
//! operation and report the object corrupt. Every reader of shared memory
//! in mpkit already treats what it reads as untrusted, so an operation that
//! ran on zeros misbehaves at worst the way one facing a hostile writer
//! may, and is then reported. A fault anywhere else goes to the handler
//! that was installed before (chained: Rust's own stack-overflow reporter,
//! Python's `faulthandler`, …) or, where there was none, kills the process
//! as `SIGBUS` always did.
//!
//! # The registry
//! The handler must not allocate or lock, so mappings are recorded in
//! fixed-size chunks of [`FaultSlot`]s that are never freed: a static first
//! chunk, further ones allocated (outside the handler) and appended with a
//! compare-and-swap when every slot is taken. A slot is claimed with a
//! compare-and-swap and written as a sequence lock (its `state` word counts
//! up past an odd "being written" value): the handler reads a slot's range
//! only between two equal, even `state`s, so a slot registered or released
//! on another thread meanwhile is never half-read. A mapping is
//! deregistered *before* it is unmapped; a faulting access belongs to a
//! mapping that is still borrowed, hence still registered.
//!
//! # Limitations
//! - A `SIGBUS` handler installed later (by `sigaction`, `signal`,
//!   signal-hook, `faulthandler.enable()`) replaces this one: chain to the
//!   handler you replace (as signal-hook and `faulthandler` do) and a
//!   truncated mpkit object stays an error; otherwise the process dies on
//!   the fault as before.
//! - A thread asleep in the kernel on a word of the file (a futex wait)
//!   when the file is truncated is not woken by the truncation: mpkit's
//!   waits sleep in slices (`WAKE_SLICE`) and read their word after each,
//!   which faults here and fails the wait.
//! - The previous handler is called with this handler's signal mask, not
//!   with the `sa_mask` it was installed with.
//! - A mapping that was truncated is never unmapped (its slot is reused):
//!   a pthread robust list may still point into it (a lock held when its
//!   file was cut), and the kernel and glibc walk that list later.
//!
//! # References
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
//!   (`SA_SIGINFO`, `BUS_ADRERR`),
//!   [`signal-safety(7)`](https://man7.org/linux/man-pages/man7/signal-safety.7.html)
//! - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html) (`SIGBUS`
//!   "access to a portion of the buffer that does not correspond to the file")

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence};

/// Slots per chunk of the registry.
const CHUNK_SLOTS: usize = 128;

/// One mapping's entry in the registry; see the module docs.
#[derive(Debug)]
pub(crate) struct FaultSlot {
    /// A sequence word: bit 0 ([`WRITING`]) while the slot is claimed or
    /// released, bit 1 ([`LIVE`]) while it holds a mapping, the rest a
    /// count of changes (so a reader sees any change between two loads).
    state: AtomicU32,
    start: AtomicUsize,
    len: AtomicUsize,
    truncated: AtomicBool,
}

/// `state & LIVE`: the slot holds a registered mapping (with an even state).
const LIVE: u32 = 2;
/// `state & WRITING`: the slot is being claimed or released.
const WRITING: u32 = 1;
/// `state` steps by this, keeping the low two bits for the flags above.
const STEP: u32 = 4;

impl FaultSlot {
    const fn new() -> FaultSlot {
        FaultSlot {
            state: AtomicU32::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
        }
    }

    /// Whether the handler found this mapping's file truncated (its pages
    /// are now private zeros). One relaxed load.
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        // The handler runs on the faulting thread, inside an access the
        // caller made before this call: keep the compiler from moving those
        // accesses past the load (signal handlers are what compiler fences
        // are for).
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        self.truncated.load(Ordering::Relaxed)
    }

    /// Claims a free slot for `start..start + len`; false when taken.
    fn claim(&self, start: usize, len: usize) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        if s & (LIVE | WRITING) != 0
            || self
                .state
                .compare_exchange(s, s | WRITING, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // Sequence lock, writer side: the odd state is visible before any
        // field changes.
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.truncated.store(false, Ordering::Relaxed);
        self.state
            .store(s.wrapping_add(STEP) | LIVE, Ordering::Release);
        true
    }

    /// Gives the slot back (its mapping is about to be unmapped).
    fn release(&self) {
        let s = self.state.load(Ordering::Relaxed);
        self.state.store(s | WRITING, Ordering::Relaxed);
        fence(Ordering::Release);
        self.start.store(0, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
        self.state
            .store(s.wrapping_add(STEP) & !(LIVE | WRITING), Ordering::Release);
    }

    /// The registered range, read consistently (sequence lock, reader
    /// side), or `None` when the slot is free or being written.
    /// Async-signal-safe: atomic loads only.
    fn range(&self) -> Option<(usize, usize, u32)> {
        let s1 = self.state.load(Ordering::Acquire);
        if s1 & (LIVE | WRITING) != LIVE {
            return None;
        }
        let start = self.start.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let s2 = self.state.load(Ordering::Relaxed);
        (s1 == s2).then_some((start, len, s1))
    }
}

/// A run of slots and the next run (null until needed).
struct Chunk {
    slots: [FaultSlot; CHUNK_SLOTS],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        Chunk {
            slots: [const { FaultSlot::new() }; CHUNK_SLOTS],
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// The first chunk; later ones hang off it and are never freed.
static REGISTRY: Chunk = Chunk::new();

/// Every chunk, first to last. Async-signal-safe: atomic loads only.
fn chunks() -> impl Iterator<Item = &'static Chunk> {
    std::iter::successors(Some(&REGISTRY), |c| {
        // SAFETY: a non-null `next` was leaked from a Box (never freed) and
        // published with release ordering, read here with acquire.
        unsafe { c.next.load(Ordering::Acquire).as_ref() }
    })
}

/// Records the mapping `start..start + len` so that a `SIGBUS` in it is
/// survived (installing the handler on first use). The mapping must call
/// [`deregister`] before it is unmapped.
pub(crate) fn register(start: *mut u8, len: usize) -> &'static FaultSlot {
    install();
    let start = start as usize;
    let mut last = &REGISTRY;
    for chunk in chunks() {
        if let Some(slot) = chunk.slots.iter().find(|s| s.claim(start, len)) {
            return slot;
        }
        last = chunk;
    }
    // Every slot is taken: append a chunk (allocating here, never in the
    // handler) and claim in it; another thread may append first, then its
    // chunk is searched.
    loop {
        let fresh = Box::into_raw(Box::new(Chunk::new()));
        let tail = match last.next.compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: `fresh` was never published; it is ours to free.
                drop(unsafe { Box::from_raw(fresh) });
                theirs
            }
        };
        // SAFETY: `tail` is a published, leaked chunk (see `chunks`).
        let chunk: &'static Chunk = unsafe { &*tail };
        if let Some(slot) = chunk.slots.iter().find(|s| s.claim(start, len)) {
            return slot;
        }
        last = chunk;
    }
}

/// Forgets a mapping registered by [`register`]; call before unmapping it.
pub(crate) fn deregister(slot: &'static FaultSlot) {
    slot.release();
}

/// The handler that was installed before ours, once [`PREVIOUS_SET`].
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written once, before `PREVIOUS_SET` is released; read only after
// it is acquired.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static PREVIOUS_SET: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the `SIGBUS` handler, once per process (see the module docs);
/// registering the first mapping does this.
fn install() {
    INSTALL.call_once(|| {
        let mut new = MaybeUninit::<libc::sigaction>::zeroed();
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: `new` is a zeroed sigaction whose handler, flags and mask
        // are set before use; `on_sigbus` has the SA_SIGINFO signature and
        // is async-signal-safe; `old` receives the previous action, written
        // to PREVIOUS before it is published by PREVIOUS_SET.
        unsafe {
            let a = new.as_mut_ptr();
            (*a).sa_sigaction = on_sigbus as *const () as usize;
            (*a).sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut (*a).sa_mask);
            if libc::sigaction(libc::SIGBUS, a, old.as_mut_ptr()) == 0 {
                (*PREVIOUS.0.get()).write(old.assume_init());
                PREVIOUS_SET.store(true, Ordering::Release);
            }
        }
    });
}

/// Maps zeros over the registered mapping holding `addr`, raising its flag:
/// true when there was one. Async-signal-safe: atomic loads and stores and
/// one `mmap` system call.
fn zero_fill(addr: usize) -> bool {
    for chunk in chunks() {
        for slot in &chunk.slots {
            let Some((start, len, state)) = slot.range() else {
                continue;
            };
            if addr < start || addr - start >= len {
                continue;
            }
            // Released meanwhile: not the faulting mapping after all (a
            // faulting access keeps its mapping registered).
            if slot.state.load(Ordering::Relaxed) != state {
                continue;
            }
            // Raise the flag first: a thread that reads the zeros has, in
            // practice, also had the chance to see the flag.
            slot.truncated.store(true, Ordering::SeqCst);
            // SAFETY: `start..start + len` is a live mpkit mapping (registered,
            // read consistently, and being accessed by the faulting thread,
            // which keeps it mapped): replacing it with private zero pages of
            // the same size invalidates no Rust reference's validity, since
            // every access to it goes through raw pointers or atomics that
            // treat its bytes as untrusted.
            let r = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            // Failing (out of memory for page tables), the fault recurs and
            // is handed on as any other.
            return r != libc::MAP_FAILED;
        }
    }
    false
}

/// The `SIGBUS` handler: see the module docs.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; reading and restoring it is the one
    // thing a handler that makes system calls must do for the interrupted
    // code.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t; si_addr
    // is meaningful for the kernel's fault codes, which are checked first.
    let ours = unsafe {
        !info.is_null()
            && (*info).si_code == libc::BUS_ADRERR
            && zero_fill((*info).si_addr() as usize)
    };
    if !ours {
        // SAFETY: as documented on `chain`.
        unsafe { chain(sig, info, ctx) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a fault that is not ours to the previous handler, or kills the
/// process with `SIGBUS` as the default action would.
///
/// # Safety
/// Called only from `on_sigbus`, with its arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = if PREVIOUS_SET.load(Ordering::Acquire) {
        // SAFETY: written before PREVIOUS_SET was released, never again.
        Some(unsafe { (*PREVIOUS.0.get()).assume_init_ref() })
    } else {
        None
    };
    let handler = prev.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    // Sent by a process (kill, raise, sigqueue) rather than by a fault.
    // SAFETY: the kernel's siginfo_t, as in on_sigbus.
    let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
    if handler == libc::SIG_IGN && sent {
        return;
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The default action, as if we had never been installed: reset it
        // and raise again; the signal is delivered (and kills) as soon as
        // this handler returns, before the faulting access runs again.
        // SAFETY: sigaction and raise are async-signal-safe; the zeroed
        // action is SIG_DFL with an empty mask.
        unsafe {
            let mut dfl = MaybeUninit::<libc::sigaction>::zeroed();
            (*dfl.as_mut_ptr()).sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, dfl.as_ptr(), ptr::null_mut());
            libc::raise(libc::SIGBUS);
        }
        return;
    }
    let flags = prev.map_or(0, |p| p.sa_flags);
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature, and expects these arguments.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes the signal
        // number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_claimed_once_and_reused_after_release() {
        let a = register(0x1000 as *mut u8, 4096);
        let b = register(0x3000 as *mut u8, 4096);
        assert!(!ptr::eq(a, b));
        assert_eq!(a.range().map(|r| (r.0, r.1)), Some((0x1000, 4096)));
        deregister(a);
        assert_eq!(a.range(), None);
        deregister(b);
    }

    #[test]
    fn the_registry_grows_past_a_chunk() {
        let slots: Vec<_> = (0..CHUNK_SLOTS * 2 + 3)
            .map(|i| register((0x10_0000 + i * 0x1000) as *mut u8, 4096))
            .collect();
        assert!(chunks().count() >= 3);
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(s.range().map(|r| r.0), Some(0x10_0000 + i * 0x1000));
        }
        slots.into_iter().for_each(deregister);
    }
}
