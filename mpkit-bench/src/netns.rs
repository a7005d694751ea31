//! Network namespaces made with `ip netns add NAME` (bound at
//! `/run/netns/NAME`): [`enter`] moves the calling thread into one, so the
//! sockets it opens afterwards live there. With veth pairs between
//! namespaces, one machine holds several hosts that can be cut off from
//! each other (`ip link set … down`). Needs CAP_SYS_ADMIN.

use std::io;
use std::os::fd::AsFd;

/// Moves the calling thread (only it: other threads keep theirs) into the
/// network namespace `name`. A process that calls it on its only thread,
/// before it opens sockets, is wholly on that namespace's network.
pub fn enter(name: &str) -> io::Result<()> {
    let ns = std::fs::File::open(format!("/run/netns/{name}"))?;
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(())
}
