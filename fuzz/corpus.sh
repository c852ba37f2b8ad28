#!/usr/bin/env bash
# Grow a committed corpus the hygienic way: fuzz into a scratch directory
# (never into corpus/ or fuzz/corpus), then let `cargo fuzz cmin` keep the
# smallest set of inputs that covers everything both had, and write that back
# into corpus/<target>/. Crashes land in the scratch directory's artifacts,
# never in the repository.
#
#   fuzz/corpus.sh grow TARGET [SECONDS] [JOBS]   # default 600 s, 1 job
#   fuzz/corpus.sh bench [SECONDS] [COUNT]        # default 600 s, 1000 inputs
#
# `bench` writes corpus/bench/, the campaign inputs `packmodel bench harness`
# measures by default: the README's main job (SECONDS of `differential` from
# the seed corpus, libFuzzer seed 1) into a scratch corpus, of which the COUNT
# inputs with the lowest SHA-1 names (a sample that does not depend on the
# order libFuzzer found them in) replace corpus/bench/'s. Nothing else changes.
#
# Before anything changes, the committed inputs must still decode as their
# snapshot says (model/tests/corpus.rs); afterwards the script rewrites
# snapshots/corpus-decoding.snap for the new set (its lines for the inputs
# that were there do not change: they were just checked), so `cargo test
# --workspace` passes. Then review and commit: `git status corpus/` and `git
# diff snapshots/corpus-decoding.snap`.
# trace_parser's seeds are corpus/examples/ (text traces, written by hand),
# which this script does not touch.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: fuzz/corpus.sh grow TARGET [SECONDS] [JOBS] | bench [SECONDS] [COUNT]" >&2
    exit 2
}

# A scratch directory, removed on exit: new/ for the run's corpus, artifacts/
# for what it finds.
scratch_dir() {
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "$scratch/new" "$scratch/artifacts"
}

# fuzz_into TARGET FROM SECONDS [LIBFUZZER ARGS...]: fuzz from the corpus FROM
# (only read) into $scratch/new; a crash keeps the scratch directory and stops.
fuzz_into() {
    local target=$1 from=$2 seconds=$3
    shift 3
    cargo fuzz run "$target" -s none --no-trace-compares "$scratch/new" "$from" -- \
        -max_total_time="$seconds" -artifact_prefix="$scratch/artifacts/" "$@" || {
        echo "fuzz/corpus.sh: the run found something: see $scratch/artifacts (kept)" >&2
        trap - EXIT
        exit 1
    }
}

if [ "${1:-}" = bench ]; then
    seconds=${2:-600}
    count=${3:-1000}
    [[ "$seconds" =~ ^[0-9]+$ && "$count" =~ ^[0-9]+$ ]] || usage
    scratch_dir
    fuzz_into differential corpus/differential "$seconds" -seed=1
    mkdir -p corpus/bench
    find corpus/bench -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
    n=0
    for f in $(cd "$scratch/new" && ls | LC_ALL=C sort | head -n "$count"); do
        cp "$scratch/new/$f" corpus/bench/
        n=$((n + 1))
    done
    echo "corpus/bench: $n of $(ls "$scratch/new" | wc -l) inputs, $(cat corpus/bench/* | wc -c) bytes"
    git status --short corpus/bench | tail -3
    exit 0
fi

[ "${1:-}" = grow ] && [ -n "${2:-}" ] || usage
target=$2
seconds=${3:-600}
jobs=${4:-1}
committed=corpus/$target
[ -d "$committed" ] || { echo "fuzz/corpus.sh: $committed: no such corpus" >&2; exit 2; }
[ "$target" != trace_parser ] || { echo "fuzz/corpus.sh: trace_parser's corpus is corpus/examples (hand-written)" >&2; exit 2; }

# 0. The committed corpus decodes as committed: a drift must be fixed (or a
#    format version bumped) before new inputs are judged against it.
cargo test --quiet -p packmodel --test corpus || {
    echo "fuzz/corpus.sh: corpus/ no longer decodes as snapshots/corpus-decoding.snap says; fix that first" >&2
    exit 1
}

scratch_dir

# 1. Fuzz from the committed corpus into the scratch one (the first directory
#    receives new inputs; the committed one is only read).
# With JOBS > 1, libFuzzer's fork of N workers (each logs to fuzz-N.log in the
# current directory, which .gitignore keeps out).
parallel=()
[ "$jobs" -le 1 ] || parallel=(-jobs="$jobs" -workers="$jobs")
fuzz_into "$target" "$committed" "$seconds" "${parallel[@]}" -print_final_stats=1
# 2. Minimise committed + new together (cmin works in place on its directory).
cp "$committed"/* "$scratch/new"/ 2>/dev/null || true
cargo fuzz cmin "$target" -s none --no-trace-compares "$scratch/new" -- \
    -artifact_prefix="$scratch/artifacts/"
# 3. Write the minimised set back. Named inputs (the encodings of
#    corpus/examples/, and any a developer named by hand) are curated seeds and
#    stay even if cmin finds them redundant; inputs named by their SHA-1 are
#    campaign additions and stay only if cmin kept them.
before=$(ls "$committed" | wc -l)
find "$committed" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
# What is left are the named seeds: an input equal to one is not added again.
named=$(for c in "$committed"/*; do sha1sum < "$c" | cut -c1-40; done)
# The decoder reads and ignores byte 0, the input format version, which the
# corpus test wants current in every committed input: libFuzzer's mutations
# change it, so it is stamped back (the ops, and so the coverage, are the
# same).
stamp=""
if [ "$target" = differential ]; then
    version=$(sed -n 's/^pub const FORMAT_VERSION: u8 = \([0-9]*\);/\1/p' model/src/harness/decode.rs)
    [ -n "$version" ] || { echo "fuzz/corpus.sh: FORMAT_VERSION not found in model/src/harness/decode.rs" >&2; exit 1; }
    stamp=$(printf '\\%03o' "$version")
fi
for f in "$scratch/new"/*; do
    if [ -n "$stamp" ]; then
        { printf "$stamp"; tail -c +2 "$f"; } > "$f.v" && mv "$f.v" "$f"
    fi
    sha=$(sha1sum < "$f" | cut -c1-40)
    grep -qx "$sha" <<<"$named" || cp "$f" "$committed/$sha"
done
echo "corpus/$target: $before inputs before, $(ls "$committed" | wc -l) after cmin"
# 4. The decoding snapshot gains the new inputs' lines and loses the dropped
#    ones' (step 0 checked every other line).
INSTA_UPDATE=always cargo test --quiet -p packmodel --test corpus
git status --short "$committed" snapshots/corpus-decoding.snap
