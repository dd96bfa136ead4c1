"""Differential harness, CPython side: StreamReader and StreamWriter.
Seeded random programs feed a reader random chunks (sizes 0..3 x limit,
separators split across chunks, EOF at random points) while it runs a
random sequence of reads (read(n), readline, readexactly, readuntil with
one separator or a list, at_eof, iteration over lines) and prints every
result or error with its fields: 'feed' programs call feed_data/feed_eof
directly, 'tcp' and 'unix' programs write the chunks over a connection
(write or writelines, then write_eof, close, abort or a reset).  Fixed
'w_' scenarios cover the writer: drain against a slow reader, write
buffer limits, write_eof, close and wait_closed, a peer's reset,
get_extra_info.  tools/diff/streams.lua runs the same programs under
eddy; `tools/diff/run.sh streams` diffs the two.
Usage: python3 streams.py [scenario-prefix]; STREAMS_SEEDS=n for the
number of feed programs (default 300; a third as many tcp, a sixth unix);
STREAMS_ONE_SEPARATOR=1 for readuntil with one separator only (3.12)."""
import sys

# This directory goes last on the path: its socket.py would shadow the
# module, and proc.py has the Rng proc.lua and streams.lua share.
sys.path.append(sys.path.pop(0))
import asyncio, errno, os, shutil, socket as S, struct, tempfile  # noqa: E402
from proc import Rng, show as proc_show  # noqa: E402

SEEDS = int(os.environ.get("STREAMS_SEEDS", "300"))
TMP = tempfile.mkdtemp(prefix="eddy-streams-")


class Raw(str):
    """A string show() prints as it is (errors, addresses)."""


def show(v):
    """A value as both harnesses print it: as proc.py's show, but a string
    quoted with its carriage returns escaped too, a long one by its ends,
    length and count of newlines."""
    if isinstance(v, Raw):
        return v
    if isinstance(v, (bytes, str)):
        s = v.decode("latin-1") if isinstance(v, bytes) else v
        if len(s) > 24:
            s = "%s..%s(%d,%d)" % (s[:8], s[-8:], len(s), s.count("\n"))
        return '"%s"' % s.replace("\r", "\\r").replace("\n", "\\n")
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(show(x) for x in v) + "}"
    return proc_show(v)


def addr(a):
    """A (host, port) address, its ephemeral port as PORT."""
    return Raw("{%s, %s}" % (a[0], "PORT" if a[1] >= 10000 else a[1]))


# Python's classes eddy does not have (API.md section 9) print as eddy's.
AS_EDDY = {"TypeError": "ArgError"}


def err(e):
    """An error with what it carries: errno name, message, fields."""
    name = AS_EDDY.get(type(e).__name__, type(e).__name__)
    if isinstance(e, OSError) and e.errno is not None:
        return Raw("error %s %s" % (name, errno.errorcode.get(e.errno, e.errno)))
    words = ["error", name, "(%s)" % e]  # (eddy's message nil: "")
    if isinstance(e, asyncio.IncompleteReadError):
        words += ["partial", show(e.partial), "expected", show(e.expected)]
    if isinstance(e, asyncio.LimitOverrunError):
        words += ["consumed", show(e.consumed)]
    return Raw(" ".join(words))


class Trace:
    def __init__(self, name):
        self.name = name

    def __call__(self, label, *values):
        line = "%s: %s %s" % (self.name, label, " ".join(show(v) for v in values))
        print(line.rstrip(), flush=True)


