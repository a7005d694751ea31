//! What the properties found, each replayed between processes: another
//! process writes the bytes, this one uses the object.

use std::time::{Duration, Instant};

use mpkit::Process;
use mpkit::queue::ByteQueue;
use mpkit::shm::{Array, RawArray};
use mpkit::sync::{Barrier, Lock};

use super::{CAPACITY, RING, Unlink, case_name, common, scribble_from_another_process, u64s};

/// The value of a published header's `ready` word (ARCHITECTURE.md,
/// Segments).
const READY: u32 = 0x52454459;

/// A `ready` word that is neither 0 (a creator initialising) nor ready is
/// refused at once. (It was waited on: the futex does not sleep on a word
/// that differs from 0, so `open` spun for 2 s and then said `NotReady`.)
#[test]
fn a_ready_word_no_creator_writes_is_corrupt_at_once() {
    let _w = common::watchdog(30);
    let name = case_name("ready");
    let lock = Lock::create(&name).unwrap();
    scribble_from_another_process(&name, vec![(48, 0xdead_beef_u32.to_le_bytes().to_vec())]);
    let start = Instant::now();
    let opened = Lock::open(&name);
    let took = start.elapsed();
    assert!(
        matches!(opened, Err(mpkit::shm::ShmError::Corrupt(_))),
        "{opened:?}"
    );
    assert!(took < Duration::from_millis(500), "open took {took:?}");
    // The handle made before keeps working.
    drop(lock.try_lock().unwrap());
}

/// Arrays of no element: created in one process, used in another. (Every
/// access to their elements panicked: the element pointer was checked as if
/// one element followed the header.)
#[test]
fn empty_arrays_are_usable_between_processes() {
    let _w = common::watchdog(30);
    let (a, r) = (case_name("empty-array"), case_name("empty-raw"));
    let _arrays = (
        Array::<u64>::create(&a, &[]).unwrap(),
        RawArray::<u32>::create(&r, &[]).unwrap(),
    );
    let child = Process::spawn(
        |(a, r): (String, String)| {
            let a = Array::<u64>::open(&a).unwrap();
            let r = RawArray::<u32>::open(&r).unwrap();
            a.copy_from_slice(&[]).unwrap();
            (
                a.to_vec().unwrap(),
                a.lock().unwrap().len(),
                a.get(0).unwrap(),
                r.to_vec(),
                r.atomics().len(),
                r.set(0, 1).is_err(),
            )
        },
        (a.clone(), r.clone()),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), (vec![], 0, None, vec![], 0, true));
}

