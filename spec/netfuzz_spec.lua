-- Hostile network peers (tools/fuzz/net_fuzz.py against
-- tools/fuzz/net_target.lua): a fixed set of seeds must end with no
-- finding, and what the fuzzer found, one case each.  A long campaign:
-- docs/testing.md.
local tls = require "support.tls"

local BINARY = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
if BINARY:sub(1, 1) ~= "/" then BINARY = os.getenv("PWD") .. "/" .. BINARY end
local SEEDS = {1, 2}
local CONNS = 60

teardown(function() tls.cleanup() end)

describe("tools/fuzz/net_fuzz.py", function()
  for _, seed in ipairs(SEEDS) do
    it(("seed %d, %d connections: no finding"):format(seed, CONNS), function()
      local cmd = ("FUZZ_CERTS=%s timeout 120 python3 tools/fuzz/net_fuzz.py %s %d %d 2>&1 </dev/null")
                  :format(tls.dir(), BINARY, seed, CONNS)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      local ok, _, code = p:close()
      assert(ok and out:find(("ok %d %d: 0 findings"):format(seed, CONNS), 1, true),
             ("exit %s; rerun: python3 tools/fuzz/net_fuzz.py %s %d %d\n%s")
               :format(tostring(code), BINARY, seed, CONNS, out:sub(-3000)))
    end)
  end
end)
