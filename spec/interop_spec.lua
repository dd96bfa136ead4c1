-- Interoperability with Python's asyncio (Debian's /usr/bin/python3): a
-- Python client against an eddy server, and an eddy client against a
-- Python server, over TCP and UNIX sockets.  Python runs as a background
-- process bounded by `timeout`.
local eddy = require "eddy"
local async = require("eddy.test").async
local net = require "support.net"
local tmp = require "support.tmp"

local PYTHON = "/usr/bin/python3"

local python_client = [[
import asyncio, sys

async def main(kind, where):
    if kind == "tcp":
        reader, writer = await asyncio.open_connection("127.0.0.1", int(where))
    else:
        reader, writer = await asyncio.open_unix_connection(where)
    payload = bytes(range(256)) * 4096          # 1 MiB, every byte value
    writer.write(payload)
    writer.write_eof()                          # half-close: the echo keeps going
    data = await reader.read()                  # until the server's EOF
    writer.close()
    await writer.wait_closed()
    print("OK" if data == payload.upper() else "MISMATCH %d" % len(data))

asyncio.run(main(sys.argv[1], sys.argv[2]))
]]

local python_server = [[
import asyncio, sys

class Upper(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data.upper())
    def eof_received(self):
        self.transport.write(b"<bye>")
        self.transport.close()
    def connection_lost(self, exc):
        done.set_result(True)

async def main():
    global done
    done = asyncio.get_running_loop().create_future()
    server = await asyncio.get_running_loop().create_server(Upper, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.wait_for(done, 15)
    server.close()
    await server.wait_closed()
    print("SERVED", flush=True)

asyncio.run(main())
]]

-- An eddy server that upper-cases, answers the client's EOF by closing
-- after the echo (eof_received returns true until then).
local function upper_protocol(loop, lost)
  return function()
    local p = {}
    function p.connection_made(self, t) self.t = t end
    function p.data_received(self, d) self.t:write(d:upper()) end
    function p.eof_received(self) self.t:close() return true end
    function p.connection_lost() lost:set_result(true) end
    return p
  end
end

local function run_python_client(loop, srv, kind, where)
  local script = net.tempfile(python_client)
  local proc = net.spawn(string.format("%s %s %s %q", PYTHON, script, kind, where), 20)
  net.wait_until(proc.done, 20)
  local out = proc.output()
  proc.cleanup()
  os.remove(script)
  assert.equal("OK\n", out)
end

describe("interop with Python asyncio", function()
  it("a Python client against an eddy TCP server (1 MiB, half-close)", async(function(loop)
    local lost = loop:create_future()
    local srv <close> = loop:create_server(upper_protocol(loop, lost), "127.0.0.1", 0)
    run_python_client(loop, srv, "tcp", tostring(srv.sockets[1]:getsockname()[2]))
    net.wait(lost)
  end, 30))

  it("a Python client against an eddy UNIX server", async(function(loop)
    local path = tmp.path(".sock")
    local lost = loop:create_future()
    local srv <close> = loop:create_unix_server(upper_protocol(loop, lost), path)
    run_python_client(loop, srv, "unix", path)
    net.wait(lost)
    os.remove(path)
  end, 30))

  it("an eddy client against a Python TCP server", async(function(loop)
    local script = net.tempfile(python_server)
    local proc, port = net.spawn_server(string.format("%s %s", PYTHON, script), 20)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    local payload = string.rep("abcdefghij", 100000)
    t:write(payload)
    t:write_eof()
    net.wait(rec.lost_fut, 15)
    assert.equal(payload:upper() .. "<bye>", rec:data())
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    net.wait_until(proc.done, 20)
    assert.truthy(proc.output():find("SERVED", 1, true))
    proc.cleanup()
    os.remove(script)
  end, 30))
end)
