//! Finding and removing named mpkit objects (what `ipcs` and `ipcrm` are for
//! System V objects): every file in `/dev/shm` that starts with an mpkit
//! header, and the plain [`SharedMemory`](crate::shm::SharedMemory) blocks
//! mpkit made.
//!
//! The segment header says what every object is, who made it and whether
//! it was kept on purpose; facts only one kind knows (how many messages a
//! queue holds) come from that kind's own module, which reads them from the
//! file. A plain block has no header: its creator and kept flag are an
//! extended attribute of its file (see
//! [`SharedMemory`](crate::shm::SharedMemory)'s "Who made it"), or, where
//! the kernel stores none, the pid in a generated `mpkit_PID_…` name.
//!
//! ```
//! use mpkit::admin;
//! use mpkit::sync::Lock;
//!
//! let name = format!("doc-admin-{}", std::process::id());
//! let lock = Lock::create(&name)?;
//! let info = admin::inspect(&name)?;
//! assert_eq!(info.kind, Some(mpkit::shm::ObjectKind::Lock));
//! assert!(info.creator_alive && !info.is_stale());
//! assert!(admin::list()?.iter().any(|o| o.name == name));
//! drop(lock); // the creator removes the name
//! assert!(admin::inspect(&name).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::base::element;
use crate::base::segment::{
    FLAG_KEPT, HEADER_SIZE, LAYOUT_VERSION, MAGIC, ObjectKind, ShmError, shm_path,
};
use crate::shm::mark::{self, Mark};

const SHM_DIR: &str = "/dev/shm";

/// What [`list`] and [`inspect`] report about a named object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ObjectInfo {
    /// The name (as `open` takes it).
    pub name: String,
    /// The kind, or `None` for a plain [`SharedMemory`](crate::shm::SharedMemory)
    /// block (no header).
    pub kind: Option<ObjectKind>,
    /// Size of the file in bytes.
    pub size: u64,
    /// The process that created it; `None` when unknown (a plain block
    /// from an older mpkit, or a kernel without user attributes on tmpfs),
    /// and then it is never stale.
    pub creator_pid: Option<i32>,
    /// Whether that process still runs (a reused pid does not count: the
    /// process must have started before the object was created).
    pub creator_alive: bool,
    /// Whether any process has it mapped or open now.
    pub in_use: bool,
    /// Messages queued (queues only).
    pub depth: Option<u64>,
    /// Layout version (typed objects only).
    pub version: Option<u32>,
    /// What it holds, as its creator recorded it (`Job (postcard)`,
    /// `u64 (8 bytes, alignment 8)`): typed objects with elements only.
    pub element: Option<String>,
    /// Kept on purpose (`keep()`): meant to outlive its creator.
    pub kept: bool,
}

impl ObjectInfo {
    /// Nobody uses it, its creator is known and gone, and it was not kept
    /// on purpose: safe to remove.
    pub fn is_stale(&self) -> bool {
        self.creator_pid.is_some() && !self.in_use && !self.creator_alive && !self.kept
    }
}

impl serde::Serialize for ObjectKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Every named mpkit object on the machine, sorted by name.
pub fn list() -> io::Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let users = open_shm_files();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Ok(Some(info)) = read_info(&name, &users) {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One named object, or [`ShmError::NotMpkit`] for a file that is not one.
pub fn inspect(name: &str) -> Result<ObjectInfo, ShmError> {
    let bare = shm_path(name)?[1..].to_string();
    let users = open_shm_files();
    match read_info(&bare, &users) {
        Ok(Some(info)) => Ok(info),
        Ok(None) => Err(ShmError::NotMpkit),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ShmError::NotFound(name.to_string())),
        Err(e) => Err(ShmError::Io(e)),
    }
}

/// Removes a named mpkit object (refusing files that are not mpkit's).
/// Processes that have it open keep it until they close it.
pub fn remove(name: &str) -> Result<(), ShmError> {
    inspect(name)?;
    crate::sys::shm_unlink(&shm_path(name)?).map_err(|e| match e.raw_os_error() {
        Some(crate::sys::ENOENT) => ShmError::NotFound(name.to_string()),
        _ => ShmError::Io(e),
    })
}

