//! Support for the Redis pool's chaos and hosts tests: worker processes
//! the test starts itself (this very program in worker mode, one process
//! per worker, so the test knows each pid and may SIGKILL it), a log of
//! every execution of a task (one append-only file per worker process,
//! so side effects can be counted after the fact), what a test leaves
//! behind (children, zombies, `/dev/shm` files, Redis keys).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::eventually;
use crate::redis_server::RedisServer;

/// The directory a worker process logs its executions into (one file per
/// process, named by its pid).
pub const LOG_ENV: &str = "MPKIT_TEST_EXEC_LOG";
/// The host a worker process says it runs on (the hosts test).
pub const HOST_ENV: &str = "MPKIT_TEST_HOST";
/// One record of the log: the item, zero-padded, and a newline. Fixed
/// width, so that a record cut short by a SIGKILL is seen as such.
const RECORD: usize = 21;

/// The host this worker process runs on (`HOST_ENV`, or `?`).
pub fn host() -> String {
    std::env::var(HOST_ENV).unwrap_or_else(|_| "?".to_string())
}

/// Records that this process runs the task of item `x` now (a side
/// effect the test counts): one `write(2)` of one record to this
/// process's file. A no-op in a process without `LOG_ENV`.
pub fn record(x: u64) {
    static LOG: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        let dir = std::env::var_os(LOG_ENV)?;
        let path = Path::new(&dir).join(std::process::id().to_string());
        Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        )
    });
    if let Some(mut f) = log.as_ref() {
        let line = format!("{x:020}\n");
        assert_eq!(line.len(), RECORD);
        f.write_all(line.as_bytes()).unwrap();
    }
}

/// About `rounds` steps of a xorshift: CPU work that cannot be folded
/// away.
pub fn spin(rounds: u64) -> u64 {
    let mut x = rounds | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// Every execution logged in `dir`: item → the pids (file names) that ran
/// it, once per run. A record cut short (a worker killed mid-write) can
/// only be the last of its file, and is not counted.
pub fn executions(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).unwrap();
        for rec in bytes.chunks(RECORD) {
            if rec.len() < RECORD {
                break;
            }
            assert_eq!(rec[RECORD - 1], b'\n', "a torn record in {name}");
            let x: u64 = std::str::from_utf8(&rec[..RECORD - 1])
                .unwrap()
                .parse()
                .unwrap();
            out.entry(x).or_default().push(name.clone());
        }
    }
    out
}

/// How many executions are logged in `dir` (cheap: file sizes).
pub fn logged(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.metadata().map_or(0, |m| m.len() as usize) / RECORD)
                .sum()
        })
        .unwrap_or(0)
}

/// A test's scratch directory (the workers' run logs).
pub use crate::common::TempDir as Scratch;

/// Worker processes this test started itself: each is this program in
/// worker mode as one worker (`--mpkit-worker URL --mpkit-pool POOL` with
/// `MPKIT_WORKER_CHILD=1`: no supervisor between), optionally on another
/// host (`ip netns exec NS`, which execs the program in the same
/// process). Each gets SIGKILL if the thread that started it dies
/// (`PR_SET_PDEATHSIG`: a test aborted by its watchdog leaves none).
/// Stopped with SIGTERM when dropped, killed if they do not stop.
pub struct Fleet {
    url: String,
    pool: String,
    log: PathBuf,
    netns: Option<(String, String)>,
    pub workers: Vec<Child>,
    /// Every pid ever started.
    pub pids: Vec<u32>,
}

impl Fleet {
    /// `n` workers of `pool` at `url`, logging into `log`.
    pub fn start(url: &str, pool: &str, log: &Path, n: usize) -> Fleet {
        Self::start_on(url, pool, log, n, None)
    }

    /// The same on host `netns` (a network namespace), named `host` to
    /// the tasks (`HOST_ENV`).
    pub fn start_on(
        url: &str,
        pool: &str,
        log: &Path,
        n: usize,
        netns: Option<(&str, &str)>,
    ) -> Fleet {
        let mut fleet = Fleet {
            url: url.to_string(),
            pool: pool.to_string(),
            log: log.to_path_buf(),
            netns: netns.map(|(ns, host)| (ns.to_string(), host.to_string())),
            workers: Vec::new(),
            pids: Vec::new(),
        };
        for _ in 0..n {
            let w = fleet.spawn();
            fleet.workers.push(w);
        }
        fleet
    }

