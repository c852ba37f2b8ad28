//! Corpus hygiene: every committed fuzz input still means what it meant when
//! it was committed. The decoder never fails, so drift would be silent: a
//! changed tag or argument width turns a seed into some other input and a
//! campaign quietly loses its coverage. This test prints, for every file in
//! `corpus/differential/` and `corpus/pack_concurrent/`, the number of ops it
//! decodes to and a hash of the decoded ops, and snapshots that list. A
//! decoder change shows up as a snapshot diff naming the files it changed.
//!
//! Growing a corpus (`fuzz/corpus.sh grow`) adds lines: review and accept them
//! with `cargo insta review`. Changing the meaning of existing inputs needs a
//! format-version bump: see "Corpus hygiene" in the README.

use std::path::{Path, PathBuf};

use packmodel::harness::decode::{FORMAT_VERSION, decode};
use packmodel::harness::trace::Trace;

fn files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// FNV-1a, 64 bits: stable across machines and Rust versions.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn committed_inputs_decode_as_committed() {
    let mut out = format!("format version {FORMAT_VERSION}\n\n## differential\n");
    let differential = files("differential");
    assert!(
        differential.len() >= 20,
        "the seed corpus has {} inputs",
        differential.len()
    );
    for f in &differential {
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(
            bytes.first(),
            Some(&FORMAT_VERSION),
            "{}: written for another input format (first byte)",
            f.display()
        );
        let input = decode(&bytes);
        let printed = Trace::new(vec![], input.config, input.ops.clone()).print();
        out += &format!(
            "{:<32} {:>3} ops  {:016x}\n",
            name(f),
            input.ops.len(),
            fnv(printed.as_bytes())
        );
    }
    out += "\n## pack_concurrent\n";
    for f in files("pack_concurrent") {
        let input = packmodel::harness::concurrent::decode(&std::fs::read(&f).unwrap());
        let ops: usize = input.ops.iter().map(Vec::len).sum();
        out += &format!(
            "{:<32} {:>3} ops  {:016x}\n",
            name(&f),
            ops,
            fnv(format!("{input:?}").as_bytes())
        );
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("corpus-decoding", out));
}
