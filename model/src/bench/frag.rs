//! `packmodel frag`: the direct-map fragmentation that `bpf_prog_pack` exists
//! to avoid (kernel-facts §4), from the machine's mechanics alone.
//!
//! `set_memory_ro()`/`set_memory_x()` on a program's module memory also change
//! the direct-map alias of every backing frame (`cpa_process_alias`); a 4 KiB
//! change inside a 2 MiB direct-map leaf splits it (`split_large_page`), splits
//! are never merged back, and `VM_FLUSH_RESET_PERMS` on free touches every
//! backing page again. A per-program `module_alloc()` RO-protects fresh frames
//! on every load; a pack reuses its frames, and a 2 MiB pack on one order-9
//! block changes its alias as one 2 MiB leaf.
//!
//! One deterministic workload — BPF programs loaded and unloaded over time with
//! a JIT-like size distribution, interleaved with driver `vmalloc()`/`vfree()`
//! churn that scatters physical memory — runs on five configurations:
//!
//! - `reference`: one `module_alloc()` per program (before 5.18);
//! - `pack-4k`: the optimised kernel with `PAGE_SIZE` packs on PTEs (x86 in
//!   v5.18 final and v5.19, see [`Optimised::with_pack_size`]);
//! - `linux-6.1`: 2 MiB packs of order-0 pages on PTEs, as x86 6.1 ships
//!   them (the `linux-6.1` design; `frag --on linux` runs the same workload
//!   on the real 6.1);
//! - `pack-2m`: the optimised kernel with 2 MiB packs on PMD leaves;
//! - `execmem`: 2 MiB packs cut from the ROX cache of `mm/execmem.c`, with
//!   `set_memory_rox()` collapsing split PMDs (the `execmem` design).
//!
//! Nothing here is tuned per configuration: the same ops, the same machine
//! (128 MiB, one node, 2 MiB direct-map leaves), the kernels' own code.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::alloc::jit_size;
use crate::harness::op::{AreaId, Op, ProgId};
use crate::harness::rng::Rng;
use crate::harness::text::prog_text;
use crate::harness::trace::Trace;
use crate::kernel::optimised::Optimised;
use crate::kernel::reference::Reference;
use crate::kernel::{Area, HugeHint, Kernel, Prog, Quirks, RegionKind, VmallocFlags};
use crate::machine::consts::{PAGE_SIZE, PMD_SIZE};
use crate::machine::direct_map::DmapLeaf;
use crate::machine::{Design, MachineConfig};

/// The configurations, in report order.
pub const CONFIGS: [&str; 5] = ["reference", "pack-4k", "linux-6.1", "pack-2m", "execmem"];

/// The machine every configuration boots: 128 MiB unless `--mem` says
/// otherwise, one node, 2 MiB direct-map leaves.
pub const MACHINE: MachineConfig = MachineConfig {
    nodes: 1,
    mem_mib: 128,
    dmap_leaf: DmapLeaf::M2,
    design: crate::machine::Design::Pack2m,
};

/// [`MACHINE`] with `mem_mib` of memory.
pub fn machine(mem_mib: u32) -> MachineConfig {
    MachineConfig { mem_mib, ..MACHINE }
}

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragOptions {
    /// Programs loaded over the run.
    pub programs: usize,
    pub seed: u64,
    /// Points of the `DirectMap4k` series (for the plot).
    pub samples: usize,
    /// The machine's memory (MiB).
    pub mem_mib: u32,
}

impl Default for FragOptions {
    fn default() -> Self {
        FragOptions {
            programs: 10_000,
            seed: 1,
            samples: 200,
            mem_mib: MACHINE.mem_mib,
        }
    }
}

/// One configuration's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct FragResult {
    pub name: &'static str,
    /// `direct_map_level2_splits` at the end (after every program and driver
    /// buffer is freed) and the most seen at any step. Splits never merge, so
    /// the two agree: the point of the table.
    pub direct_map_level2_splits: u64,
    pub peak_direct_map_level2_splits: u64,
    /// `/proc/meminfo` `DirectMap4k` and `DirectMap2M` at the end, in kB.
    pub directmap_4k_kb: u64,
    pub directmap_2m_kb: u64,
    pub peak_directmap_4k_kb: u64,
    /// PTE tables that `set_memory_rox()` collapsed back into PMD leaves
    /// (41d88484c71c; only the `execmem` configuration collapses). All are
    /// in the module range: CPA collapses only its primary range, so the
    /// kernel's `direct_map_level2_collapses` stays 0.
    pub collapses: u64,
    /// CPA calls: `set_memory_*()` plus the per-page
    /// `set_direct_map_{invalid,default}_noflush()` of `VM_FLUSH_RESET_PERMS`.
    pub cpa_calls: u64,
    /// Executable backing (packs and per-program areas) per live program,
    /// averaged over every step with a live program.
    pub bytes_per_program: f64,
    /// Mean size of the programs loaded (bytes of JIT image).
    pub mean_program_bytes: f64,
    pub peak_live_programs: usize,
    /// Loads that failed (`-ENOMEM`): none expected.
    pub failed_loads: usize,
    /// (step, `DirectMap4k` in kB) at `samples` points, and at the end.
    pub series: Vec<(usize, u64)>,
    /// Each pack (or per-program area) made: the load that made it, and the
    /// 2 MiB physical blocks its pages lie in.
    pub pack_spans: Vec<(usize, u32)>,
}

