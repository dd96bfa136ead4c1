-- eddy.locks: asyncio's synchronization primitives (asyncio/locks.py):
-- Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier.
--
-- Waiters are futures kept in FIFO order; a waiter is woken by completing
-- its future, and it runs only on the loop's next turn, so "woken" and
-- "running" are two steps: the bookkeeping below (asyncio's) is what keeps
-- FIFO fairness and makes a cancelled waiter hand its turn to the next.
-- acquire() returns a guard whose __close releases:
--   local _ <close> = lock:acquire()

local eddy = require "eddy"
local errors = require "eddy.errors"
local Deque = require "eddy.deque"
local args = require "eddy.args"
local C = eddy._core

local CancelledError = errors.CancelledError

-- asyncio's _LoopBoundMixin: a primitive belongs to the first loop that
-- waits on it.  With no loop running (top-level suspension) that is the
-- default loop.
local function get_loop(self)
  local loop = C._get_running_loop() or C.get_event_loop()
  local bound = self._loop
  if bound == nil then
    self._loop = loop
  elseif bound ~= loop then
    error(errors.RuntimeError(tostring(self) .. " is bound to a different event loop"), 3)
  end
  return loop
end

-- First thing in every suspending method: where nothing can suspend (a
-- plain callback) it raises RuntimeError naming itself, even when it
-- could have returned at once (API.md §1, §11), and before it changes
-- anything.  A task, or the main chunk's top level (no loop running: the
-- wait runs the loop), goes on.
local check_suspend = C._can_suspend

-- Await 'fut' for the method 'what' (its errors name it); whatever
-- happens, drop it from 'waiters' (asyncio's try: await fut / finally:
-- waiters.remove(fut)).  Returns pcall's results.
local function wait_on(waiters, fut, what)
  local ok, err = pcall(C._await_as, fut, what)
  waiters:remove(fut)
  return ok, err
end

local function class(name)
  local cls = {__name = name}
  cls.__index = cls
  cls.__tostring = function(self)
    return string.format("<%s %s>", name, self:_repr_info())
  end
  return cls
end

-- The guard acquire() returns: closing it releases its owner.
local Guard = {__name = "eddy.LockGuard"}
Guard.__index = Guard
function Guard:__close() self[1]:release() end
local function guard_of(self)
  local g = self._guard
  if g == nil then
    g = setmetatable({self}, Guard)
    self._guard = g
  end
  return g
end

