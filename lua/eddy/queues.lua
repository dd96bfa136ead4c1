-- eddy.queues: asyncio's queues (asyncio/queues.py, Python 3.13 with
-- shutdown): Queue (FIFO), PriorityQueue (smallest first, by <) and
-- LifoQueue (last in, first out).
--
-- A getter (putter) waiting on an empty (full) queue waits on a future in
-- _getters (_putters); each put (get) wakes the first one not cancelled,
-- which then re-checks the queue: a woken waiter may find the item taken
-- by a task that ran first, and waits again.

local eddy = require "eddy"
local errors = require "eddy.errors"
local Deque = require "eddy.deque"
local C = eddy._core

local QueueEmpty, QueueFull, QueueShutDown =
  errors.QueueEmpty, errors.QueueFull, errors.QueueShutDown

local get_running_loop = C._get_running_loop
local get_event_loop = C.get_event_loop
-- Methods called on every get and put, as upvalues: no metatable lookups.
local create_future = C.Loop.create_future
local f_done, f_set_result, f_await =
  C.Future.__index.done, C.Future.__index.set_result, C.Future.__index.await
local popleft, push = Deque.popleft, Deque.push

-- The storage of each kind of queue: new(), put(s, item), get(s) -> item.
-- The Queue methods reach them through the instance (_put, _get) and count
-- the items themselves (_n), so the hot path makes no class lookups.
local fifo = {
  new = Deque.new,
  put = Deque.push,
  get = Deque.popleft,
}

local lifo = {
  new = function() return {n = 0} end,
  put = function(s, item)
    local n = s.n + 1
    s.n = n
    s[n] = item
  end,
  get = function(s)
    local n = s.n
    local item = s[n]
    s[n] = nil
    s.n = n - 1
    return item
  end,
}

-- A binary min-heap ordered by <, as Python's heapq.
local heap = {
  new = function() return {n = 0} end,
  put = function(h, item)
    local i = h.n + 1
    h.n = i
    while i > 1 do  -- sift up
      local parent = i // 2
      local p = h[parent]
      if not (item < p) then break end
      h[i] = p
      i = parent
    end
    h[i] = item
  end,
  get = function(h)
    local n = h.n
    local top, last = h[1], h[n]
    h[n] = nil
    n = n - 1
    h.n = n
    if n > 0 then  -- sift 'last' down from the root
      local i = 1
      while true do
        local child = 2 * i
        if child > n then break end
        if child < n and h[child + 1] < h[child] then child = child + 1 end
        if not (h[child] < last) then break end
        h[i] = h[child]
        i = child
      end
      h[i] = last
    end
    return top
  end,
}

-- Methods are looked up in a plain table (an __index function would cost
-- the ping-pong benchmark a quarter of its speed), so 'maxsize' is a plain
-- field: read it, do not assign it.
local methods = {}
local Queue = {__index = methods}

local function new_queue(storage, name, maxsize)
  if maxsize == nil then maxsize = 0 end
  if math.type(maxsize) ~= "integer" then
    error("bad argument #1 to '" .. name .. "' (integer expected, got "
          .. (math.type(maxsize) or type(maxsize)) .. ")", 3)
  end
  local finished = eddy.Event()
  finished:set()
  return setmetatable({
    _name = name,
    maxsize = maxsize,
    _n = 0,             -- items in _queue
    _getters = Deque.new(),
    _putters = Deque.new(),
    _unfinished_tasks = 0,
    _finished = finished,
    _is_shutdown = false,
    _queue = storage.new(),
    _put = storage.put,
    _get = storage.get,
    _loop = nil,        -- bound by the first waiter
  }, Queue)
end

function eddy.Queue(maxsize) return new_queue(fifo, "Queue", maxsize) end
function eddy.PriorityQueue(maxsize) return new_queue(heap, "PriorityQueue", maxsize) end
function eddy.LifoQueue(maxsize) return new_queue(lifo, "LifoQueue", maxsize) end

function Queue.__tostring(self)
  local s = string.format("<eddy.%s maxsize=%d", self._name, self.maxsize)
  local n = self._n
  if n > 0 then s = s .. " size=" .. n end
  if #self._getters > 0 then s = s .. " _getters[" .. #self._getters .. "]" end
  if #self._putters > 0 then s = s .. " _putters[" .. #self._putters .. "]" end
  if self._unfinished_tasks > 0 then s = s .. " tasks=" .. self._unfinished_tasks end
  if self._is_shutdown then s = s .. " shutdown" end
  return s .. ">"
