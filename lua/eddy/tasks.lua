-- eddy.tasks: asyncio's task composition (asyncio/tasks.py): gather and
-- friends, built on the C Future and Task.

local eddy = require "eddy"
local errors = require "eddy.errors"
local C = eddy._core

local ensure_future = eddy.ensure_future
local pack, unpack = table.pack, table.unpack

-- A trailing plain table (no metatable) is the options table (API.md §1).
local function split_options(n, ...)
  local last = select(n, ...)
  if n > 0 and type(last) == "table" and getmetatable(last) == nil then
    return n - 1, last
  end
  return n, nil
end
eddy._split_options = split_options

-- {================================================= gather

-- The future gather() waits on: cancelling it cancels the children.
local gathering_children = setmetatable({}, {__mode = "k"})
local GatheringFuture = {}
for k, v in pairs(C.Future) do GatheringFuture[k] = v end
local gathering_methods = setmetatable({}, {__index = C.Future.__index})
GatheringFuture.__index = gathering_methods
GatheringFuture.__name = "eddy.GatheringFuture"

-- gather(aw1, aw2, ..., {return_exceptions}) -> first result of each
local function gather(...)
  local n, opts = split_options(select("#", ...), ...)
  local return_exceptions = opts ~= nil and opts.return_exceptions or false
  if n == 0 then return end
  local args = pack(...)
  local children, arg_to_fut = {}, {}
  local loop, outer
  local nfuts, nfinished = 0, 0
  local cancel_requested = false
  local done_futs = {}

  local function done_callback(fut)
    nfinished = nfinished + 1
    if outer == nil or outer:done() then
      if not fut:cancelled() then fut:exception() end  -- mark it retrieved
      return
    end
    if not return_exceptions then
      if fut:cancelled() then
        local ok, exc = pcall(fut.result, fut)
        outer:set_exception(exc)
        return
      end
      local exc = fut:exception()
      if exc ~= nil then
        outer:set_exception(exc)
        return
      end
    end
    if nfinished == nfuts then
      local results = {}
      for i = 1, n do
        local child = children[i]
        if child:cancelled() then
          local _, exc = pcall(child.result, child)
          results[i] = exc
        else
          local exc = child:exception()
          if exc ~= nil then results[i] = exc
          else results[i] = (child:result()) end
        end
      end
      if cancel_requested then
        outer:set_exception(errors.CancelledError())
      else
        outer:set_result(unpack(results, 1, n))
      end
    end
  end

  for i = 1, n do
    local arg = args[i]
    if arg == nil then
      error("bad argument #" .. i .. " to 'gather' (awaitable expected, got nil)", 2)
    end
    local fut = arg_to_fut[arg]
    if fut == nil then
      fut = ensure_future(arg, loop, 3)
      if loop == nil then loop = fut:get_loop() end
      nfuts = nfuts + 1
      arg_to_fut[arg] = fut
      if fut:done() then done_futs[#done_futs + 1] = fut
      else fut:add_done_callback(done_callback) end
    end
    children[i] = fut
  end
  outer = C._future_new(loop, GatheringFuture)
  gathering_children[outer] = children
  for _, fut in ipairs(done_futs) do done_callback(fut) end
  return outer:await()
end
eddy.gather = gather

-- The gathering future's cancel marks the request; the children's
-- completion then finishes it.
function gathering_methods:cancel(msg)
  if self:done() then return false end
  local ret = false
  for _, child in ipairs(gathering_children[self]) do
    if child:cancel(msg) then ret = true end
  end
  return ret
end

-- }=================================================

return eddy
