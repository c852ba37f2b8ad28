#!/usr/bin/env bash
# Two commands' CPU time, paired: A and B run in turn (A B A B ...), RUNS
# pairs after one warm-up pair that is not counted, and the ratio A/B of
# user + system seconds taken pair by pair, so that a machine whose speed
# drifts during the call moves both halves of a pair alike. Prints each
# command's median CPU seconds and the median, least and greatest A/B: quote
# the median. Whole processes, start-up included, as the kernel accounts
# them to the waiting shell (bash's `times`, in milliseconds); the commands'
# output is thrown away. (Peak RSS: `bench harness` prints its own.)
#
#   fuzz/paired.sh [-n RUNS] [--pin CPU] 'COMMAND_A' 'COMMAND_B'
#
# e.g. a build against the one before it, on the campaign set:
#
#   fuzz/paired.sh -n 20 "NEW/packmodel bench harness --corpus corpus/bench --campaign EMPTY \
#       --generated 0 --rounds 1" "OLD/packmodel bench harness --corpus corpus/bench \
#       --campaign EMPTY --generated 0 --rounds 1"
#
# (EMPTY an empty directory: no campaign corpus beside the set.) --pin runs
# both on one CPU (taskset). Exit status: 0 done, 1 a command failed, 2 bad
# usage.
set -euo pipefail

usage() {
    sed -n '10p' "$0" | sed 's/^# *//' >&2
    exit 2
}

runs=10 pin=""
while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
        --pin) [ $# -ge 2 ] || usage; pin=$2; shift 2 ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -eq 2 ] || usage
case "$runs" in
    '' | *[!0-9]* | 0) echo "fuzz/paired.sh: RUNS must be a positive whole number, not \`$runs'" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=()
[ -z "$pin" ] || prefix=(taskset -c "$pin")

# cpu COMMAND: runs it once in a subshell and prints the user + system
# seconds of the subshell's children (bash's `times`, in milliseconds): the
# command itself, which the `sh -c exec` becomes.
cpu() {
    local t
    t=$(
        "${prefix[@]}" sh -c "exec $1" > /dev/null 2>&1 || exit 1
        times
    ) || { echo "fuzz/paired.sh: failed: $1" >&2; exit 1; }
    echo "$t" | awk 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
        printf "%.3f\n", s
    }'
}

for i in $(seq 0 "$runs"); do
    a=$(cpu "$1")
    b=$(cpu "$2")
    [ "$i" -eq 0 ] || echo "$a $b" >> "$work/pairs"
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
echo "pairs $runs"
echo "A cpu s (median)   $(awk '{print $1}' "$work/pairs" | median)"
echo "B cpu s (median)   $(awk '{print $2}' "$work/pairs" | median)"
awk '{if ($2 > 0) printf "%.4f\n", $1 / $2}' "$work/pairs" | sort -g > "$work/ratios"
echo "A/B cpu median     $(median < "$work/ratios")"
echo "A/B cpu least      $(head -1 "$work/ratios")"
echo "A/B cpu greatest   $(tail -1 "$work/ratios")"
