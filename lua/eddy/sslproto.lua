-- eddy.sslproto: TLS between a transport and the application's protocol,
-- asyncio's sslproto.py (3.11+) on eddy's mbedTLS engine (src/tls.c).
--
-- SSLProtocol is the protocol of the plain transport: ciphertext comes in
-- through data_received, is fed to the connection's TLS object, and the
-- plaintext goes to the application protocol; what the application
-- writes on its SSLTransport is encrypted and written to the plain
-- transport.  The states are asyncio's:
--
--   UNWRAPPED -> DO_HANDSHAKE -> WRAPPED -> FLUSHING -> SHUTDOWN -> UNWRAPPED
--
-- The application's connection_made comes once the handshake is done.
-- Closing sends close_notify and waits (ssl_shutdown_timeout) for the
-- peer's before closing the plain transport.  Flow control passes
-- through: the plain transport's pause_writing/resume_writing reach the
-- application protocol, and pausing the SSLTransport's reading pauses the
-- plain transport's.

local eddy = require "eddy"
local args = require "eddy.args"
local errors = require "eddy.errors"
local ssl = require "eddy.ssl"

local sslproto = {}

local HANDSHAKE_TIMEOUT = 60.0  -- asyncio's constants.SSL_HANDSHAKE_TIMEOUT
local SHUTDOWN_TIMEOUT = 30.0   -- and SSL_SHUTDOWN_TIMEOUT

-- {================================================= SSLTransport

-- What the application sees: a transport whose bytes are plaintext.
local SSLTransport = {}
SSLTransport.__index = SSLTransport
SSLTransport.__name = "eddy.SSLTransport"

function SSLTransport:__tostring()
  return string.format("<eddy.SSLTransport %s>", self._closed and "closed" or "open")
end

local function new_transport(proto)
  return setmetatable({_proto = proto, _closed = false}, SSLTransport)
end

function SSLTransport:get_extra_info(name, default)
  args.check_string("get_extra_info", 1, name)
  return self._proto:_get_extra_info(name, default)
end

function SSLTransport:set_protocol(protocol)
  args.check_protocol("set_protocol", 1, protocol)
  self._proto._app_protocol = protocol
end
function SSLTransport:get_protocol() return self._proto._app_protocol end
function SSLTransport:is_closing() return self._closed end

-- close(): flush, send close_notify, and close once the peer answers
-- (or ssl_shutdown_timeout passes).
function SSLTransport:close()
  if not self._closed then
    self._closed = true
    self._proto:_start_shutdown()
  end
end

function SSLTransport:abort()
  self._closed = true
  self._proto:_abort()
end

function SSLTransport:is_reading() return not self._proto._app_reading_paused end
function SSLTransport:pause_reading() self._proto:_pause_reading() end
function SSLTransport:resume_reading() self._proto:_resume_reading() end

-- The write buffer is the plain transport's: records are made as soon as
-- the application writes.  Its limits can still be read and set once
-- the connection is lost, as asyncio's and the plain transports' can.
local function plain(self) return self._proto._plain end

function SSLTransport:set_write_buffer_limits(high, low)
  if high ~= nil then args.check_integer("set_write_buffer_limits", 1, high) end
  if low ~= nil then args.check_integer("set_write_buffer_limits", 2, low) end
  return plain(self):set_write_buffer_limits(high, low)
end

function SSLTransport:get_write_buffer_limits()
  return plain(self):get_write_buffer_limits()
end

function SSLTransport:get_write_buffer_size()
  local t = self._proto._transport
  return t == nil and 0 or t:get_write_buffer_size()
end

-- write(data): a string or an eddy.Buffer, as the plain transports take.
function SSLTransport:write(data)
  if args.typename(data) == "eddy.Buffer" then data = data:tostring() end
  if type(data) ~= "string" then error(args.message("write", 1, "string or eddy.Buffer", data), 2) end
  if #data > 0 then self._proto:_write_appdata(data) end
end

-- writelines(list): one write of the concatenation, as the plain
-- transports' (elements: strings or eddy.Buffers).
function SSLTransport:writelines(list)
  self:write(args.joined_lines(list))
end

-- loop:sendfile's send step (src/sendfile.c runs only its fallback on
-- an SSL transport, as asyncio's _SendfileMode.FALLBACK): write a chunk
-- of the file, then wait while the plain transport's writing is paused.
function SSLTransport._sendfile_write(_, self, chunk)
  local proto = self._proto
  if self._closed or proto._transport == nil then
    error(errors.ConnectionError("Connection is closed by peer"), 0)
  end
  self:write(chunk)
  proto:_wait_writable()
end

-- TLS has no half-close: close_notify ends both directions.
function SSLTransport:can_write_eof() return false end
function SSLTransport:write_eof()
  error(errors.RuntimeError("SSL doesn't support half-closes"), 2)
end

-- }=================================================

