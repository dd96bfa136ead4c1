-- eddy.tasks: asyncio's task composition (asyncio/tasks.py): gather,
-- wait, wait_for, shield and as_completed, built on the C Future and Task.

local eddy = require "eddy"
local errors = require "eddy.errors"
local C = eddy._core

require "eddy.timeouts"

local ensure_future = eddy.ensure_future
local pack, unpack = table.pack, table.unpack

-- A trailing plain table (no metatable) is the options table (API.md §1).
local function split_options(n, ...)
  local last = select(n, ...)
  if n > 0 and type(last) == "table" and getmetatable(last) == nil then
    return n - 1, last
  end
  return n, nil
end
eddy._split_options = split_options

-- {================================================= gather

-- The future gather() waits on: cancelling it cancels the children.
local gathering_children = setmetatable({}, {__mode = "k"})
local GatheringFuture = {}
for k, v in pairs(C.Future) do GatheringFuture[k] = v end
local gathering_methods = setmetatable({}, {__index = C.Future.__index})
GatheringFuture.__index = gathering_methods
GatheringFuture.__name = "eddy.GatheringFuture"

-- gather(aw1, aw2, ..., {return_exceptions}) -> first result of each
local function gather(...)
  local n, opts = split_options(select("#", ...), ...)
  local return_exceptions = opts ~= nil and opts.return_exceptions or false
  if n == 0 then return end
  local args = pack(...)
  local children, arg_to_fut = {}, {}
  local loop, outer
  local nfuts, nfinished = 0, 0
  local cancel_requested = false
  local done_futs = {}

  local function done_callback(fut)
    nfinished = nfinished + 1
    if outer == nil or outer:done() then
      if not fut:cancelled() then fut:exception() end  -- mark it retrieved
      return
    end
    if not return_exceptions then
      if fut:cancelled() then
        local ok, exc = pcall(fut.result, fut)
        outer:set_exception(exc)
        return
      end
      local exc = fut:exception()
      if exc ~= nil then
        outer:set_exception(exc)
        return
      end
    end
    if nfinished == nfuts then
      local results = {}
      for i = 1, n do
        local child = children[i]
        if child:cancelled() then
          local _, exc = pcall(child.result, child)
          results[i] = exc
        else
          local exc = child:exception()
          if exc ~= nil then results[i] = exc
          else results[i] = (child:result()) end
        end
      end
      if cancel_requested then
        outer:set_exception(errors.CancelledError())
      else
        outer:set_result(unpack(results, 1, n))
      end
    end
  end

  for i = 1, n do
    local arg = args[i]
    if arg == nil then
      error("bad argument #" .. i .. " to 'gather' (awaitable expected, got nil)", 2)
    end
    local fut = arg_to_fut[arg]
    if fut == nil then
      fut = ensure_future(arg, loop, 3)
      if loop == nil then loop = fut:get_loop() end
      nfuts = nfuts + 1
      arg_to_fut[arg] = fut
      if fut:done() then done_futs[#done_futs + 1] = fut
      else fut:add_done_callback(done_callback) end
    end
    children[i] = fut
  end
  outer = C._future_new(loop, GatheringFuture)
  gathering_children[outer] = children
  for _, fut in ipairs(done_futs) do done_callback(fut) end
  return outer:await()
end
eddy.gather = gather

-- The gathering future's cancel marks the request; the children's
-- completion then finishes it.
function gathering_methods:cancel(msg)
  if self:done() then return false end
  local ret = false
  for _, child in ipairs(gathering_children[self]) do
    if child:cancel(msg) then ret = true end
  end
  return ret
end

-- }=================================================

-- {================================================= wait

eddy.FIRST_COMPLETED = "FIRST_COMPLETED"
eddy.FIRST_EXCEPTION = "FIRST_EXCEPTION"
eddy.ALL_COMPLETED = "ALL_COMPLETED"

local function check_number(v, argn, fname)
  if v ~= nil and type(v) ~= "number" then
    error(string.format("bad argument #%d to '%s' (number expected, got %s)",
                        argn, fname, type(v)), 3)
  end
end

-- The awaitables of an array, as futures, duplicates dropped (asyncio
-- takes a set), in the array's order.
local function futures_of(aws, fname, loop)
  if type(aws) ~= "table" or getmetatable(aws) ~= nil then
    error("bad argument #1 to '" .. fname .. "' (array of awaitables expected, got "
          .. (C.isfuture(aws) and "a single future" or type(aws)) .. ")", 3)
  end
  local futs, seen = {}, {}
  for i = 1, #aws do
    local aw = aws[i]
    if not seen[aw] then
      seen[aw] = true
      local fut = ensure_future(aw, loop, 4)
      loop = loop or fut:get_loop()
      futs[#futs + 1] = fut
    end
  end
  return futs, loop
end

-- Complete 'waiter' unless done (a timer or a done callback got there).
local function release_waiter(waiter)
  if not waiter:done() then waiter:set_result() end
end

-- Done callbacks below are never removed with remove_done_callback: they
-- turn inert instead (a flag they check), because removing the first
-- callback of a future currently loses the callbacks after it (a C core
-- bug in future.c, reported).

-- eddy.wait(aws, {timeout, return_when}) -> done, pending (arrays) (S)
function eddy.wait(aws, opts)
  local timeout, return_when
  if opts ~= nil then timeout, return_when = opts.timeout, opts.return_when end
  return_when = return_when or eddy.ALL_COMPLETED
  check_number(timeout, 2, "wait")
  if return_when ~= eddy.FIRST_COMPLETED and return_when ~= eddy.FIRST_EXCEPTION
     and return_when ~= eddy.ALL_COMPLETED then
    error(errors.ValueError("Invalid return_when value: " .. tostring(return_when)), 2)
  end
  local futs = futures_of(aws, "wait", eddy.get_running_loop())
  if #futs == 0 then error(errors.ValueError("Set of Tasks/Futures is empty."), 2) end
  local loop = eddy.get_running_loop()
  local waiter = loop:create_future()
  local timeout_handle
  if timeout ~= nil then timeout_handle = loop:call_later(timeout, release_waiter, waiter) end
  local counter = #futs
  local finished = false
  local function on_completion(f)
    if finished then return end
    counter = counter - 1
    if counter <= 0 or return_when == eddy.FIRST_COMPLETED
       or (return_when == eddy.FIRST_EXCEPTION and not f:cancelled() and f:exception() ~= nil) then
      if timeout_handle ~= nil then timeout_handle:cancel() end
      release_waiter(waiter)
    end
  end
  for _, f in ipairs(futs) do f:add_done_callback(on_completion) end
  local ok, err = pcall(waiter.await, waiter)
  if timeout_handle ~= nil then timeout_handle:cancel() end
  finished = true
  if not ok then error(err, 0) end
  local done, pending = {}, {}
  for _, f in ipairs(futs) do
    if f:done() then done[#done + 1] = f else pending[#pending + 1] = f end
  end
  return done, pending
end

-- }=================================================

-- {================================================= wait_for

-- Cancel 'fut' and wait until it is done, whatever it does with the
-- cancellation (asyncio's _cancel_and_wait).
local function cancel_and_wait(fut)
  local waiter = fut:get_loop():create_future()
  fut:add_done_callback(function() release_waiter(waiter) end)
  fut:cancel()
  waiter:await()
end

-- eddy.wait_for(aw, timeout) -> aw's results (S).  On timeout aw is
-- cancelled, waited for, and TimeoutError raised (asyncio 3.12: a
-- timeout scope around the await).
function eddy.wait_for(aw, timeout)
  check_number(timeout, 2, "wait_for")
  local fut = ensure_future(aw, nil, 2)
  if timeout ~= nil and timeout <= 0 then
    if fut:done() then return fut:result() end
    cancel_and_wait(fut)
    local res = pack(pcall(fut.result, fut))
    if res[1] then return unpack(res, 2, res.n) end
    if errors.is(res[2], errors.CancelledError) then
      error(errors.TimeoutError(nil, {cause = res[2]}), 2)
    end
    error(res[2], 0)
  end
  local _ <close> = eddy.timeout(timeout)
  return fut:await()
end

-- }=================================================

-- {================================================= shield

-- eddy.shield(aw) -> Future: cancelling it (or the task awaiting it)
-- leaves aw running.
function eddy.shield(aw)
  local inner = ensure_future(aw, nil, 2)
  if inner:done() then return inner end
  local outer = inner:get_loop():create_future()
  -- Once outer is cancelled, inner's outcome is nobody's (asyncio removes
  -- this callback then; here it turns inert, see release_waiter).
  local function inner_done(f)
    if outer:cancelled() then return end
    if f:cancelled() then
      outer:cancel()
    else
      local exc = f:exception()
      if exc ~= nil then outer:set_exception(exc)
      else outer:set_result(f:result()) end
    end
  end
  inner:add_done_callback(inner_done)
  return outer
end

-- }=================================================

-- {================================================= as_completed

-- eddy.as_completed(aws, {timeout}) -> iterator over the futures of aws
-- in the order they complete; each step suspends until the next one is
-- done and yields it (done: fut:result() or fut:await() do not wait).
-- Past the timeout a step raises TimeoutError.
--   for fut in eddy.as_completed(tasks) do print(fut:await()) end
function eddy.as_completed(aws, opts)
  local timeout = opts ~= nil and opts.timeout or nil
  check_number(timeout, 2, "as_completed")
  local todo = futures_of(aws, "as_completed")
  local remaining = #todo
  local done = {}       -- completed futures not handed out yet, FIFO:
  local dhead, dtail = 1, 0  -- done[dhead .. dtail]
  local waiter          -- the future the iterator waits on, if it does
  local timed_out = false
  local timeout_handle
  local function wake()
    if waiter ~= nil then release_waiter(waiter) end
  end
  local function on_completion(f)
    if timed_out then return end
    dtail = dtail + 1
    done[dtail] = f
    remaining = remaining - 1
    if remaining == 0 and timeout_handle ~= nil then timeout_handle:cancel() end
    wake()
  end
  for _, f in ipairs(todo) do f:add_done_callback(on_completion) end
  if remaining > 0 and timeout ~= nil then
    timeout_handle = todo[1]:get_loop():call_later(timeout, function()
      timed_out = true  -- on_completion turns inert
      wake()
    end)
  end
  local handed = 0
  return function()
    if handed == #todo then return nil end
    while dhead > dtail do
      if timed_out then error(errors.TimeoutError(), 2) end
      waiter = todo[1]:get_loop():create_future()
      local ok, err = pcall(waiter.await, waiter)
      waiter = nil
      if not ok then error(err, 0) end
    end
    local f = done[dhead]
    done[dhead] = nil
    dhead = dhead + 1
    handed = handed + 1
    return f
  end
end

-- }=================================================

return eddy
