//! Shared memory between real processes, and with Python.

mod common;

use std::process::Command;
use std::time::Duration;

use common::watchdog;
use mpkit::Process;
use mpkit::shm::{Array, Bool, RawArray, RawValue, SharedMemory, ShmError, Value};
use mpkit::sync::Lock;

/// A unique name for this test run.
fn name(tag: &str) -> String {
    format!("mpkit_test_{}_{tag}", std::process::id())
}

#[test]
fn shared_memory_by_name_between_unrelated_handles() {
    let _w = watchdog(20);
    let n = name("block");
    let block = SharedMemory::create(&n, 4096).unwrap();
    block.write(0, b"parent").unwrap();
    let child = Process::spawn(
        |n: String| {
            let b = SharedMemory::open(&n).unwrap();
            let mut buf = [0u8; 6];
            b.read(0, &mut buf).unwrap();
            b.write(100, b"child").unwrap();
            (buf.to_vec(), b.size())
        },
        n.clone(),
    )
    .unwrap();
    let (seen, size) = child.join().unwrap();
    assert_eq!((seen.as_slice(), size), (&b"parent"[..], 4096));
    let mut buf = [0u8; 5];
    block.read(100, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
    assert!(matches!(
        block.read(4095, &mut buf),
        Err(ShmError::OutOfBounds { .. })
    ));
    drop(block);
    assert!(matches!(SharedMemory::open(&n), Err(ShmError::NotFound(_))));
}

#[test]
fn names_are_checked() {
    let n = name("taken");
    let _a = SharedMemory::create(&n, 10).unwrap();
    assert!(matches!(
        SharedMemory::create(&n, 10),
        Err(ShmError::Exists(_))
    ));
    assert!(matches!(
        SharedMemory::create("a/b", 10),
        Err(ShmError::InvalidName(_))
    ));
    assert!(matches!(
        SharedMemory::create("", 10),
        Err(ShmError::InvalidName(_))
    ));
    assert!(matches!(
        SharedMemory::open(&name("absent")),
        Err(ShmError::NotFound(_))
    ));
    let mode = std::fs::metadata(format!("/dev/shm/{n}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}

#[test]
fn keep_leaves_the_name_and_unlink_removes_it() {
    let n = name("kept");
    let mut a = SharedMemory::create(&n, 8).unwrap();
    a.keep();
    drop(a);
    let mut b = SharedMemory::open(&n).unwrap();
    b.unlink().unwrap();
    assert!(matches!(SharedMemory::open(&n), Err(ShmError::NotFound(_))));
}

#[test]
fn anonymous_memory_passes_to_children() {
    let _w = watchdog(20);
    let block = SharedMemory::anonymous(64).unwrap();
    assert!(block.name().is_none());
    let child = Process::spawn(
        |b: SharedMemory| b.write(0, &[42; 8]).unwrap(),
        block.try_clone().unwrap(),
    )
    .unwrap();
    child.join().unwrap();
    assert_eq!(&block.to_vec()[..9], &[42, 42, 42, 42, 42, 42, 42, 42, 0]);
}

/// python3, when it is there (see [`common::require_peer`]).
fn python() -> Option<&'static str> {
    common::require_peer(
        "python3 with multiprocessing.shared_memory",
        Command::new("python3").args(["-c", "import multiprocessing.shared_memory"]),
    )
    .then_some("python3")
}

#[test]
fn python_attaches_to_an_mpkit_block_and_the_other_way_round() {
    let _w = watchdog(60);
    let Some(py) = python() else { return };
    // mpkit creates, Python attaches, each sees the other's writes.
    let block = SharedMemory::create_unique(64).unwrap();
    block.write(0, b"from rust").unwrap();
    let script = format!(
        "from multiprocessing import shared_memory, resource_tracker\n\
         s = shared_memory.SharedMemory(name={:?})\n\
         resource_tracker.unregister(s._name, 'shared_memory')\n\
         print(bytes(s.buf[:9]).decode(), s.size)\n\
         s.buf[16:27] = b'from python'\n\
         s.close()\n",
        block.name().unwrap()
    );
    let out = Command::new(py).arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from rust 64");
    let mut buf = [0u8; 11];
    block.read(16, &mut buf).unwrap();
    assert_eq!(&buf, b"from python");

    // Python creates, mpkit attaches and answers, Python reads the answer.
    let n = name("py");
    let script = format!(
        "import sys\n\
         from multiprocessing import shared_memory\n\
         s = shared_memory.SharedMemory(name={n:?}, create=True, size=32)\n\
         s.buf[:6] = b'python'\n\
         print('ready', flush=True)\n\
         sys.stdin.readline()\n\
         print(bytes(s.buf[8:12]).decode(), flush=True)\n\
         s.close(); s.unlink()\n"
    );
    let mut child = Command::new(py)
        .arg("-c")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader, Write};
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let theirs = SharedMemory::open(&n).unwrap();
    let mut got = [0u8; 6];
    theirs.read(0, &mut got).unwrap();
    assert_eq!(&got, b"python");
    theirs.write(8, b"rust").unwrap();
    writeln!(child.stdin.take().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "rust");
    assert!(child.wait().unwrap().success());
    assert!(matches!(SharedMemory::open(&n), Err(ShmError::NotFound(_))));
}

fn add_many((v, times): (Value<i64>, u32)) {
    for _ in 0..times {
        *v.lock().unwrap() += 1;
    }
}

#[test]
fn a_locked_value_counts_exactly_across_processes() {
    let _w = watchdog(60);
    let v = Value::new(0i64).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| Process::spawn(add_many, (v.try_clone().unwrap(), 5_000)).unwrap())
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(v.get().unwrap(), 20_000);
}

#[test]
fn atomics_in_raw_values_count_exactly() {
    let _w = watchdog(60);
    use std::sync::atomic::Ordering;
    let hits = RawValue::new(0u64).unwrap();
    let slots = RawArray::<u32>::zeroed(4).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            Process::spawn(
                |(hits, slots, i): (RawValue<u64>, RawArray<u32>, usize)| {
                    for _ in 0..10_000 {
                        hits.atomic().fetch_add(1, Ordering::Relaxed);
                        slots.atomics()[i].fetch_add(1, Ordering::Relaxed);
                    }
                },
                (hits.try_clone().unwrap(), slots.try_clone().unwrap(), i),
            )
            .unwrap()
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(hits.get(), 40_000);
    assert_eq!(slots.to_vec(), [10_000; 4]);
}

/// Python's classic `Array('i', [1, 2, 3])` and string example.
#[test]
fn an_array_and_a_string_shared_with_a_child() {
    let _w = watchdog(20);
    let arr = Array::new(&[1i32, 2, 3]).unwrap();
    let text = Array::<u8>::zeroed(32).unwrap();
    text.set_value(b"hello").unwrap();
    let child = Process::spawn(
        |(arr, text): (Array<i32>, Array<u8>)| {
            let seen = arr.get(1).unwrap().unwrap();
            arr.set(1, 20).unwrap();
            let said = text.to_string_lossy().unwrap();
            text.set_value(b"hello from the child").unwrap();
            (seen, said)
        },
        (arr.try_clone().unwrap(), text.try_clone().unwrap()),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), (2, "hello".to_string()));
    assert_eq!(arr.to_vec().unwrap(), [1, 20, 3]);
    assert_eq!(text.to_string_lossy().unwrap(), "hello from the child");
    assert!(text.set_value(&[b'x'; 33]).is_err());
    assert_eq!(
        text.to_string_lossy().unwrap(),
        "hello from the child",
        "a failed set changes nothing"
    );
    assert!(arr.set(3, 0).is_err());
    assert_eq!(arr.get(3).unwrap(), None);
}

