-- tools/fuzz/cancel_storm.lua: random workers on locks, semaphores,
-- conditions, events, barriers and queues under a storm of cancellations
-- must leave every invariant whole, for a fixed set of seeds; and the
-- storm finds asyncio's old cancellation bugs when they are put back.
-- A long campaign: docs/testing.md.
local cli = require "cli_helper"

local SEEDS = {1, 2, 3, 4}
local STEPS = 500

-- Run the fuzzer; 'prelude' (Lua source) runs first, in the same state.
local function storm(seed, steps, prelude)
  local pre = prelude and ("-e " .. cli.q(("dofile(%q)"):format(cli.tempfile(prelude, ".lua"))) .. " ")
              or ""
  local r = cli.eddy(("%stools/fuzz/cancel_storm.lua %d %d"):format(pre, seed, steps), {timeout = 60})
  assert.is_nil(r.err:match("Sanitizer") or r.err:match("runtime error"), r.err)
  return r
end

describe("tools/fuzz/cancel_storm.lua", function()
  for _, seed in ipairs(SEEDS) do
    it(("seed %d, %d steps: no violation"):format(seed, STEPS), function()
      local r = storm(seed, STEPS)
      assert(r.code == 0 and r.out:find(("ok %d %d:"):format(seed, STEPS), 1, true),
             ("exit %s; rerun: %s tools/fuzz/cancel_storm.lua %d %d\n%s")
               :format(tostring(r.code), cli.binary, seed, STEPS, r.err:sub(1, 3000)))
    end)
  end
end)

-- What each mutant starts with: eddy, and wait_in(waiters, what), which
-- queues a new future in a Deque of waiters, awaits it and takes it out
-- again (locks.lua's wait_on), returning pcall's results.
local MUTANT_PRELUDE = [[
local eddy = require "eddy"
local errors = eddy.errors
local function wait_in(waiters, what)
  local fut = eddy.get_running_loop():create_future()
  waiters:push(fut)
  local ok, err = pcall(eddy._core._await_as, fut, what)
  waiters:remove(fut)
  return ok, err
end
]]

-- Each mutant brings back one bug asyncio had (CPython's regression test
-- named); some seed of the first twenty must report it.
local function finds(mutant, pattern)
  for seed = 1, 20 do
    local r = storm(seed, 600, MUTANT_PRELUDE .. mutant)
    if r.code ~= 0 then
      assert.matches("VIOLATION seed " .. seed .. " step %d+: " .. pattern, r.err)
      return
    end
  end
  error("no seed found the mutant")
end

describe("cancel_storm finds the bug put back", function()
  it("a Semaphore waiter woken then cancelled keeps its unit (test_acquire_cancel_before_awoken)", function()
    finds([[
      for _, sem in ipairs{eddy.Semaphore(1), eddy.BoundedSemaphore(1)} do
        local cls = getmetatable(sem)
        local acquire = cls.acquire
        function cls:acquire()
          if not self:locked() or self._waiters == nil then return acquire(self) end
          local ok, err = wait_in(self._waiters, "acquire")
          while self._value > 0 do
            if not self:_wake_up_next() then break end
          end
          if not ok then error(err, 0) end  -- (no unit given back)
          return true
        end
      end
    ]], "b?sem%d: value %d+ %+ %d+ held %+ %d+ woken ~= %d+")
  end)

  it("a Lock waiter woken then cancelled wakes nobody (test_finished_waiter_cancelled)", function()
    finds([[
      local cls = getmetatable(eddy.Lock())
      local acquire = cls.acquire
      function cls:acquire()
        if not self._locked or self._waiters == nil then return acquire(self) end
        local ok, err = wait_in(self._waiters, "acquire")
        if not ok then error(err, 0) end  -- (the next waiter is not woken)
        self._locked = true
        return true
      end
    ]], "%a+%d: free with %d+ waiters and none woken")
  end)

  it("Condition.notify counts a cancelled waiter as woken (asyncio's _notify skips done futures)", function()
    finds([[
      local cls = getmetatable(eddy.Condition())
      function cls:_notify(n)
        local i = 0
        for _, fut in self._waiters:each() do
          if i >= n then break end
          i = i + 1
          if not fut:done() then fut:set_result(false) end
        end
      end
    ]], "cond%d: notify%(%d+%) woke %d+ of %d+ waiting")  -- (which notify first meets a
    -- cancelled waiter depends on the timers' timing, not the seed alone)
  end)

  it("a Condition waiter notified then cancelled keeps the notification (test_cancelled_wakeup)", function()
    finds([[
      local cls = getmetatable(eddy.Condition())
      function cls:wait()
        self:release()
        local ok, err = wait_in(self._waiters, "wait")
        while true do
          local aok, aerr = pcall(self.acquire, self)
          if aok then break end
          ok, err = false, aerr
          if not errors.is(aerr, errors.CancelledError) then break end
        end
        if ok then return true end
        error(err, 0)  -- (no self:_notify(1) first)
      end
    ]], "cond%d: [%w.]+, notified then cancelled, left wait without waking the next waiter")
  end)

  it("a Queue getter woken then cancelled does not pass the wake on (test_get_cancelled_race)", function()
    finds([[
      local wait = eddy._core.Waiters_methods.wait
      local methods = getmetatable(getmetatable(eddy.Queue()).__index).__index
      function methods:get()
        while self._n == 0 do
          if self._is_shutdown then error(eddy.errors.QueueShutDown(), 2) end
          local err = wait(self._getters, "get")
          if err ~= nil then error(err, 0) end
        end
        return self:get_nowait()
      end
    ]], "queue%d+%.%d+: %d+ items, %d+ getters, %d+ putters waiting, no progress")
  end)
end)
