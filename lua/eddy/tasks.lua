-- eddy.tasks: asyncio's task composition (asyncio/tasks.py): gather,
-- wait, wait_for, shield and as_completed, built on the C Future and Task.

local eddy = require "eddy"
local errors = require "eddy.errors"
local C = eddy._core

require "eddy.timeouts"

local ensure_future = eddy.ensure_future
local args = require "eddy.args"
local callable = args.callable
local pack, unpack = table.pack, table.unpack

-- A trailing plain table (no metatable) is the options table (API.md §1).
local function split_options(n, ...)
  if n == 0 then return 0, nil end
  local last = select(n, ...)
  if type(last) == "table" and getmetatable(last) == nil then
    return n - 1, last
  end
  return n, nil
end
eddy._split_options = split_options

-- can_suspend(fname): true inside a task that can yield, false at the
-- script's top level (no loop running: awaiting runs the default loop,
-- API.md §11); elsewhere (a plain callback, a C call that cannot yield)
-- the RuntimeError every suspending function raises first, naming
-- 'fname', even when it would not have to wait (API.md §1).
local can_suspend = C._can_suspend

-- {================================================= gather

-- The future gather() waits on.  Cancelling it cancels the children and
-- records the request, so gather raises CancelledError even with
-- return_exceptions (asyncio's _GatheringFuture).
local gathering_state = setmetatable({}, {__mode = "k"})  -- outer -> state
local GatheringFuture = {}
for k, v in pairs(C.Future) do GatheringFuture[k] = v end
local gathering_methods = setmetatable({}, {__index = C.Future.__index})
GatheringFuture.__index = gathering_methods
GatheringFuture.__name = "eddy.GatheringFuture"

-- The CancelledError a cancelled future raises (it carries the message).
local function cancelled_error(fut)
  local _, err = pcall(fut.result, fut)
  return err
end

-- gather(aw1, aw2, ..., {return_exceptions}) -> first result of each
local function gather(...)
  local n, opts = split_options(select("#", ...), ...)
  args.check_options("gather", n + 1, opts, {return_exceptions = true})
  local return_exceptions = opts ~= nil and opts.return_exceptions or false
  can_suspend("gather")  -- even with nothing to wait for (API.md §1)
  if n == 0 then return end
  local aws = pack(...)
  for i = 1, n do  -- check them all before starting any task
    local arg = aws[i]
    if not C.isfuture(arg) and type(arg) ~= "thread" and not callable(arg) then
      error(string.format("bad argument #%d to 'gather' (awaitable expected: Future, Task or function; got %s)",
                          i, type(arg)), 2)
    end
  end
  local children, arg_to_fut = {}, {}
  local loop, outer
  local nfuts = 0
  local done_futs = {}
  -- (every field made here: setting one later allocates nothing)
  local state = {children = children, cancel_requested = false, outer = false,
                 nfuts = 0, return_exceptions = return_exceptions}

  -- Set outer's outcome: the child 'fut' failed (without
  -- return_exceptions), or was the last one (state.complete, called by
  -- the done callback C._gather_callback makes).
  function state.complete(fut)
    if not return_exceptions then
      if fut:cancelled() then
        return outer:set_exception(cancelled_error(fut))
      end
      local exc = fut:exception()
      if exc ~= nil then
        outer:set_exception(exc)
        C._copy_traceback(outer, fut)  -- where a string error was raised
        return
      end
    end
    if state.cancel_requested then
      -- Cancelled from outside: propagate it whatever return_exceptions says.
      return outer:set_exception(fut:cancelled() and cancelled_error(fut)
                                 or errors.CancelledError())
    end
    local results = {}
    for i = 1, n do
      local child = children[i]
      if child:cancelled() then
        results[i] = cancelled_error(child)
      else
        local exc = child:exception()
        if exc ~= nil then results[i] = exc
        else results[i] = (child:result()) end
      end
    end
    outer:set_result(unpack(results, 1, n))
  end
  local done_callback = C._gather_callback(state)

  for i = 1, n do
    local arg = aws[i]
    local fut = arg_to_fut[arg]
    if fut == nil then
      fut = ensure_future(arg, loop, 3, "gather", i)
      if loop == nil then loop = fut:get_loop() end
      nfuts = nfuts + 1
      arg_to_fut[arg] = fut
      if fut:done() then done_futs[#done_futs + 1] = fut
      else fut:add_done_callback(done_callback) end
    end
    children[i] = fut
  end
  state.nfuts = nfuts
  outer = C._future_new(loop, GatheringFuture)
  state.outer = outer  -- (once made: the done callbacks read it)
  gathering_state[outer] = state
  for _, fut in ipairs(done_futs) do done_callback(fut) end
  return outer:await()
end
eddy.gather = gather

function gathering_methods:cancel(msg)
  if self:done() then return false end
  local state = gathering_state[self]
  local ret = false
  for _, child in ipairs(state.children) do
    if child:cancel(msg) then ret = true end
  end
  if ret then state.cancel_requested = true end
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
      local fut = ensure_future(aw, loop, 4, fname, 1)
      loop = loop or fut:get_loop()
      futs[#futs + 1] = fut
    end
  end
  return futs, loop
end

-- Complete 'waiter' unless done (a timer or a done callback got there);
-- with no memory for that, it fails with the memory error.  (In C: no Lua
-- code stands between a timer and the completion.)
local release_waiter = C._set_result_unless_done

-- The done callbacks below are removed once their job is over, as asyncio
-- does, so waiting again and again on a long-lived future (wait with a
-- timeout in a loop) does not pile callbacks up on it.  One that was
-- already scheduled still runs: each checks it has nothing left to do.

-- eddy.wait(aws, {timeout, return_when}) -> done, pending (arrays) (S)
function eddy.wait(aws, opts)
  args.check_options("wait", 2, opts, {timeout = true, return_when = true})
  local timeout, return_when
  if opts ~= nil then timeout, return_when = opts.timeout, opts.return_when end
  return_when = return_when or eddy.ALL_COMPLETED
  check_number(timeout, 2, "wait")
  if return_when ~= eddy.FIRST_COMPLETED and return_when ~= eddy.FIRST_EXCEPTION
     and return_when ~= eddy.ALL_COMPLETED then
    error(errors.ValueError("Invalid return_when value: " .. tostring(return_when)), 2)
  end
  can_suspend("wait")
  local futs, loop = futures_of(aws, "wait", C._get_running_loop())
  if #futs == 0 then error(errors.ValueError("Set of Tasks/Futures is empty."), 2) end
  local waiter = loop:create_future()
  local timeout_handle
  if timeout ~= nil then timeout_handle = loop:call_later(timeout, release_waiter, waiter) end
  local counter = #futs
  local on_completion = C._guarded(function(f)
    counter = counter - 1
    if counter <= 0 or return_when == eddy.FIRST_COMPLETED
       or (return_when == eddy.FIRST_EXCEPTION and not f:cancelled() and f:exception() ~= nil) then
      if timeout_handle ~= nil then timeout_handle:cancel() end
      release_waiter(waiter)
    end
  end, waiter)
  for _, f in ipairs(futs) do f:add_done_callback(on_completion) end
  local ok, err = pcall(waiter.await, waiter)
  if timeout_handle ~= nil then timeout_handle:cancel() end
  for _, f in ipairs(futs) do f:remove_done_callback(on_completion) end
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
  local on_done = C._guarded(function() release_waiter(waiter) end, waiter)
  fut:add_done_callback(on_done)
  fut:cancel()
  local ok, err = pcall(waiter.await, waiter)
  fut:remove_done_callback(on_done)
  if not ok then error(err, 0) end
end

-- eddy.wait_for(aw, timeout) -> aw's results (S).  On timeout aw is
-- cancelled, waited for, and TimeoutError raised (asyncio 3.12: a
-- timeout scope around the await).
local function wait_for(aw, timeout, opts)
  check_number(timeout, 2, "wait_for")
  args.check_options("wait_for", 3, opts, args.NONE)
  local in_task = can_suspend("wait_for")
  local fut = ensure_future(aw, nil, 3, "wait_for", 1)
  if not in_task then
    -- At the top level: the timeout scope needs a task, so run in one.
    return C.await(fut:get_loop():create_task(wait_for, fut, timeout))
  end
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
eddy.wait_for = wait_for

-- }=================================================

-- {================================================= shield

-- eddy.shield(aw) -> Future: cancelling it (or the task awaiting it)
-- leaves aw running.
function eddy.shield(aw, opts)
  args.check_options("shield", 2, opts, args.NONE)
  local inner = ensure_future(aw, nil, 3, "shield", 1)
  if inner:done() then return inner end
  local outer = inner:get_loop():create_future()
  local inner_done = C._guarded(function(f)
    if outer:cancelled() then
      -- Nobody will look at inner's outcome: mark its error retrieved,
      -- or it would be reported as never retrieved.
      if not f:cancelled() then f:exception() end
      return
    end
    if f:cancelled() then
      outer:cancel()
    else
      local exc = f:exception()
      if exc ~= nil then
        outer:set_exception(exc)
        C._copy_traceback(outer, f)  -- where a string error was raised
      else
        outer:set_result(f:result())
      end
    end
  end, outer)
  inner:add_done_callback(inner_done)
  -- Once outer is done (cancelled), inner's outcome is nobody's.
  outer:add_done_callback(function()
    if not inner:done() then inner:remove_done_callback(inner_done) end
  end)
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
  args.check_options("as_completed", 2, opts, {timeout = true})
  local timeout = opts ~= nil and opts.timeout or nil
  check_number(timeout, 2, "as_completed")
  local todo, loop = futures_of(aws, "as_completed")  -- (no loop: empty)
  local remaining = #todo
  local done = {}       -- completed futures not handed out yet, FIFO:
  local dhead, dtail = 1, 0  -- done[dhead .. dtail]
  local waiters = {}    -- the futures iterating tasks wait on
  local timed_out = false
  local timeout_handle, broken
  -- Wake every waiting step; each checks again whether it has a future.
  local function wake()
    local list = waiters
    waiters = {}
    for _, w in ipairs(list) do release_waiter(w) end
  end
  local function on_completion(f)
    if timed_out then return end
    done[dtail + 1] = f  -- (stored first: a failure loses nothing)
    dtail = dtail + 1
    remaining = remaining - 1
    if remaining == 0 and timeout_handle ~= nil then timeout_handle:cancel() end
    wake()
  end
  if loop ~= nil then
    -- A done callback or the timer that runs out of memory fails 'broken'
    -- with that error, which the steps raise (else a completion it lost
    -- would be a wait for ever).
    broken = loop:create_future()
    broken:add_done_callback(wake)
    on_completion = C._guarded(on_completion, broken)
    for _, f in ipairs(todo) do f:add_done_callback(on_completion) end
    if timeout ~= nil then
      timeout_handle = loop:call_later(timeout, C._guarded(function()
        timed_out = true
        for _, f in ipairs(todo) do f:remove_done_callback(on_completion) end
        wake()
      end, broken))
    end
  end
  -- Steps that claimed one of the futures: several tasks may iterate at
  -- once, and a step past the last claim ends at once (asyncio 3.13).
  local claimed = 0
  return function()
    can_suspend("as_completed")  -- even for the step that ends (API.md §1)
    if claimed == #todo then return nil end
    claimed = claimed + 1
    while dhead > dtail do
      if broken:done() then
        claimed = claimed - 1
        broken:result()  -- raises the error
      end
      if timed_out then error(errors.TimeoutError(), 2) end
      local waiter = loop:create_future()
      waiters[#waiters + 1] = waiter
      local ok, err = pcall(waiter.await, waiter)
      if not ok then
        claimed = claimed - 1  -- cancelled: the future stays for another step
        error(err, 0)
      end
    end
    local f = done[dhead]
    done[dhead] = nil
    dhead = dhead + 1
    return f
  end
end

-- }=================================================

return eddy
