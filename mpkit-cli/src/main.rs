//! The `mpkit` command: a tour of mpkit's mechanisms between real
//! processes, and named objects (queues, shared memory, locks) from the
//! shell.

mod bench;
mod objects;
mod tour;
mod tour_redis_pool;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use objects::{CliError, LsArgs, QueueCommand, RmArgs};

/// Inter-process communication toolkit: see every mechanism at work, and
/// manage named objects from the shell.
#[derive(Parser)]
#[command(name = "mpkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every mechanism mpkit has between real processes, narrated, in
    /// the order a Python multiprocessing tutorial teaches them.
    Tour,
    /// List every named mpkit object on the machine: kind, size or depth,
    /// creating process, whether it is alive, and whether the object is
    /// stale (what `ipcs` is for System V objects).
    Ls(LsArgs),
    /// Remove named mpkit objects by name, or every stale one (what
    /// `ipcrm` is for System V objects).
    Rm(RmArgs),
    /// Named byte queues for shell scripts. Exit codes: 0 success, 1 error,
    /// 2 usage, 3 empty, 4 full, 5 timeout, 6 not found.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The `kill -l` listing with each signal's default action and meaning.
    Signals,
    /// Measure every mechanism on this machine: messages per second at 64 B
    /// and 4 KiB and round-trip latency, against a spin-polled shared-memory
    /// ring and Python's multiprocessing.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // `mpkit --mpkit-worker URL`: a worker of the Redis pool that `mpkit
    // bench --only redis-pool` measures; serves, then exits.
    mpkit::redis_pool::worker_main(bench::REDIS_POOL_TASKS);
    // Like any Unix filter: `mpkit ls | head` ends quietly when `head`
    // stops reading, instead of failing to print. (mpkit's own pipe writes
    // stay safe: they guard against SIGPIPE when it is not ignored.)
    // SAFETY: SIG_DFL is a valid disposition; no handler code is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result: Result<(), CliError> = match cli.command {
        Command::Tour => tour::run().map_err(|e| CliError {
            message: e.to_string(),
            code: objects::code::ERROR,
        }),
        Command::Ls(args) => objects::ls(args),
        Command::Rm(args) => objects::rm(args),
        Command::Queue(cmd) => objects::queue(cmd),
        Command::Signals => objects::signals(),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpkit: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
