//! The host side of ground truth (DESIGN §11): boot a real kernel under QEMU
//! with the guest initramfs that `linux/setup.sh` builds, hand it traces,
//! and collect the agent's observations, one [`GuestStep`] per op.
//!
//! The traces travel as a second, uncompressed cpio archive appended to the
//! initramfs (the kernel unpacks concatenated archives in order); the agent
//! answers on the guest's second serial port, the kernel's console goes to
//! the first. Every boot has a time limit: a guest that does not power off
//! in time is killed and reported with the tail of its console.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::ground::{GuestLine, GuestStep};

/// What to boot and how.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    /// An uncompressed `vmlinux` (PVH entry) or a `bzImage`.
    pub kernel: PathBuf,
    /// The initramfs with `/init`, the agent and the module built for
    /// `kernel` (`linux/setup.sh`).
    pub initramfs: PathBuf,
    pub mem_mib: u32,
    /// The boot's time limit.
    pub timeout: Duration,
    /// Extra kernel command-line words.
    pub append: String,
    /// Scratch directory for the boot's files (kept for a post-mortem).
    pub scratch: PathBuf,
}

impl GuestConfig {
    /// The default guest: Debian's 6.1 as `linux/setup.sh` prepares it under
    /// `build` (`vmlinux`, `initramfs.cpio.gz`).
    pub fn in_build_dir(build: &Path) -> Self {
        GuestConfig {
            kernel: build.join("vmlinux"),
            initramfs: build.join("initramfs.cpio.gz"),
            mem_mib: 512,
            timeout: Duration::from_secs(120),
            append: String::new(),
            scratch: build.join("run"),
        }
    }
}

/// Why a guest gave no usable answer (exit status 2).
#[derive(Debug)]
pub enum GuestError {
    /// QEMU, the kernel image or the initramfs is missing.
    Missing(String),
    /// The guest stopped without answering for every trace.
    Boot { why: String, console_tail: String },
    /// The guest did not power off within the time limit.
    Timeout { secs: u64, console_tail: String },
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::Missing(m) => write!(f, "no usable guest: {m}"),
            GuestError::Boot { why, console_tail } => {
                write!(
                    f,
                    "guest failed: {why}\n--- console (tail) ---\n{console_tail}"
                )
            }
            GuestError::Timeout { secs, console_tail } => write!(
                f,
                "guest timed out: no power-off within {secs} s (the limit); killed\n--- console (tail) ---\n{console_tail}"
            ),
        }
    }
}

/// What one boot returned.
#[derive(Debug)]
pub struct GuestRun {
    /// `uname -r` of the guest.
    pub release: String,
    /// Per trace, in the order given: its steps (ops, then teardown), or
    /// why the agent stopped.
    pub traces: Vec<Result<Vec<GuestStep>, String>>,
    /// The agent's lines as it printed them (a recording's body).
    pub raw: String,
}

/// A recorded boot: the traces (as given on the command line) and the
/// agent's lines. `replay --on linux --record FILE` writes one; the tests
/// replay the committed one against the model without a guest.
pub fn recording(names: &[String], run: &GuestRun) -> String {
    let head = serde_json::json!({ "traces": names });
    format!("{head}\n{}", run.raw)
}

/// Reads a recording: the trace names and the boot's answers.
pub fn read_recording(text: &str) -> Result<(Vec<String>, GuestRun), String> {
    let (head, body) = text.split_once('\n').ok_or("an empty recording")?;
    #[derive(serde::Deserialize)]
    struct Head {
        traces: Vec<String>,
    }
    let h: Head = serde_json::from_str(head).map_err(|e| format!("line 1: {e}"))?;
    let run = parse_answers(body, h.traces.len())?;
    Ok((h.traces, run))
}

/// The QEMU binary.
const QEMU: &str = "qemu-system-x86_64";

