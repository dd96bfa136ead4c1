-- Suspension is transparent (API.md §6): nested coroutine.wrap/resume
-- generators inside a task, pcall/xpcall, metamethods and __close may all
-- call suspending functions, and coroutine.* keeps lcorolib's behaviour.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async

-- A generator of 1..n that sleeps before each value.
local function counting(n, delay)
  return coroutine.wrap(function()
    for i = 1, n do
      eddy.sleep(delay or 0)
      coroutine.yield(i)
    end
  end)
end

local function collect(iter)
  local out = {}
  for v in iter do out[#out + 1] = v end
  return out
end

describe("nested coroutines inside a task", function()
  it("a coroutine.wrap generator may sleep; its yields still reach its consumer",
     async(function(loop)
    local t0 = loop:time()
    assert.same({1, 2, 3}, collect(counting(3, 0.005)))
    assert.is_true(loop:time() - t0 >= 0.015)
  end))

  it("generators nest: a generator consuming another, both sleeping", async(function()
    local sums = coroutine.wrap(function()
      for i in counting(3) do
        local s = 0
        for j in counting(i, 0.001) do s = s + j end
        eddy.sleep(0)
        coroutine.yield(s)
      end
    end)
    assert.same({1, 3, 6}, collect(sums))
  end))

  it("other tasks run while a generator sleeps", async(function(loop)
    local log = {}
    local other = loop:create_task(function()
      for i = 1, 3 do log[#log + 1] = "other" .. i eddy.sleep(0) end
    end)
    -- the generator sleeps before each value, so the other task goes first
    for i in counting(3) do log[#log + 1] = "gen" .. i end
    other:await()
    assert.same({"other1", "gen1", "other2", "gen2", "other3", "gen3"}, log)
  end))

  it("coroutine.resume passes values both ways around suspensions", async(function()
    local co = coroutine.create(function(a)
      local b = coroutine.yield(a + 1)
      eddy.sleep(0.001)
      local c = coroutine.yield(b * 2)
      return "end", c
    end)
    assert.same({true, 2}, {coroutine.resume(co, 1)})
    assert.same({true, 20}, {coroutine.resume(co, 10)})
    assert.same({true, "end", "last"}, {coroutine.resume(co, "last")})
    assert.same({false, "cannot resume dead coroutine"}, {coroutine.resume(co)})
    assert.equal("dead", coroutine.status(co))
  end))

  it("coroutine.status and isyieldable stay right around a suspension", async(function()
    local outer_co
    local co = coroutine.create(function()
      assert.equal("running", coroutine.status(coroutine.running()))
      assert.equal("normal", coroutine.status(outer_co))
      eddy.sleep(0.001)
      assert.is_true(coroutine.isyieldable())
      coroutine.yield("y")
    end)
    outer_co = coroutine.running()
    assert.same({true, "y"}, {coroutine.resume(co)})
    assert.equal("suspended", coroutine.status(co))
  end))

  it("an error in a generator propagates to its consumer with position, as lcorolib",
     async(function()
    local gen = coroutine.wrap(function()
      eddy.sleep(0)
      error("gen failed")
    end)
    local ok, err = pcall(gen)
    assert.is_false(ok)
    assert.matches("gen failed", err)
    local co = coroutine.create(function() eddy.sleep(0) error(errors.ValueError("obj")) end)
    local ok2, err2 = coroutine.resume(co)
    assert.is_false(ok2)
    assert.is_true(errors.is(err2, errors.ValueError))
  end))

  it("cancelling the task reaches into a sleeping generator", async(function(loop)
    local cleaned = false
    local task = loop:create_task(function()
      local gen = coroutine.wrap(function()
        local guard <close> = setmetatable({}, {__close = function() cleaned = true end})
        eddy.sleep(10)
        coroutine.yield(1)
      end)
      return gen()
    end)
    eddy.sleep(0)
    eddy.sleep(0)
    task:cancel()
    local ok, err = pcall(task.await, task)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.CancelledError))
    assert.is_true(cleaned)
  end))

  it("a coroutine waiting for eddy inside another task's coroutine.resume belongs to that "
     .. "task until it comes back: create_task, resume and close refuse it, then it is free",
     async(function(loop)
    local co = coroutine.create(function()
      eddy.sleep(0.01)
      local v = coroutine.yield("first")
      return v
    end)
    local owner = loop:create_task(function() return coroutine.resume(co) end)
    eddy.sleep(0)
    assert.equal("suspended", coroutine.status(co))
    local ok, err = pcall(loop.create_task, loop, co)
    assert.is_false(ok)
    assert.equal("RuntimeError: coroutine is already run by a task", tostring(err))
    assert.same({false, "cannot resume a coroutine that a task runs"}, {coroutine.resume(co)})
    assert.has_error(function() coroutine.close(co) end,
                     "cannot close a coroutine that a task runs (cancel the task instead)")
    assert.same({true, "first"}, {owner:await()})
    assert.same({true, "second"}, {coroutine.resume(co, "second")})  -- a plain generator again
  end))

  it("a suspension across a C function that cannot yield raises RuntimeError", async(function()
    local ok, err = pcall(table.sort, {3, 1, 2}, function(a, b)
      eddy.sleep(0)
      return a < b
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError))
  end))

  it("says a C function is in the way, not that there is no task, when the task's own "
     .. "coroutine calls from string.gsub or a __tostring called from C", async(function()
    local pattern = "^RuntimeError: sleep%(%) cannot suspend here: a C function .* stands "
                    .. "between this call and its task$"
    local _, err = pcall(string.gsub, "ab", ".", function(c) eddy.sleep(0) return c end)
    assert.matches(pattern, tostring(err))
    _, err = pcall(tostring, setmetatable({}, {__tostring = function() eddy.sleep(0) end}))
    assert.matches(pattern, tostring(err))
    assert.equal("after", eddy.sleep(0, "after"))  -- and the task still suspends
  end))
end)

