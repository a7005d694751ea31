//! `mpkit bench`: how fast every mechanism moves messages between two real
//! processes on this machine, against a spin-polled shared-memory ring (the
//! hardware floor) and against Python's `multiprocessing`.
//!
//! # What is measured
//! Each mechanism gets one long-lived child process and two one-way
//! channels: A (this process to the child) and B (back). A control
//! connection tells the child what comes next ([`Cmd`]) and carries its
//! acknowledgement.
//! - **Throughput** (64 B and 4 KiB): this process sends a batch of N
//!   messages on A; the clock runs from the first send to the child's
//!   acknowledgement that it received all N. Figure: the median of the
//!   batches' messages per second.
//! - **Round trip** (64 B): this process sends a message on A, the child
//!   sends it back on B; each round trip is timed on its own. Figure: the
//!   median (the mean is in the JSON).
//!
//! Before measuring, batches grow until one takes an eighth of the time
//! budget (warm-up and calibration); then batches run until the budget is
//! spent (at least three).
//!
//! Python rows run an embedded script (`bench_mp.py`) with the same
//! protocol over its standard input and output.
//!
//! # Cleaning up
//! Everything a mechanism creates is released when its bench ends, however
//! it ends: children are daemons (killed if this process dies) and are
//! killed if they do not stop; FIFOs, the Unix socket and POSIX queue names
//! are removed as soon as both sides have them open; System V queues are
//! removed by a guard; the temporary directory is removed at the end. On
//! SIGINT, SIGTERM or SIGHUP a watcher thread removes whatever is left and
//! kills the Python helpers before exiting.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mpkit::msgq::{PosixQueue, Selector, SysvQueue};
use mpkit::net::{Client, Listener};
use mpkit::os::{Fifo, Open, PipeReader, PipeWriter};
use mpkit::process::{Builder, JoinError};
use mpkit::queue::ByteQueue;
use mpkit::shm::{Array, SharedMemory};
use mpkit::signal::Signal;
use mpkit::sync::Semaphore;
use mpkit::{Connection, Process};
use serde::{Deserialize, Serialize};

use crate::objects::{CliError, code};

/// Errors are one line of text for the user.
type Result<T = ()> = std::result::Result<T, String>;

/// Adds what was being done to an error.
trait Context<T> {
    fn ctx(self, what: impl Display) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// What `mpkit bench --help` says after the options.
const LONG_HELP: &str = "\
Rows: the spin-polled shared-memory ring (the floor: both sides busy-poll, \
nothing sleeps), mpkit's Pipe, Queue (ByteQueue), shared Array with \
Semaphores, Unix socket Connection, FIFO, System V and POSIX message \
queues and raw pipe, and (when python3 runs) Python's Pipe, \
multiprocessing.Queue, Array with Semaphores and Listener/Client.

Each row: messages per second one way at 64 B and 4 KiB (one producer \
process, one consumer process), and the median round trip of a 64 B \
message. Ratios are speed-ups (higher is faster): the share of the ring's \
throughput, and the speed against the row's Python counterpart.

The figures depend on the machine and on what else runs on it; a full run \
takes about a minute, --quick under 20 seconds. The progress bar goes to \
standard error (only on a terminal); results go to standard output.";

/// Options of `mpkit bench`.
#[derive(Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct BenchArgs {
    /// Measure each figure for a quarter of the time: under 20 seconds in
    /// all, with rougher figures.
    #[arg(long, conflicts_with = "tiny")]
    quick: bool,
    /// For tests: the shortest run that still exercises every mechanism
    /// (a few seconds; the figures are only indicative).
    #[arg(long)]
    tiny: bool,
    /// Print the results as JSON: one object with a row per mechanism.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
    /// Also write a bar chart of the results to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// The Python interpreter for the Python rows.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: String,
    /// Leave out the Python rows.
    #[arg(long)]
    no_python: bool,
    /// Where to run: `P,C` puts this process on CPU P and the children on
    /// CPU C (`0,0`: both on one CPU); `any` leaves it to the scheduler.
    /// Default: the first two CPUs this process may use, when it may use
    /// two.
    #[arg(long, value_name = "P,C|any")]
    cpus: Option<String>,
    /// Measure only these rows (comma-separated ids, as in the JSON:
    /// spin_ring, pipe, queue, shared_memory, unix_socket, fifo, sysv_mq,
    /// posix_mq, raw_pipe, py_pipe, py_queue, py_shm, py_socket).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    only: Vec<String>,
}

/// How long each figure is measured for.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Full,
    Quick,
    Tiny,
}

impl Mode {
    fn budget(self) -> Duration {
        match self {
            Mode::Full => Duration::from_millis(1000),
            Mode::Quick => Duration::from_millis(250),
            Mode::Tiny => Duration::from_millis(10),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full run",
            Mode::Quick => "quick run",
            Mode::Tiny => "tiny run (for tests; rough figures)",
        }
    }
}

/// `mpkit bench`: measures every mechanism and prints the results.
pub fn run(args: BenchArgs) -> std::result::Result<(), CliError> {
    bench(args).map_err(|message| CliError {
        message: format!("bench: {message}"),
        code: code::ERROR,
    })
}

/// The whole run: measure, print, chart; the error if a row failed.
fn bench(args: BenchArgs) -> Result {
    let mode = if args.tiny {
        Mode::Tiny
    } else if args.quick {
        Mode::Quick
    } else {
        Mode::Full
    };
    if let Some(unknown) = args
        .only
        .iter()
        .find(|id| !SPECS.iter().any(|s| s.id == *id))
    {
        let ids: Vec<&str> = SPECS.iter().map(|s| s.id).collect();
        return Err(format!(
            "--only: no row {unknown:?} (the rows: {})",
            ids.join(", ")
        ));
    }
    let allowed = allowed_cpus()?;
    let placement = placement(args.cpus.as_deref(), &allowed)?;
    watch_signals();
    // Refuse a chart file that cannot be written before spending a minute.
    let mut plot = args.plot.as_deref().map(PlotFile::create).transpose()?;
    let started = Instant::now();
    let python = if args.no_python {
        Err("left out (--no-python)".to_string())
    } else {
        find_python(&args.python)
    };
    let rows = {
        let dir = TempDir::new()?;
        let ctx = Ctx {
            dir: dir.path.clone(),
            python: python.as_ref().ok().map(|p| p.path.clone()),
            placement,
        };
        if let Some(p) = placement {
            // This thread: the children and Python helpers it starts
            // inherit it (until they are moved).
            set_affinity(0, &[p.parent_cpu])?;
        }
        let specs: Vec<&Spec> = SPECS
            .iter()
            .filter(|s| !matches!(s.start, Start::Python(_)) || ctx.python.is_some())
            .filter(|s| args.only.is_empty() || args.only.iter().any(|id| id == s.id))
            .collect();
        let progress = Progress::new(specs.len() as u64 * FIGURES);
        let rows: Vec<Measured> = specs
            .into_iter()
            .map(|spec| measure_row(spec, &ctx, mode.budget(), &progress))
            .collect();
        progress.done();
        if placement.is_some() {
            set_affinity(0, &allowed)?;
        }
        rows
        // `dir` is removed here, before anything is printed (a closed
        // standard output ends the process).
    };
    let mut notes = Vec::new();
    if let Err(why) = &python {
        notes.push(format!("Python rows skipped: {why}"));
    }
    let report = Report::new(
        mode,
        started.elapsed(),
        python.ok().map(|p| p.version),
        placement,
        rows,
        notes,
    );
    let text = if args.json {
        serde_json::to_string_pretty(&report).ctx("JSON")? + "\n"
    } else if args.markdown {
        report.markdown()
    } else {
        report.human()
    };
    // The chart first: a closed standard output ends the process.
    if let Some(plot) = &mut plot {
        plot.write(&report.svg())?;
    }
    print!("{text}");
    if let Some(plot) = plot.as_ref().filter(|_| !args.json) {
        println!("chart: {}", plot.path.display());
    }
    std::io::stdout().flush().ctx("standard output")?;
    let failed: Vec<&Row> = report.rows.iter().filter(|r| r.error.is_some()).collect();
    match failed.as_slice() {
        [] => Ok(()),
        [one] => Err(format!(
            "{} failed: {}",
            one.mechanism,
            one.error.as_deref().unwrap_or_default()
        )),
        [first, ..] => Err(format!(
            "{} mechanisms failed; {}: {}",
            failed.len(),
            first.mechanism,
            first.error.as_deref().unwrap_or_default()
        )),
    }
}

/// The chart's file: opened before the run (so a bad path fails at once),
/// truncated and written at the end; a file this run created is removed
/// if the chart is never written into it.
struct PlotFile {
    path: PathBuf,
    file: File,
    created: bool,
    written: bool,
}

impl PlotFile {
    /// Creates the file; only SVG is written.
    fn create(path: &Path) -> Result<PlotFile> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if ext.as_deref() != Some("svg") {
            return Err(format!(
                "--plot {}: the chart is written as SVG; give a file name ending in .svg",
                path.display()
            ));
        }
        // Registered under the lock, so a signal cannot come between.
        let created = !path.exists();
        leftovers(|l| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .ctx(format!("--plot {}", path.display()))?;
            if created {
                l.files.push(path.to_path_buf());
            }
            Ok(PlotFile {
                path: path.to_path_buf(),
                file,
                created,
                written: false,
            })
        })
    }

    fn write(&mut self, svg: &str) -> Result {
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all(svg.as_bytes()))
            .and_then(|()| self.file.flush())
            .ctx(self.path.display())?;
        self.written = true;
        Ok(())
    }
}

