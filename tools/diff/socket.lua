-- Differential harness, eddy side: eddy.socket and the loop's
-- getaddrinfo/getnameinfo.  The same calls as tools/diff/socket.py
-- (CPython), printed the same way, one line per call, "scenario: label
-- result"; tools/diff/run.sh socket diffs the two.  Offline: numeric
-- hosts, localhost and /etc/services names only.
-- Usage: eddy socket.lua [scenario-name-prefix]
local eddy = require "eddy"
local S = require "eddy.socket"

local scenarios = {}
local function scenario(name, fn) scenarios[#scenarios + 1] = {name = name, fn = fn} end

-- A value as socket.py prints it: NUL as \0, ephemeral ports (10000 and
-- up) as PORT, several results as one {...}.
local function show(v)
  if type(v) == "string" then return '"' .. v:gsub("%z", "\\0") .. '"' end
  if math.type(v) == "integer" and v >= 10000 then return "PORT" end
  if type(v) == "table" and getmetatable(v) == nil then
    local parts = {}
    for i = 1, v.n or #v do parts[i] = show(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- An error as socket.py prints one: class, errno and its name (libuv's
-- strerror texts are not the C library's); a Lua argument error is "string".
local function err(e)
  if type(e) == "table" and e.errno then
    return string.format("error %s %d %s", e.__name, e.errno, e.code)
  elseif type(e) == "table" then
    return string.format("error %s %s", e.__name, e.message)
  end
  return "error string " .. tostring(e):gsub("^[^:]*:%d+: ", "")
end

local Trace = {}
Trace.__index = Trace

-- Calls fn(...) and prints what it returned (several values as one
-- {...}, as a Python tuple) or raised.
function Trace:__call(label, fn, ...)
  local r = table.pack(pcall(fn, ...))
  if not r[1] then
    print(string.format("%s: %s %s", self.name, label, err(r[2])))
    return nil
  end
  local v = r[2]
  if r.n > 2 then v = table.pack(table.unpack(r, 2, r.n)) end
  print(string.format("%s: %s %s", self.name, label, show(v)))
  return table.unpack(r, 2, r.n)
end

function Trace:say(label, ...)
  local words = table.pack(...)
  for i = 1, words.n do words[i] = show(words[i]) end
  print(string.format("%s: %s %s", self.name, label, table.concat(words, " ", 1, words.n)))
end

local function info(s) return s.family, s.type, s.proto end
local function infot(s) return {s.family, s.type, s.proto} end

-- select.select([r], [w], [], 2): wait until fd is readable/writable.
local function wait_fd(s, writable)
  local loop = eddy.new_event_loop()
  local fut = loop:create_future()
  local add = writable and loop.add_writer or loop.add_reader
  add(loop, s:fileno(), function() if not fut:done() then fut:set_result(true) end end)
  pcall(loop.run_until_complete, loop, eddy.wait_for(fut, 2))
  loop:close()
end

-- {================================================= sockets

scenario("sk_create", function(t)
  local s = S.socket()
  t:say("default", info(s))
  t("gettimeout", s.gettimeout, s)
  t("getblocking", s.getblocking, s)
  s:close()
  t("dgram", function() return infot(S.socket(S.AF_INET, S.SOCK_DGRAM)) end)
  t("inet6", function() return infot(S.socket(S.AF_INET6)) end)
  t("unix", function() return infot(S.socket(S.AF_UNIX)) end)
  t("unix dgram", function() return infot(S.socket(S.AF_UNIX, S.SOCK_DGRAM)) end)
  t("bad family", S.socket, 12345)
  t("bad type", S.socket, S.AF_INET, 999)
  t("bad proto", S.socket, S.AF_INET, S.SOCK_STREAM, 999)
  t("udp proto for stream", S.socket, S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP)
  t("tcp proto", function() return infot(S.socket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP)) end)
  t("nonblock type", function() return infot(S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK)) end)
  s = S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK)
  t("nonblock gettimeout", s.gettimeout, s)
  s:close()
end)

