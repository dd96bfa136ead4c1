"""Differential harness, CPython side: subprocesses, pipes, signals, the
executor.  tools/diff/proc.lua drives the same scenarios under eddy; both
print one line per event, "scenario: event", so `tools/diff/run.sh` can
diff them.  Usage: python3 proc.py [scenario-name-prefix]"""
import sys

# Run as a script, this directory goes last on the path: its socket.py
# would shadow the module (as in streams.py).  Imported, it leaves the
# path to its importer.
if __name__ == "__main__":
    sys.path.append(sys.path.pop(0))
import asyncio, os, signal, subprocess, tempfile, time  # noqa: E402

PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def show(v):
    """A value as both harnesses print it (labels are plain str)."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, bytes):
        return '"%s"' % v.decode("latin-1").replace("\n", "\\n")
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(show(x) for x in v) + "}"
    return str(v)


def ename(e):
    """An error as the trace shows it: its class name, or nil."""
    return "nil" if e is None else type(e).__name__


class Trace:
    """Events of one scenario; consecutive data of one fd are merged."""

    def __init__(self, name):
        self.name, self.lines, self.data = name, [], None

    def __call__(self, *words):
        self.flush()
        self.lines.append(" ".join(show(w) for w in words))

    def data_of(self, fd, data):
        if self.data and self.data[0] == fd:
            self.data[1] += len(data)
        else:
            self.flush()
            self.data = [fd, len(data)]

    def flush(self):
        if self.data:
            self.lines.append("data fd=%d n=%d" % tuple(self.data))
            self.data = None

    def dump(self, sort_middle=False):
        self.flush()
        lines = self.lines
        if sort_middle:  # racy order: sorted between connection_made and _lost
            end = next(i for i, l in enumerate(lines) if l.startswith("connection_lost"))
            lines = lines[:1] + sorted(lines[1:end]) + lines[end:]
        for line in lines:
            print("%s: %s" % (self.name, line))


class Recorder:
    """The callbacks every protocol here traces alike."""

    def __init__(self, t, done):
        self.t, self.done = t, done

    def connection_made(self, tr):
        self.t("connection_made")

    def pause_writing(self):
        self.t("pause_writing")

    def resume_writing(self):
        self.t("resume_writing")

    def connection_lost(self, exc):
        self.t("connection_lost", ename(exc))
        if not self.done.done():
            self.done.set_result(None)


class Proto(Recorder, asyncio.SubprocessProtocol):
    def pipe_data_received(self, fd, data):
        self.t.data_of(fd, data)

    def pipe_connection_lost(self, fd, exc):
        self.t("pipe_connection_lost", fd, ename(exc))

    def process_exited(self):
        self.t("process_exited")


async def shell(t, cmd, **kw):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    tr, _ = await loop.subprocess_shell(lambda: Proto(t, done), cmd, **kw)
    return tr, done

# {================================================= subprocess protocol


async def finish(t, tr, done, sort_middle=False):
    """Until connection_lost; then the return code, and the trace."""
    await asyncio.wait_for(done, 5)
    t("returncode", tr.get_returncode())
    t.dump(sort_middle)


@scenario
async def sp_close_then_exit(t):
    tr, done = await shell(t, "printf out; printf err >&2; sleep 0.05; exec 1>&-; sleep 0.05; exec 2>&-; sleep 0.2; exit 3",
                           stdin=DEVNULL)
    await finish(t, tr, done)


@scenario
async def sp_exit_then_close(t):
    # The shell exits; a grandchild keeps stdout and stderr open.
    tr, done = await shell(t, "printf early; sleep 0.05; (sleep 0.3; printf late) & exit 0",
                           stdin=DEVNULL, stderr=DEVNULL)
    await asyncio.sleep(0.2)
    t("returncode", tr.get_returncode())
    w = asyncio.ensure_future(tr._wait())
    await asyncio.sleep(0.01)
    t("wait done", w.done())
    await asyncio.wait_for(done, 5)
    t("wait", await w)
    t.dump()


@scenario
async def sp_killed(t):
    tr, done = await shell(t, "exec sleep 5", stdin=DEVNULL)
    tr.send_signal(signal.SIGTERM)
    await finish(t, tr, done, sort_middle=True)


@scenario
async def sp_unread_stdin(t):
    tr, done = await shell(t, "exec sleep 0.2", stdout=DEVNULL, stderr=DEVNULL)
    tr.get_pipe_transport(0).write(b"x" * 300000)
    t("buffered", tr.get_pipe_transport(0).get_write_buffer_size())
    await finish(t, tr, done, sort_middle=True)


@scenario
async def sp_after_exit(t):
    # A grandchild keeps stdout open a while after the shell exited.
    tr, done = await shell(t, "sleep 0.05; (sleep 0.3; :) & exit 7", stdin=DEVNULL, stderr=DEVNULL)
    t("pid", type(tr.get_pid()).__name__)
    for fd in (0, 1, 2):
        t("pipe", fd, tr.get_pipe_transport(fd) is not None)
    while tr.get_returncode() is None:
        await asyncio.sleep(0.01)
    for m in ("send_signal", "terminate", "kill"):
        try:
            getattr(tr, m)(*([signal.SIGHUP] if m == "send_signal" else []))
            t("exited", m, "ok")
        except Exception as e:
            t("exited", m, ename(e))
    await asyncio.wait_for(done, 5)
    for m in ("send_signal", "terminate", "kill"):
        try:
            getattr(tr, m)(*([signal.SIGHUP] if m == "send_signal" else []))
            t("finished", m, "ok")
        except Exception as e:
            t("finished", m, ename(e))
    t("returncode", tr.get_returncode(), "closing", tr.is_closing())
    tr.close()
    t("pipe 1 after close", tr.get_pipe_transport(1) is not None)
    t.dump(sort_middle=False)


@scenario
async def sp_close_after_exit(t):
    # The shell has exited; a grandchild holds stdout; close() then.
    tr, done = await shell(t, "(sleep 0.5; printf late) & exit 6", stdin=DEVNULL, stderr=DEVNULL)
    while tr.get_returncode() is None:
        await asyncio.sleep(0.01)
    tr.close()
    t("closing", tr.is_closing())
    await finish(t, tr, done)


@scenario
async def sp_close_running(t):
    tr, done = await shell(t, "exec sleep 5")
    tr.close()
    t("closing", tr.is_closing())
    await finish(t, tr, done, sort_middle=True)

class Rng:
    """The LCG proc.lua uses too, so a seed makes the same choices."""

    def __init__(self, seed):
        self.x = seed

    def pick(self, options):
        self.x = (self.x * 1103515245 + 12345) % 2147483648
        return options[(self.x >> 16) % len(options)]


def random_child(rng):
    """A shell script writing, closing and sleeping at random, then ending
    by exit or by signal; and the parent's choice for stdin."""
    steps, open_fds = ["sleep 0.05"], {1, 2}  # the parent writes stdin first
    for _ in range(rng.pick([1, 2, 3, 4, 5])):
        what = rng.pick(["write", "write", "close", "sleep"])
        fd = rng.pick([1, 2])
        if what == "write" and fd in open_fds:
            n = rng.pick([0, 1, 5000, 70000])
            steps.append("head -c %d /dev/zero%s" % (n, " >&2" if fd == 2 else ""))
        elif what == "close" and fd in open_fds:
            open_fds.discard(fd)
            steps.append("exec %d>&-" % fd)
        elif what == "sleep":
            steps.append("sleep 0.0%d" % rng.pick([1, 2, 3]))
    steps.append(rng.pick(["exit 0", "exit 1", "exit 42", "kill -TERM $$", "kill -KILL $$"]))
    stdin = rng.pick(["DEVNULL", "PIPE"])
    written = rng.pick([0, 10, 100000]) if stdin == "PIPE" else 0
    return "; ".join(steps), stdin, written


