//! Ops, text traces, running ops on kernels, oracles and reports.

pub mod decode;
pub mod driver;
pub mod obs;
pub mod op;
pub mod oracle;
pub mod replay;
pub mod session;
pub mod targets;
pub mod trace;
