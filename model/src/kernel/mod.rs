//! The kernel API both implementations serve (DESIGN §3), and what the harness
//! may know of a kernel: its machine and the images of its BPF programs.
//!
//! Driver-side page operations act on the `struct page` a driver got from
//! `vmalloc_to_page()`; they are core mm, the same in every kernel, and so have
//! default bodies here. Everything that allocates is the implementation's own.

pub mod optimised;
pub mod probe;
pub mod reference;

use crate::machine::cpa::CpaError;
use crate::machine::direct_map::DirectMapStats;
use crate::machine::list::{DRIVER_LIST, page_lru};
use crate::machine::oops::{Fault, FaultCause};
use crate::machine::{Machine, MachineConfig};

pub use crate::machine::text::Text;
pub use optimised::quirks::Quirks;
pub use probe::{Image, ImageSlot, Landing};

/// An error a kernel call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `-ENOMEM` (or a NULL return from an allocator).
    Enomem,
    /// `-EINVAL`.
    Einval,
    /// `-EFAULT` (CPA on an address with no mapping).
    Efault,
}

impl Errno {
    pub fn name(self) -> &'static str {
        match self {
            Errno::Enomem => "ENOMEM",
            Errno::Einval => "EINVAL",
            Errno::Efault => "EFAULT",
        }
    }
}

/// Which `set_memory_*()` a driver calls (`arch/x86/mm/pat/set_memory.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetMemory {
    /// `set_memory_ro()`: clear `_PAGE_RW`, on the direct-map alias too.
    Ro,
    /// `set_memory_rw()`: set `_PAGE_RW`, on the alias too.
    Rw,
    /// `set_memory_x()`: clear `_PAGE_NX`; NX-only, so the alias is left alone.
    X,
    /// `set_memory_nx()`: set `_PAGE_NX`; the alias is left alone.
    Nx,
    /// `set_memory_rox()`: clear `_PAGE_RW | _PAGE_NX`; the alias loses RW only.
    Rox,
}

impl SetMemory {
    pub const ALL: [SetMemory; 5] = [
        SetMemory::Ro,
        SetMemory::Rw,
        SetMemory::X,
        SetMemory::Nx,
        SetMemory::Rox,
    ];

    /// The kernel function's name.
    pub fn name(self) -> &'static str {
        match self {
            SetMemory::Ro => "set_memory_ro",
            SetMemory::Rw => "set_memory_rw",
            SetMemory::X => "set_memory_x",
            SetMemory::Nx => "set_memory_nx",
            SetMemory::Rox => "set_memory_rox",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The virtual-area allocator's state, as `/proc/vmallocinfo` shows it: busy
/// areas and lazily freed ones not yet purged ("unpurged vm_area"), each as
/// `start..end` with its guard page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmapView {
    pub busy: Vec<(u64, u64)>,
    pub unpurged: Vec<(u64, u64)>,
    /// `vmap_lazy_nr`: pages freed lazily and not yet purged.
    pub lazy_pages: u64,
    /// `lazy_max_pages()`: above this, a free purges at once (0 for a kernel
    /// that never defers a purge).
    pub lazy_max_pages: u64,
}

/// Whether a vmalloc caller asks for huge pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HugeHint {
    /// Plain `vmalloc()`/`vzalloc()`.
    #[default]
    Default,
    /// `VM_ALLOW_HUGE_VMAP` (`vmalloc_huge()`, since 559089e0a93d).
    Allow,
    /// `VM_NO_HUGE_VMAP` (`vmalloc_no_huge()`, before 559089e0a93d).
    Forbid,
}

/// What a driver passes to `vmalloc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmallocFlags {
    pub huge: HugeHint,
    /// `__GFP_ZERO` (`vzalloc()`).
    pub zero: bool,
    /// `__GFP_NOFAIL`: the allocation may not fail. (When memory really runs
    /// out the kernel would loop in the OOM killer; the model returns
    /// `-ENOMEM`.)
    pub nofail: bool,
}

