-- eddy.selector_events: loop:create_datagram_endpoint, asyncio's
-- base_events.create_datagram_endpoint composed over eddy.socket, the
-- sock_* methods (src/sockops.c) and the datagram transport (src/udp.c),
-- which watches the socket as asyncio's selector loop does.

local eddy = require "eddy"
local errors = require "eddy.errors"
local socket = require "eddy.socket"
local Loop = eddy._core.Loop

local AF_UNIX, SOCK_DGRAM, SOCK_STREAM = socket.AF_UNIX, socket.SOCK_DGRAM, socket.SOCK_STREAM

-- (no reuse_address: asyncio 3.11 removed it, bpo-45129)
local OPTIONS = {family = true, proto = true, flags = true, reuse_port = true,
                 allow_broadcast = true, sock = true}

local args = require "eddy.args"
local callable = args.callable

-- An argument error blaming the caller of create_datagram_endpoint,
-- which is 'depth' calls above the function calling argerror (0: its
-- direct caller).
local function argerror(n, msg, depth)
  error(string.format("bad argument #%d to 'create_datagram_endpoint' (%s)", n, msg),
        3 + (depth or 0))
end

-- Check an {host, port} address argument (port: integer or string, as
-- asyncio passes it to getaddrinfo); 'depth' as argerror's.
local function check_address(addr, n, depth)
  if type(addr) ~= "table" or type(addr[1]) ~= "string" or
     (math.type(addr[2]) ~= "integer" and type(addr[2]) ~= "string") then
    argerror(n, "{host, port} expected, got " .. (type(addr) == "table" and "malformed table"
                                                  or type(addr)), depth + 1)
  end
end

