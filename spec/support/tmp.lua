-- Temporary paths for specs.  Each is removed when the test that asked
-- for it ends (spec/helper.lua subscribes tmp.cleanup to busted's "test
-- end"), so a run leaves nothing in the temporary directory.
local tmp = {}

local made = {}

-- A fresh path that does not exist yet, ending with 'suffix' (a socket
-- path, a script name).
function tmp.path(suffix)
  local base = os.tmpname()  -- creates the file: its name is ours
  os.remove(base)
  local path = base .. (suffix or "")
  made[#made + 1] = path
  return path
end

-- A fresh file holding 'content'; returns its path.
function tmp.file(content, suffix)
  local path = tmp.path(suffix)
  local f = assert(io.open(path, "wb"))
  f:write(content or "")
  f:close()
  return path
end

function tmp.cleanup()
  for _, path in ipairs(made) do os.remove(path) end
  made = {}
end

return tmp
