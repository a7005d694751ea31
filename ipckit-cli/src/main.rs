//! The `ipckit` command: a tour of ipckit's mechanisms between real
//! processes (and, as the library grows, benchmarks and named objects).

mod tour;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inter-process communication toolkit: see every mechanism at work.
#[derive(Parser)]
#[command(name = "ipckit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every mechanism ipckit has between real processes, narrated:
    /// processes, then pipes (in the order the seeds teach them).
    Tour,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tour => tour::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipckit: {e}");
            ExitCode::FAILURE
        }
    }
}