#[test]
fn named_values_open_by_name_with_their_type_checked() {
    let _w = watchdog(20);
    let n = name("value");
    let v = Value::create(&n, 2.5f64).unwrap();
    let child = Process::spawn(
        |n: String| {
            let v = Value::<f64>::open(&n).unwrap();
            v.set(v.get().unwrap() * 2.0).unwrap();
            let wrong_type = Value::<i64>::open(&n).unwrap_err().to_string();
            let wrong_kind = Lock::open(&n).unwrap_err().to_string();
            let wrong_array = Array::<f64>::open(&n).unwrap_err().to_string();
            (wrong_type, wrong_kind, wrong_array)
        },
        n.clone(),
    )
    .unwrap();
    let (wrong_type, wrong_kind, wrong_array) = child.join().unwrap();
    assert_eq!(v.get().unwrap(), 5.0);
    assert_eq!(
        wrong_type,
        "the object holds `f64 (8 bytes, alignment 8)`, not `i64 (8 bytes, alignment 8)`"
    );
    assert!(
        wrong_kind.contains("is a Value, not a Lock"),
        "{wrong_kind}"
    );
    assert!(
        wrong_array.contains("is a Value, not a Array"),
        "{wrong_array}"
    );
    let b = Value::new(Bool::from(true)).unwrap();
    assert!(b.get().unwrap().get());
}

