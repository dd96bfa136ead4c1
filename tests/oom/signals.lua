-- add_signal_handler, then a signal the process sends itself.
local eddy = require "eddy"
local signal = require "eddy.signal"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local got = loop:create_future()
  loop:add_signal_handler(signal.SIGUSR1, function(n)
    if not got:done() then got:set_result(n) end
  end, 7)
  signal.kill(signal.getpid(), signal.SIGUSR1)
  local ok, n = pcall(eddy.wait_for, got, 2)
  loop:remove_signal_handler(signal.SIGUSR1)
  if not ok then error(n, 0) end
  assert(n == 7)
end)
