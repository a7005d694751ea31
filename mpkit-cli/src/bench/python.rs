//! The Python rows: `mpkit-bench/python/bench_mp.py`, carried in the
//! binary, run once per mechanism.

use std::ffi::OsStr;
use std::time::Duration;

use mpkit_bench::python::{CLI_SCRIPT, PyProcess, Script, python_version};

use super::Result;
use super::channels::{ACK_TIMEOUT, OPEN_TIMEOUT};
use super::cleanup::leftovers;
use super::mechanisms::Ctx;
use super::worker::Bench;

/// A working Python interpreter.
pub(super) struct Python {
    pub(super) path: String,
    pub(super) version: String,
}

/// `python` if it runs and imports multiprocessing, or why not.
pub(super) fn find_python(python: &str) -> Result<Python> {
    Ok(Python {
        path: python.to_string(),
        version: python_version(python)?,
    })
}

/// A running `bench_mp.py` for one mechanism, in a process group of its
/// own (so a terminal's Ctrl-C reaches this process, which cleans up, and
/// so the whole group can be killed), registered for the cleanup on a
/// signal until it is stopped.
pub(super) struct PyBench(PyProcess);

impl PyBench {
    pub(super) fn start(python: &str, mechanism: &str, ctx: &Ctx) -> Result<PyBench> {
        let socket = ctx.dir.join("python.sock");
        let child_cpu = ctx
            .placement
            .map_or_else(|| "any".to_string(), |p| p.child_cpu.to_string());
        let args = [
            OsStr::new(mechanism),
            socket.as_os_str(),
            OsStr::new(&child_cpu),
        ];
        // Registered under the lock, so a signal cannot come between.
        let py = leftovers(|l| {
            let py = PyProcess::spawn(python, Script::Source(CLI_SCRIPT), &args)?;
            l.groups.push(py.pid() as i32);
            Ok::<_, String>(py)
        })?;
        let mut py = PyBench(py);
        let ready = py.0.line(Some(OPEN_TIMEOUT * 3))?;
        if !ready.starts_with("ready") {
            return Err(format!("the Python helper said {ready:?}"));
        }
        Ok(py)
    }

    pub(super) fn request(&mut self, line: &str) -> Result<String> {
        self.0.request(line, Some(ACK_TIMEOUT))
    }

    /// Ends the helper (see [`PyProcess::stop`]) and forgets its group.
    pub(super) fn stop(&mut self, patience: Duration) -> Result {
        let pgid = self.0.pid() as i32;
        let stopped = self.0.stop(Some(patience));
        leftovers(|l| l.groups.retain(|&g| g != pgid));
        stopped
    }
}

impl Bench for PyBench {
    fn throughput(&mut self, n: u64, size: usize) -> Result<Duration> {
        let reply = self.request(&format!("tp {n} {size}"))?;
        let ns: u64 = reply
            .trim()
            .parse()
            .map_err(|_| format!("the Python helper replied {reply:?}"))?;
        Ok(Duration::from_nanos(ns))
    }

    fn roundtrip(&mut self, n: u64, samples: &mut Vec<u32>) -> Result {
        let reply = self.request(&format!("rt {n}"))?;
        let before = samples.len();
        for word in reply.split_ascii_whitespace() {
            let ns: u64 = word
                .parse()
                .map_err(|_| format!("the Python helper replied {word:?}"))?;
            samples.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
        if (samples.len() - before) as u64 != n {
            return Err("the Python helper sent the wrong number of round trips".into());
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result {
        self.stop(Duration::from_secs(10))
    }
}

impl Drop for PyBench {
    fn drop(&mut self) {
        if self.0.running() {
            let _ = self.stop(Duration::from_secs(2));
        }
    }
}
