//! The `packmodel` command line. Exit status: 0 clean, 1 a bug was found, 2 bad
//! usage or unreadable/invalid input.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use packmodel::harness::decode::decode;
use packmodel::harness::encode::encode;
use packmodel::harness::report::{exit_code, render};
use packmodel::harness::run::run;
use packmodel::harness::trace::{self, Expect, Trace};
use packmodel::kernel::{KernelKind, Quirks};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// The system allocator, counting: `bench harness` reports heap allocations
/// per execution. (A relaxed atomic add per call; the fuzz targets do not
/// link this binary.)
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// `print!` that a closed pipe does not stop: `packmodel hunt … | head` still
/// writes its reproducer, and nothing panics on `EPIPE`.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `println!` that a closed pipe does not stop (see [`out!`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "packmodel",
    version,
    about = "Differential fuzzing and regression suite for bpf_prog_pack on huge-page vmalloc",
    after_help = "The optimised kernel's designs: pack-2m (huge packs, the default), linux-6.1 \
(x86 as 6.1 ships it: packs of order-0 pages on PTEs) and execmem (2026: packs cut from \
the ROX cache of mm/execmem.c, set_memory_rox collapsing split PMDs), chosen by a trace's \
`config: design=`, `replay --design`, or a fuzz input's config byte.\n\
A real kernel: `replay --on linux` and `frag --on linux` (linux/setup.sh prepares it)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a text trace on both kernels (or one) and print each op, what each
    /// kernel showed, and the verdict; with `--on linux`, on the model and a
    /// real kernel under QEMU.
    Replay {
        /// The trace (`*.trace`); several with `--on linux` (one boot).
        #[arg(required = true, num_args = 1..)]
        file: Vec<PathBuf>,
        /// Also run the traces on a real kernel under QEMU and compare it
        /// with the model's fixed kernel: `linux` (Debian's 6.1 as
        /// `linux/setup.sh` prepares it) or `linux=VMLINUX` (an
        /// `initramfs.cpio.gz` built for it beside it: `linux/setup.sh --tree`).
        #[arg(long, value_name = "linux[=VMLINUX]")]
        on: Option<String>,
        /// The guest's time limit, in seconds, for the whole boot.
        #[arg(long, default_value_t = 120)]
        guest_timeout: u64,
        /// With `--on linux`: write the guest's answers to this file (a
        /// recording the tests replay without a guest).
        #[arg(long)]
        record: Option<PathBuf>,
        /// With `--on linux`: break the model's kernel on purpose (test
        /// builds only: `--features sabotage`), to see the comparison catch it.
        #[cfg(feature = "sabotage")]
        #[arg(long, hide = true, value_parser = sabotage_name)]
        sabotage: Option<packmodel::kernel::optimised::Sabotage>,
        /// Extra kernel command-line words for the guest.
        #[arg(long, default_value = "", hide = true)]
        guest_append: String,
        /// Run one kernel only.
        #[arg(long, value_parser = kernel_name)]
        kernel: Option<KernelKind>,
        /// The optimised kernel's design, overriding the trace's `config:`:
        /// `pack-2m` (huge packs, the default), `linux-6.1` (x86 as 6.1
        /// ships: PTE-mapped packs of order-0 pages) or `execmem` (packs
        /// from the ROX cache).
        #[arg(long, value_parser = design_name)]
        design: Option<packmodel::machine::Design>,
        /// Quirks of the optimised kernel (comma-separated; overrides the
        /// trace's `quirks:` line; `''` for none).
        #[arg(long)]
        quirks: Option<String>,
        /// Print the run as JSON (every op's observations, the direct-map
        /// counters, the findings) instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Print fuzz input bytes as a trace.
    Fmt {
        /// A fuzz input (e.g. a crash from `fuzz/artifacts/differential/`).
        file: PathBuf,
        /// Quirks to name in the trace's `quirks:` line.
        #[arg(long, env = "PACKMODEL_QUIRKS", default_value = "")]
        quirks: String,
    },
    /// Search for a bug with random and mutated inputs, shrink it, and write
    /// the reproducer.
    Hunt {
        /// Quirks of the optimised kernel (comma-separated).
        #[arg(long, env = "PACKMODEL_QUIRKS", default_value = "")]
        quirks: String,
        /// Time budget of the search.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Seed of the search (the same seed searches the same inputs).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also mutate the inputs in this corpus directory (`*.bin`).
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Only count this oracle (bad-page-state, oops, wx, executable-content,
        /// alias-coherence, overlap, leak, differential).
        #[arg(long, value_parser = oracle_name)]
        oracle: Option<packmodel::harness::oracle::Oracle>,
        /// Where to write the shrunk trace.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Overwrite `--out` if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List the quirks: the historical bugs the optimised kernel can be put
    /// back into.
    Quirks,
    /// Turn a trace into fuzz input bytes.
    Encode {
        /// The trace.
        file: PathBuf,
        /// Where to write the bytes.
        #[arg(long, short)]
        out: PathBuf,
        /// Overwrite `--out` if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Direct-map fragmentation of one BPF workload on four configurations:
    /// `reference` (a module_alloc per program), `pack-4k`, `linux-6.1` and
    /// `pack-2m`; with `--on linux`, also on a real kernel.
    Frag {
        /// Programs loaded over the run.
        #[arg(long, default_value_t = 10_000)]
        programs: usize,
        /// Seed of the workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object keyed by configuration.
        #[arg(long)]
        json: bool,
        /// Also write a plot of DirectMap4k over the run (SVG).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Overwrite `--svg` if it exists.
        #[arg(long)]
        force: bool,
        /// The model machine's memory in MiB (16 to 4096; with `--on`, the
        /// guest's too).
        #[arg(long, default_value_t = 128)]
        mem: u32,
        /// Also run the workload on a real kernel under QEMU (`linux` or
        /// `linux=VMLINUX`, as for `replay --on`) and print its counters, as
        /// deltas over the workload, beside the model's `linux-6.1`.
        #[arg(long, value_name = "linux[=VMLINUX]")]
        on: Option<String>,
        /// The guest's time limit, in seconds, with `--on`.
        #[arg(long, default_value_t = 600)]
        guest_timeout: u64,
    },
    /// Measure: `bench alloc` (the lock-free chunk allocator against the
    /// kernel's mutex + first-fit design).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The lock-free chunk allocator against a kernel-style baseline (one
    /// mutex, first-fit `bitmap_find_next_zero_area`) on the `mixed`
    /// (1 and 2 threads), `near-full` and `packing` workloads.
    Alloc {
        /// Print one JSON object (`cases`: name, threads, lockfree_ops_per_sec,
        /// baseline_ops_per_sec, ratio; lockfree_packs and baseline_packs for
        /// `packing`).
        #[arg(long)]
        json: bool,
        /// A run about a hundred times shorter (for a quick look; the figures
        /// are noisier).
        #[arg(long)]
        quick: bool,
        /// Seed of the workloads (the same seed makes the same programs).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Executions per second of the differential harness, in process and
    /// single-threaded, on the seed corpus, a campaign's inputs and generated
    /// inputs of the fuzzer's typical size.
    Harness {
        /// Print one JSON object (execs_per_sec, ops_per_sec, inputs,
        /// peak_rss_bytes, and the same per input set).
        #[arg(long)]
        json: bool,
        /// The seed corpus (fuzz input files).
        #[arg(long, default_value = "corpus/differential")]
        corpus: PathBuf,
        /// A campaign's inputs: a sample of a 10-minute run's corpus
        /// (`fuzz/corpus.sh bench` writes it).
        #[arg(long, default_value = "corpus/bench")]
        campaign: PathBuf,
        /// Passes over all inputs.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Generated inputs besides the corpus.
        #[arg(long, default_value_t = 200)]
        generated: usize,
        /// Seed of the generated inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn oracle_name(s: &str) -> Result<packmodel::harness::oracle::Oracle, String> {
    use packmodel::harness::oracle::Oracle;
    Oracle::from_slug(s).ok_or_else(|| {
        let names: Vec<_> = Oracle::ALL.iter().map(|o| o.slug()).collect();
        format!("expected one of: {}", names.join(", "))
    })
}

#[cfg(feature = "sabotage")]
fn sabotage_name(s: &str) -> Result<packmodel::kernel::optimised::Sabotage, String> {
    use packmodel::kernel::optimised::Sabotage;
    Sabotage::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Sabotage::ALL.iter().map(|x| x.name()).collect();
        format!("expected one of: {}", names.join(", "))
    })
}

fn design_name(s: &str) -> Result<packmodel::machine::Design, String> {
    use packmodel::machine::Design;
    Design::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Design::ALL.iter().map(|d| d.name()).collect();
        format!("expected one of: {}", names.join(", "))
    })
}

fn kernel_name(s: &str) -> Result<KernelKind, String> {
    KernelKind::from_name(s).ok_or_else(|| {
        let names: Vec<_> = KernelKind::ALL.iter().map(|k| k.name()).collect();
        format!("expected one of: {}", names.join(", "))
    })
}

/// A failure that ends the command with status 2.
struct Usage(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Replay {
            file,
            on: Some(on),
            guest_timeout,
            guest_append,
            record,
            kernel,
            design,
            quirks,
            json,
            #[cfg(feature = "sabotage")]
            sabotage,
        } => {
            #[cfg(not(feature = "sabotage"))]
            let sabotage = None;
            if kernel.is_some() || design.is_some() || quirks.is_some() || json {
                Err(Usage(
                    "--on linux compares with the model's fixed kernel in the linux-6.1 design: no --kernel, --design, --quirks or --json".into(),
                ))
            } else {
                cmd_replay_linux(
                    &file,
                    &on,
                    guest_timeout,
                    guest_append,
                    record.as_deref(),
                    sabotage,
                )
            }
        }
        Cmd::Replay {
            file,
            kernel,
            design,
            quirks,
            json,
            ..
        } => match &file[..] {
            [one] => cmd_replay(one, kernel, design, quirks.as_deref(), json),
            _ => Err(Usage(
                "replay takes one trace (several only with --on linux)".into(),
            )),
        },
        Cmd::Fmt { file, quirks } => cmd_fmt(&file, &quirks),
        Cmd::Encode { file, out, force } => cmd_encode(&file, &out, force),
        Cmd::Hunt {
            quirks,
            seconds,
            seed,
            corpus,
            oracle,
            out,
            force,
        } => cmd_hunt(
            &quirks,
            seconds,
            seed,
            corpus.as_deref(),
            oracle,
            out.as_deref(),
            force,
        ),
        Cmd::Bench {
            what: BenchCmd::Alloc { json, quick, seed },
        } => {
            use packmodel::bench::alloc::{AllocOptions, run};
            let mut opts = if quick {
                AllocOptions::quick()
            } else {
                AllocOptions::default()
            };
            if let Some(seed) = seed {
                opts.seed = seed;
            }
            let report = run(&opts);
            if json {
                outln!("{}", report.to_json());
            } else {
                out!("{report}");
            }
            Ok(0)
        }
        Cmd::Bench {
            what:
                BenchCmd::Harness {
                    json,
                    corpus,
                    campaign,
                    rounds,
                    generated,
                    seed,
                },
        } => cmd_bench_harness(json, &corpus, &campaign, rounds, generated, seed),
        Cmd::Frag {
            programs,
            seed,
            json,
            svg,
            force,
            mem,
            on,
            guest_timeout,
        } => match on {
            Some(on) => cmd_frag_linux(
                programs,
                seed,
                mem,
                &on,
                guest_timeout,
                svg.as_deref(),
                force,
            ),
            None => cmd_frag(programs, seed, mem, json, svg.as_deref(), force),
        },
        Cmd::Quirks => {
            out!("{}", quirks_table());
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Usage(msg)) => {
            eprintln!("packmodel: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Reads a text file; errors name the file (and line and column for bad UTF-8).
fn read_text(path: &Path) -> Result<String, Usage> {
    let bytes =
        std::fs::read(path).map_err(|e| Usage(format!("{}: cannot read: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        Usage(format!(
            "{}:{line}:{col}: expected UTF-8 text",
            path.display()
        ))
    })
}

fn load_trace(path: &Path) -> Result<Trace, Usage> {
    let text = read_text(path)?;
    trace::parse(&path.display().to_string(), &text).map_err(|e| Usage(e.to_string()))
}

fn cmd_replay(
    path: &Path,
    kernel: Option<KernelKind>,
    design: Option<packmodel::machine::Design>,
    quirks: Option<&str>,
    json: bool,
) -> Result<u8, Usage> {
    let mut t = load_trace(path)?;
    if let Some(d) = design {
        t.config.design = d;
    }
    let quirks = match quirks {
        Some(list) => Quirks::parse(list).map_err(|e| Usage(format!("--quirks: {e}")))?,
        None => Quirks::from_names(&t.quirks)
            .map_err(|e| Usage(format!("{}: quirks: {e}", path.display())))?,
    };
    let kinds = match kernel {
        Some(k) => vec![k],
        None => vec![KernelKind::Reference, KernelKind::Optimised],
    };
    let r = run(&t, &kinds, quirks);
    let name = path.display().to_string();
    if json {
        outln!(
            "{}",
            packmodel::harness::json::render_json(&name, &t, quirks, &r)
        );
    } else {
        out!("{}", render(&name, &t, quirks, &r));
    }
    Ok(exit_code(&r))
}

/// `replay --on linux[=VMLINUX] FILE…`: every trace parsed first (a bad one
/// is status 2 before any boot), one boot for all, then each trace's replay
/// table with the `linux` column.
fn cmd_replay_linux(
    paths: &[PathBuf],
    on: &str,
    timeout: u64,
    append: String,
    record: Option<&Path>,
    sabotage: Option<packmodel::kernel::optimised::Sabotage>,
) -> Result<u8, Usage> {
    use packmodel::guest::{recording, run_traces};
    use packmodel::harness::run::run_with_linux;
    let mut cfg = guest_config(on, timeout)?;
    cfg.append = append;
    let mut traces = Vec::new();
    let mut texts = Vec::new();
    for p in paths {
        let t = load_trace(p)?;
        texts.push((p.display().to_string(), read_text(p)?));
        traces.push(t);
    }
    let guest = run_traces(&cfg, &texts).map_err(|e| Usage(e.to_string()))?;
    if let Some(out) = record {
        let names: Vec<String> = texts.iter().map(|(n, _)| n.clone()).collect();
        std::fs::write(out, recording(&names, &guest))
            .map_err(|e| Usage(format!("{}: cannot write: {e}", out.display())))?;
    }
    let mut code = 0;
    for ((name, _), (t, got)) in texts.iter().zip(traces.iter().zip(guest.traces)) {
        let steps = got.map_err(|e| Usage(format!("{name}: the guest agent stopped: {e}")))?;
        let r = match sabotage {
            None => run_with_linux(t, steps),
            #[cfg(feature = "sabotage")]
            Some(s) => {
                let cfg = packmodel::machine::MachineConfig {
                    design: packmodel::machine::Design::Linux61,
                    ..t.config
                };
                let mut k = packmodel::kernel::optimised::Optimised::new(cfg, Quirks::NONE);
                k.sabotage(s);
                packmodel::harness::run::run_on_with_linux(t, Box::new(k), steps)
            }
            #[cfg(not(feature = "sabotage"))]
            Some(_) => unreachable!("no sabotage without the feature"),
        };
        out!(
            "{}",
            render(name, t, Quirks::default(), &r).replacen(
                " on optimised (",
                &format!(" on optimised and linux {} (", guest.release),
                1
            )
        );
        outln!();
        code = code.max(exit_code(&r));
    }
    Ok(code)
}

/// `frag`'s options, checked.
fn frag_options(
    programs: usize,
    seed: u64,
    mem: u32,
) -> Result<packmodel::bench::frag::FragOptions, Usage> {
    use packmodel::bench::frag::{FragOptions, machine};
    if programs == 0 {
        return Err(Usage("--programs: expected at least 1".to_string()));
    }
    machine(mem)
        .validate()
        .map_err(|e| Usage(format!("--mem: {e}")))?;
    Ok(FragOptions {
        programs,
        seed,
        mem_mib: mem,
        ..FragOptions::default()
    })
}

/// The guest `--on linux[=VMLINUX]` names, with a time limit.
fn guest_config(on: &str, timeout: u64) -> Result<packmodel::guest::GuestConfig, Usage> {
    use packmodel::guest::GuestConfig;
    let mut cfg = match on.split_once('=') {
        None if on == "linux" => GuestConfig::in_build_dir(&default_guest_dir()),
        Some(("linux", vmlinux)) => {
            let v = PathBuf::from(vmlinux);
            let dir = v.parent().unwrap_or(Path::new(".")).to_path_buf();
            GuestConfig {
                kernel: v,
                ..GuestConfig::in_build_dir(&dir)
            }
        }
        _ => {
            return Err(Usage(format!(
                "--on: expected linux or linux=VMLINUX, not {on}"
            )));
        }
    };
    cfg.timeout = std::time::Duration::from_secs(timeout);
    Ok(cfg)
}

/// `frag --on linux`: the workload as a trace on a real kernel, its
/// `/proc/vmstat` and `/proc/meminfo` counters before, along and after it,
/// beside the model's prediction for the `linux-6.1` design.
fn cmd_frag_linux(
    programs: usize,
    seed: u64,
    mem: u32,
    on: &str,
    timeout: u64,
    svg: Option<&Path>,
    force: bool,
) -> Result<u8, Usage> {
    use packmodel::bench::frag::{frag, guest_result, svg as plot, workload_trace};
    use packmodel::guest::run_traces;
    use packmodel::harness::ground::{GuestDirectMap, GuestValue};
    use packmodel::harness::op::Op;
    let opts = frag_options(programs, seed, mem)?;
    let mut cfg = guest_config(on, timeout)?;
    cfg.mem_mib = mem;
    let file = svg.map(|p| create(p, force)).transpose()?;
    let (t, samples) = workload_trace(&opts);
    let guest = run_traces(&cfg, &[("frag workload".to_string(), t.print())])
        .map_err(|e| Usage(e.to_string()))?;
    let steps = (guest.traces.into_iter().next())
        .expect("one trace")
        .map_err(|e| Usage(format!("the guest agent stopped: {e}")))?;
    let counters = |i: usize| -> Result<GuestDirectMap, Usage> {
        match steps.get(i).map(|s| &s.value) {
            Some(GuestValue::DirectMap(d)) => Ok(*d),
            other => Err(Usage(format!(
                "the guest's op {i} gave {other:?}, not direct_map_stats()"
            ))),
        }
    };
    let before = counters(0)?;
    let real: Vec<(usize, GuestDirectMap)> = (samples.iter())
        .map(|&(step, op)| counters(op).map(|d| (step, d)))
        .collect::<Result<_, _>>()?;
    let after = real.last().expect("the last sample").1;
    let failed = (steps[..t.ops.len()].iter())
        .filter(|s| matches!(s.value, GuestValue::Err(_)))
        .count();
    let mut model = frag(&opts);
    let m = (model.iter())
        .find(|r| r.name == "linux-6.1")
        .expect("a linux-6.1 configuration")
        .clone();
    let d = |a: u64, b: u64| b as i64 - a as i64;
    outln!(
        "frag --on linux: {programs} programs (seed {seed}), {} ops, {mem} MiB guest and model",
        t.ops.len()
    );
    outln!(
        "{:36}{:>12}{:>12}{:>16}{:>8}",
        "",
        "l2 splits",
        "l3 splits",
        "DirectMap4k",
        "failed"
    );
    outln!(
        "{:36}{:>12}{:>12}{:>13} kB{:>8}",
        format!("linux {} (deltas)", guest.release),
        format!("{:+}", d(before.level2_splits, after.level2_splits)),
        format!("{:+}", d(before.level3_splits, after.level3_splits)),
        format!("{:+}", d(before.directmap_4k_kb, after.directmap_4k_kb)),
        failed
    );
    outln!(
        "{:36}{:>12}{:>12}{:>13} kB{:>8}",
        "model linux-6.1",
        m.direct_map_level2_splits,
        0,
        m.directmap_4k_kb,
        m.failed_loads
    );
    let real_splits = d(before.level2_splits, after.level2_splits);
    outln!(
        "predicted / real level-2 splits: {} / {real_splits}",
        m.direct_map_level2_splits
    );
    // The packs each side made: by the program whose load made it, and the
    // 2 MiB physical blocks its pages lie in.
    let mut load = 0usize;
    let mut guest_packs = Vec::new();
    for (op, st) in t.ops.iter().zip(&steps) {
        if let Op::ProgLoad { .. } = op {
            if let Some(span) = st.view.pack_span {
                guest_packs.push((load, span));
            }
            load += 1;
        }
    }
    let show = |packs: &[(usize, u32)]| {
        let v: Vec<String> = packs.iter().map(|(p, n)| format!("prog{p}: {n}")).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    outln!(
        "packs made, by the load that made them, and the 2 MiB blocks their pages lie in:\n  linux: {}\n  model: {}",
        show(&guest_packs),
        show(&m.pack_spans)
    );
    outln!("\nalong the run (level-2 splits so far): step, linux, model linux-6.1");
    let every = (real.len() / 10).max(1);
    for (k, ((step, r), (_, kb))) in real.iter().zip(&m.series).enumerate() {
        if k % every == 0 || k + 1 == real.len() {
            outln!(
                "  {step:>7}  {:>+5}  {:>5}",
                d(before.level2_splits, r.level2_splits),
                kb / 2048
            );
        }
    }
    if let (Some(mut f), Some(p)) = (file, svg) {
        let series = (real.iter())
            .map(|(step, r)| {
                (
                    *step,
                    r.directmap_4k_kb.saturating_sub(before.directmap_4k_kb),
                )
            })
            .collect();
        model.push(guest_result(series, real_splits.max(0) as u64));
        f.write_all(plot(&opts, &model).as_bytes())
            .map_err(|e| Usage(format!("{}: cannot write: {e}", p.display())))?;
        outln!("wrote {}", p.display());
    }
    Ok(0)
}

/// Where `linux/setup.sh` puts Debian's pinned kernel:
/// `$PACKMODEL_GUEST_DIR`, or `linux/build/debian-6.1.0-57-amd64` in the
/// source tree this binary was built from.
fn default_guest_dir() -> PathBuf {
    match std::env::var_os("PACKMODEL_GUEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../linux/build/debian-6.1.0-57-amd64"),
    }
}

fn cmd_fmt(path: &Path, quirks: &str) -> Result<u8, Usage> {
    let bytes =
        std::fs::read(path).map_err(|e| Usage(format!("{}: cannot read: {e}", path.display())))?;
    let quirks = Quirks::parse(quirks).map_err(|e| Usage(format!("quirks: {e}")))?;
    let input = decode(&bytes);
    let names = quirks.names().iter().map(|s| s.to_string()).collect();
    let t = Trace::new(names, input.config, input.ops);
    let text = t.print();
    let (head, body) = text.split_once('\n').expect("a header line");
    out!(
        "{head}\n# decoded from {} ({} bytes)\n{body}",
        path.display(),
        bytes.len()
    );
    Ok(0)
}

/// The quirks as a Markdown table (the README shows the same).
fn quirks_table() -> String {
    let mut s = String::from("| quirk | kernels | fixed by | symptom |\n|---|---|---|---|\n");
    for q in packmodel::kernel::optimised::quirks::QUIRKS {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            q.name, q.versions, q.fixed_by, q.symptom
        ));
    }
    s
}

/// Opens `out` for writing, refusing to replace it unless `force`.
fn create(out: &Path, force: bool) -> Result<std::fs::File, Usage> {
    if force {
        std::fs::File::create(out)
    } else {
        std::fs::File::create_new(out)
    }
    .map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            " (use --force to overwrite)"
        } else {
            ""
        };
        Usage(format!("{}: cannot write: {e}{hint}", out.display()))
    })
}

