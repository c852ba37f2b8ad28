//! Fuzz input → ops (DESIGN §7). The decoder never fails: every byte string is a
//! valid, disciplined op sequence.
//!
//! Layout: a format-version byte, a config byte, a 16-bit swarm mask if the
//! config byte asks for one, then ops. Each op is a `u8` tag (`tag % 32` picks a
//! slot in [`KINDS`]; the last slot, [`EXT_SLOT`], takes one more byte that picks
//! a slot in [`EXT_KINDS`] the same way; slots past either end are reserved for
//! ops appended later and decode to nothing) followed by its arguments as fixed-width little-endian
//! integers from `arbitrary::Unstructured` (zero when the input runs out),
//! bounded here by `%`. Handles are one byte, `raw % live.len()` (never more
//! than 256 objects live). At most [`MAX_OPS`] ops. The format is dense on
//! purpose: libFuzzer grows inputs slowly, so short inputs must already say
//! something (a missing size argument means `PMD_SIZE × nodes`, where huge
//! mappings begin).
//!
//! Every numeric argument has an "exact" encoding, so that `packmodel encode`
//! can turn any trace the parser accepts back into bytes.

use arbitrary::Unstructured;

use super::driver::Driver;
use super::op::{AreaId, DRIVER_MAPPING, Op, PageId, ProgId, limits};
use crate::kernel::{FailSite, HugeHint, SetMemory, VmallocFlags};
use crate::machine::consts::{PAGE_SIZE, PMD_SIZE};
use crate::machine::direct_map::DmapLeaf;
use crate::machine::{Design, MachineConfig};

/// The input format this decoder reads (the first byte of every input).
pub const FORMAT_VERSION: u8 = 1;
/// Most ops one input decodes to.
pub const MAX_OPS: usize = 256;

/// Op kinds by tag slot. Append only: a slot's meaning never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Vmalloc,
    Kvmalloc,
    Vfree,
    Vwrite,
    Vmemset,
    Vread,
    VmallocToPage,
    GetPage,
    PutPage,
    SetMapping,
    SetIndex,
    ListAdd,
    ListDel,
    InitListHead,
    SetReserved,
    ClearReserved,
    PageCount,
    PageMapping,
    PageIndex,
    PagePrivate,
    ProgLoad,
    ProgLoadFail,
    ProgFree,
    ProgRun,
    ProgProbe,
    StaleProbe,
    ProgLoadSubprogsFail,
    SetPagePrivate,
    SetMemory,
    VmallocNode,
    StaleVread,
    DirectMapStats,
    KcoreRead,
    FailNth,
    ProgCreate,
    ExecmemAlloc,
    ExecmemFree,
}

/// Tag slot → kind.
pub const KINDS: [Kind; 31] = [
    Kind::Vmalloc,
    Kind::Kvmalloc,
    Kind::Vfree,
    Kind::Vwrite,
    Kind::Vmemset,
    Kind::Vread,
    Kind::VmallocToPage,
    Kind::GetPage,
    Kind::PutPage,
    Kind::SetMapping,
    Kind::SetIndex,
    Kind::ListAdd,
    Kind::ListDel,
    Kind::InitListHead,
    Kind::SetReserved,
    Kind::ClearReserved,
    Kind::PageCount,
    Kind::PageMapping,
    Kind::PageIndex,
    Kind::PagePrivate,
    Kind::ProgLoad,
    Kind::ProgLoadFail,
    Kind::ProgFree,
    Kind::ProgRun,
    Kind::ProgProbe,
    Kind::StaleProbe,
    Kind::ProgLoadSubprogsFail,
    Kind::SetPagePrivate,
    Kind::SetMemory,
    Kind::VmallocNode,
    Kind::StaleVread,
];

/// The tag slot whose next byte picks an op of [`EXT_KINDS`].
pub const EXT_SLOT: u8 = 31;

