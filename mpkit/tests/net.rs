//! Listener/Client: against CPython's own multiprocessing.connection (every
//! interpreter the machine has), and against hostile peers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::codec::Pickle;
use mpkit::net::{Client, Listener, NetError, wait};
use mpkit::{Connection, Process};
use serde::{Deserialize, Serialize};

/// A fresh directory for socket files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("mpkit-net-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every Python interpreter on this machine that has multiprocessing;
/// python3 itself is required (see [`common::require_peer`]), the others
/// are tried when present.
fn pythons() -> Vec<String> {
    if !common::require_peer(
        "python3 with multiprocessing.connection",
        Command::new("python3").args(["-c", "import multiprocessing.connection"]),
    ) {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut candidates: Vec<String> = [
        "python3",
        "python3.11",
        "python3.12",
        "python3.13",
        "python3.14",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Interpreters installed side by side (pyenv) but not on PATH.
    let pyenv = std::env::var("PYENV_ROOT")
        .unwrap_or_else(|_| format!("{}/.pyenv", std::env::var("HOME").unwrap_or_default()));
    if let Ok(dirs) = std::fs::read_dir(format!("{pyenv}/versions")) {
        let mut dirs: Vec<_> = dirs
            .filter_map(|d| d.ok())
            .map(|d| d.path().join("bin/python3"))
            .collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().map(|p| p.to_string_lossy().into_owned()));
    }
    for py in candidates {
        let py = py.as_str();
        let out = Command::new(py)
            .args([
                "-c",
                "import multiprocessing.connection, sys; print('%d.%d' % sys.version_info[:2])",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                // By default: the machine's python3 (the legacy HMAC-MD5
                // handshake up to 3.11) and every 3.12+ (the {sha256} form).
                // MPKIT_TEST_ALL_PYTHONS=1 adds every 3.6+ found (all pass).
                let minor = v
                    .strip_prefix("3.")
                    .and_then(|m| m.parse::<u32>().ok())
                    .unwrap_or(0);
                let all = std::env::var_os("MPKIT_TEST_ALL_PYTHONS").is_some();
                let recent = py == "python3" || minor >= 12 || (all && minor >= 6);
                if recent && !found.iter().any(|(_, seen)| *seen == v) {
                    found.push((py.to_string(), v));
                }
            }
            _ => println!("{py}: not on this machine (optional)"),
        }
    }
    println!("interpreters: {found:?}");
    found.into_iter().map(|(p, _)| p).collect()
}

/// Runs a Python script with a deadline; returns (success, stdout, stderr).
fn run_python(child: Child, secs: u64) -> (bool, String, String) {
    let mut child = child;
    // Read while it runs, so a chatty script never blocks on a full pipe.
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            from.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    // Not reaped before the wait below, so the pid is still this child's.
    let exited = common::pidfd(child.id() as i32);
    if !common::wait_exit(&exited, Duration::from_secs(secs)) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("python still running after {secs} s");
    }
    let status = child.wait().unwrap();
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
addr, key = sys.argv[1], sys.argv[2]
c = Client(addr, authkey=None if key == '-' else key.encode())
c.send({'message': 'hi', 'n': [1, 2]})
print(repr(c.recv()), flush=True)
c.send_bytes(b'raw bytes from python')
print(c.recv_bytes().decode(), flush=True)
c.close()
"#;

const PY_SERVER: &str = r#"
import sys
from multiprocessing.connection import Listener
addr, key = sys.argv[1], sys.argv[2]
with Listener(addr, authkey=None if key == '-' else key.encode()) as l:
    print('listening', flush=True)
    with l.accept() as c:
        obj = c.recv()
        c.send({'echo': obj, 'from': 'python'})
        c.send_bytes(c.recv_bytes().upper())
"#;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Hello {
    message: String,
    n: Vec<i64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Reply {
    ok: bool,
    total: i64,
    echo: String,
}

#[test]
fn python_clients_talk_to_an_mpkit_listener() {
    let _w = watchdog(120);
    let dir = TempDir::new("pyclient");
    for py in pythons() {
        let path = dir.path(&format!("{py}.sock"));
        let listener = Listener::bind(&path, Some(b"k3y")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "socket files are private");
        let client = Command::new(&py)
            .args(["-c", PY_CLIENT, &path, "k3y"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut conn = listener
            .accept_timeout(Duration::from_secs(20))
            .unwrap()
            .with_codec::<Pickle>();
        let hello: Hello = conn.recv().unwrap();
        assert_eq!(
            hello,
            Hello {
                message: "hi".into(),
                n: vec![1, 2]
            }
        );
        conn.send(&Reply {
            ok: true,
            total: 3,
            echo: hello.message,
        })
        .unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"raw bytes from python");
        conn.send_bytes(b"pong from rust").unwrap();
        let (ok, out, err) = run_python(client, 30);
        assert!(ok, "{py}: {err}");
        assert!(
            out.contains("'ok': True")
                && out.contains("'total': 3")
                && out.contains("'echo': 'hi'"),
            "{py}: {out}"
        );
        assert!(out.contains("pong from rust"), "{py}: {out}");
        drop(listener);
        assert!(
            !std::path::Path::new(&path).exists(),
            "the socket file is removed with the listener"
        );
    }
}

#[test]
fn an_mpkit_client_talks_to_python_listeners() {
    let _w = watchdog(120);
    let dir = TempDir::new("pyserver");
    for py in pythons() {
        let path = dir.path(&format!("{py}.sock"));
        let mut server = Command::new(&py)
            .args(["-c", PY_SERVER, &path, "k3y"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(server.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "listening", "{py}");
        let mut conn = Client::connect_timeout(&path, Some(b"k3y"), Duration::from_secs(20))
            .unwrap()
            .with_codec::<Pickle>();
        conn.send(&Hello {
            message: "from rust".into(),
            n: vec![4, 5, 6],
        })
        .unwrap();
        #[derive(Deserialize, Debug)]
        struct Echo {
            echo: Hello,
            from: String,
        }
        let echo: Echo = conn.recv().unwrap();
        assert_eq!(
            (
                echo.echo.message.as_str(),
                echo.echo.n.as_slice(),
                echo.from.as_str()
            ),
            ("from rust", &[4, 5, 6][..], "python")
        );
        conn.send_bytes(b"shout").unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"SHOUT");
        let (ok, _, err) = run_python(server, 30);
        assert!(ok, "{py}: {err}");
    }
}

#[test]
fn a_wrong_or_missing_key_fails_on_both_sides() {
    let _w = watchdog(120);
    let dir = TempDir::new("wrongkey");
    for py in pythons() {
        // Python presents the wrong key to an mpkit listener.
        let path = dir.path(&format!("{py}-a.sock"));
        let listener = Listener::builder()
            .authkey(b"right")
            .handshake_timeout(Duration::from_secs(5))
            .bind(&path)
            .unwrap();
        let client = Command::new(&py)
            .args(["-c", PY_CLIENT, &path, "wrong"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(matches!(
            listener.accept_timeout(Duration::from_secs(20)),
            Err(NetError::Authentication(_))
        ));
        let (ok, _, err) = run_python(client, 30);
        assert!(!ok && err.contains("AuthenticationError"), "{py}: {err}");

        // Python has no key at all, so it never answers the challenge and
        // keeps the connection open until it is killed: only the listener's
        // handshake timeout (5 s) can end the accept, well within 10 s.
        let mut client = Command::new(&py)
            .args(["-c", "import sys, time\nfrom multiprocessing.connection import Client\nc = Client(sys.argv[1])\ntime.sleep(600)", &path])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let r = listener.accept_timeout(Duration::from_secs(20));
        let took = start.elapsed();
        let _ = client.kill();
        let _ = client.wait();
        assert!(matches!(r, Err(NetError::Authentication(_))), "{py}: {r:?}");
        assert!(took < Duration::from_secs(10), "{py}: {took:?}");

        // An mpkit client with the wrong key against a Python listener.
        let path = dir.path(&format!("{py}-b.sock"));
        let mut server = Command::new(&py)
            .args(["-c", PY_SERVER, &path, "right"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(server.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        let r = Client::connect_timeout(&path, Some(b"wrong"), Duration::from_secs(20));
        assert!(matches!(r, Err(NetError::Authentication(_))), "{py}: {r:?}");
        let (ok, _, err) = run_python(server, 30);
        assert!(!ok && err.contains("AuthenticationError"), "{py}: {err}");
    }
}

/// Connects a raw socket, lets `hostile` misbehave, and checks that the
/// listener reports an authentication error quickly.
fn hostile_peer(
    listener: &Listener,
    path: &str,
    hostile: impl FnOnce(&mut UnixStream) + Send + 'static,
) -> Duration {
    let path = path.to_string();
    let peer = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        hostile(&mut s);
        s
    });
    let start = Instant::now();
    let r = listener.accept_timeout(Duration::from_secs(10));
    let took = start.elapsed();
    assert!(matches!(r, Err(NetError::Authentication(_))), "{r:?}");
    drop(peer.join().unwrap());
    took
}

#[test]
fn hostile_peers_are_cut_off_quickly() {
    let _w = watchdog(60);
    let dir = TempDir::new("hostile");
    let path = dir.path("l.sock");
    let listener = Listener::builder()
        .authkey(b"key")
        .handshake_timeout(Duration::from_millis(300))
        .bind(&path)
        .unwrap();
    // Silence: cut off at the handshake timeout.
    let took = hostile_peer(&listener, &path, |_| {});
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // A huge announced length: refused without reading (or allocating) it.
    let took = hostile_peer(&listener, &path, |s| {
        let _ = s.write_all(&i32::MAX.to_be_bytes());
    });
    assert!(took < Duration::from_millis(250), "{took:?}");
    // Garbage that is not a frame at all.
    hostile_peer(&listener, &path, |s| {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    // Slow loris: a valid frame header, then one byte every 100 ms, each
    // well within the handshake timeout, the whole frame far beyond it
    // (20 s): only a deadline for the whole handshake cuts it off in time.
    let took = hostile_peer(&listener, &path, |s| {
        let _ = s.write_all(&200i32.to_be_bytes());
        for _ in 0..200 {
            if s.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The listener still serves an honest client afterwards.
    let p = path.clone();
    let honest =
        std::thread::spawn(move || Client::connect(&p, Some(b"key")).map(|mut c| c.send(&1u8)));
    let mut conn = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(conn.recv::<u8>().unwrap(), 1);
    honest.join().unwrap().unwrap().unwrap();
}

#[test]
fn a_hostile_listener_cannot_hang_a_client() {
    let _w = watchdog(30);
    let dir = TempDir::new("hostile-server");
    let path = dir.path("l.sock");
    let raw = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (client_done, done) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut s, _) = raw.accept().unwrap();
        // A frame announcing far more than a challenge may be, and the
        // connection held open (no end of file to end the client's wait)
        // until the client has given up.
        let _ = s.write_all(&1_000_000i32.to_be_bytes());
        let _ = done.recv();
    });
    let start = Instant::now();
    let r = Client::connect_timeout(&path, Some(b"key"), Duration::from_secs(5));
    let took = start.elapsed();
    client_done.send(()).unwrap();
    server.join().unwrap();
    assert!(matches!(r, Err(NetError::Authentication(_))), "{r:?}");
    assert!(
        took < Duration::from_secs(2),
        "refused on the announced length, not at the timeout: {took:?}"
    );
}

#[test]
fn tcp_and_abstract_addresses_and_the_remote_rule() {
    let _w = watchdog(30);
    assert!(matches!(
        Listener::bind("0.0.0.0:0", None),
        Err(NetError::RemoteWithoutKey(_))
    ));
    let open = Listener::builder()
        .allow_unauthenticated_remote(true)
        .bind("0.0.0.0:0")
        .unwrap();
    drop(open);
    let keyed = Listener::bind("0.0.0.0:0", Some(b"k")).unwrap();
    drop(keyed);
    let tcp = Listener::bind(":0", None).unwrap();
    let addr = tcp.address().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let name = format!("@mpkit-test-{}", std::process::id());
    let abs = Listener::bind(&name, Some(b"k")).unwrap();
    let child = Process::spawn(
        |(tcp, abs): (String, String)| {
            let mut a = Client::connect(&tcp, None).unwrap();
            a.send(&"tcp").unwrap();
            let mut b = Client::connect(&abs, Some(b"k")).unwrap();
            b.send(&"abstract").unwrap();
        },
        (addr, name),
    )
    .unwrap();
    assert_eq!(tcp.accept().unwrap().recv::<String>().unwrap(), "tcp");
    assert_eq!(abs.accept().unwrap().recv::<String>().unwrap(), "abstract");
    child.join().unwrap();
}

#[test]
fn wait_watches_connections_listeners_and_processes() {
    let _w = watchdog(30);
    let dir = TempDir::new("wait");
    let path = dir.path("w.sock");
    let listener = Listener::bind(&path, None).unwrap();
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let (quiet, _keep) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |(mut c, path): (Connection, String)| {
            c.recv::<()>().unwrap();
            let _ = Client::connect(&path, None).unwrap();
            c.send(&"done").unwrap();
        },
        (there, path.clone()),
    )
    .unwrap();
    assert!(
        wait(
            &[&listener, &quiet, &here, &child],
            Some(Duration::from_millis(20))
        )
        .unwrap()
        .is_empty()
    );
    here.send(&()).unwrap();
    assert!(wait(&[&listener], Some(Duration::from_secs(10))).unwrap() == [0]);
    let _peer = listener.accept().unwrap();
    let ready = wait(&[&quiet, &here], Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ready, [1]);
    assert_eq!(here.recv::<String>().unwrap(), "done");
    assert_eq!(
        wait(&[&quiet, &child], Some(Duration::from_secs(10))).unwrap(),
        [1],
        "the child's exit"
    );
    child.join().unwrap();
}

/// How many descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `sendmsg` of `bytes` with `fds` attached (`SCM_RIGHTS`), as a peer that
/// ignores the protocol might send them.
fn send_with_rights(sock: &UnixStream, bytes: &[u8], fds: &[i32]) {
    use std::os::fd::AsRawFd;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the call, and the control buffer holds one SCM_RIGHTS message of
    // exactly `fds`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        let n = libc::sendmsg(sock.as_raw_fd(), &msg, 0);
        assert_eq!(
            n,
            bytes.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

fn plain_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn descriptors_nobody_announced_are_closed_at_once() {
    let _w = watchdog(60);
    let dir = TempDir::new("fds");
    let path = dir.path("l.sock");
    let listener = Listener::bind(&path, None).unwrap();
    // The hostile peer, in another process: 50 plain frames with 253
    // descriptors each, one announcing 1 descriptor and carrying 5, then an
    // honest message that passes a pipe end.
    let peer = Process::spawn(
        |path: String| {
            use std::os::fd::AsRawFd;
            let sock = UnixStream::connect(&path).unwrap();
            let null = std::fs::File::open("/dev/null").unwrap();
            let many = vec![null.as_raw_fd(); 253];
            for i in 0..50u32 {
                send_with_rights(&sock, &plain_frame(&i.to_be_bytes()), &many);
            }
            let mut extra = (-2i32).to_be_bytes().to_vec();
            extra.extend_from_slice(&1u32.to_be_bytes());
            extra.extend_from_slice(&plain_frame(b"one announced"));
            send_with_rights(&sock, &extra, &many[..5]);
            let mut conn: Connection = Connection::from(sock);
            let (mut here, there) = mpkit::pipe(true).unwrap();
            conn.send(&there).unwrap();
            drop(there);
            here.send(&"through the passed pipe").unwrap();
            // Stay until the receiver has checked everything.
            conn.recv::<()>().unwrap();
        },
        path.clone(),
    )
    .unwrap();
    let before = open_fds();
    let mut conn = listener.accept_timeout(Duration::from_secs(20)).unwrap();
    let mut most = 0;
    for i in 0..50u32 {
        assert_eq!(conn.recv_bytes().unwrap(), i.to_be_bytes());
        most = most.max(open_fds());
    }
    assert_eq!(conn.recv_bytes().unwrap(), b"one announced");
    most = most.max(open_fds());
    // Other tests of this binary run beside this one: a little slack.
    assert!(
        most < before + 300,
        "the receiver kept unannounced descriptors: {most} open, {before} before"
    );
    let mut passed: Connection = conn.recv().unwrap();
    assert_eq!(passed.recv::<String>().unwrap(), "through the passed pipe");
    drop(passed);
    conn.send(&()).unwrap();
    peer.join().unwrap();
    drop(conn);
    assert!(
        open_fds() < before + 50,
        "{} open, {before} before",
        open_fds()
    );
}

#[test]
fn a_killed_listeners_socket_file_is_named_and_can_be_taken_over() {
    let _w = watchdog(60);
    let dir = TempDir::new("stale");
    let path = dir.path("server.sock");
    // A server that binds, says so, and is killed without a chance to
    // remove its socket file.
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let server = Process::spawn(
        |(mut c, path): (Connection, String)| {
            let _listener = Listener::bind(&path, None).unwrap();
            c.send(&"bound").unwrap();
            let _ = c.recv::<()>();
        },
        (there, path.clone()),
    )
    .unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "bound");
    server.kill().unwrap();
    assert!(server.join().is_err(), "killed");
    assert!(
        std::path::Path::new(&path).exists(),
        "the file stays behind"
    );

    // A plain bind names the path and says nobody listens there.
    match Listener::bind(&path, None) {
        Err(e @ NetError::AddressInUse { stale: true, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&path) && text.contains("replace_stale"),
                "{text}"
            );
            assert!(
                matches!(e, NetError::AddressInUse { address: mpkit::net::Address::Unix(p), .. } if p.to_str() == Some(path.as_str()))
            );
        }
        other => panic!("expected AddressInUse, got {other:?}"),
    }
    // Taking it over works, and the new listener serves clients.
    let listener = Listener::builder().replace_stale(true).bind(&path).unwrap();
    // A live listener's file is never taken over.
    match Listener::builder().replace_stale(true).bind(&path) {
        Err(e @ NetError::AddressInUse { stale: false, .. }) => {
            assert!(e.to_string().contains(&path), "{e}");
        }
        other => panic!("expected AddressInUse, got {other:?}"),
    }
    // The probe connected and left: the listener reports that peer's
    // failed handshake or hands out its connection at end of file; either
    // way the next client gets through.
    let p = path.clone();
    let client = Process::spawn(
        |p: String| {
            Client::connect(&p, None)
                .unwrap()
                .send(&"after takeover")
                .unwrap()
        },
        p,
    )
    .unwrap();
    let got = loop {
        let mut c = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        match c.recv::<String>() {
            Ok(s) => break s,
            Err(_) => continue,
        }
    };
    assert_eq!(got, "after takeover");
    client.join().unwrap();
    // Other files are never removed.
    let plain = dir.path("plain-file");
    std::fs::write(&plain, b"data").unwrap();
    assert!(matches!(
        Listener::builder().replace_stale(true).bind(&plain),
        Err(NetError::AddressInUse { stale: false, .. })
    ));
    assert_eq!(std::fs::read(&plain).unwrap(), b"data");
}

/// Connects `silent` peers that never say a word (from another process),
/// then an honest client; returns how long the honest client took to be
/// accepted. Failed handshakes on the way are skipped, as a server does.
fn honest_client_behind_silent_peers(listener: &Listener, path: &str, silent: usize) -> Duration {
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let crowd = Process::spawn(
        |(mut c, path, silent): (Connection, String, usize)| {
            let peers: Vec<UnixStream> = (0..silent)
                .map(|_| UnixStream::connect(&path).unwrap())
                .collect();
            c.send(&peers.len()).unwrap();
            // Silent until the test is over.
            let _ = c.recv::<()>();
        },
        (there, path.to_string(), silent),
    )
    .unwrap();
    assert_eq!(here.recv::<usize>().unwrap(), silent);
    let p = path.to_string();
    let start = Instant::now();
    let honest = Process::spawn(
        |p: String| {
            let mut c = Client::connect_timeout(&p, Some(b"key"), Duration::from_secs(20)).unwrap();
            c.send(&"honest").unwrap();
        },
        p,
    )
    .unwrap();
    let budget = Duration::from_secs(5);
    let mut conn = loop {
        let left = budget.saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "no honest client within {budget:?}");
        match listener.accept_timeout(left) {
            Ok(c) => break c,
            Err(NetError::Authentication(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    let took = start.elapsed();
    assert_eq!(conn.recv::<String>().unwrap(), "honest");
    honest.join().unwrap();
    here.send(&()).unwrap();
    crowd.join().unwrap();
    took
}

#[test]
fn silent_peers_cannot_keep_an_honest_client_out() {
    let _w = watchdog(120);
    let dir = TempDir::new("starve");
    // A hundred silent peers, each given the default 10 s to answer.
    let path = dir.path("l.sock");
    let listener = Listener::builder()
        .authkey(b"key")
        .backlog(256)
        .bind(&path)
        .unwrap();
    let took = honest_client_behind_silent_peers(&listener, &path, 100);
    assert!(took < Duration::from_secs(1), "{took:?}");
    // With room for only 8 pending handshakes, the idlest peers are
    // dropped to make room, never the client that keeps answering.
    let path = dir.path("small.sock");
    let listener = Listener::builder()
        .authkey(b"key")
        .backlog(256)
        .max_pending_handshakes(8)
        .bind(&path)
        .unwrap();
    let took = honest_client_behind_silent_peers(&listener, &path, 100);
    assert!(took < Duration::from_secs(1), "{took:?}");
}
