//! Worker mode: [`worker_main`], one line at the top of `main` that turns
//! the program into a supervisor of worker processes when asked to.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::remote_fn::AnyRemoteFn;
use super::worker::Worker;

/// Set (to `1`) in the environment of the worker processes a supervisor
/// starts: they run tasks instead of supervising.
pub const CHILD_ENV: &str = "MPKIT_WORKER_CHILD";

/// The first pause before a worker process that died is started again; it
/// doubles, up to [`RESTART_MAX`], and goes back to this after a worker
/// lived [`RESTART_RESET`].
const RESTART_FIRST: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(5);
const RESTART_RESET: Duration = Duration::from_secs(10);
/// How often the supervisor looks at its children and its stop flag.
const LOOK_EVERY: Duration = Duration::from_millis(50);
/// The exit code of a worker process that cannot ever work (a URL that is
/// not one): the supervisor stops instead of starting it again.
const EXIT_FATAL: i32 = 2;

/// Worker mode's settings, from the command line or the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mode {
    pub url: String,
    pub pool: String,
    pub processes: usize,
}

/// Reads worker mode's settings: `--mpkit-worker URL` (or
/// `--mpkit-worker=URL`, or `MPKIT_WORKER=URL`), `--mpkit-pool NAME` (or
/// `MPKIT_POOL`, default `default`), `MPKIT_WORKER_PROCESSES` (default
/// the CPU count). `None` when worker mode is not asked for.
pub(super) fn mode(args: &[String], env: impl Fn(&str) -> Option<String>) -> Option<Mode> {
    let flag = |name: &str| {
        let eq = format!("{name}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == name {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&eq).map(str::to_string)
            }
        })
    };
    let url = flag("--mpkit-worker").or_else(|| env("MPKIT_WORKER"))?;
    let pool = flag("--mpkit-pool")
        .or_else(|| env("MPKIT_POOL"))
        .unwrap_or_else(|| "default".to_string());
    let processes = env("MPKIT_WORKER_PROCESSES")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(crate::pool::cpu_count);
    Some(Mode {
        url,
        pool,
        processes,
    })
}

/// Worker mode, in one line at the top of `main`: if this process was
/// started as a worker (argument `--mpkit-worker URL`, or the environment
/// variable `MPKIT_WORKER=URL`; the pool's name from `--mpkit-pool NAME`
/// or `MPKIT_POOL`, default `default`), serves the pool's tasks for the
/// functions in `tasks` until SIGTERM or SIGINT, then exits; otherwise
/// returns at once.
///
/// The process started so is a supervisor: it starts
/// `MPKIT_WORKER_PROCESSES` (default: the CPU count) worker processes by
/// running its own executable again (`/proc/self/exe`, the same
/// arguments, and `MPKIT_WORKER_CHILD=1` in the environment, so that
/// `main` reaches this call in each and serves tasks there). A worker
/// process that dies (a task that aborted, the OOM killer) is started
/// again, after a pause that doubles from 100 ms to 5 s while they keep
/// dying. SIGTERM or SIGINT to the supervisor is passed on: each worker
/// finishes its current task and exits, then the supervisor does; a
/// second signal ends the supervisor at once, and its workers with it
/// (their tasks are delivered again after the visibility timeout). A
/// worker process itself only stops gracefully, so that a service manager
/// signalling the supervisor and its workers together (systemd's
/// default) still lets each finish its task. Worker
/// processes are killed (SIGKILL) when the supervisor dies, however it
/// ends (`PR_SET_PDEATHSIG`): their tasks are delivered again after the
/// visibility timeout.
///
/// ```no_run
/// use mpkit::redis_pool::{RedisPool, RemoteFn};
///
/// fn count(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// const COUNT: RemoteFn<String, usize> = RemoteFn::new("wordcount.count", count);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // `prog --mpkit-worker redis://10.0.0.3:6379` serves here and exits.
///     mpkit::redis_pool::worker_main(&[&COUNT]);
///     let pool = RedisPool::connect("redis://10.0.0.3:6379", "default")?;
///     let counts = pool.map(&COUNT, ["a b".to_string(), "c".to_string()])?;
///     assert_eq!(counts, [2, 1]);
///     Ok(())
/// }
/// ```
pub fn worker_main(tasks: &[&dyn AnyRemoteFn]) {
    let args: Vec<String> = std::env::args().collect();
    let Some(mode) = mode(&args, |k| std::env::var(k).ok()) else {
        return;
    };
    if std::env::var_os(CHILD_ENV).is_some() {
        std::process::exit(serve(&mode, tasks));
    }
    std::process::exit(supervise(&mode));
}

