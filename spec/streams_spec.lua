-- Streams (API.md §8): StreamReader on its own (feed_data/feed_eof), and
-- open_connection/start_server over real sockets on 127.0.0.1 port 0 and
-- UNIX sockets in /tmp.  Descriptions name the CPython test
-- (Lib/test/test_asyncio/test_streams.py) a case follows, where there is one.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local test = require "eddy.test"
local checks = require "support.checks"
local net = require "support.net"
local tmp = require "support.tmp"
local socket = require "eddy.socket"
local raises, argerror = checks.raises, checks.argerror

local PYTHON = "/usr/bin/python3"

-- A stream server on 127.0.0.1 port 0; returns it and its port.
local function serve(cb, opts)
  local srv = eddy.start_server(cb, "127.0.0.1", 0, opts)
  return srv, srv.sockets[1]:getsockname()[2]
end

-- A line echo handler: each line comes back, then the connection closes.
local function echo_lines(reader, writer)
  while true do
    local line = reader:readline()
    if line == "" then break end
    writer:write(line)
    writer:drain()
  end
  writer:close()
end

local function temp_path() return tmp.path(".sock") end

-- Run fn(...) as a task; returns the task.
local function spawn(loop, fn, ...)
  return loop:create_task(fn, ...)
end

describe("StreamReader", function()
  it("feed_data of \"\" changes nothing (test_feed_empty_data)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("")
    assert.is_false(r:at_eof())
    r:feed_eof()
    assert.is_true(r:at_eof())
    assert.equal("", r:read())
  end))

  it("feed_data keeps the data until it is read (test_feed_nonempty_data)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("line1\nline2\n")
    assert.equal(12, r:_status().size)
    assert.equal("line1\nline2\n", r:read(100))
    assert.equal(0, r:_status().size)
  end))

  it("read(0) returns \"\" at once (test_read_zero)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("data")
    assert.equal("", r:read(0))
    assert.equal("data", r:read(4))
  end))

  it("read waits for data and returns what came (test_read)", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:read(30) end)
    eddy.sleep(0)
    assert.is_false(t:done())
    r:feed_data("chunk")
    assert.equal("chunk", t:await())
  end))

  it("read(n) returns the chunk itself when it fits, splits when it does not (test_read_line_breaks)",
     async(function()
    local r = eddy.StreamReader()
    r:feed_data("line1")
    r:feed_data("line2")
    assert.equal("line1line2", r:read(10))
    r:feed_data("abcdef")
    assert.equal("ab", r:read(2))
    assert.equal("cdef", r:read(100))
    r:feed_data("x")
    r:feed_data("yz")
    assert.equal("xy", r:read(2))
    assert.equal("z", r:read(5))
  end))

  it("read at EOF returns \"\" (test_read_eof)", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:read(1024) end)
    eddy.sleep(0)
    r:feed_eof()
    assert.equal("", t:await())
    assert.is_true(r:at_eof())
  end))

  it("read() and read(-1) read until EOF (test_read_until_eof)", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:read(-1) end)
    r:feed_data("chunk1\n")
    r:feed_data("chunk2")
    eddy.sleep(0)
    assert.is_false(t:done())
    r:feed_eof()
    assert.equal("chunk1\nchunk2", t:await())
    local r2 = eddy.StreamReader(3)
    r2:feed_data(string.rep("z", 10))
    r2:feed_eof()
    assert.equal(string.rep("z", 10), r2:read())
  end))

  -- asyncio's read(-1) is a loop of read(limit) until EOF: each chunk is
  -- taken out of the buffer as it arrives, so the buffer stays empty and
  -- another read meanwhile has to wait (RuntimeError), it cannot take
  -- bytes read() will not return.
  it("read() takes what arrives at once, as asyncio's loop of read(limit)", async(function(loop)
    local r = eddy.StreamReader(4)
    local t = spawn(loop, function() return r:read() end)
    eddy.sleep(0)
    r:feed_data("abc")
    eddy.sleep(0)
    assert.equal(0, r:_status().size)
    raises(function() r:read(1) end,
           {errors.RuntimeError, "read() called while another coroutine is already waiting"})
    r:feed_data("0123456789")  -- more than 2 * limit: pauses, read() resumes
    r:feed_data("def")
    eddy.sleep(0)
    assert.is_false(t:done())
    assert.equal(0, r:_status().size)
    r:feed_eof()
    assert.equal("abc0123456789def", t:await())
    -- cancelled, what it took is gone, as asyncio's blocks are
    local r2 = eddy.StreamReader()
    local t2 = spawn(loop, function() return r2:read(-1) end)
    eddy.sleep(0)
    r2:feed_data("lost")
    eddy.sleep(0)
    t2:cancel()
    raises(function() t2:await() end, errors.CancelledError)
    r2:feed_data("kept")
    r2:feed_eof()
    assert.equal("kept", r2:read())
  end))

  it("read raises the exception set (test_read_exception)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("line\n")
    assert.equal("li", r:read(2))
    r:set_exception(errors.ValueError("boom"))
    raises(function() r:read(2) end, errors.ValueError)
    assert.equal("boom", r:exception().message)
  end))

  it("rejects a limit <= 0 (test_invalid_limit)", function()
    raises(function() eddy.StreamReader(0) end, {errors.ValueError, "Limit cannot be <= 0"})
    raises(function() eddy.StreamReader(-1) end, {errors.ValueError, "Limit cannot be <= 0"})
    argerror(function() eddy.StreamReader("big") end, 1, "StreamReader")
  end)

  it("read(-1) of more than limit bytes works (test_read_limit)", async(function()
    local r = eddy.StreamReader(3)
    r:feed_data("chunk")
    assert.equal("chunk", r:read(5))
  end))

  it("readline joins chunks up to \"\\n\" (test_readline)", async(function(loop)
    local r = eddy.StreamReader()
    r:feed_data("chunk1 ")
    local t = spawn(loop, function() return r:readline() end)
    eddy.sleep(0)
    r:feed_data("chunk2 ")
    eddy.sleep(0)
    r:feed_data("chunk3\n chunk4")
    assert.equal("chunk1 chunk2 chunk3\n", t:await())
    assert.equal(" chunk4", r:read(100))
  end))

  it("readline over the limit with data buffered raises ValueError and drops the line (test_readline_limit_with_existing_data)",
     async(function()
    local r = eddy.StreamReader(3)
    r:feed_data("li")
    r:feed_data("ne1\nline2\n")
    raises(function() r:readline() end, {errors.ValueError, "Separator is found, but chunk is longer than limit"})
    -- the long line is gone, the next one is intact
    assert.equal("line2\n", r:read(100))
    r = eddy.StreamReader(3)
    r:feed_data("li")
    r:feed_data("ne1")
    r:feed_data("li")
    raises(function() r:readline() end, errors.ValueError)
    assert.equal("", r:read(0))
    assert.equal(0, r:_status().size)
  end))

  it("at_eof is true only when EOF came and the buffer is empty (test_at_eof)", async(function()
    local r = eddy.StreamReader()
    assert.is_false(r:at_eof())
    r:feed_data("some data\n")
    assert.is_false(r:at_eof())
    r:readline()
    assert.is_false(r:at_eof())
    r:feed_data("some data\n")
    r:feed_eof()
    r:readline()
    assert.is_true(r:at_eof())
  end))

  it("readline of a line over the limit raises ValueError; later lines read (test_readline_limit)",
     async(function(loop)
    local r = eddy.StreamReader(7)
    local t = spawn(loop, function() return pcall(r.readline, r) end)
    r:feed_data("chunk1")
    r:feed_data("chunk2")
    r:feed_data("chunk3\n")
    r:feed_eof()
    local ok, err = t:await()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
    assert.equal("", r:read())
    r = eddy.StreamReader(7)
    r:feed_data("1234567\n")
    assert.equal("1234567\n", r:readline())
    r:feed_data("12345678\n")
    raises(function() r:readline() end, errors.ValueError)
    assert.equal("", r:read(0))
  end))

  it("readline returns a buffered line without waiting (test_readline_nolimit_nowait)",
     async(function()
    local r = eddy.StreamReader()
    r:feed_data("line1\nline2\nline3\n")
    assert.equal("line1\n", r:readline())
    assert.equal("line2\nline3\n", r:read(100))
  end))

  it("readline at EOF returns the partial line, then \"\" (test_readline_eof, test_readline_empty_eof)",
     async(function()
    local r = eddy.StreamReader()
    r:feed_data("some data")
    r:feed_eof()
    assert.equal("some data", r:readline())
    assert.equal("", r:readline())
  end))

  it("readline leaves the rest for read (test_readline_read_byte_count)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("line1\nline2\nline3\n")
    r:readline()
    assert.equal("line2\nl", r:read(7))
  end))

  it("readline raises the exception set (test_readline_exception)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("line\n")
    assert.equal("line\n", r:readline())
    r:set_exception(errors.ValueError("x"))
    raises(function() r:readline() end, errors.ValueError)
  end))

  it("readuntil with a multi-byte separator (test_readuntil_separator, test_readuntil_multi_chunks)",
     async(function(loop)
    local r = eddy.StreamReader()
    r:feed_data("lineAAA")
    assert.equal("lineAAA", r:readuntil("AAA"))
    r:feed_data("lineAAAxxx")
    assert.equal("lineAAA", r:readuntil("AAA"))
    assert.equal("xxx", r:read(3))
    -- a separator split across chunks (test_readuntil_multi_chunks_1)
    local t = spawn(loop, function() return r:readuntil("aaa") end)
    r:feed_data("QWEaa")
    eddy.sleep(0)
    r:feed_data("XYaa")
    eddy.sleep(0)
    r:feed_data("a")
    assert.equal("QWEaaXYaaa", t:await())
    raises(function() r:readuntil("") end,
           {errors.ValueError, "Separator should be at least one-byte string"})
  end))

  it("readuntil takes a list of separators; the earliest match wins (3.13, test_readuntil_multi_separator)",
     async(function()
    local r = eddy.StreamReader()
    r:feed_data("ab\r\ncd\nef;")
    assert.equal("ab\r\n", r:readuntil({"\n", "\r\n"}))
    assert.equal("cd\n", r:readuntil({";", "\n"}))
    assert.equal("ef;", r:readuntil({"\n", ";"}))
    r:feed_data("line 1\nline 2\r")
    assert.equal("line 1\n", r:readuntil({"\r", "\n"}))
    assert.equal("line 2\r", r:readuntil({"\r", "\n"}))
    assert.equal(0, r:_status().size)
    -- the match that ends first wins, even when it is the longer one
    r:feed_data("ABCDEFG")
    assert.equal("ABCDE", r:readuntil({"DEF", "BCDE"}))
    assert.equal(2, r:_status().size)
    assert.equal("FG", r:read(2))
    raises(function() r:readuntil({}) end,
           {errors.ValueError, "Separator should contain at least one element"})
    raises(function() r:readuntil({"a", ""}) end, errors.ValueError)
    argerror(function() r:readuntil({"a", 1}) end, 1, "readuntil")
    argerror(function() r:readuntil(42) end, 1, "readuntil")
  end))

  it("readuntil with separators and a limit: consumed as asyncio 3.13 counts it (test_readuntil_limit_found_sep)",
     async(function()
    -- not found: the search goes on from buflen + 1 - the longest separator
    local r = eddy.StreamReader(3)
    r:feed_data("abcdefgh")
    local e = raises(function() r:readuntil({"Z", "QQQQQ"}) end,
                     {errors.LimitOverrunError, "not found"})
    assert.equal(4, e.consumed)
    assert.equal(8, r:_status().size)  -- the data stays buffered
    -- matches ending at the same byte: the shorter one starts the chunk
    r = eddy.StreamReader(1)
    r:feed_data("xab")
    e = raises(function() r:readuntil({"xab", "b"}) end,
               {errors.LimitOverrunError, "is found"})
    assert.equal(2, e.consumed)
    r = eddy.StreamReader()
    r:feed_data("AAAB")
    assert.equal("AA", r:readuntil({"AAAB", "AA"}))  -- the one that ends first
  end))

  it("readuntil with separators: a match past the limit raises and keeps the data (test_readuntil_multi_separator_limit)",
     async(function()
    local r = eddy.StreamReader(3)
    r:feed_data("some dataA")
    raises(function() r:readuntil({"A", "ome dataA"}) end,
           {errors.LimitOverrunError, "is found"})
    assert.equal("some dataA", r:read(100))
  end))

  it("readuntil with separators longer than the data so far waits for more (test_readuntil_multi_separator_negative_offset)",
     async(function(loop)
    local r = eddy.StreamReader()
    r:feed_data("data")
    local t = spawn(loop, function() return r:readuntil({"A", "long sep"}) end)
    loop:call_soon(r.feed_data, r, "Z")
    loop:call_soon(r.feed_data, r, "Aaaa")
    assert.equal("dataZA", net.wait(t))
    assert.equal("aaa", r:read(100))
  end))

  it("readuntil at EOF raises IncompleteReadError with the partial data (test_readuntil_eof)",
     async(function()
    local r = eddy.StreamReader()
    r:feed_data("some dataAA")
    r:feed_eof()
    local err = raises(function() r:readuntil("AAA") end, errors.IncompleteReadError)
    assert.equal("some dataAA", err.partial)
    assert.is_nil(err.expected)
    assert.equal("", r:read())
  end))

  it("readuntil over the limit raises LimitOverrunError with consumed (test_readuntil_limit_found_sep)",
     async(function(loop)
    local r = eddy.StreamReader(3)
    r:feed_data("some dataAA")
    local err = raises(function() r:readuntil("AAA") end,
                       {errors.LimitOverrunError, "not found"})
    assert.equal(9, err.consumed)
    r:feed_data("A")
    err = raises(function() r:readuntil("AAA") end,
                 {errors.LimitOverrunError, "is found"})
    assert.equal(9, err.consumed)
    -- the data stays: it can be read otherwise
    assert.equal("some dataAAA", r:read(100))
    -- a waiting readuntil gives up once the limit is passed
    local t = spawn(loop, function() return pcall(r.readuntil, r, "\n") end)
    r:feed_data("ab")
    eddy.sleep(0)
    r:feed_data("cdef")
    local ok, e = t:await()
    assert.is_false(ok)
    assert.is_true(errors.is(e, errors.LimitOverrunError))
  end))

  it("readexactly rejects n < 0 and returns \"\" for 0 (test_readexactly_zero_or_less)",
     async(function()
    local r = eddy.StreamReader()
    r:feed_data("data")
    assert.equal("", r:readexactly(0))
    raises(function() r:readexactly(-1) end,
           {errors.ValueError, "readexactly size can not be less than zero"})
    argerror(function() r:readexactly("4") end, 1, "readexactly")
    assert.equal("data", r:read(4))
  end))

  it("readexactly waits for exactly n bytes (test_readexactly)", async(function(loop)
    local r = eddy.StreamReader()
    local data = "chunk1\nchunk2\n"
    local t = spawn(loop, function() return r:readexactly(2 * #data) end)
    r:feed_data(data)
    eddy.sleep(0)
    r:feed_data(data)
    r:feed_data(data)
    assert.equal(data .. data, t:await())
    assert.equal(data, r:read(100))
  end))

  it("readexactly of more than the limit resumes a paused transport (test_readexactly_limit)",
     async(function(loop)
    local r = eddy.StreamReader(3)
    local transport = {paused = false}
    function transport.pause_reading() transport.paused = true end
    function transport.resume_reading() transport.paused = false end
    r:set_transport(transport)
    r:feed_data("chunk1\n")
    assert.is_true(transport.paused)
    local t = spawn(loop, function() return r:readexactly(12) end)
    eddy.sleep(0)
    assert.is_false(transport.paused)
    r:feed_data("chunk2\n")
    assert.equal("chunk1\nchunk", t:await())
    assert.equal("2\n", r:read(100))
  end))

  it("readexactly at EOF raises IncompleteReadError (test_readexactly_eof)", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return pcall(r.readexactly, r, 20) end)
    r:feed_data("chunk1\nchunk2\n")
    eddy.sleep(0)
    r:feed_eof()
    local ok, err = t:await()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.IncompleteReadError))
    assert.equal("chunk1\nchunk2\n", err.partial)
    assert.equal(20, err.expected)
    assert.equal("14 bytes read on a total of 20 expected bytes", err.message)
    assert.equal("", r:read())
  end))

  it("readexactly raises the exception set (test_readexactly_exception)", async(function()
    local r = eddy.StreamReader()
    r:feed_data("line\n")
    assert.equal("li", r:readexactly(2))
    r:set_exception(errors.ValueError())
    raises(function() r:readexactly(2) end, errors.ValueError)
  end))

  it("set_exception wakes the waiting read with the error (test_exception, test_exception_waiter)",
     async(function(loop)
    local r = eddy.StreamReader()
    assert.is_nil(r:exception())
    local t = spawn(loop, function() return pcall(r.readline, r) end)
    eddy.sleep(0)
    r:set_exception(errors.ValueError("waiter"))
    local ok, err = t:await()
    assert.is_false(ok)
    assert.equal("waiter", err.message)
  end))

  it("a cancelled read leaves the reader usable (test_exception_cancel)", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:readline() end)
    eddy.sleep(0)
    t:cancel()
    eddy.sleep(0)
    assert.is_true(t:cancelled())
    r:set_exception(errors.RuntimeError("message"))  -- no error: the waiter was cancelled
    raises(function() r:read(1) end, errors.RuntimeError)
    local r2 = eddy.StreamReader()
    t = spawn(loop, function() return r2:read(1) end)
    eddy.sleep(0)
    t:cancel()
    eddy.sleep(0)
    r2:feed_data("z")
    assert.equal("z", r2:read(1))
  end))

  it("two tasks reading at once is an error", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:read(1) end)
    eddy.sleep(0)
    raises(function() r:read(1) end,
           {errors.RuntimeError, "read() called while another coroutine is already waiting"})
    r:feed_data("a")
    assert.equal("a", t:await())
  end))

  it("a task cancelling itself gets CancelledError at the read", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function()
      eddy.current_task():cancel()
      return r:read(1)
    end)
    raises(function() t:await() end, errors.CancelledError)
    r:feed_data("x")
    assert.equal("x", r:read(1))
  end))

  it("data fed after the waiting task was cancelled stays buffered", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:read(1) end)
    eddy.sleep(0)
    t:cancel()
    r:feed_data("y")  -- before the cancelled task runs again
    raises(function() t:await() end, errors.CancelledError)
    assert.equal("y", r:read(1))
  end))

  it("a read inside a coroutine.wrap generator suspends the task", async(function(loop)
    local r = eddy.StreamReader()
    local gen = coroutine.wrap(function()
      coroutine.yield(r:readline())
      coroutine.yield(r:readline())
    end)
    loop:call_later(0.01, function() r:feed_data("a\n") end)
    loop:call_later(0.02, function() r:feed_data("b\n") end)
    assert.equal("a\n", gen())
    assert.equal("b\n", gen())
  end))

  it("reads at the main chunk's top level run the loop until data comes", function()
    local cli = require "cli_helper"
    local res = cli.eddy("-e " .. cli.q([[
      local eddy = require "eddy"
      local r = eddy.StreamReader()
      eddy.get_event_loop():call_later(0.01, function() r:feed_data("top\n") end)
      io.write(r:readline())
      eddy.get_event_loop():call_later(0.01, function() r:feed_eof() end)
      io.write(r:read(), "|eof\n")
    ]]))
    assert.equal("", res.err)
    assert.equal("top\n|eof\n", res.out)
  end)

  it("lines() iterates without end-of-lines, as io.lines", async(function(loop)
    local r = eddy.StreamReader()
    spawn(loop, function()
      r:feed_data("one\ntw")
      eddy.sleep(0)
      r:feed_data("o\r\n\nlast")
      r:feed_eof()
    end)
    local got = {}
    for line in r:lines() do got[#got + 1] = line end
    assert.same({"one", "two\r", "", "last"}, got)
  end))

  it("feed_data after feed_eof and bad arguments are errors", async(function()
    local r = eddy.StreamReader()
    argerror(function() r:feed_data(42) end, 1, "feed_data")
    argerror(function() r:read("x") end, 1, "read")
    argerror(function() r:read(1.5) end, 1, "read")
    argerror(function() eddy.StreamReader(nil, "loop") end, 2, "StreamReader")
    r:feed_eof()
    raises(function() r:feed_data("x") end, {errors.RuntimeError, "feed_data after feed_eof"})
  end))

  it("read and readexactly take a float with an integer value (6 / 2), as Lua's functions do", async(function()
    local r = eddy.StreamReader()
    r:feed_data("abcdef")
    assert.equal("abc", r:readexactly(6 / 2))
    assert.equal("de", r:read(2.0))
    argerror(function() r:readexactly(1.5) end, 1, "readexactly")
    argerror(function() r:readexactly() end, 1, "readexactly")
    raises(function() r:readexactly(-1.0) end,
           {errors.ValueError, "readexactly size can not be less than zero"})
  end))

  it("has a repr (test___repr__, test___repr__nondefault_limit, test___repr__eof, test___repr__data)",
     async(function()
    local r = eddy.StreamReader(123)
    assert.equal("<StreamReader limit=123>", tostring(r))
    r:feed_data("data")
    r:feed_eof()
    assert.equal("<StreamReader 4 bytes eof limit=123>", tostring(r))
  end))

  it("shows a waiter only while a task waits (test___repr__waiter)", async(function(loop)
    local r = eddy.StreamReader()
    local t = spawn(loop, function() return r:read(4) end)
    eddy.sleep(0)
    assert.matches("^<StreamReader waiter=<Task pending", tostring(r))
    r:feed_data("data")
    assert.equal("data", t:await())
    assert.equal("<StreamReader>", tostring(r))
    -- the same after a read that did not have to wait
    r:feed_data("x")
    assert.equal("x", r:read(1))
    assert.equal("<StreamReader>", tostring(r))
  end))

  it("shows the exception (test___repr__exception)", async(function()
    local r = eddy.StreamReader()
    r:set_exception(errors.RuntimeError())
    assert.equal("<StreamReader exception=RuntimeError>", tostring(r))
  end))

  it("shows the transport (test___repr__transport)", async(function()
    local r = eddy.StreamReader()
    r:set_transport(setmetatable({}, {__tostring = function() return "<Transport>" end}))
    assert.equal("<StreamReader transport=<Transport>>", tostring(r))
  end))

  it("a reader made inside a task belongs to the running loop (test_streamreader_constructor_use_running_loop, "
     .. "test_streamreaderprotocol_constructor_use_running_loop)", function()
    local loop = eddy.new_event_loop()
    local got = loop:run_until_complete(function()
      local r = eddy.StreamReader()
      local p = eddy.StreamReaderProtocol(r)
      assert.equal(loop, p._loop)
      -- the waiter of a read is the running loop's: feeding the data wakes it
      local t = eddy.create_task(function() return r:read(4) end)
      eddy.sleep(0)
      loop:call_soon(r.feed_data, r, "data")
      return net.wait(t)
    end)
    loop:close()
    assert.equal("data", got)
  end)

  it("outside a running loop, a reader takes the event loop set (test_streamreader_constructor_use_global_loop, "
     .. "test_streamreaderprotocol_constructor_use_global_loop)", function()
    local saved = eddy.get_event_loop()
    local loop = eddy.new_event_loop()
    eddy.set_event_loop(loop)
    local ok, err = pcall(function()
      local r = eddy.StreamReader()
      assert.equal(loop, eddy.StreamReaderProtocol(r)._loop)
      loop:call_soon(r.feed_data, r, "data")
      assert.equal("data", loop:run_until_complete(function() return r:read(4) end))
    end)
    eddy.set_event_loop(saved)
    loop:close()
    assert(ok, err)
  end)
end)

