//! Text traces, v1: one kernel call per line, in a syntax a kernel developer reads
//! without a manual.
//!
//! ```text
//! # packmodel trace v1
//! quirks: huge-vmalloc-opt-out, compound-huge-vmalloc
//! config: nodes=1 mem=64M dmap=2M
//!
//! v0 = vmalloc(2M)                      # also vzalloc, vmalloc_huge, vmalloc_no_huge, kvmalloc
//! pg0 = vmalloc_to_page(v0 + 0x3000)
//! pg0->mapping = NULL
//! pg0->index = 0
//! INIT_LIST_HEAD(&pg0->lru)
//! vfree(v0)
//! ```
//!
//! Names on the left of `=` are free (`buf = vmalloc(8K)`); printing uses `v0`,
//! `pg0`, `prog0`. Parsing checks every name is defined, of the right kind and
//! still alive, and every access is inside its area, so that a parsed trace is as
//! valid as a decoded fuzz input. Errors read `path:line:col: expected …`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use super::op::{AreaId, HandleKind, Op, PageId, ProgId, limits};
use super::oracle::Oracle;
use crate::kernel::{HugeHint, SetMemory, VmallocFlags};
use crate::machine::direct_map::DmapLeaf;
use crate::machine::{Design, MachineConfig};

/// The first line of every trace.
pub const HEADER: &str = "# packmodel trace v1";

/// A parsed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Quirk names from the `quirks:` line, as written (checked by the caller).
    pub quirks: Vec<String>,
    pub config: MachineConfig,
    pub ops: Vec<Op>,
    /// The 1-based source line of each op.
    pub lines: Vec<u32>,
    /// A regression's verdict from its `expect:` line: the oracle of the
    /// run's first finding and the op it fired after.
    pub expect: Option<Expect>,
}

/// `expect: ORACLE at line N`: the first finding a regression trace must
/// give under its quirks is ORACLE's (by its command-line name, `wx` for
/// W^X), after the op on line N of the file; `expect: ORACLE at the end`:
/// from the end-of-run checks (teardown), after every op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    pub oracle: Oracle,
    /// Index into [`Trace::ops`]; `None` for the end-of-run checks.
    pub op: Option<usize>,
}

impl Trace {
    /// A trace of `ops` on `config`, with line numbers as [`Trace::print`] gives.
    pub fn new(quirks: Vec<String>, config: MachineConfig, ops: Vec<Op>) -> Self {
        let first = if quirks.is_empty() { 4 } else { 5 };
        let lines = (0..ops.len() as u32).map(|i| first + i).collect();
        Self {
            quirks,
            config,
            ops,
            lines,
            expect: None,
        }
    }

    /// The canonical text: header, `quirks:` (if any), `expect:` (if any),
    /// `config:`, a blank line, one op per line. `Trace::new(..).print()`
    /// parses back to the same trace.
    pub fn print(&self) -> String {
        self.print_with_comments(&[])
    }

