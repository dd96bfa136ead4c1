-- Writes that queue (the stream write callback's paths): a server that
-- stops reading, so that the client's writes wait in libuv until
-- pause_writing, then reads again (resume_writing); a close with writes
-- pending, which ends once they are out; and a peer that resets the
-- connection under queued writes (a write error).
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  -- A close waits for ever for writes its peer never reads, and so does
  -- the server for its paused connections: on the way out, error or not,
  -- every transport is aborted (the two clients', then the server's
  -- side; storing into a slot allocates nothing), before the server
  -- closes.
  local transports = setmetatable({false, false, false, false}, {
    __close = function(list)
      for i = 1, #list do
        if list[i] then list[i]:abort() end
      end
    end})
  local accepted = 0
  local Sink = {}
  Sink.__index = Sink
  function Sink:connection_made(t)
    t:pause_reading()
    accepted = accepted + 1
    transports[2 + accepted] = t
  end
  local server <close> = loop:create_server(function() return setmetatable({}, Sink) end,
                                            "127.0.0.1", 0)
  local _ <close> = transports
  local port = server.sockets[1]:getsockname()[2]
  local chunk = string.rep("x", 65536)

  -- A client protocol whose events are futures ('t' there already:
  -- storing the transport allocates nothing before its guard has it).
  local function connect(i)
    local c = {lost = loop:create_future(), t = false}
    function c.pause_writing() c.paused:set_result(true) end
    function c.resume_writing() c.resumed:set_result(true) end
    function c.connection_lost(_, exc) c.lost:set_result(exc or false) end
    c.t = loop:create_connection(function() return c end, "127.0.0.1", port)
    transports[i] = c.t
    c.t:set_write_buffer_limits(4 * 65536)
    return c
  end
  -- Write until the transport asks to pause (the server's buffers full).
  local function fill(c)
    c.paused, c.resumed = loop:create_future(), loop:create_future()
    for _ = 1, 1000 do
      if c.paused:done() then return end
      c.t:write(chunk)
    end
    error("writes never paused")
  end
  local function server_side(n)
    eddy.wait_for(function()
      while accepted < n do eddy.sleep(0.001) end
    end, 2)
    return transports[2 + n]
  end

  -- Flow control, then a close with writes pending.
  local c = connect(1)
  fill(c)
  local peer = server_side(1)
  peer:resume_reading()
  eddy.wait_for(c.resumed, 2)
  peer:pause_reading()
  fill(c)
  c.t:close()
  assert(c.t:get_write_buffer_size() > 0)
  peer:resume_reading()
  assert(eddy.wait_for(c.lost, 2) == false)

  -- A reset under queued writes: the client reads nothing, so that the
  -- write reports it.
  c = connect(2)
  c.t:pause_reading()
  fill(c)
  server_side(2):abort()
  assert(eddy.wait_for(c.lost, 2))
end)