impl Drop for PlotFile {
    fn drop(&mut self) {
        if self.created && !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
        leftovers(|l| l.files.retain(|f| f != &self.path));
    }
}

// ---------------------------------------------------------------------------
// Where the processes run
// ---------------------------------------------------------------------------

/// The CPU of this process (and of the Python helpers' parent processes)
/// and the CPU of every child.
#[derive(Clone, Copy, Debug, Serialize)]
struct Placement {
    parent_cpu: usize,
    child_cpu: usize,
}

/// The placement `--cpus` asks for (`None`: the scheduler decides).
fn placement(spec: Option<&str>, allowed: &[usize]) -> Result<Option<Placement>> {
    let (parent_cpu, child_cpu) = match spec.map(str::trim) {
        Some("any") => return Ok(None),
        None => match allowed {
            [p, c, ..] => (*p, *c),
            _ => return Ok(None),
        },
        Some(spec) => {
            let parsed = spec
                .split_once(',')
                .and_then(|(p, c)| Some((p.trim().parse().ok()?, c.trim().parse().ok()?)));
            parsed.ok_or_else(|| {
                format!("--cpus {spec:?}: expected two CPU numbers, like 0,1, or any")
            })?
        }
    };
    for cpu in [parent_cpu, child_cpu] {
        if !allowed.contains(&cpu) {
            return Err(format!(
                "--cpus: this process may not run on CPU {cpu} (it may use {allowed:?})"
            ));
        }
    }
    Ok(Some(Placement {
        parent_cpu,
        child_cpu,
    }))
}

/// The size of the kernel's CPU mask as libc declares it.
fn cpu_set_size() -> usize {
    std::mem::size_of::<libc::cpu_set_t>()
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain integers; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size and pointer describe `set`, which the call fills.
    if unsafe { libc::sched_getaffinity(0, cpu_set_size(), &mut set) } != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Lets process `pid` (0: this thread) run on `cpus` only.
fn set_affinity(pid: i32, cpus: &[usize]) -> Result {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("no CPU {cpu}"));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the size and pointer describe `set`.
    if unsafe { libc::sched_setaffinity(pid, cpu_set_size(), &set) } != 0 {
        return Err(format!(
            "move process {pid} to CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What is left to clean up if a signal ends the run
// ---------------------------------------------------------------------------

/// Objects that outlive this process unless removed, and the Python
/// helpers' process groups.
struct Leftovers {
    sysv: Vec<SysvQueue>,
    posix: Vec<String>,
    dirs: Vec<PathBuf>,
    /// The chart's file, until it is written.
    files: Vec<PathBuf>,
    groups: Vec<i32>,
}

/// What a signal's cleanup removes.
static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    sysv: Vec::new(),
    posix: Vec::new(),
    dirs: Vec::new(),
    files: Vec::new(),
    groups: Vec::new(),
});

/// Runs `f` on [`LEFTOVERS`] under its lock.
fn leftovers<T>(f: impl FnOnce(&mut Leftovers) -> T) -> T {
    f(&mut LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// On SIGINT, SIGTERM or SIGHUP: removes what is left, kills the Python
/// helpers (mpkit's children are daemons: they die with this process), and
/// exits with 128 + the signal's number.
fn watch_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(signals) = mpkit::signal::channel(&[Signal::INT, Signal::TERM, Signal::HUP]) else {
            return; // no cleanup on signals, but the run itself is fine
        };
        let _ = std::thread::Builder::new()
            .name("mpkit-bench-signals".into())
            .spawn(move || {
                if let Ok(signal) = signals.recv() {
                    // Held until exit: nothing new is registered meanwhile.
                    let mut left = LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner());
                    for &pgid in &left.groups {
                        // SAFETY: kill takes plain integers; -pgid is the
                        // helper's own process group.
                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    }
                    for q in left.sysv.drain(..) {
                        let _ = q.remove();
                    }
                    for name in &left.posix {
                        let _ = PosixQueue::unlink(name);
                    }
                    for dir in &left.dirs {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    for file in &left.files {
                        let _ = std::fs::remove_file(file);
                    }
                    eprintln!(
                        "\nmpkit: bench interrupted by {signal}; what it had created is removed"
                    );
                    std::process::exit(128 + signal.number());
                }
            });
    });
}

/// A private directory for FIFOs and sockets, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        for attempt in 0..100 {
            let path = base.join(format!("mpkit-bench-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    leftovers(|l| l.dirs.push(path.clone()));
                    return Ok(TempDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("create {}: {e}", path.display())),
            }
        }
        Err(format!(
            "no free directory name for mpkit-bench in {}",
            base.display()
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        leftovers(|l| l.dirs.retain(|d| d != &self.path));
    }
}

/// A private System V queue, removed when dropped (or by [`remove`](Self::remove)).
struct SysvGuard(Option<SysvQueue>);

impl SysvGuard {
    fn new() -> Result<SysvGuard> {
        // Registered under the lock, so a signal cannot come between.
        leftovers(|l| {
            let q = SysvQueue::private(0o600).ctx("create a System V queue")?;
            l.sysv.push(q);
            Ok(SysvGuard(Some(q)))
        })
    }

    fn queue(&self) -> Result<SysvQueue> {
        self.0
            .ok_or_else(|| "the System V queue was removed".to_string())
    }

    fn remove(&mut self) {
        if let Some(q) = self.0.take() {
            leftovers(|l| l.sysv.retain(|x| x != &q));
            let _ = q.remove();
        }
    }
}

impl Drop for SysvGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

// ---------------------------------------------------------------------------
// Messages: one way of sending and receiving per mechanism
// ---------------------------------------------------------------------------

/// The small and the large message size.
const SMALL: usize = 64;
const LARGE: usize = 4096;

/// What is sent (a prefix of it).
static PAYLOAD: [u8; LARGE] = [0x5a; LARGE];

/// How long a child may take to acknowledge a batch, or an open to finish.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending end of a one-way channel.
trait Tx {
    fn send(&mut self, msg: &[u8]) -> Result;
}

/// The receiving end of a one-way channel: `recv(size)` takes one message,
/// which must be `size` bytes long.
trait Rx {
    fn recv(&mut self, size: usize) -> Result<&[u8]>;
}

/// An error unless a message of `size` bytes arrived whole.
fn check_len(got: usize, size: usize) -> Result {
    if got == size {
        Ok(())
    } else {
        Err(format!("received {got} bytes where {size} were sent"))
    }
}

/// An mpkit [`Connection`] (pipe or socket).
struct ConnTx(Connection);
/// Receives into a reused buffer of [`LARGE`] bytes.
struct ConnRx(Connection, Vec<u8>);

impl Tx for ConnTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.send_bytes(msg).ctx("send_bytes")
    }
}

impl ConnRx {
    fn new(conn: Connection) -> ConnRx {
        ConnRx(conn, vec![0; LARGE])
    }
}

impl Rx for ConnRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        let n = self.0.recv_bytes_into(&mut self.1).ctx("recv_bytes_into")?;
        check_len(n, size)?;
        Ok(&self.1[..n])
    }
}

/// A byte stream (FIFO, raw pipe): fixed-size messages, `write_all` and
/// `read_exact`.
struct StreamTx<W>(W);
/// Reads into a reused buffer of [`LARGE`] bytes.
struct StreamRx<R>(R, Vec<u8>);

impl<W: Write> Tx for StreamTx<W> {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.write_all(msg).ctx("write")
    }
}

impl<R: Read> StreamRx<R> {
    fn new(r: R) -> StreamRx<R> {
        StreamRx(r, vec![0; LARGE])
    }
}

impl<R: Read> Rx for StreamRx<R> {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        let buf = &mut self.1[..size];
        self.0.read_exact(buf).ctx("read")?;
        Ok(buf)
    }
}

/// An mpkit [`ByteQueue`]: `put`, and `get_into` one reused buffer.
struct QueueTx(ByteQueue);
/// Takes messages into a reused buffer.
struct QueueRx(ByteQueue, Vec<u8>);

impl Tx for QueueTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.put(msg).ctx("put")
    }
}

impl Rx for QueueRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.0.get_into(&mut self.1).ctx("get_into")?;
        check_len(self.1.len(), size)?;
        Ok(&self.1)
    }
}

/// Slots in a shared `Array<u8>`, with a `Semaphore` counting the free
/// slots and one counting the filled ones; each message is copied in and
/// out under the array's lock (what a `multiprocessing` program does with
/// `Array` and `Semaphore`). Each side keeps its own position.
struct Slots {
    arr: Array<u8>,
    free: Semaphore,
    filled: Semaphore,
    pos: usize,
    buf: Vec<u8>,
}

/// How many slots (of [`LARGE`] bytes) each direction has.
const SHM_SLOTS: usize = 16;

/// What a child needs of [`Slots`].
type SlotsArgs = (Array<u8>, Semaphore, Semaphore);

impl Slots {
    fn create() -> Result<Slots> {
        Ok(Slots::attach((
            Array::zeroed(SHM_SLOTS * LARGE).ctx("Array")?,
            Semaphore::new(SHM_SLOTS as u32).ctx("Semaphore")?,
            Semaphore::new(0).ctx("Semaphore")?,
        )))
    }

    fn attach((arr, free, filled): SlotsArgs) -> Slots {
        Slots {
            arr,
            free,
            filled,
            pos: 0,
            buf: vec![0; LARGE],
        }
    }