    /// [`Trace::print`] with `# ` comment lines after the header (what found
    /// the trace, say); `expect:` still names its op's line in this text.
    pub fn print_with_comments(&self, comments: &[&str]) -> String {
        let mut s = String::new();
        s.push_str(HEADER);
        s.push('\n');
        for c in comments {
            let _ = writeln!(s, "# {c}");
        }
        if !self.quirks.is_empty() {
            let _ = writeln!(s, "quirks: {}", self.quirks.join(", "));
        }
        if let Some(e) = self.expect {
            // The op's line in this text: the header lines so far, `expect:`
            // itself, `config:`, the blank line, then the ops in order.
            let first = s.lines().count() + 4;
            let _ = match e.op {
                Some(op) => writeln!(s, "expect: {} at line {}", e.oracle.slug(), first + op),
                None => writeln!(s, "expect: {} at the end", e.oracle.slug()),
            };
        }
        let _ = writeln!(s, "config: {}", config_text(&self.config));
        s.push('\n');
        for line in op_lines(&self.ops) {
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

/// `nodes=1 mem=64M dmap=2M`.
pub fn config_text(c: &MachineConfig) -> String {
    let dmap = match c.dmap_leaf {
        DmapLeaf::M2 => "2M",
        DmapLeaf::G1 => "1G",
    };
    let design = match c.design {
        Design::Pack2m => String::new(),
        d => format!(" design={}", d.name()),
    };
    format!("nodes={} mem={}M dmap={dmap}{design}", c.nodes, c.mem_mib)
}

/// The canonical text of each op, naming handles by creation order.
pub fn op_lines(ops: &[Op]) -> Vec<String> {
    let mut counts = [0u32; 3];
    ops.iter()
        .map(|op| {
            let mut line = String::new();
            if let Some(kind) = op.creates() {
                let n = &mut counts[kind as usize];
                let _ = write!(line, "{}{} = ", kind.prefix(), n);
                *n += 1;
            }
            let _ = write!(line, "{}", OpText(op));
            line
        })
        .collect()
}

/// `2M`, `8K`, `1000`.
pub fn fmt_size(n: u64) -> String {
    if n != 0 && n % (1 << 20) == 0 {
        format!("{}M", n >> 20)
    } else if n != 0 && n % 1024 == 0 {
        format!("{}K", n >> 10)
    } else {
        n.to_string()
    }
}

fn area_at(area: AreaId, off: u64) -> String {
    if off == 0 {
        format!("v{}", area.0)
    } else {
        format!("v{} + {:#x}", area.0, off)
    }
}

/// `, __GFP_ZERO | __GFP_NOFAIL` (empty when neither).
fn gfp_text(zero: bool, nofail: bool) -> String {
    let flags: Vec<&str> = [(zero, "__GFP_ZERO"), (nofail, "__GFP_NOFAIL")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    if flags.is_empty() {
        String::new()
    } else {
        format!(", {}", flags.join(" | "))
    }
}

/// The text of one op without its `name =` part.
pub struct OpText<'a>(pub &'a Op);

impl fmt::Display for OpText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pg = |p: &PageId| format!("pg{}", p.0);
        let prog = |p: &ProgId| format!("prog{}", p.0);
        match self.0 {
            Op::Vmalloc { size, flags } => {
                let size = fmt_size(*size);
                let gfp = gfp_text(flags.zero, flags.nofail);
                match (flags.huge, flags.zero, flags.nofail) {
                    (HugeHint::Default, false, false) => write!(f, "vmalloc({size})"),
                    (HugeHint::Default, true, false) => write!(f, "vzalloc({size})"),
                    (HugeHint::Default, _, _) => write!(f, "__vmalloc({size}{gfp})"),
                    (HugeHint::Allow, _, _) => write!(f, "vmalloc_huge({size}{gfp})"),
                    (HugeHint::Forbid, _, _) => write!(f, "vmalloc_no_huge({size}{gfp})"),
                }
            }
            Op::Kvmalloc { size, nofail } => {
                write!(
                    f,
                    "kvmalloc({}{})",
                    fmt_size(*size),
                    gfp_text(false, *nofail)
                )
            }
            Op::Vfree { area } => write!(f, "vfree(v{})", area.0),
            Op::Vwrite { area, off, data } => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                write!(f, "vwrite({}, \"{hex}\")", area_at(*area, *off))
            }
            Op::Vmemset {
                area,
                off,
                value,
                len,
            } => write!(
                f,
                "memset({}, {value:#04x}, {})",
                area_at(*area, *off),
                fmt_size(*len as u64)
            ),
            Op::Vread { area, off, len } => write!(f, "vread({}, {len})", area_at(*area, *off)),
            Op::VmallocToPage { area, off } => {
                write!(f, "vmalloc_to_page({})", area_at(*area, *off))
            }
            Op::GetPage { page } => write!(f, "get_page({})", pg(page)),
            Op::PutPage { page } => write!(f, "put_page({})", pg(page)),
            Op::SetMapping { page, value: 0 } => write!(f, "{}->mapping = NULL", pg(page)),
            Op::SetMapping { page, value } => write!(f, "{}->mapping = {value:#x}", pg(page)),
            Op::SetIndex { page, value } => write!(f, "{}->index = {value}", pg(page)),
            Op::ListAdd { page } => write!(f, "list_add(&{}->lru, &driver_list)", pg(page)),
            Op::ListDel { page } => write!(f, "list_del(&{}->lru)", pg(page)),
            Op::InitListHead { page } => write!(f, "INIT_LIST_HEAD(&{}->lru)", pg(page)),
            Op::SetReserved { page } => write!(f, "SetPageReserved({})", pg(page)),
            Op::ClearReserved { page } => write!(f, "ClearPageReserved({})", pg(page)),
            Op::PageCount { page } => write!(f, "page_count({})", pg(page)),
            Op::PageMapping { page } => write!(f, "{}->mapping", pg(page)),
            Op::PageIndex { page } => write!(f, "page_index({})", pg(page)),
            Op::PagePrivate { page } => write!(f, "page_private({})", pg(page)),
            Op::ProgLoad {
                len,
                rand,
                classic: true,
                ..
            } => {
                write!(f, "bpf_prog_create({len}")?;
                if *rand != 0 {
                    write!(f, ", rand={rand:#x}")?;
                }
                f.write_str(")")
            }
            Op::ProgLoad {
                len, align, rand, ..
            } => {
                write!(f, "bpf_prog_load({len}")?;
                if *align != 1 {
                    write!(f, ", align={align}")?;
                }
                if *rand != 0 {
                    write!(f, ", rand={rand:#x}")?;
                }
                f.write_str(")")
            }
            Op::ProgLoadFail { len, rand } => {
                write!(f, "bpf_prog_load_fail({len}")?;
                if *rand != 0 {
                    write!(f, ", rand={rand:#x}")?;
                }
                f.write_str(")")
            }
            Op::ProgFree { prog: p } => write!(f, "bpf_prog_free({})", prog(p)),
            Op::ProgRun { prog: p } => write!(f, "bpf_prog_run({})", prog(p)),
            Op::ProgProbe { prog: p, off } => write!(f, "bpf_prog_probe({}, {off:+})", prog(p)),
            Op::StaleProbe { prog: p, off } => write!(f, "stale_probe({}, {off:+})", prog(p)),
            Op::ProgLoadSubprogsFail { lens, fail, rand } => {
                f.write_str("bpf_prog_load_subprogs_fail(")?;
                for l in lens {
                    write!(f, "{l}, ")?;
                }
                write!(f, "fail={fail}")?;
                if *rand != 0 {
                    write!(f, ", rand={rand:#x}")?;
                }
                f.write_str(")")
            }
            Op::SetPagePrivate { page, value } => {
                write!(f, "set_page_private({}, {value:#x})", pg(page))
            }
            Op::SetMemory {
                area,
                off,
                pages,
                change,
            } => write!(f, "{}({}, {pages})", change.name(), area_at(*area, *off)),
            Op::VmallocNode { size, align, flags } => write!(
                f,
                "__vmalloc_node({}, {align:#x}, GFP_KERNEL{})",
                fmt_size(*size),
                gfp_text(flags.zero, flags.nofail).replacen(',', " |", 1)
            ),
            Op::StaleVread { area, off, len } => {
                write!(f, "stale_vread({}, {len})", area_at(*area, *off))
            }
            Op::DirectMapStats => f.write_str("direct_map_stats()"),
            Op::KcoreRead { prog: p, off, len } => {
                write!(f, "kcore_read({}, {off:+}, {len})", prog(p))
            }
            Op::FailNth { site, nth } => write!(f, "fail_nth({}, {nth})", site.name()),
            Op::ExecmemAlloc { size } => write!(f, "execmem_alloc({})", fmt_size(*size)),
            Op::ExecmemFree { area } => write!(f, "execmem_free(v{})", area.0),
        }
    }
}

