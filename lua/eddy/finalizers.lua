-- eddy.finalizers: work a __gc metamethod leaves to its object's loop.
--
-- A finalizer may run inside any allocation, even one in the middle of
-- the ready queue's growth, so a __gc with work for its loop (closing a
-- dropped async generator, or the transport of a dropped StreamWriter)
-- must not do it there.  finalizers.later(loop, fn, obj) queues fn(obj, loop)
-- and asks the loop to run the queue at the start of its next iteration,
-- a safe point (src/loop.c, run_finalizers).  An error in one goes to
-- its loop's exception handler, and the rest still run.

local eddy = require "eddy"
local C = eddy._core

local finalizers = {}

local queue = {}  -- fn, obj, loop, fn, obj, loop, ...

function finalizers.later(loop, fn, obj)
  local n = #queue
  queue[n + 1], queue[n + 2], queue[n + 3] = fn, obj, loop
  loop:_finalize_soon()
end

C.set_finalizer_hook(function()
  local list = queue
  queue = {}
  for i = 1, #list, 3 do
    local ok, err = pcall(list[i], list[i + 1], list[i + 2])
    if not ok then
      list[i + 2]:call_exception_handler({
        message = "Exception in the finalizer of " .. tostring(list[i + 1]),
        exception = err})
    end
  end
end)

return finalizers