@scenario
async def sp_random(t):
    """Seeded random children: the set of callbacks, the bytes per fd and
    the return code must agree (their order may race)."""
    for seed in range(1, 41):
        cmd, stdin, written = random_child(Rng(seed))
        lt = Trace("sp_random %d" % seed)
        tr, done = await shell(lt, cmd, stdin=DEVNULL if stdin == "DEVNULL" else PIPE)
        if written:
            tr.get_pipe_transport(0).write(b"i" * written)
        await asyncio.wait_for(done, 5)
        totals, events = {}, []
        for line in lt.lines[1:-1]:
            if line.startswith("data"):
                fd, n = line.split()[1:]
                totals[fd] = totals.get(fd, 0) + int(n[2:])
            else:
                events.append(line.replace("pause_writing", "pause_writing (stdin)"))
        t(seed, cmd, "stdin", stdin, written)
        t(seed, "first", lt.lines[0], "last", lt.lines[-1], "returncode", tr.get_returncode())
        t(seed, "data", " ".join("%s:%d" % kv for kv in sorted(totals.items())),
          "events", sorted(set(events)))
    t.dump()

# }=================================================

# {================================================= Process (streams)


@scenario
async def pr_returncodes(t):
    for cmd in ("exit 3", "kill -9 $$", "kill -TERM $$", "true"):
        p = await asyncio.create_subprocess_shell(cmd)
        t(repr(cmd), await p.wait(), p.returncode)
    t.dump()


