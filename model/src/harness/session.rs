//! One kernel running a trace: the trace's names mapped to the kernel's own
//! handles, each op applied through the [`Kernel`] trait, and the oopses each op
//! caused collected with its observation.

use std::collections::BTreeMap;

use super::obs::Obs;
use super::op::{HandleKind, Op, ProgId};
use super::text::{prog_text, subprog_text};
use crate::kernel::{Area, Kernel, KernelKind, PageRef, Prog, Quirks, Text};
use crate::machine::MachineConfig;
use crate::machine::oops::Oops;

/// What one op did on one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub obs: Obs,
    /// Oopses the kernel printed during the op.
    pub oopses: Vec<Oops>,
}

/// A kernel and the trace's names for its objects.
pub struct Session {
    pub kernel: Box<dyn Kernel>,
    areas: Vec<Option<Area>>,
    pages: Vec<Option<PageRef>>,
    progs: Vec<Option<Prog>>,
    /// The trace's program ids, by kernel `Prog` index.
    prog_ids: Vec<ProgId>,
    /// Where each freed area was, by the trace's area id.
    freed_addrs: BTreeMap<u32, u64>,
    oopses_seen: usize,
}

impl Session {
    pub fn new(kind: KernelKind, cfg: MachineConfig, quirks: Quirks) -> Self {
        Self::with_kernel(kind.boot(cfg, quirks))
    }

