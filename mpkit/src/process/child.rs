//! The child side of [`Process`](super::Process): bootstrap and trampoline.
//!
//! A child is a fresh `exec` of the parent's own executable
//! (`/proc/self/exe`) with one extra environment variable naming one
//! inherited descriptor: the child's end of a Unix socket pair. Before
//! `main` runs, [`run_if_child`] (called from `.init_array` through
//! [`CHILD_ENTRY`]) sees the variable, reads the bootstrap message, runs
//! the function and exits. `main` never runs in a child.
//!
//! # Finding the function
//!
//! Functions cannot be named across an `exec`, but the child runs the very
//! same file, so code sits at the same offsets from any known symbol. The
//! parent sends two offsets from [`anchor`]: the monomorphised
//! [`trampoline`] for the argument and result types, and the user's
//! function. The child adds them to its own `anchor`. Guards:
//! - the parent checks with `dladdr` that the function lives in the same
//!   loaded object as mpkit (not in another shared library, whose base
//!   address would differ);
//! - the message carries a check value (the distance between two mpkit
//!   functions) that the child recomputes, so a different executable is
//!   refused instead of jumping into the unknown.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::PanicStage;
use crate::codec::{Codec, Postcard};
use crate::connection::RawConnection;
use crate::handle;
use crate::sys;

/// The environment variable that makes a process an mpkit child; its value
/// is the number of the inherited bootstrap descriptor.
pub(crate) const ENV_VAR: &str = "__MPKIT_CHILD_FD";

/// Version of the bootstrap protocol (parent and child are the same binary,
/// so this guards against nothing but our own mistakes).
pub(crate) const BOOTSTRAP_VERSION: u32 = 1;

/// Exit code of a child whose function panicked (Python: an exception).
pub(crate) const EXIT_PANIC: i32 = 1;
/// Exit code of a child that failed before or after running the function.
pub(crate) const EXIT_FAILED: i32 = 2;

/// Parent → child: what to run and with what.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Bootstrap {
    pub version: u32,
    pub check: u64,
    pub trampoline: u64,
    pub function: u64,
    pub name: String,
    pub ident: Vec<u32>,
    pub daemon: bool,
    pub parent_pid: i32,
    pub parent_name: String,
    /// The arguments, encoded with [`Postcard`]; handles in them index the
    /// descriptors that came with the bootstrap message.
    pub args: Vec<u8>,
}

/// Child → parent: how the function ended.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Report {
    /// It returned; the result, encoded with [`Postcard`] (handles in it
    /// index the descriptors that came with the report).
    Returned(Vec<u8>),
    /// User code panicked, at this stage, with this message.
    Panicked { stage: PanicStage, message: String },
    /// The arguments did not decode as the function's argument type.
    ArgsDecode { type_name: String, message: String },
    /// The function's result could not be encoded.
    ResultEncode { type_name: String, message: String },
    /// The child is not running the parent's executable.
    BadExecutable(String),
}

/// The signature every monomorphised [`trampoline`] shares.
pub(crate) type Trampoline =
    unsafe fn(function: usize, args: &[u8], fds: Vec<OwnedFd>, chan: &mut RawConnection) -> i32;

/// The fixed point offsets are measured from.
#[inline(never)]
pub(crate) fn anchor() -> u32 {
    std::hint::black_box(0x1bc_c17)
}

/// A second fixed point: its distance from [`anchor`] identifies the build.
#[inline(never)]
fn anchor_check() -> u32 {
    std::hint::black_box(0x2bc_c17)
}

/// The check value of this executable.
pub(crate) fn check_value() -> u64 {
    (anchor_check as fn() -> u32 as usize).wrapping_sub(anchor as fn() -> u32 as usize) as u64
}

/// Whether the code at `addr` lies in the main executable, where a child
/// (a fresh `exec` of it) finds it at the same offset from [`anchor`]; see
/// [`SpawnError::ForeignFunction`](super::SpawnError::ForeignFunction).
pub(crate) fn in_executable(addr: usize) -> bool {
    match sys::main_executable_base() {
        Some(main) => sys::object_base(addr).is_none_or(|base| base == main),
        None => true,
    }
}

/// The offset of `addr` from [`anchor`].
pub(crate) fn offset_of(addr: usize) -> u64 {
    addr.wrapping_sub(anchor as fn() -> u32 as usize) as u64
}

/// The address `offset` bytes from [`anchor`] (the inverse of [`offset_of`]).
pub(crate) fn address_of(offset: u64) -> usize {
    (anchor as fn() -> u32 as usize).wrapping_add(offset as usize)
}

