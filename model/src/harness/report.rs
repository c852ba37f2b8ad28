//! Reports: every op with what each kernel showed, the verdict, and pictures of
//! the state at the failing op — direct-map leaves, a strip per pack, the
//! `struct page` involved. The text is stable (deterministic addresses, no
//! timings), so snapshots can hold it.

use std::fmt::Write as _;

use super::obs::Obs;
use super::op::Op;
use super::oracle::Finding;
use super::run::Run;
use super::session::Session;
use super::trace::{Trace, config_text, op_lines};
use crate::kernel::{Kernel, PackView, Quirks};
use crate::machine::consts::PAGE_SIZE;
use crate::machine::oops::PageDump;

const OBS_WIDTH: usize = 34;

fn clip(s: String, width: usize) -> String {
    if s.chars().count() <= width {
        s
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// The full report of a run of `trace` (from `path`).
pub fn render(path: &str, trace: &Trace, quirks: Quirks, run: &Run) -> String {
    let mut s = String::new();
    let names: Vec<&str> = run.sessions.iter().map(|x| x.name()).collect();
    let _ = writeln!(
        s,
        "replay {path} on {} ({}; quirks: {quirks})",
        names.join(" and "),
        config_text(&trace.config)
    );
    s.push('\n');
    let mut lines = op_lines(&trace.ops);
    lines.extend(op_lines_after(&trace.ops, &run.teardown));
    let width = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let linux = run.steps.iter().any(|st| st.linux.is_some());
    let _ = write!(s, " op  line  {:width$}  {:OBS_WIDTH$}", "call", names[0]);
    if names.len() == 2 {
        let _ = write!(s, "  {}", names[1]);
    } else if linux {
        let _ = write!(s, "  linux");
    }
    s.push('\n');
    for (i, (text, step)) in lines.iter().zip(&run.steps).enumerate() {
        if i == trace.ops.len() {
            let _ = writeln!(s, "          teardown:");
        }
        let line = trace
            .lines
            .get(i)
            .map_or("-".to_string(), |l| l.to_string());
        let first = clip(step.obs[0].to_string(), OBS_WIDTH);
        let _ = write!(
            s,
            "{i:3}  {line:>4}  {:width$}  ",
            clip(text.clone(), width)
        );
        if step.obs.len() == 2 {
            let second = if step.obs[1] == step.obs[0] {
                "=".to_string()
            } else {
                step.obs[1].to_string()
            };
            let tag = match &step.cmp {
                Some(c) if !matches!(c, super::compare::Comparison::Equal) => {
                    format!("  {}", c.tag())
                }
                _ => String::new(),
            };
            let _ = write!(s, "{first:OBS_WIDTH$}  {second}{tag}");
        } else if let Some(l) = &step.linux {
            let _ = write!(s, "{first:OBS_WIDTH$}  {}", linux_cell(l));
        } else {
            let _ = write!(s, "{first}");
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        if let Some(l) = &step.linux {
            for line in &l.step.log {
                let _ = writeln!(s, "           | linux: {line}");
            }
        }
        for (k, oopses) in step.oopses.iter().enumerate() {
            for o in oopses {
                for l in o.to_string().lines() {
                    let _ = writeln!(s, "           | {}: {l}", names[k]);
                }
            }
        }
    }
    s.push('\n');
    if linux {
        s.push_str(&linux_summary(run));
        s.push('\n');
    }
    s.push_str(&counters(&names, run));
    s.push('\n');
    s.push_str(&verdict(trace, &lines, &run.findings));
    if let Some(f) = run.findings.first() {
        s.push_str(&pictures(trace, quirks, run, f));
    }
    s
}

/// What Linux showed for one op: `=` when it agrees with the model, else
/// its observation and the comparison's tag.
fn linux_cell(l: &super::run::LinuxStep) -> String {
    use super::compare::Comparison;
    match &l.cmp {
        Some(Comparison::Equal | Comparison::BothFailedAlike) => "=".into(),
        Some(c) => format!("{}  {}", l.step, c.tag()),
        None => format!("{}  (not compared)", l.step),
    }
}

/// How the ops compared with Linux, and each incomparable reason's count.
fn linux_summary(run: &Run) -> String {
    use super::compare::Comparison;
    use std::collections::BTreeMap;
    let (mut equal, mut divergent, mut not_compared) = (0, 0, 0);
    let mut why: BTreeMap<&str, usize> = BTreeMap::new();
    for l in run.steps.iter().filter_map(|st| st.linux.as_ref()) {
        match &l.cmp {
            Some(Comparison::Equal | Comparison::BothFailedAlike) => equal += 1,
            Some(Comparison::Incomparable { why: w, .. }) => *why.entry(w).or_default() += 1,
            Some(Comparison::Divergent(_)) => divergent += 1,
            None => not_compared += 1,
        }
    }
    let incomparable: usize = why.values().sum();
    let mut s = format!(
        "linux: {equal} equal, {incomparable} incomparable, {divergent} divergent, {not_compared} not compared\n"
    );
    for (w, n) in why {
        let _ = writeln!(s, "  {n:3} × incomparable: {w}");
    }
    s
}

/// Each kernel's `/proc/meminfo` `DirectMap*` and `/proc/vmstat`
/// `direct_map_level*_splits` after the trace and after the teardown.
fn counters(names: &[&str], run: &Run) -> String {
    let mut s = format!(
        "{:31}{:>13}{:>13}{:>13}{:>26}{:>26}\n",
        "direct map",
        "DirectMap4k",
        "DirectMap2M",
        "DirectMap1G",
        "direct_map_level2_splits",
        "direct_map_level3_splits"
    );
    for (name, both) in names.iter().zip(&run.counters) {
        for (when, d) in ["after the trace", "after the teardown"].iter().zip(both) {
            let kb = |v: u64| format!("{v} kB");
            let _ = writeln!(
                s,
                "  {name:9}  {when:18}{:>13}{:>13}{:>13}{:>26}{:>26}",
                kb(d.directmap_4k_kb),
                kb(d.directmap_2m_kb),
                kb(d.directmap_1g_kb),
                d.direct_map_level2_splits,
                d.direct_map_level3_splits
            );
        }
    }
    s
}

/// The teardown ops' text, numbering created handles after the trace's.
fn op_lines_after(trace_ops: &[Op], teardown: &[Op]) -> Vec<String> {
    let mut all: Vec<Op> = trace_ops.to_vec();
    all.extend_from_slice(teardown);
    op_lines(&all).split_off(trace_ops.len())
}

/// `verdict: clean`, or the first finding with where it happened.
pub fn verdict(trace: &Trace, lines: &[String], findings: &[Finding]) -> String {
    let Some(f) = findings.first() else {
        return "verdict: clean\n".to_string();
    };
    let at = match f.op {
        Some(i) if i < trace.ops.len() => format!("op {i} (line {}): {}", trace.lines[i], lines[i]),
        Some(i) => format!("teardown op {i}: {}", lines[i]),
        None => "the end of the run".to_string(),
    };
    let mut s = format!(
        "verdict: BUG on {}, found by the {} oracle after {at}\n",
        f.kernel, f.oracle
    );
    s.push_str(&f.message);
    if findings.len() > 1 {
        let _ = writeln!(s, "({} more findings after this one)", findings.len() - 1);
    }
    s
}

/// The state that matters at the finding: re-runs the ops up to it (cheap and
/// deterministic) and draws each kernel's direct map, packs, and the page the
/// op touched.
fn pictures(trace: &Trace, quirks: Quirks, run: &Run, f: &Finding) -> String {
    let Some(at) = f.op else { return String::new() };
    let mut ops: Vec<Op> = trace.ops.clone();
    ops.extend_from_slice(&run.teardown);
    let upto = &ops[..=at];
    let mut s = String::from("\nstate after that op:\n");
    let mut drew_packs = false;
    for x in &run.sessions {
        let kind = crate::kernel::KernelKind::from_name(x.name()).expect("a known kernel");
        let mut replayed = Session::new(kind, trace.config, quirks);
        for op in upto {
            replayed.step(op);
        }
        let k = &replayed.kernel;
        let d = k.machine().dmap.stats();
        let _ = writeln!(
            s,
            "  {:9}  DirectMap4k: {} kB  DirectMap2M: {} kB  DirectMap1G: {} kB  direct_map_level2_splits: {}",
            x.name(),
            d.directmap_4k_kb,
            d.directmap_2m_kb,
            d.directmap_1g_kb,
            d.direct_map_level2_splits
        );
        for (i, p) in k.packs().iter().enumerate() {
            let _ = writeln!(
                s,
                "  {:9}  pack {i} {:016x} |{}|",
                "",
                p.base,
                pack_strip(k.as_ref(), p)
            );
            drew_packs = true;
        }
        if let Some(page) = upto[at].page().and_then(|id| replayed.page(id.0)) {
            let dump = PageDump::capture(&k.machine().mm, page.0);
            for l in dump.to_string().lines() {
                let _ = writeln!(s, "  {:9}  {l}", "");
            }
        }
    }
    if drew_packs {
        s.push_str(
            "  (pack strips: 64 cells; # live chunks, + live and INT3, . INT3, ! bytes that are neither, x unmapped)\n",
        );
    }
    s
}

/// One pack as 64 cells: live chunks, INT3, or anything else in free chunks.
/// A chunk is read where it lies, which is across two pages when a quirk
/// left the pack's base off a 64-byte boundary.
fn pack_strip(k: &dyn Kernel, p: &PackView) -> String {
    let m = k.machine();
    let chunks = p.size / 64;
    let per_cell = chunks / 64;
    let mut page = [0u8; PAGE_SIZE as usize];
    let mut loaded = u64::MAX;
    let mut mapped = true;
    (0..64)
        .map(|cell| {
            let (mut live, mut dirty, mut unmapped) = (0, false, false);
            for c in cell * per_cell..(cell + 1) * per_cell {
                if p.bitmap[(c / 64) as usize] & (1 << (c % 64)) != 0 {
                    live += 1;
                    continue;
                }
                let (start, end) = (p.base + c * 64, p.base + c * 64 + 64);
                let mut va = start;
                while va < end {
                    let pg = va / PAGE_SIZE;
                    if pg != loaded {
                        mapped = match m.pgtables.vmalloc_to_pfn(va) {
                            Some(pfn) => {
                                m.frames.read(pfn, 0, &mut page);
                                true
                            }
                            None => false,
                        };
                        loaded = pg;
                    }
                    let hi = end.min((pg + 1) * PAGE_SIZE);
                    let (o, n) = ((va % PAGE_SIZE) as usize, (hi - va) as usize);
                    unmapped |= !mapped;
                    dirty |= mapped && page[o..o + n].iter().any(|&b| b != 0xcc);
                    va = hi;
                }
            }
            match (dirty, live) {
                _ if unmapped => 'x',
                (true, _) => '!',
                (false, 0) => '.',
                (false, n) if n == per_cell => '#',
                _ => '+',
            }
        })
        .collect()
}

/// The exit status a run maps to: 0 clean, 1 a bug.
pub fn exit_code(run: &Run) -> u8 {
    u8::from(!run.is_clean())
}

/// The one-line form of an observation pair, for logs.
pub fn obs_pair(obs: &[Obs]) -> String {
    obs.iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}