describe("suspension inside protected calls", function()
  it("works inside pcall and returns every result", async(function()
    assert.same({true, "a", "b"}, {pcall(eddy.sleep, 0.001, "a", "b")})
  end))

  it("works inside xpcall; errors after it reach the handler", async(function()
    assert.same({true, "x"}, {xpcall(eddy.sleep, debug.traceback, 0.001, "x")})
    local ok, msg = xpcall(function()
      eddy.sleep(0.001)
      error("after sleep")
    end, function(m) return "handled: " .. m end)
    assert.is_false(ok)
    assert.matches("^handled: .*after sleep", msg)
  end))

  it("works in nested pcalls", async(function()
    local ok, inner_ok, v = pcall(pcall, function()
      return pcall(eddy.sleep, 0, "deep")
    end)
    assert.is_true(ok)
    assert.is_true(inner_ok)
    assert.is_true(v)
  end))
end)

describe("suspension inside metamethods", function()
  local mt = {
    __index = function(_, k) return eddy.sleep(0.001, "index:" .. k) end,
    __add = function() return eddy.sleep(0, "add") end,
    __lt = function() eddy.sleep(0.001) return true end,
    __le = function() eddy.sleep(0) return false end,
    __concat = function() return eddy.sleep(0, "concat") end,
    __eq = function() eddy.sleep(0) return true end,
    __call = function(_, x) return eddy.sleep(0.001, "call:" .. x) end,
    __len = function() return eddy.sleep(0, 7) end,
    __newindex = function(t, k, v) eddy.sleep(0) rawset(t, k, v) end,
  }

  it("__index, __newindex, __call and __len may suspend", async(function()
    local obj = setmetatable({}, mt)
    assert.equal("index:foo", obj.foo)
    assert.equal("call:1", obj(1))
    assert.equal(7, #obj)
    obj.bar = 5
    assert.equal(5, rawget(obj, "bar"))
  end))

  it("__add, __lt, __le, __concat and __eq may suspend", async(function()
    local a, b = setmetatable({}, mt), setmetatable({}, mt)
    assert.equal("add", a + b)
    assert.is_true(a < b)
    assert.is_false(a <= b)
    assert.equal("concat", a .. "x")
    assert.is_true(a == b)
  end))
end)

describe("suspension inside __close", function()
  it("__close may suspend on a normal scope exit", async(function(loop)
    local log = {}
    do
      local guard <close> = setmetatable({}, {__close = function(_, err)
        log[#log + 1] = "closing " .. tostring(err)
        eddy.sleep(0.001)
        log[#log + 1] = "closed"
      end})
      log[#log + 1] = "body"
    end
    assert.same({"body", "closing nil", "closed"}, log)
  end))

  it("__close may suspend while an error unwinds through pcall", async(function()
    local log = {}
    local ok, err = pcall(function()
      local guard <close> = setmetatable({}, {__close = function(_, e)
        eddy.sleep(0.001)
        log[#log + 1] = "closed after " .. tostring(e)
      end})
      error(errors.ValueError("unwinding"))
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
    assert.same({"closed after ValueError: unwinding"}, log)
  end))
end)

describe("suspension inside require", function()
  -- A module in a directory of its own, put first on package.path.
  local function with_module(name, source, body)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
    f:write(source)
    f:close()
    local saved = package.path
    package.path = dir .. "/?.lua;" .. saved
    local ok, err = pcall(body)
    package.path = saved
    package.loaded[name] = nil
    os.execute("rm -rf " .. dir)
    assert(ok, err)
  end

  it("a module whose main chunk sleeps can be required from a task", async(function(loop)
    with_module("eddy_sleepy_mod", [[
      local eddy = require "eddy"
      local name = ...
      return {greeting = eddy.sleep(0.005, "hello from " .. name)}
    ]], function()
      local t0 = loop:time()
      local mod, path = require "eddy_sleepy_mod"
      assert.equal("hello from eddy_sleepy_mod", mod.greeting)
      assert.matches("eddy_sleepy_mod%.lua$", path)
      assert.is_true(loop:time() - t0 >= 0.005)
      assert.equal(mod, (require "eddy_sleepy_mod"))  -- loaded once
    end)
  end))

  it("keeps require's results and errors: true for a module returning nothing, "
     .. "'not found' listing every searcher", async(function()
    with_module("eddy_quiet_mod", "require('eddy').sleep(0)", function()
      assert.is_true(require "eddy_quiet_mod")
      local ok, err = pcall(require, "eddy_no_such_module")
      assert.is_false(ok)
      assert.matches("module 'eddy_no_such_module' not found:\n\tno field package.preload", err)
    end)
  end))
end)

describe("test_pep492", function()
  it("test_context_manager_async_with: a primitive's acquire guard held by <close> (async with)",
     async(function()
    for _, lock in ipairs {eddy.Lock(), eddy.Condition(), eddy.Semaphore(), eddy.BoundedSemaphore()} do
      eddy.sleep(0.001)
      assert.is_false(lock:locked())
      do
        local guard <close> = lock:acquire()
        assert.is_truthy(guard)
        assert.is_true(lock:locked())
        eddy.sleep(0.001)
        assert.is_true(lock:locked())
      end
      assert.is_false(lock:locked())
    end
  end))

  it("test_async_def_coroutines: a function calling a suspending function, in and out of debug mode",
     function()
    local loop = eddy.new_event_loop()
    local function bar() eddy.sleep(0); return "spam" end
    local function foo() return bar() end
    assert.equal("spam", loop:run_until_complete(foo))
    loop:set_debug(true)
    assert.equal("spam", loop:run_until_complete(foo))
    loop:close()
  end)

  it("test_task_print_stack: a running task's own stack ends in the function asking", async(function(loop)
    local T
    local function foo()
      local stack = T:get_stack(1)
      return stack
    end
    T = loop:create_task(function() local stack = foo(); return stack end)
    local stack = T:await()
    assert.equal(1, #stack)
    assert.equal("foo", stack[1].name)
  end))

  it("test_double_await: a coroutine a task runs cannot be run by another (RuntimeError)",
     async(function(loop)
    local co = coroutine.create(function() eddy.sleep(0.1) end)
    local t = loop:create_task(co)
    eddy.sleep(0)
    local ok, err = pcall(function() return loop:create_task(co):await() end)
    t:cancel()
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.RuntimeError), tostring(err))
    assert.matches("already run by a task", tostring(err))
  end))
end)
