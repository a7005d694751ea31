//! Python's classic `multiprocessing.Queue` example, in Rust: a `Queue(2)`
//! between a putter process that puts 5 random floats and a getter process
//! that takes values until none comes for a second.
//!
//! ```text
//! cargo run -p mpkit --example queue
//! ```
//!
//! The Python it replaces (the getter gives up after 1 s here instead of
//! the 10 s of its `get(True, 10)`, and the putter sleeps up to 20 ms
//! between puts, as the well-known variant of this program does, so that
//! both sides sometimes wait: the getter on an empty queue, the putter on a
//! full one):
//!
//! ```python
//! from multiprocessing import Process, Queue
//! import os, random
//!
//! def getter(name, queue):
//!     print('subprocess %s : %s' % (name, os.getpid()))
//!     while True:
//!         try:
//!             value = queue.get(True, 10)
//!             print('subprocess %s : get value %f' % (name, value))
//!         except Exception:
//!             break
//!
//! def putter(name, queue):
//!     print('subprocess %s : %s' % (name, os.getpid()))
//!     for i in range(0, 5):
//!         value = random.random()
//!         queue.put(value)
//!         print('subprocess %s : put value %f' % (name, value))
//!
//! if __name__ == '__main__':
//!     print('parent process run %s ' % os.getpid())
//!     queue = Queue(2)
//!     getter_process = Process(target=getter, args=('getter', queue))
//!     putter_process = Process(target=putter, args=('putter', queue))
//!     getter_process.start()
//!     putter_process.start()
//! ```
//!
//! It prints the parent's and both children's pids, `subprocess putter :
//! put value 0.953115` for each of the 5 values and `subprocess getter : get
//! value 0.953115` for each value taken (the same values, in the same
//! order, interleaved as the two processes happen to run), then `subprocess
//! getter : queue empty for 1 s, getter quits`. Unlike the Python, the
//! parent joins both children, checks that the getter got exactly what the
//! putter put, and ends with `parent process … done`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpkit::Process;
use mpkit::queue::{GetTimeoutError, Queue};

/// How long the getter waits for the next value before it quits (Python's
/// `queue.get(True, timeout)`); far longer than the putter's pauses.
const GET_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest pause of the putter between two puts.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// Python's `random.random()` without a new dependency: xorshift64*, whose
/// starting state comes from std's randomly keyed hasher, the pid and the
/// clock.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Never 0: xorshift would stay at 0 forever.
        Random(RandomState::new().hash_one((std::process::id(), nanos)) | 1)
    }

    /// A float in [0, 1).
    fn random(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11; // 53 bits
        bits as f64 / (1u64 << 53) as f64
    }
}

/// Puts 5 random floats, pausing a little after each; returns them.
fn putter((name, queue): (String, Queue<f64>)) -> Result<Vec<f64>, String> {
    println!("subprocess {name} : {}", std::process::id());
    let mut random = Random::new();
    let mut put = Vec::new();
    for _ in 0..5 {
        let value = random.random();
        // Waits while 2 values are queued.
        queue.put(value).map_err(|e| e.to_string())?;
        println!("subprocess {name} : put value {value:.6}");
        put.push(value);
        std::thread::sleep(MAX_PAUSE.mul_f64(random.random()));
    }
    Ok(put)
}

/// Takes values until none comes within [`GET_TIMEOUT`]; returns them.
fn getter((name, queue): (String, Queue<f64>)) -> Result<Vec<f64>, String> {
    println!("subprocess {name} : {}", std::process::id());
    let mut got = Vec::new();
    loop {
        match queue.get_timeout(GET_TIMEOUT) {
            Ok(value) => {
                println!("subprocess {name} : get value {value:.6}");
                got.push(value);
            }
            // Python's `queue.Empty` after the timeout: the only way out.
            Err(GetTimeoutError::Timeout) => {
                println!(
                    "subprocess {name} : queue empty for {} s, {name} quits",
                    GET_TIMEOUT.as_secs_f64()
                );
                return Ok(got);
            }
            // Anything else is a real failure, not "the queue is empty".
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("parent process run {}", std::process::id());
    let queue: Queue<f64> = Queue::new(2)?;
    // The putter starts first, so that the getter's timeout starts after it.
    let putter_process = Process::spawn(putter, ("putter".to_string(), queue.try_clone()?))?;
    let getter_process = Process::spawn(getter, ("getter".to_string(), queue.try_clone()?))?;

    let put = putter_process.join()??;
    let got = getter_process.join()??;
    if got != put {
        return Err(format!("the getter got {got:?}, but the putter put {put:?}").into());
    }
    println!(
        "parent process {} done: the getter got all {} values, in the order they were put",
        std::process::id(),
        got.len()
    );
    Ok(())
}
