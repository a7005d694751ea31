//! A TCP proxy a test controls, between a client and a real server: it
//! passes bytes both ways, or swallows the next reply (the request reached
//! the server and ran, the client never hears back), or turns into a
//! server that accepts connections and never answers. Its threads live as
//! long as the test process.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const PASS: u8 = 0;
const SWALLOW_NEXT_REPLY: u8 = 1;
const SILENT: u8 = 2;

pub struct TcpProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    swallowed: Arc<AtomicUsize>,
}

impl TcpProxy {
    /// A proxy on a free loopback port to `upstream`, passing bytes.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let swallowed = Arc::new(AtomicUsize::new(0));
        let (m, sw) = (Arc::clone(&mode), Arc::clone(&swallowed));
        std::thread::spawn(move || {
            // Silent connections are kept open, never read.
            let mut held = Vec::new();
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if m.load(Ordering::SeqCst) == SILENT {
                    held.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                pump(server, client, Some((Arc::clone(&m), Arc::clone(&sw))));
            }
        });
        TcpProxy {
            port,
            mode,
            swallowed,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The next reply from the server (on any connection) is dropped.
    pub fn swallow_next_reply(&self) {
        self.mode.store(SWALLOW_NEXT_REPLY, Ordering::SeqCst);
    }

    /// How many replies were swallowed.
    pub fn swallowed(&self) -> usize {
        self.swallowed.load(Ordering::SeqCst)
    }

    /// From now on nothing reaches the client: replies on open connections
    /// are dropped, and new connections are accepted and never answered.
    pub fn go_silent(&self) {
        self.mode.store(SILENT, Ordering::SeqCst);
    }

    pub fn pass(&self) {
        self.mode.store(PASS, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` in a thread; for replies (`mode` given), drops
/// what the mode says to drop.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: Option<(Arc<AtomicU8>, Arc<AtomicUsize>)>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some((mode, swallowed)) = &mode {
                let now = mode.load(Ordering::SeqCst);
                if now == SILENT {
                    continue;
                }
                let swallow = now == SWALLOW_NEXT_REPLY
                    && mode
                        .compare_exchange(now, PASS, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                if swallow {
                    swallowed.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
