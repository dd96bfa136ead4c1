-- Conformance of the support modules (API.md §10: eddy.ssl's SSLContext
-- and SSL object, eddy.socket's socket objects, eddy.Buffer, eddy.signal)
-- with Python's ssl, socket and signal modules, as their documentation and
-- CPython 3.13's Lib/test/test_ssl.py and test_socket.py pin them down:
-- what tls_spec, socket_spec, sockops_spec and signal_spec do not already
-- check.  Python itself decodes the certificates getpeercert() is compared
-- with.
local eddy = require "eddy"
local ssl = require "eddy.ssl"
local socket = require "eddy.socket"
local signal = require "eddy.signal"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local tls = require "support.tls"
local tmp = require "support.tmp"
local raises, expect_error = checks.raises, checks.expect_error

local PYTHON = "/usr/bin/python3"

teardown(function() tls.cleanup() end)

-- The output of a shell command (it must succeed).
local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  assert(p:close(), "failed: " .. cmd)
  return out
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The DER bytes of a PEM certificate file.
local function der_of(pem_path)
  return sh(string.format("openssl x509 -in %s -outform DER", pem_path))
end

-- Serve one TLS connection with 'server_ctx' and connect to it with
-- 'client_ctx' (no hostname: the chain alone is checked); returns the
-- client's and the server's ssl_object once the handshake is done.
local function tls_pair(loop, server_ctx, client_ctx)
  local server_side = loop:create_future()
  local srv <close> = eddy.start_server(function(reader, writer)
    server_side:set_result(writer:get_extra_info("ssl_object"))
    reader:read()
    writer:close()
  end, "127.0.0.1", 0, {ssl = server_ctx})
  local _, writer = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2],
                                         {ssl = client_ctx, server_hostname = ""})
  local client_obj, server_obj = writer:get_extra_info("ssl_object"), net.wait(server_side)
  local cipher = writer:get_extra_info("cipher")
  writer:close()
  writer:wait_closed()
  return client_obj, server_obj, cipher
end

-- A client context trusting only the PEM file 'ca', no hostname check.
local function trusting(ca)
  local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  c.check_hostname = false
  c:load_verify_locations(ca)
  return c
end

