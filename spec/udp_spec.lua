-- loop:create_datagram_endpoint and DatagramTransport (asyncio semantics).
local eddy = require "eddy"
local errors = eddy.errors
local socket = require "eddy.socket"
local test = require "eddy.test"
local async = test.async

local checks = require "support.checks"
local raises = checks.expect_error

-- A protocol recording what happens to it; 'received' is a queue of
-- futures, one per datagram.
local function recorder(loop)
  local p = {events = {}, datagrams = {}, lost = loop:create_future()}
  function p:connection_made(t) self.transport = t; self.events[#self.events + 1] = "made" end
  function p:datagram_received(data, addr)
    self.datagrams[#self.datagrams + 1] = {data, addr}
    if self.waiting then local w = self.waiting; self.waiting = nil; w:set_result() end
  end
  function p:error_received(err)
    self.error = err
    if self.waiting then local w = self.waiting; self.waiting = nil; w:set_result() end
  end
  function p:connection_lost(err) self.events[#self.events + 1] = "lost"; self.lost:set_result(err) end
  function p:wait()
    self.waiting = loop:create_future()
    return eddy.wait_for(self.waiting, 5)
  end
  return p
end

describe("create_datagram_endpoint", function()
  it("echoes on 127.0.0.1 and ::1 with connected and unconnected peers (test_sendto, test_read_ready, "
     .. "test_sendto_connected_addr, test_create_datagram_endpoint, test_create_datagram_endpoint_ipv6)",
     async(function(loop)
    for _, host in ipairs {"127.0.0.1", "::1"} do
      local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {host, 0})
      assert.same({"made"}, sp.events)
      local addr = st:get_extra_info("sockname")
      assert.equal(host, addr[1])
      assert.is_nil(st:get_extra_info("peername"))
      assert.equal("dflt", st:get_extra_info("nothing", "dflt"))
      local ct, cp = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, addr)
      assert.equal(addr[2], ct:get_extra_info("peername")[2])
      ct:sendto("ping")
      sp:wait()
      local d = sp.datagrams[1]
      assert.equal("ping", d[1])
      assert.equal(ct:get_extra_info("sockname")[2], d[2][2])
      st:sendto("pong", d[2])
      cp:wait()
      assert.equal("pong", cp.datagrams[1][1])
      raises(errors.ValueError, ct.sendto, ct, "x", {host, 1})
      ct:sendto("same address is fine", addr)
      sp:wait()
      assert.equal(0, st:get_write_buffer_size())
      ct:close()
      assert.is_true(ct:is_closing())
      st:close()
      assert.is_nil(cp.lost:await())
      assert.is_nil(sp.lost:await())
      assert.same({"made", "lost"}, cp.events)
    end
  end))

  it("takes a sock, AF_UNIX paths, family-only endpoints (test_create_datagram_endpoint_sock, test_create_datagram_endpoint_sock_unix)", async(function(loop)
    local path = os.tmpname()
    os.remove(path)
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, path,
                                                 nil, {family = socket.AF_UNIX})
    local raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    local ct, cp = loop:create_datagram_endpoint(function() return recorder(loop) end,
                                                 nil, nil, {sock = raw})
    assert.is_false(raw:getblocking())
    ct:sendto("unix", path)
    sp:wait()
    assert.equal("unix", sp.datagrams[1][1])
    ct:close() st:close()
    cp.lost:await() sp.lost:await()
    assert.equal(-1, raw:fileno())  -- the transport closed its socket
    os.remove(path)
    local t = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, nil,
                                            {family = socket.AF_INET})
    assert.equal(0, t:get_extra_info("sockname")[2])
    t:abort()
    local u, up = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, nil,
                                                {family = socket.AF_UNIX})
    assert.equal(socket.AF_UNIX, u:get_extra_info("socket").family)
    u:close()
    up.lost:await()
  end))

  it("AF_UNIX local_addr: a stale socket file is replaced, any other file stays (asyncio's S_ISSOCK check) (test_create_datagram_endpoint_existing_sock_unix)",
     async(function(loop)
    local path = os.tmpname()  -- a regular file
    local fh = assert(io.open(path, "w"))
    fh:write("precious")
    fh:close()
    raises(errors.OSError, loop.create_datagram_endpoint, loop, function() return {} end, path,
           nil, {family = socket.AF_UNIX})
    fh = assert(io.open(path))
    assert.equal("precious", fh:read("a"))
    fh:close()
    os.remove(path)
    local stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale:bind(path)
    stale:close()
    local t = loop:create_datagram_endpoint(function() return recorder(loop) end, path, nil,
                                            {family = socket.AF_UNIX})
    assert.equal(path, t:get_extra_info("sockname"))
    t:close()
    t:get_protocol().lost:await()
    os.remove(path)
  end))

  it("a protocol with no methods gets datagrams and errors as asyncio's DatagramProtocol: nothing happens "
     .. "(test_datagram_protocol)", async(function(loop)
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe:bind({"127.0.0.1", 0})
    local dead = probe:getsockname()
    probe:close()
    -- one endpoint receives a datagram, the other an ICMP error
    local t = loop:create_datagram_endpoint(function() return {} end, {"127.0.0.1", 0})
    local sink = loop:create_datagram_endpoint(function() return {} end, nil, dead)
    st:sendto("to nobody's method", t:get_extra_info("sockname"))
    sink:sendto("anyone?")
    t:sendto("still here", st:get_extra_info("sockname"))
    sp:wait()
    assert.equal("still here", sp.datagrams[1][1])
    eddy.sleep(0.01)
    t:close() sink:close() st:close()
    sp.lost:await()
  end))

  it("reports ICMP errors through error_received, not as fatal errors (test_sendto_error_received_connected, "
     .. "test_fatal_error_connected, test_datagram_send_to_non_listening_address)", async(function(loop)
    local probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe:bind({"127.0.0.1", 0})
    local dead = probe:getsockname()
    probe:close()
    local ct, cp = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, dead)
    ct:sendto("anyone?")
    cp:wait()
    assert.is_true(errors.is(cp.error, errors.ConnectionRefusedError))
    ct:close()
    cp.lost:await()
  end))

  it("gives the OSError of a destination to error_received, sent at once or queued "
     .. "(asyncio's sendto and _sendto_ready: except OSError -> error_received; test_sendto_error_received, "
     .. "test_sendto_ready_error_received)", async(function(loop)
    local handled = {}
    loop:set_exception_handler(function(_, ctx) handled[#handled + 1] = ctx.message end)
    local t, p = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    for _, addr in ipairs {{"256.1.1.1", 9}, {"::1", 9}} do  -- no such host; not AF_INET
      p.error = nil
      t:sendto("x", addr)
      assert.is_true(errors.is(p.error, errors.DNSError), tostring(p.error))
    end
    t:close()
    -- an unconnected AF_UNIX sender whose peer does not read: datagrams queue
    local path = os.tmpname()
    os.remove(path)
    local peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer:bind(path)
    t, p = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, nil,
                                         {family = socket.AF_UNIX})
    for _ = 1, 100 do t:sendto(string.rep("q", 4096), path) end
    assert.is_true(t:get_write_buffer_size() > 0)
    p.error = nil
    t:sendto("x", "/" .. string.rep("x", 200))  -- too long for sun_path
    assert.is_true(errors.is(p.error, errors.OSError), tostring(p.error))
    t:sendto("y", path .. "-none")  -- queued: fails when its turn comes
    peer:setblocking(false)
    for _ = 1, 500 do
      while pcall(peer.recv, peer, 8192) do end
      if t:get_write_buffer_size() == 0 then break end
      eddy.sleep(0.002)
    end
    assert.equal(0, t:get_write_buffer_size())
    assert.is_true(errors.is(p.error, errors.FileNotFoundError), tostring(p.error))
    assert.same({}, handled)
    t:close()
    p.lost:await()
    peer:close()
    os.remove(path)
  end))

  -- Only a destination's OSError goes to error_received: a malformed
  -- address is the caller's mistake, a standard argument error naming
  -- sendto and its argument (API.md §1), sent at once or queued.
  it("a malformed destination is an argument error of sendto, sent at once or queued", async(function(loop)
    local t = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    assert.has_error(function() t:sendto("x", {"127.0.0.1"}) end,
                     "bad argument #2 to 'sendto' (AF_INET address must be {host, port})")
    assert.has_error(function() t:sendto("x", {"127.0.0.1", "9"}) end,
                     "bad argument #2 to 'sendto' (address port must be an integer)")
    t:close()
    -- an unconnected AF_UNIX sender whose peer does not read: datagrams queue
    local path = os.tmpname()
    os.remove(path)
    local peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer:bind(path)
    t = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, nil,
                                      {family = socket.AF_UNIX})
    for _ = 1, 100 do t:sendto(string.rep("q", 4096), path) end
    local size = t:get_write_buffer_size()
    assert.is_true(size > 0)  -- what follows would be queued
    assert.has_error(function() t:sendto("x", 42) end,
                     "bad argument #2 to 'sendto' (string (AF_UNIX address) expected, got number)")
    assert.equal(size, t:get_write_buffer_size())
    t:abort()
    peer:close()
    os.remove(path)
  end))

  it("sends empty datagrams; a queued datagram counts 8 bytes more (asyncio 3.13, gh-113812 "
     .. "and _header_size, with gh-135444's fix; test_sendto_no_data, test_sendto_buffer_nodata)",
     async(function(loop)
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local ct = loop:create_datagram_endpoint(function() return {} end, nil, st:get_extra_info("sockname"))
    ct:sendto("")
    sp:wait()
    assert.equal("", sp.datagrams[1][1])
    ct:close() st:close()
    local a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    local paused = 0
    ct = loop:create_datagram_endpoint(function()
      return {pause_writing = function() paused = paused + 1 end}
    end, nil, nil, {sock = a})
    ct:set_write_buffer_limits(1000)
    local n = 0
    while ct:get_write_buffer_size() == 0 and n < 100000 do  -- until one is queued
      ct:sendto("")
      n = n + 1
    end
    assert.equal(8, ct:get_write_buffer_size())
    for _ = 1, 125 do ct:sendto("") end  -- empty datagrams alone reach the high-water mark
    assert.equal(1, paused)
    b:setblocking(false)
    local got = 0
    for _ = 1, 1000 do
      while pcall(b.recv, b, 10) do got = got + 1 end
      if got == n + 125 then break end
      eddy.sleep(0.002)
    end
    assert.equal(n + 125, got)
    assert.equal(0, ct:get_write_buffer_size())
    ct:close()
    b:close()
  end))

  it("queues datagrams when the socket buffer is full, with flow control, and sends them in order "
     .. "when writable (test_sendto_buffer, test_sendto_tryagain, test_sendto_ready)", async(function(loop)
    local a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b:setblocking(false)
    local paused, resumed = 0, 0
    local ct = loop:create_datagram_endpoint(function()
      return {pause_writing = function() paused = paused + 1 end,
              resume_writing = function() resumed = resumed + 1 end}
    end, nil, nil, {sock = a})
    assert.same({16384, 65536}, {ct:get_write_buffer_limits()})
    ct:set_write_buffer_limits(8192)
    assert.same({2048, 8192}, {ct:get_write_buffer_limits()})
    local chunk = string.rep("u", 8000)
    for i = 1, 200 do ct:sendto(chunk .. i) end
    assert.is_true(ct:get_write_buffer_size() > 0)
    assert.equal(1, paused)
    local got = 0
    for _ = 1, 1000 do
      while pcall(b.recv, b, 9000) do got = got + 1 end
      if got == 200 then break end
      eddy.sleep(0.002)
    end
    assert.equal(200, got)
    assert.equal(0, ct:get_write_buffer_size())
    assert.equal(1, resumed)
    raises(errors.ValueError, ct.set_write_buffer_limits, ct, 1, 2)
    ct:close()
    eddy.sleep(0.01)
    b:close()
  end))

  it("closes after the queue drains; abort drops it; sendto after close is dropped (test_sendto_closing)",
     async(function(loop)
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local ct, cp = loop:create_datagram_endpoint(function() return recorder(loop) end, nil,
                                                 st:get_extra_info("sockname"))
    ct:close()
    ct:sendto("dropped")
    ct:close()
    cp.lost:await()
    eddy.sleep(0.01)
    assert.equal(0, #sp.datagrams)
    st:abort()
    assert.is_nil(sp.lost:await())
  end))

  it("the socket view of get_extra_info forgets the descriptor once the transport is closed",
     async(function(loop)
    local t = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local view = t:get_extra_info("socket")
    assert.same(t:get_extra_info("sockname"), view:getsockname())
    t:close()
    t:get_protocol().lost:await()
    -- the descriptor may be reused by the next socket: the view must not reach it
    local other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raises(errors.OSError, view.getsockname, view)
    assert.same(t:get_extra_info("sockname"), t:get_extra_info("sockname"))  -- kept
    other:close()
  end))

  it("refuses a sock whose descriptor a transport uses (asyncio's _ensure_fd_no_transport)",
     async(function(loop)
    -- test_selector_events: _make_datagram_transport checks the fd first
    local t, p = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local view = t:get_extra_info("socket")
    local err = raises(errors.RuntimeError, loop.create_datagram_endpoint, loop,
                       function() return recorder(loop) end, nil, nil, {sock = view})
    assert.matches("File descriptor %d+ is used by transport", tostring(err))
    -- the first transport still reads
    local c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c:sendto("still mine", t:get_extra_info("sockname"))
    p:wait()
    assert.equal("still mine", p.datagrams[1][1])
    c:close()
    t:close()
    assert.is_nil(p.lost:await())
  end))

  it("a transport collected without close() leaves its fd number free (loop._transports is weak)",
     async(function(loop)
    -- paused, so no watcher holds it; its socket is closed when collected
    local t = loop:create_datagram_endpoint(function()
      local p = recorder(loop)
      function p:connection_made(tr) tr:pause_reading() end
      return p
    end, {"127.0.0.1", 0})
    local fd = t:get_extra_info("socket"):fileno()
    t = nil
    eddy.sleep(0)  -- the connection_made handle lets go of it
    collectgarbage()
    collectgarbage()
    local s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert.equal(fd, s:fileno())  -- the lowest free number again
    loop:add_reader(s, print)  -- not "used by transport"
    assert.is_true(loop:remove_reader(s))
    s:close()
  end))

  it("pause_reading / resume_reading / is_reading, as asyncio's _SelectorTransport", async(function(loop)
    -- the selector datagram transport inherits them (test_selector_events
    -- test_pause_resume_reading); pausing in connection_made holds the
    -- first read back
    local t, p = loop:create_datagram_endpoint(function()
      local p = recorder(loop)
      function p:connection_made(tr) self.transport = tr; tr:pause_reading() end
      return p
    end, {"127.0.0.1", 0})
    assert.is_false(t:is_reading())
    local c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    local addr = t:get_extra_info("sockname")
    c:sendto("one", addr)
    c:sendto("two", addr)
    eddy.sleep(0.02)
    assert.equal(0, #p.datagrams)  -- held in the socket buffer
    t:pause_reading()  -- again: nothing
    t:resume_reading()
    assert.is_true(t:is_reading())
    t:resume_reading()  -- again: nothing
    p:wait()
    if #p.datagrams < 2 then p:wait() end
    assert.equal("one", p.datagrams[1][1])
    assert.equal("two", p.datagrams[2][1])
    t:pause_reading()
    -- paused, the fd is still the transport's
    raises(errors.RuntimeError, loop.add_reader, loop, t:get_extra_info("socket"), print)
    c:sendto("three", addr)
    eddy.sleep(0.02)
    assert.equal(2, #p.datagrams)
    t:close()
    assert.is_false(t:is_reading())
    t:resume_reading()  -- closing: nothing
    assert.is_nil(p.lost:await())
    assert.equal(2, #p.datagrams)
    c:close()
  end))

  it("sets SO_REUSEPORT and SO_BROADCAST only when asked, never SO_REUSEADDR "
     .. "(test_create_datagram_endpoint_sockopts)", async(function(loop)
    local SOL = socket.SOL_SOCKET
    for _, opts in ipairs {{}, {reuse_port = true, allow_broadcast = true}} do
      local t, p = loop:create_datagram_endpoint(function() return recorder(loop) end,
                                                 {"127.0.0.1", 0}, nil, opts)
      local sock = t:get_extra_info("socket")
      local want = opts.reuse_port and 1 or 0
      assert.equal(want, sock:getsockopt(SOL, socket.SO_REUSEPORT) ~= 0 and 1 or 0)
      assert.equal(want, sock:getsockopt(SOL, socket.SO_BROADCAST) ~= 0 and 1 or 0)
      assert.equal(0, sock:getsockopt(SOL, socket.SO_REUSEADDR))
      t:close()
      eddy.wait_for(p.lost, 5)
    end
  end))

  it("allow_broadcast leaves the socket unconnected; sendto(data) goes to remote_addr (test_create_datagram_endpoint_allow_broadcast)",
     async(function(loop)
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local addr = st:get_extra_info("sockname")
    local ct, cp = loop:create_datagram_endpoint(function() return recorder(loop) end, nil, addr,
                                                 {allow_broadcast = true})
    assert.is_nil(ct:get_extra_info("peername"))
    assert.equal(1, ct:get_extra_info("socket"):getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST))
    ct:sendto("no address")
    ct:sendto("same address", addr)
    raises(errors.ValueError, ct.sendto, ct, "x", {"127.0.0.1", 1})
    sp:wait()
    if #sp.datagrams < 2 then sp:wait() end
    assert.equal("no address", sp.datagrams[1][1])
    assert.equal("same address", sp.datagrams[2][1])
    ct:close() st:close()
    cp.lost:await() sp.lost:await()
  end))

  it("a failing protocol factory, or a protocol whose connection_made lookup raises, leaves no socket open",
     async(function(loop)
    -- Sockets only: the pipe of io.popen itself is listed with one end or
    -- both, depending on whether ls runs before popen closes the child's.
    local function count_sockets()
      local p = io.popen("ls -l /proc/" .. eddy.signal.getpid() .. "/fd")
      local _, n = p:read("a"):gsub("socket:", "")
      p:close()
      return n
    end
    local before = count_sockets()
    for _ = 1, 3 do
      local ok, err = pcall(loop.create_datagram_endpoint, loop, function() error("boom") end,
                            {"127.0.0.1", 0})
      assert.is_false(ok)
      assert.matches("boom", err)
      raises(errors.RuntimeError, loop.create_datagram_endpoint, loop, function() return nil end,
             {"127.0.0.1", 0})
      -- asyncio's transport binds protocol.connection_made as it is made
      ok, err = pcall(loop.create_datagram_endpoint, loop, function()
        return setmetatable({}, {__index = function(_, k) error("no " .. k, 0) end})
      end, {"127.0.0.1", 0})
      assert.is_false(ok)
      assert.equal("no connection_made", err)
    end
    assert.equal(before, count_sockets())
  end))

  it("from a plain callback raises RuntimeError naming itself before the factory runs",
     async(function(loop)
    local made, err = 0, nil
    local done = loop:create_future()
    loop:call_soon(function()
      err = select(2, pcall(loop.create_datagram_endpoint, loop,
                            function() made = made + 1 return {} end, {"127.0.0.1", 0}))
      done:set_result()
    end)
    done:await()
    eddy.sleep(0.01)
    assert.matches("^RuntimeError: create_datagram_endpoint%(%) cannot suspend here", tostring(err))
    assert.equal(0, made)
  end))

  it("datagrams sent after close are dropped; debug mode warns (API.md §9)", function()
    local script = [[
      warn("@on")
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()
      loop:set_debug(%s)
      loop:run_until_complete(function()
        local t = loop:create_datagram_endpoint(function() return {} end, {"127.0.0.1", 0})
        t:close()
        for _ = 1, 10 do t:sendto("x", {"127.0.0.1", 9}) end
        eddy.sleep(0.01)
      end)
      loop:close()
      print("end")
    ]]
    local code, out = checks.run_script(script:format("true"))
    assert.equal(0, code)
    assert.matches("transport is closed: datagrams are dropped", out)
    local _, quiet = checks.run_script(script:format("false"))
    assert.matches("end", quiet)
    assert.is_nil(quiet:find("dropped", 1, true))
  end)

  it("set_protocol / get_protocol; protocol errors reach the exception handler", function()
    local reports = test.run_collecting(function(loop)
      local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
      assert.equal(sp, st:get_protocol())
      local p2 = recorder(loop)
      p2.datagram_received = function() error("bad protocol") end
      st:set_protocol(p2)
      assert.equal(p2, st:get_protocol())
      local c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
      c:sendto("x", st:get_extra_info("sockname"))
      c:sendto("y", st:get_extra_info("sockname"))
      eddy.sleep(0.05)
      c:close()
      st:close()
      p2.lost:await()
    end)
    assert.equal(2, #reports)
    assert.matches("bad protocol", tostring(reports[1].exception))
  end)

  it("bad input: resume_reading of an endpoint whose loop is closed raises RuntimeError, as "
     .. "asyncio's _add_reader (found by tools/fuzz/api_fuzz.lua: it crashed in uv_poll_init)",
     function()
    local loop = eddy.new_event_loop()
    local t = loop:run_until_complete(function()
      return (loop:create_datagram_endpoint(function() return {} end, {"127.0.0.1", 0}))
    end)
    t:pause_reading()
    loop:close()  -- leaves a datagram transport open, as asyncio's
    raises(errors.RuntimeError, function() t:resume_reading() end)
    assert.is_false(t:is_reading())
    t:get_extra_info("socket"):close()
  end)

  it("bad input: set_protocol of a non-protocol is an argument error, the protocol stays "
     .. "(found by tools/fuzz/api_fuzz.lua: a number set failed at the next datagram)",
     async(function(loop)
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    assert.equal(sp, st:get_protocol())
    checks.refuses_bad_protocols(st)
    st:close()
    sp.lost:await()
  end))

  it("rejects bad arguments as asyncio does (test_create_datagram_endpoint_noaddr_nofamily, "
     .. "test_create_datagram_endpoint_wrong_sock, test_create_datagram_endpoint_addr_error, "
     .. "test_create_datagram_endpoint_sock_sockopts, "
     .. "test_create_datagram_endpoint_no_matching_family, test_create_datagram_endpoint_cant_bind)",
     async(function(loop)
    local f = function() return {} end
    -- asyncio 3.11 removed reuse_address (bpo-45129): asyncio 3.12 and 3.13 raise
    -- TypeError for it, true or false
    for _, v in ipairs {true, false} do
      assert.has_error(function()
        loop:create_datagram_endpoint(f, {"127.0.0.1", 0}, nil, {reuse_address = v})
      end, "bad argument #4 to 'create_datagram_endpoint' (unknown option 'reuse_address')")
    end
    raises(errors.ValueError, loop.create_datagram_endpoint, loop, f)
    assert.has_error(function() loop:create_datagram_endpoint(42) end)
    assert.has_error(function() loop:create_datagram_endpoint(f, {"127.0.0.1", 0}, nil, {bogus = 1}) end)
    assert.has_error(function() loop:create_datagram_endpoint(f, "127.0.0.1") end)
    assert.has_error(function() loop:create_datagram_endpoint(f, {"127.0.0.1"}) end)
    raises(errors.ValueError, loop.create_datagram_endpoint, loop, f, {"127.0.0.1", 70000})
    -- argument errors blame the caller, not eddy's own files
    local ok, err = pcall(function() loop:create_datagram_endpoint(f, nil, {1, 2}) end)
    assert.is_false(ok)
    assert.matches("^spec/udp_spec.lua:%d+: bad argument #3 to 'create_datagram_endpoint'", err)
    for _, k in ipairs {"family", "proto", "flags"} do
      assert.has_error(function() loop:create_datagram_endpoint(f, nil, nil, {[k] = "x"}) end,
                       string.format("bad argument #4 to 'create_datagram_endpoint' "
                                     .. "(integer option '%s' expected, got string)", k))
    end
    -- a string port is resolved, as asyncio's getaddrinfo does
    local ts = loop:create_datagram_endpoint(f, {"127.0.0.1", "0"})
    assert.equal("127.0.0.1", ts:get_extra_info("sockname")[1])
    ts:close()
    local tcp = socket.socket()
    raises(errors.ValueError, loop.create_datagram_endpoint, loop, f, nil, nil, {sock = tcp})
    tcp:close()
    local u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raises(errors.ValueError, loop.create_datagram_endpoint, loop, f, {"127.0.0.1", 0}, nil, {sock = u})
    raises(errors.ValueError, loop.create_datagram_endpoint, loop, f, nil, {"127.0.0.1", 1}, {sock = u})
    for _, opts in ipairs {{family = socket.AF_INET}, {proto = 17}, {flags = 1},
                           {reuse_port = true}, {allow_broadcast = true}} do
      opts.sock = u
      raises(errors.ValueError, loop.create_datagram_endpoint, loop, f, nil, nil, opts)
    end
    u:close()
    -- no local address of the remote address's family
    raises(errors.ValueError, loop.create_datagram_endpoint, loop, f, {"::1", 0}, {"127.0.0.1", 1})
    raises(errors.OSError, loop.create_datagram_endpoint, loop, f, {"192.0.2.1", 0})  -- not ours
    local t = loop:create_datagram_endpoint(f, {"127.0.0.1", 0})
    assert.has_error(function() t:sendto(42, {"127.0.0.1", 1}) end)
    assert.has_error(function() t:sendto("x") end)
    assert.has_error(function() t:sendto("x", {"127.0.0.1"}) end)
    raises(errors.ValueError, t.sendto, t, "x", {"127.0.0.1", -5})
    t:close()
    eddy.sleep(0.01)
  end))

  it("talks to CPython's asyncio over UDP", async(function(loop)
    local py = io.open("/usr/bin/python3") if not py then return end py:close()
    local st, sp = loop:create_datagram_endpoint(function() return recorder(loop) end, {"127.0.0.1", 0})
    local port = st:get_extra_info("sockname")[2]
    local script = ([[
import asyncio
class P(asyncio.DatagramProtocol):
    def __init__(self, done): self.done = done
    def connection_made(self, t): self.t = t; t.sendto(b"from python")
    def datagram_received(self, data, addr): self.done.set_result(data)
async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    t, p = await loop.create_datagram_endpoint(lambda: P(done), remote_addr=("127.0.0.1", %d))
    print(await asyncio.wait_for(done, 5)); t.close()
asyncio.run(main())
]]):format(port)
    local path = os.tmpname()
    local f = io.open(path, "w") f:write(script) f:close()
    local proc = io.popen("timeout 10 /usr/bin/python3 " .. path, "r")
    sp:wait()
    assert.equal("from python", sp.datagrams[1][1])
    st:sendto("from eddy", sp.datagrams[1][2])
    local out = proc:read("a")
    proc:close()
    os.remove(path)
    assert.equal("b'from eddy'\n", out)
    st:close()
    sp.lost:await()
  end))
end)
