//! Every flavour of queue: its control block, commits, leases, wait words,
//! join block, lease slots and ring rewritten, then every call that does
//! not wait for another member, and the timed ones.

use std::os::unix::fs::FileExt;
use std::time::Duration;

use mpkit::queue::{ByteQueue, JoinableQueue, Queue, SimpleQueue};
use proptest::prelude::*;

use super::harness::*;
use super::{CAPACITY, RING, Unlink, case_name};

/// Everything of a queue: control, the two sides' lock cells (the mutex
/// and its bookkeeping), commits, leases, wait words, join block, lease
/// slots, and the ring.
fn queue_regions() -> Vec<Region> {
    vec![
        HEADER_FIELDS,
        (64, 88),
        (128, 192),
        (256, 320),
        (384, 400),
        (384, 400),
        (512, 560),
        (640, 656),
        (640, 656),
        (768, 816),
        (896, 904),
        (1024, 1032),
        (1152, 1168),
        (2048, 4096),
        (RING, RING + CAPACITY as u64),
        (RING, RING + CAPACITY as u64),
    ]
}

/// Record headers (`len`, `tag`, `seq` at a 64-byte boundary), which random
/// offsets in the ring seldom hit exactly.
fn record_header_write() -> impl Strategy<Value = Write> {
    (
        0..CAPACITY as u64 / 64,
        prop::sample::select(vec![0u64, 4, 8]),
        word(),
    )
        .prop_map(|(line, field, v)| {
            let width = if field == 8 { 8 } else { 4 };
            Write {
                at: RING + line * 64 + field,
                bytes: v.to_le_bytes()[..width].to_vec(),
            }
        })
}

/// The slot number in a lease word (its byte 3: bits 24-31), and a slot's
/// `busy` flag, which random offsets seldom hit exactly.
fn lease_write() -> impl Strategy<Value = Write> {
    prop_oneof![
        (prop::sample::select(vec![512u64 + 3, 768 + 3]), 0u8..20).prop_map(|(at, slot)| Write {
            at,
            bytes: vec![slot]
        }),
        (prop::sample::select(vec![2048u64, 3072]), 0u64..16, 0u8..3).prop_map(
            |(table, slot, busy)| Write {
                at: table + slot * 64 + 8,
                bytes: vec![busy],
            }
        ),
    ]
}

fn queue_writes() -> impl Strategy<Value = Vec<Write>> {
    prop::collection::vec(
        prop_oneof![
            3 => write_in(queue_regions()),
            1 => record_header_write(),
            1 => lease_write(),
        ],
        1..5,
    )
}

/// What a queue case does before the damage: messages put (their lengths),
/// how many are taken again, and whether this thread first takes and gives
/// enough messages to be granted both sides' leases (so that the damage
/// meets the leased paths too).
fn queue_history() -> impl Strategy<Value = (Vec<usize>, usize, bool)> {
    (
        prop::collection::vec(0usize..400, 0..8),
        0usize..4,
        prop::bool::ANY,
    )
}

/// The producers' and consumers' lease words (`holder`).
fn lease_words(name: &str) -> [u64; 2] {
    let f = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
    [512, 768].map(|at| {
        let mut word = [0u8; 8];
        f.read_exact_at(&mut word, at).unwrap();
        u64::from_le_bytes(word)
    })
}

/// Enough puts and gets in a row for this thread to hold both leases.
const LEASE_ROUNDS: usize = 200;

/// The operations every flavour of queue offers, for [`queue_ops`].
trait FuzzQueue: Sized {
    const KIND: &'static str;
    fn create(name: &str, maxsize: usize) -> Self;
    fn open(name: &str) -> Result<Self, mpkit::shm::ShmError>;
    fn put_bytes(&self, len: usize) -> String;
    fn put_timeout(&self, len: usize) -> String;
    fn try_get(&self) -> String;
    fn get_timeout(&self) -> String;
    /// A batch get; `held`: a side's lock word was rewritten (see
    /// [`hits_lock_word`]), so a call without a timeout may wait.
    fn get_many_timeout(&self, held: bool) -> String;
    fn len(&self) -> usize;
    fn others(&self) -> String;
    fn close(&self);
}

/// Drives `q` after the damage: every call that does not wait for another
/// member, each timed call with [`SHORT`], and the blocking `get` when the
/// queue says it holds something (it must then deliver or report).
fn queue_ops<Q: FuzzQueue>(q: &Q, what: &str, held: bool) {
    quick(&format!("{what} len"), || q.len());
    quick(&format!("{what} others"), || q.others());
    for size in [0, 100, 3000, CAPACITY] {
        quick(&format!("{what} try_put({size})"), || q.put_bytes(size));
        timed(&format!("{what} put_timeout({size})"), SHORT, || {
            q.put_timeout(size)
        });
    }
    for _ in 0..3 {
        quick(&format!("{what} try_get"), || q.try_get());
        timed(&format!("{what} get_timeout"), SHORT, || q.get_timeout());
        timed(&format!("{what} get_many_timeout"), SHORT, || {
            q.get_many_timeout(held)
        });
    }
    quick(&format!("{what} len"), || q.len());
    q.close();
    quick(&format!("{what} try_put after close"), || q.put_bytes(1));
    quick(&format!("{what} try_get after close"), || q.try_get());
    timed(&format!("{what} get_timeout after close"), SHORT, || {
        q.get_timeout()
    });
}

