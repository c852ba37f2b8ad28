//! The shipped example traces: each parses, replays cleanly on every kernel, and
//! together they exercise every op of the kernel API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use packmodel::harness::decode::Kind;
use packmodel::harness::report::render;
use packmodel::harness::run::run;
use packmodel::harness::trace::parse;
use packmodel::kernel::{KernelKind, Quirks};

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
fn every_example_replays_clean_on_each_kernel_and_on_both() {
    for path in examples() {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let t = parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut runs: Vec<Vec<KernelKind>> = KernelKind::ALL.iter().map(|&k| vec![k]).collect();
        runs.push(KernelKind::ALL.to_vec());
        for kinds in runs {
            let r = run(&t, &kinds, Quirks::NONE);
            assert!(r.is_clean(), "{}", render(&name, &t, Quirks::NONE, &r));
        }
    }
}

#[test]
fn examples_cover_every_op() {
    let mut seen = BTreeSet::new();
    for path in examples() {
        let t = parse("x", &std::fs::read_to_string(&path).unwrap()).unwrap();
        seen.extend(t.ops.iter().map(Kind::of));
    }
    let missing: Vec<_> = Kind::all().filter(|k| !seen.contains(k)).collect();
    assert!(missing.is_empty(), "no example uses {missing:?}");
}

/// `corpus/differential/` holds `packmodel encode` of every example that fits
/// in a fuzz input, and each decodes back to the example's ops: encoding drift
/// shows up here, not in someone's fuzzing campaign. (Inputs a campaign adds
/// with `cargo fuzz cmin` may sit beside them.) Regenerate with
/// `for f in corpus/examples/*.trace; do packmodel encode $f -o corpus/differential/$(basename $f .trace).bin --force; done`.
#[test]
fn seed_corpus_is_the_encoding_of_the_examples() {
    use packmodel::harness::decode::decode;
    use packmodel::harness::encode::encode;
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/differential");
    let mut expected = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for path in examples() {
        let t = parse("x", &std::fs::read_to_string(&path).unwrap()).unwrap();
        let Ok(bytes) = encode(&t) else {
            assert!(t.ops.len() > 256, "{} should encode", path.display());
            continue;
        };
        let name = format!("{}.bin", path.file_stem().unwrap().to_str().unwrap());
        let file = corpus.join(&name);
        let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(on_disk, bytes, "{} is stale", file.display());
        let input = decode(&on_disk);
        assert_eq!((input.config, &input.ops), (t.config, &t.ops));
        kinds.extend(input.ops.iter().map(Kind::of));
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        present, expected,
        "corpus/differential holds exactly the encoded examples"
    );
    assert!(expected.len() >= 20);
    assert_eq!(
        kinds.len(),
        Kind::all().count(),
        "the seed corpus covers every op kind"
    );
}
