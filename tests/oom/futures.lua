-- Futures and tasks: results, errors, cancellation, gather, wait_for,
-- wait, shield, as_completed, TaskGroup, timeouts.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local f = loop:create_future()
  loop:call_soon(f.set_result, f, 1, 2)
  local a, b = eddy.wait_for(f, 2)
  assert(a == 1 and b == 2)
  local function add(x, y) eddy.sleep(0) return x + y end
  assert(eddy.gather(function() return add(1, 2) end) == 3)
  local t1, t2 = eddy.ensure_future(function() return add(1, 2) end),
                 eddy.ensure_future(function() error("boom") end)
  local results = {eddy.gather(t1, t2, {return_exceptions = true})}
  -- (a child's allocation failure comes back as its result: raise it)
  if results[1] ~= 3 then error(results[1], 0) end
  assert(results[2] ~= nil)
  assert(not pcall(eddy.wait_for, function() eddy.sleep(10) end, 0.01))
  local slow = loop:create_task(function() eddy.sleep(10) end)
  local done, pending = eddy.wait({slow}, {timeout = 0.001})
  if #done == 1 then done[1]:result() end  -- (failed: no memory to start it)
  assert(#done == 0 and #pending == 1)
  slow:cancel()
  eddy.wait({slow}, {timeout = 1})
  if not slow:cancelled() then slow:result() end  -- (its error, if any)
  assert(slow:cancelled())
  assert(eddy.await(eddy.shield(loop:create_task(add, 2, 3))) == 5)
  local sum = 0
  for fut in eddy.as_completed({loop:create_task(add, 1, 2), loop:create_task(add, 3, 4)},
                               {timeout = 2}) do
    sum = sum + fut:result()
  end
  assert(sum == 10)
  -- Without a timeout, a completion its done callback lost would be a
  -- wait for ever (oom_host's alarm): the step raises the memory error.
  -- (The second completes a turn later, when a step waits for it.)
  sum = 0
  for fut in eddy.as_completed({loop:create_task(add, 1, 2),
                                loop:create_task(function() eddy.sleep(0.001) return 7 end)}) do
    sum = sum + fut:result()
  end
  assert(sum == 10)
  do
    local tg <close> = eddy.TaskGroup()
    tg:create_task(add, 1, 1)
    tg:create_task(function() eddy.sleep(0.001) end)
  end
  do
    local _ <close> = eddy.timeout(2)
    eddy.sleep(0.001)
  end
  assert(eddy.wait_for(function() return add(4, 5) end, 2) == 9)
end)
