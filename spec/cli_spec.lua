-- The eddy executable (API.md §11): lua.c's command line, the main chunk
-- on the main thread, top-level suspension, and the drain of the default
-- loop after the main chunk.  Runs the real binary as a subprocess.
local cli = require "cli_helper"
local q, eddy = cli.q, cli.eddy

local has_lua = cli.has("lua5.4")

-- The expected "progname: " prefix: lua.c prints argv[0].
local P = cli.binary .. ": "

after_each(cli.cleanup)

describe("eddy options", function()
  it("-v prints eddy's version and Lua's copyright line", function()
    local r = eddy("-v")
    assert.equal(0, r.code)
    assert.matches("^eddy %d+%.%d+%.%d+  Lua 5%.4%.%d+  Copyright %(C%) 1994%-%d+ Lua%.org, PUC%-Rio\n$", r.out)
    if has_lua then
      local l = cli.sh("lua5.4 -v")
      assert.equal(l.out, r.out:match("^eddy %S+  (.*)$"))
    end
  end)

  it("-e runs statements in order, joined or separate", function()
    local r = eddy("-e " .. q"x = 1" .. " -e" .. q"x = x + 1" .. " -e " .. q"print(x)")
    assert.same({code = 0, out = "2\n", err = ""}, r)
  end)

  it("-e with -v runs after the version line and does not start a REPL", function()
    local r = eddy("-v -e " .. q"print('after')")
    assert.equal(0, r.code)
    assert.matches("^eddy .-\nafter\n$", r.out)
  end)

  it("-l mod and -l g=mod require into globals", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)))
    cli.writefile(dir .. "/climod.lua", "return {name = 'climod', args = {...}}")
    local r = eddy("-e " .. q("package.path = '" .. dir .. "/?.lua;' .. package.path")
                   .. " -l climod -l alias=climod -lstr=string"
                   .. " -e " .. q"print(climod.name, alias == climod, climod.args[1], str == string)")
    os.execute("rm -rf " .. q(dir))
    assert.same({code = 0, out = "climod\ttrue\tclimod\ttrue\n", err = ""}, r)
  end)

  it("-l of a missing module fails with lua.c's message and status 1", function()
    local r = eddy("-l no_such_module_xyz")
    assert.equal(1, r.code)
    assert.matches("^" .. P:gsub("%p", "%%%0") .. "module 'no_such_module_xyz' not found:", r.err)
  end)

  it("-W turns warnings on", function()
    local r = eddy("-W -e " .. q"warn('hello')")
    assert.same({code = 0, out = "", err = "Lua warning: hello\n"}, r)
    r = eddy("-e " .. q"warn('hello')")
    assert.same({code = 0, out = "", err = ""}, r)
  end)

  it("LUA_INIT_5_4 wins over LUA_INIT; @file runs a file; -E ignores both", function()
    local init = cli.tempfile("print('from file')", ".lua")
    assert.equal("54\n1\n", eddy("-e " .. q"print(1)",
      {env = "LUA_INIT_5_4='print(54)' LUA_INIT='print(0)'"}).out)
    assert.equal("0\n1\n", eddy("-e " .. q"print(1)", {env = "LUA_INIT='print(0)'"}).out)
    assert.equal("from file\n", eddy("-e ''", {env = "LUA_INIT=@" .. q(init)}).out)
    assert.equal("1\n", eddy("-E -e " .. q"print(1)",
      {env = "LUA_INIT_5_4='print(54)' LUA_INIT='print(0)'"}).out)
  end)

  it("-E makes package.path ignore LUA_PATH", function()
    local r = eddy("-E -e " .. q"print(package.path:find('NOPE', 1, true) == nil)",
                   {env = "LUA_PATH='NOPE/?.lua'"})
    assert.equal("true\n", r.out)
    r = eddy("-e " .. q"print(package.path:find('NOPE', 1, true) == nil)",
             {env = "LUA_PATH='NOPE/?.lua'"})
    assert.equal("false\n", r.out)
  end)

  it("an error in LUA_INIT stops with status 1", function()
    local r = eddy("-e " .. q"print('never')", {env = "LUA_INIT='error(\"x\")'"})
    assert.equal(1, r.code)
    assert.equal("", r.out)
    assert.matches("^" .. P:gsub("%p", "%%%0") .. "LUA_INIT:1: x\nstack traceback:\n", r.err)
  end)

  it("rejects unknown options with lua.c's usage text and status 1", function()
    for _, bad in ipairs {"-x", "--x", "-ix", "-vv", "-Ex", "-Wx"} do
      local r = eddy(bad)
      assert.equal(1, r.code)
      assert.equal("", r.out)
      assert.matches("^" .. P:gsub("%p", "%%%0") .. "unrecognized option '" .. bad:gsub("%p", "%%%0") .. "'\nusage: ", r.err)
    end
    local r = eddy("-e")
    assert.equal(1, r.code)
    assert.matches("'%-e' needs argument\n", r.err)
    r = eddy("-l -e x")
    assert.matches("'%-l' needs argument\n", r.err)
  end)

  it("prints the same usage text as lua5.4", function()
    if not has_lua then pending("lua5.4 is not installed") return end
    local r = eddy("-x")
    local l = cli.sh("lua5.4 -x")
    assert.equal(l.err:gsub("lua5%.4", "PROG"), (r.err:gsub(cli.binary:gsub("%p", "%%%0"), "PROG")))
  end)
