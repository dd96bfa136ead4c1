-- A UNIX socket streams server and a client.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
local path = os.tmpname()
os.remove(path)
local ok, err = pcall(support.run, function()
  local server <close> = eddy.start_unix_server(function(reader, writer)
    writer:write(reader:readline())
    writer:close()
  end, path)
  local guard <close> = support.closer()
  local reader, writer = eddy.open_unix_connection(path)
  guard[1] = writer
  writer:write("over unix\n")
  assert(eddy.wait_for(function() return reader:readline() end, 2) == "over unix\n")
  writer:close()
  writer:wait_closed()
end)
os.remove(path)
if not ok then error(err, 0) end
