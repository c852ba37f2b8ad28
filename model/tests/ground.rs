//! Ground truth (DESIGN §11) without a guest: the committed recording of a
//! boot of Debian's 6.1 (`corpus/linux/`, written by `packmodel replay --on
//! linux --record`) replayed against the model's fixed kernel, and against a
//! sabotaged one. `.ci/run` tier (f) boots the guest and checks that a fresh
//! boot still answers exactly what the recording holds.

use packmodel::guest::{parse_answers, read_recording, traces_cpio};
use packmodel::harness::compare::Comparison;
use packmodel::harness::report::render;
use packmodel::harness::run::{Run, run_on_with_linux, run_with_linux};
use packmodel::harness::trace::{self, Trace};
use packmodel::kernel::Quirks;
use packmodel::kernel::optimised::{Optimised, Sabotage};

const RECORDING: &str = "../corpus/linux/debian-6.1.0-57-amd64.jsonl";

/// The recording's traces (paths from the repository's top) with the
/// guest's steps for each.
fn recorded() -> Vec<(String, Trace, Vec<packmodel::harness::ground::GuestStep>)> {
    let text = std::fs::read_to_string(RECORDING).expect("the committed recording");
    let (names, run) = read_recording(&text).expect("a well-formed recording");
    assert_eq!(run.release, "6.1.0-57-amd64");
    names
        .into_iter()
        .zip(run.traces)
        .map(|(name, steps)| {
            let src = std::fs::read_to_string(format!("../{name}")).expect("a recorded trace");
            let t = trace::parse(&name, &src).expect("parses");
            (name, t, steps.expect("the guest ran the trace"))
        })
        .collect()
}

