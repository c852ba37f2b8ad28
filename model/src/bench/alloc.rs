//! The lock-free chunk allocator against the kernel's ([`Baseline`]) on the
//! same workloads, over 2 MiB packs of 64-byte chunks.
//!
//! Cases (each run on both allocators with the same seeded inputs; the timed
//! part excludes input generation and setup):
//!
//! - `mixed`: program sizes from a JIT-like distribution (mostly 64 B–1 KiB, a
//!   tail to 16 KiB); the threads first fill one pack to about half, then each
//!   repeatedly frees one of its programs at random and loads a new one, so
//!   occupancy stays near 50 %. At 1 and 2 threads.
//! - `near-full`: one pack filled with programs of that distribution and then
//!   thinned to 95 % full; each op loads a program the size of a random freed
//!   one (so it must find a hole big enough) and unloads it again, so the pack
//!   stays 95 % full.
//! - `packing`: 10,000 programs loaded in turn, each unloaded after a random
//!   lifetime (some live to the end); the peak number of live packs each
//!   allocator needed.
//!
//! An op is one alloc or one free; `ratio` is lock-free ops/s over baseline
//! ops/s. Each case runs [`AllocOptions::repeats`] times per side, alternating,
//! and keeps each side's best.

use std::fmt;
use std::sync::{Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::baseline::{BaseChunk, Baseline};
use crate::harness::rng::Rng;
use crate::kernel::optimised::pack::{Chunk, PackAlloc, PackSource};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// `BPF_PROG_PACK_SIZE` on x86-64 with huge pages.
pub const PACK_SIZE: u64 = 2 * MIB;
/// Slots of the lock-free allocator (the kernel's list is unbounded; no case
/// needs more).
pub const MAX_PACKS: usize = 64;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocOptions {
    pub seed: u64,
    /// Thread counts for `mixed`.
    pub mixed_threads: Vec<usize>,
    /// Free-and-load rounds per thread in `mixed` (2 ops each).
    pub mixed_rounds: usize,
    /// Load-and-unload rounds in `near-full` (2 ops each).
    pub near_full_rounds: usize,
    /// Programs in `packing`.
    pub packing_programs: usize,
    /// Runs per case and side; the best counts.
    pub repeats: usize,
}

impl Default for AllocOptions {
    /// About 10–20 s for the whole report on a 2-core machine.
    fn default() -> Self {
        AllocOptions {
            seed: 0x5eed_a110c,
            mixed_threads: vec![1, 2],
            mixed_rounds: 200_000,
            near_full_rounds: 20_000,
            packing_programs: 10_000,
            repeats: 3,
        }
    }
}

impl AllocOptions {
    /// A much smaller run (tests, criterion).
    pub fn quick() -> Self {
        AllocOptions {
            mixed_rounds: 2_000,
            near_full_rounds: 200,
            packing_programs: 1_000,
            repeats: 1,
            ..Self::default()
        }
    }
}

/// One case's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub name: &'static str,
    pub threads: usize,
    pub lockfree_ops_per_sec: f64,
    pub baseline_ops_per_sec: f64,
    /// Peak live packs (lock-free, baseline), for `packing`.
    pub packs: Option<(usize, usize)>,
}

impl Case {
    pub fn ratio(&self) -> f64 {
        self.lockfree_ops_per_sec / self.baseline_ops_per_sec
    }
}

/// All cases of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocReport {
    pub pack_size: u64,
    pub cases: Vec<Case>,
}

impl AllocReport {
    /// One JSON object, on one line (rates to 0.1 op/s, the ratio to 0.001).
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct CaseJson {
            name: &'static str,
            threads: usize,
            lockfree_ops_per_sec: f64,
            baseline_ops_per_sec: f64,
            ratio: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            lockfree_packs: Option<usize>,
            #[serde(skip_serializing_if = "Option::is_none")]
            baseline_packs: Option<usize>,
        }
        #[derive(serde::Serialize)]
        struct ReportJson {
            bench: &'static str,
            pack_size: u64,
            chunk_size: u64,
            cases: Vec<CaseJson>,
        }
        let cases = (self.cases.iter())
            .map(|c| CaseJson {
                name: c.name,
                threads: c.threads,
                lockfree_ops_per_sec: round(c.lockfree_ops_per_sec, 1),
                baseline_ops_per_sec: round(c.baseline_ops_per_sec, 1),
                ratio: round(c.ratio(), 3),
                lockfree_packs: c.packs.map(|p| p.0),
                baseline_packs: c.packs.map(|p| p.1),
            })
            .collect();
        let doc = ReportJson {
            bench: "alloc",
            pack_size: self.pack_size,
            chunk_size: 64,
            cases,
        };
        serde_json::to_string(&doc).expect("a report serialises")
    }
}

