-- "Display the current date with call_later()" from the asyncio
-- documentation (Event Loop, Examples), in eddy: a callback that
-- reschedules itself every 0.25 s for about one second, then stops the loop.
local eddy = require "eddy"

local INTERVAL = 0.25

local function display_date(end_time, loop)
  print(os.date("%Y-%m-%d %H:%M:%S"), string.format("loop time %.3f", loop:time()))
  if loop:time() + INTERVAL < end_time then
    loop:call_later(INTERVAL, display_date, end_time, loop)
  else
    loop:stop()
  end
end

local loop = eddy.new_event_loop()

-- Schedule the first call to display_date().
local end_time = loop:time() + 1.0
loop:call_soon(display_date, end_time, loop)

-- Blocking call interrupted by loop:stop().
local ok, err = pcall(loop.run_forever, loop)
loop:close()
if not ok then error(err, 0) end