scenario("sk_socketpair", function(t)
  local a, b = S.socketpair()
  t:say("default", info(a))
  t:say("names", a:getsockname(), a:getpeername(), b:getsockname())
  t("send", a.send, a, "hi")
  t("recv", b.recv, b, 10)
  a:close(); b:close()
  t("dgram", function()
    local x, y = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    return {infot(x), infot(y)}
  end)
  t("inet", S.socketpair, S.AF_INET)
  t("inet6", S.socketpair, S.AF_INET6)
  t("bad family", S.socketpair, 12345)
end)

scenario("sk_tcp", function(t)
  local lst = S.socket()
  t("bind", lst.bind, lst, {"127.0.0.1", 0})
  t("listen", lst.listen, lst)
  t("getsockname", lst.getsockname, lst)
  t("listener getpeername", lst.getpeername, lst)
  local c = S.socket()
  t("connect", c.connect, c, lst:getsockname())
  local conn, addr = lst:accept()
  t:say("accept", addr, info(conn))
  t("accepted gettimeout", conn.gettimeout, conn)
  t("send", c.send, c, "hello")
  t("recv", conn.recv, conn, 3)
  t("recv rest", conn.recv, conn, 100)
  t("recv 0", conn.recv, conn, 0)
  t("getpeername", c.getpeername, c)
  t("shutdown wr", c.shutdown, c, S.SHUT_WR)
  t("recv eof", conn.recv, conn, 100)
  t("send after shut wr", c.send, c, "x")
  t("shutdown bad how", c.shutdown, c, 7)
  t("shutdown neg how", c.shutdown, c, -1)
  t("shutdown rdwr", conn.shutdown, conn, S.SHUT_RDWR)
  t("recv after shut rd", conn.recv, conn, 10)
  t("bind again", c.bind, c, {"127.0.0.1", 0})
  t("connect again", c.connect, c, lst:getsockname())
  t("bind in use", function() return S.socket():bind(lst:getsockname()) end)
  t("bind bad port", function() return S.socket():bind({"127.0.0.1", 70000}) end)
  t("bind neg port", function() return S.socket():bind({"127.0.0.1", -1}) end)
  t("bind bad host", function() return S.socket():bind({"300.1.1.1", 0}) end)
  t("bind inet6 addr", function() return S.socket():bind({"::1", 0}) end)
  t("bind short tuple", function() return S.socket():bind({"127.0.0.1"}) end)
  t("bind empty host", function() return S.socket():bind({"", 0}) end)
  local u = S.socket()
  t("unbound getsockname", u.getsockname, u)
  t("unconnected getpeername", u.getpeername, u)
  t("unconnected send", u.send, u, "x")
  t("unconnected recv nb", function() u:setblocking(false) return u:recv(1) end)
  t("unconnected shutdown", u.shutdown, u, S.SHUT_RDWR)
  t("listen unbound", u.listen, u)
  for _, s in ipairs {lst, c, conn, u} do s:close() end
end)

scenario("sk_nonblocking", function(t)
  local lst = S.socket()
  lst:bind({"127.0.0.1", 0})
  lst:listen()
  t("setblocking", lst.setblocking, lst, false)
  t("getblocking", lst.getblocking, lst)
  t("gettimeout", lst.gettimeout, lst)
  t("accept", lst.accept, lst)
  local c = S.socket()
  c:setblocking(false)
  t("connect", c.connect, c, lst:getsockname())
  t("connect_ex", c.connect_ex, c, lst:getsockname())
  lst:setblocking(true)
  local conn = lst:accept()
  t("accept blocking listener gives", conn.gettimeout, conn)
  wait_fd(c, true)
  t("connect_ex done", c.connect_ex, c, lst:getsockname())
  t("recv", c.recv, c, 10)
  conn:send("x")
  wait_fd(c)
  t("recv data", c.recv, c, 10)
  conn:close()
  wait_fd(c)
  t("recv eof", c.recv, c, 10)
  t("send to closed", c.send, c, "y")
  t("send again", c.send, c, "y")
  lst:close(); c:close()
  local a, b = S.socketpair()
  a:setblocking(false)
  local ok, e
  repeat ok, e = pcall(a.send, a, string.rep("z", 65536)) until not ok
  t:say("fill", err(e))
  a:close(); b:close()
end)