// ---- parsing ------------------------------------------------------------------

/// A parse error at a position of a named file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub path: String,
    pub line: u32,
    pub col: u32,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path, self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(u64),
    Str(String),
    Punct(char),
    Arrow,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(n) => format!("`{n}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Arrow => "`->`".into(),
        }
    }
}

/// Error before the path is known: (col, message).
type LineErr = (u32, String);

fn lex(line: &str) -> Result<Vec<(u32, Tok)>, LineErr> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i as u32 + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            break;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((col, Tok::Ident(chars[s..i].iter().collect())));
        } else if c.is_ascii_digit() {
            let s = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[s..i].iter().filter(|&&c| c != '_').collect();
            out.push((
                col,
                Tok::Num(
                    parse_number(&word)
                        .ok_or((col, format!("expected a number, found `{word}`")))?,
                ),
            ));
        } else if c == '"' {
            let s = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            if i == chars.len() {
                return Err((col, "expected a closing `\"`".into()));
            }
            out.push((col, Tok::Str(chars[s..i].iter().collect())));
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push((col, Tok::Arrow));
            i += 2;
        } else if "()=,+-&|:.".contains(c) {
            out.push((col, Tok::Punct(c)));
            i += 1;
        } else {
            return Err((col, format!("expected an operation, found `{c}`")));
        }
    }
    Ok(out)
}

/// `4096`, `0x1000`, `8K`, `2M`, `1G`.
fn parse_number(w: &str) -> Option<u64> {
    if let Some(hex) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    let (digits, shift) = match w.as_bytes().last()? {
        b'K' | b'k' => (&w[..w.len() - 1], 10),
        b'M' | b'm' => (&w[..w.len() - 1], 20),
        b'G' | b'g' => (&w[..w.len() - 1], 30),
        _ => (w, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift)
}

#[derive(Clone, Debug)]
struct AreaState {
    size: u64,
    freed_line: Option<u32>,
    /// Made by `execmem_alloc` (only `execmem_free` takes it).
    execmem: bool,
}

#[derive(Clone, Debug)]
struct PageState {
    area: AreaId,
}

#[derive(Clone, Debug)]
struct ProgState {
    freed_line: Option<u32>,
    /// The length it was loaded with.
    len: u32,
}

/// Names and the objects behind them, for resolving and validating.
#[derive(Default)]
struct Scope {
    names: BTreeMap<String, (HandleKind, u32)>,
    areas: Vec<AreaState>,
    pages: Vec<PageState>,
    progs: Vec<ProgState>,
}

/// A cursor over one line's tokens.
struct Line<'a> {
    toks: &'a [(u32, Tok)],
    pos: usize,
    end_col: u32,
}

impl<'a> Line<'a> {
    fn col(&self) -> u32 {
        self.toks.get(self.pos).map_or(self.end_col, |t| t.0)
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn err<T>(&self, what: &str) -> Result<T, LineErr> {
        let found = self
            .peek()
            .map_or("the end of the line".to_string(), |t| t.describe());
        Err((self.col(), format!("expected {what}, found {found}")))
    }

    fn punct(&mut self, c: char) -> Result<(), LineErr> {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(&format!("`{c}`"))
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The adjacent identifiers, numbers, `-` and `.` from here, joined (a
    /// name like `linux-6.1`, which lexes as five tokens).
    fn word(&mut self) -> String {
        let mut w = String::new();
        let mut next_col = self.col();
        while let Some(&(col, ref t)) = self.toks.get(self.pos) {
            let text = match t {
                Tok::Ident(s) => s.clone(),
                Tok::Num(n) => n.to_string(),
                Tok::Punct(c @ ('-' | '.')) => c.to_string(),
                _ => break,
            };
            if col != next_col {
                break;
            }
            next_col = col + text.chars().count() as u32;
            w.push_str(&text);
            self.pos += 1;
        }
        w
    }

    fn ident(&mut self, what: &str) -> Result<&'a str, LineErr> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => self.err(what),
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<(), LineErr> {
        match self.peek() {
            Some(Tok::Ident(s)) if s == kw => {
                self.pos += 1;
                Ok(())
            }
            _ => self.err(&format!("`{kw}`")),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, LineErr> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(*n)
            }
            _ => self.err(what),
        }
    }

    fn number_in(&mut self, what: &str, lo: u64, hi: u64) -> Result<u64, LineErr> {
        let col = self.col();
        let n = self.number(what)?;
        if n < lo || n > hi {
            return Err((col, format!("expected {what} from {lo} to {hi}, found {n}")));
        }
        Ok(n)
    }

    fn signed(&mut self, what: &str, max: i32) -> Result<i32, LineErr> {
        let col = self.col();
        let neg = if self.eat('-') {
            true
        } else {
            self.eat('+');
            false
        };
        let n = self.number(what)?;
        if n > max as u64 {
            return Err((col, format!("expected {what} within ±{max}, found {n}")));
        }
        Ok(if neg { -(n as i32) } else { n as i32 })
    }

    fn end(&self) -> Result<(), LineErr> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err("the end of the line"),
        }
    }
}