/// Runs the function of type `fn(A) -> R` at address `function` on the
/// arguments, and reports how it ended over `chan`. Returns the exit code.
///
/// Every step that runs user code (the arguments' `Deserialize`, the
/// function, the result's `Serialize` and `Drop`) runs under
/// `catch_unwind`: the trampoline is called from the `extern "C"` start-up
/// entry, where an escaping panic would abort the child instead of being
/// reported as the panic it is.
///
/// # Safety
/// `function` must be the address of a `fn(A) -> R` in this executable:
/// the parent computed it from a value of exactly that type, and the check
/// value proved this is the parent's executable.
pub(crate) unsafe fn trampoline<A: DeserializeOwned, R: Serialize>(
    function: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
    chan: &mut RawConnection,
) -> i32 {
    // SAFETY: guaranteed by the caller (see above); fn pointers and usize
    // have the same size.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let decoded = guarded(PanicStage::Arguments, || {
        handle::provide(fds, || Postcard::decode::<A>(args))
    });
    let args: A = match decoded {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            return report(
                chan,
                &Report::ArgsDecode {
                    type_name: std::any::type_name::<A>().to_string(),
                    message: e.to_string(),
                },
                &[],
                EXIT_FAILED,
            );
        }
        Err(panicked) => return report(chan, &panicked, &[], EXIT_PANIC),
    };
    let result = match guarded(PanicStage::Function, || f(args)) {
        Ok(result) => result,
        Err(panicked) => return report(chan, &panicked, &[], EXIT_PANIC),
    };
    // The result is dropped here, before anything is sent: a destructor that
    // panics is a panic of the child, not a value returned.
    let encoded = guarded(PanicStage::Result, move || {
        let mut buf = Vec::new();
        let (encoded, fds) = handle::collect(|| Postcard::encode(&result, &mut buf));
        drop(result);
        (encoded.map(|()| buf), fds)
    });
    let (encoded, fds) = match encoded {
        Ok(done) => done,
        Err(panicked) => return report(chan, &panicked, &[], EXIT_PANIC),
    };
    let encoded = encoded.map_err(|e| e.to_string()).and_then(|buf| {
        if fds.len() > sys::MAX_FDS_PER_MESSAGE {
            Err(format!(
                "it holds {} handles; at most {} can be returned",
                fds.len(),
                sys::MAX_FDS_PER_MESSAGE
            ))
        } else {
            Ok(buf)
        }
    });
    match encoded {
        Ok(buf) => report(chan, &Report::Returned(buf), &fds, 0),
        Err(e) => report(
            chan,
            &Report::ResultEncode {
                type_name: std::any::type_name::<R>().to_string(),
                message: e,
            },
            &[],
            EXIT_FAILED,
        ),
    }
}

/// Runs `step` under `catch_unwind`; a panic becomes the
/// [`Report::Panicked`] to send.
fn guarded<T>(stage: PanicStage, step: impl FnOnce() -> T) -> Result<T, Report> {
    catch_unwind(AssertUnwindSafe(step)).map_err(|payload| Report::Panicked {
        stage,
        message: panic_message(payload),
    })
}

/// The message of a panic. The payload is forgotten, not dropped: its own
/// destructor is user code that could panic again, outside any
/// `catch_unwind`, and the process exits right after anyway.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<panic payload that is not a string>".to_string()
    };
    std::mem::forget(payload);
    message
}

/// Sends `r` to the parent; returns `code`. A parent that is gone cannot be
/// told anything, so send errors are ignored.
fn report(chan: &mut RawConnection, r: &Report, fds: &[OwnedFd], code: i32) -> i32 {
    let mut buf = Vec::new();
    if Postcard::encode(r, &mut buf).is_ok() {
        let _ = chan.send_message(&buf, fds);
    }
    code
}

/// The child entry point: a function pointer in the ELF `.init_array`
/// section, which the dynamic loader (or, in a static binary, the C
/// runtime's start-up code) calls before `main`, with the process still
/// single-threaded.
///
/// Why before `main`: a child is a fresh `exec` of whatever program spawned
/// it, and that program's `main` knows nothing of mpkit. Running here, an
/// mpkit child runs its function and exits without ever reaching `main`;
/// in any other process [`run_if_child`] returns at once. That is what lets
/// test binaries, doctests, examples and benchmarks spawn with no set-up
/// code of their own.
///
/// What keeps it in the link: `#[used]` stops the compiler from dropping
/// the static, but a linker only takes an object file out of a static
/// library (an rlib) when something it already has refers to that object.
/// [`keep_entry`] refers to it, and `Builder::spawn` calls `keep_entry`:
/// any binary that can spawn a child can therefore also be one.
// The section is the platform's list of start-up functions; Linux (glibc,
// musl) calls each entry as `fn(argc, argv, envp)`, matching this type.
// Miri calls start-up functions with no arguments, and nothing spawns under
// Miri, so the entry is left out there.
#[used]
#[cfg_attr(not(miri), unsafe(link_section = ".init_array"))]
pub(crate) static CHILD_ENTRY: extern "C" fn(i32, *const *const u8, *const *const u8) = child_entry;

