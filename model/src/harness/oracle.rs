//! Invariant oracles (DESIGN §6), checked on each kernel on its own after every
//! op and with a full sweep at the end.
//!
//! They are incremental: the machine logs which frames were written, which
//! leaves and direct-map pages changed, and the oracles look only at those (and
//! at images whose liveness changed). The end-of-run sweep recomputes everything
//! from scratch; if it finds something the incremental checks missed, the model
//! itself is wrong and the run panics.
//!
//! 1. no `Bad page state` and no unexpected oops;
//! 2. W^X: no leaf, vmalloc or direct map, is writable and executable;
//! 3. executable content: every executable byte is live program text (as the
//!    JIT wrote it), a live program's header, or INT3;
//! 4. alias coherence: no executable page has a writable direct-map alias;
//! 5. no overlap: live areas, packs and program images are disjoint, virtually
//!    and in the frames they map, and no mapped frame is free;
//! 6. no leak: after the teardown every frame is free or was reported bad;
//!
//! and, where a new area's frames are walked for 5, that each comes as the page
//! allocator promises (`page->private` 0): the "fresh page" oracle; and, for
//! kernels with packs, that a classic BPF program never takes pack memory a
//! freed program's code was in with no predictor flush since (the "predictor
//! flush" oracle, the property the 2026 cBPF hardening gives).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::obs::Obs;
use super::op::Op;
use super::session::{Session, Step};
use crate::kernel::{ImageSlot, Region, VmapView};
use crate::machine::Machine;
use crate::machine::consts::{PAGE_SIZE, VMALLOC_END, VMALLOC_START};
use crate::machine::direct_map::DmapLevel;
use crate::machine::frames::Content;
use crate::machine::lazy::LazyArray;
use crate::machine::pgtable::Level;
use crate::machine::prot::Prot;

/// Which oracle fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Oracle {
    /// 1: `BUG: Bad page state`.
    BadPageState,
    /// 1: any other oops (page fault, BUG, WARN) during an op.
    Oops,
    /// 2: a leaf that is writable and executable.
    WriteXorExecute,
    /// 3: executable bytes that are neither live program text nor INT3.
    ExecutableContent,
    /// 4: an executable page with a writable direct-map alias.
    AliasCoherence,
    /// 5: two live objects share addresses or frames, or a mapped frame is free.
    Overlap,
    /// 6: frames neither free nor reported after everything was freed.
    Leak,
    /// A page handed out carries state from its last user: `page->private`
    /// is not 0, which `post_alloc_hook()` (and for split subpages, the 2026
    /// fix in `free_pages_prepare()`) promises.
    FreshPage,
    /// The virtual-area allocator broke its lazy-purge rules: a freed area
    /// not yet purged is still mapped or overlaps a busy one, or more pages
    /// wait for a purge than `lazy_max_pages()` allows.
    VmapSpace,
    /// The two kernels disagree on what an op showed, or a read does not give
    /// back what was written.
    Differential,
    /// A classic BPF program took pack memory that a freed program's code
    /// occupied, with no indirect branch predictor flush (IBPB) since that
    /// free.
    PredictorFlush,
}

impl Oracle {
    /// The oracle's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Oracle::BadPageState => "bad page state",
            Oracle::Oops => "oops",
            Oracle::WriteXorExecute => "W^X",
            Oracle::ExecutableContent => "executable content",
            Oracle::AliasCoherence => "alias coherence",
            Oracle::Overlap => "overlap",
            Oracle::Leak => "leak",
            Oracle::FreshPage => "fresh page",
            Oracle::VmapSpace => "vmap space",
            Oracle::Differential => "differential",
            Oracle::PredictorFlush => "predictor flush",
        }
    }
}

impl Oracle {
    pub const ALL: [Oracle; 11] = [
        Oracle::BadPageState,
        Oracle::Oops,
        Oracle::WriteXorExecute,
        Oracle::ExecutableContent,
        Oracle::AliasCoherence,
        Oracle::Overlap,
        Oracle::Leak,
        Oracle::FreshPage,
        Oracle::VmapSpace,
        Oracle::Differential,
        Oracle::PredictorFlush,
    ];

    /// The name on the command line: `bad-page-state`, `w^x` as `wx`, ….
    pub fn slug(self) -> String {
        match self {
            Oracle::WriteXorExecute => "wx".to_string(),
            o => o.name().replace(' ', "-"),
        }
    }

    pub fn from_slug(s: &str) -> Option<Oracle> {
        Self::ALL.into_iter().find(|o| o.slug() == s)
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
    /// The op after which it fired (teardown ops follow the trace's); `None`
    /// for the end-of-run checks.
    pub op: Option<usize>,
    pub oracle: Oracle,
    /// The kernel it fired on (`reference`, `optimised`, or both for a
    /// divergence).
    pub kernel: &'static str,
    /// Kernel-style text, ending in a newline.
    pub message: String,
}

/// Per-kernel oracle state.
#[derive(Default)]
pub struct Invariants {
    wx_vmalloc: BTreeSet<(u64, Level)>,
    wx_dmap: BTreeSet<(u64, DmapLevel)>,
    /// Executable pages: va → (first pfn, pages), runs of pages that map
    /// consecutive frames (pieces of the page tables' extents).
    exec: BTreeMap<u64, (u64, u64)>,
    /// pfn → the executable va mapping it (0 for none; empty until needed),
    /// and further vas for frames mapped executable more than once.
    rmap: LazyArray<u64, 512>,
    rmap_more: BTreeMap<u64, Vec<u64>>,
    /// Entries in `rmap` and `rmap_more` together, kept by `rmap_add` and
    /// `rmap_remove`: with every executable va present, equal to the
    /// executable pages exactly when nothing stale is left.
    rmap_entries: u64,
    /// Liveness of each image at the last check.
    images_live: Vec<bool>,
    /// [`Machine::region_epoch`] when the region checks last ran.
    region_epoch: (u64, u64),
    content_reported: BTreeSet<u64>,
    alias_reported: BTreeSet<u64>,
    /// Live regions in order and the frames each maps, as runs (first pfn,
    /// frames).
    regions: Vec<(Region, Vec<(u64, u64)>)>,
    /// Buffers the region and vmap checks fill anew each time they run.
    scratch: Scratch,
    /// Frame → the start address of the region mapping it, 0 for none
    /// (empty until the first region).
    owners: LazyArray<u64, 512>,
    /// Unpurged vmap ranges already checked to map nothing (a range can only
    /// gain a mapping by being handed out again, which the overlap with a
    /// busy area shows).
    unpurged_checked: BTreeSet<(u64, u64)>,
    /// Images of programs freed since the last predictor flush: (start,
    /// end, the trace's program).
    freed_unflushed: Vec<(u64, u64, u32)>,
    /// `pred_flushes()` after the last op.
    flushes_seen: u64,
}

/// What the region and vmap checks build each time they run, kept so that
/// they allocate nothing once grown.
#[derive(Default)]
struct Scratch {
    regions: Vec<(Region, Vec<(u64, u64)>)>,
    now: Vec<Region>,
    view: VmapView,
    areas: Vec<(u64, u64, &'static str)>,
    images: Vec<(u64, u64)>,
    /// The live images over a run of executable pages ([`live_images_over`]).
    over: Vec<u32>,
}

/// Collects findings for one kernel and op.
struct Out<'a> {
    out: &'a mut Vec<Finding>,
    op: Option<usize>,
    kernel: &'static str,
}

impl Out<'_> {
    fn find(&mut self, oracle: Oracle, message: String) {
        self.out.push(Finding {
            op: self.op,
            oracle,
            kernel: self.kernel,
            message,
        });
    }
}

