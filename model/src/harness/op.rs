//! Operations: one call of the kernel API each, naming the objects it uses by the
//! order in which the trace created them (`v0`, `pg0`, `prog0`), never by
//! address. The same ops come from text traces and from fuzz bytes.

use crate::kernel::{FailSite, SetMemory, VmallocFlags};

/// The n-th vmalloc area the trace created (`v<n>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaId(pub u32);
/// The n-th `struct page *` the trace got from `vmalloc_to_page` (`pg<n>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageId(pub u32);
/// The n-th program the trace loaded (`prog<n>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgId(pub u32);

/// The kinds of object a trace names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandleKind {
    Area,
    Page,
    Prog,
}

impl HandleKind {
    /// The canonical name prefix: `v`, `pg`, `prog`.
    pub fn prefix(self) -> &'static str {
        match self {
            HandleKind::Area => "v",
            HandleKind::Page => "pg",
            HandleKind::Prog => "prog",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            HandleKind::Area => "vmalloc area",
            HandleKind::Page => "page",
            HandleKind::Prog => "program",
        }
    }
}

/// One operation. New variants are only ever appended (the fuzz decoder's tags
/// follow this order).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `vN = vmalloc(size)` and its variants (`vzalloc`, `vmalloc_huge`, …).
    Vmalloc { size: u64, flags: VmallocFlags },
    /// `vN = kvmalloc(size[, __GFP_NOFAIL])`.
    Kvmalloc { size: u64, nofail: bool },
    /// `vfree(vN)`.
    Vfree { area: AreaId },
    /// `vwrite(vN + off, "bytes")`.
    Vwrite {
        area: AreaId,
        off: u64,
        data: Vec<u8>,
    },
    /// `memset(vN + off, value, len)`.
    Vmemset {
        area: AreaId,
        off: u64,
        value: u8,
        len: u32,
    },
    /// `vread(vN + off, len)`.
    Vread { area: AreaId, off: u64, len: u32 },
    /// `pgN = vmalloc_to_page(vN + off)`.
    VmallocToPage { area: AreaId, off: u64 },
    /// `get_page(pgN)`.
    GetPage { page: PageId },
    /// `put_page(pgN)`.
    PutPage { page: PageId },
    /// `pgN->mapping = value`.
    SetMapping { page: PageId, value: u64 },
    /// `pgN->index = value`.
    SetIndex { page: PageId, value: u64 },
    /// `list_add(&pgN->lru, &driver_list)`.
    ListAdd { page: PageId },
    /// `list_del(&pgN->lru)`.
    ListDel { page: PageId },
    /// `INIT_LIST_HEAD(&pgN->lru)`.
    InitListHead { page: PageId },
    /// `SetPageReserved(pgN)`.
    SetReserved { page: PageId },
    /// `ClearPageReserved(pgN)`.
    ClearReserved { page: PageId },
    /// `page_count(pgN)`.
    PageCount { page: PageId },
    /// `pgN->mapping` (a read).
    PageMapping { page: PageId },
    /// `page_index(pgN)`.
    PageIndex { page: PageId },
    /// `page_private(pgN)`.
    PagePrivate { page: PageId },
    /// `progN = bpf_prog_load(len, align=…, rand=…)`, or with `classic`
    /// `progN = bpf_prog_create(len, rand=…)`: a classic BPF filter
    /// (`SO_ATTACH_FILTER`, seccomp), JITed like any program but with
    /// `bpf_prog_was_classic()`.
    ProgLoad {
        len: u32,
        align: u8,
        rand: u32,
        classic: bool,
    },
    /// `bpf_prog_load_fail(len, rand=…)`: the JIT error path.
    ProgLoadFail { len: u32, rand: u32 },
    /// `bpf_prog_free(progN)`.
    ProgFree { prog: ProgId },
    /// `bpf_prog_run(progN)`.
    ProgRun { prog: ProgId },
    /// `bpf_prog_probe(progN, ±off)`.
    ProgProbe { prog: ProgId, off: i32 },
    /// `stale_probe(progN, ±off)`: a jump to where a freed program was.
    StaleProbe { prog: ProgId, off: i32 },
    /// `bpf_prog_load_subprogs_fail(len, len, …, fail=k[, rand=…])`: a
    /// multi-subprogram load whose extra JIT pass fails on subprogram `k`.
    ProgLoadSubprogsFail { lens: Vec<u32>, fail: u8, rand: u32 },
    /// `set_page_private(pgN, value)`.
    SetPagePrivate { page: PageId, value: u64 },
    /// `set_memory_ro/rw/x/nx/rox(vN + off, pages)` on a driver's area.
    SetMemory {
        area: AreaId,
        off: u64,
        pages: u32,
        change: SetMemory,
    },
    /// `vN = __vmalloc_node(size, align, gfp)`: an aligned allocation.
    VmallocNode {
        size: u64,
        align: u64,
        flags: VmallocFlags,
    },
    /// `stale_vread(vN + off, len)`: what a pointer kept into an area after
    /// its `vfree()` reads there.
    StaleVread { area: AreaId, off: u64, len: u32 },
    /// `direct_map_stats()`: `/proc/meminfo`'s `DirectMap*` and
    /// `/proc/vmstat`'s `direct_map_level2/3_splits`, per kernel.
    DirectMapStats,
    /// `kcore_read(progN, off, len)`: `len` bytes of a program's text from
    /// `off`, read the way `/proc/kcore` reads module memory (through each
    /// page's direct-map alias).
    KcoreRead { prog: ProgId, off: u32, len: u32 },
    /// `fail_nth(site, nth)`: the `nth` allocation the kernel makes at
    /// `site` from now on fails (fault injection).
    FailNth { site: FailSite, nth: u8 },
    /// `vN = execmem_alloc(size)`: executable memory for an execmem user
    /// other than BPF — x86's ftrace trampolines (`alloc_tramp()` →
    /// `execmem_alloc(EXECMEM_FTRACE, size)`, sizes that are not page
    /// multiples) — ROX and filled with trapping instructions. Named like a
    /// vmalloc area; only `execmem_free` takes it.
    ExecmemAlloc { size: u64 },
    /// `execmem_free(vN)`.
    ExecmemFree { area: AreaId },
}