/// Where a fault can be injected (`fail_nth(SITE, N)`): allocations a
/// kernel makes internally, in the spirit of `failslab` and
/// `/proc/self/fail-nth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailSite {
    /// The maple-tree node allocations of `execmem_cache_free()` (under
    /// `__GFP_NORETRY` since 187fd8521dd8): only the `execmem` design has
    /// them.
    ExecmemCacheFree,
}

impl FailSite {
    pub const ALL: [FailSite; 1] = [FailSite::ExecmemCacheFree];

    pub fn name(self) -> &'static str {
        match self {
            FailSite::ExecmemCacheFree => "execmem_cache_free",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A kernel's handle for a vmalloc area it handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Area(pub u32);

/// A kernel's handle for a loaded BPF program (index into its image slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prog(pub u32);

/// What a kernel-owned range of virtual memory is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegionKind {
    /// A driver's vmalloc area.
    Vmalloc(Area),
    /// A pack of program chunks.
    Pack,
    /// The `module_alloc` area of one program (the reference's images, the
    /// optimised kernel's oversize programs).
    ProgArea,
    /// A block of the ROX cache (`mm/execmem.c`), which packs and larger
    /// programs are cut from in the `execmem` design.
    RoxCache,
}

/// A live, mapped range a kernel owns (without its guard page).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region {
    pub start: u64,
    pub size: u64,
    pub kind: RegionKind,
}

/// A pack as reports draw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackView {
    pub base: u64,
    pub size: u64,
    /// One bit per 64-byte chunk.
    pub bitmap: Vec<u64>,
}

/// A `struct page *`, as its pfn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageRef(pub u64);

/// The kernel API. One implementation per kernel; the harness drives both.
pub trait Kernel {
    /// `reference` or `optimised`.
    fn name(&self) -> &'static str;
    fn machine(&self) -> &Machine;
    fn machine_mut(&mut self) -> &mut Machine;

    // ---- driver side: vmalloc ---------------------------------------------

    /// `__vmalloc_node_range()` over the vmalloc range with `align` (a power
    /// of two): `__vmalloc_node(size, align, …)` with the alignment a caller
    /// asks for, or any of the calls below with `align` 1.
    fn vmalloc_node(&mut self, size: u64, align: u64, flags: VmallocFlags) -> Result<Area, Errno>;
    /// `vmalloc()` / `vzalloc()` / `vmalloc_huge()` / `vmalloc_no_huge()`.
    fn vmalloc(&mut self, size: u64, flags: VmallocFlags) -> Result<Area, Errno> {
        self.vmalloc_node(size, 1, flags)
    }
    /// `kvmalloc()`'s vmalloc fallback (the `kmalloc` attempt is taken to have
    /// failed, as it does for large sizes under fragmentation or
    /// `__GFP_NORETRY`), with or without `__GFP_NOFAIL`.
    fn kvmalloc(&mut self, size: u64, nofail: bool) -> Result<Area, Errno>;
    /// `vfree()`.
    fn vfree(&mut self, area: Area);
    /// `execmem_alloc(EXECMEM_FTRACE, size)`: ROX memory filled with
    /// trapping instructions, what an execmem user of a ROX type starts
    /// from (a kernel without the ROX cache: a module-range vmalloc made
    /// so, with `VM_FLUSH_RESET_PERMS`, as x86 ftrace did before
    /// 5d79c2be5081 moved it onto the cache [id from a Fixes: tag]).
    fn execmem_alloc(&mut self, size: u64) -> Result<Area, Errno>;
    /// `execmem_free()` of what [`Kernel::execmem_alloc`] returned.
    fn execmem_free(&mut self, area: Area);
    /// The address `vmalloc()` returned.
    fn area_addr(&self, area: Area) -> u64;

