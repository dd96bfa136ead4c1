-- ContextVar in tasks and callbacks; copy_context and Context:run.
local eddy = require "eddy"
local support = dofile "tests/oom/support.lua"
local var = eddy.ContextVar("var", "default")
support.run(function()
  local loop = eddy.get_running_loop()
  var:set("main")
  local seen = loop:create_future()
  loop:call_soon(function() seen:set_result(var:get()) end)
  assert(eddy.wait_for(seen, 2) == "main")
  local t = loop:create_task(function() var:set("task") eddy.sleep(0) return var:get() end)
  assert(eddy.wait_for(t, 2) == "task" and var:get() == "main")
  local ctx = eddy.copy_context()
  assert(ctx:run(function() var:set("in ctx") return var:get() end) == "in ctx")
  assert(var:get() == "main")
end)
