#!/usr/bin/env bash
# Mutation testing of the kernels, the machine and the oracles: cargo-mutants
# changes one thing in the code at a time (an operator, a condition, a
# function's result) and runs the README's tests, `cargo test --workspace`,
# on each mutant. A mutant the tests pass on is MISSED: a change nobody would
# notice. Settings, and the mutants judged equivalent (each with its reason),
# are in .cargo/mutants.toml.
#
#   fuzz/mutants.sh [--shard K/N] [--jobs J] [--out DIR] [--ledger FILE] [SCOPE]...
#   fuzz/mutants.sh --missed-from DIR [--out DIR] [--jobs J] [SCOPE]...
#   fuzz/mutants.sh --report [--ledger FILE] DIR...
#
# SCOPE is `kernel` (model/src/kernel/), `machine` (model/src/machine/),
# `oracles` (harness/oracle.rs, compare.rs, run.rs), or a path glob under the
# repository root; default: all three areas. `--shard K/N` runs the K-th of N
# round-robin shards (K from 0) of the mutants in scope. Prints, per area,
# caught / missed / unviable / timeout and the share of viable mutants caught
# (a timeout counts as caught: the tests did not pass), then the missed ones.
#
# Needs cargo-mutants (`cargo install --locked cargo-mutants`). A whole run of
# the three areas is about 2,900 mutants, some 6 hours with -j 2 on this
# machine; a shard of N=400 takes a few minutes.
#
# `--ledger FILE` names missed mutants already known (one per line, as
# cargo-mutants names them, line and column numbers left out; `#` comments):
# they are listed but do not fail the run. Only a missed mutant that is
# neither equivalent (.cargo/mutants.toml) nor in the ledger does.
#
# `--missed-from DIR` runs only the mutants that DIR's run missed
# (by name without line numbers), for after the tests have changed.
#
# `--report DIR...` runs nothing: it prints the same summary for earlier
# runs' output directories taken together: a mutant's outcomes in a later
# directory replace an earlier one's (mutants are matched by name without
# line numbers), so a run of the missed ones on newer code updates them,
# e.g. `fuzz/mutants.sh --out NEW --missed-from OLD`. A missed mutant that .cargo/mutants.toml now lists as equivalent is
# counted as equivalent, not missed, and mutants of code that is no longer
# there (by `cargo mutants --list` now) are left out.
#
# Exit status: 0 if no mutant was missed outside the ledger, 1 if one was, 2
# on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

shard="" jobs=2 out="" ledger=/dev/null report="" from=""
args=()
while [ $# -gt 0 ]; do
    case $1 in
    --shard) shard=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --ledger) ledger=$2; shift 2 ;;
    --report) report=1; shift ;;
    --missed-from) from=$2; shift 2 ;;
    -h|--help) sed -n "2,35p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz/mutants.sh: unknown option $1" >&2; exit 2 ;;
    *) args+=("$1"); shift ;;
    esac
done
[ -f "$ledger" ] || [ "$ledger" = /dev/null ] || { echo "fuzz/mutants.sh: $ledger: no such ledger" >&2; exit 2; }

