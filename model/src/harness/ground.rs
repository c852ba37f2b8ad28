//! Ground truth (DESIGN §11): what a real Linux kernel showed for each op of
//! a trace, in the form the model's observations take, and its comparison
//! with the model's fixed kernel (the optimised one with no quirks).
//!
//! The guest agent (`linux/agent`) performs each op through the
//! `packmodel_guest` module and prints one [`GuestStep`] per op as a JSON
//! line; besides the op's value it reports the state the op touched, as the
//! model can show it too ([`View`]): an area's `vm_struct` (`page_order`,
//! `nr_pages`), a page's `struct page` words, the mapping level and
//! protection of an address and of its direct-map alias
//! (`lookup_address()`), and the kernel log lines the op printed.
//!
//! Every comparison is equal, incomparable with a named reason, or
//! divergent, as between the two model kernels ([`compare_named`]).

use serde::{Deserialize, Serialize};

use super::compare::{Comparison, Expect, compare_named};
use super::obs::Obs;
use super::op::{Op, ProgId};
use super::session::Session;
use super::text::prog_text;
use crate::kernel::{Errno, Landing};
use crate::machine::consts::PAGE_SIZE;
use crate::machine::direct_map::{DirectMapStats, DmapLevel};
use crate::machine::oops::{FaultCause, Oops};
use crate::machine::pgtable::Level;
use crate::machine::prot::Prot;

/// A mapping as `lookup_address()` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// `PG_LEVEL_4K` = 1, `PG_LEVEL_2M` = 2, `PG_LEVEL_1G` = 3; 0: not mapped.
    pub level: u8,
    pub rw: bool,
    pub nx: bool,
}

impl Mapping {
    pub const NONE: Mapping = Mapping {
        level: 0,
        rw: false,
        nx: false,
    };

    fn of(level: u8, prot: Prot) -> Self {
        if !prot.present() {
            return Self::NONE;
        }
        Mapping {
            level,
            rw: prot.writable(),
            nx: !prot.executable(),
        }
    }

    fn level_name(self) -> &'static str {
        match self.level {
            0 => "none",
            1 => "4K",
            2 => "2M",
            3 => "1G",
            _ => "?",
        }
    }
}

impl std::fmt::Display for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.level == 0 {
            return f.write_str("unmapped");
        }
        let rw = if self.rw { "RW" } else { "RO" };
        let x = if self.nx { "NX" } else { "X" };
        write!(f, "{} {rw} {x}", self.level_name())
    }
}

/// A vmalloc area's `vm_struct`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaState {
    /// `vm->nr_pages`.
    pub nr_pages: u64,
    /// `vm->page_order`: 9 when PMD-mapped (`is_vm_area_hugepages()`).
    pub page_order: u8,
}

/// A `struct page`'s words as a driver can read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageState {
    /// `PageTail()` / `PageHead()`: "tail", "head" or "single".
    pub compound: Compound,
    /// `page_ref_count()`.
    pub refcount: i32,
    /// `atomic_read(&page->_mapcount)` (-1 when not mapped to user space).
    pub mapcount: i32,
    pub mapping: u64,
    pub index: u64,
    pub private: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compound {
    #[default]
    Single,
    Head,
    Tail,
}

/// The state an op touched, as both a guest and the model can show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// A program load: the trace's live programs (by id) that share the new
    /// program's pack — placement, abstractly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<Vec<u32>>,
    /// The guest only: that pack existed before the trace (the boot's own
    /// BPF programs use it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pack_preexisting: bool,
    /// The guest only, not compared (where frames lie is each kernel's
    /// own): a load that made a new pack (or an oversize image) reports how
    /// many 2 MiB physical blocks its pages lie in — the direct-map leaves
    /// its `set_memory_ro` can split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_span: Option<u32>,
    /// The model only: no free order-9 block was left after the op, so a
    /// huge-eligible area fell back to order 0 for want of one.
    #[serde(skip)]
    pub no_order9: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<AreaState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageState>,
    /// The mapping of the address the op names (an area's start, `vN + off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmap: Option<Mapping>,
    /// The mapping of that page's direct-map alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Mapping>,
}

