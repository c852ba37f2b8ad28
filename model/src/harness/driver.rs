//! What a well-behaved driver holds on the pages it got from `vmalloc_to_page()`,
//! and the cleanup it owes before `vfree()`: drop its references, take the page
//! off its list, clear `mapping`, `ClearPageReserved` (as `fb_deferred_io_cleanup`
//! and friends do).
//!
//! The decoder uses this to generate only disciplined drivers, so that a bad page
//! state can only be the kernel's fault; the end-of-run teardown uses it to free
//! everything cleanly.

use std::collections::BTreeMap;

use super::op::{AreaId, Op, PageId};

/// The driver's state on one page of one area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverPage {
    /// A page handle naming it (the first one obtained).
    pub handle: PageId,
    /// References taken with `get_page` and not yet dropped.
    pub refs: u32,
    pub on_list: bool,
    pub mapping_set: bool,
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

    /// Follows one op.
    pub fn observe(&mut self, op: &Op) {
        if let Op::VmallocToPage { area, off } = op {
            let key = (*area, off / crate::machine::consts::PAGE_SIZE);
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
            Op::SetMapping { value, .. } => p.mapping_set = *value != 0,
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
            if p.mapping_set {
                ops.push(Op::SetMapping { page, value: 0 });
            }
            if p.reserved {
                ops.push(Op::ClearReserved { page });
            }
        }
        ops
    }
}