/// Parses the text of a trace. `path` only labels errors.
pub fn parse(path: &str, text: &str) -> Result<Trace, ParseError> {
    let mut p = Parser {
        scope: Scope::default(),
        trace: Trace {
            quirks: Vec::new(),
            config: MachineConfig::default(),
            ops: Vec::new(),
            lines: Vec::new(),
            expect: None,
        },
        expect_line: None,
        seen_header: false,
        seen_quirks: false,
        seen_config: false,
        line_no: 0,
    };
    for (i, raw) in text.lines().enumerate() {
        let lineno = i as u32 + 1;
        p.line(raw, lineno).map_err(|(col, msg)| ParseError {
            path: path.to_string(),
            line: lineno,
            col,
            msg,
        })?;
    }
    if !p.seen_header {
        return Err(ParseError {
            path: path.to_string(),
            line: 1,
            col: 1,
            msg: format!("expected `{HEADER}` as the first line, found an empty file"),
        });
    }
    if let Some((at, col, oracle, line)) = p.expect_line {
        let op = p.trace.lines.iter().position(|&l| Some(l) == line);
        if op.is_none() && line.is_some() {
            return Err(ParseError {
                path: path.to_string(),
                line: at,
                col,
                msg: format!(
                    "expected the line of an operation, found line {} (no operation)",
                    line.unwrap_or(0)
                ),
            });
        }
        p.trace.expect = Some(Expect { oracle, op });
    }
    Ok(p.trace)
}

struct Parser {
    scope: Scope,
    trace: Trace,
    /// `expect:`'s own line, the column of its line number, the oracle, and
    /// the op line it names, `None` for `at the end` (resolved once every op
    /// is read).
    expect_line: Option<(u32, u32, Oracle, Option<u32>)>,
    seen_header: bool,
    seen_quirks: bool,
    seen_config: bool,
    line_no: u32,
}

impl Parser {
    fn line(&mut self, raw: &str, lineno: u32) -> Result<(), LineErr> {
        self.line_no = lineno;
        let trimmed = raw.trim();
        if !self.seen_header {
            if trimmed.is_empty() {
                return Ok(());
            }
            if trimmed != HEADER {
                let col = (raw.chars().count() - raw.trim_start().chars().count()) as u32 + 1;
                return Err((col, format!("expected `{HEADER}` as the first line")));
            }
            self.seen_header = true;
            return Ok(());
        }
        let toks = lex(raw)?;
        if toks.is_empty() {
            return Ok(());
        }
        let mut l = Line {
            toks: &toks,
            pos: 0,
            end_col: raw.chars().count() as u32 + 1,
        };
        if let (Some(Tok::Ident(kw)), Some(Tok::Punct(':'))) =
            (toks.first().map(|t| &t.1), toks.get(1).map(|t| &t.1))
        {
            if !self.trace.ops.is_empty() {
                return Err((
                    1,
                    format!("expected an operation; `{kw}:` must come before the first operation"),
                ));
            }
            l.pos = 2;
            return match kw.as_str() {
                "quirks" if !self.seen_quirks => {
                    self.seen_quirks = true;
                    self.quirks(&mut l)
                }
                "config" if !self.seen_config => {
                    self.seen_config = true;
                    self.config(&mut l)
                }
                "expect" if self.expect_line.is_none() => self.expect(&mut l),
                "quirks" | "config" | "expect" => {
                    Err((1, format!("expected one `{kw}:` line, found a second")))
                }
                _ => Err((
                    1,
                    format!(
                        "expected `quirks:`, `expect:`, `config:` or an operation, found `{kw}:`"
                    ),
                )),
            };
        }
        let op = self.statement(&mut l)?;
        l.end()?;
        self.trace.ops.push(op);
        self.trace.lines.push(lineno);
        Ok(())
    }

    fn quirks(&mut self, l: &mut Line) -> Result<(), LineErr> {
        // Quirk names may contain '-', which lexes as punctuation: join it back.
        let mut name = String::new();
        while let Some(t) = l.peek() {
            match t {
                Tok::Ident(s) => name.push_str(s),
                Tok::Punct('-') => name.push('-'),
                Tok::Num(n) => name.push_str(&n.to_string()),
                Tok::Punct(',') => {
                    if name.is_empty() {
                        return l.err("a quirk name");
                    }
                    self.trace.quirks.push(std::mem::take(&mut name));
                }
                _ => return l.err("a quirk name or `,`"),
            }
            l.pos += 1;
        }
        if !name.is_empty() && (name != "none" || !self.trace.quirks.is_empty()) {
            self.trace.quirks.push(name);
        }
        Ok(())
    }

    fn expect(&mut self, l: &mut Line) -> Result<(), LineErr> {
        let names = || {
            let all: Vec<_> = Oracle::ALL.iter().map(|o| o.slug()).collect();
            all.join(", ")
        };
        let col = l.col();
        let slug = l.word();
        let oracle = Oracle::from_slug(&slug).ok_or_else(|| {
            (
                col,
                format!("expected an oracle ({}), found `{slug}`", names()),
            )
        })?;
        l.keyword("at")?;
        let mut ncol = l.col();
        let line = if l.peek() == Some(&Tok::Ident("the".to_string())) {
            l.keyword("the")?;
            l.keyword("end")?;
            None
        } else {
            l.keyword("line")?;
            ncol = l.col();
            let n = l.number("the line number of an operation")?;
            Some(u32::try_from(n).map_err(|_| (ncol, "expected a line number".to_string()))?)
        };
        l.end()?;
        self.expect_line = Some((self.line_no, ncol, oracle, line));
        Ok(())
    }

