//! The optimised kernel (DESIGN §4): huge-page `vmalloc` and a lock-free
//! `bpf_prog_pack` allocator — the design the 5.18 merge aimed at, with every fix
//! since, and quirks that put individual historical bugs back.
//!
//! It shares no code with the reference kernel above the machine layer.

mod bpf;
mod execmem;
pub mod pack;
pub mod quirks;
mod vmalloc;
mod vmap;

use std::collections::BTreeMap;

use super::{
    Area, Errno, ImageSlot, Kernel, PackView, Prog, Region, RegionKind, Text, VmallocFlags,
    VmapView,
};
use crate::machine::consts::{
    MODULES_END, MODULES_VADDR, PAGE_SIZE, PMD_SIZE, VMALLOC_END, VMALLOC_START, page_align,
};
use crate::machine::{Design, Machine, MachineConfig};
use pack::PackAlloc;
use quirks::Quirks;
use vmalloc::{Space, VmFlags, VmStruct};
use vmap::VmapSpace;

/// `lazy_max_pages()` with one online CPU: `fls(1) * 32 MiB / PAGE_SIZE`.
const LAZY_MAX_PAGES: u64 = (32 << 20) / PAGE_SIZE;

/// Test-only ways to break the optimised kernel on purpose, so that a test can
/// show each oracle catching the invariant it guards. These are not quirks: no
/// kernel did these; the setter exists only with the `sabotage` feature, which
/// only the tests enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// A new pack is made RO+X without its INT3 fill (oracle 3).
    SkipPackFill,
    /// `vfree` leaves `mapping` set on the first page (oracle 1, bad page).
    LeaveMappingOnFree,
    /// A pack's `set_memory_rox` runs one page past the area (oracle 1, a
    /// CPA `WARN`).
    CpaPastTheEnd,
    /// A new pack is made X but not RO (oracle 2, W^X).
    PackWritable,
    /// A new pack's direct-map alias is reset to RW after `set_memory_rox`
    /// (oracle 4).
    AliasWritable,
    /// Every program after the first gets the previous program's chunks
    /// again (oracle 5).
    ReuseChunk,
    /// `vfree` keeps the area's last page (oracle 6).
    LeakOnVfree,
    /// `__purge_vmap_area_lazy()` does nothing: freed ranges are never given
    /// back (oracle 6, vmap space).
    NoPurge,
    /// `free_vmap_area_noflush()` never purges, however many pages wait
    /// (the vmap space oracle).
    SkipLazyThreshold,
    /// `vfree` leaves the area mapped (the vmap space oracle: an unpurged
    /// range maps nothing).
    KeepMappingOnVfree,
    /// `VM_FLUSH_RESET_PERMS` is ignored: a freed pack's pages keep their
    /// read-only alias (oracle 4, at the end).
    NoResetPerms,
    /// A new pack's page-table changes are dropped from the machine's change
    /// log, so the incremental oracles never see the pack become executable:
    /// the end-of-run sweep must find the drift (and panic: a model bug).
    HideExecChanges,
    /// `vmalloc_huge()` never maps with PMDs (the ground-truth comparison:
    /// Linux shows `page_order` 9 where the model shows 0).
    NoHugeVmalloc,
    /// Only inside a failed multi-subprogram load (which makes and frees a
    /// pack): `vmap_lazy_nr` gains a page no unpurged area holds. Only the
    /// vmap-space check sees it, so the region checks must run right after
    /// that op: after every op that changed what is mapped, whatever its
    /// kind.
    SubprogsMiscountLazy,
}

