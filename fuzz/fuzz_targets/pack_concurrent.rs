#![no_main]
//! Real threads against one lock-free chunk allocator: ownership, memory and
//! linearizability oracles (`packmodel::harness::concurrent`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| packmodel::harness::concurrent::fuzz(data));
