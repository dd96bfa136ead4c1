-- eddy.test: helpers for busted specs run under eddy.
--
--   local async = require("eddy.test").async
--   it("sleeps", async(function(loop) eddy.sleep(0.01) end))
--
-- async(fn [, timeout]) returns a spec body that runs fn(loop) as a task
-- on a fresh loop, fails if it takes longer than 'timeout' seconds
-- (default 10: the task is cancelled then, and the loop stopped if the
-- task still waits max(timeout, 1) s later), reports errors the loop's
-- exception handler saw, checks that every libuv handle the loop opened
-- was freed, and closes the loop.

local eddy = require "eddy"
local errors = require "eddy.errors"

local test = {}

test.default_timeout = 10

function test.async(fn, timeout)
  timeout = timeout or test.default_timeout
  return function()
    local loop = eddy.new_event_loop()
    local reported = {}
    loop:set_exception_handler(function(_, context)
      reported[#reported + 1] = context
    end)
    local task = loop:create_task(fn, loop)
    local stuck = false
    local timer = loop:call_later(timeout, function()
      task:cancel("spec timed out")
      -- a task that goes on waiting once cancelled (a <close> handler that
      -- awaits, as asyncio's __aexit__ may) must not hang the suite either
      timer = loop:call_later(math.max(timeout, 1), function()
        stuck = true
        loop:stop()
      end)
    end)
    local ok, err = pcall(loop.run_until_complete, loop, task)
    timer:cancel()
    if stuck then
      loop:close()
      error("spec timed out after " .. timeout .. " s, and was still waiting "
            .. math.max(timeout, 1) .. " s after its cancellation", 0)
    end
    -- Let pending callbacks (transport closes) finish.
    pcall(loop.run_until_complete, loop, function() eddy.sleep(0) eddy.sleep(0) end)
    local opened, freed = loop:_handle_counts()
    loop:close()
    collectgarbage()
    if not ok then
      if errors.is(err, errors.CancelledError) and task:cancelled() then
        error("spec timed out after " .. timeout .. " s", 0)
      end
      error(err, 0)
    end
    if opened ~= freed then
      error(string.format("leak: the loop opened %d handles and freed %d", opened, freed), 0)
    end
    if #reported > 0 and not test.allow_reports then
      local c = reported[1]
      error("the loop's exception handler was called: " .. tostring(c.message)
            .. (c.exception ~= nil and (" (" .. tostring(c.exception) .. ")") or ""), 0)
    end
  end
end

-- Run fn(loop) on a fresh loop with the same checks, returning the
-- exception handler's reports instead of failing on them.
function test.run_collecting(fn, timeout)
  local reports
  test.allow_reports = true
  local body = test.async(function(loop)
    local list = {}
    loop:set_exception_handler(function(_, context) list[#list + 1] = context end)
    reports = list
    return fn(loop)
  end, timeout)
  local ok, err = pcall(body)
  test.allow_reports = false
  if not ok then error(err, 0) end
  return reports
end

return test
