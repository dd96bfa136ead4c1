-- Attacks from plain Lua (no debug library) that forgery_spec (type
-- confusion) and fuzz_spec (random call sequences) do not make:
-- re-entrancy from finalizers, metamethods that raise or yield where eddy
-- reads a value, error values that cannot be printed, the coroutine
-- library against tasks, odd numbers, values crossing into executor
-- threads, objects outliving their loop.  Whatever the script does, the
-- outcome is a clear Lua error or asyncio's behaviour (STYLE: impossible
-- to crash from Lua).  Each attack runs in its own eddy process
-- (support.script), so a crash fails its case, not the runner.
local script = require "support.script"
local tls = require "support.tls"

local run = script.run

describe("adversarial scripts", function()
  describe("a value eddy reads twice", function()
    it("pass_fds whose __index gives another descriptor at each read: C reads each once", function()
      -- Each element used to be read once to check it and once more to
      -- use it: a descriptor of 10^6 the second time wrote past the
      -- child's stdio array (a heap overflow).
      run [[
local reads = 0
local fds = setmetatable({}, {
  __len = function() return 1 end,
  __index = function(_, i)
    if i ~= 1 then return nil end
    reads = reads + 1
    return reads <= 2 and 3 or 1000000  -- ipairs' read, then C's
  end})
eddy.run(function()
  local loop = eddy.get_running_loop()
  local exited = loop:create_future()
  local tr = loop:subprocess_exec(function()
    return {process_exited = function() exited:set_result(true) end}
  end, "true", {pass_fds = fds})
  eddy.wait_for(exited, 10)
  assert(tr:get_returncode() == 0)
  tr:close()
end)
print("ok")
]]
    end)

    it("pass_fds that a finalizer changes during the spawn: one value is used or refused", function()
      run [[
local fds = {3}
eddy.run(function()
  local loop = eddy.get_running_loop()
  for _ = 1, 50 do
    setmetatable({}, {__gc = function() fds[1] = 1000000 end})
    local exited = loop:create_future()
    local ok, err = pcall(loop.subprocess_exec, loop, function()
      return {process_exited = function() exited:set_result(true) end}
    end, "true", {pass_fds = fds})
    if ok then
      eddy.wait_for(exited, 10)
      err:close()
    else
      assert(tostring(err):match("1000000 is not a descriptor in 3..4095"), tostring(err))
    end
    fds[1] = 3
  end
end)
print("ok")
]]
    end)
  end)

  describe("strings with a NUL inside", function()
    it("bad input: TLS paths and passwords are refused, not read up to the NUL", function()
      -- mbedTLS takes C strings: "server.pem\0x" used to load server.pem.
      run(([[
local ssl = require "eddy.ssl"
local d = %q
local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
raises("^ValueError: embedded null byte in certfile$", ctx.load_cert_chain, ctx,
       d .. "/server.pem\0x", d .. "/server.key")
raises("^ValueError: embedded null byte in keyfile$", ctx.load_cert_chain, ctx,
       d .. "/server.pem", d .. "/server.key\0")
raises("^ValueError: embedded null byte in password$", ctx.load_cert_chain, ctx,
       d .. "/server.pem", d .. "/server-enc.key", "s3cret\0x")
raises("^ValueError: embedded null byte in password$", ctx.load_cert_chain, ctx,
       d .. "/server.pem", d .. "/server-enc.key", function() return "s3cret\0x" end)
raises("^ValueError: embedded null byte in cafile$", ctx.load_verify_locations, ctx, d .. "/ca.pem\0")
raises("^ValueError: embedded null byte in capath$", ctx.load_verify_locations, ctx, nil, d .. "\0")
ctx:load_cert_chain(d .. "/server.pem", d .. "/server-enc.key", "s3cret")
ctx:load_verify_locations(d .. "/ca.pem")
print("ok")
]]):format(tls.dir()))
    end)

    it("bad input: inet_pton refuses an address with a NUL inside; hosts, paths, argv, env and signal names too", function()
      run [[
local S = eddy.socket
raises("^ValueError: embedded null byte in address$", S.inet_pton, S.AF_INET, "1.2.3.4\0x")
assert(S.inet_pton(S.AF_INET, "1.2.3.4") == "\1\2\3\4")
eddy.run(function()
  local loop = eddy.get_running_loop()
  local P = function() return {} end
  raises("embedded null byte in host", loop.create_connection, loop, P, "127.0.0.1\0x", 1)
  raises("embedded null byte in host", loop.create_server, loop, P, {"127.0.0.1", "127.0.0.1\0"}, 0)
  raises("embedded null byte in UNIX socket path", loop.create_unix_server, loop, P, "/tmp/x\0y")
  raises("embedded null byte in port", loop.getaddrinfo, loop, "localhost", "80\0x")
  raises("embedded null byte in program arguments", eddy.create_subprocess_exec, "true", "a\0b")
  raises("embedded null byte in environment entries", eddy.create_subprocess_exec, "true",
         {env = {A = "b\0c"}})
  raises("embedded null byte in cwd", eddy.create_subprocess_exec, "true", {cwd = "/\0tmp"})
  raises("unknown signal name 'SIGUSR1'", loop.add_signal_handler, loop, "SIGUSR1\0", print)
end)
print("ok")
]]
    end)
  end)

  describe("odd numbers", function()
    it("bad input: a NaN or non-number ssl_*_timeout is refused at the caller, with a clear message", function()
      -- NaN used to pass as "number expected, got number", at a line of
      -- transports.lua.
      run [[
local ssl = require "eddy.ssl"
local ctx = ssl.create_default_context()
eddy.run(function()
  local loop = eddy.get_running_loop()
  local P = function() return {} end
  raises("^ValueError: ssl_handshake_timeout should be a positive number, got %-?nan$",
         loop.create_server, loop, P, "127.0.0.1", 0, {ssl = ctx, ssl_handshake_timeout = 0/0})
  raises("^ValueError: ssl_shutdown_timeout should be a positive number, got %-?nan$",
         loop.create_connection, loop, P, "127.0.0.1", 1, {ssl = ctx, ssl_shutdown_timeout = 0/0})
  local ok, err = pcall(function()
    return loop:create_connection(P, "127.0.0.1", 1, {ssl = ctx, ssl_handshake_timeout = "x"})
  end)
  assert(not ok and err:match("bad option 'ssl_handshake_timeout' %(number expected, got string%)$")
         and not err:find("eddy/", 1, true), err)
  local a, b = eddy.socket.socketpair()
  local tr = loop:connect_accepted_socket(P, a)
  raises("ssl_shutdown_timeout should be a positive number, got %-?nan",
         loop.start_tls, loop, tr, {}, ctx, {ssl_shutdown_timeout = 0/0})
  tr:close()
  b:close()
end)
print("ok")
]]
    end)

    it("bad input: a pid or socket flags past a C int are refused, not cut (2^32 - 1 would be kill(-1))", function()
      -- kill(2^32 + getpid(), 0) used to signal getpid(); kill(2^32 - 1,
      -- SIGTERM) every process the user may signal.
      run [[
local signal, S = eddy.signal, eddy.socket
raises("^ValueError: pid out of range$", signal.kill, (1 << 32) + signal.getpid(), 0)
raises("^ValueError: pid out of range$", signal.kill, (1 << 32) - 1, 0)
raises("^ValueError: pid out of range$", signal.kill, math.mininteger, 0)
signal.kill(signal.getpid(), 0)
local a, b = S.socketpair()
raises("^ValueError: flags out of range$", a.send, a, "x", 1 << 32)
raises("^ValueError: flags out of range$", a.sendall, a, "x", 1 << 32)
raises("^ValueError: flags out of range$", a.sendto, a, "x", 1 << 32, "")
raises("^ValueError: flags out of range$", b.recv, b, 1, 1 << 40)
assert(a:send("x", 0) == 1 and b:recv(1) == "x")
a:close(); b:close()
print("ok")
]]
    end)
  end)

  describe("descriptors eddy must not hand out", function()
    it("bad input: a child's stdio or pass_fds, or sendfile's file, may not be a loop's signal pipe", function()
      -- A child writing to it fed libuv bytes it read as a signal
      -- message: a wild handle pointer, a SEGV (a child reading it, or
      -- sendfile, stole messages and split the rest).
      run [[
local S = eddy.socket
-- The descriptors of the pipes this process holds both ends of (not the
-- listing's own, whose other end is ls's).
local function pipes()
  local inode, ends, found = {}, {}, {}
  local ls = io.popen("ls -l /proc/" .. eddy.signal.getpid() .. "/fd")
  for line in ls:lines() do
    local fd, pipe = line:match(" (%d+) %-> pipe:%[(%d+)%]")
    if fd then
      inode[tonumber(fd)] = pipe
      ends[pipe] = (ends[pipe] or 0) + 1
    end
  end
  ls:close()
  for fd, pipe in pairs(inode) do found[fd] = ends[pipe] == 2 or nil end
  return found
end
eddy.run(function()
  local before = pipes()
  local loop = eddy.new_event_loop()  -- a loop of its own: a signal pipe is made
  loop:add_signal_handler(eddy.signal.SIGUSR1, print)
  local refused = 0
  local a, b = S.socketpair()
  a:setblocking(false)
  for fd in pairs(pipes()) do
    if not before[fd] then  -- the new loop's signal pipe
      for _, opts in ipairs {{stdout = fd}, {stdin = fd}, {pass_fds = {fd}}} do
        local ok, err = pcall(eddy.create_subprocess_exec, "true", opts)
        assert(not ok, "a child was given descriptor " .. fd)
        if tostring(err):match("^ValueError: descriptor %d+ is a pipe libuv uses for itself") then
          refused = refused + 1
        end
      end
      local ok, err = pcall(eddy.get_running_loop().sock_sendfile, eddy.get_running_loop(), a, fd)
      assert(not ok, "sendfile read descriptor " .. fd)
    end
  end
  assert(refused == 6, refused)  -- both ends, three ways each
  a:close(); b:close()
  loop:close()
end)
print("ok")
]]
    end)
  end)
end)