outcomes=()
if [ -n "$report" ]; then
    [ ${#args[@]} -gt 0 ] || { echo "fuzz/mutants.sh: --report needs output directories" >&2; exit 2; }
    for d in "${args[@]}"; do
        f=$d/mutants.out/outcomes.json
        [ -f "$f" ] || { echo "fuzz/mutants.sh: $f: no such file (expected a cargo-mutants output directory)" >&2; exit 2; }
        outcomes+=("$f")
    done
    # Mutants of code since removed or changed do not count.
    current=$(mktemp)
    cargo mutants -p packmodel -f 'model/src/kernel/**' -f 'model/src/machine/**' \
        -f model/src/harness/oracle.rs -f model/src/harness/compare.rs -f model/src/harness/run.rs \
        --list >"$current"
else
    [ ${#args[@]} -gt 0 ] || args=(kernel machine oracles)
    command -v cargo-mutants >/dev/null || {
        echo "fuzz/mutants.sh: cargo-mutants is missing (cargo install --locked cargo-mutants)" >&2
        exit 2
    }
    files=()
    for s in "${args[@]}"; do
        case $s in
        kernel) files+=(-f 'model/src/kernel/**') ;;
        machine) files+=(-f 'model/src/machine/**') ;;
        oracles) files+=(-f model/src/harness/oracle.rs -f model/src/harness/compare.rs -f model/src/harness/run.rs) ;;
        *) files+=(-f "$s") ;;
        esac
    done
    [ -n "$out" ] || out=$(mktemp -d)
    run=(-p packmodel "${files[@]}" -j "$jobs" --no-shuffle -o "$out")
    [ -z "$shard" ] || run+=(--shard "$shard" --sharding round-robin)
    if [ -n "$from" ]; then
        f=$from/mutants.out/outcomes.json
        [ -f "$f" ] || { echo "fuzz/mutants.sh: $f: no such file (expected a cargo-mutants output directory)" >&2; exit 2; }
        mapfile -t res < <(python3 - "$f" <<'EOF'
import json, re, sys
for o in json.load(open(sys.argv[1]))["outcomes"]:
    m = o["scenario"].get("Mutant") if isinstance(o["scenario"], dict) else None
    if m and o["summary"] == "MissedMutant":
        file, rest = re.match(r"([^:]+):\d+:\d+: (.*)", m["name"]).groups()
        print(f"^{re.escape(file)}:\\d+:\\d+: {re.escape(rest)}$")
EOF
        )
        [ ${#res[@]} -gt 0 ] || { echo "fuzz/mutants.sh: $from missed nothing"; exit 0; }
        for r in "${res[@]}"; do run+=(-F "$r"); done
    fi
    set +e
    cargo mutants "${run[@]}"
    status=$?
    set -e
    # 0: nothing missed; 2: some missed; 3: timeouts; 4: the baseline failed.
    case $status in 0 | 2 | 3) ;; *) echo "fuzz/mutants.sh: cargo mutants failed ($status)" >&2; exit "$status" ;; esac
    outcomes=("$out/mutants.out/outcomes.json")
fi

python3 - "$ledger" "${current:-}" "${outcomes[@]}" <<'EOF'
import json, re, sys, tomllib
from collections import Counter

def bare(name):
    """A mutant's name without its line and column numbers."""
    return re.sub(r":\d+:\d+:", ":", name, count=1).strip()

known = {bare(l) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
config = tomllib.load(open(".cargo/mutants.toml", "rb"))
equivalent = [re.compile(r) for r in config.get("exclude_re", [])]

AREAS = [
    ("kernel", lambda f: f.startswith("model/src/kernel/")),
    ("machine", lambda f: f.startswith("model/src/machine/")),
    ("oracles", lambda f: f in ("model/src/harness/oracle.rs", "model/src/harness/compare.rs", "model/src/harness/run.rs")),
]
KIND = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable", "Timeout": "timeout"}
# A later run's outcomes for a mutant (named without line numbers, which
# move as the code does) replace an earlier run's.
latest = {}
present = {bare(l) for l in open(sys.argv[2])} if sys.argv[2] else None
for path in sys.argv[3:]:
    run = {}
    for o in json.load(open(path))["outcomes"]:
        m = o["scenario"].get("Mutant") if isinstance(o["scenario"], dict) else None
        if m:
            run.setdefault(bare(m["name"]), []).append((m["name"], m["file"], KIND.get(o["summary"], o["summary"])))
    latest.update(run)
if present is not None:
    latest = {
        k: v
        for k, v in latest.items()
        if k in present or any(r.search(name) for name, _, _ in v for r in equivalent)
    }
counts, missed = {}, []
for name, f, kind in sorted(x for outcomes in latest.values() for x in outcomes):
    if kind == "missed" and any(r.search(name) for r in equivalent):
        kind = "equivalent"
    area = next((a for a, test in AREAS if test(f)), "other")
    counts.setdefault(area, Counter())[kind] += 1
    if kind == "missed":
        missed.append(name)
print(f"{'area':8} {'caught':>7} {'missed':>7} {'unviable':>9} {'timeout':>8} {'equiv.':>7} {'caught %':>9}")
for area, _ in AREAS + [("other", None)]:
    c = counts.get(area)
    if not c:
        continue
    viable = c["caught"] + c["missed"] + c["timeout"]
    pct = 100 * (c["caught"] + c["timeout"]) / viable if viable else 100.0
    print(f"{area:8} {c['caught']:7} {c['missed']:7} {c['unviable']:9} {c['timeout']:8} {c['equivalent']:7} {pct:8.1f}%")
new = [m for m in missed if bare(m) not in known]
for name in missed:
    print("MISSED" if name in new else "missed (in the ledger)", name)
sys.exit(1 if new else 0)
EOF
