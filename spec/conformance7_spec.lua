-- Conformance of the Future and Task objects (API.md §5), async
-- generators (§6) and eddy.errors (§9) with asyncio as CPython 3.13
-- implements it (Lib/asyncio/futures.py, tasks.py, exceptions.py;
-- Lib/test/test_asyncio/test_futures.py, test_tasks.py, test_asyncgen.py,
-- test_exception_group.py): behaviours that future_spec, task_spec,
-- asyncgen_spec, errors_spec and the other conformance and blackbox specs
-- do not already check.  Every wait bounded (eddy.test.async).
local eddy = require "eddy"
local errors = eddy.errors
local test = require "eddy.test"
local async, run_collecting = test.async, test.run_collecting
local checks = require "support.checks"
local cli = require "cli_helper"
local raises, argerror, turns = checks.raises, checks.argerror, checks.turns

-- A table error whose fields cannot be read or written: a "strict" object
-- (as class libraries make), whose __index and __newindex raise.
local function strict_error()
  return setmetatable({}, {
    __index = function(_, k) error("strict: no field " .. tostring(k)) end,
    __newindex = function(_, k) error("strict: cannot set " .. tostring(k)) end,
  })
end

-- Whether 'task' is among eddy.all_tasks(loop).
local function listed(task, loop)
  for _, t in ipairs(eddy.all_tasks(loop)) do
    if t == task then return true end
  end
  return false
end

