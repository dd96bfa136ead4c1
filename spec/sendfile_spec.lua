-- loop:sock_sendfile (src/sendfile.c): sendfile(2) from real files in
-- /tmp to real sockets, the read-and-send fallback, file positions, errors.
local eddy = require "eddy"
local errors = eddy.errors
local socket = require "eddy.socket"
local async = require("eddy.test").async

local checks = require "support.checks"
local tmp = require "support.tmp"
local raises = checks.expect_error
local pair = checks.nonblocking_pair


-- 4 MiB of known content: numbered lines, so a wrong offset shows.
local SIZE = 4 * 1024 * 1024
local path = os.tmpname()
local content
do
  local lines, n, i = {}, 0, 0
  while n < SIZE do
    i = i + 1
    lines[i] = string.format("%015d\n", i)
    n = n + 16
  end
  content = table.concat(lines)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

-- The descriptor number of the file open at 'p' in this process (Linux:
-- the shell's parent is eddy).
local function fd_of(p)
  local ls = assert(io.popen("ls -l /proc/$PPID/fd"))
  local out = ls:read("a")
  ls:close()
  local fd = out:match("(%d+) %-> " .. p:gsub("%p", "%%%0") .. "\n")
  return assert(math.tointeger(tonumber(fd)), "no descriptor for " .. p)
end

-- A task reading n bytes from sock (fewer at EOF).
local function reader(loop, sock, n)
  return loop:create_task(function()
    local parts, got = {}, 0
    while got < n do
      local s = loop:sock_recv(sock, 1 << 20)
      if s == "" then break end
      parts[#parts + 1] = s
      got = got + #s
    end
    return table.concat(parts)
  end)
end

describe("loop:sock_sendfile", function()
  it("sends a whole 4 MiB file over a socketpair, every byte", async(function(loop)
    local a, b = pair()
    local f <close> = assert(io.open(path, "rb"))
    local r = reader(loop, b, SIZE)
    assert.equal(SIZE, loop:sock_sendfile(a, f))
    assert.is_true(r:await() == content)
    assert.equal(SIZE, f:seek())  -- offset + sent
    -- At the end of the file: nothing more to send.
    assert.equal(0, loop:sock_sendfile(a, f, SIZE))
    a:close() b:close()
  end))

  it("honours offset and count and sets the position to offset + sent", async(function(loop)
    local a, b = pair()
    local f <close> = assert(io.open(path, "rb"))
    assert.equal("000000000000001\n", f:read(16))  -- Lua buffered some of it
    local r = reader(loop, b, 1000003)
    assert.equal(1000003, loop:sock_sendfile(a, f, 12345, 1000003))
    assert.is_true(r:await() == content:sub(12346, 12345 + 1000003))
    assert.equal(12345 + 1000003, f:seek())
    -- the handle's buffer was dropped: reading goes on from there
    assert.equal(content:sub(12345 + 1000003 + 1, 12345 + 1000003 + 10), f:read(10))
    -- offset only: up to the end; count past the end: what is there
    r = reader(loop, b, SIZE - 3 * 1024 * 1024)
    assert.equal(SIZE - 3 * 1024 * 1024, loop:sock_sendfile(a, f, 3 * 1024 * 1024))
    assert.is_true(r:await() == content:sub(3 * 1024 * 1024 + 1))
    r = reader(loop, b, 100)
    assert.equal(100, loop:sock_sendfile(a, f, SIZE - 100, 5000))
    assert.equal(content:sub(-100), r:await())
    assert.equal(SIZE, f:seek())
    a:close() b:close()
  end))

  it("sends over TCP on 127.0.0.1", async(function(loop)
    local srv = socket.socket(socket.AF_INET)
    srv:bind({"127.0.0.1", 0})
    srv:listen()
    srv:setblocking(false)
    local accepting = loop:create_task(function() return loop:sock_accept(srv) end)
    local c = socket.socket(socket.AF_INET)
    c:setblocking(false)
    loop:sock_connect(c, srv:getsockname())
    local conn = accepting:await()
    local f <close> = assert(io.open(path, "rb"))
    local r = reader(loop, c, SIZE - 7)
    assert.equal(SIZE - 7, loop:sock_sendfile(conn, f, 7))
    assert.is_true(r:await() == content:sub(8))
    conn:close()
    assert.equal("", loop:sock_recv(c, 10))
    c:close() srv:close()
  end))

  it("an empty file sends nothing and keeps the position", async(function(loop)
    local a, b = pair()
    local empty = os.tmpname()
    local f <close> = assert(io.open(empty, "rb"))
    assert.equal(0, loop:sock_sendfile(a, f))
    assert.equal(0, f:seek())
    os.remove(empty)
    a:close() b:close()
  end))

  it("takes anything with :fileno(), and plain descriptors", async(function(loop)
    local a, b = pair()
    local f <close> = assert(io.open(path, "rb"))
    local fd = fd_of(path)
    -- an object with fileno and seek: seek("set", offset + sent) is called
    local seeks = {}
    local proxy = {
      fileno = function() return fd end,
      seek = function(_, whence, pos) seeks[#seeks + 1] = whence .. " " .. pos return pos end,
    }
    local r = reader(loop, b, 300000)
    assert.equal(300000, loop:sock_sendfile(a, proxy, 5, 300000))
    assert.is_true(r:await() == content:sub(6, 300005))
    assert.same({"set 300005"}, seeks)
    -- a descriptor: lseek
    r = reader(loop, b, 16)
    assert.equal(16, loop:sock_sendfile(a, fd, 32, 16))
    assert.equal(content:sub(33, 48), r:await())
    assert.equal(48, f:seek())
    a:close() b:close()
  end))

  it("falls back to reading and sending for files sendfile(2) cannot take (test_sock_sendfile_fallback, test_sock_sendfile_no_fallback, test_sock_sendfile_fallback_offset_and_count)", async(function(loop)
    local a, b = pair()
    -- /dev/zero: a character device, seekable: read with pread
    local z <close> = assert(io.open("/dev/zero", "rb"))
    local r = reader(loop, b, 700000)
    assert.equal(700000, loop:sock_sendfile(a, z, 3, 700000))
    assert.is_true(r:await() == string.rep("\0", 700000))
    local e = raises(errors.SendfileNotAvailableError, loop.sock_sendfile, loop, a, z, 0, 10,
                     {fallback = false})
    assert.matches("not a regular file", tostring(e))
    -- a pipe: read when readable, up to its end; the loop keeps running
    local p <close> = assert(io.popen("sleep 0.05; printf 'from a pipe'"))
    local ticks = 0
    local ticker = loop:create_task(function()
      while true do eddy.sleep(0.005) ticks = ticks + 1 end
    end)
    r = reader(loop, b, 11)
    assert.equal(11, loop:sock_sendfile(a, p))
    assert.equal("from a pipe", r:await())
    assert.is_true(ticks > 2, "the loop was blocked")
    ticker:cancel()
    -- a pipe has no offsets
    local q <close> = assert(io.popen("printf x"))
    local e2 = raises(errors.OSError, loop.sock_sendfile, loop, a, q, 1)
    assert.equal("ESPIPE", e2.code)
    -- a socket as the source: what arrives until its end
    local c, d = pair()
    local feeder = loop:create_task(function()
      eddy.sleep(0.02)
      loop:sock_sendall(d, "streamed")
      d:close()
    end)
    r = reader(loop, b, 8)
    assert.equal(8, loop:sock_sendfile(a, c))
    assert.equal("streamed", r:await())
    feeder:await()
    a:close() b:close() c:close()
  end))

  it("cancelling leaves the file at offset + sent", async(function(loop)
    local a, b = pair()
    local f <close> = assert(io.open(path, "rb"))
    local t = loop:create_task(function() return loop:sock_sendfile(a, f, 100) end)
    eddy.sleep(0.05)  -- nobody reads: the socket buffer fills up
    assert.is_false(t:done())
    t:cancel()
    assert.is_false(pcall(t.await, t))
    assert.is_true(t:cancelled())
    local pos = f:seek()
    assert.is_true(pos > 100 and pos < SIZE, "position " .. pos)
    -- what arrived is exactly the bytes before that position
    local got = {}
    while true do
      local ok, s = pcall(b.recv, b, 1 << 20)
      if not ok then break end
      got[#got + 1] = s
    end
    got = table.concat(got)
    assert.equal(pos - 100, #got)
    assert.is_true(got == content:sub(101, pos))
    assert.is_false(loop:remove_writer(a))  -- the watcher is gone
    a:close() b:close()
  end))

  it("a closed peer raises BrokenPipeError, without SIGPIPE", async(function(loop)
    local a, b = pair()
    local f <close> = assert(io.open(path, "rb"))
    b:close()
    local e = raises(errors.BrokenPipeError, loop.sock_sendfile, loop, a, f)
    assert.equal("EPIPE", e.code)
    assert.equal(0, f:seek())
    -- without the fallback, asyncio's SendfileNotAvailableError (nothing sent)
    raises(errors.SendfileNotAvailableError, loop.sock_sendfile, loop, a, f, 0, nil,
           {fallback = false})
    -- the peer going away in the middle: the error after bytes went
    local c, d = pair()
    local t = loop:create_task(function() return loop:sock_sendfile(c, f) end)
    eddy.sleep(0.02)
    assert.is_true(#d:recv(4096) > 0)
    d:close()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ConnectionError), tostring(err))
    assert.is_true(f:seek() > 0)
    a:close() c:close()
  end))

  it("rejects bad input (test_blocking_socket, test_nonstream_socket, test_notint_count, "
     .. "test_negative_count, test_notint_offset, test_negative_offset)", async(function(loop)
    local a, b = pair()
    local f = assert(io.open(path, "rb"))
    local e = raises(errors.ValueError, loop.sock_sendfile, loop, a, f, -1)
    assert.equal("ValueError: offset must be a non-negative integer (got -1)", tostring(e))
    e = raises(errors.ValueError, loop.sock_sendfile, loop, a, f, 0, 0)
    assert.equal("ValueError: count must be a positive integer (got 0)", tostring(e))
    raises(errors.ValueError, loop.sock_sendfile, loop, a, f, 0, -5)
    assert.has_error(function() loop:sock_sendfile(a, f, 1.5) end,
                     "bad argument #3 to 'sock_sendfile' (number has no integer representation)")
    assert.has_error(function() loop:sock_sendfile(a, f, 0, 2.5) end)
    assert.has_error(function() loop:sock_sendfile(a, f, "x") end)
    assert.has_error(function() loop:sock_sendfile(a, true) end,
                     "bad argument #2 to 'sock_sendfile' (file descriptor, socket or file expected, got boolean)")
    assert.has_error(function() loop:sock_sendfile("sock", f) end)
    assert.has_error(function() loop:sock_sendfile(a, f, 0, nil, {fallbak = true}) end,
                     "bad argument #5 to 'sock_sendfile' (unknown option 'fallbak')")
    assert.has_error(function() loop:sock_sendfile(a, f, 0, nil, {fallback = 1}) end)
    assert.has_error(function() loop:sock_sendfile(a, f, 0, nil, "yes") end)
    -- a blocking socket, a datagram socket, a closed socket, a closed file
    local c, d = socket.socketpair()
    e = raises(errors.ValueError, loop.sock_sendfile, loop, c, f)
    assert.matches("non%-blocking", tostring(e))
    local u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:setblocking(false)
    e = raises(errors.ValueError, loop.sock_sendfile, loop, u, f)
    assert.matches("SOCK_STREAM", tostring(e))
    u:close()
    c:setblocking(false)
    c:close()
    e = raises(errors.OSError, loop.sock_sendfile, loop, c, f)
    assert.equal("EBADF", e.code)
    f:close()
    assert.has_error(function() loop:sock_sendfile(a, f) end, "attempt to use a closed file")
    -- a file opened for writing only: the fallback reports the read error
    local w <close> = assert(io.open(tmp.path(), "wb"))
    e = raises(errors.OSError, loop.sock_sendfile, loop, a, w)
    assert.equal("EBADF", e.code)
    a:close() b:close() d:close()
  end))

  it("raises RuntimeError from a plain callback", function()
    local loop = eddy.new_event_loop()
    local a, b = pair()
    local f <close> = assert(io.open(path, "rb"))
    local ok, err
    loop:call_soon(function()
      ok, err = pcall(loop.sock_sendfile, loop, a, f)
      loop:stop()
    end)
    loop:run_forever()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
    assert.matches("sock_sendfile", tostring(err))
    assert.equal(0, f:seek())  -- nothing was sent
    assert.is_false(pcall(b.recv, b, 10))
    loop:close()
    a:close() b:close()
  end)
end)

-- How many descriptors of this process refer to the socket of transport t
-- (the dup sendfile uses must be closed after it).
local function nfds(t)
  local fd = t:get_extra_info("socket"):fileno()
  local ls = assert(io.popen("ls -l /proc/$PPID/fd"))
  local out = ls:read("a")
  ls:close()
  local target = assert(out:match("%s" .. fd .. " %-> (socket:%S+)"))
  local n = 0
  for link in out:gmatch("%-> (%S+)") do
    if link == target then n = n + 1 end
  end
  return n
end

-- A protocol keeping what it receives.
local function keeper()
  local p = {chunks = {}}
  function p.connection_made(_, t) p.transport = t end
  function p.data_received(_, d) p.chunks[#p.chunks + 1] = d end
  function p.connection_lost(_, err) p.lost, p.err = true, err end
  return p
end

-- A TCP transport connected to a plain socket: transport, protocol, conn.
local function tcp_transport(loop)
  local srv = socket.socket(socket.AF_INET)
  srv:bind({"127.0.0.1", 0})
  srv:listen()
  srv:setblocking(false)
  local accepting = loop:create_task(function() return loop:sock_accept(srv) end)
  local p = keeper()
  local t = loop:create_connection(function() return p end, "127.0.0.1", srv:getsockname()[2])
  local conn = accepting:await()
  srv:close()
  return t, p, conn
end

describe("loop:sendfile", function()
  teardown(function() os.remove(path) end)  -- the last block using it

  it("TCP: queued writes go first, then the file, then later writes", async(function(loop)
    local t, p, conn = tcp_transport(loop)
    local f <close> = assert(io.open(path, "rb"))
    local head = string.rep("h", 8 * 1024 * 1024)  -- more than the kernel takes at once
    t:write(head)
    assert.is_true(t:get_write_buffer_size() > 0)
    local r = reader(loop, conn, #head + SIZE + 4)
    local seen_reading
    loop:call_soon(function() seen_reading = t:is_reading() end)
    assert.equal(SIZE, loop:sendfile(t, f))
    assert.is_false(seen_reading)  -- reading paused meanwhile
    assert.is_true(t:is_reading())  -- and resumed
    assert.equal(SIZE, f:seek())
    assert.equal(1, nfds(t))  -- the descriptor's dup is closed
    t:write("tail")
    assert.is_true(r:await() == head .. content .. "tail")
    -- the transport still reads
    loop:sock_sendall(conn, "back")
    for _ = 1, 100 do
      if #p.chunks > 0 then break end
      eddy.sleep(0.01)
    end
    assert.equal("back", table.concat(p.chunks))
    t:close()
    assert.equal("", loop:sock_recv(conn, 10))
    conn:close()
    for _ = 1, 100 do
      if p.lost then break end
      eddy.sleep(0.01)
    end
    assert.is_true(p.lost)
  end))

  it("UNIX: offset and count over connect_accepted_socket; paused reading stays paused", async(function(loop)
    local a, b = pair()
    local p = keeper()
    local t = loop:connect_accepted_socket(function() return p end, a)
    local f <close> = assert(io.open(path, "rb"))
    t:pause_reading()
    local r = reader(loop, b, 65536)
    assert.equal(65536, loop:sendfile(t, f, 1000, 65536))
    assert.is_true(r:await() == content:sub(1001, 1000 + 65536))
    assert.equal(1000 + 65536, f:seek())
    assert.is_false(t:is_reading())
    t:close()
    eddy.sleep(0)
    b:close()
  end))

  it("falls back to reading and transport:write", async(function(loop)
    local t, _, conn = tcp_transport(loop)
    local z <close> = assert(io.open("/dev/zero", "rb"))
    local r = reader(loop, conn, 3000000)
    assert.equal(3000000, loop:sendfile(t, z, 0, 3000000))
    assert.is_true(r:await() == string.rep("\0", 3000000))
    assert.is_true(t:is_reading())
    local e = raises(errors.SendfileNotAvailableError, loop.sendfile, loop, t, z, 0, 10,
                     {fallback = false})
    assert.matches("not a regular file", tostring(e))
    local pipe <close> = assert(io.popen("printf 'piped bytes'"))
    r = reader(loop, conn, 11)
    assert.equal(11, loop:sendfile(t, pipe))
    assert.equal("piped bytes", r:await())
    t:close()
    eddy.sleep(0)
    conn:close()
  end))

  it("refuses transport:write during the native transfer, as asyncio (test_sendfile_prevents_bare_write)",
     async(function(loop)
    -- asyncio's _make_empty_waiter: write() raises from the flush of the
    -- queued writes to the end of sendfile(2); nothing refused is sent.
    local t, _, conn = tcp_transport(loop)
    local f <close> = assert(io.open(path, "rb"))
    t:write(string.rep("q", 4 * 1024 * 1024))  -- queued: the flush waits
    local task = loop:create_task(function() return loop:sendfile(t, f) end)
    eddy.sleep(0)
    assert.is_false(task:done())
    local e = raises(errors.RuntimeError, t.write, t, "x")
    assert.equal("RuntimeError: unable to write; sendfile is in progress", tostring(e))
    e = raises(errors.RuntimeError, t.writelines, t, {"x"})
    -- asyncio 3.12's _SelectorSocketTransport.writelines names itself
    assert.equal("RuntimeError: unable to writelines; sendfile is in progress", tostring(e))
    local r = reader(loop, conn, 4 * 1024 * 1024 + SIZE + 4)
    assert.equal(SIZE, task:await())
    t:write("tail")  -- allowed again
    assert.is_true(r:await() == string.rep("q", 4 * 1024 * 1024) .. content .. "tail")
    -- the fallback writes through the transport: no refusal there
    -- (the pipe's bytes 1 s later: "mid" must come first, even if a loaded
    -- machine stalls well past the 20 ms below)
    local pipe <close> = assert(io.popen("sleep 1; printf 'piped'"))
    task = loop:create_task(function() return loop:sendfile(t, pipe) end)
    eddy.sleep(0.02)
    t:write("mid")
    r = reader(loop, conn, 8)
    assert.equal(5, task:await())
    assert.equal("midpiped", r:await())
    t:close()
    eddy.sleep(0)
    conn:close()
  end))

  it("a transport closed midway raises ConnectionError", async(function(loop)
    local t, p, conn = tcp_transport(loop)
    local f <close> = assert(io.open(path, "rb"))
    local task = loop:create_task(function() return loop:sendfile(t, f) end)
    eddy.sleep(0.05)  -- nobody reads: the socket buffer fills up
    assert.is_false(task:done())
    assert.equal(2, nfds(t))  -- the transport's descriptor and the dup
    t:abort()
    local ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ConnectionError), tostring(err))
    assert.is_true(f:seek() > 0)
    for _ = 1, 100 do
      if p.lost then break end
      eddy.sleep(0.01)
    end
    assert.is_true(p.lost)
    assert.is_true(loop:sock_recv(conn, 1 << 20) ~= "")  -- the peer sees data,
    while loop:sock_recv(conn, 1 << 20) ~= "" do end   -- then the end: all closed
    conn:close()
    -- the fallback too
    local t2, _, conn2 = tcp_transport(loop)
    local z <close> = assert(io.open("/dev/zero", "rb"))
    task = loop:create_task(function() return loop:sendfile(t2, z, 0, 100 * 1024 * 1024) end)
    eddy.sleep(0.05)
    t2:abort()
    ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ConnectionError), tostring(err))
    eddy.sleep(0)
    conn2:close()
  end))

  it("a transport closed midway raises ConnectionError with a protocol that has no connection_lost",
     async(function(loop)
    -- a missing protocol method does nothing (API.md §7): the transfer
    -- must still hear of the close
    local srv = socket.socket(socket.AF_INET)
    srv:bind({"127.0.0.1", 0})
    srv:listen()
    srv:setblocking(false)
    local accepting = loop:create_task(function() return loop:sock_accept(srv) end)
    local t = loop:create_connection(function() return {} end, "127.0.0.1", srv:getsockname()[2])
    local conn = accepting:await()
    srv:close()
    local f <close> = assert(io.open(path, "rb"))
    local task = loop:create_task(function() return loop:sendfile(t, f) end)
    eddy.sleep(0.05)  -- nobody reads: the socket buffer fills up
    assert.is_false(task:done())
    t:abort()
    local ok, err = pcall(eddy.wait_for, task, 5)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ConnectionError), tostring(err))
    conn:close()
  end))

  it("cancelling restores reading and the file position", async(function(loop)
    local t, _, conn = tcp_transport(loop)
    local f <close> = assert(io.open(path, "rb"))
    local task = loop:create_task(function() return loop:sendfile(t, f, 16) end)
    eddy.sleep(0.05)
    task:cancel()
    assert.is_false(pcall(task.await, task))
    assert.is_true(task:cancelled())
    assert.is_true(t:is_reading())
    local pos = f:seek()
    assert.is_true(pos > 16 and pos < SIZE)
    local r = reader(loop, conn, pos - 16)
    assert.is_true(r:await() == content:sub(17, pos))
    t:close()
    eddy.sleep(0)
    conn:close()
  end))

  it("rejects bad input", async(function(loop)
    local t, _, conn = tcp_transport(loop)
    local f <close> = assert(io.open(path, "rb"))
    local e = raises(errors.ValueError, loop.sendfile, loop, t, f, -1)
    assert.equal("ValueError: offset must be a non-negative integer (got -1)", tostring(e))
    raises(errors.ValueError, loop.sendfile, loop, t, f, 0, 0)
    assert.has_error(function() loop:sendfile(t, f, 0.5) end)
    assert.has_error(function() loop:sendfile(t, {}) end)
    assert.has_error(function() loop:sendfile(42, f) end,
                     "bad argument #1 to 'sendfile' (transport expected, got number)")
    e = raises(errors.RuntimeError, loop.sendfile, loop, {}, f)
    assert.matches("sendfile is not supported for transport", tostring(e))
    -- a transport that cannot sendfile, closing: asyncio says closing first
    local closing = {is_closing = function() return true end}
    e = raises(errors.RuntimeError, loop.sendfile, loop, closing, f)
    assert.equal("RuntimeError: Transport is closing", tostring(e))
    assert.is_true(t:is_reading())  -- bad input changes nothing
    t:close()
    e = raises(errors.RuntimeError, loop.sendfile, loop, t, f)
    assert.equal("RuntimeError: Transport is closing", tostring(e))
    eddy.sleep(0)
    conn:close()
  end))
end)

