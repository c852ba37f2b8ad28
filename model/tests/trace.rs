//! Text traces: printing then parsing gives the same ops, and bad input gives
//! `path:line:col: expected …`.

use packmodel::harness::decode::decode;
use packmodel::harness::op::Op;
use packmodel::harness::rng::Rng;
use packmodel::harness::trace::{Trace, parse};

/// SplitMix64: a seeded stream of test inputs, the same on every machine.

#[test]
fn print_then_parse_is_identity_on_decoded_inputs() {
    let mut rng = Rng::new(0x5eed);
    let mut total_ops = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for i in 0..3000 {
        let len = rng.below(if i % 10 == 0 { 4000 } else { 600 }) as usize;
        let data = rng.bytes(len);
        let input = decode(&data);
        let quirks = if i % 3 == 0 {
            vec!["some-quirk".to_string(), "other".to_string()]
        } else {
            vec![]
        };
        let t = Trace::new(quirks, input.config, input.ops);
        let text = t.print();
        let back = parse("roundtrip.trace", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, t, "\n{text}");
        total_ops += t.ops.len();
        kinds.extend(t.ops.iter().map(packmodel::harness::decode::Kind::of));
    }
    assert!(
        total_ops > 20_000,
        "the generator must produce ops ({total_ops})"
    );
    assert_eq!(
        kinds.len(),
        packmodel::harness::decode::Kind::all().count(),
        "every op kind was generated and round-tripped"
    );
}

#[test]
fn hand_written_names_and_comments_parse_to_canonical_ops() {
    let text = "\n# packmodel trace v1\n\
        quirks: a-b, c\n\
        config: nodes=2 mem=32M dmap=1G   # a comment\n\
        buf = vmalloc_huge(4M, __GFP_ZERO)\n\
        page = vmalloc_to_page(buf + 0x3000)\n\
        page->mapping = NULL\n\
        INIT_LIST_HEAD(&page->lru)\n\
        p = bpf_prog_load(100, align=8, rand=0x10)\n\
        bpf_prog_free(p)\n\
        stale_probe(p, -8)\n\
        vfree(buf)\n";
    let t = parse("x.trace", text).unwrap();
    assert_eq!(t.quirks, vec!["a-b", "c"]);
    assert_eq!(t.config.nodes, 2);
    assert_eq!(t.lines, vec![5, 6, 7, 8, 9, 10, 11, 12]);
    let printed = t.print();
    assert!(
        printed.contains("v0 = vmalloc_huge(4M, __GFP_ZERO)\npg0 = vmalloc_to_page(v0 + 0x3000)\n")
    );
    assert!(printed.contains("stale_probe(prog0, -8)\n"));
    assert_eq!(parse("y.trace", &printed).unwrap().ops, t.ops);
    assert!(matches!(t.ops[5], Op::ProgFree { .. }));
}

