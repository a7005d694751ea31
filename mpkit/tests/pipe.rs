//! Pipe and Connection between real processes.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::watchdog;
use mpkit::codec::Json;
use mpkit::process::JoinError;
use mpkit::{Connection, Process, RecvError, SendError};
use serde::{Deserialize, Serialize};

/// Python's classic `multiprocessing.Pipe` example: the child reads until
/// end of file (`EOFError`); the parent sends 0..10.
#[test]
fn the_child_reads_until_eof() {
    let _w = watchdog(20);
    let (out_pipe, in_pipe) = mpkit::pipe(false).unwrap();
    let child = Process::spawn(
        |(mut out_pipe, in_pipe): (Connection, Connection)| {
            in_pipe.close();
            let mut got = Vec::new();
            loop {
                match out_pipe.recv::<u32>() {
                    Ok(v) => got.push(v),
                    Err(RecvError::Eof) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        },
        (out_pipe.try_clone().unwrap(), in_pipe.try_clone().unwrap()),
    )
    .unwrap();
    out_pipe.close();
    let mut in_pipe = in_pipe;
    for i in 0..10u32 {
        in_pipe.send(&i).unwrap();
    }
    in_pipe.close();
    assert_eq!(child.join().unwrap(), (0..10).collect::<Vec<u32>>());
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Msg {
    Ping(u64),
    Text { body: String, tags: Vec<String> },
    Stop,
}

#[test]
fn duplex_request_reply() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |mut c: Connection| {
            let mut n = 0;
            loop {
                match c.recv::<Msg>().unwrap() {
                    Msg::Ping(x) => c.send(&Msg::Ping(x + 1)).unwrap(),
                    Msg::Text { body, tags } => c
                        .send(&Msg::Text {
                            body: body.to_uppercase(),
                            tags,
                        })
                        .unwrap(),
                    Msg::Stop => return n,
                }
                n += 1;
            }
        },
        there,
    )
    .unwrap();
    for i in 0..1000 {
        here.send(&Msg::Ping(i)).unwrap();
        assert_eq!(here.recv::<Msg>().unwrap(), Msg::Ping(i + 1));
    }
    here.send(&Msg::Text {
        body: "hé".into(),
        tags: vec!["a".into()],
    })
    .unwrap();
    assert_eq!(
        here.recv::<Msg>().unwrap(),
        Msg::Text {
            body: "HÉ".into(),
            tags: vec!["a".into()]
        }
    );
    here.send(&Msg::Stop).unwrap();
    assert_eq!(child.join().unwrap(), 1001);
}

#[test]
fn many_messages_arrive_in_order() {
    let _w = watchdog(30);
    let (rx, mut tx) = mpkit::pipe(false).unwrap();
    let child = Process::spawn(
        |mut rx: Connection| {
            let mut expected = 0u64;
            while let Ok(v) = rx.recv::<u64>() {
                assert_eq!(v, expected, "out of order");
                expected += 1;
            }
            expected
        },
        rx,
    )
    .unwrap();
    for i in 0..200_000u64 {
        tx.send(&i).unwrap();
    }
    drop(tx);
    assert_eq!(child.join().unwrap(), 200_000);
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn messages_of_64_mib_cross_both_ways() {
    let _w = watchdog(60);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |mut c: Connection| {
            let data = c.recv_bytes().unwrap();
            let sum = checksum(&data);
            let reversed: Vec<u8> = data.into_iter().rev().collect();
            c.send_bytes(&reversed).unwrap();
            sum
        },
        there,
    )
    .unwrap();
    let data: Vec<u8> = (0..64u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    here.send_bytes(&data).unwrap();
    let back = here.recv_bytes().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back.iter().rev().eq(data.iter()));
    assert_eq!(child.join().unwrap(), checksum(&data));
}

#[test]
fn typed_64_mib_through_a_one_way_pipe() {
    let _w = watchdog(60);
    let (rx, mut tx) = mpkit::pipe(false).unwrap();
    let child = Process::spawn(
        |mut rx: Connection| {
            let v: Vec<u32> = rx.recv().unwrap();
            (v.len(), v.iter().map(|&x| x as u64).sum::<u64>())
        },
        rx,
    )
    .unwrap();
    let v: Vec<u32> = (0..16 * 1024 * 1024).collect();
    tx.send(&v).unwrap();
    let (len, sum) = child.join().unwrap();
    assert_eq!(len, v.len());
    assert_eq!(sum, v.iter().map(|&x| x as u64).sum::<u64>());
}

#[test]
fn recv_reports_eof_when_the_peer_process_dies() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let mut child = Process::spawn(
        |mut c: Connection| -> () {
            c.send(&"last words").unwrap();
            // Blocks until killed.
            let _ = c.recv::<u8>();
            std::thread::sleep(Duration::from_secs(600));
        },
        there,
    )
    .unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "last words");
    child.kill().unwrap();
    assert!(matches!(here.recv::<String>(), Err(RecvError::Eof)));
    assert!(matches!(
        child.join_timeout(Duration::from_secs(10)),
        Err(JoinError::Signaled { signal: 9 })
    ));
}

