"""Differential harness, CPython side: TLS transports and streams.
tools/diff/tls.lua drives the same scenarios under eddy; both talk to
tools/diff/tls_peer.py (blocking sockets and Python's ssl module, one
process per scenario) and print one line per event, "scenario: event";
`tools/diff/run.sh tls` makes the certificates and diffs the two.
Usage: python3 tls.py CERTDIR [scenario-name-prefix]"""
import sys

# This directory goes last on the path: its socket.py would shadow the
# module (as in streams.py).
sys.path.append(sys.path.pop(0))
import asyncio, logging, os, ssl, subprocess  # noqa: E402
import proc  # noqa: E402
from proc import show, ename  # noqa: E402

CERTDIR = sys.argv[1]
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_peer.py")
SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def scenario_of(name, run, *args, **opts):
    """A scenario 'name' that is run(t, *args, **opts)."""
    async def fn(t):
        await run(t, *args, **opts)
    fn.__name__ = name
    SCENARIOS.append(fn)


class Trace(proc.Trace):
    """Events of one scenario; consecutive data_received are merged."""

    def data_of(self, data):
        self.data = (self.data or b"") + data

    def flush(self):
        if self.data is not None:
            self.lines.append("data " + show(self.data))
            self.data = None


class Recorder(proc.Recorder, asyncio.Protocol):
    """Traces its callbacks; answers "hello" with "world" (and closes then
    if 'close_after_world'); eof_received returns 'eof_result'."""

    def __init__(self, t, eof_result=None, close_after_world=False):
        super().__init__(t, asyncio.get_running_loop().create_future())
        self.eof_result, self.close_after_world = eof_result, close_after_world
        self.tr = None

    def connection_made(self, tr):
        self.tr = tr
        super().connection_made(tr)
        if self.close_after_world:  # (the server of srv_close_by_us) its side's extra info
            obj = tr.get_extra_info("ssl_object")
            self.t("peercert", tr.get_extra_info("peercert"), "server_side", obj.server_side,
                   "server_hostname", obj.server_hostname)

    def data_received(self, data):
        self.t.data_of(data)
        if data == b"hello":
            self.tr.write(b"world")
            if self.close_after_world:
                self.tr.close()

    def eof_received(self):
        self.t("eof_received")
        return self.eof_result


async def peer(mode):
    """tls_peer.py serving one connection in 'mode'; its port and process."""
    proc = await asyncio.create_subprocess_exec(sys.executable, PEER, mode, CERTDIR,
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return int(await asyncio.wait_for(proc.stdout.readline(), 10)), proc


def client_context():
    return ssl.create_default_context(cafile=os.path.join(CERTDIR, "ca.pem"))


async def connect(t, mode, rec=None, **opts):
    """A Recorder (or 'rec') connected over TLS to a peer in 'mode' (options:
    those of create_connection, server_hostname "localhost" unless given)."""
    port, proc = await peer(mode)
    opts.setdefault("server_hostname", "localhost")
    rec = rec or Recorder(t)
    tr, _ = await asyncio.get_running_loop().create_connection(
        lambda: rec, "127.0.0.1", port, ssl=client_context(), **opts)
    return tr, rec, proc


async def connect_fails(t, mode, **opts):
    """Connect as connect() does; trace the error."""
    port, proc = await peer(mode)
    opts.setdefault("ssl", client_context())
    try:
        await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, "127.0.0.1", port, **opts)
        t("connected")
    except Exception as e:
        t("raised", ename(e), getattr(e, "reason", None))
    proc.kill()
    await proc.wait()


async def finish(t, rec, proc):
    """Until connection_lost and the peer's end; then the trace."""
    await asyncio.wait_for(rec.done, 10)
    await asyncio.wait_for(proc.wait(), 10)
    t.dump()

# {================================================= closing


@scenario
async def close_by_peer(t):  # close_notify from the peer
    tr, rec, proc = await connect(t, "close_notify")
    await finish(t, rec, proc)


@scenario
async def close_tcp_by_peer(t):  # the end of TCP, no close_notify
    tr, rec, proc = await connect(t, "tcp_close")
    await finish(t, rec, proc)


@scenario
async def eof_true(t):  # eof_received's true cannot keep TLS half open
    tr, rec, proc = await connect(t, "tcp_close", rec=Recorder(t, eof_result=True))
    await finish(t, rec, proc)


async def end_by_us(t, method):
    """close() or abort() after a write; a write then is dropped."""
    tr, rec, proc = await connect(t, "client_closes")
    tr.write(b"bye")
    getattr(tr, method)()
    t("closing", tr.is_closing())
    tr.write(b"dropped")
    await finish(t, rec, proc)