fn err(text: &str) -> String {
    parse("bad.trace", &format!("# packmodel trace v1\n{text}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_file_line_column_and_what_was_expected() {
    assert_eq!(
        parse("bad.trace", "v0 = vmalloc(1)\n")
            .unwrap_err()
            .to_string(),
        "bad.trace:1:1: expected `# packmodel trace v1` as the first line"
    );
    assert_eq!(
        err("config: nodes=1 design=linux-6.2"),
        "bad.trace:2:24: expected a design (pack-2m, linux-6.1, execmem), found `linux-6.2`"
    );
    let t = parse(
        "ok.trace",
        "# packmodel trace v1\nconfig: design=linux-6.1 mem=32M\n",
    )
    .unwrap();
    assert_eq!(t.config.design, packmodel::machine::Design::Linux61);
    assert_eq!(t.config.mem_mib, 32);
    assert_eq!(
        err("v0 = vmalloc(4K"),
        "bad.trace:2:16: expected `)`, found the end of the line"
    );
    assert_eq!(
        err("v0 = valloc(4K)"),
        "bad.trace:2:6: expected an operation, found `valloc`"
    );
    assert_eq!(
        err("v0 = vmalloc(4K)\nvread(v0 + 4000, 200)"),
        "bad.trace:3:7: expected an access inside `v0` (4096 bytes), found offset 0xfa0 length 200"
    );
    assert_eq!(
        err("v0 = vmalloc(4K)\nvfree(v0)\nvfree(v0)"),
        "bad.trace:4:7: expected a live vmalloc area, `v0` was freed at line 3"
    );
    assert_eq!(
        err("v0 = vmalloc(4K)\nget_page(v0)"),
        "bad.trace:3:10: expected a page, `v0` is a vmalloc area"
    );
    assert_eq!(
        err("p = bpf_prog_load(10)\nstale_probe(p, 1)"),
        "bad.trace:3:13: expected a freed program, it is still loaded"
    );
    assert_eq!(
        err("v0 = vmalloc(4K)\nvwrite(v0, \"abc\")"),
        "bad.trace:3:12: expected a string of hex bytes (`\"48 89 e5\"`)"
    );
    assert_eq!(
        err("config: nodes=3"),
        "bad.trace:2:15: expected a valid config: nodes must be 1 or 2, not 3"
    );
    assert_eq!(
        err("v0 = vmalloc(4K)\nconfig: nodes=2"),
        "bad.trace:3:1: expected an operation; `config:` must come before the first operation"
    );
    assert_eq!(
        err("x = vfree(v)"),
        "bad.trace:2:11: expected a vmalloc area, `v` is not defined"
    );
    assert_eq!(
        err("v0 = vmalloc(4K)\nx = vfree(v0)"),
        "bad.trace:3:1: expected no `x =`: `vfree` creates nothing"
    );
    assert_eq!(
        err("p = bpf_prog_load(10, align=3)"),
        "bad.trace:2:21: expected `align` of 1, 2, 4 or 8, found 3"
    );
    assert_eq!(
        err("v0 = vmalloc(4K) $"),
        "bad.trace:2:18: expected an operation, found `$`"
    );
}

/// Found by the trace_parser fuzz target: a probe past the end of an 8 MiB
/// program decoded to an offset the parser rejects.
#[test]
fn probe_offsets_past_the_largest_program_stay_printable() {
    use packmodel::harness::decode::Kind;
    use packmodel::harness::op::limits::MAX_PROG_LEN;
    let mut data = vec![1, 0, Kind::ProgLoad.tag()[0], 255, 255];
    data.extend((MAX_PROG_LEN - 1).to_le_bytes());
    data.extend([3, 0xff, 0xff, 0xff, 0xff]);
    data.extend([Kind::ProgProbe.tag()[0], 0, 200, 0xff, 0xff]);
    let input = decode(&data);
    assert!(matches!(input.ops[0], Op::ProgLoad { len, .. } if len == MAX_PROG_LEN));
    assert!(matches!(input.ops[1], Op::ProgProbe { .. }));
    let t = Trace::new(vec![], input.config, input.ops);
    assert_eq!(parse("x", &t.print()).unwrap(), t);
}

/// `expect:` (a regression's verdict) names an oracle and the line of an op,
/// or the end of the run; printing keeps it on the op it named.
#[test]
fn expect_names_an_oracle_and_an_op_line() {
    use packmodel::harness::oracle::Oracle;
    let text = "# packmodel trace v1\nquirks: unset-ro-size\n# a comment\n\
                expect: oops at line 6\nconfig: nodes=1 mem=64M dmap=2M\n\n\
                bpf_prog_load_fail(1)\np = bpf_prog_load(1)\n";
    let t = parse("r.trace", text).unwrap_err();
    assert_eq!(
        t.to_string(),
        "r.trace:4:22: expected the line of an operation, found line 6 (no operation)"
    );
    let t = parse("r.trace", &text.replace("line 6", "line 8")).unwrap();
    let e = t.expect.unwrap();
    assert_eq!((e.oracle, e.op), (Oracle::Oops, Some(1)));
    let printed = t.print();
    assert!(printed.contains("expect: oops at line 7\n"), "{printed}");
    assert_eq!(parse("p.trace", &printed).unwrap().expect, t.expect);
    let end = parse(
        "r.trace",
        &text.replace("oops at line 6", "leak at the end"),
    )
    .unwrap();
    assert_eq!(end.expect.unwrap().op, None);
    assert!(end.print().contains("expect: leak at the end\n"));
    assert_eq!(
        err("expect: oops"),
        "bad.trace:2:13: expected `at`, found the end of the line"
    );
    assert_eq!(
        err("expect: ooops at line 2"),
        "bad.trace:2:9: expected an oracle (bad-page-state, oops, wx, executable-content, \
         alias-coherence, overlap, leak, fresh-page, vmap-space, differential, \
         predictor-flush), found `ooops`"
    );
    assert_eq!(
        err("expect: oops at line 3\nexpect: leak at the end"),
        "bad.trace:3:1: expected one `expect:` line, found a second"
    );
}
