//! A `/dev/shm` without room: creating a named object there is an error
//! for its creator (`ENOSPC`), not a `SIGBUS` in whichever process first
//! touches a page that tmpfs cannot back.
//!
//! The test needs a small tmpfs: it runs its body again in a private mount
//! namespace (`unshare -m`, root or `CAP_SYS_ADMIN`) where a 1 MiB tmpfs
//! is mounted over `/dev/shm`, so nothing outside that process sees it.

mod common;

use std::process::Command;

use mpkit::queue::ByteQueue;
use mpkit::shm::{SharedMemory, ShmError, Value};

/// Set in the environment of the body's run inside the namespace.
const INSIDE: &str = "MPKIT_TEST_SMALL_DEV_SHM";
const BODY: &str = "inside_a_1_mib_dev_shm";

#[test]
fn a_full_dev_shm_is_enospc_at_creation() {
    let _w = common::watchdog(60);
    if !common::require_peer(
        "a private mount namespace with its own tmpfs (unshare -m, as root)",
        Command::new("unshare").args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs /dev/shm",
        ]),
    ) {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m tmpfs /dev/shm && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--exact",
            BODY,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    // It ran (a filter that matched nothing would pass too).
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    assert!(stdout.contains("full /dev/shm refused"), "{stdout}");
}

/// The body, run by the test above in its namespace (ignored otherwise:
/// outside it, `/dev/shm` is the machine's).
#[test]
#[ignore = "run by a_full_dev_shm_is_enospc_at_creation inside a private 1 MiB /dev/shm"]
fn inside_a_1_mib_dev_shm() {
    if std::env::var_os(INSIDE).is_none() {
        return;
    }
    let _w = common::watchdog(30);
    let no_room = |e: ShmError| match e {
        ShmError::Io(io) => {
            assert_eq!(io.kind(), std::io::ErrorKind::StorageFull, "{io}");
            assert_eq!(io.raw_os_error(), Some(libc::ENOSPC));
        }
        other => panic!("{other:?}"),
    };
    let fits = SharedMemory::create("fits", 512 << 10).unwrap();
    // Every page of it is backed already: writing its last byte cannot fault.
    fits.write((512 << 10) - 1, &[1]).unwrap();
    no_room(SharedMemory::create("too_big", 768 << 10).unwrap_err());
    assert!(
        !std::path::Path::new("/dev/shm/too_big").exists(),
        "a refused object leaves no file behind"
    );
    no_room(
        ByteQueue::create("queue", 0, 1 << 20)
            .map(drop)
            .unwrap_err(),
    );
    assert!(!std::path::Path::new("/dev/shm/queue").exists());
    // What fits still does.
    let v = Value::create("small", 1u64).unwrap();
    assert_eq!(v.get().unwrap(), 1);
    drop((fits, v));
    println!("full /dev/shm refused");
}
