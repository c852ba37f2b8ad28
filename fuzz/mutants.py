#!/usr/bin/env python3
"""The mutation ledger: cargo-mutants run in short steps whose results are kept.

Called by fuzz/mutants.sh (see there for usage). Files, all committed:

  fuzz/mutants/ledger/<source path>.tsv  one line per measured mutant of that
      source file: its key (function, occurrence, description), the name
      cargo-mutants gave it (with line and column), the outcome (caught,
      missed, timeout, unviable), a hash of its function's text, the commit
      and the day it was measured. Written after every step, sorted, so a
      stopped run loses only the mutant it was on.
  fuzz/mutants/equivalent.txt  mutants judged equivalent, each pinned to its
      exact site (`file:line:col: description`) with one reason.
  fuzz/mutants/unseen.txt  missed mutants no single-threaded test can see,
      pinned the same way, each naming the loom model or target that does.

A mutant is identified across edits by (file, function, description,
occurrence: its rank among the function's mutants with that description);
its ledger entry is stale when the text of its function changed since. A
pinned equivalent or unseen entry that names no current mutant is stale too:
`report` and `check` fail until it is re-judged.

The sample: for each file, the mutants ranked by SHA-1 of (SEED, key), and the
first ceil(n * SAMPLE_PERCENT / 100) of them taken. The key does not contain
line numbers, so the sample survives edits elsewhere in the file.
"""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

SEED = 24
SAMPLE_PERCENT = 25
ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "fuzz/mutants/ledger"
EQUIVALENT = ROOT / "fuzz/mutants/equivalent.txt"
UNSEEN = ROOT / "fuzz/mutants/unseen.txt"

SCOPES = {
    "machine": ["model/src/machine/**"],
    "kernel": ["model/src/kernel/**"],
    "oracles": [
        "model/src/harness/oracle.rs",
        "model/src/harness/compare.rs",
        "model/src/harness/run.rs",
        "model/src/harness/concurrent.rs",
    ],
}
ORDER = ["machine", "kernel", "oracles"]
OUTCOMES = ("caught", "missed", "timeout", "unviable")
HEADER = "# function\toccurrence\tdescription\tname when measured\toutcome\tfunction hash\tcommit\tday\n"


def die(msg, code=2):
    print(f"fuzz/mutants.sh: {msg}", file=sys.stderr)
    sys.exit(code)


def area_of(path):
    for area in ORDER:
        for g in SCOPES[area]:
            if g.endswith("/**") and path.startswith(g[:-2]) or path == g:
                return area
    return None


def listing(scopes):
    """Every current mutant of the scopes, as cargo-mutants lists them, with
    its key and function hash."""
    args = ["cargo", "mutants", "-p", "packmodel", "--list", "--json"]
    for s in scopes:
        for g in SCOPES[s]:
            if g.endswith(".rs") and not (ROOT / g).exists():
                continue
            args += ["-f", g]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"cargo mutants --list failed:\n{out.stderr}", 1)
    mutants = json.loads(out.stdout)
    texts = {}
    seen = Counter()
    rows = []
    for m in sorted(mutants, key=lambda m: (m["file"], m["span"]["start"]["line"], m["span"]["start"]["column"], m["name"])):
        f = m["file"]
        if f not in texts:
            texts[f] = (ROOT / f).read_text().split("\n")
        fn = m.get("function") or {}
        fname = fn.get("function_name", "-")
        span = fn.get("span") or m["span"]
        body = "\n".join(texts[f][span["start"]["line"] - 1 : span["end"]["line"]])
        desc = re.sub(r"^[^:]+:\d+:\d+: ", "", m["name"])
        occ = seen[(f, fname, desc)]
        seen[(f, fname, desc)] += 1
        rows.append(
            {
                "file": f,
                "name": m["name"],
                "function": fname,
                "occurrence": occ,
                "description": desc,
                "key": (fname, str(occ), desc),
                "fnhash": hashlib.sha1(body.encode()).hexdigest()[:12],
            }
        )
    return rows


