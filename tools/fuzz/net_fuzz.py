#!/usr/bin/env python3
"""net_fuzz.py EDDY SEED [CONNS]: hostile network peers against eddy.

Starts tools/fuzz/net_target.lua under EDDY (the sanitizer build, for a
campaign), then opens CONNS connections (default 60), many at once, to its
endpoints, each with a behaviour picked from the seed: random bytes, a
valid TLS ClientHello then garbage, a truncated or oversized TLS record, a
handshake then close_notify at a random point, a reset (SO_LINGER 0) at a
random byte offset (mid-handshake, mid-reply), a half-close then reading
on, slowloris drips, never reading then a reset, lines over the limit,
readexactly short by one then EOF, floods of tiny and oversized UDP
datagrams.  It also has the target connect out to hostile listeners: one
that accepts then resets, sends garbage or a garbage ServerHello, shows a
certificate nobody trusts, or stalls the handshake (ssl_handshake_timeout
must fire).  Then it checks that the target still answers normal requests
on every endpoint, asks it to close everything, and requires exit status
0 (the target's own check that every libuv handle came back), no
sanitizer report and no hang: every wait here is bounded.

Choices are deterministic per seed (each connection has its own random
generator); timing is not.  Findings are printed as "FINDING" lines; the
last line is "ok SEED CONNS: N findings"; the exit status is 1 on any.
NET_FUZZ_TRACE=1 names every connection's behaviour as it starts.
FUZZ_CERTS=DIR reuses spec/support/tls.lua's certificates.
"""
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 5        # any one socket operation
BIG = 4 * 1024 * 1024
ECHOES = ("echo", "buffered", "sock")  # plain echoes: a "BIG" adds 4 MiB
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")

findings = []
lock = threading.Lock()


def finding(what):
    with lock:
        findings.append(what)
        print("FINDING " + what, flush=True)


def trace(what):
    if os.environ.get("NET_FUZZ_TRACE"):
        print(what, file=sys.stderr, flush=True)


# Sockets ------------------------------------------------------------------

def connect(target, name):
    if name == "unix":
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(TIMEOUT)
        s.connect(target.ports["unix"])
    else:
        s = socket.create_connection(("127.0.0.1", int(target.ports[name])), timeout=TIMEOUT)
    return s


