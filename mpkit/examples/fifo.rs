//! Two unrelated processes talk through a named pipe (FIFO).
//!
//! Run the two halves from a shell, in any order:
//!
//! ```text
//! cargo run --example fifo -- read /tmp/demo.fifo &
//! cargo run --example fifo -- write /tmp/demo.fifo "hello through the file system"
//! ```
//!
//! or `cargo run --example fifo` to have it start both halves itself (as two
//! separate runs of this program).

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use mpkit::os::{Fifo, FifoError, Open};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["read", path] => read(path),
        ["write", path, words @ ..] => write(path, &words.join(" ")),
        [] => demo(),
        _ => Err("usage: fifo [read PATH | write PATH WORDS...]".into()),
    }
}

fn ensure(path: &str) -> Result<(), FifoError> {
    match Fifo::create(path, 0o600) {
        Ok(()) | Err(FifoError::Exists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn read(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    ensure(path)?;
    println!(
        "reader {}: waiting for a writer on {path}",
        std::process::id()
    );
    let reader = Fifo::open_reader(path, Open::Timeout(Duration::from_secs(60)))?;
    for line in BufReader::new(reader).lines() {
        println!("reader {}: {}", std::process::id(), line?);
    }
    println!("reader: the writer closed its end");
    Fifo::remove(path)?;
    Ok(())
}

fn write(path: &str, text: &str) -> Result<(), Box<dyn std::error::Error>> {
    ensure(path)?;
    let mut w = Fifo::open_writer(path, Open::Timeout(Duration::from_secs(60)))?;
    writeln!(w, "{text}")?;
    writeln!(w, "(sent by process {})", std::process::id())?;
    Ok(())
}

fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("mpkit-fifo-demo-{}", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    let me = std::env::current_exe()?;
    let mut reader = std::process::Command::new(&me)
        .args(["read", &path])
        .spawn()?;
    let writer = std::process::Command::new(&me)
        .args(["write", &path, "hello through the file system"])
        .status()?;
    let read = reader.wait()?;
    if !(writer.success() && read.success()) {
        return Err("a half failed".into());
    }
    Ok(())
}
