//! Seeded random runs of the generator through the kernels (regalloc2-style
//! smoke tests): plain `cargo test` exercises the fuzz logic on stable.

use packmodel::harness::decode::decode;
use packmodel::harness::report::render;
use packmodel::harness::rng::Rng;
use packmodel::harness::run::run;
use packmodel::harness::targets;
use packmodel::harness::trace::Trace;
use packmodel::kernel::{KernelKind, Quirks};

/// A disciplined driver and well-formed BPF loads can never make the reference
/// kernel report anything: if they do, the model is wrong.
#[test]
fn reference_kernel_is_clean_on_generated_inputs() {
    let mut rng = Rng::new(7);
    for i in 0..1000 {
        let len = 1 + rng.next_u64() % 700;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let input = decode(&data);
        let t = Trace::new(vec![], input.config, input.ops);
        let r = run(&t, &[KernelKind::Reference], Quirks::NONE);
        assert!(
            r.is_clean(),
            "input {i}:\n{}\n{}",
            t.print(),
            render("generated", &t, Quirks::NONE, &r)
        );
    }
}

/// The differential target's body on 2,000 generated inputs: the fixed
/// optimised kernel agrees with the reference and breaks no invariant.
#[test]
fn differential_target_is_clean_on_generated_inputs() {
    let mut rng = Rng::new(0xd1ff);
    let mut ops = 0;
    for _ in 0..2000 {
        let len = 1 + rng.next_u64() % 900;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        ops += decode(&data).ops.len();
        targets::differential(&data, Quirks::NONE, None);
    }
    assert!(
        ops > 20_000,
        "the inputs must exercise the kernels ({ops} ops)"
    );
}

/// The same body with the design fixed to `execmem` (`PACKMODEL_DESIGN`),
/// on 1,000 other inputs: the ROX cache agrees with the reference, its
/// kcore reads and injected faults included.
#[test]
fn differential_target_is_clean_on_generated_inputs_in_the_execmem_design() {
    use packmodel::harness::op::Op;
    use packmodel::machine::Design;
    let mut rng = Rng::new(0xe8ec);
    let (mut kcore, mut faults) = (0, 0);
    for _ in 0..1000 {
        let len = 1 + rng.next_u64() % 900;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        for op in decode(&data).ops {
            kcore += usize::from(matches!(op, Op::KcoreRead { .. }));
            faults += usize::from(matches!(op, Op::FailNth { .. }));
        }
        targets::differential(&data, Quirks::NONE, Some(Design::Execmem));
    }
    assert!(
        kcore >= 10 && faults >= 30,
        "{kcore} kcore reads, {faults} injections"
    );
}

/// The trace_parser fuzz target's body over the shipped traces, mutated copies
/// of them, and random bytes.
#[test]
fn trace_parser_target_holds_on_seeded_inputs() {
    use packmodel::harness::targets::trace_parser;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/examples");
    let mut rng = Rng::new(11);
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        trace_parser(&text);
        for _ in 0..50 {
            let mut t = text.clone();
            let i = (rng.next_u64() % t.len() as u64) as usize;
            t[i] = b"()=,+-&x0 \n#9"[(rng.next_u64() % 13) as usize];
            trace_parser(&t);
        }
    }
    for _ in 0..300 {
        let data: Vec<u8> = (0..rng.next_u64() % 500)
            .map(|_| rng.next_u64() as u8)
            .collect();
        trace_parser(&data);
    }
}

/// With every quirk on at once, generated inputs find bugs but never panic the
/// model: the kernels must survive the states their historical bugs lead to.
#[test]
fn all_quirks_together_never_panic_the_model() {
    use packmodel::kernel::optimised::quirks::QUIRKS;
    let all = QUIRKS.iter().fold(Quirks::NONE, |q, i| q.with(i.quirk));
    let mut rng = Rng::new(0xa11);
    let mut found = 0;
    for _ in 0..1000 {
        let len = 1 + rng.below(900) as usize;
        let input = decode(&rng.bytes(len));
        let t = Trace::new(vec![], input.config, input.ops);
        found +=
            usize::from(!run(&t, &[KernelKind::Reference, KernelKind::Optimised], all).is_clean());
    }
    assert!(found > 100, "the quirks show ({found} of 1000 inputs)");
}

/// The `pack_concurrent` seed corpus passes its oracles under plain
/// `cargo test` (each input a few times: the threads interleave differently).
#[test]
fn pack_concurrent_corpus_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pack_concurrent");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{} inputs in {}",
        files.len(),
        dir.display()
    );
    for f in &files {
        let input = packmodel::harness::concurrent::decode(&std::fs::read(f).unwrap());
        for _ in 0..20 {
            if let Err(e) = packmodel::harness::concurrent::check(&input) {
                panic!("{}: {e}", f.display());
            }
        }
    }
}
