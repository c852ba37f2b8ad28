//! `packmodel bench harness`: how fast the differential harness runs, in
//! process and single-threaded, on the inputs the fuzzer feeds it: the seed
//! corpus, a campaign's inputs (`corpus/bench/`, a sample of a 10-minute
//! run's corpus that `fuzz/corpus.sh bench` regenerates: what the fuzzer
//! spends its time on), and generated inputs of the fuzzer's typical size.
//! Each execution is what the `differential` fuzz target does: decode, boot
//! both kernels, run the ops with every oracle, full sweep and teardown.

use std::time::{Duration, Instant};

use crate::harness::decode::decode;
use crate::harness::rng::Rng;
use crate::harness::run::run;
use crate::harness::trace::Trace;
use crate::kernel::{KernelKind, Quirks};

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HarnessOptions {
    /// Passes over all inputs.
    pub rounds: usize,
    /// Generated inputs besides the corpus.
    pub generated: usize,
    /// Longest generated input: libFuzzer's corpus for `differential` stays
    /// under about 250 bytes (its `lim` after a 10-minute run is 233).
    pub max_len: usize,
    pub seed: u64,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            rounds: 5,
            generated: 200,
            max_len: 240,
            seed: 1,
        }
    }
}

/// One set of inputs' figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub inputs: usize,
    pub execs: u64,
    pub ops: u64,
    pub elapsed: Duration,
    /// Executions that ended with a finding (0 on the fixed kernel).
    pub findings: u64,
    /// Heap allocations made while the set ran, where the caller counts them
    /// (the `packmodel` binary does, with a counting global allocator).
    pub allocations: Option<u64>,
}

impl Figures {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64()
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Ops per execution (an input's length in ops, as decoded).
    pub fn ops_per_exec(&self) -> f64 {
        self.ops as f64 / self.execs as f64
    }

    /// Nanoseconds per op, all the work of an execution spread over its ops.
    pub fn ns_per_op(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops as f64
    }

    /// Heap allocations per execution.
    pub fn allocations_per_exec(&self) -> Option<f64> {
        Some(self.allocations? as f64 / self.execs as f64)
    }

    fn add(self, o: Figures) -> Figures {
        Figures {
            inputs: self.inputs + o.inputs,
            execs: self.execs + o.execs,
            ops: self.ops + o.ops,
            elapsed: self.elapsed + o.elapsed,
            findings: self.findings + o.findings,
            allocations: self.allocations.zip(o.allocations).map(|(a, b)| a + b),
        }
    }
}

/// The input sets, by the name the report gives them.
pub struct Inputs<'a> {
    /// The seed corpus (`corpus/differential/`).
    pub seeds: &'a [Vec<u8>],
    /// A campaign's inputs (`corpus/bench/`).
    pub campaign: &'a [Vec<u8>],
}

/// The report: each input set, and all together.
#[derive(Clone, Debug, PartialEq)]
pub struct HarnessReport {
    pub corpus: Figures,
    pub campaign: Figures,
    pub generated: Figures,
    /// The process's peak resident set (`VmHWM`), where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl HarnessReport {
    pub fn total(&self) -> Figures {
        self.corpus.add(self.campaign).add(self.generated)
    }

    fn sets(&self) -> [(&'static str, Figures); 4] {
        [
            ("seed corpus", self.corpus),
            ("campaign", self.campaign),
            ("generated", self.generated),
            ("all", self.total()),
        ]
    }

    /// One JSON object on one line: `execs_per_sec`, `ops_per_sec`, `inputs`,
    /// `peak_rss_bytes` over all inputs, then each set's figures.
    pub fn to_json(&self) -> String {
        use super::alloc::round;
        #[derive(serde::Serialize)]
        struct Set {
            inputs: usize,
            execs: u64,
            ops: u64,
            execs_per_sec: f64,
            ops_per_sec: f64,
            ops_per_exec: f64,
            ns_per_op: f64,
            allocations_per_exec: Option<f64>,
            findings: u64,
        }
        #[derive(serde::Serialize)]
        struct ReportJson {
            bench: &'static str,
            execs_per_sec: f64,
            ops_per_sec: f64,
            inputs: usize,
            peak_rss_bytes: Option<u64>,
            seed_corpus: Set,
            campaign: Set,
            generated: Set,
        }
        let set = |f: &Figures| Set {
            inputs: f.inputs,
            execs: f.execs,
            ops: f.ops,
            execs_per_sec: round(f.execs_per_sec(), 1),
            ops_per_sec: round(f.ops_per_sec(), 1),
            ops_per_exec: round(f.ops_per_exec(), 2),
            ns_per_op: round(f.ns_per_op(), 0),
            allocations_per_exec: f.allocations_per_exec().map(|a| round(a, 1)),
            findings: f.findings,
        };
        let t = self.total();
        let doc = ReportJson {
            bench: "harness",
            execs_per_sec: round(t.execs_per_sec(), 1),
            ops_per_sec: round(t.ops_per_sec(), 1),
            inputs: t.inputs,
            peak_rss_bytes: self.peak_rss_bytes,
            seed_corpus: set(&self.corpus),
            campaign: set(&self.campaign),
            generated: set(&self.generated),
        };
        serde_json::to_string(&doc).expect("a report serialises")
    }
}

impl std::fmt::Display for HarnessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "differential harness, single-threaded (both kernels, every oracle)"
        )?;
        writeln!(
            f,
            "{:<12} {:>6} {:>8} {:>9} {:>8} {:>10} {:>10} {:>8} {:>12}",
            "inputs",
            "count",
            "execs",
            "ops",
            "ops/exec",
            "execs/s",
            "ops/s",
            "ns/op",
            "allocs/exec"
        )?;
        for (name, x) in self.sets() {
            if x.execs == 0 {
                writeln!(f, "{name:<12} {:>6} (none)", x.inputs)?;
                continue;
            }
            let allocs = match x.allocations_per_exec() {
                Some(a) => format!("{a:.0}"),
                None => "–".to_string(),
            };
            writeln!(
                f,
                "{:<12} {:>6} {:>8} {:>9} {:>8.1} {:>10.0} {:>10.0} {:>8.0} {:>12}",
                name,
                x.inputs,
                x.execs,
                x.ops,
                x.ops_per_exec(),
                x.execs_per_sec(),
                x.ops_per_sec(),
                x.ns_per_op(),
                allocs
            )?;
        }
        match self.peak_rss_bytes {
            Some(b) => writeln!(f, "peak RSS {:.1} MiB", b as f64 / (1 << 20) as f64),
            None => writeln!(f, "peak RSS: not reported by this OS"),
        }
    }
}

