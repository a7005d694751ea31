//! Values, arrays, `SharedMemory`, the synchronisation objects, and files
//! of any length and bytes.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use mpkit::queue::{ByteQueue, JoinableQueue, Queue, SimpleQueue};
use mpkit::shm::{Array, RawArray, RawValue, SharedMemory, Value};
use mpkit::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, TryLockError,
};
use proptest::prelude::*;

use super::harness::*;
use super::{Unlink, case_name};

/// Values and arrays: the header fields, the lock cell of `Value`/`Array`
/// (64..128: the mutex and its bookkeeping), and the data (any bytes are a
/// valid element).
#[test]
fn values_and_arrays_survive_any_bytes() {
    let cases = (
        0usize..4,
        0usize..6,
        prop::collection::vec(write_in(vec![HEADER_FIELDS, (128, 256), (64, 256)]), 1..4),
    );
    run(256, cases, |(which, len, writes)| {
        let name = case_name("value");
        let _unlink = Unlink(name.clone());
        let _w = watch(&name, format!("kind {which}, len {len}, writes {writes:?}"));
        // The Value and Array lock cells lie at 64..128 and are rewritten
        // too. A lock word rewritten to say "held" is a lock another
        // process holds: calls that wait as long as it takes then wait, as
        // they should, so only the timed ones are made.
        let held = which < 2 && hits_lock_word(&writes, 64);
        let init: Vec<u64> = (0..len as u64).collect();
        match which {
            0 => {
                let v = Value::create(&name, 7u64).unwrap();
                scribble(&name, &writes);
                let ops = |v: &Value<u64>| {
                    if !held {
                        quick("Value get", || v.get());
                        quick("Value set", || v.set(9));
                    }
                    timed("Value lock_timeout", SHORT, || {
                        v.lock_timeout(SHORT).map(|g| *g)
                    });
                    quick("Value try_lock", || v.try_lock().map(|g| *g));
                };
                ops(&v);
                if let Some(v2) = opened("Value open", || Value::<u64>::open(&name)) {
                    ops(&v2);
                }
            }
            1 => {
                let a = Array::create(&name, &init).unwrap();
                scribble(&name, &writes);
                let ops = |a: &Array<u64>| {
                    let n = quick("Array len", || a.len()).0;
                    if !held {
                        for i in [0, n.saturating_sub(1), n, usize::MAX] {
                            quick("Array get", || a.get(i));
                            quick("Array set", || a.set(i, 3));
                        }
                        quick("Array to_vec", || a.to_vec());
                        quick("Array copy_from_slice", || a.copy_from_slice(&vec![1; n]));
                        quick("Array copy_from_slice", || {
                            a.copy_from_slice(&vec![1; n + 1])
                        });
                    }
                    timed("Array lock_timeout", SHORT, || {
                        a.lock_timeout(SHORT)
                            .map(|g| g.iter().fold(0u64, |s, x| s.wrapping_add(*x)))
                    });
                };
                ops(&a);
                if let Some(a2) = opened("Array open", || Array::<u64>::open(&name)) {
                    ops(&a2);
                }
            }
            2 => {
                let v = RawValue::create(&name, 7u64).unwrap();
                scribble(&name, &writes);
                let ops = |v: &RawValue<u64>| {
                    quick("RawValue get", || v.get());
                    quick("RawValue set", || v.set(1));
                    quick("RawValue atomic", || {
                        v.atomic().fetch_add(1, Ordering::SeqCst)
                    });
                };
                ops(&v);
                if let Some(v2) = opened("RawValue open", || RawValue::<u64>::open(&name)) {
                    ops(&v2);
                }
            }
            _ => {
                let a = RawArray::create(&name, &init).unwrap();
                scribble(&name, &writes);
                let ops = |a: &RawArray<u64>| {
                    let n = quick("RawArray len", || a.len()).0;
                    for i in [0, n.saturating_sub(1), n, usize::MAX] {
                        quick("RawArray get", || a.get(i));
                        quick("RawArray set", || a.set(i, 3));
                    }
                    quick("RawArray to_vec", || a.to_vec());
                    quick("RawArray atomics", || {
                        a.atomics()
                            .iter()
                            .fold(0u64, |s, x| s.wrapping_add(x.load(Ordering::SeqCst)))
                    });
                };
                ops(&a);
                if let Some(a2) = opened("RawArray open", || RawArray::<u64>::open(&name)) {
                    ops(&a2);
                }
            }
        }
        Ok(())
    });
}

