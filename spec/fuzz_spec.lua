-- tools/fuzz/api_fuzz.lua for a fixed set of seeds: random sequences of
-- calls on live objects of every kind must end with no crash, sanitizer
-- report, hang, unclear error or unbalanced handle count.  A long
-- campaign: docs/testing.md.
local tls = require "support.tls"
local tmp = require "support.tmp"

local BINARY = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
if BINARY:sub(1, 1) ~= "/" then BINARY = os.getenv("PWD") .. "/" .. BINARY end
local SEEDS = {1, 2, 3, 4}
local STEPS = 100

describe("tools/fuzz/api_fuzz.lua", function()
  for _, seed in ipairs(SEEDS) do
    it(("seed %d, %d steps: no finding"):format(seed, STEPS), function()
      -- from a scratch directory: hostile strings become relative socket paths
      local dir = tmp.path()
      assert(os.execute("mkdir " .. dir))
      local cmd = ("root=$(pwd); cd %s && FUZZ_CERTS=%s timeout 60 %s "
                   .. "\"$root/tools/fuzz/api_fuzz.lua\" %d %d 2>&1 </dev/null")
                  :format(dir, tls.dir(), BINARY, seed, STEPS)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      local ok, _, code = p:close()
      os.execute("rm -rf " .. dir)
      assert(ok and out:find(("ok %d %d: 0 findings"):format(seed, STEPS), 1, true),
             ("exit %s; rerun: %s tools/fuzz/api_fuzz.lua %d %d\n%s")
               :format(tostring(code), BINARY, seed, STEPS, out:sub(-3000)))
    end)
  end
end)
