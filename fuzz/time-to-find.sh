#!/usr/bin/env bash
# Time to first detection of each quirk by libFuzzer, from an empty corpus, kept
# in a ledger so that a long measurement runs in short steps: one fuzz binary
# (built as the README's main job builds it) is run with PACKMODEL_QUIRKS set,
# once per quirk set and seed, and each run's result is appended to the ledger
# as it ends. A step starts no run after MINUTES (so it lasts at most MINUTES
# plus one BUDGET); the next step resumes with the runs the ledger lacks.
#
#   fuzz/time-to-find.sh run --binary BIN --ledger FILE [--budget 300]
#       [--seeds 5] [--minutes 10] QUIRKS...
#   fuzz/time-to-find.sh table BEFORE.tsv AFTER.tsv
#
# `run` appends `quirks<TAB>seed<TAB>found|not-found<TAB>executions<TAB>seconds<TAB>oracle`
# lines; seconds are wall time from the binary's start to its exit (a run not
# found within BUDGET counts as BUDGET and is marked). `table` prints, per
# quirk set in both ledgers (in AFTER's order), the median seconds and
# executions over the seeds (a seed not found counts as the budget, so a
# median is a lower bound where half or more were not found) and
# AFTER/BEFORE of the median seconds.
#
# BIN is e.g. fuzz/target/x86_64-unknown-linux-gnu/release/differential after
# `(cd fuzz && cargo fuzz build -s none --no-trace-compares differential)`; an
# older build from `git worktree add` and `cargo fuzz build --target-dir`.
# Run nothing else heavy beside it: the seconds are wall time.
#
# Exit status: 0 done (or nothing left to run), 1 a run failed to start,
# 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '9,11p' "$0" | sed 's/^# *//' >&2
    exit 2
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

table() {
    local before=$1 after=$2 f
    for f in "$before" "$after"; do
        [ -r "$f" ] || { echo "fuzz/time-to-find.sh: cannot read $f" >&2; exit 2; }
    done
    echo "| quirks | before: seconds | before: executions | after: seconds | after: executions | after / before |"
    echo "|---|---:|---:|---:|---:|---:|"
    cut -f1 "$after" | awk '!seen[$0]++' | while read -r q; do
        grep -q "^$q	" "$before" || continue
        local cells=() s
        for f in "$before" "$after"; do
            local n found sec ex
            n=$(awk -F'\t' -v q="$q" '$1 == q' "$f" | wc -l)
            found=$(awk -F'\t' -v q="$q" '$1 == q && $3 == "found"' "$f" | wc -l)
            sec=$(awk -F'\t' -v q="$q" '$1 == q {print $5}' "$f" | median)
            ex=$(awk -F'\t' -v q="$q" '$1 == q {print $4}' "$f" | median)
            cells+=("$(printf '%.2f' "$sec") ($found/$n found)" "$(printf '%.0f' "$ex")" "$sec")
        done
        s=$(echo "${cells[5]} / ${cells[2]}" | bc -l)
        printf '| `%s` | %s | %s | %s | %s | %.2f |\n' "$q" "${cells[0]}" "${cells[1]}" "${cells[3]}" "${cells[4]}" "$s"
    done
}

[ $# -gt 0 ] || usage
mode=$1
shift
case "$mode" in
    table) [ $# -eq 2 ] || usage; table "$1" "$2"; exit 0 ;;
    run) ;;
    *) usage ;;
esac

bin="" ledger="" budget=300 seeds=5 minutes=10
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) bin=$2; shift 2 ;;
        --ledger) ledger=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --minutes) minutes=$2; shift 2 ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ -n "$bin" ] && [ -n "$ledger" ] && [ $# -gt 0 ] || usage
[ -x "$bin" ] || { echo "fuzz/time-to-find.sh: --binary $bin is not an executable file" >&2; exit 2; }
for n in "$budget" "$seeds" "$minutes"; do
    case "$n" in '' | *[!0-9]*) echo "fuzz/time-to-find.sh: expected a whole number, found \`$n'" >&2; exit 2 ;; esac
done
touch "$ledger"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
for q in "$@"; do
    for s in $(seq 1 "$seeds"); do
        if awk -F'\t' -v q="$q" -v s="$s" '$1 == q && $2 == s {f=1} END {exit !f}' "$ledger"; then
            continue
        fi
        if [ $((SECONDS - start)) -ge $((minutes * 60)) ]; then
            echo "fuzz/time-to-find.sh: $minutes minutes are up; run again to resume" >&2
            exit 0
        fi
        rm -rf "$work/corpus" "$work/art"
        mkdir -p "$work/corpus" "$work/art"
        t0=$(date +%s.%N)
        PACKMODEL_QUIRKS=$q "$bin" "$work/corpus" -seed="$s" -max_total_time="$budget" \
            -print_final_stats=1 -artifact_prefix="$work/art/" > "$work/log" 2>&1 || true
        t1=$(date +%s.%N)
        if grep -q "INFO: Seed: $s" "$work/log"; then :; else
            tail -n 20 "$work/log" >&2
            echo "fuzz/time-to-find.sh: $bin did not start as a libFuzzer binary" >&2
            exit 1
        fi
        execs=$(grep -m1 -o 'number_of_executed_units: [0-9]*' "$work/log" | awk '{print $2}' || true)
        [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$work/log" | tail -1 | tr -d '#' || true)
        if grep -q "deadly signal" "$work/log"; then
            res=found
            sec=$(echo "$t1 - $t0" | bc -l)
            oracle=$(grep -m1 -o 'found by the [a-zA-Z^ -]* oracle' "$work/log" | sed 's/found by the //; s/ oracle//' || true)
        else
            res=not-found sec=$budget oracle=-
        fi
        printf '%s\t%s\t%s\t%s\t%.2f\t%s\n' "$q" "$s" "$res" "${execs:-0}" "$sec" "${oracle:-?}" >> "$ledger"
        echo "$q seed $s: $res, ${execs:-0} executions, $(printf '%.2f' "$sec") s" >&2
    done
done
