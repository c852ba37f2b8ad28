//! packmodel's guest agent. The guest's `/init` starts it once the
//! `packmodel_guest` module is loaded; it reads the traces the host packed
//! into the initramfs (`/traces/*.trace`, in name order), parses each with
//! packmodel's own parser, performs every op and then the model's teardown
//! through the module, and prints one JSON line per op
//! ([`packmodel::harness::ground::GuestLine`]) to the host.
//!
//! Usage: `packmodel-agent [TRACE_DIR [OUT [DEVICE [BPF_HELPER]]]]`
//! (defaults: `/traces`, `/dev/ttyS1`, `/dev/packmodel_guest`, `/bpf_prog`).

mod bpf;
mod module;

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use module::Module;
use packmodel::harness::ground::{
    AreaState, Compound, GuestDirectMap, GuestLine, GuestStep, GuestValue, Mapping, PageState,
    View, to_hex,
};
use packmodel::harness::op::Op;
use packmodel::harness::run::teardown_ops;
use packmodel::harness::trace;
use packmodel::kernel::{HugeHint, SetMemory};

/// `O_NONBLOCK` on x86-64 Linux (`asm-generic/fcntl.h`).
const O_NONBLOCK: i32 = 0o4000;
/// Module slots per kind (`PMG_SLOTS`).
const SLOTS: u32 = 4096;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("/traces", String::as_str);
    let out = args.get(2).map_or("/dev/ttyS1", String::as_str);
    let dev = args.get(3).map_or("/dev/packmodel_guest", String::as_str);
    let helper = args.get(4).map_or("/bpf_prog", String::as_str);
    match run(dir, out, dev, helper) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("packmodel-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str, out: &str, dev: &str, helper: &str) -> io::Result<()> {
    let mut out = File::options().write(true).open(out)?;
    let mut emit = |line: &GuestLine| -> io::Result<()> {
        let mut s = serde_json::to_string(line).map_err(io::Error::other)?;
        s.push('\n');
        out.write_all(s.as_bytes())
    };
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")?;
    emit(&GuestLine::Hello {
        release: release.trim().to_string(),
    })?;
    let mut module = Module::open(dev)?;
    let mut kmsg = Kmsg::open()?;
    let mut names: Vec<_> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    names.sort();
    let mut guest = Guest {
        helper_path: helper.to_string(),
        ..Guest::default()
    };
    for (t, path) in names.iter().enumerate() {
        let text = fs::read_to_string(path)?;
        let tr = match trace::parse(&path.display().to_string(), &text) {
            Ok(tr) => tr,
            Err(e) => {
                emit(&GuestLine::Error {
                    trace: t,
                    message: e.to_string(),
                })?;
                continue;
            }
        };
        let mut ops = tr.ops.clone();
        ops.extend(teardown_ops(&tr));
        emit(&GuestLine::Begin {
            trace: t,
            ops: ops.len(),
        })?;
        guest.start_trace();
        kmsg.drain();
        for (i, op) in ops.iter().enumerate() {
            match guest.perform(&mut module, op) {
                Ok((value, view)) => {
                    let log = kmsg.drain();
                    emit(&GuestLine::Step {
                        trace: t,
                        op: i,
                        step: GuestStep { value, view, log },
                    })?;
                }
                Err(e) => {
                    emit(&GuestLine::Error {
                        trace: t,
                        message: format!("op {i}: {e}"),
                    })?;
                    break;
                }
            }
        }
    }
    emit(&GuestLine::Done)
}

/// The trace's objects on the module's slots.
#[derive(Default)]
struct Guest {
    /// The first module slot of the current trace's areas and pages.
    area_base: u32,
    page_base: u32,
    /// The trace's areas: allocated (and not yet freed), and freed.
    areas: Vec<bool>,
    freed: Vec<bool>,
    pages: Vec<bool>,
    /// The trace's programs: loaded (until freed), and freed.
    progs: Vec<Option<bpf::Loaded>>,
    freed_progs: Vec<Option<bpf::Loaded>>,
    helper_path: String,
    helper: Option<bpf::Helper>,
    /// The vm areas of the programs that were there before the trace's
    /// first load (the boot's own), once asked.
    preexisting: Option<Vec<u64>>,
}

