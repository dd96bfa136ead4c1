-- Child processes: loop:subprocess_exec / subprocess_shell with a
-- SubprocessProtocol, and eddy.create_subprocess_exec / _shell with a
-- Process (API.md §3 "Subprocesses", §8).  Real children (sh, cat, head,
-- sleep).  Descriptions name the CPython test
-- (Lib/test/test_asyncio/test_subprocess.py) a case follows.
local eddy = require "eddy"
local errors = eddy.errors
local sp = eddy.subprocess
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local cli = require "cli_helper"
local raises, argerror = checks.raises, checks.argerror

after_each(cli.cleanup)

-- A SubprocessProtocol logging its callbacks.
local function recorder(loop)
  local rec = {events = {}, out = {[1] = {}, [2] = {}}, lost_fut = loop:create_future()}
  function rec:connection_made(t) self.transport = t self.events[#self.events + 1] = "made" end
  function rec:pipe_data_received(fd, data) table.insert(self.out[fd], data) end
  function rec:pipe_connection_lost(fd, err)
    self.events[#self.events + 1] = "pipe_lost " .. fd .. (err and (" " .. tostring(err)) or "")
  end
  function rec:process_exited() self.events[#self.events + 1] = "exited" end
  function rec:connection_lost(err)
    self.events[#self.events + 1] = "lost"
    self.lost_fut:set_result(err or true)
  end
  function rec:output(fd) return table.concat(self.out[fd]) end
  return rec
end

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
end

describe("loop:subprocess_exec", function()
  it("pipes both ways; callbacks in asyncio's order; wait() after process_exited (test_subprocess_exec)",
     async(function(loop)
    local rec = recorder(loop)
    local t, p = loop:subprocess_exec(function() return rec end,
                                      "sh", "-c", "cat; echo oops >&2; exit 3")
    assert.equal(rec, p)
    assert.same({"made"}, rec.events)
    assert.equal(t, rec.transport)
    assert.is_true(math.type(t:get_pid()) == "integer" and t:get_pid() > 0)
    assert.is_nil(t:get_returncode())
    assert.matches("^<SubprocessTransport pid=%d+ running>$", tostring(t))
    local stdin = t:get_pipe_transport(0)
    assert.matches("WritePipeTransport", tostring(stdin))
    assert.matches("ReadPipeTransport", tostring(t:get_pipe_transport(1)))
    assert.is_nil(t:get_pipe_transport(3))
    stdin:write("hello\n")
    stdin:close()
    assert.equal(3, eddy.wait_for(eddy.create_task(function() return t:_wait() end), 5))
    assert.equal(3, t:get_returncode())
    assert.truthy(index_of(rec.events, "exited"))
    net.wait(rec.lost_fut)
    assert.equal("hello\n", rec:output(1))
    assert.equal("oops\n", rec:output(2))
    local ev = rec.events
    assert.equal("lost", ev[#ev])
    for _, e in ipairs {"pipe_lost 0", "pipe_lost 1", "pipe_lost 2", "exited"} do
      assert.is_truthy(index_of(ev, e), e)
    end
    assert.equal(6, #ev)
  end))

  it("a protocol with no methods gets every call as asyncio's SubprocessProtocol: nothing happens "
     .. "(test_subprocess_protocol)", async(function(loop)
    -- connection_made, pipe_data_received and pipe_connection_lost for
    -- stdout and stderr, process_exited, connection_lost
    local t = loop:subprocess_exec(function() return {} end, "sh", "-c", "echo out; echo err >&2; exit 3")
    net.wait_until(function() return t:get_returncode() ~= nil end)
    assert.equal(3, t:get_returncode())
    t:close()
  end))

  it("bad input: set_protocol of a non-protocol is an argument error, the protocol stays "
     .. "(found by tools/fuzz/api_fuzz.lua: the number set broke the exit's connection_lost)",
     async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_exec(function() return rec end, "true")
    assert.equal(rec, t:get_protocol())
    checks.refuses_bad_protocols(t)
    net.wait(rec.lost_fut)
    t:close()
  end))

  it("test_subprocess_interactive: what stdin gets comes back piece by piece; close() kills",
     async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_exec(function() return rec end, "cat")
    local stdin = t:get_pipe_transport(0)
    stdin:write("Python ")
    net.wait_until(function() return rec:output(1) == "Python " end)
    stdin:write("The Winner")
    net.wait_until(function() return rec:output(1) == "Python The Winner" end)
    t:close()
    net.wait(rec.lost_fut)
    assert.equal(-9, t:get_returncode())
  end))

  it("a shell command: its output, nothing on stderr, every pipe lost, exit 0 "
     .. "(test_subprocess_shell, test_subprocess_stderr)", async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_shell(function() return rec end, "echo Python")
    t:get_pipe_transport(0):close()
    net.wait(rec.lost_fut)
    assert.equal(0, t:get_returncode())
    assert.equal("Python\n", rec:output(1))
    assert.equal("", rec:output(2))
    for fd = 0, 2 do assert.is_truthy(index_of(rec.events, "pipe_lost " .. fd), fd) end
    t:close()
    -- stdout and stderr apart
    rec = recorder(loop)
    t = loop:subprocess_shell(function() return rec end,
                              "read -r x; echo \"OUT:$x\"; echo \"ERR:$x\" >&2")
    t:get_pipe_transport(0):write("test\n")
    net.wait(rec.lost_fut)
    t:close()
    assert.equal("OUT:test\n", rec:output(1))
    assert.equal("ERR:test\n", rec:output(2))
    assert.equal(0, t:get_returncode())
  end))

  it("a child with no pipes: get_pipe_transport is nil, its exit code arrives, close() "
     .. "after the end does nothing, in a session of its own too (test_subprocess_exitcode, "
     .. "test_subprocess_close_after_finish, test_subprocess_wait_no_same_group)",
     async(function(loop)
    for _, session in ipairs {false, true} do
      local rec = recorder(loop)
      local t = loop:subprocess_shell(function() return rec end, "exit 7",
                                      {stdin = sp.INHERIT, stdout = sp.INHERIT,
                                       stderr = sp.INHERIT, start_new_session = session})
      for fd = 0, 2 do assert.is_nil(t:get_pipe_transport(fd)) end
      net.wait(rec.lost_fut)
      assert.equal(7, t:get_returncode())
      assert.is_nil(t:close())
    end
  end))

  it("test_subprocess_close_client_stream: the child's stdout closed by the parent "
     .. "breaks the child's next write (EPIPE)", async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_shell(function() return rec end,
      "trap '' PIPE; while read -r x; do echo \"OUT:$x\" || echo ERR:BrokenPipe >&2; done")
    local stdin, stdout = t:get_pipe_transport(0), t:get_pipe_transport(1)
    stdin:write("test\n")
    net.wait_until(function() return rec:output(1) == "OUT:test\n" end)
    stdout:close()
    net.wait_until(function() return index_of(rec.events, "pipe_lost 1") ~= nil end)
    stdin:write("xxx\n")
    net.wait_until(function() return rec:output(2):find("ERR:BrokenPipe", 1, true) ~= nil end)
    t:close()
    net.wait(rec.lost_fut)
    assert.equal(-9, t:get_returncode())
  end))

  it("Python's Popen options are unknown options; a program that is no string is an argument "
     .. "error (test_subprocess_exec_invalid_args, test_subprocess_shell_invalid_args)",
     async(function(loop)
    local f = function() return recorder(loop) end
    for _, opts in ipairs {{universal_newlines = true}, {bufsize = 4096}, {shell = true}, {text = true}} do
      local k = next(opts)
      raises(function() loop:subprocess_exec(f, "pwd", opts) end, "unknown option '" .. k .. "'")
      raises(function() loop:subprocess_shell(f, "pwd", opts) end, "unknown option '" .. k .. "'")
    end
    argerror(function() loop:subprocess_exec(f, {"pwd"}) end, 2, "subprocess_exec")
    -- (numbers among the arguments are converted, as Lua's own string
    -- arguments: docs/subprocess.md; asyncio raises TypeError)
    argerror(function() loop:subprocess_exec(f, "echo", true, {}) end, 3, "subprocess_exec")
    argerror(function() loop:subprocess_shell(f, {"pwd"}) end, 2, "subprocess_shell")
  end))

  it("a signal's return code is negative (test_terminate, test_kill, test_send_signal, test_subprocess_kill, test_subprocess_terminate, test_subprocess_send_signal)",
     async(function(loop)
    for sig, code in pairs {SIGTERM = -15, SIGKILL = -9, SIGUSR1 = -10} do
      local rec = recorder(loop)
      local t = loop:subprocess_exec(function() return rec end, "sleep", "30")
      if sig == "SIGTERM" then t:terminate()
      elseif sig == "SIGKILL" then t:kill()
      else t:send_signal(eddy.signal.SIGUSR1) end
      net.wait(rec.lost_fut)
      assert.equal(code, t:get_returncode())
      raises(function() t:send_signal("SIGTERM") end, errors.ProcessLookupError)
    end
  end))

  it("bad input: send_signal of a number that is no integer is send_signal's argument error, "
     .. "at the caller's line (found by tools/fuzz/api_fuzz.lua: it was kill's, at subprocess.lua's)",
     async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_exec(function() return rec end, "sleep", "30")
    for _, bad in ipairs {0.5, math.huge, 0/0} do
      local err = argerror(function() t:send_signal(bad) end, 1, "send_signal")
      assert.matches("^spec/subprocess_spec.lua:%d+: .*no integer representation", err)
    end
    assert.is_nil(t:get_returncode())
    t:kill()
    net.wait(rec.lost_fut)
  end))

  it("send_signal(0) only checks the child exists, as Popen.send_signal (os.kill)",
     async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_exec(function() return rec end, "sleep", "30")
    t:send_signal(0)
    raises(function() t:send_signal(99) end, {errors.ValueError, "invalid signal number 99"})
    -- A wrong type: send_signal's argument error, at the caller's line.
    local err = argerror(function() t:send_signal(nil) end, 1, "send_signal")
    assert.matches("^spec/subprocess_spec.lua:%d+: ", err)
    assert.is_nil(t:get_returncode())
    t:kill()
    net.wait(rec.lost_fut)
    assert.equal(-9, t:get_returncode())
  end))

  it("an error in connection_made is reported and the child goes on "
     .. "(asyncio calls it as a callback: base_subprocess._connect_pipes)", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
    local rec = recorder(loop)
    local made = rec.connection_made
    function rec.connection_made(self, t)
      made(self, t)
      error(errors.ValueError("made boom"))
    end
    local t, p = loop:subprocess_shell(function() return rec end, "read x; echo $x; exit 2")
    assert.equal(rec, p)
    assert.is_false(t:is_closing())
    assert.equal(1, #reports)
    assert.equal("Exception in protocol.connection_made()", reports[1].message)
    assert.is_true(errors.is(reports[1].exception, errors.ValueError))
    assert.equal(t, reports[1].transport)
    assert.equal(rec, reports[1].protocol)
    t:get_pipe_transport(0):write("still here\n")
    net.wait(rec.lost_fut)
    assert.equal(2, t:get_returncode())
    assert.equal("still here\n", rec:output(1))
  end))

  it("pause_writing and resume_writing reach the protocol when the stdin pipe "
     .. "crosses its marks, not later (WriteSubprocessPipeProto)", async(function(loop)
    local rec = recorder(loop)
    function rec:pause_writing() self.events[#self.events + 1] = "pause" end
    function rec:resume_writing() self.events[#self.events + 1] = "resume" end
    local t = loop:subprocess_shell(function() return rec end, "sleep 0.2; cat >/dev/null",
                                    {stdout = sp.DEVNULL, stderr = sp.DEVNULL})
    t:get_pipe_transport(0):write(string.rep("x", 300000))
    assert.same({"made", "pause"}, rec.events)
    net.wait_until(function() return rec.events[3] == "resume" end)
    t:get_pipe_transport(0):close()
    net.wait(rec.lost_fut)
  end))

  it("close() kills a running child and closes its pipes", async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_exec(function() return rec end, "sleep", "30")
    t:close()
    assert.is_true(t:is_closing())
    net.wait(rec.lost_fut)
    assert.equal(-9, t:get_returncode())
    t:close()
  end))

  it("loop:close() kills and reaps a child still running (the transport's close)", function()
    local loop = eddy.new_event_loop()
    local t = loop:run_until_complete(function()
      return (loop:subprocess_exec(function() return {} end, "sleep", "30",
                                   {stdin = sp.DEVNULL, stdout = sp.DEVNULL}))
    end)
    local pid = t:get_pid()
    loop:close()
    -- neither running nor a zombie: /proc has no entry for it any more
    assert.is_nil(io.open("/proc/" .. pid .. "/stat"))
  end)

  it("a script that ends with its loop open and a child running kills and reaps it", function()
    -- The state's close collects the process before its loop: it kills
    -- the child as loop:close() does (asyncio's transport, when collected).
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      local loop = eddy.new_event_loop()  -- not drained after the script
      local t = loop:run_until_complete(function()
        return (loop:subprocess_exec(function() return {} end, "sleep", "30"))
      end)
      print(t:get_pid())
    ]])
    assert.equal(0, code, out)
    local pid = assert(tonumber(out:match("^(%d+)\n$")), out)
    assert.is_nil(io.open("/proc/" .. pid .. "/stat"))
  end)

  it("loop:close() with the child's pipes open reports nothing", function()
    -- The close drops the loop's pending work; the pipes' connection_lost
    -- it causes must not try to schedule protocol events on the closed loop.
    local loop = eddy.new_event_loop()
    local reports = {}
    loop:set_exception_handler(function(_, context) reports[#reports + 1] = context.message end)
    local rec
    local t = loop:run_until_complete(function()
      return (loop:subprocess_exec(function() rec = recorder(loop) return rec end, "cat"))
    end)
    local p = loop:run_until_complete(function()
      return (eddy.create_subprocess_exec("cat", {stdin = sp.PIPE, stdout = sp.PIPE}))
    end)
    loop:close()
    assert.same({}, reports)
    assert.same({"made"}, rec.events)
    assert.is_nil(io.open("/proc/" .. t:get_pid() .. "/stat"))
    assert.is_nil(io.open("/proc/" .. p.pid .. "/stat"))
  end)

  it("a protocol whose connection_made lookup raises: the error, and no child left", async(function(loop)
    loop:set_exception_handler(function() end)  -- its pipe_connection_lost lookups raise too
    local function bomb()
      return setmetatable({}, {__index = function(_, k) error("no " .. k, 0) end})
    end
    raises(function() loop:subprocess_exec(bomb, "sleep", "30.25") end, "no connection_made")
    -- killed and reaped, as asyncio's _connect_pipes failing its waiter
    local me = io.open("/proc/self/stat"):read("a"):match("^%d+")
    net.wait_until(function()
      local ps = io.popen("pgrep -P " .. me .. " -f '^sleep 30.25$'")
      local out = ps:read("a")
      ps:close()
      return out == ""
    end)
  end))

  it("stdio choices: DEVNULL, STDOUT, INHERIT, a descriptor, a file (test_subprocess_stderr_redirect_to_stdout)", async(function(loop)
    local out = cli.tempfile()
    local f = assert(io.open(out, "w"))
    local rec = recorder(loop)
    local t = loop:subprocess_shell(function() return rec end,
                                    "cat; echo to-file; echo merged >&2",
                                    {stdin = sp.DEVNULL, stdout = f, stderr = sp.STDOUT})
    assert.is_nil(t:get_pipe_transport(0))
    assert.is_nil(t:get_pipe_transport(1))
    net.wait(rec.lost_fut)
    f:close()
    assert.equal("to-file\nmerged\n", cli.readfile(out))
    -- stderr into the stdout pipe
    rec = recorder(loop)
    loop:subprocess_shell(function() return rec end, "echo a; echo b >&2",
                          {stdin = sp.DEVNULL, stderr = sp.STDOUT})
    net.wait(rec.lost_fut)
    assert.equal("a\nb\n", rec:output(1))
  end))

  it("cwd, env, start_new_session and pass_fds reach the child", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = recorder(loop)
    local has = "test -e /proc/$$/fd/%d && echo has-%d || echo no-%d; "
    loop:subprocess_shell(function() return rec end,
      "pwd; echo \"$ONLY\" \"${HOME:-unset}\"; cut -d' ' -f6 /proc/$$/stat; echo $$; "
        .. has:format(b:fileno(), b:fileno(), b:fileno())
        .. has:format(a:fileno(), a:fileno(), a:fileno()),
      {cwd = "/tmp", env = {ONLY = "yes", PATH = os.getenv("PATH")},
       start_new_session = true, pass_fds = {b:fileno()}})
    net.wait(rec.lost_fut)
    local lines = {}
    for l in rec:output(1):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("/tmp", lines[1])
    assert.equal("yes unset", lines[2])
    assert.equal(lines[4], lines[3])  -- its own session
    assert.equal("has-" .. b:fileno(), lines[5])  -- passed
    assert.equal("no-" .. a:fileno(), lines[6])  -- close-on-exec, not passed
    a:close()
    b:close()
  end))

  it("refuses bad arguments before starting anything", async(function(loop)
    local f = function() return recorder(loop) end
    argerror(function() loop:subprocess_exec(42, "true") end, 1, "subprocess_exec")
    argerror(function() loop:subprocess_exec(f, 42) end, 2, "subprocess_exec")
    argerror(function() loop:subprocess_exec(f, "echo", {}, "x") end, 3, "subprocess_exec")
    argerror(function() loop:subprocess_exec(f, "true", {bogus = 1}) end, 3, "subprocess_exec")
    -- worded as every other options table's (asyncio: TypeError for an
    -- unexpected keyword, API.md §1)
    raises(function() loop:subprocess_shell(f, "true", {bogus = 1}) end,
           "bad argument #3 to 'subprocess_shell' (unknown option 'bogus')")
    raises(function() eddy.create_subprocess_exec("true", {bogus = 1}) end,
           "bad argument #2 to 'create_subprocess_exec' (unknown option 'bogus')")
    argerror(function() loop:subprocess_shell(f, nil) end, 2, "subprocess_shell")
    argerror(function() loop:subprocess_shell(f, "true", {stdout = "x"}) end, 3, "subprocess_shell")
    argerror(function() loop:subprocess_shell(f, "true", {env = {A = 1}}) end, 3, "subprocess_shell")
    raises(function() loop:subprocess_shell(f, "true", {stdin = sp.STDOUT}) end, {errors.ValueError, "stdin: STDOUT is only valid for stderr"})
    raises(function() loop:subprocess_shell(f, "true", {stdout = -99}) end, {errors.ValueError, "stdout: invalid value -99"})
    raises(function() loop:subprocess_shell(f, "true", {env = {["A=B"] = "x"}}) end, errors.ValueError)
    raises(function() loop:subprocess_shell(f, "true", {pass_fds = {1}}) end, errors.ValueError)
    -- A standard argument error, at the caller's line (it came from the C
    -- spawn, naming subprocess.lua).
    local perr = argerror(function() loop:subprocess_shell(f, "true", {pass_fds = {"3"}}) end,
                          3, "subprocess_shell")
    assert.matches("^spec/subprocess_spec.lua:%d+: ", perr)
    raises(function() loop:subprocess_shell(f, "true", {stdout = 999999}) end, errors.OSError)
    raises(function() loop:subprocess_exec(f, "/nonexistent/program") end, errors.FileNotFoundError)
    raises(function() loop:subprocess_shell(f, "true", {cwd = "/nonexistent"}) end, errors.FileNotFoundError)
    raises(function() loop:subprocess_exec(f, "true\0x") end, errors.ValueError)
    -- Python's "embedded null byte", never a cwd cut short at the NUL
    raises(function() loop:subprocess_exec(f, "true", {cwd = "/\0nonexistent"}) end,
           {errors.ValueError, "embedded null byte in cwd"})
    raises(function() loop:subprocess_shell(function() error("no protocol") end, "true") end,
           "no protocol")
    raises(function() loop:subprocess_shell(function() return 1 end, "true") end, errors.RuntimeError)
    local closed = io.open("/dev/null")
    closed:close()
    raises(function() loop:subprocess_shell(f, "true", {stdin = closed}) end, "closed file")
  end))

  it("a child that exits: returncode, process_exited, connection_lost(nil); then signals "
     .. "raise ProcessLookupError (test_proc_exited, test_subprocess_repr)", async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_shell(function() return rec end, "read x; exit 6")
    local pid = t:get_pid()
    assert.equal("<SubprocessTransport pid=" .. pid .. " running>", tostring(t))
    t:get_pipe_transport(0):write("go\n")
    assert.equal(true, net.wait(rec.lost_fut))  -- connection_lost(nil)
    assert.equal(6, t:get_returncode())
    assert.truthy(index_of(rec.events, "exited"))
    assert.is_false(t:is_closing())
    assert.equal("<SubprocessTransport pid=" .. pid .. " returncode=6>", tostring(t))
    raises(function() t:send_signal("SIGTERM") end, errors.ProcessLookupError)
    raises(function() t:terminate() end, errors.ProcessLookupError)
    raises(function() t:kill() end, errors.ProcessLookupError)
    t:close()
    -- asyncio's repr keeps the pid once closed
    assert.equal("<SubprocessTransport closed pid=" .. pid .. " returncode=6>", tostring(t))
    local urec = recorder(loop)
    local u = loop:subprocess_exec(function() return urec end, "sleep", "30")
    u:close()
    assert.equal("<SubprocessTransport closed pid=" .. u:get_pid() .. " running>", tostring(u))
    net.wait(urec.lost_fut)
  end))

  it("close() kills a child still running; returncode nil before (test_close_kill_running)",
     async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_exec(function() return rec end, "sleep", "30")
    assert.is_nil(t:get_returncode())
    t:close()
    assert.equal(-9, eddy.wait_for(function() return t:_wait() end, 5))
  end))

  it("close() does not kill a child that has exited before the loop heard of it "
     .. "(test_close_dont_kill_finished)", async(function(loop)
    local rec = recorder(loop)
    local t = loop:subprocess_shell(function() return rec end, "exit 3",
                                    {stdin = sp.DEVNULL, stdout = sp.DEVNULL, stderr = sp.DEVNULL})
    -- Block the loop until the child is a zombie: exited, not yet reaped.
    local stat = "/proc/" .. t:get_pid() .. "/stat"
    local deadline = os.time() + 5
    repeat
      local f = io.open(stat)
      local state = f and f:read("a"):match("^%d+ %b() (%a)")
      if f then f:close() end
    until state == "Z" or os.time() > deadline
    assert.is_nil(t:get_returncode())
    t:close()
    net.wait(rec.lost_fut)
    assert.equal(3, t:get_returncode())  -- not -9: it was not killed
  end))

  it("every protocol event, per pipe data before its connection_lost (test_subprocess_protocol_events)",
     async(function(loop)
    local events = {}
    local done = loop:create_future()
    local proto = {}
    function proto:pipe_data_received(fd, data) events[#events + 1] = "data " .. fd .. " " .. data end
    function proto:pipe_connection_lost(fd) events[#events + 1] = "lost " .. fd end
    function proto:process_exited() events[#events + 1] = "exited" end
    function proto:connection_lost() done:set_result(true) end
    local t = loop:subprocess_shell(function() return proto end,
                                    "printf stdout; printf stderr >&2", {stdin = sp.INHERIT})
    net.wait(done)
    t:close()
    local sorted = {table.unpack(events)}
    table.sort(sorted)
    assert.same({"data 1 stdout", "data 2 stderr", "exited", "lost 1", "lost 2"}, sorted)
    assert.is_true(index_of(events, "data 1 stdout") < index_of(events, "lost 1"))
    assert.is_true(index_of(events, "data 2 stderr") < index_of(events, "lost 2"))
  end))

  it("a task cancelled before it starts spawns nothing; creation does not suspend, so a "
     .. "cancel after it is too late and the child runs (test_cancel_make_subprocess_transport_exec, "
     .. "test_cancel_post_init)", async(function(loop)
    local spawned = false
    local task = loop:create_task(function()
      spawned = true
      return loop:subprocess_exec(function() return recorder(loop) end, "sleep", "30")
    end)
    task:cancel()
    assert.is_false(pcall(net.wait, task))
    assert.is_true(task:cancelled())
    assert.is_false(spawned)
    for _, create in ipairs {
      function() return eddy.create_subprocess_exec("sleep", "30") end,
      function() return (loop:subprocess_exec(function() return recorder(loop) end, "sleep", "30")) end,
    } do
      task = loop:create_task(create)
      loop:call_soon(function() task:cancel() end)
      local made = net.wait(task)
      assert.is_false(task:cancelled())
      made:kill()
      if made.wait then made:wait() else made:_wait() end
    end
  end))

  it("raises RuntimeError in a plain callback", async(function(loop)
    local done = loop:create_future()
    loop:call_soon(function()
      done:set_result(select(2, pcall(loop.subprocess_shell, loop, function() return {} end, "true")))
    end)
    local err = net.wait(done)
    assert.is_true(errors.is(err, errors.RuntimeError), tostring(err))
  end))

  -- API.md §1, §10 and §11 to the letter: an exited process too.
  it("Process wait and communicate raise from a plain callback even once it has exited",
     async(function(loop)
    local p = eddy.create_subprocess_exec("true")
    assert.equal(0, p:wait())  -- in a task: returns at once from now on
    local errs = checks.from_callback(loop, {{"wait", p.wait, p}, {"communicate", p.communicate, p}})
    for _, name in ipairs {"wait", "communicate"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", errs[name])
    end
    assert.equal(0, p:wait())
  end))
end)

describe("eddy.create_subprocess_exec / _shell", function()
  it("communicate(input) -> stdout, stderr (test_communicate)", async(function(loop)
    local p = eddy.create_subprocess_exec("sh", "-c", "tr a-z A-Z; echo done >&2",
      {stdin = sp.PIPE, stdout = sp.PIPE, stderr = sp.PIPE})
    assert.is_true(p.pid > 0)
    assert.is_nil(p.returncode)
    assert.matches("^<Process %d+>$", tostring(p))
    local out, err = p:communicate("hello\n")
    assert.equal("HELLO\n", out)
    assert.equal("done\n", err)
    assert.equal(0, p.returncode)
    assert.equal(0, p:wait())
  end))

  it("streams: write, drain, close stdin; read stdout lines (test_stdin_stdout)",
     async(function(loop)
    local p = eddy.create_subprocess_shell("cat", {stdin = sp.PIPE, stdout = sp.PIPE})
    assert.is_nil(p.stderr)
    for i = 1, 3 do
      p.stdin:write("line " .. i .. "\n")
      p.stdin:drain()
      assert.equal("line " .. i .. "\n", p.stdout:readline())
    end
    p.stdin:close()
    assert.equal("", p.stdout:read(-1))
    assert.equal(0, p:wait())
  end))

  it("a child that stops reading: communicate ignores the broken pipe (test_communicate_ignore_broken_pipe)",
     async(function(loop)
    local p = eddy.create_subprocess_exec("head", "-c", "3", {stdin = sp.PIPE, stdout = sp.PIPE})
    local out = p:communicate(string.rep("x", 1 << 20))
    assert.equal("xxx", out)
    assert.equal(0, p.returncode)
  end))

  it("stdio defaults to INHERIT; send_signal after exit does nothing, after the end raises",
     async(function(loop)
    local p = eddy.create_subprocess_exec("true")
    assert.is_nil(p.stdin)
    assert.is_nil(p.stdout)
    assert.equal(0, p:wait())
    raises(function() p:send_signal("SIGTERM") end, errors.ProcessLookupError)
    local q = eddy.create_subprocess_exec("sleep", "30")
    q:kill()
    assert.equal(-9, q:wait())
  end))

  it("wait() returns once the child has exited, its pipes unread or held open "
     .. "(Process.wait docs: 'Wait for the child process to terminate'; CPython gh-119710)",
     async(function(loop)
    -- More than the pipe holds: the reader pauses, so stdout cannot reach EOF
    -- before it is read.
    local p = eddy.create_subprocess_shell("head -c 150000 /dev/zero", {stdout = sp.PIPE})
    assert.equal(0, eddy.wait_for(function() return p:wait() end, 2))
    assert.equal(150000, #p.stdout:read(-1))
    -- A grandchild keeps stdout open after the shell exited.
    -- (the bound, 2 s, is well before the grandchild's 3 s and leaves a
    -- loaded machine time to start the shell)
    local q = eddy.create_subprocess_shell("(sleep 3; echo late) & exit 5", {stdout = sp.PIPE})
    assert.equal(5, eddy.wait_for(function() return q:wait() end, 2))
    assert.equal(5, q.returncode)
    assert.equal("late\n", eddy.wait_for(function() return q.stdout:read(-1) end, 5))
  end))

  it("communicate() with no input closes stdin (test_communicate_none_input, test_empty_input, "
     .. "test_stdin_not_inheritable, test_devstdin_input)", async(function(loop)
    local function run(cmd, input)
      local p = eddy.create_subprocess_shell(cmd, {stdin = sp.PIPE, stdout = sp.PIPE, stderr = sp.PIPE})
      local out = eddy.wait_for(function() return p:communicate(input) end, 5)
      return out, p:wait()
    end
    assert.same({"", 0}, {run("cat")})
    assert.same({"0\n", 0}, {run("wc -c", "")})
    -- the parent's end of stdin is not inherited, or the child never saw EOF
    assert.same({"3\n", 0}, {run("wc -c", "abc")})
    assert.same({"3\n", 0}, {run("wc -c </dev/stdin", "abc")})
  end))

  it("DEVNULL for stdin, stdout or stderr: communicate gives nil for it "
     .. "(test_devnull_input, test_devnull_output, test_devnull_error)", async(function(loop)
    local p = eddy.create_subprocess_shell("wc -c", {stdin = sp.DEVNULL, stdout = sp.PIPE, stderr = sp.PIPE})
    assert.same({"0\n", ""}, {p:communicate()})
    p = eddy.create_subprocess_shell("wc -c; echo e >&2", {stdin = sp.PIPE, stdout = sp.DEVNULL, stderr = sp.PIPE})
    assert.same({nil, "e\n"}, {p:communicate("abc")})
    p = eddy.create_subprocess_shell("wc -c; echo e >&2", {stdin = sp.PIPE, stdout = sp.PIPE, stderr = sp.DEVNULL})
    local out, err = p:communicate("abc")
    assert.same({"3\n", nil}, {out, err})
    assert.equal(0, p:wait())
  end))

  it("exit codes of a shell, in a new session or not (test_shell, test_start_new_session)",
     async(function(loop)
    assert.equal(7, eddy.create_subprocess_shell("exit 7"):wait())
    assert.equal(8, eddy.create_subprocess_shell("exit 8", {start_new_session = true}):wait())
  end))

  it("kill() of a shell whose grandchild holds stdout: wait() returns -9 (test_kill_issue43884)",
     async(function(loop)
    local p = eddy.create_subprocess_shell("sleep 3; sleep 3", {stdout = sp.PIPE})
    eddy.sleep(0.1)
    p:kill()
    -- well before the grandchild's 3 s, with time for a loaded machine
    assert.equal(-9, eddy.wait_for(function() return p:wait() end, 2))
    assert.equal("", eddy.wait_for(function() return p.stdout:read(-1) end, 5))
  end))

  it("send_signal(SIGHUP) once the child is ready: -SIGHUP (test_send_signal)", async(function(loop)
    local p = eddy.create_subprocess_shell("trap - HUP; echo sleeping; exec sleep 30", {stdout = sp.PIPE})
    assert.equal("sleeping\n", eddy.wait_for(function() return p.stdout:readline() end, 5))
    p:send_signal(eddy.signal.SIGHUP)
    assert.equal(-eddy.signal.SIGHUP, eddy.wait_for(function() return p:wait() end, 5))
  end))

  it("drain() raises BrokenPipeError or ConnectionResetError when the child exits unread "
     .. "(test_stdin_broken_pipe)", async(function(loop)
    local a, b = require("eddy.socket").socketpair()  -- b blocking: the child waits on it
    a:setblocking(false)
    -- (bash: dash redirects only descriptors 0-9)
    local p = eddy.create_subprocess_exec("bash", "-c", ("head -c 1 <&%d >/dev/null"):format(b:fileno()),
                                          {stdin = sp.PIPE, pass_fds = {b:fileno()}})
    b:close()
    p.stdin:write(string.rep("x", 1 << 20))
    loop:sock_sendall(a, "go")  -- the child exits only once the pipe is full
    local err = select(2, pcall(eddy.wait_for, function() p.stdin:drain() end, 5))
    assert.is_true(errors.is(err, errors.BrokenPipeError) or errors.is(err, errors.ConnectionResetError),
                   tostring(err))
    assert.equal(0, p:wait())
    a:close()
  end))

  it("a cancelled wait() leaves the process to a later one (test_cancel_process_wait)",
     async(function(loop)
    local p = eddy.create_subprocess_exec("sleep", "30")
    local task = loop:create_task(function() return p:wait() end)
    loop:call_soon(function() task:cancel() end)
    assert.is_false(pcall(net.wait, task))
    assert.is_true(task:cancelled())
    p:kill()
    assert.equal(-9, eddy.wait_for(function() return p:wait() end, 5))
  end))

  it("a failed spawn leaves no pipe open (test_popen_error, test_popen_error_with_stdin_pipe)",
     async(function(loop)
    eddy.create_subprocess_exec("true"):wait()  -- what the first child opens for good
    collectgarbage() collectgarbage()
    local before = checks.count_fds()
    -- A leak would add a descriptor or two per try; fewer than ten more
    -- leaves room for what the rest of the process opens meanwhile.
    for _ = 1, 5 do
      for _, stdin in ipairs {sp.INHERIT, sp.PIPE} do
        raises(function() eddy.create_subprocess_exec("/nonexistent/program", {stdin = stdin, stdout = sp.PIPE}) end,
               errors.FileNotFoundError)
      end
    end
    collectgarbage() collectgarbage()
    assert.is_true(checks.count_fds() < before + 5)
  end))

  it("output read slowly after the child exited (test_read_stdout_after_process_exit)",
     async(function(loop)
    local p = eddy.create_subprocess_shell("head -c 262144 /dev/zero; exit 1", {stdout = sp.PIPE})
    local total = 0
    while true do
      local data = eddy.wait_for(function() return p.stdout:read(65536) end, 5)
      if data == "" then break end
      total = total + #data
      eddy.sleep(0.05)
    end
    assert.equal(262144, total)
    assert.equal(1, p:wait())
  end))

  it("env reaches the child; wait() after communicate returns at once "
     .. "(test_create_subprocess_env_shell, test_create_subprocess_env_exec)", async(function(loop)
    for want, p in pairs {
      bar = eddy.create_subprocess_shell('printf "$FOO"', {env = {FOO = "bar"}, stdout = sp.PIPE}),
      baz = eddy.create_subprocess_exec("sh", "-c", 'printf "$FOO"',
                                        {env = {FOO = "baz", PATH = os.getenv("PATH")}, stdout = sp.PIPE}),
    } do
      assert.equal(want, p:communicate())
      assert.equal(0, p.returncode)
      local task = loop:create_task(function() return p:wait() end)
      eddy.sleep(0)
      assert.equal(0, task:result())
    end
  end))

  it("ten concurrent wait() calls get the return code (test_subprocess_concurrent_wait)",
     async(function(loop)
    local p = eddy.create_subprocess_exec("cat", {stdin = sp.PIPE, stdout = sp.PIPE})
    assert.equal("some data", p:communicate("some data"))
    local waits = {}
    for i = 1, 10 do waits[i] = function() return p:wait() end end
    assert.same({0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {eddy.gather(table.unpack(waits))})
  end))

  it("ten children communicating at once each get their own output "
     .. "(test_subprocess_communicate_stdout)", async(function(loop)
    local jobs, want = {}, {}
    for i = 1, 10 do
      want[i] = "foo" .. i .. "\n"
      jobs[i] = function()
        return (eddy.create_subprocess_exec("echo", "foo" .. i, {stdout = sp.PIPE}):communicate())
      end
    end
    assert.same(want, {eddy.wait_for(function() return eddy.gather(table.unpack(jobs)) end, 10)})
  end))

  it("a signal sent as the child exits: ProcessLookupError or nothing, never a "
     .. "wrong return code (test_subprocess_send_signal_race)", async(function(loop)
    for _ = 1, 10 do
      local p = eddy.create_subprocess_exec("sleep", "0.05")
      eddy.sleep(0.05)
      pcall(p.send_signal, p, eddy.signal.SIGUSR1)
      local code = p:wait()
      assert.is_true(code == 0 or code == -eddy.signal.SIGUSR1, tostring(code))
    end
  end))

  it("the stdout reader pauses the pipe past its limit and resumes it as it is read "
     .. "(test_pause_reading)", async(function(loop)
    local p = eddy.create_subprocess_shell("printf %021d 0; exec sleep 30", {stdout = sp.PIPE, limit = 10})
    local pipe = p._transport:get_pipe_transport(1)
    assert.is_true(pipe:is_reading())
    net.wait_until(function() return not pipe:is_reading() end)
    assert.equal(string.rep("0", 21), p.stdout:readexactly(21))
    assert.is_true(pipe:is_reading())
    p:kill()
    p:wait()
  end))

  it("large output through the reader's flow control", async(function(loop)
    local p = eddy.create_subprocess_exec("head", "-c", tostring(4 << 20), "/dev/zero",
                                          {stdout = sp.PIPE, limit = 1024})
    local total = 0
    repeat
      local chunk = p.stdout:read(65536)
      total = total + #chunk
    until chunk == ""
    assert.equal(4 << 20, total)
    assert.equal(0, p:wait())
  end))

  it("refuses a bad limit and unknown options", async(function(loop)
    raises(function() eddy.create_subprocess_exec("true", {limit = 0}) end, errors.ValueError)
    argerror(function() eddy.create_subprocess_shell("true", {bogus = true}) end, 2,
             "create_subprocess_shell")
    argerror(function() eddy.create_subprocess_exec(nil) end, 1, "create_subprocess_exec")
    -- Lua strings are bytes: no text mode (test_create_subprocess_exec_text_mode_fails,
    -- test_create_subprocess_shell_text_mode_fails)
    for _, opt in ipairs {{text = true}, {encoding = "utf-8"}, {errors = "strict"}} do
      argerror(function() eddy.create_subprocess_exec("true", opt) end, 2, "create_subprocess_exec")
      argerror(function() eddy.create_subprocess_shell("true", opt) end, 2, "create_subprocess_shell")
    end
  end))

  -- API.md §1: an attribute is "a read-only field" (asyncio's pid and
  -- returncode are properties; stdin/stdout/stderr plain attributes).
  it("Process: pid and returncode are read-only fields", async(function(loop)
    local p = eddy.create_subprocess_exec("true")
    local pid = p.pid
    raises(function() p.pid = 1 end, "field 'pid' of eddy.Process is read-only")
    raises(function() p.returncode = 1 end, "field 'returncode' of eddy.Process is read-only")
    assert.equal(0, p:wait())
    assert.equal(pid, p.pid)
    assert.equal(0, p.returncode)
  end))

  it("works at a script's top level: the calls run the default loop (API.md §11)", function()
    local r = cli.eddy("-e " .. cli.q[[
      local eddy = require 'eddy'
      local PIPE = eddy.subprocess.PIPE
      local p = eddy.create_subprocess_exec('sh', '-c', 'exit 4')
      print(p:wait(), p.returncode)
      p = eddy.create_subprocess_shell('tr a-z A-Z', {stdin = PIPE, stdout = PIPE})
      print(p:communicate('hi'))
      eddy.create_subprocess_shell('sleep 0.1; echo drained')]])
    assert.same({code = 0, out = "4\t4\nHI\tnil\ndrained\n", err = ""}, r)
  end)
end)