/// `SharedMemory` has no header: every byte is the user's, and only the
/// file's size bounds an access.
#[test]
fn shared_memory_survives_any_bytes() {
    let cases = (
        1usize..300,
        prop::collection::vec(write_in(vec![(0, 300)]), 1..4),
    );
    run(64, cases, |(size, writes)| {
        let name = case_name("block");
        let _unlink = Unlink(name.clone());
        let _w = watch(&name, format!("size {size}, writes {writes:?}"));
        let m = SharedMemory::create(&name, size).unwrap();
        let writes: Vec<Write> = writes
            .into_iter()
            .filter(|w| w.at + (w.bytes.len() as u64) <= size as u64)
            .collect();
        for w in &writes {
            std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{name}"))
                .unwrap()
                .write_all_at(&w.bytes, w.at)
                .unwrap();
        }
        for m in [Some(m), SharedMemory::open(&name).ok()]
            .into_iter()
            .flatten()
        {
            let n = quick("SharedMemory size", || m.size()).0;
            let mut buf = vec![0; 16];
            for at in [0, n.saturating_sub(16), n, usize::MAX] {
                quick("SharedMemory read", || m.read(at, &mut buf).is_ok());
                quick("SharedMemory write", || m.write(at, &buf).is_ok());
            }
            quick("SharedMemory to_vec", || m.to_vec().len());
        }
        quick("admin::inspect", || {
            mpkit::admin::inspect(&name).map(|i| i.kind)
        });
        Ok(())
    });
}

// ----- locks, semaphores, events, conditions, barriers ----------------------

