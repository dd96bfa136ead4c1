-- TLS (API.md §3 ssl options and start_tls, §7 extra info, §10 eddy.ssl):
-- eddy against eddy, against `openssl s_server`/`s_client` and against
-- Python's asyncio, on 127.0.0.1 with certificates made by
-- support/tls.lua.  Descriptions name the CPython test
-- (Lib/test/test_asyncio/test_ssl.py, test_sslproto.py, test_ssl.py)
-- a case follows, where there is one.
local eddy = require "eddy"
local ssl = require "eddy.ssl"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local tls = require "support.tls"
local tmp = require "support.tmp"
local raises = checks.raises

local PYTHON = "/usr/bin/python3"

local server_context, client_context = tls.server_context, tls.client_context

-- A TLS echo server (protocols); returns server, port, protocols.
local function tls_echo_server(loop, ctx)
  return net.echo_server(loop, "127.0.0.1", {ssl = ctx or server_context()})
end

-- An openssl command in the background; its stdin stays open for
-- 'hold' seconds (s_server and s_client end when their input does).
local function openssl(args, hold)
  return net.spawn(string.format("sleep %d | openssl %s", hold or 5, args), 20)
end

-- Connect a Recorder over TLS to 'srv' (a server on 127.0.0.1), verifying
-- it as localhost; 'extra' options are added.  Returns transport, recorder.
local function tls_connect(loop, srv, extra)
  local opts = {ssl = client_context(), server_hostname = "localhost"}
  for k, v in pairs(extra or {}) do opts[k] = v end
  local rec = net.recorder(loop)
  local t = loop:create_connection(function() return rec end, "127.0.0.1",
                                   srv.sockets[1]:getsockname()[2], opts)
  return t, rec
end

-- A TLS server whose connections stop reading at once; returns the
-- server and a function giving the server side's SSL transport.
local function paused_server(loop)
  local server_t
  local srv = loop:create_server(function()
    return {connection_made = function(_, t) server_t = t t:pause_reading() end}
  end, "127.0.0.1", 0, {ssl = server_context()})
  return srv, function() return server_t end
end

local function free_port(loop)
  local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
  local port = srv.sockets[1]:getsockname()[2]
  srv:close()
  srv:wait_closed()
  return port
end

teardown(function() tls.cleanup() end)

-- A peer written with Python's blocking ssl module, as CPython's test_ssl
-- threads: 'body' runs with 'sock' (a plain socket: connected to 'port'
-- if given, else the one connection accepted on a port printed first),
-- 'server_ctx', 'client_ctx' (trusting ca.pem, no name check) and
-- recv_all(sock, n); "DONE" is printed after it.  Returns the process
-- (net.spawn's) and, for a server, its port.
local function python_peer(body, port)
  local script = tmp.file(string.format([[
import socket, ssl, sys, time
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(%q, %q)
client_ctx = ssl.create_default_context(cafile=%q)
client_ctx.check_hostname = False
def recv_all(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data
if len(sys.argv) > 1:
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
else:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    print(listener.getsockname()[1], flush=True)
    sock, _ = listener.accept()
    sock.settimeout(10)
%s
print("DONE", flush=True)
]], tls.path("server.pem"), tls.path("server.key"), tls.path("ca.pem"), body), ".py")
  if port ~= nil then return net.spawn(string.format("%s %s %d", PYTHON, script, port), 20) end
  return net.spawn_server(string.format("%s %s", PYTHON, script), 20)
end

-- Wait until the Python peer has run its body to the end.
local function peer_done(proc)
  net.wait_until(proc.done, 15)
  assert.truthy(proc.output():find("DONE", 1, true), proc.output())
  proc.cleanup()
end


describe("eddy.ssl.SSLContext", function()
  it("has Python's defaults for client and server contexts", function()
    local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
    assert.is_true(c.check_hostname)
    assert.equal(ssl.TLSVersion.TLSv1_2, c.minimum_version)
    assert.equal(ssl.TLSVersion.MAXIMUM_SUPPORTED, c.maximum_version)
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert.equal(ssl.CERT_NONE, s.verify_mode)
    assert.is_false(s.check_hostname)
    assert.equal(ssl.PROTOCOL_TLS_CLIENT, ssl.SSLContext().protocol)
    assert.truthy(tostring(s):find("server", 1, true))
  end)

  it("ties check_hostname and verify_mode together as Python 3.7+", function()
    local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    raises(function() c.verify_mode = ssl.CERT_NONE end,
           {errors.ValueError, "Cannot set verify_mode to CERT_NONE when check_hostname is enabled"})
    c.check_hostname = false
    c.verify_mode = ssl.CERT_NONE
    c.check_hostname = true
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
    raises(function() c.verify_mode = 7 end, errors.ValueError)
  end)

  it("refuses unknown fields, bad versions and bad protocols", function()
    local c = ssl.SSLContext()
    raises(function() c.verfy_mode = ssl.CERT_NONE end, "no settable field 'verfy_mode'")
    raises(function() c.minimum_version = 0x999 end, errors.ValueError)
    raises(function() c.minimum_version = ssl.TLSVersion.TLSv1_3 end, {errors.ValueError, "not supported"})
    raises(function() ssl.SSLContext(3) end, errors.ValueError)
    raises(function() ssl.create_default_context("BOTH") end, errors.ValueError)
    raises(function() ssl.create_default_context(nil, {cafle = "x"}) end, "unknown option 'cafle'")
    -- wrong types are argument errors of the function called, at the caller's line
    local here = debug.getinfo(1, "S").short_src
    for _, case in ipairs {
      {function() ssl.SSLContext("client") end, "bad argument #1 to 'SSLContext' (integer expected, got string)"},
      {function() ssl.create_default_context(nil, {cafile = 5}) end,
       "bad argument #2 to 'create_default_context' (string option 'cafile' expected, got number)"},
    } do
      local err = raises(case[1], case[2])
      assert.equal(here, err:match("^([^:]+):%d+: bad argument"))
    end
  end)

  it("create_default_context trusts the system's CAs (test_create_default_context)", function()
    local c = ssl.create_default_context()
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
    assert.is_true(c.check_hostname)
    assert.is_true(c:cert_store_stats().x509 > 0)
    local s = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert.equal(ssl.PROTOCOL_TLS_SERVER, s.protocol)
    assert.equal(0, s:cert_store_stats().x509)
  end)

  it("load_verify_locations takes a file, PEM data, or a directory", function()
    local c = ssl.SSLContext()
    c:load_verify_locations(tls.path("ca.pem"))
    assert.equal(1, c:cert_store_stats().x509)
    assert.equal(1, c:cert_store_stats().x509_ca)
    local f = assert(io.open(tls.path("ca.pem")))
    local pem = f:read("a")
    f:close()
    c:load_verify_locations(nil, nil, pem)
    assert.equal(2, c:cert_store_stats().x509)
    raises(function() c:load_verify_locations() end, "cannot be all omitted")
    raises(function() c:load_verify_locations("/nonexistent/ca.pem") end, errors.FileNotFoundError)
    raises(function() c:load_verify_locations(nil, nil, "not a certificate") end, errors.SSLError)
  end)

  it("load_cert_chain checks files, passwords and that key and certificate match", function()
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    raises(function() s:load_cert_chain("/nonexistent.pem") end, errors.FileNotFoundError)
    raises(function() s:load_cert_chain(42) end, "bad argument #1 to 'load_cert_chain'")
    local err = raises(function()
      s:load_cert_chain(tls.path("server.pem"), tls.path("client.key"))
    end, errors.SSLError)
    assert.equal("KEY_VALUES_MISMATCH", err.reason)
    raises(function() s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key")) end,
           errors.SSLError)
    raises(function() s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), "wrong") end,
           errors.SSLError)
    s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), "s3cret")
    s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), function() return "s3cret" end)
  end)

  it("bad input: a password that is neither a string nor a function is load_cert_chain's "
     .. "argument error, at the caller's line (found by tools/fuzz/api_fuzz.lua: it named ssl.lua's)",
     function()
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for _, bad in ipairs {{}, true, s} do
      local err = checks.argerror(function()
        s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), bad)
      end, 3, "load_cert_chain")
      assert.matches("^spec/tls_spec.lua:%d+: .*string or function expected", err)
    end
    -- and a password function that returns no string, at the caller's line too
    local ok, err = pcall(function()
      s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), function() return 42 end)
    end)
    assert.is_false(ok)
    assert.matches("^spec/tls_spec.lua:%d+: password callback must return a string", err)
  end)

  it("load_cert_chain decrypts PKCS#8 keys encrypted with PBES2 and AES (OpenSSL's default)", function()
    for _, name in ipairs {"server-p8-aes128.key", "server-p8-aes256.key"} do
      local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      s:load_cert_chain(tls.path("server.pem"), tls.path(name), "s3cret")
      s:load_cert_chain(tls.path("server.pem"), tls.path(name), function() return "s3cret" end)
      local err = raises(function()
        s:load_cert_chain(tls.path("server.pem"), tls.path(name), "wrong")
      end, errors.SSLError)
      assert.equal("BAD_DECRYPT", err.reason)
      raises(function() s:load_cert_chain(tls.path("server.pem"), tls.path(name)) end, errors.SSLError)
    end
    -- and the decrypted key serves connections
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    s:load_cert_chain(tls.path("server.pem"), tls.path("server-p8-aes256.key"), "s3cret")
    local got = eddy.run(function()
      local srv = eddy.start_server(function(_, w) w:write("hello\n"); w:close() end,
                                    "127.0.0.1", 0, {ssl = s})
      local client = ssl.create_default_context(nil, {cafile = tls.path("ca.pem")})
      local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                        {ssl = client, server_hostname = "localhost"})
      local line = eddy.wait_for(function() return r:readline() end, 5)
      w:close()
      srv:close()
      return line
    end)
    assert.equal("hello\n", got)
  end)

  it("set_ciphers takes suite names and refuses what it does not know", function()
    local c = ssl.SSLContext()
    c:set_ciphers("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    c:set_ciphers("TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384:TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256")
    local err = raises(function() c:set_ciphers("HIGH:!aNULL") end, errors.SSLError)
    assert.equal("NO_CIPHER_MATCH", err.reason)
    raises(function() c:set_ciphers("") end, "No cipher can be selected")
    raises(function() c:set_alpn_protocols({("x"):rep(256)}) end, errors.ValueError)
    raises(function() c:set_alpn_protocols({1}) end, "string expected")
  end)

  it("argument errors blame the caller's line, not eddy's own files", function()
    local c = ssl.SSLContext()
    local here = debug.getinfo(1, "S").short_src
    for _, call in ipairs {
      {function() c:load_verify_locations() end, "load_verify_locations' %(cafile, capath"},
      {function() c:load_verify_locations({}) end, "#1 to 'load_verify_locations'"},
      {function() c:load_verify_locations(nil, nil, true) end, "#3 to 'load_verify_locations'"},
      {function() c:set_alpn_protocols("h2") end, "#1 to 'set_alpn_protocols' %(table expected"},
      {function() c:set_alpn_protocols({"h2", 3}) end, "protocol #2: string expected"},
      {function() c:set_ciphers(nil) end, "#1 to 'set_ciphers'"},
      {function() c:load_cert_chain("x.pem", {}) end, "#2 to 'load_cert_chain'"},
    } do
      local ok, err = pcall(call[1])
      assert.is_false(ok)
      assert.matches(call[2], err)
      assert.equal(here, err:match("^(.-):%d+: bad argument"), err)
    end
  end)
end)

