//! Kernel page tables of the vmalloc and module ranges: PTE (4 KiB) and PMD
//! (2 MiB) leaves, each with its protection.
//!
//! Page-table pages themselves are not drawn from the modelled memory.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::consts::{PAGE_SHIFT, PAGE_SIZE, PAGES_PER_PMD, PMD_SHIFT, PMD_SIZE};
use super::prot::Prot;

/// The level of a leaf entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Pte,
    Pmd,
}

impl Level {
    pub fn size(self) -> u64 {
        match self {
            Level::Pte => PAGE_SIZE,
            Level::Pmd => PMD_SIZE,
        }
    }
}

/// A leaf entry found by a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Virtual address the leaf starts at.
    pub va: u64,
    /// First pfn it maps.
    pub pfn: u64,
    pub prot: Prot,
    pub level: Level,
}

const PTE_VALID: u64 = 1 << 11;

#[derive(Clone)]
enum Pmd {
    Leaf {
        pfn: u64,
        prot: Prot,
    },
    /// 512 PTEs: `pfn << 12 | PTE_VALID | prot`, 0 for `pte_none`.
    Table {
        ptes: Box<[u64; 512]>,
        used: u16,
    },
}

/// The page tables below `VMALLOC_START` and `MODULES_VADDR`.
#[derive(Clone, Default)]
pub struct PageTables {
    pmds: BTreeMap<u64, Pmd>,
    log: Log,
    /// PMD leaves split into PTEs by CPA.
    pub pmd_splits: u64,
    /// PTE tables collapsed back into PMD leaves by CPA
    /// ([`PageTables::collapse_pmd`]).
    pub pmd_collapses: u64,
}

/// What the oracles are told of the leaves' changes, kept by [`Log::note`]
/// at each (a field of its own, so that a walk of the tables can note as it
/// changes them).
#[derive(Clone, Default)]
struct Log {
    /// Leaves that are writable and executable at once (kept current at every
    /// change, so the W^X oracle is O(1) per op).
    wx: BTreeSet<(u64, Level)>,
    /// Virtual ranges where an executable leaf appeared, disappeared or
    /// changed since the last [`PageTables::take_exec_changed`].
    exec_changed: Vec<(u64, u64)>,
    /// Leaves that appeared or disappeared, ever (a protection change or a
    /// split counts not): half of [`Machine::region_epoch`](super::Machine::region_epoch).
    presence_changes: u64,
}

thread_local! {
    /// Empty PTE tables that dropped page tables left, for the next tables
    /// on this thread: a fuzz execution boots two machines and maps the same
    /// few dozen tables each time, a 4 KiB `calloc()` and `free()` apiece
    /// otherwise. Every entry of each is `pte_none`.
    static EMPTY_TABLES: RefCell<Vec<Box<[u64; 512]>>> = const { RefCell::new(Vec::new()) };
}

/// At most this many empty tables are kept (1 MiB).
const MAX_EMPTY_TABLES: usize = 256;

/// A PTE table of 512 `pte_none` entries: a kept one, or a new one.
fn empty_table() -> Box<[u64; 512]> {
    let kept = EMPTY_TABLES.with_borrow_mut(Vec::pop);
    kept.unwrap_or_else(|| Box::new([0; 512]))
}

/// Keeps `ptes` for [`empty_table`] if `used` says it is empty.
fn keep_if_empty(ptes: Box<[u64; 512]>, used: u16) {
    if used != 0 {
        return;
    }
    debug_assert!(ptes.iter().all(|&e| e == 0), "a table with none used");
    // A thread being torn down keeps nothing.
    let _ = EMPTY_TABLES.try_with(|t| {
        let mut t = t.borrow_mut();
        if t.len() < MAX_EMPTY_TABLES {
            t.push(ptes);
        }
    });
}

impl Drop for PageTables {
    /// Gives the empty PTE tables to [`EMPTY_TABLES`].
    fn drop(&mut self) {
        for (_, pmd) in std::mem::take(&mut self.pmds) {
            if let Pmd::Table { ptes, used } = pmd {
                keep_if_empty(ptes, used);
            }
        }
    }
}

fn pmd_index(va: u64) -> u64 {
    va >> PMD_SHIFT
}
fn pte_index(va: u64) -> usize {
    ((va >> PAGE_SHIFT) % PAGES_PER_PMD) as usize
}

impl Log {
    /// Keeps the W^X set and the executable-change log current for the leaf
    /// at `va`, which had protection `old` (if any) and now has `prot`.
    fn note(&mut self, va: u64, level: Level, old: Option<Prot>, prot: Option<Prot>) {
        self.presence_changes += u64::from(old.is_some() != prot.is_some());
        if old.is_some_and(Prot::executable) || prot.is_some_and(Prot::executable) {
            match self.exec_changed.last_mut() {
                Some((s, len)) if *s + *len == va => *len += level.size(),
                _ => self.exec_changed.push((va, level.size())),
            }
        }
        match prot {
            Some(p) if p.is_wx() => {
                self.wx.insert((va, level));
            }
            _ if old.is_some_and(Prot::is_wx) => {
                self.wx.remove(&(va, level));
            }
            // (The set is nearly always empty: ask it only when it is not.)
            _ => debug_assert!(self.wx.is_empty() || !self.wx.contains(&(va, level))),
        }
    }

