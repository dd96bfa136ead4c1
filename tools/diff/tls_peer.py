"""The TLS peer both tools/diff/tls.py (asyncio) and tools/diff/tls.lua
(eddy) talk to: plain blocking sockets and Python's ssl module (OpenSSL),
no event loop, so the same bytes reach either harness.  It listens on
127.0.0.1, prints its port, serves one connection the way MODE says and
exits; a MODE c_... is a client of PORT instead.
Usage: python3 tls_peer.py MODE CERTDIR [PORT]"""
import sys

# This directory goes last on the path: its socket.py would shadow the
# module (as in streams.py).
sys.path.append(sys.path.pop(0))
import socket, ssl, time  # noqa: E402

mode, certdir = sys.argv[1], sys.argv[2]
CERTS = {"rogue": "rogue", "expired": "expired"}  # the other modes: server.pem


def context():
    name = CERTS.get(mode, "server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # eddy's mbedTLS has no 1.3
    ctx.load_cert_chain("%s/%s.pem" % (certdir, name), "%s/%s.key" % (certdir, name))
    return ctx


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            break
        data += more
    return data


def client(port):
    """The c_... modes: a client of the harness's server."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    if mode == "c_garbage":  # no TLS at all
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        time.sleep(0.5)
        return
    if mode == "c_silent":  # never starts the handshake
        time.sleep(3)
        return
    ctx = ssl.create_default_context(cafile="%s/%s.pem" % (certdir, "rogue" if mode == "c_rogue" else "ca"))
    try:
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    except ssl.SSLError:  # we refuse the server (c_rogue), or it refuses us
        time.sleep(0.3)
        return
    sock.sendall(b"hello")
    assert recv_exactly(sock, 5) == b"world"
    if mode == "c_close_notify":
        sock.unwrap()
    elif mode == "c_tcp_close":  # the end of TCP, no close_notify
        sock.sendall(b"extra")
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
    elif mode == "c_wait_close":  # until the server's close_notify, then answer it
        assert sock.recv(1024) == b""
        sock.unwrap()


if mode.startswith("c_"):
    client(int(sys.argv[3]))
    sys.exit()

ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
ls.settimeout(10)
print(ls.getsockname()[1], flush=True)
raw, _ = ls.accept()
raw.settimeout(10)

if mode == "garbage":  # no TLS at all
    raw.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    time.sleep(0.5)
    raw.close()
    sys.exit()
if mode == "silent":  # never answers the handshake
    time.sleep(3)
    raw.close()
    sys.exit()
if mode in ("starttls", "starttls_extra"):  # plain first, then TLS when asked
    assert raw.recv(1024) == b"STARTTLS\n"
    # starttls_extra: plain bytes after GO, that the client has read already
    raw.sendall(b"GO\n" + (b"leftover\n" if mode == "starttls_extra" else b""))

try:
    sock = context().wrap_socket(raw, server_side=True)
except (ssl.SSLError, OSError) as e:  # a failed handshake (the client refused us)
    print("handshake failed", type(e).__name__, flush=True)
    sys.exit()

if mode in ("close_notify", "rogue", "expired", "starttls", "starttls_extra"):
    # hello, wait for world, then a clean close: close_notify both ways
    sock.sendall(b"hello")
    assert recv_exactly(sock, 5) == b"world"
    sock.unwrap()
elif mode == "tcp_close":  # hello, then the end of TCP without close_notify
    sock.sendall(b"hello")
    assert recv_exactly(sock, 5) == b"world"
    sock.sendall(b"extra")
    sock.shutdown(socket.SHUT_WR)
    time.sleep(0.5)
elif mode == "garbage_after":  # a handshake, then bytes that are no record
    sock.sendall(b"hello")
    time.sleep(0.2)
    plain = socket.socket(fileno=sock.detach())  # under TLS: a record nobody sealed
    plain.sendall(b"\x17\x03\x03\x00\x07garbage")
    time.sleep(0.5)
elif mode == "truncated":  # the first half of a record, then the end of TCP
    sock.sendall(b"hello")
    time.sleep(0.2)
    plain = socket.socket(fileno=sock.detach())  # under TLS
    plain.sendall(b"\x17\x03\x03\x00\x40" + b"\x00" * 20)
    plain.shutdown(socket.SHUT_WR)
    time.sleep(0.5)
elif mode == "client_closes":  # echo until the client's close_notify, answer it
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)
    sock.unwrap()
elif mode == "slow":  # read nothing for a while, then all of it, then close
    time.sleep(1)
    n = 0
    while True:
        data = sock.recv(65536)
        if not data:
            break
        n += len(data)
    print("read", n, flush=True)
    sock.unwrap()
elif mode == "hold":  # hello, then neither reads nor closes for a while
    sock.sendall(b"hello")
    time.sleep(2)
elif mode in ("lines", "lines_notify"):  # records that split lines, then an end
    for chunk in (b"one\ntw", b"o\nthr", b"ee\n", b"0123", b"45678"):
        sock.sendall(chunk)
        time.sleep(0.05)
    if mode == "lines":  # no close_notify
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
    else:
        sock.unwrap()
sock.close()
