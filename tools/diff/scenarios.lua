-- Fixed scenarios replayed on eddy: timeouts, async generators, the
-- exception handler.  scenarios.py is the asyncio twin, scenario for
-- scenario in the same order; run.py compares the traces.
--
-- Each scenario runs in its own eddy.run and prints "name: event" lines.
local eddy = require "eddy"
local errors = eddy.errors

local out, SCENARIOS = {}, {}

local function str(v)
  if v == nil then return "None" end
  if v == true then return "True" end
  if v == false then return "False" end
  return tostring(v)
end

local function trace(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = str(t[i]) end
  out[#out + 1] = table.concat(t, " ", 1, t.n)
end

local function scenario(name, fn) SCENARIOS[#SCENARIOS + 1] = {name, fn} end

local function classname(err)
  return (tostring(err):match("^(%w+)")) or type(err)
end

local function message(text)
  if text:find("^Exception in callback") then return "Exception in callback" end
  return (text:match("^[^:<]*"):gsub("%s+$", ""))
end

local function handler(_, context)
  local keys = {}
  for k in pairs(context) do
    if k ~= "source_traceback" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local e = context.exception
  trace("  exc", table.concat(keys, ","), e == nil and "-" or classname(e),
        message(context.message))
end

-- outcome(fn, ...): call fn(...) (it may suspend); trace how it ended.
local function outcome(fn, ...)
  local r = table.pack(pcall(fn, ...))
  if r[1] then trace("  ok", r[2]) else trace("  raised", classname(r[2])) end
end

-- anext_outcome(gen): asyncio's StopAsyncIteration is no values in eddy.
local function anext_outcome(gen)
  local r = table.pack(pcall(gen.anext, gen))
  if not r[1] then trace("  raised", classname(r[2]))
  elseif r.n == 1 then trace("  raised StopAsyncIteration")
  else trace("  ok", r[2]) end
end

-- cancel_when_waiting(fn): run fn as a task, cancel it once it waits;
-- trace how it ended.
local function cancel_when_waiting(fn)
  local task = eddy.create_task(fn)
  eddy.sleep(0)
  task:cancel()
  outcome(task.await, task)
end

local function run(main)
  local ok, err = pcall(eddy.run, function()
    eddy.get_running_loop():set_exception_handler(handler)
    main()
  end)
  if not ok then trace("  run raised", classname(err)) end
end

local function cancelling() return eddy.current_task():cancelling() end

-- {============================================ timeouts

scenario("timeout_expires", function()
  local t
  outcome(function()
    t = eddy.timeout(0.01)
    local _ <close> = t
    eddy.sleep(1)
  end)
  trace("  expired", t:expired(), "cancelling", cancelling())
end)

scenario("timeout_none_rescheduled", function()
  local loop = eddy.get_running_loop()
  outcome(function()
    local t <close> = eddy.timeout(nil)
    trace("  when", t:when())
    t:reschedule(loop:time() + 0.01)
    eddy.sleep(1)
  end)
end)

scenario("timeout_reschedule_past", function()
  local loop = eddy.get_running_loop()
  outcome(function()
    local t <close> = eddy.timeout(10)
    t:reschedule(loop:time() - 1)
    trace("  expired before suspending", t:expired())
    eddy.sleep(0)
    trace("  not reached")
  end)
end)

scenario("timeout_outer_expires", function()
  local inner_t, outer_t
  outcome(function()
    outer_t = eddy.timeout(0.01)
    local _ <close> = outer_t
    local ok, err = pcall(function()
      inner_t = eddy.timeout(1)
      local _ <close> = inner_t
      eddy.sleep(1)
    end)
    if not ok then
      trace("  inner raised", classname(err))
      error(err, 0)
    end
  end)
  trace("  inner expired", inner_t:expired(), "outer expired", outer_t:expired())
end)

scenario("timeout_inner_expires", function()
  outcome(function()
    local outer_t = eddy.timeout(1)
    do
      local _ <close> = outer_t
      local ok, err = pcall(function()
        local _ <close> = eddy.timeout(0.01)
        eddy.sleep(1)
      end)
      if not ok then
        if not errors.is(err, errors.TimeoutError) then error(err, 0) end
        trace("  inner TimeoutError")
      end
      eddy.sleep(0)
    end
    trace("  outer expired", outer_t:expired())
    return "done"
  end)
end)

scenario("timeout_same_deadline_nested", function()
  local loop = eddy.get_running_loop()
  local when = loop:time() + 0.01
  outcome(function()
    local _ <close> = eddy.timeout_at(when)
    local ok, err = pcall(function()
      local _ <close> = eddy.timeout_at(when)
      eddy.sleep(1)
    end)
    if not ok then
      trace("  inner raised", classname(err), "cancelling", cancelling())
      error(err, 0)
    end
  end)
  trace("  cancelling", cancelling())
end)

scenario("timeout_and_cancel_same_iteration", function()
  cancel_when_waiting(function()
    local _ <close> = eddy.timeout(-1)
    eddy.sleep(1)
  end)
end)

scenario("timeout_cancel_then_expiry", function()
  cancel_when_waiting(function()
    do
      local _ <close> = eddy.timeout(0.01)
      local ok, err = pcall(eddy.sleep, 1)
      if not ok then
        trace("  body cancelled, cancelling", cancelling())
        eddy.sleep(0.05)
        trace("  after sleep")
        error(err, 0)
      end
    end
    trace("  not reached")
  end)
end)

scenario("timeout_swallowed", function()
  outcome(function()
    local t = eddy.timeout(0.01)
    do
      local _ <close> = t
      if not pcall(eddy.sleep, 1) then trace("  caught, cancelling", cancelling()) end
    end
    trace("  expired", t:expired(), "cancelling", cancelling())
    eddy.sleep(0)
    return "went on"
  end)
end)

scenario("timeout_other_error", function()
  outcome(function()
    local _ <close> = eddy.timeout(0.01)
    if not pcall(eddy.sleep, 1) then error(errors.ValueError("instead")) end
  end)
  trace("  cancelling", cancelling())
end)

scenario("timeout_no_suspension", function()
  outcome(function()
    local t = eddy.timeout(0)
    do local _ <close> = t end
    trace("  expired", t:expired())
    eddy.sleep(0.01)
    return "not cancelled later"
  end)
end)

scenario("timeout_zero_suspends", function()
  outcome(function()
    local _ <close> = eddy.timeout(0)
    eddy.sleep(0)
  end)
end)

scenario("timeout_reschedule_after_exit", function()
  local t = eddy.timeout(1)
  do local _ <close> = t end
  local ok, err = pcall(t.reschedule, t, nil)
  if not ok then trace("  RuntimeError", err.message) end
  local t2
  outcome(function()
    t2 = eddy.timeout(0.01)
    local _ <close> = t2
    eddy.sleep(1)
  end)
  ok, err = pcall(t2.reschedule, t2, nil)
  if not ok then trace("  RuntimeError", err.message) end
end)

scenario("timeout_body_done_after_expiry", function()
  local loop = eddy.get_running_loop()
  outcome(function()
    local fut = loop:create_future()
    do
      local t <close> = eddy.timeout(10)
      loop:call_soon(fut.set_result, fut, "value")
      loop:call_soon(t.reschedule, t, loop:time() - 1)
      trace("  got", fut:await())
      eddy.sleep(0)
    end
    return "end"
  end)
end)

scenario("timeout_uncancel_clears_pending_cancel", function()
  local loop = eddy.get_running_loop()
  outcome(function()
    local fut = loop:create_future()
    do
      local t <close> = eddy.timeout(10)
      loop:call_soon(fut.set_result, fut, "value")
      eddy.sleep(0)
      loop:call_soon(t.reschedule, t, loop:time() - 1)
      eddy.sleep(0)
    end
    return "end"
  end)
end)

scenario("timeout_reschedule_while_expiring", function()
  outcome(function()
    local t <close> = eddy.timeout(0.01)
    local ok, err = pcall(eddy.sleep, 1)
    if not ok then
      trace("  expired inside", t:expired())
      local ok2, err2 = pcall(t.reschedule, t, nil)
      if not ok2 then trace("  RuntimeError", err2.message) end
      error(err, 0)
    end
  end)
end)

scenario("timeout_cancelled_from_outside", function()
  local t
  cancel_when_waiting(function()
    t = eddy.timeout(1)
    local _ <close> = t
    eddy.sleep(1)
  end)
  trace("  expired", t:expired(), "when cleared", t:when() == nil)
end)

scenario("timeout_three_levels_same_deadline", function()
  local loop = eddy.get_running_loop()
  local when = loop:time() + 0.01
  local function level(n)
    local ok, err = pcall(function()
      local _ <close> = eddy.timeout_at(when)
      if n == 0 then eddy.sleep(1) else level(n - 1) end
    end)
    if not ok then
      trace("  level", n, classname(err), cancelling())
      error(err, 0)
    end
  end
  outcome(level, 2)
end)

scenario("timeout_reschedule_none_then_later", function()
  local loop = eddy.get_running_loop()
  outcome(function()
    local t <close> = eddy.timeout(0.01)
    t:reschedule(nil)
    trace("  when", t:when())
    eddy.sleep(0.03)
    t:reschedule(loop:time() + 0.01)
    eddy.sleep(1)
  end)
end)

scenario("timeout_around_taskgroup", function()
  local function child(n)
    local ok, err = pcall(eddy.sleep, 1)
    if not ok then
      trace("  a child cancelled")
      error(err, 0)
    end
  end
  outcome(function()
    local _ <close> = eddy.timeout(0.01)
    local tg <close> = eddy.TaskGroup()
    tg:create_task(child, 1)
    tg:create_task(child, 2)
    eddy.sleep(1)
  end)
  trace("  cancelling", cancelling())
end)

scenario("timeout_inside_taskgroup_child", function()
  local function child()
    local _ <close> = eddy.timeout(0.01)
    eddy.sleep(1)
  end
  local ok, err = pcall(function()
    local tg <close> = eddy.TaskGroup()
    tg:create_task(child)
    eddy.sleep(0.1)
    trace("  body not cancelled")
  end)
  if not ok then
    local names = {}
    for i, e in ipairs(type(err) == "table" and err.exceptions or {}) do names[i] = "'" .. classname(e) .. "'" end
    trace("  raised", classname(err), "[" .. table.concat(names, ", ") .. "]")
  end
end)

-- }============================================
-- {============================================ async generators

scenario("agen_break_closes", function()
  local gen = eddy.asyncgen(function(yield)
    local _ <close> = setmetatable({}, {__close = function()
      trace("  finally")
      eddy.sleep(0)
      trace("  finally after sleep")
    end})
    for i = 0, 4 do yield(i) end
  end)
  for i in gen() do
    trace("  got", i)
    if i == 1 then break end
  end
  trace("  after loop")
end)

scenario("agen_dropped_suspended", function()
  local gen = eddy.asyncgen(function(yield)
    local _ <close> = setmetatable({}, {__close = function()
      trace("  finally, in a task:", eddy.current_task() ~= nil)
    end})
    yield(1)
    yield(2)
  end)
  local g = gen()
  trace("  got", g:anext())
  g = nil
  collectgarbage()
  collectgarbage()
  trace("  collected")
  eddy.sleep(0)
  eddy.sleep(0)
  trace("  after two iterations")
end)

scenario("agen_shutdown", function()
  local gen = eddy.asyncgen(function(yield, name, fail)
    local _ <close> = setmetatable({}, {__close = function()
      trace("  finally", name)
      eddy.sleep(0)
      if fail then error(errors.ValueError(name)) end
    end})
    yield(name)
  end)
  kept = gen("a", true)   -- luacheck: ignore (a global, as the Python twin's)
  trace("  got", kept:anext())
  trace("  main returns")
end)

scenario("agen_aclose_ignores_exit", function()
  local gen = eddy.asyncgen(function(yield)
    local ok, err = pcall(yield, 1)
    yield(2)
    if not ok then error(err, 0) end
  end)
  local g = gen()
  g:anext()
  outcome(g.aclose, g)
end)

scenario("agen_athrow", function()
  local gen = eddy.asyncgen(function(yield)
    local ok, err = pcall(yield, 1)
    if not ok then
      if not errors.is(err, errors.ValueError) then error(err, 0) end
      trace("  caught in gen")
      yield("after throw")
    end
    yield("last")
  end)
  local g = gen()
  g:anext()
  outcome(g.athrow, g, errors.ValueError("x"))
  anext_outcome(g)
  anext_outcome(g)
  anext_outcome(g)
end)

scenario("agen_athrow_uncaught", function()
  local gen = eddy.asyncgen(function(yield)
    local _ <close> = setmetatable({}, {__close = function() trace("  finally") end})
    yield(1)
  end)
  local g = gen()
  g:anext()
  outcome(g.athrow, g, errors.ValueError("x"))
  anext_outcome(g)
end)

scenario("agen_aclose_not_started", function()
  local gen = eddy.asyncgen(function(yield)
    trace("  body ran")
    yield(1)
  end)
  local g = gen()
  outcome(g.aclose, g)
  anext_outcome(g)
end)

scenario("agen_running", function()
  local gen = eddy.asyncgen(function(yield)
    eddy.sleep(0.01)
    yield(1)
  end)
  local g = gen()
  local t = eddy.create_task(g.anext, g)
  eddy.sleep(0)
  anext_outcome(g)
  outcome(g.aclose, g)
  t:await()
end)

scenario("agen_error_in_body", function()
  local gen = eddy.asyncgen(function(yield)
    yield(1)
    error(errors.ValueError("body"))
  end)
  local g = gen()
  g:anext()
  anext_outcome(g)
  anext_outcome(g)
end)

scenario("agen_aclose_error_in_finally", function()
  local gen = eddy.asyncgen(function(yield)
    local _ <close> = setmetatable({}, {__close = function()
      error(errors.ValueError("cleanup"))
    end})
    yield(1)
  end)
  local g = gen()
  g:anext()
  outcome(g.aclose, g)
end)

scenario("agen_asend", function()
  local gen = eddy.asyncgen(function(yield)
    trace("  got sent", (yield("first")))
    trace("  got sent", (yield("second")))
  end)
  local g = gen()
  outcome(g.asend, g, nil)
  outcome(g.asend, g, "a")
  local r = table.pack(pcall(g.asend, g, "b"))
  if not r[1] then trace("  raised", classname(r[2]))
  elseif r.n == 1 then trace("  raised StopAsyncIteration")
  else trace("  ok", r[2]) end
end)

scenario("agen_after_aclose", function()
  local gen = eddy.asyncgen(function(yield) yield(1) yield(2) end)
  local g = gen()
  g:anext()
  outcome(g.aclose, g)
  anext_outcome(g)
  outcome(g.aclose, g)
  outcome(g.athrow, g, errors.ValueError("late"))
end)

scenario("agen_aclose_while_sleeping", function()
  local gen = eddy.asyncgen(function(yield)
    local _ <close> = setmetatable({}, {__close = function() trace("  finally") end})
    yield(1)
    eddy.sleep(0.02)
    yield(2)
  end)
  local g = gen()
  g:anext()
  local t = eddy.create_task(g.anext, g)
  eddy.sleep(0)
  outcome(g.aclose, g)
  outcome(t.await, t)
  outcome(g.aclose, g)
end)

scenario("agen_dropped_not_started", function()
  local gen = eddy.asyncgen(function(yield)
    trace("  body ran")
    yield(1)
  end)
  local g = gen()
  g = nil
  collectgarbage()
  collectgarbage()
  eddy.sleep(0)
  trace("  done")
end)

scenario("agen_shutdown_twice_and_late", function()
  local gen = eddy.asyncgen(function(yield)
    local _ <close> = setmetatable({}, {__close = function() trace("  finally") end})
    yield(1)
  end)
  local loop = eddy.get_running_loop()
  loop:shutdown_asyncgens()
  late = gen()   -- luacheck: ignore (a global, as the Python twin's)
  trace("  got", late:anext())
  loop:shutdown_asyncgens()
  trace("  after second shutdown")
  late:aclose()
end)

-- }============================================
-- {============================================ the exception handler

scenario("exc_callback_raises", function()
  eddy.get_running_loop():call_soon(function() error(errors.ValueError("x")) end)
  eddy.sleep(0)
end)

scenario("exc_done_callback_raises", function()
  local f = eddy.get_running_loop():create_future()
  f:add_done_callback(function() error(errors.ValueError("in done callback")) end)
  f:set_result(1)
  eddy.sleep(0)
end)

scenario("exc_future_never_retrieved", function()
  local f = eddy.get_running_loop():create_future()
  f:set_exception(errors.ValueError("lost"))
  f = nil
  collectgarbage()
  collectgarbage()
end)

scenario("exc_task_never_retrieved", function()
  local t = eddy.create_task(function() error(errors.ValueError("lost")) end)
  eddy.sleep(0)
  t = nil
  collectgarbage()
  collectgarbage()
end)

scenario("exc_task_destroyed_pending", function()
  local loop = eddy.get_running_loop()
  local t = eddy.create_task(function() loop:create_future():await() end)
  eddy.sleep(0)
  t = nil
  collectgarbage()
  collectgarbage()
end)

scenario("exc_data_received_raises", function()
  local loop = eddy.get_running_loop()
  local lost = loop:create_future()
  local srv = loop:create_server(function()
    return {
      data_received = function() error(errors.ValueError("bad data")) end,
      connection_lost = function(_, exc) lost:set_result(classname(exc)) end,
    }
  end, "127.0.0.1", 0)
  local port = srv.sockets[1]:getsockname()[2]
  local _, w = eddy.open_connection("127.0.0.1", port)
  w:write("x")
  trace("  connection_lost", eddy.wait_for(lost, 5))
  w:close()
  srv:close()
  srv:wait_closed()
end)

scenario("exc_peer_reset", function()
  local socket = require "eddy.socket"
  local loop = eddy.get_running_loop()
  local lost, got = loop:create_future(), loop:create_future()
  local srv = loop:create_server(function()
    return {
      connection_made = function(_, transport) transport:write("unread by the peer") end,
      data_received = function() got:set_result(true) end,
      connection_lost = function(_, exc) lost:set_result(classname(exc)) end,
    }
  end, "127.0.0.1", 0)
  local port = srv.sockets[1]:getsockname()[2]
  local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  s:connect({"127.0.0.1", port})
  s:send("x")
  eddy.wait_for(got, 5)
  eddy.sleep(0.05)
  s:close()
  trace("  connection_lost", eddy.wait_for(lost, 5))
  srv:close()
  srv:wait_closed()
end)

scenario("exc_handler_raises", function()
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function() error(errors.RuntimeError("handler broke")) end)
  local ok = pcall(loop.call_exception_handler, loop, {message = "test"})
  trace("  call_exception_handler returned", ok)
  loop:set_exception_handler(handler)
end)

scenario("exc_debug_source_traceback", function()
  local loop = eddy.get_running_loop()
  loop:set_debug(true)
  local got = {}
  loop:set_exception_handler(function(_, c) got[#got + 1] = c.source_traceback ~= nil and "True" or "False" end)
  loop:call_soon(function() error(errors.ValueError("x")) end)
  eddy.sleep(0)
  local f = loop:create_future()
  f:set_exception(errors.ValueError("lost"))
  f = nil
  collectgarbage()
  collectgarbage()
  local t = eddy.create_task(function() loop:create_future():await() end)
  eddy.sleep(0)
  t = nil
  collectgarbage()
  collectgarbage()
  trace("  source_traceback", "[" .. table.concat(got, ", ") .. "]")
  loop:set_debug(false)
end)

-- }============================================

for _, s in ipairs(SCENARIOS) do
  trace(s[1])
  run(s[2])
end
print(table.concat(out, "\n"))
