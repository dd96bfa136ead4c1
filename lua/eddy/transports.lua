-- eddy.transports: the Lua half of the loop's network connections and
-- servers (asyncio's base_events.py: create_connection with happy
-- eyeballs, create_server, the UNIX variants, connect_accepted_socket),
-- and the suspending methods of Server.  The I/O itself is C: stream
-- transports (src/stream.c), connect attempts and bound sockets
-- (src/tcp.c, src/unix.c), listening and accepting (src/server.c).

local eddy = require "eddy"
local args = require "eddy.args"
local errors = require "eddy.errors"
local socket = require "eddy.socket"
local ssl = require "eddy.ssl"
local sslproto = require "eddy.sslproto"
local C = eddy._core
local Loop = C.Loop
local Server = C.Server
local can_suspend = C._can_suspend

local AF_UNSPEC, AF_INET, AF_INET6 = socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6
local SOCK_STREAM, AI_PASSIVE = socket.SOCK_STREAM, socket.AI_PASSIVE

eddy.Buffer = C.Buffer

-- {================================================= Arguments

local typename, callable = args.typename, args.callable

-- An argument error blaming the caller of the loop method: called from
-- the method itself (level 3), or from a helper it calls (level 4).
local function argerror(fname, n, expected, v, level)
  error(args.message(fname, n, expected, v), level or 3)
end

local function set(...)
  local s = {}
  for _, k in ipairs {...} do s[k] = true end
  return s
end

-- The SSLContext of opts.ssl (nil without TLS), the TLS options checked
-- as asyncio checks them.
local function check_ssl(fname, opts, server_side, default_hostname)
  local with_ssl = opts.ssl ~= nil and opts.ssl ~= false
  for _, k in ipairs {"server_hostname", "ssl_handshake_timeout", "ssl_shutdown_timeout"} do
    if opts[k] ~= nil and not with_ssl then
      error(errors.ValueError(k .. " is only meaningful with ssl"), 3)
    end
  end
  if not with_ssl then return nil end
  local hostname = opts.server_hostname
  if hostname ~= nil and type(hostname) ~= "string" then
    error(string.format("bad option 'server_hostname' to '%s' (string expected, got %s)",
                        fname, typename(hostname)), 3)
  end
  sslproto.check_timeout("ssl_handshake_timeout", opts.ssl_handshake_timeout, 3)
  sslproto.check_timeout("ssl_shutdown_timeout", opts.ssl_shutdown_timeout, 3)
  return sslproto.context_of(fname, opts.ssl, server_side, hostname or default_hostname)
end

local function check_port(fname, n, port)
  if port == nil or type(port) == "string" then return port end
  if math.type(port) ~= "integer" then argerror(fname, n, "integer, string or nil", port, 4) end
  if port < 0 or port > 65535 then
    error(errors.ValueError("port must be 0-65535."), 3)
  end
  return port
end

-- The integer options 'names' of opts (nil or an integer each).
local function check_int_options(fname, n, opts, names)
  for _, k in ipairs(names) do
    local v = opts[k]
    if v ~= nil and math.type(v) ~= "integer" then
      argerror(fname, n, "integer option '" .. k .. "'", v, 4)
    end
  end
end

local function check_factory(fname, f)
  if not callable(f) then argerror(fname, 1, "callable", f, 4) end
end

-- The descriptor of a 'sock' option: an eddy.socket (or anything with
-- :fileno()); the transport or server owns it from now on, so a socket
-- that can be detached is.
-- 'unix': the UNIX variants want an AF_UNIX socket (asyncio's check).
-- 'n': the socket is positional argument n, not the option.
local function take_socket(fname, sock, unix, n)
  local ok, fd = pcall(function() return sock:fileno() end)
  if not ok or math.type(fd) ~= "integer" or fd < 0 then
    local what = n and "argument #" .. n or "option 'sock'"
    error(string.format("bad %s to '%s' (socket expected, got %s)",
                        what, fname, typename(sock)), 3)
  end
  local eddy_socket = getmetatable(sock) ~= nil and
                      rawequal(getmetatable(sock).__name, "eddy.socket")
  local stype = eddy_socket and sock.type or SOCK_STREAM
  if unix and (stype ~= SOCK_STREAM or (eddy_socket and sock.family ~= socket.AF_UNIX)) then
    error(errors.ValueError("A UNIX Domain Stream Socket was expected, got " .. tostring(sock)), 3)
  elseif stype ~= SOCK_STREAM then
    error(errors.ValueError("A Stream Socket was expected, got " .. tostring(sock)), 3)
  end
  if type(sock.detach) == "function" then sock:detach() end
  return fd
end

-- Call the protocol factory; the result must be a protocol object.
local function new_protocol(factory)
  local protocol = factory()
  local t = type(protocol)
  if t ~= "table" and t ~= "userdata" then
    error(errors.RuntimeError("protocol_factory must return a protocol (table or userdata), got " .. t), 0)
  end
  return protocol
end

-- Give the new transport its protocol: connection_made, then reading.
-- The factory's error, or a protocol whose method lookups raise, closes
-- the transport.  Then the caller resumes one iteration later, as
-- asyncio's, whose transport sets its waiter in the iteration that calls
-- connection_made: a connection_lost that connection_made brought about
-- (it closed the transport) has run by then.  Cancelled meanwhile, the
-- transport closes (asyncio's _create_connection_transport).
-- (No closure is made between the transport and the protected calls: out
-- of memory there, it would stay open.)
local function start_protocol(transport, factory)
  local protocol = new_protocol(factory)
  transport:_start(protocol)
  return protocol
end

local function sleep_then(protocol)
  eddy.sleep(0)
  return protocol
end

local function start_transport(transport, factory)
  local ok, protocol = pcall(start_protocol, transport, factory)
  if ok then ok, protocol = pcall(sleep_then, protocol) end
  if not ok then
    transport:close()
    error(protocol, 0)
  end
  return transport, protocol
end

-- start_transport with TLS: the application protocol's connection_made
-- comes after the handshake, and the transport returned is the
-- SSLTransport.
local function start_tls_transport(loop, transport, factory, ctx, server_side, hostname, opts)
  local ok, protocol = pcall(new_protocol, factory)
  if not ok then
    transport:close()
    error(protocol, 0)
  end
  local start = function(ssl_protocol) transport:_start(ssl_protocol) end
  return sslproto.client_handshake(loop, transport, start, protocol, ctx, server_side,
                                   hostname, opts), protocol
end

-- Start 'transport' for the caller of a connecting method: with TLS
-- when ctx is a context.
local function start_connection(loop, transport, factory, ctx, server_side, hostname, opts)
  if ctx == nil then return start_transport(transport, factory) end
  return start_tls_transport(loop, transport, factory, ctx, server_side, hostname, opts)
end

-- The protocol factory of a TLS server: each connection's protocol is
-- an SSLProtocol around the application's.
local function tls_server_factory(loop, factory, ctx, opts)
  return function()
    return sslproto.new(loop, new_protocol(factory), ctx, nil, true, nil,
                        opts.ssl_handshake_timeout, opts.ssl_shutdown_timeout)
  end
end

-- }=================================================

-- {================================================= Resolving

-- asyncio's _ipaddr_info: a numeric host needs no resolver round trip.
local function ipaddr_info(host, port, family)
  if type(host) ~= "string" then return nil end
  local af = C.ip_family(host)
  if af == nil or (family ~= AF_UNSPEC and family ~= af) then return nil end
  if type(port) == "string" then
    port = math.tointeger(tonumber(port))
    if port == nil then return nil end
  end
  return {{family = af, type = SOCK_STREAM, proto = 6, canonname = "",
           sockaddr = {host, port or 0}}}
end

-- asyncio's _ensure_resolved: addrinfo entries for a stream socket.
local function resolve(loop, host, port, family, proto, flags)
  local infos = ipaddr_info(host, port, family)
  if infos == nil then
    infos = loop:getaddrinfo(host, port, {family = family, type = SOCK_STREAM,
                                          proto = proto, flags = flags})
  end
  if #infos == 0 then error(errors.OSError("getaddrinfo() returned empty list"), 0) end
  return infos
end

-- asyncio's _interleave_addrinfos: alternate address families, the
-- first family 'first_count' times first.
local function interleave(infos, first_count)
  local by_family, order = {}, {}
  for _, info in ipairs(infos) do
    local list = by_family[info.family]
    if list == nil then
      list = {}
      by_family[info.family] = list
      order[#order + 1] = info.family
    end
    list[#list + 1] = info
  end
  local result, lists = {}, {}
  for _, f in ipairs(order) do lists[#lists + 1] = by_family[f] end
  local first = lists[1]
  for i = 1, math.min(first_count - 1, #first) do result[#result + 1] = first[i] end
  local rest = {{table.unpack(first, first_count, #first)}}
  for i = 2, #lists do rest[#rest + 1] = lists[i] end
  local i = 1
  repeat
    local any = false
    for _, list in ipairs(rest) do
      if list[i] ~= nil then
        result[#result + 1] = list[i]
        any = true
      end
    end
    i = i + 1
  until not any
  return result
end

-- }=================================================

-- {================================================= create_connection

-- One attempt (asyncio's _connect_sock): a connected transport.
local function connect_one(loop, info, laddr_infos)
  local laddr = nil
  if laddr_infos ~= nil then
    for _, l in ipairs(laddr_infos) do
      if l.family == info.family then
        laddr = l.sockaddr
        break
      end
    end
    if laddr == nil then
      error(errors.OSError(string.format("no matching local address with family=%d found",
                                         info.family)), 0)
    end
  end
  local holder = {}
  local ok, res = pcall(loop._tcp_connect, loop, info.sockaddr, laddr, holder)
  if not ok then
    -- cancelled once connected, before this task resumed: nobody else
    -- will close it (a failed attempt is closed already: abort is a no-op)
    if holder[1] ~= nil then holder[1]:abort() end
    error(res, 0)
  end
  return res
end

-- asyncio's staggered_race: attempt i + 1 starts when attempt i fails or
-- 'delay' seconds after it started; the first transport wins and every
-- other attempt is cancelled (a late winner is closed).  Returns the
-- winner or nil, and the errors of the attempts.
local function staggered_race(loop, attempts, delay)
  local n, started, running = #attempts, 0, 0
  local winner, waiter
  local tasks, errs = {}, {}
  local function wake(reason)
    if waiter ~= nil and not waiter:done() then waiter:set_result(reason) end
  end
  local function attempt(i)
    local ok, res = pcall(attempts[i])
    running = running - 1
    if ok then
      if winner == nil then winner = res else res:close() end
      wake("won")
    else
      errs[#errs + 1] = res
      wake(i)
    end
  end
  local ok, err = pcall(function()
    while winner == nil do
      if started < n then
        started, running = started + 1, running + 1
        tasks[started] = loop:create_task(attempt, started)
      elseif running == 0 then
        return
      end
      local deadline = loop:time() + delay
      while winner == nil do
        waiter = loop:create_future()
        local timer = started < n and loop:call_at(deadline, wake, "timer") or nil
        local reason = waiter:await()
        if timer ~= nil then timer:cancel() end
        if reason == "timer" or reason == started or running == 0 then break end
      end
    end
  end)
  for _, t in ipairs(tasks) do
    if not t:done() then t:cancel() end
  end
  if not ok then
    if winner ~= nil then winner:close() end
    error(err, 0)
  end
  return winner, errs
end

-- The error create_connection raises when every attempt failed.
local function connection_error(exceptions, all_errors)
  if all_errors then
    return errors.ExceptionGroup("create_connection failed", exceptions)
  end
  if #exceptions == 1 then return exceptions[1] end
  local model = tostring(exceptions[1])
  local texts, same = {}, true
  for i, e in ipairs(exceptions) do
    texts[i] = tostring(e)
    if texts[i] ~= model then same = false end
  end
  if same then return exceptions[1] end
  return errors.OSError("Multiple exceptions: " .. table.concat(texts, ", "))
end

local connection_options = set("ssl", "family", "proto", "flags", "sock", "local_addr",
  "server_hostname", "ssl_handshake_timeout", "ssl_shutdown_timeout",
  "happy_eyeballs_delay", "interleave", "all_errors")

-- loop:create_connection(protocol_factory, host, port, opts) -> transport, protocol
function Loop:create_connection(protocol_factory, host, port, opts)
  local fname = "create_connection"
  can_suspend(fname)
  check_factory(fname, protocol_factory)
  if host ~= nil and type(host) ~= "string" then argerror(fname, 2, "string or nil", host) end
  port = check_port(fname, 3, port)
  opts = args.check_options(fname, 4, opts, connection_options)
  local ctx = check_ssl(fname, opts, false, host)
  local hostname = opts.server_hostname
  if ctx ~= nil and hostname == nil then
    if host == nil then
      error(errors.ValueError("You must set server_hostname when using ssl without a host"), 2)
    end
    hostname = host
  end
  check_int_options(fname, 4, opts, {"family", "proto", "flags"})
  local family = opts.family or AF_UNSPEC
  local delay, inter = opts.happy_eyeballs_delay, opts.interleave
  if delay ~= nil and type(delay) ~= "number" then
    argerror(fname, 4, "number option 'happy_eyeballs_delay'", delay)
  end
  if inter ~= nil and math.type(inter) ~= "integer" then
    argerror(fname, 4, "integer option 'interleave'", inter)
  end
  if delay ~= nil and inter == nil then inter = 1 end
  local la = opts.local_addr
  if la ~= nil and (type(la) ~= "table" or (la[1] ~= nil and type(la[1]) ~= "string")) then
    argerror(fname, 4, "{host, port} option 'local_addr'", la)
  end
  if host ~= nil or port ~= nil then
    if opts.sock ~= nil then
      error(errors.ValueError("host/port and sock can not be specified at the same time"), 2)
    end
    local infos = resolve(self, host, port, family, opts.proto, opts.flags)
    local laddr_infos
    if la ~= nil then
      laddr_infos = resolve(self, la[1], check_port(fname, 4, la[2]), family, opts.proto,
                            opts.flags)
    end
    if inter ~= nil and inter > 0 then infos = interleave(infos, inter) end
    local attempts = {}
    for i, info in ipairs(infos) do
      attempts[i] = function() return connect_one(self, info, laddr_infos) end
    end
    local transport, exceptions
    if delay == nil then
      exceptions = {}
      for _, a in ipairs(attempts) do
        local ok, res = pcall(a)
        if ok then transport = res break end
        if not errors.is(res, errors.OSError) then error(res, 0) end
        exceptions[#exceptions + 1] = res
      end
    else
      transport, exceptions = staggered_race(self, attempts, delay)
      if transport == nil then  -- as asyncio: only then do the losers' errors matter
        for _, e in ipairs(exceptions) do
          if not errors.is(e, errors.OSError) then error(e, 0) end
        end
      end
    end
    if transport == nil then error(connection_error(exceptions, opts.all_errors), 0) end
    return start_connection(self, transport, protocol_factory, ctx, false, hostname, opts)
  end
  if opts.sock == nil then
    error(errors.ValueError("host and port was not specified and no sock specified"), 2)
  end
  local fd = take_socket(fname, opts.sock)
  return start_connection(self, self:_transport_from_fd(fd), protocol_factory, ctx, false,
                          hostname, opts)
end

-- Connect to the UNIX socket at 'path'.  A listener whose backlog is full
-- makes a non-blocking connect() fail with EAGAIN, where a blocking one
-- would wait: wait too, and try again (asyncio would hand back a socket
-- that never got connected).
local function unix_connect(loop, path)
  local delay = 0
  while true do
    local ok, res = pcall(loop._unix_connect, loop, path)
    if ok then return res end
    if not (errors.is(res, errors.OSError) and res.code == "EAGAIN") then error(res, 0) end
    eddy.sleep(delay)
    delay = math.min(math.max(delay * 2, 0.001), 0.05)
  end
end

local unix_connection_options = set("ssl", "sock", "server_hostname",
  "ssl_handshake_timeout", "ssl_shutdown_timeout")

-- loop:create_unix_connection(protocol_factory, path, opts) -> transport, protocol
function Loop:create_unix_connection(protocol_factory, path, opts)
  local fname = "create_unix_connection"
  can_suspend(fname)
  check_factory(fname, protocol_factory)
  opts = args.check_options(fname, 3, opts, unix_connection_options)
  local ctx = check_ssl(fname, opts, false)
  if ctx ~= nil and opts.server_hostname == nil then
    error(errors.ValueError("you have to pass server_hostname when using ssl"), 2)
  end
  local transport
  if path ~= nil then
    if type(path) ~= "string" then argerror(fname, 2, "string or nil", path) end
    if opts.sock ~= nil then
      error(errors.ValueError("path and sock can not be specified at the same time"), 2)
    end
    transport = unix_connect(self, path)
  else
    if opts.sock == nil then error(errors.ValueError("no path and sock were specified"), 2) end
    transport = self:_transport_from_fd(take_socket(fname, opts.sock, true))
  end
  return start_connection(self, transport, protocol_factory, ctx, false, opts.server_hostname,
                          opts)
end

local accepted_options = set("ssl", "ssl_handshake_timeout", "ssl_shutdown_timeout")

-- loop:connect_accepted_socket(protocol_factory, sock, opts) -> transport, protocol
function Loop:connect_accepted_socket(protocol_factory, sock, opts)
  local fname = "connect_accepted_socket"
  can_suspend(fname)
  check_factory(fname, protocol_factory)
  opts = args.check_options(fname, 3, opts, accepted_options)
  local ctx = check_ssl(fname, opts, true)
  return start_connection(self, self:_transport_from_fd(take_socket(fname, sock, false, 2)),
                          protocol_factory, ctx, true, nil, opts)
end

local start_tls_options = set("server_side", "server_hostname", "ssl_handshake_timeout",
  "ssl_shutdown_timeout")

-- loop:start_tls(transport, protocol, sslcontext, opts) -> the SSLTransport
-- that replaces 'transport' for 'protocol' once the handshake is done.
function Loop:start_tls(transport, protocol, sslcontext, opts)
  local fname = "start_tls"
  can_suspend(fname)
  local mt = getmetatable(transport)
  local kind = type(mt) == "table" and rawget(mt, "__name")
  -- TLS over TLS too, as asyncio 3.11+ (its _start_tls_compatible)
  if kind ~= "eddy.TCPTransport" and kind ~= "eddy.UnixTransport" and kind ~= "eddy.SSLTransport" then
    argerror(fname, 1, "TCP, UNIX or SSL transport (start_tls works on eddy's own)", transport)
  end
  if type(protocol) ~= "table" and type(protocol) ~= "userdata" then
    argerror(fname, 2, "protocol", protocol)
  end
  if not ssl.is_context(sslcontext) then argerror(fname, 3, "eddy.ssl.SSLContext", sslcontext) end
  opts = args.check_options(fname, 4, opts, start_tls_options)
  local hostname = opts.server_hostname
  if hostname ~= nil and type(hostname) ~= "string" then
    argerror(fname, 4, "string option 'server_hostname'", hostname)
  end
  sslproto.check_timeout("ssl_handshake_timeout", opts.ssl_handshake_timeout, 2)
  sslproto.check_timeout("ssl_shutdown_timeout", opts.ssl_shutdown_timeout, 2)
  -- asyncio's order: the new protocol takes over with reading paused,
  -- connection_made and resume_reading come from the loop.
  local handles = {}
  local function start(ssl_protocol)
    transport:pause_reading()
    transport:set_protocol(ssl_protocol)
    handles[1] = self:call_soon(ssl_protocol.connection_made, ssl_protocol, transport)
    handles[2] = self:call_soon(transport.resume_reading, transport)
  end
  local ok, res = pcall(sslproto.client_handshake, self, transport, start, protocol,
                        sslcontext, opts.server_side and true or false, hostname, opts, false)
  if not ok then
    for _, h in ipairs(handles) do h:cancel() end
    error(res, 0)
  end
  return res
end

-- loop:connect_read_pipe(protocol_factory, pipe) -> transport, protocol
-- loop:connect_write_pipe(protocol_factory, pipe) -> transport, protocol
-- pipe: an integer descriptor, a Lua file, or an object with :fileno();
-- the transport closes it (pipe:close(), or the descriptor) after
-- connection_lost, as asyncio's pipe transports do.  Suspending (API.md
-- §3): they return an iteration after connection_made (start_transport).
local function pipe_connector(fname, writable)
  return function(self, protocol_factory, pipe)
    can_suspend(fname)
    check_factory(fname, protocol_factory)
    if io.type(pipe) == "closed file" then
      error("attempt to use a closed file", 2)
    elseif math.type(pipe) ~= "integer" and io.type(pipe) == nil and not args.has_fileno(pipe) then
      argerror(fname, 2, "file descriptor, file or object with fileno()", pipe)
    end
    return start_transport(self:_pipe_transport(pipe, writable), protocol_factory)
  end
end

Loop.connect_read_pipe = pipe_connector("connect_read_pipe", false)
Loop.connect_write_pipe = pipe_connector("connect_write_pipe", true)

-- }=================================================

-- {================================================= Servers

local function finish_server(server, opts)
  if opts.start_serving == nil or opts.start_serving then
    server:_start()
    eddy.sleep(0)
  end
  return server
end

local function check_backlog(fname, n, backlog)
  if backlog == nil then return 100 end
  if math.type(backlog) ~= "integer" then argerror(fname, n, "integer option 'backlog'", backlog, 4) end
  return backlog
end

-- Bind every address of 'infos' (asyncio skips EADDRNOTAVAIL: a family
-- the host does not have) into 'server'.
local function bind_all(server, infos, opts)
  local reuse_address = opts.reuse_address
  if reuse_address == nil then reuse_address = true end
  local seen, bound, addrs = {}, 0, {}
  for _, info in ipairs(infos) do
    local sa = info.sockaddr
    local key = info.family .. " " .. sa[1] .. " " .. sa[2]
    if not seen[key] then
      seen[key] = true
      addrs[#addrs + 1] = string.format("('%s', %d)", sa[1], sa[2])
      local ok, fd = pcall(C.tcp_bind, sa, reuse_address, opts.reuse_port, opts.keep_alive)
      if ok then
        server:_listen(fd)
        bound = bound + 1
      elseif not (errors.is(fd, errors.OSError) and
                  (fd.code == "EADDRNOTAVAIL" or fd.code == "EAFNOSUPPORT")) then
        error(fd, 0)
      end
    end
  end
  if bound == 0 then
    error(errors.OSError("could not bind on any address out of [" .. table.concat(addrs, ", ") .. "]"), 0)
  end
end

local server_options = set("family", "flags", "sock", "backlog", "ssl", "reuse_address",
  "reuse_port", "keep_alive", "ssl_handshake_timeout", "ssl_shutdown_timeout", "start_serving")

-- loop:create_server(protocol_factory, host, port, opts) -> Server
function Loop:create_server(protocol_factory, host, port, opts)
  local fname = "create_server"
  can_suspend(fname)
  check_factory(fname, protocol_factory)
  local hosts
  if host == nil or host == "" then
    hosts = {false}
  elseif type(host) == "string" then
    hosts = {host}
  elseif type(host) == "table" and getmetatable(host) == nil then
    hosts = host
    for i, h in ipairs(hosts) do
      if type(h) ~= "string" then
        error(string.format("bad argument #2 to '%s' (host #%d: string expected, got %s)",
                            fname, i, typename(h)), 2)
      end
    end
  else
    argerror(fname, 2, "string, list of strings or nil", host)
  end
  port = check_port(fname, 3, port)
  opts = args.check_options(fname, 4, opts, server_options)
  local ctx = check_ssl(fname, opts, true)
  local backlog = check_backlog(fname, 4, opts.backlog)
  check_int_options(fname, 4, opts, {"family", "flags"})
  local family = opts.family or AF_UNSPEC
  if ctx ~= nil then protocol_factory = tls_server_factory(self, protocol_factory, ctx, opts) end
  local server = self:_new_server(protocol_factory, "tcp", backlog)
  local ok, err = pcall(function()
    if host ~= nil or port ~= nil then
      if opts.sock ~= nil then
        error(errors.ValueError("host/port and sock can not be specified at the same time"), 0)
      end
      local infos = {}
      for _, h in ipairs(hosts) do
        local list = ipaddr_info(h or nil, port, family) or
          self:getaddrinfo(h or nil, port or 0, {family = family, type = SOCK_STREAM,
                                                 flags = (opts.flags or 0) | AI_PASSIVE})
        for _, info in ipairs(list) do infos[#infos + 1] = info end
      end
      bind_all(server, infos, opts)
    else
      if opts.sock == nil then
        error(errors.ValueError("Neither host/port nor sock were specified"), 0)
      end
      server:_listen(take_socket(fname, opts.sock))
    end
  end)
  if not ok then
    server:close()
    error(err, 0)
  end
  return finish_server(server, opts)
end

local unix_server_options = set("sock", "backlog", "ssl", "ssl_handshake_timeout",
  "ssl_shutdown_timeout", "start_serving", "cleanup_socket")

-- loop:create_unix_server(protocol_factory, path, opts) -> Server
function Loop:create_unix_server(protocol_factory, path, opts)
  local fname = "create_unix_server"
  can_suspend(fname)
  check_factory(fname, protocol_factory)
  opts = args.check_options(fname, 3, opts, unix_server_options)
  local ctx = check_ssl(fname, opts, true)
  local backlog = check_backlog(fname, 3, opts.backlog)
  if ctx ~= nil then protocol_factory = tls_server_factory(self, protocol_factory, ctx, opts) end
  -- the server before the socket, which _listen then owns at once: no
  -- failure in between (no memory) can leave it open
  local server = self:_new_server(protocol_factory, "unix", backlog)
  local fd
  if path ~= nil then
    if type(path) ~= "string" then argerror(fname, 2, "string or nil", path) end
    if opts.sock ~= nil then
      error(errors.ValueError("path and sock can not be specified at the same time"), 2)
    end
    fd = C.unix_bind(path)
  elseif opts.sock ~= nil then
    fd = take_socket(fname, opts.sock, true)
  else
    error(errors.ValueError("path was not specified, and no sock specified"), 2)
  end
  -- asyncio 3.13: close() removes the socket file unless it was replaced
  server:_listen(fd, opts.cleanup_socket ~= false)
  return finish_server(server, opts)
end

-- server:start_serving() (suspending): a no-op when serving already;
-- RuntimeError once closed, as serve_forever (asyncio's fails there too,
-- with a TypeError from iterating its sockets, already None).
function Server:start_serving()
  can_suspend("start_serving")  -- before it listens (API.md §1)
  if not self:_start() then error(errors.RuntimeError("server is closed"), 2) end
  eddy.sleep(0)
end

-- server:serve_forever() (suspending): cancelling it closes the server.
function Server:serve_forever()
  can_suspend("serve_forever")
  local fields = self:_fields()
  if fields.serving_fut ~= nil then
    error(errors.RuntimeError("server is already being awaited on serve_forever()"), 2)
  end
  if not self:_start() then error(errors.RuntimeError("server is closed"), 2) end
  local fut = self:get_loop():create_future()
  fields.serving_fut = fut
  local ok, err = pcall(fut.await, fut)
  fields.serving_fut = nil
  if not ok then
    if errors.is(err, errors.CancelledError) then
      self:close()
      self:wait_closed()
    end
    error(err, 0)
  end
end

-- local srv <close> = loop:create_server(...): close, then wait_closed.
C.ServerMeta.__close = function(self)
  self:close()
  self:wait_closed()
end

-- }=================================================

return Loop
