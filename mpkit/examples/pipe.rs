//! Python's classic `multiprocessing.Pipe` example, in Rust.
//!
//! The parent makes a pipe and starts a child with both ends. The child
//! closes its sending end and prints every value until end of file; the
//! parent closes its receiving end, sends 0 to 9, closes, and joins.
//!
//! ```text
//! cargo run --example pipe
//! ```

use mpkit::{Connection, Process, RecvError};

fn sub_process((parent_pid, (mut out_pipe, in_pipe)): (u32, (Connection, Connection))) {
    println!("child {} running, parent {parent_pid}", std::process::id());
    in_pipe.close();
    loop {
        match out_pipe.recv::<i32>() {
            Ok(msg) => println!("out pipe : {msg}"),
            // Python's EOFError: every sending end is closed.
            Err(RecvError::Eof) => break,
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("parent {} running", std::process::id());
    let (out_pipe, in_pipe) = mpkit::pipe(true)?;
    let child = Process::spawn(
        sub_process,
        (
            std::process::id(),
            (out_pipe.try_clone()?, in_pipe.try_clone()?),
        ),
    )?;

    // Close the parent's receiving end.
    out_pipe.close();
    let mut in_pipe = in_pipe;
    for i in 0..10 {
        in_pipe.send(&i)?;
    }
    in_pipe.close();

    child.join()?;
    println!("parent {} ended", std::process::id());
    Ok(())
}
