//! The bodies of the fuzz targets. Fuzz targets are a few lines of glue that
//! call these; tests call them too, so the fuzz logic runs under plain
//! `cargo test` on stable. Each panics when its property fails.

use std::sync::OnceLock;

use super::decode::decode;
use super::report::render;
use super::run::run;
use super::trace::{Trace, parse};
use crate::kernel::{KernelKind, Quirks};
use crate::machine::Design;

/// The quirks of the optimised kernel for fuzz targets: `PACKMODEL_QUIRKS`
/// (comma-separated names; empty or unset is the fixed kernel). An unknown
/// name stops the target at once with a message listing the valid ones.
pub fn quirks_from_env() -> Quirks {
    static Q: OnceLock<Quirks> = OnceLock::new();
    *Q.get_or_init(|| {
        let v = std::env::var("PACKMODEL_QUIRKS").unwrap_or_default();
        Quirks::parse(&v).unwrap_or_else(|e| {
            eprintln!("PACKMODEL_QUIRKS: {e}");
            std::process::exit(2)
        })
    })
}

/// The optimised kernel's design for fuzz targets: `PACKMODEL_DESIGN` (a
/// design's name) fixes it for every input; unset or empty, each input's
/// config byte chooses. An unknown name stops the target at once with a
/// message listing the valid ones.
pub fn design_from_env() -> Option<Design> {
    static D: OnceLock<Option<Design>> = OnceLock::new();
    *D.get_or_init(|| {
        let v = std::env::var("PACKMODEL_DESIGN").unwrap_or_default();
        if v.is_empty() {
            return None;
        }
        let d = Design::from_name(&v);
        if d.is_none() {
            let names: Vec<_> = Design::ALL.iter().map(|d| d.name()).collect();
            eprintln!(
                "PACKMODEL_DESIGN: unknown design `{v}`; valid designs: {}",
                names.join(", ")
            );
            std::process::exit(2)
        }
        d
    })
}

/// `fuzz_targets/differential.rs`: decode any bytes to ops, run them on the
/// reference and the optimised kernel, and fail on any finding. `design`
/// overrides the input's (see [`design_from_env`]).
pub fn differential(data: &[u8], quirks: Quirks, design: Option<Design>) {
    let mut input = decode(data);
    if let Some(d) = design {
        input.config.design = d;
    }
    let trace = Trace::new(
        quirks.names().iter().map(|s| s.to_string()).collect(),
        input.config,
        input.ops,
    );
    let r = run(
        &trace,
        &[KernelKind::Reference, KernelKind::Optimised],
        quirks,
    );
    if !r.is_clean() {
        panic!(
            "\n{}\n--- trace ---\n{}",
            render("fuzz input", &trace, quirks, &r),
            trace.print()
        );
    }
}

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
                let _ = run(
                    &t,
                    &[KernelKind::Reference, KernelKind::Optimised],
                    Quirks::NONE,
                );
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
