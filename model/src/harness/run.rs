//! The one function every front end calls: run a trace on one kernel or on both,
//! check the invariants after every op, compare observations op by op, tear
//! everything down, sweep, and return what happened.

use super::budget::Budget;
use super::compare::{Comparison, Expect, compare};
use super::decode::Gen;
use super::ground::{GuestStep, GuestValue, ProgCtx, View, compare_ground, model_view, prog_of};
use super::obs::Obs;
use super::op::{AreaId, Op};
use super::oracle::{Finding, Invariants, Oracle};
use super::session::Session;
use super::shadow::Shadow;
use super::trace::Trace;
use crate::kernel::{Kernel, KernelKind, Quirks};
use crate::machine::direct_map::DirectMapStats;
use crate::machine::oops::Oops;
use crate::machine::{Design, MachineConfig};

/// What one op did on each kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStep {
    /// One observation per kernel, in the order the kernels were given.
    pub obs: Vec<Obs>,
    /// The oopses each kernel printed during the op.
    pub oopses: Vec<Vec<Oops>>,
    /// The comparison, when two kernels ran and were still comparable.
    pub cmp: Option<Comparison>,
    /// What a real kernel showed for the op, when the run has one (boxed:
    /// a fuzz run's steps never have one and stay small).
    pub linux: Option<Box<LinuxStep>>,
}

/// A real kernel's step beside the model's (DESIGN §11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxStep {
    pub step: GuestStep,
    /// What the model showed of the same state.
    pub model_view: View,
    /// `None` once the model and Linux are no longer compared.
    pub cmp: Option<Comparison>,
}

/// A finished run.
pub struct Run {
    /// The kernels, in order (their final state, for reports).
    pub sessions: Vec<Session>,
    /// The trace's ops, then the teardown's.
    pub steps: Vec<RunStep>,
    /// The ops the teardown ran after the trace's (cleanup and frees).
    pub teardown: Vec<Op>,
    /// Every oracle firing, in order; the first is the verdict.
    pub findings: Vec<Finding>,
    /// The first op from which the kernels were no longer compared.
    pub stopped_comparing: Option<usize>,
    /// Each kernel's direct-map counters after the trace's ops and after the
    /// teardown.
    pub counters: Vec<[DirectMapStats; 2]>,
}

