//! The shipped example traces: each parses, replays cleanly on every kernel, and
//! together they exercise every op of the kernel API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use packmodel::harness::decode::{KINDS, Kind};
use packmodel::harness::replay::{render, replay};
use packmodel::harness::trace::parse;
use packmodel::kernel::KernelKind;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/examples");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no example traces in {}", dir.display());
    v
}

#[test]
fn every_example_replays_clean_on_every_kernel() {
    for path in examples() {
        let name = path.display().to_string();
        let t = parse(&name, &std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
        for kind in KernelKind::ALL {
            let r = replay(&t, kind);
            assert!(r.is_clean(), "{}", render(&name, &t, &r));
        }
    }
}

#[test]
fn examples_cover_every_op() {
    let mut seen = BTreeSet::new();
    for path in examples() {
        let t = parse("x", &std::fs::read_to_string(&path).unwrap()).unwrap();
        seen.extend(t.ops.iter().map(|op| Kind::of(op).tag()));
    }
    let missing: Vec<_> = KINDS.iter().filter(|k| !seen.contains(&k.tag())).collect();
    assert!(missing.is_empty(), "no example uses {missing:?}");
}