/// The synchronisation objects: their header fields, their lock cells
/// (64..128: the mutex and its bookkeeping) and their state after that.
#[test]
fn sync_objects_survive_any_bytes() {
    let cases = (
        0usize..8,
        1u32..4,
        prop::collection::vec(write_in(vec![HEADER_FIELDS, (128, 192), (64, 128)]), 1..4),
    );
    run(384, cases, |(which, n, writes)| {
        let name = case_name("sync");
        let _unlink = Unlink(name.clone());
        let _w = watch(&name, format!("kind {which}, n {n}, writes {writes:?}"));
        // Semaphores and events keep their state at 64..128, and have no
        // lock cell: writes at 128.. are moved there. The others' state
        // lies at 128 (conditions, barriers) or nowhere (locks), and their
        // cell (mutex and bookkeeping) at 64, rewritten too.
        let unlocked = matches!(which, 2..=4);
        let writes: Vec<Write> = writes
            .into_iter()
            .map(|w| match (unlocked, (64..128).contains(&w.at)) {
                (true, false) if w.at >= 128 => Write { at: w.at - 64, ..w },
                _ => w,
            })
            .collect();
        // A lock word rewritten to say "held": calls that wait as long as
        // it takes then wait, as they should; only timed ones are made.
        let held = !unlocked && hits_lock_word(&writes, 64);
        match which {
            0 => {
                let l = Lock::create(&name).unwrap();
                scribble(&name, &writes);
                let ops = |l: &Lock| {
                    timed("Lock lock_timeout", SHORT, || {
                        l.lock_timeout(SHORT).map(|g| g.owner_died())
                    });
                    quick("Lock try_lock", || l.try_lock().map(|g| g.owner_died()));
                    timed("Lock acquire", SHORT, || l.acquire(Some(SHORT)));
                    quick("Lock release", || l.release());
                    quick("Lock is_held_by_me", || l.is_held_by_me());
                    // Every guard above was dropped: unless the lock word
                    // says another holds it, the lock is free again.
                    if !held {
                        let again = quick("Lock try_lock", || l.try_lock().map(drop)).0;
                        assert!(
                            !matches!(
                                again,
                                Err(TryLockError::WouldBlock | TryLockError::Deadlock)
                            ),
                            "Lock left held: {again:?}"
                        );
                    }
                };
                ops(&l);
                if let Some(l2) = opened("Lock open", || Lock::open(&name)) {
                    ops(&l2);
                }
            }
            1 => {
                let l = RLock::create(&name).unwrap();
                scribble(&name, &writes);
                let ops = |l: &RLock| {
                    timed("RLock lock_timeout", SHORT, || {
                        l.lock_timeout(SHORT).map(|g| g.owner_died())
                    });
                    timed("RLock acquire", SHORT, || l.acquire(Some(SHORT)));
                    quick("RLock try_lock", || l.try_lock().map(|g| g.owner_died()));
                    quick("RLock release", || l.release());
                    quick("RLock is_held_by_me", || l.is_held_by_me());
                    // Every guard above was dropped: unless the lock word
                    // says another holds it, the lock is free again.
                    if !held {
                        let again = quick("RLock try_lock", || l.try_lock().map(drop)).0;
                        assert!(
                            !matches!(
                                again,
                                Err(TryLockError::WouldBlock | TryLockError::Deadlock)
                            ),
                            "RLock left held: {again:?}"
                        );
                    }
                };
                ops(&l);
                if let Some(l2) = opened("RLock open", || RLock::open(&name)) {
                    ops(&l2);
                }
            }
            2 => {
                let s = Semaphore::create(&name, n).unwrap();
                scribble(&name, &writes);
                let ops = |s: &Semaphore| {
                    quick("Semaphore value", || s.value());
                    quick("Semaphore try_acquire", || s.try_acquire());
                    timed("Semaphore acquire_timeout", SHORT, || {
                        s.acquire_timeout(SHORT).ok()
                    });
                    quick("Semaphore release", || s.release());
                };
                ops(&s);
                if let Some(s2) = opened("Semaphore open", || Semaphore::open(&name)) {
                    ops(&s2);
                }
            }
            3 => {
                let s = BoundedSemaphore::create(&name, n).unwrap();
                scribble(&name, &writes);
                let ops = |s: &BoundedSemaphore| {
                    quick("BoundedSemaphore value", || s.value());
                    quick("BoundedSemaphore try_acquire", || s.try_acquire());
                    timed("BoundedSemaphore acquire_timeout", SHORT, || {
                        s.acquire_timeout(SHORT).ok()
                    });
                    quick("BoundedSemaphore release", || s.release());
                    quick("BoundedSemaphore release", || s.release());
                };
                ops(&s);
                if let Some(s2) = opened("BoundedSemaphore open", || BoundedSemaphore::open(&name))
                {
                    ops(&s2);
                }
            }
            4 => {
                let e = Event::create(&name).unwrap();
                scribble(&name, &writes);
                let ops = |e: &Event| {
                    quick("Event is_set", || e.is_set());
                    timed("Event wait", SHORT, || e.wait(Some(SHORT)).ok());
                    quick("Event set", || e.set());
                    timed("Event wait", SHORT, || e.wait(Some(SHORT)).ok());
                    quick("Event clear", || e.clear());
                    timed("Event wait", SHORT, || e.wait(Some(SHORT)).ok());
                };
                ops(&e);
                if let Some(e2) = opened("Event open", || Event::open(&name)) {
                    ops(&e2);
                }
            }
            5 => {
                let c = Condition::create(&name).unwrap();
                scribble(&name, &writes);
                let ops = |c: &Condition| {
                    timed("Condition lock_timeout + wait", 4 * SHORT, || {
                        c.lock_timeout(SHORT).map(|mut g| {
                            g.notify(1);
                            g.notify_all();
                            let w = g.wait(Some(SHORT)).ok();
                            let f = g.wait_for(|| false, Some(SHORT)).ok();
                            let t = g.wait_timeout(SHORT).map(|(_, n)| n).ok();
                            (w, f, t)
                        })
                    });
                };
                ops(&c);
                if let Some(c2) = opened("Condition open", || Condition::open(&name)) {
                    ops(&c2);
                }
            }
            _ => {
                let b = Barrier::create(&name, n).unwrap();
                scribble(&name, &writes);
                let ops = |b: &Barrier| {
                    quick("Barrier parties", || b.parties());
                    quick("Barrier n_waiting", || b.n_waiting());
                    quick("Barrier broken", || b.broken());
                    timed("Barrier wait_timeout", SHORT, || {
                        b.wait_timeout(SHORT).map_err(|e| e.to_string())
                    });
                    if !held {
                        quick("Barrier reset", || b.reset().map_err(|e| e.to_string()));
                    }
                    timed("Barrier wait_timeout", SHORT, || {
                        b.wait_timeout(SHORT).map_err(|e| e.to_string())
                    });
                    if !held {
                        quick("Barrier abort", || b.abort().map_err(|e| e.to_string()));
                        quick("Barrier reset", || b.reset().map_err(|e| e.to_string()));
                    }
                };
                ops(&b);
                if let Some(b2) = opened("Barrier open", || Barrier::open(&name)) {
                    ops(&b2);
                }
            }
        }
        quick("admin::inspect", || {
            mpkit::admin::inspect(&name).map(|i| i.kind)
        });
        Ok(())
    });
}

