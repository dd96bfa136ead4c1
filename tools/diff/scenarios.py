"""Fixed scenarios replayed on asyncio: timeouts, async generators, the
exception handler.  scenarios.lua is the eddy twin; run.py compares the
traces (python3 scenarios.py -, build/eddy scenarios.lua -).

Each scenario runs in its own asyncio.run and prints "name: event" lines.
"""
import asyncio
import contextlib
import gc
import sys

out = []
SCENARIOS = []


def trace(*a):
    out.append(" ".join(str(x) for x in a))


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def keys(context):
    return ",".join(sorted(k for k in context if k != "source_traceback"))


def handler(loop, context):
    e = context.get("exception")
    trace("  exc", keys(context), type(e).__name__ if e is not None else "-",
          message(context["message"]))


def message(text):
    """The fixed part of a context's message (no reprs)."""
    if text.startswith("Exception in callback"):
        return "Exception in callback"
    return text.split(":")[0].split("<")[0].strip()


async def outcome(coro):
    """Await coro; trace how it ended."""
    try:
        r = await coro
        trace("  ok", r)
    except BaseException as e:
        trace("  raised", type(e).__name__)


async def cancel_when_waiting(coro):
    """Run coro as a task, cancel it once it waits; trace how it ended."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    task.cancel()
    await outcome(task)


def run(main):
    async def wrapper():
        asyncio.get_running_loop().set_exception_handler(handler)
        await main()
    try:
        asyncio.run(wrapper())
    except BaseException as e:
        trace("  run raised", type(e).__name__)


# {============================================ timeouts


@scenario
async def timeout_expires():
    t = asyncio.timeout(0.01)
    async def body():
        async with t:
            await asyncio.sleep(1)
    await outcome(body())
    trace("  expired", t.expired(), "cancelling", asyncio.current_task().cancelling())


@scenario
async def timeout_none_rescheduled():
    loop = asyncio.get_running_loop()
    async def body():
        async with asyncio.timeout(None) as t:
            trace("  when", t.when())
            t.reschedule(loop.time() + 0.01)
            await asyncio.sleep(1)
    await outcome(body())


@scenario
async def timeout_reschedule_past():
    loop = asyncio.get_running_loop()
    async def body():
        async with asyncio.timeout(10) as t:
            t.reschedule(loop.time() - 1)
            trace("  expired before suspending", t.expired())
            await asyncio.sleep(0)
            trace("  not reached")
    await outcome(body())


@scenario
async def timeout_outer_expires():
    inner_t = outer_t = None
    async def body():
        nonlocal inner_t, outer_t
        async with asyncio.timeout(0.01) as outer_t:
            try:
                async with asyncio.timeout(1) as inner_t:
                    await asyncio.sleep(1)
            except BaseException as e:
                trace("  inner raised", type(e).__name__)
                raise
    await outcome(body())
    trace("  inner expired", inner_t.expired(), "outer expired", outer_t.expired())


@scenario
async def timeout_inner_expires():
    async def body():
        async with asyncio.timeout(1) as outer_t:
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(1)
            except TimeoutError:
                trace("  inner TimeoutError")
            await asyncio.sleep(0)
        trace("  outer expired", outer_t.expired())
        return "done"
    await outcome(body())


@scenario
async def timeout_same_deadline_nested():
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.01
    async def body():
        async with asyncio.timeout_at(when):
            try:
                async with asyncio.timeout_at(when):
                    await asyncio.sleep(1)
            except BaseException as e:
                trace("  inner raised", type(e).__name__,
                      "cancelling", asyncio.current_task().cancelling())
                raise
    await outcome(body())
    trace("  cancelling", asyncio.current_task().cancelling())


@scenario
async def timeout_and_cancel_same_iteration():
    loop = asyncio.get_running_loop()
    async def body():
        async with asyncio.timeout(-1):
            await asyncio.sleep(1)
    await cancel_when_waiting(body())     # its timeout fired meanwhile


@scenario
async def timeout_cancel_then_expiry():
    async def body():
        async with asyncio.timeout(0.01) as t:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                trace("  body cancelled, cancelling", asyncio.current_task().cancelling())
                await asyncio.sleep(0.05)   # the timeout expires meanwhile
                trace("  after sleep")
                raise
        trace("  not reached")
    await cancel_when_waiting(body())


@scenario
async def timeout_swallowed():
    async def body():
        async with asyncio.timeout(0.01) as t:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                trace("  caught, cancelling", asyncio.current_task().cancelling())
        trace("  expired", t.expired(), "cancelling", asyncio.current_task().cancelling())
        await asyncio.sleep(0)
        return "went on"
    await outcome(body())


@scenario
async def timeout_other_error():
    async def body():
        async with asyncio.timeout(0.01):
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise ValueError("instead")
    await outcome(body())
    trace("  cancelling", asyncio.current_task().cancelling())


@scenario
async def timeout_no_suspension():
    async def body():
        async with asyncio.timeout(0) as t:
            pass
        trace("  expired", t.expired())
        await asyncio.sleep(0.01)
        return "not cancelled later"
    await outcome(body())


@scenario
async def timeout_zero_suspends():
    async def body():
        async with asyncio.timeout(0):
            await asyncio.sleep(0)
    await outcome(body())


@scenario
async def timeout_reschedule_after_exit():
    async def body():
        async with asyncio.timeout(1) as t:
            pass
        return t
    t = await body()
    try:
        t.reschedule(None)
    except RuntimeError as e:
        trace("  RuntimeError", e)
    async def body2():
        async with asyncio.timeout(0.01) as t:
            await asyncio.sleep(1)
    t2 = None
    async def body3():
        nonlocal t2
        async with asyncio.timeout(0.01) as t2:
            await asyncio.sleep(1)
    await outcome(body3())
    try:
        t2.reschedule(None)
    except RuntimeError as e:
        trace("  RuntimeError", e)


@scenario
async def timeout_body_done_after_expiry():
    # The timer fires in the iteration in which the body's future is done:
    # the task is already scheduled, the cancel is delivered at its step.
    loop = asyncio.get_running_loop()
    async def body():
        fut = loop.create_future()
        async with asyncio.timeout(10) as t:
            loop.call_soon(fut.set_result, "value")
            loop.call_soon(t.reschedule, loop.time() - 1)
            r = await fut
            trace("  got", r)
            await asyncio.sleep(0)
        return "end"
    await outcome(body())


@scenario
async def timeout_uncancel_clears_pending_cancel():
    # Expired but the body never suspended again: leaving the scope
    # uncancels; 3.13 also forgets the pending cancel (_must_cancel).
    loop = asyncio.get_running_loop()
    async def body():
        fut = loop.create_future()
        async with asyncio.timeout(10) as t:
            loop.call_soon(fut.set_result, "value")
            await asyncio.sleep(0)       # fut done now, task woken later
            loop.call_soon(t.reschedule, loop.time() - 1)
            await asyncio.sleep(0)
        return "end"
    await outcome(body())


@scenario
async def timeout_reschedule_while_expiring():
    async def body():
        async with asyncio.timeout(0.01) as t:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                trace("  expired inside", t.expired())
                try:
                    t.reschedule(None)
                except RuntimeError as e:
                    trace("  RuntimeError", e)
                raise
    await outcome(body())


@scenario
async def timeout_cancelled_from_outside():
    t = None
    async def body():
        nonlocal t
        async with asyncio.timeout(1) as t:
            await asyncio.sleep(1)
    await cancel_when_waiting(body())
    trace("  expired", t.expired(), "when cleared", t.when() is None)


@scenario
async def timeout_three_levels_same_deadline():
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.01
    async def level(n):
        try:
            async with asyncio.timeout_at(when):
                if n == 0:
                    await asyncio.sleep(1)
                else:
                    await level(n - 1)
        except BaseException as e:
            trace("  level", n, type(e).__name__, asyncio.current_task().cancelling())
            raise
    await outcome(level(2))


@scenario
async def timeout_reschedule_none_then_later():
    loop = asyncio.get_running_loop()
    async def body():
        async with asyncio.timeout(0.01) as t:
            t.reschedule(None)
            trace("  when", t.when())
            await asyncio.sleep(0.03)
            t.reschedule(loop.time() + 0.01)
            await asyncio.sleep(1)
    await outcome(body())


@scenario
async def timeout_around_taskgroup():
    async def child(n):
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            trace("  a child cancelled")  # in no set order (3.13: a set)
            raise
    async def body():
        async with asyncio.timeout(0.01):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(child(1))
                tg.create_task(child(2))
                await asyncio.sleep(1)
    await outcome(body())
    trace("  cancelling", asyncio.current_task().cancelling())


@scenario
async def timeout_inside_taskgroup_child():
    async def child():
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    async def body():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
            await asyncio.sleep(0.1)
            trace("  body not cancelled")
    try:
        await body()
    except BaseException as e:
        trace("  raised", type(e).__name__, [type(x).__name__ for x in getattr(e, "exceptions", [])])


# }============================================
# {============================================ async generators


@scenario
async def agen_break_closes():
    async def gen():
        try:
            for i in range(5):
                yield i
        finally:
            trace("  finally")
            await asyncio.sleep(0)
            trace("  finally after sleep")
    async with contextlib.aclosing(gen()) as g:     # Lua's for closes its iterator
        async for i in g:
            trace("  got", i)
            if i == 1:
                break
    trace("  after loop")


@scenario
async def agen_dropped_suspended():
    async def gen():
        try:
            yield 1
            yield 2
        finally:
            trace("  finally, in a task:", asyncio.current_task() is not None)
    g = gen()
    trace("  got", await g.__anext__())
    del g
    gc.collect()
    trace("  collected")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    trace("  after two iterations")


@scenario
async def agen_shutdown():
    async def gen(name, fail):
        try:
            yield name
        finally:
            trace("  finally", name)
            await asyncio.sleep(0)
            if fail:
                raise ValueError(name)
    global kept
    kept = gen("a", True)
    trace("  got", await kept.__anext__())
    trace("  main returns")


@scenario
async def agen_aclose_ignores_exit():
    async def gen():
        try:
            yield 1
        finally:
            yield 2
    g = gen()
    await g.__anext__()
    await outcome(g.aclose())


@scenario
async def agen_athrow():
    async def gen():
        try:
            yield 1
        except ValueError:
            trace("  caught in gen")
            yield "after throw"
        yield "last"
    g = gen()
    await g.__anext__()
    await outcome(g.athrow(ValueError("x")))
    await outcome(g.__anext__())
    await outcome(g.__anext__())
    await outcome(g.__anext__())


@scenario
async def agen_athrow_uncaught():
    async def gen():
        try:
            yield 1
        finally:
            trace("  finally")
    g = gen()
    await g.__anext__()
    await outcome(g.athrow(ValueError("x")))
    await outcome(g.__anext__())


@scenario
async def agen_aclose_not_started():
    async def gen():
        trace("  body ran")
        yield 1
    g = gen()
    await outcome(g.aclose())
    await outcome(g.__anext__())


@scenario
async def agen_running():
    async def gen():
        await asyncio.sleep(0.01)
        yield 1
    g = gen()
    t = asyncio.create_task(g.__anext__())
    await asyncio.sleep(0)
    await outcome(g.__anext__())
    await outcome(g.aclose())
    await t


@scenario
async def agen_error_in_body():
    async def gen():
        yield 1
        raise ValueError("body")
    g = gen()
    await g.__anext__()
    await outcome(g.__anext__())
    await outcome(g.__anext__())


@scenario
async def agen_aclose_error_in_finally():
    async def gen():
        try:
            yield 1
        finally:
            raise ValueError("cleanup")
    g = gen()
    await g.__anext__()
    await outcome(g.aclose())


@scenario
async def agen_asend():
    async def gen():
        x = yield "first"
        trace("  got sent", x)
        y = yield "second"
        trace("  got sent", y)
    g = gen()
    await outcome(g.asend(None))
    await outcome(g.asend("a"))
    await outcome(g.asend("b"))


@scenario
async def agen_after_aclose():
    async def gen():
        yield 1
        yield 2
    g = gen()
    await g.__anext__()
    await outcome(g.aclose())
    await outcome(g.__anext__())
    await outcome(g.aclose())
    await outcome(g.athrow(ValueError("late")))


@scenario
async def agen_aclose_while_sleeping():
    async def gen():
        try:
            yield 1
            await asyncio.sleep(0.02)
            yield 2
        finally:
            trace("  finally")
    g = gen()
    await g.__anext__()
    t = asyncio.create_task(g.__anext__())
    await asyncio.sleep(0)
    await outcome(g.aclose())
    await outcome(t)
    await outcome(g.aclose())


@scenario
async def agen_dropped_not_started():
    async def gen():
        trace("  body ran")
        yield 1
    g = gen()
    del g
    gc.collect()
    await asyncio.sleep(0)
    trace("  done")


@scenario
async def agen_shutdown_twice_and_late():
    async def gen():
        try:
            yield 1
        finally:
            trace("  finally")
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    global late
    late = gen()
    trace("  got", await late.__anext__())
    await loop.shutdown_asyncgens()
    trace("  after second shutdown")
    await late.aclose()


# }============================================
# {============================================ the exception handler


@scenario
async def exc_callback_raises():
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: int("x"))
    await asyncio.sleep(0)


@scenario
async def exc_done_callback_raises():
    loop = asyncio.get_running_loop()
    f = loop.create_future()
    def cb(fut):
        raise ValueError("in done callback")
    f.add_done_callback(cb)
    f.set_result(1)
    await asyncio.sleep(0)


@scenario
async def exc_future_never_retrieved():
    loop = asyncio.get_running_loop()
    f = loop.create_future()
    f.set_exception(ValueError("lost"))
    del f
    gc.collect()


@scenario
async def exc_task_never_retrieved():
    async def fail():
        raise ValueError("lost")
    t = asyncio.create_task(fail())
    await asyncio.sleep(0)
    del t
    gc.collect()


@scenario
async def exc_task_destroyed_pending():
    loop = asyncio.get_running_loop()
    async def wait():
        await loop.create_future()
    t = asyncio.create_task(wait())
    await asyncio.sleep(0)
    del t
    gc.collect()


@scenario
async def exc_data_received_raises():
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    class P(asyncio.Protocol):
        def data_received(self, data):
            raise ValueError("bad data")
        def connection_lost(self, exc):
            lost.set_result(type(exc).__name__)
    srv = await loop.create_server(P, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"x")
    trace("  connection_lost", await asyncio.wait_for(lost, 5))
    w.close()
    srv.close()
    await srv.wait_closed()


@scenario
async def exc_peer_reset():
    # A reset from the peer is not reported to the handler (asyncio's
    # _FATAL_ERROR_IGNORE); connection_lost gets the error.
    import socket
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    got = loop.create_future()
    class P(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"unread by the peer")
        def data_received(self, data):
            got.set_result(True)
        def connection_lost(self, exc):
            lost.set_result(type(exc).__name__)
    srv = await loop.create_server(P, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    s = socket.socket()
    s.connect(("127.0.0.1", port))
    s.sendall(b"x")
    await asyncio.wait_for(got, 5)
    await asyncio.sleep(0.05)       # our data has reached the peer
    s.close()                       # unread data: the kernel sends a reset
    trace("  connection_lost", await asyncio.wait_for(lost, 5))
    srv.close()
    await srv.wait_closed()


@scenario
async def exc_handler_raises():
    loop = asyncio.get_running_loop()
    def bad(loop, context):
        raise RuntimeError("handler broke")
    loop.set_exception_handler(bad)
    ok = True
    try:
        loop.call_exception_handler({"message": "test"})
    except BaseException:
        ok = False
    trace("  call_exception_handler returned", ok)
    loop.set_exception_handler(handler)


@scenario
async def exc_debug_source_traceback():
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    got = []
    loop.set_exception_handler(lambda l, c: got.append("source_traceback" in c))
    loop.call_soon(lambda: int("x"))
    await asyncio.sleep(0)
    f = loop.create_future()
    f.set_exception(ValueError("lost"))
    del f
    gc.collect()
    async def wait():
        await loop.create_future()
    t = asyncio.create_task(wait())
    await asyncio.sleep(0)
    del t
    gc.collect()
    trace("  source_traceback", got)
    loop.set_debug(False)


# }============================================


for fn in SCENARIOS:
    trace(fn.__name__)
    run(fn)
print("\n".join(out))
