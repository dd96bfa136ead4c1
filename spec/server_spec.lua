-- Servers: loop:create_server and the Server object (API.md §3 "Servers",
-- §4).  Descriptions name the CPython test a case follows, where there is
-- one.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local raises, argerror = checks.raises, checks.argerror

local function port_of(srv, i) return srv.sockets[i or 1]:getsockname()[2] end

-- Connect a Recorder; returns transport, recorder.
local function connect(loop, port, host)
  local rec = net.recorder(loop)
  local t = loop:create_connection(function() return rec end, host or "127.0.0.1", port)
  return t, rec
end

describe("create_server", function()
  it("loop:close() closes a serving server's sockets: it no longer says it serves", function()
    local loop = eddy.new_event_loop()
    local srv = loop:run_until_complete(function()
      return (loop:create_server(function() return {} end, "127.0.0.1", 0))
    end)
    assert.is_true(srv:is_serving())
    loop:close()
    assert.same({}, srv.sockets)
    assert.is_false(srv:is_serving())
    assert.matches("not serving", tostring(srv), 1, true)
  end)

  it("picks a free port for port 0 and serves (test_create_server, test_get_loop)", async(function(loop)
    local srv, port, protos = net.echo_server(loop)
    assert.is_true(port > 0)
    assert.is_true(srv:is_serving())
    assert.equal(loop, srv:get_loop())
    assert.equal(1, #srv.sockets)
    assert.equal(eddy.socket.AF_INET, srv.sockets[1].family)
    local t, rec = connect(loop, port)
    t:write("abc")
    rec:wait_bytes(3)
    t:close()
    net.wait(rec.lost_fut)
    net.wait_until(function() return protos[1].lost end)
    raises(function() srv.sockets = {} end, "cannot set field 'sockets' of eddy.Server")
    srv:close()
    assert.is_false(srv:is_serving())
    assert.same({}, srv.sockets)
    srv:wait_closed()
    srv:close()  -- idempotent
  end))

  it("listens on every interface for nil and \"\" hosts (IPv4 and IPv6) (test_create_server_dual_stack, test_create_server_empty_host, test_create_server_ipv6)", async(function(loop)
    for _, host in ipairs {false, ""} do
      local srv <close> = loop:create_server(function() return {} end, host or nil, 0)
      local families = {}
      for _, s in ipairs(srv.sockets) do families[s.family] = s:getsockname()[2] end
      assert.is_not_nil(families[eddy.socket.AF_INET])
      assert.is_not_nil(families[eddy.socket.AF_INET6])
      local t = connect(loop, families[eddy.socket.AF_INET6], "::1")
      t:close()
    end
  end))

  it("takes a list of hosts", async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, {"127.0.0.1", "::1"}, 0)
    assert.equal(2, #srv.sockets)
    local t = connect(loop, port_of(srv, 1), srv.sockets[1]:getsockname()[1])
    t:close()
  end))

  it("start_serving = false waits for start_serving() (test_create_server_start_serving)",
     async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0,
                                           {start_serving = false})
    assert.is_false(srv:is_serving())
    local port = port_of(srv)
    raises(function() connect(loop, port) end, errors.ConnectionRefusedError)
    srv:start_serving()
    assert.is_true(srv:is_serving())
    srv:start_serving()  -- serving already: nothing more
    local t, rec = connect(loop, port)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("start_serving() on a closed server raises RuntimeError, as serve_forever()",
     async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0,
                                   {start_serving = false})
    srv:close()
    raises(function() srv:start_serving() end, {errors.RuntimeError, "server is closed"})
    assert.is_false(srv:is_serving())
    srv:wait_closed()
  end))

  it("serve_forever: cancelling it closes the server (test_serve_forever)", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0, {start_serving = false})
    local task = loop:create_task(function() srv:serve_forever() end)
    eddy.sleep(0.01)
    assert.is_true(srv:is_serving())
    raises(function() srv:serve_forever() end, {errors.RuntimeError, "already being awaited"})
    task:cancel()
    raises(function() eddy.await(task) end, errors.CancelledError)
    assert.is_false(srv:is_serving())
    raises(function() srv:serve_forever() end, {errors.RuntimeError, "server is closed"})
  end))

  it("close() ends serve_forever with CancelledError", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local task = loop:create_task(function() srv:serve_forever() end)
    eddy.sleep(0.01)
    srv:close()
    raises(function() eddy.await(task) end, errors.CancelledError)
  end))

  it("wait_closed waits for every connection after close (asyncio 3.12)", async(function(loop)
    local srv, port, protos = net.echo_server(loop)
    local t, rec = connect(loop, port)
    net.wait_until(function() return protos[1] ~= nil end)
    srv:close()
    local waiter = loop:create_task(function() srv:wait_closed() return true end)
    eddy.sleep(0.05)
    assert.is_false(waiter:done())
    t:close()
    assert.is_true(net.wait(waiter))
    net.wait(rec.lost_fut)
  end))

  it("close_clients and abort_clients end the accepted connections", async(function(loop)
    for _, method in ipairs {"close_clients", "abort_clients"} do
      local srv, port, protos = net.echo_server(loop)
      local _, r1 = connect(loop, port)
      local _, r2 = connect(loop, port)
      net.wait_until(function() return #protos == 2 end)
      srv:close()
      srv[method](srv)
      net.wait(r1.lost_fut)
      net.wait(r2.lost_fut)
      srv:wait_closed()
      assert.is_true(protos[1].lost and protos[2].lost)
    end
  end))

  it("<close> closes the server and waits", async(function(loop)
    local srv2
    do
      local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
      srv2 = srv
    end
    assert.is_false(srv2:is_serving())
    srv2:wait_closed()
  end))

  it("EADDRINUSE without reuse_port; reuse_port shares the port (test_create_server_reuse_port, test_create_server_addr_in_use, test_create_server_cant_bind)", async(function(loop)
    local a <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local err = raises(function()
      loop:create_server(function() return {} end, "127.0.0.1", port_of(a))
    end, errors.OSError)
    assert.equal("EADDRINUSE", err.code)
    assert.truthy(tostring(err):find("error while attempting to bind on address", 1, true))
    local b <close> = loop:create_server(function() return {} end, "127.0.0.1", 0, {reuse_port = true})
    local c <close> = loop:create_server(function() return {} end, "127.0.0.1", port_of(b),
                                         {reuse_port = true, reuse_address = false, keep_alive = true})
    assert.equal(port_of(b), port_of(c))
  end))

  it("takes a bound eddy.socket with sock= (test_create_server_sock)", async(function(loop)
    local socket = eddy.socket
    local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s:bind({"127.0.0.1", 0})
    local port = s:getsockname()[2]
    local srv <close> = loop:create_server(function() return {} end, nil, nil, {sock = s})
    assert.equal(port, port_of(srv))
    local t, rec = connect(loop, port)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("reports a failing protocol factory and keeps serving", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
    local n = 0
    local srv <close> = loop:create_server(function()
      n = n + 1
      if n == 1 then error("factory failed") end
      return {}
    end, "127.0.0.1", 0)
    local t1, r1 = connect(loop, port_of(srv))
    net.wait(r1.lost_fut)
    assert.equal("Error on transport creation for incoming connection", reports[1].message)
    assert.truthy(tostring(reports[1].exception):find("factory failed"))
    -- one traceback, the factory's (not a second one of the rethrow)
    local _, tracebacks = tostring(reports[1].exception):gsub("stack traceback:", "")
    assert.equal(1, tracebacks)
    local t2, r2 = connect(loop, port_of(srv))
    eddy.sleep(0.02)
    assert.is_false(r2.lost_fut:done())
    t2:close()
    net.wait(r2.lost_fut)
    t1:close()
  end))

  it("from a plain callback raises RuntimeError naming itself, with nothing left serving",
     async(function(loop)
    local made, errs = 0, {}
    local factory = function() made = made + 1 return {} end
    local done = loop:create_future()
    loop:call_soon(function()
      errs[1] = select(2, pcall(loop.create_server, loop, factory, "127.0.0.1", 0))
      errs[2] = select(2, pcall(loop.create_unix_server, loop, factory, "\0eddy-spec-cb"))
      -- suspending in name even when nothing waits, as connect_accepted_socket
      errs[3] = select(2, pcall(loop.create_server, loop, factory, "127.0.0.1", 0,
                                {start_serving = false}))
      done:set_result()
    end)
    done:await()
    assert.matches("^RuntimeError: create_server%(%) cannot suspend here", tostring(errs[1]))
    assert.matches("^RuntimeError: create_unix_server%(%) cannot suspend here", tostring(errs[2]))
    assert.matches("^RuntimeError: create_server%(%) cannot suspend here", tostring(errs[3]))
    -- nothing was bound: the abstract name is free, no server accepts
    local srv <close> = loop:create_unix_server(factory, "\0eddy-spec-cb")
    assert.equal(0, made)
  end))

  -- API.md §1, §4 and §11 to the letter: the Server's suspending methods
  -- raise from a plain callback even when they would not wait.
  it("start_serving, serve_forever and wait_closed raise from a plain callback, changing nothing",
     async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0, {start_serving = false})
    local closed = loop:create_server(function() return {} end, "127.0.0.1", 0)
    closed:close()
    closed:wait_closed()  -- in a task: returns at once now
    local errs = checks.from_callback(loop, {{"start_serving", srv.start_serving, srv},
                                             {"serve_forever", srv.serve_forever, srv},
                                             {"wait_closed", closed.wait_closed, closed}})
    for _, name in ipairs {"start_serving", "serve_forever", "wait_closed"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", errs[name])
    end
    assert.is_false(srv:is_serving())  -- not listening
    srv:close()
    srv:wait_closed()
  end))

  it("refuses what asyncio's create_server refuses before binding "
     .. "(test_create_server_host_port_sock, test_create_server_no_host_port_sock, "
     .. "test_create_server_wrong_sock, test_create_server_ssl_timeout_for_plain_socket)",
     async(function(loop)
    local S = eddy.socket
    local f = function() return {} end
    local sock <close> = S.socket()
    raises(function() loop:create_server(f, "127.0.0.1", 0, {sock = sock}) end,
           {errors.ValueError, "host/port and sock can not be specified at the same time"})
    raises(function() loop:create_server(f) end,
           {errors.ValueError, "Neither host/port nor sock were specified"})
    local udp <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    raises(function() loop:create_server(f, nil, nil, {sock = udp}) end,
           {errors.ValueError, "A Stream Socket was expected"})
    raises(function() loop:create_server(f, "127.0.0.1", 0, {ssl_handshake_timeout = 1}) end,
           {errors.ValueError, "ssl_handshake_timeout is only meaningful with ssl"})
  end))

  it("binds each of several hosts once, duplicates dropped "
     .. "(test_create_server_multiple_hosts_ipv4, test_create_server_multiple_hosts_ipv6)",
     async(function(loop)
    for _, hosts in ipairs {{"127.0.0.1", "127.0.0.2", "127.0.0.1"}, {"::1", "::1"}} do
      local srv <close> = loop:create_server(function() return {} end, hosts, 0)
      local bound = {}
      for _, s in ipairs(srv.sockets) do bound[#bound + 1] = s:getsockname()[1] end
      table.sort(bound)
      local want = hosts[2] == "::1" and {"::1"} or {"127.0.0.1", "127.0.0.2"}
      assert.same(want, bound)
    end
  end))

  it("a closed server refuses connections (test_server_close)", async(function(loop)
    local srv = loop:create_server(function() return {} end, "0.0.0.0", 0)
    local port = port_of(srv)
    local c = eddy.socket.socket()
    c:connect({"127.0.0.1", port})
    c:send("xxx")
    c:close()
    srv:close()
    c = eddy.socket.socket()
    raises(function() c:connect({"127.0.0.1", port}) end, errors.ConnectionRefusedError)
    c:close()
    srv:wait_closed()
  end))

  it("rejects bad arguments with clear errors", async(function(loop)
    argerror(function() loop:create_server(42) end, 1, "create_server")
    argerror(function() loop:create_server(function() end, 42, 0) end, 2, "create_server")
    argerror(function() loop:create_server(function() end, {"ok", 1}, 0) end, 2, "create_server")
    argerror(function() loop:create_server(function() end, "127.0.0.1", "x", 5) end, 4, "create_server")
    argerror(function() loop:create_server(function() end, "127.0.0.1", 0, {backlog = "x"}) end,
             4, "create_server")
    raises(function() loop:create_server(function() end, "127.0.0.1", -1) end, errors.ValueError)
    raises(function() loop:create_server(function() end, "127.0.0.1", 0, {reuse = true}) end,
           "unknown option 'reuse'")
    raises(function() loop:create_server(function() end, "127.0.0.1", 0, {ssl = {}}) end,
           "bad option 'ssl' to 'create_server' (eddy.ssl.SSLContext expected, got table)")
    raises(function() loop:create_server(function() end) end, errors.ValueError)
    raises(function() loop:create_server(function() end, "256.1.1.1", 0) end, errors.DNSError)
    raises(function() loop:create_server(function() end, "192.0.2.1", 0) end,
           "could not bind on any address")
    for _, k in ipairs {"family", "flags"} do
      argerror(function() loop:create_server(function() end, "127.0.0.1", 0, {[k] = "x"}) end,
               4, "create_server")
    end
    -- argument errors blame the caller's line, as C functions' do
    local ok, err = pcall(function() loop:create_server(function() end, 42, 0) end)
    assert.is_false(ok)
    assert.matches("^spec/server_spec.lua:%d+: bad argument #2", err)
  end))

  -- Out of descriptors, libuv calls connection_cb with EMFILE and accepts
  -- again at once, forever, when its reserve descriptor is missing (a
  -- server made while every descriptor was taken).  The script runs with
  -- `ulimit -n 64`; its clients connect into the backlog before it takes
  -- every descriptor.
  local emfile_script = [[
local eddy = require "eddy"
local S = require "eddy.socket"
eddy.run(function()
  local loop = eddy.get_running_loop()
  local reports = {}
  loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
  local function listening(nclients)
    local ls = S.socket(S.AF_INET, S.SOCK_STREAM)
    ls:bind({"127.0.0.1", 0}); ls:listen(10); ls:setblocking(false)
    local clients = {}
    for i = 1, nclients do
      clients[i] = S.socket(S.AF_INET, S.SOCK_STREAM)
      clients[i]:connect(ls:getsockname())
    end
    return ls, clients
  end
  local ls1, c1 = listening(2)
  local ls2, c2 = listening(3)
  local fill = {}
  local function take_all()
    while true do
      local ok, s = pcall(S.socket, S.AF_INET, S.SOCK_DGRAM)
      if not ok then return end
      fill[#fill + 1] = s
    end
  end
  -- 1. No descriptor even for a spare: the listening socket is closed.
  take_all()
  local srv1 = loop:create_server(function() return {} end, nil, nil, {sock = ls1})
  for _ = 1, 50 do eddy.sleep(0.01) if #reports > 0 then break end end
  print("closed:", #reports, reports[1])
  -- 2. A spare, libuv's reserve missing: pause, then accept every client.
  take_all()                      -- what closing the socket freed
  local got = 0
  local srv2 = loop:create_server(function() got = got + 1 return {} end, nil, nil,
                                  {sock = ls2, start_serving = false})
  table.remove(fill):close()
  srv2:start_serving()            -- opens the spare
  table.remove(fill):close()
  take_all()
  for _ = 1, 50 do eddy.sleep(0.01) if #reports > 1 then break end end
  print("paused:", #reports, reports[2], got)
  for _, s in ipairs(fill) do s:close() end
  for _ = 1, 500 do eddy.sleep(0.01) if got == 3 then break end end
  print("resumed:", #reports, got)
  srv1:close(); srv2:close()
  for _, c in ipairs(c1) do c:close() end
  for _, c in ipairs(c2) do c:close() end
end)
print("done")
]]

  it("out of descriptors, pauses accepting as asyncio, never spins (test_accept_connection_exception)", async(function(loop)
    local binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
    local script = net.tempfile(emfile_script)
    local proc = net.spawn(string.format("ulimit -n 64; exec %s %s", binary, script), 30)
    net.wait_until(proc.done, 30)
    local out = proc.output()
    proc.cleanup()
    assert.truthy(out:find("closed:\t1\tsocket.accept() out of system resource, with no spare "
                           .. "descriptor to pause on: the listening socket is closed\n", 1, true), out)
    assert.truthy(out:find("paused:\t2\tsocket.accept() out of system resource\t0\n", 1, true), out)
    assert.truthy(out:find("resumed:\t2\t3\ndone\n", 1, true), out)
  end, 40))

  -- Any other accept error libuv also reports and accepts again at once,
  -- forever: the loop never ran again.  tests/acceptfail.c makes accept4
  -- fail with errno arg[1] while the file arg[2] exists.
  local accept_error_script = [[
local eddy = require "eddy"
local S = require "eddy.socket"
local flag = arg[2]
eddy.run(function()
  local loop = eddy.get_running_loop()
  local reports = {}
  loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
  local got = 0
  local srv = eddy.start_server(function() got = got + 1 end, "127.0.0.1", 0)
  local fd = srv.sockets[1]:fileno()
  local port = srv.sockets[1]:getsockname()[2]
  local c1 = S.socket(S.AF_INET, S.SOCK_STREAM)
  c1:connect({"127.0.0.1", port})
  eddy.sleep(0.3)  -- with the loop spinning in libuv, never returned
  print("paused:", #reports, reports[1].message, tostring(reports[1].exception), got)
  os.remove(flag)
  for _ = 1, 300 do eddy.sleep(0.01) if got == 1 then break end end
  local c2 = S.socket(S.AF_INET, S.SOCK_STREAM)
  c2:connect({"127.0.0.1", port})  -- the same socket listens again
  for _ = 1, 300 do eddy.sleep(0.01) if got == 2 then break end end
  print("resumed:", #reports, got, srv:is_serving(), #srv.sockets,
        srv.sockets[1]:fileno() ~= fd)
  srv:close()
  c1:close(); c2:close()
end)
print("done")
]]

  -- Run script under tests/acceptfail.c, accept4 failing with errno while
  -- a flag file exists (its path is the script's arg[2]); more: extra
  -- environment.  Returns the output.
  local function run_accept_failing(script, errno, more)
    local binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
    local shim = binary:gsub("eddy$", "tests/libacceptfail.so")
    local path = net.tempfile(script)
    local flag = net.tempfile("")
    -- tests/acceptfail.c comes before a sanitizer runtime: allow that.
    local proc = net.spawn(string.format(
      "ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 %s EDDY_ACCEPT_ERRNO=%d "
      .. "EDDY_ACCEPT_FAIL_WHILE=%s LD_PRELOAD=%s exec %s %s %d %s",
      more or "", errno, flag, shim, binary, path, errno, flag), 20)
    net.wait_until(proc.done, 20)
    local out = proc.output()
    proc.cleanup()
    os.remove(flag)
    return out
  end

  for _, case in ipairs {
    {"ENOBUFS", 105, "socket.accept() out of system resource"},
    {"ENOMEM", 12, "socket.accept() out of system resource"},
    {"EPERM", 1, "socket.accept() failed"},  -- say, a firewall's
  } do
    local name, errno, message = case[1], case[2], case[3]
    it("pauses accepting on " .. name .. " too, never spins", async(function()
      local out = run_accept_failing(accept_error_script, errno)
      assert.truthy(out:find("paused:\t1\t" .. message .. "\t", 1, true), out)
      assert.truthy(out:find("resumed:\t1\t2\ttrue\t1\ttrue\ndone\n", 1, true), out)
    end, 30))
  end

  it("closes the listening socket, reported, when it cannot be reopened",
     async(function()
    local out = run_accept_failing([[
local eddy = require "eddy"
local S = require "eddy.socket"
eddy.run(function()
  local loop = eddy.get_running_loop()
  local reports = {}
  loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
  local srv = eddy.start_server(function() end, "127.0.0.1", 0)
  local c = S.socket(S.AF_INET, S.SOCK_STREAM)
  c:connect({"127.0.0.1", srv.sockets[1]:getsockname()[2]})
  for _ = 1, 300 do eddy.sleep(0.01) if #reports == 2 then break end end
  os.remove(arg[2])
  for _, r in ipairs(reports) do print(r.message, tostring(r.exception)) end
  print("sockets:", #srv.sockets)
  srv:close()
  srv:wait_closed()
  c:close()
end)
print("done")
]], 105, "EDDY_DUP_FAIL=1")
    assert.truthy(out:find("socket.accept() out of system resource\tOSError: "
      .. "accept: no buffer space available\n"
      .. "Error reopening the listening socket after an accept error: it is "
      .. "closed\tOSError: cannot duplicate the listening socket: Too many "
      .. "open files\nsockets:\t0\ndone\n", 1, true), out)
  end, 30))
end)

-- CPython's test_server.py: stream servers (eddy.start_server) closing,
-- waited for, and their clients closed or aborted.
describe("stream servers (test_server)", function()
  local tmp = require "support.tmp"

  -- A handler that reads a line, cancels 'main' (a task running
  -- serve_forever), answers "1" and closes (BaseStartServer's serve).
  local function cancelling_handler(tasks)
    return function(reader, writer)
      reader:readline()
      tasks.main:cancel()
      writer:write("1")
      writer:close()
      writer:wait_closed()
    end
  end

  -- The client of BaseStartServer: a 5 KiB line, then one byte back.
  local function hello(reader, writer)
    writer:write(string.rep("1", 5 * 1024) .. "\n")
    assert.equal("1", reader:readexactly(1))
    writer:close()
    writer:wait_closed()
  end

  -- The server is closed for good: no sockets, not serving, and
  -- serve_forever refuses to start.
  local function assert_closed_for_good(srv)
    assert.same({}, srv.sockets)
    assert.is_false(srv:is_serving())
    raises(function() srv:serve_forever() end, {errors.RuntimeError, "is closed"})
  end

  it("serve_forever under <close>, cancelled by a handler, closes the server (test_start_server_1)",
     async(function(loop)
    local tasks = {}
    local srv = eddy.start_server(cancelling_handler(tasks), "127.0.0.1", 0, {start_serving = false})
    assert.is_false(srv:is_serving())
    tasks.main = loop:create_task(function()
      local s <close> = srv
      s:serve_forever()
    end)
    net.wait_until(function() return srv:is_serving() end)
    hello(eddy.open_connection("127.0.0.1", port_of(srv)))
    raises(function() net.wait(tasks.main) end, errors.CancelledError)
    assert_closed_for_good(srv)
  end))

  it("start_serving then serve_forever over a UNIX socket, cancelled by a handler (test_start_unix_server_1)",
     async(function(loop)
    local path = tmp.path(".sock")
    local tasks, started = {}, eddy.Event()
    local srv = eddy.start_unix_server(cancelling_handler(tasks), path, {start_serving = false})
    tasks.main = loop:create_task(function()
      local s <close> = srv
      assert.is_false(s:is_serving())
      s:start_serving()
      assert.is_true(s:is_serving())
      started:set()
      s:serve_forever()
    end)
    net.wait(loop:create_task(started.wait, started))
    hello(eddy.open_unix_connection(path))
    raises(function() net.wait(tasks.main) end, errors.CancelledError)
    assert_closed_for_good(srv)
  end))

  -- A handler that reads to EOF, then closes its writer and waits.
  local function read_then_close(reader, writer)
    local ok, err = pcall(reader.read, reader)
    writer:close()
    writer:wait_closed()
    if not ok then error(err, 0) end
  end

  -- Start wait_closed in a task and check, a turn later, that it waits;
  -- returns the task.
  local function waiting_wait_closed(loop, srv)
    local task = loop:create_task(srv.wait_closed, srv)
    eddy.sleep(0)
    assert.is_false(task:done())
    return task
  end

  it("wait_closed waits until the server is closed and its last connection gone (test_wait_closed_basic)",
     async(function(loop)
    local srv = eddy.start_server(read_then_close, "127.0.0.1", 0)
    -- no connection, not closed: waits
    local task1 = waiting_wait_closed(loop, srv)
    -- a connection, not closed: waits
    local _, wr = eddy.open_connection("127.0.0.1", port_of(srv))
    local task2 = waiting_wait_closed(loop, srv)
    assert.is_false(task1:done())
    srv:close()
    eddy.sleep(0)
    -- a connection, closed: waits
    local task3 = waiting_wait_closed(loop, srv)
    assert.is_false(task1:done() or task2:done())
    wr:close()
    wr:wait_closed()
    -- no connection, closed: every waiter wakes, a new one returns at once
    net.wait(task1)
    net.wait(task2)
    net.wait(task3)
    srv:wait_closed()
  end))

  it("wait_closed with close and the last connection's close scheduled together (test_wait_closed_race)",
     async(function(loop)
    local srv = eddy.start_server(read_then_close, "127.0.0.1", 0)
    local task = waiting_wait_closed(loop, srv)
    local _, wr = eddy.open_connection("127.0.0.1", port_of(srv))
    loop:call_soon(srv.close, srv)
    loop:call_soon(wr.close, wr)
    net.wait(loop:create_task(srv.wait_closed, srv))
    net.wait(task)
  end))

  -- close() and then close_clients() or abort_clients(): a wait_closed
  -- already waiting returns within two turns, as asyncio's.
  local function close_with(loop, srv, method)
    local task = waiting_wait_closed(loop, srv)
    srv:close()
    srv[method](srv)
    eddy.sleep(0)
    eddy.sleep(0)
    assert.is_true(task:done())
  end

  it("close_clients closes the connections, so that wait_closed returns (test_close_clients)",
     async(function(loop)
    local srv = eddy.start_server(read_then_close, "127.0.0.1", 0)
    local _, wr <close> = eddy.open_connection("127.0.0.1", port_of(srv))
    close_with(loop, srv, "close_clients")
  end))

  it("abort_clients ends connections with writes stuck in their buffers (test_abort_clients)",
     async(function(loop)
    local S = eddy.socket
    local accepted = loop:create_future()
    local srv = eddy.start_server(function(rd, wr)
      accepted:set_result({rd, wr})
      wr:wait_closed()
    end, "127.0.0.1", 0)
    local _, c_wr <close> = eddy.open_connection("127.0.0.1", port_of(srv), {limit = 4096})
    local s_wr = net.wait(accepted)[2]
    -- small socket buffers, to fill them surely
    local s_sock, c_sock = s_wr:get_extra_info("socket"), c_wr:get_extra_info("socket")
    s_sock:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 65536)
    c_sock:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 65536)
    -- the client's reader pauses its transport past twice its limit
    for _ = 1, 3 do s_wr:write(string.rep("a", 4096)) end
    net.wait_until(function() return not c_wr.transport:is_reading() end)
    -- then the server's writes pile up in its transport's buffer
    local c_bufsize = c_sock:getsockopt(S.SOL_SOCKET, S.SO_RCVBUF)
    local s_bufsize = s_sock:getsockopt(S.SOL_SOCKET, S.SO_SNDBUF)
    for _ = 1, 10 do
      s_wr:write(string.rep("a", c_bufsize))
      s_wr:write(string.rep("a", s_bufsize))
      if s_wr.transport:get_write_buffer_size() > 0 then break end
    end
    assert.is_true(s_wr.transport:get_write_buffer_size() > 0)
    close_with(loop, srv, "abort_clients")
  end))
end)
