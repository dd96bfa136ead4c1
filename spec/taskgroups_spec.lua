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

  it("test_taskgroup_07: an error in the body cancels the children", async(function(loop)
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
    eddy.sleep(0.01)
    assert.is_false(r:done())
    r:cancel()
    local eg = expect_error(errors.ExceptionGroup, r.await, r)
    assert.same({"ValueError"}, error_types(eg))
    assert.equals(5, #eg.exceptions)
  end))

  it("test_taskgroup_16: cancelling the parent propagates CancelledError", async(function(loop)
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

  it("test_taskgroup_17: the parent cancelled while __close waits", async(function(loop)
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

  it("test_taskgroup_11 / nested groups: the inner failure reaches the outer one", async(function(loop)
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

  it("a child failing while the group waits: the parent's cancel count is back to 0 (3.13)",
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

  it("test_create_task_after_exit: a finished group refuses new tasks (RuntimeError)", async(function()
    local saved
    do
      local g <close> = eddy.TaskGroup()
      saved = g
    end
    expect_error(errors.RuntimeError, saved.create_task, saved, function() end)
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
