//! Where the processes run: `--cpus`, and moving processes between CPUs.

use serde::Serialize;

use super::Result;

/// The CPU of this process (and of the Python helpers' parent processes)
/// and the CPU of every child.
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct Placement {
    pub(super) parent_cpu: usize,
    pub(super) child_cpu: usize,
}

/// The placement `--cpus` asks for (`None`: the scheduler decides).
pub(super) fn placement(spec: Option<&str>, allowed: &[usize]) -> Result<Option<Placement>> {
    let (parent_cpu, child_cpu) = match spec.map(str::trim) {
        Some("any") => return Ok(None),
        None => match allowed {
            [p, c, ..] => (*p, *c),
            _ => return Ok(None),
        },
        Some(spec) => {
            let parsed = spec
                .split_once(',')
                .and_then(|(p, c)| Some((p.trim().parse().ok()?, c.trim().parse().ok()?)));
            parsed.ok_or_else(|| {
                format!("--cpus {spec:?}: expected two CPU numbers, like 0,1, or any")
            })?
        }
    };
    for cpu in [parent_cpu, child_cpu] {
        if !allowed.contains(&cpu) {
            return Err(format!(
                "--cpus: this process may not run on CPU {cpu} (it may use {allowed:?})"
            ));
        }
    }
    Ok(Some(Placement {
        parent_cpu,
        child_cpu,
    }))
}

/// The size of the kernel's CPU mask as libc declares it.
pub(super) fn cpu_set_size() -> usize {
    std::mem::size_of::<libc::cpu_set_t>()
}

/// The CPUs this thread may run on.
pub(super) fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain integers; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size and pointer describe `set`, which the call fills.
    if unsafe { libc::sched_getaffinity(0, cpu_set_size(), &mut set) } != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Lets process `pid` (0: this thread) run on `cpus` only.
pub(super) fn set_affinity(pid: i32, cpus: &[usize]) -> Result {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("no CPU {cpu}"));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the size and pointer describe `set`.
    if unsafe { libc::sched_setaffinity(pid, cpu_set_size(), &set) } != 0 {
        return Err(format!(
            "move process {pid} to CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