    fn share(&self) -> Result<SlotsArgs> {
        Ok((
            self.arr.try_clone().ctx("clone the Array")?,
            self.free.try_clone().ctx("clone a Semaphore")?,
            self.filled.try_clone().ctx("clone a Semaphore")?,
        ))
    }

    fn at(&self) -> usize {
        (self.pos % SHM_SLOTS) * LARGE
    }
}

impl Tx for Slots {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.free.acquire().ctx("Semaphore::acquire")?;
        let at = self.at();
        {
            let mut slots = self.arr.lock().ctx("Array::lock")?;
            slots[at..at + msg.len()].copy_from_slice(msg);
        }
        self.pos += 1;
        self.filled.release();
        Ok(())
    }
}

impl Rx for Slots {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.filled.acquire().ctx("Semaphore::acquire")?;
        let at = self.at();
        {
            let slots = self.arr.lock().ctx("Array::lock")?;
            self.buf[..size].copy_from_slice(&slots[at..at + size]);
        }
        self.pos += 1;
        self.free.release();
        Ok(&self.buf[..size])
    }
}

/// A System V queue: messages of type 1, received with `Selector::Any`.
struct SysvTx(SysvQueue);
/// Keeps the last message received.
struct SysvRx(SysvQueue, Vec<u8>);

impl Tx for SysvTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.send(1, msg).ctx("msgsnd")
    }
}

impl Rx for SysvRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.1 = self.0.recv(Selector::Any).ctx("msgrcv")?.1;
        check_len(self.1.len(), size)?;
        Ok(&self.1)
    }
}

/// A POSIX queue: messages of priority 0.
struct PosixTx(PosixQueue);
/// Keeps the last message received.
struct PosixRx(PosixQueue, Vec<u8>);

impl Tx for PosixTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        self.0.send(msg, 0).ctx("mq_send")
    }
}

impl Rx for PosixRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        self.1 = self.0.recv().ctx("mq_receive")?.0;
        check_len(self.1.len(), size)?;
        Ok(&self.1)
    }
}

// ---------------------------------------------------------------------------
// The floor: a spin-polled single-producer single-consumer ring
// ---------------------------------------------------------------------------

/// The bytes of slots in each ring.
const RING_BYTES: usize = 1 << 20;
/// Where the consumer's position lives (its own 128 bytes: a cache line and
/// its prefetch pair).
const RING_HEAD: usize = 0;
/// Where the producer's position lives.
const RING_TAIL: usize = 128;
/// Where the slots start.
const RING_DATA: usize = 256;
/// How long a side waits for the other before giving up.
const SPIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One side of a ring of fixed-size slots in shared memory, both sides
/// busy-polling: what the hardware can do, with nothing mpkit must have
/// (several producers, sleeping and waking, crash safety). Each side keeps
/// its own position and a cached copy of the other's.
struct SpinRing {
    shm: SharedMemory,
    slot: usize,
    slots: u64,
    /// This side's position (messages put, or taken).
    pos: u64,
    /// The other side's position, as last read.
    other: u64,
}

impl SpinRing {
    fn create() -> Result<SharedMemory> {
        SharedMemory::anonymous(RING_DATA + RING_BYTES).ctx("SharedMemory")
    }

    /// This process's side of the (still empty) ring in `shm`, of
    /// `slot`-byte slots.
    fn attach(shm: SharedMemory, slot: usize) -> Result<SpinRing> {
        if shm.size() < RING_DATA + RING_BYTES
            || RING_BYTES % slot != 0
            || !(RING_BYTES / slot).is_power_of_two()
        {
            return Err("the spin ring's block has the wrong size".into());
        }
        Ok(SpinRing {
            shm,
            slot,
            slots: (RING_BYTES / slot) as u64,
            pos: 0,
            other: 0,
        })
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of the 8-aligned control offsets, inside
        // the page-aligned mapping (checked in `attach`), which lives as
        // long as `self.shm`; the word is only ever accessed atomically.
        unsafe { &*self.shm.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        let index = (pos & (self.slots - 1)) as usize;
        // SAFETY: `index < slots`, so the slot lies inside the mapping.
        unsafe { self.shm.as_ptr().add(RING_DATA + index * self.slot) }
    }

    /// Producer: copies `msg` (at most a slot) into the next slot, waiting
    /// while the ring is full.
    fn push(&mut self, msg: &[u8]) -> Result {
        if msg.len() > self.slot {
            return Err("a message larger than the ring's slots".into());
        }
        let mut wait = SpinWait::default();
        while self.pos - self.other >= self.slots {
            self.other = self.word(RING_HEAD).load(Ordering::Acquire);
            wait.step()?;
        }
        // SAFETY: the slot at `pos` is free (the consumer is past it, read
        // with acquire above), only this producer writes it, and `msg` fits.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.slot_ptr(self.pos), msg.len()) };
        self.pos += 1;
        self.word(RING_TAIL).store(self.pos, Ordering::Release);
        Ok(())
    }

    /// Consumer: copies the next slot's first `out.len()` bytes into `out`,
    /// waiting while the ring is empty.
    fn pop(&mut self, out: &mut [u8]) -> Result {
        if out.len() > self.slot {
            return Err("a message larger than the ring's slots".into());
        }
        let mut wait = SpinWait::default();
        while self.pos == self.other {
            self.other = self.word(RING_TAIL).load(Ordering::Acquire);
            wait.step()?;
        }
        // SAFETY: the slot at `pos` is published (the producer is past it,
        // read with acquire above), and the producer does not write it
        // until our release store below.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot_ptr(self.pos), out.as_mut_ptr(), out.len())
        };
        self.pos += 1;
        self.word(RING_HEAD).store(self.pos, Ordering::Release);
        Ok(())
    }
}

/// A busy wait: a spin hint, and every 128th step a `sched_yield` (so two
/// spinners sharing a CPU take turns within microseconds) and a look at
/// the clock.
#[derive(Default)]
struct SpinWait {
    spins: u32,
    since: Option<Instant>,
}

impl SpinWait {
    fn step(&mut self) -> Result {
        self.spins = self.spins.wrapping_add(1);
        if self.spins % 128 != 0 {
            std::hint::spin_loop();
            return Ok(());
        }
        std::thread::yield_now();
        if self.since.get_or_insert_with(Instant::now).elapsed() > SPIN_TIMEOUT {
            return Err("the other side of the spin ring stopped".into());
        }
        Ok(())
    }
}

/// A ring for each message size (or one, for the way back).
struct SpinTx {
    small: SpinRing,
    large: Option<SpinRing>,
}

/// The receiving side of [`SpinTx`], copying into a reused buffer.
struct SpinRx {
    small: SpinRing,
    large: Option<SpinRing>,
    buf: Vec<u8>,
}

impl Tx for SpinTx {
    fn send(&mut self, msg: &[u8]) -> Result {
        match &mut self.large {
            Some(large) if msg.len() > SMALL => large.push(msg),
            _ => self.small.push(msg),
        }
    }
}

