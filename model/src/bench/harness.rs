//! `packmodel bench harness`: how fast the differential harness runs, in
//! process and single-threaded, on the inputs the fuzzer feeds it — the seed
//! corpus, and generated inputs of the fuzzer's typical size. Each execution is
//! what the `differential` fuzz target does: decode, boot both kernels, run the
//! ops with every oracle, full sweep and teardown.

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
}

impl Figures {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64()
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn add(self, o: Figures) -> Figures {
        Figures {
            inputs: self.inputs + o.inputs,
            execs: self.execs + o.execs,
            ops: self.ops + o.ops,
            elapsed: self.elapsed + o.elapsed,
            findings: self.findings + o.findings,
        }
    }
}

/// The report: the seed corpus, the generated inputs, and both together.
#[derive(Clone, Debug, PartialEq)]
pub struct HarnessReport {
    pub corpus: Figures,
    pub generated: Figures,
    /// The process's peak resident set (`VmHWM`), where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl HarnessReport {
    pub fn total(&self) -> Figures {
        self.corpus.add(self.generated)
    }

    /// One JSON object on one line: `execs_per_sec`, `ops_per_sec`, `inputs`,
    /// `peak_rss_bytes` over all inputs, then the same per set.
    pub fn to_json(&self) -> String {
        use super::alloc::round;
        #[derive(serde::Serialize)]
        struct Set {
            inputs: usize,
            execs: u64,
            ops: u64,
            execs_per_sec: f64,
            ops_per_sec: f64,
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
            generated: Set,
        }
        let set = |f: &Figures| Set {
            inputs: f.inputs,
            execs: f.execs,
            ops: f.ops,
            execs_per_sec: round(f.execs_per_sec(), 1),
            ops_per_sec: round(f.ops_per_sec(), 1),
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
            "{:<12} {:>6} {:>8} {:>9} {:>10} {:>12}",
            "inputs", "count", "execs", "ops", "execs/s", "ops/s"
        )?;
        for (name, x) in [
            ("seed corpus", self.corpus),
            ("generated", self.generated),
            ("all", self.total()),
        ] {
            writeln!(
                f,
                "{:<12} {:>6} {:>8} {:>9} {:>10.0} {:>12.0}",
                name,
                x.inputs,
                x.execs,
                x.ops,
                x.execs_per_sec(),
                x.ops_per_sec()
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

/// Runs `corpus` and the generated inputs `opts.rounds` times each.
pub fn bench(corpus: &[Vec<u8>], opts: &HarnessOptions) -> HarnessReport {
    let generated = generated_inputs(opts);
    HarnessReport {
        corpus: figures(corpus, opts.rounds),
        generated: figures(&generated, opts.rounds),
        peak_rss_bytes: peak_rss_bytes(),
    }
}

fn figures(inputs: &[Vec<u8>], rounds: usize) -> Figures {
    // Decoding is part of an execution, as in the fuzz target.
    let mut f = Figures {
        inputs: inputs.len(),
        ..Figures::default()
    };
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
        let corpus = vec![vec![1, 0], vec![1, 0, 0]];
        let r = bench(&corpus, &opts);
        assert_eq!(r.corpus.execs, 4);
        assert_eq!(r.generated.execs, 20);
        assert_eq!(r.total().findings, 0);
        let json = r.to_json();
        for key in [
            "execs_per_sec",
            "ops_per_sec",
            "\"inputs\":12",
            "peak_rss_bytes",
        ] {
            assert!(json.contains(key), "{json}");
        }
    }

    #[test]
    fn generated_inputs_are_seeded() {
        let o = HarnessOptions::default();
        assert_eq!(generated_inputs(&o), generated_inputs(&o));
        assert!(generated_inputs(&o).iter().all(|b| b.len() <= o.max_len));
    }
}
