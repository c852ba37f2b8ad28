//! Shrinking a failing trace while the same oracle still fires: delta debugging
//! on ops (removing an op also removes every op that uses what it created, and
//! later handles are renumbered), then on arguments (smaller sizes, offsets,
//! lengths; simpler flags). Every candidate is validated by printing and
//! parsing it, so a shrunk trace is always one the parser accepts.

use super::op::{AreaId, HandleKind, Op, PageId, ProgId};
use super::trace::{Trace, parse};
use crate::kernel::HugeHint;
use crate::machine::MachineConfig;

/// Removes the ops at `drop` and every op depending on a handle they created,
/// renumbering the handles of the rest. `None` if nothing would be removed.
pub fn remove_ops(ops: &[Op], drop: &[usize]) -> Option<Vec<Op>> {
    let mut gone = vec![false; ops.len()];
    for &i in drop {
        gone[i] = true;
    }
    // new id of each created handle per kind, or None if removed
    let mut maps: [Vec<Option<u32>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut next = [0u32; 3];
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let alive =
            |maps: &[Vec<Option<u32>>; 3], k: HandleKind, id: u32| maps[k as usize][id as usize];
        let remapped = if gone[i] {
            None
        } else {
            remap(op, |k, id| alive(&maps, k, id))
        };
        if let Some(kind) = op.creates() {
            let new = remapped.as_ref().map(|_| {
                next[kind as usize] += 1;
                next[kind as usize] - 1
            });
            maps[kind as usize].push(new);
        }
        if let Some(op) = remapped {
            out.push(op);
        }
    }
    (out.len() < ops.len()).then_some(out)
}

/// `op` with its handles renamed by `f`, or `None` if one is gone.
fn remap(op: &Op, f: impl Fn(HandleKind, u32) -> Option<u32>) -> Option<Op> {
    let a = |x: AreaId| f(HandleKind::Area, x.0).map(AreaId);
    let p = |x: PageId| f(HandleKind::Page, x.0).map(PageId);
    let g = |x: ProgId| f(HandleKind::Prog, x.0).map(ProgId);
    let mut op = op.clone();
    match &mut op {
        Op::Vfree { area }
        | Op::Vwrite { area, .. }
        | Op::Vmemset { area, .. }
        | Op::Vread { area, .. }
        | Op::VmallocToPage { area, .. }
        | Op::SetMemory { area, .. }
        | Op::StaleVread { area, .. }
        | Op::ExecmemFree { area } => *area = a(*area)?,
        Op::ProgFree { prog }
        | Op::ProgRun { prog }
        | Op::ProgProbe { prog, .. }
        | Op::StaleProbe { prog, .. }
        | Op::KcoreRead { prog, .. } => *prog = g(*prog)?,
        other => {
            if let Some(page) = other.page_mut() {
                *page = p(*page)?;
            }
        }
    }
    Some(op)
}

/// How big an op's arguments are; shrinking only ever lowers it, so it ends.
fn weight(op: &Op) -> u64 {
    let flags = |f: &crate::kernel::VmallocFlags| {
        u64::from(f.zero) + u64::from(f.nofail) + u64::from(f.huge != HugeHint::Default)
    };
    match op {
        Op::Vmalloc { size, flags: f } => size + flags(f),
        // kvmalloc is plain vmalloc plus its huge-page opt-in: one heavier.
        Op::Kvmalloc { size, nofail } => size + 1 + u64::from(*nofail),
        Op::Vwrite { off, data, .. } => off + data.len() as u64,
        Op::Vmemset { off, len, .. } | Op::Vread { off, len, .. } => off + *len as u64,
        Op::VmallocToPage { off, .. } => *off,
        Op::VmallocNode {
            size,
            align,
            flags: f,
        } => size + u64::from(align.trailing_zeros()) + 1 + flags(f),
        Op::SetMemory { off, pages, .. } => off + *pages as u64,
        Op::StaleVread { off, len, .. } => off + *len as u64,
        Op::SetMapping { value, .. }
        | Op::SetIndex { value, .. }
        | Op::SetPagePrivate { value, .. } => u64::from(*value != 0),
        Op::ProgLoadSubprogsFail { lens, fail, rand } => {
            lens.iter().map(|&l| l as u64).sum::<u64>()
                + lens.len() as u64
                + *fail as u64
                + u64::from(*rand != 0)
        }
        Op::ProgLoad {
            len,
            align,
            rand,
            classic,
        } => *len as u64 + *align as u64 + u64::from(*rand != 0) + u64::from(*classic),
        Op::ProgLoadFail { len, rand } => *len as u64 + u64::from(*rand != 0),
        Op::ProgProbe { off, .. } | Op::StaleProbe { off, .. } => off.unsigned_abs() as u64,
        Op::KcoreRead { off, len, .. } => u64::from(*off) + u64::from(*len),
        Op::FailNth { nth, .. } => u64::from(*nth),
        Op::ExecmemAlloc { size } => *size,
        _ => 0,
    }
}

