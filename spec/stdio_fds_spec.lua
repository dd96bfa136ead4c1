-- Descriptors 0-2 (src/fds.c): libuv aborts the process when it closes one
-- of them, and the kernel hands a closed one to the next socket.  Each
-- case runs in its own eddy process, so an abort fails the test.
local cli = require "cli_helper"
local eddy = require "eddy"

after_each(cli.cleanup)

-- Run 'script' (eddy required as 'eddy') under 'shell' (a format with one
-- %s for the eddy command line); it must exit 0 having written "ok" on
-- stderr (stdout may be closed).
local function run(script, shell)
  local path = cli.tempfile("local eddy = require 'eddy'\n" .. script, ".lua")
  local cmd = cli.q(cli.binary) .. " " .. cli.q(path)
  local r = cli.sh(shell and shell:format(cmd) or cmd)
  assert.same({code = 0, err = "ok\n"}, {code = r.code, err = r.err})
  return r
end

-- A round trip on loopback, then eddy.run closes the loop.
local ECHO = [[
local function echo(reader, writer)
  writer:write(reader:read(100))
  writer:close()
end
eddy.run(function()
  local server = eddy.start_server(echo, "127.0.0.1", 0)
  local reader, writer = eddy.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
  writer:write("ping")
  assert(reader:read(100) == "ping")
  writer:close()
  server:close()
  server:wait_closed()
end)
]]

describe("standard descriptors", function()
  it("started with 0 and 1 closed, eddy's sockets and loop get descriptors above 2", function()
    run([[
local s = eddy.socket.socket()
assert(s:fileno() > 2, "socket got fd " .. s:fileno())
s:close()
]] .. ECHO .. [[
io.stderr:write("ok\n")
]], "sh -c 'exec 0<&- 1>&-; exec %s'")
  end)

  it("only a socket can be wrapped: libuv's epoll descriptor is refused", function()
    run([[
local pid = eddy.signal.getpid()
local listing = io.popen("ls -l /proc/" .. pid .. "/fd"):read("a")
local loop = eddy.get_event_loop()  -- makes the epoll descriptor
listing = io.popen("ls -l /proc/" .. pid .. "/fd"):read("a")
local epfd = tonumber(listing:match("(%d+) %-> anon_inode:%[eventpoll%]"))
assert(epfd, listing)
local ok, err = pcall(eddy.socket.socket, eddy.socket.AF_INET, eddy.socket.SOCK_STREAM, 0, epfd)
assert(not ok and eddy.errors.is(err, eddy.errors.OSError), tostring(err))
loop:close()
]] .. ECHO .. [[
io.stderr:write("ok\n")
]])
  end)

  it("a transport adopting stdin as its socket closes it for real (inetd style)", function()
    local listener = eddy.socket.socket()
    listener:bind({"127.0.0.1", 0})
    listener:listen(1)
    local port = listener:getsockname()[2]
    run([[
local loop = eddy.new_event_loop()
local Proto = {}
function Proto.connection_made(_, tr) Proto.transport = tr end
function Proto.connection_lost() Proto.lost = true end
local tr = loop:run_until_complete(loop:create_task(function()
  return (loop:connect_accepted_socket(function() return Proto end,
                                       eddy.socket.socket(nil, nil, nil, 0)))
end))
-- The socket moved above 2; descriptor 0 now reads /dev/null.
local link = io.popen("readlink /proc/" .. eddy.signal.getpid() .. "/fd/0"):read("l")
assert(link == "/dev/null", link)
tr:write("hello from stdin")
tr:close()
loop:run_until_complete(loop:create_task(function()
  while not Proto.lost do eddy.sleep(0.01) end
end))
loop:close()
io.stderr:write("ok\n")
]], "bash -c 'exec %s <>/dev/tcp/127.0.0.1/" .. port .. "'")
    local conn = listener:accept()
    assert.equal("hello from stdin", conn:recv(100))
    assert.equal("", conn:recv(100))
    conn:close()
    listener:close()
  end)
end)
