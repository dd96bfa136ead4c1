-- eddy.asyncgen: asynchronous generators (Python's `async def` with
-- `yield`): generators whose body may suspend (eddy.sleep, fut:await(),
-- ...) between the values it yields, iterated inside a task.
--
--   local ticks = eddy.asyncgen(function(yield, n, delay)
--     for i = 1, n do eddy.sleep(delay); yield(i) end
--   end)
--   for i in ticks(3, 0.1) do print(i) end   -- inside a task
--
-- eddy.asyncgen(fn) returns a function; calling it makes an AsyncGenerator
-- and returns (gen, nil, nil, gen), so a generic `for` gets gen as its
-- closing value: leaving the loop early (break, error) closes the
-- generator with gen:aclose(), which may suspend.  gen(_) is the
-- iterator: it returns the next values, nil at the end.
--
-- The body runs in its own coroutine; eddy's suspensions pass through it
-- to the task (coroutine transparency), its yields come back to anext.
-- aclose() throws GeneratorExit at the pending yield, so the body's
-- <close> variables and pcall cleanups run, and may suspend.  Started
-- generators are registered with their loop (a weak set) so
-- loop:shutdown_asyncgens() closes those still open, and a generator
-- dropped while suspended at a yield is closed by a task on its loop
-- (asyncio's asyncgen hooks: firstiter and finalizer).

local eddy = require "eddy"
local errors = require "eddy.errors"
local args = require "eddy.args"
local finalizers = require "eddy.finalizers"
local C = eddy._core

-- can_suspend(name): every method raises first where nothing can suspend
-- (a plain callback), naming itself, even when the body would not have
-- suspended (API.md §1, §11); the body's own calls would name themselves.
local can_suspend = C._can_suspend

-- Thrown into a generator by aclose() (Python's GeneratorExit).
local GeneratorExit = errors.class("GeneratorExit", errors.Error)

local THROW = {}   -- resume(co, THROW, err): raise err at the yield

local AsyncGenerator = {__name = "eddy.AsyncGenerator"}
AsyncGenerator.__index = AsyncGenerator

-- States: "created" (not started), "suspended" (at a yield), "running"
-- (inside anext/asend/athrow/aclose), "closed".

function AsyncGenerator:__tostring()
  return string.format("<eddy.AsyncGenerator [%s]>", self._state)
end

-- The body: fn(yield, args...) inside a pcall, so an error unwinds (and
-- runs <close> variables, which may suspend) inside the coroutine.
local function body(self, ...)
  return pcall(self._fn, self._yield, ...)
end

-- asyncio's _asyncgen_firstiter_hook: a generator started after
-- shutdown_asyncgens() is registered too (a later call closes it), with a
-- warning (asyncio's ResourceWarning) in debug mode.
local function register(self)
  local loop = C._get_running_loop() or C.get_event_loop()
  local fields = loop:_fields()
  if fields.asyncgens_shutdown and loop:get_debug() then
    warn("asynchronous generator ", tostring(self),
         " was scheduled after loop:shutdown_asyncgens() call")
  end
  local gens = fields.asyncgens
  if gens == nil then
    gens = setmetatable({}, {__mode = "k"})
    fields.asyncgens = gens
  end
  gens[self] = true
  self._loop = loop
end

-- {================================================= Finalization

-- A generator dropped while suspended at a yield is closed by a task of
-- its loop, as asyncio's _asyncgen_finalizer_hook; an error in aclose()
-- is the task's.  The task starts from a safe point (eddy.finalizers).
-- The generator stays among the loop's (the task holds it), as in
-- asyncio's WeakSet: a task cancelled before it started (eddy.run cancels
-- what is left before it shuts the generators down) leaves it to
-- shutdown_asyncgens, so its cleanup still runs.
local function close_dropped(gen)
  if not gen._loop:is_closed() then gen._loop:create_task(gen.aclose, gen) end
end

function AsyncGenerator:__gc()
  local loop = self._loop
  if self._state ~= "suspended" or loop == nil or loop:is_closed() then return end
  finalizers.later(loop, close_dropped, self)
end

-- }=================================================

-- coroutine.resume(co, ...), but at a script's top level (API.md §11:
-- no loop running, the main thread) inside a task on the default loop,
-- so that the body's suspending calls run that loop as the chunk's own
-- would: a nested coroutine can pass a suspension on to a task only.
local function resume_body(co, ...)
  local _, ismain = coroutine.running()
  if ismain and C._get_running_loop() == nil then
    local values = table.pack(...)
    return eddy.await(function() return coroutine.resume(co, table.unpack(values, 1, values.n)) end)
  end
  return coroutine.resume(co, ...)
end

-- Resume the body with the given values; returns what it yielded, or
-- nothing at its end; raises its error.  'what' names the method.
local function step(self, what, ...)
  can_suspend(what)
  local state = self._state
  if state == "running" then
    error(errors.RuntimeError(what .. "(): asynchronous generator is already running"), 3)
  end
  if state == "closed" then return end
  local res
  self._state = "running"
  if state == "created" then
    register(self)
    res = table.pack(resume_body(self._co, self, table.unpack(self._args, 1, self._args.n)))
  else
    res = table.pack(resume_body(self._co, ...))
  end
  if not res[1] then  -- an error outside the body's pcall
    self._state = "closed"
    error(res[2], 0)
  end
  if coroutine.status(self._co) == "dead" then
    self._state = "closed"
    if not res[2] then error(res[3], 0) end  -- the body failed
    return
  end
  self._state = "suspended"
  return table.unpack(res, 2, res.n)
end

-- gen:anext() -> the next yielded values; nothing at the end (S)
function AsyncGenerator:anext() return step(self, "anext") end

-- The generic-for iterator: for v in gen do / for v in agen_fn(...) do
AsyncGenerator.__call = function(self) return step(self, "anext") end

-- gen:asend(...) -> next yielded values; yield(...) returns the sent values (S).
-- A value sent to a generator not started yet is a programming error
-- (Python's TypeError), so an argument error (API.md §1), as athrow(nil).
function AsyncGenerator:asend(...)
  if self._state == "created" and select("#", ...) > 0 and (...) ~= nil then
    error("bad argument #1 to 'asend' (can't send non-nil value to a just-started "
          .. "async generator)", 2)
  end
  return step(self, "asend", ...)
end

-- gen:athrow(err) -> next yielded values; raises err at the pending yield (S).
-- A class is raised as an instance of it, as Python's athrow(ValueError).
function AsyncGenerator:athrow(err)
  if err == nil then error(args.message("athrow", 1, "error value", err), 2) end
  if errors.isclass(err) then err = err() end
  can_suspend("athrow")  -- before a created generator is closed
  if self._state == "created" then
    self._state = "closed"
    error(err, 2)
  end
  return step(self, "athrow", THROW, err)
end

-- gen:aclose() (S): finish the generator, running its cleanup.
function AsyncGenerator:aclose()
  can_suspend("aclose")  -- also when there is nothing to close
  local state = self._state
  if state == "running" then
    error(errors.RuntimeError("aclose(): asynchronous generator is already running"), 2)
  end
  if state ~= "suspended" then
    self._state = "closed"
    return
  end
  local res = table.pack(pcall(step, self, "aclose", THROW, GeneratorExit()))
  if res[1] then
    if self._state ~= "closed" then
      error(errors.RuntimeError("async generator ignored GeneratorExit"), 2)
    end
    return
  end
  if not errors.is(res[2], GeneratorExit) then error(res[2], 0) end
end

-- Closing value of a generic for: close early exits (may suspend).  One
-- not suspended at a yield is closed without aclose's check, so that a
-- for whose first step raised (from a plain callback) keeps that error.
function AsyncGenerator:__close()
  if self._state ~= "suspended" and self._state ~= "running" then
    self._state = "closed"
    return
  end
  return self:aclose()
end

-- eddy.asyncgen(fn) -> function(...) -> gen, nil, nil, gen
function eddy.asyncgen(fn)
  if not args.callable(fn) then
    error(args.message("asyncgen", 1, "function", fn), 2)
  end
  return function(...)
    local self = setmetatable({_fn = fn, _args = table.pack(...), _state = "created"}, AsyncGenerator)
    local co = coroutine.create(body)
    self._co = co
    -- yield(...) -> the values asend() passes in (raises what athrow and
    -- aclose throw)
    self._yield = function(...)
      if coroutine.running() ~= co then
        error("yield of an async generator called outside its body", 2)
      end
      local res = table.pack(coroutine.yield(...))
      if res[1] == THROW then error(res[2], 0) end
      return table.unpack(res, 1, res.n)
    end
    return self, nil, nil, self
  end
end

eddy.AsyncGenerator = AsyncGenerator

return eddy