/// An op's value as the guest saw it: [`Obs`] for the ops a guest performs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestValue {
    Ok,
    /// `-ENOMEM`, `-EINVAL`, `-EFAULT` (by name).
    Err(String),
    /// Bytes read, as hex.
    Bytes(String),
    Count(i32),
    Word(u64),
    /// The op's own access faulted (the model's oops), with the cause.
    Fault(String),
    /// A stale pointer's load would fault (probed with
    /// `copy_from_kernel_nofault()`).
    NoAccess(String),
    /// The object the op names was never created.
    Skipped,
    /// `/proc/meminfo`'s `DirectMap*` and `/proc/vmstat`'s split counters.
    DirectMap(GuestDirectMap),
    /// The guest does not perform this op (yet): why.
    NotPerformed(String),
    /// A program loaded, but its JIT image is `got` bytes, not the `asked`
    /// (x86-64's JIT has a fixed prologue and epilogue).
    Inexact {
        asked: u32,
        got: u32,
    },
    /// A program run: whether the executable memory at its address held
    /// exactly the image the kernel reports as its JIT (`jited_prog_insns`).
    Ran {
        own: bool,
        len: u32,
    },
    /// Where a jump would land, classified by what lies there.
    Landing(GuestLanding),
}

/// [`Landing`] as the guest reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestLanding {
    OwnText(u32),
    OtherText,
    Header,
    Int3,
    /// The fetch would fault: the cause's name.
    Fault(String),
    StaleText(u32),
    OtherBytes(u8),
}

impl GuestLanding {
    pub fn to_landing(&self) -> Option<Landing> {
        Some(match *self {
            GuestLanding::OwnText(k) => Landing::OwnText(k),
            GuestLanding::OtherText => Landing::OtherText,
            GuestLanding::Header => Landing::Header,
            GuestLanding::Int3 => Landing::Int3,
            GuestLanding::Fault(ref c) => Landing::Fault(cause(c)?),
            GuestLanding::StaleText(k) => Landing::StaleText(k),
            GuestLanding::OtherBytes(b) => Landing::OtherBytes(b),
        })
    }
}

/// The direct-map counters as the guest's `/proc` files give them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDirectMap {
    pub directmap_4k_kb: u64,
    pub directmap_2m_kb: u64,
    pub directmap_1g_kb: u64,
    pub level2_splits: u64,
    pub level3_splits: u64,
}

/// One op as the guest performed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStep {
    pub value: GuestValue,
    #[serde(default)]
    pub view: View,
    /// What the kernel logged during the op (`/dev/kmsg`, warnings and
    /// worse), one line per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

/// One line of the agent's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestLine {
    /// The guest is up: its `uname -r`.
    Hello { release: String },
    /// Trace `trace` (in the order given) starts; its ops and teardown follow.
    Begin { trace: usize, ops: usize },
    /// Op `op` of trace `trace` (the teardown's ops follow the trace's).
    Step {
        trace: usize,
        op: usize,
        step: GuestStep,
    },
    /// The agent could not go on with trace `trace`: why.
    Error { trace: usize, message: String },
    /// Every trace ran.
    Done,
}

impl GuestValue {
    /// The model's observation for this value; `None` for what has none.
    pub fn to_obs(&self) -> Option<Obs> {
        Some(match self {
            GuestValue::Ok => Obs::Ok,
            GuestValue::Err(e) => Obs::Err(match e.as_str() {
                "ENOMEM" => Errno::Enomem,
                "EINVAL" => Errno::Einval,
                "EFAULT" => Errno::Efault,
                _ => return None,
            }),
            GuestValue::Bytes(hex) => Obs::Bytes(from_hex(hex)?),
            GuestValue::Count(n) => Obs::Count(*n),
            GuestValue::Word(w) => Obs::Word(*w),
            GuestValue::Fault(c) => Obs::Fault(cause(c)?),
            GuestValue::NoAccess(c) => Obs::NoAccess(cause(c)?),
            GuestValue::DirectMap(d) => Obs::DirectMap(DirectMapStats {
                directmap_4k_kb: d.directmap_4k_kb,
                directmap_2m_kb: d.directmap_2m_kb,
                directmap_1g_kb: d.directmap_1g_kb,
                direct_map_level2_splits: d.level2_splits,
                direct_map_level3_splits: d.level3_splits,
            }),
            GuestValue::Landing(l) => Obs::Landing(l.to_landing()?),
            GuestValue::Skipped
            | GuestValue::NotPerformed(_)
            | GuestValue::Inexact { .. }
            | GuestValue::Ran { .. } => return None,
        })
    }
}