end

-- A future on the loop of the first waiter (asyncio's _LoopBoundMixin);
-- awaiting it from a task of another loop fails in the task ("Task got
-- Future attached to a different loop").
local function new_waiter(self)
  local loop = self._loop
  if loop == nil then
    loop = get_running_loop() or get_event_loop()
    self._loop = loop
  end
  return create_future(loop)
end

-- Wake the first waiter that is not cancelled.
local function wakeup_next(waiters)
  while waiters.head <= waiters.tail do
    local waiter = popleft(waiters)
    if not f_done(waiter) then
      f_set_result(waiter, nil)
      return
    end
  end
end

local function full(self)
  local maxsize = self.maxsize
  return maxsize > 0 and self._n >= maxsize
end

function methods:qsize() return self._n end
function methods:empty() return self._n == 0 end
methods.full = full

-- Waiting failed (cancelled): forget the waiter, and if it had been woken
-- and the queue can still serve, wake the next one in its place.
local function waiter_failed(self, waiters, waiter, can_serve, err)
  waiter:cancel()
  waiters:remove(waiter)
  if can_serve(self) and not waiter:cancelled() then wakeup_next(waiters) end
  error(err, 0)
end

local function not_full(self) return not full(self) end
local function not_empty(self) return self._n > 0 end

-- Store an item (the queue is not full) and wake a getter.
local function add(self, item)
  self._put(self._queue, item)
  self._n = self._n + 1
  self._unfinished_tasks = self._unfinished_tasks + 1
  local finished = self._finished
  if finished._value then finished:clear() end  -- (Event's own flag)
  local getters = self._getters
  if getters.head <= getters.tail then wakeup_next(getters) end
end

-- Take an item (the queue is not empty) and wake a putter.
local function take(self)
  local item = self._get(self._queue)
  self._n = self._n - 1
  local putters = self._putters
  if putters.head <= putters.tail then wakeup_next(putters) end
  return item
end

-- queue:put(item) (S): wait while the queue is full.
function methods:put(item)
  while full(self) do
    if self._is_shutdown then error(QueueShutDown(), 2) end
    local putter = new_waiter(self)
    push(self._putters, putter)
    local ok, err = pcall(f_await, putter)
    if not ok then waiter_failed(self, self._putters, putter, not_full, err) end
  end
  if self._is_shutdown then error(QueueShutDown(), 2) end
  add(self, item)
end

function methods:put_nowait(item)
  if self._is_shutdown then error(QueueShutDown(), 2) end
  if full(self) then error(QueueFull(), 2) end
  add(self, item)
end

-- queue:get() -> item (S): wait while the queue is empty.
function methods:get()
  while self._n == 0 do
    if self._is_shutdown then error(QueueShutDown(), 2) end
    local getter = new_waiter(self)
    push(self._getters, getter)
    local ok, err = pcall(f_await, getter)
    if not ok then waiter_failed(self, self._getters, getter, not_empty, err) end
  end
  return take(self)
end

function methods:get_nowait()
  if self._n == 0 then
    if self._is_shutdown then error(QueueShutDown(), 2) end
    error(QueueEmpty(), 2)
  end
  return take(self)
end

-- queue:task_done(): a consumer finished with an item it got.
function methods:task_done()
  if self._unfinished_tasks <= 0 then
    error(errors.ValueError("task_done() called too many times"), 2)
  end
  self._unfinished_tasks = self._unfinished_tasks - 1
  if self._unfinished_tasks == 0 then self._finished:set() end
end

-- queue:join() (S): wait until every item put has been task_done().
function methods:join()
  if self._unfinished_tasks > 0 then self._finished:wait() end
end

-- queue:shutdown(immediate): put raises QueueShutDown from now on; get
-- too once the queue is empty ('immediate' empties it now).  Every
-- blocked put and get is woken to see it.
function methods:shutdown(immediate)
  self._is_shutdown = true
  if immediate then
    local q = self._queue
    while self._n > 0 do
      self._get(q)
      self._n = self._n - 1
      if self._unfinished_tasks > 0 then
        self._unfinished_tasks = self._unfinished_tasks - 1
      end
    end
    if self._unfinished_tasks == 0 then self._finished:set() end
  end
  for _, waiters in ipairs {self._getters, self._putters} do
    while #waiters > 0 do
      local w = waiters:popleft()
      if not w:done() then w:set_result(nil) end
    end
  end
end

return eddy
