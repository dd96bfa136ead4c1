-- tools/fuzz/api_fuzz.lua for a fixed set of seeds: random sequences of
-- calls on live objects of every kind must end with no crash, sanitizer
-- report, hang, unclear error or unbalanced handle count.  A long
-- campaign: docs/testing.md.
local fuzzrun = require "support.fuzzrun"
local tls = require "support.tls"
local tmp = require "support.tmp"

local BINARY = fuzzrun.binary
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
      local ok, err = pcall(fuzzrun.expect_no_findings, cmd, seed, STEPS,
                            ("%s tools/fuzz/api_fuzz.lua %d %d"):format(BINARY, seed, STEPS))
      os.execute("rm -rf " .. dir)
      assert(ok, err)
    end)
  end
end)
