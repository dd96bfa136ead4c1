-- `require "eddy"` from the stock lua5.4 interpreter (eddy.so), as TAP.
local n = 0
local function check(cond, what)
  n = n + 1
  print((cond and "ok " or "not ok ") .. n .. " - " .. what)
end

local raw_resume = coroutine.resume  -- saved before eddy replaces it
-- Required first, a part loads eddy (Lua's all-in-one searcher finds
-- luaopen_eddy_socket in eddy.so).
local sok, socket = pcall(require, "eddy.socket")
check(sok and type(socket) == "table" and socket.AF_INET == 2,
      "require 'eddy.socket' before require 'eddy'")
local ok, eddy = pcall(require, "eddy")
check(ok and type(eddy) == "table", "require 'eddy' loads eddy.so")
if not ok then print(eddy) os.exit(1) end
check(eddy.socket == socket and require "eddy.signal" == eddy.signal,
      "the parts are the module's fields")

local r1, r2 = eddy.run(function(a)
  eddy.sleep(0.01)
  local x, y = eddy.gather(function() return a * 2 end, function() eddy.sleep(0) return "y" end)
  return x, y
end, 21)
check(r1 == 42 and r2 == "y", "eddy.run runs a task with sleep and gather")

local loop = eddy.get_event_loop()
local fired = false
loop:call_later(0.01, function() fired = true end)
check(eddy.sleep(0.02, "v") == "v" and fired, "top-level suspension runs the default loop")

local fut = loop:create_future()
loop:call_soon(fut.set_result, fut, 7)
check(loop:run_until_complete(fut) == 7, "run_until_complete on a future")
loop:close()
check(loop:is_closed(), "the loop closes")

-- The saved coroutine.resume shows eddy's suspension tag to Lua code; a
-- task yielding it with something that is not a future must not have that
-- read as one.
local co = coroutine.create(function() eddy.sleep(0) end)
local leaked, result = pcall(eddy.run, function()
  local _, tag = raw_resume(co)
  coroutine.yield(tag, io.stdout)
  return "survived"
end)
check(leaked and result == "survived", "a leaked tag yielded with a file is not taken for a future")

-- Real work through eddy.so (API.md §12): in one eddy.run a server and its
-- client, a subprocess fed through its stdin, a timer and a thread job.
local PIPE = eddy.subprocess.PIPE
local reply, output, status, ticked, doubled = eddy.run(function()
  local running = eddy.get_running_loop()
  local tick = false
  running:call_later(0.01, function() tick = true end)
  local server = eddy.start_server(function(r, w) w:write(r:readline():upper()) w:close() end,
                                   "127.0.0.1", 0)
  local r, w = eddy.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
  w:write("ping\n")
  local got = r:read()
  w:close()
  server:close()
  server:wait_closed()
  local p = eddy.create_subprocess_exec("sh", "-c", "read x; echo got $x; exit 3",
                                        {stdin = PIPE, stdout = PIPE})
  local out = p:communicate("data\n")
  eddy.sleep(0.02)
  return got, out, p.returncode, tick, eddy.to_thread(function(n) return n * 2 end, 21)
end)
check(reply == "PING\n" and output == "got data\n" and status == 3 and ticked and doubled == 42,
      "§12 eddy.run from stock lua: a server and its client, a subprocess, a timer, a thread job")

-- §10: in a host other than eddy's executable too, a send to a peer that
-- has gone raises BrokenPipeError instead of killing the process by
-- SIGPIPE, as Python's socket (eddy ignores SIGPIPE as Python does, and
-- sends with MSG_NOSIGNAL besides).
do
  local a, b = socket.socketpair()
  b:close()
  local sent, err = pcall(a.send, a, "x")
  check(not sent and eddy.errors.is(err, eddy.errors.BrokenPipeError) and err.errno == 32,
        "§10 send to a closed socketpair peer: BrokenPipeError, no SIGPIPE death")
  a:close()
end

-- Work left on a loop nobody runs (stock lua does not drain): a server, a
-- far timer, a pending task.  lua_close closes it all; the process must
-- end cleanly (tools/run-tests.sh checks the status).
local left = eddy.new_event_loop()
eddy.set_event_loop(left)
left:run_until_complete(function()
  leftover_server = left:create_server(function() return {} end, "127.0.0.1", 0)
end)
left:call_later(100, print, "never")
left:create_task(eddy.sleep, 100)
check(leftover_server:is_serving(), "§12 work left open on a loop at the end of a stock lua script")