/// Extended slot → kind (append only), for ops past the 31 primary slots.
/// A kind may appear again after its first slot, to be drawn more often
/// (its encoding is its first slot): the execmem user's ops are rare
/// enough behind the extended slot (1 op in 1,024 each) that a cache block
/// shared by a large program, a trampoline and a pack — what
/// `execmem-partial-clean` needs — was seldom reached.
pub const EXT_KINDS: [Kind; 12] = [
    Kind::DirectMapStats,
    Kind::KcoreRead,
    Kind::FailNth,
    Kind::ProgCreate,
    Kind::ExecmemAlloc,
    Kind::ExecmemFree,
    Kind::ExecmemAlloc,
    Kind::ExecmemFree,
    Kind::ExecmemAlloc,
    Kind::ExecmemFree,
    Kind::ExecmemAlloc,
    Kind::ExecmemFree,
];

/// Slots a tag (or an extended tag) selects from.
pub const TAG_SLOTS: u8 = 32;

/// `set_page_private`'s value is its byte XOR this (a missing byte: 0x2a).
pub const PRIVATE_XOR: u8 = 0x2a;

/// The config-byte bit that says a 16-bit swarm mask follows.
pub const SWARM_BIT: u8 = 1 << 4;

impl Kind {
    /// Every kind, primary then extended.
    pub fn all() -> impl Iterator<Item = Kind> {
        let first = |(i, k): (usize, &Kind)| EXT_KINDS.iter().position(|x| x == k) == Some(i);
        let ext = EXT_KINDS.iter().enumerate().filter(move |&e| first(e));
        KINDS.into_iter().chain(ext.map(|(_, &k)| k))
    }

    /// The tag bytes that select this kind: its slot, or [`EXT_SLOT`] and its
    /// extended slot.
    pub fn tag(self) -> Vec<u8> {
        match KINDS.iter().position(|&k| k == self) {
            Some(slot) => vec![slot as u8],
            None => {
                let ext = EXT_KINDS.iter().position(|&k| k == self);
                vec![EXT_SLOT, ext.expect("every kind has a slot") as u8]
            }
        }
    }

    /// The swarm-mask bit that switches this kind off.
    pub fn swarm_bit(self) -> u16 {
        1 << match self {
            Kind::Vmalloc | Kind::VmallocNode => 0,
            Kind::Kvmalloc => 1,
            Kind::Vfree => 2,
            Kind::Vwrite | Kind::Vmemset | Kind::SetMemory => 3,
            Kind::Vread | Kind::DirectMapStats => 4,
            Kind::VmallocToPage => 5,
            Kind::GetPage | Kind::PutPage => 6,
            Kind::SetMapping | Kind::SetIndex | Kind::SetPagePrivate => 7,
            Kind::ListAdd | Kind::ListDel | Kind::InitListHead => 8,
            Kind::SetReserved | Kind::ClearReserved => 9,
            Kind::PageCount | Kind::PageMapping | Kind::PageIndex | Kind::PagePrivate => 10,
            Kind::ProgLoad | Kind::ProgCreate | Kind::ExecmemAlloc => 11,
            Kind::ProgLoadFail | Kind::ProgLoadSubprogsFail | Kind::FailNth => 12,
            Kind::ProgFree | Kind::ExecmemFree => 13,
            Kind::ProgRun | Kind::ProgProbe | Kind::KcoreRead => 14,
            Kind::StaleProbe | Kind::StaleVread => 15,
        }
    }

