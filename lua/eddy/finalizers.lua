-- eddy.finalizers: work a __gc metamethod leaves to its object's loop.
--
-- A finalizer may run inside any allocation, even one in the middle of
-- the ready queue's growth, so a __gc with work for its loop (closing a
-- dropped async generator, or the transport of a dropped StreamWriter)
-- must not do it there.  finalizers.later(loop, fn, obj) queues fn(obj, loop)
-- and asks the loop to run its queue at the start of its next iteration,
-- a safe point (src/loop.c, run_finalizers).  An error in one goes to
-- its loop's exception handler, and the rest still run.

local eddy = require "eddy"
local C = eddy._core

local finalizers = {}

-- Each loop's own list (fn, obj, fn, obj, ...): a loop runs only the work
-- its objects left, and a loop collected after close takes its list along.
local queues = setmetatable({}, {__mode = "k"})

function finalizers.later(loop, fn, obj)
  local list = queues[loop]
  if list == nil then
    list = {}
    queues[loop] = list
  end
  local n = #list
  list[n + 1], list[n + 2] = fn, obj
  loop:_finalize_soon()
end

C.set_finalizer_hook(function(loop)
  local list = queues[loop]
  if list == nil then return end
  queues[loop] = nil
  for i = 1, #list, 2 do
    local ok, err = pcall(list[i], list[i + 1], loop)
    if not ok then
      loop:call_exception_handler({
        message = "Exception in the finalizer of " .. tostring(list[i + 1]),
        exception = err})
    end
  end
end)

return finalizers