    /// A driver's `memcpy(buf, area + off, len)`.
    fn vread(&mut self, area: Area, off: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let addr = self.area_addr(area) + off;
        self.machine_mut().read(addr, buf)
    }
    /// A driver's `memcpy(area + off, data, len)`.
    fn vwrite(&mut self, area: Area, off: u64, data: &[u8]) -> Result<(), Fault> {
        let addr = self.area_addr(area) + off;
        self.machine_mut().write(addr, data)
    }
    /// A driver's `memset(area + off, value, len)`.
    fn vmemset(&mut self, area: Area, off: u64, value: u8, len: usize) -> Result<(), Fault> {
        let addr = self.area_addr(area) + off;
        self.machine_mut().memset(addr, value, len)
    }
    /// `set_memory_*(area + off, pages)`: CPA on the area's mapping and, as
    /// `cpa_process_alias()` does, its direct-map alias. A range that runs
    /// past the mapping meets the guard page: "CPA: called for zero pte" and
    /// `-EFAULT`, with the pages before it changed. Like every
    /// `change_page_attr_set_clr()`, it first calls `vm_unmap_aliases()`.
    fn set_memory(
        &mut self,
        area: Area,
        off: u64,
        pages: u64,
        change: SetMemory,
    ) -> Result<(), Errno> {
        self.vm_unmap_aliases();
        let addr = self.area_addr(area) + off;
        let m = self.machine_mut();
        let r = match change {
            SetMemory::Ro => m.set_memory_ro(addr, pages),
            SetMemory::Rw => m.set_memory_rw(addr, pages),
            SetMemory::X => m.set_memory_x(addr, pages),
            SetMemory::Nx => m.set_memory_nx(addr, pages),
            SetMemory::Rox => m.set_memory_rox(addr, pages),
        };
        r.map_err(|CpaError::Fault| Errno::Efault)
    }
    /// What a stale pointer to `addr` reads, `len` bytes, without an oops (as
    /// [`Kernel::stale_probe`] asks what a stale jump would run).
    fn stale_read(&self, addr: u64, len: usize) -> Result<Vec<u8>, FaultCause> {
        let mut buf = vec![0; len];
        (self.machine().probe_read(addr, &mut buf))
            .map(|()| buf)
            .map_err(|f| f.cause)
    }
    /// The direct map's counters: `/proc/meminfo`'s `DirectMap4k/2M/1G`
    /// (`arch_report_meminfo()`) and `/proc/vmstat`'s
    /// `direct_map_level2_splits` / `direct_map_level3_splits`.
    fn direct_map_stats(&self) -> DirectMapStats {
        self.machine().dmap.stats()
    }
    /// The virtual-area allocator's state (`/proc/vmallocinfo`).
    fn vmap_view(&self) -> VmapView {
        let mut v = VmapView::default();
        self.vmap_view_into(&mut v);
        v
    }
    /// [`Kernel::vmap_view`] into `v`, whose vectors are cleared first (the
    /// oracles ask after every op that changed something and keep one).
    fn vmap_view_into(&self, v: &mut VmapView);
    /// `vm_unmap_aliases()`: purge every lazily freed area now.
    fn vm_unmap_aliases(&mut self) {}

    /// `vmalloc_to_page(area + off)`.
    fn vmalloc_to_page(&mut self, area: Area, off: u64) -> Option<PageRef> {
        let addr = self.area_addr(area) + off;
        self.machine().pgtables.vmalloc_to_pfn(addr).map(PageRef)
    }

    // ---- driver side: what drivers do to the struct page they got ----------

