//! Invariant oracles, checked on each kernel on its own after every op
//! (incrementally: each looks only at what the op changed or at bookkeeping the
//! machine keeps current) and with a full sweep at the end (DESIGN §6).

use std::collections::BTreeSet;
use std::fmt;

use super::obs::Obs;
use super::op::{Op, ProgId, prog_text};
use super::session::{Session, Step};
use crate::machine::direct_map::DmapLevel;
use crate::machine::pgtable::Level;

/// Which oracle fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Oracle {
    /// 1: `BUG: Bad page state`.
    BadPageState,
    /// 1: any other oops (page fault, BUG, WARN) during an op that should not
    /// have one.
    Oops,
    /// 2: a leaf that is writable and executable.
    WriteXorExecute,
    /// 3: executable bytes that are neither live program text nor INT3.
    ExecutableContent,
}

impl Oracle {
    /// The oracle's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Oracle::BadPageState => "bad page state",
            Oracle::Oops => "oops",
            Oracle::WriteXorExecute => "W^X",
            Oracle::ExecutableContent => "executable content",
        }
    }
}

impl fmt::Display for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One oracle firing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The op after which it fired; `None` for the end-of-run sweep.
    pub op: Option<usize>,
    pub oracle: Oracle,
    /// The kernel it fired on.
    pub kernel: &'static str,
    /// Kernel-style text.
    pub message: String,
}

/// Per-kernel oracle state: what has been reported already.
#[derive(Default)]
pub struct Invariants {
    wx_vmalloc: BTreeSet<(u64, Level)>,
    wx_dmap: BTreeSet<(u64, DmapLevel)>,
}

impl Invariants {
    /// Checks everything `op` (at `index`) may have broken on `s`.
    pub fn after_op(
        &mut self,
        s: &Session,
        index: usize,
        op: &Op,
        step: &Step,
        out: &mut Vec<Finding>,
    ) {
        let kernel = s.name();
        let mut find = |oracle, message| {
            out.push(Finding {
                op: Some(index),
                oracle,
                kernel,
                message,
            })
        };
        for o in &step.oopses {
            let oracle = if o.is_bad_page() {
                Oracle::BadPageState
            } else {
                Oracle::Oops
            };
            find(oracle, o.to_string());
        }
        match (&step.obs, op) {
            (Obs::Landing(l), Op::ProgProbe { prog, off } | Op::StaleProbe { prog, off })
                if l.is_bug() =>
            {
                find(
                    Oracle::ExecutableContent,
                    format!(
                        "a jump to prog{} {off:+} {l}: executable memory holds neither program text nor INT3\n",
                        prog.0
                    ),
                );
            }
            (Obs::Bytes(got), Op::ProgRun { prog }) => {
                let want = prog_text(ProgId(prog.0), got.len() as u32);
                if let Some(k) = got.iter().zip(&want).position(|(a, b)| a != b) {
                    find(
                        Oracle::ExecutableContent,
                        format!(
                            "bpf_prog_run(prog{}) fetched {:#04x} at +{k} where the JIT wrote {:#04x}\n",
                            prog.0, got[k], want[k]
                        ),
                    );
                }
            }
            _ => {}
        }
        let m = s.kernel.machine();
        for (va, level) in m.pgtables.wx_leaves() {
            if self.wx_vmalloc.insert((va, level)) {
                find(
                    Oracle::WriteXorExecute,
                    format!("W^X: {level:?} leaf at {va:016x} is writable and executable\n"),
                );
            }
        }
        for (pfn, level) in m.dmap.wx_leaves() {
            if self.wx_dmap.insert((pfn, level)) {
                find(
                    Oracle::WriteXorExecute,
                    format!(
                        "W^X: direct-map {level:?} leaf of pfn {pfn:#x} is writable and executable\n"
                    ),
                );
            }
        }
    }

    /// The end-of-run sweep: recomputes what the incremental checks rely on
    /// from scratch. A disagreement is a bug in the model itself.
    pub fn final_sweep(&mut self, s: &Session) {
        let m = s.kernel.machine();
        let swept: BTreeSet<_> = m
            .pgtables
            .leaves()
            .filter(|l| l.prot.is_wx())
            .map(|l| (l.va, l.level))
            .collect();
        let kept: BTreeSet<_> = m.pgtables.wx_leaves().collect();
        assert_eq!(
            swept, kept,
            "W^X bookkeeping of the vmalloc page tables drifted"
        );
        let swept: BTreeSet<_> = m
            .dmap
            .leaves()
            .into_iter()
            .filter(|l| l.2.is_wx())
            .map(|l| (l.0, l.1))
            .collect();
        let kept: BTreeSet<_> = m.dmap.wx_leaves().collect();
        assert_eq!(swept, kept, "W^X bookkeeping of the direct map drifted");
    }
}