    /// [`Log::note`] of each of `n` PTEs from `va` on, all of which had
    /// protection `old` and now have `prot`, in one step.
    fn note_ptes(&mut self, va: u64, n: u64, old: Option<Prot>, prot: Option<Prot>) {
        if n == 0 {
            return;
        }
        if old.is_some_and(Prot::is_wx) || prot.is_some_and(Prot::is_wx) {
            for i in 0..n {
                self.note(va + i * PAGE_SIZE, Level::Pte, old, prot);
            }
            return;
        }
        self.presence_changes += n * u64::from(old.is_some() != prot.is_some());
        if old.is_some_and(Prot::executable) || prot.is_some_and(Prot::executable) {
            let size = n * PAGE_SIZE;
            match self.exec_changed.last_mut() {
                Some((s, len)) if *s + *len == va => *len += size,
                _ => self.exec_changed.push((va, size)),
            }
        }
        debug_assert!(
            (self
                .wx
                .range((va, Level::Pte)..(va + n * PAGE_SIZE, Level::Pte)))
            .all(|&(_, level)| level != Level::Pte)
        );
    }
}

impl PageTables {
    /// `vmap_pte_range()`: install one PTE. The slot must be `pte_none`.
    pub fn map_pte(&mut self, va: u64, pfn: u64, prot: Prot) {
        self.map_ptes(va, &[pfn], prot);
    }

    /// `vmap_pages_pte_range()` over as many PMDs as it takes: one PTE for
    /// each of `pfns`, from `va` on. Every slot must be `pte_none`. The same
    /// as [`PageTables::map_pte`] of each in turn, with each PMD looked up once.
    pub fn map_ptes(&mut self, va: u64, pfns: &[u64], prot: Prot) {
        debug_assert!(va % PAGE_SIZE == 0);
        let mut done = 0;
        while done < pfns.len() {
            let at = va + done as u64 * PAGE_SIZE;
            let first = pte_index(at);
            let n = (PAGES_PER_PMD as usize - first).min(pfns.len() - done);
            let slot = self
                .pmds
                .entry(pmd_index(at))
                .or_insert_with(|| Pmd::Table {
                    ptes: empty_table(),
                    used: 0,
                });
            let Pmd::Table { ptes, used } = slot else {
                panic!("vmap_pte_range: {at:#x} is under a PMD leaf");
            };
            let slice = &mut ptes[first..first + n];
            // (One pass with no early exit; the search only to name it.)
            if slice.iter().fold(false, |any, &e| any | (e != 0)) {
                let j = slice.iter().position(|&e| e != 0).expect("one is");
                let pte_va = at + j as u64 * PAGE_SIZE;
                panic!("vmap_pte_range: pte at {pte_va:#x} is not none");
            }
            for (e, &pfn) in slice.iter_mut().zip(&pfns[done..done + n]) {
                *e = pfn << PAGE_SHIFT | PTE_VALID | prot.bits() as u64;
            }
            *used += n as u16;
            done += n;
        }
        self.log.note_ptes(va, pfns.len() as u64, None, Some(prot));
    }

    /// `vmap_try_huge_pmd()`: install one PMD leaf (`va` and `pfn` PMD-aligned).
    /// An empty PTE table in the slot is freed first (`pmd_free_pte_page`).
    pub fn map_pmd(&mut self, va: u64, pfn: u64, prot: Prot) {
        debug_assert!(va % PMD_SIZE == 0 && pfn % PAGES_PER_PMD == 0);
        match self.pmds.get(&pmd_index(va)) {
            None | Some(Pmd::Table { used: 0, .. }) => {}
            Some(_) => panic!("vmap_try_huge_pmd: pmd at {va:#x} is in use"),
        }
        let old = self.pmds.insert(pmd_index(va), Pmd::Leaf { pfn, prot });
        if let Some(Pmd::Table { ptes, used }) = old {
            keep_if_empty(ptes, used);
        }
        self.log.note(va, Level::Pmd, None, Some(prot));
    }

