//! `packmodel frag` on a small fixed workload, snapshotted: a change to the
//! model's CPA, direct map, buddy or pack mechanics that moves the
//! fragmentation figures shows up in review as a diff of this table.

use packmodel::bench::frag::{FragOptions, frag, render};

#[test]
fn frag_500_programs() {
    let opts = FragOptions {
        programs: 500,
        seed: 1,
        samples: 20,
        mem_mib: 128,
    };
    let results = frag(&opts);
    assert_eq!(results, frag(&opts), "frag is deterministic");
    let by = |name: &str| results.iter().find(|r| r.name == name).unwrap();
    for r in &results {
        assert_eq!(r.failed_loads, 0, "{}: loads failed", r.name);
        // Splits are never merged back.
        assert_eq!(r.direct_map_level2_splits, r.peak_direct_map_level2_splits);
        assert_eq!(
            r.directmap_4k_kb + r.directmap_2m_kb,
            u64::from(packmodel::bench::frag::MACHINE.mem_mib) * 1024,
            "{}: the direct map covers all memory",
            r.name
        );
        assert_eq!(r.directmap_4k_kb, r.direct_map_level2_splits * 2048);
    }
    assert!(by("pack-2m").direct_map_level2_splits < by("reference").direct_map_level2_splits);
    assert!(by("pack-4k").cpa_calls < by("reference").cpa_calls);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("frag-500", render(&opts, &results)));
}
