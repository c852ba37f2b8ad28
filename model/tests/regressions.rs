//! Every `corpus/regressions/*.trace` replayed on both kernels with its quirks
//! and without them, snapshotted into the top-level `snapshots/`. Next to each
//! snapshot, plain assertions that the quirked run is a bug and the fixed run is
//! clean, so that a snapshot accepted by mistake cannot hide a lost regression.

use packmodel::harness::report::render;
use packmodel::harness::run::run;
use packmodel::harness::trace::parse;
use packmodel::kernel::{KernelKind, Quirks};

const BOTH: [KernelKind; 2] = [KernelKind::Reference, KernelKind::Optimised];

#[test]
fn regressions() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::glob!("../../corpus", "regressions/*.trace", |path| {
            let name = format!("corpus/regressions/{}", path.file_name().unwrap().to_str().unwrap());
            let text = std::fs::read_to_string(path).unwrap();
            let t = parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
            let quirks = Quirks::from_names(&t.quirks).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!quirks.is_empty(), "{name}: a regression names the quirks it needs");
            let with = run(&t, &BOTH, quirks);
            let without = run(&t, &BOTH, Quirks::NONE);
            let with_text = render(&name, &t, quirks, &with);
            let without_text = render(&name, &t, Quirks::NONE, &without);
            assert!(!with.is_clean(), "{name} no longer reproduces its bug:\n{with_text}");
            assert!(without.is_clean(), "{name} fails on the fixed kernel:\n{without_text}");
            insta::assert_snapshot!(format!(
                "===== with its quirks ({quirks}) =====\n{with_text}\n===== without quirks (the fixed kernel) =====\n{without_text}"
            ));
        });
    });
}

/// Quirks don't interfere: with any other quirk switched on as well, every
/// regression still reports its own verdict — the oracle, kernel and op of its
/// first finding — unless the added quirk already tripped that same oracle
/// earlier in the run (the content oracle reports each page once, and
/// `uninit-pack`, for one, fires at the first program load of any trace).
#[test]
fn each_regression_keeps_its_verdict_with_any_other_quirk() {
    use packmodel::kernel::optimised::quirks::QUIRKS;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut pairs = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
    {
        let name = path.display().to_string();
        let t = parse(&name, &std::fs::read_to_string(path).unwrap()).unwrap();
        let own = Quirks::from_names(&t.quirks).unwrap();
        let findings = |q: Quirks| -> Vec<_> {
            run(&t, &BOTH, q)
                .findings
                .iter()
                .map(|f| (f.oracle, f.kernel, f.op))
                .collect()
        };
        let expected = findings(own)[0];
        for other in QUIRKS.iter().filter(|i| !own.has(i.quirk)) {
            let got = findings(own.with(other.quirk));
            let masked = got.iter().any(|f| f.0 == expected.0 && f.2 < expected.2);
            assert!(
                got.contains(&expected) || masked,
                "{name} with {} as well: {expected:?} is gone; first findings now {:?}",
                other.name,
                &got[..got.len().min(3)]
            );
            pairs += 1;
        }
    }
    assert!(pairs >= 9 * 7, "{pairs} combinations checked");
}
