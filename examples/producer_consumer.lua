-- Producers and consumers around a bounded eddy.Queue, inside a TaskGroup,
-- with a timeout on the whole job and a Lock-protected tally.
local eddy = require "eddy"

local function producer(queue, name, n)
  for i = 1, n do
    eddy.sleep(0.001)
    queue:put(name .. "-" .. i)   -- waits while the queue is full
  end
end

local function consumer(queue, tally, lock)
  while true do
    local item = queue:get()
    do
      local _ <close> = lock:acquire()
      tally[#tally + 1] = item
    end
    queue:task_done()
  end
end

local function main()
  local queue = eddy.Queue(4)
  local tally, lock = {}, eddy.Lock()
  local consumers = {}
  for i = 1, 3 do consumers[i] = eddy.create_task(consumer, queue, tally, lock) end
  do
    local _ <close> = eddy.timeout(5)
    do
      local tg <close> = eddy.TaskGroup()
      tg:create_task(producer, queue, "a", 10)
      tg:create_task(producer, queue, "b", 10)
    end
    queue:join()   -- every item got and marked done
  end
  for _, c in ipairs(consumers) do c:cancel() end
  eddy.gather(table.unpack(consumers), {return_exceptions = true})
  return #tally
end

print(("consumed %d items"):format(eddy.run(main)))
