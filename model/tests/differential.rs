//! The optimised kernel and the differential harness: the scenarios issue 3
//! names, and an oracle self-test per invariant through test-only sabotage.

use packmodel::harness::oracle::Oracle;
use packmodel::harness::report::render;
use packmodel::harness::run::{Run, run, run_on};
use packmodel::harness::trace::{Trace, parse};
use packmodel::kernel::optimised::{Optimised, Sabotage};
use packmodel::kernel::reference::Reference;
use packmodel::kernel::{Kernel, KernelKind, Quirks};
use packmodel::machine::MachineConfig;
use packmodel::machine::consts::PAGE_SIZE;
use packmodel::machine::pgtable::Level;

fn trace(body: &str) -> Trace {
    parse("test.trace", &format!("# packmodel trace v1\n{body}")).unwrap_or_else(|e| panic!("{e}"))
}

fn both(t: &Trace) -> Run {
    run(
        t,
        &[KernelKind::Reference, KernelKind::Optimised],
        Quirks::NONE,
    )
}

fn example(name: &str) -> Trace {
    let path = format!("{}/../corpus/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn three_hundred_programs_share_one_pack_and_agree() {
    let t = example("many-programs.trace");
    let r = both(&t);
    assert!(
        r.is_clean(),
        "{}",
        render("many-programs", &t, Quirks::NONE, &r)
    );
    assert!(r.stopped_comparing.is_none());
    // Replay up to the end of the trace (before the teardown) and count packs.
    let mut s =
        packmodel::harness::session::Session::new(KernelKind::Optimised, t.config, Quirks::NONE);
    let mut most = 0;
    for op in &t.ops {
        s.step(op);
        most = most.max(s.kernel.packs().len());
    }
    assert_eq!(most, 1, "exactly one pack, all along");
}

#[test]
fn a_4m_vmalloc_huge_uses_two_pmd_leaves_on_one_node() {
    let t = trace("v = vmalloc_huge(4M)\nvwrite(v + 0x1ffffe, \"abcd\")\nvread(v + 0x1ffffe, 2)");
    let mut s = packmodel::harness::session::Session::new(
        KernelKind::Optimised,
        MachineConfig::default(),
        Quirks::NONE,
    );
    for op in &t.ops {
        s.step(op);
    }
    let m = s.kernel.machine();
    let leaves: Vec<_> = m.pgtables.leaves().collect();
    assert_eq!(leaves.len(), 2);
    assert!(leaves.iter().all(|l| l.level == Level::Pmd));
    assert_eq!(leaves[0].pfn % 512, 0);
    assert!(both(&t).is_clean());
}

#[test]
fn fragmented_memory_falls_back_to_ptes_and_reads_back() {
    let t = example("huge-fallback.trace");
    let big = t
        .ops
        .iter()
        .position(
            |op| matches!(op, packmodel::harness::op::Op::Vmalloc { size, .. } if *size == 4 << 20),
        )
        .unwrap();
    let mut s =
        packmodel::harness::session::Session::new(KernelKind::Optimised, t.config, Quirks::NONE);
    for op in &t.ops[..=big] {
        s.step(op);
    }
    let m = s.kernel.machine();
    assert_eq!(
        m.pgtables
            .leaves()
            .filter(|l| l.level == Level::Pmd)
            .count(),
        0,
        "no order-9 block: no PMD leaf"
    );
    let id = t.ops[..big]
        .iter()
        .filter(|op| op.creates() == Some(packmodel::harness::op::HandleKind::Area))
        .count();
    let area = s.area(id as u32).expect("the 4 MiB area was allocated");
    let start = s.kernel.area_addr(area);
    let ptes = m
        .pgtables
        .leaves()
        .filter(|l| l.va >= start && l.va < start + (4 << 20))
        .count();
    assert_eq!(ptes, 1024, "512×2 PTE-mapped order-0 pages");
    let r = both(&t);
    assert!(
        r.is_clean(),
        "{}",
        render("huge-fallback", &t, Quirks::NONE, &r)
    );
    let _ = PAGE_SIZE;
}

/// Runs `t` on the reference and a sabotaged optimised kernel.
fn sabotaged(t: &Trace, s: Sabotage) -> Run {
    let mut opt = Optimised::new(t.config, Quirks::NONE);
    opt.sabotage(s);
    let kernels: Vec<Box<dyn Kernel>> = vec![Box::new(Reference::new(t.config)), Box::new(opt)];
    let r = run_on(t, kernels);
    let clean = run_on(
        t,
        vec![
            Box::new(Reference::new(t.config)),
            Box::new(Optimised::new(t.config, Quirks::NONE)),
        ],
    );
    assert!(
        clean.is_clean(),
        "the trace is clean without sabotage:\n{}",
        render("t", t, Quirks::NONE, &clean)
    );
    r
}

fn oracles(r: &Run) -> Vec<Oracle> {
    r.findings.iter().map(|f| f.oracle).collect()
}

#[test]
fn skipping_the_pack_fill_is_caught_by_content_and_by_a_probe_past_the_end() {
    let t = trace("p = bpf_prog_load(100)\nbpf_prog_probe(p, +3000)");
    let r = sabotaged(&t, Sabotage::SkipPackFill);
    let f = r.verdict().expect("a finding");
    assert_eq!(
        (f.oracle, f.kernel, f.op),
        (Oracle::ExecutableContent, "optimised", Some(0))
    );
    assert!(
        f.message.contains("neither program text nor INT3"),
        "{}",
        f.message
    );
    let probe = r
        .findings
        .iter()
        .find(|f| f.op == Some(1))
        .expect("the probe is reported");
    assert_eq!(probe.oracle, Oracle::ExecutableContent);
    assert!(
        probe.message.contains("runs other bytes"),
        "{}",
        probe.message
    );
}

#[test]
fn a_page_left_with_a_mapping_is_a_bad_page_state() {
    let t = trace("v = vmalloc(8K)\nvfree(v)");
    let r = sabotaged(&t, Sabotage::LeaveMappingOnFree);
    let f = r.verdict().unwrap();
    assert_eq!((f.oracle, f.kernel), (Oracle::BadPageState, "optimised"));
    assert!(
        f.message.contains("page dumped because: non-NULL mapping"),
        "{}",
        f.message
    );
}

#[test]
fn a_cpa_call_past_the_area_is_an_oops() {
    let r = sabotaged(&trace("p = bpf_prog_load(64)"), Sabotage::CpaPastTheEnd);
    let f = r.verdict().unwrap();
    assert_eq!((f.oracle, f.kernel), (Oracle::Oops, "optimised"));
    assert!(
        f.message.contains("CPA: called for zero pte"),
        "{}",
        f.message
    );
}

#[test]
fn a_writable_executable_pack_breaks_w_xor_x() {
    let r = sabotaged(&trace("p = bpf_prog_load(64)"), Sabotage::PackWritable);
    assert_eq!(r.verdict().unwrap().oracle, Oracle::WriteXorExecute);
}

#[test]
fn a_writable_alias_of_text_breaks_alias_coherence() {
    let r = sabotaged(&trace("p = bpf_prog_load(64)"), Sabotage::AliasWritable);
    let f = r.verdict().unwrap();
    assert_eq!(f.oracle, Oracle::AliasCoherence);
    assert!(
        f.message.contains("writable direct-map alias"),
        "{}",
        f.message
    );
}

#[test]
fn chunks_handed_out_twice_are_an_overlap() {
    let r = sabotaged(
        &trace("a = bpf_prog_load(64)\nb = bpf_prog_load(64)"),
        Sabotage::ReuseChunk,
    );
    assert!(oracles(&r).contains(&Oracle::Overlap), "{:?}", r.findings);
    assert!(
        r.findings
            .iter()
            .any(|f| f.message.contains("images of live programs overlap"))
    );
}

#[test]
fn a_page_kept_by_vfree_is_a_leak() {
    let r = sabotaged(&trace("v = vmalloc(16K)\nvfree(v)"), Sabotage::LeakOnVfree);
    let f = r.verdict().unwrap();
    assert_eq!((f.oracle, f.op), (Oracle::Leak, None));
    assert!(
        f.message
            .contains("1 pages are neither free nor reported bad"),
        "{}",
        f.message
    );
}

#[test]
fn a_purge_that_gives_nothing_back_leaks_vmap_space() {
    let r = sabotaged(&trace("v = vmalloc(16K)\nvfree(v)"), Sabotage::NoPurge);
    let f = r.verdict().unwrap();
    assert_eq!(
        (f.oracle, f.kernel, f.op),
        (Oracle::Leak, "optimised", None)
    );
    assert!(
        f.message
            .contains("vm_unmap_aliases(), 1 vmap areas remain")
            && f.message.contains("unpurged"),
        "{}",
        f.message
    );
}

#[test]
fn lazily_freed_pages_over_the_threshold_break_the_vmap_rules() {
    let t = trace("a = vmalloc(16M)\nvfree(a)\nb = vmalloc(16M)\nvfree(b)");
    let r = sabotaged(&t, Sabotage::SkipLazyThreshold);
    let f = r.verdict().unwrap();
    assert_eq!((f.oracle, f.op), (Oracle::VmapSpace, Some(3)));
    assert!(
        f.message.contains("vmap_lazy_nr is 8194") && f.message.contains("lazy_max_pages() 8192"),
        "{}",
        f.message
    );
}

#[test]
fn an_unpurged_range_that_is_still_mapped_breaks_the_vmap_rules() {
    let r = sabotaged(
        &trace("v = vmalloc(16K)\nvfree(v)"),
        Sabotage::KeepMappingOnVfree,
    );
    let f = r.verdict().unwrap();
    assert_eq!((f.oracle, f.op), (Oracle::VmapSpace, Some(1)));
    assert!(f.message.contains("is still mapped"), "{}", f.message);
}

/// The region checks (overlap, fresh pages, vmap space) run after every op
/// that changed what is mapped, whatever its kind: a corruption made only
/// inside a failed multi-subprogram load (which makes a pack and frees it)
/// is found right after that load, not at some later op.
#[test]
fn the_region_checks_run_after_a_multi_subprogram_load() {
    let t = trace("bpf_prog_load_subprogs_fail(64, 64, fail=0)\nv = vmalloc(4K)\nvfree(v)");
    let r = sabotaged(&t, Sabotage::SubprogsMiscountLazy);
    let f = r.verdict().unwrap();
    assert_eq!(
        (f.oracle, f.op),
        (Oracle::VmapSpace, Some(0)),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains("vmap_lazy_nr is 1 with 0 unpurged pages"),
        "{}",
        f.message
    );
}

#[test]
fn a_free_without_resetting_the_alias_leaves_read_only_free_pages() {
    let t = trace("p = bpf_prog_load(64)\nbpf_prog_free(p)");
    let r = sabotaged(&t, Sabotage::NoResetPerms);
    let f = r.verdict().unwrap();
    assert_eq!((f.oracle, f.op), (Oracle::AliasCoherence, None));
    assert!(
        f.message
            .contains("after freeing everything, 512 free pages have a direct-map alias"),
        "{}",
        f.message
    );
}

/// The end-of-run sweep recomputes what the incremental oracles keep; a drift
/// between the two is a bug in the model itself, and the run panics.
#[test]
#[should_panic(expected = "executable-page tracking drifted")]
fn the_final_sweep_catches_incremental_bookkeeping_that_drifted() {
    let t = trace("p = bpf_prog_load(64)");
    let mut opt = Optimised::new(t.config, Quirks::NONE);
    opt.sabotage(Sabotage::HideExecChanges);
    run_on(&t, vec![Box::new(Reference::new(t.config)), Box::new(opt)]);
}

/// The sabotages go by their names on the command line (`--sabotage NAME`),
/// one name each.
#[test]
fn sabotages_go_by_their_names() {
    for s in Sabotage::ALL {
        assert_eq!(Sabotage::from_name(s.name()), Some(s), "{}", s.name());
    }
    assert_eq!(
        Sabotage::from_name("skip-pack-fill"),
        Some(Sabotage::SkipPackFill)
    );
}

/// The leak report names the pages that are held, not the ones a bad page
/// state already reported: with the tail-page bug's 2 MiB block leaked (bad
/// page state, reported) and a page kept by a sabotaged `vfree`, it names
/// one page, the kept one.
#[test]
fn a_leak_beside_a_reported_bad_page_names_only_the_held_page() {
    let t = trace(
        "mem = vmalloc(2M)\n\
         p = vmalloc_to_page(mem + 0x3000)\n\
         list_add(&p->lru, &driver_list)\n\
         list_del(&p->lru)\n\
         vfree(mem)\n\
         v = vmalloc(16K)\n\
         vfree(v)\n",
    );
    let quirks = Quirks::parse("huge-vmalloc-opt-out,compound-huge-vmalloc").unwrap();
    let mut opt = Optimised::new(t.config, quirks);
    opt.sabotage(Sabotage::LeakOnVfree);
    let r = run_on(&t, vec![Box::new(opt)]);
    let found: Vec<_> = r.findings.iter().map(|f| (f.oracle, f.op)).collect();
    assert!(
        found.contains(&(Oracle::BadPageState, Some(4))),
        "{found:?}"
    );
    let leak = r.findings.iter().find(|f| f.oracle == Oracle::Leak);
    let msg = &leak.expect("a leak").message;
    let listed = msg
        .split_once("(pfns ")
        .and_then(|(_, l)| l.split_once('…'))
        .map(|(l, _)| l.split(", ").collect::<Vec<_>>());
    assert!(
        msg.contains("1 pages are neither free nor reported bad"),
        "{msg}"
    );
    assert!(
        matches!(listed.as_deref(), Some([pfn]) if pfn.starts_with("0x")),
        "{msg}"
    );
}

/// A pack whose base the quirks left off a 64-byte boundary (an execmem
/// block of an unaligned size, found by a pack-mask lookup) has chunks that
/// cross a page: the report draws its strip from both pages rather than
/// panic (it did, slicing past the first page).
#[test]
fn a_pack_strip_reads_a_chunk_across_two_pages() {
    let t = trace(
        "config: nodes=1 mem=64M dmap=2M design=execmem\n\
         prog0 = bpf_prog_load(6733395, align=8, rand=0xad8947a9)\n\
         v0 = execmem_alloc(23748)\n\
         bpf_prog_free(prog0)\n\
         v1 = kvmalloc(48K)\n\
         v4 = execmem_alloc(2314)\n\
         bpf_prog_load_fail(298, rand=0x2170080)\n",
    );
    let quirks = Quirks::parse("execmem-unaligned-size,pack-mask-lookup").unwrap();
    let r = run(&t, &[KernelKind::Reference, KernelKind::Optimised], quirks);
    let text = render("unaligned-pack", &t, quirks, &r);
    let strip = (text.lines())
        .find(|l| l.contains("pack 0 ffffffffc000090a |"))
        .unwrap_or_else(|| panic!("no strip of the unaligned pack:\n{text}"));
    assert!(strip.ends_with("|+...............................................................|"));
}
