//! Ops, text traces, fuzz-input decoding, running ops on kernels, oracles
//! (among them [`concurrent`], the checker of the lock-free pack allocator
//! under real threads) and reports.

pub mod budget;
pub mod compare;
pub mod concurrent;
pub mod decode;
pub mod driver;
pub mod encode;
pub mod ground;
pub mod hunt;
pub mod json;
pub mod obs;
pub mod op;
pub mod oracle;
pub mod report;
pub mod rng;
pub mod run;
pub mod session;
pub mod shadow;
pub mod shrink;
pub mod targets;
pub mod text;
pub mod trace;
