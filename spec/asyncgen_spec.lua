-- Async iteration and async generators (API.md §1 "async for"), after
-- CPython's Lib/test/test_asyncgen.py (test names cited) and
-- test_base_events' shutdown_asyncgens.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local net = require "support.net"
local expect_error = checks.expect_error

local ticks = eddy.asyncgen(function(yield, n, delay)
  for i = 1, n do
    eddy.sleep(delay)
    yield(i)
  end
end)

describe("async iteration", function()
  it("a plain iterator function may suspend inside a generic for", async(function()
    local i = 0
    local got = {}
    for v in function() eddy.sleep(0.001); i = i + 1; if i <= 3 then return i end end do
      got[#got + 1] = v
    end
    assert.same({1, 2, 3}, got)
  end))
end)

describe("eddy.asyncgen", function()
  it("test_async_gen_iteration_01: values in order, suspending between them", async(function(loop)
    local got = {}
    local t0 = loop:time()
    for i in ticks(3, 0.005) do got[#got + 1] = i end
    assert.same({1, 2, 3}, got)
    assert.is_true(loop:time() - t0 >= 0.014)
  end))

  it("yields several values and gets asend values back", async(function()
    local gen = eddy.asyncgen(function(yield)
      local x = yield(1, "one")
      local y = yield(x * 10)
      return y
    end)()
    assert.same({1, "one"}, {gen:anext()})
    assert.equals(50, gen:asend(5))
    assert.same({}, {gen:asend(7)})  -- the end: no values
    assert.same({}, {gen:anext()})
  end))

  it("test_async_gen_asyncio_aclose_06: break closes the generator, its cleanup may suspend", async(function()
    local cleaned = false
    local gen_fn = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function()
        eddy.sleep(0.001)   -- suspending cleanup
        cleaned = true
      end})
      for i = 1, 100 do yield(i) end
    end)
    for i in gen_fn() do
      if i == 2 then break end
    end
    assert.is_true(cleaned)
  end))

  it("test_async_gen_asyncio_aclose_07: aclose runs pcall cleanups", async(function()
    local log = {}
    local gen = eddy.asyncgen(function(yield)
      local ok, err = pcall(function()
        yield(1)
        yield(2)
      end)
      log[#log + 1] = errors.is(err, errors.GeneratorExit) and "exit" or "other"
      eddy.sleep(0)
      error(err, 0)
    end)()
    assert.equals(1, gen:anext())
    gen:aclose()
    assert.same({"exit"}, log)
    assert.same({}, {gen:anext()})
    gen:aclose()  -- closing twice is fine
  end))

  it("test_async_gen_asyncio_aclose_10: ignoring GeneratorExit raises RuntimeError", async(function()
    local gen = eddy.asyncgen(function(yield)
      while true do pcall(yield, 1) end
    end)()
    gen:anext()
    expect_error(errors.RuntimeError, gen.aclose, gen)
  end))

  it("test_async_gen_asyncio_athrow_02: athrow raises at the yield", async(function()
    local gen = eddy.asyncgen(function(yield)
      local ok, err = pcall(yield, 1)
      yield(errors.is(err, errors.ValueError) and "caught" or "no")
    end)()
    assert.equals(1, gen:anext())
    assert.equals("caught", gen:athrow(errors.ValueError("x")))
  end))

  it("athrow(nil) is an argument error, and the generator stays usable", async(function()
    -- Python's athrow needs an exception (TypeError); error(nil) would
    -- raise a nil nobody can tell from success's absence of a message
    local gen = eddy.asyncgen(function(yield) yield(1) yield(2) end)()
    local ok, err = pcall(gen.athrow, gen, nil)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'athrow' %(error value expected, got nil%)", err)
    assert.equals(1, gen:anext())
    ok, err = pcall(gen.athrow, gen, nil)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'athrow'", err)
    assert.equals(2, gen:anext())
  end))

  it("test_async_gen_exception_11: errors of the body propagate", async(function()
    local gen = eddy.asyncgen(function(yield)
      yield(1)
      eddy.sleep(0)
      error(errors.ValueError("boom"))
    end)
    local got = {}
    local err = expect_error(errors.ValueError, function()
      for v in gen() do got[#got + 1] = v end
    end)
    assert.same({1}, got)
    assert.matches("boom", tostring(err))
  end))

  it("test_async_gen_asyncio_anext_05: anext while running raises RuntimeError", async(function(loop)
    local gate = loop:create_future()
    local gen = eddy.asyncgen(function(yield) gate:await(); yield(1) end)()
    local t = loop:create_task(function() return gen:anext() end)
    eddy.sleep(0)
    expect_error(errors.RuntimeError, gen.anext, gen)
    expect_error(errors.RuntimeError, gen.aclose, gen)
    gate:set_result(true)
    assert.equals(1, t:await())
    gen:aclose()
  end))

  it("test_async_gen_asyncio_shutdown_01: loop:shutdown_asyncgens closes open generators", async(function(loop)
    local finalized = 0
    local gen_fn = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function()
        eddy.sleep(0)
        finalized = finalized + 1
      end})
      yield(1)
      yield(2)
    end)
    local g1, g2 = gen_fn(), gen_fn()
    assert.equals(1, g1:anext())
    assert.equals(1, g2:anext())
    local g3 = gen_fn()  -- never started: not registered
    loop:shutdown_asyncgens()
    assert.equals(2, finalized)
    assert.same({}, {g1:anext()})
    assert.equals("created", g3._state)
  end))

  -- API.md §1 and §11 to the letter, as every other suspending method:
  -- whether the body would suspend makes no difference.
  it("anext, asend, athrow and aclose raise from a plain callback even when the body would not suspend",
     async(function(loop)
    local gen_fn = eddy.asyncgen(function(yield) yield(1) yield(2) end)
    local fresh, started = gen_fn(), gen_fn()
    assert.equals(1, started:anext())
    local errs = checks.from_callback(loop, {
      {"anext", fresh.anext, fresh},
      {"asend", started.asend, started, "x"},
      {"athrow", fresh.athrow, fresh, errors.ValueError("x")},
      {"aclose", started.aclose, started},
      {"for", function() for _ in gen_fn() do end end},
    })
    for key, name in pairs {anext = "anext", asend = "asend", athrow = "athrow", aclose = "aclose",
                            ["for"] = "anext"} do
      assert.matches("^RuntimeError: " .. name .. "%(%) cannot suspend here", errs[key])
    end
    -- nothing changed: in the task each goes on from where it was
    assert.equals(1, fresh:anext())
    assert.equals(2, started:anext())
  end))

  -- API.md §1: a suspending function "called outside a task raises
  -- RuntimeError naming the function", with or without generators open.
  it("shutdown_asyncgens from a plain callback raises RuntimeError, even with nothing to close",
     async(function(loop)
    local errs = checks.from_callback(loop, {{"shutdown", loop.shutdown_asyncgens, loop}})
    assert.matches("^RuntimeError: shutdown_asyncgens%(%) cannot suspend here", errs.shutdown)
  end))

  -- asyncio's _asyncgen_firstiter_hook registers a generator started
  -- after shutdown_asyncgens() too (with a ResourceWarning), so a later
  -- shutdown_asyncgens() still closes it.
  it("a generator started after shutdown_asyncgens is closed by the next one (_asyncgen_firstiter_hook)",
     async(function(loop)
    local closed = false
    local gen_fn = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function() closed = true end})
      yield(1)
    end)
    loop:shutdown_asyncgens()
    local late = gen_fn()
    assert.equals(1, late:anext())
    loop:shutdown_asyncgens()
    assert.is_true(closed)
  end))

  it("warns in debug mode about a generator started after shutdown_asyncgens", function()
    local _, out = checks.run_script([[
      warn("@on")
      local eddy = require "eddy"
      eddy.run(function()
        local loop = eddy.get_running_loop()
        loop:shutdown_asyncgens()
        eddy.asyncgen(function(yield) yield(1) end)():anext()
        print("no warning without debug mode")
        loop:set_debug(true)
        eddy.asyncgen(function(yield) yield(1) end)():anext()
      end)
    ]])
    assert.matches("no warning without debug mode\n[^\n]*was scheduled after loop:shutdown_asyncgens%(%) call", out)
  end)

  it("test_async_gen_asyncio_gc_aclose_09: a generator dropped at a yield is closed by a task", async(function(loop)
    local done = 0
    local gen_fn = eddy.asyncgen(function(yield)
      local ok, err = pcall(function() while true do yield(1) end end)
      eddy.sleep(0.01)  -- the cleanup may suspend: it runs in a task
      eddy.sleep(0.01)
      done = done + 1
      error(err, 0)  -- GeneratorExit goes on
    end)
    local function drop()
      local g = gen_fn()
      g:anext()
      g:anext()
    end
    drop()
    local never = gen_fn()  -- never started, and one run to its end:
    local ended = eddy.asyncgen(function(yield) yield(1) end)()
    for _ in ended do end
    never, ended = nil, nil  -- luacheck: ignore (dropped for the collector)
    collectgarbage()
    collectgarbage()
    -- wait for the cleanup task (its own sleeps may outlast a fixed wait
    -- on a loaded machine), then give the others time to show up
    net.wait_until(function() return done > 0 end)
    eddy.sleep(0.1)
    assert.equals(1, done)  -- only the suspended one had anything to close
    -- a dropped one already closed: shutdown_asyncgens has nothing left to do
    loop:shutdown_asyncgens()
    assert.equals(1, done)
  end))

  it("a generator dropped after its loop closed is left alone", function()
    local loop = eddy.new_event_loop()
    local cleaned = false
    local gen = eddy.asyncgen(function(yield)
      local _ <close> = setmetatable({}, {__close = function() cleaned = true end})
      yield(1)
    end)()
    loop:run_until_complete(function() gen:anext() end)
    loop:close()
    gen = nil  -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_false(cleaned)
  end)

  it("eddy.run shuts the generators of its loop down", function()
    local closed = false
    eddy.run(function()
      local gen = eddy.asyncgen(function(yield)
        local _ <close> = setmetatable({}, {__close = function() closed = true end})
        yield(1)
        yield(2)
      end)()
      gen:anext()
    end)
    assert.is_true(closed)
  end)

  it("bad input: a non-function is an argument error", function()
    assert.has_error(function() eddy.asyncgen(42) end,
                     "bad argument #1 to 'asyncgen' (function expected, got number)")
  end)

  it("takes any callable (API.md §1), a table with __call too", async(function()
    local body = setmetatable({}, {__call = function(_, yield, n) for i = 1, n do yield(i) end end})
    local got = {}
    for i in eddy.asyncgen(body)(3) do got[#got + 1] = i end
    assert.same({1, 2, 3}, got)
  end))
end)

describe("async generators at a script's top level (API.md §11)", function()
  it("iterate, suspend and close there: each step runs the default loop", function()
    local cli = require "cli_helper"
    local res = cli.eddy("-e " .. cli.q([[
      local eddy = require "eddy"
      local ticks = eddy.asyncgen(function(yield, n, delay)
        for i = 1, n do eddy.sleep(delay); yield(i) end
      end)
      local loop = eddy.get_event_loop()
      local t0 = loop:time()
      for i in ticks(3, 0.02) do io.write(i, " ") end
      print(loop:time() - t0 >= 0.05)
      local closed = false
      local g = eddy.asyncgen(function(yield)
        local _ <close> = setmetatable({}, {__close = function() eddy.sleep(0.01); closed = true end})
        for i = 1, 10 do yield(i) end
      end)
      for i in g() do if i == 2 then break end end
      print("closed", closed)
    ]]))
    assert.equal("", res.err)
    assert.equal("1 2 3 true\nclosed\ttrue\n", res.out)
  end)
end)