describe("§5 Future (test_futures.py)", function()
  it("§5 a CancelledError given to set_exception is an outcome, not a cancellation: cancelled() "
     .. "is false and exception() returns it; a task awaiting it ends cancelled with its message "
     .. "(tasks.py __step catches CancelledError) while cancelling() stays 0", async(function(loop)
    local fut = loop:create_future()
    local err = errors.CancelledError("from set_exception")
    fut:set_exception(err)
    assert.is_true(fut:done())
    assert.is_false(fut:cancelled())
    assert.equal(err, fut:exception())
    assert.equal(err, raises(fut.result, errors.CancelledError, fut))
    local task = loop:create_task(function() return fut:await() end)
    local got = raises(task.await, errors.CancelledError, task)
    assert.equal("from set_exception", got.message)
    assert.is_true(task:cancelled())
    assert.equal(0, task:cancelling())
    assert.is_false(fut:cancelled())  -- the future itself stays finished
  end))

  it("§5 test_set_result_after_cancel: set_result and set_exception of a cancelled future raise "
     .. "InvalidStateError naming CANCELLED; a second cancel(msg) is false and keeps the first "
     .. "message; the done callbacks ran once", async(function(loop)
    local fut = loop:create_future()
    local calls = 0
    fut:add_done_callback(function() calls = calls + 1 end)
    assert.is_true(fut:cancel("first"))
    raises(fut.set_result, {errors.InvalidStateError, "CANCELLED"}, fut, 1)
    raises(fut.set_exception, {errors.InvalidStateError, "CANCELLED"}, fut, errors.ValueError())
    assert.is_false(fut:cancel("second"))
    turns(2)
    assert.equal(1, calls)
    for _ = 1, 2 do  -- each call raises the message anew
      assert.equal("first", raises(fut.exception, errors.CancelledError, fut).message)
      assert.equal("first", raises(fut.result, errors.CancelledError, fut).message)
    end
  end))

  it("§5 result(), exception() and await give back the very value set_exception got, every "
     .. "time: an error object, a number (not made a string), a plain table, false "
     .. "(Future.result raises self._exception)", async(function(loop)
    local tbl = {code = 7}
    for _, value in ipairs {errors.ValueError("v"), 42, 2.5, tbl, false, "text"} do
      local fut = loop:create_future()
      fut:set_exception(value)
      assert.is_true(fut:done())
      assert.equal(value, fut:exception())
      for _ = 1, 2 do
        local ok, got = pcall(fut.result, fut)
        assert.is_false(ok)
        assert.equal(value, got)
        assert.equal(math.type(value), math.type(got))
      end
      local ok, got = pcall(fut.await, fut)
      assert.is_false(ok)
      assert.equal(value, got)
    end
  end))

  it("§5 a done callback that adds another to its (done) future: the new one is scheduled with "
     .. "call_soon, so it runs after the callbacks scheduled already (test_futures "
     .. "add_done_callback after done)", async(function(loop)
    local fut = loop:create_future()
    local log = {}
    fut:add_done_callback(function(f)
      log[#log + 1] = 1
      f:add_done_callback(function() log[#log + 1] = 3 end)
      log[#log + 1] = "added"
    end)
    fut:add_done_callback(function() log[#log + 1] = 2 end)
    fut:set_result()
    assert.same({}, log)  -- never inside set_result
    turns(2)
    assert.same({1, "added", 2, 3}, log)
  end))

  it("§5/§3 done callbacks that raise: each error is reported on its own through the "
     .. "exception handler, with the message of a callback's Handle, and the callbacks after it "
     .. "still run in order", function()
    local log = {}
    local reports = run_collecting(function(loop)
      local fut = loop:create_future()
      fut:add_done_callback(function() log[#log + 1] = "a"; error(errors.ValueError("a")) end)
      fut:add_done_callback(function() log[#log + 1] = "b" end)
      fut:add_done_callback(function() log[#log + 1] = "c"; error(errors.LookupError("c")) end)
      fut:set_result(1)
      turns(2)
    end)
    assert.same({"a", "b", "c"}, log)
    assert.equal(2, #reports)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    assert.is_true(errors.is(reports[2].exception, errors.LookupError))
    for _, r in ipairs(reports) do
      assert.truthy(r.message:find("^Exception in callback"), r.message)
    end
  end)
end)

describe("§5 Task (test_tasks.py)", function()
  it("§5 default names come from one counter of the process, as asyncio's module-level "
     .. "_task_name_counter: tasks of two loops are numbered in turn", function()
    local one, two = eddy.new_event_loop(), eddy.new_event_loop()
    local a = one:create_task(function() end)
    local b = two:create_task(function() end)
    local c = one:create_task(function() end)
    local n = tonumber(a:get_name():match("^Task%-(%d+)$"))
    local names = {b:get_name(), c:get_name()}
    one:run_until_complete(c)
    two:run_until_complete(b)
    one:close()
    two:close()
    assert.same({"Task-" .. (n + 1), "Task-" .. (n + 2)}, names)
  end)

  it("§5 set_result and set_exception of a task raise RuntimeError with asyncio's text "
     .. "(tasks.py: 'Task does not support set_result() operation') and change nothing: the "
     .. "task goes on to its own result", async(function(loop)
    local task = loop:create_task(function() eddy.sleep(0) return "own" end)
    raises(task.set_result, {errors.RuntimeError, "Task does not support set_result() operation"},
           task, "forced")
    raises(task.set_exception,
           {errors.RuntimeError, "Task does not support set_exception() operation"},
           task, errors.ValueError("forced"))
    assert.is_false(task:done())
    assert.equal("own", task:await())
  end))

  it("§5 a task cancelled before its first step: cancel() is true but the task is not done yet "
     .. "and all_tasks() still lists it; one turn later it is cancelled, never ran, is no longer "
     .. "listed, and its done callback got it", async(function(loop)
    local ran = false
    local task = loop:create_task(function() ran = true end)
    local seen
    task:add_done_callback(function(t) seen = t end)
    assert.is_true(task:cancel("early"))
    assert.is_false(task:done())
    assert.equal(1, task:cancelling())
    assert.is_true(listed(task))
    turns(2)
    assert.is_true(task:cancelled())
    assert.is_false(ran)
    assert.is_false(listed(task))
    assert.equal(task, seen)
    assert.equal("early", raises(task.result, errors.CancelledError, task).message)
  end))

  it("§5 a task awaiting a task that someone else cancelled gets its CancelledError and ends "
     .. "cancelled too, yet only the inner one counts a cancellation request (cancelling())",
     async(function(loop)
    local inner = loop:create_task(function() eddy.sleep(10) end)
    local outer = loop:create_task(function() return inner:await() end)
    turns()
    inner:cancel("inner stopped")
    local err = raises(outer.await, errors.CancelledError, outer)
    assert.equal("inner stopped", err.message)
    assert.is_true(outer:cancelled())
    assert.equal(0, outer:cancelling())
    assert.equal(1, inner:cancelling())
  end))

  it("§5/§6 a finished task is out of all_tasks() already in its own done callback, where "
     .. "current_task() is nil; inside a coroutine.wrap generator a task runs, current_task() is "
     .. "that task", async(function(loop)
    local in_callback, current_in_callback = "unset", "unset"
    local task = loop:create_task(function()
      local gen = coroutine.wrap(function() coroutine.yield(eddy.current_task()) end)
      return gen()
    end)
    task:add_done_callback(function(t)
      in_callback = listed(t, loop)
      current_in_callback = eddy.current_task(loop)
    end)
    assert.equal(task, task:await())
    turns()
    assert.is_false(in_callback)
    assert.is_nil(current_in_callback)
  end))

  it("§5 cancel() from the task's own done callback returns false and changes nothing "
     .. "(Task.cancel of a done task)", async(function(loop)
    local answer
    local task = loop:create_task(function() return "kept" end)
    task:add_done_callback(function(t) answer = t:cancel("too late") end)
    task:await()
    turns()
    assert.is_false(answer)
    assert.is_false(task:cancelled())
    assert.equal(0, task:cancelling())
    assert.equal("kept", task:result())
  end))

  it("§5 uncancel() with no request pending stays at 0, never below (asyncio: 'if "
     .. "self._num_cancels_requested > 0'); a later cancel() counts 1 and still works",
     async(function(loop)
    local task = loop:create_task(function() eddy.sleep(10) end)
    turns()
    assert.equal(0, task:uncancel())
    assert.equal(0, task:uncancel())
    assert.equal(0, task:cancelling())
    assert.is_true(task:cancel())
    assert.equal(1, task:cancelling())
    raises(task.await, errors.CancelledError, task)
  end))

  it("§5 a task whose code swallows the CancelledError and returns is not cancelled: its "
     .. "result stands, cancelling() stays 1 (asyncio does not reset it by itself), and a second "
     .. "cancel() while it goes on waiting counts 2 and ends it", async(function(loop)
    local swallowed = loop:create_task(function()
      local ok = pcall(eddy.sleep, 10)
      return ok and "slept" or "swallowed"
    end)
    turns()
    swallowed:cancel()
    assert.equal("swallowed", swallowed:await())
    assert.is_false(swallowed:cancelled())
    assert.equal(1, swallowed:cancelling())

    local stubborn = loop:create_task(function()
      pcall(eddy.sleep, 10)
      eddy.sleep(10)
    end)
    turns()
    stubborn:cancel("one")
    turns()
    assert.is_false(stubborn:done())
    stubborn:cancel("two")
    local err = raises(stubborn.await, errors.CancelledError, stubborn)
    assert.equal("two", err.message)
    assert.equal(2, stubborn:cancelling())
  end))

  it("§5 a task giving up turns with bare coroutine.yield() calls is cancelled at the next one: "
     .. "the CancelledError is raised there (asyncio throws into the coroutine at its bare "
     .. "yield), <close> variables run, the body goes no further (found by this spec: the "
     .. "yield returned the error as values and the task ran to its result)", async(function(loop)
    local turns_taken, closed = 0, false
    local task = loop:create_task(function()
      local _ <close> = setmetatable({}, {__close = function() closed = true end})
      while turns_taken < 100 do
        turns_taken = turns_taken + 1
        coroutine.yield()
      end
      return "ran to the end"
    end)
    turns()
    local before = turns_taken
    assert.is_true(task:cancel("stop yielding"))
    local err = raises(eddy.wait_for, errors.CancelledError, task, 5)
    assert.equal("stop yielding", err.message)
    assert.is_true(task:cancelled())
    assert.is_true(closed)
    assert.equal(before, turns_taken)
  end))

  it("§5 the same for a task made from a coroutine object, and a body may catch the "
     .. "CancelledError at its bare yield with pcall and return (not cancelled then)",
     async(function(loop)
    local co_task = loop:create_task(coroutine.create(function()
      for _ = 1, 100 do coroutine.yield() end
      return "ran to the end"
    end))
    turns()
    co_task:cancel("stop")
    assert.equal("stop", raises(eddy.wait_for, errors.CancelledError, co_task, 5).message)
    assert.is_true(co_task:cancelled())

    local catcher = loop:create_task(function()
      for _ = 1, 100 do
        local ok, err = pcall(coroutine.yield)
        if not ok then return "caught " .. tostring(err) end
      end
      return "ran to the end"
    end)
    turns()
    catcher:cancel("polite")
    assert.equal("caught CancelledError: polite", eddy.wait_for(catcher, 5))
    assert.is_false(catcher:cancelled())
  end))

  it("§5/§6 a timeout scope around a loop of bare coroutine.yield() calls expires: the "
     .. "cancellation lands at a yield and the scope raises TimeoutError (it looped forever "
     .. "before coroutine.yield raised what the task was thrown)", async(function(loop)
    local t0 = loop:time()
    raises(function()
      local _ <close> = eddy.timeout(0.05)
      while true do coroutine.yield() end
    end, errors.TimeoutError)
    assert.is_true(loop:time() - t0 < 5)
    assert.equal(0, eddy.current_task():cancelling())
  end))

  it("§5 a value yielded to a task is no suspension: RuntimeError \"Task got bad yield: 42\" "
     .. "is raised at that yield (tasks.py __step), a future yielded instead of awaited too "
     .. "(asyncio: \"yield was used instead of yield from\"); the body may catch it and go on; "
     .. "a yield of nils is a bare yield", async(function(loop)
    local fut = loop:create_future()
    local task = loop:create_task(function()
      local ok, err = pcall(coroutine.yield, fut)
      coroutine.yield(nil)
      coroutine.yield(nil, nil)
      return ok, err
    end)
    local ok, err = task:await()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.equal("Task got bad yield: " .. tostring(fut), err.message)
    assert.is_false(fut:done())  -- not awaited, not cancelled
    local co_task = loop:create_task(coroutine.create(function()
      coroutine.yield(42)
      return "went on"
    end))
    raises(co_task.await, {errors.RuntimeError, "Task got bad yield: 42"}, co_task)
  end))

  it("§5 a cancel() that comes while a step's error waits to be raised (a bad yield, an await "
     .. "of the task itself, a future of another loop) replaces that error with its "
     .. "CancelledError, as asyncio's __step does with _must_cancel; caught, the task goes on "
     .. "and is not cancelled again (found by this spec: the RuntimeError came first)",
     async(function(loop)
    local other = eddy.new_event_loop()
    local foreign = other:create_future()
    local task
    local waits = {
      function() coroutine.yield(42) end,
      function() task:await() end,
      function() foreign:await() end,
    }
    for i, wait in ipairs(waits) do
      task = loop:create_task(function()
        local ok, err = pcall(wait)
        local slept = pcall(eddy.sleep, 0.01)
        return ok, err, slept
      end)
      turns()  -- the task made its bad wait; the error is raised at its next step
      task:cancel("cancelled " .. i)
      local ok, err, slept = task:await()
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.CancelledError), tostring(err))
      assert.equal("cancelled " .. i, err.message)
      assert.is_true(slept)
      assert.equal(1, task:cancelling())
    end
    other:close()
  end))

  it("§5/§9 a task's error that is not an error object comes back as itself: a number stays "
     .. "a number, false stays false (exception() returns it), a plain table is the same table",
     async(function(loop)
    local tbl = {code = 3}
    for _, value in ipairs {42, 1.5, false, tbl} do
      local task = loop:create_task(function() eddy.sleep(0) error(value) end)
      local ok, got = pcall(task.await, task)
      assert.is_false(ok)
      assert.equal(value, got)
      assert.equal(math.type(value), math.type(got))
      assert.equal(value, task:exception())
      assert.is_false(task:cancelled())
    end
  end))

  it("§5/§9 bad input: a task's error that is a strict object (its __index and __newindex "
     .. "raise) comes back as that same object, not replaced by the error of adding its "
     .. "traceback; a field of its own holds the traceback (found by this spec)",
     async(function(loop)
    local strict = strict_error()
    local task = loop:create_task(function() eddy.sleep(0) error(strict) end)
    local ok, got = pcall(task.await, task)
    assert.is_false(ok)
    assert.equal(strict, got)
    assert.equal(strict, task:exception())
    assert.truthy(rawget(strict, "traceback"):find("stack traceback", 1, true))
  end))

  it("§3/§9 bad input: a strict object raised by a callback reaches the exception handler as "
     .. "itself (found by this spec: the callback's message handler replaced it)", function()
    local strict = strict_error()
    local reports = run_collecting(function(loop)
      loop:call_soon(function() error(strict) end)
      turns(2)
    end)
    assert.equal(1, #reports)
    assert.equal(strict, reports[1].exception)
  end)

  it("§3/§9 bad input: a strict object raised by an exception handler is reported as itself "
     .. "(\"Unhandled error in exception handler\")", function()
    local strict = strict_error()
    local seen = {}
    local loop = eddy.new_event_loop()
    loop:set_exception_handler(function(_, context)
      seen[#seen + 1] = context
      if #seen == 1 then error(strict) end
    end)
    local default = loop.default_exception_handler
    loop.default_exception_handler = function(_, context) seen[#seen + 1] = context end
    loop:call_exception_handler({message = "first"})
    loop.default_exception_handler = default
    loop:close()
    assert.equal(2, #seen)
    assert.equal("Unhandled error in exception handler", seen[2].message)
    assert.equal(strict, seen[2].exception)
  end)
end)

describe("§6 async generators (test_asyncgen.py)", function()
  local counter = eddy.asyncgen(function(yield, log, n)
    log[#log + 1] = "started"
    for i = 1, n do yield(i) end
    log[#log + 1] = "ended"
  end)

  it("§6 aclose() of a generator never started: its body never runs, anext() then gives "
     .. "nothing, and shutdown_asyncgens has nothing of it to close", async(function(loop)
    local log = {}
    local gen = counter(log, 3)
    gen:aclose()
    assert.same({}, {gen:anext()})
    loop:shutdown_asyncgens()
    assert.same({}, log)
  end))

  it("§6 athrow(err) of a generator never started raises err at once without running the "
     .. "body, and closes it (the throw lands before the first line)", async(function()
    local log = {}
    local gen = counter(log, 3)
    local err = errors.ValueError("thrown early")
    assert.equal(err, raises(gen.athrow, errors.ValueError, gen, err))
    assert.same({}, {gen:anext()})
    assert.same({}, log)
  end))

  it("§6 athrow(Class) raises an instance of the class at the pending yield, as Python's "
     .. "athrow(ValueError) (found by this spec: the body caught the class itself)",
     async(function()
    local caught
    local gen = eddy.asyncgen(function(yield)
      local ok, err = pcall(yield, 1)
      caught = err
      yield(ok)
    end)()
    assert.equal(1, gen:anext())
    assert.is_false(gen:athrow(errors.ValueError))
    assert.is_false(errors.isclass(caught))
    assert.is_true(errors.is(caught, errors.ValueError))
    gen:aclose()
  end))

  it("§6 athrow caught by the body: athrow returns what the body yields next and the "
     .. "generator goes on; caught by a body that then returns, athrow gives nothing (Python's "
     .. "StopAsyncIteration) and the generator is closed", async(function()
    local catches = eddy.asyncgen(function(yield, again)
      local ok, err = pcall(yield, "first")
      if again then
        yield("caught " .. err.message)
        yield("last")
      end
    end)
    local gen = catches(true)
    assert.equal("first", gen:anext())
    assert.equal("caught boom", gen:athrow(errors.ValueError("boom")))
    assert.equal("last", gen:anext())
    assert.same({}, {gen:anext()})

    gen = catches(false)
    assert.equal("first", gen:anext())
    assert.same({}, {gen:athrow(errors.ValueError("boom"))})
    assert.same({}, {gen:anext()})
  end))

  it("§6 an error of the body ends the generator: anext() raises it once, then gives "
     .. "nothing (StopAsyncIteration), as does athrow(); aclose() has nothing to do",
     async(function()
    local err = errors.LookupError("no more")
    local gen = eddy.asyncgen(function(yield) yield(1) eddy.sleep(0) error(err) end)()
    assert.equal(1, gen:anext())
    assert.equal(err, raises(gen.anext, errors.LookupError, gen))
    assert.same({}, {gen:anext()})
    assert.same({}, {gen:athrow(errors.ValueError("late"))})
    gen:aclose()
  end))

  it("§6 aclose() whose cleanup raises another error raises that error and leaves the "
     .. "generator closed: aclose() again does nothing, anext() gives nothing", async(function()
    local gen = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function()
        eddy.sleep(0)
        error(errors.ValueError("cleanup failed"))
      end})
      yield(1)
      yield(2)
    end)()
    assert.equal(1, gen:anext())
    raises(gen.aclose, {errors.ValueError, "cleanup failed"}, gen)
    gen:aclose()
    assert.same({}, {gen:anext()})
  end))

  it("§6 a body that catches GeneratorExit and returns lets aclose() succeed; aclose() and "
     .. "athrow() of an exhausted generator do nothing and give nothing (3.13: None)",
     async(function()
    local seen
    local gen = eddy.asyncgen(function(yield)
      local ok, err = pcall(yield, 1)
      seen = err
      eddy.sleep(0)  -- cleanup may suspend
    end)()
    assert.equal(1, gen:anext())
    gen:aclose()
    assert.is_true(errors.is(seen, errors.GeneratorExit))
    assert.is_true(errors.is(seen, errors.Error))

    local log = {}
    local done = counter(log, 1)
    assert.equal(1, done:anext())
    assert.same({}, {done:anext()})
    assert.same({}, {done:aclose()})
    assert.same({}, {done:athrow(errors.ValueError("after the end"))})
    assert.same({"started", "ended"}, log)
  end))

  it("§6 while aclose() runs a cleanup that suspends, anext(), athrow() and aclose() from "
     .. "another task raise RuntimeError \"<method>(): asynchronous generator is already "
     .. "running\", as 3.13's; the first aclose() then completes", async(function(loop)
    local gen = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function() eddy.sleep(0.02) end})
      yield(1)
      yield(2)
    end)()
    assert.equal(1, gen:anext())
    local closer = loop:create_task(function() gen:aclose() return "closed" end)
    turns()
    raises(gen.anext, {errors.RuntimeError, "anext(): asynchronous generator is already running"}, gen)
    raises(gen.athrow, {errors.RuntimeError, "athrow(): asynchronous generator is already running"},
           gen, errors.ValueError("x"))
    raises(gen.aclose, {errors.RuntimeError, "aclose(): asynchronous generator is already running"},
           gen)
    assert.equal("closed", closer:await())
    assert.same({}, {gen:anext()})
  end))

  it("§6/§5 the task running aclose() cancelled while the cleanup suspends: the "
     .. "CancelledError ends the cleanup there and comes out of aclose(), the task ends "
     .. "cancelled, the generator is closed", async(function(loop)
    local log = {}
    local gen = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function(_, err)
        log[#log + 1] = tostring(err)
        eddy.sleep(10)
        log[#log + 1] = "not reached"
      end})
      yield(1)
    end)()
    assert.equal(1, gen:anext())
    local closer = loop:create_task(function() gen:aclose() return "closed" end)
    turns()
    closer:cancel("stop closing")
    assert.equal("stop closing", raises(closer.await, errors.CancelledError, closer).message)
    assert.is_true(closer:cancelled())
    assert.same({"GeneratorExit"}, log)
    assert.same({}, {gen:anext()})
  end))

  it("§6/§1 bad input: asend of a value to a generator not started yet is an argument error "
     .. "(Python's TypeError \"can't send non-None value to a just-started async generator\"), "
     .. "and the generator is left unstarted: anext() then runs it from the beginning",
     async(function()
    local log = {}
    local gen = counter(log, 2)
    argerror(function() gen:asend("early") end, 1, "asend")
    raises(function() gen:asend("early") end, "just-started async generator")
    assert.same({}, log)
    assert.equal(1, gen:asend(nil))  -- nil is no value (asend(None))
    assert.equal(2, gen:anext())
    assert.same({}, {gen:anext()})
    assert.same({"started", "ended"}, log)
  end))

  it("§6 a generator held by <close> (contextlib.aclosing) is closed at scope exit; on an "
     .. "error exit its cleanup sees GeneratorExit and the scope's error goes on",
     async(function()
    local log = {}
    local guarded = eddy.asyncgen(function(yield)
      local ok, err = pcall(yield, 1)
      log[#log + 1] = ok and "resumed" or tostring(err)
      eddy.sleep(0)
      if not ok then error(err, 0) end
    end)
    do
      local gen <close> = guarded()
      assert.equal(1, gen:anext())
    end
    assert.same({"GeneratorExit"}, log)
    local err = raises(function()
      local gen <close> = guarded()
      gen:anext()
      error(errors.ValueError("scope failed"))
    end, errors.ValueError)
    assert.equal("scope failed", err.message)
    assert.same({"GeneratorExit", "GeneratorExit"}, log)
  end))

  it("§3/§6 shutdown_asyncgens while a task is inside a generator's body: its aclose() fails "
     .. "with \"aclose(): asynchronous generator is already running\", reported with asyncgen "
     .. "and exception, and the task then gets its value", function()
    local gen, value
    local reports = run_collecting(function(loop)
      local gate = loop:create_future()
      gen = eddy.asyncgen(function(yield) yield(1) gate:await() yield(2) end)()
      assert.equal(1, gen:anext())
      local task = loop:create_task(function() return gen:anext() end)
      turns()
      loop:shutdown_asyncgens()
      gate:set_result()
      value = task:await()
      gen:aclose()
    end)
    assert.equal(2, value)
    assert.equal(1, #reports)
    assert.equal("an error occurred during closing of asynchronous generator "
                 .. "<eddy.AsyncGenerator [running]>", reports[1].message)
    assert.equal(gen, reports[1].asyncgen)
    raises(error, {errors.RuntimeError, "aclose(): asynchronous generator is already running"},
           reports[1].exception)
  end)

  it("§6/§3 a generator started on a loop since closed can be iterated to its end from a task "
     .. "of another loop, whose shutdown_asyncgens leaves it alone (asyncio's firstiter hook ran "
     .. "once, on the first loop)", function()
    local log = {}
    local gen = eddy.asyncgen(function(yield)
      for i = 1, 3 do eddy.sleep(0) yield(i) end
      log[#log + 1] = "ended"
    end)()
    local first = eddy.new_event_loop()
    assert.equal(1, first:run_until_complete(function() return gen:anext() end))
    first:close()
    local second = eddy.new_event_loop()
    local ok, err = pcall(function()
      assert.same({2}, {second:run_until_complete(function() return gen:anext() end)})
      second:run_until_complete(function() second:shutdown_asyncgens() end)
      assert.same({}, log)  -- not closed by the second loop
      assert.same({3}, {second:run_until_complete(function() return gen:anext() end)})
      assert.same({}, {second:run_until_complete(function() return gen:anext() end)})
    end)
    second:close()
    assert(ok, err)
    assert.same({"ended"}, log)
  end)
end)

describe("§9 eddy.errors (exceptions.py, test_exception_group.py)", function()
  it("§9 bad input: errors.is is false, never an error, for a table whose __metatable field "
     .. "hides its metatable (found by this spec: it raised), for a class itself "
     .. "(isinstance(ValueError, ValueError) is False) and for a second argument that is no "
     .. "class", function()
    for _, hidden in ipairs {"locked", false, 0} do
      local v = setmetatable({}, {__metatable = hidden})
      assert.is_false(errors.is(v, errors.Error))
    end
    assert.is_false(errors.is(errors.ValueError, errors.ValueError))
    assert.is_false(errors.is(errors.ValueError, errors.Error))
    assert.is_false(errors.is(errors.ValueError("v"), {}))
    assert.is_false(errors.is(errors.ValueError("v"), "ValueError"))
  end)

  it("§9/§5 a task whose error hides its metatable: awaiting it gives that value back "
     .. "(the core's errors.is must not fail in the message handler)", async(function(loop)
    local hidden = setmetatable({}, {__metatable = "locked"})
    local task = loop:create_task(function() error(hidden) end)
    local ok, got = pcall(task.await, task)
    assert.is_false(ok)
    assert.equal(hidden, got)
  end))

  it("§9 OSError(111) is Python's OSError(111): the number is the message, not an errno "
     .. "(errno, code and strerror nil: Python's errno and strerror are None); the fields "
     .. "table sets them", function()
    local e = errors.OSError(111)
    assert.equal("111", e.message)
    assert.is_nil(e.errno)
    assert.is_nil(e.code)
    assert.is_nil(e.strerror)
    assert.equal("OSError: 111", tostring(e))
    local full = errors.ConnectionRefusedError("connect", {errno = 111, code = "ECONNREFUSED",
                                                           strerror = "connection refused"})
    assert.equal(111, full.errno)
    assert.equal("connection refused", full.strerror)
    assert.is_true(errors.is(full, errors.OSError))
    argerror(function() return errors.OSError(111, "refused") end, 2, "OSError")
  end)

  it("§9 messages that are not strings are made strings, as Python's str(ValueError(42)) "
     .. "is '42': a number, a boolean, a table's __tostring; an empty or absent message "
     .. "shows the class name alone", function()
    assert.equal("42", errors.ValueError(42).message)
    assert.equal("ValueError: 42", tostring(errors.ValueError(42)))
    assert.equal("ValueError: 1.5", tostring(errors.ValueError(1.5)))
    assert.equal("RuntimeError: false", tostring(errors.RuntimeError(false)))
    local named = setmetatable({}, {__tostring = function() return "a named thing" end})
    assert.equal("LookupError: a named thing", tostring(errors.LookupError(named)))
    assert.equal("ValueError", tostring(errors.ValueError("")))
    assert.equal("ValueError", tostring(errors.ValueError()))
    assert.is_nil(errors.ValueError().message)
  end)

  it("§9 IncompleteReadError with expected nil (readuntil at EOF) reads 'undefined', as "
     .. "asyncio 3.13's; LimitOverrunError keeps a consumed of 0 and has none without it",
     function()
    local e = errors.IncompleteReadError("ab", nil)
    assert.equal("ab", e.partial)
    assert.is_nil(e.expected)
    assert.equal("IncompleteReadError: 2 bytes read on a total of undefined expected bytes",
                 tostring(e))
    local empty = errors.IncompleteReadError("", 4)
    assert.equal("IncompleteReadError: 0 bytes read on a total of 4 expected bytes", tostring(empty))
    local zero = errors.LimitOverrunError("Separator is found, but chunk is longer than limit", 0)
    assert.equal(0, zero.consumed)
    assert.equal("LimitOverrunError: Separator is found, but chunk is longer than limit",
                 tostring(zero))
    assert.is_nil(errors.LimitOverrunError("no count").consumed)
  end)

  it("§9 ExceptionGroup: exceptions keeps the very values (nested groups too); str counts "
     .. "them, singular for one (test_exception_group: 'msg (1 sub-exception)')", function()
    local a, b = errors.ValueError("a"), "a string error"
    local inner = errors.ExceptionGroup("inner", {a})
    local outer = errors.ExceptionGroup("outer", {inner, b})
    assert.equal(inner, outer.exceptions[1])
    assert.equal(b, outer.exceptions[2])
    assert.equal(a, outer.exceptions[1].exceptions[1])
    assert.equal("ExceptionGroup: inner (1 sub-exception)", tostring(inner))
    assert.equal("ExceptionGroup: outer (2 sub-exceptions)", tostring(outer))
    assert.equal("outer", outer.message)
    assert.is_true(errors.is(outer, errors.Error))
  end)

  it("§11/§9 bad input: at the REPL, an entry raising a strict object prints what lua5.4 "
     .. "prints, \"(error object is a table value)\" (found by this spec: the entry's message "
     .. "handler read the error's traceback field through its __index)", function()
    if not cli.has("lua5.4") then return pending("no lua5.4") end
    local input = 'error(setmetatable({}, {__index = function(_, k) error("no field " .. k) end}))\n'
                  .. 'print("after")\n'
    local mine = cli.eddy("-i", {stdin = input})
    local lua = cli.sh("lua5.4 -i", {stdin = input})
    assert.equal(lua.err, mine.err)
    assert.truthy(mine.err:find("(error object is a table value)", 1, true), mine.err)
    assert.truthy(mine.out:find("after", 1, true))
  end)
end)
