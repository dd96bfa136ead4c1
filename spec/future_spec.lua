-- Future (API.md §5), ported from CPython's test_futures where a case has
-- a counterpart (its name is in the description).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local run_collecting = require("eddy.test").run_collecting
local checks = require "support.checks"
local raises, argerror = checks.raises, checks.argerror

-- Two loop turns: enough for callbacks scheduled with call_soon to run.
local function turns(n)
  for _ = 1, n or 2 do eddy.sleep(0) end
end

describe("Future state", function()
  it("starts pending (test_initial_state)", async(function(loop)
    local fut = loop:create_future()
    assert.is_false(fut:done())
    assert.is_false(fut:cancelled())
    assert.matches("^<Future pending", tostring(fut))
    raises(fut.result, {errors.InvalidStateError, "Result is not ready."}, fut)
    raises(fut.exception, {errors.InvalidStateError, "Exception is not set."}, fut)
  end))

  it("holds a result (test_result)", async(function(loop)
    local fut = loop:create_future()
    fut:set_result(42)
    assert.is_true(fut:done())
    assert.is_false(fut:cancelled())
    assert.equal(42, fut:result())
    assert.is_nil(fut:exception())
    assert.matches("^<Future finished result=42 0x%x+>$", tostring(fut))
  end))

  it("holds several results, nils included", async(function(loop)
    local fut = loop:create_future()
    fut:set_result(1, nil, "three", nil)
    local r = table.pack(fut:result())
    assert.equal(4, r.n)
    assert.same({1, nil, "three", nil, n = 4}, r)
    local empty = loop:create_future()
    empty:set_result()
    assert.equal(0, select("#", empty:result()))
  end))

  it("holds an exception, raised by result() (test_exception)", async(function(loop)
    local fut = loop:create_future()
    local err = errors.ValueError("wrong")
    fut:set_exception(err)
    assert.is_true(fut:done())
    assert.equal(err, fut:exception())
    assert.equal(err, raises(fut.result, errors.ValueError, fut))
    assert.matches("^<Future finished exception=ValueError: wrong 0x%x+>$", tostring(fut))
  end))

  it("tostring cuts a long or odd result short (test_future_repr)", async(function(loop)
    local fut = loop:create_future()
    fut:set_result(string.rep("x", 100) .. "\nnext line")
    assert.matches('^<Future finished result="' .. string.rep("x", 60) .. '%.%.%." 0x%x+>$',
                   tostring(fut))
    local odd = loop:create_future()
    odd:set_result(setmetatable({}, {__tostring = function() error("no text") end}))
    assert.matches("^<Future finished result=table 0x%x+>$", tostring(odd))
  end))

  it("accepts any value as the exception, a string too", async(function(loop)
    local fut = loop:create_future()
    fut:set_exception("plain message")
    assert.equal("plain message", fut:exception())
    local ok, err = pcall(fut.result, fut)
    assert.is_false(ok)
    assert.equal("plain message", err)
  end))

  it("set_exception(Class) sets an instance of it (test_exception_class)", async(function(loop)
    local fut = loop:create_future()
    fut:set_exception(errors.ValueError)
    local exc = fut:exception()
    assert.is_true(errors.is(exc, errors.ValueError))
    assert.is_false(rawequal(exc, errors.ValueError))
    assert.equal("ValueError", tostring(exc))
  end))

  it("cannot be completed twice: InvalidStateError (test_set_result_causes_invalid_state)",
     async(function(loop)
    local fut = loop:create_future()
    fut:set_result(1)
    raises(fut.set_result, {errors.InvalidStateError, "invalid state: FINISHED"}, fut, 2)
    raises(fut.set_exception, errors.InvalidStateError, fut, errors.ValueError())
    assert.equal(1, fut:result())
    local failed = loop:create_future()
    failed:set_exception(errors.ValueError())
    raises(failed.set_result, errors.InvalidStateError, failed, 2)
    assert.is_true(errors.is(failed:exception(), errors.ValueError))
  end))

  it("set_exception needs an error value", async(function(loop)
    local fut = loop:create_future()
    argerror(function() fut:set_exception() end, 1, "set_exception")
    argerror(function() fut:set_exception(nil) end, 1, "set_exception")
    assert.is_false(fut:done())
  end))

  it("methods check their self argument", async(function(loop)
    local fut = loop:create_future()
    argerror(function() fut.result(42) end, 1, "result")
    argerror(function() fut.done({}) end, 1, "done")
    argerror(function() fut.set_result(loop) end, 1, "set_result")
  end))

  it("get_loop() is the loop it belongs to (test_constructor_positional)", async(function(loop)
    assert.equal(loop, loop:create_future():get_loop())
  end))

  it("isfuture tells futures and tasks from other values (test_isfuture)", async(function(loop)
    assert.is_true(eddy.isfuture(loop:create_future()))
    assert.is_true(eddy.isfuture(loop:create_task(function() end)))
    assert.is_false(eddy.isfuture({}))
    assert.is_false(eddy.isfuture(nil))
    assert.is_false(eddy.isfuture(loop))
    assert.is_false(eddy.isfuture(io.stdout))
    turns()
  end))
end)

