#![no_main]
use libfuzzer_sys::fuzz_target;
use packmodel::harness::targets;

fuzz_target!(|data: &[u8]| {
    targets::differential(data, targets::quirks_from_env(), targets::design_from_env())
});
