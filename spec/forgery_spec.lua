-- Type confusion from plain Lua (no debug library): whatever a script does
-- with the tables it can reach, the C core never reads one object as
-- another (STYLE: impossible to crash from Lua).  Each forgery runs in its
-- own `eddy -e` process, so a crash fails its test and not the runner; a
-- script prints "ok" once every check it makes passed.
local script = require "support.script"
local cli = require "cli_helper"

after_each(cli.cleanup)

local run = script.run

local PRELUDE = [[
local iomt = getmetatable(io.stdout)
]]

-- Opens an eddy.run whose function has a datagram transport 'd' and a
-- socket 'sock' (the script goes on in that function).
local WITH_DGRAM_AND_SOCKET = [[
local S = eddy.socket
eddy.run(function()
  local loop = eddy.get_running_loop()
  local d = loop:create_datagram_endpoint(function() return {} end, {"127.0.0.1", 0})
  local sock = S.socket(S.AF_INET, S.SOCK_DGRAM)
]]

describe("forgeries", function()
  it("copying a future's metatable entries into a file's does not make it a Future", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
local f = loop:create_future()
-- Every non-metamethod entry of every metatable a future may show.
for _, mt in ipairs {getmetatable(f), eddy.Future, eddy.Task} do
  if type(mt) == "table" then
    for k, v in pairs(mt) do
      if type(k) ~= "string" or not k:match("^__") then iomt[k] = v end
    end
  end
end
assert(not eddy.isfuture(io.stdout))
raises("Future expected", f.done, io.stdout)
raises("Future expected", f.cancel, io.stdout)
raises("Future expected", f.add_done_callback, io.stdout, print)
-- A class handed to _future_new is copied, not given to the future: the
-- file's metatable does not become a future's.
local g = eddy._core._future_new(loop, iomt)
assert(eddy.isfuture(g) and not eddy.isfuture(io.stdout))
raises("Future expected", f.done, io.stdout)
-- Task's finalizer is reachable (eddy.Task) and checks what it gets.
raises("eddy.Task expected", eddy.Task.__gc, io.stdout)
raises("eddy.Task expected", eddy.Task.__gc, f)
raises("eddy.Task expected", eddy.Task.__gc, setmetatable({}, eddy.Task))
-- getmetatable shows a name only, no C function to call with a forgery.
local mt = getmetatable(f)
assert(mt.__name == "eddy.Future" and mt.__gc == nil and mt.__index == nil)
f:set_exception("boom")
assert(getmetatable(f).__gc == nil)
f:exception()
loop:close()
print("ok")
]])
  end)

  it("copying a transport's metatable entries into a file's does not make it a transport", function()
    run(PRELUDE .. [[
local S = eddy.socket
eddy.run(function()
  local loop = eddy.get_running_loop()
  local a, b = S.socketpair()
  local tr = loop:connect_accepted_socket(function() return {} end, a)
  for k, v in pairs(getmetatable(tr)) do
    if type(k) ~= "string" or not k:match("^__") then iomt[k] = v end
  end
  for k, v in pairs(eddy._core.StreamTransport) do
    if type(k) ~= "string" or not k:match("^__") then iomt[k] = v end
  end
  raises("transport expected", tr.write, io.stdout, "x")
  raises("transport expected", tr.close, io.stdout)
  local mt = getmetatable(tr)
  assert(mt.__name == "eddy.UnixTransport" and mt.__gc == nil)
  tr:close()
  b:close()
end)
print("ok")
]])
  end)

  it("copying a datagram transport's or a socket's metatable entries into a file's makes it neither",
     function()
    run(PRELUDE .. WITH_DGRAM_AND_SOCKET .. [[
  for _, mt in ipairs {getmetatable(d), getmetatable(sock)} do
    for k, v in pairs(mt) do
      if type(k) ~= "string" or not k:match("^__") then iomt[k] = v end
    end
  end
  raises("DatagramTransport expected", d.sendto, io.stdout, "x", {"127.0.0.1", 9})
  raises("DatagramTransport expected", d.close, io.stdout)
  raises("eddy.socket expected", sock.fileno, io.stdout)
  raises("eddy.socket expected", loop.sock_recv, loop, io.stdout, 10)
  assert(getmetatable(d).__name == "eddy.DatagramTransport" and getmetatable(d).__index == nil)
  d:close()
  sock:close()
end)
print("ok")
]])
  end)

  -- Beyond plain Lua: the debug library can give any userdata another's
  -- metatable, here an eddy.Buffer, whose bytes Lua code may fill.
  it("a userdata given a transport's or a socket's metatable by the debug library is neither, nor finalized as one",
     function()
    run(PRELUDE .. WITH_DGRAM_AND_SOCKET .. [[
  local a, b = S.socketpair()
  local tr = loop:connect_accepted_socket(function() return {} end, a)
  local buf = eddy.Buffer(4096)
  local bufmt = debug.getmetatable(buf)
  local cases = {
    {tr, "transport expected", "write", "x"},
    {tr, "transport expected", "close"},
    {d, "DatagramTransport expected", "sendto", "x", {"127.0.0.1", 9}},
    {sock, "eddy.socket expected", "fileno"},
  }
  for _, case in ipairs(cases) do
    local obj, name = case[1], case[3]
    local method = obj[name]
    debug.setmetatable(buf, debug.getmetatable(obj))
    raises(case[2], method, buf, table.unpack(case, 4))
    debug.setmetatable(buf, bufmt)  -- its finalizer is the Buffer's again
  end
  -- Nor does the transports' finalizer read a Buffer full of 0xff bytes.
  local c, e = S.socketpair()
  e:setblocking(false)
  c:send(string.rep("\255", 4096))
  assert(loop:sock_recv_into(e, buf) == 4096)
  debug.setmetatable(buf, debug.getmetatable(tr))
  buf = nil
  collectgarbage()
  collectgarbage()
  c:close()
  e:close()
  tr:close()
  d:close()
  sock:close()
  b:close()
end)
print("ok")
]])
  end)

  it("a Loop's slots and metatable do not make a table or a file a loop", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
local f = loop:create_future()
local t0 = loop:time()
loop[1] = io.stdout            -- the core used to live here
assert(loop:time() >= t0)
loop[1] = nil
collectgarbage(); collectgarbage()
assert(not f:done())           -- the core is still there
raises("Loop expected", eddy.Loop.time, {io.stdout})
raises("Loop expected", eddy.Loop.call_soon, {io.stdout}, print)
raises("Loop expected", eddy.Loop.add_reader, {io.stdout}, 0, print)
local fake = setmetatable({io.stdout}, getmetatable(loop))
raises("Loop expected", eddy.Loop.time, fake)
assert(getmetatable(loop).__name == "eddy.Loop" and getmetatable(loop).__index == nil)
raises("protected metatable", setmetatable, loop, nil)
loop:close()
print("ok")
]])
  end)

  it("a StreamReader's read(n), called on anything but a reader (a Buffer given its metatable by the debug library too), raises", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
local reader = eddy.StreamReader(nil, loop)
local read = reader.read
local others = {io.stdout, {}, loop:create_future(), loop,
                setmetatable({}, getmetatable(reader))}
for _, v in ipairs(others) do
  raises("StreamReader expected", read, v, 10)  -- read(n)'s fast path
  raises("StreamReader expected", read, v)
end
reader:feed_data("abc")
assert(read(reader, 10) == "abc")
-- Beyond plain Lua: a Buffer given the reader's metatable by the debug
-- library is no reader either (its bytes used to be read as one).
local buf = eddy.Buffer(4096)
local bufmt = debug.getmetatable(buf)
debug.setmetatable(buf, debug.getmetatable(reader))
raises("StreamReader expected", read, buf, 10)
raises("StreamReader expected", reader.feed_data, buf, "x")
raises("StreamReader expected", reader.at_eof, buf)
debug.setmetatable(buf, bufmt)
loop:close()
print("ok")
]])
  end)

  it("a file in the loop's fields does not pass for a task (all_tasks)", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
loop:_fields().tasks = {[io.stdout] = true}
local t = loop:create_task(function() eddy.sleep(0) end)
local all = eddy.all_tasks(loop)
assert(#all == 1 and all[1] == t)
loop:run_until_complete(t)
loop:close()
print("ok")
]])
  end)

  it("a file in the loop's fields does not pass for an fd watcher", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
local a, b = eddy.socket.socketpair()
loop:_fields().fd_watchers = {[a:fileno()] = io.stdout}
assert(loop:remove_reader(a) == false)
loop:add_reader(a, print)
assert(loop:remove_reader(a) == true)
a:close(); b:close()
loop:close()
print("ok")
]])
  end)

  it("a file in the loop's fields does not pass for a signal watcher", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
local SIGUSR1 = eddy.signal.SIGUSR1
loop:_fields().signal_handlers = {[SIGUSR1] = io.stdout}
assert(loop:remove_signal_handler(SIGUSR1) == false)
loop:add_signal_handler(SIGUSR1, print)
assert(loop:remove_signal_handler(SIGUSR1) == true)
loop:close()
print("ok")
]])
  end)

  it("a file in the loop's fields does not pass for the executor's mailbox or executor", function()
    run(PRELUDE .. [[
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local fields = loop:_fields()
fields.executor_mailbox = io.stdout
assert(loop:run_until_complete(loop:run_in_executor(nil, function() return 42 end)) == 42)
fields.executor_mailbox = io.stdout
fields.default_executor = io.stdout
raises("not a ThreadPoolExecutor", loop.run_in_executor, loop, nil, print)
raises("not a ThreadPoolExecutor", loop.run_until_complete, loop,
       loop:create_task(eddy.to_thread, print))
fields.default_executor = nil
loop:close()
print("ok")
]])
  end)

  it("a server's Lua fields hold nothing C reads without checking it", function()
    run(PRELUDE .. [[
eddy.run(function()
  local loop = eddy.get_running_loop()
  local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
  local fields = srv:_fields()
  fields.listeners = {io.stdout}
  fields.waiters = {io.stdout}
  assert(#srv.sockets == 1)
  srv:close()
  srv:wait_closed()
  assert(getmetatable(srv).__name == "eddy.Server" and getmetatable(srv).__index == nil)
end)
print("ok")
]])
  end)

  it("getmetatable on eddy's C objects gives their name and no C function", function()
    run(PRELUDE .. [[
local S = eddy.socket
local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local ex = eddy.ThreadPoolExecutor(1)
local sock = S.socket()
local objs = {
  ["eddy.Future"] = loop:create_future(),
  ["eddy.Task"] = loop:create_task(function() end),
  ["eddy.Loop"] = loop,
  ["eddy.socket"] = sock,
  ["eddy.ThreadPoolExecutor"] = ex,
}
for name, v in pairs(objs) do
  local mt = getmetatable(v)
  assert(type(mt) == "table" and mt.__name == name, name)
  for k, x in pairs(mt) do assert(k == "__name", name .. " shows " .. tostring(k)) end
end
loop:run_until_complete(objs["eddy.Task"])
ex:shutdown(true)
sock:close()
loop:close()
print("ok")
]])
  end)
end)
