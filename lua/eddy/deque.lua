-- eddy.deque: the FIFO of waiters that locks and queues keep (Python's
-- collections.deque, as far as asyncio uses it): push at the tail, pop
-- and peek at the head, remove a given element.  Items live in
-- items[head .. tail]; head > tail means empty.

local Deque = {}
Deque.__index = Deque

function Deque.new()
  return setmetatable({head = 1, tail = 0}, Deque)
end

function Deque:__len()
  return self.tail - self.head + 1
end

function Deque:push(v)
  local tail = self.tail + 1
  self[tail] = v  -- first: it may fail (no memory), and then counts not
  self.tail = tail
end

-- popleft() -> the head element, or nil when empty
function Deque:popleft()
  local head = self.head
  if head > self.tail then return nil end
  local v = self[head]
  self[head] = nil
  if head == self.tail then  -- empty again: restart at 1 (keeps indices small)
    self.head, self.tail = 1, 0
  else
    self.head = head + 1
  end
  return v
end

-- remove(v) -> whether v was found; the elements after it move down
function Deque:remove(v)
  local head, tail = self.head, self.tail
  for i = head, tail do
    if self[i] == v then
      if i == head then
        self:popleft()
      else
        table.move(self, i + 1, tail, i)
        self[tail] = nil
        self.tail = tail - 1
      end
      return true
    end
  end
  return false
end

-- Iterate from head to tail: for i, v in dq:each() do
function Deque:each()
  local i, tail = self.head - 1, self.tail
  return function()
    i = i + 1
    if i <= tail then return i, self[i] end
  end
end

return Deque