def sample(rows):
    """The rows in the fixed-seed sample: per file, the first
    ceil(n * SAMPLE_PERCENT / 100) by SHA-1 of (SEED, file, key)."""
    by_file = defaultdict(list)
    for r in rows:
        by_file[r["file"]].append(r)
    chosen = []
    for f, rs in sorted(by_file.items()):
        rank = lambda r: hashlib.sha1(f"{SEED}\0{f}\0{chr(0).join(r['key'])}".encode()).hexdigest()
        k = math.ceil(len(rs) * SAMPLE_PERCENT / 100)
        chosen += sorted(rs, key=rank)[:k]
    return chosen


def pinned(path):
    """name -> reason, from equivalent.txt or unseen.txt: `NAME  # REASON`."""
    out = {}
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text().split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if "  # " not in line:
            die(f"{path.relative_to(ROOT)}:{n}: expected `file:line:col: description  # reason`")
        name, reason = line.split("  # ", 1)
        if not re.match(r"^[^:]+:\d+:\d+: ", name):
            die(f"{path.relative_to(ROOT)}:{n}: expected an exact site `file:line:col: …`, found `{name}`")
        out[name.strip()] = reason.strip()
    return out


def ledger_path(f):
    return LEDGER / (f + ".tsv")


def read_ledger(f):
    p = ledger_path(f)
    entries = {}
    if not p.exists():
        return entries
    for n, line in enumerate(p.read_text().split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 8 or cols[4] not in OUTCOMES:
            die(f"{p.relative_to(ROOT)}:{n}: expected 8 tab-separated columns with an outcome in {OUTCOMES}")
        entries[tuple(cols[:3])] = {
            "name": cols[3],
            "outcome": cols[4],
            "fnhash": cols[5],
            "commit": cols[6],
            "day": cols[7],
        }
    return entries


def write_ledger(f, entries):
    p = ledger_path(f)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for key in sorted(entries, key=lambda k: (k[0], k[2], int(k[1]))):
        e = entries[key]
        lines.append("\t".join([*key, e["name"], e["outcome"], e["fnhash"], e["commit"], e["day"]]) + "\n")
    tmp = p.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(p)


def current(row, entries):
    """The row's ledger entry, if it is not stale."""
    e = entries.get(row["key"])
    return e if e and e["fnhash"] == row["fnhash"] else None


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def run_mutants(rows, minutes, jobs, out_dir):
    """Runs cargo mutants on `rows` (in order) until done or `minutes` pass;
    returns {name: outcome} for every mutant that finished."""
    args = ["cargo", "mutants", "-p", "packmodel", "--no-shuffle", "-j", str(jobs), "-o", str(out_dir)]
    # A test run takes about 7 s here; cargo-mutants' own timeout (5 times
    # the baseline, 34-39 s) makes each mutant that loops cost that much.
    # 20 s is still about three times a run (at -j 1: more jobs than cores
    # slow every run, so a timeout could then claim a catch it did not make).
    args += ["--timeout", "20"]
    # cargo-mutants 27 does not apply -F to "delete field" mutants: -f keeps
    # those of other files out (the ones of these files that slip in are run
    # but not recorded).
    for f in sorted({r["file"] for r in rows}):
        args += ["-f", f]
    for r in rows:
        args += ["-F", "^" + re.escape(r["name"]) + "$"]
    # The tree as it is now, copied before anything is built: cargo-mutants
    # copies its source only after the build below, so an edit made in the
    # meantime (even a half-written one) would otherwise become the baseline.
    snap = Path(tempfile.mkdtemp(prefix="packmodel-mutants-"))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, snap / rel)
    args += ["-d", str(snap)]
    # Dependencies built once for all steps: the mutated tree is a copy in a
    # fresh directory each time, but crates from the registry keep their
    # fingerprints, so only packmodel itself is rebuilt.
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target/mutants-ledger"))
    # Those dependencies are built before the clock starts.
    pre = ["cargo", "test", "--workspace", "--profile", "mutants", "--no-run", "--quiet"]
    if subprocess.run(pre, cwd=snap, env=env).returncode != 0:
        shutil.rmtree(snap, ignore_errors=True)
        die("the unmutated tree does not build its tests", 1)
    proc = subprocess.Popen(args, cwd=snap, env=env, start_new_session=True)
    deadline = time.monotonic() + minutes * 60
    while proc.poll() is None:
        if time.monotonic() > deadline:
            print(f"fuzz/mutants.sh: {minutes} minutes are up: stopping cargo mutants", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            break
        time.sleep(2)
    shutil.rmtree(snap, ignore_errors=True)
    done = {}
    base = Path(out_dir) / "mutants.out"
    for outcome in OUTCOMES:
        f = base / f"{outcome}.txt"
        if f.exists():
            for line in f.read_text().split("\n"):
                if line.strip():
                    done[line.strip()] = outcome
    if (base / "outcomes.json").exists():
        for o in json.loads((base / "outcomes.json").read_text()).get("outcomes", []):
            if o.get("scenario") == "Baseline" and o.get("summary") not in ("Success", None):
                die("the baseline (unmutated tree) failed its tests: nothing measured", 1)
    return done


def commit_now():
    """The commit the tree is at, `+` if model/ has changes not committed."""
    commit = git("rev-parse", "--short=12", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no", "--", "model"):
        commit += "+"
    return commit


def record(rows, done, commit):
    day = time.strftime("%Y-%m-%d", time.gmtime())
    by_file = defaultdict(list)
    for r in rows:
        if r["name"] in done:
            by_file[r["file"]].append(r)
    for f, rs in by_file.items():
        entries = read_ledger(f)
        for r in rs:
            entries[r["key"]] = {
                "name": r["name"],
                "outcome": done[r["name"]],
                "fnhash": r["fnhash"],
                "commit": commit,
                "day": day,
            }
        write_ledger(f, entries)
    return sum(len(rs) for rs in by_file.values())


def pending(rows, equivalent, missed_again):
    """The sampled rows to measure: not equivalent, and with no current ledger
    entry (or, with missed_again, a missed one)."""
    ledgers = {}
    out = []
    for r in sample(rows):
        if r["name"] in equivalent:
            continue
        if r["file"] not in ledgers:
            ledgers[r["file"]] = read_ledger(r["file"])
        e = current(r, ledgers[r["file"]])
        if e is None or (missed_again and e["outcome"] == "missed"):
            out.append(r)
    return out


def stale_pins(rows, equivalent, unseen):
    """Pins in the listed files (or in files no longer there) that name no
    current mutant."""
    names = {r["name"] for r in rows}
    files = {r["file"] for r in rows}
    areas = {area_of(f) for f in files}
    bad = []
    for path, pins in ((EQUIVALENT, equivalent), (UNSEEN, unseen)):
        for name in pins:
            f = name.split(":")[0]
            if (f in files or area_of(f) in areas) and name not in names:
                bad.append(f"{path.relative_to(ROOT)}: `{name}` names no current mutant (the code moved or changed): re-judge it at its new site")
    return bad


def cmd_resume(scopes, minutes, jobs, missed_again):
    rows = listing(scopes)
    equivalent, unseen = pinned(EQUIVALENT), pinned(UNSEEN)
    for s in stale_pins(rows, equivalent, unseen):
        print(f"warning: {s}", file=sys.stderr)
    todo = pending(rows, equivalent, missed_again)
    print(f"fuzz/mutants.sh: {len(todo)} sampled mutants of {', '.join(scopes)} to measure; at most {minutes} minutes")
    if not todo:
        return 0
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"mutants-{os.getpid()}"
    commit = commit_now()
    done = run_mutants(todo, minutes, jobs, out)
    n = record(todo, done, commit)
    print(f"fuzz/mutants.sh: recorded {n} outcomes in fuzz/mutants/ledger/; {len(todo) - n} still to measure")
    return 0


def tally(rows, equivalent, unseen):
    """Per area: Counter of outcomes over the sampled rows, and the misses."""
    counts = defaultdict(Counter)
    misses = []
    ledgers = {}
    for r in sample(rows):
        area = area_of(r["file"])
        c = counts[area]
        c["sampled"] += 1
        if r["name"] in equivalent:
            c["equivalent"] += 1
            continue
        if r["file"] not in ledgers:
            ledgers[r["file"]] = read_ledger(r["file"])
        e = current(r, ledgers[r["file"]])
        if e is None:
            c["unmeasured"] += 1
            continue
        c[e["outcome"]] += 1
        if e["outcome"] == "missed":
            if r["name"] in unseen:
                c["unseen"] += 1
            misses.append((r["name"], unseen.get(r["name"])))
    for r in rows:
        counts[area_of(r["file"])]["mutants"] += 1
    return counts, misses


def cmd_report(scopes):
    rows = listing(scopes)
    equivalent, unseen = pinned(EQUIVALENT), pinned(UNSEEN)
    counts, misses = tally(rows, equivalent, unseen)
    print(f"sample: {SAMPLE_PERCENT} % of each file's mutants, seed {SEED} (fuzz/mutants.py)")
    print()
    print("| area | mutants | sampled | measured | caught | timeout | missed | of which unseen | unviable | equivalent | not yet measured | caught % of viable |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for area in scopes:
        c = counts[area]
        measured = sum(c[o] for o in OUTCOMES)
        viable = c["caught"] + c["timeout"] + c["missed"]
        pct = f"{100 * (c['caught'] + c['timeout']) / viable:.1f} %" if viable else "–"
        print(
            f"| {area} | {c['mutants']} | {c['sampled']} | {measured} | {c['caught']} | {c['timeout']} | "
            f"{c['missed']} | {c['unseen']} | {c['unviable']} | {c['equivalent']} | {c['unmeasured']} | {pct} |"
        )
    if misses:
        print()
        for name, why in sorted(misses):
            print(f"missed: {name}" + (f"  (unseen: {why})" if why else ""))
    bad = stale_pins(rows, equivalent, unseen)
    for s in bad:
        print(f"STALE: {s}", file=sys.stderr)
    return 1 if bad else 0


def cmd_resite(scopes):
    """Moves each stale pin to the current mutant it most likely is now: the
    one in the same file with the same description (operator and function)
    that no pin names yet, at the same column if there are several, then the
    nearest line. A pin with no such mutant, or with two equally near, is
    left for a person to re-judge. The rewritten files are for review, like
    any diff."""
    rows = listing(scopes)
    names = {r["name"] for r in rows}
    equivalent, unseen = pinned(EQUIVALENT), pinned(UNSEEN)
    taken = set(equivalent) | set(unseen)
    site = re.compile(r"^([^:]+):(\d+):(\d+): (.*)$")
    left = 0
    for path, pins in ((EQUIVALENT, equivalent), (UNSEEN, unseen)):
        moves = {}
        for name in pins:
            if name in names:
                continue
            m = site.match(name)
            f, line, col, desc = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            if not any(r["file"] == f for r in rows):
                continue
            cands = []
            for r in rows:
                c = site.match(r["name"])
                if r["file"] == f and r["description"] == desc and r["name"] not in taken:
                    cands.append((int(c.group(3)) != col, abs(int(c.group(2)) - line), r["name"]))
            cands.sort()
            if not cands or (len(cands) > 1 and cands[0][:2] == cands[1][:2]):
                why = "no mutant with that description" if not cands else "two equally near"
                print(f"left: {path.relative_to(ROOT)}: `{name}` ({why}): re-judge it by hand")
                left += 1
                continue
            new = cands[0][2]
            moves[name] = new
            taken.add(new)
            print(f"re-sited: {path.relative_to(ROOT)}: `{name}` -> `{new}`")
        if moves:
            lines = path.read_text().split("\n")
            for i, l in enumerate(lines):
                if "  # " in l and not l.startswith("#"):
                    name, reason = l.split("  # ", 1)
                    if name.strip() in moves:
                        lines[i] = f"{moves[name.strip()]}  # {reason}"
            path.write_text("\n".join(lines))
    return 1 if left else 0


def cmd_check(minutes, jobs):
    """CI tier (m): one slice of the ledger's measured sample, chosen by the
    commit, for at most `minutes`; fails on a miss the ledger does not record
    as one (a mutant it says is caught, now missed: a test lost its teeth),
    and on stale pins. Sampled mutants with no current ledger entry are not
    in any slice: `--report` counts them as not yet measured."""
    scopes = ORDER
    rows = listing(scopes)
    equivalent, unseen = pinned(EQUIVALENT), pinned(UNSEEN)
    bad = stale_pins(rows, equivalent, unseen)
    for s in bad:
        print(f"STALE: {s}", file=sys.stderr)
    ledgers = defaultdict(dict)
    for f in {r["file"] for r in rows}:
        ledgers[f] = read_ledger(f)
    cand = [r for r in sample(rows) if r["name"] not in equivalent and current(r, ledgers[r["file"]])]
    if not cand:
        print("fuzz/mutants.sh --check: the ledger holds no current outcome: nothing to check")
        return 1 if bad else 0
    slices = max(1, math.ceil(len(cand) / 12))
    head = git("rev-parse", "HEAD") or "0"
    k = int(head[:8], 16) % slices
    mine = [r for i, r in enumerate(sorted(cand, key=lambda r: r["name"])) if i % slices == k]
    print(f"fuzz/mutants.sh --check: slice {k} of {slices} ({len(mine)} mutants), at most {minutes} minutes")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"mutants-check-{os.getpid()}"
    done = run_mutants(mine, minutes, jobs, out)
    new = []
    for r in mine:
        o = done.get(r["name"])
        if o != "missed":
            continue
        e = current(r, ledgers[r["file"]])
        if r["name"] in unseen or (e and e["outcome"] == "missed"):
            print(f"missed (known): {r['name']}")
        elif e and e["outcome"] == "timeout":
            # Slow rather than wrong: whether the tests outlast the timeout
            # depends on the machine. Said, not failed.
            print(f"missed now, a timeout in the ledger (slow, not caught by a check): {r['name']}")
        else:
            new.append(r["name"])
    counts = ", ".join(f"{n} {o}" for o, n in sorted(Counter(done.values()).items()))
    print(f"fuzz/mutants.sh --check: {len(done)} of {len(mine)} measured ({counts or 'none'})")
    for n in new:
        print(f"MISSED (not in the ledger): {n}")
    if not done:
        print(f"fuzz/mutants.sh --check: no mutant finished in {minutes} minutes: nothing was checked", file=sys.stderr)
        return 1
    return 1 if new or bad else 0


def main(argv):
    mode, scopes, minutes, jobs, missed_again = None, [], 15, 1, False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--resume", "--report", "--check", "--resite"):
            mode = a[2:]
        elif a == "--minutes":
            minutes = float(argv[i + 1])
            i += 1
        elif a == "--jobs":
            jobs = int(argv[i + 1])
            i += 1
        elif a == "--missed":
            missed_again = True
        elif a in SCOPES:
            scopes.append(a)
        else:
            die(f"unknown argument `{a}` (expected --resume, --report, --check, --resite, --minutes N, --jobs J, --missed, or a scope: {', '.join(ORDER)})")
        i += 1
    scopes = scopes or ORDER
    if mode is None:
        die("expected --resume, --report, --check or --resite")
    if mode == "resite":
        return cmd_resite(scopes)
    if mode == "resume":
        return cmd_resume(scopes, minutes, jobs, missed_again)
    if mode == "report":
        return cmd_report(scopes)
    return cmd_check(minutes, jobs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
