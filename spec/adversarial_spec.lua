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
-- The pipes this process holds both ends of, descriptor -> inode, as two
-- listings in a row agree (a listing can catch its own popen pipe with
-- both ends still here, just after the fork).
local function listing()
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
  for fd, pipe in pairs(inode) do found[fd] = ends[pipe] == 2 and pipe or nil end
  return found
end
local function pipes()
  local first, found = listing(), {}
  for fd, pipe in pairs(listing()) do found[fd] = first[fd] == pipe or nil end
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

  describe("finalizers that call the loop", function()
    it("while the loop closes and at exit: loop methods refuse or run, nothing breaks", function()
      run [[
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local outcomes = {}
local function note(ok, err) outcomes[#outcomes + 1] = ok or tostring(err) end
local function trap()
  setmetatable({}, {__gc = function()
    note(pcall(loop.call_soon, loop, function() end))
    note(pcall(loop.run_until_complete, loop, loop:create_task(function() eddy.sleep(0) end)))
    note(pcall(loop.close, loop))
  end})
end
for _ = 1, 20 do trap() end
loop:run_until_complete(loop:create_task(function() collectgarbage(); eddy.sleep(0) end))
for _ = 1, 20 do trap() end
loop:close()
collectgarbage()
for _, o in ipairs(outcomes) do
  assert(o == true or o == "RuntimeError: Event loop is closed"
         or o == "RuntimeError: Cannot close a running event loop"
         or o == "RuntimeError: This event loop is already running", o)
end
-- and at lua_close, on a loop left open with work queued
KEEP = eddy.new_event_loop()
KEEP:call_later(100, print)
for _ = 1, 20 do
  setmetatable({}, {__gc = function()
    pcall(KEEP.call_soon, KEEP, function() end)
    pcall(KEEP.run_until_complete, KEEP, KEEP:create_task(function() eddy.sleep(0) end))
    pcall(KEEP.close, KEEP)
    pcall(eddy.run, function() eddy.sleep(0) end)
  end})
end
print("ok")
]]
    end)

    it("during eddy.run's shutdown: scheduling is accepted, closing the running loop is refused", function()
      run [[
local closes = {}
eddy.run(function()
  local loop = eddy.get_running_loop()
  for _ = 1, 20 do
    setmetatable({}, {__gc = function()
      loop:call_soon(function() end)
      loop:create_task(function() eddy.sleep(0) end)
      loop:run_in_executor(nil, function() return 1 end)
      closes[#closes + 1] = select(2, pcall(loop.close, loop))
    end})
  end
  eddy.create_task(function()  -- cancelled at shutdown, it collects
    local ok, err = pcall(eddy.sleep, 100)
    collectgarbage(); collectgarbage()
    error(err)
  end)
  eddy.sleep(0)
end)
collectgarbage()
assert(#closes > 0)
for _, e in ipairs(closes) do
  assert(tostring(e) == "RuntimeError: Cannot close a running event loop"
         or tostring(e) == "RuntimeError: Event loop is closed", tostring(e))
end
print("ok")
]]
    end)

    it("inside a protocol's callbacks and its factory: closing, aborting, pausing the transport or the server", function()
      run [[
local S = eddy.socket
local function trap(fn) setmetatable({}, {__gc = function() pcall(fn) end}) end
local made, reported = 0, 0
eddy.run(function()
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function() reported = reported + 1 end)
  local srv
  srv = loop:create_server(function()
    trap(function() srv:close() end)
    collectgarbage()
    local p = {}
    function p.connection_made(self, tr)
      made = made + 1
      self.tr = tr
      trap(function() tr:pause_reading() end)
      trap(function() tr:resume_reading() end)
      collectgarbage()
    end
    function p.data_received(self, data)
      local tr = self.tr
      trap(function() tr:write(data) end)
      trap(function() tr:abort() end)
      trap(function() loop:stop() end)
      collectgarbage(); collectgarbage()
      tr:write("more")
    end
    function p.connection_lost(self)
      trap(function() self.tr:close() end)
      trap(function() loop:close() end)
      collectgarbage()
    end
    return p
  end, "127.0.0.1", 0, {backlog = 50})
  local port = srv.sockets[1]:getsockname()[2]
  local socks = {}
  for i = 1, 20 do
    local s = S.socket()
    s:connect({"127.0.0.1", port})
    s:setblocking(false)
    pcall(s.send, s, ("d"):rep(10000))
    socks[i] = s
  end
  eddy.sleep(0.1)
  for _, s in ipairs(socks) do s:close() end
  srv:close()
  eddy.sleep(0.05)
end)
assert(made >= 1 and reported == 0, made .. " " .. reported)
print("ok")
]]
    end)

    it("closing the running loop from a done callback, an exception handler, a signal handler or an executor job's callback is refused", function()
      run [[
local refused = {}
local function close_in_gc(loop)
  setmetatable({}, {__gc = function()
    local ok, err = pcall(loop.close, loop)
    refused[#refused + 1] = not ok and tostring(err) == "RuntimeError: Cannot close a running event loop"
  end})
  collectgarbage(); collectgarbage()
end
eddy.run(function()
  local loop = eddy.get_running_loop()
  local f = loop:create_future()
  f:add_done_callback(function() close_in_gc(loop) end)
  f:set_result(1)
  loop:set_exception_handler(function() close_in_gc(loop) end)
  loop:call_soon(error, "x")
  local got = loop:create_future()
  loop:add_signal_handler(eddy.signal.SIGUSR1, function() close_in_gc(loop); got:set_result(true) end)
  eddy.signal.kill(eddy.signal.getpid(), "SIGUSR1")
  eddy.wait_for(got, 5)
  local job = loop:run_in_executor(nil, function() return 1 end)
  job:add_done_callback(function() close_in_gc(loop) end)
  job:await()
  eddy.sleep(0.01)
  loop:remove_signal_handler(eddy.signal.SIGUSR1)
end)
assert(#refused >= 4, #refused)
for _, r in ipairs(refused) do assert(r) end
print("ok")
]]
    end)

    it("a finalizer that feeds and reads a StreamReader inside one of its reads: that read raises, no byte is lost or read twice", function()
      -- The finalizer ran in the read's allocation (the string it hands
      -- back), after the read had counted its bytes taken: the next read
      -- copied from past the end of the first chunk (heap overflow).
      run [[
collectgarbage("generational")  -- a big string's allocation collects, finalizers run
local hits, fed, got = 0, 0, 0
eddy.run(function()
  for _ = 1, 20 do
    local r = eddy.StreamReader(1 << 22)
    r:feed_data(("a"):rep(1 << 20))
    fed = fed + (1 << 20)
    for _ = 1, 10 do
      setmetatable({}, {__gc = function()
        if pcall(r.feed_data, r, ("c"):rep(1000)) then fed = fed + 1000 end
        local ok, s = pcall(coroutine.wrap(function() return r:read(150) end))
        if ok then got = got + #s end
      end})
    end
    local ok, s = pcall(r.read, r, (1 << 20) - 100)
    if ok then
      got = got + #s
    else
      assert(tostring(s) == "RuntimeError: StreamReader used by a finalizer during a read", tostring(s))
      hits = hits + 1
    end
    r:feed_eof()
    got = got + #r:read(-1)
  end
end)
collectgarbage("incremental")
assert(hits > 0 and fed == got, hits .. " " .. fed .. " " .. got)
print("ok")
]]
    end)
    -- A collector that runs a whole cycle at every allocation, and a
    -- finalizer that comes back each cycle: it cancels the armed task
    -- the first time it runs outside any task, which is inside libuv's
    -- callback making the outcome of the task's wait (its first
    -- allocation). The set that followed raised InvalidStateError
    -- through uv_run: eddy.run ended in "Cannot close a running event
    -- loop", its tasks destroyed pending.
    local function cancelled_in_callback(call)
      run([[
local socket = require "eddy.socket"
local armed, hits = nil, 0
local mt = {}
mt.__gc = function()
  if armed and eddy.current_task() == nil and not armed:done() then
    armed:cancel()
    hits, armed = hits + 1, nil
  end
  setmetatable({}, mt)
end
setmetatable({}, mt)
local s = socket.socket()  -- a port nobody listens on
s:bind({"127.0.0.1", 0})
local port = s:getsockname()[2]
s:close()
collectgarbage("incremental", 1, 1000, 40)
for i = 1, 1000 do local _ = {i} end  -- the first cycles
eddy.run(function()
  local loop = eddy.get_running_loop()
  local t = eddy.create_task(function() return ]] .. call .. [[ end)
  eddy.sleep(0)
  armed = t
  raises("CancelledError", t.await, t)
  assert(t:cancelled())
end)
collectgarbage("generational")
assert(hits == 1, hits)
print("ok")
]])
    end

    it("a finalizer cancelling a getaddrinfo's task inside libuv's callback: the task ends cancelled, the loop goes on", function()
      cancelled_in_callback('loop:getaddrinfo("127.0.0.1", 80)')
    end)

    it("a finalizer cancelling a refused connection's task inside libuv's callback: the task ends cancelled, the loop goes on", function()
      cancelled_in_callback('loop:create_connection(function() return {} end, "127.0.0.1", port)')
    end)

    it("a finalizer cancelling a future while set_result packs its values: InvalidStateError, the future stays cancelled", function()
      -- The state was checked before the values were packed in a table,
      -- so the cancelled future was then completed too (its callbacks
      -- scheduled twice).
      run [[
local loop = eddy.new_event_loop()
local fut, calls = loop:create_future(), 0
fut:add_done_callback(function() calls = calls + 1 end)
local armed, mt = false, {}
mt.__gc = function()
  if armed and not fut:done() then fut:cancel() end
  setmetatable({}, mt)
end
setmetatable({}, mt)
collectgarbage("incremental", 1, 1000, 40)
for i = 1, 1000 do local _ = {i} end
armed = true  -- the next allocation is the table set_result packs 1, 2 in
local ok, err = pcall(fut.set_result, fut, 1, 2)
armed = false
collectgarbage("generational")
assert(not ok and tostring(err):match("InvalidStateError"), tostring(err))
assert(fut:cancelled())
loop:run_until_complete(loop:create_task(function() eddy.sleep(0) end))
assert(calls == 1, calls)
loop:close()
print("ok")
]]
    end)
    it("a finalizer adding a done callback while add_done_callback makes the future's callback table: both run once", function()
      -- The first callback was stored, then the table for its context
      -- made; the finalizer's callback, added meanwhile, took the first
      -- slot too: the first was lost.
      run [[
local loop = eddy.new_event_loop()
local fut, calls = loop:create_future(), {}
local armed, mt = false, {}
mt.__gc = function()
  if armed then
    armed = false
    fut:add_done_callback(function() calls[#calls + 1] = "B" end)
  end
  setmetatable({}, mt)
end
setmetatable({}, mt)
local opts = {context = eddy.copy_context()}
local function A() calls[#calls + 1] = "A" end
collectgarbage("incremental", 1, 1000, 40)
for i = 1, 1000 do local _ = {i} end
armed = true  -- the next allocation is the table of the future's callbacks
fut:add_done_callback(A, opts)
collectgarbage("generational")
fut:set_result(1)
loop:run_until_complete(loop:create_task(function() eddy.sleep(0) end))
table.sort(calls)
assert(table.concat(calls, ",") == "A,B", table.concat(calls, ","))
loop:close()
print("ok")
]]
    end)
  end)

  describe("metamethods and error values", function()
    it("errors that cannot be printed (nil, a raising __tostring or __index, a non-string __tostring) from tasks, callbacks and the exception handler", function()
      run [[
local bad = {
  setmetatable({}, {__tostring = function() error("tostring raised") end}),
  setmetatable({}, {__tostring = function() return 42 end}),
  setmetatable({}, {__index = function() error("index raised") end}),
  setmetatable({}, {__index = function() error("index raised") end,
                    __tostring = function() error(setmetatable({}, {__tostring = error})) end}),
}
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local function settle() loop:run_until_complete(loop:create_task(function() eddy.sleep(0.01) end)) end
for _, e in ipairs(bad) do
  loop:set_exception_handler(function() end)
  loop:call_soon(function() error(e) end)
  loop:call_soon(error)
  local t = loop:create_task(function() error(e) end)
  local t2 = loop:create_task(function() error(nil) end)
  settle()
  -- the task keeps the value; one whose __index raises gives way to
  -- that error (eddy reads its traceback field)
  local err = select(2, pcall(t.result, t))
  if err ~= e then assert(getmetatable(e).__index and tostring(err):match("index raised")) end
  assert(select(2, pcall(t2.result, t2)) == "(error object is a nil value)")
  local f = loop:create_future()
  f:set_exception(e)
  f = nil
  collectgarbage()
  -- an exception handler that raises them too: reported on stderr
  loop:set_exception_handler(function() error(e) end)
  loop:call_soon(function() error(e) end)
  settle()
end
loop:set_exception_handler(nil)
loop:close()
print("ok")
]]
    end)

    it("eddy.run's error whose __tostring raises: the script fails with that error, exit status 1", function()
      local r = script.exec [[
eddy.run(function() eddy.sleep(0); error(setmetatable({}, {__tostring = function() error("tostring boom") end})) end)
]]
      assert.equal(1, r.code)
      assert.truthy(r.err:find("tostring boom", 1, true), r.err)
    end)

    it("callbacks that yield, callable tables that yield or raise: reported, the loop goes on", function()
      run [[
local msgs = {}
eddy.run(function()
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function(_, ctx) msgs[#msgs + 1] = tostring(ctx.exception):match("[^\n]*") end)
  local yields = setmetatable({}, {__call = function() coroutine.yield() end})
  local raises_ = setmetatable({}, {__call = function() error("called") end})
  loop:call_soon(yields)
  loop:call_soon(raises_)
  local f = loop:create_future()
  f:add_done_callback(yields)
  f:add_done_callback(function() coroutine.yield(1) end)
  f:add_done_callback(function() eddy.sleep(0) end)
  f:set_result(1)
  eddy.sleep(0.01)
end)
local want = {
  "attempt to yield from outside a coroutine", "called$", "attempt to yield from outside a coroutine",
  "attempt to yield from outside a coroutine",
  "^RuntimeError: sleep%(%) cannot suspend here",
}
assert(#msgs == #want, #msgs)
for i, w in ipairs(want) do assert(msgs[i]:match(w), msgs[i]) end
print("ok")
]]
    end)

    it("bad input: options tables whose __index raises or yields are refused unread", function()
      run [[
eddy.run(function()
  local loop = eddy.get_running_loop()
  for _, mt in ipairs {{__index = function() error("read") end}, {__index = function() coroutine.yield() end}} do
    local opts = setmetatable({}, mt)
    raises("options table expected, got table with a metatable",
           loop.create_connection, loop, function() return {} end, "127.0.0.1", 1, opts)
    raises("options table expected, got table with a metatable",
           loop.create_server, loop, function() return {} end, "127.0.0.1", 0, opts)
    raises("options table expected, got table with a metatable", eddy.open_connection, "127.0.0.1", 1, opts)
  end
end)
print("ok")
]]
    end)

    it("a protocol whose __index raises for every name: create_connection raises, the server reports", function()
      run [[
local reported
eddy.run(function()
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function(_, ctx) reported = ctx.message end)
  local function hostile() return setmetatable({}, {__index = function(_, k) error("no " .. k) end}) end
  local srv = loop:create_server(hostile, "127.0.0.1", 0)
  raises("no get_buffer", loop.create_connection, loop, hostile, "127.0.0.1", srv.sockets[1]:getsockname()[2])
  eddy.sleep(0.05)
  srv:close()
end)
assert(reported == "Error on transport creation for incoming connection", reported)
print("ok")
]]
    end)
  end)

  describe("the coroutine library against tasks", function()
    it("resuming, closing or wrapping a task's coroutine from outside or from another task is refused", function()
      run [[
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local t = loop:create_task(function() eddy.sleep(0.02); return 1 end)
local co = t:get_coro()
assert(select(2, coroutine.resume(co)) == "cannot resume a coroutine that a task runs")
loop:run_until_complete(loop:create_task(function() eddy.sleep(0) end))
assert(select(2, coroutine.resume(co, "x")) == "cannot resume a coroutine that a task runs")
raises("cannot close a coroutine that a task runs", coroutine.close, co)
local other = loop:create_task(function()
  assert(select(2, coroutine.resume(co)) == "cannot resume a coroutine that a task runs")
  raises("cannot close a coroutine that a task runs", coroutine.close, co)
  raises("cannot close a coroutine that a task runs", coroutine.close, eddy.current_task():get_coro())
  assert(select(2, coroutine.wrap(function() return coroutine.resume(co) end)()) ==
         "cannot resume a coroutine that a task runs")
  return "other"
end)
assert(loop:run_until_complete(t) == 1 and loop:run_until_complete(other) == "other")
loop:close()
print("ok")
]]
    end)

    it("a task whose function is a C function (tostring, error, coroutine.yield) runs it as a body", function()
      run [[
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local t1 = loop:create_task(tostring, 5)
local t2 = loop:create_task(error, "raised")
local t3 = loop:create_task(coroutine.yield)
local t4 = loop:create_task(coroutine.yield, "value")
loop:run_until_complete(loop:create_task(function() eddy.wait({t1, t2, t3, t4}) end))
assert(t1:result() == "5" and t3:result() == nil)
raises("^raised$", t2.result, t2)
raises('Task got bad yield: "value"', t4.result, t4)  -- as asyncio
loop:close()
print("ok")
]]
    end)

    it("a read or a queue get that cannot suspend past a C function (a finalizer, a sort comparator) leaves the task free to suspend again", function()
      -- The wait marked the task parked before its yield reached the
      -- task: the next sleep was taken for that park and never woken.
      run [[
local got = {}
eddy.run(function()
  local r, q = eddy.StreamReader(), eddy.Queue()
  local function try(what, fn)
    local ok, err = pcall(coroutine.wrap(fn))
    assert(not ok and tostring(err):match("cannot suspend: a C function"), what .. ": " .. tostring(err))
    got[#got + 1] = what
  end
  setmetatable({}, {__gc = function() try("read in __gc", function() return r:read(10) end) end})
  setmetatable({}, {__gc = function() try("get in __gc", function() return q:get() end) end})
  collectgarbage(); collectgarbage()
  table.sort({3, 2, 1}, function(a, b)
    try("readline in sort", function() return r:readline() end)
    return a < b
  end)
  eddy.sleep(0.01)
  r:feed_data("line\n")
  assert(r:readline() == "line\n")
  q:put_nowait(1)
  assert(q:get() == 1)
end)
assert(#got >= 4, #got)
print("ok")
]]
    end)

    it("eddy.sleep inside a coroutine.wrap inside a task suspends the task", function()
      run [[
eddy.run(function()
  local co = coroutine.wrap(function() eddy.sleep(0.01); return "done" end)
  assert(co() == "done")
  local function nest(n)
    if n == 0 then eddy.sleep(0); return 0 end
    return coroutine.wrap(function() return nest(n - 1) end)()
  end
  assert(nest(150) == 0)
end)
print("ok")
]]
    end)
  end)

  describe("executor jobs", function()
    it("a finalizer that cancels a job's future while its values are copied in: the future stays cancelled, nothing is reported", function()
      -- complete_future checked the future before copying the values in,
      -- then set a cancelled one: InvalidStateError went to the handler.
      run [[
collectgarbage("generational")  -- a big copied string collects, finalizers run
local reports, futs = {}, {}
eddy.run(function()
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx.message end)
  for i = 1, 30 do
    futs[i] = loop:run_in_executor(nil, function() return ("x"):rep(1 << 20), ("y"):rep(1 << 20) end)
  end
  for _ = 1, 30 do
    setmetatable({}, {__gc = function()
      for _, f in ipairs(futs) do f:cancel() end
      pcall(loop.close, loop)
    end})
  end
  for _, f in ipairs(futs) do pcall(eddy.wait_for, f, 5) end
end)
collectgarbage("incremental")
assert(#reports == 0, reports[1])
for _, f in ipairs(futs) do
  assert(f:cancelled() or select(2, f:result()) == ("y"):rep(1 << 20))
end
print("ok")
]]
    end)

    it("bad input: values that cannot cross into or out of a worker are refused with what and where", function()
      run [[
eddy.run(function()
  local loop = eddy.get_running_loop()
  local function job(fn, ...) return loop:run_in_executor(nil, fn, ...):await() end
  raises("cannot copy a table that contains itself at %.t from a worker thread",
         job, function() local t = {}; t.t = t; return t end)
  raises("cannot copy file %(0x%x+%) from a worker thread", job, function() return io.stdout end)
  raises("^E$", job, function() error(setmetatable({}, {__tostring = function() return "E" end})) end)
  raises("cannot copy a table with a metatable to a worker thread", job, function() end,
         setmetatable({}, {__index = function() error("x") end}))
  raises("cannot copy tables nested more than 64 deep", job, function() end,
         (function() local t = {} for _ = 1, 1000 do t = {t} end return t end)())
  raises("cannot copy a function with upvalue 'loop'", job, function() return loop end)
  assert(job(function(a) return a.x end, {x = 0/0}) ~= job(function(a) return a.x end, {x = 0/0}))
end)
print("ok")
]]
    end)
  end)
end)