/// Every recorded op is equal or incomparable with a named reason; every
/// example and every regression is in the recording (a regression's quirks
/// are the model's: Linux is compared with the fixed kernel).
#[test]
fn linux_6_1_agrees_with_the_fixed_kernel_on_every_example_and_regression() {
    let recorded = recorded();
    let mut examples: Vec<String> = ["examples", "regressions"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(format!("../corpus/{dir}"))
                .unwrap()
                .map(move |e| format!("corpus/{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        })
        .collect();
    examples.sort();
    let names: Vec<&str> = recorded.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names, examples,
        "the recording is stale: re-record it (README)"
    );
    let (mut equal, mut incomparable) = (0, 0);
    for (name, t, steps) in recorded {
        let r = run_with_linux(&t, steps);
        assert!(r.is_clean(), "{}", render(&name, &t, Quirks::NONE, &r));
        for st in &r.steps {
            match st.linux.as_ref().and_then(|l| l.cmp.as_ref()) {
                Some(Comparison::Equal | Comparison::BothFailedAlike) => equal += 1,
                Some(Comparison::Incomparable { why, .. }) => {
                    assert!(!why.is_empty());
                    incomparable += 1
                }
                Some(Comparison::Divergent(m)) => panic!("{name}: {m}"),
                None => {}
            }
        }
    }
    assert!(
        equal > 200 && incomparable < equal / 4,
        "{equal} equal, {incomparable} incomparable"
    );
}

/// `t` on the model as `run_with_linux` boots it (the `linux-6.1` design),
/// broken by `s`, against the recorded `steps`.
fn sabotaged(t: &Trace, s: Sabotage, steps: Vec<packmodel::harness::ground::GuestStep>) -> Run {
    let cfg = packmodel::machine::MachineConfig {
        design: packmodel::machine::Design::Linux61,
        ..t.config
    };
    let mut k = Optimised::new(cfg, Quirks::NONE);
    k.sabotage(s);
    run_on_with_linux(t, Box::new(k), steps)
}

/// A model whose `vmalloc_huge()` maps with PTEs diverges from Linux at the
/// first huge allocation, and the finding shows both observations.
#[test]
fn a_model_without_huge_vmalloc_diverges_from_linux() {
    let (name, t, steps) = recorded()
        .into_iter()
        .find(|(n, _, _)| n.ends_with("huge-vmalloc.trace"))
        .unwrap();
    let r = sabotaged(&t, Sabotage::NoHugeVmalloc, steps);
    let f = r.verdict().expect("a divergence");
    assert_eq!(f.kernel, "optimised vs linux");
    assert_eq!(f.op, Some(0), "{}", render(&name, &t, Quirks::NONE, &r));
    assert_eq!(
        f.message,
        "vm_struct: optimised page_order 0 × 1024 pages, linux page_order 9 × 1024 pages\n"
    );
}

/// A model that leaves `page->mapping` set when it frees shows a `Bad page
/// state` Linux never printed for that free: the comparison names both.
#[test]
fn a_bad_page_linux_did_not_report_is_incomparable_only_for_order_0_frees() {
    let (_, t, steps) = recorded()
        .into_iter()
        .find(|(n, _, _)| n.ends_with("nick-piggin-reproducer.trace"))
        .unwrap();
    let r = sabotaged(&t, Sabotage::LeaveMappingOnFree, steps);
    let why: Vec<&str> = (r.steps.iter())
        .filter_map(|s| match s.linux.as_ref()?.cmp.as_ref()? {
            Comparison::Incomparable { why, .. } => Some(*why),
            _ => None,
        })
        .collect();
    assert!(
        why.iter().any(|w| w.starts_with("Bad page state")),
        "{why:?}"
    );
}

/// The agent's lines: a step out of order, a trace never begun, a guest that
/// never said hello or never finished are errors, not silently fewer steps.
#[test]
fn guest_answers_are_checked() {
    let hello = r#"{"hello":{"release":"6.1"}}"#;
    let begin = r#"{"begin":{"trace":0,"ops":1}}"#;
    let step = |op: usize| format!(r#"{{"step":{{"trace":0,"op":{op},"step":{{"value":"ok"}}}}}}"#);
    let ok = format!("{hello}\n{begin}\n{}\n\"done\"\n", step(0));
    let run = parse_answers(&ok, 1).unwrap();
    assert_eq!(run.traces[0].as_ref().unwrap().len(), 1);
    for (text, want) in [
        (format!("{begin}\n\"done\"\n"), "never started"),
        (format!("{hello}\n{begin}\n{}\n", step(0)), "stopped before"),
        (
            format!("{hello}\n{begin}\n{}\n\"done\"\n", step(1)),
            "op 1 came after 0",
        ),
        (
            format!("{hello}\n{{\"begin\":{{\"trace\":3,\"ops\":1}}}}\n\"done\"\n"),
            "trace 3 of 1",
        ),
        (format!("{hello}\nnot json\n"), "line 2 is not understood"),
    ] {
        let e = parse_answers(&text, 1).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    let never = parse_answers(&format!("{hello}\n\"done\"\n"), 1).unwrap();
    assert!(never.traces[0].is_err(), "a trace the agent never began");
}

/// The traces travel as a `newc` cpio: each entry's header, name and data
/// 4-byte aligned, a trailer last.
#[test]
fn traces_travel_as_a_newc_cpio() {
    let c = traces_cpio(&[("a".into(), "vmalloc(4K)\n".into())]);
    assert_eq!(c.len() % 4, 0);
    assert!(c.starts_with(b"070701"));
    let text = String::from_utf8_lossy(&c);
    let i = text.find("traces/000.trace").expect("the trace's entry");
    // Its header: 110 bytes before the name; filesize is the 7th field.
    let head = &text[i - 110..i];
    assert_eq!(&head[54..62], format!("{:08x}", "vmalloc(4K)\n".len()));
    assert!(text.contains("vmalloc(4K)\n"));
    assert!(text.contains("TRAILER!!!"));
}

/// `replay --on linux` reads every trace before it boots: a bad one is exit
/// status 2 naming file, line and column, even with no guest anywhere; a
/// missing kernel is exit 2 naming it.
#[test]
fn replay_on_linux_rejects_bad_input_before_any_boot() {
    let dir = std::env::temp_dir().join(format!("packmodel-ground-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.trace");
    std::fs::write(&bad, "# packmodel trace v1\nv0 = vmalloc(\n").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_packmodel"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        "replay",
        "--on",
        "linux=/nonexistent/vmlinux",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.trace:2:"), "{err}");
    let good = "../corpus/examples/vmalloc.trace";
    let (code, err) = run(&["replay", "--on", "linux=/nonexistent/vmlinux", good]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no usable guest: the kernel /nonexistent/vmlinux does not exist"),
        "{err}"
    );
    let (code, err) = run(&["replay", "--on", "bsd", good]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("expected linux or linux=VMLINUX"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A pack allocator that does not fill new packs with INT3 diverges from
/// Linux where a jump lands in a program's lead-in hole: Linux traps, the
/// model runs whatever the frames held.
#[test]
fn a_pack_without_its_int3_fill_diverges_from_linux() {
    let (name, t, steps) = recorded()
        .into_iter()
        .find(|(n, _, _)| n.ends_with("bpf-programs.trace"))
        .unwrap();
    let r = sabotaged(&t, Sabotage::SkipPackFill, steps);
    let f = (r.findings.iter())
        .find(|f| f.kernel == "optimised vs linux")
        .unwrap_or_else(|| panic!("{}", render(&name, &t, Quirks::NONE, &r)));
    assert!(
        matches!(
            t.ops[f.op.unwrap()],
            packmodel::harness::op::Op::ProgProbe { .. }
        ),
        "{}",
        f.message
    );
    assert!(f.message.contains("linux INT3 trap"), "{}", f.message);
}

/// Linux 6.1's packs are PTE-mapped order-0 pages: the model's `linux-6.1`
/// design agrees, its default huge packs (`pack-2m`) do not.
#[test]
fn linux_6_1_packs_are_the_linux_6_1_design_not_huge_packs() {
    use packmodel::harness::run::run_on_with_linux;
    use packmodel::kernel::KernelKind;
    let (name, t, steps) = recorded()
        .into_iter()
        .find(|(n, _, _)| n.ends_with("bpf-programs.trace"))
        .unwrap();
    assert_eq!(t.config.design, packmodel::machine::Design::Pack2m);
    let r = run_with_linux(&t, steps.clone());
    assert!(r.is_clean(), "{}", render(&name, &t, Quirks::NONE, &r));
    let huge = KernelKind::Optimised.boot(t.config, Quirks::NONE);
    let r = run_on_with_linux(&t, huge, steps);
    let f = r.verdict().expect("a divergence");
    assert_eq!(f.op, Some(0));
    assert_eq!(
        f.message,
        "the mapping (lookup_address): optimised 2M RO X, linux 4K RO X\n"
    );
}
