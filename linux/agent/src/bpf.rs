//! The agent's BPF side: programs loaded through `bpf(2)` by the `bpf_prog`
//! helper (`linux/helper/bpf_prog.c`, which holds their file descriptors),
//! their images read back and jumps classified through the module's
//! `PMG_PEEK` — read, never executed.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use packmodel::harness::ground::GuestLanding;

use crate::module::{self, Module};

/// A program the guest loaded.
#[derive(Clone, Debug)]
pub struct Loaded {
    fd: i32,
    pub addr: u64,
    pub len: u32,
    /// The JIT image as the kernel reports it (`jited_prog_insns`).
    pub image: Vec<u8>,
    /// The vm area holding it (`find_vm_area()`): its pack, or its own.
    pub area: u64,
}

/// `BPF_PROG_CHUNK_SIZE`: a program's `bpf_binary_header` starts its chunk.
const CHUNK: u64 = 64;
/// How long a free may take to complete (`bpf_prog_put()` frees after an RCU
/// grace period, from a workqueue).
const FREE_WAIT: Duration = Duration::from_secs(5);

pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The shortest image the JIT makes (`r0 = 0; exit`).
    pub base: u32,
}

impl Helper {
    pub fn start(path: &str) -> io::Result<Self> {
        let mut child = Command::new(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut h = Helper {
            child,
            stdin,
            stdout,
            base: 0,
        };
        let ready = h.line()?;
        h.base = ready
            .strip_prefix("ready ")
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bpf_prog: {ready}")))?;
        Ok(h)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut l = String::new();
        if self.stdout.read_line(&mut l)? == 0 {
            return Err(io::Error::other("bpf_prog exited"));
        }
        Ok(l.trim_end().to_string())
    }

    fn ask(&mut self, cmd: &str) -> io::Result<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.line()
    }

    /// Loads a program with a `len`-byte image (or as close as the JIT
    /// allows); `Err(errno)` if `bpf(2)` refused.
    pub fn load(&mut self, len: u32) -> io::Result<Result<Loaded, i32>> {
        let a = self.ask(&format!("load {len}"))?;
        let w: Vec<&str> = a.split_whitespace().collect();
        match w[..] {
            ["ok", fd, got, addr] => {
                let bad = || io::Error::other(format!("bpf_prog: {a}"));
                let fd: i32 = fd.parse().map_err(|_| bad())?;
                let path = format!("/tmp/image-{fd}");
                let r = self.ask(&format!("image {fd} {path}"))?;
                if r != "ok" {
                    return Err(io::Error::other(format!("bpf_prog image: {r}")));
                }
                let image = std::fs::read(&path)?;
                std::fs::remove_file(&path)?;
                Ok(Ok(Loaded {
                    fd,
                    addr: u64::from_str_radix(addr, 16).map_err(|_| bad())?,
                    len: got.parse().map_err(|_| bad())?,
                    image,
                    area: 0,
                }))
            }
            ["err", e, ..] => Ok(Err(e.parse().unwrap_or(0))),
            _ => Err(io::Error::other(format!("bpf_prog: {a}"))),
        }
    }

