-- Queues (API.md §8), ported from CPython's
-- Lib/test/test_asyncio/test_queues.py (test names cited).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error, turns = checks.expect_error, checks.turns

describe("Queue basics", function()
  it("test_repr / test_str", async(function()
    local q = eddy.Queue()
    assert.matches("^<eddy.Queue maxsize=0", tostring(q))
    q:put_nowait(1)
    assert.matches("size=1", tostring(q))
    assert.matches("tasks=1", tostring(q))
  end))

  it("test_nonblocking_get / test_nonblocking_put", async(function()
    local q = eddy.Queue()
    q:put_nowait(1)
    assert.equals(1, q:get_nowait())
  end))

  -- _QueueJoinTestMixin's test_format checks Queue._format(), the body
  -- of the repr, for the three classes.
  it("test_format: maxsize, then the unfinished tasks", async(function()
    for _, name in ipairs {"Queue", "LifoQueue", "PriorityQueue"} do
      local q = eddy[name]()
      assert.equals("<eddy." .. name .. " maxsize=0>", tostring(q))
      q:put_nowait(1)
      q:put_nowait(2)
      q:get_nowait()
      q:get_nowait()
      assert.equals("<eddy." .. name .. " maxsize=0 tasks=2>", tostring(q))
    end
  end))

  it("test_empty", async(function()
    local q = eddy.Queue()
    assert.is_true(q:empty())
    q:put_nowait(1)
    assert.is_false(q:empty())
    assert.equals(1, q:get_nowait())
    assert.is_true(q:empty())
  end))

  it("test_full", async(function()
    local q = eddy.Queue()
    assert.is_false(q:full())
    q = eddy.Queue(1)
    q:put_nowait(1)
    assert.is_true(q:full())
  end))

  it("test_order: FIFO", async(function()
    local q = eddy.Queue()
    for _, i in ipairs {1, 3, 2} do q:put_nowait(i) end
    local items = {}
    for _ = 1, 3 do items[#items + 1] = q:get_nowait() end
    assert.same({1, 3, 2}, items)
  end))

  it("test_maxsize: put blocks while full", async(function(loop)
    local q = eddy.Queue(2)
    assert.equals(2, q.maxsize)
    local have_been_put = {}
    local function putter()
      for i = 1, 3 do
        q:put(i)
        have_been_put[#have_been_put + 1] = i
      end
      return true
    end
    local t = loop:create_task(putter)
    for _ = 1, 2 do turns() end
    assert.is_false(t:done())
    assert.same({1, 2}, have_been_put)
    assert.equals(1, q:get_nowait())
    turns()
    assert.is_true(t:done())
    assert.same({1, 2, 3}, have_been_put)
    assert.equals(2, q.maxsize)
  end))

  it("maxsize is a read-only field, as asyncio's property", function()
    for _, new in ipairs({eddy.Queue, eddy.PriorityQueue, eddy.LifoQueue}) do
      local q = new(1)
      checks.raises(function() q.maxsize = 10 end, "read-only")
      assert.equals(1, q.maxsize)
      q:put_nowait("a")
      assert.is_true(q:full())
      expect_error(errors.QueueFull, q.put_nowait, q, "b")
    end
  end)

  it("bad maxsize is an argument error, at the caller's line (it was the caller's caller's)",
    function()
      checks.argerror(function() eddy.Queue("big") end, 1, "Queue")
      checks.argerror(function() eddy.PriorityQueue({}) end, 1, "PriorityQueue")
      checks.argerror(function() eddy.LifoQueue(true) end, 1, "LifoQueue")
      checks.blames_caller(eddy.Queue, "big")
      checks.blames_caller(eddy.PriorityQueue, {})
      checks.blames_caller(eddy.LifoQueue, true)
    end)

  it("test_float_maxsize: any number is a maxsize (1.3 holds two items)", async(function()
    local q = eddy.Queue(1.3)
    assert.equals(1.3, q.maxsize)
    q:put_nowait(1)
    q:put_nowait(2)
    assert.is_true(q:full())
    expect_error(errors.QueueFull, q.put_nowait, q, 3)
    assert.matches("maxsize=1.3", tostring(q), 1, true)
    q = eddy.Queue(1.3)
    q:put(1)
    q:put(2)
    assert.is_true(q:full())
  end))

  it("holds nil and false items", async(function()
    local q = eddy.Queue()
    q:put_nowait(nil)
    q:put_nowait(false)
    assert.equals(2, q:qsize())
    assert.is_nil(q:get_nowait())
    assert.is_false(q:get())
  end))
end)

describe("Queue constructors", function()
  -- API.md §1: a trailing plain table is the options table; asyncio's
  -- Queue(maxsize=0) has no keyword-only parameter (3.10 removed loop=,
  -- a TypeError since), so any option is an argument error.
  it("refuse options, as asyncio refuses an unexpected keyword", function()
    for _, name in ipairs {"Queue", "PriorityQueue", "LifoQueue"} do
      checks.raises(function() eddy[name](0, {loop = true}) end,
                    "bad argument #2 to '" .. name .. "' (unknown option 'loop')")
      checks.argerror(function() eddy[name](nil, {loop = true}) end, 2, name)
      assert.equal(3, eddy[name](3, {}).maxsize)  -- an empty table holds no keyword
    end
  end)
end)

describe("Queue get", function()
  it("test_blocking_get", async(function()
    local q = eddy.Queue()
    q:put_nowait(1)
    assert.equals(1, q:get())
  end))

  it("test_get_with_putters", async(function(loop)
    local q = eddy.Queue(1)
    q:put_nowait(1)
    local t = loop:create_task(function() q:put(2) end)
    turns()
    assert.equals(1, q:get())
    turns()
    assert.is_true(t:done())
    assert.equals(2, q:get_nowait())
  end))

  it("test_blocking_get_wait", async(function(loop)
    local q = eddy.Queue()
    loop:call_later(0.01, q.put_nowait, q, "x")
    local t0 = loop:time()
    assert.equals("x", q:get())
    assert.is_true(loop:time() - t0 >= 0.009)
  end))

  it("test_nonblocking_get_exception: QueueEmpty", async(function()
    local q = eddy.Queue()
    expect_error(errors.QueueEmpty, q.get_nowait, q)
  end))

  it("test_get_cancelled_race: a cancelled getter leaves the item to the next", async(function(loop)
    local q = eddy.Queue()
    local t1 = loop:create_task(function() return q:get() end)
    local t2 = loop:create_task(function() return q:get() end)
    turns()
    t1:cancel()
    turns()
    assert.is_true(t1:done())
    q:put_nowait("a")
    turns()
    assert.equals("a", t2:result())
  end))

  it("test_get_cancelled_within_wait: woken then cancelled passes the wakeup on", async(function(loop)
    local q = eddy.Queue()
    local t1 = loop:create_task(function() return q:get() end)
    local t2 = loop:create_task(function() return q:get() end)
    turns()
    q:put_nowait(1)  -- wakes t1
    t1:cancel()      -- before it runs
    turns(2)
    assert.is_true(t1:cancelled())
    assert.equals(1, t2:result())
    assert.equals(0, #q._getters)
  end))

  it("test_cancelled_getters_not_being_held_in_self_getters", async(function(loop)
    local q = eddy.Queue()
    local ok, err = pcall(eddy.wait_for, function() return q:get() end, 0.01)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.TimeoutError))
    assert.equals(0, #q._getters)
  end))

  it("test_why_are_getters_waiting: many getters and putters", async(function(loop)
    local q = eddy.Queue(2)
    local got = {}
    local function consumer() local v = q:get(); got[#got + 1] = v end
    local function producer(i) q:put(i) end
    local tasks = {}
    for i = 1, 5 do tasks[#tasks + 1] = loop:create_task(consumer) end
    for i = 1, 5 do tasks[#tasks + 1] = loop:create_task(producer, i) end
    eddy.gather(table.unpack(tasks))
    table.sort(got)
    assert.same({1, 2, 3, 4, 5}, got)
  end))
end)

describe("Queue cancellation does not drop items", function()
  it("test_get_cancel_drop_one_pending_reader", async(function(loop)
    local q = eddy.Queue()
    local reader = loop:create_task(q.get, q)
    turns()
    q:put_nowait(1)
    q:put_nowait(2)
    reader:cancel()
    if not pcall(reader.await, reader) then
      reader = loop:create_task(q.get, q)  -- try again
      reader:await()
    end
    assert.equals(1, reader:result())  -- 2 would mean 1 was dropped
  end))

  it("test_get_cancel_drop_many_pending_readers", async(function(loop)
    local q = eddy.Queue()
    local r1, r2, r3 = loop:create_task(q.get, q), loop:create_task(q.get, q), loop:create_task(q.get, q)
    turns()
    q:put_nowait(1)
    q:put_nowait(2)
    r1:cancel()
    expect_error(errors.CancelledError, r1.await, r1)
    r3:await()
    r2:await()
    local got = {r2:result(), r3:result()}
    table.sort(got)
    assert.same({1, 2}, got)
  end))

  it("test_put_cancel_drop", async(function(loop)
    local q = eddy.Queue(1)
    q:put_nowait(1)
    local writer = loop:create_task(q.put, q, 2)
    turns()
    assert.equals(1, q:get_nowait())
    writer:cancel()
    if not pcall(writer.await, writer) then
      writer = loop:create_task(q.put, q, 2)  -- try again
      writer:await()
    end
    assert.equals(2, q:get_nowait())
    assert.equals(0, q:qsize())
  end))

  it("test_cancelled_put_silence_value_error_exception", async(function(loop)
    local q = eddy.Queue(1)
    q:put_nowait(1)
    local put_task = loop:create_task(q.put, q, 1)
    turns()
    q:get_nowait()  -- wakes the putter (it leaves _putters)
    put_task:cancel()
    expect_error(errors.CancelledError, put_task.await, put_task)
    assert.equals(0, #q._putters)
  end))
end)

describe("Queue put", function()
  it("test_blocking_put_wait", async(function(loop)
    local q = eddy.Queue(1)
    local started, finished = eddy.Event(), false
    loop:call_later(0.01, function() q:get_nowait() end)
    local t = loop:create_task(function()
      started:set()
      q:put(1)
      q:put(2)
      finished = true
    end)
    started:wait()
    assert.is_false(finished)
    t:await()
    assert.is_true(finished)
  end))

  it("test_get_with_waiting_putters", async(function(loop)
    local q = eddy.Queue(1)
    loop:create_task(q.put, q, "a")
    loop:create_task(q.put, q, "b")
    assert.equals("a", q:get())
    assert.equals("b", q:get())
  end))

  it("test_why_are_putters_waiting", async(function(loop)
    local q = eddy.Queue(2)
    local tasks = {loop:create_task(function()
      eddy.sleep(0)
      for _ = 1, q:qsize() do q:get_nowait() end
    end)}
    for i = 0, 3 do tasks[#tasks + 1] = loop:create_task(q.put, q, i) end
    eddy.wait_for(function() eddy.gather(table.unpack(tasks)) end, 2)
    assert.equals(2, q:qsize())
  end))

  it("get and put at the main chunk's top level run the loop until served", function()
    local cli = require "cli_helper"
    local res = cli.eddy("-e " .. cli.q([[
      local eddy = require "eddy"
      local q = eddy.Queue(1)
      local loop = eddy.get_event_loop()
      loop:call_later(0.01, function() q:put_nowait("late") end)
      print(q:get())
      q:put_nowait(1)
      loop:call_later(0.01, function() q:get_nowait() end)
      q:put(2)  -- waits for room
      print(q:get_nowait(), #q._putters)
      local ok, err = pcall(q.get, q)  -- nobody puts: an error, not a hang
      print(ok, err, #q._getters)
    ]]))
    assert.equal("", res.err)
    assert.equal("late\n2\t0\nfalse\tRuntimeError: get(): the loop has no live work left "
                 .. "that could complete this future\t0\n", res.out)
  end)

  it("test_get_loop / _LoopBoundMixin: a queue waited on from two loops raises", function()
    local q = eddy.Queue()
    eddy.run(function()
      local t = eddy.create_task(function() return q:get() end)
      eddy.sleep(0)
      q:put_nowait("first loop")
      assert.equals("first loop", t:await())
    end)
    local ok, err = pcall(eddy.run, function() return q:get() end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError), tostring(err))
    assert.matches("eddy.Queue.* is bound to a different event loop", tostring(err))
  end)

  it("test_blocking_put", async(function()
    local q = eddy.Queue()
    q:put(1)
    assert.equals(1, q:get())
  end))

  it("test_nonblocking_put_exception: QueueFull", async(function()
    local q = eddy.Queue(1)
    q:put_nowait(1)
    expect_error(errors.QueueFull, q.put_nowait, q, 2)
  end))

  it("test_float_maxsize / unbounded maxsize <= 0", async(function()
    local q = eddy.Queue(-1)
    for i = 1, 5 do q:put_nowait(i) end
    assert.is_false(q:full())
    assert.equals(5, q:qsize())
  end))

  it("test_put_cancelled: a cancelled put does not put", async(function(loop)
    local q = eddy.Queue(1)
    q:put_nowait(1)
    local t = loop:create_task(function() q:put(2) end)
    turns()
    t:cancel()
    turns()
    assert.is_true(t:cancelled())
    assert.equals(1, q:get_nowait())
    assert.is_true(q:empty())
  end))

  it("test_put_cancelled_race", async(function(loop)
    local q = eddy.Queue(1)
    local put_a = loop:create_task(function() q:put("a") end)
    local put_b = loop:create_task(function() q:put("b") end)
    local put_c = loop:create_task(function() q:put("X") end)
    turns()
    assert.is_true(put_a:done())
    assert.is_false(put_b:done())
    put_c:cancel()
    turns()
    assert.is_true(put_c:done())
    assert.equals("a", q:get_nowait())
    turns()
    assert.equals("b", q:get_nowait())
    put_b:await()
  end))

  it("test_put_with_waiting_getters", async(function(loop)
    local q = eddy.Queue()
    local t = loop:create_task(function() return q:get() end)
    turns()
    q:put("a")
    assert.equals("a", t:await())
  end))

  it("test_cancelled_puts_not_being_held_in_self_putters", async(function()
    local q = eddy.Queue(1)
    q:put_nowait(1)
    local ok, err = pcall(eddy.wait_for, function() q:put(2) end, 0.01)
    assert.is_true(not ok and errors.is(err, errors.TimeoutError))
    assert.equals(0, #q._putters)
  end))
end)

describe("LifoQueue and PriorityQueue", function()
  it("LifoQueue test_order", async(function()
    local q = eddy.LifoQueue()
    for _, i in ipairs {1, 3, 2} do q:put_nowait(i) end
    local items = {}
    for _ = 1, 3 do items[#items + 1] = q:get_nowait() end
    assert.same({2, 3, 1}, items)
  end))

  it("PriorityQueue test_order", async(function()
    local q = eddy.PriorityQueue()
    for _, i in ipairs {1, 3, 2} do q:put_nowait(i) end
    local items = {}
    for _ = 1, 3 do items[#items + 1] = q:get_nowait() end
    assert.same({1, 2, 3}, items)
  end))

  it("PriorityQueue orders many items and tables with __lt", async(function()
    local q = eddy.PriorityQueue()
    local input = {}
    for i = 1, 200 do input[i] = (i * 7919) % 211 end
    for _, v in ipairs(input) do q:put(v) end
    local prev = -1
    for _ = 1, 200 do
      local v = q:get()
      assert.is_true(v >= prev)
      prev = v
    end
    local mt = {__lt = function(a, b) return a.p < b.p end}
    q:put(setmetatable({p = 2, name = "b"}, mt))
    q:put(setmetatable({p = 1, name = "a"}, mt))
    assert.equals("a", q:get().name)
  end))

  it("PriorityQueue: an item that cannot be compared raises and leaves the queue intact", async(function()
    local q = eddy.PriorityQueue()
    for _, v in ipairs {5, 3, 8, 1} do q:put_nowait(v) end
    assert.has_error(function() q:put_nowait("x") end)
    assert.has_error(function() q:put_nowait({}) end)
    -- bad input: the error names the caller's line, not eddy's (heapq's TypeError)
    for _, put in ipairs {q.put_nowait, q.put} do
      local ok, err = pcall(function() put(q, true) end)
      assert.is_false(ok)
      assert.matches("queues_spec%.lua:%d+: PriorityQueue items cannot be ordered: "
                     .. "attempt to compare boolean with number", err)
    end
    assert.equals(4, q:qsize())
    q:put_nowait(2)
    local got = {}
    while not q:empty() do got[#got + 1] = q:get_nowait() end
    assert.same({1, 2, 3, 5, 8}, got)
    -- a get whose comparisons fail takes nothing
    local strict = false
    local mt = {__lt = function(a, b)
      if strict then error("no order") end
      return a.p < b.p
    end}
    for _, p in ipairs {3, 1, 2} do q:put_nowait(setmetatable({p = p}, mt)) end
    strict = true
    assert.has_error(function() q:get_nowait() end, "no order")
    assert.equals(3, q:qsize())
    strict = false
    got = {}
    while not q:empty() do got[#got + 1] = q:get_nowait().p end
    assert.same({1, 2, 3}, got)
  end))
end)

describe("Queue join and task_done", function()
  it("test_task_done", async(function(loop)
    local q = eddy.Queue()
    for i = 1, 100 do q:put_nowait(i) end
    local accumulator = 0
    local running = true
    local function worker()
      while running do
        local item = q:get()
        accumulator = accumulator + item
        q:task_done()
      end
    end
    local tasks = {loop:create_task(worker), loop:create_task(worker)}
    q:join()
    assert.equals(5050, accumulator)
    running = false
    for _, t in ipairs(tasks) do t:cancel() end
    eddy.gather(tasks[1], tasks[2], {return_exceptions = true})
  end))

  it("test_task_done_underflow: ValueError", async(function()
    local q = eddy.Queue()
    expect_error(errors.ValueError, q.task_done, q)
  end))

  it("test_join_empty_queue", async(function()
    local q = eddy.Queue()
    q:join()
    q:join()
  end))
end)

describe("join and shutdown for every kind of queue (the test mixins)", function()
  local kinds = {Queue = eddy.Queue, LifoQueue = eddy.LifoQueue, PriorityQueue = eddy.PriorityQueue}
  for name, new in pairs(kinds) do
    it(name .. " test_task_done_underflow and test_join_empty_queue", async(function()
      local q = new()
      expect_error(errors.ValueError, q.task_done, q)
      q:join()
      q:join()
    end))

    it(name .. " test_shutdown_empty", async(function(loop)
      local q = new()
      local get_task = loop:create_task(q.get, q)
      turns()  -- the get waits before the shutdown
      q:shutdown(false)
      assert.equals(0, q:qsize())
      q:join()
      turns()
      assert.is_true(get_task:done())
      expect_error(errors.QueueShutDown, get_task.await, get_task)
      expect_error(errors.QueueShutDown, q.put, q, "data")
      expect_error(errors.QueueShutDown, q.put_nowait, q, "data")
      expect_error(errors.QueueShutDown, q.get, q)
      expect_error(errors.QueueShutDown, q.get_nowait, q)
    end))

    it(name .. " test_shutdown_nonempty", async(function(loop)
      local q = new(1)
      q:put_nowait("data")
      local join_task = loop:create_task(q.join, q)
      local put_task = loop:create_task(q.put, q, "data2")
      turns()
      assert.is_false(put_task:done())
      q:shutdown(false)
      assert.equals(1, q:qsize())
      turns()
      assert.is_true(put_task:done())
      expect_error(errors.QueueShutDown, put_task.await, put_task)
      assert.equals("data", q:get())
      turns()
      assert.is_false(join_task:done())
      expect_error(errors.QueueShutDown, q.put, q, "data")
      expect_error(errors.QueueShutDown, q.put_nowait, q, "data")
      expect_error(errors.QueueShutDown, q.get, q)
      expect_error(errors.QueueShutDown, q.get_nowait, q)
      q:task_done()
      turns()
      assert.is_true(join_task:done())
      join_task:await()
      expect_error(errors.ValueError, q.task_done, q)
    end))

    it(name .. " test_shutdown_immediate", async(function(loop)
      local q = new()
      q:put_nowait("data")
      local join_task = loop:create_task(q.join, q)
      q:shutdown(true)
      assert.equals(0, q:qsize())
      turns()
      assert.is_true(join_task:done())
      join_task:await()
      expect_error(errors.QueueShutDown, q.put, q, "data")
      expect_error(errors.QueueShutDown, q.get, q)
      expect_error(errors.ValueError, q.task_done, q)
    end))

    it(name .. " test_shutdown_immediate_with_unfinished", async(function(loop)
      local q = new()
      q:put_nowait("data")
      q:put_nowait("data")
      local join_task = loop:create_task(q.join, q)
      assert.equals("data", q:get())
      q:shutdown(true)
      assert.equals(0, q:qsize())
      turns()
      assert.is_false(join_task:done())
      expect_error(errors.QueueShutDown, q.get_nowait, q)
      q:task_done()
      expect_error(errors.ValueError, q.task_done, q)
      turns()
      assert.is_true(join_task:done())
      join_task:await()
    end))
  end

  it("join in a plain callback names itself", async(function(loop)
    local q = eddy.Queue()
    q:put_nowait(1)
    local ok, err
    loop:call_soon(function() ok, err = pcall(q.join, q) end)
    turns()
    assert.is_false(ok)
    assert.matches("^RuntimeError: join%(%) cannot suspend here", tostring(err))
  end))

  -- API.md §1 and §11 to the letter (docs/queues.md): put, get and join
  -- raise from a plain callback even when they could complete at once,
  -- and no item moves.
  it("put, get and join raise from a plain callback even when they could complete, moving nothing",
     async(function(loop)
    for _, make in ipairs {eddy.Queue, eddy.PriorityQueue, eddy.LifoQueue} do
      local q = make(2)
      q:put_nowait(1)
      q:task_done()  -- nothing unfinished: join would return at once
      local errs = checks.from_callback(loop, {{"put", q.put, q, 2}, {"get", q.get, q}, {"join", q.join, q}})
      for _, name in ipairs {"put", "get", "join"} do
        assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here: .*eddy%.run", errs[name])
      end
      assert.equal(1, q:qsize())
      expect_error(errors.ValueError, q.task_done, q)  -- the put added nothing
      assert.equal(1, q:get())  -- in a task they return at once
      q:put(2)
      q:task_done()
      q:join()
    end
  end))
end)

describe("Queue shutdown (Python 3.13)", function()
  it("test_shutdown_empty: put and get raise QueueShutDown", async(function()
    local q = eddy.Queue()
    q:shutdown()
    expect_error(errors.QueueShutDown, q.put, q, "data")
    expect_error(errors.QueueShutDown, q.put_nowait, q, "data")
    expect_error(errors.QueueShutDown, q.get, q)
    expect_error(errors.QueueShutDown, q.get_nowait, q)
  end))

  it("test_shutdown_nonempty: remaining items can still be got", async(function()
    local q = eddy.Queue()
    q:put_nowait("data")
    q:shutdown()
    assert.equals("data", q:get())
    expect_error(errors.QueueShutDown, q.get, q)
  end))

  it("test_shutdown_immediate: empties the queue and releases join", async(function()
    local q = eddy.Queue()
    q:put_nowait("data")
    q:shutdown(true)
    expect_error(errors.QueueShutDown, q.get, q)
    expect_error(errors.QueueShutDown, q.get_nowait, q)
    q:join()  -- unfinished tasks were dropped
    assert.equals(0, q:qsize())
  end))

  it("test_shutdown_immediate_with_unfinished: join waits for task_done of got items", async(function(loop)
    local q = eddy.Queue()
    q:put_nowait("data1")
    q:put_nowait("data2")
    assert.equals("data1", q:get())
    q:shutdown(true)
    local join = loop:create_task(function() q:join() end)
    turns()
    assert.is_false(join:done())
    q:task_done()
    turns()
    assert.is_true(join:done())
  end))

  it("test_shutdown_putters_and_getters: blocked calls wake with QueueShutDown", async(function(loop)
    local q = eddy.Queue(1)
    q:put_nowait(1)
    local putter = loop:create_task(function() q:put(2) end)
    local e = eddy.Queue()
    local getter = loop:create_task(function() return e:get() end)
    turns()
    q:shutdown()
    e:shutdown()
    expect_error(errors.QueueShutDown, putter.await, putter)
    expect_error(errors.QueueShutDown, getter.await, getter)
  end))
end)