#[test]
fn foreign_truncated_and_future_files_are_refused() {
    let _w = watchdog(20);
    // Not an mpkit object at all.
    let n = name("foreign");
    let raw = SharedMemory::create(&n, 256).unwrap();
    raw.write(0, b"definitely not a header").unwrap();
    assert!(matches!(Value::<u32>::open(&n), Err(ShmError::NotMpkit)));
    drop(raw);
    // Too short to hold a header.
    let n = name("short");
    let _short = SharedMemory::create(&n, 10).unwrap();
    assert!(matches!(
        Value::<u32>::open(&n),
        Err(ShmError::Truncated { .. })
    ));
    // A layout from another version.
    let n = name("future");
    let v = Value::create(&n, 1u32).unwrap();
    SharedMemory::open(&n)
        .unwrap()
        .write(8, &99u32.to_le_bytes())
        .unwrap();
    assert!(matches!(
        Value::<u32>::open(&n),
        Err(ShmError::Version { found: 99, .. })
    ));
    drop(v);
    // A file cut short after creation.
    let n = name("cut");
    let a = Array::create(&n, &[0u64; 1000]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{n}"))
        .unwrap()
        .set_len(200)
        .unwrap();
    assert!(matches!(
        Array::<u64>::open(&n),
        Err(ShmError::Truncated { .. })
    ));
    drop(a);
}

#[test]
fn a_value_whose_holder_died_is_reported_and_usable() {
    let _w = watchdog(20);
    let v = Value::new([0u32; 2]).unwrap();
    let child = Process::spawn(
        |v: Value<[u32; 2]>| -> () {
            let mut g = v.lock().unwrap();
            g[0] = 1; // half of an update that should set both to 1
            // SAFETY: raise(2) kills this process with the lock held.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        v.try_clone().unwrap(),
    )
    .unwrap();
    assert!(child.join().is_err());
    let mut g = v.lock_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        g.owner_died(),
        "the next holder is told the previous one died"
    );
    assert_eq!(*g, [1, 0]);
    g[1] = 1; // repair
    drop(g);
    let g = v.lock().unwrap();
    assert!(!g.owner_died());
    assert_eq!(*g, [1, 1]);
}

#[test]
#[should_panic(expected = "already holds a guard")]
fn a_second_guard_in_one_thread_is_refused() {
    let v = Value::new(0u8).unwrap();
    let _a = v.lock().unwrap();
    let _b = v.lock();
}

#[test]
fn get_lock_spans_several_operations() {
    let v = Value::new(1u16).unwrap();
    let lock = v.get_lock();
    let held = lock.lock().unwrap();
    v.set(v.get().unwrap() + 1).unwrap(); // re-enters the same lock
    drop(held);
    assert_eq!(v.get().unwrap(), 2);
}

/// How many increments the races below make.
const COUNT: u64 = 200_000;

/// Reads `read` until it reaches `COUNT`, checking that it never goes back
/// and never passes `COUNT`: each read saw a value some increment wrote.
fn watch_count_rise(what: &str, mut read: impl FnMut() -> u64) -> usize {
    let (mut last, mut reads) = (0, 0);
    while last < COUNT {
        let now = read();
        assert!(
            (last..=COUNT).contains(&now),
            "{what}: read {now} after {last}"
        );
        last = now;
        reads += 1;
    }
    reads
}

/// Counts with `fetch_add` through the atomic views and writes with `set`,
/// as a single writer of each slot, so every slot only rises.
fn count_up((hits, slots): (RawValue<u64>, RawArray<u64>)) {
    use std::sync::atomic::Ordering;
    for i in 1..=COUNT {
        hits.atomic().fetch_add(1, Ordering::Relaxed);
        slots.atomics()[0].fetch_add(1, Ordering::Relaxed);
        slots.set(1, i).unwrap();
    }
}

/// Checks one rising read of every slot `count_up` writes.
fn watch_all_rise(hits: &RawValue<u64>, slots: &RawArray<u64>) {
    let mut last = [0u64; 3];
    watch_count_rise("RawValue::get", || {
        let seen = [hits.get(), slots.get(0).unwrap(), slots.get(1).unwrap()];
        let all = slots.to_vec();
        for (k, (&now, &before)) in seen.iter().zip(&last).enumerate() {
            assert!(
                now >= before && now <= COUNT,
                "slot {k}: {now} after {before}"
            );
        }
        assert!(
            all[0] >= seen[1] && all[1] >= seen[2] && all[2] == 7,
            "{all:?}"
        );
        last = seen;
        seen[0]
    });
}

#[test]
fn raw_values_read_while_another_thread_counts_through_the_atomic_view() {
    let _w = watchdog(60);
    let hits = RawValue::new(0u64).unwrap();
    let slots = RawArray::new(&[0u64, 0, 7]).unwrap();
    let (h, s) = (hits.try_clone().unwrap(), slots.try_clone().unwrap());
    std::thread::scope(|scope| {
        scope.spawn(|| count_up((h, s)));
        watch_all_rise(&hits, &slots);
    });
    assert_eq!((hits.get(), slots.to_vec()), (COUNT, vec![COUNT, COUNT, 7]));
}

#[test]
fn raw_values_read_while_another_process_counts_through_the_atomic_view() {
    let _w = watchdog(60);
    let hits = RawValue::new(0u64).unwrap();
    let slots = RawArray::new(&[0u64, 0, 7]).unwrap();
    let child = Process::spawn(
        count_up,
        (hits.try_clone().unwrap(), slots.try_clone().unwrap()),
    )
    .unwrap();
    watch_all_rise(&hits, &slots);
    child.join().unwrap();
    assert_eq!((hits.get(), slots.to_vec()), (COUNT, vec![COUNT, COUNT, 7]));
}

/// Two threads write neighbouring byte ranges that share machine words
/// (3..13 and 13..29): neither write may undo the other's bytes.
#[test]
fn shared_memory_writes_of_neighbouring_bytes_from_two_threads_keep_both() {
    let _w = watchdog(60);
    let block = SharedMemory::anonymous(64).unwrap();
    let rounds = 50_000u32;
    let write = |from: usize, to: usize, tag: u8| {
        for r in 0..rounds {
            block
                .write(from, &vec![tag | (r % 64) as u8; to - from])
                .unwrap();
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| write(3, 13, 0x40));
        s.spawn(|| write(13, 29, 0x80));
        for _ in 0..1_000 {
            let mut seen = [0u8; 32];
            block.read(0, &mut seen).unwrap();
            assert!(
                seen[..3].iter().chain(&seen[29..]).all(|&x| x == 0)
                    && seen[3..13].iter().all(|&x| x == 0 || x & 0xC0 == 0x40)
                    && seen[13..29].iter().all(|&x| x == 0 || x & 0xC0 == 0x80),
                "{seen:?}"
            );
        }
    });
    let last = ((rounds - 1) % 64) as u8;
    let all = block.to_vec();
    assert!(all[3..13].iter().all(|&x| x == 0x40 | last), "{all:?}");
    assert!(all[13..29].iter().all(|&x| x == 0x80 | last), "{all:?}");
}

