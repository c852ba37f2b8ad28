//! packmodel: a deterministic model of the kernel's executable-memory allocator
//! for BPF programs (`bpf_prog_pack` on huge-page `vmalloc`) and the `struct page`,
//! page-table and direct-map machinery under it, with two implementations of one
//! kernel API that are compared op by op.
//!
//! Layers, each importing only those below it:
//! - [`machine`]: frames, `struct page`, buddy allocator, page tables, direct map,
//!   CPA, CPU — shared by both kernels;
//! - [`kernel`]: the kernel API ([`kernel::Kernel`]) and its implementations;
//! - [`harness`]: ops, traces, runs, oracles and reports;
//! - [`guest`]: a real kernel under QEMU as one more source of observations
//!   (ground truth, DESIGN §11);
//! - the `packmodel` binary and the fuzz targets are thin front ends.

pub mod bench;
pub mod guest;
pub mod harness;
pub mod kernel;
pub mod machine;
pub mod sync;