fn queue_case<Q: FuzzQueue>(
    maxsize: usize,
    (puts, gets, leased): (Vec<usize>, usize, bool),
    writes: Vec<Write>,
) {
    let name = case_name(Q::KIND);
    let _unlink = Unlink(name.clone());
    let _w = watch(
        &name,
        format!(
            "{} maxsize {maxsize}, puts {puts:?}, gets {gets}, leased {leased}, writes \
             {writes:?}",
            Q::KIND
        ),
    );
    let q = Q::create(&name, maxsize);
    for _ in 0..if leased { LEASE_ROUNDS } else { 0 } {
        q.put_bytes(1);
        q.try_get();
    }
    if leased {
        assert!(
            lease_words(&name).iter().all(|&w| w != 0),
            "{LEASE_ROUNDS} rounds earned no lease"
        );
    }
    for len in &puts {
        q.put_bytes(*len);
    }
    for _ in 0..gets {
        q.try_get();
    }
    let held = hits_lock_word(&writes, 128) || hits_lock_word(&writes, 256);
    scribble(&name, &writes);
    queue_ops(&q, &format!("{} (attached before)", Q::KIND), held);
    scribble(&name, &writes);
    if let Some(q2) = opened(&format!("{} open", Q::KIND), || Q::open(&name)) {
        queue_ops(&q2, &format!("{} (opened after)", Q::KIND), held);
    }
    quick("admin::inspect", || {
        mpkit::admin::inspect(&name).map(|i| i.depth)
    });
}

impl FuzzQueue for ByteQueue {
    const KIND: &'static str = "ByteQueue";
    fn create(name: &str, maxsize: usize) -> Self {
        ByteQueue::create(name, maxsize, CAPACITY).unwrap()
    }
    fn open(name: &str) -> Result<Self, mpkit::shm::ShmError> {
        ByteQueue::open(name)
    }
    fn put_bytes(&self, len: usize) -> String {
        format!("{:?}", self.try_put(&vec![7; len]))
    }
    fn put_timeout(&self, len: usize) -> String {
        format!("{:?}", ByteQueue::put_timeout(self, &vec![7; len], SHORT))
    }
    fn try_get(&self) -> String {
        format!("{:?}", ByteQueue::try_get(self).map(|m| m.len()))
    }
    fn get_timeout(&self) -> String {
        format!("{:?}", ByteQueue::get_timeout(self, SHORT).map(|m| m.len()))
    }
    fn get_many_timeout(&self, held: bool) -> String {
        // ByteQueue's batch get waits without a timeout: only when the
        // queue says it holds something and no lock word says "held", and
        // then it must not wait.
        if held || ByteQueue::len(self) == 0 {
            return String::new();
        }
        format!("{:?}", self.get_many(5).map(|b| b.len()))
    }
    fn len(&self) -> usize {
        ByteQueue::len(self)
    }
    fn others(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.is_empty(),
            self.maxsize(),
            self.capacity(),
            self.is_closed(),
            self.try_clone().is_ok()
        )
    }
    fn close(&self) {
        ByteQueue::close(self)
    }
}

/// A message of about `len` bytes once encoded.
fn item(len: usize) -> (u32, String) {
    (len as u32, "x".repeat(len))
}

macro_rules! typed_queue {
    ($ty:ident, $kind:literal, $create:expr, $others:expr) => {
        impl FuzzQueue for $ty<(u32, String)> {
            const KIND: &'static str = $kind;
            fn create(name: &str, maxsize: usize) -> Self {
                $create(name, maxsize)
            }
            fn open(name: &str) -> Result<Self, mpkit::shm::ShmError> {
                $ty::open(name)
            }
            fn put_bytes(&self, len: usize) -> String {
                format!("{:?}", self.try_put(item(len)).map_err(|e| e.to_string()))
            }
            fn put_timeout(&self, len: usize) -> String {
                format!(
                    "{:?}",
                    $ty::put_timeout(self, item(len), SHORT).map_err(|e| e.to_string())
                )
            }
            fn try_get(&self) -> String {
                format!("{:?}", $ty::try_get(self).map(|m| m.0))
            }
            fn get_timeout(&self) -> String {
                format!("{:?}", $ty::get_timeout(self, SHORT).map(|m| m.0))
            }
            fn get_many_timeout(&self, _held: bool) -> String {
                format!(
                    "{:?}",
                    $ty::get_many_timeout(self, 5, SHORT).map(|b| b.len())
                )
            }
            fn len(&self) -> usize {
                $ty::len(self)
            }
            fn others(&self) -> String {
                let others: fn(&Self) -> String = $others;
                format!(
                    "{} {} {} {} {} {} {}",
                    self.is_empty(),
                    self.is_full(),
                    self.maxsize(),
                    self.capacity(),
                    self.is_closed(),
                    self.try_clone().is_ok(),
                    others(self)
                )
            }
            fn close(&self) {
                $ty::close(self)
            }
        }
    };
}

