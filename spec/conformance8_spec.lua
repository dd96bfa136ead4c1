-- A second conformance pass on the loop's network layer (API.md §3, §4,
-- §7, §10) against CPython 3.13's own tests, each behaviour checked with
-- the equivalent Python program on real sockets: test_sendfile.py,
-- test_sock_lowlevel.py, test_server.py, test_buffered_proto.py,
-- test_transports.py and test_base_events.py's option checks.  The cases
-- are the ones conformance2_spec and the area specs (sendfile, sockops,
-- server, tcp, udp) do not already make.
local eddy = require "eddy"
local errors = eddy.errors
local test = require "eddy.test"
local async = test.async
local checks = require "support.checks"
local net = require "support.net"
local tls = require "support.tls"
local socket = require "eddy.socket"
local raises = checks.raises

teardown(function() tls.cleanup() end)

local DIGITS = string.rep("0123456789", 10)

-- A temporary file holding 'data' (default DIGITS), open for reading.
local function data_file(data)
  local f = io.tmpfile()
  f:write(data or DIGITS)
  f:flush()
  return f
end

-- connection(loop, rec, server_opts, client_opts) -> guard, transport,
-- server recorder: net.pair's connection (guard.server its server).
-- Closing the guard aborts both ends and closes the server, then waits
-- for the server's end to be lost: a failing case fails at once instead
-- of waiting for a connection it left open, and a server end still
-- reading megabytes is not left behind.
local function connection(loop, rec, server_opts, client_opts)
  local srv, t, _, srv_rec = net.pair(loop, server_opts, rec, client_opts)
  local guard = setmetatable({server = srv}, {__close = function()
    t:abort()
    srv:close()
    srv:abort_clients()
    net.wait(srv_rec.lost_fut)
  end})
  return guard, t, srv_rec
end

-- A non-blocking UDP eddy.socket bound to 127.0.0.1, port 0.
local function udp_socket()
  local s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
  s:bind({"127.0.0.1", 0})
  s:setblocking(false)
  return s
end

-- A UDP address nothing listens on: a port just freed.
local function dead_udp_address()
  local s <close> = udp_socket()
  return s:getsockname()
end

-- Whether fn() is still waiting after 0.2 s (it times out).
local function still_waits(fn)
  local ok, err = pcall(eddy.wait_for, fn, 0.2)
  return not ok and errors.is(err, errors.TimeoutError)
end

