-- run_in_executor and to_thread: functions on worker threads.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local a, b = eddy.wait_for(loop:run_in_executor(nil, function(x, t)
    return x * 2, t.k
  end, 21, {k = "v"}), 5)
  assert(a == 42 and b == "v")
  assert(eddy.wait_for(function() return eddy.to_thread(string.rep, "ab", 3) end, 5) == "ababab")
  assert(not pcall(eddy.to_thread, error, "in a thread"))
end)
