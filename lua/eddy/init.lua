-- eddy: asyncio's event loop for Lua 5.4 (the module returned by
-- `require "eddy"`).  The C core (src/) provides the loop, futures, tasks
-- and handles; the Lua modules add asyncio's composition on top, one module
-- per asyncio module.

local C = ...
assert(type(C) == "table", "eddy.init is loaded by luaopen_eddy (require \"eddy\")")

local errors = require "eddy.errors"

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

function eddy.current_task(loop)
  return C.current_task()
end

function eddy.all_tasks(loop)
  loop = loop or eddy.get_running_loop()
  return C.all_tasks(loop)
end

-- eddy.create_task(fn, ...): on the running loop.
function eddy.create_task(fn, ...)
  return eddy.get_running_loop():create_task(fn, ...)
end

-- }=================================================

-- eddy.socket: the socket module (src/socket.c).
eddy.socket = C.socket
package.loaded["eddy.socket"] = C.socket

-- eddy.signal: signal numbers by name, kill, getpid (src/signal.c).
eddy.signal = C.signal
package.loaded["eddy.signal"] = C.signal

require "eddy.base_events"
require "eddy.tasks"
require "eddy.runners"
require "eddy.asyncgen"
require "eddy.contextvars"
require "eddy.taskgroups"
require "eddy.timeouts"
require "eddy.locks"
require "eddy.queues"
require "eddy.transports"
require "eddy.selector_events"
require "eddy.executor"
require "eddy.streams"

return eddy
