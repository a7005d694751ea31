//! Threads: ids and tokens that name a thread across processes, the CPU
//! count, yielding, asymmetric memory barriers (`membarrier`), a prefetch
//! hint, and the fork hook that drops cached per-process facts.
//!
//! # References
//! - [`gettid(2)`](https://man7.org/linux/man-pages/man2/gettid.2.html)
//! - [`sched_yield(2)`](https://man7.org/linux/man-pages/man2/sched_yield.2.html)
//! - [`membarrier(2)`](https://man7.org/linux/man-pages/man2/membarrier.2.html)
//! - [`pthread_atfork(3)`](https://man7.org/linux/man-pages/man3/pthread_atfork.3.html)

use std::io;

use super::errno::io_err;
use super::process::process_nonce;

/// Whether this process may run on more than one CPU (spinning while
/// waiting for another process only pays off then).
pub(crate) fn several_cpus() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // Online CPUs, not this process's affinity: a process pinned to one CPU
    // still meets a peer running on another.
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    *SEVERAL.get_or_init(|| unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } > 1)
}

/// Gives the CPU to another runnable thread, if any (`sched_yield`).
pub(crate) fn yield_now() {
    rustix::thread::sched_yield();
}

thread_local! {
    /// This thread's id, once asked for (0: not yet).
    static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// This thread's token (see [`thread_token`]), once asked for.
    static TOKEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A number naming the calling thread among all live threads of all
/// processes, and telling it apart from an earlier thread of another
/// process with the same id: the process's random nonce above the thread
/// id. Cached per thread (new after `fork`).
#[inline]
pub(crate) fn thread_token() -> u64 {
    TOKEN.with(|t| {
        let cached = t.get();
        if cached != 0 {
            return cached;
        }
        let token = (u64::from(process_nonce()) << 32) | u64::from(gettid());
        t.set(token);
        token
    })
}

/// After `fork`, the child's only thread has a new id: forget the cached one
/// (and the process-wide facts that belong to the parent).
extern "C" fn forget_tid_after_fork() {
    TID.with(|t| t.set(0));
    TOKEN.with(|t| t.set(0));
    MEMBARRIER.store(MEMBARRIER_UNKNOWN, std::sync::atomic::Ordering::Relaxed);
    super::process::forget_after_fork();
}

/// Registers [`forget_tid_after_fork`] once, before the first cached value
/// is stored.
pub(super) fn register_atfork() {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only writes a thread-local and
        // atomics.
        unsafe { libc::pthread_atfork(None, None, Some(forget_tid_after_fork)) };
    });
}

/// The id of the calling thread (unique among live threads system-wide).
/// Cached per thread: locks ask for it on every acquire and release, and
/// `gettid` is a real system call.
#[inline]
pub(crate) fn gettid() -> u32 {
    TID.with(|t| {
        let cached = t.get();
        if cached != 0 {
            return cached;
        }
        register_atfork();
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        t.set(tid);
        tid
    })
}

const MEMBARRIER_UNKNOWN: u8 = 0;
const MEMBARRIER_YES: u8 = 1;
const MEMBARRIER_NO: u8 = 2;
static MEMBARRIER: std::sync::atomic::AtomicU8 =
    std::sync::atomic::AtomicU8::new(MEMBARRIER_UNKNOWN);

/// Whether this process can take part in asymmetric barriers: registered
/// for `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (Linux 4.16+), so that a
/// [`heavy_barrier`] in any registered process orders this process's
/// memory accesses as a full fence would. Registers on the first call (and
/// again after `fork`). `MPKIT_NO_MEMBARRIER=1` in the environment makes it
/// false, to exercise the symmetric fallback.
pub(crate) fn membarrier_registered() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match MEMBARRIER.load(Relaxed) {
        MEMBARRIER_YES => return true,
        MEMBARRIER_NO => return false,
        _ => {}
    }
    register_atfork();
    use rustix::thread::{MembarrierCommand, MembarrierQuery, membarrier, membarrier_query};
    let wanted = MembarrierQuery::GLOBAL_EXPEDITED | MembarrierQuery::REGISTER_GLOBAL_EXPEDITED;
    let ok = std::env::var_os("MPKIT_NO_MEMBARRIER").is_none_or(|v| v.is_empty() || v == "0")
        && membarrier_query().contains(wanted)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    MEMBARRIER.store(if ok { MEMBARRIER_YES } else { MEMBARRIER_NO }, Relaxed);
    ok
}

/// The heavy side of an asymmetric barrier: when it returns, every thread
/// of every registered process has executed a full memory barrier (or was
/// not running, which implies one). Costs an inter-processor interrupt per
/// CPU running such a thread (about 15 µs on a 2-CPU VM): for rare paths
/// only. The light side is a compiler fence.
pub(crate) fn heavy_barrier() -> io::Result<()> {
    rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).map_err(io_err)
}

/// A hint to fetch the cache line holding `p` (no fault if it is unmapped;
/// nothing on targets without a prefetch instruction).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