    /// `vunmap_range()`: clear every leaf in `va..va+size`.
    pub fn unmap(&mut self, va: u64, size: u64) {
        let mut cur = va;
        let end = va + size;
        while cur < end {
            let idx = pmd_index(cur);
            let next_pmd = (idx + 1) << PMD_SHIFT;
            match self.pmds.get_mut(&idx) {
                None => {}
                Some(&mut Pmd::Leaf { prot, .. }) => {
                    // vunmap_pmd_range: pmd_clear_huge() on the whole leaf.
                    self.pmds.remove(&idx);
                    self.log
                        .note(idx << PMD_SHIFT, Level::Pmd, Some(prot), None);
                }
                Some(Pmd::Table { ptes, used }) => {
                    let (lo, n) = (
                        pte_index(cur),
                        (end.min(next_pmd) - cur).div_ceil(PAGE_SIZE),
                    );
                    let slice = &mut ptes[lo..lo + n as usize];
                    let first = slice[0];
                    let same = |ok: bool, &e: &u64| ok & (e != 0) & ((e ^ first) & 0xff == 0);
                    if first != 0 && slice.iter().fold(true, same) {
                        // All present with one protection (a vmalloc area's
                        // PTEs): one note, one clear.
                        self.log
                            .note_ptes(cur, n, Some(Prot::from_bits(first as u8)), None);
                        slice.fill(0);
                        *used -= n as u16;
                        cur = next_pmd;
                        continue;
                    }
                    // Noted a run of present PTEs of one protection at a time.
                    let mut run: Option<(u64, u64, Prot)> = None;
                    for (k, e) in ptes[lo..lo + n as usize].iter_mut().enumerate() {
                        let a = cur + k as u64 * PAGE_SIZE;
                        let old = (*e != 0).then(|| Prot::from_bits(*e as u8));
                        match (&mut run, old) {
                            (Some((s, m, p)), Some(o)) if *p == o && *s + *m * PAGE_SIZE == a => {
                                *m += 1;
                            }
                            _ => {
                                if let Some((s, m, p)) = run.take() {
                                    self.log.note_ptes(s, m, Some(p), None);
                                }
                                run = old.map(|o| (a, 1, o));
                            }
                        }
                        if *e != 0 {
                            *e = 0;
                            *used -= 1;
                        }
                    }
                    if let Some((s, m, p)) = run {
                        self.log.note_ptes(s, m, Some(p), None);
                    }
                }
            }
            cur = next_pmd;
        }
    }

    /// Walks to the leaf that maps `va`.
    pub fn lookup(&self, va: u64) -> Option<Leaf> {
        match self.pmds.get(&pmd_index(va))? {
            Pmd::Leaf { pfn, prot } => Some(Leaf {
                va: va & !(PMD_SIZE - 1),
                pfn: *pfn,
                prot: *prot,
                level: Level::Pmd,
            }),
            Pmd::Table { ptes, .. } => {
                let e = ptes[pte_index(va)];
                (e != 0).then(|| Leaf {
                    va: va & !(PAGE_SIZE - 1),
                    pfn: e >> PAGE_SHIFT,
                    prot: Prot::from_bits(e as u8),
                    level: Level::Pte,
                })
            }
        }
    }

    /// `vmalloc_to_page()` (c0eb315ad971): at a PMD leaf the result is
    /// `pmd_page(*pmd) + ((addr & ~PMD_MASK) >> PAGE_SHIFT)`, a tail page when
    /// the leaf is backed by a compound page.
    pub fn vmalloc_to_pfn(&self, va: u64) -> Option<u64> {
        let leaf = self.lookup(va)?;
        Some(leaf.pfn + ((va - leaf.va) >> PAGE_SHIFT))
    }

    /// Sets the protection of the leaf that starts at `leaf.va`.
    pub fn set_prot(&mut self, leaf: Leaf, prot: Prot) {
        self.log
            .note(leaf.va, leaf.level, Some(leaf.prot), Some(prot));
        match self.pmds.get_mut(&pmd_index(leaf.va)) {
            Some(Pmd::Leaf { prot: p, .. }) if leaf.level == Level::Pmd => *p = prot,
            Some(Pmd::Table { ptes, .. }) if leaf.level == Level::Pte => {
                let e = &mut ptes[pte_index(leaf.va)];
                assert!(*e != 0, "set_prot on pte_none at {:#x}", leaf.va);
                *e = (*e & !7) | prot.bits() as u64;
            }
            _ => panic!("set_prot: no {:?} leaf at {:#x}", leaf.level, leaf.va),
        }
    }

    /// [`PageTables::set_prot`] of `prot.apply(set, clr)` on the PTE at `va`
    /// and on each one after it in the same PTE table, up to `max` in all,
    /// while they are present and map the frames after its frame (those
    /// whose protection would not change are left alone). Returns how many
    /// PTEs that run holds and whether any changed; 0 if `va` has no PTE.
    pub fn change_ptes(&mut self, va: u64, max: u64, set: Prot, clr: Prot) -> (u64, bool) {
        let Some(Pmd::Table { ptes, .. }) = self.pmds.get_mut(&pmd_index(va)) else {
            return (0, false);
        };
        let at = pte_index(va);
        let first = ptes[at] >> PAGE_SHIFT;
        let end = at + (max as usize).min(PAGES_PER_PMD as usize - at);
        let (mut n, mut changed) = (0, false);
        for (j, e) in ptes[at..end].iter_mut().enumerate() {
            if *e == 0 || *e >> PAGE_SHIFT != first + j as u64 {
                break;
            }
            let old = Prot::from_bits(*e as u8);
            let new = old.apply(set, clr);
            if new != old {
                *e = (*e & !7) | new.bits() as u64;
                self.log
                    .note(va + j as u64 * PAGE_SIZE, Level::Pte, Some(old), Some(new));
                changed = true;
            }
            n += 1;
        }
        (n, changed)
    }

