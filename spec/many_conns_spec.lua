-- 10,000 connections held and echoed by one eddy server (the networking
-- issue's scale test).  The server runs as a subprocess with its fd limit
-- raised (`ulimit -n 20000`); the clients live in this process.  Bounded
-- to a few seconds.
local eddy = require "eddy"
local async = require("eddy.test").async
local net = require "support.net"

local N = 10000

local server_script = [[
local eddy = require "eddy"
eddy.run(function()
  local loop = eddy.get_running_loop()
  local open, seen = 0, 0
  local done = loop:create_future()
  local srv <close> = loop:create_server(function()
    local p = {}
    function p.connection_made(self, t) self.t = t open = open + 1 seen = seen + 1 end
    function p.data_received(self, d) self.t:write(d) end
    function p.connection_lost()
      open = open - 1
      if open == 0 and seen >= tonumber(arg[1]) and not done:done() then done:set_result(true) end
    end
    return p
  end, "127.0.0.1", 0, {backlog = 4096})
  print(srv.sockets[1]:getsockname()[2])
  io.stdout:flush()
  eddy.wait_for(done, 30)
  print("SERVED " .. seen)
end)
]]

describe("many connections", function()
  it("one server holds and echoes " .. N .. " connections", async(function(loop)
    local binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
    local script = net.tempfile(server_script)
    local proc, port = net.spawn_server(string.format("ulimit -n 20000; exec %s %s %d", binary, script, N),
                                        40, 10)
    local transports, echoed = {}, 0
    local Client = {}
    Client.__index = Client
    function Client:connection_made(t) t:write("ping") end
    function Client:data_received(d)
      self.got = (self.got or "") .. d
      if self.got == "ping" then echoed = echoed + 1 end
    end
    local function open_one(i)
      transports[i] = loop:create_connection(function() return setmetatable({}, Client) end,
                                             "127.0.0.1", port)
    end
    local i = 0
    local workers = {}
    for w = 1, 256 do
      workers[w] = loop:create_task(function()
        while i < N do
          i = i + 1
          open_one(i)
        end
      end)
    end
    eddy.gather(table.unpack(workers))
    net.wait_until(function() return echoed == N end, 20)
    for _, t in ipairs(transports) do t:close() end
    net.wait_until(proc.done, 20)
    local out = proc.output()
    proc.cleanup()
    os.remove(script)
    assert.truthy(out:find("SERVED " .. N, 1, true), out)
    eddy.sleep(0.05)  -- the clients' connection_lost calls
  end, 60))
end)
