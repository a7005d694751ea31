//! Who created a named [`SharedMemory`](super::SharedMemory) block, and
//! whether it was kept on purpose, recorded out of band: a raw block has no
//! header (every byte is the user's, and Python maps the same bytes), so
//! the record is an extended attribute of its `/dev/shm` file.
//!
//! | attribute | value (ASCII) |
//! |---|---|
//! | `user.mpkit.creator` | `PID START KEPT`: the creator's pid, its start time (clock ticks after boot, field 22 of `/proc/PID/stat`; 0 if unknown), `1` if kept (`keep()`), else `0` |
//!
//! The start time tells the creator from a later process that reuses its
//! pid. Anyone who can write the file can write the attribute, so it is
//! parsed strictly, and a value that does not parse counts as no record.
//!
//! tmpfs stores `user.` attributes from Linux 6.6 on. Where the kernel
//! refuses them (`ENOTSUP`), generated names carry the creator's pid
//! instead (`mpkit_PID_…`, see [`generated_name`]): such a block is judged
//! by that pid (as typed objects are, by their header's), but `keep()`
//! cannot be recorded. Blocks with names of the user's own and no record
//! are not listed at all.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;

/// The attribute's name.
const ATTR: &str = "user.mpkit.creator";

/// The longest value [`Mark::parse`] reads (`i32`, `u64`, a flag, spaces).
const MAX_LEN: usize = 40;

/// A block's creator record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The creating process.
    pub pid: i32,
    /// Its start time in clock ticks after boot (0: unknown).
    pub start: u64,
    /// Kept on purpose: not stale when its creator is gone.
    pub kept: bool,
}

impl Mark {
    /// This process, as a block's creator.
    pub fn this_process(kept: bool) -> Mark {
        Mark {
            pid: sys::getpid(),
            start: sys::self_start_time().unwrap_or(0),
            kept,
        }
    }

    /// Records the mark on the block's file. Fails with `ENOTSUP` where the
    /// file system stores no user attributes.
    pub fn write(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let value = format!("{} {} {}", self.pid, self.start, u8::from(self.kept));
        sys::set_xattr(fd, ATTR, value.as_bytes())
    }

    /// The file's mark: `None` when it has none (or one that does not
    /// parse, or the file system has no user attributes).
    pub fn read(fd: BorrowedFd<'_>) -> Option<Mark> {
        let mut buf = [0u8; MAX_LEN];
        let len = sys::get_xattr(fd, ATTR, &mut buf).ok()?;
        Mark::parse(buf.get(..len)?)
    }

    /// Parses `PID START KEPT`, strictly.
    fn parse(value: &[u8]) -> Option<Mark> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split(' ');
        let number = |f: Option<&str>| -> Option<u64> {
            let f = f?;
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            f.parse().ok()
        };
        let pid = i32::try_from(number(fields.next())?).ok()?;
        let start = number(fields.next())?;
        let kept = match fields.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        if pid <= 0 || fields.next().is_some() {
            return None;
        }
        Some(Mark { pid, start, kept })
    }

    /// Whether the creator still runs: its pid exists, is not a zombie,
    /// and started when the creator did (a reused pid does not count).
    pub fn creator_alive(&self) -> bool {
        match sys::proc_stat(self.pid) {
            Some((state, start)) => state != 'Z' && (self.start == 0 || start == self.start),
            None => false,
        }
    }
}

/// A fresh block name carrying this process's pid: `mpkit_PID_` and 16 hex
/// digits.
pub(crate) fn generated_name() -> String {
    let random = crate::base::segment::generated_name();
    let digits = random.strip_prefix("mpkit_").unwrap_or(&random);
    format!("mpkit_{}_{digits}", sys::getpid())
}

/// The creator's pid of a block named by [`generated_name`].
pub(crate) fn pid_in_generated_name(name: &str) -> Option<i32> {
    let (pid, digits) = name.strip_prefix("mpkit_")?.split_once('_')?;
    let hex = digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_hexdigit());
    let decimal = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (hex && decimal).then(|| pid.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_parse_strictly() {
        let m = Mark {
            pid: 42,
            start: 7,
            kept: true,
        };
        assert_eq!(Mark::parse(b"42 7 1"), Some(m));
        for bad in [
            &b""[..],
            b"42 7",
            b"42 7 2",
            b"42 7 1 9",
            b"-1 7 0",
            b"0 7 0",
            b"+4 7 0",
            b"42  7 0",
            b"99999999999 7 0",
            b"\xff 7 0",
        ] {
            assert_eq!(Mark::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn generated_names_carry_the_pid() {
        let name = generated_name();
        assert_eq!(pid_in_generated_name(&name), Some(sys::getpid()));
        assert_eq!(pid_in_generated_name("mpkit_0123456789abcdef"), None);
        assert_eq!(pid_in_generated_name("mpkit_12_xyz"), None);
        assert_eq!(pid_in_generated_name("jobs"), None);
    }
}
