-- embed_tls.lua -- the Lua half of tests/embed_test.c's "TLS in several
-- states on several threads": each state runs a TLS server that requires
-- a client certificate, and clients that present one, all from the same
-- certificate files (spec/support/tls.lua's directory).  On every
-- connection the client sends a seed line, then both sides send SIZE
-- bytes made from the seed at the same time and check the peer's byte for
-- byte; the server confirms with "ok", the client closes with
-- close_notify and the server waits for it.  Every state's work is
-- bounded by LIMIT seconds.
local eddy = require "eddy"
local ssl = require "eddy.ssl"

local SIZE = 256 * 1024  -- bytes each way on each connection
local PIECE = 16 * 1024  -- written piece by piece, draining: flow control
local LIMIT = 15         -- seconds (ThreadSanitizer on two cores takes 3)

-- SIZE bytes that differ for every seed (never 0): a byte misdelivered,
-- lost or corrupted shows.
local function payload(seed)
  local t, x = {}, seed
  for i = 1, SIZE // 8 do
    x = x * 6364136223846793005 + 1442695040888963407
    t[i] = string.pack("<i8", x)
  end
  return table.concat(t)
end

local function send(writer, data)
  for i = 1, #data, PIECE do
    writer:write(data:sub(i, i + PIECE - 1))
    writer:drain()
  end
end

-- Send 'mine' while reading SIZE bytes, which must be 'theirs'.
local function swap(reader, writer, mine, theirs, side)
  local sending = eddy.create_task(send, writer, mine)
  local got = reader:readexactly(SIZE)
  sending:await()
  assert(got == theirs, side .. ": the bytes received are not the bytes sent")
end

local function common_name(cert)
  for _, rdn in ipairs(cert.subject or {}) do
    if rdn[1][1] == "commonName" then return rdn[1][2] end
  end
end

-- A server context that requires a client certificate signed by the test
-- CA, and a client context that presents one.
local function contexts(dir)
  local server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  server:load_cert_chain(dir .. "/server.pem", dir .. "/server.key")
  server.verify_mode = ssl.CERT_REQUIRED
  server:load_verify_locations(dir .. "/ca.pem")
  local client = ssl.create_default_context(nil, {cafile = dir .. "/ca.pem"})
  client:load_cert_chain(dir .. "/client.pem", dir .. "/client.key")
  return server, client
end

local function serve_one(reader, writer)
  local cn = common_name(writer:get_extra_info("peercert"))
  assert(cn == "eddy client", "server: the client's certificate names " .. tostring(cn))
  local seed = assert(math.tointeger(tonumber(reader:readline())), "server: no seed")
  swap(reader, writer, payload(-seed), payload(seed), "server")
  writer:write("ok\n")
  assert(reader:read() == "", "server: data after the payload")  -- to close_notify
  writer:close()
  writer:wait_closed()
end

-- A TLS server on 127.0.0.1 for 'count' connections; returns it, its port
-- and a function that waits until all were served and raises their
-- failures.
local function serve(ctx, count)
  local all = eddy.get_event_loop():create_future()
  local done, failures = 0, {}
  local server = eddy.start_server(function(reader, writer)
    local ok, err = pcall(serve_one, reader, writer)
    if not ok then
      failures[#failures + 1] = tostring(err)
      writer:close()
    end
    done = done + 1
    if done == count then all:set_result() end
  end, "127.0.0.1", 0, {ssl = ctx})
  return server, server.sockets[1]:getsockname()[2], function()
    all:await()
    assert(#failures == 0, table.concat(failures, "\n"))
  end
end

-- A client of the server at 'port' (in this state or another).
local function exchange(ctx, port, seed)
  local reader, writer = eddy.open_connection("127.0.0.1", port,
                                              {ssl = ctx, server_hostname = "localhost"})
  local cn = common_name(writer:get_extra_info("peercert"))
  assert(cn == "localhost", "client: the server's certificate names " .. tostring(cn))
  writer:write(seed .. "\n")
  swap(reader, writer, payload(seed), payload(-seed), "client")
  assert(reader:readexactly(3) == "ok\n", "client: the server did not confirm")
  writer:close()
  writer:wait_closed()  -- within LIMIT: the server answered close_notify
end

local M = {}

-- The main thread's state: a server for its own client and for one
-- client of each of 'threads' threads; start(dir, port) starts them.
function M.main(dir, threads, start)
  local server_ctx, client_ctx = contexts(dir)
  local server <close>, port, served = serve(server_ctx, threads + 1)
  start(dir, port)
  eddy.wait_for(function()
    exchange(client_ctx, port, 1)
    served()
  end, LIMIT)
end

-- Thread 'id's state: at_once() returns when every thread is there, so
-- they all load the same files at once; then a connection to its own
-- server and one to the main state's, at the same time.
function M.thread(id, dir, main_port, at_once)
  at_once()
  local server_ctx, client_ctx = contexts(dir)
  eddy.wait_for(function()
    local server <close>, port, served = serve(server_ctx, 1)
    eddy.gather(function() exchange(client_ctx, port, 10 * id + 1) end,
                function() exchange(client_ctx, main_port, 10 * id + 2) end)
    served()
  end, LIMIT)
end

return M