/// Boots `cfg` once and runs `traces` (name, text) in order.
pub fn run_traces(cfg: &GuestConfig, traces: &[(String, String)]) -> Result<GuestRun, GuestError> {
    for (what, p) in [("kernel", &cfg.kernel), ("initramfs", &cfg.initramfs)] {
        if !p.is_file() {
            return Err(GuestError::Missing(format!(
                "the {what} {} does not exist (run linux/setup.sh)",
                p.display()
            )));
        }
    }
    if Command::new(QEMU).arg("--version").output().is_err() {
        return Err(GuestError::Missing(format!(
            "{QEMU} is not installed (run linux/setup.sh)"
        )));
    }
    let io = |e: std::io::Error| GuestError::Missing(format!("{}: {e}", cfg.scratch.display()));
    std::fs::create_dir_all(&cfg.scratch).map_err(io)?;
    let initrd = cfg.scratch.join("initramfs+traces.cpio");
    let mut image = std::fs::read(&cfg.initramfs).map_err(io)?;
    // The kernel looks for the next archive at a 4-byte boundary and skips
    // zeros up to it (unpack_to_rootfs()).
    image.resize(image.len().next_multiple_of(4), 0);
    image.extend(traces_cpio(traces));
    std::fs::write(&initrd, image).map_err(io)?;
    let console = cfg.scratch.join("console.log");
    let answers = cfg.scratch.join("agent.jsonl");
    let append = format!(
        "console=ttyS0 loglevel=4 panic=-1 nokaslr init_on_alloc=0 {}",
        cfg.append
    );
    let mut child = Command::new(QEMU)
        .args([
            "-accel",
            "tcg",
            "-icount",
            "shift=0,sleep=off",
            "-rtc",
            "base=2026-01-01T00:00:00,clock=vm",
            "-cpu",
            "max,-rdrand,-rdseed",
            "-smp",
            "1",
            "-m",
        ])
        .arg(format!("{}M", cfg.mem_mib))
        .args([
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
            "-monitor",
            "none",
        ])
        .args(["-serial"])
        .arg(format!("file:{}", console.display()))
        .args(["-serial"])
        .arg(format!("file:{}", answers.display()))
        .arg("-kernel")
        .arg(&cfg.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GuestError::Missing(format!("{QEMU}: {e}")))?;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(io)? {
            break st;
        }
        if start.elapsed() > cfg.timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GuestError::Timeout {
                secs: cfg.timeout.as_secs(),
                console_tail: tail(&console),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&answers).unwrap_or_default();
    let boot_err = |why: String| GuestError::Boot {
        why,
        console_tail: tail(&console),
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(boot_err(format!(
            "{QEMU} exited with {status}: {}",
            err.trim()
        )));
    }
    parse_answers(&text, traces.len()).map_err(boot_err)
}

/// The agent's lines, grouped by trace.
pub fn parse_answers(text: &str, n: usize) -> Result<GuestRun, String> {
    let mut release = None;
    let mut traces: Vec<Result<Vec<GuestStep>, String>> = (0..n)
        .map(|_| Err("the agent never started this trace".to_string()))
        .collect();
    let mut done = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let l: GuestLine = serde_json::from_str(line)
            .map_err(|e| format!("the agent's line {} is not understood: {e}", i + 1))?;
        let slot = |t: usize| {
            if t < n {
                Ok(t)
            } else {
                Err(format!("the agent answered for trace {t} of {n}"))
            }
        };
        match l {
            GuestLine::Hello { release: r } => release = Some(r),
            GuestLine::Begin { trace, .. } => traces[slot(trace)?] = Ok(Vec::new()),
            GuestLine::Step { trace, op, step } => {
                if let Ok(steps) = &mut traces[slot(trace)?] {
                    if steps.len() != op {
                        return Err(format!(
                            "trace {trace}: op {op} came after {} ops",
                            steps.len()
                        ));
                    }
                    steps.push(step);
                }
            }
            GuestLine::Error { trace, message } => traces[slot(trace)?] = Err(message),
            GuestLine::Done => done = true,
        }
    }
    let Some(release) = release else {
        return Err("the agent never started (no hello line)".into());
    };
    if !done {
        return Err("the agent stopped before it had run every trace".into());
    }
    Ok(GuestRun {
        release,
        traces,
        raw: text.replace('\r', ""),
    })
}

/// The last lines of the guest's console.
fn tail(console: &Path) -> String {
    let text = std::fs::read(console).unwrap_or_default();
    let text = String::from_utf8_lossy(&text).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// A `newc` cpio archive holding `/traces/NNN.trace` for each trace.
pub fn traces_cpio(traces: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |ino: u32, name: &str, mode: u32, data: &[u8]| {
        let namesize = name.len() + 1;
        let head = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            0
        );
        out.extend(head.as_bytes());
        out.extend(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    entry(1, "traces", 0o040755, &[]);
    for (i, (_, text)) in traces.iter().enumerate() {
        entry(
            2 + i as u32,
            &format!("traces/{i:03}.trace"),
            0o100644,
            text.as_bytes(),
        );
    }
    entry(0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing kernel or initramfs is named before QEMU is tried; a time
    /// limit's message carries the console's tail.
    #[test]
    fn no_usable_guest_is_said_and_named() {
        let dir = std::env::temp_dir().join(format!("packmodel-guest-{}", std::process::id()));
        let cfg = GuestConfig::in_build_dir(&dir);
        let e = run_traces(&cfg, &[]).unwrap_err();
        assert!(
            matches!(&e, GuestError::Missing(m) if m.contains("the kernel") && m.contains("vmlinux")),
            "{e}"
        );
        let shown = GuestError::Timeout {
            secs: 7,
            console_tail: "last words".into(),
        }
        .to_string();
        assert!(shown.contains("no power-off within 7 s") && shown.ends_with("last words"));
    }

    /// The console's last 25 lines, carriage returns gone.
    #[test]
    fn the_console_tail_is_its_last_lines() {
        let p = std::env::temp_dir().join(format!("packmodel-console-{}", std::process::id()));
        let text: String = (0..40).map(|i| format!("line {i}\r\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = tail(&p);
        assert!(t.starts_with("line 15\nline 16"), "{t}");
        assert!(t.ends_with("line 39"), "{t}");
        std::fs::remove_file(&p).unwrap();
    }
}
