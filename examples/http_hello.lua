-- A minimal HTTP/1.1 "Hello, World!" server on the Protocol API: it
-- answers every request (keep-alive and pipelining included) with a fixed
-- response, as fast as the transport goes; no HTTP parser beyond finding
-- the blank line that ends each request head.
--
--   eddy examples/http_hello.lua 8080   serve on 127.0.0.1:8080 until Ctrl-C
--                                       (try: curl -i http://127.0.0.1:8080/)
--   eddy examples/http_hello.lua        serve on a free port, send itself
--                                       one request, print the answer, stop
local eddy = require "eddy"

local BODY = "Hello, World!"
local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
              .. "Content-Length: " .. #BODY .. "\r\n\r\n" .. BODY

local Http = {}
Http.__index = Http

function Http:connection_made(transport)
  self.transport = transport
  self.pending = ""
end

function Http:data_received(data)
  local buf = self.pending .. data
  local pos = 1
  while true do
    local _, e = buf:find("\r\n\r\n", pos, true)
    if e == nil then break end
    self.transport:write(RESPONSE)
    pos = e + 1
  end
  self.pending = buf:sub(pos)
  if #self.pending > 65536 then  -- a head that never ends
    self.transport:close()
  end
end

-- The self-test: one GET, read until the peer closes.
local function get(loop, port)
  local done = loop:create_future()
  local chunks = {}
  local client = {}
  function client.connection_made(_, t)
    t:write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    client.t = t
  end
  function client.data_received(_, d)
    chunks[#chunks + 1] = d
    if #table.concat(chunks) >= #RESPONSE then client.t:close() end
  end
  function client.connection_lost() done:set_result(table.concat(chunks)) end
  loop:create_connection(function() return client end, "127.0.0.1", port)
  return eddy.wait_for(done, 10)
end

eddy.run(function()
  local loop = eddy.get_running_loop()
  local server <close> = loop:create_server(function() return setmetatable({}, Http) end,
                                            "127.0.0.1", tonumber(arg[1]) or 0)
  local port = server.sockets[1]:getsockname()[2]
  print("Serving HTTP on http://127.0.0.1:" .. port .. "/")
  if arg[1] then
    server:serve_forever()
  else
    local answer = get(loop, port)
    io.write(answer, "\n")
    assert(answer:find("200 OK", 1, true) and answer:sub(-#BODY) == BODY)
    server:close_clients()
  end
end)
