-- eddy.streams: asyncio's streams (asyncio/streams.py, Python 3.12; the
-- list separator of readuntil is 3.13's): open_connection, start_server,
-- their UNIX variants, StreamReader, StreamReaderProtocol, StreamWriter.
--
-- A StreamReader buffers what the transport delivers as a queue of the
-- strings data_received got ('_chunks' from '_head' to '_tail'), the
-- first one consumed up to '_pos' bytes; '_size' counts the bytes not yet
-- consumed.  Nothing is concatenated on arrival: read(n) hands back the
-- chunk itself when it fits (the common case of an echo loop: no copy),
-- and only readuntil joins the chunks it has to search across.
--
-- One task at a time may wait for data: it waits on '_waiter', a future
-- that feed_data/feed_eof/set_exception complete.  Backpressure is
-- asyncio's: the transport is paused when more than 2 * limit bytes are
-- buffered and resumed when a read leaves at most 'limit'.

local eddy = require "eddy"
local args = require "eddy.args"
local errors = require "eddy.errors"
local C = eddy._core

local RuntimeError, ValueError = errors.RuntimeError, errors.ValueError
local IncompleteReadError, LimitOverrunError =
  errors.IncompleteReadError, errors.LimitOverrunError

local DEFAULT_LIMIT = 1 << 16  -- 64 KiB, asyncio's _DEFAULT_LIMIT

local concat, find, sub = table.concat, string.find, string.sub
local mtype = math.type

-- The hot path calls these directly rather than as methods.
local create_future = C.Loop.create_future
local Future = C.Future.__index
local f_cancelled, f_set_result, f_await = Future.cancelled, Future.set_result, Future.await

-- {================================================= Arguments

local typename, callable = args.typename, args.callable

local function argerror(fname, n, expected, v)
  error(args.message(fname, n, expected, v), 3)
end

local function check_limit(fname, n, limit)
  if limit == nil then return DEFAULT_LIMIT end
  limit = math.tointeger(limit) or argerror(fname, n, "integer", limit)
  if limit <= 0 then error(ValueError("Limit cannot be <= 0"), 3) end
  return limit
end

-- The loop a stream belongs to: the running one, or (top-level
-- suspension, §11) the default one.
local function current_loop()
  return C._get_running_loop() or C.get_event_loop()
end

local function class(name)
  local cls = {__name = name}
  cls.__index = cls
  return cls
end

-- }=================================================

