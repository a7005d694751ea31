//! `mpkit ls`, `mpkit rm`, `mpkit queue …` and `mpkit signals`: named
//! objects from the shell.

use std::io::{Read, Write};
use std::time::Duration;

use clap::{Args, Subcommand};
use mpkit::admin::{self, ObjectInfo};
use mpkit::queue::{ByteQueue, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use mpkit::shm::ShmError;
use mpkit::signal::Signal;

/// An error with the exit code the documentation promises.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

/// Exit codes (also in `mpkit queue --help`).
pub mod code {
    /// Any other failure (bad input, permission, …).
    pub const ERROR: u8 = 1;
    /// `get` found the queue empty.
    pub const EMPTY: u8 = 3;
    /// `put` found the queue full.
    pub const FULL: u8 = 4;
    /// The `--timeout` passed.
    pub const TIMEOUT: u8 = 5;
    /// No object has that name.
    pub const NOT_FOUND: u8 = 6;
}

impl CliError {
    fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code,
        }
    }
}

impl From<ShmError> for CliError {
    fn from(e: ShmError) -> CliError {
        let code = match e {
            ShmError::NotFound(_) => code::NOT_FOUND,
            _ => code::ERROR,
        };
        CliError::new(code, e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::new(code::ERROR, e.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, CliError>;

/// Options of `mpkit ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `mpkit ls`: every named mpkit object on the machine.
pub fn ls(args: LsArgs) -> Result {
    let objects = admin::list()?;
    if args.json {
        // Every column of the table, `stale` included (a derived field, so
        // it is added here rather than serialized with the object).
        let json_error = |e: serde_json::Error| CliError::new(code::ERROR, e.to_string());
        let listed = objects
            .iter()
            .map(|o| {
                let mut value = serde_json::to_value(o).map_err(json_error)?;
                if let Some(fields) = value.as_object_mut() {
                    fields.insert("stale".to_string(), o.is_stale().into());
                }
                Ok(value)
            })
            .collect::<Result<Vec<_>>>()?;
        let text = serde_json::to_string_pretty(&listed).map_err(json_error)?;
        println!("{text}");
        return Ok(());
    }
    if objects.is_empty() {
        println!("no named mpkit objects in /dev/shm");
        return Ok(());
    }
    println!(
        "{:<40} {:<16} {:>10} {:>7} {:>8} {:>6} {:>6} {:>5} {:>5}  ELEMENT",
        "NAME", "KIND", "BYTES", "DEPTH", "CREATOR", "ALIVE", "IN-USE", "KEPT", "STALE"
    );
    for o in &objects {
        println!(
            "{:<40} {:<16} {:>10} {:>7} {:>8} {:>6} {:>6} {:>5} {:>5}  {}",
            o.name,
            o.kind.map_or("SharedMemory", |k| k.name()),
            o.size,
            o.depth.map_or("-".to_string(), |d| d.to_string()),
            o.creator_pid.map_or("-".to_string(), |p| p.to_string()),
            yes(o.creator_alive),
            yes(o.in_use),
            yes(o.kept),
            yes(o.is_stale()),
            o.element.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Options of `mpkit rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Names to remove (as `mpkit ls` shows them).
    names: Vec<String>,
    /// Remove every stale object: its creator is gone and no process has it
    /// open or mapped.
    #[arg(long)]
    stale: bool,
}

/// `mpkit rm`: removes named objects (never files that are not mpkit's).
pub fn rm(args: RmArgs) -> Result {
    if args.names.is_empty() && !args.stale {
        return Err(CliError::new(
            code::ERROR,
            "nothing to remove: give names, or --stale",
        ));
    }
    let mut names = args.names;
    if args.stale {
        names.extend(
            admin::list()?
                .into_iter()
                .filter(ObjectInfo::is_stale)
                .map(|o| o.name),
        );
    }
    // Each failure is printed once: all but the last here, the last by
    // `main` when it is returned (its code is the exit code).
    let mut last: Option<CliError> = None;
    for name in names {
        match admin::remove(&name) {
            Ok(()) => println!("removed {name}"),
            Err(e) => {
                if let Some(earlier) = last.take() {
                    eprintln!("mpkit: {}", earlier.message);
                }
                last = Some(removal_error(&name, e));
            }
        }
    }
    last.map_or(Ok(()), Err)
}

/// A failed removal, naming the object unless the error already does.
fn removal_error(name: &str, e: ShmError) -> CliError {
    let names_it = matches!(e, ShmError::NotFound(_) | ShmError::InvalidName(_));
    let mut error = CliError::from(e);
    if !names_it {
        error.message = format!("{name}: {}", error.message);
    }
    error
}

/// `mpkit signals`: the `kill -l` listing with what each signal means.
pub fn signals() -> Result {
    println!("{:>3}  {:<12} {:<10} MEANING", "NUM", "NAME", "DEFAULT");
    for s in Signal::all() {
        println!(
            "{:>3}  {:<12} {:<10} {}",
            s.number(),
            s.name(),
            s.default_action(),
            s.description()
        );
    }
    Ok(())
}

/// `mpkit queue …`: named byte queues for shell scripts.
///
/// Exit codes: 0 success, 1 error (bad input, wrong kind, oversized
/// message, …), 2 usage, 3 empty, 4 full, 5 timeout, 6 not found.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Create a named queue (it stays until `mpkit queue rm`).
    Create {
        /// The queue's name.
        name: String,
        /// Most messages it holds (0: limited by bytes only).
        #[arg(long, default_value_t = 0)]
        maxsize: usize,
        /// Capacity in bytes (rounded up to a power of two).
        #[arg(long, default_value_t = mpkit::queue::DEFAULT_CAPACITY)]
        capacity: usize,
    },
    /// Put one message: the argument, or standard input when absent.
    Put {
        /// The queue's name.
        name: String,
        /// The message (read from standard input when absent).
        message: Option<String>,
        /// Check that the message is valid JSON before putting it.
        #[arg(long)]
        json: bool,
        /// Wait up to this many seconds while the queue is full (default:
        /// fail at once with exit code 4).
        #[arg(long, conflicts_with = "wait")]
        timeout: Option<f64>,
        /// Wait as long as it takes while the queue is full.
        #[arg(long)]
        wait: bool,
    },
    /// Take one message and print it.
    Get {
        /// The queue's name.
        name: String,
        /// Wait up to this many seconds while the queue is empty (default:
        /// fail at once with exit code 3).
        #[arg(long, conflicts_with = "wait")]
        timeout: Option<f64>,
        /// Wait as long as it takes while the queue is empty.
        #[arg(long)]
        wait: bool,
        /// Print the bytes exactly (no newline added).
        #[arg(long)]
        raw: bool,
    },
    /// Print how many messages are queued.
    Len {
        /// The queue's name.
        name: String,
    },
    /// Remove a named queue.
    Rm {
        /// The queue's name.
        name: String,
    },
}

fn seconds(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| CliError::new(code::ERROR, format!("invalid timeout {s}")))
}

/// Runs `mpkit queue …`.
pub fn queue(cmd: QueueCommand) -> Result {
    match cmd {
        QueueCommand::Create {
            name,
            maxsize,
            capacity,
        } => {
            let mut q = ByteQueue::create(&name, maxsize, capacity)?;
            q.keep();
            println!(
                "created queue {name} ({} bytes, maxsize {maxsize})",
                q.capacity()
            );
            Ok(())
        }
        QueueCommand::Put {
            name,
            message,
            json,
            timeout,
            wait,
        } => {
            let data = match message {
                Some(m) => m.into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf)?;
                    buf
                }
            };
            if json {
                serde_json::from_slice::<serde_json::Value>(&data)
                    .map_err(|e| CliError::new(code::ERROR, format!("malformed JSON: {e}")))?;
            }
            let q = ByteQueue::open(&name)?;
            let fail = |c: u8, e: &dyn std::fmt::Display| CliError::new(c, e.to_string());
            match (timeout, wait) {
                (Some(t), _) => q.put_timeout(&data, seconds(t)?).map_err(|e| match e {
                    PutTimeoutError::Timeout(_) => fail(code::TIMEOUT, &e),
                    _ => fail(code::ERROR, &e),
                }),
                (None, true) => q.put(&data).map_err(|e| fail(code::ERROR, &e)),
                (None, false) => q.try_put(&data).map_err(|e| match e {
                    TryPutError::Full(_) => fail(code::FULL, &e),
                    _ => fail(code::ERROR, &e),
                }),
            }
        }
        QueueCommand::Get {
            name,
            timeout,
            wait,
            raw,
        } => {
            let q = ByteQueue::open(&name)?;
            let fail = |c: u8, e: &dyn std::fmt::Display| CliError::new(c, e.to_string());
            let msg = match (timeout, wait) {
                (Some(t), _) => q.get_timeout(seconds(t)?).map_err(|e| match e {
                    GetTimeoutError::Timeout => fail(code::TIMEOUT, &e),
                    _ => fail(code::ERROR, &e),
                }),
                (None, true) => q.get().map_err(|e| fail(code::ERROR, &e)),
                (None, false) => q.try_get().map_err(|e| match e {
                    TryGetError::Empty => fail(code::EMPTY, &e),
                    _ => fail(code::ERROR, &e),
                }),
            }?;
            let mut out = std::io::stdout().lock();
            out.write_all(&msg)?;
            if !raw && !msg.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        QueueCommand::Len { name } => {
            println!("{}", ByteQueue::open(&name)?.len());
            Ok(())
        }
        QueueCommand::Rm { name } => {
            let info = admin::inspect(&name)?;
            if info.kind != Some(mpkit::shm::ObjectKind::Queue) {
                let kind = info.kind.map_or("SharedMemory", |k| k.name());
                return Err(CliError::new(
                    code::ERROR,
                    format!("{name} is a {kind}, not a queue"),
                ));
            }
            admin::remove(&name)?;
            println!("removed queue {name}");
            Ok(())
        }
    }
}
