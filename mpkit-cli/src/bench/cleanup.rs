//! What is left to clean up if a signal ends the run, and the guards that
//! remove it when the run ends normally.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Mutex, Once};

use mpkit::msgq::{PosixQueue, SysvQueue};
use mpkit::signal::Signal;

use super::{Context, Result};

/// Objects that outlive this process unless removed, and the Python
/// helpers' process groups.
pub(super) struct Leftovers {
    pub(super) sysv: Vec<SysvQueue>,
    pub(super) posix: Vec<String>,
    pub(super) dirs: Vec<PathBuf>,
    /// The chart's file, until it is written.
    pub(super) files: Vec<PathBuf>,
    pub(super) groups: Vec<i32>,
}

/// What a signal's cleanup removes.
pub(super) static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    sysv: Vec::new(),
    posix: Vec::new(),
    dirs: Vec::new(),
    files: Vec::new(),
    groups: Vec::new(),
});

/// Runs `f` on [`LEFTOVERS`] under its lock.
pub(super) fn leftovers<T>(f: impl FnOnce(&mut Leftovers) -> T) -> T {
    f(&mut LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// On SIGINT, SIGTERM or SIGHUP: removes what is left, kills the Python
/// helpers (mpkit's children are daemons: they die with this process), and
/// exits with 128 + the signal's number.
pub(super) fn watch_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(signals) = mpkit::signal::channel(&[Signal::INT, Signal::TERM, Signal::HUP]) else {
            return; // no cleanup on signals, but the run itself is fine
        };
        let _ = std::thread::Builder::new()
            .name("mpkit-bench-signals".into())
            .spawn(move || {
                if let Ok(signal) = signals.recv() {
                    // Held until exit: nothing new is registered meanwhile.
                    let mut left = LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner());
                    for &pgid in &left.groups {
                        // SAFETY: kill takes plain integers; -pgid is the
                        // helper's own process group.
                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    }
                    for q in left.sysv.drain(..) {
                        let _ = q.remove();
                    }
                    for name in &left.posix {
                        let _ = PosixQueue::unlink(name);
                    }
                    for dir in &left.dirs {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    for file in &left.files {
                        let _ = std::fs::remove_file(file);
                    }
                    eprintln!(
                        "\nmpkit: bench interrupted by {signal}; what it had created is removed"
                    );
                    std::process::exit(128 + signal.number());
                }
            });
    });
}

/// A private directory for FIFOs and sockets, removed when dropped.
pub(super) struct TempDir {
    pub(super) path: PathBuf,
}

impl TempDir {
    pub(super) fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        for attempt in 0..100 {
            let path = base.join(format!("mpkit-bench-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    leftovers(|l| l.dirs.push(path.clone()));
                    return Ok(TempDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("create {}: {e}", path.display())),
            }
        }
        Err(format!(
            "no free directory name for mpkit-bench in {}",
            base.display()
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        leftovers(|l| l.dirs.retain(|d| d != &self.path));
    }
}

/// A private System V queue, removed when dropped (or by [`remove`](Self::remove)).
pub(super) struct SysvGuard(Option<SysvQueue>);

impl SysvGuard {
    pub(super) fn new() -> Result<SysvGuard> {
        // Registered under the lock, so a signal cannot come between.
        leftovers(|l| {
            let q = SysvQueue::private(0o600).ctx("create a System V queue")?;
            l.sysv.push(q);
            Ok(SysvGuard(Some(q)))
        })
    }

    pub(super) fn queue(&self) -> Result<SysvQueue> {
        self.0
            .ok_or_else(|| "the System V queue was removed".to_string())
    }

    pub(super) fn remove(&mut self) {
        if let Some(q) = self.0.take() {
            leftovers(|l| l.sysv.retain(|x| x != &q));
            let _ = q.remove();
        }
    }
}

impl Drop for SysvGuard {
    fn drop(&mut self) {
        self.remove();
    }
}
