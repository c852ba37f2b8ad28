//! Trace → fuzz bytes: the inverse of [`super::decode`], so every regression and
//! example also seeds the fuzz corpus (`packmodel encode`).
//!
//! Each op is written as its tag and the "exact" encoding of its arguments,
//! with handles as their index in the decoder's live lists. A trace the decoder
//! could not have produced — an op that breaks the driver discipline, a `vfree`
//! before the driver's cleanup, more than [`MAX_OPS`] ops, a value outside what
//! the decoder can express — is an error naming the op. The result is checked by
//! decoding it again.

use std::fmt;

use super::decode::{FORMAT_VERSION, Gen, Kind, MAX_OPS, config_to_byte, decode};
use super::op::{DRIVER_MAPPING, Op, limits};
use super::trace::{OpText, Trace};
use crate::kernel::{FailSite, HugeHint, SetMemory};
use crate::machine::MachineConfig;
use crate::machine::consts::PAGE_SIZE;

/// Why a trace cannot be fuzz input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError {
    /// Index of the op, if one is to blame.
    pub op: Option<usize>,
    pub msg: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Some(i) => write!(f, "op {i}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: usize) {
        self.0.extend((v as u16).to_le_bytes());
    }
    /// A handle pick: one byte.
    fn pick(&mut self, index: usize) -> Result<(), String> {
        self.0
            .push(u8::try_from(index).map_err(|_| "more than 256 objects live".to_string())?);
        Ok(())
    }
    fn u32(&mut self, v: u64) {
        self.0.extend((v as u32).to_le_bytes());
    }
}

/// Encodes `trace` (its quirks are not part of fuzz input).
pub fn encode(trace: &Trace) -> Result<Vec<u8>, EncodeError> {
    if trace.ops.len() > MAX_OPS {
        return Err(EncodeError {
            op: None,
            msg: format!(
                "{} ops; fuzz input holds at most {MAX_OPS}",
                trace.ops.len()
            ),
        });
    }
    if !MachineConfig::MEM_SIZES_MIB.contains(&trace.config.mem_mib) {
        return Err(EncodeError {
            op: None,
            msg: format!(
                "config mem={}M; fuzz input holds 16M, 32M, 64M or 128M",
                trace.config.mem_mib
            ),
        });
    }
    let mut w = W(vec![FORMAT_VERSION, config_to_byte(&trace.config)]);
    let mut g = Gen::new(trace.config);
    for (i, op) in trace.ops.iter().enumerate() {
        let err = |msg: String| EncodeError {
            op: Some(i),
            msg: format!("{}: {msg}", OpText(op)),
        };
        w.0.extend(Kind::of(op).tag());
        encode_op(op, &g, &mut w).map_err(err)?;
        g.push(op.clone());
    }
    let back = decode(&w.0);
    if back.ops != trace.ops {
        let i = back
            .ops
            .iter()
            .zip(&trace.ops)
            .position(|(a, b)| a != b)
            .unwrap_or(back.ops.len().min(trace.ops.len()));
        return Err(EncodeError {
            op: Some(i),
            msg:
                "the decoder would not produce this op here (a vfree before the driver's cleanup?)"
                    .to_string(),
        });
    }
    Ok(w.0)
}

fn index<T: PartialEq + Copy, U>(list: &[(T, U)], id: T, what: &str) -> Result<usize, String> {
    list.iter()
        .position(|e| e.0 == id)
        .ok_or_else(|| format!("{what} is not live"))
}