/// The contents of the files in `dir` that `keep` accepts, in name order.
fn read_corpus(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<Vec<u8>>, Usage> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Usage(format!("{}: cannot read: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| Usage(format!("{}: cannot read: {e}", f.display()))))
        .collect()
}

fn cmd_hunt(
    quirks: &str,
    seconds: f64,
    seed: u64,
    corpus: Option<&Path>,
    oracle: Option<packmodel::harness::oracle::Oracle>,
    out: Option<&Path>,
    force: bool,
) -> Result<u8, Usage> {
    use packmodel::harness::hunt::{HuntOptions, hunt};
    use std::io::IsTerminal as _;
    let quirks = Quirks::parse(quirks).map_err(|e| Usage(format!("--quirks: {e}")))?;
    if let Some(out) = out.filter(|o| o.exists() && !force) {
        return Err(Usage(format!(
            "{}: exists (use --force to overwrite)",
            out.display()
        )));
    }
    let inputs = match corpus {
        Some(dir) => read_corpus(dir, |p| p.extension().is_some_and(|x| x == "bin"))?,
        None => Vec::new(),
    };
    let opts = HuntOptions {
        quirks,
        seed,
        seconds,
        corpus: inputs,
        oracle,
    };
    let tty = std::io::stderr().is_terminal();
    let mut last = 0.0;
    let mut progress = |execs: u64, secs: f64| {
        let every = if tty { 0.1 } else { 5.0 };
        if secs - last >= every {
            last = secs;
            let line = format!(
                "hunt: {execs} executions, {:.0} exec/s, {secs:.1} s",
                execs as f64 / secs.max(1e-9)
            );
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
        }
    };
    let found = hunt(&opts, &mut progress);
    if tty {
        eprintln!();
    }
    let Some(f) = found else {
        outln!("no bug found in {seconds} s (seed {seed}, quirks: {quirks})");
        return Ok(0);
    };
    outln!(
        "found: the {} oracle fired on {} after {} executions in {:.2} s (seed {seed}, quirks: {quirks}); shrunk to {} ops with {} runs\n",
        f.oracle,
        f.kernel,
        f.execs,
        f.seconds,
        f.shrunk.ops.len(),
        f.shrink_runs
    );
    let r = run(
        &f.shrunk,
        &[KernelKind::Reference, KernelKind::Optimised],
        quirks,
    );
    out!("{}", render("the shrunk trace", &f.shrunk, quirks, &r));
    // The reproducer states its verdict (`expect:`), as a regression trace
    // must: the shrunk run's first finding.
    let mut shrunk = f.shrunk.clone();
    shrunk.expect = r.findings.first().map(|x| Expect {
        oracle: x.oracle,
        op: x.op,
    });
    let found_by = format!(
        "found by `packmodel hunt --seed {seed} --quirks {}{}` after {} executions; shrunk",
        quirks.names().join(","),
        oracle.map_or(String::new(), |o| format!(" --oracle {}", o.slug())),
        f.execs
    );
    let text = shrunk.print_with_comments(&[&found_by]);
    match out {
        Some(out) => {
            create(out, force)?
                .write_all(text.as_bytes())
                .map_err(|e| Usage(format!("{}: cannot write: {e}", out.display())))?;
            outln!("\nwrote {}", out.display());
        }
        None => out!("\n--- trace ---\n{text}"),
    }
    Ok(1)
}

fn cmd_bench_harness(
    json: bool,
    seeds: &Path,
    campaign: &Path,
    rounds: usize,
    generated: usize,
    seed: u64,
) -> Result<u8, Usage> {
    use packmodel::bench::harness::{HarnessOptions, Inputs, bench};
    let seeds = read_corpus(seeds, |p| p.is_file())?;
    let campaign = read_corpus(campaign, |p| p.is_file())?;
    let opts = HarnessOptions {
        rounds,
        generated,
        seed,
        ..HarnessOptions::default()
    };
    let allocations = || GLOBAL.stats().allocations as u64;
    let inputs = Inputs {
        seeds: &seeds,
        campaign: &campaign,
    };
    let report = bench(&inputs, &opts, Some(&allocations));
    if json {
        outln!("{}", report.to_json());
    } else {
        out!("{report}");
    }
    Ok(0)
}

fn cmd_frag(
    programs: usize,
    seed: u64,
    mem: u32,
    json: bool,
    svg: Option<&Path>,
    force: bool,
) -> Result<u8, Usage> {
    use packmodel::bench::frag::{frag, render, svg as plot, to_json};
    let opts = frag_options(programs, seed, mem)?;
    // Refuse to overwrite before the run, not after it.
    let file = svg.map(|p| create(p, force)).transpose()?;
    let results = frag(&opts);
    if json {
        outln!("{}", to_json(&opts, &results));
    } else {
        out!("{}", render(&opts, &results));
    }
    if let (Some(mut f), Some(p)) = (file, svg) {
        f.write_all(plot(&opts, &results).as_bytes())
            .map_err(|e| Usage(format!("{}: cannot write: {e}", p.display())))?;
        if !json {
            outln!("wrote {}", p.display());
        }
    }
    Ok(0)
}

fn cmd_encode(path: &Path, out: &Path, force: bool) -> Result<u8, Usage> {
    let t = load_trace(path)?;
    let bytes = encode(&t).map_err(|e| {
        Usage(format!(
            "{}:{}: {e}",
            path.display(),
            e.op.map_or(1, |i| t.lines[i])
        ))
    })?;
    let mut f = create(out, force)?;
    f.write_all(&bytes)
        .map_err(|e| Usage(format!("{}: cannot write: {e}", out.display())))?;
    Ok(0)
}
