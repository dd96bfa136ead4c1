-- Black-box cases written from /work/shared/API.md alone (and asyncio's
-- documentation, by API.md §1's translation rules), as an outside tester
-- would: realistic programs that combine several features, and documented
-- edge cases no other spec covers.  Grouped by the API.md section each
-- checks; every description cites it.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error = checks.expect_error

-- A stream server running handler(reader, writer) on loopback and a
-- client connected to it: returns server, reader, writer.
local function stream_pair(handler, opts)
  local srv = eddy.start_server(handler, "127.0.0.1", 0, opts)
  local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2], opts)
  return srv, r, w
end

describe("§6 high-level functions", function()
  it("§6 sleep returns all its extra arguments, nil holes included", async(function()
    assert.equals(3, select("#", eddy.sleep(0, 1, nil, 3)))
    local a, b, c = eddy.sleep(0.001, 1, nil, 3)
    assert.same({1, nil, 3}, {a, b, c})
    assert.equals(0, select("#", eddy.sleep(0.001)))
  end))

  it("§6 gather keeps the position of nil results", async(function()
    local n = select("#", eddy.gather(function() return nil end, function() return 5 end))
    assert.equals(2, n)
    assert.same({nil, 5}, {eddy.gather(function() return nil end, function() return 5 end)})
  end))

  it("§6 gather of wait_for calls with mixed outcomes, return_exceptions", async(function()
    local a, b, c = eddy.gather(
      function() return eddy.wait_for(function() eddy.sleep(0.001); return "fast" end, 1) end,
      function() return eddy.wait_for(function() eddy.sleep(10) end, 0.01) end,
      function() error(errors.ValueError("bad")) end,
      {return_exceptions = true})
    assert.equals("fast", a)
    assert.is_true(errors.is(b, errors.TimeoutError))
    assert.is_true(errors.is(c, errors.ValueError))
  end))

  it("§6 a timeout around a TaskGroup: TimeoutError, children cancelled, task not left cancelling",
    async(function()
      local children_cancelled = 0
      local function child()
        local ok, err = pcall(eddy.sleep, 10)
        if errors.is(err, errors.CancelledError) then children_cancelled = children_cancelled + 1 end
        if not ok then error(err) end
      end
      expect_error(errors.TimeoutError, function()
        local t <close> = eddy.timeout(0.02)
        local tg <close> = eddy.TaskGroup()
        tg:create_task(child)
        tg:create_task(child)
      end)
      assert.equals(2, children_cancelled)
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 wait_for(shield(t)) times out while t goes on to its result", async(function()
    local t = eddy.create_task(eddy.sleep, 0.03, "done")
    expect_error(errors.TimeoutError, eddy.wait_for, eddy.shield(t), 0.01)
    assert.is_false(t:cancelled())
    assert.equals("done", t:await())
  end))

  it("§6 a timeout rescheduled into the past expires at the next suspension", async(function(loop)
    local scope
    expect_error(errors.TimeoutError, function()
      local t <close> = eddy.timeout(10)
      scope = t
      t:reschedule(loop:time() - 1)
      eddy.sleep(10)
    end)
    assert.is_true(scope:expired())
  end))

  it("§6 as_completed's timeout leaves the unfinished awaitables running", async(function()
    local slow = eddy.create_task(eddy.sleep, 0.05, "slow")
    expect_error(errors.TimeoutError, function()
      for f in eddy.as_completed({slow}, {timeout = 0.01}) do f:await() end
    end)
    assert.is_false(slow:done())
    assert.equals("slow", slow:await())
  end))

  it("§6 to_thread calls gathered together", async(function()
    local a, b = eddy.gather(
      function()
        return eddy.to_thread(function(n)
          local s = 0
          for i = 1, n do s = s + i end
          return s
        end, 1000)
      end,
      function() return eddy.to_thread(function(x) return x .. "!" end, "t2") end)
    assert.equals(500500, a)
    assert.equals("t2!", b)
  end))
end)

