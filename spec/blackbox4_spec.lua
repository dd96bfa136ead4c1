-- Black-box cases, fourth pass: written from /work/shared/API.md alone (and
-- lua.c's documented behaviour: Debian's lua5.4 is the reference) for the
-- section the first three passes left: §11, the executable and its REPL.
-- (§12, embedding from C, is tests/embed_host_test.c and
-- tests/stock_lua.lua.)  Every case runs the real binary as a subprocess;
-- every description cites the API.md section it checks.
local cli = require "cli_helper"
local q, eddy = cli.q, cli.eddy

local has_lua = cli.has("lua5.4")
local has_python = cli.has("python3")

-- Run 'args' under eddy and under lua5.4 with the same stdin and
-- environment; both results, the program's name in them made "PROG".
local function both(args, opts)
  local e = eddy(args, opts)
  local l = cli.sh("lua5.4 " .. args, opts)
  local function plain(r)
    local function strip(s)
      return (s:gsub(cli.binary:gsub("%p", "%%%0"), "PROG"):gsub("lua5%.4", "PROG"))
    end
    return {code = r.code, out = strip(r.out), err = strip(r.err)}
  end
  return plain(e), plain(l)
end

-- A script file holding 'source'; its quoted path.
local function script(source)
  return q(cli.tempfile(source, ".lua"))
end

-- The same, 'source' after two lines that set the locals eddy and loop
-- (the default loop).
local function loop_script(source)
  return script('local eddy = require "eddy"\nlocal loop = eddy.get_event_loop()\n' .. source)
end

describe("§11 options and arg, as lua.c's", function()
  before_each(function()
    if not has_lua then pending("lua5.4 is not installed") end
  end)

  it("§11 arg (negative indices for the interpreter and options, the script at 0) and the main "
     .. "chunk's ... are lua5.4's for every mix of options", function()
    if not has_lua then return end
    local show = script("io.write(#arg, ' ', select('#', ...), ' ', table.concat({...}, ','), '|')\n"
                        .. "for i = -6, #arg do io.write(i, '=', tostring(arg[i]), ' ') end print()")
    for _, args in ipairs {
      show, show .. " a 'b c' ''", "-W " .. show .. " -x", "-e 'x=1' -lstring " .. show .. " 1",
      "-lstring -e 'y=2' -- " .. show .. " --", "- a b", "-W -", "-E -W -e '' " .. show,
      "-e 'print(#arg, arg[0], ...)'", "-estring=nil -e 'print(arg[-1])'",
    } do
      local e, l = both(args, {stdin = "print('stdin', #arg, ...)"})
      assert.same(l, e, args)
    end
  end)

  it("§11 exit statuses and messages of failing chunks are lua5.4's byte for byte: syntax and "
     .. "runtime errors, error values that are no strings, os.exit's forms", function()
    if not has_lua then return end
    local syntax = script("local x = 1\nx = = 2\n")
    local runtime = script("local function f(t) return t.x.y end\nlocal function g() return f({}) end\ng()\n")
    for _, args in ipairs {
      syntax, runtime, "-e 'error(nil)'", "-e 'error(42)'", "-e 'error(true)'",
      "-e 'error(\"at level 0\", 0)'", "-e 'local function f() error(\"level 2\", 2) end f()'",
      "-e 'error(setmetatable({}, {__tostring = function() return \"custom!\" end}))'",
      "-e 'error(setmetatable({}, {__tostring = function() return 42 end}))'",
      "-e 'coroutine.wrap(function() error(\"in a coroutine\") end)()'",
      "-e 'os.exit(false)'", "-e 'os.exit(true)'", "-e 'os.exit(7)'", "-e 'os.exit(7.0)'",
      "-e 'os.exit(0, true)'", "-e 'os.exit(\"x\")'", "-e 'x=' " .. runtime,
      "-e 'print(1)' " .. syntax,
    } do
      local e, l = both(args)
      assert.same(l, e, args)
    end
  end)

  it("§11 LUA_INIT_5_4=@file runs first (a missing or failing file stops with lua5.4's message "
     .. "and status 1); -E ignores LUA_INIT*, LUA_PATH* and LUA_CPATH* together", function()
    if not has_lua then return end
    local init = cli.tempfile("print('init file', ...) x = 5", ".lua")
    local bad = cli.tempfile("error('init broke')", ".lua")
    local probe = "-e " .. q"print(x, package.path:find('NOPE') ~= nil, package.cpath:find('NOPE') ~= nil)"
    for _, env in ipairs {
      "LUA_INIT_5_4=@" .. q(init) .. " LUA_INIT='print(0)'",
      "LUA_INIT=@" .. q(init) .. " LUA_PATH_5_4='NOPE/?.lua' LUA_CPATH='NOPE/?.so'",
      "LUA_INIT_5_4=@/nonexistent/init.lua", "LUA_INIT=@" .. q(bad),
      "LUA_INIT_5_4='x = ' LUA_INIT='print(0)'",
    } do
      for _, args in ipairs {probe, "-E " .. probe} do
        local e, l = both(args, {env = env})
        assert.same(l, e, env .. " " .. args)
      end
    end
  end)
end)

