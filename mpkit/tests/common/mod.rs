//! Shared test support: a watchdog that turns a hang into a fast failure,
//! one policy for tests that need an outside peer (python3, a C compiler),
//! and waits that observe a process's state instead of guessing it with a
//! sleep.
#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Fails the whole test binary if dropped later than `secs` after creation:
/// kills every child mpkit started for this process, then aborts, so a hang
/// costs seconds instead of CI's limit.
#[must_use = "the watchdog stops watching when dropped"]
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
}

pub fn watchdog(secs: u64) -> Watchdog {
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let seen = Arc::clone(&done);
    let test = std::thread::current().name().unwrap_or("?").to_string();
    std::thread::spawn(move || {
        let (lock, cvar) = &*seen;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = cvar
            .wait_timeout_while(guard, Duration::from_secs(secs), |done| !*done)
            .unwrap();
        if timeout.timed_out() && !*guard {
            eprintln!(
                "watchdog: test `{test}` still running after {secs} s; killing its children and aborting"
            );
            for child in mpkit::process::active_children() {
                // SAFETY: kill(2) with a pid we spawned and a valid signal.
                unsafe { libc::kill(child.pid(), libc::SIGKILL) };
            }
            remove_test_objects();
            std::process::abort();
        }
    });
    Watchdog { done }
}

/// Another process writes each `(offset, bytes)` into the named object's
/// file in `/dev/shm`, as any process of the same user may.
pub fn scribble_from_another_process(name: &str, writes: Vec<(u64, Vec<u8>)>) {
    mpkit::Process::spawn(
        |(name, writes): (String, Vec<(u64, Vec<u8>)>)| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{name}"))
                .unwrap();
            for (offset, bytes) in writes {
                f.write_all_at(&bytes, offset).unwrap();
            }
        },
        (name.to_string(), writes),
    )
    .unwrap()
    .join()
    .unwrap();
}

/// Little-endian bytes of `values`.
pub fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Removes the named objects this test process made, by the naming
/// conventions of the tests (`mpkit_test_PID_…`, `mpkit-fuzz-KIND-PID-…`):
/// an abort runs no destructor, and a failing test must not leave them in
/// `/dev/shm`.
pub fn remove_test_objects() {
    let pid = std::process::id();
    let (test, fuzz) = (format!("mpkit_test_{pid}_"), format!("-{pid}-"));
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&test) || (name.starts_with("mpkit-fuzz-") && name.contains(&fuzz)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.done;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
}

/// Opens a pidfd for any process (not only our children).
pub fn pidfd(pid: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh descriptor we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits until the process behind `pidfd` exits; false on timeout.
pub fn wait_exit(pidfd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n == 1
}

/// Waits (bounded) until `cond` holds, checking every few milliseconds.
/// For conditions the kernel offers no notification for (a /proc entry
/// vanishing); the bound makes a failure fast, never a hang.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Whether this run is under CI (`CI` set, and not to `false` or `0`), where
/// every peer a test needs must be installed.
pub fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok(v) if !v.is_empty() && v != "false" && v != "0")
}

/// The one policy for tests that need a program outside the Rust toolchain
/// (`what`, e.g. "python3 with multiprocessing.shared_memory"): runs `probe`
/// and returns true when it succeeds. When it does not, the test is
/// skipped with a message (returns false) on a developer's machine, and
/// fails with the reason under CI, where a skipped test would otherwise
/// pass without testing anything. `scripts/test` checks for the same
/// programs before it runs the tests.
pub fn require_peer(what: &str, probe: &mut std::process::Command) -> bool {
    let why = match probe
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!(
            "{:?} failed ({}): {}",
            probe,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("{probe:?} could not start: {e}"),
    };
    if under_ci() {
        panic!(
            "{what} is needed by this test and CI is set, so it may not be skipped: {why} \
             (install it; ./scripts/test checks for it)"
        );
    }
    println!("SKIPPED: {what} is not available ({why}); under CI this test fails");
    false
}

