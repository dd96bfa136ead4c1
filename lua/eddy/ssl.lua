-- eddy.ssl: the part of Python's ssl module that asyncio's TLS uses
-- (API.md §10), on mbedTLS (src/tls.c).  An SSLContext holds the settings
-- and certificates its connections share; the loop's ssl= options,
-- start_tls and StreamWriter:start_tls take one.  The per-connection
-- object, what get_extra_info("ssl_object") returns, is C's TLS object:
-- getpeercert, cipher, version, selected_alpn_protocol, server_side,
-- server_hostname.

local eddy = require "eddy"
local args = require "eddy.args"
local errors = require "eddy.errors"
local C = eddy._core

local ssl = {}

ssl.PROTOCOL_TLS_CLIENT = 16  -- Python's values
ssl.PROTOCOL_TLS_SERVER = 17
ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED = 0, 1, 2
ssl.TLSVersion = {
  MINIMUM_SUPPORTED = -2, MAXIMUM_SUPPORTED = -1,
  SSLv3 = 0x0300, TLSv1 = 0x0301, TLSv1_1 = 0x0302, TLSv1_2 = 0x0303, TLSv1_3 = 0x0304,
}
ssl.Purpose = {SERVER_AUTH = "SERVER_AUTH", CLIENT_AUTH = "CLIENT_AUTH"}
ssl.SSLError = errors.SSLError
ssl.SSLCertVerificationError = errors.SSLCertVerificationError
-- mbedTLS 2.28 (Debian 12) speaks TLS 1.0 to 1.2; its TLS 1.3 is an
-- experimental build option Debian leaves off.
ssl.HAS_TLSv1_3 = false
ssl.HAS_ALPN, ssl.HAS_SNI = true, true
do
  local v = C.mbedtls_version
  ssl.MBEDTLS_VERSION = string.format("mbed TLS %d.%d.%d", v >> 24, (v >> 16) & 0xff,
                                      (v >> 8) & 0xff)
end

local LOWEST, HIGHEST = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2

-- Where Debian keeps the system's trusted certificates; OpenSSL's
-- SSL_CERT_FILE and SSL_CERT_DIR override them, for eddy as for Python.
local DEFAULT_CAFILE = "/etc/ssl/certs/ca-certificates.crt"
local DEFAULT_CAPATH = "/etc/ssl/certs"

local version_names = {}
for k, v in pairs(ssl.TLSVersion) do version_names[v] = k end

local SSLContext = {}
local fields = setmetatable({}, {__mode = "k"})  -- context -> its settings

local function settings(self)
  local f = fields[self]
  if f == nil then error("SSLContext expected, got " .. args.typename(self), 3) end
  return f
end

-- The TLS versions mbedTLS is to allow, from minimum/maximum_version.
local function version_range(f)
  local lo, hi = f.minimum_version, f.maximum_version
  if lo == ssl.TLSVersion.MINIMUM_SUPPORTED then lo = LOWEST end
  if hi == ssl.TLSVersion.MAXIMUM_SUPPORTED or hi > HIGHEST then hi = HIGHEST end
  if lo > hi then
    error(errors.SSLError("[SSL: NO_PROTOCOLS_AVAILABLE] no protocols available: minimum_version "
                          .. version_names[f.minimum_version] .. " is above maximum_version "
                          .. version_names[f.maximum_version],
                          {reason = "NO_PROTOCOLS_AVAILABLE"}), 0)
  end
  return lo, hi
end

local setters = {}

function setters.verify_mode(self, f, v)
  if v ~= ssl.CERT_NONE and v ~= ssl.CERT_OPTIONAL and v ~= ssl.CERT_REQUIRED then
    error(errors.ValueError("invalid value for verify_mode"), 3)
  end
  if v == ssl.CERT_NONE and f.check_hostname then
    error(errors.ValueError("Cannot set verify_mode to CERT_NONE when check_hostname is enabled."), 3)
  end
  f.verify_mode = v
end

function setters.check_hostname(self, f, v)
  v = not not v
  -- as Python 3.7+: turning the check on asks for certificates
  if v and f.verify_mode == ssl.CERT_NONE then f.verify_mode = ssl.CERT_REQUIRED end
  f.check_hostname = v
end