/// One step of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Load program `id` of `len` bytes.
    Load {
        id: usize,
        len: u32,
        rand: u32,
    },
    Unload {
        id: usize,
    },
    /// A driver buffer `id` of `size` bytes (order-0 pages).
    Vmalloc {
        id: usize,
        size: u64,
    },
    Vfree {
        id: usize,
    },
}

/// The workload: programs with lifetimes (most short, a fifth kept long),
/// driver buffers from 4 KiB to 256 KiB kept around 24 MiB in total, and at
/// the end everything freed. `samples[i]` is the step index after which the
/// `i`-th series point is taken.
fn plan(opts: &FragOptions) -> (Vec<Step>, Vec<usize>) {
    let n = opts.programs;
    let mut rng = Rng::new(opts.seed ^ 0xf7a6_0000);
    let mut steps = Vec::new();
    let mut unload_at: Vec<Vec<usize>> = vec![Vec::new(); n + 1];
    let mut bufs: Vec<(usize, u64)> = Vec::new();
    let (mut next_buf, mut buf_bytes) = (0, 0);
    let mut marks = Vec::new();
    let every = (n / opts.samples.max(1)).max(1);
    for id in 0..n {
        // Driver churn first, so that programs land on scattered frames.
        for _ in 0..2 {
            if !bufs.is_empty() && (buf_bytes > 24 << 20 || rng.below(2) == 0) {
                let (bid, size) = bufs.swap_remove(rng.below(bufs.len() as u64) as usize);
                steps.push(Step::Vfree { id: bid });
                buf_bytes -= size;
            }
            if rng.below(3) != 0 {
                let size = PAGE_SIZE << rng.below(7);
                steps.push(Step::Vmalloc { id: next_buf, size });
                bufs.push((next_buf, size));
                next_buf += 1;
                buf_bytes += size;
            }
        }
        let life = if rng.below(5) == 0 {
            n
        } else {
            1 + rng.below(200) as usize
        };
        unload_at[(id + life).min(n)].push(id);
        steps.push(Step::Load {
            id,
            len: jit_size(&mut rng) as u32,
            rand: rng.next_u64() as u32,
        });
        steps.extend(unload_at[id].iter().map(|&id| Step::Unload { id }));
        if id % every == every - 1 {
            marks.push(steps.len());
        }
    }
    steps.extend(unload_at[n].iter().map(|&id| Step::Unload { id }));
    steps.extend(bufs.iter().map(|&(id, _)| Step::Vfree { id }));
    (steps, marks)
}

/// The workload as a trace, for a real kernel to run (`frag --on linux`):
/// the same ops in the same order, with `direct_map_stats()` before it, at
/// each point of the series and after it. Returns the trace and, for each
/// `direct_map_stats()`, the step count it follows (as [`FragResult::series`]
/// counts) and its op index.
pub fn workload_trace(opts: &FragOptions) -> (Trace, Vec<(usize, usize)>) {
    let (steps, marks) = plan(opts);
    let mut ops = vec![Op::DirectMapStats];
    let mut samples = vec![(0, 0)];
    let mut mark = marks.iter().peekable();
    for (i, s) in steps.iter().enumerate() {
        ops.push(match *s {
            Step::Load { len, rand, .. } => Op::ProgLoad {
                len,
                align: 1,
                rand,
                classic: false,
            },
            Step::Unload { id } => Op::ProgFree {
                prog: ProgId(id as u32),
            },
            Step::Vmalloc { size, .. } => Op::Vmalloc {
                size,
                flags: VmallocFlags::default(),
            },
            Step::Vfree { id } => Op::Vfree {
                area: AreaId(id as u32),
            },
        });
        if mark.peek() == Some(&&(i + 1)) {
            mark.next();
            samples.push((i + 1, ops.len()));
            ops.push(Op::DirectMapStats);
        }
    }
    samples.push((steps.len(), ops.len()));
    ops.push(Op::DirectMapStats);
    (Trace::new(Vec::new(), machine(opts.mem_mib), ops), samples)
}

