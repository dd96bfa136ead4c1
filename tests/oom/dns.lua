-- getaddrinfo of "localhost" and getnameinfo, on libuv's thread pool.
local eddy = require "eddy"
local socket = require "eddy.socket"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local infos = eddy.wait_for(function()
    return loop:getaddrinfo("localhost", 80, {type = socket.SOCK_STREAM})
  end, 5)
  assert(#infos >= 1 and infos[1].sockaddr[2] == 80)
  local host = eddy.wait_for(function()
    return loop:getnameinfo({"127.0.0.1", 80}, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
  end, 5)
  assert(host == "127.0.0.1")
end)