describe("open_connection / start_server", function()
  it("keeps peername and sockname after both sides shut (asyncio reads them at creation)",
     async(function(loop)
    local srv <close>, port = serve(echo_lines)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    writer:write_eof()
    assert.equal("", reader:read())
    net.wait_until(function() return writer.transport:is_closing() or reader:at_eof() end)
    local peer = writer:get_extra_info("peername")
    assert.same({"127.0.0.1", port}, peer)
    assert.equal("127.0.0.1", writer:get_extra_info("sockname")[1])
    writer:close()
    writer:wait_closed()
  end))

  it("bad input: get_extra_info of a name that is no string, writelines of a list holding one, "
     .. "are the writer's argument errors, at the caller's line (found by tools/fuzz/api_fuzz.lua: "
     .. "they named streams.lua's)",
     async(function(loop)
    local srv <close>, port = serve(echo_lines)
    local _, writer = eddy.open_connection("127.0.0.1", port)
    local ok, failure = pcall(function()  -- the writer closes even when a check fails
      for _, bad in ipairs {false, 1, {}} do
        local err = argerror(function() writer:get_extra_info(bad) end, 1, "get_extra_info")
        assert.matches("^spec/streams_spec.lua:%d+: ", err)
      end
      local err = raises(function() writer:writelines({"a", 2}) end,
                         "bad element #2 in 'writelines' (string or eddy.Buffer expected, got number)")
      assert.matches("^spec/streams_spec.lua:%d+: ", err)
    end)
    writer:close()
    writer:wait_closed()
    assert(ok, failure)
  end))

  it("reads lines over TCP (test_open_connection, test_start_server)", async(function(loop)
    local srv <close>, port = serve(echo_lines)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    assert.equal("127.0.0.1", writer:get_extra_info("peername")[1])
    assert.equal(port, writer:get_extra_info("peername")[2])
    assert.equal("dflt", writer:get_extra_info("nothing", "dflt"))
    writer:write("GET / HTTP/1.0\r\n\r\n")
    assert.equal("GET / HTTP/1.0\r\n", reader:readline())
    assert.equal("\r\n", reader:readline())
    writer:writelines({"a", "b", "\n"})
    assert.equal("ab\n", reader:readexactly(3))
    assert.is_true(writer:can_write_eof())
    writer:write_eof()
    assert.equal("", reader:read())
    assert.is_true(reader:at_eof())
    assert.is_false(writer:is_closing())
    writer:close()
    assert.is_true(writer:is_closing())
    writer:wait_closed()
    assert.truthy(tostring(writer):find("^<StreamWriter transport="))
  end))

  it("write and drain act on the writer they are called on, whatever its transport", async(function()
    local srv <close>, port = serve(echo_lines)
    local r1, w1 <close> = eddy.open_connection("127.0.0.1", port)
    local r2, w2 <close> = eddy.open_connection("127.0.0.1", port)
    w1.write(w2, "to two\n")
    w1.drain(w2)
    assert.equal("to two\n", r2:readline())
    eddy.StreamWriter.write(w1, "to one\n")
    eddy.StreamWriter.drain(w1)
    assert.equal("to one\n", r1:readline())
    -- a writer over a transport of another kind goes through its methods
    local sent = {}
    local other = {write = function(_, data) sent[#sent + 1] = data end,
                   is_closing = function() return false end}
    local w3 = eddy.StreamWriter(other, eddy.StreamReaderProtocol(nil, nil), nil)
    w1.write(w3, "a")
    w3:write("b")
    w3:drain()
    w1.drain(w3)
    assert.same({"a", "b"}, sent)
    assert.has_error(function() w1.write(42, "x") end)
    assert.has_error(function() w1.drain("w") end)
    raises(function() w1:write(42) end, "bad argument #1 to 'write' (string expected, got number)")
    local err = raises(function() w1:writelines("not a list") end,
                       "bad argument #1 to 'writelines' (table expected, got string)")
    assert.matches("^spec/streams_spec%.lua:%d+: ", err)  -- the caller's line
    w1:write("still\n")  -- a refused write leaves the writer usable
    assert.equal("still\n", r1:readline())
  end))

  it("transport is a read-only field, as asyncio's property", async(function()
    local other = {write = function() end, is_closing = function() return false end}
    local w = eddy.StreamWriter(other, eddy.StreamReaderProtocol(nil, nil), nil)
    assert.equal(other, w.transport)
    raises(function() w.transport = {} end,
           "field 'transport' of eddy.StreamWriter is read-only")
    raises(function() w.transport = nil end, "read-only")
    assert.equal(other, w.transport)
    w.note = "other fields are the writer's to set"
    assert.equal("other fields are the writer's to set", w.note)
    -- a writer over eddy's own transport, with write and drain bound to it
    local srv <close>, port = serve(echo_lines)
    local reader, writer <close> = eddy.open_connection("127.0.0.1", port)
    local transport = writer.transport
    assert.equal("127.0.0.1", transport:get_extra_info("peername")[1])
    raises(function() writer.transport = other end, "read-only")
    assert.equal(transport, writer.transport)
    writer:write("still\n")
    writer:drain()
    assert.equal("still\n", reader:readline())
  end))

  it("data arriving after connection_lost is not fed to the reader the protocol had",
     async(function(loop)
    local sent = loop:create_future()
    local srv <close>, port = serve(function(reader, writer)
      reader:read(1)
      writer:write("late\n")
      writer:drain()  -- on loopback the bytes are in the client's socket now
      sent:set_result(true)
      reader:read()
      writer:close()
    end)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    writer._protocol:connection_lost(errors.ConnectionResetError("by hand"))
    writer.transport:write("x")
    sent:await()
    eddy.sleep(0.05)  -- the client's loop polls and reads them meanwhile
    assert.equal(0, reader:_status().size)
    raises(function() reader:read() end, errors.ConnectionResetError)
    writer:close()
    raises(function() writer:wait_closed() end, errors.ConnectionResetError)
  end))

  it("works over UNIX sockets (test_open_unix_connection, test_start_unix_server)",
     async(function()
    local path = temp_path()
    local srv <close> = eddy.start_unix_server(echo_lines, path)
    local reader, writer <close> = eddy.open_unix_connection(path)
    writer:write("over unix\n")
    assert.equal("over unix\n", reader:readline())
    writer:write_eof()
    assert.equal("", reader:read())
    os.remove(path)
  end))

  it("open_connection raises the connect error", async(function()
    local srv, port = serve(echo_lines)
    srv:close()
    srv:wait_closed()
    raises(function() eddy.open_connection("127.0.0.1", port) end, errors.ConnectionRefusedError)
  end))

  it("an error the connection is lost with reaches the reader; closing reports nothing "
     .. "(test_open_connection_error, test_open_unix_connection_error)", function()
    local path = temp_path()
    local reports = test.run_collecting(function()
      local tcp <close>, port = serve(echo_lines)
      local unix <close> = eddy.start_unix_server(echo_lines, path)
      for _, open in ipairs {function() return eddy.open_connection("127.0.0.1", port) end,
                             function() return eddy.open_unix_connection(path) end} do
        local reader, writer = open()
        local lost = errors.ValueError("lost")
        writer._protocol:connection_lost(lost)
        assert.equal(lost, raises(function() reader:read() end, errors.ValueError))
        writer:close()
        eddy.sleep(0.01)
      end
    end)
    os.remove(path)
    assert.same({}, reports)
  end)

  it("checks its arguments and options", async(function()
    argerror(function() eddy.start_server(42, "127.0.0.1", 0) end, 1, "start_server")
    argerror(function() eddy.start_server(echo_lines, "127.0.0.1", 0, "x") end, 4, "start_server")
    raises(function() eddy.start_server(echo_lines, "127.0.0.1", 0, {limit = 0}) end,
           {errors.ValueError, "Limit cannot be <= 0"})
    raises(function() eddy.open_connection("127.0.0.1", 1, {limit = -5}) end,
           {errors.ValueError, "Limit cannot be <= 0"})
    raises(function() eddy.open_connection("127.0.0.1", 1, {ssl = 5}) end,
           "bad option 'ssl'")
    raises(function() eddy.open_connection("127.0.0.1", 1, {bogus = 1}) end,
           "unknown option 'bogus'")
    argerror(function() eddy.start_unix_server(nil, "/tmp/x") end, 1, "start_unix_server")
    -- the error points at the caller, not inside eddy/streams.lua
    for _, opts in ipairs({{limit = "x"}, 7}) do
      local err = raises(function() eddy.open_connection("127.0.0.1", 1, opts) end, "bad argument #3")
      assert.matches("^spec/streams_spec%.lua:", err)
    end
    -- the positional arguments passed on to the loop's methods are checked
    -- under the stream function's own name and numbers, blaming the caller
    for _, case in ipairs {
      {function() eddy.open_connection({}, 1) end, "bad argument #1 to 'open_connection' (string or nil expected, got table)"},
      {function() eddy.open_connection("127.0.0.1", {}) end, "bad argument #2 to 'open_connection' (integer, string or nil expected, got table)"},
      {function() eddy.open_connection("127.0.0.1", 1.5) end, "bad argument #2 to 'open_connection' (integer, string or nil expected, got number)"},
      {function() eddy.open_unix_connection(5) end, "bad argument #1 to 'open_unix_connection' (string or nil expected, got number)"},
      {function() eddy.start_server(echo_lines, 5, 0) end, "bad argument #2 to 'start_server' (string, list of strings or nil expected, got number)"},
      {function() eddy.start_server(echo_lines, {"127.0.0.1", 5}, 0) end, "bad argument #2 to 'start_server' (host #2: string expected, got number)"},
      {function() eddy.start_server(echo_lines, "127.0.0.1", {}) end, "bad argument #3 to 'start_server' (integer, string or nil expected, got table)"},
      {function() eddy.start_unix_server(echo_lines, {}) end, "bad argument #2 to 'start_unix_server' (string or nil expected, got table)"},
    } do
      local err = raises(case[1], case[2])
      assert.matches("^spec/streams_spec%.lua:%d+: bad argument", err)
    end
  end))

  it("called from a callback, the suspending functions name themselves in the RuntimeError (API.md §1)",
     async(function(loop)
    local srv <close>, port = serve(echo_lines)
    local _, writer <close> = eddy.open_connection("127.0.0.1", port)
    local done = loop:create_future()
    loop:call_soon(function()
      local errs = {}
      for name, fn in pairs({
        open_connection = function() eddy.open_connection("127.0.0.1", port) end,
        open_unix_connection = function() eddy.open_unix_connection("/tmp/nowhere.sock") end,
        start_server = function() eddy.start_server(echo_lines, "127.0.0.1", 0) end,
        start_unix_server = function() eddy.start_unix_server(echo_lines, "/tmp/nowhere.sock") end,
        wait_closed = function() writer:wait_closed() end,
      }) do
        errs[name] = select(2, pcall(fn))
      end
      done:set_result(errs)
    end)
    for name, err in pairs(net.wait(done)) do
      assert.is_true(errors.is(err, errors.RuntimeError), name)
      assert.truthy(tostring(err):find(name .. "() cannot suspend here", 1, true), tostring(err))
    end
  end))

  -- API.md §1 and §11 to the letter (docs/streams.md): from a callback
  -- every read raises naming itself even when the buffer could serve it,
  -- and takes no byte; drain and wait_closed raise though nothing is to
  -- wait for.
  it("from a callback, a read the buffer could serve raises naming itself and consumes nothing",
     async(function(loop)
    local reader = eddy.StreamReader()
    reader:feed_data("ab\ncd\n")
    local errs = checks.from_callback(loop, {
      {"read", reader.read, reader, 1},
      {"read_all", reader.read, reader},
      {"readline", reader.readline, reader},
      {"readexactly", reader.readexactly, reader, 2},
      {"readexactly0", reader.readexactly, reader, 0},
      {"readuntil", reader.readuntil, reader, "b"},
      {"lines", function() for line in reader:lines() do return line end end},
    })
    for name, fname in pairs({read = "read", read_all = "read", readline = "readline",
                              readexactly = "readexactly", readexactly0 = "readexactly",
                              readuntil = "readuntil", lines = "readline"}) do
      assert.matches("^RuntimeError: " .. fname .. "%(%) cannot suspend here: .*eddy%.run", errs[name])
    end
    reader:feed_eof()
    assert.equal("ab\ncd\n", reader:read())  -- every byte still there, for a task
  end))

  it("from a callback, drain and wait_closed raise though nothing is to wait for", async(function(loop)
    local srv <close>, port = serve(echo_lines)
    local _, writer = eddy.open_connection("127.0.0.1", port)
    local _, closed = eddy.open_connection("127.0.0.1", port)
    closed:close()
    closed:wait_closed()
    writer:drain()  -- in a task: returns at once
    local errs = checks.from_callback(loop, {{"drain", writer.drain, writer},
                                             {"wait_closed", closed.wait_closed, closed}})
    assert.matches("^RuntimeError: drain%(%) cannot suspend here", errs.drain)
    assert.matches("^RuntimeError: wait_closed%(%) cannot suspend here", errs.wait_closed)
    writer:close()
    writer:wait_closed()
  end))

  it("the limit option reaches the server's readers (test_readline_limit)", async(function()
    local seen = eddy.get_running_loop():create_future()
    local srv <close>, port = serve(function(reader, writer)
      seen:set_result(pcall(reader.readline, reader))
      writer:close()
    end, {limit = 4})
    local _, writer <close> = eddy.open_connection("127.0.0.1", port)
    writer:write("0123456789\n")
    local ok, err = net.wait(seen)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
  end))

  it("wait_closed after close, with unread data (test_wait_closed_on_close, test_wait_closed_on_close_with_unread_data)",
     async(function()
    local srv <close>, port = serve(function(reader, writer)
      writer:write("unread data\n")
      reader:read()
      writer:close()
    end)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    net.wait_until(function() return reader:_status().size > 0 end)
    writer:close()
    writer:wait_closed()
    assert.is_true(writer:is_closing())
    writer:wait_closed()  -- again: returns at once
  end))

  it("a writer <close> closes and waits (test_async_writer_api)", async(function()
    local srv <close>, port = serve(echo_lines)
    local writer_ref
    do
      local reader, writer <close> = eddy.open_connection("127.0.0.1", port)
      writer_ref = writer
      writer:write("hi\n")
      assert.equal("hi\n", reader:readline())
    end
    assert.is_true(writer_ref:is_closing())
    assert.is_true(writer_ref._protocol._closed:done())
  end))

  it("start_tls checks its arguments (tls_spec upgrades connections)", async(function()
    local srv <close>, port = serve(echo_lines)
    local _, writer <close> = eddy.open_connection("127.0.0.1", port)
    raises(function() writer:start_tls({}) end,
           "bad argument #1 to 'start_tls' (eddy.ssl.SSLContext expected, got table)")
    raises(function() writer:start_tls(require("eddy.ssl").SSLContext(), {server_side = true}) end,
           "unknown option 'server_side'")
  end))

  it("drain raises once the peer closed the connection (test_drain_raises)", async(function()
    local srv <close>, port = serve(function(_, writer) writer.transport:abort() end)
    local _, writer = eddy.open_connection("127.0.0.1", port)
    local err = raises(function()
      for _ = 1, 1000 do
        writer:write(string.rep("x", 4096))
        writer:drain()
      end
    end, errors.ConnectionError)
    assert.truthy(errors.is(err, errors.ConnectionResetError) or errors.is(err, errors.BrokenPipeError))
    -- wait_closed raises the error the connection was lost with, as asyncio's
    local lost = raises(function() writer:wait_closed() end, errors.ConnectionError)
    assert.is_true(writer:is_closing())
    assert.truthy(lost)
  end))

  it("a reset that comes after data still unread is ConnectionResetError, not EOF (test_selector_events: test_read_ready_conn_reset)",
     async(function(loop)
    -- The reader pauses its transport (more than 2 x limit buffered), so
    -- the next bytes and the reset wait in the kernel; resumed, the
    -- transport reads them, then recv() raises ECONNRESET in asyncio,
    -- where libuv's short read with POLLHUP passed for EOF.
    local accepted = loop:create_future()
    local srv <close>, port = serve(function(r, w) accepted:set_result({r, w}) end, {limit = 1})
    local _, cw = eddy.open_connection("127.0.0.1", port)
    local reader, sw = table.unpack(net.wait(accepted))
    cw:write("abc")
    net.wait_until(function() return reader:_status().paused end)
    cw:write("de")
    eddy.sleep(0.02)
    cw:get_extra_info("socket"):setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           string.pack("i4i4", 1, 0))
    cw.transport:abort()
    eddy.sleep(0.02)
    assert.equal("abc", reader:readexactly(3))
    assert.equal("de", reader:readexactly(2))
    local ok, err = pcall(eddy.wait_for, function() return reader:read(1) end, 2)
    sw:close()
    assert.is_false(ok)
    assert.truthy(errors.is(err, errors.ConnectionResetError), tostring(err))
    assert.is_false(reader:at_eof())
  end))

  it("writelines drops the data after close, as write; an empty chunk does not keep close from finishing",
     async(function(loop)
    -- asyncio's transport.write() after close() drops the data; CPython's
    -- writelines raises there (gh-136234) and never finishes closing after
    -- an empty chunk (gh-155888): bugs eddy does not copy.
    local accepted = loop:create_future()
    local srv <close>, port = serve(function(r, w) accepted:set_result({r, w}) end)
    local _, cw = eddy.open_connection("127.0.0.1", port)
    local reader, sw = table.unpack(net.wait(accepted))
    cw:writelines({"hello", ""})
    cw:close()
    cw:writelines({"dropped"})
    cw:write("dropped")
    eddy.wait_for(function() return cw:wait_closed() end, 2)
    assert.equal("hello", eddy.wait_for(function() return reader:read() end, 2))
    sw:close()
  end))

  it("drain right after close raises ConnectionResetError, as asyncio's (connection_lost comes first) "
     .. "(test_async_writer_api_exception_after_close)",
     async(function()
    local srv <close>, port = serve(function(reader, writer) reader:read() writer:close() end)
    local _, writer = eddy.open_connection("127.0.0.1", port)
    writer:write("x")
    writer:close()
    writer:write("data")  -- dropped, as asyncio's
    raises(function() writer:drain() end, {errors.ConnectionResetError, "Connection lost"})
    writer:wait_closed()
  end))

  it("the first drain after a write that broke the connection raises (test_drain_raises, strict)",
     async(function()
    local srv <close>, port = serve(function(reader, writer) reader:read(1) writer.transport:abort() end)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    writer:write("x")
    assert.equal("", reader:read())  -- the peer is gone
    for _ = 1, 100 do
      writer:write(string.rep("x", 65536))
      if writer:is_closing() then break end
      writer:drain()
    end
    assert.is_true(writer:is_closing())
    raises(function() writer:drain() end, {errors.ConnectionResetError, "Connection lost"})
    raises(function() writer:wait_closed() end, errors.ConnectionError)
  end))

  it("cancelling a drain that waits for connection_lost leaves wait_closed working", async(function(loop)
    local srv <close>, port = serve(function(reader, writer) reader:read() writer:close() end)
    local _, writer = eddy.open_connection("127.0.0.1", port)
    writer:close()
    local t = loop:create_task(function() writer:drain() end)
    eddy.sleep(0)
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.truthy(errors.is(err, errors.CancelledError) or errors.is(err, errors.ConnectionResetError))
    writer:wait_closed()
  end))

  it("closing a writer feeds EOF to its own reader (test_eof_feed_when_closing_writer)", async(function()
    local srv <close>, port = serve(echo_lines)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    writer:close()
    writer:wait_closed()
    assert.is_true(reader:at_eof())
    assert.equal("", reader:read())
  end))

  it("the client's EOF reaches the server's reader when the client closes",
     async(function(loop)
    local got = loop:create_future()
    local srv <close>, port = serve(function(reader, writer)
      got:set_result(reader:read())
      writer:close()
    end)
    local _, writer = eddy.open_connection("127.0.0.1", port)
    writer:write("last words")
    writer:close()
    writer:wait_closed()
    assert.equal("last words", net.wait(got))
  end))

  it("a raising client_connected_cb is reported and closes the connection (asyncio 3.12, test_unhandled_exception)",
     function()
    local reports = test.run_collecting(function()
      local srv <close>, port = serve(function() error(errors.ValueError("boom")) end)
      local reader, writer <close> = eddy.open_connection("127.0.0.1", port)
      assert.equal("", reader:read())
    end)
    assert.equal(1, #reports)
    assert.equal("Unhandled exception in client_connected_cb", reports[1].message)
    assert.is_not_nil(reports[1].transport)
  end)

  it("a client_connected_cb that cancels itself after closing its writer is not reported (test_unhandled_cancel)",
     function()
    local reports = test.run_collecting(function()
      local srv, port = serve(function(_, writer)
        writer:close()
        eddy.current_task():cancel()
        eddy.sleep(0)  -- the cancellation lands here
      end)
      -- as CPython's client: it writes and closes without reading (the
      -- server closes with the message unread, which may reset the
      -- connection, as asyncio's socket.close does, once connection_lost
      -- has run)
      local _, writer = eddy.open_connection("127.0.0.1", port)
      writer:write("test msg")
      writer:drain()
      writer:close()
      writer:wait_closed()
      srv:close()
      srv:wait_closed()
    end)
    assert.same({}, reports)
  end)

  -- Run, in an eddy of its own with warnings on and debug mode, a client of
  -- a server that writes "hello\n" and closes: 'rest' goes on with rd, wr
  -- (the client's reader and writer) after the first read.  Returns its
  -- standard error.
  local function dropping(rest)
    local cli = require "cli_helper"
    local res = cli.eddy("-W -e " .. cli.q([[
      local eddy = require "eddy"
      eddy.run(function()
        eddy.get_running_loop():set_debug(true)
        local srv <close> = eddy.start_server(function(_, w) w:write("hello\n") w:close() end,
                                              "127.0.0.1", 0)
        local rd, wr = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
        assert(rd:read() == "hello\n")
        ]] .. rest .. [[
      end)
    ]]))
    assert.equal(0, res.code, res.err)
    return res.err
  end

  it("a writer dropped unclosed, with its reader, is collected with a warning in debug mode "
     .. "(as docs/transports.md says)", function()
    local err = dropping([[
        rd, wr = nil, nil
        collectgarbage() collectgarbage()
        io.stderr:write("collected\n")]])
    assert.matches("^Lua warning: eddy: unclosed transport 0x%x+\ncollected\n$", err)
  end)

  it("test_unclosed_resource_warnings: a writer dropped while its reader is kept closes "
     .. "the transport, with one warning in debug mode", function()
    local err = dropping([[
        local transport = wr.transport
        wr = nil
        collectgarbage() collectgarbage()
        eddy.sleep(0)
        io.stderr:write("closing: ", tostring(transport:is_closing()), "\n")]])
    assert.matches("^Lua warning: eddy: unclosed <StreamWriter transport=<TCPTransport [^\n]*>>\n"
                   .. "closing: true\n$", err)
  end)

  it("a writer closed before it is dropped: nothing more happens when it is collected",
     function()
    local err = dropping([[
        wr:close()
        wr:wait_closed()
        wr = nil
        collectgarbage() collectgarbage()
        eddy.sleep(0)
        io.stderr:write("done\n")]])
    assert.equal("done\n", err)
  end)

  it("a writer dropped after its transport closed leaves its loop no finalizer work",
     async(function(loop)
    local srv <close> = eddy.start_server(function(_, w) w:close() end, "127.0.0.1", 0)
    local rd, wr = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    assert.equal("", rd:read())
    wr.transport:abort()  -- closed, not through the writer
    local requests = 0
    loop._finalize_soon = function() requests = requests + 1 end
    rd, wr = nil, nil  -- luacheck: ignore
    collectgarbage() collectgarbage()
    loop._finalize_soon = nil
    assert.equal(0, requests)
  end))

  it("a server's writer lives while its callback runs, even out of every stack (a tail call), "
     .. "as asyncio's coroutine parameters do; dropped when it ends, it closes", async(function(loop)
    local got, after = loop:create_future(), loop:create_future()
    local function only_reads(reader)
      collectgarbage() collectgarbage()  -- the writer is on no stack now
      eddy.sleep(0.05)
      got:set_result(reader:read(100))
    end
    local srv <close> = eddy.start_server(function(reader, writer)  -- luacheck: ignore writer
      return only_reads(reader)
    end, "127.0.0.1", 0)
    local rd, wr = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    eddy.sleep(0.02)
    wr:write("hello")
    assert.equal("hello", got:await())
    -- The callback ended without closing: its writer, collected, closes.
    loop:call_soon(function() collectgarbage() collectgarbage() after:set_result(true) end)
    after:await()
    assert.equal("", eddy.wait_for(function() return rd:read() end, 5))
    wr:close()
  end))

  it("a writer dropped while another loop runs is closed by its own loop's next iteration",
     function()
    local function connect(loop)
      return loop:run_until_complete(function()
        local srv = eddy.start_server(function(_, w) w:close() end, "127.0.0.1", 0)
        local rd, wr = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
        return srv, rd, wr.transport  -- the writer itself is dropped
      end)
    end
    local loop_a, loop_b = eddy.new_event_loop(), eddy.new_event_loop()
    local srv_a, rd_a, transport_a = connect(loop_a)
    local srv_b, rd_b, transport_b = connect(loop_b)
    collectgarbage() collectgarbage()
    loop_b:run_until_complete(function() eddy.sleep(0) end)
    assert.is_true(transport_b:is_closing())
    assert.is_false(transport_a:is_closing())  -- loop_a's work waits for loop_a
    loop_a:run_until_complete(function() eddy.sleep(0) end)
    assert.is_true(transport_a:is_closing())
    for _, pair in ipairs({{loop_a, srv_a, rd_a}, {loop_b, srv_b, rd_b}}) do
      pair[1]:run_until_complete(function()
        pair[2]:close()
        pair[2]:wait_closed()
      end)
      pair[1]:close()
    end
  end)

  it("a client's writer dropped while its reader reads: the server sees EOF, "
     .. "the reader then reads EOF (asyncio's StreamWriter.__del__)", async(function(loop)
    local server_read = loop:create_future()
    local srv <close> = eddy.start_server(function(r, w)
      server_read:set_result(r:read())
      w:close()
    end, "127.0.0.1", 0)
    local rd, wr = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    wr = nil  -- luacheck: ignore
    collectgarbage() collectgarbage()
    assert.equal("", eddy.wait_for(server_read, 5))
    assert.equal("", eddy.wait_for(function() return rd:read() end, 5))
    assert.is_true(rd:at_eof())
  end))

  it("a server's handler that returns without closing its writer: the connection closes "
     .. "once the writer is collected (asyncio 3.13's protocol does not keep the writer)",
     async(function(loop)
    local handler_done = loop:create_future()
    local srv <close> = eddy.start_server(function(_, w)
      w:write("hi\n")
      loop:call_soon(function() handler_done:set_result(true) end)
    end, "127.0.0.1", 0)
    local rd, wr = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    assert.equal("hi\n", eddy.wait_for(function() return rd:readline() end, 5))
    eddy.wait_for(handler_done, 5)
    collectgarbage() collectgarbage()
    assert.equal("", eddy.wait_for(function() return rd:read() end, 5))
    wr:close()
  end))

  it("a pipe's reader with a limit of 1 reads all a child wrote (test_read_all_from_pipe_reader)",
     async(function(loop)
    local reader = eddy.StreamReader(1)
    local protocol = eddy.StreamReaderProtocol(reader)
    local transport = loop:connect_read_pipe(function() return protocol end,
                                             io.popen("printf data", "r"))
    assert.equal("data", net.wait(eddy.create_task(function() return reader:read(-1) end)))
    transport:close()
  end))

  it("serves many clients at once", async(function(loop)
    local srv <close>, port = serve(echo_lines)
    local n = 50
    local tasks = {}
    for i = 1, n do
      tasks[i] = loop:create_task(function()
        local reader, writer <close> = eddy.open_connection("127.0.0.1", port)
        local got = {}
        for j = 1, 5 do
          writer:write(string.format("client %d line %d\n", i, j))
          writer:drain()
          got[j] = reader:readline()
        end
        writer:write_eof()
        assert.equal("", reader:read())
        return table.concat(got)
      end)
    end
    for i = 1, n do
      local expected = {}
      for j = 1, 5 do expected[j] = string.format("client %d line %d\n", i, j) end
      assert.equal(table.concat(expected), net.wait(tasks[i], 10))
    end
  end))
end)

-- Two servers on one loop, for the order of what one poll brings: A runs a
-- protocol whose data_received logs "A data" and schedules a callback
-- logging "A call_soon"; B runs a streams handler that logs "B read N"
-- once a read returns.  on_a_data(loop), when given, replaces what A's
-- data_received does after logging.  Returns the clients' A transport and
-- B writer, and futures for B's handler parked in its read and done
-- reading.
local function two_servers(loop, log, on_a_data)
  local b_parked, b_done = loop:create_future(), loop:create_future()
  local A = {}
  A.__index = A
  function A.connection_made() end
  function A.data_received()
    log[#log + 1] = "A data"
    if on_a_data then return on_a_data(loop) end
    loop:call_soon(function() log[#log + 1] = "A call_soon" end)
  end
  local srv_a = loop:run_until_complete(loop:create_task(function()
    return loop:create_server(function() return setmetatable({}, A) end, "127.0.0.1", 0)
  end))
  local srv_b, port_b = loop:run_until_complete(loop:create_task(function()
    return serve(function(reader, writer)
      b_parked:set_result(true)
      local data = reader:read(65536)
      log[#log + 1] = "B read " .. #data
      b_done:set_result(true)
      reader:read()
      writer:close()
    end)
  end))
  local a, b = loop:run_until_complete(loop:create_task(function()
    local a = loop:create_connection(function() return {} end, "127.0.0.1",
                                     srv_a.sockets[1]:getsockname()[2])
    local _, b = eddy.open_connection("127.0.0.1", port_b)
    net.wait(b_parked)
    return a, b
  end))
  return {a = a, b = b, b_done = b_done, close = function()
    a:close()
    b:close()
    srv_a:close()
    srv_b:close()
  end}
end

describe("a task waiting for a read of 4 KiB or more (docs/streams.md)", function()
  -- Run fn(loop) on a loop of its own (checks.with_loop: closed after,
  -- and no handle leaked).
  local function on_own_loop(fn) checks.with_loop(fn)() end

  -- Run close() in a task, then the loop until every handle it opened is
  -- freed (the peers of what close() closes shut theirs on EOF).
  local function close_and_settle(loop, close)
    loop:run_until_complete(function()
      close()
      net.wait_until(function()
        local opened, freed = loop:_handle_counts()
        return opened == freed
      end)
    end)
  end

  -- On a loop of its own, with two_servers: A's client writes "x" and B's
  -- b_size bytes (default 8 KiB), in the order 'first' names ("A" or "B"),
  -- so that one poll brings both; run(loop, log), when given, runs the
  -- loop first.  Returns the log once B's handler has read.
  local function in_one_poll(first, run, on_a_data, b_size)
    local log = {}
    on_own_loop(function(loop)
      local s = two_servers(loop, log, on_a_data)
      if first == "A" then s.a:write("x") end
      s.b:write(string.rep("b", b_size or 8192))
      if first == "B" then s.a:write("x") end
      if run then run(loop, log) end
      loop:run_until_complete(function()
        net.wait(s.b_done)
        eddy.sleep(0.01)
      end)
      close_and_settle(loop, s.close)
    end)
    return log
  end

  -- A streams server whose handler, on_conn(reader, writer), is parked in
  -- its first read when this returns the server and a client writer.
  local function parked_handler(loop, on_conn)
    local started = loop:create_future()
    return loop:run_until_complete(function()
      local srv = serve(function(reader, writer)
        started:set_result(true)
        return on_conn(reader, writer)
      end)
      local _, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
      net.wait(started)
      eddy.sleep(0.01)
      return srv, w
    end)
  end

  -- A parked_handler that logs "B read N" for its first read, calls
  -- after_read() when given, and closes; also returns a future resolved
  -- then.
  local function logging_handler(loop, log, after_read)
    local done = loop:create_future()
    local srv, w = parked_handler(loop, function(reader, writer)
      local data = reader:read(65536)
      log[#log + 1] = "B read " .. #data
      if after_read then after_read() end
      done:set_result(true)
      writer:close()
    end)
    return srv, w, done
  end

  it("reads it at once when nothing else is ready", function()
    assert.same({"B read 8192", "A data", "A call_soon"}, in_one_poll("B"))
  end)

  it("comes after callbacks scheduled before it (asyncio's ready queue is FIFO)", function()
    assert.same({"A data", "A call_soon", "B read 8192"}, in_one_poll("A"))
  end)

  -- run_until_complete stops as asyncio's does, through its future's done
  -- callback (_run_until_complete_cb), which comes first in the queue:
  -- the step runs after it, in the run's last iteration.
  it("stays queued behind the done callback when the poll completes run_until_complete's future", function()
    local until_fut
    local log = in_one_poll("A", function(loop, log)
      until_fut = loop:create_future()
      local guard = loop:call_later(5, function() until_fut:cancel() end)
      loop:run_until_complete(until_fut)  -- raises if the guard fired
      guard:cancel()
      assert.same({"A data", "B read 8192"}, log)
    end, function() until_fut:set_result(true) end)
    assert.same({"A data", "B read 8192"}, log)
  end)

  it("stays queued when the poll calls stop(), for the next run, as asyncio leaves it", function()
    local log = in_one_poll("A", function(loop, log)
      checks.run_forever(loop)
      assert.same({"A data"}, log)
    end, function(loop) loop:stop() end)
    assert.same({"A data", "B read 8192"}, log)
  end)

  it("stays queued behind a due timer, which runs first, as in asyncio's _run_once", function()
    -- asyncio makes the timer ready with the poll's I/O callbacks, and the
    -- step data_received schedules comes in the iteration after
    on_own_loop(function(loop)
      local log = {}
      local srv, w, done = logging_handler(loop, log, function()
        loop:call_soon(function() log[#log + 1] = "B call_soon" end)
      end)
      loop:run_until_complete(function()
        w:write(string.rep("b", 8192))
        loop:call_later(0, function() log[#log + 1] = "timer" end)  -- due now
        net.wait(done)
        eddy.sleep(0.02)
      end)
      close_and_settle(loop, function() w:close() srv:close() end)
      assert.same({"timer", "B read 8192", "B call_soon"}, log)
    end)
  end)

  it("stays queued while a transport closed earlier has its connection_lost to come", function()
    on_own_loop(function(loop)
      local log = {}
      local srv, w, done = logging_handler(loop, log)
      local srv_c
      loop:run_until_complete(function()
        srv_c = loop:create_server(function() return {} end, "127.0.0.1", 0)
        local c = loop:create_connection(function()
          return {connection_lost = function() log[#log + 1] = "C connection_lost" end}
        end, "127.0.0.1", srv_c.sockets[1]:getsockname()[2])
        eddy.sleep(0.01)
        c:close()  -- asyncio schedules connection_lost with call_soon here
        w:write(string.rep("b", 8192))
        net.wait(done)
      end)
      close_and_settle(loop, function() w:close() srv:close() srv_c:close() end)
      assert.same({"C connection_lost", "B read 8192"}, log)
    end)
  end)

  -- On a loop of its own, a parked_handler running handler(reader,
  -- writer, got) gets two writes of 8 KiB, the second once the first is
  -- read (got[1] set: after a fixed wait, a loaded machine could let both
  -- arrive before that read); returns 'got' once it holds n values.
  local function two_reads(n, handler)
    local got = {}
    on_own_loop(function(loop)
      local srv, w = parked_handler(loop, function(reader, writer)
        handler(reader, writer, got)
      end)
      loop:run_until_complete(function()
        w:write(string.rep("b", 8192))
        net.wait_until(function() return got[1] ~= nil end)
        w:write(string.rep("c", 8192))
        net.wait_until(function() return got[n] ~= nil end)
      end)
      close_and_settle(loop, function() w:close() srv:close() end)
    end)
    return got
  end

  it("a task reading again inside the step gets the next read", function()
    assert.same({8192, 8192}, two_reads(2, function(reader, writer, got)
      got[1] = #reader:read(65536)
      got[2] = #reader:read(65536)
      writer:close()
    end))
  end)

  it("an error after the task's body yields is reported, and the loop stays usable", function()
    local cancel = eddy.Future.__index.cancel
    local refusing
    eddy.Future.__index.cancel = function(f, ...)
      if f == refusing then error("cancel refused") end
      return cancel(f, ...)
    end
    local ok, err = pcall(on_own_loop, function(loop)
      local reported = {}
      loop:set_exception_handler(function(_, ctx) reported[#reported + 1] = ctx.message end)
      local srv, w = parked_handler(loop, function(reader, writer)
        reader:read(65536)
        refusing = loop:create_future()
        eddy.current_task():cancel()  -- the step's tail cancels what it awaits
        pcall(eddy.await, refusing)
        writer:close()
      end)
      loop:run_until_complete(function()
        w:write(string.rep("b", 8192))
        -- waited for, not slept on: a loaded machine may stall past a
        -- fixed sleep before the handler's step, and the run end first
        net.wait_until(function() return #reported > 0 end)
        eddy.sleep(0.05)  -- room for a second report, which must not come
      end)
      assert.is_false(loop:is_running())
      assert.same({"Exception in a task step"}, reported)
      close_and_settle(loop, function()
        refusing:set_result(true)  -- the handler goes on, and closes
        w:close()
        srv:close()
      end)
    end)
    eddy.Future.__index.cancel = cancel
    assert(ok, err)
  end)

  -- The step runs outside a protected call up to where it could raise:
  -- what follows the body's end (here its error) runs protected.
  it("a body failing in that step fails its task, reported as a handler's error", function()
    on_own_loop(function(loop)
      local reported = {}
      loop:set_exception_handler(function(_, ctx)
        reported[#reported + 1] = ctx.message .. ": " .. tostring(ctx.exception)
      end)
      local srv, w = parked_handler(loop, function(reader)
        error("failed after reading " .. #reader:read(65536), 0)
      end)
      loop:run_until_complete(function()
        w:write(string.rep("b", 8192))
        net.wait_until(function() return #reported > 0 end)
      end)
      close_and_settle(loop, function() w:close() srv:close() end)
      assert.same({"Unhandled exception in client_connected_cb: failed after reading 8192"},
                  reported)
    end)
  end)

  it("a task with a context of its own reads it at once in that context", function()
    local var = eddy.ContextVar("var")
    local got = two_reads(4, function(reader, writer, got)
      var:set("the handler's")  -- the task now has a context of its own
      got[1] = #reader:read(65536)  -- parks: the next step enters the context
      got[2] = var:get()
      got[3] = #reader:read(65536)
      got[4] = var:get()
      writer:close()
    end)
    assert.same({8192, "the handler's", 8192, "the handler's"}, got)
    assert.is_nil(var:get(nil))
  end)

  it("a read under 4 KiB is queued behind the poll's later I/O callbacks", function()
    assert.same({"A data", "B read 100", "A call_soon"}, in_one_poll("B", nil, nil, 100))
  end)
end)

describe("stream backpressure", function()
  it("a slow reader pauses the transport past 2 x limit and resumes it below the limit",
     async(function(loop)
    local server_side = loop:create_future()
    local release = loop:create_future()
    local srv <close>, port = serve(function(reader, writer)
      server_side:set_result({reader, writer})
      release:await()
      writer:close()
    end, {limit = 1024})
    local _, cwriter <close> = eddy.open_connection("127.0.0.1", port)
    local reader, writer = table.unpack(net.wait(server_side))
    cwriter:write(string.rep("a", 4096))
    net.wait_until(function() return not writer.transport:is_reading() end)
    assert.is_true(reader:_status().paused)
    assert.is_true(reader:_status().size > 2048)
    -- reading down to the limit resumes it
    reader:readexactly(reader:_status().size - 1024)
    assert.is_false(reader:_status().paused)
    assert.is_true(writer.transport:is_reading())
    release:set_result(true)
  end))

  it("every task waiting in drain wakes when writing resumes (test_multiple_drain)",
     async(function(loop)
    local l = socket.socket()
    l:bind({"127.0.0.1", 0})
    l:listen(1)
    l:setblocking(false)
    local acc = loop:create_task(function() return loop:sock_accept(l) end)
    local _, writer <close> = eddy.open_connection("127.0.0.1", l:getsockname()[2])
    local conn = net.wait(acc)
    writer.transport:set_write_buffer_limits(1000)
    local size = 32 * 1024 * 1024  -- more than loopback's buffers take
    writer:write(string.rep("x", size))
    local drained = 0
    local tasks = {}
    for i = 1, 10 do
      tasks[i] = loop:create_task(function() writer:drain() drained = drained + 1 end)
    end
    eddy.sleep(0.01)
    assert.equal(0, drained)
    local n = 0
    while n < size do
      n = n + #eddy.wait_for(function() return loop:sock_recv(conn, 1 << 20) end, 10)
    end
    for _, t in ipairs(tasks) do net.wait(t, 10) end
    assert.equal(10, drained)
    conn:close()
    l:close()
  end))

  it("drain waits while the peer does not read (FlowControlMixin._drain_helper)",
     async(function(loop)
    local server_side = loop:create_future()
    local release = loop:create_future()
    local srv <close>, port = serve(function(reader, writer)
      server_side:set_result(reader)
      release:await()
      local total = #reader:read()
      writer:write(tostring(total))
      writer:close()
    end)
    local creader, cwriter <close> = eddy.open_connection("127.0.0.1", port)
    local sreader = net.wait(server_side)
    local chunk = string.rep("b", 256 * 1024)
    local sent = 0
    -- Fill the socket buffers and the transport's until drain blocks.
    local drainer
    for _ = 1, 400 do
      cwriter:write(chunk)
      sent = sent + #chunk
      drainer = loop:create_task(function() cwriter:drain() end)
      eddy.sleep(0.01)
      if not drainer:done() then break end
    end
    assert.is_false(drainer:done(), "drain never waited")
    assert.is_true(cwriter.transport:get_write_buffer_size() > 0)
    assert.is_true(sreader:_status().paused)  -- the server side paused reading too
    release:set_result(true)
    net.wait(drainer, 10)
    cwriter:write_eof()
    assert.equal(tostring(sent), creader:read())
  end))
end)

describe("interop with Python asyncio streams", function()
  local python_client = [[
import asyncio, sys

async def main(kind, where):
    if kind == "tcp":
        reader, writer = await asyncio.open_connection("127.0.0.1", int(where))
    else:
        reader, writer = await asyncio.open_unix_connection(where)
    lines = [b"line %d\n" % i for i in range(1000)]
    writer.writelines(lines)
    await writer.drain()
    got = []
    for _ in lines:
        got.append(await reader.readline())
    writer.write_eof()
    rest = await reader.read()
    writer.close()
    await writer.wait_closed()
    print("OK" if got == lines and rest == b"" else "MISMATCH")

asyncio.run(main(sys.argv[1], sys.argv[2]))
]]

  local function run_python_client(kind, where)
    local script = net.tempfile(python_client)
    local proc = net.spawn(string.format("timeout 10 %s %s %s %q", PYTHON, script, kind, where), 10)
    net.wait_until(proc.done, 12)
    local out = proc.output()
    proc.cleanup()
    os.remove(script)
    assert.equal("OK\n", out)
  end

  it("a Python streams client against an eddy stream server (TCP)", async(function()
    local srv <close>, port = serve(echo_lines)
    run_python_client("tcp", tostring(port))
  end, 15))

  it("a Python streams client against an eddy stream server (UNIX)", async(function()
    local path = temp_path()
    local srv <close> = eddy.start_unix_server(echo_lines, path)
    run_python_client("unix", path)
    os.remove(path)
  end, 15))

  it("an eddy streams client against a Python stream server", async(function()
    local script = net.tempfile([[
import asyncio

async def handle(reader, writer):
    async for line in reader:
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()
    done.set_result(True)

async def main():
    global done
    done = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.wait_for(done, 8)
    server.close()
    print("SERVED", flush=True)

asyncio.run(main())
]])
    local proc = net.spawn(string.format("timeout 10 %s %s", PYTHON, script), 10)
    local port
    net.wait_until(function()
      port = tonumber((proc.output():match("^(%d+)\n")))
      return port ~= nil
    end, 8)
    local reader, writer = eddy.open_connection("127.0.0.1", port)
    writer:write("hello\nworld\n")
    assert.equal("HELLO\n", reader:readline())
    assert.equal("WORLD\n", reader:readline())
    writer:write_eof()
    assert.equal("", reader:read())
    writer:close()
    writer:wait_closed()
    net.wait_until(proc.done, 10)
    assert.equal(port .. "\nSERVED\n", proc.output())
    proc.cleanup()
    os.remove(script)
  end, 15))
end)