/// The state letter of a thread (`R` running, `S` sleeping, `T` stopped,
/// …) and its wait channel (`futex_wait_queue`, `futex_do_wait`, …; `None`
/// where the kernel hides it), read from `/proc/<pid>/task/<tid>/`.
pub fn thread_state(pid: i32, tid: i32) -> Option<(char, Option<String>)> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the state follows
    // the last ')'.
    let state = stat[stat.rfind(')')? + 1..].trim_start().chars().next()?;
    let wchan = std::fs::read_to_string(format!("{dir}/wchan"))
        .ok()
        .filter(|w| !w.is_empty() && w != "0");
    Some((state, wchan))
}

/// Waits (bounded) until thread `tid` of process `pid` is asleep in a futex
/// wait: the state a test means by "the other side is blocked now". Where
/// the kernel hides wait channels, asleep is all that can be observed.
/// False if it never got there within `timeout`.
pub fn wait_until_asleep_in_futex(pid: i32, tid: i32, timeout: Duration) -> bool {
    eventually(timeout, || {
        matches!(
            thread_state(pid, tid),
            Some(('S', wchan)) if wchan.as_deref().is_none_or(|w| w.contains("futex"))
        )
    })
}

/// Stores the calling thread's id in `slot` (shared memory the parent also
/// holds), just before the thread blocks, so that the parent can see it
/// block with [`assert_asleep_in_futex`].
pub fn publish_tid(slot: &mpkit::shm::RawValue<i32>) {
    // SAFETY: gettid(2) has no preconditions.
    let tid = unsafe { libc::gettid() };
    slot.atomic()
        .store(tid, std::sync::atomic::Ordering::SeqCst);
}

/// Waits (bounded) until process `pid` has published a thread id in `slot`
/// ([`publish_tid`]) and that thread is asleep in a futex wait; fails the
/// test, with the thread's state, if that does not happen within `timeout`.
pub fn assert_asleep_in_futex(pid: i32, slot: &mpkit::shm::RawValue<i32>, timeout: Duration) {
    let end = std::time::Instant::now() + timeout;
    let published = || slot.atomic().load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        eventually(timeout, || published() != 0),
        "process {pid} never said which thread blocks"
    );
    let tid = published();
    let left = end.saturating_duration_since(std::time::Instant::now());
    assert!(
        wait_until_asleep_in_futex(pid, tid, left),
        "thread {tid} of process {pid} never went to sleep in a futex wait: {:?}",
        thread_state(pid, tid)
    );
}

/// The runner of a `harness = false` test program: libtest's arguments
/// (a name filter, `--list`; the others ignored), each test in its own
/// thread under a watchdog of `secs`.
pub fn run_tests(tests: &[(&str, fn())], secs: u64) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let mut failed = Vec::new();
    let mut ran = 0;
    for &(name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let t0 = Instant::now();
        println!("test {name} ...");
        let outcome = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _w = watchdog(secs);
                test()
            })
            .unwrap()
            .join();
        match outcome {
            Ok(()) => println!("test {name} ... ok ({:.1?})", t0.elapsed()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    println!("\n{} passed; {} failed", ran - failed.len(), failed.len());
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}

/// A temporary directory for one test (`mpkit-test-PID-TAG`), removed
/// when dropped, even if the test fails; those of test processes that are
/// gone (aborted by their watchdog: no destructor ran) are removed first.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        const PREFIX: &str = "mpkit-test-";
        if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in dir.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let Some(rest) = file.strip_prefix(PREFIX) else {
                    continue;
                };
                let pid = rest.split('-').next().unwrap_or("");
                if pid.parse::<u32>().is_ok()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This process's open descriptors.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The descriptors of this process that are sockets.
pub fn socket_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target.to_str()?.starts_with("socket:").then_some(fd)
        })
        .collect()
}

/// Opens /dev/null until this process has no descriptor left.
pub fn use_up_fds(hold: &mut Vec<std::fs::File>) {
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hold.push(f);
    }
}

/// The first place two lists differ, for a short failure message.
pub fn first_diff<T: PartialEq + std::fmt::Debug>(want: &[T], got: &[T]) -> String {
    if want.len() != got.len() {
        return format!("{} values, want {}", got.len(), want.len());
    }
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!("at {i}: got {:?}, want {:?}", got[i], want[i]),
        None => "equal".into(),
    }
}
