-- start_server / open_connection: readline, readexactly, readuntil, drain.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local function handle(reader, writer)
    local line = reader:readline()
    local n = tonumber(line)
    writer:write(reader:readexactly(n):upper())
    writer:write(reader:readuntil("END"))
    writer:drain()
    writer:close()
  end
  local server <close> = eddy.start_server(handle, "127.0.0.1", 0)
  local port = server.sockets[1]:getsockname()[2]
  local reader, writer = eddy.open_connection("127.0.0.1", port)
  local _ <close> = support.closing(writer)
  writer:write("5\nhellotail END")
  writer:drain()
  assert(eddy.wait_for(function() return reader:readexactly(5) end, 2) == "HELLO")
  assert(eddy.wait_for(function() return reader:read() end, 2) == "tail END")
  writer:close()
  writer:wait_closed()
end)
