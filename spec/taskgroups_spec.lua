-- TaskGroup (API.md §6), ported from CPython's
-- Lib/test/test_asyncio/test_taskgroups.py (test names cited).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error = checks.expect_error

-- The classes of an ExceptionGroup's errors, as a sorted array of names.
local function error_types(eg)
  local seen, names = {}, {}
  for _, e in ipairs(eg.exceptions) do
    local name = getmetatable(e) and getmetatable(e).__name or type(e)
    if not seen[name] then seen[name] = true; names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- Run fn as a task, let it get going, cancel it from outside (it must
-- still be running), and return the error awaiting it raises (of class
-- cls; the wait is bounded).  Getting going is counted in turns, not
-- time: a child starts a turn or two after the body, and a short sleep
-- could end first on a loaded machine (a child cancelled before it
-- starts never sees the cancellation).
local function cancelled_from_outside(loop, cls, fn)
  local r = loop:create_task(fn)
  checks.turns(5)
  assert.is_false(r:done())
  r:cancel()
  return expect_error(cls, eddy.wait_for, r, 5)
end

describe("TaskGroup", function()
  it("test_taskgroup_01: closing waits for every child", async(function()
    local t1, t2
    do
      local g <close> = eddy.TaskGroup()
      t1 = g:create_task(function() eddy.sleep(0.01); return 42 end)
      t2 = g:create_task(function() eddy.sleep(0.02); return 11 end)
    end
    assert.equals(42, t1:result())
    assert.equals(11, t2:result())
  end))

  it("test_taskgroup_03: cancelling one child explicitly lets the rest go on", async(function()
    local t1, t2
    do
      local g <close> = eddy.TaskGroup()
      t1 = g:create_task(function() eddy.sleep(1); return 42 end)
      eddy.sleep(0.01)
      t1:cancel()
      t2 = g:create_task(function() eddy.sleep(0.01); return 11 end)
    end
    assert.is_true(t1:cancelled())
    assert.equals(11, t2:result())
  end))

  it("test_taskgroup_04: a child error cancels the others and the body", async(function(loop)
    local num, t2_cancel, t2 = 0, false, nil
    local function foo1() eddy.sleep(0.01); error(errors.ValueError("1/0")) end
    local function foo2()
      local ok, err = pcall(eddy.sleep, 1)
      if not ok then t2_cancel = true; error(err, 0) end
      num = num + 1
    end
    local function runner()
      do
        local g <close> = eddy.TaskGroup()
        g:create_task(foo1)
        t2 = g:create_task(foo2)
      end
      num = num + 10
    end
    local r = loop:create_task(runner)
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.same({"ValueError"}, error_types(eg))
    assert.equals(0, num)
    assert.is_true(t2_cancel)
    assert.is_true(t2:cancelled())
  end))

  it("an error in the body after a suspension cancels the children", async(function(loop)
    local num = 0
    local function foo2()
      local ok, err = pcall(eddy.sleep, 1)
      if not ok then error(err, 0) end
      num = num + 1
    end
    local function runner()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() eddy.sleep(1) end)
      g:create_task(foo2)
      eddy.sleep(0.01)
      error(errors.ValueError("1/0"))
    end
    local r = loop:create_task(runner)
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.same({"ValueError"}, error_types(eg))
    assert.equals(0, num)
  end))

  it("test_taskgroup_08: errors while cancelled win over the cancellation", async(function(loop)
    local function foo()
      local ok = pcall(eddy.sleep, 10)
      assert.is_false(ok)
      error(errors.ValueError("1/0"))  -- from the 'finally'
    end
    local function runner()
      local g <close> = eddy.TaskGroup()
      for _ = 1, 5 do g:create_task(foo) end
      eddy.sleep(10)
    end
    local r = loop:create_task(runner)
    checks.turns(5)  -- the children started (see cancelled_from_outside)
    assert.is_false(r:done())
    r:cancel()
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.same({"ValueError"}, error_types(eg))
    assert.equals(5, #eg.exceptions)
  end))

  it("cancelling the parent in the body propagates CancelledError and cancels the children", async(function(loop)
    local child
    local function runner()
      local g <close> = eddy.TaskGroup()
      child = g:create_task(function() eddy.sleep(10) end)
      eddy.sleep(10)
    end
    local r = loop:create_task(runner)
    eddy.sleep(0.01)
    r:cancel()
    expect_error(errors.CancelledError, r.await, r)
    assert.is_true(r:cancelled())
    assert.is_true(child:cancelled())
  end))

  it("the parent cancelled while __close waits", async(function(loop)
    local function runner()
      do
        local g <close> = eddy.TaskGroup()
        g:create_task(function() eddy.sleep(10) end)
      end  -- waits here
    end
    local r = loop:create_task(runner)
    eddy.sleep(0.01)
    r:cancel()
    expect_error(errors.CancelledError, r.await, r)
    assert.is_true(r:cancelled())
  end))

  it("nested groups in a child: the inner failure reaches the outer one", async(function(loop)
    local function runner()
      local outer <close> = eddy.TaskGroup()
      outer:create_task(function()
        local inner <close> = eddy.TaskGroup()
        inner:create_task(function() eddy.sleep(0.01); error(errors.ValueError("deep")) end)
        inner:create_task(function() eddy.sleep(10) end)
      end)
      eddy.sleep(10)
    end
    local r = loop:create_task(runner)
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.equals(1, #eg.exceptions)
    local inner_eg = eg.exceptions[1]
    assert.is_true(errors.is(inner_eg, errors.ExceptionGroup))
    assert.same({"ValueError"}, error_types(inner_eg))
  end))

  it("test_taskgroup_23: finished children leave the group", async(function()
    local g <close> = eddy.TaskGroup()
    for _ = 1, 5 do
      eddy.sleep(0.002)
      g:create_task(function() eddy.sleep(0.001) end)
    end
    eddy.sleep(0.02)
    assert.equals(0, g._ntasks)
  end))

  it("a caught child failure: the parent goes on after the group (CPython's foo() example)", async(function()
    local after = false
    local ok, err = pcall(function()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() eddy.sleep(0.001); error(errors.ValueError("crash")) end)
      eddy.sleep(10)  -- cancelled by the group
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ExceptionGroup))
    assert.equals(0, eddy.current_task():cancelling())
    eddy.sleep(0.001)  -- not cancelled any more
    after = true
    assert.is_true(after)
  end))

  -- asyncio 3.13 (gh-116720): the parent's uncancel() waits until every
  -- child is done, and a pending outside cancellation is not lost.
  it("test_error_and_cancel: an outside cancel that meets a child error is not lost (3.13)",
     async(function(loop)
    local event = eddy.Event()
    local steps = {}
    local t = loop:create_task(function()
      local ok, err = pcall(function()
        local tg <close> = eddy.TaskGroup()
        tg:create_task(function()
          event:set()
          eddy.sleep(0)
          error(errors.RuntimeError("child"))
        end)
        eddy.sleep(1)
        steps[#steps + 1] = "sleep in the group was not cancelled"
      end)
      assert.is_true(errors.is(err, errors.ExceptionGroup), tostring(err))
      steps[#steps + 1] = eddy.current_task():cancelling()
      eddy.sleep(1)
      steps[#steps + 1] = "sleep after the group was not cancelled"
    end)
    event:wait()
    assert.equals(0, t:cancelling())
    t:cancel()
    assert.equals(1, t:cancelling())
    expect_error(errors.CancelledError, eddy.wait_for, t, 5)
    assert.is_true(t:cancelled())
    assert.same({1}, steps)
  end))

  it("test_cancelling_level_preserved: a child failing while the group waits: the parent's cancel count is back to 0 (3.13)",
     async(function()
    local ok, err = pcall(function()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() eddy.sleep(1) end)
      g:create_task(function() eddy.sleep(0.01); error(errors.ValueError("late")) end)
    end)  -- the failure comes while __close waits for the children
    assert.is_false(ok)
    assert.same({"ValueError"}, error_types(err))
    assert.equals(0, eddy.current_task():cancelling())
    eddy.sleep(0.001)  -- not cancelled any more
  end))

  it("test_taskgroup_cancel_body_and_child_error / body error with child errors", async(function(loop)
    local function runner()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() error(errors.ValueError("child")) end)
      eddy.sleep(0)
      eddy.sleep(0)
    end
    local r = loop:create_task(runner)
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.same({"ValueError"}, error_types(eg))
    assert.equals(0, r:cancelling())
  end))

  it("test_taskgroup_finished / test_coro_closed_when_tg_closed: a finished group refuses new tasks (RuntimeError)", async(function()
    local saved
    do
      local g <close> = eddy.TaskGroup()
      saved = g
    end
    local err = expect_error(errors.RuntimeError, saved.create_task, saved, function() end)
    assert.matches("is finished", tostring(err))
  end))

  it("a shutting-down group refuses new tasks (RuntimeError)", async(function()
    local refused
    pcall(function()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() error(errors.ValueError("x")) end)
      local ok = pcall(eddy.sleep, 1)
      assert.is_false(ok)
      local ok2, err = pcall(g.create_task, g, function() end)
      refused = not ok2 and errors.is(err, errors.RuntimeError)
    end)
    assert.is_true(refused)
  end))

  it("test_taskgroup_without_parent_task: RuntimeError outside a task", function()
    local err = expect_error(errors.RuntimeError, eddy.TaskGroup)
    assert.matches("parent task", tostring(err))
  end)

  it("create_task passes every argument to the function", async(function()
    local t
    do
      local g <close> = eddy.TaskGroup()
      t = g:create_task(function(a, b, c) return a + b + c end, 1, 2, 3)
    end
    assert.equals(6, t:result())
  end))
