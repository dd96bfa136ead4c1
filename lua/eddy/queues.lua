-- eddy.queues: asyncio's queues (asyncio/queues.py, Python 3.13 with
-- shutdown): Queue (FIFO), PriorityQueue (smallest first, by <) and
-- LifoQueue (last in, first out).
--
-- A getter (putter) waiting on an empty (full) queue waits in _getters
-- (_putters), a C.Waiters FIFO (src/waiters.c: the task parks, no Future
-- per wait); each put (get) wakes the first one still waiting, which then
-- re-checks the queue: a woken waiter may find the item taken by a task
-- that ran first, and waits again.

local eddy = require "eddy"
local errors = require "eddy.errors"
local Deque = require "eddy.deque"
local args = require "eddy.args"
local C = eddy._core

local QueueEmpty, QueueFull, QueueShutDown =
  errors.QueueEmpty, errors.QueueFull, errors.QueueShutDown

-- Methods called on every get and put, as upvalues: no metatable lookups.
local Waiters = C.Waiters
local wait, wake_one, wake_all =
  C.Waiters_methods.wait, C.Waiters_methods.wake_one, C.Waiters_methods.wake_all

-- First thing in put, get and join: where nothing can suspend (a plain
-- callback) they raise RuntimeError naming themselves, even when they
-- could have returned at once (API.md §1, §11), before an item moves.
local can_suspend = C._can_suspend

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

-- A binary min-heap ordered by <, as Python's heapq.  Each operation
-- first finds where the items go, comparing only, then moves them: an
-- error from < (items that cannot be compared) leaves the heap as it was.
local function heap_put(h, item)
  local n = h.n + 1
  local i = n
  while i > 1 do  -- the item's place on the way up
    local parent = i // 2
    if not (item < h[parent]) then break end
    i = parent
  end
  local j = n
  while j > i do  -- move the parents on that path down
    local parent = j // 2
    h[j] = h[parent]
    j = parent
  end
  h[i] = item
  h.n = n
end

local function heap_get(h)
  local n = h.n
  local top, last = h[1], h[n]
  local m = n - 1  -- 'last' goes down from the root in h[1..m]
  local i = 1
  while true do  -- its place on the way down
    local child = 2 * i
    if child > m then break end
    if child < m and h[child + 1] < h[child] then child = child + 1 end
    if not (h[child] < last) then break end
    i = child
  end
  h[n] = nil
  h.n = m
  if m > 0 then  -- move the children on the path from the root to i up
    local moved = h[i]
    h[i] = last
    while i > 1 do
      local parent = i // 2
      h[parent], moved = moved, h[parent]
      i = parent
    end
  end
  return top
end

-- Items that < cannot order (a number and a table, two tables without
-- __lt) raise an error at the line that called put or get, as Lua's
-- table.sort names no line of its own (heapq raises TypeError, which
-- eddy.errors has not); an error raised by an item's own __lt goes on as
-- it is.
local function ordering(op)
  return function(h, item)
    local ok, result = pcall(op, h, item)
    if ok then return result end
    local why = type(result) == "string" and
                result:match("^eddy/queues%.lua:%d+: (attempt to compare .*)$")
    if why then  -- (levels: this function, add or take, the method, its caller)
      error("PriorityQueue items cannot be ordered: " .. why, 4)
    end
    error(result, 0)
  end
end

local heap = {
  new = function() return {n = 0} end,
  put = ordering(heap_put),
  get = ordering(heap_get),
}

-- 'maxsize' is a read-only field, yet methods are found through tables
-- only (an __index function would cost the ping-pong benchmark a quarter
-- of its speed).  Each queue has a metatable of its own whose __index is a
-- table holding maxsize, falling back to the methods; the queue itself
-- never holds maxsize, so assigning it reaches __newindex.  The methods
-- read their own copy, _maxsize, one lookup away.
local methods = {}
local fall_back_to_methods = {__index = methods}

local function queue_newindex(self, k, v)
  if k == "maxsize" then
    error("field 'maxsize' of eddy." .. self._name .. " is read-only", 2)
  end
  rawset(self, k, v)
end

local queue_tostring