typed_queue!(
    Queue,
    "Queue",
    |name, maxsize| Queue::create(name, maxsize, CAPACITY).unwrap(),
    |_| String::new()
);
typed_queue!(
    JoinableQueue,
    "JoinableQueue",
    |name, maxsize| JoinableQueue::create(name, maxsize, CAPACITY).unwrap(),
    |q| {
        let done = (0..3).map(|_| q.task_done().is_ok()).collect::<Vec<_>>();
        let join = timed("JoinableQueue join", SHORT, || q.join_timeout(SHORT).ok()).0;
        format!("{done:?} {} {join:?}", q.unfinished_tasks())
    }
);

#[test]
fn byte_queues_survive_any_bytes() {
    run(
        256,
        (0usize..4, queue_history(), queue_writes()),
        |(maxsize, history, writes)| {
            queue_case::<ByteQueue>(maxsize, history, writes);
            Ok(())
        },
    );
}

#[test]
fn typed_queues_survive_any_bytes() {
    run(
        128,
        (0usize..4, queue_history(), queue_writes()),
        |(maxsize, history, writes)| {
            queue_case::<Queue<(u32, String)>>(maxsize, history, writes);
            Ok(())
        },
    );
}

#[test]
fn joinable_queues_survive_any_bytes() {
    run(
        128,
        (0usize..4, queue_history(), queue_writes()),
        |(maxsize, history, writes)| {
            queue_case::<JoinableQueue<(u32, String)>>(maxsize, history, writes);
            Ok(())
        },
    );
}

/// A `SimpleQueue` has only blocking calls: `get` when it says it holds
/// something (it must deliver or report at once), `put` with a thread that
/// closes the queue if the put is still waiting after a while (a full
/// queue's put waits, as documented; the close must end the wait).
#[test]
fn simple_queues_survive_any_bytes() {
    run(
        64,
        (queue_history(), queue_writes()),
        |((puts, gets, leased), writes)| {
            let name = case_name("SimpleQueue");
            let _unlink = Unlink(name.clone());
            let _w = watch(
                &name,
                format!(
                    "SimpleQueue puts {puts:?}, gets {gets}, leased {leased}, writes {writes:?}"
                ),
            );
            let q = SimpleQueue::<(u32, String)>::create(&name, CAPACITY).unwrap();
            for _ in 0..if leased { LEASE_ROUNDS } else { 0 } {
                q.put(item(1)).unwrap();
                q.get().unwrap();
            }
            for len in &puts {
                q.put(item(*len)).unwrap();
            }
            for _ in 0..gets.min(puts.len()) {
                q.get().unwrap();
            }
            // Every call of a SimpleQueue waits as long as it takes for
            // its side's lock: with a lock word that may say "held", only
            // opening is tried.
            let held = hits_lock_word(&writes, 128) || hits_lock_word(&writes, 256);
            scribble(&name, &writes);
            let reopened = opened("SimpleQueue open", || {
                SimpleQueue::<(u32, String)>::open(&name)
            });
            if held {
                return Ok(());
            }
            for q in [Some(q), reopened].into_iter().flatten() {
                for _ in 0..3 {
                    if !quick("SimpleQueue is_empty", || q.is_empty()).0 {
                        quick("SimpleQueue get (not empty)", || q.get().map(|m| m.0));
                    }
                }
                // A clone checks the control block again, which the damage
                // may have changed; without one, no closer: skip the put.
                let Ok(closer_q) = q.try_clone() else {
                    continue;
                };
                std::thread::scope(|s| {
                    let (done, wait) = std::sync::mpsc::channel::<()>();
                    s.spawn(move || {
                        if wait.recv_timeout(Duration::from_millis(300)).is_err() {
                            closer_q.close();
                        }
                    });
                    timed("SimpleQueue put", Duration::from_millis(300), || {
                        q.put(item(10)).map_err(|e| e.to_string())
                    });
                    let _ = done.send(());
                });
                q.close();
                timed("SimpleQueue get after close", Duration::ZERO, || {
                    q.get().map(|m| m.0)
                });
            }
            Ok(())
        },
    );
}
