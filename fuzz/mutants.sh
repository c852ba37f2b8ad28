#!/usr/bin/env bash
# Mutation testing of the kernels, the machine and the oracles: cargo-mutants
# changes one thing in the code at a time (an operator, a condition, a
# function's result) and runs the README's tests, `cargo test --workspace`,
# on each mutant. A mutant the tests pass on is MISSED: a change nobody would
# notice. Settings, and the mutants judged equivalent (each with its reason),
# are in .cargo/mutants.toml.
#
#   fuzz/mutants.sh [--shard K/N] [--jobs J] [--out DIR] [--ledger FILE] [SCOPE]...
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
# Exit status: 0 if no mutant was missed outside the ledger, 1 if one was, 2
# on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

shard="" jobs=2 out="" ledger=/dev/null
scopes=()
while [ $# -gt 0 ]; do
    case $1 in
    --shard) shard=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --ledger) ledger=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz/mutants.sh: unknown option $1" >&2; exit 2 ;;
    *) scopes+=("$1"); shift ;;
    esac
done
[ ${#scopes[@]} -gt 0 ] || scopes=(kernel machine oracles)
command -v cargo-mutants >/dev/null || {
    echo "fuzz/mutants.sh: cargo-mutants is missing (cargo install --locked cargo-mutants)" >&2
    exit 2
}

files=()
for s in "${scopes[@]}"; do
    case $s in
    kernel) files+=(-f 'model/src/kernel/**') ;;
    machine) files+=(-f 'model/src/machine/**') ;;
    oracles) files+=(-f model/src/harness/oracle.rs -f model/src/harness/compare.rs -f model/src/harness/run.rs) ;;
    *) files+=(-f "$s") ;;
    esac
done
[ -n "$out" ] || out=$(mktemp -d)
args=(-p packmodel "${files[@]}" -j "$jobs" --no-shuffle -o "$out")
[ -z "$shard" ] || args+=(--shard "$shard" --sharding round-robin)

set +e
cargo mutants "${args[@]}"
status=$?
set -e
# 0: nothing missed; 2: some missed; 3: timeouts; 4: the baseline failed.
case $status in 0 | 2 | 3) ;; *) echo "fuzz/mutants.sh: cargo mutants failed ($status)" >&2; exit "$status" ;; esac

python3 - "$out/mutants.out/outcomes.json" "$ledger" <<'EOF'
import json, re, sys
from collections import Counter

def bare(name):
    """A mutant's name without its line and column numbers."""
    return re.sub(r":\d+:\d+:", ":", name, count=1).strip()

known = {bare(l) for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")}

AREAS = [
    ("kernel", lambda f: f.startswith("model/src/kernel/")),
    ("machine", lambda f: f.startswith("model/src/machine/")),
    ("oracles", lambda f: f in ("model/src/harness/oracle.rs", "model/src/harness/compare.rs", "model/src/harness/run.rs")),
]
KIND = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable", "Timeout": "timeout"}
counts, missed = {}, []
for o in json.load(open(sys.argv[1]))["outcomes"]:
    m = o["scenario"].get("Mutant") if isinstance(o["scenario"], dict) else None
    if not m:
        continue
    f = m["file"]
    area = next((a for a, test in AREAS if test(f)), "other")
    kind = KIND.get(o["summary"], o["summary"])
    counts.setdefault(area, Counter())[kind] += 1
    if kind == "missed":
        missed.append(m["name"])
print(f"{'area':8} {'caught':>7} {'missed':>7} {'unviable':>9} {'timeout':>8} {'caught %':>9}")
for area, _ in AREAS + [("other", None)]:
    c = counts.get(area)
    if not c:
        continue
    viable = c["caught"] + c["missed"] + c["timeout"]
    pct = 100 * (c["caught"] + c["timeout"]) / viable if viable else 100.0
    print(f"{area:8} {c['caught']:7} {c['missed']:7} {c['unviable']:9} {c['timeout']:8} {pct:8.1f}%")
new = [m for m in missed if bare(m) not in known]
for line in missed:
    print("MISSED" if line in new else "missed (in the ledger)", line)
sys.exit(1 if new else 0)
EOF
