//! What mpkit's benchmarks share: `mpkit bench` (in `mpkit-cli`) and the
//! criterion benchmarks (in `mpkit/benches`) measure against the same
//! baselines, so each baseline and each helper exists once, here.
//!
//! - [`ring`]: the spin-polled shared-memory ring, the hardware floor every
//!   queue and pipe is compared with;
//! - [`raw`]: raw OS mechanisms used directly (a `pipe2` pipe, a bare
//!   futex pair), and how a raw descriptor travels into a child;
//! - [`python`]: finding the Python interpreter (`MPKIT_BENCH_PYTHON`, the
//!   venv of `scripts/bench-setup`) and its optional modules, the scripts
//!   in `python/`, and running one;
//! - [`redis_server`]: a private `redis-server` on a free port (the Redis
//!   queue's tests, `mpkit tour`), also inside a network namespace
//!   ([`netns`]);
//! - `harness` (feature `criterion`): criterion's settings, CPU pinning
//!   from `MPKIT_BENCH_CPUS`, and the ratio table printed after criterion.
//!
//! Not published: it exists for this workspace's benchmarks only.

#[cfg(feature = "criterion")]
pub mod harness;
pub mod netns;
pub mod python;
pub mod raw;
pub mod redis_server;
pub mod ring;