impl Guest {
    fn start_trace(&mut self) {
        self.area_base = (self.area_base + self.areas.len() as u32) % SLOTS;
        self.page_base = (self.page_base + self.pages.len() as u32) % SLOTS;
        self.areas.clear();
        self.freed.clear();
        self.pages.clear();
        self.progs.clear();
        self.freed_progs.clear();
        self.preexisting = None;
    }

    fn helper(&mut self) -> io::Result<&mut bpf::Helper> {
        if self.helper.is_none() {
            self.helper = Some(bpf::Helper::start(&self.helper_path)?);
        }
        Ok(self.helper.as_mut().expect("started"))
    }

    /// Where a jump to `prog`'s image + `off` lands (`stale`: a freed one's).
    fn probe(
        &mut self,
        m: &mut Module,
        prog: u32,
        off: i32,
        stale: bool,
    ) -> io::Result<GuestValue> {
        let list = if stale {
            &self.freed_progs
        } else {
            &self.progs
        };
        let Some(p) = list.get(prog as usize).cloned().flatten() else {
            return Ok(GuestValue::Skipped);
        };
        let kernel = bpf::kernel_images(m)?;
        let live: Vec<&bpf::Loaded> = self.progs.iter().flatten().collect();
        let freed: Vec<&bpf::Loaded> = self.freed_progs.iter().flatten().collect();
        let addr = p.addr.wrapping_add_signed(i64::from(off));
        let own = (!stale).then_some(&p);
        let landing = bpf::classify(m, addr, own, &live, &kernel, &freed)?;
        Ok(GuestValue::Landing(landing))
    }

    fn area_slot(&self, id: u32) -> Option<u32> {
        (self.areas.get(id as usize) == Some(&true)).then_some((self.area_base + id) % SLOTS)
    }

    fn page_slot(&self, id: u32) -> Option<u32> {
        (self.pages.get(id as usize) == Some(&true)).then_some((self.page_base + id) % SLOTS)
    }

