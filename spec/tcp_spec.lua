-- TCP transports and create_connection (API.md §3 "Network connections",
-- §7): real sockets on 127.0.0.1 and ::1, port 0.  Descriptions name the
-- CPython test (Lib/test/test_asyncio) a case follows, where there is one.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local socket = require "eddy.socket"
local raises, argerror = checks.raises, checks.argerror

-- Connect a Recorder to port on host; returns transport, recorder.
local function connect(loop, port, host, opts)
  local rec = net.recorder(loop, opts)
  local t, p = loop:create_connection(function() return rec end, host or "127.0.0.1", port)
  assert.equal(rec, p)
  return t, rec
end

describe("create_connection", function()
  it("connects, echoes and closes with callbacks in asyncio's order (test_create_connection, "
     .. "test_ctor, test_ctor_with_waiter, test_read_ready, test_write)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    assert.same({"made"}, rec.events)
    t:write("hello ")
    t:write("world")
    rec:wait_bytes(11)
    assert.equal("hello world", rec:data())
    t:close()
    assert.is_true(t:is_closing())
    net.wait(rec.lost_fut)
    assert.same({"made", "data", "lost"}, rec.events)
    assert.is_nil(rec.err)
  end))

  it("works over IPv6 (::1)", async(function(loop)
    local srv <close>, port = net.echo_server(loop, "::1")
    local t, rec = connect(loop, port, "::1")
    t:write("six")
    rec:wait_bytes(3)
    assert.equal("::1", t:get_extra_info("peername")[1])
    assert.equal(4, #t:get_extra_info("sockname"))
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("resolves host names and connects to the address that listens (happy eyeballs)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop, "127.0.0.1")
    local t, rec = loop:create_connection(function() return net.recorder(loop) end,
                                          "localhost", port, {happy_eyeballs_delay = 0.05})
    assert.equal("127.0.0.1", t:get_extra_info("peername")[1])
    t:close()
    net.wait(rec.lost_fut)
    -- interleave alone, sequential attempts
    t, rec = loop:create_connection(function() return net.recorder(loop) end,
                                    "localhost", port, {interleave = 1})
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("raises ConnectionRefusedError when nothing listens (test_create_connection_refused, test_create_connection_connect_err)",
     async(function(loop)
    local srv, port = net.echo_server(loop)
    srv:close()
    srv:wait_closed()
    local err = raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", port)
    end, errors.ConnectionRefusedError)
    assert.equal("ECONNREFUSED", err.code)
    assert.truthy(tostring(err):find("Connect call failed ('127.0.0.1', " .. port .. ")", 1, true))
  end))

  it("all_errors gives an ExceptionGroup of every attempt's error", async(function(loop)
    local srv, port = net.echo_server(loop)
    srv:close()
    local err = raises(function()
      loop:create_connection(function() return {} end, "localhost", port, {all_errors = true})
    end, errors.ExceptionGroup)
    assert.is_true(#err.exceptions >= 1)
    for _, e in ipairs(err.exceptions) do assert.is_true(errors.is(e, errors.ConnectionRefusedError)) end
  end))

  it("binds local_addr (test_create_connection_local_addr)", async(function(loop)
    local srv <close>, port, protos = net.echo_server(loop)
    local t = loop:create_connection(function() return net.recorder(loop) end,
                                     "127.0.0.1", port, {local_addr = {"127.0.0.1", 0}})
    local sockname = t:get_extra_info("sockname")
    net.wait_until(function() return protos[1] ~= nil end)
    assert.same(sockname, protos[1].t:get_extra_info("peername"))
    -- a local address in use fails as asyncio words it: the bind, not the connect
    t:close()
    raises(function()  -- the listening socket's address
      loop:create_connection(function() return {} end, "127.0.0.1", port,
                             {local_addr = {"127.0.0.1", port}})
    end, {errors.OSError, string.format("error while attempting to bind on address ('127.0.0.1', %d)",
                                        port)})
  end))

  it("binds local_addr without SO_REUSEADDR: a port another connection holds is in use "
     .. "(asyncio's _connect_sock: sock.bind(laddr)) (test_create_connection_local_addr_in_use)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local other <close>, other_port = net.echo_server(loop)
    local t = loop:create_connection(function() return net.recorder(loop) end, "127.0.0.1", port,
                                     {local_addr = {"127.0.0.1", 0}})
    local lport = t:get_extra_info("sockname")[2]
    local e = raises(function()  -- to another server: only the bind can fail
      loop:create_connection(function() return {} end, "127.0.0.1", other_port,
                             {local_addr = {"127.0.0.1", lport}})
    end, {errors.OSError, string.format("error while attempting to bind on address ('127.0.0.1', %d)",
                                        lport)})
    assert.equal("EADDRINUSE", e.code)
    t:close()
  end))

  it("takes a connected eddy.socket with sock= and connect_accepted_socket (test_connect_accepted_socket)", async(function(loop)
    local socket = eddy.socket
    local srv <close>, port = net.echo_server(loop)
    local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s:connect({"127.0.0.1", port})
    s:setblocking(false)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, nil, nil, {sock = s})
    t:write("via sock")
    rec:wait_bytes(8)
    t:close()
    net.wait(rec.lost_fut)
    -- a socketpair end handed to connect_accepted_socket
    local a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    local r1, r2 = net.recorder(loop), net.recorder(loop)
    local t1 = loop:connect_accepted_socket(function() return r1 end, a)
    local t2 = loop:connect_accepted_socket(function() return r2 end, b)
    t1:write("ping")
    r2:wait_bytes(4)
    assert.equal("ping", r2:data())
    t1:close()
    net.wait(r2.eof_fut)
    net.wait(r2.lost_fut)
    net.wait(r1.lost_fut)
    assert.is_true(t2:is_closing())
  end))

  -- API.md §1: "bad argument type (a programming error): standard Lua
  -- argument error"; sock is positional here, not the option.
  it("connect_accepted_socket: a sock that is not a socket is a standard argument error",
     async(function(loop)
    local factory = function() return {} end
    checks.raises(function() loop:connect_accepted_socket(factory, 5) end,
                  "bad argument #2 to 'connect_accepted_socket' (socket expected, got number)")
    checks.raises(function() loop:connect_accepted_socket(factory) end,
                  "bad argument #2 to 'connect_accepted_socket' (socket expected, got nil)")
  end))

  it("connect_accepted_socket is suspending: a plain callback gets RuntimeError, the socket stays",
     async(function(loop)
    local a, b = eddy.socket.socketpair()
    local done = loop:create_future()
    loop:call_soon(function()
      done:set_result(select(2, pcall(loop.connect_accepted_socket, loop,
                                      function() return {} end, a)))
    end)
    local err = net.wait(done)
    assert.is_true(errors.is(err, errors.RuntimeError), tostring(err))
    assert.matches("connect_accepted_socket%(%) cannot suspend here", tostring(err))
    assert.is_true(a:fileno() >= 0)
    a:close()
    b:close()
  end))

  it("create_connection and create_unix_connection with sock= are suspending too: the socket stays",
     async(function(loop)
    local a, b = eddy.socket.socketpair()
    local done = loop:create_future()
    loop:call_soon(function()
      local factory = function() return {} end
      done:set_result(
        select(2, pcall(loop.create_connection, loop, factory, nil, nil, {sock = a})),
        select(2, pcall(loop.create_unix_connection, loop, factory, nil, {sock = a})),
        select(2, pcall(loop.create_connection, loop, factory, "localhost", 1)))
    end)
    local e1, e2, e3 = net.wait(done)
    assert.matches("^RuntimeError: create_connection%(%) cannot suspend here", tostring(e1))
    assert.matches("^RuntimeError: create_unix_connection%(%) cannot suspend here", tostring(e2))
    -- a name to resolve: the error names create_connection, not the resolver
    assert.matches("^RuntimeError: create_connection%(%) cannot suspend here", tostring(e3))
    assert.is_true(a:fileno() >= 0)
    a:close()
    b:close()
  end))

  it("a task cancelled once its connect completed, before it resumed, leaves no connection open",
     async(function(loop)
    local srv, port = net.echo_server(loop)
    for i = 1, 200 do
      local task = loop:create_task(function()
        return loop:create_connection(function() return {} end, "127.0.0.1", port)
      end)
      for _ = 1, i % 4 do eddy.sleep(0) end  -- cancel at different points
      task:cancel()
      local ok, t = pcall(eddy.await, task)
      if ok then t:close() end
    end
    srv:close()
    -- every accepted connection must see its peer go
    net.wait(loop:create_task(function() srv:wait_closed() end))
  end))

  it("cancelling the waiting task stops connecting, without leaks", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local task = loop:create_task(function()
      return loop:create_connection(function() return {} end, "127.0.0.1", port)
    end)
    eddy.sleep(0)  -- the task is inside the connect now
    task:cancel()
    raises(function() eddy.await(task) end, errors.CancelledError)
    assert.is_true(task:cancelled())
  end))

  -- A listener whose accept queue is full drops SYNs: the connect waits.
  it("a connect that times out leaves no descriptor open (test_create_connection_timeout)",
     async(function(loop)
    local ls <close> = socket.socket()
    ls:bind({"127.0.0.1", 0})
    ls:listen(0)
    local addr, fillers = ls:getsockname(), {}
    for i = 1, 3 do  -- more than the queue takes (backlog + 1 on Linux)
      fillers[i] = socket.socket()
      fillers[i]:setblocking(false)
      pcall(fillers[i].connect, fillers[i], addr)  -- in progress
    end
    eddy.sleep(0.05)
    local function time_out()
      raises(function()
        eddy.wait_for(eddy.create_task(function()
          return loop:create_connection(function() return {} end, addr[1], addr[2])
        end), 0.2)
      end, errors.TimeoutError)
    end
    time_out()  -- (the loop's first libuv stream opens its EMFILE reserve, /dev/null)
    local fds = checks.count_fds()
    time_out()
    assert.equal(fds, checks.count_fds())
    for _, f in ipairs(fillers) do f:close() end
  end))

  it("a port may be a service name, looked up (test_create_connection_service_name)",
     async(function(loop)
    -- port 80 of 127.0.0.1: nothing listens in the test environment, and
    -- the refusal names the port the service name gave
    local ok, err = pcall(loop.create_connection, loop, function() return {} end,
                          "127.0.0.1", "http")
    if ok then err:close() else
      assert.truthy(errors.is(err, errors.ConnectionRefusedError), tostring(err))
      assert.truthy(tostring(err):find("('127.0.0.1', 80)", 1, true), tostring(err))
    end
    raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", "nonsense")
    end, errors.OSError)
  end))

  it("checks its TLS options before connecting (tls_spec has the rest)", async(function(loop)
    raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", 1, {ssl = "yes"})
    end, "bad option 'ssl' to 'create_connection' (eddy.ssl.SSLContext or true expected, got string)")
    raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", 1, {server_hostname = "x"})
    end, errors.ValueError)
  end))

  it("rejects bad arguments with clear errors", async(function(loop)
    argerror(function() loop:create_connection(nil, "127.0.0.1", 1) end, 1, "create_connection")
    argerror(function() loop:create_connection(function() end, 42, 1) end, 2, "create_connection")
    argerror(function() loop:create_connection(function() end, "h", 1.5) end, 3, "create_connection")
    raises(function() loop:create_connection(function() end, "h", 70000) end, errors.ValueError)
    raises(function() loop:create_connection(function() end, "h", 1, {bogus = 1}) end,
           "unknown option 'bogus'")
    raises(function() loop:create_connection(function() end) end, errors.ValueError)
    raises(function() loop:create_connection(function() end, "h", 1, {sock = {}}) end, errors.ValueError)
    argerror(function() loop:create_connection(function() end, "h", 1, {interleave = "x"}) end,
             4, "create_connection")
    for _, opts in ipairs {{family = "x"}, {proto = "x"}, {flags = 1.5}, {local_addr = 5}} do
      argerror(function() loop:create_connection(function() end, "h", 1, opts) end,
               4, "create_connection")
    end
    -- argument errors blame the caller's line, as C functions' do
    local ok, err = pcall(function() loop:create_connection(function() end, 42, 1) end)
    assert.is_false(ok)
    assert.matches("^spec/tcp_spec.lua:%d+: bad argument #2", err)
    raises(function()
      loop:create_connection(function() end, "no-such-host.invalid", 80)
    end, errors.DNSError)
    local srv <close>, port = net.echo_server(loop)
    raises(function() loop:create_connection(function() return 42 end, "127.0.0.1", port) end,
           {errors.RuntimeError, "protocol_factory must return a protocol"})
  end))

  it("refuses what asyncio's create_connection refuses before connecting "
     .. "(test_create_connection_host_port_sock, test_create_connection_no_host_port_sock, "
     .. "test_create_connection_wrong_sock, test_create_connection_no_ssl_server_hostname_errors, "
     .. "test_create_connection_ssl_server_hostname_errors, "
     .. "test_create_connection_ssl_timeout_for_plain_socket, "
     .. "test_connect_accepted_socket_ssl_timeout_for_plain_socket)", async(function(loop)
    local f = function() return {} end
    local sock <close> = socket.socket()
    raises(function() loop:create_connection(f, "127.0.0.1", 1, {sock = sock}) end,
           {errors.ValueError, "host/port and sock can not be specified at the same time"})
    raises(function() loop:create_connection(f) end,
           {errors.ValueError, "host and port was not specified and no sock specified"})
    local udp <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raises(function() loop:create_connection(f, nil, nil, {sock = udp}) end,
           {errors.ValueError, "A Stream Socket was expected"})
    raises(function() loop:create_connection(f, "127.0.0.1", 1, {server_hostname = "h"}) end,
           {errors.ValueError, "server_hostname is only meaningful with ssl"})
    raises(function() loop:create_connection(f, nil, nil, {sock = sock, ssl = true}) end,
           {errors.ValueError, "You must set server_hostname when using ssl without a host"})
    raises(function() loop:create_connection(f, "127.0.0.1", 1, {ssl_handshake_timeout = 1}) end,
           {errors.ValueError, "ssl_handshake_timeout is only meaningful with ssl"})
    raises(function() loop:connect_accepted_socket(f, sock, {ssl_handshake_timeout = 1}) end,
           {errors.ValueError, "ssl_handshake_timeout is only meaningful with ssl"})
  end))

  -- asyncio binds local_addr only to addresses of the remote address's
  -- family (gh-86508): none of them is an OSError.
  it("local_addr of another family than the host's raises OSError "
     .. "(test_create_connection_local_addr_nomatch_family)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", port, {local_addr = {"::1", 0}})
    end, errors.OSError)
  end))

  it("raises outside a task", function()
    local loop = eddy.new_event_loop()
    eddy.set_event_loop(loop)
    loop:call_soon(function()
      local ok, err = pcall(loop.create_connection, loop, function() end, "127.0.0.1", 1)
      assert(not ok and tostring(err):find("cannot suspend here"))
      loop:stop()
    end)
    loop:run_forever()
    loop:close()
    eddy.set_event_loop(nil)
  end)
