#!/usr/bin/env bash
# Executions and seconds to first detection of each quirk set, from nothing, by
# `cargo fuzz run differential -s none` (empty corpus) and by `packmodel hunt`,
# over seeds 1..SEEDS; prints a Markdown table of the medians and which oracle
# fired. Usage (from the repository root):
#
#   fuzz/detect.sh [--seeds N] [--budget SECONDS] QUIRKS [QUIRKS ...]
#   fuzz/detect.sh uninit-pack huge-vmalloc-opt-out,compound-huge-vmalloc
#
# Needs cargo-fuzz; builds the target once (-s none --no-trace-compares) and the
# packmodel binary (--release).
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=5
budget=300
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: fuzz/detect.sh [--seeds N] [--budget S] QUIRKS..." >&2; exit 2; }

cargo build --release -q -p packmodel
(cd fuzz && cargo fuzz build -s none --no-trace-compares differential >/dev/null 2>&1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }

echo "| quirks | cargo fuzz: executions | cargo fuzz: seconds | hunt: executions | hunt: seconds | oracle (fuzz / hunt) |"
echo "|---|---|---|---|---|---|"
for q in "$@"; do
    : > "$work/fe"; : > "$work/fs"; : > "$work/he"; : > "$work/hs"; : > "$work/fo"; : > "$work/ho"
    for s in $(seq 1 "$seeds"); do
        rm -rf "$work/corpus" "$work/art"; mkdir -p "$work/corpus" "$work/art"
        t0=$(now)
        PACKMODEL_QUIRKS=$q cargo fuzz run differential -s none --no-trace-compares "$work/corpus" -- \
            -seed="$s" -max_total_time="$budget" -print_final_stats=1 -artifact_prefix="$work/art/" \
            > "$work/fuzz.log" 2>&1 || true
        t1=$(now)
        if grep -q "deadly signal" "$work/fuzz.log"; then
            execs=$(grep -m1 -o 'number_of_executed_units: [0-9]*' "$work/fuzz.log" | awk '{print $2}' || true)
            # Without final stats, the last progress line before the crash.
            [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$work/fuzz.log" | tail -1 | tr -d '#' || true)
            echo "${execs:-0}" >> "$work/fe"
            echo "$t1 - $t0" | bc -l >> "$work/fs"
            oracle=$(grep -m1 -o 'found by the [a-zA-Z^ -]* oracle' "$work/fuzz.log" | sed 's/found by the //; s/ oracle//' || true)
            echo "${oracle:-?}" >> "$work/fo"
        else
            echo "not found" >> "$work/fo"
        fi
        out=$(./target/release/packmodel hunt --quirks "$q" --seed "$s" --seconds "$budget" 2>/dev/null || true)
        line=$(echo "$out" | grep -m1 '^found:' || true)
        if [ -n "$line" ]; then
            echo "$line" | sed 's/.* after \([0-9]*\) executions in .*/\1/' >> "$work/he"
            echo "$line" | sed 's/.* executions in \([0-9.]*\) s.*/\1/' >> "$work/hs"
            echo "$line" | sed 's/found: the \(.*\) oracle fired.*/\1/' >> "$work/ho"
        else
            echo "not found" >> "$work/ho"
        fi
        echo "$q seed $s: fuzz $(tail -1 "$work/fo") $(tail -1 "$work/fe" 2>/dev/null), hunt $(tail -1 "$work/ho")" >&2
    done
    fe=$( [ -s "$work/fe" ] && median < "$work/fe" || echo "—")
    fs=$( [ -s "$work/fs" ] && median < "$work/fs" | xargs printf '%.2f' || echo "—")
    he=$( [ -s "$work/he" ] && median < "$work/he" || echo "—")
    hs=$( [ -s "$work/hs" ] && median < "$work/hs" | xargs printf '%.3f' || echo "—")
    fo=$(sort "$work/fo" | uniq -c | sort -rn | head -1 | sed 's/^ *[0-9]* //')
    ho=$(sort "$work/ho" | uniq -c | sort -rn | head -1 | sed 's/^ *[0-9]* //')
    echo "| \`$q\` | $fe ($(wc -l < "$work/fe")/$seeds found) | $fs | $he ($(wc -l < "$work/he")/$seeds found) | $hs | $fo / $ho |"
done
