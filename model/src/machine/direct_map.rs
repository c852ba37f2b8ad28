//! The direct map (`__va(pfn)`) of all frames: 2 MiB leaves at boot (1 GiB as an
//! option), RW+NX, split by CPA and never merged back.
//!
//! `change()` is `__change_page_attr_set_clr()` with `primary = 0` on direct-map
//! addresses, including `__should_split_large_page()`'s rules (v5.18,
//! `arch/x86/mm/pat/set_memory.c`): a request that leaves a large leaf's
//! protection as it is keeps the leaf; a request that changes it keeps it only if
//! it covers the whole leaf from its first page; otherwise the leaf is split
//! (`split_page_count()` counts `direct_map_level2_splits` / `_level3_splits`).

use std::collections::BTreeSet;

use super::consts::PTRS_PER_PTE;
use super::prot::Prot;

/// The boot leaf size of the direct map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DmapLeaf {
    /// 2 MiB leaves (`DirectMap2M`), the default.
    #[default]
    M2,
    /// 1 GiB leaves (`DirectMap1G`, gbpages): the machine's RAM is taken to fill
    /// each GiB it touches, as the kernel's counters would see it.
    G1,
}

/// The level of a direct-map leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DmapLevel {
    K4,
    M2,
    G1,
}

impl DmapLevel {
    /// 4 KiB pages under one leaf of this level.
    pub fn pages(self) -> u64 {
        match self {
            DmapLevel::K4 => 1,
            DmapLevel::M2 => PTRS_PER_PTE,
            DmapLevel::G1 => PTRS_PER_PTE * PTRS_PER_PTE,
        }
    }
}

#[derive(Clone)]
enum Pmd {
    None,
    Leaf(Prot),
    Table(Box<[Prot; 512]>),
}

#[derive(Clone)]
enum Pud {
    Leaf(Prot),
    Table(Vec<Pmd>),
}

/// `/proc/meminfo`'s `DirectMap*` lines and `/proc/vmstat`'s split counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DirectMapStats {
    pub directmap_4k_kb: u64,
    pub directmap_2m_kb: u64,
    pub directmap_1g_kb: u64,
    pub direct_map_level2_splits: u64,
    pub direct_map_level3_splits: u64,
}

/// The direct map.
#[derive(Clone)]
pub struct DirectMap {
    nr_pages: u64,
    puds: Vec<Pud>,
    /// `direct_pages_count[PG_LEVEL_4K / 2M / 1G]`.
    count: [u64; 3],
    level2_splits: u64,
    level3_splits: u64,
    /// Leaves (first pfn, level) that are W+X right now.
    wx: BTreeSet<(u64, DmapLevel)>,
    /// (first pfn, pages) whose protection changed since the last
    /// [`DirectMap::take_changed`], adjacent changes as one range.
    changed: Vec<(u64, u64)>,
}

const GB_PAGES: u64 = PTRS_PER_PTE * PTRS_PER_PTE;

/// Logs `pages` pages from `first` as changed, adjacent changes as one range.
fn note_change(changed: &mut Vec<(u64, u64)>, first: u64, pages: u64) {
    match changed.last_mut() {
        Some((f, n)) if *f + *n == first => *n += pages,
        _ => changed.push((first, pages)),
    }
}

/// Keeps the W+X leaves current for the leaf at `first` now `prot`.
fn note_wx(wx: &mut BTreeSet<(u64, DmapLevel)>, first: u64, level: DmapLevel, prot: Prot) {
    if prot.is_wx() {
        wx.insert((first, level));
    } else {
        wx.remove(&(first, level));
    }
}

impl DirectMap {
    pub fn new(nr_pages: u64, leaf: DmapLeaf) -> Self {
        let nr_gb = nr_pages.div_ceil(GB_PAGES);
        let mut count = [0; 3];
        let puds = (0..nr_gb)
            .map(|g| match leaf {
                DmapLeaf::G1 => {
                    count[2] += 1;
                    Pud::Leaf(Prot::PAGE_KERNEL)
                }
                DmapLeaf::M2 => Pud::Table(
                    (0..PTRS_PER_PTE)
                        .map(|i| {
                            if (g * GB_PAGES + i * PTRS_PER_PTE) < nr_pages {
                                count[1] += 1;
                                Pmd::Leaf(Prot::PAGE_KERNEL)
                            } else {
                                Pmd::None
                            }
                        })
                        .collect(),
                ),
            })
            .collect();
        Self {
            nr_pages,
            puds,
            count,
            level2_splits: 0,
            level3_splits: 0,
            wx: BTreeSet::new(),
            changed: Vec::new(),
        }
    }