    fn perform(&mut self, m: &mut Module, op: &Op) -> io::Result<(GuestValue, View)> {
        let mut view = View::default();
        let skipped = Ok((GuestValue::Skipped, View::default()));
        let value = match op {
            Op::Vmalloc { .. } | Op::Kvmalloc { .. } | Op::VmallocNode { .. } => {
                let (size, align, f) = match op {
                    Op::Vmalloc { size, flags } => (*size, 1, vmalloc_flags(flags)),
                    Op::VmallocNode { size, align, flags } => (*size, *align, vmalloc_flags(flags)),
                    Op::Kvmalloc { size, nofail } => (
                        *size,
                        1,
                        module::F_KVMALLOC | if *nofail { module::F_NOFAIL } else { 0 },
                    ),
                    _ => unreachable!(),
                };
                let slot = (self.area_base + self.areas.len() as u32) % SLOTS;
                let r = m.call(module::VMALLOC, slot, [size, align, f], 0, &[])?;
                self.areas.push(r.ret == 0);
                self.freed.push(false);
                if r.ret != 0 {
                    GuestValue::Err(errno(r.ret))
                } else {
                    view.area = Some(AreaState {
                        nr_pages: r.val[module::A_NR_PAGES],
                        page_order: r.val[module::A_PAGE_ORDER] as u8,
                    });
                    view.vmap = Some(mapping(r.val[module::A_VMAP]));
                    view.alias = Some(mapping(r.val[module::A_ALIAS]));
                    GuestValue::Ok
                }
            }
            Op::ExecmemAlloc { .. } => {
                self.areas.push(false);
                self.freed.push(false);
                GuestValue::NotPerformed(
                    "execmem_alloc for ftrace trampolines: 6.1 has no execmem (the module \
                     does not make them)"
                        .into(),
                )
            }
            Op::ExecmemFree { .. } => {
                GuestValue::NotPerformed("execmem_free: 6.1 has no execmem".into())
            }
            Op::Vfree { area } => {
                let Some(slot) = self.area_slot(area.0) else {
                    return skipped;
                };
                check(m.call(module::VFREE, slot, [0; 3], 0, &[])?)?;
                self.areas[area.0 as usize] = false;
                self.freed[area.0 as usize] = true;
                GuestValue::Ok
            }
            Op::Vwrite { area, off, data } => {
                let Some(slot) = self.area_slot(area.0) else {
                    return skipped;
                };
                let r = m.call(module::VWRITE, slot, [*off, 0, 0], data.len() as u64, data)?;
                fault_or(r, true, GuestValue::Ok)?
            }
            Op::Vmemset {
                area,
                off,
                value,
                len,
            } => {
                let Some(slot) = self.area_slot(area.0) else {
                    return skipped;
                };
                let r = m.call(
                    module::VMEMSET,
                    slot,
                    [*off, u64::from(*value), 0],
                    u64::from(*len),
                    &[],
                )?;
                fault_or(r, true, GuestValue::Ok)?
            }
            Op::Vread { area, off, len } => {
                let Some(slot) = self.area_slot(area.0) else {
                    return skipped;
                };
                let r = m.call(module::VREAD, slot, [*off, 0, 0], u64::from(*len), &[])?;
                let bytes = GuestValue::Bytes(to_hex(&r.payload));
                fault_or(r, false, bytes)?
            }
            Op::StaleVread { area, off, len } => {
                if self.freed.get(area.0 as usize) != Some(&true) {
                    return skipped;
                }
                let slot = (self.area_base + area.0) % SLOTS;
                let r = m.call(module::STALE_READ, slot, [*off, 0, 0], u64::from(*len), &[])?;
                let bytes = GuestValue::Bytes(to_hex(&r.payload));
                match fault_or(r, false, bytes)? {
                    GuestValue::Fault(c) => GuestValue::NoAccess(c),
                    v => v,
                }
            }
            Op::VmallocToPage { area, off } => {
                let page_slot = (self.page_base + self.pages.len() as u32) % SLOTS;
                let Some(slot) = self.area_slot(area.0) else {
                    self.pages.push(false);
                    return skipped;
                };
                let r = m.call(
                    module::VMALLOC_TO_PAGE,
                    slot,
                    [*off, u64::from(page_slot), 0],
                    0,
                    &[],
                )?;
                self.pages.push(r.ret == 0);
                if r.ret != 0 {
                    GuestValue::Word(0)
                } else {
                    (view.page, view.alias) = page_view(&r.val);
                    GuestValue::Ok
                }
            }
            Op::SetMemory {
                area,
                off,
                pages,
                change,
            } => {
                let Some(slot) = self.area_slot(area.0) else {
                    return skipped;
                };
                let which = match change {
                    SetMemory::Ro => 0,
                    SetMemory::Rw => 1,
                    SetMemory::X => 2,
                    SetMemory::Nx => 3,
                    SetMemory::Rox => 4,
                };
                let r = m.call(
                    module::SET_MEMORY,
                    slot,
                    [*off, u64::from(*pages), which],
                    0,
                    &[],
                )?;
                view.vmap = Some(mapping(r.val[module::M_VMAP]));
                view.alias = Some(mapping(r.val[module::M_ALIAS]));
                if r.ret == 0 {
                    GuestValue::Ok
                } else {
                    GuestValue::Err(errno(r.ret))
                }
            }
            Op::DirectMapStats => GuestValue::DirectMap(direct_map()?),
            Op::ProgLoad { classic: true, .. } => {
                self.progs.push(None);
                self.freed_progs.push(None);
                GuestValue::NotPerformed(
                    "classic BPF filters are not loaded on the guest yet (the helper \
                     loads eBPF socket filters only)"
                        .into(),
                )
            }
            Op::ProgLoad { len, .. } => {
                if self.preexisting.is_none() {
                    self.preexisting = Some(bpf::bpf_areas()?);
                }
                match self.helper()?.load(*len)? {
                    Ok(mut p) => {
                        let got = p.len;
                        let r = m.call(module::PEEK, 0, [p.addr, 0, 0], 1, &[])?;
                        if r.ret == 0 {
                            view.vmap = Some(mapping(r.val[module::M_VMAP]));
                            view.alias = Some(mapping(r.val[module::M_ALIAS]));
                        }
                        p.area = r.val[module::M_AREA];
                        view.shares = Some(
                            (self.progs.iter().enumerate())
                                .filter(|(_, q)| q.as_ref().is_some_and(|q| q.area == p.area))
                                .map(|(id, _)| id as u32)
                                .collect(),
                        );
                        view.pack_preexisting = self
                            .preexisting
                            .as_ref()
                            .is_some_and(|a| a.contains(&p.area));
                        let new_pack = view.shares.as_ref().is_some_and(Vec::is_empty);
                        if new_pack && !view.pack_preexisting {
                            let r = m.call(module::SPAN, 0, [p.area, 0, 0], 0, &[])?;
                            if r.ret == 0 {
                                view.pack_span = Some(r.val[1] as u32);
                            }
                        }
                        self.progs.push(Some(p));
                        self.freed_progs.push(None);
                        if got == *len {
                            GuestValue::Ok
                        } else {
                            GuestValue::Inexact { asked: *len, got }
                        }
                    }
                    Err(e) => {
                        self.progs.push(None);
                        self.freed_progs.push(None);
                        GuestValue::Err(errno(-i64::from(e)))
                    }
                }
            }
            Op::ProgFree { prog } => {
                let Some(p) = self.progs.get_mut(prog.0 as usize).and_then(Option::take) else {
                    return skipped;
                };
                self.helper()?.free(m, &p)?;
                self.freed_progs[prog.0 as usize] = Some(p);
                GuestValue::Ok
            }
            Op::ProgRun { prog } => {
                let Some(p) = self.progs.get(prog.0 as usize).cloned().flatten() else {
                    return skipped;
                };
                GuestValue::Ran {
                    own: bpf::runs_own(m, &p)?,
                    len: p.len,
                }
            }
            Op::ProgProbe { prog, off } => self.probe(m, prog.0, *off, false)?,
            Op::StaleProbe { prog, off } => self.probe(m, prog.0, *off, true)?,
            Op::ProgLoadFail { .. } | Op::ProgLoadSubprogsFail { .. } => GuestValue::NotPerformed(
                "the JIT's error paths cannot be provoked from user space on 6.1 \
                 (no JIT failure a bpf(2) caller controls)"
                    .into(),
            ),
            Op::FailNth { .. } => GuestValue::NotPerformed(
                "fault injection inside the kernel's allocators is not performed on \
                 the guest (6.1 has no ROX cache)"
                    .into(),
            ),
            Op::KcoreRead { .. } => GuestValue::NotPerformed(
                "kcore reads are not performed on the guest yet (the agent does not \
                 read /proc/kcore)"
                    .into(),
            ),
            page_op => {
                let id = page_op.page().expect("every other op is a page op");
                let Some(slot) = self.page_slot(id.0) else {
                    return skipped;
                };
                let (which, value) = match page_op {
                    Op::GetPage { .. } => (module::PG_GET, 0),
                    Op::PutPage { .. } => (module::PG_PUT, 0),
                    Op::SetMapping { value, .. } => (module::PG_SET_MAPPING, *value),
                    Op::SetIndex { value, .. } => (module::PG_SET_INDEX, *value),
                    Op::ListAdd { .. } => (module::PG_LIST_ADD, 0),
                    Op::ListDel { .. } => (module::PG_LIST_DEL, 0),
                    Op::InitListHead { .. } => (module::PG_INIT_LIST_HEAD, 0),
                    Op::SetReserved { .. } => (module::PG_SET_RESERVED, 0),
                    Op::ClearReserved { .. } => (module::PG_CLEAR_RESERVED, 0),
                    Op::SetPagePrivate { value, .. } => (module::PG_SET_PRIVATE, *value),
                    _ => (module::PG_READ, 0),
                };
                let r = check(m.call(module::PAGE_OP, slot, [which, value, 0], 0, &[])?)?;
                (view.page, view.alias) = page_view(&r.val);
                match page_op {
                    Op::PageCount { .. } => GuestValue::Count(r.val[module::P_PAGE_COUNT] as i32),
                    Op::PageMapping { .. } => GuestValue::Word(r.val[module::P_MAPPING]),
                    Op::PageIndex { .. } => GuestValue::Word(r.val[module::P_INDEX]),
                    Op::PagePrivate { .. } => GuestValue::Word(r.val[module::P_PRIVATE]),
                    _ => GuestValue::Ok,
                }
            }
        };
        Ok((value, view))
    }
}