scenario("sk_refused", function(t)
  local s = S.socket()
  s:bind({"127.0.0.1", 0})
  local addr = s:getsockname()
  s:close()
  local c = S.socket()
  t("connect", c.connect, c, addr)
  t("connect_ex", c.connect_ex, c, addr)
  c:close()
  c = S.socket()
  c:setblocking(false)
  t("nb connect", c.connect, c, addr)
  wait_fd(c, true)
  t("SO_ERROR", c.getsockopt, c, S.SOL_SOCKET, S.SO_ERROR)
  c:close()
  t("unix missing", function() return S.socket(S.AF_UNIX):connect("/nonexistent/sock") end)
  t("unix not a socket", function() return S.socket(S.AF_UNIX):connect("/etc/passwd") end)
end)

scenario("sk_timeout", function(t)
  local a, b = S.socketpair()
  t("settimeout", a.settimeout, a, 0.05)
  t("gettimeout", a.gettimeout, a)
  t("getblocking", a.getblocking, a)
  t("recv", a.recv, a, 1)
  t("settimeout 0", a.settimeout, a, 0)
  t("getblocking 0", a.getblocking, a)
  t("gettimeout 0", a.gettimeout, a)
  t("recv 0", a.recv, a, 1)
  t("settimeout nil", a.settimeout, a, nil)
  t("gettimeout nil", a.gettimeout, a)
  t("getblocking nil", a.getblocking, a)
  t("settimeout neg", a.settimeout, a, -1)
  t("settimeout int", a.settimeout, a, 2)
  t("gettimeout int", a.gettimeout, a)
  t("setblocking true", a.setblocking, a, true)
  t("gettimeout", a.gettimeout, a)
  t("setblocking false", a.setblocking, a, false)
  t("gettimeout", a.gettimeout, a)
  a:close(); b:close()
end)

scenario("sk_closed", function(t)
  local s = S.socket()
  s:bind({"127.0.0.1", 0})
  t("close", s.close, s)
  t("close again", s.close, s)
  t("fileno", s.fileno, s)
  t:say("fields", info(s))
  t("getblocking", s.getblocking, s)
  t("gettimeout", s.gettimeout, s)
  t("bind", s.bind, s, {"127.0.0.1", 0})
  t("listen", s.listen, s)
  t("connect", s.connect, s, {"127.0.0.1", 1})
  t("connect_ex", s.connect_ex, s, {"127.0.0.1", 1})
  t("accept", s.accept, s)
  t("recv", s.recv, s, 1)
  t("send", s.send, s, "x")
  t("sendall", s.sendall, s, "x")
  t("shutdown", s.shutdown, s, S.SHUT_RDWR)
  t("getsockname", s.getsockname, s)
  t("getpeername", s.getpeername, s)
  t("setsockopt", s.setsockopt, s, S.SOL_SOCKET, S.SO_REUSEADDR, 1)
  t("getsockopt", s.getsockopt, s, S.SOL_SOCKET, S.SO_REUSEADDR)
  t("setblocking", s.setblocking, s, false)
  t("settimeout", s.settimeout, s, 1)
  t("detach", s.detach, s)
  t("dup", s.dup, s)
end)

scenario("sk_detach", function(t)
  local s = S.socket()
  local fd = s:fileno()
  t("detach is fileno", function() return s:detach() == fd end)
  t("fileno", s.fileno, s)
  t("close", s.close, s)
  local w = S.socket(nil, nil, nil, fd)
  t:say("wrapped", info(w))
  t("wrapped getsockname", w.getsockname, w)
  w:close()
  local a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
  w = S.socket(nil, nil, nil, a:detach())
  t:say("wrapped dgram", info(w))
  w:close(); b:close()
end)

