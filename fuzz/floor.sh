#!/usr/bin/env bash
# libFuzzer's own limit for the differential target: the executions a second
# of a target built exactly as the README's main job builds `differential`
# (`cargo fuzz build -s none --no-trace-compares`: the same crate, profile and
# flags, the whole model linked and instrumented) whose body never runs the
# model, fuzzed from an empty corpus. What is left is libFuzzer's work per
# execution (mutating, running the callback, scanning the coverage counters
# and collecting features), which no speed-up of the model can go below.
#
#   fuzz/floor.sh [SECONDS]        # default 60; prints libFuzzer's DONE line
#
# The target lives in a scratch cargo-fuzz project that shares fuzz/target, so
# the instrumented model is built once for both. Nothing in the repository
# changes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
case "$seconds" in
    '' | *[!0-9]*) echo "fuzz/floor.sh: SECONDS must be a whole number, not \`$seconds'" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fuzz/fuzz_targets" "$work/corpus"
cp fuzz/Cargo.lock "$work/fuzz/"
# fuzz/Cargo.toml up to its first target, with the model found from here.
sed -n '/^\[\[bin\]\]/q; p' fuzz/Cargo.toml |
    sed "s|path = \"../model\"|path = \"$root/model\"|" > "$work/fuzz/Cargo.toml"
cat >> "$work/fuzz/Cargo.toml" <<'EOF'
[[bin]]
name = "floor"
path = "fuzz_targets/floor.rs"
test = false
doc = false
bench = false
EOF
cat > "$work/fuzz/fuzz_targets/floor.rs" <<'EOF'
#![no_main]
use libfuzzer_sys::fuzz_target;
use packmodel::harness::targets;

fuzz_target!(|data: &[u8]| {
    // Never true (no input is usize::MAX bytes long), but the optimiser cannot
    // know it: the model stays linked and instrumented as in `differential`.
    if std::hint::black_box(data.len()) == usize::MAX {
        targets::differential(data, targets::quirks_from_env(), targets::design_from_env())
    }
});
EOF
flags=(-s none --no-trace-compares --fuzz-dir "$work/fuzz" --target-dir "$root/fuzz/target")
cargo fuzz build "${flags[@]}" floor
cargo fuzz run "${flags[@]}" floor "$work/corpus" -- \
    -max_total_time="$seconds" -seed=1 -artifact_prefix="$work/" 2>&1 | grep -E "^#[0-9]+[[:space:]]+DONE"
