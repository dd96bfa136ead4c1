-- cancel_storm.lua SEED STEPS: a cancellation storm over eddy's high-level
-- layer (API.md §6, §8), with invariants checked as it goes.
--
-- It makes a few of each primitive (Lock, Semaphore, BoundedSemaphore,
-- Condition, Event, Barrier, Queue, PriorityQueue, LifoQueue) and, for
-- STEPS turns of the loop, spawns worker tasks that each run a random
-- script: acquire and release with <close> guards (plainly, inside
-- wait_for with tiny timeouts, inside eddy.timeout scopes, inside shield),
-- Condition wait/wait_for/notify/notify_all, Event wait/set/clear,
-- Barrier wait/abort/reset, Queue put/get/_nowait/task_done/join/shutdown,
-- and gather/wait/as_completed/TaskGroup over sub-workers.  Meanwhile a
-- chaos step (the main task) cancels random tasks, with and without a
-- message, sometimes twice, sometimes uncancel()s one, and wakes the
-- first getter, putter or condition waiter in line and cancels it at
-- once (asyncio's lost-wakeup cases).  Workers handle
-- CancelledError as correct asyncio code does: they release in <close>
-- handlers, then re-raise it (or, some of them, swallow it and uncancel()).
--
-- Checked after every turn and operation: a Lock held by at most one
-- worker, locked() exactly while held, taken in FIFO order; a Semaphore's
-- value + units held + units handed to woken waiters == its initial
-- value, never negative, never above it when bounded; no waiter left
-- queued with the resource free and nobody woken to take it; notify(n)
-- waking n live waiters, and a waiter notified then cancelled waking the
-- next as it leaves wait, which returns holding the lock; Queue items put
-- == got + left + dropped by shutdown, its unfinished count == puts -
-- task_done calls - dropped; no getter (putter) left waiting on a queue
-- with items (room) while no get (put) completes; Event.wait returning
-- only after a set(), none left unwoken while set; a Barrier holding no
-- more than its parties, letting no more through than its phases
-- hold; wait_for never returning before its awaitable ended; gather,
-- wait, as_completed and TaskGroup outcomes matching their children's; a
-- worker holding nothing between operations, with no cancel request left
-- undelivered.  At the end (STEPS turns, then releasing every waiter:
-- events set, conditions notified, barriers aborted, queues shut down):
-- every task done within a bounded number of turns (no deadlock), every
-- primitive free with no waiter, a Semaphore's value back to its initial
-- value, each worker's outcome consistent with what was done to it
-- (cancelled only if it was cancelled and it re-raised; returned
-- normally otherwise, with no cancel request left unseen), all_tasks()
-- holding only the main task, and no report through the exception
-- handler ("exception was never retrieved", "Task was destroyed but it
-- is pending").
--
-- A violation prints "VIOLATION seed S step N: what" and the trace of
-- the last events on stderr and exits 1; the last line on stdout is "ok
-- SEED STEPS: ..." when the run went to its end.  Choices come from the
-- run's own generator, seeded by SEED; the loop's time is used only by
-- tiny timeouts, so a run is deterministic in its choices, not always in
-- its timing.  FUZZ_TRACE=1 prints every event on stderr as it happens.
-- A campaign: docs/testing.md.
local eddy = require "eddy"
local errors = eddy.errors

local SEED = assert(math.tointeger(tonumber(arg[1])), "usage: cancel_storm.lua SEED STEPS")
local STEPS = math.tointeger(tonumber(arg[2])) or 300
local TRACE = os.getenv("FUZZ_TRACE")

local CancelledError, TimeoutError = errors.CancelledError, errors.TimeoutError

-- {================================================= choices

-- splitmix64: the run's own generator, independent of math.random.
local rng_state = SEED
local function rand(n)  -- an integer in 1..n
  rng_state = rng_state + 0x9E3779B97F4A7C15
  local z = rng_state
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  z = z ~ (z >> 31)
  return (z >> 1) % n + 1
end
local function chance(p) return rand(1000) <= p * 1000 end
local function pick(list) return list[rand(#list)] end

-- A tiny timeout: 0 (expires at once), or 0.1 to 2 ms.
local TIMEOUTS = {0, 0, 0.0001, 0.0005, 0.001, 0.002}
local function tiny() return pick(TIMEOUTS) end

-- }=================================================

-- {================================================= trace and violations

local step = 0       -- the chaos turn
local ring, ring_n = {}, 0
local RING = 100
local function trace(fmt, ...)
  local line = ("[%d] " .. fmt):format(step, ...)
  ring_n = ring_n + 1
  ring[ring_n % RING] = line
  if TRACE then io.stderr:write(line, "\n") end
end

local function violation(fmt, ...)
  local what = fmt:format(...)
  io.stderr:write(("VIOLATION seed %d step %d: %s\n"):format(SEED, step, what))
  io.stderr:write("last events:\n")
  for i = math.max(1, ring_n - RING + 1), ring_n do
    io.stderr:write("  ", ring[i % RING], "\n")
  end
  io.stderr:write(("rerun: eddy tools/fuzz/cancel_storm.lua %d %d\n"):format(SEED, STEPS))
  io.stderr:flush()
  os.exit(1)
end

-- }=================================================

-- {================================================= resources

-- A resource: {kind, name, obj, n (initial value), nheld (units held),
-- line (see in_line)}.  A hold is a to-be-closed record of one unit
-- taken: closing it releases the unit, once.
local res_of = {}    -- kind -> array of resources
local resources = {} -- every resource
local function add_resource(kind, name, obj, fields)
  local r = fields or {}
  r.kind, r.name, r.obj, r.nheld, r.line = kind, name, obj, 0, {}
  res_of[kind] = res_of[kind] or {}
  table.insert(res_of[kind], r)
  table.insert(resources, r)
  return r
end

local Hold = {}
Hold.__index = Hold

local function register(h)
  local r = h.res
  if r.kind == "lock" or r.kind == "cond" then
    if r.nheld > 0 then
      violation("%s taken by %s while held by another", r.name, h.who.name)
    end
  elseif r.nheld >= r.n then
    violation("%s: a unit more than its %d taken by %s", r.name, r.n, h.who.name)
  end
  r.nheld = r.nheld + 1
  h.who.nheld = h.who.nheld + 1
end

local function unregister(h)
  local r = h.res
  r.nheld = r.nheld - 1
  h.who.nheld = h.who.nheld - 1
end

-- take(r, who, guard) -> hold, right after r.obj:acquire() returned 'guard'
local function take(r, who, guard)
  if not guard then violation("%s:acquire() returned %s", r.name, tostring(guard)) end
  local h = setmetatable({res = r, who = who}, Hold)
  register(h)
  trace("%s took %s", who.name, r.name)
  return h
end

function Hold:release()
  if self.released then return end
  self.released = true
  unregister(self)
  trace("%s releases %s", self.who.name, self.res.name)
  self.res.obj:release()
end
Hold.__close = Hold.release

-- }=================================================

-- {================================================= tasks

-- Every task the run made, with a record: {name, task, top (a worker
-- spawned by chaos), mode ("propagate" or "swallow" a cancellation),
-- tainted (chaos uncancel()ed it: the cancellation checks are off),
-- cancels (cancel() calls that returned true), nheld, op}.
local records = {}
local stopping = false

local function new_record(name, fields)
  local rec = fields or {}
  rec.name, rec.cancels, rec.nheld = name, 0, 0
  table.insert(records, rec)
  return rec
end

-- The pending tasks chaos may cancel.
local targets = {}

-- Give rec its task: named, a target until done.
local function own(rec, task)
  rec.task = task
  task:set_name(rec.name)
  targets[#targets + 1] = rec
  task:add_done_callback(function()
    for i, r in ipairs(targets) do
      if r == rec then
        targets[i] = targets[#targets]
        targets[#targets] = nil
        break
      end
    end
  end)
  return task
end

local function spawn(rec, fn, ...)
  return own(rec, eddy.create_task(fn, ...))
end

-- Who is in a lock's or semaphore's acquire (entries {task, rec}: the
-- task may be one wait_for made), a queue's get or put, or a condition's
-- wait (entries: records), in the order they called it: chaos wakes the
-- first and cancels it at once, the case of asyncio's lost getters,
-- putters and notifications.  Closing the result leaves the line.
local function in_line(line, w)
  line[#line + 1] = w
  return setmetatable({}, {__close = function()
    for i, x in ipairs(line) do
      if x == w then table.remove(line, i); break end
    end
  end})
end

-- acquire(r, who) -> hold: r.obj:acquire() in the current task, in r's
-- line.  A Lock is FIFO (API.md §8): who gets it has nobody ahead in line
-- still waiting whose task was not cancelled.
local function acquire(r, who)
  local me = {task = eddy.current_task(), rec = who}
  local _ <close> = in_line(r.line, me)
  local guard = r.obj:acquire()
  if r.kind == "lock" or r.kind == "cond" then
    for _, e in ipairs(r.line) do
      if e == me then break end
      if e.task:cancelling() == 0 and not e.rec.tainted then
        violation("%s: %s took it ahead of %s, waiting since before", r.name, who.name, e.rec.name)
      end
    end
  end
  return take(r, who, guard)
end

local function pause(k)
  for _ = 1, k do eddy.sleep(0) end
end

-- }=================================================

-- {================================================= operations

-- Each operation: {name, weight, make = function(depth) -> params,
-- run = function(w, p), expected = set of error class names it may raise
-- (besides a CancelledError the worker was sent), forwards = true when it
-- may raise a CancelledError of a task it awaits (gather, as_completed,
-- wait_for of a sub-worker)}.
local ops = {}
local function op(def) ops[#ops + 1] = def; return def end

local make_script  -- (depth) -> array of {op, params}

-- The class name of an error, for the expected sets.
local CLASSES = {"CancelledError", "TimeoutError", "BrokenBarrierError",
                 "QueueShutDown", "QueueEmpty", "QueueFull", "ExceptionGroup",
                 "ValueError"}
local function class_name(err)
  for _, name in ipairs(CLASSES) do
    if errors.is(err, errors[name]) then return name end
  end
end

local function set(...)
  local s = {}
  for _, k in ipairs({...}) do s[k] = true end
  return s
end

-- A lock or semaphore at random.
local function lockish()
  return pick(chance(0.4) and res_of.lock or res_of.sem)
end

-- Acquire r in a task of its own that takes the hold; returns the task.
local function acquire_task(r, w)
  local rec = new_record(w.name .. ".acq", {mode = "propagate"})
  w.inner = rec  -- (chaos may cancel it: its CancelledError reaches w)
  return spawn(rec, function()
    return acquire(r, rec)
  end)
end

-- The hold of an acquire_task whose awaiting failed: released once the
-- task is done, if it got the unit (what correct code does with a task
-- whose result nobody will take).
local function adopt(t)
  local function settle()
    if not t:cancelled() and t:exception() == nil then t:result():release() end
  end
  if t:done() then settle() else t:add_done_callback(settle) end
end

-- wait_for waits for its awaitable to end, cancelled or not; only with a
-- timeout of 0, when the caller is cancelled while it waits, does it
-- leave it running (asyncio's _cancel_and_wait is cancelled too).
local function check_ended(w, running, timeout, ok, err)
  if running and not (timeout <= 0 and not ok and errors.is(err, CancelledError)) then
    violation("%s: wait_for returned with its awaitable running", w.name)
  end
end

op {name = "acquire", weight = 6,
  make = function() return {r = lockish(), k = rand(4) - 1} end,
  run = function(w, p)
    local h <close> = acquire(p.r, w)
    pause(p.k)
  end}

-- A cleanup that suspends (API.md §1: __close may suspend), releasing
-- before or after its own suspension; a cancellation arriving there is
-- raised from __close once the unit is back.
op {name = "acquire_async_close", weight = 3,
  make = function() return {r = lockish(), k = rand(3) - 1, first = chance(0.5)} end,
  run = function(w, p)
    local h = acquire(p.r, w)
    local _ <close> = setmetatable({}, {__close = function()
      if p.first then h:release() end
      local ok, err = pcall(pause, p.k + 1)
      h:release()
      if not ok then error(err, 0) end
    end})
    pause(p.k)
  end}

op {name = "acquire_wait_for", weight = 5, expected = set("TimeoutError"),
  make = function() return {r = lockish(), k = rand(3) - 1, timeout = tiny()} end,
  run = function(w, p)
    local t = acquire_task(p.r, w)
    local ok, h = pcall(eddy.wait_for, t, p.timeout)
    check_ended(w, not t:done(), p.timeout, ok, h)
    if not ok then adopt(t); error(h, 0) end
    local hold <close> = h
    pause(p.k)
  end}

op {name = "acquire_wait_for_fn", weight = 3, expected = set("TimeoutError"),
  make = function() return {r = lockish(), k = rand(3) - 1, timeout = tiny()} end,
  run = function(w, p)
    -- The awaitable is a function: wait_for makes its task, and must not
    -- return before that task has ended.
    local box = {}
    local ok, err = pcall(eddy.wait_for, function()
      box.started = true
      local _ <close> = setmetatable({}, {__close = function() box.ended = true end})
      box.h = acquire(p.r, w)
      if box.abandoned then box.h:release() end
      return box.h
    end, p.timeout)
    check_ended(w, box.started and not box.ended, p.timeout, ok, err)
    if not ok then
      box.abandoned = true
      if box.h then box.h:release() end
      error(err, 0)
    end
    local hold <close> = box.h
    pause(p.k)
  end}

op {name = "acquire_timeout", weight = 5, expected = set("TimeoutError"),
  make = function()
    return {r = lockish(), k = rand(4) - 1, timeout = tiny(), at = chance(0.3),
            resched = chance(0.2) and tiny() or nil}
  end,
  run = function(w, p)
    local loop = eddy.get_running_loop()
    local scope <close> = p.at and eddy.timeout_at(loop:time() + p.timeout)
                          or eddy.timeout(p.timeout)
    if p.resched and not scope:expired() then scope:reschedule(loop:time() + p.resched) end
    local h <close> = acquire(p.r, w)
    pause(p.k)
  end}

op {name = "acquire_shield", weight = 4,
  make = function() return {r = lockish(), k = rand(3) - 1} end,
  run = function(w, p)
    local t = acquire_task(p.r, w)
    local outer = eddy.shield(t)
    local ok, h = pcall(outer.await, outer)
    if not ok then adopt(t); error(h, 0) end
    local hold <close> = h
    pause(p.k)
  end}

-- Condition: generation counters make wait_for's predicates come true.

-- r.obj:notify(n) (nil: notify_all), holding its lock: it must wake the
-- first n waiters still waiting; a cancelled one does not count.
local function notify(r, n)
  r.gen = r.gen + 1
  local before = {}
  for _, fut in r.obj._waiters:each() do before[fut] = not fut:done() end
  if n then r.obj:notify(n) else r.obj:notify_all() end
  local pending, woken = 0, 0
  for fut, was in pairs(before) do
    if was then
      pending = pending + 1
      if fut:done() and not fut:cancelled() then woken = woken + 1 end
    end
  end
  if woken ~= math.min(n or math.huge, pending) then
    violation("%s: notify(%s) woke %d of %d waiting", r.name, tostring(n), woken, pending)
  end
end

op {name = "condition", weight = 6, expected = set("TimeoutError"),
  make = function()
    return {r = pick(res_of.cond), what = pick({"wait", "wait", "wait_for", "notify", "notify_all"}),
            n = rand(3), timeout = chance(0.5) and tiny() or nil, k = rand(3) - 1}
  end,
  run = function(w, p)
    local r = p.r
    local scope <close> = p.timeout and eddy.timeout(p.timeout)
    local h <close> = acquire(r, w)
    if p.what == "notify" or p.what == "notify_all" then
      notify(r, p.what == "notify" and p.n or nil)
      pause(p.k)
      return
    end
    -- The lock is released inside wait and taken again before it returns.
    local line <close> = in_line(r.waiting, w)
    unregister(h)
    local start = r.gen
    local ok, err
    if p.what == "wait" then
      ok, err = pcall(r.obj.wait, r.obj)
    else
      ok, err = pcall(r.obj.wait_for, r.obj, function() return stopping or r.gen > start end)
      if ok and not (stopping or r.gen > start) then
        violation("%s: %s:wait_for returned with its predicate false", w.name, r.name)
      end
    end
    if not r.obj:locked() then
      violation("%s: %s:%s left (%s) without the lock", w.name, r.name, p.what,
                ok and "returned" or tostring(err))
    end
    register(h)
    if not ok then error(err, 0) end
    pause(p.k)
  end}

op {name = "event", weight = 4, expected = set("TimeoutError"),
  make = function()
    return {r = pick(res_of.event), what = pick({"wait", "wait", "set", "clear"}),
            timeout = chance(0.6) and tiny() or nil}
  end,
  run = function(w, p)
    local e = p.r.obj
    if p.what == "set" then
      p.r.sets = p.r.sets + 1
      e:set()
    elseif p.what == "clear" then e:clear()
    elseif p.timeout then
      eddy.wait_for(function() return e:wait() end, p.timeout)
    else
      local sets, was_set = p.r.sets, e:is_set()
      if e:wait() ~= true then violation("%s: %s:wait() did not return true", w.name, p.r.name) end
      if not was_set and p.r.sets == sets then
        violation("%s: %s:wait() returned with no set() meanwhile", w.name, p.r.name)
      end
    end
  end}

op {name = "barrier", weight = 4, expected = set("BrokenBarrierError", "TimeoutError"),
  make = function()
    return {r = pick(res_of.barrier), what = pick({"wait", "wait", "wait", "wait", "abort", "reset"}),
            timeout = chance(0.3) and tiny() or nil}
  end,
  run = function(w, p)
    local r, b = p.r, p.r.obj
    if p.what ~= "wait" then
      b[p.what](b)
      return
    end
    local scope <close> = p.timeout and eddy.timeout(p.timeout)
    local index = b:wait()
    if math.type(index) ~= "integer" or index < 0 or index >= r.n then
      violation("%s: %s:wait() returned index %s", w.name, r.name, tostring(index))
    end
    r.passed[index] = r.passed[index] + 1
    r.npassed = r.npassed + 1
    -- The one whose arrival fills the phase (index n-1) releases it and
    -- returns at once; a phase lets at most n through.  (Indices repeat
    -- within a phase when a waiter leaves early, as in asyncio.)
    if r.npassed > r.n * r.passed[r.n - 1] then
      violation("%s: %d through in %d phases of %d", r.name, r.npassed, r.passed[r.n - 1], r.n)
    end
  end}

-- Queues: each slot's queue may be shut down and replaced by a new one.
local queues = {}   -- every queue made, with its stats
local function new_queue(slot)
  local ctor = pick({eddy.Queue, eddy.PriorityQueue, eddy.LifoQueue})
  local maxsize = rand(4) - 1
  local q = {obj = ctor(maxsize), name = ("queue%d.%d"):format(slot.i, #queues + 1),
             puts = 0, gets = 0, dropped = 0, unfinished = 0, stall = 0,
             getters = {}, putters = {}}
  table.insert(queues, q)
  slot.q = q
  return q
end
local next_item = 0

-- Chaos: a put_nowait (get_nowait) to a queue with a getter (putter)
-- waiting, then a cancel of the first one in line (woken, not yet run).
local function poke_queue(q)
  local Q = q.obj
  if Q._is_shutdown then return end
  local line = #q.getters > 0 and Q:empty() and q.getters
  if line then
    next_item = next_item + 1
    Q:put_nowait(next_item)
    q.puts, q.unfinished = q.puts + 1, q.unfinished + 1
  else
    line = #q.putters > 0 and Q:full() and Q:qsize() > 0 and q.putters
    if not line then return end
    Q:get_nowait()
    Q:task_done()
    q.gets, q.unfinished = q.gets + 1, q.unfinished - 1
  end
  local rec = line[1]
  if rec.task:cancel() then rec.cancels = rec.cancels + 1 end
  trace("poke %s, cancel %s -> cancelling %d", q.name, rec.name, rec.task:cancelling())
end

op {name = "queue", weight = 14,
  expected = set("QueueShutDown", "QueueEmpty", "QueueFull", "TimeoutError"),
  make = function()
    return {slot = pick(res_of.qslot),
            what = chance(0.05) and "shutdown"
                   or pick({"put", "put", "put_nowait", "get", "get", "get", "get_nowait", "join"}),
            count = rand(3),
            immediate = chance(0.5), timeout = chance(0.25) and tiny() or nil, k = rand(3) - 1,
            replace = chance(0.9)}
  end,
  run = function(w, p)
    local q = p.slot.q
    local Q = q.obj
    local scope <close> = p.timeout and eddy.timeout(p.timeout)
    if p.what == "put" or p.what == "put_nowait" then
      local _ <close> = in_line(q.putters, w)
      next_item = next_item + 1
      Q[p.what](Q, next_item)
      q.puts, q.unfinished = q.puts + 1, q.unfinished + 1
    elseif p.what == "get" or p.what == "get_nowait" then
      for _ = 1, p.count do
        local item
        do
          local _ <close> = in_line(q.getters, w)
          item = Q[p.what](Q)
        end
        if math.type(item) ~= "integer" then violation("%s: got %s", q.name, tostring(item)) end
        q.gets = q.gets + 1
        -- task_done whatever happens meanwhile
        local done <close> = setmetatable({}, {__close = function()
          Q:task_done()
          q.unfinished = q.unfinished - 1
        end})
        pause(p.k)
      end
    elseif p.what == "join" then
      Q:join()
    else
      local before = Q:qsize()
      Q:shutdown(p.immediate)
      if p.immediate then
        q.dropped = q.dropped + before
        q.unfinished = math.max(0, q.unfinished - before)
      end
      trace("%s shut %s down%s (%d items)", w.name, q.name, p.immediate and " now" or "", before)
      if p.replace and not stopping then new_queue(p.slot) end
    end
  end}

op {name = "sleep", weight = 2,
  make = function() return {k = rand(5) - 1} end,
  run = function(_, p) pause(p.k) end}

-- Sub-workers: a short script of their own; 'fail' ones end by raising.
local worker  -- (rec, script)

local function subworkers(w, p)
  local tasks = {}
  for i, s in ipairs(p.subs) do
    local rec = new_record(("%s.%d"):format(w.name, i),
                           {mode = s.mode, fail = s.fail, parent = w})
    tasks[i] = spawn(rec, worker, rec, s.script)
  end
  return tasks
end

local function make_subs(depth, may_fail)
  local subs = {}
  for i = 1, rand(3) do
    subs[i] = {script = make_script(depth + 1), mode = chance(0.3) and "swallow" or "propagate",
               fail = may_fail and chance(0.2)}
  end
  return subs
end

-- Cancel the ones still pending and wait for them all (correct code
-- leaves no task behind).
local function finish_all(tasks)
  for _, t in ipairs(tasks) do t:cancel() end
  eddy.wait(tasks)
end

op {name = "gather", weight = 3, forwards = true, expected = set("ValueError"), sub = true,
  make = function(depth) return {subs = make_subs(depth, true), rex = chance(0.5)} end,
  run = function(w, p)
    local tasks = subworkers(w, p)
    local args = {table.unpack(tasks)}
    args[#args + 1] = {return_exceptions = p.rex}
    local res = table.pack(pcall(eddy.gather, table.unpack(args)))
    local ok, err = res[1], res[2]
    if ok then
      -- Each child done, its outcome in its place: its result, or (with
      -- return_exceptions) its error or CancelledError.
      for i, t in ipairs(tasks) do
        local r = res[i + 1]
        local good
        if not t:done() then good = false
        elseif t:cancelled() then good = p.rex and errors.is(r, CancelledError)
        elseif t:exception() ~= nil then good = p.rex and r == t:exception()
        else good = r == t:result() end
        if not good then
          violation("%s: gather gave %s for %s (%s)", w.name, tostring(r), t:get_name(),
                    tostring(t))
        end
      end
    else
      -- Whatever gather raised, its children go on: wait for them.
      local fok, ferr = pcall(finish_all, tasks)
      if not fok then error(ferr, 0) end
      error(err, 0)
    end
  end}

op {name = "wait", weight = 3, sub = true,
  make = function(depth)
    return {subs = make_subs(depth, false), timeout = chance(0.5) and tiny() or nil,
            when = pick({"FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"})}
  end,
  run = function(w, p)
    local tasks = subworkers(w, p)
    local ok, done, pending = pcall(eddy.wait, tasks, {timeout = p.timeout, return_when = eddy[p.when]})
    if ok then
      for _, t in ipairs(done) do
        if not t:done() then violation("%s: wait() gave a pending task as done", w.name) end
      end
      for _, t in ipairs(pending) do
        if t:done() then violation("%s: wait() gave a done task as pending", w.name) end
      end
      if #done + #pending ~= #tasks then
        violation("%s: wait() gave %d done + %d pending of %d", w.name, #done, #pending, #tasks)
      end
      if p.when == "ALL_COMPLETED" and not p.timeout and #pending > 0 then
        violation("%s: wait(ALL_COMPLETED) left %d pending", w.name, #pending)
      end
      if #done == 0 and not p.timeout then
        violation("%s: wait(%s) returned nothing done", w.name, p.when)
      end
    end
    finish_all(tasks)
    if not ok then error(done, 0) end
  end}

op {name = "as_completed", weight = 2, forwards = true, expected = set("TimeoutError"), sub = true,
  make = function(depth) return {subs = make_subs(depth, false), timeout = chance(0.4) and tiny() or nil} end,
  run = function(w, p)
    local tasks = subworkers(w, p)
    local seen, given = 0, {}
    local ok, err = pcall(function()
      for f in eddy.as_completed(tasks, {timeout = p.timeout}) do
        seen = seen + 1
        if not f:done() or given[f] then
          violation("%s: as_completed gave a future %s", w.name, given[f] and "twice" or "pending")
        end
        given[f] = true
        f:result()
      end
    end)
    if ok and seen ~= #tasks then
      violation("%s: as_completed gave %d of %d", w.name, seen, #tasks)
    end
    finish_all(tasks)
    if not ok then error(err, 0) end
  end}

op {name = "taskgroup", weight = 3, expected = set("ExceptionGroup"), sub = true,
  make = function(depth) return {subs = make_subs(depth, true), k = rand(3) - 1} end,
  run = function(w, p)
    local children = {}
    local ok, err = pcall(function()
      local tg <close> = eddy.TaskGroup()
      for i, s in ipairs(p.subs) do
        local rec = new_record(("%s.g%d"):format(w.name, i), {mode = s.mode, fail = s.fail, parent = w})
        children[i] = own(rec, tg:create_task(worker, rec, s.script))
      end
      pause(p.k)
    end)
    for _, t in ipairs(children) do
      if not t:done() then violation("%s: TaskGroup closed with %s pending", w.name, t:get_name()) end
    end
    if ok then return end
    if errors.is(err, errors.ExceptionGroup) and w.task:cancelling() > 0 then
      -- The group's errors won over a cancellation from outside: it was
      -- requested again (asyncio's uncancel(); cancel()) and arrives at
      -- the next suspension.
      local sok, serr = pcall(eddy.sleep, 0)
      if sok then violation("%s: the cancellation a TaskGroup requested again never came", w.name) end
      err = serr
    end
    error(err, 0)
  end}

op {name = "wait_for_sub", weight = 2, forwards = true, expected = set("TimeoutError"), sub = true,
  make = function(depth)
    return {subs = {{script = make_script(depth + 1), mode = "propagate"}}, timeout = tiny()}
  end,
  run = function(w, p)
    local t = subworkers(w, p)[1]
    local ok, err = pcall(eddy.wait_for, t, p.timeout)
    check_ended(w, not t:done(), p.timeout, ok, err)
    if not ok then error(err, 0) end
  end}

local total_weight = 0
for _, o in ipairs(ops) do total_weight = total_weight + o.weight end

local MAX_DEPTH = 2
function make_script(depth)
  local script = {}
  for i = 1, rand(depth == 0 and 8 or 3) do
    local o
    repeat
      local r = rand(total_weight)
      for _, c in ipairs(ops) do
        r = r - c.weight
        if r <= 0 then o = c; break end
      end
    until not (o.sub and depth >= MAX_DEPTH)
    script[i] = {op = o, p = o.make(depth)}
  end
  return script
end

-- }=================================================

-- {================================================= workers

-- An error out of an operation: re-raise a cancellation sent to the task
-- (or swallow it: uncancel()), go on after an error the operation may
-- raise; anything else is a violation.
local function handle_error(w, o, err)
  local task = w.task
  if errors.is(err, CancelledError) then
    if task:cancelling() > 0 then
      trace("%s: %s cancelled (%s)", w.name, o.name, w.mode)
      if w.mode == "propagate" then error(err, 0) end
      while task:cancelling() > 0 do task:uncancel() end
      return
    end
    if o.forwards or w.tainted or (w.inner and w.inner.cancels > 0) then return end
    violation("%s: %s raised %s with no cancel request", w.name, o.name, tostring(err))
  end
  local name = class_name(err)
  if name == nil or not (o.expected and o.expected[name]) then
    violation("%s: %s raised %s\n%s", w.name, o.name, tostring(err),
              type(err) == "table" and tostring(err.traceback) or "")
  end
  trace("%s: %s raised %s", w.name, o.name, name)
end

-- After an operation that ended other than by the worker's cancellation:
-- no cancel request may be left unseen, unless the operation awaited a
-- sub-worker directly (gather, wait_for): cancelling the worker cancels
-- that task, and one that swallows it absorbs the request, as in asyncio.
local function check_unseen(w, o, outcome)
  local task = w.task
  if task:cancelling() == 0 or w.tainted then return end
  if not o.forwards then
    violation("%s: %s %s with %d cancel requests never delivered", w.name, o.name, outcome,
              task:cancelling())
  end
  trace("%s: %s absorbed %d cancel requests", w.name, o.name, task:cancelling())
  while task:cancelling() > 0 do task:uncancel() end
end

function worker(w, script)
  w.started = true
  for _, s in ipairs(script) do
    if stopping then break end
    w.op, w.inner = s.op.name, nil
    trace("%s: %s", w.name, w.op)
    local ok, err = pcall(s.op.run, w, s.p)
    local hok, herr = true, nil
    if not ok then hok, herr = pcall(handle_error, w, s.op, err) end
    if w.nheld ~= 0 then
      violation("%s: still holds %d units after %s", w.name, w.nheld, w.op)
    end
    if not hok then w.op = nil; error(herr, 0) end
    check_unseen(w, s.op, ok and "returned" or "raised " .. tostring(err))
  end
  w.op = nil
  if w.fail then error(errors.ValueError("boom from " .. w.name), 0) end
  return w.name
end

-- }=================================================

-- {================================================= invariants

local STALL_TURNS = 4

-- Whether some waiter future of 'waiters' (a Deque or nil) is done: its
-- task will run and pass the resource on.
local function waiters_state(waiters)
  local n, done, woken = 0, 0, 0
  if waiters ~= nil then
    for _, fut in waiters:each() do
      n = n + 1
      if fut:done() then
        done = done + 1
        if not fut:cancelled() then woken = woken + 1 end
      end
    end
  end
  return n, done, woken
end

local function check_lock(r, lock)
  local n, done = waiters_state(lock._waiters)
  if lock:locked() ~= (r.nheld == 1) then
    violation("%s: locked() is %s with %d holders", r.name, tostring(lock:locked()), r.nheld)
  end
  if not lock:locked() and n > 0 and done == 0 then
    violation("%s: free with %d waiters and none woken", r.name, n)
  end
end

local function check_sem(r)
  local s = r.obj
  local n, done, woken = waiters_state(s._waiters)
  local v = s._value
  if v < 0 then violation("%s: value %d", r.name, v) end
  if r.bounded and v > r.n then violation("%s: value %d above %d", r.name, v, r.n) end
  if v + r.nheld + woken ~= r.n then
    violation("%s: value %d + %d held + %d woken ~= %d", r.name, v, r.nheld, woken, r.n)
  end
  if v > 0 and n > done and done == 0 then
    violation("%s: value %d with %d waiters and none woken", r.name, v, n)
  end
end

local function check_queue(q)
  local Q = q.obj
  if q.puts ~= q.gets + Q:qsize() + q.dropped then
    violation("%s: %d put ~= %d got + %d left + %d dropped", q.name, q.puts, q.gets,
              Q:qsize(), q.dropped)
  end
  if Q._unfinished_tasks ~= q.unfinished then
    violation("%s: %d unfinished tasks, expected %d", q.name, Q._unfinished_tasks, q.unfinished)
  end
  -- A getter woken by a put runs within a turn or two; one cancelled
  -- first passes the wake on.  Waiting getters, items there, and no get
  -- for turns on end: a lost wake-up (putters alike).
  local n, full = Q:qsize(), Q:full()
  local stalled = (n > 0 and #Q._getters > 0 and q.gets == q.last_gets)
                  or (not full and #Q._putters > 0 and q.puts == q.last_puts)
  q.last_gets, q.last_puts = q.gets, q.puts
  q.stall = stalled and q.stall + 1 or 0
  if q.stall > STALL_TURNS then
    violation("%s: %d items, %d getters, %d putters waiting, no progress for %d turns", q.name,
              n, #Q._getters, #Q._putters, q.stall)
  end
end

-- Once the waiter a notification woke, then cancelled, has left wait, the
-- next waiter must have been woken in its place.
local function check_passing(r)
  local pass = r.passing
  if pass == nil then return end
  for _, rec in ipairs(r.waiting) do
    if rec == pass.by then return end  -- still in wait
  end
  r.passing = nil
  if not pass.next:done() then
    violation("%s: %s, notified then cancelled, left wait without waking the next waiter",
              r.name, pass.by.name)
  end
end

local function check_all()
  for _, r in ipairs(res_of.lock) do check_lock(r, r.obj) end
  for _, r in ipairs(res_of.cond) do
    check_lock(r, r.obj._lock)
    check_passing(r)
  end
  for _, r in ipairs(res_of.sem) do check_sem(r) end
  for _, r in ipairs(res_of.event) do
    -- set() wakes every waiter; one coming later returns at once.
    local n, done = waiters_state(r.obj._waiters)
    if r.obj:is_set() and n > done then
      violation("%s: set with a waiter not woken", r.name)
    end
  end
  for _, r in ipairs(res_of.barrier) do
    local b = r.obj
    if b._count > r.n or b.n_waiting >= r.n then
      violation("%s: %d in, %d waiting, %d parties", r.name, b._count, b.n_waiting, r.n)
    end
  end
  for _, q in ipairs(queues) do check_queue(q) end
end

-- At the end, with every task done.
local function check_final()
  check_all()
  for _, r in ipairs(resources) do
    local o = r.obj
    if r.kind == "lock" or r.kind == "cond" then
      local lock = r.kind == "cond" and o._lock or o
      if lock:locked() or waiters_state(lock._waiters) > 0 then
        violation("%s: %s at the end", r.name, tostring(o))
      end
      if r.kind == "cond" and #o._waiters > 0 then
        violation("%s: %d waiters at the end", r.name, #o._waiters)
      end
    elseif r.kind == "sem" then
      if o._value ~= r.n or waiters_state(o._waiters) > 0 then
        violation("%s: %s at the end (initial value %d)", r.name, tostring(o), r.n)
      end
    elseif r.kind == "event" then
      if #o._waiters > 0 then violation("%s: %d waiters at the end", r.name, #o._waiters) end
    elseif r.kind == "barrier" then
      if o._count ~= 0 then violation("%s: %s at the end", r.name, tostring(o)) end
    end
  end
  for _, q in ipairs(queues) do
    local Q = q.obj
    if #Q._getters > 0 or #Q._putters > 0 or q.unfinished ~= 0 or not Q._finished:is_set() then
      violation("%s: %s at the end", q.name, tostring(Q))
    end
  end
  for _, rec in ipairs(records) do
    local t = rec.task
    if not t:done() then violation("%s pending at the end", rec.name) end
    if t:cancelled() then
      -- Sub-workers are cancelled by their parents' gather/wait/wait_for
      -- too; a worker only by chaos, when it re-raises.
      if rec.top and not rec.tainted
         and (rec.cancels == 0 or (rec.started and rec.mode ~= "propagate")) then
        violation("%s ended cancelled: %d cancel requests, mode %s", rec.name, rec.cancels, rec.mode)
      end
    else
      local err = t:exception()
      if err ~= nil and not (rec.fail and errors.is(err, errors.ValueError)) then
        violation("%s ended with %s\n%s", rec.name, tostring(err),
                  type(err) == "table" and tostring(err.traceback) or "")
      end
      if rec.top and not rec.tainted and t:cancelling() > 0 then
        violation("%s returned with %d cancel requests it never saw", rec.name, t:cancelling())
      end
    end
  end
end

-- }=================================================

-- {================================================= chaos and main

-- The worker whose task waits on 'fut' in r's line (a task's tostring
-- names the future it waits on), or nil.
local function waiting_on(r, fut)
  local addr = tostring(fut):match("(0x%x+)>$")
  for _, rec in ipairs(r.waiting) do
    if addr and tostring(rec.task):find(addr, 1, true) then return rec end
  end
end

local function chaos_cancel(rec)
  if rec.task:cancel() then rec.cancels = rec.cancels + 1 end
end

-- Chaos, on a condition whose lock is free (taken at once: nobody waits
-- for it): either cancel the first waiter, then notify one (a cancelled
-- waiter must not count), or notify one, then cancel the waiter it woke,
-- which must pass the notification on to the next when it leaves wait
-- (asyncio's test_cancelled_wakeup): checked by check_passing.
local CHAOS = {name = "chaos", nheld = 0}
local function poke_condition(r)
  local lock = r.obj._lock
  if #r.waiting == 0 or lock:locked() or waiters_state(lock._waiters) > 0 then return end
  local h <close> = take(r, CHAOS, r.obj:acquire())
  if chance(0.5) then
    local rec = r.waiting[1]
    chaos_cancel(rec)
    trace("poke %s: cancel %s, notify", r.name, rec.name)
    notify(r, 1)
    return
  end
  local woken, next_fut
  for _, fut in r.obj._waiters:each() do
    if not fut:done() then
      if woken == nil then woken = fut else next_fut = fut; break end
    end
  end
  local rec = woken and waiting_on(r, woken)
  if rec == nil or r.passing then return end
  notify(r, 1)
  chaos_cancel(rec)
  trace("poke %s: notify, cancel %s (woken)", r.name, rec.name)
  if next_fut then r.passing = {by = rec, next = next_fut} end
end

-- Cancel rec's task 'times' times, then maybe uncancel() it once.
local function storm(rec, times, msg, uncancel)
  local t = rec.task
  for _ = 1, times do
    if t:cancel(msg) then rec.cancels = rec.cancels + 1 end
  end
  trace("cancel %s x%d -> cancelling %d", rec.name, times, t:cancelling())
  if uncancel and t:cancelling() > 0 then
    t:uncancel()
    rec.tainted = true
    trace("uncancel %s", rec.name)
  end
end

local MAX_WORKERS = 12
local tops = {}   -- the workers chaos spawned, every one, in order
local live = 0

local function spawn_worker()
  local rec = new_record("w" .. (#tops + 1),
                         {top = true, mode = chance(0.25) and "swallow" or "propagate"})
  table.insert(tops, rec)
  live = live + 1
  spawn(rec, worker, rec, make_script(0))
  rec.task:add_done_callback(function() live = live - 1 end)
  trace("spawn %s (%s)", rec.name, rec.mode)
end

-- Chaos cancels pending tasks: which ones are pending depends on timing
-- (tiny timeouts) as well as on the choices.
local function chaos()
  if live < MAX_WORKERS and chance(0.5) then spawn_worker() end
  for _, slot in ipairs(res_of.qslot) do
    if chance(0.5) then poke_queue(slot.q) end
  end
  if chance(0.2) then poke_condition(pick(res_of.cond)) end
  for _ = 1, #targets > 0 and rand(3) - 1 or 0 do
    local rec = targets[rand(#targets)]
    local times, uncancel = chance(0.2) and 2 or 1, chance(0.1)
    local msg = chance(0.3) and ("chaos " .. step) or nil
    -- now, or from a plain callback: on the loop's next turn, among the
    -- wake-ups already queued, or after a tiny delay
    local when = rand(4)
    if when <= 2 then
      storm(rec, times, msg, uncancel)
    elseif when == 3 then
      eddy.get_running_loop():call_soon(storm, rec, times, msg, uncancel)
    else
      eddy.get_running_loop():call_later(tiny(), storm, rec, times, msg, uncancel)
    end
  end
end

local function all_done()
  for _, rec in ipairs(records) do
    if not rec.task:done() then return false end
  end
  return true
end

-- Release whatever waits on something only another worker would do
-- (workers stopped starting operations): events set, conditions notified,
-- barriers aborted, queues shut down (after a grace period in which a
-- queue's stall would show).
-- Shut every queue down at once (dropping what is left); a queue shut
-- down without 'immediate' may still hold items.
local function shut_queues()
  for _, q in ipairs(queues) do
    local Q = q.obj
    if not Q._is_shutdown or Q:qsize() > 0 then
      q.dropped = q.dropped + Q:qsize()
      q.unfinished = math.max(0, q.unfinished - Q:qsize())
      Q:shutdown(true)
    end
  end
end

local DRAINER = {name = "drain", nheld = 0}  -- the main task, notifying
local function release_waiters(turn)
  for _, r in ipairs(res_of.event) do
    r.sets = r.sets + 1
    r.obj:set()
  end
  for _, r in ipairs(res_of.barrier) do
    -- (bounded: the main task must not hang, or no watchdog would fire)
    local b = r.obj
    if b._count > 0 and not b.broken then
      local ok, err = pcall(eddy.wait_for, function() b:abort() end, 0.01)
      if not ok and not errors.is(err, TimeoutError) then
        violation("%s:abort() raised %s", r.name, tostring(err))
      end
    end
  end
  for _, r in ipairs(res_of.cond) do
    local lock = r.obj._lock
    if #r.obj._waiters > 0 and not lock:locked() and waiters_state(lock._waiters) == 0 then
      local h <close> = take(r, DRAINER, r.obj:acquire())
      notify(r)
    end
  end
  if turn > 2 * STALL_TURNS then shut_queues() end
end

local reports = {}

local function main()
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function(_, ctx)
    reports[#reports + 1] = tostring(ctx.message) .. " " .. tostring(ctx.exception)
  end)
  for i = 1, 2 do add_resource("lock", "lock" .. i, eddy.Lock()) end
  for i = 1, 3 do
    local n = rand(3)
    local bounded = i ~= 1
    add_resource("sem", (bounded and "bsem" or "sem") .. i,
                 bounded and eddy.BoundedSemaphore(n) or eddy.Semaphore(n), {n = n, bounded = bounded})
  end
  for i = 1, 2 do add_resource("cond", "cond" .. i, eddy.Condition(), {gen = 0, waiting = {}}) end
  for i = 1, 2 do add_resource("event", "event" .. i, eddy.Event(), {sets = 0}) end
  for i = 1, 2 do
    local n = rand(3)
    local passed = {}
    for j = 0, n - 1 do passed[j] = 0 end
    add_resource("barrier", "barrier" .. i, eddy.Barrier(n), {n = n, passed = passed, npassed = 0})
  end
  for i = 1, 2 do new_queue(add_resource("qslot", "qslot" .. i, nil, {i = i})) end

  for s = 1, STEPS do
    step = s
    chaos()
    eddy.sleep(s % 7 == 0 and 0.0005 or 0)
    check_all()
  end

  stopping = true
  trace("stopping")
  local DRAIN_TURNS = 2000
  local turn = 0
  while not all_done() do
    turn = turn + 1
    step = STEPS + turn
    if turn > DRAIN_TURNS then
      local pending = {}
      for _, rec in ipairs(records) do
        if not rec.task:done() then
          pending[#pending + 1] = rec.name .. " in " .. tostring(rec.op)
        end
      end
      local states = {}
      for _, r in ipairs(resources) do
        if r.obj then states[#states + 1] = r.name .. " " .. tostring(r.obj) end
      end
      for _, q in ipairs(queues) do states[#states + 1] = q.name .. " " .. tostring(q.obj) end
      violation("deadlock: %d turns after stopping, still pending: %s\n%s", DRAIN_TURNS,
                table.concat(pending, ", "), table.concat(states, "\n"))
    end
    if turn > STALL_TURNS then release_waiters(turn) end
    eddy.sleep(turn % 2 == 0 and 0.001 or 0)
    check_all()
  end
  shut_queues()
  check_final()

  -- Mark every outcome retrieved, drop the tasks, and collect: a report
  -- now comes from a future eddy made and left behind.
  local ntasks = #records
  for _, rec in ipairs(records) do
    if not rec.task:cancelled() then rec.task:exception() end
  end
  records, tops = {}, {}
  for _ = 1, 3 do collectgarbage() eddy.sleep(0) end
  if #reports > 0 then
    violation("exception handler reports:\n  %s", table.concat(reports, "\n  "))
  end
  local others = {}
  for _, t in ipairs(eddy.all_tasks()) do
    if t ~= eddy.current_task() then others[#others + 1] = tostring(t) end
  end
  if #others > 0 then violation("tasks left: %s", table.concat(others, ", ")) end
  return ntasks
end

local ntasks = eddy.run(main)
if #reports > 0 then
  violation("exception handler reports:\n  %s", table.concat(reports, "\n  "))
end
print(("ok %d %d: %d tasks, %d events"):format(SEED, STEPS, ntasks, ring_n))

-- }=================================================
