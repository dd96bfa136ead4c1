"""Differential harness, CPython side: queues, synchronization primitives
and the composition functions under random cancellation.  Seeded random
programs, run by the main task turn by turn (sleep(0)), start tasks that
wait on a Queue/LifoQueue/PriorityQueue (get, put, join), on a Lock,
Semaphore, BoundedSemaphore, Event, Condition or Barrier, or in gather,
wait, wait_for, shield, as_completed, a timeout scope or a TaskGroup
around other tasks, and meanwhile call the non-suspending methods
(put_nowait, get_nowait, task_done, shutdown, release, set, clear,
notify) and cancel() and uncancel() those tasks, one after the other or
both at once.  Each task prints how it
ended, in the order the tasks end; the program then prints what is left.
tools/diff/sync.lua runs the same programs under eddy; `tools/diff/run.sh
sync` diffs the two.
Usage: python3 sync.py [program-prefix]; SYNC_SEEDS=n programs of each
kind (default 100)."""
import sys

# This directory goes last on the path (its socket.py would shadow the
# module); proc.py has the Rng sync.lua shares.
sys.path.append(sys.path.pop(0))
import asyncio, os, warnings  # noqa: E402
from proc import Rng  # noqa: E402

# A task cancelled before it started leaves its coroutine never awaited:
# part of the programs, which eddy's functions do not warn about.
warnings.simplefilter("ignore", RuntimeWarning)

SEEDS = int(os.environ.get("SYNC_SEEDS", "100"))
QUEUES = ["fifo", "lifo", "prio"]
PRIMITIVES = ["lock", "sem", "bsem", "event", "cond", "barrier"]


def program(rng, kind, length):
    """The ops of one program, as lists of strings; sync.lua makes the
    same with the same rng."""
    ops, k = [], 0

    def task(own=False):  # a task made so far (own: not the one being made)
        return str(rng.pick(list(range(1, k if own else k + 1))))

    def new():  # the name of a new task
        nonlocal k
        k += 1
        return str(k)

    if kind in QUEUES:
        menu = ["G"] * 3 + ["P"] * 3 + ["pn", "gn", "C", "C", "U", "CU", "T", "J", "S"] + ["Z"] * 7
    elif kind in PRIMITIVES:
        menu = ["A"] * 5 + ["R", "R", "C", "C", "U", "CU", "X1", "X1", "X2"] + ["Z"] * 7
    else:
        menu = (["S"] * 6 + ["G", "G", "W", "F", "H", "A", "TG", "T", "E", "Q"] +
                ["C", "C", "C", "U", "CU"] + ["Z"] * 6)
    for _ in range(length):
        op = rng.pick(menu)
        if op in ("C", "U", "CU") and k == 0 or \
           kind == "compose" and op in ("G", "W", "F", "H", "A", "T") and k == 0:
            op = "Z"
        if op in ("C", "U", "CU"):  # CU: cancel(), then uncancel() at once
            ops.append([op, task()])
        elif kind in QUEUES and op in ("G", "J"):
            ops.append([op, new()])
        elif kind in QUEUES and op == "P":
            ops.append([op, new(), str(rng.pick(list(range(1, 100))))])
        elif kind in QUEUES and op == "pn":
            ops.append([op, str(rng.pick(list(range(100, 200))))])
        elif kind in QUEUES and op == "S":
            ops.append([op, rng.pick(["0", "1"])])
        elif kind in PRIMITIVES and op == "A":
            ops.append([op, new(), rng.pick(["0", "1", "2", "3"])])
        elif kind == "compose" and op == "S":  # a leaf task: turns, mode
            ops.append([op, new(), rng.pick(["0", "1", "2", "3", "4"]),
                        rng.pick(["0", "0", "0", "1", "2", "3", "4", "5", "6"])])
        elif kind == "compose" and op in ("G", "W", "A"):
            head = [op, new()]
            if op == "G":
                head.append(rng.pick(["0", "1"]))
            elif op == "W":
                head.append(rng.pick(["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"]))
            ops.append(head + [task(True) for _ in range(rng.pick([1, 2, 3]))])
        elif kind == "compose" and op in ("F", "T"):
            ops.append([op, new(), rng.pick(["none", "0"]), task(True)])
        elif kind == "compose" and op == "H":
            ops.append([op, new(), task(True)])
        elif kind == "compose" and op == "TG":
            ops.append([op, new(), rng.pick(["0", "1", "2", "3"]), rng.pick(["0", "0", "1", "2", "3"]),
                        rng.pick(["0", "1", "2", "3"]), rng.pick(["0", "0", "1", "2", "3"])])
        else:
            ops.append([op])
    return ops


