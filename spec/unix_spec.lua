-- UNIX sockets: create_unix_connection and create_unix_server (API.md
-- §3), filesystem and abstract ("\0name") paths.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local tmp = require "support.tmp"
local raises, argerror = checks.raises, checks.argerror

local function temp_path() return tmp.path(".sock") end

-- Whether a file (of any type) is at path.
local function exists(path) return os.rename(path, path) ~= nil end

-- A UNIX echo server at path; returns the server and its protocols.
local function echo_server(loop, path)
  local protos = {}
  local srv = loop:create_unix_server(function()
    local p = {}
    function p.connection_made(self, t) self.t = t end
    function p.data_received(self, d) self.t:write(d) end
    function p.connection_lost(self) self.lost = true end
    protos[#protos + 1] = p
    return p
  end, path)
  return srv, protos
end

describe("UNIX sockets", function()
  it("echo over a filesystem path (test_create_unix_connection, test_create_unix_server)", async(function(loop)
    local path = temp_path()
    local srv <close> = echo_server(loop, path)
    assert.equal(path, srv.sockets[1]:getsockname())
    assert.equal(eddy.socket.AF_UNIX, srv.sockets[1].family)
    local rec = net.recorder(loop)
    local t, p = loop:create_unix_connection(function() return rec end, path)
    assert.equal(rec, p)
    assert.equal(path, t:get_extra_info("peername"))
    assert.equal("", t:get_extra_info("sockname"))
    assert.truthy(tostring(t):find("UnixTransport"))
    t:write("over unix")
    rec:wait_bytes(9)
    assert.equal("over unix", rec:data())
    t:write_eof()
    net.wait(rec.lost_fut)
    os.remove(path)
  end))

  it("abstract names start with \\0 and leave no file", async(function(loop)
    local name = "\0eddy-spec-" .. tostring(os.time()) .. "-" .. math.random(1e9)
    local srv <close> = echo_server(loop, name)
    assert.equal(name, srv.sockets[1]:getsockname())
    local rec = net.recorder(loop)
    local t = loop:create_unix_connection(function() return rec end, name)
    t:write("abstract")
    rec:wait_bytes(8)
    t:close()
    net.wait(rec.lost_fut)
  end))

  it("replaces a stale socket file; a path in use raises (test_create_unix_server_existing_path_sock, "
     .. "test_create_unix_server_existing_path_nonsock)",
     async(function(loop)
    local path = temp_path()
    local first = loop:create_unix_server(function() return {} end, path,
                                          {cleanup_socket = false})
    first:close()
    assert.is_true(exists(path))  -- the file stays
    first:wait_closed()
    local srv <close> = echo_server(loop, path)  -- the stale file is removed
    local rec = net.recorder(loop)
    local t = loop:create_unix_connection(function() return rec end, path)
    t:close()
    net.wait(rec.lost_fut)
    -- a regular file at the path is not removed: bind fails
    local other = temp_path()
    assert(io.open(other, "w")):close()
    local err = raises(function() loop:create_unix_server(function() return {} end, other) end,
                       errors.OSError)
    assert.equal("EADDRINUSE", err.code)
    assert.truthy(tostring(err):find("is already in use", 1, true))
    os.remove(other)
    os.remove(path)
  end))

  -- A UNIX socket bound to path, for sock=.
  local function bound(path)
    local s = eddy.socket.socket(eddy.socket.AF_UNIX, eddy.socket.SOCK_STREAM)
    s:bind(path)
    return s
  end

  it("close removes the socket file (test_create_unix_server_cleanup*, test_unix_server_addr_cleanup)",
     async(function(loop)
    local path = temp_path()
    local srv = echo_server(loop, path)
    assert.is_true(exists(path))
    srv:close()
    assert.is_false(exists(path))
    srv:wait_closed()
  end))

  it("close removes the file of a socket passed with sock=, as asyncio (test_unix_server_sock_cleanup)",
     async(function(loop)
    local path = temp_path()
    local srv = loop:create_unix_server(function() return {} end, nil, {sock = bound(path)})
    srv:close()
    assert.is_false(exists(path))
  end))

  it("close does nothing about a socket file removed already (test_unix_server_cleanup_gone)",
     async(function(loop)
    local path = temp_path()
    local srv = echo_server(loop, path)
    os.remove(path)
    srv:close()
    srv:wait_closed()
    srv = loop:create_unix_server(function() return {} end, nil, {sock = bound(path)})
    os.remove(path)
    srv:close()
    srv:wait_closed()
  end))

  it("close leaves a file that replaced the socket's (test_unix_server_cleanup_replaced)",
     async(function(loop)
    local path = temp_path()
    for _, replace in ipairs {
      function() assert(io.open(path, "w")):close() return nil end,
      function() return bound(path) end,  -- another socket, as CPython's test
    } do
      local srv = echo_server(loop, path)
      os.remove(path)
      local other = replace()
      srv:close()
      assert.is_true(exists(path))
      if other then other:close() end
      os.remove(path)
    end
  end))

  it("cleanup_socket = false keeps the socket file (test_unix_server_cleanup_prevented)",
     async(function(loop)
    local path = temp_path()
    local srv = loop:create_unix_server(function() return {} end, path, {cleanup_socket = false})
    srv:close()
    assert.is_true(exists(path))
    os.remove(path)
  end))

  it("connecting to a missing path raises FileNotFoundError", async(function(loop)
    local err = raises(function()
      loop:create_unix_connection(function() return {} end, temp_path())
    end, errors.FileNotFoundError)
    assert.equal("ENOENT", err.code)
  end))

  it("takes sockets with sock=", async(function(loop)
    local socket = eddy.socket
    local path = temp_path()
    local s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s:bind(path)
    local srv <close> = loop:create_unix_server(function() return {} end, nil, {sock = s})
    local c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c:connect(path)
    local rec = net.recorder(loop)
    local t = loop:create_unix_connection(function() return rec end, nil, {sock = c})
    t:close()
    net.wait(rec.lost_fut)
    os.remove(path)
  end))

  it("waits for room in a full backlog instead of failing with EAGAIN", async(function(loop)
    local path = temp_path()
    local srv <close>, protos = echo_server(loop, path)
    local tasks = {}
    for i = 1, 300 do  -- more than the backlog (100): connect() says EAGAIN
      tasks[i] = loop:create_task(function()
        return loop:create_unix_connection(function() return net.recorder(loop) end, path)
      end)
    end
    for i = 1, 300 do
      local t, rec = net.wait(tasks[i])
      t:write("x")
      rec:wait_bytes(1)
      t:close()
      net.wait(rec.lost_fut)
    end
    assert.equal(300, #protos)
  end))

  it("sock= must be a UNIX stream socket (test_create_unix_connection_nopath_nosock, "
     .. "test_create_unix_server_path_inetsock, test_create_unix_server_path_dgram, "
     .. "test_create_unix_connection_path_inetsock)",
     async(function(loop)
    local socket = eddy.socket
    for _, s in ipairs {socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)} do
      raises(function() loop:create_unix_connection(function() return {} end, nil, {sock = s}) end,
             {errors.ValueError, "A UNIX Domain Stream Socket was expected"})
      raises(function() loop:create_unix_server(function() return {} end, nil, {sock = s}) end,
             {errors.ValueError, "A UNIX Domain Stream Socket was expected"})
      s:close()
    end
  end))

  it("rejects bad arguments with clear errors", async(function(loop)
    argerror(function() loop:create_unix_server(nil, "x") end, 1, "create_unix_server")
    argerror(function() loop:create_unix_server(function() end, 5) end, 2, "create_unix_server")
    argerror(function() loop:create_unix_connection(function() end, {}) end, 2, "create_unix_connection")
    raises(function() loop:create_unix_server(function() end) end, errors.ValueError)
    raises(function() loop:create_unix_connection(function() end) end, errors.ValueError)
    raises(function() loop:create_unix_server(function() end, "") end, errors.ValueError)
    raises(function() loop:create_unix_server(function() end, string.rep("x", 200)) end, errors.OSError)
    raises(function() loop:create_unix_server(function() end, "x", {ssl = true}) end,
           "bad option 'ssl' to 'create_unix_server' (eddy.ssl.SSLContext expected, got boolean)")
    raises(function() loop:create_unix_server(function() end, "x", {host = 1}) end,
           "unknown option 'host'")
  end))

  it("asyncio's ValueErrors for options that do not go together (test_create_unix_server_ssl_bool, "
     .. "test_create_unix_server_nopath_nosock, test_create_unix_server_ssl_timeout_with_plain_sock, "
     .. "test_create_unix_connection_ssl_timeout_with_plain_sock, test_create_unix_connection_path_sock, "
     .. "test_create_unix_connection_nossl_serverhost, test_create_unix_connection_ssl_noserverhost)",
     async(function(loop)
    local f = function() return {} end
    raises(function() loop:create_unix_server(f, "spam", {ssl = true}) end,
           "bad option 'ssl' to 'create_unix_server' (eddy.ssl.SSLContext expected, got boolean)")
    raises(function() loop:create_unix_server(f) end,
           {errors.ValueError, "path was not specified, and no sock specified"})
    for _, call in ipairs {loop.create_unix_server, loop.create_unix_connection} do
      raises(function() call(loop, f, "spam", {ssl_handshake_timeout = 1}) end,
             {errors.ValueError, "ssl_handshake_timeout is only meaningful with ssl"})
    end
    local s <close> = eddy.socket.socket(eddy.socket.AF_UNIX)
    raises(function() loop:create_unix_connection(f, "/dev/null", {sock = s}) end,
           {errors.ValueError, "path and sock can not be specified at the same time"})
    raises(function() loop:create_unix_connection(f, "/dev/null", {server_hostname = "spam"}) end,
           {errors.ValueError, "server_hostname is only meaningful with ssl"})
    raises(function() loop:create_unix_connection(f, "/dev/null", {ssl = true}) end,
           {errors.ValueError, "you have to pass server_hostname when using ssl"})
  end))

  it("a failed bind closes the server's socket (test_create_unix_server_bind_error)", async(function(loop)
    -- ten tries: a leak would show as ten more descriptors; fewer than
    -- five more leaves room for what the rest of the process does meanwhile
    collectgarbage() collectgarbage()
    local before = checks.count_fds()
    for _ = 1, 10 do
      raises(function() loop:create_unix_server(function() return {} end, "/nonexistent/dir/sock") end,
             errors.FileNotFoundError)
    end
    collectgarbage() collectgarbage()
    assert.is_true(checks.count_fds() < before + 5)
  end))

  it("sock= with SOCK_NONBLOCK in its type is a stream socket (test_create_unix_server_path_stream_bittype)",
     async(function(loop)
    local socket = eddy.socket
    local path = temp_path()
    local s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    s:bind(path)
    local srv = loop:create_unix_server(function() return {} end, nil, {sock = s})
    srv:close()
    srv:wait_closed()
  end))

  -- A path cut at its NUL named another file: "/tmp/a\0b" bound /tmp/a.
  it("a filesystem path with a NUL inside is a ValueError; an abstract name may hold NULs",
     async(function(loop)
    local path = temp_path()
    local msg = {errors.ValueError, "embedded null byte in UNIX socket path"}
    raises(function() loop:create_unix_server(function() end, path .. "\0x") end, msg)
    raises(function() loop:create_unix_connection(function() end, path .. "\0x") end, msg)
    local s <close> = eddy.socket.socket(eddy.socket.AF_UNIX)
    raises(s.bind, msg, s, path .. "\0x")
    assert.is_false(exists(path))
    local name = "\0eddy\0spec" .. math.random(1e9)
    local srv = loop:create_unix_server(function() return {} end, name)
    srv:close()
    srv:wait_closed()
  end))
end)