end)

describe("TaskGroup, more of test_taskgroups", function()
  local MyExc = errors.class("MyExc", errors.Error)

  it("test_taskgroup_09: an error in the body alone is in the ExceptionGroup", async(function()
    local child
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      child = g:create_task(eddy.sleep, 10)
      eddy.sleep(0.001)
      error(errors.ValueError("body"))
    end)
    assert.same({"ValueError"}, error_types(eg))
    assert.is_true(child:cancelled())
  end))

  it("test_taskgroup_18: a body turning its cancellation into an error raises ExceptionGroup",
     async(function(loop)
    local n = 0
    local r = loop:create_task(function()
      local _ <close> = eddy.TaskGroup()
      local ok, err = pcall(eddy.sleep, 10)
      if not ok and errors.is(err, errors.CancelledError) then n = n + 10; error(MyExc()) end
    end)
    eddy.sleep(0.01)
    r:cancel()
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.same({"MyExc"}, error_types(eg))
    assert.equals(10, n)
  end))

  it("test_taskgroup_19: a child error and the body's cleanup error are both reported", async(function()
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() eddy.sleep(0.01); error(errors.ValueError("crash")) end)
      local _ <close> = setmetatable({}, {__close = function() error(MyExc()) end})
      eddy.sleep(10)
    end)
    assert.same({"MyExc", "ValueError"}, error_types(eg))
  end))

  it("test_taskgroup_22: the parent cancelled while the children sleep: CancelledError", async(function(loop)
    local r = loop:create_task(function()
      local g <close> = eddy.TaskGroup()
      g:create_task(eddy.sleep, 1)
      g:create_task(eddy.sleep, 2)
    end)
    eddy.sleep(0.01)
    r:cancel()
    expect_error(errors.CancelledError, r.await, r)
  end))

  it("test_taskgroup_24 / test_taskgroup_25: children add children while the group closes", async(function()
    local g0
    do
      local g <close> = eddy.TaskGroup()
      g0 = g
      g:create_task(function() eddy.sleep(0.01); g:create_task(eddy.sleep, 0.01) end)
    end
    expect_error(errors.RuntimeError, g0.create_task, g0, function() end)  -- finished

    local heads = 0
    local function hydra(g)
      heads = heads + 1
      eddy.sleep(0.01)
      g:create_task(hydra, g)
      g:create_task(hydra, g)
    end
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      g:create_task(hydra, g)
      g:create_task(function()
        while heads < 10 do eddy.sleep(0.015) end
        error(errors.ValueError("hercules"))
      end)
    end)
    assert.same({"ValueError"}, error_types(eg))
    assert.is_true(heads >= 10)
  end))
