-- Conformance of subprocesses, signals, the executor, DNS and fd watchers
-- (API.md §3's loop methods for them, §10 eddy.subprocess) with asyncio as
-- CPython 3.13 implements it (Lib/asyncio/subprocess.py, unix_events.py,
-- base_events.py; Lib/test/test_asyncio): behaviours the area specs
-- (subprocess_spec, signal_spec, executor_spec, dns_spec, fdwatch_spec) and
-- conformance2_spec do not already check.  Real children and signals;
-- every wait bounded.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local socket = eddy.socket
local S = eddy.signal
local PIPE, STDOUT = eddy.subprocess.PIPE, eddy.subprocess.STDOUT
local raises, turns, bounded = checks.raises, checks.turns, checks.bounded

describe("§10 eddy.subprocess Process (asyncio subprocess.py)", function()
  it("§10 communicate() with 2 MiB of input to a child that echoes it all back: no deadlock "
     .. "though both pipes fill (asyncio feeds stdin and reads stdout at once)", async(function()
    local input = string.rep("0123456789abcdef", 1 << 17)
    local p = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE})
    local out, err = bounded(function() return p:communicate(input) end)
    assert.equal(#input, #out)
    assert.is_true(out == input)
    assert.is_nil(err)
    assert.equal(0, p.returncode)
  end))

  it("§10 communicate() a second time returns empty output, not nil, and the return code "
     .. "(asyncio: stdout read() at EOF is b'', stdin already closed)", async(function()
    local p = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE})
    assert.equal("abc", (bounded(function() return p:communicate("abc") end)))
    local out, err = bounded(function() return p:communicate() end)
    assert.equal("", out)
    assert.is_nil(err)
    out = bounded(function() return p:communicate("more") end)
    assert.equal("", out)
    assert.equal(0, p.returncode)
  end))

  it("§10 stdout = PIPE, stderr = STDOUT: both outputs in stdout, in order; the stderr field "
     .. "and communicate's second result are nil", async(function()
    local p = eddy.create_subprocess_shell("echo one; echo two >&2; echo three",
                                           {stdout = PIPE, stderr = STDOUT})
    assert.is_nil(p.stderr)
    local out, err = bounded(function() return p:communicate() end)
    assert.equal("one\ntwo\nthree\n", out)
    assert.is_nil(err)
  end))

  it("§10 a program that does not exist: FileNotFoundError, errno 2 (ENOENT), before any "
     .. "Process (asyncio: Popen's FileNotFoundError)", async(function()
    local err = raises(function()
      eddy.create_subprocess_exec("/nonexistent/eddy-prog", {stdout = PIPE})
    end, errors.FileNotFoundError)
    assert.equal(2, err.errno)
    assert.equal("ENOENT", err.code)
  end))

  it("§10 create_subprocess_shell of a command the shell cannot find: no error, return code "
     .. "127, the shell's message on stderr", async(function()
    local p = eddy.create_subprocess_shell("eddy_no_such_command_x", {stderr = PIPE})
    local out, err = bounded(function() return p:communicate() end)
    assert.is_nil(out)
    assert.equal(127, p.returncode)
    assert.truthy(err:find("not found", 1, true), err)
  end))

  it("§10/§8 limit = 16: readuntil on 100 bytes with no separator raises LimitOverrunError "
     .. "(consumed 100) and leaves the data buffered, as asyncio's StreamReader with the "
     .. "process's limit", async(function()
    local p = eddy.create_subprocess_exec("head", "-c", "100", "/dev/zero",
                                          {stdout = PIPE, limit = 16})
    net.wait_until(function() return p.returncode ~= nil end)
    turns(3)
    local err = raises(function() p.stdout:readuntil("\n") end, errors.LimitOverrunError)
    assert.equal(100, err.consumed)
    -- the data stays buffered: read() to EOF gets all of it
    assert.equal(string.rep("\0", 100), bounded(function() return p.stdout:read() end))
    assert.equal(0, bounded(function() return p:wait() end))
  end))

  it("§10 env replaces the whole environment and cwd sets the directory "
     .. "(asyncio passes them to Popen)", async(function()
    local p = eddy.create_subprocess_exec("/bin/sh", "-c", "pwd; env",
                                          {stdout = PIPE, cwd = "/", env = {EDDY_C5 = "x y"}})
    local out = bounded(function() return p:communicate() end)
    local lines = {}
    for l in out:gmatch("[^\n]+") do
      if l ~= "PWD=/" and l ~= "SHLVL=1" and not l:find("^_=") then lines[#lines + 1] = l end
    end
    assert.same({"/", "EDDY_C5=x y"}, lines)
  end))

  it("§10 send_signal by name: \"SIGTERM\" is terminate(), wait() gives -15 and the "
     .. "returncode field too", async(function()
    local p = eddy.create_subprocess_exec("sleep", "30")
    p:send_signal("SIGTERM")
    assert.equal(-S.SIGTERM, bounded(function() return p:wait() end))
    assert.equal(-S.SIGTERM, p.returncode)
  end))

  it("§10 kill() while communicate() waits: communicate returns the output so far and "
     .. "returncode -9", async(function()
    local mark = os.tmpname()
    os.remove(mark)
    local p = eddy.create_subprocess_shell("echo early; : > " .. mark .. "; exec sleep 30",
                                           {stdout = PIPE})
    local t = eddy.create_task(function() return p:communicate() end)
    net.wait_until(function() return io.open(mark) ~= nil end)
    os.remove(mark)
    p:kill()
    local out = eddy.wait_for(t, 10)
    assert.equal("early\n", out)
    assert.equal(-9, p.returncode)
  end))
end)

