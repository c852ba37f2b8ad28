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
use packmodel::harness::trace::{self, Trace};
use packmodel::kernel::{KernelKind, Quirks};

#[derive(Parser)]
#[command(
    name = "packmodel",
    version,
    about = "Differential fuzzing and regression suite for bpf_prog_pack on huge-page vmalloc"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a text trace on both kernels (or one) and print each op, what each
    /// kernel showed, and the verdict.
    Replay {
        /// The trace (`*.trace`).
        file: PathBuf,
        /// Run one kernel only.
        #[arg(long, value_parser = kernel_name)]
        kernel: Option<KernelKind>,
        /// Quirks of the optimised kernel (comma-separated; overrides the
        /// trace's `quirks:` line; `''` for none).
        #[arg(long)]
        quirks: Option<String>,
    },
    /// Print fuzz input bytes as a trace.
    Fmt {
        /// A fuzz input (e.g. a crash from `fuzz/artifacts/differential/`).
        file: PathBuf,
        /// Quirks to name in the trace's `quirks:` line.
        #[arg(long, env = "PACKMODEL_QUIRKS", default_value = "")]
        quirks: String,
    },
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
            kernel,
            quirks,
        } => cmd_replay(&file, kernel, quirks.as_deref()),
        Cmd::Fmt { file, quirks } => cmd_fmt(&file, &quirks),
        Cmd::Encode { file, out, force } => cmd_encode(&file, &out, force),
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

fn cmd_replay(path: &Path, kernel: Option<KernelKind>, quirks: Option<&str>) -> Result<u8, Usage> {
    let t = load_trace(path)?;
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
    print!("{}", render(&path.display().to_string(), &t, quirks, &r));
    Ok(exit_code(&r))
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
    print!(
        "{head}\n# decoded from {} ({} bytes)\n{body}",
        path.display(),
        bytes.len()
    );
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
    let mut f = if force {
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
    })?;
    f.write_all(&bytes)
        .map_err(|e| Usage(format!("{}: cannot write: {e}", out.display())))?;
    Ok(0)
}