    /// `split_large_page()` on a vmalloc PMD leaf: 512 PTEs with the same
    /// protection and consecutive pfns.
    pub fn split_pmd(&mut self, va: u64) {
        let idx = pmd_index(va);
        let Some(Pmd::Leaf { pfn, prot }) = self.pmds.get(&idx).cloned() else {
            panic!("split_pmd: no PMD leaf at {va:#x}");
        };
        let mut ptes = Box::new([0u64; 512]);
        for (i, e) in ptes.iter_mut().enumerate() {
            *e = (pfn + i as u64) << PAGE_SHIFT | PTE_VALID | prot.bits() as u64;
        }
        self.pmds.insert(idx, Pmd::Table { ptes, used: 512 });
        let base = idx << PMD_SHIFT;
        self.log.note(base, Level::Pmd, Some(prot), None);
        self.log.note_ptes(base, PAGES_PER_PMD, None, Some(prot));
        self.pmd_splits += 1;
    }

    /// `collapse_pmd_page()` (41d88484c71c, `arch/x86/mm/pat/set_memory.c`)
    /// on the PMD that maps `va`: a PTE table whose 512 entries are all
    /// present, carry the first one's flags and map consecutive pfns from a
    /// 2 MiB-aligned physical address becomes one PMD leaf again. The model's
    /// PTEs carry no `_PAGE_KERNEL_4K` (only `set_memory_4k()` sets it, and
    /// nothing here calls it) and the CPU has PSE. Returns whether it
    /// collapsed.
    pub fn collapse_pmd(&mut self, va: u64) -> bool {
        let idx = pmd_index(va);
        let Some(Pmd::Table { ptes, used: 512 }) = self.pmds.get(&idx) else {
            return false;
        };
        let first = ptes[0];
        let pfn = first >> PAGE_SHIFT;
        let same = |(i, &e): (usize, &u64)| e == first + ((i as u64) << PAGE_SHIFT);
        let prot = Prot::from_bits(first as u8);
        if !prot.present() || pfn % PAGES_PER_PMD != 0 || !ptes.iter().enumerate().all(same) {
            return false;
        }
        self.pmds.insert(idx, Pmd::Leaf { pfn, prot });
        let base = idx << PMD_SHIFT;
        self.log.note_ptes(base, PAGES_PER_PMD, Some(prot), None);
        self.log.note(base, Level::Pmd, None, Some(prot));
        self.pmd_collapses += 1;
        true
    }

    /// Every leaf, in address order.
    pub fn leaves(&self) -> impl Iterator<Item = Leaf> + '_ {
        self.leaves_in(0, u64::MAX)
    }

    /// Every mapped page, as extents in address order.
    pub fn extents(&self) -> ExtentsIn<'_> {
        self.extents_in(0, u64::MAX)
    }

    /// Leaves that are W+X right now, as kept by the incremental bookkeeping.
    pub fn wx_leaves(&self) -> impl Iterator<Item = (u64, Level)> + '_ {
        self.log.wx.iter().copied()
    }

    /// How many leaves appeared or disappeared since boot.
    pub fn presence_changes(&self) -> u64 {
        self.log.presence_changes
    }

    /// Ranges (start, length) where executable leaves changed since the
    /// last call.
    pub fn take_exec_changed(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.log.exec_changed)
    }

    /// The leaves that map some of `start..end`, in address order.
    pub fn leaves_in(&self, start: u64, end: u64) -> LeavesIn<'_> {
        let last = pmd_index(end.saturating_sub(1));
        LeavesIn {
            pmds: self.pmds.range(pmd_index(start)..=last),
            start,
            end,
            table: None,
        }
    }

    /// The pages of `start..end` (page-aligned) that are mapped, as extents
    /// in address order: [`PageTables::leaves_in`] clipped to the range, with
    /// neighbouring leaves of consecutive frames and one protection joined.
    pub fn extents_in(&self, start: u64, end: u64) -> ExtentsIn<'_> {
        debug_assert!(start % PAGE_SIZE == 0 && (end % PAGE_SIZE == 0 || end == u64::MAX));
        let last = pmd_index(end.saturating_sub(1));
        ExtentsIn {
            pmds: self.pmds.range(pmd_index(start)..=last),
            start,
            end,
            table: None,
            pending: None,
        }
    }
}