// ----- any file at all -------------------------------------------------------

/// A file of any length and bytes, starting with the mpkit magic (else
/// nothing reads further than it): every kind's `open` refuses it or
/// attaches, and `admin` reports or refuses it, quickly.
#[test]
fn any_file_is_refused_or_attached_quickly() {
    let magic = *b"mpkit\0\0\x01";
    let cases = (
        prop::collection::vec(any::<u8>(), 0..128),
        prop_oneof![
            Just(0u64),
            1u64..64,
            64u64..200,
            Just(4096),
            Just(8192),
            0u64..10_000
        ],
        1u32..15,
        word(),
        prop::bool::ANY,
    );
    run(
        256,
        cases,
        |(bytes, file_len, kind, len, honest_version)| {
            let name = case_name("file");
            let _unlink = Unlink(name.clone());
            let _w = watch(
                &name,
                format!("{bytes:?}, file {file_len} bytes, kind {kind}, len {len}"),
            );
            let mut header = vec![0u8; 64];
            header[..bytes.len().min(64)].copy_from_slice(&bytes[..bytes.len().min(64)]);
            header[..8].copy_from_slice(&magic);
            if honest_version {
                header[8..12].copy_from_slice(&3u32.to_le_bytes());
            }
            header[12..16].copy_from_slice(&kind.to_le_bytes());
            header[32..40].copy_from_slice(&len.to_le_bytes());
            if header[48..52] == [0; 4] {
                header[48] = 1;
            }
            {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(format!("/dev/shm/{name}"))
                    .unwrap();
                f.write_all_at(&header, 0).unwrap();
                f.set_len(file_len).unwrap();
            }
            let n = &name;
            quick("admin::inspect", || {
                mpkit::admin::inspect(n).map(|i| (i.kind, i.depth))
            });
            quick("ByteQueue open", || ByteQueue::open(n).map(|q| q.len()));
            quick("Queue open", || Queue::<u8>::open(n).map(|q| q.len()));
            quick("JoinableQueue open", || {
                JoinableQueue::<u8>::open(n).map(|q| q.len())
            });
            quick("SimpleQueue open", || {
                SimpleQueue::<u8>::open(n).map(|q| q.is_empty())
            });
            quick("Value open", || Value::<u64>::open(n).map(|_| ()));
            quick("Array open", || Array::<u8>::open(n).map(|a| a.len()));
            quick("RawValue open", || {
                RawValue::<u64>::open(n).map(|v| v.get())
            });
            quick("RawArray open", || {
                RawArray::<u8>::open(n).map(|a| a.to_vec())
            });
            quick("Lock open", || Lock::open(n).map(|_| ()));
            quick("RLock open", || RLock::open(n).map(|_| ()));
            quick("Semaphore open", || Semaphore::open(n).map(|s| s.value()));
            quick("BoundedSemaphore open", || {
                BoundedSemaphore::open(n).map(|s| s.value())
            });
            quick("Event open", || Event::open(n).map(|e| e.is_set()));
            quick("Condition open", || Condition::open(n).map(|_| ()));
            quick("Barrier open", || Barrier::open(n).map(|b| b.parties()));
            quick("SharedMemory open", || {
                SharedMemory::open(n).map(|m| m.size())
            });
            Ok(())
        },
    );
}
