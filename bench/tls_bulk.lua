-- bench/tls_bulk.lua [MIB] [HANDSHAKES] [IDLE]: the TLS layer's cost,
-- client and server in one process on 127.0.0.1: MIB mebibytes through
-- one TLS 1.2 connection (64 KiB writes, with flow control), then
-- HANDSHAKES connections opened and closed one after another, then the
-- RSS of IDLE connections held open (both ends).  The asyncio/uvloop
-- counterpart of the first two is bench/tls_bulk.py; both pin TLS 1.2
-- with ECDHE-ECDSA-AES128-GCM-SHA256 on a P-256 key made by `openssl`.
local eddy = require "eddy"
local ssl = require "eddy.ssl"

local mib = tonumber(arg and arg[1]) or 256
local handshakes = tonumber(arg and arg[2]) or 300
local idle = tonumber(arg and arg[3]) or 300
local SUITE = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
assert(os.execute(string.format(
  "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s "
  .. "-out %s -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1",
  key, cert)))

local function main()
  local loop = eddy.get_running_loop()
  local sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  sctx:load_cert_chain(cert, key)
  local cctx = ssl.create_default_context(nil, {cafile = cert})
  cctx:set_ciphers(SUITE)
  cctx.maximum_version = ssl.TLSVersion.TLSv1_2

  local total = mib * 1024 * 1024
  local received, done = 0, loop:create_future()
  local Sink = {}
  Sink.__index = Sink
  function Sink:data_received(d)
    received = received + #d
    if received >= total and not done:done() then done:set_result(true) end
  end
  local server <close> = loop:create_server(function() return setmetatable({}, Sink) end,
                                            "127.0.0.1", 0, {ssl = sctx})
  local port = server.sockets[1]:getsockname()[2]

  -- bulk: write while the transport is not paused
  local writable = loop:create_future()
  local Source = {}
  function Source.pause_writing() writable = loop:create_future() end
  function Source.resume_writing() writable:set_result(true) end
  writable:set_result(true)
  local t = loop:create_connection(function() return Source end, "127.0.0.1", port,
                                   {ssl = cctx, server_hostname = "localhost"})
  local chunk = string.rep("x", 65536)
  local t0 = loop:time()
  for _ = 1, total // #chunk do
    if not writable:done() then writable:await() end
    t:write(chunk)
  end
  done:await()
  local bulk = loop:time() - t0
  t:close()

  -- handshakes: connect, complete the handshake, close
  t0 = loop:time()
  for _ = 1, handshakes do
    local c = loop:create_connection(function() return {} end, "127.0.0.1", port,
                                     {ssl = cctx, server_hostname = "localhost"})
    c:abort()
  end
  local hs = loop:time() - t0

  -- idle connections: RSS growth per connection (client and server end)
  local function rss_kb()
    local f = assert(io.open("/proc/self/status"))
    local kb = tonumber(f:read("a"):match("VmRSS:%s+(%d+)"))
    f:close()
    return kb
  end
  collectgarbage()
  local before, held = rss_kb(), {}
  for i = 1, idle do
    held[i] = loop:create_connection(function() return {} end, "127.0.0.1", port,
                                     {ssl = cctx, server_hostname = "localhost"})
  end
  eddy.sleep(0.1)
  collectgarbage()
  local per_pair = (rss_kb() - before) / idle
  for _, c in ipairs(held) do c:abort() end
  return bulk, hs, per_pair
end

local bulk, hs, per_pair = eddy.run(main)
os.execute("rm -rf " .. dir)
print(string.format("eddy TLS: %d MiB in %.2f s = %.0f MiB/s; %d handshakes in %.2f s = %.0f/s; "
                    .. "%d idle connections: %.1f KB per client+server pair",
                    mib, bulk, mib / bulk, handshakes, hs, handshakes / hs, idle, per_pair))