@scenario
async def pr_communicate(t):
    p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE, stderr=PIPE)
    out, err = await p.communicate(b"hello")
    t("out", out, "err", err, p.returncode)
    p = await asyncio.create_subprocess_exec("true", stdin=PIPE, stdout=PIPE)
    out, err = await p.communicate(b"y" * 1000000)   # never read
    t("unread", out, err, p.returncode)
    cmd = "head -c 1000000 /dev/zero; head -c 700000 /dev/zero >&2"
    p = await asyncio.create_subprocess_shell(cmd, stdout=PIPE, stderr=PIPE)
    out, err = await p.communicate()
    t("large", len(out), len(err), p.returncode)
    p = await asyncio.create_subprocess_shell("exit 4")
    t("no pipes", await p.communicate(), p.returncode)
    t.dump()


@scenario
async def pr_wait_timeout(t):
    p = await asyncio.create_subprocess_exec("sleep", "5")
    try:
        await asyncio.wait_for(p.wait(), 0.1)
    except Exception as e:
        t("wait_for", ename(e), p.returncode)
    p.kill()
    t("wait", await p.wait())
    try:
        p.send_signal(signal.SIGTERM)
        t("send_signal after wait", "ok")
    except Exception as e:
        t("send_signal after wait", ename(e))
    p = await asyncio.create_subprocess_exec("sleep", "5", stdout=PIPE)
    try:
        await asyncio.wait_for(p.communicate(), 0.1)
    except Exception as e:
        t("communicate wait_for", ename(e), p.returncode)
    p.terminate()
    t("communicate again", await p.communicate(), p.returncode)
    t.dump()


@scenario
async def pr_big_both_ways(t):
    p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
    out, err = await p.communicate(b"q" * 3000000)
    t("cat", len(out), err, p.returncode)
    p = await asyncio.create_subprocess_shell("sleep 0.1; exec 0<&-; sleep 0.1; echo closed-stdin", stdin=PIPE, stdout=PIPE)
    p.stdin.write(b"w" * 200000)
    try:
        await p.stdin.drain()
        t("drain", "ok")
    except Exception as e:
        t("drain", ename(e))
    t("read", await p.stdout.read(), await p.wait())
    t.dump()


@scenario
async def pr_options(t):
    p = await asyncio.create_subprocess_shell("echo $A-$B; pwd", stdout=PIPE,
                                              env={"A": "1", "PATH": os.environ["PATH"]}, cwd="/tmp")
    t("env cwd", (await p.communicate())[0])
    p = await asyncio.create_subprocess_shell("ps -o sid= -p $$ | tr -d ' '; echo $$", stdout=PIPE,
                                              start_new_session=True)
    sid, pid = (await p.communicate())[0].split()
    t("new session", sid == pid)
    import socket
    a, b = socket.socketpair()
    p = await asyncio.create_subprocess_exec("bash", "-c", "echo passed >&%d" % b.fileno(), pass_fds=[b.fileno()])
    await p.wait()
    b.close()
    t("pass_fds", a.recv(100))
    a.close()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    tr, _ = await loop.subprocess_shell(lambda: Proto(t, done), "echo o; echo e >&2; exec 1>&-; sleep 0.05", stdin=DEVNULL, stderr=STDOUT)
    t("stderr=STDOUT pipes", [tr.get_pipe_transport(fd) is not None for fd in (0, 1, 2)])
    await asyncio.wait_for(done, 5)
    t.dump()


