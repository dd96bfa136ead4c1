-- Black-box cases, fifth pass: written from /work/shared/API.md alone (and
-- asyncio's documented behaviour, by API.md §1's translation rules) as a
-- user porting real asyncio programs would: a chat server, a rate-limited
-- crawler, a queue pipeline, a TaskGroup supervisor, timeouts, UDP with
-- retries, a UNIX server, subprocess pipelines, context variables, async
-- generators, coordination primitives and Protocol servers, each with the
-- error paths a user hits.  Every description cites the API.md section it
-- checks.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local tmp = require "support.tmp"
local expect_error = checks.expect_error
local bounded = checks.bounded

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("§8/§4 a TCP chat server on streams", function()
  it("§8/§4 per-client tasks broadcast each line to the others; a client that leaves "
     .. "mid-broadcast is dropped and the rest get every line; close, close_clients and "
     .. "wait_closed end it, each client sees EOF and every handler returns", async(function()
    local writers, ended = {}, {}
    local srv = eddy.start_server(function(r, w)
      local name = r:readline():gsub("\n$", "")
      writers[name] = w
      local ok, err = pcall(function()
        for line in r:lines() do
          for other, ow in pairs(writers) do
            if other ~= name then
              ow:write(name .. ": " .. line .. "\n")
              -- a peer gone mid-write: drain raises a ConnectionError; drop it
              local sent, lost = pcall(ow.drain, ow)
              if not sent then
                assert.is_true(errors.is(lost, errors.ConnectionError), tostring(lost))
                writers[other] = nil
              end
            end
          end
        end
      end)
      -- a client gone mid-write may also end its own reader with that
      -- write's error (asyncio's fatal error reaches the StreamReader)
      assert.is_true(ok or errors.is(err, errors.ConnectionError), tostring(err))
      writers[name] = nil
      ended[#ended + 1] = name
      w:close()
    end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local clients = {}
    for _, name in ipairs {"ann", "bob", "cy"} do
      local r, w = eddy.open_connection("127.0.0.1", port)
      w:write(name .. "\n")
      clients[name] = {r = r, w = w}
    end
    net.wait_until(function() return count(writers) == 3 end)
    clients.ann.w:write("hi all\n")
    assert.equal("ann: hi all\n", bounded(clients.bob.r.readline, clients.bob.r))
    assert.equal("ann: hi all\n", bounded(clients.cy.r.readline, clients.cy.r))
    -- cy leaves abruptly (abort): broadcasts to it fail, the others go on
    clients.cy.w.transport:abort()
    for i = 1, 20 do clients.bob.w:write(string.rep("x", 1000) .. i .. "\n") end
    for i = 1, 20 do
      assert.equal("bob: " .. string.rep("x", 1000) .. i .. "\n",
                   bounded(clients.ann.r.readline, clients.ann.r))
    end
    net.wait_until(function() return writers.cy == nil end)
    assert.same({"cy"}, ended)
    srv:close()
    assert.is_false(srv:is_serving())
    srv:close_clients()
    bounded(srv.wait_closed, srv)
    for _, name in ipairs {"ann", "bob"} do
      assert.equal("", bounded(clients[name].r.read, clients[name].r))
      assert.is_true(clients[name].r:at_eof())
      clients[name].w:close()
      bounded(clients[name].w.wait_closed, clients[name].w)
    end
    net.wait_until(function() return #ended == 3 end)
    -- a closed server refuses new connections
    expect_error(errors.ConnectionRefusedError, eddy.open_connection, "127.0.0.1", port)
  end))

  it("§8 bad input and closed objects: start_server and open_connection argument errors "
     .. "name the function; write after write_eof raises RuntimeError; after close() a "
     .. "write is dropped and drain raises ConnectionResetError, as asyncio's",
    async(function()
    checks.argerror(function() eddy.start_server(42, "127.0.0.1", 0) end, 1, "start_server")
    checks.argerror(function() eddy.open_connection("127.0.0.1", 1, {limit = "big"}) end,
                    3, "open_connection")
    local srv <close> = eddy.start_server(function(r, w)
      w:write(r:read())
      w:close()
    end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local r, w = eddy.open_connection("127.0.0.1", port)
    w:write("ping")
    assert.is_true(w:can_write_eof())
    w:write_eof()
    checks.raises(function() w:write("late") end,
                  {errors.RuntimeError, "Cannot call write() after write_eof()"})
    assert.equal("ping", bounded(r.read, r, -1))
    w:close()
    bounded(w.wait_closed, w)
    local _, w2 = eddy.open_connection("127.0.0.1", port)
    w2:close()
    assert.is_true(w2:is_closing())
    w2:write("after close")  -- dropped (§9), never raised
    expect_error(errors.ConnectionResetError, w2.drain, w2)
    bounded(w2.wait_closed, w2)
  end))
  it("§4/§8 graceful shutdown with a request in flight: after close() wait_closed waits "
     .. "for the connection (a 50 ms wait_for times out), close_clients ends it (the client "
     .. "reads EOF); the handler's late answer then fails in drain with ConnectionResetError",
    async(function()
    local log = {}
    local handler_done = eddy.Event()
    local srv = eddy.start_server(function(r, w)
      r:readline()
      log[#log + 1] = "request"
      local ok, err = pcall(function()
        eddy.sleep(0.3)
        w:write("response\n")
        w:drain()
      end)
      log[#log + 1] = ok and "sent" or tostring(err)
      w:close()
      handler_done:set()
    end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    w:write("GET\n")
    net.wait_until(function() return #log == 1 end)
    srv:close()
    expect_error(errors.TimeoutError, eddy.wait_for, function() srv:wait_closed() end, 0.05)
    srv:close_clients()
    bounded(srv.wait_closed, srv)
    assert.equal("", bounded(r.read, r))
    bounded(handler_done.wait, handler_done)
    assert.same({"request", "ConnectionResetError: Connection lost"}, log)
    w:close()
  end))
end)

-- A tiny HTTP/1.0 server on streams: GET /sleep/SECONDS/ID answers
-- "page ID" after that delay, GET /missing answers 404.  'stats' counts the
-- requests being served now (now), the most at once (peak) and the
-- connections whose client went away before the answer (gone).
local function http_server(stats)
  return eddy.start_server(function(r, w)
    local line = r:readline()
    repeat local h = r:readline() until h == "\r\n" or h == ""
    stats.now = stats.now + 1
    stats.peak = math.max(stats.peak, stats.now)
    local delay, id = line:match("^GET /sleep/([%d.]+)/(%w+) HTTP/1%.0\r\n$")
    if not delay then
      w:write("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    elseif pcall(eddy.wait_for, function() return r:read() end, tonumber(delay)) then
      stats.gone = stats.gone + 1  -- EOF before the delay was up: the client left
    else
      local body = "page " .. id
      w:write("HTTP/1.0 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    end
    stats.now = stats.now - 1
    w:close()
  end, "127.0.0.1", 0)
end

-- fetch(port, path) -> body: one HTTP/1.0 GET over open_connection; a
-- status other than 200 raises ValueError("HTTP <status>").  The
-- connection is closed however the call ends (a timeout cancels it).
local function fetch(port, path)
  local r, w = eddy.open_connection("127.0.0.1", port)
  local _ <close> = setmetatable({}, {__close = function() w:close() end})
  w:write("GET " .. path .. " HTTP/1.0\r\nHost: localhost\r\n\r\n")
  local status = r:readline():match("^HTTP/1%.0 (%d+)")
  local length
  for h in r:lines() do
    if h == "\r" then break end
    length = length or tonumber(h:match("^Content%-Length: (%d+)"))
  end
  if status ~= "200" then error(errors.ValueError("HTTP " .. status)) end
  return r:readexactly(length)
end

describe("§6/§8 a rate-limited crawler", function()
  it("§6/§8 Semaphore(3) around wait_for(fetch, 0.5), gathered with return_exceptions: "
     .. "results in request order, TimeoutError for the slow pages, ValueError for a 404; "
     .. "never more than 3 requests at once; the timed-out requests' connections are closed",
    async(function()
    local stats = {now = 0, peak = 0, gone = 0}
    local srv <close> = http_server(stats)
    local port = srv.sockets[1]:getsockname()[2]
    local sem = eddy.Semaphore(3)
    local active, peak = 0, 0
    local function crawl(path)
      return function()
        local _ <close> = sem:acquire()
        active = active + 1
        peak = math.max(peak, active)
        local _ <close> = setmetatable({}, {__close = function() active = active - 1 end})
        -- 0.5 s: a loaded machine may take well over 0.1 s for a fast
        -- page; the slow ones take 1 s, so they still time out
        return eddy.wait_for(function() return fetch(port, path) end, 0.5)
      end
    end
    local paths = {"/sleep/0/a", "/sleep/0.01/b", "/sleep/1/c", "/missing", "/sleep/0.02/d",
                   "/sleep/1/e", "/sleep/0/f", "/sleep/0.01/g", "/sleep/1/h", "/sleep/0/i"}
    local jobs = {}
    for i, p in ipairs(paths) do jobs[i] = crawl(p) end
    jobs[#jobs + 1] = {return_exceptions = true}
    local results = table.pack(eddy.gather(table.unpack(jobs)))
    assert.equal(#paths, results.n)
    for i, p in ipairs(paths) do
      local res = results[i]
      if p:match("^/sleep/1/") then
        assert.is_true(errors.is(res, errors.TimeoutError), p .. ": " .. tostring(res))
      elseif p == "/missing" then
        assert.is_true(errors.is(res, errors.ValueError), tostring(res))
        assert.equal("ValueError: HTTP 404", tostring(res))
      else
        assert.equal("page " .. p:match("(%w+)$"), res)
      end
    end
    assert.equal(3, peak)
    assert.equal(0, active)
    assert.is_false(sem:locked())
    net.wait_until(function() return stats.now == 0 end)
    assert.equal(3, stats.gone)
    assert.is_true(stats.peak <= 3)
  end))

  it("§6 bad input: gather of a non-awaitable and wait_for with a bad timeout are argument "
     .. "errors; Semaphore(-1) is ValueError; a BoundedSemaphore released too often is "
     .. "ValueError; gather outside a task is RuntimeError naming it", async(function(loop)
    checks.raises(function() eddy.gather(42) end, "bad argument #1 to 'gather'")
    checks.raises(function() eddy.gather(function() end, "x") end, "bad argument #2 to 'gather'")
    checks.raises(function() eddy.wait_for(function() end, "soon") end,
                  "bad argument #2 to 'wait_for'")
    expect_error(errors.ValueError, eddy.Semaphore, -1)
    local b = eddy.BoundedSemaphore(1)
    b:acquire()
    b:release()
    expect_error(errors.ValueError, b.release, b)
    local empty = eddy.Semaphore(0)
    local errs = checks.from_callback(loop, {
      {"gather", eddy.gather, function() end},
      {"acquire", empty.acquire, empty},
    })
    assert.matches("^RuntimeError: gather%(%) cannot suspend here", errs.gather)
    assert.matches("^RuntimeError: acquire%(%) cannot suspend here", errs.acquire)
  end))
end)

describe("§8 a producer/consumer pipeline on a Queue", function()
  it("§8 Queue(2): the producer waits while it is full, three consumers task_done each "
     .. "item, join returns once all 30 are processed; shutdown() lets them drain what was "
     .. "put before it, then get raises QueueShutDown and so does put", async(function()
    local q = eddy.Queue(2)
    assert.equal(2, q.maxsize)
    local processed, waits = {}, 0
    local function consumer(id)
      local ok, err = pcall(function()
        while true do
          local item = q:get()
          eddy.sleep(0.001)
          processed[#processed + 1] = item
          q:task_done()
        end
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.QueueShutDown), tostring(err))
      return id
    end
    local consumers = {}
    for i = 1, 3 do consumers[i] = eddy.create_task(consumer, i) end
    for i = 1, 30 do
      if q:full() then
        waits = waits + 1
        expect_error(errors.QueueFull, q.put_nowait, q, i)
      end
      q:put(i)
      assert.is_true(q:qsize() <= 2)
    end
    assert.is_true(waits > 0)
    bounded(q.join, q)
    assert.equal(30, #processed)
    table.sort(processed)
    for i = 1, 30 do assert.equal(i, processed[i]) end
    -- two more, then a graceful shutdown: they are still consumed
    q:put("last1")
    q:put("last2")
    q:shutdown()
    expect_error(errors.QueueShutDown, q.put, q, "late")
    expect_error(errors.QueueShutDown, q.put_nowait, q, "late")
    local ids = {bounded(eddy.gather, consumers[1], consumers[2], consumers[3])}
    assert.same({1, 2, 3}, ids)
    assert.equal(32, #processed)
    assert.is_true(q:empty())
    expect_error(errors.QueueShutDown, q.get_nowait, q)
  end))

  it("§8 shutdown(true) mid-flight: queued items are dropped, a blocked put raises "
     .. "QueueShutDown, join waits only for the items consumers hold, whose task_done ends "
     .. "it; one task_done too many is ValueError", async(function()
    local q = eddy.Queue(2)
    local gate, held = eddy.Event(), {}
    local function consumer()
      local ok, err = pcall(function()
        while true do
          held[#held + 1] = q:get()
          gate:wait()
          q:task_done()
        end
      end)
      assert.is_true(not ok and errors.is(err, errors.QueueShutDown), tostring(err))
      return "shut down"
    end
    local c1, c2 = eddy.create_task(consumer), eddy.create_task(consumer)
    for i = 1, 4 do q:put(i) end
    assert.same({1, 2}, held)
    assert.is_true(q:full())
    local putter = eddy.create_task(q.put, q, 99)
    local joiner = eddy.create_task(q.join, q)
    checks.turns(2)
    assert.is_false(putter:done())
    q:shutdown(true)
    checks.turns(1)
    assert.equal(0, q:qsize())
    assert.is_false(joiner:done())
    assert.is_true(putter:done())
    expect_error(errors.QueueShutDown, putter.result, putter)
    expect_error(errors.QueueShutDown, q.get_nowait, q)
    gate:set()
    bounded(joiner.await, joiner)
    assert.same({"shut down", "shut down"}, {bounded(eddy.gather, c1, c2)})
    assert.same({1, 2}, held)
    checks.raises(function() q:task_done() end, errors.ValueError)
  end))

  it("§8/§5 a consumer cancelled while it waits in get loses no item: the next put goes to "
     .. "the other consumer; LifoQueue and PriorityQueue keep their orders", async(function()
    local q = eddy.Queue()
    local got = {}
    local function consumer(name)
      while true do
        local item = q:get()
        got[#got + 1] = name .. ":" .. item
      end
    end
    local a = eddy.create_task(consumer, "a")
    checks.turns(1)
    local b = eddy.create_task(consumer, "b")
    checks.turns(1)
    assert.is_true(a:cancel("stop a"))
    checks.turns(1)
    assert.is_true(a:cancelled())
    local err = expect_error(errors.CancelledError, a.result, a)
    assert.equal("stop a", err.message)
    q:put_nowait("x")
    q:put_nowait("y")
    checks.turns(3)
    assert.same({"b:x", "b:y"}, got)
    b:cancel()
    checks.turns(1)
    assert.is_true(b:cancelled())
    assert.equal(0, q:qsize())
    -- the other orders: last in first out, smallest first
    local lifo, prio = eddy.LifoQueue(), eddy.PriorityQueue()
    for _, v in ipairs {3, 1, 2} do lifo:put_nowait(v) prio:put_nowait(v) end
    assert.same({2, 1, 3}, {lifo:get(), lifo:get(), lifo:get()})
    assert.same({1, 2, 3}, {prio:get(), prio:get(), prio:get()})
    expect_error(errors.QueueEmpty, lifo.get_nowait, lifo)
  end))
end)

describe("§6/§9 a TaskGroup supervisor", function()
  local function fail(msg, delay)
    eddy.sleep(delay)
    error(errors.ValueError(msg))
  end
  -- slow(log, name): sleeps until cancelled; its cleanup suspends, is logged
  local function slow(log, name)
    local ok, err = pcall(eddy.sleep, 10)
    assert.is_false(ok)
    log[#log + 1] = name .. " cancelled"
    eddy.sleep(0.01)
    log[#log + 1] = name .. " cleaned"
    error(err)
  end

  it("§6/§9 one child fails: its siblings are cancelled and their cleanups (which suspend) "
     .. "finish; the group's body is cancelled too; the ExceptionGroup holds the failure and "
     .. "a sibling's cleanup error, in order, and the task is not left cancelling",
    async(function()
    local log = {}
    local ok, eg = pcall(function()
      local tg <close> = eddy.TaskGroup()
      tg:create_task(fail, "a", 0.01)
      tg:create_task(slow, log, "b")
      tg:create_task(function()
        local cancelled = not pcall(eddy.sleep, 10)
        assert.is_true(cancelled)
        error(errors.LookupError("cleanup"))
      end)
      eddy.sleep(10)
      log[#log + 1] = "body not cancelled"
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(eg, errors.ExceptionGroup), tostring(eg))
    assert.equal("ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)",
                 tostring(eg))
    assert.equal(2, #eg.exceptions)
    assert.is_true(errors.is(eg.exceptions[1], errors.ValueError))
    assert.equal("a", eg.exceptions[1].message)
    assert.is_true(errors.is(eg.exceptions[2], errors.LookupError))
    assert.equal("cleanup", eg.exceptions[2].message)
    assert.same({"b cancelled", "b cleaned"}, log)
    assert.equal(0, eddy.current_task():cancelling())
    eddy.sleep(0)  -- and the task can still suspend
  end))

  it("§6/§9 nested TaskGroups: an inner child's failure cancels the inner siblings, the "
     .. "inner group's ExceptionGroup fails its outer child, which cancels the outer "
     .. "siblings; the outer ExceptionGroup nests the inner one; a finished group refuses "
     .. "create_task with RuntimeError", async(function()
    local log = {}
    local outer
    local ok, eg = pcall(function()
      local tg <close> = eddy.TaskGroup()
      outer = tg
      tg:create_task(function()
        local tg2 <close> = eddy.TaskGroup()
        tg2:create_task(fail, "deep", 0.01)
        tg2:create_task(slow, log, "inner sib")
      end)
      tg:create_task(slow, log, "outer sib")
    end)
    assert.is_false(ok)
    assert.equal("ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)", tostring(eg))
    local inner = eg.exceptions[1]
    assert.is_true(errors.is(inner, errors.ExceptionGroup), tostring(inner))
    assert.equal(1, #inner.exceptions)
    assert.is_true(errors.is(inner.exceptions[1], errors.ValueError))
    assert.equal("deep", inner.exceptions[1].message)
    assert.same({"inner sib cancelled", "inner sib cleaned", "outer sib cancelled",
                 "outer sib cleaned"}, log)
    checks.raises(function() outer:create_task(function() end) end,
                  {errors.RuntimeError, "is finished"})
    checks.argerror(function() eddy.TaskGroup():create_task(42) end, 1, "create_task")
  end))

  it("§6/§9 the group's body raises: its error is the ExceptionGroup's only member (the "
     .. "children are cancelled before they fail); the task owning a group cancelled from "
     .. "outside ends with CancelledError, not an ExceptionGroup, its children cancelled",
    async(function()
    local child
    local ok, eg = pcall(function()
      local tg <close> = eddy.TaskGroup()
      tg:create_task(eddy.sleep, 1)
      child = tg:create_task(fail, "child", 0.01)
      error(errors.LookupError("body"))
    end)
    assert.is_false(ok)
    assert.equal("ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)", tostring(eg))
    assert.equal("LookupError: body", tostring(eg.exceptions[1]))
    assert.is_true(child:cancelled())
    local kids = {}
    local parent = eddy.create_task(function()
      local tg <close> = eddy.TaskGroup()
      kids[1] = tg:create_task(eddy.sleep, 1)
      kids[2] = tg:create_task(eddy.sleep, 2)
    end)
    eddy.sleep(0.01)
    parent:cancel()
    expect_error(errors.CancelledError, function() return parent:await() end)
    assert.is_true(parent:cancelled())
    assert.is_true(kids[1]:cancelled() and kids[2]:cancelled())
  end))

  it("§5/§1 graceful shutdown of a worker whose <close> cleanup suspends: the first cancel "
     .. "lets the cleanup run (it sees no cancellation), a second cancel interrupts it, the "
     .. "task ends cancelled with its cancelling() count at 2", async(function()
    local log = {}
    local started = eddy.Event()
    local worker = eddy.create_task(function()
      local _ <close> = setmetatable({}, {__close = function(_, err)
        log[#log + 1] = "cleanup after " .. tostring(err)
        local ok, e = pcall(eddy.sleep, 0.05)
        log[#log + 1] = ok and "cleanup done" or "cleanup cancelled"
        if not ok then error(e, 0) end
      end})
      started:set()
      eddy.sleep(10)
    end)
    started:wait()
    worker:cancel("first")
    checks.turns(2)
    assert.same({"cleanup after CancelledError: first"}, log)
    assert.is_false(worker:done())
    worker:cancel("second")
    local err = expect_error(errors.CancelledError, function() return worker:await() end)
    assert.equal("second", err.message)
    assert.same({"cleanup after CancelledError: first", "cleanup cancelled"}, log)
    assert.is_true(worker:cancelled())
    assert.equal(2, worker:cancelling())
  end))
end)

describe("§6 timeout scopes", function()
  it("§6 a timeout rescheduled from inside its scope: a later when() lets the body finish "
     .. "(not expired); rescheduling a finished scope is RuntimeError; timeout(nil) never "
     .. "expires and its when() is nil", async(function(loop)
    local t
    do
      local scope <close> = eddy.timeout(0.3)
      t = scope
      eddy.sleep(0.01)
      local later = loop:time() + 2
      scope:reschedule(later)
      assert.equal(later, scope:when())
      eddy.sleep(0.4)  -- past the first deadline
    end
    assert.is_false(t:expired())
    checks.raises(function() t:reschedule(nil) end,
                  {errors.RuntimeError, "Cannot change state of finished Timeout"})
    do
      local forever <close> = eddy.timeout(nil)
      assert.is_nil(forever:when())
      eddy.sleep(0.01)
      assert.is_false(forever:expired())
    end
  end))

  it("§6 nested timeouts where the outer expires first: the inner scope sees "
     .. "CancelledError and is not expired, the outer raises TimeoutError and is; "
     .. "timeout_at(loop:time() + d) keeps that when() and never fires early", async(function(loop)
    local outer_t, inner_t, inner_saw
    local ok, err = pcall(function()
      local outer <close> = eddy.timeout(0.03)
      outer_t = outer
      local ok2, err2 = pcall(function()
        local inner <close> = eddy.timeout(1)
        inner_t = inner
        eddy.sleep(10)
      end)
      inner_saw = err2
      assert.is_false(ok2)
      error(err2)
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.TimeoutError), tostring(err))
    assert.is_true(errors.is(inner_saw, errors.CancelledError), tostring(inner_saw))
    assert.is_true(outer_t:expired())
    assert.is_false(inner_t:expired())
    assert.equal(0, eddy.current_task():cancelling())
    local when = loop:time() + 0.02
    ok, err = pcall(function()
      local at <close> = eddy.timeout_at(when)
      assert.equal(when, at:when())
      eddy.sleep(1)
    end)
    assert.is_true(errors.is(err, errors.TimeoutError), tostring(err))
    assert.is_true(loop:time() >= when)
  end))

  it("§6 a body that swallows the expiry's CancelledError ends normally: no TimeoutError, "
     .. "expired() is true and the task is not left cancelling; timeout(-1) around a body "
     .. "that never suspends raises nothing, one that suspends gets TimeoutError", async(function()
    local swallowed = false
    local t
    do
      local scope <close> = eddy.timeout(0.01)
      t = scope
      local ok, err = pcall(eddy.sleep, 1)
      swallowed = not ok and errors.is(err, errors.CancelledError)
    end
    assert.is_true(swallowed)
    assert.is_true(t:expired())
    assert.equal(0, eddy.current_task():cancelling())
    local ran = false
    do
      local _ <close> = eddy.timeout(-1)
      ran = true
    end
    assert.is_true(ran)
    local reached = false
    local ok, err = pcall(function()
      local _ <close> = eddy.timeout(-1)
      eddy.sleep(0)
      reached = true
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.TimeoutError), tostring(err))
    assert.is_false(reached)
    checks.raises(function() eddy.timeout("soon") end, "bad argument #1 to 'timeout'")
  end))
end)

describe("§3/§7 UDP request/response with retries", function()
  it("§3/§7 a client retries each request on a 100 ms wait_for until the flaky server (which "
     .. "answers the third copy) replies; peername is the server's address; sendto to another "
     .. "address is ValueError; after close sendto is silently dropped; bad data is an "
     .. "argument error", async(function(loop)
    local Server = {}
    function Server:connection_made(t) self.t, self.seen = t, {} end
    function Server:datagram_received(data, addr)
      local n = (self.seen[data] or 0) + 1
      self.seen[data] = n
      if n >= 3 then self.t:sendto("re:" .. data, addr) end
    end
    local st, sp = loop:create_datagram_endpoint(function() return setmetatable({}, {__index = Server}) end,
                                                 {"127.0.0.1", 0})
    local saddr = st:get_extra_info("sockname")
    assert.equal("127.0.0.1", saddr[1])
    local waiting
    local client = {
      datagram_received = function(_, data, addr)
        if waiting and not waiting:done() then waiting:set_result(data, addr) end
      end,
    }
    local ct = loop:create_datagram_endpoint(function() return client end, nil, saddr)
    assert.same(saddr, ct:get_extra_info("peername"))
    local function request(msg)
      for attempt = 1, 5 do
        waiting = loop:create_future()
        ct:sendto(msg)
        local ok, data, addr = pcall(eddy.wait_for, waiting, 0.1)
        if ok then return data, addr, attempt end
        assert.is_true(errors.is(data, errors.TimeoutError), tostring(data))
      end
      error("no answer")
    end
    for _, msg in ipairs {"one", "two"} do
      local data, addr, attempts = request(msg)
      assert.equal("re:" .. msg, data)
      assert.same(saddr, addr)
      assert.equal(3, attempts)
    end
    assert.same({one = 3, two = 3}, sp.seen)
    checks.raises(function() ct:sendto("x", {"127.0.0.1", 1}) end,
                  {errors.ValueError, "Invalid address"})
    checks.raises(function() ct:sendto(42) end, "bad argument #1 to 'sendto'")
    ct:close()
    assert.is_true(ct:is_closing())
    ct:sendto("after close")  -- dropped (§9)
    st:close()
    checks.turns(2)
    assert.same({one = 3, two = 3}, sp.seen)
  end))

  it("§7 a connected UDP endpoint whose peer port is closed: each send's ICMP refusal comes "
     .. "to error_received as ConnectionRefusedError and the endpoint stays open; an unconnected "
     .. "one's sendto there is not (Linux reports ICMP errors to connected sockets only, as asyncio "
     .. "shows); close gives connection_lost(nil)",
    async(function(loop)
    local socket = eddy.socket
    local s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s:bind({"127.0.0.1", 0})
    local dead = {"127.0.0.1", s:getsockname()[2]}
    s:close()
    local log = {}
    local function proto()
      return {
        error_received = function(_, err)
          assert.is_true(errors.is(err, errors.ConnectionRefusedError), tostring(err))
          assert.equal("ECONNREFUSED", err.code)
          log[#log + 1] = "refused"
        end,
        connection_lost = function(_, err) log[#log + 1] = "lost " .. tostring(err) end,
      }
    end
    local t = loop:create_datagram_endpoint(proto, nil, dead)
    for _, msg in ipairs {"x", "y"} do
      t:sendto(msg)
      net.wait_until(function() return #log == (msg == "x" and 1 or 2) end)
    end
    assert.is_false(t:is_closing())
    local t2 = loop:create_datagram_endpoint(proto, {"127.0.0.1", 0})
    t2:sendto("z", dead)
    checks.turns(5)
    t:close()
    t2:close()
    net.wait_until(function() return #log == 4 end)
    assert.same({"refused", "refused", "lost nil", "lost nil"}, log)
  end))
end)

describe("§8 a UNIX socket server", function()
  it("§8 start_unix_server and open_unix_connection: a line echo with sockname and peername "
     .. "as path strings; close() removes the socket file (asyncio 3.13, docs/servers.md), so a "
     .. "new connection there is FileNotFoundError; bad input is an argument error", async(function()
    local path = tmp.path(".sock")
    local served = 0
    local srv = eddy.start_unix_server(function(r, w)
      served = served + 1
      assert.equal(path, w:get_extra_info("sockname"))
      for line in r:lines() do w:write(line:upper() .. "\n") end
      w:close()
    end, path)
    assert.is_true(srv:is_serving())
    local r, w = eddy.open_unix_connection(path)
    assert.equal(path, w:get_extra_info("peername"))
    w:writelines({"abc\n", "de", "f\n"})
    w:drain()
    assert.equal("ABC\n", bounded(r.readline, r))
    assert.equal("DEF\n", bounded(r.readline, r))
    w:write_eof()
    assert.equal("", bounded(r.read, r))
    w:close()
    w:wait_closed()
    srv:close()
    bounded(srv.wait_closed, srv)
    assert.equal(1, served)
    assert.is_nil(io.open(path))
    expect_error(errors.FileNotFoundError, eddy.open_unix_connection, path)
    checks.raises(function() eddy.open_unix_connection(42) end,
                  "bad argument #1 to 'open_unix_connection'")
  end))
end)

describe("§10 subprocess pipelines", function()
  local PIPE = eddy.subprocess.PIPE

  it("§10 a two-stage pipeline: printf's stdout is a descriptor given as sort's stdin "
     .. "(a socketpair, as os.pipe() in Python); then the same by copying one child's "
     .. "stdout stream into the other's stdin; returncodes are 0", async(function()
    local a, b = eddy.socket.socketpair()
    local p1 = eddy.create_subprocess_exec("printf", "pear\\napple\\nfig\\n", {stdout = a:fileno()})
    local p2 = eddy.create_subprocess_exec("sort", {stdin = b:fileno(), stdout = PIPE})
    a:close()
    b:close()
    assert.is_nil(p1.stdout)
    assert.is_nil(p2.stdin)
    local out, err = bounded(p2.communicate, p2)
    assert.equal("apple\nfig\npear\n", out)
    assert.is_nil(err)
    assert.equal(0, bounded(p1.wait, p1))
    assert.equal(0, p2.returncode)
    -- streams: copy p3's output into p4 chunk by chunk, with drain
    local p3 = eddy.create_subprocess_exec("seq", "20000", {stdout = PIPE})
    local p4 = eddy.create_subprocess_shell("sort -n | tail -n 2", {stdin = PIPE, stdout = PIPE})
    local copied = 0
    while true do
      local chunk = bounded(p3.stdout.read, p3.stdout, 4096)
      if chunk == "" then break end
      copied = copied + #chunk
      p4.stdin:write(chunk)
      p4.stdin:drain()
    end
    p4.stdin:close()
    assert.equal("19999\n20000\n", bounded(p4.stdout.read, p4.stdout))
    assert.equal(0, bounded(p4.wait, p4))
    assert.equal(0, bounded(p3.wait, p3))
    local expected = 0
    for i = 1, 20000 do expected = expected + #tostring(i) + 1 end
    assert.equal(expected, copied)
  end))

  it("§10 communicate(input) larger than a pipe's buffer with stdout and stderr piped: all of "
     .. "it back, stderr apart, the exit status; a second communicate gives empty strings; "
     .. "communicate to a killed child drops its input", async(function()
    local p = eddy.create_subprocess_shell("cat; echo err >&2; exit 3",
                                           {stdin = PIPE, stdout = PIPE, stderr = PIPE})
    local input = string.rep("0123456789", 100000)
    local out, err = bounded(p.communicate, p, input)
    assert.equal(#input, #out)
    assert.is_true(out == input)
    assert.equal("err\n", err)
    assert.equal(3, p.returncode)
    assert.same({"", ""}, {bounded(p.communicate, p)})
    local cat = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE})
    cat:kill()
    assert.equal(-9, bounded(cat.wait, cat))
    local late_out, late_err = bounded(cat.communicate, cat, "late")
    assert.equal("", late_out)
    assert.is_nil(late_err)
  end))

  it("§10 terminate and kill with wait: -15 and -9 for every waiter; a signal to a child that "
     .. "has exited is ProcessLookupError; a missing program is FileNotFoundError; wait from "
     .. "a plain callback is RuntimeError", async(function(loop)
    local p = eddy.create_subprocess_exec("sleep", "10")
    assert.is_nil(p.returncode)
    assert.is_true(p.pid > 0)
    p:terminate()
    assert.same({-15, -15}, {bounded(eddy.gather, function() return p:wait() end,
                                                 function() return p:wait() end)})
    assert.equal(-15, p.returncode)
    expect_error(errors.ProcessLookupError, p.send_signal, p, "SIGTERM")
    expect_error(errors.ProcessLookupError, p.kill, p)
    local q = eddy.create_subprocess_exec("sleep", "10")
    q:kill()
    assert.equal(-9, bounded(q.wait, q))
    local errs = checks.from_callback(loop, {{"wait", q.wait, q}})
    assert.matches("RuntimeError", errs.wait)
    expect_error(errors.FileNotFoundError, eddy.create_subprocess_exec, "/nonexistent/prog")
    checks.raises(function() eddy.create_subprocess_exec("true", {stdout = "pipe"}) end,
                  "bad argument")
  end))

  it("§10 stdin of a child: to one that has exited, drain raises ConnectionResetError every "
     .. "time; to a slow reader, drain waits until the pipe takes the data; communicate with a "
     .. "child that exits without reading its input returns its output and status",
    async(function(loop)
    local p = eddy.create_subprocess_exec("true", {stdin = PIPE})
    assert.equal(0, bounded(p.wait, p))
    p.stdin:write(string.rep("x", 100000))
    expect_error(errors.ConnectionResetError, p.stdin.drain, p.stdin)
    expect_error(errors.ConnectionResetError, p.stdin.drain, p.stdin)
    p.stdin:close()
    p = eddy.create_subprocess_exec("sh", "-c", "sleep 0.2; wc -c", {stdin = PIPE, stdout = PIPE})
    local t0 = loop:time()
    p.stdin:write(string.rep("y", 1000000))
    assert.is_true(p.stdin.transport:get_write_buffer_size() > 0)
    bounded(p.stdin.drain, p.stdin)
    assert.is_true(loop:time() - t0 >= 0.15)
    p.stdin:close()
    assert.equal("1000000", (bounded(p.stdout.read, p.stdout):match("%d+")))
    assert.equal(0, bounded(p.wait, p))
    p = eddy.create_subprocess_exec("sh", "-c", "echo hi; exit 2", {stdin = PIPE, stdout = PIPE})
    local out, err = bounded(p.communicate, p, string.rep("z", 1000000))
    assert.equal("hi\n", out)
    assert.is_nil(err)
    assert.equal(2, p.returncode)
  end))

  it("§10 env replaces the child's environment, cwd sets its directory; a cwd that does not "
     .. "exist is FileNotFoundError naming that directory (as Python's subprocess), not the "
     .. "program; an env value that is no string is an argument error", async(function()
    local p = eddy.create_subprocess_exec("env", {stdout = PIPE, env = {FOO = "bar", N = "5"}})
    local out = bounded(p.communicate, p)
    assert.equal("FOO=bar\nN=5\n", out)
    p = eddy.create_subprocess_shell("pwd; echo \"$FOO\"", {stdout = PIPE, env = {FOO = "x y"},
                                                            cwd = "/usr"})
    assert.equal("/usr\nx y\n", (bounded(p.communicate, p)))
    local missing = tmp.path(".dir")
    local err = expect_error(errors.FileNotFoundError, eddy.create_subprocess_exec, "true",
                             {cwd = missing})
    assert.matches(missing, tostring(err), 1, true)
    assert.equal("ENOENT", err.code)
    err = expect_error(errors.FileNotFoundError, eddy.create_subprocess_exec, "/no/such/prog",
                       {cwd = "/tmp"})
    assert.matches("/no/such/prog", tostring(err), 1, true)
    checks.raises(function() eddy.create_subprocess_exec("true", {env = {N = 5}}) end,
                  "bad argument #2 to 'create_subprocess_exec'")
  end))
  it("§10/§8/§6 a process pool: eight shell jobs, at most three at once under a Semaphore, "
     .. "each communicate bounded by wait_for; the ones that time out are killed and waited "
     .. "(-9), the others give their output and exit status, in job order", async(function(loop)
    local sem = eddy.Semaphore(3)
    local running, peak = 0, 0
    local function run(cmd, timeout)
      local _ <close> = sem:acquire()
      running = running + 1
      peak = math.max(peak, running)
      local _ <close> = setmetatable({}, {__close = function() running = running - 1 end})
      local p = eddy.create_subprocess_shell(cmd, {stdout = PIPE, stderr = PIPE})
      local ok, out = pcall(eddy.wait_for, function() return p:communicate() end, timeout)
      if not ok then
        assert.is_true(errors.is(out, errors.TimeoutError), tostring(out))
        p:kill()
        return "timeout " .. p:wait()
      end
      return out:gsub("\n", "") .. " " .. p.returncode
    end
    local jobs = {}
    for i = 1, 8 do
      local cmd = i % 3 == 0 and "exec sleep 5" or ("echo job" .. i .. "; exit " .. i % 2)
      jobs[i] = function() return run(cmd, 0.5) end
    end
    local t0 = loop:time()
    assert.same({"job1 1", "job2 0", "timeout -9", "job4 0", "job5 1", "timeout -9", "job7 1",
                 "job8 0"}, {bounded(eddy.gather, table.unpack(jobs))})
    assert.equal(3, peak)
    assert.equal(0, running)
    assert.is_true(loop:time() - t0 < 3)
  end))
end)

describe("§8 context variables through a program", function()
  it("§8 a request id flows into create_task children, call_soon callbacks (as it was when "
     .. "scheduled), gathered functions and the code after to_thread and run_in_executor; "
     .. "nothing set in a child leaks back; get() with no value and no default is LookupError",
    async(function(loop)
    local req = eddy.ContextVar("req", "none")
    local bare = eddy.ContextVar("bare")
    expect_error(errors.LookupError, bare.get, bare)
    assert.equal("fallback", bare:get("fallback"))
    local seen = {}
    local function handle(id)
      req:set(id)
      local child = eddy.create_task(function()
        seen[#seen + 1] = "child " .. req:get()
        req:set("child's own")
        eddy.sleep(0)
        return req:get()
      end)
      loop:call_soon(function() seen[#seen + 1] = "soon " .. req:get() end)
      req:set(id .. "+")   -- after scheduling: the callback keeps the old value
      assert.equal("child's own", child:await())
      local a, b = eddy.gather(function() return req:get() end, function()
        req:set("gathered")
        return req:get()
      end)
      seen[#seen + 1] = "gather " .. a .. " " .. b
      local n = eddy.to_thread(function(x) return x * 2 end, 21)
      seen[#seen + 1] = "to_thread " .. n .. " " .. req:get()
      local fut = loop:run_in_executor(nil, string.upper, "abc")
      fut:add_done_callback(function() seen[#seen + 1] = "done cb " .. req:get() end)
      req:set(id .. "++")
      local upper = fut:await()  -- (not inside seen[#seen + 1] = ...: it suspends)
      seen[#seen + 1] = "executor " .. upper .. " " .. req:get()
      checks.turns(1)
      return req:get()
    end
    local results = {eddy.gather(function() return handle("r1") end,
                                 function() return handle("r2") end)}
    assert.same({"r1++", "r2++"}, results)
    assert.equal("none", req:get())
    local mine = {}
    for _, s in ipairs(seen) do
      if s:find("r1") then mine[#mine + 1] = s end
    end
    assert.same({"child r1", "soon r1", "gather r1+ gathered", "to_thread 42 r1+",
                 "done cb r1+", "executor ABC r1++"}, mine)
  end))
end)

describe("§6/§1 async iteration", function()
  it("§6/§1 a paginated reader as an async generator over a real server: early break "
     .. "closes it at once (its <close> cleanup suspends and finishes before the for ends); "
     .. "an error in the for body closes it too and propagates; a finished generator's "
     .. "anext gives nothing", async(function()
    local srv <close> = eddy.start_server(function(r, w)
      for line in r:lines() do
        local page = tonumber(line:match("^page (%d+)$"))
        w:write(string.format("item%d-1 item%d-2\n", page, page))
      end
      w:close()
    end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local log = {}
    local items = eddy.asyncgen(function(yield, pages)
      local r, w = eddy.open_connection("127.0.0.1", port)
      local _ <close> = setmetatable({}, {__close = function()
        w:close()
        w:wait_closed()  -- cleanup that suspends
        log[#log + 1] = "closed"
      end})
      for page = 1, pages do
        w:write("page " .. page .. "\n")
        for item in r:readline():gmatch("%S+") do yield(item) end
      end
    end)
    local got = {}
    for item in items(10) do
      got[#got + 1] = item
      if #got == 3 then break end
    end
    assert.same({"item1-1", "item1-2", "item2-1"}, got)
    assert.same({"closed"}, log)
    local ok, err = pcall(function()
      for item in items(10) do
        if item == "item2-2" then error(errors.ValueError("bad item")) end
      end
    end)
    assert.is_false(ok)
    assert.equal("ValueError: bad item", tostring(err))
    assert.same({"closed", "closed"}, log)
    local all = {}
    local gen = items(2)
    for item in gen, nil, nil, gen do all[#all + 1] = item end
    assert.equal(4, #all)
    assert.same({"closed", "closed", "closed"}, log)
    assert.equal(0, select("#", gen:anext()))
  end))

  it("§6 asend, athrow and aclose on a generator: sent values come back from yield; athrow "
     .. "raises at the yield (a class becomes an instance); aclose runs the cleanup; a "
     .. "second method call while one is suspended is RuntimeError", async(function()
    local log = {}
    local running_avg = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function(_, e)
        eddy.sleep(0)
        log[#log + 1] = "cleanup " .. tostring(e)
      end})
      local total, n = 0, 0
      local avg
      local ok, err = pcall(function()
        while true do
          local x = yield(avg)
          eddy.sleep(0.01)
          total, n = total + x, n + 1
          avg = total / n
        end
      end)
      log[#log + 1] = tostring(err)
      if errors.is(err, errors.ValueError) then
        yield("recovered")
        eddy.sleep(0)
      end
      error(err, 0)
    end)
    local gen = running_avg()
    assert.is_nil(gen:anext())          -- runs to the first yield(nil)
    assert.equal(10, gen:asend(10))
    assert.equal(15, gen:asend(20))
    local busy = eddy.create_task(gen.asend, gen, 30)
    checks.turns(1)
    expect_error(errors.RuntimeError, gen.anext, gen)
    assert.equal(20, busy:await())
    assert.equal("recovered", gen:athrow(errors.ValueError))
    assert.same({"ValueError"}, log)
    gen:aclose()
    assert.equal(2, #log)
    assert.matches("^cleanup GeneratorExit", log[2])
    assert.equal(0, select("#", gen:anext()))
    checks.raises(function() gen:athrow(nil) end, "bad argument")
  end))

  it("§6 a plain coroutine.wrap generator inside a task calls suspending functions: its "
     .. "yields reach the consumer, its sleeps reach the loop, other tasks run meanwhile",
    async(function()
    local ticks = 0
    local ticker = eddy.create_task(function()
      while true do eddy.sleep(0.001) ticks = ticks + 1 end
    end)
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        eddy.sleep(0.01)
        coroutine.yield(i, eddy.to_thread(function(x) return x * x end, i))
      end
    end)
    local got = {}
    for i, sq in gen do got[#got + 1] = i .. "^2=" .. sq end
    assert.same({"1^2=1", "2^2=4", "3^2=9"}, got)
    assert.is_true(ticks >= 2, "ticks " .. ticks)
    ticker:cancel()
  end))

  it("§6/§2 finalization: a generator dropped at a yield is closed once collected (its "
     .. "cleanup suspends, sees GeneratorExit); one left open when main returns is closed by "
     .. "eddy.run's shutdown_asyncgens before run returns main's results", function()
    local log = {}
    local counter = eddy.asyncgen(function(yield, name)
      local _ <close> = setmetatable({}, {__close = function(_, e)
        eddy.sleep(0.01)
        log[#log + 1] = name .. " closed by " .. tostring(e)
      end})
      for i = 1, math.huge do yield(i) end
    end)
    local kept
    local results = table.pack(eddy.run(function()
      do
        local g = counter("dropped")
        assert.equal(1, g:anext())
      end
      collectgarbage()
      collectgarbage()
      eddy.wait_for(function()
        while #log == 0 do eddy.sleep(0.005) end
      end, 5)
      assert.same({"dropped closed by GeneratorExit"}, log)
      kept = counter("left open")
      assert.equal(1, kept:anext())
      assert.equal(2, kept:anext())
      return "main done", nil, 2
    end))
    assert.same({n = 3, "main done", nil, 2}, results)
    assert.same({"dropped closed by GeneratorExit", "left open closed by GeneratorExit"}, log)
  end)
end)

describe("§8 coordination between tasks", function()
  it("§8 a start line and phases: workers wait on an Event, meet at a Barrier each phase "
     .. "(indices 0..n-1, one each), report through a Condition the coordinator waits on "
     .. "with wait_for(predicate); FIFO wake-up order", async(function()
    local go, barrier, cond = eddy.Event(), eddy.Barrier(3), eddy.Condition()
    assert.equal(3, barrier.parties)
    local done_phases, order, indices = 0, {}, {}
    local function worker(id)
      go:wait()
      order[#order + 1] = id
      for phase = 1, 2 do
        eddy.sleep(0.001 * id)
        local index = barrier:wait()
        indices[phase] = indices[phase] or {}
        indices[phase][#indices[phase] + 1] = index
        local _ <close> = cond:acquire()
        done_phases = done_phases + 1
        cond:notify_all()
      end
    end
    local tasks = {}
    for id = 1, 3 do tasks[id] = eddy.create_task(worker, id) end
    checks.turns(1)
    assert.equal(0, #order)
    assert.is_false(go:is_set())
    go:set()
    do
      local _ <close> = cond:acquire()
      assert.is_true(cond:locked())
      assert.is_true(bounded(cond.wait_for, cond, function() return done_phases == 6 end))
      assert.is_true(cond:locked())
    end
    assert.is_false(cond:locked())
    assert.same({1, 2, 3}, order)
    for phase = 1, 2 do
      table.sort(indices[phase])
      assert.same({0, 1, 2}, indices[phase])
    end
    bounded(eddy.gather, tasks[1], tasks[2], tasks[3])
    assert.equal(0, barrier.n_waiting)
    assert.is_false(barrier.broken)
  end))

  it("§8 a Barrier aborted with a waiter: the waiter and later waits raise "
     .. "BrokenBarrierError until reset; reset with a waiter breaks that wait; misuse of "
     .. "Condition, Lock and Barrier raises asyncio's errors", async(function(loop)
    local b = eddy.Barrier(2)
    local t = eddy.create_task(b.wait, b)
    checks.turns(1)
    assert.equal(1, b.n_waiting)
    b:abort()
    assert.is_true(b.broken)
    expect_error(errors.BrokenBarrierError, function() return t:await() end)
    expect_error(errors.BrokenBarrierError, b.wait, b)
    b:reset()
    assert.is_false(b.broken)
    t = eddy.create_task(b.wait, b)
    checks.turns(1)
    b:reset()
    expect_error(errors.BrokenBarrierError, function() return t:await() end)
    assert.is_false(b.broken)
    local cond = eddy.Condition()
    checks.raises(function() cond:notify() end, {errors.RuntimeError, "un-acquired lock"})
    checks.raises(function() cond:wait() end, {errors.RuntimeError, "un-acquired lock"})
    checks.raises(function() eddy.Lock():release() end, {errors.RuntimeError, "not acquired"})
    expect_error(errors.ValueError, eddy.Barrier, 0)
    local ev = eddy.Event()
    expect_error(errors.TimeoutError, eddy.wait_for, function() return ev:wait() end, 0.01)
    local lock = eddy.Lock()
    local shared = eddy.Condition(lock)
    do
      local _ <close> = lock:acquire()
      assert.is_true(shared:locked())
    end
    assert.is_false(shared:locked())
    local errs = checks.from_callback(loop, {{"wait", ev.wait, ev}})
    assert.matches("RuntimeError", errs.wait)
  end))
end)

describe("§7 Protocol-based servers", function()
  it("§7 flow control under a slow reader: a server producer writes while resume_writing "
     .. "allows (pause_writing when the buffer passes high, resume_writing at or below low, "
     .. "alternating), to a BufferedProtocol client that pauses reading and decodes "
     .. "length-prefixed frames through a 16-byte Buffer; every frame arrives intact",
    async(function(loop)
    local FRAMES, SIZE = 400, 4000
    local flow = {}
    local done_sending = loop:create_future()
    local Producer = {}
    Producer.__index = Producer
    function Producer:connection_made(t)
      self.t = t
      -- small kernel buffers, so that the user-space buffer must grow
      local sock = t:get_extra_info("socket")
      sock:setsockopt(eddy.socket.SOL_SOCKET, eddy.socket.SO_SNDBUF, 4096)
      t:set_write_buffer_limits(65536, 16384)
      assert.same({16384, 65536}, {t:get_write_buffer_limits()})
      self.can_write = loop:create_future()
      self.can_write:set_result(true)
      eddy.create_task(function()
        for i = 1, FRAMES do
          self.can_write:await()
          local body = string.rep(string.char(i % 256), SIZE)
          t:write(string.pack(">I4", #body) .. body)
        end
        t:close()
        done_sending:set_result(true)
      end)
    end
    function Producer:pause_writing()
      flow[#flow + 1] = "pause"
      assert.is_true(self.t:get_write_buffer_size() > 65536)
      self.can_write = loop:create_future()
    end
    function Producer:resume_writing()
      flow[#flow + 1] = "resume"
      assert.is_true(self.t:get_write_buffer_size() <= 16384)
      self.can_write:set_result(true)
    end
    local srv <close> = loop:create_server(function() return setmetatable({}, Producer) end,
                                           "127.0.0.1", 0)
    local frames, pending, bad = 0, "", 0
    local lost = loop:create_future()
    local client = {buf = eddy.Buffer(16)}
    function client:connection_made(t)
      t:pause_reading()
      assert.is_false(t:is_reading())
      loop:call_later(0.1, t.resume_reading, t)
    end
    function client:get_buffer(sizehint)
      assert.is_true(sizehint == -1 or sizehint > 0)
      return self.buf
    end
    function client:buffer_updated(n)
      assert.is_true(n >= 1 and n <= 16)
      pending = pending .. self.buf:tostring(1, n)
      while #pending >= 4 do
        local len = string.unpack(">I4", pending)
        if #pending < 4 + len then break end
        frames = frames + 1
        if pending:sub(5, 4 + len) ~= string.rep(string.char(frames % 256), len) then
          bad = bad + 1
        end
        pending = pending:sub(5 + len)
      end
    end
    function client:connection_lost(err) lost:set_result(err or "clean") end
    -- a small receive buffer, set before connecting (Linux stalls a window
    -- shrunk later), given to create_connection as sock=
    local socket = eddy.socket
    local sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock:setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock:setblocking(false)
    loop:sock_connect(sock, {"127.0.0.1", srv.sockets[1]:getsockname()[2]})
    loop:create_connection(function() return client end, nil, nil, {sock = sock})
    eddy.wait_for(done_sending, 10)
    assert.equal("clean", eddy.wait_for(lost, 10))
    assert.equal(FRAMES, frames)
    assert.equal(0, bad)
    assert.equal("", pending)
    assert.is_true(#flow >= 2, "flow: " .. table.concat(flow, " "))
    for i, e in ipairs(flow) do assert.equal(i % 2 == 1 and "pause" or "resume", e) end
  end))

  it("§7 bad input to the write-buffer limits: high below low is ValueError, a negative "
     .. "or non-number limit too (asyncio) or an argument error; writelines of a non-list is "
     .. "an argument error", async(function(loop)
    local srv <close>, t = net.pair(loop)
    checks.raises(function() t:set_write_buffer_limits(10, 20) end, errors.ValueError)
    checks.raises(function() t:set_write_buffer_limits(-1) end, errors.ValueError)
    checks.raises(function() t:set_write_buffer_limits("x") end, "bad argument #1")
    checks.raises(function() t:writelines("abc") end, "bad argument #1 to 'writelines'")
    t:set_write_buffer_limits(100)
    assert.same({25, 100}, {t:get_write_buffer_limits()})
    t:set_write_buffer_limits(nil, 8)  -- high defaults to 4 * low, as asyncio's
    assert.same({8, 32}, {t:get_write_buffer_limits()})
    t:close()
  end))

  it("§7 half-close: a server whose eof_received returns true answers after the client's "
     .. "EOF from a task, then closes; the client gets data, eof_received, connection_lost(nil); "
     .. "one returning nil is closed by its transport once its reply is written", async(function(loop)
    local function server(keep)
      local p = {log = {}}
      function p:connection_made(t) self.t = t end
      function p:data_received(d) self.req = (self.req or "") .. d end
      function p:eof_received()
        self.log[#self.log + 1] = "eof"
        if keep then
          eddy.create_task(function()
            eddy.sleep(0.02)
            assert.is_false(self.t:is_closing())
            self.t:write("late answer to " .. self.req)
            self.t:write_eof()
            checks.raises(function() self.t:write("x") end,
                          {errors.RuntimeError, "after write_eof"})
            self.t:close()
          end)
          return true
        end
        self.t:write("answer to " .. self.req)
      end
      function p:connection_lost(err) self.log[#self.log + 1] = "lost " .. tostring(err) end
      return p
    end
    for _, keep in ipairs {true, false} do
      local sp
      local srv <close> = loop:create_server(function() sp = server(keep) return sp end,
                                             "127.0.0.1", 0)
      local rec = net.recorder(loop)
      local t = loop:create_connection(function() return rec end, "127.0.0.1",
                                       srv.sockets[1]:getsockname()[2])
      assert.is_true(t:can_write_eof())
      t:write("q1")
      t:write_eof()
      net.wait(rec.lost_fut)
      assert.equal((keep and "late answer to " or "answer to ") .. "q1", rec:data())
      assert.same({"made", "data", "eof", "lost"}, rec.events)
      assert.is_nil(rec.err)
      net.wait_until(function() return #sp.log == 2 end)
      assert.same({"eof", "lost nil"}, sp.log)
    end
  end))
end)

describe("§8 stream readers at their limits", function()
  it("§8 a line reader with limit=32: an overlong line is ValueError and is dropped (the next "
     .. "readline gets the following line), readuntil past the limit is LimitOverrunError "
     .. "with consumed and leaves the data, readexactly at EOF is IncompleteReadError with "
     .. "partial and expected; an empty separator is ValueError", async(function()
    local srv <close> = eddy.start_server(function(_, w)
      w:write("short\n" .. string.rep("x", 100) .. "\nafter\n" .. string.rep("y", 50)
              .. "END" .. "tail" .. string.rep("z", 10))
      w:drain()
      w:close()
    end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2], {limit = 32})
    assert.equal("short\n", bounded(r.readline, r))
    local err = expect_error(errors.ValueError, bounded, r.readline, r)
    assert.matches("longer than limit", tostring(err))
    assert.equal("after\n", bounded(r.readline, r))
    err = expect_error(errors.LimitOverrunError, bounded, r.readuntil, r, "END")
    assert.equal(50, err.consumed)
    assert.equal("yyyyy", bounded(r.readexactly, r, 5))
    err = expect_error(errors.IncompleteReadError, bounded, r.readexactly, r, 100)
    assert.equal(string.rep("y", 45) .. "ENDtail" .. string.rep("z", 10), err.partial)
    assert.equal(100, err.expected)
    assert.is_true(r:at_eof())
    expect_error(errors.ValueError, r.readuntil, r, "")
    checks.raises(function() r:readexactly(-1) end, errors.ValueError)
    w:close()
    w:wait_closed()
  end))
end)

describe("§8 wake-up races in the primitives", function()
  it("§8 a waiter cancelled in the very turn it was woken passes the wake-up on (asyncio): "
     .. "the queued item, the released lock and the semaphore's slot go to the next waiter; a "
     .. "Condition waiter cancelled while the lock is held elsewhere ends holding it again",
    async(function()
    local q, got = eddy.Queue(), {}
    local function consume(name) got[#got + 1] = name .. ":" .. q:get() end
    local a, b = eddy.create_task(consume, "a"), eddy.create_task(consume, "b")
    checks.turns(1)
    q:put_nowait(1)
    a:cancel()
    checks.turns(3)
    assert.same({"b:1"}, got)
    assert.is_true(a:cancelled())
    assert.equal(0, q:qsize())
    assert.is_true(b:done())

    local lock, order = eddy.Lock(), {}
    lock:acquire()
    local function locker(name)
      local _ <close> = lock:acquire()
      order[#order + 1] = name
    end
    a, b = eddy.create_task(locker, "a"), eddy.create_task(locker, "b")
    checks.turns(1)
    lock:release()
    a:cancel()
    checks.turns(3)
    assert.same({"b"}, order)
    assert.is_true(a:cancelled())
    assert.is_false(lock:locked())

    local sem, entered = eddy.Semaphore(0), {}
    local function worker(name)
      local _ <close> = sem:acquire()
      entered[#entered + 1] = name
      eddy.sleep(0.001)
    end
    local ts = {}
    for i, name in ipairs {"a", "b", "c"} do ts[i] = eddy.create_task(worker, name) end
    checks.turns(1)
    sem:release()
    ts[1]:cancel()
    bounded(eddy.gather, ts[2], ts[3])
    assert.same({"b", "c"}, entered)
    assert.is_false(sem:locked())

    local cond, seen = eddy.Condition(), {}
    local waiter = eddy.create_task(function()
      local _ <close> = cond:acquire()
      local ok, err = pcall(cond.wait, cond)
      seen.ok, seen.locked = ok, cond:locked()
      error(err)
    end)
    checks.turns(1)
    do
      local _ <close> = cond:acquire()
      waiter:cancel()
      eddy.sleep(0.01)
      assert.is_false(waiter:done())  -- it waits for the lock first
    end
    expect_error(errors.CancelledError, function() return waiter:await() end)
    assert.same({ok = false, locked = true}, seen)
    assert.is_false(cond:locked())
  end))

  it("§8 no slot or notification is lost to cancellation: forty jobs under Semaphore(2), "
     .. "many timed out by wait_for while waiting or holding it, leave both slots free; "
     .. "notify(1) to a waiter cancelled in the same turn wakes the next one instead",
    async(function()
    local sem = eddy.Semaphore(2)
    local function job(i)
      local _ <close> = sem:acquire()
      eddy.sleep(0.005 * (i % 3))
    end
    local jobs = {}
    -- Timeouts of 0, 4 and 8 ms, and for every fourth job 5 s: under
    -- 12 ms, any job could time out on a loaded machine (all forty did)
    for i = 0, 39 do
      local limit = i % 4 == 3 and 5 or 0.004 * (i % 4)
      jobs[#jobs + 1] = function() return eddy.wait_for(function() job(i) end, limit) end
    end
    jobs[#jobs + 1] = {return_exceptions = true}
    local res = table.pack(bounded(eddy.gather, table.unpack(jobs)))
    local timeouts = 0
    for i = 1, res.n do
      if res[i] ~= nil then
        assert.is_true(errors.is(res[i], errors.TimeoutError), tostring(res[i]))
        timeouts = timeouts + 1
      end
    end
    assert.is_true(timeouts > 10 and timeouts < 40, "timeouts " .. timeouts)
    assert.is_false(sem:locked())
    local g1, g2 = sem:acquire(), sem:acquire()
    assert.is_true(g1 and g2 and sem:locked())
    sem:release()
    sem:release()

    local cond, woke = eddy.Condition(), {}
    local function waiter(name)
      local _ <close> = cond:acquire()
      cond:wait()
      woke[#woke + 1] = name
    end
    local a, b = eddy.create_task(waiter, "a"), eddy.create_task(waiter, "b")
    checks.turns(1)
    do
      local _ <close> = cond:acquire()
      cond:notify(1)
    end
    a:cancel()
    bounded(b.await, b)
    assert.same({"b"}, woke)
    assert.is_true(a:cancelled())
  end))
end)

describe("§4/§6 fan-out and serving", function()
  it("§4 serve_forever on a server made with start_serving=false starts it; a second "
     .. "serve_forever is RuntimeError; cancelling the first closes the server (no sockets); "
     .. "serve_forever on a closed server is RuntimeError", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0,
                                   {start_serving = false})
    assert.is_false(srv:is_serving())
    local forever = eddy.create_task(srv.serve_forever, srv)
    checks.turns(1)
    assert.is_true(srv:is_serving())
    checks.raises(function() srv:serve_forever() end,
                  {errors.RuntimeError, "already being awaited on serve_forever()"})
    forever:cancel()
    expect_error(errors.CancelledError, function() return forever:await() end)
    assert.is_false(srv:is_serving())
    assert.same({}, srv.sockets)
    bounded(srv.wait_closed, srv)
    checks.raises(function() srv:serve_forever() end, {errors.RuntimeError, "is closed"})
  end))

  it("§6 a fan-out: wait(FIRST_EXCEPTION) returns at the first failure, wait(timeout=0) "
     .. "polls, as_completed's timeout raises TimeoutError from the iteration after the fast "
     .. "ones, gather's first error leaves the others running, shield lets its inner task "
     .. "finish when the waiter is cancelled; wait({}) and a bad return_when are ValueError",
    async(function(loop)
    local function boom(delay)
      eddy.sleep(delay)
      error(errors.ValueError("boom"))
    end
    -- the delays far apart: a loaded machine can stall tens of ms between
    -- two tasks' first steps, or between the two waits
    local ts = {eddy.create_task(eddy.sleep, 0.5), eddy.create_task(boom, 0.01),
                eddy.create_task(eddy.sleep, 1)}
    local done, pending = eddy.wait(ts, {return_when = eddy.FIRST_EXCEPTION})
    assert.same({ts[2]}, done)
    assert.equal(2, #pending)
    done, pending = eddy.wait(ts, {timeout = 0})
    assert.equal(1, #done)
    assert.equal(2, #pending)
    for _, t in ipairs(ts) do t:cancel() end
    local fs = {}
    for i, d in ipairs {0.2, 0.01, 3} do fs[i] = eddy.create_task(eddy.sleep, d, d) end
    local got = {}
    local ok, err = pcall(function()
      for f in eddy.as_completed(fs, {timeout = 1}) do got[#got + 1] = f:await() end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.TimeoutError), tostring(err))
    assert.same({0.01, 0.2}, got)
    assert.is_false(fs[3]:done())
    fs[3]:cancel()
    local other = eddy.create_task(eddy.sleep, 0.5, "other")  -- not done in a stall
    expect_error(errors.ValueError, eddy.gather, function() boom(0) end, other)
    assert.is_false(other:done())
    assert.equal("other", other:await())
    local inner = eddy.create_task(eddy.sleep, 0.02, "inner")
    local w = eddy.create_task(function() return eddy.shield(inner):await() end)
    checks.turns(1)
    w:cancel()
    expect_error(errors.CancelledError, function() return w:await() end)
    assert.is_false(inner:cancelled())
    assert.equal("inner", inner:await())
    checks.raises(function() eddy.wait({}) end, {errors.ValueError, "empty"})
    checks.raises(function() eddy.wait({loop:create_future()}, {return_when = "x"}) end,
                  {errors.ValueError, "Invalid return_when value"})
  end))
  it("§8 pipelined HTTP/1.1 requests arriving in pieces that split the separators: "
     .. "readuntil(\"\\r\\n\\r\\n\") finds each head across chunk boundaries, readexactly "
     .. "takes a body split over two writes; at EOF readuntil raises IncompleteReadError with "
     .. "partial \"\" and expected nil", async(function()
    local srv <close> = eddy.start_server(function(_, w)
      for _, piece in ipairs {"GET /a HTTP/1.1\r", "\nHost: x\r\n\r",
                              "\nPOST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234",
                              "56789GET /c HTTP/1.1\r\n\r\n"} do
        w:write(piece)
        w:drain()
        eddy.sleep(0.01)
      end
      w:close()
    end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2], {limit = 64})
    local requests = {}
    local err
    while true do
      local ok, head = pcall(bounded, r.readuntil, r, "\r\n\r\n")
      if not ok then
        err = head
        break
      end
      local length = tonumber(head:match("Content%-Length: (%d+)")) or 0
      local body = length > 0 and bounded(r.readexactly, r, length) or ""
      requests[#requests + 1] = head:match("^(%u+ %S+)") .. " " .. body
    end
    assert.same({"GET /a ", "POST /b 0123456789", "GET /c "}, requests)
    assert.is_true(errors.is(err, errors.IncompleteReadError), tostring(err))
    assert.equal("", err.partial)
    assert.is_nil(err.expected)
    assert.equal("IncompleteReadError: 0 bytes read on a total of undefined expected bytes",
                 tostring(err))
    w:close()
  end))
end)

describe("§3/§1 a loop used after close, and suspending calls outside a task", function()
  it("§3 after close(): scheduling, tasks, running, fd watchers, the executor, signals, "
     .. "servers and socket operations raise RuntimeError 'Event loop is closed'; time(), "
     .. "create_future, remove_*, set_debug, stop and close still work, as asyncio's", function()
    local loop = eddy.new_event_loop()
    local fut = loop:create_future()
    loop:close()
    local sock = eddy.socket.socket()
    sock:setblocking(false)
    local closed = {
      function() loop:call_soon(print) end,
      function() loop:call_soon_threadsafe(print) end,
      function() loop:call_later(1, print) end,
      function() loop:call_at(1, print) end,
      function() loop:create_task(function() end) end,
      function() loop:run_until_complete(fut) end,
      function() loop:run_forever() end,
      function() loop:add_reader(sock, print) end,
      function() loop:add_writer(sock, print) end,
      function() loop:run_in_executor(nil, print) end,
      function() loop:add_signal_handler("SIGUSR1", print) end,
      function() loop:create_server(function() return {} end, "127.0.0.1", 0) end,
      function() loop:create_connection(function() return {} end, "127.0.0.1", 1) end,
      function() loop:sock_recv(sock, 1) end,
    }
    for _, call in ipairs(closed) do
      checks.raises(call, {errors.RuntimeError, "Event loop is closed"})
    end
    assert.is_number(loop:time())
    assert.is_true(eddy.isfuture(loop:create_future()))
    assert.is_false(loop:remove_reader(sock))
    assert.is_false(loop:remove_writer(sock))
    assert.is_false(loop:remove_signal_handler("SIGUSR1"))
    loop:set_debug(true)
    assert.is_true(loop:get_debug())
    fut:add_done_callback(print)  -- pending: only kept, as asyncio's
    -- completing it must schedule that callback: refused
    checks.raises(function() fut:set_result(1) end, {errors.RuntimeError, "Event loop is closed"})
    local done = loop:create_future()
    done:set_result(1)  -- no callbacks to schedule: allowed
    checks.raises(function() done:add_done_callback(print) end,
                  {errors.RuntimeError, "Event loop is closed"})
    assert.is_false(done:cancel())
    loop:stop()
    loop:close()
    assert.is_true(loop:is_closed())
    sock:close()
  end)

  it("§1 a suspending function called from a plain callback raises RuntimeError naming it "
     .. "and pointing to eddy.run / run_until_complete: sleep, await, acquire, open_connection, "
     .. "Queue:get, readline; wrong argument types to the loop's scheduling methods are Lua "
     .. "argument errors naming the method", async(function(loop)
    local srv <close> = eddy.start_server(function(_, w) w:close() end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    local _ <close> = setmetatable({}, {__close = function() w:close() end})
    local q = eddy.Queue()
    local errs = checks.from_callback(loop, {
      {"sleep", eddy.sleep, 0},
      {"await", function() return loop:create_future():await() end},
      {"acquire", function() return eddy.Lock():acquire() end},
      {"open_connection", eddy.open_connection, "127.0.0.1", 1},
      {"get", q.get, q},
      {"readline", r.readline, r},
    })
    for name, err in pairs(errs) do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", err)
      assert.matches("eddy.run", err, 1, true)
      assert.matches("run_until_complete", err, 1, true)
    end
    assert.equal(6, count(errs))
    checks.argerror(function() loop:call_later(print, 1) end, 1, "call_later")
    checks.argerror(function() loop:call_at(1) end, 2, "call_at")
    checks.argerror(function() loop:call_soon(42) end, 1, "call_soon")
    checks.argerror(function() loop:create_task(42) end, 1, "create_task")
    checks.argerror(function() loop:run_in_executor(nil, 42) end, 2, "run_in_executor")
  end))
end)
