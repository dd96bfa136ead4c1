-- Fd watchers: loop:add_reader/remove_reader/add_writer/remove_writer.
local eddy = require "eddy"
local errors = eddy.errors
local socket = require "eddy.socket"
local test = require "eddy.test"
local async = test.async

local checks = require "support.checks"
local net = require "support.net"
local tmp = require "support.tmp"
local raises = checks.expect_error

describe("fd watchers", function()
  it("add_reader calls back with its arguments when readable (test_add_reader, test_remove_reader, "
     .. "test_remove_reader_unknown, test_process_events_read)", async(function(loop)
    local a, b = socket.socketpair()
    local fut = loop:create_future()
    local h = loop:add_reader(b, function(x, y)
      assert.is_true(loop:remove_reader(b))
      fut:set_result(b:recv(10), x, y)
    end, "x", 2)
    assert.is_false(h:cancelled())
    a:send("ping")
    assert.same({"ping", "x", 2}, {fut:await()})
    assert.is_false(loop:remove_reader(b))
    a:close() b:close()
  end))

  it("test_reader_callback: a reader reads a socketpair to EOF, then removes itself",
     async(function(loop)
    local r, w = socket.socketpair()
    r:setblocking(false)
    local got, removed = {}, loop:create_future()
    loop:add_reader(r:fileno(), function()
      local ok, data = pcall(r.recv, r, 1024)
      if not ok then return end  -- a spurious wake-up
      if data ~= "" then
        got[#got + 1] = data
      else
        removed:set_result(loop:remove_reader(r:fileno()))
        r:close()
      end
    end)
    loop:call_soon(function() w:send("abc") end)
    net.wait_until(function() return #table.concat(got) >= 3 end)
    loop:call_soon(function() w:send("def") end)
    net.wait_until(function() return #table.concat(got) >= 6 end)
    loop:call_soon(function() w:close() end)
    assert.is_true(eddy.wait_for(removed, 5))
    assert.equal("abcdef", table.concat(got))
  end))

  it("test_writer_callback: a writer sends once; remove_writer is true, then false",
     async(function(loop)
    local r, w = socket.socketpair()
    w:setblocking(false)
    local data, sent = string.rep("x", 1024), loop:create_future()
    loop:add_writer(w:fileno(), function(d)
      if not sent:done() then w:send(d) sent:set_result(true) end
    end, data)
    eddy.wait_for(sent, 5)
    assert.is_true(loop:remove_writer(w:fileno()))
    assert.is_false(loop:remove_writer(w:fileno()))
    w:close()
    assert.equal(data, r:recv(#data * 2))
    r:close()
  end))

  it("takes integers, sockets, file handles and :fileno() objects", async(function(loop)
    local a, b = socket.socketpair()
    local obj = {fileno = function() return b:fileno() end}
    for _, fd in ipairs {b:fileno(), b, obj} do
      local fut = loop:create_future()
      loop:add_reader(fd, function() fut:set_result(true) end)
      a:send("x")
      fut:await()
      assert.is_true(loop:remove_reader(fd))
      b:recv(10)
    end
    local f = io.popen("echo popen")
    local fut = loop:create_future()
    loop:add_reader(f, function() fut:set_result(f:read("l")) end)
    assert.equal("popen", fut:await())
    assert.is_true(loop:remove_reader(f))
    f:close()
    a:close() b:close()
  end))

  it("add_writer fires while writable, and read and write share one fd (test_add_writer, "
     .. "test_add_reader_existing_writer, test_process_events_write)", async(function(loop)
    local a, b = socket.socketpair()
    local events = {}
    local done = loop:create_future()
    loop:add_reader(a, function()
      events[#events + 1] = "r:" .. a:recv(10)
      loop:remove_reader(a)
      done:set_result()
    end)
    loop:add_writer(a, function()
      events[#events + 1] = "w"
      loop:remove_writer(a)
      b:send("r")
    end)
    done:await()
    assert.same({"w", "r:r"}, events)
    a:close() b:close()
  end))

  it("replacing a reader cancels the old handle (test_add_reader_existing)", async(function(loop)
    local a, b = socket.socketpair()
    local fut = loop:create_future()
    local old = loop:add_reader(b, function() fut:set_result("old") end)
    loop:add_reader(b, function() fut:set_result("new") end)
    assert.is_true(old:cancelled())
    a:send("x")
    assert.equal("new", fut:await())
    loop:remove_reader(b)
    a:close() b:close()
  end))

  it("removing one direction of an fd leaves the other; a replaced writer is cancelled; a cancelled "
     .. "writer is not called (test_remove_reader_read_write, test_remove_writer_read_write, "
     .. "test_add_writer_existing, test_remove_writer, test_remove_writer_unknown, "
     .. "test_process_events_write_cancelled)", async(function(loop)
    local a, b = socket.socketpair()
    local got = {}
    local old = loop:add_writer(b, function() got[#got + 1] = "old writer" end)
    local writes = loop:create_future()
    loop:add_writer(b, function() if not writes:done() then writes:set_result(true) end end)
    assert.is_true(old:cancelled())
    local reads = loop:create_future()
    loop:add_reader(b, function() b:recv(10) reads:set_result(true) end)
    assert.is_true(loop:remove_reader(b))
    writes:await()  -- the writer goes on without its reader
    assert.is_true(loop:remove_writer(b))
    assert.is_false(loop:remove_writer(b))
    loop:add_reader(b, function() b:recv(10) reads:set_result(true) end)
    loop:add_writer(b, function() got[#got + 1] = "cancelled writer" end):cancel()
    a:send("x")
    reads:await()  -- the reader goes on without its writer
    eddy.sleep(0.02)  -- b stays writable
    assert.is_false(loop:remove_writer(b))  -- dropped when b was ready
    assert.is_true(loop:remove_reader(b))
    assert.same({}, got)
    a:close() b:close()
  end))

  it("a cancelled handle is dropped when its fd is ready, not called (asyncio's _process_events: "
     .. "test_process_events_read_cancelled)",
     async(function(loop)
    local a, b = socket.socketpair()
    local calls, writes = 0, loop:create_future()
    loop:add_reader(b, function() calls = calls + 1 end):cancel()
    loop:add_writer(b, function()
      loop:remove_writer(b)
      writes:set_result(true)
    end)
    a:send("x")
    writes:await()
    -- the ready fd no longer wakes the loop: the reader went, the writer's
    -- own interest was left alone until its callback removed it
    -- (a busy loop would spend the whole 0.2 s; half leaves room for a
    -- slow machine's collector and sanitizers)
    local idle = os.clock()
    eddy.sleep(0.2)
    assert.is_true(os.clock() - idle < 0.1)
    assert.equal(0, calls)
    assert.is_false(loop:remove_reader(b))
    a:close() b:close()
  end))

  it("a callback error goes to the exception handler and the loop goes on", function()
    local reports = test.run_collecting(function(loop)
      local a, b = socket.socketpair()
      local n = 0
      loop:add_reader(b, function()
        n = n + 1
        b:recv(10)
        if n == 1 then error("boom") end
        loop:remove_reader(b)
      end)
      -- each byte is waited for: after a fixed sleep, a loaded machine
      -- could wake the sleeper first and send "2" before the first call
      -- read "1", so one call would read both
      a:send("1")
      net.wait_until(function() return n == 1 end)
      a:send("2")
      net.wait_until(function() return n == 2 end)
      eddy.sleep(0.05)
      assert.equal(2, n)  -- removed: no third call
      a:close() b:close()
    end)
    assert.equal(1, #reports)
    assert.matches("boom", tostring(reports[1].exception))
  end)

  it("rejects bad fds and values (test_add_reader_invalid_argument)", async(function(loop)
    raises(errors.OSError, loop.add_reader, loop, 987, print)
    raises(errors.ValueError, loop.add_reader, loop, -1, print)
    assert.has_error(function() loop:add_reader({}, print) end)
    assert.has_error(function() loop:add_reader("3", print) end)
    assert.has_error(function() loop:add_writer(0, 42) end)
    local f = io.open(tmp.path(), "w")
    raises(errors.PermissionError, loop.add_reader, loop, f, print)
    f:close()
    assert.has_error(function() loop:add_reader(f, print) end, "attempt to use a closed file")
    local s = socket.socket()
    s:close()
    raises(errors.ValueError, loop.add_reader, loop, s, print)
    for _, call in ipairs {loop.remove_reader, loop.remove_writer} do
      assert.has_error(function() call(loop, {}) end)
    end
    assert.has_error(function() loop:add_writer({}, print) end)
    assert.is_false(loop:remove_reader(5000))
    assert.is_false(loop:remove_writer(5000))
  end))

  -- libuv hands a new interest to epoll only when it next polls, and
  -- aborted the process (epoll_ctl: EBADF) for an fd closed before then.
  it("an fd closed while its watch starts is forgotten, as epoll forgets it",
     async(function(loop)
    local called = false
    local function never() called = true end
    -- closed in the same turn as add_reader / add_writer
    local a, b = socket.socketpair()
    local fd = a:fileno()
    loop:add_reader(fd, never)
    loop:add_writer(fd, never)
    a:close()
    eddy.sleep(0.02)
    assert.is_false(called)
    assert.is_false(loop:remove_reader(fd))
    assert.is_false(loop:remove_writer(fd))
    -- closed by a callback of the poll phase, after it restarted a watch
    local c, d = socket.socketpair()
    local e, f = socket.socketpair()
    local done = loop:create_future()
    loop:add_reader(c, function()
      loop:remove_reader(c)
      loop:add_writer(e, never)
      e:close()
      done:set_result(true)
    end)
    d:send("y")
    assert.is_true(eddy.wait_for(done, 5))
    eddy.sleep(0.02)
    assert.is_false(called)
    -- a watcher that stays (its interest did not change) keeps working
    local g, h = socket.socketpair()
    local got = loop:create_future()
    loop:add_reader(g, function() loop:remove_reader(g) got:set_result(g:recv(10)) end)
    h:send("z")
    assert.equal("z", eddy.wait_for(got, 5))
    for _, s in ipairs{b, c, d, f, g, h} do s:close() end
  end))

  it("closing a watched eddy.socket drops its watcher before the number is reused",
     async(function(loop)
    local stale = 0
    local function count() stale = stale + 1 end
    local function reused(fd)  -- a new socketpair whose first end is fd
      local spare = {}
      for _ = 1, 50 do
        local x, y = socket.socketpair()
        if y:fileno() == fd then x, y = y, x end
        if x:fileno() == fd then
          for _, s in ipairs(spare) do s:close() end
          return x, y
        end
        spare[#spare + 1], spare[#spare + 2] = x, y
      end
      error("fd " .. fd .. " was not handed out again")
    end
    -- watched for a while (in epoll), closed, the number handed out again:
    -- a reader of the new socket must fire
    local a, b = socket.socketpair()
    local fd = a:fileno()
    loop:add_reader(a, count)
    eddy.sleep(0.01)
    a:close() b:close()
    local c, d = reused(fd)
    local fired = loop:create_future()
    loop:add_reader(c, function() loop:remove_reader(c) fired:set_result(c:recv(10)) end)
    d:send("new")
    assert.equal("new", eddy.wait_for(fired, 5))
    c:close() d:close()
    -- closed and reused in the turn the watch started: the old callback
    -- must not fire for the new socket's data
    local e, f = socket.socketpair()
    fd = e:fileno()
    loop:add_reader(e, count)
    e:close() f:close()
    local g, h = reused(fd)
    h:send("not for the old reader")
    eddy.sleep(0.02)
    assert.equal(0, stale)
    assert.is_false(loop:remove_reader(g))
    -- collected without close(): the same
    local i, j = socket.socketpair()
    g:close() h:close()
    fd = i:fileno()
    loop:add_reader(i, count)
    i, j = nil, nil
    collectgarbage() collectgarbage()
    local k, l = reused(fd)
    l:send("x")
    eddy.sleep(0.02)
    assert.equal(0, stale)
    k:close() l:close()
  end))

  it("leaves the fd's blocking mode alone, as a selector", async(function(loop)
    -- libuv's uv_poll_init sets O_NONBLOCK; asyncio never changes it, and
    -- a blocking socket or pipe read in the callback must stay blocking
    local a, b = socket.socketpair()
    loop:add_reader(b, function() end)
    local probe <close> = b:dup()  -- a dup reads the shared O_NONBLOCK flag
    assert.is_true(probe:getblocking())
    assert.is_true(loop:remove_reader(b))
    local f = io.popen("echo one; sleep 0.05; echo two")
    local got = loop:create_future()
    loop:add_reader(f, function()
      loop:remove_reader(f)
      got:set_result(f:read("a"))
    end)
    assert.equal("one\ntwo\n", got:await())
    f:close()
    a:close() b:close()
  end))

  it("add_reader, add_writer, remove_reader and remove_writer refuse an fd a transport uses, "
     .. "given as a number or a socket (test_add_reader_or_writer_transport_fd)", async(function(loop)
    -- asyncio's remove_reader/remove_writer call _ensure_fd_no_transport
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local tr = loop:create_connection(function() return {} end, "127.0.0.1",
                                      srv.sockets[1]:getsockname()[2])
    local fd = tr:get_extra_info("socket"):fileno()
    local err = raises(errors.RuntimeError, loop.remove_reader, loop, fd)
    assert.matches("used by transport", tostring(err))
    raises(errors.RuntimeError, loop.remove_writer, loop, fd)
    local sock = tr:get_extra_info("socket")
    for _, fd_or_sock in ipairs {fd, sock} do
      for _, call in ipairs {loop.add_reader, loop.add_writer} do
        err = raises(errors.RuntimeError, call, loop, fd_or_sock, print)
        assert.matches("File descriptor " .. fd .. " is used by transport", tostring(err))
      end
    end
    raises(errors.RuntimeError, loop.remove_reader, loop, sock)
    raises(errors.RuntimeError, loop.remove_writer, loop, sock)
    tr:close()
    srv:close()
  end))

  it("on a closed loop: remove_* return false, add_* raise RuntimeError "
     .. "(test_remove_fds_after_closing, test_add_fds_after_closing)", function()
    local r, w = socket.socketpair()
    local loop = eddy.new_event_loop()
    loop:add_reader(r, function() end)
    loop:add_writer(w, function() end)
    loop:close()
    assert.is_false(loop:remove_reader(r))
    assert.is_false(loop:remove_writer(w))
    raises(errors.RuntimeError, loop.add_reader, loop, r, function() end)
    raises(errors.RuntimeError, loop.add_writer, loop, w, function() end)
    r:close() w:close()
  end)

  it("a watcher keeps a plain run_forever loop alive, and close() closes it", function()
    local loop = eddy.new_event_loop()
    local a, b = socket.socketpair()
    local got
    loop:add_reader(b, function() got = b:recv(10) loop:stop() end)
    loop:call_later(0.01, function() a:send("wake") end)
    loop:run_forever()
    assert.equal("wake", got)
    loop:add_writer(b, function() end)
    loop:close()  -- closes the watcher
    assert.is_false(loop:remove_reader(b))
    local opened, freed = loop:_handle_counts()
    assert.equal(opened, freed)
    a:close() b:close()
  end)
end)
