-- A short tour of eddy: callbacks, timers, tasks, gather, top-level suspension.
local eddy = require "eddy"

local loop = eddy.get_event_loop()
loop:call_soon(print, "1. a callback scheduled with call_soon")
loop:call_later(0.02, print, "3. a timer after 20 ms")

local function worker(name, delay)
  eddy.sleep(delay)
  return name .. " slept " .. delay
end

print(eddy.run(function()
  print("2. inside eddy.run: a task")
  local a, b = eddy.gather(function() return worker("a", 0.01) end,
                           function() return worker("b", 0.02) end)
  return "4. gather: " .. a .. ", " .. b
end))

-- Top-level suspension: no loop is running, so this runs the default loop.
print(eddy.sleep(0.01, "5. slept at the top of the script"))
