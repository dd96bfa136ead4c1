-- Task composition (API.md §6): wait, shield, as_completed, gather
-- cancellation; ported from CPython's Lib/test/test_asyncio/test_tasks.py
-- (test names cited).  wait_for is in timeouts_spec.lua.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error = checks.expect_error

local function sleeper(delay, ...)
  local results = table.pack(...)
  return function() eddy.sleep(delay); return table.unpack(results, 1, results.n) end
end

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

describe("eddy.wait", function()
  it("test_wait: ALL_COMPLETED by default", async(function(loop)
    local a = loop:create_task(sleeper(0.01, "a"))
    local b = loop:create_task(sleeper(0.02, "b"))
    local done, pending = eddy.wait({b, a})
    assert.equals(2, #done)
    assert.equals(0, #pending)
    assert.is_true(contains(done, a) and contains(done, b))
  end))

  it("test_wait_first_completed", async(function(loop)
    local a = loop:create_task(sleeper(10))
    local b = loop:create_task(sleeper(0.01))
    local done, pending = eddy.wait({b, a}, {return_when = eddy.FIRST_COMPLETED})
    assert.same({b}, done)
    assert.same({a}, pending)
    a:cancel()
  end))

  it("test_wait_really_done: already done futures count", async(function(loop)
    local f = loop:create_future()
    f:set_result(1)
    local b = loop:create_task(sleeper(10))
    local done, pending = eddy.wait({f, b}, {return_when = eddy.FIRST_COMPLETED})
    assert.same({f}, done)
    assert.same({b}, pending)
    b:cancel()
  end))

  it("test_wait_first_exception", async(function(loop)
    local a = loop:create_task(sleeper(10))
    local b = loop:create_task(function() error(errors.ZeroDivisionError and nil or errors.ValueError("x")) end)
    local done, pending = eddy.wait({b, a}, {return_when = eddy.FIRST_EXCEPTION})
    assert.same({b}, done)
    assert.same({a}, pending)
    assert.is_true(errors.is(b:exception(), errors.ValueError))
    a:cancel()
  end))

  it("test_wait_first_exception_in_wait: no exception means all", async(function(loop)
    local a = loop:create_task(sleeper(0.005))
    local b = loop:create_task(sleeper(0.01))
    local done, pending = eddy.wait({a, b}, {return_when = eddy.FIRST_EXCEPTION})
    assert.equals(2, #done)
    assert.equals(0, #pending)
  end))

  it("test_wait_with_timeout", async(function(loop)
    local a = loop:create_task(sleeper(0.001))
    local b = loop:create_task(sleeper(10))
    local t0 = loop:time()
    -- (a timeout well past the 1 ms sleeper, as in test_as_completed_with_timeout)
    local done, pending = eddy.wait({a, b}, {timeout = 0.3})
    assert.same({a}, done)
    assert.same({b}, pending)
    assert.is_true(loop:time() - t0 < 1)
    b:cancel()
  end))

  it("test_wait_concurrent_complete", async(function(loop)
    local a = loop:create_task(sleeper(0.001))
    local b = loop:create_task(sleeper(0.001))
    local done, pending = eddy.wait({a, b}, {timeout = 1})
    assert.equals(2, #done)
    assert.equals(0, #pending)
  end))

  it("test_wait_duplicate_coroutines / the same future twice counts once", async(function(loop)
    local a = loop:create_task(sleeper(0.001, "x"))
    local done = eddy.wait({a, a})
    assert.same({a}, done)
  end))

  it("test_wait_errors, test_wait_invalid_args: empty set, bad return_when, a single future", async(function(loop)
    expect_error(errors.ValueError, eddy.wait, {})
    local f = loop:create_future()
    expect_error(errors.ValueError, eddy.wait, {f}, {return_when = "nope"})
    local ok, err = pcall(eddy.wait, f)
    assert.is_false(ok)
    assert.matches("array of awaitables expected", err)
    ok, err = pcall(eddy.wait, {42})
    assert.is_false(ok)
    assert.matches("awaitable expected", err)
  end))

  it("functions are run as tasks", async(function()
    local done = eddy.wait({sleeper(0.001, 5)})
    assert.equals(5, done[1]:result())
  end))

  it("cancelling the waiting task leaves the futures alone", async(function(loop)
    local a = loop:create_task(sleeper(10))
    local w = loop:create_task(function() return eddy.wait({a}) end)
    eddy.sleep(0)
    w:cancel()
    expect_error(errors.CancelledError, w.await, w)
    assert.is_false(a:done())
    a:cancel()
  end))
end)

describe("eddy.shield", function()
  it("test_shield_result", async(function(loop)
    local inner = loop:create_future()
    local outer = eddy.shield(inner)
    inner:set_result(42, 43)
    assert.same({42, 43}, {outer:await()})
  end))

  it("test_shield_exception", async(function(loop)
    local inner = loop:create_future()
    local outer = eddy.shield(inner)
    inner:set_exception(errors.ValueError("boom"))
    expect_error(errors.ValueError, outer.await, outer)
  end))

  it("test_shield_cancel_inner", async(function(loop)
    local inner = loop:create_future()
    local outer = eddy.shield(inner)
    inner:cancel()
    eddy.sleep(0)
    assert.is_true(outer:cancelled())
  end))

  it("test_shield_cancel_outer: the inner future keeps going", async(function(loop)
    local inner = loop:create_future()
    local outer = eddy.shield(inner)
    outer:cancel()
    eddy.sleep(0)
    assert.is_true(outer:cancelled())
    assert.is_false(inner:cancelled())
    inner:set_result(1)
  end))

  it("an inner error that ends up nobody's is marked retrieved (shield's _inner_done_callback)",
     async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, context) reports[#reports + 1] = context.message end)
    do
      local inner = loop:create_future()
      local outer = eddy.shield(inner)
      outer:cancel()  -- in the same turn as the inner failure
      inner:set_exception(errors.ValueError("nobody's"))
    end
    eddy.sleep(0)
    eddy.sleep(0)
    collectgarbage()
    collectgarbage()
    eddy.sleep(0)
    loop:set_exception_handler(nil)
    assert.same({}, reports)
  end))

  it("test_shield_effect: cancelling the awaiting task does not cancel the shielded one", async(function(loop)
    local proof = 0
    local waiter = loop:create_future()
    local function inner() waiter:await(); proof = proof + 1 end
    local inner_task = loop:create_task(inner)
    local function outer() eddy.shield(inner_task):await(); proof = proof + 100 end
    local f = loop:create_task(outer)
    eddy.sleep(0)
    f:cancel()
    expect_error(errors.CancelledError, f.await, f)
    waiter:set_result(nil)
    inner_task:await()
    assert.equals(1, proof)
  end))

  it("test_shield_gather", async(function(loop)
    local child1, child2 = loop:create_future(), loop:create_future()
    local parent = loop:create_task(function() return eddy.gather(child1, child2) end)
    local outer = eddy.shield(parent)
    eddy.sleep(0)
    outer:cancel()
    child1:set_result(1)
    child2:set_result(2)
    assert.same({1, 2}, {parent:await()})
  end))

  it("test_shield_coroutine_use_running_loop, test_shield_shortcut: a function is run as a task; "
     .. "done ones come back as is", async(function(loop)
    local outer = eddy.shield(sleeper(0.001, 7))
    assert.equals(loop, outer:get_loop())
    assert.equals(7, outer:await())
    local f = loop:create_future()
    f:set_result(1)
    assert.equals(f, eddy.shield(f))
    assert.equals(1, eddy.shield(f):await())
    assert.has_error(function() eddy.shield(42) end)
  end))
end)

describe("eddy.as_completed", function()
  it("test_as_completed: completion order", async(function(loop)
    -- 100 ms apart: a loaded machine may stall tens of ms between two
    -- tasks' first steps, which start these sleeps
    local a = loop:create_task(sleeper(0.3, "a"))
    local b = loop:create_task(sleeper(0.1, "b"))
    local c = loop:create_task(sleeper(0.2, "c"))
    local order = {}
    for fut in eddy.as_completed({a, b, c}) do
      order[#order + 1] = fut:await()
    end
    assert.same({"b", "c", "a"}, order)
  end))

  it("test_as_completed_with_timeout", async(function(loop)
    local a = loop:create_task(sleeper(10, "a"))
    local b = loop:create_task(sleeper(0.001, "b"))
    local got = {}
    local ok, err = pcall(function()
      -- (a timeout well past the 1 ms sleeper: on a loaded machine a stalled
      -- iteration could find both timers due, and the timeout runs first)
      for fut in eddy.as_completed({a, b}, {timeout = 0.3}) do
        got[#got + 1] = fut:result()
      end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.TimeoutError))
    assert.same({"b"}, got)
    a:cancel()
  end))

  it("test_as_completed_with_unused_timeout", async(function(loop)
    local n = 0
    for fut in eddy.as_completed({sleeper(0.001, "x")}, {timeout = 1}) do
      assert.equals("x", fut:result())
      n = n + 1
    end
    assert.equals(1, n)
  end))

  it("test_as_completed_duplicate_coroutines / errors arrive through the future", async(function(loop)
    local bad = loop:create_task(function() error(errors.ValueError("bad")) end)
    local good = loop:create_task(sleeper(0.001, 1))
    local errs, oks = 0, 0
    for fut in eddy.as_completed({bad, good, bad}) do
      if pcall(fut.result, fut) then oks = oks + 1 else errs = errs + 1 end
    end
    assert.same({1, 1}, {errs, oks})
  end))

  it("test_as_completed_resume_iterator: a for that breaks can be resumed", async(function()
    local function coro(i) return function() return i end end
    local it = eddy.as_completed({coro(0), coro(1), coro(2), coro(3)})
    local got = {}
    for fut in it do
      got[#got + 1] = fut:await()
      if #got == 2 then break end
    end
    for fut in it do got[#got + 1] = fut:await() end
    table.sort(got)
    assert.same({0, 1, 2, 3}, got)
  end))

  it("test_as_completed_same_tasks_in_as_out: tasks come back as themselves", async(function(loop)
    local tb = loop:create_task(function() return "b" end)
    local td = loop:create_task(function() return "d" end)
    local out, n = {}, 0
    for fut in eddy.as_completed({function() return "a" end, tb, function() return "c" end, td}) do
      out[fut] = true
      n = n + 1
    end
    assert.equals(4, n)
    assert.is_true(out[tb] and out[td])
  end))

  it("test_as_completed_with_timeout: futures done before the timeout come first, then one TimeoutError per pending",
     async(function(loop)
    local a = loop:create_task(sleeper(0.001, "a"))
    local b = loop:create_task(sleeper(10, "b"))
    local c = loop:create_task(sleeper(10, "c"))
    local it = eddy.as_completed({a, b, c}, {timeout = 0.3})  -- see above
    assert.equals("a", it():result())
    expect_error(errors.TimeoutError, it)
    expect_error(errors.TimeoutError, it)
    assert.is_nil(it())
    b:cancel(); c:cancel()
  end))

  it("test_as_completed_invalid_args", async(function(loop)
    assert.has_error(function() eddy.as_completed(loop:create_future()) end)
    local n = 0
    for _ in eddy.as_completed({}) do n = n + 1 end
    assert.equals(0, n)
  end))
end)

describe("eddy.gather cancellation", function()
  it("test_cancel_gather_1: cancelling gather's caller cancels the children", async(function(loop)
    local child = loop:create_task(sleeper(10))
    local t = loop:create_task(function() return eddy.gather(child) end)
    eddy.sleep(0)
    t:cancel()
    expect_error(errors.CancelledError, t.await, t)
    assert.is_true(child:cancelled())
  end))

  it("test_gather_shield: a shielded child survives", async(function(loop)
    local child = loop:create_task(sleeper(0.01, "ok"))
    local t = loop:create_task(function() return eddy.gather(eddy.shield(child)) end)
    eddy.sleep(0)
    t:cancel()
    expect_error(errors.CancelledError, t.await, t)
    assert.equals("ok", child:await())
  end))

  it("test_return_exceptions: a cancelled child's CancelledError is a result", async(function(loop)
    local a = loop:create_task(sleeper(10))
    local b = loop:create_task(sleeper(0.001, 2))
    loop:call_soon(function() a:cancel() end)
    local ra, rb = eddy.gather(a, b, {return_exceptions = true})
    assert.is_true(errors.is(ra, errors.CancelledError))
    assert.equals(2, rb)
  end))
end)

describe("eddy.gather", function()
  it("test_constructor_empty_sequence: gather() returns nothing at once", async(function()
    assert.equals(0, select("#", eddy.gather()))
    assert.equals(0, select("#", eddy.gather({return_exceptions = true})))
  end))

  it("test_cancel_gather_2: cancelling the caller raises CancelledError with the message, even with return_exceptions",
     async(function(loop)
    local child = loop:create_task(sleeper(10))
    local t = loop:create_task(function() return eddy.gather(child, {return_exceptions = true}) end)
    eddy.sleep(0)
    t:cancel("my message")
    local err = expect_error(errors.CancelledError, t.await, t)
    assert.equals("my message", err.message)
    assert.is_true(t:cancelled())
    assert.is_true(child:cancelled())
  end))

  it("test_cancellation_broadcast: every child is cancelled and the caller too", async(function(loop)
    local a, b = loop:create_task(sleeper(10)), loop:create_task(sleeper(10))
    local t = loop:create_task(function() return eddy.gather(a, b, {return_exceptions = true}) end)
    eddy.sleep(0)
    assert.is_true(t:cancel())
    expect_error(errors.CancelledError, t.await, t)
    assert.is_true(a:cancelled() and b:cancelled() and t:cancelled())
  end))

  it("children that swallow the cancellation still make gather raise CancelledError", async(function(loop)
    local child = loop:create_task(function() pcall(eddy.sleep, 10); return "swallowed" end)
    local t = loop:create_task(function() return eddy.gather(child, {return_exceptions = true}) end)
    eddy.sleep(0)
    t:cancel()
    expect_error(errors.CancelledError, t.await, t)
    assert.equals("swallowed", child:await())
  end))

  it("test_one_cancellation: a child cancelled alone makes gather raise, the others go on", async(function(loop)
    local a, b = loop:create_task(sleeper(10)), loop:create_task(sleeper(0.01, 2))
    local t = loop:create_task(function() return eddy.gather(a, b) end)
    eddy.sleep(0)
    a:cancel("child msg")
    local err = expect_error(errors.CancelledError, t.await, t)
    assert.equals("child msg", err.message)
    assert.is_false(b:cancelled())
    assert.equals(2, b:await())
  end))

  it("bad input: a non-awaitable names gather and its argument, and starts nothing; "
     .. "the exception handler hears nothing (test_issue46672)", async(function(loop)
    local started = false
    checks.raises(eddy.gather, "bad argument #2 to 'gather'", function() started = true end, 42)
    eddy.sleep(0)
    assert.is_false(started)
  end))
end)

describe("suspending composition outside a task", function()
  it("from a plain callback: RuntimeError naming the function, nothing started", async(function(loop)
    local errs, started = {}, false
    local function fn() started = true end
    loop:call_soon(function()
      errs.gather = select(2, pcall(eddy.gather, fn))
      errs.wait = select(2, pcall(eddy.wait, {fn}))
      errs.wait_for = select(2, pcall(eddy.wait_for, fn, 1))
    end)
    eddy.sleep(0)
    eddy.sleep(0)
    for name, err in pairs(errs) do
      assert.is_true(errors.is(err, errors.RuntimeError), name)
      assert.matches(name .. "() cannot suspend here", err.message, 1, true)
    end
    assert.is_false(started)
  end))

  -- API.md §1 and §11 to the letter: raised before anything is made.
  it("from a plain callback: gather, and an as_completed step, with nothing to wait for raise too",
     async(function(loop)
    local errs = checks.from_callback(loop, {
      {"gather", eddy.gather},
      {"as_completed", function() for _ in eddy.as_completed({}) do end end},
    })
    for _, name in ipairs {"gather", "as_completed"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", errs[name])
    end
  end))

  it("in a task behind a C call that cannot yield: RuntimeError naming the function, even when done",
     async(function()
    local fut = eddy.get_running_loop():create_future()
    fut:set_result(1)
    local lock = eddy.Lock()
    local errs = {}
    table.sort({2, 1}, function(a, b)  -- a C function: its comparator cannot yield
      errs.gather = select(2, pcall(eddy.gather, fut))
      errs.acquire = select(2, pcall(lock.acquire, lock))
      errs.await = select(2, pcall(fut.await, fut))
      return a < b
    end)
    for _, name in ipairs {"gather", "acquire", "await"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", tostring(errs[name]))
    end
    assert.is_false(lock:locked())
    assert.equal(1, eddy.gather(fut))  -- out of it, in the task, at once
  end))

  it("from a plain callback: sleep raises before its timer is made (nothing keeps the loop alive)",
     function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      eddy.get_event_loop():call_soon(function() print(select(2, pcall(eddy.sleep, 3600))) end)
    ]])
    assert.equal(0, code, out)
    assert.matches("^RuntimeError: sleep%(%) cannot suspend here", out)
  end)

  it("at the top level, wait and wait_for run the loop until done (top-level suspension)", function()
    local loop = eddy.new_event_loop()
    local f = loop:create_future()
    loop:call_later(0.005, f.set_result, f, "top")
    local done, pending = eddy.wait({f})
    assert.same({{f}, {}}, {done, pending})
    local g = loop:create_future()
    loop:call_later(0.005, g.set_result, g, "wf")
    assert.equals("wf", eddy.wait_for(g, 5))
    local h = loop:create_future()
    expect_error(errors.TimeoutError, eddy.wait_for, h, 0.005)
    assert.is_true(h:cancelled())
    loop:close()
  end)
end)

describe("done callbacks of the composition functions", function()
  -- asyncio removes its callbacks once done with them: waiting again and
  -- again on a long-lived future must not pile them up on it (each left
  -- behind keeps a closure and a future alive: about 500 bytes).
  local function growth_kb(fn)
    fn()
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    for _ = 1, 2000 do fn() end
    collectgarbage(); collectgarbage()
    return collectgarbage("count") - before
  end

  it("wait with a timeout leaves no callback on the pending future", async(function(loop)
    local fut = loop:create_future()
    assert.is_true(growth_kb(function() eddy.wait({fut}, {timeout = 0}) end) < 100)
    fut:cancel()
  end))

  it("shield: the outer future done, its callback on the inner one goes", async(function(loop)
    local inner = loop:create_future()
    assert.is_true(growth_kb(function() eddy.shield(inner):cancel(); eddy.sleep(0) end) < 100)
    local ran = 0
    inner:add_done_callback(function() ran = ran + 1 end)
    inner:set_result(1)
    eddy.sleep(0)
    assert.equals(1, ran)
  end))

  it("as_completed past its timeout leaves no callback behind", async(function(loop)
    local fut = loop:create_future()
    assert.is_true(growth_kb(function()
      pcall(function() for _ in eddy.as_completed({fut}, {timeout = 0}) do end end)
    end) < 100)
    fut:cancel()
  end))
end)

describe("options tables", function()
  it("wait and as_completed take timeout only in the options table (keyword-only in asyncio)",
     async(function(loop)
    local f = loop:create_future()
    checks.raises(eddy.wait, "bad argument #2 to 'wait' (options table expected, got number)", {f}, 5)
    checks.raises(eddy.as_completed, "bad argument #2 to 'as_completed' (options table expected, got number)",
                  {f}, 5)
    f:cancel()
  end))

  -- API.md §1: "A trailing plain table (no metatable) after all
  -- positionals is the options table".  These have no keyword-only
  -- parameter in asyncio (3.10 removed shield's and wait_for's loop=), so
  -- any option is an unexpected keyword, asyncio's TypeError.
  it("shield, wait_for, timeout, timeout_at and TaskGroup take no option", async(function(loop)
    local f = loop:create_future()
    checks.raises(eddy.shield, "bad argument #2 to 'shield' (unknown option 'loop')", f, {loop = loop})
    checks.raises(eddy.wait_for, "bad argument #3 to 'wait_for' (unknown option 'loop')", f, 1, {loop = loop})
    checks.raises(eddy.wait_for, "bad argument #3 to 'wait_for' (options table expected, got number)", f, 1, 2)
    checks.raises(eddy.timeout, "bad argument #2 to 'timeout' (unknown option 'loop')", 1, {loop = loop})
    checks.raises(eddy.timeout_at, "bad argument #2 to 'timeout_at' (unknown option 'loop')", nil, {loop = loop})
    checks.raises(eddy.TaskGroup, "bad argument #1 to 'TaskGroup' (unknown option 'loop')", {loop = loop})
    assert.is_false(f:done())  -- nothing was started on it
    -- an empty table holds no keyword
    f:set_result(7)
    assert.equal(7, eddy.wait_for(f, 1, {}))
    assert.equal(f, eddy.shield(f, {}))
    do
      local t <close> = eddy.timeout(5, {})
      local tg <close> = eddy.TaskGroup({})
    end
  end))
end)

describe("eddy.as_completed, concurrent steps", function()
  it("test_as_completed_concurrent: two tasks iterating at once each get a future", async(function(loop)
    local a, b = loop:create_task(sleeper(0.01, "a")), loop:create_task(sleeper(0.02, "b"))
    local it = eddy.as_completed({a, b})
    local t1 = loop:create_task(function() return it():await() end)
    local t2 = loop:create_task(function() return it():await() end)
    local done = eddy.wait({t1, t2}, {timeout = 2})
    assert.equals(2, #done)
    local got = {t1:result(), t2:result()}
    table.sort(got)
    assert.same({"a", "b"}, got)
    assert.is_nil(it())
  end))

  it("a step past the last claimed future ends at once; a cancelled step gives its claim back",
     async(function(loop)
    local f = loop:create_future()
    local it = eddy.as_completed({f})
    local t1 = loop:create_task(it)
    eddy.sleep(0)
    assert.is_nil(it())      -- t1 holds the only claim
    t1:cancel()
    expect_error(errors.CancelledError, t1.await, t1)
    f:set_result(1)
    assert.equals(f, it())   -- the claim came back
    assert.is_nil(it())
  end))
end)

describe("options tables of gather, wait and as_completed", function()
  -- asyncio raises TypeError for an unexpected keyword (API.md §1: an
  -- argument error here), so a misspelt option is not silently ignored.
  it("refuse an unknown option with an argument error", async(function(loop)
    local f = loop:create_future()
    f:set_result(1)
    local argerror = checks.argerror
    local err = argerror(function() eddy.gather(f, {return_exception = true}) end, 2, "gather")
    assert.matches("unknown option 'return_exception'", tostring(err), 1, true)
    argerror(function() eddy.gather({return_exception = true}) end, 1, "gather")
    err = argerror(function() eddy.wait({f}, {timout = 1}) end, 2, "wait")
    assert.matches("unknown option 'timout'", tostring(err), 1, true)
    argerror(function() eddy.as_completed({f}, {timeout = 1, time = 2}) end, 2, "as_completed")
    assert.same({1}, {eddy.gather(f, {return_exceptions = true})})
    local done = eddy.wait({f}, {timeout = 1, return_when = eddy.FIRST_COMPLETED})
    assert.equals(f, done[1])
  end))
end)

-- The rest of CPython's test_tasks for the composition functions: wait,
-- shield and as_completed outside a task, and GatherTestsBase's cases,
-- where gather's future is the task that calls eddy.gather.
describe("composition, more of test_tasks", function()
  it("test_wait_with_exception: a failed task is done like the others", async(function(loop)
    local a = loop:create_task(sleeper(0.01))
    local b = loop:create_task(function() eddy.sleep(0.015); error(errors.ValueError("really")) end)
    for _ = 1, 2 do
      local done, pending = eddy.wait({b, a})
      assert.equals(2, #done)
      assert.equals(0, #pending)
      local failed = 0
      for _, f in ipairs(done) do if f:exception() ~= nil then failed = failed + 1 end end
      assert.equals(1, failed)
    end
  end))

  it("test_yield_wait_does_not_shield_cancel: cancelling wait's caller leaves the task it waits for running",
     async(function(loop)
    local proof = 0
    local waiter = loop:create_future()
    local outer = loop:create_task(function()
      eddy.wait({loop:create_task(function() waiter:await(); proof = proof + 1 end)})
      proof = proof + 100
    end)
    eddy.sleep(0)
    outer:cancel()
    expect_error(errors.CancelledError, outer.await, outer)
    waiter:set_result(nil)
    eddy.sleep(0)
    eddy.sleep(0)
    assert.equals(1, proof)
  end))

  it("test_shield_coroutine_use_global_loop: outside a running loop, shield uses the current loop", function()
    local loop = eddy.new_event_loop()
    eddy.set_event_loop(loop)
    local outer = eddy.shield(function() return 42 end)
    assert.equals(loop, outer:get_loop())
    assert.equals(42, loop:run_until_complete(outer))
    eddy.set_event_loop(nil)
    loop:close()
  end)

  it("test_as_completed_coroutine_use_running_loop: a function's task comes back", async(function()
    local n = 0
    for fut in eddy.as_completed({function() return 42 end}) do
      assert.equals(42, fut:await())
      n = n + 1
    end
    assert.equals(1, n)
  end))

  -- gather(a, b, c) of functions awaiting the futures, in a task whose
  -- done callbacks are counted (GatherTestsBase's MockCallback).
  local function gathering(loop, futures, opts)
    local t = loop:create_task(function()
      local fns = {}
      for i, f in ipairs(futures) do fns[i] = function() return f:await() end end
      fns[#fns + 1] = opts
      return table.pack(eddy.gather(table.unpack(fns)))
    end)
    local calls = 0
    t:add_done_callback(function() calls = calls + 1 end)
    return t, function() return calls end
  end

  it("test_success, test_result_exception_success: gather waits for the last child, results in order",
     async(function(loop)
    for _, opts in ipairs{{}, {return_exceptions = false}, {return_exceptions = true}} do
      local a, b, c = loop:create_future(), loop:create_future(), loop:create_future()
      local t, calls = gathering(loop, {a, b, c}, opts)
      eddy.sleep(0)
      b:set_result(1)
      a:set_result(2)
      checks.turns(3)
      assert.equals(0, calls())
      assert.is_false(t:done())
      c:set_result(3)
      assert.same({2, 1, 3, n = 3}, t:await())
      eddy.sleep(0)
      assert.equals(1, calls())
    end
  end))

  it("test_one_exception: the first error is raised as is; what the others do later is ignored",
     async(function(loop)
    local a, b, c, d, e = loop:create_future(), loop:create_future(), loop:create_future(),
                          loop:create_future(), loop:create_future()
    local t, calls = gathering(loop, {a, b, c, d, e})
    eddy.sleep(0)
    local exc = errors.ValueError("zero")
    a:set_result(1)
    b:set_exception(exc)
    assert.equals(exc, expect_error(errors.ValueError, t.await, t))
    eddy.sleep(0)
    assert.equals(1, calls())
    c:set_result(3)
    d:cancel()
    e:set_exception(errors.RuntimeError())
    e:exception()
    checks.turns(3)
    assert.equals(1, calls())
  end))

  it("test_result_exception_one_cancellation: with return_exceptions, cancelled children are CancelledErrors",
     async(function(loop)
    local fs = {}
    for i = 1, 6 do fs[i] = loop:create_future() end
    local t = loop:create_task(function()
      return table.pack(eddy.gather(fs[1], fs[2], fs[3], fs[4], fs[5], fs[6], {return_exceptions = true}))
    end)
    eddy.sleep(0)
    local zde, rte = errors.ValueError("zde"), errors.RuntimeError("rte")
    fs[1]:set_result(1)
    fs[2]:set_exception(zde)
    fs[3]:cancel()
    checks.turns(3)
    assert.is_false(t:done())
    fs[4]:set_result(3)
    fs[5]:cancel()
    fs[6]:set_exception(rte)
    local res = t:await()
    assert.is_true(errors.is(res[3], errors.CancelledError))
    assert.is_true(errors.is(res[5], errors.CancelledError))
    res[3], res[5] = nil, nil
    assert.same({1, zde, nil, 3, nil, rte, n = 6}, res)
  end))

  it("test_duplicate_coroutines: the same function twice runs once, its result in each place",
     async(function()
    local runs = 0
    local function c() runs = runs + 1; return "abc" end
    local function d() return "def" end
    assert.same({"abc", "abc", "def", "abc"}, {eddy.gather(c, c, d, c)})
    assert.equals(1, runs)
  end))

  it("test_exception_marking: the second child's error is not reported as never retrieved",
     async(function(loop)
    local a, b = loop:create_future(), loop:create_future()
    local function inner(f)
      return function() f:await(); error(errors.RuntimeError("should not be ignored")) end
    end
    local outer = loop:create_task(function() eddy.gather(inner(a), inner(b)) end)
    eddy.sleep(0)
    a:set_result(nil)
    eddy.sleep(0)
    b:set_result(nil)
    checks.turns(3)
    assert.is_true(errors.is(outer:exception(), errors.RuntimeError))
    collectgarbage()
    collectgarbage()  -- a report would fail this case (eddy.test.async)
  end))

  it("test_constructor_heterogenous_futures: futures of two loops raise ValueError", async(function(loop)
    local other = eddy.new_event_loop()
    local ok, err = pcall(eddy.gather, loop:create_future(), other:create_future())
    other:close()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError), tostring(err))
  end))
end)
