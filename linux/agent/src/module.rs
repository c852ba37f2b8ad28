//! `/dev/packmodel_guest`: one `write()` of a request (and its payload), one
//! `read()` of the response (and its payload). The layout is
//! `linux/module/packmodel_guest.h`'s, little-endian.

use std::fs::File;
use std::io::{self, Read, Write};

pub const VMALLOC: u32 = 1;
pub const VFREE: u32 = 2;
pub const VREAD: u32 = 3;
pub const VWRITE: u32 = 4;
pub const VMEMSET: u32 = 5;
pub const STALE_READ: u32 = 6;
pub const VMALLOC_TO_PAGE: u32 = 7;
pub const PAGE_OP: u32 = 8;
pub const SET_MEMORY: u32 = 9;
pub const PEEK: u32 = 11;
pub const SPAN: u32 = 12;

pub const F_HUGE: u64 = 0x1;
pub const F_ZERO: u64 = 0x2;
pub const F_NOFAIL: u64 = 0x4;
pub const F_KVMALLOC: u64 = 0x8;

pub const PG_READ: u64 = 0;
pub const PG_GET: u64 = 1;
pub const PG_PUT: u64 = 2;
pub const PG_SET_MAPPING: u64 = 3;
pub const PG_SET_INDEX: u64 = 4;
pub const PG_LIST_ADD: u64 = 5;
pub const PG_LIST_DEL: u64 = 6;
pub const PG_INIT_LIST_HEAD: u64 = 7;
pub const PG_SET_RESERVED: u64 = 8;
pub const PG_CLEAR_RESERVED: u64 = 9;
pub const PG_SET_PRIVATE: u64 = 10;

pub const MAP_PRESENT: u64 = 0x100;
pub const MAP_RW: u64 = 0x200;
pub const MAP_NX: u64 = 0x400;

/// `val[]` of an area.
pub const A_NR_PAGES: usize = 2;
pub const A_PAGE_ORDER: usize = 3;
pub const A_VMAP: usize = 4;
pub const A_ALIAS: usize = 5;
/// `val[]` of a page.
pub const P_REFCOUNT: usize = 2;
pub const P_MAPCOUNT: usize = 3;
pub const P_MAPPING: usize = 4;
pub const P_INDEX: usize = 5;
pub const P_PRIVATE: usize = 6;
pub const P_COMPOUND: usize = 7;
pub const P_PAGE_COUNT: usize = 8;
pub const P_ALIAS: usize = 10;
/// `val[]` of a mapping pair.
pub const M_VMAP: usize = 0;
pub const M_ALIAS: usize = 1;
pub const M_AREA: usize = 2;
/// `val[]` of a fault: the address, then its mapping.
pub const FAULT_MAP: usize = 1;

const NR_VAL: usize = 16;
const REQ_LEN: usize = 4 + 4 + 3 * 8 + 8;
const RSP_LEN: usize = 8 + NR_VAL * 8 + 8;
pub const MAX_PAYLOAD: usize = 4096;

/// A response.
pub struct Rsp {
    /// 0 or `-errno`.
    pub ret: i64,
    pub val: [u64; NR_VAL],
    pub payload: Vec<u8>,
}

pub struct Module(File);

impl Module {
    pub fn open(path: &str) -> io::Result<Self> {
        File::options()
            .read(true)
            .write(true)
            .open(path)
            .map(Module)
    }

    /// Runs one command: `slot`, `arg`, and `len` bytes of `data` (or
    /// `len` wanted back).
    pub fn call(
        &mut self,
        cmd: u32,
        slot: u32,
        arg: [u64; 3],
        len: u64,
        data: &[u8],
    ) -> io::Result<Rsp> {
        let mut req = Vec::with_capacity(REQ_LEN + data.len());
        req.extend(cmd.to_le_bytes());
        req.extend(slot.to_le_bytes());
        for a in arg {
            req.extend(a.to_le_bytes());
        }
        req.extend(len.to_le_bytes());
        req.extend(data);
        self.0.write_all(&req)?;
        let mut buf = vec![0u8; RSP_LEN + MAX_PAYLOAD];
        let n = self.0.read(&mut buf)?;
        if n < RSP_LEN {
            return Err(io::Error::other(format!("short response: {n} bytes")));
        }
        let word = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8"));
        let mut val = [0; NR_VAL];
        for (i, v) in val.iter_mut().enumerate() {
            *v = word(1 + i);
        }
        let plen = word(1 + NR_VAL) as usize;
        if RSP_LEN + plen != n {
            return Err(io::Error::other(format!(
                "response of {n} bytes says its payload is {plen}"
            )));
        }
        Ok(Rsp {
            ret: word(0) as i64,
            val,
            payload: buf[RSP_LEN..n].to_vec(),
        })
    }
}
