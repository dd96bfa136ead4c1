-- A short tour of eddy: callbacks, timers, tasks, gather, top-level
-- suspension.  The numbers are the order the lines are printed in.
local eddy = require "eddy"

-- Callbacks on the default loop wait until that loop runs (step 3).
local loop = eddy.get_event_loop()
loop:call_soon(print, "3. a callback scheduled with call_soon on the default loop")
loop:call_later(0.02, print, "4. a timer after 20 ms on the default loop")

local function worker(name, delay)
  eddy.sleep(delay)
  return name .. " slept " .. delay
end

-- eddy.run makes a loop of its own, runs main as a task on it, closes it.
print(eddy.run(function()
  print("1. inside eddy.run: a task on a fresh loop")
  local a, b = eddy.gather(function() return worker("a", 0.01) end,
                           function() return worker("b", 0.02) end)
  return "2. gather: " .. a .. ", " .. b
end))

-- Top-level suspension: no loop is running, so this runs the default loop
-- (the callback and the timer above fire now) until the sleep is over.
print(eddy.sleep(0.03, "5. slept at the top of the script"))
