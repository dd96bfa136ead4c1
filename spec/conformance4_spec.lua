-- Conformance of eddy's TLS transports and the loop methods' TLS options
-- (API.md §3 ssl options and start_tls, §7 transports, §9 errors) with
-- asyncio as CPython 3.13 implements it (asyncio/sslproto.py,
-- base_events.py, streams.py; Lib/test/test_asyncio/test_ssl.py,
-- test_sslproto.py): what tls_spec and the earlier conformance specs do
-- not already check.
local eddy = require "eddy"
local socket = require "eddy.socket"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local tls = require "support.tls"
local raises = checks.raises

local PYTHON = "/root/.pyenv/versions/3.13.0/bin/python3"

teardown(function() tls.cleanup() end)

-- A TLS echo server; returns server, port, server-side protocols.
local function tls_server(loop, ctx)
  return net.echo_server(loop, "127.0.0.1", {ssl = ctx or tls.server_context()})
end

-- A recording client over TLS to 127.0.0.1:port; returns transport, recorder.
local function tls_client(loop, port, opts)
  local o = {ssl = tls.client_context(), server_hostname = "localhost"}
  for k, v in pairs(opts or {}) do o[k] = v end
  local rec = net.recorder(loop)
  local t = loop:create_connection(function() return rec end, "127.0.0.1", port, o)
  return t, rec
end

-- A non-blocking TCP eddy.socket connected to 127.0.0.1:port.
local function connected_socket(loop, port)
  local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  s:setblocking(false)
  loop:sock_connect(s, {"127.0.0.1", port})
  return s
end

describe("§3 TLS option checks (asyncio base_events)", function()
  it("§3 create_connection with ssl and a sock but no host needs server_hostname "
     .. "('You must set server_hostname when using ssl without a host')", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local s = connected_socket(loop, port)
    raises(function()
      loop:create_connection(function() return {} end, nil, nil, {ssl = tls.client_context(), sock = s})
    end, {errors.ValueError, "You must set server_hostname when using ssl without a host"})
    s:close()
  end))

  it("§3 server_hostname without ssl is a ValueError for create_unix_connection too "
     .. "(unix_events: 'server_hostname is only meaningful with ssl')", async(function(loop)
    raises(function()
      loop:create_unix_connection(function() return {} end, "/nonexistent", {server_hostname = "x"})
    end, {errors.ValueError, "server_hostname is only meaningful with ssl"})
  end))

  it("§3 create_connection with ssl and a sock, server_hostname given: TLS over the caller's "
     .. "connected socket", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local s = connected_socket(loop, port)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, nil, nil,
                                     {ssl = tls.client_context(), sock = s, server_hostname = "localhost"})
    assert.equal("localhost", t:get_extra_info("ssl_object").server_hostname)
    t:write("via sock")
    rec:wait_bytes(8)
    assert.equal("via sock", rec:data())
    t:close()
    net.wait(rec.lost_fut)
  end))
end)

