-- The thread-pool executor: eddy.ThreadPoolExecutor, loop:run_in_executor,
-- loop:set_default_executor, loop:shutdown_default_executor, eddy.to_thread.
--
-- Functions run on worker threads see only the worker's globals: they may
-- not use this file's locals (upvalues), so they use standard globals only.
local eddy = require "eddy"
local errors = eddy.errors
local checks = require "support.checks"
local tmp = require "support.tmp"
local async = require("eddy.test").async

local function copied(loop, ...)
  return loop:run_in_executor(nil, function(...) return ... end, ...):await()
end

-- The error the future of a failed job raises.
local function failure(fut)
  local ok, err = pcall(fut.await, fut)
  assert.is_false(ok, "the job did not fail")
  return err
end

-- A job that takes 'seconds' on its thread.
local function nap(seconds)
  os.execute("sleep " .. seconds)
  return seconds
end

describe("run_in_executor", function()
  it("returns the function's results", async(function(loop)
    local fut = loop:run_in_executor(nil, function(a, b) return a + b, a * b end, 6, 7)
    assert.is_true(eddy.isfuture(fut))
    assert.same({13, 42}, {fut:await()})
  end))

  it("copies every supported value type both ways", async(function(loop)
    local values = {nil, true, false, 0, -7, math.maxinteger, math.mininteger,
                    1.5, -0.25, 2^53, math.huge, -math.huge, "", "text",
                    "bin\0ary\255", n = 15}
    local back = table.pack(copied(loop, table.unpack(values, 1, values.n)))
    assert.equal(values.n, back.n)
    for i = 1, values.n do
      assert.equal(values[i], back[i])
      assert.equal(math.type(values[i]), math.type(back[i]))
    end
    local nan = copied(loop, 0/0)
    assert.is_true(nan ~= nan)
  end))

  it("keeps integers integers and floats floats, also inside tables", async(function(loop)
    local types = {loop:run_in_executor(nil, function(a, b, t, u)
      return math.type(a), math.type(b), math.type(t[1]), math.type(u.f)
    end, 3, 3.0, {4}, {f = 4.0}):await()}
    assert.same({"integer", "float", "integer", "float"}, types)
    local i, f = copied(loop, 10, 10.0)
    assert.equal("integer", math.type(i))
    assert.equal("float", math.type(f))
  end))

  it("copies nested tables with any key types, holes and shared subtables", async(function(loop)
    local shared = {"s"}
    local t = {
      1, 2, nil, 4,
      name = "x", [1.5] = "float key", [true] = "yes", [false] = 0,
      [-3] = "negative", [2^40] = "big",
      nested = {deep = {deeper = {1, {2, {3}}}}},
      a = shared, b = shared,
    }
    local back = copied(loop, t)
    assert.are_not.equal(t, back)
    assert.same(t, back)
    assert.equal(4, back[4])
    assert.is_nil(back[3])
    assert.are_not.equal(back.a, back.b)  -- shared tables are copied twice
    assert.same(back.a, back.b)
    -- Results too: a table built on the worker.
    local built = loop:run_in_executor(nil, function(n)
      local r = {}
      for i = 1, n do r[i] = {i = i, s = tostring(i)} end
      return r
    end, 100):await()
    assert.equal(100, #built)
    assert.same({i = 77, s = "77"}, built[77])
  end))

  it("runs C functions of loaded modules by name", async(function(loop)
    assert.equal("abab", loop:run_in_executor(nil, string.rep, "ab", 2):await())
    assert.equal(9, loop:run_in_executor(nil, math.max, 3, 9, 1):await())
    assert.equal(os.getenv("HOME"), loop:run_in_executor(nil, os.getenv, "HOME"):await())
    assert.equal("number", loop:run_in_executor(nil, type, 1):await())
  end))

  it("gives workers plain Lua states with the standard libraries", async(function(loop)
    local r = {loop:run_in_executor(nil, function()
      return type(string.format), type(table.concat), type(io.open), type(utf8.char),
             type(coroutine.wrap), type(debug.traceback), package.loaded.eddy == nil,
             rawget(_G, "eddy") == nil
    end):await()}
    assert.same({"function", "function", "function", "function", "function",
                 "function", true, true}, r)
  end))

  it("lets a worker function require modules", async(function(loop)
    local v = loop:run_in_executor(nil, function()
      local ok, m = pcall(require, "string")
      return ok and m == string
    end):await()
    assert.is_true(v)
  end))

  it("keeps a worker's globals between its jobs", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(1)
    local function count() counter = (counter or 0) + 1 return counter end
    for i = 1, 3 do
      assert.equal(i, loop:run_in_executor(ex, count):await())
    end
    ex:shutdown()
  end))

  it("takes an explicit executor", async(function(loop)
    local ex <close> = eddy.ThreadPoolExecutor(2)
    assert.equal(5, loop:run_in_executor(ex, function(x) return x + 1 end, 4):await())
  end))

  it("runs 200 concurrent jobs with the right results", async(function(loop)
    local function work(n)
      local s = 0
      for i = 1, 20000 do s = s + i % (n + 1) end
      return n, s
    end
    local expected = {}
    for n = 1, 200 do expected[n] = select(2, work(n)) end
    for _, ex in ipairs {false, eddy.ThreadPoolExecutor(4)} do
      local futs = {}
      for n = 1, 200 do futs[n] = loop:run_in_executor(ex or nil, work, n) end
      for n = 1, 200 do
        local got_n, s = futs[n]:await()
        assert.equal(n, got_n)
        assert.equal(expected[n], s)
      end
      if ex then ex:shutdown() end
    end
  end, 30))

  it("keeps the loop serving timers while a job runs", async(function(loop)
    local events = {}
    loop:call_later(0.05, function() events[#events + 1] = "timer" end)
    local fut = loop:run_in_executor(nil, nap, 0.3)
    fut:add_done_callback(function() events[#events + 1] = "job" end)
    fut:await()
    eddy.sleep(0)
    assert.same({"timer", "job"}, events)
  end))

  it("uses at most max_workers threads", async(function(loop)
    local function elapsed(workers)
      local ex = eddy.ThreadPoolExecutor(workers)
      local t0 = loop:time()
      local futs = {}
      for i = 1, 4 do futs[i] = loop:run_in_executor(ex, nap, 0.5) end
      for i = 1, 4 do futs[i]:await() end
      ex:shutdown()
      return loop:time() - t0
    end
    -- two rounds of naps take 1 s at least; one round, started late on a
    -- loaded machine (four threads, four children), still takes less
    assert.is_true(elapsed(2) >= 0.99)
    assert.is_true(elapsed(4) < 0.99)
  end))
end)

describe("errors from workers", function()
  it("come back as the future's exception; strings stay strings", async(function(loop)
    local err = failure(loop:run_in_executor(nil, function(x) error("boom " .. x) end, 1))
    assert.equal("string", type(err))
    assert.matches("executor_spec.lua:%d+: boom 1$", err)
    assert.equal("plain", failure(loop:run_in_executor(nil, error, "plain", 0)))
  end))

  it("copy error tables", async(function(loop)
    local fut = loop:run_in_executor(nil, function()
      error({code = 7, detail = {"a", "b"}})
    end)
    local err = failure(fut)
    assert.same({code = 7, detail = {"a", "b"}}, err)
    assert.same(err, fut:exception())
  end))

  it("turn error values that cannot be copied into strings", async(function(loop)
    assert.equal("(error object is a nil value)",
                 failure(loop:run_in_executor(nil, function() error() end)))
    assert.equal("custom error", failure(loop:run_in_executor(nil, function()
      error(setmetatable({}, {__tostring = function() return "custom error" end}))
    end)))
    assert.equal("(error object is a thread value)", failure(loop:run_in_executor(nil, function()
      error(coroutine.create(print))
    end)))
  end))

  it("report results that cannot be copied", async(function(loop)
    local cases = {
      {function() return 1, print end, "result #2: cannot copy function"},
      {function() return coroutine.create(print) end, "result #1: cannot copy thread"},
      {function() return {a = {io.stdout}} end, "result #1: cannot copy file (0x"},
      {function() return setmetatable({}, {}) end, "result #1: cannot copy a table with a metatable"},
      {function() local t = {} t.self = t return t end,
       "result #1: cannot copy a table that contains itself at .self from a worker thread"},
    }
    for _, case in ipairs(cases) do
      local err = failure(loop:run_in_executor(nil, case[1]))
      assert.equal("string", type(err))
      assert.truthy(err:find(case[2], 1, true), err)
    end
    local err = failure(loop:run_in_executor(nil, function() return {a = {{}, {print}}} end))
    assert.truthy(err:find(" at .a[2][1] from a worker thread", 1, true), err)
  end))

  it("report a C function the worker cannot find", async(function(loop)
    local wrapped = coroutine.wrap(function() end)  -- a C function of no module
    package.loaded.spec_executor_mod = {f = wrapped}
    local fut = loop:run_in_executor(nil, wrapped)  -- found as spec_executor_mod.f
    package.loaded.spec_executor_mod = nil
    assert.truthy(failure(fut):find("module 'spec_executor_mod' not found", 1, true))
  end))
end)

describe("values that cannot be copied to a worker", function()
  it("raise argument errors naming the value and its position", async(function(loop)
    local function f() end
    local up = 1
    local cases = {
      {function() loop:run_in_executor(nil, function() return up end) end,
       "bad argument #2 to 'run_in_executor' (cannot copy a function with upvalue 'up'"},
      {function() loop:run_in_executor(nil, f, 1, f) end,
       "bad argument #4 to 'run_in_executor' (cannot copy function: 0x"},
      {function() loop:run_in_executor(nil, f, io.stdout) end,
       "bad argument #3 to 'run_in_executor' (cannot copy file (0x"},
      {function() loop:run_in_executor(nil, f, coroutine.create(f)) end,
       "bad argument #3 to 'run_in_executor' (cannot copy thread: 0x"},
      {function() loop:run_in_executor(nil, f, {x = {1, {loop:create_future()}}}) end,
       "at .x[2][1] to a worker thread"},
      {function() loop:run_in_executor(nil, f, {["not a name"] = {f}}) end,
       "at [\"not a name\"][1] to a worker thread"},
      {function() loop:run_in_executor(nil, f, {[{}] = 1}) end,
       "(cannot copy table: 0x"},
      {function() loop:run_in_executor(nil, f, setmetatable({}, {})) end,
       "bad argument #3 to 'run_in_executor' (cannot copy a table with a metatable to a worker thread)"},
      {function() local t = {} t[1] = {t} loop:run_in_executor(nil, f, t) end,
       "(cannot copy a table that contains itself at [1][1] to a worker thread)"},
      {function() loop:run_in_executor(nil, coroutine.wrap(f)) end,
       "bad argument #2 to 'run_in_executor' (cannot copy a C function to a worker thread unless it is a field of a loaded module)"},
      {function() loop:run_in_executor(nil, setmetatable({}, {__call = f})) end,
       "bad argument #2 to 'run_in_executor' (function expected, got table)"},
      {function() loop:run_in_executor(nil) end,
       "bad argument #2 to 'run_in_executor' (value expected)"},
      {function() loop:run_in_executor({}, f) end,
       "bad argument #1 to 'run_in_executor' (eddy.ThreadPoolExecutor expected, got table)"},
    }
    for _, case in ipairs(cases) do
      checks.raises(case[1], case[2])
    end
    local deep = {}
    for _ = 1, 70 do deep = {deep} end
    checks.raises(function() loop:run_in_executor(nil, f, deep) end,
                  "cannot copy tables nested more than 64 deep at [1][1]")
    -- Nothing was submitted: every job above failed before reaching a thread.
    assert.is_nil(loop:_fields().executor_mailbox)
  end))

  it("a key that cannot be copied is named as a key", async(function(loop)
    checks.raises(function()
      loop:run_in_executor(nil, function() end, {t = {[print] = 1}})
    end, "(a table key) at .t to a worker thread")
  end))
end)

describe("eddy.to_thread", function()
  it("runs the function in the default executor and returns its results; its error is raised "
     .. "(test_to_thread, test_to_thread_exception, test_run_in_executor)", async(function(loop)
    assert.same({3, "x"}, {eddy.to_thread(function(a, b) return a + b, "x" end, 1, 2)})
    local ok, err = pcall(eddy.to_thread, error, "failed", 0)
    assert.is_false(ok)
    assert.equal("failed", err)
    assert.is_not_nil(loop:_fields().default_executor)
  end))

  it("calls the function once; ten calls at once run ten times "
     .. "(test_to_thread_once, test_to_thread_concurrent)", async(function(loop)
    local log = tmp.file("")
    local function append(path)
      local f = assert(io.open(path, "a"))
      f:write("x")
      f:close()
      return 1
    end
    assert.equal(1, eddy.to_thread(append, log))
    local f = assert(io.open(log))
    assert.equal("x", f:read("a"))
    f:close()
    local calls = {}
    for i = 1, 10 do calls[i] = function() return eddy.to_thread(append, log) end end
    assert.same({1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {eddy.gather(table.unpack(calls))})
    f = assert(io.open(log))
    assert.equal(11, #f:read("a"))
    f:close()
  end))

  it("passes every argument on, a trailing table too: no options table, asyncio's kwargs "
     .. "(test_to_thread_args_kwargs)", async(function(loop)
    local n, a, t = eddy.to_thread(function(...) return select("#", ...), ... end, "test", {something = true})
    assert.same({2, "test", {something = true}}, {n, a, t})
  end))

  it("raises argument errors with its own argument numbers", async(function()
    local up
    checks.raises(function() eddy.to_thread(function() return up end) end,
                  "bad argument #1 to 'to_thread' (cannot copy a function with upvalue 'up'")
    checks.raises(function() eddy.to_thread(print, print) end,
                  "bad argument #2 to 'to_thread' (cannot copy function: ")
  end))

  it("cannot suspend a plain callback", async(function(loop)
    local fut = loop:create_future()
    loop:call_soon(function()
      fut:set_result(pcall(eddy.to_thread, type, 1))
    end)
    local ok, err = fut:await()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.truthy(tostring(err):find("to_thread() cannot suspend here", 1, true))
  end))

  it("works under eddy.run, which shuts the default executor down", function()
    assert.equal(12, eddy.run(function() return eddy.to_thread(function() return 12 end) end))
  end)

  it("works at the top level of a script", function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      print(eddy.to_thread(function(x) return x * 2 end, 21))
    ]])
    assert.equal(0, code, out)
    assert.equal("42\n", out)
  end)
end)

describe("ThreadPoolExecutor", function()
  it("checks its arguments", function()
    checks.raises(function() eddy.ThreadPoolExecutor(0) end,
                  {errors.ValueError, "max_workers must be greater than 0"})
    checks.raises(function() eddy.ThreadPoolExecutor(-1) end, errors.ValueError)
    checks.argerror(function() eddy.ThreadPoolExecutor("many") end, 1, "ThreadPoolExecutor")
    checks.raises(function() eddy.ThreadPoolExecutor(2, "prefix") end,
                  "(thread_name_prefix, initializer and initargs are not supported)")
    local ex = eddy.ThreadPoolExecutor(3)
    assert.equal("<ThreadPoolExecutor max_workers=3 threads=0>", tostring(ex))
    ex:shutdown()
    assert.equal("<ThreadPoolExecutor max_workers=3 threads=0 shutdown>", tostring(ex))
    checks.raises(function() ex:shutdown(true, {cancel = true}) end,
                  "bad argument #2 to 'shutdown' (unknown option 'cancel')")
    local default = eddy.ThreadPoolExecutor()
    assert.truthy(tostring(default):match("max_workers=%d+"))
    default:shutdown()
  end)

  it("refuses jobs after shutdown", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(1)
    assert.equal(1, loop:run_in_executor(ex, tonumber, "1"):await())
    ex:shutdown()
    checks.raises(function() loop:run_in_executor(ex, tonumber, "1") end,
                  {errors.RuntimeError, "cannot schedule new futures after shutdown"})
  end))

  it("shutdown(true) waits for running jobs; their results still arrive", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(2)
    -- each job ends by making a file: that it is there once shutdown
    -- returns shows the wait, where a time taken would depend on when a
    -- loaded machine ran the jobs
    local ends = {tmp.path(), tmp.path()}
    local function nap_then_touch(seconds, path)
      os.execute(("sleep %s; touch %s"):format(seconds, path))
      return seconds
    end
    local futs = {loop:run_in_executor(ex, nap_then_touch, 0.1, ends[1]),
                  loop:run_in_executor(ex, nap_then_touch, 0.1, ends[2])}
    eddy.sleep(0.02)
    ex:shutdown(true)
    assert.is_true(os.remove(ends[1]))
    assert.is_true(os.remove(ends[2]))
    assert.same({0.1}, {futs[1]:await()})
    assert.same({0.1}, {futs[2]:await()})
    assert.truthy(tostring(ex):find("threads=0 shutdown", 1, true))
  end))

  it("shutdown(false, {cancel_futures = true}) cancels queued jobs", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(1)
    local running = loop:run_in_executor(ex, nap, 0.1)
    local queued = {}
    for i = 1, 3 do queued[i] = loop:run_in_executor(ex, function() ran = true end) end
    eddy.sleep(0.02)
    ex:shutdown(false, {cancel_futures = true})
    for i = 1, 3 do
      checks.raises(function() queued[i]:await() end, errors.CancelledError)
      assert.is_true(queued[i]:cancelled())
    end
    assert.equal(0.1, running:await())
  end))

  it("closes as a to-be-closed variable, waiting for its jobs", async(function(loop)
    local fut
    do
      local ex <close> = eddy.ThreadPoolExecutor(1)
      fut = loop:run_in_executor(ex, nap, 0.05)
    end
    assert.equal(0.05, fut:await())
  end))

  it("serves several loops", function()
    local ex = eddy.ThreadPoolExecutor(2)
    for _ = 1, 2 do
      local loop = eddy.new_event_loop()
      assert.equal(8, loop:run_until_complete(loop:run_in_executor(ex, math.max, 8, 2)))
      loop:close()
    end
    ex:shutdown()
  end)
end)