/// Another process rewrites an array's recorded length after this one
/// attached: the array keeps the length it checked, so no read or write
/// goes past its memory (issue: hostile shared memory).
#[test]
fn a_length_rewritten_after_attach_is_not_believed() {
    let _w = common::watchdog(30);
    let name = format!("mpkit-test-len-{}", std::process::id());
    let arr = mpkit::shm::RawArray::<u64>::create(&name, &[1, 2, 3, 4]).unwrap();
    let locked = mpkit::shm::Array::<u64>::new(&[5, 6]).unwrap();
    mpkit::Process::spawn(
        |name: String| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{name}"))
                .unwrap();
            // The header's `len` (offset 32), as ARCHITECTURE.md lays it out.
            f.write_all_at(&(1u64 << 40).to_le_bytes(), 32).unwrap();
        },
        name.clone(),
    )
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(arr.len(), 4);
    assert_eq!(arr.to_vec(), [1, 2, 3, 4]);
    arr.set(3, 9).unwrap();
    assert_eq!(arr.get(3), Some(9));
    assert_eq!(arr.get(4), None);
    assert!(arr.set(1 << 30, 1).is_err());
    assert_eq!(locked.len(), 2);
    // A process attaching now is refused: the header no longer matches
    // the file.
    assert!(mpkit::shm::RawArray::<u64>::open(&name).is_err());
}

