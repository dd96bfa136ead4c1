-- The event loop: scheduling, timers, running and stopping (API.md §2-4).
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async

describe("loop scheduling", function()
  it("runs call_soon callbacks FIFO with their arguments", async(function(loop)
    local seen = {}
    for i = 1, 5 do loop:call_soon(function(a, b) seen[#seen + 1] = a .. b end, i, "x") end
    eddy.sleep(0)
    eddy.sleep(0)
    assert.same({"1x", "2x", "3x", "4x", "5x"}, seen)
  end))
end)
