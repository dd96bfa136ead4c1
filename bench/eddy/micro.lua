-- micro.lua BENCH N: eddy's port of ../shared/bench/micro/py_micro.py,
-- function by function (same N, same thing timed), so the rows compare.
--
--   chain     N callbacks, each call_soon()s the next (one per iteration)
--   batch     N call_soon() at once, then run them all
--   tasks     gather of N tasks, each awaits sleep(0) once
--   timers    N call_later() with random delays in [0, 1 s); ops_s is
--             N / CPU-seconds (the loop idles between timers)
--   pingpong  N round trips between two tasks through futures
--   memory    N idle tasks, each awaiting its own pending future
--
-- Prints one line: RESULT impl=eddy bench=... n=... secs=... ops_s=... [extra]
local eddy = require "eddy"

local bench, n = arg[1], math.floor(tonumber(arg[2] or "100000"))

local function now() return eddy.get_event_loop():time() end

local function rss_kb(key)
  key = key or "VmRSS:"
  for line in io.lines("/proc/self/status") do
    if line:sub(1, #key) == key then return tonumber(line:match("(%d+)")) end
  end
  return -1
end

local function report(secs, ops, extra)
  local ex = {}
  for k, v in pairs(extra or {}) do ex[#ex + 1] = " " .. k .. "=" .. tostring(v) end
  table.sort(ex)
  print(string.format("RESULT impl=eddy bench=%s n=%d secs=%.3f ops_s=%.0f%s",
                      bench, n, secs, ops, table.concat(ex)))
end

local benches = {}

-- Run aw (a function run as a task, or a future) to completion, after
-- start() if given; returns the seconds and ops/s for n.
local function timed(loop, aw, start)
  local t0 = now()
  if start then start() end
  loop:run_until_complete(aw)
  local secs = now() - t0
  return secs, n / secs
end

function benches.chain(loop)
  local done = loop:create_future()
  local count = 0
  local function cb()
    count = count + 1
    if count < n then loop:call_soon(cb) else done:set_result() end
  end
  return timed(loop, done, function() loop:call_soon(cb) end)
end

function benches.batch(loop)
  local done = loop:create_future()
  local count = 0
  local function cb()
    count = count + 1
    if count == n then done:set_result() end
  end
  local t0 = now()
  local call_soon = loop.call_soon
  for _ = 1, n do call_soon(loop, cb) end
  local t_sched = now() - t0
  loop:run_until_complete(done)
  local secs = now() - t0
  return secs, n / secs, {sched_ops_s = string.format("%.0f", n / t_sched)}
end

function benches.tasks(loop)
  local sleep = eddy.sleep
  local function t() sleep(0) end
  local function main()
    local ts = {}
    for i = 1, n do ts[i] = t end
    eddy.gather(table.unpack(ts, 1, n))
  end
  return timed(loop, main)
end

function benches.timers(loop)
  math.randomseed(42)
  local delays = {}
  for i = 1, n do delays[i] = math.random() end  -- not timed
  local done = loop:create_future()
  local count = 0
  local function cb()
    count = count + 1
    if count == n then done:set_result() end
  end
  local c0 = os.clock()
  local t0 = now()
  local call_later = loop.call_later
  for i = 1, n do call_later(loop, delays[i], cb) end
  local t_sched = now() - t0
  loop:run_until_complete(done)
  local wall = now() - t0
  local cpu = os.clock() - c0
  return wall, n / cpu, {cpu_s = string.format("%.3f", cpu),
                         sched_ops_s = string.format("%.0f", n / t_sched)}
end

function benches.pingpong(loop)
  local function main()
    local a = loop:create_future()  -- pong waits on a
    local b                         -- ping waits on b
    local function pong()
      for _ = 1, n do
        a:await()
        a = loop:create_future()
        b:set_result()
      end
    end
    local function ping()
      for _ = 1, n do
        b = loop:create_future()
        a:set_result()
        b:await()
      end
    end
    local tp = loop:create_task(pong)
    ping()
    tp:await()
  end
  return timed(loop, main)
end

function benches.memory(loop)
  local res = {}
  local function waiter(f) f:await() end
  local function main()
    collectgarbage(); collectgarbage()
    local rss0 = rss_kb()
    local futs, tasks = {}, {}
    for i = 1, n do futs[i] = loop:create_future() end
    for i = 1, n do tasks[i] = loop:create_task(waiter, futs[i]) end
    eddy.sleep(0)
    eddy.sleep(0)  -- every task has started and is blocked
    collectgarbage(); collectgarbage()
    local rss1 = rss_kb()
    res.bytes_per_task = string.format("%.0f", (rss1 - rss0) * 1024 / n)
    res.rss0_kb, res.rss1_kb = rss0, rss1
    for i = 1, n do futs[i]:set_result() end
    eddy.gather(table.unpack(tasks, 1, n))
    res.peak_rss_kb = rss_kb("VmHWM:")
  end
  local secs, ops_s = timed(loop, main)
  return secs, ops_s, res
end

if not benches[bench] then
  io.stderr:write("usage: eddy micro.lua chain|batch|tasks|timers|pingpong|memory N\n")
  os.exit(2)
end
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
report(benches[bench](loop))
loop:close()
