-- eddy.streams: asyncio's streams (asyncio/streams.py, Python 3.12; the
-- list separator of readuntil is 3.13's): open_connection, start_server,
-- their UNIX variants, StreamReader, StreamReaderProtocol, StreamWriter.
--
-- The StreamReader and the per-message path (data_received into the
-- reader, StreamWriter's write and drain) are C: src/streams.c, where the
-- reader's buffer and how a task waits on it are described.  This file
-- has the rest: the protocol's other callbacks, the writer, connections
-- and servers.

local eddy = require "eddy"
local args = require "eddy.args"
local errors = require "eddy.errors"
local finalizers = require "eddy.finalizers"
local ssl = require "eddy.ssl"
local C = eddy._core

local ValueError = errors.ValueError

local DEFAULT_LIMIT = 1 << 16  -- 64 KiB, asyncio's _DEFAULT_LIMIT

local sub = string.sub

-- can_suspend(name): the RuntimeError of a suspending function called
-- outside a task names it, not the loop method it calls.
local can_suspend = C._can_suspend

-- {================================================= Arguments

local callable = args.callable

-- A standard argument error; 'up' (default 1) counts the functions of
-- this file between the caller to blame and the one calling argerror.
local function argerror(fname, n, expected, v, up)
  error(args.message(fname, n, expected, v), 2 + (up or 1))
end

local function check_limit(fname, n, limit)
  if limit == nil then return DEFAULT_LIMIT end
  limit = math.tointeger(limit) or argerror(fname, n, "integer", limit, 3)
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

-- eddy.StreamReader(limit, loop): the class is C's method table.
local reader_mt = C.StreamReader
local StreamReader = reader_mt.__index
eddy.StreamReader = StreamReader
setmetatable(StreamReader, {__call = C._stream_reader_new})

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

-- {================================================= Dropped writers

-- A writer dropped while its transport is open closes that transport, as
-- asyncio's StreamWriter.__del__ (3.12+), from a safe point
-- (eddy.finalizers); debug mode warns, as asyncio's ResourceWarning.
-- The finalizer is on a guard the writer holds, not on the writer: a
-- guard reaches nothing, where a finalizer on the writer kept all that a
-- connection is made of for another collection, and the generational
-- collector then let dead connections pile up (soak_spec, "the
-- collector": 1 MB -> 8.6 MB over 4,000).  The guard finds the transport
-- through a weak table: a transport collected with its writer has closed
-- itself (and warned) already.
local guarded = setmetatable({}, {__mode = "v"})  -- guard id -> transport
local last_guard = 0

local function close_dropped(transport, loop)
  if transport:is_closing() then return end
  transport:close()
  if loop:get_debug() then
    warn("eddy: unclosed <StreamWriter transport=", tostring(transport), ">")
  end
end

local Guard = {__gc = function(guard)
  local id, loop = guard[1], guard[2]
  local transport = guarded[id]
  guarded[id] = nil
  -- (a transport already closing, as after the peer's close, needs nothing)
  if transport ~= nil and not transport:is_closing() and not loop:is_closed() then
    finalizers.later(loop, close_dropped, transport)
  end
end}

-- A writer over one of eddy's transports gets write and drain of its own,
-- bound to the transport and the reader (src/streams.c, "Protocol and
-- writer").
local function new_writer(transport, protocol, reader, loop)
  last_guard = last_guard + 1
  guarded[last_guard] = transport
  local writer = setmetatable({_transport = transport, _protocol = protocol,
                               _reader = reader, _loop = loop,
                               _guard = setmetatable({last_guard, loop}, Guard)},
                              StreamWriter)
  C._writer_bind(writer)
  return writer
end

-- }=================================================

-- eddy.StreamReaderProtocol(stream_reader, client_connected_cb, loop)
setmetatable(StreamReaderProtocol, {__call = function(_, reader, cb, loop)
  if reader ~= nil and getmetatable(reader) ~= reader_mt then
    argerror("StreamReaderProtocol", 1, "StreamReader or nil", reader)
  end
  if cb ~= nil and not callable(cb) then
    argerror("StreamReaderProtocol", 2, "callable or nil", cb)
  end
  loop = loop or current_loop()
  local protocol = setmetatable({
    _reader = reader, _client_connected_cb = cb, _loop = loop,
    _transport = nil, _task = nil,
    _paused = false, _drain_waiters = {}, _connection_lost = false,
    _over_ssl = false, _closed = loop:create_future(),
  }, StreamReaderProtocol)
  C._protocol_bind(protocol)  -- data_received of its own (src/streams.c)
  return protocol
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
  self._over_ssl = transport:get_extra_info("sslcontext") ~= nil
  local reader = self._reader
  if reader ~= nil then reader:set_transport(transport) end
  local cb = self._client_connected_cb
  if cb ~= nil then
    local loop = self._loop
    local writer = new_writer(transport, self, reader, loop)
    local task = loop:create_task(cb, reader, writer)
    -- The writer lives while the callback runs, as the parameters of
    -- asyncio's coroutine do: a tail call, or a parameter the callback
    -- overwrites, would leave it to the collector, whose closing of a
    -- dropped writer's transport would cut the connection under it.
    self._task, self._writer = task, writer
    task:add_done_callback(function(t)
      self._writer = nil  -- dropped unclosed, it closes (new_writer)
      client_done(t, transport, loop)
    end)
  end
end

StreamReaderProtocol.data_received = C._protocol_data_received

-- Keep the write side open: the writer decides when to close.  Not over
-- TLS, which has no half-close (asyncio returns false there so that the
-- SSL protocol does not warn that true has no effect).
function StreamReaderProtocol:eof_received()
  local reader = self._reader
  if reader ~= nil then reader:feed_eof() end
  return not self._over_ssl
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
  self._reader, self._task, self._transport, self._writer = nil, nil, nil, nil
  C._protocol_unbind(self)  -- the class's data_received again: no reader now
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

-- 'transport' is read-only, as asyncio's property: the writer holds it
-- as _transport, __index serves it and __newindex refuses it.  The
-- __index function costs the per-message path nothing: write and drain
-- are each writer's own fields (C._writer_bind), never looked up here.
local writer_fields = {transport = "_transport"}

function StreamWriter.__index(self, k)
  local f = writer_fields[k]
  if f ~= nil then return rawget(self, f) end
  return StreamWriter[k]
end

StreamWriter.__newindex = args.read_only(StreamWriter, writer_fields)

function StreamWriter:__tostring()
  local s = "<StreamWriter transport=" .. tostring(self._transport)
  if self._reader ~= nil then s = s .. " reader=" .. tostring(self._reader) end
  return s .. ">"
end

StreamWriter.write = C._writer_write
function StreamWriter:writelines(list)
  -- checked here, so that the error points at the caller, not this line
  return self._transport:writelines({args.joined_lines(list)})
end
function StreamWriter:write_eof() return self._transport:write_eof() end
function StreamWriter:can_write_eof() return self._transport:can_write_eof() end
function StreamWriter:close()
  guarded[self._guard[1]] = nil  -- closed: nothing left for its guard to do
  return self._transport:close()
end
function StreamWriter:is_closing() return self._transport:is_closing() end

function StreamWriter:get_extra_info(name, default)
  args.check_string("get_extra_info", 1, name)
  return self._transport:get_extra_info(name, default)
end

-- writer:wait_closed() (S): until the connection is lost; raises the
-- error it was lost with.
function StreamWriter:wait_closed()
  can_suspend("wait_closed")  -- first, even when closed already (API.md §1)
  return self._protocol._closed:await()
end

-- writer:drain() (S): wait until it is fine to write again.  Raises the
-- reader's exception or, once the connection is lost, ConnectionResetError.
-- C decides the common case (nothing to wait for); the rest is here.
StreamWriter.drain = C._writer_drain

-- Until connection_lost has run (it completes _closed); a waiter of our
-- own, so that cancelling the task does not cancel _closed.
local function wait_connection_lost(protocol)
  local waiter = protocol._loop:create_future()
  -- (with no memory to complete it, waiter fails with that error: tasks.lua)
  local wake = C._guarded(function() C._set_result_unless_done(waiter) end, waiter)
  protocol._closed:add_done_callback(wake)
  local ok, err = pcall(waiter.await, waiter)
  protocol._closed:remove_done_callback(wake)
  if not ok then error(err, 0) end
end

-- lost_coming (from C): eddy's transport has closed its handle, and
-- connection_lost comes from the handle's close callback (to our protocol,
-- unless set_protocol replaced it).  drain() has checked that it may
-- suspend (the RuntimeError naming drain).
function StreamWriter:_drain_wait(lost_coming)
  local protocol = self._protocol
  if lost_coming and not protocol._connection_lost and
     self._transport:get_protocol() == protocol then
    -- asyncio's sleep(0) is enough for its call_soon'd connection_lost;
    -- eddy's comes in a later libuv turn, so wait for it.
    wait_connection_lost(protocol)
  elseif self._transport:is_closing() then
    -- Let connection_lost run: a write/drain loop on a closed connection
    -- would otherwise never see the error.
    eddy.sleep(0)
  end
  if protocol._paused or protocol._connection_lost then protocol:_drain_helper() end
end

local writer_tls_options = {server_hostname = true, ssl_handshake_timeout = true,
                            ssl_shutdown_timeout = true}

-- writer:start_tls(sslcontext, {server_hostname, ssl_handshake_timeout,
-- ssl_shutdown_timeout}) (S): upgrade the connection to TLS in place; the
-- writer (and the reader) go on over the SSL transport.  The server side
-- is the one start_server made.
function StreamWriter:start_tls(sslcontext, opts)
  if not ssl.is_context(sslcontext) then
    argerror("start_tls", 1, "eddy.ssl.SSLContext", sslcontext)
  end
  opts = args.check_options("start_tls", 2, opts, writer_tls_options)
  can_suspend("start_tls")  -- not drain's name for it
  local protocol = self._protocol
  self:drain()
  -- set before the handshake: the peer's close_notify may come with its
  -- last flight, and reach eof_received before start_tls returns
  protocol._over_ssl = true
  local transport = self._loop:start_tls(self._transport, protocol, sslcontext, {
    server_side = protocol._client_connected_cb ~= nil,
    server_hostname = opts.server_hostname,
    ssl_handshake_timeout = opts.ssl_handshake_timeout,
    ssl_shutdown_timeout = opts.ssl_shutdown_timeout,
  })
  self._transport = transport
  guarded[self._guard[1]] = transport
  protocol._transport = transport
  C._writer_bind(self)
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
  args.check_options_table(fname, n, opts, 3)
  local rest = {}
  for k, v in pairs(opts) do
    if k ~= "limit" then rest[k] = v end
  end
  return check_limit(fname, n, opts.limit), rest
end

-- The positional arguments the stream functions pass on to a loop method
-- are checked here, by that method's rules, so that a bad one is blamed on
-- the stream function and its caller (API.md 1), not on the loop method
-- (with its own argument numbers) and a line of this file.
local function check_host(fname, n, host, list_ok)
  if host == nil or type(host) == "string" then return end
  if list_ok and type(host) == "table" and getmetatable(host) == nil then
    for i, h in ipairs(host) do
      if type(h) ~= "string" then
        error(string.format("bad argument #%d to '%s' (host #%d: string expected, got %s)",
                            n, fname, i, args.typename(h)), 3)
      end
    end
    return
  end
  argerror(fname, n, list_ok and "string, list of strings or nil" or "string or nil", host, 2)
end

local function check_port(fname, n, port)
  if port ~= nil and type(port) ~= "string" and math.type(port) ~= "integer" then
    argerror(fname, n, "integer, string or nil", port, 2)
  end
end

local function check_path(fname, n, path)
  if path ~= nil and type(path) ~= "string" then argerror(fname, n, "string or nil", path, 2) end
end

-- A client connection: the loop's 'connect' method with (factory, ...).
local function open(fname, connect, limit, ...)
  can_suspend(fname)
  local loop = current_loop()
  local reader = StreamReader(limit, loop)
  local protocol = StreamReaderProtocol(reader, nil, loop)
  local transport = connect(loop, function() return protocol end, ...)
  local ok, writer = pcall(new_writer, transport, protocol, reader, loop)
  if not ok then  -- out of memory: nobody else has the transport to close
    transport:close()
    error(writer, 0)
  end
  return reader, writer
end

-- eddy.open_connection(host, port, opts) (S) -> reader, writer
function eddy.open_connection(host, port, opts)
  check_host("open_connection", 1, host, false)
  check_port("open_connection", 2, port)
  local limit, rest = split_options("open_connection", 3, opts)
  return open("open_connection", C.Loop.create_connection, limit, host, port, rest)
end

-- eddy.open_unix_connection(path, opts) (S) -> reader, writer
function eddy.open_unix_connection(path, opts)
  check_path("open_unix_connection", 1, path)
  local limit, rest = split_options("open_unix_connection", 2, opts)
  return open("open_unix_connection", C.Loop.create_unix_connection, limit, path, rest)
end

-- A server whose connections run client_connected_cb(reader, writer).
local function serve(fname, create, cb, limit, ...)
  if not callable(cb) then argerror(fname, 1, "callable", cb) end
  can_suspend(fname)
  local loop = current_loop()
  local function factory()
    return StreamReaderProtocol(StreamReader(limit, loop), cb, loop)
  end
  return create(loop, factory, ...)
end

-- eddy.start_server(client_connected_cb, host, port, opts) (S) -> Server
function eddy.start_server(cb, host, port, opts)
  if not callable(cb) then argerror("start_server", 1, "callable", cb) end
  check_host("start_server", 2, host, true)
  check_port("start_server", 3, port)
  local limit, rest = split_options("start_server", 4, opts)
  return serve("start_server", C.Loop.create_server, cb, limit, host, port, rest)
end

-- eddy.start_unix_server(client_connected_cb, path, opts) (S) -> Server
function eddy.start_unix_server(cb, path, opts)
  if not callable(cb) then argerror("start_unix_server", 1, "callable", cb) end
  check_path("start_unix_server", 2, path)
  local limit, rest = split_options("start_unix_server", 3, opts)
  return serve("start_unix_server", C.Loop.create_unix_server, cb, limit, path, rest)
end

-- }=================================================

return eddy