@scenario
async def pr_random(t):
    """Seeded communicate() mixes: children that read all, some or none of
    their input; stderr piped, dropped or merged."""
    for seed in range(1, 31):
        rng = Rng(seed)
        child = rng.pick(["cat", "head -c 5000", "true", "sleep 0.05; cat", "cat >/dev/null; echo done",
                          "head -c 70000 >/dev/null; echo e >&2; exit 3", "kill -9 $$"])
        stderr = rng.pick(["PIPE", "DEVNULL", "STDOUT"])
        size = rng.pick([None, 0, 10, 100000, 1000000])
        p = await asyncio.create_subprocess_shell(child, stdin=PIPE, stdout=PIPE,
                                                  stderr=getattr(subprocess, stderr))
        out, err = await asyncio.wait_for(p.communicate(None if size is None else b"i" * size), 10)
        t(seed, repr(child), stderr, size, "->", len(out), err, p.returncode)
    t.dump()


@scenario
async def pr_wait_unread(t):
    # The child writes more than the reader buffers (2 * limit) plus what
    # the pipe holds, minus a little: it exits, its stdout stays unread.
    p = await asyncio.create_subprocess_shell("head -c 150000 /dev/zero", stdout=PIPE)
    await asyncio.sleep(0.2)
    t("exited", p.returncode)
    try:
        t("wait", await asyncio.wait_for(p.wait(), 1))
    except Exception as e:
        t("wait", ename(e))
    t("read", len(await p.stdout.read()), await p.wait())
    t.dump()


@scenario
async def pr_stdio(t):
    p = await asyncio.create_subprocess_shell("echo o; echo e >&2", stdout=DEVNULL, stderr=PIPE)
    t("devnull", p.stdin, p.stdout, await p.stderr.read())
    await p.wait()
    p = await asyncio.create_subprocess_shell("echo o; echo e >&2", stdout=PIPE, stderr=STDOUT)
    t("stdout", p.stderr, await p.stdout.read())
    await p.wait()
    r, w = os.pipe()
    p = await asyncio.create_subprocess_shell("echo tofd", stdout=w)
    os.close(w)
    await p.wait()
    t("fd", os.read(r, 100))
    os.close(r)
    with tempfile.TemporaryFile() as f:
        p = await asyncio.create_subprocess_shell("echo tofile; echo err >&2", stdout=f, stderr=f)
        await p.wait()
        f.seek(0)
        t("file", f.read())
    p = await asyncio.create_subprocess_shell("cat", stdin=DEVNULL, stdout=PIPE)
    t("stdin devnull", await p.stdout.read(), await p.wait())
    with tempfile.TemporaryFile() as f:
        f.write(b"from-file")
        f.seek(0)
        p = await asyncio.create_subprocess_shell("cat", stdin=f, stdout=PIPE)
        t("stdin file", await p.stdout.read(), await p.wait())
    t.dump()

@scenario
async def pr_edges(t):
    loop = asyncio.get_running_loop()
    errs = []
    loop.set_exception_handler(lambda l, c: errs.append(ename(c.get("exception"))))
    for prog in ("/nonexistent/prog", "/etc/passwd"):
        try:
            await asyncio.create_subprocess_exec(prog)
        except Exception as e:
            t("spawn", prog, ename(e))
    try:
        await asyncio.create_subprocess_exec("true", cwd="/nonexistent")
    except Exception as e:
        t("cwd", ename(e))
    p = await asyncio.create_subprocess_exec("true", stdin=PIPE)
    await p.wait()
    await asyncio.sleep(0.05)
    p.stdin.write(b"x")
    try:
        await p.stdin.drain()
        t("drain after exit", "ok")
    except Exception as e:
        t("drain after exit", ename(e))
    p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
    t("communicate", await p.communicate(b"once"))
    t("again", await p.communicate(b"twice"))
    p = await asyncio.create_subprocess_exec("sleep", "5")
    for sig in (0, 999):
        try:
            p.send_signal(sig)
            t("send_signal", sig, "ok")
        except Exception as e:
            t("send_signal", sig, ename(e))
    p.kill()
    await p.wait()

    class Bad(asyncio.SubprocessProtocol):
        def connection_made(self, tr):
            raise ValueError("in connection_made")

        def connection_lost(self, exc):
            t("bad connection_lost", ename(exc))
    try:
        tr, _ = await loop.subprocess_exec(Bad, "sh", "-c", "exit 2", stdin=DEVNULL)
        t("connection_made raised: returned, closing", tr.is_closing())
        await asyncio.sleep(0.2)
        t("returncode", tr.get_returncode())
    except Exception as e:
        t("connection_made raised", ename(e))
    await asyncio.sleep(0.05)
    t("handler", errs)
    loop.set_exception_handler(None)
    t.dump()

