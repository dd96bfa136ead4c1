-- Read a command's output through a read pipe transport and write it
-- through a write pipe transport into `tr`, which upper-cases it
-- (docs/pipes.md).
local eddy = require "eddy"

eddy.run(function()
  local loop = eddy.get_running_loop()
  local done = loop:create_future()
  local sink = loop:connect_write_pipe(function()
    return {connection_lost = function(_, err) done:set_result(err) end}
  end, io.popen("tr a-z A-Z", "w"))
  loop:connect_read_pipe(function()
    return {
      data_received = function(_, data) sink:write(data) end,
      eof_received = function() sink:write_eof() end,
    }
  end, io.popen("printf 'hello\\npipes\\n'", "r"))
  assert(eddy.wait_for(done, 5) == nil)  -- both commands have exited
end)
