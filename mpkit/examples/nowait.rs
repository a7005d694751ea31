//! Python's non-blocking `multiprocessing.Queue` calls, in Rust:
//! `put_nowait` on a full `Queue(3)` and `get_nowait` on an empty one, with
//! `full()` and `empty()`. The parent puts; a child process gets.
//!
//! ```text
//! cargo run -p mpkit --example nowait
//! ```
//!
//! The Python it replaces (single-process, and putting 3 three times):
//!
//! ```python
//! from multiprocessing import Queue
//!
//! q = Queue(3)
//! q.put(3)
//! q.put(3)
//! q.put(3)
//! try:
//!     q.put_nowait(3)  # full: raises instead of blocking
//! except:
//!     print('队列已经满了')  # the queue is already full
//! print(q.full())
//! print(q.get())
//! print(q.get())
//! print(q.get())
//! try:
//!     q.get_nowait(3)  # empty: raises instead of blocking
//! except:
//!     print('队列已经空了')  # the queue is already empty
//! print(q.empty())
//! ```
//!
//! The bare `except:` hides a bug there: `get_nowait` takes no argument, so
//! the `TypeError` is what gets caught, empty queue or not. Here each call
//! says exactly what happened: [`TryPutError::Full`] hands the value back,
//! [`TryGetError::Empty`] is its own variant, and anything else is an error.
//! Python's `put_nowait`, `get_nowait`, `full()` and `empty()` are
//! `try_put`, `try_get`, `is_full()` and `is_empty()`.
//!
//! It prints, from the parent, `parent: put 1` to `put 3`, `parent:
//! is_full() = true`, `parent: try_put(4): the queue is full; 4 handed
//! back`; then from the child `child: get() = 1` to `3`, `child: is_empty()
//! = true`, `child: try_get(): the queue is empty`; and last, from the
//! parent, `parent: the child got [1, 2, 3]; is_empty() = true`.

use mpkit::Process;
use mpkit::queue::{Queue, TryGetError, TryPutError};

/// Takes the three values, then shows `get_nowait` on the empty queue.
fn getter(q: Queue<i32>) -> Result<Vec<i32>, String> {
    let mut got = Vec::new();
    for _ in 0..3 {
        // Python's `q.get()`: would wait if the queue were empty.
        let value = q.get().map_err(|e| e.to_string())?;
        println!("child: get() = {value}");
        got.push(value);
    }
    println!("child: is_empty() = {}", q.is_empty());
    match q.try_get() {
        Err(e @ TryGetError::Empty) => println!("child: try_get(): {e}"),
        Ok(value) => return Err(format!("try_get() on an empty queue returned {value}")),
        Err(e) => return Err(e.to_string()),
    }
    Ok(got)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q: Queue<i32> = Queue::new(3)?;
    for value in 1..=3 {
        q.put(value).map_err(|e| e.to_string())?;
        println!("parent: put {value}");
    }
    println!("parent: is_full() = {}", q.is_full());
    // Python's `put_nowait`: a full queue refuses at once and hands the
    // value back instead of dropping it.
    match q.try_put(4) {
        Err(e @ TryPutError::Full(_)) => {
            let reason = e.to_string();
            println!(
                "parent: try_put(4): {reason}; {} handed back",
                e.into_inner()
            );
        }
        Ok(()) => return Err("try_put(4) on a full queue succeeded".into()),
        Err(e) => return Err(e.to_string().into()),
    }

    let child = Process::spawn(getter, q.try_clone()?)?;
    let got = child.join()??;
    println!(
        "parent: the child got {got:?}; is_empty() = {}",
        q.is_empty()
    );
    Ok(())
}
