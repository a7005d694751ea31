//! Several hosts on one machine for the Redis tests: three network
//! namespaces, `server` linked to `a` and to `b` by veth pairs, made and
//! removed with iproute2's `ip` (root). Each test program names its own
//! with a prefix, `PREFIX-<pid>-<n>-<role>`.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `ip ARGS`, or says why it failed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Three hosts: `server` holds Redis and is linked to `a` (10.91.1.0/24)
/// and to `b` (10.91.2.0/24), each host's end of its link named `eth0`.
/// The namespaces, and with them the veths, are deleted when dropped.
pub struct Hosts {
    pub server: String,
    pub a: String,
    pub b: String,
}

impl Hosts {
    /// Builds them, or returns `None` when the test is to be skipped (no
    /// `ip`, or not allowed to make namespaces; never under CI).
    pub fn build(prefix: &str) -> Option<Hosts> {
        remove_stale(prefix);
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = |role: &str| format!("{prefix}-{}-{n}-{role}", std::process::id());
        let hosts = Hosts {
            server: name("server"),
            a: name("a"),
            b: name("b"),
        };
        // The first namespace is the probe: it needs `ip` and the right.
        if !crate::common::require_peer(
            "`ip netns` (iproute2, run as root)",
            Command::new("ip").args(["netns", "add", &hosts.server]),
        ) {
            return None;
        }
        if let Err(why) = hosts.link() {
            panic!("could not build the hosts: {why}");
        }
        Some(hosts)
    }

    fn link(&self) -> Result<(), String> {
        let s = self.server.as_str();
        ip(&["netns", "add", &self.a])?;
        ip(&["netns", "add", &self.b])?;
        for ns in [s, &self.a, &self.b] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (ns, end, net) in [(&self.a, "to-a", "10.91.1"), (&self.b, "to-b", "10.91.2")] {
            ip(&[
                "-n", s, "link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["-n", s, "addr", "add", &format!("{net}.1/24"), "dev", end])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", s, "link", "set", end, "up"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.server, &self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Deletes the namespaces named `prefix-…` left by a run that was aborted (its
/// watchdog) before its `Hosts` was dropped: those whose pid is gone.
fn remove_stale(prefix: &str) {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{prefix}-")) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}
