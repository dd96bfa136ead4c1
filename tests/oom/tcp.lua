-- A Protocol echo server and a client Protocol exchanging messages over
-- loopback TCP.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local Echo = {}
  Echo.__index = Echo
  function Echo:connection_made(t) self.t = t end
  function Echo:data_received(d) self.t:write(d) end
  function Echo:eof_received() end
  function Echo:connection_lost() end
  local server <close> = loop:create_server(function() return setmetatable({}, Echo) end,
                                            "127.0.0.1", 0)
  local port = server.sockets[1]:getsockname()[2]
  local got, lost = {}, loop:create_future()
  local client = {
    connection_made = function() end,
    data_received = function(_, d) got[#got + 1] = d end,
    connection_lost = function(_, exc) lost:set_result(exc) end,
  }
  local guard <close> = support.closer()
  local transport = loop:create_connection(function() return client end, "127.0.0.1", port)
  guard[1] = transport
  for i = 1, 3 do
    transport:write("message " .. i .. "\n")
    eddy.sleep(0.005)
  end
  transport:close()
  eddy.wait_for(lost, 2)
  assert(table.concat(got):find("message 3"))
end)
