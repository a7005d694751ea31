//! Worker threads that run a test's operations one at a time, and the
//! proptest runner.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// How long one operation may take before the test calls it blocked (the
/// longest wait is [`TINY`](crate::TINY); the watchdog is the backstop).
const HUNG: Duration = Duration::from_secs(5);

fn config(cases: u32) -> Config {
    Config {
        cases,
        // No regression files in the repository.
        failure_persistence: None,
        max_shrink_iters: 4096,
        // Keeps shrinking within the watchdogs.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

pub fn run_property<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let start = Instant::now();
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
    eprintln!("{cases} cases in {:?}", start.elapsed());
}

/// How a worker thread reaches the queue.
pub enum Handle<'a, Q> {
    /// The test's own handle (queues are `Sync`).
    Shared(&'a Q),
    /// A handle of its own (`try_clone`: another mapping of the segment).
    Own(Q),
}

impl<Q> Handle<'_, Q> {
    fn get(&self) -> &Q {
        match self {
            Handle::Shared(q) => q,
            Handle::Own(q) => q,
        }
    }
}

/// Has worker `t` run a command: its outcome, or why there was none.
pub type Run<'a, C, O> = dyn FnMut(usize, &C) -> Result<O, String> + 'a;

/// Runs `body` with one worker thread per handle, each running the
/// commands it is sent with `exec`, one at a time. `body` gets a function
/// that has worker `t` run a command and returns its outcome, or why there
/// was none: a command still running after [`HUNG`] (a blocking operation
/// that the model says returns at once) is let out by `close` (a waiting
/// put or get then fails) and reported.
pub fn with_workers<Q, C, O, R>(
    handles: Vec<Handle<'_, Q>>,
    exec: fn(&Q, &C) -> O,
    close: impl Fn(),
    body: impl FnOnce(&mut Run<C, O>) -> R,
) -> R
where
    Q: Send + Sync,
    C: Clone + Send,
    O: Send,
{
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for handle in handles {
            let (cmd_tx, cmd_rx) = mpsc::channel::<C>();
            let (out_tx, out_rx) = mpsc::channel::<O>();
            s.spawn(move || {
                let q = handle.get();
                for cmd in cmd_rx {
                    if out_tx.send(exec(q, &cmd)).is_err() {
                        break;
                    }
                }
            });
            workers.push((cmd_tx, out_rx));
        }
        // Dropping `workers` (on return or unwind) ends the threads.
        let mut run = |t: usize, cmd: &C| -> Result<O, String> {
            let (tx, rx) = &workers[t];
            tx.send(cmd.clone())
                .map_err(|_| format!("worker {t} is gone"))?;
            match rx.recv_timeout(HUNG) {
                Ok(out) => Ok(out),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("worker {t} panicked")),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    close();
                    let after = match rx.recv_timeout(HUNG) {
                        Ok(_) => "returned once the queue was closed",
                        Err(_) => "still blocked after close",
                    };
                    Err(format!("blocked for {HUNG:?} ({after})"))
                }
            }
        };
        body(&mut run)
    })
}