    /// The kind of an op.
    pub fn of(op: &Op) -> Kind {
        match op {
            Op::Vmalloc { .. } => Kind::Vmalloc,
            Op::Kvmalloc { .. } => Kind::Kvmalloc,
            Op::Vfree { .. } => Kind::Vfree,
            Op::Vwrite { .. } => Kind::Vwrite,
            Op::Vmemset { .. } => Kind::Vmemset,
            Op::Vread { .. } => Kind::Vread,
            Op::VmallocToPage { .. } => Kind::VmallocToPage,
            Op::GetPage { .. } => Kind::GetPage,
            Op::PutPage { .. } => Kind::PutPage,
            Op::SetMapping { .. } => Kind::SetMapping,
            Op::SetIndex { .. } => Kind::SetIndex,
            Op::ListAdd { .. } => Kind::ListAdd,
            Op::ListDel { .. } => Kind::ListDel,
            Op::InitListHead { .. } => Kind::InitListHead,
            Op::SetReserved { .. } => Kind::SetReserved,
            Op::ClearReserved { .. } => Kind::ClearReserved,
            Op::PageCount { .. } => Kind::PageCount,
            Op::PageMapping { .. } => Kind::PageMapping,
            Op::PageIndex { .. } => Kind::PageIndex,
            Op::PagePrivate { .. } => Kind::PagePrivate,
            Op::ProgLoad { classic: true, .. } => Kind::ProgCreate,
            Op::ProgLoad { .. } => Kind::ProgLoad,
            Op::ProgLoadFail { .. } => Kind::ProgLoadFail,
            Op::ProgFree { .. } => Kind::ProgFree,
            Op::ProgRun { .. } => Kind::ProgRun,
            Op::ProgProbe { .. } => Kind::ProgProbe,
            Op::StaleProbe { .. } => Kind::StaleProbe,
            Op::ProgLoadSubprogsFail { .. } => Kind::ProgLoadSubprogsFail,
            Op::SetPagePrivate { .. } => Kind::SetPagePrivate,
            Op::SetMemory { .. } => Kind::SetMemory,
            Op::VmallocNode { .. } => Kind::VmallocNode,
            Op::StaleVread { .. } => Kind::StaleVread,
            Op::DirectMapStats => Kind::DirectMapStats,
            Op::KcoreRead { .. } => Kind::KcoreRead,
            Op::FailNth { .. } => Kind::FailNth,
            Op::ExecmemAlloc { .. } => Kind::ExecmemAlloc,
            Op::ExecmemFree { .. } => Kind::ExecmemFree,
        }
    }
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub config: MachineConfig,
    /// Swarm mask: a set bit switches a group of op kinds off.
    pub swarm: u16,
    pub ops: Vec<Op>,
}

/// The config byte: bit 0 nodes − 1, bits 1–2 memory (64, 16, 32, 128 MiB),
/// bit 3 direct-map leaf (2M, 1G), bit 4 a swarm mask follows, bits 5–6 the
/// optimised kernel's design (`pack-2m`, `linux-6.1`, `execmem`, `pack-2m`);
/// bit 7 reserved.
pub fn config_from_byte(b: u8) -> MachineConfig {
    MachineConfig {
        nodes: 1 + (b & 1),
        mem_mib: [64, 16, 32, 128][((b >> 1) & 3) as usize],
        dmap_leaf: if b & 8 != 0 {
            DmapLeaf::G1
        } else {
            DmapLeaf::M2
        },
        design: match (b >> 5) & 3 {
            1 => Design::Linux61,
            2 => Design::Execmem,
            _ => Design::Pack2m,
        },
    }
}

/// The config byte of `cfg` (inverse of [`config_from_byte`]).
pub fn config_to_byte(cfg: &MachineConfig) -> u8 {
    let mem = match cfg.mem_mib {
        16 => 1,
        32 => 2,
        128 => 3,
        _ => 0,
    };
    (cfg.nodes - 1)
        | mem << 1
        | u8::from(cfg.dmap_leaf == DmapLeaf::G1) << 3
        | match cfg.design {
            Design::Pack2m => 0,
            Design::Linux61 => 1,
            Design::Execmem => 2,
        } << 5
}

