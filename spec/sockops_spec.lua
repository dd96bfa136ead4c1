-- The loop's raw socket methods (sock_recv, sock_sendall, ...).
local eddy = require "eddy"
local errors = eddy.errors
local socket = require "eddy.socket"
local async = require("eddy.test").async

local checks = require "support.checks"
local raises = checks.expect_error
local pair = checks.nonblocking_pair


local function listener(family, host)
  local srv = socket.socket(family or socket.AF_INET)
  srv:bind({host or "127.0.0.1", 0})
  srv:listen()
  srv:setblocking(false)
  return srv
end

describe("sock_* methods", function()
  it("sock_recv waits for data and sock_sendall sends it all", async(function(loop)
    local a, b = pair()
    local t = loop:create_task(function() return loop:sock_recv(b, 100) end)
    eddy.sleep(0.01)
    assert.is_false(t:done())
    loop:sock_sendall(a, "hello")
    assert.equal("hello", t:await())
    -- a big payload crosses a full socket buffer
    local big = string.rep("0123456789", 300000)
    local reader = loop:create_task(function()
      local parts, n = {}, 0
      while n < #big do
        local s = loop:sock_recv(b, 65536)
        parts[#parts + 1] = s
        n = n + #s
      end
      return table.concat(parts)
    end)
    assert.is_nil(loop:sock_sendall(a, big))
    assert.equal(big, reader:await())
    a:close()
    assert.equal("", loop:sock_recv(b, 10))
    b:close()
  end))

  it("TCP: sock_connect, sock_accept on 127.0.0.1 and ::1", async(function(loop)
    for _, fam in ipairs {{socket.AF_INET, "127.0.0.1"}, {socket.AF_INET6, "::1"}} do
      local srv = listener(fam[1], fam[2])
      local accepting = loop:create_task(function() return loop:sock_accept(srv) end)
      local c = socket.socket(fam[1])
      c:setblocking(false)
      loop:sock_connect(c, srv:getsockname())
      local conn, addr = accepting:await()
      assert.is_false(conn:getblocking())
      assert.equal(c:getsockname()[2], addr[2])
      loop:sock_sendall(conn, "over tcp")
      assert.equal("over tcp", loop:sock_recv(c, 100))
      conn:close() c:close() srv:close()
    end
  end))

  it("sock_accept's socket has the listener's family, type and proto, as sock:accept (test_sock_accept)",
     async(function(loop)
    -- Python's accept() builds socket(self.family, self.type, self.proto)
    local srv = listener()
    local c = socket.socket()
    c:connect(srv:getsockname())
    local conn, addr = loop:sock_accept(srv)
    assert.equal(0, conn:gettimeout())
    assert.same(c:getsockname(), addr)
    assert.same({srv.family, srv.type, srv.proto}, {conn.family, conn.type, conn.proto})
    conn:close() c:close() srv:close()
  end))

  it("sock_connect resolves names with loop:getaddrinfo, for the socket's own family and type "
     .. "(test_sock_connect_resolve_using_socket_params)", async(function(loop)
    if loop.getaddrinfo == nil then return end
    local srv = listener()
    local c = socket.socket()
    c:setblocking(false)
    loop:sock_connect(c, {"localhost", srv:getsockname()[2]})
    local conn = loop:sock_accept(srv)
    conn:close() c:close() srv:close()
    -- a datagram socket: a SOCK_DGRAM address, as its type asks
    local u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind({"127.0.0.1", 0})
    local d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d:setblocking(false)
    loop:sock_connect(d, {"localhost", u:getsockname()[2]})
    assert.same(u:getsockname(), d:getpeername())
    d:close() u:close()
  end))

  it("sock_connect to a closed port raises ConnectionRefusedError (test_sock_client_fail)", async(function(loop)
    local srv = listener()
    local addr = srv:getsockname()
    srv:close()
    local c = socket.socket()
    c:setblocking(false)
    local err = raises(errors.ConnectionRefusedError, loop.sock_connect, loop, c, addr)
    assert.equal("ECONNREFUSED", err.code)
    c:close()
  end))

  it("UDP: sock_sendto, sock_recvfrom", async(function(loop)
    local s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s:bind({"127.0.0.1", 0})
    s:setblocking(false)
    local c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c:setblocking(false)
    local t = loop:create_task(function() return loop:sock_recvfrom(s, 1024) end)
    eddy.sleep(0.01)
    assert.equal(4, loop:sock_sendto(c, "dgram", s:getsockname()) - 1)
    local data, addr = t:await()
    assert.equal("dgram", data)
    assert.equal(c:getsockname()[2], addr[2])
    s:close() c:close()
  end))

  it("sock_recv_into and sock_recvfrom_into fill an eddy.Buffer", async(function(loop)
    if eddy.Buffer == nil then return end
    local a, b = pair()
    local buf = eddy.Buffer(8)
    local t = loop:create_task(function() return loop:sock_recv_into(b, buf) end)
    eddy.sleep(0.01)
    a:send("0123456789")
    assert.equal(8, t:await())
    assert.equal("01234567", buf:tostring())
    local s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s:bind({"127.0.0.1", 0})
    s:setblocking(false)
    local c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c:sendto("abcdef", s:getsockname())
    local n, addr = loop:sock_recvfrom_into(s, buf, 3)
    assert.equal(3, n)
    assert.equal("abc", buf:tostring(1, 3))
    assert.equal(c:getsockname()[2], addr[2])
    raises(errors.ValueError, loop.sock_recvfrom_into, loop, s, buf, 9)
    a:close() b:close() s:close() c:close()
  end))

  it("sock_recv(0) and sock_recv_into an empty Buffer return at once", async(function(loop)
    -- asyncio calls sock.recv(0) / sock.recv_into(b""), which Python
    -- answers without waiting for data
    local a, b = pair()
    assert.equal("", eddy.wait_for(function() return loop:sock_recv(b, 0) end, 1))
    assert.equal(0, eddy.wait_for(function() return loop:sock_recv_into(b, eddy.Buffer(0)) end, 1))
    a:send("x")
    assert.equal("x", loop:sock_recv(b, 10))
    a:close() b:close()
  end))

  it("sock_connect hands host \"\" to getaddrinfo, as asyncio's _ensure_resolved", async(function(loop)
    local c = socket.socket()
    c:setblocking(false)
    local err = raises(errors.DNSError, loop.sock_connect, loop, c, {"", 9})
    assert.equal("EAI_NONAME", err.code)
    c:close()
  end))

  it("cancelling the awaiting task removes the watcher (test_prompt_cancellation)", async(function(loop)
    local a, b = pair()
    local t = loop:create_task(function() return loop:sock_recv(b, 10) end)
    eddy.sleep(0.01)
    t:cancel()
    assert.is_true(pcall(eddy.sleep, 0.01))
    assert.is_true(t:cancelled())
    assert.is_false(loop:remove_reader(b))  -- already gone
    a:send("later")
    assert.equal("later", loop:sock_recv(b, 10))
    a:close() b:close()
  end))

  it("sock:close() fails the sock_* calls waiting on it with OSError EBADF", async(function(loop)
    -- asyncio's selector loop leaves them waiting forever: epoll forgets the
    -- closed fd.  Each raises what the call on the closed socket raises.
    local a, b = pair()  -- a receives
    local c, d = pair()  -- c sends
    local srv = listener()
    local big = string.rep("x", 8 * 1024 * 1024)
    local waits = {
      loop:create_task(function() return loop:sock_recv(a, 10) end),
      loop:create_task(function() return loop:sock_sendall(c, big) end),
      loop:create_task(function() return loop:sock_accept(srv) end),
    }
    eddy.sleep(0.01)
    for _, t in ipairs(waits) do assert.is_false(t:done()) end
    a:close() c:close() srv:close()
    for _, t in ipairs(waits) do
      local ok, err = pcall(eddy.wait_for, t, 5)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.OSError), tostring(err))
      assert.equal("EBADF", err.code)
    end
    b:close() d:close()
  end))

  it("a cancelled sock_recv or sock_sendall leaves the socket usable (test_sock_client_racing)",
     async(function(loop)
    -- _basetest_sock_recv_racing: a cancelled recv takes nothing
    local a, b = pair()
    local t = loop:create_task(function() return loop:sock_recv(a, 1024) end)
    eddy.sleep(0)
    t:cancel()
    loop:create_task(function() loop:sock_sendall(b, "GET") end)
    assert.equal("GET", eddy.wait_for(function() return loop:sock_recv(a, 1024) end, 10))
    a:close() b:close()
    -- _basetest_sock_send_racing: a cancelled sendall on a full buffer
    -- sends nothing; the next one goes through
    local l = listener()
    local sock = socket.socket()
    sock:setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024)
    sock:setblocking(false)
    local ct = loop:create_task(function() return loop:sock_connect(sock, l:getsockname()) end)
    local server = eddy.wait_for(function() return loop:sock_accept(l) end, 10)
    eddy.wait_for(ct, 10)
    local size = 8192
    while size >= 4 do  -- fill the buffer until sending 4 bytes would block
      while pcall(sock.send, sock, string.rep(" ", size)) do end
      size = size // 2
    end
    t = loop:create_task(function() return loop:sock_sendall(sock, "hello") end)
    eddy.sleep(0)
    t:cancel()
    local recv_all = loop:create_task(function()
      local parts = {}
      while true do
        local buf = loop:sock_recv(server, 8192)
        if buf == "" then return table.concat(parts) end
        parts[#parts + 1] = (buf:gsub(" ", ""))
      end
    end)
    eddy.wait_for(function() return loop:sock_sendall(sock, "world") end, 10)
    sock:shutdown(socket.SHUT_WR)
    assert.equal("world", eddy.wait_for(recv_all, 10))
    server:close() sock:close() l:close()
  end))

  it("connects again after a cancelled sock_connect (test_sock_client_connect_racing)",
     async(function(loop)
    local l = socket.socket()
    l:bind({"127.0.0.1", 0})
    local addr = l:getsockname()
    local sock = socket.socket()
    sock:setblocking(false)
    local t = loop:create_task(function() return loop:sock_connect(sock, addr) end)
    eddy.sleep(0)
    t:cancel()
    l:listen(1)
    -- the first attempt may still be refused; as CPython, retry on that
    local connected = false
    for _ = 1, 128 do
      local ok, err = pcall(eddy.wait_for, function() return loop:sock_connect(sock, addr) end, 10)
      if ok then connected = true break end
      assert.is_true(errors.is(err, errors.ConnectionRefusedError), tostring(err))
    end
    assert.is_true(connected)
    sock:close() l:close()
  end))

  it("rejects blocking, closed and wrong sockets", async(function(loop)
    local a, b = socket.socketpair()
    local err = raises(errors.ValueError, loop.sock_recv, loop, a, 10)
    assert.matches("non%-blocking", tostring(err))
    raises(errors.ValueError, loop.sock_sendall, loop, a, "x")
    a:setblocking(false)
    local neg = raises(errors.ValueError, loop.sock_recv, loop, a, -1)
    assert.matches("negative buffersize in recv$", tostring(neg))
    neg = raises(errors.ValueError, loop.sock_recvfrom, loop, a, -1)
    assert.matches("negative buffersize in recvfrom$", tostring(neg))
    assert.has_error(function() loop:sock_recv(a, "x") end)
    assert.has_error(function() loop:sock_sendall(a, nil) end)
    assert.has_error(function() loop:sock_recv(3, 10) end)
    b:close()
    raises(errors.BrokenPipeError, loop.sock_sendall, loop, a, "x")
    a:close()
    local e2 = raises(errors.OSError, loop.sock_recv, loop, a, 10)
    assert.equal("EBADF", e2.code)
    local u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:setblocking(false)
    assert.has_error(function() loop:sock_sendto(u, "x", {"127.0.0.1"}) end)
    raises(errors.ValueError, loop.sock_sendto, loop, u, "x", {"127.0.0.1", 99999})
    u:close()
  end))

  it("raise RuntimeError from a plain callback", function()
    local loop = eddy.new_event_loop()
    local a, b = pair()
    local ok, err
    loop:call_soon(function()
      ok, err = pcall(loop.sock_recv, loop, a, 10)
      loop:stop()
    end)
    loop:run_forever()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.matches("sock_recv", tostring(err))
    loop:close()
    a:close() b:close()
  end)

  -- API.md §1, §3 and §11 to the letter: data ready makes no difference.
  it("raise RuntimeError from a plain callback even when they could complete, taking nothing", function()
    local loop = eddy.new_event_loop()
    local a, b = pair()
    assert.equal(5, a:send("ready"))
    local errs = {}
    loop:call_soon(function()
      errs.sock_recv = select(2, pcall(loop.sock_recv, loop, b, 10))
      errs.sock_sendall = select(2, pcall(loop.sock_sendall, loop, b, "x"))
      loop:stop()
    end)
    loop:run_forever()
    for _, name in ipairs {"sock_recv", "sock_sendall"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", tostring(errs[name]))
    end
    assert.equal("ready", loop:run_until_complete(function() return loop:sock_recv(b, 10) end))
    a:setblocking(true)
    b:close()
    assert.equal("", a:recv(10))  -- sock_sendall sent nothing
    loop:close()
    a:close()
  end)
end)