/// The packs (and oversize images) the `linux-6.1` configuration makes over
/// the workload: for each, the program whose load made it (by load order) and
/// how many 2 MiB physical blocks its pages lie in — the direct-map leaves
/// its `set_memory_ro` splits at most. `frag --on linux` prints the guest's
/// beside them.
pub fn pack_spans(opts: &FragOptions) -> Vec<(usize, u32)> {
    frag(opts)
        .into_iter()
        .find(|r| r.name == "linux-6.1")
        .map(|r| r.pack_spans)
        .unwrap_or_default()
}

/// For a load that put program `p` in an executable region no earlier load
/// used: the 2 MiB physical blocks the region's pages lie in.
fn new_region_span(k: &dyn Kernel, p: Prog, seen: &mut BTreeSet<u64>) -> Option<u32> {
    let at = k.images()[p.0 as usize].image.header;
    let regions = k.regions();
    let r = regions
        .iter()
        .find(|r| r.start <= at && at < r.start + r.size)?;
    if !seen.insert(r.start) {
        return None;
    }
    let pgtables = &k.machine().pgtables;
    let blocks: BTreeSet<u64> = (0..r.size / PAGE_SIZE)
        .filter_map(|i| pgtables.vmalloc_to_pfn(r.start + i * PAGE_SIZE))
        .map(|pfn| pfn >> 9)
        .collect();
    Some(blocks.len() as u32)
}

/// A real kernel's run of the workload as a [`FragResult`] for the plot:
/// `series` of (step, `DirectMap4k` kB gained since the start), and the
/// level-2 splits it gained.
pub fn guest_result(series: Vec<(usize, u64)>, level2_splits: u64) -> FragResult {
    let last = series.last().map_or(0, |p| p.1);
    FragResult {
        name: "linux (guest)",
        direct_map_level2_splits: level2_splits,
        peak_direct_map_level2_splits: level2_splits,
        directmap_4k_kb: last,
        directmap_2m_kb: 0,
        peak_directmap_4k_kb: series.iter().map(|p| p.1).max().unwrap_or(0),
        collapses: 0,
        cpa_calls: 0,
        bytes_per_program: 0.0,
        mean_program_bytes: 0.0,
        peak_live_programs: 0,
        failed_loads: 0,
        series,
        pack_spans: Vec::new(),
    }
}

/// Boots configuration `name` (one of [`CONFIGS`]) on a machine of
/// `mem_mib`.
pub fn boot(name: &str, mem_mib: u32) -> Box<dyn Kernel> {
    let m = machine(mem_mib);
    match name {
        "reference" => Box::new(Reference::new(m)),
        "pack-4k" => Box::new(Optimised::with_pack_size(m, Quirks::NONE, PAGE_SIZE)),
        "linux-6.1" => Box::new(Optimised::new(
            MachineConfig {
                design: Design::Linux61,
                ..m
            },
            Quirks::NONE,
        )),
        "pack-2m" => Box::new(Optimised::with_pack_size(m, Quirks::NONE, PMD_SIZE)),
        "execmem" => Box::new(Optimised::new(
            MachineConfig {
                design: Design::Execmem,
                ..m
            },
            Quirks::NONE,
        )),
        _ => panic!("unknown frag configuration {name}"),
    }
}

/// Runs the workload on every configuration.
pub fn frag(opts: &FragOptions) -> Vec<FragResult> {
    let (steps, marks) = plan(opts);
    CONFIGS
        .iter()
        .map(|&name| {
            run_one(
                name,
                boot(name, opts.mem_mib),
                &steps,
                &marks,
                opts.programs,
            )
        })
        .collect()
}

