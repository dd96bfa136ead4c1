-- Black-box cases, second pass: written from /work/shared/API.md alone (and
-- asyncio's documentation, by API.md §1's translation rules) for the
-- sections the first pass (blackbox_spec.lua) left: §7 transports and
-- protocols, §4 handles and servers, §1's rules, §2 getting a loop, §10
-- support modules.  Realistic programs that combine several features,
-- and documented edge cases no other spec covers; every description
-- cites the API.md section it checks.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local expect_error = checks.expect_error

-- A server whose protocols come from make_proto(), and a client
-- connected to it with client_proto(): returns the server, the client
-- transport and protocol, and the server-side transport.
local function connected(loop, make_proto, client_proto)
  local accepted = loop:create_future()
  local srv = loop:create_server(function()
    local p = make_proto()
    local made = p.connection_made
    function p:connection_made(t)
      if made then made(self, t) end
      accepted:set_result(t)
    end
    return p
  end, "127.0.0.1", 0)
  local t, p = loop:create_connection(client_proto, "127.0.0.1", srv.sockets[1]:getsockname()[2])
  return srv, t, p, net.wait(accepted)
end

describe("§7 transports and protocols", function()
  it("§7 a key-value protocol over raw transports: lines split across writes, half-closed "
     .. "both ways, callbacks in asyncio's order on each side", async(function(loop)
    local log = {}
    -- The server answers each "get k" line from its table, and keeps its
    -- write side open after the client's EOF (eof_received true) to send
    -- a summary, then half-closes too.
    local Store = {}
    Store.__index = Store
    function Store:connection_made(t) self.t, self.pending, self.n = t, "", 0; log[#log + 1] = "S made" end
    function Store:data_received(d)
      self.pending = self.pending .. d
      for line in self.pending:gmatch("([^\n]*)\n") do
        self.n = self.n + 1
        self.t:write(({a = "1", b = "2"})[line:match("^get (%w+)$")] or "?")
        self.t:write("\n")
      end
      self.pending = self.pending:match("[^\n]*$")
    end
    function Store:eof_received()
      log[#log + 1] = "S eof, closing=" .. tostring(self.t:is_closing())
      self.t:write("served " .. self.n .. "\n")
      self.t:write_eof()
      return true
    end
    function Store:connection_lost(err) log[#log + 1] = "S lost " .. tostring(err) end
    local srv = loop:create_server(function() return setmetatable({}, Store) end, "127.0.0.1", 0)

    local client = net.recorder(loop, {eof_keep = true})
    local t = loop:create_connection(function() return client end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
    assert.is_true(t:can_write_eof())
    t:write("get a\nge")
    eddy.sleep(0.01)
    t:writelines({"t b\n", "get zz\n"})
    t:write_eof()
    assert.is_false(t:is_closing())
    net.wait(client.eof_fut)
    assert.equal("1\n2\n?\nserved 3\n", client:data())
    -- Both directions are shut: neither side has closed, so nothing is lost yet.
    assert.same({"S made", "S eof, closing=false"}, log)
    assert.same({"made", "data", "eof"}, client.events)
    assert.is_false(t:is_closing())
    t:close()
    net.wait(client.lost_fut)
    assert.is_nil(client.err)
    srv:close()
    srv:close_clients()
    srv:wait_closed()
    assert.same({"S made", "S eof, closing=false", "S lost nil"}, log)
    assert.same({"made", "data", "eof", "lost"}, client.events)
  end))

  it("§7 a producer task that writes while resume_writing allows: real watermarks, "
     .. "buffer sizes, every byte reaches a reader that pauses itself", async(function(loop)
    -- The reader takes 64 KiB, then pauses reading for a while, so the
    -- writer's buffer passes its high mark.
    local received = 0
    local reader_t
    local srv, t, producer = connected(loop, function()
      return {
        connection_made = function(_, tr) reader_t = tr end,
        data_received = function(_, d)
          local before = received
          received = received + #d
          if before < 65536 and received >= 65536 then
            reader_t:pause_reading()
            loop:call_later(0.05, function() reader_t:resume_reading() end)
          end
        end,
      }
    end, function()
      local p = {paused = 0, resumed = 0}
      function p:pause_writing()
        self.paused = self.paused + 1
        self.can_write = loop:create_future()
      end
      function p:resume_writing()
        self.resumed = self.resumed + 1
        self.can_write:set_result(true)
      end
      return p
    end)
    t:set_write_buffer_limits(32768, 8192)
    assert.same({8192, 32768}, {t:get_write_buffer_limits()})
    local chunk, total, max_buffered = string.rep("p", 16384), 4 * 1024 * 1024, 0
    for _ = 1, total // #chunk do
      if producer.can_write and not producer.can_write:done() then
        assert.is_true(t:get_write_buffer_size() > 32768)
        net.wait(producer.can_write)
        assert.is_true(t:get_write_buffer_size() <= 8192)
      end
      t:write(chunk)
      max_buffered = math.max(max_buffered, t:get_write_buffer_size())
    end
    assert.is_true(producer.paused >= 1)
    assert.is_true(producer.resumed >= 1)
    -- The buffer never grows much past the high mark plus one chunk.
    assert.is_true(max_buffered <= 32768 + #chunk, "buffered " .. max_buffered)
    net.wait_until(function() return received == total end)
    t:close()
    srv:close()
    srv:wait_closed()
  end))

  it("§7 UDP: an oversize datagram (EMSGSIZE) and a send to port 0 (EINVAL) go to "
     .. "error_received; the endpoint stays open and goes on sending", async(function(loop)
    local got = loop:create_future()
    local peer = loop:create_datagram_endpoint(function()
      return {datagram_received = function(_, d) got:set_result(d) end}
    end, {"127.0.0.1", 0})
    local errs = {}
    local t = loop:create_datagram_endpoint(function()
      return {error_received = function(_, err) errs[#errs + 1] = err end}
    end, {"127.0.0.1", 0})
    t:sendto(string.rep("x", 70000), peer:get_extra_info("sockname"))
    t:sendto("x", {"127.0.0.1", 0})
    net.wait_until(function() return #errs == 2 end)
    assert.is_true(errors.is(errs[1], errors.OSError))
    assert.equal("EMSGSIZE", errs[1].code)
    assert.equal("EINVAL", errs[2].code)
    assert.is_false(t:is_closing())
    t:sendto("still here", peer:get_extra_info("sockname"))
    assert.equal("still here", net.wait(got))
    t:close()
    peer:close()
  end))

  it("§7 a protocol switched from plain to buffered in its own data_received gets the "
     .. "rest through get_buffer", async(function(loop)
    local chunks, buf = {}, eddy.Buffer(3)
    local buffered = {
      get_buffer = function() return buf end,
      buffer_updated = function(_, n) chunks[#chunks + 1] = "B:" .. buf:tostring(1, n) end,
    }
    local srv, t = connected(loop, function()
      return {
        connection_made = function(self, tr) self.t = tr end,
        data_received = function(self, d)
          chunks[#chunks + 1] = "P:" .. d
          self.t:set_protocol(buffered)
        end,
      }
    end, function() return {} end)
    t:write("one")
    net.wait_until(function() return #chunks == 1 end)
    t:write("twotwo")
    net.wait_until(function() return #chunks == 3 end)
    assert.same({"P:one", "B:two", "B:two"}, chunks)
    t:close()
    srv:close()
    srv:wait_closed()
  end))

  it("§7 data and EOF that arrive while reading is paused wait for resume_reading, "
     .. "then come in order: data, eof_received, connection_lost", async(function(loop)
    local log = {}
    local srv, t, _, st = connected(loop, function()
      return {
        connection_made = function(_, tr) tr:pause_reading() end,
        data_received = function(_, d) log[#log + 1] = "data " .. d end,
        eof_received = function() log[#log + 1] = "eof" end,
        connection_lost = function(_, err) log[#log + 1] = "lost " .. tostring(err) end,
      }
    end, function() return {} end)
    t:write("abc")
    t:write_eof()
    eddy.sleep(0.05)
    assert.same({}, log)
    assert.is_false(st:is_closing())
    st:resume_reading()
    net.wait_until(function() return #log == 3 end)
    assert.same({"data abc", "eof", "lost nil"}, log)
    t:close()
    srv:close()
    srv:wait_closed()
  end))

  it("§7/§1 protocol methods may be any callable: tables with __call get the protocol "
     .. "and the arguments, on stream, datagram and subprocess transports", async(function(loop)
    local calls = {}
    local function callable(name)
      return setmetatable({}, {__call = function(_, proto, arg)
        calls[#calls + 1] = name .. (type(arg) == "string" and " " .. arg or "")
        if proto.on_call then proto.on_call(name) end
      end})
    end
    local stream_done = loop:create_future()
    local srv = loop:create_server(function()
      return {
        connection_made = callable("made"), data_received = callable("data"),
        eof_received = callable("eof"), connection_lost = callable("lost"),
        on_call = function(name) if name == "lost" then stream_done:set_result(true) end end,
      }
    end, "127.0.0.1", 0)
    local t = loop:create_connection(function() return {} end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
    t:write("tcp")
    t:write_eof()
    net.wait(stream_done)
    t:close()
    srv:close()
    srv:wait_closed()
    assert.same({"made", "data tcp", "eof", "lost"}, calls)

    calls = {}
    local got = loop:create_future()
    local dgram = loop:create_datagram_endpoint(function()
      return {datagram_received = callable("datagram"), on_call = function() got:set_result(true) end}
    end, {"127.0.0.1", 0})
    local sender = loop:create_datagram_endpoint(function() return {} end, nil, dgram:get_extra_info("sockname"))
    sender:sendto("udp")
    net.wait(got)
    sender:close()
    dgram:close()
    assert.same({"datagram udp"}, calls)

    calls = {}
    local exited = loop:create_future()
    local proc = loop:subprocess_exec(function()
      return {
        pipe_data_received = callable("pipe"), process_exited = callable("exited"),
        connection_lost = function() exited:set_result(true) end,
      }
    end, "printf", "out", {stdin = eddy.subprocess.DEVNULL, stderr = eddy.subprocess.DEVNULL})
    net.wait(exited)
    proc:close()
    assert.same({"pipe", "exited"}, calls)
  end))

  it("§7 subprocess transport and its pipes: a filter fed through stdin, stdout and stderr "
     .. "apart, stdin closed for EOF, every pipe lost before connection_lost", async(function(loop)
    local events, out, err = {}, {}, {}
    local finished = loop:create_future()
    local t = loop:subprocess_exec(function()
      return {
        connection_made = function() events[#events + 1] = "made" end,
        pipe_data_received = function(_, fd, d)
          local into = fd == 1 and out or err
          into[#into + 1] = d
        end,
        pipe_connection_lost = function(_, fd, e) events[#events + 1] = "pipe " .. fd .. " " .. tostring(e) end,
        process_exited = function() events[#events + 1] = "exited" end,
        connection_lost = function(_, e) events[#events + 1] = "lost " .. tostring(e); finished:set_result(true) end,
      }
    end, "sh", "-c", "tr a-z A-Z; echo done >&2; exit 4")
    assert.is_number(t:get_pid())
    local stdin = t:get_pipe_transport(0)
    stdin:write("hello ")
    stdin:writelines({"pipes", "\n"})
    stdin:close()
    net.wait(finished)
    assert.equal("HELLO PIPES\n", table.concat(out))
    assert.equal("done\n", table.concat(err))
    assert.equal(4, t:get_returncode())
    assert.equal("made", events[1])
    assert.equal("lost nil", events[#events])
    table.sort(events)
    assert.same({"exited", "lost nil", "made", "pipe 0 nil", "pipe 1 nil", "pipe 2 nil"}, events)
    t:close()
  end))
end)

describe("§4 handles and servers", function()
  it("§4 a server's life: wait_closed called while serving waits for close() and the "
     .. "last client; close_clients while serving keeps it accepting", async(function(loop)
    local srv, port = net.echo_server(loop)
    local closed = eddy.create_task(function() srv:wait_closed(); return "closed" end)
    local a = net.recorder(loop)
    loop:create_connection(function() return a end, "127.0.0.1", port)
    net.wait(a.made_fut)
    srv:close_clients()
    net.wait(a.lost_fut)
    assert.is_true(srv:is_serving())
    local b = net.recorder(loop)
    local tb = loop:create_connection(function() return b end, "127.0.0.1", port)
    tb:write("still served")
    b:wait_bytes(12)
    srv:close()
    assert.same({}, srv.sockets)
    expect_error(errors.ConnectionRefusedError, loop.create_connection, loop,
                 function() return {} end, "127.0.0.1", port)
    -- b's connection survives the close: wait_closed waits for it.
    tb:write(" after close")
    b:wait_bytes(24)
    checks.turns(3)
    assert.is_false(closed:done())
    tb:close()
    assert.equal("closed", net.wait(closed))
  end))

  it("§4/§1 a server under <close> in a task cancelled while a client is connected: the "
     .. "close waits for that client, a second cancel ends the wait", async(function(loop)
    local port = loop:create_future()
    local task = eddy.create_task(function()
      local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
      port:set_result(srv.sockets[1]:getsockname()[2])
      eddy.sleep(10)
    end)
    local client = net.recorder(loop)
    local t = loop:create_connection(function() return client end, "127.0.0.1", net.wait(port))
    checks.turns(2)
    task:cancel()
    eddy.sleep(0.05)
    assert.is_false(task:done())
    -- The server is closed already: only its connection keeps __close waiting.
    expect_error(errors.ConnectionRefusedError, loop.create_connection, loop,
                 function() return {} end, "127.0.0.1", port:result())
    task:cancel()
    expect_error(errors.CancelledError, net.wait, task)
    assert.is_true(task:cancelled())
    assert.is_false(client.lost_fut:done())
    t:close()
  end))

  it("§4 a call_soon made after past-due timers runs before them; they run by when, "
     .. "equal times in scheduling order", async(function(loop)
    local log = {}
    local now = loop:time()
    loop:call_at(now - 1, function() log[#log + 1] = "past" end)
    loop:call_later(0, function() log[#log + 1] = "zero" end)
    loop:call_at(now - 1, function() log[#log + 1] = "past again" end)
    loop:call_soon(function() log[#log + 1] = "soon" end)
    net.wait_until(function() return #log == 4 end)
    assert.same({"soon", "past", "past again", "zero"}, log)
  end))
end)

describe("§1 translation rules", function()
  it("§1 the functions that forward ... pass trailing nils through, counted",
    async(function(loop)
      local seen = {}
      local function count(tag) return function(...) seen[tag] = select("#", ...) end end
      loop:call_soon(count("call_soon"), nil, nil, nil)
      loop:call_soon_threadsafe(count("call_soon_threadsafe"), 1, nil)
      loop:call_later(0, count("call_later"), nil, nil)
      loop:call_at(loop:time(), count("call_at"), nil)
      loop:create_task(count("loop:create_task"), nil, nil):await()
      eddy.create_task(count("eddy.create_task"), 1, nil, nil):await()
      assert.equal(2, loop:run_in_executor(nil, function(...) return select("#", ...) end, nil, nil):await())
      assert.equal(3, eddy.to_thread(function(...) return select("#", ...) end, nil, 2, nil))
      do
        local tg <close> = eddy.TaskGroup()
        tg:create_task(count("TaskGroup:create_task"), nil, nil)
      end
      eddy.copy_context():run(count("Context:run"), nil, nil)
      local a, b = checks.nonblocking_pair()
      local wrote = loop:create_future()
      loop:add_writer(a, function(...)
        loop:remove_writer(a)
        wrote:set_result(select("#", ...))
      end, nil, nil)
      assert.equal(2, net.wait(wrote))
      a:close()
      b:close()
      net.wait_until(function() return seen.call_at end)
      assert.same({
        call_soon = 3, call_soon_threadsafe = 2, call_later = 2, call_at = 1,
        ["loop:create_task"] = 2, ["eddy.create_task"] = 3,
        ["TaskGroup:create_task"] = 2, ["Context:run"] = 2,
      }, seen)
    end))

  it("§1 a table with a metatable where the options go is not an options table",
    async(function(loop)
      local opts = setmetatable({backlog = 5}, {})
      local ok, err = pcall(loop.create_server, loop, function() return {} end, "127.0.0.1", 0, opts)
      assert.is_false(ok)
      assert.matches("bad argument #4 to 'create_server'", tostring(err), 1, true)
      -- The same fields in a plain table are the options.
      local srv = loop:create_server(function() return {} end, "127.0.0.1", 0, {backlog = 5})
      srv:close()
      srv:wait_closed()
    end))
end)

describe("§2 getting a loop", function()
  it("§2 eddy.run leaves the thread's current loop as it was, open, before and after",
    function()
      local current = eddy.get_event_loop()
      local inside = eddy.run(function() return eddy.get_event_loop() end)
      assert.are_not.equal(current, inside)
      assert.is_true(inside:is_closed())
      assert.equal(current, eddy.get_event_loop())
      assert.is_false(current:is_closed())
      -- Two runs one after another: two loops, each closed when its run ends.
      local again = eddy.run(function() return eddy.get_running_loop() end)
      assert.are_not.equal(inside, again)
      assert.is_true(again:is_closed())
      assert.equal(current, eddy.get_event_loop())
    end)
end)

describe("§10 support modules", function()
  it("§10 eddy.socket objects through the loop: sock_accept and sock_connect, then the "
     .. "accepted socket to connect_accepted_socket and the client to create_connection(sock=)",
    async(function(loop)
      local socket = eddy.socket
      local lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      lsock:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      lsock:bind({"127.0.0.1", 0})
      lsock:listen()
      lsock:setblocking(false)
      local csock = socket.socket()
      csock:setblocking(false)
      local accepting = eddy.create_task(function() return loop:sock_accept(lsock) end)
      loop:sock_connect(csock, lsock:getsockname())
      local conn, addr = net.wait(accepting)
      assert.same(csock:getsockname(), addr)
      conn:setblocking(false)
      csock:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
      assert.are_not.equal(0, csock:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

      local server_side = net.recorder(loop)
      local st = loop:connect_accepted_socket(function() return server_side end, conn)
      local client_side = net.recorder(loop)
      local ct = loop:create_connection(function() return client_side end, nil, nil, {sock = csock})
      assert.same(st:get_extra_info("peername"), ct:get_extra_info("sockname"))
      ct:write("ping")
      server_side:wait_bytes(4)
      st:write("pong")
      st:write_eof()
      net.wait(client_side.eof_fut)
      assert.equal("pong", client_side:data())
      ct:close()
      net.wait(server_side.lost_fut)
      lsock:close()
    end))
end)
