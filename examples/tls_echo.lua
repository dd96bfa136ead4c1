-- A TLS echo server and a client of it, both eddy, over streams.
--
--   eddy examples/tls_echo.lua
--
-- It makes a throwaway self-signed certificate for "localhost" with the
-- openssl command, serves with it, and connects with a client context
-- that trusts exactly that certificate, checking the hostname.
local eddy = require "eddy"
local ssl = require "eddy.ssl"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
assert(os.execute(string.format(
  "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
  .. "-keyout %s -out %s -days 1 -subj /CN=localhost "
  .. "-addext subjectAltName=DNS:localhost >/dev/null 2>&1", key, cert)),
  "openssl could not make a certificate")

local function echo(reader, writer)
  local peer = writer:get_extra_info("peername")
  while true do
    local line = reader:readline()
    if line == "" then break end
    writer:write(line:upper())
    writer:drain()
  end
  print("server: " .. peer[1] .. " left")
  writer:close()
end

eddy.run(function()
  local server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  server_ctx:load_cert_chain(cert, key)
  local server <close> = eddy.start_server(echo, "127.0.0.1", 0, {ssl = server_ctx})
  local port = server.sockets[1]:getsockname()[2]

  local client_ctx = ssl.create_default_context(nil, {cafile = cert})
  local reader, writer = eddy.open_connection("127.0.0.1", port,
                                              {ssl = client_ctx, server_hostname = "localhost"})
  local tls = writer:get_extra_info("ssl_object")
  local cipher = writer:get_extra_info("cipher")
  print(string.format("client: %s, %s (%d bits), server is %s", tls:version(), cipher[1],
                      cipher[3], writer:get_extra_info("peercert").subject[1][1][2]))
  for _, text in ipairs {"hello\n", "over tls\n"} do
    writer:write(text)
    io.write("client got: ", reader:readline())
  end
  writer:close()
  writer:wait_closed()
end)

os.execute("rm -rf " .. dir)
