"""Differential harness, CPython side: datagram endpoints, Server
objects, UNIX servers and connections, create_connection's options, fd
watchers, the sock_* methods and sendfile.  tools/diff/net.lua drives the
same scenarios under eddy; both print one line per event or call,
"scenario: label result", so `tools/diff/run.sh net` can diff them (it
runs both where the name dual.test has ::1 and 127.0.0.1, for the happy
eyeballs scenarios).  Usage: python3 net.py [scenario-name-prefix];
NET_SEEDS=n for n random sequences (default 30), NET_MESSAGES=1 to add
the messages of errors without an errno (they differ: reprs)."""
import sys

# As socket.py: keep this directory off the path (its socket.py would
# shadow the module).
sys.path = [p for p in sys.path if p != sys.path[0]]
import asyncio, errno, importlib.util, os, shutil, socket as S, tempfile  # noqa: E402

# proc.py's Rng, which proc.lua and net.lua share (by path: see above).
_spec = importlib.util.spec_from_file_location(
    "proc", os.path.join(os.path.dirname(os.path.abspath(__file__)), "proc.py"))
_proc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_proc)
Rng = _proc.Rng

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


class Raw(str):
    """A string show() prints as it is (errors)."""


def show(v):
    """A value as both harnesses print it: strings and bytes quoted,
    tuples as {...}, ephemeral ports (10000 and up) as PORT, a socket by
    its family and type, a temporary path by its last part."""
    if v is None:
        return "nil"
    if isinstance(v, Raw):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (bytes, str)):
        s = v.decode("latin-1") if isinstance(v, bytes) else v
        if s.startswith(TMP):
            s = "TMP" + s[len(TMP):]
        if len(s) > 40:
            s = "%s...(%d)" % (s[:8], len(s))
        return '"%s"' % s.replace("\0", "\\0")
    if isinstance(v, int) and v >= 10000:
        return "PORT"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(show(x) for x in v) + "}"
    if isinstance(v, (S.socket, asyncio.trsock.TransportSocket)):
        return "socket(%d,%d)" % (v.family, v.type)
    return str(int(v)) if isinstance(v, int) else str(v)


# eddy.errors has fewer classes than Python (API.md section 9): those it
# lacks print as the class they become; TypeError is a Lua argument error.
AS_EDDY = {"BlockingIOError": "OSError", "gaierror": "DNSError", "TypeError": "ArgError",
           "InterruptedError": "OSError", "FileExistsError": "OSError",
           "IsADirectoryError": "OSError", "NotADirectoryError": "OSError",
           "OverflowError": "ValueError"}


# An errno's name, as eddy's err.code; gaierror's errno is an EAI_* value.
CODES = dict(errno.errorcode)
CODES.update({getattr(S, n): n for n in dir(S) if n.startswith("EAI_")})


def err(e):
    """An error by class and errno name; an ExceptionGroup with its members."""
    name = type(e).__name__
    name = AS_EDDY.get(name, name)
    if isinstance(e, BaseExceptionGroup):
        return Raw("%s[%s]" % (name, ", ".join(err(x) for x in e.exceptions)))
    if isinstance(e, OSError) and e.errno is not None:
        return Raw("%s %s" % (name, CODES.get(e.errno, e.errno)))
    if os.environ.get("NET_MESSAGES"):  # to read them side by side, not to diff
        return Raw("%s (%s)" % (name, e))
    return Raw(name)


class Trace:
    """The lines of one scenario.  Protocol callbacks are events of their
    endpoint ('who'); those between two lines of the scenario's own are
    printed grouped by endpoint, as the order of callbacks of different
    connections is no contract (eddy closes a stream's descriptor in
    close(), asyncio in connection_lost: its peer may hear of it first).
    Consecutive data_received of one endpoint merge."""

    def __init__(self, name):
        self.name, self.events = name, []

    def __call__(self, label, *values):
        self.flush()
        self.put(label, values)

    def put(self, label, values):
        line = "%s: %s %s" % (self.name, label, " ".join(show(v) for v in values))
        print(line.rstrip(), flush=True)

    def event(self, who, label, *values):
        last = self.events[-1] if self.events else None
        if label == "data_received" and last and last[0] == who and last[1] == label:
            last[2][0] += values[0]
        else:
            self.events.append([who, label, list(values)])

    def flush(self):
        events, self.events = self.events, []
        for who, label, values in sorted(events, key=lambda e: e[0]):  # (a stable sort)
            self.put(who + " " + label, values)

    def error(self, label, e):
        self(label, Raw("error " + err(e)))

    def call(self, label, fn, *args, **kw):
        """fn(*args, **kw): prints what it returned or raised."""
        try:
            r = fn(*args, **kw)
        except Exception as e:
            self.error(label, e)
            return None
        self(label, r)
        return r

    async def aw(self, label, coro, timeout=3):
        """Awaits coro (bounded): prints what it returned or raised."""
        try:
            r = await asyncio.wait_for(coro, timeout)
        except (Exception, asyncio.CancelledError) as e:
            self.error(label, e)
            return None
        self(label, r)
        return r


TMP = tempfile.mkdtemp(prefix="eddy-net-")


def tmp(name):
    return os.path.join(TMP, name)


def free_port(type=S.SOCK_STREAM):
    """A port nothing listens on (bound a moment, then closed)."""
    s = S.socket(S.AF_INET, type)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Rec:
    """A protocol tracing its callbacks (datagram and stream)."""

    def __init__(self, t, who):
        self.t, self.who, self.tr = t, who, None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, tr):
        self.tr = tr
        self.t.event(self.who, "connection_made")

    def datagram_received(self, data, addr):
        self.t.event(self.who, "datagram_received", data, addr)

    def error_received(self, exc):
        self.t.event(self.who, "error_received", err(exc))

    def data_received(self, data):
        self.t.event(self.who, "data_received", data)

    def eof_received(self):
        self.t.event(self.who, "eof_received")

    def connection_lost(self, exc):
        self.t.event(self.who, "connection_lost", None if exc is None else err(exc))
        if not self.lost.done():
            self.lost.set_result(None)


def rec(t, who):
    """A protocol factory; a server's ("srv") numbers its connections."""
    if who != "srv":
        return lambda: Rec(t, who)
    count = 0

    def factory():
        nonlocal count
        count += 1
        return Rec(t, "srv%d" % count)
    return factory


async def tick(n=3):
    for _ in range(n):
        await asyncio.sleep(0)


async def settle():
    await asyncio.sleep(0.05)

# {================================================= datagrams


async def endpoint(t, who, local=None, remote=None, **kw):
    loop = asyncio.get_running_loop()
    try:
        tr, p = await loop.create_datagram_endpoint(rec(t, who), local, remote, **kw)
    except Exception as e:
        t.error(who + " create", e)
        return None
    return tr


@scenario
async def dg_local(t):
    tr = await endpoint(t, "a", ("127.0.0.1", 0))
    t("sockname", tr.get_extra_info("sockname"))
    t("peername", tr.get_extra_info("peername"))
    t("socket", tr.get_extra_info("socket"))
    t("missing", tr.get_extra_info("nothing", "dflt"))
    t("buffer", tr.get_write_buffer_size())
    t("limits", tr.get_write_buffer_limits())
    t("is_reading", tr.is_reading())
    t("is_closing", tr.is_closing())
    tr.close()
    t("closed is_closing", tr.is_closing())
    t("closed is_reading", tr.is_reading())
    tr.close()
    t("after second close")
    await settle()
    t("socket after lost", tr.get_extra_info("socket") is not None)


@scenario
async def dg_exchange(t):
    a = await endpoint(t, "a", ("127.0.0.1", 0))
    b = await endpoint(t, "b", ("127.0.0.1", 0))
    baddr = b.get_extra_info("sockname")
    t.call("sendto", a.sendto, b"hello", baddr)
    t.call("sendto bytes of 3", a.sendto, b"abc", baddr)
    t.call("sendto empty", a.sendto, b"", baddr)
    await settle()
    t.call("sendto no addr", a.sendto, b"x")
    await settle()
    t("a closing", a.is_closing())
    t.call("sendto port 0", b.sendto, b"x", ("127.0.0.1", 0))
    await settle()
    t.call("sendto ipv6 to inet", b.sendto, b"x", ("::1", 9))
    await settle()
    t.call("sendto bad host", b.sendto, b"x", ("256.1.1.1", 9))
    await settle()
    t.call("sendto oversized", b.sendto, b"x" * 70000, baddr)
    await settle()
    t.call("sendto str", b.sendto, "text", baddr)
    await settle()
    t("b closing", b.is_closing())
    t("buffer", b.get_write_buffer_size())
    for tr in (a, b):
        tr.close()
    await settle()


