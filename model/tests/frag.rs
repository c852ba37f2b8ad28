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

/// The workload a real kernel runs (`frag --on linux`) is the model's: the
/// same ops, `direct_map_stats()` exactly where the model's series samples,
/// and a trace that prints and parses back as itself.
#[test]
fn the_workload_trace_samples_where_the_model_does() {
    use packmodel::bench::frag::workload_trace;
    use packmodel::harness::op::Op;
    let opts = FragOptions {
        programs: 300,
        seed: 3,
        samples: 10,
        mem_mib: 128,
    };
    let (t, samples) = workload_trace(&opts);
    let linux61 = frag(&opts)
        .into_iter()
        .find(|r| r.name == "linux-6.1")
        .unwrap();
    let steps: Vec<usize> = samples.iter().map(|s| s.0).collect();
    let model: Vec<usize> = linux61.series.iter().map(|s| s.0).collect();
    assert_eq!(steps, model);
    for &(step, op) in &samples {
        assert_eq!(t.ops[op], Op::DirectMapStats, "sample after step {step}");
        let workload_ops = t.ops[..op]
            .iter()
            .filter(|o| **o != Op::DirectMapStats)
            .count();
        assert_eq!(workload_ops, step);
    }
    let loads = t
        .ops
        .iter()
        .filter(|o| matches!(o, Op::ProgLoad { .. }))
        .count();
    assert_eq!(loads, 300);
    let back = packmodel::harness::trace::parse("frag.trace", &t.print()).unwrap();
    assert_eq!(back.ops, t.ops);
}

/// The packs the `linux-6.1` configuration makes, and the 2 MiB blocks each
/// one's frames lie in: on a fresh machine the first pack's 512 frames come
/// from one free block.
#[test]
fn the_first_linux_6_1_pack_lies_in_one_block() {
    let opts = FragOptions {
        programs: 500,
        seed: 1,
        samples: 20,
        mem_mib: 128,
    };
    let spans = packmodel::bench::frag::pack_spans(&opts);
    assert_eq!(spans.first(), Some(&(0, 1)), "{spans:?}");
}