/// Simpler versions of `op`'s arguments (each of lower [`weight`]), most
/// preferred first.
fn simpler(op: &Op) -> Vec<Op> {
    let mut v = Vec::new();
    let w = weight(op);
    let mut push = |o: Op| {
        if weight(&o) < w {
            v.push(o);
        }
    };
    let sizes = |s: u64| [4096, 1 << 21, 4 << 20, s / 2, s.next_multiple_of(4096)];
    match op {
        Op::Vmalloc { size, flags } => {
            for s in sizes(*size) {
                push(Op::Vmalloc {
                    size: s.max(1),
                    flags: *flags,
                });
            }
            for f in [
                crate::kernel::VmallocFlags {
                    zero: false,
                    ..*flags
                },
                crate::kernel::VmallocFlags {
                    nofail: false,
                    ..*flags
                },
                crate::kernel::VmallocFlags {
                    huge: HugeHint::Default,
                    ..*flags
                },
            ] {
                push(Op::Vmalloc {
                    size: *size,
                    flags: f,
                });
            }
        }
        Op::Kvmalloc { size, nofail } => {
            push(Op::Vmalloc {
                size: *size,
                flags: Default::default(),
            });
            push(Op::Kvmalloc {
                size: *size,
                nofail: false,
            });
            for s in sizes(*size) {
                push(Op::Kvmalloc {
                    size: s.max(1),
                    nofail: *nofail,
                });
            }
        }
        Op::Vwrite { area, off, data } => {
            for (o, d) in [
                (0, data.clone()),
                (*off, data[..1].to_vec()),
                (off & !0xfff, data.clone()),
            ] {
                push(Op::Vwrite {
                    area: *area,
                    off: o,
                    data: d,
                });
            }
        }
        Op::Vmemset {
            area,
            off,
            value,
            len,
        } => {
            for (o, l) in [(0, *len), (*off, 1), (off & !0xfff, *len), (*off, len / 2)] {
                push(Op::Vmemset {
                    area: *area,
                    off: o,
                    value: *value,
                    len: l.max(1),
                });
            }
        }
        Op::Vread { area, off, len } => {
            for (o, l) in [(0, *len), (*off, 1), (off & !0xfff, *len)] {
                push(Op::Vread {
                    area: *area,
                    off: o,
                    len: l,
                });
            }
        }
        Op::VmallocNode { size, align, flags } => {
            push(Op::Vmalloc {
                size: *size,
                flags: *flags,
            });
            for s in sizes(*size) {
                push(Op::VmallocNode {
                    size: s.max(1),
                    align: *align,
                    flags: *flags,
                });
            }
            push(Op::VmallocNode {
                size: *size,
                align: (align / 2).max(1),
                flags: *flags,
            });
        }
        Op::SetMemory {
            area,
            off,
            pages,
            change,
        } => {
            for (o, n) in [(0, *pages), (*off, 1), (*off, pages / 2)] {
                push(Op::SetMemory {
                    area: *area,
                    off: o,
                    pages: n.max(1),
                    change: *change,
                });
            }
        }
        Op::StaleVread { area, off, len } => {
            for (o, l) in [(0, *len), (*off, 1), (off & !0xfff, *len)] {
                push(Op::StaleVread {
                    area: *area,
                    off: o,
                    len: l,
                });
            }
        }
        Op::VmallocToPage { area, off } => {
            for o in [off & !0xfff, 0x3000, 0] {
                push(Op::VmallocToPage {
                    area: *area,
                    off: o,
                });
            }
        }
        Op::SetMapping { page, value } if *value != 0 => push(Op::SetMapping {
            page: *page,
            value: 0,
        }),
        Op::SetIndex { page, value } if *value != 0 => push(Op::SetIndex {
            page: *page,
            value: 0,
        }),
        Op::ProgLoad {
            len,
            align,
            rand,
            classic,
        } => {
            for l in [64, 100, len / 2] {
                push(Op::ProgLoad {
                    len: l.max(1),
                    align: *align,
                    rand: *rand,
                    classic: *classic,
                });
            }
            push(Op::ProgLoad {
                len: *len,
                align: 1,
                rand: *rand,
                classic: *classic,
            });
            push(Op::ProgLoad {
                len: *len,
                align: *align,
                rand: 0,
                classic: *classic,
            });
            if *classic {
                push(Op::ProgLoad {
                    len: *len,
                    align: *align,
                    rand: *rand,
                    classic: false,
                });
            }
        }
        Op::ProgLoadFail { len, rand } => {
            for l in [64, len / 2] {
                push(Op::ProgLoadFail {
                    len: l.max(1),
                    rand: *rand,
                });
            }
            push(Op::ProgLoadFail { len: *len, rand: 0 });
        }
        Op::ProgLoadSubprogsFail { lens, fail, rand } => {
            let n = lens.len();
            if n > 2 {
                let mut fewer = lens.clone();
                fewer.remove(if (*fail as usize) < n - 1 { n - 1 } else { 0 });
                let fail = if *fail as usize == n - 1 {
                    fail - 1
                } else {
                    *fail
                };
                push(Op::ProgLoadSubprogsFail {
                    lens: fewer,
                    fail,
                    rand: *rand,
                });
            }
            push(Op::ProgLoadSubprogsFail {
                lens: lens.iter().map(|_| 64).collect(),
                fail: *fail,
                rand: *rand,
            });
            if *fail > 0 {
                push(Op::ProgLoadSubprogsFail {
                    lens: lens.clone(),
                    fail: fail - 1,
                    rand: *rand,
                });
            }
            push(Op::ProgLoadSubprogsFail {
                lens: lens.clone(),
                fail: *fail,
                rand: 0,
            });
        }
        Op::ExecmemAlloc { size } => {
            for s in [1, size / 2] {
                if s > 0 && s < *size {
                    push(Op::ExecmemAlloc { size: s });
                }
            }
        }
        Op::FailNth { site, nth } if *nth > 1 => push(Op::FailNth {
            site: *site,
            nth: nth - 1,
        }),
        Op::KcoreRead { prog, off, len } => {
            for (o, n) in [(0, 1), (*off / 2, *len), (*off, (*len).div_ceil(2))] {
                push(Op::KcoreRead {
                    prog: *prog,
                    off: o,
                    len: n,
                });
            }
        }
        Op::ProgProbe { prog, off } => {
            for o in [0, off / 2] {
                push(Op::ProgProbe {
                    prog: *prog,
                    off: o,
                });
            }
        }
        Op::StaleProbe { prog, off } => {
            for o in [0, off / 2] {
                push(Op::StaleProbe {
                    prog: *prog,
                    off: o,
                });
            }
        }
        _ => {}
    }
    v
}