    /// The leaf mapping `pfn`: its protection, level and first pfn.
    pub fn lookup(&self, pfn: u64) -> Option<(Prot, DmapLevel, u64)> {
        if pfn >= self.nr_pages {
            return None;
        }
        let g = (pfn / GB_PAGES) as usize;
        match &self.puds[g] {
            Pud::Leaf(p) => Some((*p, DmapLevel::G1, pfn & !(GB_PAGES - 1))),
            Pud::Table(pmds) => match &pmds[((pfn % GB_PAGES) / PTRS_PER_PTE) as usize] {
                Pmd::None => None,
                Pmd::Leaf(p) => Some((*p, DmapLevel::M2, pfn & !(PTRS_PER_PTE - 1))),
                Pmd::Table(ptes) => Some((ptes[(pfn % PTRS_PER_PTE) as usize], DmapLevel::K4, pfn)),
            },
        }
    }

    /// The protection of `pfn`'s alias.
    pub fn prot(&self, pfn: u64) -> Prot {
        self.lookup(pfn).map_or(Prot::NONE, |(p, _, _)| p)
    }

    fn set_leaf(&mut self, first: u64, level: DmapLevel, prot: Prot) {
        note_change(&mut self.changed, first, level.pages());
        let g = (first / GB_PAGES) as usize;
        match (&mut self.puds[g], level) {
            (Pud::Leaf(p), DmapLevel::G1) => *p = prot,
            (Pud::Table(pmds), DmapLevel::M2) => {
                pmds[((first % GB_PAGES) / PTRS_PER_PTE) as usize] = Pmd::Leaf(prot)
            }
            // 4K leaves are rewritten by change_ptes(), a table at a time.
            _ => unreachable!("direct map leaf level mismatch"),
        }
        note_wx(&mut self.wx, first, level, prot);
    }

    /// The 4K ptes of `pfn..pfn + n` (in one PTE table) each rewritten in
    /// place with `set` and `clr`, as [`DirectMap::change`] does one at a
    /// time: the same as [`DirectMap::set_leaf`] of each whose protection
    /// changes.
    fn change_ptes(&mut self, pfn: u64, n: u64, set: Prot, clr: Prot) {
        let Self {
            puds, changed, wx, ..
        } = self;
        let Pud::Table(pmds) = &mut puds[(pfn / GB_PAGES) as usize] else {
            unreachable!("4K leaf under a 1G leaf")
        };
        let Pmd::Table(ptes) = &mut pmds[((pfn % GB_PAGES) / PTRS_PER_PTE) as usize] else {
            unreachable!("4K leaf under a non-table pmd")
        };
        let at = (pfn % PTRS_PER_PTE) as usize;
        // The changed ptes' runs are logged a run at a time, and the W+X set
        // is touched only where a pte's W+X-ness flips (it holds exactly the
        // leaves that are W+X, so no other change can alter it).
        let mut run: Option<(u64, u64)> = None;
        for (i, pte) in ptes[at..at + n as usize].iter_mut().enumerate() {
            let new = pte.apply(set, clr);
            if new == *pte {
                if let Some((first, pages)) = run.take() {
                    note_change(changed, first, pages);
                }
                continue;
            }
            let first = pfn + i as u64;
            match &mut run {
                Some((_, pages)) => *pages += 1,
                None => run = Some((first, 1)),
            }
            if pte.is_wx() != new.is_wx() {
                note_wx(wx, first, DmapLevel::K4, new);
            }
            *pte = new;
        }
        if let Some((first, pages)) = run {
            note_change(changed, first, pages);
        }
    }