/// Ring positions another process set just short of 2^64, where the next
/// record would overflow the count: a put and a get report `Corrupt`. (Both
/// panicked on the overflow: `attempt to add with overflow`.)
#[test]
fn queue_positions_at_the_end_of_counting_are_corrupt() {
    let _w = common::watchdog(30);
    let name = case_name("positions");
    let q = ByteQueue::create(&name, 0, CAPACITY).unwrap();
    let end = u64::MAX - 63; // the last record boundary
    scribble_from_another_process(&name, vec![(384, u64s(&[5, end])), (640, u64s(&[5, end]))]);
    match q.put_timeout(b"x", Duration::from_millis(50)) {
        Err(mpkit::queue::PutTimeoutError::Corrupt { why, .. }) => {
            assert!(why.contains("producers"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // One message published at the last boundary: its record, of 3 bytes,
    // ends at 2^64.
    let header = [3u32.to_le_bytes(), u32::MAX.to_le_bytes()].concat();
    scribble_from_another_process(
        &name,
        vec![
            (384, u64s(&[6])),
            (
                RING + (end % CAPACITY as u64),
                [header, u64s(&[5])].concat(),
            ),
        ],
    );
    match q.get_timeout(Duration::from_millis(50)) {
        Err(mpkit::queue::GetTimeoutError::Corrupt(why)) => {
            assert!(why.contains("2^64"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

/// A barrier's count set past its parties by another process: the next
/// arrival trips it, with an index among the parties. (It panicked:
/// `attempt to add with overflow`.)
#[test]
fn a_barrier_count_past_its_parties_trips_it() {
    let _w = common::watchdog(30);
    let name = case_name("barrier-count");
    let b = Barrier::create(&name, 2).unwrap();
    scribble_from_another_process(&name, vec![(128, u32::MAX.to_le_bytes().to_vec())]);
    match b.wait_timeout(Duration::from_secs(5)) {
        Ok(index) => assert!(index < 2, "index {index}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(b.n_waiting(), 0);
}

/// A barrier header naming no parties, or more than a `u32` counts, is
/// refused. (Both were attached: a barrier of 0 parties, and one whose
/// count of 2^32 + 1 read as 1.)
#[test]
fn a_barrier_header_naming_impossible_parties_is_refused() {
    let _w = common::watchdog(30);
    for parties in [0, (1u64 << 32) + 1] {
        let name = case_name("barrier-parties");
        let _b = Barrier::create(&name, 1).unwrap();
        scribble_from_another_process(&name, vec![(32, u64s(&[parties]))]);
        let opened = Barrier::open(&name).map(|b| b.parties());
        assert!(
            matches!(opened, Err(mpkit::shm::ShmError::Corrupt(_))),
            "{parties} parties: {opened:?}"
        );
    }
}

/// A FIFO another process put in `/dev/shm`: listing and inspecting skip
/// it at once. (Opening it blocked until a writer came: `mpkit ls` hung.)
#[test]
fn admin_never_blocks_on_a_fifo() {
    let _w = common::watchdog(30);
    let name = case_name("fifo");
    let _unlink = Unlink(name.clone());
    Process::spawn(
        |name: String| {
            let path = std::ffi::CString::new(format!("/dev/shm/{name}")).unwrap();
            // SAFETY: mkfifo with a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        },
        name.clone(),
    )
    .unwrap()
    .join()
    .unwrap();
    assert!(matches!(
        mpkit::admin::inspect(&name),
        Err(mpkit::shm::ShmError::NotMpkit)
    ));
    let listed = mpkit::admin::list().unwrap();
    assert!(listed.iter().all(|o| o.name != name));
}

/// A file with a queue's header but too short to hold a queue: `admin`
/// lists it (with no depth) and removes it. (Reading the depth failed, so
/// `list` left the file out, and `inspect` and `remove` refused it.)
#[test]
fn a_queue_header_on_a_short_file_is_listed_and_removable() {
    let _w = common::watchdog(30);
    let name = case_name("short-queue");
    let _unlink = Unlink(name.clone());
    let mut header = vec![0u8; 64];
    header[..8].copy_from_slice(b"mpkit\0\0\x01");
    header[8..12].copy_from_slice(&3u32.to_le_bytes());
    header[12..16].copy_from_slice(&12u32.to_le_bytes()); // Queue
    header[48..52].copy_from_slice(&READY.to_le_bytes());
    Process::spawn(
        |(name, header): (String, Vec<u8>)| {
            std::fs::write(format!("/dev/shm/{name}"), header).unwrap();
        },
        (name.clone(), header),
    )
    .unwrap()
    .join()
    .unwrap();
    let info = mpkit::admin::inspect(&name).unwrap();
    assert_eq!(
        (info.kind, info.depth),
        (Some(mpkit::shm::ObjectKind::Queue), None)
    );
    assert!(mpkit::admin::list().unwrap().iter().any(|o| o.name == name));
    mpkit::admin::remove(&name).unwrap();
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

/// A lock cell whose `depth` word another process set to `u32::MAX` (while
/// the lock was free): taking and dropping the lock frees it for the
/// others. (Counting on from the written depth wrapped it to 0, so the
/// guard's release said `NotLocked` and left the lock held for good.)
#[test]
fn a_rewritten_lock_depth_does_not_leave_the_lock_held() {
    let _w = common::watchdog(30);
    for recursive in [false, true] {
        let name = case_name("depth");
        let _unlink = Unlink(name.clone());
        let (lock, rlock) = if recursive {
            (None, Some(mpkit::sync::RLock::create(&name).unwrap()))
        } else {
            (Some(Lock::create(&name).unwrap()), None)
        };
        // The cell's `depth` word: cell at 64, mutex (40 bytes), owner, depth.
        scribble_from_another_process(&name, vec![(108, u32::MAX.to_le_bytes().to_vec())]);
        if let Some(l) = &lock {
            drop(l.lock().unwrap());
            assert!(!l.is_held_by_me());
        }
        if let Some(r) = &rlock {
            let outer = r.lock().unwrap();
            drop(r.lock().unwrap());
            assert!(r.is_held_by_me());
            drop(outer);
            assert!(!r.is_held_by_me());
        }
        let other = Process::spawn(
            |(name, recursive): (String, bool)| {
                if recursive {
                    let r = mpkit::sync::RLock::open(&name).unwrap();
                    r.try_lock().map(drop).map_err(|e| e.to_string())
                } else {
                    let l = Lock::open(&name).unwrap();
                    l.try_lock().map(drop).map_err(|e| e.to_string())
                }
            },
            (name.clone(), recursive),
        )
        .unwrap();
        assert_eq!(other.join().unwrap(), Ok(()), "recursive: {recursive}");
    }
}

/// A `SimpleQueue` whose both sides are leased to this thread, then another
/// process rewrites the producers' lease word so that it names another
/// thread id (its byte 1) and sets the `busy` flag of this thread's own
/// lease slot: a put and a get go through, and so does a put from another
/// process. (The put revoked the lease and waited for that slot's section
/// to end: a slot of this very thread, which was not inside any section and
/// so would never clear the flag; the untimed call hung for good.)
#[test]
fn a_busy_flag_on_this_threads_own_slot_does_not_hang_it() {
    use std::os::unix::fs::FileExt;

    use mpkit::queue::SimpleQueue;

    let _w = common::watchdog(30);
    let name = case_name("own-slot");
    let _unlink = Unlink(name.clone());
    let q = SimpleQueue::<u32>::create(&name, CAPACITY).unwrap();
    // Enough rounds in a row on one thread to be granted both leases.
    for i in 0..200 {
        q.put(i).unwrap();
        assert_eq!(q.get().unwrap(), i);
    }
    let file = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, 512).unwrap();
    // The producers' lease names this thread and its slot 1 (plus one).
    assert_eq!(word[3], 1, "no producers' lease: {word:?}");
    scribble_from_another_process(&name, vec![(513, vec![!word[1]]), (2048 + 8, vec![1])]);
    let start = Instant::now();
    q.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    assert!(start.elapsed() < Duration::from_secs(5));
    let other = Process::spawn(
        |name: String| SimpleQueue::<u32>::open(&name).unwrap().put(8).is_ok(),
        name.clone(),
    )
    .unwrap();
    assert!(other.join().unwrap());
    assert_eq!(q.get().unwrap(), 8);
}