impl std::fmt::Display for GuestStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.value, self.value.to_obs()) {
            (GuestValue::NotPerformed(why), _) => write!(f, "not performed ({why})")?,
            (GuestValue::Skipped, _) => f.write_str("skipped")?,
            (GuestValue::Inexact { asked, got }, _) => {
                write!(f, "ok, but a {got}-byte JIT image, not {asked}")?
            }
            (GuestValue::Ran { own: true, len }, _) => {
                write!(f, "ran its own JIT image ({len} bytes)")?
            }
            (GuestValue::Ran { own: false, len }, _) => {
                write!(f, "ran bytes that are not its JIT image ({len} bytes)")?
            }
            (_, Some(o)) => write!(f, "{o}")?,
            (v, None) => write!(f, "{v:?}")?,
        }
        write!(f, "{}", self.view)
    }
}

impl std::fmt::Display for AreaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "page_order {} × {} pages",
            self.page_order, self.nr_pages
        )
    }
}

impl std::fmt::Display for PageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self;
        write!(
            f,
            "{:?} _refcount {} _mapcount {} mapping {:#x} index {:#x} private {:#x}",
            p.compound, p.refcount, p.mapcount, p.mapping, p.index, p.private
        )
    }
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = self.area {
            write!(f, " [{a}]")?;
        }
        if let Some(p) = self.page {
            write!(f, " [{p}]")?;
        }
        if let Some(sh) = &self.shares {
            let ids: Vec<String> = sh.iter().map(|i| format!("prog{i}")).collect();
            let boot = if self.pack_preexisting {
                ", the boot's pack"
            } else {
                ""
            };
            write!(f, " [pack shared with {{{}}}{boot}]", ids.join(", "))?;
        }
        if let Some(m) = self.vmap {
            write!(f, " [vmap {m}]")?;
        }
        if let Some(m) = self.alias {
            write!(f, " [alias {m}]")?;
        }
        Ok(())
    }
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn cause(name: &str) -> Option<FaultCause> {
    [
        FaultCause::NotPresent,
        FaultCause::WriteToReadOnly,
        FaultCause::ExecNx,
        FaultCause::NonCanonical,
    ]
    .into_iter()
    .find(|c| c.name() == name)
}

