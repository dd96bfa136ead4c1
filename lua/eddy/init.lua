-- eddy: asyncio's event loop for Lua 5.4 (the module returned by
-- `require "eddy"`).  The C core (src/) provides the loop, futures, tasks
-- and handles; the Lua modules add asyncio's composition on top, one module
-- per asyncio module.

local C = ...
assert(type(C) == "table", "eddy.init is loaded by luaopen_eddy (require \"eddy\")")

local errors = require "eddy.errors"
local args = require "eddy.args"

local eddy = {
  errors = errors,
  _core = C,
  Future = C.Future,
  Task = C.Task,
  Loop = C.Loop,
}

-- The module is visible to the other Lua parts while they load.
package.loaded.eddy = eddy

-- {================================================= Getting a loop

eddy.new_event_loop = C.new_event_loop
eddy.set_event_loop = C.set_event_loop

function eddy.get_running_loop()
  local loop = C._get_running_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), 2) end
  return loop
end

eddy._get_running_loop = C._get_running_loop

function eddy.get_event_loop()
  return C.get_event_loop()
end

-- }=================================================

-- {================================================= Tasks & futures

eddy.sleep = C.sleep
eddy.await = C.await
eddy.isfuture = C.isfuture

-- eddy.current_task([loop]): the task running on 'loop' (default: the
-- running loop, so RuntimeError without one, as asyncio), or nil.
function eddy.current_task(loop)
  if loop == nil then
    loop = eddy.get_running_loop()
  elseif args.typename(loop) ~= "eddy.Loop" then
    error(args.message("current_task", 1, "eddy.Loop", loop), 2)
  end
  local task = C.current_task()
  if task ~= nil and rawequal(task:get_loop(), loop) then return task end
  return nil
end

function eddy.all_tasks(loop)
  loop = loop or eddy.get_running_loop()
  return C.all_tasks(loop)
end

-- eddy.create_task(fn, ...): on the running loop.
function eddy.create_task(fn, ...)
  if not args.callable(fn) and type(fn) ~= "thread" then
    error(args.message("create_task", 1, "function", fn), 2)
  end
  return eddy.get_running_loop():create_task(fn, ...)
end

-- }=================================================

-- eddy.socket: the socket module (src/socket.c).
eddy.socket = C.socket
package.loaded["eddy.socket"] = C.socket

-- eddy.signal: signal numbers by name, kill, getpid (src/signal.c).
eddy.signal = C.signal
package.loaded["eddy.signal"] = C.signal

-- The parts written in Lua add their functions to this table.  They are
-- not left in package.loaded as aliases of it: Lua names a function in an
-- error message after the first loaded module holding it, and
-- 'eddy.runners.sleep' is not a name anyone calls.
for _, part in ipairs{"eddy.base_events", "eddy.tasks", "eddy.runners",
    "eddy.asyncgen", "eddy.contextvars", "eddy.taskgroups", "eddy.timeouts",
    "eddy.locks", "eddy.queues", "eddy.transports", "eddy.selector_events",
    "eddy.executor", "eddy.streams", "eddy.subprocess"} do
  require(part)
  package.loaded[part] = true
end
-- eddy.subprocess is also a table of its own (PIPE, DEVNULL, ...);
-- eddy.ssl, which eddy.transports loads, stays one.
package.loaded["eddy.subprocess"] = eddy.subprocess

return eddy