@scenario
async def dg_connected(t):
    b = await endpoint(t, "b", ("127.0.0.1", 0))
    baddr = b.get_extra_info("sockname")
    a = await endpoint(t, "a", None, baddr)
    t("peername", a.get_extra_info("peername"))
    t("sockname host", a.get_extra_info("sockname")[0])
    t.call("sendto nil", a.sendto, b"one")
    t.call("sendto same addr", a.sendto, b"two", baddr)
    t.call("sendto other addr", a.sendto, b"three", ("127.0.0.1", 9))
    t.call("sendto other host", a.sendto, b"four", ("127.0.0.2", baddr[1]))
    await settle()
    a.close()
    t.call("sendto after close", a.sendto, b"five")
    await settle()
    t.call("sendto after lost", a.sendto, b"six")
    b.close()
    await settle()


@scenario
async def dg_icmp(t):
    port = free_port(S.SOCK_DGRAM)
    a = await endpoint(t, "a", None, ("127.0.0.1", port))
    t.call("sendto", a.sendto, b"ping")
    await settle()
    t.call("sendto again", a.sendto, b"ping")
    await settle()
    t("closing", a.is_closing())
    a.close()
    await settle()
    u = await endpoint(t, "u", ("127.0.0.1", 0))
    t.call("unconnected sendto", u.sendto, b"ping", ("127.0.0.1", port))
    await settle()
    u.close()
    await settle()


@scenario
async def dg_close_order(t):
    a = await endpoint(t, "a", ("127.0.0.1", 0))
    a.close()
    t("after close")
    await tick(1)
    t("after one tick")
    await settle()
    b = await endpoint(t, "b", ("127.0.0.1", 0))
    b.abort()
    t("after abort", b.is_closing())
    b.close()
    await settle()
    c = await endpoint(t, "c", ("127.0.0.1", 0))
    c.close()
    c.abort()
    await settle()


@scenario
async def dg_pause(t):
    a = await endpoint(t, "a", ("127.0.0.1", 0))
    b = await endpoint(t, "b", ("127.0.0.1", 0))
    t.call("pause", a.pause_reading)
    t("is_reading", a.is_reading())
    t.call("pause twice", a.pause_reading)
    b.sendto(b"while paused", a.get_extra_info("sockname"))
    await settle()
    t("still paused")
    t.call("resume", a.resume_reading)
    t("is_reading", a.is_reading())
    t.call("resume twice", a.resume_reading)
    await settle()
    a.close()
    t.call("pause after close", a.pause_reading)
    t.call("resume after close", a.resume_reading)
    t("is_reading closed", a.is_reading())
    b.close()
    await settle()


@scenario
async def dg_options(t):
    # no addresses: the family is needed
    tr = await endpoint(t, "nofamily")
    tr = await endpoint(t, "inet", family=S.AF_INET)
    if tr:
        t("inet sockname", tr.get_extra_info("sockname"))
        tr.close()
    tr = await endpoint(t, "inet6", ("::1", 0), family=S.AF_INET6)
    if tr:
        t("inet6 sockname", tr.get_extra_info("sockname"))
        tr.close()
    await endpoint(t, "family mismatch", ("::1", 0), family=S.AF_INET)
    await endpoint(t, "local remote mismatch", ("127.0.0.1", 0), ("::1", 9))
    tr = await endpoint(t, "proto", ("127.0.0.1", 0), proto=S.IPPROTO_UDP)
    if tr:
        t("proto", tr.get_extra_info("socket").proto)
        tr.close()
    tr = await endpoint(t, "tcp proto", ("127.0.0.1", 0), proto=S.IPPROTO_TCP)
    if tr:
        t("tcp proto", tr.get_extra_info("socket").proto)
        tr.close()
    tr = await endpoint(t, "flags", ("127.0.0.1", 0), flags=S.AI_NUMERICHOST)
    if tr:
        tr.close()
    tr = await endpoint(t, "localhost", ("localhost", 0))
    if tr:
        t("localhost sockname", tr.get_extra_info("sockname"))
        tr.close()
    await endpoint(t, "reuse_address", ("127.0.0.1", 0), reuse_address=True)
    await endpoint(t, "reuse_address false", ("127.0.0.1", 0), reuse_address=False)
    a = await endpoint(t, "reuse a", ("127.0.0.1", 0), reuse_port=True)
    port = a.get_extra_info("sockname")[1]
    b = await endpoint(t, "reuse b", ("127.0.0.1", port), reuse_port=True)
    t("reuse b", b is not None)
    c = await endpoint(t, "no reuse", ("127.0.0.1", port))
    e = await endpoint(t, "bcast target", ("127.0.0.1", 0))
    d = await endpoint(t, "bcast", ("127.0.0.1", 0), e.get_extra_info("sockname"),
                       allow_broadcast=True)
    if d:
        t("bcast peername", d.get_extra_info("peername"))
        t("bcast SO_BROADCAST", d.get_extra_info("socket").getsockopt(S.SOL_SOCKET, S.SO_BROADCAST) != 0)
        t.call("bcast sendto nil", d.sendto, b"to remote")
        await settle()
        d.close()
    for tr in (a, b, c, e):
        if tr:
            tr.close()
    await settle()


