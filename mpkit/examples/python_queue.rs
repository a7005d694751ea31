//! A Rust program serving a Python program over two named queues that the
//! Python side created with `mpkit.Queue(name=..., dumps=json.dumps,
//! loads=json.loads)`. Rust opens them as plain [`ByteQueue`]s: JSON goes
//! as it is, and Python `bytes` objects come with a leading `0x00` byte
//! (send them back the same way).
//!
//! For each request: JSON `{"n": k}` gets `{"n": k, "square": k*k}`, raw
//! bytes get the same bytes reversed, JSON `null` ends the program.
//!
//! ```text
//! cargo run --example python_queue -- REQUESTS REPLIES
//! ```
//! (`python/tests/test_queue_rust.py` runs it.)

use std::time::Duration;

use mpkit::queue::ByteQueue;
use serde_json::{Value, json};

/// The first byte of a Python `bytes` object sent untouched.
const RAW: u8 = 0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [requests, replies] = args.as_slice() else {
        eprintln!("usage: python_queue REQUESTS REPLIES (names of two mpkit queues)");
        std::process::exit(2);
    };
    let requests = ByteQueue::open(requests)?;
    let replies = ByteQueue::open(replies)?;
    loop {
        let msg = requests.get_timeout(Duration::from_secs(30))?;
        if let Some((&RAW, bytes)) = msg.split_first() {
            let mut reply = vec![RAW];
            reply.extend(bytes.iter().rev());
            replies.put(&reply)?;
            continue;
        }
        let reply = match serde_json::from_slice::<Value>(&msg)? {
            Value::Null => break,
            Value::Object(o) if o.contains_key("n") => {
                let n = o["n"].as_i64().ok_or("n is not an integer")?;
                json!({ "n": n, "square": n * n })
            }
            other => json!({ "unexpected": other }),
        };
        replies.put(&serde_json::to_vec(&reply)?)?;
    }
    println!("served");
    Ok(())
}
