//! [`RemoteFn`]: a function under a name that is stable across builds, and
//! the signature both ends compare.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A function that workers on any host can run, under a name that is
/// stable across builds (a function's address is not: another build, or
/// the same build on another host, puts it elsewhere).
///
/// Callers send the name with each task, and a signature: the
/// [`version`](Self::version) and the argument and result types'
/// [`type_name`](std::any::type_name)s. A worker runs a task only if it
/// has a function of that name with the same signature; otherwise the
/// task fails with [`TaskError::Incompatible`](crate::pool::TaskError::Incompatible)
/// naming both sides. Raise the version when the function's meaning
/// changes but its types do not.
///
/// ```
/// use mpkit::redis_pool::RemoteFn;
///
/// fn count(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// const COUNT: RemoteFn<String, usize> = RemoteFn::new("wordcount.count", count).version(2);
/// assert_eq!(COUNT.name(), "wordcount.count");
/// assert_eq!(COUNT.signature(), "v2 alloc::string::String -> usize");
/// assert_eq!(COUNT.call("a b c".to_string()), 3);
/// ```
pub struct RemoteFn<A, R> {
    name: &'static str,
    version: u32,
    f: fn(A) -> R,
}

impl<A, R> Clone for RemoteFn<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for RemoteFn<A, R> {}

impl<A, R> fmt::Debug for RemoteFn<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFn")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

impl<A, R> RemoteFn<A, R> {
    /// `f` under `name`, version 1.
    pub const fn new(name: &'static str, f: fn(A) -> R) -> RemoteFn<A, R> {
        RemoteFn {
            name,
            version: 1,
            f,
        }
    }

    /// The same function with another version number: workers run a task
    /// only for the version the caller sent.
    pub const fn version(mut self, version: u32) -> RemoteFn<A, R> {
        self.version = version;
        self
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the function here.
    pub fn call(&self, arg: A) -> R {
        (self.f)(arg)
    }

    /// What both ends compare: `v{version} {argument type} -> {result
    /// type}`.
    pub fn signature(&self) -> String {
        format!(
            "v{} {} -> {}",
            self.version,
            std::any::type_name::<A>(),
            std::any::type_name::<R>()
        )
    }
}

mod sealed {
    pub trait Sealed {}
}

impl<A, R> sealed::Sealed for RemoteFn<A, R> {}

/// A [`RemoteFn`] of any types, as a worker lists the functions it runs
/// ([`worker_main`](super::worker_main), [`WorkerBuilder`](super::WorkerBuilder)).
/// Sealed: only `RemoteFn` implements it.
///
/// ```
/// use mpkit::redis_pool::{AnyRemoteFn, RemoteFn};
///
/// const LEN: RemoteFn<String, usize> = RemoteFn::new("len", |s: String| s.len());
/// const NEG: RemoteFn<i64, i64> = RemoteFn::new("neg", |x: i64| -x);
/// let tasks: &[&dyn AnyRemoteFn] = &[&LEN, &NEG];
/// assert_eq!(tasks[1].task_name(), "neg");
/// ```
pub trait AnyRemoteFn: sealed::Sealed + Send + Sync {
    /// The function's name.
    fn task_name(&self) -> &'static str;
    /// Its signature ([`RemoteFn::signature`]).
    fn task_signature(&self) -> String;
    /// Runs a chunk's payload; returns the reply's body.
    #[doc(hidden)]
    fn run_payload(&self, payload: &[u8]) -> Vec<u8>;
}

impl<A, R> AnyRemoteFn for RemoteFn<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn task_name(&self) -> &'static str {
        self.name
    }

    fn task_signature(&self) -> String {
        self.signature()
    }

    fn run_payload(&self, payload: &[u8]) -> Vec<u8> {
        crate::pool::remote::run_chunk(self.f, payload)
    }
}