/// Shrinks `t` while `fires` holds. `fires` must hold for `t`. Returns the
/// smallest trace found and how many candidates were run.
pub fn shrink(t: &Trace, fires: &mut dyn FnMut(&Trace) -> bool) -> (Trace, usize) {
    let mut s = Shrinker {
        best: t.clone(),
        runs: 0,
        fires,
    };
    let default = MachineConfig::default();
    if s.best.config != default {
        s.try_ops(s.best.ops.clone(), default);
    }
    loop {
        let mut progress = false;
        // ddmin on ops: chunks from large to single ops.
        let mut chunk = s.best.ops.len().div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < s.best.ops.len() {
                let drop: Vec<usize> = (start..(start + chunk).min(s.best.ops.len())).collect();
                let config = s.best.config;
                let taken =
                    remove_ops(&s.best.ops, &drop).is_some_and(|ops| s.try_ops(ops, config));
                if taken {
                    progress = true;
                } else {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        // Adjacent pairs that straddle the chunks above (a get_page/put_page).
        let mut i = 0;
        while i + 1 < s.best.ops.len() {
            let config = s.best.config;
            if remove_ops(&s.best.ops, &[i, i + 1]).is_some_and(|ops| s.try_ops(ops, config)) {
                progress = true;
            } else {
                i += 1;
            }
        }
        // Arguments.
        for i in 0..s.best.ops.len() {
            for cand in simpler(&s.best.ops[i]) {
                let mut ops = s.best.ops.clone();
                ops[i] = cand;
                let config = s.best.config;
                if s.try_ops(ops, config) {
                    progress = true;
                    break;
                }
            }
        }
        if !progress {
            return (s.best, s.runs);
        }
    }
}

struct Shrinker<'a> {
    best: Trace,
    runs: usize,
    fires: &'a mut dyn FnMut(&Trace) -> bool,
}

impl Shrinker<'_> {
    /// Takes `ops` on `config` if it is a valid trace and still fires.
    fn try_ops(&mut self, ops: Vec<Op>, config: MachineConfig) -> bool {
        let cand = Trace::new(self.best.quirks.clone(), config, ops);
        if parse("shrink", &cand.print()).is_err() {
            return false;
        }
        self.runs += 1;
        if (self.fires)(&cand) {
            self.best = cand;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_creation_removes_its_users_and_renumbers() {
        let t = parse(
            "t",
            "# packmodel trace v1\na = vmalloc(8K)\nb = vmalloc(8K)\np = vmalloc_to_page(b)\nget_page(p)\nput_page(p)\nvfree(a)\nvfree(b)\n",
        )
        .unwrap();
        let ops = remove_ops(&t.ops, &[0]).unwrap();
        assert_eq!(ops.len(), 5);
        assert_eq!(ops[0], t.ops[0], "b became v0");
        assert!(matches!(ops[4], Op::Vfree { area: AreaId(0) }));
        let ops = remove_ops(&t.ops, &[1]).unwrap();
        assert_eq!(ops.len(), 2, "b's page ops and vfree(b) went with it");
    }
}