-- Its errors blame the constructor's caller (level 3): the constructors
-- call it in parentheses, so that it is not a tail call, which would
-- drop their frame and make level 3 the line that called their caller.
local function new_queue(storage, name, maxsize)
  if maxsize == nil then maxsize = 0 end
  -- Any number, as asyncio (test_float_maxsize: 1.3 holds two items).
  if type(maxsize) ~= "number" then
    error(args.message(name, 1, "number", maxsize), 3)
  end
  local finished = eddy.Event()
  finished:set()
  local self = setmetatable({
    _name = name,
    _maxsize = maxsize,
    _n = 0,             -- items in _queue
    _unfinished_tasks = 0,
    _finished = finished,
    _is_shutdown = false,
    _queue = storage.new(),
    _put = storage.put,
    _get = storage.get,
    _getters = false, _putters = false,  -- set below: they need self
  }, {
    __name = "eddy." .. name,
    __index = setmetatable({maxsize = maxsize}, fall_back_to_methods),
    __newindex = queue_newindex,
    __tostring = queue_tostring,
  })
  self._getters, self._putters = Waiters(self), Waiters(self)
  return self
end

function eddy.Queue(maxsize, opts)
  args.check_options("Queue", 2, opts, args.NONE)
  return (new_queue(fifo, "Queue", maxsize))
end
function eddy.PriorityQueue(maxsize, opts)
  args.check_options("PriorityQueue", 2, opts, args.NONE)
  return (new_queue(heap, "PriorityQueue", maxsize))
end
function eddy.LifoQueue(maxsize, opts)
  args.check_options("LifoQueue", 2, opts, args.NONE)
  return (new_queue(lifo, "LifoQueue", maxsize))
end

function queue_tostring(self)
  local s = string.format("<eddy.%s maxsize=%s", self._name, self.maxsize)
  local n = self._n
  if n > 0 then s = s .. " size=" .. n end
  if #self._getters > 0 then s = s .. " _getters[" .. #self._getters .. "]" end
  if #self._putters > 0 then s = s .. " _putters[" .. #self._putters .. "]" end
  if self._unfinished_tasks > 0 then s = s .. " tasks=" .. self._unfinished_tasks end
  if self._is_shutdown then s = s .. " shutdown" end
  return s .. ">"
end

local function full(self)
  local maxsize = self._maxsize
  return maxsize > 0 and self._n >= maxsize
end

function methods:qsize() return self._n end
function methods:empty() return self._n == 0 end
methods.full = full

-- Wait in 'waiters' (the task parks; the Waiters is bound to the loop of
-- its first wait, as asyncio's _LoopBoundMixin).  Cancelled after a wake
-- had picked it, a waiter passes the wake on when the queue can still
-- serve (asyncio's "if not self.empty() and not getter.cancelled()").
local function wait_in(self, what, waiters, can_serve)
  local err, woken = wait(waiters, what)
  if err ~= nil then
    if woken and can_serve(self) then wake_one(waiters) end
    error(err, 0)
  end
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
  wake_one(self._getters)
end

-- Take an item (the queue is not empty) and wake a putter.
local function take(self)
  local item = self._get(self._queue)
  self._n = self._n - 1
  wake_one(self._putters)
  return item
end

-- queue:put(item) (S): wait while the queue is full.
function methods:put(item)
  can_suspend("put")
  while full(self) do
    if self._is_shutdown then error(QueueShutDown(), 2) end
    wait_in(self, "put", self._putters, not_full)
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
  can_suspend("get")
  while self._n == 0 do
    if self._is_shutdown then error(QueueShutDown(), 2) end
    wait_in(self, "get", self._getters, not_empty)
  end
  local item = take(self)  -- (no tail call: see ordering)
  return item
end

function methods:get_nowait()
  if self._n == 0 then
    if self._is_shutdown then error(QueueShutDown(), 2) end
    error(QueueEmpty(), 2)
  end
  local item = take(self)  -- (no tail call: see ordering)
  return item
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
  can_suspend("join")
  if self._unfinished_tasks > 0 then self._finished:_wait("join") end
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
  wake_all(self._getters)
  wake_all(self._putters)
end

return eddy