/// The `page` field of every page op (by reference, as `$op` is borrowed).
macro_rules! page_field {
    ($op:expr) => {
        match $op {
            Op::GetPage { page }
            | Op::PutPage { page }
            | Op::SetMapping { page, .. }
            | Op::SetIndex { page, .. }
            | Op::ListAdd { page }
            | Op::ListDel { page }
            | Op::InitListHead { page }
            | Op::SetReserved { page }
            | Op::ClearReserved { page }
            | Op::PageCount { page }
            | Op::PageMapping { page }
            | Op::PageIndex { page }
            | Op::PagePrivate { page }
            | Op::SetPagePrivate { page, .. } => Some(page),
            _ => None,
        }
    };
}

/// The value drivers store in `page->mapping`: a pointer to their
/// `address_space`, as `fb_deferred_io_fault()` does.
pub const DRIVER_MAPPING: u64 = 0xffff_8880_0a5c_0e18;

impl Op {
    /// The kind of handle this op creates, if any.
    pub fn creates(&self) -> Option<HandleKind> {
        match self {
            Op::Vmalloc { .. }
            | Op::Kvmalloc { .. }
            | Op::VmallocNode { .. }
            | Op::ExecmemAlloc { .. } => Some(HandleKind::Area),
            Op::VmallocToPage { .. } => Some(HandleKind::Page),
            Op::ProgLoad { .. } => Some(HandleKind::Prog),
            _ => None,
        }
    }

    /// The page this op acts on, if it is a page op.
    pub fn page(&self) -> Option<PageId> {
        page_field!(self).copied()
    }

    /// The page this op acts on, for renaming it.
    pub fn page_mut(&mut self) -> Option<&mut PageId> {
        page_field!(self)
    }
}

/// Limits every trace and every decoded input stays within.
pub mod limits {
    /// Largest `vmalloc` size.
    pub const MAX_VMALLOC: u64 = 64 << 20;
    /// Largest `vread` length and `vwrite` payload.
    pub const MAX_RW: u64 = 4096;
    /// Largest program.
    pub const MAX_PROG_LEN: u32 = 8 << 20;
    /// Largest probe offset either way.
    pub const MAX_PROBE_OFF: i32 = 1 << 23;
    /// Largest classic program's JIT image: a classic filter has at most
    /// `BPF_MAXINSNS` (4,096) instructions, each a few bytes of x86 once
    /// converted and JITed; 64 KiB bounds it (well below a pack, as the
    /// cBPF hardening assumes).
    pub const MAX_CLASSIC_LEN: u32 = 64 << 10;
    /// Most subprograms of one multi-subprogram load.
    pub const MAX_SUBPROGS: usize = 8;
    /// Most pages one `set_memory_*()` call changes.
    pub const MAX_SET_MEMORY_PAGES: u32 = (MAX_VMALLOC / 4096) as u32;
}
