//! `vmalloc` with huge pages, after v5.18 `mm/vmalloc.c` as fixed in 5.18-rc4:
//! `__vmalloc_node_range`, `__vmalloc_area_node`, `vm_area_alloc_pages`,
//! `__vunmap`.
//!
//! Huge mappings are opt-in (`VM_ALLOW_HUGE_VMAP`, 559089e0a93d) and used when
//! `size / num_online_nodes() >= PMD_SIZE`; size and alignment are then rounded
//! to `PMD_SIZE`. Each order-9 block is `split_page()`d into order-0 pages
//! (3b8000ae185c) and mapped by a PMD leaf. If an order-9 block cannot be had,
//! everything is given back and the allocation is retried with order-0 pages and
//! PTEs (the `fail:` path). `vfree` undoes exactly that.

use super::Core;
use super::quirks::Quirk;
use crate::kernel::Errno;
use crate::machine::consts::{
    PAGE_SHIFT, PAGE_SIZE, PAGES_PER_PMD, PMD_ORDER, PMD_SHIFT, PMD_SIZE, page_align, round_up,
};
use crate::machine::{Gfp, Prot};

/// Which range an area lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Space {
    Vmalloc,
    Modules,
}

/// The `vm_flags` bits that steer the huge-page decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct VmFlags {
    /// `VM_ALLOW_HUGE_VMAP`.
    pub allow_huge: bool,
    /// `VM_NO_HUGE_VMAP` (only meaningful before 559089e0a93d).
    pub no_huge: bool,
    /// `__GFP_NOFAIL` in the caller's gfp mask.
    pub nofail: bool,
}

/// A `vm_struct`.
#[derive(Clone, Debug)]
pub(super) struct VmStruct {
    pub addr: u64,
    /// Mapped bytes (the guard page not included).
    pub size: u64,
    /// Every 4 KiB page, in address order (`area->pages`).
    pub pages: Vec<u64>,
    /// `vm_area_page_order()`: 9 for a PMD-mapped area.
    pub page_order: u32,
    pub space: Space,
    /// `VM_FLUSH_RESET_PERMS`.
    pub flush_reset_perms: bool,
    /// How many of `pages`, from the first, came in compound blocks
    /// (`compound-huge-vmalloc`): those are freed one `__free_pages(page, 9)`
    /// per block, the rest (order-0 fallback pages) one by one.
    pub compound_pages: usize,
}

impl Core {
    /// The huge-page decision of `__vmalloc_node_range()`: the page shift to try
    /// first for `size` bytes on every node (`NUMA_NO_NODE`). Huge mappings are
    /// opt-in (`VM_ALLOW_HUGE_VMAP`) since 559089e0a93d; with
    /// `huge-vmalloc-opt-out` every caller gets them unless it passes
    /// `VM_NO_HUGE_VMAP`, as in 5.18-rc1..rc3.
    fn vmalloc_shift(&self, size: u64, vm: VmFlags) -> u32 {
        let wants_huge = if self.quirks.has(Quirk::HugeVmallocOptOut) {
            !vm.no_huge
        } else {
            vm.allow_huge
        };
        if !wants_huge || self.sabotage == Some(super::Sabotage::NoHugeVmalloc) {
            return PAGE_SHIFT;
        }
        let size_per_node = size / self.m.nr_nodes() as u64;
        if size_per_node >= PMD_SIZE {
            PMD_SHIFT
        } else {
            PAGE_SHIFT
        }
    }

