-- eddy.base_events: the parts of the event loop written in Lua (asyncio's
-- base_events.py): run_until_complete, the exception handler, and
-- shutdown_asyncgens.  The hot paths (scheduling, timers, running) are C
-- methods of the same Loop class (src/loop.c).

local eddy = require "eddy"
local errors = require "eddy.errors"
local C = eddy._core
local Loop = C.Loop

local callable = require("eddy.args").callable

-- ensure_future(aw, loop [, level, fname, argn]): a Future/Task as is, or
-- a function (or coroutine) wrapped in a task on 'loop'; anything else is
-- an argument error naming fname's argument argn.
local function ensure_future(aw, loop, level, fname, argn)
  if C.isfuture(aw) then
    if loop ~= nil and aw:get_loop() ~= loop then
      error(errors.ValueError("The future belongs to a different loop than the one specified as the loop argument"), level or 2)
    end
    return aw
  end
  if type(aw) == "thread" or callable(aw) then
    loop = loop or C.get_event_loop()
    return loop:create_task(aw)
  end
  error(string.format("bad argument #%d to '%s' (awaitable expected: Future, Task or function; got %s)",
                      argn or 1, fname or "ensure_future", type(aw)), level or 2)
end
eddy.ensure_future = ensure_future

-- {================================================= Running

-- asyncio's _run_until_complete_cb: the future's done callback stops the
-- loop, so the run ends one iteration after the future is done (what was
-- ready by then still runs), and runs one iteration for a future already
-- done.
local function stop_loop(fut) fut:get_loop():stop() end

-- loop:run_until_complete(aw) -> results of aw
function Loop:run_until_complete(aw)
  if self:is_closed() then error(errors.RuntimeError("Event loop is closed"), 2) end
  -- Refused before aw becomes a task, which would otherwise run later.
  if self:is_running() then
    error(errors.RuntimeError("This event loop is already running"), 2)
  elseif C._get_running_loop() ~= nil then
    error(errors.RuntimeError("Cannot run the event loop while another loop is running"), 2)
  end
  local new_task = not C.isfuture(aw)
  local fut = ensure_future(aw, self, 3, "run_until_complete")
  -- A task of our own left pending (stop() came first) raises here: its
  -- collection is not reported as well (asyncio's _log_destroy_pending).
  if new_task then C._quiet_destroy(fut) end
  fut:add_done_callback(stop_loop)
  local ok, err = pcall(self._run_until, self, fut)
  fut:remove_done_callback(stop_loop)
  if not ok then
    -- Interrupted (Ctrl-C): the task's error is not "never retrieved".
    if new_task and fut:done() and not fut:cancelled() then fut:exception() end
    error(err, 0)
  end
  if not fut:done() then
    error(errors.RuntimeError("Event loop stopped before Future completed."), 2)
  end
  return fut:result()
end

local function index(t, k) return t[k] end

-- loop:_call_method_soon(protocol, name, ...): protocol:name(...) with
-- call_soon, for the transports written in Lua; nothing when the protocol
-- has no such method.  A protocol whose __index raises gets that error
-- scheduled in the method's place (reported as the method's own error
-- would be), so that the caller's bookkeeping after the call goes on.
function Loop:_call_method_soon(protocol, name, ...)
  local ok, method = pcall(index, protocol, name)
  if not ok then
    self:call_soon(error, method, 0)
  elseif method ~= nil then
    self:call_soon(method, protocol, ...)
  end
end

-- loop:shutdown_asyncgens(): close every async generator still open.
function Loop:shutdown_asyncgens()
  C._can_suspend("shutdown_asyncgens")  -- first, even with none open (API.md §1)
  local fields = self:_fields()
  local gens = fields.asyncgens
  fields.asyncgens_shutdown = true
  if gens == nil then return end
  local list = {}
  for gen in pairs(gens) do list[#list + 1] = gen end
  fields.asyncgens = nil
  if #list == 0 then return end
  local closers = {}
  for i, gen in ipairs(list) do
    closers[i] = self:create_task(function() return gen:aclose() end)
  end
  -- the options go last in the same array: an unpack() followed by another
  -- argument would pass its first value only
  closers[#list + 1] = {return_exceptions = true}
  local results = table.pack(eddy.gather(table.unpack(closers, 1, #list + 1)))
  for i = 1, #list do
    local r = results[i]
    -- aclose() returns nothing: anything else is an error, reported unless
    -- it is one of Python's BaseExceptions (asyncio's isinstance(result,
    -- Exception))
    if r ~= nil and not errors.is(r, errors.CancelledError)
       and not errors.is(r, errors.KeyboardInterrupt) then
      self:call_exception_handler {
        message = "an error occurred during closing of asynchronous generator "
                  .. tostring(list[i]),
        exception = r, asyncgen = list[i],
      }
    end
  end
end

-- }=================================================

-- {================================================= Exception handler

local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  return ok and type(s) == "string" and s or type(v)
end

-- One value of a context, for the log: a plain table (the original
-- context of a failed handler) shows its fields, one level deep, as
-- asyncio shows that dict's repr.
local function describe(v, nested)
  if type(v) == "table" and getmetatable(v) == nil then
    if nested then return "{...}" end
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = safe_tostring(k) .. " = " .. describe(x, true)
    end
    table.sort(parts)
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if type(v) == "string" and nested then  -- quoted, on one line
    return '"' .. v:gsub('[\\"\n]', {["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n"}) .. '"'
  end
  return safe_tostring(v)
end

-- What the default handler prints for 'context' (a table); handle_tb, if
-- given, is shown as its key handle_traceback.
local function format_context(context, handle_tb)
  -- asyncio's `if not message`: an empty one is no message either
  local message = context.message
  if message == nil or message == "" then message = "Unhandled exception in event loop" end
  local lines = {tostring(message)}
  local keys = {}
  local values = {handle_traceback = handle_tb}
  if handle_tb ~= nil then keys[1] = "handle_traceback" end
  for k, v in pairs(context) do
    if k ~= "message" and k ~= "exception" and values[k] == nil then
      keys[#keys + 1] = tostring(k)
      values[keys[#keys]] = v
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    lines[#lines + 1] = k .. ": " .. describe(values[k])
  end
  local exc = context.exception
  -- a task's "exception was never retrieved" names it 'future', as asyncio
  local task = context.task or context.future
  if exc ~= nil then
    lines[#lines + 1] = describe(exc)
    if type(exc) == "table" and type(rawget(exc, "traceback")) == "string" then
      lines[#lines + 1] = exc.traceback
    elseif type(exc) ~= "table" and C.isfuture(task) then
      -- a string error's, which the task keeps (src/future.c)
      lines[#lines + 1] = C._traceback(task)
    end
  end
  return table.concat(lines, "\n")
end

-- loop:default_exception_handler(context): print it on stderr.
function Loop:default_exception_handler(context)
  if type(context) ~= "table" then
    error("bad argument #1 to 'default_exception_handler' (table expected, got "
          .. type(context) .. ")", 2)
  end
  -- asyncio's handle_traceback: inside a callback scheduled in debug mode,
  -- where it was scheduled, unless the context says where its object was
  local handle_tb = context.source_traceback == nil and self:_handle_traceback() or nil
  io.stderr:write(format_context(context, handle_tb), "\n")
end

function Loop:set_exception_handler(handler)
  if handler ~= nil and not callable(handler) then
    error("bad argument #1 to 'set_exception_handler' (callable expected, got "
          .. type(handler) .. ")", 2)
  end
  self:_fields().exception_handler = handler
end

function Loop:get_exception_handler()
  return self:_fields().exception_handler
end

-- xpcall's message handler for the exception handler: its error is
-- reported with a traceback, as asyncio logs it; an error object keeps it
-- in its 'traceback' field, as a task's error does.  A class raised as is
-- becomes an instance first (Python's `raise Cls`), as in a task: its
-- traceback written into the class would be every later instance's.
local function with_traceback(err)
  if errors.isclass(err) then err = err() end
  if type(err) ~= "table" then return debug.traceback(err, 2) end
  -- raw, as the core's message handlers (src/errors.c): any table may be the error
  if rawget(err, "traceback") == nil then rawset(err, "traceback", debug.traceback(nil, 2)) end
  return err
end

-- The Context of what failed, for a custom handler to run in (asyncio
-- 3.12, gh-96704): the get_context() of the context's task, else its
-- future, else its handle, when it has one.
local function context_of(context)
  if type(context) ~= "table" then return nil end
  local thing = context.task or context.future or context.handle
  if type(thing) ~= "userdata" then return nil end
  local ok, get = pcall(function() return thing.get_context end)
  if not ok or type(get) ~= "function" then return nil end
  return get(thing)
end

-- loop:call_exception_handler(context): the handler never raises out.
function Loop:call_exception_handler(context)
  local handler = self:_fields().exception_handler
  if handler == nil then
    if type(context) == "table" and context.exception ~= nil then
      -- eddy_run() returns non-zero, with this report as eddy_errmsg
      -- (none when the context cannot be formatted: not the error of that)
      local ok, text = pcall(format_context, context)
      C._note_unhandled(ok and text or nil)
    end
    local ok, err = pcall(self.default_exception_handler, self, context)
    if not ok then
      io.stderr:write("Exception in default exception handler: ", tostring(err), "\n")
    end
    return
  end
  local ctx = context_of(context)
  local ok, err
  if ctx ~= nil then
    ok, err = xpcall(ctx.run, with_traceback, ctx, handler, self, context)
  else
    ok, err = xpcall(handler, with_traceback, self, context)
  end
  if not ok then
    local ok2, err2 = pcall(self.default_exception_handler, self, {
      message = "Unhandled error in exception handler",
      exception = err,
      context = context,
    })
    if not ok2 then
      io.stderr:write("Exception in default exception handler: ", tostring(err2), "\n")
    end
  end
end

-- }=================================================

-- Not the Loop table: Lua names C functions in argument errors after the
-- package.loaded entry they are found in ("bad argument #2 to 'add_reader'").
return true