-- As Python's, the opposite bound stands for "the extreme available":
-- minimum_version = MAXIMUM_SUPPORTED is the highest version there is, and
-- maximum_version = MINIMUM_SUPPORTED the lowest (read back as such).
local emulated = {
  minimum_version = {[ssl.TLSVersion.MAXIMUM_SUPPORTED] = HIGHEST},
  maximum_version = {[ssl.TLSVersion.MINIMUM_SUPPORTED] = LOWEST},
}

local function version_setter(name)
  return function(self, f, v)
    if version_names[v] == nil then
      error(errors.ValueError("invalid value for " .. name .. " (a ssl.TLSVersion)"), 3)
    end
    v = emulated[name][v] or v
    if v == ssl.TLSVersion.SSLv3 or (name == "minimum_version" and v == ssl.TLSVersion.TLSv1_3) then
      error(errors.ValueError(version_names[v] .. " is not supported by " .. ssl.MBEDTLS_VERSION
                              .. " as built here"), 3)
    end
    f[name] = v
  end
end
setters.minimum_version = version_setter("minimum_version")
setters.maximum_version = version_setter("maximum_version")

function SSLContext.__index(self, k)
  local f = settings(self)
  if f[k] ~= nil and k ~= "handle" then return f[k] end
  return SSLContext[k]
end

function SSLContext.__newindex(self, k, v)
  local f = settings(self)
  local set = setters[k]
  if set == nil then
    error(string.format("SSLContext has no settable field '%s'", tostring(k)), 2)
  end
  set(self, f, v)
end

function SSLContext.__tostring(self)
  local f = fields[self]
  return string.format("<eddy.ssl.SSLContext %s>",
                       f.protocol == ssl.PROTOCOL_TLS_SERVER and "server" or "client")
end

SSLContext.__name = "eddy.ssl.SSLContext"

-- ssl.SSLContext(protocol) -> a context; PROTOCOL_TLS_CLIENT (the
-- default) verifies the server and its hostname, PROTOCOL_TLS_SERVER
-- asks nothing of clients, as Python's.
function ssl.SSLContext(protocol)
  if protocol == nil then protocol = ssl.PROTOCOL_TLS_CLIENT end
  if math.type(protocol) ~= "integer" then  -- Python: TypeError
    error(args.message("SSLContext", 1, "integer", protocol), 2)
  end
  if protocol ~= ssl.PROTOCOL_TLS_CLIENT and protocol ~= ssl.PROTOCOL_TLS_SERVER then
    error(errors.ValueError("SSLContext: protocol must be PROTOCOL_TLS_CLIENT or PROTOCOL_TLS_SERVER"), 2)
  end
  local server = protocol == ssl.PROTOCOL_TLS_SERVER
  local self = setmetatable({}, SSLContext)
  fields[self] = {
    protocol = protocol,
    handle = C.tls_context(server),
    check_hostname = not server,
    verify_mode = server and ssl.CERT_NONE or ssl.CERT_REQUIRED,
    minimum_version = ssl.TLSVersion.TLSv1_2,
    maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED,
  }
  return self
end

local function handle(self) return settings(self).handle end

-- The methods below check their arguments before the C methods do, so
-- that an error blames the caller's line, not this file's.
local check_string = args.check_string

-- ctx:load_cert_chain(certfile, keyfile, password): the chain (PEM) and
-- its key (in certfile when keyfile is nil); password: a string or a
-- function returning one, for an encrypted key.
function SSLContext:load_cert_chain(certfile, keyfile, password)
  check_string("load_cert_chain", 1, certfile)
  check_string("load_cert_chain", 2, keyfile, true)
  local t = type(password)
  if password ~= nil and t ~= "string" and t ~= "number" and t ~= "function" then
    error(args.message("load_cert_chain", 3, "string or function", password), 2)
  end
  local h = handle(self)
  if t == "function" then
    -- Python's callable, called only when the key is encrypted: a key that
    -- loads without a password never calls it
    local ok, err = pcall(h.load_cert_chain, h, certfile, keyfile)
    if ok then return end
    if not (errors.is(err, errors.SSLError) and err.reason == "BAD_DECRYPT") then error(err, 0) end
    password = password()
    if type(password) ~= "string" then
      error("password callback must return a string", 2)
    end
  end
  return h:load_cert_chain(certfile, keyfile, password)
end