async def tick(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


async def settle(net):
    """Let what was sent arrive: a few iterations, or over TCP a moment
    (eddy polls for I/O once per 256 iterations, docs/performance.md)."""
    await (asyncio.sleep(0.005) if net else tick())


# {================================================= random programs

TOKENS = [b"a", b"bcd", b"\n", b"\r\n", b"XY", b"--", b"*"]
LIMITS = [1, 2, 3, 5, 8, 16, 64, 65536]
# (A tuple is 3.13's several separators; eddy's is a list.)
SEPARATORS = [b"\n", b"XY", b"\r\n", b"--", b"Y\n", (b"\n",), (b"XY", b"\n"),
              (b"--", b"\r\n", b"Y"), (b"Y\n", b"\n"), (b"-", b"--"), b"", (), (b"a", b"")]
if os.environ.get("STREAMS_ONE_SEPARATOR"):  # for 3.12, which has no tuple of them
    SEPARATORS = [s for s in SEPARATORS if isinstance(s, bytes)]


def chunk(rng, limit):
    """Up to 3 x limit bytes of tokens, cut at a random length (so a
    separator may end one chunk and begin the next)."""
    size = rng.pick([0, 1, 2, 3, limit // 2, limit, limit + 1, 2 * limit, 3 * limit])
    parts, n = [], 0
    while n < size:
        p = rng.pick(TOKENS)
        if p == b"*":
            p = b"f" * rng.pick([1, 7, limit, 2 * limit])
        parts.append(p)
        n += len(p)
    return b"".join(parts)[:size]


def split(rng, data):
    """data cut at random points (writelines' list)."""
    parts = []
    while data:
        n = rng.pick([1, 2, 5, len(data)])
        parts.append(data[:n])
        data = data[n:]
    return parts


def random_op(rng, limit):
    """A reader call: (label, coroutine function of the reader)."""
    what = rng.pick(["read", "read", "readline", "readexactly", "readuntil",
                     "at_eof", "lines", "buffered"])
    if what == "read":
        n = rng.pick([-1, 0, 1, 2, limit, 2 * limit + 1, 3 * limit])
        return "read %d" % n, lambda r: r.read(n)
    if what == "readline":
        return "readline", lambda r: r.readline()
    if what == "readexactly":
        n = rng.pick([-1, 0, 1, 2, limit, limit + 1, 3 * limit])
        return "readexactly %d" % n, lambda r: r.readexactly(n)
    if what == "readuntil":
        sep = rng.pick(SEPARATORS)
        return "readuntil " + show(sep), lambda r: r.readuntil(sep)
    if what == "lines":
        k = rng.pick([1, 2, 5])

        async def lines(r):
            got = []
            async for line in r:  # eddy's lines(): each without its "\n"
                got.append(line[:-1] if line.endswith(b"\n") else line)
                if len(got) >= k:
                    break
            return got
        return "lines %d" % k, lines

    async def now(r):
        return r.at_eof() if what == "at_eof" else len(r._buffer)
    return what, now


async def run_op(t, label, fn, reader):
    try:
        r = await fn(reader)
    except Exception as e:
        t(label, err(e))
    else:
        t(label, r)


async def program(t, seed, kind):
    """One random program: the reader's limit, then steps that each feed
    a chunk, end the stream or start a read (one read at a time: while
    one waits, the steps feed)."""
    net = kind != "feed"
    rng = Rng(seed)
    limit = rng.pick(LIMITS)
    t("limit", limit)
    loop = asyncio.get_running_loop()
    if net:
        accepted = loop.create_future()
        if kind == "unix":
            path = os.path.join(TMP, "s")
            server = await asyncio.start_unix_server(
                lambda r, w: accepted.set_result((r, w)), path, limit=limit)
            _, cw = await asyncio.open_unix_connection(path)
        else:
            server = await asyncio.start_server(
                lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0, limit=limit)
            _, cw = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        reader, sw = await accepted
    else:
        reader = asyncio.StreamReader(limit)
    pending, ended = None, False

    async def feed(data):
        if not net:
            reader.feed_data(data)
        elif rng.pick([False, True]):
            parts = split(rng, data)
            t("writelines", len(parts))
            cw.writelines(parts)
        else:
            cw.write(data)
        if net:
            try:
                await asyncio.wait_for(cw.drain(), 3)
            except Exception as e:
                t("drain", err(e))
            await asyncio.sleep(0.01)

    async def end():
        how = (rng.pick(["write_eof", "write_eof", "close", "abort", "reset", "own_close",
                         "own_abort"]) if net
               else rng.pick(["feed_eof", "feed_eof", "feed_eof", "set_exception",
                              "feed_then_fail", "eof_then_fail"]))
        t(how)
        if how == "feed_eof":
            reader.feed_eof()
        elif how == "set_exception":
            reader.set_exception(ValueError("boom"))
        elif how in ("feed_then_fail", "eof_then_fail"):  # a read woken, then the error
            if how == "feed_then_fail":
                data = chunk(rng, limit)
                t("feed", data)
                reader.feed_data(data)
            else:
                reader.feed_eof()
            reader.set_exception(ValueError("boom"))
        elif how == "write_eof":
            cw.write_eof()
        elif how == "close":
            cw.close()
        elif how == "own_close":  # the reader's own side closes
            sw.close()
        elif how == "own_abort":
            sw.transport.abort()
        else:
            if how == "reset":
                cw.get_extra_info("socket").setsockopt(S.SOL_SOCKET, S.SO_LINGER,
                                                        struct.pack("ii", 1, 0))
            cw.transport.abort()
        if net:
            await asyncio.sleep(0.01)

    for _ in range(rng.pick([3, 5, 8, 12])):
        if pending is None and (ended or rng.pick([False, True, True])):
            label, fn = random_op(rng, limit)
            pending = loop.create_task(run_op(t, label, fn, reader))
        elif pending is not None and rng.pick([False, False, False, False, True]):
            if rng.pick([False, True]):
                t("cancel")
                pending.cancel()
            else:  # a second read while one waits
                label, fn = random_op(rng, limit)
                await run_op(t, "second " + label, fn, reader)
        elif not ended and rng.pick([True, True, True, True, False]):
            data = chunk(rng, limit)
            t("feed", data)
            await feed(data)
        elif not ended:
            await end()
            ended = True
        await settle(net)
        if pending is not None:
            if pending.done():
                pending = None
            else:
                t("waiting")
    if not ended:
        await end()
        await settle(net)
    if pending is not None:
        await asyncio.wait_for(pending, 3)  # (a read, when no exception ended it)
    if reader.exception():
        t("exception", err(reader.exception()))
    await run_op(t, "rest", lambda r: r.read(), reader)
    t("at_eof", reader.at_eof())
    if net:
        cw.close()
        sw.close()
        for w in (cw, sw):
            try:
                await asyncio.wait_for(w.wait_closed(), 3)
            except Exception as e:
                t("wait_closed", err(e))
        server.close()


# }=================================================
# {================================================= the writer

async def pair(limit=2 ** 16):
    """A connected writer and the peer's reader, writer."""
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()
    server = await asyncio.start_server(
        lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0, limit=limit)
    cr, cw = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    sr, sw = await accepted
    server.close()
    return cr, cw, sr, sw


async def aw(t, label, coro, timeout=3):
    try:
        r = await asyncio.wait_for(coro, timeout)
    except (Exception, asyncio.CancelledError) as e:
        t(label, err(e))
        return None
    t(label, r)
    return r


def call(t, label, fn, *args):
    try:
        r = fn(*args)
    except Exception as e:
        t(label, err(e))
        return None
    t(label, r)
    return r


async def w_flow(t):
    cr, cw, sr, sw = await pair()
    tr = cw.transport
    t("limits", tr.get_write_buffer_limits())
    call(t, "set limits", tr.set_write_buffer_limits, 100000, 50000)
    t("limits", tr.get_write_buffer_limits())
    call(t, "low above high", tr.set_write_buffer_limits, 10, 20)
    call(t, "high only", tr.set_write_buffer_limits, 40000)
    t("limits", tr.get_write_buffer_limits())
    call(t, "set limits", tr.set_write_buffer_limits, 100000, 50000)
    block = b"x" * 65536
    for _ in range(200):  # until the kernel's buffers are full
        cw.write(block)
        if tr.get_write_buffer_size() > 100000:
            break
    t("buffered over high", tr.get_write_buffer_size() > 100000)
    t("protocol paused", cw._protocol._paused)  # pause_writing was called
    loop = asyncio.get_running_loop()
    drain = loop.create_task(cw.drain())
    await tick()
    t("drain waits", not drain.done())
    drain2 = loop.create_task(cw.drain())
    await tick()
    t("second drain waits", not drain2.done())
    got = 0
    while not drain.done():
        got += len(await sr.read(65536))
    t("drained below low", tr.get_write_buffer_size() <= 50000)
    t("protocol paused", cw._protocol._paused)
    await aw(t, "drain", drain)
    await aw(t, "second drain", drain2)
    await aw(t, "drain again", cw.drain())
    call(t, "write_eof", cw.write_eof)
    while True:
        data = await sr.read(65536)
        if not data:
            break
        got += len(data)
    t("received all", got % 65536)
    cw.close()
    sw.close()
    await aw(t, "wait_closed", cw.wait_closed())


async def w_limits(t):
    """New limits while paused: asyncio pauses at once, resumes only as
    the buffer drains."""
    cr, cw, sr, sw = await pair()
    tr, loop = cw.transport, asyncio.get_running_loop()
    call(t, "negative high", tr.set_write_buffer_limits, -1)
    call(t, "negative low", tr.set_write_buffer_limits, 10, -1)
    call(t, "zero", tr.set_write_buffer_limits, 0)
    t("limits", tr.get_write_buffer_limits())
    cw.write(b"x")  # taken by the socket: nothing queued, no pause
    t("paused after a small write", cw._protocol._paused)
    block = b"x" * 65536
    while tr.get_write_buffer_size() == 0:
        cw.write(block)
    t("paused once queued", cw._protocol._paused)
    call(t, "raise high", tr.set_write_buffer_limits, 2 ** 30)
    t("paused after raising high", cw._protocol._paused)
    drain = loop.create_task(cw.drain())
    await tick()
    t("drain waits", not drain.done())
    call(t, "high back to 0", tr.set_write_buffer_limits, 0)
    t("paused", cw._protocol._paused)
    while not drain.done():
        await sr.read(65536)
    await aw(t, "drain", drain)
    t("paused", cw._protocol._paused, tr.get_write_buffer_size())
    cw.close()
    while await sr.read(65536):
        pass
    sw.close()
    await aw(t, "wait_closed", cw.wait_closed())


async def w_eof(t):
    cr, cw, sr, sw = await pair()
    t("can_write_eof", cw.can_write_eof())
    cw.write(b"half")
    call(t, "write_eof", cw.write_eof)
    t("is_closing", cw.is_closing())
    call(t, "write_eof again", cw.write_eof)
    call(t, "write after write_eof", cw.write, b"more")
    call(t, "empty write after write_eof", cw.write, b"")
    call(t, "writelines after write_eof", cw.writelines, [b"x"])
    await aw(t, "drain after write_eof", cw.drain())
    await aw(t, "peer read", sr.read())
    t("peer at_eof", sr.at_eof())
    sw.write(b"answer")
    await aw(t, "peer drain", sw.drain())
    sw.close()
    await aw(t, "read answer", cr.read())
    await aw(t, "wait_closed", cw.wait_closed(), 0.3)  # half-closed: it stays open
    await aw(t, "peer wait_closed", sw.wait_closed())
    t("is_closing", cw.is_closing())
    cw.close()
    await aw(t, "wait_closed after close", cw.wait_closed())


async def w_close(t):
    cr, cw, sr, sw = await pair()
    cw.write(b"before close")
    call(t, "close", cw.close)
    t("is_closing", cw.is_closing())
    call(t, "close again", cw.close)
    call(t, "write after close", cw.write, b"x")
    call(t, "writelines after close", cw.writelines, [b"x"])
    call(t, "write_eof after close", cw.write_eof)
    await aw(t, "drain after close", cw.drain())
    await aw(t, "wait_closed", cw.wait_closed())
    await aw(t, "wait_closed again", cw.wait_closed())
    await aw(t, "drain after closed", cw.drain())
    await aw(t, "read after closed", cr.read())
    await aw(t, "peer read", sr.read())
    sw.close()
    await aw(t, "peer wait_closed", sw.wait_closed())


async def w_reset(t):
    cr, cw, sr, sw = await pair()
    sw.get_extra_info("socket").setsockopt(S.SOL_SOCKET, S.SO_LINGER, struct.pack("ii", 1, 0))
    sw.transport.abort()
    await asyncio.sleep(0.05)
    await aw(t, "read after reset", cr.read())
    failed = None
    for i in range(50):
        cw.write(b"y" * 1000)
        try:
            await asyncio.wait_for(cw.drain(), 3)
        except Exception as e:
            failed = e
            break
        await asyncio.sleep(0.01)
    t("drain failed", err(failed) if failed else None)
    t("is_closing", cw.is_closing())
    await aw(t, "drain again", cw.drain())
    await aw(t, "wait_closed", cw.wait_closed())
    await aw(t, "peer wait_closed", sw.wait_closed())


async def w_reset_reader(t):
    """The peer resets while a read waits, and with data buffered."""
    cr, cw, sr, sw = await pair()
    loop = asyncio.get_running_loop()
    read = loop.create_task(cr.readexactly(10))
    sw.write(b"12345")
    await asyncio.sleep(0.05)
    sw.get_extra_info("socket").setsockopt(S.SOL_SOCKET, S.SO_LINGER, struct.pack("ii", 1, 0))
    sw.transport.abort()
    await aw(t, "waiting read", read)
    t("exception", err(cr.exception()) if cr.exception() else None)
    t("at_eof", cr.at_eof())
    await aw(t, "read", cr.read(1))
    await aw(t, "drain", cw.drain())
    await aw(t, "wait_closed", cw.wait_closed())


async def w_extra(t):
    cr, cw, sr, sw = await pair()
    t("peername", addr(cw.get_extra_info("peername")))
    t("sockname", addr(cw.get_extra_info("sockname")))
    t("peer peername", sw.get_extra_info("peername") == cw.get_extra_info("sockname"))
    s = cw.get_extra_info("socket")
    t("socket", s.family, s.type)
    t("missing", cw.get_extra_info("nothing"))
    t("missing default", cw.get_extra_info("nothing", "dflt"))
    t("sslcontext", cw.get_extra_info("sslcontext"))
    cw.close()
    await aw(t, "wait_closed", cw.wait_closed())
    t("peername after close", addr(cw.get_extra_info("peername")))
    sw.close()


async def w_writelines(t):
    cr, cw, sr, sw = await pair()
    call(t, "writelines", cw.writelines, [b"a", b"", b"bc", b"\n"])
    call(t, "writelines empty", cw.writelines, [])
    call(t, "write empty", cw.write, b"")
    await aw(t, "drain", cw.drain())
    await aw(t, "peer readline", sr.readline())
    cw.close()
    sw.close()
    await aw(t, "wait_closed", cw.wait_closed())
    # an empty chunk last, then close (CPython gh-155888: it never closes)
    cr, cw, sr, sw = await pair()
    cw.writelines([b"hello", b""])
    cw.close()
    await aw(t, "wait_closed after an empty chunk", cw.wait_closed(), 0.5)
    await aw(t, "peer read", sr.read())
    sw.close()


WRITER = [w_flow, w_limits, w_eof, w_close, w_reset, w_reset_reader, w_extra, w_writelines]


# }=================================================

async def main(prefix):
    for fn in WRITER:
        if fn.__name__.startswith(prefix):
            await fn(Trace(fn.__name__))
    for kind, n in (("feed", SEEDS), ("tcp", max(1, SEEDS // 3)), ("unix", max(1, SEEDS // 6))):
        for seed in range(1, n + 1):
            name = "%s%d" % (kind, seed)
            if name.startswith(prefix) or kind == prefix:
                t = Trace(name)
                try:
                    await program(t, seed, kind)
                except Exception as e:
                    t("harness", err(e))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ""))
shutil.rmtree(TMP)
