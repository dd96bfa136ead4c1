-- Pipe transports: loop:connect_read_pipe and loop:connect_write_pipe
-- (API.md §3 "Pipes", §7) over real pipes (io.popen), socket pairs and
-- the standard descriptors of an eddy process.  Descriptions name the
-- CPython test (Lib/test/test_asyncio/test_events.py) a case follows.
local eddy = require "eddy"
local errors = eddy.errors
local socket = eddy.socket
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local cli = require "cli_helper"
local raises, argerror = checks.raises, checks.argerror

after_each(cli.cleanup)

local function factory(rec) return function() return rec end end

-- Whether descriptor fd is open in this process.
local function fd_open(fd)
  return os.execute("test -e /proc/" .. eddy.signal.getpid() .. "/fd/" .. fd) == true
end

describe("connect_read_pipe", function()
  it("reads a child's output: made, data, eof, lost, then closes the file (test_read_pipe, "
     .. "test_ctor, test__call_connection_lost)",
     async(function(loop)
    local pipe = io.popen("printf 'hello\\nworld\\n'", "r")
    local rec = net.recorder(loop)
    local t, p = loop:connect_read_pipe(factory(rec), pipe)
    assert.equal(rec, p)
    assert.same({"made"}, rec.events)
    assert.equal(t, rec.transport)
    assert.equal(pipe, t:get_extra_info("pipe"))
    assert.matches("^<ReadPipeTransport fd=%d+ open>$", tostring(t))
    assert.is_true(t:is_reading())
    net.wait(rec.lost_fut)
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.equal("hello\nworld\n", rec:data())
    assert.is_nil(rec.err)
    assert.equal("closed file", io.type(pipe))
    assert.is_true(t:is_closing())
  end))

  it("closes on EOF even when eof_received returns true", async(function(loop)
    local rec = net.recorder(loop, {eof_keep = true})
    loop:connect_read_pipe(factory(rec), io.popen("printf x", "r"))
    net.wait(rec.lost_fut)
    assert.same({"made", "data", "eof", "lost"}, rec.events)
  end))

  it("a read error: connection_lost(err), then the pipe is closed (test__read_ready_error, "
     .. "test__call_connection_lost_with_err, test__close)", async(function(loop)
    local a, b = checks.nonblocking_pair()
    a:send("x")
    b:close()  -- with data unread: a's next read fails with ECONNRESET
    local rec = net.recorder(loop)
    local t = loop:connect_read_pipe(factory(rec), a)
    net.wait(rec.lost_fut)
    assert.same({"made", "lost"}, rec.events)
    assert.is_true(errors.is(rec.err, errors.ConnectionResetError), tostring(rec.err))
    assert.is_true(t:is_closing())
    assert.equal(-1, a:fileno())
  end))

  it("pause_reading and resume_reading twice, or on a closed pipe, do nothing "
     .. "(test_pause_reading_on_paused_pipe, test_resume_reading_on_paused_pipe, "
     .. "test_pause_reading_on_closed_pipe, test_resume_reading_on_closed_pipe)", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_read_pipe(factory(rec), a)
    t:pause_reading()
    t:pause_reading()
    assert.is_false(t:is_reading())
    b:send("held")
    eddy.sleep(0.02)
    assert.same({"made"}, rec.events)
    t:resume_reading()
    t:resume_reading()
    assert.is_true(t:is_reading())
    rec:wait_bytes(4)
    t:close()
    t:pause_reading()
    t:resume_reading()
    assert.is_false(t:is_reading())
    net.wait(rec.lost_fut)
    assert.equal("held", rec:data())
    b:close()
  end))

  it("has the read transport's methods only, as asyncio's _UnixReadPipeTransport",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_read_pipe(factory(rec), a)
    for _, m in ipairs {"write", "writelines", "write_eof", "can_write_eof", "abort",
                        "get_write_buffer_size", "set_write_buffer_limits"} do
      assert.is_nil(t[m], m)
    end
    for _, m in ipairs {"close", "is_closing", "pause_reading", "resume_reading",
                        "is_reading", "get_extra_info", "get_protocol", "set_protocol"} do
      assert.is_function(t[m], m)
    end
    assert.is_nil(t:get_extra_info("peername"))
    assert.equal("dflt", t:get_extra_info("sockname", "dflt"))
    t:close()
    net.wait(rec.lost_fut)
    b:close()
  end))

  it("pauses and resumes reading over a socket (test_read_pipe pause/resume, test_pause_reading, "
     .. "test_resume_reading)",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_read_pipe(factory(rec), a)
    b:send("one")
    rec:wait_bytes(3)
    t:pause_reading()
    assert.is_false(t:is_reading())
    b:send("two")
    checks.turns(5)
    eddy.sleep(0.02)
    assert.equal("one", rec:data())
    t:resume_reading()
    assert.is_true(t:is_reading())
    rec:wait_bytes(6)
    assert.equal("onetwo", rec:data())
    b:close()
    net.wait(rec.lost_fut)
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    -- the socket was the pipe object: closed after connection_lost
    assert.equal(-1, a:fileno())
  end))

  it("takes an integer descriptor and closes it after connection_lost", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local fd = a:detach()
    local rec = net.recorder(loop)
    local t = loop:connect_read_pipe(factory(rec), fd)
    assert.equal(fd, t:get_extra_info("pipe"))
    b:send("via fd")
    rec:wait_bytes(6)
    t:close()
    net.wait(rec.lost_fut)
    assert.is_false(fd_open(fd))
    b:close()
  end))

  it("takes any object with fileno() and calls its close()", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local closed = 0
    local obj = {fileno = function() return a:fileno() end,
                 close = function() closed = closed + 1 a:close() end}
    local rec = net.recorder(loop)
    loop:connect_read_pipe(factory(rec), obj)
    b:send("obj")
    b:close()
    net.wait(rec.lost_fut)
    assert.equal("obj", rec:data())
    assert.equal(1, closed)
  end))

  it("a pipe object whose close() fails goes to the exception handler", function()
    local reports = require("eddy.test").run_collecting(function(loop)
      local a, b = checks.nonblocking_pair()
      local obj = {fileno = function() return a:fileno() end,
                   close = function() a:close() error("close failed") end}
      local rec = net.recorder(loop)
      local t = loop:connect_read_pipe(factory(rec), obj)
      t:close()
      net.wait(rec.lost_fut)
      checks.turns(2)
      b:close()
    end)
    assert.equal(1, #reports)
    assert.equal("Exception closing the pipe", reports[1].message)
    assert.matches("close failed", tostring(reports[1].exception))
  end)

  it("close() twice and close() after EOF are harmless (test_close, test_close_already_closing)",
     async(function(loop)
    local rec = net.recorder(loop)
    local t = loop:connect_read_pipe(factory(rec), io.popen("printf ab", "r"))
    net.wait(rec.lost_fut)
    t:close()
    t:close()
    assert.same({"made", "data", "eof", "lost"}, rec.events)
  end))

  -- asyncio's _UnixReadPipeTransport._read_ready calls data_received
  -- directly (test_unix_events.py UnixReadPipeTransportTests
  -- test__read_ready): an error there is the reader callback's, reported
  -- by the loop, and the pipe goes on reading; eof_received runs as a
  -- call_soon callback of its own, then connection_lost(None).
  it("an error in data_received is reported; the pipe goes on reading (test__read_ready)",
     function()
    local rec
    local reports = require("eddy.test").run_collecting(function(loop)
      local a, b = checks.nonblocking_pair()
      rec = net.recorder(loop, {on_data = function(_, d)
        if d == "bad" then error("data boom") end
      end})
      local t = loop:connect_read_pipe(factory(rec), a)
      b:send("bad")
      net.wait_until(function() return #rec.chunks >= 1 end)
      checks.turns(2)
      assert.is_false(t:is_closing())
      b:send("good")
      rec:wait_bytes(7)
      b:close()
      net.wait(rec.lost_fut)
    end)
    assert.equal("badgood", rec:data())
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    assert.equal(1, #reports)
    assert.equal("Exception in protocol.data_received()", reports[1].message)
    assert.matches("data boom", tostring(reports[1].exception))
    assert.is_not_nil(reports[1].transport)
  end)

  it("an error in eof_received is reported; connection_lost gets nil (test__read_ready_eof)",
     function()
    local rec
    local reports = require("eddy.test").run_collecting(function(loop)
      rec = net.recorder(loop)
      rec.eof_received = function(self)
        self:log("eof")
        error("eof boom")
      end
      loop:connect_read_pipe(factory(rec), io.popen("printf ab", "r"))
      net.wait(rec.lost_fut)
    end)
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    assert.equal(1, #reports)
    assert.equal("Exception in protocol.eof_received()", reports[1].message)
    assert.matches("eof boom", tostring(reports[1].exception))
  end)
end)

describe("connect_write_pipe", function()
  it("writes to a child's input; write_eof closes and the child sees EOF (test_write_pipe, "
     .. "test_write, test_can_write_eof, test_write_eof)",
     async(function(loop)
    local out = cli.tempfile()
    local pipe = io.popen("cat > " .. cli.q(out), "w")
    local rec = net.recorder(loop)
    local t, p = loop:connect_write_pipe(factory(rec), pipe)
    assert.equal(rec, p)
    assert.matches("^<WritePipeTransport fd=%d+ open>$", tostring(t))
    assert.is_true(t:can_write_eof())
    assert.equal(pipe, t:get_extra_info("pipe"))
    t:write("abc\n")
    t:writelines({"d", "e", "f\n"})
    t:write(eddy.Buffer(2))
    t:write_eof()
    assert.is_true(t:is_closing())
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
    -- closing the io.popen file waited for cat
    assert.equal("closed file", io.type(pipe))
    assert.equal("abc\ndef\n\0\0", cli.readfile(out))
  end))

  it("has the write transport's methods only, as asyncio's _UnixWritePipeTransport",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), a)
    for _, m in ipairs {"pause_reading", "resume_reading", "is_reading"} do
      assert.is_nil(t[m], m)
    end
    for _, m in ipairs {"write", "writelines", "write_eof", "can_write_eof", "abort", "close",
                        "get_write_buffer_size", "set_write_buffer_limits",
                        "get_write_buffer_limits"} do
      assert.is_function(t[m], m)
    end
    t:close()
    net.wait(rec.lost_fut)
    b:close()
  end))

  it("sees the reader go away: connection_lost(nil) with nothing queued (test_write_pipe_disconnect_on_close)",
     async(function(loop)
    local rec = net.recorder(loop)
    local pipe = io.popen("exit 0", "w")
    loop:connect_write_pipe(factory(rec), pipe)
    net.wait(rec.lost_fut)
    assert.same({"made", "lost"}, rec.events)
    assert.is_nil(rec.err)
    assert.equal("closed file", io.type(pipe))
  end))

  it("a reader that leaves with data queued: BrokenPipeError; later writes are dropped "
     .. "(test_write_err, test__write_ready_err)", async(function(loop)
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), io.popen("head -c 5 >/dev/null", "w"))
    t:write(string.rep("x", 1 << 20))
    net.wait(rec.lost_fut)
    assert.is_true(errors.is(rec.err, errors.BrokenPipeError), tostring(rec.err))
    t:write("after")  -- ignored, as on any closed transport
  end))

  it("flow control: pause_writing at the high mark, resume_writing when drained",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), a)
    t:set_write_buffer_limits(4096, 1024)
    assert.same({1024, 4096}, {t:get_write_buffer_limits()})
    t:write(string.rep("y", 1 << 20))
    assert.is_true(t:get_write_buffer_size() > 4096)
    assert.same({"made", "pause"}, rec.events)
    local got = 0
    while got < (1 << 20) do
      got = got + #loop:sock_recv(b, 65536)
    end
    net.wait_until(function() return t:get_write_buffer_size() == 0 end)
    assert.same({"made", "pause", "resume"}, rec.events)
    t:close()
    net.wait(rec.lost_fut)
    b:close()
  end))

  it("data arriving on a socket write pipe is not a hang-up; the peer closing is",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), a)
    b:send("ignored")
    eddy.sleep(0.02)
    assert.is_false(t:is_closing())
    t:write("still open")
    assert.equal("still open", loop:sock_recv(b, 100))
    b:close()
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
    assert.equal(-1, a:fileno())
  end))

  it("abort() drops queued data at once and calls connection_lost(nil) "
     .. "(test_unix_events.py UnixWritePipeTransportTests.test_abort: the buffer is empty)",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), a)
    t:write(string.rep("z", 1 << 20))
    assert.is_true(t:get_write_buffer_size() > 0)
    t:abort()
    assert.is_true(t:is_closing())
    assert.equal(0, t:get_write_buffer_size())
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
    assert.equal(0, t:get_write_buffer_size())
    b:close()
  end))

  it("write('') sends nothing; write_eof with data queued sends it, then closes; close() after "
     .. "that is harmless (test_write_no_data, test_write_eof_pending, test_close_closing)",
     async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), a)
    t:write("")
    assert.equal(0, t:get_write_buffer_size())
    local big = string.rep("z", 1 << 20)
    t:write(big)
    t:write_eof()
    assert.is_true(t:is_closing())
    t:close()
    local got = {}
    repeat
      local d = loop:sock_recv(b, 65536)
      got[#got + 1] = d
    until d == ""
    assert.is_true(table.concat(got) == big)
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
    assert.same({"made", "pause", "resume", "lost"}, rec.events)
    b:close()
  end))

  it("close() flushes queued data first: what the pipe did not take is buffered and written "
     .. "later, then connection_lost (test_write_partial, test__write_ready_partial, "
     .. "test_write_close, test__write_ready_closing)", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local rec = net.recorder(loop)
    local t = loop:connect_write_pipe(factory(rec), a)
    local big = string.rep("q", 300000)
    t:write(big)
    t:close()
    local chunks = {}
    local n = 0
    while n < #big do
      local d = loop:sock_recv(b, 65536)
      chunks[#chunks + 1] = d
      n = n + #d
    end
    assert.equal(big, table.concat(chunks))
    net.wait(rec.lost_fut)
    assert.equal("", loop:sock_recv(b, 10))
    b:close()
  end))