-- {================================================= SSLProtocol

local SSLProtocol = {}
SSLProtocol.__index = SSLProtocol

-- sslproto.new(loop, app_protocol, sslcontext, waiter, server_side,
--   server_hostname, handshake_timeout, shutdown_timeout,
--   call_connection_made) -> SSLProtocol.  waiter (a future or nil) gets
-- nil once the handshake is done, or the error that ended it.
function sslproto.new(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
                      handshake_timeout, shutdown_timeout, call_connection_made)
  local self = setmetatable({
    _loop = loop, _app_protocol = app_protocol, _sslcontext = sslcontext,
    _waiter = waiter, _server_side = server_side,
    _handshake_timeout = handshake_timeout or HANDSHAKE_TIMEOUT,
    _shutdown_timeout = shutdown_timeout or SHUTDOWN_TIMEOUT,
    -- start_tls (call_connection_made false): the protocol had its
    -- connection_made on the plain transport, so it is owed a
    -- connection_lost even if the handshake fails, as asyncio's.
    _state = "UNWRAPPED", _app_state = call_connection_made == false and "CON_MADE" or "INIT",
    _app_reading_paused = false, _eof_received = false,
    _close_notify_sent = false, _peer_closed = false,
    _extra = {sslcontext = sslcontext},
  }, SSLProtocol)
  self._tls = sslcontext:_wrap(server_side, server_hostname)
  self._extra.ssl_object = self._tls
  self._app_transport = new_transport(self)
  return self
end

function SSLProtocol:_get_extra_info(name, default)
  local v = self._extra[name]
  if v ~= nil then return v end
  if self._transport ~= nil then return self._transport:get_extra_info(name, default) end
  return default
end

local function wakeup_waiter(self, exc)
  local waiter = self._waiter
  if waiter == nil then return end
  self._waiter = nil
  if not waiter:cancelled() and not waiter:done() then
    if exc == nil then waiter:set_result(nil) else waiter:set_exception(exc) end
  end
end

-- Wake a _wait_writable (the plain transport resumed writing, or is gone).
local function wake_writers(self, exc)
  local waiter = self._writable
  self._writable = nil
  if waiter ~= nil and not waiter:done() then
    if exc == nil then waiter:set_result(nil) else waiter:set_exception(exc) end
  end
end

-- Send what the engine produced.
local function flush(self)
  local out = self._tls:take()
  if out ~= nil and self._transport ~= nil then self._transport:write(out) end
end

local function cancel_timer(self, name)
  local h = self[name]
  if h ~= nil then
    h:cancel()
    self[name] = nil
  end
end

-- Close the plain transport at once; connection_lost gets 'exc'
-- (asyncio's transport._force_close).
local function force_close(self, exc)
  if self._transport ~= nil then
    self._fatal_exc = self._fatal_exc or exc
    self._transport:abort()
  end
end

-- asyncio's _fatal_error: report (OSErrors only in debug mode, as they
-- are the peer's doing) and close the plain transport at once.
function SSLProtocol:_fatal_error(exc, message)
  local transport = self._transport
  if errors.is(exc, errors.OSError) then
    if self._loop:get_debug() then
      warn(tostring(message or "Fatal error on SSL protocol"), ": ", tostring(exc))
    end
  else
    self._loop:call_exception_handler {
      message = message or "Fatal error on SSL protocol",
      exception = exc, transport = transport, protocol = self,
    }
  end
  force_close(self, exc)
end

function SSLProtocol:connection_made(transport)
  self._transport = transport
  self._plain = transport  -- (kept after connection_lost, for the limits)
  self._state = "DO_HANDSHAKE"
  self._handshake_start = self._loop:time()
  self._handshake_timer = self._loop:call_later(self._handshake_timeout, function()
    self._handshake_timer = nil
    if self._state == "DO_HANDSHAKE" then
      local exc = errors.ConnectionAbortedError(string.format(
        "SSL handshake is taking longer than %s seconds: aborting the connection",
        tostring(self._handshake_timeout)))
      self:_fatal_error(exc)
      -- connection_lost wakes the waiter too, but it reaches us only while
      -- we are still the transport's protocol (not after a second start_tls
      -- or a set_protocol on it)
      wakeup_waiter(self, exc)
    end
  end)
  self:_do_handshake()
end

function SSLProtocol:_do_handshake()
  local ok, done = pcall(self._tls.handshake, self._tls)
  flush(self)  -- the alert of a failure too
  if not ok then
    self:_on_handshake_complete(done)
  elseif done then
    self:_on_handshake_complete(nil)
  end
end

function SSLProtocol:_on_handshake_complete(exc)
  cancel_timer(self, "_handshake_timer")
  if exc ~= nil then
    self._state = "UNWRAPPED"
    local message = errors.is(exc, errors.SSLCertVerificationError)
      and "SSL handshake failed on verifying the certificate" or "SSL handshake failed"
    self:_fatal_error(exc, message)
    wakeup_waiter(self, exc)
    return
  end
  local tls = self._tls
  self._state = "WRAPPED"
  if self._loop:get_debug() then
    warn(string.format("%s: SSL handshake took %.1f ms", tostring(self._app_transport),
                       (self._loop:time() - self._handshake_start) * 1e3))
  end
  self._extra.peercert = tls:getpeercert()
  self._extra.cipher = {tls:cipher()}  -- an array, as API.md §7 has tuple extras
  -- (start_tls: the protocol has had its connection_made already)
  if self._app_state == "INIT" then
    self._app_state = "CON_MADE"
    local app = self._app_protocol
    if app.connection_made ~= nil then app:connection_made(self._app_transport) end
  end
  wakeup_waiter(self, nil)
  self:_do_read()  -- application data that came with the last flight
end

-- Go on with what the state waits for, now that there may be input.
local function proceed(self)
  local state = self._state
  if state == "DO_HANDSHAKE" then
    self:_do_handshake()
  elseif state == "WRAPPED" then
    self:_do_read()
  elseif state == "FLUSHING" then
    self:_do_flush()
  elseif state == "SHUTDOWN" then
    self:_do_shutdown()
  end
end

function SSLProtocol:data_received(data)
  local ok, err = pcall(self._tls.feed, self._tls, data)
  if not ok then return self:_fatal_error(err) end
  proceed(self)
end

function SSLProtocol:_call_eof_received()
  if self._app_state == "CON_MADE" then
    self._app_state = "EOF"
    local eof = self._app_protocol.eof_received
    if eof ~= nil then
      local ok, res = pcall(eof, self._app_protocol)
      if not ok then
        self:_fatal_error(res, "Error calling eof_received()")
      elseif res then  -- asyncio's logger.warning: TLS has no half-close
        warn("returning true from eof_received() has no effect when using ssl")
      end
    end
  end
end

-- Plaintext to a protocol with data_received: all there is, at once
-- (asyncio's _do_read__copied).  Returns whether close_notify came.
local function read_copied(self, app)
  local data, closed = self._tls:read()
  if #data > 0 and self._app_state == "CON_MADE" and app.data_received ~= nil then
    app:data_received(data)
  end
  return closed
end

-- The size a BufferedProtocol's get_buffer is asked for: a TLS record's
-- plaintext at most.
local RECORD_SIZE = 16384

-- Plaintext to a BufferedProtocol (get_buffer/buffer_updated), as the
-- plain transports feed one: into its buffer; a full buffer may leave
-- more, read on the next turn (asyncio's _do_read__buffered).
local function read_buffered(self, app)
  local buf = app:get_buffer(RECORD_SIZE)
  if args.typename(buf) ~= "eddy.Buffer" or #buf == 0 then
    error(errors.RuntimeError("get_buffer() returned " ..
      (args.typename(buf) == "eddy.Buffer" and "an empty buffer" or "no eddy.Buffer")), 0)
  end
  local n, closed = self._tls:read_into(buf)
  if n > 0 and self._app_state == "CON_MADE" then app:buffer_updated(n) end
  if n == #buf and not closed then self._loop:call_soon(SSLProtocol._do_read, self) end
  return closed
end

-- The application data fed so far, to the application (unless it paused
-- reading); the peer's close_notify starts our shutdown.  What fails here,
-- the TLS record or the protocol's callback, closes the connection
-- (asyncio's _do_read), whichever path (data_received, resume_reading,
-- the end of the handshake) came here.
function SSLProtocol:_do_read()
  if self._app_reading_paused or (self._state ~= "WRAPPED" and self._state ~= "FLUSHING") then
    return
  end
  local app = self._app_protocol
  local ok, closed = pcall(app.get_buffer ~= nil and read_buffered or read_copied, self, app)
  flush(self)
  if not ok then return self:_fatal_error(closed, "Fatal error on SSL protocol") end
  if closed and not self._peer_closed then
    self._peer_closed = true
    self:_call_eof_received()
    self:_start_shutdown()
  end
end

-- The application closed (or the peer did): deliver what is left, then
-- close_notify.
function SSLProtocol:_start_shutdown()
  local state = self._state
  if state == "FLUSHING" or state == "SHUTDOWN" or state == "UNWRAPPED" then return end
  self._app_transport._closed = true
  if state == "DO_HANDSHAKE" then
    self:_abort()
    return
  end
  self._state = "FLUSHING"
  self._shutdown_timer = self._loop:call_later(self._shutdown_timeout, function()
    self._shutdown_timer = nil
    if self._state == "FLUSHING" or self._state == "SHUTDOWN" then
      force_close(self, errors.TimeoutError("SSL shutdown timed out"))
    end
  end)
  self:_do_flush()
end

function SSLProtocol:_do_flush()
  self:_do_read()
  if self._state ~= "FLUSHING" then return end
  self._state = "SHUTDOWN"
  self:_do_shutdown()
end

-- Send close_notify once; done when the peer's came (or its end of the
-- connection did).  Records after our close_notify are dropped, as
-- SSL_shutdown drops them.  A peer that ended its side of the connection
-- without close_notify gets none either: asyncio unwraps only
-- "if not self._eof_received", and the peer may still be reading.
function SSLProtocol:_do_shutdown()
  local tls = self._tls
  if not self._close_notify_sent and not self._eof_received then
    self._close_notify_sent = true
    local ok, err = pcall(tls.close_notify, tls)
    if not ok then return self:_on_shutdown_complete(err) end
  end
  if not self._peer_closed and not self._eof_received then
    local ok, err, closed = pcall(tls.read, tls)
    if not ok then
      flush(self)
      return self:_on_shutdown_complete(err)
    end
    self._peer_closed = closed
  end
  flush(self)
  if self._peer_closed or self._eof_received then
    self:_call_eof_received()
    self:_on_shutdown_complete(nil)
  end
end

function SSLProtocol:_on_shutdown_complete(exc)
  cancel_timer(self, "_shutdown_timer")
  if exc ~= nil then
    self:_fatal_error(exc)
  elseif self._transport ~= nil then
    self._transport:close()
  end
end

function SSLProtocol:_abort()
  self._app_transport._closed = true
  if self._transport ~= nil then self._transport:abort() end
end

-- The plain transport's end of input, with or without close_notify.
function SSLProtocol:eof_received()
  self._eof_received = true
  local state = self._state
  if state == "DO_HANDSHAKE" then
    self:_on_handshake_complete(errors.ConnectionResetError(
      "Connection lost during the SSL handshake"))
  elseif state == "WRAPPED" then
    self._state = "FLUSHING"
    if self._app_reading_paused then return true end
    self:_do_flush()
  elseif state == "FLUSHING" then
    self._state = "SHUTDOWN"
    self:_do_shutdown()
  elseif state == "SHUTDOWN" then
    self:_do_shutdown()
  end
end

function SSLProtocol:connection_lost(exc)
  exc = exc or self._fatal_exc
  self._app_transport._closed = true
  if self._state ~= "DO_HANDSHAKE" and (self._app_state == "CON_MADE" or self._app_state == "EOF") then
    self._app_state = "CON_LOST"
    self._loop:_call_method_soon(self._app_protocol, "connection_lost", exc)
  end
  if self._waiter ~= nil and exc == nil then
    exc = errors.ConnectionResetError("Connection lost during the SSL handshake")
  end
  self._state = "UNWRAPPED"
  self._transport = nil
  wake_writers(self, errors.ConnectionError("Connection is closed by peer"))
  cancel_timer(self, "_handshake_timer")
  cancel_timer(self, "_shutdown_timer")
  wakeup_waiter(self, exc)
end

function SSLProtocol:pause_writing()
  self._writing_paused = true
  local app = self._app_protocol
  if app.pause_writing ~= nil then app:pause_writing() end
end

function SSLProtocol:resume_writing()
  self._writing_paused = false
  wake_writers(self, nil)
  local app = self._app_protocol
  if app.resume_writing ~= nil then app:resume_writing() end
end

-- Wait (suspending) while the plain transport has paused our writing.
function SSLProtocol:_wait_writable()
  while self._writing_paused do
    if self._transport == nil then
      error(errors.ConnectionError("Connection is closed by peer"), 0)
    end
    self._writable = self._writable or self._loop:create_future()
    self._writable:await()
  end
end

function SSLProtocol:_write_appdata(data)
  local state = self._state
  if state ~= "WRAPPED" then
    if state == "DO_HANDSHAKE" then
      error(errors.RuntimeError("cannot write before the SSL handshake is done"), 3)
    end
    return  -- closing or closed: dropped, as asyncio drops it
  end
  local ok, err = pcall(self._tls.write, self._tls, data)
  flush(self)
  if not ok then self:_fatal_error(err, "Fatal error on SSL protocol") end
end

function SSLProtocol:_pause_reading()
  if self._app_reading_paused then return end
  self._app_reading_paused = true
  if self._transport ~= nil and not self._transport:is_closing() then
    self._transport:pause_reading()
  end
end

function SSLProtocol:_resume_reading()
  if not self._app_reading_paused then return end
  self._app_reading_paused = false
  if self._transport ~= nil and not self._transport:is_closing() then
    self._transport:resume_reading()
  end
  self._loop:call_soon(proceed, self)
end

-- }=================================================

-- {================================================= Loop helpers

-- The context an ssl= option stands for: true is the default client
-- context (no hostname check when there is no name to check; "" checks
-- none anyway).
function sslproto.context_of(fname, value, server_side, server_hostname)
  if ssl.is_context(value) then return value end
  if value == true and not server_side then
    local ctx = ssl.create_default_context()
    if server_hostname == nil then ctx.check_hostname = false end
    return ctx
  end
  error(string.format("bad option 'ssl' to '%s' (%s expected, got %s)", fname,
                      server_side and "eddy.ssl.SSLContext" or "eddy.ssl.SSLContext or true",
                      args.typename(value)), 3)
end

-- Check an ssl_*_timeout option; 'level' is the user's call, for error.
-- NaN is no positive number either (asyncio's `<= 0` lets it through to
-- call_later).
function sslproto.check_timeout(name, v, level)
  if v == nil then return nil end
  if type(v) ~= "number" then
    error(string.format("bad option '%s' (number expected, got %s)", name,
                        args.typename(v)), level + 1)
  end
  if not (v > 0) then
    error(errors.ValueError(string.format("%s should be a positive number, got %s", name,
                                          tostring(v))), level + 1)
  end
  return v
end

-- Run the handshake of a new client or start_tls connection: wrap
-- 'app_protocol' on 'transport', wait for the handshake, return the
-- SSLTransport.  On failure the plain transport is closed, except when
-- start_tls (call_connection_made false) could not wrap at all (a context
-- of the wrong side): asyncio's fails in SSLProtocol() then, before it
-- touches the transport.
function sslproto.client_handshake(loop, transport, start, app_protocol, ctx, server_side,
                                   server_hostname, opts, call_connection_made)
  local waiter = loop:create_future()
  local wrapped, proto = pcall(sslproto.new, loop, app_protocol, ctx, waiter, server_side,
                               server_hostname, opts.ssl_handshake_timeout,
                               opts.ssl_shutdown_timeout, call_connection_made)
  if not wrapped then
    if call_connection_made ~= false then transport:close() end
    error(proto, 0)
  end
  local ok, err = pcall(function()
    start(proto)
    waiter:await()
  end)
  if not ok then
    transport:close()
    error(err, 0)
  end
  return proto._app_transport
end

sslproto.SSLProtocol = SSLProtocol
sslproto.SSLTransport = SSLTransport

return sslproto