fn encode_op(op: &Op, g: &Gen, w: &mut W) -> Result<(), String> {
    let area = |id| index(&g.areas, id, "the area");
    let page = |id: super::op::PageId| {
        g.pages
            .iter()
            .position(|p| *p == id)
            .ok_or("the page is not live".to_string())
    };
    let exact_size = |w: &mut W, size: u64| {
        w.u8(255);
        w.u8(255);
        w.u32(size - 1);
    };
    match op {
        Op::Vmalloc { size, flags } => {
            exact_size(w, *size);
            let huge = match flags.huge {
                HugeHint::Default => 0,
                HugeHint::Allow => 1,
                HugeHint::Forbid => 2,
            };
            w.u8(huge | u8::from(flags.zero) << 2 | u8::from(flags.nofail) << 3);
        }
        Op::Kvmalloc { size, nofail } => {
            exact_size(w, *size);
            w.u8(u8::from(*nofail));
        }
        Op::Vfree { area: a } => w.pick(area(*a)?)?,
        Op::Vwrite { area: a, off, data } => {
            w.pick(area(*a)?)?;
            w.u32(*off);
            w.u16(data.len() - 1);
            w.0.extend(data);
        }
        Op::Vmemset {
            area: a,
            off,
            value,
            len,
        } => {
            w.pick(area(*a)?)?;
            w.u32(*off);
            w.u8(*value);
            w.u32(*len as u64 - 1);
        }
        Op::Vread { area: a, off, len } => {
            w.pick(area(*a)?)?;
            w.u32(*off);
            w.u16(*len as usize - 1);
        }
        Op::VmallocToPage { area: a, off } => {
            w.pick(area(*a)?)?;
            w.u16(0xffff);
            w.u32(*off);
        }
        Op::SetMapping { page: p, value } => {
            w.pick(page(*p)?)?;
            match *value {
                0 => w.u8(0),
                DRIVER_MAPPING => w.u8(1),
                v => {
                    return Err(format!(
                        "mapping {v:#x} is neither NULL nor the driver's ({DRIVER_MAPPING:#x})"
                    ));
                }
            }
        }
        Op::SetIndex { page: p, value } => {
            w.pick(page(*p)?)?;
            w.u8(u8::try_from(*value).map_err(|_| "an index above 255".to_string())?);
        }
        Op::GetPage { page: p }
        | Op::PutPage { page: p }
        | Op::ListAdd { page: p }
        | Op::ListDel { page: p }
        | Op::InitListHead { page: p }
        | Op::SetReserved { page: p }
        | Op::ClearReserved { page: p }
        | Op::PageCount { page: p }
        | Op::PageMapping { page: p }
        | Op::PageIndex { page: p }
        | Op::PagePrivate { page: p } => w.pick(page(*p)?)?,
        Op::ProgLoad {
            len,
            rand,
            classic: true,
            ..
        } => {
            exact_size(w, *len as u64);
            w.u32(*rand as u64);
        }
        Op::ProgLoad {
            len, align, rand, ..
        } => {
            exact_size(w, *len as u64);
            w.u8(align.trailing_zeros() as u8);
            w.u32(*rand as u64);
        }
        Op::ProgLoadFail { len, rand } => {
            exact_size(w, *len as u64);
            w.u32(*rand as u64);
        }
        Op::SetPagePrivate { page: p, value } => {
            w.pick(page(*p)?)?;
            w.u8(
                u8::try_from(*value).map_err(|_| "a private value above 255".to_string())?
                    ^ super::decode::PRIVATE_XOR,
            );
        }
        Op::ProgLoadSubprogsFail { lens, fail, rand } => {
            w.u8((lens.len() - 2) as u8);
            for l in lens {
                exact_size(w, *l as u64);
            }
            w.u8(*fail);
            w.u32(*rand as u64);
        }
        Op::SetMemory {
            area: a,
            off,
            pages,
            change,
        } => {
            let size = g.areas[area(*a)?].1;
            let npages = size.div_ceil(PAGE_SIZE);
            let first = off / PAGE_SIZE;
            if off % PAGE_SIZE != 0 || first + *pages as u64 > npages {
                return Err("the decoder only changes whole pages inside the area".to_string());
            }
            w.pick(area(*a)?)?;
            w.u8(SetMemory::ALL
                .iter()
                .position(|c| c == change)
                .expect("listed") as u8);
            w.u16(first as usize);
            w.u16(*pages as usize - 1);
        }
        Op::VmallocNode { size, align, flags } => {
            exact_size(w, *size);
            w.u8(align.trailing_zeros() as u8);
            w.u8(u8::from(flags.zero) | u8::from(flags.nofail) << 1);
        }
        Op::StaleVread { area: a, off, len } => {
            w.pick(index(&g.freed_areas, *a, "the freed area")?)?;
            w.u32(*off);
            w.u16(*len as usize - 1);
        }
        Op::DirectMapStats => {}
        Op::ExecmemAlloc { size } => {
            w.u8(255);
            w.u32(*size - 1);
        }
        Op::ExecmemFree { area: a } => {
            w.pick(index(&g.execmem, *a, "the execmem allocation")?)?;
        }
        Op::FailNth { site, nth } => {
            let s = FailSite::ALL
                .iter()
                .position(|x| x == site)
                .expect("listed") as u8;
            if !(1..=4).contains(nth) {
                return Err(format!("fail_nth's N is {nth}; fuzz input holds 1 to 4"));
            }
            w.u8(s | (nth - 1) << 4);
        }
        Op::KcoreRead { prog, off, len } => {
            w.pick(index(&g.progs, *prog, "the program")?)?;
            w.u32(u64::from(*off));
            w.u16(*len as usize - 1);
        }
        Op::ProgFree { prog } | Op::ProgRun { prog } => {
            w.pick(index(&g.progs, *prog, "the program")?)?
        }
        Op::ProgProbe { prog, off } | Op::StaleProbe { prog, off } => {
            let list = if matches!(op, Op::ProgProbe { .. }) {
                &g.progs
            } else {
                &g.freed
            };
            w.pick(index(list, *prog, "the program")?)?;
            w.u8(255);
            w.u8(255);
            w.u32((*off as i64 + limits::MAX_PROBE_OFF as i64) as u64);
        }
    }
    Ok(())
}
