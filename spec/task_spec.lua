-- Task (API.md §5): a Future driving a coroutine; names, cancellation,
-- errors with tracebacks, coroutine objects, sleep.  Ported from CPython's
-- test_tasks where a case has a counterpart (its name is in the text).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local run_collecting = require("eddy.test").run_collecting
local checks = require "support.checks"
local raises, argerror = checks.raises, checks.argerror

local function turns(n)
  for _ = 1, n or 2 do eddy.sleep(0) end
end

-- reports_when_collected(fn): run fn(loop) on a fresh loop, then collect
-- what it dropped and give the loop a turn; returns what the exception
-- handler heard (a lost error, a pending task destroyed).
local function reports_when_collected(fn)
  return run_collecting(function(loop)
    fn(loop)
    collectgarbage()
    collectgarbage()
    turns()
  end)
end

-- A to-be-closed value whose __close suspends, then logs what it saw.
local function suspending_closer(log, delay)
  return setmetatable({}, {__close = function(_, err)
    log[#log + 1] = "closing: " .. tostring(err)
    eddy.sleep(delay or 0.001)
    log[#log + 1] = "closed"
  end})
end

describe("Task basics", function()
  it("runs fn(...) and keeps every result (test_task_basics)", async(function(loop)
    local task = loop:create_task(function(a, b)
      eddy.sleep(0)
      return a, nil, b, nil
    end, "x", "y")
    local r = table.pack(task:await())
    assert.same({"x", nil, "y", nil, n = 4}, r)
    assert.same({"x", nil, "y", nil, n = 4}, table.pack(task:result()))
    assert.is_true(task:done())
    assert.is_nil(task:exception())
  end))

  it("starts on the next loop turn, not at creation", async(function(loop)
    local started = false
    local task = loop:create_task(function() started = true end)
    assert.is_false(started)
    assert.is_false(task:done())
    task:await()
    assert.is_true(started)
  end))

  it("eddy.create_task uses the running loop (test_bare_create_task)", async(function(loop)
    local task = eddy.create_task(function(x) return x + 1 end, 1)
    assert.equal(loop, task:get_loop())
    assert.equal(2, task:await())
  end))

  it("a name given at creation is set_name's (test_bare_create_named_task)", async(function()
    local task = eddy.create_task(function() end)
    task:set_name("No-op")  -- create_task(coro, name=...) in asyncio (API.md §1)
    assert.equal("No-op", task:get_name())
    task:await()
  end))

  it("eddy.create_task outside a running loop raises RuntimeError", function()
    raises(eddy.create_task, errors.RuntimeError, function() end)
  end)

  it("current_task is the task being run, nil outside (test_current_task)", async(function(loop)
    local me = eddy.current_task()
    assert.is_not_nil(me)
    local inner
    local task = loop:create_task(function() inner = eddy.current_task() end)
    task:await()
    assert.equal(task, inner)
    assert.equal(me, eddy.current_task())
    local in_callback = "unset"
    loop:call_soon(function() in_callback = eddy.current_task() end)
    turns()
    assert.is_nil(in_callback)
  end))

  it("current_task without a running loop raises RuntimeError; with a loop, "
     .. "only that loop's task (asyncio.current_task(loop)) (test_current_task_no_running_loop, "
     .. "test_current_task_no_running_loop_implicit, test_current_task_with_implicit_loop)", function()
    raises(eddy.current_task, {errors.RuntimeError, "no running event loop"})
    local loop = eddy.new_event_loop()
    local other = eddy.new_event_loop()
    assert.is_nil(eddy.current_task(loop))
    local task
    task = loop:create_task(function()
      return {eddy.current_task(), eddy.current_task(loop), eddy.current_task(other) or "none",
              eddy.current_task(nil)}
    end)
    local seen = loop:run_until_complete(task)
    assert.equal(task, seen[1])
    assert.equal(task, seen[2])
    assert.equal("none", seen[3])
    assert.equal(task, seen[4])
    assert.is_nil(eddy.current_task(loop))
    assert.has_error(function() eddy.current_task(5) end,
                     "bad argument #1 to 'current_task' (eddy.Loop expected, got number)")
    loop:close()
    other:close()
  end)

  it("create_task and await name themselves for a non-awaitable (test_create_task_with_noncoroutine)", async(function()
    local ok, err = pcall(eddy.create_task, 5)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'create_task' (function expected, got number)", err)
    ok, err = pcall(eddy.await, 5)
    assert.is_false(ok)
    assert.matches("bad argument #1 to '[%w.]*await' %(awaitable expected: Future, Task or function; got number%)", err)
  end))

  it("await(fn) from a callback raises before making a task", async(function(loop)
    local before = #eddy.all_tasks()
    local result = loop:create_future()
    loop:call_soon(function() result:set_result(pcall(eddy.await, function() end)) end)
    local ok, err = result:await()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.equal(before, #eddy.all_tasks())
  end))

  it("all_tasks lists the pending tasks of the loop", async(function(loop)
    local task = loop:create_task(function() eddy.sleep(0.01) end)
    local found = {}
    for _, t in ipairs(eddy.all_tasks()) do found[t] = true end
    assert.is_true(found[task])
    assert.is_true(found[eddy.current_task()])
    task:await()
    for _, t in ipairs(eddy.all_tasks()) do assert.are_not.equal(task, t) end
  end))

  it("a bare coroutine.yield() in a task gives up one loop turn", async(function(loop)
    local log = {}
    local a = loop:create_task(function()
      for i = 1, 3 do log[#log + 1] = "a" .. i coroutine.yield() end
    end)
    local b = loop:create_task(function()
      for i = 1, 3 do log[#log + 1] = "b" .. i coroutine.yield() end
    end)
    a:await()
    b:await()
    assert.same({"a1", "b1", "a2", "b2", "a3", "b3"}, log)
  end))

  it("suspends 200000 times from a C function (eddy.sleep): on the ThreadSanitizer build "
     .. "(make tsan) TSan must see every jump of liblua's, or its call stack overflows "
     .. "(src/tsan_longjmp.c)", async(function(loop)
    local task = loop:create_task(function()
      local steps = 0
      for _ = 1, 200000 do
        eddy.sleep(0)
        steps = steps + 1
      end
      return steps
    end)
    assert.equal(200000, task:await())
  end))

  it("done callbacks run when the task ends", async(function(loop)
    local task = loop:create_task(function() return "r" end)
    local got
    task:add_done_callback(function(t) got = t:result() end)
    task:await()
    turns()
    assert.equal("r", got)
  end))

  it("does not support set_result or set_exception (test_task_set_methods)", async(function(loop)
    local task = loop:create_task(function() end)
    raises(task.set_result, {errors.RuntimeError, "Task does not support set_result()"}, task, 1)
    raises(task.set_exception, {errors.RuntimeError, "Task does not support set_exception()"},
           task, errors.ValueError())
    task:await()
  end))

  it("a body raising nil fails with lua.c's message for it: exception() is nil only "
     .. "for a task without one, and gather does not wait forever for it", async(function(loop)
    local task = loop:create_task(function() error(nil) end)
    local ok, err = pcall(eddy.gather, task)
    assert.is_false(ok)
    assert.equal("(error object is a nil value)", err)
    assert.equal("(error object is a nil value)", task:exception())
  end))

  it("eddy.await runs a function as a task", async(function()
    assert.same({1, 2}, {eddy.await(function(a) eddy.sleep(0) return a, 2 end, 1)})
  end))
end)

describe("Task names and coroutines", function()
  it("are named Task-N by default, N increasing (test_task_repr_autogenerated)", async(function(loop)
    local t1 = loop:create_task(function() end)
    local t2 = loop:create_task(function() end)
    local n1 = tonumber(t1:get_name():match("^Task%-(%d+)$"))
    local n2 = tonumber(t2:get_name():match("^Task%-(%d+)$"))
    assert.is_true(n2 > n1)
    t1:await()
    t2:await()
  end))

  it("set_name / get_name; names appear in tostring (test_task_repr)", async(function(loop)
    local task = loop:create_task(function() end)
    task:set_name("worker")
    assert.equal("worker", task:get_name())
    assert.matches("^<Task pending name=worker", tostring(task))
    task:await()
    assert.matches("^<Task finished name=worker result=nil 0x", tostring(task))
  end))

  it("tostring shows a finished task's result or error, briefly (test_task_repr)",
     async(function(loop)
    local ok = loop:create_task(function() return "done", 2 end)
    local bad = loop:create_task(function() error(errors.ValueError("no\nmore")) end)
    pcall(ok.await, ok)
    pcall(bad.await, bad)
    assert.matches('^<Task finished name=Task%-%d+ result="done", %.%.%. 0x%x+>$', tostring(ok))
    assert.matches("^<Task finished name=Task%-%d+ exception=ValueError: no%.%.%. 0x%x+>$",
                   tostring(bad))
  end))

  it("a pending task's tostring shows the future it waits for (test_task_repr_wait_for)",
     async(function(loop)
    local fut = loop:create_future()
    local task = loop:create_task(function() return fut:await() end)
    turns(1)
    assert.equal(("<Task pending name=%s wait_for=%s %s>"):format(
                   task:get_name(), tostring(fut), tostring(task):match("0x%x+>$"):sub(1, -2)),
                 tostring(task))
    fut:set_result(nil)
    task:await()
    assert.is_nil(tostring(task):find("wait_for", 1, true))
  end))

  it("tasks waiting for each other: tostring shows the one already being shown as ..., as asyncio's recursive_repr",
     async(function(loop)
    local a, b
    a = loop:create_task(function() eddy.sleep(0) b:await() end)
    b = loop:create_task(function() eddy.sleep(0) a:await() end)
    turns(2)
    assert.matches("^<Task pending name=%S+ wait_for=<Task pending name=%S+ wait_for=%.%.%. 0x%x+> 0x%x+>$",
                   tostring(a))
    -- and the flag is reset: the second time reads the same
    assert.equal(tostring(a), tostring(a))
  end))

  it("non-string names are converted with tostring (test_task_repr_name_not_str, test_task_set_name_pylong)",
     async(function(loop)
    local task = loop:create_task(function() end)
    task:set_name(42)
    assert.equal("42", task:get_name())
    task:set_name(987654321)
    assert.equal("987654321", task:get_name())
    argerror(function() task:set_name() end, 1, "set_name")
    task:await()
  end))

  it("get_coro returns the coroutine (test_get_coro)", async(function(loop)
    local co = coroutine.create(function() return "co" end)
    local task = loop:create_task(co)
    assert.equal(co, task:get_coro())
    local ftask = loop:create_task(function() end)
    assert.equal("thread", type(ftask:get_coro()))
    assert.equal("co", task:await())
    ftask:await()
  end))
end)

describe("Task cancellation", function()
  it("bad input: cancel() of a task left waiting on a queue by loop:close() raises RuntimeError, "
     .. "as of one waiting on a future (found by tools/fuzz/api_fuzz.lua: it crashed in "
     .. "uv_idle_start)", function()
    local loop = eddy.new_event_loop()
    local q, ev = eddy.Queue(), eddy.Event()
    local on_queue = loop:create_task(function() q:get() end)
    local on_future = loop:create_task(function() ev:wait() end)
    loop:run_until_complete(function() eddy.sleep(0) eddy.sleep(0) end)
    loop:close()
    for _, task in ipairs {on_queue, on_future} do
      raises(function() task:cancel() end, {errors.RuntimeError, "Event loop is closed"})
      assert.is_false(task:done())
    end
  end)

  it("raises CancelledError at the suspension point (test_task_cancel_sleeping_task)",
     async(function(loop)
    local reached = false
    local task = loop:create_task(function()
      eddy.sleep(10)
      reached = true
    end)
    turns()
    assert.is_true(task:cancel())
    raises(task.await, errors.CancelledError, task)
    assert.is_true(task:cancelled())
    assert.is_false(reached)
  end))

  it("carries the message (test_task_cancel_message_getter)", async(function(loop)
    local task = loop:create_task(function() eddy.sleep(10) end)
    turns()
    task:cancel("shutting down")
    local err = raises(task.await, errors.CancelledError, task)
    assert.equal("shutting down", err.message)
    err = raises(task.result, errors.CancelledError, task)
    assert.equal("shutting down", err.message)
  end))

  it("can be caught with pcall; the task goes on (test_cancel_task_catching)", async(function(loop)
    local task = loop:create_task(function()
      local ok, err = pcall(eddy.sleep, 10)
      eddy.sleep(0)  -- still usable after catching
      return ok, tostring(err)
    end)
    turns()
    task:cancel("m")
    local ok, msg = task:await()
    assert.is_false(ok)
    assert.equal("CancelledError: m", msg)
    assert.is_false(task:cancelled())
  end))

  it("before the task started, its function never runs (test_cancel_with_message_before_starting_task)",
     async(function(loop)
    local ran = false
    local task = loop:create_task(function() ran = true end)
    assert.is_true(task:cancel("early"))
    local err = raises(task.await, errors.CancelledError, task)
    assert.equal("early", err.message)
    assert.is_false(ran)
    -- A second cancel() while still pending is true again, and its
    -- (missing) message replaces the first, as asyncio's _cancel_message.
    local again = loop:create_task(function() ran = true end)
    assert.is_true(again:cancel("early"))
    assert.is_true(again:cancel())
    err = raises(again.await, errors.CancelledError, again)
    assert.is_nil(err.message)
    assert.is_false(ran)
  end))

  it("a second cancel(msg) after the first woke the task keeps the first message, "
     .. "as asyncio's waiter error does", async(function(loop)
    local fut = loop:create_future()
    local waiting = {
      loop:create_task(function() eddy.sleep(10) end),
      loop:create_task(function() fut:await() end),
      loop:create_task(function() eddy.Queue():get() end),
    }
    turns()
    for _, task in ipairs(waiting) do
      assert.is_true(task:cancel("first"))
      assert.is_true(task:cancel("second"))
      assert.equal(2, task:cancelling())
      assert.equal("first", raises(task.await, errors.CancelledError, task).message)
    end
  end))

  it("a task waiting on a task that ignored one cancellation gets the next one", async(function(loop)
    local inner = loop:create_task(function() pcall(eddy.sleep, 10); eddy.sleep(10) end)
    local outer = loop:create_task(function() inner:await() end)
    turns()
    outer:cancel("a")
    turns()
    assert.is_false(inner:done())
    outer:cancel("b")
    assert.equal("b", raises(outer.await, errors.CancelledError, outer).message)
    assert.is_true(inner:cancelled())
  end))

  it("a task cancelling itself before returning ends cancelled (test_cancel_at_end)",
     async(function(loop)
    local task
    task = loop:create_task(function()
      eddy.sleep(0)
      task:cancel()
      return 12
    end)
    raises(task.await, errors.CancelledError, task)
    assert.is_true(task:cancelled())
  end))

  it("a task cancelling itself gets CancelledError at its next suspension (test_cancel_current_task)",
     async(function(loop)
    local after = false
    local task = loop:create_task(function()
      eddy.current_task():cancel()
      eddy.sleep(0)
      after = true
    end)
    raises(task.await, errors.CancelledError, task)
    assert.is_false(after)
  end))

  it("cancels the future the task waits on (test_cancel_inner_future)", async(function(loop)
    local inner = loop:create_future()
    local task = loop:create_task(function() return inner:await() end)
    turns()
    task:cancel()
    raises(task.await, errors.CancelledError, task)
    assert.is_true(inner:cancelled())
  end))

  it("of a done task returns false", async(function(loop)
    local task = loop:create_task(function() return 1 end)
    task:await()
    assert.is_false(task:cancel())
    assert.equal(1, task:result())
  end))

  it("cancelling() counts requests; uncancel() takes one back (test_cancelling, test_uncancel_basic)",
     async(function(loop)
    local task = loop:create_task(function()
      local ok = pcall(eddy.sleep, 10)
      local me = eddy.current_task()
      local before = me:cancelling()
      local after = me:uncancel()
      return ok, before, after, me:uncancel()
    end)
    turns()
    assert.equal(0, task:cancelling())
    task:cancel()
    task:cancel()
    assert.equal(2, task:cancelling())
    local ok, before, after, last = task:await()
    assert.is_false(ok)
    assert.equal(2, before)
    assert.equal(1, after)
    assert.equal(0, last)
  end))

  it("rejects a message that is not a string", async(function(loop)
    local task = loop:create_task(function() end)
    argerror(function() task:cancel({}) end, 1, "cancel")
    task:await()
  end))

  it("runs <close> variables, which may suspend, while unwinding", async(function(loop)
    local log = {}
    local task = loop:create_task(function()
      local guard <close> = suspending_closer(log, 0.005)
      eddy.sleep(10)
    end)
    turns()
    task:cancel("stop")
    raises(task.await, errors.CancelledError, task)
    assert.same({"closing: CancelledError: stop", "closed"}, log)
  end))

  it("suspending <close> variables nest and close in reverse order", async(function(loop)
    local log = {}
    local task = loop:create_task(function()
      local outer <close> = setmetatable({}, {__close = function()
        eddy.sleep(0.001)
        log[#log + 1] = "outer"
      end})
      local inner <close> = setmetatable({}, {__close = function()
        eddy.sleep(0.001)
        log[#log + 1] = "inner"
      end})
      eddy.sleep(10)
    end)
    turns()
    task:cancel()
    raises(task.await, errors.CancelledError, task)
    assert.same({"inner", "outer"}, log)
  end))

  -- asyncio's Task.cancel(msg) stores msg whenever it cannot cancel the
  -- awaited future, None included: a later cancel() without a message
  -- takes back the message of an earlier one (tasks.py).
  it("a later cancel() without a message replaces an earlier message", async(function(loop)
    local task = loop:create_task(function()
      pcall(eddy.sleep, 10)          -- catches cancel("first")
      eddy.current_task():cancel()   -- while it runs: delivered at return
      return "x"
    end)
    turns()
    task:cancel("first")
    local err = raises(task.await, errors.CancelledError, task)
    assert.is_nil(err.message)
    assert.equal(2, task:cancelling())
  end))

  -- cancel() after the awaited future is done but before the task's
  -- wake-up ran: asyncio's Task.__wakeup still calls future.result()
  -- (tasks.py), then __step swaps any error but a CancelledError for the
  -- task's own.  So the awaited future's error counts as retrieved, and
  -- a cancelled future's CancelledError (its message) is what the task sees.
  it("a cancel() racing the wake-up still retrieves the awaited future's error",
     function()
    local reports = reports_when_collected(function(loop)
      local task
      do
        local fut = loop:create_future()
        task = loop:create_task(function() fut:await() end)
        turns()
        fut:set_exception(errors.ValueError("seen by the wake-up"))
        assert.is_true(task:cancel("late"))
      end
      local err = raises(task.await, errors.CancelledError, task)
      assert.equal("late", err.message)
    end)
    assert.equal(0, #reports)
  end)

  it("a cancel() racing the wake-up from a cancelled future raises that future's CancelledError",
     async(function(loop)
    local fut = loop:create_future()
    local seen
    local task = loop:create_task(function()
      local ok, err = pcall(fut.await, fut)
      seen = err
      return ok
    end)
    turns()
    assert.is_true(fut:cancel("from the future"))
    assert.is_true(task:cancel("from the task"))  -- too late: fut is done
    assert.is_false(task:await())
    assert.equal("from the future", seen.message)
    assert.equal(1, task:cancelling())
  end))

  it("a task ends with the CancelledError it raised, not a message cancel() left",
     async(function(loop)
    -- asyncio keeps the raised error (_cancelled_exc) for result(): here
    -- the awaited future's CancelledError(), without the task's message.
    local fut = loop:create_future()
    local task = loop:create_task(function() fut:await() end)
    turns()
    assert.is_true(fut:cancel())
    assert.is_true(task:cancel("from the task"))  -- too late: fut is done
    local err = raises(task.await, errors.CancelledError, task)
    assert.is_nil(err.message)
    err = raises(task.result, errors.CancelledError, task)
    assert.is_nil(err.message)
  end))

  it("a cancel() racing the wake-up from gather's future failed with CancelledError raises that one",
     async(function(loop)
    -- gather's future fails with the child's CancelledError (it is not
    -- cancelled itself); __wakeup's result() raises it and __step keeps it.
    local child = loop:create_task(function() eddy.sleep(10) end)
    local waiting = loop:create_task(function()
      local ok, err = pcall(eddy.gather, child)
      return ok, err
    end)
    turns()
    child:add_done_callback(function() assert.is_true(waiting:cancel("late")) end)
    child:cancel("by child")
    local ok, err = waiting:await()
    assert.is_false(ok)
    assert.equal("by child", err.message)
    assert.equal(1, waiting:cancelling())
  end))
end)

describe("Task errors", function()
  it("keep their traceback in err.traceback (test_exception_traceback)", async(function(loop)
    local function deep_function_name() error(errors.ValueError("deep")) end
    local task = loop:create_task(function() eddy.sleep(0) deep_function_name() end)
    local err = raises(task.await, errors.ValueError, task)
    assert.equal("deep", err.message)
    assert.is_string(err.traceback)
    assert.matches("deep_function_name", err.traceback)
    assert.equal(err, task:exception())
  end))

  it("are re-raised as the same value to every awaiter", async(function(loop)
    local failing = loop:create_task(function() eddy.sleep(0.001) error(errors.LookupError("k")) end)
    local a = loop:create_task(function() return pcall(failing.await, failing) end)
    local b = loop:create_task(function() return pcall(eddy.await, failing) end)
    local _, ea = a:await()
    local _, eb = b:await()
    assert.is_true(errors.is(ea, errors.LookupError))
    assert.equal(ea, eb)
    assert.equal(ea, failing:exception())
  end))

  it("plain string errors keep their text", async(function(loop)
    local task = loop:create_task(function() error("just a string") end)
    local ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.matches("just a string", err)
  end))

  it("run <close> variables that suspend before the task fails", async(function(loop)
    local log = {}
    local task = loop:create_task(function()
      local guard <close> = suspending_closer(log)
      error(errors.ValueError("failing"))
    end)
    local err = raises(task.await, errors.ValueError, task)
    assert.equal("failing", err.message)
    assert.same({"closing: ValueError: failing", "closed"}, log)
  end))

  it("a task cannot await itself (test_task_awaits_on_itself)", async(function(loop)
    local task
    task = loop:create_task(function()
      eddy.sleep(0)
      return task:await()
    end)
    raises(task.await, {errors.RuntimeError, "Task cannot await on itself"}, task)
  end))

  it("a future of another loop cannot be awaited (test_other_loop_future)", async(function(loop)
    local other = eddy.new_event_loop()
    local fut = other:create_future()
    raises(fut.await, {errors.RuntimeError, "different loop"}, fut)
    other:close()
  end))

  it("a task destroyed while pending is reported (test_log_destroyed_pending_task)", function()
    local reports = reports_when_collected(function(loop)
      -- waits on a future nobody else holds: the pair is garbage
      local task = loop:create_task(function() loop:create_future():await() end)
      turns()
      assert.is_false(task:done())
    end)
    assert.equal(1, #reports)
    assert.equal("Task was destroyed but it is pending!", reports[1].message)
  end)
end)

describe("Tasks from coroutine objects", function()
  it("pass arguments and return every result", async(function(loop)
    local co = coroutine.create(function(a, b)
      eddy.sleep(0.001)
      return a + b, nil, "x"
    end)
    assert.same({5, nil, "x", n = 3}, table.pack(loop:create_task(co, 2, 3):await()))
  end))

  it("may return nil or false first", async(function(loop)
    assert.same({nil, "second", n = 2},
                table.pack(loop:create_task(coroutine.create(function() return nil, "second" end)):await()))
    assert.is_false(loop:create_task(coroutine.create(function() return false end)):await())
  end))

  it("treat a bare yield as one loop turn", async(function(loop)
    local turns_seen = 0
    local co = coroutine.create(function()
      coroutine.yield()
      coroutine.yield(nil)  -- nils too; a value is an error (conformance7_spec)
      return "done"
    end)
    local task = loop:create_task(co)
    loop:call_soon(function() turns_seen = turns_seen + 1 end)
    assert.equal("done", task:await())
    assert.equal(1, turns_seen)
  end))

  it("fail with the coroutine's error and run its <close> variables", async(function(loop)
    local closed = false
    local task = loop:create_task(coroutine.create(function()
      local guard <close> = setmetatable({}, {__close = function() closed = true end})
      eddy.sleep(0)
      error(errors.ValueError("in coroutine"))
    end))
    raises(task.await, errors.ValueError, task)
    assert.is_true(closed)
  end))

  it("can be cancelled", async(function(loop)
    local task = loop:create_task(coroutine.create(function() eddy.sleep(10) end))
    turns()
    task:cancel()
    raises(task.await, errors.CancelledError, task)
  end))

  -- Resumed or closed from outside, a task's coroutine moved on without
  -- its task, which then waited forever; a second task driving the same
  -- coroutine stepped it with the results of the other's awaits.
  it("belong to their task: coroutine.resume, coroutine.close and a second task refuse them",
     async(function(loop)
    local co = coroutine.create(function() eddy.sleep(0.01) return "co" end)
    local by_co = loop:create_task(co)
    local by_fn = loop:create_task(function() eddy.sleep(0.01) return "fn" end)
    turns()
    for _, c in ipairs{co, by_fn:get_coro()} do
      local ok, err = coroutine.resume(c, "junk")
      assert.is_false(ok)
      assert.matches("cannot resume a coroutine that a task runs", err)
      assert.has_error(function() coroutine.close(c) end,
                       "cannot close a coroutine that a task runs (cancel the task instead)")
    end
    raises(loop.create_task, {errors.RuntimeError, "coroutine is already run by a task"}, loop, co)
    raises(loop.create_task, errors.RuntimeError, loop, by_fn:get_coro())
    local own = loop:create_task(function()
      return pcall(eddy.create_task, coroutine.running())
    end)
    assert.is_false((eddy.wait_for(own, 5)))
    assert.equal("co", eddy.wait_for(by_co, 5))
    assert.equal("fn", eddy.wait_for(by_fn, 5))
    -- done, they are ordinary dead coroutines again
    assert.same({false, "cannot resume dead coroutine"}, {coroutine.resume(co)})
    assert.is_true(coroutine.close(co))
    -- a task of a coroutine that finished (or died of an error) outside
    -- any task fails with asyncio's RuntimeError
    local finished = coroutine.create(function() end)
    local died = coroutine.create(function() error("x") end)
    coroutine.resume(finished)
    coroutine.resume(died)
    for _, dead in ipairs{finished, died} do
      local t = loop:create_task(dead)
      local ok, err = pcall(eddy.wait_for, t, 5)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.RuntimeError), tostring(err))
      assert.matches("cannot reuse already awaited coroutine", tostring(err))
    end
  end))

  -- A task's coroutine is filed as its own only when Lua code gets it.
  it("belong to their task when coroutine.running() hands them out, not a nested coroutine",
     async(function(loop)
    local gate = loop:create_future()
    local own, nested
    local t = loop:create_task(function()
      own = coroutine.running()
      local gen = coroutine.wrap(function()
        nested = coroutine.running()
        coroutine.yield(1)
        return 2
      end)
      gen()
      gate:await()
      return gen()
    end)
    turns()
    local ok, err = coroutine.resume(own, "junk")
    assert.is_false(ok)
    assert.matches("cannot resume a coroutine that a task runs", err)
    raises(loop.create_task, {errors.RuntimeError, "coroutine is already run by a task"}, loop, own)
    assert.equal("suspended", coroutine.status(nested))  -- an ordinary one
    gate:set_result()
    assert.equal(2, eddy.wait_for(t, 5))
  end))
end)

describe("eddy.sleep", function()
  it("returns its extra arguments (test_sleep)", async(function()
    assert.same({"a", nil, 3, n = 3}, table.pack(eddy.sleep(0.001, "a", nil, 3)))
    assert.same({"z", n = 1}, table.pack(eddy.sleep(0, "z")))
  end))

  it("sleeps at least the delay", async(function(loop)
    local t0 = loop:time()
    eddy.sleep(0.02)
    assert.is_true(loop:time() - t0 >= 0.02)
  end))

  it("sleep(0) gives up exactly one turn (test_sleep_zero)", async(function(loop)
    local log = {}
    loop:call_soon(function() log[#log + 1] = "callback" end)
    eddy.sleep(0)
    log[#log + 1] = "after sleep(0)"
    assert.same({"callback", "after sleep(0)"}, log)
  end))

  it("treats a negative delay as 0 and rejects NaN with ValueError (test_sleep_when_delay_is_nan)", async(function()
    assert.equal("neg", eddy.sleep(-1, "neg"))
    raises(eddy.sleep, errors.ValueError, 0 / 0)
  end))

  it("rejects a delay that is not a number", async(function()
    argerror(function() eddy.sleep("soon") end, 1, "sleep")
    argerror(function() eddy.sleep() end, 1, "sleep")
  end))

  it("cancelled while sleeping raises CancelledError (test_sleep_cancel)", async(function(loop)
    local task = loop:create_task(function() eddy.sleep(10) end)
    turns()
    task:cancel()
    raises(task.await, errors.CancelledError, task)
  end))
end)

describe("suspending outside a task", function()
  it("from a plain callback raises RuntimeError naming eddy.run", async(function(loop)
    local errs = {}
    loop:call_soon(function()
      errs[1] = select(2, pcall(eddy.sleep, 0.001))
      errs[2] = select(2, pcall(eddy.sleep, 0))
      local fut = loop:create_future()
      errs[3] = select(2, pcall(fut.await, fut))
    end)
    turns()
    for i = 1, 3 do
      assert.is_true(errors.is(errs[i], errors.RuntimeError), tostring(errs[i]))
      assert.matches("eddy.run", errs[i].message, 1, true)
    end
  end))

  it("from a coroutine resumed by a plain callback raises RuntimeError", async(function(loop)
    local result
    loop:call_soon(function()
      local co = coroutine.create(function() eddy.sleep(0.001) end)
      result = table.pack(coroutine.resume(co))
    end)
    turns()
    assert.is_false(result[1])
    assert.is_true(errors.is(result[2], errors.RuntimeError))
    assert.matches("eddy.run", result[2].message, 1, true)
  end))

  it("from a coroutine outside any loop raises RuntimeError", function()
    local co = coroutine.create(function() return eddy.sleep(0.001) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.matches("eddy.run", err.message, 1, true)
  end)
end)

describe("Task stacks", function()
  it("get_stack lists a suspended task's Lua frames, oldest first (test_get_stack)",
     async(function(loop)
    local function inner() eddy.sleep(0.05) end
    local function outer() inner() end
    local t = loop:create_task(outer)
    turns()
    local frames = t:get_stack()
    assert.equal(2, #frames)
    assert.equal("inner", frames[2].name)
    assert.is_true(frames[1].line < frames[2].line + 10 and frames[2].line > 0)
    assert.matches("task_spec", frames[2].source, 1, true)
    local newest = t:get_stack(1)
    assert.equal(1, #newest)
    assert.equal("inner", newest[1].name)
    assert.same({}, t:get_stack(0))
    t:cancel()
    pcall(t.await, t)
    assert.same({}, t:get_stack())
  end))

  it("print_stack writes asyncio's format to a file-like object", async(function(loop)
    local function waits() eddy.sleep(0.05) end
    local t = loop:create_task(function() waits() end)
    turns()
    local out = {}
    local sink = {write = function(_, s) out[#out + 1] = s end}
    t:print_stack(nil, sink)
    local text = table.concat(out)
    assert.matches("^Stack for <Task pending name=Task%-%d+ .-> %(most recent call last%):\n", text)
    assert.matches('  File ".-task_spec.lua", line %d+, in waits\n', text)
    t:cancel()
    pcall(t.await, t)
    out = {}
    t:print_stack(nil, sink)
    assert.matches("^No stack for <Task cancelled", table.concat(out))
  end))

  it("a failed task's stack is its error's frames, oldest first (test_get_stack)",
     async(function(loop)
    local function fails() eddy.sleep(0); error("boom") end
    local function calls() fails() end
    local t = loop:create_task(calls)
    pcall(t.await, t)
    local frames = t:get_stack()
    assert.equal(2, #frames)  -- the task's function (calls), then fails
    assert.equal("fails", frames[2].name)
    assert.is_true(frames[1].line > frames[2].line)
    assert.matches("task_spec", frames[2].source, 1, true)
    assert.equal(1, #t:get_stack(1))  -- a traceback keeps its oldest frames
    assert.equal(frames[1].line, t:get_stack(1)[1].line)
    local out = {}
    t:print_stack(nil, {write = function(_, s) out[#out + 1] = s end})
    local text = table.concat(out)
    assert.matches("^Traceback for <Task finished name=Task%-%d+ exception=.-boom 0x.->"
                   .. " %(most recent call last%):\n", text)
    assert.matches('  File ".-task_spec.lua", line %d+, in fails\n.-boom\n$', text)
    -- a cancelled task has none
    t = loop:create_task(function() eddy.sleep(1) end)
    turns()
    t:cancel()
    pcall(t.await, t)
    assert.same({}, t:get_stack())
  end))

  it("a task whose <close> variable suspends as its error unwinds keeps its frames and raise site, "
     .. "though another task fails meanwhile", function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      eddy.run(function()
        local a = eddy.create_task(function()
          local _ <close> = setmetatable({}, {__close = function() eddy.sleep(0.05) end})
          error("a fails")
        end)
        local b = eddy.create_task(function() eddy.sleep(0.01) error("b fails") end)
        eddy.sleep(0.1)
        assert(a:done() and b:done())
        print("frames", #a:get_stack(), #b:get_stack())
        pcall(b.result, b)
        a:result()
      end)
    ]])
    assert.equal(1, code)
    assert.matches("frames\t1\t1\n", out)
    assert.matches(":5: a fails\nstack traceback:\n\t%[C%]: in function 'error'\n\t[^\n]-:5: in function <", out)
  end)

  it("a task failing with a stack overflow keeps its 200 innermost levels, at once",
     async(function(loop)
    local function deep(n) return 1 + deep(n + 1) end
    local t0 = os.clock()
    local t = loop:create_task(deep, 1)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("stack overflow", tostring(err))
    local frames = t:get_stack()
    assert.equal(200, #frames)
    assert.equal("deep", frames[200].name)
    assert.is_true(os.clock() - t0 < 5)
  end))

  it("get_stack and print_stack take asyncio's keyword-only limit and file as an options table (API.md §1)",
     async(function(loop)
    local function inner() eddy.sleep(0.05) end
    local function outer() inner() end
    local t = loop:create_task(outer)
    turns()
    local newest = t:get_stack({limit = 1})
    assert.equal(1, #newest)
    assert.equal("inner", newest[1].name)
    assert.equal(2, #t:get_stack({}))
    local out = {}
    t:print_stack({limit = 1, file = {write = function(_, s) out[#out + 1] = s end}})
    local text = table.concat(out)
    assert.matches("^Stack for <Task pending", text)
    assert.matches("in inner\n$", text)
    assert.is_nil(text:find("in outer", 1, true))
    argerror(function() t:get_stack({limt = 1}) end, 1, "get_stack")
    argerror(function() t:print_stack({fiel = io.stderr}) end, 1, "print_stack")
    t:cancel()
    pcall(t.await, t)
  end))

  it("get_stack checks its arguments", async(function(loop)
    local t = loop:create_task(function() end)
    argerror(function() t:get_stack("x") end, 1, "get_stack")
    checks.raises(t.get_stack, "eddy.Task expected", {})
    t:await()
  end))

  -- API.md §1: "bad argument type (a programming error): standard Lua
  -- argument error", naming the method called, whichever way its
  -- arguments came.
  it("print_stack checks its arguments: errors name print_stack (API.md §1)", async(function(loop)
    local t = loop:create_task(function() end)
    argerror(function() t:print_stack("x") end, 1, "print_stack")
    argerror(function() t:print_stack({limit = "x"}) end, 1, "print_stack")
    raises(function() t:print_stack(nil, 5) end,
           "bad argument #2 to 'print_stack' (file expected, got number)")
    raises(function() t:print_stack({file = true}) end,
           "bad argument #1 to 'print_stack' (file expected, got boolean)")
    t:await()
  end))
end)

-- The rest of CPython's test_tasks that applies to one task: its loop,
-- cancellation against what it awaits, uncancel, stopping the loop.
describe("Task, more of test_tasks", function()
  it("test_task_class: a task belongs to the loop that made it", function()
    for _ = 1, 2 do
      local loop = eddy.new_event_loop()
      local task = loop:create_task(function() return "ok" end)
      assert.equal(loop, task:get_loop())
      assert.equal("ok", loop:run_until_complete(task))
      assert.is_true(task:done())
      assert.equal("ok", task:result())
      loop:close()
    end
  end)

  it("test_coroutine_non_gen_function_return_future: a future returned is a result, not awaited",
     async(function(loop)
    local fut = loop:create_future()
    local t1 = loop:create_task(function() return fut end)
    local t2 = loop:create_task(function() fut:set_result("test") end)
    assert.equal(fut, t1:await())
    assert.is_nil(t2:await())
  end))

  it("test_cancel: a cancel() from a callback ends a sleeping task, whose cancel() is false after",
     function()
    local loop = eddy.new_event_loop()
    local t = loop:create_task(function() eddy.sleep(10); return 12 end)
    loop:call_soon(t.cancel, t)
    raises(loop.run_until_complete, errors.CancelledError, loop, t)
    assert.is_true(t:done() and t:cancelled())
    assert.is_false(t:cancel())
    loop:close()
  end)

  it("test_tb_logger_not_called_after_cancel: cancel() on a failed task marks its error retrieved",
     function()
    local reports = reports_when_collected(function(loop)
      local task = loop:create_task(function() error(errors.ValueError("type")) end)
      eddy.sleep(0.01)
      assert.is_false(task:cancel())
    end)
    assert.equal(0, #reports)
  end)

  it("test_cancel_yield: cancelled between two sleep(0)s", async(function(loop)
    local reached = false
    local t = loop:create_task(function()
      eddy.sleep(0)
      eddy.sleep(0)
      reached = true
      return 12
    end)
    turns(1)  -- the task is in its first sleep(0)
    t:cancel()
    raises(t.await, errors.CancelledError, t)
    assert.is_false(reached)
    assert.is_true(t:done() and t:cancelled())
    assert.is_false(t:cancel())
  end))

  it("test_cancel_both_task_and_inner_future", async(function(loop)
    local f = loop:create_future()
    local t = loop:create_task(function() f:await(); return 12 end)
    turns(1)
    f:cancel()
    t:cancel()
    raises(t.await, errors.CancelledError, t)
    assert.is_true(t:done() and f:cancelled() and t:cancelled())
  end))

  it("test_task_cancel_waiter_future: the future a task waits on is cancelled with it",
     async(function(loop)
    local fut = loop:create_future()
    local task = loop:create_task(function() fut:await() end)
    turns(1)
    task:cancel()
    turns(1)
    raises(task.await, errors.CancelledError, task)
    assert.is_true(fut:cancelled())
  end))

  it("test_cancel_task_ignoring: a task that swallows the cancellation goes on to its result",
     async(function(loop)
    local fut1, fut2, fut3 = loop:create_future(), loop:create_future(), loop:create_future()
    local t = loop:create_task(function()
      fut1:await()
      pcall(fut2.await, fut2)
      return fut3:await()
    end)
    turns(1)
    fut1:set_result(nil)
    turns(1)
    t:cancel()
    assert.is_true(fut2:cancelled())  -- at once, as asyncio's _fut_waiter.cancel()
    turns(1)
    fut3:set_result(42)
    assert.equal(42, t:await())
    assert.is_false(fut3:cancelled())
    assert.is_false(t:cancelled())
  end))

  it("test_cancel_awaited_task: a task cancelled while running cancels the next thing it awaits",
     function()
    local loop = eddy.new_event_loop()
    local fut = loop:create_future()
    local task, nested
    task = loop:create_task(function()
      nested = loop:create_task(function() fut:await() end)
      eddy.sleep(0)
      task:cancel()      -- the task is running: nothing to cancel yet
      nested:await()     -- cancelled as soon as it is awaited
    end)
    raises(loop.run_until_complete, errors.CancelledError, loop, task)
    assert.is_true(task:cancelled())
    assert.is_true(nested:cancelled())
    assert.is_true(fut:cancelled())
    loop:close()
  end)

  it("test_cancellation_exception_context: the awaiter catches the CancelledError with the message",
     async(function(loop)
    local fut = loop:create_future()
    local task = loop:create_task(function()
      local inner = loop:create_task(function() fut:set_result(nil); eddy.sleep(10) end)
      fut:await()
      loop:call_soon(inner.cancel, inner, "msg")
      local ok, ex = pcall(inner.await, inner)
      assert(not ok and errors.is(ex, errors.CancelledError), tostring(ex))
      local err = errors.ValueError("cancelled")
      err.cause = ex  -- Python's raise ... from ex
      error(err)
    end)
    local err = raises(task.await, errors.ValueError, task)
    assert.equal("cancelled", err.message)
    assert.is_true(errors.is(err.cause, errors.CancelledError))
    assert.equal("msg", err.cause.message)
  end))

  it("test_cancel_with_message_then_future_result, test_cancel_with_message_then_future_exception: "
     .. "result() and exception() of the cancelled task raise its CancelledError with the message",
     function()
    -- CPython's case cancel(5) gives the message 5; eddy's is "5"
    -- (docs/futures-and-tasks.md: a message is a string).
    for _, method in ipairs{"result", "exception"} do
      for _, msg in ipairs{false, "my message", 5} do
        local loop = eddy.new_event_loop()
        local outer = loop:create_task(function()
          local task = loop:create_task(function() eddy.sleep(10) end)
          eddy.sleep(0)
          task:cancel(msg or nil)
          eddy.wait({task})
          task[method](task)
        end)
        local err = raises(loop.run_until_complete, errors.CancelledError, loop, outer)
        assert.equal(msg and tostring(msg) or nil, err.message)
        loop:close()
      end
    end
  end)

  it("test_uncancel_resets_must_cancel: uncancel() before the task resumed takes the cancellation back",
     function()
    local loop = eddy.new_event_loop()
    local fut = loop:create_future()
    local task = loop:create_task(function() fut:await(); return 42 end)
    loop:run_until_complete(function() eddy.sleep(0) end)  -- the task waits for fut
    fut:set_result(nil)                                    -- and is runnable
    task:cancel()
    assert.equal(1, task:cancelling())
    task:uncancel()
    assert.equal(0, task:cancelling())
    assert.equal(42, loop:run_until_complete(task))
    assert.is_false(task:cancelled())
    loop:close()
  end)

  -- A timeout built by hand from cancel() and uncancel(), as the CPython
  -- test does, to show the counter lets the code after the block run on.
  it("test_uncancel_structured_blocks: a hand-made timeout uncancels and the task goes on",
     async(function(loop)
    local function request_with_timeout(sleep, timeout)
      local task = eddy.current_task()
      local timed_out, block_finished, outer_reached = false, false, false
      local handle = loop:call_later(timeout, function()
        timed_out = true
        task:cancel()
      end)
      local ok, err = pcall(function()
        eddy.sleep(sleep)
        block_finished = true
      end)
      handle:cancel()
      if timed_out and task:uncancel() == 0 and errors.is(err, errors.CancelledError) then
        ok, err = false, errors.TimeoutError()
      end
      if not ok then assert(errors.is(err, errors.TimeoutError) and timed_out, tostring(err)) end
      outer_reached = true
      eddy.sleep(0)
      return timed_out, block_finished, outer_reached
    end
    local t1 = loop:create_task(request_with_timeout, 10, 0.01)
    assert.same({true, false, true}, {t1:await()})
    assert.equal(0, t1:cancelling())
    local t2 = loop:create_task(request_with_timeout, 0, 10)
    assert.same({false, true, true}, {t2:await()})
    assert.equal(0, t2:cancelling())
  end))

  it("test_stop_while_run_in_complete: loop:stop() from the task ends run_until_complete early",
     function()
    local loop = eddy.new_event_loop()
    local x = 0
    local t = loop:create_task(function()
      while x < 10 do
        eddy.sleep(0.001)
        x = x + 1
        if x == 2 then loop:stop() end
      end
    end)
    raises(loop.run_until_complete, {errors.RuntimeError, "Event loop stopped before Future completed."},
           loop, t)
    assert.is_false(t:done())
    assert.equal(2, x)
    t:cancel()
    raises(loop.run_until_complete, errors.CancelledError, loop, t)
    loop:close()
  end)

  it("test_yield_future_passes_cancel: cancelling the task reaches the future a nested function awaits",
     async(function(loop)
    local proof = 0
    local waiter = loop:create_future()
    local function inner()
      local ok, err = pcall(waiter.await, waiter)
      assert(not ok, "got past the waiter in inner()")
      proof = proof + 1
      error(err, 0)
    end
    local f = loop:create_task(function()
      if pcall(inner) then proof = proof + 10 else proof = proof + 100 end
    end)
    turns(1)
    f:cancel()
    f:await()
    assert.equal(101, proof)
    assert.is_true(waiter:cancelled())
  end))

  it("test_current_task_with_interleaving_tasks", async(function(loop)
    local fut1, fut2 = loop:create_future(), loop:create_future()
    local task1, task2
    local seen = {}
    task1 = loop:create_task(function()
      seen[#seen + 1] = eddy.current_task() == task1
      fut1:await()
      seen[#seen + 1] = eddy.current_task() == task1
      fut2:set_result(true)
    end)
    task2 = loop:create_task(function()
      seen[#seen + 1] = eddy.current_task() == task2
      fut1:set_result(true)
      fut2:await()
      seen[#seen + 1] = eddy.current_task() == task2
    end)
    eddy.wait({task1, task2})
    assert.same({true, true, true, true}, seen)
  end))
end)