describe("cancelling a job's future", function()
  it("takes back a job no thread started: it never runs", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(1)
    local first = loop:run_in_executor(ex, function() os.execute("sleep 0.1") end)
    local second = loop:run_in_executor(ex, function() touched = true end)
    eddy.sleep(0.02)
    assert.is_true(second:cancel())
    eddy.sleep(0)  -- the done callback takes the job back
    first:await()
    assert.is_nil(loop:run_in_executor(ex, function() return touched end):await())
    ex:shutdown()
  end))

  it("lets a running job finish and drops its result (test_run_in_executor_cancel)", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(1)
    local fut = loop:run_in_executor(ex, function() os.execute("sleep 0.1") done = 1 return "late" end)
    eddy.sleep(0.02)
    assert.is_true(fut:cancel())
    checks.raises(function() fut:await() end, errors.CancelledError)
    -- The next job on the same thread runs after it: the first one finished.
    assert.equal(1, loop:run_in_executor(ex, function() return done end):await())
    assert.is_true(fut:cancelled())
    ex:shutdown()
  end))

  it("cancelling a task in to_thread cancels the job's future", async(function(loop)
    local ex = eddy.ThreadPoolExecutor(1)
    loop:set_default_executor(ex)
    local task = loop:create_task(function() return eddy.to_thread(nap, 0.1) end)
    eddy.sleep(0.02)  -- the task waits for its running job
    task:cancel()
    checks.raises(function() task:await() end, errors.CancelledError)
    -- The next job runs once the cancelled one finished on the only thread.
    assert.equal(0.01, loop:run_in_executor(nil, nap, 0.01):await())
    ex:shutdown()
  end))