describe("§11 -W", function()
  it("§11 -W turns on eddy's own warnings too: in debug mode (EDDY_DEBUG, §3) a writer dropped "
     .. "unclosed is reported; without -W nothing is", function()
    local drop = loop_script [[
local srv = eddy.start_server(function() end, "127.0.0.1", 0)
do local _, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2]) end
collectgarbage() collectgarbage()
srv:close()
print("end")]]
    local r = eddy("-W " .. drop, {env = "EDDY_DEBUG=1"})
    assert.same({code = 0, out = "end\n"}, {code = r.code, out = r.out})
    assert.matches("^Lua warning: eddy: unclosed <StreamWriter ", r.err)
    assert.same({code = 0, out = "end\n", err = ""}, eddy(drop, {env = "EDDY_DEBUG=1"}))
  end)
end)

describe("§11 -l", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)))
  end)
  after_each(function()
    os.execute("rm -rf " .. q(dir))
  end)
  local function path(args)
    return "-e " .. q("package.path = '" .. dir .. "/?.lua;' .. package.path") .. " " .. args
  end

  it("§11 -l mod-v2 sets the global mod, as Lua 5.4.6's lua.c (whose -l g=mod eddy takes); "
     .. "the module gets its full name as ...", function()
    cli.writefile(dir .. "/json-v2.lua", "return {name = ...}")
    local r = eddy(path("-l json-v2 -l j=json-v2 -e " ..
                        q"print(json.name, j == json, rawget(_G, 'json-v2'))"))
    assert.same({code = 0, out = "json-v2\ttrue\tnil\n", err = ""}, r)
  end)

  it("§11 a -l module whose main chunk suspends runs the default loop (top-level suspension): "
     .. "the tasks it starts progress before the next option runs", function()
    cli.writefile(dir .. "/warmup.lua", [[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
local t = loop:create_task(function() eddy.sleep(0) return "cache filled" end)
local stamp = eddy.sleep(0.02, (...) .. " loaded")
return {stamp = stamp, status = t:result(), running = loop:is_running()}]])
    local r = eddy(path("-l warmup -e " .. q"print(warmup.stamp, warmup.status, warmup.running)"))
    assert.same({code = 0, out = "warmup loaded\tcache filled\tfalse\n", err = ""}, r)
  end)

  it("§11 LUA_INIT may suspend too: its task's result is there for -e, and a callback it scheduled "
     .. "is drained after the script", function()
    local init = "eddy = require 'eddy' local loop = eddy.get_event_loop() " ..
                 "ready = loop:create_task(function() return eddy.sleep(0, 'init task') end) " ..
                 "eddy.sleep(0.02) loop:call_soon(print, 'init timer')"
    local r = eddy("-e " .. q"print(ready:result(), ready:done())", {env = "LUA_INIT=" .. q(init)})
    assert.same({code = 0, out = "init task\ttrue\ninit timer\n", err = ""}, r)
  end)
end)

