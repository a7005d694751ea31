//! Regression tests for hostile environments: descriptor limits, odd
//! signal dispositions, closed stdio, handles that misbehave.

mod common;

use std::time::Duration;

use common::watchdog;
use mpkit::process::JoinError;
use mpkit::{Connection, Process, RecvError, SendError};
use serde::{Serialize, Serializer};

/// At the open-file limit, descriptors sent with a message are lost; that
/// message reports it, and the messages around it arrive intact.
#[test]
fn handles_lost_at_the_descriptor_limit_cost_only_their_message() {
    let _w = watchdog(30);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |mut c: Connection| {
            // Fill the descriptor table up to a low limit.
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            // SAFETY: setrlimit with a valid struct.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
            let mut hog = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                hog.push(f);
            }
            c.send(&"full").unwrap();
            let first = c.recv::<u32>().map_err(|e| e.to_string());
            let second = c
                .recv::<Connection>()
                .map_err(|e| e.to_string())
                .map(|_| ());
            let third = c.recv::<u32>().map_err(|e| e.to_string());
            (first, second, third)
        },
        there,
    )
    .unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "full");
    let (x, _y) = mpkit::pipe(true).unwrap();
    here.send(&1u32).unwrap();
    here.send(&x).unwrap();
    here.send(&3u32).unwrap();
    let (first, second, third) = child.join().unwrap();
    assert_eq!(first, Ok(1));
    assert!(
        second.as_ref().unwrap_err().contains("were lost"),
        "{second:?}"
    );
    assert_eq!(third, Ok(3));
}

/// Serializes a temporary duplicate of the connection, then drops it: the
/// descriptor number is free again before the message is sent.
struct Sneaky<'a>(&'a Connection);

impl Serialize for Sneaky<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tmp = self.0.try_clone().map_err(serde::ser::Error::custom)?;
        let r = tmp.serialize(s);
        drop(tmp);
        // Reuse the number the temporary had.
        let _f = std::fs::File::open("/dev/null").map(std::mem::forget);
        r
    }
}

#[test]
fn a_handle_dropped_during_serialization_still_sends_the_right_descriptor() {
    let _w = watchdog(20);
    let (mut a, mut b) = mpkit::pipe(true).unwrap();
    let (mut x, y) = mpkit::pipe(true).unwrap();
    a.send(&Sneaky(&y)).unwrap();
    drop(y);
    let mut y2: Connection = b.recv().unwrap();
    x.send(&"through the real connection").unwrap();
    assert_eq!(y2.recv::<String>().unwrap(), "through the real connection");
}

#[test]
fn join_works_when_sigchld_is_ignored() {
    let _w = watchdog(20);
    let child = Process::spawn(
        |(): ()| {
            // SAFETY: setting a signal disposition to SIG_IGN.
            unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
            let value = Process::spawn(|x: u32| x * 2, 21).unwrap().join().unwrap();
            let exited = Process::spawn(|(): ()| -> () { std::process::exit(3) }, ())
                .unwrap()
                .join();
            (value, matches!(exited, Err(JoinError::StatusUnavailable)))
        },
        (),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), (42, true));
}

#[test]
fn is_alive_takes_in_a_large_result_so_the_child_can_exit() {
    let _w = watchdog(30);
    let mut child = Process::spawn(|n: usize| vec![7u8; n], 4 << 20).unwrap();
    // Only is_alive takes in the result here: if it did not, the child
    // would stay blocked writing it and alive forever.
    assert!(
        common::eventually(Duration::from_secs(20), || !child.is_alive()),
        "the child never exited while only is_alive was called"
    );
    assert_eq!(child.join().unwrap().len(), 4 << 20);
}

#[test]
fn a_pipe_write_without_readers_is_an_error_even_with_default_sigpipe() {
    let _w = watchdog(20);
    let child = Process::spawn(
        |(): ()| {
            // SAFETY: restoring the default disposition, as a C host has it.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let (rx, mut tx) = mpkit::pipe(false).unwrap();
            drop(rx);
            matches!(tx.send(&1u8), Err(SendError::Disconnected))
        },
        (),
    )
    .unwrap();
    assert!(
        child.join().unwrap(),
        "the process survived and saw Disconnected"
    );
}

#[test]
fn too_many_handles_in_a_result_is_a_clear_error() {
    let _w = watchdog(30);
    let child = Process::spawn(
        |(): ()| {
            (0..300)
                .map(|_| mpkit::pipe(true).unwrap().0)
                .collect::<Vec<Connection>>()
        },
        (),
    )
    .unwrap();
    match child.join() {
        Err(e @ JoinError::ResultEncode { .. }) => {
            assert!(e.to_string().contains("300 handles"), "{e}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn children_start_when_stdio_is_closed() {
    let _w = watchdog(20);
    let child = Process::spawn(
        |(): ()| {
            for fd in 0..3 {
                // SAFETY: closing this process's own stdio on purpose.
                unsafe { libc::close(fd) };
            }
            Process::spawn(|x: u8| x + 1, 1).unwrap().join().unwrap()
        },
        (),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), 2);
}

#[test]
fn a_connection_forwarded_with_read_ahead_keeps_its_queued_handles() {
    let _w = watchdog(20);
    let (mut a, mut b) = mpkit::pipe(true).unwrap();
    let (mut x1, y1) = mpkit::pipe(true).unwrap();
    let (mut x2, y2) = mpkit::pipe(true).unwrap();
    a.send(&y1).unwrap();
    a.send(&y2).unwrap();
    drop((y1, y2));
    // Receiving the first reads ahead: the second's descriptor is queued.
    let mut first: Connection = b.recv().unwrap();
    let child = Process::spawn(
        |mut b: Connection| {
            let mut second: Connection = b.recv().unwrap();
            second.recv::<String>().unwrap()
        },
        b,
    )
    .unwrap();
    x2.send(&"second").unwrap();
    assert_eq!(child.join().unwrap(), "second");
    x1.send(&"first").unwrap();
    assert_eq!(first.recv::<String>().unwrap(), "first");
}

#[test]
fn custom_serialize_errors_keep_their_message() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no thanks"))
        }
    }
    let (mut a, mut b) = mpkit::pipe(true).unwrap();
    let err = a.send(&Refuses).unwrap_err().to_string();
    assert!(
        err.contains("no thanks") && err.contains("Refuses"),
        "{err}"
    );
    assert!(
        matches!(
            b.recv_timeout::<u8>(Duration::ZERO),
            Err(RecvError::Timeout)
        ),
        "nothing was sent"
    );
}