end)

describe("default executor", function()
  it("set_default_executor takes a ThreadPoolExecutor only (test_set_default_executor, test_set_default_executor_error)", async(function(loop)
    checks.raises(function() loop:set_default_executor({}) end,
                  "bad argument #1 to 'set_default_executor' (ThreadPoolExecutor expected, got table)")
    checks.raises(function() loop:set_default_executor() end,
                  "(ThreadPoolExecutor expected, got no value)")
    local ex = eddy.ThreadPoolExecutor(1)
    loop:set_default_executor(ex)
    local function count() n = (n or 0) + 1 return n end
    assert.equal(1, loop:run_in_executor(nil, count):await())
    assert.equal(2, eddy.to_thread(count))
    assert.equal(3, loop:run_in_executor(ex, count):await())
    loop:shutdown_default_executor()
    assert.truthy(tostring(ex):find("threads=0 shutdown", 1, true))
  end))

  it("shutdown_default_executor waits for running jobs, then refuses new ones", async(function(loop)
    local fut = loop:run_in_executor(nil, nap, 0.1)
    local t0 = loop:time()
    loop:shutdown_default_executor()
    assert.is_true(loop:time() - t0 >= 0.05)
    assert.is_true(fut:done())
    assert.equal(0.1, fut:result())
    checks.raises(function() loop:run_in_executor(nil, type, 1) end,
                  {errors.RuntimeError, "Executor shutdown has been called"})
    checks.raises(function() eddy.to_thread(type, 1) end,
                  {errors.RuntimeError, "Executor shutdown has been called"})
    -- An explicit executor still works.
    local ex <close> = eddy.ThreadPoolExecutor(1)
    assert.equal("number", loop:run_in_executor(ex, type, 1):await())
  end))

  it("shutdown_default_executor without a default executor returns at once", async(function(loop)
    loop:shutdown_default_executor()
    loop:shutdown_default_executor(1)
    checks.raises(function() loop:run_in_executor(nil, type, 1) end, errors.RuntimeError)
    checks.raises(function() loop:shutdown_default_executor("soon") end,
                  "bad argument #1 to 'shutdown_default_executor' (number expected, got string)")
  end))

  it("shutdown_default_executor(timeout) gives up waiting after timeout (test_shutdown_default_executor_timeout)", async(function(loop)
    -- (a job far longer than the timeout: a loaded machine wakes late)
    local fut = loop:run_in_executor(nil, nap, 1)
    local t0 = loop:time()
    loop:shutdown_default_executor(0.05)
    local dt = loop:time() - t0
    assert.is_true(dt >= 0.04 and dt < 0.8, tostring(dt))
    assert.is_false(fut:done())
    assert.equal(1, fut:await())  -- the job goes on; its result arrives
  end))

  it("eddy.run waits for the default executor at most THREAD_JOIN_TIMEOUT, 300 s (asyncio 3.12)",
     function()
    local Loop = eddy._core.Loop
    local original, seen = Loop.shutdown_default_executor, {}
    Loop.shutdown_default_executor = function(self, timeout)
      seen[#seen + 1] = timeout
      return original(self, timeout)
    end
    local ok, err = pcall(eddy.run, function() eddy.to_thread(type, 1) end)
    Loop.shutdown_default_executor = original
    assert.is_true(ok, tostring(err))
    assert.same({300}, seen)
  end)

  it("shutdown_default_executor waits at a script's top level; a plain callback gets RuntimeError",
     function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.get_event_loop()
      local fut = loop:run_in_executor(nil, os.execute, "sleep 0.05")
      loop:shutdown_default_executor(5)
      print("waited", fut:done())
      local other = eddy.new_event_loop()
      other:run_in_executor(nil, type, 1)
      other:call_soon(function()
        print(select(2, pcall(other.shutdown_default_executor, other)))
        other:stop()
      end)
      other:run_forever()
      other:close()
      -- with no executor to wait for too (API.md §1 to the letter)
      local idle = eddy.new_event_loop()
      idle:call_soon(function()
        print(select(2, pcall(idle.shutdown_default_executor, idle)))
        idle:stop()
      end)
      idle:run_forever()
      idle:run_in_executor(nil, type, 1):add_done_callback(function() idle:stop() end)
      idle:run_forever()  -- not shut down: it still takes jobs
      idle:close()
    ]])
    assert.equal(0, code, out)
    local err = "RuntimeError: shutdown_default_executor() cannot suspend here: "
                .. "call it from a task (eddy.run(main), loop:run_until_complete or "
                .. "loop:create_task)\n"
    assert.equal("waited\ttrue\n" .. err .. err, out)
  end)

  -- API.md §1: a suspending function "called outside a task raises
  -- RuntimeError naming the function", with or without work to wait for.
  it("shutdown_default_executor from a plain callback raises RuntimeError with no executor too",
     async(function(loop)
    local errs = checks.from_callback(loop, {{"shutdown", loop.shutdown_default_executor, loop}})
    assert.matches("^RuntimeError: shutdown_default_executor%(%) cannot suspend here", errs.shutdown)
    -- the call did nothing: the default executor still takes jobs
    assert.equal("number", loop:run_in_executor(nil, type, 1):await())
  end))

  it("warns with a RuntimeWarning on timeout", function()
    local code, out = checks.run_script([[
      warn("@on")
      local eddy = require "eddy"
      eddy.run(function()
        local loop = eddy.get_running_loop()
        local fut = loop:run_in_executor(nil, os.execute, "sleep 0.3")
        loop:shutdown_default_executor(0.01)
        fut:await()
        print("job done")
      end)
    ]])
    assert.equal(0, code, out)
    assert.truthy(out:find("RuntimeWarning: The executor did not finish joining its threads within 0.01 seconds.", 1, true), out)
    assert.truthy(out:find("job done", 1, true), out)
  end)

  it("is shut down when the loop closes, without waiting", checks.with_loop(function(loop)
    local fut = loop:run_in_executor(nil, function() os.execute("sleep 1") return 1 end)
    local ex = loop:_fields().default_executor
    local t0 = loop:time()
    loop:close()
    assert.is_true(loop:time() - t0 < 0.5)  -- far from the job's 1 s, even on a loaded machine
    assert.is_nil(loop:_fields().default_executor)
    assert.truthy(tostring(ex):find("shutdown", 1, true))
    ex:shutdown(true)  -- the job ends; its result has nowhere to go
    assert.is_false(fut:done())
  end))
