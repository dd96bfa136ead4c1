-- A child process with pipes: communicate, wait.
local eddy = require "eddy"
local sp = require "eddy.subprocess"
local support = dofile "tests/oom/support.lua"
support.run(function()
  local proc = eddy.create_subprocess_exec("cat", {stdin = sp.PIPE, stdout = sp.PIPE})
  local out = eddy.wait_for(function() return proc:communicate("through cat") end, 5)
  assert(out == "through cat" and proc.returncode == 0)
  local sh = eddy.create_subprocess_shell("exit 3")
  assert(eddy.wait_for(function() return sh:wait() end, 5) == 3)
end)
