-- Conformance of the loop's network, process and signal layer (API.md §3,
-- §4, §7, and §10's eddy.socket where the sock_* methods need it) with
-- asyncio as CPython 3.13's own test suite and sources pin it down
-- (Lib/test/test_asyncio, the module named in each case): behaviours the
-- area specs (tcp_spec, server_spec, sockops_spec, udp_spec, pipes_spec,
-- subprocess_spec, signal_spec, tls_spec, ...) do not already check.
local eddy = require "eddy"
local errors = eddy.errors
local test = require "eddy.test"
local async = test.async
local checks = require "support.checks"
local net = require "support.net"
local socket = require "eddy.socket"
local subprocess = eddy.subprocess
local raises, turns = checks.raises, checks.turns

-- stalled_client(loop, opts) -> listener, transport, recorder: a client
-- connected to a listener that never accepts, so nothing reads what it
-- sends; its write buffer grows once the kernel's buffers are full.
local function stalled_client(loop, opts)
  local l = socket.socket()
  l:bind({"127.0.0.1", 0})
  l:listen(1)
  local rec = net.recorder(loop, opts)
  local t = loop:create_connection(function() return rec end, "127.0.0.1", l:getsockname()[2])
  return l, t, rec
end

-- fill(t): with the limits out of the way, write until t buffers at least
-- 'least' bytes (default 512) that the kernel did not take.
local function fill(t, least)
  t:set_write_buffer_limits(math.maxinteger)
  local chunk = string.rep("w", 1 << 20)
  while t:get_write_buffer_size() < (least or 512) do
    t:write(chunk)
    eddy.sleep(0.001)
  end
  return t:get_write_buffer_size()
end

