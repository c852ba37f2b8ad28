//! Criterion benchmarks of the lock-free chunk allocator against the
//! kernel-style baseline (one mutex, first-fit `bitmap_find_next_zero_area`),
//! on the workloads of `packmodel bench alloc` (`packmodel::bench::alloc`):
//!
//! ```text
//! cargo bench -p packmodel --bench alloc
//! ```
//!
//! Each iteration is one whole workload run (setup excluded from the time);
//! throughput is in allocator ops (allocs + frees). For pack counts and a
//! single-table summary use `packmodel bench alloc [--json]`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use packmodel::bench::alloc::{Measure, Side, mixed, near_full, packing};

const SIDES: [(Side, &str); 2] = [(Side::LockFree, "lock-free"), (Side::Baseline, "baseline")];
const MIXED_ROUNDS: usize = 20_000;
const NEAR_FULL_ROUNDS: usize = 2_000;
const PACKING_PROGRAMS: usize = 10_000;

/// Times `iters` runs of a workload, each with its own seed.
fn timed(iters: u64, run: impl Fn(u64) -> Measure) -> std::time::Duration {
    (0..iters).map(|i| run(i + 1).elapsed).sum()
}

fn mixed_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("mixed");
    for threads in [1, 2] {
        g.throughput(Throughput::Elements((2 * MIXED_ROUNDS * threads) as u64));
        for (side, name) in SIDES {
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &t| {
                b.iter_custom(|iters| timed(iters, |seed| mixed(side, t, MIXED_ROUNDS, seed)))
            });
        }
    }
    g.finish();
}

fn near_full_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("near-full");
    g.throughput(Throughput::Elements(2 * NEAR_FULL_ROUNDS as u64));
    for (side, name) in SIDES {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| timed(iters, |seed| near_full(side, NEAR_FULL_ROUNDS, seed)))
        });
    }
    g.finish();
}

fn packing_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("packing");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * PACKING_PROGRAMS as u64));
    for (side, name) in SIDES {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| timed(iters, |seed| packing(side, PACKING_PROGRAMS, seed)))
        });
    }
    g.finish();
}

criterion_group!(benches, mixed_bench, near_full_bench, packing_bench);
criterion_main!(benches);