    pub fn with_kernel(kernel: Box<dyn Kernel>) -> Self {
        Self {
            kernel,
            areas: Vec::new(),
            pages: Vec::new(),
            progs: Vec::new(),
            prog_ids: Vec::new(),
            freed_addrs: BTreeMap::new(),
            oopses_seen: 0,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kernel.name()
    }

    /// The kernel's handle for the trace's area `id`, if it was allocated.
    pub fn area(&self, id: u32) -> Option<Area> {
        self.areas.get(id as usize).copied().flatten()
    }

    /// The kernel's program for the trace's program `id`, if it loaded.
    pub fn prog(&self, id: u32) -> Option<Prog> {
        self.progs.get(id as usize).copied().flatten()
    }

    /// The kernel's page for the trace's page `id`, if it was obtained.
    pub fn page(&self, id: u32) -> Option<PageRef> {
        self.pages.get(id as usize).copied().flatten()
    }

    /// How many areas the trace has asked for so far (the last is the newest).
    pub fn areas_made(&self) -> usize {
        self.areas.len()
    }

    /// How many pages the trace has taken so far (the last is the newest).
    pub fn pages_taken(&self) -> usize {
        self.pages.len()
    }

    /// How many programs the trace has loaded so far (the last is the newest).
    pub fn progs_loaded(&self) -> usize {
        self.progs.len()
    }

    /// The trace's program id of a kernel program handle.
    pub fn prog_id(&self, prog: Prog) -> ProgId {
        self.prog_ids[prog.0 as usize]
    }

    /// Applies `op` and returns what it showed.
    pub fn step(&mut self, op: &Op) -> Step {
        let obs = self.apply(op);
        let all = self.kernel.machine().oopses();
        let oopses = all[self.oopses_seen..].to_vec();
        self.oopses_seen = all.len();
        Step { obs, oopses }
    }

    fn apply(&mut self, op: &Op) -> Obs {
        let k = &mut self.kernel;
        macro_rules! handle {
            ($vec:expr, $kind:expr, $id:expr) => {
                match $vec.get($id as usize).copied().flatten() {
                    Some(h) => h,
                    None => return Obs::Skipped($kind, $id),
                }
            };
        }
        match op {
            Op::Vmalloc { size, flags } => {
                let r = k.vmalloc(*size, *flags);
                self.areas.push(r.ok());
                r.map_or_else(Obs::Err, |_| Obs::Ok)
            }
            Op::Kvmalloc { size, nofail } => {
                let r = k.kvmalloc(*size, *nofail);
                self.areas.push(r.ok());
                r.map_or_else(Obs::Err, |_| Obs::Ok)
            }
            Op::VmallocNode { size, align, flags } => {
                let r = k.vmalloc_node(*size, *align, *flags);
                self.areas.push(r.ok());
                r.map_or_else(Obs::Err, |_| Obs::Ok)
            }
            Op::ExecmemAlloc { size } => {
                let r = k.execmem_alloc(*size);
                self.areas.push(r.ok());
                r.map_or_else(Obs::Err, |_| Obs::Ok)
            }
            Op::ExecmemFree { area } => {
                let a = handle!(self.areas, HandleKind::Area, area.0);
                self.areas[area.0 as usize] = None;
                k.execmem_free(a);
                Obs::Ok
            }
            Op::Vfree { area } => {
                let a = handle!(self.areas, HandleKind::Area, area.0);
                self.areas[area.0 as usize] = None;
                self.freed_addrs.insert(area.0, k.area_addr(a));
                k.vfree(a);
                Obs::Ok
            }
            Op::SetMemory {
                area,
                off,
                pages,
                change,
            } => {
                let a = handle!(self.areas, HandleKind::Area, area.0);
                k.set_memory(a, *off, *pages as u64, *change)
                    .map_or_else(Obs::Err, |()| Obs::Ok)
            }
            Op::StaleVread { area, off, len } => {
                let Some(&addr) = self.freed_addrs.get(&area.0) else {
                    return Obs::Skipped(HandleKind::Area, area.0);
                };
                match k.stale_read(addr + off, *len as usize) {
                    Ok(bytes) => Obs::Bytes(bytes),
                    Err(cause) => Obs::NoAccess(cause),
                }
            }
            Op::DirectMapStats => Obs::DirectMap(k.direct_map_stats()),
            Op::Vwrite { area, off, data } => {
                let a = handle!(self.areas, HandleKind::Area, area.0);
                k.vwrite(a, *off, data)
                    .map_or_else(|f| Obs::Fault(f.cause), |()| Obs::Ok)
            }
            Op::Vmemset {
                area,
                off,
                value,
                len,
            } => {
                let a = handle!(self.areas, HandleKind::Area, area.0);
                k.vmemset(a, *off, *value, *len as usize)
                    .map_or_else(|f| Obs::Fault(f.cause), |()| Obs::Ok)
            }
            Op::Vread { area, off, len } => {
                let a = handle!(self.areas, HandleKind::Area, area.0);
                let mut buf = vec![0; *len as usize];
                match k.vread(a, *off, &mut buf) {
                    Ok(()) => Obs::Bytes(buf),
                    Err(f) => Obs::Fault(f.cause),
                }
            }
            Op::VmallocToPage { area, off } => {
                let Some(a) = self.areas.get(area.0 as usize).copied().flatten() else {
                    self.pages.push(None);
                    return Obs::Skipped(HandleKind::Area, area.0);
                };
                let p = k.vmalloc_to_page(a, *off);
                self.pages.push(p);
                if p.is_some() { Obs::Ok } else { Obs::Word(0) }
            }
            Op::ProgLoad {
                len,
                align,
                rand,
                classic,
            } => {
                let id = ProgId(self.progs.len() as u32);
                let text = prog_text(id, *len);
                let r = if *classic {
                    k.bpf_prog_create(&text, *rand)
                } else {
                    k.bpf_prog_load(&text, *align as u32, *rand)
                };
                self.progs.push(r.ok());
                if let Ok(p) = r {
                    if self.prog_ids.len() <= p.0 as usize {
                        self.prog_ids.resize(p.0 as usize + 1, id);
                    }
                    self.prog_ids[p.0 as usize] = id;
                }
                r.map_or_else(Obs::Err, |_| Obs::Ok)
            }
            Op::ProgLoadFail { len, rand } => k
                .bpf_prog_load_fail(*len, *rand)
                .map_or_else(Obs::Err, |()| Obs::Ok),
            Op::ProgLoadSubprogsFail { lens, fail, rand } => {
                let texts: Vec<Text> = (lens.iter().enumerate())
                    .map(|(i, &l)| subprog_text(i, l))
                    .collect();
                k.bpf_prog_load_subprogs_fail(&texts, *fail as usize, *rand)
                    .map_or_else(Obs::Err, |()| Obs::Ok)
            }
            Op::ProgFree { prog } => {
                let p = handle!(self.progs, HandleKind::Prog, prog.0);
                k.bpf_prog_free(p);
                Obs::Ok
            }
            Op::ProgRun { prog } => {
                let p = handle!(self.progs, HandleKind::Prog, prog.0);
                k.bpf_prog_run(p)
                    .map_or_else(|f| Obs::Fault(f.cause), Obs::fetched)
            }
            Op::ProgProbe { prog, off } => {
                let p = handle!(self.progs, HandleKind::Prog, prog.0);
                Obs::Landing(k.bpf_prog_probe(p, *off as i64))
            }
            Op::StaleProbe { prog, off } => {
                let p = handle!(self.progs, HandleKind::Prog, prog.0);
                Obs::Landing(k.stale_probe(p, *off as i64))
            }
            Op::FailNth { site, nth } => {
                k.fail_nth(*site, u32::from(*nth));
                Obs::Ok
            }
            Op::KcoreRead { prog, off, len } => {
                let p = handle!(self.progs, HandleKind::Prog, prog.0);
                k.kcore_read(p, u64::from(*off), *len as usize)
                    .map_or_else(Obs::NoAccess, Obs::Bytes)
            }
            page_op => {
                let id = page_op.page().expect("every other op is a page op");
                let p = handle!(self.pages, HandleKind::Page, id.0);
                Self::page_op(k.as_mut(), page_op, p)
            }
        }
    }

    fn page_op(k: &mut dyn Kernel, op: &Op, p: PageRef) -> Obs {
        match op {
            Op::GetPage { .. } => k.get_page(p),
            Op::PutPage { .. } => k.put_page(p),
            Op::SetMapping { value, .. } => k.set_mapping(p, *value),
            Op::SetIndex { value, .. } => k.set_index(p, *value),
            Op::ListAdd { .. } => k.list_add(p),
            Op::ListDel { .. } => k.list_del(p),
            Op::InitListHead { .. } => k.init_list_head(p),
            Op::SetReserved { .. } => k.set_reserved(p),
            Op::ClearReserved { .. } => k.clear_reserved(p),
            Op::PageCount { .. } => return k.page_count(p).map_or(Obs::Oopsed, Obs::Count),
            Op::PageMapping { .. } => return Obs::Word(k.page_mapping(p)),
            Op::PageIndex { .. } => return Obs::Word(k.page_index(p)),
            Op::PagePrivate { .. } => return Obs::Word(k.page_private(p)),
            Op::SetPagePrivate { value, .. } => k.set_page_private(p, *value),
            _ => unreachable!("not a page op: {op:?}"),
        }
        Obs::Ok
    }
}