-- CPython's test_sock_lowlevel.py, against a small HTTP/1.0 server as
-- its test_utils.run_test_server: "GET /" answers "Test message",
-- "POST /loop" sends the request body back; each closes after answering.
describe("sock_* methods (test_sock_lowlevel)", function()
  local tmp = require "support.tmp"

  local function http_handler(reader, writer)
    local head = reader:readuntil("\r\n\r\n")
    local length = tonumber(head:match("Content%-Length: (%d+)"))
    local body = length and reader:readexactly(length) or "Test message"
    writer:write("HTTP/1.0 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n")
    writer:write(body)
    writer:close()
  end

  -- The server's address: {host, port} over TCP, a path over UNIX.
  local function http_server(family)
    if family == socket.AF_UNIX then
      local path = tmp.path(".sock")
      return eddy.start_unix_server(http_handler, path), path
    end
    local srv = eddy.start_server(http_handler, "127.0.0.1", 0)
    return srv, srv.sockets[1]:getsockname()
  end

  -- Read from sock with recv(sock) until EOF.
  local function read_all(recv, sock)
    local parts = {}
    while true do
      local data = recv(sock)
      if data == "" then return table.concat(parts) end
      parts[#parts + 1] = data
    end
  end

  -- _basetest_sock_client_ops and _basetest_sock_recv_into.
  local function client_ops(loop, family)
    local srv <close>, address = http_server(family)
    -- a blocking socket is a ValueError (asyncio checks in debug mode; eddy always)
    local sock = socket.socket(family)
    for _, call in ipairs {
      function() return loop:sock_connect(sock, address) end,
      function() return loop:sock_sendall(sock, "GET / HTTP/1.0\r\n\r\n") end,
      function() return loop:sock_recv(sock, 1024) end,
      function() return loop:sock_recv_into(sock, eddy.Buffer(0)) end,
      function() return loop:sock_accept(sock) end,
    } do
      raises(errors.ValueError, call)
    end
    sock:setblocking(false)
    loop:sock_connect(sock, address)
    loop:sock_sendall(sock, "GET / HTTP/1.0\r\n\r\n")
    local data = read_all(function(s) return loop:sock_recv(s, 1024) end, sock)
    assert.matches("^HTTP/1.0 200 OK\r\n.*\r\n\r\nTest message$", data)
    sock:close()
    -- the same with sock_recv_into
    sock = socket.socket(family)
    sock:setblocking(false)
    loop:sock_connect(sock, address)
    loop:sock_sendall(sock, "GET / HTTP/1.0\r\n\r\n")
    local buf = eddy.Buffer(1024)
    data = read_all(function(s) return buf:tostring(1, loop:sock_recv_into(s, buf)) end, sock)
    assert.matches("^HTTP/1.0 200 OK\r\n.*\r\n\r\nTest message$", data)
    sock:close()
  end

  it("connect, sendall, recv and recv_into over TCP (test_sock_client_ops)", async(function(loop)
    client_ops(loop, socket.AF_INET)
  end))

  it("connect, sendall, recv and recv_into over UNIX (test_unix_sock_client_ops)", async(function(loop)
    client_ops(loop, socket.AF_UNIX)
  end))

  it("a cancelled sock_recv_into takes nothing (test_sock_client_racing)", async(function(loop)
    local srv <close>, address = http_server(socket.AF_INET)
    local sock = socket.socket()
    sock:setblocking(false)
    loop:sock_connect(sock, address)
    local buf = eddy.Buffer(1024)
    local t = loop:create_task(function() return loop:sock_recv_into(sock, buf) end)
    eddy.sleep(0)
    t:cancel()
    loop:create_task(function() loop:sock_sendall(sock, "GET / HTTP/1.0\r\n\r\n") end)
    local n = eddy.wait_for(function() return loop:sock_recv_into(sock, buf) end, 10)
    assert.matches("^HTTP/1.0 200 OK", buf:tostring(1, n))
    sock:close()
  end))

  -- _basetest_huge_content(_recvinto): a 1 MB body sent by a task while
  -- the response is read with recv.
  local function huge_content(loop, recv)
    local srv <close>, address = http_server(socket.AF_INET)
    local sock = socket.socket()
    sock:setblocking(false)
    local size = 1000000
    local body = string.rep("0123456789", size // 10)
    loop:sock_connect(sock, address)
    loop:sock_sendall(sock, "POST /loop HTTP/1.0\r\nContent-Length: " .. size .. "\r\n\r\n")
    local sending = loop:create_task(function() return loop:sock_sendall(sock, body) end)
    local data = eddy.wait_for(function() return read_all(recv, sock) end, 20)
    assert.equal("HTTP/1.0 200 OK", data:sub(1, 15))
    local headers = data:find("\r\n\r\n", 1, true)
    assert.is_true(data:sub(headers + 4) == body, "the body came back changed")
    eddy.wait_for(sending, 10)
    sock:close()
  end

  it("sends and receives 1 MB with sock_sendall and sock_recv (test_huge_content)", async(function(loop)
    huge_content(loop, function(s) return loop:sock_recv(s, 1000000) end)
  end, 30))

  it("sends and receives 1 MB with sock_sendall and sock_recv_into (test_huge_content_recvinto)",
     async(function(loop)
    local buf = eddy.Buffer(1000000)
    huge_content(loop, function(s) return buf:tostring(1, loop:sock_recv_into(s, buf)) end)
  end, 30))

  -- A UDP echo server (test_utils.run_udp_echo_server) as a task; returns
  -- its address and the task (cancel it to stop).
  local function udp_echo_server(loop)
    local s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s:bind({"127.0.0.1", 0})
    s:setblocking(false)
    local task = loop:create_task(function()
      local ok, err = pcall(function()
        while true do
          local data, addr = loop:sock_recvfrom(s, 65536)
          loop:sock_sendto(s, data, addr)
        end
      end)
      s:close()
      if not errors.is(err, errors.CancelledError) then error(err, 0) end
      assert(not ok)
    end)
    return s:getsockname(), task
  end

  local function udp_client()
    local sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock:setblocking(false)
    return sock
  end

  it("sock_sendto and sock_recvfrom a 4 KiB datagram (test_recvfrom)", async(function(loop)
    local address, server = udp_echo_server(loop)
    local sock = udp_client()
    local data = string.rep("\1", 4096)
    loop:sock_sendto(sock, data, address)
    local got, from = eddy.wait_for(function() return loop:sock_recvfrom(sock, 4096) end, 5)
    assert.equal(data, got)
    assert.same(address, from)
    sock:close()
    server:cancel()
    eddy.sleep(0)
  end))

  it("sock_recvfrom_into a buffer, whole or up to nbytes (test_recvfrom_into)", async(function(loop)
    local address, server = udp_echo_server(loop)
    local sock = udp_client()
    local data = string.rep("\1", 4096)
    local buf = eddy.Buffer(4096)
    loop:sock_sendto(sock, data, address)
    local n, from = eddy.wait_for(function() return loop:sock_recvfrom_into(sock, buf) end, 5)
    assert.equal(4096, n)
    assert.equal(data, buf:tostring())
    assert.same(address, from)
    buf = eddy.Buffer(8192)
    loop:sock_sendto(sock, data, address)
    n, from = eddy.wait_for(function() return loop:sock_recvfrom_into(sock, buf, 4096) end, 5)
    assert.equal(4096, n)
    assert.equal(data, buf:tostring(1, 4096))
    assert.same(address, from)
    sock:close()
    server:cancel()
    eddy.sleep(0)
  end))

  it("a sock_accept cancelled by wait_for leaves the listener closable (test_cancel_sock_accept)",
     async(function(loop)
    local l = listener()
    local address = l:getsockname()
    raises(errors.TimeoutError, eddy.wait_for, function() return loop:sock_accept(l) end, 0.1)
    l:close()
    local client = socket.socket()
    client:setblocking(false)
    raises(errors.ConnectionRefusedError, loop.sock_connect, loop, client, address)
    client:close()
  end))

  it("create_connection takes a socket sock_connect connected (test_create_connection_sock)",
     async(function(loop)
    local srv <close>, address = http_server(socket.AF_INET)
    local sock
    for _, info in ipairs(loop:getaddrinfo(address[1], address[2], {type = socket.SOCK_STREAM})) do
      sock = socket.socket(info.family, info.type, info.proto)
      sock:setblocking(false)
      if pcall(loop.sock_connect, loop, sock, info.sockaddr) then break end
      sock:close()
      sock = nil
    end
    assert.is_not_nil(sock, "no address connected")
    local done, nbytes = loop:create_future(), 0
    local t, p = loop:create_connection(function()
      return {
        connection_made = function(_, tr) tr:write("GET / HTTP/1.0\r\nHost: example.com\r\n\r\n") end,
        data_received = function(_, data) nbytes = nbytes + #data end,
        connection_lost = function() done:set_result(true) end,
      }
    end, nil, nil, {sock = sock})
    assert.is_not_nil(p)
    eddy.wait_for(done, 5)
    assert.is_true(nbytes > 0)
    t:close()
  end))
end)