    /// `split_large_page()` + `split_page_count()`.
    fn split(&mut self, pfn: u64, level: DmapLevel) {
        let g = (pfn / GB_PAGES) as usize;
        match level {
            DmapLevel::G1 => {
                let Pud::Leaf(p) = self.puds[g] else {
                    unreachable!()
                };
                self.puds[g] = Pud::Table(vec![Pmd::Leaf(p); PTRS_PER_PTE as usize]);
                self.count[2] -= 1;
                self.count[1] += PTRS_PER_PTE;
                self.level3_splits += 1;
                self.rewrite_wx(pfn & !(GB_PAGES - 1), level, p, DmapLevel::M2);
            }
            DmapLevel::M2 => {
                let Pud::Table(pmds) = &mut self.puds[g] else {
                    unreachable!()
                };
                let slot = &mut pmds[((pfn % GB_PAGES) / PTRS_PER_PTE) as usize];
                let Pmd::Leaf(p) = *slot else { unreachable!() };
                *slot = Pmd::Table(Box::new([p; 512]));
                self.count[1] -= 1;
                self.count[0] += PTRS_PER_PTE;
                self.level2_splits += 1;
                self.rewrite_wx(pfn & !(PTRS_PER_PTE - 1), level, p, DmapLevel::K4);
            }
            DmapLevel::K4 => unreachable!("a 4K leaf cannot be split"),
        }
    }

    fn rewrite_wx(&mut self, first: u64, old: DmapLevel, prot: Prot, new: DmapLevel) {
        if self.wx.remove(&(first, old)) {
            for i in 0..PTRS_PER_PTE {
                self.wx.insert((first + i * new.pages(), new));
            }
        }
        debug_assert!(!prot.is_wx() || !self.wx.is_empty());
    }

    /// `__change_page_attr_set_clr(cpa, 0)` on `__va(pfn)` for `numpages`
    /// pages of memory (the direct map of RAM has no holes here, so
    /// `__cpa_process_fault()`'s skipping of them never applies).
    pub fn change(&mut self, pfn: u64, numpages: u64, set: Prot, clr: Prot) {
        self.walk(pfn, numpages, set, clr, true);
    }

    /// [`DirectMap::change`] of each page of `pfn..pfn + numpages` alone, in
    /// ascending order, in one walk: a large leaf whose protection would
    /// change is split at the first such page (a one-page request never
    /// covers it whole), one whose protection would not is kept.
    pub fn change_each(&mut self, pfn: u64, numpages: u64, set: Prot, clr: Prot) {
        self.walk(pfn, numpages, set, clr, false);
    }

    /// The walk of both: a large leaf that would change is set whole when
    /// `whole` and the request covers it from its first page, split
    /// otherwise; one that would not ("lp_sameprot") is kept; 4K ptes are
    /// rewritten in place, a table's worth at a time.
    fn walk(&mut self, pfn: u64, numpages: u64, set: Prot, clr: Prot, whole: bool) {
        let mut cur = pfn;
        let mut rem = numpages;
        while rem > 0 {
            let (old, level, first) = self.lookup(cur).expect("a pfn of memory");
            if level == DmapLevel::K4 {
                let n = rem.min(PTRS_PER_PTE - cur % PTRS_PER_PTE);
                self.change_ptes(cur, n, set, clr);
                cur += n;
                rem -= n;
                continue;
            }
            let new = old.apply(set, clr);
            let n = rem.min(first + level.pages() - cur);
            if new == old {
                // A large leaf whose protection would not change is preserved
                // ("lp_sameprot").
            } else if whole && cur == first && n == level.pages() {
                self.set_leaf(first, level, new);
            } else {
                self.split(cur, level);
                continue;
            }
            cur += n;
            rem -= n;
        }
    }

    pub fn stats(&self) -> DirectMapStats {
        DirectMapStats {
            directmap_4k_kb: self.count[0] * 4,
            directmap_2m_kb: self.count[1] * 2048,
            directmap_1g_kb: self.count[2] << 20,
            direct_map_level2_splits: self.level2_splits,
            direct_map_level3_splits: self.level3_splits,
        }
    }

    /// Every leaf as (first pfn, level, prot), in pfn order.
    pub fn leaves(&self) -> Vec<(u64, DmapLevel, Prot)> {
        self.leaves_where(|_| true)
    }