describe("§10 eddy.ssl SSLContext (Python ssl)", function()
  it("§10 SSLContext: PROTOCOL_TLS_SERVER starts with CERT_NONE and check_hostname false, "
     .. "PROTOCOL_TLS_CLIENT with CERT_REQUIRED and check_hostname true; both TLSv1_2 to "
     .. "MAXIMUM_SUPPORTED (Python ssl 3.10+, test_constructor, test_min_max_version)", function()
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert.same({ssl.PROTOCOL_TLS_SERVER, ssl.CERT_NONE, false, ssl.TLSVersion.TLSv1_2,
                 ssl.TLSVersion.MAXIMUM_SUPPORTED},
                {s.protocol, s.verify_mode, s.check_hostname, s.minimum_version, s.maximum_version})
    local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert.same({ssl.PROTOCOL_TLS_CLIENT, ssl.CERT_REQUIRED, true, ssl.TLSVersion.TLSv1_2,
                 ssl.TLSVersion.MAXIMUM_SUPPORTED},
                {c.protocol, c.verify_mode, c.check_hostname, c.minimum_version, c.maximum_version})
    -- Python's values of the constants
    assert.same({16, 17, 0, 1, 2, 0x0303, 0x0304, -2, -1},
                {ssl.PROTOCOL_TLS_CLIENT, ssl.PROTOCOL_TLS_SERVER, ssl.CERT_NONE, ssl.CERT_OPTIONAL,
                 ssl.CERT_REQUIRED, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3,
                 ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.MAXIMUM_SUPPORTED})
    -- protocol is read-only (Python: AttributeError)
    raises(function() c.protocol = ssl.PROTOCOL_TLS_SERVER end, "no settable field 'protocol'")
    assert.equal(ssl.PROTOCOL_TLS_CLIENT, c.protocol)
  end)

  it("§10 create_default_context(CLIENT_AUTH, {cafile}) is a server context that loads the CAs "
     .. "but asks no certificate of clients (Python ssl create_default_context)", function()
    local s = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, {cafile = tls.path("ca.pem")})
    assert.equal(ssl.PROTOCOL_TLS_SERVER, s.protocol)
    assert.equal(ssl.CERT_NONE, s.verify_mode)
    assert.is_false(s.check_hostname)
    assert.equal(1, s:cert_store_stats().x509)
    -- SERVER_AUTH with cadata: those CAs instead of the system's
    local c = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, {cadata = read_file(tls.path("ca.pem"))})
    assert.same({ssl.CERT_REQUIRED, true, 1}, {c.verify_mode, c.check_hostname, c:cert_store_stats().x509})
  end)

  it("§10 create_default_context() and ssl = true trust SSL_CERT_FILE instead of the system's "
     .. "store when it is set, as Python's (OpenSSL's default verify paths)", function()
    local status, out = checks.run_script(string.format([[
      local eddy = require "eddy"
      local ssl = require "eddy.ssl"
      eddy.run(function()
        local server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server:load_cert_chain(%q, %q)
        local srv <close> = eddy.start_server(function(r, w) w:write("hi\n") w:close() end,
                                              "127.0.0.1", 0, {ssl = server})
        local port = srv.sockets[1]:getsockname()[2]
        print(ssl.create_default_context():cert_store_stats().x509)
        for _, ctx in ipairs {ssl.create_default_context(), true} do
          local r, w = eddy.open_connection("127.0.0.1", port, {ssl = ctx, server_hostname = "localhost"})
          io.write(r:readline())
          w:close()
        end
      end)
    ]], tls.path("server.pem"), tls.path("server.key")), {SSL_CERT_FILE = tls.path("ca.pem")})
    assert.equal(0, status, out)
    assert.equal("1\nhi\nhi\n", out)
  end)

  it("§10 SSLContext: check_hostname = true turns only CERT_NONE into CERT_REQUIRED (CERT_OPTIONAL "
     .. "stays), turning it off leaves verify_mode, and a refused CERT_NONE changes nothing "
     .. "(Python ssl 3.7+, test_check_hostname)", function()
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    s.verify_mode = ssl.CERT_OPTIONAL
    s.check_hostname = true
    assert.equal(ssl.CERT_OPTIONAL, s.verify_mode)
    raises(function() s.verify_mode = ssl.CERT_NONE end, errors.ValueError)
    assert.equal(ssl.CERT_OPTIONAL, s.verify_mode)
    assert.is_true(s.check_hostname)
    s.check_hostname = false
    assert.equal(ssl.CERT_OPTIONAL, s.verify_mode)
    s.verify_mode = ssl.CERT_NONE
    s.check_hostname = true
    assert.equal(ssl.CERT_REQUIRED, s.verify_mode)
  end)

  it("§10 SSLContext: minimum_version = MAXIMUM_SUPPORTED means the highest version there is and "
     .. "maximum_version = MINIMUM_SUPPORTED the lowest, read back as such (Python ssl, "
     .. "_ssl.c set_min_max_proto_version)", function()
    local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.minimum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    -- Python reads TLSv1_3 back; this build's highest is TLSv1_2 (docs/tls.md: no TLS 1.3)
    assert.equal(ssl.TLSVersion.TLSv1_2, c.minimum_version)
    c.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    assert.equal(ssl.TLSVersion.MINIMUM_SUPPORTED, c.minimum_version)
    c.maximum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    assert.equal(ssl.TLSVersion.TLSv1, c.maximum_version)
    c.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert.equal(ssl.TLSVersion.MAXIMUM_SUPPORTED, c.maximum_version)
    -- "Unsupported TLS/SSL version 0x999"; the value stays
    raises(function() c.maximum_version = 0x999 end, errors.ValueError)
    assert.equal(ssl.TLSVersion.MAXIMUM_SUPPORTED, c.maximum_version)
  end)

  it("§10 SSLContext: minimum_version above maximum_version is no error until a connection, "
     .. "which fails with SSLError NO_PROTOCOLS_AVAILABLE (Python ssl)", async(function(loop)
    local c = tls.client_context()
    c.minimum_version = ssl.TLSVersion.TLSv1_2
    c.maximum_version = ssl.TLSVersion.TLSv1_1
    local srv <close> = net.echo_server(loop, "127.0.0.1", {ssl = tls.server_context()})
    local err = raises(function()
      loop:create_connection(function() return {} end, "127.0.0.1", srv.sockets[1]:getsockname()[2],
                             {ssl = c, server_hostname = "localhost"})
    end, errors.SSLError)
    assert.equal("NO_PROTOCOLS_AVAILABLE", err.reason)
  end))

  it("§10 set_alpn_protocols: each name 1 to 255 bytes (ValueError \"NPN/ALPN protocols must be "
     .. "1 to 255 in length\"), an empty list is allowed; set_ciphers with an unknown spec raises "
     .. "SSLError (Python ssl, test_set_ciphers)", function()
    local c = ssl.SSLContext()
    c:set_alpn_protocols({})
    c:set_alpn_protocols({("x"):rep(255), "h2"})
    raises(function() c:set_alpn_protocols({"h2", ""}) end, {errors.ValueError, "1 to 255 in length"})
    raises(function() c:set_alpn_protocols({("x"):rep(256)}) end, errors.ValueError)
    local err = raises(function() c:set_ciphers("^$:,;?*'dorothyx") end, errors.SSLError)
    assert.is_true(errors.is(err, errors.OSError))
  end)
end)