describe("§8 streams", function()
  it("§8 a chat server: lines() per client, broadcast, Event to stop, wait_closed",
    async(function()
      local clients, stop = {}, eddy.Event()
      local srv <close> = eddy.start_server(function(r, w)
        clients[w] = true
        for line in r:lines() do
          for c in pairs(clients) do
            if c ~= w then c:write(line .. "\n") end
          end
          if line == "quit" then stop:set() end
        end
        clients[w] = nil
        w:close()
      end, "127.0.0.1", 0)
      local port = srv.sockets[1]:getsockname()[2]
      local r1, w1 = eddy.open_connection("127.0.0.1", port)
      local r2, w2 = eddy.open_connection("127.0.0.1", port)
      while next(clients) == nil or next(clients, next(clients)) == nil do eddy.sleep(0.001) end
      w1:write("hello\n")
      w1:drain()
      assert.equals("hello\n", eddy.wait_for(function() return r2:readline() end, 2))
      w2:write("quit\n")
      assert.equals("quit\n", eddy.wait_for(function() return r1:readline() end, 2))
      eddy.wait_for(function() stop:wait() end, 2)
      w1:close()
      w2:close()
      w1:wait_closed()
      w2:wait_closed()
    end))

  it("§8 a readline cancelled by wait_for loses no data: the retry gets the line", async(function()
    local srv <close>, r, w = stream_pair(function(_, w)
      eddy.sleep(0.5)  -- far past the 10 ms wait_for, even with a stall between them
      w:write("late\n")
      w:close()
    end)
    expect_error(errors.TimeoutError, eddy.wait_for, function() return r:readline() end, 0.01)
    assert.equals("late\n", eddy.wait_for(function() return r:readline() end, 2))
    w:close()
  end))

  it("§8 readexactly at EOF with nothing read: IncompleteReadError partial \"\"", async(function()
    local srv <close>, r, w = stream_pair(function(_, w) w:close() end)
    local e = expect_error(errors.IncompleteReadError, r.readexactly, r, 4)
    assert.equals("", e.partial)
    assert.equals(4, e.expected)
    w:close()
  end))
end)

