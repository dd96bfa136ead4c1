-- Minimal HTTP responder on the Protocol API (bench/README.md:
-- http_protocol.lua): one fixed response per "\r\n\r\n" in the byte
-- stream, keeping the last 3 bytes for terminators split across reads.
-- Usage: eddy http_protocol.lua PORT
local eddy = require "eddy"

local port = assert(tonumber(arg[1]), "usage: http_protocol.lua PORT")

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
              .. "Content-Length: 13\r\n\r\nHello, World!"
local find, sub, rep = string.find, string.sub, string.rep

local Http = {}
Http.__index = Http

function Http:connection_made(transport)
  self.transport = transport
  self.tail = ""
end

function Http:data_received(data)
  local tail = self.tail
  if tail ~= "" then data = tail .. data end
  local len = #data
  local _, e = find(data, "\r\n\r\n", 1, true)
  if e == len then  -- one whole request, the usual case
    self.tail = ""
    self.transport:write(RESPONSE)
    return
  end
  local n, pos = 0, 1
  while e ~= nil do
    n = n + 1
    pos = e + 1
    _, e = find(data, "\r\n\r\n", pos, true)
  end
  if n == 1 then
    self.transport:write(RESPONSE)
  elseif n > 1 then
    self.transport:write(rep(RESPONSE, n))
  end
  -- the unmatched rest may start a terminator: keep at most its last 3 bytes
  if pos > len then
    self.tail = ""
  elseif len - pos >= 2 then
    self.tail = sub(data, len - 2)
  else
    self.tail = sub(data, pos)
  end
end

function Http:connection_lost(exc) self.transport = nil end

eddy.run(function()
  local loop = eddy.get_running_loop()
  local server = loop:create_server(function() return setmetatable({}, Http) end,
                                    "127.0.0.1", port, {backlog = 4096})
  server:serve_forever()
end)