impl Sabotage {
    /// Every sabotage (`--sabotage NAME` in a build with the `sabotage`
    /// feature).
    pub const ALL: [Sabotage; 14] = [
        Sabotage::SkipPackFill,
        Sabotage::LeaveMappingOnFree,
        Sabotage::CpaPastTheEnd,
        Sabotage::PackWritable,
        Sabotage::AliasWritable,
        Sabotage::ReuseChunk,
        Sabotage::LeakOnVfree,
        Sabotage::NoPurge,
        Sabotage::SkipLazyThreshold,
        Sabotage::KeepMappingOnVfree,
        Sabotage::NoResetPerms,
        Sabotage::HideExecChanges,
        Sabotage::NoHugeVmalloc,
        Sabotage::SubprogsMiscountLazy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::SkipPackFill => "skip-pack-fill",
            Sabotage::LeaveMappingOnFree => "leave-mapping-on-free",
            Sabotage::CpaPastTheEnd => "cpa-past-the-end",
            Sabotage::PackWritable => "pack-writable",
            Sabotage::AliasWritable => "alias-writable",
            Sabotage::ReuseChunk => "reuse-chunk",
            Sabotage::LeakOnVfree => "leak-on-vfree",
            Sabotage::NoPurge => "no-purge",
            Sabotage::SkipLazyThreshold => "skip-lazy-threshold",
            Sabotage::KeepMappingOnVfree => "keep-mapping-on-vfree",
            Sabotage::NoResetPerms => "no-reset-perms",
            Sabotage::HideExecChanges => "hide-exec-changes",
            Sabotage::NoHugeVmalloc => "no-huge-vmalloc",
            Sabotage::SubprogsMiscountLazy => "subprogs-miscount-lazy",
        }
    }

    pub fn from_name(s: &str) -> Option<Sabotage> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Everything but the pack allocator: the machine, vmalloc state, and the
/// backing of packs and oversize programs. It is the pack allocator's
/// [`pack::PackSource`].
pub(crate) struct Core {
    m: Machine,
    quirks: Quirks,
    /// Which design of executable memory this kernel is ([`Design`]).
    design: Design,
    sabotage: Option<Sabotage>,
    vmalloc_space: VmapSpace,
    module_space: VmapSpace,
    /// Pages freed lazily in both ranges, not yet purged (the global
    /// `vmap_lazy_nr`).
    lazy_pages: u64,
    areas: Vec<Option<VmStruct>>,
    /// `module_alloc` areas behind packs, by base address.
    pack_areas: BTreeMap<u64, VmStruct>,
    /// `module_alloc` areas of programs larger than a pack, by address.
    oversize: BTreeMap<u64, VmStruct>,
    /// The ROX cache behind packs and larger programs in the `execmem`
    /// design.
    execmem: execmem::ExecmemCache,
}

impl Core {
    /// `alloc_vmap_area()`: lowest fit; purge lazily freed ranges and retry
    /// once if nothing fits.
    fn alloc_vmap_area(&mut self, space: Space, size: u64, align: u64) -> Option<u64> {
        let found = self.space(space).find(size, align);
        found.or_else(|| {
            self.purge_vmap_area_lazy();
            self.space(space).find(size, align)
        })
    }

    /// `free_vmap_area_noflush()`.
    fn free_vmap_area_noflush(&mut self, space: Space, addr: u64) {
        self.lazy_pages += self.space(space).free_lazy(addr);
        if self.lazy_pages > LAZY_MAX_PAGES && self.sabotage != Some(Sabotage::SkipLazyThreshold) {
            self.purge_vmap_area_lazy();
        }
    }

    /// `__purge_vmap_area_lazy()` over every range.
    pub(super) fn purge_vmap_area_lazy(&mut self) {
        if self.sabotage == Some(Sabotage::NoPurge) {
            return;
        }
        self.vmalloc_space.purge();
        self.module_space.purge();
        self.lazy_pages = 0;
    }