describe("§3 subprocess_exec / SubprocessProtocol (asyncio base_subprocess.py)", function()
  it("§3 process_exited comes after every pipe_data_received of a child that wrote much "
     .. "and exited at once, and connection_lost last", async(function(loop)
    local rec = {events = {}, n = 0, lost = loop:create_future()}
    function rec:pipe_data_received(_, data) self.n = self.n + #data end
    function rec:pipe_connection_lost(fd) self.events[#self.events + 1] = "pipe_lost " .. fd end
    function rec:process_exited() self.events[#self.events + 1] = "exited " .. self.n end
    function rec:connection_lost() self.events[#self.events + 1] = "lost" self.lost:set_result() end
    local t = loop:subprocess_exec(function() return rec end, "head", "-c", "300000", "/dev/zero",
                                   {stdin = eddy.subprocess.DEVNULL})
    net.wait(rec.lost, 10)
    assert.equal(300000, rec.n)
    assert.equal("lost", rec.events[#rec.events])
    t:close()
  end))
end)

describe("§3 subprocess pipe transports", function()
  it("§7 get_extra_info(\"pipe\") of a child's pipe transport gives the default (asyncio: "
     .. "the Popen's file object, which eddy has not: docs/subprocess.md)", async(function(loop)
    local rec = {lost = loop:create_future()}
    function rec:connection_lost() self.lost:set_result() end
    local t = loop:subprocess_exec(function() return rec end, "true")
    for fd = 0, 2 do
      assert.equal("none", t:get_pipe_transport(fd):get_extra_info("pipe", "none"))
    end
    net.wait(rec.lost)
    t:close()
  end))
end)

describe("§3 signal handlers (asyncio unix_events.py)", function()
  it("§3 two signals sent while the loop is busy: each handler runs once per signal, in the "
     .. "order they arrived (asyncio reads the wakeup fd's bytes in order)", async(function(loop)
    local calls = {}
    local function h(tag) calls[#calls + 1] = tag end
    loop:add_signal_handler(S.SIGUSR2, h, "u2")
    loop:add_signal_handler("SIGUSR1", h, "u1")
    S.kill(S.getpid(), S.SIGUSR2)
    S.kill(S.getpid(), S.SIGUSR1)
    S.kill(S.getpid(), S.SIGUSR2)
    S.kill(S.getpid(), S.SIGUSR1)
    net.wait_until(function() return #calls >= 4 end)
    turns(3)
    assert.same({"u2", "u1", "u2", "u1"}, calls)
    assert.is_true(loop:remove_signal_handler("SIGUSR2"))
    assert.is_true(loop:remove_signal_handler(S.SIGUSR1))
    assert.is_false(loop:remove_signal_handler(S.SIGUSR1))
  end))

  it("§3 a handler that removes itself still runs for a second signal read in the same "
     .. "turn (asyncio's remove_signal_handler leaves the queued Handle), then no more",
     async(function(loop)
    local calls = {}
    local function h(tag)
      calls[#calls + 1] = tag
      if tag == "u1" then loop:remove_signal_handler(S.SIGUSR1) end
    end
    loop:add_signal_handler(S.SIGUSR2, h, "u2")
    loop:add_signal_handler(S.SIGUSR1, h, "u1")
    S.kill(S.getpid(), S.SIGUSR2)
    S.kill(S.getpid(), S.SIGUSR1)
    S.kill(S.getpid(), S.SIGUSR2)
    S.kill(S.getpid(), S.SIGUSR1)
    net.wait_until(function() return #calls >= 4 end)
    eddy.sleep(0.05)
    assert.same({"u2", "u1", "u2", "u1"}, calls)
    assert.is_true(loop:remove_signal_handler(S.SIGUSR2))
  end))

  it("§3 add_signal_handler by name and remove_signal_handler by number name the same "
     .. "signal; the handler returns nothing (asyncio: None)", async(function(loop)
    local n = 0
    assert.is_nil(loop:add_signal_handler("SIGUSR2", function() n = n + 1 end))
    S.kill(S.getpid(), "SIGUSR2")
    net.wait_until(function() return n == 1 end)
    assert.is_true(loop:remove_signal_handler(S.SIGUSR2))
    assert.is_false(loop:remove_signal_handler("SIGUSR2"))
  end))
end)

describe("§3 DNS (asyncio base_events.getaddrinfo / getnameinfo)", function()
  it("§3 getaddrinfo filters by proto: IPPROTO_UDP alone gives SOCK_DGRAM entries only",
     async(function(loop)
    local infos = loop:getaddrinfo("127.0.0.1", 53, {family = socket.AF_INET,
                                                     proto = socket.IPPROTO_UDP})
    assert.equal(1, #infos)
    assert.equal(socket.SOCK_DGRAM, infos[1].type)
    assert.equal(socket.IPPROTO_UDP, infos[1].proto)
    assert.same({"127.0.0.1", 53}, infos[1].sockaddr)
  end))

  it("§3 getaddrinfo with no host and no AI_PASSIVE gives the loopback address; no port "
     .. "gives port 0", async(function(loop)
    local infos = loop:getaddrinfo(nil, 80, {family = socket.AF_INET, type = socket.SOCK_STREAM})
    assert.same({"127.0.0.1", 80}, infos[1].sockaddr)
    assert.equal(socket.IPPROTO_TCP, infos[1].proto)
    infos = loop:getaddrinfo("127.0.0.1", nil, {family = socket.AF_INET, type = socket.SOCK_STREAM})
    assert.same({"127.0.0.1", 0}, infos[1].sockaddr)
    infos = loop:getaddrinfo("127.0.0.1", "8080", {family = socket.AF_INET,
                                                   type = socket.SOCK_STREAM})
    assert.same({"127.0.0.1", 8080}, infos[1].sockaddr)
  end))

  it("§3 getaddrinfo with AI_NUMERICHOST and a name raises DNSError EAI_NONAME, errno -2 "
     .. "(socket.gaierror)", async(function(loop)
    local err = raises(function()
      loop:getaddrinfo("localhost", 80, {flags = socket.AI_NUMERICHOST})
    end, errors.DNSError)
    assert.equal("EAI_NONAME", err.code)
    assert.equal(socket.EAI_NONAME, err.errno)
  end))

  it("§3 getnameinfo names the service of the port, by TCP unless NI_DGRAM "
     .. "(514: shell / syslog)", async(function(loop)
    local host, service = loop:getnameinfo({"127.0.0.1", 80}, socket.NI_NUMERICHOST)
    assert.equal("127.0.0.1", host)
    assert.equal("http", service)
    assert.equal("shell", select(2, loop:getnameinfo({"127.0.0.1", 514}, socket.NI_NUMERICHOST)))
    assert.equal("syslog", select(2, loop:getnameinfo({"127.0.0.1", 514},
                                                      socket.NI_NUMERICHOST | socket.NI_DGRAM)))
  end))
end)

describe("§3 executor (asyncio base_events.run_in_executor)", function()
  it("§3 shutdown_default_executor a second time returns at once and run_in_executor(nil) "
     .. "stays refused", async(function(loop)
    assert.equal("number", loop:run_in_executor(nil, type, 1):await())
    loop:shutdown_default_executor()
    local t0 = loop:time()
    loop:shutdown_default_executor()
    assert.is_true(loop:time() - t0 < 1)
    raises(function() loop:run_in_executor(nil, type, 1) end,
           {errors.RuntimeError, "Executor shutdown has been called"})
  end))

  it("§3 set_default_executor after shutdown_default_executor does not lift the refusal: "
     .. "run_in_executor(nil) still raises RuntimeError (asyncio's _executor_shutdown_called)",
     async(function(loop)
    loop:shutdown_default_executor()
    local ex <close> = eddy.ThreadPoolExecutor(1)
    loop:set_default_executor(ex)
    raises(function() loop:run_in_executor(nil, math.abs, -1) end,
           {errors.RuntimeError, "Executor shutdown has been called"})
    assert.equal(1, loop:run_in_executor(ex, math.abs, -1):await())
  end))

  it("§3 run_in_executor of a raising function: the future holds the error, re-raised by "
     .. "await; the pool goes on", async(function(loop)
    local fut = loop:run_in_executor(nil, error, "boom")
    local ok, err = pcall(function() return fut:await() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("boom", 1, true))
    assert.equal("boom", tostring(fut:exception()):match("boom"))
    assert.equal(3, loop:run_in_executor(nil, math.max, 1, 3, 2):await())
  end))
end)

describe("§3 fd watchers (asyncio selector_events; level-triggered as the selectors)", function()
  it("§3 a reader on a pipe at EOF runs again and again until removed", async(function(loop)
    local pipe = io.popen("true", "r")
    local n = 0
    loop:add_reader(pipe, function() n = n + 1 end)
    -- (I/O is polled once per libuv turn, not per iteration: docs/loop.md)
    net.wait_until(function() return n >= 3 end)
    assert.is_true(loop:remove_reader(pipe))
    local seen = n
    eddy.sleep(0.05)
    assert.equal(seen, n)
    pipe:close()
  end))

  it("§3 a writer on a pipe whose reader is gone runs (the selector reports EPOLLERR as "
     .. "writable), and again and again", async(function(loop)
    local pipe = io.popen("exec 0<&-", "w")
    local n = 0
    eddy.sleep(0.1)
    loop:add_writer(pipe, function() n = n + 1 end)
    -- (I/O is polled once per libuv turn, not per iteration: docs/loop.md)
    net.wait_until(function() return n >= 3 end)
    assert.is_true(loop:remove_writer(pipe))
    assert.is_false(loop:remove_writer(pipe))
    pcall(pipe.close, pipe)
  end))

  it("§3 a reader and a writer on one socket each run their own callback; removing the "
     .. "reader leaves the writer", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local log = {r = 0, w = 0}
    loop:add_reader(a, function() log.r = log.r + 1 end)
    loop:add_writer(a, function() log.w = log.w + 1 end)
    b:send("x")
    net.wait_until(function() return log.r >= 1 and log.w >= 1 end)
    assert.is_true(loop:remove_reader(a))
    assert.is_false(loop:remove_reader(a))
    local r, w = log.r, log.w
    net.wait_until(function() return log.w > w + 2 end)
    assert.equal(r, log.r)
    assert.is_true(loop:remove_writer(a))
    a:close()
    b:close()
  end))
end)

describe("§10 Process, more (asyncio subprocess.py)", function()
  it("§10 kill() while communicate() is still writing 4 MiB the child never reads: "
     .. "communicate returns (the broken pipe ignored) with returncode -9", async(function(loop)
    local p = eddy.create_subprocess_exec("sleep", "30", {stdin = PIPE, stdout = PIPE})
    loop:call_later(0.2, function() p:kill() end)
    local out, err = bounded(function() return p:communicate(string.rep("x", 4 << 20)) end)
    assert.equal("", out)
    assert.is_nil(err)
    assert.equal(-9, p.returncode)
  end))

  it("§10 communicate(input) of a process whose stdin is not PIPE ignores the input "
     .. "(asyncio: _noop() in place of _feed_stdin)", async(function()
    local p = eddy.create_subprocess_exec("true", {stdout = PIPE})
    local out, err = bounded(function() return p:communicate("ignored") end)
    assert.equal("", out)
    assert.is_nil(err)
    assert.equal(0, p.returncode)
  end))

  it("§10 stdin:write after communicate() closed stdin is dropped: no error "
     .. "(asyncio's write pipe transport drops writes once closing)", async(function()
    local p = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE})
    bounded(function() return p:communicate("a") end)
    assert.is_true(p.stdin:is_closing())
    p.stdin:write("after")
    assert.equal(0, p.stdin.transport:get_write_buffer_size())
  end))

  it("§10 return codes: exit 255 is 255; a shell that signals itself with SIGUSR1 is "
     .. "-SIGUSR1", async(function()
    local p = eddy.create_subprocess_shell("exit 255")
    assert.equal(255, bounded(function() return p:wait() end))
    p = eddy.create_subprocess_shell("kill -USR1 $$; sleep 5")
    assert.equal(-S.SIGUSR1, bounded(function() return p:wait() end))
  end))

  it("§10 the returncode field is set once the child exits, with no wait() call "
     .. "(asyncio's property reads the transport's)", async(function()
    local p = eddy.create_subprocess_exec("true")
    assert.is_nil(p.returncode)
    net.wait_until(function() return p.returncode ~= nil end)
    assert.equal(0, p.returncode)
  end))

  it("§3/§10 a SIGCHLD handler added then removed leaves children to the loop: wait() "
     .. "still returns (asyncio's child watcher is its own)", async(function(loop)
    loop:add_signal_handler(S.SIGCHLD, function() end)
    assert.is_true(loop:remove_signal_handler(S.SIGCHLD))
    local p = eddy.create_subprocess_shell("exit 3")
    assert.equal(3, bounded(function() return p:wait() end))
  end))
end)

describe("§3 DNS, more", function()
  it("§3 getaddrinfo of an IPv4 literal with family AF_INET6 and AI_NUMERICHOST: DNSError "
     .. "EAI_ADDRFAMILY, errno -9 (socket.gaierror)", async(function(loop)
    local err = raises(function()
      loop:getaddrinfo("127.0.0.1", 80, {family = socket.AF_INET6, flags = socket.AI_NUMERICHOST})
    end, errors.DNSError)
    assert.equal("EAI_ADDRFAMILY", err.code)
    assert.equal(-9, err.errno)
  end))
end)