impl Rx for SpinRx {
    fn recv(&mut self, size: usize) -> Result<&[u8]> {
        let out = &mut self.buf[..size];
        match &mut self.large {
            Some(large) if size > SMALL => large.pop(out)?,
            _ => self.small.pop(out)?,
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Children (they run in a re-executed copy of this binary)
// ---------------------------------------------------------------------------

/// What the control connection tells a child to do next.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Cmd {
    /// Receive `n` messages of `size` bytes on A.
    Sink { n: u64, size: usize },
    /// Send each of the next `n` 64-byte messages on A back on B.
    Echo { n: u64 },
}

/// What a child returns: why it failed, if it did.
type ChildResult = std::result::Result<(), String>;

/// A child's loop: runs each command, then acknowledges it with its count;
/// returns at end of file on the control connection.
fn serve(mut ctl: Connection, mut rx: impl Rx, mut tx: impl Tx) -> ChildResult {
    loop {
        let n = match ctl.recv::<Cmd>() {
            Ok(Cmd::Sink { n, size }) => {
                for _ in 0..n {
                    rx.recv(size)?;
                }
                n
            }
            Ok(Cmd::Echo { n }) => {
                for _ in 0..n {
                    let msg = rx.recv(SMALL)?;
                    tx.send(msg)?;
                }
                n
            }
            Err(e) if e.is_eof() => return Ok(()),
            Err(e) => return Err(format!("control connection: {e}")),
        };
        ctl.send(&n).ctx("control connection")?;
    }
}

/// Child: over two one-way `pipe(false)` connections.
fn pipe_child((ctl, (a, b)): (Connection, (Connection, Connection))) -> ChildResult {
    serve(ctl, ConnRx::new(a), ConnTx(b))
}

/// Child: connects to this process's Unix socket listener.
fn socket_child((ctl, address): (Connection, String)) -> ChildResult {
    let conn = Client::connect(&address, None).ctx(format!("connect to {address}"))?;
    let back = conn.try_clone().ctx("clone the connection")?;
    serve(ctl, ConnRx::new(conn), ConnTx(back))
}

/// Child: opens FIFO A for reading, then FIFO B for writing.
fn fifo_child((ctl, (a, b)): (Connection, (PathBuf, PathBuf))) -> ChildResult {
    let r = Fifo::open_reader(&a, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO A")?;
    let w = Fifo::open_writer(&b, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO B")?;
    serve(ctl, StreamRx::new(r), StreamTx(w))
}

/// Child: over two raw pipes, no framing.
fn raw_pipe_child((ctl, (r, w)): (Connection, (PipeReader, PipeWriter))) -> ChildResult {
    serve(ctl, StreamRx::new(r), StreamTx(w))
}

/// Child: over two `ByteQueue`s.
fn queue_child((ctl, (a, b)): (Connection, (ByteQueue, ByteQueue))) -> ChildResult {
    serve(ctl, QueueRx(a, Vec::with_capacity(LARGE)), QueueTx(b))
}

/// Child: over two rings of [`Slots`].
fn shm_child((ctl, (a, b)): (Connection, (SlotsArgs, SlotsArgs))) -> ChildResult {
    serve(ctl, Slots::attach(a), Slots::attach(b))
}

/// Child: over two System V queues.
fn sysv_child((ctl, (a, b)): (Connection, (SysvQueue, SysvQueue))) -> ChildResult {
    serve(ctl, SysvRx(a, Vec::new()), SysvTx(b))
}

/// Child: over two POSIX queues (handles opened for it; the names are
/// removed once it has them).
fn posix_child((ctl, (a, b)): (Connection, (PosixQueue, PosixQueue))) -> ChildResult {
    serve(ctl, PosixRx(a, Vec::new()), PosixTx(b))
}

/// Rings A (64 B and 4 KiB slots) and B (64 B slots).
type RingArgs = (SharedMemory, SharedMemory, SharedMemory);

/// Child: over the spin rings.
fn ring_child((ctl, (small, large, back)): (Connection, RingArgs)) -> ChildResult {
    let rx = SpinRx {
        small: SpinRing::attach(small, SMALL)?,
        large: Some(SpinRing::attach(large, LARGE)?),
        buf: vec![0; LARGE],
    };
    let tx = SpinTx {
        small: SpinRing::attach(back, SMALL)?,
        large: None,
    };
    serve(ctl, rx, tx)
}

// ---------------------------------------------------------------------------
// This process's side
// ---------------------------------------------------------------------------

/// What the measurement loop needs of a mechanism.
trait Bench {
    /// Sends `n` messages of `size` bytes; the time until the child has
    /// them all.
    fn throughput(&mut self, n: u64, size: usize) -> Result<Duration>;
    /// `n` round trips of a 64-byte message; adds each one's nanoseconds
    /// to `samples`.
    fn roundtrip(&mut self, n: u64, samples: &mut Vec<u32>) -> Result;
    /// Stops the child (and anything else) and reports how it ended.
    fn finish(self: Box<Self>) -> Result;
}

/// A long-lived child and its control connection. Dropping it closes the
/// connection and waits a moment for the child to end, then kills it.
struct Worker {
    ctl: Option<Connection>,
    child: Option<Process<ChildResult>>,
}

/// Starts `f((its end of a new control connection, args))` as a daemon
/// child (killed if this process dies), on the children's CPU.
fn spawn<A>(ctx: &Ctx, name: &str, f: fn((Connection, A)) -> ChildResult, args: A) -> Result<Worker>
where
    A: Serialize + serde::de::DeserializeOwned,
{
    let (ctl, theirs) = mpkit::pipe(true).ctx("control connection")?;
    let child = Builder::new()
        .name(format!("mpkit-bench-{name}"))
        .daemon(true)
        .spawn(f, (theirs, args))
        .ctx("start the child process")?;
    let pid = child.pid();
    let worker = Worker {
        ctl: Some(ctl),
        child: Some(child),
    };
    if let Some(p) = ctx.placement {
        set_affinity(pid, &[p.child_cpu])?;
    }
    Ok(worker)
}

impl Worker {
    fn ctl(&mut self) -> Result<&mut Connection> {
        self.ctl
            .as_mut()
            .ok_or_else(|| "the control connection is closed".to_string())
    }

    /// Tells the child `cmd`.
    fn start(&mut self, cmd: Cmd) -> Result {
        self.ctl()?.send(&cmd).ctx("control connection")
    }

    /// Waits for the child's acknowledgement of `n` messages.
    fn ack(&mut self, n: u64) -> Result {
        let got: u64 = self
            .ctl()?
            .recv_timeout(ACK_TIMEOUT)
            .ctx("waiting for the child")?;
        if got == n {
            Ok(())
        } else {
            Err(format!("the child acknowledged {got} of {n} messages"))
        }
    }

    /// `e`, with the child's own error if it has ended.
    fn explain(&mut self, e: String) -> String {
        let ended = self.child.as_mut().is_some_and(|c| !c.is_alive());
        if !ended {
            return e;
        }
        match self.child.take().map(Process::join) {
            Some(Ok(Err(why))) => format!("{e} (the child: {why})"),
            Some(Err(why)) => format!("{e} (the child: {why})"),
            _ => e,
        }
    }

    /// Closes the control connection (the child's loop returns) and waits
    /// for the child.
    fn finish(mut self) -> Result {
        self.ctl = None;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        match child.join_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(format!("the child failed: {why}")),
            Err(JoinError::Timeout) => {
                let _ = child.kill();
                let _ = child.join();
                Err("the child did not stop; it was killed".into())
            }
            Err(e) => Err(format!("the child: {e}")),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.ctl = None;
        if let Some(mut child) = self.child.take() {
            if let Err(JoinError::Timeout) = child.join_timeout(Duration::from_secs(2)) {
                let _ = child.kill();
                let _ = child.join();
            }
        }
    }
}

/// What wakes a child stuck on a channel when a bench ends early.
enum Unblock {
    /// Closing a queue ends a waiting `get`.
    Close(ByteQueue),
    /// Removing a System V queue ends a waiting `msgrcv` (and removes it).
    Sysv(SysvGuard),
}

/// A mechanism between this process (`tx` on A, `rx` on B) and a worker.
struct Link<T, R> {
    tx: Option<T>,
    rx: Option<R>,
    worker: Option<Worker>,
    unblock: Vec<Unblock>,
}

impl<T: Tx + 'static, R: Rx + 'static> Link<T, R> {
    fn boxed(worker: Worker, tx: T, rx: R, unblock: Vec<Unblock>) -> Box<dyn Bench> {
        Box::new(Link {
            tx: Some(tx),
            rx: Some(rx),
            worker: Some(worker),
            unblock,
        })
    }

    fn parts(&mut self) -> Result<(&mut Worker, &mut T, &mut R)> {
        match (&mut self.worker, &mut self.tx, &mut self.rx) {
            (Some(w), Some(tx), Some(rx)) => Ok((w, tx, rx)),
            _ => Err("the bench is closed".into()),
        }
    }

    fn explain(&mut self, e: String) -> String {
        match &mut self.worker {
            Some(w) => w.explain(e),
            None => e,
        }
    }
}

impl<T: Tx + 'static, R: Rx + 'static> Bench for Link<T, R> {
    fn throughput(&mut self, n: u64, size: usize) -> Result<Duration> {
        let (worker, tx, _) = self.parts()?;
        let result = (|| {
            worker.start(Cmd::Sink { n, size })?;
            let start = Instant::now();
            for _ in 0..n {
                tx.send(&PAYLOAD[..size])?;
            }
            worker.ack(n)?;
            Ok(start.elapsed())
        })();
        result.map_err(|e| self.explain(e))
    }

    fn roundtrip(&mut self, n: u64, samples: &mut Vec<u32>) -> Result {
        let (worker, tx, rx) = self.parts()?;
        let result = (|| {
            worker.start(Cmd::Echo { n })?;
            for _ in 0..n {
                let start = Instant::now();
                tx.send(&PAYLOAD[..SMALL])?;
                rx.recv(SMALL)?;
                samples.push(nanos(start.elapsed()));
            }
            worker.ack(n)
        })();
        result.map_err(|e| self.explain(e))
    }

    fn finish(mut self: Box<Self>) -> Result {
        self.tx = None;
        self.rx = None;
        match self.worker.take() {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}

impl<T, R> Drop for Link<T, R> {
    fn drop(&mut self) {
        for u in &mut self.unblock {
            match u {
                Unblock::Close(q) => q.close(),
                Unblock::Sysv(g) => g.remove(),
            }
        }
        self.tx = None;
        self.rx = None;
        self.worker = None; // closes the control connection; kills a stuck child
    }
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------
// Starting each mechanism
// ---------------------------------------------------------------------------

/// What the mechanisms share.
struct Ctx {
    /// The private temporary directory.
    dir: PathBuf,
    /// The Python interpreter, when the Python rows run.
    python: Option<String>,
    /// Where this process and the children run.
    placement: Option<Placement>,
}

/// Starts the spin-polled rings (the floor).
fn start_ring(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (small, large, back) = (
        SpinRing::create()?,
        SpinRing::create()?,
        SpinRing::create()?,
    );
    let theirs = (
        small.try_clone().ctx("clone")?,
        large.try_clone().ctx("clone")?,
        back.try_clone().ctx("clone")?,
    );
    let worker = spawn(ctx, "ring", ring_child, theirs)?;
    let tx = SpinTx {
        small: SpinRing::attach(small, SMALL)?,
        large: Some(SpinRing::attach(large, LARGE)?),
    };
    let rx = SpinRx {
        small: SpinRing::attach(back, SMALL)?,
        large: None,
        buf: vec![0; LARGE],
    };
    Ok(Link::boxed(worker, tx, rx, vec![]))
}

/// Starts mpkit `Pipe`: two `pipe(false)`.
fn start_pipe(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a_r, a_w) = mpkit::pipe(false).ctx("pipe")?;
    let (b_r, b_w) = mpkit::pipe(false).ctx("pipe")?;
    let worker = spawn(ctx, "pipe", pipe_child, (a_r, b_w))?;
    Ok(Link::boxed(worker, ConnTx(a_w), ConnRx::new(b_r), vec![]))
}

/// Starts mpkit `ByteQueue`s.
fn start_queue(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let a = ByteQueue::with_capacity(0, RING_BYTES).ctx("ByteQueue")?;
    let b = ByteQueue::with_capacity(0, RING_BYTES).ctx("ByteQueue")?;
    let theirs = (a.try_clone().ctx("clone")?, b.try_clone().ctx("clone")?);
    let unblock = vec![
        Unblock::Close(a.try_clone().ctx("clone")?),
        Unblock::Close(b.try_clone().ctx("clone")?),
    ];
    let worker = spawn(ctx, "queue", queue_child, theirs)?;
    let rx = QueueRx(b, Vec::with_capacity(LARGE));
    Ok(Link::boxed(worker, QueueTx(a), rx, unblock))
}

/// Starts a shared `Array` and `Semaphore`s.
fn start_shm(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a, b) = (Slots::create()?, Slots::create()?);
    let worker = spawn(ctx, "shm", shm_child, (a.share()?, b.share()?))?;
    Ok(Link::boxed(worker, a, b, vec![]))
}

/// Starts a Unix socket `Connection` through `net::Listener` / `Client`.
fn start_socket(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let path = ctx.dir.join("mpkit.sock");
    let address = path
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", path.display()))?
        .to_string();
    let listener = Listener::bind(&address, None).ctx(format!("listen on {address}"))?;
    let worker = spawn(ctx, "socket", socket_child, address)?;
    let conn = listener
        .accept_timeout(OPEN_TIMEOUT)
        .ctx("accept the child's connection")?;
    drop(listener); // removes the socket file
    let tx = conn.try_clone().ctx("clone the connection")?;
    Ok(Link::boxed(worker, ConnTx(tx), ConnRx::new(conn), vec![]))
}

/// Starts two FIFOs in the private directory.
fn start_fifo(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a, b) = (ctx.dir.join("a.fifo"), ctx.dir.join("b.fifo"));
    Fifo::create(&a, 0o600).ctx("mkfifo")?;
    Fifo::create(&b, 0o600).ctx("mkfifo")?;
    let worker = spawn(ctx, "fifo", fifo_child, (a.clone(), b.clone()))?;
    // The same order as the child: A, then B.
    let w = Fifo::open_writer(&a, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO A")?;
    let r = Fifo::open_reader(&b, Open::Timeout(OPEN_TIMEOUT)).ctx("open FIFO B")?;
    // Both ends are open: the names are no longer needed.
    Fifo::remove(&a).ctx("remove FIFO A")?;
    Fifo::remove(&b).ctx("remove FIFO B")?;
    Ok(Link::boxed(worker, StreamTx(w), StreamRx::new(r), vec![]))
}

/// Starts two private System V queues.
fn start_sysv(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a, b) = (SysvGuard::new()?, SysvGuard::new()?);
    let (qa, qb) = (a.queue()?, b.queue()?);
    let worker = spawn(ctx, "sysv", sysv_child, (qa, qb))?;
    let unblock = vec![Unblock::Sysv(a), Unblock::Sysv(b)];
    Ok(Link::boxed(
        worker,
        SysvTx(qa),
        SysvRx(qb, Vec::new()),
        unblock,
    ))
}

/// A POSIX queue under a fresh name, registered for cleanup.
fn posix_queue(tag: &str) -> Result<PosixQueue> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "/mpkit-bench-{}-{tag}{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    // At most 10 messages (the usual limit for unprivileged users).
    let depth = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 10);
    leftovers(|l| {
        let q = PosixQueue::create(&name, depth, LARGE, 0o600).ctx("create a POSIX queue")?;
        l.posix.push(name);
        Ok(q)
    })
}

/// Removes a POSIX queue's name (the queue lives on while open).
fn unlink_posix(q: &mut PosixQueue) {
    let name = q.name().to_string();
    let _ = PosixQueue::unlink(&name);
    q.keep(); // already unlinked
    leftovers(|l| l.posix.retain(|n| n != &name));
}

/// Starts two POSIX queues.
fn start_posix(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let mut a = posix_queue("a")?;
    let b = posix_queue("b");
    let mut b = match b {
        Ok(b) => b,
        Err(e) => {
            unlink_posix(&mut a);
            return Err(e);
        }
    };
    let theirs = (
        PosixQueue::open(a.name()).ctx("open the POSIX queue"),
        PosixQueue::open(b.name()).ctx("open the POSIX queue"),
    );
    let worker = match theirs {
        (Ok(ta), Ok(tb)) => spawn(ctx, "posix", posix_child, (ta, tb)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    // Open on both sides (or failed): the names are no longer needed.
    unlink_posix(&mut a);
    unlink_posix(&mut b);
    Ok(Link::boxed(
        worker?,
        PosixTx(a),
        PosixRx(b, Vec::new()),
        vec![],
    ))
}

/// Starts two raw `os::pipe()`s.
fn start_raw_pipe(ctx: &Ctx) -> Result<Box<dyn Bench>> {
    let (a_r, a_w) = mpkit::os::pipe().ctx("pipe")?;
    let (b_r, b_w) = mpkit::os::pipe().ctx("pipe")?;
    let worker = spawn(ctx, "raw-pipe", raw_pipe_child, (a_r, b_w))?;
    Ok(Link::boxed(
        worker,
        StreamTx(a_w),
        StreamRx::new(b_r),
        vec![],
    ))
}

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

/// The Python side of the Python rows.
const PY_SCRIPT: &str = mpkit_bench::python::CLI_SCRIPT;

/// A working Python interpreter.
struct Python {
    path: String,
    version: String,
}

/// `python` if it runs and imports multiprocessing, or why not.
fn find_python(python: &str) -> Result<Python> {
    let out = Command::new(python)
        .args([
            "-c",
            "import multiprocessing, sys; print(sys.version.split()[0])",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("`{python}` could not be run ({e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{python}` cannot import multiprocessing: {}",
            err.trim().lines().last().unwrap_or("(no message)")
        ));
    }
    Ok(Python {
        path: python.to_string(),
        version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    })
}

/// A running `bench_mp.py` for one mechanism, in a process group of its
/// own (so a terminal's Ctrl-C reaches this process, which cleans up, and
/// so the whole group can be killed).
struct PyBench {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl PyBench {
    fn start(python: &str, mechanism: &str, ctx: &Ctx) -> Result<PyBench> {
        let socket = ctx.dir.join("python.sock");
        let child_cpu = ctx
            .placement
            .map_or_else(|| "any".to_string(), |p| p.child_cpu.to_string());
        let mut cmd = Command::new(python);
        cmd.arg("-c")
            .arg(PY_SCRIPT)
            .arg(mechanism)
            .arg(&socket)
            .arg(child_cpu)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = leftovers(|l| {
            let child = cmd.spawn().ctx(format!("start `{python}`"))?;
            l.groups.push(child.id() as i32);
            Ok::<_, String>(child)
        })?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (tx, lines) = mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let collected = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = stderr {
            let collected = Arc::clone(&collected);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                *collected.lock().unwrap_or_else(|e| e.into_inner()) = text;
            });
        }
        let mut py = PyBench {
            child,
            stdin,
            lines,
            stderr: collected,
        };
        let ready = py.line(OPEN_TIMEOUT * 3)?;
        if !ready.starts_with("ready") {
            return Err(format!("the Python helper said {ready:?}"));
        }
        Ok(py)
    }

    /// The helper's next line of output.
    fn line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the Python helper did not answer within {timeout:?}"
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Give the stderr reader a moment to collect the traceback.
                let _ = self.child.wait();
                std::thread::sleep(Duration::from_millis(50));
                let err = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
                Err(format!(
                    "the Python helper ended: {}",
                    err.trim().lines().last().unwrap_or("(no message)")
                ))
            }
        }
    }

