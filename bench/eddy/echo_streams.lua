-- Echo server on the streams API (bench/README.md: echo_streams.lua).
-- Usage: eddy echo_streams.lua PORT
-- A peer that resets its connection ends that connection quietly, as the
-- Python peer's `except (ConnectionError, OSError)` does.
local eddy = require "eddy"

local port = assert(tonumber(arg[1]), "usage: echo_streams.lua PORT")

local function echo(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then return end
    writer:write(data)
    writer:drain()
  end
end

local function handle(reader, writer)
  local ok, err = pcall(echo, reader, writer)
  writer:close()
  if not ok and not eddy.errors.is(err, eddy.errors.OSError) then error(err, 0) end
end

eddy.run(function()
  local server = eddy.start_server(handle, "127.0.0.1", port, {backlog = 4096})
  server:serve_forever()
end)
