//! Replaying a trace on one kernel, and the report of it.

use std::fmt::Write as _;

use super::oracle::{Finding, Invariants};
use super::session::{Session, Step};
use super::trace::{Trace, config_text, op_lines};
use crate::kernel::KernelKind;

/// A trace run on one kernel.
pub struct Replay {
    pub kernel: &'static str,
    pub steps: Vec<Step>,
    /// Every oracle firing, in order; the first is the verdict.
    pub findings: Vec<Finding>,
}

impl Replay {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Runs `trace` on a fresh `kind` kernel, checking the invariants after every op.
pub fn replay(trace: &Trace, kind: KernelKind) -> Replay {
    let mut s = Session::new(kind, trace.config);
    let mut inv = Invariants::default();
    let mut steps = Vec::with_capacity(trace.ops.len());
    let mut findings = Vec::new();
    for (i, op) in trace.ops.iter().enumerate() {
        let step = s.step(op);
        inv.after_op(&s, i, op, &step, &mut findings);
        steps.push(step);
    }
    inv.final_sweep(&s);
    Replay {
        kernel: s.name(),
        steps,
        findings,
    }
}

/// The replay report: every op with its observation and the oopses it caused,
/// then the verdict.
pub fn render(path: &str, trace: &Trace, r: &Replay) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replay {path} on {} ({})",
        r.kernel,
        config_text(&trace.config)
    );
    if !trace.quirks.is_empty() {
        let _ = writeln!(s, "quirks: {}", trace.quirks.join(", "));
    }
    s.push('\n');
    let lines = op_lines(&trace.ops);
    let width = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    let _ = writeln!(s, " op  line  {:width$}  result", "call");
    for (i, (text, step)) in lines.iter().zip(&r.steps).enumerate() {
        let _ = writeln!(
            s,
            "{i:3}  {:4}  {text:width$}  {}",
            trace.lines[i], step.obs
        );
        for o in &step.oopses {
            for l in o.to_string().lines() {
                let _ = writeln!(s, "           | {l}");
            }
        }
    }
    s.push('\n');
    s.push_str(&verdict(trace, &r.findings));
    s
}

/// `verdict: clean` or the first finding, with where it happened.
pub fn verdict(trace: &Trace, findings: &[Finding]) -> String {
    let Some(f) = findings.first() else {
        return "verdict: clean\n".to_string();
    };
    let lines = op_lines(&trace.ops);
    let at = match f.op {
        Some(i) => format!("op {i} (line {}): {}", trace.lines[i], lines[i]),
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