-- The numeric address families of 'host' (asyncio's _ipaddr_info), or
-- nil when it needs the resolver.
local function numeric_family(host, family)
  for _, fam in ipairs {socket.AF_INET, socket.AF_INET6} do
    if (family == 0 or family == fam) and pcall(socket.inet_pton, fam, host) then
      return fam
    end
  end
end

-- addrinfo entries {family, proto, sockaddr} for an {host, port} address.
local function resolve(loop, addr, family, proto, flags)
  local port = math.tointeger(tonumber(addr[2]))
  local fam = port and numeric_family(addr[1], family)
  if fam ~= nil or (port and addr[1] == "") then
    return {{family = fam or (family ~= 0 and family or socket.AF_INET), proto = proto,
             sockaddr = {addr[1], port}}}
  end
  local infos = loop:getaddrinfo(addr[1], addr[2], {family = family, type = SOCK_DGRAM,
                                                    proto = proto, flags = flags})
  if #infos == 0 then error(errors.OSError("getaddrinfo() returned empty list"), 0) end
  return infos
end

-- (family, proto) pairs with their local and remote addresses, in the
-- order getaddrinfo gave them, keeping only complete pairs.
local function address_pairs(loop, local_addr, remote_addr, family, proto, flags)
  local order, pairs_by = {}, {}
  for idx, addr in ipairs {local_addr or false, remote_addr or false} do
    if addr then
      for _, info in ipairs(resolve(loop, addr, family, proto, flags)) do
        local key = info.family .. ":" .. (info.proto or 0)
        local p = pairs_by[key]
        if p == nil then
          p = {family = info.family, proto = info.proto or 0}
          pairs_by[key] = p
          order[#order + 1] = p
        end
        if p[idx] == nil then p[idx] = info.sockaddr end
      end
    end
  end
  local result = {}
  for _, p in ipairs(order) do
    if not ((local_addr and p[1] == nil) or (remote_addr and p[2] == nil)) then
      result[#result + 1] = p
    end
  end
  if #result == 0 then error(errors.ValueError("can not get address information"), 0) end
  return result
end

-- Open and set up one socket; returns it, or nil and the OSError.
local function open_socket(loop, family, proto, local_address, remote_address, opts)
  local ok, sock = pcall(socket.socket, family, SOCK_DGRAM, proto)
  if not ok then return nil, sock end
  local ok2, err = pcall(function()
    if opts.reuse_port then
      sock:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    end
    if opts.allow_broadcast then
      sock:setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    end
    sock:setblocking(false)
    if local_address ~= nil then sock:bind(local_address) end
    if remote_address ~= nil and not opts.allow_broadcast then
      loop:sock_connect(sock, remote_address)
    end
  end)
  if ok2 then return sock end
  sock:close()
  if not errors.is(err, errors.OSError) then error(err, 0) end
  return nil, err
end

-- loop:create_datagram_endpoint(protocol_factory, local_addr, remote_addr,
--   {family, proto, flags, reuse_port, allow_broadcast, sock})
--   -> transport, protocol
function Loop:create_datagram_endpoint(protocol_factory, local_addr, remote_addr, opts)
  if not callable(protocol_factory) then argerror(1, "callable expected, got " .. type(protocol_factory)) end
  opts = args.check_options("create_datagram_endpoint", 4, opts, OPTIONS)
  for _, k in ipairs {"family", "proto", "flags"} do
    if opts[k] ~= nil and math.type(opts[k]) ~= "integer" then
      argerror(4, "integer option '" .. k .. "' expected, got " .. type(opts[k]))
    end
  end
  -- it always waits (for connection_made): refuse a plain callback before
  -- a socket is made or the protocol factory runs
  eddy._core._can_suspend("create_datagram_endpoint")
  local family, proto, flags = opts.family or 0, opts.proto or 0, opts.flags or 0
  local sock, r_addr = opts.sock, nil
  if sock ~= nil then
    local mt = getmetatable(sock)
    if type(mt) ~= "table" or mt.__name ~= "eddy.socket" then
      argerror(4, "option 'sock' must be an eddy.socket")
    end
    if sock.type == SOCK_STREAM then
      error(errors.ValueError("A datagram socket was expected, got " .. tostring(sock)), 2)
    end
    local problems = {}
    for _, k in ipairs {"family", "proto", "flags", "reuse_port", "allow_broadcast"} do
      if opts[k] and opts[k] ~= 0 then problems[#problems + 1] = k .. "=" .. tostring(opts[k]) end
    end
    local function show(addr)
      if type(addr) ~= "table" then return tostring(addr) end
      return string.format("('%s', %s)", tostring(addr[1]), tostring(addr[2]))
    end
    if remote_addr then table.insert(problems, 1, "remote_addr=" .. show(remote_addr)) end
    if local_addr then table.insert(problems, 1, "local_addr=" .. show(local_addr)) end
    if #problems > 0 then
      error(errors.ValueError("socket modifier keyword arguments can not be used when sock is "
                              .. "specified. (" .. table.concat(problems, ", ") .. ")"), 2)
    end
    sock:setblocking(false)
  else
    local candidates
    if not (local_addr or remote_addr) then
      if family == 0 then error(errors.ValueError("unexpected address family"), 2) end
      candidates = {{family = family, proto = proto}}
    elseif family == AF_UNIX then
      for i, addr in ipairs {local_addr or false, remote_addr or false} do
        if addr and type(addr) ~= "string" then argerror(i + 1, "string expected, got " .. type(addr)) end
      end
      -- as asyncio: a socket file there goes, any other file stays
      if local_addr then eddy._core.remove_socket_file(local_addr) end
      candidates = {{family = family, proto = proto, local_addr, remote_addr}}
    else
      if local_addr then check_address(local_addr, 2, 0) end
      if remote_addr then check_address(remote_addr, 3, 0) end
      candidates = address_pairs(self, local_addr, remote_addr, family, proto, flags)
    end
    local first_err
    for _, c in ipairs(candidates) do
      local s, err = open_socket(self, c.family, c.proto, c[1], c[2], opts)
      if s ~= nil then
        sock, r_addr = s, c[2]
        break
      end
      first_err = first_err or err
    end
    if sock == nil then error(first_err, 0) end
  end
  -- The socket is ours until the transport takes it: close it if the
  -- factory fails, or the lookup of the protocol's connection_made
  -- (asyncio would leave it to the garbage collector).
  local ok, protocol = pcall(protocol_factory)
  if ok and type(protocol) ~= "table" and type(protocol) ~= "userdata" then
    ok, protocol = false, errors.RuntimeError("protocol_factory must return a protocol "
                                              .. "(table or userdata), got " .. type(protocol))
  end
  if ok then  -- asyncio's transport binds connection_made as it is made
    local found, err = pcall(function() return protocol.connection_made end)
    if not found then ok, protocol = false, err end
  end
  if not ok then
    sock:close()
    error(protocol, 0)
  end
  local waiter = self:create_future()
  local transport = self:_make_datagram_transport(sock, protocol, r_addr, waiter)
  local ok, err = pcall(waiter.await, waiter)
  if not ok then
    transport:close()
    error(err, 0)
  end
  return transport, protocol
end

return Loop
