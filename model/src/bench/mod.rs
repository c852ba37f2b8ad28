//! Measurements: of the lock-free chunk allocator
//! ([`crate::kernel::optimised::pack`]) and of the harness itself (its
//! concurrency checker, an oracle, is [`crate::harness::concurrent`]):
//!
//! - [`baseline`]: the kernel's `bpf_prog_pack` allocator as it is — one mutex
//!   around plain bitmaps and a first-fit linear search — written for
//!   comparison;
//! - [`alloc`]: the workloads that compare the two (`packmodel bench alloc`,
//!   the criterion benchmarks in `benches/alloc.rs`);
//! - [`frag`]: direct-map fragmentation, reference vs 4 KiB and 2 MiB packs
//!   (`packmodel frag`);
//! - [`harness`]: executions per second of the differential harness
//!   (`packmodel bench harness`).

pub mod alloc;
pub mod baseline;
pub mod frag;
pub mod harness;
