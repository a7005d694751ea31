//! A System V kernel message queue (Python's `sysv_ipc.MessageQueue`):
//! messages carry a type, and each receiver picks what it wants — one takes
//! only type 2, another takes the lowest type first. The queue shows in
//! `ipcs -q` while it runs.
//!
//! ```text
//! cargo run --example msgqueue
//! ```

use mpkit::Process;
use mpkit::msgq::{Selector, SysvQueue};

/// Takes only type-2 messages.
fn only_type_2((q, n): (SysvQueue, usize)) -> Vec<String> {
    (0..n)
        .map(|_| {
            let (t, text) = q.recv(Selector::Type(2)).expect("recv");
            format!("type {t}: {}", String::from_utf8_lossy(&text))
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = SysvQueue::private(0o600)?;
    println!("System V queue id {} (see `ipcs -q`)", q.id());
    let messages = [
        (3, "log line"),
        (2, "job A"),
        (1, "urgent alarm"),
        (2, "job B"),
        (3, "another log line"),
        (1, "second alarm"),
    ];
    for (t, text) in messages {
        q.send(t, text.as_bytes())?;
        println!("sent type {t}: {text}");
    }
    let jobs = Process::spawn(only_type_2, (q, 2))?;
    for line in jobs.join()? {
        println!("receiver taking only type 2 got {line}");
    }
    while let Ok((t, text)) = q.try_recv(Selector::UpTo(3)) {
        println!(
            "receiver taking the lowest type first got type {t}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let stat = q.stat()?;
    println!("left in the queue: {} messages", stat.messages);
    q.remove()?;
    Ok(())
}
