//! Every finding the oracles make on a fixed set of buggy runs, snapshotted:
//! each regression under its own quirks and under all of them, each example
//! under all quirks and under all but uninit-pack, and each test-only sabotage of the optimised kernel on a
//! trace that reaches it. The regression snapshots show the verdict; this one
//! shows every finding after it too (op, oracle, kernel and the first line of
//! the message), so that an oracle that starts to miss something — or to see
//! something that is not there — shows up in review as a diff of this list.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use packmodel::harness::run::{Run, run, run_on};
use packmodel::harness::trace::{Trace, parse};
use packmodel::kernel::optimised::quirks::QUIRKS;
use packmodel::kernel::optimised::{Optimised, Sabotage};
use packmodel::kernel::reference::Reference;
use packmodel::kernel::{Kernel, KernelKind, Quirks};

fn traces(dir: &str) -> Vec<(String, Trace)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let t = parse(&name, &std::fs::read_to_string(&p).unwrap()).unwrap();
            (name, t)
        })
        .collect()
}

/// The run's findings, one line per run of findings with the same op, oracle
/// and kernel: how many, and the first line of the first one's message.
fn list(out: &mut String, title: &str, r: &Run) {
    let _ = writeln!(out, "{title}: {} findings", r.findings.len());
    let mut i = 0;
    while i < r.findings.len() {
        let f = &r.findings[i];
        let same = |g: &&packmodel::harness::oracle::Finding| {
            (g.op, g.oracle, g.kernel) == (f.op, f.oracle, f.kernel)
        };
        let n = r.findings[i..].iter().take_while(same).count();
        let at = f.op.map_or("end".to_string(), |i| format!("op {i}"));
        let first = f.message.lines().next().unwrap_or_default();
        let times = if n > 1 {
            format!(" ×{n}")
        } else {
            String::new()
        };
        let _ = writeln!(out, "  {at}  {}  {}{times}: {first}", f.oracle, f.kernel);
        i += n;
    }
}

const BOTH: [KernelKind; 2] = [KernelKind::Reference, KernelKind::Optimised];

#[test]
fn every_finding_of_the_buggy_runs() {
    let all = QUIRKS
        .iter()
        .fold(Quirks::NONE, |q, info| q.with(info.quirk));
    let mut out = String::new();
    for (name, t) in traces("regressions") {
        let own = Quirks::from_names(&t.quirks).unwrap();
        list(&mut out, &format!("{name} [{own}]"), &run(&t, &BOTH, own));
        list(
            &mut out,
            &format!("{name} [all quirks]"),
            &run(&t, &BOTH, all),
        );
    }
    // Without uninit-pack, whose stale pages would drown every other finding.
    let most = QUIRKS
        .iter()
        .filter(|i| i.name != "uninit-pack")
        .fold(Quirks::NONE, |q, info| q.with(info.quirk));
    for (name, t) in traces("examples") {
        list(
            &mut out,
            &format!("{name} [all quirks]"),
            &run(&t, &BOTH, all),
        );
        list(
            &mut out,
            &format!("{name} [all but uninit-pack]"),
            &run(&t, &BOTH, most),
        );
    }
    let sabotages = [
        (
            Sabotage::SkipPackFill,
            "p = bpf_prog_load(100)\nbpf_prog_probe(p, +3000)",
        ),
        (Sabotage::LeaveMappingOnFree, "v = vmalloc(8K)\nvfree(v)"),
        (Sabotage::CpaPastTheEnd, "p = bpf_prog_load(64)"),
        (Sabotage::PackWritable, "p = bpf_prog_load(64)"),
        (Sabotage::AliasWritable, "p = bpf_prog_load(64)"),
        (
            Sabotage::ReuseChunk,
            "a = bpf_prog_load(64)\nb = bpf_prog_load(64)",
        ),
        (Sabotage::LeakOnVfree, "v = vmalloc(16K)\nvfree(v)"),
        (Sabotage::NoPurge, "v = vmalloc(16K)\nvfree(v)"),
        (
            Sabotage::SkipLazyThreshold,
            "a = vmalloc(16M)\nvfree(a)\nb = vmalloc(16M)\nvfree(b)",
        ),
        (Sabotage::KeepMappingOnVfree, "v = vmalloc(16K)\nvfree(v)"),
        (
            Sabotage::NoResetPerms,
            "p = bpf_prog_load(64)\nbpf_prog_free(p)",
        ),
    ];
    for (s, body) in sabotages {
        let t = parse("s.trace", &format!("# packmodel trace v1\n{body}\n")).unwrap();
        let mut opt = Optimised::new(t.config, Quirks::NONE);
        opt.sabotage(s);
        let kernels: Vec<Box<dyn Kernel>> = vec![Box::new(Reference::new(t.config)), Box::new(opt)];
        list(&mut out, &format!("sabotage {s:?}"), &run_on(&t, kernels));
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("findings", out));
}
