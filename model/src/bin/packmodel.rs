//! The `packmodel` command line. Exit status: 0 clean, 1 a bug was found, 2 bad
//! usage or unreadable/invalid input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use packmodel::harness::replay;
use packmodel::harness::trace::{self, Trace};
use packmodel::kernel::KernelKind;

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
    /// Run a text trace and print each op, its observation and the verdict.
    Replay {
        /// The trace (`*.trace`).
        file: PathBuf,
        /// The kernel to run it on.
        #[arg(long, default_value = "reference", value_parser = kernel_name)]
        kernel: KernelKind,
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
        Cmd::Replay { file, kernel } => cmd_replay(&file, kernel),
    };
    match result {
        Ok(code) => code,
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

fn cmd_replay(path: &Path, kernel: KernelKind) -> Result<ExitCode, Usage> {
    let t = load_trace(path)?;
    let r = replay::replay(&t, kernel);
    print!("{}", replay::render(&path.display().to_string(), &t, &r));
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
