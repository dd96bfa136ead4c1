-- "Hello World with call_soon()" from the asyncio documentation (Event
-- Loop, Examples), in eddy: the low-level style, without tasks.
local eddy = require "eddy"

-- A callback to print "Hello World" and stop the event loop.
local function hello_world(loop)
  print("Hello World")
  loop:stop()
end

local loop = eddy.new_event_loop()

-- Schedule a call to hello_world().
loop:call_soon(hello_world, loop)

-- Blocking call interrupted by loop:stop(); the loop is closed however it
-- ends (Python's try/finally).
local ok, err = pcall(loop.run_forever, loop)
loop:close()
if not ok then error(err, 0) end