-- {================================================= Lock

local Lock = class("eddy.Lock")

function eddy.Lock(opts)
  args.check_options("Lock", 1, opts, args.NONE)
  return setmetatable({_locked = false, _waiters = nil}, Lock)
end

function Lock:_repr_info()
  local w = self._waiters
  return (self._locked and "locked" or "unlocked")
         .. (w and #w > 0 and (", waiters:" .. #w) or "")
end

function Lock:locked() return self._locked end

local function all_cancelled(waiters)
  for _, fut in waiters:each() do
    if not fut:cancelled() then return false end
  end
  return true
end

-- Queue a new waiter of a Lock or Semaphore (its deque made on first
-- use); returns the deque and the waiter's future.
local function queue_waiter(self)
  local waiters = self._waiters
  if waiters == nil then
    waiters = Deque.new()
    self._waiters = waiters
  end
  local fut = get_loop(self):create_future()
  waiters:push(fut)
  return waiters, fut
end

-- lock:acquire() -> guard (S)
function Lock:acquire()
  check_suspend("acquire")
  local waiters = self._waiters
  if not self._locked and (waiters == nil or all_cancelled(waiters)) then
    self._locked = true
    return guard_of(self)
  end
  local fut
  waiters, fut = queue_waiter(self)
  local ok, err = wait_on(waiters, fut, "acquire")
  if not ok then
    -- Woken but cancelled before running: let the next waiter have it.
    if errors.is(err, CancelledError) and not self._locked then
      self:_wake_up_first()
    end
    error(err, 0)
  end
  self._locked = true
  return guard_of(self)
end

function Lock:release()
  if not self._locked then
    error(errors.RuntimeError("Lock is not acquired."), 2)
  end
  self._locked = false
  self:_wake_up_first()
end

function Lock:_wake_up_first()
  local waiters = self._waiters
  if waiters == nil or #waiters == 0 then return end
  local fut = waiters[waiters.head]
  if not fut:done() then fut:set_result(true) end
end

-- }=================================================

-- {================================================= Event

local Event = class("eddy.Event")

function eddy.Event(opts)
  args.check_options("Event", 1, opts, args.NONE)
  return setmetatable({_value = false, _waiters = Deque.new()}, Event)
end

function Event:_repr_info()
  local n = #self._waiters
  return (self._value and "set" or "unset") .. (n > 0 and (", waiters:" .. n) or "")
end

function Event:is_set() return self._value end

function Event:set()
  if not self._value then
    for _, fut in self._waiters:each() do
      if not fut:done() then fut:set_result(true) end
    end
    -- (once all are woken: should one fail, no memory, another set()
    -- wakes the rest)
    self._value = true
  end
end

function Event:clear() self._value = false end

-- event:wait() -> true (S); 'what' names the caller in errors (a
-- Queue's join waits on an Event).
function Event:_wait(what)
  check_suspend(what)
  if self._value then return true end
  local fut = get_loop(self):create_future()
  self._waiters:push(fut)
  local ok, err = wait_on(self._waiters, fut, what)
  if not ok then error(err, 0) end
  return true
end

function Event:wait() return self:_wait("wait") end

-- }=================================================

-- {================================================= Condition

local Condition = class("eddy.Condition")

-- eddy.Condition(lock): lock defaults to a new Lock.
function eddy.Condition(lock, opts)
  args.check_options("Condition", 2, opts, args.NONE)
  if lock == nil then
    lock = eddy.Lock()
  elseif getmetatable(lock) ~= Lock then
    error("bad argument #1 to 'Condition' (eddy.Lock expected, got "
          .. (getmetatable(lock) and tostring(lock) or type(lock)) .. ")", 2)
  end
  return setmetatable({_lock = lock, _waiters = Deque.new()}, Condition)
end

function Condition:_repr_info()
  local n = #self._waiters
  return (self:locked() and "locked" or "unlocked") .. (n > 0 and (", waiters:" .. n) or "")
end

-- The lock's methods, as asyncio binds them (acquire returns the lock's
-- guard, so `local _ <close> = cond:acquire()` releases the lock).
function Condition:locked() return self._lock._locked end
function Condition:acquire() return self._lock:acquire() end
function Condition:release() return self._lock:release() end

-- cond:wait() -> true (S): release the lock, wait for a notify, take the
-- lock again (even when cancelled: the caller always leaves holding it).
function Condition:wait()
  check_suspend("wait")
  if not self:locked() then
    error(errors.RuntimeError("cannot wait on un-acquired lock"), 2)
  end
  local fut = get_loop(self):create_future()
  self:release()
  self._waiters:push(fut)
  local ok, err = wait_on(self._waiters, fut, "wait")
  -- Re-acquire, retrying through cancellations (the last one is raised).
  while true do
    local aok, aerr = pcall(self.acquire, self)
    if aok then break end
    ok, err = false, aerr
    if not errors.is(aerr, CancelledError) then break end
  end
  if ok then return true end
  -- The error may have come after a notify picked us (while waiting or
  -- while taking the lock again): pass it on to another waiter, as
  -- asyncio does (a spurious wakeup is allowed).
  self:_notify(1)
  error(err, 0)
end

-- cond:wait_for(predicate) -> predicate's last (truthy) result (S)
function Condition:wait_for(predicate)
  if not args.callable(predicate) then
    error(args.message("wait_for", 1, "function", predicate), 2)
  end
  check_suspend("wait_for")  -- before the predicate runs
  local result = predicate()
  while not result do
    self:wait()
    result = predicate()
  end
  return result
end

-- cond:notify(n): wake up to n waiters (default 1); the lock must be held.
function Condition:notify(n)
  if not self:locked() then
    error(errors.RuntimeError("cannot notify on un-acquired lock"), 2)
  end
  if n == nil then
    n = 1
  elseif type(n) ~= "number" then
    error(args.message("notify", 1, "number", n), 2)
  end
  self:_notify(n)
end

function Condition:_notify(n)
  local idx = 0
  for _, fut in self._waiters:each() do
    if idx >= n then break end
    if not fut:done() then
      idx = idx + 1
      fut:set_result(false)
    end
  end
end

function Condition:notify_all()
  if not self:locked() then
    error(errors.RuntimeError("cannot notify on un-acquired lock"), 2)
  end
  self:_notify(#self._waiters)
end

-- }=================================================

-- {================================================= Semaphore

local Semaphore = class("eddy.Semaphore")

-- value as an integer (an integral float such as 2.0 is accepted), else
-- a standard argument error of 'fname' (at 'level').
local function check_count(fname, value, level)
  if type(value) == "number" then
    local n = math.tointeger(value)
    if n ~= nil then return n end
    error("bad argument #1 to '" .. fname .. "' (number has no integer representation)", level + 1)
  end
  error(args.message(fname, 1, "integer", value), level + 1)
end

-- Its errors blame the constructor's caller (level 3): called in
-- parentheses, not as a tail call (which would drop the constructor's frame).
local function new_semaphore(cls, fname, value)
  if value == nil then value = 1 end
  value = check_count(fname, value, 3)
  if value < 0 then
    error(errors.ValueError("Semaphore initial value must be >= 0"), 3)
  end
  return setmetatable({_value = value, _bound_value = value, _waiters = nil}, cls)
end

function eddy.Semaphore(value, opts)
  args.check_options("Semaphore", 2, opts, args.NONE)
  return (new_semaphore(Semaphore, "Semaphore", value))
end

function Semaphore:_repr_info()
  local w = self._waiters
  return (self:locked() and "locked" or ("unlocked, value:" .. self._value))
         .. (w and #w > 0 and (", waiters:" .. #w) or "")
end

-- Whether acquire() would wait: no value left, or others are queued
-- (FIFO: they go first even if value > 0).
function Semaphore:locked()
  if self._value == 0 then return true end
  local waiters = self._waiters
  return waiters ~= nil and not all_cancelled(waiters)
end

-- sem:acquire() -> guard (S)
function Semaphore:acquire()
  check_suspend("acquire")
  if not self:locked() then
    self._value = self._value - 1
    return guard_of(self)
  end
  local waiters, fut = queue_waiter(self)
  local ok, err = wait_on(waiters, fut, "acquire")
  if not ok and errors.is(err, CancelledError) and fut:done() and not fut:cancelled() then
    -- _wake_up_next() gave us a unit we will not use: give it back.
    self._value = self._value + 1
  end
  -- New waiters may have queued behind us (FIFO): wake as many as allowed.
  while self._value > 0 do
    if not self:_wake_up_next() then break end
  end
  if not ok then error(err, 0) end
  return guard_of(self)
end

function Semaphore:release()
  self._value = self._value + 1
  self:_wake_up_next()
end

-- Wake the first waiter not done yet, handing it one unit.
function Semaphore:_wake_up_next()
  local waiters = self._waiters
  if waiters == nil then return false end
  for _, fut in waiters:each() do
    if not fut:done() then
      self._value = self._value - 1
      fut:set_result(true)
      return true
    end
  end
  return false
end

local BoundedSemaphore = class("eddy.BoundedSemaphore")
for k, v in pairs(Semaphore) do
  if BoundedSemaphore[k] == nil then BoundedSemaphore[k] = v end
end
BoundedSemaphore.__index = BoundedSemaphore

function eddy.BoundedSemaphore(value, opts)
  args.check_options("BoundedSemaphore", 2, opts, args.NONE)
  return (new_semaphore(BoundedSemaphore, "BoundedSemaphore", value))
end

function BoundedSemaphore:release()
  if self._value >= self._bound_value then
    error(errors.ValueError("BoundedSemaphore released too many times"), 2)
  end
  Semaphore.release(self)
end

-- }=================================================

-- {================================================= Barrier

-- States: FILLING (tasks arrive) -> DRAINING (all arrived, leaving) ->
-- FILLING; RESETTING while reset() waits for the waiters to leave;
-- BROKEN after abort().
local FILLING, DRAINING, RESETTING, BROKEN = "filling", "draining", "resetting", "broken"

local Barrier = {__name = "eddy.Barrier"}
local barrier_methods = {}
local barrier_fields = {
  parties = function(self) return self._parties end,
  n_waiting = function(self)
    return self._state == FILLING and self._count or 0
  end,
  broken = function(self) return self._state == BROKEN end,
}

-- parties, n_waiting and broken are read-only fields.
function Barrier.__index(self, k)
  local f = barrier_fields[k]
  if f ~= nil then return f(self) end
  return barrier_methods[k]
end

Barrier.__newindex = args.read_only(Barrier, barrier_fields)

function Barrier.__tostring(self)
  local s = self._state
  if s == BROKEN then return "<eddy.Barrier [broken]>" end
  return string.format("<eddy.Barrier [%s], waiters:%d/%d>", s, self.n_waiting, self._parties)
end

function eddy.Barrier(parties, opts)
  args.check_options("Barrier", 2, opts, args.NONE)
  parties = check_count("Barrier", parties, 2)
  if parties < 1 then error(errors.ValueError("parties must be > 0"), 2) end
  -- _cond is notified whenever the state changes.
  return setmetatable({_cond = eddy.Condition(), _parties = parties,
                       _state = FILLING, _count = 0}, Barrier)
end

-- Block while the barrier drains or resets; fail if it is broken.
local function barrier_block(self)
  self._cond:wait_for(function()
    return self._state ~= DRAINING and self._state ~= RESETTING
  end)
  if self._state == BROKEN then
    error(errors.BrokenBarrierError("Barrier aborted"), 0)
  end
end

-- Wait until the barrier fills (released) or is reset or broken.
local function barrier_wait(self)
  self._cond:wait_for(function() return self._state ~= FILLING end)
  if self._state == BROKEN or self._state == RESETTING then
    error(errors.BrokenBarrierError("Abort or reset of barrier"), 0)
  end
end

-- The last task out lets the tasks blocked in barrier_block in.
local function barrier_exit(self)
  if self._count == 0 then
    if self._state == RESETTING or self._state == DRAINING then
      self._state = FILLING
    end
    self._cond:notify_all()
  end
end

-- barrier:wait() -> index (0 .. parties-1, in arrival order) (S)
function barrier_methods:wait()
  check_suspend("wait")
  local _ <close> = self._cond:acquire()
  barrier_block(self)
  local index = self._count
  self._count = index + 1
  local ok, err = pcall(function()
    if index + 1 == self._parties then
      self._state = DRAINING  -- everyone arrived: release them
      self._cond:notify_all()
    else
      barrier_wait(self)
    end
  end)
  self._count = self._count - 1
  barrier_exit(self)
  if not ok then error(err, 0) end
  return index
end

-- barrier:reset() (S): waiting tasks get BrokenBarrierError; the barrier
-- fills again once they have left.
function barrier_methods:reset()
  check_suspend("reset")
  local _ <close> = self._cond:acquire()
  if self._count > 0 then
    self._state = RESETTING
  else
    self._state = FILLING
  end
  self._cond:notify_all()
end

-- barrier:abort() (S): break the barrier for good.
function barrier_methods:abort()
  check_suspend("abort")
  local _ <close> = self._cond:acquire()
  self._state = BROKEN
  self._cond:notify_all()
end

-- }=================================================

return eddy
