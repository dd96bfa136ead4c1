-- A line-based chat server on streams: every line a client sends goes to
-- all the other clients, prefixed with the sender's name.
--
--   eddy examples/chat_server.lua 8888    serve on 127.0.0.1:8888 until Ctrl-C
--                                         (try two `nc 127.0.0.1 8888`)
--   eddy examples/chat_server.lua         serve on a free port, run two
--                                         clients (made here) that chat, stop
local eddy = require "eddy"

local clients = {}  -- writer -> name

local function broadcast(from, line)
  for writer in pairs(clients) do
    if writer ~= from then writer:write(line) end
  end
end

-- One task per client (eddy.start_server's client_connected_cb).
local function handle_client(reader, writer)
  local peer = writer:get_extra_info("peername")
  local name = string.format("%s:%d", peer[1], peer[2])
  clients[writer] = name
  writer:write("welcome, " .. name .. "\n")
  broadcast(writer, name .. " joined\n")
  -- Lines end with "\n"; lines() hands them over without it.
  for line in reader:lines() do
    broadcast(writer, string.format("<%s> %s\n", name, line))
  end
  clients[writer] = nil
  broadcast(writer, name .. " left\n")
  writer:close()
  writer:wait_closed()
end

-- The self-test: two clients join, talk, and leave.
local function demo(port)
  local r1, w1 <close> = eddy.open_connection("127.0.0.1", port)
  io.write("alice got: ", r1:readline())
  local r2, w2 <close> = eddy.open_connection("127.0.0.1", port)
  io.write("bob got:   ", r2:readline())
  io.write("alice got: ", r1:readline())          -- bob joined
  w1:write("hello bob\n")
  io.write("bob got:   ", r2:readline())
  w2:writelines({"hi alice, ", "nice server\n"})
  w2:drain()
  io.write("alice got: ", r1:readline())
  w2:write_eof()                                  -- bob leaves
  print("bob got:   " .. string.format("%q", r2:read()))
  io.write("alice got: ", r1:readline())
end

local port = tonumber(arg[1])
eddy.run(function()
  local server <close> = eddy.start_server(handle_client, "127.0.0.1", port or 0)
  if port then
    print("chat server on 127.0.0.1:" .. port)
    server:serve_forever()
  else
    demo(server.sockets[1]:getsockname()[2])
  end
end)
