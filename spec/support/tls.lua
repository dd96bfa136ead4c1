-- Certificates for the TLS specs, made once per process with the openssl
-- command line (Debian's openssl): a CA, a server certificate for
-- localhost / 127.0.0.1 / ::1 signed by it, a client certificate, the
-- server key encrypted with a password, and a self-signed certificate
-- nobody trusts.  EC P-256 keys: quick to make.
local tls = {}

local dir

local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok, "openssl failed: " .. cmd)
end

-- The directory holding ca.pem, server.pem/.key, server-enc.key and
-- server-p8-aes128.key, server-p8-aes256.key (password "s3cret"), client.pem/.key, ipsan.pem/.key, othercn.pem/.key,
-- rogue.pem/.key.
function tls.dir()
  if dir ~= nil then return dir end
  dir = os.tmpname()
  os.remove(dir)
  run("mkdir -p " .. dir)
  local function key(name)
    run(string.format("openssl ecparam -name prime256v1 -genkey -noout -out %s/%s.key", dir, name))
  end
  local function sign(name, subject, ext)
    run(string.format("openssl req -new -key %s/%s.key -subj %q -out %s/%s.csr",
                      dir, name, subject, dir, name))
    local f = assert(io.open(dir .. "/" .. name .. ".ext", "w"))
    f:write(ext or "basicConstraints=CA:FALSE\n")
    f:close()
    run(string.format("openssl x509 -req -in %s/%s.csr -CA %s/ca.pem -CAkey %s/ca.key "
                      .. "-CAcreateserial -days 2 -out %s/%s.pem -extfile %s/%s.ext",
                      dir, name, dir, dir, dir, name, dir, name))
  end
  key("ca")
  run(string.format("openssl req -x509 -new -key %s/ca.key -subj '/CN=eddy test CA' -days 2 "
                    .. "-out %s/ca.pem", dir, dir))
  key("server")
  sign("server", "/C=XX/O=eddy/CN=localhost",
       "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
  key("client")
  sign("client", "/O=eddy/CN=eddy client")
  run(string.format("openssl ec -in %s/server.key -aes256 -passout pass:s3cret -out %s/server-enc.key",
                    dir, dir))
  -- the same key in PKCS#8 form (PBES2: PBKDF2 with HMAC-SHA256, AES-CBC),
  -- what "openssl genrsa -aes256" and "openssl req" write by default
  for _, bits in ipairs {128, 256} do
    run(string.format("openssl pkcs8 -topk8 -in %s/server.key -v2 aes-%d-cbc -v2prf hmacWithSHA256 "
                      .. "-passout pass:s3cret -out %s/server-p8-aes%d.key", dir, bits, dir, bits))
  end
  -- for the CN fallback of the hostname check: a certificate whose only
  -- subjectAltName is an IP address, and one whose CN is not among its
  -- DNS names
  key("ipsan")
  sign("ipsan", "/CN=localhost", "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n")
  key("othercn")
  sign("othercn", "/CN=other.test", "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n")
  -- and wildcard CNs, one too wide to name anything (OpenSSL's rule)
  key("wildcn")
  sign("wildcn", "/CN=*.eddy.test", "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n")
  key("tldcn")
  sign("tldcn", "/CN=*.test", "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n")
  key("rogue")
  run(string.format("openssl req -x509 -new -key %s/rogue.key -subj '/CN=localhost' -days 2 "
                    .. "-out %s/rogue.pem", dir, dir))
  return dir
end

function tls.path(name) return tls.dir() .. "/" .. name end

-- A server context with the localhost certificate; a client context
-- trusting the test CA.
function tls.server_context()
  local ssl = require "eddy.ssl"
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  ctx:load_cert_chain(tls.path("server.pem"), tls.path("server.key"))
  return ctx
end

function tls.client_context()
  return require("eddy.ssl").create_default_context(nil, {cafile = tls.path("ca.pem")})
end

function tls.cleanup()
  if dir ~= nil then os.execute("rm -rf " .. dir) end
  dir = nil
end

return tls
