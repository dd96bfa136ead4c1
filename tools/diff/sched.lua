-- Replay a scheduling program (tools/diff/run.py writes it) on eddy.
--
--   build/eddy tools/diff/sched.lua PROGRAM   -> the trace on stdout
--
-- The asyncio twin is sched.py; both must print the same trace.  The
-- program format is described in run.py.
local eddy = require "eddy"

local BUDGET = 150      -- callbacks that still act; later ones only trace

local function classname(err)
  return (tostring(err):match("^(%w+)")) or type(err)
end

local function parse(path)
  local blocks, phases, cur = {}, {}, nil
  for line in io.lines(path) do
    local w = {}
    for x in line:gmatch("%S+") do w[#w + 1] = x end
    if w[1] == "B" then
      cur = {}
      blocks[tonumber(w[2])] = cur
    elseif w[1] == "A" then
      local a = {}
      for i = 3, #w do a[#a + 1] = tonumber(w[i]) end
      cur[#cur + 1] = {w[2], a}
    elseif w[1] == "R" then
      phases[#phases + 1] = {w[2], tonumber(w[3])}
    end
  end
  return blocks, phases
end

local blocks, phases = parse(arg[1])
local loop = eddy.new_event_loop()
local base = loop:time()
local handles, timers = {}, {}   -- handles[0..]; timers: index -> level
local nhandles = 0
local state = {runs = 0, last = base}
local out = {}

local function trace(...)
  local t = table.pack(...)
  for i = 1, t.n do
    local v = t[i]
    t[i] = v == true and "True" or v == false and "False" or tostring(v)
  end
  out[#out + 1] = table.concat(t, " ", 1, t.n)
end

loop:set_exception_handler(function(_, context)
  local keys = {}
  for k in pairs(context) do keys[#keys + 1] = k end
  table.sort(keys)
  local e = context.exception
  trace("exc", table.concat(keys, ","), e == nil and "NoneType" or classname(e))
end)

local act

local function cb(j, hid)
  state.runs = state.runs + 1
  trace("run", j, hid ~= nil and "h" .. hid or "done-callback")
  if state.runs > BUDGET then return end
  act(blocks[j] or {}, hid)
end

local VERBOSE = os.getenv("DIFF_VERBOSE")   -- trace each handle made

local function add(h, level, j)
  if VERBOSE then trace("new", "h" .. nhandles, "cb", j) end
  handles[nhandles] = h
  if level ~= nil then timers[nhandles] = level end
  nhandles = nhandles + 1
end

local function schedule(kind, j, a)
  local hid = nhandles
  if kind == "soon" then add(loop:call_soon(cb, j, hid), nil, j)
  elseif kind == "ts" then add(loop:call_soon_threadsafe(cb, j, hid), nil, j)
  elseif kind == "at" then add(loop:call_at(base - 10 * a, cb, j, hid), a, j)
  elseif kind == "later" then
    add(loop:call_later(a ~= 0 and -10 * a - 5 or 0, cb, j, hid), nil, j)
  elseif kind == "far" then add(loop:call_later(100, cb, j, hid), nil, j)
  end
end

local SCHEDULE = {soon = true, ts = true, at = true, later = true, far = true}

function act(actions, hid)
  for _, action in ipairs(actions) do
    local op, a = action[1], action[2]
    if SCHEDULE[op] then
      local ok, err = pcall(schedule, op, a[1], a[2] or 0)
      if not ok then trace("schedule-error", classname(err)) end
    elseif op == "cancel" then
      if nhandles > 0 then
        local i = a[1] % nhandles
        local before = handles[i]:cancelled()
        handles[i]:cancel()
        trace("cancel", "h" .. i, before, handles[i]:cancelled())
      end
    elseif op == "cancelself" then
      if hid ~= nil then
        handles[hid]:cancel()
        trace("cancelself", handles[hid]:cancelled())
      end
    elseif op == "when" then
      local keys = {}
      for k in pairs(timers) do keys[#keys + 1] = k end
      if #keys > 0 then
        table.sort(keys)
        local i = keys[a[1] % #keys + 1]
        local d = handles[i]:when() - base
        trace("when", "h" .. i, math.floor(d + 0.5) == -10 * timers[i])
      end
    elseif op == "stop" then loop:stop()
    elseif op == "raise" then error(eddy.errors.ValueError("boom"))
    elseif op == "resolve" then
      local f = state.fut
      if f ~= nil and not f:done() then
        f:set_result(a[1] or 1)
        trace("resolved")
      end
    elseif op == "nested" then
      local ok, err = pcall(loop.run_until_complete, loop, loop:create_future())
      if not ok then trace("nested", classname(err)) end
    elseif op == "fcb" then
      local j = a[1]
      if state.fut ~= nil then state.fut:add_done_callback(function() cb(j, nil) end) end
    elseif op == "cancelfut" then
      if state.fut ~= nil then trace("cancelfut", state.fut:cancel()) end
    elseif op == "close" then
      local ok, err = pcall(loop.close, loop)
      if not ok then trace("close", classname(err)) end
    elseif op == "running" then trace("running", loop:is_running())
    elseif op == "time" then
      local t = loop:time()
      if t < state.last then trace("time went back") end
      state.last = t
    end
  end
end

for n, phase in ipairs(phases) do
  local kind, blk = phase[1], phase[2]
  trace("phase", n - 1, kind)
  state.fut = kind == "until" and loop:create_future() or nil
  act(blocks[blk] or {}, nil)
  local dog = loop:call_later(0.3, function() trace("watchdog"); loop:stop() end)
  local ok, err = pcall(function()
    if kind == "until" then
      trace("complete", loop:run_until_complete(state.fut))
    else
      loop:run_forever()
      trace("returned")
    end
  end)
  if not ok then trace("error", classname(err)) end
  dog:cancel()
end
loop:close()
local flags = {}
for i = 0, nhandles - 1 do flags[#flags + 1] = handles[i]:cancelled() and "1" or "0" end
trace("closed", table.concat(flags, " "))
local ok, err = pcall(loop.call_soon, loop, print)
if not ok then trace("after-close", classname(err)) end
print(table.concat(out, "\n"))
