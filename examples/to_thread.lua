-- asyncio's to_thread() and run_in_executor() examples (Coroutines and
-- Tasks: "Running in Threads"; Event Loop: "Executing code in thread or
-- process pools"), in eddy.  A blocking call runs on a worker thread while
-- the loop goes on; the worker sees only its own globals, so the functions
-- sent there use no upvalues (locals of this file) but globals.
local eddy = require "eddy"

local function blocking_io()
  print("start blocking_io at " .. os.date("%X"))
  -- os.execute blocks its thread (time.sleep(1) in Python).
  os.execute("sleep 1")
  print("blocking_io complete at " .. os.date("%X"))
end

local function cpu_bound(n)
  local sum = 0
  for i = 0, n - 1 do sum = sum + i * i end
  return sum
end

local function main()
  print("started main at " .. os.date("%X"))
  -- Both take about 1 s: together they take about 1 s, not 2.
  local t0 = eddy.get_running_loop():time()
  eddy.gather(function() return eddy.to_thread(blocking_io) end,
              function() eddy.sleep(1) end)
  print("finished main at " .. os.date("%X"))
  assert(eddy.get_running_loop():time() - t0 < 1.9, "the blocking call blocked the loop")

  local loop = eddy.get_running_loop()
  -- The default executor (nil).
  print("default thread pool", loop:run_in_executor(nil, cpu_bound, 1000000):await())
  -- An executor of our own, shut down (joined) when 'pool' goes out of scope.
  do
    local pool <close> = eddy.ThreadPoolExecutor(2)
    local a = loop:run_in_executor(pool, cpu_bound, 1000)
    local b = loop:run_in_executor(pool, string.rep, "ab", 3)  -- a C function by name
    print("custom thread pool", a:await(), b:await())
  end
end

eddy.run(main)
