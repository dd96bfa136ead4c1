"""Replay a scheduling program (tools/diff/run.py writes it) on asyncio.

    python3 sched.py PROGRAM   -> the trace on stdout

The Lua twin is sched.lua; both must print the same trace.  The program
format is described in run.py.
"""
import asyncio
import itertools
import os
import sys
from asyncio import events

# API.md §3: "timers by when, then FIFO".  CPython's TimerHandle compares
# by `when` only, so heapq may pop equal deadlines in any order; give each
# TimerHandle a sequence number so asyncio follows the documented order.
_seq = itertools.count()


class TimerHandle(events.TimerHandle):
    __slots__ = ("_diff_seq",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._diff_seq = next(_seq)

    def _key(self):
        return (self._when, self._diff_seq)

    def __lt__(self, other): return self._key() < other._key()
    def __le__(self, other): return self._key() <= other._key()
    def __gt__(self, other): return self._key() > other._key()
    def __ge__(self, other): return self._key() >= other._key()


events.TimerHandle = TimerHandle     # base_events makes them as events.TimerHandle

BUDGET = 150        # callbacks that still act; later ones only trace
VERBOSE = os.environ.get("DIFF_VERBOSE")    # trace each handle made


def parse(path):
    blocks, phases = {}, []
    cur = None
    for line in open(path):
        w = line.split()
        if not w:
            continue
        if w[0] == "B":
            cur = blocks.setdefault(int(w[1]), [])
        elif w[0] == "A":
            cur.append((w[1], [int(x) for x in w[2:]]))
        elif w[0] == "R":
            phases.append((w[1], int(w[2])))
    return blocks, phases


def main(path):
    blocks, phases = parse(path)
    loop = asyncio.new_event_loop()
    base = loop.time()
    handles = []        # every handle, in creation order
    timers = {}         # handle index -> deadline level (call_at only)
    state = {"runs": 0, "fut": None, "last": base}
    out = []

    def trace(*a):
        out.append(" ".join(str(x) for x in a))

    def handler(loop, context):
        trace("exc", ",".join(sorted(context)), type(context.get("exception")).__name__)

    loop.set_exception_handler(handler)

    def cb(j, hid):
        state["runs"] += 1
        trace("run", j, "h%d" % hid if hid is not None else "done-callback")
        if state["runs"] > BUDGET:
            return
        act(blocks.get(j, []), hid)

    def add(h, level=None):
        handles.append(h)
        hid = len(handles) - 1
        if VERBOSE:
            trace("new", "h%d" % hid, h._callback.__name__, h._args[0] if h._args else "")
        if level is not None:
            timers[hid] = level
        return hid

    def schedule(kind, j, arg):
        hid = len(handles)
        if kind == "soon":
            add(loop.call_soon(cb, j, hid))
        elif kind == "ts":
            add(loop.call_soon_threadsafe(cb, j, hid))
        elif kind == "at":
            add(loop.call_at(base - 10 * arg, cb, j, hid), arg)
        elif kind == "later":
            add(loop.call_later(-10 * arg - 5 if arg else 0, cb, j, hid))
        elif kind == "far":
            add(loop.call_later(100, cb, j, hid))

    def act(actions, hid):
        for op, a in actions:
            if op in ("soon", "ts", "at", "later", "far"):
                try:
                    schedule(op, a[0], a[1] if len(a) > 1 else 0)
                except Exception as e:
                    trace("schedule-error", type(e).__name__)
            elif op == "cancel":
                if handles:
                    i = a[0] % len(handles)
                    before = handles[i].cancelled()
                    handles[i].cancel()
                    trace("cancel", "h%d" % i, before, handles[i].cancelled())
            elif op == "cancelself":
                if hid is not None:
                    handles[hid].cancel()
                    trace("cancelself", handles[hid].cancelled())
            elif op == "when":
                if timers:
                    keys = sorted(timers)
                    i = keys[a[0] % len(keys)]
                    trace("when", "h%d" % i, round(handles[i].when() - base) == -10 * timers[i])
            elif op == "stop":
                loop.stop()
            elif op == "raise":
                raise ValueError("boom")
            elif op == "resolve":
                f = state["fut"]
                if f is not None and not f.done():
                    f.set_result(a[0] if a else 1)
                    trace("resolved")
            elif op == "nested":
                # run_until_complete: 3.13.0's run_forever, refused here,
                # marks the running loop as stopped (its cleanup runs
                # when the setup fails), and the next one really nests.
                try:
                    loop.run_until_complete(loop.create_future())
                except Exception as e:
                    trace("nested", type(e).__name__)
            elif op == "fcb":
                f = state["fut"]
                if f is not None:
                    f.add_done_callback(lambda _, j=a[0]: cb(j, None))
            elif op == "cancelfut":
                f = state["fut"]
                if f is not None:
                    trace("cancelfut", f.cancel())
            elif op == "close":
                try:
                    loop.close()
                except Exception as e:
                    trace("close", type(e).__name__)
            elif op == "running":
                trace("running", loop.is_running())
            elif op == "time":
                t = loop.time()
                if t < state["last"]:
                    trace("time went back")
                state["last"] = t

    for n, (kind, blk) in enumerate(phases):
        trace("phase", n, kind)
        state["fut"] = loop.create_future() if kind == "until" else None
        act(blocks.get(blk, []), None)
        dog = loop.call_later(0.3, lambda: (trace("watchdog"), loop.stop()))
        try:
            if kind == "until":
                r = loop.run_until_complete(state["fut"])
                trace("complete", r)
            else:
                loop.run_forever()
                trace("returned")
        except BaseException as e:
            trace("error", type(e).__name__)
        dog.cancel()
    loop.close()
    trace("closed", " ".join("1" if h.cancelled() else "0" for h in handles))
    try:
        loop.call_soon(print)
    except Exception as e:
        trace("after-close", type(e).__name__)
    print("\n".join(out))


main(sys.argv[1])