/// Decodes any byte string.
pub fn decode(data: &[u8]) -> Input {
    let mut u = Unstructured::new(data);
    let _version = r8(&mut u);
    let cfg = r8(&mut u);
    let config = config_from_byte(cfg);
    let swarm = if cfg & SWARM_BIT != 0 { r16(&mut u) } else { 0 };
    let mut g = Gen::new(config);
    while g.ops.len() < MAX_OPS && !u.is_empty() {
        let tag = r8(&mut u) % TAG_SLOTS;
        let kind = if tag == EXT_SLOT {
            EXT_KINDS.get((r8(&mut u) % TAG_SLOTS) as usize)
        } else {
            KINDS.get(tag as usize)
        };
        let Some(&kind) = kind else {
            continue;
        };
        if swarm & kind.swarm_bit() != 0 {
            continue;
        }
        g.generate(kind, &mut u);
    }
    Input {
        config,
        swarm,
        ops: g.ops,
    }
}

fn r8(u: &mut Unstructured) -> u8 {
    u.arbitrary().unwrap_or(0)
}
fn r16(u: &mut Unstructured) -> u16 {
    u.arbitrary().unwrap_or(0)
}
fn r32(u: &mut Unstructured) -> u32 {
    u.arbitrary().unwrap_or(0)
}

/// What the generator knows of the objects it created: what is live, and what
/// the driver holds.
#[derive(Clone, Debug, Default)]
pub struct Gen {
    pub nodes: u8,
    /// The optimised kernel's design (steers program sizes, see
    /// [`Gen::prog_len`]).
    pub design: Design,
    /// Live areas and their sizes.
    pub areas: Vec<(AreaId, u64)>,
    /// Page handles whose area is live.
    pub pages: Vec<PageId>,
    /// Loaded programs and their lengths.
    pub progs: Vec<(ProgId, u32)>,
    /// Freed programs and their lengths.
    pub freed: Vec<(ProgId, u32)>,
    /// Freed areas and their sizes.
    pub freed_areas: Vec<(AreaId, u64)>,
    /// Live `execmem_alloc` allocations and their sizes.
    pub execmem: Vec<(AreaId, u64)>,
    pub driver: Driver,
    next: [u32; 3],
    pub ops: Vec<Op>,
}

impl Gen {
    pub fn new(cfg: MachineConfig) -> Self {
        Self {
            nodes: cfg.nodes,
            design: cfg.design,
            ..Default::default()
        }
    }

    /// The id the next program load will get.
    pub fn next_prog_id(&self) -> u32 {
        self.next[2]
    }

    /// Records `op` and updates the scope.
    pub fn push(&mut self, op: Op) {
        match &op {
            Op::Vmalloc { size, .. } | Op::Kvmalloc { size, .. } | Op::VmallocNode { size, .. } => {
                self.areas.push((AreaId(self.next[0]), *size));
                self.next[0] += 1;
            }
            Op::Vfree { area } => {
                let i = (self.areas.iter().position(|a| a.0 == *area)).expect("live area");
                self.freed_areas.push(self.areas.remove(i));
                let driver = &self.driver;
                self.pages.retain(|p| driver.area_of(*p) != *area);
            }
            Op::VmallocToPage { .. } => {
                self.pages.push(PageId(self.next[1]));
                self.next[1] += 1;
            }
            Op::ExecmemAlloc { size } => {
                self.execmem.push((AreaId(self.next[0]), *size));
                self.next[0] += 1;
            }
            Op::ExecmemFree { area } => {
                self.execmem.retain(|a| a.0 != *area);
            }
            Op::ProgLoad { len, .. } => {
                self.progs.push((ProgId(self.next[2]), *len));
                self.next[2] += 1;
            }
            Op::ProgFree { prog } => {
                let i = self
                    .progs
                    .iter()
                    .position(|p| p.0 == *prog)
                    .expect("live program");
                self.freed.push(self.progs.remove(i));
            }
            _ => {}
        }
        self.driver.observe(&op);
        self.ops.push(op);
    }

    fn pick<T: Copy>(list: &[T], u: &mut Unstructured) -> Option<T> {
        (!list.is_empty()).then(|| list[r8(u) as usize % list.len()])
    }