end)

describe("eddy scripts and arg", function()
  local show = "print(#arg, arg[-2], arg[-1], arg[0], arg[1], arg[2], select('#', ...), ...)"

  it("passes script arguments in arg and as ...", function()
    local script = cli.tempfile(show, ".lua")
    local r = eddy("-e '' " .. q(script) .. " a 'b c'")
    assert.equal(0, r.code)
    assert.equal(string.format("2\t-e\t\t%s\ta\tb c\t2\ta\tb c\n", script), r.out)
  end)

  it("arg without a script holds the program and options at 0 and below", function()
    local r = eddy("-e " .. q"print(#arg, arg[0], arg[-1], arg[1])")
    assert.equal(string.format("2\t%s\tnil\t-e\n", cli.binary), r.out)
  end)

  it("- runs stdin as the script, -- stops options", function()
    local r = eddy("- x y", {stdin = show})
    assert.equal(string.format("2\tnil\t%s\t-\tx\ty\t2\tx\ty\n", cli.binary), r.out)
    local script = cli.tempfile(show, ".lua")
    r = eddy("-- " .. q(script) .. " -e")
    assert.equal(string.format("1\t%s\t--\t%s\t-e\tnil\t1\t-e\n", cli.binary, script), r.out)
  end)

  it("runs stdin as a script when there are no arguments and stdin is no terminal", function()
    local r = eddy("", {stdin = "print('from stdin', coroutine.isyieldable())"})
    assert.same({code = 0, out = "from stdin\tfalse\n", err = ""}, r)
  end)

  it("an error in stdin run as the script exits 1 (lua.c exits 0 there; API.md §11)", function()
    local r = eddy("", {stdin = "error('from stdin')"})
    assert.equal(1, r.code)
    assert.matches("^" .. P:gsub("%p", "%%%0") .. "stdin:1: from stdin\nstack traceback:", r.err)
    assert.equal(1, eddy("", {stdin = "x ="}).code)
  end)

  it("skips a #! first line, as busted's launcher needs", function()
    local script = cli.tempfile("#!/usr/bin/env eddy\nprint('ran')\n", ".lua")
    assert.equal("ran\n", eddy(q(script)).out)
  end)

  it("a missing script fails with status 1", function()
    local r = eddy("/nonexistent/script.lua")
    assert.equal(1, r.code)
    assert.equal(P .. "cannot open /nonexistent/script.lua: No such file or directory\n", r.err)
  end)

  it("a syntax error fails with status 1 and no traceback", function()
    local r = eddy("-e " .. q"x =")
    assert.same({code = 1, out = "",
                 err = P .. "(command line):1: unexpected symbol near <eof>\n"}, r)
  end)

  it("an uncaught error prints its traceback and exits 1", function()
    local script = cli.tempfile("local function f() error('boom') end\nf()\nprint('never')\n", ".lua")
    local r = eddy(q(script))
    assert.equal(1, r.code)
    assert.equal("", r.out)
    local name = script:gsub("%p", "%%%0")
    assert.matches("^" .. P:gsub("%p", "%%%0") .. name .. ":1: boom\nstack traceback:\n\t%[C%]: in function 'error'\n\t"
                   .. name .. ":1: in local 'f'\n\t" .. name .. ":2: in main chunk\n\t%[C%]: in %?\n$", r.err)
  end)

  it("reports non-string errors as lua.c does, error objects with a traceback", function()
    local r = eddy("-e " .. q"error({})")
    assert.equal(1, r.code)
    assert.matches("^.-: %(error object is a table value%)\nstack traceback:\n", r.err)
    r = eddy("-e " .. q"error(require('eddy').errors.ValueError('bad value'))")
    assert.equal(1, r.code)
    assert.matches("^.-: ValueError: bad value\nstack traceback:\n\t%[C%]: in function 'error'", r.err)
  end)

  it("an error raised in a task and awaited at top level shows the task's traceback", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local function inner() error(eddy.errors.RuntimeError("in task")) end
local t = eddy.get_event_loop():create_task(function() inner() end)
t:await()
]], ".lua")
    local r = eddy(q(script))
    assert.equal(1, r.code)
    assert.matches("RuntimeError: in task\nstack traceback:\n", r.err)
    assert.matches("in %a+ 'inner'", r.err)
  end)

  -- A string cannot carry a traceback field, and stays the same value
  -- (pcall callers compare it): the task keeps where it was raised.
  it("a task's string error re-raised by eddy.run shows where it was raised, as an error object does",
     function()
    local body = [[
local eddy = require "eddy"
local function inner() error(%s) end
local function middle() eddy.sleep(0) inner() end
eddy.run(function() middle() end)
]]
    local name, tb = {}, {}
    for i, err in ipairs({"'boom'", "eddy.errors.ValueError('boom')"}) do
      local script = cli.tempfile(body:format(err), ".lua")
      local r = eddy(q(script))
      assert.equal(1, r.code)
      name[i] = script:gsub("%p", "%%%0")
      tb[i] = r.err:match("\nstack traceback:\n.*$")
      assert.matches("^\nstack traceback:\n\t%[C%]: in function 'error'\n\t" .. name[i] .. ":2: in upvalue 'inner'\n\t"
                     .. name[i] .. ":3: in upvalue 'middle'\n", tb[i])
    end
    assert.equal(tb[2]:gsub(name[2], "SCRIPT"), (tb[1]:gsub(name[1], "SCRIPT")))
  end)

  it("a task's string error keeps its traceback through gather, shield, wait_for and a task awaiting it",
     function()
    for _, wrap in ipairs({"eddy.gather(function() eddy.sleep(0.01) end, inner)", "eddy.shield(eddy.create_task(inner)):await()",
                           "eddy.wait_for(inner, 5)", "eddy.create_task(inner):await()"}) do
      local script = cli.tempfile(([[
local eddy = require "eddy"
local function inner() eddy.sleep(0) error("lost") end
eddy.run(function() %s end)
]]):format(wrap), ".lua")
      local r = eddy(q(script))
      assert.equal(1, r.code)
      assert.matches(":2: lost\nstack traceback:\n\t%[C%]: in function 'error'\n\t[^\n]-:2: in function <", r.err)
    end
  end)

  it("a task's string error caught around result() keeps its traceback raised again as is, not as another string",
     function()
    local body = [[
local eddy = require "eddy"
local function inner() error("first") end
local loop = eddy.get_event_loop()
local t = loop:create_task(inner)
local ok, err = pcall(loop.run_until_complete, loop, t)
assert(not ok and err == t:exception())
local function again() error(%s, 0) end
again()
]]
    local script = cli.tempfile(body:format("err"), ".lua")
    local name = script:gsub("%p", "%%%0")
    local r = eddy(q(script))
    assert.equal(1, r.code)
    assert.matches("^" .. P:gsub("%p", "%%%0") .. name .. ":2: first\nstack traceback:\n\t"
                   .. "%[C%]: in function 'error'\n\t" .. name .. ":2: in function <", r.err)
    script = cli.tempfile(body:format("'again: ' .. err"), ".lua")
    name = script:gsub("%p", "%%%0")
    r = eddy(q(script))
    assert.equal(1, r.code)
    assert.matches("^" .. P:gsub("%p", "%%%0") .. "again: " .. name .. ":2: first\nstack traceback:\n\t"
                   .. "%[C%]: in function 'error'\n\t" .. name .. ":7: in local 'again'\n\t" .. name
                   .. ":8: in main chunk\n\t%[C%]: in %?\n$", r.err)
  end)

  it("a task's string error re-raised in a callback: its report shows where the task raised it", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
local function inner() error("boom") end
local t = loop:create_task(function() eddy.sleep(0) inner() end)
eddy.sleep(0.01)
loop:call_soon(function() t:result() end)
eddy.sleep(0.01)
]], ".lua")
    local name = script:gsub("%p", "%%%0")
    local r = eddy(q(script))
    assert.equal(0, r.code)
    assert.matches("Exception in callback [^\n]*\n[^\n]*\n" .. name .. ":3: boom\nstack traceback:\n\t"
                   .. "%[C%]: in function 'error'\n\t" .. name .. ":3: in upvalue 'inner'\n", r.err)
  end)

  it("os.exit ends the process with its status, also from a loop callback", function()
    assert.equal(3, eddy("-e " .. q"os.exit(3)").code)
    assert.equal(0, eddy("-e " .. q"os.exit(true)").code)
    local r = eddy("-e " .. q[[
      local loop = require('eddy').get_event_loop()
      loop:call_later(0.01, function() print('exiting') os.exit(5) end)
      loop:call_later(5, function() print('never') end)]])
    assert.same({code = 5, out = "exiting\n", err = ""}, r)
  end)

  it("os.exit(code, true) closes the state without reporting the tasks it ends", function()
    -- The process ends on purpose: no "Task was destroyed but it is
    -- pending!" for the tasks left pending (a piped REPL entry is one).
    local r = eddy("-e " .. q[[
      local eddy = require('eddy')
      setmetatable({}, {__gc = function() print('finalized') end})
      eddy.get_event_loop():create_task(eddy.sleep, 10)
      eddy.sleep(0)  -- the task starts and waits
      os.exit(3, true)]])
    assert.same({code = 3, out = "finalized\n", err = ""}, r)
  end)

  it("os.exit(code, true) from a task closes the running loop and all it holds", function()
    -- uv_run never returns to the loop (exit follows), so the state's
    -- close closes it: its handles are freed (LeakSanitizer reports
    -- nothing under ASan) and its child is killed, as loop:close() does.
    local r = eddy("-e " .. q[[
      local eddy = require('eddy')
      setmetatable({}, {__gc = function() print('finalized') end})
      eddy.run(function()
        local loop = eddy.get_running_loop()
        local server = loop:create_server(function() return {} end, '127.0.0.1', 0)
        local reader, writer = eddy.open_connection('127.0.0.1', server.sockets[1]:getsockname()[2])
        local child = loop:subprocess_exec(function() return {} end, 'sleep', '30')
        loop:call_later(30, print, 'never')
        loop:run_in_executor(nil, os.execute, 'sleep 0.1')
        loop:create_task(eddy.sleep, 30)
        eddy.sleep(0.01)
        io.stderr:write(child:get_pid(), '\n')
        os.exit(3, true)
      end)]])
    assert.equal(3, r.code, r.err)
    assert.equal("finalized\n", r.out)
    local pid = assert(tonumber(r.err:match("^(%d+)\n$")), r.err)
    assert.is_false(cli.sh("kill -0 " .. pid .. " 2>/dev/null").code == 0,
                    "the child outlived the state")
  end)

  it("require 'eddy' works without a search path", function()
    local r = eddy("-E -e " .. q"package.path = '' package.cpath = '' print(type(require('eddy').run))")
    assert.equal("function\n", r.out)
  end)

  it("require 'eddy.socket' and 'eddy.signal' work before require 'eddy'", function()
    local r = eddy("-e " .. q[[
      local socket, signal = require('eddy.socket'), require('eddy.signal')
      local eddy = require('eddy')
      print(socket == eddy.socket, signal == eddy.signal, socket.AF_INET, signal.SIGINT)]])
    assert.same({code = 0, out = "true\ttrue\t2\t2\n", err = ""}, r)
  end)
