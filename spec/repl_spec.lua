-- The REPL of the eddy executable (API.md §11): lua.c's output when stdin
-- is not a terminal, entries running as tasks on the running loop, and,
-- on a terminal (a pty driven by python3), readable values, completion,
-- Ctrl-C and Ctrl-D, the line drawn again after output, and raw bytes.
local cli = require "cli_helper"
local q, eddy = cli.q, cli.eddy

local has_lua = cli.has("lua5.4")
local has_python = cli.has("python3")

after_each(cli.cleanup)

-- The banner: the first line of the REPL's output.
local function split_banner(out)
  return out:match("^([^\n]*\n)(.*)$")
end

-- Pipe 'input' into `eddy -i` and `lua5.4 -i`; both results.
local function both(input, args)
  args = args or "-i"
  return eddy(args, {stdin = input}), cli.sh("lua5.4 " .. args, {stdin = input})
end

describe("REPL with piped input", function()
  local inputs = {
    ["expressions, statements, = and continuation lines"] =
      "x=1\nprint(x)\n= 1+1\nfor i=1,2 do\nprint(i)\nend\n",
    ["several results, nil and strings"] =
      "return 1, nil, 'a b', {} == nil\n'str'\n= 2^53, 10 // 3, 1e300 * 10\n",
    ["runtime errors with their tracebacks"] =
      "error('boom')\nlocal function f() error('deep') end f()\nerror({})\nerror(setmetatable({}, {__tostring = function() return 'TS' end}))\nprint('alive')\n",
    ["syntax errors"] = "1+\nx = = 2\nfor\nend\nprint('after')\n",
    ["_PROMPT and _PROMPT2, through tostring"] =
      "_PROMPT = '$ '\n_PROMPT2 = setmetatable({}, {__tostring = function() return '... ' end})\nlocal t = {\n1,\n}\nprint(#t)\n_PROMPT = 42\n",
    ["a last line without a newline"] = "print('a')\nprint('b')",
    ["no input at all"] = "",
    ["an entry reading stdin itself"] = "x = io.read()\nhello there\nprint(x)\nprint(io.read('n'))\n42\n",
    ["print replaced, and an error inside print"] =
      "print = function(...) io.write('<', select('#', ...), '>\\n') end\n1, 2\nprint = function() error('no') end\n1\n",
    ["empty lines and comments"] = "\n\n-- a comment\n   \nprint(1) -- trailing\n",
    -- lua.c computes the prompt unprotected: an error there ends the REPL
    -- (message without the program name, status 1).
    ["_PROMPT whose tostring raises"] =
      "_PROMPT = setmetatable({}, {__tostring = function() error('prompt fails') end})\n1\n",
    ["_PROMPT2 whose __tostring returns no string"] =
      "_PROMPT2 = setmetatable({}, {__tostring = function() return {} end})\nif x then\nend\nprint(1)\n",
  }
  for name, input in pairs(inputs) do
    it("prints what lua5.4 -i prints: " .. name, function()
      if not has_lua then pending("lua5.4 is not installed") return end
      local e, l = both(input)
      assert.equal(l.code, e.code)
      assert.equal(l.out, e.out)  -- the banner too: lua.c's, byte for byte
      assert.equal(l.err, e.err)
    end)
  end

  it("runs a script first with -i, then the REPL sees its globals", function()
    if not has_lua then pending("lua5.4 is not installed") return end
    local script = cli.tempfile("greeting = 'hi'\nprint('script ran', ...)\n", ".lua")
    local e, l = both("print(greeting, arg[1])\n", "-i " .. q(script) .. " a1")
    assert.equal(select(2, split_banner(l.out)), select(2, split_banner(e.out)))
    assert.equal(l.err, e.err)
  end)

  it("a failing _PROMPT set before the REPL ends it at once, and ends running tasks", function()
    if not has_lua then pending("lua5.4 is not installed") return end
    local setup = "_PROMPT = setmetatable({}, {__tostring = function() error('bad prompt', 0) end})"
    local e, l = both("print(1)\n", "-e " .. q(setup) .. " -i")
    assert.same({code = 1, out = l.out, err = "bad prompt\n"}, e)
    assert.same(l, e)
    -- A task still pending when the REPL ends is cancelled, as at Ctrl-D.
    e = eddy("-i", {stdin = "t = loop:create_task(function() local ok, err = pcall(eddy.sleep, 10) print('task', err) end)\n"
                      .. "_PROMPT = setmetatable({}, {__tostring = error})\n"})
    assert.equal(1, e.code)
    assert.matches("task\tCancelledError", e.out)
  end)

  it("prints the real syntax error when input ends inside a statement", function()
    -- lua.c prints "(null)" here (it reports a message it already popped).
    local r = eddy("-i", {stdin = "x = \n"})
    assert.equal(0, r.code)
    assert.equal("> x = \n>> > \n", select(2, split_banner(r.out)))
    assert.equal("stdin:1: unexpected symbol near <eof>\n", r.err)
  end)

  it("reads input from a regular file and from /dev/null", function()
    local file = cli.tempfile("print(1 + 1)\n= 'x'\n")
    local banner = cli.sh("lua5.4 -v").out  -- lua.c's, as a piped REPL prints
    local r = eddy("-i", {stdin_file = file})
    assert.same({code = 0, err = "", out = banner .. "> print(1 + 1)\n2\n> = 'x'\nx\n> \n"}, r)
    r = eddy("-i", {stdin_file = "/dev/null"})
    assert.same({code = 0, err = "", out = banner .. "> \n"}, r)
  end)
end)