describe("TLS connections between eddy peers", function()
  it("echo over create_connection/create_server with asyncio's callback order (test_create_connection_ssl, test_create_ssl_connection, test_create_server_ssl, test_create_server_ssl_verified)",
     async(function(loop)
    local srv <close>, port, protos = tls_echo_server(loop)
    local rec = net.recorder(loop)
    local t, p = loop:create_connection(function() return rec end, "127.0.0.1", port,
                                        {ssl = client_context(), server_hostname = "localhost"})
    assert.equal(rec, p)
    assert.equal(t, rec.transport)
    assert.same({"made"}, rec.events)
    assert.truthy(tostring(t):find("SSLTransport", 1, true))
    t:write("hello ")
    t:writelines({"tls ", "world", eddy.Buffer(1)})
    t:write(eddy.Buffer(1))  -- one zero byte
    rec:wait_bytes(17)
    assert.equal("hello tls world\0\0", rec:data())
    raises(function() t:write(5) end, "bad argument #1 to 'write' (string or eddy.Buffer expected, got number)")
    raises(function() t:writelines({"a", 5}) end, "bad element #2 in 'writelines' (string or eddy.Buffer expected, got number)")
    -- extra info: TLS's own, and the plain transport's underneath
    local obj = t:get_extra_info("ssl_object")
    assert.equal("TLSv1.2", obj:version())
    assert.is_false(obj.server_side)
    assert.equal("localhost", obj.server_hostname)
    assert.equal(t:get_extra_info("sslcontext"), obj.context)
    local cipher = t:get_extra_info("cipher")
    assert.equal("TLSv1.2", cipher[2])
    assert.is_true(cipher[3] >= 128)
    assert.same(cipher, {obj:cipher()})
    assert.is_true(ssl.is_context(t:get_extra_info("sslcontext")))
    assert.equal(port, t:get_extra_info("peername")[2])
    assert.equal("x", t:get_extra_info("nothing", "x"))
    local cert = t:get_extra_info("peercert")
    assert.same({{{"countryName", "XX"}}, {{"organizationName", "eddy"}}, {{"commonName", "localhost"}}},
                cert.subject)
    assert.same({{{"commonName", "eddy test CA"}}}, cert.issuer)
    assert.same({{"DNS", "localhost"}, {"IP Address", "127.0.0.1"}, {"IP Address", "::1"}},
                cert.subjectAltName)
    assert.truthy(cert.notAfter:match("^%a%a%a [ %d]%d %d%d:%d%d:%d%d %d%d%d%d GMT$"))
    assert.truthy(cert.serialNumber:match("^%x+$"))
    assert.equal(3, cert.version)
    assert.equal(1, #protos)
    assert.is_false(t:can_write_eof())
    raises(function() t:write_eof() end, "half-closes")
    t:close()
    assert.is_true(t:is_closing())
    net.wait(rec.lost_fut)
    -- the peer's close_notify is an eof_received even on the closing
    -- side, as asyncio's _do_shutdown has it
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    net.wait_until(function() return protos[1].lost end)
    assert.is_nil(protos[1].err)
    t:write("after close")  -- dropped, as asyncio drops it
  end))

  it("sendfile reads the file and writes it encrypted (test_sendfile_ssl, fallback mode)",
     async(function(loop)
    local srv <close>, port, protos = tls_echo_server(loop)
    local path = tmp.path()
    local f = assert(io.open(path, "wb"))
    local content = {}
    for i = 1, 20000 do content[i] = string.format("line %05d\n", i) end
    content = table.concat(content)  -- 220,000 bytes
    f:write(content)
    f:close()
    f = assert(io.open(path, "rb"))
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port,
                                     {ssl = client_context(), server_hostname = "localhost"})
    t:set_write_buffer_limits(16384)  -- make the send steps wait
    assert.equal(#content - 100, loop:sendfile(t, f, 100))
    assert.equal(#content, f:seek())  -- the position follows, as asyncio's
    rec:wait_bytes(#content - 100, 10)
    assert.equal(content:sub(101), rec:data())
    assert.is_true(t:is_reading())  -- paused while sending, resumed after
    assert.equal(5000, loop:sendfile(t, f, 0, 5000))
    assert.equal(5000, f:seek())
    raises(function() loop:sendfile(t, f, 0, nil, {fallback = false}) end,
           {errors.RuntimeError, "fallback is disabled"})  -- test_sendfile_no_fallback_for_fallback_transport
    t:close()
    raises(function() loop:sendfile(t, f) end, {errors.RuntimeError, "Transport is closing"})
    f:close()
    os.remove(path)
    net.wait(rec.lost_fut)
    assert.equal(1, #protos)
  end))

  it("a close from the server side reaches the client as eof then connection_lost", async(function(loop)
    local server_t
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) server_t = t t:write("bye") t:close() end}
    end, "127.0.0.1", 0, {ssl = server_context()})
    local _, rec = tls_connect(loop, srv)
    net.wait(rec.lost_fut)
    assert.equal("bye", rec:data())
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    assert.is_true(server_t:is_closing())
  end))

  -- asyncio's plain transport keeps its socket until its connection_lost
  -- (SSLProtocol's), which calls the application's connection_lost soon:
  -- that one comes after the socket closed.
  it("a TLS transport's socket stays open after close() and abort() until the "
     .. "plain transport's connection_lost", async(function(loop)
    local srv <close> = tls_echo_server(loop)
    for _, how in ipairs {"close", "abort"} do
      local t, rec = tls_connect(loop, srv)
      net.wait(rec.made_fut)
      rec.opts.on_lost = function(self) self.fd_in_lost = net.descriptor(self.transport) end
      t[how](t)
      assert.equal("open", net.descriptor(t), how)
      net.wait(rec.lost_fut)
      assert.are_not.equal("open", rec.fd_in_lost, how)
    end
  end))

  it("streams: 1 MiB both ways through open_connection/start_server, with drain "
     .. "(test_open_connection_no_loop_ssl)", async(function(loop)
    local srv <close> = eddy.start_server(function(r, w)
      while true do
        local data = r:read(65536)
        if data == "" then break end
        w:write(data:upper())
        w:drain()
      end
      w:close()
    end, "127.0.0.1", 0, {ssl = server_context()})
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                      {ssl = client_context(), server_hostname = "localhost"})
    local payload = string.rep("abcdefghijklmnop", 65536)
    local reader = eddy.create_task(function() return r:readexactly(#payload) end)
    w:write(payload)
    w:drain()
    assert.equal(payload:upper(), eddy.wait_for(reader, 10))
    w:close()
    w:wait_closed()
  end, 30))

  it("flow control crosses the layer: a slow reader pauses the writer", async(function(loop)
    local srv <close>, server_side = paused_server(loop)
    local t, rec = tls_connect(loop, srv)
    t:set_write_buffer_limits(65536)
    local chunk = string.rep("x", 65536)
    net.wait_until(function()
      t:write(chunk)
      return rec.events[#rec.events] == "pause"
    end, 10)
    assert.is_true(t:get_write_buffer_size() > 0)
    assert.is_false(server_side():is_reading())
    server_side():resume_reading()
    net.wait_until(function() return rec.events[#rec.events] == "resume" end, 10)
    t:abort()
    net.wait(rec.lost_fut)
  end, 30))

  it("the write buffer limits outlive the connection, as asyncio's and the plain transports'",
     async(function(loop)
    local srv <close> = tls_echo_server(loop)
    local t, rec = tls_connect(loop, srv)
    t:set_write_buffer_limits(1000, 100)
    t:abort()
    net.wait(rec.lost_fut)
    assert.same({100, 1000}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits(2000)
    assert.same({500, 2000}, {t:get_write_buffer_limits()})
    assert.equal(0, t:get_write_buffer_size())
  end))

  it("over UNIX sockets (test_open_unix_connection_no_loop_ssl, test_create_ssl_unix_connection, "
     .. "test_create_unix_server_ssl, test_create_unix_server_ssl_verified), and on an accepted "
     .. "socket, plain or TLS (connect_accepted_socket: test_connect_accepted_socket, "
     .. "test_ssl_connect_accepted_socket)", async(function(loop)
    local path = tmp.path(".sock")
    local srv <close> = eddy.start_unix_server(function(r, w)
      w:write("unix " .. r:readline())
      w:close()
    end, path, {ssl = server_context()})
    local r, w = eddy.open_unix_connection(path, {ssl = client_context(), server_hostname = "localhost"})
    w:write("tls\n")
    assert.equal("unix tls\n", r:readline())
    w:close()
    w:wait_closed()
    os.remove(path)
    -- the server side of a socket accepted by hand, plain and TLS
    local listener = eddy.socket.socket()
    listener:bind({"127.0.0.1", 0})
    listener:listen(1)
    listener:setblocking(false)
    local port = listener:getsockname()[2]
    for _, tls_on in ipairs {false, true} do
      local client = eddy.create_task(function()
        local cr, cw = eddy.open_connection("127.0.0.1", port,
          tls_on and {ssl = client_context(), server_hostname = "localhost"} or nil)
        cw:write("accepted\n")
        local line = cr:readline()
        cw:close()
        return line
      end)
      local conn = loop:sock_accept(listener)
      local rec = net.recorder(loop, {on_data = function(self, d) self.transport:write(d:upper()) end})
      local t = loop:connect_accepted_socket(function() return rec end, conn,
                                             tls_on and {ssl = server_context()} or nil)
      assert.equal(tls_on, t:get_extra_info("ssl_object") ~= nil)
      if tls_on then assert.is_true(t:get_extra_info("ssl_object").server_side) end
      assert.equal("ACCEPTED\n", eddy.wait_for(client, 5))
      net.wait(rec.lost_fut)
      assert.equal("accepted\n", rec:data())
      assert.is_nil(rec.err)
    end
    listener:close()
  end))

  it("ALPN: both sides see the protocol they agreed on", async(function(loop)
    local sctx = server_context()
    sctx:set_alpn_protocols({"h2", "http/1.1"})
    local srv <close>, port, protos = tls_echo_server(loop, sctx)
    local cctx = client_context()
    cctx:set_alpn_protocols({"http/1.1"})
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = cctx, server_hostname = "localhost"})
    assert.equal("http/1.1", w:get_extra_info("ssl_object"):selected_alpn_protocol())
    net.wait_until(function() return protos[1].t ~= nil end)
    assert.equal("http/1.1", protos[1].t:get_extra_info("ssl_object"):selected_alpn_protocol())
    w:close()
    w:wait_closed()
  end))

  it("client certificates: required by the server, seen in its peercert", async(function(loop)
    local sctx = server_context()
    sctx.verify_mode = ssl.CERT_REQUIRED
    sctx:load_verify_locations(tls.path("ca.pem"))
    local srv <close>, port, protos = tls_echo_server(loop, sctx)
    local cctx = client_context()
    cctx:load_cert_chain(tls.path("client.pem"), tls.path("client.key"))
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = cctx, server_hostname = "localhost"})
    w:write("ping")
    assert.equal("ping", r:readexactly(4))
    net.wait_until(function() return protos[1].t ~= nil end)
    local cert = protos[1].t:get_extra_info("peercert")
    assert.same({{{"organizationName", "eddy"}}, {{"commonName", "eddy client"}}}, cert.subject)
    w:close()
    w:wait_closed()
    -- without a certificate the handshake fails
    raises(function()
      eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = "localhost"})
    end, errors.OSError)
  end))

  it("an unverifiable or misnamed server is refused (test_create_connection_ssl_verify_failed, "
     .. "test_create_connection_ssl_failed_certificate, test_create_server_ssl_verify_failed, "
     .. "test_create_server_ssl_match_failed, test_create_unix_server_ssl_verify_failed)",
     async(function(loop)
    local srv <close>, port = tls_echo_server(loop)
    local factory = function() return {} end
    local err = raises(function()
      loop:create_connection(factory, "127.0.0.1", port, {ssl = ssl.SSLContext(), server_hostname = "localhost"})
    end, errors.SSLCertVerificationError)
    assert.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
    assert.truthy(err.verify_message:find("not correctly signed by the trusted CA", 1, true))
    err = raises(function()
      loop:create_connection(factory, "127.0.0.1", port, {ssl = client_context(), server_hostname = "wrong.example"})
    end, errors.SSLCertVerificationError)
    assert.truthy(err.verify_message:find("Common Name (CN) does not match", 1, true))
    -- an IP address is checked against the IP subjectAltNames
    local t = loop:create_connection(factory, "127.0.0.1", port, {ssl = client_context()})
    t:close()
    -- check_hostname off: any name will do, the chain is still verified
    local ctx = client_context()
    ctx.check_hostname = false
    t = loop:create_connection(factory, "127.0.0.1", port, {ssl = ctx, server_hostname = "wrong.example"})
    t:close()
    -- verification off: nothing is checked, and peercert is empty
    ctx = ssl.SSLContext()
    ctx.check_hostname = false
    ctx.verify_mode = ssl.CERT_NONE
    t = loop:create_connection(factory, "127.0.0.1", port, {ssl = ctx})
    assert.same({}, t:get_extra_info("peercert"))
    assert.is_string(t:get_extra_info("ssl_object"):getpeercert(true))
    t:close()
    -- the same refusal over a UNIX socket
    local path = tmp.path(".sock")
    local usrv <close> = loop:create_unix_server(function() return {} end, path,
                                                 {ssl = server_context()})
    raises(function()
      loop:create_unix_connection(factory, path, {ssl = ssl.SSLContext(), server_hostname = "localhost"})
    end, errors.SSLCertVerificationError)
    eddy.sleep(0.05)
  end))

  it("server_hostname = '' turns the name check off, not the chain's, even with check_hostname on", async(function(loop)
    -- asyncio's docs (create_connection): "Setting server_hostname to an
    -- empty string will disable the hostname matching"; its SSLProtocol
    -- then wraps with no name, whatever the context's check_hostname.
    local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx:load_cert_chain(tls.path("othercn.pem"), tls.path("othercn.key"))  -- DNS:localhost only
    local srv <close>, port = tls_echo_server(loop, ctx)
    local factory = function() return {} end
    raises(function()  -- the host, 127.0.0.1, is not in the certificate
      loop:create_connection(factory, "127.0.0.1", port, {ssl = client_context()})
    end, errors.SSLCertVerificationError)
    local client = client_context()
    local t = loop:create_connection(factory, "127.0.0.1", port, {ssl = client, server_hostname = ""})
    assert.is_true(client.check_hostname)
    assert.is_nil(t:get_extra_info("ssl_object").server_hostname)
    t:close()
    local rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rogue:load_cert_chain(tls.path("rogue.pem"), tls.path("rogue.key"))
    local rogue_srv <close>, rogue_port = tls_echo_server(loop, rogue)
    raises(function()
      loop:create_connection(factory, "127.0.0.1", rogue_port, {ssl = client_context(), server_hostname = ""})
    end, errors.SSLCertVerificationError)
    eddy.sleep(0.05)
  end))

  it("a DNS name is checked against the CN when no DNS subjectAltName is there, as OpenSSL's",
     async(function(loop)
    local function serving(name)
      local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      ctx:load_cert_chain(tls.path(name .. ".pem"), tls.path(name .. ".key"))
      return tls_echo_server(loop, ctx)
    end
    local function connect(port, hostname)
      return loop:create_connection(function() return {} end, "127.0.0.1", port,
                                    {ssl = client_context(), server_hostname = hostname})
    end
    -- CN=localhost, subjectAltName IP:127.0.0.1 only: Python accepts "localhost"
    local srv <close>, port = serving("ipsan")
    connect(port, "localhost"):close()
    connect(port, "127.0.0.1"):close()
    raises(function() connect(port, "other.test") end, errors.SSLCertVerificationError)
    -- CN=other.test, subjectAltName DNS:localhost: the CN does not count
    local srv2 <close>, port2 = serving("othercn")
    connect(port2, "localhost"):close()
    raises(function() connect(port2, "other.test") end, errors.SSLCertVerificationError)
    -- a wildcard CN names one label, below two at least
    local srv3 <close>, port3 = serving("wildcn")
    connect(port3, "a.eddy.test"):close()
    raises(function() connect(port3, "a.b.eddy.test") end, errors.SSLCertVerificationError)
    local srv4 <close>, port4 = serving("tldcn")
    raises(function() connect(port4, "eddy.test") end, errors.SSLCertVerificationError)
    eddy.sleep(0.05)
  end))

  it("ssl = true is the default context, which rejects a private CA", async(function(loop)
    local srv <close>, port = tls_echo_server(loop)
    raises(function()
      loop:create_connection(function() return {} end, "localhost", port, {ssl = true})
    end, errors.SSLCertVerificationError)
  end))

  it("a client protocol whose method lookups raise: create_connection raises that error",
     async(function(loop)
    -- The SSL protocol's connection_lost looked connection_lost up before
    -- waking the handshake's waiter, so the raise left it waiting forever.
    loop:set_exception_handler(function() end)
    local srv <close>, port = tls_echo_server(loop)
    local function bomb()
      return setmetatable({}, {__index = function(_, k) error("no " .. k, 0) end})
    end
    local ok, err = pcall(eddy.wait_for, function()
      return loop:create_connection(bomb, "127.0.0.1", port,
                                    {ssl = client_context(), server_hostname = "localhost"})
    end, 5)
    assert.is_false(ok)
    assert.equal("no connection_made", tostring(err))
  end))

  it("a handshake that outlives ssl_handshake_timeout is aborted (test_handshake_timeout, "
     .. "test_create_connection_ssl_slow_handshake)",
     async(function(loop)
    local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local t0 = loop:time()
    local err = raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                             {ssl = client_context(), server_hostname = "localhost",
                              ssl_handshake_timeout = 0.2})
    end, errors.ConnectionAbortedError)
    assert.truthy(tostring(err):find("SSL handshake is taking longer than 0.2 seconds", 1, true))
    assert.is_true(loop:time() - t0 < 3)
  end))

  it("a server aborts a client that never starts its handshake (test_handshake_timeout, server side)",
     async(function(loop)
    local made = false
    local srv <close> = loop:create_server(function()
      return {connection_made = function() made = true end}
    end, "127.0.0.1", 0, {ssl = server_context(), ssl_handshake_timeout = 0.2})
    local rec = net.recorder(loop)
    loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
    net.wait(rec.lost_fut, 5)
    assert.equal("made", rec.events[1])
    assert.equal("lost", rec.events[#rec.events])
    assert.is_nil(rec.chunks[1])
    assert.is_false(made)
  end))

  it("a peer that never answers close_notify is cut off after ssl_shutdown_timeout (test_shutdown_timeout)",
     async(function(loop)
    local srv <close>, server_side = paused_server(loop)
    local t, rec = tls_connect(loop, srv, {ssl_shutdown_timeout = 0.2})
    local t0 = loop:time()
    t:close()
    net.wait(rec.lost_fut, 5)
    assert.is_true(errors.is(rec.err, errors.TimeoutError), tostring(rec.err))
    assert.equal("SSL shutdown timed out", rec.err.message)
    assert.is_true(loop:time() - t0 >= 0.15)
    server_side():abort()
  end))

  it("garbage instead of TLS fails the handshake on both sides", async(function(loop)
    -- a plain server answering with HTTP
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) t:write("HTTP/1.1 400 Bad Request\r\n\r\n") t:close() end}
    end, "127.0.0.1", 0)
    raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                             {ssl = client_context(), server_hostname = "localhost"})
    end, errors.OSError)
    -- a TLS server sent garbage: its protocol never sees a connection
    local made = false
    local tsrv <close> = loop:create_server(function()
      return {connection_made = function() made = true end}
    end, "127.0.0.1", 0, {ssl = server_context()})
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", tsrv.sockets[1]:getsockname()[2])
    t:write(string.rep("\22\3\1\0\5garbage", 100))
    net.wait(rec.lost_fut)
    assert.is_false(made)
  end))

  it("a BufferedProtocol gets the plaintext through get_buffer/buffer_updated", async(function(loop)
    local payload = string.rep("0123456789", 10000)
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) t:write(payload) t:close() end}
    end, "127.0.0.1", 0, {ssl = server_context()})
    local buf, got, hints = eddy.Buffer(1000), {}, {}
    local rec = net.recorder(loop)
    function rec:get_buffer(sizehint) hints[#hints + 1] = sizehint return buf end
    function rec:buffer_updated(n) got[#got + 1] = buf:tostring(1, n) end
    loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                           {ssl = client_context(), server_hostname = "localhost"})
    net.wait(rec.lost_fut)
    assert.equal(payload, table.concat(got))
    assert.is_true(hints[1] > 0)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
  end))

  it("buffers smaller than the data take it in pieces; an empty one is a RuntimeError "
     .. "(test_buf_feed_data)", async(function(loop)
    loop:set_exception_handler(function() end)
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) t:write("12345") t:close() end}
    end, "127.0.0.1", 0, {ssl = server_context()})
    for _, size in ipairs {1, 2, 4, 100, 0} do
      local buf, got = eddy.Buffer(size), {}
      local rec = net.recorder(loop)
      function rec:get_buffer() return buf end
      function rec:buffer_updated(n) got[#got + 1] = buf:tostring(1, n) end
      loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                             {ssl = client_context(), server_hostname = "localhost"})
      net.wait(rec.lost_fut)
      if size > 0 then
        assert.equal("12345", table.concat(got))
        assert.is_nil(rec.err)
      else
        assert.same({}, got)
        assert.is_true(errors.is(rec.err, errors.RuntimeError), tostring(rec.err))
        assert.truthy(tostring(rec.err):find("empty buffer", 1, true))
      end
    end
  end))

  it("an error in the protocol's data_received closes the connection, also after resume_reading",
     async(function(loop)
    local messages = {}
    loop:set_exception_handler(function(_, context) messages[#messages + 1] = context end)
    local srv <close>, port = tls_echo_server(loop)
    local rec = net.recorder(loop, {on_data = function() error("boom") end})
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port,
                                     {ssl = client_context(), server_hostname = "localhost"})
    t:pause_reading()
    t:write("echo")
    eddy.sleep(0.1)  -- the echo waits in the paused connection
    t:resume_reading()
    net.wait(rec.lost_fut)
    loop:set_exception_handler(nil)
    assert.truthy(tostring(rec.err):find("boom", 1, true), tostring(rec.err))
    assert.equal(1, #messages)
    assert.equal("Fatal error on SSL protocol", messages[1].message)
  end))

  it("a peer that resets mid-write gives connection_lost with the error", async(function(loop)
    local srv <close> = loop:create_server(function()
      return {data_received = function(self, _) self.t:abort() end,
              connection_made = function(self, t) self.t = t end}
    end, "127.0.0.1", 0, {ssl = server_context()})
    net.write_until_reset(tls_connect(loop, srv))
  end))

  it("debug mode warns with each handshake's time and each failed handshake", async(function(loop)
    local warnings = {}
    local saved = _G.warn  -- what the Lua modules call
    _G.warn = function(...) warnings[#warnings + 1] = table.concat({...}) end
    loop:set_debug(true)
    local ok, err = pcall(function()
      local srv <close>, port = tls_echo_server(loop)
      local t = loop:create_connection(function() return {} end, "127.0.0.1", port,
                                       {ssl = client_context(), server_hostname = "localhost"})
      t:close()
      pcall(loop.create_connection, loop, function() return {} end, "127.0.0.1", port,
            {ssl = ssl.SSLContext(), server_hostname = "localhost"})
      eddy.sleep(0.05)
    end)
    loop:set_debug(false)
    _G.warn = saved
    assert(ok, err)
    local text = table.concat(warnings, "\n")
    assert.truthy(text:find("SSL handshake took [%d.]+ ms"), text)
    assert.truthy(text:find("SSL handshake failed on verifying the certificate", 1, true), text)
  end))

  it("eof_received returning true warns that it has no effect over TLS (sslproto._call_eof_received)",
     async(function(loop)
    -- asyncio: logger.warning('returning true from eof_received() has no
    -- effect when using ssl'), and the connection closes all the same
    local warnings = {}
    local saved = _G.warn  -- what the Lua modules call
    _G.warn = function(...) warnings[#warnings + 1] = table.concat({...}) end
    local ok, err = pcall(function()
      local srv <close> = loop:create_server(function()
        return {connection_made = function(_, t) t:close() end}
      end, "127.0.0.1", 0, {ssl = server_context()})
      local rec = net.recorder(loop, {eof_keep = true})
      local t = loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                                       {ssl = client_context(), server_hostname = "localhost"})
      net.wait(rec.lost_fut)
      assert.same({"made", "eof", "lost"}, rec.events)
      assert.is_true(t:is_closing())
    end)
    _G.warn = saved
    assert(ok, err)
    assert.same({"returning true from eof_received() has no effect when using ssl"}, warnings)
  end))

  it("streams over TLS return false from eof_received: no warning (streams.py, _over_ssl)", async(function(loop)
    local warnings = {}
    local saved = _G.warn  -- what the Lua modules call
    _G.warn = function(...) warnings[#warnings + 1] = table.concat({...}) end
    local ok, err = pcall(function()
      local srv <close> = eddy.start_server(function(_, w)
        w:write("hi")
        w:close()
      end, "127.0.0.1", 0, {ssl = server_context()})
      local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                        {ssl = client_context(), server_hostname = "localhost"})
      assert.equal("hi", r:read())
      w:close()
      w:wait_closed()
      -- and after writer:start_tls on both sides
      local plain <close> = eddy.start_server(function(sr, sw)
        assert.equal("STARTTLS\n", sr:readline())
        sw:write("GO\n")
        sw:start_tls(server_context())
        sw:write("tls")
        sw:close()
      end, "127.0.0.1", 0)
      r, w = eddy.open_connection("127.0.0.1", plain.sockets[1]:getsockname()[2])
      w:write("STARTTLS\n")
      assert.equal("GO\n", r:readline())
      w:start_tls(client_context(), {server_hostname = "localhost"})
      assert.equal("tls", r:read())
      w:close()
      w:wait_closed()
    end)
    _G.warn = saved
    assert(ok, err)
    assert.same({}, warnings)
  end))

  it("bad options are clear errors (test_handshake_timeout_zero, test_handshake_timeout_negative)",
     async(function(loop)
    local srv <close>, port = tls_echo_server(loop)
    local f = function() return {} end
    raises(function() loop:create_server(f, "127.0.0.1", 0, {ssl = true}) end,
           "bad option 'ssl' to 'create_server' (eddy.ssl.SSLContext expected, got boolean)")
    raises(function() loop:create_connection(f, "127.0.0.1", port, {ssl = 1}) end, "bad option 'ssl'")
    raises(function() loop:create_connection(f, "127.0.0.1", port, {server_hostname = "x"}) end,
           {errors.ValueError, "server_hostname is only meaningful with ssl"})
    for _, bad in ipairs {0, -10} do
      raises(function()
        loop:create_connection(f, "127.0.0.1", port, {ssl = client_context(), ssl_handshake_timeout = bad})
      end, {errors.ValueError, "ssl_handshake_timeout should be a positive number"})
    end
    raises(function()
      loop:create_connection(f, "127.0.0.1", port, {ssl = client_context(), ssl_shutdown_timeout = "x"})
    end, "bad option 'ssl_shutdown_timeout'")
    raises(function()
      loop:create_unix_connection(f, "/nonexistent", {ssl = client_context()})
    end, {errors.ValueError, "server_hostname"})
    local sock = eddy.socket.socket()
    raises(function() loop:create_connection(f, nil, nil, {sock = sock, ssl = client_context()}) end,
           {errors.ValueError, "You must set server_hostname when using ssl without a host"})
    sock:close()
    local ctx = ssl.SSLContext()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    raises(function()
      loop:create_connection(f, "127.0.0.1", port, {ssl = ctx, server_hostname = "localhost"})
    end, "NO_PROTOCOLS_AVAILABLE")
  end))
end)

-- The exchange of CPython's test_create_server_ssl_1: 64 KiB each way,
-- answered "OK", then "SPAM" written in three pieces.
local A_DATA, B_DATA = string.rep("A", 65536), string.rep("B", 65536)

local function serve_spam(r, w)
  assert.equal(A_DATA, r:readexactly(#A_DATA))
  w:write("OK")
  assert.equal(B_DATA, r:readexactly(#B_DATA))
  w:writelines {"SP", "A", "M"}
  w:drain()
  w:close()
end

local function ask_spam(r, w)
  w:write(A_DATA)
  assert.equal("OK", r:readexactly(2))
  w:write(B_DATA)
  assert.equal("SPAM", r:readexactly(4))
end

-- Run fn(1) .. fn(n) at once, bounded by 'timeout'; returns how many
-- returned.  (Each is a closure of its own: gather runs one function once.)
local function at_once(n, fn, timeout)
  local jobs = {}
  for i = 1, n do jobs[i] = function() return fn(i) end end
  return select("#", eddy.wait_for(function() return eddy.gather(table.unpack(jobs)) end, timeout))
end

describe("TLS peers as CPython's test_ssl has them", function()
  it("25 clients at once, each with its own exchange, through start_server and open_connection, "
     .. "with host and port or a connected sock (test_create_server_ssl_1, test_create_connection_ssl_1)",
     async(function(loop)
    local served = 0
    local srv <close> = eddy.start_server(function(r, w)
      serve_spam(r, w)
      served = served + 1
    end, "127.0.0.1", 0, {ssl = server_context(), ssl_handshake_timeout = 10})
    local port = srv.sockets[1]:getsockname()[2]
    local function client(with_sock)
      local opts = {ssl = client_context(), server_hostname = "", ssl_handshake_timeout = 10}
      local r, w
      if with_sock then
        opts.sock = eddy.socket.socket()
        opts.sock:setblocking(false)
        loop:sock_connect(opts.sock, {"127.0.0.1", port})
        r, w = eddy.open_connection(nil, nil, opts)
      else
        r, w = eddy.open_connection("127.0.0.1", port, opts)
      end
      ask_spam(r, w)
      w:close()
      w:wait_closed()
      return true
    end
    assert.equal(25, at_once(25, function(i) return client(i % 2 == 0) end, 60))
    net.wait_until(function() return served == 25 end)
  end, 90))

  it("wait_for cancelling create_connection mid-handshake: TimeoutError, the server sees the "
     .. "connection end, nothing reported (test_ssl_handshake_timeout)", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
    local rec
    local srv <close> = loop:create_server(function() rec = net.recorder(loop) return rec end, "127.0.0.1", 0)
    raises(function()
      eddy.wait_for(function()
        return loop:create_connection(function() return {} end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                                      {ssl = client_context(), server_hostname = "", ssl_handshake_timeout = 10})
      end, 0.3)
    end, errors.TimeoutError)
    net.wait(rec.lost_fut)
    assert.same({}, reports)
  end))

  it("a server that closes during the handshake: ConnectionResetError, and neither connection_made "
     .. "nor connection_lost (test_ssl_handshake_connection_lost; sslproto's test_eof_received_waiter, "
     .. "test_connection_lost)", async(function(loop)
    loop:set_exception_handler(function() end)
    local srv <close> = loop:create_server(function()
      return {data_received = function(self) self.t:close() end,
              connection_made = function(self, t) self.t = t end}
    end, "127.0.0.1", 0)
    local calls = {}
    raises(function()
      loop:create_connection(function()
        return {connection_made = function() calls[#calls + 1] = "made" end,
                connection_lost = function() calls[#calls + 1] = "lost" end}
      end, "127.0.0.1", srv.sockets[1]:getsockname()[2], {ssl = client_context(), server_hostname = ""})
    end, errors.ConnectionResetError)
    checks.turns(3)
    assert.same({}, calls)
  end))

  it("start_tls against a peer that never answers the handshake: wait_for's TimeoutError "
     .. "(test_start_tls_slow_client_cancel)", async(function(loop)
    local got = 0
    local srv <close> = loop:create_server(function()
      return {data_received = function(_, d) got = got + #d end}
    end, "127.0.0.1", 0)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
    t:write(string.rep("1", 1000))
    net.wait_until(function() return got >= 1000 end)
    raises(function()
      eddy.wait_for(function() return loop:start_tls(t, rec, client_context(), {server_hostname = ""}) end, 0.3)
    end, errors.TimeoutError)
    t:close()
  end))

  it("a TLS record corrupted by the peer: readline raises SSLError (test_start_tls_client_corrupted_ssl)",
     async(function(loop)
    loop:set_exception_handler(function() end)
    local proc, port = python_peer([[
raw = sock.dup()
tls_sock = server_ctx.wrap_socket(sock, server_side=True)
tls_sock.sendall(b"A\n")
recv_all(tls_sock, 1)
raw.send(b"please corrupt the SSL connection")
tls_sock.close()
raw.close()
]])
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = ""})
    assert.equal("A\n", r:readline())
    w:write("B")
    raises(function() eddy.wait_for(function() return r:readline() end, 5) end, errors.SSLError)
    w:close()
    pcall(w.wait_closed, w)
    peer_done(proc)
  end))

  it("a peer's close_notify, or its plain EOF, comes as eof_received, after one connection_made "
     .. "(test_create_connection_memory_leak)", async(function(loop)
    for _, ending in ipairs {"tls_sock.unwrap()", "tls_sock.shutdown(socket.SHUT_RDWR)"} do
      local proc, port = python_peer([[
tls_sock = server_ctx.wrap_socket(sock, server_side=True)
tls_sock.sendall(b"O")
assert len(recv_all(tls_sock, 65536)) == 65536
]] .. ending .. "\nsock.close()")
      local rec = net.recorder(loop, {on_data = function(self) self.transport:write(string.rep("1", 65536)) end})
      local t = loop:create_connection(function() return rec end, "127.0.0.1", port, {ssl = client_context()})
      net.wait(rec.eof_fut)
      assert.equal("O", rec:data())
      assert.same({"made", "data", "eof"}, rec.events)
      t:close()
      net.wait(rec.lost_fut)
      peer_done(proc)
    end
  end))

  it("bad input: get_extra_info and set_write_buffer_limits of the SSL transport raise their "
     .. "argument errors at the caller's line (found by tools/fuzz/api_fuzz.lua: they named "
     .. "sslproto.lua's)", async(function(loop)
    local srv <close> = tls_echo_server(loop)
    local t, rec = tls_connect(loop, srv)
    local calls = {
      {1, "get_extra_info", function() t:get_extra_info(false) end},
      {1, "set_write_buffer_limits", function() t:set_write_buffer_limits({}) end},
      {1, "set_write_buffer_limits", function() t:set_write_buffer_limits(0.5) end},
      {2, "set_write_buffer_limits", function() t:set_write_buffer_limits(100, "x") end},
    }
    local ok, failure = pcall(function()  -- the transport closes even when a check fails
      for _, call in ipairs(calls) do
        local err = checks.argerror(call[3], call[1], call[2])
        assert.matches("^spec/tls_spec.lua:%d+: ", err)
      end
      t:set_write_buffer_limits(4096.0)  -- a float with an integer value is an integer
      assert.equal(4096, select(2, t:get_write_buffer_limits()))
    end)
    t:close()
    net.wait(rec.lost_fut)
    assert(ok, failure)
  end))

  it("bad input: set_protocol of a non-protocol is an argument error, the protocol stays "
     .. "(found by tools/fuzz/api_fuzz.lua: a boolean set failed at the next record)",
     async(function(loop)
    local srv <close> = tls_echo_server(loop)
    local t, rec = tls_connect(loop, srv)
    assert.equal(rec, t:get_protocol())
    checks.refuses_bad_protocols(t)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("the SSL transport after close: write and incoming data raise nothing, extra info 'socket' "
     .. "is gone, set_protocol swaps the protocol (test_write_after_closing, "
     .. "test_data_received_after_closing, test_get_extra_info_on_closed_connection, "
     .. "test_set_new_app_protocol)", async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
    local srv <close>, port = tls_echo_server(loop)
    local t, rec = tls_connect(loop, srv)
    local other = net.recorder(loop)
    t:set_protocol(other)
    assert.equal(other, t:get_protocol())
    t:set_protocol(rec)
    assert.equal(rec, t:get_protocol())
    assert.is_not_nil(t:get_extra_info("socket"))
    t:write(string.rep("e", 100000))  -- echoed while we close
    t:close()
    t:write("data")
    net.wait(rec.lost_fut)
    assert.is_nil(t:get_extra_info("socket"))
    local default = {}
    assert.equal(default, t:get_extra_info("socket", default))
    assert.same({}, reports)
    assert.same({}, other.events)
  end))

  it("closing the outer SSL transport under TLS in TLS reports nothing (test_close_during_ssl_over_ssl)",
     async(function(loop)
    local reports = {}
    loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
    local srv <close> = eddy.start_server(function(r, w)
      w:start_tls(server_context())
      pcall(r.read, r)
      w:close()
    end, "127.0.0.1", 0, {ssl = server_context()})
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                      {ssl = client_context(), server_hostname = "localhost"})
    local outer = w.transport
    w:start_tls(client_context(), {server_hostname = "localhost"})
    outer:close()
    local ok, err = pcall(eddy.wait_for, function() return r:read() end, 5)
    assert.is_true(ok or errors.is(err, errors.ConnectionError), tostring(err))
    pcall(eddy.wait_for, function() return w:wait_closed() end, 5)
    checks.turns(3)
    assert.same({}, reports)
  end))

  it("start_tls on the server side of a plain connection; the client's close_notify ends it "
     .. "(test_start_tls_server_1)", async(function(loop)
    local HELLO = string.rep("1", 65536)
    local rec = net.recorder(loop)
    local srv <close> = loop:create_server(function() return rec end, "127.0.0.1", 0)
    local proc = python_peer(string.format([[
assert len(recv_all(sock, %d)) == %d
tls_sock = client_ctx.wrap_socket(sock)
tls_sock.sendall(b"1" * %d)
tls_sock.unwrap()
sock.close()
]], #HELLO, #HELLO, #HELLO), srv.sockets[1]:getsockname()[2])
    local t = net.wait(rec.made_fut, 15)
    t:write(HELLO)
    local new_t = loop:start_tls(t, rec, server_context(), {server_side = true, ssl_handshake_timeout = 10})
    net.wait(rec.eof_fut, 10)
    net.wait(rec.lost_fut, 10)
    assert.is_nil(rec.err)
    assert.equal(HELLO, rec:data())
    new_t:close()
    peer_done(proc)
  end, 30))

  it("25 clients shut down cleanly by the server's close_notify: read() gives '' "
     .. "(test_shutdown_cleanly)", async(function(loop)
    local A = string.rep("A", 65536)
    local proc, port = python_peer(string.format([[
import threading
def serve(conn):
    conn.settimeout(10)
    tls_sock = server_ctx.wrap_socket(conn, server_side=True)
    assert recv_all(tls_sock, %d) == b"A" * %d
    tls_sock.send(b"OK")
    tls_sock.unwrap().close()
listener.listen(25)
threads = []
for conn in [sock] + [listener.accept()[0] for _ in range(24)]:
    threads.append(threading.Thread(target=serve, args=(conn,)))
    threads[-1].start()
for th in threads:
    th.join()
]], #A, #A))
    assert.equal(25, at_once(25, function()
      local r, w = eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = ""})
      w:write(A)
      assert.equal("OK", r:readexactly(2))
      assert.equal("", r:read())
      w:close()
      w:wait_closed()
      return true
    end, 30))
    peer_done(proc)
  end, 40))

  it("close() sends the whole write buffer before close_notify (test_flush_before_shutdown)",
     async(function(loop)
    local CHUNK, SIZE = 128 * 1024, 32
    local proc, port = python_peer(string.format([[
tls_sock = server_ctx.wrap_socket(sock, server_side=True)
assert recv_all(tls_sock, 4) == b"ping"
tls_sock.send(b"pong")
time.sleep(0.5)
assert len(recv_all(tls_sock, %d)) == %d
tls_sock.close()
]], CHUNK * SIZE, CHUNK * SIZE))
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = ""})
    w:write("ping")
    assert.equal("pong", r:readexactly(4))
    for _ = 1, SIZE do w:write(string.rep("x", CHUNK)) end
    w:close()
    -- the peer closes without answering close_notify: the error is
    -- ConnectionResetError (CPython's test_utils.wait_closed ignores
    -- ConnectionError too)
    local ok, err = pcall(eddy.wait_for, function() w:wait_closed() end, 15)
    assert.is_true(ok or errors.is(err, errors.ConnectionError), tostring(err))
    peer_done(proc)
  end, 30))

  it("data written before the peer's close_notify or EOF still reaches it "
     .. "(test_remote_shutdown_receives_trailing_data)", async(function(loop)
    local CHUNK, SIZE = 128 * 1024, 32
    local memory_bio = string.format([[
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
def flush():
    if outgoing.pending:
        sock.sendall(outgoing.read())
def call(fn, *args):
    while True:
        try:
            result = fn(*args)
            flush()
            return result
        except ssl.SSLWantReadError:
            flush()
            incoming.write(sock.recv(16384))
call(obj.do_handshake)
assert call(obj.read, 4) == b"ping"
obj.write(b"pong")
flush()
time.sleep(0.2)  # the peer fills its backlog
try:
    obj.unwrap()  # close_notify, not waiting for the answer
except ssl.SSLWantReadError:
    pass
flush()
n = 0
while True:
    try:
        n += len(call(obj.read, 16384))
    except ssl.SSLZeroReturnError:
        break
assert n == %d, n
sock.close()
]], CHUNK * SIZE)
    local eof = string.format([[
raw = sock.dup()
tls_sock = server_ctx.wrap_socket(sock, server_side=True)
assert recv_all(tls_sock, 4) == b"ping"
tls_sock.send(b"pong")
time.sleep(0.2)
raw.shutdown(socket.SHUT_WR)  # EOF, no close_notify
assert len(recv_all(tls_sock, %d)) == %d
tls_sock.close()
]], CHUNK * SIZE, CHUNK * SIZE)
    loop:set_exception_handler(function() end)
    for _, body in ipairs {memory_bio, eof} do
      local proc, port = python_peer(body)
      local r, w = eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = ""})
      w:write("ping")
      assert.equal("pong", r:readexactly(4))
      for _ = 1, SIZE do w:write(string.rep("x", CHUNK)) end
      local ok, data = pcall(eddy.wait_for, function() return r:read() end, 15)
      assert.is_true(not ok and (errors.is(data, errors.BrokenPipeError) or errors.is(data, errors.ConnectionResetError))
                     or data == "", tostring(data))
      peer_done(proc)
      w:close()
      pcall(w.wait_closed, w)
    end
  end, 40))

  it("TLS over TLS: start_tls on an SSL transport, on both sides, five clients at once "
     .. "(test_create_server_ssl_over_ssl)", async(function(loop)
    local served = 0
    local srv <close> = eddy.start_server(function(r, w)
      local outer = w:get_extra_info("ssl_object")
      w:start_tls(server_context())
      assert.is_true(w:get_extra_info("ssl_object") ~= outer)
      serve_spam(r, w)
      served = served + 1
    end, "127.0.0.1", 0, {ssl = server_context()})
    local function client()
      local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                        {ssl = client_context(), server_hostname = "localhost"})
      w:start_tls(client_context(), {server_hostname = "localhost"})
      ask_spam(r, w)
      assert.equal("", r:read())
      w:close()
      w:wait_closed()
      return true
    end
    assert.equal(5, at_once(5, client, 30))
    net.wait_until(function() return served == 5 end)
  end, 40))

  it("a TLS connection cancelled by wait_for, refused or unanswered, leaves nothing behind "
     .. "(test_connect_timeout_warning, test_handshake_timeout_handler_leak)", async(function(loop)
    local s = eddy.socket.socket()
    s:bind({"127.0.0.1", 0})
    local addr = s:getsockname()
    for _, listen in ipairs {false, true} do
      if listen then s:listen(1) end
      local ok, err = pcall(eddy.wait_for, function()
        return loop:create_connection(function() return {} end, addr[1], addr[2],
                                      {ssl = client_context(), server_hostname = ""})
      end, 0.1)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.ConnectionRefusedError) or errors.is(err, errors.TimeoutError),
                     tostring(err))
    end
    s:close()
    checks.turns(2)  -- the async wrapper checks that every handle was freed
  end))
end)

describe("start_tls", function()
  it("upgrades a plain connection in place on both sides (test_start_tls_client_reg_proto_1, test_start_tls)",
     async(function(loop)
    local sctx = server_context()
    local srv <close> = eddy.start_server(function(r, w)
      assert.equal("STARTTLS\n", r:readline())
      w:write("GO\n")
      assert.is_nil(w:get_extra_info("sslcontext"))
      w:start_tls(sctx)
      assert.equal(sctx, w:get_extra_info("sslcontext"))
      assert.is_not_nil(w:get_extra_info("ssl_object"))
      local line = r:readline()
      w:write("secret: " .. line)
      w:close()
    end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    local write, drain = w.write, w.drain  -- kept from before the upgrade
    local plain = w.transport
    w:write("STARTTLS\n")
    assert.equal("GO\n", r:readline())
    assert.is_nil(w:get_extra_info("sslcontext"))
    local cctx = client_context()
    w:start_tls(cctx, {server_hostname = "localhost"})
    assert.equal(cctx, w:get_extra_info("sslcontext"))
    assert.are_not.equal(plain, w.transport)  -- start_tls replaced it
    assert.equal(w.transport:get_extra_info("ssl_object"), w:get_extra_info("ssl_object"))
    assert.equal("TLSv1.2", w:get_extra_info("ssl_object"):version())
    write(w, "hello\n")  -- goes over TLS too
    drain(w)
    assert.equal("secret: hello\n", r:read())
    w:close()
    w:wait_closed()
  end))

  it("loop:start_tls on a protocol's transport keeps the protocol", async(function(loop)
    local srv <close>, port = tls_echo_server(loop)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    local tt = loop:start_tls(t, rec, client_context(), {server_hostname = "localhost"})
    assert.same({"made"}, rec.events)  -- no second connection_made
    assert.equal(rec, tt:get_protocol())
    tt:write("over tls")
    rec:wait_bytes(8)
    assert.equal("over tls", rec:data())
    tt:close()
    net.wait(rec.lost_fut)
  end))

  it("ssl_handshake_timeout ends start_tls even when the transport's protocol was replaced",
     async(function(loop)
    -- The wait used to end only through the SSL protocol's connection_lost,
    -- which a second start_tls or a set_protocol during the handshake takes
    -- away from it (asyncio hangs there too).
    local srv <close> = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local opts = {server_hostname = "localhost", ssl_handshake_timeout = 0.2}
    local function start(t, p)
      return loop:create_task(function() return loop:start_tls(t, p, client_context(), opts) end)
    end
    local function aborted(task, class)
      local ok, err = pcall(eddy.wait_for, task, 5)
      assert.is_false(ok)
      assert.is_true(errors.is(err, class or errors.ConnectionAbortedError), tostring(err))
    end
    local t, p = loop:create_connection(function() return {} end, "127.0.0.1", port)
    local first = start(t, p)
    eddy.sleep(0)
    local second = start(t, p)
    aborted(first)
    -- the second ends by its own timeout, or by the first one's abort of
    -- the connection if that comes first (ConnectionResetError)
    aborted(second, errors.ConnectionError)
    t, p = loop:create_connection(function() return {} end, "127.0.0.1", port)
    local task = start(t, p)
    eddy.sleep(0)
    t:set_protocol({})
    aborted(task)
    assert.is_true(t:is_closing())
  end))

  it("a BufferedProtocol over start_tls, then set_protocol to a plain one (test_start_tls_client_buf_proto_1)",
     async(function(loop)
    local HELLO = string.rep("1", 102400)
    local sctx = server_context()
    local srv <close> = eddy.start_server(function(r, w)
      assert.equal(HELLO, r:readexactly(#HELLO))
      -- (CPython's server is a blocking socket that reads no further;
      -- a stream's reader would take the ClientHello too: say when)
      w:write("G")
      w:start_tls(sctx)
      w:write("O")
      assert.equal(HELLO, r:readexactly(#HELLO))
      w:write("2")
      assert.equal(HELLO, r:readexactly(#HELLO))
      w:close()
    end, "127.0.0.1", 0)
    local made = 0
    local first = {buf = eddy.Buffer(1), got = {}}
    function first:connection_made() made = made + 1 end
    function first:get_buffer() return self.buf end
    function first:buffer_updated(n)
      assert.equal(1, n)
      self.got[#self.got + 1] = self.buf:tostring(1, n)
    end
    local second = net.recorder(loop)
    local t = loop:create_connection(function() return first end, "127.0.0.1",
                                     srv.sockets[1]:getsockname()[2])
    t:write(HELLO)
    net.wait_until(function() return first.got[1] == "G" end)
    local tt = loop:start_tls(t, first, client_context(), {server_hostname = "localhost"})
    net.wait_until(function() return first.got[2] == "O" end)
    tt:write(HELLO)
    tt:set_protocol(second)
    second:wait_bytes(1)
    assert.equal("2", second:data())
    tt:write(HELLO)
    net.wait(second.eof_fut)
    tt:close()
    net.wait(second.lost_fut)
    assert.equal(1, made)  -- start_tls gives no second connection_made
    assert.equal(2, #first.got)
  end))

  it("refuses what it cannot upgrade (test_start_tls_wrong_args)", async(function(loop)
    local srv <close>, port = tls_echo_server(loop)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    raises(function() loop:start_tls(nil, nil, nil) end, "bad argument #1 to 'start_tls'")
    raises(function() loop:start_tls(nil, nil, client_context()) end, "bad argument #1 to 'start_tls'")
    raises(function() loop:start_tls({}, rec, client_context()) end, "bad argument #1 to 'start_tls'")
    raises(function() loop:start_tls(t, rec, {}) end, "bad argument #3 to 'start_tls'")
    raises(function() loop:start_tls(t, rec, client_context(), {sever_side = true}) end, "unknown option")
    -- a failed handshake closes the transport
    raises(function() loop:start_tls(t, rec, ssl.SSLContext(), {server_hostname = "localhost"}) end,
           errors.SSLCertVerificationError)
    assert.is_true(t:is_closing())
  end))

  it("a failed upgrade ends the connection for the protocol: connection_lost gets the error",
     async(function(loop)
    -- asyncio's SSLProtocol starts a start_tls protocol in STATE_CON_MADE
    -- (it had connection_made already), so it is owed connection_lost
    local srv <close>, port = tls_echo_server(loop)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    raises(function() loop:start_tls(t, rec, ssl.SSLContext(), {server_hostname = "localhost"}) end,
           errors.SSLCertVerificationError)
    net.wait(rec.lost_fut)
    assert.same({"made", "lost"}, rec.events)
    assert.is_true(errors.is(rec.err, errors.SSLCertVerificationError), tostring(rec.err))
    -- so a stream whose upgrade failed is over, not left hanging
    local r, w = eddy.open_connection("127.0.0.1", port)
    raises(function() w:start_tls(ssl.SSLContext(), {server_hostname = "localhost"}) end,
           errors.SSLCertVerificationError)
    raises(function() eddy.wait_for(function() return r:read() end, 5) end,
           errors.SSLCertVerificationError)
    raises(function() eddy.wait_for(function() return w:wait_closed() end, 5) end,
           errors.SSLCertVerificationError)
  end))
end)

describe("TLS interop", function()
  it("an eddy client against openssl s_server", async(function(loop)
    local port = free_port(loop)
    local proc = openssl(string.format("s_server -accept %d -cert %s -key %s -naccept 1",
                                       port, tls.path("server.pem"), tls.path("server.key")), 5)
    net.wait_until(function()  -- s_server says ACCEPT once it listens
      if proc.done() then error("openssl s_server ended: " .. proc.output()) end
      return proc.output():find("ACCEPT", 1, true) ~= nil
    end, 10)
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = "localhost"})
    w:write("hello s_server\n")
    w:drain()
    w:close()
    w:wait_closed()
    net.wait_until(function() return proc.output():find("hello s_server", 1, true) ~= nil end, 10)
    proc.cleanup()
  end, 20))

  it("openssl s_client against an eddy server, verifying it", async(function(loop)
    local got = loop:create_future()
    local srv <close> = eddy.start_server(function(r, w)
      local line = r:readline()
      w:write("echo: " .. line)
      w:drain()
      got:set_result(line)
      w:close()
    end, "127.0.0.1", 0, {ssl = server_context()})
    local proc = net.spawn(string.format(
      "(echo 'ping'; sleep 3) | openssl s_client -connect 127.0.0.1:%d -CAfile %s -verify_return_error "
      .. "-servername localhost -quiet", srv.sockets[1]:getsockname()[2], tls.path("ca.pem")), 20)
    assert.equal("ping\n", net.wait(got, 10))
    net.wait_until(function() return proc.output():find("echo: ping", 1, true) ~= nil end, 10)
    assert.truthy(proc.output():find("verify return:1", 1, true))
    proc.cleanup()
  end, 20))

  it("a peer ending its side without close_notify gets none back (test_shutdown_timeout_handler_not_set)",
     async(function(loop)
    local proc, port = python_peer([[
tls_sock = server_ctx.wrap_socket(sock, server_side=True)
tls_sock.send(b"hello")
assert tls_sock.recv(1024) == b"world"
tls_sock.send(b"extra bytes")
tls_sock.shutdown(socket.SHUT_WR)  # EOF, no close_notify
print("EOF", flush=True)
print("after EOF: %r" % tls_sock.recv(1024), flush=True)  # raw now: b"" expected
tls_sock.close()
]])
    local rec = net.recorder(loop, {on_data = function(self, data)
      if data == "hello" then
        self.transport:write("world")
        self.transport:pause_reading()  -- what comes next waits
      end
    end})
    local ctx = ssl.SSLContext()
    ctx.check_hostname = false
    ctx.verify_mode = ssl.CERT_NONE
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port, {ssl = ctx})
    net.wait_until(function() return proc.output():find("EOF", 1, true) ~= nil end, 10)
    t:resume_reading()
    net.wait(rec.lost_fut)
    assert.is_nil(rec.err)
    assert.equal("helloextra bytes", rec:data())
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    t:close()
    net.wait_until(proc.done, 10)
    assert.truthy(proc.output():find("after EOF: b''", 1, true), proc.output())
    peer_done(proc)
  end, 20))

  it("a Python asyncio TLS client and server against eddy's", async(function(loop)
    local script = net.tempfile(string.format([[
import asyncio, ssl, sys
CA, CERT, KEY = %q, %q, %q
async def client(port):
    ctx = ssl.create_default_context(cafile=CA)
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    w.write(b"from python\n")
    line = await r.readline()
    w.close()
    await w.wait_closed()
    print(line.decode().strip(), flush=True)
async def server():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    done = asyncio.get_running_loop().create_future()
    async def handle(r, w):
        line = await r.readline()
        w.write(b"python says " + line)
        await w.drain()
        w.close()
        done.set_result(True)
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.wait_for(done, 15)
    srv.close()
    print("SERVED", flush=True)
if sys.argv[1] == "client":
    asyncio.run(client(int(sys.argv[2])))
else:
    asyncio.run(server())
]], tls.path("ca.pem"), tls.path("server.pem"), tls.path("server.key")))
    -- Python client -> eddy server
    local srv <close> = eddy.start_server(function(r, w)
      w:write("eddy got " .. r:readline())
      w:close()
    end, "127.0.0.1", 0, {ssl = server_context()})
    local proc = net.spawn(string.format("%s %s client %d", PYTHON, script, srv.sockets[1]:getsockname()[2]), 20)
    net.wait_until(proc.done, 20)
    assert.equal("eddy got from python\n", proc.output())
    proc.cleanup()
    -- eddy client -> Python server
    local port
    proc, port = net.spawn_server(string.format("%s %s server", PYTHON, script), 20)
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = client_context(), server_hostname = "localhost"})
    w:write("hi\n")
    assert.equal("python says hi\n", r:readline())
    w:close()
    w:wait_closed()
    net.wait_until(proc.done, 20)
    assert.truthy(proc.output():find("SERVED", 1, true))
    proc.cleanup()
    os.remove(script)
  end, 40))
end)