    /// `module_memfree(addr)` = `vfree(addr)` → `__vunmap()` of v5.18
    /// `mm/vmalloc.c`: an address that is not page-aligned WARNs "Trying to
    /// vfree() bad address" and frees nothing; otherwise `find_vm_area()`
    /// finds the area that *contains* it (`__find_vmap_area()`: `va_start <=
    /// addr < va_end`, the guard page included) and `remove_vm_area(area->addr)`
    /// frees the whole area — silently, from whichever of its pages the
    /// address points into. Only an address in no busy area (a lazily freed
    /// one included: `free_vmap_area_noflush()` took it out of the busy tree)
    /// WARNs "Trying to vfree() nonexistent vm area". The module range holds
    /// only packs and oversize programs (in the `execmem` design, the ROX
    /// cache's blocks), so those are the areas searched.
    fn module_memfree(&mut self, addr: u64) {
        use crate::machine::oops::Oops;
        if addr % PAGE_SIZE != 0 {
            self.m.oops(Oops::Warn {
                function: "__vunmap",
                message: format!("Trying to vfree() bad address ({addr:#x})"),
            });
            return;
        }
        let found = [
            &mut self.pack_areas,
            &mut self.oversize,
            &mut self.execmem.areas,
        ]
        .into_iter()
        .find_map(|areas| {
            let (&start, a) = areas.range(..=addr).next_back()?;
            (addr < start + a.size + PAGE_SIZE).then_some((areas, start))
        })
        .and_then(|(areas, start)| areas.remove(&start));
        match found {
            Some(area) => self.vunmap(area),
            None => self.m.oops(Oops::Warn {
                function: "__vunmap",
                message: format!("Trying to vfree() nonexistent vm area ({addr:#x})"),
            }),
        }
    }

    fn space(&mut self, space: Space) -> &mut VmapSpace {
        match space {
            Space::Vmalloc => &mut self.vmalloc_space,
            Space::Modules => &mut self.module_space,
        }
    }
}

/// A program's binary: where its RO header is (the pack chunk or oversize
/// area).
#[derive(Clone, Copy, Debug)]
struct Binary {
    ro: u64,
}

/// The optimised kernel on its machine.
pub struct Optimised {
    core: Core,
    packs: PackAlloc,
    images: Vec<ImageSlot>,
    binaries: Vec<Option<Binary>>,
    /// Packs (by base) whose `arch_flush_needed` is clear: flushed since
    /// they were made and nothing of them freed since.
    clean_packs: std::collections::BTreeSet<u64>,
    /// `bpf_arch_pred_flush()` calls.
    pred_flushes: u64,
    /// `execmem_alloc()` allocations from the ROX cache (the `execmem`
    /// design), by index: their address. Their [`Area`] handles carry
    /// [`EXECMEM_AREA`].
    exec_allocs: Vec<Option<u64>>,
}