/// `x` to `digits` decimals, for JSON figures (non-finite values become
/// `null` when serialised).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

impl fmt::Display for AllocReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.pack_size as f64 / MIB as f64;
        writeln!(
            f,
            "chunk allocator, {mib} MiB packs, 64-byte chunks (ops = allocs + frees)"
        )?;
        writeln!(
            f,
            "{:<10} {:>7} {:>16} {:>16} {:>7}  peak packs",
            "case", "threads", "lock-free ops/s", "baseline ops/s", "ratio"
        )?;
        for c in &self.cases {
            let packs = c
                .packs
                .map_or(String::new(), |(lf, b)| format!("{lf} vs {b}"));
            writeln!(
                f,
                "{:<10} {:>7} {:>16.0} {:>16.0} {:>6.2}x  {}",
                c.name,
                c.threads,
                c.lockfree_ops_per_sec,
                c.baseline_ops_per_sec,
                c.ratio(),
                packs
            )?;
        }
        Ok(())
    }
}

/// Runs every case.
pub fn run(opts: &AllocOptions) -> AllocReport {
    let mut cases = Vec::new();
    for &threads in &opts.mixed_threads {
        cases.push(case("mixed", threads, opts, |side| {
            mixed(side, threads, opts.mixed_rounds, opts.seed)
        }));
    }
    cases.push(case("near-full", 1, opts, |side| {
        near_full(side, opts.near_full_rounds, opts.seed)
    }));
    cases.push(case("packing", 1, opts, |side| {
        packing(side, opts.packing_programs, opts.seed)
    }));
    AllocReport {
        pack_size: PACK_SIZE,
        cases,
    }
}

fn case(
    name: &'static str,
    threads: usize,
    opts: &AllocOptions,
    f: impl Fn(Side) -> Measure,
) -> Case {
    let (mut lf, mut base) = (Measure::default(), Measure::default());
    for _ in 0..opts.repeats.max(1) {
        lf = lf.best(f(Side::LockFree));
        base = base.best(f(Side::Baseline));
    }
    Case {
        name,
        threads,
        lockfree_ops_per_sec: lf.ops_per_sec(),
        baseline_ops_per_sec: base.ops_per_sec(),
        packs: (name == "packing").then_some((lf.peak_packs, base.peak_packs)),
    }
}

/// Which allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    LockFree,
    Baseline,
}

/// One timed run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measure {
    /// Allocs and frees in the timed part.
    pub ops: u64,
    pub elapsed: Duration,
    /// The most packs live at once over the whole run.
    pub peak_packs: usize,
}

impl Measure {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn best(self, other: Measure) -> Measure {
        if self.ops == 0 || other.ops_per_sec() > self.ops_per_sec() {
            other
        } else {
            self
        }
    }
}

// ---- the two allocators behind one interface --------------------------------

/// What the workloads need of an allocator.
trait Alloc: Sync {
    type Handle: Copy + Send;
    fn alloc(&self, size: u64) -> Option<Self::Handle>;
    fn free(&self, h: Self::Handle);
    fn peak_packs(&self) -> usize;
    fn live_packs(&self) -> usize;
}

/// Backing for the lock-free allocator's packs: address ranges, freed ones
/// reused first. Only touched on the slow path.
#[derive(Default)]
struct Ranges {
    next: u64,
    freed: Vec<u64>,
    live: usize,
    peak: usize,
}

struct RangesSrc<'a>(&'a Mutex<Ranges>);

impl PackSource for RangesSrc<'_> {
    fn alloc_pack(&mut self, size: u64) -> Option<u64> {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let base = r.freed.pop().unwrap_or_else(|| {
            r.next += 2 * size;
            0x1000_0000_0000 + r.next - 2 * size
        });
        r.live += 1;
        r.peak = r.peak.max(r.live);
        Some(base)
    }

    fn free_pack(&mut self, base: u64, _size: u64) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.live -= 1;
        r.freed.push(base);
    }
}

struct LockFree {
    pa: PackAlloc,
    ranges: Mutex<Ranges>,
}

impl LockFree {
    fn new() -> Self {
        LockFree {
            pa: PackAlloc::new(PACK_SIZE, MAX_PACKS),
            ranges: Mutex::default(),
        }
    }
}

impl Alloc for LockFree {
    type Handle = Chunk;
    fn alloc(&self, size: u64) -> Option<Chunk> {
        self.pa.alloc(size, &mut RangesSrc(&self.ranges))
    }
    fn free(&self, h: Chunk) {
        self.pa.free(h, &mut RangesSrc(&self.ranges));
    }
    fn peak_packs(&self) -> usize {
        self.ranges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .peak
    }
    fn live_packs(&self) -> usize {
        self.pa.live_packs()
    }
}