end)

describe("TaskGroup bad input", function()
  it("create_task with a non-function is an argument error at the caller, the group goes on",
     async(function()
    local t
    do
      local g <close> = eddy.TaskGroup()
      checks.raises(function() g:create_task(5) end,
                    "bad argument #1 to 'create_task' (function expected, got number)")
      checks.raises(g.create_task, "on bad self", nil, function() end)
      t = g:create_task(function() return "ok" end)
    end
    assert.equals("ok", t:result())
  end))
end)

describe("TaskGroup, the rest of test_taskgroups", function()
  local MyExc = errors.class("MyExc", errors.Error)

  -- A child that counts its cancellation and lets it through.
  local function count_cancel(counter)
    return function()
      local ok, err = pcall(eddy.sleep, 10)
      if not ok and errors.is(err, errors.CancelledError) then counter.n = counter.n + 1 end
      error(err, 0)
    end
  end

  -- A child whose cleanup fails when it is cancelled (Python's
  -- `try: await sleep(10) finally: 1 / 0`).
  local function fail_when_cancelled()
    pcall(eddy.sleep, 10)
    error(errors.ValueError("from the finally"))
  end

  local function crash_after(delay)
    eddy.sleep(delay)
    error(errors.ValueError(tostring(delay)))
  end

  it("test_taskgroup_02: a child created after a suspension of the body is waited for too", async(function()
    local t1, t2
    do
      local g <close> = eddy.TaskGroup()
      t1 = g:create_task(function() eddy.sleep(0.01); return 42 end)
      eddy.sleep(0.015)
      t2 = g:create_task(function() eddy.sleep(0.02); return 11 end)
    end
    assert.equals(42, t1:result())
    assert.equals(11, t2:result())
  end))

  it("test_cancel_children_on_child_error: the others and the body see the cancellation", async(function(loop)
    local num, t2_cancel, runner_cancel = 0, false, false
    local function foo1() eddy.sleep(0.01); error(errors.ValueError("1/0")) end
    local r = loop:create_task(function()
      do
        local g <close> = eddy.TaskGroup()
        for _ = 1, 3 do g:create_task(foo1) end
        g:create_task(function()
          local ok, err = pcall(eddy.sleep, 5)
          if not ok then t2_cancel = true; error(err, 0) end
          num = num + 1
        end)
        local ok, err = pcall(eddy.sleep, 10)
        if not ok then runner_cancel = true; error(err, 0) end
      end
      num = num + 10
    end)
    local eg = expect_error(errors.ExceptionGroup, eddy.wait_for, r, 5)
    assert.same({"ValueError"}, error_types(eg))
    assert.equals(0, num)
    assert.is_true(t2_cancel)
    assert.is_true(runner_cancel)
  end))

  it("test_cancellation: the parent cancelled while closing cancels every child", async(function(loop)
    local counter = {n = 0}
    cancelled_from_outside(loop, errors.CancelledError, function()
      local g <close> = eddy.TaskGroup()
      for _ = 1, 5 do g:create_task(count_cancel(counter)) end
    end)
    assert.equals(5, counter.n)
  end))

  it("test_taskgroup_07: the parent cancelled in the body: body and children see it", async(function(loop)
    local counter = {n = 0}
    cancelled_from_outside(loop, errors.CancelledError, function()
      local g <close> = eddy.TaskGroup()
      for _ = 1, 5 do g:create_task(count_cancel(counter)) end
      local ok, err = pcall(eddy.sleep, 10)
      if not ok and errors.is(err, errors.CancelledError) then counter.n = counter.n + 10 end
      error(err, 0)
    end)
    assert.equals(15, counter.n)
  end))

  it("test_taskgroup_10: an error in the body before any suspension cancels the children", async(function()
    local t1, t2
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      t1 = g:create_task(function() eddy.sleep(1); return 42 end)
      t2 = g:create_task(function() eddy.sleep(2); return 11 end)
      error(errors.ValueError("1/0"))
    end)
    assert.same({"ValueError"}, error_types(eg))
    assert.is_true(t1:cancelled())
    assert.is_true(t2:cancelled())
  end))

  for _, case in ipairs {
    {"test_taskgroup_11", false, "an outer group with no child of its own"},
    {"test_taskgroup_12", true, "an outer group with a child of its own"},
  } do
    local name, outer_child, what = case[1], case[2], case[3]
    it(name .. ": the parent cancelled, the inner group's failing cleanups reach " .. what
       .. " as a nested ExceptionGroup", async(function(loop)
      local eg = cancelled_from_outside(loop, errors.ExceptionGroup, function()
        local g1 <close> = eddy.TaskGroup()
        if outer_child then g1:create_task(eddy.sleep, 10) end
        local g2 <close> = eddy.TaskGroup()
        for _ = 1, 5 do g2:create_task(fail_when_cancelled) end
        eddy.sleep(10)
      end)
      assert.same({"ExceptionGroup"}, error_types(eg))
      assert.same({"ValueError"}, error_types(eg.exceptions[1]))
    end))
  end

  -- g1's child, and g2's inside it: the first to fail decides.
  local function nested_crashes(outer_delay, inner_delay)
    local g1 <close> = eddy.TaskGroup()
    g1:create_task(crash_after, outer_delay)
    local g2 <close> = eddy.TaskGroup()
    g2:create_task(crash_after, inner_delay)
  end

  it("test_taskgroup_13: the outer group's child fails first: the inner group is cancelled",
     async(function(loop)
    local r = loop:create_task(nested_crashes, 0.01, 10)
    local eg = expect_error(errors.ExceptionGroup, eddy.wait_for, r, 5)
    assert.same({"ValueError"}, error_types(eg))
  end))

  it("test_taskgroup_14: the inner group's child fails first: a nested ExceptionGroup",
     async(function(loop)
    local r = loop:create_task(nested_crashes, 10, 0.01)
    local eg = expect_error(errors.ExceptionGroup, eddy.wait_for, r, 5)
    assert.same({"ExceptionGroup"}, error_types(eg))
    assert.same({"ValueError"}, error_types(eg.exceptions[1]))
  end))

  -- The parent is cancelled from outside; while its body handles that
  -- (suspending), a child fails: the child's error wins.
  local function cancelled_then_child_fails()
    local g1 <close> = eddy.TaskGroup()
    g1:create_task(crash_after, 0.03)
    local ok, err = pcall(eddy.sleep, 10)
    assert.is_false(ok)
    if errors.is(err, errors.CancelledError) then eddy.sleep(0.05) end
    error(err, 0)
  end

  it("test_taskgroup_15: a child failing while the cancelled body cleans up: ExceptionGroup",
     async(function(loop)
    local eg = cancelled_from_outside(loop, errors.ExceptionGroup, cancelled_then_child_fails)
    assert.same({"ValueError"}, error_types(eg))
  end))

  it("test_taskgroup_16: the same in a task the cancelled task awaits: ExceptionGroup",
     async(function(loop)
    local eg = cancelled_from_outside(loop, errors.ExceptionGroup, function()
      local t = loop:create_task(cancelled_then_child_fails)
      return t:await()
    end)
    assert.same({"ValueError"}, error_types(eg))
  end))

  it("test_taskgroup_17: the body catching and re-raising its cancellation: CancelledError",
     async(function(loop)
    local num = 0
    cancelled_from_outside(loop, errors.CancelledError, function()
      local _ <close> = eddy.TaskGroup()
      local ok, err = pcall(eddy.sleep, 10)
      if not ok and errors.is(err, errors.CancelledError) then num = num + 10 end
      error(err, 0)
    end)
    assert.equals(10, num)
  end))

  it("test_taskgroup_20: a KeyboardInterrupt from the body's cleanup leaves the group as itself",
     async(function()
    local child
    local err = expect_error(errors.KeyboardInterrupt, function()
      local g <close> = eddy.TaskGroup()
      child = g:create_task(crash_after, 0.01)
      local _ <close> = setmetatable({}, {__close = function() error(errors.KeyboardInterrupt()) end})
      eddy.sleep(10)
    end)
    assert.is_false(errors.is(err, errors.ExceptionGroup))
    assert.is_true(child:done())
  end))

  it("a KeyboardInterrupt in a child leaves the group as itself, after the others are cancelled",
     async(function()
    local other
    expect_error(errors.KeyboardInterrupt, function()
      local g <close> = eddy.TaskGroup()
      other = g:create_task(eddy.sleep, 10)
      g:create_task(function() eddy.sleep(0.01); error(errors.KeyboardInterrupt()) end)
      eddy.sleep(10)
    end)
    assert.is_true(other:cancelled())
    assert.equals(0, eddy.current_task():cancelling())
  end))

  -- Python's BaseException subclasses other than KeyboardInterrupt and
  -- SystemExit are grouped like any error; in Lua the errors that are
  -- not error objects (a string, a table) are.
  it("test_taskgroup_20a: a body error that is not an error object is grouped with the child's",
     async(function()
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      g:create_task(crash_after, 0.01)
      local _ <close> = setmetatable({}, {__close = function() error("my base error", 0) end})
      eddy.sleep(10)
    end)
    assert.same({"ValueError", "string"}, error_types(eg))
  end))

  it("test_taskgroup_21a: a child error that is not an error object is grouped with the body's",
     async(function()
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      g:create_task(function() eddy.sleep(0.01); error({"my base error"}) end)
      local _ <close> = setmetatable({}, {__close = function() error(MyExc()) end})
      eddy.sleep(10)
    end)
    assert.same({"MyExc", "table"}, error_types(eg))
  end))

  it("test_taskgroup_task_name: a child named with set_name (the name option, API.md §1)",
     async(function()
    local g <close> = eddy.TaskGroup()
    local t = g:create_task(eddy.sleep, 0)
    t:set_name("yolo")
    assert.equals("yolo", t:get_name())
  end))

  -- asyncio's create_task(coro, context=ctx) runs the task in ctx itself;
  -- eddy's translation (create it inside ctx:run, API.md §1) runs it in a
  -- copy of ctx, as every task (docs/contextvars.md), so what the child
  -- sets stays in its own context (CPython's test_taskgroup_task_context).
  it("the context option: a child created inside ctx:run starts from ctx's values, sets in its copy",
     async(function()
    local cvar = eddy.ContextVar("cvar")
    local function coro(val) eddy.sleep(0); local old = cvar:get(); cvar:set(val); return old end
    local g <close> = eddy.TaskGroup()
    local ctx = eddy.copy_context()
    ctx:run(cvar.set, cvar, 0)
    local t1 = ctx:run(g.create_task, g, coro, 1)
    assert.equals(0, t1:await())
    assert.equals(1, t1:get_context():get(cvar))
    assert.equals(0, ctx:get(cvar))
  end))

  it("test_taskgroup_no_create_task_after_failure: a cancelled child cannot add children",
     async(function()
    local refused = false
    local function coro1() eddy.sleep(0.001); error(errors.ValueError("1/0")) end
    local eg = expect_error(errors.ExceptionGroup, function()
      local g <close> = eddy.TaskGroup()
      g:create_task(coro1)
      g:create_task(function()
        local ok = pcall(eddy.sleep, 1)
        assert.is_false(ok)
        local ok2, err = pcall(g.create_task, g, coro1)
        refused = not ok2 and errors.is(err, errors.RuntimeError)
      end)
    end)
    assert.same({"ValueError"}, error_types(eg))
    assert.is_true(refused)
  end))

  it("test_taskgroup_context_manager_exit_raises: an inner scope's failing close and a child's error",
     async(function(loop)
    local CustomException = errors.class("CustomException", errors.Error)
    local t = loop:create_task(function()
      local ok, err = pcall(function()
        local tg <close> = eddy.TaskGroup()
        local _ <close> = setmetatable({}, {__close = function() error(CustomException()) end})
        tg:create_task(function() error(CustomException()) end)
        eddy.sleep(1)
      end)
      assert.is_false(ok)
      assert.same({"CustomException"}, error_types(err))
      return eddy.current_task():cancelling(), #err.exceptions
    end)
    assert.same({0, 2}, {eddy.wait_for(t, 5)})
  end))

  it("test_nested_groups_both_cancelled: each group uncancels the parent once", async(function()
    local function raise_after(t, cls) eddy.sleep(t); error(cls()) end
    local level_between
    local ok, outer_err = pcall(function()
      local outer_tg <close> = eddy.TaskGroup()
      local ok, inner_err = pcall(function()
        local inner_tg <close> = eddy.TaskGroup()
        inner_tg:create_task(raise_after, 0, errors.RuntimeError)
        outer_tg:create_task(raise_after, 0, errors.ValueError)
      end)
      assert.is_false(ok)
      assert.same({"RuntimeError"}, error_types(inner_err))
      level_between = eddy.current_task():cancelling()
    end)
    assert.is_false(ok)
    assert.same({"ValueError"}, error_types(outer_err))
    assert.equals(1, level_between)
    assert.equals(0, eddy.current_task():cancelling())
  end))
end)