# }=================================================

# {================================================= pipes


class PipeProto(Recorder, asyncio.Protocol):
    def data_received(self, data):
        self.t.data_of(0, data)

    def eof_received(self):
        self.t("eof_received")


async def read_pipe(t, fd):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    tr, _ = await loop.connect_read_pipe(lambda: PipeProto(t, done), os.fdopen(fd, "rb", 0))
    return tr, done


async def write_pipe(t, fd):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    tr, _ = await loop.connect_write_pipe(lambda: PipeProto(t, done), os.fdopen(fd, "wb", 0))
    return tr, done


@scenario
async def pipe_read(t):
    r, w = os.pipe()
    tr, done = await read_pipe(t, r)
    t("is_reading", tr.is_reading())
    os.write(w, b"abc")
    await asyncio.sleep(0.05)
    tr.pause_reading()
    t("paused", tr.is_reading())
    os.write(w, b"defg")
    await asyncio.sleep(0.05)
    tr.resume_reading()
    await asyncio.sleep(0.05)
    os.close(w)
    await asyncio.wait_for(done, 5)
    t("closing", tr.is_closing(), "reading", tr.is_reading())
    tr.close()
    r, w = os.pipe()
    tr, done = await read_pipe(t, r)
    tr.close()
    t("closed", tr.is_closing())
    await asyncio.wait_for(done, 5)
    os.close(w)
    t.dump()


@scenario
async def pipe_write_flow(t):
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    tr.set_write_buffer_limits(high=100000, low=1000)
    t("limits", tr.get_write_buffer_limits())
    tr.write(b"z" * 300000)
    t("buffered", tr.get_write_buffer_size())
    got = 0
    while got < 300000:
        await asyncio.sleep(0.01)
        got += len(os.read(r, 1 << 20))
        t("read", got, "buffered", tr.get_write_buffer_size())
    t("can_write_eof", tr.can_write_eof())
    tr.write_eof()
    t("closing", tr.is_closing())
    tr.write(b"after")
    await asyncio.wait_for(done, 5)
    t("eof read", os.read(r, 10))
    os.close(r)
    t.dump()


@scenario
async def pipe_write_abort_close(t):
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    tr.write(b"a" * 100000)
    t("queued", tr.get_write_buffer_size())
    tr.abort()
    t("aborted: closing", tr.is_closing(), "buffered", tr.get_write_buffer_size())
    await asyncio.wait_for(done, 5)
    t("in pipe", len(os.read(r, 1 << 20)))
    os.close(r)
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    tr.writelines([b"b" * 50000, b"c" * 50000])
    t("queued", tr.get_write_buffer_size())
    tr.close()
    t("closed: closing", tr.is_closing(), "buffered", tr.get_write_buffer_size())
    got = 0
    while got < 100000:
        await asyncio.sleep(0.01)
        got += len(os.read(r, 1 << 20))
    await asyncio.wait_for(done, 5)
    t("got", got, "then", os.read(r, 10))
    os.close(r)
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    tr.write(b"d" * 100000)
    tr.close()
    os.read(r, 1000)
    os.close(r)
    await asyncio.wait_for(done, 5)
    t.dump()