impl Run {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first finding: the verdict.
    pub fn verdict(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

/// Runs `trace` on fresh `kinds` kernels (one, or reference and optimised),
/// `quirks` applying to the optimised one.
pub fn run(trace: &Trace, kinds: &[KernelKind], quirks: Quirks) -> Run {
    run_on(
        trace,
        kinds
            .iter()
            .map(|&k| k.boot(trace.config, quirks))
            .collect(),
    )
}

/// Runs `trace` on freshly booted `kernels` (reference first when there are
/// two).
pub fn run_on(trace: &Trace, kernels: Vec<Box<dyn Kernel>>) -> Run {
    run_inner(trace, kernels, None)
}

/// Runs `trace` on the model's fixed kernel (the optimised one with no
/// quirks) and compares every op, teardown included, with what a real kernel
/// showed (`linux`, one step per op: [`teardown_ops`] after the trace's).
///
/// The model boots as x86 6.1 ships, the `linux-6.1` design ([`Design`]),
/// whatever design the trace names: the guest is that kernel.
pub fn run_with_linux(trace: &Trace, linux: Vec<GuestStep>) -> Run {
    let cfg = MachineConfig {
        design: Design::Linux61,
        ..trace.config
    };
    let kernel = KernelKind::Optimised.boot(cfg, Quirks::default());
    run_on_with_linux(trace, kernel, linux)
}

/// [`run_with_linux`] on a given model kernel (a sabotaged one, in tests).
pub fn run_on_with_linux(trace: &Trace, kernel: Box<dyn Kernel>, linux: Vec<GuestStep>) -> Run {
    run_inner(trace, vec![kernel], Some(linux))
}

/// The ops a run performs after the trace's own: every driver cleans up and
/// frees its areas, every program unloads (what a guest performs too).
pub fn teardown_ops(trace: &Trace) -> Vec<Op> {
    let mut scope = Gen::new(trace.config);
    for op in &trace.ops {
        scope.push(op.clone());
    }
    teardown(&scope)
}

fn run_inner(trace: &Trace, kernels: Vec<Box<dyn Kernel>>, linux: Option<Vec<GuestStep>>) -> Run {
    assert!(!kernels.is_empty() && kernels.len() <= 2);
    assert!(linux.is_none() || kernels.len() == 1);
    let n = kernels.len();
    let mut x = Runner {
        sessions: kernels.into_iter().map(Session::with_kernel).collect(),
        inv: (0..n).map(|_| Invariants::default()).collect(),
        shadow: Shadow::default(),
        budget: Budget::new(&trace.config),
        steps: Vec::with_capacity(trace.ops.len()),
        findings: Vec::new(),
        stopped_comparing: None,
        scope: Gen::new(trace.config),
        linux: linux.map(|l| l.into_iter()),
        linux_stopped: false,
        linux_inexact: Default::default(),
    };
    for (i, op) in trace.ops.iter().enumerate() {
        x.step(i, op);
    }
    x.sweep();
    let after_trace: Vec<DirectMapStats> = (x.sessions.iter())
        .map(|s| s.kernel.direct_map_stats())
        .collect();
    let teardown = teardown(&x.scope);
    for (j, op) in teardown.iter().enumerate() {
        x.step(trace.ops.len() + j, op);
    }
    x.sweep();
    let counters = (x.sessions.iter().zip(after_trace))
        .map(|(s, t)| [t, s.kernel.direct_map_stats()])
        .collect();
    for (s, inv) in x.sessions.iter_mut().zip(&x.inv) {
        s.kernel.vm_unmap_aliases();
        inv.check_leaks(s, &mut x.findings);
    }
    Run {
        sessions: x.sessions,
        steps: x.steps,
        teardown,
        findings: x.findings,
        stopped_comparing: x.stopped_comparing,
        counters,
    }
}

struct Runner {
    sessions: Vec<Session>,
    inv: Vec<Invariants>,
    shadow: Shadow,
    budget: Budget,
    steps: Vec<RunStep>,
    findings: Vec<Finding>,
    stopped_comparing: Option<usize>,
    /// Live objects and the driver's state, as the trace defines them.
    scope: Gen,
    /// A real kernel's steps, in op order, when the run compares with one.
    linux: Option<std::vec::IntoIter<GuestStep>>,
    linux_stopped: bool,
    /// Programs whose JIT image on Linux is not the length asked for.
    linux_inexact: std::collections::BTreeSet<u32>,
}

impl Runner {
    /// Applies op `i` to every kernel, checks the invariants on each, and
    /// compares the observations.
    fn step(&mut self, i: usize, op: &Op) {
        let within = self.budget.observe(op);
        let mut step = RunStep {
            obs: Vec::with_capacity(self.sessions.len()),
            oopses: Vec::with_capacity(self.sessions.len()),
            cmp: None,
            linux: None,
        };
        for (s, inv) in self.sessions.iter_mut().zip(self.inv.iter_mut()) {
            let st = s.step(op);
            inv.after_op(s, i, op, &st, &mut self.findings);
            step.obs.push(st.obs);
            step.oopses.push(st.oopses);
        }
        if step.obs.len() == 2 && self.stopped_comparing.is_none() {
            let expect = Expect {
                shadow: &self.shadow,
                driver: &self.scope.driver,
                within_budget: within,
            };
            let c = compare(op, &step.obs[0], &step.obs[1], &expect);
            match &c {
                Comparison::Divergent(msg) => self.findings.push(Finding {
                    op: Some(i),
                    oracle: Oracle::Differential,
                    kernel: "reference vs optimised",
                    message: msg.clone(),
                }),
                Comparison::Incomparable { stop: true, .. } => self.stopped_comparing = Some(i),
                _ => {}
            }
            step.cmp = Some(c);
        }
        if let Some(got) = self.linux.as_mut().map(Iterator::next) {
            step.linux = Some(Box::new(self.compare_linux(i, op, got, &step, within)));
        }
        // Compared and checked: keep what reports need, not megabytes.
        step.obs.iter_mut().for_each(Obs::compact);
        self.shadow.observe(op);
        self.scope.push(op.clone());
        self.steps.push(step);
    }

    /// Compares the real kernel's step for op `i` with the model's.
    fn compare_linux(
        &mut self,
        i: usize,
        op: &Op,
        got: Option<GuestStep>,
        step: &RunStep,
        within_budget: bool,
    ) -> LinuxStep {
        let model_view = model_view(&self.sessions[0], op);
        let Some(got) = got else {
            if !self.linux_stopped {
                self.findings.push(Finding {
                    op: Some(i),
                    oracle: Oracle::Differential,
                    kernel: "optimised vs linux",
                    message: "the guest gave no observation for this op (or any after it)\n".into(),
                });
            }
            self.linux_stopped = true;
            return LinuxStep {
                step: GuestStep {
                    value: super::ground::GuestValue::NotPerformed("no observation".into()),
                    view: View::default(),
                    log: Vec::new(),
                },
                model_view,
                cmp: None,
            };
        };
        if self.linux_stopped {
            return LinuxStep {
                step: got,
                model_view,
                cmp: None,
            };
        }
        let expect = Expect {
            shadow: &self.shadow,
            driver: &self.scope.driver,
            within_budget,
        };
        // The guest boots one NUMA node; a two-node machine decides huge
        // pages per node (size_per_node in __vmalloc_node_range()).
        let c = if self.scope.nodes != 1 {
            Comparison::Incomparable {
                why: "NUMA: the guest boots one node, the trace's machine has two",
                stop: true,
            }
        } else {
            let ctx = match prog_of(op) {
                Some(id) => ProgCtx {
                    len: (self.scope.progs.iter().chain(&self.scope.freed))
                        .find(|(p, _)| *p == id)
                        .map(|&(_, len)| len),
                    inexact: self.linux_inexact.contains(&id.0),
                },
                None => ProgCtx::default(),
            };
            if let (Op::ProgLoad { .. }, GuestValue::Inexact { .. }) = (op, &got.value) {
                self.linux_inexact.insert(self.scope.next_prog_id());
            }
            compare_ground(
                op,
                &step.obs[0],
                &step.oopses[0],
                &model_view,
                &got,
                &expect,
                ctx,
            )
        };
        match &c {
            Comparison::Divergent(msg) => self.findings.push(Finding {
                op: Some(i),
                oracle: Oracle::Differential,
                kernel: "optimised vs linux",
                message: msg.clone(),
            }),
            Comparison::Incomparable { stop: true, .. } => self.linux_stopped = true,
            _ => {}
        }
        LinuxStep {
            step: got,
            model_view,
            cmp: Some(c),
        }
    }

    fn sweep(&mut self) {
        for (s, inv) in self.sessions.iter().zip(self.inv.iter_mut()) {
            inv.final_sweep(s);
        }
    }
}

/// What a well-behaved system does at the end: every driver cleans up its
/// pages and frees its areas, every program is unloaded.
fn teardown(scope: &Gen) -> Vec<Op> {
    let mut areas: Vec<AreaId> = scope.areas.iter().map(|a| a.0).collect();
    areas.sort();
    let mut ops = Vec::new();
    for area in areas {
        ops.extend(scope.driver.cleanup(area));
        ops.push(Op::Vfree { area });
    }
    let mut execmem: Vec<AreaId> = scope.execmem.iter().map(|a| a.0).collect();
    execmem.sort();
    ops.extend(execmem.into_iter().map(|area| Op::ExecmemFree { area }));
    let mut progs: Vec<_> = scope.progs.iter().map(|p| p.0).collect();
    progs.sort();
    ops.extend(progs.into_iter().map(|prog| Op::ProgFree { prog }));
    ops
}
