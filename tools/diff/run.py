#!/usr/bin/env python3
"""Differential testing of eddy against CPython's asyncio.

    python3 tools/diff/run.py [--eddy build/eddy] [--seeds 300] [--first 0]
                              [--python PY ...] [--keep DIR] [SUITE ...]

For each seed, a suite's generator writes a random program; the asyncio
replayer (SUITE.py, run by every --python) and the eddy replayer
(SUITE.lua) each print a trace of what happened; the traces must be
equal.  A difference prints the seed, the program's path and a diff; the
program stays in --keep (default /tmp/eddy-diff) so one seed can be rerun
by hand:

    python3.12 tools/diff/sched.py /tmp/eddy-diff/sched-17.txt
    build/eddy tools/diff/sched.lua /tmp/eddy-diff/sched-17.txt

(DIFF_VERBOSE=1 in the environment adds a line per handle made.)  What
the traces leave out on purpose: the order of timers with equal deadlines
on the asyncio side (CPython's heap has none; API.md says FIFO, so
sched.py numbers its TimerHandles), and reprs and addresses in messages.

Suites: sched (call_soon/call_later/call_at/stop/run_until_complete/close,
handle cancel, the exception handler's context keys).  scenarios.py and
scenarios.lua hold the fixed scenarios (timeouts, async generators, the
exception handler), compared the same way with --seeds ignored.

Program format (sched): lines "B n" open block n; "A op args..." append an
action to the open block; "R kind n" is a top-level run ("forever":
run_forever, "until": run_until_complete on a new future) that first runs
block n's actions outside the loop.  Block j (j >= 1) is what callback j
does each time it runs.  Actions: soon j, ts j (call_soon_threadsafe),
at j k (call_at(base - 10k)), later j k (call_later(-10k - 5), or 0 when
k = 0), far j (call_later(100)), cancel r (the handle r mod count),
cancelself, when r, stop, raise, resolve (the run's future), cancelfut,
fcb j (callback j as a done callback of the run's future),
nested (run_until_complete inside a callback), close (refused while
running), running, time.
"""
import argparse
import difflib
import glob
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CALLBACK_OPS = [("soon", 6), ("ts", 2), ("at", 4), ("later", 3), ("far", 2),
                ("cancel", 3), ("cancelself", 1), ("when", 1), ("stop", 2),
                ("raise", 1), ("resolve", 2), ("nested", 1), ("running", 1),
                ("time", 1), ("cancelfut", 1), ("close", 1), ("fcb", 2)]
TOP_OPS = [("soon", 6), ("ts", 1), ("at", 4), ("later", 3), ("far", 2),
           ("cancel", 2), ("when", 1), ("stop", 1), ("resolve", 1),
           ("running", 1), ("cancelfut", 1), ("fcb", 2)]


def pick(rng, ops):
    total = sum(w for _, w in ops)
    x = rng.randrange(total)
    for op, w in ops:
        if x < w:
            return op
        x -= w


def action(rng, op, nodes):
    if op in ("soon", "ts", "far", "fcb"):
        return "A %s %d" % (op, rng.randint(1, nodes))
    if op in ("at", "later"):
        return "A %s %d %d" % (op, rng.randint(1, nodes), rng.randint(0, 3))
    if op in ("cancel", "when"):
        return "A %s %d" % (op, rng.randrange(1000))
    if op == "resolve":
        return "A resolve %d" % rng.randint(1, 9)
    return "A " + op


def gen_sched(rng):
    nodes = rng.randint(2, 8)
    lines = []
    for j in range(1, nodes + 1):
        lines.append("B %d" % j)
        for _ in range(rng.randint(0, 3)):
            lines.append(action(rng, pick(rng, CALLBACK_OPS), nodes))
    phases = rng.randint(1, 3)
    for p in range(phases):
        blk = 100 + p
        lines.append("B %d" % blk)
        for _ in range(rng.randint(1, 4)):
            lines.append(action(rng, pick(rng, TOP_OPS), nodes))
        # Most runs end by themselves; the rest end by the replayers'
        # watchdog, which the trace shows.
        if rng.random() < 0.7:
            lines.append("A far %d" % rng.randint(1, nodes))
    for p in range(phases):
        lines.append("R %s %d" % (rng.choice(["forever", "until"]), 100 + p))
    return "\n".join(lines) + "\n"


GENERATORS = {"sched": gen_sched}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    text = p.stdout
    if p.returncode != 0:
        text += "\n[exit %d] %s" % (p.returncode, p.stderr.strip())
    return text.strip().splitlines()


def compare(name, path, pythons, eddy):
    ref = None
    for py in pythons:
        t = run([py, os.path.join(HERE, name + ".py"), path])
        if ref is None:
            ref, ref_py = t, py
        elif t != ref:
            print("== %s: %s and %s differ" % (path, ref_py, py))
            print("\n".join(difflib.unified_diff(ref, t, ref_py, py, lineterm="")))
    got = run([eddy, os.path.join(HERE, name + ".lua"), path])
    if got != ref:
        print("== %s: asyncio and eddy differ" % path)
        print("\n".join(difflib.unified_diff(ref, got, "asyncio", "eddy", lineterm="")),
              flush=True)
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eddy", default=os.path.join(HERE, "..", "..", "build", "eddy"))
    ap.add_argument("--python", action="append")
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--keep", default="/tmp/eddy-diff")
    ap.add_argument("suites", nargs="*", default=["sched", "scenarios"])
    o = ap.parse_args()
    pythons = o.python or sorted(glob.glob("/root/.pyenv/versions/3.1[23]*/bin/python3")) or ["python3"]
    os.makedirs(o.keep, exist_ok=True)
    failed = total = 0
    for suite in o.suites:
        if suite in GENERATORS:
            for seed in range(o.first, o.first + o.seeds):
                path = os.path.join(o.keep, "%s-%d.txt" % (suite, seed))
                with open(path, "w") as f:
                    f.write(GENERATORS[suite](random.Random(seed)))
                total += 1
                failed += not compare(suite, path, pythons, o.eddy)
        else:
            total += 1
            failed += not compare(suite, "-", pythons, o.eddy)
    print("%d programs, %d differ" % (total, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