describe("Future fields", function()
  it("a future has no field to set; a future class's own __newindex is kept", async(function(loop)
    local f = loop:create_future()
    raises(function() f.x = 1 end, "cannot set field 'x' of eddy.Future")
    local seen = {}
    local class = {__name = "MyFuture",
                   __newindex = function(_, k, v) seen[k] = v end}
    local g = eddy._core._future_new(loop, class)
    g.x = 1
    assert.same({x = 1}, seen)
  end))
end)

describe("Future:cancel", function()
  it("cancels a pending future once (test_cancel)", async(function(loop)
    local fut = loop:create_future()
    assert.is_true(fut:cancel())
    assert.is_true(fut:cancelled())
    assert.is_true(fut:done())
    assert.is_false(fut:cancel())
    raises(fut.result, errors.CancelledError, fut)
    raises(fut.exception, errors.CancelledError, fut)
    raises(fut.set_result, errors.InvalidStateError, fut, 1)
    raises(fut.set_exception, errors.InvalidStateError, fut, errors.ValueError())
    assert.matches("^<Future cancelled", tostring(fut))
  end))

  it("does nothing to a finished future", async(function(loop)
    local fut = loop:create_future()
    fut:set_result("kept")
    assert.is_false(fut:cancel())
    assert.is_false(fut:cancelled())
    assert.equal("kept", fut:result())
  end))

  it("keeps the message in the CancelledError (test_future_cancel_message_getter)",
     async(function(loop)
    local fut = loop:create_future()
    fut:cancel("my message")
    local err = raises(fut.result, errors.CancelledError, fut)
    assert.equal("my message", err.message)
    assert.equal("CancelledError: my message", tostring(err))
    err = raises(fut.exception, errors.CancelledError, fut)
    assert.equal("my message", err.message)
  end))

  it("rejects a message that is not a string", async(function(loop)
    local fut = loop:create_future()
    argerror(function() fut:cancel({}) end, 1, "cancel")
    assert.is_false(fut:done())
  end))

  it("wakes a task awaiting it with CancelledError", async(function(loop)
    local fut = loop:create_future()
    local waiter = loop:create_task(function() return pcall(fut.await, fut) end)
    turns()
    fut:cancel("bye")
    local ok, err = waiter:await()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.CancelledError))
    assert.equal("bye", err.message)
  end))
end)