@scenario
async def pipe_misc(t):
    r, w = os.pipe()
    rt, rdone = await read_pipe(t, r)
    wt, wdone = await write_pipe(t, w)
    t("limits", wt.get_write_buffer_limits())
    for args in ((10, 20), (None, None), (100, None), (None, 5)):
        try:
            wt.set_write_buffer_limits(*args)
            t("set limits", args, wt.get_write_buffer_limits())
        except Exception as e:
            t("set limits", args, ename(e))
    wt.write(b"")
    t("empty write: buffered", wt.get_write_buffer_size())
    wt.write_eof()
    for what, fn in (("write_eof again", wt.write_eof), ("write after eof", lambda: wt.write(b"x")),
                     ("writelines after eof", lambda: wt.writelines([b"x"])), ("close", wt.close)):
        # (not abort(): CPython 3.12/3.13 then call connection_lost twice, the
        # second time failing with AttributeError in _call_connection_lost)
        try:
            fn()
            t(what, "ok")
        except Exception as e:
            t(what, ename(e))
    await asyncio.wait_for(asyncio.gather(rdone, wdone), 5)
    rt.close()
    rt.pause_reading()
    rt.resume_reading()
    t("after close: reading", rt.is_reading(), "closing", rt.is_closing())
    t.dump()


@scenario
async def pipe_reader_gone(t):
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    tr.write(b"a" * 10)
    os.read(r, 100)
    os.close(r)
    await asyncio.wait_for(done, 5)
    t("nothing queued: closing", tr.is_closing())
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    tr.write(b"b" * 100000)
    t("queued", tr.get_write_buffer_size())
    os.close(r)
    await asyncio.wait_for(done, 5)
    r, w = os.pipe()
    tr, done = await write_pipe(t, w)
    os.close(r)
    tr.write(b"c")   # before the loop noticed: EPIPE from write()
    t("after write", tr.is_closing())
    await asyncio.wait_for(done, 5)
    t.dump()


@scenario
async def pipe_child(t):
    # A child holds the other end; it exits.
    r, w = os.pipe()
    p = await asyncio.create_subprocess_shell("printf from-child", stdout=w)
    os.close(w)
    tr, done = await read_pipe(t, r)
    await asyncio.wait_for(done, 5)
    await p.wait()
    r, w = os.pipe()
    p = await asyncio.create_subprocess_shell("exec head -c 5 >/dev/null", stdin=r)
    os.close(r)
    tr, done = await write_pipe(t, w)
    tr.write(b"12345")
    await p.wait()
    await asyncio.sleep(0.05)
    tr.write(b"more")
    await asyncio.wait_for(done, 5)
    t.dump()

@scenario
async def pipe_raising(t):
    loop = asyncio.get_running_loop()
    errs = []
    loop.set_exception_handler(lambda l, c: errs.append(ename(c.get("exception"))))

    class P(PipeProto):
        def data_received(self, data):
            t("data_received raises")
            raise ValueError("data")

        def eof_received(self):
            t("eof_received raises")
            raise ValueError("eof")
    r, w = os.pipe()
    done = loop.create_future()
    tr, _ = await loop.connect_read_pipe(lambda: P(t, done), os.fdopen(r, "rb", 0))
    os.write(w, b"1")
    await asyncio.sleep(0.05)
    os.write(w, b"2")
    await asyncio.sleep(0.05)
    os.close(w)
    await asyncio.wait_for(done, 5)
    t("errors", errs)

    class M(PipeProto):
        def connection_made(self, tr):
            t("connection_made raises")
            raise ValueError("made")
    errs.clear()
    r, w = os.pipe()
    try:
        tr, _ = await loop.connect_read_pipe(lambda: M(t, done), os.fdopen(r, "rb", 0))
        await asyncio.sleep(0.05)
        t("returned, closing", tr.is_closing(), "errors", errs)
        tr.close()
    except Exception as e:
        t("connect_read_pipe", ename(e))
    os.close(w)
    loop.set_exception_handler(None)
    t.dump()

# }=================================================

# {================================================= signals


def catch(t, what, fn, *args):
    try:
        t(what, "->", fn(*args))
    except Exception as e:
        t(what, "->", ename(e), str(e))


@scenario
async def sig_api(t):
    loop = asyncio.get_running_loop()
    catch(t, "add USR1", loop.add_signal_handler, signal.SIGUSR1, lambda: None)
    catch(t, "add USR1 again", loop.add_signal_handler, signal.SIGUSR1, lambda: None)
    catch(t, "remove USR1", loop.remove_signal_handler, signal.SIGUSR1)
    catch(t, "remove USR1 again", loop.remove_signal_handler, signal.SIGUSR1)
    for sig in (0, -1, 32, 65, signal.SIGKILL, signal.SIGSTOP):
        catch(t, "add %d" % sig, loop.add_signal_handler, sig, lambda: None)
        catch(t, "remove %d" % sig, loop.remove_signal_handler, sig)
    t.dump()