impl Invariants {
    /// Checks everything `op` (at `index`) may have broken on `s`.
    pub fn after_op(
        &mut self,
        s: &mut Session,
        index: usize,
        op: &Op,
        step: &Step,
        out: &mut Vec<Finding>,
    ) {
        let mut o = Out {
            out,
            op: Some(index),
            kernel: s.name(),
        };
        for oops in &step.oopses {
            let oracle = if oops.is_bad_page() {
                Oracle::BadPageState
            } else {
                Oracle::Oops
            };
            o.find(oracle, oops.to_string());
        }
        Self::check_obs(s, op, step, &mut o);
        self.check_pred_flush(s, op, &step.obs, &mut o);
        self.check_wx(s.kernel.machine(), &mut o);
        let images_changed = self.check_exec(s, &mut o);
        // The region checks follow what changed, not the op's kind: the
        // machine's mappings or page allocations, or the kernel's images
        // (a program placed in, or freed from, a pack maps nothing).
        let epoch = s.kernel.machine().region_epoch();
        if epoch != self.region_epoch || images_changed {
            self.region_epoch = epoch;
            self.check_regions(s, &mut o);
            self.check_vmap(s, &mut o);
        }
    }

    /// The lazy-purge rules of v5.18 `mm/vmalloc.c`: `free_unmap_vmap_area()`
    /// clears an area's page tables (`vunmap_range_noflush()`) before
    /// `free_vmap_area_noflush()` moves it to the purge list, so an unpurged
    /// range maps nothing; it stays out of the free tree, so no busy area
    /// overlaps it; and `vmap_lazy_nr` counts its pages, never beyond
    /// `lazy_max_pages()` once a free has returned (it purges at once above
    /// that).
    fn check_vmap(&mut self, s: &Session, o: &mut Out) {
        let Scratch {
            view: v,
            areas: all,
            ..
        } = &mut self.scratch;
        s.kernel.vmap_view_into(v);
        let m = s.kernel.machine();
        all.clear();
        all.extend(v.busy.iter().map(|&(a, b)| (a, b, "busy")));
        all.extend(v.unpurged.iter().map(|&(a, b)| (a, b, "unpurged")));
        all.sort_unstable();
        for w in all.windows(2) {
            if w[0].1 > w[1].0 {
                o.find(
                    Oracle::VmapSpace,
                    format!(
                        "{} vmap area {:#x}-{:#x} overlaps {} {:#x}-{:#x}\n",
                        w[0].2, w[0].0, w[0].1, w[1].2, w[1].0, w[1].1
                    ),
                );
            }
        }
        (self.unpurged_checked).retain(|r| v.unpurged.binary_search(r).is_ok());
        for &(start, end) in &v.unpurged {
            if !self.unpurged_checked.insert((start, end)) {
                continue;
            }
            if let Some(leaf) = m.pgtables.leaves_in(start, end).next() {
                o.find(
                    Oracle::VmapSpace,
                    format!(
                        "unpurged vm_area {start:#x}-{end:#x} is still mapped at {:016x}\n",
                        leaf.va.max(start)
                    ),
                );
            }
        }
        let pages: u64 = v.unpurged.iter().map(|(a, b)| (b - a) / PAGE_SIZE).sum();
        if pages != v.lazy_pages || v.lazy_pages > v.lazy_max_pages {
            o.find(
                Oracle::VmapSpace,
                format!(
                    "vmap_lazy_nr is {} with {pages} unpurged pages (lazy_max_pages() {})\n",
                    v.lazy_pages, v.lazy_max_pages
                ),
            );
        }
    }

