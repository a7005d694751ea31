//! How spawning and joining a child can fail.

use std::fmt;
use std::io;

#[cfg(doc)]
use super::Process;
use crate::codec::CodecError;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The arguments could not be encoded (checked in the parent, before any
    /// process is started).
    #[error("could not encode the arguments of type `{type_name}`: {source}")]
    ArgsEncode {
        /// The argument type.
        type_name: &'static str,
        /// What the codec said.
        source: CodecError,
    },
    /// The function is not in the executable itself (it is in a shared
    /// library loaded at its own address), so the child cannot find it.
    #[error("the function is not part of the executable, so a child process cannot find it")]
    ForeignFunction,
    /// The arguments hold more handles than one message can carry.
    #[error("the arguments hold {0} handles; at most 253 can be passed to a child")]
    TooManyHandles(usize),
    /// The operating system refused (fork, exec, socketpair, pidfd_open).
    #[error("could not start the child process: {0}")]
    Io(#[from] io::Error),
}

/// How a child ended, when it did not return a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// [`Process::join_timeout`] gave up; the child is still running.
    #[error("the child process is still running")]
    Timeout,
    /// User code in the child panicked: the function, or the serde code or
    /// destructor of its arguments or result (see [`PanicStage`]). The exit
    /// code is 1.
    #[error("the child process panicked {stage}: {message}")]
    Panicked {
        /// The panic message.
        message: String,
        /// Which step panicked.
        stage: PanicStage,
    },
    /// The child exited with this code without returning (it called
    /// `std::process::exit`, or aborted before the function ran).
    #[error("the child process exited with code {code} without returning a result")]
    Exited {
        /// The exit code.
        code: i32,
    },
    /// A signal ended the child (SIGTERM from [`Process::terminate`], SIGKILL
    /// from [`Process::kill`], a crash, …).
    #[error("the child process was killed by signal {signal}")]
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The arguments reached the child but did not decode as the function's
    /// argument type (a `Serialize`/`Deserialize` pair that disagree).
    #[error("the child could not decode its arguments as `{type_name}`: {message}")]
    ArgsDecode {
        /// The argument type.
        type_name: String,
        /// What the codec said.
        message: String,
    },
    /// The function returned, but its result could not be encoded.
    #[error("the child could not encode its result of type `{type_name}`: {message}")]
    ResultEncode {
        /// The result type.
        type_name: String,
        /// What the codec said.
        message: String,
    },
    /// The result arrived but did not decode as `R`.
    #[error("could not decode the child's result as `{type_name}`: {source}")]
    ResultDecode {
        /// The result type.
        type_name: &'static str,
        /// What the codec said.
        source: CodecError,
    },
    /// The child refused to run (it is not the parent's executable).
    #[error("the child refused to run: {0}")]
    BadExecutable(String),
    /// The child exited without a result, and its exit status was collected
    /// by someone else (`SIGCHLD` ignored, or a `waitpid(-1)` elsewhere).
    #[error("the child process exited without a result; its exit status was collected elsewhere")]
    StatusUnavailable,
    /// The result was already taken by an earlier join.
    #[error("the child process was already joined")]
    AlreadyJoined,
    /// The operating system reported an error while waiting.
    #[error("waiting for the child process failed: {0}")]
    Io(#[from] io::Error),
}

/// Which step of a child's work panicked ([`JoinError::Panicked`]).
///
/// ```
/// use mpkit::process::{JoinError, PanicStage, Process};
///
/// struct Fussy;
/// impl serde::Serialize for Fussy {
///     fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
///         s.serialize_unit()
///     }
/// }
/// impl<'de> serde::Deserialize<'de> for Fussy {
///     fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
///         <()>::deserialize(d)?;
///         panic!("Fussy refuses to be decoded")
///     }
/// }
///
/// let child = Process::spawn(|_: Fussy| (), Fussy)?;
/// match child.join() {
///     Err(JoinError::Panicked { stage, message }) => {
///         assert_eq!(stage, PanicStage::Arguments);
///         assert_eq!(message, "Fussy refuses to be decoded");
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum PanicStage {
    /// Decoding the arguments (the argument type's `Deserialize`).
    Arguments,
    /// The function itself (including the drop of its arguments).
    Function,
    /// Encoding or dropping the function's result (the result type's
    /// `Serialize` or `Drop`).
    Result,
}

impl fmt::Display for PanicStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PanicStage::Arguments => "while decoding its arguments",
            PanicStage::Function => "in its function",
            PanicStage::Result => "while encoding or dropping its result",
        })
    }
}