@scenario
async def dg_sock(t):
    s = S.socket(S.AF_INET, S.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    tr = await endpoint(t, "sock", sock=s)
    t("sockname", tr.get_extra_info("sockname"))
    t("blocking", s.getblocking())
    loop = asyncio.get_running_loop()
    t.call("add_reader on it", loop.add_reader, s.fileno(), lambda: None)
    tr.close()
    await settle()
    t("sock closed", s.fileno() == -1)
    s = S.socket(S.AF_INET, S.SOCK_DGRAM)
    await endpoint(t, "sock and local", ("127.0.0.1", 0), sock=s)
    await endpoint(t, "sock and family", sock=s, family=S.AF_INET)
    await endpoint(t, "sock and reuse_port", sock=s, reuse_port=True)
    s.close()
    s = S.socket()
    await endpoint(t, "stream sock", sock=s)
    s.close()


@scenario
async def dg_unix(t):
    path_a, path_b = tmp("dga"), tmp("dgb")
    a = await endpoint(t, "a", path_a, family=S.AF_UNIX)
    t("a sockname", a.get_extra_info("sockname"))
    b = await endpoint(t, "b", path_b, path_a, family=S.AF_UNIX)
    t("b peername", b.get_extra_info("peername"))
    b.sendto(b"from b")
    a.sendto(b"from a", path_b)
    await settle()
    c = await endpoint(t, "c", None, path_a, family=S.AF_UNIX)
    c.sendto(b"from unbound c")
    await settle()
    t.call("a sendto missing", a.sendto, b"x", tmp("nothing"))
    await settle()
    for tr in (a, b, c):
        tr.close()
    await settle()
    t("file a stays", os.path.exists(path_a))
    # a stale socket file at local_addr is removed; a regular file is not
    d = await endpoint(t, "d stale", path_a, family=S.AF_UNIX)
    if d:
        d.close()
    with open(tmp("regular"), "w"):
        pass
    await endpoint(t, "e regular", tmp("regular"), family=S.AF_UNIX)
    t("regular stays", os.path.exists(tmp("regular")))
    await endpoint(t, "missing family", path_b)
    await settle()


@scenario
async def dg_more(t):
    loop = asyncio.get_running_loop()
    # a connected sock= socket: the transport sends with send(), whatever the address
    b = await endpoint(t, "b", ("127.0.0.1", 0))
    s = S.socket(S.AF_INET, S.SOCK_DGRAM)
    s.connect(b.get_extra_info("sockname"))
    a = await endpoint(t, "a", sock=s)
    t("sock peername", a.get_extra_info("peername") == b.get_extra_info("sockname"))
    t.call("sendto nil", a.sendto, b"to peer")
    t.call("sendto other", a.sendto, b"other", ("127.0.0.1", 9))
    await settle()
    t.call("sendto oversized connected", a.sendto, b"x" * 70000)
    await settle()
    a.abort()
    t.call("sendto after abort", a.sendto, b"x")
    await settle()
    # errors of the protocol's callbacks go to the exception handler
    class Bad(Rec):
        def datagram_received(self, data, addr):
            self.t.event(self.who, "datagram_received", data)
            raise RuntimeError("boom")
    c, _ = await loop.create_datagram_endpoint(lambda: Bad(t, "c"), ("127.0.0.1", 0))
    b.sendto(b"one", c.get_extra_info("sockname"))
    await settle()
    b.sendto(b"two", c.get_extra_info("sockname"))
    await settle()
    t("c closing", c.is_closing())
    c.close()
    # pausing in connection_made holds back the first read
    class Paused(Rec):
        def connection_made(self, tr):
            super().connection_made(tr)
            tr.pause_reading()
    d, _ = await loop.create_datagram_endpoint(lambda: Paused(t, "d"), ("127.0.0.1", 0))
    b.sendto(b"held", d.get_extra_info("sockname"))
    await settle()
    t("d is_reading", d.is_reading())
    d.resume_reading()
    await settle()
    d.close()
    t.call("set limits bad", b.set_write_buffer_limits, 1, 2)
    t.call("set limits", b.set_write_buffer_limits, 100)
    t("limits", b.get_write_buffer_limits())
    t.call("set limits negative", b.set_write_buffer_limits, -1)
    b.close()
    await settle()
    # a factory that fails
    def failing():
        raise ValueError("no protocol")
    try:
        await loop.create_datagram_endpoint(failing, ("127.0.0.1", 0))
    except Exception as e:
        t.error("failing factory", e)
    # a host name for local_addr and remote_addr
    e = await endpoint(t, "e", ("localhost", 0), family=S.AF_INET)
    f = await endpoint(t, "f", None, ("localhost", e.get_extra_info("sockname")[1]), family=S.AF_INET)
    t.call("f sendto", f.sendto, b"by name")
    await settle()
    made = [await endpoint(t, "unresolvable", ("no-such-host.invalid", 0)),
            await endpoint(t, "string port", ("127.0.0.1", "0")),
            await endpoint(t, "service port", None, ("127.0.0.1", "domain")),
            await endpoint(t, "bad port", ("127.0.0.1", 70000)),
            await endpoint(t, "unix family with tuple", ("127.0.0.1", 0), family=S.AF_UNIX), e, f]
    for tr in made:
        if tr:
            tr.close()
    await settle()


@scenario
async def dg_queue(t):
    loop = asyncio.get_running_loop()
    # an unconnected AF_UNIX sender whose peer does not read: datagrams queue

    class Flow(Rec):
        def pause_writing(self):
            self.t.event(self.who, "pause_writing")

        def resume_writing(self):
            self.t.event(self.who, "resume_writing")
    for how in ("close", "abort", "drain"):
        path = tmp("q-" + how)
        peer = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
        peer.bind(path)
        peer.setblocking(False)
        a, p = await loop.create_datagram_endpoint(lambda: Flow(t, how), family=S.AF_UNIX)
        a.set_write_buffer_limits(20000)
        n = 0
        while a.get_write_buffer_size() == 0 and n < 10000:
            a.sendto(b"q" * 1000, path)
            n += 1
        for _ in range(30):
            a.sendto(b"q" * 1000, path)
        t(how + " queued", a.get_write_buffer_size())
        t.call(how + " other address queued", a.sendto, b"z", tmp("nothing"))
        if how != "drain":
            getattr(a, how)()
            t(how + " buffer", a.get_write_buffer_size())
        got = 0
        for _ in range(300):
            try:
                while True:
                    peer.recv(2000)
                    got += 1
            except BlockingIOError:
                pass
            if p.lost.done() or how == "drain" and a.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.002)
        t(how + " received all", got == n + 30, "lost", p.lost.done())
        t(how + " buffer after", a.get_write_buffer_size())
        a.close()
        await settle()
        peer.close()


DATAGRAM_OPS = ["send", "send", "send", "send", "send_other", "send_badhost", "send_big",
                "send_empty", "pause", "resume", "close_a", "abort_a", "close_b", "limits"]


@scenario
async def dg_random(t):
    """Random sequences of DatagramTransport calls between a sender a
    (connected or not) and a receiver b (seeds 1 to $NET_SEEDS, default 30)."""
    loop = asyncio.get_running_loop()
    for seed in range(1, int(os.environ.get("NET_SEEDS", 30)) + 1):
        rng = Rng(seed)
        b, _ = await loop.create_datagram_endpoint(rec(t, "b%d" % seed), ("127.0.0.1", 0))
        baddr = b.get_extra_info("sockname")
        connected = rng.pick([True, False])
        a, _ = await loop.create_datagram_endpoint(rec(t, "a%d" % seed), ("127.0.0.1", 0),
                                                   baddr if connected else None)
        ops = ["connected" if connected else "unconnected"]
        for _ in range(rng.pick([4, 6, 8, 10])):
            op = rng.pick(DATAGRAM_OPS)
            ops.append(op)
            try:
                if op.startswith("send") and not a.is_closing():
                    data = {"send_big": b"x" * 70000, "send_empty": b""}.get(op, b"d%d" % len(ops))
                    addr = {"send_other": ("127.0.0.1", 9), "send_badhost": ("no-such-host.invalid", 9)
                            }.get(op, None if connected and rng.pick([True, False]) else baddr)
                    a.sendto(data, addr)
                elif op == "pause":
                    b.pause_reading()
                elif op == "resume":
                    b.resume_reading()
                elif op in ("close_a", "abort_a"):
                    getattr(a, op[:-2])()
                elif op == "close_b":
                    b.close()
                elif op == "limits":
                    a.set_write_buffer_limits(rng.pick([0, 10, 100000]))
            except Exception as e:
                ops.append(err(e))
            await settle()
            ops.append("%d%d%d/%d" % (a.is_closing(), b.is_closing(), b.is_reading(),
                                      a.get_write_buffer_size()))
        t(str(seed), Raw(" ".join(ops)))
        a.close()
        b.close()
        await settle()


# }=================================================
# {================================================= servers


async def server(t, label, *args, **kw):
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(rec(t, "srv"), *args, **kw)
    except Exception as e:
        t.error(label, e)
        return None


async def connect(t, who, host, port, **kw):
    loop = asyncio.get_running_loop()
    try:
        tr, p = await asyncio.wait_for(loop.create_connection(rec(t, who), host, port, **kw), 3)
    except Exception as e:
        t.error(who + " connect", e)
        return None, None
    return tr, p


def families(srv):
    return sorted((s.family, s.getsockname()[0]) for s in srv.sockets)


@scenario
async def srv_basic(t):
    loop = asyncio.get_running_loop()
    srv = await server(t, "create", "127.0.0.1", 0)
    t("is_serving", srv.is_serving())
    t("sockets", len(srv.sockets), srv.sockets[0])
    t("get_loop", srv.get_loop() is loop)
    port = srv.sockets[0].getsockname()[1]
    c, _ = await connect(t, "cli", "127.0.0.1", port)
    await settle()
    srv.close()
    t("closed is_serving", srv.is_serving())
    t("closed sockets", len(srv.sockets))
    await connect(t, "late", "127.0.0.1", port)
    t.call("close again", srv.close)
    await t.aw("wait_closed with client", srv.wait_closed(), 0.2)
    c.close()
    await t.aw("wait_closed", srv.wait_closed())
    await t.aw("wait_closed again", srv.wait_closed())
    await t.aw("start_serving closed", srv.start_serving())
    t("is_serving", srv.is_serving())
    await t.aw("serve_forever closed", srv.serve_forever())