end)

describe("jobs and the loop's life", function()
  it("a job in flight keeps a script's default loop alive", function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.get_event_loop()
      local fut = loop:run_in_executor(nil, function() os.execute("sleep 0.2") return 42 end)
      fut:add_done_callback(function(f) print("result", f:result()) end)
      print("chunk done")
    ]])
    assert.equal(0, code, out)
    assert.equal("chunk done\nresult\t42\n", out)
  end)

  it("closing a loop with jobs in flight leaves their futures pending", checks.with_loop(function(loop)
    local ex = eddy.ThreadPoolExecutor(2)
    local running = loop:run_in_executor(ex, nap, 0.1)
    local queued = {}
    for i = 1, 4 do queued[i] = loop:run_in_executor(ex, nap, 0.01) end
    loop:close()
    ex:shutdown(true)  -- every job ran; the results were dropped
    assert.is_false(running:done())
    for i = 1, 4 do assert.is_false(queued[i]:done()) end
    collectgarbage()
  end))

  it("a loop closed in a script with a job running exits cleanly", function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      local ex = eddy.ThreadPoolExecutor(1)
      loop:run_in_executor(ex, os.execute, "sleep 0.2")
      loop:run_in_executor(ex, os.execute, "sleep 0.2")
      loop:close()
      print("closed")
      os.exit(0, true)  -- lua_close collects the executor with a job running
    ]])
    assert.equal(0, code, out)
    assert.equal("closed\n", out)
  end)

  it("lua_close with jobs in flight on an open loop is clean", function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.get_event_loop()
      for i = 1, 8 do loop:run_in_executor(nil, os.execute, "sleep 0.1") end
      print("exiting")
      os.exit(0, true)
    ]])
    assert.equal(0, code, out)
    assert.equal("exiting\n", out)
  end)
end)
