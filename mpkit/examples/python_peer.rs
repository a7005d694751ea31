//! A Rust program and a Python program (standard library only) talking
//! through `multiprocessing.connection`: first a Rust `Listener` serves a
//! Python `Client`, then a Rust `Client` calls a Python `Listener`. They
//! exchange dicts (as Rust structs, through the Pickle codec) and raw bytes,
//! authenticated with a shared key.
//!
//! ```text
//! cargo run --example python_peer
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use mpkit::codec::Pickle;
use mpkit::net::{Client, Listener};
use serde::{Deserialize, Serialize};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python_peer.py");
const KEY: &[u8] = b"shared secret";

#[derive(Serialize, Deserialize, Debug)]
struct Request {
    message: String,
    numbers: Vec<i64>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Reply {
    answer: i64,
    from: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("mpkit-python-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    // 1. A Rust Listener serves a Python Client.
    let address = dir.join("rust.sock").to_string_lossy().into_owned();
    let listener = Listener::bind(&address, Some(KEY))?;
    let mut python = Command::new("python3")
        .args([SCRIPT, "client", &address, "shared secret"])
        .spawn()?;
    let mut conn = listener
        .accept_timeout(Duration::from_secs(30))?
        .with_codec::<Pickle>();
    let request: Request = conn.recv()?;
    println!("rust listener got: {request:?}");
    conn.send(&Reply {
        answer: request.numbers.iter().sum(),
        from: "Rust".into(),
    })?;
    println!(
        "rust listener got bytes: {:?}",
        String::from_utf8_lossy(&conn.recv_bytes()?)
    );
    conn.send_bytes(b"raw bytes from Rust")?;
    if !python.wait()?.success() {
        return Err("the Python client failed".into());
    }

    // 2. A Rust Client calls a Python Listener.
    let address = dir.join("python.sock").to_string_lossy().into_owned();
    let mut python = Command::new("python3")
        .args([SCRIPT, "server", &address, "shared secret"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(python.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?; // "python server listening"
    print!("{line}");
    let mut conn = Client::connect_timeout(&address, Some(KEY), Duration::from_secs(30))?
        .with_codec::<Pickle>();
    conn.send(&Request {
        message: "hello from Rust".into(),
        numbers: vec![10, 20, 30],
    })?;
    let reply: Reply = conn.recv()?;
    println!("rust client got: {reply:?}");
    for line in out.lines() {
        println!("{}", line?);
    }
    if !python.wait()?.success() {
        return Err("the Python server failed".into());
    }
    Ok(())
}
