-- Shared pieces of the network specs (tcp, unix, server, interop):
-- a recording protocol, an echo server, bounded waits, background
-- processes.
local eddy = require "eddy"
local tmp = require "support.tmp"

local net = {}

-- Recorder: a protocol that logs every callback in 'events' ("made",
-- "data", "eof", "lost", "pause", "resume"), keeps the data received and
-- the error connection_lost got, and resolves 'lost_fut' then.
-- Options: eof_keep (eof_received's result), on_data(self, data),
-- on_lost(self, err) (called first in connection_lost).
local Recorder = {}
Recorder.__index = Recorder
net.Recorder = Recorder

function net.recorder(loop, opts)
  opts = opts or {}
  return setmetatable({events = {}, chunks = {}, opts = opts,
                       made_fut = loop:create_future(),
                       eof_fut = loop:create_future(),
                       lost_fut = loop:create_future()}, Recorder)
end

function Recorder:log(e)
  local last = self.events[#self.events]
  if e ~= "data" or last ~= "data" then self.events[#self.events + 1] = e end
end

function Recorder:connection_made(t)
  self.transport = t
  self:log("made")
  self.made_fut:set_result(t)
end

function Recorder:data_received(data)
  self:log("data")
  self.chunks[#self.chunks + 1] = data
  if self.opts.on_data then self.opts.on_data(self, data) end
end

function Recorder:eof_received()
  self:log("eof")
  self.eof_fut:set_result(true)
  return self.opts.eof_keep
end

function Recorder:connection_lost(err)
  if self.opts.on_lost then self.opts.on_lost(self, err) end
  self:log("lost")
  self.err = err
  self.lost_fut:set_result(true)
end

function Recorder:pause_writing() self:log("pause") end
function Recorder:resume_writing() self:log("resume") end

function Recorder:data() return table.concat(self.chunks) end

-- Wait (suspending) until self:data() has n bytes.
function Recorder:wait_bytes(n, timeout)
  net.wait_until(function() return #self:data() >= n end, timeout)
end

-- Wait for a future, bounded (default 5 s).
function net.wait(fut, timeout)
  return eddy.wait_for(fut, timeout or 5)
end

-- Poll 'cond' every 5 ms until it is true, bounded (default 5 s).
function net.wait_until(cond, timeout)
  local loop = eddy.get_running_loop()
  local deadline = loop:time() + (timeout or 5)
  while not cond() do
    if loop:time() > deadline then error("wait_until: timed out", 2) end
    eddy.sleep(0.005)
  end
end

-- An echo server on host (default 127.0.0.1), port 0; returns the
-- server, its port, and the list of server-side protocols.
function net.echo_server(loop, host, opts)
  local protos = {}
  local Echo = {}
  Echo.__index = Echo
  function Echo:connection_made(t) self.t = t end
  function Echo:data_received(d) self.t:write(d) end
  function Echo:connection_lost(err) self.lost = true self.err = err end
  local srv = loop:create_server(function()
    local p = setmetatable({}, Echo)
    protos[#protos + 1] = p
    return p
  end, host or "127.0.0.1", 0, opts)
  return srv, srv.sockets[1]:getsockname()[2], protos
end

-- pair(loop, server_opts, rec, client_opts) -> server, client transport,
-- client protocol, server recorder: a TCP connection on 127.0.0.1 from a
-- client whose protocol is 'rec' (default a fresh Recorder) to a server
-- of Recorders, returned once the server's end is made; the options go
-- to create_server and create_connection.
function net.pair(loop, server_opts, rec, client_opts)
  local srv_rec
  local srv = loop:create_server(function()
    srv_rec = net.recorder(loop)
    return srv_rec
  end, "127.0.0.1", 0, server_opts)
  rec = rec or net.recorder(loop)
  local t = loop:create_connection(function() return rec end, "127.0.0.1",
                                   srv.sockets[1]:getsockname()[2], client_opts)
  net.wait_until(function() return srv_rec ~= nil and srv_rec.transport ~= nil end)
  return srv, t, rec, srv_rec
end

-- A non-blocking TCP eddy.socket listening on host (default 127.0.0.1),
-- port 0, for the loop's sock_* methods.
function net.listening_socket(host)
  local socket = eddy.socket
  local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  s:bind({host or "127.0.0.1", 0})
  s:listen()
  s:setblocking(false)
  return s
end

-- Start a shell command in the background, bounded by 'timeout'
-- seconds; its output goes to a temporary file.  Returns a handle with
-- :done() (the process ended) and :output().
function net.spawn(cmd, timeout)
  local out = tmp.file("")  -- there before the command writes: output() reads it
  local status = tmp.path(".status")
  -- the status is written only while the output file is there: a command
  -- that outlives its test leaves nothing behind
  os.execute(string.format("(timeout %d sh -c %q >> %s 2>&1; s=$?; "
                           .. "[ -e %s ] && echo $s > %s) &",
                           timeout or 20, cmd, out, out, status))
  local h = {}
  function h.done()
    local f = io.open(status)
    if f == nil then return false end
    local s = f:read("a")
    f:close()
    return s ~= ""
  end
  function h.status()
    local f = assert(io.open(status))
    local s = tonumber(f:read("a"))
    f:close()
    return s
  end
  function h.output()
    local f = assert(io.open(out))
    local s = f:read("a")
    f:close()
    return s
  end
  function h.cleanup()
    os.remove(out)
    os.remove(status)
  end
  return h
end

-- Start a server command in the background that prints its port on its
-- first line; returns the process handle (net.spawn's) and the port.
function net.spawn_server(cmd, timeout, start_timeout)
  local proc = net.spawn(cmd, timeout)
  local port
  net.wait_until(function()
    port = tonumber(proc.output():match("^(%d+)\n"))
    return port ~= nil or proc.done()
  end, start_timeout or 20)
  assert(port, "the server did not start: " .. proc.output())
  return proc, port
end

-- The descriptor of stream transport t, seen through its socket view:
-- "open" (getsockname answers), "closed", or "none" (no view).
function net.descriptor(t)
  local sock = t:get_extra_info("socket")
  if sock == nil then return "none" end
  if sock:fileno() >= 0 and pcall(sock.getsockname, sock) then return "open" end
  return "closed"
end

-- A server on 127.0.0.1, port 0, that aborts each connection at its
-- first data: closed with more data unread, its socket sends a reset,
-- which the client's writes then meet.  Returns the server and its port.
function net.resetting_server(loop)
  local srv = loop:create_server(function()
    return {connection_made = function(self, t) self.t = t end,
            data_received = function(self) self.t:abort() end}
  end, "127.0.0.1", 0)
  return srv, srv.sockets[1]:getsockname()[2]
end

-- Write 1 MiB chunks on transport t until the connection breaks (the
-- peer resets it); then the recorder 'rec' must get connection_lost with
-- ConnectionResetError or BrokenPipeError.
function net.write_until_reset(t, rec)
  local chunk = string.rep("z", 1024 * 1024)
  for _ = 1, 200 do
    if t:is_closing() or rec.lost_fut:done() then break end
    t:write(chunk)
    eddy.sleep(0.001)
  end
  net.wait(rec.lost_fut)
  local errors = eddy.errors
  assert(errors.is(rec.err, errors.ConnectionResetError) or
         errors.is(rec.err, errors.BrokenPipeError), tostring(rec.err))
end

-- Write 'source' to a temporary file (removed when the test ends);
-- returns its path.
net.tempfile = tmp.file

return net