    /// `__vmalloc_node_range(size, align, range, gfp, PAGE_KERNEL, vm_flags,
    /// NUMA_NO_NODE)`: with huge pages the size is rounded to `PMD_SIZE` and
    /// the alignment raised to it (`align = max(real_align, 1UL << shift)`).
    /// Whatever fails — no virtual range with that alignment
    /// (`__get_vm_area_node()`: "vmalloc error: size %lu, vm_struct allocation
    /// failed") or no pages — goes to `fail:`, which retries once with small
    /// pages, the caller's size and alignment, and otherwise returns `NULL`.
    /// (With `__GFP_NOFAIL` the kernel retries the area allocation forever;
    /// the model returns `-ENOMEM`.)
    pub(super) fn vmalloc_node_range(
        &mut self,
        real_size: u64,
        real_align: u64,
        space: Space,
        zero: bool,
        vm: VmFlags,
    ) -> Result<VmStruct, Errno> {
        if real_size == 0 || page_align(real_size) / PAGE_SIZE > self.m.nr_pages() {
            return Err(Errno::Enomem);
        }
        let mut shift = self.vmalloc_shift(real_size, vm);
        loop {
            let size = round_up(real_size, 1 << shift);
            let align = real_align.max(PAGE_SIZE).max(1 << shift);
            // __get_vm_area_node(): the area plus its guard page.
            if let Some(addr) = self.alloc_vmap_area(space, size + PAGE_SIZE, align) {
                let area = VmStruct {
                    addr,
                    size,
                    pages: Vec::new(),
                    page_order: shift - PAGE_SHIFT,
                    space,
                    flush_reset_perms: false,
                    compound_pages: 0,
                };
                if let Some(area) = self.vmalloc_area_node(area, zero, vm.nofail) {
                    return Ok(area);
                }
            }
            // fail: retry with small pages.
            if shift > PAGE_SHIFT {
                shift = PAGE_SHIFT;
                continue;
            }
            return Err(Errno::Enomem);
        }
    }

    /// `__vmalloc_area_node()`: get the pages and map them; on a shortfall,
    /// `__vfree()` the area and fail.
    fn vmalloc_area_node(
        &mut self,
        mut area: VmStruct,
        zero: bool,
        nofail: bool,
    ) -> Option<VmStruct> {
        let nr_small = (area.size / PAGE_SIZE) as usize;
        let (pages, high) = self.vm_area_alloc_pages(zero, nofail, area.page_order, nr_small);
        let fell_back = area.page_order > 0 && high < pages.len();
        if area.page_order > 0 && self.quirks.has(Quirk::CompoundHugeVmalloc) {
            area.compound_pages = high;
        }
        area.pages = pages;
        if area.pages.len() != nr_small {
            // "vmalloc error: size %lu, page order %u, failed to allocate pages"
            self.vunmap(area);
            return None;
        }
        if fell_back && !self.quirks.has(Quirk::FallbackMappedAsPmd) {
            // The 2024 fix ("mm/vmalloc: fix page mapping if
            // vm_area_alloc_pages() with high order fallback to order 0"): an
            // area that fell back is mapped page by page.
            area.page_order = 0;
        }
        self.vmap_pages_range(&area);
        Some(area)
    }

    /// `vm_area_alloc_pages()`: blocks of `order` until `nr_pages` small pages
    /// are there or the allocator fails; high-order blocks are split so each
    /// subpage is an independent order-0 page (3b8000ae185c). With
    /// `compound-huge-vmalloc` they are allocated with `__GFP_COMP` instead
    /// ("Compound pages required for remap_vmalloc_page") and not split, so
    /// `vmalloc_to_page()` hands out tail pages. A `__GFP_NOFAIL` caller whose
    /// high-order allocation fails falls back to order 0 here (as 6.x does);
    /// the second result is how many of the pages came in high-order blocks.
    fn vm_area_alloc_pages(
        &mut self,
        zero: bool,
        nofail: bool,
        order: u32,
        nr_pages: usize,
    ) -> (Vec<u64>, usize) {
        let mut order = order;
        let mut high = 0;
        let mut pages = Vec::with_capacity(nr_pages);
        while pages.len() < nr_pages {
            if order == 0 {
                let gfp = Gfp { zero, comp: false };
                let got = self
                    .m
                    .alloc_pages_node_each(None, gfp, nr_pages - pages.len());
                pages.extend(got);
                break;
            }
            let compound = self.quirks.has(Quirk::CompoundHugeVmalloc);
            let gfp = Gfp {
                zero,
                comp: compound,
            };
            let Some(page) = self.m.alloc_pages_node(None, gfp, order) else {
                if nofail {
                    // "fall back to the zero order allocations"
                    order = 0;
                    continue;
                }
                break;
            };
            if !compound {
                self.m.split_page(page, order);
            }
            pages.extend(page..page + (1 << order));
            high = pages.len();
        }
        (pages, high)
    }