    /// `get_page(page)`.
    fn get_page(&mut self, page: PageRef) {
        self.machine_mut().get_page(page.0)
    }
    /// `put_page(page)`.
    fn put_page(&mut self, page: PageRef) {
        self.machine_mut().put_page(page.0)
    }
    /// `page->mapping = value`.
    fn set_mapping(&mut self, page: PageRef, value: u64) {
        self.machine_mut().mm.page_mut(page.0).set_mapping(value)
    }
    /// `page->index = value`.
    fn set_index(&mut self, page: PageRef, value: u64) {
        self.machine_mut().mm.page_mut(page.0).set_index(value)
    }
    /// `list_add(&page->lru, &driver_list)`.
    fn list_add(&mut self, page: PageRef) {
        let _ = self.machine_mut().list_add(page_lru(page.0), DRIVER_LIST);
    }
    /// `list_del(&page->lru)`.
    fn list_del(&mut self, page: PageRef) {
        let _ = self.machine_mut().list_del(page_lru(page.0));
    }
    /// `INIT_LIST_HEAD(&page->lru)`.
    fn init_list_head(&mut self, page: PageRef) {
        let _ = self.machine_mut().init_list_head(page_lru(page.0));
    }
    /// `SetPageReserved(page)`.
    fn set_reserved(&mut self, page: PageRef) {
        self.machine_mut().set_page_reserved(page.0)
    }
    /// `ClearPageReserved(page)`.
    fn clear_reserved(&mut self, page: PageRef) {
        self.machine_mut().clear_page_reserved(page.0)
    }
    /// `page_count(page)`; `None` if it oopsed.
    fn page_count(&mut self, page: PageRef) -> Option<i32> {
        self.machine_mut().page_count(page.0)
    }
    /// `READ_ONCE(page->mapping)`.
    fn page_mapping(&self, page: PageRef) -> u64 {
        self.machine().mm.page(page.0).mapping()
    }
    /// `page_index(page)`.
    fn page_index(&self, page: PageRef) -> u64 {
        self.machine().mm.page(page.0).index()
    }
    /// `page_private(page)`.
    fn page_private(&self, page: PageRef) -> u64 {
        self.machine().mm.page(page.0).private()
    }
    /// `set_page_private(page, value)`.
    fn set_page_private(&mut self, page: PageRef, value: u64) {
        self.machine_mut().mm.page_mut(page.0).set_private(value)
    }

    // ---- BPF side -----------------------------------------------------------

    /// Loads a program: JIT binary allocation, the JIT writing `text`, and
    /// making it executable. `align` is the JIT's image alignment (a power of
    /// two ≤ 8) and `rand` stands for `get_random_u32()` in the choice of the
    /// random start.
    fn bpf_prog_load(&mut self, text: &Text, align: u32, rand: u32) -> Result<Prog, Errno>;
    /// `bpf_prog_create()`: a classic BPF filter (`SO_ATTACH_FILTER`,
    /// seccomp), converted and JITed like any program but with
    /// `bpf_prog_was_classic()`, which the 2026 cBPF hardening
    /// (96cce16e26dd) keys its predictor flush on. A kernel without that
    /// hardening loads it like any program.
    fn bpf_prog_create(&mut self, text: &Text, rand: u32) -> Result<Prog, Errno> {
        self.bpf_prog_load(text, 1, rand)
    }
    /// Indirect branch predictor flushes (`bpf_arch_pred_flush()`: IBPB on
    /// every CPU) the kernel has issued.
    fn pred_flushes(&self) -> u64 {
        0
    }
    /// The JIT error path: allocate the binary for a `len`-byte program, fail
    /// before finalising, free it.
    fn bpf_prog_load_fail(&mut self, len: u32, rand: u32) -> Result<(), Errno>;
    /// Unloads a program (`bpf_jit_free`).
    fn bpf_prog_free(&mut self, prog: Prog);
    /// `jit_subprogs()` for a program whose subprograms have `texts`, where
    /// the extra pass (the one that finalises each subprogram) fails on
    /// subprogram `fail`: the ones before it are finalised, it is freed on the
    /// JIT's error path, and `out_free:` frees every other one with
    /// `bpf_jit_free()` — including those never finalised. `rand` plays
    /// `get_random_u32()` for the first, then one more per subprogram.
    fn bpf_prog_load_subprogs_fail(
        &mut self,
        texts: &[Text],
        fail: usize,
        rand: u32,
    ) -> Result<(), Errno>;

    /// Every program image this kernel ever made, by [`Prog`] index.
    fn images(&self) -> &[ImageSlot];

    /// Every live mapped range this kernel owns.
    fn regions(&self) -> Vec<Region> {
        let mut out = Vec::new();
        self.regions_into(&mut out);
        out
    }
    /// [`Kernel::regions`] added to `out` (the oracles keep one buffer).
    fn regions_into(&self, out: &mut Vec<Region>);

    /// Memory the kernel keeps on purpose with nothing allocated from it,
    /// which no free gives back: blocks of the ROX cache that
    /// `execmem_cache_clean()` cannot release (not PMD-aligned or not whole
    /// PMDs). The leak oracle does not count them.
    fn cached(&self) -> Vec<Region> {
        Vec::new()
    }