impl Alloc for Baseline {
    type Handle = BaseChunk;
    fn alloc(&self, size: u64) -> Option<BaseChunk> {
        Baseline::alloc(self, size)
    }
    fn free(&self, h: BaseChunk) {
        Baseline::free(self, h)
    }
    fn peak_packs(&self) -> usize {
        Baseline::peak_packs(self)
    }
    fn live_packs(&self) -> usize {
        Baseline::live_packs(self)
    }
}

fn on_side(side: Side, f: impl FnOnce(&dyn Workload) -> Measure) -> Measure {
    match side {
        Side::LockFree => f(&With(LockFree::new())),
        Side::Baseline => f(&With(Baseline::new(PACK_SIZE))),
    }
}

/// Object-safe access to the generic workloads.
trait Workload {
    fn mixed(&self, threads: usize, rounds: usize, seed: u64) -> Measure;
    fn near_full(&self, rounds: usize, seed: u64) -> Measure;
    fn packing(&self, programs: usize, seed: u64) -> Measure;
}

struct With<A>(A);

impl<A: Alloc> Workload for With<A> {
    fn mixed(&self, threads: usize, rounds: usize, seed: u64) -> Measure {
        mixed_on(&self.0, threads, rounds, seed)
    }
    fn near_full(&self, rounds: usize, seed: u64) -> Measure {
        near_full_on(&self.0, rounds, seed)
    }
    fn packing(&self, programs: usize, seed: u64) -> Measure {
        packing_on(&self.0, programs, seed)
    }
}

// ---- workloads ------------------------------------------------------------------

/// A JIT image size: mostly 64 B–1 KiB, some to 4 KiB, a tail to 16 KiB.
pub fn jit_size(rng: &mut Rng) -> u64 {
    let (lo, hi) = match rng.below(100) {
        0..55 => (64, 512),
        55..85 => (513, KIB),
        85..97 => (KIB + 1, 4 * KIB),
        _ => (4 * KIB + 1, 16 * KIB),
    };
    lo + rng.below(hi - lo + 1)
}

/// `mixed` on one allocator: see the module doc.
pub fn mixed(side: Side, threads: usize, rounds: usize, seed: u64) -> Measure {
    on_side(side, |w| w.mixed(threads, rounds, seed))
}

/// `near-full` on one allocator: see the module doc.
pub fn near_full(side: Side, rounds: usize, seed: u64) -> Measure {
    on_side(side, |w| w.near_full(rounds, seed))
}

/// `packing` on one allocator: see the module doc.
pub fn packing(side: Side, programs: usize, seed: u64) -> Measure {
    on_side(side, |w| w.packing(programs, seed))
}

/// One `mixed` thread's inputs: the sizes of its fill, then (victim, size)
/// per round.
type ThreadPlan = (Vec<u64>, Vec<(u64, u64)>);

