//! Kernel memory as 64-bit words at kernel virtual addresses, and the
//! `include/linux/list.h` operations a driver performs on `page->lru` through it
//! (`CONFIG_DEBUG_LIST=n`, as in most 5.18 configs).
//!
//! Only the memmap and the driver's static data are modelled as data; any other
//! address faults (`#GP` if it is not canonical, as `LIST_POISON1` is not).

use super::Machine;
use super::consts::{KDATA_START, is_canonical};
use super::oops::{Access, Fault, FaultCause, Oops};
use super::page::{LIST_POISON1, LIST_POISON2, page_ptr};

/// Words of static kernel data.
pub(crate) const KDATA_WORDS: usize = 16;

/// The driver's `static LIST_HEAD(driver_list)`.
pub const DRIVER_LIST: u64 = KDATA_START;

/// `&page->lru` of a pfn.
pub const fn page_lru(pfn: u64) -> u64 {
    page_ptr(pfn) + 8
}

impl Machine {
    /// Records the oops for a wild kernel pointer access.
    pub(crate) fn wild_access(&mut self, addr: u64, access: Access) {
        let cause = if is_canonical(addr) {
            FaultCause::NotPresent
        } else {
            FaultCause::NonCanonical
        };
        self.oops(Oops::Fault(Fault {
            addr,
            access,
            cause,
        }));
    }

    fn kdata_index(addr: u64) -> Option<usize> {
        let off = addr.checked_sub(KDATA_START)?;
        (off % 8 == 0 && off < 8 * KDATA_WORDS as u64).then_some((off / 8) as usize)
    }

    /// A kernel load of 8 bytes at `addr`; oopses and returns `None` if the
    /// address maps nothing the model holds.
    pub fn kmem_read(&mut self, addr: u64) -> Option<u64> {
        if self.mm.contains(addr, 8) {
            return Some(self.mm.read_u64(addr));
        }
        if let Some(i) = Self::kdata_index(addr) {
            return Some(self.kdata[i]);
        }
        self.wild_access(addr, Access::Read);
        None
    }

    /// A kernel store of 8 bytes at `addr`; oopses and returns `None` if the
    /// address maps nothing the model holds.
    pub fn kmem_write(&mut self, addr: u64, v: u64) -> Option<()> {
        if self.mm.contains(addr, 8) {
            self.mm.write_u64(addr, v);
            return Some(());
        }
        if let Some(i) = Self::kdata_index(addr) {
            self.kdata[i] = v;
            return Some(());
        }
        self.wild_access(addr, Access::Write);
        None
    }

    /// `INIT_LIST_HEAD(list)`.
    pub fn init_list_head(&mut self, list: u64) -> Option<()> {
        self.kmem_write(list, list)?;
        self.kmem_write(list + 8, list)
    }

    /// `list_add(new, head)` = `__list_add(new, head, head->next)`.
    pub fn list_add(&mut self, new: u64, head: u64) -> Option<()> {
        let next = self.kmem_read(head)?;
        let prev = head;
        self.kmem_write(next + 8, new)?; // next->prev = new
        self.kmem_write(new, next)?; // new->next = next
        self.kmem_write(new + 8, prev)?; // new->prev = prev
        self.kmem_write(prev, new) // WRITE_ONCE(prev->next, new)
    }

    /// `list_del(entry)`: unlink, then poison `next` and `prev`.
    pub fn list_del(&mut self, entry: u64) -> Option<()> {
        let next = self.kmem_read(entry)?;
        let prev = self.kmem_read(entry + 8)?;
        self.kmem_write(next + 8, prev)?; // next->prev = prev
        self.kmem_write(prev, next)?; // WRITE_ONCE(prev->next, next)
        self.kmem_write(entry, LIST_POISON1)?;
        self.kmem_write(entry + 8, LIST_POISON2)
    }
}
