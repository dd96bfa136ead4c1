"""bench/queue_pingpong.py [N] [--uvloop]: two tasks pass a token back and
forth through two asyncio.Queue()s, N round trips; prints round trips per
second.  The eddy counterpart is bench/queue_pingpong.lua."""
import asyncio
import sys
import time


async def main(n):
    ping, pong = asyncio.Queue(), asyncio.Queue()

    async def responder():
        for _ in range(n):
            pong.put_nowait(await ping.get())

    peer = asyncio.create_task(responder())
    t0 = time.perf_counter()
    for i in range(n):
        ping.put_nowait(i)
        assert await pong.get() == i
    dt = time.perf_counter() - t0
    await peer
    return dt


def run():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 200000
    name = "asyncio"
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
        name = "uvloop"
    dt = asyncio.run(main(n))
    print(f"{name} queue ping-pong: {n} round trips in {dt:.3f} s: "
          f"{n / dt:.0f} round trips/s")


if __name__ == "__main__":
    run()