end)

describe("TCP transport", function()
  it("a protocol whose method lookups raise is refused and its connection closed",
     async(function(loop)
    local function bomb()
      return setmetatable({}, {__index = function(_, k) error("no " .. k, 0) end})
    end
    local reports = {}
    loop:set_exception_handler(function(_, context) reports[#reports + 1] = context end)
    -- server side: reported as asyncio's "Error on transport creation for
    -- incoming connection", and the connection closed
    local srv = loop:create_server(bomb, "127.0.0.1", 0)
    local rec = net.recorder(loop)
    loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
    net.wait(rec.lost_fut)
    assert.equal(1, #reports)
    assert.equal("Error on transport creation for incoming connection", reports[1].message)
    assert.matches("^no get_buffer", tostring(reports[1].exception))
    srv:close()
    eddy.wait_for(function() srv:wait_closed() end, 5)  -- no connection left
    -- client side: create_connection raises the error, the transport closed
    local peers = {}
    local srv2 <close> = loop:create_server(function()
      peers[#peers + 1] = net.recorder(loop)
      return peers[#peers]
    end, "127.0.0.1", 0)
    local port = srv2.sockets[1]:getsockname()[2]
    raises(function() loop:create_connection(bomb, "127.0.0.1", port) end, "no get_buffer")
    net.wait_until(function() return peers[1] ~= nil end)
    net.wait(peers[1].lost_fut)
    -- set_protocol raises and keeps the protocol it had
    local t, rec2 = connect(loop, port)
    raises(function() t:set_protocol(bomb()) end, "no get_buffer")
    assert.equal(rec2, t:get_protocol())
    net.wait_until(function() return peers[2] ~= nil end)
    peers[2].transport:write("still here")
    rec2:wait_bytes(10)
    assert.equal("still here", rec2:data())
    t:close()
    net.wait(rec2.lost_fut)
  end))

  it("get_extra_info: peername, sockname, socket, default (test_get_extra_info, test_set_nodelay)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    assert.same({"127.0.0.1", port}, t:get_extra_info("peername"))
    assert.equal("127.0.0.1", t:get_extra_info("sockname")[1])
    local sock = t:get_extra_info("socket")
    assert.equal(eddy.socket.AF_INET, sock.family)
    assert.same(t:get_extra_info("sockname"), sock:getsockname())
    assert.equal(1, sock:getsockopt(eddy.socket.IPPROTO_TCP, eddy.socket.TCP_NODELAY))
    assert.is_nil(t:get_extra_info("cipher"))
    assert.equal("dflt", t:get_extra_info("nothing", "dflt"))
    t:close()
    net.wait(rec.lost_fut)
    assert.same({"127.0.0.1", port}, t:get_extra_info("peername"))  -- cached
  end))

  it("peername and sockname still answer in connection_lost (asyncio reads them at creation)",
     async(function(loop)
    local made, seen = {}, {}
    local function protocol(side)
      local p = {}
      function p.connection_made(_, t) p.t = t made[side] = true end
      function p.connection_lost()
        seen[side] = {p.t:get_extra_info("peername"), p.t:get_extra_info("sockname")}
      end
      return p
    end
    local srv <close> = loop:create_server(function() return protocol("server") end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local t = loop:create_connection(function() return protocol("client") end, "127.0.0.1", port)
    net.wait_until(function() return made.server end)
    t:close()                     -- client: close(); server: the peer's EOF
    net.wait_until(function() return seen.client and seen.server end)
    assert.same({"127.0.0.1", port}, seen.client[1])
    assert.same(seen.client[2], seen.server[1])
    assert.same({"127.0.0.1", port}, seen.server[2])
  end))

  it("write and writelines accept strings and Buffers, reject other types; write('') sends "
     .. "nothing (test_writelines, test_write_no_data)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    argerror(function() t:write({}) end, 1, "write")
    argerror(function() t:write(12) end, 1, "write")
    argerror(function() t:writelines("x") end, 1, "writelines")
    raises(function() t:writelines({"a", 1}) end, "bad element #2 in 'writelines'")
    t:write("")
    t:writelines({"a", "b", "c"})
    local buf = eddy.Buffer(2)
    t:write(buf)
    t:writelines({"d", eddy.Buffer(1), "e"})
    rec:wait_bytes(8)
    assert.equal("abc\0\0d\0e", rec:data())
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("drops writes after close and closes idempotently (test_write_after_close, test_close, "
     .. "test_write_closing)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    t:close()
    t:close()
    t:write("dropped")
    t:abort()
    net.wait(rec.lost_fut)
    t:write("dropped too")
    t:close()
    assert.is_true(t:is_closing())
    assert.same({"made", "lost"}, rec.events)
    assert.is_nil(t:get_protocol())
  end))

  it("abort drops queued data and calls connection_lost(nil) (test_abort, test_force_close)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    t:write(string.rep("a", 16 * 1024 * 1024))
    assert.is_true(t:get_write_buffer_size() > 0)
    t:abort()
    assert.equal(0, t:get_write_buffer_size())
    assert.is_true(t:is_closing())
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
  end))

  -- asyncio's close() (nothing queued) and abort() schedule
  -- _call_connection_lost with call_soon: it runs in the next iteration,
  -- before a sleep(0) of the task that closed returns; the loop's
  -- callbacks scheduled after the close come after it.
  it("connection_lost after close() or abort() runs by the next iteration, as asyncio's call_soon",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    for _, how in ipairs {"close", "abort"} do
      local t, rec = connect(loop, port)
      local order = {}
      rec.connection_lost = function() order[#order + 1] = "lost" end
      t[how](t)
      loop:call_soon(function() order[#order + 1] = "call_soon" end)
      eddy.sleep(0)
      order[#order + 1] = "sleep(0)"
      assert.same({"lost", "call_soon", "sleep(0)"}, order, how)
    end
  end))

  it("half-closes: write_eof, and eof_received returning true keeps writing open (test_write_eof, "
     .. "test_read_ready_eof_keep_open)",
     async(function(loop)
    -- The server answers after the client's EOF, then closes.
    local Srv = {}
    Srv.__index = Srv
    function Srv:connection_made(t) self.t = t self.got = {} end
    function Srv:data_received(d) self.got[#self.got + 1] = d end
    function Srv:eof_received()
      self.t:write("got " .. table.concat(self.got))
      self.t:close()
      return true
    end
    local srv <close> = loop:create_server(function() return setmetatable({}, Srv) end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local t, rec = connect(loop, port)
    assert.is_true(t:can_write_eof())
    t:write("question")
    t:write_eof()
    t:write_eof()
    raises(function() t:write("more") end, {errors.RuntimeError, "write_eof"})
    -- asyncio 3.12's writelines has its own check and message, even for {}
    raises(function() t:writelines({}) end,
           {errors.RuntimeError, "Cannot call writelines() after write_eof()"})
    net.wait(rec.lost_fut)
    assert.equal("got question", rec:data())
    assert.same({"made", "data", "eof", "lost"}, rec.events)
  end))

  -- asyncio's write_eof() with nothing queued calls sock.shutdown(SHUT_WR)
  -- at once: on a connection the peer reset, the OSError (ENOTCONN)
  -- reaches the caller, and the transport stays open with its EOF set.
  it("write_eof on a connection the peer reset raises OSError, as asyncio's shutdown",
     async(function(loop)
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) t:close() end}
    end, "127.0.0.1", 0)
    local t, rec = connect(loop, srv.sockets[1]:getsockname()[2], nil, {eof_keep = true})
    net.wait(rec.eof_fut)
    t:write("x")  -- to a closed socket: it answers with a reset
    local sock = t:get_extra_info("socket")
    net.wait_until(function() return sock:getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) ~= 0 end)
    local err = raises(function() t:write_eof() end, errors.OSError)
    assert.equal("ENOTCONN", err.code)
    raises(function() t:write("more") end, {errors.RuntimeError, "write_eof"})
    assert.is_false(t:is_closing())
    t:close()
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
  end))

  it("eof_received returning nothing closes the transport (test_read_ready_eof)", async(function(loop)
    local srv <close>, port, protos = net.echo_server(loop)
    local t, rec = connect(loop, port)
    net.wait_until(function() return protos[1] ~= nil end)
    protos[1].t:write_eof()  -- the echo server's side
    net.wait(rec.eof_fut)
    net.wait(rec.lost_fut)
    assert.same({"made", "eof", "lost"}, rec.events)
  end))

  it("pause_reading / resume_reading / is_reading (test_pause_reading, test_pause_resume_reading)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    assert.is_true(t:is_reading())
    t:pause_reading()
    t:pause_reading()
    assert.is_false(t:is_reading())
    t:write("x")
    eddy.sleep(0.05)
    assert.equal("", rec:data())
    t:resume_reading()
    t:resume_reading()
    assert.is_true(t:is_reading())
    rec:wait_bytes(1)
    t:close()
    assert.is_false(t:is_reading())
    net.wait(rec.lost_fut)
  end))

  it("limits set below what is buffered pause writing at once (test_flowcontrol_mixin_set_write_limits)",
     async(function(loop)
    -- a listener that never accepts: nothing reads what we send
    local l <close> = socket.socket()
    l:bind({"127.0.0.1", 0})
    l:listen(1)
    local t, rec = connect(loop, l:getsockname()[2])
    raises(function() t:set_write_buffer_limits(0, 1) end,
           {errors.ValueError, "high (0) must be >= low (1) must be >= 0"})
    t:set_write_buffer_limits(math.maxinteger)
    local chunk = string.rep("w", 1 << 20)
    while t:get_write_buffer_size() < 512 do
      t:write(chunk)
      eddy.sleep(0.001)
    end
    local size = t:get_write_buffer_size()
    t:set_write_buffer_limits(size + 1, 128)
    assert.same({128, size + 1}, {t:get_write_buffer_limits()})
    assert.same({"made"}, rec.events)
    t:set_write_buffer_limits(size - 1, 128)
    assert.same({"made", "pause"}, rec.events)
    t:abort()
    net.wait(rec.lost_fut)
  end))

  it("write buffer limits: defaults, setting, ValueError (test_set_write_buffer_limits)",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    assert.same({16384, 65536}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits(1000)
    assert.same({250, 1000}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits(nil, 100)
    assert.same({100, 400}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits(10, 5)
    assert.same({5, 10}, {t:get_write_buffer_limits()})
    raises(function() t:set_write_buffer_limits(5, 10) end, errors.ValueError)
    raises(function() t:set_write_buffer_limits(-1) end, errors.ValueError)
    -- low = high // 4, floor division as Python's
    raises(function() t:set_write_buffer_limits(-1) end, "high (-1) must be >= low (-1)")
    -- 4 * low saturates instead of overflowing (UBSan found it)
    raises(function() t:set_write_buffer_limits(nil, math.mininteger) end, errors.ValueError)
    t:set_write_buffer_limits(nil, math.maxinteger)
    assert.same({math.maxinteger, math.maxinteger}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits()
    assert.same({16384, 65536}, {t:get_write_buffer_limits()})
    assert.equal(0, t:get_write_buffer_size())
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("flow control: a slow reader pauses the writer, nothing is lost: what the socket did not "
     .. "take is buffered and sent in order (test_write_partial, test_write_ready_partial, "
     .. "test_write_buffer)", async(function(loop)
    -- The server side does not read until told to.
    local server_rec
    local srv <close> = loop:create_server(function()
      server_rec = net.recorder(loop)
      return server_rec
    end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local t, rec = connect(loop, port)
    net.wait_until(function() return server_rec ~= nil and server_rec.transport ~= nil end)
    server_rec.transport:pause_reading()
    local chunk = string.rep("0123456789abcdef", 4096)  -- 64 KiB
    local sent = 0
    while rec.events[#rec.events] ~= "pause" do
      t:write(chunk)
      sent = sent + #chunk
      assert(sent < 512 * 1024 * 1024, "pause_writing never came")
    end
    assert.is_true(t:get_write_buffer_size() > 65536)
    server_rec.transport:resume_reading()
    server_rec:wait_bytes(sent, 20)
    net.wait_until(function() return rec.events[#rec.events] == "resume" end)
    assert.equal(0, t:get_write_buffer_size())
    assert.equal(sent, #server_rec:data())
    assert.equal(string.rep(chunk, sent // #chunk), server_rec:data())
    t:close()
    net.wait(rec.lost_fut)
  end, 30))

  it("a huge write goes through whole (64 MiB)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t, rec = connect(loop, port)
    local data = string.rep("x", 64 * 1024 * 1024)
    t:write(data)
    rec:wait_bytes(#data, 20)
    assert.equal(#data, #rec:data())
    t:close()
    net.wait(rec.lost_fut)
  end, 30))

  it("a peer reset mid-write gives connection_lost(ConnectionResetError or BrokenPipeError) "
     .. "(test_write_exception)",
     async(function(loop)
    local srv <close>, port = net.resetting_server(loop)
    net.write_until_reset(connect(loop, port))
  end))

  it("close() and write_eof() with data queued send it first; connection_lost waits for it; "
     .. "write_eof after close does nothing (test_close_write_buffer, test_write_eof_buffer, "
     .. "test_write_eof_after_close)", async(function(loop)
    local server_rec
    local srv <close> = loop:create_server(function()
      server_rec = net.recorder(loop, {eof_keep = true})
      return server_rec
    end, "127.0.0.1", 0)
    local big = string.rep("w", 4 * 1024 * 1024)
    for _, how in ipairs {"close", "write_eof"} do
      server_rec = nil
      local t, rec = connect(loop, srv.sockets[1]:getsockname()[2])
      net.wait_until(function() return server_rec ~= nil and server_rec.transport ~= nil end)
      server_rec.transport:pause_reading()
      t:write(big)
      assert.is_true(t:get_write_buffer_size() > 0)
      t[how](t)
      eddy.sleep(0.05)
      assert.is_false(rec.lost_fut:done())  -- the buffer is not sent yet
      server_rec.transport:resume_reading()
      net.wait(server_rec.eof_fut, 20)
      assert.is_true(server_rec:data() == big)
      if how == "write_eof" then t:close() end
      net.wait(rec.lost_fut)
      assert.is_nil(rec.err)
      t:write_eof()  -- after close: nothing
      server_rec.transport:close()
    end
  end, 40))

  it("set_protocol switches the receiver; missing methods do nothing; a BufferedProtocol "
     .. "may take over from a plain one (test_proto_type_switch)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local t = loop:create_connection(function() return {} end, "127.0.0.1", port)
    t:write("to nobody")
    eddy.sleep(0.02)
    local rec = net.recorder(loop)
    t:set_protocol(rec)
    assert.equal(rec, t:get_protocol())
    t:write("to rec")
    rec:wait_bytes(6)
    assert.equal("to rec", rec:data())
    argerror(function() t:set_protocol(5) end, 1, "set_protocol")
    local buf, got = eddy.Buffer(4), {}
    local buffered = net.recorder(loop)
    function buffered:get_buffer() return buf end
    function buffered:buffer_updated(n) got[#got + 1] = buf:tostring(1, n) end
    t:set_protocol(buffered)
    t:write("to the buffer")
    net.wait_until(function() return #table.concat(got) == 13 end)
    assert.equal("to the buffer", table.concat(got))
    assert.equal("to rec", rec:data())
    t:close()
    net.wait(buffered.lost_fut)
  end))

  it("errors in eof_received, get_buffer and buffer_updated, and an empty buffer, are fatal: "
     .. "reported, then connection_lost(err) (test_read_eof_received_error, test_get_buffer_error, "
     .. "test_get_buffer_zerosized, test_buffer_updated_error)", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
    local srv <close>, port = net.echo_server(loop)
    local cases = {
      {{eof_received = function() error("eof boom") end}, "eof boom", "eof_received"},
      {{get_buffer = function() error("get_buffer boom") end}, "get_buffer boom", "get_buffer"},
      {{get_buffer = function() return eddy.Buffer(0) end}, "empty buffer", "get_buffer"},
      {{get_buffer = function() return eddy.Buffer(8) end, buffer_updated = function() error("updated boom") end},
       "updated boom", "buffer_updated"},
    }
    for i, case in ipairs(cases) do
      local proto, text, method = case[1], case[2], case[3]
      local lost = loop:create_future()
      proto.connection_lost = function(_, err) lost:set_result(err) end
      local t = loop:create_connection(function() return proto end, "127.0.0.1", port)
      if method == "eof_received" then t:write_eof() else t:write("x") end
      local err = net.wait(lost)
      assert.truthy(tostring(err):find(text, 1, true), tostring(err))
      assert.equal("Fatal error: protocol." .. method .. "() call failed.", reports[i])
      assert.is_true(t:is_closing())
    end
  end))

  it("pause_reading in connection_made holds the data until resume_reading "
     .. "(test_pause_reading_connection_made)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local rec = net.recorder(loop)
    function rec:connection_made(t) self.transport = t t:pause_reading() end
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    assert.is_false(t:is_reading())
    t:write("held")
    eddy.sleep(0.05)
    assert.equal("", rec:data())
    t:resume_reading()
    assert.is_true(t:is_reading())
    rec:wait_bytes(4)
    t:close()
    assert.is_false(t:is_reading())
    net.wait(rec.lost_fut)
  end))

  it("a protocol with no methods gets every call as asyncio's Protocol base class: nothing happens "
     .. "(test_base_protocol, test_protocol)", async(function(loop)
    local srv <close>, port, protos = net.echo_server(loop)
    local t = loop:create_connection(function() return {} end, "127.0.0.1", port)
    -- connection_made; pause_writing and resume_writing; data_received
    -- of the echo; eof_received, which closes; connection_lost
    t:set_write_buffer_limits(1)
    t:write(string.rep("x", 1 << 20))
    net.wait_until(function() return t:get_write_buffer_size() == 0 end)
    t:write_eof()
    net.wait_until(function() return protos[1].lost end)
    net.wait_until(function() return t:is_closing() end)
  end))

  it("errors in protocol callbacks go to the exception handler and close the transport "
     .. "(test_data_received_error)", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
    local srv <close>, port = net.echo_server(loop)
    local lost = loop:create_future()
    local t = loop:create_connection(function()
      return {data_received = function() error("boom") end,
              connection_lost = function(_, err) lost:set_result(err) end}
    end, "127.0.0.1", port)
    t:write("x")
    local err = net.wait(lost)
    assert.truthy(tostring(err):find("boom"))
    assert.equal(1, #reports)
    assert.equal("Fatal error: protocol.data_received() call failed.", reports[1].message)
    assert.equal(t, reports[1].transport)
    -- connection_lost gets the very value raised, not a copy with a traceback
    assert.matches("^spec/tcp_spec.lua:%d+: boom$", err)
    assert.matches("stack traceback", reports[1].exception)  -- the handler gets one
    local obj = errors.ValueError("bad data")
    lost = loop:create_future()
    t = loop:create_connection(function()
      return {data_received = function() error(obj) end,
              connection_lost = function(_, e) lost:set_result(e) end}
    end, "127.0.0.1", port)
    t:write("x")
    assert.equal(obj, net.wait(lost))
    assert.is_string(obj.traceback)
  end))

  it("an error in connection_made is reported and the connection goes on (asyncio calls it as a callback)",
     async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
    local srv <close>, port = net.echo_server(loop)
    local rec = net.recorder(loop)
    local made = rec.connection_made
    function rec.connection_made(self, tr)
      made(self, tr)
      error("made boom")
    end
    local t, p = loop:create_connection(function() return rec end, "127.0.0.1", port)
    assert.equal(rec, p)
    assert.is_false(t:is_closing())
    assert.equal(1, #reports)
    assert.equal("Exception in protocol.connection_made()", reports[1].message)
    t:write("still here")
    rec:wait_bytes(10)
    assert.equal("still here", rec:data())
    t:close()
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
  end))

  it("BufferedProtocol: get_buffer / buffer_updated (test_buffered_proto)", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local buf = eddy.Buffer(4)
    local got, hints = {}, {}
    local lost = loop:create_future()
    local proto = {
      get_buffer = function(_, hint) hints[#hints + 1] = hint return buf end,
      buffer_updated = function(_, n) got[#got + 1] = buf:tostring(1, n) end,
      connection_lost = function() lost:set_result(true) end,
    }
    local t = loop:create_connection(function() return proto end, "127.0.0.1", port)
    t:write("0123456789")
    net.wait_until(function() return #table.concat(got) == 10 end)
    assert.equal("0123456789", table.concat(got))
    assert.equal(-1, hints[1])  -- asyncio's selector transport asks -1
    t:close()
    net.wait(lost)
  end))

  it("a 100-byte buffer takes 9 KiB from a stream server, then writes back (test_buffered_proto_create_connection)",
     async(function(loop)
    local noise = string.rep("12345678+", 1024)
    local srv <close> = eddy.start_server(function(reader, writer)
      writer:write(noise)
      reader:readexactly(1)
      writer:close()
      writer:wait_closed()
    end, "127.0.0.1", 0)
    local buf, data, t = eddy.Buffer(100), {}, nil
    local lost = loop:create_future()
    t = loop:create_connection(function()
      return {
        get_buffer = function() return buf end,
        buffer_updated = function(_, n)
          data[#data + 1] = buf:tostring(1, n)
          if table.concat(data) == noise then t:write("1") end
        end,
        connection_lost = function(_, err) lost:set_result(err) end,
      }
    end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
    assert.is_nil(net.wait(lost))
    assert.equal(noise, table.concat(data))
  end))

  it("a get_buffer that returns no buffer is a fatal error", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
    local srv <close>, port = net.echo_server(loop)
    local lost = loop:create_future()
    local t = loop:create_connection(function()
      return {get_buffer = function() return "nope" end,
              buffer_updated = function() end,
              connection_lost = function(_, err) lost:set_result(err) end}
    end, "127.0.0.1", port)
    t:write("x")
    local err = net.wait(lost)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.equal("Fatal error: protocol.get_buffer() call failed.", reports[1].message)
  end))


  -- get_buffer runs inside libuv's read, between its allocation and the
  -- read itself: closing there once had libuv read a closed descriptor
  -- (an assertion, or a read of whatever reused the fd).
  it("get_buffer may close or abort its transport", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    for _, how in ipairs{"close", "abort"} do
      local lost = loop:create_future()
      local tr, updated = nil, 0
      loop:create_connection(function()
        return {connection_made = function(_, t) tr = t end,
                get_buffer = function() tr[how](tr) return eddy.Buffer(16) end,
                buffer_updated = function() updated = updated + 1 end,
                connection_lost = function(_, err) lost:set_result(err or false) end}
      end, "127.0.0.1", port)
      tr:write("x")
      assert.is_false(net.wait(lost))
      assert.equal(0, updated)
      assert.is_true(tr:is_closing())
    end
  end))

  it("get_buffer may pause reading; resuming delivers everything", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local buf, got, pauses = eddy.Buffer(4), {}, 0
    local tr
    tr = loop:create_connection(function()
      return {get_buffer = function()
                if pauses < 3 then
                  pauses = pauses + 1
                  tr:pause_reading()
                  loop:call_soon(function() tr:resume_reading() end)
                end
                return buf
              end,
              buffer_updated = function(_, n) got[#got + 1] = buf:tostring(1, n) end}
    end, "127.0.0.1", port)
    tr:write("0123456789")
    net.wait_until(function() return #table.concat(got) == 10 end)
    assert.equal("0123456789", table.concat(got))
    assert.equal(3, pauses)
    tr:close()
  end))
  it("serves 1000 concurrent connections (test_accept_connection_multiple)", async(function(loop)
    local srv <close>, port = net.echo_server(loop, "127.0.0.1", {backlog = 1024})
    local n, done = 1000, 0
    local tasks = {}
    for i = 1, n do
      tasks[i] = loop:create_task(function()
        local t, rec = connect(loop, port)
        local msg = "msg" .. i
        t:write(msg)
        rec:wait_bytes(#msg, 20)
        assert.equal(msg, rec:data())
        t:close()
        net.wait(rec.lost_fut)
        done = done + 1
      end)
    end
    eddy.gather(table.unpack(tasks))
    assert.equal(n, done)
  end, 30))

  -- An idle transport (paused, or EOF kept open) is not anchored, so that
  -- it can be collected once dropped (spec/soak_spec.lua); one its user
  -- keeps goes on working through collections.
  it("a paused transport kept by its user survives collections and reads on resume",
     async(function(loop)
    local srv <close>, port, protos = net.echo_server(loop)
    local t, rec = connect(loop, port)
    t:pause_reading()
    t:write("ping")
    net.wait_until(function() return protos[1] ~= nil and t:get_write_buffer_size() == 0 end)
    eddy.sleep(0.05)
    collectgarbage() collectgarbage()
    assert.same({"made"}, rec.events)
    t:resume_reading()
    rec:wait_bytes(4)
    t:close()
    net.wait(rec.lost_fut)
    assert.same({"made", "data", "lost"}, rec.events)
  end))

  it("a transport kept open after EOF survives collections, writes, and reports connection_lost",
     async(function(loop)
    local srv <close> = loop:create_server(function()
      local p = net.recorder(loop)
      function p.connection_made(self, tr) self.transport = tr tr:write_eof() end
      return p
    end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local t, rec = connect(loop, port, nil, {eof_keep = true})
    net.wait(rec.eof_fut)
    collectgarbage() collectgarbage()
    t:write("after eof")
    t:close()
    net.wait(rec.lost_fut)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
  end))

  it("loop:close() tears down open transports", function()
    local loop = eddy.new_event_loop()
    local rec
    local srv = loop:run_until_complete(function()
      local s, port = net.echo_server(loop)
      local _
      _, rec = connect(loop, port)
      return s
    end)
    assert.is_false(rec.lost_fut:done())
    loop:close()
    local opened, freed = loop:_handle_counts()
    assert.equal(opened, freed)
    assert.equal("lost", rec.events[#rec.events])
    assert.is_false(srv:is_serving() and false)
  end)

  it("loop:close() tears down a paused transport too (one the loop does not anchor)", function()
    local loop = eddy.new_event_loop()
    local t, rec = loop:run_until_complete(function()
      local _, port = net.echo_server(loop)
      return connect(loop, port)
    end)
    t:pause_reading()
    loop:close()
    local opened, freed = loop:_handle_counts()
    assert.equal(opened, freed)
    assert.same({"made", "lost"}, rec.events)
  end)
end)

-- asyncio's stream transports close their socket in _call_connection_lost,
-- after protocol.connection_lost returns (or raises): until then the
-- descriptor is open, and a closing transport no longer owns it for
-- add_reader (_ensure_fd_no_transport checks is_closing()).
describe("a closing transport's descriptor", function()
  -- A recorder that notes net.descriptor(t) in connection_lost.
  local function lost_recorder(loop, opts)
    opts = opts or {}
    opts.on_lost = function(self) self.fd_in_lost = net.descriptor(self.transport) end
    return net.recorder(loop, opts)
  end

  it("stays open after close() and abort() until connection_lost has returned",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    for _, how in ipairs {"close", "abort"} do
      local rec = lost_recorder(loop)
      local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
      t[how](t)
      assert.equal("open", net.descriptor(t), how)
      local sock = t:get_extra_info("socket")
      net.wait(rec.lost_fut)
      assert.equal("open", rec.fd_in_lost, how)
      assert.equal(-1, sock:fileno(), how)
      assert.equal("closed", net.descriptor(t), how)
    end
  end))

  it("stays open in connection_lost after queued writes drain, events in the same order",
     async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local rec = lost_recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    t:write(string.rep("q", 8 * 1024 * 1024))
    assert.is_true(t:get_write_buffer_size() > 0)
    t:close()
    net.wait(rec.lost_fut, 20)
    assert.equal("open", rec.fd_in_lost)
    assert.equal("lost", rec.events[#rec.events])
    assert.is_nil(rec.err)
  end))

  it("stays open in connection_lost after the peer's reset, an EOF that closes, "
     .. "and until a connection_lost that raises has returned", async(function(loop)
    local aborting <close>, aborting_port = net.resetting_server(loop)
    local rec = lost_recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", aborting_port)
    net.write_until_reset(t, rec)
    assert.equal("open", rec.fd_in_lost)

    local srv <close>, port, protos = net.echo_server(loop)
    rec = lost_recorder(loop)
    t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    net.wait_until(function() return protos[1] ~= nil end)
    protos[1].t:write_eof()
    net.wait(rec.lost_fut)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.equal("open", rec.fd_in_lost)

    local handled
    loop:set_exception_handler(function(_, ctx) handled = ctx.message end)
    rec = lost_recorder(loop)
    rec.opts.on_lost = function(self)
      self.fd_in_lost = net.descriptor(self.transport)
      error("lost fails")
    end
    t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    local sock = t:get_extra_info("socket")
    t:close()
    net.wait_until(function() return handled ~= nil end)
    loop:set_exception_handler(nil)
    assert.equal("Exception in protocol.connection_lost()", handled)
    assert.equal("open", rec.fd_in_lost)
    assert.equal(-1, sock:fileno())
  end))

  it("may be watched once the transport is closing: add_reader and remove_reader "
     .. "work on it until connection_lost", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local rec = lost_recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    local fd = t:get_extra_info("socket"):fileno()
    checks.raises(function() loop:add_reader(fd, function() end) end,
                  {errors.RuntimeError, "is used by transport"})
    t:close()
    assert.is_false(loop:remove_reader(fd))
    loop:add_reader(fd, function() end)
    assert.is_true(loop:remove_reader(fd))
    net.wait(rec.lost_fut)
  end))

  -- Closing an eddy.socket drops the watchers of its fd (fd-watchers.md):
  -- so does a transport closing its descriptor, before the number can be
  -- handed out again.
  it("takes a watcher left on it along when it closes", async(function(loop)
    local srv <close>, port = net.echo_server(loop)
    local rec = lost_recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    local fd = t:get_extra_info("socket"):fileno()
    t:close()
    loop:add_reader(fd, function() end)
    local removed = loop:create_future()
    -- in the batch of connection_lost, after it: before any poll
    loop:call_soon(function() removed:set_result(loop:remove_reader(fd)) end)
    assert.is_false(net.wait(removed))
    assert.is_true(rec.lost_fut:done())
  end))

  it("is open in the connection_lost of a server's clients (close_clients, abort_clients)",
     async(function(loop)
    for _, how in ipairs {"close_clients", "abort_clients"} do
      local recs = {}
      local srv <close> = loop:create_server(function()
        recs[#recs + 1] = lost_recorder(loop)
        return recs[#recs]
      end, "127.0.0.1", 0)
      local t, rec = connect(loop, srv.sockets[1]:getsockname()[2])
      net.wait_until(function() return recs[1] ~= nil end)
      srv:close()
      srv[how](srv)
      net.wait(recs[1].lost_fut)
      assert.equal("open", recs[1].fd_in_lost, how)
      t:close()
      net.wait(rec.lost_fut)
    end
  end))

  it("is open in the connection_lost that loop:close() calls", function()
    local loop = eddy.new_event_loop()
    local rec = lost_recorder(loop)
    loop:run_until_complete(function()
      local _, port = net.echo_server(loop)
      loop:create_connection(function() return rec end, "127.0.0.1", port)
    end)
    loop:close()
    assert.equal("open", rec.fd_in_lost)
    local opened, freed = loop:_handle_counts()
    assert.equal(opened, freed)
  end)

  it("in the connection_lost that loop:close() calls, the loop reads closed: "
     .. "close() there does nothing, running it raises", function()
    local loop = eddy.new_event_loop()
    local seen = {}
    local rec = net.recorder(loop, {on_lost = function()
      seen.closed = loop:is_closed()
      seen.close_ok = pcall(loop.close, loop)
      seen.run_ok, seen.run_err = pcall(loop.run_until_complete, loop, function() end)
      seen.forever_ok = pcall(loop.run_forever, loop)
    end})
    loop:run_until_complete(function()
      local _, port = net.echo_server(loop)
      loop:create_connection(function() return rec end, "127.0.0.1", port)
    end)
    loop:close()
    assert.is_true(loop:is_closed())
    assert.is_true(seen.closed)
    assert.is_true(seen.close_ok)
    assert.is_false(seen.run_ok)
    assert.matches("Event loop is closed", tostring(seen.run_err))
    assert.is_false(seen.forever_ok)
    local opened, freed = loop:_handle_counts()
    assert.equal(opened, freed)
  end)
end)

-- asyncio's _force_close clears the write buffer: nothing queued when
-- abort() (or a forced close) comes is sent, though eddy keeps a socket's
-- descriptor open until connection_lost.  The peer reads right after
-- abort(), in a callback that stops the loop: that ends the loop's turn,
-- and libuv then polls (uv_run: idle, then poll) with the transport
-- writable, before connection_lost runs in the next run.  A socket pair
-- stands for the connection, so that what the peer reads frees the
-- writer's side at once (no TCP window to reopen).
describe("abort() with writes queued", function()
  -- Write 64 KiB chunks until some are queued, then "END": returns how
  -- many bytes the kernel took.
  local function fill(t)
    local written = 0
    for _ = 1, 4096 do
      t:write(string.rep("x", 65536))
      written = written + 65536
      if t:get_write_buffer_size() > 0 then break end
    end
    t:write("END")
    return written + 3 - t:get_write_buffer_size()
  end

  -- Read p (non-blocking) until it would block or ends: bytes, ended.
  local function drain(p)
    local n = 0
    while true do
      local ok, data = pcall(p.recv, p, 1 << 20)
      if not ok then
        assert.equal("EAGAIN", data.code)
        return n, false
      end
      if data == "" then return n, true end
      n = n + #data
    end
  end

  -- open(loop, factory, sock) -> transport, with the peer p; finish(t, p)
  -- closes it, or makes it fail in the poll that follows: the bytes p
  -- receives, to its EOF, are those the kernel took before.  Returns the
  -- recorder and what the exception handler got.
  local function check(open, finish, rec_opts)
    local loop = eddy.new_event_loop()
    local a, p = checks.nonblocking_pair()
    local _ <close> = p
    local rec = net.recorder(loop, rec_opts)
    local handled = {}
    loop:set_exception_handler(function(_, ctx) handled[#handled + 1] = ctx.message end)
    local t, taken
    loop:run_until_complete(function()
      t = open(loop, function() return rec end, a)
      taken = fill(t)
    end)
    local got = 0
    loop:call_soon(function()
      finish(t, p)
      got = drain(p)
      loop:stop()  -- the turn ends with this iteration: libuv polls
    end)
    loop:run_forever()
    loop:run_until_complete(function()
      net.wait(rec.lost_fut)
      local deadline = loop:time() + 5
      while loop:time() < deadline do
        local n, ended = drain(p)
        got = got + n
        if ended then break end
        eddy.sleep(0.01)
      end
    end)
    assert.equal(taken, got)
    loop:close()
    return rec, handled
  end

  local function accepted(loop, factory, a) return loop:connect_accepted_socket(factory, a) end
  local function abort(t) t:abort() end

  it("sends none of them over a socket, which stays open until connection_lost",
     function()
    local rec, handled = check(accepted, abort, {on_lost = function(self)
      self.fd_in_lost = net.descriptor(self.transport)
    end})
    assert.equal("open", rec.fd_in_lost)
    assert.is_nil(rec.err)
    assert.same({}, handled)
  end)

  it("sends none of them over a write pipe, whose handle closes at once", function()
    local rec = check(function(loop, factory, a)
      return loop:connect_write_pipe(factory, a)
    end, abort)
    assert.same({"made", "lost"}, rec.events)
  end)

  it("nor does a fatal error in the poll that also finds the socket writable", function()
    local boom = errors.RuntimeError("boom")
    local rec, handled = check(accepted, function(_, p) p:send("!") end,
                               {on_data = function() error(boom) end})
    assert.equal(boom, rec.err)
    assert.same({"Fatal error: protocol.data_received() call failed."}, handled)
  end)
end)

describe("eddy.Buffer", function()
  it("has a size and returns its bytes", function()
    local b = eddy.Buffer(5)
    assert.equal(5, #b)
    assert.equal("\0\0\0\0\0", b:tostring())
    assert.equal("\0\0", b:tostring(2, 3))
    assert.equal("", b:tostring(4, 2))
    assert.equal("\0", b:tostring(-1))
    assert.equal(0, #eddy.Buffer(0))
    argerror(function() eddy.Buffer(-1) end, 1, "Buffer")
  end)
end)