@scenario
async def sig_delivery(t):
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    errs = []
    loop.set_exception_handler(lambda l, c: errs.append(ename(c.get("exception"))))
    loop.add_signal_handler(signal.SIGUSR1, t, "old USR1")
    loop.add_signal_handler(signal.SIGUSR1, t, "USR1")
    loop.add_signal_handler(signal.SIGUSR2, t, "USR2")

    def hup():
        t("HUP raises")
        raise ValueError("boom")
    loop.add_signal_handler(signal.SIGHUP, hup)
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2):
        os.kill(pid, sig)
    t("sent")
    await asyncio.sleep(0.1)
    os.kill(pid, signal.SIGHUP)
    await asyncio.sleep(0.1)
    t("errors", errs)

    def remover():
        t("USR2 removes itself", loop.remove_signal_handler(signal.SIGUSR2))
    loop.add_signal_handler(signal.SIGUSR2, remover)
    os.kill(pid, signal.SIGUSR2)
    os.kill(pid, signal.SIGUSR1)
    await asyncio.sleep(0.1)
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        t("remove", sig, loop.remove_signal_handler(sig))
    loop.set_exception_handler(None)
    t.dump()


@scenario
async def sig_burst(t):
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    loop.add_signal_handler(signal.SIGUSR1, t, "USR1")

    def handler_adds():
        t("USR2 adds a HUP handler")
        loop.add_signal_handler(signal.SIGHUP, t, "HUP")
        os.kill(pid, signal.SIGHUP)
        loop.call_soon(t, "soon after HUP")
    loop.add_signal_handler(signal.SIGUSR2, handler_adds)
    loop.call_soon(t, "soon 1")
    for _ in range(3):
        os.kill(pid, signal.SIGUSR1)
    loop.call_soon(t, "soon 2")
    os.kill(pid, signal.SIGUSR2)
    await asyncio.sleep(0.1)
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    t.dump()


@scenario
async def sig_random(t):
    """Seeded bursts of signals and call_soon callbacks sent from one
    callback: the order the handlers and callbacks run in."""
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    names = ["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGWINCH"]
    for name in names:
        loop.add_signal_handler(getattr(signal, name), t, name)
    for seed in range(1, 21):
        rng = Rng(seed)
        steps = [rng.pick(names + ["soon"]) for _ in range(rng.pick([1, 3, 6]))]

        def burst():
            for i, step in enumerate(steps):
                if step == "soon":
                    loop.call_soon(t, "soon %d" % i)
                else:
                    os.kill(pid, getattr(signal, step))
        t("seed", seed, steps)
        loop.call_soon(burst)
        await asyncio.sleep(0.05)
    t.dump()


@scenario
async def sig_chld(t):
    loop = asyncio.get_running_loop()
    got = []
    loop.add_signal_handler(signal.SIGCHLD, got.append, "CHLD")
    p = await asyncio.create_subprocess_exec("sh", "-c", "exit 9")
    t("wait", await asyncio.wait_for(p.wait(), 5))
    await asyncio.sleep(0.05)
    t("handler ran", len(got) > 0, "removed", loop.remove_signal_handler(signal.SIGCHLD))
    p = await asyncio.create_subprocess_exec("sh", "-c", "exit 8")
    t("after removal", await asyncio.wait_for(p.wait(), 5))
    t.dump()


@scenario
async def sig_closed_loop(t):
    loop = asyncio.new_event_loop()
    loop.close()
    catch(t, "add on closed", loop.add_signal_handler, signal.SIGUSR1, lambda: None)
    catch(t, "remove on closed", loop.remove_signal_handler, signal.SIGUSR1)
    t.dump()

# }=================================================

# {================================================= executor


def job(marker, delay, value):
    time.sleep(delay)
    if marker:
        with open(marker, "w") as f:
            f.write("ran")
    return value


def raiser():
    raise ValueError("from thread")


