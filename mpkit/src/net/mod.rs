//! Authenticated connections over Unix and TCP sockets: [`Listener`] and
//! [`Client`] (Python's `multiprocessing.connection.Listener` and
//! `Client`), and [`wait`] on many objects at once.
//!
//! They give the same [`Connection`] as a pipe, and speak CPython's wire
//! protocol (framing and authentication handshake), so a Python program
//! using only its standard library can connect to an mpkit `Listener`, and
//! an mpkit `Client` to a Python `Listener`. Use the
//! [`Pickle`](crate::codec::Pickle) codec to exchange Python objects.
//!
//! ```
//! use mpkit::net::{Client, Listener};
//! use mpkit::Process;
//!
//! let listener = Listener::bind("127.0.0.1:0", Some(b"secret"))?; // port 0: any free port
//! let address = listener.address().to_string();
//! let client = Process::spawn(|address: String| {
//!     let mut conn = mpkit::net::Client::connect(&address, Some(b"secret")).unwrap();
//!     conn.send(&"hello over TCP").unwrap();
//!     conn.recv::<usize>().unwrap()
//! }, address)?;
//! let mut conn = listener.accept()?;
//! let text: String = conn.recv()?;
//! conn.send(&text.len())?;
//! assert_eq!(client.join()?, 14);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Addresses
//! - a path (`/tmp/app.sock`, `./app.sock`, anything with a `/`): a Unix
//!   socket file, created with mode 0600 and removed when the listener is
//!   dropped;
//! - `@name`: a Linux abstract Unix socket (no file);
//! - `host:port` (`127.0.0.1:6000`, `localhost:0`, `[::1]:6000`): TCP. A
//!   bare `:port` binds to loopback.
//!
//! # Security
//! With an auth key, both sides prove they know it (HMAC challenge-response
//! in both directions, the 3.11 and the 3.12+ forms) before anything else is
//! exchanged: nothing received is decoded before that, every read before it
//! is at most 256 bytes, and the whole handshake must finish within the
//! handshake timeout (10 s by default), so a silent, slow or garbage-sending
//! peer is cut off with an error. Digests are compared in constant time.
//! Handshakes run side by side, each against its own deadline, so peers
//! that connect and say nothing cannot keep others out; at most
//! [`DEFAULT_MAX_PENDING_HANDSHAKES`] are in flight unless set otherwise
//! ([`ListenerBuilder::max_pending_handshakes`]), the idlest dropped when
//! another peer arrives. Descriptors a peer attaches without announcing
//! them are closed as they arrive (see [`crate::connection`]).
//! Listening on a non-loopback TCP address without an auth key must be
//! asked for explicitly ([`ListenerBuilder::allow_unauthenticated_remote`]).

mod accept;
mod auth;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::connection::{Connection, RawConnection};
use crate::sys::{self, Deadline};

/// The handshake timeout unless set otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many handshakes a listener runs at once unless set otherwise
/// ([`ListenerBuilder::max_pending_handshakes`]).
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 64;

/// Why a listener or client failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The address could not be parsed or resolved.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// Binding on a non-loopback TCP address without an auth key was not
    /// explicitly allowed.
    #[error(
        "refusing to listen on non-loopback address {0} without an auth key \
         (use ListenerBuilder::allow_unauthenticated_remote to insist)"
    )]
    RemoteWithoutKey(String),
    /// `accept_timeout` or `connect_timeout` gave up.
    #[error("timed out")]
    Timeout,
    /// The handshake failed: wrong or missing key, a peer that does not
    /// follow the protocol, or one that was too slow. Raised on both sides.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// Something already uses the address. For a Unix socket file, `stale`
    /// says that nobody listens on it: a listener that died (SIGKILL, a
    /// crash) left its file behind, and
    /// [`ListenerBuilder::replace_stale`] takes it over.
    #[error("{}", in_use_message(.address, *.stale))]
    AddressInUse {
        /// The address asked for.
        address: Address,
        /// The address is a Unix socket file nobody listens on.
        stale: bool,
    },
    /// The operating system refused (connection refused, …).
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn in_use_message(address: &Address, stale: bool) -> String {
    if stale {
        format!(
            "{address} is a socket file nobody listens on (left by a listener that \
             died); remove it, or bind with ListenerBuilder::replace_stale(true)"
        )
    } else {
        format!("address {address} is in use")
    }
}