describe("Future done callbacks", function()
  it("are scheduled with call_soon, in order, with the future (test_callbacks_invoked_on_set_result)",
     async(function(loop)
    local fut = loop:create_future()
    local log = {}
    for i = 1, 3 do
      fut:add_done_callback(function(f)
        assert.equal(fut, f)
        log[#log + 1] = i
      end)
    end
    fut:set_result(10)
    assert.same({}, log)  -- not called synchronously
    turns()
    assert.same({1, 2, 3}, log)
  end))

  it("run on set_exception and on cancel too (test_callbacks_invoked_on_set_exception)",
     async(function(loop)
    local failed, cancelled = loop:create_future(), loop:create_future()
    local seen = {}
    failed:add_done_callback(function(f) seen.failed = f:exception() end)
    cancelled:add_done_callback(function(f) seen.cancelled = f:cancelled() end)
    local err = errors.ValueError("x")
    failed:set_exception(err)
    cancelled:cancel()
    turns()
    assert.equal(err, seen.failed)
    assert.is_true(seen.cancelled)
  end))

  it("added to a done future are scheduled soon, not called at once", async(function(loop)
    local fut = loop:create_future()
    fut:set_result(1)
    local called = false
    fut:add_done_callback(function() called = true end)
    assert.is_false(called)
    turns()
    assert.is_true(called)
  end))

  it("run once, and callbacks added later are not run again", async(function(loop)
    local fut = loop:create_future()
    local count = 0
    fut:add_done_callback(function() count = count + 1 end)
    fut:set_result(1)
    turns(3)
    assert.equal(1, count)
  end))

  it("accept a callable table", async(function(loop)
    local fut = loop:create_future()
    local got
    fut:add_done_callback(setmetatable({}, {__call = function(_, f) got = f:result() end}))
    fut:set_result("via __call")
    turns()
    assert.equal("via __call", got)
  end))

  it("take asyncio's keyword-only context in an options table, absent = a copy of the current context",
     async(function(loop)
    local cvar = eddy.ContextVar("done_cb_ctx", "default")
    cvar:set("current")
    local other = eddy.copy_context()
    other:run(function() cvar:set("other") end)
    local fut = loop:create_future()
    local seen = {}
    fut:add_done_callback(function() seen.none = cvar:get() end)
    fut:add_done_callback(function() seen.empty = cvar:get() end, {})
    fut:add_done_callback(function() seen.nilctx = cvar:get() end, {context = nil})
    fut:add_done_callback(function() seen.other = cvar:get() end, {context = other})
    fut:set_result()
    turns()
    assert.same({none = "current", empty = "current", nilctx = "current", other = "other"}, seen)
    argerror(function() fut:add_done_callback(print, 5) end, 2, "add_done_callback")
    argerror(function() fut:add_done_callback(print, {contxt = other}) end, 2, "add_done_callback")
    argerror(function() fut:add_done_callback(print, {context = 5}) end, 2, "add_done_callback")
    argerror(function() fut:add_done_callback(print, setmetatable({}, {})) end, 2, "add_done_callback")
  end))

  it("reject a non-callable", async(function(loop)
    local fut = loop:create_future()
    argerror(function() fut:add_done_callback(42) end, 1, "add_done_callback")
    argerror(function() fut:add_done_callback() end, 1, "add_done_callback")
  end))

  it("remove_done_callback removes every registration and returns the count (test_remove_done_callback)",
     async(function(loop)
    local fut = loop:create_future()
    local log = {}
    local function a() log[#log + 1] = "a" end
    local function b() log[#log + 1] = "b" end
    fut:add_done_callback(a)
    fut:add_done_callback(b)
    fut:add_done_callback(a)
    fut:add_done_callback(b)
    fut:add_done_callback(a)
    assert.equal(3, fut:remove_done_callback(a))
    assert.equal(0, fut:remove_done_callback(a))
    assert.equal(0, fut:remove_done_callback(function() end))
    fut:set_result(1)
    turns()
    assert.same({"b", "b"}, log)
  end))

  it("remove the first, then others, keeping the order (test_callbacks_remove_first_and_second_callback)",
     async(function(loop)
    local fut = loop:create_future()
    local log = {}
    local cbs = {}
    for i = 1, 5 do
      cbs[i] = function() log[#log + 1] = i end
      fut:add_done_callback(cbs[i])
    end
    assert.equal(1, fut:remove_done_callback(cbs[1]))
    assert.equal(1, fut:remove_done_callback(cbs[2]))
    assert.equal(1, fut:remove_done_callback(cbs[4]))
    fut:set_result(1)
    turns()
    assert.same({3, 5}, log)
  end))

  it("can be added again after remove_done_callback emptied the list (test_remove_done_callbacks_list_clear)",
     async(function(loop)
    local fut = loop:create_future()
    local log = {}
    local function a() log[#log + 1] = "a" end
    fut:add_done_callback(a)
    fut:remove_done_callback(a)
    fut:add_done_callback(a)
    fut:set_result(1)
    turns()
    assert.same({"a"}, log)
  end))

  it("an error in a done callback goes to the exception handler", function()
    local reports = run_collecting(function(loop)
      local fut = loop:create_future()
      local after = false
      fut:add_done_callback(function() error(errors.ValueError("in callback")) end)
      fut:add_done_callback(function() after = true end)
      fut:set_result(1)
      turns()
      assert.is_true(after)
    end)
    assert.equal(1, #reports)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
  end)
end)

describe("Future on a closed loop", function()
  -- asyncio: __schedule_callbacks calls loop.call_soon, which raises
  -- RuntimeError('Event loop is closed'); the future is done all the same
  -- and its callbacks are forgotten.
  local closed_error = {errors.RuntimeError, "Event loop is closed"}

  local function closed_loop_futures(n)
    local loop = eddy.new_event_loop()
    local futs = {}
    for i = 1, n do futs[i] = loop:create_future() end
    return loop, futs
  end

  it("set_result and set_exception raise when done callbacks are waiting", function()
    local loop, futs = closed_loop_futures(3)
    local called = false
    for _, fut in ipairs(futs) do
      fut:add_done_callback(function() called = true end)
      fut:add_done_callback(function() called = true end)  -- EXTRA's list too
    end
    loop:close()
    raises(futs[1].set_result, closed_error, futs[1], 1)
    assert.equal(1, futs[1]:result())
    raises(futs[2].set_exception, closed_error, futs[2], errors.ValueError("v"))
    assert.is_true(errors.is(futs[2]:exception(), errors.ValueError))
    raises(futs[3].cancel, closed_error, futs[3])
    assert.is_true(futs[3]:cancelled())
    -- Forgotten: removing finds nothing, and nothing was ever called.
    assert.equal(0, futs[1]:remove_done_callback(print))
    assert.is_false(called)
  end)

  it("set_result is silent without done callbacks", function()
    local loop, futs = closed_loop_futures(1)
    loop:close()
    futs[1]:set_result("quiet")
    assert.equal("quiet", futs[1]:result())
  end)

  it("add_done_callback to a done future raises", function()
    local loop, futs = closed_loop_futures(1)
    futs[1]:set_result(1)
    loop:close()
    raises(futs[1].add_done_callback, closed_error, futs[1], print)
  end)

  it("while loop:close() closes a transport, connection_lost may complete awaited futures",
     function()
    local loop = eddy.new_event_loop()
    local reports = {}
    loop:set_exception_handler(function(_, context) reports[#reports + 1] = context end)
    local server_side = loop:create_future()
    local server = loop:run_until_complete(function()
      return loop:create_server(function()
        return {connection_made = function(_, t) server_side:set_result(t) end}
      end, "127.0.0.1", 0)
    end)
    local port = server.sockets[1]:getsockname()[2]
    local lost = loop:create_future()
    local waiter = loop:create_task(function() lost:await() end)
    loop:run_until_complete(function()
      loop:create_connection(function()
        return {connection_lost = function() lost:set_result(true) end}
      end, "127.0.0.1", port)
      eddy.wait_for(server_side, 5)
    end)
    loop:close()
    assert.is_true(lost:result())  -- its waiting task was dropped silently
    assert.is_false(waiter:done())
    assert.same({}, reports)
  end)
end)

describe("Future:await", function()
  it("returns the result values when the future completes", async(function(loop)
    local fut = loop:create_future()
    loop:call_later(0.005, fut.set_result, fut, "a", "b")
    local a, b = fut:await()
    assert.equal("a", a)
    assert.equal("b", b)
    assert.same({"a", "b"}, {eddy.await(fut)})  -- done: at once
  end))

  it("raises the future's exception", async(function(loop)
    local fut = loop:create_future()
    loop:call_soon(fut.set_exception, fut, errors.LookupError("nothing"))
    local err = raises(fut.await, errors.LookupError, fut)
    assert.equal("nothing", err.message)
  end))

  it("several tasks may await one future", async(function(loop)
    local fut = loop:create_future()
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = loop:create_task(function() return fut:await() * i end)
    end
    turns()
    fut:set_result(10)
    for i = 1, 3 do assert.equal(10 * i, tasks[i]:await()) end
  end))

  it("outside a task and outside a loop runs the loop until done (top-level suspension)",
     function()
    local loop = eddy.new_event_loop()
    local fut = loop:create_future()
    loop:call_later(0.005, fut.set_result, fut, "top")
    assert.equal("top", fut:await())
    loop:close()
  end)

  it("from a plain callback raises RuntimeError naming eddy.run", async(function(loop)
    local fut = loop:create_future()
    local err
    loop:call_soon(function() _, err = pcall(fut.await, fut) end)
    turns()
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.matches("eddy.run", err.message, 1, true)
    fut:cancel()
  end))

  -- API.md §1, §5 (await is S) and §11 to the letter: a done future too.
  it("on a done future, from a plain callback, still raises RuntimeError; the result stays", async(function(loop)
    local fut = loop:create_future()
    fut:set_result("kept", 2)
    local errs = checks.from_callback(loop, {{"method", fut.await, fut}, {"eddy_await", eddy.await, fut}})
    assert.matches("^RuntimeError: await%(%) cannot suspend here: .*eddy%.run", errs.method)
    assert.matches("^RuntimeError: await%(%) cannot suspend here: .*eddy%.run", errs.eddy_await)
    assert.same({"kept", 2}, {fut:await()})  -- in a task it returns at once
  end))
end)

-- Two full collections: finalizers run, then what they freed goes too.
local function collect()
  collectgarbage()
  collectgarbage()
end

-- Run body(loop) on a fresh loop, collect, and check that the exception
-- handler got no report.
local function nothing_reported(body)
  local reports = run_collecting(function(loop)
    body(loop)
    collect()
    eddy.sleep(0)
  end)
  assert.equal(0, #reports)
end

describe("unretrieved exceptions", function()

  it("are reported when the future is collected (test_tb_logger_exception_unretrieved)", function()
    local reports = run_collecting(function(loop)
      do
        local fut = loop:create_future()
        fut:set_exception(errors.ValueError("never seen"))
      end
      collect()
    end)
    assert.equal(1, #reports)
    assert.equal("Future exception was never retrieved", reports[1].message)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    assert.equal("userdata", type(reports[1].future))
  end)

  it("are not reported once retrieved by result() or exception() (test_tb_logger_exception_retrieved)",
     function()
    local reports = run_collecting(function(loop)
      do
        local a, b = loop:create_future(), loop:create_future()
        a:set_exception(errors.ValueError())
        b:set_exception(errors.ValueError())
        a:exception()
        pcall(b.result, b)
      end
      collect()
    end)
    assert.equal(0, #reports)
  end)

  it("are not reported once cancel() was called on the done future or task, as asyncio",
     function()
    -- asyncio's cancel() clears the log flag before it looks at the state:
    -- whoever cancels has given up on the outcome.
    nothing_reported(function(loop)
      local fut = loop:create_future()
      fut:set_exception(errors.ValueError("given up on"))
      assert.is_false(fut:cancel())
      local task = loop:create_task(function() error(errors.ValueError("given up on")) end)
      eddy.sleep(0)
      eddy.sleep(0)
      assert.is_true(task:done())
      assert.is_false(task:cancel())
    end)
  end)

  it("nothing is reported for results or cancellations (test_tb_logger_not_called_after_cancel)",
     function()
    local reports = run_collecting(function(loop)
      do
        local a, b = loop:create_future(), loop:create_future()
        a:set_result(1)
        b:cancel()
      end
      collect()
    end)
    assert.equal(0, #reports)
  end)
end)

describe("more of test_futures", function()

  -- CPython's _make_callback(bag, thing): a callback that records thing.
  local function recorder(bag, thing) return function() bag[#bag + 1] = thing end end

  it("test_callbacks_remove_first_callback / test_callbacks_remove_third_callback", async(function(loop)
    for _, case in ipairs {{1, {17, 100}}, {3, {42, 17}}} do
      local removed, expected = case[1], case[2]
      local bag, fut = {}, loop:create_future()
      local cbs = {recorder(bag, 42), recorder(bag, 17), recorder(bag, 100)}
      for _, cb in ipairs(cbs) do fut:add_done_callback(cb) end
      assert.equal(1, fut:remove_done_callback(cbs[removed]))
      assert.equal(0, fut:remove_done_callback(cbs[removed]))
      assert.same({}, bag)
      fut:set_result("foo")
      turns()
      assert.same(expected, bag)
      assert.equal("foo", fut:result())
    end
  end))

  it("test_schedule_callbacks_list_mutation_1: a callback removing the others once they are scheduled",
     async(function(loop)
    local bag, fut = {}, loop:create_future()
    local str = recorder(bag, "str")
    local removed
    fut:add_done_callback(function(f) removed = f:remove_done_callback(str) end)
    fut:add_done_callback(str)
    fut:add_done_callback(str)
    fut:set_result(1)
    turns()
    assert.equal(0, removed)  -- set_result scheduled them all already
    assert.same({"str", "str"}, bag)
  end))

  -- Python compares callbacks with ==, so an __eq could change the list
  -- while remove_done_callback walks it (bpo-28963, bpo-30828); eddy
  -- compares with rawequal: no code of the caller runs during the walk.
  it("test_remove_done_callbacks_list_mutation / test_schedule_callbacks_list_mutation_2: no __eq runs",
     async(function(loop)
    local bag, fut = {}, loop:create_future()
    local id = recorder(bag, "id")
    local eq_calls = 0
    local callable = {__call = function() bag[#bag + 1] = "evil" end}
    callable.__eq = function()
      eq_calls = eq_calls + 1
      fut:remove_done_callback(id)
      fut:add_done_callback(id)
      return true
    end
    local registered = setmetatable({}, callable)
    fut:add_done_callback(registered)
    for _ = 1, 63 do fut:add_done_callback(id) end
    assert.equal(0, fut:remove_done_callback(setmetatable({}, callable)))
    assert.equal(0, eq_calls)
    fut:set_result(1)
    turns()
    assert.equal(64, #bag)
    assert.equal("evil", bag[1])
  end))

  it("test_future_del_collect: a result whose finalizer runs a full collection", function()
    nothing_reported(function(loop)
      for _ = 1, 100 do
        local fut = loop:create_future()
        fut:set_result(setmetatable({}, {__gc = function() collectgarbage() end}))
      end
    end)
  end)

  it("test_tb_logger_abandoned / test_tb_logger_result_unretrieved / test_tb_logger_result_retrieved"
     .. " / test_tb_logger_exception_result_retrieved: nothing to report", function()
    nothing_reported(function(loop)
      local _abandoned, unretrieved, retrieved, failed =
        loop:create_future(), loop:create_future(), loop:create_future(), loop:create_future()
      unretrieved:set_result(42)
      retrieved:set_result(42)
      assert.equal(42, retrieved:result())
      failed:set_exception(errors.RuntimeError("boom"))
      checks.expect_error(errors.RuntimeError, failed.result, failed)
    end)
  end)

  it("test_future_exception_never_retrieved / test_future_exception_never_retrieved_debug"
     .. " / test_future_source_traceback: the report, and in debug mode where the future was made",
     function()
    local reports = run_collecting(function(loop)
      local function fail_one()
        local fut = loop:create_future()
        fut:set_exception(errors.ValueError("never retrieved"))
      end
      fail_one()
      collect()
      loop:set_debug(true)
      local function made_here() fail_one() end
      made_here()
      collect()
      loop:set_debug(false)
      eddy.sleep(0)
    end)
    assert.equal(2, #reports)
    for _, r in ipairs(reports) do
      assert.equal("Future exception was never retrieved", r.message)
      assert.is_true(errors.is(r.exception, errors.ValueError))
    end
    assert.is_nil(reports[1].source_traceback)
    assert.matches("in upvalue 'fail_one'", reports[2].source_traceback)
    assert.matches("in local 'made_here'", reports[2].source_traceback)
  end)
end)

describe("test_futures2", function()
  it("test_future_traceback: awaiting a failed task again and again does not grow its traceback",
     async(function(loop)
    local function raise_exc() error(errors.ValueError("42")) end
    local task = loop:create_task(raise_exc)
    local first
    for _ = 1, 5 do
      local err = checks.expect_error(errors.ValueError, task.await, task)
      first = first or err.traceback
      assert.equal(first, err.traceback)
    end
    assert.matches("in function .error.", first)
  end))

  -- gh-96704: the exception handler runs in the context of the task or
  -- callback that failed, so it sees what they set.
  it("test_task_exc_handler_correct_context / test_handle_exc_handler_correct_context",
     async(function(loop)
    local name = eddy.ContextVar("name", "foo")
    local seen = {}
    loop:set_exception_handler(function(_, context)
      seen[#seen + 1] = context.message:match("^%S+") .. " " .. name:get()
    end)
    local ok, err = pcall(function()
      do
        loop:create_task(function() name:set("bar"); error(errors.ValueError("1/0")) end)
      end
      loop:call_soon(function() name:set("baz"); error(errors.ValueError("1/0")) end)
      eddy.sleep(0)
      eddy.sleep(0)
      collectgarbage()
      collectgarbage()
      eddy.sleep(0)
    end)
    loop:set_exception_handler(nil)
    assert(ok, err)
    table.sort(seen)
    assert.same({"Exception baz", "Task bar"}, seen)
  end))

  it("test_recursive_repr_for_pending_tasks: a task whose result holds itself has a repr", async(function(loop)
    local waiter = eddy.wait_for(loop:create_task(function()
      return loop:create_task(function() return eddy.all_tasks() end)
    end), 10)
    eddy.wait_for(waiter, 10)
    assert.matches("^<Task finished", tostring(waiter))
  end))
end)
