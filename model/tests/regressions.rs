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
