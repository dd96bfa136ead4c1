-- Differential harness, eddy side: datagram endpoints, Server objects,
-- UNIX servers and connections, create_connection's options, fd
-- watchers, the sock_* methods and sendfile.  The same scenarios as
-- tools/diff/net.py (CPython), printed the same way, one line per event
-- or call, "scenario: label result"; `tools/diff/run.sh net` diffs the
-- two.  Usage: eddy net.lua [scenario-name-prefix]; NET_SEEDS and
-- NET_MESSAGES as net.py's.
local eddy = require "eddy"
local S = require "eddy.socket"
local errors = require "eddy.errors"

package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local trace = require "trace"
local pyshow = trace.pyshow

local scenarios = {}
local function scenario(name, fn) scenarios[#scenarios + 1] = {name = name, fn = fn} end

local TMP = io.popen("mktemp -d /tmp/eddy-net-XXXXXX"):read("l")
local function tmp(name) return TMP .. "/" .. name end

-- A string show() prints as it is (errors).
local Raw = {}
local function raw(s) return setmetatable({s = s}, Raw) end

-- A value as net.py prints it: as trace.pyshow, but with a temporary
-- path by its last part, a long string cut short, a socket by its family
-- and type.
local function show(v)
  if getmetatable(v) == Raw then return v.s end
  if type(v) == "string" then
    if v:sub(1, #TMP) == TMP then v = "TMP" .. v:sub(#TMP + 1) end
    if #v > 40 then v = string.format("%s...(%d)", v:sub(1, 8), #v) end
  end
  if type(v) == "userdata" and getmetatable(v) and getmetatable(v).__name == "eddy.socket" then
    return string.format("socket(%d,%d)", v.family, v.type)
  end
  return pyshow(v, show)
end

-- An error by class and errno name; an ExceptionGroup with its members;
-- a Lua argument error (Python's TypeError) as ArgError.
local function err(e)
  if type(e) ~= "table" or not e.__name then
    return raw(os.getenv("NET_MESSAGES") and "ArgError (" .. tostring(e) .. ")" or "ArgError")
  end
  if errors.is(e, errors.ExceptionGroup) then
    local parts = {}
    for i, x in ipairs(e.exceptions) do parts[i] = err(x).s end
    return raw(string.format("%s[%s]", e.__name, table.concat(parts, ", ")))
  end
  if e.code then return raw(e.__name .. " " .. e.code) end
  if os.getenv("NET_MESSAGES") then  -- to read them side by side, not to diff
    return raw(string.format("%s (%s)", e.__name, e.message))
  end
  return raw(e.__name)
end

-- The lines of one scenario.  Protocol callbacks are events of their
-- endpoint ('who'); those between two lines of the scenario's own are
-- printed grouped by endpoint, as net.py does (see its Trace).
-- Consecutive data_received of one endpoint merge.
local Trace = {}
Trace.__index = Trace

local function put(self, label, words)
  for i = 1, words.n do words[i] = show(words[i]) end
  local line = string.format("%s: %s %s", self.name, label, table.concat(words, " ", 1, words.n))
  print((line:gsub("%s+$", "")))
  io.stdout:flush()
end

function Trace:__call(label, ...)
  self:flush()
  put(self, label, table.pack(...))
end

function Trace:event(who, label, ...)
  local last = self.events[#self.events]
  if label == "data_received" and last and last.who == who and last.label == label then
    last.values[1] = last.values[1] .. ...
  else
    self.events[#self.events + 1] = {who = who, label = label, values = table.pack(...),
                                     i = #self.events + 1}
  end
end

function Trace:flush()
  local events = self.events
  self.events = {}
  table.sort(events, function(x, y) return x.who < y.who or (x.who == y.who and x.i < y.i) end)
  for _, e in ipairs(events) do put(self, e.who .. " " .. e.label, e.values) end
end

function Trace:error(label, e) self(label, raw("error " .. err(e).s)) end

-- fn(...): prints what it returned (several values as one {...}, a
-- Python tuple) or raised; returns its results.
function Trace:call(label, fn, ...)
  local r = table.pack(pcall(fn, ...))
  if not r[1] then
    self:error(label, r[2])
    return nil
  end
  local v = r[2]
  if r.n > 2 then v = table.pack(table.unpack(r, 2, r.n)) end
  self(label, v)
  return table.unpack(r, 2, r.n)
end

-- As call, for a suspending fn, bounded by 'timeout' (3 s by default).
function Trace:aw(label, fn, timeout, ...)
  local args = table.pack(...)
  return self:call(label, eddy.wait_for, function() return fn(table.unpack(args, 1, args.n)) end,
                   timeout or 3)
end

-- A port nothing listens on (bound a moment, then closed).
local function free_port(type)
  local s = S.socket(S.AF_INET, type or S.SOCK_STREAM)
  s:bind({"127.0.0.1", 0})
  local port = s:getsockname()[2]
  s:close()
  return port
end

-- A protocol factory: its protocols trace their callbacks (datagram and
-- stream); a server's ("srv") numbers its connections.
local function rec(t, name)
  local count = 0
  return function()
    count = count + 1
    local who = name == "srv" and name .. count or name
    local p = {lost = eddy.get_running_loop():create_future()}
    function p.connection_made(_, tr) p.tr = tr; t:event(who, "connection_made") end
    function p.datagram_received(_, data, addr) t:event(who, "datagram_received", data, addr) end
    function p.error_received(_, e) t:event(who, "error_received", err(e)) end
    function p.data_received(_, data) t:event(who, "data_received", data) end
    function p.eof_received() t:event(who, "eof_received") end
    function p.connection_lost(_, e)
      if e == nil then t:event(who, "connection_lost", nil) else t:event(who, "connection_lost", err(e)) end
      if not p.lost:done() then p.lost:set_result(nil) end
    end
    return p
  end
end

local function tick(n)
  for _ = 1, n or 3 do eddy.sleep(0) end
end

local function settle() eddy.sleep(0.05) end

local function loop() return eddy.get_running_loop() end

-- {================================================= datagrams

local function endpoint(t, who, lcl, remote, opts)
  local ok, tr = pcall(loop().create_datagram_endpoint, loop(), rec(t, who), lcl, remote, opts)
  if not ok then t:error(who .. " create", tr) return nil end
  return tr
end

scenario("dg_local", function(t)
  local tr = endpoint(t, "a", {"127.0.0.1", 0})
  t("sockname", tr:get_extra_info("sockname"))
  t("peername", tr:get_extra_info("peername"))
  t("socket", tr:get_extra_info("socket"))
  t("missing", tr:get_extra_info("nothing", "dflt"))
  t("buffer", tr:get_write_buffer_size())
  t("limits", {tr:get_write_buffer_limits()})
  t("is_reading", tr:is_reading())
  t("is_closing", tr:is_closing())
  tr:close()
  t("closed is_closing", tr:is_closing())
  t("closed is_reading", tr:is_reading())
  tr:close()
  t("after second close")
  settle()
  t("socket after lost", tr:get_extra_info("socket") ~= nil)
end)

scenario("dg_exchange", function(t)
  local a = endpoint(t, "a", {"127.0.0.1", 0})
  local b = endpoint(t, "b", {"127.0.0.1", 0})
  local baddr = b:get_extra_info("sockname")
  t:call("sendto", a.sendto, a, "hello", baddr)
  t:call("sendto bytes of 3", a.sendto, a, "abc", baddr)
  t:call("sendto empty", a.sendto, a, "", baddr)
  settle()
  t:call("sendto no addr", a.sendto, a, "x")
  settle()
  t("a closing", a:is_closing())
  t:call("sendto port 0", b.sendto, b, "x", {"127.0.0.1", 0})
  settle()
  t:call("sendto ipv6 to inet", b.sendto, b, "x", {"::1", 9})
  settle()
  t:call("sendto bad host", b.sendto, b, "x", {"256.1.1.1", 9})
  settle()
  t:call("sendto oversized", b.sendto, b, string.rep("x", 70000), baddr)
  settle()
  t:call("sendto str", b.sendto, b, {}, baddr)
  settle()
  t("b closing", b:is_closing())
  t("buffer", b:get_write_buffer_size())
  a:close()
  b:close()
  settle()
end)

scenario("dg_connected", function(t)
  local b = endpoint(t, "b", {"127.0.0.1", 0})
  local baddr = b:get_extra_info("sockname")
  local a = endpoint(t, "a", nil, baddr)
  t("peername", a:get_extra_info("peername"))
  t("sockname host", a:get_extra_info("sockname")[1])
  t:call("sendto nil", a.sendto, a, "one")
  t:call("sendto same addr", a.sendto, a, "two", baddr)
  t:call("sendto other addr", a.sendto, a, "three", {"127.0.0.1", 9})
  t:call("sendto other host", a.sendto, a, "four", {"127.0.0.2", baddr[2]})
  settle()
  a:close()
  t:call("sendto after close", a.sendto, a, "five")
  settle()
  t:call("sendto after lost", a.sendto, a, "six")
  b:close()
  settle()
end)

scenario("dg_icmp", function(t)
  local port = free_port(S.SOCK_DGRAM)
  local a = endpoint(t, "a", nil, {"127.0.0.1", port})
  t:call("sendto", a.sendto, a, "ping")
  settle()
  t:call("sendto again", a.sendto, a, "ping")
  settle()
  t("closing", a:is_closing())
  a:close()
  settle()
  local u = endpoint(t, "u", {"127.0.0.1", 0})
  t:call("unconnected sendto", u.sendto, u, "ping", {"127.0.0.1", port})
  settle()
  u:close()
  settle()
end)

scenario("dg_close_order", function(t)
  local a = endpoint(t, "a", {"127.0.0.1", 0})
  a:close()
  t("after close")
  tick(1)
  t("after one tick")
  settle()
  local b = endpoint(t, "b", {"127.0.0.1", 0})
  b:abort()
  t("after abort", b:is_closing())
  b:close()
  settle()
  local c = endpoint(t, "c", {"127.0.0.1", 0})
  c:close()
  c:abort()
  settle()
end)

scenario("dg_pause", function(t)
  local a = endpoint(t, "a", {"127.0.0.1", 0})
  local b = endpoint(t, "b", {"127.0.0.1", 0})
  t:call("pause", a.pause_reading, a)
  t("is_reading", a:is_reading())
  t:call("pause twice", a.pause_reading, a)
  b:sendto("while paused", a:get_extra_info("sockname"))
  settle()
  t("still paused")
  t:call("resume", a.resume_reading, a)
  t("is_reading", a:is_reading())
  t:call("resume twice", a.resume_reading, a)
  settle()
  a:close()
  t:call("pause after close", a.pause_reading, a)
  t:call("resume after close", a.resume_reading, a)
  t("is_reading closed", a:is_reading())
  b:close()
  settle()
end)

scenario("dg_options", function(t)
  endpoint(t, "nofamily")
  local tr = endpoint(t, "inet", nil, nil, {family = S.AF_INET})
  if tr then
    t("inet sockname", tr:get_extra_info("sockname"))
    tr:close()
  end
  tr = endpoint(t, "inet6", {"::1", 0}, nil, {family = S.AF_INET6})
  if tr then
    t("inet6 sockname", tr:get_extra_info("sockname"))
    tr:close()
  end
  endpoint(t, "family mismatch", {"::1", 0}, nil, {family = S.AF_INET})
  endpoint(t, "local remote mismatch", {"127.0.0.1", 0}, {"::1", 9})
  tr = endpoint(t, "proto", {"127.0.0.1", 0}, nil, {proto = S.IPPROTO_UDP})
  if tr then
    t("proto", tr:get_extra_info("socket").proto)
    tr:close()
  end
  tr = endpoint(t, "tcp proto", {"127.0.0.1", 0}, nil, {proto = S.IPPROTO_TCP})
  if tr then
    t("tcp proto", tr:get_extra_info("socket").proto)
    tr:close()
  end
  tr = endpoint(t, "flags", {"127.0.0.1", 0}, nil, {flags = S.AI_NUMERICHOST})
  if tr then tr:close() end
  tr = endpoint(t, "localhost", {"localhost", 0})
  if tr then
    t("localhost sockname", tr:get_extra_info("sockname"))
    tr:close()
  end
  endpoint(t, "reuse_address", {"127.0.0.1", 0}, nil, {reuse_address = true})
  endpoint(t, "reuse_address false", {"127.0.0.1", 0}, nil, {reuse_address = false})
  local a = endpoint(t, "reuse a", {"127.0.0.1", 0}, nil, {reuse_port = true})
  local port = a:get_extra_info("sockname")[2]
  local b = endpoint(t, "reuse b", {"127.0.0.1", port}, nil, {reuse_port = true})
  t("reuse b", b ~= nil)
  local c = endpoint(t, "no reuse", {"127.0.0.1", port})
  local e = endpoint(t, "bcast target", {"127.0.0.1", 0})
  local d = endpoint(t, "bcast", {"127.0.0.1", 0}, e:get_extra_info("sockname"),
                     {allow_broadcast = true})
  if d then
    t("bcast peername", d:get_extra_info("peername"))
    t("bcast SO_BROADCAST", d:get_extra_info("socket"):getsockopt(S.SOL_SOCKET, S.SO_BROADCAST) ~= 0)
    t:call("bcast sendto nil", d.sendto, d, "to remote")
    settle()
    d:close()
  end
  for _, x in pairs {a, b, c, e} do x:close() end
  settle()
end)

scenario("dg_sock", function(t)
  local s = S.socket(S.AF_INET, S.SOCK_DGRAM)
  s:bind({"127.0.0.1", 0})
  local tr = endpoint(t, "sock", nil, nil, {sock = s})
  t("sockname", tr:get_extra_info("sockname"))
  t("blocking", s:getblocking())
  t:call("add_reader on it", function() loop():add_reader(s:fileno(), function() end) end)
  tr:close()
  settle()
  t("sock closed", s:fileno() == -1)
  s = S.socket(S.AF_INET, S.SOCK_DGRAM)
  endpoint(t, "sock and local", {"127.0.0.1", 0}, nil, {sock = s})
  endpoint(t, "sock and family", nil, nil, {sock = s, family = S.AF_INET})
  endpoint(t, "sock and reuse_port", nil, nil, {sock = s, reuse_port = true})
  s:close()
  s = S.socket()
  endpoint(t, "stream sock", nil, nil, {sock = s})
  s:close()
end)

-- Whether something is at path (io.open cannot open a socket file).
local function exists(path) return os.execute("test -e '" .. path .. "'") == true end

local function touch(path) assert(io.open(path, "w")):close() end

scenario("dg_unix", function(t)
  local path_a, path_b = tmp("dga"), tmp("dgb")
  local unix = {family = S.AF_UNIX}
  local a = endpoint(t, "a", path_a, nil, unix)
  t("a sockname", a:get_extra_info("sockname"))
  local b = endpoint(t, "b", path_b, path_a, unix)
  t("b peername", b:get_extra_info("peername"))
  b:sendto("from b")
  a:sendto("from a", path_b)
  settle()
  local c = endpoint(t, "c", nil, path_a, unix)
  c:sendto("from unbound c")
  settle()
  t:call("a sendto missing", a.sendto, a, "x", tmp("nothing"))
  settle()
  for _, tr in ipairs {a, b, c} do tr:close() end
  settle()
  t("file a stays", exists(path_a))
  local d = endpoint(t, "d stale", path_a, nil, unix)
  if d then d:close() end
  touch(tmp("regular"))
  endpoint(t, "e regular", tmp("regular"), nil, unix)
  t("regular stays", exists(tmp("regular")))
  endpoint(t, "missing family", path_b)
  settle()
end)

scenario("dg_more", function(t)
  local lp = loop()
  -- a connected sock= socket: the transport sends with send(), whatever the address
  local b = endpoint(t, "b", {"127.0.0.1", 0})
  local s = S.socket(S.AF_INET, S.SOCK_DGRAM)
  s:connect(b:get_extra_info("sockname"))
  local a = endpoint(t, "a", nil, nil, {sock = s})
  local peer, bname = a:get_extra_info("peername"), b:get_extra_info("sockname")
  t("sock peername", peer[1] == bname[1] and peer[2] == bname[2])
  t:call("sendto nil", a.sendto, a, "to peer")
  t:call("sendto other", a.sendto, a, "other", {"127.0.0.1", 9})
  settle()
  t:call("sendto oversized connected", a.sendto, a, string.rep("x", 70000))
  settle()
  a:abort()
  t:call("sendto after abort", a.sendto, a, "x")
  settle()
  -- errors of the protocol's callbacks go to the exception handler
  local c = lp:create_datagram_endpoint(function()
    local p = rec(t, "c")()
    function p.datagram_received(_, data) t:event("c", "datagram_received", data); error(errors.RuntimeError("boom")) end
    return p
  end, {"127.0.0.1", 0})
  b:sendto("one", c:get_extra_info("sockname"))
  settle()
  b:sendto("two", c:get_extra_info("sockname"))
  settle()
  t("c closing", c:is_closing())
  c:close()
  -- pausing in connection_made holds back the first read
  local d = lp:create_datagram_endpoint(function()
    local p = rec(t, "d")()
    local made = p.connection_made
    function p.connection_made(self, tr) made(self, tr); tr:pause_reading() end
    return p
  end, {"127.0.0.1", 0})
  b:sendto("held", d:get_extra_info("sockname"))
  settle()
  t("d is_reading", d:is_reading())
  d:resume_reading()
  settle()
  d:close()
  t:call("set limits bad", b.set_write_buffer_limits, b, 1, 2)
  t:call("set limits", b.set_write_buffer_limits, b, 100)
  t("limits", {b:get_write_buffer_limits()})
  t:call("set limits negative", b.set_write_buffer_limits, b, -1)
  b:close()
  settle()
  -- a factory that fails
  local ok, e = pcall(lp.create_datagram_endpoint, lp, function() error(errors.ValueError("no protocol")) end,
                      {"127.0.0.1", 0})
  if not ok then t:error("failing factory", e) end
  -- a host name for local_addr and remote_addr
  local e1 = endpoint(t, "e", {"localhost", 0}, nil, {family = S.AF_INET})
  local f = endpoint(t, "f", nil, {"localhost", e1:get_extra_info("sockname")[2]}, {family = S.AF_INET})
  t:call("f sendto", f.sendto, f, "by name")
  settle()
  local made = {endpoint(t, "unresolvable", {"no-such-host.invalid", 0}) or false,
                endpoint(t, "string port", {"127.0.0.1", "0"}) or false,
                endpoint(t, "service port", nil, {"127.0.0.1", "domain"}) or false,
                endpoint(t, "bad port", {"127.0.0.1", 70000}) or false,
                endpoint(t, "unix family with tuple", {"127.0.0.1", 0}, nil, {family = S.AF_UNIX}) or false,
                e1, f}
  for _, tr in ipairs(made) do if tr then tr:close() end end
  settle()
end)

scenario("dg_queue", function(t)
  local lp = loop()
  -- an unconnected AF_UNIX sender whose peer does not read: datagrams queue
  for _, how in ipairs {"close", "abort", "drain"} do
    local path = tmp("q-" .. how)
    local peer = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    peer:bind(path)
    peer:setblocking(false)
    local a, p = lp:create_datagram_endpoint(function()
      local p = rec(t, how)()
      function p.pause_writing() t:event(how, "pause_writing") end
      function p.resume_writing() t:event(how, "resume_writing") end
      return p
    end, nil, nil, {family = S.AF_UNIX})
    a:set_write_buffer_limits(20000)
    local n = 0
    while a:get_write_buffer_size() == 0 and n < 10000 do
      a:sendto(string.rep("q", 1000), path)
      n = n + 1
    end
    for _ = 1, 30 do a:sendto(string.rep("q", 1000), path) end
    t(how .. " queued", a:get_write_buffer_size())
    t:call(how .. " other address queued", a.sendto, a, "z", tmp("nothing"))
    if how ~= "drain" then
      a[how](a)
      t(how .. " buffer", a:get_write_buffer_size())
    end
    local got = 0
    for _ = 1, 300 do
      while pcall(peer.recv, peer, 2000) do got = got + 1 end
      if p.lost:done() or how == "drain" and a:get_write_buffer_size() == 0 then break end
      eddy.sleep(0.002)
    end
    t(how .. " received all", got == n + 30, "lost", p.lost:done())
    t(how .. " buffer after", a:get_write_buffer_size())
    a:close()
    settle()
    peer:close()
  end
end)

local DATAGRAM_OPS = {"send", "send", "send", "send", "send_other", "send_badhost", "send_big",
                      "send_empty", "pause", "resume", "close_a", "abort_a", "close_b", "limits"}

-- Random sequences of DatagramTransport calls between a sender a
-- (connected or not) and a receiver b (seeds 1 to $NET_SEEDS, default 30).
scenario("dg_random", function(t)
  local lp = loop()
  local function bit(v) return v and 1 or 0 end
  for seed = 1, math.tointeger(tonumber(os.getenv("NET_SEEDS"))) or 30 do
    local rng = trace.Rng(seed)
    local b = lp:create_datagram_endpoint(rec(t, "b" .. seed), {"127.0.0.1", 0})
    local baddr = b:get_extra_info("sockname")
    local connected = rng:pick {true, false}
    local a = lp:create_datagram_endpoint(rec(t, "a" .. seed), {"127.0.0.1", 0},
                                          connected and baddr or nil)
    local ops = {connected and "connected" or "unconnected"}
    for _ = 1, rng:pick {4, 6, 8, 10} do
      local op = rng:pick(DATAGRAM_OPS)
      ops[#ops + 1] = op
      local ok, e = pcall(function()
        if op:sub(1, 4) == "send" and not a:is_closing() then
          local data = ({send_big = string.rep("x", 70000), send_empty = ""})[op] or "d" .. #ops
          local default = baddr  -- (picked whatever the op, as net.py does)
          if connected and rng:pick {true, false} then default = nil end
          local addr = ({send_other = {"127.0.0.1", 9}, send_badhost = {"no-such-host.invalid", 9}})[op]
          a:sendto(data, addr or default)
        elseif op == "pause" then
          b:pause_reading()
        elseif op == "resume" then
          b:resume_reading()
        elseif op == "close_a" or op == "abort_a" then
          a[op:sub(1, -3)](a)
        elseif op == "close_b" then
          b:close()
        elseif op == "limits" then
          a:set_write_buffer_limits(rng:pick {0, 10, 100000})
        end
      end)
      if not ok then ops[#ops + 1] = err(e).s end
      settle()
      ops[#ops + 1] = string.format("%d%d%d/%d", bit(a:is_closing()), bit(b:is_closing()),
                                    bit(b:is_reading()), a:get_write_buffer_size())
    end
    t(tostring(seed), raw(table.concat(ops, " ")))
    a:close()
    b:close()
    settle()
  end
end)

-- }=================================================
-- {================================================= servers

local function server(t, label, host, port, opts)
  local ok, srv = pcall(loop().create_server, loop(), rec(t, "srv"), host, port, opts)
  if not ok then t:error(label, srv) return nil end
  return srv
end

local function connect(t, who, host, port, opts)
  local ok, tr, p = pcall(eddy.wait_for, function()
    return loop():create_connection(rec(t, who), host, port, opts)
  end, 3)
  if not ok then t:error(who .. " connect", tr) return nil end
  return tr, p
end

local function families(srv)
  local r = {}
  for i, s in ipairs(srv.sockets) do r[i] = {s.family, s:getsockname()[1]} end
  table.sort(r, function(x, y) return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2]) end)
  return r
end

local function port_of(srv) return srv.sockets[1]:getsockname()[2] end

scenario("srv_basic", function(t)
  local srv = server(t, "create", "127.0.0.1", 0)
  t("is_serving", srv:is_serving())
  t("sockets", #srv.sockets, srv.sockets[1])
  t("get_loop", srv:get_loop() == loop())
  local port = port_of(srv)
  local c = connect(t, "cli", "127.0.0.1", port)
  settle()
  srv:close()
  t("closed is_serving", srv:is_serving())
  t("closed sockets", #srv.sockets)
  connect(t, "late", "127.0.0.1", port)
  t:call("close again", srv.close, srv)
  t:aw("wait_closed with client", srv.wait_closed, 0.2, srv)
  c:close()
  t:aw("wait_closed", srv.wait_closed, nil, srv)
  t:aw("wait_closed again", srv.wait_closed, nil, srv)
  t:aw("start_serving closed", srv.start_serving, nil, srv)
  t("is_serving", srv:is_serving())
  t:aw("serve_forever closed", srv.serve_forever, nil, srv)
end)

scenario("srv_wait_before_close", function(t)
  local srv = server(t, "create", "127.0.0.1", 0)
  local w = loop():create_task(function() return srv:wait_closed() end)
  settle()
  t("waiting before close", w:done())
  srv:close()
  t:aw("after close", w.await, nil, w)
end)

scenario("srv_clients", function(t)
  local srv = server(t, "create", "127.0.0.1", 0)
  local port = port_of(srv)
  local c1 = connect(t, "c1", "127.0.0.1", port)
  settle()
  srv:close_clients()
  settle()
  t("still serving", srv:is_serving())
  local c2 = connect(t, "c2", "127.0.0.1", port)
  settle()
  srv:abort_clients()
  settle()
  srv:close()
  c1:close()
  c2:close()
  t:aw("wait_closed", srv.wait_closed, nil, srv)
end)

scenario("srv_serve_forever", function(t)
  local srv = server(t, "create", "127.0.0.1", 0, {start_serving = false})
  t("is_serving", srv:is_serving())
  local port = port_of(srv)
  connect(t, "not listening", "127.0.0.1", port)
  local task = loop():create_task(srv.serve_forever, srv)
  tick()
  t("is_serving", srv:is_serving())
  t:aw("second serve_forever", srv.serve_forever, nil, srv)
  t:aw("start_serving while", srv.start_serving, nil, srv)
  local c = connect(t, "cli", "127.0.0.1", port)
  settle()
  task:cancel()
  tick()
  t("after cancel is_serving", srv:is_serving(), "sockets", #srv.sockets)
  t("task done", task:done())
  c:close()
  settle()
  t("task done after client", task:done())
  t:aw("task", task.await, nil, task)
  srv = server(t, "create", "127.0.0.1", 0)
  task = loop():create_task(srv.serve_forever, srv)
  tick()
  srv:close()
  t:aw("closed task", task.await, nil, task)
  t:aw("serve_forever after", srv.serve_forever, nil, srv)
end)

scenario("srv_start_serving", function(t)
  local srv = server(t, "create", "127.0.0.1", 0, {start_serving = false})
  t("is_serving", srv:is_serving())
  t:aw("start_serving", srv.start_serving, nil, srv)
  t("is_serving", srv:is_serving())
  t:aw("start_serving again", srv.start_serving, nil, srv)
  local c = connect(t, "cli", "127.0.0.1", port_of(srv))
  settle()
  c:close()
  srv:close()
  t:aw("wait_closed", srv.wait_closed, nil, srv)
end)

scenario("srv_context", function(t)
  local srv = server(t, "create", "127.0.0.1", 0)
  local c = connect(t, "cli", "127.0.0.1", port_of(srv))
  settle()
  loop():call_later(0.1, c.close, c)
  do
    local _ <close> = srv
    t("inside")
  end
  t("after", srv:is_serving(), c:is_closing())
end)

scenario("srv_hosts", function(t)
  local srv = server(t, "two", {"127.0.0.1", "::1"}, 0)
  if srv then
    t("two", families(srv))
    local ports = {}
    for _, s in ipairs(srv.sockets) do ports[s:getsockname()[2]] = true end
    local n = 0
    for _ in pairs(ports) do n = n + 1 end
    t("two ports", n)
    srv:close()
  end
  for _, host in ipairs {{nil, "None"}, {"", "''"}} do
    srv = server(t, "all", host[1], 0)
    if srv then
      local fams = {}
      for i, f in ipairs(families(srv)) do fams[i] = f[1] end
      t("all " .. host[2], fams)
      local v6only = {}
      for _, s in ipairs(srv.sockets) do
        if s.family == S.AF_INET6 then
          v6only[#v6only + 1] = s:getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY)
        end
      end
      t("v6only", v6only)
      srv:close()
    end
  end
  srv = server(t, "inet only", nil, 0, {family = S.AF_INET})
  if srv then
    t("inet only", families(srv))
    srv:close()
  end
  srv = server(t, "dual.test", "dual.test", 0)
  if srv then
    t("dual.test", families(srv))
    srv:close()
  end
  server(t, "not mine", "192.0.2.1", 0)
  srv = server(t, "not mine and mine", {"192.0.2.1", "127.0.0.1"}, 0)
  if srv then
    t("not mine and mine", families(srv))
    srv:close()
  end
  server(t, "bad port", "127.0.0.1", -1)
  server(t, "host and sock", "127.0.0.1", 0, {sock = S.socket()})
  server(t, "neither", nil, nil)
end)

scenario("srv_reuse", function(t)
  local a = server(t, "a", "127.0.0.1", 0)
  local port = port_of(a)
  t("reuseaddr", a.sockets[1]:getsockopt(S.SOL_SOCKET, S.SO_REUSEADDR) ~= 0)
  server(t, "same port", "127.0.0.1", port)
  a:close()
  local b = server(t, "b", "127.0.0.1", 0, {reuse_port = true, reuse_address = false})
  port = port_of(b)
  t("b reuseaddr", b.sockets[1]:getsockopt(S.SOL_SOCKET, S.SO_REUSEADDR) ~= 0)
  local c = server(t, "c", "127.0.0.1", port, {reuse_port = true})
  t("c", c ~= nil)
  b:close()
  if c then c:close() end
  local srv = server(t, "backlog", "127.0.0.1", 0, {backlog = 1})
  t("backlog", srv ~= nil)
  srv:close()
  server(t, "backlog bad", "127.0.0.1", 0, {backlog = "x"})
  settle()
end)

scenario("srv_sock", function(t)
  local s = S.socket()
  s:bind({"127.0.0.1", 0})
  local port = s:getsockname()[2]
  local srv = server(t, "sock", nil, nil, {sock = s})
  t("sockets", #srv.sockets, port_of(srv) == port)
  local c = connect(t, "cli", "127.0.0.1", port)
  settle()
  c:close()
  srv:close()
  t:aw("wait_closed", srv.wait_closed, nil, srv)
  t("sock closed", s:fileno() == -1)
  s = S.socket(S.AF_INET, S.SOCK_DGRAM)
  server(t, "dgram sock", nil, nil, {sock = s})
  s:close()
end)

scenario("srv_more", function(t)
  local lp = loop()
  local srv = server(t, "dup hosts", {"127.0.0.1", "127.0.0.1"}, 0)
  if srv then
    t("dup hosts", #srv.sockets)
    srv:close()
  end
  srv = server(t, "string port", "127.0.0.1", "0")
  if srv then srv:close() end
  srv = server(t, "keep_alive", "127.0.0.1", 0, {keep_alive = true})
  local c = connect(t, "ka", "127.0.0.1", port_of(srv))
  settle()
  srv:close()
  c:close()
  t:aw("ka wait_closed", srv.wait_closed, nil, srv)
  srv = server(t, "unbound", "127.0.0.1", 0, {start_serving = false})
  t("unbound sockets", #srv.sockets)
  srv:close()
  t:aw("unbound wait_closed", srv.wait_closed, nil, srv)
  -- two waiters, close_clients after close, a client after close_clients
  srv = server(t, "srv", "127.0.0.1", 0)
  local port = port_of(srv)
  connect(t, "c1", "127.0.0.1", port)
  settle()
  local w1 = lp:create_task(srv.wait_closed, srv)
  local w2 = lp:create_task(srv.wait_closed, srv)
  srv:close()
  settle()
  t("waiters", w1:done(), w2:done())
  srv:close_clients()
  settle()
  t("waiters after close_clients", w1:done(), w2:done())
  -- serve_forever cancelled while a client is connected: it waits for it
  srv = server(t, "sf", "127.0.0.1", 0)
  port = port_of(srv)
  connect(t, "c2", "127.0.0.1", port)
  local task = lp:create_task(srv.serve_forever, srv)
  settle()
  srv:abort_clients()
  task:cancel()
  t:aw("serve_forever after abort_clients", task.await, nil, task)
  -- the protocol factory fails: the connection is closed, the server goes on
  local calls = 0
  srv = lp:create_server(function()
    calls = calls + 1
    if calls == 1 then error(errors.RuntimeError("factory")) end
    return rec(t, "srv ok")()
  end, "127.0.0.1", 0)
  port = port_of(srv)
  local c3 = connect(t, "c3", "127.0.0.1", port)
  settle()
  local c4 = connect(t, "c4", "127.0.0.1", port)
  settle()
  c3:close()
  c4:close()
  srv:close()
  t:aw("factory wait_closed", srv.wait_closed, nil, srv)
end)

local SERVER_OPS = {"connect", "connect", "connect", "client_close", "client_close", "client_abort",
                    "close", "close_clients", "abort_clients", "start_serving", "serve_forever",
                    "cancel_serve_forever", "wait_closed", "wait_closed"}

-- Random sequences of Server calls and client connections, with the
-- server's state after each (seeds 1 to $NET_SEEDS, default 30).
scenario("srv_random", function(t)
  local lp = loop()
  local function proto() return {} end
  local function states(waiters)
    local s = {}
    for i, w in ipairs(waiters) do s[i] = w:done() and "1" or "0" end
    return table.concat(s)
  end
  for seed = 1, math.tointeger(tonumber(os.getenv("NET_SEEDS"))) or 30 do
    local rng = trace.Rng(seed)
    local srv = lp:create_server(proto, "127.0.0.1", 0, {start_serving = rng:pick {true, false}})
    local port = port_of(srv)
    local clients, waiters, sf = {}, {}, nil
    local ops = {}
    for _ = 1, rng:pick {4, 6, 8, 10} do
      local op = rng:pick(SERVER_OPS)
      ops[#ops + 1] = op
      local closed = #srv.sockets == 0
      if op == "connect" then
        local ok, c = pcall(eddy.wait_for, function() return lp:create_connection(proto, "127.0.0.1", port) end, 1)
        if ok then
          clients[#clients + 1] = c
          ops[#ops + 1] = "ok"
        else
          ops[#ops + 1] = err(c).s
        end
      elseif (op == "client_close" or op == "client_abort") and #clients > 0 then
        local idx = {}
        for i = 1, #clients do idx[i] = i end
        local c = table.remove(clients, rng:pick(idx))
        c[op:sub(8)](c)
      elseif op == "close" or op == "close_clients" or op == "abort_clients" then
        srv[op](srv)
      elseif op == "start_serving" and not closed then
        srv:start_serving()
      elseif op == "serve_forever" then
        if sf == nil or sf:done() then sf = lp:create_task(srv.serve_forever, srv) end
      elseif op == "cancel_serve_forever" and sf ~= nil then
        sf:cancel()
      elseif op == "wait_closed" then
        waiters[#waiters + 1] = lp:create_task(srv.wait_closed, srv)
      end
      settle()
      ops[#ops + 1] = string.format("%s/%d/%s", srv:is_serving(), #srv.sockets, states(waiters))
      if sf ~= nil and sf:done() then
        ops[#ops + 1] = "sf:" .. (sf:cancelled() and "cancelled" or sf:exception() and err(sf:exception()).s
                                  or "done")
        sf = nil
      end
    end
    t(tostring(seed), raw(table.concat(ops, " ")))
    srv:close()
    for _, c in ipairs(clients) do c:close() end
    settle()
    t(seed .. " end", raw(states(waiters)))
    if sf ~= nil then sf:cancel() end
    for _, w in ipairs(waiters) do w:cancel() end
    settle()
  end
end)

scenario("srv_backlog", function(t)
  -- connections the kernel completed but the server never accepted
  local srv = server(t, "srv", "127.0.0.1", 0)
  local port = port_of(srv)
  local raws = {}
  for i = 1, 3 do
    raws[i] = S.socket()
    raws[i]:connect({"127.0.0.1", port})
  end
  srv:close()
  t:aw("wait_closed", srv.wait_closed, 1, srv)
  for i, s in ipairs(raws) do
    s:settimeout(1)
    t:call("client " .. (i - 1) .. " recv", s.recv, s, 10)
    s:close()
  end
end)

-- }=================================================
-- {================================================= UNIX sockets

local function userver(t, label, path, opts)
  local ok, srv = pcall(loop().create_unix_server, loop(), rec(t, "srv"), path, opts)
  if not ok then t:error(label, srv) return nil end
  return srv
end

local function uconnect(t, who, path, opts)
  local ok, tr = pcall(eddy.wait_for, function()
    return loop():create_unix_connection(rec(t, who), path, opts)
  end, 3)
  if not ok then t:error(who .. " connect", tr) return nil end
  return tr
end

scenario("ux_server", function(t)
  local path = tmp("us")
  local srv = userver(t, "create", path)
  t("sockets", srv.sockets[1], srv.sockets[1]:getsockname())
  local c = uconnect(t, "cli", path)
  t("peername", c:get_extra_info("peername"), "sockname", c:get_extra_info("sockname"))
  settle()
  c:close()
  srv:close()
  t("file after close", exists(path))
  t:aw("wait_closed", srv.wait_closed, nil, srv)
  uconnect(t, "after close", path)
end)

scenario("ux_stale", function(t)
  local path = tmp("stale")
  local s = S.socket(S.AF_UNIX)
  s:bind(path)
  s:close()
  local srv = userver(t, "stale", path)
  t("stale", srv ~= nil)
  srv:close()
  srv = userver(t, "keep", path, {cleanup_socket = false})
  if srv then srv:close() end
  t("file kept", exists(path))
  touch(tmp("regular"))
  userver(t, "regular", tmp("regular"))
  t("regular stays", exists(tmp("regular")))
  local live = userver(t, "live", tmp("live"))
  srv = userver(t, "over live", tmp("live"))
  t("over live", srv ~= nil)
  if srv then srv:close() end
  live:close()
  os.execute("mkdir " .. tmp("dir"))
  userver(t, "directory", tmp("dir"))
  userver(t, "missing dir", tmp("nodir/x"))
end)

scenario("ux_paths", function(t)
  local name = "\0" .. TMP
  local srv = userver(t, "abstract", name)
  if srv then
    t("abstract name", srv.sockets[1]:getsockname() == name)
    local c = uconnect(t, "abstract cli", name)
    settle()
    c:close()
    srv:close()
    srv:wait_closed()
  end
  local long = TMP .. "/" .. string.rep("x", 120)
  userver(t, "too long", long)
  uconnect(t, "too long", long)
  userver(t, "empty", "")
  uconnect(t, "missing", tmp("missing"))
  touch(tmp("plain"))
  uconnect(t, "plain file", tmp("plain"))
  local s = S.socket(S.AF_UNIX)
  s:bind(tmp("unlistened"))
  uconnect(t, "not listening", tmp("unlistened"))
  s:close()
end)

scenario("ux_sock", function(t)
  local s = S.socket(S.AF_UNIX)
  s:bind(tmp("sock"))
  local srv = userver(t, "sock", nil, {sock = s})
  local c = uconnect(t, "cli", tmp("sock"))
  settle()
  c:close()
  srv:close()
  t("file after close", exists(tmp("sock")))
  userver(t, "sock and path", tmp("sock2"), {sock = S.socket(S.AF_UNIX)})
  userver(t, "inet sock", nil, {sock = S.socket()})
  userver(t, "neither", nil)
  srv = userver(t, "again", tmp("sock3"))
  local a = S.socket(S.AF_UNIX)
  a:connect(tmp("sock3"))
  c = uconnect(t, "cli sock", nil, {sock = a})
  settle()
  c:close()
  settle()
  uconnect(t, "cli sock and path", tmp("sock3"), {sock = S.socket(S.AF_UNIX)})
  uconnect(t, "cli neither", nil)
  uconnect(t, "cli inet sock", nil, {sock = S.socket()})
  settle()
  srv:close()
end)

scenario("ux_more", function(t)
  -- the socket file replaced meanwhile stays (3.13 compares the inode)
  local path = tmp("replaced")
  local srv = userver(t, "replaced", path)
  os.remove(path)
  local s = S.socket(S.AF_UNIX)
  s:bind(path)
  srv:close()
  t("replacement stays", exists(path))
  s:close()
  -- removed meanwhile: close does not fail
  srv = userver(t, "removed", path)
  os.remove(path)
  t:call("close removed", srv.close, srv)
  -- a datagram socket's path
  local d = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
  d:bind(tmp("dgram"))
  uconnect(t, "to dgram", tmp("dgram"))
  d:close()
  -- create_unix_server with a datagram sock
  d = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
  userver(t, "dgram sock", nil, {sock = d})
  d:close()
  -- start_serving=false, then a client, then start_serving
  srv = userver(t, "later", tmp("later"), {start_serving = false})
  t("later is_serving", srv:is_serving(), exists(tmp("later")))
  uconnect(t, "before", tmp("later"))
  srv:start_serving()
  local c = uconnect(t, "after", tmp("later"))
  settle()
  c:close()
  settle()
  srv:close()
  t:aw("later wait_closed", srv.wait_closed, nil, srv)
end)

-- }=================================================
-- {================================================= connections

scenario("cn_refused", function(t)
  local port = free_port()
  connect(t, "refused", "127.0.0.1", port)
  connect(t, "refused all_errors", "127.0.0.1", port, {all_errors = true})
  connect(t, "dual refused", "dual.test", port)
  connect(t, "dual refused all_errors", "dual.test", port, {all_errors = true})
  connect(t, "dual refused eyeballs", "dual.test", port, {happy_eyeballs_delay = 0.05})
  connect(t, "dual refused eyeballs all_errors", "dual.test", port,
          {happy_eyeballs_delay = 0.05, all_errors = true})
  connect(t, "unresolvable", "no-such-host.invalid", port)
  connect(t, "unresolvable all_errors", "no-such-host.invalid", port, {all_errors = true})
end)

scenario("cn_dual", function(t)
  local srv = server(t, "v4", "127.0.0.1", 0)
  local port = port_of(srv)
  for _, case in ipairs {{"plain", {}}, {"eyeballs", {happy_eyeballs_delay = 0.05}},
                         {"eyeballs interleave 2", {happy_eyeballs_delay = 0.05, interleave = 2}},
                         {"interleave 1", {interleave = 1}}, {"inet6", {family = S.AF_INET6}}} do
    local c = connect(t, case[1], "dual.test", port, case[2])
    if c then
      t("peername", c:get_extra_info("peername"))
      c:close()
    end
  end
  settle()
  srv:close()
  srv = server(t, "v6", "::1", 0)
  port = port_of(srv)
  local c = connect(t, "cli v6", "dual.test", port, {happy_eyeballs_delay = 0.05})
  if c then
    local peer = c:get_extra_info("peername")
    t("peername", {peer[1], peer[2]})
    c:close()
  end
  settle()
  srv:close()
end)

scenario("cn_local_addr", function(t)
  local srv = server(t, "srv", "127.0.0.1", 0)
  local port = port_of(srv)
  local lport = free_port()
  local c = connect(t, "cli", "127.0.0.1", port, {local_addr = {"127.0.0.1", lport}})
  local name = c:get_extra_info("sockname")
  t("sockname", name[1] == "127.0.0.1" and name[2] == lport)
  connect(t, "in use", "127.0.0.1", port, {local_addr = {"127.0.0.1", lport}})
  connect(t, "in use all_errors", "127.0.0.1", port, {local_addr = {"127.0.0.1", lport},
                                                      all_errors = true})
  connect(t, "v6 local", "127.0.0.1", port, {local_addr = {"::1", 0}})
  connect(t, "unresolvable local", "127.0.0.1", port, {local_addr = {"no-such-host.invalid", 0}})
  local c2 = connect(t, "dual local v4", "dual.test", port, {local_addr = {"127.0.0.1", 0}})
  if c2 then
    t("dual local v4 peername", c2:get_extra_info("peername"))
    c2:close()
  end
  c:close()
  settle()
  srv:close()
end)

scenario("cn_sock", function(t)
  local srv = server(t, "srv", "127.0.0.1", 0)
  local port = port_of(srv)
  local s = S.socket()
  s:connect({"127.0.0.1", port})
  local c = connect(t, "sock", nil, nil, {sock = s})
  t("blocking", s:getblocking(), "peername", c:get_extra_info("peername"))
  c:close()
  settle()
  s = S.socket()
  connect(t, "sock and host", "127.0.0.1", port, {sock = s})
  s:close()
  s = S.socket()
  s:connect({"127.0.0.1", port})
  c = connect(t, "sock and local_addr", nil, nil, {sock = s, local_addr = {"127.0.0.1", 0}})
  if c then c:close() end
  settle()
  s = S.socket(S.AF_INET, S.SOCK_DGRAM)
  connect(t, "dgram sock", nil, nil, {sock = s})
  s:close()
  connect(t, "neither", nil, nil)
  s = S.socket()
  c = connect(t, "unconnected sock", nil, nil, {sock = s})
  t("unconnected", c ~= nil and c:get_extra_info("peername"))
  settle()
  settle()
  srv:close()
end)

scenario("cn_accepted", function(t)
  local lst = S.socket()
  lst:bind({"127.0.0.1", 0})
  lst:listen()
  local c = connect(t, "cli", "127.0.0.1", lst:getsockname()[2])
  local a = lst:accept()
  local ok, tr = pcall(loop().connect_accepted_socket, loop(), rec(t, "acc"), a)
  if ok then
    local peer, name = tr:get_extra_info("peername"), c:get_extra_info("sockname")
    t("accepted peername", peer[1] == name[1] and peer[2] == name[2])
    c:write("hi")
    settle()
    tr:close()
  else
    t:error("accepted", tr)
  end
  settle()
  local ok2, e = pcall(loop().connect_accepted_socket, loop(), rec(t, "dg"),
                       S.socket(S.AF_INET, S.SOCK_DGRAM))
  if not ok2 then t:error("dgram", e) end
  lst:close()
  settle()
end)

scenario("cn_more", function(t)
  local lp = loop()
  local srv = server(t, "srv", "127.0.0.1", 0)
  local port = port_of(srv)
  for _, c in ipairs {connect(t, "host only", "127.0.0.1", nil) or false,
                     connect(t, "port only", nil, port) or false} do
    if c then c:close() end
  end
  local c = connect(t, "string port", "127.0.0.1", tostring(port))
  if c then c:close() end
  settle()
  connect(t, "server_hostname without ssl", "127.0.0.1", port, {server_hostname = "x"})
  connect(t, "handshake timeout without ssl", "127.0.0.1", port, {ssl_handshake_timeout = 1})
  connect(t, "family mismatch", "127.0.0.1", port, {family = S.AF_INET6})
  local c0 = connect(t, "interleave 0", "dual.test", port, {interleave = 0})
  if c0 then c0:close() end
  c = connect(t, "eyeballs 0", "dual.test", port, {happy_eyeballs_delay = 0})
  if c then
    t("eyeballs 0 peername", c:get_extra_info("peername"))
    c:close()
  end
  settle()
  connect(t, "local_addr other family", "127.0.0.1", port, {local_addr = {"::1", 0}, all_errors = true})
  c = connect(t, "local_addr port only", "127.0.0.1", port, {local_addr = {nil, 0}})
  if c then c:close() end
  -- cancelling create_connection while happy eyeballs run
  local full = S.socket()  -- a listener with a full backlog: connects to it hang
  full:bind({"127.0.0.1", 0})
  full:listen(0)
  local fill = {}
  for i = 1, 3 do
    fill[i] = S.socket()
    fill[i]:setblocking(false)
    fill[i]:connect_ex(full:getsockname())
  end
  local task = lp:create_task(lp.create_connection, lp, function() return {} end, "127.0.0.1",
                              full:getsockname()[2], {happy_eyeballs_delay = 0.01})
  settle()
  task:cancel()
  t:aw("cancelled", task.await, nil, task)
  fill[4] = full
  for _, s in ipairs(fill) do s:close() end
  settle()
  srv:close()
  settle()
end)

-- }=================================================
-- {================================================= fd watchers

scenario("fd_watch", function(t)
  local lp = loop()
  local a, b = S.socketpair()
  a:setblocking(false)
  t:call("remove_reader none", lp.remove_reader, lp, a:fileno())
  t:call("remove_writer none", lp.remove_writer, lp, a:fileno())
  t("add_reader", (pcall(lp.add_reader, lp, a:fileno(), function() t("first reader") end)))
  t:call("add_reader again", function()
    lp:add_reader(a:fileno(), function() t("second reader"); lp:remove_reader(a:fileno()) end)
    return true
  end)
  b:send("x")
  settle()
  t:call("remove_reader done", lp.remove_reader, lp, a:fileno())
  t:call("add_writer", function()
    lp:add_writer(a, function() t("writer"); lp:remove_writer(a) end)
    return true
  end)
  settle()
  t:call("remove_writer", lp.remove_writer, lp, a)
  t:call("add_reader object", function() lp:add_reader(a, function() end) return true end)
  t:call("remove_reader object", lp.remove_reader, lp, a)
  t:call("add_reader -1", function() lp:add_reader(-1, function() end) end)
  t:call("remove_reader -1", lp.remove_reader, lp, -1)
  t:call("add_reader str", function() lp:add_reader("x", function() end) end)
  local fd = a:fileno()
  a:close()
  t:call("add_reader closed", function() lp:add_reader(fd, function() end) end)
  t:call("remove_reader closed", lp.remove_reader, lp, fd)
  t:call("add_reader closed sock", function() lp:add_reader(a, function() end) end)
  b:close()
  local f <close> = assert(io.open(arg[0]))
  t:call("add_reader file", function() lp:add_reader(f, function() end) end)
  t:call("remove_reader file", lp.remove_reader, lp, f)
end)

scenario("fd_transport", function(t)
  local lp = loop()
  local srv = server(t, "srv", "127.0.0.1", 0)
  local c = connect(t, "cli", "127.0.0.1", port_of(srv))
  local fd = c:get_extra_info("socket"):fileno()
  local nop = function() end
  t:call("add_reader", function() lp:add_reader(fd, nop) end)
  t:call("add_writer", function() lp:add_writer(fd, nop) end)
  t:call("remove_reader", lp.remove_reader, lp, fd)
  t:call("remove_writer", lp.remove_writer, lp, fd)
  t:aw("sock_recv", lp.sock_recv, nil, lp, c:get_extra_info("socket"), 10)  -- it must wait: refused
  t:aw("sock_sendall", lp.sock_sendall, nil, lp, c:get_extra_info("socket"), "x")  -- sent at once
  local s = c:get_extra_info("socket"):dup()
  s:setblocking(false)
  t:call("dup add_reader", function() lp:add_reader(s:fileno(), nop) end)
  t:call("dup remove_reader", lp.remove_reader, lp, s:fileno())
  s:close()
  c:close()
  t:call("closing add_reader", function() lp:add_reader(fd, nop) end)
  t:call("closing remove_reader", lp.remove_reader, lp, fd)
  settle()
  srv:close()
  settle()
end)

scenario("misc_more", function(t)
  local lp = loop()
  -- create_connection and connect_accepted_socket take any stream socket
  local a, b = S.socketpair()
  local ok, c = pcall(lp.create_connection, lp, rec(t, "pair"), nil, nil, {sock = a})
  if ok then
    t("unix sock peername", c:get_extra_info("peername"))
    b:send("over the pair")
    settle()
    c:close()
  else
    t:error("unix sock", c)
  end
  b:close()
  settle()
  a, b = S.socketpair()
  local ok2, e = pcall(lp.connect_accepted_socket, lp, rec(t, "acc"), a, {ssl_handshake_timeout = 1})
  if not ok2 then t:error("accepted handshake timeout without ssl", e) end
  c = lp:connect_accepted_socket(rec(t, "acc"), a)
  c:close()
  b:close()
  settle()
  -- sock_connect and sock_accept on AF_UNIX
  local lst = S.socket(S.AF_UNIX)
  lst:bind(tmp("sockops"))
  lst:listen()
  lst:setblocking(false)
  local cl = S.socket(S.AF_UNIX)
  cl:setblocking(false)
  local acc = lp:create_task(lp.sock_accept, lp, lst)
  t:aw("unix sock_connect", lp.sock_connect, nil, lp, cl, tmp("sockops"))
  local conn, addr = acc:await()
  t("unix accepted addr", addr)
  local missing = S.socket(S.AF_UNIX)
  missing:setblocking(false)
  t:aw("unix sock_connect missing", lp.sock_connect, 1, lp, missing, tmp("none"))
  for _, s in ipairs {lst, cl, conn, missing} do s:close() end
  -- an fd watcher's callback gets its arguments and may remove itself
  local rp = io.popen("sleep 0.01; printf ping")
  local got = {}
  lp:add_reader(rp, function(x, y)
    got[#got + 1] = {x, y, rp:read("a")}
    lp:remove_reader(rp)
  end, 1, "two")
  eddy.sleep(0.1)
  t("pipe reader", got)
  t:call("remove again", lp.remove_reader, lp, rp)
  rp:close()
  local wp = io.popen("sleep 0.01", "w")
  t:call("add_writer pipe", function() lp:add_writer(wp, function() end) return true end)
  t:call("remove_writer pipe", lp.remove_writer, lp, wp)
  wp:close()
  -- a server's listening socket
  local srv = server(t, "srv", "127.0.0.1", 0)
  t:call("add_reader listener", function() lp:add_reader(srv.sockets[1]:fileno(), function() end) end)
  t:call("remove_reader listener", lp.remove_reader, lp, srv.sockets[1]:fileno())
  srv:close()
end)

-- }=================================================
-- {================================================= sock_* methods

scenario("so_blocking", function(t)
  local lp = loop()
  local a, b = S.socketpair()
  local u = S.socket(S.AF_INET, S.SOCK_DGRAM)
  local buf = eddy.Buffer(10)
  t:aw("sock_recv", lp.sock_recv, nil, lp, a, 10)
  t:aw("sock_recv_into", lp.sock_recv_into, nil, lp, a, buf)
  t:aw("sock_recvfrom", lp.sock_recvfrom, nil, lp, u, 10)
  t:aw("sock_recvfrom_into", lp.sock_recvfrom_into, nil, lp, u, buf)
  t:aw("sock_sendall", lp.sock_sendall, nil, lp, a, "x")
  t:aw("sock_sendto", lp.sock_sendto, nil, lp, u, "x", {"127.0.0.1", 9})
  t:aw("sock_connect", lp.sock_connect, nil, lp, S.socket(), {"127.0.0.1", 9})
  t:aw("sock_accept", lp.sock_accept, nil, lp, S.socket())
  local f <close> = assert(io.open(arg[0], "rb"))
  t:aw("sock_sendfile", lp.sock_sendfile, nil, lp, a, f)
  for _, s in ipairs {a, b, u} do s:close() end
end)

-- A future's state as net.py prints it: false while pending, else the
-- result or the error.
local function outcome(f)
  if not f:done() then return false end
  if f:cancelled() then return raw("CancelledError") end
  if f:exception() then return err(f:exception()) end
  return f:result()
end

scenario("so_cancel", function(t)
  local lp = loop()
  local a, b = S.socketpair()
  a:setblocking(false)
  local r = lp:create_task(lp.sock_recv, lp, a, 10)
  tick()
  r:cancel()
  tick()
  t("cancelled", r:cancelled())
  b:send("data")
  t:aw("new recv", lp.sock_recv, nil, lp, a, 10)
  r = lp:create_task(lp.sock_recv, lp, a, 10)
  tick()
  local r2 = lp:create_task(lp.sock_recv, lp, a, 10)
  tick()
  t("second pending", r2:done())
  b:send("one")
  settle()
  t("first", outcome(r))
  t("second", outcome(r2))
  if not r2:done() then
    b:send("two")
    t:aw("second then", r2.await, nil, r2)
  end
  b:close()
  t:aw("recv eof", lp.sock_recv, nil, lp, a, 10)
  a:close()
  t:aw("recv closed", lp.sock_recv, nil, lp, a, 10)
end)

scenario("so_calls", function(t)
  local lp = loop()
  local lst = S.socket()
  lst:bind({"127.0.0.1", 0})
  lst:listen()
  lst:setblocking(false)
  local c = S.socket()
  c:setblocking(false)
  local acc = lp:create_task(lp.sock_accept, lp, lst)
  t:aw("sock_connect", lp.sock_connect, nil, lp, c, lst:getsockname())
  local conn, addr = acc:await()
  local name = c:getsockname()
  t("accepted", addr[1] == name[1] and addr[2] == name[2], conn:getblocking())
  t:aw("sock_sendall", lp.sock_sendall, nil, lp, c, string.rep("x", 300000))
  local got = 0
  while got < 300000 do got = got + #lp:sock_recv(conn, 65536) end
  t("received", got)
  local buf = eddy.Buffer(4)
  lp:sock_sendall(conn, "abcdef")
  t:aw("sock_recv_into", lp.sock_recv_into, nil, lp, c, buf)
  t("buf", buf:tostring())
  t:aw("sock_recv_into rest", lp.sock_recv_into, nil, lp, c, buf)
  t:aw("sock_recv 0", lp.sock_recv, nil, lp, c, 0)
  t:aw("sock_connect again", lp.sock_connect, nil, lp, c, lst:getsockname())
  local d = S.socket()
  d:setblocking(false)
  t:aw("sock_connect refused", lp.sock_connect, nil, lp, d, {"127.0.0.1", free_port()})
  d:close()
  d = S.socket()
  d:setblocking(false)
  t:aw("sock_connect by name", lp.sock_connect, nil, lp, d, {"localhost", lst:getsockname()[2]})
  d:close()
  for _, s in ipairs {lst, c, conn} do s:close() end
  local u = S.socket(S.AF_INET, S.SOCK_DGRAM)
  u:setblocking(false)
  u:bind({"127.0.0.1", 0})
  local v = S.socket(S.AF_INET, S.SOCK_DGRAM)
  v:setblocking(false)
  t:aw("sock_sendto", lp.sock_sendto, nil, lp, v, "dgram", u:getsockname())
  t:aw("sock_recvfrom", lp.sock_recvfrom, nil, lp, u, 3)
  t:aw("sock_sendto empty", lp.sock_sendto, nil, lp, v, "", u:getsockname())
  t:aw("sock_recvfrom empty", lp.sock_recvfrom, nil, lp, u, 10)
  lp:sock_sendto(v, "again", u:getsockname())
  buf = eddy.Buffer(10)
  t:aw("sock_recvfrom_into", lp.sock_recvfrom_into, nil, lp, u, buf)
  lp:sock_sendto(v, "again", u:getsockname())
  t:aw("sock_recvfrom_into 2", lp.sock_recvfrom_into, nil, lp, u, buf, 2)
  t:aw("sock_recvfrom_into too many", lp.sock_recvfrom_into, nil, lp, u, buf, 11)
  t:aw("sock_sendto oversized", lp.sock_sendto, nil, lp, v, string.rep("x", 70000), u:getsockname())
  t:aw("sock_sendto port 0", lp.sock_sendto, nil, lp, v, "x", {"127.0.0.1", 0})
  t:aw("sock_recvfrom waits", lp.sock_recvfrom, 0.1, lp, u, 10)
  u:close()
  v:close()
end)

scenario("so_more", function(t)
  local lp = loop()
  local lst = S.socket()
  lst:bind({"127.0.0.1", 0})
  lst:setblocking(false)
  t:aw("accept not listening", lp.sock_accept, nil, lp, lst)
  lst:listen()
  t:aw("recv on listener", lp.sock_recv, nil, lp, lst, 10)
  local acc = lp:create_task(lp.sock_accept, lp, lst)
  tick()
  acc:cancel()
  tick()
  t("accept cancelled", acc:cancelled())
  local c = S.socket()
  c:setblocking(false)
  lp:sock_connect(c, lst:getsockname())
  local conn = t:aw("accept after cancel", lp.sock_accept, nil, lp, lst)
  conn:setblocking(false)
  t:aw("sendall empty", lp.sock_sendall, nil, lp, c, "")
  conn:close()
  settle()
  t:aw("recv after peer close", lp.sock_recv, nil, lp, c, 10)
  local ok, e = pcall(function()
    for _ = 1, 100 do
      eddy.wait_for(function() return lp:sock_sendall(c, string.rep("x", 100000)) end, 1)
    end
  end)
  if not ok then t:error("sendall to closed peer", e) end
  c:close()
  lst:close()
  local u = S.socket(S.AF_INET, S.SOCK_DGRAM)
  u:setblocking(false)
  u:bind({"127.0.0.1", 0})
  t:aw("sendto by name", lp.sock_sendto, nil, lp, u, "n", {"localhost", u:getsockname()[2]})
  t:aw("recvfrom it", lp.sock_recvfrom, nil, lp, u, 10)
  local buf = eddy.Buffer(4)
  lp:sock_sendto(u, "abcdef", u:getsockname())
  t:aw("recvfrom_into 0", lp.sock_recvfrom_into, nil, lp, u, buf, 0)
  t("buf", buf:tostring())
  t:aw("sendto unresolvable", lp.sock_sendto, nil, lp, u, "x", {"no-such-host.invalid", 9})
  t:aw("connect dgram", lp.sock_connect, nil, lp, u, {"127.0.0.1", 9})
  t:aw("recv after connect", lp.sock_recv, 0.2, lp, u, 10)
  u:close()
end)

-- }=================================================
-- {================================================= sendfile

local function datafile()
  local path = tmp("data")
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local f = assert(io.open(path, "wb"))
  f:write(string.rep(table.concat(bytes), 40))  -- 10240 bytes
  f:close()
  return path
end

-- Up to n bytes from s, what came within 1 s.
local function drain(s, n)
  local got = ""
  while #got < n do
    local ok, chunk = pcall(eddy.wait_for, function() return loop():sock_recv(s, 65536) end, 1)
    if not ok or chunk == "" then break end
    got = got .. chunk
  end
  return got
end

local function fmt(v) return v == nil and "None" or tostring(v) end
local function pyfmt(fallback) return fallback and "True" or "False" end

scenario("sf_sock", function(t)
  local lp = loop()
  local path = datafile()
  for _, case in ipairs {{0, nil, true}, {100, 50, true}, {10000, 1000, true},
                         {20000, nil, true}, {0, 0, true}, {5, nil, false}} do
    local offset, count, fallback = case[1], case[2], case[3]
    local a, b = S.socketpair()
    a:setblocking(false)
    b:setblocking(false)
    local f <close> = assert(io.open(path, "rb"))
    f:seek("set", 7)
    local n = t:aw(string.format("sock_sendfile %d %s %s", offset, fmt(count), pyfmt(fallback)),
                   lp.sock_sendfile, nil, lp, a, f, offset, count, {fallback = fallback})
    local got = drain(b, n or 0)
    t("received", #got, got:sub(1, 3), "tell", f:seek())
    a:close()
    b:close()
  end
  local a, b = S.socketpair()
  a:setblocking(false)
  local f <close> = assert(io.open(path, "rb"))
  t:aw("negative offset", lp.sock_sendfile, nil, lp, a, f, -1)
  t:aw("negative count", lp.sock_sendfile, nil, lp, a, f, 0, -1)
  t:aw("float count", lp.sock_sendfile, nil, lp, a, f, 0, 1.5)
  a:close()
  b:close()
  a, b = S.socketpair()
  a:setblocking(false)
  b:setblocking(false)
  local p <close> = io.popen("printf 'from a pipe'")
  t:aw("pipe no fallback", lp.sock_sendfile, nil, lp, a, p, 0, nil, {fallback = false})
  t:aw("pipe fallback", lp.sock_sendfile, nil, lp, a, p)
  t("received", drain(b, 11))
  a:close()
  b:close()
  local u = S.socket(S.AF_INET, S.SOCK_DGRAM)
  u:setblocking(false)
  t:aw("dgram sock", lp.sock_sendfile, nil, lp, u, f)
  u:close()
end)

scenario("sf_transport", function(t)
  local lp = loop()
  local path = datafile()
  local count = 0
  local function counter()  -- a server's connection: traces what it got once it is lost
    count = count + 1
    local p = {who = "srv" .. count, data = ""}
    function p.data_received(_, data) p.data = p.data .. data end
    function p.connection_lost() t:event(p.who, "received", #p.data, p.data:sub(1, 4), p.data:sub(-5)) end
    return p
  end
  local srv = lp:create_server(counter, "127.0.0.1", 0)
  local port = port_of(srv)
  local function sink() return {} end
  for _, case in ipairs {{0, nil, true}, {100, 50, true}, {20000, nil, true}, {3, 10, false}} do
    local offset, count, fallback = case[1], case[2], case[3]
    local c = lp:create_connection(sink, "127.0.0.1", port)
    local f <close> = assert(io.open(path, "rb"))
    f:seek("set", 7)
    t:aw(string.format("sendfile %d %s %s", offset, fmt(count), pyfmt(fallback)),
         lp.sendfile, nil, lp, c, f, offset, count, {fallback = fallback})
    t("tell", f:seek())
    c:write("after")
    c:close()
    settle()
  end
  settle()
  local f <close> = assert(io.open(path, "rb"))
  local c = lp:create_connection(sink, "127.0.0.1", port)
  c:close()
  t:aw("closing transport", lp.sendfile, nil, lp, c, f)
  t:aw("bad offset", lp.sendfile, nil, lp, c, f, -1)
  c = lp:create_connection(sink, "127.0.0.1", port)
  c:write(string.rep("x", 1000000))
  local task = lp:create_task(lp.sendfile, lp, c, f)
  tick(1)
  c:close()
  t:aw("closed while sending", task.await, nil, task)
  settle()
  local u = lp:create_datagram_endpoint(sink, {"127.0.0.1", 0})
  t:aw("datagram transport", lp.sendfile, nil, lp, u, f)
  u:close()
  settle()
  srv:close()
end)

scenario("sf_more", function(t)
  local lp = loop()
  local path = datafile()
  local srv = server(t, "srv", "127.0.0.1", 0)
  local port = port_of(srv)
  for _, paused in ipairs {false, true} do
    local c = lp:create_connection(function() return {} end, "127.0.0.1", port)
    if paused then c:pause_reading() end
    local f <close> = assert(io.open(path, "rb"))
    t:aw("sendfile paused " .. pyfmt(paused), lp.sendfile, nil, lp, c, f, 10000, 5000, {fallback = false})
    t("is_reading after", c:is_reading())
    c:close()
  end
  settle()
  srv:close()
  -- the peer went away
  local a, b = S.socketpair()
  a:setblocking(false)
  b:close()
  local f <close> = assert(io.open(path, "rb"))
  t:aw("peer gone", lp.sock_sendfile, nil, lp, a, f)
  t("tell", f:seek())
  a:close()
  -- an empty file
  assert(io.open(tmp("empty"), "wb")):close()
  a, b = S.socketpair()
  a:setblocking(false)
  local e <close> = assert(io.open(tmp("empty"), "rb"))
  t:aw("empty file", lp.sock_sendfile, nil, lp, a, e)
  t:aw("empty file no fallback", lp.sock_sendfile, nil, lp, a, e, nil, nil, {fallback = false})
  a:close()
  b:close()
  settle()
end)

-- }=================================================

local prefix = arg[1] or ""
for _, s in ipairs(scenarios) do  -- each on a loop of its own
  if s.name:sub(1, #prefix) == prefix then
    local t = setmetatable({name = s.name, events = {}}, Trace)
    eddy.run(function()
      loop():set_exception_handler(function(_, ctx)
        local words = {}
        for w in ctx.message:gmatch("%S+") do if #words < 3 then words[#words + 1] = w end end
        t("exception_handler", table.concat(words, " "), ctx.exception and err(ctx.exception))
      end)
      s.fn(t)
    end)
    t:flush()
  end
end
os.execute("rm -rf " .. TMP)
