-- Black-box cases, third pass: written from /work/shared/API.md alone (and
-- asyncio's documentation, by API.md §1's translation rules) for the
-- sections the first two passes (blackbox_spec.lua, blackbox2_spec.lua)
-- left: §3 the loop's methods, §5 futures and tasks, §9 errors.
-- Realistic programs that combine several features, and documented edge
-- cases no other spec covers; every description cites the API.md section
-- it checks.
local eddy = require "eddy"
local errors = eddy.errors
local socket = eddy.socket
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local expect_error, with_loop = checks.expect_error, checks.with_loop

describe("§3 running and stopping", function()
  it("§3 run_until_complete: a Task that stop() interrupted is finished by a second call, "
     .. "which returns all its results; a function runs as a new task of the loop",
    with_loop(function(loop)
      local steps = {}
      local task = loop:create_task(function(a, b)
        steps[#steps + 1] = "started"
        eddy.sleep(0.01)
        steps[#steps + 1] = "woke"
        return a, nil, b
      end, "x", "y")
      loop:call_soon(loop.stop, loop)
      local err = expect_error(errors.RuntimeError, loop.run_until_complete, loop, task)
      assert.matches("stopped before Future completed", tostring(err))
      assert.is_false(loop:is_running())
      assert.is_false(task:done())
      assert.same({"started"}, steps)
      assert.same({n = 3, "x", nil, "y"}, table.pack(loop:run_until_complete(task)))
      assert.same({"started", "woke"}, steps)
      -- a finished Task again: its results at once (one iteration)
      assert.same({n = 3, "x", nil, "y"}, table.pack(loop:run_until_complete(task)))
      local inside, running, other = loop:run_until_complete(function()
        return eddy.get_running_loop(), loop:is_running(), eddy.current_task()
      end)
      assert.equal(loop, inside)
      assert.is_true(running)
      assert.is_true(eddy.isfuture(other))
      assert.are_not.equal(task, other)
      assert.is_true(other:done())
    end))

  it("§3 stop() before run_forever: one iteration runs what was ready, due timers after "
     .. "the call_soons; what it schedules waits for the next run, which stop() inside a "
     .. "callback ends after its whole batch", with_loop(function(loop)
      local log = {}
      local function add(x) log[#log + 1] = x end
      loop:call_soon(function()
        add("a")
        loop:call_soon(add, "c")
      end)
      loop:call_later(0, add, "due timer")
      loop:call_later(10, add, "far timer")
      loop:stop()
      loop:call_soon(add, "b")
      loop:run_forever()
      assert.same({"a", "b", "due timer"}, log)
      assert.is_false(loop:is_running())
      -- Second run: c, then a callback that stops; its batch-mate still runs,
      -- and what that one schedules is left for a third run.
      loop:call_soon(function()
        add("d running=" .. tostring(loop:is_running()))
        loop:stop()
      end)
      loop:call_soon(function()
        add("e")
        loop:call_soon(add, "f")
      end)
      checks.run_forever(loop)
      assert.same({"a", "b", "due timer", "c", "d running=true", "e"}, log)
      loop:stop()
      loop:run_forever()
      assert.equal("f", log[#log])
      assert.is_false(loop:is_closed())
    end))

  it("§3 close() from a running loop's callback raises RuntimeError and changes nothing; "
     .. "after the run close() drops what is pending, is idempotent, and the loop refuses to run",
    function()
      local loop = eddy.new_event_loop()
      local seen = {}
      loop:call_soon(function()
        local ok, err = pcall(loop.close, loop)
        seen.ok, seen.err = ok, err
        seen.closed = loop:is_closed()
      end)
      loop:run_until_complete(function() eddy.sleep(0) end)
      assert.is_false(seen.ok)
      assert.is_true(errors.is(seen.err, errors.RuntimeError))
      assert.matches("Cannot close a running event loop", tostring(seen.err))
      assert.is_false(seen.closed)
      assert.is_false(loop:is_closed())
      local pending_ran = false
      loop:call_soon(function() pending_ran = true end)
      loop:call_later(0, function() pending_ran = true end)
      loop:close()
      loop:close()
      assert.is_true(loop:is_closed())
      assert.is_false(loop:is_running())
      assert.is_false(pending_ran)
      expect_error(errors.RuntimeError, loop.run_forever, loop)
      expect_error(errors.RuntimeError, loop.run_until_complete, loop, function() end)
      loop:stop()  -- still allowed
    end)

  it("§3 asyncio's manual shutdown sequence: run_forever, then shutdown_asyncgens closes an "
     .. "open generator (its cleanup suspends), shutdown_default_executor waits for a job, close",
    with_loop(function(loop)
      local log = {}
      local numbers = eddy.asyncgen(function(yield)
        local _ <close> = setmetatable({}, {__close = function()
          eddy.sleep(0.01)
          log[#log + 1] = "generator cleaned up"
        end})
        for i = 1, math.huge do yield(i) end
      end)
      local gen = numbers()
      local job
      loop:call_soon(function()
        loop:create_task(function()
          log[#log + 1] = "first " .. gen:anext()
          job = loop:run_in_executor(nil, function() os.execute("sleep 0.05") return "job done" end)
          loop:stop()
        end)
      end)
      checks.run_forever(loop)
      assert.is_false(job:done())
      loop:run_until_complete(function() loop:shutdown_asyncgens() end)
      assert.same({"first 1", "generator cleaned up"}, log)
      local t0 = loop:time()
      loop:run_until_complete(function() loop:shutdown_default_executor() end)
      assert.is_true(job:done())
      assert.equal("job done", job:result())
      assert.is_true(loop:time() - t0 < 5)
      expect_error(errors.RuntimeError, loop.run_in_executor, loop, nil, print)
    end))

  it("§3 asyncio's pre-asyncio.run style on one loop: run_until_complete starts a server and "
     .. "returns it; a client that connected while the loop was stopped is served by the next "
     .. "run; a last run waits for wait_closed", with_loop(function(loop)
      local srv = loop:run_until_complete(function()
        return eddy.start_server(function(r, w)
          w:write("hello " .. r:readline())
          w:close()
        end, "127.0.0.1", 0)
      end)
      assert.is_false(loop:is_running())
      assert.is_true(srv:is_serving())
      local port = srv.sockets[1]:getsockname()[2]
      -- a blocking client: the kernel queues its connection while no loop runs
      local early = socket.socket()
      early:connect({"127.0.0.1", port})
      early:sendall("early\n")
      early:setblocking(false)
      local reply = loop:run_until_complete(function()
        local r, w = eddy.open_connection("127.0.0.1", port)
        w:write("async\n")
        local line = eddy.wait_for(function() return r:readline() end, 5)
        w:close()
        return line
      end)
      assert.equal("hello async\n", reply)
      assert.equal("hello early\n", loop:run_until_complete(function()
        return eddy.wait_for(function() return loop:sock_recv(early, 100) end, 5)
      end))
      early:close()
      srv:close()
      loop:run_until_complete(function() eddy.wait_for(function() srv:wait_closed() end, 5) end)
      assert.is_false(srv:is_serving())
    end))
end)

describe("§3 shutdown_asyncgens", function()
  it("§3 shutdown_asyncgens waits until every open generator is closed: one whose cleanup "
     .. "fails is reported with asyncgen and exception, one whose cleanup is cancelled is not "
     .. "(asyncio reports Exceptions only), the others are closed all the same",
    async(function(loop)
      local contexts = {}
      loop:set_exception_handler(function(_, context) contexts[#contexts + 1] = context end)
      local closed = {}
      -- the failing cleanups are the quickest: whichever order the generators
      -- are closed in, returning early leaves some cleanup unfinished
      local cursor = eddy.asyncgen(function(yield, name, err)
        local _ <close> = setmetatable({}, {__close = function()
          if err ~= nil then error(err) end
          eddy.sleep(0.02)
          closed[#closed + 1] = name
        end})
        for i = 1, math.huge do yield(name .. i) end
      end)
      local failures = {broken = errors.RuntimeError("broken could not close"),
                        cancelled = errors.CancelledError("cleanup cancelled")}
      local gens, names = {}, {"a", "b", "broken", "c", "cancelled", "d"}
      for i, name in ipairs(names) do
        gens[i] = cursor(name, failures[name])
        assert.equal(name .. "1", gens[i]:anext())
      end
      loop:shutdown_asyncgens()
      table.sort(closed)
      assert.same({"a", "b", "c", "d"}, closed)
      assert.equal(1, #contexts)
      assert.equal("an error occurred during closing of asynchronous generator " .. tostring(gens[3]),
                   contexts[1].message)
      assert.equal(gens[3], contexts[1].asyncgen)
      assert.equal(failures.broken, contexts[1].exception)
      for _, gen in ipairs(gens) do assert.is_nil(gen:anext()) end  -- closed: nothing more
    end))
end)

describe("§3 scheduling", function()
  it("§3/§4 one batch: a callback cancels a later handle of the batch, one raises (the "
     .. "handler gets the loop, its Handle and error; the batch goes on), handles report "
     .. "cancelled() and when()", with_loop(function(loop)
      local log, reports = {}, {}
      loop:set_exception_handler(function(l, context) reports[#reports + 1] = {l, context} end)
      local now = loop:time()
      local past = loop:call_at(now - 5, function() log[#log + 1] = "past" end)
      assert.equal(now - 5, past:when())
      local ran_at
      local later = loop:call_later(0.02, function()
        ran_at = loop:time()
        loop:stop()
      end)
      assert.is_true(later:when() >= now + 0.02)
      local victim
      local first = loop:call_soon(function()
        log[#log + 1] = "first"
        victim:cancel()
      end)
      local bad = loop:call_soon(function() error(errors.ValueError("bad callback")) end)
      victim = loop:call_soon_threadsafe(function() log[#log + 1] = "victim" end)
      loop:call_soon_threadsafe(function() log[#log + 1] = "after" end)
      checks.run_forever(loop)
      assert.same({"first", "after", "past"}, log)
      assert.is_true(ran_at >= later:when())
      assert.is_true(victim:cancelled())
      assert.is_false(first:cancelled())
      assert.equal(1, #reports)
      local l, context = reports[1][1], reports[1][2]
      assert.equal(loop, l)
      assert.matches("^Exception in callback", context.message)
      assert.equal(bad, context.handle)
      assert.is_true(errors.is(context.exception, errors.ValueError))
      assert.equal("bad callback", context.exception.message)
      -- cancel() after a handle ran still marks it, as asyncio's Handle.cancel
      first:cancel()
      later:cancel()
      assert.is_true(first:cancelled())
      assert.is_true(later:cancelled())
    end))

  it("§3/§4 a debouncer: each event cancels the pending TimerHandle and schedules a new one; "
     .. "only the last fires, not before its when(), and every replaced handle says cancelled",
    async(function(loop)
      local fired, pending, handles = {}, nil, {}
      local function event(v)
        if pending ~= nil then pending:cancel() end
        -- 0.5 s: a loaded machine may stall between two events far
        -- longer than their 2 ms; a stall past the delay would fire an
        -- earlier event's timer
        pending = loop:call_later(0.5, function(x) fired[#fired + 1] = {x, loop:time()} end, v)
        handles[#handles + 1] = pending
      end
      for i = 1, 10 do
        event(i)
        eddy.sleep(0.002)
      end
      net.wait_until(function() return #fired > 0 end)
      eddy.sleep(0.03)
      assert.equal(1, #fired)
      assert.equal(10, fired[1][1])
      assert.is_true(fired[1][2] >= pending:when())
      for i = 1, 9 do
        assert.is_true(handles[i]:cancelled())
        assert.is_true(handles[i]:when() < handles[i + 1]:when())
      end
      assert.is_false(pending:cancelled())
    end))

  it("§3 forty timers with mixed delays, scheduled in a shuffled order, run by when, "
     .. "equal whens in scheduling order, none before its time", with_loop(function(loop)
      local delays = {0, 0.001, 0.004, 0.008, -1}
      local fired, expected = {}, {}
      local seed = 12345
      for i = 1, 40 do
        seed = (seed * 1103515245 + 12345) % 2147483648
        local delay = delays[seed % #delays + 1]
        local h
        h = loop:call_later(delay, function()
          fired[#fired + 1] = {i = i, late = loop:time() >= h:when()}
        end)
        expected[#expected + 1] = {i = i, when = h:when()}
      end
      table.sort(expected, function(a, b)
        if a.when ~= b.when then return a.when < b.when end
        return a.i < b.i
      end)
      loop:call_later(0.05, loop.stop, loop)
      checks.run_forever(loop)
      assert.equal(40, #fired)
      for k, e in ipairs(expected) do
        assert.equal(e.i, fired[k].i)
        assert.is_true(fired[k].late, "timer " .. e.i .. " ran early")
      end
    end))
end)

describe("§3 task factory", function()
  it("§3 a task factory makes the tasks of loop:create_task, eddy.create_task, and the "
     .. "functions given to gather, wait_for, wait, shield, as_completed, await and "
     .. "TaskGroup, with their arguments; nil restores the default", async(function(loop)
      local made = {}
      local function factory(l, fn, ...)
        assert.equal(loop, l)
        local task = eddy.Task(l, fn, ...)
        made[#made + 1] = select("#", ...)
        task:set_name("made-" .. #made)
        return task
      end
      loop:set_task_factory(factory)
      assert.equal(factory, loop:get_task_factory())
      local function value(...)
        eddy.sleep(0)
        return ...
      end
      local t1 = loop:create_task(value, 1, nil)
      local t2 = eddy.create_task(value, "two")
      assert.same({"made-1", "made-2"}, {t1:get_name(), t2:get_name()})
      assert.same({n = 2, 1, nil}, table.pack(t1:await()))
      assert.equal("two", t2:await())
      assert.same({"a", "b"}, {eddy.gather(function() return value("a") end, function() return "b" end)})
      assert.equal("w", eddy.wait_for(function() return value("w") end, 5))
      local done = eddy.wait({function() return "x" end})
      assert.matches("^made%-", done[1]:get_name())
      assert.equal("s", eddy.shield(function() return "s" end):await())
      for f in eddy.as_completed({function() return "c" end}) do assert.equal("c", f:await()) end
      assert.equal("aw", eddy.await(function() return "aw" end))
      do
        local tg <close> = eddy.TaskGroup()
        assert.equal("made-10", tg:create_task(value, 1, 2, 3):get_name())
      end
      assert.same({2, 1, 0, 0, 0, 0, 0, 0, 0, 3}, made)
      loop:set_task_factory(nil)
      assert.is_nil(loop:get_task_factory())
      assert.matches("^Task%-%d+$", eddy.create_task(value):get_name())
      assert.equal(10, #made)
    end))
end)

describe("§3 DNS", function()
  it("§3 a client resolves localhost and tries each entry in turn until one connects; "
     .. "entries are shaped as API.md says; getnameinfo numeric; DNSError carries the EAI code",
    async(function(loop)
      local srv, port = net.echo_server(loop)
      local infos = loop:getaddrinfo("localhost", port, {type = socket.SOCK_STREAM})
      assert.is_true(#infos >= 1)
      local conn
      for _, info in ipairs(infos) do
        assert.is_true(info.family == socket.AF_INET or info.family == socket.AF_INET6)
        assert.equal(socket.SOCK_STREAM, info.type)
        assert.equal(socket.IPPROTO_TCP, info.proto)
        assert.equal("", info.canonname)
        assert.equal(port, info.sockaddr[2])
        assert.equal(info.family == socket.AF_INET and 2 or 4, #info.sockaddr)
        local s = socket.socket(info.family, info.type, info.proto)
        s:setblocking(false)
        local ok, err = pcall(loop.sock_connect, loop, s, info.sockaddr)
        if ok then
          conn = s
          break
        end
        assert.is_true(errors.is(err, errors.ConnectionRefusedError), tostring(err))
        s:close()
      end
      assert.is_not_nil(conn, "no entry connected")
      loop:sock_sendall(conn, "resolved")
      assert.equal("resolved", loop:sock_recv(conn, 100))
      conn:close()
      -- AI_PASSIVE with no host: the wildcard, one entry per socket type asked
      local passive = loop:getaddrinfo(nil, port, {family = socket.AF_INET, type = socket.SOCK_DGRAM,
                                                    flags = socket.AI_PASSIVE})
      assert.same({{family = socket.AF_INET, type = socket.SOCK_DGRAM, proto = socket.IPPROTO_UDP,
                    canonname = "", sockaddr = {"0.0.0.0", port}}}, passive)
      local canonical = loop:getaddrinfo("localhost", port, {family = socket.AF_INET,
                                                             type = socket.SOCK_STREAM,
                                                             flags = socket.AI_CANONNAME})
      assert.equal("localhost", canonical[1].canonname)
      assert.same({"127.0.0.1", tostring(port)},
                  {loop:getnameinfo({"127.0.0.1", port}, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)})
      local err = expect_error(errors.DNSError, loop.getaddrinfo, loop, "localhost", port,
                               {flags = socket.AI_NUMERICHOST})
      assert.same({"EAI_NONAME", -2}, {err.code, err.errno})
      assert.is_true(errors.is(err, errors.OSError))
      assert.is_false(errors.is(err, errors.ConnectionError))
      assert.matches("^DNSError: ", tostring(err))
      err = expect_error(errors.DNSError, loop.getaddrinfo, loop, "127.0.0.1", "no-such-service-here")
      assert.same({"EAI_SERVICE", -8}, {err.code, err.errno})
      srv:close()
      srv:wait_closed()
    end))
end)

describe("§3 pipes", function()
  it("§3 a pipeline over the three kinds of pipe: a child's output (Lua file) is upper-cased "
     .. "into a write pipe given as an integer fd, read back through an object with :fileno(); "
     .. "EOF flows through and each pipe object is closed after connection_lost",
    async(function(loop)
      local a, b = socket.socketpair()
      local fd = a:detach()
      local closes = 0
      local reader_end = {
        fileno = function() return b:fileno() end,
        close = function() closes = closes + 1; b:close() end,
      }
      local sink_lost, out_lost = loop:create_future(), loop:create_future()
      local events = {}
      local sink = loop:connect_write_pipe(function()
        return {connection_lost = function(_, err) sink_lost:set_result(err or "clean") end}
      end, fd)
      assert.equal(fd, sink:get_extra_info("pipe"))
      local got = {}
      local out = loop:connect_read_pipe(function()
        return {
          data_received = function(_, d) got[#got + 1] = d end,
          eof_received = function() events[#events + 1] = "eof" end,
          connection_lost = function(_, err)
            events[#events + 1] = "lost " .. tostring(err)
            out_lost:set_result(true)
          end,
        }
      end, reader_end)
      assert.equal(reader_end, out:get_extra_info("pipe"))
      local source_file = io.popen("printf 'one\\ntwo\\nthree\\n'", "r")
      local source = loop:connect_read_pipe(function()
        return {
          data_received = function(_, d) sink:write(d:upper()) end,
          eof_received = function() sink:write_eof() end,
        }
      end, source_file)
      assert.equal(source_file, source:get_extra_info("pipe"))
      assert.equal("clean", net.wait(sink_lost))
      net.wait(out_lost)
      assert.equal("ONE\nTWO\nTHREE\n", table.concat(got))
      assert.same({"eof", "lost nil"}, events)
      checks.turns(3)
      assert.equal(1, closes)
      assert.equal("closed file", io.type(source_file))
      assert.is_nil(io.open("/proc/self/fdinfo/" .. fd), "the integer fd is still open")
    end))
  it("§3 bad input: a pipe or fd object whose fileno is not callable is an argument error "
     .. "naming the method (Python's TypeError), never a bare 'attempt to call'", async(function(loop)
      local proto = function() return {} end
      for _, bad in ipairs {{fileno = 5}, {fileno = "3"}, {fileno = true}} do
        checks.argerror(function() loop:connect_read_pipe(proto, bad) end, 2, "connect_read_pipe")
        checks.argerror(function() loop:connect_write_pipe(proto, bad) end, 2, "connect_write_pipe")
        checks.argerror(function() loop:add_reader(bad, print) end, 1, "add_reader")
        checks.argerror(function() loop:add_writer(bad, print) end, 1, "add_writer")
      end
      -- a callable fileno that returns no descriptor is the object's fault: ValueError
      expect_error(errors.ValueError, loop.connect_read_pipe, loop, proto,
                   {fileno = function() return "x" end})
    end))
end)

describe("§3 signals", function()
  it("§3 a reload handler: real SIGUSR1s sent by a child process reach a handler added by "
     .. "name, which runs as a plain callback; re-adding by number replaces it; an error in "
     .. "it is reported and it stays; remove_signal_handler says whether there was one",
    async(function(loop)
      local pid = eddy.signal.getpid()
      local function send()
        local p = eddy.create_subprocess_exec("kill", "-USR1", tostring(pid))
        assert.equal(0, net.wait(eddy.create_task(p.wait, p)))
      end
      local reloads, reports = {}, {}
      loop:set_exception_handler(function(_, context) reports[#reports + 1] = context end)
      loop:add_signal_handler("SIGUSR1", function(config)
        local ok, err = pcall(eddy.sleep, 0)
        reloads[#reloads + 1] = {config, eddy.current_task(), ok, errors.is(err, errors.RuntimeError)}
      end, "a.conf")
      send()
      net.wait_until(function() return #reloads == 1 end)
      assert.same({"a.conf", nil, false, true}, reloads[1])
      loop:add_signal_handler(eddy.signal.SIGUSR1, function(config)
        reloads[#reloads + 1] = {config}
        error(errors.ValueError("bad " .. config))
      end, "b.conf")
      send()
      net.wait_until(function() return #reports == 1 end)
      send()
      net.wait_until(function() return #reports == 2 end)
      assert.same({"b.conf"}, reloads[3])
      assert.equal(3, #reloads)
      assert.equal("bad b.conf", reports[2].exception.message)
      assert.is_not_nil(reports[2].handle)
      assert.is_true(loop:remove_signal_handler("SIGUSR1"))
      assert.is_false(loop:remove_signal_handler(eddy.signal.SIGUSR1))
      assert.is_false(loop:remove_signal_handler("SIGUSR2"))
      for _, bad in ipairs {0, 65, -1, "SIGFOO", "USR1"} do
        expect_error(errors.ValueError, loop.add_signal_handler, loop, bad, print)
        expect_error(errors.ValueError, loop.remove_signal_handler, loop, bad)
      end
      for _, uncatchable in ipairs {"SIGKILL", eddy.signal.SIGKILL, "SIGSTOP", eddy.signal.SIGSTOP} do
        expect_error(errors.RuntimeError, loop.add_signal_handler, loop, uncatchable, print)
      end
    end))

  it("§3/§4 a graceful restart on SIGHUP: the handler (a plain callback) starts a task that "
     .. "closes the server and listens again on the same port; the old server's client is "
     .. "still served, new clients reach the new server", async(function(loop)
      local generation = 1
      local function serve(port)
        local gen = generation
        return eddy.start_server(function(r, w)
          for line in r:lines() do w:write(("gen%d %s\n"):format(gen, line)) end
          w:close()
        end, "127.0.0.1", port)
      end
      local srv = serve(0)
      local port = srv.sockets[1]:getsockname()[2]
      local restarted = loop:create_future()
      loop:add_signal_handler("SIGHUP", function()
        loop:create_task(function()
          srv:close()
          generation = generation + 1
          srv = serve(port)
          restarted:set_result(true)
        end)
      end)
      local r1, w1 = eddy.open_connection("127.0.0.1", port)
      w1:write("a\n")
      assert.equal("gen1 a\n", eddy.wait_for(function() return r1:readline() end, 5))
      eddy.signal.kill(eddy.signal.getpid(), "SIGHUP")
      net.wait(restarted)
      w1:write("b\n")
      assert.equal("gen1 b\n", eddy.wait_for(function() return r1:readline() end, 5))
      local r2, w2 = eddy.open_connection("127.0.0.1", port)
      w2:write("c\n")
      assert.equal("gen2 c\n", eddy.wait_for(function() return r2:readline() end, 5))
      assert.is_true(loop:remove_signal_handler("SIGHUP"))
      w1:close()
      w2:close()
      srv:close()
      srv:wait_closed()
    end))

  it("§3 a signal that arrives while the loop is not running is handled on its next run, "
     .. "once, before the run's first callbacks are done with", with_loop(function(loop)
      local log = {}
      loop:add_signal_handler("SIGUSR2", function(what) log[#log + 1] = what end, "signal")
      eddy.signal.kill(eddy.signal.getpid(), "SIGUSR2")
      assert.same({}, log)
      loop:run_until_complete(function()
        eddy.sleep(0.01)
        log[#log + 1] = "slept"
      end)
      assert.same({"signal", "slept"}, log)
      loop:run_until_complete(function() eddy.sleep(0.01) end)
      assert.same({"signal", "slept"}, log)
      assert.is_true(loop:remove_signal_handler("SIGUSR2"))
      loop:run_until_complete(function() eddy.sleep(0) end)  -- the watcher's close completes
    end))
end)

describe("§3 executor", function()
  it("§3 set_default_executor(pool): run_in_executor(nil) and to_thread run there; "
     .. "shutdown_default_executor(timeout) shuts that pool down, so both ways in refuse",
    async(function(loop)
      local pool = eddy.ThreadPoolExecutor(1)
      loop:set_default_executor(pool)
      -- one worker thread: its globals persist between the jobs
      local first = loop:run_in_executor(nil, function(n) jobs = (jobs or 0) + n return jobs end, 5)
      assert.equal(5, first:await())
      assert.equal(12, eddy.to_thread(function(n) jobs = jobs + n return jobs end, 7))
      assert.equal(13, loop:run_in_executor(pool, function() jobs = jobs + 1 return jobs end):await())
      local slow = loop:run_in_executor(nil, function() os.execute("sleep 0.05") return "slow done" end)
      local t0 = loop:time()
      loop:shutdown_default_executor(5)
      assert.is_true(loop:time() - t0 < 5)
      assert.equal("slow done", net.wait(slow))
      local err = expect_error(errors.RuntimeError, loop.run_in_executor, loop, nil, print)
      assert.matches("Executor shutdown has been called", tostring(err))
      err = expect_error(errors.RuntimeError, loop.run_in_executor, loop, pool, print)
      assert.matches("cannot schedule new futures after shutdown", tostring(err))
    end))

  it("§3 a pool of two workers: jobs' results arrive in completion order while the loop "
     .. "serves a timer, a job's error table comes back as the future's exception, "
     .. "shutdown(false, {cancel_futures = true}) cancels queued jobs, which never run",
    async(function(loop)
      local pool = eddy.ThreadPoolExecutor(2)
      local function job(ms, tag)
        os.execute("sleep " .. ms / 1000)
        if tag == "fail" then error({code = 42, tag = tag}) end
        return tag, ms
      end
      local ticks = 0
      local ticker
      ticker = loop:call_later(0.005, function() ticks = ticks + 1 end)
      local futs = {loop:run_in_executor(pool, job, 60, "slow"),
                    loop:run_in_executor(pool, job, 10, "quick"),
                    loop:run_in_executor(pool, job, 10, "fail")}
      local order = {}
      for f in eddy.as_completed(futs) do
        local ok, tag = pcall(f.await, f)
        order[#order + 1] = ok and tag or ("error " .. tag.code)
      end
      assert.same({"quick", "error 42", "slow"}, order)
      assert.equal(1, ticks)
      -- two long jobs take both threads; two more wait in the queue
      local marker = os.tmpname()
      os.remove(marker)
      local running = {loop:run_in_executor(pool, job, 50, "a"), loop:run_in_executor(pool, job, 50, "b")}
      local queued = {}
      for i = 1, 2 do
        queued[i] = loop:run_in_executor(pool, function(path)
          local f = io.open(path, "w") f:write("ran") f:close()
        end, marker)
      end
      eddy.sleep(0.01)
      pool:shutdown(false, {cancel_futures = true})
      for _, f in ipairs(queued) do
        expect_error(errors.CancelledError, net.wait, f)  -- cancelled on the loop, soon
        assert.is_true(f:cancelled())
      end
      assert.equal("a", net.wait(running[1]))
      assert.equal("b", net.wait(running[2]))
      expect_error(errors.RuntimeError, loop.run_in_executor, loop, pool, print)
      assert.is_nil(io.open(marker), "a cancelled job ran")
      ticker:cancel()
    end))
end)

describe("§3 the exception handler", function()
  it("§3 a protocol that raises in data_received: the handler gets message, exception, "
     .. "protocol and transport; that connection is lost with the error, the server serves on",
    async(function(loop)
      local contexts = {}
      local function handler(l, context)
        assert.equal(loop, l)
        contexts[#contexts + 1] = context
      end
      loop:set_exception_handler(handler)
      assert.equal(handler, loop:get_exception_handler())
      local protocols = {}
      local srv = loop:create_server(function()
        local p = {lost = loop:create_future()}
        function p.connection_made(self, t) self.t = t end
        function p.data_received(self, d)
          if d:find("boom", 1, true) then error(errors.ValueError("cannot parse " .. d)) end
          self.t:write("ok " .. d)
        end
        function p.connection_lost(self, err) self.lost:set_result(err or "clean") end
        protocols[#protocols + 1] = p
        return p
      end, "127.0.0.1", 0)
      local port = srv.sockets[1]:getsockname()[2]
      local r1, w1 = eddy.open_connection("127.0.0.1", port)
      local r2, w2 = eddy.open_connection("127.0.0.1", port)
      w1:write("boom")
      local lost_with = net.wait(protocols[1].lost)
      assert.is_true(errors.is(lost_with, errors.ValueError))
      assert.equal("", eddy.wait_for(function() return r1:read() end, 5))
      w2:write("fine")
      assert.equal("ok fine", eddy.wait_for(function() return r2:read(7) end, 5))
      assert.equal(1, #contexts)
      local c = contexts[1]
      assert.equal("Fatal error: protocol.data_received() call failed.", c.message)
      assert.equal(lost_with, c.exception)
      assert.equal(protocols[1], c.protocol)
      assert.equal(protocols[1].t, c.transport)
      -- call_exception_handler hands the very table over; nil restores the default
      local custom = {message = "custom", socket = srv.sockets[1]}
      loop:call_exception_handler(custom)
      assert.equal(custom, contexts[2])
      loop:set_exception_handler(nil)
      assert.is_nil(loop:get_exception_handler())
      w1:close()
      w2:close()
      srv:close()
      srv:wait_closed()
    end))

  it("§3 default_exception_handler prints the message, the other fields and the error with "
     .. "its traceback; a handler that raises is reported by the default one and the loop goes on",
    function()
      local code, out = checks.run_script([[
local eddy = require "eddy"
local loop = eddy.new_event_loop()
local fut = loop:create_future()
local function validate() error(eddy.errors.ValueError("bad value")) end
local t = loop:create_task(function() validate() end)
pcall(loop.run_until_complete, loop, t)
loop:default_exception_handler({message = "custom trouble", exception = t:exception(), future = fut})
loop:set_exception_handler(function(l, c)
  print("handler", l == loop, c.message, c.extra)
  error("handler broke")
end)
loop:call_exception_handler({message = "second", extra = 42})
print("goes on")
loop:close()
]])
      assert.equal(0, code)
      assert.matches("custom trouble\nfuture: <Future pending[^\n]*>\nValueError: bad value\n", out)
      assert.matches("stack traceback:.-in %w+ 'validate'", out)
      assert.matches("handler\ttrue\tsecond\t42\n", out)
      assert.matches("Unhandled error in exception handler", out)
      assert.matches("handler broke", out)
      assert.matches("goes on", out)
    end)
end)

describe("§3 debug mode", function()
  it("§3 EDDY_DEBUG turns debug on for eddy.run's loop and the default one: a task step "
     .. "longer than slow_callback_duration is warned about by name, one under a raised "
     .. "limit is not, nor anything once set_debug(false)", function()
    local script = [[
warn("@on")
local eddy = require "eddy"
print("default loop", eddy.get_event_loop():get_debug())
eddy.run(function()
  local loop = eddy.get_running_loop()
  print("run loop", loop:get_debug(), loop.slow_callback_duration)
  local function busy(name)
    local t = eddy.create_task(function()
      local t0 = loop:time()
      while loop:time() - t0 < 0.15 do end
    end)
    t:set_name(name)
    t:await()
  end
  busy("slowpoke")
  loop.slow_callback_duration = 1
  busy("tolerated")
  loop:set_debug(false)
  loop.slow_callback_duration = 0.01
  busy("unwatched")
end)
print("end")
]]
    local code, out = checks.run_script(script, {EDDY_DEBUG = "1"})
    assert.equal(0, code)
    assert.matches("default loop\ttrue\n", out)
    assert.matches("run loop\ttrue\t0.1\n", out)
    -- at least the 0.15 s it spins; a loaded machine may add any amount
    local took = tonumber(out:match("Executing [^\n]*slowpoke[^\n]* took (%d+%.%d+) seconds"))
    assert.is_true(took ~= nil and took >= 0.15, out)
    assert.is_nil(out:find("tolerated", 1, true))
    assert.is_nil(out:find("unwatched", 1, true))
    assert.matches("end\n", out)
    local _, quiet = checks.run_script(script, {EDDY_DEBUG = false})
    assert.matches("default loop\tfalse\nrun loop\tfalse\t0.1\n", quiet)
    assert.is_nil(quiet:find("Executing", 1, true))
  end)
end)

describe("§3/§10 sockets", function()
  it("§3/§10 length-prefixed messages over TCP read through a 4-byte Buffer with "
     .. "sock_recv_into (bytes past n keep what was there); UDP sock_recvfrom_into with "
     .. "nbytes truncates the datagram, as recvfrom_into", async(function(loop)
      local lsock = net.listening_socket()
      local buf = eddy.Buffer(4)
      assert.equal(4, #buf)
      assert.equal("\0\0\0\0", buf:tostring())
      local server = eddy.create_task(function()
        local conn = loop:sock_accept(lsock)
        local pending = ""
        local function take(n)  -- n bytes, received 4 at most at a time
          while #pending < n do
            local got = loop:sock_recv_into(conn, buf)
            if got == 0 then return nil end
            pending = pending .. buf:tostring(1, got)
          end
          local out = pending:sub(1, n)
          pending = pending:sub(n + 1)
          return out
        end
        local messages = {}
        while true do
          local header = take(4)
          if header == nil then break end
          messages[#messages + 1] = take(string.unpack(">I4", header))
        end
        loop:sock_sendall(conn, table.concat(messages, "|"))
        conn:close()
        return messages
      end)
      local client = socket.socket()
      client:setblocking(false)
      loop:sock_connect(client, lsock:getsockname())
      local frames = {}
      for _, m in ipairs {"hello", "", "a message longer than the buffer", "xyz"} do
        frames[#frames + 1] = string.pack(">s4", m)
      end
      loop:sock_sendall(client, table.concat(frames))
      client:shutdown(socket.SHUT_WR)
      assert.same({"hello", "", "a message longer than the buffer", "xyz"}, net.wait(server))
      assert.equal("hello||a message longer than the buffer|xyz", loop:sock_recv(client, 100))
      assert.equal("", loop:sock_recv(client, 100))
      client:close()
      lsock:close()
      -- a short receive overwrites the start of the Buffer only
      local p, q = checks.nonblocking_pair()
      loop:sock_sendall(p, "abcd")
      assert.equal(4, loop:sock_recv_into(q, buf))
      loop:sock_sendall(p, "XY")
      assert.equal(2, loop:sock_recv_into(q, buf))
      assert.equal("XYcd", buf:tostring())
      assert.equal("Ycd", buf:tostring(2))
      p:close()
      q:close()

      local a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
      local b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
      a:bind({"127.0.0.1", 0})
      b:bind({"127.0.0.1", 0})
      a:setblocking(false)
      b:setblocking(false)
      assert.equal(11, loop:sock_sendto(a, "hello world", b:getsockname()))
      assert.equal(6, loop:sock_sendto(a, "second", b:getsockname()))
      local big = eddy.Buffer(32)
      local n, from = loop:sock_recvfrom_into(b, big, 5)
      assert.equal(5, n)
      assert.same(a:getsockname(), from)
      assert.equal("hello", big:tostring(1, n))
      n = loop:sock_recvfrom_into(b, big)  -- the rest of the first datagram is gone
      assert.equal("second", big:tostring(1, n))
      assert.equal(3, loop:sock_sendto(b, "ack", from))
      local data, addr = loop:sock_recvfrom(a, 100)
      assert.equal("ack", data)
      assert.same(b:getsockname(), addr)
      a:close()
      b:close()
    end))
end)

describe("§5 futures", function()
  it("§5 a future completed with zero, one or several values (nils counted, trailing ones "
     .. "too) gives exactly those to result(), await(), run_until_complete and its done callbacks",
    with_loop(function(loop)
      for _, values in ipairs {table.pack(), table.pack(nil), table.pack(1, nil, 3, nil),
                               table.pack(false), table.pack("a", "b")} do
        local fut = loop:create_future()
        local from_callback
        fut:add_done_callback(function(f) from_callback = table.pack(f:result()) end)
        loop:call_soon(function() fut:set_result(table.unpack(values, 1, values.n)) end)
        assert.same(values, table.pack(loop:run_until_complete(fut)))
        assert.same(values, table.pack(fut:result()))
        assert.same(values, from_callback)
        assert.same(values, table.pack(loop:run_until_complete(function() return fut:await() end)))
        assert.same(values, table.pack(eddy.await(fut)))  -- top level: the loop runs
        assert.is_nil(fut:exception())
      end
    end))

  it("§5 InvalidStateError wherever asyncio raises it, and exception()'s three answers; a "
     .. "failure is raised as the very error object set", async(function(loop)
      local fut = loop:create_future()
      assert.equal(loop, fut:get_loop())
      expect_error(errors.InvalidStateError, fut.result, fut)
      expect_error(errors.InvalidStateError, fut.exception, fut)
      fut:set_result(1)
      expect_error(errors.InvalidStateError, fut.set_result, fut, 2)
      expect_error(errors.InvalidStateError, fut.set_exception, fut, errors.ValueError("late"))
      assert.equal(1, fut:result())
      assert.is_nil(fut:exception())
      assert.is_false(fut:cancel())

      local failed, e = loop:create_future(), errors.ValueError("x")
      failed:set_exception(e)
      assert.equal(e, failed:exception())
      local ok, got = pcall(failed.result, failed)
      assert.is_false(ok)
      assert.equal(e, got)
      expect_error(errors.InvalidStateError, failed.set_result, failed, 1)
      assert.is_false(failed:cancel())
      assert.equal(e, failed:exception())

      local cancelled = loop:create_future()
      assert.is_true(cancelled:cancel("why"))
      assert.is_true(cancelled:done())
      expect_error(errors.InvalidStateError, cancelled.set_result, cancelled, 1)
      expect_error(errors.InvalidStateError, cancelled.set_exception, cancelled, e)
      assert.equal("why", expect_error(errors.CancelledError, cancelled.exception, cancelled).message)
      assert.equal("why", expect_error(errors.CancelledError, cancelled.result, cancelled).message)

      local task = eddy.create_task(eddy.sleep, 0.01, "slept")
      assert.equal(loop, task:get_loop())
      expect_error(errors.InvalidStateError, task.result, task)
      expect_error(errors.InvalidStateError, task.exception, task)
      assert.equal("slept", task:await())
      assert.is_nil(task:exception())
    end))

  it("§5 done callbacks are scheduled with call_soon when the future completes: after "
     .. "callbacks already queued, before later ones; once scheduled, remove_done_callback "
     .. "finds nothing; it counts every registration it removes", async(function(loop)
      local log = {}
      local fut = loop:create_future()
      local function first(f) log[#log + 1] = "first " .. f:result() end
      local function twice() log[#log + 1] = "twice" end
      local function unwanted() log[#log + 1] = "unwanted" end
      fut:add_done_callback(first)
      fut:add_done_callback(unwanted)
      fut:add_done_callback(twice)
      fut:add_done_callback(unwanted)
      assert.equal(2, fut:remove_done_callback(unwanted))
      assert.equal(0, fut:remove_done_callback(unwanted))
      fut:add_done_callback(twice)
      loop:call_soon(function() log[#log + 1] = "queued before" end)
      fut:set_result("r")
      log[#log + 1] = "set_result returned"
      assert.equal(0, fut:remove_done_callback(twice))
      loop:call_soon(function() log[#log + 1] = "queued after" end)
      checks.turns(1)
      assert.same({"set_result returned", "queued before", "first r", "twice", "twice", "queued after"}, log)
      fut:add_done_callback(function() log[#log + 1] = "added when done" end)
      assert.equal("queued after", log[#log])
      checks.turns(1)
      assert.equal("added when done", log[#log])
    end))

  it("§5 a task waiting on a future resumes in the order its wake-up was added among the "
     .. "future's done callbacks: after those added before it awaited, before those added after",
    async(function(loop)
      local log = {}
      for _, outcome in ipairs {"result", "cancel"} do
        local fut = loop:create_future()
        fut:add_done_callback(function() log[#log + 1] = "before" end)
        local waiter = eddy.create_task(function()
          local ok = pcall(fut.await, fut)
          log[#log + 1] = "task " .. tostring(ok)
        end)
        checks.turns(1)  -- the task now waits on fut
        fut:add_done_callback(function() log[#log + 1] = "after" end)
        if outcome == "result" then fut:set_result(1) else fut:cancel() end
        net.wait(waiter)
      end
      assert.same({"before", "task true", "after", "before", "task false", "after"}, log)
    end))
end)

describe("§5 tasks", function()
  it("§5 cancel(msg) of a task waiting on a future: the future is cancelled with msg, the "
     .. "task's cleanup sees it, and a task awaiting that one gets it too and ends cancelled",
    async(function(loop)
      local inner = loop:create_future()
      local cleanup_saw
      local worker = eddy.create_task(function()
        local ok, err = pcall(inner.await, inner)
        assert(not ok)
        cleanup_saw = err
        error(err)
      end)
      local watcher = eddy.create_task(function() return worker:await() end)
      checks.turns(1)
      assert.is_true(worker:cancel("deploying"))
      assert.is_true(inner:cancelled())
      assert.equal("deploying", expect_error(errors.CancelledError, inner.exception, inner).message)
      local err = expect_error(errors.CancelledError, watcher.await, watcher)
      assert.equal("deploying", err.message)
      assert.is_true(errors.is(cleanup_saw, errors.CancelledError))
      assert.equal("deploying", cleanup_saw.message)
      assert.is_true(worker:cancelled())
      assert.is_true(watcher:cancelled())
      assert.equal("deploying", expect_error(errors.CancelledError, worker.result, worker).message)
      assert.same({1, 0}, {worker:cancelling(), watcher:cancelling()})
      assert.is_false(worker:cancel("again"))
    end))

  it("§5 cancelling() counts every cancel() request and uncancel() takes them back one by "
     .. "one, never below 0; a task that swallowed cancellations still gets TimeoutError from "
     .. "a later timeout scope", async(function(loop)
      local gate = loop:create_future()
      local seen = {}
      local t = eddy.create_task(function()
        local me = eddy.current_task()
        local ok, err = pcall(gate.await, gate)
        seen.first = {ok, err.message, me:cancelling()}
        local ok2, err2 = pcall(function()
          local _ <close> = eddy.timeout(0.01)
          eddy.sleep(5)
        end)
        seen.timeout = {ok2, errors.is(err2, errors.TimeoutError), me:cancelling()}
        seen.uncancel = {me:uncancel(), me:uncancel(), me:uncancel()}
        return "carried on"
      end)
      checks.turns(1)
      assert.is_true(t:cancel("one"))
      assert.is_true(t:cancel("two"))
      assert.equal(2, t:cancelling())
      assert.equal("carried on", net.wait(t))
      assert.same({false, "one", 2}, seen.first)
      assert.same({false, true, 2}, seen.timeout)
      assert.same({1, 0, 0}, seen.uncancel)
      assert.is_false(t:cancelled())
      assert.equal(0, t:cancelling())
    end))

  it("§5 a debugging dump: print_stack of every task all_tasks() lists shows where each "
     .. "waits; get_stack's limit keeps the newest frames; a failed task prints its "
     .. "traceback and error; a finished one has no stack", async(function(loop)
      local lock = eddy.Lock()
      lock:acquire()
      local function wait_for_lock()
        local guard = lock:acquire()
        return guard
      end
      local function handle_request() wait_for_lock() end
      local function idle() eddy.sleep(10) end
      local function explode() error(errors.ValueError("exploded")) end
      local request = eddy.create_task(function()
        handle_request()
        return "served"
      end)
      request:set_name("request")
      local sleeper = eddy.create_task(function() idle() end)
      sleeper:set_name("sleeper")
      local failed = eddy.create_task(function() explode() end)
      failed:set_name("failed")
      local finished = eddy.create_task(function() return 1 end)
      finished:set_name("finished")
      checks.turns(2)
      local out = {}
      local file = {write = function(self, ...)
        for _, s in ipairs {...} do out[#out + 1] = s end
        return self
      end}
      local dumped = {}
      for _, t in ipairs(eddy.all_tasks()) do
        if t ~= eddy.current_task() then
          dumped[#dumped + 1] = t:get_name()
          t:print_stack({file = file})
        end
      end
      table.sort(dumped)
      assert.same({"request", "sleeper"}, dumped)
      local text = table.concat(out)
      assert.matches("Stack for <Task pending name=request[^\n]*> %(most recent call last%):\n", text)
      assert.matches("Stack for <Task pending name=sleeper", text)
      assert.matches("line %d+, in handle_request\n[^\n]*line %d+, in wait_for_lock\n", text)
      assert.matches("line %d+, in idle\n", text)
      local frames = request:get_stack()
      local names = {}
      for _, f in ipairs(frames) do
        assert.is_string(f.source)
        assert.is_number(f.line)
        names[#names + 1] = f.name
      end
      local last_two = {frames[#frames - 1], frames[#frames]}
      assert.same(last_two, request:get_stack({limit = 2}))
      assert.matches("handle_request.*wait_for_lock", table.concat(names, " "))
      out = {}
      failed:print_stack({file = file})
      text = table.concat(out)
      assert.matches("^Traceback for <Task finished name=failed", text)
      assert.matches("line %d+, in explode\n", text)
      -- of a traceback, limit keeps the oldest frames (asyncio's get_stack)
      local trace = failed:get_stack()
      assert.is_true(#trace >= 2)
      assert.equal("explode", trace[#trace].name)
      assert.same({trace[1]}, failed:get_stack({limit = 1}))
      assert.matches("ValueError: exploded\n$", text)
      assert.same({}, finished:get_stack())
      out = {}
      finished:print_stack({file = file})
      assert.matches("^No stack for <Task finished name=finished", table.concat(out))
      assert.is_true(errors.is(failed:exception(), errors.ValueError))
      sleeper:cancel()
      lock:release()
      assert.equal("served", net.wait(request))
      lock:release()
    end))

  it("§5 a task error nobody retrieves is reported through the exception handler when the "
     .. "task is collected, with its traceback; one retrieved is not", function()
    local code, out = checks.run_script([[
local eddy = require "eddy"
local function parse(line) error(eddy.errors.ValueError("bad line: " .. line)) end
eddy.run(function()
  local lost = eddy.create_task(function() parse("x=") end)
  lost:set_name("parser")
  local kept = eddy.create_task(function() parse("kept") end)
  eddy.sleep(0)
  eddy.sleep(0)
  print("kept", pcall(kept.result, kept))
  lost, kept = nil, nil
  collectgarbage()
  collectgarbage()
  eddy.sleep(0)
  print("main done")
end)
]])
    assert.equal(0, code)
    assert.matches("kept\tfalse\tValueError: bad line: kept\n", out)
    local _, n = out:gsub("Task exception was never retrieved", "")
    assert.equal(1, n)
    assert.matches("Task exception was never retrieved\nfuture: <Task finished name=parser "
                   .. "exception=ValueError: bad line: x=[^\n]*>\nValueError: bad line: x=\n", out)
    assert.matches("ValueError: bad line: x=\n.-stack traceback:.-'parse'", out)
    assert.matches("main done", out)
  end)

  it("§5 request coalescing: two requests await one fetch task; cancelling one request "
     .. "cancels the fetch it awaits directly (asyncio's _fut_waiter), so the other fails too; "
     .. "awaiting through shield() keeps the fetch for the other", async(function(loop)
      local function fetch() eddy.sleep(0.02) return "payload" end
      for _, shielded in ipairs {false, true} do
        local shared = eddy.create_task(fetch)
        local function request()
          if shielded then return eddy.shield(shared):await() end
          return shared:await()
        end
        local r1, r2 = eddy.create_task(request), eddy.create_task(request)
        checks.turns(1)
        r1:cancel("client went away")
        expect_error(errors.CancelledError, net.wait, r1)
        if shielded then
          assert.equal("payload", net.wait(r2))
          assert.is_false(shared:cancelled())
        else
          local err = expect_error(errors.CancelledError, net.wait, r2)
          assert.equal("client went away", err.message)
          assert.is_true(shared:cancelled())
          assert.is_true(r2:cancelled())
        end
      end
    end))
end)

describe("§9 errors", function()
  -- The classes of API.md §9 with their ancestors, up to Error.
  local ANCESTORS = {
    OSError = {"Error"},
    ConnectionError = {"OSError", "Error"},
    SSLError = {"OSError", "Error"},
  }
  for _, name in ipairs {"ConnectionRefusedError", "ConnectionResetError",
                         "ConnectionAbortedError", "BrokenPipeError"} do
    ANCESTORS[name] = {"ConnectionError", "OSError", "Error"}
  end
  for _, name in ipairs {"DNSError", "FileNotFoundError", "PermissionError"} do
    ANCESTORS[name] = {"OSError", "Error"}
  end
  ANCESTORS.SSLCertVerificationError = {"SSLError", "OSError", "Error"}
  for _, name in ipairs {"CancelledError", "TimeoutError", "InvalidStateError", "RuntimeError",
                         "ValueError", "LookupError", "IncompleteReadError", "LimitOverrunError",
                         "SendfileNotAvailableError", "QueueEmpty", "QueueFull", "QueueShutDown",
                         "BrokenBarrierError", "ExceptionGroup"} do
    ANCESTORS[name] = {"Error"}
  end

  -- tostring(err) for an error of class 'name': "ClassName: message"; an
  -- ExceptionGroup's message ends as Python's str() does, with the count.
  local function shown(name, err)
    local text = name .. (err.message and (": " .. err.message) or "")
    if name ~= "ExceptionGroup" then return text end
    local n = #(err.exceptions or {})
    return ("%s (%d sub-exception%s)"):format(text, n, n == 1 and "" or "s")
  end

  -- Whether class 'name' is 'other' or below it.
  local function below(name, other)
    if name == other then return true end
    for _, a in ipairs(ANCESTORS[name] or {}) do
      if a == other then return true end
    end
    return false
  end

  it("§9 errors.is follows the documented tree exactly: every class against every other, "
     .. "on instances made by calling the class", function()
    local names = {"Error"}
    for name in pairs(ANCESTORS) do names[#names + 1] = name end
    for _, name in ipairs(names) do
      local e = errors[name]("m")
      assert.is_true(errors.isclass(errors[name]), name)
      assert.equal(shown(name, e), tostring(e))
      for _, other in ipairs(names) do
        assert.equal(below(name, other), errors.is(e, errors[other]),
                     ("errors.is(%s, %s)"):format(name, other))
      end
    end
  end)

  it("§9 the errors real operations raise: each of its documented class and every ancestor, "
     .. "no other branch, with its fields, and tostring 'ClassName: message'", async(function(loop)
    local caught = {}
    local function catch(name, fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok, name .. ": no error")
      caught[name] = err
    end
    -- the OSError branch
    local gone = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local gone_port = gone.sockets[1]:getsockname()[2]
    gone:close()
    gone:wait_closed()
    catch("ConnectionRefusedError", loop.create_connection, loop, function() return {} end,
          "127.0.0.1", gone_port)
    catch("FileNotFoundError", loop.create_unix_connection, loop, function() return {} end,
          "/nonexistent-dir/eddy.sock")
    local a, b = socket.socketpair()
    b:close()
    catch("BrokenPipeError", a.send, a, "x")
    a:close()
    local lsock = net.listening_socket()
    local client = socket.socket()
    client:setblocking(false)
    local accepting = eddy.create_task(loop.sock_accept, loop, lsock)
    loop:sock_connect(client, lsock:getsockname())
    local conn = net.wait(accepting)
    conn:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("ii", 1, 0))
    conn:close()  -- SO_LINGER 0: a reset
    catch("ConnectionResetError", loop.sock_recv, loop, client, 10)
    client:close()
    lsock:close()
    catch("DNSError", loop.getaddrinfo, loop, "localhost", 80, {flags = socket.AI_NUMERICHOST})
    local tls_dir = require("support.tls").dir()
    local server_ctx = eddy.ssl.SSLContext(eddy.ssl.PROTOCOL_TLS_SERVER)
    server_ctx:load_cert_chain(tls_dir .. "/server.pem", tls_dir .. "/server.key")
    local tls_srv = eddy.start_server(function(_, w2) w2:close() end, "127.0.0.1", 0, {ssl = server_ctx})
    -- the test CA is not in the system store that the default context trusts
    catch("SSLCertVerificationError", eddy.open_connection, "127.0.0.1",
          tls_srv.sockets[1]:getsockname()[2],
          {ssl = eddy.ssl.create_default_context(), server_hostname = "localhost"})
    tls_srv:close()
    local mute = loop:create_server(function() return {} end, "127.0.0.1", 0)
    catch("ConnectionAbortedError", loop.create_connection, loop, function() return {} end,
          "127.0.0.1", mute.sockets[1]:getsockname()[2],
          {ssl = eddy.ssl.create_default_context(), server_hostname = "localhost",
           ssl_handshake_timeout = 0.05})
    mute:close()
    mute:close_clients()
    -- the Error branch
    local fut = loop:create_future()
    catch("InvalidStateError", fut.result, fut)
    fut:cancel("no longer needed")
    catch("CancelledError", fut.result, fut)
    catch("TimeoutError", eddy.wait_for, function() eddy.sleep(5) end, 0.01)
    catch("RuntimeError", loop.close, loop)
    catch("ValueError", loop.call_later, loop, 0 / 0, print)
    catch("LookupError", eddy.ContextVar("unset").get, eddy.ContextVar("unset"))
    local q = eddy.Queue(1)
    catch("QueueEmpty", q.get_nowait, q)
    q:put_nowait(1)
    catch("QueueFull", q.put_nowait, q, 2)
    q:shutdown()
    catch("QueueShutDown", q.put_nowait, q, 3)
    local barrier = eddy.Barrier(2)
    barrier:abort()
    catch("BrokenBarrierError", barrier.wait, barrier)
    local srv = eddy.start_server(function(_, w)
      w:write("abc")
      w:close()
    end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    catch("IncompleteReadError", r.readexactly, r, 10)
    w:close()
    srv:close()
    srv = eddy.start_server(function(_, w2) w2:write("abcdefghij") end, "127.0.0.1", 0)
    r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2], {limit = 4})
    catch("LimitOverrunError", r.readuntil, r, "\n")
    local file = io.popen("true")
    catch("SendfileNotAvailableError", loop.sock_sendfile, loop, w:get_extra_info("socket"), file,
          0, nil, {fallback = false})
    file:close()
    w:close()
    srv:close()
    srv:close_clients()
    srv:wait_closed()
    tls_srv:wait_closed()
    mute:wait_closed()
    local failures = {}
    catch("ExceptionGroup", function()
      local tg <close> = eddy.TaskGroup()
      for i = 1, 2 do
        tg:create_task(function()
          local e = errors.ValueError("child " .. i)
          failures[i] = e
          error(e)
        end)
      end
    end)

    local fields = {
      ConnectionRefusedError = {errno = 111, code = "ECONNREFUSED"},
      FileNotFoundError = {errno = 2, code = "ENOENT"},
      BrokenPipeError = {errno = 32, code = "EPIPE"},
      ConnectionResetError = {errno = 104, code = "ECONNRESET"},
      DNSError = {errno = -2, code = "EAI_NONAME"},
      CancelledError = {message = "no longer needed"},
      IncompleteReadError = {partial = "abc", expected = 10},
      LimitOverrunError = {consumed = 10},
      SSLCertVerificationError = {reason = "CERTIFICATE_VERIFY_FAILED"},
    }
    local count = 0
    for name, err in pairs(caught) do
      count = count + 1
      assert.is_true(errors.is(err, errors[name]), name .. ": got " .. tostring(err))
      for other in pairs(ANCESTORS) do
        if not below(name, other) then
          assert.is_false(errors.is(err, errors[other]), name .. " is no " .. other)
        end
      end
      assert.equal(shown(name, err), tostring(err))
      for k, v in pairs(fields[name] or {}) do assert.equal(v, err[k], name .. "." .. k) end
      if err.errno ~= nil then assert.is_string(err.strerror, name) end
    end
    assert.equal(21, count)
    assert.is_string(caught.SSLCertVerificationError.verify_message)
    local group = caught.ExceptionGroup
    assert.equal(2, #group.exceptions)
    for i = 1, 2 do
      assert.equal(failures[i], group.exceptions[i])
      assert.matches("stack traceback", group.exceptions[i].traceback)
    end
  end))

  it("§9/§5 an error crossing three layers of tasks stays the same object: its class, message "
     .. "and the traceback of where it was raised; tostring is only 'ClassName: message'; a "
     .. "class raised becomes an instance; a string error stays a string", async(function(loop)
      local function validate(record)
        if record.kind == "class" then error(errors.LookupError) end
        if record.kind == "string" then error("plain failure", 0) end
        error(errors.ValueError("bad record " .. record.id))
      end
      local function worker(record) validate(record) end
      local function supervisor(record)
        local child = eddy.create_task(worker, record)
        return child:await()
      end
      local outer = eddy.create_task(supervisor, {id = 7})
      local ok, err = pcall(outer.await, outer)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.ValueError))
      assert.equal("ValueError: bad record 7", tostring(err))
      assert.equal(err, outer:exception())
      assert.matches("in upvalue 'validate'", err.traceback)
      assert.is_nil(err.traceback:find("supervisor", 1, true))

      local from_class = eddy.create_task(supervisor, {kind = "class"})
      ok, err = pcall(from_class.await, from_class)
      assert.is_true(errors.is(err, errors.LookupError))
      assert.is_false(rawequal(err, errors.LookupError))
      assert.equal("LookupError", tostring(err))
      assert.matches("'validate'", err.traceback)

      local from_string = eddy.create_task(supervisor, {kind = "string"})
      ok, err = pcall(from_string.await, from_string)
      assert.equal("plain failure", err)
      assert.is_false(errors.is(err, errors.Error))
    end))

  it("§9/§3 a class an exception handler raises (Python's `raise Cls`) is reported as an "
     .. "instance with its traceback; the class itself is left as it was, so later instances "
     .. "inherit no traceback", function()
    local code, out = checks.run_script([[
local eddy = require "eddy"
local errors = eddy.errors
local loop = eddy.new_event_loop()
local function lookup() error(errors.LookupError) end
loop:set_exception_handler(function() lookup() end)
loop:call_exception_handler({message = "first"})
print("class keeps no traceback:", rawget(errors.LookupError, "traceback") == nil,
      errors.LookupError("fresh").traceback == nil)
loop:close()
]])
    assert.equal(0, code)
    assert.matches("Unhandled error in exception handler\ncontext: {message = \"first\"}\n"
                   .. "LookupError\nstack traceback:.-in upvalue 'lookup'", out)
    assert.matches("class keeps no traceback:\ttrue\ttrue\n", out)
  end)
end)
