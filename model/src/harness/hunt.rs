//! `packmodel hunt`: a stable search loop on the fuzz generator — random inputs
//! from a seeded stream, optionally mutations of corpus inputs — run through the
//! differential harness until an oracle fires; then the input is shrunk while
//! the same oracle still fires. Everything but the time budget is a function of
//! the seed.

use std::time::Instant;

use super::decode::{FORMAT_VERSION, decode};
use super::oracle::{Finding, Oracle};
use super::rng::Rng;
use super::run::run;
use super::shrink::shrink;
use super::trace::Trace;
use crate::kernel::{KernelKind, Quirks};

/// What to hunt with.
#[derive(Clone, Debug)]
pub struct HuntOptions {
    pub quirks: Quirks,
    pub seed: u64,
    /// Wall-clock budget of the search (not of the shrinking).
    pub seconds: f64,
    /// Inputs to mutate (half of the executions), if any.
    pub corpus: Vec<Vec<u8>>,
    /// Only this oracle counts (anywhere in a run, not only first).
    pub oracle: Option<Oracle>,
}

/// A bug found and shrunk.
#[derive(Clone, Debug)]
pub struct Found {
    /// Executions of the search, including the one that found it.
    pub execs: u64,
    /// Seconds from the start to the finding (before shrinking).
    pub seconds: f64,
    /// The input as found.
    pub input: Vec<u8>,
    /// The oracle that fired first.
    pub oracle: Oracle,
    pub kernel: &'static str,
    /// The shrunk trace, and how many candidates the shrinking ran.
    pub shrunk: Trace,
    pub shrink_runs: usize,
}

fn trace_of(data: &[u8], quirks: Quirks) -> Trace {
    let input = decode(data);
    let names = quirks.names().iter().map(|s| s.to_string()).collect();
    Trace::new(names, input.config, input.ops)
}

/// The first finding of `t` on both kernels (of `oracle`, if given).
pub fn first_finding(t: &Trace, quirks: Quirks, oracle: Option<Oracle>) -> Option<Finding> {
    run(t, &[KernelKind::Reference, KernelKind::Optimised], quirks)
        .findings
        .into_iter()
        .find(|f| oracle.is_none_or(|o| f.oracle == o))
}

/// A fresh input: the current format, the default machine half of the time,
/// swarm testing (a random mask of op kinds switched off) half of the time,
/// and often many zero bytes, where arguments take the decoder's defaults as
/// they do in libFuzzer's short inputs.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(400) as usize;
    let zeros = rng.below(4);
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            if rng.below(4) < zeros {
                0
            } else {
                rng.next_u64() as u8
            }
        })
        .collect();
    v[0] = FORMAT_VERSION;
    if rng.below(2) == 0 {
        v[1] &= super::decode::SWARM_BIT;
    }
    v
}

/// A mutation of `base`: a few byte flips, insertions, deletions or
/// duplications.
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len().max(1) as u64;
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(n) as usize;
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(n) as usize;
                let n_add = 1 + rng.below(16) as usize;
                let add = rng.bytes(n_add);
                v.splice(i.min(v.len())..i.min(v.len()), add);
            }
            2 if v.len() > 8 => {
                let i = 4 + rng.below(n - 4) as usize;
                let end = (i + 1 + rng.below(16) as usize).min(v.len());
                v.drain(i..end);
            }
            _ if v.len() > 4 => {
                let i = 4 + rng.below(n - 4) as usize;
                let end = (i + 1 + rng.below(32) as usize).min(v.len());
                let copy = v[i..end].to_vec();
                v.splice(end..end, copy);
            }
            _ => v.extend(rng.bytes(8)),
        }
    }
    v
}

/// Searches until an oracle fires or the time is up; `progress(execs,
/// seconds)` is called after every execution.
pub fn hunt(opts: &HuntOptions, progress: &mut dyn FnMut(u64, f64)) -> Option<Found> {
    let mut rng = Rng::new(opts.seed);
    let start = Instant::now();
    let mut execs = 0u64;
    loop {
        let secs = start.elapsed().as_secs_f64();
        if secs >= opts.seconds {
            return None;
        }
        let input = if !opts.corpus.is_empty() && rng.below(2) == 0 {
            let base = &opts.corpus[rng.below(opts.corpus.len() as u64) as usize];
            mutate(&mut rng, base)
        } else {
            generate(&mut rng)
        };
        execs += 1;
        let t = trace_of(&input, opts.quirks);
        let finding = first_finding(&t, opts.quirks, opts.oracle);
        progress(execs, start.elapsed().as_secs_f64());
        let Some(f) = finding else { continue };
        let seconds = start.elapsed().as_secs_f64();
        let (oracle, kernel) = (f.oracle, f.kernel);
        let mut fires = |c: &Trace| {
            first_finding(c, opts.quirks, opts.oracle)
                .is_some_and(|g| g.oracle == oracle && g.kernel == kernel)
        };
        let (shrunk, shrink_runs) = shrink(&t, &mut fires);
        return Some(Found {
            execs,
            seconds,
            input,
            oracle,
            kernel,
            shrunk,
            shrink_runs,
        });
    }
}
