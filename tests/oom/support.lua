-- What the scenarios of tests/oom_host.c share: support.run(main) runs
-- main in eddy.run, recording the first error that reached the loop's
-- exception handler (a callback, a protocol method that raised); that one
-- is raised at the end, before main's own error, which it may explain (a
-- result that never came).  Every wait in a scenario is bounded.
local eddy = require "eddy"
local support = {}
local trace = os.getenv("OOM_TRACE") -- set: print what the handler gets

function support.run(main)
  local first
  local ok, err = pcall(eddy.run, function()
    eddy.get_running_loop():set_exception_handler(function(_, context)
      if trace then io.stderr:write(tostring(context.message), ": ", tostring(context.exception), "\n") end
      first = first or context.exception or context.message
    end)
    return main()
  end)
  if first ~= nil then error(first, 0) end
  if not ok then error(err, 0) end
end

-- local guard <close> = support.closer(), then guard[1] = transport: closes
-- it when the scope ends, also by an error, before a server declared
-- earlier closes and waits for its connections (as asyncio's
-- Server.wait_closed, for ever while one stays open).  Made before the
-- connection: storing into its one slot allocates nothing, so no failing
-- allocation comes between the connection and its guard.
local closer = {__close = function(guard) if guard[1] then guard[1]:close() end end}
function support.closer()
  return setmetatable({false}, closer)
end

-- local _ <close> = support.closing(transport): the same for a transport
-- at hand; with no memory for the guard, it is closed at once and the
-- error raised.
function support.closing(obj)
  local ok, guard = pcall(support.closer)
  if not ok then
    obj:close()
    error(guard, 0)
  end
  guard[1] = obj
  return guard
end

return support
