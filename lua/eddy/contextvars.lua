-- eddy.contextvars: Python's contextvars for eddy: ContextVar, Token,
-- Context, copy_context.
--
-- A Context maps ContextVars to values.  Its map (_data) is never changed
-- in place: set() replaces it with a modified copy, so copying a Context is
-- O(1) (the copy shares the map) and a copy never sees later changes of
-- the original, as with CPython's immutable HAMT.
--
-- The C core keeps "the current Context" (nil = the empty base context)
-- and captures it for tasks (run in a copy: the hook registered below) and
-- for callbacks (run in the captured one).  Nothing here creates a Context
-- until a ContextVar is set, so programs that never set one keep a nil
-- context and the core skips all context work.

local eddy = require "eddy"
local errors = require "eddy.errors"
local args = require "eddy.args"
local C = eddy._core

local context_get, context_set = C.context_get, C.context_set

-- Stored in place of nil values (a map cannot hold nil), and Token's
-- old_value when the variable had no value.
local NIL = setmetatable({}, {__name = "eddy.contextvars.NIL"})
local MISSING = setmetatable({}, {__tostring = function() return "<Token.MISSING>" end})

-- {================================================= Context

local Context = {__name = "eddy.Context"}
Context.__index = Context

local function new_context(data)
  return setmetatable({_data = data, _entered = false}, Context)
end

-- The core calls this when a task is created in a non-base context, and
-- with nil (the base context) when task:get_context() needs a Context.
C.set_context_copy(function(ctx) return new_context(ctx ~= nil and ctx._data or {}) end)

-- The current Context, made real the first time a variable is set in the
-- base context.  The core keeps it as the running task's context, or
-- leaves it behind when the callback that set it returns (src/task.c,
-- src/callbacks.c).
local function current_for_set()
  local ctx = context_get()
  if ctx ~= nil then return ctx end
  ctx = new_context({})
  context_set(ctx)
  return ctx
end

function Context:__tostring()
  return string.format("<eddy.Context %d vars>", #self)
end

function Context:__len()
  local n = 0
  for _ in next, self._data do n = n + 1 end
  return n
end

-- for var, value in pairs(ctx) do
function Context:__pairs()
  local data = self._data
  return function(_, var)
    local v
    var, v = next(data, var)
    if var == nil then return nil end
    if v == NIL then v = nil end
    return var, v
  end, self, nil
end

-- ctx:run(fn, ...) -> fn's results, with ctx as the current context.
-- fn may suspend: the task step saves the current context as the task's
-- (src/task.c), so the task stays in ctx until fn returns.
function Context:run(fn, ...)
  if not args.callable(fn) then
    error(args.message("run", 1, "function", fn), 2)
  end
  if self._entered then
    error(errors.RuntimeError("cannot enter context: " .. tostring(self) .. " is already entered"), 2)
  end
  local prev = context_get()
  self._entered = true
  context_set(self)
  local res = table.pack(pcall(fn, ...))
  context_set(prev)
  self._entered = false
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

function Context:copy() return new_context(self._data) end

local ContextVar = {__name = "eddy.ContextVar"}

local function check_var(fname, var)
  if getmetatable(var) ~= ContextVar then
    error(args.message(fname, 1, "eddy.ContextVar", var), 3)
  end
end

-- ctx:get(var, default) -> var's value in ctx, else default
function Context:get(var, default)
  check_var("get", var)
  local v = self._data[var]
  if v == nil then return default end
  if v == NIL then return nil end
  return v
end

-- ctx:has(var) -> whether var has a value in ctx (Python's `var in ctx`)
function Context:has(var)
  check_var("has", var)
  return self._data[var] ~= nil
end

-- ctx1 == ctx2: the same variables with the same values (Python's Context
-- is a Mapping and compares as one).
function Context.__eq(a, b)
  if getmetatable(a) ~= Context or getmetatable(b) ~= Context then return false end
  local da, db = a._data, b._data
  if da == db then return true end
  for var, v in next, da do
    if db[var] ~= v then return false end
  end
  for var in next, db do
    if da[var] == nil then return false end
  end
  return true
end

-- ctx:keys() / ctx:values() / ctx:items() -> arrays ({var, value} pairs)
function Context:keys()
  local list = {}
  for var in pairs(self) do list[#list + 1] = var end
  return list
end

function Context:values()
  local list = {}
  for _, v in pairs(self) do list[#list + 1] = v end
  return list
end

function Context:items()
  local list = {}
  for var, v in pairs(self) do list[#list + 1] = {var, v} end
  return list
end

-- eddy.copy_context() -> a copy of the current Context
function eddy.copy_context()
  local ctx = context_get()
  return new_context(ctx ~= nil and ctx._data or {})
end

-- eddy.Context() -> a new empty Context
function eddy.Context() return new_context({}) end

-- }=================================================

-- {================================================= ContextVar and Token

-- ContextVar's 'name' and Token's 'var' and 'old_value' are read-only
-- fields, as Python's attributes: __index serves them from the instance's
-- _name, _var, _old_value; __newindex refuses them.
local var_methods = {}
local var_fields = {name = "_name"}

function ContextVar.__index(self, k)
  local m = var_methods[k]
  if m ~= nil then return m end
  local f = var_fields[k]
  if f ~= nil then return rawget(self, f) end
  return nil
end

local read_only = args.read_only

ContextVar.__newindex = read_only(ContextVar, var_fields)

local Token = {__name = "eddy.Token", MISSING = MISSING}
local token_fields = {var = "_var", old_value = "_old_value"}

function Token.__index(self, k)
  local f = token_fields[k]
  if f ~= nil then return rawget(self, f) end
  if k == "MISSING" then return MISSING end
  return nil
end

Token.__newindex = read_only(Token, token_fields)

-- eddy.ContextVar(name [, default])
function eddy.ContextVar(name, ...)
  if type(name) ~= "string" then
    error("bad argument #1 to 'ContextVar' (string expected, got " .. type(name) .. ")", 2)
  end
  local has_default = select("#", ...) > 0
  return setmetatable({_name = name, _has_default = has_default,
                       _default = (...)}, ContextVar)
end

function ContextVar:__tostring()
  local s = "<eddy.ContextVar name=" .. string.format("%q", self._name)
  if self._has_default then s = s .. " default=" .. tostring(self._default) end
  return s .. ">"
end

-- var:get([default]) -> the value in the current context, else default,
-- else the variable's default, else LookupError
function var_methods:get(...)
  local ctx = context_get()
  if ctx ~= nil then
    local v = ctx._data[self]
    if v ~= nil then
      if v == NIL then return nil end
      return v
    end
  end
  if select("#", ...) > 0 then return (...) end
  if self._has_default then return self._default end
  error(errors.LookupError(tostring(self)), 2)
end

-- var:set(value) -> Token (to reset the change)
function var_methods:set(value)
  local ctx = current_for_set()
  local data = ctx._data
  local old = data[self]
  local new = {}
  for k, v in next, data do new[k] = v end
  if value == nil then value = NIL end
  new[self] = value
  ctx._data = new
  if old == nil then old = MISSING elseif old == NIL then old = nil end
  return setmetatable({_var = self, _old_value = old, _context = ctx, _used = false}, Token)
end

-- var:reset(token): back to the value before the set() that made token
function var_methods:reset(token)
  if getmetatable(token) ~= Token then
    error("bad argument #1 to 'reset' (eddy.Token expected, got " .. type(token) .. ")", 2)
  end
  if token._used then
    error(errors.RuntimeError("Token has already been used once"), 2)
  end
  if token._var ~= self then
    error(errors.ValueError("Token was created by a different ContextVar"), 2)
  end
  local ctx = context_get()
  if not rawequal(token._context, ctx) then
    error(errors.ValueError("Token was created in a different Context"), 2)
  end
  local new = {}
  for k, v in next, ctx._data do new[k] = v end
  local old = token._old_value
  if old == MISSING then new[self] = nil
  elseif old == nil then new[self] = NIL
  else new[self] = old end
  ctx._data = new
  token._used = true
end

function Token:__tostring()
  return string.format("<eddy.Token%s var=%s>", self._used and " used" or "", tostring(self._var))
end

eddy.Token = Token

-- }=================================================

return eddy
