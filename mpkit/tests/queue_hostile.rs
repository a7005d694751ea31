//! Queues when another member misbehaves: stopped inside its section,
//! killed there while the survivor is out of descriptors. Every call with a
//! timeout returns within it (plus scheduling slack), whatever the others
//! do.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{eventually, scribble_from_another_process as scribble, u64s, watchdog};
use mpkit::Process;
use mpkit::process::ProcessState;
use mpkit::queue::{ByteQueue, PutTimeoutError};
use mpkit::shm::RawValue;

/// What a call with a 10 ms timeout may take at most on a loaded CI machine.
const SLACK: Duration = Duration::from_millis(500);

/// Puts and gets without pause, counting rounds: almost always inside one
/// of the queue's sections, and soon the holder of both sides' leases.
fn churn((q, rounds): (ByteQueue, RawValue<u64>)) {
    loop {
        let _ = q.try_put(b"churn");
        let _ = q.try_get();
        rounds.atomic().fetch_add(1, SeqCst);
    }
}

/// Waits until `rounds` has moved on by `by`.
fn wait_rounds(rounds: &RawValue<u64>, by: u64) {
    let start = rounds.atomic().load(SeqCst);
    assert!(
        eventually(Duration::from_secs(20), || rounds.atomic().load(SeqCst)
            >= start + by),
        "the churning member made no progress"
    );
}

/// A member stopped (SIGSTOP, a debugger, a frozen cgroup) while inside its
/// section, or holding its side's lock, does not stretch another member's
/// timeout: `put_timeout(10 ms)` and `get_timeout(10 ms)` return in time.
/// (A stopped holder still blocks its side: the calls time out rather than
/// get in, since it may resume at any moment.)
#[test]
fn a_stopped_member_never_stretches_another_members_timeout() {
    let _w = watchdog(120);
    let q = ByteQueue::with_capacity(0, 1 << 16).unwrap();
    let rounds = RawValue::<u64>::new(0).unwrap();
    let member = Process::spawn(churn, (q.try_clone().unwrap(), rounds.try_clone().unwrap()))
        .expect("spawn the churning member");
    wait_rounds(&rounds, 10_000);
    let stop = mpkit::signal::Signal::STOP;
    let mut blocked = 0;
    for round in 0..30 {
        member.suspend().unwrap();
        assert!(
            eventually(Duration::from_secs(10), || member.state()
                == ProcessState::Stopped(stop)),
            "round {round}: the member did not stop"
        );
        // If a call hangs, resume the member after 3 s so the test reports
        // how long it took instead of hanging.
        let (done, waited) = mpsc::channel::<()>();
        let pid = member.pid();
        let rescuer = std::thread::spawn(move || {
            if waited.recv_timeout(Duration::from_secs(3)).is_err() {
                // SAFETY: kill with a valid signal number.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
        });
        let t = Instant::now();
        // The ring has room: only a member stopped inside the producers'
        // side can keep this put out.
        if let Err(PutTimeoutError::Timeout(_)) = q.put_timeout(b"mine", Duration::from_millis(10))
        {
            blocked += 1;
        }
        let put = t.elapsed();
        let t = Instant::now();
        let _ = q.get_timeout(Duration::from_millis(10));
        let get = t.elapsed();
        let _ = done.send(());
        rescuer.join().unwrap();
        member.resume().unwrap();
        assert!(
            put < SLACK && get < SLACK,
            "round {round}: with a member stopped, put_timeout(10 ms) took {put:?} and \
             get_timeout(10 ms) took {get:?}"
        );
        wait_rounds(&rounds, 1000);
    }
    // The member spends most of its time inside a section: some stops must
    // have caught it there, or this test did not test anything.
    assert!(blocked > 0, "no stop caught the member inside its section");
    member.kill().unwrap();
    let _ = member.join();
}

/// A member killed inside its section, found by a member that has run out
/// of descriptors (it cannot open `/proc` to learn that the holder is gone):
/// the starved member's calls still return within their timeouts, and a
/// healthy member gets in after it.
#[test]
fn a_member_out_of_descriptors_still_honours_its_timeouts() {
    let _w = watchdog(120);
    for round in 0..6 {
        let q = ByteQueue::with_capacity(0, 1 << 16).unwrap();
        let rounds = RawValue::<u64>::new(0).unwrap();
        let victim = Process::spawn(churn, (q.try_clone().unwrap(), rounds.try_clone().unwrap()))
            .expect("spawn the victim");
        wait_rounds(&rounds, 10_000);
        victim.kill().unwrap();
        let _ = victim.join();
        let mut starved = Process::spawn(
            |q: ByteQueue| {
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
                let t = Instant::now();
                let _ = q.put_timeout(b"starved", Duration::from_millis(200));
                let put = t.elapsed();
                let t = Instant::now();
                let _ = q.get_timeout(Duration::from_millis(200));
                (put, t.elapsed())
            },
            q.try_clone().unwrap(),
        )
        .unwrap();
        let (put, get) = starved
            .join_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| {
                let _ = starved.kill();
                panic!("round {round}: the member out of descriptors never returned ({e})")
            });
        let limit = Duration::from_millis(200) + SLACK;
        assert!(
            put < limit && get < limit,
            "round {round}: out of descriptors, put_timeout(200 ms) took {put:?} and \
             get_timeout(200 ms) took {get:?}"
        );
        let t = Instant::now();
        let _ = q.put_timeout(b"healthy", Duration::from_millis(200));
        let _ = q.get_timeout(Duration::from_millis(200));
        assert!(
            t.elapsed() < 2 * limit,
            "round {round}: a healthy member after it took {:?}",
            t.elapsed()
        );
    }
}

