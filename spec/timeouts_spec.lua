-- Timeout scopes (API.md §6), ported from CPython's
-- Lib/test/test_asyncio/test_timeouts.py (test names cited).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error = checks.expect_error

describe("eddy.timeout", function()
  it("test_timeout_basic", async(function()
    local cm
    expect_error(errors.TimeoutError, function()
      local t <close> = eddy.timeout(0.01)
      cm = t
      eddy.sleep(10)
    end)
    assert.is_true(cm:expired())
  end))

  it("test_timeout_at_basic", async(function(loop)
    local cm
    local deadline = loop:time() + 0.01
    expect_error(errors.TimeoutError, function()
      local t <close> = eddy.timeout_at(deadline)
      cm = t
      eddy.sleep(10)
    end)
    assert.is_true(cm:expired())
    assert.equals(deadline, cm:when())
  end))

  it("test_nested_timeouts: the inner one fires first", async(function()
    local cm1, cm2
    expect_error(errors.TimeoutError, function()
      local t1 <close> = eddy.timeout(0.01)
      cm1 = t1
      local t2 <close> = eddy.timeout(0.01)
      cm2 = t2
      eddy.sleep(10)
    end)
    assert.is_true(cm1:expired())
    assert.is_true(cm2:expired())
  end))

  it("test_waiter_cancelled: the awaited future is cancelled", async(function(loop)
    local fut = loop:create_future()
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0.01)
      fut:await()
    end)
    assert.is_true(fut:cancelled())
  end))

  it("test_timeout_not_called", async(function(loop)
    local t0 = loop:time()
    local cm
    do
      local t <close> = eddy.timeout(10)
      cm = t
      eddy.sleep(0.01)
    end
    assert.is_false(cm:expired())
    assert.is_true(loop:time() - t0 < 1)
  end))

  it("test_timeout_disabled / test_timeout_at_disabled", async(function()
    do
      local t <close> = eddy.timeout(nil)
      assert.is_nil(t:when())
      eddy.sleep(0.01)
      assert.is_false(t:expired())
    end
    local t <close> = eddy.timeout_at(nil)
    eddy.sleep(0.01)
    assert.is_false(t:expired())
  end))

  it("test_timeout_zero", async(function()
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0)
      eddy.sleep(10)
    end)
  end))

  it("test_timeout_in_the_past_sleep_zero", async(function(loop)
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(-11)
      eddy.sleep(0)
    end)
  end))

  it("test_foreign_exception_passed", async(function()
    local ok, err = pcall(function()
      local _ <close> = eddy.timeout(0.01)
      error(errors.KeyError and errors.KeyError() or errors.ValueError("foreign"))
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
  end))

  it("test_foreign_exception_on_timeout: another error after expiry passes", async(function()
    local ok, err = pcall(function()
      local _ <close> = eddy.timeout(0.001)
      local sok = pcall(eddy.sleep, 10)  -- swallow the cancellation
      assert.is_false(sok)
      error(errors.ValueError("foreign"))
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
  end))

  it("test_foreign_cancel_doesnt_timeout_if_not_expired", async(function(loop)
    local task = eddy.current_task()
    loop:call_soon(function() task:cancel() end)
    local cm
    expect_error(errors.CancelledError, function()
      local t <close> = eddy.timeout(10)
      cm = t
      eddy.sleep(10)
    end)
    assert.is_false(cm:expired())
    assert.equals(1, task:uncancel() + 1)
  end))

  it("test_outer_task_is_not_cancelled", async(function(loop)
    local function outer()
      local _ <close> = eddy.timeout(0.001)
      eddy.sleep(10)
    end
    local task = loop:create_task(outer)
    expect_error(errors.TimeoutError, task.await, task)
    assert.is_false(task:cancelled())
    assert.is_true(task:done())
  end))

  it("test_nested_timeouts_concurrent: only the outer one expired, it converts", async(function()
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0.002)
      local ok, err = pcall(function()
        -- 5 s, not asyncio's 0.1 s: 10 ms of CPU can take over 0.1 s on a
        -- loaded machine, and then both scopes would expire
        local _ <close> = eddy.timeout(5)
        -- Pretend we crunch numbers past the outer deadline.
        local until_ = os.clock() + 0.01
        while os.clock() < until_ do end
        eddy.sleep(10)
      end)
      -- (CPython's inner assertRaises(TimeoutError) lets this through.)
      assert.is_true(errors.is(err, errors.CancelledError))
      error(err, 0)
    end)
  end))

  it("test_nested_timeouts_loop_busy: the outer one converts its own expiry", async(function(loop)
    local t0 = loop:time()
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0.1)        -- (1)
      local until_ = os.clock() + 0.12           -- busy past the deadline
      while os.clock() < until_ do end
      local ok, err = pcall(function()
        -- (5 s, not 0.1 s: a loaded machine may stall that long before
        -- (1)'s timer runs, and then (2) would expire too)
        local _ <close> = eddy.timeout(5)        -- (2)
        eddy.sleep(10)
      end)
      -- (2) did not expire: (1)'s cancellation passes through it
      assert.is_true(errors.is(err, errors.CancelledError))
      error(err, 0)
    end)
    assert.is_true(loop:time() - t0 < 5)
  end))

  it("test_reschedule", async(function(loop)
    local deadline = loop:time() + 10
    local cm
    local t <close> = eddy.timeout_at(deadline)
    cm = t
    assert.equals(deadline, cm:when())
    cm:reschedule(nil)
    assert.is_nil(cm:when())
    local d2 = loop:time() + 20
    cm:reschedule(d2)
    assert.equals(d2, cm:when())
    expect_error(errors.TimeoutError, function()
      local inner <close> = eddy.timeout(10)
      inner:reschedule(loop:time() + 0.001)
      eddy.sleep(10)
    end)
    assert.has_error(function() cm:reschedule("soon") end)
  end))

  it("test_repr_active / test_repr_expired / test_repr_finished", async(function()
    local cm
    do
      local t <close> = eddy.timeout(10)
      cm = t
      assert.matches("^<eddy.Timeout %[active%] when=%d+%.%d%d%d>$", tostring(cm))
    end
    assert.equals("<eddy.Timeout [finished]>", tostring(cm))
    pcall(function()
      local t <close> = eddy.timeout(0)
      cm = t
      eddy.sleep(1)
    end)
    assert.equals("<eddy.Timeout [expired]>", tostring(cm))
    expect_error(errors.RuntimeError, cm.reschedule, cm, 1)
  end))

  it("test_repr_disabled", async(function()
    local cm <close> = eddy.timeout(nil)
    assert.equals("<eddy.Timeout [active] when=nil>", tostring(cm))
  end))

  it("test_timeout_zero_sleep_zero: expired, when() is the entry time", async(function(loop)
    local cm
    local t0 = loop:time()
    expect_error(errors.TimeoutError, function()
      local t <close> = eddy.timeout(0)
      cm = t
      eddy.sleep(0)
    end)
    assert.is_true(cm:expired())
    assert.is_true(t0 <= cm:when() and cm:when() <= loop:time())
  end))

  it("test_nested_timeout_in_finally: a scope in a __close handler gets its own TimeoutError",
     async(function()
    local inner_err
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0.01)
      local _finally <close> = setmetatable({}, {__close = function()
        inner_err = select(2, pcall(function()
          local _ <close> = eddy.timeout(0.01)
          eddy.sleep(10)
        end))
      end})
      eddy.sleep(1)
    end)
    assert.is_true(errors.is(inner_err, errors.TimeoutError))
  end))

  it("test_timeout_expiring / test_timeout_finished / test_timeout_expired: reschedule names the state",
     async(function()
    do
      local cm <close> = eddy.timeout(0.001)
      expect_error(errors.CancelledError, eddy.sleep, 1)
      checks.raises(cm.reschedule, {errors.RuntimeError, "expiring"}, cm, 1)
    end
    local cm
    do local t <close> = eddy.timeout(0.01); cm = t end
    checks.raises(cm.reschedule, {errors.RuntimeError, "finished"}, cm, 1)
    pcall(function() local t <close> = eddy.timeout(0); cm = t; eddy.sleep(1) end)
    checks.raises(cm.reschedule, {errors.RuntimeError, "expired"}, cm, 1)
  end))

  it("test_timeout_after_cancellation: a caught cancel does not break the next timeout", async(function()
    local task = eddy.current_task()
    task:cancel()
    pcall(eddy.sleep, 1)  -- cancel() is delivered here and swallowed
    task:uncancel()
    expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0.001)
      eddy.sleep(1)
    end)
  end))

  it("test_cancel_in_timeout_after_cancellation: a cancel inside wins over the timeout", async(function()
    local task = eddy.current_task()
    task:cancel()
    pcall(eddy.sleep, 1)
    expect_error(errors.CancelledError, function()
      local _ <close> = eddy.timeout(0.001)
      task:cancel()
      eddy.sleep(1)
    end)
  end))

  it("test_timeout_exception_cause", async(function()
    local err = expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0)
      eddy.sleep(1)
    end)
    assert.is_true(errors.is(err.cause, errors.CancelledError))
  end))

  it("test_timeout_without_task: RuntimeError", function()
    expect_error(errors.RuntimeError, eddy.timeout, 10)
    expect_error(errors.RuntimeError, eddy.timeout_at, 10)
    assert.has_error(function() eddy.timeout("x") end)
  end)

  it("a plain callback cannot use a timeout (RuntimeError)", async(function(loop)
    local ok, err
    loop:call_soon(function() ok, err = pcall(eddy.timeout, 1) end)
    eddy.sleep(0)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
  end))
