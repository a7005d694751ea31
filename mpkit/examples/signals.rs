//! Signals, as Python's `signal.signal` and `os.kill` use them: a child
//! with handlers, the parent sends SIGUSR1 and then SIGTERM; a worker
//! suspended and resumed with SIGSTOP/SIGCONT; and the `kill -l` listing.
//!
//! ```text
//! cargo run --example signals
//! ```

use std::time::Duration;

use mpkit::Process;
use mpkit::process::ProcessState;
use mpkit::signal::{self, Signal};
use mpkit::sync::Event;

fn handler_child((ready, handled): (Event, Event)) -> u32 {
    let signals = signal::channel(&[Signal::USR1, Signal::TERM]).expect("handlers");
    ready.set();
    let mut usr1 = 0;
    for s in signals.iter() {
        println!(
            "child {}: got {} ({})",
            std::process::id(),
            s.name(),
            s.description()
        );
        match s {
            Signal::USR1 => {
                usr1 += 1;
                handled.set();
            }
            _ => break, // SIGTERM: clean up and leave
        }
    }
    println!("child: shutting down cleanly");
    usr1
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `handled` orders the two signals: two pending at once may be
    // reported in either order.
    let (ready, handled) = (Event::new()?, Event::new()?);
    let child = Process::spawn(handler_child, (ready.try_clone()?, handled.try_clone()?))?;
    ready.wait(Some(Duration::from_secs(10)))?;
    println!("parent: kill -USR1 {}", child.pid());
    signal::send(child.pid(), Signal::USR1)?;
    handled.wait(Some(Duration::from_secs(10)))?;
    println!("parent: kill -TERM {}", child.pid());
    child.send_signal(Signal::TERM)?;
    println!("parent: the child counted {} SIGUSR1", child.join()?);

    let worker = Process::spawn(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)?;
    worker.suspend()?;
    while worker.state() == ProcessState::Running {
        std::thread::yield_now();
    }
    println!(
        "worker {} after SIGSTOP: {:?}",
        worker.pid(),
        worker.state()
    );
    worker.resume()?;
    while worker.state() != ProcessState::Running {
        std::thread::yield_now();
    }
    println!(
        "worker {} after SIGCONT: {:?}",
        worker.pid(),
        worker.state()
    );
    worker.kill()?;
    println!("worker after SIGKILL: {}", worker.join().unwrap_err());

    println!("\nkill -l:\n{}", signal::kill_list());
    Ok(())
}
