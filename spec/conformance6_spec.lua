-- Conformance of the core loop (API.md §2 getting a loop, §3 running and
-- stopping, scheduling, the task factory, errors, debug mode, §4 Handle and
-- TimerHandle) with asyncio as CPython 3.13 implements it
-- (Lib/asyncio/base_events.py, events.py, runners.py; the tests in
-- Lib/test/test_asyncio/test_base_events.py, test_events.py,
-- test_runners.py): behaviours loop_spec, runners_spec and the blackbox
-- specs do not already check.  Each expectation was checked against
-- CPython 3.13 running the same program; every wait is bounded.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local run_collecting = require("eddy.test").run_collecting
local checks = require "support.checks"
local raises, with_loop, run_script = checks.raises, checks.with_loop, checks.run_script

-- Collect garbage until nothing more goes (finalizers may free more).
local function full_gc()
  collectgarbage()
  collectgarbage()
end

-- loop_script(body) -> output: runs body as a script of the eddy binary,
-- with `eddy` and a new `loop` (closed after it) defined; stdout is
-- unbuffered, in order with stderr; the script must exit 0.
local function loop_script(body)
  local code, out = run_script('io.stdout:setvbuf("no")\nlocal eddy = require "eddy"\n'
                               .. 'local loop = eddy.new_event_loop()\n' .. body .. '\nloop:close()\n')
  assert.equal(0, code, out)
  return out
end

-- slow_script(duration, body) -> output: loop_script in debug mode, with
-- warnings on and slow_callback_duration set; body starts at line 5.
local function slow_script(duration, body)
  return loop_script(('warn("@on") loop:set_debug(true) loop.slow_callback_duration = %g\n')
                     :format(duration) .. body)
end

-- run_briefly(loop): one bounded run that lets what is ready (and what
-- that schedules) run.
local function run_briefly(loop)
  loop:run_until_complete(function() eddy.sleep(0) eddy.sleep(0) end)
end