    fn config(&mut self, l: &mut Line) -> Result<(), LineErr> {
        while l.peek().is_some() {
            let col = l.col();
            let key = l.ident("a config key (`nodes`, `mem`, `dmap`, `design`)")?;
            l.punct('=')?;
            let vcol = l.col();
            if key == "design" {
                let name = l.word();
                self.trace.config.design = Design::from_name(&name).ok_or_else(|| {
                    let names: Vec<_> = Design::ALL.iter().map(|d| d.name()).collect();
                    (
                        vcol,
                        format!("expected a design ({}), found `{name}`", names.join(", ")),
                    )
                })?;
                continue;
            }
            let v = l.number(&format!("a value for `{key}`"))?;
            let c = &mut self.trace.config;
            match key {
                "nodes" => c.nodes = v.min(255) as u8,
                "mem" => c.mem_mib = (v >> 20).min(u32::MAX as u64) as u32,
                "dmap" => {
                    c.dmap_leaf = match v {
                        0x20_0000 => DmapLeaf::M2,
                        0x4000_0000 => DmapLeaf::G1,
                        _ => return Err((vcol, "expected `dmap=2M` or `dmap=1G`".into())),
                    }
                }
                _ => {
                    return Err((
                        col,
                        format!(
                            "expected a config key (`nodes`, `mem`, `dmap`, `design`), found `{key}`"
                        ),
                    ));
                }
            }
            if key == "mem" && v % (1 << 20) != 0 {
                return Err((vcol, "expected a memory size in MiB (`64M`)".into()));
            }
            c.validate()
                .map_err(|e| (vcol, format!("expected a valid config: {e}")))?;
        }
        Ok(())
    }

    /// Binds `name` (if given) to a new object of `kind`.
    fn bind(&mut self, name: Option<&str>, kind: HandleKind) -> u32 {
        let id = match kind {
            HandleKind::Area => self.scope.areas.len(),
            HandleKind::Page => self.scope.pages.len(),
            HandleKind::Prog => self.scope.progs.len(),
        } as u32;
        if let Some(n) = name {
            self.scope.names.insert(n.to_string(), (kind, id));
        }
        id
    }

    fn resolve(&self, l: &mut Line, kind: HandleKind) -> Result<u32, LineErr> {
        let col = l.col();
        let name = l.ident(&format!("a {}", kind.noun()))?;
        match self.scope.names.get(name) {
            Some(&(k, id)) if k == kind => Ok(id),
            Some(&(k, _)) => Err((
                col,
                format!("expected a {}, `{name}` is a {}", kind.noun(), k.noun()),
            )),
            None => Err((
                col,
                format!("expected a {}, `{name}` is not defined", kind.noun()),
            )),
        }
    }

    fn live_area(&self, l: &mut Line) -> Result<(AreaId, u32, String), LineErr> {
        self.area(l, true)
    }

    /// A vmalloc area, live or (`want_live` false) freed.
    fn area(&self, l: &mut Line, want_live: bool) -> Result<(AreaId, u32, String), LineErr> {
        let col = l.col();
        let name = match l.peek() {
            Some(Tok::Ident(s)) => s.clone(),
            _ => String::new(),
        };
        let id = self.resolve(l, HandleKind::Area)?;
        if self.scope.areas[id as usize].execmem {
            return Err((
                col,
                format!(
                    "expected a vmalloc area, `{name}` is an execmem allocation (only execmem_free takes it)"
                ),
            ));
        }
        match (self.scope.areas[id as usize].freed_line, want_live) {
            (Some(at), true) => Err((
                col,
                format!("expected a live vmalloc area, `{name}` was freed at line {at}"),
            )),
            (None, false) => Err((
                col,
                format!("expected a freed vmalloc area, `{name}` is still allocated"),
            )),
            _ => Ok((AreaId(id), col, name)),
        }
    }

    fn live_page(&self, l: &mut Line) -> Result<PageId, LineErr> {
        let col = l.col();
        let id = self.resolve(l, HandleKind::Page)?;
        let area = self.scope.pages[id as usize].area;
        if let Some(at) = self.scope.areas[area.0 as usize].freed_line {
            return Err((
                col,
                format!("expected a live page, its vmalloc area was freed at line {at}"),
            ));
        }
        Ok(PageId(id))
    }

    fn prog(&self, l: &mut Line, want_live: bool) -> Result<ProgId, LineErr> {
        let col = l.col();
        let id = self.resolve(l, HandleKind::Prog)?;
        match (self.scope.progs[id as usize].freed_line, want_live) {
            (Some(at), true) => Err((
                col,
                format!("expected a loaded program, it was freed at line {at}"),
            )),
            (None, false) => Err((col, "expected a freed program, it is still loaded".into())),
            _ => Ok(ProgId(id)),
        }
    }

    /// `vN` or `vN + off`, with `off + len` inside the area.
    fn area_at(
        &self,
        l: &mut Line,
        len: impl FnOnce(&mut Line) -> Result<u64, LineErr>,
    ) -> Result<(AreaId, u64, u64), LineErr> {
        self.area_range(l, true, len)
    }

    /// [`Parser::area_at`] of a live or (`want_live` false) freed area.
    fn area_range(
        &self,
        l: &mut Line,
        want_live: bool,
        len: impl FnOnce(&mut Line) -> Result<u64, LineErr>,
    ) -> Result<(AreaId, u64, u64), LineErr> {
        let (area, col, name) = self.area(l, want_live)?;
        let off = if l.eat('+') {
            l.number("an offset")?
        } else {
            0
        };
        let len = len(l)?;
        let size = self.scope.areas[area.0 as usize].size;
        if off.checked_add(len.max(1)).is_none_or(|end| end > size) {
            return Err((
                col,
                format!(
                    "expected an access inside `{name}` ({size} bytes), found offset {off:#x} length {len}"
                ),
            ));
        }
        Ok((area, off, len))
    }

