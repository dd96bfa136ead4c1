-- Context variables (API.md §8), ported from CPython's
-- Lib/test/test_context.py and the context tests of test_tasks.py
-- (test names cited).  Bodies that set variables run in tasks or inside
-- ctx:run, so the script's own context stays the base one.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local expect_error = checks.expect_error

describe("ContextVar", function()
  it("test_context_var_new_1: the name must be a string", function()
    assert.has_error(function() eddy.ContextVar() end)
    assert.has_error(function() eddy.ContextVar(1) end)
    local c = eddy.ContextVar("a")
    assert.equals("a", c.name)
  end)

  it("test_context_var_repr_1", function()
    assert.matches('name="a"', tostring(eddy.ContextVar("a")))
    assert.matches("default=123", tostring(eddy.ContextVar("a", 123)))
  end)

  it("get: no value and no default raises LookupError", function()
    local c = eddy.ContextVar("c")
    expect_error(errors.LookupError, c.get, c)
    assert.equals(5, c:get(5))
    assert.is_nil(c:get(nil))
    assert.equals(7, eddy.ContextVar("d", 7):get())
  end)

  it("test_context_getset_1: set, get, tokens, reset", function()
    local c = eddy.ContextVar("c")
    eddy.Context():run(function()
      local t = c:set(42)
      assert.equals(42, c:get())
      assert.equals(c, t.var)
      assert.equals(eddy.Token.MISSING, t.old_value)
      local t2 = c:set(43)
      assert.equals(42, t2.old_value)
      c:reset(t2)
      assert.equals(42, c:get())
      c:reset(t)
      expect_error(errors.LookupError, c.get, c)
    end)
  end)

  it("test_context_getset_2: a token of another variable: ValueError", function()
    local v1, v2 = eddy.ContextVar("v1"), eddy.ContextVar("v2")
    eddy.Context():run(function()
      local t1 = v1:set(42)
      expect_error(errors.ValueError, v2.reset, v2, t1)
    end)
  end)

  it("test_context_getset_3: a token used twice: RuntimeError", function()
    local c = eddy.ContextVar("c", 42)
    eddy.Context():run(function()
      local t = c:set(1)
      c:reset(t)
      expect_error(errors.RuntimeError, c.reset, c, t)
      assert.equals(42, c:get())
    end)
  end)

  it("test_context_getset_4: a token of another context: ValueError", function()
    local c = eddy.ContextVar("c", 42)
    local tok = eddy.Context():run(function() return c:set(1) end)
    eddy.Context():run(function()
      expect_error(errors.ValueError, c.reset, c, tok)
    end)
  end)

  it("set(nil) is a value, not an unset", function()
    local c = eddy.ContextVar("c", "default")
    eddy.Context():run(function()
      c:set(nil)
      assert.is_nil(c:get())
      assert.is_true(eddy.copy_context():has(c))
    end)
  end)
end)