def desc(v):
    """A result or error as both sides print it (a CancelledError without
    its message: eddy keeps messages where CPython loses them)."""
    if isinstance(v, BaseExceptionGroup):
        return "EG[" + ",".join(desc(e) for e in v.exceptions) + "]"
    if isinstance(v, asyncio.CancelledError):
        return "CancelledError()"
    if isinstance(v, BaseException):
        return type(v).__name__ + "(" + (str(v.args[0]) if v.args else "") + ")"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(desc(x) for x in v) + "]"
    return str(v)


async def run(kind, ops, out):
    # Failed tasks nobody awaits are part of the programs: not reported.
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    tasks = {}

    def spawn(k, coro):
        async def body():
            try:
                r = await coro
                out("%s:ok:%s" % (k, desc(r)))
                return r
            except asyncio.CancelledError:
                out("%s:cancelled" % k)
                raise
            except Exception as e:
                out("%s:err:%s" % (k, desc(e)))
                raise
        tasks[k] = asyncio.create_task(body())

    def call(name, fn, *args):  # a non-suspending call: its result or error
        try:
            out("%s:%s" % (name, desc(fn(*args))))
        except Exception as e:
            out("%s:%s" % (name, type(e).__name__))

    if kind in QUEUES:
        q = {"fifo": asyncio.Queue, "lifo": asyncio.LifoQueue, "prio": asyncio.PriorityQueue}[kind](2)

        async def put(item):
            await q.put(item)
            return "put"

        async def join():
            await q.join()
            return "joined"
    elif kind in PRIMITIVES:
        p = {"lock": asyncio.Lock, "sem": lambda: asyncio.Semaphore(2),
             "bsem": lambda: asyncio.BoundedSemaphore(2), "event": asyncio.Event,
             "cond": asyncio.Condition, "barrier": lambda: asyncio.Barrier(3)}[kind]()

        async def holder(k, turns):
            if kind == "event" or kind == "barrier":
                return await p.wait()
            if kind == "cond":
                async with p:
                    out("%s:acq" % k)
                    r = await p.wait()
                    out("%s:woke" % k)
                    for _ in range(turns):
                        await asyncio.sleep(0)
                return r
            await p.acquire()
            out("%s:acq" % k)
            try:
                for _ in range(turns):
                    await asyncio.sleep(0)
            finally:
                call("%s:rel" % k, p.release)
            return "done"

        async def notify(n):
            async with p:
                p.notify(n) if n else p.notify_all()
            return "notified"

        async def barrier(what):
            await (p.reset() if what == "X1" else p.abort())
            return what
    else:
        ev, q, nq = asyncio.Event(), asyncio.Queue(), [0]

        async def leaf(k, turns, mode):
            try:
                if mode == 4:
                    await ev.wait()
                if mode == 5:
                    return "q%d" % await q.get()
                for _ in range(turns):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                if mode == 2:
                    return "swallowed" + k
                if mode != 6:
                    raise
                asyncio.current_task().uncancel()
                for _ in range(turns):
                    await asyncio.sleep(0)
                return "uncancelled" + k
            if mode == 1:
                raise ValueError("v" + k)
            if mode == 3:
                raise asyncio.CancelledError("own" + k)
            return "r" + k

        async def gather(ret, fs):
            return await asyncio.gather(*fs, return_exceptions=ret == "1")

        async def wait(when, fs):
            done, pending = await asyncio.wait(set(fs), return_when=getattr(asyncio, when))
            return "%d/%d" % (len(done), len(pending))

        async def wait_for(t, f):
            return await asyncio.wait_for(f, None if t == "none" else 0)

        async def shield(f):
            return await asyncio.shield(f)

        async def as_completed(fs):
            got = []
            async for f in asyncio.as_completed(fs):
                try:
                    got.append(desc(await f))
                except BaseException as e:
                    got.append(type(e).__name__)
            return sorted(got)  # the order of those done already is a set's in asyncio

        async def group(k, t1, m1, t2, m2):
            async with asyncio.TaskGroup() as tg:
                a = tg.create_task(leaf(k + "a", t1, m1))
                b = tg.create_task(leaf(k + "b", t2, m2))
            return ["c" if a.cancelled() else a.result(), "c" if b.cancelled() else b.result()]

        async def scope(t, f):
            async with asyncio.timeout(None if t == "none" else 0):
                return await f

    for op in ops:
        c, args = op[0], op[1:]
        if c == "Z":
            await asyncio.sleep(0)
        elif c == "C":
            out("C%s:%s" % (args[0], tasks[args[0]].cancel("m" + args[0])))
        elif c == "U":
            out("U%s:%s" % (args[0], tasks[args[0]].uncancel()))
        elif c == "CU":
            out("CU%s:%s,%s" % (args[0], tasks[args[0]].cancel("m" + args[0]), tasks[args[0]].uncancel()))
        elif kind in QUEUES:
            if c == "G":
                spawn(args[0], q.get())
            elif c == "P":
                spawn(args[0], put(int(args[1])))
            elif c == "J":
                spawn(args[0], join())
            elif c == "pn":
                call("pn", q.put_nowait, int(args[0]))
            elif c == "gn":
                call("gn", q.get_nowait)
            elif c == "T":
                call("T", q.task_done)
            elif c == "S":
                call("S", q.shutdown, args[0] == "1")
        elif kind in PRIMITIVES:
            if c == "A":
                spawn(args[0], holder(args[0], int(args[1])))
            elif c == "R" and kind == "event":
                call("clear", p.clear)
            elif c == "R" and kind != "cond" and kind != "barrier":
                call("R", p.release)
            elif c in ("X1", "X2"):
                if kind == "event":
                    call("set", p.set)
                elif kind == "cond":
                    spawn("n%d" % len(tasks), notify(1 if c == "X1" else 0))
                elif kind == "barrier":
                    spawn("n%d" % len(tasks), barrier(c))
                else:
                    call("locked", p.locked)
        else:
            if c == "S":
                spawn(args[0], leaf(args[0], int(args[1]), int(args[2])))
            elif c == "G":
                spawn(args[0], gather(args[1], [tasks[a] for a in args[2:]]))
            elif c == "W":
                spawn(args[0], wait(args[1], [tasks[a] for a in args[2:]]))
            elif c == "F":
                spawn(args[0], wait_for(args[1], tasks[args[2]]))
            elif c == "H":
                spawn(args[0], shield(tasks[args[1]]))
            elif c == "A":
                spawn(args[0], as_completed([tasks[a] for a in args[1:]]))
            elif c == "TG":
                spawn(args[0], group(args[0], *map(int, args[1:])))
            elif c == "T":
                spawn(args[0], scope(args[1], tasks[args[2]]))
            elif c == "E":
                call("E", ev.clear if ev.is_set() else ev.set)
            elif c == "Q":
                nq[0] += 1
                call("Q", q.put_nowait, nq[0])
    for _ in range(40):
        await asyncio.sleep(0)
    for k, t in tasks.items():
        if not t.done():
            out("pending:%s" % k)
            t.cancel()
    for _ in range(40):
        await asyncio.sleep(0)
    out("cancelling:" + ",".join(str(t.cancelling()) for t in tasks.values()))


def main(prefix):
    for kind in QUEUES + PRIMITIVES + ["compose"]:
        for seed in range(1, SEEDS + 1):
            name = "%s%d" % (kind, seed)
            if not name.startswith(prefix):
                continue
            ops = program(Rng(seed), kind, 60)
            lines = []
            asyncio.run(run(kind, ops, lines.append))
            for line in lines:
                print("%s: %s" % (name, line))


main(sys.argv[1] if len(sys.argv) > 1 else "")
