-- TCP echo client with the Protocol API (asyncio's "TCP Echo Client"
-- example).
--
--   eddy examples/echo_client.lua 127.0.0.1 8888   talk to a running echo server
--   eddy examples/echo_client.lua                  start a small echo server
--                                                  here first, so it runs alone
local eddy = require "eddy"

local EchoClientProtocol = {}
EchoClientProtocol.__index = EchoClientProtocol

function EchoClientProtocol.new(message, on_con_lost)
  return setmetatable({message = message, on_con_lost = on_con_lost}, EchoClientProtocol)
end

function EchoClientProtocol:connection_made(transport)
  transport:write(self.message)
  print("Data sent: " .. self.message)
  self.transport = transport
end

function EchoClientProtocol:data_received(data)
  print("Data received: " .. data)
  self.transport:close()
end

function EchoClientProtocol:connection_lost(exc)
  print("The server closed the connection")
  self.on_con_lost:set_result(true)
end

eddy.run(function()
  local loop = eddy.get_running_loop()
  local host, port = arg[1], tonumber(arg[2])
  local server
  if host == nil then
    -- No server given: echo locally.
    server = loop:create_server(function()
      local p = {}
      function p.connection_made(self, t) self.t = t end
      function p.data_received(self, d) self.t:write(d) end
      return p
    end, "127.0.0.1", 0)
    host, port = "127.0.0.1", server.sockets[1]:getsockname()[2]
  end
  local on_con_lost = loop:create_future()
  local transport = loop:create_connection(
    function() return EchoClientProtocol.new("Hello World!", on_con_lost) end, host, port)
  -- Wait until the protocol signals that the connection is lost, then
  -- close the transport.
  eddy.wait_for(on_con_lost, 10)
  transport:close()
  if server then
    server:close()
    server:close_clients()
    server:wait_closed()
  end
end)
