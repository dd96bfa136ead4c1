-- Conformance of the high-level layer (API.md §6 and §8) with asyncio as
-- CPython 3.13's own test suite pins it down (Lib/test/test_asyncio,
-- the test module named in each case): the behaviours that the area
-- specs (locks_spec, queues_spec, tasks_spec, timeouts_spec, ...) do not
-- already check, written from asyncio's sources and tests.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error, turns = checks.expect_error, checks.turns

-- outcome(t) -> "ok", results... | "cancelled" | "error", err: how the
-- done task 't' ended.
local function outcome(t)
  assert.is_true(t:done())
  if t:cancelled() then return "cancelled" end
  local err = t:exception()
  if err ~= nil then return "error", err end
  return "ok", t:result()
end

describe("§8 Lock, Event, Condition (asyncio test_locks)", function()
  -- cond_waiter(cond, woke, name) -> a task body: take cond's lock, wait
  -- for a notify, then append name to the array woke.
  local function cond_waiter(cond, woke, name)
    return function()
      local _ <close> = cond:acquire()
      cond:wait()
      woke[#woke + 1] = name
    end
  end

  it("§8 Lock: released with a waiter queued, it reads unlocked, yet a newcomer queues behind "
     .. "the woken waiter (Lock.acquire's fast path needs every waiter cancelled)",
     async(function(loop)
      local lock = eddy.Lock()
      local order = {}
      lock:acquire()
      local function taker(name)
        return function()
          local _ <close> = lock:acquire()
          order[#order + 1] = name
          turns()
        end
      end
      local first = loop:create_task(taker("first"))
      turns()
      lock:release()
      assert.is_false(lock:locked())  -- the woken waiter has not run yet
      local late = loop:create_task(taker("late"))
      eddy.gather(first, late)
      assert.same({"first", "late"}, order)
    end))

  it("§8 Event: wait() on a set event returns true without suspending: a callback scheduled "
     .. "before it has not run", async(function(loop)
      local event = eddy.Event()
      event:set()
      local ran = false
      loop:call_soon(function() ran = true end)
      assert.is_true(event:wait())
      assert.is_false(ran)
      turns()
      assert.is_true(ran)
    end))

  it("§8 Event: a waiter cancelled while waiting leaves the others to set(); set() again "
     .. "changes nothing (test_wait_cancel)", async(function(loop)
      local event = eddy.Event()
      local t = {}
      for i = 1, 3 do t[i] = loop:create_task(function() return event:wait() end) end
      turns()
      t[2]:cancel()
      turns()
      event:set()
      event:set()
      eddy.wait({t[1], t[2], t[3]}, {timeout = 1})
      assert.same({"ok", true}, {outcome(t[1])})
      assert.equals("cancelled", outcome(t[2]))
      assert.same({"ok", true}, {outcome(t[3])})
    end))

  it("§8 Condition: wait_for returns the predicate's truthy value itself, not true "
     .. "(asyncio returns `result`)", async(function(loop)
      local cond = eddy.Condition()
      local value = false
      local t = loop:create_task(function()
        local _ <close> = cond:acquire()
        return cond:wait_for(function() return value end)
      end)
      turns()
      do
        local _ <close> = cond:acquire()
        value = 42
        cond:notify()
      end
      assert.equals(42, t:await())
      local _ <close> = cond:acquire()
      assert.equals("at once", cond:wait_for(function() return "at once" end))
    end))

  it("§8 Condition: a predicate that raises in wait_for propagates its error with the lock "
     .. "held again (test_wait_for)", async(function(loop)
      local cond = eddy.Condition()
      local calls = 0
      local t = loop:create_task(function()
        local _ <close> = cond:acquire()
        local ok, err = pcall(cond.wait_for, cond, function()
          calls = calls + 1
          if calls == 2 then error("predicate broke", 0) end
          return false
        end)
        return ok, err, cond:locked()
      end)
      turns()
      do
        local _ <close> = cond:acquire()
        cond:notify()
      end
      local ok, err, locked = t:await()
      assert.is_false(ok)
      assert.equals("predicate broke", err)
      assert.is_true(locked)
      assert.is_false(cond:locked())  -- the guard let it go
    end))

  it("§8 Condition: notify(n) skips waiters cancelled before it; the cancelled waiter still "
     .. "leaves holding the lock (Condition._notify checks fut.done())", async(function(loop)
      local cond = eddy.Condition()
      local woke = {}
      local t = {}
      for i = 1, 3 do t[i] = loop:create_task(cond_waiter(cond, woke, i)) end
      turns()
      do
        local _ <close> = cond:acquire()
        t[1]:cancel()
        cond:notify(2)  -- t[1]'s future is already cancelled: 2 and 3 wake
      end
      eddy.wait({t[1], t[2], t[3]}, {timeout = 1})
      assert.equals("cancelled", outcome(t[1]))
      assert.same({2, 3}, woke)
      assert.is_false(cond:locked())
    end))

  it("§8 Condition: two Conditions sharing one Lock: notify on one wakes only its own "
     .. "waiters (test_explicit_lock)", async(function(loop)
      local lock = eddy.Lock()
      local a, b = eddy.Condition(lock), eddy.Condition(lock)
      local woke = {}
      local ta = loop:create_task(cond_waiter(a, woke, "a"))
      local tb = loop:create_task(cond_waiter(b, woke, "b"))
      turns()
      do
        local _ <close> = b:acquire()
        assert.is_true(a:locked())
        b:notify_all()
      end
      tb:await()
      turns()
      assert.same({"b"}, woke)
      assert.is_false(ta:done())
      do
        local _ <close> = a:acquire()
        a:notify()
      end
      ta:await()
      assert.same({"b", "a"}, woke)
    end))
end)

describe("§8 Semaphore and Barrier (asyncio test_locks)", function()
  it("§8 Semaphore: a waiter woken by release() and cancelled before it ran gives its unit "
     .. "back: value restored, a newcomer acquires at once", async(function(loop)
      local sem = eddy.Semaphore(0)
      local t = loop:create_task(function() return sem:acquire() end)
      turns()
      sem:release()
      assert.is_true(sem:locked())  -- the unit went to t
      t:cancel()
      expect_error(errors.CancelledError, t.await, t)
      assert.is_false(sem:locked())
      assert.truthy(sem:acquire())
      assert.is_true(sem:locked())
    end))

  it("§8 BoundedSemaphore: releases while a woken waiter has not run yet count against the "
     .. "bound as asyncio counts them (the unit handed over is no longer in value)",
     async(function(loop)
      local sem = eddy.BoundedSemaphore(1)
      sem:acquire()
      local t = loop:create_task(function() return sem:acquire() end)
      turns()
      sem:release()        -- value 1, handed to t at once: 0
      sem:release()        -- below the bound again: allowed, value 1
      expect_error(errors.ValueError, sem.release, sem)
      t:await()
      assert.is_false(sem:locked())  -- t holds one unit, one is free
    end))

  it("§8 Barrier: a waiter cancelled after the last arrival released it raises CancelledError; "
     .. "the others keep their index and the next round starts from 0 (Barrier.wait's finally)",
     async(function(loop)
      local barrier = eddy.Barrier(2)
      local first = loop:create_task(function() return barrier:wait() end)
      turns()
      local last = loop:create_task(function() return barrier:wait() end)
      turns()
      first:cancel()  -- woken by the last arrival, it has not run yet
      eddy.wait({first, last}, {timeout = 1})
      assert.equals("cancelled", outcome(first))
      assert.same({"ok", 1}, {outcome(last)})
      assert.equals(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
      local again = {}
      for i = 1, 2 do again[i] = loop:create_task(function() return barrier:wait() end) end
      local i1, i2 = eddy.gather(again[1], again[2])
      assert.same({0, 1}, {i1, i2})
    end))

  it("§8 Barrier: a task arriving while the barrier drains waits outside (_block); cancelled "
     .. "there it never counted: n_waiting stays 0 and the next round fills from index 0",
     async(function(loop)
      local barrier = eddy.Barrier(2)
      local function waiter() return loop:create_task(function() return barrier:wait() end) end
      -- second fills the barrier; late comes right after, before first
      -- has left: draining
      local first, second, late = waiter(), waiter(), waiter()
      turns()
      assert.equals(0, barrier.n_waiting)
      assert.same({"ok", 1}, {outcome(second)})
      assert.is_false(first:done() or late:done())
      late:cancel()
      eddy.wait({first, second, late}, {timeout = 1})
      assert.same({"ok", 0}, {outcome(first)})
      assert.same({"ok", 1}, {outcome(second)})
      assert.equals("cancelled", outcome(late))
      local a, b = waiter(), waiter()
      assert.same({0, 1}, {eddy.gather(a, b)})
    end))

  it("§8 Barrier: abort() with waiters: each gets BrokenBarrierError, n_waiting reads 0, a new "
     .. "wait fails at once until reset() (test_abort_barrier)", async(function(loop)
      local barrier = eddy.Barrier(3)
      local t = {}
      for i = 1, 2 do t[i] = loop:create_task(function() return barrier:wait() end) end
      turns()
      assert.equals(2, barrier.n_waiting)
      barrier:abort()
      assert.is_true(barrier.broken)
      assert.equals(0, barrier.n_waiting)
      for i = 1, 2 do expect_error(errors.BrokenBarrierError, t[i].await, t[i]) end
      expect_error(errors.BrokenBarrierError, barrier.wait, barrier)
      barrier:reset()
      assert.is_false(barrier.broken)
      local w = {}
      for i = 1, 3 do w[i] = loop:create_task(function() return barrier:wait() end) end
      local a, b, c = eddy.gather(w[1], w[2], w[3])
      assert.same({0, 1, 2}, {a, b, c})
    end))

  it("§8 Barrier: reset() with nobody waiting leaves it filling, not resetting: the next wait "
     .. "is not broken (Barrier.reset with _count 0)", async(function(loop)
      local barrier = eddy.Barrier(2)
      barrier:reset()
      local t = loop:create_task(function() return barrier:wait() end)
      turns()
      assert.equals(1, barrier.n_waiting)
      assert.equals(1, barrier:wait())
      assert.equals(0, t:await())
    end))
end)

describe("§8 Queue (asyncio test_queues)", function()
  it("§8 Queue: of two woken getters, the one that runs first takes the item, even if the "
     .. "wake-up was meant for the other, which waits again (_wakeup_next pops the woken one, "
     .. "get re-checks empty())", async(function(loop)
      local q = eddy.Queue()
      local g1 = loop:create_task(function() return q:get() end)
      local g2 = loop:create_task(function() return q:get() end)
      turns()
      q:put_nowait("a")        -- wakes g1
      assert.equals("a", q:get_nowait())
      q:put_nowait("b")        -- g1 no longer waits in line: wakes g2
      turns()
      assert.same({"ok", "b"}, {outcome(g1)})  -- g1 runs first and finds "b"
      assert.is_false(g2:done())               -- g2 found the queue empty again
      q:put_nowait("c")
      assert.equals("c", g2:await())
    end))

  it("§8 Queue: shutdown(true) drops the queued items as done, so task_done() is left only "
     .. "for items already got; one more is ValueError (Queue.shutdown, task_done)",
     async(function()
      local q = eddy.Queue()
      for _, item in ipairs {"a", "b", "c"} do q:put_nowait(item) end
      assert.equals("a", q:get_nowait())
      q:shutdown(true)
      assert.equals(0, q:qsize())
      expect_error(errors.QueueShutDown, q.get_nowait, q)
      q:task_done()
      expect_error(errors.ValueError, q.task_done, q)
      q:join()  -- nothing unfinished: returns at once
    end))

  it("§8 Queue: shutdown() (not immediate) of a full queue: blocked putters raise "
     .. "QueueShutDown, getters still drain the items, then get raises too (test_shutdown_nonempty)",
     async(function(loop)
      local q = eddy.Queue(1)
      q:put_nowait("kept")
      local putter = loop:create_task(function() q:put("never") end)
      turns()
      q:shutdown()
      expect_error(errors.QueueShutDown, putter.await, putter)
      assert.equals("kept", q:get())
      expect_error(errors.QueueShutDown, q.get, q)
      expect_error(errors.QueueShutDown, q.put_nowait, q, "late")
    end))

  it("§8 Queue: a putter woken by a get and then cancelled passes the free slot on to the "
     .. "next putter (test_put_cancelled_race)", async(function(loop)
      local q = eddy.Queue(1)
      q:put_nowait("x")
      local p1 = loop:create_task(function() q:put("p1") end)
      local p2 = loop:create_task(function() q:put("p2") end)
      turns()
      assert.equals("x", q:get_nowait())  -- wakes p1
      p1:cancel()
      eddy.wait({p1, p2}, {timeout = 1})
      assert.equals("cancelled", outcome(p1))
      assert.equals("ok", outcome(p2))
      assert.equals("p2", q:get_nowait())
      assert.is_true(q:empty())
    end))

  it("§8 Queue: join() waiters all return when the last task_done() comes; a later put "
     .. "makes join wait again (Queue._finished)", async(function(loop)
      local q = eddy.Queue()
      q:put_nowait(1)
      local joins = {}
      for i = 1, 2 do joins[i] = loop:create_task(function() q:join(); return i end) end
      turns()
      q:get_nowait()
      turns()
      assert.is_false(joins[1]:done() or joins[2]:done())
      q:task_done()
      assert.same({1, 2}, {eddy.gather(joins[1], joins[2])})
      q:put_nowait(2)
      local j = loop:create_task(function() q:join() end)
      turns()
      assert.is_false(j:done())
      q:get_nowait()
      q:task_done()
      j:await()
    end))

  it("§8 LifoQueue: a put blocked while full goes in once a get makes room, and comes out "
     .. "first (LifoQueue order with maxsize)", async(function(loop)
      local q = eddy.LifoQueue(2)
      q:put_nowait(1)
      q:put_nowait(2)
      local p = loop:create_task(function() q:put(3) end)
      turns()
      assert.is_true(q:full())
      assert.equals(2, q:get_nowait())
      p:await()
      assert.same({3, 1}, {q:get_nowait(), q:get_nowait()})
    end))
end)

describe("§6 wait_for (asyncio test_waitfor)", function()
  it("§6 wait_for: a timeout of 0 or less with a future already failed raises its error, "
     .. "not TimeoutError (wait_for returns fut.result())", async(function(loop)
      for _, timeout in ipairs {0, -1} do
        local fut = loop:create_future()
        fut:set_exception(errors.ValueError("failed before"))
        local err = expect_error(errors.ValueError, eddy.wait_for, fut, timeout)
        assert.equals("failed before", err.message)
      end
    end))

  it("§6 wait_for: a timeout of 0 with a task that turns its cancellation into a result "
     .. "returns that result (_cancel_and_wait, then fut.result())", async(function(loop)
      local t = loop:create_task(function()
        local ok = pcall(eddy.sleep, 10)
        assert(not ok)
        return "salvaged"
      end)
      turns()
      assert.equals("salvaged", eddy.wait_for(t, 0))
    end))

  it("§6 wait_for: a timeout with an already-cancelled future raises CancelledError, not "
     .. "TimeoutError, and the caller's cancel count stays 0", async(function(loop)
      local fut = loop:create_future()
      fut:cancel()
      expect_error(errors.CancelledError, eddy.wait_for, fut, 1)
      assert.equals(0, eddy.current_task():cancelling())
      local pending = loop:create_future()
      loop:call_later(0.01, function() pending:cancel() end)
      expect_error(errors.CancelledError, eddy.wait_for, pending, 5)
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 wait_for: the caller cancelled while a started aw swallows the cancellation and "
     .. "finishes later: wait_for waits for it and returns its result, the caller's request "
     .. "still counted (test_asyncio_wait_for_cancelled; docs/tasks.md: a function aw "
     .. "cancelled before its first step never starts)", async(function(loop)
      local inner = loop:create_task(function()
        pcall(eddy.sleep, 10)
        eddy.sleep(0.02)   -- still busy after the cancellation
        return "late"
      end)
      local waiter = loop:create_task(function()
        local result = eddy.wait_for(inner, 5)
        return result, eddy.current_task():cancelling()
      end)
      turns(2)
      waiter:cancel()
      eddy.wait({waiter}, {timeout = 2})
      assert.same({"ok", "late", 1}, {outcome(waiter)})
    end))
end)

describe("§6 timeouts (asyncio test_timeouts)", function()
  it("§6 timeout: a body that swallows the expiry's CancelledError leaves the scope without "
     .. "error; expired() is true and cancelling() is back to 0", async(function()
      local me = eddy.current_task()
      local scope
      do
        local t <close> = eddy.timeout(0.01)
        scope = t
        local ok, err = pcall(eddy.sleep, 5)
        assert.is_false(ok)
        assert.is_true(errors.is(err, errors.CancelledError))
        assert.equals(1, me:cancelling())
      end
      assert.is_true(scope:expired())
      assert.equals(0, me:cancelling())
      eddy.sleep(0)  -- no cancellation left pending
    end))

  -- task_in_scope(loop) -> a task sleeping inside a 5 s timeout scope,
  -- and that scope (the task has entered it).
  local function task_in_scope(loop)
    local scope
    local t = loop:create_task(function()
      local s <close> = eddy.timeout(5)
      scope = s
      eddy.sleep(5)
    end)
    turns()
    return t, scope
  end

  it("§6 timeout: an expiry and an explicit cancel() that land in the same turn: the scope "
     .. "expired, yet uncancel() leaves the outside request, so CancelledError goes through",
     async(function(loop)
      local t, scope = task_in_scope(loop)
      scope:reschedule(loop:time())  -- the expiry is queued first
      t:cancel()
      eddy.wait({t}, {timeout = 1})
      assert.is_true(t:cancelled())
      assert.is_true(scope:expired())
      assert.equals(1, t:cancelling())
    end))

  it("§6 timeout: an explicit cancel() queued before the expiry's callback ends the scope "
     .. "first: the scope finishes unexpired and CancelledError goes through", async(function(loop)
      local t, scope = task_in_scope(loop)
      t:cancel()
      scope:reschedule(loop:time())  -- its callback comes after the task's wake-up
      eddy.wait({t}, {timeout = 1})
      assert.is_true(t:cancelled())
      assert.is_false(scope:expired())
    end))

  it("§6 timeout: when() gives the deadline as set by timeout, timeout_at and reschedule; "
     .. "expired() is false until the timer fires, then true; reschedule after that is "
     .. "RuntimeError", async(function(loop)
      local now = loop:time()
      local caught
      local ok, err = pcall(function()
        local t <close> = eddy.timeout_at(now + 10)
        caught = t
        assert.equals(now + 10, t:when())
        t:reschedule(nil)
        assert.is_nil(t:when())
        eddy.sleep(0.01)
        assert.is_false(t:expired())
        t:reschedule(loop:time() + 0.01)
        eddy.sleep(5)
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.TimeoutError))
      assert.is_true(caught:expired())
      local rerr = expect_error(errors.RuntimeError, caught.reschedule, caught, now + 20)
      assert.matches("expired", rerr.message)
    end))

  it("§6 timeout: nested scopes where the inner deadline is later than the outer's: the "
     .. "outer expires, the inner one lets the CancelledError through and stays unexpired",
     async(function()
      local inner_scope, outer_scope
      local ok, err = pcall(function()
        local outer <close> = eddy.timeout(0.01)
        outer_scope = outer
        local inner <close> = eddy.timeout(5)
        inner_scope = inner
        eddy.sleep(5)
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.TimeoutError))
      assert.is_true(outer_scope:expired())
      assert.is_false(inner_scope:expired())
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 timeout: a TimeoutError the body raises itself, with the scope unexpired, goes "
     .. "through unchanged", async(function()
      local scope
      local err = expect_error(errors.TimeoutError, function()
        local t <close> = eddy.timeout(5)
        scope = t
        error(errors.TimeoutError("mine"))
      end)
      assert.equals("mine", err.message)
      assert.is_false(scope:expired())
    end))
end)

describe("§6 TaskGroup (asyncio test_taskgroups)", function()
  it("§6 TaskGroup: two children fail, one of them while being cancelled by the first "
     .. "failure: ExceptionGroup lists both in the order they failed, the body's own error "
     .. "last", async(function()
      local ok, eg = pcall(function()
        local tg <close> = eddy.TaskGroup()
        tg:create_task(function()
          eddy.sleep(0.01)
          error(errors.ValueError("first"))
        end)
        tg:create_task(function()
          local slept = pcall(eddy.sleep, 5)
          assert(not slept)
          error(errors.RuntimeError("second, in cleanup"))
        end)
        local slept = pcall(eddy.sleep, 5)
        assert(not slept)
        error(errors.LookupError("body"))
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(eg, errors.ExceptionGroup))
      local kinds = {}
      for i, e in ipairs(eg.exceptions) do kinds[i] = e.message end
      assert.same({"first", "second, in cleanup", "body"}, kinds)
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 TaskGroup: a child failing while the body waits inside a timeout scope: the scope "
     .. "does not turn the group's cancellation into TimeoutError, the group raises "
     .. "ExceptionGroup", async(function()
      local scope
      local ok, eg = pcall(function()
        local tg <close> = eddy.TaskGroup()
        tg:create_task(function()
          eddy.sleep(0.01)
          error(errors.ValueError("child"))
        end)
        local t <close> = eddy.timeout(5)
        scope = t
        eddy.sleep(5)
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(eg, errors.ExceptionGroup))
      assert.equals(1, #eg.exceptions)
      assert.is_false(scope:expired())
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 TaskGroup: the parent cancelled twice while the group aborts after a child failure: "
     .. "ExceptionGroup, the count restored to the outside requests, which the next "
     .. "suspension raises", async(function(loop)
      local release = loop:create_future()
      local seen = {}
      local parent = loop:create_task(function()
        local me = eddy.current_task()
        local ok, eg = pcall(function()
          local tg <close> = eddy.TaskGroup()
          tg:create_task(function() error(errors.ValueError("boom")) end)
          tg:create_task(function()
            pcall(eddy.sleep, 5)        -- cancelled by the failure
            release:await()             -- then slow to finish
          end)
          eddy.sleep(5)
        end)
        seen.group = {ok, errors.is(eg, errors.ExceptionGroup), me:cancelling()}
        eddy.sleep(0)                   -- the pending outside cancel lands here
        seen.after = "not cancelled"
      end)
      turns(3)                          -- the child failed; the group aborts
      parent:cancel()
      parent:cancel()
      release:set_result()
      eddy.wait({parent}, {timeout = 1})
      assert.is_true(parent:cancelled())
      assert.same({false, true, 2}, seen.group)
      assert.is_nil(seen.after)
    end))

  it("§6 TaskGroup: a child that raises CancelledError itself ends cancelled and is not an "
     .. "error of the group: the others finish, the group exits normally (_on_task_done "
     .. "returns on task.cancelled())", async(function()
      local quitter, worker
      do
        local tg <close> = eddy.TaskGroup()
        quitter = tg:create_task(function() error(errors.CancelledError("gave up")) end)
        worker = tg:create_task(function() eddy.sleep(0.01); return "done" end)
      end
      assert.is_true(quitter:cancelled())
      assert.same({"ok", "done"}, {outcome(worker)})
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 TaskGroup: a child's error after the parent returned from its cancelled body is "
     .. "still grouped: __close waits for every child, whatever cancels them", async(function()
      local ok, eg = pcall(function()
        local tg <close> = eddy.TaskGroup()
        for i = 1, 3 do
          tg:create_task(function()
            eddy.sleep(0.005 * i)
            error(errors.ValueError("child " .. i))
          end)
        end
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(eg, errors.ExceptionGroup))
      -- The first failure cancels the two others before they fail.
      assert.equals(1, #eg.exceptions)
      assert.equals("child 1", eg.exceptions[1].message)
    end))
end)

describe("§5/§6 cancellation requests (asyncio test_tasks)", function()
  it("§5 uncancel(): a task cancelled and uncancelled before its first step runs normally "
     .. "(3.13: uncancel to 0 clears _must_cancel)", async(function(loop)
      local t = loop:create_task(function() eddy.sleep(0); return "ran" end)
      assert.is_true(t:cancel())
      assert.equals(0, t:uncancel())
      assert.equals("ran", t:await())
      assert.is_false(t:cancelled())
    end))

  it("§5 uncancel(): a task waiting on a future, cancelled then uncancelled, still gets the "
     .. "CancelledError (its future was cancelled)", async(function(loop)
      local fut = loop:create_future()
      local t = loop:create_task(function()
        local ok, err = pcall(fut.await, fut)
        return ok, errors.is(err, errors.CancelledError)
      end)
      turns()
      assert.is_true(t:cancel())
      assert.equals(0, t:uncancel())
      assert.same({false, true}, {t:await()})
      assert.is_true(fut:cancelled())
    end))

  -- Queue get and put and StreamReader reads park the task instead of
  -- awaiting a future of their own (docs/queues.md); asyncio's cancel()
  -- cancels that future, so the CancelledError must come all the same.
  -- Each: a name, and a maker of (wait, left_alone): 'wait' waits, and
  -- 'left_alone' checks that the cancelled wait is no longer served.
  local parked_waits = {
    {"Queue get", function()
      local q = eddy.Queue()
      return function() return q:get() end, function()
        q:put_nowait("x")
        turns()
        assert.equals(1, q:qsize())
      end
    end},
    {"Queue put", function()
      local q = eddy.Queue(1)
      q:put_nowait("full")
      return function() return q:put("more") end, function()
        assert.equals("full", q:get_nowait())
        turns()
        assert.is_true(q:empty())
      end
    end},
    {"StreamReader read", function()
      local r = eddy.StreamReader()
      return function() return r:read(1) end, function()
        r:feed_data("z")
        turns()
        assert.equals("z", r:read(1))
      end
    end},
  }
  for _, case in ipairs(parked_waits) do
    local name, make = case[1], case[2]
    it("§5/§8 uncancel(): a task waiting in " .. name .. ", cancelled then uncancelled, "
       .. "still gets the CancelledError with its message, and the wait is gone (asyncio "
       .. "test_tasks: uncancel clears _must_cancel only)", async(function(loop)
        local wait, left_alone = make()
        local t = loop:create_task(function()
          local ok, err = pcall(wait)
          return ok, errors.is(err, errors.CancelledError) and err.message
        end)
        turns()
        assert.is_true(t:cancel("stop"))
        assert.equals(0, t:uncancel())
        eddy.wait({t}, {timeout = 1})
        assert.same({"ok", false, "stop"}, {outcome(t)})
        left_alone()
      end))

    it("§5/§8 uncancel(): a task that cancelled itself, asked for an uncancel() and then waits in " .. name
       .. " is cancelled there though the uncancel() runs before its next step (Task.__step "
       .. "cancels the future it yields when _must_cancel)", async(function(loop)
        local wait, left_alone = make()
        local t
        t = loop:create_task(function()
          t:cancel("self")
          loop:call_soon(function() t:uncancel() end)  -- before the next step
          local ok, err = pcall(wait)
          return ok, errors.is(err, errors.CancelledError) and err.message
        end)
        eddy.wait({t}, {timeout = 1})
        assert.same({"ok", false, "self"}, {outcome(t)})
        left_alone()
      end))
  end

  it("§5 a future the task awaits cancelled with a message by someone else: the task ends "
     .. "cancelled with that message, its own cancel count 0 (Task.__step keeps the raised "
     .. "CancelledError)", async(function(loop)
      local fut = loop:create_future()
      local t = loop:create_task(function() return fut:await() end)
      turns()
      fut:cancel("from the future")
      eddy.wait({t}, {timeout = 1})
      local err = expect_error(errors.CancelledError, t.result, t)
      assert.equals("from the future", err.message)
      assert.equals(0, t:cancelling())
    end))

  it("§5 cancel() twice while the task waits: both counted, the first message is the one "
     .. "raised (the second finds the waiter already cancelled)", async(function(loop)
      local fut = loop:create_future()
      local t = loop:create_task(function() return fut:await() end)
      turns()
      assert.is_true(t:cancel("first"))
      assert.is_true(t:cancel("second"))
      eddy.wait({t}, {timeout = 1})
      local err = expect_error(errors.CancelledError, t.result, t)
      assert.equals("first", err.message)
      assert.equals(2, t:cancelling())
      assert.is_true(fut:cancelled())
    end))

  it("§6 shield and wait_for: the awaited task cancelled by a third party: the caller gets "
     .. "that CancelledError, though nobody cancelled the caller (cancelling() 0)",
     async(function(loop)
      for _, how in ipairs {"shield", "wait_for"} do
        local inner = loop:create_task(function() eddy.sleep(5) end)
        local t = loop:create_task(function()
          if how == "shield" then return eddy.shield(inner):await() end
          return eddy.wait_for(inner, 5)
        end)
        turns()
        inner:cancel("third party")
        eddy.wait({t}, {timeout = 1})
        assert.is_true(t:cancelled())
        assert.equals(0, t:cancelling())
      end
    end))

  it("§6 wait_for: an aw that raises CancelledError itself (nobody cancelled it) makes "
     .. "wait_for raise it as is, not TimeoutError", async(function()
      local err = expect_error(errors.CancelledError, eddy.wait_for, function()
        error(errors.CancelledError("its own"))
      end, 1)
      assert.equals("its own", err.message)
    end))

  it("§6 wait_for nested: the inner wait_for's TimeoutError goes through the outer one "
     .. "unchanged; the outer's timeout is not the one that fired", async(function()
      local err = expect_error(errors.TimeoutError, eddy.wait_for, function()
        return eddy.wait_for(function() eddy.sleep(1) end, 0.01)
      end, 0.5)
      assert.is_true(errors.is(err.cause, errors.CancelledError))
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 gather: the caller cancelled after every child finished but before gather returned "
     .. "is cancelled (the outer future could not be, so Task.cancel sets _must_cancel)",
     async(function(loop)
      local f1, f2 = loop:create_future(), loop:create_future()
      local t = loop:create_task(function() return eddy.gather(f1, f2) end)
      turns()
      loop:call_soon(function()
        f1:set_result(1)
        f2:set_result(2)
        assert(t:cancel())    -- gather's callbacks have not run yet
      end)
      eddy.wait({t}, {timeout = 1})
      assert.is_true(t:cancelled())
    end))

  it("§6 gather(return_exceptions): a child cancelled by its own code is a CancelledError in "
     .. "its slot; the caller is not cancelled", async(function(loop)
      local a = loop:create_task(function()
        eddy.current_task():cancel("self")
        eddy.sleep(0)
      end)
      local b = loop:create_task(function() eddy.sleep(0.01); return "b" end)
      local ra, rb = eddy.gather(a, b, {return_exceptions = true})
      assert.is_true(errors.is(ra, errors.CancelledError))
      assert.equals("self", ra.message)
      assert.equals("b", rb)
      assert.equals(0, eddy.current_task():cancelling())
    end))

  it("§6 wait(FIRST_EXCEPTION): a cancelled child is not an exception: wait goes on until "
     .. "every child is done (_on_completion checks not f.cancelled())", async(function(loop)
      local cancelled = loop:create_task(function() eddy.sleep(5) end)
      local slow = loop:create_task(function() eddy.sleep(0.02); return "slow" end)
      loop:call_later(0.005, function() cancelled:cancel() end)
      local done, pending = eddy.wait({cancelled, slow}, {return_when = eddy.FIRST_EXCEPTION})
      assert.equals(2, #done)
      assert.equals(0, #pending)
    end))

  it("§6 wait with a timeout of 0 returns after one turn: what finished by then is done, the "
     .. "rest pending and still running", async(function(loop)
      local quick = loop:create_task(function() return 1 end)
      local slow = loop:create_task(function() eddy.sleep(0.01); return 2 end)
      local done, pending = eddy.wait({quick, slow}, {timeout = 0})
      assert.same({quick}, done)
      assert.same({slow}, pending)
      assert.equals(2, slow:await())
    end))

  it("§6 shield: the task awaiting shield(t) cancelled gets CancelledError at once while t "
     .. "finishes; an error t then raises is left to whoever awaits t", async(function(loop)
      local inner = loop:create_task(function()
        eddy.sleep(0.01)
        error(errors.ValueError("inner failed"))
      end)
      local outer = loop:create_task(function() return eddy.shield(inner):await() end)
      turns()
      outer:cancel()
      eddy.wait({outer}, {timeout = 1})
      assert.is_true(outer:cancelled())
      assert.is_false(inner:done())
      local err = expect_error(errors.ValueError, inner.await, inner)
      assert.equals("inner failed", err.message)
    end))

  it("§6 as_completed with a timeout: futures already done come out first, in the order "
     .. "given, and the step past the deadline raises TimeoutError", async(function(loop)
      local a, b = loop:create_future(), loop:create_future()
      b:set_result("b")
      a:set_result("a")
      local never = loop:create_future()
      local got = {}
      local ok, err = pcall(function()
        for fut in eddy.as_completed({a, never, b}, {timeout = 0.01}) do
          got[#got + 1] = fut:result()
        end
      end)
      assert.is_false(ok)
      assert.is_true(errors.is(err, errors.TimeoutError))
      assert.same({"a", "b"}, got)
      assert.is_false(never:done())
    end))
end)

describe("§8 StreamReader (asyncio test_streams)", function()
  local function reader_with(...)
    local r = eddy.StreamReader()
    for _, chunk in ipairs {...} do r:feed_data(chunk) end
    return r
  end

  it("§8 readexactly at EOF: IncompleteReadError carries the whole buffer as partial and "
     .. "the n asked as expected; the buffer is empty and at_eof() true after",
     async(function()
      local r = reader_with("abc", "de")
      r:feed_eof()
      local err = expect_error(errors.IncompleteReadError, r.readexactly, r, 10)
      assert.equals("abcde", err.partial)
      assert.equals(10, err.expected)
      assert.is_true(r:at_eof())
      assert.equals("", r:read())
    end))

  it("§8 readuntil at EOF without the separator: IncompleteReadError, partial the buffer, "
     .. "expected nil (asyncio's None); the buffer is consumed", async(function()
      local r = reader_with("no end here")
      r:feed_eof()
      local err = expect_error(errors.IncompleteReadError, r.readuntil, r, "\n\n")
      assert.equals("no end here", err.partial)
      assert.is_nil(err.expected)
      assert.is_true(r:at_eof())
    end))

  it("§8 readuntil: the separator not found and the buffer past the limit: "
     .. "LimitOverrunError, consumed counts the bytes searched, and they all stay buffered",
     async(function()
      local r = eddy.StreamReader(5)
      r:feed_data("abcdefgh")
      local err = expect_error(errors.LimitOverrunError, r.readuntil, r, "!")
      -- asyncio: offset = len(buffer) + 1 - seplen, the bytes that cannot start the separator
      assert.equals(8, err.consumed)
      assert.equals("abcdefgh", r:read(8))
    end))

  it("§8 readuntil: an empty separator is ValueError and consumes nothing "
     .. "(\"Separator should be at least one-byte string\")", async(function()
      local r = reader_with("data")
      expect_error(errors.ValueError, r.readuntil, r, "")
      assert.equals("data", r:read(4))
    end))

  it("§8 StreamReader: an exception set while readexactly waits with part of the data is "
     .. "raised there, and every later read raises it too, the buffer kept",
     async(function(loop)
      local r = reader_with("ab")
      local t = loop:create_task(function() return r:readexactly(4) end)
      turns()
      r:set_exception(errors.ConnectionResetError("gone"))
      expect_error(errors.ConnectionResetError, t.await, t)
      expect_error(errors.ConnectionResetError, r.read, r, 1)
      expect_error(errors.ConnectionResetError, r.readline, r)
      assert.is_true(errors.is(r:exception(), errors.ConnectionResetError))
    end))

  it("§8 StreamReader: an exception set is raised by every read even when the buffer holds "
     .. "enough bytes; the bytes stay and at_eof() is false (each read checks _exception first)",
     async(function()
      local r = reader_with("abcd")
      r:set_exception(errors.ValueError("broken"))
      expect_error(errors.ValueError, r.readexactly, r, 2)
      expect_error(errors.ValueError, r.read, r, 2)
      expect_error(errors.ValueError, r.readuntil, r, "c")
      assert.is_false(r:at_eof())
    end))

  -- asyncio checks a reader's exception when a read starts, and after a
  -- wait only if set_exception is what woke it (waiter.set_exception):
  -- a read that data or EOF woke goes on with them.
  it("§8 StreamReader: set_exception after feed_data woke a waiting read, before it ran: "
     .. "the read returns the data; the next read raises (_wait_for_data, set_exception)",
     async(function(loop)
      local r = eddy.StreamReader()
      local t = loop:create_task(function() return r:readexactly(3) end)
      turns()
      r:feed_data("abcd")
      r:set_exception(errors.ValueError("late"))
      assert.equals("abc", t:await())
      expect_error(errors.ValueError, r.read, r, 1)
    end))

  it("§8 StreamReader: a readexactly woken by too little data, with an exception set since, "
     .. "waits again instead of raising, and completes when the rest comes (its loop of "
     .. "_wait_for_data checks no exception)", async(function(loop)
      local r = eddy.StreamReader()
      local t = loop:create_task(function() return r:readexactly(4) end)
      turns()
      r:feed_data("ab")
      r:set_exception(errors.ValueError("late"))
      turns()
      assert.is_false(t:done())
      r:feed_data("cd")
      assert.equals("abcd", t:await())
    end))

  it("§8 StreamReader: a readuntil woken by feed_eof, with an exception set since, raises "
     .. "IncompleteReadError with the buffer, not the exception", async(function(loop)
      local r = eddy.StreamReader()
      local t = loop:create_task(function() return r:readuntil("|") end)
      turns()
      r:feed_data("x")
      turns()
      r:feed_eof()
      r:set_exception(errors.ValueError("late"))
      local err = expect_error(errors.IncompleteReadError, t.await, t)
      assert.equals("x", err.partial)
    end))

  it("§8 StreamReader: read() to EOF woken by data with an exception set since takes one "
     .. "block of limit bytes (lost) and raises, the rest stays; woken by feed_eof it returns "
     .. "what it read (a loop of read(limit), each checking when it starts)",
     async(function(loop)
      local r = eddy.StreamReader(4)
      local t = loop:create_task(function() return r:read() end)
      turns()
      r:feed_data("abcdefgh")
      r:set_exception(errors.ValueError("late"))
      expect_error(errors.ValueError, t.await, t)
      assert.matches("^<StreamReader 4 bytes", tostring(r))
      local r2 = eddy.StreamReader(4)
      local t2 = loop:create_task(function() return r2:read() end)
      turns()
      r2:feed_data("abc")
      turns()
      r2:feed_eof()
      r2:set_exception(errors.ValueError("late"))
      assert.equals("abc", t2:await())
    end))

  it("§8 StreamReader: a read woken by data that another task took first waits again for "
     .. "more, where asyncio's read(n) returns \"\" without EOF (docs/streams.md: eddy keeps "
     .. "its one-waiter rule)", async(function(loop)
      local r = eddy.StreamReader()
      local t = loop:create_task(function() return r:read(5) end)
      turns()
      r:feed_data("ab")
      assert.equals("ab", r:read(5))  -- no wait: the data is there
      turns()
      assert.is_false(t:done())
      r:feed_data("cd")
      assert.equals("cd", t:await())
    end))

  it("§8 StreamReader: feed_eof wakes a waiting read(n) with what is buffered, then \"\" "
     .. "(test_read_eof)", async(function(loop)
      local r = eddy.StreamReader()
      local t = loop:create_task(function() return r:read(10), r:read(10) end)
      turns()
      r:feed_data("xy")
      r:feed_eof()
      assert.same({"xy", ""}, {t:await()})
    end))
end)

describe("§8 context variables (asyncio test_context / test_tasks)", function()
  it("§8 contextvars: a task copies its creator's context at create_task: the creator's "
     .. "later sets are not seen, and the task's sets do not come back", async(function(loop)
      local var = eddy.ContextVar("conformance_var", "default")
      var:set("before")
      local t = loop:create_task(function()
        local seen = var:get()
        var:set("task's own")
        eddy.sleep(0)
        return seen, var:get()
      end)
      var:set("after")
      assert.same({"before", "task's own"}, {t:await()})
      assert.equals("after", var:get())
    end))

  it("§8 contextvars: call_soon inside ctx:run runs the callback in a copy of ctx: it sees "
     .. "ctx's values, and its own sets stay out of ctx (Handle copies the context)",
     async(function(loop)
      local var = eddy.ContextVar("conformance_cb", "none")
      local ctx = eddy.Context()
      ctx:run(function() var:set("in ctx") end)
      local seen = loop:create_future()
      ctx:run(function()
        loop:call_soon(function()
          seen:set_result(var:get())
          var:set("changed by the callback")
        end)
      end)
      assert.equals("in ctx", seen:await())
      turns()
      assert.equals("in ctx", ctx:get(var))
      assert.equals("none", var:get())
    end))

  it("§2/§8 eddy.run runs main in a copy of the caller's context: main sees the values set "
     .. "before the call, its own sets stay inside, and a call_later callback sees main's "
     .. "values as they were when it was scheduled (asyncio test_runners / Handle)", function()
    local var = eddy.ContextVar("conformance_run", "default")
    local token = var:set("outside")
    local seen, in_callback = eddy.run(function()
      local loop = eddy.get_running_loop()
      local seen = var:get()
      var:set("main's")
      local fut = loop:create_future()
      loop:call_later(0.005, function() fut:set_result(var:get()) end)
      var:set("changed after scheduling")
      return seen, fut:await()
    end)
    assert.equals("outside", seen)
    assert.equals("main's", in_callback)
    assert.equals("outside", var:get())
    var:reset(token)
  end)

  it("§8 contextvars: add_done_callback with {context = ctx} runs the callback in ctx "
     .. "itself: its sets reach ctx, as asyncio's context= (docs/contextvars.md: call_soon and "
     .. "create_task take ctx:run instead, and get a copy)", async(function(loop)
      local var = eddy.ContextVar("conformance_done", "none")
      local ctx = eddy.Context()
      local fut = loop:create_future()
      fut:add_done_callback(function() var:set("set by the callback") end, {context = ctx})
      fut:set_result(true)
      turns()
      assert.equals("set by the callback", ctx:get(var))
      assert.equals("none", var:get())
    end))
end)