end)

describe("eddy main chunk (API.md §11)", function()
  it("runs on the main thread", function()
    local r = eddy("-e " .. q"local co, main = coroutine.running() print(type(co), main, coroutine.isyieldable())")
    assert.equal("thread\ttrue\tfalse\n", r.out)
  end)

  it("may suspend at top level; tasks it created make progress meanwhile", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
local t = loop:create_task(function() print("task runs") return 42 end)
print("before", loop:is_running())
print("sleep returns", eddy.sleep(0.02, "a", "b"))
print("after", t:done(), t:result(), select(2, coroutine.running()))
print("awaited", t:await())
]], ".lua")
    local r = eddy(q(script))
    assert.same({code = 0, err = "", out =
      "before\tfalse\ntask runs\nsleep returns\ta\tb\nafter\ttrue\t42\ttrue\nawaited\t42\n"}, r)
  end)

  it("drains the default loop after the chunk returns", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
loop:call_later(0.05, function() print("later") end)
loop:call_soon(function() print("soon") end)
loop:create_task(function() eddy.sleep(0.02) print("task") end)
print("chunk returns")
]], ".lua")
    local r = eddy(q(script))
    assert.same({code = 0, err = "", out = "chunk returns\nsoon\ntask\nlater\n"}, r)
  end)

  it("drains after -e chunks too, and after stdin scripts", function()
    local code = "require('eddy').get_event_loop():call_later(0.01, print, 'drained')"
    assert.equal("drained\n", eddy("-e " .. q(code)).out)
    assert.equal("drained\n", eddy("", {stdin = code}).out)
  end)

  it("loop:stop() ends the drain sooner", function()
    local r = eddy("-e " .. q[[
      local loop = require('eddy').get_event_loop()
      loop:call_later(0.02, function() print('stopping') loop:stop() end)
      loop:call_later(8, function() print('never') end)]], {timeout = 5})
    assert.same({code = 0, out = "stopping\n", err = ""}, r)
  end)

  it("eddy.run works from the script, and the drain has nothing left", function()
    local r = eddy("-e " .. q[[
      local eddy = require 'eddy'
      print(eddy.run(function(x) eddy.sleep(0.01) return x * 2 end, 21))]])
    assert.same({code = 0, out = "42\n", err = ""}, r)
  end)

  it("runs the seeds' low-level style: call_soon, run_forever, close", function()
    local r = eddy("-e " .. q[[
      local eddy = require 'eddy'
      local loop = eddy.new_event_loop()
      loop:call_soon(function() print('hello') loop:stop() end)
      loop:run_forever()
      loop:close()
      print('closed', loop:is_closed())]])
    assert.same({code = 0, out = "hello\nclosed\ttrue\n", err = ""}, r)
  end)

  it("top-level suspension on another loop's future runs that loop (docs/cli.md)", function()
    local r = eddy("-e " .. q[[
      local eddy = require 'eddy'
      local other = eddy.new_event_loop()
      local fut = other:create_future()
      other:call_later(0.01, fut.set_result, fut, 'from other')
      eddy.get_event_loop():call_soon(print, 'default ran')
      print(fut:await(), other:is_running())
      other:close()]])
    assert.same({code = 0, out = "from other\tfalse\ndefault ran\n", err = ""}, r)
  end)

  it("an error a custom exception handler takes leaves the status 0", function()
    local r = eddy("-e " .. q[[
      local loop = require('eddy').get_event_loop()
      loop:set_exception_handler(function(_, ctx) print('handled', ctx.message ~= nil) end)
      loop:call_soon(function() error('cb failed') end)]])
    assert.same({code = 0, out = "handled\ttrue\n", err = ""}, r)
  end)

  it("a closed default loop is not drained", function()
    local r = eddy("-e " .. q[[
      local loop = require('eddy').get_event_loop()
      loop:call_later(0.01, print, 'never')
      loop:close()
      print('closed')]])
    assert.same({code = 0, out = "closed\n", err = ""}, r)
  end)

  it("top-level suspension on a closed default loop raises RuntimeError", function()
    -- These scheduled their work on the closed loop and crashed.
    local r = eddy("-e " .. q[[
      local eddy = require('eddy')
      eddy.get_event_loop():close()
      print(select(2, pcall(eddy.sleep, 0)))
      print(select(2, pcall(eddy.sleep, 0.01)))
      print(select(2, pcall(eddy.await, function() end)))
      print(select(2, pcall(eddy.to_thread, function() end)))]])
    assert.same({code = 0, err = "", out = string.rep("RuntimeError: Event loop is closed\n", 4)}, r)
  end)

  describe("Ctrl-C while the chunk runs a loop", function()
    -- Sent from a callback of that loop (popen, not os.execute: system()
    -- ignores SIGINT while it waits).  Before, lua.c's hook raised
    -- "interrupted!" in whatever callback ran next: the exception handler
    -- reported it, the callback was lost (here the sleep's own timer) and
    -- the loop went on.
    local prelude = 'local eddy = require "eddy"\n' ..
      'local function ctrl_c() io.popen("kill -INT $PPID"):close() end\n'

    it("interrupts a top-level suspension: the chunk fails with interrupted!", function()
      local script = cli.tempfile(prelude .. [[
local loop = eddy.get_event_loop()
loop:call_later(0.01, ctrl_c)
eddy.sleep(10)
print("never")
]], ".lua")
      local r = eddy(q(script), {timeout = 5})
      assert.equal(1, r.code)
      assert.equal("", r.out)
      local name = script:gsub("%p", "%%%0")
      assert.matches("^" .. P:gsub("%p", "%%%0") .. name .. ":5: interrupted!\nstack traceback:\n\t%[C%]: in function 'eddy.sleep'\n\t"
                     .. name .. ":5: in main chunk\n\t%[C%]: in %?\n$", r.err)
    end)

    it("interrupts run_forever, and a callback busy in Lua code", function()
      local r = eddy(q(cli.tempfile(prelude .. [[
local loop = eddy.new_event_loop()
loop:call_later(0.01, ctrl_c)
loop:call_later(10, loop.stop, loop)
print(pcall(loop.run_forever, loop))
print(loop:is_running())
loop:close()
]], ".lua")), {timeout = 5})
      -- positioned, as lua.c's: at the Lua line that ran the loop
      assert.same({code = 0, err = ""}, {code = r.code, err = r.err})
      assert.matches("^false\t[^\n]*%.lua:6: interrupted!\nfalse\n$", r.out)
      r = eddy(q(cli.tempfile(prelude .. [[
eddy.get_event_loop():call_soon(function() ctrl_c() while true do end end)
print(pcall(eddy.sleep, 1))
]], ".lua")), {timeout = 5})
      assert.same({code = 0, err = ""}, {code = r.code, err = r.err})
      assert.matches("^false\t[^\n]*%.lua:4: interrupted!\n$", r.out)
    end)

    it("an interrupted top-level sleep leaves no timer for the drain to wait for", function()
      local t0 = os.time()
      local r = eddy(q(cli.tempfile(prelude .. [[
eddy.get_event_loop():call_later(0.01, ctrl_c)
print(pcall(eddy.sleep, 30))
]], ".lua")), {timeout = 10})
      assert.same({code = 0, err = ""}, {code = r.code, err = r.err})
      assert.matches("^false\t[^\n]*%.lua:4: interrupted!\n$", r.out)
      assert.is_true(os.time() - t0 < 10)
    end)
  end)

  it("an error in a callback during the drain goes to the exception handler; status 1", function()
    local r = eddy("-e " .. q[[
      local loop = require('eddy').get_event_loop()
      loop:call_soon(function() error('cb failed') end)
      loop:call_later(0.01, print, 'still running')]])
    assert.equal(1, r.code)
    assert.equal("still running\n", r.out)
    assert.matches("cb failed", r.err)
  end)

  it("a task's error nobody retrieved counts too, whenever the collector runs; status 1", function()
    -- Without a collection during the drain, the task was collected only
    -- when the state closed, after the status was decided.
    local r = eddy("-e " .. q[[
      local loop = require('eddy').get_event_loop()
      loop:create_task(function() error('task failed') end)
      loop:call_later(0.01, print, 'still running')]])
    assert.equal(1, r.code)
    assert.equal("still running\n", r.out)
    assert.matches("Task exception was never retrieved", r.err)
    assert.matches("task failed", r.err)
  end)

  it("top-level suspension with nothing to wait for raises a clear error", function()
    local r = eddy("-e " .. q"require('eddy').get_event_loop():create_future():await()")
    assert.equal(1, r.code)
    assert.matches("no live work", r.err)
  end)
end)

describe("eddy's allocator (src/alloc.c)", function()
  -- Under a malloc whose blocks have the size asked (valgrind's, a
  -- preloaded one), a freed small block must not be filed as the bigger
  -- block glibc would have made: tests/exactmalloc.c aborts on a write
  -- past a block's end.  (A sanitized eddy, ASan's or TSan's, has its
  -- own malloc first.)
  local sanitized = os.execute("ldd " .. q(cli.binary) .. " | grep -q -e libasan -e libtsan")
  local shim = cli.binary:gsub("eddy$", "tests/libexactmalloc.so")
  local test = sanitized and pending or it
  test("keeps to malloc's usable sizes under another malloc", function()
    local r = eddy("-e " .. q[[
for _ = 1, 20 do
  local ts = {}
  for i = 1, 200 do ts[i] = {1, 2} end  -- arrays grown by realloc
  ts = nil
  collectgarbage()
  local ss = {}
  for i = 1, 200 do ss[i] = ("y"):rep(9) .. i .. ("z"):rep(5) end
end
print("ok")]], {env = "LD_PRELOAD=" .. q(shim)})
    assert.same({code = 0, out = "ok\n", err = ""}, r)
  end)
end)