scenario_of("close_by_us", end_by_us, "close")
scenario_of("abort_by_us", end_by_us, "abort")


@scenario
async def write_eof(t):
    tr, rec, proc = await connect(t, "client_closes")
    t("can_write_eof", tr.can_write_eof())
    try:
        tr.write_eof()
        t("write_eof ok")
    except Exception as e:
        t("write_eof", ename(e))
    tr.close()
    await finish(t, rec, proc)


@scenario
async def garbage_handshake(t):
    await connect_fails(t, "garbage")
    t.dump()


@scenario
async def garbage_record(t):
    tr, rec, proc = await connect(t, "garbage_after")
    await finish(t, rec, proc)


@scenario
async def truncated_record(t):
    tr, rec, proc = await connect(t, "truncated")
    await finish(t, rec, proc)

@scenario
async def shutdown_timeout(t):  # the peer never answers our close_notify
    tr, rec, proc = await connect(t, "hold", ssl_shutdown_timeout=0.3)
    await asyncio.sleep(0.1)
    start = asyncio.get_running_loop().time()
    tr.close()
    await asyncio.wait_for(rec.done, 5)
    t("within", "%.1f" % (asyncio.get_running_loop().time() - start))
    await finish(t, rec, proc)

# }================================================= handshakes


async def handshake(t, mode, **opts):
    """Connect to a peer in 'mode': connected, or the error."""
    await connect_fails(t, mode, **opts)
    t.dump()


def no_name_check():
    ctx = client_context()
    ctx.check_hostname = False
    return ctx


scenario_of("hs_unknown_ca", handshake, "rogue", server_hostname="localhost")
scenario_of("hs_expired", handshake, "expired", server_hostname="localhost")
scenario_of("hs_wrong_name", handshake, "close_notify", server_hostname="wrong.test")
scenario_of("hs_name_from_host", handshake, "close_notify")  # no server_hostname: the host, an IP SAN
scenario_of("hs_empty_name", handshake, "close_notify", server_hostname="")  # with check_hostname on
scenario_of("hs_empty_name_no_check", handshake, "close_notify", ssl=no_name_check(), server_hostname="")


@scenario
async def hs_option_errors(t):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)  # asyncio checks some once connected
    port = srv.sockets[0].getsockname()[1]
    for opts in ({"server_hostname": "x"}, {"ssl_handshake_timeout": 1},
                 {"ssl_shutdown_timeout": 1},
                 {"ssl": True, "ssl_handshake_timeout": 0}, {"ssl": True, "ssl_handshake_timeout": -1},
                 {"ssl": True, "ssl_shutdown_timeout": 0}, {"ssl": True, "ssl_shutdown_timeout": -1}):
        try:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, **opts)
            t(sorted(opts), "connected")
        except Exception as e:
            t(*sorted(opts), ename(e), str(e))
    srv.close()
    t.dump()


@scenario
async def hs_timeout(t):  # a peer that never answers
    start = asyncio.get_running_loop().time()
    await connect_fails(t, "silent", server_hostname="localhost", ssl_handshake_timeout=0.3)
    t("within a second", asyncio.get_running_loop().time() - start < 1)
    t.dump()

# }================================================= flow control


async def pause_reading(t, mode):
    tr, rec, proc = await connect(t, mode)
    tr.pause_reading()
    t("is_reading", tr.is_reading())
    await asyncio.sleep(0.5)  # all sent and the peer's end of TCP
    t("resume")
    tr.resume_reading()
    await finish(t, rec, proc)


scenario_of("pause_reading", pause_reading, "lines")
scenario_of("pause_reading_notify", pause_reading, "lines_notify")  # close_notify while paused


@scenario
async def write_flow(t):
    tr, rec, proc = await connect(t, "slow")
    t("limits", tr.get_write_buffer_limits())
    tr.write(b"x" * (8 << 20))
    t("buffered", tr.get_write_buffer_size() > 0)
    tr.close()
    await finish(t, rec, proc)
    t.lines.clear()
    t("peer", (await proc.stdout.read()).decode().strip())
    t.dump()

@scenario
async def write_flow_chunks(t):  # many writes to a peer not reading yet
    tr, rec, proc = await connect(t, "slow")
    for _ in range(32):
        tr.write(b"x" * (256 << 10))
    t("buffered", tr.get_write_buffer_size() > 0)
    tr.close()
    await finish(t, rec, proc)

# }================================================= extra info