-- CPython's test_sendfile.py: a server protocol receiving what a client
-- sends with loop:sendfile (or loop:sock_sendfile), with 4 KiB socket
-- buffers so that the transfer waits, TLS too.
describe("sendfile (test_sendfile)", function()
  local tls = require "support.tls"
  teardown(function() tls.cleanup() end)

  local DATA = string.rep("x", 1024 * 17 * 64 + 1)
  local BUF_SIZE = 4 * 1024

  local function open_data()
    return assert(io.open(tmp.file(DATA), "rb"))
  end

  -- A pipe giving DATA: a file sendfile(2) cannot take, so the transfer
  -- falls back to reading and writing (CPython's tests force that by
  -- replacing loop._sendfile_native).
  local function piped_data()
    return assert(io.popen("cat " .. tmp.file(DATA) .. " 2>/dev/null", "r"))
  end

  -- MySendfileProto: keeps what it receives; closes its transport once it
  -- has close_after bytes; 'done' resolves in connection_lost.
  local function sendfile_proto(loop, close_after)
    local p = {chunks = {}, nbytes = 0, done = loop:create_future()}
    function p.connection_made(_, t) p.transport = t end
    function p.data_received(_, d)
      p.nbytes = p.nbytes + #d
      p.chunks[#p.chunks + 1] = d
      if close_after and p.nbytes >= close_after then p.transport:close() end
    end
    function p.connection_lost() p.done:set_result(true) end
    function p.data() return table.concat(p.chunks) end
    return p
  end

  local function wait(fut) return eddy.wait_for(fut, 10) end

  -- A server on 127.0.0.1 with a 4 KiB receive buffer, for srv_proto;
  -- returns the server and its port.
  local function small_buffer_server(loop, srv_proto, ssl)
    local server = loop:create_server(function() return srv_proto end, "127.0.0.1", 0, {ssl = ssl})
    server.sockets[1]:setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF_SIZE)
    return server, server.sockets[1]:getsockname()[2]
  end

  -- prepare_sendfile: a client transport (with a 4 KiB send buffer and
  -- write limit) connected to a server protocol.  Returns srv_proto,
  -- cli_proto and the cleanup function.
  local function prepare_sendfile(loop, opts)
    opts = opts or {}
    local srv_proto = sendfile_proto(loop, opts.close_after)
    local server, port = small_buffer_server(loop, srv_proto,
                                             opts.ssl and tls.server_context() or nil)
    local cli_sock = socket.socket()
    cli_sock:connect({"127.0.0.1", port})
    local cli_proto = sendfile_proto(loop)
    local tr = loop:create_connection(function() return cli_proto end, nil, nil, {
      sock = cli_sock, ssl = opts.ssl and tls.client_context() or nil,
      server_hostname = opts.ssl and "localhost" or nil})
    tr:get_extra_info("socket"):setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF_SIZE)
    tr:set_write_buffer_limits(BUF_SIZE)
    local function cleanup()
      srv_proto.transport:close()
      cli_proto.transport:close()
      wait(srv_proto.done)
      wait(cli_proto.done)
      server:close()
      server:wait_closed()
    end
    return srv_proto, cli_proto, cleanup
  end

  -- prepare_socksendfile: a non-blocking socket connected to a server
  -- protocol.  Returns the socket, the protocol and the cleanup function.
  local function prepare_socksendfile(loop)
    local proto = sendfile_proto(loop)
    local server, port = small_buffer_server(loop, proto)
    local sock = socket.socket()
    sock:setblocking(false)
    loop:sock_connect(sock, {"127.0.0.1", port})
    sock:setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF_SIZE)
    local function cleanup()
      if proto.transport then proto.transport:close() end
      wait(proto.done)
      server:close()
      server:wait_closed()
    end
    return sock, proto, cleanup
  end

  it("sock_sendfile sends the whole file (test_sock_sendfile_success)", async(function(loop)
    local sock, proto, cleanup = prepare_socksendfile(loop)
    local f <close> = open_data()
    assert.equal(#DATA, loop:sock_sendfile(sock, f))
    sock:close()
    wait(proto.done)
    assert.is_true(proto.data() == DATA)
    assert.equal(#DATA, f:seek())
    cleanup()
  end))

  it("sock_sendfile with offset and count (test_sock_sendfile_with_offset_and_count)", async(function(loop)
    local sock, proto, cleanup = prepare_socksendfile(loop)
    local f <close> = open_data()
    assert.equal(2000, loop:sock_sendfile(sock, f, 1000, 2000))
    sock:close()
    wait(proto.done)
    assert.equal(DATA:sub(1001, 3000), proto.data())
    assert.equal(3000, f:seek())
    cleanup()
  end))

  it("sock_sendfile of an empty file sends nothing (test_sock_sendfile_zero_size)", async(function(loop)
    local sock, proto, cleanup = prepare_socksendfile(loop)
    local f <close> = assert(io.open(tmp.file(""), "rb"))
    assert.equal(0, loop:sock_sendfile(sock, f, 0, nil))
    sock:close()
    wait(proto.done)
    assert.equal(0, proto.nbytes)
    assert.equal(0, f:seek())
    cleanup()
  end))

  it("sock_sendfile between sock_sendall calls keeps the order (test_sock_sendfile_mix_with_regular_send)",
     async(function(loop)
    local buf = string.rep("mix_regular_send", 4 * 1024)  -- 64 KiB
    local sock, proto, cleanup = prepare_socksendfile(loop)
    local f <close> = open_data()
    loop:sock_sendall(sock, buf)
    assert.equal(#DATA, loop:sock_sendfile(sock, f))
    loop:sock_sendall(sock, buf)
    sock:close()
    wait(proto.done)
    assert.is_true(proto.data() == buf .. DATA .. buf)
    assert.equal(#DATA, f:seek())
    cleanup()
  end))

  it("a datagram transport raises RuntimeError, sending nothing (test_sendfile_not_supported)",
     async(function(loop)
    local tr = loop:create_datagram_endpoint(function() return {} end, nil, nil,
                                             {family = socket.AF_INET})
    local f <close> = open_data()
    local e = raises(errors.RuntimeError, loop.sendfile, loop, tr, f)
    assert.matches("not supported", tostring(e))
    assert.equal(0, f:seek())
    tr:close()
  end))

  -- sendfile(transport, f, offset, count) from open() (default: the
  -- data file), then close: checks the count sent, what the server got
  -- and (but for a pipe) the file position.
  local function sendfile_and_close(loop, opts, offset, count, open)
    local srv_proto, cli_proto, cleanup = prepare_sendfile(loop, opts)
    local f <close> = (open or open_data)()
    local first = (offset or 0) + 1
    local want = DATA:sub(first, count and first + count - 1 or -1)
    assert.equal(#want, loop:sendfile(cli_proto.transport, f, offset, count))
    cli_proto.transport:close()
    wait(srv_proto.done)
    assert.equal(#want, srv_proto.nbytes)
    assert.is_true(srv_proto.data() == want)
    if open == nil then assert.equal(first - 1 + #want, f:seek()) end
    cleanup()
  end

  it("sendfile over a TCP transport (test_sendfile)", async(function(loop)
    sendfile_and_close(loop)
  end))

  it("sendfile falls back to reading and writing (test_sendfile_force_fallback)", async(function(loop)
    sendfile_and_close(loop, nil, nil, nil, piped_data)
  end))

  it("sendfile over TLS (test_sendfile_ssl)", async(function(loop)
    sendfile_and_close(loop, {ssl = true})
  end))

  it("fallback = false where sendfile(2) cannot go raises, sending nothing (test_sendfile_force_unsupported_native)",
     async(function(loop)
    local srv_proto, cli_proto, cleanup = prepare_sendfile(loop)
    local f <close> = piped_data()
    local e = raises(errors.SendfileNotAvailableError, loop.sendfile, loop, cli_proto.transport, f,
                     nil, nil, {fallback = false})
    assert.matches("not a regular file", tostring(e))
    cli_proto.transport:close()
    wait(srv_proto.done)
    assert.equal(0, srv_proto.nbytes)
    cleanup()
  end))

  it("sendfile on a closing transport raises, sending nothing (test_sendfile_for_closing_transp)",
     async(function(loop)
    local srv_proto, cli_proto, cleanup = prepare_sendfile(loop)
    local f <close> = open_data()
    cli_proto.transport:close()
    local e = raises(errors.RuntimeError, loop.sendfile, loop, cli_proto.transport, f)
    assert.matches("is closing", tostring(e))
    wait(srv_proto.done)
    assert.equal(0, srv_proto.nbytes)
    assert.equal(0, f:seek())
    cleanup()
  end))

  -- Writes before and after sendfile arrive in order around the file.
  local function pre_and_post_data(loop, opts, prefix, suffix)
    local srv_proto, cli_proto, cleanup = prepare_sendfile(loop, opts)
    local f <close> = open_data()
    cli_proto.transport:write(prefix)
    assert.equal(#DATA, loop:sendfile(cli_proto.transport, f))
    cli_proto.transport:write(suffix)
    cli_proto.transport:close()
    wait(srv_proto.done)
    assert.is_true(srv_proto.data() == prefix .. DATA .. suffix)
    assert.equal(#DATA, f:seek())
    cleanup()
  end

  it("writes before and after sendfile keep their order (test_sendfile_pre_and_post_data)",
     async(function(loop)
    pre_and_post_data(loop, nil, string.rep("PREFIX__", 1024), string.rep("--SUFFIX", 1024))
  end))

  it("writes before and after sendfile keep their order over TLS (test_sendfile_ssl_pre_and_post_data)",
     async(function(loop)
    pre_and_post_data(loop, {ssl = true}, string.rep("zxcvbnm", 1024), string.rep("0987654321", 1024))
  end))

  it("sendfile with offset and count (test_sendfile_partial)", async(function(loop)
    sendfile_and_close(loop, nil, 1000, 100)
  end))

  it("sendfile with offset and count over TLS (test_sendfile_ssl_partial)", async(function(loop)
    sendfile_and_close(loop, {ssl = true}, 1000, 100)
  end))

  it("a peer closing once it has everything does not fail sendfile (test_sendfile_close_peer_after_receiving)",
     async(function(loop)
    sendfile_and_close(loop, {close_after = #DATA})
  end))

  it("a peer closing once it has everything does not fail sendfile over TLS "
     .. "(test_sendfile_ssl_close_peer_after_receiving)", async(function(loop)
    sendfile_and_close(loop, {ssl = true, close_after = #DATA})
  end))

  it("a peer closing midway fails sendfile with ConnectionError (test_sendfile_close_peer_in_the_middle_of_receiving)",
     async(function(loop)
    local srv_proto, cli_proto, cleanup = prepare_sendfile(loop, {close_after = 1024})
    local f <close> = open_data()
    raises(errors.ConnectionError, loop.sendfile, loop, cli_proto.transport, f)
    wait(srv_proto.done)
    assert.is_true(srv_proto.nbytes >= 1024 and srv_proto.nbytes < #DATA, srv_proto.nbytes)
    local pos = f:seek()
    assert.is_true(pos >= 1024 and pos < #DATA, pos)
    eddy.sleep(0)  -- run_loop() turns the loop once at least: the resumed read meets the reset
    assert.is_true(cli_proto.transport:is_closing())
    cleanup()
  end))

  it("a peer closing midway fails the fallback with ConnectionError "
     .. "(test_sendfile_fallback_close_peer_in_the_middle_of_receiving)", async(function(loop)
    local srv_proto, cli_proto, cleanup = prepare_sendfile(loop, {close_after = 1024})
    local f <close> = piped_data()
    raises(errors.ConnectionError, loop.sendfile, loop, cli_proto.transport, f)
    wait(srv_proto.done)
    assert.is_true(srv_proto.nbytes >= 1024 and srv_proto.nbytes < #DATA, srv_proto.nbytes)
    cleanup()
  end))
end)
