-- Differential harness, eddy side: TLS transports and streams.  The same
-- scenarios as tools/diff/tls.py (CPython), against the same peer
-- (tools/diff/tls_peer.py), printed the same way, one line per event,
-- "scenario: event"; `tools/diff/run.sh tls` diffs the two.
-- Usage: eddy tls.lua CERTDIR [scenario-name-prefix]
local eddy = require "eddy"
local ssl = require "eddy.ssl"

local HERE = arg[0]:gsub("[^/]*$", "")
package.path = HERE .. "?.lua;" .. package.path
local trace = require "trace"
local q, show, ename, emsg = trace.q, trace.show, trace.ename, trace.emsg

local CERTDIR = assert(arg[1], "usage: eddy tls.lua CERTDIR [prefix]")
local PEER = HERE .. "tls_peer.py"
local PYTHON = os.getenv("PYTHON") or "python3"
local PIPE = eddy.subprocess.PIPE

local scenarios = {}
local function scenario(name, fn) scenarios[#scenarios + 1] = {name = name, fn = fn} end

-- A scenario 'name' that is run(t, ...).
local function scenario_of(name, run, ...)
  local args = table.pack(...)
  scenario(name, function(t) run(t, table.unpack(args, 1, args.n)) end)
end

-- Events of one scenario; consecutive data_received are merged.
local Trace = trace.class()

function Trace:data_of(data) self.data = (self.data or "") .. data end

function Trace:flush()
  if self.data then
    self.lines[#self.lines + 1] = "data " .. show(q(self.data))
    self.data = nil
  end
end

-- A protocol tracing its callbacks; it answers "hello" with "world"
-- (and closes then if 'close_after_world'); eof_received returns
-- 'eof_result'.
local function recorder(t, eof_result, close_after_world)
  local rec = {done = eddy.get_running_loop():create_future()}
  function rec.connection_made(_, tr)
    rec.tr = tr
    t("connection_made")
    if close_after_world then  -- (the server of srv_close_by_us) its side's extra info
      local obj = tr:get_extra_info("ssl_object")
      t("peercert", tr:get_extra_info("peercert"), "server_side", obj.server_side,
        "server_hostname", obj.server_hostname)
    end
  end
  function rec.data_received(_, data)
    t:data_of(data)
    if data == "hello" then
      rec.tr:write("world")
      if close_after_world then rec.tr:close() end
    end
  end
  function rec.eof_received()
    t("eof_received")
    return eof_result
  end
  function rec.pause_writing() t("pause_writing") end
  function rec.resume_writing() t("resume_writing") end
  function rec.connection_lost(_, exc)
    t("connection_lost", ename(exc))
    if not rec.done:done() then rec.done:set_result(nil) end
  end
  return rec
end

-- tls_peer.py serving one connection in 'mode'; its port and process.
local function peer(mode)
  local proc = eddy.create_subprocess_exec(PYTHON, PEER, mode, CERTDIR, {stdout = PIPE, stderr = eddy.subprocess.DEVNULL})
  return math.tointeger(tonumber(eddy.wait_for(function() return proc.stdout:readline() end, 10))), proc
end

local function client_context()
  return ssl.create_default_context(nil, {cafile = CERTDIR .. "/ca.pem"})
end

-- Options of create_connection: 'opts' on top of ssl = client_context(),
-- server_hostname = "localhost".
local function options(opts)
  local all = {ssl = client_context(), server_hostname = "localhost"}
  for k, v in pairs(opts or {}) do all[k] = v end
  return all
end

-- A recorder (or 'rec') connected over TLS to a peer in 'mode'.
local function connect(t, mode, opts, rec)
  local port, proc = peer(mode)
  rec = rec or recorder(t)
  local tr = eddy.get_running_loop():create_connection(function() return rec end,
                                                       "127.0.0.1", port, options(opts))
  return tr, rec, proc
end

-- Connect as connect() does (opts as they are, ssl added); trace the error.
local function connect_fails(t, mode, opts)
  local port, proc = peer(mode)
  opts = opts or {}
  if opts.ssl == nil then opts.ssl = client_context() end
  local ok, e = pcall(function()
    eddy.get_running_loop():create_connection(function() return {} end,
                                              "127.0.0.1", port, opts)
  end)
  if ok then t("connected") else t("raised", ename(e), type(e) == "table" and e.reason or nil) end
  proc:kill()
  proc:wait()
end

-- Until connection_lost and the peer's end; then the trace.
local function finish(t, rec, proc)
  eddy.wait_for(rec.done, 10)
  eddy.wait_for(function() return proc:wait() end, 10)
  t:dump()
end

-- {================================================= closing

scenario("close_by_peer", function(t)  -- close_notify from the peer
  local _, rec, proc = connect(t, "close_notify")
  finish(t, rec, proc)
end)

scenario("close_tcp_by_peer", function(t)  -- the end of TCP, no close_notify
  local _, rec, proc = connect(t, "tcp_close")
  finish(t, rec, proc)
end)

scenario("eof_true", function(t)  -- eof_received's true cannot keep TLS half open
  local _, rec, proc = connect(t, "tcp_close", nil, recorder(t, true))
  finish(t, rec, proc)
end)

-- close() or abort() after a write; a write then is dropped.
local function end_by_us(t, method)
  local tr, rec, proc = connect(t, "client_closes")
  tr:write("bye")
  tr[method](tr)
  t("closing", tr:is_closing())
  tr:write("dropped")
  finish(t, rec, proc)
end

scenario_of("close_by_us", end_by_us, "close")
scenario_of("abort_by_us", end_by_us, "abort")

scenario("write_eof", function(t)
  local tr, rec, proc = connect(t, "client_closes")
  t("can_write_eof", tr:can_write_eof())
  local ok, e = pcall(tr.write_eof, tr)
  if ok then t("write_eof ok") else t("write_eof", ename(e)) end
  tr:close()
  finish(t, rec, proc)
end)

scenario("garbage_handshake", function(t)
  connect_fails(t, "garbage")
  t:dump()
end)

scenario("garbage_record", function(t)
  local _, rec, proc = connect(t, "garbage_after")
  finish(t, rec, proc)
end)

scenario("truncated_record", function(t)
  local _, rec, proc = connect(t, "truncated")
  finish(t, rec, proc)
end)

scenario("shutdown_timeout", function(t)  -- the peer never answers our close_notify
  local tr, rec, proc = connect(t, "hold", {ssl_shutdown_timeout = 0.3})
  eddy.sleep(0.1)
  local loop = eddy.get_running_loop()
  local start = loop:time()
  tr:close()
  eddy.wait_for(rec.done, 5)
  t("within", string.format("%.1f", loop:time() - start))
  finish(t, rec, proc)
end)

-- }================================================= handshakes

-- Connect to a peer in 'mode': connected, or the error.
local function handshake(t, mode, opts)
  connect_fails(t, mode, opts)
  t:dump()
end

local function no_name_check()
  local ctx = client_context()
  ctx.check_hostname = false
  return ctx
end

scenario_of("hs_unknown_ca", handshake, "rogue", {server_hostname = "localhost"})
scenario_of("hs_expired", handshake, "expired", {server_hostname = "localhost"})
scenario_of("hs_wrong_name", handshake, "close_notify", {server_hostname = "wrong.test"})
scenario_of("hs_name_from_host", handshake, "close_notify")  -- no server_hostname: the host, an IP SAN
scenario_of("hs_empty_name", handshake, "close_notify", {server_hostname = ""})  -- with check_hostname on
scenario_of("hs_empty_name_no_check", handshake, "close_notify", {ssl = no_name_check(), server_hostname = ""})

scenario("hs_option_errors", function(t)
  local loop = eddy.get_running_loop()
  local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
  local port = srv.sockets[1]:getsockname()[2]
  for _, opts in ipairs {
    {server_hostname = "x"}, {ssl_handshake_timeout = 1}, {ssl_shutdown_timeout = 1},
    {ssl = true, ssl_handshake_timeout = 0}, {ssl = true, ssl_handshake_timeout = -1},
    {ssl = true, ssl_shutdown_timeout = 0}, {ssl = true, ssl_shutdown_timeout = -1},
  } do
    local names = {}
    for k in pairs(opts) do names[#names + 1] = k end
    table.sort(names)
    local ok, e = pcall(loop.create_connection, loop, function() return {} end, "127.0.0.1", port, opts)
    names[#names + 1] = ok and "connected" or ename(e)
    names[#names + 1] = not ok and emsg(e) or nil
    t(table.unpack(names))
  end
  srv:close()
  t:dump()
end)

scenario("hs_timeout", function(t)  -- a peer that never answers
  local loop = eddy.get_running_loop()
  local start = loop:time()
  connect_fails(t, "silent", {server_hostname = "localhost", ssl_handshake_timeout = 0.3})
  t("within a second", loop:time() - start < 1)
  t:dump()
end)

-- }================================================= flow control

local function pause_reading(t, mode)
  local tr, rec, proc = connect(t, mode)
  tr:pause_reading()
  t("is_reading", tr:is_reading())
  eddy.sleep(0.5)  -- all sent and the peer's end of TCP
  t("resume")
  tr:resume_reading()
  finish(t, rec, proc)
end

scenario_of("pause_reading", pause_reading, "lines")
scenario_of("pause_reading_notify", pause_reading, "lines_notify")  -- close_notify while paused

scenario("write_flow", function(t)
  local tr, rec, proc = connect(t, "slow")
  t("limits", {tr:get_write_buffer_limits()})
  tr:write(string.rep("x", 8 << 20))
  t("buffered", tr:get_write_buffer_size() > 0)
  tr:close()
  finish(t, rec, proc)
  t.lines = {}
  t("peer", (proc.stdout:read():gsub("%s+$", "")))
  t:dump()
end)

scenario("write_flow_chunks", function(t)  -- many writes to a peer not reading yet
  local tr, rec, proc = connect(t, "slow")
  local chunk = string.rep("x", 256 << 10)
  for _ = 1, 32 do tr:write(chunk) end
  t("buffered", tr:get_write_buffer_size() > 0)
  tr:close()
  finish(t, rec, proc)
end)

-- }================================================= extra info

scenario("extra_info", function(t)
  local tr, rec, proc = connect(t, "client_closes")
  local cert = tr:get_extra_info("peercert")
  t("peercert subject", cert.subject[#cert.subject][1][2], "san", #cert.subjectAltName)
  local cipher = tr:get_extra_info("cipher")
  t("cipher", type(cipher) == "table" and "tuple" or type(cipher), #cipher, cipher[2])
  t("compression", tr:get_extra_info("compression"))
  t("ssl_object", tr:get_extra_info("ssl_object") ~= nil)
  t("sslcontext", tr:get_extra_info("sslcontext") ~= nil)
  t("peername", tr:get_extra_info("peername")[1])
  t("socket", tr:get_extra_info("socket") ~= nil)
  t("unknown", tr:get_extra_info("nonesuch"), tr:get_extra_info("nonesuch", 5))
  local obj = tr:get_extra_info("ssl_object")
  t("ssl_object", obj.server_side, obj.server_hostname, obj:version())
  tr:close()
  finish(t, rec, proc)
end)

-- }================================================= servers

-- A TLS server for one connection of a tls_peer.py client in 'mode'
-- (which has no certificate: 'client_cert' requires one).
local function serve(t, mode, opts, client_cert)
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function(_, ctx) t("exception handler", ctx.message) end)
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  ctx:load_cert_chain(CERTDIR .. "/server.pem", CERTDIR .. "/server.key")
  if client_cert then
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx:load_verify_locations(CERTDIR .. "/ca.pem")
  end
  local recs = {}
  local function factory()
    t("factory")
    recs[#recs + 1] = recorder(t, nil, mode == "c_wait_close")
    return recs[#recs]
  end
  opts = opts or {}
  opts.ssl = ctx
  local srv = loop:create_server(factory, "127.0.0.1", 0, opts)
  local proc = eddy.create_subprocess_exec(PYTHON, PEER, mode, CERTDIR,
                                           tostring(srv.sockets[1]:getsockname()[2]),
                                           {stderr = eddy.subprocess.DEVNULL})
  eddy.wait_for(function() return proc:wait() end, 10)
  if recs[1] and recs[1].tr then
    eddy.wait_for(recs[1].done, 5)
  else
    eddy.sleep(0.5)
  end
  srv:close()
  t:dump()
end

scenario_of("srv_close_notify", serve, "c_close_notify")
scenario_of("srv_tcp_close", serve, "c_tcp_close")
scenario_of("srv_close_by_us", serve, "c_wait_close")
scenario_of("srv_garbage", serve, "c_garbage")
scenario_of("srv_silent", serve, "c_silent", {ssl_handshake_timeout = 0.3})
scenario_of("srv_refused", serve, "c_rogue")  -- the client does not trust us
scenario_of("srv_no_client_cert", serve, "c_close_notify", nil, true)

-- }================================================= streams

-- Close the writer, wait for it and the peer; then the trace.
local function stream_done(t, w, proc)
  w:close()
  w:wait_closed()
  eddy.wait_for(function() return proc:wait() end, 10)
  t:dump()
end

scenario("st_lines", function(t)
  local port, proc = peer("lines")
  local r, w = eddy.open_connection("127.0.0.1", port, options())
  for _ = 1, 3 do t("readline", q(r:readline())) end
  local ok, e = pcall(r.readexactly, r, 10)
  t("readexactly", ename(e), q(e.partial), e.expected)
  t("at_eof", r:at_eof())
  stream_done(t, w, proc)
end)

local function st_starttls(t, mode)
  local port, proc = peer(mode)
  local r, w = eddy.open_connection("127.0.0.1", port)
  local old = w.transport
  w:write("STARTTLS\n")
  t("readline", q(r:readline()))
  eddy.sleep(0.1)  -- starttls_extra: the plain leftover is in the reader now
  w:start_tls(client_context(), {server_hostname = "localhost"})
  t("new transport", w.transport ~= old, "old closing", old:is_closing())
  t("ssl_object", w:get_extra_info("ssl_object") ~= nil)
  if mode == "starttls_extra" then t("readline", q(r:readline())) end
  t("read", q(r:readexactly(5)))
  w:write("world")
  t("read at close", q(r:read()))
  stream_done(t, w, proc)
end

scenario_of("st_starttls", st_starttls, "starttls")
scenario_of("st_starttls_extra", st_starttls, "starttls_extra")

scenario("st_starttls_errors", function(t)
  local port, proc = peer("close_notify")
  local _, w = eddy.open_connection("127.0.0.1", port, options())
  local ok, e = pcall(w.start_tls, w, client_context(), {server_hostname = "localhost"})
  if ok then t("twice ok") else t("start_tls on TLS", ename(e)) end
  proc:kill()
  proc:wait()
  w:close()
  ok, e = pcall(w.wait_closed, w)
  if not ok then t("wait_closed", ename(e)) end
  t:dump()
end)

-- }=================================================

local prefix = arg[2] or ""
for _, s in ipairs(scenarios) do  -- each on a loop of its own
  if s.name:sub(1, #prefix) == prefix then
    local t = setmetatable({name = s.name, lines = {}}, Trace)
    warn = function(...) t("log", table.concat({...})) end  -- as tls.py traces asyncio's log
    eddy.run(s.fn, t)
  end
end