end)

describe("pipe arguments", function()
  local function each_direction(fn)
    fn("connect_read_pipe", "w", "reading")
    fn("connect_write_pipe", "r", "writing")
  end

  it("bad types are argument errors; bad descriptors OSError or ValueError", async(function(loop)
    each_direction(function(name)
      local connect = loop[name]
      local f = factory(net.recorder(loop))
      argerror(function() connect(loop, f, "0") end, 2, name)
      argerror(function() connect(loop, f, 1.5) end, 2, name)
      argerror(function() connect(loop, f, {}) end, 2, name)
      argerror(function() connect(loop, f) end, 2, name)
      argerror(function() connect(loop, 42, 0) end, 1, name)
      raises(function() connect(loop, f, -1) end, {errors.ValueError, "Invalid file descriptor"})
      raises(function() connect(loop, f, 1 << 40) end, errors.ValueError)
      raises(function() connect(loop, f, 999999) end, errors.OSError)
      raises(function() connect(loop, f, {fileno = function() return "x" end}) end,
             errors.ValueError)
      local closed = socket.socket()
      closed:close()
      raises(function() connect(loop, f, closed) end, errors.ValueError)
    end)
  end))

  it("a regular file, /dev/null and a closed file are refused", async(function(loop)
    each_direction(function(name)
      local f = factory(net.recorder(loop))
      local file = assert(io.open("/etc/hostname"))
      raises(function() loop[name](loop, f, file) end,
             {errors.ValueError, "Pipe transport is for pipes/sockets only"})
      assert.equal("file", io.type(file))  -- refused, not closed
      file:close()
      raises(function() loop[name](loop, f, file) end, "attempt to use a closed file")
      local null = assert(io.open("/dev/null", "r+"))
      raises(function() loop[name](loop, f, null) end, errors.ValueError)
      null:close()
    end)
  end))

  it("a pipe open in the other direction is refused", async(function(loop)
    each_direction(function(name, mode, direction)
      local pipe = io.popen("cat >/dev/null", mode)
      raises(function() loop[name](loop, factory(net.recorder(loop)), pipe) end,
             {errors.ValueError, "not open for " .. direction})
      pipe:close()
    end)
  end))

  it("a failing protocol factory leaves the pipe open and the loop clean", async(function(loop)
    each_direction(function(name)
      local a, b = checks.nonblocking_pair()
      raises(function() loop[name](loop, function() error("no protocol") end, a) end,
             "no protocol")
      assert.is_true(a:fileno() >= 0)
      b:send("x")
      assert.equal("x", a:recv(1))
      a:close()
      b:close()
    end)
  end))

  it("raises RuntimeError in a plain callback: they are suspending functions", async(function(loop)
    each_direction(function(name)
      local a, b = checks.nonblocking_pair()
      local done = loop:create_future()
      loop:call_soon(function()
        done:set_result(select(2, pcall(loop[name], loop, factory(net.recorder(loop)), a)))
      end)
      local err = net.wait(done)
      assert.is_true(errors.is(err, errors.RuntimeError), tostring(err))
      assert.matches(name .. "%(%) cannot suspend here", tostring(err))
      a:close()
      b:close()
    end)
  end))
end)

