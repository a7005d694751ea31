//! The Redis pool's figures (`--only redis-pool`): `RedisPool` against the
//! local `mpkit::Pool` with the same number of worker processes, in the
//! same run and in turns (so that load from elsewhere weighs on both
//! alike): CPU-bound tasks of about 1 ms at chunksize 1, and the cost per
//! trivial task at chunksize 1 (what going through Redis adds to a task).
//!
//! The Redis pool's workers are this program in worker mode (`mpkit
//! --mpkit-worker URL`: `main` calls [`worker_main`] with [`TASKS`]), two
//! worker processes under one supervisor, served by a private
//! `redis-server` on a loopback port. Both are stopped when the figures
//! are in, and die with this process (parent-death signals) if it is
//! killed first.
//!
//! [`worker_main`]: mpkit::redis_pool::worker_main

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mpkit::Pool;
use mpkit::redis_pool::{AnyRemoteFn, RedisPool, RemoteFn};
use mpkit_bench::redis_server::{self, RedisServer};
use serde::Serialize;

use super::{Context, Mode, Result};

/// Worker processes of both pools.
const WORKERS: usize = 2;
/// The pool's name on the private server.
const POOL: &str = "bench";

fn inc(x: u64) -> u64 {
    x + 1
}

/// About `rounds` steps of a xorshift: CPU work that cannot be folded away.
fn spin(rounds: u64) -> u64 {
    let mut x = rounds | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

const SPIN: RemoteFn<u64, u64> = RemoteFn::new("mpkit.bench.spin", spin);
const INC: RemoteFn<u64, u64> = RemoteFn::new("mpkit.bench.inc", inc);

/// What this program's worker mode serves (for `main`'s `worker_main`).
pub(crate) const TASKS: &[&dyn AnyRemoteFn] = &[&SPIN, &INC];

/// Everything measured, as `--json` prints it (`redis_pool`).
#[derive(Serialize)]
pub(super) struct RedisPoolFigures {
    /// Worker processes of each pool.
    pub(super) workers: usize,
    /// CPU-bound tasks of about `cpu_task_ms` each, chunksize 1.
    pub(super) cpu_tasks: u64,
    pub(super) cpu_task_ms: f64,
    /// Milliseconds for all of them: the local pool, the Redis pool.
    pub(super) local_cpu_ms: f64,
    pub(super) redis_cpu_ms: f64,
    /// Trivial tasks (`x + 1`) at chunksize 1.
    pub(super) trivial_tasks: u64,
    /// Microseconds per trivial task: the local pool, the Redis pool.
    pub(super) local_task_us: f64,
    pub(super) redis_task_us: f64,
    pub(super) notes: Vec<String>,
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The fastest of five runs of `f`: what it costs when nothing else
/// runs (the machine is shared).
fn fastest(mut f: impl FnMut()) -> Duration {
    (0..5).map(|_| timed(&mut f).0).min().unwrap_or_default()
}

/// Rounds of [`spin`] that take about `target` here (each step timed by
/// its fastest of five runs, so that a preemption does not shrink it).
fn calibrate(target: Duration) -> u64 {
    let mut rounds = 1_000;
    loop {
        let t = fastest(|| {
            spin(rounds);
        });
        if t >= target / 4 {
            return (rounds as f64 * target.as_secs_f64() / t.as_secs_f64()) as u64;
        }
        rounds *= 2;
    }
}

/// The median times of `local` and `redis`, run in turns until `budget`
/// is spent, `turns` times each at least.
fn medians_in_turn(
    budget: Duration,
    turns: usize,
    mut local: impl FnMut() -> Result<Duration>,
    mut redis: impl FnMut() -> Result<Duration>,
) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() < turns || start.elapsed() < budget {
        a.push(local()?);
        b.push(redis()?);
    }
    a.sort();
    b.sort();
    Ok((a[a.len() / 2], b[b.len() / 2]))
}

/// The Redis pool's worker processes: this program in worker mode, one
/// supervisor of [`WORKERS`] processes; stopped (SIGTERM, then SIGKILL)
/// when dropped, and sent SIGTERM if this process dies first.
struct Workers(Child);

impl Workers {
    fn start(url: &str) -> Result<Workers> {
        let mut cmd = Command::new(std::env::current_exe().ctx("this program's path")?);
        cmd.args(["--mpkit-worker", url, "--mpkit-pool", POOL])
            .env("MPKIT_WORKER_PROCESSES", WORKERS.to_string())
            .stdin(Stdio::null());
        // SAFETY: prctl(2) is async-signal-safe; the closure allocates
        // nothing. The supervisor passes SIGTERM on to its workers.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        Ok(Workers(
            cmd.spawn().ctx("starting the Redis pool's workers")?,
        ))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our unreaped child, with a valid signal.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measures the figures, or says why they cannot be (no `redis-server`).
pub(super) fn measure(mode: Mode) -> Result<RedisPoolFigures> {
    if !redis_server::installed() {
        return Err(
            "redis-pool: redis-server is not installed (scripts/redis-server installs it)".into(),
        );
    }
    let budget = mode.budget();
    // Many turns: the two pools' times vary with what else runs.
    let (cpu_tasks, trivial_tasks, turns) = match mode {
        Mode::Tiny => (16, 100, 3),
        Mode::Quick => (200, 1_000, 5),
        Mode::Full => (200, 1_000, 9),
    };
    let server = RedisServer::try_start()?;
    let url = server.url();
    let _workers = Workers::start(&url)?;
    let redis = RedisPool::connect(&url, POOL).ctx("RedisPool::connect")?;
    let local = Pool::new(WORKERS).ctx("Pool::new")?;
    // Both pools warm: every worker up and answering.
    let up = Instant::now();
    while redis.workers().ctx("RedisPool::workers")? < WORKERS {
        if up.elapsed() > Duration::from_secs(20) {
            return Err("the Redis pool's workers did not register within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let warm = (0..4 * WORKERS as u64).collect::<Vec<_>>();
    redis
        .map_chunked(&INC, warm.clone(), 1)
        .ctx("warming the Redis pool")?;
    local
        .map_chunked(inc, warm, 1)
        .ctx("warming the local pool")?;

    let rounds = calibrate(Duration::from_millis(1));
    let task_ms = ms(fastest(|| {
        spin(rounds);
    }));
    let work = vec![rounds; cpu_tasks as usize];
    let want = spin(rounds);
    let check = |out: Vec<u64>, what: &str| -> Result<()> {
        if out.len() == work.len() && out.iter().all(|&r| r == want) {
            Ok(())
        } else {
            Err(format!("{what} returned the wrong results"))
        }
    };
    let (local_cpu, redis_cpu) = medians_in_turn(
        budget,
        turns,
        || {
            let (t, out) = timed(|| local.map_chunked(spin, work.clone(), 1));
            check(out.ctx("Pool::map")?, "Pool::map")?;
            Ok(t)
        },
        || {
            let (t, out) = timed(|| redis.map_chunked(&SPIN, work.clone(), 1));
            check(out.ctx("RedisPool::map")?, "RedisPool::map")?;
            Ok(t)
        },
    )?;
    let trivial = |out: Vec<u64>, what: &str| -> Result<()> {
        if out.len() as u64 == trivial_tasks && out.last() == Some(&trivial_tasks) {
            Ok(())
        } else {
            Err(format!("{what} returned the wrong results"))
        }
    };
    let (local_task, redis_task) = medians_in_turn(
        budget,
        turns,
        || {
            let (t, out) = timed(|| local.map_chunked(inc, 0..trivial_tasks, 1));
            trivial(out.ctx("Pool::map")?, "Pool::map")?;
            Ok(t)
        },
        || {
            let (t, out) = timed(|| redis.map_chunked(&INC, 0..trivial_tasks, 1));
            trivial(out.ctx("RedisPool::map")?, "RedisPool::map")?;
            Ok(t)
        },
    )?;
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / trivial_tasks as f64;
    Ok(RedisPoolFigures {
        workers: WORKERS,
        cpu_tasks,
        cpu_task_ms: task_ms,
        local_cpu_ms: ms(local_cpu),
        redis_cpu_ms: ms(redis_cpu),
        trivial_tasks,
        local_task_us: per_task(local_task),
        redis_task_us: per_task(redis_task),
        notes: vec![format!(
            "Redis pool: a private redis-server on the loopback, {WORKERS} worker processes (mpkit --mpkit-worker)"
        )],
    })
}

impl RedisPoolFigures {
    /// `(what, figure, ratio)` lines; a ratio above 1 means the Redis pool
    /// is that many times slower than the local pool.
    fn lines(&self) -> Vec<[String; 3]> {
        vec![
            [
                format!(
                    "{} CPU-bound tasks of {:.1} ms, {} workers, local Pool",
                    self.cpu_tasks, self.cpu_task_ms, self.workers
                ),
                format!("{:.1} ms", self.local_cpu_ms),
                String::new(),
            ],
            [
                "the same, RedisPool (workers through Redis)".to_string(),
                format!("{:.1} ms", self.redis_cpu_ms),
                format!(
                    "x{:.2} the local time",
                    self.redis_cpu_ms / self.local_cpu_ms
                ),
            ],
            [
                format!(
                    "per trivial task at chunksize 1 ({} tasks), local Pool",
                    self.trivial_tasks
                ),
                format!("{:.1} µs", self.local_task_us),
                String::new(),
            ],
            [
                "the same, RedisPool".to_string(),
                format!("{:.1} µs", self.redis_task_us),
                format!(
                    "x{:.2} the local cost",
                    self.redis_task_us / self.local_task_us
                ),
            ],
        ]
    }

    pub(super) fn human(&self) -> String {
        let title =
            "Redis pool against the local pool (same workers, same run; ratios: Redis / local)";
        super::text::figures_human(title, &self.lines(), &self.notes)
    }

    pub(super) fn markdown(&self) -> String {
        super::text::figures_markdown("Redis pool work", &self.lines(), &self.notes)
    }
}
