-- eddy.runners: eddy.run (asyncio.run).

local eddy = require "eddy"
local errors = require "eddy.errors"
local args = require "eddy.args"
local C = eddy._core

-- Cancel every task still pending on 'loop' and wait for them
-- (asyncio.runners._cancel_all_tasks).
local function cancel_all_tasks(loop)
  local to_cancel = C.all_tasks(loop)
  if #to_cancel == 0 then return end
  for _, task in ipairs(to_cancel) do task:cancel() end
  to_cancel[#to_cancel + 1] = {return_exceptions = true}
  loop:run_until_complete(function()
    return eddy.gather(table.unpack(to_cancel))
  end)
  for i = 1, #to_cancel - 1 do
    local task = to_cancel[i]
    if not task:cancelled() then
      local exc = task:exception()
      if exc ~= nil then
        loop:call_exception_handler {
          message = "unhandled exception during eddy.run() shutdown",
          exception = exc,
          task = task,
        }
      end
    end
  end
end

-- How long asyncio.Runner.close waits for the default executor's threads
-- (constants.THREAD_JOIN_TIMEOUT, asyncio 3.12) before it warns and goes on.
local THREAD_JOIN_TIMEOUT = 300

-- What asyncio.Runner.close does: cancel the pending tasks and let them
-- finish, shut down the async generators and the default executor, close
-- the loop.  Shared with the REPL's end (src/repl.c), which leaves so too
-- and finds it in package.loaded: not on 'eddy', whose functions tools
-- enumerate and call (tests/fuzz_api.lua), as this one ends the loop.
local function shutdown_loop(loop)
  pcall(function()  -- shutdown steps are best effort, as asyncio's
    cancel_all_tasks(loop)
    loop:run_until_complete(function() loop:shutdown_asyncgens() end)
    if loop.shutdown_default_executor then
      loop:run_until_complete(function() loop:shutdown_default_executor(THREAD_JOIN_TIMEOUT) end)
    end
  end)
  loop:close()
end
package.loaded["eddy.runners.shutdown_loop"] = shutdown_loop

-- eddy.run(main, ...) -> main's results (re-raises its error).
function eddy.run(main, ...)
  if C._get_running_loop() ~= nil then
    error(errors.RuntimeError("eddy.run() cannot be called from a running event loop"), 2)
  end
  -- Checked before the loop exists, so a bad argument leaks no loop.  A
  -- Future is refused too (asyncio.run: "a coroutine was expected"): it
  -- belongs to another loop, which this new one cannot run.
  if type(main) ~= "thread" and not args.callable(main) then
    error(args.message("run", 1, "function", main), 2)
  end
  local loop = eddy.new_event_loop()
  local task = loop:create_task(main, ...)
  -- Ctrl-C cancels the main task while it runs, as asyncio.Runner's SIGINT
  -- handler (src/signal.c); a main task ended by that cancellation makes
  -- eddy.run raise KeyboardInterrupt.
  loop:_catch_interrupt(task)
  local result = table.pack(pcall(loop.run_until_complete, loop, task))
  if loop:_release_interrupt() and not result[1]
     and errors.is(result[2], errors.CancelledError) and task:uncancel() == 0 then
    result[2] = errors.KeyboardInterrupt()
  end
  shutdown_loop(loop)
  if not result[1] then error(result[2], 0) end
  return table.unpack(result, 2, result.n)
end

return eddy