/// The entries of the PTE table at `base` that a walk of `start..end` visits.
fn table_span(base: u64, start: u64, end: u64) -> (usize, usize) {
    let lo = if base < start { pte_index(start) } else { 0 };
    let hi = if base + PMD_SIZE > end {
        pte_index(end - 1) + 1
    } else {
        512
    };
    (lo, hi)
}

/// Pages `va..va + pages * PAGE_SIZE` that map frames `pfn..pfn + pages`
/// with one protection: a run of leaves, PTEs or PMDs, that a walk finds one
/// after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub va: u64,
    pub pfn: u64,
    pub pages: u64,
    pub prot: Prot,
}

impl Extent {
    /// The first va after it.
    pub fn end(&self) -> u64 {
        self.va + self.pages * PAGE_SIZE
    }

    /// Does `next` carry on where it stops: the next page, the next frame,
    /// the same protection?
    fn continued_by(&self, next: &Extent) -> bool {
        next.va == self.end() && next.pfn == self.pfn + self.pages && next.prot == self.prot
    }
}

/// [`PageTables::extents_in`]: the walk of [`LeavesIn`], with each PTE table
/// scanned for runs rather than entries and the runs of neighbouring leaves
/// joined.
pub struct ExtentsIn<'a> {
    pmds: std::collections::btree_map::Range<'a, u64, Pmd>,
    start: u64,
    end: u64,
    /// The PTE table being walked: its first va, its entries, the next
    /// index, the end index, and how many entries from the next index on
    /// are not none (at most: 512 where the walk covers part of the table).
    table: Option<(u64, &'a [u64; 512], usize, usize, usize)>,
    /// The piece found after the extent last returned.
    pending: Option<Extent>,
}

impl ExtentsIn<'_> {
    /// The next PMD leaf (clipped to the range) or the next run of PTEs of
    /// consecutive frames and one protection in a table.
    fn piece(&mut self) -> Option<Extent> {
        loop {
            if let Some((base, ptes, i, hi, left)) = &mut self.table {
                while *left > 0 && *i < *hi && ptes[*i] == 0 {
                    *i += 1;
                }
                if *left > 0 && *i < *hi {
                    let (k, e) = (*i, ptes[*i]);
                    let next = |j: usize| e + (((j - k) as u64) << PAGE_SHIFT);
                    let mut j = k + 1;
                    // Eight entries a step while all eight carry the run on
                    // (one pass with no early exit), then one at a time.
                    while j + 8 <= *hi
                        && (ptes[j..j + 8].iter().enumerate())
                            .fold(true, |ok, (t, &p)| ok & (p == next(j + t)))
                    {
                        j += 8;
                    }
                    while j < *hi && ptes[j] == next(j) {
                        j += 1;
                    }
                    *i = j;
                    *left = left.saturating_sub(j - k);
                    return Some(Extent {
                        va: *base + k as u64 * PAGE_SIZE,
                        pfn: e >> PAGE_SHIFT,
                        pages: (j - k) as u64,
                        prot: Prot::from_bits(e as u8),
                    });
                }
                self.table = None;
            }
            let (&idx, pmd) = self.pmds.next()?;
            let base = idx << PMD_SHIFT;
            match pmd {
                Pmd::Leaf { pfn, prot } => {
                    let lo = base.max(self.start);
                    let hi = (base + PMD_SIZE).min(self.end);
                    return Some(Extent {
                        va: lo,
                        pfn: pfn + (lo - base) / PAGE_SIZE,
                        pages: (hi - lo) / PAGE_SIZE,
                        prot: *prot,
                    });
                }
                Pmd::Table { ptes, used } => {
                    let (lo, hi) = table_span(base, self.start, self.end);
                    let left = if (lo, hi) == (0, 512) {
                        *used as usize
                    } else {
                        512
                    };
                    self.table = Some((base, ptes, lo, hi, left));
                }
            }
        }
    }
}

impl Iterator for ExtentsIn<'_> {
    type Item = Extent;

    fn next(&mut self) -> Option<Extent> {
        let mut cur = self.pending.take().or_else(|| self.piece())?;
        loop {
            match self.piece() {
                Some(p) if cur.continued_by(&p) => cur.pages += p.pages,
                other => {
                    self.pending = other;
                    return Some(cur);
                }
            }
        }
    }
}

/// [`PageTables::leaves_in`]: a walk of the PMDs in range and, in each PTE
/// table, of the entries in range.
pub struct LeavesIn<'a> {
    pmds: std::collections::btree_map::Range<'a, u64, Pmd>,
    start: u64,
    end: u64,
    /// The PTE table being walked: its first va, its entries, the next
    /// index and the end index.
    table: Option<(u64, &'a [u64; 512], usize, usize)>,
}

