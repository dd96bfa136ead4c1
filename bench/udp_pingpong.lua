-- bench/udp_pingpong.lua [N] [SIZE]: a datagram endpoint echoes what it
-- receives; a connected endpoint in the same process sends one SIZE-byte
-- datagram (default 100), and sends it again each time it comes back, N
-- round trips (default 100000) over 127.0.0.1; prints round trips per
-- second.  The asyncio/uvloop counterpart is bench/udp_pingpong.py.
local eddy = require "eddy"

local n = tonumber(arg and arg[1]) or 100000
local size = tonumber(arg and arg[2]) or 100

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(transport) self.transport = transport end
function Echo:datagram_received(data, addr) self.transport:sendto(data, addr) end

local Pinger = {}
Pinger.__index = Pinger
function Pinger:connection_made(transport) self.transport = transport end
function Pinger:datagram_received(data)
  self.count = self.count + 1
  if self.count == n then self.done:set_result(true) else self.transport:sendto(data) end
end

local function main()
  local loop = eddy.get_running_loop()
  local echo = loop:create_datagram_endpoint(function() return setmetatable({}, Echo) end,
                                             {"127.0.0.1", 0})
  local pinger = setmetatable({count = 0, done = loop:create_future()}, Pinger)
  local t = loop:create_datagram_endpoint(function() return pinger end, nil,
                                          echo:get_extra_info("sockname"))
  local t0 = loop:time()
  t:sendto(string.rep("x", size))
  pinger.done:await()
  local dt = loop:time() - t0
  t:close()
  echo:close()
  return dt
end

local dt = eddy.run(main)
print(string.format("eddy UDP ping-pong: %d round trips of %d bytes in %.3f s: %.0f round trips/s",
                    n, size, dt, n / dt))
