//! Anonymous pipes and FIFOs, with programs that are not mpkit on the
//! other end (cat, python3).

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::Process;
use mpkit::os::{self, Fifo, FifoError, Open, PipeReader, PipeWriter};

/// A FIFO path in a private directory, both removed on drop.
struct Place(PathBuf);

impl Place {
    fn new(tag: &str) -> Place {
        let dir = std::env::temp_dir().join(format!("mpkit-os-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Place(dir)
    }
    fn fifo(&self) -> PathBuf {
        self.0.join("f.fifo")
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn anonymous_pipes_reach_children_and_end_with_eof() {
    let _w = watchdog(20);
    let (reader, mut writer) = os::pipe().unwrap();
    let child = Process::spawn(
        |mut r: PipeReader| {
            let mut all = Vec::new();
            r.read_to_end(&mut all).unwrap();
            all.len()
        },
        reader,
    )
    .unwrap();
    for _ in 0..100 {
        writer.write_all(&[1u8; 1000]).unwrap();
    }
    drop(writer); // the only writer: the child sees end of file
    assert_eq!(child.join().unwrap(), 100_000);
}

#[test]
fn a_fifo_between_mpkit_and_cat() {
    let _w = watchdog(20);
    let place = Place::new("cat");
    let path = place.fifo();
    Fifo::create(&path, 0o600).unwrap();
    let cat = Command::new("cat")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = Fifo::open_writer(&path, Open::Timeout(Duration::from_secs(10))).unwrap();
    w.write_all(b"written by mpkit, read by cat\n").unwrap();
    drop(w);
    let out = cat.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "written by mpkit, read by cat\n"
    );
    Fifo::remove(&path).unwrap();
    assert!(!path.exists());
}

#[test]
fn a_fifo_from_python() {
    let _w = watchdog(20);
    if !common::require_peer("python3", Command::new("python3").arg("-V")) {
        return;
    }
    let place = Place::new("py");
    let path = place.fifo();
    Fifo::create(&path, 0o600).unwrap();
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys\nwith open(sys.argv[1], 'w') as f: f.write('hello from python')",
            path.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let mut text = String::new();
    Fifo::open_reader(&path, Open::Blocking)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "hello from python");
    assert!(py.wait_with_output().unwrap().status.success());
}

#[test]
fn fifo_errors_are_clear() {
    let _w = watchdog(20);
    let place = Place::new("errors");
    let path = place.fifo();
    assert!(matches!(
        Fifo::open_reader(&path, Open::NonBlocking),
        Err(FifoError::NotFound(_))
    ));
    Fifo::create(&path, 0o600).unwrap();
    assert!(matches!(
        Fifo::create(&path, 0o600),
        Err(FifoError::Exists(_))
    ));
    // No reader: a non-blocking writer is refused, a timed one times out.
    assert!(matches!(
        Fifo::open_writer(&path, Open::NonBlocking),
        Err(FifoError::NoReader(_))
    ));
    let start = Instant::now();
    assert!(matches!(
        Fifo::open_writer(&path, Open::Timeout(Duration::from_millis(100))),
        Err(FifoError::Timeout(_))
    ));
    assert!(matches!(
        Fifo::open_reader(&path, Open::Timeout(Duration::from_millis(100))),
        Err(FifoError::Timeout(_))
    ));
    assert!(start.elapsed() < Duration::from_secs(3));
    // A regular file is not a FIFO.
    let file = place.0.join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Fifo::open_reader(&file, Open::Blocking),
        Err(FifoError::NotAFifo(_))
    ));
    assert!(matches!(Fifo::remove(&file), Err(FifoError::NotAFifo(_))));
    assert!(file.exists(), "remove refused to delete a non-FIFO");
}

#[test]
fn writing_after_the_reader_left_is_an_error_not_a_death() {
    let _w = watchdog(20);
    let place = Place::new("epipe");
    let path = place.fifo();
    Fifo::create(&path, 0o600).unwrap();
    let reader = Fifo::open_reader(&path, Open::NonBlocking).unwrap();
    let mut w: PipeWriter = Fifo::open_writer(&path, Open::NonBlocking).unwrap();
    drop(reader);
    let err = w.write_all(b"nobody listens").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}

#[test]
fn unrelated_processes_meet_at_a_fifo() {
    let _w = watchdog(30);
    let place = Place::new("procs");
    let path = place.fifo();
    Fifo::create(&path, 0o600).unwrap();
    let p = path.to_string_lossy().into_owned();
    let writer = Process::spawn(
        |p: String| {
            let mut w = Fifo::open_writer(&p, Open::Timeout(Duration::from_secs(10))).unwrap();
            for i in 0..1000u32 {
                w.write_all(&i.to_le_bytes()).unwrap();
            }
        },
        p.clone(),
    )
    .unwrap();
    let mut r = Fifo::open_reader(&p, Open::Timeout(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    writer.join().unwrap();
    let nums: Vec<u32> = all
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(nums, (0..1000).collect::<Vec<_>>());
}
