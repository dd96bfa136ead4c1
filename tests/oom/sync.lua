-- Queue, Lock, Event, Semaphore, Condition between tasks.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local loop = eddy.get_running_loop()
  local q = eddy.Queue(2)
  local consumer = loop:create_task(function()
    local sum = 0
    for _ = 1, 4 do sum = sum + q:get(); q:task_done() end
    return sum
  end)
  eddy.wait_for(function()
    for i = 1, 4 do q:put(i) end
    q:join()
  end, 0.5)
  assert(eddy.wait_for(consumer, 0.5) == 10)
  local lock, ev, sem = eddy.Lock(), eddy.Event(), eddy.Semaphore(1)
  local cond = eddy.Condition()
  local waiter = loop:create_task(function()
    ev:wait()
    cond:acquire()
    cond:wait_for(function() return true end)
    cond:release()
    return "woken"
  end)
  lock:acquire()
  loop:call_soon(function() ev:set() end)
  lock:release()
  sem:acquire()
  sem:release()
  assert(eddy.wait_for(waiter, 0.5) == "woken")
end)
