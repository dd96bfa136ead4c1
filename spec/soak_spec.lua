-- Soak tests: churn one kind of object many times in one process and check
-- that nothing grows with the number of cycles.  LeakSanitizer only sees
-- memory nobody references at exit; these catch what stays referenced:
-- registry anchors never dropped, entries left in the loop's tables,
-- descriptors never closed, objects never collected.
--
-- Each case runs its cycle a few times to warm up (tables reach their
-- working size, the registry's free list fills), takes a measure, runs
-- the cycle CYCLES more times, and measures again: the open descriptors,
-- the registry references in use, the libuv handles not freed, and what
-- the registry reaches (table entries, userdata, coroutines: a table that
-- keeps one entry a cycle) must be the same, within SLACK_OBJECTS for
-- the last, and the Lua heap may grow by SLACK KiB at most (a table whose
-- entries the collector cleared keeps its size until it is rehashed).
local eddy = require "eddy"
local async = require("eddy.test").async
local socket = require "eddy.socket"
local checks = require "support.checks"

local CYCLES = 300
local SLACK = 256
local SLACK_OBJECTS = 30

local count_fds = checks.count_fds

-- Entries of the registry in use: luaL_unref leaves an integer (the next
-- free slot) in a slot it frees.
local function registry_size()
  local n = 0
  for k, v in next, debug.getregistry() do
    if not (math.type(k) == "integer" and math.type(v) == "integer") then n = n + 1 end
  end
  return n
end

-- Entries the count below leaves out: the free slots of luaL_ref's free
-- lists (an integer to an integer), and cancelled timers, which leave the
-- loop's heap lazily (at most some 100 of them stay, asyncio's rule).
local function ignored(k, v)
  if math.type(k) == "integer" and math.type(v) == "integer" then return true end
  local mt = type(v) == "userdata" and getmetatable(v)
  return type(mt) == "table" and mt.__name == "eddy.TimerHandle" and v:cancelled()
end