-- reporting_loop() -> loop, messages: a new loop whose exception handler
-- appends each context's message to 'messages'.
local function reporting_loop()
  local loop, messages = eddy.new_event_loop(), {}
  loop:set_exception_handler(function(_, c) messages[#messages + 1] = c.message end)
  return loop, messages
end

-- raising_callbacks(...) -> reports: schedules each function given as a
-- callback, then one more, which must still run; the exception handler's
-- reports.
local function raising_callbacks(...)
  local raisers, after = {...}, false
  local reports = run_collecting(function(loop)
    for _, fn in ipairs(raisers) do loop:call_soon(fn) end
    loop:call_soon(function() after = true end)
    eddy.sleep(0)
    eddy.sleep(0)
  end)
  assert.is_true(after, "the loop did not go on")
  return reports
end

describe("§4 Handle and TimerHandle (events.py)", function()
  it("§4 TimerHandles order by when() alone: of two with the same when neither is <, both "
     .. "are <=; table.sort sorts them; a Handle or a number is no TimerHandle to compare; == "
     .. "stays identity (test_timer_comparison)", with_loop(function(loop)
    local when = loop:time() + 100
    local h1, h2 = loop:call_at(when, print), loop:call_at(when, print)
    local h3 = loop:call_at(when + 10, print)
    assert.is_false(h1 < h2)
    assert.is_false(h2 < h1)
    assert.is_true(h1 <= h2 and h2 <= h1)
    assert.is_false(h1 > h2)
    assert.is_true(h1 >= h2)
    assert.is_true(h1 < h3 and h1 <= h3 and h3 > h1 and h3 >= h1)
    assert.is_false(h3 < h1 or h3 <= h1)
    assert.is_true(h1 ~= h2)  -- two timers, though asyncio's == would say equal
    h2:cancel()
    assert.is_true(h1 <= h2)  -- cancel() keeps when(), which orders
    local list = {h3, h2, h1}
    table.sort(list)
    assert.equal(h3, list[3])
    assert.equal(when, list[1]:when())
    raises(function() return h1 < loop:call_soon(print) end, "TimerHandle expected")
    raises(function() return h1 <= 5 end, "TimerHandle expected")
    h1:cancel()
    h3:cancel()
  end))

  it("§4 cancel() drops the callback and its arguments, of a Handle and of a TimerHandle, "
     .. "while the handle itself lives on (test_timer: _callback and _args are None)",
     with_loop(function(loop)
    local weak = setmetatable({}, {__mode = "v"})
    local soon, later
    do
      local arg, cb = {}, function() end
      weak.arg, weak.cb = arg, cb
      soon = loop:call_soon(cb, arg)
      later = loop:call_later(10, cb, arg)
    end
    full_gc()
    assert.is_not_nil(weak.arg, "a pending handle keeps its arguments")
    soon:cancel()
    full_gc()
    assert.is_not_nil(weak.cb, "the timer still holds them")
    later:cancel()
    full_gc()
    assert.is_nil(weak.arg)
    assert.is_nil(weak.cb)
    assert.is_true(soon:cancelled() and later:cancelled())
    assert.matches("^<TimerHandle cancelled when=", tostring(later))
  end))

  it("§4 tostring names the callback, as asyncio's repr (<Handle noop() at file:line>); a "
     .. "cancelled handle has dropped it: <Handle cancelled>, <TimerHandle cancelled when=123> "
     .. "(test_handle_repr, test_timer_repr)", with_loop(function(loop)
    local function noop() end
    local where = "function " .. debug.getinfo(noop, "S").short_src .. ":"
                  .. debug.getinfo(noop, "S").linedefined
    local h = loop:call_soon(noop, 1, 2)
    assert.equal("<Handle " .. where .. ">", tostring(h))
    h:cancel()
    assert.equal("<Handle cancelled>", tostring(h))
    local t = loop:call_at(123, noop)
    assert.equal("<TimerHandle when=123.0 " .. where .. ">", tostring(t))
    t:cancel()
    assert.equal("<TimerHandle cancelled when=123.0>", tostring(t))
    local callable = setmetatable({}, {__call = noop, __tostring = function() return "a callable" end})
    local c = loop:call_soon(callable)
    assert.equal("<Handle a callable>", tostring(c))
    c:cancel()
  end))

  it("§4 call_later's when() is the loop time at the call plus the delay "
     .. "(test_call_later, TimerHandle.when)", with_loop(function(loop)
    local before = loop:time()
    local h = loop:call_later(0.5, print)
    local after = loop:time()
    assert.is_true(h:when() >= before + 0.5 and h:when() <= after + 0.5)
    h:cancel()
  end))

  it("§4 a handle cancelled from inside its own callback: the callback runs once to its "
     .. "end, cancelled() is then true, and nothing is reported (Handle._run)",
     with_loop(function(loop)
    local reports, runs, h = {}, 0, nil
    loop:set_exception_handler(function(_, c) reports[#reports + 1] = c end)
    h = loop:call_soon(function()
      h:cancel()
      runs = runs + 1
    end)
    run_briefly(loop)
    assert.equal(1, runs)
    assert.is_true(h:cancelled())
    assert.same({}, reports)
  end))
end)

describe("§3 scheduling (base_events.py _run_once)", function()
  it("§3 two timers due in one iteration: the first cancels the second, which then does "
     .. "not run, though it was already taken off the heap (_run_once skips cancelled "
     .. "handles of _ready)", with_loop(function(loop)
    local log, second = {}, nil
    local now = loop:time()
    loop:call_at(now - 1, function()
      log[#log + 1] = "first"
      second:cancel()
    end)
    second = loop:call_at(now - 0.5, function() log[#log + 1] = "second" end)
    local soon
    loop:call_at(now - 0.2, function() soon:cancel() end)
    soon = loop:call_soon(function() log[#log + 1] = "soon" end)  -- ran before the timers
    loop:call_at(now - 0.1, function() log[#log + 1] = "third" end)
    run_briefly(loop)
    assert.same({"soon", "first", "third"}, log)
    assert.is_true(second:cancelled())
  end))

  it("§3 stop() twice before run_forever still runs one iteration, and the run resets it: "
     .. "the next run_forever goes on until stop() again (test_run_forever_pre_stopped, "
     .. "_run_forever_cleanup)", with_loop(function(loop)
    local iterations = 0
    local function spin()
      iterations = iterations + 1
      loop:call_soon(spin)
    end
    loop:call_soon(spin)
    loop:stop()
    loop:stop()
    loop:run_forever()
    assert.equal(1, iterations)
    loop:call_later(0.02, loop.stop, loop)
    checks.run_forever(loop)
    assert.is_true(iterations > 2, "the second run stopped at once")
  end))

  it("§3 I/O waiting when a run starts is polled after the first batch (documented "
     .. "difference: asyncio's _run_once polls first): an add_reader callback runs after "
     .. "the due timers, and after a pre-stopped run, first in the next run",
     with_loop(function(loop)
    local a, b = checks.nonblocking_pair()
    b:send("x")
    local log = {}
    loop:add_reader(a, function()
      log[#log + 1] = "reader"
      a:recv(10)
      loop:remove_reader(a)
    end)
    loop:call_soon(function() log[#log + 1] = "soon" end)
    loop:call_at(loop:time() - 1, function() log[#log + 1] = "timer" end)
    loop:stop()
    loop:run_forever()
    assert.same({"soon", "timer"}, log)  -- asyncio: soon, reader, timer
    loop:call_soon(function() log[#log + 1] = "next run" end)
    loop:stop()
    loop:run_forever()
    assert.same({"soon", "timer", "reader", "next run"}, log)
    a:close()
    b:close()
  end))

  it("§3 a callback raising a value that is no error object (an object with __tostring, "
     .. "nil) reaches the handler as the exception of 'Exception in callback', and the "
     .. "loop goes on (test_callback_with_exception)", function()
    local odd = setmetatable({}, {__tostring = function() return "odd error" end})
    local reports = raising_callbacks(function() error(odd) end, function() error(nil) end)
    assert.equal(2, #reports)
    assert.equal(odd, reports[1].exception)
    for _, r in ipairs(reports) do
      assert.matches("^Exception in callback function .*conformance6_spec%.lua:%d+$", r.message)
      assert.equal("userdata", type(r.handle))
    end
  end)

  it("§3 a callback raising eddy.errors.KeyboardInterrupt is reported like any error and "
     .. "the loop goes on (documented difference: asyncio's Handle._run lets Python's "
     .. "KeyboardInterrupt leave run_forever; eddy's is an Error, and a real Ctrl-C leaves "
     .. "the run as lua.c's 'interrupted!')", function()
    local reports = raising_callbacks(function() error(errors.KeyboardInterrupt()) end)
    assert.equal(1, #reports)
    assert.is_true(errors.is(reports[1].exception, errors.KeyboardInterrupt))
  end)

  it("§3 time() is one clock for every loop, as asyncio's time.monotonic() "
     .. "(test_time_and_call_at)", function()
    local a, b = eddy.new_event_loop(), eddy.new_event_loop()
    local ta = a:time()
    local tb = b:time()
    local ta2 = a:time()
    assert.is_true(ta <= tb and tb <= ta2)
    a:close()
    b:close()
  end)
end)

describe("§3 running and stopping (base_events.py run_until_complete)", function()
  it("§3 a function's task that stop() left pending is not reported as destroyed when "
     .. "collected (asyncio: _log_destroy_pending = False), while a Task of the caller's "
     .. "is (test_run_until_complete_stopped)", function()
    local loop, reports = reporting_loop()
    local function waits() loop:create_future():await() end
    loop:call_soon(loop.stop, loop)
    raises(loop.run_until_complete, {errors.RuntimeError, "stopped before Future completed"},
           loop, waits)
    full_gc()
    run_briefly(loop)
    full_gc()
    assert.same({}, reports)
    local task = loop:create_task(waits)
    loop:call_soon(loop.stop, loop)
    raises(loop.run_until_complete, errors.RuntimeError, loop, task)
    task = nil  -- luacheck: ignore
    full_gc()
    assert.same({"Task was destroyed but it is pending!"}, reports)
    loop:close()
  end)

  it("§3 run_until_complete that stop() ended drops its done callback: the future "
     .. "completed in a later run_forever does not stop that run (remove_done_callback "
     .. "in its finally)", with_loop(function(loop)
    local fut = loop:create_future()
    loop:call_soon(loop.stop, loop)
    raises(loop.run_until_complete, errors.RuntimeError, loop, fut)
    local log = {}
    loop:call_soon(fut.set_result, fut, "late")
    loop:call_later(0.03, function()
      log[#log + 1] = "timer"
      loop:stop()
    end)
    checks.run_forever(loop)
    assert.same({"timer"}, log)
    assert.equal("late", fut:result())
  end))

  it("§3 stop() before run_until_complete: its one iteration may complete the future, "
     .. "whose result comes back; otherwise RuntimeError (_run_forever_setup keeps _stopping)",
     with_loop(function(loop)
    local fut = loop:create_future()
    loop:stop()
    loop:call_soon(fut.set_result, fut, "in the one iteration", 2)
    assert.same({"in the one iteration", 2}, {loop:run_until_complete(fut)})
    loop:stop()
    raises(loop.run_until_complete, {errors.RuntimeError, "stopped before Future completed"},
           loop, loop:create_future())
  end))

  it("§3 run_until_complete of a future cancelled with a message raises CancelledError "
     .. "with it; of a failed future raises its error, which is then retrieved "
     .. "(future.result())", function()
    local loop, reports = reporting_loop()
    local cancelled = loop:create_future()
    cancelled:cancel("no longer wanted")
    local err = raises(loop.run_until_complete, errors.CancelledError, loop, cancelled)
    assert.equal("no longer wanted", err.message)
    local failed = loop:create_future()
    failed:set_exception(errors.ValueError("bad"))
    raises(loop.run_until_complete, {errors.ValueError, "bad"}, loop, failed)
    failed = nil  -- luacheck: ignore
    full_gc()
    assert.same({}, reports)
    loop:close()
  end)

  it("§3 run_until_complete of a coroutine that already ran to its end raises RuntimeError "
     .. "(asyncio: cannot reuse already awaited coroutine)", with_loop(function(loop)
    local co = coroutine.create(function() return "once" end)
    assert.equal("once", loop:run_until_complete(co))
    raises(loop.run_until_complete, errors.RuntimeError, loop, co)
  end))

  it("§3 in the last iteration of run_until_complete (its future's done callbacks, a "
     .. "callback's exception handler) the loop is running and is the running loop",
     with_loop(function(loop)
    local seen = {}
    loop:set_exception_handler(function(l)
      seen.handler = {l:is_running(), eddy.get_running_loop() == l}
    end)
    local fut = loop:create_future()
    fut:add_done_callback(function()
      seen.done = {loop:is_running(), eddy.get_running_loop() == loop}
    end)
    loop:call_soon(function()
      fut:set_result(1)
      error("after set_result")
    end)
    loop:run_until_complete(fut)
    assert.same({true, true}, seen.done)
    assert.same({true, true}, seen.handler)
    assert.is_false(loop:is_running())
  end))

  it("§3 run_forever or run_until_complete from a plain callback of the running loop "
     .. "raises 'This event loop is already running' there, and the run goes on (_check_running)",
     with_loop(function(loop)
    local errs, after = {}, false
    loop:call_soon(function()
      errs[1] = select(2, pcall(loop.run_forever, loop))
      errs[2] = select(2, pcall(loop.run_until_complete, loop, loop:create_future()))
    end)
    loop:call_soon(function() after = true end)
    run_briefly(loop)
    assert.is_true(after)
    for i = 1, 2 do
      assert.is_true(errors.is(errs[i], errors.RuntimeError))
      assert.equal("This event loop is already running", errs[i].message)
    end
  end))

  it("§3 a closed loop still answers and takes settings: stop(), is_running(), get_debug, "
     .. "set_debug, the exception handler, call_exception_handler (test_close: only new "
     .. "work is refused)", function()
    local loop = eddy.new_event_loop()
    loop:close()
    loop:stop()
    assert.is_false(loop:is_running())
    loop:set_debug(true)
    assert.is_true(loop:get_debug())
    local got
    loop:set_exception_handler(function(_, c) got = c.message end)
    loop:call_exception_handler({message = "after close"})
    assert.equal("after close", got)
    raises(loop.call_soon, {errors.RuntimeError, "Event loop is closed"}, loop, print)
  end)

  it("§3 from a callback of a running loop, another loop that is not running may be "
     .. "stopped and closed (only its own run makes a loop 'running'): the stop makes its "
     .. "next run one iteration, the close drops its callbacks", function()
    local a, b, c = eddy.new_event_loop(), eddy.new_event_loop(), eddy.new_event_loop()
    local log, res = {}, nil
    b:call_soon(function() log[#log + 1] = "b: first iteration" end)
    b:call_soon(function() b:call_soon(function() log[#log + 1] = "b: second" end) end)
    c:call_soon(function() log[#log + 1] = "c: never" end)
    a:call_soon(function()
      b:stop()
      res = {pcall(c.close, c)}
      res.closed, res.running = c:is_closed(), c:is_running()
    end)
    run_briefly(a)
    assert.same({true, closed = true, running = false}, res)
    b:run_forever()
    assert.same({"b: first iteration"}, log)
    a:close()
    b:close()
  end)

  it("§3 close() drops pending handles without cancelling them, as asyncio's clears "
     .. "_ready and _scheduled: cancelled() stays false, cancel() and when() still work, "
     .. "also once the loop is collected", function()
    local loop = eddy.new_event_loop()
    local soon, later = loop:call_soon(print), loop:call_later(10, print)
    local when = later:when()
    loop:close()
    assert.is_false(soon:cancelled())
    assert.is_false(later:cancelled())
    loop = nil  -- luacheck: ignore
    full_gc()
    soon:cancel()
    later:cancel()
    assert.is_true(soon:cancelled() and later:cancelled())
    assert.equal(when, later:when())
  end)

  it("§3 a pending task collected after its loop closed is not reported (documented "
     .. "difference: asyncio's Task.__del__ reports it on the closed loop too)", function()
    local loop, reports = reporting_loop()
    local task = loop:create_task(function() loop:create_future():await() end)
    run_briefly(loop)
    loop:close()
    task = nil  -- luacheck: ignore
    full_gc()
    assert.same({}, reports)
  end)

  it("§3 run_in_executor's future cancelled while its job runs: shutdown_default_executor "
     .. "waits for the job, close(), and the job's end reaches nothing "
     .. "(test_run_in_executor_cancel)", function()
    local loop, reports = reporting_loop()
    local fut = loop:run_in_executor(nil, function()
      os.execute("sleep 0.05")
      return "ignored"
    end)
    run_briefly(loop)  -- the job has started
    fut:cancel()
    loop:run_until_complete(function() loop:shutdown_default_executor(5) end)
    loop:close()
    os.execute("sleep 0.1")
    assert.is_true(fut:cancelled())
    assert.same({}, reports)
  end)
end)

describe("§3 the task factory (base_events.py create_task)", function()
  it("§3 a factory that returns no object is named when a task is made: loop:create_task, "
     .. "eddy.create_task, gather (asyncio fails later, on the missing "
     .. "method)", async(function(loop)
    loop:set_task_factory(function() return 42 end)
    local text = "task factory returned number, not a Future-compatible object"
    local function body() end
    local calls = {
      function() return loop:create_task(body) end,
      function() return eddy.create_task(body) end,
      function() return eddy.gather(body) end,
    }
    for _, call in ipairs(calls) do
      assert.equal(text, select(2, pcall(call)))
    end
    loop:set_task_factory(nil)
  end))

  it("§3 run_until_complete with a factory that returns no object raises that, before the "
     .. "loop runs", with_loop(function(loop)
    loop:set_task_factory(function() return nil end)
    assert.equal("task factory returned nil, not a Future-compatible object",
                 select(2, pcall(loop.run_until_complete, loop, function() end)))
    assert.is_false(loop:is_running())
    loop:set_task_factory(nil)
    assert.equal("runs", loop:run_until_complete(function() return "runs" end))
  end))

  it("§3 a factory that raises: create_task raises that error, and the loop runs on",
     async(function(loop)
    local broken = errors.ValueError("no tasks today")
    loop:set_task_factory(function() error(broken) end)
    local ok, err = pcall(loop.create_task, loop, function() end)
    assert.is_false(ok)
    assert.equal(broken, err)
    loop:set_task_factory(nil)
    assert.equal("fine", loop:create_task(function() return "fine" end):await())
  end))
end)

describe("§3 errors: the exception handler (base_events.py)", function()
  it("§3 the default handler says 'Unhandled exception in event loop' for a context with "
     .. "no message or an empty one (default_exception_handler: `if not message`)", function()
    local out = loop_script [[
      loop:call_exception_handler({})
      loop:call_exception_handler({message = "", exception = eddy.errors.ValueError("v")})
      loop:default_exception_handler({message = ""})
    ]]
    assert.equal("Unhandled exception in event loop\n"
                 .. "Unhandled exception in event loop\nValueError: v\n"
                 .. "Unhandled exception in event loop\n", out)
  end)

  it("§3 the default handler's lines: the message, then every other key sorted, as "
     .. "'key: value', then the error and its traceback (default_exception_handler's "
     .. "log_lines, sorted(context))", function()
    local out = loop_script [[
      local function fail() error(eddy.errors.LookupError("gone")) end
      local ok, err = pcall(loop.run_until_complete, loop, function() fail() end)
      loop:call_exception_handler({zeta = 26, message = "several keys", beta = "b",
                                   exception = err, alpha = 1})
      loop:call_soon(function() error("from a callback", 0) end)
      loop:run_until_complete(function() eddy.sleep(0) end)
    ]]
    assert.matches("^several keys\nalpha: 1\nbeta: b\nzeta: 26\nLookupError: gone\n"
                   .. "stack traceback:\n[^\n]*in function 'error'\n[^\n]*in %w+ 'fail'", out)
    -- a callback's: its handle, named as asyncio's repr names it
    assert.matches("\nException in callback function [^\n]+:8\nhandle: <Handle function "
                   .. "[^\n]+:8>\nfrom a callback\n", out)
  end)

  it("§3 call_exception_handler never raises: a custom handler that fails is reported by "
     .. "the default one with the original context, even when a value there cannot be "
     .. "shown; a message that cannot be shown ends as 'Exception in default exception "
     .. "handler' (test_default_exc_handler_broken)", function()
    local out = loop_script [[
      local unshowable = setmetatable({}, {__tostring = function() error("no tostring") end})
      loop:set_exception_handler(function() error("custom handler broke") end)
      print(pcall(loop.call_exception_handler, loop, {message = "first", obj = unshowable}))
      loop:set_exception_handler(nil)
      print(pcall(loop.call_exception_handler, loop, {message = unshowable}))
      print("goes on")
    ]]
    assert.matches("^Unhandled error in exception handler\ncontext: {message = \"first\", "
                   .. "obj = table}\n[^\n]*custom handler broke\nstack traceback:\n.-\ntrue\n"
                   .. "Exception in default exception handler: [^\n]*no tostring\ntrue\ngoes on\n$", out)
  end)

  it("§3 a custom handler gets asyncio's keys for a callback's error: message, exception "
     .. "and handle, and source_traceback in debug mode, nothing else (test_set_exc_handler_custom)",
     with_loop(function(loop)
    local contexts = {}
    loop:set_exception_handler(function(_, c) contexts[#contexts + 1] = c end)
    local function zero_error() error(errors.ValueError("1/0")) end
    local handles = {loop:call_soon(zero_error)}
    run_briefly(loop)
    loop:set_debug(true)
    handles[2] = loop:call_soon(zero_error)
    run_briefly(loop)
    loop:set_debug(false)
    local function keys(t)
      local list = {}
      for k in pairs(t) do list[#list + 1] = k end
      table.sort(list)
      return list
    end
    assert.same({"exception", "handle", "message"}, keys(contexts[1]))
    assert.same({"exception", "handle", "message", "source_traceback"}, keys(contexts[2]))
    for i = 1, 2 do
      assert.equal(handles[i], contexts[i].handle)
      assert.matches("^Exception in callback function ", contexts[i].message)
    end
  end))
end)

describe("§3 debug mode (base_events.py _run_once, test_log_slow_callbacks)", function()
  it("§3 the slow-callback warning gives the time to three decimals and names the "
     .. "callback, also one that cancelled its own handle (asyncio keeps its repr)", function()
    local out = slow_script(0.01, [[
      local h
      local function slow_and_cancelled()
        h:cancel()
        local t = loop:time() while loop:time() - t < 0.02 do end
      end
      h = loop:call_soon(slow_and_cancelled)
      loop:call_soon(function() end)  -- quick: no warning
      loop:run_until_complete(function() eddy.sleep(0) end)
    ]])
    -- three decimals, at least the 0.02 s it spins (a loaded machine adds any amount)
    local took = out:match("^Lua warning: Executing callback function [^\n]+:6 took "
                           .. "(%d+%.%d%d%d) seconds\n$")
    assert.is_true(took ~= nil and tonumber(took) >= 0.02, out)
  end)

  it("§3 inside a callback scheduled in debug mode, the default handler adds "
     .. "handle_traceback, where the callback was scheduled, unless the context has a "
     .. "source_traceback (default_exception_handler, _current_handle)", function()
    local out = loop_script [[
      loop:set_debug(true)
      local function report() loop:call_exception_handler({message = "from a callback"}) end
      local function schedule_here() loop:call_soon(report) end
      schedule_here()
      loop:call_soon(function()
        loop:call_exception_handler({message = "has its own", source_traceback = "given"})
      end)
      loop:run_until_complete(function() eddy.sleep(0) end)
      loop:call_exception_handler({message = "outside any callback"})
    ]]
    assert.matches("^from a callback\nhandle_traceback: stack traceback:\n"
                   .. "\t[^\n]+:6: in local 'schedule_here'\n\t[^\n]+:7: in main chunk\n"
                   .. "\t%[C%]: in %?\nhas its own\nsource_traceback: given\n"
                   .. "outside any callback\n$", out)
  end)

  it("§3 a slow protocol method a stream transport calls is warned about too (asyncio "
     .. "times the transport's _read_ready handle)", function()
    local out = slow_script(0.05, [[
      loop:run_until_complete(function()
        local got = loop:create_future()
        local srv = loop:create_server(function()
          return {data_received = function(_, data)
            local t = loop:time() while loop:time() - t < 0.08 do end
            got:set_result(data)
          end}
        end, "127.0.0.1", 0)
        local client = loop:create_connection(function() return {} end, "127.0.0.1",
                                              srv.sockets[1]:getsockname()[2])
        client:write("slow")
        print(eddy.wait_for(got, 5))
        client:close()
        srv:close()
      end)
    ]])
    local took = out:match("^Lua warning: Executing transport <TCPTransport fd=%d+ open> took "
                           .. "(%d+%.%d%d%d) seconds\nslow\n$")
    assert.is_true(took ~= nil and tonumber(took) >= 0.08, out)
  end)
end)

describe("§2 getting a loop (events.py)", function()
  it("§2 new_event_loop does not become the current loop; a current loop that is closed is "
     .. "still what get_event_loop returns (asyncio's policy keeps it) (test_new_event_loop)",
     function()
    local saved = eddy.get_event_loop()
    local loop = eddy.new_event_loop()
    assert.are_not.equal(loop, eddy.get_event_loop())
    eddy.set_event_loop(loop)
    loop:close()
    assert.equal(loop, eddy.get_event_loop())
    eddy.set_event_loop(saved)
    assert.equal(saved, eddy.get_event_loop())
  end)

  it("§2 inside a callback of a running loop that is not the current one, get_event_loop "
     .. "returns the running loop (test_get_event_loop_returns_running_loop2)", function()
    local current = eddy.get_event_loop()
    local loop = eddy.new_event_loop()
    local seen
    loop:call_soon(function() seen = eddy.get_event_loop() end)
    run_briefly(loop)
    assert.equal(loop, seen)
    assert.equal(current, eddy.get_event_loop())
    loop:close()
  end)
end)

describe("§2 eddy.run (runners.py)", function()
  it("§2 eddy.run waits for a default-executor job main left running: its future is done "
     .. "when run returns (shutdown_default_executor)", function()
    local job
    local result = eddy.run(function()
      job = eddy.get_running_loop():run_in_executor(nil, function()
        os.execute("sleep 0.1")
        return "job done"
      end)
      return "main done"
    end)
    assert.equal("main done", result)
    assert.is_true(job:done())
    assert.equal("job done", job:result())
  end)

  -- eddy.run's log of a main that leaves an async generator suspended
  -- at its first yield; when 'drop', main drops it and collects first.
  local function run_leaving_generator(drop)
    local log = {}
    eddy.run(function()
      local gen = eddy.asyncgen(function(yield)
        local _ <close> = setmetatable({}, {__close = function()
          eddy.sleep(0.01)
          log[#log + 1] = "closed"
        end})
        for i = 1, math.huge do yield(i) end
      end)()
      log[#log + 1] = gen:anext()
      if drop then
        gen = nil  -- luacheck: ignore (dropped for the collector)
        collectgarbage() collectgarbage()
      end
    end)
    return log
  end

  it("§2 eddy.run closes an async generator main left suspended (shutdown_asyncgens): its "
     .. "cleanup runs, and may suspend, before run returns", function()
    assert.same({1, "closed"}, run_leaving_generator())
  end)

  it("§2 eddy.run closes whole an async generator main dropped just before it returned "
     .. "(CPython: [1, 'closed']): the finalizer hook's closing task, cancelled before it "
     .. "started, leaves it to shutdown_asyncgens", function()
    -- The closing task started in the iteration that stopped the loop, and
    -- eddy.run's cancelling of leftovers cut its cleanup at the sleep; as
    -- asyncio, it starts an iteration later, and a generator it did not
    -- close is still shutdown_asyncgens' (asyncio's WeakSet keeps it).
    assert.same({1, "closed"}, run_leaving_generator(true))
  end)

  it("§2 eddy.run shuts down in asyncio.run's order: leftover tasks are cancelled first, "
     .. "then async generators closed, then the default executor, so both cleanups may "
     .. "still use to_thread (Runner.close)", function()
    local log, gen = {}, nil
    eddy.run(function()
      gen = eddy.asyncgen(function(yield)
        local _ <close> = setmetatable({}, {__close = function()
          log[#log + 1] = eddy.to_thread(function() return "generator's cleanup" end)
        end})
        for i = 1, math.huge do yield(i) end
      end)()
      gen:anext()
      eddy.create_task(function()
        local _, err = pcall(eddy.sleep, 10)
        log[#log + 1] = "leftover: " .. tostring(err)
        log[#log + 1] = eddy.to_thread(function() return "leftover's cleanup" end)
      end)
      eddy.sleep(0)
    end)
    assert.same({"leftover: CancelledError", "leftover's cleanup", "generator's cleanup"}, log)
  end)

  it("§2 eddy.run takes a callable table as main, with the arguments, and refuses a "
     .. "coroutine already run (asyncio.run: cannot reuse already awaited coroutine)", function()
    local main = setmetatable({}, {__call = function(self, a, b) return self, a + b end})
    local got_self, sum = eddy.run(main, 2, 3)
    assert.equal(main, got_self)
    assert.equal(5, sum)
    local co = coroutine.create(function() return "ran" end)
    assert.equal("ran", eddy.run(co))
    raises(eddy.run, errors.RuntimeError, co)
  end)

  it("§2 eddy.run re-raises main's own KeyboardInterrupt as it is, after cancelling the "
     .. "leftover tasks (asyncio.run: the Runner closes after a BaseException too)", function()
    local leftover
    local own = errors.KeyboardInterrupt("raised by main")
    local ok, err = pcall(eddy.run, function()
      leftover = eddy.create_task(function() eddy.sleep(10) end)
      eddy.sleep(0)
      error(own)
    end)
    assert.is_false(ok)
    assert.equal(own, err)
    assert.is_true(leftover:cancelled())
  end)

  it("§2 a main that stops the loop: eddy.run raises 'Event loop stopped before Future "
     .. "completed.', then cancels main as a leftover and closes the loop (asyncio.run)",
     function()
    local loop, outcome
    raises(eddy.run, {errors.RuntimeError, "Event loop stopped before Future completed."},
           function()
      loop = eddy.get_running_loop()
      loop:stop()
      local ok, err = pcall(eddy.sleep, 0.1)
      outcome = ok and "finished" or tostring(err)
      if not ok then error(err, 0) end
    end)
    assert.equal("CancelledError", outcome)
    assert.is_true(loop:is_closed())
  end)

  it("§2/§3 eddy.run, run_until_complete and create_task refuse a coroutine that is running "
     .. "(the main thread) or normal with RuntimeError, as coroutine.resume refuses it (a "
     .. "crash before)", function()
    local out = loop_script [[
      local running = coroutine.running()
      print(pcall(eddy.run, running))
      print(pcall(loop.run_until_complete, loop, running))
      print(pcall(loop.create_task, loop, running))
      print(loop:is_running(), eddy.run(function()
        local outer
        outer = coroutine.create(function()
          local inner = coroutine.create(function() return pcall(eddy.create_task, outer) end)
          return select(3, coroutine.resume(inner))  -- outer is normal meanwhile
        end)
        return tostring(select(2, coroutine.resume(outer)))
      end))
    ]]
    assert.equal(string.rep("false\tRuntimeError: cannot resume non-suspended coroutine\n", 3)
                 .. "false\tRuntimeError: cannot resume non-suspended coroutine\n", out)
  end)

  it("§2 eddy.run's leftover task that catches its cancellation, suspends, and returns is "
     .. "waited for and not reported (_cancel_all_tasks: gather(return_exceptions=True))",
     function()
    local log, reports = {}, {}
    eddy.run(function()
      eddy.get_running_loop():set_exception_handler(function(_, c) reports[#reports + 1] = c end)
      eddy.create_task(function()
        local ok, err = pcall(eddy.sleep, 10)
        log[#log + 1] = ok and "woke" or tostring(err)
        eddy.sleep(0.01)
        log[#log + 1] = "cleaned up"
        return "normal return"
      end)
      eddy.sleep(0)
    end)
    assert.same({"CancelledError", "cleaned up"}, log)
    assert.same({}, reports)
  end)
end)