/// Inputs like the fuzzer's: random bytes, 2 to `max_len` long.
pub fn generated_inputs(opts: &HarnessOptions) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(opts.seed);
    (0..opts.generated)
        .map(|_| {
            let len = 2 + rng.below(opts.max_len.max(2) as u64 - 1) as usize;
            let mut b = rng.bytes(len);
            b[0] = crate::harness::decode::FORMAT_VERSION;
            b
        })
        .collect()
}

/// Runs each set of inputs and the generated ones `opts.rounds` times.
/// `allocations`, where given, reads a count of the heap allocations the
/// process has made so far.
pub fn bench(
    inputs: &Inputs,
    opts: &HarnessOptions,
    allocations: Option<&dyn Fn() -> u64>,
) -> HarnessReport {
    let generated = generated_inputs(opts);
    HarnessReport {
        corpus: figures(inputs.seeds, opts.rounds, allocations),
        campaign: figures(inputs.campaign, opts.rounds, allocations),
        generated: figures(&generated, opts.rounds, allocations),
        peak_rss_bytes: peak_rss_bytes(),
    }
}

fn figures(inputs: &[Vec<u8>], rounds: usize, allocations: Option<&dyn Fn() -> u64>) -> Figures {
    // Decoding is part of an execution, as in the fuzz target.
    let mut f = Figures {
        inputs: inputs.len(),
        ..Figures::default()
    };
    let before = allocations.map(|a| a());
    let start = Instant::now();
    for _ in 0..rounds {
        for data in inputs {
            let input = decode(data);
            f.ops += input.ops.len() as u64;
            let t = Trace::new(vec![], input.config, input.ops);
            let r = run(
                &t,
                &[KernelKind::Reference, KernelKind::Optimised],
                Quirks::NONE,
            );
            f.findings += u64::from(!r.is_clean());
            f.execs += 1;
        }
    }
    f.elapsed = start.elapsed();
    f.allocations = allocations.zip(before).map(|(a, b)| a() - b);
    f
}

/// `VmHWM` of `/proc/self/status`, in bytes (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_execution_and_finds_nothing_on_the_fixed_kernel() {
        let opts = HarnessOptions {
            rounds: 2,
            generated: 10,
            ..HarnessOptions::default()
        };
        let seeds = vec![vec![1, 0], vec![1, 0, 0]];
        let campaign = vec![vec![1, 0, 0, 0]];
        // A counter that moves by 7 per read: each set sees 7 allocations.
        let reads = std::cell::Cell::new(0);
        let count = || {
            reads.set(reads.get() + 7);
            reads.get()
        };
        let inputs = Inputs {
            seeds: &seeds,
            campaign: &campaign,
        };
        let r = bench(&inputs, &opts, Some(&count));
        assert_eq!(r.corpus.execs, 4);
        assert_eq!(r.campaign.execs, 2);
        assert_eq!(r.generated.execs, 20);
        assert_eq!(r.total().findings, 0);
        assert_eq!(r.campaign.allocations, Some(7));
        assert_eq!(r.total().allocations, Some(21));
        assert_eq!(r.corpus.allocations_per_exec(), Some(7.0 / 4.0));
        assert_eq!(r.total().ops_per_exec(), r.total().ops as f64 / 26.0);
        let json = r.to_json();
        for key in [
            "execs_per_sec",
            "ops_per_sec",
            "ns_per_op",
            "\"allocations_per_exec\":1.8",
            "\"inputs\":13",
            "peak_rss_bytes",
            "\"campaign\":{\"inputs\":1,",
        ] {
            assert!(json.contains(key), "{json}");
        }
        let shown = r.to_string();
        assert!(shown.contains("allocs/exec"), "{shown}");
        let uncounted = bench(&inputs, &opts, None);
        assert!(
            uncounted
                .to_json()
                .contains("\"allocations_per_exec\":null")
        );
    }

    #[test]
    fn generated_inputs_are_seeded() {
        let o = HarnessOptions::default();
        assert_eq!(generated_inputs(&o), generated_inputs(&o));
        assert!(generated_inputs(&o).iter().all(|b| b.len() <= o.max_len));
    }
}