    fn request(&mut self, line: &str) -> Result<String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the Python helper is closed".to_string())?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .ctx("write to the Python helper")?;
        self.line(ACK_TIMEOUT)
    }

    /// Ends the helper: end of input (it stops its child and exits); after
    /// `patience`, the whole process group is killed.
    fn stop(&mut self, patience: Duration) -> Result {
        self.stdin = None;
        let deadline = Instant::now() + patience;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => break None,
            }
        };
        let pgid = self.child.id() as i32;
        if status.is_none() {
            // SAFETY: kill takes plain integers; the helper (not yet reaped)
            // still owns its process group id.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        leftovers(|l| l.groups.retain(|&g| g != pgid));
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("the Python helper ended with {s}")),
            None => Err("the Python helper did not stop; it was killed".into()),
        }
    }
}

impl Bench for PyBench {
    fn throughput(&mut self, n: u64, size: usize) -> Result<Duration> {
        let reply = self.request(&format!("tp {n} {size}"))?;
        let ns: u64 = reply
            .trim()
            .parse()
            .map_err(|_| format!("the Python helper replied {reply:?}"))?;
        Ok(Duration::from_nanos(ns))
    }

    fn roundtrip(&mut self, n: u64, samples: &mut Vec<u32>) -> Result {
        let reply = self.request(&format!("rt {n}"))?;
        let before = samples.len();
        for word in reply.split_ascii_whitespace() {
            let ns: u64 = word
                .parse()
                .map_err(|_| format!("the Python helper replied {word:?}"))?;
            samples.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
        if (samples.len() - before) as u64 != n {
            return Err("the Python helper sent the wrong number of round trips".into());
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result {
        self.stop(Duration::from_secs(10))
    }
}

impl Drop for PyBench {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.stop(Duration::from_secs(2));
        }
    }
}

// ---------------------------------------------------------------------------
// The rows
// ---------------------------------------------------------------------------

/// How a row's mechanism starts.
enum Start {
    Rust(fn(&Ctx) -> Result<Box<dyn Bench>>),
    /// The mechanism's name in `bench_mp.py`.
    Python(&'static str),
}

/// One row of the table.
struct Spec {
    id: &'static str,
    mechanism: &'static str,
    /// `floor`, `mpkit`, `os` (kernel objects through mpkit) or `python`.
    family: &'static str,
    /// How a message travels.
    how: &'static str,
    /// The Python row this one is compared with.
    counterpart: Option<&'static str>,
    start: Start,
}

const SPECS: &[Spec] = &[
    Spec {
        id: "spin_ring",
        mechanism: "spin-polled shm ring (floor)",
        family: "floor",
        how: "SPSC ring of fixed slots in SharedMemory, both sides busy-polling (1 MiB per ring)",
        counterpart: Some("py_shm"),
        start: Start::Rust(start_ring),
    },
    Spec {
        id: "pipe",
        mechanism: "Pipe (mpkit::pipe)",
        family: "mpkit",
        how: "two pipe(false) Connections: send_bytes / recv_bytes_into",
        counterpart: Some("py_pipe"),
        start: Start::Rust(start_pipe),
    },
    Spec {
        id: "queue",
        mechanism: "Queue (ByteQueue)",
        family: "mpkit",
        how: "two ByteQueue::with_capacity(0, 1 MiB): put / get_into",
        counterpart: Some("py_queue"),
        start: Start::Rust(start_queue),
    },
    Spec {
        id: "shared_memory",
        mechanism: "shared Array + Semaphores",
        family: "mpkit",
        how: "16 slots in a shm Array<u8>, copied under its lock; Semaphores count free and filled slots",
        counterpart: Some("py_shm"),
        start: Start::Rust(start_shm),
    },
    Spec {
        id: "unix_socket",
        mechanism: "Unix socket Connection",
        family: "mpkit",
        how: "net::Listener / Client on a socket file: send_bytes / recv_bytes_into",
        counterpart: Some("py_socket"),
        start: Start::Rust(start_socket),
    },
    Spec {
        id: "fifo",
        mechanism: "FIFO (os::Fifo)",
        family: "os",
        how: "two named pipes: write_all / read_exact of the fixed size",
        counterpart: Some("py_pipe"),
        start: Start::Rust(start_fifo),
    },
    Spec {
        id: "sysv_mq",
        mechanism: "System V message queue",
        family: "os",
        how: "two private msgq::SysvQueue: send(1, …) / recv(Selector::Any)",
        counterpart: Some("py_queue"),
        start: Start::Rust(start_sysv),
    },
    Spec {
        id: "posix_mq",
        mechanism: "POSIX message queue",
        family: "os",
        how: "two msgq::PosixQueue (10 x 4 KiB): send / recv",
        counterpart: Some("py_queue"),
        start: Start::Rust(start_posix),
    },
    Spec {
        id: "raw_pipe",
        mechanism: "raw pipe (os::pipe)",
        family: "os",
        how: "two os::pipe(): write_all / read_exact of the fixed size, no framing",
        counterpart: Some("py_pipe"),
        start: Start::Rust(start_raw_pipe),
    },
    Spec {
        id: "py_pipe",
        mechanism: "Python Pipe(duplex=False)",
        family: "python",
        how: "two multiprocessing.Pipe(duplex=False): send_bytes / recv_bytes",
        counterpart: None,
        start: Start::Python("pipe"),
    },
    Spec {
        id: "py_queue",
        mechanism: "Python multiprocessing.Queue",
        family: "python",
        how: "two multiprocessing.Queue: put / get of bytes",
        counterpart: None,
        start: Start::Python("queue"),
    },
    Spec {
        id: "py_shm",
        mechanism: "Python Array + Semaphores",
        family: "python",
        how: "16 slots in an Array('B'), copied under its lock; Semaphores count free and filled slots",
        counterpart: None,
        start: Start::Python("shm"),
    },
    Spec {
        id: "py_socket",
        mechanism: "Python Listener/Client (AF_UNIX)",
        family: "python",
        how: "multiprocessing.connection Listener / Client: send_bytes / recv_bytes",
        counterpart: None,
        start: Start::Python("socket"),
    },
];

/// The rows of seed 000's efficiency table, in its order: (label, mpkit
/// row, Python row).
const SEED_000: [(&str, &str, &str); 3] = [
    ("pipe", "pipe", "py_pipe"),
    ("queue", "queue", "py_queue"),
    ("shared memory", "shared_memory", "py_shm"),
];

/// What seed 000's table says, in the same order.
const SEED_000_SAYS: [&str; 3] = ["ordinary", "ordinary", "higher"];

// ---------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------

/// Figures per row: two throughputs and a round trip.
const FIGURES: u64 = 3;
/// At least this many measured batches per figure.
const MIN_BATCHES: usize = 3;
/// At most this many round-trip samples are kept per figure.
const MAX_SAMPLES: usize = 1 << 21;
/// The largest batch of messages or round trips.
const MAX_BATCH: u64 = 1 << 24;

/// A row's figures.
struct Figures {
    small: f64,
    large: f64,
    rt_median_us: f64,
    rt_mean_us: f64,
}

/// A row as measured: its figures, or why it failed.
struct Measured {
    spec: &'static Spec,
    figures: Result<Figures>,
}

/// The progress bar (standard error, shown only on a terminal).
struct Progress(ProgressBar);

impl Progress {
    fn new(len: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed:>3} {wide_msg}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix("mpkit bench");
        Progress(bar)
    }

