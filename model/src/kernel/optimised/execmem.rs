//! The ROX cache of `mm/execmem.c` (2026, as in the linux-mm tree; x86 with
//! `CONFIG_ARCH_HAS_EXECMEM_ROX`): the `execmem` design's source of executable
//! memory for BPF packs and larger programs.
//!
//! `execmem_alloc()` rounds the size to a page and takes the first free range
//! of the cache, in address order, that is long enough (`free_areas`), at its
//! low end; the allocation is recorded in `busy_areas`. When nothing fits,
//! `execmem_cache_populate_alloc()` vmallocs `round_up(size, PMD_SIZE)` with
//! `VM_ALLOW_HUGE_VMAP` in the module range (the exact size if that fails,
//! 3bd4e0ac61b2), fills it with INT3, makes all of it ROX — the direct-map
//! alias loses RW — and adds it to the free ranges, merged with its
//! neighbours. `execmem_free()` makes the busy range RW+NX
//! (`execmem_force_rw()`), fills it with INT3, makes it ROX again
//! (`execmem_restore_rox()`, where `set_memory_rox()` collapses the PMD the
//! first call split), adds it to the free ranges and runs
//! `execmem_cache_clean()`, which gives back every free range that is
//! PMD-aligned and a whole number of PMDs: its alias made valid again
//! (`set_direct_map_valid_noflush()`), then `vfree()`.
//!
//! The kernel runs `execmem_cache_clean()` from a work item scheduled by the
//! free; the model runs it before the free returns (nothing else runs in
//! between in a sequential trace).

use std::collections::{BTreeMap, BTreeSet};

use super::Core;
use super::quirks::Quirk;
use super::vmalloc::{Space, VmFlags, VmStruct};
use crate::machine::Prot;
use crate::machine::consts::{PAGE_SIZE, PMD_SIZE, page_align, round_up};

/// `struct execmem_cache`: the busy and free ranges (maple trees in the
/// kernel, each range `start..end` here) and the vm areas behind them.
#[derive(Default)]
pub(super) struct ExecmemCache {
    /// `busy_areas`: every allocation, start → end.
    busy: BTreeMap<u64, u64>,
    /// `free_areas`: free ranges, start → end, adjacent ones merged.
    free: BTreeMap<u64, u64>,
    /// The huge (or fallback) vmalloc areas that back the ranges, by address.
    pub(super) areas: BTreeMap<u64, VmStruct>,
    /// Busy ranges marked `PENDING_FREE` (their start), for
    /// `execmem_cache_free_slow()`.
    pending: BTreeSet<u64>,
    /// Fault injection (`fail_nth(execmem_cache_free, N)`): the N-th
    /// maple-tree node allocation of the free path from now on fails.
    fail_nth: Option<u32>,
}

impl ExecmemCache {
    /// `execmem_cache_add_locked()`: `start..end` becomes free, merged with a
    /// free range that ends at `start` and one that begins at `end`.
    fn add(&mut self, start: u64, end: u64) {
        let lower = match self.free.range(..start).next_back() {
            Some((&s, &e)) if e == start => s,
            _ => start,
        };
        let upper = self.free.remove(&end).unwrap_or(end);
        self.free.insert(lower, upper);
    }

    /// `execmem_cache_alloc_locked()`: the first free range (address order)
    /// of at least `size` bytes gives its low end. Every range lies in the
    /// module range, so `within_range()` holds for all.
    fn alloc_locked(&mut self, size: u64) -> Option<u64> {
        let (&start, &end) = self.free.iter().find(|&(&s, &e)| e - s >= size)?;
        self.busy.insert(start, start + size);
        self.free.remove(&start);
        if end - start > size {
            self.free.insert(start + size, end);
        }
        Some(start)
    }

    /// `mas_walk()` on `busy_areas`: the busy range that contains `addr`.
    fn busy_containing(&self, addr: u64) -> Option<(u64, u64)> {
        let (&s, &e) = self.busy.range(..=addr).next_back()?;
        (addr < e).then_some((s, e))
    }