-- Table entries, userdata and coroutines reachable from the registry
-- (through tables, metatables, user values, upvalues and the locals of
-- coroutines).
local function reachable()
  local seen, queue, n = {}, {debug.getregistry()}, 0
  seen[queue[1]] = true
  local function visit(v)
    local kind = type(v)
    if (kind == "table" or kind == "userdata" or kind == "function" or kind == "thread")
       and not seen[v] then
      seen[v] = true
      queue[#queue + 1] = v
    end
  end
  local i = 1
  while queue[i] ~= nil do
    local v = queue[i]
    i = i + 1
    local kind = type(v)
    visit(debug.getmetatable(v))
    if kind == "table" then
      for k, x in next, v do
        if not ignored(k, x) then
          n = n + 1
          visit(k)
          visit(x)
        end
      end
    elseif kind == "userdata" then
      n = n + 1
      local u = 1
      while true do
        local x, ok = debug.getuservalue(v, u)
        if not ok then break end
        visit(x)
        u = u + 1
      end
    elseif kind == "function" then
      local u = 1
      while debug.getupvalue(v, u) ~= nil do
        visit(select(2, debug.getupvalue(v, u)))
        u = u + 1
      end
    elseif kind == "thread" then
      n = n + 1
      local level = 0
      while debug.getinfo(v, level, "f") ~= nil do
        visit(debug.getinfo(v, level, "f").func)
        local l = 1
        while debug.getlocal(v, level, l) ~= nil do
          visit(select(2, debug.getlocal(v, level, l)))
          l = l + 1
        end
        level = level + 1
      end
    end
  end
  return n
end

local function collect()
  collectgarbage()
  collectgarbage()  -- the second frees what finalizers released
end

local function measure(loop)
  collect()
  local fds = count_fds()
  if loop ~= nil then
    -- Turns with I/O until the count settles: what the collector closed
    -- ends, and so do the server's sides of the connections closed last.
    local same = 0
    for _ = 1, 100 do
      eddy.sleep(0.02)
      collect()
      local n = count_fds()
      same = n == fds and same + 1 or 0
      fds = n
      if same == 3 then break end
    end
  end
  local m = {heap = collectgarbage("count"), fds = fds, registry = registry_size(),
             objects = reachable()}
  if loop ~= nil then
    local opened, freed = loop:_handle_counts()
    m.handles = opened - freed
  end
  return m
end

-- Run cycle(i) 20 + 'cycles' (default CYCLES) times; fail on growth.
-- Inside a task, cycle may suspend; 'loop' (nil: none running) adds the
-- handle check.  'slack' replaces SLACK_OBJECTS.
local function soak(loop, cycle, cycles, slack)
  cycles = cycles or CYCLES
  slack = slack or SLACK_OBJECTS
  for i = 1, 20 do cycle(i) end
  local before = measure(loop)
  for i = 1, cycles do cycle(i) end
  local after = measure(loop)
  assert.equal(before.fds, after.fds, "open descriptors")
  assert.equal(before.registry, after.registry, "registry entries")
  if loop ~= nil then assert.equal(before.handles, after.handles, "open libuv handles") end
  assert(math.abs(after.objects - before.objects) <= slack, string.format(
    "what the registry reaches went from %d to %d", before.objects, after.objects))
  assert(after.heap - before.heap < SLACK, string.format(
    "the Lua heap grew from %.0f KiB to %.0f KiB", before.heap, after.heap))
end

-- An echo server on 127.0.0.1; 'mode' picks what it does with a client.
local function server(loop, mode)
  local srv = loop:create_server(function()
    local p = {}
    function p.connection_made(_, t)
      p.t = t
      if mode == "close" then t:write("bye"); t:close()
      elseif mode == "abort" then t:abort() end
    end
    function p.data_received(_, data) p.t:write(data) end
    return p
  end, "127.0.0.1", 0)
  return srv, srv.sockets[1]:getsockname()[2]
end

-- A client protocol whose futures tell when data came and when it ended.
local function client(loop, eof_keep)
  local c = {got = loop:create_future(), lost = loop:create_future()}
  function c.data_received(_, data) if not c.got:done() then c.got:set_result(data) end end
  function c.eof_received() return eof_keep end
  function c.connection_lost() c.lost:set_result(true) end
  return c
end

describe("soak: transports", function()
  it("TCP connect, echo, close by the client", async(function(loop)
    local srv <close>, port = server(loop)
    soak(loop, function()
      local c = client(loop)
      local t = loop:create_connection(function() return c end, "127.0.0.1", port)
      t:write("ping")
      eddy.wait_for(c.got, 5)
      t:close()
      eddy.wait_for(c.lost, 5)
    end)
  end, 60))
end)

describe("soak: transports nobody closes", function()
  -- asyncio's transport is referenced by the selector only while it
  -- reads: one whose peer sent EOF (eof_received kept it open), or that
  -- was paused, is collected once its user drops it, and its __del__
  -- closes the socket.  eddy's must not stay anchored for ever.
  -- Each connection is made in a task of its own: a coroutine that ended
  -- leaves no stale stack slot that would keep the transport alive.
  local function dropped(loop, port, how)
    eddy.create_task(function()
      local c = client(loop, true)
      local t = loop:create_connection(function() return c end, "127.0.0.1", port)
      if how == "paused" then t:pause_reading() else eddy.wait_for(c.got, 5) end
    end):await()
  end

  it("an open TCP transport that got EOF is collected and closed once dropped",
     async(function(loop)
    local srv <close>, port = server(loop, "close")
    soak(loop, function() dropped(loop, port) eddy.sleep(0) end)
  end, 60))

  it("a paused TCP transport is collected and closed once dropped",
     async(function(loop)
    local srv <close>, port = server(loop)
    -- The clients go when the collector runs, their servers' sides when
    -- they see EOF then: how many objects are left at a measure varies,
    -- so only descriptors, references and handles are compared.
    soak(loop, function() dropped(loop, port, "paused") eddy.sleep(0) end, nil, math.huge)
  end, 60))

  it("a stream whose writer is dropped after EOF closes its socket",
     async(function(loop)
    local srv <close> = eddy.start_server(function(_, w) w:write("bye") w:close() end,
                                           "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    soak(loop, function()
      eddy.create_task(function()
        -- the writer is kept until EOF: one collected earlier closes the
        -- connection before "bye" arrives (asyncio's StreamWriter.__del__)
        local r, w = eddy.open_connection("127.0.0.1", port)
        assert.equal("bye", r:read())
        w = nil  -- luacheck: ignore (dropped unclosed, after EOF)
      end):await()
    end)
  end, 60))
end)

describe("soak: connections", function()
  it("TCP: the server closes first, or aborts", async(function(loop)
    for _, mode in ipairs({"close", "abort"}) do
      local srv <close>, port = server(loop, mode)
      soak(loop, function()
        local c = client(loop)
        loop:create_connection(function() return c end, "127.0.0.1", port)
        eddy.wait_for(c.lost, 5)
      end, 150)
    end
  end, 60))

  it("TCP: the client aborts; connections refused; connecting cut short by wait_for",
     async(function(loop)
    local srv <close>, port = server(loop)
    soak(loop, function()
      local c = client(loop)
      local t = loop:create_connection(function() return c end, "127.0.0.1", port)
      t:abort()
      eddy.wait_for(c.lost, 5)
    end, 150)
    local gone = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local dead = gone.sockets[1]:getsockname()[2]
    gone:close()
    gone:wait_closed()
    soak(loop, function()
      assert(not pcall(loop.create_connection, loop, function() return {} end, "127.0.0.1", dead))
    end, 150)
    soak(loop, function()
      local ok, t = pcall(eddy.wait_for, function()
        return loop:create_connection(function() return {} end, "127.0.0.1", port)
      end, 0)
      if ok then t:close() end
    end, 150)
  end, 60))

  it("streams over UNIX sockets, with and without wait_closed", async(function(loop)
    local path = require("support.tmp").path(".sock")
    local srv <close> = eddy.start_unix_server(function(r, w)
      w:write(r:readline() .. "\n")
      w:close()
    end, path)
    soak(loop, function(i)
      local r, w = eddy.open_unix_connection(path)
      w:write("hi\n")
      assert.equal("hi\n", r:readline())
      w:close()
      if i % 2 == 0 then w:wait_closed() end
    end)
  end, 60))

  it("UDP endpoints opened and closed, sending to a port nobody listens on",
     async(function(loop)
    soak(loop, function()
      local lost = loop:create_future()
      local t = loop:create_datagram_endpoint(function()
        return {error_received = function() end,
                connection_lost = function() lost:set_result(true) end}
      end, nil, {"127.0.0.1", 9})
      t:sendto("x")
      eddy.sleep(0)
      t:close()
      eddy.wait_for(lost, 5)
    end)
  end, 60))

  it("TLS handshakes that succeed and that fail (unknown CA, garbage)", async(function(loop)
    local ssl = require "eddy.ssl"
    local tls = require "support.tls"
    local sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx:load_cert_chain(tls.path("server.pem"), tls.path("server.key"))
    local good = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, {cafile = tls.path("ca.pem")})
    local rogue = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, {cafile = tls.path("rogue.pem")})
    local srv <close> = eddy.start_server(function(r, w)
      local ok, line = pcall(r.readline, r)
      if ok then w:write(line) end
      w:close()
    end, "127.0.0.1", 0, {ssl = sctx})
    local port = srv.sockets[1]:getsockname()[2]
    local junk <close> = eddy.start_server(function(_, w) w:write(string.rep("garbage!", 20)) w:close() end,
                                           "127.0.0.1", 0)
    local junk_port = junk.sockets[1]:getsockname()[2]
    soak(loop, function(i)
      if i % 3 == 0 then
        local r, w = eddy.open_connection("127.0.0.1", port, {ssl = good, server_hostname = "localhost"})
        w:write("hi\n")
        assert.equal("hi\n", r:readline())
        w:close()
        pcall(w.wait_closed, w)
      elseif i % 3 == 1 then
        assert(not pcall(eddy.open_connection, "127.0.0.1", port,
                         {ssl = rogue, server_hostname = "localhost"}))
      else
        assert(not pcall(eddy.open_connection, "127.0.0.1", junk_port,
                         {ssl = good, server_hostname = "localhost"}))
      end
    end, 60)
  end, 60))
end)

