-- Loaded by busted before every spec file (tools/run-tests.sh).
-- Each spec runs its async bodies on a fresh loop (eddy.test.async), which
-- asserts that the loop freed every handle it opened.
package.path = "spec/?.lua;" .. package.path

-- Temporary files made through spec/support/tmp.lua go when their test ends.
local busted = require "busted"
local tmp = require "support.tmp"
busted.subscribe({"test", "end"}, function()
  tmp.cleanup()
  return nil, true
end)