    /// The predictor-flush oracle, a checker that needs no second
    /// implementation: it follows, from the images alone, where freed
    /// programs' code was since the kernel's last `bpf_arch_pred_flush()`,
    /// and a classic program (`bpf_prog_create()`) whose image lands in a
    /// pack over any of it with no flush during its load is a finding — the
    /// reuse 96cce16e26dd closes. Memory outside packs is not covered (the
    /// hardening flushes only for packs; a program larger than a pack never
    /// flushes), so a kernel without packs never fires.
    fn check_pred_flush(&mut self, s: &Session, op: &Op, obs: &Obs, o: &mut Out) {
        let k = &s.kernel;
        let flushes = k.pred_flushes();
        if flushes != self.flushes_seen {
            self.flushes_seen = flushes;
            self.freed_unflushed.clear();
            return;
        }
        match (op, obs) {
            (Op::ProgFree { prog }, _) => {
                if let Some(p) = s.prog(prog.0) {
                    let img = &k.images()[p.0 as usize].image;
                    let range = (img.header, img.header + img.alloc_size, prog.0);
                    self.freed_unflushed.push(range);
                }
            }
            (Op::ProgLoad { classic: true, .. }, Obs::Ok) if !self.freed_unflushed.is_empty() => {
                let Some(p) = k.images().len().checked_sub(1) else {
                    return;
                };
                let img = &k.images()[p].image;
                let (start, end) = (img.header, img.header + img.alloc_size);
                let in_pack = k
                    .packs()
                    .iter()
                    .any(|pk| pk.base <= start && end <= pk.base + pk.size);
                let old = (self.freed_unflushed.iter())
                    .find(|&&(a, b, _)| a < end && start < b && in_pack);
                if let Some(&(_, _, was)) = old {
                    o.find(
                        Oracle::PredictorFlush,
                        format!(
                            "classic prog{} at {start:016x} reuses pack memory where prog{was}'s code was until it was freed, with no predictor flush (IBPB) since\n",
                            s.prog_id(crate::kernel::Prog(p as u32)).0
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    /// What the op itself showed: a jump that ran bytes it should not, a
    /// program whose text does not read back.
    fn check_obs(s: &Session, op: &Op, step: &Step, o: &mut Out) {
        match (&step.obs, op) {
            (Obs::Landing(l), Op::ProgProbe { prog, off } | Op::StaleProbe { prog, off })
                if l.is_bug() =>
            {
                o.find(
                    Oracle::ExecutableContent,
                    format!(
                        "a jump to prog{} {off:+} {l}: executable memory holds neither program text nor INT3\n",
                        prog.0
                    ),
                );
            }
            // A long run that fetched exactly its text is `Obs::Text`:
            // nothing to report.
            (Obs::Bytes(got), Op::ProgRun { prog }) => {
                let want = &s.kernel.images()[s.prog(prog.0).expect("it ran").0 as usize]
                    .image
                    .text;
                let n = got.len().min(want.len());
                let differs = !want.holds(0, &got[..n]);
                if let Some(k) = differs
                    .then(|| got.iter().zip(want.to_vec()).position(|(&a, b)| a != b))
                    .flatten()
                {
                    o.find(
                        Oracle::ExecutableContent,
                        format!(
                            "bpf_prog_run(prog{}) fetched {:#04x} at +{k} where the JIT wrote {:#04x}\n",
                            prog.0, got[k], want.byte(k)
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    fn check_wx(&mut self, m: &Machine, o: &mut Out) {
        for (va, level) in m.pgtables.wx_leaves() {
            if self.wx_vmalloc.insert((va, level)) {
                o.find(
                    Oracle::WriteXorExecute,
                    format!("W^X: {level:?} leaf at {va:016x} is writable and executable\n"),
                );
            }
        }
        for (pfn, level) in m.dmap.wx_leaves() {
            if self.wx_dmap.insert((pfn, level)) {
                o.find(
                    Oracle::WriteXorExecute,
                    format!("W^X: direct-map {level:?} leaf of pfn {pfn:#x} is writable and executable\n"),
                );
            }
        }
    }

    /// Oracles 3 and 4 on the pages the op may have affected.
    /// Returns whether any image was added or changed liveness.
    fn check_exec(&mut self, s: &mut Session, o: &mut Out) -> bool {
        let m = s.kernel.machine_mut();
        let leaf_changes = m.pgtables.take_exec_changed();
        let written = m.frames.take_written();
        let dmap_changes = m.dmap.take_changed();
        if self.rmap.is_empty() {
            self.rmap = LazyArray::new(m.nr_pages() as usize);
        }
        let m = s.kernel.machine();
        // Executable pages whose content, and whose alias, to check: runs
        // (va, first pfn, pages).
        let mut content: Vec<(u64, u64, u64)> = Vec::new();
        let mut alias: Vec<(u64, u64, u64)> = Vec::new();
        for &(start, len) in &leaf_changes {
            let now = self.refresh_exec(m, start, len);
            content.extend(&now);
            alias.extend(now);
        }
        // Frames that no executable page maps need no look: none at all, or
        // none in a run of written frames or a changed direct-map range (a
        // chunk of the reverse map at a time).
        if self.rmap_entries > 0 {
            for (pfn, n) in written {
                self.exec_vas_of_run(pfn as u64, n as u64, &mut content);
            }
            for (pfn, pages) in dmap_changes {
                self.exec_vas_of_run(pfn, pages, &mut alias);
            }
        }
        let images = s.kernel.images();
        let mut images_changed = false;
        for (i, slot) in images.iter().enumerate() {
            if self.images_live.get(i) != Some(&slot.live) {
                images_changed = true;
                let img = &slot.image;
                self.exec_pages_in(
                    img.header & !(PAGE_SIZE - 1),
                    img.header + img.alloc_size,
                    &mut content,
                );
            }
        }
        if images_changed {
            self.images_live = images.iter().map(|s| s.live).collect();
        }
        let ids = |i: usize| s.prog_id(crate::kernel::Prog(i as u32)).0;
        let mut over = std::mem::take(&mut self.scratch.over);
        for (va, pfn, pages) in disjoint(content) {
            let passed = passed_at_once(m, images, va, pfn, pages, &mut over);
            for (a, p) in (0..pages).map(|i| (va + i * PAGE_SIZE, pfn + i)) {
                if passed.contains(&a) || self.content_reported.contains(&a) {
                    continue;
                }
                if let Some(msg) = self.verify_page(m, images, &over, &ids, a, p) {
                    self.content_reported.insert(a);
                    o.find(Oracle::ExecutableContent, msg);
                }
            }
        }
        self.scratch.over = over;
        let alias = disjoint(alias).into_iter();
        for (va, pfn) in
            alias.flat_map(|(va, pfn, n)| (0..n).map(move |i| (va + i * PAGE_SIZE, pfn + i)))
        {
            if m.dmap.prot(pfn).writable() && self.alias_reported.insert(pfn) {
                o.find(
                    Oracle::AliasCoherence,
                    format!(
                        "executable page {va:016x} (pfn {pfn:#x}) has a writable direct-map alias at {:016x}\n",
                        crate::machine::consts::pfn_to_virt(pfn)
                    ),
                );
            }
        }
        images_changed
    }

    /// [`Invariants::exec_vas`] of each frame of `pfn..pfn + n` (clipped to
    /// memory), after one look at the reverse map for the whole run.
    fn exec_vas_of_run(&self, pfn: u64, n: u64, out: &mut Vec<(u64, u64, u64)>) {
        let end = (pfn + n).min(self.rmap.len() as u64);
        if pfn < end && self.rmap.any(pfn as usize..end as usize, |&va| va != 0) {
            for p in pfn..end {
                self.exec_vas(p, out);
            }
        }
    }

    /// The executable vas that map frame `pfn`, as runs of one page (the
    /// first joined to the last run of `out` where it carries that on).
    fn exec_vas(&self, pfn: u64, out: &mut Vec<(u64, u64, u64)>) {
        let va = *self.rmap.get(pfn as usize);
        if va == 0 {
            return;
        }
        match out.last_mut() {
            Some((v, p, n)) if *v + *n * PAGE_SIZE == va && *p + *n == pfn => *n += 1,
            _ => out.push((va, pfn, 1)),
        }
        if let Some(more) = self.rmap_more.get(&pfn) {
            out.extend(more.iter().map(|&va| (va, pfn, 1)));
        }
    }

    /// The executable pages that `start..end` touches (`start` page-aligned;
    /// `end` need not be), as runs.
    fn exec_pages_in(&self, start: u64, end: u64, out: &mut Vec<(u64, u64, u64)>) {
        let first = self
            .exec
            .range(..=start)
            .next_back()
            .map_or(start, |(&va, _)| va);
        for (&va, &(pfn, pages)) in self.exec.range(first..end) {
            let (lo, hi) = (va.max(start), (va + pages * PAGE_SIZE).min(end));
            if lo < hi {
                let pages = (hi - lo).div_ceil(PAGE_SIZE);
                out.push((lo, pfn + (lo - va) / PAGE_SIZE, pages));
            }
        }
    }

    /// Re-reads the executable pages of `start..start+len` (a range
    /// `PageTables::note` logged: whole leaves) into the executable map;
    /// returns the pages that are executable now, as runs. The map holds
    /// extents, cut where a refresh's range cut them: the pages outside the
    /// range did not change (a change to one would have been logged), so an
    /// entry that reaches into the range keeps its part outside.
    fn refresh_exec(&mut self, m: &Machine, start: u64, len: u64) -> Vec<(u64, u64, u64)> {
        let end = start + len;
        let straddles = (self.exec.range(..start).next_back())
            .filter(|&(&va, &(_, pages))| va + pages * PAGE_SIZE > start)
            .map(|(&va, _)| va);
        let old: Vec<u64> = (straddles.into_iter())
            .chain(self.exec.range(start..end).map(|(&va, _)| va))
            .collect();
        for va in old {
            let (pfn, pages) = self.exec.remove(&va).expect("listed");
            let stop = va + pages * PAGE_SIZE;
            let (lo, hi) = (va.max(start), stop.min(end));
            let at = |a: u64| pfn + (a - va) / PAGE_SIZE;
            self.rmap_remove_run(at(lo), lo, (hi - lo) / PAGE_SIZE);
            if va < start {
                self.exec.insert(va, (pfn, (start - va) / PAGE_SIZE));
            }
            if stop > end {
                self.exec.insert(end, (at(end), (stop - end) / PAGE_SIZE));
            }
        }
        let mut now = Vec::new();
        for e in (m.pgtables.extents_in(start, end)).filter(|e| e.prot.executable()) {
            self.exec.insert(e.va, (e.pfn, e.pages));
            self.rmap_add_run(e.pfn, e.va, e.pages);
            now.push((e.va, e.pfn, e.pages));
        }
        now
    }

    /// [`Invariants::rmap_add`] of the `n` pages from `va` on, which map the
    /// frames from `pfn` on: a chunk of the reverse map at a time where none
    /// of those frames has an executable va yet.
    fn rmap_add_run(&mut self, pfn: u64, va: u64, n: u64) {
        let end = (pfn + n).min(self.rmap.len() as u64);
        if pfn >= end {
            return;
        }
        let frames = pfn as usize..end as usize;
        if self.rmap.any(frames.clone(), |&v| v != 0) {
            for i in 0..end - pfn {
                self.rmap_add(pfn + i, va + i * PAGE_SIZE);
            }
            return;
        }
        let mut a = va;
        self.rmap.update(frames, |slot| {
            *slot = a;
            a += PAGE_SIZE;
        });
        self.rmap_entries += end - pfn;
    }

    /// [`Invariants::rmap_remove`] of the `n` pages from `va` on, which map
    /// the frames from `pfn` on.
    fn rmap_remove_run(&mut self, pfn: u64, va: u64, n: u64) {
        let end = (pfn + n).min(self.rmap.len() as u64);
        if pfn >= end {
            return;
        }
        if self.rmap_more.range(pfn..end).next().is_none() {
            let mut a = va;
            let mut found = 0;
            self.rmap.update(pfn as usize..end as usize, |slot| {
                if *slot == a {
                    *slot = 0;
                    found += 1;
                }
                a += PAGE_SIZE;
            });
            self.rmap_entries -= found;
            return;
        }
        for i in 0..end - pfn {
            self.rmap_remove(pfn + i, va + i * PAGE_SIZE);
        }
    }

    fn rmap_add(&mut self, pfn: u64, va: u64) {
        if pfn >= self.rmap.len() as u64 {
            return;
        }
        self.rmap_entries += 1;
        let slot = self.rmap.get_mut(pfn as usize);
        if *slot == 0 {
            *slot = va;
        } else {
            self.rmap_more.entry(pfn).or_default().push(va);
        }
    }

    fn rmap_remove(&mut self, pfn: u64, va: u64) {
        if pfn >= self.rmap.len() as u64 {
            return;
        }
        let slot = self.rmap.get_mut(pfn as usize);
        if *slot == va {
            self.rmap_entries -= 1;
            *slot = match self.rmap_more.get_mut(&pfn) {
                Some(more) => {
                    let next = more.pop().unwrap_or(0);
                    if more.is_empty() {
                        self.rmap_more.remove(&pfn);
                    }
                    next
                }
                None => 0,
            };
        } else if let Some(more) = self.rmap_more.get_mut(&pfn) {
            let before = more.len();
            more.retain(|&v| v != va);
            self.rmap_entries -= (before - more.len()) as u64;
            if more.is_empty() {
                self.rmap_more.remove(&pfn);
            }
        }
    }

    /// Oracle 3 on executable page `va`, which maps `pfn`; the message if it
    /// fails. `over` holds, by index and in order, the live images over a run
    /// of pages that includes this one ([`live_images_over`]): those over the
    /// page are among them. It covers
    /// the module range, where the JIT's and the module loader's executable
    /// memory lives; a driver that makes its own vmalloc memory executable
    /// (`set_memory_x()`) owns what that memory holds.
    fn verify_page(
        &self,
        m: &Machine,
        images: &[ImageSlot],
        over: &[u32],
        ids: &dyn Fn(usize) -> u32,
        va: u64,
        pfn: u64,
    ) -> Option<String> {
        // INT3 passes whatever covers it: what is accepted below, live text
        // and headers, is blanked to INT3 before the look.
        if (VMALLOC_START..=VMALLOC_END).contains(&va)
            || m.frames.content(pfn) == Content::Fill(0xcc)
        {
            return None;
        }
        let end = va + PAGE_SIZE;
        // The live images over the page (a few; asked again rather than
        // gathered: this runs for every executable page an op touches).
        let live = || {
            (over.iter().map(|&i| &images[i as usize])).filter(move |s| {
                s.live && s.image.header < end && s.image.header + s.image.alloc_size > va
            })
        };
        let mut over = live();
        let (first, second) = (over.next(), over.next());
        // Fast path: a page all of one live program's text, intact.
        if let (Some(slot), None) = (first, second) {
            let (img, r) = (&slot.image, slot.image.text_range());
            if r.start <= va && end <= r.end {
                let k = (va - img.text_start) as usize;
                if (m.frames).holds_text(pfn, 0, &img.text, k..k + PAGE_SIZE as usize) {
                    return None;
                }
            }
        }
        let mut buf = [0u8; PAGE_SIZE as usize];
        m.frames.read(pfn, 0, &mut buf);
        // Blank out what is legitimately there (matching text, headers) with
        // INT3, then everything must be INT3.
        for slot in live() {
            let img = &slot.image;
            for (range, text) in [
                (img.text_range(), Some(&img.text)),
                (img.header_range(), None),
            ] {
                let (lo, hi) = (range.start.max(va), range.end.min(end));
                if lo >= hi {
                    continue;
                }
                let page = &mut buf[(lo - va) as usize..(hi - va) as usize];
                match text {
                    None => page.fill(0xcc),
                    Some(t) => {
                        let k = (lo - img.text_start) as usize;
                        if t.holds(k, page) {
                            page.fill(0xcc);
                        } else {
                            // Keep only the bytes that differ, so that the
                            // report names the first of them.
                            let mut want = vec![0; page.len()];
                            t.read(k, &mut want);
                            for (b, w) in page.iter_mut().zip(want) {
                                if *b == w {
                                    *b = 0xcc;
                                }
                            }
                        }
                    }
                }
            }
        }
        let off = buf.iter().position(|&b| b != 0xcc)?;
        let a = va + off as u64;
        let b = m.frames.byte(pfn, off);
        let stale = images.iter().enumerate().rev().find(|(_, s)| {
            !s.live && (s.image.text_byte(a) == Some(b) || s.image.header_range().contains(&a))
        });
        let what = match stale {
            Some((i, s)) if s.image.header_range().contains(&a) => {
                format!("the stale header of freed prog{}", ids(i))
            }
            Some((i, s)) => format!(
                "stale code of freed prog{} (+{})",
                ids(i),
                a - s.image.text_start
            ),
            None if live().any(|s| s.image.text_range().contains(&a)) => {
                "a live program's text overwritten".to_string()
            }
            None => "neither program text nor INT3".to_string(),
        };
        Some(format!(
            "executable byte {b:#04x} at {a:016x} (pfn {pfn:#x} +{off:#x}): {what}\n"
        ))
    }

    /// Oracle 5 after an op that may have created or destroyed an object.
    fn check_regions(&mut self, s: &Session, o: &mut Out) {
        let k = &s.kernel;
        let m = k.machine();
        if self.owners.is_empty() {
            self.owners = LazyArray::new(m.nr_pages() as usize);
        }
        // The kernel's regions in order, each once (a set, kept as a sorted
        // vector: it is built anew each time the checks run).
        let mut now = std::mem::take(&mut self.scratch.now);
        now.clear();
        k.regions_into(&mut now);
        now.sort_unstable();
        now.dedup();
        // Those still live, in order; the frames of those gone lose them as
        // owner (both lists are sorted: one merge).
        let mut kept = std::mem::take(&mut self.scratch.regions);
        let mut live = now.iter().peekable();
        for (r, runs) in self.regions.drain(..) {
            while live.next_if(|&&l| l < r).is_some() {}
            if live.peek() == Some(&&r) {
                kept.push((r, runs));
                continue;
            }
            for &(pfn, n) in &runs {
                let frames = pfn as usize..(pfn + n) as usize;
                self.owners
                    .map(frames, |&o| if o == r.start { 0 } else { o });
            }
        }
        let mut prev: Option<&Region> = None;
        for r in &now {
            if let Some(p) = prev.filter(|p| p.start + p.size > r.start) {
                o.find(
                    Oracle::Overlap,
                    format!(
                        "{:?} at {:016x} overlaps {:?} at {:016x}\n",
                        p.kind, p.start, r.kind, r.start
                    ),
                );
            }
            prev = Some(r);
        }
        let imgs = &mut self.scratch.images;
        imgs.clear();
        let live = k.images().iter().filter(|s| s.live);
        imgs.extend(live.map(|s| (s.image.header, s.image.alloc_size)));
        imgs.sort_unstable();
        for w in imgs.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                o.find(
                    Oracle::Overlap,
                    format!(
                        "the images of live programs overlap: {:016x}+{:#x} and {:016x}+{:#x}\n",
                        w[0].0, w[0].1, w[1].0, w[1].1
                    ),
                );
            }
        }
        // The live regions in order, each new one checked where it falls.
        let mut kept_in_order = kept.drain(..).peekable();
        for &r in &now {
            if let Some(k) = kept_in_order.next_if(|(k, _)| *k == r) {
                self.regions.push(k);
                continue;
            }
            let mut runs = Vec::new();
            let end = r.start + r.size;
            let mut expect = r.start;
            for e in m.pgtables.extents_in(r.start, end) {
                if e.va != expect {
                    break;
                }
                // The whole extent at once when nothing is wrong with any of
                // its frames; page by page, to name each, when something is.
                let frames = e.pfn as usize..(e.pfn + e.pages) as usize;
                if self.owners.any(frames.clone(), |&o| o != 0)
                    || m.mm.any_page(e.pfn, e.pages, |p| p.private() != 0)
                    || m.any_page_free(e.pfn, e.pages)
                {
                    for i in 0..e.pages {
                        self.check_region_page(m, &r, e.va + i * PAGE_SIZE, e.pfn + i, o);
                    }
                } else {
                    self.owners.map(frames, |_| r.start);
                }
                runs.push((e.pfn, e.pages));
                expect = e.end();
            }
            if expect != end {
                o.find(
                    Oracle::Overlap,
                    format!(
                        "{:?} at {:016x} is not mapped at {expect:016x}\n",
                        r.kind, r.start
                    ),
                );
            }
            self.regions.push((r, runs));
        }
        debug_assert!(kept_in_order.next().is_none(), "every kept region is live");
        drop(kept_in_order);
        (self.scratch.regions, self.scratch.now) = (kept, now);
    }

    /// Oracle 5 and the fresh-page oracle on frame `pfn`, mapped at `va` by
    /// the new region `r`, which now owns it.
    fn check_region_page(&mut self, m: &Machine, r: &Region, va: u64, pfn: u64, o: &mut Out) {
        let other = std::mem::replace(self.owners.get_mut(pfn as usize), r.start);
        if other != 0 {
            o.find(
                Oracle::Overlap,
                format!(
                    "frame pfn {pfn:#x} is mapped at {other:016x} and by {:?} at {:016x}\n",
                    r.kind, r.start
                ),
            );
        }
        let private = m.mm.page(pfn).private();
        if private != 0 {
            o.find(
                Oracle::FreshPage,
                format!(
                    "{:?} at {:016x} was handed pfn {pfn:#x} with page->private = {private:#x}, left by the page's last user\n",
                    r.kind, r.start
                ),
            );
        }
        if m.page_is_free(pfn) {
            o.find(
                Oracle::Overlap,
                format!("frame pfn {pfn:#x} mapped at {va:016x} is free in the page allocator\n"),
            );
        }
    }

    /// The end-of-run sweep of oracles 2–4: recomputes the state the
    /// incremental checks keep and verifies every executable page. Anything
    /// found here that was not already reported means the incremental checks
    /// are wrong, which is a bug in the model: it panics.
    pub fn final_sweep(&mut self, s: &Session) {
        let m = s.kernel.machine();
        // One walk: the executable extents, and the leaves of those that
        // are W+X.
        let (mut swept, mut exec) = (BTreeSet::new(), Vec::new());
        for e in (m.pgtables.extents()).filter(|e| e.prot.executable()) {
            if e.prot.is_wx() {
                let leaves = m.pgtables.leaves_in(e.va, e.end());
                swept.extend(leaves.map(|l| (l.va, l.level)));
            }
            exec.push((e.va, e.pfn, e.pages));
        }
        let kept: BTreeSet<_> = m.pgtables.wx_leaves().collect();
        assert_eq!(
            swept, kept,
            "W^X bookkeeping of the vmalloc page tables drifted"
        );
        let swept: BTreeSet<_> = (m.dmap.leaves_where(Prot::is_wx).into_iter())
            .map(|l| (l.0, l.1))
            .collect();
        let kept: BTreeSet<_> = m.dmap.wx_leaves().collect();
        assert_eq!(swept, kept, "W^X bookkeeping of the direct map drifted");
        // The map's entries are pieces of extents: the same pages once
        // joined (the protection aside, on both sides).
        let kept = (self.exec.iter()).map(|(&va, &(pfn, pages))| (va, pfn, pages));
        assert_eq!(
            joined(exec),
            joined(kept),
            "executable-page tracking drifted"
        );
        // The reverse map holds exactly the executable vas of each frame:
        // each is there (below), and there are no more entries than them.
        let pages: u64 = (self.exec.iter())
            .map(|(_, &(pfn0, n))| n.min((self.rmap.len() as u64).saturating_sub(pfn0)))
            .sum();
        assert_eq!(
            self.rmap_entries, pages,
            "the executable reverse map drifted"
        );
        let ids = |i: usize| s.prog_id(crate::kernel::Prog(i as u32)).0;
        let images = s.kernel.images();
        let mut over = Vec::new();
        for (&leaf, &(pfn0, pages)) in &self.exec {
            let passed = passed_at_once(m, images, leaf, pfn0, pages, &mut over);
            for i in 0..pages {
                let (va, pfn) = (leaf + i * PAGE_SIZE, pfn0 + i);
                assert!(
                    *self.rmap.get(pfn as usize) == va
                        || self.rmap_more.get(&pfn).is_some_and(|v| v.contains(&va)),
                    "rmap drifted at {va:#x}"
                );
                if !passed.contains(&va) && !self.content_reported.contains(&va) {
                    let msg = self.verify_page(m, images, &over, &ids, va, pfn);
                    assert!(
                        msg.is_none(),
                        "incremental executable-content check missed: {msg:?}"
                    );
                }
                if m.dmap.prot(pfn).writable() {
                    assert!(
                        self.alias_reported.contains(&pfn),
                        "incremental alias check missed pfn {pfn:#x}"
                    );
                }
            }
        }
    }

    /// Oracle 6, after the teardown and `vm_unmap_aliases()`: every frame is
    /// free or was reported, no virtual area is left busy or unpurged, and
    /// every free frame's direct-map alias is back to its default (RW, NX) —
    /// a page freed with a read-only alias faults its next user's first store
    /// through the linear map, which is what `VM_FLUSH_RESET_PERMS` (or a
    /// driver's `set_memory_rw()` before `vfree()`) prevents.
    pub fn check_leaks(&self, s: &Session, out: &mut Vec<Finding>) {
        let m = s.kernel.machine();
        let leak = |message: String| Finding {
            op: None,
            oracle: Oracle::Leak,
            kernel: s.name(),
            message,
        };
        let mut v = s.kernel.vmap_view();
        // The kernel's own cache is not a leak: its areas and their frames.
        let cached = s.kernel.cached();
        v.busy
            .retain(|&(start, _)| !cached.iter().any(|r| r.start == start));
        let kept: BTreeSet<u64> = (cached.iter())
            .flat_map(|r| m.pgtables.leaves_in(r.start, r.start + r.size))
            .flat_map(|l| l.pfn..l.pfn + l.level.size() / PAGE_SIZE)
            .collect();
        if !v.busy.is_empty() || !v.unpurged.is_empty() {
            let list: Vec<String> = (v.busy.iter().map(|r| (r, "busy")))
                .chain(v.unpurged.iter().map(|r| (r, "unpurged")))
                .take(4)
                .map(|((a, b), what)| format!("{a:#x}-{b:#x} {what}"))
                .collect();
            out.push(leak(format!(
                "after freeing everything and vm_unmap_aliases(), {} vmap areas remain ({}{})\n",
                v.busy.len() + v.unpurged.len(),
                list.join(", "),
                if v.busy.len() + v.unpurged.len() > 4 {
                    ", …"
                } else {
                    ""
                }
            )));
        }
        let stale: Vec<(u64, Prot)> = (m.dmap.leaves_where(|p| p != Prot::PAGE_KERNEL))
            .into_iter()
            .flat_map(|(first, level, prot)| (first..first + level.pages()).map(move |p| (p, prot)))
            .filter(|&(pfn, _)| m.page_is_free(pfn))
            .collect();
        if let Some(&(pfn, prot)) = stale.first() {
            out.push(Finding {
                op: None,
                oracle: Oracle::AliasCoherence,
                kernel: s.name(),
                message: format!(
                    "after freeing everything, {} free pages have a direct-map alias that is not the default, first pfn {pfn:#x} at {:016x} ({prot:?}): a set_memory_*() nothing undid before the free\n",
                    stale.len(),
                    crate::machine::consts::pfn_to_virt(pfn)
                ),
            });
        }
        let reported: u64 = m.leaked_blocks().iter().map(|&(_, o)| 1u64 << o).sum();
        let free = m.nr_free_pages();
        if free + reported + kept.len() as u64 != m.nr_pages() {
            let held: Vec<String> = (0..m.nr_pages())
                .filter(|&p| {
                    !m.page_is_free(p)
                        && !kept.contains(&p)
                        && !m
                            .leaked_blocks()
                            .iter()
                            .any(|&(b, o)| p >= b && p < b + (1 << o))
                })
                .take(8)
                .map(|p| format!("{p:#x}"))
                .collect();
            out.push(Finding {
                op: None,
                oracle: Oracle::Leak,
                kernel: s.name(),
                message: format!(
                    "after freeing everything, {} pages are neither free nor reported bad (pfns {}…)\n",
                    m.nr_pages() - free - reported - kept.len() as u64,
                    held.join(", ")
                ),
            });
        }
    }
}

/// The pages of the run of `pages` executable pages from `va` (mapping
/// frames from `pfn` on) that pass [`Invariants::verify_page`] whatever it
/// would find page by page, as a range of their addresses, with `over` left
/// holding the live images over the run ([`live_images_over`]) for the
/// pages that are not: all of them when every frame is INT3 (what
/// verify_page accepts, live text and headers, it blanks to INT3 before it
/// looks), else those [`text_pages_intact`] finds.
fn passed_at_once(
    m: &Machine,
    images: &[ImageSlot],
    va: u64,
    pfn: u64,
    pages: u64,
    over: &mut Vec<u32>,
) -> std::ops::Range<u64> {
    let end = va + pages * PAGE_SIZE;
    if m.frames.all_fill(pfn, pages, 0xcc) {
        return va..end;
    }
    live_images_over(images, va, end, over);
    text_pages_intact(m, images, over, va, pfn, pages)
}

/// The indices, in order, of the live images whose allocation (header to
/// end) overlaps `lo..hi`, into `out`: what [`Invariants::verify_page`] asks
/// of each page of a run, asked once for the run.
fn live_images_over(images: &[ImageSlot], lo: u64, hi: u64, out: &mut Vec<u32>) {
    out.clear();
    out.extend((images.iter().enumerate()).filter_map(|(i, s)| {
        let img = &s.image;
        (s.live && img.header < hi && img.header + img.alloc_size > lo).then_some(i as u32)
    }));
}

/// The pages of the run of `pages` executable pages from `va` (mapping
/// frames from `pfn` on) that [`Invariants::verify_page`] passes by its fast
/// path, as a range of their addresses, found for the run at once: where one
/// live image is over the whole run (`over`, [`live_images_over`]), the pages
/// inside its text, if each of their frames holds that page of the text
/// itself. Empty otherwise (the pages are then verified one by one).
fn text_pages_intact(
    m: &Machine,
    images: &[ImageSlot],
    over: &[u32],
    va: u64,
    pfn: u64,
    pages: u64,
) -> std::ops::Range<u64> {
    let &[i] = over else { return 0..0 };
    let img = &images[i as usize].image;
    let r = img.text_range();
    let (lo, hi) = (
        r.start.max(va).next_multiple_of(PAGE_SIZE),
        r.end.min(va + pages * PAGE_SIZE) & !(PAGE_SIZE - 1),
    );
    if lo >= hi {
        return 0..0;
    }
    let first = pfn + (lo - va) / PAGE_SIZE;
    let k = (lo - img.text_start) as usize;
    if (m.frames).holds_text_frames(first, (hi - lo) / PAGE_SIZE, &img.text, k) {
        lo..hi
    } else {
        0..0
    }
}

/// The pages of `runs` (va, first pfn, pages; a va maps one frame, so runs
/// that overlap agree there), each once, as runs in address order.
fn disjoint(mut runs: Vec<(u64, u64, u64)>) -> Vec<(u64, u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64, u64)> = Vec::new();
    let mut covered = 0;
    for (va, pfn, pages) in runs {
        let end = va + pages * PAGE_SIZE;
        let lo = va.max(covered);
        if lo < end {
            out.push((lo, pfn + (lo - va) / PAGE_SIZE, (end - lo) / PAGE_SIZE));
            covered = end;
        }
    }
    joined(out)
}

/// Runs of pages (va, first pfn, pages), in address order, with each run
/// that carries on where the one before stops (the next page, the next
/// frame) joined to it.
fn joined(runs: impl IntoIterator<Item = (u64, u64, u64)>) -> Vec<(u64, u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = Vec::new();
    for (va, pfn, pages) in runs {
        match out.last_mut() {
            Some((v, p, n)) if *v + *n * PAGE_SIZE == va && *p + *n == pfn => *n += pages,
            _ => out.push((va, pfn, pages)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reverse map of executable frames: a frame mapped executable at
    /// several vas (an alias a quirk or a driver made) lists them all, and
    /// each removal takes out exactly its va, whichever was first.
    #[test]
    fn the_reverse_map_keeps_every_executable_va_of_a_frame() {
        let mut inv = Invariants {
            rmap: LazyArray::new(16),
            ..Default::default()
        };
        let vas = |inv: &Invariants, pfn| {
            let mut out = Vec::new();
            inv.exec_vas(pfn, &mut out);
            let mut out: Vec<u64> = out.into_iter().map(|(va, _, _)| va).collect();
            out.sort_unstable();
            out
        };
        let (a, b, c) = (0x1000, 0x2000, 0x3000);
        for va in [a, b, c] {
            inv.rmap_add(5, va);
        }
        inv.rmap_add(6, a);
        inv.rmap_add(99, a);
        assert_eq!(vas(&inv, 5), [a, b, c]);
        assert!(
            !inv.rmap_more.contains_key(&99),
            "past the end of memory: untracked"
        );
        inv.rmap_remove(5, b);
        assert_eq!(vas(&inv, 5), [a, c]);
        inv.rmap_remove(5, a);
        assert_eq!(vas(&inv, 5), [c]);
        assert!(inv.rmap_more.is_empty(), "no empty lists kept");
        inv.rmap_remove(5, 0x4000);
        assert_eq!(vas(&inv, 5), [c], "a va the frame never had");
        inv.rmap_remove(5, c);
        assert_eq!(vas(&inv, 5), [0u64; 0]);
        assert!(inv.rmap_more.is_empty());
        assert_eq!(vas(&inv, 6), [a]);
        inv.rmap_remove(99, a);
    }

    /// A program run that fetched bytes other than the JIT's text is
    /// reported where they first differ, even if both kernels fetched the
    /// same (the differential comparison would not see it); its own text,
    /// whole or its first bytes, is not.
    #[test]
    fn a_run_that_fetched_other_bytes_than_the_text_is_reported() {
        use crate::harness::op::ProgId;
        use crate::kernel::KernelKind;
        use crate::kernel::Quirks;
        let mut s = Session::new(KernelKind::Optimised, Default::default(), Quirks::NONE);
        let load = Op::ProgLoad {
            len: 100,
            align: 1,
            rand: 0,
            classic: false,
        };
        assert!(s.step(&load).oopses.is_empty());
        let text = s.kernel.images()[0].image.text.to_vec();
        let run = Op::ProgRun { prog: ProgId(0) };
        let findings = |bytes: Vec<u8>| {
            let step = Step {
                obs: Obs::Bytes(bytes),
                oopses: vec![],
            };
            let mut out = Vec::new();
            let mut o = Out {
                out: &mut out,
                op: Some(1),
                kernel: "optimised",
            };
            Invariants::check_obs(&s, &run, &step, &mut o);
            out.into_iter().map(|f| f.message).collect::<Vec<_>>()
        };
        assert!(findings(text.clone()).is_empty());
        assert!(findings(text[..10].to_vec()).is_empty());
        let mut bad = text.clone();
        bad[42] ^= 0xff;
        assert_eq!(
            findings(bad.clone()),
            [format!(
                "bpf_prog_run(prog0) fetched {:#04x} at +42 where the JIT wrote {:#04x}\n",
                bad[42], text[42]
            )]
        );
    }

    /// An op that changes nothing (`direct_map_stats`), stepped as op
    /// `index`, and the oracles after it: what a test changed behind the
    /// kernel's back is then looked at.
    fn after_nothing(s: &mut Session, inv: &mut Invariants, index: usize, out: &mut Vec<Finding>) {
        let nothing = Op::DirectMapStats;
        let step = s.step(&nothing);
        inv.after_op(s, index, &nothing, &step, out);
    }

    /// The optimised kernel after one 100-byte program's load, checked clean
    /// by the oracles that then go on watching it.
    fn one_program_checked() -> (Session, Invariants, Vec<Finding>) {
        program_checked(100)
    }

    /// [`one_program_checked`] with a program of `len` bytes.
    fn program_checked(len: u32) -> (Session, Invariants, Vec<Finding>) {
        use crate::kernel::{KernelKind, Quirks};
        let mut s = Session::new(KernelKind::Optimised, Default::default(), Quirks::NONE);
        let mut inv = Invariants::default();
        let mut out = Vec::new();
        let load = Op::ProgLoad {
            len,
            align: 1,
            rand: 0,
            classic: false,
        };
        let step = s.step(&load);
        inv.after_op(&mut s, 0, &load, &step, &mut out);
        assert!(out.is_empty(), "{out:?}");
        (s, inv, out)
    }

    /// A new region that maps a frame the page allocator holds free is
    /// found, the frame named: a free frame in an extent sends the region
    /// check page by page (`private` and the owners show nothing here).
    #[test]
    fn a_new_region_over_a_free_frame_is_found() {
        use crate::kernel::RegionKind;
        let (mut s, mut inv, mut out) = one_program_checked();
        let op = Op::Kvmalloc {
            size: 4 * PAGE_SIZE,
            nofail: false,
        };
        let step = s.step(&op);
        let vmalloc = |r: &Region| matches!(r.kind, RegionKind::Vmalloc(_));
        let r = s.kernel.regions().into_iter().find(vmalloc).unwrap();
        let va = r.start + 2 * PAGE_SIZE;
        let m = s.kernel.machine_mut();
        let pfn = m.pgtables.vmalloc_to_pfn(va).unwrap();
        // Behind the kernel's back, before the oracles look.
        m.__free_pages(pfn, 0);
        assert!(m.page_is_free(pfn) && m.mm.page(pfn).private() == 0);
        inv.after_op(&mut s, 1, &op, &step, &mut out);
        let found: Vec<_> = out.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            found,
            [format!(
                "frame pfn {pfn:#x} mapped at {va:016x} is free in the page allocator\n"
            )]
        );
    }

    /// A direct-map change alone — no page-table change, no write — that
    /// makes a program page's alias writable is found after that op.
    #[test]
    fn a_writable_alias_of_program_text_is_found_when_the_direct_map_changes() {
        let (mut s, mut inv, mut out) = one_program_checked();
        let text = s.kernel.images()[0].image.text_start & !(PAGE_SIZE - 1);
        let pfn = s.kernel.machine().pgtables.vmalloc_to_pfn(text).unwrap();
        let m = s.kernel.machine_mut();
        m.dmap.change(pfn, 1, Prot::RW, Prot::NONE);
        after_nothing(&mut s, &mut inv, 1, &mut out);
        let found: Vec<_> = out.iter().map(|f| (f.op, f.oracle)).collect();
        assert_eq!(found, [(Some(1), Oracle::AliasCoherence)]);
        assert!(
            out[0]
                .message
                .starts_with(&format!("executable page {text:016x} (pfn {pfn:#x})")),
            "{}",
            out[0].message
        );
    }

    /// A direct-map change over two executable pages' frames names each
    /// page with its own frame (the alias check walks a run page by page).
    #[test]
    fn a_writable_alias_of_two_pack_pages_names_each() {
        let (mut s, mut inv, mut out) = one_program_checked();
        let text = s.kernel.images()[0].image.text_start & !(PAGE_SIZE - 1);
        let pt = &s.kernel.machine().pgtables;
        let pfn = pt.vmalloc_to_pfn(text).unwrap();
        assert_eq!(pt.vmalloc_to_pfn(text + PAGE_SIZE), Some(pfn + 1));
        s.kernel
            .machine_mut()
            .dmap
            .change(pfn, 2, Prot::RW, Prot::NONE);
        after_nothing(&mut s, &mut inv, 1, &mut out);
        let named: Vec<String> = (out.iter())
            .map(|f| f.message.split(" has").next().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            named,
            [
                format!("executable page {text:016x} (pfn {pfn:#x})"),
                format!(
                    "executable page {:016x} (pfn {:#x})",
                    text + PAGE_SIZE,
                    pfn + 1
                ),
            ]
        );
    }

    /// Frames mapped executable at a second va too are tracked at both,
    /// through the reverse map's page-by-page paths (a frame that already
    /// has an executable va), and at one again once the second goes: the
    /// end-of-run sweep, which recomputes it all, agrees after each step.
    #[test]
    fn frames_mapped_executable_twice_are_tracked_at_both_vas() {
        let (mut s, mut inv, mut out) = one_program_checked();
        // Three frames from the middle of the program's pack (the pack
        // starts at pfn 0: frames further in tell a wrong offset from none).
        let text = s.kernel.images()[0].image.text_start & !(PAGE_SIZE - 1);
        let pt = &s.kernel.machine().pgtables;
        let pfn = pt.vmalloc_to_pfn(text + 100 * PAGE_SIZE).unwrap();
        let pfns = [pfn, pfn + 1, pfn + 2];
        assert!(pfn >= 100 && pfns.iter().all(|&p| inv.rmap.get(p as usize) != &0));
        let alias = VMALLOC_START + (1 << 30);
        let pt = &mut s.kernel.machine_mut().pgtables;
        pt.map_ptes(alias, &pfns, Prot::PAGE_KERNEL_ROX);
        after_nothing(&mut s, &mut inv, 1, &mut out);
        inv.final_sweep(&s);
        assert_eq!(
            inv.rmap_entries,
            inv.exec.values().map(|r| r.1).sum::<u64>()
        );
        for (i, &p) in pfns.iter().enumerate() {
            let more = inv.rmap_more.get(&p).map(Vec::as_slice);
            assert_eq!(
                more,
                Some(&[alias + i as u64 * PAGE_SIZE][..]),
                "pfn {p:#x}"
            );
        }
        let pt = &mut s.kernel.machine_mut().pgtables;
        pt.unmap(alias, 3 * PAGE_SIZE);
        after_nothing(&mut s, &mut inv, 2, &mut out);
        inv.final_sweep(&s);
        assert!(inv.rmap_more.is_empty());
        assert!(out.is_empty(), "{out:?}");
        // Mapped twice again, and now the first mapping goes: the alias
        // takes its place in the reverse map, and the count follows.
        let first = text + 100 * PAGE_SIZE;
        let pt = &mut s.kernel.machine_mut().pgtables;
        pt.map_ptes(alias, &pfns, Prot::PAGE_KERNEL_ROX);
        after_nothing(&mut s, &mut inv, 3, &mut out);
        let pt = &mut s.kernel.machine_mut().pgtables;
        pt.unmap(first, 3 * PAGE_SIZE);
        after_nothing(&mut s, &mut inv, 4, &mut out);
        for (i, &p) in pfns.iter().enumerate() {
            assert_eq!(*inv.rmap.get(p as usize), alias + i as u64 * PAGE_SIZE);
        }
        assert!(inv.rmap_more.is_empty());
        assert_eq!(
            inv.rmap_entries,
            inv.exec.values().map(|r| r.1).sum::<u64>()
        );
    }

    /// A byte of a live program's text overwritten in its frame is found
    /// after the op that wrote it, and named as such.
    #[test]
    fn an_overwritten_byte_of_live_text_is_named() {
        let (mut s, mut inv, mut out) = one_program_checked();
        let a = s.kernel.images()[0].image.text_start + 10;
        let pfn = s.kernel.machine().pgtables.vmalloc_to_pfn(a).unwrap();
        let off = (a % PAGE_SIZE) as usize;
        s.kernel.machine_mut().frames.write(pfn, off, &[0x90]);
        after_nothing(&mut s, &mut inv, 1, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|f| (f.op, f.oracle, f.message.clone()))
            .collect();
        assert_eq!(
            got,
            [(
                Some(1),
                Oracle::ExecutableContent,
                format!(
                    "executable byte 0x90 at {a:016x} (pfn {pfn:#x} +{off:#x}): a live program's text overwritten\n"
                )
            )]
        );
    }

    /// A byte overwritten on a whole page inside a live program's text, among
    /// pages that hold the text itself (the run the content oracle passes at
    /// once), is found after the op that wrote it.
    #[test]
    fn an_overwritten_byte_on_a_whole_page_of_live_text_is_found() {
        let (mut s, mut inv, mut out) = program_checked(5 * PAGE_SIZE as u32);
        let text = s.kernel.images()[0].image.text_start;
        let a = (text + 2 * PAGE_SIZE).next_multiple_of(PAGE_SIZE) + 10;
        let pfn = s.kernel.machine().pgtables.vmalloc_to_pfn(a).unwrap();
        s.kernel.machine_mut().frames.write(pfn, 10, &[0x90]);
        after_nothing(&mut s, &mut inv, 1, &mut out);
        let got: Vec<_> = out.iter().map(|f| (f.op, f.oracle)).collect();
        assert_eq!(got, [(Some(1), Oracle::ExecutableContent)], "{out:?}");
        assert!(out[0].message.contains("a live program's text overwritten"));
    }

    /// The live images over a run are those whose allocation overlaps it:
    /// not one that ends where the run starts or starts where it ends, and
    /// no freed one.
    #[test]
    fn the_live_images_over_a_run_are_those_it_overlaps() {
        use crate::kernel::{Image, Text};
        let slot = |header, alloc_size, live| ImageSlot {
            image: Image {
                header,
                header_len: 4,
                text_start: header + 16,
                text: Text::new(1, 8),
                alloc_size,
            },
            live,
        };
        let images = [
            slot(0x1000, 0x1000, true),
            slot(0x2000, 0x800, true),
            slot(0x2800, 0x1000, false),
            slot(0x2f00, 0x200, true),
            slot(0x3000, 0x2000, true),
        ];
        let mut over = vec![7];
        live_images_over(&images, 0x2000, 0x3000, &mut over);
        assert_eq!(over, [1, 3]);
    }

    /// The pages of a run that the content oracle passes at once are exactly
    /// the whole pages inside the text of the one live image over it, and
    /// none once one of their frames holds anything but that page of the text.
    #[test]
    fn the_whole_pages_of_intact_text_in_a_run_pass_at_once() {
        let (mut s, _, _) = program_checked(5 * PAGE_SIZE as u32);
        let img = s.kernel.images()[0].image.clone();
        let va = img.header & !(PAGE_SIZE - 1);
        let pages = (img.header + img.alloc_size - va).div_ceil(PAGE_SIZE);
        let pt = &s.kernel.machine().pgtables;
        let pfn = pt.vmalloc_to_pfn(va).unwrap();
        assert!((0..pages).all(|i| pt.vmalloc_to_pfn(va + i * PAGE_SIZE) == Some(pfn + i)));
        let images = s.kernel.images();
        let mut over = Vec::new();
        live_images_over(images, va, va + pages * PAGE_SIZE, &mut over);
        assert_eq!(over, [0]);
        let r = img.text_range();
        let inside: Vec<u64> = (0..pages)
            .map(|i| va + i * PAGE_SIZE)
            .filter(|&a| r.start <= a && a + PAGE_SIZE <= r.end)
            .collect();
        assert!(inside.len() >= 3 && inside[0] > va, "{inside:x?}");
        let m = s.kernel.machine();
        let intact = text_pages_intact(m, images, &over, va, pfn, pages);
        assert_eq!(intact, inside[0]..inside[inside.len() - 1] + PAGE_SIZE);
        let middle = pfn + (inside[1] - va) / PAGE_SIZE;
        s.kernel.machine_mut().frames.write(middle, 10, &[0x90]);
        let (m, images) = (s.kernel.machine(), s.kernel.images());
        assert_eq!(text_pages_intact(m, images, &over, va, pfn, pages), 0..0);
    }

    /// The final sweep verifies the whole pages of live text too: a byte
    /// changed there that the incremental check was never told of (the
    /// write dropped from the frames' log) is a drift it stops on.
    #[test]
    #[should_panic(expected = "incremental executable-content check missed")]
    fn the_final_sweep_finds_a_whole_page_of_text_changed_unseen() {
        let (mut s, mut inv, mut out) = program_checked(5 * PAGE_SIZE as u32);
        let text = s.kernel.images()[0].image.text_start;
        let a = (text + 2 * PAGE_SIZE).next_multiple_of(PAGE_SIZE) + 10;
        let pfn = s.kernel.machine().pgtables.vmalloc_to_pfn(a).unwrap();
        let frames = &mut s.kernel.machine_mut().frames;
        frames.write(pfn, 10, &[0x90]);
        frames.take_written();
        after_nothing(&mut s, &mut inv, 1, &mut out);
        assert!(out.is_empty(), "unseen: {out:?}");
        inv.final_sweep(&s);
    }

    /// INT3 is allowed in any executable byte, over a live program's text
    /// too (it traps; it runs nothing): a program page and the pack page
    /// after it wiped to INT3 are clean. One other byte in the run of INT3
    /// frames is found, named as neither text nor INT3.
    #[test]
    fn int3_passes_anywhere_and_one_other_byte_among_it_is_found() {
        let (mut s, mut inv, mut out) = one_program_checked();
        let img = s.kernel.images()[0].image.clone();
        let page = img.text_start & !(PAGE_SIZE - 1);
        assert!(img.header + img.alloc_size <= page + PAGE_SIZE, "one page");
        let pt = &s.kernel.machine().pgtables;
        let pfn = pt.vmalloc_to_pfn(page).unwrap();
        assert_eq!(pt.vmalloc_to_pfn(page + PAGE_SIZE), Some(pfn + 1));
        s.kernel.machine_mut().frames.fill_frames(pfn, 2, 0xcc);
        after_nothing(&mut s, &mut inv, 1, &mut out);
        assert!(out.is_empty(), "{out:?}");
        s.kernel.machine_mut().frames.fill_frames(pfn, 2, 0xcc);
        s.kernel.machine_mut().frames.write(pfn + 1, 7, &[0x90]);
        after_nothing(&mut s, &mut inv, 2, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|f| (f.op, f.oracle, f.message.clone()))
            .collect();
        let a = page + PAGE_SIZE + 7;
        assert_eq!(
            got,
            [(
                Some(2),
                Oracle::ExecutableContent,
                format!(
                    "executable byte 0x90 at {a:016x} (pfn {:#x} +0x7): neither program text nor INT3\n",
                    pfn + 1
                )
            )]
        );
    }

    /// `--oracle` takes each oracle by its slug, and nothing else.
    #[test]
    fn oracles_go_by_their_slugs_on_the_command_line() {
        let slugs: Vec<String> = Oracle::ALL.iter().map(|o| o.slug()).collect();
        assert_eq!(
            slugs,
            [
                "bad-page-state",
                "oops",
                "wx",
                "executable-content",
                "alias-coherence",
                "overlap",
                "leak",
                "fresh-page",
                "vmap-space",
                "differential",
                "predictor-flush"
            ]
        );
        for o in Oracle::ALL {
            assert_eq!(Oracle::from_slug(&o.slug()), Some(o));
        }
        assert_eq!(Oracle::from_slug("W^X"), None);
        assert_eq!(Oracle::from_slug("bad page state"), None);
    }
}
