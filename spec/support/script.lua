-- A Lua script run in its own eddy process, for the specs that try to
-- crash eddy (forgery_spec, adversarial_spec): a crash fails the case, not
-- the runner.  The script starts with `local eddy = require 'eddy'` and
-- a helper, raises(pattern, f, ...): pcall(f, ...) must fail with an
-- error whose text matches 'pattern'.
local cli = require "cli_helper"
local assert = require "luassert"

local script = {}

local PRELUDE = [[
local eddy = require 'eddy'
local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "no error")
  assert(tostring(err):match(pattern), tostring(err))
end
]]

-- Run 'source' in a fresh eddy (args: the script's arguments, quoted);
-- returns {code =, out =, err =} after checking that no sanitizer spoke.
function script.exec(source, args)
  local path = cli.tempfile(PRELUDE .. source, ".lua")
  local r = cli.eddy(cli.q(path) .. " " .. (args or ""))
  assert.is_nil(r.err:match("Sanitizer") or r.err:match("runtime error"), r.err)
  return r
end

-- The script must exit cleanly having printed "ok" (once every check it
-- makes passed).
function script.run(source)
  local r = script.exec(source)
  assert.same({code = 0, out = "ok\n"}, {code = r.code, out = r.out}, r.err)
end

return script