-- ctx:load_verify_locations(cafile, capath, cadata): trust these CAs.
function SSLContext:load_verify_locations(cafile, capath, cadata)
  local fname = "load_verify_locations"
  check_string(fname, 1, cafile, true)
  check_string(fname, 2, capath, true)
  check_string(fname, 3, cadata, true)
  if cafile == nil and capath == nil and cadata == nil then
    error("bad argument to '" .. fname .. "' (cafile, capath and cadata cannot be all omitted)", 2)
  end
  if cadata == "" then error(errors.ValueError("Empty certificate data"), 2) end  -- Python's
  return handle(self):load_verify_locations(cafile, capath, cadata)
end

-- ctx:load_default_certs(purpose): trust the system's CAs.
function SSLContext:load_default_certs()
  local cafile = os.getenv("SSL_CERT_FILE") or DEFAULT_CAFILE
  local f = io.open(cafile, "rb")
  if f ~= nil then
    f:close()
    return handle(self):load_verify_locations(cafile)
  end
  return handle(self):load_verify_locations(nil, os.getenv("SSL_CERT_DIR") or DEFAULT_CAPATH)
end

function SSLContext:set_alpn_protocols(list)
  if type(list) ~= "table" then error(args.message("set_alpn_protocols", 1, "table", list), 2) end
  for i = 1, #list do
    if type(list[i]) ~= "string" then
      error(string.format("bad argument #1 to 'set_alpn_protocols' (protocol #%d: string expected, got %s)",
                          i, args.typename(list[i])), 2)
    end
  end
  return handle(self):set_alpn_protocols(list)
end

function SSLContext:set_ciphers(spec)
  check_string("set_ciphers", 1, spec)
  return handle(self):set_ciphers(spec)
end
function SSLContext:cert_store_stats() return handle(self):cert_store_stats() end

-- For sslproto: the TLS object of one connection.
function SSLContext:_wrap(server_side, server_hostname)
  local f = settings(self)
  if server_hostname ~= nil and type(server_hostname) ~= "string" then
    error(args.message("wrap", 2, "string or nil", server_hostname), 2)
  end
  -- "" is no name at all: no SNI and no name check, whatever check_hostname
  -- says (asyncio's documented server_hostname=""; its SSLProtocol wraps
  -- with None then, and wrap_bio checks no name)
  local check_hostname = f.check_hostname and not server_side and server_hostname ~= ""
  if server_hostname == "" then server_hostname = nil end
  if check_hostname and server_hostname == nil then
    error(errors.ValueError("check_hostname requires server_hostname"), 0)
  end
  if server_side and server_hostname ~= nil then
    error(errors.ValueError("server_hostname can only be specified in client mode"), 0)
  end
  local lo, hi = version_range(f)
  return f.handle:wrap(server_side, server_hostname, f.verify_mode, check_hostname, lo, hi, self)
end

function ssl.is_context(v) return fields[v] ~= nil end

-- ssl.create_default_context(purpose, {cafile, capath, cadata}): a
-- client context trusting the system's CAs (SERVER_AUTH, the default), or
-- a server context (CLIENT_AUTH), as Python's.
function ssl.create_default_context(purpose, opts)
  purpose = purpose or ssl.Purpose.SERVER_AUTH
  if purpose ~= ssl.Purpose.SERVER_AUTH and purpose ~= ssl.Purpose.CLIENT_AUTH then
    error(errors.ValueError("create_default_context: purpose must be ssl.Purpose.SERVER_AUTH or CLIENT_AUTH"), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error(args.message("create_default_context", 2, "table or nil", opts), 2) end
  for k in pairs(opts) do
    if k ~= "cafile" and k ~= "capath" and k ~= "cadata" then
      error(string.format("bad argument #2 to 'create_default_context' (unknown option '%s')", tostring(k)), 2)
    end
    -- checked here, so that the error is create_default_context's
    if type(opts[k]) ~= "string" then
      error(args.message("create_default_context", 2, "string option '" .. k .. "'", opts[k]), 2)
    end
  end
  local ctx = ssl.SSLContext(purpose == ssl.Purpose.SERVER_AUTH and ssl.PROTOCOL_TLS_CLIENT
                             or ssl.PROTOCOL_TLS_SERVER)
  if opts.cafile or opts.capath or opts.cadata then
    ctx:load_verify_locations(opts.cafile, opts.capath, opts.cadata)
  elseif ctx.verify_mode ~= ssl.CERT_NONE then
    ctx:load_default_certs(purpose)
  end
  return ctx
end

eddy.ssl = ssl
return ssl
