"""bench/udp_pingpong.py [N] [SIZE] [--uvloop]: a datagram endpoint echoes
what it receives; a connected endpoint in the same process sends one
SIZE-byte datagram (default 100), and sends it again each time it comes
back, N round trips (default 100000) over 127.0.0.1; prints round trips
per second.  The eddy counterpart is bench/udp_pingpong.lua."""
import asyncio
import sys
import time


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Pinger(asyncio.DatagramProtocol):
    def __init__(self, n, done):
        self.n, self.count, self.done = n, 0, done

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.count += 1
        if self.count == self.n:
            self.done.set_result(True)
        else:
            self.transport.sendto(data)


async def main(n, size):
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(
        Echo, local_addr=("127.0.0.1", 0))
    done = loop.create_future()
    t, _ = await loop.create_datagram_endpoint(
        lambda: Pinger(n, done), remote_addr=echo.get_extra_info("sockname"))
    t0 = time.perf_counter()
    t.sendto(b"x" * size)
    await done
    dt = time.perf_counter() - t0
    t.close()
    echo.close()
    return dt


def run():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100000
    size = int(args[1]) if len(args) > 1 else 100
    name = "asyncio"
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
        name = "uvloop"
    dt = asyncio.run(main(n, size))
    print(f"{name} UDP ping-pong: {n} round trips of {size} bytes in "
          f"{dt:.3f} s: {n / dt:.0f} round trips/s")


if __name__ == "__main__":
    run()
