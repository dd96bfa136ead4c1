"""Differential harness, CPython side: the socket module (the part
eddy.socket has) and the loop's getaddrinfo/getnameinfo.  tools/diff/
socket.lua does the same under eddy; both print one line per call,
"scenario: label result", so `tools/diff/run.sh socket` can diff them.
Offline: numeric hosts, localhost and /etc/services names only.
Usage: python3 socket.py [scenario-name-prefix]"""
import sys

# This file is socket.py: keep its directory off the path, or "import
# socket" (here and in asyncio) would import it instead of the module.
sys.path = [p for p in sys.path if p != sys.path[0]]
import asyncio, errno, os, socket as S, tempfile  # noqa: E402

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


# eddy.errors has fewer OSError classes than Python (API.md section 9): a
# Python class eddy lacks prints as the eddy class it becomes.
AS_EDDY = {"BlockingIOError": "OSError", "gaierror": "DNSError",
           "OverflowError": "ValueError", "InterruptedError": "OSError",
           "FileExistsError": "OSError", "IsADirectoryError": "OSError",
           "NotADirectoryError": "OSError", "ChildProcessError": "OSError",
           "ProcessLookupError": "OSError", "herror": "OSError"}


def show(v):
    """A value as both harnesses print it: tuples as {...}, NUL as \\0 and
    ephemeral ports (10000 and up) as PORT, so runs compare."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, bytes):
        return '"%s"' % v.decode("latin-1").replace("\0", "\\0")
    if isinstance(v, str):
        return '"%s"' % v.replace("\0", "\\0")
    if isinstance(v, int) and v >= 10000:
        return "PORT"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(show(x) for x in v) + "}"
    return str(int(v)) if isinstance(v, int) else str(v)


# An errno's name, as eddy's err.code; gaierror's errno is an EAI_* value.
CODES = dict(errno.errorcode)
CODES.update({getattr(S, n): n for n in dir(S) if n.startswith("EAI_")})


def err(e):
    """An error by class, errno and errno name (eddy's strerror is libuv's
    text, docs/errors.md: compared through the name)."""
    name = type(e).__name__
    name = AS_EDDY.get(name, name)
    if isinstance(e, OSError) and e.errno is not None:
        return "error %s %d %s" % (name, e.errno, CODES.get(e.errno, "?"))
    return "error %s %s" % (name, e)


class Trace:
    def __init__(self, name):
        self.name = name

    def __call__(self, label, fn, *args):
        """Calls fn(*args) and prints what it returned or raised."""
        try:
            r = fn(*args)
        except Exception as e:
            print("%s: %s %s" % (self.name, label, err(e)))
            return None
        print("%s: %s %s" % (self.name, label, show(r)))
        return r

    def say(self, label, *values):
        print("%s: %s %s" % (self.name, label, " ".join(show(v) for v in values)))


def info(s):
    return (s.family, s.type, s.proto)


# {================================================= sockets

@scenario
def sk_create(t):
    s = S.socket()
    t.say("default", *info(s))
    t("gettimeout", s.gettimeout)
    t("getblocking", s.getblocking)
    s.close()
    t("dgram", lambda: info(S.socket(S.AF_INET, S.SOCK_DGRAM)))
    t("inet6", lambda: info(S.socket(S.AF_INET6)))
    t("unix", lambda: info(S.socket(S.AF_UNIX)))
    t("unix dgram", lambda: info(S.socket(S.AF_UNIX, S.SOCK_DGRAM)))
    t("bad family", lambda: S.socket(12345))
    t("bad type", lambda: S.socket(S.AF_INET, 999))
    t("bad proto", lambda: S.socket(S.AF_INET, S.SOCK_STREAM, 999))
    t("udp proto for stream", lambda: S.socket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP))
    t("huge family", lambda: S.socket((1 << 32) + S.AF_INET))
    t("huge type", lambda: S.socket(S.AF_INET, (1 << 32) + S.SOCK_STREAM))
    t("negative fileno", lambda: S.socket(fileno=-1))
    t("closed fileno", lambda: S.socket(fileno=999))
    t("tcp proto", lambda: info(S.socket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP)))
    t("nonblock type", lambda: info(S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK)))
    s = S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK)
    t("nonblock gettimeout", s.gettimeout)
    s.close()


@scenario
def sk_socketpair(t):
    a, b = S.socketpair()
    t.say("default", *info(a))
    t.say("names", a.getsockname(), a.getpeername(), b.getsockname())
    t("send", a.send, b"hi")
    t("recv", b.recv, 10)
    a.close(); b.close()
    t("dgram", lambda: [info(x) for x in S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)])
    t("inet", lambda: S.socketpair(S.AF_INET))
    t("inet6", lambda: S.socketpair(S.AF_INET6))
    t("bad family", lambda: S.socketpair(12345))


@scenario
def sk_tcp(t):
    lst = S.socket()
    t("bind", lst.bind, ("127.0.0.1", 0))
    t("listen", lst.listen)
    t("getsockname", lst.getsockname)
    t("listener getpeername", lst.getpeername)
    c = S.socket()
    t("connect", c.connect, lst.getsockname())
    conn, addr = lst.accept()
    t.say("accept", addr, *info(conn))
    t("accepted gettimeout", conn.gettimeout)
    t("send", c.send, b"hello")
    t("recv", conn.recv, 3)
    t("recv rest", conn.recv, 100)
    t("recv 0", conn.recv, 0)
    t("getpeername", c.getpeername)
    t("shutdown wr", c.shutdown, S.SHUT_WR)
    t("recv eof", conn.recv, 100)
    t("send after shut wr", c.send, b"x")
    t("shutdown bad how", c.shutdown, 7)
    t("shutdown neg how", c.shutdown, -1)
    t("shutdown rdwr", conn.shutdown, S.SHUT_RDWR)
    t("recv after shut rd", conn.recv, 10)
    t("bind again", c.bind, ("127.0.0.1", 0))
    t("connect again", c.connect, lst.getsockname())
    t("bind in use", lambda: S.socket().bind(lst.getsockname()))
    t("bind bad port", lambda: S.socket().bind(("127.0.0.1", 70000)))
    t("bind neg port", lambda: S.socket().bind(("127.0.0.1", -1)))
    t("bind bad host", lambda: S.socket().bind(("300.1.1.1", 0)))
    t("bind inet6 addr", lambda: S.socket().bind(("::1", 0)))
    t("bind short tuple", lambda: S.socket().bind(("127.0.0.1",)))
    t("bind empty host", lambda: S.socket().bind(("", 0)))
    t("bind short form host", lambda: S.socket().bind(("127.1", 0)))
    t("bind broadcast host", lambda: S.socket(S.AF_INET, S.SOCK_DGRAM).bind(("<broadcast>", 0)))
    u = S.socket()
    t("unbound getsockname", u.getsockname)
    t("unconnected getpeername", u.getpeername)
    t("unconnected send", u.send, b"x")
    t("unconnected recv nb", lambda: (u.setblocking(False), u.recv(1))[1])
    t("unconnected shutdown", u.shutdown, S.SHUT_RDWR)
    t("listen unbound", u.listen)
    for s in (lst, c, conn, u):
        s.close()


@scenario
def sk_nonblocking(t):
    lst = S.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    t("setblocking", lst.setblocking, False)
    t("getblocking", lst.getblocking)
    t("gettimeout", lst.gettimeout)
    t("accept", lst.accept)
    c = S.socket()
    c.setblocking(False)
    t("connect", c.connect, lst.getsockname())
    t("connect_ex", c.connect_ex, lst.getsockname())
    lst.setblocking(True)
    conn, _ = lst.accept()
    t("accept blocking listener gives", conn.gettimeout)
    import select
    select.select([], [c], [], 2)
    t("connect_ex done", c.connect_ex, lst.getsockname())
    t("recv", c.recv, 10)
    conn.send(b"x")
    select.select([c], [], [], 2)
    t("recv data", c.recv, 10)
    conn.close()
    select.select([c], [], [], 2)
    t("recv eof", c.recv, 10)
    t("send to closed", c.send, b"y")
    t("send again", c.send, b"y")
    lst.close(); c.close()
    a, b = S.socketpair()
    a.setblocking(False)
    n = 0
    try:
        while True:
            n += a.send(b"z" * 65536)
    except BlockingIOError as e:
        t.say("fill", err(e))
    a.close(); b.close()


@scenario
def sk_misc(t):
    a, b = S.socketpair()
    a.send(b"peek")
    t("recv peek", b.recv, 10, S.MSG_PEEK)
    t("recv after peek", b.recv, 10)
    t("recv dontwait", b.recv, 10, S.MSG_DONTWAIT)
    t("recv neg", b.recv, -1)
    t("dup", lambda: info(a.dup()))
    t("accept not listening", a.accept)
    t("listen neg backlog", lambda: S.socket().listen(-5))
    b.close()
    t("sendall to closed", a.sendall, b"x" * 300000)
    t("recv closed peer", a.recv, 10)
    a.close()
    u, v = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    t("dgram send", u.send, b"d")
    t("dgram recvfrom", v.recvfrom, 10)
    t("dgram recv 0", v.recv, 0)
    u.close(); v.close()
    t.say("constants", S.SHUT_RD, S.SHUT_WR, S.SHUT_RDWR, S.SOMAXCONN, S.MSG_PEEK)


@scenario
def sk_refused(t):
    s = S.socket()
    s.bind(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()
    c = S.socket()
    t("connect", c.connect, addr)
    t("connect_ex", c.connect_ex, addr)
    c.close()
    c = S.socket()
    c.setblocking(False)
    t("nb connect", c.connect, addr)
    import select
    select.select([], [c], [], 2)
    t("SO_ERROR", c.getsockopt, S.SOL_SOCKET, S.SO_ERROR)
    c.close()
    t("unix missing", lambda: S.socket(S.AF_UNIX).connect("/nonexistent/sock"))
    t("unix not a socket", lambda: S.socket(S.AF_UNIX).connect("/etc/passwd"))


@scenario
def sk_timeout(t):
    a, b = S.socketpair()
    t("settimeout", a.settimeout, 0.05)
    t("gettimeout", a.gettimeout)
    t("getblocking", a.getblocking)
    t("recv", a.recv, 1)
    t("settimeout 0", a.settimeout, 0)
    t("getblocking 0", a.getblocking)
    t("gettimeout 0", a.gettimeout)
    t("recv 0", a.recv, 1)
    t("settimeout nil", a.settimeout, None)
    t("gettimeout nil", a.gettimeout)
    t("getblocking nil", a.getblocking)
    t("settimeout neg", a.settimeout, -1)
    t("settimeout int", a.settimeout, 2)
    t("gettimeout int", a.gettimeout)
    t("setblocking true", a.setblocking, True)
    t("gettimeout", a.gettimeout)
    t("setblocking false", a.setblocking, False)
    t("gettimeout", a.gettimeout)
    a.close(); b.close()


@scenario
def sk_closed(t):
    s = S.socket()
    s.bind(("127.0.0.1", 0))
    t("close", s.close)
    t("close again", s.close)
    t("fileno", s.fileno)
    t.say("fields", *info(s))
    t("getblocking", s.getblocking)
    t("gettimeout", s.gettimeout)
    t("bind", s.bind, ("127.0.0.1", 0))
    t("listen", s.listen)
    t("connect", s.connect, ("127.0.0.1", 1))
    t("connect_ex", s.connect_ex, ("127.0.0.1", 1))
    t("accept", s.accept)
    t("recv", s.recv, 1)
    t("send", s.send, b"x")
    t("sendall", s.sendall, b"x")
    t("shutdown", s.shutdown, S.SHUT_RDWR)
    t("getsockname", s.getsockname)
    t("getpeername", s.getpeername)
    t("setsockopt", s.setsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 1)
    t("getsockopt", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR)
    t("setblocking", s.setblocking, False)
    t("settimeout", s.settimeout, 1)
    t("detach", s.detach)
    t("dup", s.dup)


@scenario
def sk_detach(t):
    s = S.socket()
    fd = s.fileno()
    t("detach is fileno", lambda: s.detach() == fd)
    t("fileno", s.fileno)
    t("close", s.close)
    w = S.socket(fileno=fd)
    t.say("wrapped", *info(w))
    t("wrapped getsockname", w.getsockname)
    w.close()
    a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    w = S.socket(fileno=a.detach())
    t.say("wrapped dgram", *info(w))
    w.close(); b.close()


@scenario
def sk_inet6(t):
    s = S.socket(S.AF_INET6)
    t("bind", s.bind, ("::1", 0))
    t("getsockname", s.getsockname)
    s.listen()
    c = S.socket(S.AF_INET6)
    t("connect 2-tuple", c.connect, s.getsockname()[:2])
    conn, addr = s.accept()
    t.say("accept", addr)
    t("getpeername", c.getpeername)
    t("bind flowinfo", lambda: S.socket(S.AF_INET6).bind(("::1", 0, 5, 0)))
    t("bind bad flowinfo", lambda: S.socket(S.AF_INET6).bind(("::1", 0, 1 << 20, 0)))
    t("bind scope", lambda: S.socket(S.AF_INET6).bind(("::1", 0, 0, 1)))
    t("bind v4 host", lambda: S.socket(S.AF_INET6).bind(("127.0.0.1", 0)))
    t("bind wildcard", lambda: S.socket(S.AF_INET6).bind(("", 0)))
    t("bind 5-tuple", lambda: S.socket(S.AF_INET6).bind(("::1", 0, 0, 0, 0)))
    t("v4-mapped", lambda: S.socket(S.AF_INET6).bind(("::ffff:127.0.0.1", 0)))
    u = S.socket(S.AF_INET6)
    t("unbound getsockname", u.getsockname)
    for x in (s, c, conn, u):
        x.close()


@scenario
def sk_unix(t):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "s")
    s = S.socket(S.AF_UNIX)
    t("unbound getsockname", s.getsockname)
    t("bind", s.bind, path)
    t("getsockname is path", lambda: s.getsockname() == path)
    s.listen()
    c = S.socket(S.AF_UNIX)
    t("connect", c.connect, path)
    conn, addr = s.accept()
    t.say("accept addr", addr)
    t("conn getpeername", conn.getpeername)
    t("client getpeername is path", lambda: c.getpeername() == path)
    t("client getsockname", c.getsockname)
    t("bind again", lambda: S.socket(S.AF_UNIX).bind(path))
    t("bind too long", lambda: S.socket(S.AF_UNIX).bind("/tmp/" + "x" * 200))
    x = S.socket(S.AF_UNIX)
    t("bind empty", x.bind, "")  # autobind: an abstract name of 5 random hex digits
    t("autobound", lambda: (x.getsockname()[:1], len(x.getsockname())))
    x.close()
    for x in (s, c, conn):
        x.close()
    os.unlink(path); os.rmdir(d)
    name = "\0eddy-diff-%d" % os.getpid()
    a = S.socket(S.AF_UNIX)
    t("bind abstract", a.bind, name)
    t("abstract getsockname", lambda: a.getsockname().replace(b"%d" % os.getpid(), b"PID"))
    a.listen()
    c = S.socket(S.AF_UNIX)
    t("connect abstract", c.connect, name)
    t("abstract getpeername", lambda: c.getpeername().replace(b"%d" % os.getpid(), b"PID"))
    a.close(); c.close()
    d = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    t("dgram unbound getsockname", d.getsockname)
    t("dgram sendto missing", d.sendto, b"x", "/nonexistent/sock")
    t("bind missing dir", d.bind, "/nonexistent/dir/sock")
    t("bind abstract 108 bytes", lambda: S.socket(S.AF_UNIX).bind("\0%07d" % os.getpid() + "y" * 100))
    t("bind abstract 109 bytes", lambda: S.socket(S.AF_UNIX).bind("\0" + "y" * 108))
    t("bind path 108 bytes", lambda: S.socket(S.AF_UNIX).bind("/" + "y" * 107))
    d.close()


@scenario
def sk_sockopt(t):
    s = S.socket()
    t("get SO_REUSEADDR", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR)
    t("set SO_REUSEADDR", s.setsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 1)
    t("get SO_REUSEADDR", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR)
    t("set true", s.setsockopt, S.SOL_SOCKET, S.SO_KEEPALIVE, True)
    t("get SO_KEEPALIVE", s.getsockopt, S.SOL_SOCKET, S.SO_KEEPALIVE)
    t("get buflen 4", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 4)
    t("get buflen 8", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 8)
    t("get buflen 2", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 2)
    t("get buflen 0", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 0)
    t("get buflen neg", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, -1)
    t("get buflen huge", s.getsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, 2000)
    t("set bytes", s.setsockopt, S.SOL_SOCKET, S.SO_LINGER, b"\1\0\0\0\5\0\0\0")
    t("get linger", s.getsockopt, S.SOL_SOCKET, S.SO_LINGER, 8)
    t("set short bytes", s.setsockopt, S.SOL_SOCKET, S.SO_LINGER, b"\1")
    t("set empty bytes", s.setsockopt, S.SOL_SOCKET, S.SO_REUSEADDR, b"")
    t("get SO_TYPE", s.getsockopt, S.SOL_SOCKET, S.SO_TYPE)
    t("get SO_DOMAIN", s.getsockopt, S.SOL_SOCKET, S.SO_DOMAIN)
    t("get SO_ERROR", s.getsockopt, S.SOL_SOCKET, S.SO_ERROR)
    t("get SO_ACCEPTCONN", s.getsockopt, S.SOL_SOCKET, S.SO_ACCEPTCONN)
    t("set TCP_NODELAY", s.setsockopt, S.IPPROTO_TCP, S.TCP_NODELAY, 1)
    t("get TCP_NODELAY", s.getsockopt, S.IPPROTO_TCP, S.TCP_NODELAY)
    t("bad option", s.getsockopt, S.SOL_SOCKET, 9999)
    t("set bad option", s.setsockopt, S.SOL_SOCKET, 9999, 1)
    t("bad level", s.getsockopt, 9999, 1)
    t("set neg", s.setsockopt, S.SOL_SOCKET, S.SO_RCVBUF, -1)
    t("set huge", s.setsockopt, S.SOL_SOCKET, S.SO_RCVBUF, 1 << 40)
    t("set None", s.setsockopt, S.SOL_SOCKET, S.SO_RCVBUF, None)
    s.close()


@scenario
def sk_udp(t):
    a = S.socket(S.AF_INET, S.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b = S.socket(S.AF_INET, S.SOCK_DGRAM)
    t("sendto", b.sendto, b"ping", a.getsockname())
    t("recvfrom", a.recvfrom, 100)
    t("sendto flags", b.sendto, b"pong", 0, a.getsockname())
    t("recv short", a.recv, 2)
    t("getpeername", a.getpeername)
    t("connect", b.connect, a.getsockname())
    t("send", b.send, b"")
    t("recvfrom empty", a.recvfrom, 10)
    t("listen dgram", a.listen)
    t("accept dgram", a.accept)
    a.settimeout(0.05)
    t("recvfrom timeout", a.recvfrom, 10)
    a.close(); b.close()

# }=================================================
# {================================================= DNS


def entries(r):
    return [(e[0], e[1], e[2], e[3], e[4]) for e in r]


@scenario
async def dns_getaddrinfo(t):
    loop = asyncio.get_running_loop()

    def gai(label, *args, **kw):
        async def run():
            try:
                r = await loop.getaddrinfo(*args, **kw)
            except Exception as e:
                print("%s: %s %s" % (t.name, label, err(e)))
                return
            for e in r:
                t.say(label, *e)
            if not r:
                t.say(label, "empty")
        return run()

    await gai("nil host", None, 80)
    await gai("nil host passive", None, 80, flags=S.AI_PASSIVE)
    await gai("nil host passive v6", None, 80, family=S.AF_INET6, flags=S.AI_PASSIVE)
    await gai("empty host", "", 80)
    await gai("nil nil", None, None)
    await gai("v4", "127.0.0.1", 80)
    await gai("v4 stream", "127.0.0.1", 80, type=S.SOCK_STREAM)
    await gai("v4 udp proto", "127.0.0.1", 80, proto=S.IPPROTO_UDP)
    await gai("v6", "::1", "http", type=S.SOCK_STREAM)
    await gai("v6 scope", "fe80::1%1", 80, type=S.SOCK_STREAM)
    await gai("service name", "127.0.0.1", "ssh", type=S.SOCK_STREAM)
    await gai("service digits", "127.0.0.1", "8080", type=S.SOCK_STREAM)
    await gai("service bytes", "127.0.0.1", b"ssh", type=S.SOCK_STREAM)
    await gai("bad service", "127.0.0.1", "no-such-service", type=S.SOCK_STREAM)
    await gai("port 0", "127.0.0.1", 0, type=S.SOCK_STREAM)
    await gai("port big", "127.0.0.1", 70000, type=S.SOCK_STREAM)
    await gai("port neg", "127.0.0.1", -1, type=S.SOCK_STREAM)
    await gai("port nil", "127.0.0.1", None, type=S.SOCK_STREAM)
    await gai("localhost v4", "localhost", 22, family=S.AF_INET, type=S.SOCK_STREAM)
    await gai("localhost", "localhost", 22, type=S.SOCK_STREAM)
    await gai("localhost canonname", "localhost", 22, family=S.AF_INET, type=S.SOCK_STREAM, flags=S.AI_CANONNAME)
    await gai("unspec tcp proto", "127.0.0.1", 80, family=S.AF_UNSPEC, proto=S.IPPROTO_TCP)
    await gai("passive numeric", "0.0.0.0", 80, type=S.SOCK_STREAM, flags=S.AI_PASSIVE)
    await gai("service 0 string", "127.0.0.1", "0", type=S.SOCK_STREAM)
    await gai("raw", "127.0.0.1", None, type=S.SOCK_RAW)
    await gai("raw with port", "127.0.0.1", 80, type=S.SOCK_RAW)
    await gai("v4 in v6 family v4mapped", "127.0.0.1", 80, family=S.AF_INET6, type=S.SOCK_STREAM, flags=S.AI_V4MAPPED)
    await gai("canonname", "127.0.0.1", 22, type=S.SOCK_STREAM, flags=S.AI_CANONNAME)
    await gai("numerichost", "localhost", 80, flags=S.AI_NUMERICHOST)
    await gai("numerichost ok", "127.0.0.1", 80, type=S.SOCK_DGRAM, flags=S.AI_NUMERICHOST)
    await gai("numericserv", "127.0.0.1", "http", flags=S.AI_NUMERICSERV)
    await gai("family mismatch", "127.0.0.1", 80, family=S.AF_INET6)
    await gai("family unix", "127.0.0.1", 80, family=S.AF_UNIX)
    await gai("bad family", "127.0.0.1", 80, family=12345)
    await gai("bad type", "127.0.0.1", 80, type=999)
    await gai("bad flags", "127.0.0.1", 80, flags=0x10000)
    await gai("dgram ssh", "127.0.0.1", "ssh", type=S.SOCK_DGRAM)
    await gai("bad v4", "1.2.3.4.5", 80, flags=S.AI_NUMERICHOST)


@scenario
async def dns_getnameinfo(t):
    loop = asyncio.get_running_loop()

    async def gni(label, *args):
        try:
            r = await loop.getnameinfo(*args)
        except Exception as e:
            print("%s: %s %s" % (t.name, label, err(e)))
            return
        t.say(label, *r)

    await gni("v4", ("127.0.0.1", 22))
    await gni("v4 flags 0", ("127.0.0.1", 22), 0)
    await gni("numeric", ("127.0.0.1", 22), S.NI_NUMERICHOST | S.NI_NUMERICSERV)
    await gni("numericserv", ("127.0.0.1", 80), S.NI_NUMERICSERV)
    await gni("namereqd", ("127.0.0.1", 80), S.NI_NAMEREQD)
    await gni("dgram", ("127.0.0.1", 514), S.NI_DGRAM)
    await gni("unknown port", ("127.0.0.1", 1))
    await gni("port 0", ("127.0.0.1", 0), S.NI_NUMERICHOST)
    await gni("v6", ("::1", 80, 0, 0), S.NI_NUMERICHOST)
    await gni("v6 2-tuple", ("::1", 80), S.NI_NUMERICHOST)
    await gni("v6 scope", ("fe80::1", 80, 0, 1), S.NI_NUMERICHOST | S.NI_NUMERICSERV)
    await gni("v6 flowinfo", ("::1", 80, 7, 0), S.NI_NUMERICHOST)
    await gni("v6 bad flowinfo", ("::1", 80, 1 << 20, 0), S.NI_NUMERICHOST)
    await gni("short form host", ("127.1", 80), S.NI_NUMERICHOST)
    await gni("hex host", ("0x7f.1", 80), S.NI_NUMERICHOST)
    await gni("v4-mapped", ("::ffff:1.2.3.4", 80), S.NI_NUMERICHOST)
    await gni("name host", ("localhost", 80))
    await gni("empty host", ("", 80), S.NI_NUMERICHOST)
    await gni("bad port", ("127.0.0.1", 70000))
    await gni("neg port", ("127.0.0.1", -1))
    await gni("short tuple", ("127.0.0.1",))
    await gni("long tuple", ("127.0.0.1", 80, 0, 0, 0))
    await gni("bad flags", ("127.0.0.1", 80), 0x10000)

# }=================================================


if __name__ == "__main__":
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    for fn in SCENARIOS:
        if fn.__name__.startswith(prefix):
            t = Trace(fn.__name__)
            if asyncio.iscoroutinefunction(fn):
                asyncio.run(fn(t))
            else:
                fn(t)
