-- net_target.lua: the eddy side of tools/fuzz/net_fuzz.py.
--
-- Serves on 127.0.0.1, port 0, several endpoints at once and prints their
-- ports on its first line of output ("ports echo=N ... unix=PATH
-- certs=DIR"):
--   echo     a Protocol echo; a chunk holding "BIG" is answered with 4 MiB
--            more, so that a peer can reset it mid-write
--   streams  start_server with limit 64: a header line "line", "until",
--            "exact N" or "big N" says what to read (readline, readuntil
--            "END", readexactly N) or write (N bytes) next, and echoes it
--   tls      a TLS streams echo (read, write, drain)
--   mtls     a TLS Protocol echo with ALPN that requires a client
--            certificate signed by the test CA
--   buffered a BufferedProtocol echo with a buffer of 1 to 97 bytes
--   sock     an echo on sock_accept, sock_recv and sock_sendall
--   udp      a datagram echo
--   unix     start_unix_server, the same as streams
--   control  lines from the fuzzer: "connect ID PORT plain|tls" connects
--            out to a hostile listener (TLS: the test CA trusted,
--            ssl_handshake_timeout 1 s), writes "hello\n", reads to EOF and
--            answers "result ID NAME SECONDS BYTES" (NAME: the error
--            class, or "ok"); "finish" closes everything,
--            checks that every libuv handle came back, prints "ok" and
--            exits 0.
-- A finding (an error that is not an eddy.errors object, the exception
-- handler seeing one, unbalanced handles) prints a "FINDING" line on
-- stderr and makes the exit status 1.  The target gives up after
-- NET_TARGET_TIMEOUT seconds (default 120) without "finish": exit 3.
local eddy = require "eddy"
local ssl = require "eddy.ssl"
local errors = eddy.errors

local root = arg[0]:match("^(.*)/tools/fuzz/[^/]*$") or "."
package.path = root .. "/spec/?.lua;" .. package.path

local certs = os.getenv("FUZZ_CERTS")
local own_certs = certs == nil  -- made here: removed at the end
if own_certs then certs = require("support.tls").dir() end
local function cert(name) return certs .. "/" .. name end

local findings = 0
local function finding(what)
  findings = findings + 1
  io.stderr:write("FINDING " .. what .. "\n")
end

-- Errors from hostile peers are expected; they must be eddy's error
-- objects, never a raw Lua error from inside eddy.
local function check_error(err, where)
  if not errors.is(err, errors.Error) then
    finding(where .. ": not an eddy error: " .. tostring(err))
  end
end

local BIG = string.rep("b", 4 * 1024 * 1024)
local transports = setmetatable({}, {__mode = "k"})  -- every connection made

-- The plain Protocol echo.
local Echo = {}
Echo.__index = Echo
function Echo:connection_made(t) self.t = t transports[t] = true end
function Echo:data_received(d)
  self.t:write(d)
  if d:find("BIG", 1, true) then self.t:write(BIG) end
end
function Echo:eof_received() return false end
function Echo:connection_lost(err)
  if err ~= nil then check_error(err, "echo connection_lost") end
end
function Echo:pause_writing() end
function Echo:resume_writing() end

-- A streams session: header lines say what to read or write next.
local function session(reader, writer)
  transports[writer.transport] = true
  local ok, err = pcall(function()
    while true do
      local header = reader:readline()
      if header == "" then break end
      local cmd, n = header:match("^(%a+) ?(%d*)")
      n = tonumber(n)
      local out
      if cmd == "line" then out = reader:readline()
      elseif cmd == "until" then out = reader:readuntil("END")
      elseif cmd == "exact" and n then out = reader:readexactly(n)
      elseif cmd == "big" and n then out = string.rep("x", math.min(n, 1 << 24))
      else out = "?\n" end
      writer:write(out)
      writer:drain()
    end
  end)
  if not ok then check_error(err, "streams session") end
  writer:close()
end

-- The TLS streams echo.
local function tls_echo(reader, writer)
  transports[writer.transport] = true
  local ok, err = pcall(function()
    while true do
      local data = reader:read(4096)
      if data == "" then break end
      writer:write(data)
      if data:find("BIG", 1, true) then writer:write(BIG) end
      writer:drain()
    end
  end)
  if not ok then check_error(err, "tls session") end
  writer:close()
end

-- A BufferedProtocol echo with a small buffer, of a size per connection.
local BufferedEcho = setmetatable({}, {__index = Echo})
BufferedEcho.__index = BufferedEcho
local buffered_count = 0
function BufferedEcho.new()
  buffered_count = buffered_count + 1
  return setmetatable({buf = eddy.Buffer(1 + buffered_count % 97)}, BufferedEcho)
end
function BufferedEcho:get_buffer() return self.buf end
function BufferedEcho:buffer_updated(n) self:data_received(self.buf:tostring(1, n)) end

-- An echo on the loop's sock_* methods: accept, then recv and sendall.
local function sock_echo(loop, listener, conns)
  while true do
    local conn = loop:sock_accept(listener)
    conn:setblocking(false)
    conns[conn] = true
    eddy.create_task(function()
      local ok, err = pcall(function()
        while true do
          local data = loop:sock_recv(conn, 4096)
          if data == "" then break end
          loop:sock_sendall(conn, data)
          if data:find("BIG", 1, true) then loop:sock_sendall(conn, BIG) end
        end
      end)
      if not ok then check_error(err, "sock echo") end
      conn:close()
      conns[conn] = nil
    end)
  end
end

local UdpEcho = {}
UdpEcho.__index = UdpEcho
function UdpEcho:connection_made(t) self.t = t end
function UdpEcho:datagram_received(data, addr) self.t:sendto(data, addr) end
function UdpEcho:error_received(err) check_error(err, "udp error_received") end
function UdpEcho:connection_lost() end

-- A connection out to one of the fuzzer's hostile listeners: its outcome
-- (the error's class, or "ok"), how long it took and how many bytes it
-- read (to EOF).
local function connect_out(loop, port, kind)
  local opts
  if kind == "tls" then
    local ctx = ssl.create_default_context(nil, {cafile = cert("ca.pem")})
    opts = {ssl = ctx, server_hostname = "localhost", ssl_handshake_timeout = 1}
  end
  local start = loop:time()
  local got = 0
  local ok, err = pcall(eddy.wait_for, function()
    local reader, writer = eddy.open_connection("127.0.0.1", port, opts)
    transports[writer.transport] = true
    local wok, werr = pcall(function()
      writer:write("hello\n")
      writer:drain()
      got = #reader:read()
    end)
    writer:close()
    if not wok then error(werr, 0) end
  end, 10)
  local outcome = "ok"
  if not ok then
    check_error(err, "connect out")
    outcome = tostring(err):match("^(%w+)") or "?"
  end
  return outcome, loop:time() - start, got
end

local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
loop:set_exception_handler(function(_, context)
  if context.exception ~= nil then
    check_error(context.exception, "exception handler (" .. tostring(context.message) .. ")")
  end
end)
local opened0, freed0 = loop:_handle_counts()

local function main()
  local server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  server_ctx:load_cert_chain(cert("server.pem"), cert("server.key"))
  local mtls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  mtls_ctx:load_cert_chain(cert("server.pem"), cert("server.key"))
  mtls_ctx:load_verify_locations(cert("ca.pem"))
  mtls_ctx.verify_mode = ssl.CERT_REQUIRED
  mtls_ctx:set_alpn_protocols({"eddy/1", "http/1.1"})
  local unix_path = os.tmpname()
  os.remove(unix_path)

  local finished = eddy.Event()
  local tasks = {}
  local function control(reader, writer)
    transports[writer.transport] = true
    local ok, err = pcall(function()
      for line in reader:lines() do
        local id, port, kind = line:match("^connect (%d+) (%d+) (%a+)$")
        if id then
          tasks[#tasks + 1] = eddy.create_task(function()
            local outcome, took, got = connect_out(loop, tonumber(port), kind)
            writer:write(("result %s %s %.3f %d\n"):format(id, outcome, took, got))
          end)
        elseif line == "finish" then
          finished:set()
        else
          writer:write("? " .. line .. "\n")
        end
      end
    end)
    if not ok then check_error(err, "control") end
  end

  local servers = {
    echo = loop:create_server(function() return setmetatable({}, Echo) end, "127.0.0.1", 0),
    streams = eddy.start_server(session, "127.0.0.1", 0, {limit = 64}),
    tls = eddy.start_server(tls_echo, "127.0.0.1", 0,
                            {ssl = server_ctx, ssl_handshake_timeout = 2}),
    mtls = loop:create_server(function() return setmetatable({}, Echo) end, "127.0.0.1", 0,
                              {ssl = mtls_ctx, ssl_handshake_timeout = 2}),
    control = eddy.start_server(control, "127.0.0.1", 0),
    unix = eddy.start_unix_server(session, unix_path, {limit = 64}),
  }
  servers.buffered = loop:create_server(BufferedEcho.new, "127.0.0.1", 0)
  local esocket = require "eddy.socket"
  local listener = esocket.socket(esocket.AF_INET, esocket.SOCK_STREAM)
  listener:bind({"127.0.0.1", 0})
  listener:listen()
  listener:setblocking(false)
  local sock_conns = {}
  local acceptor = eddy.create_task(sock_echo, loop, listener, sock_conns)
  local udp = loop:create_datagram_endpoint(function() return setmetatable({}, UdpEcho) end,
                                            {"127.0.0.1", 0})
  local ports = {}
  for _, name in ipairs {"echo", "streams", "tls", "mtls", "control", "buffered"} do
    ports[#ports + 1] = ("%s=%d"):format(name, servers[name].sockets[1]:getsockname()[2])
  end
  ports[#ports + 1] = ("sock=%d"):format(listener:getsockname()[2])
  ports[#ports + 1] = ("udp=%d"):format(udp:get_extra_info("sockname")[2])
  print(("ports %s unix=%s certs=%s"):format(table.concat(ports, " "), unix_path, certs))
  io.stdout:flush()

  local timeout = tonumber(os.getenv("NET_TARGET_TIMEOUT")) or 120
  if not pcall(eddy.wait_for, function() finished:wait() end, timeout) then
    io.stderr:write("net_target: no finish in " .. timeout .. " s\n")
    os.exit(3)
  end
  for _, srv in pairs(servers) do srv:close() end
  udp:close()
  acceptor:cancel()
  listener:close()
  for conn in pairs(sock_conns) do conn:close() end
  for t in pairs(transports) do t:abort() end
  for _, task in ipairs(tasks) do task:cancel() end
  for _, srv in pairs(servers) do eddy.wait_for(function() srv:wait_closed() end, 5) end
  os.remove(unix_path)
end

local ok, err = pcall(loop.run_until_complete, loop, main)
if not ok then finding("main: " .. tostring(err)) end
-- what the aborts and cancellations leave to run
for _ = 1, 5 do loop:run_until_complete(function() eddy.sleep(0.01) end) end
local opened, freed = loop:_handle_counts()
if opened - freed ~= opened0 - freed0 then
  finding(("handles: %d opened and %d freed, %d live at the start")
          :format(opened, freed, opened0 - freed0))
end
loop:close()
if own_certs then os.execute("rm -rf " .. certs) end
print(("ok: %d findings"):format(findings))
os.exit(findings == 0 and 0 or 1)
