//! What a well-behaved driver holds on the pages it got from `vmalloc_to_page()`,
//! and the cleanup it owes before `vfree()`: drop its references, take the page
//! off its list, clear `mapping`, `ClearPageReserved` (as `fb_deferred_io_cleanup`
//! and friends do), and give back the default protection of any page it changed
//! with `set_memory_*()` — `set_memory_nx()`, then `set_memory_rw()`, as modules
//! did before `VM_FLUSH_RESET_PERMS` — or its direct-map alias stays read-only.
//! Its protection changes keep W^X (`set_memory_x()` only on read-only pages,
//! `set_memory_rw()` only on non-executable ones), and it never stores to a page
//! it made read-only.
//!
//! The decoder uses this to generate only disciplined drivers, so that a bad page
//! state can only be the kernel's fault; the end-of-run teardown uses it to free
//! everything cleanly.

use std::collections::BTreeMap;

use super::op::{AreaId, Op, PageId};
use crate::kernel::SetMemory;
use crate::machine::consts::PAGE_SIZE;

/// The driver's state on one page of one area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverPage {
    /// A page handle naming it (the first one obtained).
    pub handle: PageId,
    /// References taken with `get_page` and not yet dropped.
    pub refs: u32,
    pub on_list: bool,
    /// What the driver last stored in `page->mapping` (a fresh page's is
    /// NULL: the page allocator hands out no page with a mapping).
    pub mapping: u64,
    pub reserved: bool,
    /// What the driver last stored in `page->index`; until then the field is
    /// whatever the page's last user left (the kernel never clears it).
    pub index: Option<u64>,
    /// What the driver last stored in `page->private`; until then the page
    /// allocator promises 0.
    pub private: Option<u64>,
}

/// The driver's view of every page handle and page it touches.
#[derive(Clone, Debug, Default)]
pub struct Driver {
    /// Page handle → (area, page index in the area).
    handles: Vec<(AreaId, u64)>,
    /// (area, page index) → state.
    pages: BTreeMap<(AreaId, u64), DriverPage>,
    /// Area → (read-only, executable) of each of its pages, for areas where
    /// the driver changed some page's protection from the default (RW, NX).
    prot: BTreeMap<AreaId, Vec<(bool, bool)>>,
    /// Each area's size, for the cleanup's whole-area calls.
    sizes: BTreeMap<AreaId, u64>,
}

impl Driver {
    /// The state of the page behind `handle`.
    pub fn page(&self, handle: PageId) -> DriverPage {
        let key = self.handles[handle.0 as usize];
        self.pages.get(&key).copied().unwrap_or(DriverPage {
            handle,
            ..Default::default()
        })
    }

    /// The area a page handle belongs to.
    pub fn area_of(&self, handle: PageId) -> AreaId {
        self.handles[handle.0 as usize].0
    }

    /// The size `area` was allocated with.
    pub fn size(&self, area: AreaId) -> u64 {
        self.sizes[&area]
    }

    /// The protection of page `i` of `area`: (read-only, executable).
    fn prot_of(&self, area: AreaId, i: u64) -> (bool, bool) {
        (self.prot.get(&area))
            .and_then(|v| v.get(i as usize).copied())
            .unwrap_or((false, false))
    }

    /// Pages `off / PAGE_SIZE ..` of the `pages` a call changes.
    fn span(off: u64, pages: u32) -> std::ops::Range<u64> {
        off / PAGE_SIZE..off / PAGE_SIZE + pages as u64
    }

    /// Whether `change` on those pages keeps every page W^X.
    pub fn keeps_wx(&self, area: AreaId, off: u64, pages: u32, change: SetMemory) -> bool {
        Self::span(off, pages).all(|i| {
            let (ro, x) = self.prot_of(area, i);
            match change {
                SetMemory::X => ro,
                SetMemory::Rw => !x,
                SetMemory::Ro | SetMemory::Nx | SetMemory::Rox => true,
            }
        })
    }

