#!/usr/bin/env bash
# Replays every fuzz input and trace under the given paths with two packmodel
# binaries and lists those whose replay (every op, what each kernel showed, the
# verdict, the exit status) differs: the check for a change that claims to keep
# behaviour, such as speed work on the machine.
#
#   fuzz/same-behaviour.sh OLD_BIN NEW_BIN [--quirks SET]... [--ignore REGEX]... [PATH]...
#
# PATHs are directories or files: `*.trace` files are replayed as they are,
# anything else is decoded as a fuzz input (`packmodel fmt`) first. Default
# paths: corpus/differential corpus/examples corpus/regressions. Each
# `--quirks SET` (comma-separated, as `packmodel replay --quirks` takes) adds a
# pass over the fuzz inputs with those quirks on; traces keep their own.
# Each `--ignore REGEX` (an extended regular expression) drops the report
# lines it matches from both replays before they are compared, for a change
# that adds lines to every report. A fuzz input that the two builds decode to
# different ops (a byte in a tag slot the old decoder reserved) is listed as
# DECODES DIFFERENTLY and counted apart.
#
# Build the old binary from another checkout, e.g.
#   git worktree add /tmp/old main && (cd /tmp/old && cargo build --release -p packmodel)
#   fuzz/same-behaviour.sh /tmp/old/target/release/packmodel target/release/packmodel
#
# Exit status: 0 if no input differs, 1 if some do, 2 on bad usage.
set -euo pipefail

usage() {
    sed -n '7,8p' "$0" | sed 's/^# *//' >&2
    exit 2
}
[ $# -ge 2 ] || usage
old=$1 new=$2
shift 2
for b in "$old" "$new"; do
    [ -x "$b" ] || { echo "$b: not an executable packmodel binary" >&2; exit 2; }
done
quirk_sets=("")
paths=()
ignore=()
while [ $# -gt 0 ]; do
    case $1 in
    --quirks) [ $# -ge 2 ] || usage; quirk_sets+=("$2"); shift 2 ;;
    --ignore) [ $# -ge 2 ] || usage; ignore+=(-e "$2"); shift 2 ;;
    -*) usage ;;
    *) paths+=("$1"); shift ;;
    esac
done
[ ${#paths[@]} -gt 0 ] || paths=(corpus/differential corpus/examples corpus/regressions)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# replay BIN FILE QUIRKS OUT: the replay's output and exit status (and, for
# a fuzz input, the trace it decodes to in OUT.trace).
replay() {
    local bin=$1 file=$2 quirks=$3 out=$4 trace=$2
    if [[ $file != *.trace ]]; then
        trace="$work/input.trace"
        "$bin" fmt "$file" > "$trace" 2>&1 || true
        cp "$trace" "$out.trace"
    fi
    local args=()
    [ -z "$quirks" ] || args=(--quirks "$quirks")
    set +e
    "$bin" replay "${args[@]}" "$trace" > "$out.full" 2>&1
    echo "exit status $?" >> "$out.full"
    if [ ${#ignore[@]} -gt 0 ]; then
        grep -v -E "${ignore[@]}" "$out.full" > "$out"
    else
        cp "$out.full" "$out"
    fi
    set -e
}

files=()
for p in "${paths[@]}"; do
    if [ -d "$p" ]; then
        while IFS= read -r f; do files+=("$f"); done < <(find "$p" -type f ! -name '.*' | sort)
    elif [ -f "$p" ]; then
        files+=("$p")
    else
        echo "$p: no such file or directory" >&2
        exit 2
    fi
done

runs=0 differ=0 decodes=0
for quirks in "${quirk_sets[@]}"; do
    for f in "${files[@]}"; do
        # A trace names its own quirks; only fuzz inputs get each set.
        [[ -z $quirks || $f != *.trace ]] || continue
        replay "$old" "$f" "$quirks" "$work/old"
        replay "$new" "$f" "$quirks" "$work/new"
        runs=$((runs + 1))
        if [[ $f != *.trace ]] && ! cmp -s "$work/old.trace" "$work/new.trace"; then
            decodes=$((decodes + 1))
            echo "DECODES DIFFERENTLY: $f"
            continue
        fi
        if ! cmp -s "$work/old" "$work/new"; then
            differ=$((differ + 1))
            echo "DIFFERS: $f${quirks:+ (quirks $quirks)}"
            { diff "$work/old" "$work/new" || true; } | head -n 6 | sed 's/^/    /'
        fi
    done
done
echo "$runs replays, $differ differ, $decodes decode differently"
[ "$differ" -eq 0 ] && [ "$decodes" -eq 0 ]