/// A child process overwrites the whole pthread mutex at the start of a
/// named object's lock cell (offset 64) with `0xff` bytes, through the file.
fn scribble_in_child(name: &str) {
    common::scribble_from_another_process(name, vec![(64, vec![0xff; 40])]);
}

/// Another process fills a value's mutex with garbage: attaching is
/// refused, and `get`, `set` and every way of locking return
/// `LockError::Corrupt` (or its per-operation twin), never a panic.
#[test]
fn a_value_whose_mutex_is_garbage_is_an_error_not_a_panic() {
    use mpkit::sync::{LockError, LockTimeoutError, TryLockError};
    let _w = watchdog(30);
    let n = name("garbage-value");
    let v = Value::<u64>::create(&n, 7).unwrap();
    scribble_in_child(&n);
    assert!(matches!(Value::<u64>::open(&n), Err(ShmError::Corrupt(_))));
    assert!(matches!(v.get(), Err(LockError::Corrupt)));
    assert!(matches!(v.set(8), Err(LockError::Corrupt)));
    assert!(matches!(v.lock(), Err(LockError::Corrupt)));
    assert!(matches!(v.try_lock(), Err(TryLockError::Corrupt)));
    assert!(matches!(
        v.lock_timeout(Duration::from_secs(1)),
        Err(LockTimeoutError::Corrupt)
    ));
    assert!(matches!(v.get_lock().lock(), Err(LockError::Corrupt)));
}

/// The same for an array: reads are a `LockError`, writes an
/// `ArrayError::Lock`, and nothing is written.
#[test]
fn an_array_whose_mutex_is_garbage_is_an_error_not_a_panic() {
    use mpkit::shm::ArrayError;
    use mpkit::sync::LockError;
    let _w = watchdog(30);
    let n = name("garbage-array");
    let a = Array::<u8>::create(&n, b"abc\0").unwrap();
    scribble_in_child(&n);
    assert!(matches!(Array::<u8>::open(&n), Err(ShmError::Corrupt(_))));
    assert!(matches!(a.get(0), Err(LockError::Corrupt)));
    assert!(matches!(a.to_vec(), Err(LockError::Corrupt)));
    assert!(matches!(a.value(), Err(LockError::Corrupt)));
    assert!(matches!(a.to_string_lossy(), Err(LockError::Corrupt)));
    assert!(matches!(
        a.set(0, b'x'),
        Err(ArrayError::Lock(LockError::Corrupt))
    ));
    assert!(matches!(
        a.set_value(b"xyz"),
        Err(ArrayError::Lock(LockError::Corrupt))
    ));
    assert!(matches!(a.lock(), Err(LockError::Corrupt)));
    // Past the end is answered without the lock.
    assert_eq!(a.get(4).unwrap(), None);
}