/// The state `op` touched on a model kernel, after the op ran on it: what
/// the guest reports for the same op.
pub fn model_view(s: &Session, op: &Op) -> View {
    let k = &s.kernel;
    let m = k.machine();
    let vmap_of = |va: u64| match m.pgtables.lookup(va) {
        Some(l) => {
            let level = if l.level == Level::Pmd { 2 } else { 1 };
            let pfn = l.pfn + (va - l.va) / PAGE_SIZE;
            (Mapping::of(level, l.prot), Some(pfn))
        }
        None => (Mapping::NONE, None),
    };
    let alias_of = |pfn: u64| match m.dmap.lookup(pfn) {
        Some((prot, level, _)) => Mapping::of(
            match level {
                DmapLevel::K4 => 1,
                DmapLevel::M2 => 2,
                DmapLevel::G1 => 3,
            },
            prot,
        ),
        None => Mapping::NONE,
    };
    let page_of = |pfn: u64| {
        let p = m.mm.page(pfn);
        PageState {
            compound: if p.is_tail() {
                Compound::Tail
            } else if p.is_head() {
                Compound::Head
            } else {
                Compound::Single
            },
            refcount: p.refcount(),
            mapcount: p.mapcount_raw(),
            mapping: p.mapping(),
            index: p.index(),
            private: p.private(),
        }
    };
    let mut v = View::default();
    let at = |area: u32, off: u64| s.area(area).map(|a| k.area_addr(a) + off);
    match op {
        Op::Vmalloc { .. } | Op::Kvmalloc { .. } | Op::VmallocNode { .. } => {
            let Some(addr) = (s.areas_made().checked_sub(1)).and_then(|id| at(id as u32, 0)) else {
                return v;
            };
            let (vmap, pfn) = vmap_of(addr);
            let size = (k.regions().into_iter())
                .find(|r| r.start == addr)
                .map_or(0, |r| r.size);
            v.area = Some(AreaState {
                nr_pages: size / PAGE_SIZE,
                page_order: if vmap.level == 2 { 9 } else { 0 },
            });
            v.vmap = Some(vmap);
            v.alias = pfn.map(alias_of);
            v.no_order9 = !m.has_free_block(9);
        }
        Op::SetMemory { area, off, .. } => {
            if let Some(addr) = at(area.0, *off) {
                let (vmap, pfn) = vmap_of(addr);
                v.vmap = Some(vmap);
                v.alias = pfn.map(alias_of);
            }
        }
        Op::ProgLoad { .. } => {
            let newest = s.progs_loaded().checked_sub(1);
            if let Some((id, p)) = newest.and_then(|id| Some((id as u32, s.prog(id as u32)?))) {
                let start = k.images()[p.0 as usize].image.text_start;
                let (vmap, pfn) = vmap_of(start);
                v.vmap = Some(vmap);
                v.alias = pfn.map(alias_of);
                let regions = k.regions();
                let region_of = |a: u64| {
                    (regions.iter())
                        .find(|r| r.start <= a && a < r.start + r.size)
                        .map(|r| r.start)
                };
                let mine = region_of(start);
                let shares = (0..id)
                    .filter(|&other| {
                        s.prog(other).is_some_and(|q| {
                            let img = &k.images()[q.0 as usize];
                            img.live && region_of(img.image.text_start) == mine
                        })
                    })
                    .collect();
                v.shares = Some(shares);
            }
        }
        Op::VmallocToPage { .. } => {
            if let Some(p) = s.page(s.pages_taken().saturating_sub(1) as u32) {
                v.page = Some(page_of(p.0));
                v.alias = Some(alias_of(p.0));
            }
        }
        _ => {
            if let Some(p) = op.page().and_then(|id| s.page(id.0)) {
                v.page = Some(page_of(p.0));
                v.alias = Some(alias_of(p.0));
            }
        }
    }
    v
}

/// `Bad page state` reasons in a guest's log lines (`page dumped because:`).
pub fn bad_page_reasons(log: &[String]) -> Vec<&str> {
    log.iter()
        .filter_map(|l| l.split_once("page dumped because: ").map(|(_, r)| r.trim()))
        .collect()
}

/// What the comparison of a BPF op needs to know of the program it names.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgCtx {
    /// The length the trace loaded it with (`None`: not loaded).
    pub len: Option<u32>,
    /// Linux's JIT could not make an image of that length.
    pub inexact: bool,
}

/// The program a BPF op names, if any.
pub fn prog_of(op: &Op) -> Option<ProgId> {
    match op {
        Op::ProgFree { prog }
        | Op::ProgRun { prog }
        | Op::ProgProbe { prog, .. }
        | Op::StaleProbe { prog, .. }
        | Op::KcoreRead { prog, .. } => Some(*prog),
        _ => None,
    }
}