describe("§3 server_hostname and SNI (asyncio base_events, ssl)", function()
  it("§3 the SNI a Python server sees: server_hostname's name; none for '' (no name) nor for "
     .. "the default from an IP host (RFC 6066: no IP literal in SNI), as Python's client",
     async(function(loop)
    local script = net.tempfile(string.format([[
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(%q, %q)
names = []
ctx.sni_callback = lambda obj, name, c: names.append(name)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(3)
listener.settimeout(10)
print(listener.getsockname()[1], flush=True)
for _ in range(3):
    conn, _ = listener.accept()
    conn.settimeout(10)
    tls_sock = ctx.wrap_socket(conn, server_side=True)
    tls_sock.recv(1)
    tls_sock.close()
print(names, flush=True)
]], tls.path("server.pem"), tls.path("server.key")), ".py")
    local proc, port = net.spawn_server(PYTHON .. " " .. script, 20)
    for _, name in ipairs {"localhost", "", false} do
      local rec = net.recorder(loop)
      local t = loop:create_connection(function() return rec end, "127.0.0.1", port,
                                       {ssl = tls.client_context(), server_hostname = name or nil})
      t:write("x")
      net.wait(rec.lost_fut)
    end
    net.wait_until(proc.done, 10)
    assert.matches("%['localhost', None, None%]", proc.output())
    proc.cleanup()
  end))

  it("§3 server_hostname defaults to the host: an IP host is checked against the "
     .. "certificate's IP subjectAltNames (a certificate naming only DNS:localhost fails)",
     async(function(loop)
    local srv <close>, port = tls_server(loop)
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port,
                                     {ssl = tls.client_context()})
    assert.equal("127.0.0.1", t:get_extra_info("ssl_object").server_hostname)
    t:close()
    net.wait(rec.lost_fut)
    local ctx = require("eddy.ssl").SSLContext(require("eddy.ssl").PROTOCOL_TLS_SERVER)
    ctx:load_cert_chain(tls.path("othercn.pem"), tls.path("othercn.key"))
    local srv2 <close>, port2 = tls_server(loop, ctx)
    raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", port2, {ssl = tls.client_context()})
    end, errors.SSLCertVerificationError)
    local t2, rec2 = tls_client(loop, port2)    -- by name it is fine
    t2:close()
    net.wait(rec2.lost_fut)
  end))

  it("§3 ssl = true: the connection's context is a default client context (CERT_REQUIRED, "
     .. "check_hostname on), and ssl_object.context is the transport's sslcontext",
     async(function(loop)
    local ssl = require "eddy.ssl"
    local srv <close>, port = tls_server(loop)
    local seen
    local saved = ssl.create_default_context
    local ok, err = pcall(function()
      ssl.create_default_context = function(...)
        seen = saved(...)
        seen:load_verify_locations(tls.path("ca.pem"))
        return seen
      end
      local t, rec = tls_client(loop, port, {ssl = true})
      assert.equal(seen, t:get_extra_info("sslcontext"))
      assert.equal(seen, t:get_extra_info("ssl_object").context)
      assert.equal(ssl.CERT_REQUIRED, seen.verify_mode)
      assert.is_true(seen.check_hostname)
      t:close()
      net.wait(rec.lost_fut)
    end)
    ssl.create_default_context = saved
    assert(ok, err)
  end))
end)

describe("§9 a context of the wrong side (Python ssl: SSLError from wrap_bio)", function()
  it("§9 create_connection with a server context and start_tls(server_side) with a client "
     .. "context raise SSLError ('Cannot create a client socket with a PROTOCOL_TLS_SERVER "
     .. "context'), as Python 3.13's; start_tls leaves the plain transport open, as asyncio's "
     .. "(wrap_bio fails before it is touched)", async(function(loop)
    local srv <close>, port = tls_server(loop)
    raises(function()
      tls_client(loop, port, {ssl = tls.server_context()})
    end, {errors.SSLError, "Cannot create a client socket with a PROTOCOL_TLS_SERVER context"})
    local rec = net.recorder(loop)
    local plain = loop:create_connection(function() return rec end, "127.0.0.1", port)
    raises(function()
      loop:start_tls(plain, rec, tls.client_context(), {server_side = true})
    end, {errors.SSLError, "Cannot create a server socket with a PROTOCOL_TLS_CLIENT context"})
    assert.is_false(plain:is_closing())
    plain:close()
    net.wait(rec.lost_fut)
  end))
end)