describe("§11 the main chunk", function()
  it("§11 - runs stdin as the main chunk with its arguments as ...; it may suspend, and the "
     .. "default loop is drained after it", function()
    local r = eddy("- one two", {stdin = [[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
print("slept", coroutine.isyieldable(), eddy.sleep(0.01, arg[0], #arg))
loop:call_later(0.01, print, "drained", ...)
]]})
    assert.same({code = 0, out = "slept\tfalse\t-\t2\ndrained\tone\ttwo\n", err = ""}, r)
  end)

  it("§11 top-level suspension: a producer in the main chunk fills a bounded queue (put suspends "
     .. "when full), a consumer task empties it, join() waits for the last task_done", function()
    local r = eddy(loop_script [[
local q = eddy.Queue(2)
local log = {}
local consumer = loop:create_task(function()
  while true do
    local item = q:get()
    eddy.sleep(0.002)
    log[#log + 1] = item
    q:task_done()
  end
end)
for i = 1, 6 do
  q:put(i)  -- suspends while two items wait: the consumer runs meanwhile
  assert(q:qsize() <= 2)
end
print("all put", #log >= 3)
q:join()
print("joined", table.concat(log, ","))
print("main thread", select(2, coroutine.running()), loop:is_running())
consumer:cancel()  -- else a live task: the drain would wait for it
]])
    assert.same({code = 0, err = "",
                 out = "all put\ttrue\njoined\t1,2,3,4,5,6\nmain thread\ttrue\tfalse\n"}, r)
  end)

  it("§11 between two top-level suspensions no loop runs: a task advances only while the chunk "
     .. "waits, and finishes in the drain", function()
    local r = eddy(loop_script [[
local steps = 0
loop:create_task(function()
  for _ = 1, 1000 do steps = steps + 1 eddy.sleep(0) end
  print("task finished", steps)
end)
local before = steps
for _ = 1, 1e5 do end  -- plain Lua: nothing else runs
print("no loop", steps == before, before)
eddy.sleep(0)
print("one wait", steps > 0 and steps < 1000)
]])
    assert.same({code = 0, err = "", out = "no loop\ttrue\t0\none wait\ttrue\ntask finished\t1000\n"}, r)
  end)

  it("§11 a server made at the top level answers a client subprocess while the chunk waits "
     .. "for that process (communicate), then the server closes and nothing is left", function()
    local r = eddy(script([[
local eddy = require "eddy"
local server = eddy.start_server(function(reader, writer)
  local line = reader:readline()
  writer:write("hello, " .. line)
  writer:close()
end, "127.0.0.1", 0)
local port = server.sockets[1]:getsockname()[2]
local client = ("local r, w = require('eddy').open_connection('127.0.0.1', %d) "
                .. "w:write('child\\n') io.write(r:read())"):format(port)
local p = eddy.create_subprocess_exec(arg[-1], "-e", client,
                                      {stdout = eddy.subprocess.PIPE})
local out = p:communicate()
print(out:gsub("\n", "|"), p.returncode)
server:close()
server:wait_closed()
print("closed", server:is_serving())
]]))
    assert.same({code = 0, err = "", out = "hello, child|\t0\nclosed\tfalse\n"}, r)
  end)

  it("§11 an uncaught error in the main chunk exits 1 at once: the default loop is not drained", function()
    local r = eddy(loop_script [[
loop:call_soon(print, "never soon")
loop:call_later(0.01, print, "never later")
eddy.sleep(0)  -- the soon callback has run by now
error("main failed")
]])
    assert.equal(1, r.code)
    assert.equal("never soon\n", r.out)
    assert.matches("^" .. cli.binary:gsub("%p", "%%%0") .. ": .-:6: main failed\nstack traceback:\n", r.err)
  end)

  it("§11 a suspending function called from a plain callback raises RuntimeError naming it and "
     .. "eddy.run / run_until_complete; uncaught, the handler reports it, the loop goes on, status 1",
    function()
      local r = eddy(loop_script [[
loop:call_soon(function()
  local ok, err = pcall(eddy.sleep, 0)
  print(ok, eddy.errors.is(err, eddy.errors.RuntimeError))
  print(err.message:find("sleep", 1, true) ~= nil, err.message:find("eddy.run", 1, true) ~= nil,
        err.message:find("run_until_complete", 1, true) ~= nil)
end)
loop:call_later(0.01, function() eddy.open_connection("127.0.0.1", 1) end)
loop:call_later(0.02, print, "still running")
]])
      assert.equal(1, r.code)
      assert.equal("false\ttrue\ntrue\ttrue\ttrue\nstill running\n", r.out)
      assert.matches("Exception in callback", r.err)
      assert.matches("RuntimeError: open_connection%(%) cannot suspend here", r.err)
    end)
end)

describe("§11 plain callbacks", function()
  it("§11 in every kind of plain callback (done callback, exception handler, signal handler, fd "
     .. "watcher, protocol method) a suspending function raises RuntimeError naming it", function()
    local r = eddy(loop_script [[
local function try(where)
  local ok, err = pcall(eddy.sleep, 0)
  print(where, ok, tostring(err):find("RuntimeError: sleep() cannot suspend here", 1, true) == 1)
end
local fut = loop:create_future()
fut:add_done_callback(function() try("done callback") end)
fut:set_result(1)
loop:set_exception_handler(function() try("exception handler") end)
loop:call_soon(error, "x")
loop:add_signal_handler("SIGUSR1", function() try("signal handler") loop:remove_signal_handler("SIGUSR1") end)
local a, b = eddy.socket.socketpair()
loop:add_reader(a, function() try("fd watcher") loop:remove_reader(a) a:close() b:close() end)
b:send("x")
local srv = loop:create_server(function()
  return {connection_made = function(self, t) self.t = t end,
          data_received = function(self) try("data_received") self.t:close() end}
end, "127.0.0.1", 0)
local t = loop:create_connection(function() return {} end, "127.0.0.1", srv.sockets[1]:getsockname()[2])
t:write("hi")
os.execute("kill -USR1 " .. io.open("/proc/self/stat"):read("n"))
loop:call_later(0.05, function() srv:close() t:close() end)
]])
    assert.same({code = 0, err = ""}, {code = r.code, err = r.err})
    local lines = {}
    for line in r.out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)  -- the signal, the fd and the connection race
    assert.same({"data_received\tfalse\ttrue", "done callback\tfalse\ttrue",
                 "exception handler\tfalse\ttrue", "fd watcher\tfalse\ttrue",
                 "signal handler\tfalse\ttrue"}, lines)
  end)
end)

describe("§11 the drain after the main chunk", function()
  -- Each script prints "returns" as its chunk ends, then starts the one
  -- kind of live work named; the output after that shows the drain
  -- waited for it.  Peers are background processes eddy does not track.
  local kinds = {
    ["callbacks that schedule callbacks"] = {[[
local n = 0
local function again() n = n + 1 if n < 100 then loop:call_soon(again) else print("100 callbacks") end end
loop:call_soon(again)]], "100 callbacks\n"},
    ["a task waiting on a future a timer completes"] = {[[
local fut = loop:create_future()
loop:create_task(function() print("task got", fut:await()) end)
loop:call_later(0.05, fut.set_result, fut, "value")]], "task got\tvalue\n"},
    ["a server, until a late client closes it"] = {[[
local server
server = eddy.start_server(function(r, w) print("served", r:readline()) w:close() server:close() end,
                           "127.0.0.1", 0)
later(("local _, w = require('eddy').open_connection('127.0.0.1', %d) w:write('late\\n') w:close()")
      :format(server.sockets[1]:getsockname()[2]))]], "served\tlate\n\n"},
    ["an open transport whose server is closed"] = {[[
local server
server = loop:create_server(function()
  server:close()
  return {data_received = function(_, d) io.write("data ", d) end,
          connection_lost = function(_, err) print("lost", err) end}
end, "127.0.0.1", 0)
later(("local eddy = require('eddy') local _, w = eddy.open_connection('127.0.0.1', %d) "
       .. "eddy.sleep(0.2) w:write('late\\n') w:close()"):format(server.sockets[1]:getsockname()[2]), 0)]],
      "data late\nlost\tnil\n"},
    ["a datagram endpoint"] = {[[
local t = loop:create_datagram_endpoint(function()
  return {datagram_received = function(self, d) print("datagram", d) self.t:close() end,
          connection_made = function(self, t) self.t = t end}
end, {"127.0.0.1", 0})
later(("local t = require('eddy').get_event_loop():create_datagram_endpoint(function() return {} end, "
       .. "nil, {'127.0.0.1', %d}) t:sendto('late') t:close()"):format(t:get_extra_info("sockname")[2]))]],
      "datagram\tlate\n"},
    ["an fd watcher"] = {[[
local p = io.popen("sleep 0.2; echo ready")
loop:add_reader(p, function() print("readable", p:read("l")) loop:remove_reader(p) p:close() end)]],
      "readable\tready\n"},
    ["a running process"] = {[[
local sub = eddy.subprocess
loop:subprocess_exec(function() return {process_exited = function() print("exited") end} end,
                     "sleep", "0.2", {stdin = sub.DEVNULL, stdout = sub.DEVNULL, stderr = sub.DEVNULL})]],
      "exited\n"},
    ["an executor job in flight"] = {[[
local job = loop:run_in_executor(nil, function() os.execute("sleep 0.2") return "job done" end)
job:add_done_callback(function(f) print(f:result()) end)]], "job done\n"},
  }
  local prelude = [[
-- A peer: this Lua code in another eddy process, after 0.2 s (or 'delay').
local function later(code, delay)
  os.execute(("(sleep %s; %s -e %q) >/dev/null 2>&1 &"):format(delay or 0.2, arg[-1], code))
end
]]
  for name, case in pairs(kinds) do
    it("§11 the drain waits for " .. name, function()
      local r = eddy(loop_script(prelude .. case[1] .. '\nprint("returns")\n'), {timeout = 20})
      assert.same({code = 0, err = "", out = "returns\n" .. case[2]}, r)
    end)
  end

  it("§11 signal handlers alone do not keep the drain alive; with a timer they run until it fires", function()
    local r = eddy(loop_script [[
loop:add_signal_handler("SIGUSR1", print, "usr1")
loop:add_signal_handler("SIGUSR2", print, "usr2")
print("returns")]], {timeout = 5})
    assert.same({code = 0, out = "returns\n", err = ""}, r)
    r = eddy(loop_script [[
loop:add_signal_handler("SIGUSR1", function() print("usr1") end)
loop:call_later(0.2, print, "timer")
io.popen("sleep 0.05; kill -USR1 " .. io.open("/proc/self/stat"):read("n")):close()
print("returns")]], {timeout = 5})
    assert.same({code = 0, out = "returns\nusr1\ntimer\n", err = ""}, r)
  end)

  it("§11 loop:stop() ends the drain though a server listens and a timer waits; os.exit(n) from "
     .. "a task of the drain exits n at once", function()
    local r = eddy(loop_script [[
local server = eddy.start_server(function() end, "127.0.0.1", 0)
loop:call_later(30, print, "never")
loop:call_later(0.01, function() print("stopping", server:is_serving()) loop:stop() end)]], {timeout = 5})
    assert.same({code = 0, out = "stopping\ttrue\n", err = ""}, r)
    r = eddy(loop_script [[
eddy.start_server(function() end, "127.0.0.1", 0)
loop:create_task(function() eddy.sleep(0.01) print("exiting") os.exit(6) end)
loop:call_later(30, print, "never")]], {timeout = 5})
    assert.same({code = 6, out = "exiting\n", err = ""}, r)
  end)

  it("§11 the drain runs the current loop: a new one set after closing the default loop is "
     .. "drained, and a loop replaced without closing is not (docs/cli.md)", function()
    local r = eddy(script [[
local eddy = require "eddy"
local old = eddy.get_event_loop()
old:call_later(0.01, print, "replaced loop")
local new = eddy.new_event_loop()
eddy.set_event_loop(new)
print(eddy.sleep(0.01, "slept on the new loop"), old:is_running())
new:call_later(0.01, print, "new loop drained")]])
    assert.same({code = 0, err = "", out = "slept on the new loop\tfalse\nnew loop drained\n"}, r)
  end)
end)

describe("§11 the REPL with input that is not a terminal", function()
  local inputs = {
    ["long strings and statements over several lines"] =
      "x = [[a\nb]]\nprint(x)\nlocal t = {\n1,\n2,\n}\nprint(t)\nfunction f()\nreturn 1, nil\nend\nf()\n= f()\n",
    ["return of nothing, a bare =, locals that do not persist"] =
      "return\n=\nlocal y = 5\nprint(y)\n= (function() end)()\n",
    ["errors that are no strings, and errors in coroutines"] =
      "error(42)\nerror()\nerror(true)\nerror('lvl0', 0)\ncoroutine.wrap(function() error('in co') end)()\n",
    ["an error inside a block, then the REPL goes on"] =
      "x = 1 +\n\n2\nif x then\nerror('in block')\nend\nprint(x)\n",
    ["numbers' formats, several values"] = "= 1/0, -1/0, math.mininteger, 1e100, 0.1, 2^63, 7 // 2\n",
    ["os.exit(3) and os.exit(false) end it with their status"] = "print(1)\nos.exit(3)\nprint(2)\n",
    ["os.exit(code, true) at the prompt"] = "print(1)\nos.exit(5, true)\nprint(2)\n",
  }
  for name, input in pairs(inputs) do
    it("§11 prints what lua5.4 -i prints: " .. name, function()
      if not has_lua then pending("lua5.4 is not installed") return end
      local e, l = both("-i", {stdin = input})
      assert.same(l, e)
    end)
  end

  it("§11 -e and -W before -i, and - after it, as lua5.4", function()
    if not has_lua then pending("lua5.4 is not installed") return end
    for _, args in ipairs {"-e 'x = 7' -i", "-W -i", "-i -e 'x = 7'", "-i -"} do
      local e, l = both(args, {stdin = "x\nwarn('careful')\nprint(#arg, arg[0] ~= nil)\n"})
      assert.same(l, e, args)
    end
  end)

  it("§11 os.exit(code, true) at the prompt ends the process with that code while a server, a "
     .. "timer and a task are open (it hung: the loop's close waited for the REPL's handles)", function()
    local r = eddy("-i", {stdin =
      "srv = loop:create_server(function() return {} end, '127.0.0.1', 0)\n" ..
      "loop:call_later(30, print, 'never')\n" ..
      "t = loop:create_task(eddy.sleep, 30)\n" ..
      "eddy.sleep(0) os.exit(4, true)\n", timeout = 5})
    assert.equal(4, r.code)
    assert.equal("", r.err)
    assert.matches("\n> eddy.sleep%(0%) os.exit%(4, true%)\n$", r.out)
  end)

  it("§11 entries run as tasks: a server made at one prompt answers a client at the next, its "
     .. "handler a task that runs between prompts", function()
    local r = eddy("-i", {stdin = table.concat({
      "srv = eddy.start_server(function(r, w) w:write(r:readline():upper()) w:close() end, '127.0.0.1', 0)",
      "r, w = eddy.open_connection('127.0.0.1', srv.sockets[1]:getsockname()[2])",
      "w:write('hello\\n')",
      "= r:readline(), eddy.current_task() ~= nil",
      "= r:read(), r:at_eof()",
      "srv:close() srv:wait_closed()",
      "= srv:is_serving()", ""}, "\n")})
    assert.equal(0, r.code)
    assert.equal("", r.err)
    assert.matches("\n> = r:readline%(%), eddy.current_task%(%) ~= nil\nHELLO\n\ttrue\n" ..
                   "> = r:read%(%), r:at_eof%(%)\n\ttrue\n", r.out)
    assert.matches("\n> = srv:is_serving%(%)\nfalse\n> \n$", r.out)
  end)

  it("§11 the end of input cancels what still runs (cleanup may suspend), drops a far timer, "
     .. "closes servers, waits for an executor job, closes the loop; status 0 at once", function()
    local r = eddy("-i", {timeout = 5, stdin = table.concat({
      "srv = loop:create_server(function() return {} end, '127.0.0.1', 0)",
      "h = loop:call_later(30, print, 'never')",
      "job = loop:run_in_executor(nil, function() os.execute('sleep 0.2') return 'job' end)",
      "job:add_done_callback(function(f) print('executor', f:result()) end)",
      "t = loop:create_task(function() local ok, e = pcall(eddy.sleep, 30) eddy.sleep(0.01)"
        .. " print('task', e, loop:is_closed()) end)",
      "eddy.sleep(0)", ""}, "\n")})
    assert.same({code = 0, err = ""}, {code = r.code, err = r.err})
    assert.matches("\n> eddy.sleep%(0%)\n> \n", r.out)
    assert.matches("\ntask\tCancelledError\tfalse\n", r.out)
    assert.matches("\nexecutor\tjob\n", r.out)
    assert.not_matches("\nnever\n", r.out)
  end)
end)

-- python3 drives eddy on a pty (spec/support/pty_driver.lua).
describe("§11 the REPL on a terminal", function()
  local driver  -- the driver's file, made for each case
  local function session(...)
    local args = {}
    for i, step in ipairs {...} do args[i] = q(step) end
    return cli.sh("python3 " .. q(driver) .. " " .. q(cli.binary) .. " dumb " ..
                  table.concat(args, " "), {timeout = 30})
  end
  before_each(function()
    if not has_python then pending("python3 is not installed") return end
    driver = cli.tempfile(require("support.pty_driver"), ".py")
  end)

  it("§11 os.exit(code, true) at the prompt, with a server open, ends the process with that code", function()
    if not has_python then return end
    local r = session("expect:> ",
      "send:srv = loop:create_server(function() return {} end, '127.0.0.1', 0) os.exit(4, true)\\r",
      "exit")
    assert.same({code = 0, out = "exit 4\n", err = ""}, r)
  end)

  it("§11 Ctrl-C never ends the process: three in a row at a busy entry interrupt it once", function()
    if not has_python then return end
    local r = session("expect:> ", "send:print('busy') while true do end\\r", "expect:busy\\r\\n",
      "kill:INT", "kill:INT", "kill:INT", "expect:interrupted!", "expect:> ",
      "send:print('alive')\\r", "expect:alive\\r\\n> ", "send:\\x04", "exit")
    assert.same({code = 0, out = "exit 0\n", err = ""}, r)
  end)
end)