@scenario
async def extra_info(t):
    tr, rec, proc = await connect(t, "client_closes")
    cert = tr.get_extra_info("peercert")
    t("peercert subject", cert["subject"][-1][0][1], "san", len(cert["subjectAltName"]))
    cipher = tr.get_extra_info("cipher")
    t("cipher", type(cipher).__name__, len(cipher), cipher[1])
    t("compression", tr.get_extra_info("compression"))
    t("ssl_object", tr.get_extra_info("ssl_object") is not None)
    t("sslcontext", tr.get_extra_info("sslcontext") is not None)
    t("peername", tr.get_extra_info("peername")[0])
    t("socket", tr.get_extra_info("socket") is not None)
    t("unknown", tr.get_extra_info("nonesuch"), tr.get_extra_info("nonesuch", 5))
    obj = tr.get_extra_info("ssl_object")
    t("ssl_object", obj.server_side, obj.server_hostname, obj.version())
    tr.close()
    await finish(t, rec, proc)

# }================================================= servers


async def serve(t, mode, client_cert=False, **opts):
    """A TLS server for one connection of a tls_peer.py client in 'mode'
    (which has no certificate: 'client_cert' requires one)."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, ctx: t("exception handler", ctx["message"]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(CERTDIR, "server.pem"), os.path.join(CERTDIR, "server.key"))
    if client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(os.path.join(CERTDIR, "ca.pem"))
    recs = []

    def factory():
        t("factory")
        recs.append(Recorder(t, close_after_world=(mode == "c_wait_close")))
        return recs[-1]
    srv = await loop.create_server(factory, "127.0.0.1", 0, ssl=ctx, **opts)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, PEER, mode, CERTDIR, str(srv.sockets[0].getsockname()[1]),
        stderr=subprocess.DEVNULL)
    await asyncio.wait_for(proc.wait(), 10)
    if recs and recs[0].tr is not None:
        await asyncio.wait_for(recs[0].done, 5)
    else:
        await asyncio.sleep(0.5)
    srv.close()
    t.dump()


scenario_of("srv_close_notify", serve, "c_close_notify")
scenario_of("srv_tcp_close", serve, "c_tcp_close")
scenario_of("srv_close_by_us", serve, "c_wait_close")
scenario_of("srv_garbage", serve, "c_garbage")
scenario_of("srv_silent", serve, "c_silent", ssl_handshake_timeout=0.3)
scenario_of("srv_refused", serve, "c_rogue")  # the client does not trust us
scenario_of("srv_no_client_cert", serve, "c_close_notify", client_cert=True)

# }================================================= streams


async def stream_done(t, w, proc):
    """Close the writer, wait for it and the peer; then the trace."""
    w.close()
    await w.wait_closed()
    await asyncio.wait_for(proc.wait(), 10)
    t.dump()


@scenario
async def st_lines(t):
    port, proc = await peer("lines")
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                         server_hostname="localhost")
    for _ in range(3):
        t("readline", await r.readline())
    try:
        await r.readexactly(10)
    except Exception as e:
        t("readexactly", ename(e), e.partial, e.expected)
    t("at_eof", r.at_eof())
    await stream_done(t, w, proc)


async def st_starttls(t, mode):
    port, proc = await peer(mode)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    old = w.transport
    w.write(b"STARTTLS\n")
    t("readline", await r.readline())
    await asyncio.sleep(0.1)  # starttls_extra: the plain leftover is in the reader now
    await w.start_tls(client_context(), server_hostname="localhost")
    t("new transport", w.transport is not old, "old closing", old.is_closing())
    t("ssl_object", w.get_extra_info("ssl_object") is not None)
    if mode == "starttls_extra":
        t("readline", await r.readline())
    t("read", await r.readexactly(5))
    w.write(b"world")
    t("read at close", await r.read())
    await stream_done(t, w, proc)


scenario_of("st_starttls", st_starttls, "starttls")
scenario_of("st_starttls_extra", st_starttls, "starttls_extra")


@scenario
async def st_starttls_errors(t):
    port, proc = await peer("close_notify")
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                         server_hostname="localhost")
    try:
        await w.start_tls(client_context(), server_hostname="localhost")
        t("twice ok")
    except Exception as e:
        t("start_tls on TLS", ename(e))
    proc.kill()
    await proc.wait()
    w.close()
    try:
        await w.wait_closed()
    except Exception as e:
        t("wait_closed", ename(e))
    t.dump()

# }=================================================


class ToTrace(logging.Handler):
    """asyncio's log (eddy's warn()) into the running scenario's trace."""
    trace = None

    def emit(self, record):
        self.trace("log", record.getMessage())


if __name__ == "__main__":
    prefix = sys.argv[2] if len(sys.argv) > 2 else ""
    log = logging.getLogger("asyncio")
    log.addHandler(ToTrace())
    log.propagate = False
    for fn in SCENARIOS:  # each on a loop of its own
        if fn.__name__.startswith(prefix):
            ToTrace.trace = Trace(fn.__name__)
            asyncio.run(fn(ToTrace.trace))
