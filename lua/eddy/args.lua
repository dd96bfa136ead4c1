-- eddy.args: argument checks the Lua modules share, so their errors read
-- like the C functions' (API.md §1: "bad argument #2 to 'name' (...)").

local args = {}

-- The type name of v for messages: its metatable's __name, else type(v).
function args.typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

-- Whether v can be called: a function, or a value with __call.
function args.callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Whether v has a fileno method (a socket or file-like object); false,
-- not an error, for values that cannot be indexed or whose fileno field
-- cannot be called.
function args.has_fileno(v)
  local ok, fileno = pcall(function() return v.fileno end)
  return ok and args.callable(fileno)
end

-- check_protocol(fname, n, v): v must be a protocol (a table or a
-- userdata), as the C transports' set_protocol checks; a number set as
-- the protocol would fail later, inside the transport's own callbacks.
function args.check_protocol(fname, n, v)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then
    error(args.message(fname, n, "protocol (table or userdata)", v), 3)
  end
end

-- check_string(fname, n, v [, optional]) and check_integer(fname, n, v):
-- the checks of luaL_checkstring (luaL_optstring when optional) and
-- luaL_checkinteger (a float with an exact integer value passes), for a
-- Lua method that hands v on to a C one: the C error would name the Lua
-- method's line, not its caller's.
function args.check_string(fname, n, v, optional)
  if type(v) == "string" or (optional and v == nil) then return end
  error(args.message(fname, n, optional and "string or nil" or "string", v), 3)
end

function args.check_integer(fname, n, v)
  if type(v) ~= "number" then error(args.message(fname, n, "number", v), 3) end
  if math.tointeger(v) == nil then
    error(string.format("bad argument #%d to '%s' (number has no integer representation)",
                        n, fname), 3)
  end
end

-- joined_lines(list): the argument of a writelines written in Lua (a
-- table of strings or eddy.Buffers) checked as the C transports' is, but
-- with the error at the caller's line; returns the elements joined.
function args.joined_lines(list)
  if type(list) ~= "table" then error(args.message("writelines", 1, "table", list), 3) end
  local parts = {}
  for i = 1, #list do
    local v = list[i]
    if args.typename(v) == "eddy.Buffer" then v = v:tostring() end
    if type(v) ~= "string" then
      error(string.format("bad element #%d in 'writelines' (string or eddy.Buffer expected, got %s)",
                          i, args.typename(v)), 3)
    end
    parts[i] = v
  end
  return table.concat(parts)
end

-- The message of a standard argument error.
function args.message(fname, n, expected, v)
  return string.format("bad argument #%d to '%s' (%s expected, got %s)",
                       n, fname, expected, args.typename(v))
end

-- The message of an options table holding a name fname does not take.
function args.unknown_option(fname, n, k)
  return string.format("bad argument #%d to '%s' (unknown option '%s')",
                       n, fname, tostring(k))
end

-- Whether v can be an options table: a plain table (API.md §1: a table
-- with a metatable is an object, never options).
function args.is_options(v)
  return type(v) == "table" and getmetatable(v) == nil
end

-- Raise the argument error for 'opts', argument n of fname, unless it is
-- nil or an options table; 'level' as error's, counted from the caller
-- (3 from a helper fname called directly: fname's caller is blamed).
function args.check_options_table(fname, n, opts, level)
  if opts ~= nil and not args.is_options(opts) then
    local got = args.typename(opts)
    if got == "table" then got = "table with a metatable" end
    error(string.format("bad argument #%d to '%s' (options table expected, got %s)",
                        n, fname, got), level + 1)
  end
end

-- The options table at argument n of fname (the keyword-only
-- parameters): nil or a plain table holding only the names in 'allowed';
-- returns it, or {} for nil.  asyncio raises TypeError for an unexpected
-- keyword, so a misspelt option is an argument error, never silently
-- ignored.  Errors blame the caller of fname.
function args.check_options(fname, n, opts, allowed)
  if opts == nil then return {} end
  args.check_options_table(fname, n, opts, 3)
  for k in pairs(opts) do
    if not allowed[k] then
      error(args.unknown_option(fname, n, k), 3)
    end
  end
  return opts
end

-- The 'allowed' of check_options for a function with no keyword-only
-- parameter in asyncio: a trailing plain table is still its options
-- table (API.md §1), and any option in it an unexpected keyword.
args.NONE = {}

-- A __newindex refusing the read-only fields of instances of cls (the
-- keys of 'fields'), as Python's properties without a setter; other keys
-- are set as usual.  __index serves those fields from elsewhere, so an
-- instance never holds them and assigning one always comes here.
function args.read_only(cls, fields)
  return function(self, k, v)
    if fields[k] ~= nil then
      error("field '" .. tostring(k) .. "' of " .. cls.__name .. " is read-only", 2)
    end
    rawset(self, k, v)
  end
end

return args