#[test]
fn a_peer_killed_mid_message_is_truncated_not_a_hang() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |c: Connection| -> () {
            // A frame header announcing 1000 bytes, then only 10 of them.
            let mut partial = 1000i32.to_be_bytes().to_vec();
            partial.extend_from_slice(&[7; 10]);
            // SAFETY: writing a byte buffer to the connection's socket.
            let n = unsafe { libc::write(c.as_raw_fd(), partial.as_ptr().cast(), partial.len()) };
            assert_eq!(n, partial.len() as isize);
            // SAFETY: raise(2) ends this process like an external SIGKILL.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        there,
    )
    .unwrap();
    match here.recv_bytes() {
        Err(RecvError::Truncated { expected, received }) => {
            assert_eq!((expected, received), (1004, 14));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        child.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
}

#[test]
fn a_timeout_keeps_a_partial_message_for_the_next_call() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |mut c: Connection| {
            let mut frame = 6i32.to_be_bytes().to_vec();
            frame.extend_from_slice(b"abcdef");
            let fd = c.as_raw_fd();
            let write = |bytes: &[u8]| {
                // SAFETY: writing a byte buffer to the connection's socket.
                let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
                assert_eq!(n, bytes.len() as isize);
            };
            write(&frame[..7]);
            // Wait for the parent's go-ahead, then finish the frame.
            let mut go = [0u8; 1];
            assert!(c.poll(None).unwrap());
            // SAFETY: reading one byte from the socket into a local buffer.
            assert_eq!(unsafe { libc::read(fd, go.as_mut_ptr().cast(), 1) }, 1);
            write(&frame[7..]);
        },
        there,
    )
    .unwrap();
    assert!(here.poll(Some(Duration::from_secs(10))).unwrap());
    assert!(matches!(
        here.recv_bytes_timeout(Duration::from_millis(30)),
        Err(RecvError::Timeout)
    ));
    // SAFETY: one byte to the socket.
    let sent = unsafe { libc::write(here.as_raw_fd(), b"g".as_ptr().cast(), 1) };
    assert_eq!(sent, 1);
    assert_eq!(
        here.recv_bytes_timeout(Duration::from_secs(10)).unwrap(),
        b"abcdef"
    );
    child.join().unwrap();
}

#[test]
fn sending_to_a_vanished_peer_is_disconnected() {
    let _w = watchdog(20);
    for duplex in [true, false] {
        let (rx, mut tx) = mpkit::pipe(duplex).unwrap();
        let child = Process::spawn(|rx: Connection| rx.readable(), rx).unwrap();
        assert!(child.join().unwrap());
        // The child held the only receiving end, and it has exited.
        let mut result = Ok(());
        for _ in 0..4 {
            result = tx.send_bytes(&[0u8; 4096]);
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(SendError::Disconnected)),
            "duplex={duplex}: {result:?}"
        );
    }
}

#[test]
fn a_message_of_the_wrong_type_is_an_error_naming_it_and_the_next_one_arrives() {
    let _w = watchdog(20);
    let (rx, mut tx) = mpkit::pipe(false).unwrap();
    let child = Process::spawn(
        |mut rx: Connection| {
            let first = rx.recv::<Msg>().unwrap_err().to_string();
            let second = rx.recv::<Msg>().unwrap();
            (first, second)
        },
        rx,
    )
    .unwrap();
    tx.send(&[1.5f64, 2.5]).unwrap();
    tx.send(&Msg::Stop).unwrap();
    let (first, second) = child.join().unwrap();
    assert!(first.contains("pipe::Msg"), "{first}");
    assert_eq!(second, Msg::Stop);
}

#[test]
fn recv_bytes_into_and_its_limits() {
    let _w = watchdog(20);
    let (rx, mut tx) = mpkit::pipe(false).unwrap();
    let child = Process::spawn(
        |mut rx: Connection| {
            let mut small = [0u8; 8];
            let too_short = matches!(
                rx.recv_bytes_into(&mut small),
                Err(RecvError::BufferTooShort {
                    len: 20,
                    capacity: 8
                })
            );
            let mut big = [0u8; 64];
            let n = rx.recv_bytes_into(&mut big).unwrap();
            (too_short, big[..n].to_vec())
        },
        rx,
    )
    .unwrap();
    tx.send_bytes(b"twenty bytes exactly").unwrap();
    let (too_short, data) = child.join().unwrap();
    assert!(too_short);
    assert_eq!(data, b"twenty bytes exactly");
}

#[test]
fn connections_can_be_sent_over_connections_between_processes() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |mut c: Connection| {
            let mut passed: Connection = c.recv().unwrap();
            passed.send(&"via the passed connection").unwrap();
            passed.recv::<u32>().unwrap()
        },
        there,
    )
    .unwrap();
    let (mut x, y) = mpkit::pipe(true).unwrap();
    here.send(&y).unwrap();
    drop(y);
    assert_eq!(x.recv::<String>().unwrap(), "via the passed connection");
    x.send(&99u32).unwrap();
    assert_eq!(child.join().unwrap(), 99);
}

#[test]
fn json_messages_for_other_languages() {
    let _w = watchdog(20);
    let (mut here, there) = Connection::<Json>::pair(true).unwrap();
    let child = Process::spawn(
        |mut c: Connection<Json>| {
            let v: serde_json::Value = c.recv().unwrap();
            c.send(&serde_json::json!({"echo": v, "from": "child"}))
                .unwrap();
        },
        there,
    )
    .unwrap();
    here.send(&serde_json::json!({"message": "hi", "n": [1, 2]}))
        .unwrap();
    let text = String::from_utf8(here.recv_bytes().unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"echo":{"message":"hi","n":[1,2]},"from":"child"}"#
    );
    child.join().unwrap();
}

#[test]
fn poll_waits_for_data() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    assert!(!here.poll(Some(Duration::ZERO)).unwrap());
    let child = Process::spawn(
        |mut c: Connection| {
            c.recv::<()>().unwrap();
            c.send(&1u8).unwrap();
        },
        there,
    )
    .unwrap();
    assert!(!here.poll(Some(Duration::from_millis(20))).unwrap());
    here.send(&()).unwrap();
    assert!(here.poll(None).unwrap());
    assert_eq!(here.recv::<u8>().unwrap(), 1);
    child.join().unwrap();
}