    /// `&pgN->lru`.
    fn lru(&self, l: &mut Line) -> Result<PageId, LineErr> {
        l.punct('&')?;
        let page = self.live_page(l)?;
        if l.peek() != Some(&Tok::Arrow) {
            return l.err("`->lru`");
        }
        l.pos += 1;
        l.keyword("lru")?;
        Ok(page)
    }

    fn options(&self, l: &mut Line, allowed: &[&str]) -> Result<BTreeMap<String, u64>, LineErr> {
        let mut out = BTreeMap::new();
        while l.eat(',') {
            let col = l.col();
            let key = l.ident(&format!("an option ({})", allowed.join(", ")))?;
            if !allowed.contains(&key) {
                return Err((
                    col,
                    format!("expected an option ({}), found `{key}`", allowed.join(", ")),
                ));
            }
            l.punct('=')?;
            let v = l.number(&format!("a value for `{key}`"))?;
            out.insert(key.to_string(), v);
        }
        Ok(out)
    }

    fn size(&self, l: &mut Line) -> Result<u64, LineErr> {
        l.number_in("a size", 1, limits::MAX_VMALLOC)
    }

    fn statement(&mut self, l: &mut Line) -> Result<Op, LineErr> {
        let first = l.ident("an operation")?;
        // pgN->field [= value]
        if l.peek() == Some(&Tok::Arrow) {
            l.pos -= 1;
            let page = self.live_page(l)?;
            l.pos += 1;
            let fcol = l.col();
            let field = l.ident("`mapping` or `index`")?;
            let assign = l.eat('=');
            return match (field, assign) {
                ("mapping", false) => Ok(Op::PageMapping { page }),
                ("mapping", true) => {
                    let value = match l.peek() {
                        Some(Tok::Ident(s)) if s == "NULL" => {
                            l.pos += 1;
                            0
                        }
                        _ => l.number("`NULL` or a pointer")?,
                    };
                    Ok(Op::SetMapping { page, value })
                }
                ("index", true) => Ok(Op::SetIndex {
                    page,
                    value: l.number("an index")?,
                }),
                ("index", false) => {
                    Err((fcol, "expected `page_index(pgN)` to read the index".into()))
                }
                _ => Err((
                    fcol,
                    format!("expected `mapping` or `index`, found `{field}`"),
                )),
            };
        }
        let (binding, func) = if l.eat('=') {
            (Some(first), l.ident("an operation")?)
        } else {
            (None, first)
        };
        let fcol = l.toks[l.pos - 1].0;
        l.punct('(')?;
        let op = self.call(l, func, fcol)?;
        l.punct(')')?;
        match (op.creates(), binding) {
            (None, Some(name)) => {
                return Err((
                    1,
                    format!("expected no `{name} =`: `{func}` creates nothing"),
                ));
            }
            (Some(kind), name) => {
                self.bind(name, kind);
                match &op {
                    Op::Vmalloc { size, .. }
                    | Op::Kvmalloc { size, .. }
                    | Op::VmallocNode { size, .. } => self.scope.areas.push(AreaState {
                        size: *size,
                        freed_line: None,
                        execmem: false,
                    }),
                    Op::ExecmemAlloc { size } => self.scope.areas.push(AreaState {
                        size: *size,
                        freed_line: None,
                        execmem: true,
                    }),
                    Op::VmallocToPage { area, .. } => {
                        self.scope.pages.push(PageState { area: *area })
                    }
                    Op::ProgLoad { len, .. } => self.scope.progs.push(ProgState {
                        freed_line: None,
                        len: *len,
                    }),
                    _ => unreachable!(),
                }
            }
            (None, None) => {}
        }
        Ok(op)
    }