describe("libuv's own pipes", function()
  it("are refused: every loop's signal pipe and the process's signal lock", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local other = eddy.new_event_loop()  -- its signal pipe counts too
eddy.run(function()
  local loop = eddy.get_running_loop()
  loop:add_signal_handler("SIGUSR1", function() end)
  local listing = io.popen("ls -l /proc/" .. eddy.signal.getpid() .. "/fd")
  local pipes = {}
  for fd in listing:read("a"):gmatch("(%d+) %-> pipe:") do pipes[#pipes + 1] = tonumber(fd) end
  listing:close()  -- its own pipe was listed: that descriptor is closed now
  local refused = 0
  for _, fd in ipairs(pipes) do
    for _, name in ipairs {"connect_read_pipe", "connect_write_pipe"} do
      local ok, err = pcall(loop[name], loop, function() return {} end, fd)
      assert(not ok, name .. " took descriptor " .. fd)
      if tostring(err):find("pipe libuv uses for itself", 1, true) then
        refused = refused + 1
      else
        assert(eddy.errors.is(err, eddy.errors.OSError), tostring(err))
      end
    end
  end
  -- lock pipe, this loop's and the other loop's signal pipes: 6 ends
  assert(refused == 12, "refused " .. refused)
  -- signals still work
  local got = loop:create_future()
  loop:add_signal_handler("SIGUSR1", function() got:set_result(true) end)
  eddy.signal.kill(eddy.signal.getpid(), "SIGUSR1")
  assert(eddy.wait_for(got, 5))
end)
other:close()
print("ok")
]], ".lua")
    -- without the pipes this process would pass on (they are not libuv's)
    local r = cli.sh("python3 -c 'import os, sys; os.closerange(3, 65536); "
                     .. "os.execv(sys.argv[1], sys.argv[1:])' "
                     .. cli.q(cli.binary) .. " " .. cli.q(script))
    assert.same({code = 0, out = "ok\n", err = ""}, r)
  end)