describe("§3 loop:sendfile and sock_sendfile (test_sendfile.py; selector_events."
         .. "_sendfile_native, unix_events._sock_sendfile_native)", function()
  it("§3 sendfile with an offset past the end of the file sends nothing and leaves the "
     .. "position where it was, with or without fallback (asyncio seeks only when "
     .. "total_sent > 0)", async(function(loop)
    local conn <close>, t, srv_rec = connection(loop)
    local f <close> = data_file()
    f:seek("set", 7)
    assert.equal(0, loop:sendfile(t, f, 500))
    assert.equal(7, f:seek())
    assert.equal(0, loop:sendfile(t, f, 500, nil, {fallback = true}))
    assert.equal(7, f:seek())
    t:write("end")
    srv_rec:wait_bytes(3)
    assert.equal("end", srv_rec:data())
    t:close()
  end))

  it("§3 sendfile with a count past the end sends the rest of the file and leaves the "
     .. "position at its end (test_sendfile_partial, a count past the end)", async(function(loop)
    local conn <close>, t, srv_rec = connection(loop)
    local f <close> = data_file()
    f:seek("set", 3)
    assert.equal(10, loop:sendfile(t, f, 90, 1000))
    assert.equal(100, f:seek())
    srv_rec:wait_bytes(10)
    assert.equal(DIGITS:sub(91), srv_rec:data())
    t:close()
  end))

  it("§3 sendfile's offset counts from the start of the file, not from its position: "
     .. "a file at 50 with offset 0 sends its first bytes and ends at 5 "
     .. "(test_sendfile_partial)",
     async(function(loop)
    local conn <close>, t, srv_rec = connection(loop)
    local f <close> = data_file()
    f:seek("set", 50)
    assert.equal(5, loop:sendfile(t, f, 0, 5))
    assert.equal(5, f:seek())
    assert.equal("56789", f:read(5))  -- a Lua handle reads on from there
    srv_rec:wait_bytes(5)
    assert.equal("01234", srv_rec:data())
    t:close()
  end))

  it("§3 sock_sendfile with an offset past the end returns 0 and keeps the position; with "
     .. "offset and a count past the end it sends the tail and ends at the end of the file "
     .. "(test_sock_sendfile_with_offset_and_count)",
     async(function(loop)
    local a <close>, b = checks.nonblocking_pair()
    local _ <close> = b
    local f <close> = data_file()
    f:seek("set", 4)
    assert.equal(0, loop:sock_sendfile(a, f, 200))
    assert.equal(4, f:seek())
    assert.equal(5, loop:sock_sendfile(a, f, 95, 50))
    assert.equal(100, f:seek())
    assert.equal("56789", loop:sock_recv(b, 100))
  end))

  it("§3 a second sendfile on a transport while the first runs raises RuntimeError and "
     .. "sends nothing; the first sends its whole file, its bytes never split, and the "
     .. "protocol and reading come back (asyncio: one _empty_waiter per transport)",
     async(function(loop)
    local rec = net.recorder(loop)
    local conn <close>, t, srv_rec = connection(loop, rec)
    local size = 32 << 20  -- more than the kernel's buffers hold
    local big <close> = data_file(string.rep("x", size))
    local small <close> = data_file()
    small:seek("set", 0)
    srv_rec.transport:pause_reading()  -- the first stays midway
    local first = loop:create_task(function() return loop:sendfile(t, big) end)
    eddy.sleep(0.05)
    assert.is_false(first:done())
    raises(function() loop:sendfile(t, small) end,
           {errors.RuntimeError, "sendfile is in progress"})
    assert.equal(0, small:seek())
    srv_rec.transport:resume_reading()
    assert.equal(size, net.wait(first, 20))
    t:write("end")
    srv_rec:wait_bytes(size + 3, 20)
    assert.equal(string.rep("x", size) .. "end", srv_rec:data())
    assert.equal(rec, t:get_protocol())
    assert.is_true(t:is_reading())
    -- and the transport takes a sendfile again
    assert.equal(100, loop:sendfile(t, small))
    srv_rec:wait_bytes(size + 103, 20)
    t:close()
  end, 40))

  it("§3 sendfile of a socket at an offset: the fallback cannot seek it (asyncio's "
     .. "file.seek raises, an OSError); the transport gets its protocol and its reading "
     .. "back, and data flows both ways after", async(function(loop)
    local rec = net.recorder(loop)
    local conn <close>, t, srv_rec = connection(loop, rec)
    local a <close>, b = socket.socketpair()
    local _ <close> = b
    b:send("hello")
    local err = raises(function() loop:sendfile(t, a, 5, 10) end, errors.OSError)
    assert.equal("ESPIPE", err.code)
    assert.equal(rec, t:get_protocol())
    assert.is_true(t:is_reading())
    srv_rec.transport:write("ping")
    rec:wait_bytes(4)
    assert.equal("ping", rec:data())
    t:write("pong")
    srv_rec:wait_bytes(4)
    assert.equal("pong", srv_rec:data())
    t:close()
  end))

  it("§3/§7 while sendfile runs the transport does not read: the peer's data waits "
     .. "(is_reading() false) and comes once sendfile returns (asyncio's _sendfile_native "
     .. "pauses reading)", async(function(loop)
    local rec = net.recorder(loop)
    local conn <close>, t, srv_rec = connection(loop, rec)
    srv_rec.transport:pause_reading()  -- the transfer stays midway
    local size = 32 << 20
    local big <close> = data_file(string.rep("x", size))
    local task = loop:create_task(function() return loop:sendfile(t, big) end)
    eddy.sleep(0.05)
    srv_rec.transport:write("hello")
    eddy.sleep(0.1)
    assert.is_false(task:done())
    assert.equal("", rec:data())
    assert.is_false(t:is_reading())
    srv_rec.transport:resume_reading()
    assert.equal(size, net.wait(task, 20))
    rec:wait_bytes(5)
    assert.equal("hello", rec:data())
    assert.is_true(t:is_reading())
    t:close()
  end, 30))

  it("§3/§7 during a fallback sendfile (a socket as the file), pause_writing and "
     .. "resume_writing reach the protocol as the buffer passes high and drains (API.md §7; "
     .. "asyncio's _SendfileFallbackProtocol keeps them to itself: a documented difference)",
     async(function(loop)
    local rec = net.recorder(loop)
    local conn <close>, t, srv_rec = connection(loop, rec)
    srv_rec.transport:pause_reading()
    local a <close>, b = socket.socketpair()
    local _ <close> = b
    b:setblocking(false)
    local size = 16 << 20
    local feeder = loop:create_task(function() loop:sock_sendall(b, string.rep("y", size)) end)
    local task = loop:create_task(function() return loop:sendfile(t, a, 0, size) end)
    net.wait_until(function() return rec.events[#rec.events] == "pause" end)
    assert.same({"made", "pause"}, rec.events)
    assert.is_false(task:done())
    srv_rec.transport:resume_reading()
    assert.equal(size, net.wait(task, 30))
    net.wait(feeder)
    net.wait_until(function() return rec.events[#rec.events] == "resume" end)
    -- made, then pause and resume in pairs (more than one pair if the
    -- kernel's buffers fill again), ending resumed
    assert.is_true(#rec.events >= 3 and #rec.events % 2 == 1)
    for i = 2, #rec.events do
      assert.equal(i % 2 == 0 and "pause" or "resume", rec.events[i])
    end
    srv_rec:wait_bytes(size, 30)
    assert.is_true(srv_rec:data() == string.rep("y", size))
    t:close()
  end, 60))

  it("§3 a second sendfile on a TLS transport while the first one's fallback runs raises "
     .. "RuntimeError; the peer gets the first file whole, unsplit (asyncio's fallback would "
     .. "interleave the two)", async(function(loop)
    local rec = net.recorder(loop)
    local conn <close>, t, srv_rec = connection(loop, rec, {ssl = tls.server_context()},
      {ssl = tls.client_context(), server_hostname = "localhost"})
    srv_rec.transport:pause_reading()  -- the first stays midway
    local size = 16 << 20
    local big <close> = data_file(string.rep("x", size))
    local small <close> = data_file()
    local first = loop:create_task(function() return loop:sendfile(t, big) end)
    eddy.sleep(0.05)
    assert.is_false(first:done())
    raises(function() loop:sendfile(t, small) end,
           {errors.RuntimeError, "sendfile is in progress"})
    srv_rec.transport:resume_reading()
    assert.equal(size, net.wait(first, 30))
    t:write("end")
    srv_rec:wait_bytes(size + 3, 30)
    assert.is_true(srv_rec:data() == string.rep("x", size) .. "end")
    assert.equal(rec, t:get_protocol())
    t:close()
    net.wait(rec.lost_fut)
  end, 60))

  it("§3 a sendfile whose transport failed it before starting (a Lua transport's is_reading "
     .. "raising) does not leave the transport marked busy: the next sendfile runs",
     async(function(loop)
    local sent, fail = {}, true
    local transport = {
      is_closing = function() return false end,
      is_reading = function()
        if fail then fail = false; error("is_reading failed") end
        return false
      end,
      _sendfile_write = function(_, _, chunk) sent[#sent + 1] = chunk end,
    }
    local file <close> = data_file()
    raises(function() loop:sendfile(transport, file) end, "is_reading failed")
    assert.equal(#DIGITS, loop:sendfile(transport, file))
    assert.equal(DIGITS, table.concat(sent))
  end))

  it("§3 sendfile after write_eof raises RuntimeError \"Cannot call write() after "
     .. "write_eof()\" (asyncio: the native send fails with nothing sent, so the "
     .. "fallback's write raises)", async(function(loop)
    local conn <close>, t, srv_rec = connection(loop)
    local f <close> = data_file()
    f:seek("set", 3)
    t:write_eof()
    net.wait(srv_rec.eof_fut)
    raises(function() loop:sendfile(t, f, 0, 5) end,
           {errors.RuntimeError, "Cannot call write() after write_eof()"})
    assert.equal(3, f:seek())  -- nothing sent: left alone (docs/sockets.md)
    t:close()
  end))

  it("§3/§7 sendfile on a transport paused for writing waits for the buffer to drain "
     .. "(resume_writing comes first), then sends the file after the queued bytes "
     .. "(test_sendfile_pre_and_post_data; _make_empty_waiter)",
     async(function(loop)
    local rec = net.recorder(loop)
    local conn <close>, t, srv_rec = connection(loop, rec)
    srv_rec.transport:pause_reading()
    local chunk, written = string.rep("q", 1 << 20), 0
    repeat  -- until the kernel's buffers are full and pause_writing came
      t:write(chunk)
      written = written + #chunk
      eddy.sleep(0.001)
    until rec.events[#rec.events] == "pause" or written > 256 << 20
    assert.same({"made", "pause"}, rec.events)
    local queued = string.rep("q", written)
    local f <close> = data_file()
    local task = loop:create_task(function() return loop:sendfile(t, f) end)
    eddy.sleep(0.05)
    assert.is_false(task:done())
    srv_rec.transport:resume_reading()
    assert.equal(100, net.wait(task, 20))
    assert.same({"made", "pause", "resume"}, rec.events)
    srv_rec:wait_bytes(#queued + 100, 20)
    assert.is_true(srv_rec:data() == queued .. DIGITS)
    t:close()
  end, 30))
end)

describe("§3 sock_* on datagram sockets (test_sock_lowlevel.py test_recvfrom, "
         .. "test_recvfrom_into, test_sock_client_racing)", function()
  it("§3 sock_recvfrom_into with nbytes 0 fills the whole buffer (asyncio: 'if not "
     .. "nbytes: nbytes = len(buf)'); the rest of the datagram is dropped",
     async(function(loop)
    local a <close>, b = udp_socket(), udp_socket()
    local _ <close> = b
    loop:sock_sendto(b, "hello world", a:getsockname())
    loop:sock_sendto(b, "next", a:getsockname())
    local buf = eddy.Buffer(5)
    local n, addr = loop:sock_recvfrom_into(a, buf, 0)
    assert.equal(5, n)
    assert.equal("hello", buf:tostring())
    assert.same(b:getsockname(), addr)
    assert.equal("next", (loop:sock_recvfrom(a, 100)))
  end))

  it("§3 sock_recvfrom(sock, 0) takes a whole datagram, returning \"\" and its sender; the "
     .. "next call gets the next datagram (test_recvfrom)", async(function(loop)
    local a <close>, b = udp_socket(), udp_socket()
    local _ <close> = b
    loop:sock_sendto(b, "xyz", a:getsockname())
    loop:sock_sendto(b, "second", a:getsockname())
    local data, addr = loop:sock_recvfrom(a, 0)
    assert.equal("", data)
    assert.same(b:getsockname(), addr)
    assert.equal("second", (loop:sock_recvfrom(a, 100)))
  end))

  it("§3 sock_recvfrom with a bufsize below the datagram's size truncates it and drops "
     .. "the rest: the next call gets the next datagram whole (test_recvfrom)", async(function(loop)
    local a <close>, b = udp_socket(), udp_socket()
    local _ <close> = b
    loop:sock_sendto(b, "0123456789", a:getsockname())
    loop:sock_sendto(b, "next", a:getsockname())
    assert.equal("0123", (loop:sock_recvfrom(a, 4)))
    assert.equal("next", (loop:sock_recvfrom(a, 100)))
  end))

  it("§3 sock_sendto of \"\" returns 0 and sends an empty datagram, which sock_recvfrom "
     .. "gets as \"\" with the sender's address (test_recvfrom)", async(function(loop)
    local a <close>, b = udp_socket(), udp_socket()
    local _ <close> = b
    assert.equal(0, loop:sock_sendto(b, "", a:getsockname()))
    local data, addr = eddy.wait_for(function() return loop:sock_recvfrom(a, 10) end, 5)
    assert.equal("", data)
    assert.same(b:getsockname(), addr)
  end))

  it("§3 sock_sendto to a port nothing listens on, from an unconnected socket: each call "
     .. "returns the count and no error ever comes back (Linux reports ICMP errors to "
     .. "connected sockets only), and the socket goes on receiving "
     .. "(test_datagram_send_to_non_listening_address)", async(function(loop)
    local b <close> = udp_socket()
    local dead = dead_udp_address()
    assert.equal(1, loop:sock_sendto(b, "x", dead))
    assert.equal(1, loop:sock_sendto(b, "y", dead))
    assert.is_true(still_waits(function() return loop:sock_recvfrom(b, 10) end))
    -- and it still receives (test_datagram_send_to_non_listening_address)
    local a <close> = udp_socket()
    assert.equal(1, loop:sock_sendto(a, "d", b:getsockname()))
    assert.equal("d", (eddy.wait_for(function() return loop:sock_recvfrom(b, 10) end, 5)))
  end))

  it("§3 a UDP socket sock_connect-ed to a dead port: sock_sendall works, the next "
     .. "sock_recv raises ConnectionRefusedError (errno 111) once, and the one after waits "
     .. "(test_sock_client_ops over UDP; asyncio's _sock_recv)",
     async(function(loop)
    local b <close> = udp_socket()
    loop:sock_connect(b, dead_udp_address())
    loop:sock_sendall(b, "z")
    local err = raises(function()
      eddy.wait_for(function() return loop:sock_recv(b, 10) end, 5)
    end, errors.ConnectionRefusedError)
    assert.equal(111, err.errno)
    assert.is_true(still_waits(function() return loop:sock_recv(b, 10) end))
  end))

  it("§3 a sock_recvfrom cancelled while it waits takes no datagram: the next one gets "
     .. "what arrives after (test_sock_client_racing)", async(function(loop)
    local a <close> = udp_socket()
    local task = loop:create_task(function() return loop:sock_recvfrom(a, 100) end)
    eddy.sleep(0.01)
    task:cancel()
    raises(function() task:await() end, errors.CancelledError)
    loop:sock_sendto(a, "kept", a:getsockname())
    local data, addr = eddy.wait_for(function() return loop:sock_recvfrom(a, 100) end, 5)
    assert.equal("kept", data)
    assert.same(a:getsockname(), addr)
  end))

  it("§3 sock_sendto resolves a host name as Python's socket.sendto does; a name that "
     .. "does not resolve raises DNSError (asyncio: socket.gaierror; test_sendto_blocking)",
     async(function(loop)
    local a <close> = udp_socket()
    assert.equal(2, loop:sock_sendto(a, "hi", {"localhost", a:getsockname()[2]}))
    assert.equal("hi", (eddy.wait_for(function() return loop:sock_recvfrom(a, 10) end, 5)))
    raises(function() loop:sock_sendto(a, "hi", {"no.such.host.invalid", 9}) end,
           errors.DNSError)
  end))
end)

describe("§3 sock_* on stream sockets (test_sock_lowlevel.py)", function()
  it("§3 a sock_accept cancelled while it waits takes no connection: a client that "
     .. "connects after is the next sock_accept's, with the client's address "
     .. "(test_cancel_sock_accept)",
     async(function(loop)
    local l <close> = net.listening_socket()
    local task = loop:create_task(function() return loop:sock_accept(l) end)
    eddy.sleep(0.01)
    task:cancel()
    raises(function() task:await() end, errors.CancelledError)
    local c <close> = socket.socket()
    c:connect(l:getsockname())
    local conn, addr = eddy.wait_for(function() return loop:sock_accept(l) end, 5)
    local _ <close> = conn
    assert.same(c:getsockname(), addr)
    c:send("hi")
    assert.equal("hi", loop:sock_recv(conn, 10))
  end))

  it("§3 sock_recv of a socket whose peer reset the connection raises "
     .. "ConnectionResetError (test_sock_client_ops, a peer that resets)", async(function(loop)
    local l <close> = net.listening_socket()
    local s <close> = socket.socket()
    s:setblocking(false)
    loop:sock_connect(s, l:getsockname())
    local conn = loop:sock_accept(l)
    conn:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("=i4i4", 1, 0))
    conn:close()
    raises(function() eddy.wait_for(function() return loop:sock_recv(s, 10) end, 5) end,
           errors.ConnectionResetError)
  end))

  it("§3 on a listening socket, sock_recv raises OSError ENOTCONN (errno 107) and "
     .. "sock_sendall BrokenPipeError (errno 32), at once (the socket's own errors, as "
     .. "_sock_recv and _sock_sendall raise them)", async(function(loop)
    local l <close> = net.listening_socket()
    local err = raises(function() loop:sock_recv(l, 10) end, errors.OSError)
    assert.equal("ENOTCONN", err.code)
    assert.equal(107, err.errno)
    err = raises(function() loop:sock_sendall(l, "x") end, errors.BrokenPipeError)
    assert.equal(32, err.errno)
  end))

  it("§3 sock_connect and sock_sendto of an IPv6 address on an IPv4 socket resolve it for "
     .. "the socket's family, as asyncio's _ensure_resolved and socket.sendto: DNSError "
     .. "EAI_ADDRFAMILY, no connection", async(function(loop)
    local s <close> = socket.socket()
    s:setblocking(false)
    local err = raises(function() loop:sock_connect(s, {"::1", 9}) end, errors.DNSError)
    assert.equal("EAI_ADDRFAMILY", err.code)
    local u <close> = udp_socket()
    err = raises(function() loop:sock_sendto(u, "x", {"::1", 9}) end, errors.DNSError)
    assert.equal("EAI_ADDRFAMILY", err.code)
    raises(function() s:getpeername() end, errors.OSError)
  end))

  it("§3 a sock_sendall cancelled midway to a peer that does not read: what went stays "
     .. "sent, the rest is dropped, and the socket goes on (the peer reads a prefix of the "
     .. "data, then what the next sock_sendall sent; test_sock_client_racing)", async(function(loop)
    local a <close>, b = checks.nonblocking_pair()
    local _ <close> = b
    local data = {}
    for i = 1, 1 << 18 do data[i] = string.format("%07d\n", i) end
    data = table.concat(data)  -- 2 MiB, every prefix tells where it ends
    local task = loop:create_task(function() return loop:sock_sendall(a, data) end)
    eddy.sleep(0.05)
    assert.is_false(task:done())
    task:cancel()
    raises(function() task:await() end, errors.CancelledError)
    local reader = loop:create_task(function()
      local got = {}
      repeat
        local chunk = loop:sock_recv(b, 65536)
        got[#got + 1] = chunk
      until chunk == "" or table.concat(got):sub(-4) == "end!"
      return table.concat(got)
    end)
    loop:sock_sendall(a, "end!")
    local got = net.wait(reader, 10)
    local sent = #got - 4
    assert.is_true(sent > 0 and sent < #data)
    assert.is_true(got == data:sub(1, sent) .. "end!")
  end, 20))
end)

describe("§4 Server (test_server.py)", function()
  it("§4 start_serving twice is fine, the server serving once; is_serving is false "
     .. "before it with start_serving = false (test_create_server_start_serving; asyncio's "
     .. "'if self._serving: return')", async(function(loop)
    local srv <close>, port = net.echo_server(loop, nil, {start_serving = false})
    assert.is_false(srv:is_serving())
    srv:start_serving()
    srv:start_serving()
    assert.is_true(srv:is_serving())
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    t:write("once")
    rec:wait_bytes(4)
    assert.equal("once", rec:data())
    t:close()
  end))

  it("§4 abort_clients: the server's connection gets connection_lost(nil) (asyncio's "
     .. "_force_close(None)), the client an EOF then connection_lost(nil) (test_abort_clients)",
     async(function(loop)
    local conn <close>, t, srv_rec = connection(loop)
    local rec = t:get_protocol()
    conn.server:abort_clients()
    net.wait(srv_rec.lost_fut)
    assert.is_nil(srv_rec.err)
    net.wait(rec.lost_fut)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
  end))

  it("§4 wait_closed called before close() with a connection open waits through close() "
     .. "and returns when that connection closes (test_wait_closed_basic, asyncio 3.12.1+)",
     async(function(loop)
    local conn <close>, t, srv_rec = connection(loop)
    local waiter = loop:create_task(function() return conn.server:wait_closed() end)
    eddy.sleep(0.05)
    assert.is_false(waiter:done())
    conn.server:close()
    eddy.sleep(0.05)
    assert.is_false(waiter:done())
    assert.is_false(conn.server:is_serving())
    srv_rec.transport:close()
    net.wait(waiter)
    t:close()
  end))

  it("§4 close_clients and abort_clients on a closed server with no connection left do "
     .. "nothing and raise nothing; two wait_closed at once both return (test_close_clients)",
     async(function(loop)
    local srv = net.echo_server(loop)
    srv:close()
    srv:close_clients()
    srv:abort_clients()
    local w1 = loop:create_task(function() return srv:wait_closed() end)
    local w2 = loop:create_task(function() return srv:wait_closed() end)
    eddy.wait_for(function() return eddy.gather(w1, w2) end, 5)
    assert.is_true(w1:done() and w2:done())
  end))

  it("§4 sockets is a new array on each read: changing it changes nothing of the "
     .. "server (asyncio's property returns a tuple)", async(function(loop)
    local srv <close> = net.echo_server(loop)
    local a = srv.sockets
    a[1], a[2] = nil, "x"
    assert.equal(1, #srv.sockets)
    assert.is_not.equal(a, srv.sockets)
    assert.equal(socket.AF_INET, srv.sockets[1].family)
  end))

  it("§3/§4 create_server on several hosts fails whole: a name that does not resolve is "
     .. "DNSError, a port taken on one host EADDRINUSE, and no socket stays bound on the "
     .. "others (test_create_server_cant_bind; asyncio binds in a try that closes them all)",
     async(function(loop)
    local f = function() return {} end
    raises(function() loop:create_server(f, {"127.0.0.1", "no.such.host.invalid"}, 0) end,
           errors.DNSError)
    local busy <close> = net.listening_socket()
    local port = busy:getsockname()[2]
    local err = raises(function() loop:create_server(f, {"::1", "127.0.0.1"}, port) end,
                       errors.OSError)
    assert.equal("EADDRINUSE", err.code)
    local s <close> = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s:bind({"::1", port})  -- free: nothing of the failed server holds it
  end))

  it("§3/§4 create_server on several hosts with port 0 binds each on a port of its own, "
     .. "as asyncio's loop over the addresses (test_create_server_multiple_hosts_ipv4/6)",
     async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, {"::1", "127.0.0.1"}, 0)
    assert.equal(2, #srv.sockets)
    local by_host = {}
    for _, s in ipairs(srv.sockets) do
      local name = s:getsockname()
      by_host[name[1]] = name[2]
    end
    assert.is_true(by_host["::1"] > 0 and by_host["127.0.0.1"] > 0)
    for host, port in pairs(by_host) do
      local rec = net.recorder(loop)
      local t = loop:create_connection(function() return rec end, host, port)
      net.wait(rec.made_fut)
      t:close()
    end
  end))
end)

describe("§7 BufferedProtocol (test_buffered_proto.py; selector "
         .. "_read_ready__get_buffer)", function()
  it("§7 get_buffer's sizehint is -1 ('any size'), as asyncio's selector transport asks, "
     .. "on a TCP client and on a UNIX server's connection (test_buffered_proto)",
     async(function(loop)
    local hints, got = {}, {}
    local buf = eddy.Buffer(16)
    local function buffered()
      return {
        get_buffer = function(_, hint) hints[#hints + 1] = hint return buf end,
        buffer_updated = function(_, n) got[#got + 1] = buf:tostring(1, n) end,
      }
    end
    local conn <close>, t, srv_rec = connection(loop, buffered())
    srv_rec.transport:write("abc")
    net.wait_until(function() return table.concat(got) == "abc" end)
    t:close()
    local path = net.tempfile("")
    os.remove(path)
    local usrv <close> = loop:create_unix_server(buffered, path)
    local rec = net.recorder(loop)
    local ut = loop:create_unix_connection(function() return rec end, path)
    ut:write("def")
    net.wait_until(function() return table.concat(got) == "abcdef" end)
    assert.is_true(#hints >= 2)
    for _, h in ipairs(hints) do assert.equal(-1, h) end
    ut:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 pause_reading inside buffer_updated: no more buffer_updated until resume_reading, "
     .. "then the rest in buffer-sized pieces (test_buffered_proto; _read_ready__get_buffer)",
     async(function(loop)
    local buf, sizes, got, t = eddy.Buffer(4), {}, {}, nil
    local proto = {
      get_buffer = function() return buf end,
      buffer_updated = function(_, n)
        sizes[#sizes + 1] = n
        got[#got + 1] = buf:tostring(1, n)
        if #sizes == 1 then t:pause_reading() end
      end,
    }
    local conn <close>, client, srv_rec = connection(loop, proto)
    t = client
    srv_rec.transport:write("0123456789abcdef")
    net.wait_until(function() return #sizes > 0 end)
    eddy.sleep(0.1)
    assert.same({4}, sizes)
    assert.is_false(t:is_reading())
    t:resume_reading()
    net.wait_until(function() return #table.concat(got) == 16 end)
    assert.same({4, 4, 4, 4}, sizes)
    assert.equal("0123456789abcdef", table.concat(got))
    t:close()
  end))

  it("§7 a buffered protocol whose eof_received returns true keeps the write side open: "
     .. "it writes after the peer's EOF, and the peer gets it (test_buffered_proto; "
     .. "_read_ready__on_eof)", async(function(loop)
    local buf = eddy.Buffer(8)
    local events = {}
    local proto = {
      get_buffer = function() return buf end,
      buffer_updated = function(_, n) events[#events + 1] = buf:tostring(1, n) end,
      eof_received = function() events[#events + 1] = "eof" return true end,
      connection_lost = function() events[#events + 1] = "lost" end,
    }
    local conn <close>, t, srv_rec = connection(loop, proto)
    srv_rec.transport:write("bye")
    srv_rec.transport:write_eof()
    net.wait_until(function() return events[#events] == "eof" end)
    assert.same({"bye", "eof"}, events)
    assert.is_false(t:is_closing())
    t:write("still here")
    srv_rec:wait_bytes(10)
    assert.equal("still here", srv_rec:data())
    t:close()
    net.wait_until(function() return events[#events] == "lost" end)
  end))
end)

describe("§7 datagram transports' flow-control settings (test_transports.py; "
         .. "_FlowControlMixin under _SelectorDatagramTransport)", function()
  it("§7 a datagram endpoint's limits are 16 KiB and 64 KiB; set_write_buffer_limits(100) "
     .. "gives low 25; high below low is a ValueError (test_flowcontrol_mixin_set_write_limits)",
     async(function(loop)
    local t = loop:create_datagram_endpoint(function() return {} end, {"127.0.0.1", 0})
    assert.same({16384, 65536}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits(100)
    assert.same({25, 100}, {t:get_write_buffer_limits()})
    raises(function() t:set_write_buffer_limits(1, 2) end,
           {errors.ValueError, "high (1) must be >= low (2) must be >= 0"})
    assert.same({25, 100}, {t:get_write_buffer_limits()})
    t:close()
  end))

  it("§7 a closed datagram endpoint: is_reading() false, get_write_buffer_size() 0, and "
     .. "pause_reading/resume_reading do nothing (_SelectorTransport.is_reading: not closing)",
     async(function(loop)
    local rec = net.recorder(loop)
    local t = loop:create_datagram_endpoint(function() return rec end, {"127.0.0.1", 0})
    assert.is_true(t:is_reading())
    t:close()
    assert.is_false(t:is_reading())
    t:pause_reading()
    t:resume_reading()
    assert.is_false(t:is_reading())
    assert.equal(0, t:get_write_buffer_size())
    net.wait(rec.lost_fut)
  end))
end)

describe("§3 create_connection, create_server and create_datagram_endpoint option "
         .. "checks (test_base_events.py)", function()
  local f = function() return {} end

  it("§3 create_datagram_endpoint with an IPv4 local_addr and an IPv6 remote_addr raises "
     .. "ValueError \"can not get address information\" (no family has both; "
     .. "test_create_datagram_endpoint_no_matching_family)",
     async(function(loop)
    raises(function() loop:create_datagram_endpoint(f, {"127.0.0.1", 0}, {"::1", 9}) end,
           {errors.ValueError, "can not get address information"})
  end))

  it("§3 family = AF_INET6 with an IPv4 literal host raises DNSError EAI_ADDRFAMILY "
     .. "(gaierror -9) in create_connection, create_server and create_datagram_endpoint "
     .. "(asyncio's _ensure_resolved; test_create_server_ipv6)",
     async(function(loop)
    local o = {family = socket.AF_INET6}
    for _, call in ipairs {
      function() return loop:create_connection(f, "127.0.0.1", 9, o) end,
      function() return loop:create_server(f, "127.0.0.1", 0, o) end,
      function() return loop:create_datagram_endpoint(f, {"127.0.0.1", 0}, nil, o) end,
      function() return loop:create_server(f, "::1", 0, {family = socket.AF_INET}) end,
    } do
      local err = raises(call, errors.DNSError)
      assert.equal("EAI_ADDRFAMILY", err.code)
    end
  end))

  it("§3 flags = AI_NUMERICHOST with a host name raises DNSError EAI_NONAME in "
     .. "create_connection and create_server (the flags go to getaddrinfo; "
     .. "test_create_connection_no_getaddrinfo)",
     async(function(loop)
    local o = {flags = socket.AI_NUMERICHOST}
    for _, call in ipairs {
      function() return loop:create_connection(f, "localhost", 9, o) end,
      function() return loop:create_server(f, "localhost", 0, o) end,
    } do
      local err = raises(call, errors.DNSError)
      assert.equal("EAI_NONAME", err.code)
    end
  end))

  it("§3 create_connection with proto = IPPROTO_UDP: a host name fails in getaddrinfo "
     .. "(EAI_SOCKTYPE), a numeric host connects over TCP (asyncio's _ipaddr_info sets the "
     .. "stream's proto)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local o = {proto = socket.IPPROTO_UDP}
    local err = raises(function() loop:create_connection(f, "localhost", port, o) end,
                       errors.DNSError)
    assert.equal("EAI_SOCKTYPE", err.code)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port, o)
    assert.equal(socket.IPPROTO_TCP, t:get_extra_info("socket").proto)
    t:write("tcp")
    rec:wait_bytes(3)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§3 with sock, create_connection ignores local_addr and create_server ignores "
     .. "reuse_port and reuse_address, as asyncio: the socket is used as it is "
     .. "(test_create_connection_sock, test_create_server_sock)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local s = socket.socket()
    s:bind({"127.0.0.1", 0})
    s:connect({"127.0.0.1", port})
    local before = s:getsockname()
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, nil, nil,
                                     {sock = s, local_addr = {"127.0.0.1", 1}})
    assert.same(before, t:get_extra_info("sockname"))
    t:close()
    net.wait(rec.lost_fut)
    local l = socket.socket()
    l:bind({"127.0.0.1", 0})
    local srv2 <close> = loop:create_server(f, nil, nil,
                                            {sock = l, reuse_port = true, reuse_address = true})
    local view = srv2.sockets[1]
    assert.equal(0, view:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
    assert.equal(0, view:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
  end))

  it("§3 a local_addr that does not resolve raises DNSError EAI_NONAME before any "
     .. "connection, in create_connection and create_datagram_endpoint "
     .. "(test_create_connection_no_local_addr, test_create_datagram_endpoint_addr_error)",
     async(function(loop)
    local bad = {"no.such.host.invalid", 0}
    for _, call in ipairs {
      function() return loop:create_connection(f, "127.0.0.1", 9, {local_addr = bad}) end,
      function() return loop:create_datagram_endpoint(f, bad) end,
    } do
      local err = raises(call, errors.DNSError)
      assert.equal("EAI_NONAME", err.code)
    end
  end))

  it("§3 create_connection with a host and no port tries port 0: "
     .. "ConnectionRefusedError naming ('127.0.0.1', 0); with neither, ValueError "
     .. "(test_create_connection_no_host_port_sock)",
     async(function(loop)
    raises(function() loop:create_connection(f, "127.0.0.1") end,
           {errors.ConnectionRefusedError, "('127.0.0.1', 0)"})
    raises(function() loop:create_connection(f) end,
           {errors.ValueError, "host and port was not specified and no sock specified"})
  end))

  it("§3 create_datagram_endpoint with a remote_addr only: the socket is connected, its "
     .. "sockname the loopback address the kernel picked, its peername remote_addr "
     .. "(test_create_datagram_endpoint_connect_err's success path)",
     async(function(loop)
    local peer <close> = udp_socket()
    local rec = net.recorder(loop)
    local t = loop:create_datagram_endpoint(function() return rec end, nil, peer:getsockname())
    assert.equal("127.0.0.1", t:get_extra_info("sockname")[1])
    assert.is_true(t:get_extra_info("sockname")[2] > 0)
    assert.same(peer:getsockname(), t:get_extra_info("peername"))
    t:sendto("to the peer")
    local got = eddy.wait_for(function() return loop:sock_recvfrom(peer, 100) end, 5)
    assert.equal("to the peer", got)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§3 happy_eyeballs_delay with a single address changes nothing: the one error is "
     .. "raised as itself, not grouped; all_errors groups it (test_create_connection_connect_err, "
     .. "asyncio's 'if len(exceptions) == 1')", async(function(loop)
    local l <close> = net.listening_socket()
    local port = l:getsockname()[2]
    l:close()
    raises(function()
      loop:create_connection(f, "127.0.0.1", port, {happy_eyeballs_delay = 0.1})
    end, {errors.ConnectionRefusedError, "Connect call failed ('127.0.0.1', " .. port .. ")"})
    local err = raises(function()
      loop:create_connection(f, "127.0.0.1", port, {happy_eyeballs_delay = 0.1,
                                                    all_errors = true})
    end, errors.ExceptionGroup)
    assert.equal(1, #err.exceptions)
    assert.is_true(errors.is(err.exceptions[1], errors.ConnectionRefusedError))
  end))
end)

describe("§3 create_connection over several addresses (test_base_events "
         .. "test_create_connection_multiple, test_create_connection_multiple_errors; "
         .. "asyncio's _interleave_addrinfos and staggered_race), with getaddrinfo replaced "
         .. "on the loop as asyncio's tests mock it", function()
  local f = function() return {} end

  -- addresses(loop, v6, v4) -> infos, names: getaddrinfo on 'loop' now
  -- returns 'v6' IPv6 then 'v4' IPv4 entries, each on a port nothing
  -- listens on; names[port] is "a6", "b6", ... "a4", "b4", ...
  local function addresses(loop, v6, v4)
    local infos, names = {}, {}
    for _, fam in ipairs {{socket.AF_INET6, "::1", v6, "6"}, {socket.AF_INET, "127.0.0.1", v4, "4"}} do
      for i = 1, fam[3] do
        local s <close> = socket.socket(fam[1])
        s:bind({fam[2], 0})
        local port = s:getsockname()[2]
        names[port] = string.char(96 + i) .. fam[4]
        infos[#infos + 1] = {family = fam[1], type = socket.SOCK_STREAM, proto = 6,
                             canonname = "", sockaddr = {fam[2], port}}
      end
    end
    loop.getaddrinfo = function() return infos end
    return infos, names
  end

  -- The attempts' order, from an all_errors group: "a6 a4 b6".
  local function order(group, names)
    local out = {}
    for i, e in ipairs(group.exceptions) do
      out[i] = names[tonumber(tostring(e):match("Connect call failed %('[^']+', (%d+)"))]
    end
    return table.concat(out, " ")
  end

  it("§3 the attempts' order: getaddrinfo's without happy eyeballs; families alternating "
     .. "with interleave = 1 or happy_eyeballs_delay alone; the first family twice first with "
     .. "interleave = 2; getaddrinfo's again with interleave = 0", async(function(loop)
    local _, names = addresses(loop, 3, 2)
    for _, case in ipairs {
      {{}, "a6 b6 c6 a4 b4"},
      {{interleave = 1}, "a6 a4 b6 b4 c6"},
      {{interleave = 2}, "a6 b6 a4 c6 b4"},
      {{happy_eyeballs_delay = 0.05}, "a6 a4 b6 b4 c6"},
      {{happy_eyeballs_delay = 0.05, interleave = 2}, "a6 b6 a4 c6 b4"},
      {{happy_eyeballs_delay = 0.05, interleave = 0}, "a6 b6 c6 a4 b4"},
    } do
      case[1].all_errors = true
      local group = raises(function() loop:create_connection(f, "dual.test", 1, case[1]) end,
                           errors.ExceptionGroup)
      assert.equal(case[2], order(group, names))
    end
  end))

  it("§3 every address refused, all_errors off: a plain OSError \"Multiple exceptions: "
     .. "...\" naming each, no errno and no ConnectionRefusedError (asyncio raises one only "
     .. "when all the messages are the same); IPv6 addresses show as Python's 4-tuple",
     async(function(loop)
    local infos = addresses(loop, 1, 1)
    local err = raises(function() loop:create_connection(f, "dual.test", 1) end,
                       {errors.OSError, "Multiple exceptions: "})
    assert.is_false(errors.is(err, errors.ConnectionRefusedError))
    assert.is_nil(err.errno)
    local text = tostring(err)
    assert.truthy(text:find("Connect call failed ('::1', " .. infos[1].sockaddr[2] .. ", 0, 0)",
                            1, true))
    assert.truthy(text:find("Connect call failed ('127.0.0.1', " .. infos[2].sockaddr[2] .. ")",
                            1, true))
  end))

  it("§3 with happy_eyeballs_delay, a refused ::1 then a listening 127.0.0.1: the "
     .. "connection is to 127.0.0.1, and nothing is reported", async(function(loop)
    local infos = addresses(loop, 1, 0)
    local srv <close>, port = net.echo_server(loop)
    infos[2] = {family = socket.AF_INET, type = socket.SOCK_STREAM, proto = 6, canonname = "",
                sockaddr = {"127.0.0.1", port}}
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "dual.test", 1,
                                     {happy_eyeballs_delay = 0.05})
    assert.same({"127.0.0.1", port}, t:get_extra_info("peername"))
    t:write("echo")
    rec:wait_bytes(4)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§3/§10 messages show an IPv6 address as Python's 4-tuple: sock_connect, "
     .. "create_connection (\"Connect call failed ('::1', port, 0, 0)\") and a bind in "
     .. "use (\"error while attempting to bind on address ('::1', port, 0, 0)\")",
     async(function(loop)
    local l <close> = socket.socket(socket.AF_INET6)
    l:bind({"::1", 0})
    l:listen()
    local busy = l:getsockname()[2]
    local s = socket.socket(socket.AF_INET6)
    s:bind({"::1", 0})
    local dead = s:getsockname()[2]
    s:close()
    local c <close> = socket.socket(socket.AF_INET6)
    c:setblocking(false)
    local refused = "Connect call failed ('::1', " .. dead .. ", 0, 0)"
    raises(function() loop:sock_connect(c, {"::1", dead}) end,
           {errors.ConnectionRefusedError, refused})
    raises(function() loop:create_connection(f, "::1", dead) end,
           {errors.ConnectionRefusedError, refused})
    local in_use = "error while attempting to bind on address ('::1', " .. busy .. ", 0, 0)"
    raises(function() loop:create_server(f, "::1", busy) end, {errors.OSError, in_use})
    raises(function() loop:create_connection(f, "::1", dead, {local_addr = {"::1", busy}}) end,
           {errors.OSError, in_use})
  end))
end)
