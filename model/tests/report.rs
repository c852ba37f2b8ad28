//! What a replay prints at its end and what `replay --json` gives scripts.

use packmodel::harness::json::render_json;
use packmodel::harness::report::render;
use packmodel::harness::run::run;
use packmodel::harness::trace::parse;
use packmodel::kernel::{KernelKind, Quirks};

const TRACE: &str = "# packmodel trace v1\nconfig: nodes=1 mem=64M dmap=2M\n\
    big = bpf_prog_load(2100000)\n\
    direct_map_stats()\n";

/// Every replay ends with each kernel's direct-map counters after the trace
/// and after the teardown, as the machine counted them.
#[test]
fn a_replay_ends_with_each_kernels_direct_map_counters() {
    let t = parse("t.trace", TRACE).unwrap();
    let r = run(&t, &KernelKind::ALL, Quirks::NONE);
    let text = render("t.trace", &t, Quirks::NONE, &r);
    let opt = r.counters[1];
    // The oversize program's 513 pages split one direct-map leaf; the
    // teardown's VM_FLUSH_RESET_PERMS splits the other.
    assert_eq!(
        (
            opt[0].direct_map_level2_splits,
            opt[1].direct_map_level2_splits
        ),
        (1, 2)
    );
    let line = |who: &str, when: &str| {
        text.lines()
            .find(|l| l.contains(who) && l.contains(when))
            .unwrap_or_else(|| panic!("no {who} {when} line in\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let after = line("optimised", "after the trace");
    assert_eq!(
        after[4..],
        ["2048", "kB", "63488", "kB", "0", "kB", "1", "0"],
        "{text}"
    );
    let end = line("optimised", "after the teardown");
    assert_eq!(
        end[4..],
        ["4096", "kB", "61440", "kB", "0", "kB", "2", "0"],
        "{text}"
    );
    assert!(text.contains("direct map "), "{text}");
}

/// `replay --json`: every op, each kernel's observation as data, the
/// comparison, the counters, the findings and the exit status.
#[test]
fn replay_json_has_every_observation_and_the_counters() {
    let t = parse("t.trace", TRACE).unwrap();
    let r = run(&t, &KernelKind::ALL, Quirks::NONE);
    let v: serde_json::Value =
        serde_json::from_str(&render_json("t.trace", &t, Quirks::NONE, &r)).unwrap();
    assert_eq!(v["kernels"], serde_json::json!(["reference", "optimised"]));
    let ops = v["ops"].as_array().unwrap();
    assert_eq!(ops.len(), 3, "two trace ops and the teardown's free");
    let stats = &ops[1];
    assert_eq!(stats["call"], "direct_map_stats()");
    assert_eq!(stats["comparison"]["verdict"], "incomparable");
    let obs = &stats["observations"][1];
    assert_eq!(obs["kernel"], "optimised");
    assert_eq!(obs["kind"], "direct_map");
    assert_eq!(obs["direct_map_level2_splits"], 1);
    assert_eq!(obs["DirectMap4k_kB"], 2048);
    assert_eq!(ops[2]["teardown"], true);
    let c = &v["counters"][1];
    assert_eq!(c["kernel"], "optimised");
    assert_eq!(c["after_teardown"]["direct_map_level2_splits"], 2);
    assert_eq!(
        (v["clean"].clone(), v["exit_status"].clone()),
        (true.into(), 0.into())
    );
}
