-- call_soon, call_later, call_at, cancel, time: a loop of callbacks.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local done = loop:create_future()
  local seen = {}
  loop:call_soon(function(x) seen[#seen + 1] = x end, "soon")
  loop:call_later(0.001, function() seen[#seen + 1] = "later" end)
  loop:call_later(10, error):cancel()
  loop:call_at(loop:time() + 0.002, function() done:set_result(#seen) end)
  assert(eddy.wait_for(done, 2) == 2)
  eddy.sleep(0)
  eddy.sleep(0.001)
end)