extern "C" fn child_entry(_argc: i32, _argv: *const *const u8, _envp: *const *const u8) {
    run_if_child();
}

/// Keeps [`CHILD_ENTRY`] in the link (see there): called from
/// `Builder::spawn`.
#[inline]
pub(crate) fn keep_entry() {
    std::hint::black_box(&CHILD_ENTRY);
}

/// Called before `main` in every process. Returns at once unless this
/// process is an mpkit child; a child never returns from it.
pub(crate) fn run_if_child() {
    let Some(value) = std::env::var_os(ENV_VAR) else {
        return;
    };
    // A set-user-id or file-capability program must not take orders from
    // an environment its (less privileged) caller chose.
    if sys::is_secure_exec() {
        return;
    }
    // SAFETY: this runs from `.init_array`, before `main`: the process has a
    // single thread, so nothing can read the environment concurrently.
    unsafe { std::env::remove_var(ENV_VAR) };
    // The trampoline reports panics of user code itself; this catches the
    // rest (a bug of mpkit's), which would otherwise abort at the `extern
    // "C"` entry. The panic hook has printed its message already.
    let fd = value.to_str().and_then(|v| v.parse::<RawFd>().ok());
    let code = match catch_unwind(|| run_child(fd)) {
        Ok(Ok(code)) => code,
        Ok(Err(message)) => {
            eprintln!("mpkit: child process could not start: {message}");
            EXIT_FAILED
        }
        Err(payload) => {
            let message = panic_message(payload);
            eprintln!("mpkit: child process failed: {message}");
            EXIT_FAILED
        }
    };
    std::process::exit(code);
}

/// True when process `pid` has exited (a zombie or already reaped). A pid
/// reused since by a live process reads as running: the caller then refuses,
/// which is the safe side.
fn has_exited(pid: i32) -> bool {
    match sys::pidfd_open(pid) {
        Ok(pidfd) => sys::pidfd_exited(pidfd.as_fd()).unwrap_or(false),
        Err(e) => e.raw_os_error() == Some(sys::ESRCH),
    }
}

fn run_child(fd: Option<RawFd>) -> Result<i32, String> {
    let fd = fd
        .filter(|&fd| fd > 2)
        .ok_or("bad bootstrap descriptor number")?;
    // SAFETY: the parent left exactly this descriptor open for us (it cleared
    // close-on-exec on it alone) and nothing else in this fresh process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if sys::fd_kind(fd.as_fd()).map_err(|e| e.to_string())? != sys::FdKind::Socket {
        return Err("the bootstrap descriptor is not a socket".into());
    }
    sys::set_cloexec(fd.as_fd(), true).map_err(|e| e.to_string())?;
    // Only our parent, running as our user, may tell us what to run. The
    // parent may have died since it sent the bootstrap (`spawn` does not
    // wait for us to start), leaving us re-parented: then the socket's
    // creator has exited, which is as good as a match.
    let (peer_pid, peer_uid) = sys::peer_credentials(fd.as_fd()).map_err(|e| e.to_string())?;
    if peer_uid != sys::getuid() {
        return Err("the bootstrap socket leads to another user's process".into());
    }
    if peer_pid != sys::getppid() && !has_exited(peer_pid) {
        return Err("the bootstrap socket does not lead to the parent process".into());
    }
    // As the Rust runtime would before main: a vanished reader is EPIPE.
    sys::ignore_sigpipe();
    let mut chan = RawConnection::new(fd, true, true, true);
    let (msg, fds) = chan
        .recv_with_fds(None)
        .map_err(|e| format!("no bootstrap message from the parent: {e}"))?;
    let boot: Bootstrap = Postcard::decode(&msg).map_err(|e| e.to_string())?;
    if boot.version != BOOTSTRAP_VERSION || boot.check != check_value() {
        let why = "the child is not running the parent's executable".to_string();
        return Ok(report(
            &mut chan,
            &Report::BadExecutable(why),
            &[],
            EXIT_FAILED,
        ));
    }
    super::set_identity(&boot);
    // SAFETY: the parent computed this offset from `trampoline::<A, R>` as a
    // `Trampoline`, and the check value shows this is the same executable.
    let tramp: Trampoline =
        unsafe { std::mem::transmute::<usize, Trampoline>(address_of(boot.trampoline)) };
    // SAFETY: the function offset was computed from a `fn(A) -> R` with the
    // same A and R the trampoline was instantiated with.
    let code = unsafe { tramp(address_of(boot.function), &boot.args, fds, &mut chan) };
    Ok(code)
}
