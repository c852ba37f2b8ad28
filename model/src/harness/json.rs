//! `replay --json`: the same run as [`super::report::render`] shows, for
//! scripts — every op with each kernel's observation (as data, and as the
//! report shows it), its oopses and the comparison, each kernel's direct-map
//! counters after the trace and after the teardown, every finding and the
//! exit status.

use serde::Serialize;

use super::compare::Comparison;
use super::obs::Obs;
use super::oracle::Finding;
use super::run::Run;
use super::trace::{Trace, config_text, op_lines};
use crate::kernel::Quirks;
use crate::machine::direct_map::DirectMapStats;

#[derive(Serialize)]
struct Replay<'a> {
    path: &'a str,
    config: String,
    quirks: Vec<&'static str>,
    kernels: Vec<&'static str>,
    ops: Vec<Step>,
    counters: Vec<Counters>,
    findings: Vec<FindingJson<'a>>,
    clean: bool,
    exit_status: u8,
}

#[derive(Serialize)]
struct Step {
    index: usize,
    /// The trace's source line; `None` for teardown ops.
    line: Option<u32>,
    teardown: bool,
    call: String,
    /// One per kernel, in the order of `kernels`.
    observations: Vec<Observation>,
    comparison: Option<ComparisonJson>,
}

#[derive(Serialize)]
struct Observation {
    kernel: &'static str,
    /// What the report prints.
    shown: String,
    #[serde(flatten)]
    value: ObsValue,
    oopses: Vec<String>,
}

/// An observation as data.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ObsValue {
    Ok,
    Error {
        errno: &'static str,
    },
    /// Bytes read or fetched: all of them in hex, or (`complete` false)
    /// the first ones of a long observation kept as a digest.
    Bytes {
        len: usize,
        hex: String,
        complete: bool,
    },
    Count {
        value: i32,
    },
    Word {
        value: u64,
    },
    Landing {
        bug: bool,
    },
    Fault {
        cause: &'static str,
    },
    NoAccess {
        cause: &'static str,
    },
    Oopsed,
    Skipped,
    DirectMap(Counts),
}

/// `/proc/meminfo`'s and `/proc/vmstat`'s names.
#[derive(Serialize)]
#[allow(non_snake_case)]
struct Counts {
    DirectMap4k_kB: u64,
    DirectMap2M_kB: u64,
    DirectMap1G_kB: u64,
    direct_map_level2_splits: u64,
    direct_map_level3_splits: u64,
}

impl From<&DirectMapStats> for Counts {
    fn from(d: &DirectMapStats) -> Self {
        Self {
            DirectMap4k_kB: d.directmap_4k_kb,
            DirectMap2M_kB: d.directmap_2m_kb,
            DirectMap1G_kB: d.directmap_1g_kb,
            direct_map_level2_splits: d.direct_map_level2_splits,
            direct_map_level3_splits: d.direct_map_level3_splits,
        }
    }
}

#[derive(Serialize)]
struct Counters {
    kernel: &'static str,
    after_trace: Counts,
    after_teardown: Counts,
}

#[derive(Serialize)]
struct ComparisonJson {
    /// `equal`, `both failed alike`, `incomparable` or `divergent`.
    verdict: &'static str,
    /// Why it is incomparable, or what diverged.
    why: Option<String>,
    /// Whether the kernels are no longer compared from this op on.
    stop: bool,
}

#[derive(Serialize)]
struct FindingJson<'a> {
    op: Option<usize>,
    oracle: &'static str,
    kernel: &'static str,
    message: &'a str,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value(o: &Obs) -> ObsValue {
    match o {
        Obs::Ok => ObsValue::Ok,
        Obs::Err(e) => ObsValue::Error { errno: e.name() },
        Obs::Bytes(_) | Obs::Text(_) => {
            let b = o.bytes().expect("bytes");
            ObsValue::Bytes {
                len: b.len(),
                hex: hex(&b),
                complete: true,
            }
        }
        Obs::Digest(d) => ObsValue::Bytes {
            len: d.len(),
            hex: hex(d.head()),
            complete: false,
        },
        Obs::Count(n) => ObsValue::Count { value: *n },
        Obs::Word(w) => ObsValue::Word { value: *w },
        Obs::Landing(l) => ObsValue::Landing { bug: l.is_bug() },
        Obs::Fault(c) => ObsValue::Fault { cause: c.name() },
        Obs::NoAccess(c) => ObsValue::NoAccess { cause: c.name() },
        Obs::Oopsed => ObsValue::Oopsed,
        Obs::Skipped(..) => ObsValue::Skipped,
        Obs::DirectMap(d) => ObsValue::DirectMap(d.into()),
    }
}

fn comparison(c: &Comparison) -> ComparisonJson {
    let (verdict, why, stop) = match c {
        Comparison::Equal => ("equal", None, false),
        Comparison::BothFailedAlike => ("both failed alike", None, false),
        Comparison::Incomparable { why, stop } => ("incomparable", Some(why.to_string()), *stop),
        Comparison::Divergent(msg) => ("divergent", Some(msg.trim_end().to_string()), false),
    };
    ComparisonJson { verdict, why, stop }
}

/// The run of `trace` (from `path`) as one pretty-printed JSON document.
pub fn render_json(path: &str, trace: &Trace, quirks: Quirks, run: &Run) -> String {
    let kernels: Vec<&'static str> = run.sessions.iter().map(|s| s.name()).collect();
    let mut all = trace.ops.clone();
    all.extend_from_slice(&run.teardown);
    let calls = op_lines(&all);
    let ops = (run.steps.iter().zip(calls).enumerate())
        .map(|(index, (step, call))| Step {
            index,
            line: trace.lines.get(index).copied(),
            teardown: index >= trace.ops.len(),
            call,
            observations: (kernels.iter().zip(&step.obs).zip(&step.oopses))
                .map(|((&kernel, o), oopses)| Observation {
                    kernel,
                    shown: o.to_string(),
                    value: value(o),
                    oopses: oopses.iter().map(|x| x.to_string()).collect(),
                })
                .collect(),
            comparison: step.cmp.as_ref().map(comparison),
        })
        .collect();
    let counters = (kernels.iter().zip(&run.counters))
        .map(|(&kernel, [t, e])| Counters {
            kernel,
            after_trace: t.into(),
            after_teardown: e.into(),
        })
        .collect();
    let findings = (run.findings.iter())
        .map(|f: &Finding| FindingJson {
            op: f.op,
            oracle: f.oracle.name(),
            kernel: f.kernel,
            message: &f.message,
        })
        .collect();
    let doc = Replay {
        path,
        config: config_text(&trace.config),
        quirks: quirks.names(),
        kernels,
        ops,
        counters,
        findings,
        clean: run.is_clean(),
        exit_status: super::report::exit_code(run),
    };
    serde_json::to_string_pretty(&doc).expect("a replay serialises")
}
