-- Synchronization primitives (API.md §8), ported from CPython's
-- Lib/test/test_asyncio/test_locks.py (test names cited).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error, turns = checks.expect_error, checks.turns

describe("Lock", function()
  it("test_repr", function()
    local lock = eddy.Lock()
    assert.matches("unlocked", tostring(lock))
  end)

  it("test_lock: acquire returns a truthy guard; release unlocks", async(function()
    local lock = eddy.Lock()
    local guard = lock:acquire()
    assert.truthy(guard)
    assert.is_true(lock:locked())
    lock:release()
    assert.is_false(lock:locked())
  end))

  it("test_acquire: waiters get the lock in FIFO order", async(function(loop)
    local lock = eddy.Lock()
    local result = {}
    assert.truthy(lock:acquire())
    local function c(i)
      return function()
        lock:acquire()
        result[#result + 1] = i
        return true
      end
    end
    local t1 = loop:create_task(c(1))
    local t2 = loop:create_task(c(2))
    turns()
    assert.same({}, result)
    lock:release()
    turns()
    assert.same({1}, result)
    turns()
    assert.same({1}, result)
    local t3 = loop:create_task(c(3))
    lock:release()
    turns()
    assert.same({1, 2}, result)
    lock:release()
    turns()
    assert.same({1, 2, 3}, result)
    assert.is_true(t1:result() and t2:result() and t3:result())
  end))

  it("test_acquire_cancel", async(function(loop)
    local lock = eddy.Lock()
    assert.truthy(lock:acquire())
    local task = loop:create_task(function() return lock:acquire() end)
    loop:call_soon(function() task:cancel() end)
    expect_error(errors.CancelledError, task.await, task)
    assert.is_true(task:cancelled())
    assert.is_true(lock:locked())
  end))

  it("test_cancel_race", async(function(loop)
    -- A waiter cancelled while another one holds the lock must not keep
    -- the next waiter from getting it.
    local lock = eddy.Lock()
    local fa, fb, fc = false, false, false
    local function lockit(name)
      lock:acquire()
      if name == "A" then fa = true elseif name == "B" then fb = true else fc = true end
    end
    lock:acquire()
    local ta = loop:create_task(lockit, "A")
    turns()
    local tb = loop:create_task(lockit, "B")
    turns()
    local tc = loop:create_task(lockit, "C")
    turns()
    ta:cancel()
    turns()
    assert.is_true(ta:cancelled())
    lock:release()  -- this wakes B
    turns()
    assert.is_true(fb)
    assert.is_false(fc)
    lock:release()
    turns()
    assert.is_true(fc)
    assert.is_true(tb:done() and tc:done())
  end))

  it("test_cancel_release_race", async(function(loop)
    -- A waiter woken by release() and cancelled before it runs passes
    -- the lock on.
    local lock = eddy.Lock()
    local t2_running, t3_running = false, false
    lock:acquire()
    local t1 = loop:create_task(function() lock:acquire() end)
    local t2 = loop:create_task(function() t2_running = true; lock:acquire() end)
    local t3 = loop:create_task(function() t3_running = true; lock:acquire(); lock:release() end)
    turns()
    lock:release()  -- wakes t1
    t1:cancel()
    t2:cancel()
    turns(2)
    assert.is_true(t1:cancelled() and t2:cancelled())
    assert.is_true(t3:done())
    assert.is_true(t2_running and t3_running)
  end))

  it("test_finished_waiter_cancelled", async(function(loop)
    local lock = eddy.Lock()
    local t1 = loop:create_task(function() lock:acquire() end)
    turns()
    assert.is_true(lock:locked())
    local t2 = loop:create_task(function() lock:acquire() end)
    turns()
    lock:release()  -- t2 is woken
    t2:cancel()
    turns()
    assert.is_false(lock:locked())  -- t2 handed the lock back
    assert.is_true(t1:done() and t2:cancelled())
  end))

  it("test_cancel_race (CPython's order): the holder releases as the head waiter is cancelled", async(function(loop)
    local lock = eddy.Lock()
    local function lockit(blocker)
      lock:acquire()
      local ok, err = pcall(function() if blocker then blocker:await() end end)
      lock:release()
      if not ok then error(err, 0) end
    end
    local fa = loop:create_future()
    local ta = loop:create_task(lockit, fa)
    turns()
    assert.is_true(lock:locked())
    local tb = loop:create_task(lockit)
    turns()
    local tc = loop:create_task(lockit)
    turns()
    assert.equals(2, #lock._waiters)
    fa:set_result(nil)
    tb:cancel()
    assert.is_true(lock._waiters[lock._waiters.head]:cancelled())
    turns()
    assert.is_false(lock:locked())  -- B, cancelled, woke C for it
    assert.is_true(ta:done() and tb:cancelled())
    tc:await()
  end))

  it("test_cancel_release_race (CPython's order): cancel the head waiter, then release", async(function(loop)
    local lock = eddy.Lock()
    local lock_count, call_count = 0, 0
    local function lockit()
      call_count = call_count + 1
      lock:acquire()
      lock_count = lock_count + 1
    end
    lock:acquire()
    local t1 = loop:create_task(lockit)
    local t2 = loop:create_task(lockit)
    local t3 = loop:create_task(lockit)
    turns()
    loop:call_soon(function() t1:cancel(); lock:release() end)
    expect_error(errors.CancelledError, t1.await, t1)
    assert.equals(1, lock_count)  -- only t2 took the lock
    assert.equals(3, call_count)
    assert.is_true(t1:cancelled() and t2:done())
    t3:cancel()
    turns()
    assert.is_true(t3:cancelled())
  end))

  it("test_finished_waiter_cancelled (CPython's order): a newcomer takes a lock whose waiters are all cancelled",
     async(function(loop)
    local lock = eddy.Lock()
    lock:acquire()
    local tb = loop:create_task(function() return lock:acquire() end)
    turns()
    assert.equals(1, #lock._waiters)
    local tc = loop:create_task(function() return lock:acquire() end)
    tb:cancel()
    lock:release()
    turns()
    assert.is_true(lock:locked())
    assert.is_true(tb:cancelled())
    tc:await()
  end))

  it("test_release_not_acquired: RuntimeError", function()
    expect_error(errors.RuntimeError, eddy.Lock().release, eddy.Lock())
  end)

  it("test_release_no_waiters", async(function()
    local lock = eddy.Lock()
    lock:acquire()
    assert.is_true(lock:locked())
    lock:release()
    assert.is_false(lock:locked())
  end))

  it("test_context_manager: <close> releases, also on error", async(function()
    local lock = eddy.Lock()
    do
      local _ <close> = lock:acquire()
      assert.is_true(lock:locked())
    end
    assert.is_false(lock:locked())
    local ok = pcall(function()
      local _ <close> = lock:acquire()
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_false(lock:locked())
  end))

  it("every suspending method called in a plain callback names itself (API.md §1)", async(function(loop)
    local lock, sem, ev, cond = eddy.Lock(), eddy.Semaphore(0), eddy.Event(), eddy.Condition()
    lock:acquire()
    cond:acquire()
    local errs = checks.from_callback(loop, {
      {"acquire", lock.acquire, lock},
      {"sem", sem.acquire, sem},
      {"wait", ev.wait, ev},
      {"cond", cond.wait, cond},
    })
    assert.matches("^RuntimeError: acquire%(%) cannot suspend here", errs.acquire)
    assert.matches("^RuntimeError: acquire%(%) cannot suspend here", errs.sem)
    assert.matches("^RuntimeError: wait%(%) cannot suspend here", errs.wait)
    assert.matches("^RuntimeError: wait%(%) cannot suspend here", errs.cond)
    assert.is_true(cond:locked())  -- checked before the lock is let go
    cond:release()
  end))

  -- API.md §1 and §11 to the letter: a suspending method raises from a
  -- plain callback whether or not it would have had to wait, before it
  -- changes anything (docs/sync.md).
  it("every suspending method raises from a plain callback even when it could complete at once, changing nothing",
     async(function(loop)
    local lock, sem, bsem = eddy.Lock(), eddy.Semaphore(1), eddy.BoundedSemaphore(1)
    local ev, cond, barrier = eddy.Event(), eddy.Condition(), eddy.Barrier(1)
    ev:set()
    local predicate_ran = false
    local errs = checks.from_callback(loop, {
      {"lock", lock.acquire, lock},
      {"sem", sem.acquire, sem},
      {"bsem", bsem.acquire, bsem},
      {"event", ev.wait, ev},
      {"cond_acquire", cond.acquire, cond},
      {"wait_for", cond.wait_for, cond, function() predicate_ran = true return true end},
      {"barrier_wait", barrier.wait, barrier},  -- one party: it would pass at once
      {"reset", barrier.reset, barrier},
      {"abort", barrier.abort, barrier},
    })
    for key, name in pairs {lock = "acquire", sem = "acquire", bsem = "acquire", event = "wait",
                            cond_acquire = "acquire", wait_for = "wait_for", barrier_wait = "wait",
                            reset = "reset", abort = "abort"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here: .*eddy%.run", errs[key])
    end
    assert.is_false(predicate_ran)
    assert.is_false(lock:locked())
    assert.is_false(sem:locked())
    assert.is_false(bsem:locked())
    expect_error(errors.ValueError, bsem.release, bsem)  -- still at its initial value
    assert.is_false(cond:locked())
    assert.is_false(barrier.broken)
    assert.equal(0, barrier.n_waiting)
    -- In a task each of them returns at once.
    lock:acquire()
    sem:acquire()
    bsem:acquire()
    assert.is_true(ev:wait())
    assert.is_true(cond:wait_for(function() return true end))
    assert.equal(0, barrier:wait())
  end))

  it("at the main chunk's top level, a wait nothing can end names its method", function()
    local cli = require "cli_helper"
    local res = cli.eddy("-e " .. cli.q([[
      local eddy = require "eddy"
      local lock, sem, ev, cond = eddy.Lock(), eddy.Semaphore(0), eddy.Event(), eddy.Condition()
      lock:acquire()
      print(select(2, pcall(lock.acquire, lock)))
      print(select(2, pcall(sem.acquire, sem)))
      print(select(2, pcall(ev.wait, ev)))
      cond:acquire()
      print(select(2, pcall(cond.wait, cond)))
    ]]))
    assert.equal("", res.err)
    local tail = "(): the loop has no live work left that could complete this future\n"
    assert.equal("RuntimeError: acquire" .. tail .. "RuntimeError: acquire" .. tail
                 .. "RuntimeError: wait" .. tail .. "RuntimeError: wait" .. tail, res.out)
  end)
end)

describe("Event", function()
  it("test_repr", function()
    local ev = eddy.Event()
    assert.matches("unset", tostring(ev))
    ev:set()
    assert.matches("set", tostring(ev))
  end)

  it("test_wait: every waiter wakes on set()", async(function(loop)
    local ev = eddy.Event()
    assert.is_false(ev:is_set())
    local result = {}
    local function c(i) return function() if ev:wait() then result[#result + 1] = i end end end
    local t1, t2 = loop:create_task(c(1)), loop:create_task(c(2))
    turns()
    assert.same({}, result)
    local t3 = loop:create_task(c(3))
    ev:set()
    turns()
    assert.same({3, 1, 2}, result)
    assert.is_true(t1:done() and t2:done() and t3:done())
  end))

  it("test_wait_on_set", async(function()
    local ev = eddy.Event()
    ev:set()
    assert.is_true(ev:wait())
  end))

  it("test_wait_cancel", async(function(loop)
    local ev = eddy.Event()
    local wait = loop:create_task(function() return ev:wait() end)
    loop:call_soon(function() wait:cancel() end)
    expect_error(errors.CancelledError, wait.await, wait)
    assert.equals(0, #ev._waiters)
  end))

  it("test_clear", function()
    local ev = eddy.Event()
    ev:set()
    assert.is_true(ev:is_set())
    ev:clear()
    assert.is_false(ev:is_set())
  end)

  it("test_clear_with_waiters: a waiter woken before clear() still wakes", async(function(loop)
    local ev = eddy.Event()
    local woke = false
    local t = loop:create_task(function() ev:wait(); woke = true end)
    turns()
    ev:set()
    ev:clear()
    assert.is_false(ev:is_set())
    ev:set(); ev:set()
    assert.equals(1, #ev._waiters)
    turns()
    assert.is_true(woke)
    assert.equals(0, #ev._waiters)
    assert.is_true(t:done())
  end))
end)

describe("Condition", function()
  it("test_wait: notify(1) wakes waiters in FIFO order, each with the lock", async(function(loop)
    local cond = eddy.Condition()
    local result = {}
    local function c(i)
      return function()
        cond:acquire()
        if cond:wait() then result[#result + 1] = i end
        assert.is_true(cond:locked())
        cond:release()
      end
    end
    local t1, t2, t3 = loop:create_task(c(1)), loop:create_task(c(2)), loop:create_task(c(3))
    turns()
    assert.same({}, result)
    assert.is_false(cond:locked())
    cond:acquire()
    cond:notify()
    turns()
    assert.same({}, result)
    assert.is_true(cond:locked())
    cond:release()
    turns()
    assert.same({1}, result)
    cond:acquire(); cond:notify(2); cond:release()
    turns(3)
    assert.same({1, 2, 3}, result)
    assert.is_true(t1:done() and t2:done() and t3:done())
  end))

  it("test_wait_cancel: the lock is held again after cancellation", async(function(loop)
    local cond = eddy.Condition()
    cond:acquire()
    local wait = loop:create_task(function() return cond:wait() end)
    loop:call_soon(function() wait:cancel() end)
    expect_error(errors.CancelledError, wait.await, wait)
    assert.equals(0, #cond._waiters)
    assert.is_true(cond:locked())
  end))

  it("test_wait_cancel_contested", async(function(loop)
    local cond = eddy.Condition()
    cond:acquire()
    assert.is_true(cond:locked())
    local wait_task = loop:create_task(function() return cond:wait() end)
    turns()
    assert.is_false(cond:locked())
    -- Notify, but contest the lock before cancelling.
    cond:acquire()
    assert.is_true(cond:locked())
    cond:notify()
    loop:call_soon(function() wait_task:cancel() end)
    loop:call_soon(function() cond:release() end)
    local ok = pcall(wait_task.await, wait_task)
    -- Cancelled, or woken by the notify: either way it holds the lock.
    assert.is_true(cond:locked())
    assert.is_true(ok or wait_task:cancelled())
  end))

  it("test_wait_cancel_after_notify", async(function(loop)
    -- Cancelled after notify: still leaves holding the lock.
    local cond = eddy.Condition()
    local waited = false
    local function wait_on_cond()
      cond:acquire()
      waited = true
      cond:wait()
    end
    local wait_task = loop:create_task(wait_on_cond)
    turns()
    assert.is_true(waited)
    cond:acquire()
    cond:notify()
    loop:call_soon(function() wait_task:cancel() end)
    loop:call_soon(function() cond:release() end)
    pcall(wait_task.await, wait_task)
    assert.is_true(cond:locked())
  end))

  it("test_wait_unacquired: RuntimeError", async(function()
    local cond = eddy.Condition()
    expect_error(errors.RuntimeError, cond.wait, cond)
  end))

  it("test_wait_for", async(function(loop)
    local cond = eddy.Condition()
    local presult = false
    local result = {}
    local function predicate() return presult end
    local t = loop:create_task(function()
      cond:acquire()
      if cond:wait_for(predicate) then result[#result + 1] = 1; cond:release() end
      return true
    end)
    turns()
    assert.same({}, result)
    cond:acquire(); cond:notify(); cond:release()
    turns()
    assert.same({}, result)
    presult = true
    cond:acquire(); cond:notify(); cond:release()
    turns()
    assert.same({1}, result)
    assert.is_true(t:result())
  end))

  it("test_wait_for_unacquired: RuntimeError unless the predicate holds", async(function()
    local cond = eddy.Condition()
    assert.equals(123, cond:wait_for(function() return 123 end))
    expect_error(errors.RuntimeError, cond.wait_for, cond, function() return false end)
  end))

  -- a task body that waits on cond, then notes i in result
  local function notified(cond, result, i) return function()
    cond:acquire()
    if cond:wait() then result[#result + 1] = i; cond:release() end
  end end

  it("test_notify_all", async(function(loop)
    local cond = eddy.Condition()
    local result = {}
    loop:create_task(notified(cond, result, 1)); loop:create_task(notified(cond, result, 2))
    turns()
    cond:acquire(); cond:notify_all(); cond:release()
    turns(2)
    assert.same({1, 2}, result)
  end))

  it("test_notify: notify(n) past the number of waiters wakes them all", async(function(loop)
    local cond = eddy.Condition()
    local result = {}
    for i = 1, 3 do loop:create_task(notified(cond, result, i)) end
    turns()
    cond:acquire(); cond:notify(1); cond:release()
    turns()
    assert.same({1}, result)
    cond:acquire(); cond:notify(1); cond:notify(2048); cond:release()
    turns()
    assert.same({1, 2, 3}, result)
  end))

  it("test_timeout_in_block: wait_for(cond:wait) times out holding the lock again", async(function()
    local cond = eddy.Condition()
    local _ <close> = cond:acquire()
    expect_error(errors.TimeoutError, eddy.wait_for, function() return cond:wait() end, 0.01)
    assert.is_true(cond:locked())
  end))

  it("test_notify_unacquired / test_notify_all_unacquired: RuntimeError", function()
    local cond = eddy.Condition()
    expect_error(errors.RuntimeError, cond.notify, cond)
    expect_error(errors.RuntimeError, cond.notify_all, cond)
  end)

  it("test_explicit_lock: a Condition shares the given lock", async(function()
    local lock = eddy.Lock()
    local cond = eddy.Condition(lock)
    assert.equals(lock, cond._lock)
    lock:acquire()
    assert.is_true(cond:locked())
    cond:release()
    assert.is_false(lock:locked())
    assert.has_error(function() eddy.Condition(42) end)
  end))

  it("test_context_manager", async(function()
    local cond = eddy.Condition()
    do
      local _ <close> = cond:acquire()
      assert.is_true(cond:locked())
    end
    assert.is_false(cond:locked())
  end))

  it("test_cancelled_wakeup: a cancelled notified waiter passes the wakeup on", async(function(loop)
    local cond = eddy.Condition()
    local state = 0
    local function consumer()
      local _ <close> = cond:acquire()
      while true do
        cond:wait_for(function() return state ~= 0 end)
        if state < 0 then return end
        state = state - 1
      end
    end
    local c = {}
    for i = 1, 5 do c[i] = loop:create_task(consumer) end
    turns()
    do
      local _ <close> = cond:acquire()
      state = state + 1
      cond:notify()
      c[1]:cancel()  -- notified, then cancelled: another must take it
    end
    turns(3)
    assert.equals(0, state)
    do
      local _ <close> = cond:acquire()
      state = -1
      cond:notify_all()
    end
    eddy.gather(c[1], c[2], c[3], c[4], c[5], {return_exceptions = true})
    assert.is_true(c[1]:cancelled())
  end))

  it("test_cancelled_wakeup_relock: cancelled while taking the lock again, it passes the wakeup on", async(function(loop)
    local cond = eddy.Condition()
    local state = 0
    local function consumer()
      local _ <close> = cond:acquire()
      while true do
        cond:wait_for(function() return state ~= 0 end)
        if state < 0 then return end
        state = state - 1
      end
    end
    local c = {loop:create_task(consumer), loop:create_task(consumer)}
    turns()
    do
      local _ <close> = cond:acquire()
      state = state + 1
      cond:notify(1)
      turns()  -- c[1] wakes up and queues on the lock we hold
      c[1]:cancel()
      -- wait_for lets the lock go: c[1] takes it, is cancelled, and must
      -- hand the notification to c[2], which consumes the item (nobody
      -- notifies us: the timeout ends the wait, as in CPython's test; 0.5 s,
      -- as the hand-over takes several iterations and a loaded machine may
      -- stall between them)
      pcall(function()
        local _ <close> = eddy.timeout(0.5)
        cond:wait_for(function() return state == 0 end)
      end)
      assert.equals(0, state)
      state = -1
      cond:notify_all()
    end
    c[2]:await()
    assert.is_true(c[1]:cancelled())
  end))

  it("test_cancelled_error_wakeup / test_cancelled_error_re_aquire: the cancellation is raised holding the lock", async(function(loop)
    for _, relock in ipairs {false, true} do
      local cond = eddy.Condition()
      local wake = false
      local raised, held
      local task = loop:create_task(function()
        local _ <close> = cond:acquire()
        local ok, err = pcall(cond.wait_for, cond, function() return wake end)
        assert.is_false(ok)
        raised, held = err, cond:locked()
        error(err, 0)
      end)
      turns()
      if relock then
        cond:acquire()
        wake = true
        cond:notify()
        turns()  -- the task now waits to take the lock again
        task:cancel("foo")
        cond:release()
      else
        task:cancel("foo")
      end
      local err = expect_error(errors.CancelledError, task.await, task)
      assert.equals("foo", err.message)
      assert.is_true(errors.is(raised, errors.CancelledError))
      assert.equals("foo", raised.message)
      assert.is_true(held)
      assert.is_false(cond:locked())
    end
  end))

  it("wait_for and notify check their arguments", async(function()
    local cond = eddy.Condition()
    local _ <close> = cond:acquire()
    checks.argerror(function() cond:wait_for(nil) end, 1, "wait_for")
    checks.argerror(function() cond:notify("all") end, 1, "notify")
    assert.equals("yes", cond:wait_for(setmetatable({}, {__call = function() return "yes" end})))
  end))
end)

describe("Semaphore", function()
  it("test_initial_value_zero", async(function()
    local sem = eddy.Semaphore(0)
    assert.is_true(sem:locked())
  end))

  it("test_semaphore / test_repr: a new Semaphore is unlocked, value 1", function()
    local sem = eddy.Semaphore()
    assert.matches("unlocked, value:1", tostring(sem))
  end)

  it("test_semaphore_value: bad values; argument errors at the caller's line", function()
    expect_error(errors.ValueError, eddy.Semaphore, -1)
    checks.argerror(function() eddy.Semaphore("x") end, 1, "Semaphore")
    checks.argerror(function() eddy.BoundedSemaphore(1.5) end, 1, "BoundedSemaphore")
    checks.argerror(function() eddy.Barrier(2.5) end, 1, "Barrier")
    checks.blames_caller(eddy.Semaphore, "x")
    checks.blames_caller(eddy.BoundedSemaphore, 1.5)
    checks.blames_caller(eddy.Barrier, 2.5)
    -- an integral float is a count (a Lua computation may well give 2.0)
    assert.matches("value:2", tostring(eddy.Semaphore(2.0)))
    assert.equals(3, eddy.Barrier(3.0).parties)
    assert.equals("integer", math.type(eddy.Barrier(3.0).parties))
  end)

  it("test_acquire: FIFO hand-over, value never below 0", async(function(loop)
    local sem = eddy.Semaphore(3)
    local result = {}
    assert.truthy(sem:acquire())
    assert.truthy(sem:acquire())
    assert.is_false(sem:locked())
    local function c(i) return function() sem:acquire(); result[#result + 1] = i; return true end end
    local t1, t2, t3 = loop:create_task(c(1)), loop:create_task(c(2)), loop:create_task(c(3))
    turns()
    assert.same({1}, result)
    assert.is_true(sem:locked())
    assert.equals(2, #sem._waiters)
    assert.equals(0, sem._value)
    local t4 = loop:create_task(c(4))
    sem:release(); sem:release()
    assert.equals(0, sem._value)
    turns()
    assert.equals(0, sem._value)
    assert.equals(3, #result)
    assert.is_true(sem:locked())
    assert.equals(1, #sem._waiters)
    local ndone = 0
    for _, t in ipairs {t2, t3, t4} do
      if t:done() and t:result() then ndone = ndone + 1 end
    end
    assert.equals(2, ndone)
    assert.is_true(t1:result())
    sem:release()
    eddy.gather(t2, t3, t4)
  end))

  it("test_acquire_cancel", async(function(loop)
    local sem = eddy.Semaphore()
    sem:acquire()
    local acquire = loop:create_task(function() return sem:acquire() end)
    loop:call_soon(function() acquire:cancel() end)
    expect_error(errors.CancelledError, acquire.await, acquire)
    assert.equals(0, #sem._waiters)
  end))

  it("test_acquire_cancel_before_awoken", async(function(loop)
    local sem = eddy.Semaphore(0)
    local t = {}
    for i = 1, 4 do t[i] = loop:create_task(function() return sem:acquire() end) end
    turns()
    t[1]:cancel()
    t[2]:cancel()
    sem:release()
    turns(2)
    local num_done = 0
    for i = 3, 4 do if t[i]:done() then num_done = num_done + 1 end end
    assert.equals(1, num_done)
    assert.is_true(t[3]:done())
    assert.is_false(t[4]:done())
    t[4]:cancel()
    turns()
  end))

  it("test_acquire_hang", async(function(loop)
    local sem = eddy.Semaphore(0)
    local t1 = loop:create_task(function() return sem:acquire() end)
    local t2 = loop:create_task(function() return sem:acquire() end)
    turns()
    t1:cancel()
    sem:release()
    turns(2)
    assert.is_true(sem:locked())
    assert.is_true(t2:done())
  end))

  it("test_acquire_no_hang", async(function(loop)
    local sem = eddy.Semaphore(1)
    local function c1() local _ <close> = sem:acquire(); eddy.sleep(0) end
    local function c2() local _ <close> = sem:acquire() end
    local t1, t2 = loop:create_task(c1), loop:create_task(c2)
    local t3 = loop:create_task(c2)
    turns()
    t2:cancel()
    eddy.gather(t1, t3)
    assert.is_true(t2:cancelled())
  end))

  it("test_release_not_acquired: BoundedSemaphore raises ValueError", function()
    local sem = eddy.BoundedSemaphore()
    expect_error(errors.ValueError, sem.release, sem)
  end)

  it("test_release_no_waiters", async(function()
    local sem = eddy.Semaphore()
    sem:acquire()
    assert.is_true(sem:locked())
    sem:release()
    assert.is_false(sem:locked())
  end))

  it("test_context_manager", async(function()
    local sem = eddy.Semaphore(2)
    do
      local _ <close> = sem:acquire()
      assert.equals(1, sem._value)
    end
    assert.equals(2, sem._value)
  end))

  it("test_acquire_fifo_order", async(function(loop)
    local sem = eddy.Semaphore(1)
    local result = {}
    local function coro(tag)
      local _ <close> = sem:acquire()
      result[#result + 1] = tag .. "_1"
      eddy.sleep(0.001)
      result[#result + 1] = tag .. "_2"
    end
    eddy.gather(function() coro("c1") end, function() coro("c2") end, function() coro("c3") end)
    assert.same({"c1_1", "c1_2", "c2_1", "c2_2", "c3_1", "c3_2"}, result)
  end))

  it("test_acquire_fifo_order_2: a newcomer waits behind queued waiters", async(function(loop)
    local sem = eddy.Semaphore(1)
    local result = {}
    local function c1(fut) sem:acquire(); fut:await(); result[#result + 1] = 1; sem:release() end
    local function c2() sem:acquire(); result[#result + 1] = 2; sem:release() end
    local function c3() sem:acquire(); result[#result + 1] = 3; sem:release() end
    local fut = loop:create_future()
    local t1 = loop:create_task(c1, fut)
    local t2 = loop:create_task(c2)
    turns()
    fut:set_result(true)
    local t3 = loop:create_task(c3)
    eddy.gather(t1, t2, t3)
    assert.same({1, 2, 3}, result)
  end))

  it("test_acquire_fifo_order_3: cancelled waiters do not block the queue", async(function(loop)
    local sem = eddy.Semaphore(0)
    local result = {}
    local function c(i) return function() sem:acquire(); result[#result + 1] = i; sem:release() end end
    local t1, t2, t3 = loop:create_task(c(1)), loop:create_task(c(2)), loop:create_task(c(3))
    turns()
    t1:cancel()
    sem:release()
    eddy.gather(t1, t2, t3, {return_exceptions = true})
    assert.same({2, 3}, result)
  end))

  it("test_acquire_fifo_order_4: one acquire wakes every waiter FIFO allows", async(function(loop)
    local sem = eddy.Semaphore(0)
    local result = {}
    local t4
    local function c4() result[#result + 1] = 4; return true end
    local function c1()
      assert.equals(0, sem._value)
      sem:acquire()
      assert.equals(0, sem._value)  -- every waiter was woken
      t4 = loop:create_task(c4)     -- runs after c3, not c2
      result[#result + 1] = 1
      return true
    end
    local function c2()
      sem:release(); sem:release(); sem:release()
      assert.equals(2, sem._value)
      assert.is_true(sem:locked())  -- c1 has not run yet
      sem:acquire()
      result[#result + 1] = 2
      return true
    end
    local function c3()
      sem:acquire()
      assert.is_true(sem:locked())
      result[#result + 1] = 3
      return true
    end
    local t1, t2, t3 = loop:create_task(c1), loop:create_task(c2), loop:create_task(c3)
    turns()
    assert.equals(2, sem._value)
    assert.equals(3, #sem._waiters)
    turns()
    eddy.gather(t1, t2, t3, t4)
    assert.same({1, 2, 3, 4}, result)
  end))

  it("BoundedSemaphore over-release raises ValueError", async(function()
    local sem = eddy.BoundedSemaphore(2)
    sem:acquire()
    sem:release()
    expect_error(errors.ValueError, sem.release, sem)
  end))
end)

describe("Barrier", function()
  local function run_tasks(loop, n, fn)
    local tasks = {}
    for i = 1, n do tasks[i] = loop:create_task(fn) end
    return table.unpack({eddy.gather(table.unpack(tasks))}, 1, n)
  end

  it("test_barrier_parties: bad values", function()
    expect_error(errors.ValueError, eddy.Barrier, 0)
    expect_error(errors.ValueError, eddy.Barrier, -4)
    assert.has_error(function() eddy.Barrier() end)
    assert.equals(5, eddy.Barrier(5).parties)
  end)

  it("test_barrier / test_repr: a new barrier is filling; read-only fields", function()
    local b = eddy.Barrier(3)
    assert.matches("filling", tostring(b))
    assert.equals(0, b.n_waiting)
    assert.is_false(b.broken)
    assert.has_error(function() b.parties = 4 end)
  end)

  it("test_filling_one_task", async(function()
    local b = eddy.Barrier(1)
    assert.equals(0, b:wait())
    assert.equals(0, b:wait())
    assert.equals(0, b.n_waiting)
    assert.is_false(b.broken)
  end))

  it("test_filling_task_by_task and test_filling_tasks_check_return_value", async(function(loop)
    local self_parties = 3
    local b = eddy.Barrier(self_parties)
    local r = {run_tasks(loop, self_parties, function() return b:wait() end)}
    table.sort(r)
    assert.same({0, 1, 2}, r)
    assert.equals(0, b.n_waiting)
    assert.is_false(b.broken)
  end))

  it("test_filling_tasks_wait_twice", async(function(loop)
    local b = eddy.Barrier(3)
    local results = {}
    run_tasks(loop, 3, function()
      b:wait(); results[#results + 1] = true
      b:wait(); results[#results + 1] = true
    end)
    assert.equals(6, #results)
    assert.equals(0, b.n_waiting)
  end))

  it("test_filling_tasks_cancel_one", async(function(loop)
    local b = eddy.Barrier(3)
    local t1 = loop:create_task(function() return b:wait() end)
    turns()
    assert.equals(1, b.n_waiting)
    t1:cancel()
    turns()
    assert.equals(0, b.n_waiting)
    local r = {run_tasks(loop, 3, function() return b:wait() end)}
    assert.equals(3, #r)
    assert.is_true(t1:cancelled())
  end))

  it("test_reset_barrier_while_tasks_waiting", async(function(loop)
    local b = eddy.Barrier(3)
    local results = {}
    local function coro()
      local ok, err = pcall(b.wait, b)
      results[#results + 1] = ok or errors.is(err, errors.BrokenBarrierError) and "broken"
    end
    local t1, t2 = loop:create_task(coro), loop:create_task(coro)
    turns()
    assert.equals(2, b.n_waiting)
    b:reset()
    eddy.gather(t1, t2)
    assert.same({"broken", "broken"}, results)
    assert.equals(0, b.n_waiting)
    assert.is_false(b.broken)
  end))

  it("test_abort_barrier", async(function(loop)
    local b = eddy.Barrier(3)
    local results = {}
    local function coro()
      local ok, err = pcall(b.wait, b)
      results[#results + 1] = errors.is(err, errors.BrokenBarrierError)
      assert.is_false(ok)
    end
    local t1, t2 = loop:create_task(coro), loop:create_task(coro)
    turns()
    b:abort()
    eddy.gather(t1, t2)
    assert.same({true, true}, results)
    assert.is_true(b.broken)
    expect_error(errors.BrokenBarrierError, b.wait, b)
  end))

  it("test_abort_barrier_when_exception_then_resetting", async(function(loop)
    local b = eddy.Barrier(2)
    local t = loop:create_task(function() return b:wait() end)
    turns()
    b:abort()
    expect_error(errors.BrokenBarrierError, t.await, t)
    b:reset()
    assert.is_false(b.broken)
    local r = {run_tasks(loop, 2, function() return b:wait() end)}
    table.sort(r)
    assert.same({0, 1}, r)
  end))

  it("test_draining_state: tasks arriving while draining wait for the next round", async(function(loop)
    local b = eddy.Barrier(2)
    local order = {}
    local function coro(name)
      b:wait(); order[#order + 1] = name
    end
    eddy.gather(function() coro("a") end, function() coro("b") end,
                function() coro("c") end, function() coro("d") end)
    table.sort(order)
    assert.same({"a", "b", "c", "d"}, order)
    assert.equals(0, b.n_waiting)
  end))
  it("test_repr: filling, draining, resetting, broken", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local waiters = {}
    local function add(n)
      for _ = 1, n do waiters[#waiters + 1] = loop:create_task(function() return b:wait() end) end
      turns()
    end
    add(2)
    assert.matches("filling", tostring(b))
    assert.matches("waiters:2/5", tostring(b), 1, true)
    add(b.parties - b.n_waiting)
    assert.matches("draining", tostring(b))
    add(2)
    b:reset()
    assert.matches("resetting", tostring(b))
    add(2)
    b:abort()
    assert.matches("broken", tostring(b))
    assert.is_true(b.broken)
    waiters[#waiters + 1] = {return_exceptions = true}
    eddy.gather(table.unpack(waiters))
  end))

  it("test_filling_one_task_twice", async(function(loop)
    local b = eddy.Barrier(1)
    local t1 = loop:create_task(function() return b:wait() end)
    turns()
    assert.equals(0, b.n_waiting)
    local t2 = loop:create_task(function() return b:wait() end)
    turns()
    assert.equals(t1:result(), t2:result())
    assert.equals(0, b.n_waiting)
    assert.is_false(b.broken)
  end))

  it("test_blocking_tasks_while_draining", async(function(loop)
    local N, rewait = 5, 2
    local b, b_nowaiting = eddy.Barrier(N), eddy.Barrier(N - rewait)
    local rewait_n = rewait
    run_tasks(loop, N, function()
      b:wait()
      if rewait_n > 0 then
        rewait_n = rewait_n - 1
        b:wait()
      else
        b_nowaiting:wait()  -- waits for the end of draining
        b:wait()
      end
    end)
    assert.equals(0, b.n_waiting)
  end))

  it("test_reset_barrier", async(function(loop)
    local b = eddy.Barrier(1)
    loop:create_task(function() b:reset() end)
    turns()
    assert.equals(0, b.n_waiting)
    assert.is_false(b.broken)
  end))

  it("test_reset_barrier_when_tasks_half_draining", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local results1 = {}
    local rest_of_tasks = N // 2
    run_tasks(loop, N, function()
      local ok, err = pcall(b.wait, b)
      if not ok then
        assert.is_true(errors.is(err, errors.BrokenBarrierError))
        results1[#results1 + 1] = true
      elseif rest_of_tasks == b._count then
        b:reset()  -- tasks still inside: they get BrokenBarrierError
      end
    end)
    assert.same({true, true}, results1)
    assert.equals(0, b.n_waiting)
    assert.not_matches("resetting", tostring(b))
    assert.is_false(b.broken)
  end))

  it("test_reset_barrier_when_tasks_half_draining_half_blocking", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local results1, results2 = {}, {}
    local blocking_tasks = N // 2
    local count = 0
    run_tasks(loop, N, function()
      local ok = pcall(b.wait, b)
      if not ok then
        results1[#results1 + 1] = true
        b:wait()  -- wait again to reach the parties
      else
        count = count + 1
        if count > blocking_tasks then
          b:reset()
          b:wait()
        else
          if not pcall(b.wait, b) then results2[#results2 + 1] = true end
        end
      end
    end)
    assert.same({true, true}, results1)
    assert.same({}, results2)
    assert.equals(0, b.n_waiting)
    assert.not_matches("resetting", tostring(b))
    assert.is_false(b.broken)
  end))

  it("test_reset_barrier_while_tasks_waiting_and_waiting_again", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local results1, results2 = {}, {}
    local tasks = {}
    for i = 1, N - 1 do
      tasks[i] = loop:create_task(function()
        if not pcall(b.wait, b) then results1[#results1 + 1] = true end
        b:wait()
        results2[#results2 + 1] = true
      end)
    end
    loop:create_task(function() b:reset() end)
    turns()
    loop:create_task(function() b:wait(); results2[#results2 + 1] = true end)
    eddy.gather(table.unpack(tasks))
    assert.is_false(b.broken)
    assert.equals(N - 1, #results1)
    turns()
    assert.equals(N, #results2)
    assert.equals(0, b.n_waiting)
  end))

  it("test_reset_barrier_while_tasks_draining", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local results1, results2, results3 = 0, 0, 0
    local count = 0
    run_tasks(loop, N, function()
      b:wait()
      count = count + 1
      if count == N then
        b:reset()  -- the last task out: nobody is inside any more
        b:wait()
      else
        if pcall(b.wait, b) then results1 = results1 + 1 else results2 = results2 + 1 end
      end
      b:wait()
      results3 = results3 + 1
    end)
    assert.is_false(b.broken)
    assert.equals(N - 1, results1)
    assert.equals(0, results2)
    assert.equals(N, results3)
    assert.equals(0, b.n_waiting)
  end))

  it("test_abort_barrier (a task aborts)", async(function(loop)
    local b = eddy.Barrier(1)
    loop:create_task(function() b:abort() end)
    turns()
    assert.equals(0, b.n_waiting)
    assert.is_true(b.broken)
  end))

  it("test_abort_barrier_when_tasks_half_draining_half_blocking", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local results1, results2 = 0, 0
    local blocking_tasks = N // 2
    local count = 0
    run_tasks(loop, N, function()
      local ok, err = pcall(b.wait, b)
      if not ok then
        assert.is_true(errors.is(err, errors.BrokenBarrierError))
        results1 = results1 + 1
      else
        count = count + 1
        if count > blocking_tasks then
          b:abort()
        else
          local ok2, err2 = pcall(b.wait, b)
          if not ok2 and errors.is(err2, errors.BrokenBarrierError) then
            results2 = results2 + 1
          end
        end
      end
    end)
    assert.is_true(b.broken)
    assert.equals(blocking_tasks, results1)
    assert.equals(N - blocking_tasks - 1, results2)
    assert.equals(0, b.n_waiting)
    assert.not_matches("resetting", tostring(b))
  end))

  it("test_abort_barrier_when_exception", async(function(loop)
    local N = 5
    local b = eddy.Barrier(N)
    local results1, results2 = 0, 0
    run_tasks(loop, N, function()
      local ok, err = pcall(function()
        local i = b:wait()
        if i == N // 2 then error("boom", 0) end
        b:wait()
        results1 = results1 + 1
      end)
      if ok then return end
      if errors.is(err, errors.BrokenBarrierError) then
        results2 = results2 + 1
      else
        b:abort()
      end
    end)
    assert.is_true(b.broken)
    assert.equals(0, results1)
    assert.equals(N - 1, results2)
    assert.equals(0, b.n_waiting)
  end))
end)

describe("constructors take no options, as asyncio's take no keyword", function()
  -- API.md §1: "A trailing plain table (no metatable) after all
  -- positionals is the options table"; asyncio's primitives have no
  -- keyword-only parameter (3.10 removed loop=, a TypeError since), so
  -- any option is an unexpected keyword: an argument error.
  it("test_lock_doesnt_accept_loop_parameter: Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier refuse one", function()
    local argerror = checks.argerror
    checks.raises(function() eddy.Lock({loop = true}) end,
                  "bad argument #1 to 'Lock' (unknown option 'loop')")
    argerror(function() eddy.Event({loop = true}) end, 1, "Event")
    argerror(function() eddy.Condition(nil, {loop = true}) end, 2, "Condition")
    argerror(function() eddy.Condition(eddy.Lock(), {loop = true}) end, 2, "Condition")
    argerror(function() eddy.Semaphore(2, {loop = true}) end, 2, "Semaphore")
    argerror(function() eddy.BoundedSemaphore(nil, {loop = true}) end, 2, "BoundedSemaphore")
    argerror(function() eddy.Barrier(2, {loop = true}) end, 2, "Barrier")
    -- an argument past the positionals that is no options table, as
    -- asyncio's TypeError for too many positional arguments
    checks.raises(function() eddy.Lock(5) end,
                  "bad argument #1 to 'Lock' (options table expected, got number)")
    -- an empty table holds no keyword
    assert.is_false(eddy.Lock({}):locked())
    assert.is_false(eddy.Event({}):is_set())
    assert.is_false(eddy.Condition(nil, {}):locked())
    assert.is_false(eddy.BoundedSemaphore(1, {}):locked())
    assert.equal(2, eddy.Barrier(2, {}).parties)
  end)
end)

describe("primitives bound to a loop", function()
  -- CPython's test sets the private _loop; here a real wait in another
  -- loop binds the primitive to it first (asyncio's _LoopBoundMixin).
  it("test_ambiguous_loops: a lock or a condition another loop waited on refuses to wait here",
     function()
    local lock, cond = eddy.Lock(), eddy.Condition()
    local first = eddy.new_event_loop()
    first:run_until_complete(function()
      local held <close> = lock:acquire()
      local waiters = {
        first:create_task(function() local _ <close> = lock:acquire() end),
        first:create_task(function() local _ <close> = cond:acquire(); cond:wait() end),
      }
      eddy.sleep(0)  -- both wait now: lock and cond are bound to 'first'
      for _, t in ipairs(waiters) do t:cancel() end
      eddy.wait(waiters, {timeout = 5})
    end)
    first:close()

    local second = eddy.new_event_loop()
    second:run_until_complete(function()
      -- wrong_loop_in_lock: acquired at once, then a Condition on it waits
      local _ <close> = lock:acquire()
      local c = eddy.Condition(lock)
      local err = expect_error(errors.RuntimeError, eddy.wait_for, function() c:acquire() end, 5)
      assert.matches("is bound to a different event loop", tostring(err))
      -- wrong_loop_in_cond: the condition's own wait
      local _c <close> = cond:acquire()
      err = expect_error(errors.RuntimeError, eddy.wait_for, function() cond:wait() end, 5)
      assert.matches("is bound to a different event loop", tostring(err))
    end)
    second:close()
  end)
end)