    fn step(&self, what: String) {
        self.0.set_message(what);
    }

    fn done(&self) {
        self.0.finish_and_clear();
    }
}

/// Starts a row's mechanism, measures its three figures, and stops it.
fn measure_row(spec: &'static Spec, ctx: &Ctx, budget: Duration, progress: &Progress) -> Measured {
    let before = progress.0.position();
    progress.step(format!("{}: starting", spec.mechanism));
    let figures = (|| {
        let bench = match &spec.start {
            Start::Rust(start) => start(ctx)?,
            Start::Python(name) => {
                let python = ctx.python.as_deref().unwrap_or("python3");
                Box::new(PyBench::start(python, name, ctx)?)
            }
        };
        let mut bench = bench;
        progress.step(format!("{}: 64 B throughput", spec.mechanism));
        let small = throughput(bench.as_mut(), SMALL, budget)?;
        progress.0.inc(1);
        progress.step(format!("{}: 4 KiB throughput", spec.mechanism));
        let large = throughput(bench.as_mut(), LARGE, budget)?;
        progress.0.inc(1);
        progress.step(format!("{}: round trip", spec.mechanism));
        let (rt_median_us, rt_mean_us) = roundtrip(bench.as_mut(), budget)?;
        progress.0.inc(1);
        bench.finish()?;
        Ok(Figures {
            small,
            large,
            rt_median_us,
            rt_mean_us,
        })
    })();
    progress.0.set_position(before + FIGURES);
    Measured { spec, figures }
}

/// Messages per second: the median over batches of at least an eighth of
/// `budget` each, after batches grow to that size (warm-up).
fn throughput(bench: &mut dyn Bench, size: usize, budget: Duration) -> Result<f64> {
    let target = budget / 8;
    let mut n = 8u64;
    loop {
        let t = bench.throughput(n, size)?;
        if t >= target || n >= MAX_BATCH {
            break;
        }
        n = grow(n, t, target);
    }
    let start = Instant::now();
    let mut rates = Vec::new();
    while rates.len() < MIN_BATCHES || start.elapsed() < budget {
        let t = bench.throughput(n, size)?;
        rates.push(n as f64 / t.as_secs_f64().max(1e-9));
    }
    Ok(median_f64(&mut rates))
}

/// The median and mean round trip in µs, over every round trip of batches
/// run for `budget`, after a warm-up like [`throughput`]'s.
fn roundtrip(bench: &mut dyn Bench, budget: Duration) -> Result<(f64, f64)> {
    let target = budget / 8;
    let mut n = 8u64;
    let mut samples = Vec::new();
    loop {
        samples.clear();
        let start = Instant::now();
        bench.roundtrip(n, &mut samples)?;
        let t = start.elapsed();
        if t >= target || n >= MAX_BATCH {
            break;
        }
        n = grow(n, t, target);
    }
    samples.clear();
    let start = Instant::now();
    let mut batches = 0;
    while batches < MIN_BATCHES
        || (start.elapsed() < budget && samples.len() + n as usize <= MAX_SAMPLES)
    {
        bench.roundtrip(n, &mut samples)?;
        batches += 1;
    }
    if samples.is_empty() {
        return Err("no round trips were measured".into());
    }
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64;
    let mid = samples.len() / 2;
    let (_, median, _) = samples.select_nth_unstable(mid);
    Ok((f64::from(*median) / 1e3, mean / 1e3))
}

/// The next batch size: scaled towards `target` (at least doubled, at most
/// times 16).
fn grow(n: u64, took: Duration, target: Duration) -> u64 {
    let factor = if took.is_zero() {
        16.0
    } else {
        (target.as_secs_f64() / took.as_secs_f64() * 1.2).clamp(2.0, 16.0)
    };
    ((n as f64 * factor) as u64).min(MAX_BATCH)
}

/// The median (the upper one of an even count).
fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// Everything `--json` prints.
#[derive(Serialize)]
struct Report {
    mode: Mode,
    machine: Machine,
    /// How long the run took, in seconds.
    seconds: f64,
    /// What the figures mean.
    legend: Legend,
    rows: Vec<Row>,
    rating: Ratings,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    /// Where the processes ran (`null`: where the scheduler put them).
    placement: Option<Placement>,
    cpu: Option<String>,
    kernel: Option<String>,
    python: Option<String>,
}

#[derive(Serialize)]
struct Legend {
    msgs_per_sec: &'static str,
    roundtrip_us: &'static str,
    vs_spin_ring: &'static str,
    vs_python: &'static str,
}

/// The legend in the JSON.
const LEGEND: Legend = Legend {
    msgs_per_sec: "messages per second, one way, one producer process to one consumer process (median over batches)",
    roundtrip_us: "64-byte message there and back between two processes, microseconds",
    vs_spin_ring: "this row's throughput divided by the spin-polled ring's (the hardware floor)",
    vs_python: "how many times as fast as the Python counterpart: throughput divided by its, its round trip divided by this one",
};

/// One row of the results.
#[derive(Serialize)]
struct Row {
    id: &'static str,
    mechanism: &'static str,
    family: &'static str,
    how: &'static str,
    msgs_per_sec_64b: Option<f64>,
    msgs_per_sec_4kib: Option<f64>,
    roundtrip_us_median: Option<f64>,
    roundtrip_us_mean: Option<f64>,
    vs_spin_ring_64b: Option<f64>,
    vs_spin_ring_4kib: Option<f64>,
    python_counterpart: Option<&'static str>,
    vs_python_64b: Option<f64>,
    vs_python_4kib: Option<f64>,
    vs_python_roundtrip: Option<f64>,
    error: Option<String>,
}

/// Seed 000's efficiency ratings, and the ones measured here.
#[derive(Serialize)]
struct Ratings {
    rule: &'static str,
    seed_000: [Grade; 3],
    mpkit: Option<[Grade; 3]>,
    python: Option<[Grade; 3]>,
}

#[derive(Serialize)]
struct Grade {
    mechanism: &'static str,
    rating: &'static str,
    /// The row's speed against the three rows' geometric mean.
    score: Option<f64>,
}

/// How seed 000's three mechanisms are rated.
const RATING_RULE: &str = "each rated by the geometric mean of its 64 B msg/s, 4 KiB msg/s and round trips/s, against the three's: higher from 1.5x, lower up to 0.67x";

impl Row {
    fn new(m: &Measured) -> Row {
        let (f, error) = match &m.figures {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.clone())),
        };
        Row {
            id: m.spec.id,
            mechanism: m.spec.mechanism,
            family: m.spec.family,
            how: m.spec.how,
            msgs_per_sec_64b: f.map(|f| f.small),
            msgs_per_sec_4kib: f.map(|f| f.large),
            roundtrip_us_median: f.map(|f| f.rt_median_us),
            roundtrip_us_mean: f.map(|f| f.rt_mean_us),
            vs_spin_ring_64b: None,
            vs_spin_ring_4kib: None,
            python_counterpart: None,
            vs_python_64b: None,
            vs_python_4kib: None,
            vs_python_roundtrip: None,
            error,
        }
    }

    /// (64 B, 4 KiB, round trip), if measured.
    fn figures(&self) -> Option<(f64, f64, f64)> {
        Some((
            self.msgs_per_sec_64b?,
            self.msgs_per_sec_4kib?,
            self.roundtrip_us_median?,
        ))
    }
}

