//! Signals between real processes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::watchdog;
use mpkit::Process;
use mpkit::process::{JoinError, ProcessState};
use mpkit::signal::{self, Signal, SignalError};
use mpkit::sync::Event;

#[test]
fn names_and_numbers_both_ways_match_kill_l() {
    for (text, n) in [
        ("SIGHUP", 1),
        ("INT", 2),
        ("quit", 3),
        ("9", 9),
        ("SIGCHLD", 17),
        ("TSTP", 20),
        ("SIGRTMIN+1", 35),
        ("RTMAX", 64),
    ] {
        let s: Signal = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(s.number(), n, "{text}");
        assert_eq!(s.name().parse::<Signal>().unwrap(), s);
    }
    assert!(matches!(
        "SIGNOPE".parse::<Signal>(),
        Err(SignalError::Unknown(_))
    ));
    assert!(matches!(
        "0".parse::<Signal>(),
        Err(SignalError::Unknown(_))
    ));
    for s in [
        Signal::HUP,
        Signal::INT,
        Signal::QUIT,
        Signal::TSTP,
        Signal::KILL,
        Signal::STOP,
        Signal::ALRM,
        Signal::CHLD,
    ] {
        assert!(!s.description().is_empty());
    }
    // The listing names what bash's `kill -l` names, number for number.
    let ours = signal::kill_list();
    if let Ok(out) = Command::new("bash").args(["-c", "kill -l"]).output() {
        let theirs = String::from_utf8_lossy(&out.stdout);
        let pairs = |t: &str| -> Vec<String> { t.split_whitespace().map(str::to_string).collect() };
        assert_eq!(pairs(&ours), pairs(&theirs));
    }
}

#[test]
fn uncatchable_signals_are_refused() {
    assert!(matches!(
        signal::flag(Signal::KILL),
        Err(SignalError::Uncatchable(Signal::KILL))
    ));
    assert!(matches!(
        signal::channel(&[Signal::USR1, Signal::STOP]),
        Err(SignalError::Uncatchable(Signal::STOP))
    ));
    assert!(matches!(
        signal::send(i32::MAX, Signal::TERM),
        Err(SignalError::NoSuchProcess(_))
    ));
}

#[test]
fn a_child_handles_usr1_then_terminates_on_term() {
    let _w = watchdog(20);
    // `handled` makes the order deterministic: two signals pending at once
    // may be reported in either order.
    let (ready, handled) = (Event::new().unwrap(), Event::new().unwrap());
    let child = Process::spawn(
        |(ready, handled): (Event, Event)| {
            let rx = signal::channel(&[Signal::USR1, Signal::TERM]).unwrap();
            ready.set();
            let mut seen = Vec::new();
            loop {
                let s = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                seen.push(s.name());
                if s == Signal::TERM {
                    return seen;
                }
                handled.set();
            }
        },
        (ready.try_clone().unwrap(), handled.try_clone().unwrap()),
    )
    .unwrap();
    assert!(ready.wait(Some(Duration::from_secs(10))).unwrap());
    signal::send(child.pid(), Signal::USR1).unwrap();
    assert!(handled.wait(Some(Duration::from_secs(10))).unwrap());
    child.send_signal(Signal::TERM).unwrap();
    assert_eq!(child.join().unwrap(), ["SIGUSR1", "SIGTERM"]);
}

#[test]
fn suspend_and_resume_a_worker() {
    let _w = watchdog(20);
    let mut child =
        Process::spawn(|s: u64| std::thread::sleep(Duration::from_secs(s)), 600).unwrap();
    child.suspend().unwrap();
    let stopped = common::eventually(Duration::from_secs(10), || {
        child.state() == ProcessState::Stopped(Signal::STOP)
    });
    assert!(stopped, "{:?}", child.state());
    child.resume().unwrap();
    assert!(common::eventually(Duration::from_secs(10), || child
        .state()
        == ProcessState::Running));
    child.kill().unwrap();
    assert!(matches!(
        child.join_timeout(Duration::from_secs(10)),
        Err(JoinError::Signaled { signal: 9 })
    ));
    assert_eq!(child.state(), ProcessState::Exited);
}

#[test]
fn a_default_signal_ends_a_child_and_join_names_it() {
    let _w = watchdog(20);
    let child = Process::spawn(|s: u64| std::thread::sleep(Duration::from_secs(s)), 600).unwrap();
    child.send_signal(Signal::HUP).unwrap();
    assert!(matches!(
        child.join(),
        Err(JoinError::Signaled { signal: 1 })
    ));
}