scenario("sk_inet6", function(t)
  local s = S.socket(S.AF_INET6)
  t("bind", s.bind, s, {"::1", 0})
  t("getsockname", s.getsockname, s)
  s:listen()
  local c = S.socket(S.AF_INET6)
  local name = s:getsockname()
  t("connect 2-tuple", c.connect, c, {name[1], name[2]})
  local conn, addr = s:accept()
  t:say("accept", addr)
  t("getpeername", c.getpeername, c)
  t("bind flowinfo", function() return S.socket(S.AF_INET6):bind({"::1", 0, 5, 0}) end)
  t("bind bad flowinfo", function() return S.socket(S.AF_INET6):bind({"::1", 0, 1 << 20, 0}) end)
  t("bind scope", function() return S.socket(S.AF_INET6):bind({"::1", 0, 0, 1}) end)
  t("bind v4 host", function() return S.socket(S.AF_INET6):bind({"127.0.0.1", 0}) end)
  t("bind wildcard", function() return S.socket(S.AF_INET6):bind({"", 0}) end)
  t("bind 5-tuple", function() return S.socket(S.AF_INET6):bind({"::1", 0, 0, 0, 0}) end)
  t("v4-mapped", function() return S.socket(S.AF_INET6):bind({"::ffff:127.0.0.1", 0}) end)
  local u = S.socket(S.AF_INET6)
  t("unbound getsockname", u.getsockname, u)
  for _, x in ipairs {s, c, conn, u} do x:close() end
end)

