-- The loop's sock_* methods on non-blocking eddy.socket objects.
local eddy = require "eddy"
local socket = require "eddy.socket"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local listener <close> = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  listener:setblocking(false)
  listener:bind({"127.0.0.1", 0})
  listener:listen(4)
  local client <close> = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  client:setblocking(false)
  local accepting = loop:create_task(function() return loop:sock_accept(listener) end)
  loop:sock_connect(client, listener:getsockname())
  local conn <close> = eddy.wait_for(accepting, 2)
  loop:sock_sendall(client, "hello sockets")
  assert(eddy.wait_for(function() return loop:sock_recv(conn, 100) end, 2) == "hello sockets")
  local buf = eddy.Buffer(16)
  loop:sock_sendall(conn, "back")
  assert(eddy.wait_for(function() return loop:sock_recv_into(client, buf) end, 2) == 4)
end)