fn vmalloc_flags(f: &packmodel::kernel::VmallocFlags) -> u64 {
    // 6.1 has no vmalloc_no_huge(): a plain vmalloc() is never huge, which
    // is all HugeHint::Forbid asks.
    let huge = if f.huge == HugeHint::Allow {
        module::F_HUGE
    } else {
        0
    };
    huge | if f.zero { module::F_ZERO } else { 0 } | if f.nofail { module::F_NOFAIL } else { 0 }
}

/// A response that must have succeeded.
fn check(r: module::Rsp) -> io::Result<module::Rsp> {
    if r.ret == 0 {
        Ok(r)
    } else {
        Err(io::Error::other(format!(
            "the module refused: {}",
            errno(r.ret)
        )))
    }
}

/// The value of an access that may have faulted: a fault's cause from the
/// mapping of the address it stopped at.
fn fault_or(r: module::Rsp, write: bool, ok: GuestValue) -> io::Result<GuestValue> {
    match r.ret {
        0 => Ok(ok),
        -14 => {
            let map = r.val[module::FAULT_MAP];
            let cause = if map & module::MAP_PRESENT == 0 {
                "not-present"
            } else if write && map & module::MAP_RW == 0 {
                "write to read-only"
            } else {
                "not-present"
            };
            Ok(GuestValue::Fault(cause.into()))
        }
        e => Err(io::Error::other(format!(
            "the module refused: {}",
            errno(e)
        ))),
    }
}

