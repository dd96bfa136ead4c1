-- eddy.timeouts: asyncio's timeout scopes (asyncio/timeouts.py, 3.12).
--
--   local t <close> = eddy.timeout(1.5)   -- or eddy.timeout_at(when)
--   ... suspending work ...
--
-- Creating the scope enters it (Lua has no separate __enter).  On expiry
-- the current task is cancelled; when the scope closes with the
-- CancelledError that expiry caused, __close raises TimeoutError in its
-- place.  Whether the CancelledError is "ours" is decided as CPython does:
-- the task's cancel count (task:cancelling()) must be back to what it was
-- on entry after uncancel(), so an outer timeout or an explicit
-- task:cancel() still propagates as CancelledError.
--
-- States: active -> expiring (the timer fired, cancel requested)
--         -> expired (closed after expiring); active -> finished.

local eddy = require "eddy"
local errors = require "eddy.errors"
local C = eddy._core
local args = require "eddy.args"

local ACTIVE, EXPIRING, EXPIRED, FINISHED = "active", "expiring", "expired", "finished"

local Timeout = {__name = "eddy.Timeout"}
Timeout.__index = Timeout

-- asyncio's repr: <eddy.Timeout [active] when=12.345>, <eddy.Timeout [expired]>
function Timeout:__tostring()
  local when = ""
  if self._state == ACTIVE then
    when = self._when == nil and " when=nil" or string.format(" when=%.3f", self._when)
  end
  return "<eddy.Timeout [" .. self._state .. "]" .. when .. ">"
end

-- t:when() -> the loop time of the deadline, or nil (no deadline)
function Timeout:when() return self._when end

-- t:expired() -> whether the deadline passed (the task was cancelled)
function Timeout:expired()
  return self._state == EXPIRING or self._state == EXPIRED
end

local function on_timeout(self)
  self._task:cancel()
  self._state = EXPIRING
  self._handle = nil
end

-- t:reschedule(when): move the deadline (nil: none); only while active.
function Timeout:reschedule(when)
  if self._state ~= ACTIVE then
    error(errors.RuntimeError("Cannot change state of " .. self._state .. " Timeout"), 2)
  end
  if when ~= nil and type(when) ~= "number" then
    error("bad argument #1 to 'reschedule' (number expected, got " .. type(when) .. ")", 2)
  end
  self._when = when
  if self._handle ~= nil then self._handle:cancel() end
  if when == nil then
    self._handle = nil
  else
    local loop = self._loop
    if when <= loop:time() then
      self._handle = loop:call_soon(on_timeout, self)
    else
      self._handle = loop:call_at(when, on_timeout, self)
    end
  end
end

-- Leaving the scope; 'err' is the error propagating out of it, if any.
function Timeout:__close(err)
  if self._handle ~= nil then
    self._handle:cancel()
    self._handle = nil
  end
  if self._state == EXPIRING then
    self._state = EXPIRED
    if self._task:uncancel() <= self._cancelling
       and errors.is(err, errors.CancelledError) then
      error(errors.TimeoutError(nil, {cause = err}), 0)
    end
  elseif self._state == ACTIVE then
    self._state = FINISHED
  end
end

local function enter(when, fname)
  local task = C.current_task()
  if task == nil then
    error(errors.RuntimeError(fname .. "() should be used inside a task"), 3)
  end
  local self = setmetatable({
    _state = ACTIVE,
    _when = nil,
    _handle = nil,          -- the TimerHandle of the deadline
    _task = task,
    _loop = task:get_loop(),
    _cancelling = task:cancelling(),  -- cancel requests before entering
  }, Timeout)
  self:reschedule(when)
  return self
end

-- eddy.timeout(delay) -> scope expiring 'delay' seconds from now (nil: never)
function eddy.timeout(delay, opts)
  args.check_options("timeout", 2, opts, args.NONE)
  if delay ~= nil and type(delay) ~= "number" then
    error("bad argument #1 to 'timeout' (number expected, got " .. type(delay) .. ")", 2)
  end
  local task = C.current_task()
  return enter(delay ~= nil and task ~= nil and task:get_loop():time() + delay or nil, "timeout")
end

-- eddy.timeout_at(when) -> scope expiring at loop time 'when' (nil: never)
function eddy.timeout_at(when, opts)
  args.check_options("timeout_at", 2, opts, args.NONE)
  if when ~= nil and type(when) ~= "number" then
    error("bad argument #1 to 'timeout_at' (number expected, got " .. type(when) .. ")", 2)
  end
  return enter(when, "timeout_at")
end

eddy.Timeout = Timeout

return eddy
