//! The generator's declared memory budget: whether an input asks for so much
//! memory that running out is a legitimate outcome.
//!
//! Live objects are charged at the larger of their two kernels' footprints: a
//! vmalloc area at `round_up(size, PMD_SIZE)` when it may get huge pages, its
//! page-aligned size otherwise; a program at the reference's whole pages plus,
//! for the optimised kernel, twice its chunks, with one pack always charged.
//! While the charge stays within half of memory, both kernels must succeed, so an
//! `ENOMEM` there is a divergence; beyond it, an `ENOMEM` on one side only makes
//! the run incomparable from that op on (invariants are still checked).
//!
//! In the `execmem` design the ROX cache keeps memory it was given: a block
//! goes back only when a whole area of whole PMDs is free, and a block from
//! the exact-size fallback (3bd4e0ac61b2) or from small pages at an address
//! that is not PMD-aligned never does. So there nothing that the cache backs
//! — programs, transient loads, `execmem_alloc` — is refunded when freed.

use super::op::{AreaId, Op, ProgId};
use crate::kernel::HugeHint;
use crate::machine::MachineConfig;
use crate::machine::consts::{PAGE_SIZE, PMD_SIZE, page_align, round_up};

/// Running charge of the live objects of one input.
#[derive(Clone, Debug)]
pub struct Budget {
    limit: u64,
    pack: u64,
    areas: Vec<u64>,
    progs: Vec<u64>,
    charged: u64,
    /// The `execmem` design: the cache may keep what it backed.
    cache_keeps: bool,
}

impl Budget {
    pub fn new(cfg: &MachineConfig) -> Self {
        let pack = PMD_SIZE * cfg.nodes as u64;
        Self {
            limit: cfg.nr_pages() * PAGE_SIZE / 2,
            pack,
            areas: Vec::new(),
            progs: Vec::new(),
            charged: pack,
            cache_keeps: cfg.design == crate::machine::Design::Execmem,
        }
    }

    /// Charges or refunds `op`, then tells whether the op ran within budget:
    /// everything live fits, and for a load that fails on purpose, the
    /// programs it allocates for a while fit too.
    pub fn observe(&mut self, op: &Op) -> bool {
        self.charge(op);
        let lens = match op {
            Op::ProgLoadFail { len, .. } => std::slice::from_ref(len),
            Op::ProgLoadSubprogsFail { lens, .. } => lens.as_slice(),
            _ => return self.within(),
        };
        let fits = self.fits_transient(lens);
        if self.cache_keeps {
            self.charged += lens.iter().map(|&l| self.prog_charge(l)).sum::<u64>();
        }
        fits
    }

    fn charge(&mut self, op: &Op) {
        match op {
            Op::Vmalloc { size, flags } => {
                let huge = flags.huge == HugeHint::Allow;
                self.charge_area(*size, huge)
            }
            Op::Kvmalloc { size, .. } => self.charge_area(*size, true),
            Op::VmallocNode { size, .. } => self.charge_area(*size, false),
            // Its pages, or on the ROX cache a block of its own at worst.
            Op::ExecmemAlloc { size } => self.charge_area(*size, true),
            Op::ExecmemFree { area: AreaId(i) } => {
                let c = std::mem::take(&mut self.areas[*i as usize]);
                if !self.cache_keeps {
                    self.charged -= c;
                }
            }
            Op::Vfree { area: AreaId(i) } => {
                self.charged -= std::mem::take(&mut self.areas[*i as usize])
            }
            Op::ProgLoad { len, .. } => {
                let c = self.prog_charge(*len);
                self.progs.push(c);
                self.charged += c;
            }
            Op::ProgFree { prog: ProgId(i) } => {
                let c = std::mem::take(&mut self.progs[*i as usize]);
                if !self.cache_keeps {
                    self.charged -= c;
                }
            }
            _ => {}
        }
    }

