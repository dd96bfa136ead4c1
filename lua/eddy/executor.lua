-- eddy.executor: the executor parts of the loop written in Lua (asyncio's
-- base_events.py): shutdown_default_executor, and close() shutting down the
-- default executor.  The thread pool, run_in_executor, set_default_executor
-- and to_thread are C (src/executor.c).

local eddy = require "eddy"
local errors = require "eddy.errors"
local C = eddy._core
local Loop = C.Loop

eddy.ThreadPoolExecutor = C.ThreadPoolExecutor
eddy.to_thread = C.to_thread

-- S loop:shutdown_default_executor(timeout): no new jobs for the default
-- executor; wait (at most 'timeout' seconds, nil = no limit) until its
-- threads have finished their jobs and exited.  On timeout, warn (Lua
-- warning "RuntimeWarning: ...") and return, as asyncio 3.12.
function Loop:shutdown_default_executor(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    error("bad argument #1 to 'shutdown_default_executor' (number expected, got "
          .. type(timeout) .. ")", 2)
  end
  -- First, before anything changes, even with no executor to wait for:
  -- a plain callback gets the RuntimeError naming it (API.md §1); at a
  -- script's top level wait_for runs the default loop (API.md §11).
  C._can_suspend("shutdown_default_executor")
  local fields = self:_fields()
  fields.executor_shutdown_called = true
  local executor = fields.default_executor
  if executor == nil then return end
  executor:shutdown(false)
  local exited = executor:_threads_exited(self)
  -- Shielded: giving up the wait must not cancel the threads' future.
  local ok, err = pcall(eddy.wait_for, eddy.shield(exited), timeout)
  if ok then
    executor:shutdown(true)  -- every thread has exited: joining is instant
  elseif errors.is(err, errors.TimeoutError) then
    warn("RuntimeWarning: The executor did not finish joining its threads within ",
         tostring(timeout), " seconds.")
  else
    error(err, 0)
  end
end

-- loop:close() also shuts the default executor down without waiting, as
-- asyncio's: jobs still running finish on their own; their results are
-- dropped.
local close = Loop.close
function Loop:close()
  if not self:is_running() and not self:is_closed() then
    local fields = self:_fields()
    local executor = fields.default_executor
    if executor ~= nil then
      fields.default_executor = nil
      executor:shutdown(false)
    end
  end
  return close(self)
end

return eddy