impl Iterator for LeavesIn<'_> {
    type Item = Leaf;

    fn next(&mut self) -> Option<Leaf> {
        loop {
            if let Some((base, ptes, i, hi)) = &mut self.table {
                while *i < *hi {
                    let (k, e) = (*i, ptes[*i]);
                    *i += 1;
                    if e != 0 {
                        return Some(Leaf {
                            va: *base + k as u64 * PAGE_SIZE,
                            pfn: e >> PAGE_SHIFT,
                            prot: Prot::from_bits(e as u8),
                            level: Level::Pte,
                        });
                    }
                }
                self.table = None;
            }
            let (&idx, pmd) = self.pmds.next()?;
            let base = idx << PMD_SHIFT;
            match pmd {
                Pmd::Leaf { pfn, prot } => {
                    return Some(Leaf {
                        va: base,
                        pfn: *pfn,
                        prot: *prot,
                        level: Level::Pmd,
                    });
                }
                Pmd::Table { ptes, .. } => {
                    let (lo, hi) = table_span(base, self.start, self.end);
                    self.table = Some((base, ptes, lo, hi));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::consts::VMALLOC_START;

    #[test]
    fn vmalloc_to_pfn_inside_a_pmd_leaf_is_the_subpage() {
        let mut pt = PageTables::default();
        pt.map_pmd(VMALLOC_START, 1024, Prot::PAGE_KERNEL);
        assert_eq!(
            pt.vmalloc_to_pfn(VMALLOC_START + 3 * PAGE_SIZE + 5),
            Some(1027)
        );
        pt.map_pte(VMALLOC_START + PMD_SIZE, 7, Prot::PAGE_KERNEL);
        assert_eq!(pt.vmalloc_to_pfn(VMALLOC_START + PMD_SIZE + 100), Some(7));
        assert_eq!(
            pt.vmalloc_to_pfn(VMALLOC_START + PMD_SIZE + PAGE_SIZE),
            None
        );
        assert_eq!(pt.leaves().count(), 2);
    }

    #[test]
    fn wx_bookkeeping_follows_every_change() {
        let mut pt = PageTables::default();
        pt.map_pmd(VMALLOC_START, 0, Prot::PAGE_KERNEL);
        let leaf = pt.lookup(VMALLOC_START).unwrap();
        pt.set_prot(leaf, Prot::PRESENT.union(Prot::RW));
        assert_eq!(pt.wx_leaves().count(), 1);
        pt.split_pmd(VMALLOC_START);
        assert_eq!(pt.wx_leaves().count(), 512);
        pt.unmap(VMALLOC_START, PMD_SIZE);
        assert_eq!(pt.wx_leaves().count(), 0);
        assert_eq!(pt.leaves().count(), 0);
    }

    /// `change_ptes` takes the run of present PTEs over consecutive frames
    /// from `va`, within its table and `max`, and changes only those.
    #[test]
    fn change_ptes_takes_a_run_of_consecutive_frames() {
        let base = VMALLOC_START;
        let mut pt = PageTables::default();
        pt.map_ptes(base, &[10, 11, 12, 20, 21], Prot::PAGE_KERNEL);
        pt.map_ptes(base + 6 * PAGE_SIZE, &[22], Prot::PAGE_KERNEL);
        pt.map_ptes(base + 510 * PAGE_SIZE, &[30, 31, 32, 33], Prot::PAGE_KERNEL);
        let ro = |pt: &PageTables, i: u64| pt.lookup(base + i * PAGE_SIZE).unwrap().prot;
        assert_eq!(pt.change_ptes(base, 100, Prot::NONE, Prot::RW), (3, true));
        assert_eq!(ro(&pt, 2), Prot::PAGE_KERNEL_RO);
        assert_eq!(ro(&pt, 3), Prot::PAGE_KERNEL);
        assert_eq!(pt.change_ptes(base, 100, Prot::NONE, Prot::RW), (3, false));
        assert_eq!(
            pt.change_ptes(base + 3 * PAGE_SIZE, 1, Prot::NONE, Prot::RW),
            (1, true)
        );
        assert_eq!(ro(&pt, 4), Prot::PAGE_KERNEL, "max 1");
        assert_eq!(
            pt.change_ptes(base + 4 * PAGE_SIZE, 9, Prot::NONE, Prot::RW),
            (1, true)
        );
        assert_eq!(ro(&pt, 6), Prot::PAGE_KERNEL, "after a gap");
        assert_eq!(
            pt.change_ptes(base + 5 * PAGE_SIZE, 9, Prot::NONE, Prot::RW),
            (0, false)
        );
        let at = base + 510 * PAGE_SIZE;
        assert_eq!(
            pt.change_ptes(at, 9, Prot::NONE, Prot::RW),
            (2, true),
            "to the table's end"
        );
        assert_eq!(ro(&pt, 512), Prot::PAGE_KERNEL);
    }

    /// Every leaf that appears or goes moves the region checks' epoch,
    /// executable or not (a protection change does not).
    #[test]
    fn every_leaf_that_appears_or_goes_is_counted() {
        let mut pt = PageTables::default();
        pt.map_ptes(VMALLOC_START, &[5, 6, 7], Prot::PAGE_KERNEL);
        assert_eq!(pt.presence_changes(), 3);
        pt.map_pmd(VMALLOC_START + PMD_SIZE, 512, Prot::PAGE_KERNEL_RO);
        assert_eq!(pt.presence_changes(), 4);
        let leaf = pt.lookup(VMALLOC_START).unwrap();
        pt.set_prot(leaf, Prot::PAGE_KERNEL_RO);
        assert_eq!(pt.presence_changes(), 4);
        pt.unmap(VMALLOC_START, 2 * PMD_SIZE);
        assert_eq!(pt.presence_changes(), 8);
    }

    /// The tables dropped page tables leave are kept only when empty, and a
    /// kept one maps nothing in the next tables that take it.
    #[test]
    fn only_empty_tables_are_kept_for_the_next_page_tables() {
        let kept = || EMPTY_TABLES.with_borrow(Vec::len);
        EMPTY_TABLES.with_borrow_mut(Vec::clear);
        let mut pt = PageTables::default();
        pt.map_ptes(VMALLOC_START, &[5, 6, 7], Prot::PAGE_KERNEL);
        pt.map_ptes(
            VMALLOC_START + PMD_SIZE + 8 * PAGE_SIZE,
            &[9],
            Prot::PAGE_KERNEL,
        );
        pt.unmap(VMALLOC_START, 3 * PAGE_SIZE);
        drop(pt);
        assert_eq!(kept(), 1, "the table still mapping pfn 9 is not kept");
        let mut pt = PageTables::default();
        pt.map_ptes(
            VMALLOC_START + 4 * PMD_SIZE + PAGE_SIZE,
            &[11],
            Prot::PAGE_KERNEL,
        );
        assert_eq!(kept(), 0, "taken");
        let leaves: Vec<_> = pt.leaves().map(|l| (l.va, l.pfn)).collect();
        assert_eq!(leaves, [(VMALLOC_START + 4 * PMD_SIZE + PAGE_SIZE, 11)]);
        pt.unmap(VMALLOC_START + 4 * PMD_SIZE, PMD_SIZE);
        pt.map_pmd(VMALLOC_START + 4 * PMD_SIZE, 512, Prot::PAGE_KERNEL);
        assert_eq!(kept(), 1, "the empty table a PMD leaf replaced");
    }

    /// `unmap` notes a run of PTEs at a time; the log must read as if each
    /// cleared PTE had been noted alone: every appearance and disappearance
    /// counted, the executable ranges joined where they touch, W^X entries
    /// gone.
    #[test]
    fn unmap_notes_what_each_cleared_pte_would() {
        let (rw, ro, rox) = (
            Prot::PAGE_KERNEL,
            Prot::PAGE_KERNEL_RO,
            Prot::PAGE_KERNEL_ROX,
        );
        let wx = Prot::PRESENT.union(Prot::RW);
        let base = VMALLOC_START;
        let mut pt = PageTables::default();
        // rw rw rox rox . ro rox wx wx rox | next PMD: rox rox
        pt.map_ptes(base, &[1, 2], rw);
        pt.map_ptes(base + 2 * PAGE_SIZE, &[3, 4], rox);
        pt.map_ptes(base + 5 * PAGE_SIZE, &[6], ro);
        pt.map_ptes(base + 6 * PAGE_SIZE, &[7], rox);
        pt.map_ptes(base + 7 * PAGE_SIZE, &[8, 9], wx);
        pt.map_ptes(base + 9 * PAGE_SIZE, &[10], rox);
        pt.map_ptes(base + 510 * PAGE_SIZE, &[20, 21], rox);
        pt.map_ptes(base + PMD_SIZE, &[22, 23], rox);
        let mut each = pt.log.clone();
        for leaf in pt.leaves() {
            each.note(leaf.va, leaf.level, Some(leaf.prot), None);
        }
        pt.take_exec_changed();
        each.exec_changed.clear();
        let before = pt.log.presence_changes;
        pt.unmap(base, PMD_SIZE + 2 * PAGE_SIZE);
        assert_eq!(pt.log.presence_changes - before, 13);
        assert_eq!(pt.log.presence_changes, each.presence_changes);
        assert_eq!(pt.log.wx, each.wx);
        assert!(pt.log.wx.is_empty());
        assert_eq!(
            pt.take_exec_changed(),
            [
                (base + 2 * PAGE_SIZE, 2 * PAGE_SIZE),
                (base + 6 * PAGE_SIZE, 4 * PAGE_SIZE),
                (base + 510 * PAGE_SIZE, 4 * PAGE_SIZE),
            ]
        );
        assert_eq!(each.exec_changed, pt.log.exec_changed);
    }

    /// Extents are the leaves of the range, page by page, clipped to it and
    /// joined where frames and protection carry on.
    #[test]
    fn extents_are_the_leaves_page_by_page() {
        let mut pt = PageTables::default();
        let (rw, ro) = (Prot::PAGE_KERNEL, Prot::PRESENT);
        let base = VMALLOC_START;
        pt.map_ptes(base + 510 * PAGE_SIZE, &[1022, 1023], rw);
        pt.map_pmd(base + PMD_SIZE, 1024, rw);
        pt.map_ptes(base + 2 * PMD_SIZE, &[1536, 1537, 9, 10, 12], rw);
        pt.map_ptes(base + 2 * PMD_SIZE + 6 * PAGE_SIZE, &[13, 14], rw);
        let l = pt.lookup(base + 2 * PMD_SIZE + 7 * PAGE_SIZE).unwrap();
        pt.set_prot(l, ro);
        let pages = |start: u64, end: u64| -> Vec<(u64, u64, Prot)> {
            (pt.leaves_in(start, end))
                .flat_map(|l| {
                    (0..l.level.size() / PAGE_SIZE)
                        .map(move |i| (l.va + i * PAGE_SIZE, l.pfn + i, l.prot))
                })
                .filter(|&(va, _, _)| start <= va && va < end)
                .collect()
        };
        let from_extents = |start: u64, end: u64| -> Vec<(u64, u64, Prot)> {
            (pt.extents_in(start, end))
                .flat_map(|e| (0..e.pages).map(move |i| (e.va + i * PAGE_SIZE, e.pfn + i, e.prot)))
                .collect()
        };
        let end = base + 3 * PMD_SIZE;
        for (s, e) in [
            (base, end),
            (base + 511 * PAGE_SIZE, base + PMD_SIZE + 3 * PAGE_SIZE),
            (base + 2 * PMD_SIZE - PAGE_SIZE, end),
        ] {
            assert_eq!(from_extents(s, e), pages(s, e), "{s:#x}..{e:#x}");
        }
        let runs: Vec<(u64, u64)> = pt.extents_in(base, end).map(|e| (e.pfn, e.pages)).collect();
        assert_eq!(
            runs,
            [(1022, 2 + 512 + 2), (9, 2), (12, 1), (13, 1), (14, 1)]
        );
    }

    /// A PTE of pfn 0 with no permission bits is still not `pte_none()`:
    /// x86's `PAGE_NONE` keeps `_PAGE_ACCESSED | _PAGE_GLOBAL`, the model's
    /// `PTE_VALID`.
    #[test]
    fn a_prot_none_pte_of_pfn_0_is_present_in_the_table() {
        let mut pt = PageTables::default();
        pt.map_ptes(VMALLOC_START, &[0], Prot::NONE);
        let leaf = pt.lookup(VMALLOC_START).expect("not pte_none");
        assert_eq!((leaf.pfn, leaf.prot), (0, Prot::NONE));
    }

    /// `vmap_pte_range()` over a PTE that is not none is a bug in the caller;
    /// the panic names that PTE, not the start of the range.
    #[test]
    #[should_panic(expected = "vmap_pte_range: pte at 0xffffc90000002000 is not none")]
    fn mapping_over_a_present_pte_names_it() {
        let mut pt = PageTables::default();
        pt.map_pte(VMALLOC_START + 2 * PAGE_SIZE, 9, Prot::PAGE_KERNEL);
        pt.map_ptes(VMALLOC_START, &[5, 6, 7], Prot::PAGE_KERNEL);
    }

    /// `collapse_pmd_page()` wants a 2 MiB-aligned first pfn, and a collapse
    /// moves the W^X bookkeeping from the 512 PTEs to the one PMD leaf.
    #[test]
    fn a_collapse_needs_an_aligned_pfn_and_moves_the_wx_bookkeeping() {
        let mut pt = PageTables::default();
        let wx = Prot::PRESENT.union(Prot::RW);
        pt.map_ptes(VMALLOC_START, &(1..513).collect::<Vec<_>>(), wx);
        assert!(
            !pt.collapse_pmd(VMALLOC_START),
            "pfn 1 is not 2 MiB-aligned"
        );
        pt.unmap(VMALLOC_START, PMD_SIZE);
        pt.map_ptes(VMALLOC_START, &(512..1024).collect::<Vec<_>>(), wx);
        assert_eq!(pt.wx_leaves().count(), 512);
        assert!(pt.collapse_pmd(VMALLOC_START));
        assert_eq!(
            pt.wx_leaves().collect::<Vec<_>>(),
            [(VMALLOC_START, Level::Pmd)]
        );
        let leaf = pt.lookup(VMALLOC_START + 5 * PAGE_SIZE).unwrap();
        assert_eq!(
            (leaf.va, leaf.pfn, leaf.level),
            (VMALLOC_START, 512, Level::Pmd)
        );
        assert_eq!(pt.pmd_collapses, 1);
    }
}
