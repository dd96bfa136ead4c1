-- Signals: loop:add_signal_handler/remove_signal_handler, eddy.signal, and
-- Ctrl-C during eddy.run.  The signals are real: sent to this process
-- (always with a handler installed: SIGUSR1's default action would end the
-- test run) or to eddy subprocesses.
local eddy = require "eddy"
local errors = eddy.errors
local S = require "eddy.signal"
local test = require "eddy.test"
local async = test.async

local BINARY = os.getenv("EDDY_TEST_BINARY") or "build/eddy"

local function raises(cls, pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_true(errors.is(err, cls), "expected " .. tostring(cls) .. ", got " .. tostring(err))
  if pattern then assert.matches(pattern, err.message) end
  return err
end

-- Wait until fut is done or 'seconds' passed; returns whether it is done.
local function wait_done(fut, seconds)
  local ok = pcall(eddy.wait_for, eddy.shield(fut), seconds)
  return ok and fut:done()
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function tempfile(contents)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(contents)
  f:close()
  return path
end

-- Run 'script' in an eddy subprocess (at most 10 s, SIGINT at its default
-- action even if this process ignores it).  The script prints "ready"
-- when it wants its signals; then each of 'signals' is sent to it, 'gap'
-- seconds apart.  Returns {how =, code =, out =, err =, elapsed =}: how
-- and code as io.popen's close() gives them ("exit" and the status, or
-- "signal" and the signal that ended it), elapsed the time from the first
-- signal to its exit.
local function run_script(script, signals, gap)
  local path, errpath = tempfile(script), os.tmpname()
  local p = assert(io.popen(string.format(
    "exec timeout 10 env --default-signal=INT %s %s 2>%s",
    quote(BINARY), quote(path), quote(errpath))))
  local ready = p:read("l")
  local out = {}
  local clock = eddy.new_event_loop()
  local t0 = clock:time()
  if ready ~= nil then
    local pid = assert(tonumber(ready:match("^ready (%d+)$")), ready)
    for i, sig in ipairs(signals or {}) do
      if i > 1 then os.execute("sleep " .. (gap or 0.2)) end
      pcall(S.kill, pid, sig)  -- it may be gone already
    end
    out[1] = p:read("a")
  end
  local _, how, code = p:close()
  local elapsed = clock:time() - t0
  clock:close()
  local f = assert(io.open(errpath))
  local err = f:read("a")
  f:close()
  os.remove(path)
  os.remove(errpath)
  return {how = how, code = code, out = table.concat(out), err = err, elapsed = elapsed}
end

-- The line a script prints when it is ready for its signals.
local READY = 'io.stdout:write("ready ", require("eddy.signal").getpid(), "\\n") io.stdout:flush()\n'

