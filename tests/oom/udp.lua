-- A datagram echo endpoint and a client endpoint on loopback.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local server_t = loop:create_datagram_endpoint(function()
    return {
      connection_made = function(self, t) self.t = t end,
      datagram_received = function(self, data, addr) self.t:sendto(data, addr) end,
    }
  end, {"127.0.0.1", 0})
  local addr = server_t:get_extra_info("sockname")
  local got = loop:create_future()
  local client_t = loop:create_datagram_endpoint(function()
    return {datagram_received = function(_, data)
      if not got:done() then got:set_result(data) end
    end}
  end, nil, addr)
  client_t:sendto("ping")
  assert(eddy.wait_for(got, 0.5) == "ping")
  client_t:close()
  server_t:close()
  eddy.sleep(0)
end)
