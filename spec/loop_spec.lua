-- The event loop: scheduling, timers, running and stopping, the exception
-- handler, debug mode (API.md §2-4).  Descriptions name the CPython test
-- (Lib/test/test_asyncio) a case ports, where there is one.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local run_collecting = require("eddy.test").run_collecting
local checks = require "support.checks"
local raises, argerror, with_loop = checks.raises, checks.argerror, checks.with_loop

-- A recorder: log(x) appends x; log.list is what was recorded.
local function recorder()
  local list = {}
  return setmetatable({list = list}, {__call = function(_, v) list[#list + 1] = v end})
end

-- Busy-wait (no suspension) for 'seconds' on the loop's clock.
local function busy(loop, seconds)
  local t0 = loop:time()
  while loop:time() - t0 < seconds do end
end

describe("call_soon", function()
  it("runs callbacks FIFO with their arguments (test_call_soon)", async(function(loop)
    local seen = {}
    for i = 1, 5 do loop:call_soon(function(a, b) seen[#seen + 1] = a .. b end, i, "x") end
    eddy.sleep(0)
    eddy.sleep(0)
    assert.same({"1x", "2x", "3x", "4x", "5x"}, seen)
  end))

  it("returns a Handle whose cancel() prevents the call (test__add_callback_cancelled_handle)",
     async(function(loop)
    local log = recorder()
    local h = loop:call_soon(log, "cancelled")
    loop:call_soon(log, "kept")
    assert.is_false(h:cancelled())
    h:cancel()
    h:cancel()  -- idempotent
    assert.is_true(h:cancelled())
    eddy.sleep(0)
    eddy.sleep(0)
    assert.same({"kept"}, log.list)
    assert.matches("^<Handle cancelled", tostring(h))
  end))

  it("accepts any callable: a table with __call (test_handle)", async(function(loop)
    local got
    local callable = setmetatable({}, {__call = function(self, a) got = a end})
    loop:call_soon(callable, 42)
    eddy.sleep(0)
    eddy.sleep(0)
    assert.equal(42, got)
  end))

  it("rejects a non-callable with an argument error (test_call_soon_non_callable)",
     with_loop(function(loop)
    argerror(function() loop:call_soon(nil) end, 1, "call_soon")
    argerror(function() loop:call_soon(42) end, 1, "call_soon")
    argerror(function() loop:call_soon({}) end, 1, "call_soon")
    argerror(function() loop:call_soon() end, 1, "call_soon")
    argerror(function() loop.call_soon(42, print) end, 1, "call_soon")
  end))

  it("runs callbacks scheduled during a batch in the next iteration (test__run_once_schedule_handle)",
     with_loop(function(loop)
    local log = recorder()
    loop:call_soon(function()
      log("a")
      loop:call_soon(log, "c")  -- joins the next batch
    end)
    loop:call_soon(function() log("b") loop:stop() end)
    checks.run_forever(loop)
    assert.same({"a", "b"}, log.list)
    loop:call_soon(function() loop:stop() end)
    checks.run_forever(loop)
    assert.same({"a", "b", "c"}, log.list)
  end))

  it("stop() takes effect after the current batch (test_run_once)", with_loop(function(loop)
    local log = recorder()
    loop:call_soon(function() log(1) loop:stop() end)
    loop:call_soon(log, 2)
    loop:call_soon(log, 3)
    checks.run_forever(loop)
    assert.same({1, 2, 3}, log.list)
    assert.is_false(loop:is_running())
  end))

  it("runs one iteration when stop() came before run_forever (test_run_forever_pre_stopped)",
     with_loop(function(loop)
    local log = recorder()
    loop:call_soon(log, "ran")
    loop:stop()
    checks.run_forever(loop)
    assert.same({"ran"}, log.list)
  end))

  it("goes on after a callback raises; the error reaches the handler (test_callback_with_exception)",
     function()
    local log = recorder()
    local reports = run_collecting(function(loop)
      loop:call_soon(function() error(errors.ValueError("from callback")) end)
      loop:call_soon(log, "after")
      eddy.sleep(0)
      eddy.sleep(0)
    end)
    assert.same({"after"}, log.list)
    assert.equal(1, #reports)
    assert.matches("^Exception in callback", reports[1].message)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    assert.equal("userdata", type(reports[1].handle))
  end)

  it("a burst of 100,000 callbacks leaves no ready queue of its size behind", function()
    local loop = eddy.new_event_loop()
    local function heap_kb()
      collectgarbage()
      collectgarbage()
      return collectgarbage("count")
    end
    local ran = 0
    local function count() ran = ran + 1 end
    loop:run_until_complete(loop:create_task(function() eddy.sleep(0) end))
    local before = heap_kb()
    loop:run_until_complete(loop:create_task(function()
      for _ = 1, 100000 do loop:call_soon(count) end
      eddy.sleep(0)
      eddy.sleep(0)
    end))
    assert.equal(100000, ran)
    -- the ring of 131,072 slots took 2 MB
    local grown = heap_kb() - before
    loop:close()
    assert.is_true(grown < 256, string.format("the heap kept %.0f KiB", grown))
  end)
end)

describe("call_soon_threadsafe", function()
  it("schedules like call_soon from the loop's own thread (test_call_soon_threadsafe_same_thread)",
     async(function(loop)
    local log = recorder()
    loop:call_soon(log, 1)
    local h = loop:call_soon_threadsafe(log, 2)
    loop:call_soon(log, 3)
    loop:call_soon_threadsafe(log, 4):cancel()
    assert.matches("^<Handle", tostring(h))
    eddy.sleep(0)
    eddy.sleep(0)
    assert.same({1, 2, 3}, log.list)
  end))

  it("wakes a loop waiting for a far timer (test_call_soon_threadsafe)", with_loop(function(loop)
    local log = recorder()
    local far = loop:call_later(30, log, "far")
    -- Scheduled from a timer while the loop polls: it must run promptly.
    loop:call_later(0.01, function()
      loop:call_soon_threadsafe(function() log("woken") loop:stop() end)
    end)
    local t0 = loop:time()
    checks.run_forever(loop, 5)
    assert.same({"woken"}, log.list)
    assert.is_true(loop:time() - t0 < 1)
    far:cancel()
  end))

  it("rejects a non-callable", with_loop(function(loop)
    argerror(function() loop:call_soon_threadsafe("x") end, 1, "call_soon_threadsafe")
  end))
end)

describe("timers", function()
  it("run by time, then FIFO for equal times (test_time_and_call_at)", async(function(loop)
    local log = recorder()
    local now = loop:time()
    loop:call_at(now + 0.03, log, "c")
    loop:call_later(0.01, log, "a1")
    loop:call_at(now + 0.02, log, "b")
    local when = now + 0.01
    loop:call_at(when, log, "x1")
    loop:call_at(when, log, "x2")
    loop:call_at(when, log, "x3")
    eddy.sleep(0.06)
    -- a1's when is now' + 0.01 with now' >= now, so it comes after x1..x3
    -- only if its time is later; compare by position among equal times.
    local pos = {}
    for i, v in ipairs(log.list) do pos[v] = i end
    assert.equal(6, #log.list)
    assert.is_true(pos.x1 < pos.x2 and pos.x2 < pos.x3)
    assert.is_true(pos.x3 < pos.b and pos.a1 < pos.b and pos.b < pos.c)
  end))

  it("with equal delays run in scheduling order", async(function(loop)
    local log = recorder()
    local when = loop:time() + 0.005
    for i = 1, 50 do loop:call_at(when, log, i) end
    eddy.sleep(0.03)
    for i = 1, 50 do assert.equal(i, log.list[i]) end
  end))

  it("never run earlier than their time (test_call_later, test_timeout_rounding)",
     async(function(loop)
    local early = {}
    local pending = 0
    for _, delay in ipairs {0.0001, 0.0005, 0.001, 0.0015, 0.004, 0.0123, 0.02} do
      pending = pending + 1
      local h
      h = loop:call_later(delay, function()
        if loop:time() < h:when() then early[#early + 1] = delay end
        pending = pending - 1
      end)
    end
    eddy.sleep(0.05)
    assert.equal(0, pending)
    assert.same({}, early)
  end))

  it("call_at runs at the given loop time", async(function(loop)
    local at
    local when = loop:time() + 0.01
    local h = loop:call_at(when, function() at = loop:time() end)
    assert.equal(when, h:when())
    eddy.sleep(0.03)
    assert.is_true(at >= when)
  end))

  it("TimerHandle: when(), cancel(), cancelled() (test_when, test_timer)", async(function(loop)
    local log = recorder()
    local before = loop:time()
    local h = loop:call_later(0.01, log, "cancelled")
    assert.is_true(h:when() >= before + 0.01)
    assert.matches("^<TimerHandle", tostring(h))
    h:cancel()
    assert.is_true(h:cancelled())
    loop:call_later(0.01, log, "kept")
    eddy.sleep(0.03)
    assert.same({"kept"}, log.list)
  end))

  it("many cancelled timers do not disturb the rest (test__run_once_cancelled_event_cleanup)",
     async(function(loop)
    local log = recorder()
    local handles = {}
    for i = 1, 300 do handles[i] = loop:call_later(0.01 + i / 1e5, log, i) end
    for i = 1, 300 do
      if i % 3 ~= 0 then handles[i]:cancel() end
    end
    eddy.sleep(0.05)
    assert.equal(100, #log.list)
    for i, v in ipairs(log.list) do assert.equal(3 * i, v) end
  end))

  it("treat negative delays as now, ordered by when (test_call_later_negative_delays)",
     async(function(loop)
    local log = recorder()
    loop:call_later(-1, log, 1)
    loop:call_later(-2, log, 2)
    loop:call_at(loop:time() - 10, log, 3)
    eddy.sleep(0.01)
    assert.same({3, 2, 1}, log.list)
  end))

  it("reject NaN delays with ValueError", with_loop(function(loop)
    raises(function() loop:call_later(0 / 0, print) end, errors.ValueError)
    raises(function() loop:call_at(0 / 0, print) end, errors.ValueError)
  end))

  it("accept huge delays (the timer just never fires)", async(function(loop)
    local log = recorder()
    local h1 = loop:call_later(1e300, log, "huge")
    local h2 = loop:call_later(math.huge, log, "inf")
    local h3 = loop:call_at(2 ^ 62, log, "far")
    loop:call_later(0.001, log, "soon")
    eddy.sleep(0.02)
    assert.same({"soon"}, log.list)
    assert.equal(math.huge, h2:when())
    h1:cancel(); h2:cancel(); h3:cancel()
  end))

  it("a timer due at a poll runs before what that poll's I/O callbacks schedule (_run_once)", async(function(loop)
    -- asyncio's _run_once makes the due timers ready after the poll's I/O
    -- callbacks and before anything those schedule with call_soon
    local log = recorder()
    local data = loop:create_future()
    local srv = loop:create_server(function()
      return {data_received = function()
        log("data")
        loop:call_soon(function() log("soon from data"); data:set_result() end)
      end}
    end, "127.0.0.1", 0)
    local client = loop:create_connection(function() return {} end, "127.0.0.1",
                                          srv.sockets[1]:getsockname()[2])
    eddy.sleep(0.01)  -- accepted
    loop:call_soon(function()
      client:write("x")
      loop:call_later(0.001, log, "timer")
      busy(loop, 0.02)  -- both are due when the loop polls next
    end)
    eddy.wait_for(data, 5)
    assert.same({"data", "timer", "soon from data"}, log.list)
    client:close()
    srv:close()
  end))

  it("a task a poll's read wakes steps after a timer due at that poll (_run_once)", async(function(loop)
    -- the reader's waiter is completed in data_received; asyncio steps the
    -- task in the next iteration, after the timers due at the poll
    local log = recorder()
    local read = loop:create_future()
    local srv = eddy.start_server(function(reader, writer)
      log("reading")
      log("read " .. reader:read(10))
      read:set_result()
      writer:close()
    end, "127.0.0.1", 0)
    local _, client = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    eddy.sleep(0.01)  -- the handler waits in read
    loop:call_soon(function()
      client:write(string.rep("y", 8192))  -- a large read: the immediate-step path
      loop:call_later(0.001, log, "timer")
      busy(loop, 0.02)
    end)
    eddy.wait_for(read, 5)
    assert.same({"reading", "timer", "read " .. string.rep("y", 10)}, log.list)
    client:close()
    srv:close()
  end))

  -- asyncio's _run_once makes due timers ready at the start of an
  -- iteration; a run that stop() ended has no further iteration, so a
  -- timer due meanwhile waits in the heap, behind what is scheduled before
  -- the next run.
  it("due after stop() ends a run, wait for the next run's first iteration (_run_once)",
     with_loop(function(loop)
    local log = recorder()
    loop:call_soon(function()
      loop:call_at(loop:time() - 1, log, "timer")
      loop:stop()
    end)
    loop:run_forever()
    assert.same({}, log.list)
    loop:call_soon(log, "call_soon between the runs")
    loop:call_soon(loop.stop, loop)
    loop:run_forever()
    assert.same({"call_soon between the runs", "timer"}, log.list)
  end))

  -- The ready queue is a ring: when due timers fill it while its head is
  -- not at the start, it is rebuilt in a new table, which the running
  -- turn must pick up before taking its next entry.
  it("keep their order when more fall due at once than the wrapped ready queue holds",
     with_loop(function(loop)
    local log = recorder()
    loop:call_soon(function()
      for i = 1, 3 do loop:call_soon(log, "soon " .. i) end
      for i = 1, 100 do loop:call_at(loop:time() - 1, log, "timer " .. i) end
      loop:call_at(loop:time() - 1, loop.stop, loop)
    end)
    loop:run_forever()
    local expected = {"soon 1", "soon 2", "soon 3"}
    for i = 1, 100 do expected[#expected + 1] = "timer " .. i end
    assert.same(expected, log.list)
  end))

  it("reject bad arguments with argument errors", with_loop(function(loop)
    argerror(function() loop:call_later("soon", print) end, 1, "call_later")
    argerror(function() loop:call_later(nil, print) end, 1, "call_later")
    argerror(function() loop:call_later(1, nil) end, 2, "call_later")
    argerror(function() loop:call_later(1) end, 2, "call_later")
    argerror(function() loop:call_at({}, print) end, 1, "call_at")
    argerror(function() loop:call_at(1, 2) end, 2, "call_at")
  end))
end)

describe("time()", function()
  it("is monotonic (test_time_and_call_at)", with_loop(function(loop)
    local prev = loop:time()
    assert.equal("number", type(prev))
    for _ = 1, 10000 do
      local t = loop:time()
      assert(t >= prev, "time() went backwards")
      prev = t
    end
  end))

  it("has sub-millisecond resolution", with_loop(function(loop)
    local t0 = loop:time()
    local t1 = t0
    while t1 == t0 do t1 = loop:time() end
    assert.is_true(t1 - t0 < 0.001)
  end))

  it("follows the wall clock's pace during a sleep", async(function(loop)
    local t0 = loop:time()
    eddy.sleep(0.02)
    local dt = loop:time() - t0
    assert.is_true(dt >= 0.02 and dt < 2)
  end))
end)

describe("run_until_complete", function()
  it("runs a function as a task and returns all its results (test_run_until_complete)",
     with_loop(function(loop)
    local a, b, c = loop:run_until_complete(function()
      eddy.sleep(0.001)
      return 1, nil, "three"
    end)
    assert.equal(1, a)
    assert.is_nil(b)
    assert.equal("three", c)
    assert.is_false(loop:is_running())
  end))

  it("waits for a future completed by a timer", with_loop(function(loop)
    local fut = loop:create_future()
    loop:call_later(0.01, fut.set_result, fut, "done", 2)
    local t0 = loop:time()
    assert.same({"done", 2}, {loop:run_until_complete(fut)})
    assert.is_true(loop:time() - t0 >= 0.01)
  end))

  it("returns a done future's result at once", with_loop(function(loop)
    local fut = loop:create_future()
    fut:set_result("already")
    assert.equal("already", loop:run_until_complete(fut))
  end))

  it("re-raises the error of the task (test_run_until_complete_baseexception)",
     with_loop(function(loop)
    local err = raises(loop.run_until_complete, errors.ValueError, loop, function()
      error(errors.ValueError("inside"))
    end)
    assert.equal("inside", err.message)
  end))

  it("test_run_forever_keyboard_interrupt: a task's KeyboardInterrupt leaves the loop, "
     .. "and nothing reports it as never retrieved", function()
    local loop = eddy.new_event_loop()
    local reported = {}
    loop:set_exception_handler(function(_, ctx) reported[#reported + 1] = ctx.message end)
    raises(loop.run_until_complete, errors.KeyboardInterrupt, loop, function()
      error(errors.KeyboardInterrupt())
    end)
    loop:close()
    collectgarbage()
    collectgarbage()
    assert.same({}, reported)
  end)

  it("accepts a coroutine object", with_loop(function(loop)
    local co = coroutine.create(function(x) eddy.sleep(0) return x * 2 end)
    assert.equal(84, loop:run_until_complete(loop:create_task(co, 42)))
  end))

  it("rejects what is not awaitable (test_run_until_complete_type_error)", with_loop(function(loop)
    argerror(function() loop:run_until_complete("nope") end, 1, "run_until_complete")
    argerror(function() loop:run_until_complete() end, 1, "run_until_complete")
  end))

  it("rejects a future of another loop with ValueError (test_run_until_complete_loop)",
     with_loop(function(loop)
    local other = eddy.new_event_loop()
    local fut = other:create_future()
    raises(loop.run_until_complete, errors.ValueError, loop, fut)
    other:close()
  end))

  it("raises RuntimeError when stop() comes first (test_run_until_complete_stopped)",
     with_loop(function(loop)
    local fut = loop:create_future()
    loop:call_soon(loop.stop, loop)
    raises(loop.run_until_complete, {errors.RuntimeError, "Event loop stopped before Future completed."},
           loop, fut)
  end))

  -- asyncio's run_until_complete adds _run_until_complete_cb, which calls
  -- stop(), as a done callback: the loop stops one iteration after the
  -- future is done, so what was ready by then still runs.
  it("stops one iteration after the future is done (_run_until_complete_cb)", with_loop(function(loop)
    local log = recorder()
    local fut = loop:create_future()
    loop:call_soon(function()
      fut:set_result("r")
      loop:call_soon(log, "scheduled after set_result")
    end)
    loop:call_soon(function() loop:call_soon(log, "scheduled by the next callback") end)
    assert.equal("r", loop:run_until_complete(fut))
    assert.same({"scheduled after set_result", "scheduled by the next callback"}, log.list)
    -- what the stopping iteration scheduled waits for the next run
    loop:call_soon(loop.stop, loop)
    loop:run_forever()
  end))

  it("runs one iteration for a future already done (_run_until_complete_cb)", with_loop(function(loop)
    local log = recorder()
    local fut = loop:create_future()
    fut:set_result("already")
    loop:call_soon(log, "ready")
    loop:call_soon(function() loop:call_soon(log, "next iteration") end)
    assert.equal("already", loop:run_until_complete(fut))
    assert.same({"ready"}, log.list)
    loop:call_soon(loop.stop, loop)
    loop:run_forever()
    assert.same({"ready", "next iteration"}, log.list)
  end))

  it("cannot nest inside a running loop (test_run_until_complete_nesting)", async(function(loop)
    local ran = false
    raises(loop.run_until_complete, {errors.RuntimeError, "already running"}, loop,
           function() ran = true end)
    raises(loop.run_forever, {errors.RuntimeError, "already running"}, loop)
    eddy.sleep(0)
    assert.is_false(ran, "the refused function must not become a task")
  end))

  it("cannot run another loop inside a running one (test_running_loop_within_a_loop)",
     async(function(loop)
    local other = eddy.new_event_loop()
    raises(other.run_until_complete, errors.RuntimeError, other, function() end)
    raises(other.run_forever, errors.RuntimeError, other)
    other:close()
  end))
end)

describe("is_running, is_closed, close", function()
  it("is_running is true only inside the loop", with_loop(function(loop)
    assert.is_false(loop:is_running())
    local inside
    loop:run_until_complete(function() inside = loop:is_running() end)
    assert.is_true(inside)
    assert.is_false(loop:is_running())
  end))

  it("close() is idempotent and is_closed() reports it (test_close)", function()
    local loop = eddy.new_event_loop()
    assert.is_false(loop:is_closed())
    loop:close()
    assert.is_true(loop:is_closed())
    loop:close()
    assert.is_true(loop:is_closed())
  end)

  it("close() drops pending callbacks and timers", function()
    local loop = eddy.new_event_loop()
    local ran = false
    loop:call_soon(function() ran = true end)
    loop:call_later(0, function() ran = true end)
    loop:close()
    assert.is_false(ran)
  end)

  it("cannot close a running loop (test_close_running_event_loop)", async(function(loop)
    raises(loop.close, {errors.RuntimeError, "Cannot close a running event loop"}, loop)
    assert.is_false(loop:is_closed())
  end))

  it("a closed loop refuses work with RuntimeError 'Event loop is closed', but makes futures and takes settings (test_close)", function()
    local loop = eddy.new_event_loop()
    loop:close()
    local closed = {errors.RuntimeError, "Event loop is closed"}
    raises(loop.call_soon, closed, loop, print)
    raises(loop.call_soon_threadsafe, closed, loop, print)
    raises(loop.call_later, closed, loop, 1, print)
    raises(loop.call_at, closed, loop, 1, print)
    raises(loop.create_task, closed, loop, print)
    raises(loop.run_forever, closed, loop)
    raises(loop.run_until_complete, closed, loop, print)
    -- as test_close: a future is still made (asyncio's create_future has
    -- no closed check), and running the loop for it is refused
    local f = loop:create_future()
    assert.is_false(f:done())
    raises(loop.run_until_complete, closed, loop, f)
    f:set_result(1)  -- no done callback to schedule: nothing refused
    assert.equal(1, f:result())
    -- so are the settings that need no running: asyncio checks nothing
    loop:set_task_factory(function(l, fn) return eddy.Task(l, fn) end)
    assert.is_function(loop:get_task_factory())
    loop:set_task_factory(nil)
    local pool = eddy.ThreadPoolExecutor(1)
    loop:set_default_executor(pool)
    pool:shutdown()
    -- harmless queries keep working
    assert.equal("number", type(loop:time()))
    assert.is_false(loop:is_running())
    assert.is_false(loop:get_debug() == nil)
  end)

  it("a future of a closed loop cannot be awaited at top level (test_run_until_complete_loop_orphan_future_close_loop)",
     function()
    local loop = eddy.new_event_loop()
    local fut = loop:create_future()
    loop:close()
    raises(fut.await, {errors.RuntimeError, "Event loop is closed"}, fut)
  end)
end)

describe("getting a loop", function()
  it("get_running_loop raises RuntimeError outside a running loop", function()
    raises(eddy.get_running_loop, {errors.RuntimeError, "no running event loop"})
  end)

  it("get_running_loop and get_event_loop return the running loop (test_get_event_loop_returns_running_loop)",
     async(function(loop)
    assert.equal(loop, eddy.get_running_loop())
    assert.equal(loop, eddy.get_event_loop())
    local in_callback
    loop:call_soon(function() in_callback = eddy.get_running_loop() end)
    eddy.sleep(0)
    eddy.sleep(0)
    assert.equal(loop, in_callback)
  end))

  it("new_event_loop makes distinct loops (test_new_event_loop)", function()
    local a, b = eddy.new_event_loop(), eddy.new_event_loop()
    assert.are_not.equal(a, b)
    assert.matches("^<Loop idle", tostring(a))
    a:close()
    b:close()
  end)

  it("set_event_loop sets what get_event_loop returns (test_set_event_loop)", function()
    local saved = eddy.get_event_loop()
    local loop = eddy.new_event_loop()
    eddy.set_event_loop(loop)
    assert.equal(loop, eddy.get_event_loop())
    assert.equal(loop, eddy.get_event_loop())
    -- nil forgets it: the next get_event_loop creates a new one
    eddy.set_event_loop(nil)
    local fresh = eddy.get_event_loop()
    assert.are_not.equal(loop, fresh)
    eddy.set_event_loop(saved)
    assert.equal(saved, eddy.get_event_loop())
    fresh:close()
    loop:close()
    argerror(function() eddy.set_event_loop(42) end, 1, "set_event_loop")
  end)
end)

describe("create_future, create_task and the task factory", function()
  it("create_future makes a pending Future of this loop", async(function(loop)
    local fut = loop:create_future()
    assert.is_true(eddy.isfuture(fut))
    assert.is_false(fut:done())
    assert.equal(loop, fut:get_loop())
  end))

  it("create_task runs fn(...) as a task (test_create_task)", async(function(loop)
    local task = loop:create_task(function(a, b) eddy.sleep(0) return a + b end, 2, 3)
    assert.is_true(eddy.isfuture(task))
    assert.equal(loop, task:get_loop())
    assert.equal(5, task:await())
    argerror(function() loop:create_task(42) end, 1, "create_task")
    argerror(function() loop:create_task() end, 1, "create_task")
  end))

  it("set_task_factory / get_task_factory (test_set_task_factory)", async(function(loop)
    assert.is_nil(loop:get_task_factory())
    local calls = {}
    local function factory(l, fn, ...)
      calls[#calls + 1] = {l, fn, select("#", ...)}
      local task = eddy.Task(l, fn, ...)
      task:set_name("made by factory")
      return task
    end
    loop:set_task_factory(factory)
    assert.equal(factory, loop:get_task_factory())
    local function body(x) return x end
    local task = loop:create_task(body, 7)
    assert.equal("made by factory", task:get_name())
    assert.equal(7, task:await())
    assert.equal(loop, calls[1][1])
    assert.equal(body, calls[1][2])
    assert.equal(1, calls[1][3])
    -- eddy.create_task goes through the factory too
    assert.equal("made by factory", eddy.create_task(body, 1):get_name())
    loop:set_task_factory(nil)
    assert.is_nil(loop:get_task_factory())
    assert.matches("^Task%-%d+$", loop:create_task(body, 1):get_name())
  end))

  it("eddy.Task([loop,] fn, ...) makes a Task directly, never through a factory "
     .. "(asyncio.Task(coro, loop=loop))", function()
    local loop = eddy.new_event_loop()
    local made = 0
    loop:set_task_factory(function(l, fn, ...)
      made = made + 1
      return eddy.Task(l, fn, ...)
    end)
    local task = eddy.Task(loop, function(a, b) return a + b end, 2, 3)
    assert.equal(0, made)
    assert.equal(loop, task:get_loop())
    assert.equal(5, loop:run_until_complete(task))
    -- eddy.Task as the factory is the default behaviour
    loop:set_task_factory(eddy.Task)
    assert.same({"x", 2}, {loop:run_until_complete(function()
      local inner = eddy.create_task(function(...) return ... end, "x", 2)
      assert.matches("^Task%-%d+$", inner:get_name())
      return inner:await()
    end)})
    -- without a loop: the running loop's
    assert.is_true(loop:run_until_complete(function()
      return eddy.Task(function() end):get_loop() == loop
    end))
    -- a coroutine is resumed with the arguments
    local co = coroutine.create(function(x) return x * 2 end)
    assert.equal(42, loop:run_until_complete(eddy.Task(loop, co, 21)))
    -- bad input
    argerror(function() eddy.Task(42) end, 1, "Task")
    argerror(function() eddy.Task() end, 1, "Task")
    argerror(function() eddy.Task(loop, {}) end, 2, "Task")
    loop:close()
    assert.has_error(function() eddy.Task(loop, print) end, "RuntimeError: Event loop is closed")
  end)

  it("a factory may return any Future-compatible object", async(function(loop)
    loop:set_task_factory(function(l, fn, ...)
      local fut = l:create_future()
      fut:set_result("from factory", fn(...))
      return fut
    end)
    assert.same({"from factory", 3}, {loop:create_task(function(x) return x end, 3):await()})
    loop:set_task_factory(nil)
  end))

  -- CPython's test_eager_task_factory counts the tasks a factory makes
  -- (its non-eager classes; eddy has no eager tasks): every task of
  -- run_until_complete, TaskGroup and gather goes through the factory,
  -- and a nested call makes none.
  it("a counting factory sees every task (test_eager_task_factory: test_awaitables_chain, "
     .. "test_recursive_taskgroups, test_recursive_gather)", function()
    local function chain(depth)
      if depth == 0 then return 0 end
      return 1 + chain(depth - 1)
    end
    local function recursive_taskgroups(width, depth)
      if depth == 0 then return end
      local tg <close> = eddy.TaskGroup()
      for _ = 1, width do tg:create_task(recursive_taskgroups, width, depth - 1) end
    end
    local function recursive_gather(width, depth)
      if depth == 0 then return end
      local children = {}
      for i = 1, width do children[i] = function() recursive_gather(width, depth - 1) end end
      eddy.gather(table.unpack(children))
    end
    local cases = {
      {function() return chain(100) end, 100, 1},
      {function() recursive_taskgroups(5, 4) end, nil, 781},  -- 1 + 5 + 5^2 + 5^3 + 5^4
      {function() recursive_gather(5, 4) end, nil, 781},
    }
    for _, case in ipairs(cases) do
      local loop = eddy.new_event_loop()
      local count = 0
      loop:set_task_factory(function(l, fn, ...)
        count = count + 1
        return eddy.Task(l, fn, ...)
      end)
      assert.same({case[2]}, {loop:run_until_complete(case[1])})
      assert.equal(case[3], count)
      loop:close()
    end
  end)

  it("rejects a non-callable factory (test_set_task_factory_invalid)", with_loop(function(loop)
    argerror(function() loop:set_task_factory(1) end, 1, "set_task_factory")
    argerror(function() loop:set_task_factory("f") end, 1, "set_task_factory")
    assert.is_nil(loop:get_task_factory())
  end))
end)

describe("exception handler", function()
  it("defaults to nil and can be set and restored (test_set_exc_handler_custom)",
     with_loop(function(loop)
    assert.is_nil(loop:get_exception_handler())
    local got = {}
    local function handler(l, context) got[#got + 1] = {l, context} end
    loop:set_exception_handler(handler)
    assert.equal(handler, loop:get_exception_handler())
    local context = {message = "hello", exception = errors.ValueError("v")}
    loop:call_exception_handler(context)
    assert.equal(loop, got[1][1])
    assert.equal(context, got[1][2])
    loop:set_exception_handler(nil)
    assert.is_nil(loop:get_exception_handler())
  end))

  it("a callable table may be the handler", with_loop(function(loop)
    local seen
    loop:set_exception_handler(setmetatable({}, {__call = function(_, _, ctx) seen = ctx.message end}))
    loop:call_exception_handler({message = "via __call"})
    assert.equal("via __call", seen)
  end))

  it("rejects a non-callable handler (test_set_exc_handler_invalid)", with_loop(function(loop)
    argerror(function() loop:set_exception_handler("handler") end, 1, "set_exception_handler")
    argerror(function() loop:default_exception_handler("context") end, 1, "default_exception_handler")
  end))

  it("gets errors of callbacks with the handle (test_default_exc_handler_callback)",
     with_loop(function(loop)
    local contexts = {}
    loop:set_exception_handler(function(_, context) contexts[#contexts + 1] = context end)
    local h = loop:call_soon(function() error("plain string error") end)
    loop:call_later(0, function() error(errors.LookupError("missing")) end)
    loop:run_until_complete(function() eddy.sleep(0.01) end)
    assert.equal(2, #contexts)
    assert.equal(h, contexts[1].handle)
    assert.matches("plain string error", tostring(contexts[1].exception))
    assert.is_true(errors.is(contexts[2].exception, errors.LookupError))
    assert.is_string(contexts[2].exception.traceback)
  end))

  it("reports a task error that is never retrieved (test_tb_logger_exception_unretrieved)",
     function()
    local reports = run_collecting(function(loop)
      local task = loop:create_task(function() error(errors.ValueError("lost")) end)
      eddy.sleep(0)
      eddy.sleep(0)
      assert.is_true(task:done())
      task = nil  -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)
    assert.equal(1, #reports)
    assert.equal("Task exception was never retrieved", reports[1].message)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    -- the Task is the context's 'future', as asyncio's Future.__del__ names it
    assert.equal("userdata", type(reports[1].future))
    assert.is_nil(reports[1].task)
  end)

  it("the default handler shows where a task's string error was raised, as it shows an error object's",
     function()
    local tb = {}
    for i, err in ipairs({"'plain string'", "eddy.errors.ValueError('plain string')"}) do
      local code, out = checks.run_script(([[
        local eddy = require "eddy"
        local function inner() error(%s) end
        eddy.run(function()
          local t = eddy.create_task(function() inner() end)
          eddy.sleep(0)
          t = nil
          collectgarbage()
        end)
      ]]):format(err))
      assert.equal(0, code)
      assert.matches("Task exception was never retrieved\n", out)
      tb[i] = out:match("plain string\n(stack traceback:\n.*)$"):gsub("[^%s<]+(:%d+[:>])", "SCRIPT%1")
    end
    assert.matches("^stack traceback:\n\t%[C%]: in function 'error'\n\tSCRIPT:2: in upvalue 'inner'\n", tb[1])
    assert.equal(tb[2], tb[1])
  end)

  it("does not report a task error that was retrieved (test_tb_logger_exception_retrieved)",
     function()
    local reports = run_collecting(function(loop)
      local task = loop:create_task(function() error(errors.ValueError("seen")) end)
      eddy.sleep(0)
      assert.is_true(errors.is(task:exception(), errors.ValueError))
      task = nil  -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)
    assert.equal(0, #reports)
  end)

  it("a broken handler is reported by the default one, and the loop goes on (test_set_exc_handler_broken)",
     function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      loop:set_exception_handler(function() error("handler is broken") end)
      loop:call_soon(function() error("callback failed") end)
      loop:call_soon(function() print("still running") end)
      loop:run_until_complete(function() eddy.sleep(0.01) end)
      loop:close()
    ]])
    assert.equal(0, code)
    assert.matches("Unhandled error in exception handler", out)
    assert.matches("handler is broken", out)
    assert.matches("still running", out)
    -- the failed handler's context is shown, as asyncio shows its dict
    assert.matches('context: {exception = [^\n]*callback failed[^\n]*, handle = [^\n]*, '
                   .. 'message = "Exception in callback', out)
  end)

  it("a broken handler's error object is shown with its traceback, as asyncio logs it", function()
    local _, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      loop:set_exception_handler(function() error(eddy.errors.RuntimeError("handler is broken")) end)
      loop:call_exception_handler({message = "test"})
      loop:close()
    ]])
    -- down to the handler's line
    assert.matches("Unhandled error in exception handler\n.-RuntimeError: handler is broken\n"
                   .. "stack traceback:\n[^\n]*in function 'error'\n[^\n]*:3: in ", out)
  end)

  it("the default handler prints the message and the error (test_default_exc_handler_coro)",
     function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      loop:call_exception_handler {message = "something odd", exception = eddy.errors.ValueError("bad value")}
      loop:default_exception_handler {message = "called directly"}
      loop:close()
    ]])
    assert.equal(0, code)
    assert.matches("something odd", out)
    assert.matches("ValueError: bad value", out)
    assert.matches("called directly", out)
  end)

  -- Found by tests/fuzz_api.lua (seed 6): the failed hook's error stayed
  -- on the stack, and the iteration then read its first callback one slot
  -- off (a crash).  The hook is eddy.finalizers' (src/loop.c, run_finalizers).
  it("a failing finalizer hook is reported and the iteration's callbacks still run in order",
     function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      eddy._core.set_finalizer_hook(function() error("hook failed") end)
      local loop = eddy.new_event_loop()
      local reports = {}
      loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
      local ran = {}
      loop:call_soon(function() loop:_finalize_soon() end)
      for i = 1, 3 do loop:call_soon(function() ran[#ran + 1] = i end) end
      loop:run_until_complete(function() eddy.sleep(0) eddy.sleep(0) end)
      print(table.concat(reports, "|") .. " / " .. table.concat(ran, ","))
      loop:close()
    ]])
    assert.equal(0, code, out)
    assert.matches("Error while finalizing collected objects / 1,2,3", out, 1, true)
  end)
end)

describe("debug mode", function()
  it("get_debug / set_debug (test_set_debug)", with_loop(function(loop)
    loop:set_debug(true)
    assert.is_true(loop:get_debug())
    loop:set_debug(false)
    assert.is_false(loop:get_debug())
    argerror(function() loop:set_debug() end, 1, "set_debug")
  end))

  it("defaults from EDDY_DEBUG (test_env_var_debug)", function()
    local script = 'print("debug=" .. tostring(require("eddy").new_event_loop():get_debug()))'
    local _, on = checks.run_script(script, {EDDY_DEBUG = "1"})
    local _, off = checks.run_script(script, {EDDY_DEBUG = false})
    local _, empty = checks.run_script(script, {EDDY_DEBUG = ""})
    assert.matches("debug=true", on)
    assert.matches("debug=false", off)
    assert.matches("debug=false", empty)
  end)

  it("a failing callback's context carries where it was scheduled (test_handle_source_traceback)",
     with_loop(function(loop)
    local contexts = {}
    loop:set_exception_handler(function(_, context) contexts[#contexts + 1] = context end)
    local function fail() error(errors.ValueError("x")) end
    loop:call_soon(fail)                      -- not in debug mode: none
    loop:set_debug(true)
    local function schedule_here() loop:call_soon(fail) end
    schedule_here()
    loop:call_later(0, fail)
    loop:run_until_complete(function() eddy.sleep(0) eddy.sleep(0) end)
    assert.equal(3, #contexts)
    assert.is_nil(contexts[1].source_traceback)
    assert.matches("in local 'schedule_here'", contexts[2].source_traceback)
    assert.matches("^stack traceback:", contexts[3].source_traceback)
    assert.is_not_nil(contexts[2].handle)
  end))

  it("a pending task destroyed carries where it was created (test_task_source_traceback)", function()
    local reports = run_collecting(function(loop)
      loop:set_debug(true)
      local function make_task() return loop:create_task(function() loop:create_future():await() end) end
      local task = make_task()
      eddy.sleep(0)
      task = nil  -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      loop:set_debug(false)
    end)
    assert.equal(1, #reports)
    assert.equal("Task was destroyed but it is pending!", reports[1].message)
    assert.matches("in local 'make_task'", reports[1].source_traceback)
  end)

  it("slow_callback_duration is 0.1 s by default and settable", with_loop(function(loop)
    assert.equal(0.1, loop.slow_callback_duration)
    loop.slow_callback_duration = 0.25
    assert.equal(0.25, loop.slow_callback_duration)
  end))

  it("warns about slow callbacks in debug mode only (test_log_slow_callbacks)", function()
    local script = [[
      warn("@on")
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      loop:set_debug(%s)
      loop.slow_callback_duration = 0.01
      local function slow() local t = loop:time() while loop:time() - t < 0.03 do end end
      loop:call_soon(slow)
      loop:run_until_complete(function() eddy.sleep(0) end)
      loop:close()
      print("end")
    ]]
    local code, out = checks.run_script(script:format("true"))
    assert.equal(0, code)
    local took = tonumber(out:match("Executing callback .- took (%d+%.%d+) seconds"))
    assert.is_true(took ~= nil and took >= 0.03, out)  -- a loaded machine adds any amount
    local _, quiet = checks.run_script(script:format("false"))
    assert.matches("end", quiet)
    assert.is_nil(quiet:find("Executing callback", 1, true))
  end)

  it("warns about slow task steps too (test_log_slow_callbacks)", function()
    local code, out = checks.run_script([[
      warn("@on")
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      loop:set_debug(true)
      loop.slow_callback_duration = 0.01
      loop:run_until_complete(function()
        local t = loop:time() while loop:time() - t < 0.03 do end
      end)
      loop:close()
    ]])
    assert.equal(0, code)
    local took = tonumber(out:match("Executing task <Task .- took (%d+%.%d+) seconds"))
    assert.is_true(took ~= nil and took >= 0.03, out)
  end)

  it("a slow callback still runs to completion in debug mode", with_loop(function(loop)
    loop:set_debug(true)
    loop.slow_callback_duration = 0.001
    local done = false
    loop:call_soon(function() busy(loop, 0.005) done = true end)
    loop:run_until_complete(function() eddy.sleep(0) end)
    assert.is_true(done)
  end))
end)

-- docs/loop.md "No memory even for the report".  A report that fails with
-- the memory error stands for one made with no memory left: the loop's
-- call_exception_handler, which eddy calls for its reports, is shadowed
-- by one raising it (error() with level 0 raises Lua's own memory error
-- message as LUA_ERRMEM).  tests/oom_host.c's -a sweep checks the same
-- with allocations that really fail.
describe("no memory even for a report", function()
  local function starve(loop)
    loop.call_exception_handler = function() error("not enough memory", 0) end
  end

  -- pcall(fn, ...) must fail with the memory error well before 'bound'
  -- seconds of the loop's clock.
  local function ends_starved(loop, bound, fn, ...)
    local t0 = loop:time()
    local ok, err = pcall(fn, ...)
    assert.is_false(ok)
    assert.equal("not enough memory", err)
    assert.is_true(loop:time() - t0 < bound, "the run went on")
  end

  it("ends run_until_complete with the memory error; the loop closes", with_loop(function(loop)
    starve(loop)
    local ran_after = false
    loop:call_soon(error, "boom")
    loop:call_soon(function() ran_after = true end)
    ends_starved(loop, 1, loop.run_until_complete, loop, function() eddy.sleep(2) end)
    assert.is_false(loop:is_running())
    assert.is_true(ran_after)  -- the batch under way ends first, as at stop()
    loop:close()
    assert.is_true(loop:is_closed())
  end))

  it("ends run_forever so too, and the next run goes on", with_loop(function(loop)
    starve(loop)
    loop:call_later(0.01, error, "boom")
    local guard = loop:call_later(2, loop.stop, loop)  -- (a run that goes on)
    ends_starved(loop, 1, loop.run_forever, loop)
    guard:cancel()
    loop.call_exception_handler = nil  -- the method again
    assert.equal(3, loop:run_until_complete(function() eddy.sleep(0.01) return 3 end))
  end))

  it("ends eddy.run with the memory error, its loop closed", function()
    local loop
    local ok, err = pcall(eddy.run, function()
      loop = eddy.get_running_loop()
      starve(loop)
      loop:call_soon(error, "boom")
      eddy.sleep(2)
    end)
    assert.is_false(ok)
    assert.equal("not enough memory", err)
    assert.is_true(loop:is_closed())
  end)

  it("not when the report is made: a callback's memory error goes to the handler",
     with_loop(function(loop)
    local got = {}
    loop:set_exception_handler(function(_, ctx) got[#got + 1] = ctx.exception end)
    loop:call_soon(error, "not enough memory", 0)
    assert.equal(1, loop:run_until_complete(function() eddy.sleep(0.01) return 1 end))
    assert.same({"not enough memory"}, got)
  end))

  it("not when the handler fails otherwise: the loop goes on", with_loop(function(loop)
    loop.call_exception_handler = function() error("handler broke") end
    loop:call_soon(error, "boom")
    assert.equal(1, loop:run_until_complete(function() eddy.sleep(0.01) return 1 end))
  end))
end)