    fn call(&mut self, l: &mut Line, func: &str, fcol: u32) -> Result<Op, LineErr> {
        let vmalloc = |l: &mut Line,
                       p: &Self,
                       huge: HugeHint,
                       zero: bool,
                       gfp: bool|
         -> Result<Op, LineErr> {
            let size = p.size(l)?;
            let (z, nofail) = if gfp && l.eat(',') {
                gfp_flags(l, true)?
            } else {
                (false, false)
            };
            Ok(Op::Vmalloc {
                size,
                flags: VmallocFlags {
                    huge,
                    zero: zero || z,
                    nofail,
                },
            })
        };
        Ok(match func {
            "vmalloc" => vmalloc(l, self, HugeHint::Default, false, false)?,
            "vzalloc" => vmalloc(l, self, HugeHint::Default, true, false)?,
            "__vmalloc" => {
                let size = self.size(l)?;
                l.punct(',')?;
                let (zero, nofail) = gfp_flags(l, true)?;
                Op::Vmalloc {
                    size,
                    flags: VmallocFlags {
                        huge: HugeHint::Default,
                        zero,
                        nofail,
                    },
                }
            }
            "vmalloc_huge" => vmalloc(l, self, HugeHint::Allow, false, true)?,
            "vmalloc_no_huge" => vmalloc(l, self, HugeHint::Forbid, false, true)?,
            "kvmalloc" => {
                let size = self.size(l)?;
                let nofail = l.eat(',') && gfp_flags(l, false)?.1;
                Op::Kvmalloc { size, nofail }
            }
            "execmem_alloc" => Op::ExecmemAlloc {
                size: self.size(l)?,
            },
            "execmem_free" => {
                let col = l.col();
                let name = match l.peek() {
                    Some(Tok::Ident(s)) => s.clone(),
                    _ => String::new(),
                };
                let id = self.resolve(l, HandleKind::Area)?;
                let st = &self.scope.areas[id as usize];
                if !st.execmem {
                    return Err((
                        col,
                        format!("expected an execmem allocation, `{name}` is a vmalloc area"),
                    ));
                }
                if let Some(at) = st.freed_line {
                    return Err((
                        col,
                        format!(
                            "expected a live execmem allocation, `{name}` was freed at line {at}"
                        ),
                    ));
                }
                self.scope.areas[id as usize].freed_line = Some(self.current_line());
                Op::ExecmemFree { area: AreaId(id) }
            }
            "vfree" => {
                let (area, _, _) = self.live_area(l)?;
                self.scope.areas[area.0 as usize].freed_line = Some(self.current_line());
                Op::Vfree { area }
            }
            "vwrite" => {
                let mut data = Vec::new();
                let (area, off, _) = self.area_at(l, |l| {
                    l.punct(',')?;
                    let col = l.col();
                    let Some(Tok::Str(s)) = l.peek() else {
                        return l.err("a string of hex bytes");
                    };
                    l.pos += 1;
                    let digits: Vec<char> = s
                        .chars()
                        .filter(|c| !c.is_whitespace() && *c != '_')
                        .collect();
                    if digits.is_empty()
                        || digits.len() % 2 != 0
                        || !digits.iter().all(|c| c.is_ascii_hexdigit())
                    {
                        return Err((
                            col,
                            "expected a string of hex bytes (`\"48 89 e5\"`)".into(),
                        ));
                    }
                    data = digits
                        .chunks(2)
                        .map(|p| u8::from_str_radix(&p.iter().collect::<String>(), 16).unwrap())
                        .collect();
                    if data.len() as u64 > limits::MAX_RW {
                        return Err((col, format!("expected at most {} bytes", limits::MAX_RW)));
                    }
                    Ok(data.len() as u64)
                })?;
                Op::Vwrite { area, off, data }
            }
            "memset" => {
                let mut value = 0;
                let (area, off, len) = self.area_at(l, |l| {
                    l.punct(',')?;
                    value = l.number_in("a byte value", 0, 255)? as u8;
                    l.punct(',')?;
                    l.number_in("a length", 1, limits::MAX_VMALLOC)
                })?;
                Op::Vmemset {
                    area,
                    off,
                    value,
                    len: len as u32,
                }
            }
            "vread" => {
                let (area, off, len) = self.area_at(l, |l| {
                    l.punct(',')?;
                    l.number_in("a length", 1, limits::MAX_RW)
                })?;
                Op::Vread {
                    area,
                    off,
                    len: len as u32,
                }
            }
            "vmalloc_to_page" => {
                let (area, off, _) = self.area_at(l, |_| Ok(1))?;
                Op::VmallocToPage { area, off }
            }
            "get_page" => Op::GetPage {
                page: self.live_page(l)?,
            },
            "put_page" => Op::PutPage {
                page: self.live_page(l)?,
            },
            "list_add" => {
                let page = self.lru(l)?;
                l.punct(',')?;
                l.punct('&')?;
                l.keyword("driver_list")?;
                Op::ListAdd { page }
            }
            "list_del" => Op::ListDel { page: self.lru(l)? },
            "INIT_LIST_HEAD" => Op::InitListHead { page: self.lru(l)? },
            "SetPageReserved" => Op::SetReserved {
                page: self.live_page(l)?,
            },
            "ClearPageReserved" => Op::ClearReserved {
                page: self.live_page(l)?,
            },
            "page_count" => Op::PageCount {
                page: self.live_page(l)?,
            },
            "page_index" => Op::PageIndex {
                page: self.live_page(l)?,
            },
            "page_private" => Op::PagePrivate {
                page: self.live_page(l)?,
            },
            "set_page_private" => {
                let page = self.live_page(l)?;
                l.punct(',')?;
                Op::SetPagePrivate {
                    page,
                    value: l.number("a value")?,
                }
            }
            "__vmalloc_node" => {
                let size = self.size(l)?;
                l.punct(',')?;
                let col = l.col();
                let align = l.number("an alignment")?;
                if !align.is_power_of_two() {
                    return Err((
                        col,
                        format!("expected a power-of-two alignment, found {align:#x}"),
                    ));
                }
                l.punct(',')?;
                let (zero, nofail) = gfp_flags(l, true)?;
                Op::VmallocNode {
                    size,
                    align,
                    flags: VmallocFlags {
                        huge: HugeHint::Default,
                        zero,
                        nofail,
                    },
                }
            }
            "stale_vread" => {
                let (area, off, len) = self.area_range(l, false, |l| {
                    l.punct(',')?;
                    l.number_in("a length", 1, limits::MAX_RW)
                })?;
                Op::StaleVread {
                    area,
                    off,
                    len: len as u32,
                }
            }
            "direct_map_stats" => Op::DirectMapStats,
            f if SetMemory::from_name(f).is_some() => {
                let change = SetMemory::from_name(f).expect("matched");
                let (area, off, _) = self.area_at(l, |_| Ok(1))?;
                l.punct(',')?;
                let pages =
                    l.number_in("a number of pages", 1, limits::MAX_SET_MEMORY_PAGES as u64)?
                        as u32;
                Op::SetMemory {
                    area,
                    off,
                    pages,
                    change,
                }
            }
            "bpf_prog_load_subprogs_fail" => {
                let mut lens = Vec::new();
                while matches!(l.peek(), Some(Tok::Num(_))) {
                    lens.push(
                        l.number_in("a subprogram length", 1, limits::MAX_PROG_LEN as u64)? as u32,
                    );
                    l.punct(',')?;
                }
                l.pos -= 1;
                let col = l.col();
                let o = self.options(l, &["fail", "rand"])?;
                let n = lens.len();
                if !(2..=limits::MAX_SUBPROGS).contains(&n) {
                    return Err((
                        fcol,
                        format!(
                            "expected 2 to {} subprogram lengths, found {n}",
                            limits::MAX_SUBPROGS
                        ),
                    ));
                }
                let fail = *o
                    .get("fail")
                    .ok_or((col, "expected `fail=K`".to_string()))?;
                if fail as usize >= n {
                    return Err((col, format!("expected `fail` below {n}, found {fail}")));
                }
                Op::ProgLoadSubprogsFail {
                    lens,
                    fail: fail as u8,
                    rand: rand_opt(&o, col)?,
                }
            }
            "bpf_prog_load" => {
                let len = l.number_in("a program length", 1, limits::MAX_PROG_LEN as u64)? as u32;
                let col = l.col();
                let o = self.options(l, &["align", "rand"])?;
                let align = o.get("align").copied().unwrap_or(1);
                if !matches!(align, 1 | 2 | 4 | 8) {
                    return Err((
                        col,
                        format!("expected `align` of 1, 2, 4 or 8, found {align}"),
                    ));
                }
                Op::ProgLoad {
                    len,
                    align: align as u8,
                    rand: rand_opt(&o, col)?,
                    classic: false,
                }
            }
            "bpf_prog_create" => {
                let len = l.number_in(
                    "a classic program's length",
                    1,
                    limits::MAX_CLASSIC_LEN as u64,
                )? as u32;
                let col = l.col();
                let o = self.options(l, &["rand"])?;
                Op::ProgLoad {
                    len,
                    align: 1,
                    rand: rand_opt(&o, col)?,
                    classic: true,
                }
            }
            "bpf_prog_load_fail" => {
                let len = l.number_in("a program length", 1, limits::MAX_PROG_LEN as u64)? as u32;
                let col = l.col();
                let o = self.options(l, &["rand"])?;
                Op::ProgLoadFail {
                    len,
                    rand: rand_opt(&o, col)?,
                }
            }
            "bpf_prog_free" => {
                let prog = self.prog(l, true)?;
                self.scope.progs[prog.0 as usize].freed_line = Some(self.current_line());
                Op::ProgFree { prog }
            }
            "bpf_prog_run" => Op::ProgRun {
                prog: self.prog(l, true)?,
            },
            "bpf_prog_probe" => {
                let prog = self.prog(l, true)?;
                l.punct(',')?;
                Op::ProgProbe {
                    prog,
                    off: l.signed("an offset", limits::MAX_PROBE_OFF)?,
                }
            }
            "fail_nth" => {
                let col = l.col();
                let name = l.ident("a fault-injection site")?;
                let site = crate::kernel::FailSite::from_name(name).ok_or_else(|| {
                    let names: Vec<_> = (crate::kernel::FailSite::ALL.iter())
                        .map(|s| format!("`{}`", s.name()))
                        .collect();
                    (
                        col,
                        format!(
                            "expected a fault-injection site ({}), found `{name}`",
                            names.join(", ")
                        ),
                    )
                })?;
                l.punct(',')?;
                let nth = l.number_in("which allocation fails (1 is the next)", 1, 255)? as u8;
                Op::FailNth { site, nth }
            }
            "kcore_read" => {
                let prog = self.prog(l, true)?;
                l.punct(',')?;
                let off = l.signed("an offset", limits::MAX_PROG_LEN as i32)?;
                let off = u32::try_from(off).map_err(|_| {
                    (
                        l.col(),
                        format!("expected an offset into the text, found {off}"),
                    )
                })?;
                l.punct(',')?;
                let col = l.col();
                let len = l.number_in("a length", 1, limits::MAX_RW)? as u32;
                let text = self.scope.progs[prog.0 as usize].len;
                if u64::from(off) + u64::from(len) > u64::from(text) {
                    return Err((
                        col,
                        format!(
                            "expected a read inside the program's {text}-byte text, found {len} bytes at +{off}"
                        ),
                    ));
                }
                Op::KcoreRead { prog, off, len }
            }
            "stale_probe" => {
                let prog = self.prog(l, false)?;
                l.punct(',')?;
                Op::StaleProbe {
                    prog,
                    off: l.signed("an offset", limits::MAX_PROBE_OFF)?,
                }
            }
            _ => return Err((fcol, format!("expected an operation, found `{func}`"))),
        })
    }

