//! Every `corpus/regressions/*.trace` replayed on both kernels with its quirks
//! and without them, snapshotted into the top-level `snapshots/`. Next to each
//! snapshot, plain assertions that the quirked run is a bug and the fixed run is
//! clean, so that a snapshot accepted by mistake cannot hide a lost regression.

use packmodel::harness::oracle::Oracle;
use packmodel::harness::report::render;
use packmodel::harness::run::run;
use packmodel::harness::trace::{Trace, parse};
use packmodel::kernel::optimised::quirks::QUIRKS;
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
            // The verdict itself, from the trace's header: the first finding's
            // oracle and op.
            let first = &with.findings[0];
            let got = match first.op {
                Some(op) => format!("expect: {} at line {}", first.oracle.slug(), t.lines[op]),
                None => format!("expect: {} at the end", first.oracle.slug()),
            };
            let Some(e) = t.expect else {
                panic!("{name}: a regression states its verdict in its header; now: `{got}`")
            };
            assert_eq!(
                (first.oracle, first.op),
                (e.oracle, e.op),
                "{name}: the first finding is not the `expect:` line's (now `{got}`):\n{with_text}"
            );
            insta::assert_snapshot!(format!(
                "===== with its quirks ({quirks}) =====\n{with_text}\n===== without quirks (the fixed kernel) =====\n{without_text}"
            ));
        });
    });
}

/// A regression trace and its own quirks.
struct Regression {
    name: String,
    trace: Trace,
    own: Quirks,
}

impl Regression {
    /// Every `corpus/regressions/*.trace`, sorted by name.
    fn all() -> Vec<Regression> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "trace"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let name = path.display().to_string();
                let trace = parse(&name, &std::fs::read_to_string(path).unwrap()).unwrap();
                let own = Quirks::from_names(&trace.quirks).unwrap();
                Regression { name, trace, own }
            })
            .collect()
    }

    /// (oracle, kernel, op) of the first finding under its own quirks; a
    /// regression that no longer reproduces says so by name.
    fn first_finding(&self) -> (Oracle, &'static str, Option<usize>) {
        let all = self.findings(self.own);
        *all.first()
            .unwrap_or_else(|| panic!("{} no longer reproduces its bug", self.name))
    }

    /// (oracle, kernel, op) of every finding under `quirks`.
    fn findings(&self, quirks: Quirks) -> Vec<(Oracle, &'static str, Option<usize>)> {
        run(&self.trace, &BOTH, quirks)
            .findings
            .iter()
            .map(|f| (f.oracle, f.kernel, f.op))
            .collect()
    }
}

/// Quirks don't interfere: with any other quirk switched on as well, every
/// regression still reports its own verdict — the oracle, kernel and op of its
/// first finding — unless the added quirk already tripped that same oracle
/// earlier in the run (the content oracle reports each page once, and
/// `uninit-pack`, for one, fires at the first program load of any trace).
#[test]
fn each_regression_keeps_its_verdict_with_any_other_quirk() {
    let mut pairs = 0;
    for r in Regression::all() {
        let expected = r.first_finding();
        for other in QUIRKS.iter().filter(|i| !r.own.has(i.quirk)) {
            let got = r.findings(r.own.with(other.quirk));
            let masked = got.iter().any(|f| f.0 == expected.0 && f.2 < expected.2);
            assert!(
                got.contains(&expected) || masked,
                "{} with {} as well: {expected:?} is gone; first findings now {:?}",
                r.name,
                other.name,
                &got[..got.len().min(3)]
            );
            pairs += 1;
        }
    }
    assert!(pairs >= 9 * 7, "{pairs} combinations checked");
}

/// No quirk is found under a different quirk set: a regression's own verdict
/// (oracle, kernel and op of its first finding) never appears when only some
/// other quirk is switched on, nor on the fixed kernel.
#[test]
fn no_regression_verdict_appears_under_another_quirk_alone() {
    for r in Regression::all() {
        let expected = r.first_finding();
        assert!(
            r.findings(Quirks::NONE).is_empty(),
            "{} on the fixed kernel",
            r.name
        );
        for other in QUIRKS.iter().filter(|i| !r.own.has(i.quirk)) {
            let got = r.findings(Quirks::NONE.with(other.quirk));
            assert!(
                !got.contains(&expected),
                "{}'s verdict {expected:?} appears with only {} on",
                r.name,
                other.name
            );
        }
    }
}

/// The README's regression table names, in its last column, the oracle each
/// trace's `expect:` line names: the table is what reviewers read.
#[test]
fn the_readme_table_names_each_regressions_expected_oracle() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let all = Regression::all();
    for r in &all {
        let file = std::path::Path::new(&r.name)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{file}` |")))
            .unwrap_or_else(|| panic!("README: no row for {file} in the regression table"));
        let oracle = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
        let e = r
            .trace
            .expect
            .unwrap_or_else(|| panic!("{}: no `expect:` line", r.name));
        assert_eq!(oracle, e.oracle.name(), "README row of {file}");
    }
    assert!(all.len() >= 18);
}