fn run_one(
    name: &'static str,
    mut k: Box<dyn Kernel>,
    steps: &[Step],
    marks: &[usize],
    programs: usize,
) -> FragResult {
    let mut progs: Vec<Option<Prog>> = vec![None; programs];
    let mut bufs: Vec<Option<Area>> = Vec::new();
    let (mut live, mut peak_live, mut failed) = (0usize, 0usize, 0usize);
    let (mut backing_sum, mut live_sum, mut text_sum) = (0u128, 0u128, 0u128);
    let (mut peak_splits, mut peak_4k) = (0, 0);
    let mut series = vec![(0, k.machine().dmap.stats().directmap_4k_kb)];
    let (mut seen, mut pack_spans) = (BTreeSet::new(), Vec::new());
    let mut mark = marks.iter().peekable();
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Load { id, len, rand } => {
                text_sum += u128::from(len);
                match k.bpf_prog_load(&prog_text(ProgId(id as u32), len), 1, rand) {
                    Ok(p) => {
                        progs[id] = Some(p);
                        live += 1;
                        peak_live = peak_live.max(live);
                        if let Some(n) = new_region_span(k.as_ref(), p, &mut seen) {
                            pack_spans.push((id, n));
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
            Step::Unload { id } => {
                if let Some(p) = progs[id].take() {
                    k.bpf_prog_free(p);
                    live -= 1;
                }
            }
            Step::Vmalloc { id, size } => {
                if bufs.len() <= id {
                    bufs.resize(id + 1, None);
                }
                let flags = VmallocFlags {
                    huge: HugeHint::Default,
                    zero: false,
                    nofail: false,
                };
                bufs[id] = k.vmalloc(size, flags).ok();
            }
            Step::Vfree { id } => {
                if let Some(a) = bufs[id].take() {
                    k.vfree(a);
                }
            }
        }
        if matches!(step, Step::Load { .. } | Step::Unload { .. }) && live > 0 {
            backing_sum += u128::from(exec_backing(k.as_ref()));
            live_sum += live as u128;
        }
        let s = k.machine().dmap.stats();
        peak_splits = peak_splits.max(s.direct_map_level2_splits);
        peak_4k = peak_4k.max(s.directmap_4k_kb);
        if mark.peek() == Some(&&(i + 1)) {
            mark.next();
            series.push((i + 1, s.directmap_4k_kb));
        }
    }
    let m = k.machine();
    let s = m.dmap.stats();
    series.push((steps.len(), s.directmap_4k_kb));
    FragResult {
        name,
        direct_map_level2_splits: s.direct_map_level2_splits,
        peak_direct_map_level2_splits: peak_splits,
        directmap_4k_kb: s.directmap_4k_kb,
        directmap_2m_kb: s.directmap_2m_kb,
        peak_directmap_4k_kb: peak_4k,
        collapses: m.pgtables.pmd_collapses,
        cpa_calls: m.stats.set_memory_calls + m.stats.set_direct_map_calls,
        bytes_per_program: backing_sum as f64 / live_sum.max(1) as f64,
        mean_program_bytes: text_sum as f64 / programs.max(1) as f64,
        peak_live_programs: peak_live,
        failed_loads: failed,
        series,
        pack_spans,
    }
}

/// Bytes of executable backing: packs and per-program areas.
fn exec_backing(k: &dyn Kernel) -> u64 {
    k.regions()
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                RegionKind::Pack | RegionKind::ProgArea | RegionKind::RoxCache
            )
        })
        .map(|r| r.size)
        .sum()
}

/// The table.
pub fn render(opts: &FragOptions, results: &[FragResult]) -> String {
    let mut s = format!(
        "frag: {} programs (seed {}), {} MiB, 1 node, 2 MiB direct-map leaves\n",
        opts.programs, opts.seed, opts.mem_mib
    );
    let _ = writeln!(
        s,
        "{:<10} {:>7} {:>7} {:>9} {:>12} {:>12} {:>14} {:>10} {:>10} {:>9} {:>7}",
        "config",
        "splits",
        "peak",
        "collapses",
        "DirectMap4k",
        "DirectMap2M",
        "peak 4k (kB)",
        "CPA calls",
        "B/program",
        "peak live",
        "failed"
    );
    for r in results {
        let _ = writeln!(
            s,
            "{:<10} {:>7} {:>7} {:>9} {:>9} kB {:>9} kB {:>14} {:>10} {:>10.0} {:>9} {:>7}",
            r.name,
            r.direct_map_level2_splits,
            r.peak_direct_map_level2_splits,
            r.collapses,
            r.directmap_4k_kb,
            r.directmap_2m_kb,
            r.peak_directmap_4k_kb,
            r.cpa_calls,
            r.bytes_per_program,
            r.peak_live_programs,
            r.failed_loads
        );
    }
    if let Some(r) = results.first() {
        let _ = writeln!(s, "mean program size {:.0} B", r.mean_program_bytes);
    }
    s
}