    /// The source line being parsed (the next op's line).
    fn current_line(&self) -> u32 {
        self.line_no
    }
}

/// `FLAG (| FLAG)*` of `GFP_KERNEL`, `__GFP_NOFAIL` and (if `zero`)
/// `__GFP_ZERO`: (zero, nofail).
fn gfp_flags(l: &mut Line, zero: bool) -> Result<(bool, bool), LineErr> {
    let mut out = (false, false);
    loop {
        let col = l.col();
        match l.ident("a GFP flag")? {
            "GFP_KERNEL" => {}
            "__GFP_NOFAIL" => out.1 = true,
            "__GFP_ZERO" if zero => out.0 = true,
            f => {
                let allowed = if zero {
                    "`GFP_KERNEL`, `__GFP_ZERO` or `__GFP_NOFAIL`"
                } else {
                    "`GFP_KERNEL` or `__GFP_NOFAIL`"
                };
                return Err((col, format!("expected {allowed}, found `{f}`")));
            }
        }
        if !l.eat('|') {
            return Ok(out);
        }
    }
}

fn rand_opt(o: &BTreeMap<String, u64>, col: u32) -> Result<u32, LineErr> {
    let r = o.get("rand").copied().unwrap_or(0);
    u32::try_from(r).map_err(|_| {
        (
            col,
            format!("expected `rand` to fit in 32 bits, found {r:#x}"),
        )
    })
}