    /// Unloads `p` and waits until the kernel has freed its image: every byte
    /// INT3 (`bpf_prog_pack_free()`'s `bpf_arch_text_invalidate()`) or
    /// unmapped (an oversize image's `vfree()`).
    pub fn free(&mut self, m: &mut Module, p: &Loaded) -> io::Result<()> {
        let r = self.ask(&format!("close {}", p.fd))?;
        if r != "ok" {
            return Err(io::Error::other(format!("bpf_prog close: {r}")));
        }
        let start = Instant::now();
        while !gone(m, p)? {
            if start.elapsed() > FREE_WAIT {
                return Err(io::Error::other(format!(
                    "a freed program's image at {:#x} was not invalidated within {FREE_WAIT:?}",
                    p.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The BPF allocations in the kernel, `(header, size)`: the kernel's own
/// classic programs too, which neither `BPF_PROG_GET_NEXT_ID` nor kallsyms
/// shows. Found by walking every pack and oversize image that
/// `/proc/vmallocinfo` lists ([`is_bpf_area`]) chunk by
/// chunk: an allocation starts with its `bpf_binary_header`, whose `u32
/// size` covers it; a free chunk is INT3 (`bpf_arch_text_invalidate()`).
pub fn kernel_images(m: &mut Module) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for (start, end) in bpf_area_ranges()? {
        // The area without its guard page.
        let mut bytes = Vec::new();
        let mut a = start;
        while a + PAGE <= end - PAGE {
            let r = m.call(module::PEEK, 0, [a, 0, 0], PAGE, &[])?;
            if r.ret != 0 {
                break;
            }
            bytes.extend_from_slice(&r.payload);
            a += PAGE;
        }
        let mut pos = 0usize;
        while pos + 4 <= bytes.len() {
            let size = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
            if size == 0 || size == 0xcccc_cccc || pos + size > bytes.len() {
                pos += CHUNK as usize;
                continue;
            }
            out.push((start + pos as u64, size as u64));
            pos += size.next_multiple_of(CHUNK as usize);
        }
    }
    Ok(out)
}

/// The `start..end` of every pack and oversize image `/proc/vmallocinfo`
/// lists ([`is_bpf_area`]), guard page included.
fn bpf_area_ranges() -> io::Result<Vec<(u64, u64)>> {
    let info = std::fs::read_to_string("/proc/vmallocinfo")?;
    let hex = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
    Ok((info.lines())
        .filter(|l| is_bpf_area(l))
        .filter_map(|l| {
            let (start, end) = l.split_whitespace().next()?.split_once('-')?;
            Some((hex(start)?, hex(end)?))
        })
        .collect())
}

/// The vm areas that hold BPF allocations now (`/proc/vmallocinfo`).
pub fn bpf_areas() -> io::Result<Vec<u64>> {
    Ok(bpf_area_ranges()?
        .into_iter()
        .map(|(start, _)| start)
        .collect())
}

const PAGE: u64 = 4096;

/// A `/proc/vmallocinfo` line of a pack or an oversize image: allocated in
/// `bpf_prog_pack_alloc()` (6.1 inlines `alloc_new_pack()` and
/// `bpf_jit_alloc_exec()` into it) or, where not inlined, those two.
fn is_bpf_area(l: &str) -> bool {
    [
        "bpf_prog_pack_alloc+",
        "alloc_new_pack+",
        "bpf_jit_alloc_exec+",
    ]
    .iter()
    .any(|c| l.contains(c))
}

/// Whether `p`'s image is gone: all INT3 or unmapped.
fn gone(m: &mut Module, p: &Loaded) -> io::Result<bool> {
    let mut off = 0u64;
    while off < u64::from(p.len) {
        let n = (u64::from(p.len) - off).min(module::MAX_PAYLOAD as u64);
        let r = m.call(module::PEEK, 0, [p.addr + off, 0, 0], n, &[])?;
        match r.ret {
            0 if r.payload.iter().all(|&b| b == 0xcc) => {}
            0 => return Ok(false),
            _ => return Ok(true),
        }
        off += n;
    }
    Ok(true)
}

/// Whether the executable memory at `p`'s address holds its image.
pub fn runs_own(m: &mut Module, p: &Loaded) -> io::Result<bool> {
    let mut off = 0usize;
    while off < p.image.len() {
        let n = (p.image.len() - off).min(module::MAX_PAYLOAD);
        let r = m.call(module::PEEK, 0, [p.addr + off as u64, 0, 0], n as u64, &[])?;
        let exec = r.val[module::M_VMAP] & module::MAP_NX == 0;
        if r.ret != 0 || !exec || r.payload != p.image[off..off + n] {
            return Ok(false);
        }
        off += n;
    }
    Ok(true)
}

/// Where a jump to `addr` lands: `own` is the program jumped into (none for
/// a stale pointer), `live` the trace's live programs, `kernel` every image
/// in the kernel to the end of its allocation ([`kernel_images`]), `freed`
/// the trace's freed programs.
pub fn classify(
    m: &mut Module,
    addr: u64,
    own: Option<&Loaded>,
    live: &[&Loaded],
    kernel: &[(u64, u64)],
    freed: &[&Loaded],
) -> io::Result<GuestLanding> {
    let r = m.call(module::PEEK, 0, [addr, 0, 0], 1, &[])?;
    if r.ret != 0 {
        return Ok(GuestLanding::Fault("not-present".into()));
    }
    if r.val[module::M_VMAP] & module::MAP_NX != 0 {
        return Ok(GuestLanding::Fault("exec of NX".into()));
    }
    let byte = r.payload[0];
    let within = |a: u64, n: u32| a <= addr && addr < a + u64::from(n);
    if let Some(p) = own.filter(|p| within(p.addr, p.len)) {
        return Ok(GuestLanding::OwnText((addr - p.addr) as u32));
    }
    if live.iter().any(|p| within(p.addr, p.len)) {
        return Ok(GuestLanding::OtherText);
    }
    // A live image's bpf_binary_header: its u32 size at the chunk's start.
    let within64 = |a: u64, n: u64| a <= addr && addr < a + n;
    if kernel.iter().any(|&(h, _)| within64(h, 4)) {
        return Ok(GuestLanding::Header);
    }
    if byte == 0xcc {
        return Ok(GuestLanding::Int3);
    }
    // The kernel's own programs (whose exact length is not known here): any
    // other byte up to the end of their allocation is their text.
    if kernel.iter().any(|&(h, n)| within64(h, n)) {
        return Ok(GuestLanding::OtherText);
    }
    for p in freed {
        if within(p.addr, p.len) && p.image[(addr - p.addr) as usize] == byte {
            return Ok(GuestLanding::StaleText((addr - p.addr) as u32));
        }
    }
    Ok(GuestLanding::OtherBytes(byte))
}