end)

describe("eddy.timeout, the rest of test_timeouts", function()
  -- A to-be-closed value whose close runs fn (Python's `finally:`).
  local function finally(fn) return setmetatable({}, {__close = fn}) end

  -- Python chains the CancelledError to the error it interrupted
  -- (__context__); Lua has no implicit chaining: the cancellation
  -- replaces that error, and the scope converts it as usual.
  it("test_timeout_exception_context: expiry in a cleanup after an error: TimeoutError", async(function()
    local err = expect_error(errors.TimeoutError, function()
      local _ <close> = eddy.timeout(0.01)
      local _f <close> = finally(function() eddy.sleep(1) end)
      error(errors.ValueError("1/0"))
    end)
    assert.is_true(errors.is(err.cause, errors.CancelledError))
  end))

  it("test_timeout_taskgroup: a group the expiry cancels and whose child fails in its cleanup",
     async(function()
    local eg = expect_error(errors.ExceptionGroup, function()
      local _ <close> = eddy.timeout(0.01)
      local tg <close> = eddy.TaskGroup()
      tg:create_task(function()
        local _c <close> = finally(function() error(errors.ValueError("1/0")) end)
        eddy.sleep(2)
      end)
      local _f <close> = finally(function() eddy.sleep(1) end)
      error(errors.ValueError("body"))
    end)
    assert.equals(1, #eg.exceptions)
    assert.equals("ValueError: 1/0", tostring(eg.exceptions[1]):match("ValueError: 1/0"))
    -- The scope took its cancellation back: nothing is left pending.
    assert.equals(0, eddy.current_task():cancelling())
    eddy.sleep(0)
  end))
end)

describe("eddy.wait_for", function()
  it("test_wait_for, test_wait_for_blocking: returns the results (timeout nil: no limit)", async(function(loop)
    local a, b = eddy.wait_for(function() eddy.sleep(0.001); return 1, 2 end, 1)
    assert.same({1, 2}, {a, b})
    local fut = loop:create_future()
    loop:call_soon(fut.set_result, fut, "x")
    assert.equals("x", eddy.wait_for(fut, 1))
    assert.equals(3, eddy.wait_for(function() return 3 end, nil))
  end))

  it("test_wait_for_timeout: TimeoutError, the inner task cancelled", async(function(loop)
    local t0 = loop:time()
    local inner = loop:create_task(function() eddy.sleep(10) end)
    expect_error(errors.TimeoutError, eddy.wait_for, inner, 0.01)
    assert.is_true(inner:cancelled())
    assert.is_true(loop:time() - t0 < 1)
  end))

  it("test_wait_for_waits_for_task_cancellation", async(function(loop)
    local task_done = false
    local function inner()
      local ok = pcall(eddy.sleep, 10)
      assert.is_false(ok)
      eddy.sleep(0.01)  -- cleanup that takes a while
      task_done = true
      error(errors.CancelledError())
    end
    local inner_task = loop:create_task(inner)
    expect_error(errors.TimeoutError, eddy.wait_for, inner_task, 0.001)
    assert.is_true(task_done)
    assert.is_true(inner_task:cancelled())
  end))

  it("test_wait_for_timeout_less_then_0_or_0_future_done", async(function(loop)
    local fut = loop:create_future()
    fut:set_result("done")
    assert.equals("done", eddy.wait_for(fut, 0))
  end))

  it("test_wait_for_timeout_less_then_0_or_0_coroutine_do_not_started", async(function()
    local started = false
    expect_error(errors.TimeoutError, eddy.wait_for, function() started = true end, 0)
    assert.is_false(started)
    expect_error(errors.TimeoutError, eddy.wait_for, function() started = true end, -1)
    assert.is_false(started)
  end))

  it("test_wait_for_reraises_exception_during_cancellation", async(function(loop)
    local function inner()
      local ok = pcall(eddy.sleep, 10)
      assert.is_false(ok)
      error(errors.ValueError("from cleanup"))
    end
    expect_error(errors.ValueError, eddy.wait_for, inner, 0.001)
  end))

  it("test_wait_for_self_cancellation: the outer cancel stays a CancelledError", async(function(loop)
    local function outer()
      return eddy.wait_for(function() eddy.sleep(10) end, 5)
    end
    local t = loop:create_task(outer)
    eddy.sleep(0.001)
    t:cancel()
    expect_error(errors.CancelledError, t.await, t)
    assert.is_true(t:cancelled())
  end))

  it("test_wait_for_race_condition: a result that arrives with the timeout wins", async(function(loop)
    local fut = loop:create_future()
    loop:call_later(0.001, fut.set_result, fut, "ok")
    assert.equals("ok", eddy.wait_for(fut, 1))
  end))

  it("test_wait_for_timeout_less_then_0_or_0: a running task is cancelled at once", async(function(loop)
    for _, timeout in ipairs {0, -1} do
      local running
      local started = loop:create_future()
      local fut = loop:create_task(function()
        running = true
        started:set_result(nil)
        local ok, err = pcall(eddy.sleep, 10)
        running = false
        if not ok then error(err, 0) end
        return "done"
      end)
      started:await()
      local t0 = loop:time()
      expect_error(errors.TimeoutError, eddy.wait_for, fut, timeout)
      assert.is_true(fut:cancelled())
      assert.is_false(running)
      assert.is_true(loop:time() - t0 < 1)
    end
  end))

  it("test_cancel_wait_for / test_cancel_blocking_wait_for: cancelling the wait cancels aw", async(function(loop)
    for _, timeout in ipairs {60, false} do
      local task = loop:create_task(function() loop:create_future():await() end)
      local wait = loop:create_task(eddy.wait_for, task, timeout or nil)
      loop:call_soon(function() wait:cancel() end)
      expect_error(errors.CancelledError, wait.await, wait)
      assert.is_true(task:cancelled())
    end
  end))

  it("WaitForShieldTests test_zero_timeout / test_none_timeout / test_shielded_timeout", async(function(loop)
    local function coro() eddy.sleep(0.02); return "done" end
    local task = loop:create_task(coro)
    local shielded = eddy.shield(task)
    expect_error(errors.TimeoutError, eddy.wait_for, shielded, 0)
    assert.is_true(shielded:cancelled())
    assert.is_false(task:done() or task:cancelled())
    assert.equals("done", task:await())

    task = loop:create_task(coro)
    eddy.wait_for(eddy.shield(task), nil)
    assert.equals("done", task:result())

    task = loop:create_task(coro)
    expect_error(errors.TimeoutError, eddy.wait_for, eddy.shield(task), 0.001)
    assert.is_false(task:done() or task:cancelled())
    assert.equals("done", task:await())
  end))

  -- CPython's SlowTask: runs for 'duration' seconds of loop time,
  -- swallowing every cancellation on the way.
  local function slow_task(duration)
    local state = {exited = false}
    function state.run()
      local loop = eddy.get_running_loop()
      local exit_at = loop:time() + duration
      while loop:time() < exit_at do pcall(eddy.sleep, exit_at - loop:time()) end
      state.exited = true
    end
    return state
  end

  -- CPython's test lets wait_for raise TimeoutError or not; aw swallowed
  -- the cancellation and returned, so as asyncio's it returns (docs/tasks.md).
  it("test_asyncio_wait_for_timeout: wait_for returns once aw, which ignores cancellation, has ended",
     async(function()
    local t = slow_task(0.05)
    assert.is_true(pcall(eddy.wait_for, t.run, 0.025))
    assert.is_true(t.exited)
  end))

  it("test_wait_for_cancellation_race_condition, test_wait_for_cancel_suppressed: "
     .. "aw that swallows the cancellation and returns gives its result", async(function()
    local function inner()
      local ok, err = pcall(eddy.sleep, 1)
      assert(not ok and errors.is(err, errors.CancelledError), "sleep was not cancelled")
      return 42
    end
    assert.equals(42, eddy.wait_for(inner, 0.01))
  end))

  it("test_wait_for_waits_for_task_cancellation_w_timeout_0: timeout 0 still waits for aw's cleanup",
     async(function(loop)
    local task_done = false
    local inner_task = loop:create_task(function()
      local ok = pcall(eddy.sleep, 10)
      assert(not ok)
      eddy.sleep(0.001)  -- cleanup that takes a while
      task_done = true
      error(errors.CancelledError())
    end)
    eddy.sleep(0.001)
    local err = expect_error(errors.TimeoutError, eddy.wait_for, inner_task, 0)
    assert.is_true(task_done)
    assert.is_true(errors.is(err.cause, errors.CancelledError))
  end))

  it("test_wait_for_issue86296: a caller cancelled as aw completes is cancelled, aw keeps its result",
     async(function(loop)
    local inner_task = loop:create_task(function() return "done" end)
    local reached_end = false
    local task = loop:create_task(function()
      eddy.wait_for(inner_task, 100)
      eddy.sleep(1)
      reached_end = true
    end)
    assert.is_false(task:done())
    eddy.sleep(0)
    task:cancel()
    expect_error(errors.CancelledError, task.await, task)
    assert.is_true(inner_task:done())
    assert.equals("done", inner_task:await())
    assert.is_false(reached_end)
  end))

  it("bad input: a non-awaitable is an argument error, a bad timeout too", async(function()
    local ok, err = pcall(eddy.wait_for, 42, 1)
    assert.is_false(ok)
    assert.matches("awaitable expected", tostring(err))
    assert.has_error(function() eddy.wait_for(function() end, "1") end)
  end))
end)