/// Where a listener listens or a client connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix socket file.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (no file).
    Abstract(Vec<u8>),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Address {
    /// Parses an address; see the [module docs](self) for the forms.
    ///
    /// ```
    /// use mpkit::net::Address;
    /// assert!(matches!(Address::parse("/tmp/x.sock")?, Address::Unix(_)));
    /// assert!(matches!(Address::parse("@mpkit-demo")?, Address::Abstract(_)));
    /// assert_eq!(Address::parse(":6000")?.to_string(), "127.0.0.1:6000");
    /// # Ok::<(), mpkit::net::NetError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Address, NetError> {
        if let Some(name) = s.strip_prefix('@') {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        let spec = if s.starts_with(':') {
            format!("127.0.0.1{s}")
        } else {
            s.to_string()
        };
        let resolved = spec
            .to_socket_addrs()
            .map_err(|_| NetError::InvalidAddress(s.to_string()))?;
        let mut resolved: Vec<SocketAddr> = resolved.collect();
        // Prefer IPv4 loopback-style resolution order when both exist.
        resolved.sort_by_key(|a| !a.is_ipv4());
        resolved
            .into_iter()
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| NetError::InvalidAddress(s.to_string()))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Address, NetError> {
        Address::parse(s)
    }
}

/// Options for a [`Listener`].
#[derive(Clone, Debug)]
pub struct ListenerBuilder {
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    allow_remote: bool,
    backlog: u32,
    replace_stale: bool,
    max_pending: usize,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            authkey: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            allow_remote: false,
            backlog: 128,
            replace_stale: false,
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
        }
    }
}

impl ListenerBuilder {
    /// The key both sides must know (no handshake without one).
    pub fn authkey(mut self, key: &[u8]) -> ListenerBuilder {
        self.authkey = Some(key.to_vec());
        self
    }

    /// How long a connecting peer has to complete the handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> ListenerBuilder {
        self.handshake_timeout = timeout;
        self
    }

    /// Allows listening on a non-loopback TCP address without an auth key.
    pub fn allow_unauthenticated_remote(mut self, allow: bool) -> ListenerBuilder {
        self.allow_remote = allow;
        self
    }

    /// The listen backlog (128 by default).
    pub fn backlog(mut self, backlog: u32) -> ListenerBuilder {
        self.backlog = backlog;
        self
    }

    /// How many peers may be in the middle of the handshake at once
    /// ([`DEFAULT_MAX_PENDING_HANDSHAKES`] unless set; at least 1). When
    /// another peer connects with the set full, the pending peer that has
    /// made no progress for longest is disconnected. Each handshake has its
    /// own deadline ([`handshake_timeout`](Self::handshake_timeout)), and
    /// none waits for another: peers that connect and say nothing cannot
    /// keep an honest client out.
    pub fn max_pending_handshakes(mut self, max: usize) -> ListenerBuilder {
        self.max_pending = max;
        self
    }

    /// Takes over a Unix socket file that nobody listens on (left behind by
    /// a listener that was killed), instead of failing with
    /// [`NetError::AddressInUse`]. Off by default.
    ///
    /// Before removing the file, `bind` checks that it is a socket and
    /// probes it with a `connect`: only a refused connection (no listener)
    /// lets it go; a live listener is never displaced (the error says so,
    /// and that listener sees a peer that connected and left). Two
    /// processes taking over the same file at the same instant can both
    /// remove it; serialise them if that can happen.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("mpkit-doc-stale-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("app.sock");
    /// # std::os::unix::net::UnixListener::bind(&path)?; // closed at once: a stale file
    /// use mpkit::net::{Listener, NetError};
    /// let path = path.to_str().unwrap();
    /// assert!(matches!(Listener::bind(path, None), Err(NetError::AddressInUse { stale: true, .. })));
    /// let listener = Listener::builder().replace_stale(true).bind(path)?;
    /// # drop(listener);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replace_stale(mut self, replace: bool) -> ListenerBuilder {
        self.replace_stale = replace;
        self
    }

    /// Binds and listens. An address already in use is
    /// [`NetError::AddressInUse`], naming it.
    pub fn bind(self, address: &str) -> Result<Listener, NetError> {
        let address = Address::parse(address)?;
        let (fd, address, unlink) = match &address {
            Address::Tcp(a) => {
                if self.authkey.is_none() && !a.ip().is_loopback() && !self.allow_remote {
                    return Err(NetError::RemoteWithoutKey(a.to_string()));
                }
                let l = TcpListener::bind(a).map_err(|e| in_use(e, &address))?;
                let local = l.local_addr()?;
                (OwnedFd::from(l), Address::Tcp(local), None)
            }
            Address::Unix(path) => {
                let fd = match sys::unix_listener_0600(path, self.backlog) {
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        let stale = is_stale_socket_file(path)?;
                        if !(stale && self.replace_stale) {
                            return Err(NetError::AddressInUse {
                                address: address.clone(),
                                stale,
                            });
                        }
                        match std::fs::remove_file(path) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                            _ => {}
                        }
                        sys::unix_listener_0600(path, self.backlog)
                            .map_err(|e| in_use(e, &address))?
                    }
                    r => r?,
                };
                (fd, address.clone(), Some(path.clone()))
            }
            Address::Abstract(name) => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                (
                    OwnedFd::from(UnixListener::bind_addr(&addr).map_err(|e| in_use(e, &address))?),
                    address.clone(),
                    None,
                )
            }
        };
        // Accepting never blocks: one thread serves the listening socket
        // and every pending handshake (see `accept.rs`).
        sys::set_nonblocking(fd.as_fd(), true)?;
        let acceptor = accept::Acceptor::new(fd.as_fd(), self.max_pending, self.handshake_timeout)?;
        Ok(Listener {
            fd,
            address,
            unlink,
            authkey: self.authkey,
            acceptor,
        })
    }
}