    /// Whether `off..off + len` of `area` is writable (no read-only page).
    pub fn writable(&self, area: AreaId, off: u64, len: u64) -> bool {
        let last = (off + len.max(1) - 1) / PAGE_SIZE;
        let Some(v) = self.prot.get(&area) else {
            return true;
        };
        let first = ((off / PAGE_SIZE) as usize).min(v.len());
        let end = (last as usize + 1).clamp(first, v.len());
        v[first..end].iter().all(|&(ro, _)| !ro)
    }

    /// Follows one op.
    pub fn observe(&mut self, op: &Op) {
        match op {
            Op::Vmalloc { size, .. }
            | Op::Kvmalloc { size, .. }
            | Op::VmallocNode { size, .. }
            | Op::ExecmemAlloc { size } => {
                let id = AreaId(self.sizes.len() as u32);
                self.sizes.insert(id, *size);
            }
            Op::SetMemory {
                area,
                off,
                pages,
                change,
            } => {
                let size = self.sizes.get(area).copied().unwrap_or(0);
                let n = size.div_ceil(PAGE_SIZE) as usize;
                let span = Self::span(*off, *pages);
                let (first, end) = ((span.start as usize).min(n), (span.end as usize).min(n));
                if first < end {
                    let v = (self.prot.entry(*area)).or_insert_with(|| vec![(false, false); n]);
                    for (ro, x) in &mut v[first..end] {
                        match change {
                            SetMemory::Ro => *ro = true,
                            SetMemory::Rw => *ro = false,
                            SetMemory::X => *x = true,
                            SetMemory::Nx => *x = false,
                            SetMemory::Rox => (*ro, *x) = (true, true),
                        }
                    }
                }
            }
            _ => {}
        }
        if let Op::VmallocToPage { area, off } = op {
            let key = (*area, off / PAGE_SIZE);
            let handle = PageId(self.handles.len() as u32);
            self.handles.push(key);
            self.pages.entry(key).or_insert(DriverPage {
                handle,
                ..Default::default()
            });
            return;
        }
        let Some(h) = op.page() else {
            if let Op::Vfree { area } = op {
                self.pages.retain(|k, _| k.0 != *area);
                self.prot.remove(area);
            }
            return;
        };
        let key = self.handles[h.0 as usize];
        let p = self
            .pages
            .get_mut(&key)
            .expect("page state exists for every handle");
        match op {
            Op::GetPage { .. } => p.refs += 1,
            Op::PutPage { .. } => p.refs = p.refs.saturating_sub(1),
            Op::SetMapping { value, .. } => p.mapping = *value,
            Op::SetIndex { value, .. } => p.index = Some(*value),
            Op::SetPagePrivate { value, .. } => p.private = Some(*value),
            Op::ListAdd { .. } => p.on_list = true,
            Op::ListDel { .. } => p.on_list = false,
            Op::SetReserved { .. } => p.reserved = true,
            Op::ClearReserved { .. } => p.reserved = false,
            _ => {}
        }
    }

    /// The ops a disciplined driver issues before `vfree(area)`.
    pub fn cleanup(&self, area: AreaId) -> Vec<Op> {
        let mut ops = Vec::new();
        for (_, p) in self.pages.range((area, 0)..=(area, u64::MAX)) {
            let page = p.handle;
            ops.extend((0..p.refs).map(|_| Op::PutPage { page }));
            if p.on_list {
                ops.push(Op::ListDel { page });
            }
            if p.mapping != 0 {
                ops.push(Op::SetMapping { page, value: 0 });
            }
            if p.reserved {
                ops.push(Op::ClearReserved { page });
            }
        }
        let changed: &[(bool, bool)] = self.prot.get(&area).map_or(&[], |v| v);
        let pages = self.sizes[&area].div_ceil(PAGE_SIZE) as u32;
        for (change, needed) in [
            (SetMemory::Nx, changed.iter().any(|p| p.1)),
            (SetMemory::Rw, changed.iter().any(|p| p.0)),
        ] {
            if needed {
                ops.push(Op::SetMemory {
                    area,
                    off: 0,
                    pages,
                    change,
                });
            }
        }
        ops
    }
}
