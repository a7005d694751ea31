//! The Python side of the benchmarks: which interpreter, which optional
//! modules it has, the scripts, and a running script spoken to line by line.
//!
//! The scripts live in `mpkit-bench/python/`. The criterion benchmarks run
//! them by path (their children, started with the "spawn" method, import
//! them again), through [`PyBench`] and the protocol of
//! `bench_protocol.py`; `mpkit bench` carries its own script,
//! [`CLI_SCRIPT`], inside the binary and runs it with `python -c`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The criterion pipe benchmark's script (`benches/pipe.rs`).
pub const PIPE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_bench.py");
/// The criterion queue benchmark's script (`benches/queue/`).
pub const QUEUE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_queue_bench.py");
/// The criterion sync benchmark's script (`benches/sync.rs`).
pub const SYNC_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_sync_bench.py");
/// The criterion net benchmark's script (`benches/net.rs`).
pub const NET_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_net_bench.py");
/// The criterion pool benchmark's script (`benches/pool.rs`).
pub const POOL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_pool_bench.py");
/// The Python side of `mpkit bench`'s Python rows (the source itself: the
/// binary runs without the source tree).
pub const CLI_SCRIPT: &str = include_str!("../python/bench_mp.py");

/// The venv `scripts/bench-setup` makes (with faster-fifo in it).
const BENCH_VENV_PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/bench-venv/bin/python"
);

