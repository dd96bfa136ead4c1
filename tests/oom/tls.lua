-- A TLS streams echo: server and client contexts from the certificates of
-- spec/support/tls.lua, in the directory OOM_CERTS names.
local eddy = require "eddy"
local ssl = require "eddy.ssl"
local support = dofile "tests/oom/support.lua"
local dir = assert(os.getenv("OOM_CERTS"), "OOM_CERTS: the certificates' directory")
support.run(function()
  local server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  server_ctx:load_cert_chain(dir .. "/server.pem", dir .. "/server.key")
  local client_ctx = ssl.create_default_context(nil, {cafile = dir .. "/ca.pem"})
  local server <close> = eddy.start_server(function(reader, writer)
    writer:write(reader:readline():upper())
    writer:close()
  end, "127.0.0.1", 0, {ssl = server_ctx, ssl_handshake_timeout = 2})
  local port = server.sockets[1]:getsockname()[2]
  -- (bounded by the handshake's timeout; in a task of wait_for's, no
  -- memory to hand its results back would drop the connection unclosed,
  -- for the server's close to wait on until a collection)
  local reader, writer = eddy.open_connection("127.0.0.1", port,
    {ssl = client_ctx, server_hostname = "localhost", ssl_handshake_timeout = 2})
  local _ <close> = support.closing(writer)
  writer:write("over tls\n")
  assert(eddy.wait_for(function() return reader:readline() end, 2) == "OVER TLS\n")
  writer:close()
  eddy.wait_for(function() writer:wait_closed() end, 2)
end)
