-- Attacks from plain Lua (no debug library) that forgery_spec (type
-- confusion) and fuzz_spec (random call sequences) do not make:
-- re-entrancy from finalizers, metamethods that raise or yield where eddy
-- reads a value, error values that cannot be printed, the coroutine
-- library against tasks, odd numbers, values crossing into executor
-- threads, objects outliving their loop.  Whatever the script does, the
-- outcome is a clear Lua error or asyncio's behaviour (STYLE: impossible
-- to crash from Lua).  Each attack runs in its own eddy process
-- (support.script), so a crash fails its case, not the runner.
local script = require "support.script"

local run = script.run

describe("adversarial scripts", function()
  describe("a value eddy reads twice", function()
    it("pass_fds whose __index gives another descriptor at each read: C reads each once", function()
      -- Each element used to be read once to check it and once more to
      -- use it: a descriptor of 10^6 the second time wrote past the
      -- child's stdio array (a heap overflow).
      run [[
local reads = 0
local fds = setmetatable({}, {
  __len = function() return 1 end,
  __index = function(_, i)
    if i ~= 1 then return nil end
    reads = reads + 1
    return reads <= 2 and 3 or 1000000  -- ipairs' read, then C's
  end})
eddy.run(function()
  local loop = eddy.get_running_loop()
  local exited = loop:create_future()
  local tr = loop:subprocess_exec(function()
    return {process_exited = function() exited:set_result(true) end}
  end, "true", {pass_fds = fds})
  eddy.wait_for(exited, 10)
  assert(tr:get_returncode() == 0)
  tr:close()
end)
print("ok")
]]
    end)

    it("pass_fds that a finalizer changes during the spawn: one value is used or refused", function()
      run [[
local fds = {3}
eddy.run(function()
  local loop = eddy.get_running_loop()
  for _ = 1, 50 do
    setmetatable({}, {__gc = function() fds[1] = 1000000 end})
    local exited = loop:create_future()
    local ok, err = pcall(loop.subprocess_exec, loop, function()
      return {process_exited = function() exited:set_result(true) end}
    end, "true", {pass_fds = fds})
    if ok then
      eddy.wait_for(exited, 10)
      err:close()
    else
      assert(tostring(err):match("1000000 is not a descriptor in 3..4095"), tostring(err))
    end
    fds[1] = 3
  end
end)
print("ok")
]]
    end)
  end)
end)