scenario("sk_unix", function(t)
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir " .. d))
  local path = d .. "/s"
  local s = S.socket(S.AF_UNIX)
  t("unbound getsockname", s.getsockname, s)
  t("bind", s.bind, s, path)
  t("getsockname is path", function() return s:getsockname() == path end)
  s:listen()
  local c = S.socket(S.AF_UNIX)
  t("connect", c.connect, c, path)
  local conn, addr = s:accept()
  t:say("accept addr", addr)
  t("conn getpeername", conn.getpeername, conn)
  t("client getpeername is path", function() return c:getpeername() == path end)
  t("client getsockname", c.getsockname, c)
  t("bind again", function() return S.socket(S.AF_UNIX):bind(path) end)
  t("bind too long", function() return S.socket(S.AF_UNIX):bind("/tmp/" .. string.rep("x", 200)) end)
  local x = S.socket(S.AF_UNIX)
  t("bind empty", x.bind, x, "")  -- autobind: an abstract name of 5 random hex digits
  t("autobound", function() local n = x:getsockname() return {n:sub(1, 1), #n} end)
  x:close()
  for _, y in ipairs {s, c, conn} do y:close() end
  os.remove(path); os.remove(d)
  local stat <close> = assert(io.open("/proc/self/stat"))
  local pid = tostring(stat:read("n"))  -- a name no other run has
  local name = "\0eddy-diff-" .. pid
  local a = S.socket(S.AF_UNIX)
  t("bind abstract", a.bind, a, name)
  t("abstract getsockname", function() return (a:getsockname():gsub(pid, "PID")) end)
  a:listen()
  c = S.socket(S.AF_UNIX)
  t("connect abstract", c.connect, c, name)
  t("abstract getpeername", function() return (c:getpeername():gsub(pid, "PID")) end)
  a:close(); c:close()
  local g = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
  t("dgram unbound getsockname", g.getsockname, g)
  g:close()
end)

scenario("sk_sockopt", function(t)
  local s = S.socket()
  local SOL = S.SOL_SOCKET
  t("get SO_REUSEADDR", s.getsockopt, s, SOL, S.SO_REUSEADDR)
  t("set SO_REUSEADDR", s.setsockopt, s, SOL, S.SO_REUSEADDR, 1)
  t("get SO_REUSEADDR", s.getsockopt, s, SOL, S.SO_REUSEADDR)
  t("set true", s.setsockopt, s, SOL, S.SO_KEEPALIVE, true)
  t("get SO_KEEPALIVE", s.getsockopt, s, SOL, S.SO_KEEPALIVE)
  t("get buflen 4", s.getsockopt, s, SOL, S.SO_REUSEADDR, 4)
  t("get buflen 8", s.getsockopt, s, SOL, S.SO_REUSEADDR, 8)
  t("get buflen 2", s.getsockopt, s, SOL, S.SO_REUSEADDR, 2)
  t("get buflen 0", s.getsockopt, s, SOL, S.SO_REUSEADDR, 0)
  t("get buflen neg", s.getsockopt, s, SOL, S.SO_REUSEADDR, -1)
  t("get buflen huge", s.getsockopt, s, SOL, S.SO_REUSEADDR, 2000)
  t("set bytes", s.setsockopt, s, SOL, S.SO_LINGER, "\1\0\0\0\5\0\0\0")
  t("get linger", s.getsockopt, s, SOL, S.SO_LINGER, 8)
  t("set short bytes", s.setsockopt, s, SOL, S.SO_LINGER, "\1")
  t("set empty bytes", s.setsockopt, s, SOL, S.SO_REUSEADDR, "")
  t("get SO_TYPE", s.getsockopt, s, SOL, S.SO_TYPE)
  t("get SO_DOMAIN", s.getsockopt, s, SOL, S.SO_DOMAIN)
  t("get SO_ERROR", s.getsockopt, s, SOL, S.SO_ERROR)
  t("get SO_ACCEPTCONN", s.getsockopt, s, SOL, S.SO_ACCEPTCONN)
  t("set TCP_NODELAY", s.setsockopt, s, S.IPPROTO_TCP, S.TCP_NODELAY, 1)
  t("get TCP_NODELAY", s.getsockopt, s, S.IPPROTO_TCP, S.TCP_NODELAY)
  t("bad option", s.getsockopt, s, SOL, 9999)
  t("set bad option", s.setsockopt, s, SOL, 9999, 1)
  t("bad level", s.getsockopt, s, 9999, 1)
  t("set neg", s.setsockopt, s, SOL, S.SO_RCVBUF, -1)
  t("set huge", s.setsockopt, s, SOL, S.SO_RCVBUF, 1 << 40)
  t("set None", s.setsockopt, s, SOL, S.SO_RCVBUF, nil)
  s:close()
end)

scenario("sk_udp", function(t)
  local a = S.socket(S.AF_INET, S.SOCK_DGRAM)
  a:bind({"127.0.0.1", 0})
  local b = S.socket(S.AF_INET, S.SOCK_DGRAM)
  t("sendto", b.sendto, b, "ping", a:getsockname())
  t("recvfrom", a.recvfrom, a, 100)
  t("sendto flags", b.sendto, b, "pong", 0, a:getsockname())
  t("recv short", a.recv, a, 2)
  t("getpeername", a.getpeername, a)
  t("connect", b.connect, b, a:getsockname())
  t("send", b.send, b, "")
  t("recvfrom empty", a.recvfrom, a, 10)
  t("listen dgram", a.listen, a)
  t("accept dgram", a.accept, a)
  a:settimeout(0.05)
  t("recvfrom timeout", a.recvfrom, a, 10)
  a:close(); b:close()
end)

-- }=================================================
-- {================================================= DNS

scenario("dns_getaddrinfo", function(t)
  local loop = eddy.get_running_loop()
  local function gai(label, host, port, opts)
    local ok, r = pcall(loop.getaddrinfo, loop, host, port, opts)
    if not ok then
      print(string.format("%s: %s %s", t.name, label, err(r)))
      return
    end
    for _, e in ipairs(r) do t:say(label, e.family, e.type, e.proto, e.canonname, e.sockaddr) end
    if #r == 0 then t:say(label, "empty") end
  end
  gai("nil host", nil, 80)
  gai("nil host passive", nil, 80, {flags = S.AI_PASSIVE})
  gai("nil host passive v6", nil, 80, {family = S.AF_INET6, flags = S.AI_PASSIVE})
  gai("empty host", "", 80)
  gai("nil nil", nil, nil)
  gai("v4", "127.0.0.1", 80)
  gai("v4 stream", "127.0.0.1", 80, {type = S.SOCK_STREAM})
  gai("v4 udp proto", "127.0.0.1", 80, {proto = S.IPPROTO_UDP})
  gai("v6", "::1", "http", {type = S.SOCK_STREAM})
  gai("v6 scope", "fe80::1%1", 80, {type = S.SOCK_STREAM})
  gai("service name", "127.0.0.1", "ssh", {type = S.SOCK_STREAM})
  gai("service digits", "127.0.0.1", "8080", {type = S.SOCK_STREAM})
  gai("service bytes", "127.0.0.1", "ssh", {type = S.SOCK_STREAM})
  gai("bad service", "127.0.0.1", "no-such-service", {type = S.SOCK_STREAM})
  gai("port 0", "127.0.0.1", 0, {type = S.SOCK_STREAM})
  gai("port big", "127.0.0.1", 70000, {type = S.SOCK_STREAM})
  gai("port neg", "127.0.0.1", -1, {type = S.SOCK_STREAM})
  gai("port nil", "127.0.0.1", nil, {type = S.SOCK_STREAM})
  gai("localhost v4", "localhost", 22, {family = S.AF_INET, type = S.SOCK_STREAM})
  gai("canonname", "127.0.0.1", 22, {type = S.SOCK_STREAM, flags = S.AI_CANONNAME})
  gai("numerichost", "localhost", 80, {flags = S.AI_NUMERICHOST})
  gai("numerichost ok", "127.0.0.1", 80, {type = S.SOCK_DGRAM, flags = S.AI_NUMERICHOST})
  gai("numericserv", "127.0.0.1", "http", {flags = S.AI_NUMERICSERV})
  gai("family mismatch", "127.0.0.1", 80, {family = S.AF_INET6})
  gai("family unix", "127.0.0.1", 80, {family = S.AF_UNIX})
  gai("bad family", "127.0.0.1", 80, {family = 12345})
  gai("bad type", "127.0.0.1", 80, {type = 999})
  gai("bad flags", "127.0.0.1", 80, {flags = 0x10000})
  gai("dgram ssh", "127.0.0.1", "ssh", {type = S.SOCK_DGRAM})
  gai("bad v4", "1.2.3.4.5", 80, {flags = S.AI_NUMERICHOST})
end)

scenario("dns_getnameinfo", function(t)
  local loop = eddy.get_running_loop()
  local function gni(label, sockaddr, flags)
    local r = table.pack(pcall(loop.getnameinfo, loop, sockaddr, flags))
    if not r[1] then
      print(string.format("%s: %s %s", t.name, label, err(r[2])))
      return
    end
    t:say(label, table.unpack(r, 2, r.n))
  end
  gni("v4", {"127.0.0.1", 22})
  gni("v4 flags 0", {"127.0.0.1", 22}, 0)
  gni("numeric", {"127.0.0.1", 22}, S.NI_NUMERICHOST | S.NI_NUMERICSERV)
  gni("numericserv", {"127.0.0.1", 80}, S.NI_NUMERICSERV)
  gni("namereqd", {"127.0.0.1", 80}, S.NI_NAMEREQD)
  gni("dgram", {"127.0.0.1", 514}, S.NI_DGRAM)
  gni("unknown port", {"127.0.0.1", 1})
  gni("port 0", {"127.0.0.1", 0}, S.NI_NUMERICHOST)
  gni("v6", {"::1", 80, 0, 0}, S.NI_NUMERICHOST)
  gni("v6 2-tuple", {"::1", 80}, S.NI_NUMERICHOST)
  gni("v6 scope", {"fe80::1", 80, 0, 1}, S.NI_NUMERICHOST | S.NI_NUMERICSERV)
  gni("v6 flowinfo", {"::1", 80, 7, 0}, S.NI_NUMERICHOST)
  gni("v6 bad flowinfo", {"::1", 80, 1 << 20, 0}, S.NI_NUMERICHOST)
  gni("name host", {"localhost", 80})
  gni("empty host", {"", 80}, S.NI_NUMERICHOST)
  gni("bad port", {"127.0.0.1", 70000})
  gni("neg port", {"127.0.0.1", -1})
  gni("short tuple", {"127.0.0.1"})
  gni("long tuple", {"127.0.0.1", 80, 0, 0, 0})
  gni("bad flags", {"127.0.0.1", 80}, 0x10000)
end)

-- }=================================================

local prefix = arg[1] or ""
for _, s in ipairs(scenarios) do
  if s.name:sub(1, #prefix) == prefix then
    local t = setmetatable({name = s.name}, Trace)
    if s.name:find("^dns_") then eddy.run(s.fn, t) else s.fn(t) end
  end
end
