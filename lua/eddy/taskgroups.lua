-- eddy.taskgroups: asyncio's TaskGroup (asyncio/taskgroups.py, 3.12).
--
--   do
--     local tg <close> = eddy.TaskGroup()
--     tg:create_task(fetch, "a")
--     tg:create_task(fetch, "b")
--   end  -- waits for both; if one fails, the others and the body are
--        -- cancelled and the group raises ExceptionGroup
--
-- Creating the group enters it (in the current task, the parent).  The
-- first child failure cancels the other children and the parent (once,
-- remembered in _parent_cancel_requested so __close can uncancel() it: the
-- parent's own cancellations still propagate).  __close receives the
-- error leaving the block, waits for every child, then raises: the body's
-- CancelledError if it was a real cancellation and no child failed, else
-- ExceptionGroup with the children's errors (and the body's, if not a
-- cancellation).  A KeyboardInterrupt (asyncio's base errors: eddy has no
-- SystemExit) from a child or the body is not grouped: once every child
-- is done, the group raises it as it is.

local eddy = require "eddy"
local errors = require "eddy.errors"
local args = require "eddy.args"
local C = eddy._core
local set_result_unless_done = C._set_result_unless_done

local CancelledError = errors.CancelledError

-- The errors a group re-raises as they are instead of grouping them
-- (asyncio's _is_base_error).
local function is_base_error(err)
  return errors.is(err, errors.KeyboardInterrupt)
end

local TaskGroup = {__name = "eddy.TaskGroup"}
TaskGroup.__index = TaskGroup

function TaskGroup:__tostring()
  local info = {}
  if next(self._tasks) ~= nil then
    local n = 0
    for _ in pairs(self._tasks) do n = n + 1 end
    info[#info + 1] = "tasks=" .. n
  end
  if #self._errors > 0 then info[#info + 1] = "errors=" .. #self._errors end
  if self._aborting then info[#info + 1] = "cancelling"
  elseif self._exiting then info[#info + 1] = "exiting"
  else info[#info + 1] = "entered" end
  return "<eddy.TaskGroup " .. table.concat(info, " ") .. ">"
end

-- eddy.TaskGroup() -> an entered group (a to-be-closed value)
function eddy.TaskGroup(opts)
  args.check_options("TaskGroup", 1, opts, args.NONE)
  local parent = C.current_task()
  if parent == nil then
    error(errors.RuntimeError("TaskGroup cannot determine the parent task: use it inside a task"), 2)
  end
  return setmetatable({
    _loop = parent:get_loop(),
    _parent_task = parent,
    _parent_cancel_requested = false,
    _exiting = false,
    _aborting = false,
    _tasks = {},            -- set of children not done yet
    _ntasks = 0,
    _errors = {},           -- children's errors, in completion order
    _base_error = nil,      -- the first KeyboardInterrupt, raised as it is
    _on_completed_fut = nil,  -- what __close waits on while children run
  }, TaskGroup)
end

local function abort(self)
  self._aborting = true
  for t in pairs(self._tasks) do
    if not t:done() then t:cancel() end
  end
end

local function on_task_done(self, task)
  if self._tasks[task] then
    self._tasks[task] = nil
    self._ntasks = self._ntasks - 1
  end
  local fut = self._on_completed_fut
  if fut ~= nil and self._ntasks == 0 then
    set_result_unless_done(fut, true)  -- (no memory: fails with that error)
  end
  if task:cancelled() then return end
  local exc = task:exception()
  if exc == nil then return end
  self._errors[#self._errors + 1] = exc
  if is_base_error(exc) and self._base_error == nil then self._base_error = exc end
  if self._parent_task:done() then
    self._loop:call_exception_handler {
      message = "Task " .. tostring(task) .. " has errored out but its parent task "
                .. tostring(self._parent_task) .. " is already completed",
      exception = exc,
      task = task,
    }
    return
  end
  if not self._aborting and not self._parent_cancel_requested then
    -- Stop the body too: cancel the parent, and remember to uncancel it
    -- in __close so the cancellation stays inside the group.
    abort(self)
    self._parent_cancel_requested = true
    self._parent_task:cancel()
  end
end

-- tg:create_task(fn, ...) -> Task (every argument goes to fn)
function TaskGroup:create_task(fn, ...)
  if getmetatable(self) ~= TaskGroup then
    error("calling 'create_task' on bad self (eddy.TaskGroup expected, got "
          .. args.typename(self) .. ")", 2)
  end
  if type(fn) ~= "thread" and not args.callable(fn) then
    error(args.message("create_task", 1, "function", fn), 2)
  end
  if self._exiting and self._ntasks == 0 then
    error(errors.RuntimeError(tostring(self) .. " is finished"), 2)
  end
  if self._aborting then
    error(errors.RuntimeError(tostring(self) .. " is shutting down"), 2)
  end
  -- (The callback made first, the task counted last: an allocation
  -- failure between them must not leave a task counted that no callback
  -- will ever uncount, for __close to wait on for ever.)
  local function on_done(t) on_task_done(self, t) end
  local task = self._loop:create_task(fn, ...)
  if task:done() then
    on_task_done(self, task)
  else
    task:add_done_callback(on_done)
    self._tasks[task] = true
    self._ntasks = self._ntasks + 1
  end
  return task
end

-- Leaving the block: 'err' is the error propagating out of it, if any.
function TaskGroup:__close(err)
  self._exiting = true
  if is_base_error(err) and self._base_error == nil then self._base_error = err end
  local propagate_cancellation_error = errors.is(err, CancelledError) and err or nil
  if err ~= nil and not self._aborting then
    -- The parent is being cancelled, or the body failed: stop the children.
    abort(self)
  end
  -- The parent may be cancelled again while it waits: wait again.
  while self._ntasks > 0 do
    if self._on_completed_fut == nil then
      self._on_completed_fut = self._loop:create_future()
    end
    local ok, werr = pcall(self._on_completed_fut.await, self._on_completed_fut)
    if not ok then
      if not errors.is(werr, CancelledError) then error(werr, 0) end
      if not self._aborting then
        -- The parent was cancelled while the children were running.
        propagate_cancellation_error = werr
        abort(self)
      end
    end
    self._on_completed_fut = nil
  end
  -- Only now, with every child done, is it known whether a child failure
  -- cancelled the parent (one may fail while we wait): if so, we must
  -- uncancel() it (asyncio 3.13, gh-116720; 3.12 checked on entry and so
  -- left the count raised).
  if self._parent_cancel_requested then
    if self._parent_task:uncancel() == 0 then
      -- No cancellation is left pending: don't propagate ours.
      propagate_cancellation_error = nil
    end
  end
  -- asyncio raises a base error before the uncancel() above, as the loop
  -- stops on it; in eddy a task's KeyboardInterrupt is an error like
  -- another, and the code catching it goes on with the count restored.
  if self._base_error ~= nil then error(self._base_error, 0) end
  -- Errors of the children win over a cancellation.
  if propagate_cancellation_error ~= nil and #self._errors == 0 then
    error(propagate_cancellation_error, 0)
  end
  if err ~= nil and not errors.is(err, CancelledError) then
    self._errors[#self._errors + 1] = err
  end
  if #self._errors > 0 then
    -- A cancellation of the parent from outside is still pending: the
    -- ExceptionGroup replaces its CancelledError, so request it again,
    -- keeping the count, and the parent's next suspension raises it
    -- instead of losing it (asyncio 3.13).
    if self._parent_task:cancelling() > 0 then
      self._parent_task:uncancel()
      self._parent_task:cancel()
    end
    local errs = self._errors
    self._errors = {}
    error(errors.ExceptionGroup("unhandled errors in a TaskGroup", errs), 0)
  end
end


return eddy