/// A worker process: serves until SIGTERM or SIGINT; the exit code.
fn serve(mode: &Mode, tasks: &[&dyn AnyRemoteFn]) -> i32 {
    let worker = match Worker::builder(&mode.url, &mode.pool)
        .tasks(tasks)
        .connect()
    {
        Ok(w) => w,
        Err(crate::redis_queue::RedisOpenError::Url(e)) => {
            eprintln!("mpkit worker: {} is not a Redis URL: {e}", mode.url);
            return EXIT_FATAL;
        }
        Err(e) => {
            eprintln!("mpkit worker: cannot reach the pool: {e}");
            return 1;
        }
    };
    // Only the graceful stop: a service manager signals the supervisor
    // and its workers together, and the supervisor then signals them
    // again; a second signal must not end a task half done. A second
    // signal to the supervisor ends it at once, and its workers with it
    // (their parent-death signal).
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = super::worker::stop_on_signal(&stop) {
        eprintln!("mpkit worker: cannot handle signals: {e}");
        return 1;
    }
    match worker.run_until(&stop) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mpkit worker: {e}");
            1
        }
    }
}

/// One worker process the supervisor keeps running.
struct Slot {
    child: Option<Child>,
    started: Instant,
    pause: Duration,
    /// When to start it again, after it died.
    restart_at: Option<Instant>,
}

fn start_child() -> std::io::Result<Child> {
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let parent = crate::sys::getpid();
    let mut cmd = Command::new("/proc/self/exe");
    // Its own process group: a Ctrl-C at the terminal reaches the
    // supervisor alone, which passes one SIGTERM on (a second signal
    // stops a worker at once).
    cmd.arg0(arg0)
        .args(args)
        .env(CHILD_ENV, "1")
        .process_group(0);
    // SAFETY: the hook runs in the child between fork and exec, and makes
    // two system calls (prctl, getppid), async-signal-safe, with no
    // allocation and no lock; an error fails the spawn.
    unsafe {
        cmd.pre_exec(move || crate::sys::kill_me_when_parent_thread_exits(parent));
    }
    cmd.spawn()
}

/// The supervisor's loop; the exit code.
fn supervise(mode: &Mode) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = super::worker::stop_on_signals(&stop) {
        eprintln!("mpkit worker supervisor: cannot handle signals: {e}");
        return 1;
    }
    let now = Instant::now();
    let mut slots: Vec<Slot> = (0..mode.processes)
        .map(|_| Slot {
            child: None,
            started: now,
            pause: RESTART_FIRST,
            restart_at: Some(now),
        })
        .collect();
    let mut code = 0;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        for slot in &mut slots {
            if let Some(child) = &mut slot.child {
                match child.try_wait() {
                    Ok(None) => continue,
                    Ok(Some(status)) => {
                        if status.code() == Some(EXIT_FATAL) {
                            code = EXIT_FATAL;
                            stop.store(true, Ordering::Release);
                        }
                        if now.duration_since(slot.started) >= RESTART_RESET {
                            slot.pause = RESTART_FIRST;
                        }
                        slot.restart_at = Some(now + slot.pause);
                        slot.pause = (slot.pause * 2).min(RESTART_MAX);
                        slot.child = None;
                    }
                    Err(_) => continue,
                }
            }
            if slot.restart_at.is_some_and(|at| at <= now) && !stop.load(Ordering::Acquire) {
                match start_child() {
                    Ok(child) => {
                        slot.child = Some(child);
                        slot.started = now;
                        slot.restart_at = None;
                    }
                    Err(e) => {
                        eprintln!("mpkit worker supervisor: cannot start a worker: {e}");
                        slot.restart_at = Some(now + slot.pause);
                        slot.pause = (slot.pause * 2).min(RESTART_MAX);
                    }
                }
            }
        }
        std::thread::sleep(LOOK_EVERY);
    }
    // Each worker finishes its task, then exits.
    for slot in &mut slots {
        if let Some(child) = &slot.child {
            // Not reaped yet: its pid cannot have been reused.
            let _ = crate::sys::kill(child.id() as i32, signal_hook::consts::SIGTERM);
        }
    }
    for slot in &mut slots {
        if let Some(child) = &mut slot.child {
            let _ = child.wait();
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::{Mode, mode};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn worker_mode_comes_from_arguments_or_the_environment() {
        let none = |_: &str| None;
        assert_eq!(mode(&args(&["prog", "x"]), none), None);
        let m = mode(&args(&["prog", "--mpkit-worker", "redis://h:1"]), none).unwrap();
        assert_eq!(
            (m.url.as_str(), m.pool.as_str()),
            ("redis://h:1", "default")
        );
        let m = mode(
            &args(&["prog", "--mpkit-worker=redis://h:2", "--mpkit-pool", "p"]),
            |k| (k == "MPKIT_WORKER_PROCESSES").then(|| "3".to_string()),
        )
        .unwrap();
        assert_eq!(
            m,
            Mode {
                url: "redis://h:2".into(),
                pool: "p".into(),
                processes: 3
            }
        );
        let m = mode(&args(&["prog"]), |k| match k {
            "MPKIT_WORKER" => Some("redis://e:3".into()),
            "MPKIT_POOL" => Some("q".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((m.url.as_str(), m.pool.as_str()), ("redis://e:3", "q"));
    }
}