/// `a / b`, when both are there and positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

impl Report {
    fn new(
        mode: Mode,
        took: Duration,
        python: Option<String>,
        placement: Option<Placement>,
        measured: Vec<Measured>,
        notes: Vec<String>,
    ) -> Report {
        let mut rows: Vec<Row> = measured.iter().map(Row::new).collect();
        let find = |rows: &[Row], id: &str| {
            rows.iter()
                .find(|r| r.id == id)
                .and_then(|r| r.figures().map(|f| (f, r.id)))
        };
        let ring = find(&rows, "spin_ring").map(|(f, _)| f);
        for i in 0..rows.len() {
            let mine = rows[i].figures();
            let counterpart = measured[i].spec.counterpart.and_then(|id| find(&rows, id));
            let row = &mut rows[i];
            row.vs_spin_ring_64b = ratio(mine.map(|f| f.0), ring.map(|f| f.0));
            row.vs_spin_ring_4kib = ratio(mine.map(|f| f.1), ring.map(|f| f.1));
            if let Some((py, id)) = counterpart {
                row.python_counterpart = Some(id);
                row.vs_python_64b = ratio(mine.map(|f| f.0), Some(py.0));
                row.vs_python_4kib = ratio(mine.map(|f| f.1), Some(py.1));
                row.vs_python_roundtrip = ratio(Some(py.2), mine.map(|f| f.2));
            }
        }
        let rating = Ratings {
            rule: RATING_RULE,
            seed_000: std::array::from_fn(|i| Grade {
                mechanism: SEED_000[i].0,
                rating: SEED_000_SAYS[i],
                score: None,
            }),
            mpkit: rate(&rows, |i| SEED_000[i].1),
            python: rate(&rows, |i| SEED_000[i].2),
        };
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        Report {
            mode,
            machine: Machine {
                cpus: available,
                placement,
                cpu: cpu_model(),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_string()),
                python,
            },
            seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
            legend: LEGEND,
            rows,
            rating,
            notes,
        }
    }
}

/// Seed 000's three mechanisms rated from rows `id(0..3)`, if all three
/// were measured.
fn rate(rows: &[Row], id: impl Fn(usize) -> &'static str) -> Option<[Grade; 3]> {
    let mut scores = [0.0; 3];
    for (i, score) in scores.iter_mut().enumerate() {
        let (small, large, rt) = rows.iter().find(|r| r.id == id(i))?.figures()?;
        *score = (small * large * (1e6 / rt)).cbrt();
    }
    let mean = (scores[0] * scores[1] * scores[2]).cbrt();
    Some(std::array::from_fn(|i| {
        let score = scores[i] / mean;
        Grade {
            mechanism: SEED_000[i].0,
            rating: if score >= 1.5 {
                "higher"
            } else if score <= 1.0 / 1.5 {
                "lower"
            } else {
                "ordinary"
            },
            score: Some((score * 100.0).round() / 100.0),
        }
    }))
}

/// The CPU's model name, from `/proc/cpuinfo`.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

// ---------------------------------------------------------------------------
// Text output
// ---------------------------------------------------------------------------

/// A rate with three significant digits and a k or M suffix.
fn rate_text(v: f64) -> String {
    let (v, unit) = if v >= 1e6 {
        (v / 1e6, " M")
    } else if v >= 1e3 {
        (v / 1e3, " k")
    } else {
        (v, "")
    };
    format!("{}{unit}", sig3(v))
}

/// About three significant digits (two below 1).
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else if v >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// Microseconds, for people.
fn us_text(v: f64) -> String {
    format!("{} µs", sig3(v))
}

/// A ratio as `1.23x`, or `-` when there is none.
fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{}x", sig3(r)),
        None => "-".into(),
    }
}

/// `f(v)`, or `-` when there is no value.
fn opt_text(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The cells of a row, in the table's column order.
fn cells(r: &Row) -> [String; 9] {
    [
        opt_text(r.msgs_per_sec_64b, rate_text),
        opt_text(r.msgs_per_sec_4kib, rate_text),
        opt_text(r.roundtrip_us_median, us_text),
        ratio_text(r.vs_spin_ring_64b),
        ratio_text(r.vs_spin_ring_4kib),
        ratio_text(r.vs_python_64b),
        ratio_text(r.vs_python_4kib),
        ratio_text(r.vs_python_roundtrip),
        r.python_counterpart
            .map_or_else(String::new, |id| counterpart_name(id).to_string()),
    ]
}

fn counterpart_name(id: &str) -> &'static str {
    SPECS
        .iter()
        .find(|s| s.id == id)
        .map_or("", |s| s.mechanism.trim_start_matches("Python "))
}

/// The width of the mechanism column.
const NAME: usize = 33;

/// A row of the human table: the name, then the cells right-aligned in
/// their columns (the counterpart's name left-aligned, last).
fn human_line(name: &str, cells: &[String; 9]) -> String {
    const WIDTHS: [usize; 8] = [9, 9, 10, 7, 7, 7, 7, 7];
    let mut line = format!("{name:NAME$}");
    for (i, cell) in cells.iter().enumerate() {
        match WIDTHS.get(i) {
            Some(&w) => line.push_str(&format!("  {cell:>w$}")),
            None => line.push_str(&format!("  {cell}")),
        }
    }
    line
}

impl Report {
    fn header(&self) -> String {
        let m = &self.machine;
        let mut parts = vec![format!(
            "{} CPU{}",
            m.cpus,
            if m.cpus == 1 { "" } else { "s" }
        )];
        if let Some(cpu) = &m.cpu {
            parts.push(cpu.clone());
        }
        if let Some(k) = &m.kernel {
            parts.push(format!("Linux {k}"));
        }
        parts.push(match &m.python {
            Some(v) => format!("Python {v}"),
            None => "no Python".into(),
        });
        parts.push(match m.placement {
            Some(p) if p.parent_cpu == p.child_cpu => {
                format!("both sides on CPU {}", p.parent_cpu)
            }
            Some(p) => format!("sides on CPUs {} and {}", p.parent_cpu, p.child_cpu),
            None => "CPUs as the scheduler chose".into(),
        });
        format!(
            "mpkit bench, {} in {:.1} s: {}",
            self.mode.name(),
            self.seconds,
            parts.join(", ")
        )
    }

