-- A UDP echo server and client (asyncio docs, "UDP Echo Server/Client
-- Protocol") in one script: the server echoes each datagram back; the
-- client sends one message, prints the echo and closes.
local eddy = require "eddy"

local EchoServer = {}
EchoServer.__index = EchoServer

function EchoServer:connection_made(transport)
  self.transport = transport
end

function EchoServer:datagram_received(data, addr)
  print(("Server received %q from %s:%d"):format(data, addr[1], addr[2]))
  self.transport:sendto(data, addr)
end

local function client_protocol(message, on_con_lost)
  local p = {}
  function p:connection_made(transport)
    print(("Client sends %q"):format(message))
    transport:sendto(message)
    self.transport = transport
  end
  function p:datagram_received(data, addr)
    print(("Client received %q"):format(data))
    self.transport:close()
  end
  function p:error_received(err)
    print("Error received:", err)
  end
  function p:connection_lost(err)
    print("Connection closed")
    on_con_lost:set_result(true)
  end
  return p
end

eddy.run(function()
  local loop = eddy.get_running_loop()
  local server = loop:create_datagram_endpoint(function()
    return setmetatable({}, EchoServer)
  end, {"127.0.0.1", 0})
  local addr = server:get_extra_info("sockname")
  print(("Serving on %s:%d"):format(addr[1], addr[2]))

  local on_con_lost = loop:create_future()
  local client = loop:create_datagram_endpoint(function()
    return client_protocol("Hello World!", on_con_lost)
  end, nil, addr)
  on_con_lost:await()
  client:close()
  server:close()
end)
