-- Differential harness, eddy side: the programs of tools/diff/sync.py
-- (queues, synchronization primitives, the composition functions under
-- random cancellation), made from the same seeds, printed alike.
-- Usage: eddy sync.lua [program-prefix]; SYNC_SEEDS as sync.py's.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local eddy = require "eddy"
local errors = eddy.errors
local trace = require "trace"

local SEEDS = math.tointeger(os.getenv("SYNC_SEEDS")) or 100
local QUEUES = {fifo = eddy.Queue, lifo = eddy.LifoQueue, prio = eddy.PriorityQueue}
local PRIMITIVES = {
  lock = eddy.Lock, event = eddy.Event, cond = eddy.Condition,
  sem = function() return eddy.Semaphore(2) end,
  bsem = function() return eddy.BoundedSemaphore(2) end,
  barrier = function() return eddy.Barrier(3) end,
}
local KINDS = {"fifo", "lifo", "prio", "lock", "sem", "bsem", "event", "cond", "barrier", "compose"}

local function rep(v, n, into)
  for _ = 1, n do into[#into + 1] = v end
  return into
end

-- The ops of one program (sync.py's program(), the same picks in the
-- same order).
local function program(rng, kind, length)
  local ops, k = {}, 0
  local function task(own)
    local range = {}
    for i = 1, own and k - 1 or k do range[i] = i end
    return tostring(rng:pick(range))
  end
  local function new()
    k = k + 1
    return tostring(k)
  end
  local function numbers(from, to)
    local range = {}
    for i = from, to do range[#range + 1] = i end
    return range
  end
  local menu = {}
  local function add(list) for _, v in ipairs(list) do menu[#menu + 1] = v end end
  if QUEUES[kind] then
    rep("G", 3, menu); rep("P", 3, menu)
    add {"pn", "gn", "C", "C", "U", "CU", "T", "J", "S"}; rep("Z", 7, menu)
  elseif PRIMITIVES[kind] then
    rep("A", 5, menu); add {"R", "R", "C", "C", "U", "CU", "X1", "X1", "X2"}; rep("Z", 7, menu)
  else
    rep("S", 6, menu); add {"G", "G", "W", "F", "H", "A", "TG", "T", "E", "Q"}
    add {"C", "C", "C", "U", "CU"}; rep("Z", 6, menu)
  end
  local needs_task = {G = true, W = true, F = true, H = true, A = true, T = true}
  for _ = 1, length do
    local op = rng:pick(menu)
    local cancels = op == "C" or op == "U" or op == "CU"
    if k == 0 and (cancels or kind == "compose" and needs_task[op]) then
      op, cancels = "Z", false
    end
    local compose, queue = kind == "compose", QUEUES[kind] ~= nil
    if cancels then  -- CU: cancel(), then uncancel() at once
      ops[#ops + 1] = {op, task()}
    elseif queue and (op == "G" or op == "J") then
      ops[#ops + 1] = {op, new()}
    elseif queue and op == "P" then
      ops[#ops + 1] = {op, new(), tostring(rng:pick(numbers(1, 99)))}
    elseif queue and op == "pn" then
      ops[#ops + 1] = {op, tostring(rng:pick(numbers(100, 199)))}
    elseif queue and op == "S" then
      ops[#ops + 1] = {op, rng:pick {"0", "1"}}
    elseif PRIMITIVES[kind] and op == "A" then
      ops[#ops + 1] = {op, new(), rng:pick {"0", "1", "2", "3"}}
    elseif compose and op == "S" then
      local name = new()
      local turns = rng:pick {"0", "1", "2", "3", "4"}
      ops[#ops + 1] = {op, name, turns, rng:pick {"0", "0", "0", "1", "2", "3", "4", "5", "6"}}
    elseif compose and (op == "G" or op == "W" or op == "A") then
      local o = {op, new()}
      if op == "G" then o[3] = rng:pick {"0", "1"}
      elseif op == "W" then o[3] = rng:pick {"FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"} end
      for _ = 1, rng:pick {1, 2, 3} do o[#o + 1] = task(true) end
      ops[#ops + 1] = o
    elseif compose and (op == "F" or op == "T") then
      local name = new()
      local t = rng:pick {"none", "0"}
      ops[#ops + 1] = {op, name, t, task(true)}
    elseif compose and op == "H" then
      local name = new()
      ops[#ops + 1] = {op, name, task(true)}
    elseif compose and op == "TG" then
      local o = {op, new()}
      o[3] = rng:pick {"0", "1", "2", "3"}; o[4] = rng:pick {"0", "0", "1", "2", "3"}
      o[5] = rng:pick {"0", "1", "2", "3"}; o[6] = rng:pick {"0", "0", "1", "2", "3"}
      ops[#ops + 1] = o
    else
      ops[#ops + 1] = {op}
    end
  end
  return ops
end

-- A list (gather's results, a group's) for desc.
local List = {}
local function list(...) return setmetatable(table.pack(...), List) end

-- A result or error as sync.py's desc() prints it.
local function desc(v)
  if errors.is(v, errors.ExceptionGroup) then
    local parts = {}
    for i, e in ipairs(v.exceptions) do parts[i] = desc(e) end
    return "EG[" .. table.concat(parts, ",") .. "]"
  end
  if errors.is(v, errors.CancelledError) then return "CancelledError()" end
  if errors.is(v, errors.Error) then
    return trace.ename(v) .. "(" .. (v.message == nil and "" or tostring(v.message)) .. ")"
  end
  if getmetatable(v) == List then
    local parts = {}
    for i = 1, v.n do parts[i] = desc(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  if v == nil then return "None" end
  if type(v) == "boolean" then return v and "True" or "False" end
  return tostring(v)
end

local function run(kind, ops, out)
  local loop = eddy.get_running_loop()
  loop:set_exception_handler(function() end)  -- (as sync.py)
  local tasks, order = {}, {}
  local function spawn(k, fn, ...)
    local args = table.pack(...)
    order[#order + 1] = k
    tasks[k] = eddy.create_task(function()
      local ok, r = pcall(fn, table.unpack(args, 1, args.n))
      if ok then
        out(k .. ":ok:" .. desc(r))
        return r
      end
      if errors.is(r, errors.CancelledError) then out(k .. ":cancelled")
      else out(k .. ":err:" .. desc(r)) end
      error(r, 0)
    end)
  end
  local function call(name, fn, ...)
    local ok, r = pcall(fn, ...)
    out(name .. ":" .. (ok and desc(r) or trace.ename(r)))
  end
  local handlers
  if QUEUES[kind] then
    local q = QUEUES[kind](2)
    handlers = {
      G = function(k) spawn(k, q.get, q) end,
      P = function(k, item) spawn(k, function() q:put(tonumber(item)); return "put" end) end,
      J = function(k) spawn(k, function() q:join(); return "joined" end) end,
      pn = function(item) call("pn", q.put_nowait, q, tonumber(item)) end,
      gn = function() call("gn", q.get_nowait, q) end,
      T = function() call("T", q.task_done, q) end,
      S = function(imm) call("S", q.shutdown, q, imm == "1") end,
    }
  elseif PRIMITIVES[kind] then
    local p = PRIMITIVES[kind]()
    local function holder(k, turns)
      if kind == "event" or kind == "barrier" then return p:wait() end
      if kind == "cond" then
        local _ <close> = p:acquire()
        out(k .. ":acq")
        local r = p:wait()
        out(k .. ":woke")
        for _ = 1, turns do eddy.sleep(0) end
        return r
      end
      p:acquire()
      out(k .. ":acq")
      local ok, err = pcall(function() for _ = 1, turns do eddy.sleep(0) end end)
      call(k .. ":rel", p.release, p)
      if not ok then error(err, 0) end
      return "done"
    end
    local function x(c)
      if kind == "event" then call("set", p.set, p)
      elseif kind == "cond" then
        spawn("n" .. #order, function()
          local _ <close> = p:acquire()
          if c == "X1" then p:notify(1) else p:notify_all() end
          return "notified"
        end)
      elseif kind == "barrier" then
        spawn("n" .. #order, function()
          if c == "X1" then p:reset() else p:abort() end
          return c
        end)
      else call("locked", p.locked, p) end
    end
    handlers = {
      A = function(k, turns) spawn(k, holder, k, tonumber(turns)) end,
      R = function()
        if kind == "event" then call("clear", p.clear, p)
        elseif kind ~= "cond" and kind ~= "barrier" then call("R", p.release, p) end
      end,
      X1 = function() x("X1") end,
      X2 = function() x("X2") end,
    }
  else
    local ev, q, nq = eddy.Event(), eddy.Queue(), 0
    local function leaf(k, turns, mode)
      local ok, r = pcall(function()
        if mode == 4 then ev:wait() end
        if mode == 5 then return "q" .. q:get() end
        for _ = 1, turns do eddy.sleep(0) end
      end)
      if ok and r ~= nil then return r end
      if not ok then
        if not errors.is(r, errors.CancelledError) then error(r, 0) end
        if mode == 2 then return "swallowed" .. k end
        if mode ~= 6 then error(r, 0) end
        eddy.current_task():uncancel()
        for _ = 1, turns do eddy.sleep(0) end
        return "uncancelled" .. k
      end
      if mode == 1 then error(errors.ValueError("v" .. k)) end
      if mode == 3 then error(errors.CancelledError("own" .. k)) end
      return "r" .. k
    end
    local function futures(args, from)
      local fs = {}
      for i = from, #args do fs[#fs + 1] = tasks[args[i]] end
      return fs
    end
    handlers = {
      S = function(k, turns, mode) spawn(k, leaf, k, tonumber(turns), tonumber(mode)) end,
      G = function(k, ret, ...)
        local fs = futures({...}, 1)
        fs[#fs + 1] = {return_exceptions = ret == "1"}
        spawn(k, function() return list(eddy.gather(table.unpack(fs))) end)
      end,
      W = function(k, when, ...)
        local fs = futures({...}, 1)
        spawn(k, function()
          local done, pending = eddy.wait(fs, {return_when = eddy[when]})
          return #done .. "/" .. #pending
        end)
      end,
      F = function(k, t, ref)
        spawn(k, eddy.wait_for, tasks[ref], t ~= "none" and 0 or nil)
      end,
      H = function(k, ref) spawn(k, function() return eddy.shield(tasks[ref]):await() end) end,
      A = function(k, ...)
        local fs = futures({...}, 1)
        spawn(k, function()
          local got = {}
          for f in eddy.as_completed(fs) do
            local ok, r = pcall(f.await, f)
            got[#got + 1] = ok and desc(r) or trace.ename(r)
          end
          table.sort(got)
          return list(table.unpack(got))
        end)
      end,
      TG = function(k, t1, m1, t2, m2)
        spawn(k, function()
          local a, b
          do
            local tg <close> = eddy.TaskGroup()
            a = tg:create_task(leaf, k .. "a", tonumber(t1), tonumber(m1))
            b = tg:create_task(leaf, k .. "b", tonumber(t2), tonumber(m2))
          end
          return list(a:cancelled() and "c" or a:result(), b:cancelled() and "c" or b:result())
        end)
      end,
      T = function(k, t, ref)
        spawn(k, function()
          local _ <close> = eddy.timeout(t ~= "none" and 0 or nil)
          return tasks[ref]:await()
        end)
      end,
      E = function() call("E", ev:is_set() and ev.clear or ev.set, ev) end,
      Q = function()
        nq = nq + 1
        call("Q", q.put_nowait, q, nq)
      end,
    }
  end
  for _, op in ipairs(ops) do
    local c = op[1]
    if c == "Z" then eddy.sleep(0)
    elseif c == "C" then out("C" .. op[2] .. ":" .. desc(tasks[op[2]]:cancel("m" .. op[2])))
    elseif c == "U" then out("U" .. op[2] .. ":" .. tasks[op[2]]:uncancel())
    elseif c == "CU" then
      local t = tasks[op[2]]
      out("CU" .. op[2] .. ":" .. desc(t:cancel("m" .. op[2])) .. "," .. t:uncancel())
    elseif handlers[c] then handlers[c](table.unpack(op, 2)) end
  end
  for _ = 1, 40 do eddy.sleep(0) end
  for _, k in ipairs(order) do
    if not tasks[k]:done() then
      out("pending:" .. k)
      tasks[k]:cancel()
    end
  end
  for _ = 1, 40 do eddy.sleep(0) end
  local counts = {}
  for i, k in ipairs(order) do counts[i] = tasks[k]:cancelling() end
  out("cancelling:" .. table.concat(counts, ","))
end

local prefix = arg[1] or ""
for _, kind in ipairs(KINDS) do
  for seed = 1, SEEDS do
    local name = kind .. seed
    if name:sub(1, #prefix) == prefix then
      local ops = program(trace.Rng(seed), kind, 60)
      local lines = {}
      eddy.run(run, kind, ops, function(line) lines[#lines + 1] = line end)
      for _, line in ipairs(lines) do print(name .. ": " .. line) end
    end
  end
end
