-- Echo server on the streams API (bench/README.md: echo_streams.lua).
-- Usage: eddy echo_streams.lua PORT
local eddy = require "eddy"

local port = assert(tonumber(arg[1]), "usage: echo_streams.lua PORT")

local function handle(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then break end
    writer:write(data)
    writer:drain()
  end
  writer:close()
end

eddy.run(function()
  local server = eddy.start_server(handle, "127.0.0.1", port, {backlog = 4096})
  server:serve_forever()
end)
