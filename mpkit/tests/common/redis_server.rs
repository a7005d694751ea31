//! A real Redis server for one test (`mpkit_bench::redis_server`: a free
//! loopback port, a temporary directory, killed when dropped), and whether
//! one can run here.
#![allow(dead_code)]

pub use mpkit_bench::redis_server::RedisServer;

/// Whether `redis-server` can run here: skip (false) on a developer's
/// machine without it, fail under CI (`common::require_peer`'s policy).
pub fn available() -> bool {
    crate::common::require_peer(
        "redis-server (run scripts/redis-server to install it)",
        std::process::Command::new("redis-server").arg("--version"),
    )
}