-- {================================================= StreamReader

local StreamReader = class("eddy.StreamReader")
eddy.StreamReader = StreamReader

-- eddy.StreamReader(limit, loop)
setmetatable(StreamReader, {__call = function(_, limit, loop)
  limit = check_limit("StreamReader", 1, limit)
  if loop ~= nil and typename(loop) ~= "eddy.Loop" then
    argerror("StreamReader", 2, "loop or nil", loop)
  end
  return setmetatable({
    _limit = limit, _loop = loop or current_loop(),
    _chunks = {}, _head = 1, _tail = 0, _pos = 0, _size = 0,
    _eof = false, _waiter = nil, _exception = nil, _transport = nil,
    _paused = false,
  }, StreamReader)
end})

function StreamReader:__tostring()
  local info = {"<StreamReader"}
  if self._size > 0 then info[#info + 1] = self._size .. " bytes" end
  if self._eof then info[#info + 1] = "eof" end
  if self._limit ~= DEFAULT_LIMIT then info[#info + 1] = "limit=" .. self._limit end
  if self._waiter ~= nil then info[#info + 1] = "waiter=" .. tostring(self._waiter) end
  if self._exception ~= nil then info[#info + 1] = "exception=" .. tostring(self._exception) end
  if self._transport ~= nil then info[#info + 1] = "transport=" .. tostring(self._transport) end
  if self._paused then info[#info + 1] = "paused" end
  return concat(info, " ") .. ">"
end

function StreamReader:exception() return self._exception end

local function wakeup_waiter(self)
  local waiter = self._waiter
  if waiter ~= nil then
    self._waiter = nil
    if not f_cancelled(waiter) then f_set_result(waiter, nil) end
  end
end

function StreamReader:set_exception(exc)
  self._exception = exc
  local waiter = self._waiter
  if waiter ~= nil then
    self._waiter = nil
    if not waiter:cancelled() then waiter:set_exception(exc) end
  end
end

function StreamReader:set_transport(transport)
  if self._transport ~= nil then error(RuntimeError("Transport already set"), 2) end
  self._transport = transport
end

local function maybe_resume_transport(self)
  if self._paused and self._size <= self._limit then
    self._paused = false
    self._transport:resume_reading()
  end
end

function StreamReader:feed_eof()
  self._eof = true
  wakeup_waiter(self)
end

function StreamReader:at_eof()
  return self._eof and self._size == 0
end

local function feed_data(self, data)
  if self._eof then error(RuntimeError("feed_data after feed_eof"), 2) end
  local n = #data
  if n == 0 then return end
  local tail = self._tail + 1
  self._tail = tail
  self._chunks[tail] = data
  local size = self._size + n
  self._size = size
  wakeup_waiter(self)
  if size > 2 * self._limit and not self._paused and self._transport ~= nil then
    self._transport:pause_reading()
    self._paused = true
  end
end

function StreamReader:feed_data(data)
  if type(data) ~= "string" then argerror("feed_data", 1, "string", data) end
  feed_data(self, data)
end

-- Wait until feed_data, feed_eof or set_exception is called; resume a
-- paused transport first, or a read wanting more than 2 * limit bytes
-- would wait forever.  A waiter whose task was cancelled stays in
-- '_waiter' (done): that is no task waiting, so the next read may go on.
local function wait_for_data(self, fname)
  local waiter = self._waiter
  if waiter ~= nil and not waiter:done() then
    error(RuntimeError(fname .. "() called while another coroutine is already "
                       .. "waiting for incoming data"), 3)
  end
  if self._paused then
    self._paused = false
    self._transport:resume_reading()
  end
  waiter = create_future(self._loop)
  self._waiter = waiter
  f_await(waiter)
end

-- Remove and return the first n bytes (0 < n <= _size).
local function take(self, n)
  local chunks, head, pos = self._chunks, self._head, self._pos
  local first = chunks[head]
  local avail = #first - pos
  self._size = self._size - n
  if n == avail then  -- the rest of the first chunk
    chunks[head] = nil
    self._head, self._pos = head + 1, 0
    if pos == 0 then return first end
    return sub(first, pos + 1)
  elseif n < avail then
    self._pos = pos + n
    return sub(first, pos + 1, pos + n)
  end
  local parts, np = {sub(first, pos + 1)}, 1
  chunks[head] = nil
  head = head + 1
  n = n - avail
  while true do
    local chunk = chunks[head]
    local len = #chunk
    np = np + 1
    if n < len then
      parts[np] = sub(chunk, 1, n)
      self._head, self._pos = head, n
      break
    end
    parts[np] = chunk
    chunks[head] = nil
    head = head + 1
    n = n - len
    if n == 0 then
      self._head, self._pos = head, 0
      break
    end
  end
  return concat(parts)
end

-- Join the buffered bytes into one chunk and return it.
local function coalesce(self)
  local head, tail = self._head, self._tail
  if head > tail then return "" end
  local chunks = self._chunks
  local s
  if head == tail then
    s = chunks[head]
    if self._pos > 0 then s = sub(s, self._pos + 1) end
  else
    local parts = {sub(chunks[head], self._pos + 1)}
    for i = head + 1, tail do parts[#parts + 1] = chunks[i] end
    s = concat(parts)
    for i = head, tail do chunks[i] = nil end
  end
  self._chunks, self._head, self._tail, self._pos = {s}, 1, 1, 0
  return s
end

local function take_all(self)
  if self._size == 0 then return "" end
  return take(self, self._size)
end

local function check_exception(self)
  local exc = self._exception
  if exc ~= nil then error(exc, 0) end
end

-- reader:read(n) (S): up to n bytes (n nil or negative: until EOF); ""
-- at EOF.
function StreamReader:read(n)
  if n == nil then
    n = -1
  elseif mtype(n) ~= "integer" then
    argerror("read", 1, "integer or nil", n)
  end
  check_exception(self)
  if n == 0 then return "" end
  if n < 0 then
    -- Read limit-sized blocks, so that a paused transport gets resumed.
    local blocks = {}
    while true do
      local block = self:read(self._limit)
      if block == "" then break end
      blocks[#blocks + 1] = block
    end
    return concat(blocks)
  end
  if self._size == 0 then
    if self._eof then return "" end
    wait_for_data(self, "read")
  end
  local size = self._size
  if size == 0 then return "" end  -- woken by EOF
  local data = take(self, n < size and n or size)
  if self._paused then maybe_resume_transport(self) end
  return data
end

-- reader:readexactly(n) (S): exactly n bytes, or IncompleteReadError.
function StreamReader:readexactly(n)
  if mtype(n) ~= "integer" then argerror("readexactly", 1, "integer", n) end
  if n < 0 then error(ValueError("readexactly size can not be less than zero"), 2) end
  check_exception(self)
  if n == 0 then return "" end
  while self._size < n do
    if self._eof then
      error(IncompleteReadError(take_all(self), n), 0)
    end
    wait_for_data(self, "readexactly")
  end
  local data = take(self, n)
  maybe_resume_transport(self)
  return data
end

-- The separators of readuntil, shortest first (the shortest match wins).
local function separators(sep)
  if type(sep) == "string" then
    if #sep == 0 then error(ValueError("Separator should be at least one-byte string"), 3) end
    return {sep}, #sep, #sep
  end
  if type(sep) ~= "table" or getmetatable(sep) ~= nil then
    argerror("readuntil", 1, "string or list of strings", sep)
  end
  local list = {}
  for i, s in ipairs(sep) do
    if type(s) ~= "string" then
      error(string.format("bad argument #1 to 'readuntil' (separator #%d: string expected, got %s)",
                          i, typename(s)), 3)
    end
    list[i] = s
  end
  if #list == 0 then error(ValueError("Separator should contain at least one element"), 3) end
  table.sort(list, function(a, b) return #a < #b end)
  if #list[1] == 0 then error(ValueError("Separator should be at least one-byte string"), 3) end
  return list, #list[1], #list[#list]
end

-- reader:readuntil(separator) (S): the data up to and including the
-- separator (default "\n"; a list of strings: the earliest ending match).
function StreamReader:readuntil(separator)
  local seps, min_seplen, max_seplen = separators(separator == nil and "\n" or separator)
  check_exception(self)
  -- Bytes from the start known not to hold a separator.
  local offset = 0
  local match_start, match_end
  while true do
    local buflen = self._size
    if buflen - offset >= min_seplen then
      local buf = coalesce(self)
      for _, sep in ipairs(seps) do
        local i = find(buf, sep, offset + 1, true)
        if i ~= nil and (match_end == nil or i + #sep - 1 < match_end) then
          match_start, match_end = i - 1, i + #sep - 1
        end
      end
      if match_end ~= nil then break end
      -- A separator may straddle what came so far and what comes next.
      offset = math.max(0, buflen + 1 - max_seplen)
      if offset > self._limit then
        error(LimitOverrunError("Separator is not found, and chunk exceed the limit", offset), 0)
      end
    end
    -- Data completing a separator may arrive together with EOF: look
    -- at the buffer first.
    if self._eof then
      error(IncompleteReadError(take_all(self), nil), 0)
    end
    wait_for_data(self, "readuntil")
  end
  if match_start > self._limit then
    error(LimitOverrunError("Separator is found, but chunk is longer than limit", match_start), 0)
  end
  local chunk = take(self, match_end)
  maybe_resume_transport(self)
  return chunk
end

-- reader:readline() (S): a line with its "\n"; at EOF the partial line
-- (maybe ""); ValueError when the line is longer than the limit (what
-- was buffered of it is dropped).
function StreamReader:readline()
  local ok, line = pcall(self.readuntil, self, "\n")
  if ok then return line end
  if errors.is(line, IncompleteReadError) then return line.partial end
  if errors.is(line, LimitOverrunError) then
    local consumed = line.consumed
    if self._size > consumed and coalesce(self):byte(consumed + 1) == 10 then
      take(self, consumed + 1)
    else
      take_all(self)
    end
    maybe_resume_transport(self)
    error(ValueError(line.message), 0)
  end
  error(line, 0)
end

-- for line in reader:lines() do ... end: each line without its "\n",
-- as io.lines; the iteration ends at EOF.
function StreamReader:lines()
  return function()
    local line = self:readline()
    if line == "" then return nil end
    if line:byte(-1) == 10 then return sub(line, 1, -2) end
    return line
  end
end

-- }=================================================

-- {================================================= StreamReaderProtocol

-- The protocol between a transport and a reader/writer pair (asyncio's
-- FlowControlMixin + StreamReaderProtocol).  With a client_connected_cb
-- (servers) connection_made creates the writer and runs the callback as
-- a task.
local StreamReaderProtocol = class("eddy.StreamReaderProtocol")
eddy.StreamReaderProtocol = StreamReaderProtocol

local StreamWriter = class("eddy.StreamWriter")
eddy.StreamWriter = StreamWriter

local function new_writer(transport, protocol, reader, loop)
  return setmetatable({transport = transport, _protocol = protocol,
                       _reader = reader, _loop = loop}, StreamWriter)
end

-- eddy.StreamReaderProtocol(stream_reader, client_connected_cb, loop)
setmetatable(StreamReaderProtocol, {__call = function(_, reader, cb, loop)
  if reader ~= nil and getmetatable(reader) ~= StreamReader then
    argerror("StreamReaderProtocol", 1, "StreamReader or nil", reader)
  end
  if cb ~= nil and not callable(cb) then
    argerror("StreamReaderProtocol", 2, "callable or nil", cb)
  end
  loop = loop or current_loop()
  return setmetatable({
    _reader = reader, _client_connected_cb = cb, _loop = loop,
    _transport = nil, _writer = nil, _task = nil,
    _paused = false, _drain_waiters = {}, _connection_lost = false,
    _closed = loop:create_future(),
  }, StreamReaderProtocol)
end})

-- The callback's task ended: a failure is reported and closes the
-- connection, as asyncio 3.12 does.
local function client_done(task, transport, loop)
  if task:cancelled() then
    transport:close()
    return
  end
  local exc = task:exception()
  if exc ~= nil then
    loop:call_exception_handler {
      message = "Unhandled exception in client_connected_cb",
      exception = exc,
      transport = transport,
    }
    transport:close()
  end
end

function StreamReaderProtocol:connection_made(transport)
  self._transport = transport
  local reader = self._reader
  if reader ~= nil then reader:set_transport(transport) end
  local cb = self._client_connected_cb
  if cb ~= nil then
    local loop = self._loop
    local writer = new_writer(transport, self, reader, loop)
    self._writer = writer
    local task = loop:create_task(cb, reader, writer)
    self._task = task
    task:add_done_callback(function(t) client_done(t, transport, loop) end)
  end
end

function StreamReaderProtocol:data_received(data)
  local reader = self._reader
  if reader ~= nil then feed_data(reader, data) end
end

-- Keep the write side open: the writer decides when to close.
function StreamReaderProtocol:eof_received()
  local reader = self._reader
  if reader ~= nil then reader:feed_eof() end
  return true
end

function StreamReaderProtocol:pause_writing()
  self._paused = true
end

local function wake_drain_waiters(self, exc)
  for _, waiter in ipairs(self._drain_waiters) do
    if not waiter:done() then
      if exc == nil then waiter:set_result(nil) else waiter:set_exception(exc) end
    end
  end
end

function StreamReaderProtocol:resume_writing()
  self._paused = false
  wake_drain_waiters(self, nil)
end

function StreamReaderProtocol:connection_lost(exc)
  local reader = self._reader
  if reader ~= nil then
    if exc == nil then reader:feed_eof() else reader:set_exception(exc) end
  end
  local closed = self._closed
  if not closed:done() then
    if exc == nil then
      closed:set_result(nil)
    else
      closed:set_exception(exc)
      closed:exception()  -- wait_closed() raises it; nobody has to
    end
  end
  self._connection_lost = true
  if self._paused then wake_drain_waiters(self, exc) end
  self._reader, self._writer, self._task, self._transport = nil, nil, nil, nil
end

-- Wait while the transport's write buffer is over its high-water mark.
function StreamReaderProtocol:_drain_helper()
  if self._connection_lost then
    error(errors.ConnectionResetError("Connection lost"), 0)
  end
  if not self._paused then return end
  local waiter = self._loop:create_future()
  local waiters = self._drain_waiters
  waiters[#waiters + 1] = waiter
  local ok, err = pcall(waiter.await, waiter)
  for i = #waiters, 1, -1 do
    if waiters[i] == waiter then table.remove(waiters, i) break end
  end
  if not ok then error(err, 0) end
end

-- }=================================================

-- {================================================= StreamWriter

-- eddy.StreamWriter(transport, protocol, reader, loop)
setmetatable(StreamWriter, {__call = function(_, transport, protocol, reader, loop)
  if transport == nil then argerror("StreamWriter", 1, "transport", transport) end
  if getmetatable(protocol) ~= StreamReaderProtocol then
    argerror("StreamWriter", 2, "StreamReaderProtocol", protocol)
  end
  return new_writer(transport, protocol, reader, loop or current_loop())
end})

function StreamWriter:__tostring()
  local s = "<StreamWriter transport=" .. tostring(self.transport)
  if self._reader ~= nil then s = s .. " reader=" .. tostring(self._reader) end
  return s .. ">"
end

function StreamWriter:write(data) self.transport:write(data) end
function StreamWriter:writelines(list) self.transport:writelines(list) end
function StreamWriter:write_eof() return self.transport:write_eof() end
function StreamWriter:can_write_eof() return self.transport:can_write_eof() end
function StreamWriter:close() return self.transport:close() end
function StreamWriter:is_closing() return self.transport:is_closing() end

function StreamWriter:get_extra_info(name, default)
  return self.transport:get_extra_info(name, default)
end

-- writer:wait_closed() (S): until the connection is lost; raises the
-- error it was lost with.
function StreamWriter:wait_closed()
  return self._protocol._closed:await()
end

-- writer:drain() (S): wait until it is fine to write again.  Raises the
-- reader's exception or, once the connection is lost, ConnectionResetError.
function StreamWriter:drain()
  local reader = self._reader
  if reader ~= nil then check_exception(reader) end
  if self.transport:is_closing() then
    -- Let connection_lost run: a write/drain loop on a closed connection
    -- would otherwise never see the error.
    eddy.sleep(0)
  end
  local protocol = self._protocol
  if protocol._paused or protocol._connection_lost then protocol:_drain_helper() end
end

-- writer:start_tls(sslcontext, opts) (S)
function StreamWriter:start_tls()
  error(RuntimeError("start_tls: TLS is not supported yet"), 2)
end

-- local writer <close> = ...: close, then wait until closed (an error
-- wait_closed raises is not to hide the one the block is leaving with).
function StreamWriter:__close(err)
  self:close()
  if err == nil then
    self:wait_closed()
  else
    pcall(self.wait_closed, self)
  end
end

-- }=================================================

-- {================================================= Connections and servers

-- Split 'opts' into the limit and the options for the loop's method.
local function split_options(fname, n, opts)
  if opts == nil then return DEFAULT_LIMIT, nil end
  if type(opts) ~= "table" or getmetatable(opts) ~= nil then
    argerror(fname, n, "options table", opts)
  end
  local rest = {}
  for k, v in pairs(opts) do
    if k ~= "limit" then rest[k] = v end
  end
  return check_limit(fname, n, opts.limit), rest
end

-- A client connection: the loop's 'connect' method with (factory, ...).
local function open(connect, limit, ...)
  local loop = current_loop()
  local reader = StreamReader(limit, loop)
  local protocol = StreamReaderProtocol(reader, nil, loop)
  local transport = connect(loop, function() return protocol end, ...)
  return reader, new_writer(transport, protocol, reader, loop)
end

-- eddy.open_connection(host, port, opts) (S) -> reader, writer
function eddy.open_connection(host, port, opts)
  local limit, rest = split_options("open_connection", 3, opts)
  return open(C.Loop.create_connection, limit, host, port, rest)
end

-- eddy.open_unix_connection(path, opts) (S) -> reader, writer
function eddy.open_unix_connection(path, opts)
  local limit, rest = split_options("open_unix_connection", 2, opts)
  return open(C.Loop.create_unix_connection, limit, path, rest)
end

-- A server whose connections run client_connected_cb(reader, writer).
local function serve(fname, create, cb, limit, ...)
  if not callable(cb) then argerror(fname, 1, "callable", cb) end
  local loop = current_loop()
  local function factory()
    return StreamReaderProtocol(StreamReader(limit, loop), cb, loop)
  end
  return create(loop, factory, ...)
end

-- eddy.start_server(client_connected_cb, host, port, opts) (S) -> Server
function eddy.start_server(cb, host, port, opts)
  local limit, rest = split_options("start_server", 4, opts)
  return serve("start_server", C.Loop.create_server, cb, limit, host, port, rest)
end

-- eddy.start_unix_server(client_connected_cb, path, opts) (S) -> Server
function eddy.start_unix_server(cb, path, opts)
  local limit, rest = split_options("start_unix_server", 3, opts)
  return serve("start_unix_server", C.Loop.create_unix_server, cb, limit, path, rest)
end

-- }=================================================

return eddy