/// `AddrInUse` as [`NetError::AddressInUse`] naming `address`.
fn in_use(e: io::Error, address: &Address) -> NetError {
    if e.kind() == io::ErrorKind::AddrInUse {
        NetError::AddressInUse {
            address: address.clone(),
            stale: false,
        }
    } else {
        NetError::Io(e)
    }
}

/// Whether `path` is a socket file nobody listens on (never true for any
/// other kind of file, which is never removed).
fn is_stale_socket_file(path: &std::path::Path) -> Result<bool, NetError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(!sys::unix_path_has_listener(path)?),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A socket that accepts authenticated [`Connection`]s (Python's
/// `multiprocessing.connection.Listener`).
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    address: Address,
    /// The socket file to remove on drop.
    unlink: Option<PathBuf>,
    authkey: Option<Vec<u8>>,
    /// The handshakes in flight.
    acceptor: accept::Acceptor,
}

impl Listener {
    /// Binds `address` and listens; with `authkey`, every connection must
    /// pass the handshake.
    pub fn bind(address: &str, authkey: Option<&[u8]>) -> Result<Listener, NetError> {
        let mut b = ListenerBuilder::default();
        if let Some(k) = authkey {
            b = b.authkey(k);
        }
        b.bind(address)
    }

    /// More options.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// The address actually bound (with the real port for `:0`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Accepts the next connection and authenticates it. A peer that fails
    /// the handshake is an error (and is disconnected); call again for the
    /// next one.
    ///
    /// Handshakes run side by side: while one peer is silent, others that
    /// connect later are authenticated and returned first, and a pending
    /// handshake carries over to the next call (see
    /// [`ListenerBuilder::max_pending_handshakes`]).
    pub fn accept(&self) -> Result<Connection, NetError> {
        self.accept_until(None)
    }