describe("§7 the SSL transport (asyncio sslproto)", function()
  it("§7 a server's connection_made comes after the handshake: cipher, version and the "
     .. "client's certificate are there already", async(function(loop)
    local ctx = tls.server_context()
    ctx.verify_mode = require("eddy.ssl").CERT_REQUIRED
    ctx:load_verify_locations(tls.path("ca.pem"))
    local seen = loop:create_future()
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t)
        local obj = t:get_extra_info("ssl_object")
        seen:set_result(obj:version(), t:get_extra_info("cipher"), t:get_extra_info("peercert"))
      end}
    end, "127.0.0.1", 0, {ssl = ctx})
    local cctx = tls.client_context()
    cctx:load_cert_chain(tls.path("client.pem"), tls.path("client.key"))
    local t, rec = tls_client(loop, srv.sockets[1]:getsockname()[2], {ssl = cctx})
    local version, cipher, peercert = net.wait(seen)
    assert.equal("TLSv1.2", version)
    assert.equal("TLSv1.2", cipher[2])
    assert.same({{"commonName", "eddy client"}}, peercert.subject[2])
    t:abort()
    net.wait(rec.lost_fut)
  end))

  it("§7 get_extra_info: 'sslcontext' is the context given, 'compression' nil, 'cipher' the "
     .. "ssl_object's cipher() as an array, 'peername'/'sockname' the plain socket's, "
     .. "an unknown name the default", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local ctx = tls.client_context()
    local t, rec = tls_client(loop, port, {ssl = ctx})
    assert.equal(ctx, t:get_extra_info("sslcontext"))
    assert.is_nil(t:get_extra_info("compression"))
    assert.equal("dflt", t:get_extra_info("compression", "dflt"))
    assert.same({t:get_extra_info("ssl_object"):cipher()}, t:get_extra_info("cipher"))
    assert.same({"127.0.0.1", port}, t:get_extra_info("peername"))
    local sock = t:get_extra_info("socket")
    assert.same(sock:getsockname(), t:get_extra_info("sockname"))
    assert.equal("dflt", t:get_extra_info("no such thing", "dflt"))
    assert.is_nil(t:get_extra_info("no such thing"))
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 the client's ssl_object knows its name and side; the server's has no server_hostname",
     async(function(loop)
    local got = loop:create_future()
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) got:set_result(t:get_extra_info("ssl_object")) end}
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local t, rec = tls_client(loop, srv.sockets[1]:getsockname()[2])
    local client_obj, server_obj = t:get_extra_info("ssl_object"), net.wait(got)
    assert.is_false(client_obj.server_side)
    assert.equal("localhost", client_obj.server_hostname)
    assert.is_true(server_obj.server_side)
    assert.is_nil(server_obj.server_hostname)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 abort() after the handshake: connection_lost(nil) without eof_received, once; "
     .. "close() after it does nothing (sslproto _abort(None))", async(function(loop)
    local srv <close>, port, protos = tls_server(loop)
    local t, rec = tls_client(loop, port)
    t:write("x")
    rec:wait_bytes(1)
    t:abort()
    assert.is_true(t:is_closing())
    t:close()
    t:abort()
    net.wait(rec.lost_fut)
    eddy.sleep(0.05)
    assert.same({"made", "data", "lost"}, rec.events)
    assert.is_nil(rec.err)
    net.wait_until(function() return protos[1].lost end)
  end))

  it("§7 close(): is_closing at once, a second close() is a no-op, eof_received then "
     .. "connection_lost(nil) once, the server sees the close_notify", async(function(loop)
    local srv <close>, port, protos = tls_server(loop)
    local t, rec = tls_client(loop, port)
    net.wait_until(function() return protos[1] ~= nil and protos[1].t ~= nil end)
    t:close()
    assert.is_true(t:is_closing())
    t:close()
    net.wait(rec.lost_fut)
    eddy.sleep(0.05)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    net.wait_until(function() return protos[1].lost end)
    assert.is_nil(protos[1].err)
  end))

  it("§7 write_eof on an SSL transport raises and leaves the connection usable "
     .. "(SSL doesn't support half-closes)", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local t, rec = tls_client(loop, port)
    raises(function() t:write_eof() end, {errors.RuntimeError, "SSL doesn't support half-closes"})
    assert.is_false(t:is_closing())
    t:write("still")
    rec:wait_bytes(5)
    assert.equal("still", rec:data())
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 while reading is paused, the peer's data and its close_notify wait: "
     .. "resume_reading delivers the data, then eof_received, then connection_lost(nil)",
     async(function(loop)
    local server_t = loop:create_future()
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) server_t:set_result(t) end}
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local t, rec = tls_client(loop, srv.sockets[1]:getsockname()[2])
    t:pause_reading()
    t:pause_reading()              -- idempotent, as 3.13's
    assert.is_false(t:is_reading())
    local st = net.wait(server_t)
    st:write("before close")
    st:close()
    eddy.sleep(0.2)
    assert.same({"made"}, rec.events)
    assert.is_false(t:is_closing())
    t:resume_reading()
    t:resume_reading()
    assert.is_true(t:is_reading())
    net.wait(rec.lost_fut)
    assert.equal("before close", rec:data())
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
  end))

  it("§7 the peer's close_notify: in eof_received the transport is not closing yet, in "
     .. "connection_lost it is (SSLProtocolTransport._closed), and a write after it is dropped",
     async(function(loop)
    local srv <close> = loop:create_server(function()
      return {connection_made = function(_, t) t:write("bye") t:close() end}
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local closing = {}
    local rec = net.recorder(loop, {on_lost = function(self) closing.lost = self.transport:is_closing() end})
    local orig_eof = rec.eof_received
    function rec.eof_received(self)
      closing.eof = self.transport:is_closing()
      return orig_eof(self)
    end
    local t = loop:create_connection(function() return rec end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                                     {ssl = tls.client_context(), server_hostname = "localhost"})
    net.wait(rec.lost_fut)
    assert.same({eof = false, lost = true}, closing)
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    t:write("late")
    assert.equal(0, t:get_write_buffer_size())
  end))

  it("§7 set_write_buffer_limits on an SSL transport: high below low is a ValueError; "
     .. "get_write_buffer_limits reads back what was set", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local t, rec = tls_client(loop, port)
    raises(function() t:set_write_buffer_limits(10, 20) end, errors.ValueError)
    t:set_write_buffer_limits(2000, 500)
    assert.same({500, 2000}, {t:get_write_buffer_limits()})
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§7 writelines and an empty write over TLS: the pieces arrive in order, the empty "
     .. "write sends nothing", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local t, rec = tls_client(loop, port)
    t:write("")
    assert.equal(0, t:get_write_buffer_size())
    t:writelines({"a", "", "bc", string.rep("d", 40000)})
    rec:wait_bytes(40003)
    assert.equal("abc" .. string.rep("d", 40000), rec:data())
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("§9 a failed client handshake: create_connection raises SSLCertVerificationError, the "
     .. "protocol gets neither connection_made nor connection_lost", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local rec = net.recorder(loop)
    local calls = 0
    local err = raises(function()
      loop:create_connection(function() calls = calls + 1 return rec end, "127.0.0.1", port,
                             {ssl = require("eddy.ssl").create_default_context(), server_hostname = "localhost"})
    end, errors.SSLCertVerificationError)
    assert.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
    eddy.sleep(0.05)
    assert.same({}, rec.events)
    assert.is_true(calls <= 1)
  end))

  it("§9 a plaintext peer talking to a TLS server: the server's protocol never sees "
     .. "connection_made, the peer gets a TLS alert or a close, and the server goes on",
     async(function(loop)
    local made = 0
    local srv <close> = loop:create_server(function()
      return {connection_made = function() made = made + 1 end}
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local port = srv.sockets[1]:getsockname()[2]
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    t:write("GET / HTTP/1.0\r\n\r\n")
    net.wait(rec.lost_fut)
    local reply = rec:data()
    assert.is_true(reply == "" or reply:byte(1) == 21, "expected an alert record, got " .. reply)
    local t2, rec2 = tls_client(loop, port)
    t2:close()
    net.wait(rec2.lost_fut)
    assert.equal(1, made)
  end))
end)

describe("§4 Server.close_clients / abort_clients with TLS connections (asyncio base_events)", function()
  it("§4 close_clients and abort_clients close the plain transports under the SSL ones, as "
     .. "asyncio's Server tracks them: the server's protocol gets connection_lost(nil) without "
     .. "eof_received, the client eof_received then connection_lost(nil)", async(function(loop)
    for _, how in ipairs {"close_clients", "abort_clients"} do
      local server = net.recorder(loop)
      local srv <close> = loop:create_server(function() return server end, "127.0.0.1", 0,
                                             {ssl = tls.server_context()})
      local _, rec = tls_client(loop, srv.sockets[1]:getsockname()[2])
      net.wait(server.made_fut)
      srv:close()
      srv[how](srv)
      net.wait(rec.lost_fut)
      net.wait(server.lost_fut)
      assert.same({"made", "lost"}, server.events, how)
      assert.same({"made", "eof", "lost"}, rec.events, how)
      assert.is_nil(server.err, how)
      assert.is_nil(rec.err, how)
    end
  end))
end)

describe("§3 loop:start_tls (asyncio base_events, sslproto)", function()
  it("§3 closing the SSL transport start_tls returned closes the plain one under it: "
     .. "one connection_lost(nil) for the protocol, the plain transport closing and its socket "
     .. "closed, peername the plain transport's", async(function(loop)
    local srv <close>, port = tls_server(loop)
    local rec = net.recorder(loop)
    local plain = loop:create_connection(function() return rec end, "127.0.0.1", port)
    local t = loop:start_tls(plain, rec, tls.client_context(), {server_hostname = "localhost"})
    assert.same(plain:get_extra_info("peername"), t:get_extra_info("peername"))
    assert.is_false(plain:is_closing())
    local sock = plain:get_extra_info("socket")
    t:write("ping")
    rec:wait_bytes(4)
    t:close()
    net.wait(rec.lost_fut)
    eddy.sleep(0.05)
    assert.same({"made", "data", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    assert.is_true(plain:is_closing())
    assert.equal(-1, sock:fileno())
  end))
end)

describe("§7 reading paused from connection_made over TLS (asyncio sslproto)", function()
  it("§7 a TLS server protocol that pauses reading in connection_made gets the client's data "
     .. "only after resume_reading", async(function(loop)
    local server = net.recorder(loop)
    local orig_made = server.connection_made
    function server.connection_made(self, t)
      orig_made(self, t)
      t:pause_reading()
    end
    local srv <close> = loop:create_server(function() return server end, "127.0.0.1", 0,
                                           {ssl = tls.server_context()})
    local t, rec = tls_client(loop, srv.sockets[1]:getsockname()[2])
    t:write("early")
    local st = net.wait(server.made_fut)
    eddy.sleep(0.2)
    assert.same({"made"}, server.events)
    assert.is_false(st:is_reading())
    st:resume_reading()
    server:wait_bytes(5)
    assert.equal("early", server:data())
    t:close()
    net.wait(rec.lost_fut)
    net.wait(server.lost_fut)
  end))
end)

describe("§3 connect_accepted_socket with ssl (asyncio base_events)", function()
  -- A connected pair: a non-blocking client socket and the server's
  -- accepted one.
  local function accepted_pair(loop)
    local l <close> = net.listening_socket()
    local c = connected_socket(loop, l:getsockname()[2])
    return c, (loop:sock_accept(l))
  end

  it("§9 a plaintext HTTP request instead of a ClientHello: connect_accepted_socket raises "
     .. "SSLError with OpenSSL's reason (HTTP_REQUEST, HTTPS_PROXY_REQUEST for CONNECT, as "
     .. "Python's) and closes the socket it was given; the peer sees the end", async(function(loop)
    for request, reason in pairs {["GET / HTTP/1.0\r\n\r\n"] = "HTTP_REQUEST",
                                  ["POST /x HTTP/1.1\r\n\r\n"] = "HTTP_REQUEST",
                                  ["CONNECT example.org:443 HTTP/1.1\r\n\r\n"] = "HTTPS_PROXY_REQUEST",
                                  ["HELLO THERE\r\n\r\n"] = "WRONG_VERSION_NUMBER"} do
      local c <close>, conn = accepted_pair(loop)
      loop:sock_sendall(c, request)
      local err = raises(function()
        loop:connect_accepted_socket(function() return {} end, conn, {ssl = tls.server_context()})
      end, errors.SSLError)
      assert.equal(reason, err.reason)
      assert.matches("^%[SSL: " .. reason .. "%]", err.strerror)
      assert.equal(-1, conn:fileno())
      local got, chunk = "", nil
      repeat
        chunk = eddy.wait_for(function() return loop:sock_recv(c, 100) end, 5)
        got = got .. chunk
      until chunk == ""
      assert.is_true(got == "" or got:byte(1) == 21, "expected nothing or an alert: " .. got)
    end
  end))

  it("§3 a client that never starts its handshake: connect_accepted_socket raises "
     .. "ConnectionAbortedError after ssl_handshake_timeout and the peer sees the close",
     async(function(loop)
    local c <close>, conn = accepted_pair(loop)
    local t0 = loop:time()
    raises(function()
      loop:connect_accepted_socket(function() return {} end, conn,
                                   {ssl = tls.server_context(), ssl_handshake_timeout = 0.2})
    end, {errors.ConnectionAbortedError,
          "SSL handshake is taking longer than 0.2 seconds: aborting the connection"})
    assert.is_true(loop:time() - t0 >= 0.19)
    assert.equal(-1, conn:fileno())
    assert.equal("", eddy.wait_for(function() return loop:sock_recv(c, 10) end, 5))
  end))
end)

describe("§7 protocol errors over TLS (asyncio sslproto)", function()
  it("§7 a server protocol whose connection_made raises: the exception handler gets the error, "
     .. "the protocol's connection_lost gets it too, the client sees the connection end "
     .. "(eof_received, connection_lost(nil)) and the server goes on", async(function(loop)
    local reported = {}
    loop:set_exception_handler(function(_, ctx) reported[#reported + 1] = ctx end)
    local lost = loop:create_future()
    local calls = 0
    local srv <close> = loop:create_server(function()
      calls = calls + 1
      if calls > 1 then return {} end
      return {connection_made = function() error(errors.ValueError("boom")) end,
              connection_lost = function(_, err) lost:set_result(err) end}
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local port = srv.sockets[1]:getsockname()[2]
    local t, rec = tls_client(loop, port)
    net.wait(rec.lost_fut)
    assert.same({"made", "eof", "lost"}, rec.events)
    assert.is_nil(rec.err)
    local err = net.wait(lost)
    assert.is_true(errors.is(err, errors.ValueError))
    assert.equal(1, #reported)
    assert.equal(err, reported[1].exception)
    assert.is_true(t:is_closing())
    local t2, rec2 = tls_client(loop, port)
    t2:close()
    net.wait(rec2.lost_fut)
  end))
end)

describe("§9 alerts from the peer (Python's SSLError reasons)", function()
  it("§9 an openssl s_client asking to renegotiate: refused, s_client's fatal alert ends the "
     .. "server's connection with SSLError reason SSLV3_ALERT_HANDSHAKE_FAILURE (as an asyncio "
     .. "server on OpenSSL 3), after the data before it was echoed", async(function(loop)
    local lost = loop:create_future()
    local srv <close> = loop:create_server(function()
      return net.recorder(loop, {on_data = function(self, d) self.transport:write("echo:" .. d) end,
                                 on_lost = function(_, err) lost:set_result(err) end})
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local proc = net.spawn(string.format(
      "(echo hello; sleep 0.5; echo R; sleep 1) | openssl s_client -connect 127.0.0.1:%d -tls1_2",
      srv.sockets[1]:getsockname()[2]), 10)
    local err = net.wait(lost, 8)
    assert.is_true(errors.is(err, errors.SSLError), tostring(err))
    assert.equal("SSLV3_ALERT_HANDSHAKE_FAILURE", err.reason)
    assert.matches("^%[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE%]", err.strerror)
    net.wait_until(proc.done, 8)
    assert.matches("echo:hello", proc.output())
    assert.matches("RENEGOTIATING", proc.output())
    proc.cleanup()
  end))

  it("§9 no ALPN protocol in common: the client's SSLError names the alert the server sent "
     .. "(TLSV1_ALERT_NO_APPLICATION_PROTOCOL)", async(function(loop)
    local sctx = tls.server_context()
    sctx:set_alpn_protocols({"http/1.1"})
    local srv <close>, port = tls_server(loop, sctx)
    local cctx = tls.client_context()
    cctx:set_alpn_protocols({"h2"})
    local err = raises(function() tls_client(loop, port, {ssl = cctx}) end, errors.SSLError)
    assert.equal("TLSV1_ALERT_NO_APPLICATION_PROTOCOL", err.reason)
  end))
end)

describe("§7 streams over TLS (asyncio streams)", function()
  it("§7 readline returns the last line without its newline at close_notify, then '' and "
     .. "at_eof() is true; can_write_eof is false", async(function(loop)
    local srv <close> = eddy.start_server(function(_, writer)
      writer:write("one\ntwo")
      writer:close()
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local reader, writer = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                                {ssl = tls.client_context(), server_hostname = "localhost"})
    assert.is_false(writer:can_write_eof())
    raises(function() writer:write_eof() end, errors.RuntimeError)
    assert.equal("one\n", reader:readline())
    assert.is_false(reader:at_eof())
    assert.equal("two", reader:readline())
    assert.equal("", reader:readline())
    assert.is_true(reader:at_eof())
    writer:close()
    writer:wait_closed()
  end))

  it("§7 writer:close() over TLS: the reader then reads '' (eof_received on the closing side) "
     .. "and wait_closed returns nil", async(function(loop)
    local srv <close> = eddy.start_server(function(_, writer) writer:write("x") end,
                                          "127.0.0.1", 0, {ssl = tls.server_context()})
    local reader, writer = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                                {ssl = tls.client_context(), server_hostname = "localhost"})
    assert.equal("x", reader:readexactly(1))
    writer:close()
    assert.equal("", eddy.wait_for(function() return reader:read() end, 5))
    assert.is_true(reader:at_eof())
    assert.is_nil(eddy.wait_for(function() return writer:wait_closed() end, 5))
  end))

  it("§3 writer:start_tls keeps what the reader had already buffered in plaintext: it comes "
     .. "first, then the encrypted data (streams.py start_tls replaces only the transport)",
     async(function(loop)
    local srv <close> = loop:create_server(function()
      local p = {}
      function p.connection_made(_, t) p.t = t end
      function p.data_received(_, d)
        assert(d == "STARTTLS\n", d)
        p.t:write("GO\nEXTRA\n")
        eddy.create_task(function()
          local tt = loop:start_tls(p.t, p, tls.server_context(), {server_side = true})
          tt:write("secret\n")
          p.data_received = function(_, more) if more == "bye\n" then tt:close() end end
        end)
      end
      return p
    end, "127.0.0.1", 0)
    local reader, writer = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    writer:write("STARTTLS\n")
    assert.equal("GO\n", reader:readline())
    eddy.sleep(0.1)                 -- "EXTRA\n" is in the reader's buffer by now
    writer:start_tls(tls.client_context(), {server_hostname = "localhost"})
    assert.equal("EXTRA\n", reader:readline())
    assert.equal("secret\n", reader:readline())
    assert.is_false(writer:get_extra_info("ssl_object").server_side)
    writer:write("bye\n")
    assert.equal("", reader:read())
    writer:close()
    writer:wait_closed()
  end))
end)