describe("Context", function()
  it("test_context_run_1 / test_context_run_2: arguments, results, errors", function()
    local ctx = eddy.Context()
    assert.same({1, 2}, {ctx:run(function(a, b) return a, b end, 1, 2)})
    local ok, err = pcall(ctx.run, ctx, function() error("boom") end)
    assert.is_false(ok)
    assert.matches("boom", err)
  end)

  it("test_context_run_4: changes stay in the context that ran", function()
    local var = eddy.ContextVar("var")
    local ctx1, ctx2 = eddy.Context(), eddy.Context()
    ctx1:run(function() var:set("spam") end)
    assert.is_nil(var:get(nil))
    assert.equals("spam", ctx1:get(var))
    assert.is_nil(ctx2:get(var))
    ctx1:run(function() assert.equals("spam", var:get()) end)
  end)

  it("test_context_run_5: entering a context twice: RuntimeError", function()
    local ctx = eddy.Context()
    ctx:run(function()
      expect_error(errors.RuntimeError, ctx.run, ctx, function() end)
    end)
  end)

  it("test_context_copy_1: a copy does not see later changes", function()
    local var = eddy.ContextVar("var")
    local ctx1 = eddy.Context()
    ctx1:run(function() var:set("a") end)
    local ctx2 = ctx1:copy()
    ctx1:run(function() var:set("b") end)
    assert.equals("b", ctx1:get(var))
    assert.equals("a", ctx2:get(var))
    assert.equals(1, #ctx2)
  end)

  it("test_context_new_1 / mapping methods: keys, values, items, pairs, len", function()
    local a, b = eddy.ContextVar("a"), eddy.ContextVar("b")
    local ctx = eddy.Context()
    assert.equals(0, #ctx)
    ctx:run(function() a:set(1); b:set(2) end)
    assert.equals(2, #ctx)
    local seen = {}
    for var, v in pairs(ctx) do seen[var.name] = v end
    assert.same({a = 1, b = 2}, seen)
    assert.equals(2, #ctx:keys())
    local sum = 0
    for _, v in ipairs(ctx:values()) do sum = sum + v end
    assert.equals(3, sum)
    assert.equals(2, #ctx:items())
    assert.equals("x", ctx:get(eddy.ContextVar("z"), "x"))
  end)
end)

describe("contexts and the loop", function()
  it("the context stays nil (the core's fast path) while no variable is set", async(function(loop)
    assert.is_nil(eddy._core.context_get())
    local t = loop:create_task(function() return eddy._core.context_get() end)
    assert.is_nil(t:await())
    assert.is_nil(t:get_context())
  end))

  it("test_context_1 (test_tasks): a task runs in a copy of its creator's context", async(function(loop)
    local cvar = eddy.ContextVar("cvar", "nope")
    cvar:set("main")
    local function sub() return cvar:get() end
    local t = loop:create_task(function()
      local seen = sub()
      cvar:set("child")  -- does not reach the parent
      return seen, cvar:get()
    end)
    assert.same({"main", "child"}, {t:await()})
    assert.equals("main", cvar:get())
  end))

  it("a value set in a task survives its suspensions", async(function()
    local cvar = eddy.ContextVar("cvar")
    cvar:set(1)
    eddy.sleep(0)
    eddy.sleep(0.001)
    assert.equals(1, cvar:get())
  end))

  it("test_context_3 (test_tasks): many tasks, each its own value", async(function(loop)
    local cvar = eddy.ContextVar("cvar", -1)
    local function fut_task(i)
      cvar:set(i)
      eddy.sleep(0.001 * (i % 3))
      return cvar:get()
    end
    local tasks = {}
    for i = 1, 20 do tasks[i] = loop:create_task(fut_task, i) end
    local results = {eddy.gather(table.unpack(tasks))}
    for i = 1, 20 do assert.equals(i, results[i]) end
    assert.equals(-1, cvar:get())
  end))

  it("test_run_with_context / callbacks run in the context current when scheduled", async(function(loop)
    local cvar = eddy.ContextVar("cvar", "base")
    local seen = {}
    cvar:set("one")
    loop:call_soon(function() seen[#seen + 1] = cvar:get() end)
    cvar:set("two")
    loop:call_soon(function() seen[#seen + 1] = cvar:get() end)
    local ctx = eddy.Context()
    ctx:run(function() loop:call_soon(function() seen[#seen + 1] = cvar:get() end) end)
    eddy.sleep(0)
    -- Each callback runs in a copy of the context taken when scheduled.
    assert.same({"one", "two", "base"}, seen)
  end))

  it("a callback's set does not leak into the base context", async(function(loop)
    local cvar = eddy.ContextVar("cvar", "base")
    local plain = loop:create_task(function()
      eddy.sleep(0.005)
      return cvar:get()
    end)
    loop:call_soon(function() cvar:set("callback") end)
    eddy.sleep(0)
    eddy.sleep(0)
    assert.equals("base", plain:await())
  end))

  it("copy_context in a task: run sees the task's values", async(function()
    local cvar = eddy.ContextVar("cvar")
    cvar:set("task")
    local ctx = eddy.copy_context()
    assert.equals("task", ctx:run(function() return cvar:get() end))
    ctx:run(function() cvar:set("copy") end)
    assert.equals("task", cvar:get())
  end))
  it("ctx:run(fn) in a task: fn may suspend and stays in ctx; the task gets its own back", async(function(loop)
    -- Python's Context.run cannot suspend; a Lua fn can, so the task runs
    -- in ctx (not its own) until fn returns, across its suspensions.
    local cvar = eddy.ContextVar("cvar", "default")
    local ctx = eddy.copy_context()
    ctx:run(function() cvar:set("in ctx") end)
    local seen = {}
    local other = loop:create_task(function()
      for _ = 1, 3 do eddy.sleep(0); seen[#seen + 1] = cvar:get() end
    end)
    local results = {ctx:run(function(a)
      local before = cvar:get()
      eddy.sleep(0.01)
      local after = cvar:get()
      cvar:set("changed in ctx")
      return a, before, after
    end, "arg")}
    assert.same({"arg", "in ctx", "in ctx"}, results)
    assert.equals("default", cvar:get())
    assert.equals("changed in ctx", ctx:get(cvar))
    eddy.sleep(0)
    assert.equals("default", cvar:get())
    other:await()
    assert.same({"default", "default", "default"}, seen)  -- never saw ctx
    -- while fn is suspended ctx is entered: another task cannot enter it
    local inside = loop:create_future()
    local holder = loop:create_task(function()
      ctx:run(function() inside:set_result(true); eddy.sleep(0.05) end)
    end)
    inside:await()
    local e = checks.raises(function() ctx:run(function() end) end, errors.RuntimeError)
    assert.matches("already entered", tostring(e))
    -- cancelling fn's suspension leaves ctx and restores the task's context
    holder:cancel()
    assert.is_false(pcall(holder.await, holder))
    assert.is_true(holder:cancelled())
    assert.equals("changed in ctx", ctx:run(function() return cvar:get() end))
  end))
end)
