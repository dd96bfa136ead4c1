-- Hostile network peers (tools/fuzz/net_fuzz.py against
-- tools/fuzz/net_target.lua): a fixed set of seeds must end with no
-- finding, and what the fuzzer found, one case each.  A long campaign:
-- docs/testing.md.
local eddy = require "eddy"
local async = require("eddy.test").async
local fuzzrun = require "support.fuzzrun"
local net = require "support.net"
local tls = require "support.tls"

local BINARY = fuzzrun.binary
local SEEDS = {1, 2}
local CONNS = 60

teardown(function() tls.cleanup() end)

describe("tools/fuzz/net_fuzz.py", function()
  for _, seed in ipairs(SEEDS) do
    it(("seed %d, %d connections: no finding"):format(seed, CONNS), function()
      local cmd = ("FUZZ_CERTS=%s timeout 120 python3 tools/fuzz/net_fuzz.py %s %d %d 2>&1 </dev/null")
                  :format(tls.dir(), BINARY, seed, CONNS)
      fuzzrun.expect_no_findings(cmd, seed, CONNS,
        ("python3 tools/fuzz/net_fuzz.py %s %d %d"):format(BINARY, seed, CONNS))
    end)
  end
end)

-- An accepted non-blocking socket whose peer resets the connection: the
-- peer (a transport that stops reading) aborts with data unread.  Returns
-- the accepted socket once the reset has come, or with 'early' false, a
-- function that sends it.
local function reset_by_peer(loop, early)
  local listener = net.listening_socket()
  local peer = loop:create_connection(function() return {} end, "127.0.0.1",
                                      listener:getsockname()[2])
  local conn = loop:sock_accept(listener)
  listener:close()
  peer:pause_reading()
  loop:sock_sendall(conn, "unread")
  local function reset()
    eddy.sleep(0.05)  -- the data is in the peer's socket
    peer:abort()
  end
  if early then
    reset()
    eddy.sleep(0.05)
  end
  return conn, reset
end

describe("found by tools/fuzz/net_fuzz.py", function()
  -- src/sockops.c moved the error into the to-be-closed slot of the
  -- receive buffer (4096 > LUAL_BUFFERSIZE): Lua then called the
  -- error's __close, the exception handler got "attempt to call a nil
  -- value" and the task never woke up
  it("bad input: sock_recv of 4096 bytes raises ConnectionResetError when the peer resets, waiting",
     async(function(loop)
    local conn, reset = reset_by_peer(loop, false)
    loop:create_task(reset)
    local ok, err = pcall(eddy.wait_for, function() return loop:sock_recv(conn, 4096) end, 5)
    conn:close()
    assert.is_false(ok)
    assert.is_true(eddy.errors.is(err, eddy.errors.ConnectionResetError), tostring(err))
  end))

  it("bad input: sock_recv of 4096 bytes raises ConnectionResetError when the peer has reset",
     async(function(loop)
    local conn = reset_by_peer(loop, true)
    local ok, err = pcall(loop.sock_recv, loop, conn, 4096)
    conn:close()
    assert.is_false(ok)
    assert.is_true(eddy.errors.is(err, eddy.errors.ConnectionResetError), tostring(err))
  end))
end)