describe("§8 synchronization and queues", function()
  it("§8 a pipeline: bounded Queue, TaskGroup workers, join, then shutdown ends them",
    async(function()
      local jobs, results = eddy.Queue(2), eddy.Queue()
      do
        local tg <close> = eddy.TaskGroup()
        tg:create_task(function()
          for i = 1, 10 do jobs:put(i) end
          jobs:join()
          jobs:shutdown()
        end)
        for _ = 1, 3 do
          tg:create_task(function()
            while true do
              local ok, v = pcall(jobs.get, jobs)
              if not ok then
                if errors.is(v, errors.QueueShutDown) then return end
                error(v)
              end
              eddy.sleep(0.001)
              results:put_nowait(v * v)
              jobs:task_done()
            end
          end)
        end
      end
      local got = {}
      while not results:empty() do got[#got + 1] = results:get_nowait() end
      table.sort(got)
      assert.same({1, 4, 9, 16, 25, 36, 49, 64, 81, 100}, got)
    end))

  it("§8 a Barrier waiter cancelled leaves the barrier unbroken (asyncio, not threading)",
    async(function()
      local b = eddy.Barrier(3)
      local t1 = eddy.create_task(function() return b:wait() end)
      local t2 = eddy.create_task(function() return b:wait() end)
      eddy.sleep(0.01)
      t1:cancel()
      expect_error(errors.CancelledError, t1.await, t1)
      assert.is_false(b.broken)
      assert.equals(1, b.n_waiting)
      local t3 = eddy.create_task(function() return b:wait() end)
      local t4 = eddy.create_task(function() return b:wait() end)
      local i2, i3, i4 = eddy.wait_for(function() return eddy.gather(t2, t3, t4) end, 2)
      -- asyncio's indices: t2 drew 1 before t1 left, and t1's leaving
      -- gave 1 back, so t3 draws it again (CPython 3.13 prints [1, 1, 2])
      local idx = {i2, i3, i4}
      table.sort(idx)
      assert.same({1, 1, 2}, idx)
    end))

  it("§8 a lock acquire timed out by wait_for leaves the lock usable", async(function()
    local lock = eddy.Lock()
    lock:acquire()
    expect_error(errors.TimeoutError, eddy.wait_for, function() return lock:acquire() end, 0.01)
    lock:release()
    assert.is_false(lock:locked())
    eddy.wait_for(function() local _ <close> = lock:acquire() end, 1)
    assert.is_false(lock:locked())
  end))

  it("§8 Condition:wait_for ended by a timeout scope returns with the lock held", async(function()
    local cond = eddy.Condition()
    local _ <close> = cond:acquire()
    expect_error(errors.TimeoutError, function()
      local t <close> = eddy.timeout(0.01)
      cond:wait_for(function() return false end)
    end)
    assert.is_true(cond:locked())
  end))
end)

describe("§8 context variables", function()
  it("§8 a request id per connection: seen by the handler's child tasks and callbacks, never by another connection",
    async(function(loop)
      local request_id = eddy.ContextVar("request_id", "none")
      local next_id = 0
      local srv <close> = eddy.start_server(function(r, w)
        next_id = next_id + 1
        request_id:set("req" .. next_id)
        local line = r:readline()
        eddy.sleep(0.01)  -- the two connections interleave here
        local from_task = eddy.create_task(function() eddy.sleep(0); return request_id:get() end):await()
        local from_callback = loop:create_future()
        loop:call_soon(function() from_callback:set_result(request_id:get()) end)
        w:write(line:sub(1, -2) .. " " .. request_id:get() .. " " .. from_task .. " "
                .. from_callback:await() .. "\n")
        w:close()
      end, "127.0.0.1", 0)
      local port = srv.sockets[1]:getsockname()[2]
      local function ask(name)
        local r, w = eddy.open_connection("127.0.0.1", port)
        w:write(name .. "\n")
        local reply = r:readline()
        w:close()
        return reply
      end
      local a, b = eddy.wait_for(function()
        return eddy.gather(function() return ask("a") end, function() return ask("b") end)
      end, 2)
      local ida, idb = a:match("^a (req%d) "), b:match("^b (req%d) ")
      assert.is_truthy(ida and idb)
      assert.are_not.equal(ida, idb)
      assert.equals(("a %s %s %s\n"):format(ida, ida, ida), a)
      assert.equals(("b %s %s %s\n"):format(idb, idb, idb), b)
      assert.equals("none", request_id:get())
    end))
end)

describe("§3/§10 subprocesses", function()
  it("§10 a line-by-line dialogue with a child through its stdin/stdout streams",
    async(function()
      local P = eddy.subprocess
      local p = eddy.create_subprocess_exec("sh", "-c", 'while read l; do echo "<$l>"; done',
                                            {stdin = P.PIPE, stdout = P.PIPE})
      for i = 1, 3 do
        p.stdin:write("line" .. i .. "\n")
        p.stdin:drain()
        assert.equals("<line" .. i .. ">\n",
                      eddy.wait_for(function() return p.stdout:readline() end, 2))
      end
      p.stdin:close()
      assert.equals("", p.stdout:read())
      assert.equals(0, eddy.wait_for(function() return p:wait() end, 2))
    end))

  it("§10 wait() under wait_for times out without killing; kill() then gives -9",
    async(function()
      local p = eddy.create_subprocess_exec("sleep", "10")
      expect_error(errors.TimeoutError, eddy.wait_for, function() return p:wait() end, 0.05)
      assert.is_nil(p.returncode)
      p:kill()
      assert.equals(-9, p:wait())
    end))
end)

describe("§3/§5/§9 combined programs", function()
  it("§3/§4/§8 graceful shutdown: a real SIGTERM from a child closes the server under serve_forever",
    async(function(loop)
      local srv = eddy.start_server(function(r, w)
        for line in r:lines() do w:write(line:upper() .. "\n") end
        w:close()
      end, "127.0.0.1", 0, {start_serving = false})
      local serving = eddy.create_task(function() srv:serve_forever() end)
      loop:add_signal_handler("SIGTERM", function(why) serving:cancel(why) end, "SIGTERM received")
      eddy.sleep(0)
      local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
      w:write("ping\n")
      assert.equals("PING\n", eddy.wait_for(function() return r:readline() end, 2))
      local p = eddy.create_subprocess_shell("kill -TERM $PPID")
      assert.equals(0, p:wait())
      while srv:is_serving() do eddy.sleep(0.001) end
      assert.is_true(loop:remove_signal_handler("SIGTERM"))
      -- serve_forever closed the server and, as asyncio 3.12's, waits for
      -- its connections: the client is still served until it leaves
      w:write("pong\n")
      assert.equals("PONG\n", eddy.wait_for(function() return r:readline() end, 2))
      assert.is_false(serving:done())
      w:write_eof()
      assert.equals("", eddy.wait_for(function() return r:read() end, 2))
      local err = expect_error(errors.CancelledError, function() eddy.wait_for(serving, 2) end)
      assert.matches("SIGTERM received", tostring(err))
      w:close()
    end))

  it("§6/§8/§9 a bounded fetcher: Semaphore, as_completed, per-call wait_for, errors told apart by class",
    async(function()
      local live = eddy.start_server(function(r, w) w:write(r:readline()); w:close() end,
                                     "127.0.0.1", 0)
      local slow = eddy.start_server(function(r) r:read() end, "127.0.0.1", 0)
      local gone = eddy.start_server(function() end, "127.0.0.1", 0)
      local gone_port = gone.sockets[1]:getsockname()[2]
      gone:close()
      gone:wait_closed()
      local ports = {live.sockets[1]:getsockname()[2], slow.sockets[1]:getsockname()[2], gone_port}
      local sem, active, most = eddy.Semaphore(2), 0, 0
      local function fetch(port)
        local _ <close> = sem:acquire()
        active = active + 1
        most = math.max(most, active)
        local ok, res = pcall(eddy.wait_for, function()
          local r, w = eddy.open_connection("127.0.0.1", port)
          -- closes the connection however the call ends (a timeout too)
          local _ <close> = setmetatable({}, {__close = function() w:close() end})
          w:write(port .. "\n")
          return r:readline()
        end, 0.05)
        active = active - 1
        if ok then return "ok " .. res end
        if errors.is(res, errors.TimeoutError) then return "timeout" end
        assert.is_true(errors.is(res, errors.OSError))
        return res.code .. " " .. tostring(errors.is(res, errors.ConnectionError))
      end
      local jobs = {}
      for i, port in ipairs(ports) do jobs[i] = function() return fetch(port) end end
      local outcomes = {}
      for f in eddy.as_completed(jobs) do outcomes[#outcomes + 1] = f:await() end
      table.sort(outcomes)
      assert.same({"ECONNREFUSED true", "ok " .. ports[1] .. "\n", "timeout"}, outcomes)
      assert.equals(2, most)
      live:close()
      slow:close()
      slow:close_clients()
      eddy.wait_for(function() live:wait_closed(); slow:wait_closed() end, 2)
    end))
end)

describe("§11 the executable", function()
  it("§11 a script at top level: gather, wait_for, an echo server and its client, then drained",
    function()
      local code, out = checks.run_script([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
print("gather", eddy.gather(function() eddy.sleep(0.01) return 1 end, function() return 2 end))
print("wait_for", pcall(eddy.wait_for, function() eddy.sleep(10) end, 0.01))
local srv = eddy.start_server(function(r, w) w:write(r:readline()) w:close() end, "127.0.0.1", 0)
local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
w:write("echo\n")
io.write("got ", r:readline())
w:close()
srv:close()
loop:call_later(0.01, print, "drained")
print("chunk ends", coroutine.isyieldable())
]])
      assert.equals(0, code)
      assert.equals("gather\t1\t2\nwait_for\tfalse\tTimeoutError\ngot echo\nchunk ends\tfalse\ndrained\n",
                    out)
    end)

  it("§11/§6 timeout() and TaskGroup() at top level raise RuntimeError: they need a current task",
    function()
      local code, out = checks.run_script([[
local eddy = require "eddy"
print(pcall(function() local t <close> = eddy.timeout(1) end))
print(pcall(eddy.TaskGroup))
]])
      assert.equals(0, code)
      assert.equals("false\tRuntimeError: timeout() should be used inside a task\n"
                    .. "false\tRuntimeError: TaskGroup cannot determine the parent task: use it inside a task\n", out)
    end)
end)