    /// The leaves whose protection `keep` accepts, as [`DirectMap::leaves`].
    pub fn leaves_where(&self, keep: impl Fn(Prot) -> bool) -> Vec<(u64, DmapLevel, Prot)> {
        let mut out = Vec::new();
        for (g, pud) in self.puds.iter().enumerate() {
            let gbase = g as u64 * GB_PAGES;
            match pud {
                Pud::Leaf(p) if keep(*p) => out.push((gbase, DmapLevel::G1, *p)),
                Pud::Leaf(_) => {}
                Pud::Table(pmds) => {
                    for (i, pmd) in pmds.iter().enumerate() {
                        let base = gbase + i as u64 * PTRS_PER_PTE;
                        match pmd {
                            Pmd::None => {}
                            Pmd::Leaf(p) if keep(*p) => out.push((base, DmapLevel::M2, *p)),
                            Pmd::Leaf(_) => {}
                            Pmd::Table(ptes) => out.extend(
                                (ptes.iter().enumerate())
                                    .filter(|(_, p)| keep(**p))
                                    .map(|(j, p)| (base + j as u64, DmapLevel::K4, *p)),
                            ),
                        }
                    }
                }
            }
        }
        out
    }

    /// Leaves that are W+X right now, as kept by the incremental bookkeeping.
    pub fn wx_leaves(&self) -> impl Iterator<Item = (u64, DmapLevel)> + '_ {
        self.wx.iter().copied()
    }

    /// (first pfn, pages) whose protection changed since the last call.
    pub fn take_changed(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RO: Prot = Prot::RW; // clear mask for set_memory_ro

    /// `change_each` is `change` of one page at a time: the same leaves,
    /// counters, change log and W^X set, over 1 GiB and 2 MiB leaves, 4K
    /// tables, leaves whose protection stays, and runs across them.
    #[test]
    fn change_each_is_change_of_each_page() {
        let rw = Prot::PRESENT.union(Prot::RW);
        for leaf in [DmapLeaf::M2, DmapLeaf::G1] {
            let mut a = DirectMap::new(1 << 19, leaf);
            a.change(1030, 2, Prot::NONE, RO);
            a.change(4096, 512, Prot::NONE, RO);
            a.take_changed();
            let mut b = a.clone();
            for (pfn, n, set, clr) in [
                (1000, 600, Prot::NONE, rw),
                (1000, 600, rw, Prot::NONE),
                (4000, 700, Prot::NONE, RO),
                (262_000, 300, Prot::NONE, RO),
                (5000, 3, Prot::PAGE_KERNEL, Prot::NONE),
            ] {
                a.change_each(pfn, n, set, clr);
                for p in pfn..pfn + n {
                    b.change(p, 1, set, clr);
                }
                let what = format!("{leaf:?} {pfn}+{n}");
                assert_eq!(a.leaves(), b.leaves(), "{what}");
                assert_eq!(a.stats(), b.stats(), "{what}");
                assert_eq!(a.take_changed(), b.take_changed(), "{what}");
                assert!(a.wx_leaves().eq(b.wx_leaves()), "{what}");
            }
        }
    }

    #[test]
    fn partial_change_splits_once_and_counts() {
        let mut d = DirectMap::new(16384, DmapLeaf::M2);
        assert_eq!(d.stats().directmap_2m_kb, 65536);
        d.change(1000, 1, Prot::NONE, RO);
        let s = d.stats();
        assert_eq!(s.direct_map_level2_splits, 1);
        assert_eq!(s.directmap_4k_kb, 2048);
        assert_eq!(s.directmap_2m_kb, 65536 - 2048);
        d.change(1001, 1, Prot::NONE, RO);
        assert_eq!(d.stats().direct_map_level2_splits, 1);
        assert_eq!(d.prot(1000), Prot::PAGE_KERNEL_RO);
        assert_eq!(d.prot(1002), Prot::PAGE_KERNEL);
    }

    #[test]
    fn whole_leaf_change_and_same_prot_keep_the_leaf() {
        let mut d = DirectMap::new(16384, DmapLeaf::M2);
        d.change(1024, 512, Prot::NONE, RO);
        d.change(1030, 1, Prot::NONE, RO); // already RO: preserved
        d.change(2000, 3, Prot::PAGE_KERNEL, Prot::NONE); // already default
        assert_eq!(d.stats().direct_map_level2_splits, 0);
        assert_eq!(
            d.lookup(1030),
            Some((Prot::PAGE_KERNEL_RO, DmapLevel::M2, 1024))
        );
    }

    /// Each leaf level reports the leaf's first pfn, and where no memory is
    /// there is no leaf.
    #[test]
    fn lookup_names_the_leaf_and_its_first_pfn() {
        let mut d = DirectMap::new(16384, DmapLeaf::M2);
        assert_eq!(
            d.lookup(1000),
            Some((Prot::PAGE_KERNEL, DmapLevel::M2, 512))
        );
        assert_eq!(d.lookup(16384), None);
        d.change(1000, 1, Prot::NONE, RO);
        assert_eq!(
            d.lookup(1001),
            Some((Prot::PAGE_KERNEL, DmapLevel::K4, 1001))
        );
        let g = DirectMap::new(16384, DmapLeaf::G1);
        assert_eq!(g.lookup(5000), Some((Prot::PAGE_KERNEL, DmapLevel::G1, 0)));
        assert_eq!(g.lookup(16384), None, "RAM ends before the GiB does");
        let two = DirectMap::new(2 * GB_PAGES, DmapLeaf::G1);
        assert_eq!(two.lookup(GB_PAGES + 7).map(|l| l.2), Some(GB_PAGES));
    }

    /// The change log holds adjacent changes as one range and others apart,
    /// each leaf counted in pages.
    #[test]
    fn changes_are_logged_as_ranges() {
        let mut d = DirectMap::new(16384, DmapLeaf::M2);
        d.change(1024, 512, Prot::NONE, RO);
        d.change(1536, 512, Prot::NONE, RO);
        d.change(4000, 2, Prot::NONE, RO);
        d.change(3990, 1, Prot::NONE, RO);
        assert_eq!(
            d.take_changed(),
            [(1024, 1024), (4000, 2), (3990, 1)],
            "two whole leaves, two 4K pages, one more page"
        );
        assert_eq!(d.take_changed(), []);
        let mut g = DirectMap::new(16384, DmapLeaf::G1);
        g.change(0, GB_PAGES, Prot::NONE, RO);
        assert_eq!(g.take_changed(), [(0, GB_PAGES)]);
        assert_eq!(g.prot(5), Prot::PAGE_KERNEL_RO);
        assert_eq!(
            g.stats().direct_map_level3_splits,
            0,
            "a whole GiB: no split"
        );
    }

    /// A writable and executable large leaf stays so in each of the pieces a
    /// split makes, and only the piece that changes stops being one.
    #[test]
    fn wx_leaves_are_tracked_through_splits() {
        let exec = Prot::NX; // clear NX: RW and X
        let mut d = DirectMap::new(16384, DmapLeaf::G1);
        d.change(0, GB_PAGES, Prot::NONE, exec);
        assert_eq!(d.wx_leaves().collect::<Vec<_>>(), [(0, DmapLevel::G1)]);
        d.change(1024 + 3, 1, Prot::NONE, RO);
        let wx: Vec<_> = d.wx_leaves().collect();
        assert_eq!(
            wx.len(),
            511 + 511,
            "511 other 2M leaves, 511 other 4K pages"
        );
        assert!(wx.contains(&(512, DmapLevel::M2)) && wx.contains(&(1024 + 4, DmapLevel::K4)));
        assert!(!wx.contains(&(1024 + 3, DmapLevel::K4)) && !wx.contains(&(1024, DmapLevel::M2)));
        let all: Vec<_> = d.leaves();
        assert_eq!(all.len(), 511 + 512);
        assert_eq!(all.iter().filter(|l| l.2.is_wx()).count(), wx.len());
        let ro: Vec<_> = d.leaves_where(|p| p == Prot::PAGE_KERNEL_RO.without(Prot::NX));
        assert_eq!(
            ro,
            [(
                1024 + 3,
                DmapLevel::K4,
                Prot::PAGE_KERNEL_RO.without(Prot::NX)
            )]
        );
        let whole = DirectMap::new(16384, DmapLeaf::G1);
        assert_eq!(
            whole.leaves_where(|_| true),
            [(0, DmapLevel::G1, Prot::PAGE_KERNEL)]
        );
        assert_eq!(whole.leaves_where(|_| false), []);
    }

    #[test]
    fn gbpages_split_to_2m_then_4k() {
        let mut d = DirectMap::new(16384, DmapLeaf::G1);
        assert_eq!(d.stats().directmap_1g_kb, 1 << 20);
        d.change(5, 1, Prot::NONE, RO);
        let s = d.stats();
        assert_eq!(
            (s.direct_map_level3_splits, s.direct_map_level2_splits),
            (1, 1)
        );
        assert_eq!(s.directmap_2m_kb, 511 * 2048);
        assert_eq!(s.directmap_4k_kb, 512 * 4);
    }
}
