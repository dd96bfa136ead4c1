-- eddy.socket: Python's socket module subset (API.md §10).
local eddy = require "eddy"
local errors = eddy.errors
local socket = require "eddy.socket"

local checks = require "support.checks"
local raises = checks.expect_error

describe("eddy.socket", function()
  it("is eddy.socket and require 'eddy.socket'", function()
    assert.equal(eddy.socket, socket)
    assert.is_number(socket.AF_INET)
    for _, name in ipairs {"AF_INET", "AF_INET6", "AF_UNIX", "AF_UNSPEC", "SOCK_STREAM",
      "SOCK_DGRAM", "SOCK_NONBLOCK", "SOL_SOCKET", "SO_REUSEADDR", "SO_REUSEPORT",
      "SO_BROADCAST", "SO_KEEPALIVE", "SO_ERROR", "SO_RCVBUF", "SO_SNDBUF", "IPPROTO_TCP",
      "IPPROTO_UDP", "IPPROTO_IPV6", "IPV6_V6ONLY", "TCP_NODELAY", "AI_PASSIVE",
      "AI_CANONNAME", "AI_NUMERICHOST", "NI_NUMERICHOST", "NI_NUMERICSERV", "SHUT_RD",
      "SHUT_WR", "SHUT_RDWR", "MSG_PEEK", "IP_MULTICAST_IF", "IP_DROP_MEMBERSHIP",
      "IPV6_JOIN_GROUP", "IPV6_LEAVE_GROUP", "SO_RCVTIMEO", "TCP_USER_TIMEOUT",
      "INADDR_NONE", "IPPROTO_ICMP", "MSG_DONTROUTE"} do
      assert.is_number(socket[name], name)
    end
  end)

  it("proto is the one asked for, as Python's; a wrapped descriptor's is the kernel's", function()
    local a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert.equal(0, a.proto)  -- the kernel chose TCP (6)
    local b = socket.socket(nil, nil, nil, a:fileno())
    assert.equal(socket.IPPROTO_TCP, b.proto)
    b:detach()
    a:close()
    local u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    assert.equal(socket.IPPROTO_UDP, u.proto)
    u:close()
  end)

  it("socketpair sends and receives, fields are read-only", function()
    local a, b = socket.socketpair()
    assert.equal(socket.AF_UNIX, a.family)
    assert.equal(socket.SOCK_STREAM, a.type)
    assert.equal(0, a.proto)
    assert.is_true(a:fileno() >= 0)
    assert.equal(5, a:send("hello"))
    assert.equal("hello", b:recv(100))
    a:sendall(string.rep("x", 1000))
    assert.equal(1000, #b:recv(1000, socket.MSG_WAITALL))
    checks.raises(function() a.family = 3 end, "cannot set field 'family' of eddy.socket")
    assert.equal(socket.AF_UNIX, a.family)
    a:close() b:close()
  end)

  it("TCP on 127.0.0.1: bind, listen, connect, accept, names, shutdown", function()
    local srv <close> = socket.socket()
    srv:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    assert.equal(1, srv:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    srv:bind({"127.0.0.1", 0})
    srv:listen()
    local addr = srv:getsockname()
    assert.equal("127.0.0.1", addr[1])
    assert.is_true(addr[2] > 0)
    local c <close> = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c:connect(addr)
    local conn, peer = srv:accept()
    assert.same(c:getsockname(), peer)
    assert.same(addr, c:getpeername())
    assert.is_true(conn:getblocking())
    c:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, true)
    assert.equal(1, c:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    c:sendall("data")
    assert.equal("data", conn:recv(10))
    c:shutdown(socket.SHUT_WR)
    assert.equal("", conn:recv(10))
    conn:close()
  end)

  it("TCP on ::1 gives four-field addresses", function()
    local srv <close> = socket.socket(socket.AF_INET6)
    srv:setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv:bind({"::1", 0})
    srv:listen(5)
    local addr = srv:getsockname()
    assert.equal("::1", addr[1])
    assert.equal(0, addr[3])
    assert.equal(0, addr[4])
    local c <close> = socket.socket(socket.AF_INET6)
    assert.equal(0, c:connect_ex(addr))
    local conn <close> = srv:accept()
    assert.equal(socket.AF_INET6, conn.family)
  end)

  it("connect_ex returns the errno, connect raises ConnectionRefusedError", function()
    local probe = socket.socket()
    probe:bind({"127.0.0.1", 0})
    local addr = probe:getsockname()
    probe:close()
    local c <close> = socket.socket()
    local err = raises(errors.ConnectionRefusedError, c.connect, c, addr)
    assert.equal("ECONNREFUSED", err.code)
    assert.is_number(err.errno)
    assert.is_string(err.strerror)
    local c2 <close> = socket.socket()
    assert.equal(err.errno, c2:connect_ex(addr))
  end)

  -- Python: "Like connect(address), but return an error indicator instead
  -- of raising an exception for errors returned by the C-level connect()
  -- call"; on a closed socket that call fails with EBADF.
  it("connect_ex on a closed socket returns EBADF, as Python's", function()
    local s = socket.socket()
    s:close()
    assert.equal(9, s:connect_ex({"127.0.0.1", 1}))  -- EBADF
    raises(errors.OSError, s.connect, s, {"127.0.0.1", 1})
  end)

  -- Python: "AF_INET address must be a pair (host, port)", "AF_INET6
  -- address must be a tuple (host, port[, flowinfo[, scopeid]])" (TypeError:
  -- a Lua argument error here), flowinfo and scope_id integers.
  it("refuses address arrays with extra fields or non-integer IPv6 fields", function()
    local s4 <close> = socket.socket()
    assert.error_matches(function() s4:bind({"127.0.0.1", 0, 0}) end,
      "bad argument #1 to 'bind' %(AF_INET address must be {host, port}%)")
    local s6 <close> = socket.socket(socket.AF_INET6)
    assert.error_matches(function() s6:bind({"::1", 0, 0, 0, 0}) end,
      "AF_INET6 address must be {host, port%[, flowinfo%[, scope_id%]%]}")
    assert.error_matches(function() s6:bind({"::1", 0, "x"}) end,
      "address flowinfo must be an integer")
    assert.error_matches(function() s6:bind({"::1", 0, 0, 1.5}) end,
      "address scope_id must be an integer")
    s6:bind({"::1", 0, 0, 0})
  end)

  it("a non-blocking connect raises OSError EINPROGRESS (Python's BlockingIOError)", function()
    local srv <close> = socket.socket()
    srv:bind({"127.0.0.1", 0})
    srv:listen()
    local c <close> = socket.socket()
    c:setblocking(false)
    local err = raises(errors.OSError, c.connect, c, srv:getsockname())
    assert.equal("EINPROGRESS", err.code)
    assert.equal(115, err.errno)  -- Linux
    assert.equal("operation now in progress", err.strerror)
    local d <close> = socket.socket()
    d:setblocking(false)
    assert.equal(115, d:connect_ex(srv:getsockname()))
  end)

  it("UDP: sendto, recvfrom, MSG_PEEK, broadcast option", function()
    local s <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s:bind({"127.0.0.1", 0})
    local c <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c:setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    assert.equal(1, c:getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST))
    assert.equal(3, c:sendto("one", s:getsockname()))
    assert.equal(3, c:sendto("two", 0, s:getsockname()))
    assert.equal("one", s:recv(10, socket.MSG_PEEK))
    local data, from = s:recvfrom(10)
    assert.equal("one", data)
    assert.same({"127.0.0.1", c:getsockname()[2]}, from)
    assert.equal("two", (s:recvfrom(10)))
  end)

  it("AF_UNIX paths and abstract names", function()
    local path = os.tmpname()
    os.remove(path)
    local s <close> = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s:bind(path)
    assert.equal(path, s:getsockname())
    local c <close> = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    local abstract = "\0eddy-spec-" .. tostring(os.time()) .. math.random(1e6)
    c:bind(abstract)
    assert.equal(abstract, c:getsockname())
    c:sendto("hi", path)
    local data, from = s:recvfrom(10)
    assert.equal("hi", data)
    assert.equal(abstract, from)
    os.remove(path)
    raises(errors.OSError, s.bind, s, string.rep("x", 200))
  end)

  -- CPython's AF_UNIX check: an abstract name may fill all 108 bytes of
  -- sun_path (the kernel wants no NUL after it); a file path needs its NUL.
  it("an abstract name may fill sun_path; a file path leaves room for its NUL", function()
    local name = "\0" .. ("eddy-%d-"):format(math.random(1 << 30))
    name = name .. string.rep("y", 108 - #name)
    local a <close> = socket.socket(socket.AF_UNIX)
    a:bind(name)
    assert.equal(name, a:getsockname())
    local e = raises(errors.OSError, a.bind, a, name .. "y")
    assert.equal("OSError: AF_UNIX path too long", tostring(e))
    e = raises(errors.OSError, a.bind, a, "/" .. string.rep("y", 107))
    assert.equal("OSError: AF_UNIX path too long", tostring(e))
  end)

  -- Python: socket(fileno=-1) raises ValueError "negative file descriptor";
  -- a family, type or proto no C int holds raises OverflowError (ValueError
  -- here) instead of being truncated into another constant; a port must be
  -- an int ("80" is a TypeError: an argument error).
  it("refuses a negative fileno, out-of-range constants and numeric strings as ports", function()
    local e = raises(errors.ValueError, socket.socket, nil, nil, nil, -1)
    assert.equal("ValueError: negative file descriptor", tostring(e))
    raises(errors.ValueError, socket.socket, (1 << 32) + socket.AF_INET)
    raises(errors.ValueError, socket.socket, socket.AF_INET, (1 << 32) + socket.SOCK_STREAM)
    raises(errors.ValueError, socket.socketpair, (1 << 32) + socket.AF_UNIX)
    local s <close> = socket.socket()
    assert.error_matches(function() s:bind({"127.0.0.1", "0"}) end,
      "address port must be an integer")
    local s6 <close> = socket.socket(socket.AF_INET6)
    assert.error_matches(function() s6:bind({"::1", 0, "0"}) end,
      "address flowinfo must be an integer")
  end)

  it("blocking modes: setblocking, settimeout, gettimeout", function()
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    assert.is_nil(a:gettimeout())
    assert.is_true(a:getblocking())
    a:setblocking(false)
    assert.equal(0, a:gettimeout())
    assert.is_false(a:getblocking())
    local err = raises(errors.OSError, a.recv, a, 10)
    assert.equal("EAGAIN", err.code)
    a:settimeout(0.05)
    assert.equal(0.05, a:gettimeout())
    assert.is_true(a:getblocking())
    raises(errors.TimeoutError, a.recv, a, 10)
    a:settimeout(nil)
    assert.is_nil(a:gettimeout())
    raises(errors.ValueError, a.settimeout, a, -1)
    local s <close> = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    assert.equal(socket.SOCK_STREAM, s.type)
    assert.is_false(s:getblocking())
  end)

  it("settimeout refuses timeouts beyond Python's clock range; long ones still work", function()
    -- Python raises OverflowError for inf and 1e300 (its _PyTime_t holds
    -- some 292 years of nanoseconds); eddy cast them to a poll() timeout
    -- in milliseconds, an int: undefined behaviour, a wait that never ends
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    for _, t in ipairs {math.huge, 1e300, 1e10} do
      local err = raises(errors.ValueError, a.settimeout, a, t)
      assert.matches("out of range", tostring(err))
    end
    assert.is_nil(a:gettimeout())  -- unchanged
    a:settimeout(9e9)  -- more than INT_MAX milliseconds: fine
    assert.equal(9e9, a:gettimeout())
    b:send("ready")
    assert.equal("ready", a:recv(10))
  end)

  it("close is idempotent; closed sockets raise EBADF; detach and dup", function()
    local a, b = socket.socketpair()
    local d = a:dup()
    a:close()
    a:close()
    assert.equal(-1, a:fileno())
    local err = raises(errors.OSError, a.send, a, "x")
    assert.equal("EBADF", err.code)
    d:send("via dup")
    assert.equal("via dup", b:recv(100))
    local fd = d:detach()
    assert.equal(-1, d:fileno())
    local w = socket.socket(nil, nil, nil, fd)
    assert.equal(socket.AF_UNIX, w.family)
    assert.equal(socket.SOCK_STREAM, w.type)
    w:send("wrapped")
    assert.equal("wrapped", b:recv(100))
    w:close()
    b:close()
    assert.matches("closed", tostring(b))
  end)

  it("rejects bad input with clear errors", function()
    local s <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert.has_error(function() s:bind("127.0.0.1") end)
    assert.has_error(function() s:bind({127, 0}) end)
    assert.has_error(function() s:bind({"127.0.0.1", "x"}) end)
    raises(errors.ValueError, s.bind, s, {"127.0.0.1", 70000})
    raises(errors.ValueError, s.bind, s, {"127.0.0.1", -1})
    raises(errors.DNSError, s.bind, s, {"no-such-host.invalid", 0})
    raises(errors.ValueError, s.recv, s, -1)
    assert.has_error(function() s:recv("many") end)
    assert.has_error(function() s:send({}) end)
    assert.has_error(function() s:sendto("x", nil) end)
    raises(errors.OSError, socket.socket, 12345)
    raises(errors.OSError, socket.socket, socket.AF_INET, 999)
    raises(errors.OSError, s.setsockopt, s, 9999, 9999, 1)
    raises(errors.OSError, s.getsockopt, s, socket.SOL_SOCKET, socket.SO_ERROR, 0)
    raises(errors.OSError, s.getpeername, s)
    raises(errors.OSError, s.listen, s)
    s:setblocking(false)
    raises(errors.OSError, s.recvfrom, s, 1 << 16)
    local a, b = socket.socketpair()
    a:send("small")
    assert.equal("small", b:recv(math.maxinteger))  -- a stream recv may be short
    a:close() b:close()
  end)

  it("recv(0) gives \"\" at once, even with nothing to read", function()
    -- CPython's sock_recv returns b'' for recvlen 0 without a syscall
    -- (the kernel would block, or say EAGAIN)
    local a, b = socket.socketpair()
    assert.equal("", b:recv(0))
    b:setblocking(false)
    assert.equal("", b:recv(0))
    raises(errors.OSError, b.recvfrom, b, 0)  -- EAGAIN: recvfrom has no shortcut
    b:settimeout(0.01)
    assert.equal("", b:recv(0))
    raises(errors.ValueError, b.recv, b, -1)
    a:close() b:close()
  end)

  it("getblocking and gettimeout still answer on a closed socket", function()
    -- as Python's: they read the mode, not the descriptor
    local s = socket.socket()
    s:settimeout(2.5)
    s:close()
    assert.equal(2.5, s:gettimeout())
    assert.is_true(s:getblocking())
    local t = socket.socket()
    t:setblocking(false)
    t:close()
    assert.equal(0, t:gettimeout())
    assert.is_false(t:getblocking())
    raises(errors.OSError, t.setblocking, t, true)
  end)

  it("has __close and __gc that close the descriptor", function()
    local fd
    do
      local a <close> = socket.socket()
      fd = a:fileno()
    end
    local s = socket.socket()
    assert.equal(fd, s:fileno())  -- the lowest free descriptor again
    s = nil
    collectgarbage()
    collectgarbage()
    local t <close> = socket.socket()
    assert.equal(fd, t:fileno())
  end)

  -- Closing such a socket closed the descriptor under libuv: a listening
  -- server's fd reused by the next socket tripped an assertion in libuv.
  it("socket(..., fileno) refuses a descriptor a transport or server holds",
     require("eddy.test").async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local sfd = srv.sockets[1]:fileno()
    raises(errors.RuntimeError, socket.socket, socket.AF_INET, socket.SOCK_STREAM, 0, sfd)
    local port = srv.sockets[1]:getsockname()[2]
    local tr = loop:create_connection(function() return {} end, "127.0.0.1", port)
    local fd = tr:get_extra_info("socket"):fileno()
    raises(errors.RuntimeError, socket.socket, nil, nil, nil, fd)
    tr:close()
    local a, b = socket.socketpair()
    local c <close> = socket.socket(nil, nil, nil, a:detach())  -- not a transport's
    b:close()
    eddy.sleep(0)
  end))
end)