/// One JSON object keyed by configuration name (after `programs` and `seed`).
pub fn to_json(opts: &FragOptions, results: &[FragResult]) -> String {
    use super::alloc::round;
    #[derive(serde::Serialize)]
    struct Config {
        direct_map_level2_splits: u64,
        peak_direct_map_level2_splits: u64,
        directmap_4k_kb: u64,
        directmap_2m_kb: u64,
        peak_directmap_4k_kb: u64,
        collapses: u64,
        cpa_calls: u64,
        bytes_per_program: f64,
        mean_program_bytes: f64,
        peak_live_programs: usize,
        failed_loads: usize,
    }
    /// The configurations in the order they ran, as keys.
    struct Keyed(Vec<(&'static str, Config)>);
    impl serde::Serialize for Keyed {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
    #[derive(serde::Serialize)]
    struct Doc {
        programs: usize,
        seed: u64,
        #[serde(flatten)]
        configs: Keyed,
    }
    let configs = (results.iter())
        .map(|r| {
            let c = Config {
                direct_map_level2_splits: r.direct_map_level2_splits,
                peak_direct_map_level2_splits: r.peak_direct_map_level2_splits,
                directmap_4k_kb: r.directmap_4k_kb,
                directmap_2m_kb: r.directmap_2m_kb,
                peak_directmap_4k_kb: r.peak_directmap_4k_kb,
                collapses: r.collapses,
                cpa_calls: r.cpa_calls,
                bytes_per_program: round(r.bytes_per_program, 1),
                mean_program_bytes: round(r.mean_program_bytes, 1),
                peak_live_programs: r.peak_live_programs,
                failed_loads: r.failed_loads,
            };
            (r.name, c)
        })
        .collect();
    let doc = Doc {
        programs: opts.programs,
        seed: opts.seed,
        configs: Keyed(configs),
    };
    serde_json::to_string(&doc).expect("figures serialise")
}

/// `DirectMap4k` over the run for every configuration, as a self-contained
/// SVG (no fonts or libraries needed to write it; any browser shows it).
pub fn svg(opts: &FragOptions, results: &[FragResult]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 400.0;
    const L: f64 = 80.0;
    const R: f64 = 150.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    const COLOURS: [&str; 6] = [
        "#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#000000",
    ];
    let max_x = results
        .iter()
        .flat_map(|r| r.series.last().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // The y axis: up to the highest point, rounded up to 8 MiB.
    let top_mib = results
        .iter()
        .flat_map(|r| r.series.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .div_ceil(8 * 1024)
        .max(1)
        * 8;
    let top_kb = top_mib as f64 * 1024.0;
    let x = |v: f64| L + v / max_x * (W - L - R);
    let y = |kb: f64| H - B - kb / top_kb * (H - T - B);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{L}\" y=\"22\" font-size=\"14\">DirectMap4k over {} BPF program loads (seed {}), {} MiB machine</text>\n",
        opts.programs, opts.seed, opts.mem_mib
    );
    // Axes, with five ticks on each.
    let _ = writeln!(
        s,
        "<path d=\"M{L},{T} V{:.1} H{:.1}\" stroke=\"black\" fill=\"none\"/>",
        H - B,
        W - R
    );
    for mib in (0..=4).map(|i| top_mib * i / 4) {
        let yy = y(mib as f64 * 1024.0);
        let _ = writeln!(
            s,
            "<line x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{L}\" y2=\"{yy:.1}\" stroke=\"black\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{mib} MiB</text>",
            L - 5.0,
            L - 8.0,
            yy + 4.0
        );
    }
    for i in 0..=4 {
        let v = max_x * f64::from(i) / 4.0;
        let xx = x(v);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"black\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>",
            H - B,
            H - B + 5.0,
            H - B + 18.0,
            v
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">step (loads, unloads, driver vmalloc/vfree)</text>",
        (L + W - R) / 2.0,
        H - 12.0
    );
    for (r, colour) in results.iter().zip(COLOURS) {
        let points: Vec<String> = r
            .series
            .iter()
            .map(|&(step, kb)| format!("{:.1},{:.1}", x(step as f64), y(kb as f64)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let last = r.series.last().map_or(0, |p| p.1);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{} ({} splits)</text>",
            W - R + 8.0,
            y(last as f64) + 4.0,
            r.name,
            r.direct_map_level2_splits
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_seeded_and_frees_everything() {
        let o = FragOptions {
            programs: 300,
            ..FragOptions::default()
        };
        let (a, marks) = plan(&o);
        assert_eq!(a, plan(&o).0);
        assert!(!marks.is_empty());
        let loads = a.iter().filter(|s| matches!(s, Step::Load { .. })).count();
        let unloads = a
            .iter()
            .filter(|s| matches!(s, Step::Unload { .. }))
            .count();
        let vm = a
            .iter()
            .filter(|s| matches!(s, Step::Vmalloc { .. }))
            .count();
        let vf = a.iter().filter(|s| matches!(s, Step::Vfree { .. })).count();
        assert_eq!((loads, unloads), (300, 300));
        assert_eq!(vm, vf);
    }
}
