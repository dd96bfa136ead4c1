-- What the eddy harnesses of tools/diff/ print alike: values as the
-- Python harnesses print them, and errors by class name.
local trace = {}

-- A byte string as the Python side prints bytes; labels print as they are.
local Quoted = {}
function trace.q(s) return setmetatable({s = s}, Quoted) end

function trace.show(v)
  if getmetatable(v) == Quoted then return '"' .. v.s:gsub("\n", "\\n") .. '"' end
  if type(v) == "table" and getmetatable(v) == nil then
    local parts = {}
    for i = 1, v.n or #v do parts[i] = trace.show(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- A value as socket.py and net.py print it: strings quoted with NUL as
-- \0, ephemeral ports (10000 and up) as PORT, a plain table as {...} of
-- its items, each shown by 'item' (by default this same function).
function trace.pyshow(v, item)
  if type(v) == "string" then return '"' .. v:gsub("%z", "\\0") .. '"' end
  if math.type(v) == "integer" and v >= 10000 then return "PORT" end
  if type(v) == "table" and getmetatable(v) == nil then
    local parts = {}
    for i = 1, v.n or #v do parts[i] = (item or trace.pyshow)(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- trace.Rng(seed): the LCG of proc.py's Rng, so that a seed makes the
-- same choices on both sides; rng:pick(options) picks one of an array.
local Rng = {}
Rng.__index = Rng

function Rng:pick(options)
  self.x = (self.x * 1103515245 + 12345) % 2147483648
  return options[(self.x >> 16) % #options + 1]
end

function trace.Rng(seed) return setmetatable({x = seed}, Rng) end

-- An error as the trace shows it: its class name (a string error: "string").
function trace.ename(e)
  if e == nil then return "nil" end
  if type(e) == "table" and e.__name then return e.__name end
  return type(e)
end

-- An error's message without the "file:line: " a Lua error() adds.
function trace.emsg(e)
  if type(e) == "table" then return tostring(e.message) end
  return (tostring(e):gsub("^[^:]*:%d+: ", ""))
end

-- The events of one scenario, a line each ({name = ..., lines = {}});
-- trace.class() makes a harness's own, which says how the data events it
-- records with data_of merge, and writes them out in flush().
local Trace = {}

function Trace:__call(...)
  self:flush()
  local words = table.pack(...)
  for i = 1, words.n do words[i] = trace.show(words[i]) end
  self.lines[#self.lines + 1] = table.concat(words, " ", 1, words.n)
end

function Trace:dump(sort_middle)
  self:flush()
  local lines = self.lines
  if sort_middle then  -- racy order: sorted between connection_made and _lost
    local last
    for i, l in ipairs(lines) do
      if l:find("^connection_lost") then last = i break end
    end
    local middle = table.move(lines, 2, last - 1, 1, {})
    table.sort(middle)
    table.move(middle, 1, #middle, 2, lines)
  end
  for _, l in ipairs(lines) do print(self.name .. ": " .. l) end
end

function trace.class()
  local class = setmetatable({}, {__index = Trace})
  class.__index, class.__call = class, Trace.__call  -- (metamethods are not inherited)
  return class
end

return trace
