"""bench/tls_bulk.py [MIB] [HANDSHAKES] [--uvloop]: the counterpart of
bench/tls_bulk.lua on asyncio (or uvloop): the same transfer and the same
handshakes, TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256 on a P-256 key."""
import asyncio, os, ssl, subprocess, sys, tempfile, time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
mib = int(args[0]) if args else 256
handshakes = int(args[1]) if len(args) > 1 else 300
use_uvloop = "--uvloop" in sys.argv

d = tempfile.mkdtemp()
cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                "-days", "1", "-subj", "/CN=localhost", "-addext",
                "subjectAltName=DNS:localhost"], check=True, capture_output=True)


async def main():
    loop = asyncio.get_running_loop()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context(cafile=cert)
    cctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2

    total = mib * 1024 * 1024
    done = loop.create_future()
    received = 0

    class Sink(asyncio.Protocol):
        def data_received(self, data):
            nonlocal received
            received += len(data)
            if received >= total and not done.done():
                done.set_result(True)

    server = await loop.create_server(Sink, "127.0.0.1", 0, ssl=sctx)
    port = server.sockets[0].getsockname()[1]

    class Source(asyncio.Protocol):
        def __init__(self):
            self.writable = loop.create_future()
            self.writable.set_result(True)
        def pause_writing(self):
            self.writable = loop.create_future()
        def resume_writing(self):
            self.writable.set_result(True)

    t, p = await loop.create_connection(Source, "127.0.0.1", port, ssl=cctx,
                                        server_hostname="localhost")
    chunk = b"x" * 65536
    t0 = time.perf_counter()
    for _ in range(total // len(chunk)):
        if not p.writable.done():
            await p.writable
        t.write(chunk)
    await done
    bulk = time.perf_counter() - t0
    t.close()

    t0 = time.perf_counter()
    for _ in range(handshakes):
        c, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=cctx,
                                            server_hostname="localhost")
        c.abort()
    hs = time.perf_counter() - t0
    server.close()
    return bulk, hs


if use_uvloop:
    import uvloop
    bulk, hs = uvloop.run(main()) if hasattr(uvloop, "run") else uvloop.install() or asyncio.run(main())
else:
    bulk, hs = asyncio.run(main())
subprocess.run(["rm", "-rf", d])
print("%s TLS: %d MiB in %.2f s = %.0f MiB/s; %d handshakes in %.2f s = %.0f/s" % (
    "uvloop" if use_uvloop else "asyncio", mib, bulk, mib / bulk, handshakes, hs, handshakes / hs))
