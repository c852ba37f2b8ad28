//! The bodies of the fuzz targets. Fuzz targets are a few lines of glue that
//! call these; tests call them too, so the fuzz logic runs under plain
//! `cargo test` on stable. Each panics when its property fails.

use super::decode::decode;
use super::replay::replay;
use super::trace::{Trace, parse};
use crate::kernel::KernelKind;

/// `fuzz_targets/trace_parser.rs`: any text either fails to parse with a
/// positioned error or parses to a trace that prints and parses back to itself
/// and replays without panicking; and any bytes decode to ops whose printed
/// trace parses back to the same ops.
pub fn trace_parser(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        match parse("fuzz.trace", text) {
            Ok(t) => {
                let printed = t.print();
                let back = parse("printed.trace", &printed)
                    .unwrap_or_else(|e| panic!("printed trace does not parse: {e}\n{printed}"));
                assert_eq!(back.ops, t.ops, "print/parse changed the ops\n{printed}");
                assert_eq!(back.config, t.config);
                assert_eq!(back.quirks, t.quirks);
                for kind in KernelKind::ALL {
                    let _ = replay(&t, kind);
                }
            }
            Err(e) => {
                assert!(e.line >= 1 && e.col >= 1, "error without a position: {e}");
                assert!(
                    e.msg.starts_with("expected"),
                    "error does not say what was expected: {e}"
                );
            }
        }
    }
    let input = decode(data);
    let t = Trace::new(vec![], input.config, input.ops);
    let printed = t.print();
    let back = parse("decoded.trace", &printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(back, t, "decoded ops do not survive print/parse\n{printed}");
}