    fn charge_area(&mut self, size: u64, huge: bool) {
        let c = if huge {
            round_up(size, PMD_SIZE)
        } else {
            page_align(size)
        };
        self.areas.push(c);
        self.charged += c;
    }

    /// What a transient or lasting program of `len` bytes may need.
    fn prog_charge(&self, len: u32) -> u64 {
        let len = len as u64;
        let chunks = round_up(len + 24, 64);
        if chunks > self.pack {
            round_up(len, PMD_SIZE) + PMD_SIZE
        } else {
            page_align(len + 136) + 2 * chunks
        }
    }

    /// Would programs of `lens` (a load that fails on purpose) fit?
    fn fits_transient(&self, lens: &[u32]) -> bool {
        self.charged + lens.iter().map(|&l| self.prog_charge(l)).sum::<u64>() <= self.limit
    }

    /// Is everything live within budget?
    fn within(&self) -> bool {
        self.charged <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::VmallocFlags;

    fn vmalloc(size: u64, huge: HugeHint) -> Op {
        Op::Vmalloc {
            size,
            flags: VmallocFlags {
                huge,
                ..Default::default()
            },
        }
    }

    /// A 16 MiB machine: 8 MiB of budget, one 2 MiB pack always charged.
    #[test]
    fn live_objects_and_transient_loads_are_charged_at_the_larger_footprint() {
        let cfg = MachineConfig {
            mem_mib: 16,
            ..Default::default()
        };
        let mut b = Budget::new(&cfg);
        assert!(b.observe(&vmalloc(4 << 20, HugeHint::Default)), "2 + 4 MiB");
        assert!(b.observe(&vmalloc(1 << 20, HugeHint::Default)), "7 MiB");
        assert!(
            !b.observe(&vmalloc(1 << 20, HugeHint::Allow)),
            "a huge 1 MiB is 2 MiB: 9 MiB"
        );
        assert!(b.observe(&Op::Vfree { area: AreaId(2) }), "back to 7 MiB");
        let fail = |len| Op::ProgLoadFail { len, rand: 0 };
        assert!(b.observe(&fail(100)), "a page and two chunks for a moment");
        assert!(
            !b.observe(&fail(1 << 20)),
            "1 MiB of pages for a moment: over"
        );
        let subs = Op::ProgLoadSubprogsFail {
            lens: vec![300 << 10, 300 << 10, 300 << 10, 300 << 10],
            fail: 0,
            rand: 0,
        };
        assert!(!b.observe(&subs), "four 300 KiB subprograms at once: over");
        assert!(b.observe(&Op::Vfree { area: AreaId(0) }), "3 MiB live");
        assert!(b.observe(&subs));
        assert!(b.observe(&Op::ProgLoad {
            len: 100,
            align: 1,
            rand: 0,
            classic: false,
        }));
        assert!(b.observe(&Op::ProgFree { prog: ProgId(0) }));
        assert!(
            !b.observe(&Op::Kvmalloc {
                size: 5 << 20,
                nofail: false
            }),
            "kvmalloc is huge: 6 MiB"
        );
    }

    /// In the `execmem` design what the ROX cache backed stays charged: the
    /// fuzz input that found it (clean-clone CI, 2026-12-05) freed a 63 MiB
    /// exact-size fallback block — which the cache never releases — and
    /// then saw `vmalloc(2M)` fail on the optimised kernel only.
    #[test]
    fn the_rox_cache_keeps_its_charges() {
        for (design, after_free) in [
            (crate::machine::Design::Execmem, false),
            (crate::machine::Design::Pack2m, true),
        ] {
            let cfg = MachineConfig {
                mem_mib: 64,
                design,
                ..MachineConfig::default()
            };
            let mut b = Budget::new(&cfg);
            assert!(!b.observe(&Op::ExecmemAlloc { size: 66_319_348 }));
            assert!(!b.observe(&vmalloc(2 << 20, HugeHint::Default)));
            assert_eq!(b.observe(&Op::ExecmemFree { area: AreaId(0) }), after_free);
        }
    }
}