    /// The closing lines: seed 000's ratings and the measured ones.
    fn rating_lines(&self) -> Vec<String> {
        let said = |grades: &[Grade; 3]| {
            grades
                .iter()
                .map(|g| match g.score {
                    Some(s) => format!("{} {} ({}x)", g.mechanism, g.rating, sig3(s)),
                    None => format!("{} {}", g.mechanism, g.rating),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut lines = vec![format!(
            "efficiency, seed 000's table: {}",
            said(&self.rating.seed_000)
        )];
        match &self.rating.mpkit {
            Some(g) => lines.push(format!("measured here, mpkit:        {}", said(g))),
            None => lines.push(
                "measured here, mpkit: not rated (its pipe, queue and shared memory rows were not all measured)"
                    .into(),
            ),
        }
        if let Some(g) = &self.rating.python {
            lines.push(format!("measured here, Python:        {}", said(g)));
        }
        let row = |id: &str| self.rows.iter().find(|r| r.id == id).and_then(Row::figures);
        if let (Some(ring), Some(pipe)) = (row("spin_ring"), row("pipe")) {
            lines.push(format!(
                "  shared memory with no lock and no sleep (the spin ring) moves 64 B messages \
                 {}x as fast as the Pipe, 4 KiB ones {}x",
                sig3(ring.0 / pipe.0),
                sig3(ring.1 / pipe.1)
            ));
        }
        lines.push(format!(
            "  (shared memory: Array + Semaphores; {RATING_RULE})"
        ));
        lines
    }

    /// The default output: an aligned table, a blank line between
    /// families of rows.
    fn human(&self) -> String {
        let head = [
            "64 B",
            "4 KiB",
            "median",
            "64 B",
            "4 KiB",
            "64 B",
            "4 KiB",
            "r.trip",
            "counterpart",
        ];
        let mut lines = vec![
            format!(
                "{:NAME$}{:^22}{:>12}{:^18}{:^27}",
                "", "throughput (msg/s)", "round trip", "x spin ring", "x Python counterpart"
            ),
            human_line("mechanism", &head.map(String::from)),
        ];
        let mut family = None;
        for row in &self.rows {
            if family.is_some_and(|f| f != row.family) {
                lines.push(String::new());
            }
            family = Some(row.family);
            lines.push(match &row.error {
                Some(e) => format!("{:NAME$}  failed: {e}", row.mechanism),
                None => human_line(row.mechanism, &cells(row)),
            });
        }
        let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        lines.insert(2, "-".repeat(width));
        let mut out = format!("{}\n\n", self.header());
        for line in lines {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str(
            "\nmsg/s: messages per second one way (one producer process, one consumer process);\n\
             round trip: 64 B there and back; x: how many times as fast (higher is faster).\n",
        );
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push('\n');
        for line in self.rating_lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// `--markdown`: a Markdown table with the same columns.
    fn markdown(&self) -> String {
        let mut out = format!("{}\n\n", self.header());
        out.push_str(
            "| mechanism | 64 B msg/s | 4 KiB msg/s | round trip (median) \
             | x spin ring, 64 B | x spin ring, 4 KiB \
             | x Python, 64 B | x Python, 4 KiB | x Python, round trip | Python counterpart |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for row in &self.rows {
            let cells: Vec<String> = match &row.error {
                Some(e) => {
                    let mut c = vec![format!("failed: {}", e.replace('|', "\\|"))];
                    c.resize(9, String::new());
                    c
                }
                None => cells(row).to_vec(),
            };
            out.push_str(&format!("| {} | {} |\n", row.mechanism, cells.join(" | ")));
        }
        out.push_str(
            "\nmsg/s: messages per second one way (one producer process, one consumer process); \
             round trip: 64 B there and back; x: how many times as fast (higher is faster).\n",
        );
        for note in &self.notes {
            out.push_str(&format!("\nNote: {note}\n"));
        }
        out.push('\n');
        for line in self.rating_lines() {
            out.push_str(&format!("{}  \n", line.trim_start()));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------

/// Escapes text for SVG.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn family_color(family: &str) -> &'static str {
    match family {
        "floor" => "#7f7f7f",
        "mpkit" => "#1f77b4",
        "os" => "#2ca02c",
        _ => "#ff7f0e",
    }
}

/// A tick label for a power of ten.
fn decade_text(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{}G", v / 1e9),
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

impl Report {
    /// A bar chart: one panel per figure, a bar per row, logarithmic
    /// scales, longer is faster everywhere (the round trips as round trips
    /// per second, labelled with their µs).
    fn svg(&self) -> String {
        const WIDTH: f64 = 980.0;
        const LABEL: f64 = 250.0;
        const PLOT: f64 = 600.0;
        const BAR: f64 = 16.0;
        const GAP: f64 = 5.0;
        type Value = fn(&Row) -> Option<(f64, String)>;
        let panels: [(&str, Value); 3] = [
            ("64 B messages per second, one way", |r| {
                r.msgs_per_sec_64b
                    .map(|v| (v, format!("{}/s", rate_text(v))))
            }),
            ("4 KiB messages per second, one way", |r| {
                r.msgs_per_sec_4kib
                    .map(|v| (v, format!("{}/s", rate_text(v))))
            }),
            (
                "64 B round trips per second (label: median round trip)",
                |r| r.roundtrip_us_median.map(|us| (1e6 / us, us_text(us))),
            ),
        ];
        let rows = &self.rows;
        let panel_height = 34.0 + rows.len() as f64 * (BAR + GAP) + 22.0;
        let top = 92.0;
        let footer = top + panel_height * panels.len() as f64 + 10.0;
        // The ratings under the chart, without the rule's explanation.
        let mut ratings = self.rating_lines();
        ratings.pop();
        let height = footer + 16.0 * ratings.len() as f64 + 8.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"20\" y=\"28\" font-size=\"18\" font-weight=\"bold\">mpkit bench: messages between two processes (longer is faster, log scale)</text>\n\
             <text x=\"20\" y=\"48\" fill=\"#444\">{}</text>\n",
            xml(&self.header())
        );
        let legend = [
            ("floor", "spin-polled ring (floor)"),
            ("mpkit", "mpkit"),
            ("os", "kernel objects via mpkit"),
            ("python", "Python multiprocessing"),
        ];
        let mut x = 20.0;
        for (family, text) in legend {
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"62\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"72\">{}</text>\n",
                family_color(family),
                x + 17.0,
                xml(text)
            ));
            x += 30.0 + text.len() as f64 * 7.0;
        }
        for (p, (title, value)) in panels.iter().enumerate() {
            let y0 = top + p as f64 * panel_height;
            s.push_str(&format!(
                "<text x=\"20\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
                y0 + 16.0,
                xml(title)
            ));
            let values: Vec<Option<(f64, String)>> = rows.iter().map(value).collect();
            let present: Vec<f64> = values.iter().flatten().map(|(v, _)| *v).collect();
            let (lo, hi) = if present.is_empty() {
                (1.0, 10.0)
            } else {
                let min = present.iter().copied().fold(f64::INFINITY, f64::min);
                let max = present.iter().copied().fold(0.0, f64::max);
                let lo = 10f64.powf(min.log10().floor());
                let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
                (lo, hi)
            };
            let scale =
                |v: f64| LABEL + PLOT * (v.max(lo).log10() - lo.log10()) / (hi / lo).log10();
            let bars_top = y0 + 28.0;
            let bars_bottom = bars_top + rows.len() as f64 * (BAR + GAP);
            // Decade grid lines and their labels.
            let mut tick = lo;
            while tick <= hi * 1.001 {
                let x = scale(tick);
                s.push_str(&format!(
                    "<line x1=\"{x:.1}\" y1=\"{bars_top}\" x2=\"{x:.1}\" y2=\"{bars_bottom}\" stroke=\"#ddd\"/>\
                     <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\" font-size=\"11\">{}</text>\n",
                    bars_bottom + 14.0,
                    decade_text(tick)
                ));
                tick *= 10.0;
            }
            for (i, (row, v)) in rows.iter().zip(&values).enumerate() {
                let y = bars_top + i as f64 * (BAR + GAP);
                s.push_str(&format!(
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                    LABEL - 8.0,
                    y + BAR - 4.0,
                    xml(row.mechanism)
                ));
                match v {
                    Some((v, label)) => {
                        let end = scale(*v);
                        s.push_str(&format!(
                            "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{}\"/>\
                             <text x=\"{:.1}\" y=\"{}\" fill=\"#222\">{}</text>\n",
                            (end - LABEL).max(1.0),
                            family_color(row.family),
                            end + 5.0,
                            y + BAR - 4.0,
                            xml(label)
                        ));
                    }
                    None => s.push_str(&format!(
                        "<text x=\"{}\" y=\"{}\" fill=\"#b00\">failed</text>\n",
                        LABEL + 4.0,
                        y + BAR - 4.0
                    )),
                }
            }
        }
        for (i, line) in ratings.iter().enumerate() {
            s.push_str(&format!(
                "<text x=\"20\" y=\"{}\" fill=\"#444\">{}</text>\n",
                footer + 16.0 * i as f64,
                xml(&line.split_whitespace().collect::<Vec<_>>().join(" "))
            ));
        }
        s.push_str("</svg>\n");
        s
    }
}