describe("soak: sockets and descriptors", function()
  it("sock_recv and sock_accept cancelled midway; add_reader/remove_reader", async(function(loop)
    local listener = socket.socket()
    listener:bind({"127.0.0.1", 0})
    listener:listen()
    listener:setblocking(false)
    soak(loop, function()
      local a, b = socket.socketpair()
      a:setblocking(false)
      local t = eddy.create_task(function() loop:sock_recv(a, 10) end)
      local u = eddy.create_task(function() loop:sock_accept(listener) end)
      eddy.sleep(0)
      t:cancel()
      u:cancel()
      pcall(eddy.await, t)
      pcall(eddy.await, u)
      loop:add_reader(a, function() end)
      loop:add_writer(b:fileno(), function() end)
      eddy.sleep(0)
      assert(loop:remove_reader(a))
      assert(loop:remove_writer(b:fileno()))
      a:close()
      b:close()
    end)
    listener:close()
  end, 60))
end)

describe("soak: scheduling", function()
  it("timers scheduled and cancelled leave the heap", async(function(loop)
    soak(loop, function()
      for _ = 1, 10 do loop:call_later(3600, function() end):cancel() end
      loop:call_later(0, function() end)
      eddy.sleep(0)
    end)
  end, 60))

  it("tasks cancelled: alone, in gather, wait_for, timeout, TaskGroup, shield",
     async(function(loop)
    local function forever() eddy.sleep(3600) end
    soak(loop, function()
      local t = eddy.create_task(function()
        eddy.gather(forever, forever)
      end)
      local g = eddy.create_task(function()
        local tg <close> = eddy.TaskGroup()
        tg:create_task(forever)
        tg:create_task(function() error("boom") end)
      end)
      local s = eddy.create_task(function() eddy.shield(eddy.create_task(eddy.sleep, 0)) end)
      eddy.sleep(0)
      t:cancel()
      s:cancel()
      pcall(eddy.await, t)
      pcall(eddy.await, g)
      pcall(eddy.await, s)
      assert(not pcall(eddy.wait_for, forever, 0))
      assert(not pcall(function()
        local _ <close> = eddy.timeout(0)
        forever()
      end))
      local done, pending = eddy.wait({eddy.create_task(forever), eddy.create_task(function() end)},
                                     {return_when = eddy.FIRST_COMPLETED})
      assert.equal(1, #done)
      pending[1]:cancel()
    end)
  end, 60))

  it("Lock, Queue, Condition, Event, Semaphore waiters cancelled", async(function(loop)
    local lock, queue, cond = eddy.Lock(), eddy.Queue(1), eddy.Condition()
    local event, sem = eddy.Event(), eddy.Semaphore(0)
    lock:acquire()
    queue:put_nowait(1)
    soak(loop, function()
      local tasks = {
        eddy.create_task(function() lock:acquire() end),
        eddy.create_task(function() queue:put(2) end),
        eddy.create_task(function() cond:acquire() cond:wait() end),
        eddy.create_task(function() event:wait() end),
        eddy.create_task(function() sem:acquire() end),
      }
      eddy.sleep(0)
      for _, t in ipairs(tasks) do t:cancel() end
      for _, t in ipairs(tasks) do pcall(eddy.await, t) end
      if cond:locked() then cond:release() end
    end)
  end, 60))

  it("context variables set in many tasks, reset or not; abandoned async generators",
     async(function(loop)
    local var = eddy.ContextVar("soak")
    local gen = eddy.asyncgen(function(yield)
      for i = 1, 10 do eddy.sleep(0) yield(i) end
    end)
    soak(loop, function(i)
      local tasks = {}
      for k = 1, 5 do
        tasks[k] = eddy.create_task(function()
          local token = var:set({k})
          eddy.sleep(0)
          if k % 2 == 0 then var:reset(token) end
        end)
      end
      for k = 1, 5 do eddy.await(tasks[k]) end
      local g = gen()
      g:anext()
      if i % 2 == 0 then g:aclose() end
    end)
  end, 60))
end)

describe("soak: processes, threads, signals", function()
  it("subprocesses with pipes, waited for or killed", async(function(loop)
    local PIPE = eddy.subprocess.PIPE
    soak(loop, function(i)
      if i % 2 == 0 then
        local p = eddy.create_subprocess_exec("/bin/sleep", "10", {stdin = PIPE, stdout = PIPE})
        p:kill()
        p:wait()
      else
        local p = eddy.create_subprocess_exec("/bin/cat", {stdin = PIPE, stdout = PIPE})
        assert.equal("hi", p:communicate("hi"))
      end
    end, 40)
  end, 60))

  it("executor jobs, and signal handlers added and removed", async(function(loop)
    soak(loop, function()
      assert.equal(1, loop:run_in_executor(nil, function() return 1 end):await())
      loop:add_signal_handler("SIGUSR1", function() end)
      assert(loop:remove_signal_handler("SIGUSR1"))
      eddy.sleep(0)
    end)
  end, 60))
end)

describe("soak: loops", function()
  it("loops created, run and closed release everything", function()
    soak(nil, function()
      local loop = eddy.new_event_loop()
      loop:run_until_complete(function()
        local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
        loop:create_connection(function() return {} end, "127.0.0.1",
                               srv.sockets[1]:getsockname()[2])
        loop:call_later(3600, function() end)
        eddy.create_task(eddy.sleep, 3600)
        loop:add_signal_handler("SIGUSR1", function() end)
        loop:run_in_executor(nil, function() end):await()
      end)
      loop:close()
    end, 100)
  end)

  it("eddy.run repeated", function()
    soak(nil, function()
      eddy.run(function() eddy.sleep(0) end)
    end, 1000)
  end)
end)

-- The collector's multipliers (src/runtime.c): connections that come and
-- go leave their objects to the collector, and with a minor multiplier of
-- 200 the generational collector let them pile up to several times the
-- live heap (12,000 connections: a 16 MB peak against 2.2 MB).  Measured
-- in a process of its own: the specs run before this one leave the
-- collector's state (and its thresholds) anywhere.
describe("soak: the collector", function()
  it("a streams server's heap stays near its live size while connections come and go", function()
    local code, out = checks.run_script([[
      local eddy = require "eddy"
      eddy.run(function()
        local srv = eddy.start_server(function(reader, writer)
          writer:write(reader:readline())
          writer:close()
        end, "127.0.0.1", 0)
        local port = srv.sockets[1]:getsockname()[2]
        local function connect()
          local reader, writer = eddy.open_connection("127.0.0.1", port)
          writer:write("hi\n")
          assert(reader:readline() == "hi\n")
          writer:close()
          writer:wait_closed()
        end
        for _ = 1, 20 do connect() end
        collectgarbage()
        collectgarbage()
        local base, peak = collectgarbage("count"), 0
        for _ = 1, 4000 do
          connect()
          peak = math.max(peak, collectgarbage("count"))
        end
        print(math.floor(base), math.floor(peak - base))
        srv:close()
      end)]])
    assert.equal(0, code, out)
    local base, growth = out:match("^(%d+)%s+(%d+)")
    assert.is_true(tonumber(growth) < 3 * 1024,
                   string.format("the heap grew by %s KiB over %s KiB", growth, base))
  end)
end)