@scenario
async def srv_wait_before_close(t):
    srv = await server(t, "create", "127.0.0.1", 0)
    w = asyncio.ensure_future(srv.wait_closed())
    await settle()
    t("waiting before close", w.done())
    srv.close()
    await t.aw("after close", w)


@scenario
async def srv_clients(t):
    srv = await server(t, "create", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c1, p1 = await connect(t, "c1", "127.0.0.1", port)
    await settle()
    if hasattr(srv, "close_clients"):
        srv.close_clients()
    else:
        t("no close_clients")
    await settle()
    t("still serving", srv.is_serving())
    c2, p2 = await connect(t, "c2", "127.0.0.1", port)
    await settle()
    if hasattr(srv, "abort_clients"):
        srv.abort_clients()
    else:
        t("no abort_clients")
    await settle()
    srv.close()
    for c in (c1, c2):
        c.close()
    await t.aw("wait_closed", srv.wait_closed())


@scenario
async def srv_serve_forever(t):
    loop = asyncio.get_running_loop()
    srv = await server(t, "create", "127.0.0.1", 0, start_serving=False)
    t("is_serving", srv.is_serving())
    port = srv.sockets[0].getsockname()[1]
    await connect(t, "not listening", "127.0.0.1", port)
    task = asyncio.ensure_future(srv.serve_forever())
    await tick()
    t("is_serving", srv.is_serving())
    await t.aw("second serve_forever", srv.serve_forever())
    await t.aw("start_serving while", srv.start_serving())
    c, _ = await connect(t, "cli", "127.0.0.1", port)
    await settle()
    task.cancel()
    await tick()
    t("after cancel is_serving", srv.is_serving(), "sockets", len(srv.sockets))
    t("task done", task.done())
    c.close()
    await settle()
    t("task done after client", task.done())
    await t.aw("task", task)
    # serve_forever ended by close()
    srv = await server(t, "create", "127.0.0.1", 0)
    task = asyncio.ensure_future(srv.serve_forever())
    await tick()
    srv.close()
    await t.aw("closed task", task)
    await t.aw("serve_forever after", srv.serve_forever())


@scenario
async def srv_start_serving(t):
    srv = await server(t, "create", "127.0.0.1", 0, start_serving=False)
    t("is_serving", srv.is_serving())
    await t.aw("start_serving", srv.start_serving())
    t("is_serving", srv.is_serving())
    await t.aw("start_serving again", srv.start_serving())
    port = srv.sockets[0].getsockname()[1]
    c, _ = await connect(t, "cli", "127.0.0.1", port)
    await settle()
    c.close()
    srv.close()
    await t.aw("wait_closed", srv.wait_closed())


@scenario
async def srv_context(t):
    srv = await server(t, "create", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c, _ = await connect(t, "cli", "127.0.0.1", port)
    await settle()
    asyncio.get_running_loop().call_later(0.1, c.close)
    async with srv:
        t("inside")
    t("after", srv.is_serving(), c.is_closing())


@scenario
async def srv_hosts(t):
    srv = await server(t, "two", ["127.0.0.1", "::1"], 0)
    if srv:
        t("two", families(srv))
        ports = {s.getsockname()[1] for s in srv.sockets}
        t("two ports", len(ports))
        srv.close()
    for host in (None, ""):
        srv = await server(t, "all", host, 0)
        if srv:
            t("all %r" % host, [f for f, _ in families(srv)])
            t("v6only", [s.getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY) for s in srv.sockets
                         if s.family == S.AF_INET6])
            srv.close()
    srv = await server(t, "inet only", None, 0, family=S.AF_INET)
    if srv:
        t("inet only", families(srv))
        srv.close()
    srv = await server(t, "dual.test", "dual.test", 0)
    if srv:
        t("dual.test", families(srv))
        srv.close()
    await server(t, "not mine", "192.0.2.1", 0)
    srv = await server(t, "not mine and mine", ["192.0.2.1", "127.0.0.1"], 0)
    if srv:
        t("not mine and mine", families(srv))
        srv.close()
    await server(t, "bad port", "127.0.0.1", -1)
    await server(t, "host and sock", "127.0.0.1", 0, sock=S.socket())
    await server(t, "neither", port=None)


@scenario
async def srv_reuse(t):
    a = await server(t, "a", "127.0.0.1", 0)
    port = a.sockets[0].getsockname()[1]
    t("reuseaddr", a.sockets[0].getsockopt(S.SOL_SOCKET, S.SO_REUSEADDR) != 0)
    await server(t, "same port", "127.0.0.1", port)
    a.close()
    b = await server(t, "b", "127.0.0.1", 0, reuse_port=True, reuse_address=False)
    port = b.sockets[0].getsockname()[1]
    t("b reuseaddr", b.sockets[0].getsockopt(S.SOL_SOCKET, S.SO_REUSEADDR) != 0)
    c = await server(t, "c", "127.0.0.1", port, reuse_port=True)
    t("c", c is not None)
    for s in (b, c):
        if s:
            s.close()
    srv = await server(t, "backlog", "127.0.0.1", 0, backlog=1)
    t("backlog", srv is not None)
    srv.close()
    await server(t, "backlog bad", "127.0.0.1", 0, backlog="x")
    await settle()


@scenario
async def srv_sock(t):
    s = S.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    srv = await server(t, "sock", sock=s)
    t("sockets", len(srv.sockets), srv.sockets[0].getsockname()[1] == port)
    c, _ = await connect(t, "cli", "127.0.0.1", port)
    await settle()
    c.close()
    srv.close()
    await t.aw("wait_closed", srv.wait_closed())
    t("sock closed", s.fileno() == -1)
    s = S.socket(S.AF_INET, S.SOCK_DGRAM)
    await server(t, "dgram sock", sock=s)
    s.close()


@scenario
async def srv_more(t):
    loop = asyncio.get_running_loop()
    srv = await server(t, "dup hosts", ["127.0.0.1", "127.0.0.1"], 0)
    if srv:
        t("dup hosts", len(srv.sockets))
        srv.close()
    srv = await server(t, "string port", "127.0.0.1", "0")
    if srv:
        srv.close()
    srv = await server(t, "keep_alive", "127.0.0.1", 0, keep_alive=True)
    c, _ = await connect(t, "ka", "127.0.0.1", srv.sockets[0].getsockname()[1])
    await settle()
    srv.close()
    c.close()
    await t.aw("ka wait_closed", srv.wait_closed())
    srv = await server(t, "unbound", "127.0.0.1", 0, start_serving=False)
    t("unbound sockets", len(srv.sockets))
    srv.close()
    await t.aw("unbound wait_closed", srv.wait_closed())
    # two waiters, close_clients after close, a client after close_clients
    srv = await server(t, "srv", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c1, _ = await connect(t, "c1", "127.0.0.1", port)
    await settle()
    w1 = asyncio.ensure_future(srv.wait_closed())
    w2 = asyncio.ensure_future(srv.wait_closed())
    srv.close()
    await settle()
    t("waiters", w1.done(), w2.done())
    if hasattr(srv, "close_clients"):
        srv.close_clients()
    else:
        c1.close()
    await settle()
    t("waiters after close_clients", w1.done(), w2.done())
    # serve_forever cancelled while a client is connected: it waits for it
    srv = await server(t, "sf", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c2, _ = await connect(t, "c2", "127.0.0.1", port)
    task = asyncio.ensure_future(srv.serve_forever())
    await settle()
    if hasattr(srv, "abort_clients"):
        srv.abort_clients()
    else:
        c2.abort()
    task.cancel()
    await t.aw("serve_forever after abort_clients", task)
    # the protocol factory fails: the connection is closed, the server goes on
    calls = 0

    def factory():
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("factory")
        return Rec(t, "srv ok")
    srv = await loop.create_server(factory, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c3, _ = await connect(t, "c3", "127.0.0.1", port)
    await settle()
    c4, _ = await connect(t, "c4", "127.0.0.1", port)
    await settle()
    for c in (c3, c4):
        c.close()
    srv.close()
    await t.aw("factory wait_closed", srv.wait_closed())


SERVER_OPS = ["connect", "connect", "connect", "client_close", "client_close", "client_abort",
              "close", "close_clients", "abort_clients", "start_serving", "serve_forever",
              "cancel_serve_forever", "wait_closed", "wait_closed"]


@scenario
async def srv_random(t):
    """Random sequences of Server calls and client connections, with the
    server's state after each (seeds 1 to $NET_SEEDS, default 30)."""
    loop = asyncio.get_running_loop()
    for seed in range(1, int(os.environ.get("NET_SEEDS", 30)) + 1):
        rng = Rng(seed)
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                       start_serving=rng.pick([True, False]))
        port = srv.sockets[0].getsockname()[1]
        clients, waiters, sf = [], [], None
        ops = []
        for _ in range(rng.pick([4, 6, 8, 10])):
            op = rng.pick(SERVER_OPS)
            ops.append(op)
            closed = not srv.sockets
            if op == "connect":
                try:
                    c, _ = await asyncio.wait_for(loop.create_connection(asyncio.Protocol, "127.0.0.1", port), 1)
                    clients.append(c)
                    ops.append("ok")
                except Exception as e:
                    ops.append(err(e))
            elif op in ("client_close", "client_abort") and clients:
                getattr(clients.pop(rng.pick(list(range(len(clients))))), op[7:])()
            elif op in ("close", "close_clients", "abort_clients"):
                getattr(srv, op)()
            elif op == "start_serving" and not closed:  # (asyncio 3.13 fails on a closed one)
                await srv.start_serving()
            elif op == "serve_forever":
                if sf is None or sf.done():
                    sf = asyncio.ensure_future(srv.serve_forever())
            elif op == "cancel_serve_forever" and sf is not None:
                sf.cancel()
            elif op == "wait_closed":
                waiters.append(asyncio.ensure_future(srv.wait_closed()))
            await settle()
            ops.append("%s/%d/%s" % (str(srv.is_serving()).lower(), len(srv.sockets),
                                     "".join("1" if w.done() else "0" for w in waiters)))
            if sf is not None and sf.done():
                ops.append("sf:" + ("cancelled" if sf.cancelled() else err(sf.exception())
                                    if sf.exception() else "done"))
                sf = None
        t(str(seed), Raw(" ".join(ops)))
        srv.close()
        for c in clients:
            c.close()
        await settle()
        t(str(seed) + " end", Raw("".join("1" if w.done() else "0" for w in waiters)))
        if sf is not None:
            sf.cancel()
        for w in waiters:
            w.cancel()
        await settle()


@scenario
async def srv_backlog(t):
    # connections the kernel completed but the server never accepted
    srv = await server(t, "srv", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    raws = []
    for _ in range(3):
        s = S.socket()
        s.connect(("127.0.0.1", port))
        raws.append(s)
    srv.close()
    await t.aw("wait_closed", srv.wait_closed(), 1)
    for i, s in enumerate(raws):
        s.settimeout(1)
        try:
            t("client %d recv" % i, s.recv(10))
        except Exception as e:
            t.error("client %d recv" % i, e)
        s.close()


# }=================================================
# {================================================= UNIX sockets


async def userver(t, label, path, **kw):
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_unix_server(rec(t, "srv"), path, **kw)
    except Exception as e:
        t.error(label, e)
        return None


async def uconnect(t, who, path, **kw):
    loop = asyncio.get_running_loop()
    try:
        tr, p = await asyncio.wait_for(loop.create_unix_connection(rec(t, who), path, **kw), 3)
    except Exception as e:
        t.error(who + " connect", e)
        return None
    return tr


@scenario
async def ux_server(t):
    path = tmp("us")
    srv = await userver(t, "create", path)
    t("sockets", srv.sockets[0], srv.sockets[0].getsockname())
    c = await uconnect(t, "cli", path)
    t("peername", c.get_extra_info("peername"), "sockname", c.get_extra_info("sockname"))
    await settle()
    c.close()
    srv.close()
    t("file after close", os.path.exists(path))
    await t.aw("wait_closed", srv.wait_closed())
    await uconnect(t, "after close", path)


@scenario
async def ux_stale(t):
    path = tmp("stale")
    s = S.socket(S.AF_UNIX)
    s.bind(path)
    s.close()
    srv = await userver(t, "stale", path)
    t("stale", srv is not None)
    srv.close()
    srv = await userver(t, "keep", path, cleanup_socket=False)
    if srv:
        srv.close()
    t("file kept", os.path.exists(path))
    with open(tmp("regular"), "w"):
        pass
    await userver(t, "regular", tmp("regular"))
    t("regular stays", os.path.exists(tmp("regular")))
    live = await userver(t, "live", tmp("live"))
    srv = await userver(t, "over live", tmp("live"))
    t("over live", srv is not None)
    if srv:
        srv.close()
    live.close()
    os.mkdir(tmp("dir"))
    await userver(t, "directory", tmp("dir"))
    await userver(t, "missing dir", tmp("nodir/x"))


@scenario
async def ux_paths(t):
    name = "\0" + TMP
    srv = await userver(t, "abstract", name)
    if srv:
        t("abstract name", srv.sockets[0].getsockname() == name.encode())
        c = await uconnect(t, "abstract cli", name)
        await settle()
        c.close()
        srv.close()
        await srv.wait_closed()
    long = TMP + "/" + "x" * 120
    await userver(t, "too long", long)
    await uconnect(t, "too long", long)
    await userver(t, "empty", "")
    await uconnect(t, "missing", tmp("missing"))
    with open(tmp("plain"), "w"):
        pass
    await uconnect(t, "plain file", tmp("plain"))
    s = S.socket(S.AF_UNIX)
    s.bind(tmp("unlistened"))
    await uconnect(t, "not listening", tmp("unlistened"))
    s.close()


@scenario
async def ux_sock(t):
    s = S.socket(S.AF_UNIX)
    s.bind(tmp("sock"))
    srv = await userver(t, "sock", None, sock=s)
    c = await uconnect(t, "cli", tmp("sock"))
    await settle()
    c.close()
    srv.close()
    t("file after close", os.path.exists(tmp("sock")))
    await userver(t, "sock and path", tmp("sock2"), sock=S.socket(S.AF_UNIX))
    await userver(t, "inet sock", None, sock=S.socket())
    await userver(t, "neither", None)
    srv = await userver(t, "again", tmp("sock3"))
    a = S.socket(S.AF_UNIX)
    a.connect(tmp("sock3"))
    c = await uconnect(t, "cli sock", None, sock=a)
    await settle()
    c.close()
    await settle()
    await uconnect(t, "cli sock and path", tmp("sock3"), sock=S.socket(S.AF_UNIX))
    await uconnect(t, "cli neither", None)
    await uconnect(t, "cli inet sock", None, sock=S.socket())
    await settle()
    srv.close()


@scenario
async def ux_more(t):
    loop = asyncio.get_running_loop()
    # the socket file replaced meanwhile stays (3.13 compares the inode)
    path = tmp("replaced")
    srv = await userver(t, "replaced", path)
    os.unlink(path)
    s = S.socket(S.AF_UNIX)
    s.bind(path)
    srv.close()
    t("replacement stays", os.path.exists(path))
    s.close()
    # removed meanwhile: close does not fail
    srv = await userver(t, "removed", path)
    os.unlink(path)
    t.call("close removed", srv.close)
    # a datagram socket's path
    d = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    d.bind(tmp("dgram"))
    await uconnect(t, "to dgram", tmp("dgram"))
    d.close()
    # create_unix_server with a datagram sock
    d = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    await userver(t, "dgram sock", None, sock=d)
    d.close()
    # start_serving=False, then a client, then start_serving
    srv = await userver(t, "later", tmp("later"), start_serving=False)
    t("later is_serving", srv.is_serving(), os.path.exists(tmp("later")))
    await uconnect(t, "before", tmp("later"))
    await srv.start_serving()
    c = await uconnect(t, "after", tmp("later"))
    await settle()
    c.close()
    await settle()
    srv.close()
    await t.aw("later wait_closed", srv.wait_closed())


# }=================================================
# {================================================= connections


@scenario
async def cn_refused(t):
    port = free_port()
    await connect(t, "refused", "127.0.0.1", port)
    await connect(t, "refused all_errors", "127.0.0.1", port, all_errors=True)
    await connect(t, "dual refused", "dual.test", port)
    await connect(t, "dual refused all_errors", "dual.test", port, all_errors=True)
    await connect(t, "dual refused eyeballs", "dual.test", port, happy_eyeballs_delay=0.05)
    await connect(t, "dual refused eyeballs all_errors", "dual.test", port,
                  happy_eyeballs_delay=0.05, all_errors=True)
    await connect(t, "unresolvable", "no-such-host.invalid", port)
    await connect(t, "unresolvable all_errors", "no-such-host.invalid", port, all_errors=True)


@scenario
async def cn_dual(t):
    srv = await server(t, "v4", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    for label, kw in (("plain", {}), ("eyeballs", {"happy_eyeballs_delay": 0.05}),
                      ("eyeballs interleave 2", {"happy_eyeballs_delay": 0.05, "interleave": 2}),
                      ("interleave 1", {"interleave": 1}), ("inet6", {"family": S.AF_INET6})):
        c, _ = await connect(t, label, "dual.test", port, **kw)
        if c:
            t("peername", c.get_extra_info("peername"))
            c.close()
    await settle()
    srv.close()
    srv = await server(t, "v6", "::1", 0)
    port = srv.sockets[0].getsockname()[1]
    c, _ = await connect(t, "cli v6", "dual.test", port, happy_eyeballs_delay=0.05)
    if c:
        t("peername", c.get_extra_info("peername")[:2])
        c.close()
    await settle()
    srv.close()


@scenario
async def cn_local_addr(t):
    srv = await server(t, "srv", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    lport = free_port()
    c, _ = await connect(t, "cli", "127.0.0.1", port, local_addr=("127.0.0.1", lport))
    t("sockname", c.get_extra_info("sockname") == ("127.0.0.1", lport))
    await connect(t, "in use", "127.0.0.1", port, local_addr=("127.0.0.1", lport))
    await connect(t, "in use all_errors", "127.0.0.1", port, local_addr=("127.0.0.1", lport),
                  all_errors=True)
    await connect(t, "v6 local", "127.0.0.1", port, local_addr=("::1", 0))
    await connect(t, "unresolvable local", "127.0.0.1", port, local_addr=("no-such-host.invalid", 0))
    c2, _ = await connect(t, "dual local v4", "dual.test", port, local_addr=("127.0.0.1", 0))
    if c2:
        t("dual local v4 peername", c2.get_extra_info("peername"))
        c2.close()
    c.close()
    await settle()
    srv.close()


@scenario
async def cn_sock(t):
    srv = await server(t, "srv", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    s = S.socket()
    s.connect(("127.0.0.1", port))
    c, _ = await connect(t, "sock", None, None, sock=s)
    t("blocking", s.getblocking(), "peername", c.get_extra_info("peername"))
    c.close()
    await settle()
    s = S.socket()
    await connect(t, "sock and host", "127.0.0.1", port, sock=s)
    s.close()
    s = S.socket()
    s.connect(("127.0.0.1", port))
    c, _ = await connect(t, "sock and local_addr", None, None, sock=s, local_addr=("127.0.0.1", 0))
    if c:
        c.close()
    await settle()
    s = S.socket(S.AF_INET, S.SOCK_DGRAM)
    await connect(t, "dgram sock", None, None, sock=s)
    s.close()
    await connect(t, "neither", None, None)
    s = S.socket()
    c, _ = await connect(t, "unconnected sock", None, None, sock=s)
    t("unconnected", c is not None and c.get_extra_info("peername"))
    await settle()
    await settle()
    srv.close()


@scenario
async def cn_accepted(t):
    loop = asyncio.get_running_loop()
    lst = S.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c, _ = await connect(t, "cli", "127.0.0.1", lst.getsockname()[1])
    a, _ = lst.accept()
    try:
        tr, _ = await loop.connect_accepted_socket(rec(t, "acc"), a)
        t("accepted peername", tr.get_extra_info("peername") == c.get_extra_info("sockname"))
        c.write(b"hi")
        await settle()
        tr.close()
    except Exception as e:
        t.error("accepted", e)
    await settle()
    try:
        await loop.connect_accepted_socket(rec(t, "dg"), S.socket(S.AF_INET, S.SOCK_DGRAM))
    except Exception as e:
        t.error("dgram", e)
    lst.close()
    await settle()


@scenario
async def cn_more(t):
    loop = asyncio.get_running_loop()
    srv = await server(t, "srv", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    for c in (await connect(t, "host only", "127.0.0.1", None))[0], \
            (await connect(t, "port only", None, port))[0]:
        if c:
            c.close()
    c, _ = await connect(t, "string port", "127.0.0.1", str(port))
    if c:
        c.close()
    await settle()
    await connect(t, "server_hostname without ssl", "127.0.0.1", port, server_hostname="x")
    await connect(t, "handshake timeout without ssl", "127.0.0.1", port, ssl_handshake_timeout=1)
    await connect(t, "family mismatch", "127.0.0.1", port, family=S.AF_INET6)
    c, _ = await connect(t, "interleave 0", "dual.test", port, interleave=0)
    if c:
        c.close()
    c, _ = await connect(t, "eyeballs 0", "dual.test", port, happy_eyeballs_delay=0)
    if c:
        t("eyeballs 0 peername", c.get_extra_info("peername"))
        c.close()
    await settle()
    await connect(t, "local_addr other family", "127.0.0.1", port, local_addr=("::1", 0), all_errors=True)
    c, _ = await connect(t, "local_addr port only", "127.0.0.1", port, local_addr=(None, 0))
    if c:
        c.close()
    # cancelling create_connection while happy eyeballs run
    full = S.socket()  # a listener with a full backlog: connects to it hang
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fill = [S.socket() for _ in range(3)]
    for s in fill:
        s.setblocking(False)
        s.connect_ex(full.getsockname())
    task = asyncio.ensure_future(loop.create_connection(asyncio.Protocol, "127.0.0.1",
                                                        full.getsockname()[1],
                                                        happy_eyeballs_delay=0.01))
    await settle()
    task.cancel()
    await t.aw("cancelled", task)
    for s in fill + [full]:
        s.close()
    await settle()
    srv.close()
    await settle()


# }=================================================
# {================================================= fd watchers


@scenario
async def fd_watch(t):
    loop = asyncio.get_running_loop()
    a, b = S.socketpair()
    a.setblocking(False)
    t.call("remove_reader none", loop.remove_reader, a.fileno())
    t.call("remove_writer none", loop.remove_writer, a.fileno())
    t("add_reader", loop.add_reader(a.fileno(), lambda: t("first reader")) is None)
    t.call("add_reader again", lambda: loop.add_reader(a.fileno(), lambda: (t("second reader"), loop.remove_reader(a.fileno()))) is None)
    b.send(b"x")
    await settle()
    t.call("remove_reader done", loop.remove_reader, a.fileno())
    t.call("add_writer", lambda: loop.add_writer(a, lambda: (t("writer"), loop.remove_writer(a))) is None)
    await settle()
    t.call("remove_writer", loop.remove_writer, a)
    t.call("add_reader object", lambda: loop.add_reader(a, lambda: None) is None)
    t.call("remove_reader object", loop.remove_reader, a)
    t.call("add_reader -1", loop.add_reader, -1, lambda: None)
    t.call("remove_reader -1", loop.remove_reader, -1)
    t.call("add_reader str", loop.add_reader, "x", lambda: None)
    fd = a.fileno()
    a.close()
    t.call("add_reader closed", loop.add_reader, fd, lambda: None)
    t.call("remove_reader closed", loop.remove_reader, fd)
    t.call("add_reader closed sock", loop.add_reader, a, lambda: None)
    b.close()
    # a regular file: epoll refuses it
    with open(__file__) as f:
        t.call("add_reader file", loop.add_reader, f.fileno(), lambda: None)
        t.call("remove_reader file", loop.remove_reader, f.fileno())


@scenario
async def fd_transport(t):
    loop = asyncio.get_running_loop()
    srv = await server(t, "srv", "127.0.0.1", 0)
    c, _ = await connect(t, "cli", "127.0.0.1", srv.sockets[0].getsockname()[1])
    fd = c.get_extra_info("socket").fileno()
    t.call("add_reader", loop.add_reader, fd, lambda: None)
    t.call("add_writer", loop.add_writer, fd, lambda: None)
    t.call("remove_reader", loop.remove_reader, fd)
    t.call("remove_writer", loop.remove_writer, fd)
    same = S.socket(fileno=fd)  # (a TransportSocket has no recv or send since 3.13)
    same.setblocking(False)
    await t.aw("sock_recv", loop.sock_recv(same, 10))  # it must wait: refused
    await t.aw("sock_sendall", loop.sock_sendall(same, b"x"))  # sent at once: allowed
    same.detach()
    s = S.socket(fileno=os.dup(fd))
    s.setblocking(False)
    t.call("dup add_reader", loop.add_reader, s.fileno(), lambda: None)
    t.call("dup remove_reader", loop.remove_reader, s.fileno())
    s.close()
    c.close()
    t.call("closing add_reader", loop.add_reader, fd, lambda: None)
    t.call("closing remove_reader", loop.remove_reader, fd)
    await settle()
    srv.close()
    await settle()


@scenario
async def misc_more(t):
    loop = asyncio.get_running_loop()
    # create_connection and connect_accepted_socket take any stream socket
    a, b = S.socketpair()
    try:
        c, _ = await loop.create_connection(rec(t, "pair"), sock=a)
        t("unix sock peername", c.get_extra_info("peername"))
        b.send(b"over the pair")
        await settle()
        c.close()
    except Exception as e:
        t.error("unix sock", e)
    b.close()
    await settle()
    a, b = S.socketpair()
    try:
        await loop.connect_accepted_socket(rec(t, "acc"), a, ssl_handshake_timeout=1)
    except Exception as e:
        t.error("accepted handshake timeout without ssl", e)
    c, _ = await loop.connect_accepted_socket(rec(t, "acc"), a)
    c.close()
    b.close()
    await settle()
    # sock_connect and sock_accept on AF_UNIX
    lst = S.socket(S.AF_UNIX)
    lst.bind(tmp("sockops"))
    lst.listen()
    lst.setblocking(False)
    cl = S.socket(S.AF_UNIX)
    cl.setblocking(False)
    acc = asyncio.ensure_future(loop.sock_accept(lst))
    await t.aw("unix sock_connect", loop.sock_connect(cl, tmp("sockops")))
    conn, addr = await acc
    t("unix accepted addr", addr)
    await t.aw("unix sock_connect missing", loop.sock_connect(S.socket(S.AF_UNIX), tmp("none")), 1)
    for s in (lst, cl, conn):
        s.close()
    # an fd watcher's callback gets its arguments and may remove itself
    r, w = os.pipe()
    os.set_blocking(r, False)
    got = []

    def on_read(x, y):
        got.append((x, y, os.read(r, 10)))
        loop.remove_reader(r)
    loop.add_reader(r, on_read, 1, "two")
    os.write(w, b"ping")
    await settle()
    t("pipe reader", got)
    t.call("remove again", loop.remove_reader, r)
    t.call("add_writer pipe", lambda: loop.add_writer(w, lambda: None) is None)
    t.call("remove_writer pipe", loop.remove_writer, w)
    os.close(r)
    os.close(w)
    # a server's listening socket
    srv = await server(t, "srv", "127.0.0.1", 0)
    t.call("add_reader listener", loop.add_reader, srv.sockets[0].fileno(), lambda: None)
    t.call("remove_reader listener", loop.remove_reader, srv.sockets[0].fileno())
    srv.close()


# }=================================================
# {================================================= sock_* methods


@scenario
async def so_blocking(t):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # asyncio checks for blocking sockets in debug mode only
    a, b = S.socketpair()
    u = S.socket(S.AF_INET, S.SOCK_DGRAM)
    buf = bytearray(10)
    await t.aw("sock_recv", loop.sock_recv(a, 10))
    await t.aw("sock_recv_into", loop.sock_recv_into(a, buf))
    await t.aw("sock_recvfrom", loop.sock_recvfrom(u, 10))
    await t.aw("sock_recvfrom_into", loop.sock_recvfrom_into(u, buf))
    await t.aw("sock_sendall", loop.sock_sendall(a, b"x"))
    await t.aw("sock_sendto", loop.sock_sendto(u, b"x", ("127.0.0.1", 9)))
    await t.aw("sock_connect", loop.sock_connect(S.socket(), ("127.0.0.1", 9)))
    await t.aw("sock_accept", loop.sock_accept(S.socket()))
    await t.aw("sock_sendfile", loop.sock_sendfile(a, open(__file__, "rb")))
    for s in (a, b, u):
        s.close()


@scenario
async def so_cancel(t):
    loop = asyncio.get_running_loop()
    a, b = S.socketpair()
    a.setblocking(False)
    r = asyncio.ensure_future(loop.sock_recv(a, 10))
    await tick()
    r.cancel()
    await tick()
    t("cancelled", r.cancelled())
    b.send(b"data")
    await t.aw("new recv", loop.sock_recv(a, 10))
    r = asyncio.ensure_future(loop.sock_recv(a, 10))
    await tick()
    r2 = asyncio.ensure_future(loop.sock_recv(a, 10))
    await tick()
    t("second pending", r2.done())
    b.send(b"one")
    await settle()
    t("first", r.done() and (r.exception() and err(r.exception()) or r.result()))
    t("second", r2.done() and (r2.exception() and err(r2.exception()) or r2.result()))
    if not r2.done():
        b.send(b"two")
        await t.aw("second then", r2)
    b.close()
    await t.aw("recv eof", loop.sock_recv(a, 10))
    a.close()
    await t.aw("recv closed", loop.sock_recv(a, 10))


@scenario
async def so_calls(t):
    loop = asyncio.get_running_loop()
    lst = S.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    lst.setblocking(False)
    c = S.socket()
    c.setblocking(False)
    acc = asyncio.ensure_future(loop.sock_accept(lst))
    await t.aw("sock_connect", loop.sock_connect(c, lst.getsockname()))
    conn, addr = await acc
    t("accepted", addr == c.getsockname(), conn.getblocking())
    await t.aw("sock_sendall", loop.sock_sendall(c, b"x" * 300000))
    got = 0
    while got < 300000:
        got += len(await loop.sock_recv(conn, 65536))
    t("received", got)
    buf = bytearray(4)
    await loop.sock_sendall(conn, b"abcdef")
    await t.aw("sock_recv_into", loop.sock_recv_into(c, buf))
    t("buf", bytes(buf))
    await t.aw("sock_recv_into rest", loop.sock_recv_into(c, buf))
    await t.aw("sock_recv 0", loop.sock_recv(c, 0))
    await t.aw("sock_connect again", loop.sock_connect(c, lst.getsockname()))
    d = S.socket()
    d.setblocking(False)
    await t.aw("sock_connect refused", loop.sock_connect(d, ("127.0.0.1", free_port())))
    d.close()
    d = S.socket()
    d.setblocking(False)
    await t.aw("sock_connect by name", loop.sock_connect(d, ("localhost", lst.getsockname()[1])))
    d.close()
    for s in (lst, c, conn):
        s.close()
    u = S.socket(S.AF_INET, S.SOCK_DGRAM)
    u.setblocking(False)
    u.bind(("127.0.0.1", 0))
    v = S.socket(S.AF_INET, S.SOCK_DGRAM)
    v.setblocking(False)
    await t.aw("sock_sendto", loop.sock_sendto(v, b"dgram", u.getsockname()))
    await t.aw("sock_recvfrom", loop.sock_recvfrom(u, 3))
    await t.aw("sock_sendto empty", loop.sock_sendto(v, b"", u.getsockname()))
    await t.aw("sock_recvfrom empty", loop.sock_recvfrom(u, 10))
    await loop.sock_sendto(v, b"again", u.getsockname())
    buf = bytearray(10)
    await t.aw("sock_recvfrom_into", loop.sock_recvfrom_into(u, buf))
    await loop.sock_sendto(v, b"again", u.getsockname())
    await t.aw("sock_recvfrom_into 2", loop.sock_recvfrom_into(u, buf, 2))
    await t.aw("sock_recvfrom_into too many", loop.sock_recvfrom_into(u, buf, 11))
    await t.aw("sock_sendto oversized", loop.sock_sendto(v, b"x" * 70000, u.getsockname()))
    await t.aw("sock_sendto port 0", loop.sock_sendto(v, b"x", ("127.0.0.1", 0)))
    await t.aw("sock_recvfrom waits", loop.sock_recvfrom(u, 10), 0.1)
    u.close()
    v.close()


@scenario
async def so_more(t):
    loop = asyncio.get_running_loop()
    lst = S.socket()
    lst.bind(("127.0.0.1", 0))
    lst.setblocking(False)
    await t.aw("accept not listening", loop.sock_accept(lst))
    lst.listen()
    await t.aw("recv on listener", loop.sock_recv(lst, 10))
    acc = asyncio.ensure_future(loop.sock_accept(lst))
    await tick()
    acc.cancel()
    await tick()
    t("accept cancelled", acc.cancelled())
    c = S.socket()
    c.setblocking(False)
    await loop.sock_connect(c, lst.getsockname())
    conn, _ = await t.aw("accept after cancel", loop.sock_accept(lst))
    conn.setblocking(False)
    await t.aw("sendall empty", loop.sock_sendall(c, b""))
    conn.close()
    await settle()
    await t.aw("recv after peer close", loop.sock_recv(c, 10))
    n = 0
    try:
        for _ in range(100):
            await asyncio.wait_for(loop.sock_sendall(c, b"x" * 100000), 1)
            n += 1
    except Exception as e:
        t.error("sendall to closed peer", e)
    c.close()
    lst.close()
    u = S.socket(S.AF_INET, S.SOCK_DGRAM)
    u.setblocking(False)
    u.bind(("127.0.0.1", 0))
    await t.aw("sendto by name", loop.sock_sendto(u, b"n", ("localhost", u.getsockname()[1])))
    await t.aw("recvfrom it", loop.sock_recvfrom(u, 10))
    buf = bytearray(4)
    await loop.sock_sendto(u, b"abcdef", u.getsockname())
    await t.aw("recvfrom_into 0", loop.sock_recvfrom_into(u, buf, 0))
    t("buf", bytes(buf))
    await t.aw("sendto unresolvable", loop.sock_sendto(u, b"x", ("no-such-host.invalid", 9)))
    await t.aw("connect dgram", loop.sock_connect(u, ("127.0.0.1", 9)))
    await t.aw("recv after connect", loop.sock_recv(u, 10), 0.2)
    u.close()


# }=================================================
# {================================================= sendfile


def datafile():
    path = tmp("data")
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * 40)  # 10240 bytes
    return path


async def drain(loop, s, n):
    """Up to n bytes from s, what came within 1 s."""
    got = b""
    try:
        while len(got) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(s, 65536), 1)
            if not chunk:
                break
            got += chunk
    except TimeoutError:
        pass
    return got


@scenario
async def sf_sock(t):
    loop = asyncio.get_running_loop()
    path = datafile()
    for offset, count, fallback in ((0, None, True), (100, 50, True), (10000, 1000, True),
                                    (20000, None, True), (0, 0, True), (5, None, False)):
        a, b = S.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with open(path, "rb") as f:
            f.seek(7)
            n = await t.aw("sock_sendfile %d %s %s" % (offset, count, fallback),
                           loop.sock_sendfile(a, f, offset, count, fallback=fallback))
            got = await drain(loop, b, n or 0)
            t("received", len(got), got[:3], "tell", f.tell())
        a.close()
        b.close()
    a, b = S.socketpair()
    a.setblocking(False)
    with open(path, "rb") as f:
        await t.aw("negative offset", loop.sock_sendfile(a, f, -1))
        await t.aw("negative count", loop.sock_sendfile(a, f, 0, -1))
        await t.aw("float count", loop.sock_sendfile(a, f, 0, 1.5))
    a.close()
    b.close()
    r, w = os.pipe()
    a, b = S.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    os.write(w, b"from a pipe")
    os.close(w)
    with open(r, "rb") as f:
        await t.aw("pipe no fallback", loop.sock_sendfile(a, f, 0, None, fallback=False))
        await t.aw("pipe fallback", loop.sock_sendfile(a, f))
        t("received", await drain(loop, b, 11))
    a.close()
    b.close()
    u = S.socket(S.AF_INET, S.SOCK_DGRAM)
    u.setblocking(False)
    with open(path, "rb") as f:
        await t.aw("dgram sock", loop.sock_sendfile(u, f))
    u.close()


@scenario
async def sf_transport(t):
    loop = asyncio.get_running_loop()
    path = datafile()
    conns = 0

    class Count(asyncio.Protocol):
        """A server's connection: traces what it got once it is lost."""

        def connection_made(self, tr):
            nonlocal conns
            conns += 1
            self.who, self.data = "srv%d" % conns, b""

        def data_received(self, data):
            self.data += data

        def connection_lost(self, exc):
            t.event(self.who, "received", len(self.data), self.data[:4], self.data[-5:])
    srv = await loop.create_server(Count, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    Sink = asyncio.Protocol
    for offset, count, fallback in ((0, None, True), (100, 50, True), (20000, None, True),
                                    (3, 10, False)):
        c, _ = await loop.create_connection(Sink, "127.0.0.1", port)
        with open(path, "rb") as f:
            f.seek(7)
            await t.aw("sendfile %d %s %s" % (offset, count, fallback),
                       loop.sendfile(c, f, offset, count, fallback=fallback))
            t("tell", f.tell())
            c.write(b"after")
        c.close()
        await settle()
    await settle()
    c, _ = await loop.create_connection(Sink, "127.0.0.1", port)
    with open(path, "rb") as f:
        c.close()
        await t.aw("closing transport", loop.sendfile(c, f))
        await t.aw("bad offset", loop.sendfile(c, f, -1))
    c, _ = await loop.create_connection(Sink, "127.0.0.1", port)
    with open(path, "rb") as f:
        c.write(b"x" * 1000000)
        task = asyncio.ensure_future(loop.sendfile(c, f))
        await tick(1)
        c.close()
        await t.aw("closed while sending", task)
    await settle()
    u, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
    with open(path, "rb") as f:
        await t.aw("datagram transport", loop.sendfile(u, f))
    u.close()
    await settle()
    srv.close()


@scenario
async def sf_more(t):
    loop = asyncio.get_running_loop()
    path = datafile()
    srv = await server(t, "srv", "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    for paused in (False, True):
        c, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        if paused:
            c.pause_reading()
        with open(path, "rb") as f:
            await t.aw("sendfile paused %s" % paused, loop.sendfile(c, f, 10000, 5000, fallback=False))
        t("is_reading after", c.is_reading())
        c.close()
    await settle()
    srv.close()
    # the peer went away
    a, b = S.socketpair()
    a.setblocking(False)
    b.close()
    with open(path, "rb") as f:
        await t.aw("peer gone", loop.sock_sendfile(a, f))
        t("tell", f.tell())
    a.close()
    # an empty file
    with open(tmp("empty"), "wb"):
        pass
    a, b = S.socketpair()
    a.setblocking(False)
    with open(tmp("empty"), "rb") as f:
        await t.aw("empty file", loop.sock_sendfile(a, f))
        await t.aw("empty file no fallback", loop.sock_sendfile(a, f, fallback=False))
    a.close()
    b.close()
    await settle()


# }=================================================


async def run(fn, t):
    """fn(t), with the loop's exception handler tracing what it gets."""
    def handler(loop, ctx):
        e = ctx.get("exception")
        t("exception_handler", " ".join(ctx["message"].split()[:3]), e and err(e))
    asyncio.get_running_loop().set_exception_handler(handler)
    await fn(t)


if __name__ == "__main__":
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        for fn in SCENARIOS:  # each on a loop of its own
            if fn.__name__.startswith(prefix):
                t = Trace(fn.__name__)
                asyncio.run(run(fn, t))
                t.flush()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