describe("§10 eddy.ssl load_cert_chain and load_verify_locations (Python ssl)", function()
  it("§10 load_cert_chain: a missing certfile or keyfile is FileNotFoundError with errno 2, a "
     .. "directory OSError EISDIR with errno 21 (Python's IsADirectoryError), a wrong password "
     .. "SSLError BAD_DECRYPT, a key of another certificate SSLError KEY_VALUES_MISMATCH "
     .. "(test_load_cert_chain)", function()
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for _, args in ipairs {{"/nonexistent/cert.pem"}, {tls.path("server.pem"), "/nonexistent/key.pem"}} do
      local err = raises(function() s:load_cert_chain(args[1], args[2]) end, errors.FileNotFoundError)
      assert.same({2, "ENOENT"}, {err.errno, err.code})
    end
    for _, args in ipairs {{tls.dir()}, {tls.path("server.pem"), tls.dir()}} do
      local err = raises(function() s:load_cert_chain(args[1], args[2]) end, errors.OSError)
      assert.same({21, "EISDIR"}, {err.errno, err.code})
    end
    local err = raises(function()
      s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), "badpass")
    end, errors.SSLError)
    assert.equal("BAD_DECRYPT", err.reason)
    err = raises(function() s:load_cert_chain(tls.path("client.pem"), tls.path("server.key")) end,
                 errors.SSLError)
    assert.same({"KEY_VALUES_MISMATCH", "X509"}, {err.reason, err.library})
  end)

  it("§10 load_cert_chain: a password function is called only for an encrypted key, once "
     .. "(Python ssl: \"the callable will be called to get the password\" when the key is encrypted; "
     .. "test_load_cert_chain getpass_exception)", function()
    local s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    local calls = 0
    local function getpass() calls = calls + 1 return "s3cret" end
    s:load_cert_chain(tls.path("server.pem"), tls.path("server.key"), getpass)
    s:load_cert_chain(tls.path("server.pem"), tls.path("server.key"), function() error("never called") end)
    assert.equal(0, calls)
    s:load_cert_chain(tls.path("server.pem"), tls.path("server-enc.key"), getpass)
    assert.equal(1, calls)
    -- the function's own error comes out as it is
    local boom = errors.RuntimeError("no password today")
    local ok, err = pcall(s.load_cert_chain, s, tls.path("server.pem"), tls.path("server-enc.key"),
                          function() error(boom) end)
    assert.is_false(ok)
    assert.equal(boom, err)
  end)

  it("§10 load_verify_locations: cadata as PEM text with several certificates, as DER bytes of "
     .. "several certificates one after the other; DER followed by junk is SSLError, empty cadata "
     .. "ValueError \"Empty certificate data\" (Python ssl, test_load_verify_cadata)", function()
    local pem = read_file(tls.path("ca.pem")) .. read_file(tls.path("rogue.pem"))
    local c = ssl.SSLContext()
    c:load_verify_locations(nil, nil, pem)
    assert.equal(2, c:cert_store_stats().x509)
    local d = ssl.SSLContext()
    d:load_verify_locations(nil, nil, der_of(tls.path("ca.pem")) .. der_of(tls.path("rogue.pem")))
    assert.same({x509 = 2, x509_ca = 2, crl = 0}, d:cert_store_stats())
    raises(function() ssl.SSLContext():load_verify_locations(nil, nil, der_of(tls.path("ca.pem")) .. "junk") end,
           errors.SSLError)
    raises(function() ssl.SSLContext():load_verify_locations(nil, nil, "") end,
           {errors.ValueError, "Empty certificate data"})
    -- and a DER-only store verifies a connection to a server its CA signed
    eddy.run(function()
      local loop = eddy.get_running_loop()
      local client = ssl.SSLContext()
      client:load_verify_locations(nil, nil, der_of(tls.path("ca.pem")))
      client.check_hostname = false
      local obj = tls_pair(loop, tls.server_context(), client)
      assert.equal("localhost", obj:getpeercert().subject[3][1][2])
    end)
  end)

  it("§10 load_verify_locations: nothing given is an argument error (Python's TypeError), a "
     .. "directory as cafile OSError EISDIR, a capath that is not there FileNotFoundError "
     .. "(docs/tls.md: Python's lazy lookup accepts it and fails later)", function()
    local c = ssl.SSLContext()
    raises(function() c:load_verify_locations() end, "bad argument")
    raises(function() c:load_verify_locations(nil, nil, nil) end, "bad argument")
    local err = raises(function() c:load_verify_locations(tls.dir()) end, errors.OSError)
    assert.equal("EISDIR", err.code)
    err = raises(function() c:load_verify_locations(nil, "/nonexistent/certs") end, errors.FileNotFoundError)
    assert.equal(2, err.errno)
    err = raises(function() c:load_verify_locations(nil, tls.path("ca.pem")) end, errors.OSError)
    assert.equal("ENOTDIR", err.code)
    c:load_verify_locations(nil, tls.dir())  -- a directory of certificates (and other files)
    assert.is_true(c:cert_store_stats().x509 >= 2)
  end)
end)