describe("§7 stream transports: flow control (asyncio test_selector_events, "
         .. "FlowControlMixin)", function()
  it("§7 pause_writing comes once the buffer goes past high (size > high), not when it reaches "
     .. "it (asyncio _maybe_pause_protocol: `if size <= high: return`)", async(function(loop)
    local l <close>, t, rec = stalled_client(loop)
    local size = fill(t)
    t:set_write_buffer_limits(size + 10, 0)
    t:write("0123456789")
    assert.equal(size + 10, t:get_write_buffer_size())
    assert.same({"made"}, rec.events)
    t:write("!")
    assert.same({"made", "pause"}, rec.events)
    t:abort()
    net.wait(rec.lost_fut)
  end))

  it("§7 pause_writing is called once per pause: more writes past high call it no more "
     .. "(asyncio's _protocol_paused flag)", async(function(loop)
    local l <close>, t, rec = stalled_client(loop)
    local size = fill(t)
    t:set_write_buffer_limits(size, 0)
    t:write("a")
    t:write("b")
    t:writelines({"c", "d"})
    t:set_write_buffer_limits(1, 0)
    assert.same({"made", "pause"}, rec.events)
    t:abort()
    net.wait(rec.lost_fut)
  end))

  it("§7 raising the high-water mark over a paused transport's buffer does not resume it: "
     .. "only a drain to low calls resume_writing (set_write_buffer_limits only pauses)",
     async(function(loop)
    local srv <close>, t, rec, srv_rec = net.pair(loop)
    srv_rec.transport:pause_reading()
    local size = fill(t)
    t:set_write_buffer_limits(size - 1, 0)
    assert.same({"made", "pause"}, rec.events)
    t:set_write_buffer_limits(math.maxinteger)
    eddy.sleep(0.05)
    assert.same({"made", "pause"}, rec.events)
    srv_rec.transport:resume_reading()
    net.wait_until(function() return rec.events[#rec.events] == "resume" end)
    assert.equal(0, t:get_write_buffer_size())
    t:close()
    net.wait(rec.lost_fut)
  end, 20))

  for _, case in ipairs {{"close", {"made", "pause", "resume", "lost"}},
                         {"write_eof", {"made", "pause", "resume", "lost"}},
                         {"abort", {"made", "pause", "lost"}}} do
    it("§7 " .. case[1] .. "() of a transport paused for writing: "
       .. (case[1] == "abort" and "the buffer is dropped and resume_writing never comes"
           or "resume_writing comes as the buffer drains, before connection_lost")
       .. " (asyncio: _write_ready calls _maybe_resume_protocol while closing; _force_close "
       .. "does not)", async(function(loop)
      local srv <close>, t, rec, srv_rec = net.pair(loop)
      srv_rec.transport:pause_reading()
      fill(t, 1000)
      t:set_write_buffer_limits(1, 0)
      t[case[1]](t)
      srv_rec.transport:resume_reading()
      if case[1] == "write_eof" then
        net.wait(srv_rec.eof_fut, 20)
        t:close()
      end
      net.wait(rec.lost_fut, 20)
      assert.same(case[2], rec.events)
      srv_rec.transport:close()
    end, 30))
  end

  it("§7/§3 an error in pause_writing or resume_writing goes to the exception handler with the "
     .. "transport and protocol, and the transport carries on (asyncio 'protocol.pause_writing() "
     .. "failed')", function()
    local reports = test.run_collecting(function(loop)
      local srv <close>, t, rec, srv_rec = net.pair(loop)
      function rec.pause_writing() error("no pause", 0) end
      function rec.resume_writing() error("no resume", 0) end
      srv_rec.transport:pause_reading()
      local size = fill(t)
      t:set_write_buffer_limits(size - 1, 0)
      assert.is_false(t:is_closing())
      srv_rec.transport:resume_reading()
      srv_rec:wait_bytes(size, 20)
      net.wait_until(function() return t:get_write_buffer_size() == 0 end)
      eddy.sleep(0.01)
      assert.is_false(t:is_closing())
      t:write("after")
      srv_rec:wait_bytes(size + 5)
      t:close()
      net.wait(rec.lost_fut)
      assert.is_nil(rec.err)
      return t, rec
    end, 20)
    assert.equal(2, #reports)
    assert.equal("protocol.pause_writing() failed", reports[1].message)
    assert.equal("no pause", tostring(reports[1].exception):match("^[^\n]*"))
    assert.equal("protocol.resume_writing() failed", reports[2].message)
    assert.equal("no resume", tostring(reports[2].exception):match("^[^\n]*"))
    assert.is_not_nil(reports[1].transport)
    assert.is_not_nil(reports[1].protocol)
  end)
end)

describe("§7 stream transports: closing (asyncio test_selector_events)", function()
  it("§7 abort() after close() with data still buffered drops it: the buffer reads 0 and "
     .. "connection_lost(nil) comes at once (asyncio _force_close clears the buffer)",
     async(function(loop)
    local l <close>, t, rec = stalled_client(loop)
    fill(t)
    t:close()
    assert.is_true(t:is_closing())
    eddy.sleep(0.05)
    assert.is_false(rec.lost_fut:done())  -- close() waits for the buffer
    t:abort()
    assert.equal(0, t:get_write_buffer_size())
    turns(2)
    assert.is_true(rec.lost_fut:done())
    assert.is_nil(rec.err)
    assert.same({"made", "lost"}, rec.events)
  end))

  it("§7 eof_received true, then write_eof: both halves shut, yet the transport stays open "
     .. "(not closing, no connection_lost) until close() (asyncio test_events "
     .. "test_create_connection_half_close)", async(function(loop)
    local srv <close>, t, rec, srv_rec = net.pair(loop)
    rec.opts.eof_keep = true
    srv_rec.transport:write_eof()
    net.wait(rec.eof_fut)
    t:write("last")
    t:write_eof()
    net.wait(srv_rec.lost_fut)  -- the server side's eof_received closed it
    assert.equal("last", srv_rec:data())
    eddy.sleep(0.05)
    assert.is_false(t:is_closing())
    assert.is_false(rec.lost_fut:done())
    t:close()
    net.wait(rec.lost_fut)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
  end))

  it("§7 write(\"\"), writelines({}) and writelines({\"\"}) after write_eof() raise RuntimeError "
     .. "too: the check comes before the empty-data shortcut (asyncio "
     .. "_SelectorSocketTransport.write)", async(function(loop)
    local srv <close>, t, rec = net.pair(loop)
    t:write_eof()
    raises(function() t:write("") end, {errors.RuntimeError, "Cannot call write() after write_eof()"})
    for _, list in ipairs {{}, {""}} do
      raises(function() t:writelines(list) end,
             {errors.RuntimeError, "Cannot call writelines() after write_eof()"})
    end
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 write_eof a second time, or after close(), does nothing and raises nothing "
     .. "(asyncio: `if self._closing or self._eof: return`)", async(function(loop)
    local srv <close>, t, rec, srv_rec = net.pair(loop)
    t:write_eof()
    t:write_eof()
    net.wait(srv_rec.eof_fut)
    t:close()
    t:write_eof()
    net.wait(rec.lost_fut)
    t:write_eof()
  end))

  it("§7 a server's accepted connection is a full transport: TCP_NODELAY set as on the client "
     .. "side, sockname and peername the client's mirrored (asyncio _set_nodelay)",
     async(function(loop)
    local srv <close>, t, rec, srv_rec = net.pair(loop)
    local st = srv_rec.transport
    local sock = st:get_extra_info("socket")
    assert.equal(1, sock:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    assert.same(t:get_extra_info("sockname"), st:get_extra_info("peername"))
    assert.same(t:get_extra_info("peername"), st:get_extra_info("sockname"))
    t:close()
    net.wait(srv_rec.lost_fut)
  end))
end)

describe("§4 Server (asyncio test_server, base_events.Server)", function()
  it("§4 after close(), sockets is an empty array and is_serving() false; close() again does "
     .. "nothing (asyncio Server.sockets returns () once closed)", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
    assert.equal(1, #srv.sockets)
    assert.is_true(srv:is_serving())
    srv:close()
    assert.same({}, srv.sockets)
    assert.is_false(srv:is_serving())
    srv:close()
    srv:wait_closed()
  end))

  it("§4 a listening socket taken from server.sockets before close() reads fileno() -1 after it "
     .. "and no longer answers, though the system reuses the number (asyncio closes the socket "
     .. "objects it handed out)", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local sock = srv.sockets[1]
    local fd = sock:fileno()
    assert.is_true(fd >= 0)
    srv:close()
    assert.equal(-1, sock:fileno())
    raises(function() return sock:getsockname() end, errors.OSError)
    srv:wait_closed()
    -- a new socket gets the number; the old view leaves it alone
    local others = {}
    repeat
      others[#others + 1] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    until others[#others]:fileno() == fd or #others == 100
    assert.equal(fd, others[#others]:fileno())
    assert.equal(-1, sock:fileno())
    raises(function() return sock:getsockname() end, errors.OSError)
    for _, o in ipairs(others) do o:close() end
  end))

  it("§4 loop:close() closes a server's listening sockets: a socket taken from server.sockets "
     .. "reads fileno() -1 after it", function()
    local loop = eddy.new_event_loop()
    local srv = loop:run_until_complete(function()
      return loop:create_server(function() return {} end, "127.0.0.1", 0)
    end)
    local sock = srv.sockets[1]
    assert.is_true(sock:fileno() >= 0)
    loop:close()
    assert.equal(-1, sock:fileno())
  end)

  it("§4 close_clients() on a serving server closes its connections yet it goes on accepting "
     .. "new ones (asyncio closes the transports only)", async(function(loop)
    local srv <close>, t, rec = net.pair(loop)
    srv:close_clients()
    net.wait(rec.lost_fut)
    assert.is_true(srv:is_serving())
    local srv2_rec = net.recorder(loop)
    local t2 = loop:create_connection(function() return srv2_rec end, "127.0.0.1",
                                      srv.sockets[1]:getsockname()[2])
    t2:write("still here")
    eddy.sleep(0.02)
    assert.is_false(t2:is_closing())
    t2:close()
    net.wait(srv2_rec.lost_fut)
  end))

  it("§4 serve_forever() starts a server made with start_serving = false "
     .. "(asyncio: `if not self.is_serving(): await self.start_serving()`)", async(function(loop)
    local made = loop:create_future()
    local srv = loop:create_server(function()
      return {connection_made = function() made:set_result(true) end}
    end, "127.0.0.1", 0, {start_serving = false})
    assert.is_false(srv:is_serving())
    local serving = loop:create_task(function() srv:serve_forever() end)
    turns()
    assert.is_true(srv:is_serving())
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1",
                                     srv.sockets[1]:getsockname()[2])
    net.wait(made)
    serving:cancel()
    raises(function() serving:await() end, errors.CancelledError)
    assert.is_false(srv:is_serving())
    t:close()
    net.wait(rec.lost_fut)
    srv:wait_closed()
  end))

  it("§4 wait_closed() on a server that never served returns once close() is called "
     .. "(asyncio 3.12.1+ waits for close())", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0,
                                   {start_serving = false})
    local waiter = loop:create_task(function() srv:wait_closed() return "closed" end)
    turns(3)
    assert.is_false(waiter:done())
    srv:close()
    assert.equal("closed", net.wait(waiter))
  end))

  it("§4 wait_closed() on a closed server with no connection left returns without suspending; "
     .. "start_serving() always lets one iteration run (asyncio: `if self._waiters is None: "
     .. "return`; start_serving ends with sleep(0))", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0,
                                   {start_serving = false})
    local ran = false
    loop:call_soon(function() ran = true end)
    srv:start_serving()
    assert.is_true(ran)
    ran = false
    loop:call_soon(function() ran = true end)
    srv:start_serving()  -- serving already: it still yields
    assert.is_true(ran)
    srv:close()
    ran = false
    loop:call_soon(function() ran = true end)
    srv:wait_closed()
    assert.is_false(ran)
  end))

  it("§3 create_server: SO_REUSEADDR on the listening socket by default on Linux, not with "
     .. "reuse_address = false (asyncio: `reuse_address = os.name == 'posix' and ...`)",
     async(function(loop)
    local on <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local off <close> = loop:create_server(function() return {} end, "127.0.0.1", 0,
                                           {reuse_address = false})
    assert.are_not.equal(0, on.sockets[1]:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    assert.equal(0, off.sockets[1]:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
  end))

  it("§3 create_server: keep_alive = true sets SO_KEEPALIVE on each accepted connection, which "
     .. "is off by default (asyncio 3.13 keep_alive)", async(function(loop)
    for _, case in ipairs {{{keep_alive = true}, true}, {nil, false}} do
      local srv <close>, t, rec, srv_rec = net.pair(loop, case[1])
      local got = srv_rec.transport:get_extra_info("socket")
                         :getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
      assert.equal(case[2], got ~= 0)
      t:close()
      net.wait(srv_rec.lost_fut)
    end
  end))

  it("§3 create_server: an AF_INET6 listening socket is IPV6_V6ONLY, for \"::1\" and for the "
     .. "all-interfaces host, so the v4 and v6 sockets share the port (asyncio sets "
     .. "IPV6_V6ONLY)", async(function(loop)
    local v6 <close> = loop:create_server(function() return {} end, "::1", 0)
    assert.are_not.equal(0, v6.sockets[1]:getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    local all <close> = loop:create_server(function() return {} end, nil, 0)
    local families = {}
    for _, s in ipairs(all.sockets) do
      families[s.family] = true
      if s.family == socket.AF_INET6 then
        assert.are_not.equal(0, s:getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
      end
    end
    assert.is_true(families[socket.AF_INET])
    assert.is_true(families[socket.AF_INET6])
  end))
end)

describe("§3 sock_* methods (asyncio test_sock_lowlevel, selector_events)", function()
  it("§3 sock_sendall(sock, \"\") returns at once and sends nothing", async(function(loop)
    local a <close>, b = checks.nonblocking_pair()
    local _ <close> = b
    assert.is_nil(loop:sock_sendall(a, ""))
    loop:sock_sendall(a, "x")
    assert.equal("x", loop:sock_recv(b, 10))
  end))

  it("§3 sock_recv on a socket whose peer closed returns \"\" (EOF), every time",
     async(function(loop)
    local a <close>, b = checks.nonblocking_pair()
    loop:sock_sendall(b, "tail")
    b:close()
    assert.equal("tail", loop:sock_recv(a, 100))
    assert.equal("", loop:sock_recv(a, 100))
    assert.equal("", loop:sock_recv(a, 100))
  end))

  it("§3 sock_accept on a socket that does not listen raises OSError EINVAL, as accept(2)",
     async(function(loop)
    local s <close> = socket.socket()
    s:bind({"127.0.0.1", 0})
    s:setblocking(false)
    local err = raises(function() loop:sock_accept(s) end, errors.OSError)
    assert.equal("EINVAL", err.code)
  end))

  it("§3 sock_recvfrom_into with nbytes past the buffer's size is a ValueError "
     .. "(socket.recvfrom_into: 'nbytes is greater than the length of the buffer')",
     async(function(loop)
    local a <close>, b = checks.nonblocking_pair()
    local _ <close> = b
    loop:sock_sendall(b, "abc")
    raises(function() loop:sock_recvfrom_into(a, eddy.Buffer(2), 3) end, errors.ValueError)
    local buf = eddy.Buffer(8)
    assert.equal(2, (loop:sock_recvfrom_into(a, buf, 2)))
    assert.equal("ab", buf:tostring(1, 2))
  end))

  it("§3 sock_connect of a UDP socket sets its peer: sock_sendall and sock_recv then work "
     .. "as on a stream (test_sock_lowlevel's UDP client)", async(function(loop)
    local server <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server:bind({"127.0.0.1", 0})
    server:setblocking(false)
    local client <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client:setblocking(false)
    loop:sock_connect(client, server:getsockname())
    loop:sock_sendall(client, "ping")
    local data, addr = loop:sock_recvfrom(server, 100)
    assert.equal("ping", data)
    assert.same(client:getsockname(), addr)
    loop:sock_sendto(server, "pong", addr)
    assert.equal("pong", loop:sock_recv(client, 100))
  end))
end)

describe("§7 datagram transports (asyncio test_selector_events "
         .. "SelectorDatagramTransportTests)", function()
  it("§7 sendto of a connected endpoint to an address other than remote_addr is a ValueError; "
     .. "to remote_addr itself it sends (asyncio 'Invalid address: must be None or ...')",
     async(function(loop)
    local got = loop:create_future()
    local srv_t = loop:create_datagram_endpoint(function()
      return {datagram_received = function(_, data) got:set_result(data) end}
    end, {"127.0.0.1", 0})
    local addr = srv_t:get_extra_info("sockname")
    local t = loop:create_datagram_endpoint(function() return {} end, nil, addr)
    assert.same(addr, t:get_extra_info("peername"))
    raises(function() t:sendto("x", {"127.0.0.1", addr[2] == 9 and 10 or 9}) end,
           errors.ValueError)
    t:sendto("to itself", addr)
    assert.equal("to itself", net.wait(got))
    t:close()
    srv_t:close()
    turns(2)
  end))
end)

describe("§7 datagram transports: reading (asyncio _SelectorDatagramTransport._read_ready "
         .. "reads one datagram per call)", function()
  for _, how in ipairs {"close", "pause_reading"} do
    it("§7 " .. how .. "() inside datagram_received: no further datagram_received, though nine "
       .. "more datagrams wait", async(function(loop)
      local got = {}
      local t = loop:create_datagram_endpoint(function()
        return {connection_made = function(self, tr) self.t = tr end,
                datagram_received = function(self, data)
                  got[#got + 1] = data
                  if #got == 1 then self.t[how](self.t) end
                end}
      end, {"127.0.0.1", 0})
      local s <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
      for i = 1, 10 do s:sendto("d" .. i, t:get_extra_info("sockname")) end
      net.wait_until(function() return #got > 0 end)
      eddy.sleep(0.05)
      assert.same({"d1"}, got)
      if how == "pause_reading" then
        t:resume_reading()
        net.wait_until(function() return #got == 10 end)
        assert.equal("d10", got[10])
      end
      t:close()
      turns(2)
    end))
  end
end)

describe("§7 pipe and subprocess transports (asyncio test_unix_events, test_subprocess)",
         function()
  -- proc_recorder(loop) -> a SubprocessProtocol logging its events.
  local function proc_recorder(loop)
    local rec = {events = {}, out = {[1] = {}, [2] = {}}, lost = {},
                 exited_fut = loop:create_future(), lost_fut = loop:create_future()}
    function rec:connection_made(t) self.transport = t end
    function rec:pipe_data_received(fd, data) table.insert(self.out[fd], data) end
    function rec:pipe_connection_lost(fd, err)
      self.events[#self.events + 1] = "pipe_lost " .. fd
      self.lost[fd] = err or false
    end
    function rec:process_exited()
      self.events[#self.events + 1] = "exited"
      self.returncode = self.transport:get_returncode()
      self.exited_fut:set_result(true)
    end
    function rec:connection_lost(err)
      self.events[#self.events + 1] = "lost"
      self.lost_fut:set_result(err or true)
    end
    return rec
  end

  -- sh(loop, script, opts) -> transport, recorder: /bin/sh -c script
  -- under subprocess_exec with a proc_recorder.
  local function sh(loop, script, opts)
    local rec = proc_recorder(loop)
    return loop:subprocess_exec(function() return rec end, "/bin/sh", "-c", script, opts), rec
  end

  it("§7 get_pipe_transport(fd) still gives the pipe's transport after its "
     .. "pipe_connection_lost, and nil for a descriptor that is no pipe (asyncio keeps "
     .. "_pipes[fd])", async(function(loop)
    local t, rec = sh(loop, "echo hi", {stdin = subprocess.DEVNULL})
    local out = t:get_pipe_transport(1)
    assert.is_not_nil(out)
    assert.is_nil(t:get_pipe_transport(0))
    net.wait(rec.lost_fut)
    assert.equal(out, t:get_pipe_transport(1))
    assert.is_true(out:is_closing())
    assert.equal("hi\n", table.concat(rec.out[1]))
    t:close()
  end))

  it("§7 close() of a subprocess transport with its three pipes: pipe_connection_lost for fd 0, "
     .. "1, 2 in that order, then process_exited (-9), then connection_lost (asyncio closes the "
     .. "pipes in its _pipes dict's order)", async(function(loop)
    local t, rec = sh(loop, "exec cat")
    t:get_pipe_transport(0):write("x")
    net.wait_until(function() return #rec.out[1] > 0 end)
    t:close()
    net.wait(rec.lost_fut)
    assert.same({"pipe_lost 0", "pipe_lost 1", "pipe_lost 2", "exited", "lost"}, rec.events)
    assert.equal(-9, rec.returncode)
  end))

  it("§7 get_returncode() is already set inside process_exited", async(function(loop)
    local t, rec = sh(loop, "exit 7")
    assert.is_nil(t:get_returncode())
    net.wait(rec.lost_fut)
    assert.equal(7, rec.returncode)
    t:close()
  end))

  it("§7 stderr = STDOUT: what the child writes to stderr arrives on fd 1, and "
     .. "get_pipe_transport(2) is nil (test_subprocess_stderr_redirect_to_stdout)",
     async(function(loop)
    local t, rec = sh(loop, "echo out; echo err >&2", {stderr = subprocess.STDOUT})
    assert.is_nil(t:get_pipe_transport(2))
    net.wait(rec.lost_fut)
    assert.equal("out\nerr\n", table.concat(rec.out[1]))
    assert.same({}, rec.out[2])
    assert.is_nil(rec.lost[2])
    t:close()
  end))

  it("§7 data still queued on a child's stdin when the child exits unread: "
     .. "pipe_connection_lost(0, BrokenPipeError), and connection_lost after every other event "
     .. "(asyncio _UnixWritePipeTransport: the peer gone with a buffer is EPIPE)",
     async(function(loop)
    local t, rec = sh(loop, "sleep 0.2")
    local stdin = t:get_pipe_transport(0)
    stdin:write(string.rep("x", 4 << 20))
    assert.is_true(stdin:get_write_buffer_size() > 0)
    net.wait(rec.lost_fut)
    assert.is_true(errors.is(rec.lost[0], errors.BrokenPipeError), tostring(rec.lost[0]))
    assert.equal("lost", rec.events[#rec.events])
    t:close()
  end))

  it("§7 a child that closes its stdin and exits: the stdin pipe is lost cleanly, "
     .. "pipe_connection_lost(0, nil), and later writes are dropped (asyncio's reader on the "
     .. "write pipe sees the peer go)", async(function(loop)
    local t, rec = sh(loop, "exec 0<&-; exit 0")
    net.wait(rec.lost_fut)
    assert.is_false(rec.lost[0])
    local stdin = t:get_pipe_transport(0)
    assert.is_true(stdin:is_closing())
    stdin:write(string.rep("x", 1 << 20))
    assert.equal(0, stdin:get_write_buffer_size())
    t:close()
  end))

  it("§3 connect_write_pipe on a pipe or socket whose reader is gone already: connection_made, "
     .. "then, after the call returns, connection_lost(nil); a write then is dropped "
     .. "(asyncio's reader on the write pipe sees the hang-up)", async(function(loop)
    local a, b = socket.socketpair()
    b:close()
    local f = io.popen("exit 0", "w")
    for _, pipe in ipairs {a, f} do
      local rec = net.recorder(loop)
      local t = loop:connect_write_pipe(function() return rec end, pipe)
      rec:log("returned")
      net.wait(rec.lost_fut, 2)
      assert.same({"made", "returned", "lost"}, rec.events)
      assert.is_nil(rec.err)
      t:write("dropped")
      assert.equal(0, t:get_write_buffer_size())
    end
  end))

  it("§7 a write pipe's write after write_eof is dropped silently, unlike a socket's "
     .. "RuntimeError (asyncio _UnixWritePipeTransport.write: closing → return)",
     async(function(loop)
    local r, w = socket.socketpair()
    r:setblocking(false)
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(function() return rec end, w)
    t:write("a")
    t:write_eof()
    t:write("b")
    t:writelines({"c"})
    net.wait(rec.lost_fut)
    assert.equal("a", loop:sock_recv(r, 10))
    assert.equal("", loop:sock_recv(r, 10))
    r:close()
  end))
end)

describe("§7 transports: when the protocol hears of data (asyncio test_events, "
         .. "selector_events._SelectorSocketTransport.__init__)", function()
  it("§3/§7 connect_accepted_socket, create_connection(sock=) and connect_read_pipe return "
     .. "before the first data_received, even with the peer's data already waiting (asyncio "
     .. "schedules connection_made, then the reader, then the waiter)", async(function(loop)
    local connect = {
      function(f, a) return loop:connect_accepted_socket(f, a) end,
      function(f, a) return loop:create_connection(f, nil, nil, {sock = a}) end,
      function(f, a) return loop:connect_read_pipe(f, a) end,
    }
    for _, fn in ipairs(connect) do
      local a, b = socket.socketpair()
      b:send("already there")
      local rec = net.recorder(loop)
      local t = fn(function() return rec end, a)
      rec:log("returned")
      rec:wait_bytes(13)
      assert.same({"made", "returned", "data"}, rec.events)
      t:close()
      b:close()
      net.wait(rec.lost_fut)
    end
  end))

  it("§3/§7 a transport that connection_made closes has had its connection_lost when "
     .. "create_connection, create_unix_connection, connect_accepted_socket, connect_read_pipe "
     .. "and connect_write_pipe return (asyncio's caller resumes one iteration after "
     .. "connection_made)", async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local path = net.tempfile("")
    os.remove(path)
    local usrv <close> = loop:create_unix_server(function() return {} end, path)
    local peers = {}
    local function pair_end()
      local a, b = socket.socketpair()
      peers[#peers + 1] = b
      return a
    end
    local connect = {
      function(f) return loop:create_connection(f, "127.0.0.1", srv.sockets[1]:getsockname()[2]) end,
      function(f) return loop:create_unix_connection(f, path) end,
      function(f) return loop:connect_accepted_socket(f, pair_end()) end,
      function(f) return loop:connect_read_pipe(f, pair_end()) end,
      function(f) return loop:connect_write_pipe(f, pair_end()) end,
    }
    for _, fn in ipairs(connect) do
      local rec = net.recorder(loop)
      function rec:connection_made(t)
        self:log("made")
        t:close()
      end
      fn(function() return rec end)
      rec:log("returned")
      assert.same({"made", "lost", "returned"}, rec.events)
    end
    for _, b in ipairs(peers) do b:close() end
  end))

  it("§3 a task cancelled while create_connection or connect_read_pipe waits its iteration "
     .. "after connection_made: the transport is closed, connection_lost(nil) follows "
     .. "(asyncio: `except: transport.close(); raise`)", async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local a, b = socket.socketpair()
    for _, fn in ipairs {
      function(f) return loop:create_connection(f, "127.0.0.1", srv.sockets[1]:getsockname()[2]) end,
      function(f) return loop:connect_read_pipe(f, a) end,
    } do
      local rec = net.recorder(loop)
      local task
      function rec:connection_made(t)
        self.transport = t
        self:log("made")
        task:cancel()
      end
      task = loop:create_task(fn, function() return rec end)
      raises(function() task:await() end, errors.CancelledError)
      assert.is_true(rec.transport:is_closing())
      net.wait(rec.lost_fut)
      assert.same({"made", "lost"}, rec.events)
      assert.is_nil(rec.err)
    end
    b:close()
  end))

  it("§7 close() inside data_received: no data_received follows, though megabytes more wait "
     .. "in the socket; connection_lost(nil) comes next (asyncio removes the reader at once)",
     async(function(loop)
    local a, b = socket.socketpair()
    b:setblocking(false)
    local rec = net.recorder(loop, {on_data = function(self) self.transport:close() end})
    loop:connect_accepted_socket(function() return rec end, a)
    local _, err = pcall(loop.sock_sendall, loop, b, string.rep("m", 4 << 20))
    net.wait(rec.lost_fut)
    assert.same({"made", "data", "lost"}, rec.events)
    assert.equal(1, #rec.chunks)
    assert.is_nil(rec.err)
    b:close()
    assert(err == nil or errors.is(err, errors.ConnectionError), tostring(err))
  end))

  it("§7 pause_reading inside data_received: no further data_received until resume_reading, "
     .. "though more data waits (asyncio removes the reader at once)", async(function(loop)
    local a, b = socket.socketpair()
    local rec = net.recorder(loop, {on_data = function(self) self.transport:pause_reading() end})
    local t = loop:connect_accepted_socket(function() return rec end, a)
    b:send(string.rep("p", 100000))
    rec:wait_bytes(1)
    eddy.sleep(0.05)
    assert.equal(1, #rec.chunks)
    rec.opts.on_data = nil
    t:resume_reading()
    rec:wait_bytes(100000)
    t:close()
    b:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 pause_reading and resume_reading on a closed transport do nothing and raise nothing; "
     .. "is_reading() stays false (asyncio 3.13 returns when not reading / closing)",
     async(function(loop)
    local a, b = socket.socketpair()
    local rec = net.recorder(loop)
    local t = loop:connect_accepted_socket(function() return rec end, a)
    t:close()
    t:resume_reading()
    t:pause_reading()
    t:resume_reading()
    assert.is_false(t:is_reading())
    net.wait(rec.lost_fut)
    t:pause_reading()
    t:resume_reading()
    assert.is_false(t:is_reading())
    b:close()
  end))
end)

describe("§4 Server:serve_forever (asyncio base_events.Server.serve_forever: on cancellation "
         .. "it closes the server, then awaits wait_closed)", function()
  for _, how in ipairs {"cancel()", "close()"} do
    it("§4 serve_forever ended by " .. how .. " with a client still connected: the server stops "
       .. "serving at once, but the task ends, cancelled, only once that connection is gone",
       async(function(loop)
      local srv, t, rec = net.pair(loop)
      local serving = loop:create_task(function() srv:serve_forever() end)
      turns()
      if how == "cancel()" then serving:cancel() else srv:close() end
      eddy.sleep(0.05)
      assert.is_false(srv:is_serving())
      assert.is_false(serving:done())
      t:close()
      net.wait(rec.lost_fut)
      eddy.wait({serving}, {timeout = 5})
      assert.is_true(serving:cancelled())
    end))
  end
end)

describe("§3 option checks (asyncio base_events)", function()
  it("§3 ssl_shutdown_timeout and ssl_handshake_timeout without ssl are a ValueError for "
     .. "create_connection, create_server, create_unix_connection, create_unix_server and "
     .. "connect_accepted_socket ('ssl_shutdown_timeout is only meaningful with ssl')",
     async(function(loop)
    local f = function() return {} end
    local a <close>, b = socket.socketpair()
    local _ <close> = b
    local path = net.tempfile("")
    os.remove(path)
    for _, name in ipairs {"ssl_shutdown_timeout", "ssl_handshake_timeout"} do
      local o = {[name] = 1}
      for _, call in ipairs {
        function() return loop:create_connection(f, "127.0.0.1", 1, o) end,
        function() return loop:create_server(f, "127.0.0.1", 0, o) end,
        function() return loop:create_unix_connection(f, path, o) end,
        function() return loop:create_unix_server(f, path, o) end,
        function() return loop:connect_accepted_socket(f, a, o) end,
      } do
        raises(call, {errors.ValueError, name .. " is only meaningful with ssl"})
      end
    end
  end))
end)

describe("§3 sock_* and fd watchers on a transport's socket (asyncio "
         .. "_ensure_fd_no_transport)", function()
  it("§3 sock_recv that would wait, and add_reader, on the socket of a live transport raise "
     .. "RuntimeError ('is used by transport') instead of taking the transport's reads",
     async(function(loop)
    local srv <close>, t, rec = net.pair(loop)
    local view = t:get_extra_info("socket")
    raises(function() loop:sock_recv(view, 10) end, {errors.RuntimeError, "is used by transport"})
    raises(function() loop:add_reader(view, print) end,
           {errors.RuntimeError, "is used by transport"})
    assert.is_false(t:is_closing())
    t:close()
    net.wait(rec.lost_fut)
  end))
end)

describe("§3 signal handler checks (asyncio unix_events: _check_signal, then _check_closed)",
         function()
  it("§3 on a closed loop, add_signal_handler of an invalid signal raises ValueError, of a valid "
     .. "one RuntimeError ('Event loop is closed'); remove_signal_handler raises ValueError or "
     .. "returns false, also for SIGKILL", function()
    local loop = eddy.new_event_loop()
    loop:close()
    for _, bad in ipairs {0, 1000, "SIGFOO"} do
      raises(function() loop:add_signal_handler(bad, print) end, errors.ValueError)
      raises(function() loop:remove_signal_handler(bad) end, errors.ValueError)
    end
    for _, sig in ipairs {"SIGUSR1", "SIGKILL"} do
      raises(function() loop:add_signal_handler(sig, print) end,
             {errors.RuntimeError, "Event loop is closed"})
      assert.is_false(loop:remove_signal_handler(sig))
    end
  end)
end)

describe("§3 signals beside subprocesses (asyncio 3.12+ child watchers leave SIGCHLD to the "
         .. "user)", function()
  it("§3 a SIGCHLD handler of the user's runs when a child exits, and the loop still sees "
     .. "its children exit", async(function(loop)
    local got = 0
    loop:add_signal_handler("SIGCHLD", function() got = got + 1 end)
    local proc = eddy.create_subprocess_exec("/bin/sh", "-c", "exit 3")
    assert.equal(3, eddy.wait_for(function() return proc:wait() end, 5))
    net.wait_until(function() return got > 0 end)
    assert.is_true(loop:remove_signal_handler("SIGCHLD"))
    proc = eddy.create_subprocess_exec("/bin/sh", "-c", "exit 4")
    assert.equal(4, eddy.wait_for(function() return proc:wait() end, 5))
  end))
end)

-- A python3 program that runs an eddy script on a pseudo-terminal
-- (asyncio's test_events test_bidirectional_pty and test_read_pty_output
-- use os.openpty, which Lua lacks).  "slave": the script's stdin and
-- stdout are the terminal; the program types "ping", waits for the
-- script's answer, hangs up, and prints the script's stderr.  "master":
-- the script's stdin is the master side; the program writes "pong" on the
-- slave side, waits for the script's first line, closes the slave, and
-- prints the script's stdout.
local PTY_DRIVER = [[
import os, select, subprocess, sys, time, tty
eddy, script, side = sys.argv[1:4]
m, s = os.openpty()
tty.setraw(s)
def read_until(fd, want):
    buf, deadline = b"", time.time() + 10
    while want not in buf:
        r, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
        if not r:
            sys.exit("timed out waiting for %r, got %r" % (want, buf))
        buf += os.read(fd, 100)
if side == "slave":
    p = subprocess.Popen([eddy, script], stdin=s, stdout=s, stderr=subprocess.PIPE)
    os.close(s)
    os.write(m, b"ping")
    read_until(m, b"got:ping")
    os.close(m)
    sys.stdout.write(p.communicate(timeout=10)[1].decode())
else:
    p = subprocess.Popen([eddy, script], stdin=m, stdout=subprocess.PIPE)
    os.close(m)
    os.write(s, b"pong")
    first = p.stdout.readline()
    os.close(s)
    sys.stdout.write(first.decode() + p.communicate(timeout=10)[0].decode())
]]

-- The script's side: read fd 0 as a read pipe, logging the protocol's
-- calls (echoing data to fd 1 through a write pipe when 'echo'); writes
-- the log to 'out' (an io file) once connection_lost came.
local PTY_SCRIPT = [[
local eddy = require "eddy"
local echo, out = %s, %s
eddy.run(function()
  local loop = eddy.get_running_loop()
  local reports = 0
  loop:set_exception_handler(function() reports = reports + 1 end)
  local w = echo and loop:connect_write_pipe(function() return {} end, 1)
  local log, done = {}, loop:create_future()
  loop:connect_read_pipe(function() return {
    data_received = function(_, d)
      log[#log + 1] = "data " .. d
      if w then w:write("got:" .. d) else out:write("read\n") out:flush() end
    end,
    eof_received = function() log[#log + 1] = "eof" end,
    connection_lost = function(_, e)
      log[#log + 1] = "lost " .. tostring(e and e.code)
      done:set_result(true)
    end} end, 0)
  eddy.wait_for(done, 10)
  if w then w:close() end
  out:write(table.concat(log, ", "), "; reports ", reports, "\n")
end)
]]

describe("§3 pipes on a terminal (asyncio test_events test_bidirectional_pty, "
         .. "test_read_pty_output; unix_events._UnixReadPipeTransport)", function()
  -- pty(side, echo, out) -> what the driver printed.
  local function pty(side, echo, out)
    local driver = net.tempfile(PTY_DRIVER, ".py")
    local script = net.tempfile(string.format(PTY_SCRIPT, echo, out), ".lua")
    local binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
    local proc = eddy.create_subprocess_exec("/usr/bin/python3", driver, binary, script, side,
                                             {stdout = subprocess.PIPE})
    local stdout = eddy.wait_for(function() return proc:communicate() end, 20)
    assert.equal(0, proc.returncode)
    return stdout
  end

  it("§3 connect_read_pipe and connect_write_pipe on the slave side of a terminal, both at "
     .. "once: typed data arrives, the answer goes out; the hang-up is eof_received, then "
     .. "connection_lost(nil)", async(function()
    assert.equal("data ping, eof, lost nil; reports 0\n", pty("slave", "true", "io.stderr"))
  end, 30))

  it("§3 a read pipe on the master side of a terminal whose slave closes: "
     .. "connection_lost(OSError EIO), no eof_received, and nothing reported (asyncio's "
     .. "_fatal_error keeps EIO out of the exception handler)", async(function()
    assert.equal("read\ndata pong, lost EIO; reports 0\n", pty("master", "false", "io.stdout"))
  end, 30))
end)
