-- start_server / open_connection: readline, readexactly, readuntil, drain.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local function handle(reader, writer)
    local n = tonumber(reader:readline())
    if n == nil then  -- the client went away (its connect failed)
      writer:close()
      return
    end
    writer:write(reader:readexactly(n):upper())
    writer:write(reader:readuntil("END"))
    writer:drain()
    writer:close()
  end
  local server <close> = eddy.start_server(handle, "127.0.0.1", 0)
  local port = server.sockets[1]:getsockname()[2]
  local guard <close> = support.closer()
  local reader, writer = eddy.open_connection("127.0.0.1", port)
  guard[1] = writer
  writer:write("5\nhellotail END")
  writer:drain()
  assert(eddy.wait_for(function() return reader:readexactly(5) end, 2) == "HELLO")
  assert(eddy.wait_for(function() return reader:read() end, 2) == "tail END")
  writer:close()
  writer:wait_closed()
end)