def reset(s):
    """Close with SO_LINGER 0: the peer gets a RST."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def read_to_eof(s, limit=64 * 1024 * 1024):
    """Read until EOF (or a reset); None when TIMEOUT passes first."""
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None
    except OSError:
        pass
    return data


def expect_close(s, what, must=True):
    """eddy must close s (with 'must'): a finding when it stays open."""
    if read_to_eof(s) is None and must:
        finding(f"{what}: no close in {TIMEOUT} s")
    s.close()


def read_n(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def client_context(target, cert=False):
    ctx = ssl.create_default_context(cafile=target.cert("ca.pem"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(target.cert("client.pem"), target.cert("client.key"))
        ctx.set_alpn_protocols(["eddy/1"])
    return ctx


def client_hello(ctx):
    """The bytes of a valid ClientHello from ctx."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def handshake_until(rng, s, ctx, budget):
    """Drive a TLS handshake over s by hand, sending at most 'budget'
    bytes; returns the SSLObject and its BIOs once done, None once the
    budget ran out (after sending part of a flight)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    sent = 0
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = out.read()
        if sent + len(data) > budget:
            s.sendall(data[:budget - sent])
            return None
        s.sendall(data)
        sent += len(data)
        if done:
            return obj, inc, out
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("EOF in handshake")
        inc.write(chunk)


# Behaviours against the target's servers ----------------------------------
# Each takes (rng, target) and returns nothing; a finding is reported.

def random_bytes(rng, target):
    name = rng.choice(["echo", "streams", "tls", "mtls", "unix", "buffered", "sock"])
    s = connect(target, name)
    s.sendall(rng.randbytes(rng.choice([1, 5, 100, 3000, 70000])))
    if rng.random() < 0.5:
        reset(s)
        return
    s.shutdown(socket.SHUT_WR)
    expect_close(s, f"{name}: random bytes then EOF", must=name not in ECHOES)


def hello_then_garbage(rng, target):
    name = rng.choice(["tls", "mtls"])
    s = connect(target, name)
    s.sendall(client_hello(client_context(target)) + rng.randbytes(rng.randrange(1, 5000)))
    expect_close(s, f"{name}: ClientHello then garbage")


def bad_record(rng, target):
    name = rng.choice(["tls", "mtls"])
    s = connect(target, name)
    kind = rng.choice(["truncated", "oversized", "zero", "after_hello"])
    if kind == "truncated":
        s.sendall(b"\x16\x03\x01"[:rng.randrange(1, 4)] + b"\x02"[:rng.randrange(0, 2)])
    elif kind == "oversized":
        s.sendall(b"\x16\x03\x03" + struct.pack(">H", rng.randrange(18 * 1024, 65536))
                  + rng.randbytes(rng.randrange(0, 2000)))
    elif kind == "zero":
        s.sendall(bytes([rng.choice([0x14, 0x15, 0x16, 0x17, 0x42])]) + b"\x03\x03\x00\x00")
    else:
        hello = client_hello(client_context(target))
        s.sendall(hello + b"\x17\x03\x03" + struct.pack(">H", 0xffff) + b"x" * 100)
    if rng.random() < 0.5:
        s.shutdown(socket.SHUT_WR)
    expect_close(s, f"{name}: {kind} TLS record", must=kind != "truncated")


def tls_close_notify(rng, target):
    """A full handshake, some data, then close_notify at a random point:
    before any data, after writing, after part of the echo."""
    name = rng.choice(["tls", "mtls"])
    ctx = client_context(target, cert=(name == "mtls"))
    s = connect(target, name)
    t = ctx.wrap_socket(s, server_hostname="localhost")
    if name == "mtls" and t.selected_alpn_protocol() != "eddy/1":
        finding(f"mtls: ALPN chose {t.selected_alpn_protocol()!r}")
    point = rng.choice(["at_once", "after_write", "mid_read", "after_big"])
    payload = rng.randbytes(rng.randrange(1, 40000))
    if point != "at_once":
        t.sendall(payload + (b"BIG" if point == "after_big" else b""))
    if point in ("mid_read", "after_big"):
        read_n(t, rng.randrange(1, len(payload) + 1))
    try:
        t.unwrap()  # sends close_notify; waits for the peer's, or EOF
    except (ssl.SSLError, OSError):
        pass
    s.close()


def tls_garbage_after(rng, target):
    """A full handshake, then garbage or a raw EOF where records belong:
    eddy must close the connection."""
    name = rng.choice(["tls", "mtls"])
    s = connect(target, name)
    done = handshake_until(rng, s, client_context(target, cert=(name == "mtls")), 10 ** 9)
    obj, inc, out = done
    obj.write(rng.randbytes(rng.randrange(0, 3000)))
    data = out.read()
    cut = rng.randrange(0, len(data) + 1)
    # garbage may make a record header whose body never comes: EOF after
    s.sendall(data[:cut] + (rng.randbytes(rng.randrange(1, 3000)) if rng.random() < 0.5 else b""))
    s.shutdown(socket.SHUT_WR)
    expect_close(s, f"{name}: garbage or EOF mid-record after the handshake")


def tiny_records(rng, target):
    """Hundreds of 1-byte TLS records in one burst, then close_notify: the
    whole echo must come back first."""
    name = rng.choice(["tls", "mtls"])
    s = connect(target, name)
    obj, inc, out = handshake_until(rng, s, client_context(target, cert=(name == "mtls")),
                                    10 ** 9)
    body = bytes(rng.choice(b"tiny") for _ in range(rng.randrange(1, 800)))
    for i in range(len(body)):
        obj.write(body[i:i + 1])
    s.sendall(out.read())
    got = b""
    try:
        while len(got) < len(body):
            try:
                got += obj.read(65536)
            except ssl.SSLWantReadError:
                chunk = s.recv(65536)
                if not chunk:
                    break
                inc.write(chunk)
    except socket.timeout:
        pass
    if got != body:
        finding(f"{name}: {len(body)} one-byte records, {len(got)} bytes came back")
    s.close()


def rogue_client_cert(rng, target):
    """A client certificate nobody trusts: no echo may come back."""
    ctx = ssl.create_default_context(cafile=target.cert("ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(target.cert("rogue.pem"), target.cert("rogue.key"))
    t = ctx.wrap_socket(connect(target, "mtls"), server_hostname="localhost")
    t.sendall(b"ping")
    got = read_n(t, 4)
    if got:
        finding(f"mtls: a rogue client certificate got an answer: {got!r}")
    t.close()


def rst_at_offset(rng, target):
    """A reset at a random point: mid-handshake, or mid-reply of a large
    answer (eddy writing 4 MiB)."""
    name = rng.choice(["echo", "tls", "mtls", "streams", "buffered", "sock"])
    s = connect(target, name)
    if name in ("tls", "mtls"):
        ctx = client_context(target, cert=(name == "mtls" and rng.random() < 0.8))
        done = handshake_until(rng, s, ctx, rng.choice([rng.randrange(0, 600), 10 ** 9]))
        if done is not None and rng.random() < 0.7:
            obj, inc, out = done
            obj.write(b"BIG")
            s.sendall(out.read())
            read_n(s, rng.randrange(0, 300000))
    elif name in ECHOES:
        s.sendall(b"BIG")
        read_n(s, rng.randrange(0, BIG))
    else:
        s.sendall(b"big %d\n" % rng.randrange(1, 8 * 1024 * 1024))
        read_n(s, rng.randrange(0, 100000))
    reset(s)


def flood_echo(rng, target):
    """Send megabytes while reading the echo back on another thread (eddy's
    writes pause and resume), then half-close: all of it must come back."""
    name = rng.choice(["echo", "streams", "unix", "buffered", "sock"])
    s = connect(target, name)
    # the BufferedProtocol echo takes 1 to 97 bytes a call: slow for megabytes
    n = rng.randrange(1, 256 * 1024 if name == "buffered" else 6 * 1024 * 1024)
    body = b"e" * n
    if name not in ECHOES:
        body = b"exact %d\n" % n + body
    got = []
    reader = threading.Thread(target=lambda: got.append(read_to_eof(s)))
    reader.start()
    try:
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)
    finally:
        reader.join(2 * TIMEOUT)
    if reader.is_alive() or got[0] is None:
        finding(f"{name}: a {n}-byte echo with half-close: no EOF in {TIMEOUT} s")
    elif len(got[0]) != n:
        finding(f"{name}: sent {n} bytes, {len(got[0])} came back")
    s.close()


def half_close(rng, target):
    """Write, shutdown(SHUT_WR), then read on: the whole answer must come."""
    name = rng.choice(["echo", "streams", "unix", "buffered", "sock"])
    s = connect(target, name)
    body = bytes(rng.choice(b"abcdefgh") for _ in range(rng.randrange(1, 60)))
    if name in ECHOES:
        sent, want = body, body
    else:
        sent, want = b"line\n" + body + b"\n", body + b"\n"
    s.sendall(sent)
    s.shutdown(socket.SHUT_WR)
    got = read_to_eof(s)
    if got is None:
        finding(f"{name}: half-close: no EOF in {TIMEOUT} s")
    elif got != want:
        finding(f"{name}: half-close: sent {sent!r}, got back {got[:200]!r}")
    s.close()


def slowloris(rng, target):
    name = rng.choice(["echo", "streams", "tls", "mtls", "unix", "buffered", "sock"])
    s = connect(target, name)
    data = client_hello(client_context(target)) if name in ("tls", "mtls") else b"line\n" + b"a" * 50
    for b in data[:rng.randrange(1, 40)]:
        s.sendall(bytes([b]))
        time.sleep(rng.uniform(0.005, 0.05))
    (reset if rng.random() < 0.5 else socket.socket.close)(s)


def stall_handshake(rng, target):
    """Start a TLS handshake and stall: the server's ssl_handshake_timeout
    (2 s) must close the connection."""
    name = rng.choice(["tls", "mtls"])
    s = connect(target, name)
    start = time.monotonic()
    s.sendall(client_hello(client_context(target))[:rng.randrange(0, 200)])
    got = read_to_eof(s)
    if got is None or time.monotonic() - start > 4:
        finding(f"{name}: a stalled handshake still open after {time.monotonic() - start:.1f} s")
    s.close()


def never_read(rng, target):
    """Make eddy write far more than the socket buffers hold, never read
    (eddy's writes hit flow control), then reset."""
    name = rng.choice(["echo", "streams", "tls", "buffered", "sock"])
    s = connect(target, name)
    if name == "tls":
        s = client_context(target).wrap_socket(s, server_hostname="localhost")
    for _ in range(rng.randrange(1, 4)):
        s.sendall(b"BIG" if name != "streams" else b"big 16000000\n")
    time.sleep(rng.uniform(0.05, 0.5))
    reset(s)


def long_line(rng, target):
    name = rng.choice(["streams", "unix"])
    s = connect(target, name)
    header = rng.choice([b"line\n", b"until\n", b""])
    s.sendall(header + b"z" * rng.randrange(65, 5000) + rng.choice([b"\n", b"END", b""]))
    expect_close(s, f"{name}: a line over the limit")


def exact_short(rng, target):
    name = rng.choice(["streams", "unix"])
    s = connect(target, name)
    n = rng.randrange(1, 3000)
    s.sendall(b"exact %d\n" % n + b"q" * (n - 1))
    s.shutdown(socket.SHUT_WR)
    got = read_to_eof(s)
    if got is None:
        finding(f"{name}: readexactly short by one: no close in {TIMEOUT} s")
    elif got:
        finding(f"{name}: readexactly short by one answered {got[:100]!r}")
    s.close()


def udp_flood(rng, target):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    addr = ("127.0.0.1", int(target.ports["udp"]))
    for _ in range(rng.randrange(10, 500)):
        size = rng.choice([0, 1, 2, 10, 65507]) if rng.random() < 0.9 else rng.randrange(0, 65508)
        try:
            s.sendto(rng.randbytes(size), addr)
        except OSError:
            pass
    s.close()


BEHAVIOURS = [random_bytes, hello_then_garbage, bad_record, tls_close_notify, rst_at_offset,
              tls_garbage_after, tiny_records, rogue_client_cert,
              half_close, flood_echo, slowloris, stall_handshake, never_read, long_line, exact_short, udp_flood]


# Hostile listeners for the target's connections out ----------------------

SENDS = {"tls_good": 6, "tls_big_then_close": 1 << 20}  # what the target must read


def listener_modes(rng, target):
    """mode -> (kind the target connects with, what it must end with or
    None for anything, serve(conn))."""
    def accept_reset(conn):
        reset(conn)

    def garbage(conn):
        conn.sendall(rng.randbytes(300))
        conn.close()

    def garbage_server_hello(conn):
        conn.recv(65536)
        conn.sendall(b"\x16\x03\x03\x00\x40\x02\x00\x00\x3c\x03\x03" + rng.randbytes(60))
        time.sleep(0.1)
        conn.close()

    def wrong_cert(conn):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(target.cert("rogue.pem"), target.cert("rogue.key"))
        try:
            ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    def stall(conn):
        conn.recv(65536)
        time.sleep(4)  # past the 1 s timeout, with room for a loaded machine
        conn.close()

    def tls_server(conn):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(target.cert("server.pem"), target.cert("server.key"))
        return ctx.wrap_socket(conn, server_side=True)

    def good(conn):
        t = tls_server(conn)
        t.sendall(t.recv(100))
        t.close()

    def big_then_close(conn):
        """A handshake, 1 MiB, then close_notify (all of it must arrive)."""
        t = tls_server(conn)
        t.recv(100)
        t.sendall(b"m" * SENDS["tls_big_then_close"])
        t.unwrap().close()

    def reset_after(conn):
        """A handshake, part of a large answer, then a reset."""
        t = tls_server(conn)
        t.recv(100)
        t.sendall(rng.randbytes(rng.randrange(0, 200000)))
        reset(t)

    return {
        "plain_reset": ("plain", None, accept_reset),
        "plain_garbage": ("plain", None, garbage),
        "tls_reset": ("tls", None, accept_reset),
        "tls_garbage": ("tls", None, garbage_server_hello),
        "tls_wrong_cert": ("tls", "SSLCertVerificationError", wrong_cert),
        "tls_stall": ("tls", "ConnectionAbortedError", stall),
        "tls_good": ("tls", "ok", good),
        "tls_reset_after": ("tls", None, reset_after),
        "tls_big_then_close": ("tls", "ok", big_then_close),
    }


class Target:
    def __init__(self, eddy, seed):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:"
                       "detect_stack_use_after_return=0:allocator_may_return_null=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.setdefault("LSAN_OPTIONS", f"suppressions={ROOT}/tools/lsan.supp:print_suppressions=0")
        self.err_path = f"/tmp/net_fuzz.{os.getpid()}.{seed}.err"
        self.err = open(self.err_path, "w+")
        self.proc = subprocess.Popen([eddy, os.path.join(ROOT, "tools/fuzz/net_target.lua")],
                                     stdout=subprocess.PIPE, stderr=self.err, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ports "):
            raise RuntimeError("the target did not start: " + line + self.stderr())
        self.ports = dict(kv.split("=", 1) for kv in line.split()[1:])
        self.control = socket.create_connection(("127.0.0.1", int(self.ports["control"])),
                                                timeout=30)
        self.results = {}
        self.cond = threading.Condition()
        threading.Thread(target=self.read_control, daemon=True).start()

    def cert(self, name):
        return os.path.join(self.ports["certs"], name)

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def read_control(self):
        f = self.control.makefile("rb")
        try:
            for line in f:
                parts = line.decode().split()
                if parts[0] == "result":
                    with self.cond:
                        self.results[int(parts[1])] = (parts[2], float(parts[3]),
                                                       int(parts[4]))
                        self.cond.notify_all()
        except OSError:
            pass

    def connect_out(self, rng, i):
        """Have the target connect to a one-shot hostile listener."""
        modes = listener_modes(rng, self)
        mode = rng.choice(sorted(modes))
        kind, want, serve = modes[mode]
        trace(f"conn {i}: connect out, {mode}")
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        lst.settimeout(TIMEOUT)
        self.control.sendall(b"connect %d %d %s\n" % (i, lst.getsockname()[1], kind.encode()))
        try:
            conn, _ = lst.accept()
            conn.settimeout(TIMEOUT)
            serve(conn)
        except OSError as e:
            finding(f"connect out {mode}: listener: {e!r}")
        finally:
            lst.close()
        with self.cond:
            if not self.cond.wait_for(lambda: i in self.results, 15):
                finding(f"connect out {mode}: no result in 15 s")
                return
            outcome, took, got = self.results[i]
        if want is not None and outcome != want:
            finding(f"connect out {mode}: ended with {outcome}, not {want}")
        if mode in SENDS and outcome == "ok" and got != SENDS[mode]:
            finding(f"connect out {mode}: read {got} bytes of {SENDS[mode]}")
        if mode == "tls_stall" and not 0.9 <= took <= 3.5:
            finding(f"connect out {mode}: ssl_handshake_timeout 1 s fired after {took} s")

    def still_answers(self):
        """Normal requests on every endpoint."""
        asks = [(name, b"ping", b"ping") for name in ECHOES]
        asks += [(name, b"line\nhello\n", b"hello\n") for name in ("streams", "unix")]
        for name, ask, answer in asks:
            s = connect(self, name)
            s.sendall(ask)
            if read_n(s, len(answer)) != answer:
                finding(f"{name}: no longer answers")
            s.close()
        for name in ("tls", "mtls"):
            t = client_context(self, cert=True).wrap_socket(connect(self, name),
                                                            server_hostname="localhost")
            t.sendall(b"ping")
            if read_n(t, 4) != b"ping":
                finding(f"{name}: no longer answers")
            t.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(1)
        for _ in range(5):  # UDP may drop: a few tries
            u.sendto(b"ping", ("127.0.0.1", int(self.ports["udp"])))
            try:
                if u.recv(100) == b"ping":
                    break
            except socket.timeout:
                pass
        else:
            finding("udp: no longer answers")
        u.close()

    def lingerers(self, rng):
        """Connections left open in every state while the target closes
        everything: mid-handshake, mid-write of a reply nobody reads,
        waiting in readline, an idle TLS session, connecting out."""
        socks = []
        for name in ("tls", "mtls"):
            s = connect(self, name)
            s.sendall(client_hello(client_context(self))[:rng.randrange(0, 100)])
            socks.append(s)
            t = client_context(self, cert=True).wrap_socket(connect(self, name),
                                                            server_hostname="localhost")
            t.sendall(b"BIG" if rng.random() < 0.5 else b"idle")
            socks.append(t)
        for kind in (b"plain", b"tls"):  # the target connecting out, to a silent peer
            lst = socket.socket()
            lst.bind(("127.0.0.1", 0))
            lst.listen(1)
            self.control.sendall(b"connect %d %d %s\n" % (10 ** 6, lst.getsockname()[1], kind))
            socks.append(lst)
        for name in ("echo", "streams", "unix", "buffered", "sock"):
            s = connect(self, name)
            s.sendall(rng.choice([b"BIG", b"line\npartial", b"big 9000000\n", b""]))
            socks.append(s)
        return socks

    def finish(self):
        self.control.sendall(b"finish\n")
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            finding("the target did not exit in 30 s after finish")
        err = self.stderr()
        self.err.close()
        os.remove(self.err_path)
        if self.proc.returncode != 0:
            finding(f"the target exited {self.proc.returncode}")
        if any(mark in err for mark in SANITIZER_MARKS) or "FINDING" in err \
                or self.proc.returncode != 0:
            finding("target stderr:\n" + err[-6000:] + "\ntarget stdout:\n" + out[-2000:])


def one(target, seed, i):
    rng = random.Random(seed * 100003 + i)
    try:
        if rng.random() < 0.2:
            target.connect_out(rng, i)
            return
        behaviour = rng.choice(BEHAVIOURS)
        trace(f"conn {i}: {behaviour.__name__}")
        behaviour(rng, target)
    except (OSError, ssl.SSLError, ConnectionError) as e:
        # a hostile peer meets errors: only eddy's side is checked
        trace(f"conn {i}: {e!r}")


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: net_fuzz.py EDDY SEED [CONNS]")
    eddy, seed = sys.argv[1], int(sys.argv[2])
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    target = Target(eddy, seed)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(one, target, seed, i) for i in range(conns)]
        for i, f in enumerate(futures):
            try:
                f.result(timeout=60)
            except Exception as e:  # a bug here, or a hang past every bound
                finding(f"conn {i}: {e!r}")
    if target.proc.poll() is not None:
        finding(f"the target died: exit {target.proc.returncode}")
    else:
        try:
            target.still_answers()
        except OSError as e:
            finding(f"the target no longer answers: {e!r}")
    lingering = []
    if target.proc.poll() is None:
        try:
            lingering = target.lingerers(random.Random(seed))
            time.sleep(0.2)
        except OSError as e:
            finding(f"the target no longer accepts: {e!r}")
    target.finish()
    for s in lingering:
        s.close()
    print(f"ok {seed} {conns}: {len(findings)} findings", flush=True)
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
