#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| packmodel::harness::targets::trace_parser(data));