/// Compares what Linux showed for `op` with what the model's fixed kernel
/// showed (`model`, its `oopses` and `view`); `prog` describes the program
/// a BPF op names.
pub fn compare_ground(
    op: &Op,
    model: &Obs,
    oopses: &[Oops],
    view: &View,
    linux: &GuestStep,
    x: &Expect,
    prog: ProgCtx,
) -> Comparison {
    use Comparison::*;
    let names = ["optimised", "linux"];
    if prog.inexact && !matches!(op, Op::ProgFree { .. }) {
        return Incomparable {
            why: "a program whose JIT image on Linux is not the length the trace asked for",
            stop: false,
        };
    }
    let lv = match (&linux.value, linux.value.to_obs()) {
        (GuestValue::NotPerformed(_), _) => {
            let why = match op {
                Op::KcoreRead { .. } => {
                    "kcore reads are not performed on the guest (the agent does not read /proc/kcore)"
                }
                Op::ProgLoad { classic: true, .. } => {
                    "classic BPF filters are not loaded on the guest (the helper loads eBPF only)"
                }
                Op::ExecmemAlloc { .. } | Op::ExecmemFree { .. } => {
                    "execmem allocations for ftrace: 6.1 has no execmem, so the guest does not make them"
                }
                Op::FailNth { .. } => {
                    "fault injection in the ROX cache: 6.1 has no ROX cache, so the guest does not perform it"
                }
                _ => {
                    "the JIT's error paths (bpf_prog_load_fail, _subprogs_fail) cannot be provoked from user space on 6.1"
                }
            };
            return Incomparable { why, stop: false };
        }
        (GuestValue::Inexact { .. }, _) => {
            return Incomparable {
                why: "the x86-64 JIT makes no image of that length (its prologue and epilogue alone are 16 bytes)",
                stop: false,
            };
        }
        (GuestValue::Ran { own, len }, _) => {
            let Op::ProgRun { prog: id } = op else {
                return Divergent(format!("linux: a program run for {op:?}\n"));
            };
            let want = prog.len.unwrap_or(0);
            let model_own = match model {
                Obs::Text(_) => true,
                Obs::Bytes(b) => *b == prog_text(*id, want).to_vec(),
                _ => false,
            };
            return match (model_own, *own) {
                (true, true) if *len == want => Equal,
                (true, true) => Divergent(format!(
                    "the program's image: optimised {want} bytes, linux {len}\n"
                )),
                (false, _) => Divergent(format!(
                    "optimised: prog{} ran {model}, not its own text\n",
                    id.0
                )),
                (true, false) => Divergent(format!(
                    "linux: the executable memory at prog{}'s address is not the JIT image the kernel reports\n",
                    id.0
                )),
            };
        }
        (GuestValue::Skipped, _) if matches!(model, Obs::Skipped(..)) => return BothFailedAlike,
        // The op that made the object was compared on its own (or not
        // performed on the guest, with its reason).
        (GuestValue::Skipped, _) => {
            return Incomparable {
                why: "the object it names was not made on the guest",
                stop: false,
            };
        }
        (_, Some(o)) => o,
        (v, None) => {
            return Divergent(format!(
                "linux: an observation the model has no form for: {v:?}\n"
            ));
        }
    };
    // Bad page state: the model runs with CONFIG_DEBUG_VM's checks at free;
    // Debian's 6.1 has no DEBUG_VM, so an order-0 page freed to the per-cpu
    // lists is checked only when the list is drained to the buddy
    // (free_pcp_prepare(), bulkfree_pcp_prepare() in mm/page_alloc.c).
    let model_bad: Vec<&str> = (oopses.iter())
        .filter_map(|o| match o {
            Oops::BadPage { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    let linux_bad = bad_page_reasons(&linux.log);
    if model_bad != linux_bad {
        if linux_bad.is_empty() {
            return Incomparable {
                why: "Bad page state: the model checks every free as CONFIG_DEBUG_VM does; 6.1 without it checks an order-0 page only when the per-cpu list drains (free_pcp_prepare())",
                stop: false,
            };
        }
        return Divergent(format!(
            "Bad page state: optimised {model_bad:?}, linux {linux_bad:?}\n"
        ));
    }
    if let Op::DirectMapStats = op {
        return Incomparable {
            why: "direct-map counters: the guest's direct map is its own size and was split at boot (kernel text, the boot-time BPF pack, module loading)",
            stop: false,
        };
    }
    if let (Obs::Err(Errno::Enomem), Obs::Ok) = (model, &lv) {
        return Incomparable {
            why: "memory size: the model's machine is smaller than the guest's",
            stop: true,
        };
    }
    let c = compare_named(op, names, model, &lv, x);
    if !matches!(c, Equal | BothFailedAlike) {
        return c;
    }
    compare_views(view, &linux.view).unwrap_or(c)
}

/// The views' first difference, if any: a divergence, or incomparable where
/// the guest's direct map is legitimately more split than the model's.
fn compare_views(m: &View, l: &View) -> Option<Comparison> {
    if let (Some(a), Some(b)) = (&m.shares, &l.shares) {
        if a != b {
            if l.pack_preexisting {
                return Some(Comparison::Incomparable {
                    why: "placement: the guest put the program in a pack its boot-time BPF programs use",
                    stop: false,
                });
            }
            return Some(Comparison::Divergent(format!(
                "placement: the new program shares its pack with {a:?} on optimised, {b:?} on linux\n"
            )));
        }
    }
    let div = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
        Some(Comparison::Divergent(format!(
            "{what}: optimised {a}, linux {b}\n"
        )))
    };
    if let (Some(a), Some(b)) = (m.area, l.area) {
        if (a.page_order, b.page_order) == (0, 9) && m.no_order9 {
            return Some(Comparison::Incomparable {
                why: "huge fallback: the model's smaller machine had no free order-9 block left; the guest had one",
                stop: false,
            });
        }
        if a != b {
            return div("vm_struct", &a, &b);
        }
    }
    if let (Some(a), Some(b)) = (m.page, l.page) {
        if a != b {
            return div("struct page", &a, &b);
        }
    }
    if let (Some(a), Some(b)) = (m.vmap, l.vmap) {
        if a != b {
            return Some(Comparison::Divergent(format!(
                "the mapping (lookup_address): optimised {a}, linux {b}\n"
            )));
        }
    }
    if let (Some(a), Some(b)) = (m.alias, l.alias) {
        if (a.rw, a.nx, a.level == 0) != (b.rw, b.nx, b.level == 0) {
            return Some(Comparison::Divergent(format!(
                "the direct-map alias (lookup_address): optimised {a}, linux {b}\n"
            )));
        }
        // The leaf an alias sits in depends on where in physical memory the
        // page is: the guest's direct map was split at boot (kernel text, the
        // boot's BPF pack, module loading) and by earlier traces, the model's
        // only by its own CPA, and the two hand out different frames.
        if b.level != a.level {
            return Some(Comparison::Incomparable {
                why: "direct-map leaf size: the page sits elsewhere in physical memory, where the guest's or the model's direct map was already split",
                stop: false,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placement differs: divergent, unless the guest used a pack its boot
    /// had made (the boot's own programs took room there).
    #[test]
    fn placement_differences_are_divergent_unless_the_pack_was_the_boots() {
        let model = View {
            shares: Some(vec![0, 1]),
            ..View::default()
        };
        let mut linux = View {
            shares: Some(vec![1]),
            ..View::default()
        };
        assert!(matches!(
            compare_views(&model, &linux),
            Some(Comparison::Divergent(m)) if m.contains("[0, 1] on optimised, [1] on linux")
        ));
        linux.pack_preexisting = true;
        assert!(matches!(
            compare_views(&model, &linux),
            Some(Comparison::Incomparable { stop: false, .. })
        ));
        linux.shares = Some(vec![0, 1]);
        assert_eq!(compare_views(&model, &linux), None);
    }

    fn step(value: GuestValue) -> GuestStep {
        GuestStep {
            value,
            view: View::default(),
            log: Vec::new(),
        }
    }

    /// `compare_ground` for `op` with nothing known of the driver.
    fn cmp(op: &Op, model: &Obs, oopses: &[Oops], linux: &GuestStep, prog: ProgCtx) -> Comparison {
        let (shadow, driver) = (
            crate::harness::shadow::Shadow::default(),
            crate::harness::driver::Driver::default(),
        );
        let x = Expect {
            shadow: &shadow,
            driver: &driver,
            within_budget: true,
        };
        compare_ground(op, model, oopses, &View::default(), linux, &x, prog)
    }

    /// A run compares whether each side ran its own text, and the lengths.
    #[test]
    fn a_program_run_is_equal_when_both_ran_their_own_text() {
        let id = ProgId(0);
        let run = Op::ProgRun { prog: id };
        let own = Obs::Bytes(prog_text(id, 100).to_vec());
        let prog = ProgCtx {
            len: Some(100),
            inexact: false,
        };
        let ran = |own, len| step(GuestValue::Ran { own, len });
        assert_eq!(
            cmp(&run, &own, &[], &ran(true, 100), prog),
            Comparison::Equal
        );
        for (model, linux, says) in [
            (own.clone(), ran(false, 100), "not the JIT image"),
            (own.clone(), ran(true, 99), "optimised 100 bytes, linux 99"),
            (
                Obs::Bytes(vec![0xcc; 100]),
                ran(true, 100),
                "not its own text",
            ),
        ] {
            match cmp(&run, &model, &[], &linux, prog) {
                Comparison::Divergent(m) => assert!(m.contains(says), "{m}"),
                c => panic!("{c:?}"),
            }
        }
        let inexact = ProgCtx {
            inexact: true,
            ..prog
        };
        assert!(matches!(
            cmp(&run, &own, &[], &ran(true, 16), inexact),
            Comparison::Incomparable { stop: false, .. }
        ));
    }

    /// What the guest cannot do, or cannot do alike, is incomparable with a
    /// reason; what the model lacks memory for stops the comparison.
    #[test]
    fn legitimate_differences_are_incomparable_with_their_reason() {
        let load = Op::ProgLoad {
            len: 10,
            align: 1,
            rand: 0,
            classic: false,
        };
        let fail = Op::ProgLoadFail { len: 10, rand: 0 };
        let stats = Op::DirectMapStats;
        let alloc = Op::Vmalloc {
            size: 1 << 20,
            flags: crate::kernel::VmallocFlags::default(),
        };
        let none = ProgCtx::default();
        for (op, model, linux, why, stop) in [
            (
                &load,
                Obs::Ok,
                GuestValue::Inexact { asked: 10, got: 16 },
                "no image of that length",
                false,
            ),
            (
                &fail,
                Obs::Ok,
                GuestValue::NotPerformed("x".into()),
                "cannot be provoked",
                false,
            ),
            (
                &stats,
                Obs::DirectMap(DirectMapStats::default()),
                GuestValue::DirectMap(GuestDirectMap::default()),
                "direct-map counters",
                false,
            ),
            (
                &alloc,
                Obs::Err(Errno::Enomem),
                GuestValue::Ok,
                "memory size",
                true,
            ),
        ] {
            match cmp(op, &model, &[], &step(linux), none) {
                Comparison::Incomparable { why: w, stop: s } => {
                    assert!(w.contains(why), "{w}");
                    assert_eq!(s, stop, "{w}");
                }
                c => panic!("{op:?}: {c:?}"),
            }
        }
    }

    /// A `Bad page state` only the model printed is incomparable (6.1 checks
    /// order-0 frees late); one with another reason is divergent.
    #[test]
    fn bad_page_reports_are_compared_by_reason() {
        let free = Op::Vfree {
            area: crate::harness::op::AreaId(0),
        };
        let bad = Oops::BadPage {
            reason: "non-NULL mapping",
            dump: crate::machine::oops::PageDump {
                pfn: 1,
                words: [0; 8],
                head: None,
                compound: None,
            },
        };
        let none = ProgCtx::default();
        let mut linux = step(GuestValue::Ok);
        assert!(matches!(
            cmp(&free, &Obs::Ok, std::slice::from_ref(&bad), &linux, none),
            Comparison::Incomparable { .. }
        ));
        linux.log = vec!["page dumped because: nonzero mapcount".into()];
        assert!(matches!(
            cmp(&free, &Obs::Ok, std::slice::from_ref(&bad), &linux, none),
            Comparison::Divergent(_)
        ));
        linux.log = vec!["page dumped because: non-NULL mapping".into()];
        assert_eq!(
            cmp(&free, &Obs::Ok, std::slice::from_ref(&bad), &linux, none),
            Comparison::Equal
        );
    }

    /// An alias's protection is compared, its leaf size is not.
    #[test]
    fn alias_protection_is_compared_and_leaf_size_is_not() {
        let at = |level, rw| View {
            alias: Some(Mapping {
                level,
                rw,
                nx: true,
            }),
            ..View::default()
        };
        assert!(matches!(
            compare_views(&at(2, true), &at(1, true)),
            Some(Comparison::Incomparable { .. })
        ));
        assert!(matches!(
            compare_views(&at(1, true), &at(2, true)),
            Some(Comparison::Incomparable { .. })
        ));
        assert!(matches!(
            compare_views(&at(1, true), &at(1, false)),
            Some(Comparison::Divergent(_))
        ));
    }
}