    /// Free ranges, for tests and reports.
    pub(super) fn free_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|(&s, &e)| (s, e))
    }

    /// The cache's areas that are wholly free: memory the cache keeps. (A
    /// range that is neither busy nor free — lost — keeps its area out.)
    pub(super) fn idle_areas(&self) -> impl Iterator<Item = &VmStruct> + '_ {
        (self.areas.values()).filter(|a| self.free.get(&a.addr) == Some(&(a.addr + a.size)))
    }

    /// Arms the fault injection.
    pub(super) fn fail_nth(&mut self, nth: u32) {
        self.fail_nth = Some(nth.max(1));
    }

    /// One maple-tree node allocation of the free path: whether the fault
    /// injection makes it fail (`should_failslab()`).
    fn should_fail(&mut self) -> bool {
        match self.fail_nth {
            Some(1) => {
                self.fail_nth = None;
                true
            }
            Some(n) => {
                self.fail_nth = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

/// Why `__execmem_cache_free()` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FreeError {
    /// A maple-tree node could not be had (`-ENOMEM`).
    NoMemory,
    /// `execmem_force_rw()` failed: CPA found no mapping.
    Cpa,
}

impl Core {
    /// `execmem_alloc(type, size)` for a type with the ROX cache
    /// (`EXECMEM_BPF` through `bpf_jit_alloc_exec()`, `EXECMEM_FTRACE`):
    /// the size rounded to a page (6bbf0e728528), then
    /// `execmem_cache_alloc()`. With `execmem-unaligned-size` the size is
    /// taken as it comes, as before that fix: a range that is not a page
    /// multiple, and the next allocation from the same free range starts
    /// inside a page.
    pub(super) fn execmem_alloc(&mut self, size: u64) -> Option<u64> {
        let size = if self.quirks.has(Quirk::ExecmemUnalignedSize) {
            size
        } else {
            page_align(size)
        };
        self.execmem
            .alloc_locked(size)
            .or_else(|| self.execmem_cache_populate_alloc(size))
    }

    /// `execmem_cache_populate_alloc()`: a new block of `round_up(size,
    /// PMD_SIZE)`, or of `size` if that fails (3bd4e0ac61b2), both through
    /// `execmem_vmalloc()` with `VM_ALLOW_HUGE_VMAP` and the range's page
    /// alignment (4afb85f5e359 removed the PMD alignment it forced before);
    /// INT3 over all of it (`execmem_fill_trapping_insns()`: a memset on x86,
    /// the block still being `PAGE_KERNEL`), `set_memory_rox()` over its
    /// pages, then add and allocate under one hold of the mutex
    /// (1871d548fc4f). The fill and the add cover `alloc_size` bytes: with
    /// an unaligned size (`execmem-unaligned-size`) the exact-size
    /// fallback's last page is made ROX past its fill, with whatever that
    /// page held.
    fn execmem_cache_populate_alloc(&mut self, size: u64) -> Option<u64> {
        let vm = VmFlags {
            allow_huge: true,
            no_huge: false,
            nofail: false,
        };
        let mut alloc_size = round_up(size, PMD_SIZE);
        let area = match self.vmalloc_node_range(alloc_size, PAGE_SIZE, Space::Modules, false, vm) {
            Ok(a) => a,
            Err(_) => {
                alloc_size = size;
                (self.vmalloc_node_range(size, PAGE_SIZE, Space::Modules, false, vm)).ok()?
            }
        };
        debug_assert_eq!(area.size, page_align(alloc_size));
        self.m
            .memset(area.addr, 0xcc, alloc_size as usize)
            .expect("a fresh execmem block is writable");
        if self.quirks.has(Quirk::RoxCacheAliasInvalid) {
            self.execmem_remap_without_alias(&area);
        } else {
            // change_page_attr_set_clr() begins with vm_unmap_aliases().
            self.purge_vmap_area_lazy();
            let pages = area.pages.len() as u64;
            if self.m.set_memory_rox(area.addr, pages).is_err() {
                self.vunmap(area);
                return None;
            }
        }
        let p = area.addr;
        self.execmem.areas.insert(p, area);
        self.execmem.add(p, p + alloc_size);
        self.execmem.alloc_locked(size)
    }

    /// With `rox-cache-alias-invalid`, the populate of 2e45474ab14f: after
    /// the fill, `vunmap_range()` of the block, its pages made not present
    /// in the direct map (`execmem_set_direct_map_valid(vm, false)`, in
    /// units of the area's page order), and the pages mapped again ROX
    /// (`vmap_pages_range_noflush(…, PAGE_KERNEL_ROX, …, PMD_SHIFT)`; the
    /// model maps them at the area's own page order). 925f42645118 replaced
    /// all three with the `set_memory_rox()` above, so that the alias stays
    /// present for `/proc/kcore`.
    fn execmem_remap_without_alias(&mut self, area: &VmStruct) {
        self.m.pgtables.unmap(area.addr, area.size);
        let unit = 1usize << area.page_order;
        for c in area.pages.chunks(unit) {
            self.m
                .set_direct_map_valid_noflush(c[0], c.len() as u64, false);
        }
        self.vmap_pages_range_prot(area, Prot::PAGE_KERNEL_ROX);
    }

    /// `execmem_free(ptr)` (`bpf_jit_free_exec()`): back to the cache if a
    /// busy range holds `ptr`, otherwise `vfree(ptr)`.
    pub(super) fn execmem_free(&mut self, ptr: u64) {
        if !self.execmem_cache_free(ptr) {
            self.module_memfree(ptr);
        }
    }

    /// `execmem_cache_free()` (187fd8521dd8): `__execmem_cache_free()` of
    /// the busy range that holds `ptr` with `__GFP_NORETRY`; if that fails
    /// the entry is marked `PENDING_FREE` and `execmem_cache_free_slow()`
    /// retries 10 ms later with `GFP_KERNEL` — here at once, nothing else
    /// running in between. Then `execmem_cache_clean()`.
    fn execmem_cache_free(&mut self, ptr: u64) -> bool {
        let Some((start, end)) = self.execmem.busy_containing(ptr) else {
            return false;
        };
        if self.__execmem_cache_free(start, end).is_err() {
            self.execmem.pending.insert(start);
            self.execmem_cache_free_slow();
        }
        self.execmem_cache_clean();
        true
    }

    /// `execmem_cache_free_slow()`: every `PENDING_FREE` entry through
    /// `__execmem_cache_free()` with `GFP_KERNEL`, again (the kernel
    /// reschedules itself every 10 ms) while a pass fails for want of
    /// memory (an injected failure is one-shot, so the next pass gets
    /// through). An entry whose CPA fails (its block is gone) would be
    /// retried in vain every 10 ms: the model leaves it pending.
    fn execmem_cache_free_slow(&mut self) {
        loop {
            let mut short = false;
            let pending: Vec<u64> = self.execmem.pending.iter().copied().collect();
            for start in pending {
                let end = self.execmem.busy[&start];
                match self.__execmem_cache_free(start, end) {
                    Ok(()) => {
                        self.execmem.pending.remove(&start);
                    }
                    Err(FreeError::NoMemory) => short = true,
                    Err(FreeError::Cpa) => {}
                }
            }
            if !short {
                return;
            }
        }
    }

    /// `__execmem_cache_free()` (187fd8521dd8): `execmem_force_rw()`
    /// (`set_memory_nx()` then `set_memory_rw()`), INT3 over the range,
    /// `execmem_restore_rox()`, then the range moves from busy to free:
    /// `execmem_cache_add_locked()`, whose node allocation may fail (the
    /// error returned, the range still busy), then the erase of the busy
    /// entry, which allocates nothing (it rewrites the slot `mas` points
    /// at).
    ///
    /// With `execmem-free-lost-range`, the error handling before
    /// 187fd8521dd8: the busy entry is erased whether or not the add
    /// succeeded (then, erase first and an unchecked `execmem_cache_add()`)
    /// — a failed add loses the range: neither busy nor free, never reused,
    /// its block never released.
    fn __execmem_cache_free(&mut self, start: u64, end: u64) -> Result<(), FreeError> {
        // execmem_force_rw() and execmem_restore_rox(): PAGE_ALIGN(size)
        // pages from the range's start, whatever its alignment.
        let pages = page_align(end - start) / PAGE_SIZE;
        self.purge_vmap_area_lazy();
        let rw = self.m.set_memory_nx(start, pages).and_then(|()| {
            self.purge_vmap_area_lazy();
            self.m.set_memory_rw(start, pages)
        });
        // The range's block can be gone only by a quirk (`vfree()` of a
        // block with busy ranges): CPA finds no PTE, WARNs, and the free
        // fails.
        rw.map_err(|_| FreeError::Cpa)?;
        // A range that does not start on a page (`execmem-unaligned-size`)
        // was made writable only up to PAGE_ALIGN(size) bytes from its
        // rounded-down start: the fill faults in the page after, an oops
        // (recorded by the machine) that ends the free there, the range
        // still busy.
        if self.m.memset(start, 0xcc, (end - start) as usize).is_err() {
            return Ok(());
        }
        self.purge_vmap_area_lazy();
        let _ = self.m.set_memory_rox(start, pages);
        if self.execmem.should_fail() {
            if self.quirks.has(Quirk::ExecmemFreeLostRange) {
                self.execmem.busy.remove(&start);
                return Ok(());
            }
            return Err(FreeError::NoMemory);
        }
        self.execmem.add(start, end);
        self.execmem.busy.remove(&start);
        Ok(())
    }

    /// `fail_nth(execmem_cache_free, nth)`: arms the fault injection.
    pub(super) fn execmem_fail_nth(&mut self, nth: u32) {
        self.execmem.fail_nth(nth);
    }

    /// `execmem_cache_clean()`: every free range that starts on a PMD and is
    /// a whole number of PMDs is given back — the pages of the area that
    /// holds it (`find_vm_area()`) made valid in the direct map in units of
    /// the area's page order (`execmem_set_direct_map_valid()`), the range
    /// dropped, and `vfree()` of its start — provided the range spans the
    /// whole area ("mm/execmem: free ROX cache chunks only when they span an
    /// entire vm area", mm-unstable, Sep–Oct 2026, its id rebasing
    /// [unverified: diff not read; the condition as kernel-facts §7.1 gives
    /// it, `get_vm_area_size(vm) == size`]). With `execmem-partial-clean`
    /// that check is missing, as in the mainline code the model follows
    /// otherwise: a whole-PMD free range inside a bigger area — a block
    /// populated for a program larger than a pack, partly reused — is
    /// `vfree()`d, and `vfree()` of an address inside an area frees all of
    /// it (`find_unlink_vmap_area()` finds the area that contains it), with
    /// whatever is still busy in the rest. Found by a 10-minute `cargo fuzz`
    /// run of the `execmem` design on the model without it.
    fn execmem_cache_clean(&mut self) {
        let whole: Vec<u64> = (self.execmem.free_ranges())
            .filter(|&(s, e)| s % PMD_SIZE == 0 && (e - s) % PMD_SIZE == 0)
            .filter(|&(s, e)| {
                self.quirks.has(Quirk::ExecmemPartialClean)
                    || self
                        .execmem
                        .areas
                        .get(&s)
                        .is_some_and(|vm| vm.size == e - s)
            })
            .map(|(s, _)| s)
            .collect();
        for start in whole {
            if let Some((_, vm)) = self.execmem.areas.range(..=start).next_back() {
                let unit = 1usize << vm.page_order;
                let blocks: Vec<(u64, usize)> =
                    vm.pages.chunks(unit).map(|c| (c[0], c.len())).collect();
                for (pfn, n) in blocks {
                    self.m.set_direct_map_valid_noflush(pfn, n as u64, true);
                }
            }
            self.execmem.free.remove(&start);
            self.module_memfree(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Optimised, Quirks};
    use super::*;
    use crate::kernel::Kernel;
    use crate::machine::direct_map::DmapLevel;
    use crate::machine::pgtable::Level;
    use crate::machine::{Design, Gfp, MachineConfig, Prot};

    fn boot(mem_mib: u32) -> Optimised {
        let cfg = MachineConfig {
            mem_mib,
            design: Design::Execmem,
            ..MachineConfig::default()
        };
        Optimised::new(cfg, Quirks::NONE)
    }

    /// A free range merges with the free ranges on both sides.
    #[test]
    fn execmem_cache_add_merges_both_neighbours() {
        let mut c = ExecmemCache::default();
        c.add(0x1000, 0x2000);
        c.add(0x3000, 0x4000);
        c.add(0x2000, 0x3000);
        assert_eq!(c.free_ranges().collect::<Vec<_>>(), [(0x1000, 0x4000)]);
        assert_eq!(c.alloc_locked(0x1000), Some(0x1000), "the low end");
        assert_eq!(c.free_ranges().collect::<Vec<_>>(), [(0x2000, 0x4000)]);
        assert_eq!(c.alloc_locked(0x3000), None, "no range is long enough");
        assert_eq!(c.busy_containing(0x1fff), Some((0x1000, 0x2000)));
        assert_eq!(c.busy_containing(0x2000), None);
    }

    /// A first allocation populates one huge block: a PMD leaf, INT3, ROX,
    /// its whole 2 MiB alias read-only without a split; the rest is free.
    #[test]
    fn populate_makes_a_huge_rox_block_without_splitting_the_direct_map() {
        let mut k = boot(64);
        let c = &mut k.core;
        let p = c.execmem_alloc(3 * PAGE_SIZE + 5).expect("room");
        assert_eq!(p % PMD_SIZE, 0);
        let leaf = c.m.pgtables.lookup(p).unwrap();
        assert_eq!((leaf.level, leaf.prot), (Level::Pmd, Prot::PAGE_KERNEL_ROX));
        assert_eq!(c.m.dmap.lookup(leaf.pfn).unwrap().1, DmapLevel::M2);
        assert_eq!(c.m.dmap.prot(leaf.pfn), Prot::PAGE_KERNEL_RO);
        assert_eq!(c.m.dmap.stats().direct_map_level2_splits, 0);
        let mut b = [0; 8];
        c.m.read(p + PMD_SIZE - 8, &mut b).unwrap();
        assert_eq!(b, [0xcc; 8]);
        assert_eq!(
            c.execmem.free_ranges().collect::<Vec<_>>(),
            [(p + 4 * PAGE_SIZE, p + PMD_SIZE)],
            "the size was rounded to a page"
        );
    }

    /// A free splits the block's PMD and its alias (`execmem_force_rw()`);
    /// `set_memory_rox()` collapses the PMD again, but not the alias, which
    /// is never CPA's primary address. Once the whole block is free it is
    /// released: alias valid and writable again, frames back in the buddy.
    #[test]
    fn free_collapses_the_pmd_and_the_clean_releases_the_whole_block() {
        let mut k = boot(64);
        let free_before = k.core.m.nr_free_pages();
        let c = &mut k.core;
        let a = c.execmem_alloc(PAGE_SIZE).unwrap();
        let b = c.execmem_alloc(PAGE_SIZE).unwrap();
        assert_eq!(b, a + PAGE_SIZE, "first fit, low end");
        let pfn = c.m.pgtables.vmalloc_to_pfn(a).unwrap();
        c.m.write(b, &[0x90]).unwrap_err();
        c.execmem_free(b + 0x10);
        assert_eq!(c.m.pgtables.pmd_splits, 1);
        assert_eq!(c.m.pgtables.pmd_collapses, 1);
        let leaf = c.m.pgtables.lookup(b).unwrap();
        assert_eq!((leaf.level, leaf.prot), (Level::Pmd, Prot::PAGE_KERNEL_ROX));
        assert_eq!(c.m.dmap.stats().direct_map_level2_splits, 1);
        assert_eq!(c.m.dmap.prot(pfn + 1), Prot::PAGE_KERNEL_RO);
        assert_eq!(c.execmem.areas.len(), 1, "a is still busy");
        c.execmem_free(a);
        assert!(c.execmem.areas.is_empty() && c.execmem.free_ranges().next().is_none());
        assert!(c.m.pgtables.lookup(a).is_none());
        assert_eq!(c.m.dmap.prot(pfn), Prot::PAGE_KERNEL);
        assert_eq!(c.m.dmap.prot(pfn + 511), Prot::PAGE_KERNEL);
        assert_eq!(c.m.nr_free_pages(), free_before);
    }

    /// With no 2 MiB of pages left, the exact size is tried (3bd4e0ac61b2);
    /// that block is not a whole PMD, so no clean ever releases it: the
    /// kernel keeps it as cache.
    #[test]
    fn the_exact_size_fallback_is_kept_as_cache() {
        let mut k = boot(16);
        let c = &mut k.core;
        let spare = c.m.nr_free_pages() - 100;
        let hog =
            c.m.alloc_pages_node_each(None, Gfp::default(), spare as usize);
        assert_eq!(hog.len() as u64, spare);
        let p = c.execmem_alloc(8 * PAGE_SIZE).expect("the exact size fits");
        let area = c.execmem.areas.values().next().unwrap();
        assert_eq!(
            (area.addr, area.size, area.page_order),
            (p, 8 * PAGE_SIZE, 0)
        );
        c.execmem_free(p);
        assert_eq!(c.execmem.areas.len(), 1, "kept");
        assert_eq!(k.cached().len(), 1);
    }

    /// A free whose add fails under `__GFP_NORETRY` leaves the range busy
    /// and pending; the slow path's retry frees it and the block goes back.
    /// An injection for the second allocation is still armed after a free
    /// that made one. Before 187fd8521dd8 (`execmem-free-lost-range`) the
    /// range is lost: neither busy nor free, the block never released.
    #[test]
    fn a_failed_add_on_free_is_retried_and_lost_only_with_the_quirk() {
        for (nth, left) in [(1, None), (2, Some(1))] {
            let mut k = boot(64);
            let c = &mut k.core;
            let p = c.execmem_alloc(PAGE_SIZE).unwrap();
            c.execmem_fail_nth(nth);
            c.execmem_free(p);
            assert!(c.execmem.areas.is_empty(), "nth {nth}: released");
            assert!(c.execmem.pending.is_empty());
            assert_eq!(c.execmem.fail_nth, left);
        }
        let cfg = MachineConfig {
            design: Design::Execmem,
            ..MachineConfig::default()
        };
        let mut k = Optimised::new(cfg, Quirks::NONE.with(Quirk::ExecmemFreeLostRange));
        let c = &mut k.core;
        let p = c.execmem_alloc(PAGE_SIZE).unwrap();
        c.execmem_fail_nth(1);
        c.execmem_free(p);
        assert_eq!(c.execmem.areas.len(), 1, "kept");
        assert!(c.execmem.busy_containing(p).is_none());
        assert_eq!(
            c.execmem.free_ranges().collect::<Vec<_>>(),
            [(p + PAGE_SIZE, p + PMD_SIZE)],
            "the freed page is in neither tree"
        );
        assert!(
            k.cached().is_empty(),
            "a block with a lost range is not cache"
        );
    }
}