    /// Like [`accept`](Self::accept), giving up with [`NetError::Timeout`]
    /// if no peer completes the handshake within `timeout`.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection, NetError> {
        self.accept_until(sys::deadline_after(Some(timeout)))
    }

    fn accept_until(&self, deadline: Deadline) -> Result<Connection, NetError> {
        let tcp = matches!(self.address, Address::Tcp(_));
        let wrap = |fd: OwnedFd| {
            if tcp {
                sys::set_nodelay(fd.as_fd());
            }
            RawConnection::new(fd, true, true, true)
        };
        let raw = match &self.authkey {
            Some(key) => self.acceptor.accept(self.fd.as_fd(), key, deadline, wrap)?,
            None => loop {
                if !sys::wait_readable(self.fd.as_fd(), deadline)? {
                    return Err(NetError::Timeout);
                }
                match sys::accept(self.fd.as_fd()) {
                    Ok(fd) => break wrap(fd),
                    // Another thread took that peer.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                }
            },
        };
        Ok(Connection::from_raw(raw))
    }

    /// Closes the listener (dropping it does the same), removing its socket
    /// file.
    pub fn close(self) {}
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unlink {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Connects to listeners (Python's `multiprocessing.connection.Client`).
pub struct Client;

impl Client {
    /// Connects to `address`; with `authkey`, runs the handshake (its
    /// default timeout applies).
    pub fn connect(address: &str, authkey: Option<&[u8]>) -> Result<Connection, NetError> {
        Client::connect_until(address, authkey, None)
    }

    /// Like [`connect`](Self::connect), but the connection and the
    /// handshake together must finish within `timeout`.
    pub fn connect_timeout(
        address: &str,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection, NetError> {
        Client::connect_until(address, authkey, Some(Instant::now() + timeout))
    }

    fn connect_until(
        address: &str,
        authkey: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<Connection, NetError> {
        let address = Address::parse(address)?;
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let fd = match &address {
            Address::Tcp(a) => {
                let s = match left() {
                    Some(t) if t.is_zero() => return Err(NetError::Timeout),
                    Some(t) => TcpStream::connect_timeout(a, t).map_err(|e| match e.kind() {
                        io::ErrorKind::TimedOut => NetError::Timeout,
                        _ => NetError::Io(e),
                    })?,
                    None => TcpStream::connect(a)?,
                };
                let _ = s.set_nodelay(true);
                OwnedFd::from(s)
            }
            Address::Unix(p) => OwnedFd::from(UnixStream::connect(p)?),
            Address::Abstract(name) => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                OwnedFd::from(UnixStream::connect_addr(&addr)?)
            }
        };
        let mut raw = RawConnection::new(fd, true, true, true);
        if let Some(key) = authkey {
            let deadline =
                deadline.or_else(|| sys::deadline_after(Some(DEFAULT_HANDSHAKE_TIMEOUT)));
            auth::answer_challenge(&mut raw, key, deadline)?;
            auth::deliver_challenge(&mut raw, key, deadline)?;
        }
        Ok(Connection::from_raw(raw))
    }
}

/// Something [`wait`] can wait on: a [`Connection`] (ready to receive, or at
/// end of file), a [`Listener`] (a peer is connecting), a
/// [`Process`](crate::Process) (it exited; Python's `sentinel`), or a pool
/// result ([`AsyncResult`](crate::pool::AsyncResult),
/// [`Task`](crate::pool::Task): it finished).
///
/// ```
/// use std::os::fd::AsRawFd;
/// use mpkit::net::Waitable;
///
/// // The descriptor can go into any poll loop (mio, tokio's AsyncFd, ...).
/// let (a, _b) = mpkit::pipe(true)?;
/// assert!(a.ready_fd()?.as_raw_fd() >= 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready. An
    /// object that makes its descriptor on first use (a pool result) fails
    /// here if the system cannot make one (out of descriptors).
    fn ready_fd(&self) -> io::Result<BorrowedFd<'_>>;
    /// Ready without waiting (data already buffered).
    fn ready_now(&self) -> bool {
        false
    }
}

impl<C> Waitable for Connection<C> {
    fn ready_fd(&self) -> io::Result<BorrowedFd<'_>> {
        Ok(self.as_fd())
    }
    fn ready_now(&self) -> bool {
        self.has_buffered()
    }
}

impl Waitable for Listener {
    /// Readable while a peer is waiting to be accepted or a pending
    /// handshake has something to read.
    fn ready_fd(&self) -> io::Result<BorrowedFd<'_>> {
        Ok(self.acceptor.ready_fd())
    }
}

impl<R> Waitable for crate::Process<R> {
    fn ready_fd(&self) -> io::Result<BorrowedFd<'_>> {
        Ok(self.sentinel())
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: forever), and returns the indexes of those ready (Python's
/// `multiprocessing.connection.wait`). Empty on timeout. Fails only if
/// an object cannot make its descriptor, or `poll` itself fails.
///
/// ```
/// use std::time::Duration;
/// let (mut a, b) = mpkit::pipe(true)?;
/// let (c, _d) = mpkit::pipe(true)?;
/// assert!(mpkit::net::wait(&[&b, &c], Some(Duration::ZERO))?.is_empty());
/// a.send(&1u8)?;
/// assert_eq!(mpkit::net::wait(&[&b, &c], Some(Duration::from_secs(5)))?, [0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let now: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].ready_now())
        .collect();
    if !now.is_empty() {
        return Ok(now);
    }
    let want = sys::Ready {
        readable: true,
        writable: false,
    };
    let fds = objects
        .iter()
        .map(|o| Ok((o.ready_fd()?, want)))
        .collect::<io::Result<Vec<_>>>()?;
    let ready = sys::wait_fds(&fds, sys::deadline_after(timeout))?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| r.readable)
        .map(|(i, _)| i)
        .collect())
}
