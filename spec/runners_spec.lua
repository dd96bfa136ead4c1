-- eddy.run (API.md §2, asyncio.run), ported from CPython's test_runners.
local eddy = require "eddy"
local errors = eddy.errors
local checks = require "support.checks"
local raises, argerror = checks.raises, checks.argerror

describe("eddy.run", function()
  it("returns every result of main (test_asyncio_run_return)", function()
    local r = table.pack(eddy.run(function(a, b)
      eddy.sleep(0.001)
      return a + b, nil, "x"
    end, 1, 2))
    assert.same({3, nil, "x", n = 3}, r)
  end)

  it("runs main as a task on a new loop that it closes", function()
    local loop, task
    eddy.run(function()
      loop = eddy.get_running_loop()
      task = eddy.current_task()
    end)
    assert.is_not_nil(task)
    assert.is_true(loop:is_closed())
    assert.are_not.equal(loop, eddy.get_event_loop())
  end)

  it("re-raises main's error (test_asyncio_run_raises)", function()
    local err = raises(eddy.run, errors.ValueError, function()
      eddy.sleep(0)
      error(errors.ValueError("spam"))
    end)
    assert.equal("spam", err.message)
    assert.is_string(err.traceback)
  end)

  it("accepts a coroutine object", function()
    assert.equal("co", eddy.run(coroutine.create(function() eddy.sleep(0) return "co" end)))
  end)

  it("rejects what cannot run (test_asyncio_run_only_coro)", function()
    argerror(function() eddy.run(42) end, 1, "run")
    argerror(function() eddy.run() end, 1, "run")
  end)

  it("rejects a Future (test_asyncio_run_only_coro)", function()
    local loop = eddy.new_event_loop()
    local fut = loop:create_future()
    local err = argerror(function() eddy.run(fut) end, 1, "run")
    assert.matches("function expected, got eddy.Future", tostring(err), 1, true)
    assert.is_false(fut:done())
    loop:close()
  end)

  it("cannot be called from a running loop (test_asyncio_run_from_running_loop)", function()
    local inner
    eddy.run(function()
      local ok, err = pcall(eddy.run, function() end)
      inner = {ok, err}
    end)
    assert.is_false(inner[1])
    assert.is_true(errors.is(inner[2], errors.RuntimeError))
    assert.matches("running event loop", inner[2].message)
  end)

  it("cancels tasks still pending when main returns (test_asyncio_run_cancels_hanging_tasks)",
     function()
    local leftover, cleaned
    eddy.run(function()
      leftover = eddy.create_task(function()
        local guard <close> = setmetatable({}, {__close = function()
          eddy.sleep(0)  -- cleanup may still suspend during shutdown
          cleaned = true
        end})
        eddy.sleep(10)
      end)
      eddy.sleep(0)
    end)
    assert.is_true(leftover:cancelled())
    assert.is_true(cleaned)
  end)

  it("reports leftover tasks that fail while cancelled (test_asyncio_run_reports_hanging_tasks_errors)",
     function()
    local reports = {}
    eddy.run(function()
      eddy.get_running_loop():set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
      eddy.create_task(function()
        pcall(eddy.sleep, 10)
        error(errors.ValueError("failed during shutdown"))
      end)
      eddy.sleep(0)
    end)
    assert.equal(1, #reports)
    assert.matches("unhandled exception during eddy.run%(%) shutdown", reports[1].message)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    assert.equal("userdata", type(reports[1].task))
  end)

  it("awaits shutdown_asyncgens, which returns when there are none", function()
    assert.equal("ok", eddy.run(function()
      eddy.get_running_loop():shutdown_asyncgens()
      return "ok"
    end))
  end)

  it("each run gets a fresh loop (test_run)", function()
    local a = eddy.run(function() return eddy.get_running_loop() end)
    local b = eddy.run(function() return eddy.get_running_loop() end)
    assert.are_not.equal(a, b)
  end)
end)

-- eddy.test's own runner: its bound on a spec must hold even when the
-- spec's task does not end once cancelled.
describe("eddy.test.async", function()
  local test = require "eddy.test"

  it("fails a spec that times out", function()
    local ok, err = pcall(test.async(function() eddy.sleep(10) end, 0.02))
    assert.is_false(ok)
    assert.equals("spec timed out after 0.02 s", err)
  end)

  it("stops the loop when a timed-out spec still waits after its cancellation", function()
    local t0 = os.time()
    local ok, err = pcall(test.async(function()
      while true do pcall(eddy.sleep, 10) end  -- swallows the cancellation
    end, 0.02))
    assert.is_false(ok)
    assert.equals("spec timed out after 0.02 s, and was still waiting 1 s after its cancellation", err)
    assert.is_true(os.time() - t0 <= 3)
  end)
end)

describe("eddy.run, more of test_runners", function()
  -- CPython runs these with asyncio.Runner, whose run() handles Ctrl-C as
  -- asyncio.run does; here each script interrupts itself with SIGINT.
  local function interrupted(body)
    return checks.run_script('local eddy = require "eddy"\n'
      .. 'local errors = eddy.errors\n'
      .. 'local signal = require "eddy.signal"\n'
      .. 'local function interrupt_self() signal.kill(signal.getpid(), "SIGINT") end\n'
      .. body)
  end

  it("test_interrupt_call_soon: a main task that only sleeps(0) is cancelled: KeyboardInterrupt", function()
    local code, out = interrupted [[
      local ok, err = pcall(eddy.run, function()
        eddy.get_running_loop():call_later(0.05, interrupt_self)
        local caught = pcall(function() while true do eddy.sleep(0) end end)
        assert(not caught)
        error(errors.CancelledError())
      end)
      print(ok, errors.is(err, errors.KeyboardInterrupt))
    ]]
    assert.equal(0, code, out)
    assert.equal("false\ttrue\n", out)
  end)

  it("test_interrupt_wait: the future main waits on is cancelled too: KeyboardInterrupt", function()
    local code, out = interrupted [[
      local fut
      local ok, err = pcall(eddy.run, function()
        local loop = eddy.get_running_loop()
        fut = loop:create_future()
        loop:call_later(0.05, interrupt_self)
        local caught, why = pcall(fut.await, fut)
        assert(not caught and errors.is(why, errors.CancelledError))
        error(errors.CancelledError())
      end)
      print(ok, errors.is(err, errors.KeyboardInterrupt), fut:cancelled())
    ]]
    assert.equal(0, code, out)
    assert.equal("false\ttrue\ttrue\n", out)
  end)

  it("test_interrupt_cancelled_task: main cancelled by a task before the Ctrl-C: CancelledError", function()
    local code, out = interrupted [[
      local ok, err = pcall(eddy.run, function()
        local main = eddy.current_task()
        eddy.create_task(function()
          eddy.sleep(0)
          main:cancel()
          interrupt_self()
        end)
        eddy.sleep(10)
      end)
      print(ok, tostring(err))
    ]]
    assert.equal(0, code, out)
    assert.equal("false\tCancelledError\n", out)
  end)

  it("test_asyncio_run_closes_gens_after_hanging_tasks_errors: a leftover task's generator is closed",
     function()
    local closed, lazyboy = false, nil
    local FancyExit = errors.class("FancyExit", errors.Error)
    local fidget = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function() closed = true end})
      while true do yield(1); eddy.sleep(1) end
    end)
    local function spin()
      local ok = pcall(function() for _ in fidget() do end end)
      assert(not ok)
      error(errors.ValueError("1/0"))
    end
    local reports = {}
    local err = checks.expect_error(FancyExit, eddy.run, function()
      eddy.get_running_loop():set_exception_handler(function(_, c) reports[#reports + 1] = c end)
      lazyboy = eddy.create_task(spin)
      eddy.sleep(0)
      error(FancyExit())
    end)
    assert.is_true(errors.is(err, FancyExit))
    assert.is_true(lazyboy:done())
    assert.is_true(closed)
    assert.equal(1, #reports)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
  end)

  it("test_asyncio_run_set_event_loop: main's loop is the current event loop while it runs", function()
    local same = eddy.run(function()
      local loop = eddy.get_running_loop()
      local fut = loop:create_future()
      loop:call_soon(function() fut:set_result(eddy.get_event_loop() == loop) end)
      return eddy.get_event_loop() == loop and fut:await()
    end)
    assert.is_true(same)
  end)

  it("test_no_repr_is_call_on_the_task_result: eddy.run does not tostring main's result", function()
    local count = 0
    local result = setmetatable({}, {__tostring = function() count = count + 1; return "MyResult" end})
    assert.equal(result, eddy.run(function() return result end))
    assert.equal(0, count)
  end)
end)
