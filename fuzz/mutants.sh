#!/usr/bin/env bash
# Mutation testing of the machine, the kernels and the oracles, in short steps
# whose results are kept: cargo-mutants changes one thing in the code at a
# time (an operator, a condition, a function's result) and runs the README's
# tests, `cargo test --workspace`, on each mutant. A mutant the tests pass on
# is MISSED: a change nobody would notice.
#
#   fuzz/mutants.sh --resume [--minutes 15] [--jobs 1] [--missed] [SCOPE]...
#       measures the sampled mutants of the scopes that the ledger has no
#       current outcome for (none yet, or its function changed since), in
#       scope order, for at most that long, and writes each outcome into
#       fuzz/mutants/ledger/ as it comes. Commits nothing. With --missed, the
#       ledger's misses are measured again too (after a new test).
#   fuzz/mutants.sh --report [SCOPE]...
#       prints the table the README shows, from the ledger alone, and the
#       misses; fails if a pinned equivalent or unseen mutant names no current
#       mutant (stale after an edit: re-judge it).
#   fuzz/mutants.sh --resite [SCOPE]...
#       moves each stale pin to the mutant it most likely is now (same file
#       and description; same column, then nearest line) and says so; fails
#       if one is left to re-judge by hand. Review the diff.
#   fuzz/mutants.sh --check [--minutes 5]
#       CI tier (m): one slice of the sample, picked by the commit, for at
#       most that long; fails on a miss the ledger does not record, and on
#       stale pins.
#
# SCOPE: machine (model/src/machine/), kernel (model/src/kernel/), oracles
# (harness/oracle.rs, compare.rs, run.rs); default all three, in that order.
# The sample is 25 % of each file's mutants, fixed seed 24 (fuzz/mutants.py).
# Settings: .cargo/mutants.toml. Judged equivalent: fuzz/mutants/equivalent.txt;
# missed but out of any single-threaded test's sight: fuzz/mutants/unseen.txt.
# Needs cargo-mutants (`cargo install --locked cargo-mutants`).
#
# Exit status: 0 done, 1 a check failed (or cargo mutants did), 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h | --help | "") sed -n "2,35p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
command -v cargo-mutants >/dev/null || {
    echo "fuzz/mutants.sh: cargo-mutants is missing (cargo install --locked cargo-mutants)" >&2
    exit 2
}
exec python3 fuzz/mutants.py "$@"