@scenario
async def ex_results(t):
    loop = asyncio.get_running_loop()
    t("result", await loop.run_in_executor(None, job, None, 0, 42))
    try:
        await loop.run_in_executor(None, raiser)
    except Exception as e:
        t("error", str(e))
    t("to_thread", await asyncio.to_thread(job, None, 0, "x"))
    try:
        await asyncio.to_thread(raiser)
    except Exception as e:
        t("to_thread error", str(e))
    t.dump()


@scenario
async def ex_cancel(t):
    loop = asyncio.get_running_loop()
    d = tempfile.mkdtemp()
    m1, m2 = os.path.join(d, "1"), os.path.join(d, "2")
    fut = loop.run_in_executor(None, job, m1, 0.2, 1)
    try:
        await asyncio.wait_for(fut, 0.05)
    except Exception as e:
        t("wait_for", ename(e), "cancelled", fut.cancelled())
    task = asyncio.ensure_future(asyncio.to_thread(job, m2, 0.2, 2))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError as e:
        t("to_thread task", ename(e))
    t("ran yet", os.path.exists(m1), os.path.exists(m2))
    await asyncio.sleep(0.4)
    t("ran later", os.path.exists(m1), os.path.exists(m2))
    t.dump()


@scenario
async def ex_shutdown(t):
    loop = asyncio.get_running_loop()
    futs = [loop.run_in_executor(None, job, None, 0.1, i) for i in range(3)]
    await loop.shutdown_default_executor()
    t("after shutdown", [f.done() for f in futs])
    t("results", await asyncio.gather(*futs))
    try:
        loop.run_in_executor(None, job, None, 0, 0)
    except Exception as e:
        t("run_in_executor", ename(e), str(e))
    try:
        await asyncio.to_thread(job, None, 0, 0)
    except Exception as e:
        t("to_thread", ename(e), str(e))
    t("second shutdown", await loop.shutdown_default_executor())
    t.dump()


@scenario
async def ex_pool(t):
    import concurrent.futures as cf
    loop = asyncio.get_running_loop()
    d = tempfile.mkdtemp()
    pool = cf.ThreadPoolExecutor(1)
    first = loop.run_in_executor(pool, job, None, 0.1, "first")
    queued = loop.run_in_executor(pool, job, os.path.join(d, "q"), 0, "queued")
    queued.cancel()
    later = loop.run_in_executor(pool, job, None, 0, "later")
    await asyncio.sleep(0.02)  # the thread has taken the first job
    pool.shutdown(wait=False, cancel_futures=True)
    try:
        loop.run_in_executor(pool, job, None, 0, 0)
    except Exception as e:
        t("after pool shutdown", ename(e), str(e))
    t("first", await first)
    await asyncio.sleep(0.05)
    t("queued", queued.cancelled(), "later", later.cancelled(), os.path.exists(os.path.join(d, "q")))
    t.dump()

@scenario
async def ex_set_default(t):
    import concurrent.futures as cf
    loop = asyncio.get_running_loop()
    pool = cf.ThreadPoolExecutor(2)
    loop.set_default_executor(pool)
    t("on pool", await loop.run_in_executor(None, job, None, 0, "p"))
    await loop.shutdown_default_executor()
    try:
        loop.run_in_executor(pool, job, None, 0, 0)
        t("pool after default shutdown", "ok")
    except Exception as e:
        t("pool after default shutdown", ename(e), str(e))
    other = asyncio.new_event_loop()
    other.close()
    try:
        other.run_in_executor(None, job, None, 0, 0)
        t("closed loop", "ok")
    except Exception as e:
        t("closed loop", ename(e), str(e))
    t.dump()


@scenario
async def ex_shutdown_timeout(t):
    import warnings
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, job, None, 0.3, "late")
    with warnings.catch_warnings():  # the RuntimeWarning, as eddy's (off by default)
        warnings.simplefilter("ignore")
        start = loop.time()
        await loop.shutdown_default_executor(0.05)
        t("returned within", "%.1f" % (loop.time() - start))
    t("job done yet", fut.done())
    t("job", await asyncio.wait_for(fut, 2))
    t.dump()

# }=================================================


if __name__ == "__main__":
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    for fn in SCENARIOS:  # each on a loop of its own
        if fn.__name__.startswith(prefix):
            asyncio.run(fn(Trace(fn.__name__)))
