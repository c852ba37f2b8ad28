//! The reference kernel: the straightforward world before 5.18 (DESIGN §4).
//!
//! `vmalloc` always uses order-0 pages mapped by PTEs (flags that ask for huge
//! pages are accepted and ignored), each area from a first-fit allocator with a
//! guard page. BPF programs get one `module_alloc()` each, as
//! `bpf_jit_binary_alloc()` did before `bpf_prog_pack`. It is written to be
//! obviously right, and shares no code with the optimised kernel above the
//! machine layer.

mod bpf;
mod vmap;

use super::{
    Area, Errno, ImageSlot, Kernel, Prog, Region, RegionKind, Text, VmallocFlags, VmapView,
};
use crate::machine::consts::{
    MODULES_END, MODULES_VADDR, PAGE_SIZE, VMALLOC_END, VMALLOC_START, page_align,
};
use crate::machine::{Gfp, Machine, MachineConfig, Prot};
use vmap::VmapSpace;

/// Which virtual range an area is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Space {
    Vmalloc,
    Modules,
}

/// A `vm_struct`: where an area is, its pages, and `VM_FLUSH_RESET_PERMS`.
#[derive(Clone, Debug)]
struct VmArea {
    addr: u64,
    /// Mapped bytes (without the guard page).
    size: u64,
    pages: Vec<u64>,
    space: Space,
    flush_reset_perms: bool,
}

/// The reference kernel on its machine.
pub struct Reference {
    m: Machine,
    vmalloc_space: VmapSpace,
    module_space: VmapSpace,
    areas: Vec<Option<VmArea>>,
    images: Vec<ImageSlot>,
    /// The `module_alloc()` area behind each program image.
    prog_areas: Vec<Option<VmArea>>,
}

impl Reference {
    pub fn new(cfg: MachineConfig) -> Self {
        Self {
            m: Machine::new(cfg),
            vmalloc_space: VmapSpace::new(VMALLOC_START, VMALLOC_END),
            module_space: VmapSpace::new(MODULES_VADDR, MODULES_END),
            areas: Vec::new(),
            images: Vec::new(),
            prog_areas: Vec::new(),
        }
    }

    /// `__vmalloc_node_range()` with order-0 pages only: reserve the area
    /// (`align`ed), get one page at a time, map each with a PTE. On failure
    /// everything is given back and the caller sees `NULL`.
    fn vmalloc_range(
        &mut self,
        size: u64,
        align: u64,
        gfp: Gfp,
        space: Space,
    ) -> Result<VmArea, Errno> {
        let size = page_align(size);
        if size == 0 || size / PAGE_SIZE > self.m.nr_pages() {
            return Err(Errno::Enomem);
        }
        let vmap = match space {
            Space::Vmalloc => &mut self.vmalloc_space,
            Space::Modules => &mut self.module_space,
        };
        let addr = vmap.alloc(size, align).ok_or(Errno::Enomem)?;
        let mut area = VmArea {
            addr,
            size,
            pages: Vec::with_capacity((size / PAGE_SIZE) as usize),
            space,
            flush_reset_perms: false,
        };
        let nr = (size / PAGE_SIZE) as usize;
        area.pages = self.m.alloc_pages_node_each(None, gfp, nr);
        if area.pages.len() < nr {
            // "vmalloc error: ... failed to allocate pages"; __vfree().
            self.vfree_area(area);
            return Err(Errno::Enomem);
        }
        self.m
            .pgtables
            .map_ptes(addr, &area.pages, Prot::PAGE_KERNEL);
        Ok(area)
    }

    /// `__vunmap()`: unmap, reset the direct map if `VM_FLUSH_RESET_PERMS`, free
    /// every page, release the address range.
    fn vfree_area(&mut self, area: VmArea) {
        self.m.pgtables.unmap(area.addr, area.size);
        if area.flush_reset_perms {
            self.m.vm_reset_perms(&area.pages);
        }
        self.m.__free_pages_each(&area.pages);
        match area.space {
            Space::Vmalloc => self.vmalloc_space.free(area.addr),
            Space::Modules => self.module_space.free(area.addr),
        }
    }

    fn new_area(&mut self, area: VmArea) -> Area {
        self.areas.push(Some(area));
        Area(self.areas.len() as u32 - 1)
    }

    fn area(&self, a: Area) -> &VmArea {
        self.areas[a.0 as usize]
            .as_ref()
            .expect("use of a freed vmalloc area")
    }
}

impl Kernel for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn machine(&self) -> &Machine {
        &self.m
    }

    fn machine_mut(&mut self) -> &mut Machine {
        &mut self.m
    }

    fn vmalloc_node(&mut self, size: u64, align: u64, flags: VmallocFlags) -> Result<Area, Errno> {
        let gfp = Gfp {
            zero: flags.zero,
            comp: false,
        };
        let area = self.vmalloc_range(size, align, gfp, Space::Vmalloc)?;
        Ok(self.new_area(area))
    }

    /// Plain `vmalloc()`: order-0 pages have nothing to fall back from, so
    /// `__GFP_NOFAIL` changes nothing here.
    fn kvmalloc(&mut self, size: u64, _nofail: bool) -> Result<Area, Errno> {
        self.vmalloc(size, VmallocFlags::default())
    }

    fn vfree(&mut self, area: Area) {
        let a = self.areas[area.0 as usize]
            .take()
            .expect("vfree of a freed vmalloc area");
        self.vfree_area(a);
    }

    /// `execmem_alloc()` before the ROX cache: `execmem_vmalloc()` in the
    /// module range with `VM_FLUSH_RESET_PERMS`, then what its user does
    /// before use — INT3 over it and `set_memory_rox()` (x86 ftrace's
    /// `arch_ftrace_update_trampoline()`).
    fn execmem_alloc(&mut self, size: u64) -> Result<Area, Errno> {
        let mut area = self.vmalloc_range(size, 1, Gfp::default(), Space::Modules)?;
        self.m
            .memset(area.addr, 0xcc, area.size as usize)
            .expect("a fresh area is writable");
        area.flush_reset_perms = true;
        self.m
            .set_memory_rox(area.addr, area.size / PAGE_SIZE)
            .expect("a fresh area is mapped");
        Ok(self.new_area(area))
    }

    fn execmem_free(&mut self, area: Area) {
        self.vfree(area)
    }

    fn area_addr(&self, area: Area) -> u64 {
        self.area(area).addr
    }

    fn bpf_prog_load(&mut self, text: &Text, align: u32, rand: u32) -> Result<Prog, Errno> {
        self.jit_load(text, align, rand)
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

    /// Freed ranges are reusable at once: nothing is ever unpurged.
    fn vmap_view_into(&self, v: &mut VmapView) {
        (v.lazy_pages, v.lazy_max_pages) = (0, 0);
        v.busy.clear();
        v.unpurged.clear();
        v.busy.extend(self.vmalloc_space.busy());
        v.busy.extend(self.module_space.busy());
    }

    fn regions_into(&self, out: &mut Vec<Region>) {
        let areas = self.areas.iter().enumerate().filter_map(|(i, a)| {
            a.as_ref().map(|a| Region {
                start: a.addr,
                size: a.size,
                kind: RegionKind::Vmalloc(Area(i as u32)),
            })
        });
        let progs = self.prog_areas.iter().flatten().map(|a| Region {
            start: a.addr,
            size: a.size,
            kind: RegionKind::ProgArea,
        });
        out.extend(areas.chain(progs));
    }
}
