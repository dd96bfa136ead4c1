-- TCP echo server with the Protocol API (asyncio's "TCP Echo Server"
-- example).
--
--   eddy examples/echo_server.lua 8888    serve on 127.0.0.1:8888 until Ctrl-C
--   eddy examples/echo_server.lua         serve on a free port, echo one
--                                         client (made here), then stop
local eddy = require "eddy"

local EchoServerProtocol = {}
EchoServerProtocol.__index = EchoServerProtocol

function EchoServerProtocol:connection_made(transport)
  local peer = transport:get_extra_info("peername")
  print(string.format("Connection from %s:%d", peer[1], peer[2]))
  self.transport = transport
end

function EchoServerProtocol:data_received(data)
  print("Data received: " .. data)
  print("Send: " .. data)
  self.transport:write(data)
  print("Close the client socket")
  self.transport:close()
end

-- A client for the self-test: sends one message, prints the echo.
local function demo_client(loop, port)
  local done = loop:create_future()
  local client = {}
  function client.connection_made(_, transport) transport:write("Hello World!") end
  function client.data_received(_, data) print("Client got back: " .. data) end
  function client.connection_lost() done:set_result(true) end
  loop:create_connection(function() return client end, "127.0.0.1", port)
  eddy.wait_for(done, 10)
end

eddy.run(function()
  local loop = eddy.get_running_loop()
  local port = tonumber(arg[1]) or 0
  local server <close> = loop:create_server(
    function() return setmetatable({}, EchoServerProtocol) end, "127.0.0.1", port)
  port = server.sockets[1]:getsockname()[2]
  print("Serving on 127.0.0.1:" .. port)
  if arg[1] then
    server:serve_forever()
  else
    demo_client(loop, port)
  end
end)