describe("eddy.signal", function()
  it("has Linux's signal numbers by name", function()
    assert.equal(S, eddy.signal)
    assert.equal(1, S.SIGHUP)
    assert.equal(2, S.SIGINT)
    assert.equal(9, S.SIGKILL)
    assert.equal(10, S.SIGUSR1)
    assert.equal(15, S.SIGTERM)
    assert.equal(17, S.SIGCHLD)
    assert.equal(19, S.SIGSTOP)
    assert.equal(28, S.SIGWINCH)
    assert.equal(S.SIGIO, S.SIGPOLL)
    assert.is_true(S.SIGRTMIN > 31 and S.SIGRTMIN < S.SIGRTMAX)
    assert.equal(S.SIGRTMAX + 1, S.NSIG)
  end)

  it("getpid is this process's id", function()
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    assert.equal(pid, S.getpid())
  end)

  it("kill sends a signal by number or name; 0 checks the process", async(function(loop)
    local got = {}
    loop:add_signal_handler(S.SIGUSR2, function(n) got[#got + 1] = n end, "usr2")
    S.kill(S.getpid(), S.SIGUSR2)
    S.kill(S.getpid(), "SIGUSR2")
    S.kill(S.getpid(), 0)
    for _ = 1, 100 do
      if #got == 2 then break end
      eddy.sleep(0.01)
    end
    assert.same({"usr2", "usr2"}, got)
    assert.is_true(loop:remove_signal_handler("SIGUSR2"))
  end))

  it("kill raises ValueError for bad signals and OSError for bad processes", function()
    raises(errors.ValueError, "invalid signal number %-1", S.kill, S.getpid(), -1)
    raises(errors.ValueError, "unknown signal name 'USR1'", S.kill, S.getpid(), "USR1")
    local err = raises(errors.OSError, nil, S.kill, 0x3fffffff, 0)
    assert.equal("ESRCH", err.code)
    assert.has_error(function() S.kill("x", 0) end)
  end)
end)

describe("add_signal_handler", function()
  it("runs the callback with its arguments in the loop (test_signal_handling_args)", async(function(loop)
    local fut = loop:create_future()
    loop:add_signal_handler("SIGUSR1", function(a, b)
      fut:set_result(a, b, eddy.get_running_loop() == loop, eddy.current_task())
    end, "x", 2)
    S.kill(S.getpid(), S.SIGUSR1)
    assert.is_true(wait_done(fut, 5))
    local a, b, in_loop, task = fut:result()
    assert.same({"x", 2, true}, {a, b, in_loop})
    assert.is_nil(task)  -- a plain callback, not a task
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
  end))

  it("test_signal_handling_while_selecting: a signal that arrives while the loop waits "
     .. "runs its handler once", async(function(loop)
    local caught, fut = 0, loop:create_future()
    loop:add_signal_handler("SIGALRM", function()
      caught = caught + 1
      if not fut:done() then fut:set_result(true) end
    end)
    -- sent by another process while this loop sleeps in its poll
    os.execute(string.format("(sleep 0.05; kill -ALRM %d) &", S.getpid()))
    assert.is_true(wait_done(fut, 5))
    eddy.sleep(0.05)
    assert.equal(1, caught)
    assert.is_true(loop:remove_signal_handler("SIGALRM"))
  end))

  it("runs once per signal, for every signal that arrives", async(function(loop)
    local n = 0
    loop:add_signal_handler(S.SIGUSR1, function() n = n + 1 end)
    for i = 1, 3 do
      S.kill(S.getpid(), S.SIGUSR1)
      for _ = 1, 100 do
        if n == i then break end
        eddy.sleep(0.01)
      end
    end
    assert.equal(3, n)
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
  end))

  it("replaces the loop's previous handler of the signal", async(function(loop)
    local calls = {}
    local fut = loop:create_future()
    loop:add_signal_handler(S.SIGUSR1, function() calls[#calls + 1] = "old" end)
    loop:add_signal_handler("SIGUSR1", function()
      calls[#calls + 1] = "new"
      fut:set_result()
    end)
    S.kill(S.getpid(), S.SIGUSR1)
    assert.is_true(wait_done(fut, 5))
    eddy.sleep(0.05)
    assert.same({"new"}, calls)
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
  end))

  -- asyncio's add_signal_handler makes an events.Handle(callback, args,
  -- self, None): the context is the one current when it is added.
  it("runs the callback in the context current when it was added", async(function(loop)
    local var = eddy.ContextVar("signal_var", {default = "default"})
    var:set("when added")
    local fut = loop:create_future()
    loop:add_signal_handler(S.SIGUSR1, function() fut:set_result(var:get()) end)
    var:set("when sent")
    S.kill(S.getpid(), S.SIGUSR1)
    assert.is_true(wait_done(fut, 5))
    assert.equal("when added", fut:result())
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
  end))

  -- asyncio's add_signal_handler replaces the loop's Handle for the
  -- signal without cancelling the old one (unix_events.py): a signal of
  -- that kind already read (its Handle queued) still runs the old
  -- handler, once; the next one runs the new handler.
  it("a replaced handler still runs for a signal already queued, then the new one runs",
     async(function(loop)
    local calls = {}
    local old, fut = loop:create_future(), loop:create_future()
    loop:add_signal_handler(S.SIGUSR2, function()
      calls[#calls + 1] = "old2"
      old:set_result()
    end)
    loop:add_signal_handler(S.SIGUSR1, function()
      calls[#calls + 1] = "usr1"
      loop:add_signal_handler(S.SIGUSR2, function()
        calls[#calls + 1] = "new2"
        fut:set_result()
      end)
    end)
    -- Both are read in one turn of the loop: SIGUSR1's handler replaces
    -- SIGUSR2's while its Handle waits on the ready queue.
    S.kill(S.getpid(), S.SIGUSR1)
    S.kill(S.getpid(), S.SIGUSR2)
    assert.is_true(wait_done(old, 5))
    assert.same({"usr1", "old2"}, calls)
    S.kill(S.getpid(), S.SIGUSR2)
    assert.is_true(wait_done(fut, 5))
    assert.same({"usr1", "old2", "new2"}, calls)
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
    assert.is_true(loop:remove_signal_handler(S.SIGUSR2))
  end))

  it("remove_signal_handler returns whether there was one, and the handler stops", async(function(loop)
    -- SIGWINCH's default action is to ignore it: safe to send unhandled.
    local n = 0
    assert.is_false(loop:remove_signal_handler(S.SIGWINCH))
    loop:add_signal_handler(S.SIGWINCH, function() n = n + 1 end)
    assert.is_true(loop:remove_signal_handler("SIGWINCH"))
    assert.is_false(loop:remove_signal_handler(S.SIGWINCH))
    S.kill(S.getpid(), S.SIGWINCH)
    eddy.sleep(0.1)
    assert.equal(0, n)
  end))

  it("several loops may handle one signal: each runs its handler when it runs", function()
    local a, b = eddy.new_event_loop(), eddy.new_event_loop()
    local seen = {}
    a:add_signal_handler(S.SIGUSR1, function() seen.a = true end)
    b:add_signal_handler("SIGUSR1", function() seen.b = true end)
    S.kill(S.getpid(), S.SIGUSR1)
    a:run_until_complete(function() eddy.sleep(0.05) end)
    assert.same({a = true}, seen)
    b:run_until_complete(function() eddy.sleep(0.05) end)
    assert.same({a = true, b = true}, seen)
    a:close()
    b:close()
  end)

  it("sends the callback's errors to the exception handler", function()
    local reports = test.run_collecting(function(loop)
      local fut = loop:create_future()
      loop:add_signal_handler(S.SIGUSR1, function()
        loop:call_soon(function() fut:set_result() end)
        error(errors.ValueError("boom"))
      end)
      S.kill(S.getpid(), S.SIGUSR1)
      assert.is_true(wait_done(fut, 5))
      assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
    end)
    assert.equal(1, #reports)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    assert.equal("boom", reports[1].exception.message)
  end)

  -- asyncio's _check_signal: TypeError for "1", a str; in eddy a string
  -- is a signal's name (API.md §3), and "1" names none.
  it("raises ValueError for invalid signal numbers and names (test_check_signal)", async(function(loop)
    for _, sig in ipairs {0, -1, 32, 33, S.NSIG, S.NSIG + 1, 1000, 2 ^ 40} do
      raises(errors.ValueError, "invalid signal number", loop.add_signal_handler, loop, sig, print)
      raises(errors.ValueError, "invalid signal number", loop.remove_signal_handler, loop, sig)
    end
    for _, name in ipairs {"SIGFOO", "INT", "sigint", "", "SIGINT\0", "SIGUSR1\0x", "1"} do
      raises(errors.ValueError, "unknown signal name", loop.add_signal_handler, loop, name, print)
      raises(errors.ValueError, "unknown signal name", loop.remove_signal_handler, loop, name)
    end
  end))

  it("raises RuntimeError for SIGKILL and SIGSTOP, as asyncio for sigaction's EINVAL "
     .. "(test_add_signal_handler_install_error3)", async(function(loop)
    raises(errors.RuntimeError, "^sig 9 cannot be caught$", loop.add_signal_handler, loop, S.SIGKILL, print)
    raises(errors.RuntimeError, "^sig 19 cannot be caught$", loop.add_signal_handler, loop, "SIGSTOP", print)
    assert.is_false(loop:remove_signal_handler(S.SIGKILL))
  end))

  it("raises argument errors for wrong types; a coroutine is not a callback "
     .. "(test_add_signal_handler_coroutine_error)", async(function(loop)
    assert.has_error(function() loop:add_signal_handler(nil, print) end,
      "bad argument #1 to 'add_signal_handler' (signal number or name expected, got nil)")
    assert.has_error(function() loop:add_signal_handler(2.5, print) end)
    assert.has_error(function() loop:add_signal_handler({}, print) end)
    assert.has_error(function() loop:add_signal_handler(S.SIGUSR1, nil) end,
      "bad argument #2 to 'add_signal_handler' (function expected, got nil)")
    assert.has_error(function() loop:add_signal_handler(S.SIGUSR1, 42) end)
    assert.has_error(function() loop:add_signal_handler(S.SIGUSR1, coroutine.create(print)) end,
      "bad argument #2 to 'add_signal_handler' (function expected, got thread)")
    assert.has_error(function() loop:remove_signal_handler(true) end)
    assert.is_false(loop:remove_signal_handler(S.SIGUSR1))  -- nothing was added
  end))

  it("takes callable tables", async(function(loop)
    local fut = loop:create_future()
    loop:add_signal_handler(S.SIGUSR1, setmetatable({}, {
      __call = function(_, x) fut:set_result(x) end}), "called")
    S.kill(S.getpid(), S.SIGUSR1)
    assert.is_true(wait_done(fut, 5))
    assert.equal("called", fut:result())
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
  end))

  it("on a closed loop: add raises RuntimeError, remove returns false", function()
    local loop = eddy.new_event_loop()
    loop:close()
    raises(errors.RuntimeError, "closed", loop.add_signal_handler, loop, S.SIGUSR1, print)
    assert.is_false(loop:remove_signal_handler(S.SIGUSR1))
  end)

  it("loop:close() removes the loop's handlers (test_close)", function()
    local loop = eddy.new_event_loop()
    loop:add_signal_handler(S.SIGUSR1, print)
    loop:add_signal_handler(S.SIGWINCH, print)
    local opened = loop:_handle_counts()
    loop:close()
    local opened_after, freed = loop:_handle_counts()
    assert.equal(opened, opened_after)
    assert.equal(opened, freed)
    assert.is_false(loop:remove_signal_handler(S.SIGUSR1))
  end)
end)

describe("signal handlers in the eddy executable", function()
  it("do not keep the default loop alive", function()
    local r = run_script('local loop = require("eddy").get_event_loop()\n'
      .. 'loop:add_signal_handler("SIGUSR1", print)\n'
      .. 'loop:call_later(0.05, print, "timer")\n'
      .. READY)
    assert.equal(0, r.code, r.err)
    assert.equal("timer\n", r.out)
  end)

  it("removing the last SIGPIPE handler leaves SIGPIPE ignored, so a broken pipe cannot kill", function()
    -- libuv puts back the default action, which would end the process at
    -- the next write to a reset peer; eddy ignores SIGPIPE from the start
    local r = run_script('local eddy = require("eddy")\n'
      .. READY
      .. 'local function ignored()\n'
      .. '  for l in io.lines("/proc/self/status") do\n'
      .. '    local m = l:match("^SigIgn:%s*(%x+)")\n'
      .. '    if m then return math.tointeger(tonumber(m, 16)) & (1 << 12) ~= 0 end\n'
      .. '  end\n'
      .. 'end\n'
      .. 'local loop = eddy.new_event_loop()\n'
      .. 'print(ignored())\n'
      .. 'loop:add_signal_handler("SIGPIPE", print)\n'
      .. 'print(ignored())\n'
      .. 'loop:remove_signal_handler("SIGPIPE")\n'
      .. 'print(ignored())\n'
      .. 'loop:add_signal_handler("SIGPIPE", print)\n'
      .. 'loop:close()\n'
      .. 'print(ignored())\n')
    assert.equal(0, r.code, r.err)
    assert.equal("true\nfalse\ntrue\ntrue\n", r.out)
  end)

  it("removing a handler puts the default action back: SIGHUP and SIGINT kill "
     .. "(test_remove_signal_handler, test_remove_signal_handler_2)", function()
    for _, sig in ipairs {"SIGHUP", "SIGINT"} do
      local r = run_script('local loop = require("eddy").get_event_loop()\n'
        .. 'loop:add_signal_handler("' .. sig .. '", print, "handled")\n'
        .. 'assert(loop:remove_signal_handler("' .. sig .. '"))\n'
        .. READY
        .. 'loop:run_until_complete(function() require("eddy").sleep(5) end)\n'
        .. 'print("survived")\n', {S[sig]})
      assert.equal("signal", r.how, sig .. ": " .. r.out .. r.err)
      assert.equal(S[sig], r.code)
      assert.equal("", r.out)
    end
  end)

  it("a script's handler runs when another process signals it", function()
    local r = run_script('local eddy = require("eddy")\n'
      .. 'local loop = eddy.get_event_loop()\n'
      .. 'loop:add_signal_handler("SIGTERM", function(name) print("got " .. name) loop:stop() end, "SIGTERM")\n'
      .. READY
      .. 'loop:run_forever()\n'
      .. 'loop:close()\n', {"SIGTERM"})
    assert.equal(0, r.code, r.err)
    assert.equal("got SIGTERM\n", r.out)
  end)
end)

describe("Ctrl-C during eddy.run", function()
  it("cancels the main task; eddy.run raises KeyboardInterrupt", function()
    local r = run_script('local eddy = require("eddy")\n'
      .. 'eddy.run(function()\n'
      .. READY
      .. '  local ok, err = pcall(eddy.sleep, 10)\n'
      .. '  print("main got " .. tostring(err))\n'
      .. '  error(err, 0)\n'
      .. 'end)\n', {"SIGINT"})
    assert.equal(1, r.code, r.err)
    assert.equal("main got CancelledError\n", r.out)
    assert.matches("KeyboardInterrupt", r.err)
    -- well before the 10 s sleep; the exit of a loaded ASan build
    -- (its leak check) may take a good part of a second
    assert.is_true(r.elapsed < 5, "took " .. r.elapsed .. " s")
  end)

  it("is caught like a cancellation", function()
    local r = run_script('local eddy = require("eddy")\n'
      .. 'local ok, err = pcall(eddy.run, function()\n'
      .. READY
      .. '  eddy.sleep(10)\n'
      .. 'end)\n'
      .. 'print(ok, err, require("eddy.errors").is(err, require("eddy.errors").KeyboardInterrupt))\n', {"SIGINT"})
    assert.equal(0, r.code, r.err)
    assert.equal("false\tKeyboardInterrupt\ttrue\n", r.out)
  end)

  it("lets a main task that handles the cancellation return normally", function()
    local r = run_script('local eddy = require("eddy")\n'
      .. 'print(eddy.run(function()\n'
      .. READY
      .. '  local ok = pcall(eddy.sleep, 10)\n'
      .. '  return "cleaned up"\n'
      .. 'end))\n', {"SIGINT"})
    assert.equal(0, r.code, r.err)
    assert.equal("cleaned up\n", r.out)
  end)

  it("leaves SIGINT to a handler the loop has", function()
    local r = run_script('local eddy = require("eddy")\n'
      .. 'print(eddy.run(function()\n'
      .. '  local loop = eddy.get_running_loop()\n'
      .. '  local fut = loop:create_future()\n'
      .. '  loop:add_signal_handler("SIGINT", function() fut:set_result("handled") end)\n'
      .. READY
      .. '  return fut:await()\n'
      .. 'end))\n', {"SIGINT"})
    assert.equal(0, r.code, r.err)
    assert.equal("handled\n", r.out)
  end)

  it("puts the previous SIGINT action back after eddy.run", function()
    -- lua.c's: "interrupted!" in the running chunk.
    local r = run_script('local eddy = require("eddy")\n'
      .. 'eddy.run(function() end)\n'
      .. READY
      .. 'while true do end\n', {"SIGINT"})
    assert.equal(1, r.code, r.err)
    assert.matches("interrupted!", r.err)
  end)

  it("a task that never suspends: further Ctrl-Cs end the process", function()
    local r = run_script('local eddy = require("eddy")\n'
      .. 'eddy.run(function()\n'
      .. READY
      .. '  while true do end\n'
      .. 'end)\n', {"SIGINT", "SIGINT", "SIGINT"})
    assert.is_true(r.elapsed < 5, "took " .. r.elapsed .. " s")
    assert.same({"signal", S.SIGINT}, {r.how, r.code}, r.err)
  end)
end)