/// Postcard, except that it writes the value 13 as bytes no `u32` decodes
/// from: a producer whose messages the consumer cannot read.
struct Picky;

impl mpkit::codec::Codec for Picky {
    const NAME: &'static str = "picky";

    fn encode<T: serde::Serialize + ?Sized>(
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), mpkit::codec::CodecError> {
        let start = out.len();
        mpkit::codec::Postcard::encode(value, out)?;
        if out[start..] == [13] {
            out.truncate(start);
            out.extend_from_slice(&[0xff; 6]);
        }
        Ok(())
    }

    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, mpkit::codec::CodecError> {
        mpkit::codec::Postcard::decode(bytes)
    }
}

/// A batch holding a message that does not decode loses nothing: the batch
/// ends before it, the next get reports it, and the one after goes on.
#[test]
fn get_many_never_drops_an_undecodable_message() {
    let _w = watchdog(30);
    let q = mpkit::queue::Queue::<u32, Picky>::new(0).unwrap();
    let producer = Process::spawn(
        |q: mpkit::queue::Queue<u32, Picky>| {
            for v in [1, 13, 2, 3, 13, 13, 4] {
                q.put(v).unwrap();
            }
        },
        q.try_clone().unwrap(),
    )
    .unwrap();
    producer.join().unwrap();
    let mut seen = Vec::new();
    while !q.is_empty() {
        match q.get_many(10) {
            Ok(batch) => seen.push(format!("{batch:?}")),
            Err(mpkit::queue::GetError::Decode { .. }) => seen.push("undecodable".into()),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(
        seen,
        [
            "[1]",
            "undecodable",
            "[2, 3]",
            "undecodable",
            "undecodable",
            "[4]"
        ]
    );
}

/// The producers' and consumers' commit blocks (`seq: u64`, `pos: u64`), as
/// ARCHITECTURE.md lays out a queue.
const PRODUCERS_COMMIT: u64 = 384;
const CONSUMERS_COMMIT: u64 = 640;
/// Where the ring's bytes start.
const RING: u64 = 4096;

/// A named byte queue of a 4 KiB ring, removed on drop.
fn named_queue(tag: &str) -> (ByteQueue, String) {
    let name = format!("mpkit-hostile-{tag}-{}", std::process::id());
    (ByteQueue::create(&name, 0, 4096).unwrap(), name)
}

/// Ring positions off a record boundary, or past the ring: a put is an
/// error, never a write outside the queue's memory.
#[test]
fn scribbled_producer_positions_are_corrupt_not_out_of_bounds() {
    let _w = watchdog(30);
    for pos in [4096 - 8, 4096 + 40, 3 * 4096 - 1, u64::MAX - 7] {
        let (q, name) = named_queue("tail");
        scribble(&name, vec![(PRODUCERS_COMMIT + 8, u64s(&[pos]))]);
        match q.put_timeout(&[7u8; 200], Duration::from_millis(50)) {
            Err(PutTimeoutError::Corrupt { why, .. }) => {
                assert!(why.contains("producers"), "{why}")
            }
            other => panic!("producers' pos {pos}: {other:?}"),
        }
        match q.try_put(b"x") {
            Err(mpkit::queue::TryPutError::Corrupt { .. }) => {}
            other => panic!("producers' pos {pos}: {other:?}"),
        }
    }
}

/// The consumers' count ahead of the producers': a put is an error, not a
/// message no consumer will ever see.
#[test]
fn consumers_ahead_of_producers_is_corrupt_not_a_lost_message() {
    let _w = watchdog(30);
    let (q, name) = named_queue("ahead");
    q.put(b"one").unwrap();
    assert_eq!(q.get().unwrap(), b"one");
    scribble(&name, vec![(CONSUMERS_COMMIT, u64s(&[5, 5 * 64]))]);
    match q.put(b"two") {
        Err(mpkit::queue::PutError::Corrupt { why, .. }) => {
            assert!(why.contains("consumers"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

/// A record whose length was rewritten: the get that finds the damage says
/// what was lost, and the queue works again for the messages after.
#[test]
fn a_rewritten_record_is_reported_and_the_queue_recovers() {
    let _w = watchdog(30);
    let (q, name) = named_queue("len");
    q.put(&[1u8; 10]).unwrap();
    q.put(&[2u8; 10]).unwrap();
    q.put(&[3u8; 10]).unwrap();
    // The first record claims 100 bytes: its neighbour's header is now
    // inside it, and the next record would start in the wrong place.
    scribble(&name, vec![(RING, 100u32.to_le_bytes().to_vec())]);
    let first = q.try_get();
    let second = q.try_get();
    let mut outcomes = vec![format!("{first:?}"), format!("{second:?}")];
    assert!(
        outcomes.iter().any(|o| o.contains("Corrupt")),
        "the damage went unreported: {outcomes:?}"
    );
    q.put(b"after").unwrap();
    let after = q.get_timeout(Duration::from_secs(5));
    outcomes.push(format!("{after:?}"));
    assert_eq!(after.unwrap(), b"after", "{outcomes:?}");
}

/// A record whose length another process enlarged past what the producers
/// put (the bytes after it were never part of a message): the get is
/// `Corrupt`, never the message with stale ring bytes after it, both on
/// the locked path and on the leased one (a thread that got 200 messages
/// in a row holds both sides' leases); the queue works again after.
#[test]
fn a_record_longer_than_what_was_put_is_corrupt() {
    let _w = watchdog(30);
    for warm in [0u64, 200] {
        let (q, name) = named_queue("longer");
        for _ in 0..warm {
            q.put(b"w").unwrap();
            q.get().unwrap();
        }
        q.put(b"one").unwrap();
        q.put(b"two").unwrap();
        // Each warm-up message took a 64-byte record.
        let first = RING + (warm * 64) % 4096;
        scribble(&name, vec![(first, 4000u32.to_le_bytes().to_vec())]);
        match q.get_timeout(Duration::from_secs(5)) {
            Err(mpkit::queue::GetTimeoutError::Corrupt(why)) => {
                assert!(why.contains("past the producers' position"), "{why}")
            }
            other => panic!("after {warm} messages: {other:?}"),
        }
        q.put(b"after").unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), b"after");
    }
}

/// Another process rewrites a side's mutex as private and not robust (the
/// kind word, 16 bytes into the producers' lock cell at 128 or the
/// consumers' at 256): attaching is refused, and that side's operations
/// are `Corrupt` errors naming the side, never a mutex handed to glibc whose wake-ups would not
/// reach other processes.
#[test]
fn a_rewritten_side_mutex_is_refused() {
    let _w = watchdog(30);
    for cell in [128u64, 256] {
        let (q, name) = named_queue("mutex");
        scribble(&name, vec![(cell + 16, 2i32.to_le_bytes().to_vec())]);
        match ByteQueue::open(&name) {
            Err(mpkit::shm::ShmError::Corrupt(why)) => assert!(why.contains("lock"), "{why}"),
            other => panic!("cell {cell}: open gave {other:?}"),
        }
        if cell == 128 {
            let e = q.put(b"x").expect_err("a put through a rewritten mutex");
            assert!(
                matches!(&e, mpkit::queue::PutError::Corrupt { why, .. } if why.contains("producers' side's lock")),
                "{e:?}"
            );
        } else {
            q.put(b"x").unwrap();
            let e = q.get().expect_err("a get through a rewritten mutex");
            assert!(
                matches!(&e, mpkit::queue::GetError::Corrupt(why) if why.contains("consumers' side's lock")),
                "{e:?}"
            );
        }
    }
}

/// A queue opened as another kind (a `Queue` as a `JoinableQueue`, typed or
/// bytes): `ShmError::WrongKind` naming both, never a queue that would
/// count tasks nobody records.
#[test]
fn opening_another_kind_is_wrong_kind() {
    let _w = watchdog(30);
    let (q, name) = named_queue("kind");
    let wrong = |e: mpkit::shm::ShmError| {
        matches!(
            e,
            mpkit::shm::ShmError::WrongKind {
                found: "Queue",
                expected: "JoinableQueue"
            }
        )
    };
    let e = ByteQueue::open_kind(mpkit::queue::ByteQueueKind::Joinable, &name).unwrap_err();
    assert!(
        e.to_string().contains("a Queue, not a JoinableQueue"),
        "{e}"
    );
    assert!(wrong(e));
    assert!(wrong(
        mpkit::queue::JoinableQueue::<u32>::open(&name).unwrap_err()
    ));
    drop(q);
}
