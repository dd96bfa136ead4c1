-- Echo server on the Protocol API (bench/README.md: echo_protocol.lua).
-- Usage: eddy echo_protocol.lua PORT
local eddy = require "eddy"

local port = assert(tonumber(arg[1]), "usage: echo_protocol.lua PORT")

local Echo = {}
Echo.__index = Echo

function Echo:connection_made(transport) self.transport = transport end
function Echo:data_received(data) self.transport:write(data) end
function Echo:connection_lost(exc) self.transport = nil end

eddy.run(function()
  local loop = eddy.get_running_loop()
  local server = loop:create_server(function() return setmetatable({}, Echo) end,
                                    "127.0.0.1", port, {backlog = 4096})
  server:serve_forever()
end)