/// Python's version (`3.12.3`) if `python` runs and imports
/// multiprocessing, or why not.
pub fn python_version(python: &str) -> Result<String, String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import multiprocessing, sys; print(sys.version.split()[0])",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("`{python}` could not be run ({e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{python}` cannot import multiprocessing: {}",
            err.trim().lines().last().unwrap_or("(no message)")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Python interpreter to run `script` with, or why there is none:
/// `MPKIT_BENCH_PYTHON` if set, else the venv of `scripts/bench-setup`
/// (`target/bench-venv`) if there is one, else `python3`. Prints which.
pub fn find_python(script: &str) -> Result<String, String> {
    let (python, why) = match std::env::var("MPKIT_BENCH_PYTHON") {
        Ok(p) => (p, "MPKIT_BENCH_PYTHON"),
        Err(_) if Path::new(BENCH_VENV_PYTHON).is_file() => {
            let venv = Path::new(BENCH_VENV_PYTHON);
            // Shown without the `mpkit-bench/..` detour.
            let shown = venv
                .parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .and_then(|target| std::fs::canonicalize(target).ok())
                .map_or_else(|| venv.to_path_buf(), |t| t.join("bench-venv/bin/python"));
            (
                shown.to_string_lossy().into_owned(),
                "the venv of scripts/bench-setup",
            )
        }
        Err(_) => (
            "python3".to_string(),
            "no MPKIT_BENCH_PYTHON, no target/bench-venv",
        ),
    };
    let version = python_version(&python)?;
    if !Path::new(script).is_file() {
        return Err(format!("{script} is missing"));
    }
    println!("Python rows: `{python}` (Python {version}; {why}), {script}");
    Ok(python)
}

/// The version of Python module `module` (its distribution's, else its
/// `__version__`, else `?`) if `python` can import it, or why not.
pub fn python_module(python: &str, module: &str) -> Result<String, String> {
    let code = format!(
        "import importlib, importlib.metadata as md\n\
         m = importlib.import_module({module:?})\n\
         try:\n    v = md.version({dist:?})\n\
         except Exception:\n    v = getattr(m, '__version__', '?')\n\
         print(v)",
        dist = module.replace('_', "-"),
    );
    let out = Command::new(python)
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{python}` could not be run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{python}` cannot import {module}: {}",
            err.trim().lines().last().unwrap_or("(no message)")
        ))
    }
}

/// What Python runs.
#[derive(Clone, Copy, Debug)]
pub enum Script<'a> {
    /// A file, by path.
    File(&'a str),
    /// Source code, run with `python -c`.
    Source(&'a str),
}

/// A running Python script, in a process group of its own (so a terminal's
/// Ctrl-C reaches only the benchmark, which ends the script by closing its
/// input, and so the whole group can be killed), spoken to by lines on its
/// standard input and output. Its standard error is kept for messages.
///
/// Dropped while running, it is stopped as by [`stop`](Self::stop) with
/// two seconds' patience.
pub struct PyProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl PyProcess {
    /// Starts `python SCRIPT ARGS…` (with no `__pycache__` written).
    pub fn spawn<A: AsRef<OsStr>>(
        python: &str,
        script: Script<'_>,
        args: &[A],
    ) -> Result<PyProcess, String> {
        let mut cmd = Command::new(python);
        match script {
            Script::File(path) => cmd.arg(path),
            Script::Source(code) => cmd.arg("-c").arg(code),
        };
        cmd.args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| format!("start `{python}`: {e}"))?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (tx, lines) = mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let collected = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = stderr {
            let collected = Arc::clone(&collected);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                *collected.lock().unwrap_or_else(|e| e.into_inner()) = text;
            });
        }
        Ok(PyProcess {
            child,
            stdin,
            lines,
            stderr: collected,
        })
    }

    /// The script's process id, which is also its process group's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The script's next line of output, waiting at most `timeout`
    /// (`None`: as long as it takes).
    pub fn line(&mut self, timeout: Option<Duration>) -> Result<String, String> {
        let got = match timeout {
            Some(t) => self.lines.recv_timeout(t),
            None => self
                .lines
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the Python helper did not answer within {:?}",
                timeout.unwrap_or_default()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Give the stderr reader a moment to collect the traceback.
                let _ = self.child.wait();
                std::thread::sleep(Duration::from_millis(50));
                let err = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
                Err(format!(
                    "the Python helper ended: {}",
                    err.trim().lines().last().unwrap_or("(no message)")
                ))
            }
        }
    }

    /// Writes `line` to the script; its next line of output (as
    /// [`line`](Self::line)).
    pub fn request(&mut self, line: &str, timeout: Option<Duration>) -> Result<String, String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the Python helper is closed".to_string())?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("write to the Python helper: {e}"))?;
        self.line(timeout)
    }

    /// Whether [`stop`](Self::stop) is still to come.
    pub fn running(&self) -> bool {
        self.stdin.is_some()
    }

    /// Ends the script: end of input (it cleans up and exits); after
    /// `patience` (`None`: none, it is waited for), its whole process group
    /// is killed.
    pub fn stop(&mut self, patience: Option<Duration>) -> Result<(), String> {
        self.stdin = None;
        let status = match patience {
            None => self.child.wait().ok(),
            Some(patience) => {
                let deadline = Instant::now() + patience;
                loop {
                    match self.child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        _ => break None,
                    }
                }
            }
        };
        if status.is_none() {
            let pgid = self.child.id() as i32;
            // SAFETY: kill takes plain integers; the script (not yet
            // reaped) still owns its process group id.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("the Python helper ended with {s}")),
            None => Err("the Python helper did not stop; it was killed".into()),
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.stop(Some(Duration::from_secs(2)));
        }
    }
}

/// A running criterion-side Python script (see `python/bench_protocol.py`):
/// it prints `ready`, then for each line in (a count of iterations) one
/// line out (the nanoseconds it measured); end of input makes it clean up
/// and exit. Every failure panics, naming the script.
pub struct PyBench {
    /// The script's file name, for messages.
    name: String,
    py: PyProcess,
}

impl PyBench {
    /// Starts `python script args…` and waits for its `ready`.
    ///
    /// # Panics
    /// If it cannot start or does not say `ready`.
    pub fn start(python: &str, script: &str, args: &[&str]) -> PyBench {
        let name = Path::new(script)
            .file_name()
            .map_or_else(|| script.into(), |n| n.to_string_lossy().into_owned());
        let mut py = PyProcess::spawn(python, Script::File(script), args)
            .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"));
        let ready = py
            .line(None)
            .unwrap_or_else(|e| panic!("{name} {args:?} did not start: {e}"));
        assert_eq!(ready.trim(), "ready", "{name} {args:?} did not start");
        PyBench { name, py }
    }

    /// Has the script run `n` iterations; the time it measured.
    ///
    /// # Panics
    /// If the script fails or replies something else than a count of
    /// nanoseconds.
    pub fn run(&mut self, n: u64) -> Duration {
        let reply = self
            .py
            .request(&n.to_string(), None)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        let ns: u64 = reply
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} replied {reply:?}", self.name));
        Duration::from_nanos(ns)
    }
}

impl Drop for PyBench {
    fn drop(&mut self) {
        // End of input: the script cleans up and exits.
        if let Err(e) = self.py.stop(None) {
            eprintln!("{}: {e}", self.name);
        }
    }
}