end)

describe("standard descriptors as pipes", function()
  it("copies stdin to stdout through pipe transports, then points 0 and 1 at /dev/null",
     function()
    local script = cli.tempfile([[
local eddy = require "eddy"
eddy.run(function()
  local loop = eddy.get_running_loop()
  local out_lost, in_lost = loop:create_future(), loop:create_future()
  local w = loop:connect_write_pipe(function()
    return {connection_lost = function(_, err) out_lost:set_result(err or "ok") end}
  end, 1)
  loop:connect_read_pipe(function()
    return {data_received = function(_, d) w:write(d:upper()) end,
            connection_lost = function(_, err) in_lost:set_result(err or "ok") end}
  end, 0)
  assert(eddy.wait_for(in_lost, 5) == "ok")
  w:write_eof()
  assert(eddy.wait_for(out_lost, 5) == "ok")
end)
-- both descriptors now read/write /dev/null, not a socket made later
assert(io.read("a") == "")
local s = eddy.socket.socket()
assert(s:fileno() > 2, "a socket got fd " .. s:fileno())
s:close()
io.stderr:write("done\n")
]], ".lua")
    local pipeline = "printf 'abc\\ndef\\n' | " .. cli.q(cli.binary) .. " " .. cli.q(script)
                     .. " | cat"
    local r = cli.sh("sh -c " .. cli.q(pipeline))
    assert.same({code = 0, out = "ABC\nDEF\n", err = "done\n"}, r)
  end)
end)