#[cfg(not(loom))]
thread_local! {
    /// Pack allocators of dropped kernels, reset, for the next kernels booted
    /// on this thread ([`PackAlloc::reset`]).
    static KEPT_PACKS: std::cell::RefCell<Vec<PackAlloc>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `PackAlloc::new(pack_size, max_packs)`, or a kept one of that shape.
fn pack_alloc(pack_size: u64, max_packs: usize) -> PackAlloc {
    #[cfg(not(loom))]
    {
        let shape = |p: &PackAlloc| (p.pack_size(), p.max_packs()) == (pack_size, max_packs);
        let kept = KEPT_PACKS.with_borrow_mut(|k| Some(k.swap_remove(k.iter().position(shape)?)));
        if let Some(p) = kept {
            return p;
        }
    }
    PackAlloc::new(pack_size, max_packs)
}

impl Drop for Optimised {
    /// Resets the pack allocator and keeps it for the next kernel.
    fn drop(&mut self) {
        #[cfg(not(loom))]
        {
            const KEEP: usize = 4;
            let mut packs = std::mem::replace(&mut self.packs, PackAlloc::new(PAGE_SIZE, 0));
            packs.reset();
            // A thread being torn down keeps nothing.
            let _ = KEPT_PACKS.try_with(|k| {
                let mut k = k.borrow_mut();
                if k.len() < KEEP {
                    k.push(packs);
                }
            });
        }
    }
}

/// The bit that marks an [`Area`] handle as an allocation from the ROX cache
/// (an index into `exec_allocs`, not a `vm_struct`).
const EXECMEM_AREA: u32 = 1 << 31;

impl Optimised {
    /// Boots the machine with `quirks`; packs are `PMD_SIZE × nodes`
    /// (ea2babac63d4).
    pub fn new(cfg: MachineConfig, quirks: Quirks) -> Self {
        Self::with_pack_size(cfg, quirks, PMD_SIZE * cfg.nodes as u64)
    }

    /// Boots with packs of `pack_size` bytes (a multiple of `PAGE_SIZE`).
    /// `PAGE_SIZE` is what x86 really ran in v5.18 final and v5.19: once
    /// 559089e0a93d made huge vmalloc opt-in, the probe `module_alloc()` of
    /// ef078600eec2 never came back huge and `bpf_prog_pack_size` fell back
    /// to `PAGE_SIZE` (one 4 KiB page on a PTE per pack, 64 chunks).
    pub fn with_pack_size(cfg: MachineConfig, quirks: Quirks, pack_size: u64) -> Self {
        assert!(
            pack_size >= PAGE_SIZE && pack_size % PAGE_SIZE == 0,
            "pack size {pack_size:#x} is not a multiple of PAGE_SIZE"
        );
        let mut m = Machine::new(cfg);
        m.free_clears_private = !quirks.has(quirks::Quirk::SplitKeepsPrivate);
        m.cpa_collapse = cfg.design == Design::Execmem;
        // Every pack holds pack_size bytes of frames: no more can be live.
        let max_packs = (m.nr_pages() * PAGE_SIZE / pack_size) as usize;
        Self {
            core: Core {
                m,
                quirks,
                design: cfg.design,
                sabotage: None,
                vmalloc_space: VmapSpace::new(VMALLOC_START, VMALLOC_END),
                module_space: VmapSpace::new(MODULES_VADDR, MODULES_END),
                lazy_pages: 0,
                areas: Vec::new(),
                pack_areas: BTreeMap::new(),
                oversize: BTreeMap::new(),
                execmem: execmem::ExecmemCache::default(),
            },
            packs: pack_alloc(pack_size, max_packs),
            images: Vec::new(),
            binaries: Vec::new(),
            clean_packs: std::collections::BTreeSet::new(),
            pred_flushes: 0,
            exec_allocs: Vec::new(),
        }
    }

    /// Breaks the kernel on purpose (tests of the oracles only).
    #[cfg(feature = "sabotage")]
    pub fn sabotage(&mut self, s: Sabotage) {
        self.core.sabotage = Some(s);
    }

    fn new_area(&mut self, r: Result<VmStruct, Errno>) -> Result<Area, Errno> {
        self.core.areas.push(Some(r?));
        Ok(Area(self.core.areas.len() as u32 - 1))
    }
}

impl Kernel for Optimised {
    fn name(&self) -> &'static str {
        "optimised"
    }

    fn machine(&self) -> &Machine {
        &self.core.m
    }

    fn machine_mut(&mut self) -> &mut Machine {
        &mut self.core.m
    }

    fn vmalloc_node(&mut self, size: u64, align: u64, flags: VmallocFlags) -> Result<Area, Errno> {
        let vm = VmFlags {
            allow_huge: flags.huge == super::HugeHint::Allow,
            no_huge: flags.huge == super::HugeHint::Forbid,
            nofail: flags.nofail,
        };
        let r = self
            .core
            .vmalloc_node_range(size, align, Space::Vmalloc, flags.zero, vm);
        self.new_area(r)
    }

    /// `kvmalloc()`'s vmalloc fallback with `VM_ALLOW_HUGE_VMAP` (9becb6889130).
    fn kvmalloc(&mut self, size: u64, nofail: bool) -> Result<Area, Errno> {
        let vm = VmFlags {
            allow_huge: true,
            no_huge: false,
            nofail,
        };
        let r = self
            .core
            .vmalloc_node_range(size, 1, Space::Vmalloc, false, vm);
        self.new_area(r)
    }

    fn vfree(&mut self, area: Area) {
        let a = self.core.areas[area.0 as usize]
            .take()
            .expect("vfree of a freed vmalloc area");
        self.core.vunmap(a);
    }

    /// `execmem_alloc(EXECMEM_FTRACE, size)`: from the ROX cache in the
    /// `execmem` design (5d79c2be5081); otherwise the module-range path
    /// programs larger than a pack take (`alloc_exec`: INT3, ROX,
    /// `VM_FLUSH_RESET_PERMS`).
    fn execmem_alloc(&mut self, size: u64) -> Result<Area, Errno> {
        if self.core.design == Design::Execmem {
            let addr = self.core.execmem_alloc(size).ok_or(Errno::Enomem)?;
            self.exec_allocs.push(Some(addr));
            return Ok(Area(EXECMEM_AREA | (self.exec_allocs.len() as u32 - 1)));
        }
        let r = self.core.alloc_exec(page_align(size)).ok_or(Errno::Enomem);
        self.new_area(r)
    }

    fn execmem_free(&mut self, area: Area) {
        if area.0 & EXECMEM_AREA == 0 {
            return self.vfree(area);
        }
        let addr = self.exec_allocs[(area.0 & !EXECMEM_AREA) as usize]
            .take()
            .expect("execmem_free of a freed allocation");
        self.core.execmem_free(addr);
    }

    fn area_addr(&self, area: Area) -> u64 {
        assert!(
            area.0 & EXECMEM_AREA == 0,
            "area_addr of an execmem allocation: a trace passes those only to execmem_free"
        );
        self.core.areas[area.0 as usize]
            .as_ref()
            .expect("use of a freed vmalloc area")
            .addr
    }

    fn bpf_prog_load(&mut self, text: &Text, align: u32, rand: u32) -> Result<Prog, Errno> {
        self.jit_load(text, align, rand, false)
    }

    fn bpf_prog_create(&mut self, text: &Text, rand: u32) -> Result<Prog, Errno> {
        self.jit_load(text, 1, rand, true)
    }

    fn pred_flushes(&self) -> u64 {
        self.pred_flushes
    }

    fn bpf_prog_load_fail(&mut self, len: u32, rand: u32) -> Result<(), Errno> {
        self.jit_load_fail(len, rand)
    }

    fn bpf_prog_free(&mut self, prog: Prog) {
        self.jit_free(prog)
    }

    fn bpf_prog_load_subprogs_fail(
        &mut self,
        texts: &[Text],
        fail: usize,
        rand: u32,
    ) -> Result<(), Errno> {
        self.jit_subprogs_fail(texts, fail, rand)
    }

    fn images(&self) -> &[ImageSlot] {
        &self.images
    }

    fn regions_into(&self, out: &mut Vec<Region>) {
        let c = &self.core;
        let areas = c.areas.iter().enumerate().filter_map(|(i, a)| {
            a.as_ref().map(|a| Region {
                start: a.addr,
                size: a.size,
                kind: RegionKind::Vmalloc(Area(i as u32)),
            })
        });
        let packs = c.pack_areas.values().map(|a| Region {
            start: a.addr,
            size: a.size,
            kind: RegionKind::Pack,
        });
        let oversize = c.oversize.values().map(|a| Region {
            start: a.addr,
            size: a.size,
            kind: RegionKind::ProgArea,
        });
        let cache = c.execmem.areas.values().map(|a| Region {
            start: a.addr,
            size: a.size,
            kind: RegionKind::RoxCache,
        });
        out.extend(areas.chain(packs).chain(oversize).chain(cache));
    }

    fn cached(&self) -> Vec<Region> {
        (self.core.execmem.idle_areas())
            .map(|a| Region {
                start: a.addr,
                size: a.size,
                kind: RegionKind::RoxCache,
            })
            .collect()
    }

    fn fail_nth(&mut self, site: super::FailSite, nth: u32) {
        match site {
            super::FailSite::ExecmemCacheFree => self.core.execmem_fail_nth(nth),
        }
    }

    fn vmap_view_into(&self, v: &mut VmapView) {
        let c = &self.core;
        (v.lazy_pages, v.lazy_max_pages) = (c.lazy_pages, LAZY_MAX_PAGES);
        v.busy.clear();
        v.unpurged.clear();
        for s in [&c.vmalloc_space, &c.module_space] {
            s.view(&mut v.busy, &mut v.unpurged);
        }
    }

    /// `vm_unmap_aliases()` → `_vm_unmap_aliases()` →
    /// `__purge_vmap_area_lazy()`.
    fn vm_unmap_aliases(&mut self) {
        self.core.purge_vmap_area_lazy();
    }

    fn packs(&self) -> Vec<PackView> {
        self.packs
            .snapshot()
            .into_iter()
            .map(|p| PackView {
                base: p.base,
                size: self.packs.pack_size(),
                bitmap: p.words,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::oops::Oops;

    /// A dropped kernel's pack allocator is kept on the thread and the next
    /// kernel of its shape takes it; one of another shape does not.
    #[test]
    #[cfg(not(loom))]
    fn a_dropped_kernels_pack_allocator_is_taken_by_the_next() {
        let kept =
            || KEPT_PACKS.with_borrow(|k| k.iter().map(|p| p.max_packs()).collect::<Vec<_>>());
        KEPT_PACKS.with_borrow_mut(Vec::clear);
        let cfg = MachineConfig::default();
        drop(Optimised::new(cfg, Quirks::NONE));
        let slots = (u64::from(cfg.mem_mib) << 20) / PMD_SIZE;
        assert_eq!(kept(), [slots as usize]);
        let small = Optimised::with_pack_size(cfg, Quirks::NONE, PAGE_SIZE);
        assert_eq!(kept(), [slots as usize], "another shape");
        let k = Optimised::new(cfg, Quirks::NONE);
        assert_eq!(kept(), [0usize; 0], "taken");
        drop((k, small));
        assert_eq!(kept().len(), 2);
    }

    fn warnings(m: &Machine) -> Vec<String> {
        (m.oopses().iter())
            .filter_map(|o| match o {
                Oops::Warn { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// `vfree()` finds an area by range, the guard page included; only an
    /// unaligned address or one in no busy area is refused.
    #[test]
    fn module_memfree_finds_the_area_that_contains_the_address() {
        let mut k = Optimised::new(MachineConfig::default(), Quirks::NONE);
        let c = &mut k.core;
        let alloc = |c: &mut Core| {
            let a = c.alloc_exec(3 * PAGE_SIZE).expect("room");
            let addr = a.addr;
            c.oversize.insert(addr, a);
            addr
        };
        let a = alloc(c);
        c.module_memfree(a + 0x10);
        assert_eq!(
            warnings(&c.m),
            [format!("Trying to vfree() bad address ({:#x})", a + 0x10)]
        );
        assert!(
            c.oversize.contains_key(&a),
            "an unaligned address frees nothing"
        );
        c.module_memfree(a + 2 * PAGE_SIZE);
        assert!(
            c.oversize.is_empty(),
            "a page inside the area frees all of it"
        );
        assert!(c.m.pgtables.lookup(a).is_none());
        c.module_memfree(a);
        assert_eq!(
            warnings(&c.m)[1],
            format!("Trying to vfree() nonexistent vm area ({a:#x})"),
            "a freed area is no longer in the busy tree"
        );
        let b = alloc(c);
        c.module_memfree(b + 3 * PAGE_SIZE);
        assert!(c.oversize.is_empty(), "the guard page belongs to the area");
        assert_eq!(warnings(&c.m).len(), 2);
    }
}