fn errno(ret: i64) -> String {
    match -ret {
        12 => "ENOMEM".into(),
        22 => "EINVAL".into(),
        14 => "EFAULT".into(),
        n => format!("E{n}"),
    }
}

fn mapping(v: u64) -> Mapping {
    if v & module::MAP_PRESENT == 0 {
        return Mapping::NONE;
    }
    Mapping {
        level: (v & 0xff) as u8,
        rw: v & module::MAP_RW != 0,
        nx: v & module::MAP_NX != 0,
    }
}

fn page_view(val: &[u64]) -> (Option<PageState>, Option<Mapping>) {
    let page = PageState {
        compound: match val[module::P_COMPOUND] {
            1 => Compound::Head,
            2 => Compound::Tail,
            _ => Compound::Single,
        },
        refcount: val[module::P_REFCOUNT] as u32 as i32,
        mapcount: val[module::P_MAPCOUNT] as u32 as i32,
        mapping: val[module::P_MAPPING],
        index: val[module::P_INDEX],
        private: val[module::P_PRIVATE],
    };
    (Some(page), Some(mapping(val[module::P_ALIAS])))
}

/// `/proc/meminfo`'s `DirectMap*` (kB) and `/proc/vmstat`'s split counters.
fn direct_map() -> io::Result<GuestDirectMap> {
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    let vmstat = fs::read_to_string("/proc/vmstat")?;
    let field = |text: &str, name: &str| -> u64 {
        (text.lines())
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok(GuestDirectMap {
        directmap_4k_kb: field(&meminfo, "DirectMap4k:"),
        directmap_2m_kb: field(&meminfo, "DirectMap2M:"),
        directmap_1g_kb: field(&meminfo, "DirectMap1G:"),
        level2_splits: field(&vmstat, "direct_map_level2_splits "),
        level3_splits: field(&vmstat, "direct_map_level3_splits "),
    })
}

/// What the kernel says when an op goes wrong: `bad_page()`, `WARN()`,
/// `BUG()`, CPA's complaints, `warn_alloc()` for vmalloc.
const KEEP: [&str; 7] = [
    "BUG:",
    "page dumped because:",
    "WARNING:",
    "CPA",
    "vmap allocation",
    "vmalloc error",
    "kernel BUG",
];

/// The kernel log (`/dev/kmsg`), read from where the agent last stopped.
struct Kmsg(File);

impl Kmsg {
    fn open() -> io::Result<Self> {
        let mut f = File::options()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open("/dev/kmsg")?;
        f.seek(SeekFrom::End(0))?;
        Ok(Kmsg(f))
    }

    /// The records logged since the last call at `KERN_WARNING` or worse
    /// that say what went wrong ([`KEEP`]), their message text only (a record
    /// is `prio,seq,usec,flags;text`): not the stack traces and memory
    /// summaries that follow them, which differ from boot to boot.
    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let Some((head, text)) = rec.split_once(';') else {
                        continue;
                    };
                    let prio: u32 = head
                        .split(',')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(7);
                    let text = text.lines().next().unwrap_or("");
                    if prio & 7 <= 4 && KEEP.iter().any(|k| text.contains(k)) {
                        lines.push(text.to_string());
                    }
                }
                // EPIPE: records were overwritten before we read them.
                Err(e) if e.raw_os_error() == Some(32) => continue,
                Err(_) => break,
            }
        }
        lines
    }
}
