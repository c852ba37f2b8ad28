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
/// shows up here, not in someone's fuzzing campaign. Beside them may sit only
/// campaign inputs that `fuzz/corpus.sh grow` kept, named by the SHA-1 of
/// their bytes (checked here); any other file is an error. Regenerate with
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
    let mut present = BTreeSet::new();
    for e in std::fs::read_dir(&corpus).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if expected.contains(&name) {
            present.insert(name);
            continue;
        }
        // A campaign input: its name is the SHA-1 of its bytes.
        let is_sha1 = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(
            is_sha1 && name == sha1_hex(&std::fs::read(e.path()).unwrap()),
            "corpus/differential/{name}: neither the encoding of an example nor a \
             campaign input named by the SHA-1 of its bytes"
        );
    }
    assert_eq!(
        present, expected,
        "corpus/differential holds every encoded example"
    );
    assert!(expected.len() >= 20);
    assert_eq!(
        kinds.len(),
        Kind::all().count(),
        "the seed corpus covers every op kind"
    );
}

/// SHA-1 (FIPS 180-4) in lower-case hex, as `sha1sum` prints it: the names
/// `fuzz/corpus.sh grow` gives campaign inputs.
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha1_matches_sha1sum() {
    assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(
        sha1_hex(&[b'a'; 100]),
        "7f9000257a4918d7072655ea468540cdcbd42e0c"
    );
}
