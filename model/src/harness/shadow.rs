//! What every vmalloc area must read back, kept independently of both kernels (a
//! regalloc2-style checker): bytes the driver wrote, zeroes of `vzalloc`, and
//! "unknown" for bytes never initialised (stale data, which legitimately differs
//! between kernels because their frames differ).

use std::collections::BTreeMap;

use super::op::{AreaId, Op};
use crate::machine::consts::PAGE_SIZE;

const PS: usize = PAGE_SIZE as usize;

#[derive(Clone)]
enum ShadowPage {
    /// Every byte known and equal.
    Fill(u8),
    /// Some bytes known: the data and a bit per byte.
    Partial(Box<[u8; PS]>, Box<[u64; PS / 64]>),
}

/// One area's expected contents.
#[derive(Clone, Default)]
struct ShadowArea {
    /// Bytes never written read as zero (`__GFP_ZERO`).
    zeroed: bool,
    pages: BTreeMap<u64, ShadowPage>,
}

impl ShadowArea {
    fn write(&mut self, off: u64, data: impl Fn(usize) -> u8, len: u64, fill: Option<u8>) {
        let mut done = 0u64;
        while done < len {
            let a = off + done;
            let (page, o) = (a / PAGE_SIZE, (a % PAGE_SIZE) as usize);
            let n = (PS - o).min((len - done) as usize);
            if let (Some(v), true) = (fill, n == PS) {
                self.pages.insert(page, ShadowPage::Fill(v));
            } else {
                let zeroed = self.zeroed;
                let entry = self.pages.entry(page).or_insert_with(|| {
                    if zeroed {
                        ShadowPage::Fill(0)
                    } else {
                        ShadowPage::Partial(Box::new([0; PS]), Box::new([0; PS / 64]))
                    }
                });
                if let ShadowPage::Fill(v) = *entry {
                    *entry = ShadowPage::Partial(Box::new([v; PS]), Box::new([!0; PS / 64]));
                }
                let ShadowPage::Partial(bytes, known) = entry else {
                    unreachable!()
                };
                for i in 0..n {
                    bytes[o + i] = data(done as usize + i);
                    known[(o + i) / 64] |= 1 << ((o + i) % 64);
                }
            }
            done += n as u64;
        }
    }

    /// The expected byte at `off`, if known.
    fn byte(&self, off: u64) -> Option<u8> {
        match self.pages.get(&(off / PAGE_SIZE)) {
            Some(ShadowPage::Fill(v)) => Some(*v),
            Some(ShadowPage::Partial(bytes, known)) => {
                let o = (off % PAGE_SIZE) as usize;
                (known[o / 64] & (1 << (o % 64)) != 0).then_some(bytes[o])
            }
            None => self.zeroed.then_some(0),
        }
    }
}

/// The expected contents of every live area.
#[derive(Clone, Default)]
pub struct Shadow {
    areas: Vec<Option<ShadowArea>>,
}

/// A byte a kernel read back that is not what was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub off: u64,
    pub expected: u8,
    pub got: u8,
}

impl Shadow {
    /// Follows one op.
    pub fn observe(&mut self, op: &Op) {
        match op {
            Op::Vmalloc { flags, .. } | Op::VmallocNode { flags, .. } => {
                self.areas.push(Some(ShadowArea {
                    zeroed: flags.zero,
                    ..Default::default()
                }))
            }
            Op::Kvmalloc { .. } => self.areas.push(Some(ShadowArea::default())),
            // No driver reads or writes an execmem allocation: nothing to
            // shadow, but it takes an area id.
            Op::ExecmemAlloc { .. } => self.areas.push(None),
            Op::Vfree { area } => self.areas[area.0 as usize] = None,
            Op::Vwrite { area, off, data } => {
                if let Some(a) = self.area(*area) {
                    a.write(*off, |i| data[i], data.len() as u64, None);
                }
            }
            Op::Vmemset {
                area,
                off,
                value,
                len,
            } => {
                if let Some(a) = self.area(*area) {
                    a.write(*off, |_| *value, *len as u64, Some(*value));
                }
            }
            _ => {}
        }
    }

    fn area(&mut self, id: AreaId) -> Option<&mut ShadowArea> {
        self.areas.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    /// The first byte of `got` (read at `off` of `area`) that contradicts what
    /// is known.
    pub fn check(&self, area: AreaId, off: u64, got: &[u8]) -> Option<Mismatch> {
        let a = self.areas.get(area.0 as usize)?.as_ref()?;
        got.iter().enumerate().find_map(|(i, &g)| {
            let o = off + i as u64;
            a.byte(o).filter(|&e| e != g).map(|expected| Mismatch {
                off: o,
                expected,
                got: g,
            })
        })
    }

    /// `got` with every unknown byte masked (`None`), for comparing two reads.
    pub fn known(&self, area: AreaId, off: u64, got: &[u8]) -> Vec<Option<u8>> {
        let a = self.areas.get(area.0 as usize).and_then(Option::as_ref);
        got.iter()
            .enumerate()
            .map(|(i, &g)| a.and_then(|a| a.byte(off + i as u64)).map(|_| g))
            .collect()
    }
}