    /// A read of one of `areas`: the area, an offset inside it and a length
    /// up to `MAX_RW` that stays inside it.
    fn read_at(areas: &[(AreaId, u64)], u: &mut Unstructured) -> Option<(AreaId, u64, u32)> {
        let (area, size) = Self::pick(areas, u)?;
        let off = r32(u) as u64 % size;
        let len = 1 + r16(u) as u64 % limits::MAX_RW.min(size - off);
        Some((area, off, len as u32))
    }

    /// Generates one op of `kind` (or nothing, when the kind has no valid
    /// target right now).
    fn generate(&mut self, kind: Kind, u: &mut Unstructured) {
        let op = match kind {
            Kind::Vmalloc => {
                let size = self.size(u);
                let b = r8(u);
                let huge = [
                    HugeHint::Default,
                    HugeHint::Allow,
                    HugeHint::Forbid,
                    HugeHint::Default,
                ][(b & 3) as usize];
                Op::Vmalloc {
                    size,
                    flags: VmallocFlags {
                        huge,
                        zero: b & 4 != 0,
                        nofail: b & 8 != 0,
                    },
                }
            }
            Kind::Kvmalloc => Op::Kvmalloc {
                size: self.size(u),
                nofail: r8(u) & 1 != 0,
            },
            Kind::Vfree => {
                let Some((area, _)) = Self::pick(&self.areas, u) else {
                    return;
                };
                let cleanup = self.driver.cleanup(area);
                if self.ops.len() + cleanup.len() >= MAX_OPS {
                    return;
                }
                for op in cleanup {
                    self.push(op);
                }
                Op::Vfree { area }
            }
            Kind::Vwrite => {
                let Some((area, size)) = Self::pick(&self.areas, u) else {
                    return;
                };
                let off = r32(u) as u64 % size;
                let len = 1 + r16(u) as u64 % limits::MAX_RW.min(size - off);
                let data = (0..len).map(|_| r8(u)).collect();
                if !self.driver.writable(area, off, len) {
                    return;
                }
                Op::Vwrite { area, off, data }
            }
            Kind::Vmemset => {
                let Some((area, size)) = Self::pick(&self.areas, u) else {
                    return;
                };
                let off = r32(u) as u64 % size;
                let value = r8(u);
                let len = 1 + r32(u) as u64 % (size - off);
                if !self.driver.writable(area, off, len) {
                    return;
                }
                Op::Vmemset {
                    area,
                    off,
                    value,
                    len: len as u32,
                }
            }
            Kind::Vread => {
                let Some((area, off, len)) = Self::read_at(&self.areas, u) else {
                    return;
                };
                Op::Vread { area, off, len }
            }
            Kind::VmallocToPage => {
                let Some((area, size)) = Self::pick(&self.areas, u) else {
                    return;
                };
                // A page index, 3 when the input has run out (the page of
                // Nick Piggin's reproducer); 0xffff then any offset (exact).
                let off = match r16(u) {
                    0xffff => r32(u) as u64 % size,
                    idx => (idx as u64 + 3) % size.div_ceil(PAGE_SIZE) * PAGE_SIZE,
                };
                Op::VmallocToPage { area, off }
            }
            Kind::GetPage
            | Kind::PutPage
            | Kind::SetMapping
            | Kind::SetIndex
            | Kind::ListAdd
            | Kind::ListDel
            | Kind::InitListHead
            | Kind::SetReserved
            | Kind::ClearReserved
            | Kind::PageCount
            | Kind::PageMapping
            | Kind::PageIndex
            | Kind::PagePrivate
            | Kind::SetPagePrivate => {
                let Some(page) = Self::pick(&self.pages, u) else {
                    return;
                };
                let state = self.driver.page(page);
                match kind {
                    Kind::GetPage if state.refs < 16 => Op::GetPage { page },
                    Kind::PutPage if state.refs > 0 => Op::PutPage { page },
                    Kind::SetMapping => Op::SetMapping {
                        page,
                        value: if r8(u) & 1 != 0 { DRIVER_MAPPING } else { 0 },
                    },
                    Kind::SetIndex => Op::SetIndex {
                        page,
                        value: r8(u) as u64,
                    },
                    Kind::ListAdd if !state.on_list => Op::ListAdd { page },
                    Kind::ListDel if state.on_list => Op::ListDel { page },
                    Kind::InitListHead if !state.on_list => Op::InitListHead { page },
                    Kind::SetReserved => Op::SetReserved { page },
                    Kind::ClearReserved => Op::ClearReserved { page },
                    Kind::PageCount => Op::PageCount { page },
                    Kind::PageMapping => Op::PageMapping { page },
                    Kind::PageIndex => Op::PageIndex { page },
                    Kind::PagePrivate => Op::PagePrivate { page },
                    // A missing value means 0x2a, so that short inputs store
                    // something a later reader can tell from 0.
                    Kind::SetPagePrivate => Op::SetPagePrivate {
                        page,
                        value: (r8(u) ^ PRIVATE_XOR) as u64,
                    },
                    _ => return,
                }
            }
            Kind::ProgLoad => {
                let len = self.prog_len(u);
                Op::ProgLoad {
                    len,
                    align: 1 << (r8(u) % 4),
                    rand: r32(u),
                    classic: false,
                }
            }
            Kind::ProgLoadFail => Op::ProgLoadFail {
                len: self.prog_len(u),
                rand: r32(u),
            },
            Kind::ProgLoadSubprogsFail => {
                let n = 2 + r8(u) as usize % (limits::MAX_SUBPROGS - 1);
                let lens = (0..n).map(|_| self.prog_len(u)).collect();
                let fail = (r8(u) as usize % n) as u8;
                Op::ProgLoadSubprogsFail {
                    lens,
                    fail,
                    rand: r32(u),
                }
            }
            Kind::ProgFree => {
                let Some((prog, _)) = Self::pick(&self.progs, u) else {
                    return;
                };
                Op::ProgFree { prog }
            }
            Kind::ProgRun => {
                let Some((prog, _)) = Self::pick(&self.progs, u) else {
                    return;
                };
                Op::ProgRun { prog }
            }
            Kind::ProgProbe => {
                let Some((prog, len)) = Self::pick(&self.progs, u) else {
                    return;
                };
                Op::ProgProbe {
                    prog,
                    off: probe_off(u, len),
                }
            }
            Kind::StaleProbe => {
                let Some((prog, len)) = Self::pick(&self.freed, u) else {
                    return;
                };
                Op::StaleProbe {
                    prog,
                    off: probe_off(u, len),
                }
            }
            Kind::SetMemory => {
                let Some((area, size)) = Self::pick(&self.areas, u) else {
                    return;
                };
                let change = SetMemory::ALL[r8(u) as usize % SetMemory::ALL.len()];
                let npages = size.div_ceil(PAGE_SIZE);
                let first = r16(u) as u64 % npages;
                let pages = (1 + r16(u) as u64 % (npages - first)) as u32;
                let off = first * PAGE_SIZE;
                if !self.driver.keeps_wx(area, off, pages, change) {
                    return;
                }
                Op::SetMemory {
                    area,
                    off,
                    pages,
                    change,
                }
            }
            Kind::VmallocNode => {
                let size = self.size(u);
                let align = 1u64 << (r8(u) % 64);
                let b = r8(u);
                Op::VmallocNode {
                    size,
                    align,
                    flags: VmallocFlags {
                        huge: HugeHint::Default,
                        zero: b & 1 != 0,
                        nofail: b & 2 != 0,
                    },
                }
            }
            Kind::StaleVread => {
                let Some((area, off, len)) = Self::read_at(&self.freed_areas, u) else {
                    return;
                };
                Op::StaleVread { area, off, len }
            }
            Kind::DirectMapStats => Op::DirectMapStats,
            Kind::KcoreRead => {
                let Some((prog, len)) = Self::pick(&self.progs, u) else {
                    return;
                };
                let off = r32(u) % len;
                let n = 1 + r16(u) as u32 % (limits::MAX_RW as u32).min(len - off);
                Op::KcoreRead { prog, off, len: n }
            }
            Kind::ExecmemAlloc => Op::ExecmemAlloc {
                size: match r8(u) {
                    0..=191 => 1 + r16(u) as u64 % 4096,
                    192..=254 => 1 + r32(u) as u64 % (64 << 10),
                    255 => 1 + r32(u) as u64 % limits::MAX_VMALLOC,
                },
            },
            Kind::ExecmemFree => {
                let Some((area, _)) = Self::pick(&self.execmem, u) else {
                    return;
                };
                Op::ExecmemFree { area }
            }
            Kind::ProgCreate => Op::ProgLoad {
                len: self.prog_len(u).min(limits::MAX_CLASSIC_LEN),
                align: 1,
                rand: r32(u),
                classic: true,
            },
            Kind::FailNth => {
                let b = r8(u);
                Op::FailNth {
                    site: FailSite::ALL[(b & 15) as usize % FailSite::ALL.len()],
                    nth: 1 + (b >> 4) % 4,
                }
            }
        };
        self.push(op);
    }

