//! The `Work` class of a classic Python `multiprocessing.Queue` program, in
//! Rust: one queue of JSON strings, two sender processes and a receiver
//! process that prints forever until it is terminated.
//!
//! ```text
//! cargo run -p mpkit --example json_work
//! ```
//!
//! The Python it replaces (without its one-second sleep per message):
//!
//! ```python
//! import json, multiprocessing
//!
//! class Work(object):
//!     def __init__(self, queue):
//!         self.queue = queue
//!     def send(self, message):
//!         if not isinstance(message, str):
//!             message = json.dumps(message)
//!         self.queue.put(message)
//!     def send_all(self):
//!         for i in range(20):
//!             self.queue.put('第 {} 次循环,发送的消息为:{}'.format(i, i))
//!     def receive(self):
//!         while 1:
//!             result = self.queue.get()
//!             try:
//!                 res = json.loads(result)
//!             except:
//!                 res = result
//!             print('接收到的信息为:{}'.format(res))
//!
//! if __name__ == '__main__':
//!     queue = multiprocessing.Queue()
//!     work = Work(queue)
//!     send = multiprocessing.Process(target=work.send, args=({'message': '这是一条测试的消息'},))
//!     receive = multiprocessing.Process(target=work.receive)
//!     send_all = multiprocessing.Process(target=work.send_all)
//!     send_all.start()
//!     send.start()
//!     receive.start()
//!     send_all.join()
//!     receive.terminate()
//! ```
//!
//! The Python loses messages: `receive.terminate()` right after
//! `send_all.join()` kills the receiver while messages are still queued
//! (and `send` is never joined, so its message may not even be queued
//! yet). This version loses none: the queue is a
//! [`JoinableQueue`], the receiver marks each message done after printing
//! it, and the parent joins both senders, then waits for every message to
//! be done ([`JoinableQueue::join`]) before it terminates the receiver.
//!
//! It prints `received JSON: {"message":"this is a test message"}` for the
//! dict (a JSON object, parsed back), `received: loop i, the message sent
//! is: i` for i = 0 to 19 in that order (the dict's line falls somewhere
//! among them), then `all 21 messages received; receiver terminated (the
//! child process was killed by signal 15)`.

use std::collections::BTreeMap;
use std::time::Duration;

use mpkit::process::{Builder, JoinError};
use mpkit::queue::JoinableQueue;
use mpkit::shm::ShmError;
use serde::{Deserialize, Serialize};

/// How many messages `send_all` puts.
const LOOPS: usize = 20;

/// Python's `Work`: it holds the queue, and passes to a child process as an
/// argument (the queue travels as a handle).
#[derive(Serialize, Deserialize)]
struct Work {
    queue: JoinableQueue<String>,
}

impl Work {
    fn new(queue: JoinableQueue<String>) -> Work {
        Work { queue }
    }

    /// Another handle to the same queue, for another process.
    fn try_clone(&self) -> Result<Work, ShmError> {
        Ok(Work::new(self.queue.try_clone()?))
    }

    /// Puts one message: a string as it is, anything else as JSON.
    fn send(&self, message: impl Serialize) -> Result<(), String> {
        let message = match serde_json::to_value(&message).map_err(|e| e.to_string())? {
            serde_json::Value::String(s) => s,
            json => json.to_string(),
        };
        self.queue.put(message).map_err(|e| e.to_string())
    }

    /// Puts 20 numbered messages; returns how many.
    fn send_all(&self) -> Result<usize, String> {
        for i in 0..LOOPS {
            self.send(format!("loop {i}, the message sent is: {i}"))?;
        }
        Ok(LOOPS)
    }

    /// Prints every message, forever (until terminated), parsing JSON back.
    fn receive(&self) -> Result<(), String> {
        loop {
            let result = self.queue.get().map_err(|e| e.to_string())?;
            match serde_json::from_str::<serde_json::Value>(&result) {
                Ok(json) => println!("received JSON: {json}"),
                Err(_) => println!("received: {result}"),
            }
            // After the print: once the parent sees every message done,
            // every line is out.
            self.queue.task_done().map_err(|e| e.to_string())?;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = Work::new(JoinableQueue::new(0)?);
    // Python's dict. (A `serde_json::Value` cannot be a process argument:
    // arguments travel as postcard, which cannot decode self-describing
    // values; a map serialises to the same JSON object.)
    let dict = BTreeMap::from([("message".to_string(), "this is a test message".to_string())]);

    let send_all = Builder::new()
        .name("send_all")
        .spawn(|work: Work| work.send_all(), work.try_clone()?)?;
    let send = Builder::new().name("send").spawn(
        |(work, message): (Work, BTreeMap<String, String>)| work.send(message),
        (work.try_clone()?, dict),
    )?;
    // A daemon: if anything below fails, the receiver does not outlive us.
    let receive = Builder::new()
        .name("receive")
        .daemon(true)
        .spawn(|work: Work| work.receive(), work.try_clone()?)?;

    let sent = send_all.join()?? + 1;
    send.join()??;
    // Every message is queued now; wait until the receiver has printed
    // every one of them.
    if let Err(e) = work.queue.join_timeout(Duration::from_secs(30)) {
        return Err(format!("the receiver did not finish the {sent} messages: {e}").into());
    }
    receive.terminate()?;
    match receive.join() {
        Err(e @ JoinError::Signaled { .. }) => {
            println!("all {sent} messages received; receiver terminated ({e})")
        }
        other => return Err(format!("the receiver did not end by SIGTERM: {other:?}").into()),
    }
    Ok(())
}
