-- bench/queue_pingpong.lua [N]: two tasks pass a token back and forth
-- through two eddy.Queue()s, N round trips; prints round trips per second.
-- The asyncio/uvloop counterpart is bench/queue_pingpong.py.
local eddy = require "eddy"

local n = tonumber(arg and arg[1]) or 200000

local function main()
  local ping, pong = eddy.Queue(), eddy.Queue()
  local function responder()
    for _ = 1, n do pong:put_nowait(ping:get()) end
  end
  local peer = eddy.create_task(responder)
  local loop = eddy.get_running_loop()
  local t0 = loop:time()
  for i = 1, n do
    ping:put_nowait(i)
    assert(pong:get() == i)
  end
  local dt = loop:time() - t0
  peer:await()
  return dt
end

local dt = eddy.run(main)
print(string.format("eddy queue ping-pong: %d round trips in %.3f s: %.0f round trips/s",
                    n, dt, n / dt))