fn read_info(name: &str, users: &[String]) -> io::Result<Option<ObjectInfo>> {
    let path = Path::new(SHM_DIR).join(name);
    // Never a blocking open: anyone may put a FIFO in /dev/shm.
    let file = crate::sys::open_read_nonblocking(&path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let in_use = users.iter().any(|u| u == name);
    let mut header = [0u8; HEADER_SIZE];
    let typed = meta.len() >= HEADER_SIZE as u64 && (&file).read_exact(&mut header).is_ok();
    let u32_at = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().expect("4 bytes"));
    if !typed || u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) != MAGIC {
        return Ok(plain_block(name, &file, &meta, in_use));
    }
    let kind = ObjectKind::from_raw(u32_at(12));
    let pid = u32_at(52) as i32;
    let current = u32_at(8) == LAYOUT_VERSION;
    let depth = match kind {
        Some(kind) if current => crate::queue::depth_in(kind, &file)?,
        _ => None,
    };
    let elem_type = u64::from_le_bytes(header[24..32].try_into().expect("8 bytes"));
    let element = if current && elem_type != 0 {
        let size = u64::from_le_bytes(header[40..48].try_into().expect("8 bytes"));
        Some(element_in(&file, size, meta.len(), u32_at(16), u32_at(20)))
    } else {
        None
    };
    Ok(Some(ObjectInfo {
        name: name.to_string(),
        kind,
        size: meta.len(),
        creator_pid: Some(pid),
        creator_alive: started_before(pid, meta.ctime()),
        in_use,
        depth,
        version: Some(u32_at(8)),
        element,
        kept: u32_at(56) & FLAG_KEPT != 0,
    }))
}

/// A plain [`SharedMemory`](crate::shm::SharedMemory) block, if mpkit made
/// it: its creator record, else the pid in its generated name, else (an
/// `mpkit_` name from an older mpkit) listed with its creator unknown.
fn plain_block(
    name: &str,
    file: &File,
    meta: &std::fs::Metadata,
    in_use: bool,
) -> Option<ObjectInfo> {
    let (creator_pid, creator_alive, kept) = match Mark::read(file.as_fd()) {
        Some(m) => (Some(m.pid), m.creator_alive(), m.kept),
        None if name.starts_with("mpkit_") => match mark::pid_in_generated_name(name) {
            Some(pid) => (Some(pid), started_before(pid, meta.ctime()), false),
            None => (None, false, false),
        },
        None => return None,
    };
    Some(ObjectInfo {
        name: name.to_string(),
        kind: None,
        size: meta.len(),
        creator_pid,
        creator_alive,
        in_use,
        depth: None,
        version: None,
        element: None,
        kept,
    })
}

/// The element record of a typed object whose header says `size` bytes,
/// checked as attaching checks it.
fn element_in(file: &File, size: u64, file_len: u64, elem_size: u32, elem_align: u32) -> String {
    let mut record = [0u8; element::RECORD_SIZE];
    let text = match size.checked_sub(element::RECORD_SIZE as u64) {
        Some(at) if at >= HEADER_SIZE as u64 && size <= file_len => {
            match file.read_exact_at(&mut record, at) {
                Ok(()) => element::record_text_or_unreadable(&record),
                Err(_) => "an unreadable element",
            }
        }
        _ => "an unreadable element",
    };
    element::describe(text, elem_size, elem_align)
}

/// True when process `pid` runs and started no later than `created` (Unix
/// seconds): a process started after the object cannot be its creator, so
/// a reused pid does not count.
fn started_before(pid: i32, created: i64) -> bool {
    let Some((_, start_ticks)) = crate::sys::proc_stat(pid) else {
        return false;
    };
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|b| b.trim().parse::<i64>().ok())
        })
    });
    let ticks = crate::sys::clock_ticks_per_second();
    match boot {
        Some(boot) => boot + (start_ticks / ticks) as i64 <= created + 1,
        None => true,
    }
}

/// The names of `/dev/shm` files any process has mapped or open now.
fn open_shm_files() -> Vec<String> {
    let mut names = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return names;
    };
    for p in procs.flatten() {
        let dir = p.path();
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            for line in maps.lines() {
                if let Some(pos) = line.find("/dev/shm/") {
                    let name = line[pos + 9..].trim_end_matches(" (deleted)");
                    names.push(name.to_string());
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    if let Some(name) = target.to_str().and_then(|t| t.strip_prefix("/dev/shm/")) {
                        names.push(name.trim_end_matches(" (deleted)").to_string());
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