    fn spawn(&mut self) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match &self.netns {
            Some((ns, host)) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(exe).env(HOST_ENV, host);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.args(["--mpkit-worker", &self.url, "--mpkit-pool", &self.pool])
            .env(mpkit::redis_pool::CHILD_ENV, "1")
            .env(LOG_ENV, &self.log)
            .stdin(Stdio::null());
        // SAFETY: prctl(2) is async-signal-safe and the closure allocates
        // nothing.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        self.pids.push(child.id());
        child
    }

    /// SIGKILLs worker `i` (by its pid: our child, not yet reaped, so the
    /// pid is still its own), reaps it, and starts another in its place.
    pub fn kill_and_replace(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let _ = w.kill();
        let _ = w.wait();
        self.workers[i] = self.spawn();
    }

    /// The pids of the workers running now.
    pub fn running(&self) -> Vec<u32> {
        self.workers.iter().map(Child::id).collect()
    }

    /// SIGTERM to every worker; true if all exited within `timeout` (each
    /// finishes its task first). Those that did not are killed. All are
    /// reaped.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        for w in &self.workers {
            // SAFETY: kill(2) on our unreaped child, with a valid signal.
            unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
        }
        let graceful = eventually(timeout, || {
            self.workers
                .iter_mut()
                .all(|w| matches!(w.try_wait(), Ok(Some(_))))
        });
        for mut w in self.workers.drain(..) {
            let _ = w.kill();
            let _ = w.wait();
        }
        graceful
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// The children of process `pid` now, with their state letters (`Z`: a
/// zombie), from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command may hold spaces and parentheses: the fields
        // follow the last ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid {
            out.push((child, state));
        }
    }
    out
}

/// The files in `/dev/shm` that any of `pids` made (mpkit names them
/// `mpkit_PID_…`).
pub fn shm_of(pids: &[u32]) -> Vec<String> {
    let prefixes: Vec<String> = pids.iter().map(|p| format!("mpkit_{p}_")).collect();
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
                .collect()
        })
        .unwrap_or_default()
}

/// The keys on the server, sorted.
pub fn keys(s: &RedisServer) -> Vec<String> {
    let reply = s.cmd(&[b"KEYS", b"*"]);
    let mut keys: Vec<String> = reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// An integer reply (`:N`) of `s` to `args`.
pub fn int(s: &RedisServer, args: &[&[u8]]) -> i64 {
    let r = s.cmd(args);
    r.trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{args:?} answered {r:?}"))
}

/// After a pool `pool`'s callers dropped it and its workers stopped: its
/// tasks stream is empty with nothing pending, and what is left of it is
/// only what the docs say stays (the stream, `meta`, and the `workers`
/// set while registrations have not expired); no caller's lease or
/// results.
pub fn assert_pool_clean(s: &RedisServer, pool: &str) {
    let tasks = format!("mpkit:pool:{{{pool}}}:tasks");
    let allowed: Vec<String> = ["meta", "tasks", "workers"]
        .iter()
        .map(|k| format!("mpkit:pool:{{{pool}}}:{k}"))
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || keys(s)
            .iter()
            .all(|k| allowed.contains(k))),
        "keys left: {:?}",
        keys(s)
    );
    assert_eq!(int(s, &[b"XLEN", tasks.as_bytes()]), 0, "tasks left");
    let pending = s.cmd(&[b"XPENDING", tasks.as_bytes(), b"mpkit"]);
    assert!(pending.starts_with("*4\r\n:0\r\n"), "pending: {pending:?}");
}

/// A small xorshift for the tests' random choices (seeded from the clock;
/// the seed is printed).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("  rng seed {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Waits (30 s at most) until `pool` sees `n` workers registered.
pub fn await_workers(pool: &mpkit::redis_pool::RedisPool, n: usize) {
    assert!(
        eventually(Duration::from_secs(30), || pool.workers().unwrap() >= n),
        "{} of {n} workers registered",
        pool.workers().unwrap()
    );
}