describe("§10 eddy.ssl SSL object (Python SSLObject)", function()
  -- A self-signed certificate with every kind of name Python decodes:
  -- attributes mbedTLS has no name for (EV's jurisdiction*, ...), a
  -- multi-valued RDN, a serial number whose top bit is set, every kind
  -- of subjectAltName but IPv6 (written compressed: docs/tls.md), OCSP,
  -- caIssuers and CRL URIs, and a notAfter on a day of the month below
  -- 10 (Python pads it with a space).
  local function rich_certificate()
    local dir = tls.dir()
    local days = 1
    while os.date("!*t", os.time() + days * 86400).day > 8
          or os.date("!*t", os.time() + days * 86400).day < 2 do
      days = days + 1
    end
    local cnf = tmp.file(read_file("/etc/ssl/openssl.cnf") .. [[

[rich]
subjectAltName=DNS:a.test,email:x@y.test,URI:http://u.test/p,IP:10.0.0.1,dirName:rich_dir,RID:1.2.3.4,otherName:1.2.3.4;UTF8:hello
authorityInfoAccess=OCSP;URI:http://ocsp.test,caIssuers;URI:http://ca.test/ca.der,OCSP;URI:http://ocsp2.test
crlDistributionPoints=URI:http://crl.test/a.crl,URI:http://crl2.test/b.crl
[rich_dir]
CN=dir name
O=dir org
]])
    sh(string.format("openssl req -new -x509 -key %s/server.key -subj %q -set_serial 128 -days %d "
                     .. "-extensions rich -config %s -out %s/rich.pem 2>&1",
                     dir, "/C=XX/ST=State/L=Town/O=Org+OU=Unit/CN=rich.test/emailAddress=a@b.test"
                     .. "/DC=example/serialNumber=42/businessCategory=Private Organization/jurisdictionC=US"
                     .. "/jurisdictionST=Delaware/street=Main St/UID=uid1/x500UniqueIdentifier=xu"
                     .. "/organizationIdentifier=oi/description=d/role=r", days, cnf, dir))
    return dir .. "/rich.pem"
  end

  -- Python's own decoding of a PEM certificate (what getpeercert() gives
  -- for it), as a Lua table: tuples as arrays.
  local function python_decode(path)
    local script = tmp.file([[
import ssl, sys, json
def lua(v):
    if isinstance(v, str): return json.dumps(v, ensure_ascii=False)
    if isinstance(v, int): return str(v)
    if isinstance(v, dict): return "{" + ",".join("[%s]=%s" % (lua(k), lua(x)) for k, x in v.items()) + "}"
    return "{" + ",".join(lua(x) for x in v) + "}"
print(lua(ssl._ssl._test_decode_cert(sys.argv[1])))
]], ".py")
    return assert(load("return " .. sh(string.format("PYTHONIOENCODING=utf-8 %s %s %s", PYTHON, script, path))))()
  end

  it("§10 getpeercert() of a real openssl-made certificate is the table Python's decoder makes: "
     .. "subject and issuer as RDNs of {name, value} pairs (OpenSSL's long names, businessCategory "
     .. "and jurisdictionCountryName too; a multi-valued RDN in one), serialNumber "
     .. "in upper-case hex without DER's sign byte (\"80\"), notBefore/notAfter as \"Dec  3 "
     .. "16:47:56 2026 GMT\", subjectAltName with DirName, Registered ID and othername, OCSP, "
     .. "caIssuers and crlDistributionPoints (Python ssl, test_parse_cert, test_parse_all_sans)", async(function(loop)
    local pem = rich_certificate()
    local server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server:load_cert_chain(pem, tls.path("server.key"))
    local obj = tls_pair(loop, server, trusting(pem))
    local cert = obj:getpeercert()
    assert.same(python_decode(pem), cert)
    assert.equal("80", cert.serialNumber)
    assert.same({{"organizationName", "Org"}, {"organizationalUnitName", "Unit"}}, cert.subject[4])
    assert.matches("^%u%l%l  %d %d%d:%d%d:%d%d %d%d%d%d GMT$", cert.notAfter)
    assert.same({"DirName", {{{"commonName", "dir name"}}, {{"organizationName", "dir org"}}}},
                cert.subjectAltName[5])
    assert.same({"http://ocsp.test", "http://ocsp2.test"}, cert.OCSP)
    assert.same({"http://crl.test/a.crl", "http://crl2.test/b.crl"}, cert.crlDistributionPoints)
    assert.equal(der_of(pem), obj:getpeercert(true))
    -- and none of the three for a certificate without those extensions
    local plain = tls_pair(loop, tls.server_context(), tls.client_context()):getpeercert()
    assert.is_nil(plain.OCSP or plain.caIssuers or plain.crlDistributionPoints)
  end))

  it("§10 getpeercert() gives attribute values in UTF-8 whatever their ASN.1 string type: "
     .. "BMPString (UCS-2) and T61String (Latin-1, OpenSSL's reading) too, as Python's "
     .. "(ASN1_STRING_to_UTF8)", async(function(loop)
    -- openssl's string_mask "default" writes non-ASCII text as BMPString,
    -- "nombstr" as T61String
    for _, mask in ipairs {"default", "nombstr"} do
      local pem = tls.path(mask .. ".pem")
      local cnf = tmp.file("[req]\ndistinguished_name = dn\nstring_mask = " .. mask .. "\n[dn]\n")
      sh(string.format("openssl req -new -x509 -utf8 -key %s -subj %q -days 2 -config %s -out %s 2>&1",
                       tls.path("server.key"), "/CN=h\u{e9}llo/O=plain", cnf, pem))
      local server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      server:load_cert_chain(pem, tls.path("server.key"))
      local cert = tls_pair(loop, server, trusting(pem)):getpeercert()
      assert.same({{{"commonName", "h\u{e9}llo"}}, {{"organizationName", "plain"}}}, cert.subject)
      assert.same(python_decode(pem).subject, cert.subject)
    end
  end))

  it("§10 getpeercert() on the server side of a client that sent no certificate is nil (one "
     .. "value, Python's None), in binary form too; a client that did not verify gets {} but the DER "
     .. "bytes (Python SSLObject)", async(function(loop)
    local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = false
    c.verify_mode = ssl.CERT_NONE
    local client_obj, server_obj = tls_pair(loop, tls.server_context(), c)
    assert.equal(1, select("#", server_obj:getpeercert()))
    assert.is_nil(server_obj:getpeercert())
    assert.equal(1, select("#", server_obj:getpeercert(true)))
    assert.is_nil(server_obj:getpeercert(true))
    assert.same({}, client_obj:getpeercert())
    assert.equal(der_of(tls.path("server.pem")), client_obj:getpeercert(true))
    assert.is_true(server_obj.server_side)
    assert.is_false(client_obj.server_side)
  end))

  it("§10 a server with CERT_OPTIONAL takes a client without a certificate (getpeercert() nil) "
     .. "and verifies one that sends it; with CERT_NONE it asks for none, so a client's certificate "
     .. "is not sent (Python ssl, test_client_cert_optional / CERT_NONE)", async(function(loop)
    local optional = tls.server_context()
    optional.verify_mode = ssl.CERT_OPTIONAL
    optional:load_verify_locations(tls.path("ca.pem"))
    local with_cert = tls.client_context()
    with_cert:load_cert_chain(tls.path("client.pem"), tls.path("client.key"))
    local _, server_obj = tls_pair(loop, optional, tls.client_context())
    assert.is_nil(server_obj:getpeercert())
    _, server_obj = tls_pair(loop, optional, with_cert)
    assert.same({{{"organizationName", "eddy"}}, {{"commonName", "eddy client"}}}, server_obj:getpeercert().subject)
    _, server_obj = tls_pair(loop, tls.server_context(), with_cert)
    assert.is_nil(server_obj:getpeercert(true))
  end))

  it("§10 a context's settings changed after a connection hold for the next one: verify_mode "
     .. "(through check_hostname), trusted CAs, ALPN (Python SSLContext: settings are read at "
     .. "each wrap)", async(function(loop)
    local rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rogue:load_cert_chain(tls.path("rogue.pem"), tls.path("rogue.key"))
    rogue:set_alpn_protocols({"h2"})
    local c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = false
    c.verify_mode = ssl.CERT_NONE
    assert.same({}, tls_pair(loop, rogue, c):getpeercert())
    c.check_hostname = true  -- and so CERT_REQUIRED
    raises(function() tls_pair(loop, rogue, c) end, errors.SSLCertVerificationError)
    c:load_verify_locations(tls.path("rogue.pem"))
    local obj = tls_pair(loop, rogue, c)
    assert.equal("localhost", obj:getpeercert().subject[1][1][2])
    assert.is_nil(obj:selected_alpn_protocol())
    c:set_alpn_protocols({"http/1.1", "h2"})
    assert.equal("h2", tls_pair(loop, rogue, c):selected_alpn_protocol())
  end))

  it("§10 cipher() returns name, protocol and secret bits, the same on both sides and in "
     .. "get_extra_info(\"cipher\"), the suite set_ciphers chose; version() is \"TLSv1.2\"; "
     .. "selected_alpn_protocol() nil without ALPN (Python SSLObject)", async(function(loop)
    local server = tls.server_context()
    server:set_ciphers("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    local client_obj, server_obj, extra = tls_pair(loop, server, tls.client_context())
    local name, protocol, bits = client_obj:cipher()
    assert.is_string(name)
    assert.equal("TLSv1.2", protocol)
    assert.equal("integer", math.type(bits))
    assert.is_true(bits >= 128)
    assert.same({name, protocol, bits}, {server_obj:cipher()})
    assert.same({name, protocol, bits}, extra)
    assert.equal("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", name)
    assert.equal(128, bits)
    assert.equal("TLSv1.2", client_obj:version())
    assert.equal(1, select("#", client_obj:selected_alpn_protocol()))
    assert.is_nil(client_obj:selected_alpn_protocol())
    assert.is_nil(server_obj:selected_alpn_protocol())
  end))

  -- An openssl s_server for one connection with this certificate; returns
  -- the process (net.spawn's) and its port.
  local function s_server(cert, key)
    -- s_server ends when its input does, and prints the port it took
    return net.spawn_server(string.format(
      "sleep 10 | openssl s_server -accept 0 -naccept 1 -cert %s -key %s 2>&1 | "
      .. "sed -un 's/^ACCEPT .*:\\([0-9]*\\)$/\\1/p'", cert, key), 20)
  end

  it("§10 a failed handshake against openssl s_server raises SSLCertVerificationError, an "
     .. "SSLError and an OSError, with reason CERTIFICATE_VERIFY_FAILED, library \"SSL\", "
     .. "verify_code and verify_message: an untrusted chain, then a name the certificate does not "
     .. "have (Python ssl, test_connect_fail, test_check_hostname)", async(function(loop)
    local function fail(cert, key, hostname)
      local proc, port = s_server(tls.path(cert), tls.path(key))
      local err = raises(function()
        eddy.open_connection("127.0.0.1", port, {ssl = tls.client_context(), server_hostname = hostname})
      end, errors.SSLCertVerificationError)
      proc.cleanup()
      assert.is_true(errors.is(err, errors.SSLError) and errors.is(err, errors.OSError))
      assert.same({"CERTIFICATE_VERIFY_FAILED", "SSL"}, {err.reason, err.library})
      assert.equal("integer", math.type(err.verify_code))
      assert.is_true(err.verify_code ~= 0)
      assert.matches("CERTIFICATE_VERIFY_FAILED", tostring(err))
      return err
    end
    assert.matches("not correctly signed by the trusted CA", fail("rogue.pem", "rogue.key", "localhost").verify_message)
    local mismatch = fail("server.pem", "server.key", "other.test")
    assert.matches("Common Name %(CN%) does not match", mismatch.verify_message)
    assert.is_nil(mismatch.verify_message:find("trusted CA", 1, true))
  end))
end)

describe("§10 eddy.socket objects (Python socket)", function()
  it("§10 socket(): AF_INET, SOCK_STREAM, proto 0, blocking; an unbound socket's name is "
     .. "{\"0.0.0.0\", 0}, an AF_INET6 one's the four fields {\"::\", 0, 0, 0}, an AF_UNIX one's \"\" "
     .. "(Python socket, test_socket.py testNewAttributes, testSockName)", function()
    local s <close> = socket.socket()
    assert.same({2, 1, 0, true}, {s.family, s.type, s.proto, s:getblocking()})
    assert.same({socket.AF_INET, socket.SOCK_STREAM}, {s.family, s.type})
    assert.same({"0.0.0.0", 0}, s:getsockname())
    local s6 <close> = socket.socket(socket.AF_INET6)
    assert.same({"::", 0, 0, 0}, s6:getsockname())
    local u <close> = socket.socket(socket.AF_UNIX)
    assert.equal("", u:getsockname())
    assert.equal("ENOTCONN", expect_error(errors.OSError, u.getpeername, u).code)
  end)

  it("§10 a closed socket: fileno() -1, close() again is fine, detach() -1, every other method "
     .. "OSError EBADF (errno 9), family and type still there (Python socket, testCloseException, "
     .. "test_unusable_closed_socketobject)", function()
    local s = socket.socket()
    s:close()
    s:close()
    assert.equal(-1, s:fileno())
    assert.equal(-1, s:detach())
    assert.same({socket.AF_INET, socket.SOCK_STREAM}, {s.family, s.type})
    for _, call in ipairs {
      {"bind", {"127.0.0.1", 0}}, {"listen"}, {"connect", {"127.0.0.1", 9}}, {"accept"}, {"recv", 1},
      {"send", "x"}, {"sendall", "x"}, {"getsockname"}, {"getpeername"}, {"shutdown", socket.SHUT_RDWR},
      {"setsockopt", socket.SOL_SOCKET, socket.SO_REUSEADDR, 1},
      {"getsockopt", socket.SOL_SOCKET, socket.SO_REUSEADDR}, {"settimeout", 1}, {"dup"},
    } do
      local err = expect_error(errors.OSError, s[call[1]], s, table.unpack(call, 2))
      assert.same({9, "EBADF"}, {err.errno, err.code}, call[1])
    end
  end)

  it("§10 dup() keeps the original's proto and timeout: a duplicate of a socket with a timeout "
     .. "times out, not EAGAIN (Python socket.dup: settimeout(self.gettimeout()), testDup)", function()
    local s <close> = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    local d <close> = s:dup()
    assert.same({0, true}, {d.proto, d:getblocking()})
    assert.is_nil(d:gettimeout())
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    a:settimeout(0.05)
    local t <close> = a:dup()
    assert.equal(0.05, t:gettimeout())
    expect_error(errors.TimeoutError, t.recv, t, 1)
    a:setblocking(false)
    local n <close> = a:dup()
    assert.equal(0, n:gettimeout())
  end)

  it("§10 bind to a port in use raises OSError EADDRINUSE with errno 98 (Python socket)", function()
    local a <close> = socket.socket()
    a:bind({"127.0.0.1", 0})
    a:listen()
    local b <close> = socket.socket()
    local err = expect_error(errors.OSError, b.bind, b, a:getsockname())
    assert.same({98, "EADDRINUSE"}, {err.errno, err.code})
    assert.is_false(errors.is(err, errors.ConnectionError))
  end)

  it("§10 AF_UNIX connect to a missing path raises FileNotFoundError (errno 2), to a path no "
     .. "one listens on ConnectionRefusedError (errno 111) (Python socket)", function()
    local c <close> = socket.socket(socket.AF_UNIX)
    local err = expect_error(errors.FileNotFoundError, c.connect, c, tmp.path(".sock"))
    assert.equal(2, err.errno)
    local path = tmp.path(".sock")
    local dead = socket.socket(socket.AF_UNIX)
    dead:bind(path)
    dead:close()  -- the file stays, nobody listens
    local d <close> = socket.socket(socket.AF_UNIX)
    err = expect_error(errors.ConnectionRefusedError, d.connect, d, path)
    assert.equal(111, err.errno)
  end)

  it("§10 getsockopt/setsockopt: integers for SO_TYPE, SO_REUSEADDR, TCP_NODELAY, SO_ERROR; "
     .. "booleans set as 1 and 0; a buflen gives the raw bytes (Python socket, testSetSockOpt, "
     .. "test_getsockopt)", function()
    local s <close> = socket.socket()
    local d <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert.equal(socket.SOCK_STREAM, s:getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
    assert.equal(socket.SOCK_DGRAM, d:getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
    assert.equal(0, s:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    s:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, true)
    assert.equal(1, s:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    s:setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, false)
    assert.equal(0, s:getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    assert.equal(0, s:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    s:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert.equal(1, s:getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    assert.equal(0, s:getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    -- struct linger {l_onoff, l_linger}, set and read as raw bytes
    s:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("=i4i4", 1, 7))
    assert.equal(string.pack("=i4i4", 1, 7), s:getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
  end)

  it("§10 AF_INET6 names are four fields: getsockname, getpeername and accept's address, "
     .. "{host, port, flowinfo, scope_id} (Python socket)", function()
    if not socket.has_ipv6 then pending("no IPv6") return end
    local l <close> = socket.socket(socket.AF_INET6)
    l:bind({"::1", 0})
    l:listen()
    local c <close> = socket.socket(socket.AF_INET6)
    c:connect({"::1", l:getsockname()[2]})
    local conn <close>, addr = l:accept()
    assert.same(c:getsockname(), addr)
    assert.equal(4, #addr)
    assert.same({"::1", l:getsockname()[2], 0, 0}, c:getpeername())
    assert.same(conn:getpeername(), c:getsockname())
  end)

  it("§10 AF_UNIX names: a socketpair's are \"\", accept's address of an unnamed client is \"\" "
     .. "(a string, not nil), getpeername is the server's path, abstract names keep their NUL "
     .. "(Python socket, testSocketPair, test_abstract_namespace)", function()
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    assert.same({"", ""}, {a:getsockname(), a:getpeername()})
    local path = tmp.path(".sock")
    local l <close> = socket.socket(socket.AF_UNIX)
    l:bind(path)
    l:listen()
    local c <close> = socket.socket(socket.AF_UNIX)
    c:connect(path)
    local conn <close>, addr = l:accept()
    assert.equal("", addr)
    assert.equal(path, c:getpeername())
    assert.equal(path, conn:getsockname())
    local name = "\0eddy-conformance3-" .. signal.getpid()
    local abstract <close> = socket.socket(socket.AF_UNIX)
    abstract:bind(name)
    abstract:listen()
    local ac <close> = socket.socket(socket.AF_UNIX)
    ac:connect(name)
    assert.equal(name, ac:getpeername())
  end)

  it("§10 shutdown: SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2; the peer reads \"\" after SHUT_WR and can "
     .. "still send; an unconnected socket raises ENOTCONN, a bad how EINVAL (Python socket, "
     .. "testShutdown)", function()
    assert.same({0, 1, 2}, {socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR})
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    a:shutdown(socket.SHUT_WR)
    assert.equal("", b:recv(10))
    b:sendall("back")
    assert.equal("back", a:recv(10))
    assert.equal("EINVAL", expect_error(errors.OSError, a.shutdown, a, 7).code)
    local s <close> = socket.socket()
    assert.same({107, "ENOTCONN"}, (function(e) return {e.errno, e.code} end)(
      expect_error(errors.OSError, s.shutdown, s, socket.SHUT_RDWR)))
  end)

  it("§10 socketpair(): AF_UNIX, SOCK_STREAM, proto 0 by default; SOCK_DGRAM keeps message "
     .. "boundaries; AF_INET raises OSError errno 95 (Python socket on Linux)", function()
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    assert.same({socket.AF_UNIX, socket.SOCK_STREAM, 0}, {a.family, a.type, a.proto})
    assert.same({socket.AF_UNIX, socket.SOCK_STREAM, 0}, {b.family, b.type, b.proto})
    local c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    local _ <close> = c
    local _ <close> = d
    assert.equal(socket.SOCK_DGRAM, c.type)
    c:send("one")
    c:send("two")
    assert.equal("one", d:recv(100))
    assert.equal("two", d:recv(100))
    assert.equal(95, expect_error(errors.OSError, socket.socketpair, socket.AF_INET).errno)
  end)

  it("§10 non-blocking: recv with nothing to read and accept with nobody connecting raise "
     .. "OSError EAGAIN errno 11 (Python's BlockingIOError, docs/sockets.md); settimeout(0) is "
     .. "setblocking(false); accept() gives a blocking socket whatever the listener's timeout "
     .. "(Python socket, testRecvNonBlocking, testAcceptNonBlocking, test_accept)", function()
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    a:settimeout(0)
    assert.is_false(a:getblocking())
    local err = expect_error(errors.OSError, a.recv, a, 10)
    assert.same({11, "EAGAIN"}, {err.errno, err.code})
    local l <close> = socket.socket()
    l:bind({"127.0.0.1", 0})
    l:listen()
    l:setblocking(false)
    assert.equal(0, l:gettimeout())
    assert.equal("EAGAIN", expect_error(errors.OSError, l.accept, l).code)
    l:settimeout(5)
    local c <close> = socket.socket()
    c:connect(l:getsockname())
    local conn <close> = l:accept()
    assert.is_nil(conn:gettimeout())
    assert.is_true(conn:getblocking())
  end)

  it("§10 a datagram socket's recv(n) with a longer datagram returns its first n bytes and "
     .. "drops the rest, as recvfrom; send(\"\") returns 0 (Python socket, testRecvFromShort)", function()
    local a <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a:bind({"127.0.0.1", 0})
    local b <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b:connect(a:getsockname())
    assert.equal(11, b:send("hello world"))
    assert.equal(0, b:send(""))
    b:send("second")
    assert.equal("hello", a:recv(5))
    local data, from = a:recvfrom(3)
    assert.equal("", data)  -- the empty datagram
    assert.same(b:getsockname(), from)
    assert.equal("sec", a:recv(3))
    a:setblocking(false)
    assert.equal("EAGAIN", expect_error(errors.OSError, a.recv, a, 100).code)
  end)

  it("§10 send to a peer that has gone raises BrokenPipeError (errno 32) and the process lives: "
     .. "a socketpair, a TCP connection the peer reset, an unconnected TCP socket; recv on that "
     .. "one raises ENOTCONN (Python socket)", function()
    local a, b = socket.socketpair()
    b:close()
    assert.equal(32, expect_error(errors.BrokenPipeError, a.send, a, "x").errno)
    expect_error(errors.BrokenPipeError, a.sendall, a, "x")
    a:close()
    local l <close> = socket.socket()
    l:bind({"127.0.0.1", 0})
    l:listen()
    local c <close> = socket.socket()
    c:connect(l:getsockname())
    local conn = l:accept()
    conn:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("=i4i4", 1, 0))
    conn:close()  -- a reset
    local ok, err
    for _ = 1, 3 do
      ok, err = pcall(c.send, c, "x")
      if not ok then break end
    end
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.BrokenPipeError) or errors.is(err, errors.ConnectionResetError),
                   tostring(err))
    local u <close> = socket.socket()
    expect_error(errors.BrokenPipeError, u.send, u, "x")
    assert.equal("ENOTCONN", expect_error(errors.OSError, u.recv, u, 1).code)
  end)
end)

describe("§10 eddy.Buffer", function()
  it("§10 Buffer:tostring(i, j) follows string.sub's index rules for every i and j, negative, "
     .. "zero, past the end and the integer extremes (Lua 5.4 manual, string.sub)", function()
    for _, size in ipairs {0, 1, 5} do
      local buf = eddy.Buffer(size)
      local content = buf:tostring()
      assert.equal(("\0"):rep(size), content)
      local marks = {math.mininteger, -size - 2, math.maxinteger, size + 2}
      for i = -size - 1, size + 1 do marks[#marks + 1] = i end
      for _, i in ipairs(marks) do
        assert.equal(content:sub(i), buf:tostring(i), string.format("size %d, i %d", size, i))
        for _, j in ipairs(marks) do
          assert.equal(content:sub(i, j), buf:tostring(i, j), string.format("size %d, %d..%d", size, i, j))
        end
      end
    end
  end)

  it("§10 Buffer(size): 0 is an empty buffer, a negative or fractional size an argument error, a "
     .. "size no memory holds a clear error, never a crash (bad input)", function()
    assert.equal(0, #eddy.Buffer(0))
    assert.equal("", eddy.Buffer(0):tostring())
    checks.argerror(function() eddy.Buffer(-1) end, 1, "Buffer")
    checks.argerror(function() eddy.Buffer(math.mininteger) end, 1, "Buffer")
    checks.argerror(function() eddy.Buffer(1.5) end, 1, "Buffer")
    checks.argerror(function() eddy.Buffer() end, 1, "Buffer")
    checks.argerror(function() eddy.Buffer({}) end, 1, "Buffer")
    for _, huge in ipairs {1 << 62, math.maxinteger} do
      local ok, err = pcall(eddy.Buffer, huge)
      assert.is_false(ok)
      assert.matches("memory", tostring(err))
    end
  end)

  it("§10 sock_recv_into fills at most #buf bytes, leaves the rest of the buffer as it was and "
     .. "the rest of the data for the next call; sock_recvfrom_into refuses nbytes beyond the buffer "
     .. "(ValueError, Python's recvfrom_into)", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local _ <close> = a
    local _ <close> = b
    local buf = eddy.Buffer(4)
    b:send("abcdef")
    assert.equal(4, loop:sock_recv_into(a, buf))
    assert.equal("abcd", buf:tostring())
    assert.equal(2, loop:sock_recv_into(a, buf))
    assert.equal("efcd", buf:tostring())
    local u <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u:bind({"127.0.0.1", 0})
    u:setblocking(false)
    raises(function() loop:sock_recvfrom_into(u, buf, 5) end,
           {errors.ValueError, "nbytes is greater than the length of the buffer"})
    raises(function() loop:sock_recvfrom_into(u, buf, -1) end, errors.ValueError)
  end))

  it("§10 a BufferedProtocol's buffer takes a write larger than itself in pieces, each "
     .. "buffer_updated(n) with n <= #buf (asyncio BufferedProtocol)", async(function(loop)
    local buf, got, sizes = eddy.Buffer(3), {}, {}
    local done = loop:create_future()
    local srv <close> = loop:create_server(function()
      return {
        get_buffer = function() return buf end,
        buffer_updated = function(_, n)
          sizes[#sizes + 1] = n
          got[#got + 1] = buf:tostring(1, n)
        end,
        eof_received = function() done:set_result(true) end,
      }
    end, "127.0.0.1", 0)
    local c <close> = socket.socket()
    c:connect(srv.sockets[1]:getsockname())
    c:sendall("0123456789")
    c:shutdown(socket.SHUT_WR)
    net.wait(done)
    assert.equal("0123456789", table.concat(got))
    for _, n in ipairs(sizes) do assert.is_true(n >= 1 and n <= 3) end
  end))
end)

describe("§10 eddy.signal", function()
  it("§10 eddy.signal has every name and number the system's kill -l lists, and every SIG name "
     .. "of Python's signal module on Linux (SIGCLD, SIGPOLL, SIGIOT aliases too)", function()
    local listed = sh("bash -c 'kill -l'")
    local n = 0
    for num, name in listed:gmatch("(%d+)%) (SIG[%u%d]+)") do
      if not name:find("^SIGRTM") then
        assert.equal(tonumber(num), signal[name], name)
        n = n + 1
      end
    end
    assert.is_true(n >= 31)
    assert.equal(tonumber(listed:match("(%d+)%) SIGRTMIN%s")), signal.SIGRTMIN)
    assert.equal(tonumber(listed:match("(%d+)%) SIGRTMAX%s")), signal.SIGRTMAX)
    local python = sh(PYTHON .. [[ -c 'import signal
for n in dir(signal):
    if n.startswith("SIG") and not n.startswith("SIG_"): print(n, int(getattr(signal, n)))']])
    for name, num in python:gmatch("(SIG%w+) (%d+)") do
      assert.equal(tonumber(num), signal[name], name)
    end
    assert.equal(signal.SIGCHLD, signal.SIGCLD)
  end)

  it("§10 unknown signal names: eddy.signal has no field for them, and kill and "
     .. "add_signal_handler raise ValueError for them, also for lower case and \"SIGRTMIN+1\" "
     .. "(Python: AttributeError / ValueError)", async(function(loop)
    for _, name in ipairs {"SIGFOO", "sigint", "INT", "SIGRTMIN+1", ""} do
      assert.is_nil(rawget(signal, name))
      raises(signal.kill, errors.ValueError, signal.getpid(), name)
      raises(function() loop:add_signal_handler(name, print) end, errors.ValueError)
    end
  end))
end)