describe("REPL entries", function()
  local function run(input)
    local r = eddy("-i", {stdin = input})
    local _, rest = split_banner(r.out)
    return r, rest
  end

  it("run as tasks on the running loop; eddy and loop are predefined", function()
    local r, out = run(
      "print(loop == eddy.get_running_loop(), loop:is_running())\n" ..
      "print(eddy.current_task() ~= nil, select(2, coroutine.running()))\n" ..
      "eddy.sleep(0.01)\n" ..
      "= eddy.sleep(0.01, 'woke', 2)\n")
    assert.equal(0, r.code)
    assert.equal("", r.err)
    assert.equal("> print(loop == eddy.get_running_loop(), loop:is_running())\ntrue\ttrue\n" ..
                 "> print(eddy.current_task() ~= nil, select(2, coroutine.running()))\ntrue\tfalse\n" ..
                 "> eddy.sleep(0.01)\n" ..
                 "> = eddy.sleep(0.01, 'woke', 2)\nwoke\t2\n> \n", out)
  end)

  it("await futures and tasks at the prompt", function()
    local _, out = run(
      "t = loop:create_task(function() eddy.sleep(0.01) return 'done', 7 end)\n" ..
      "= t:await()\n" ..
      "f = loop:create_future(); loop:call_later(0.01, f.set_result, f, 'set')\n" ..
      "= eddy.await(f)\n")
    assert.matches("\n> = t:await%(%)\ndone\t7\n", out)
    assert.matches("\n> = eddy.await%(f%)\nset\n", out)
  end)

  it("let timers scheduled at one prompt fire while a later entry waits", function()
    local _, out = run(
      "loop:call_later(0.02, function() print('tick') end)\n" ..
      "eddy.sleep(0.1)\n" ..
      "print('next entry')\n")
    assert.matches("\n> eddy.sleep%(0.1%)\ntick\n> print%('next entry'%)\nnext entry\n", out)
  end)

  it("keep the loop running between prompts while waiting for input", function()
    -- (the second line 2 s later: the 0.1 s timer must fire first, though
    -- a loaded ASan build may take a good part of a second to start)
    local cmd = "{ printf '%s\\n' \"loop:call_later(0.1, function() print('tick') end)\"; sleep 2;" ..
                " printf '%s\\n' \"print('second')\"; } | timeout 10 " .. q(cli.binary) .. " -i"
    local r = cli.sh("sh -c " .. q(cmd))
    assert.equal(0, r.code)
    local rest = select(2, split_banner(r.out))
    assert.matches("^> loop:call_later%(.-%)\n[^\n]*\n> tick\nprint%('second'%)\nsecond\n> \n$", rest)
  end)

  it("report errors from suspended entries and go on", function()
    local r, out = run(
      "eddy.sleep(0.01) error('after sleep')\n" ..
      "eddy.sleep(-1)\n" ..
      "print('alive')\n")
    assert.matches("^stdin:1: after sleep\nstack traceback:\n\t%[C%]: in function 'error'\n\tstdin:1: in main chunk\n\t%[C%]: in %?\n$", r.err)
    assert.matches("\n> print%('alive'%)\nalive\n", out)
  end)

  it("report a task's string error an entry awaits with where it was raised, as an error object's", function()
    local r = run(
      "function inner() error('in task') end\n" ..
      "function middle() eddy.sleep(0) inner() end\n" ..
      "eddy.create_task(middle):await()\n" ..
      "error('at the prompt')\n")
    assert.equal("stdin:1: in task\nstack traceback:\n\t[C]: in function 'error'\n\tstdin:1: in function 'inner'\n"
                 .. "\tstdin:1: in function 'middle'\n\t[C]: in ?\n"
                 .. "stdin:1: at the prompt\nstack traceback:\n\t[C]: in function 'error'\n\tstdin:1: in main chunk\n"
                 .. "\t[C]: in ?\n", r.err)
  end)

  it("cancel the tasks still pending at the end of input and close the loop", function()
    local r, out = run(
      "t = loop:create_task(function() local ok, e = pcall(eddy.sleep, 100) print('cancelled:', tostring(e)) end)\n" ..
      "eddy.sleep(0)\n")
    assert.equal(0, r.code)
    assert.matches("\n> \ncancelled:\tCancelledError\n$", out)
  end)

  it("let cancelled tasks suspend again while they clean up at the end of input", function()
    -- As eddy.run's end: a task that handles its cancellation may await more.
    local r, out = run(
      "t = loop:create_task(function() pcall(eddy.sleep, 100) eddy.sleep(0.05) print('cleaned up', loop:is_closed()) end)\n" ..
      "eddy.sleep(0)\n")
    assert.equal("", r.err)
    assert.equal(0, r.code)
    assert.matches("\n> \ncleaned up\tfalse\n$", out)
  end)

  it("survive loop:stop() at the prompt", function()
    local r, out = run("loop:stop()\nprint('still here', loop:is_running())\n")
    assert.equal(0, r.code)
    assert.matches("still here\ttrue\n", out)
  end)

  it("create a new current loop when a script closed the default one", function()
    local script = cli.tempfile("local eddy = require 'eddy'\nold = eddy.get_event_loop()\nold:close()\n", ".lua")
    local r = eddy("-i " .. q(script), {stdin = "print(old:is_closed(), loop ~= old, loop:is_running())\n"})
    assert.equal(0, r.code)
    assert.matches("\ntrue\ttrue\ttrue\n", r.out)
  end)

  it("run what a script left pending while the REPL waits", function()
    local script = cli.tempfile(
      "local eddy = require 'eddy'\neddy.get_event_loop():call_later(0.01, print, 'from script')\n", ".lua")
    local r = eddy("-i " .. q(script), {stdin = "eddy.sleep(0.05)\nprint('entry')\n"})
    assert.matches("> eddy.sleep%(0.05%)\nfrom script\n> print%('entry'%)\nentry\n", r.out)
  end)
end)

