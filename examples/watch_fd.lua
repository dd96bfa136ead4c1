-- Watch a file descriptor for read events (asyncio docs, "Watch a file
-- descriptor for read events"): a socketpair, a reader on one end, data
-- written to the other end from a call_soon callback.
local eddy = require "eddy"
local socket = require "eddy.socket"

local function wait_for_data()
  local loop = eddy.get_running_loop()
  -- Create a pair of connected file descriptors.
  local rsock, wsock = socket.socketpair()
  -- Create a future to wait for data.
  local fut = loop:create_future()

  -- Register the open socket to wait for data.
  loop:add_reader(rsock, function()
    local data = rsock:recv(100)
    print("Received:", data)
    -- We are done: unregister the file descriptor.
    loop:remove_reader(rsock)
    fut:set_result(data)
  end)

  -- Simulate the reception of data from the network.
  loop:call_soon(function() wsock:send("abc") end)

  -- Wait for data.
  fut:await()

  -- Close the sockets.
  rsock:close()
  wsock:close()
end

eddy.run(wait_for_data)