fn mixed_on<A: Alloc>(a: &A, threads: usize, rounds: usize, seed: u64) -> Measure {
    let threads = threads.max(1);
    let share = PACK_SIZE / 2 / threads as u64;
    // Inputs per thread: the fill, then (victim, size) per round.
    let inputs: Vec<ThreadPlan> = (0..threads)
        .map(|t| {
            let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut fill = Vec::new();
            let mut bytes = 0;
            while bytes < share {
                let s = jit_size(&mut rng);
                bytes += s;
                fill.push(s);
            }
            let rounds = (0..rounds).map(|_| (rng.next_u64(), jit_size(&mut rng)));
            (fill, rounds.collect())
        })
        .collect();
    // Each worker times its own rounds, from the barrier that releases all
    // of them to its last op; the case takes the earliest start to the latest
    // end. (A timer on the main thread would miss rounds run while it waited
    // to be scheduled after the barrier.)
    let barrier = Barrier::new(threads);
    let runs: Vec<(u64, Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (inputs.iter())
            .map(|(fill, rounds)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut held: Vec<A::Handle> = fill
                        .iter()
                        .map(|&s| a.alloc(s).expect("no memory"))
                        .collect();
                    barrier.wait();
                    let start = Instant::now();
                    let mut ops = 0;
                    for &(victim, size) in rounds {
                        let i = (victim % held.len() as u64) as usize;
                        a.free(held[i]);
                        held[i] = a.alloc(size).expect("no memory");
                        ops += 2;
                    }
                    let end = Instant::now();
                    barrier.wait();
                    for h in held {
                        a.free(h);
                    }
                    (ops, start, end)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let ops = runs.iter().map(|r| r.0).sum();
    let start = runs.iter().map(|r| r.1).min().expect("a thread");
    let end = runs.iter().map(|r| r.2).max().expect("a thread");
    let elapsed = end - start;
    assert_eq!(a.live_packs(), 0);
    Measure {
        ops,
        elapsed,
        peak_packs: a.peak_packs(),
    }
}

fn near_full_on<A: Alloc>(a: &A, rounds: usize, seed: u64) -> Measure {
    let mut rng = Rng::new(seed ^ 0x0ea7_f011);
    // Fill one pack: programs until one does not fit, then small ones to the
    // brim.
    let mut held: Vec<(A::Handle, u64)> = Vec::new();
    let mut used = 0;
    let chunks = |s: u64| s.div_ceil(64);
    let total = PACK_SIZE / 64;
    loop {
        let s = jit_size(&mut rng);
        let s = if used + chunks(s) <= total {
            s
        } else if used < total {
            (total - used) * 64
        } else {
            break;
        };
        held.push((a.alloc(s).expect("no memory"), s));
        used += chunks(s);
    }
    assert_eq!(a.live_packs(), 1);
    // Thin to 95 %: free programs at random.
    let mut holes = Vec::new();
    while used * 100 > total * 95 {
        let i = rng.below(held.len() as u64) as usize;
        let (h, s) = held.swap_remove(i);
        a.free(h);
        used -= chunks(s);
        holes.push(s);
    }
    let sizes: Vec<u64> = (0..rounds)
        .map(|_| holes[rng.below(holes.len() as u64) as usize])
        .collect();
    let start = Instant::now();
    for &s in &sizes {
        let h = a.alloc(s).expect("no memory");
        a.free(h);
    }
    let elapsed = start.elapsed();
    assert_eq!(a.live_packs(), 1, "a hole always fits");
    for (h, _) in held {
        a.free(h);
    }
    Measure {
        ops: 2 * rounds as u64,
        elapsed,
        peak_packs: a.peak_packs(),
    }
}

fn packing_on<A: Alloc>(a: &A, programs: usize, seed: u64) -> Measure {
    let mut rng = Rng::new(seed ^ 0x09ac_41e6);
    // (load step, size, unload step); a fifth live to the end.
    let plan: Vec<(u64, usize)> = (0..programs)
        .map(|i| {
            let life = if rng.below(5) == 0 {
                programs
            } else {
                1 + rng.below(programs as u64 * 4 / 5) as usize
            };
            (jit_size(&mut rng), (i + life).min(programs))
        })
        .collect();
    let mut unload_at: Vec<Vec<usize>> = vec![Vec::new(); programs + 1];
    for (i, &(_, end)) in plan.iter().enumerate() {
        unload_at[end].push(i);
    }
    let mut live: Vec<Option<A::Handle>> = vec![None; programs];
    let mut ops = 0;
    let start = Instant::now();
    for (step, &(size, _)) in plan.iter().enumerate() {
        live[step] = Some(a.alloc(size).expect("no memory"));
        ops += 1;
        for &j in &unload_at[step] {
            a.free(live[j].take().expect("unloaded twice"));
            ops += 1;
        }
    }
    for &j in &unload_at[programs] {
        a.free(live[j].take().expect("unloaded twice"));
        ops += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(a.live_packs(), 0);
    Measure {
        ops,
        elapsed,
        peak_packs: a.peak_packs(),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn quick_report_has_every_case() {
        let opts = AllocOptions {
            mixed_rounds: 500,
            near_full_rounds: 50,
            packing_programs: 300,
            ..AllocOptions::quick()
        };
        let r = run(&opts);
        let names: Vec<(&str, usize)> = r.cases.iter().map(|c| (c.name, c.threads)).collect();
        assert_eq!(
            names,
            [("mixed", 1), ("mixed", 2), ("near-full", 1), ("packing", 1)]
        );
        let json = r.to_json();
        assert!(json.starts_with("{\"bench\":\"alloc\""), "{json}");
        assert!(json.contains("\"lockfree_packs\":"), "{json}");
        assert_eq!(json.matches("\"name\"").count(), 4);
        assert!(!json.contains('\n'));
        let table = r.to_string();
        assert!(table.contains("near-full"), "{table}");
        for c in &r.cases {
            assert!(c.lockfree_ops_per_sec > 0.0 && c.baseline_ops_per_sec > 0.0);
        }
    }

    #[test]
    fn single_threaded_packing_is_the_same() {
        // One thread: both are first fit over the same packs, so they need the
        // same packs (the slot order differs from the list order only after a
        // release, which first fit cannot tell apart here).
        let lf = packing(Side::LockFree, 2_000, 1);
        let base = packing(Side::Baseline, 2_000, 1);
        assert_eq!(lf.ops, base.ops);
        assert!(lf.peak_packs >= 1);
        assert!(
            lf.peak_packs <= base.peak_packs + base.peak_packs / 20,
            "{lf:?} {base:?}"
        );
    }
}