-- A terminal session: spec/support/pty_driver.lua.
local driver = require "support.pty_driver"

describe("REPL on a terminal", function()
  -- The session of 'binary' (an executable file) on the pty, with TERM
  -- 'term'.
  local function session_with(binary, term, ...)
    local script = cli.tempfile(driver, ".py")
    local args = {}
    for i, step in ipairs {...} do args[i] = q(step) end
    return cli.sh("python3 " .. q(script) .. " " .. q(binary) .. " " .. q(term) .. " " ..
                  table.concat(args, " "), {timeout = 30})
  end
  local function session_of(binary, ...)
    return session_with(binary, "dumb", ...)
  end
  local function session(...)
    return session_of(cli.binary, ...)
  end
  local function check(r)
    assert.equal("", r.err)
    assert.equal(0, r.code)
    assert.equal("exit 0\n", r.out)
  end

  before_each(function()
    if not has_python then pending("python3 is not installed") end
  end)

  it("starts without a script, shows values readably, and leaves on Ctrl-D", function()
    if not has_python then return end
    check(session(
      "expect:Copyright", "expect:> ",
      "send:'a\\\\tb'\\r", "expect:\"a\\\\tb\"\r\n> ",
      "send:{1, 2, x = {y = true}, ['k k'] = 'v'}\\r",
      "expect:{ 1, 2, [\"k k\"] = \"v\", x = { y = true } }\r\n> ",
      "send:t = {}; t.me = t; t[1] = t\\r", "expect:> ",
      "send:t\\r", "expect:{ <cycle table: ", "expect:me = <cycle table: ",
      "send:1, nil, 'x'\\r", "expect:1\tnil\t\"x\"\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("continues incomplete statements on the second prompt", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:for i = 1, 2 do\\r", "expect:>> ",
      "send:print(i * 10)\\r", "expect:>> ", "send:end\\r", "expect:10\r\n20\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("Ctrl-C cancels a suspended entry and the REPL goes on", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:print('started') eddy.sleep(100)\\r", "expect:started\r\n",
      "send:\\x03", "expect:interrupted!", "expect:> ",
      "send:print('alive')\\r", "expect:alive\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("Ctrl-C interrupts a busy entry as lua.c does", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:print('busy') while true do end\\r", "expect:busy\r\n",
      "send:\\x03", "expect:interrupted!", "expect:> ",
      "send:print('alive')\\r", "expect:alive\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("Ctrl-C at the prompt clears the line and any incomplete statement", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:if true then\\r", "expect:>> ", "send:abc",
      "expect:abc",  -- the REPL has the text before Ctrl-C arrives
      "send:\\x03", "expect:\n> ",
      "send:print('fresh')\\r", "expect:fresh\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("keeps the bytes of UTF-8 text typed at the prompt", function()
    -- libedit decodes keys in LC_CTYPE; in the C locale it dropped them.
    if not has_python then return end
    check(session(
      "expect:> ", "send:s = '\xc3\xa9t\xc3\xa9'\r", "expect:> ",
      "send:#s, s:byte(1, 2)\r", "expect:5\t195\t169\r\n> ",
      "send:\x04", "exit"))
  end)

  it("keeps bytes that are not UTF-8 typed at the prompt, also in the history", function()
    -- libedit drops them (GNU readline keeps them): the REPL reads the keys.
    if not has_python then return end
    check(session(
      "expect:> ", "send:s = 'a\\xffb\\xc3c'\\r", "expect:> ",
      "send:#s, s:byte(1, -1)\\r", "expect:5\\t97\\t255\\t98\\t195\\t99\\r\\n> ",
      "send:s = nil\\r", "expect:> ",
      "send:\\x10\\x10\\x10\\r", "expect:> ",  -- Ctrl-P: the first line again
      "send:s:byte(1, -1)\\r", "expect:97\\t255\\t98\\t195\\t99\\r\\n> ",
      "send:\\x04", "exit"))
  end)

  it("reads the terminal when stdout is redirected", function()
    -- libedit writing to a file never handed over a line: the REPL hung.
    if not has_python then return end
    local out = cli.tempfile("")
    local wrapper = cli.tempfile("#!/bin/sh\nexec " .. q(cli.binary) .. " > " .. q(out) .. " 2>&1\n", ".sh")
    assert(os.execute("chmod +x " .. q(wrapper)))
    check(session_of(wrapper,
      "send:x = {1, 'a'}\r", "expect:x = {1, 'a'}\r\n",  -- the terminal echoes
      "send:x\r", "expect:x\r\n", "send:\x04", "exit"))
    local f = assert(io.open(out, "rb"))
    local text = f:read("a")
    f:close()
    assert.equal("> x = {1, 'a'}\n> x\n{ 1, \"a\" }\n> \n", select(2, split_banner(text)))
  end)

  it("keeps timers running while it waits at the prompt", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:loop:call_later(0.1, print, 'tick')\\r", "expect:> ",
      "expect:tick\r\n",
      "send:\\x04", "exit"))
  end)

  -- With TERM 'term': type a partial line, have a signal handler print
  -- "tick", expect 'screen' next, then finish the line.
  local function output_while_typing(term, screen)
    return session_with(cli.binary, term,
      "expect:> ", "send:loop:add_signal_handler('SIGUSR1', print, 'tick')\\r", "expect:> ",
      "send:print('ab", "expect:print('ab", "kill:USR1", "expect:" .. screen,
      "send:c')\\r", "expect:abc\\r\\n> ",  -- the whole line ran
      "send:\\x04", "exit")
  end

  it("redraws the prompt and the partial line after a callback's output", function()
    -- The line goes (\r, then xterm's "clear to the end of the screen"),
    -- the output comes, then the prompt and the line are drawn again.
    if not has_python then return end
    check(output_while_typing("xterm", "\\r\\x1b[Jtick\\r\\n> print('ab"))
  end)

  it("redraws a line of two rows with the cursor inside it", function()
    -- The cursor is on the second row: up one row before clearing.
    -- io.write's output without a newline gets one before the prompt.
    if not has_python then return end
    check(session_with(cli.binary, "xterm",
      "expect:> ",
      "send:loop:add_signal_handler('SIGUSR1', function() io.stderr:write('report\\\\n') io.write('no newline') end)\\r",
      "expect:> ", "send:x = '" .. ("a"):rep(90) .. "'\\x02\\x02", "expect:'\\x08\\x08",
      "kill:USR1",
      "expect:\\r\\x1b[A\\x1b[Jreport\\r\\nno newline\\r\\n> x = 'aaa",
      "send:Z\\r", "expect:> ", "send:#x, x:sub(-3)\\r", "expect:91\\t\"aZa\"\\r\\n> ",
      "send:\\x04", "exit"))
  end)

  it("edits a line longer than the screen in its middle, then types at its end", function()
    if not has_python then return end
    -- 610 columns on a 24 x 20 screen: libedit scrolls its copy of the
    -- screen, and typing at the end after an edit near the start used
    -- to write past the copy's last row (a crash: repl.c, fit_screen).
    check(session(
      "columns:20", "expect:> ", "send:\\r", "expect:> ",
      "send:--" .. string.rep("x", 600) .. "END", "expect:END",
      "send:\\x01a\\x05" .. string.rep("b", 60) .. "QQQ", "expect:bQQQ",
      "send:\\x03", "expect:\r\n> ",
      "send:print('ali' .. 'ive')\\r", "expect:aliive\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("takes lines of tens of KiB, multibyte ones too", function()
    if not has_python then return end
    -- libedit's readline layer, which the REPL used at first, wrote
    -- through a stale rl_line_buffer once the converted line outgrew its
    -- buffer: the heap was corrupted and the exit aborted (1,500 "€").
    check(session(
      "columns:200", "expect:> ", "send:\\r", "expect:> ",
      "send:x = [[" .. string.rep("\u{20ac}", 12000) .. "]]\\r", "expect:> ",
      "send:print(#x)\\r", "expect:36000\r\n> ",
      "send:y = [[" .. string.rep("y", 20000) .. "]] print(#y)\\r", "expect:20000\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("Ctrl-R searches the history for the text typed, and the loop runs on meanwhile", function()
    if not has_python then return end
    -- libedit's own Ctrl-R (an incremental search) reads its keys with
    -- eddy's loop stopped: the timer would wait for the next key.
    check(session(
      "expect:> ", "send:x1 = 'first'\\r", "expect:> ",
      "send:loop:call_later(0.3, print, 'fired')\\r", "expect:> ",
      "send:\\x12", "expect:fired\r\n",
      "send:\\x03", "expect:\r\n> ",
      "send:x1\\x12", "expect:x1 = 'first'",
      "send:\\x03", "expect:\r\n> ",
      "send:\\x1bx", "send:print('no extended command')\\r",
      "expect:no extended command\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("Ctrl-V inserts the next key as it is, and the loop runs on while it waits for it", function()
    if not has_python then return end
    -- libedit's own quoted insert read that key with eddy's loop stopped.
    check(session(
      "expect:> ", "send:loop:call_later(0.5, print, 'fired')\\r", "expect:> ",
      "send:x = 'a\\x16", "expect:fired\r\n",
      "send:\\x04b\\x16\\tc'\\r", "expect:> ",
      "send:x:byte(1, -1)\\r", "expect:97\t4\t98\t9\t99\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("takes the keys of an escape sequence typed apart, the loop running between them", function()
    if not has_python then return end
    -- libedit read the rest of a sequence with eddy's loop stopped: a
    -- timer, and Ctrl-C, waited for the next key.
    check(session(
      "expect:> ", "send:loop:call_later(0.5, print, 'fired')\\r", "expect:> ",
      "send:x = 1\\x1b", "expect:fired\r\n",
      "send:b2\\r", "expect:> ", "send:x\\r", "expect:21\r\n> ",  -- M-b
      "send:y = 3\\x1b[", "send:\\x03", "expect:\r\n> ",
      "send:print(y)\\r", "expect:nil\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("lists the completions on a second Tab when they share no more", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:cmp_one, cmp_two, cmp_twenty = 1, 2, 20\\r", "expect:> ",
      "send:cmp_\\t", "send:\\t", "expect:cmp_one     cmp_twenty  cmp_two\r\n> cmp_",
      "send:tw\\t", "expect:tw", "send:\\t",
      "expect:cmp_twenty  cmp_two\r\n> cmp_tw", "send:o + 1\\r", "expect:3\r\n> ",
      "send:\\x04", "exit"))
  end)

  it("shows a prompt holding a byte that is not text", function()
    if not has_python then return end
    -- libedit's readline layer read through a null pointer (a crash)
    -- when the prompt did not decode in the terminal's character set.
    check(session(
      "expect:> ", "send:_PROMPT = 'eddy\\\\255> '\\r", "expect:eddy?> ",
      "send:1 + 1\\r", "expect:2\r\neddy?> ",
      "send:\\x04", "exit"))
  end)

  it("redraws the line after warnings and the exception handler's reports", function()
    if not has_python then return end
    check(session_with(cli.binary, "xterm",
      "expect:> ",
      "send:warn('@on') loop:add_signal_handler('SIGUSR1', function() warn('careful') error('boom') end)\\r",
      "expect:> ", "send:x = 1", "expect:x = 1", "kill:USR1",
      "expect:\\r\\x1b[JLua warning: careful\\r\\nException in callback",
      "expect:stdin:1: boom\\r\\n", "expect:in ?\\r\\n> x = 1",
      "send:2\\r", "expect:> ", "send:x\\r", "expect:12\\r\\n> ",
      "send:\\x04", "exit"))
  end)

  it("keeps io.stdout and io.stderr as on a terminal", function()
    -- They write through the REPL's streams now (to see the output).
    if not has_python then return end
    check(session(
      "expect:> ", "send:io.stdout == io.output(), io.stdout:seek()\\r",
      "expect:true\\tnil\\t\"Illegal seek\"\\t29\\r\\n> ",
      "send:io.stderr:write('e\\\\n') == io.stderr\\r", "expect:e\\r\\ntrue\\r\\n> ",
      "send:\\x04", "exit"))
  end)

  it("without a way to clear the line, draws the prompt and the line again below the output", function()
    -- TERM=dumb: the old line stays; the output starts on the next line.
    if not has_python then return end
    check(output_while_typing("dumb", "\\r\\r\\ntick\\r\\n> print('ab"))
  end)

  it("completes globals, fields and methods with Tab", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:string.for\\t", "expect:string.format",
      "send:('%d', 5)\\r", "expect:\"5\"\r\n> ",
      "send:loop:is_clo\\t", "expect:loop:is_closed", "send:()\\r", "expect:false\r\n> ",
      "send:eddy.sle\\t", "expect:eddy.sleep", "send:(0)\\r", "expect:> ",
      "send:\\x04", "exit"))
  end)

  it("Ctrl-D cancels background tasks and closes the loop", function()
    if not has_python then return end
    check(session(
      "expect:> ", "send:t = loop:create_task(function() eddy.sleep(100) end)\\r", "expect:> ",
      "send:\\x04", "exit"))
  end)

  -- libedit's vi commands write out of their buffers (docs/cli.md): an
  -- editrc asking for vi mode gets a warning and emacs keys, eddy's own
  -- (Tab) included.
  it("refuses libedit's vi mode (bind -v in the editrc) with a warning: emacs keys", function()
    if not has_python then return end
    local rc = cli.tempfile("bind -v\n")  -- EDITRC: libedit reads it instead of ~/.editrc
    local wrapper = cli.tempfile("#!/bin/sh\nEDITRC=" .. q(rc) .. " exec " .. q(cli.binary) .. "\n")
    assert(os.execute("chmod +x " .. q(wrapper)))
    check(session_with(wrapper, "xterm",
      "expect:eddy: the line editor's vi mode is not supported", "expect:> ",
      "send:x = 'abc'\\x01y\\x05 .. 'd'\\r", "expect:> ",  -- Ctrl-A, Ctrl-E: emacs
      "send:yx\\r", "expect:\"abcd\"\r\n> ",
      "send:string.for\\t", "expect:mat", "send:('%d', 5)\\r", "expect:\"5\"\r\n> ",
      "send:\\x04", "exit"))
  end)

  -- Ctrl-Z under a shell with job control (bash -i on the pty), then fg:
  -- the terminal back in editing mode (Ctrl-A moves the cursor at once,
  -- TERM=xterm's "\e[3G"; the shell gave it back in its own line mode)
  -- and the line drawn again below the shell's output.
  local function stop_and_resume(setup)
    local shell = cli.tempfile("#!/bin/sh\nPS1='SH$ ' exec bash --norc --noprofile -i\n")
    assert(os.execute("chmod +x " .. q(shell)))
    check(session_with(shell, "xterm",
      "expect:SH$ ", "send:" .. setup .. q(cli.binary) .. "\\r", "expect:> ",
      "send:x = 1 + ", "expect:x = 1 + ", "send:\\x1a", "expect:Stopped", "expect:SH$ ",
      "send:fg\\r", "expect:\r> x = 1 + ", "send:\\x01", "expect:\27[3G",
      "send:\\x0breturn 5\\r", "expect:5\r\n> ",
      "send:\\x04", "expect:SH$ ", "send:exit\\r", "exit"))
  end

  it("Ctrl-Z stops it as a shell's job; fg gives back the line, in editing mode", function()
    if not has_python then return end
    stop_and_resume("")
  end)

  it("Ctrl-Z as a key (the terminal's suspend character is another) stops it too", function()
    if not has_python then return end
    stop_and_resume("stty susp ^Y; ")
  end)
end)