    /// `fail_nth(site, nth)`: the `nth` allocation at `site` from now on
    /// fails. A kernel without the site ignores it.
    fn fail_nth(&mut self, _site: FailSite, _nth: u32) {}

    /// The packs, for kernels that have them.
    fn packs(&self) -> Vec<PackView> {
        Vec::new()
    }

    /// Runs a program: fetches its whole text.
    fn bpf_prog_run(&mut self, prog: Prog) -> Result<Fetched, Fault> {
        let img = &self.images()[prog.0 as usize].image;
        let (start, text) = (img.text_start, img.text);
        let m = self.machine_mut();
        if m.fetch_holds(start, &text)? {
            return Ok(Fetched::Text(text));
        }
        m.fetch(start, text.len()).map(Fetched::Bytes)
    }
    /// `read_kcore_iter()` of `len` bytes of a program's text from `off`:
    /// module memory is `KCORE_VMALLOC`, read by `vread_iter()` →
    /// `aligned_vread_iter()`, which finds each page with `vmalloc_to_page()`
    /// and copies it from its direct-map address
    /// (`copy_page_to_iter_nofault()` of `kmap_local_page()`); a page with no
    /// mapping reads as zeros (`zero_iter()`). So it reads through the
    /// alias, never the module mapping. A copy that faults ends short, and
    /// `read_kcore_iter()` then faults in the user buffer and retries — for
    /// ever, since the user buffer was never the problem (the reason
    /// 925f42645118 keeps the ROX cache in the direct map): the model
    /// returns the fault instead of hanging.
    fn kcore_read(&mut self, prog: Prog, off: u64, len: usize) -> Result<Vec<u8>, FaultCause> {
        use crate::machine::consts::{PAGE_SIZE, pfn_to_virt};
        let start = self.images()[prog.0 as usize].image.text_start + off;
        let mut out = vec![0; len];
        let mut done = 0;
        while done < len {
            let va = start + done as u64;
            let n = ((PAGE_SIZE - va % PAGE_SIZE) as usize).min(len - done);
            let m = self.machine();
            if let Some(pfn) = m.pgtables.vmalloc_to_pfn(va) {
                (m.probe_read(pfn_to_virt(pfn) + va % PAGE_SIZE, &mut out[done..done + n]))
                    .map_err(|f| f.cause)?;
            }
            done += n;
        }
        Ok(out)
    }

    /// Where a jump to the program's start + `off` lands.
    fn bpf_prog_probe(&self, prog: Prog, off: i64) -> Landing {
        let img = &self.images()[prog.0 as usize].image;
        let addr = img.text_start.wrapping_add_signed(off);
        probe::classify(self.machine(), addr, Some(prog), self.images())
    }
    /// Where a stale jump to a freed program's old start + `off` lands.
    fn stale_probe(&self, prog: Prog, off: i64) -> Landing {
        let img = &self.images()[prog.0 as usize].image;
        let addr = img.text_start.wrapping_add_signed(off);
        probe::classify(self.machine(), addr, None, self.images())
    }
}

/// What running a program fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Exactly the text the JIT wrote (compared in place, not copied: a
    /// program can be megabytes, run many times).
    Text(Text),
    /// Anything else: every byte fetched.
    Bytes(Vec<u8>),
}

/// Which implementation to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    Reference,
    Optimised,
}

impl KernelKind {
    pub const ALL: [KernelKind; 2] = [KernelKind::Reference, KernelKind::Optimised];

    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Reference => "reference",
            KernelKind::Optimised => "optimised",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Boots a machine and this kernel on it; quirks apply to the optimised
    /// kernel only.
    pub fn boot(self, cfg: MachineConfig, quirks: Quirks) -> Box<dyn Kernel> {
        match self {
            KernelKind::Reference => Box::new(reference::Reference::new(cfg)),
            KernelKind::Optimised => Box::new(optimised::Optimised::new(cfg, quirks)),
        }
    }
}