    /// A vmalloc size: often around `PMD_SIZE × nodes` where huge mappings
    /// begin (also when the input has run out), often small; 255 255 is any
    /// size (the exact encoding).
    fn size(&self, u: &mut Unstructured) -> u64 {
        let huge = PMD_SIZE * self.nodes as u64;
        match r8(u) {
            0..=47 => huge * (1 + r8(u) as u64 % 2),
            48..=95 => huge - PAGE_SIZE + (r8(u) as u64 % 3) * PAGE_SIZE,
            96..=191 => (1 + r8(u) as u64 % 32) * PAGE_SIZE,
            192..=223 => PMD_SIZE * (1 + r8(u) as u64 % 4),
            224..=254 => 1 + r32(u) as u64 % (4 << 20),
            255 => match r8(u) {
                255 => 1 + r32(u) as u64 % limits::MAX_VMALLOC,
                b => (1 + b as u64 % 32) * PAGE_SIZE,
            },
        }
    }

    /// A program length, after the JIT's: mostly under 512 bytes, a tail to
    /// 16 KiB, rarely larger than a pack; 255 255 is any length.
    fn prog_len(&self, u: &mut Unstructured) -> u32 {
        let b = r8(u);
        let pack = (PMD_SIZE * self.nodes as u64) as u32;
        // In the `execmem` design a program larger than a pack gets a block
        // of the ROX cache that other users then share (and its free leaves
        // whole PMDs behind): one load in 32 there, not one in 256.
        if self.design == Design::Execmem && (224..=231).contains(&b) {
            return pack + 1 + r16(u) as u32 % 8192;
        }
        match b {
            0..=159 => 1 + r16(u) as u32 % 512,
            160..=223 => 1 + r16(u) as u32 % 4096,
            224..=251 => 4097 + r16(u) as u32 % 12288,
            252..=253 => 1 + r16(u) as u32 % 512,
            254 => pack + 1 + r16(u) as u32 % 8192,
            255 => match r8(u) {
                255 => 1 + r32(u) % limits::MAX_PROG_LEN,
                b => 1 + b as u32,
            },
        }
    }
}

/// A probe offset from the program's start: the lead-in hole and header, the
/// text, the tail padding, past the end into whatever lies beyond; 255 255 is
/// any offset (the exact encoding).
fn probe_off(u: &mut Unstructured, len: u32) -> i32 {
    let len = len as i32;
    let off = match r8(u) {
        0..=63 => -(1 + (r8(u) % 64) as i32),
        64..=127 => (r16(u) as i32) % len,
        128..=159 => len + (r8(u) % 64) as i32,
        160..=254 => len + 64 + r16(u) as i32,
        255 => match r8(u) {
            255 => {
                let span = 2 * limits::MAX_PROBE_OFF as i64 + 1;
                (r32(u) as i64 % span - limits::MAX_PROBE_OFF as i64) as i32
            }
            b => len + b as i32,
        },
    };
    off.min(limits::MAX_PROBE_OFF)
}
