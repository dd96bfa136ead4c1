-- Run a child with pipes both ways and read its output
-- (docs/subprocess.md).
local eddy = require "eddy"
local PIPE = eddy.subprocess.PIPE

eddy.run(function()
  local p = eddy.create_subprocess_exec("tr", "a-z", "A-Z",
                                        {stdin = PIPE, stdout = PIPE})
  local out = p:communicate("hello from eddy\n")
  print(out, p.returncode)  --> HELLO FROM EDDY   0
end)
