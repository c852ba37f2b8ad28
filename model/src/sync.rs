//! Atomics and locks for the lock-free pack allocator: from `loom` under
//! `cfg(loom)` (model checking), from `std` otherwise.

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, atomic};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, atomic};
