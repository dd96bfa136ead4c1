-- eddy.errors: asyncio's exception classes as Lua error objects (API.md §9).
--
-- A class is a table; an error is a table whose metatable is its class.
-- Classes are callable: Class(message [, fields]) builds an error, where
-- fields (a table) adds attributes such as errno, partial or consumed.
-- errors.is(value, Class) walks the hierarchy; tostring(err) is
-- "ClassName: message" (or "ClassName" when there is no message).

local args = require "eddy.args"

local errors = {}

local function err_tostring(e)
  local cls = getmetatable(e)
  local msg = rawget(e, "message")
  if msg == nil or msg == "" then return cls.__name end
  return cls.__name .. ": " .. tostring(msg)
end

local class_mt = {}

-- Class(message, fields) -> error object.  (The constructors below that
-- take asyncio's arguments tail-call it, so its errors blame their caller.)
function class_mt.__call(cls, message, fields)
  local e = {}
  if type(fields) == "table" then
    for k, v in pairs(fields) do e[k] = v end
  elseif fields ~= nil then
    error(args.message(cls.__name, 2, "table or nil", fields), 2)
  end
  if message ~= nil then e.message = tostring(message) end
  return setmetatable(e, cls)
end

function class_mt.__tostring(cls) return "<class " .. cls.__name .. ">" end

-- Define class 'name' under 'parent'; its instances index the class,
-- which indexes the parent (so methods and defaults are inherited).
local function class(name, parent)
  local cls = {
    __name = name,
    __parent = parent,
    __tostring = err_tostring,
  }
  cls.__index = cls
  if parent then
    setmetatable(cls, {__index = parent, __call = class_mt.__call,
                       __tostring = class_mt.__tostring})
  else
    setmetatable(cls, class_mt)
  end
  errors[name] = cls
  return cls
end
errors.class = class

local Error = class("Error")
for _, name in ipairs {
  "CancelledError", "TimeoutError", "InvalidStateError", "RuntimeError",
  "ValueError", "LookupError", "IncompleteReadError", "LimitOverrunError",
  "SendfileNotAvailableError", "QueueEmpty", "QueueFull", "QueueShutDown",
  "BrokenBarrierError", "ExceptionGroup",
} do
  class(name, Error)
end

-- IncompleteReadError(partial, expected) and LimitOverrunError(message,
-- consumed) take asyncio's positional arguments too.
local incomplete_call = class_mt.__call
getmetatable(errors.IncompleteReadError).__call = function(cls, partial, expected)
  if type(partial) == "string" and (expected == nil or type(expected) == "number") then
    local msg = string.format("%d bytes read on a total of %s expected bytes",
                              #partial, expected == nil and "undefined" or tostring(expected))
    return incomplete_call(cls, msg, {partial = partial, expected = expected})
  elseif type(expected) == "number" then
    error(args.message(cls.__name, 1, "string", partial), 2)
  end
  return incomplete_call(cls, partial, expected)
end
getmetatable(errors.LimitOverrunError).__call = function(cls, message, consumed)
  if type(consumed) == "number" then
    return incomplete_call(cls, message, {consumed = consumed})
  end
  return incomplete_call(cls, message, consumed)
end
-- ExceptionGroup(message, exceptions): a non-empty array, as asyncio's
-- (its items are whatever the errors were: Lua errors need not be error
-- objects); or the fields table of every class.
getmetatable(errors.ExceptionGroup).__call = function(cls, message, exceptions)
  if type(exceptions) == "table" and getmetatable(exceptions) == nil and exceptions.exceptions == nil then
    if exceptions[1] == nil then
      error(errors.ValueError("second argument (exceptions) must be a non-empty sequence"), 2)
    end
    return incomplete_call(cls, message, {exceptions = exceptions})
  end
  return incomplete_call(cls, message, exceptions)
end
function errors.ExceptionGroup.__tostring(e)
  local n = e.exceptions and #e.exceptions or 0
  local message = (e.message == nil or e.message == "") and "" or e.message .. " "
  return string.format("ExceptionGroup: %s(%d sub-exception%s)",
                       message, n, n == 1 and "" or "s")
end

local OSError = class("OSError", Error)
local ConnectionError = class("ConnectionError", OSError)
class("ConnectionRefusedError", ConnectionError)
class("ConnectionResetError", ConnectionError)
class("ConnectionAbortedError", ConnectionError)
class("BrokenPipeError", ConnectionError)
class("DNSError", OSError)
class("FileNotFoundError", OSError)
class("PermissionError", OSError)
class("ProcessLookupError", OSError)
local SSLError = class("SSLError", OSError)
class("SSLCertVerificationError", SSLError)
-- Raised by eddy.run when Ctrl-C cancelled its main task (src/signal.c).
class("KeyboardInterrupt", Error)

-- errors.is(value, Class): value is an instance of Class or a subclass.
-- (A table whose __metatable field hides its metatable is no error object.)
function errors.is(value, cls)
  if type(value) ~= "table" or type(cls) ~= "table" then return false end
  local mt = getmetatable(value)
  while type(mt) == "table" do
    if mt == cls then return true end
    mt = rawget(mt, "__parent")
  end
  return false
end

-- errors.isclass(value): value is one of the classes.
function errors.isclass(value)
  return type(value) == "table" and rawget(value, "__index") == value
         and type(rawget(value, "__name")) == "string"
         and (rawget(value, "__parent") ~= nil or value == Error)
end

return errors
