//! A real Redis server for one test: `redis-server` on a free loopback
//! port, in a temporary directory, without persistence unless asked for
//! AOF; ready when it answers PING; killed by its pid when dropped (and by
//! the kernel if the test process dies first). `scripts/redis-server`
//! installs the program; under CI a missing one fails the test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to start and answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    aof: bool,
}

/// Whether `redis-server` can run here: skip (false) on a developer's
/// machine without it, fail under CI (`common::require_peer`'s policy).
pub fn available() -> bool {
    crate::common::require_peer(
        "redis-server (run scripts/redis-server to install it)",
        Command::new("redis-server").arg("--version"),
    )
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// A server that appends every write to an AOF (fsync always), so a
    /// restart keeps everything acknowledged.
    pub fn start_with_aof() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(aof: bool) -> RedisServer {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mpkit-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            aof,
        };
        // A port found free may be taken before the server binds it: try
        // another then.
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            match server.spawn_on(port) {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Starts the server again on the same port and directory (after
    /// [`kill`](Self::kill)); with AOF it reloads its data.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn_on(port)
            .unwrap_or_else(|why| panic!("redis-server did not restart: {why}"));
    }

    fn spawn_on(&mut self, port: u16) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .args(["--logfile", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: prctl(2) is async-signal-safe; the closure allocates
        // nothing. The server is killed if this test process dies without
        // running `Drop` (a watchdog abort).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("redis-server could not start: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        self.port = port;
        // The server says when it listens; the log goes on in a thread so
        // the pipe never fills.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(Ok(()));
                }
                log.push_str(&line);
                log.push('\n');
            }
            let _ = tx.send(Err(log));
        });
        let deadline = Instant::now() + READY_WITHIN;
        let ready = rx.recv_timeout(READY_WITHIN);
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(log)) => {
                self.kill();
                return Err(format!("redis-server exited:\n{log}"));
            }
            Err(_) => {
                self.kill();
                return Err("redis-server did not say it was ready".into());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.cmd_within(&["PING"], left.max(Duration::from_millis(100))) {
            Ok(r) if r.starts_with("+PONG") => Ok(()),
            other => {
                self.kill();
                Err(format!("PING answered {other:?}"))
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server (SIGKILL, by its pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command (RESP) and returns the raw reply; for what the
    /// queue's API cannot do (a raw XADD of a malformed entry, CLIENT LIST).
    pub fn cmd(&self, args: &[&[u8]]) -> String {
        let args: Vec<&[u8]> = args.to_vec();
        self.raw(&args, Duration::from_secs(5)).unwrap()
    }

    fn cmd_within(&self, args: &[&str], timeout: Duration) -> std::io::Result<String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.raw(&args, timeout)
    }

    fn raw(&self, args: &[&[u8]], timeout: Duration) -> std::io::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req)?;
        // Read until one whole reply is in.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if complete(&buf) {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Whether `buf` holds one whole RESP2 reply.
fn complete(buf: &[u8]) -> bool {
    value_end(buf, 0).is_some()
}

/// Where the RESP2 value starting at `at` ends, if all of it is in `buf`.
fn value_end(buf: &[u8], at: usize) -> Option<usize> {
    let eol = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[at + 1..eol]).ok()?;
    let next = eol + 2;
    match buf[at] {
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some(next);
            }
            let end = next + len as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut pos = next;
            for _ in 0..n.max(0) {
                pos = value_end(buf, pos)?;
            }
            Some(pos)
        }
        _ => Some(next),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