/// Removes `/dev/shm` files when dropped, so a failing test leaves none.
struct RemoveOnDrop(Vec<String>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

#[test]
fn a_killed_creators_block_is_stale_unless_kept_or_held() {
    use mpkit::admin;
    let _w = watchdog(30);
    let (leaked, kept, held) = (name("raw_leaked"), name("raw_kept"), name("raw_held"));
    let _cleanup = RemoveOnDrop(vec![leaked.clone(), kept.clone(), held.clone()]);
    let child = Process::spawn(
        |(leaked, kept, held): (String, String, String)| -> () {
            let _leaked = SharedMemory::create(&leaked, 64).unwrap();
            SharedMemory::create(&kept, 64).unwrap().keep();
            let _held = SharedMemory::create(&held, 64).unwrap();
            // SAFETY: raise(2): die at once, running no destructor.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        (leaked.clone(), kept.clone(), held.clone()),
    )
    .unwrap();
    let pid = child.pid();
    assert!(child.join().is_err());
    let _holder = SharedMemory::open(&held).unwrap();

    let info = admin::inspect(&leaked).unwrap();
    assert_eq!(info.kind, None);
    assert_eq!(info.creator_pid, Some(pid));
    assert!(
        !info.creator_alive && !info.kept && !info.in_use,
        "{info:?}"
    );
    assert!(info.is_stale(), "{info:?}");
    let info = admin::inspect(&kept).unwrap();
    assert!(info.kept && !info.is_stale(), "{info:?}");
    let info = admin::inspect(&held).unwrap();
    assert!(info.in_use && !info.is_stale(), "{info:?}");
    let stale: Vec<String> = admin::list()
        .unwrap()
        .into_iter()
        .filter(|o| o.is_stale())
        .map(|o| o.name)
        .collect();
    assert!(stale.contains(&leaked) && !stale.contains(&kept) && !stale.contains(&held));
    admin::remove(&leaked).unwrap();
    assert!(matches!(
        SharedMemory::open(&leaked),
        Err(ShmError::NotFound(_))
    ));

    // A live creator's block is not stale; a file mpkit did not make is
    // not listed, and never removed.
    let mine = SharedMemory::create_unique(64).unwrap();
    let info = admin::inspect(mine.name().unwrap()).unwrap();
    assert!(info.creator_alive && !info.is_stale(), "{info:?}");
    assert_eq!(info.creator_pid, Some(std::process::id() as i32));
    let foreign = format!("foreign_{}", std::process::id());
    let _cleanup_foreign = RemoveOnDrop(vec![foreign.clone()]);
    std::fs::write(format!("/dev/shm/{foreign}"), [0u8; 64]).unwrap();
    assert!(matches!(admin::inspect(&foreign), Err(ShmError::NotMpkit)));
    assert!(admin::remove(&foreign).is_err());
}

/// Runs the Python attacher: Python attaches to block `n` (with the
/// documented fix when `fix`), closes it and exits; returns once its
/// resource tracker, which deletes what it believes leaked, has exited too.
/// The Python version comes back as `(major, minor)`, if its tracker could
/// be waited for.
fn python_attaches_and_exits(py: &str, n: &str, fix: bool) -> Option<(u32, u32)> {
    use std::io::{BufRead, BufReader, Write};
    let script = "\
import sys
from multiprocessing import resource_tracker, shared_memory
resource_tracker.ensure_running()
tracker = getattr(resource_tracker._resource_tracker, '_pid', None) or 0
print(tracker, *sys.version_info[:2], flush=True)
sys.stdin.readline()
name = sys.argv[1]
if sys.argv[2] == 'fix':
    if sys.version_info >= (3, 13):
        shm = shared_memory.SharedMemory(name, track=False)
    else:
        shm = shared_memory.SharedMemory(name)
        resource_tracker.unregister(shm._name, 'shared_memory')
else:
    shm = shared_memory.SharedMemory(name)
shm.close()
";
    let mut child = Command::new(py)
        .args(["-c", script, n, if fix { "fix" } else { "plain" }])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<u32> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{line:?}");
    // 0: this Python does not say (the tracker's pid is a private field).
    let tracker = (fields[0] != 0).then(|| common::pidfd(fields[0] as i32));
    writeln!(child.stdin.take().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    let tracker = tracker?;
    assert!(
        common::wait_exit(&tracker, Duration::from_secs(20)),
        "Python's resource tracker never exited"
    );
    Some((fields[1], fields[2]))
}

#[test]
fn python_keeps_a_block_it_attached_to_with_the_documented_fix() {
    let _w = watchdog(60);
    let Some(py) = python() else { return };
    let block = SharedMemory::create(&name("tracked_fix"), 64).unwrap();
    python_attaches_and_exits(py, block.name().unwrap(), true);
    assert!(SharedMemory::open(block.name().unwrap()).is_ok());

    // Without it, the tracker deletes the block Rust created (3.8 to 3.13
    // at least) as soon as the Python process that attached exits.
    let block = SharedMemory::create(&name("tracked_plain"), 64).unwrap();
    let version = python_attaches_and_exits(py, block.name().unwrap(), false);
    if let Some(version @ (3, 8..=13)) = version {
        assert!(
            matches!(
                SharedMemory::open(block.name().unwrap()),
                Err(ShmError::NotFound(_))
            ),
            "Python {version:?}'s resource tracker left the block alone"
        );
    }
}