    /// `vmap_pages_range(addr, end, prot, pages, page_shift)`: with
    /// `page_shift` PMD each group of 512 pages is mapped as the physically
    /// contiguous range that starts at its first page (`vmap_range_noflush`):
    /// by a PMD leaf when that frame is PMD-aligned, by 512 PTEs for consecutive
    /// frames otherwise. Right for an order-9 block; for order-0 fallback pages
    /// (`fallback-mapped-as-pmd`) it maps frames the area does not own.
    fn vmap_pages_range(&mut self, area: &VmStruct) {
        self.vmap_pages_range_prot(area, Prot::PAGE_KERNEL);
    }

    /// [`Core::vmap_pages_range`] with `prot` for every leaf.
    pub(super) fn vmap_pages_range_prot(&mut self, area: &VmStruct, prot: Prot) {
        if area.page_order == 0 {
            (self.m.pgtables).map_ptes(area.addr, &area.pages, prot);
            return;
        }
        let step = 1usize << area.page_order;
        let nr = self.m.nr_pages();
        for (i, chunk) in area.pages.chunks(step).enumerate() {
            let va = area.addr + (i * step) as u64 * PAGE_SIZE;
            if chunk[0] % PAGES_PER_PMD == 0 {
                self.m.pgtables.map_pmd(va, chunk[0], prot);
            } else {
                for j in 0..PAGES_PER_PMD {
                    let pfn = chunk[0] + j;
                    if pfn < nr {
                        self.m.pgtables.map_pte(va + j * PAGE_SIZE, pfn, prot);
                    }
                }
            }
        }
    }

    /// `__vunmap(addr, deallocate_pages = 1)`: `vm_remove_mappings()` (unmap,
    /// lazy free of the range, and for `VM_FLUSH_RESET_PERMS` the per-page
    /// direct-map reset with a purge of lazy areas), then every page back with
    /// `__free_pages(page, 0)` — or, for a compound area (before 3b8000ae185c),
    /// `__free_pages(page, page_order)` once per block, which runs
    /// `free_tail_pages_check()` on every tail.
    pub(super) fn vunmap(&mut self, area: VmStruct) {
        if self.sabotage != Some(super::Sabotage::KeepMappingOnVfree) {
            self.m.pgtables.unmap(area.addr, area.size);
        }
        self.free_vmap_area_noflush(area.space, area.addr);
        if area.flush_reset_perms && self.sabotage != Some(super::Sabotage::NoResetPerms) {
            self.m.vm_reset_perms(&area.pages);
            self.purge_vmap_area_lazy();
        }
        let mut pages = &area.pages[..];
        match (self.sabotage, pages.first()) {
            (Some(super::Sabotage::LeaveMappingOnFree), Some(&first)) => {
                self.m.mm.page_mut(first).set_mapping(0xffff_8880_0bad_0000)
            }
            (Some(super::Sabotage::LeakOnVfree), Some(_)) => pages = &pages[..pages.len() - 1],
            _ => {}
        }
        let (compound, single) = pages.split_at(area.compound_pages.min(pages.len()));
        for block in compound.chunks(1 << PMD_ORDER) {
            self.m.__free_pages(block[0], PMD_ORDER);
        }
        self.m.__free_pages_each(single);
    }
}
