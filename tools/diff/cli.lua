-- Differential test of the eddy executable against lua.c (Debian's
-- lua5.4): the same command lines, environment and stdin under both, and
-- their stdout, stderr and exit status compared.
--
-- Usage: lua5.4 tools/diff/cli.lua [case-prefix]   (eddy runs it as well)
-- EDDY: the eddy binary, default build/eddy; LUA: the reference, default
-- /usr/bin/lua5.4.  Prints each differing case with both results, then
-- "N cases, M differ, K as documented"; exits 1 when M > 0.  A case
-- marked 'known' is one of eddy's documented differences (docs/cli.md)
-- and prints as KNOWN.
--
-- Normalized before comparing: each program's path (argv[0], in messages
-- and arg[-n]) becomes PROG, and eddy's "eddy X.Y.Z  " before Lua's
-- version line is dropped (eddy prints its own version, API.md §11),
-- and addresses ("table: 0x...") become ADDR.

local EDDY = os.getenv("EDDY") or "build/eddy"
local LUA = os.getenv("LUA") or "/usr/bin/lua5.4"
local only = arg[1]

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("l")
  p:close()
  return cwd .. "/" .. path
end
EDDY = absolute(EDDY)

-- Every case runs in this directory, which holds the fixtures below.
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir " .. q(dir) .. " " .. q(dir .. "/adir")))
local fixtures = {
  ["mod.lua"] = "print('mod loading', ...) return {name = 'mod'}",
  ["failmod.lua"] = "error('failmod fails')",
  ["init.lua"] = "print('init file', arg and arg[0])",
  ["badinit.lua"] = "error('init file fails')",
  ["args.lua"] = "print(#arg, arg[-3], arg[-2], arg[-1], arg[0], ...)\n"
    .. "for i = -5, #arg do io.write(tostring(arg[i]), ' ') end print()",
  ["shebang.lua"] = "#!/usr/bin/env lua\nprint('shebang', ...)",
  ["shebang_err.lua"] = "#!/usr/bin/env lua\n\nerror('line 3')",
  ["syntax.lua"] = "print('x'\nlocal = 1",
  ["stdin.lua"] = "local all = io.read('a') io.write('[', all, ']\\n')",
  ["lines.lua"] = "for l in io.lines() do print('line', l) end",
  ["err_string.lua"] = "local function f() error('boom') end f()",
  ["err_level2.lua"] = "local function f() error('lvl2', 2) end\nf()",
  ["err_level0.lua"] = "error('lvl0', 0)",
  ["err_table.lua"] = "error({})",
  ["err_tostring.lua"] = "error(setmetatable({}, {__tostring = function() return 'custom' end}))",
  ["err_tostring_bad.lua"] = "error(setmetatable({}, {__tostring = function() return 42 end}))",
  ["err_tostring_err.lua"] = "error(setmetatable({}, {__tostring = function() error('in tostring') end}))",
  ["err_nil.lua"] = "error()",
  ["err_number.lua"] = "error(42)",
  ["err_bool.lua"] = "error(false)",
  ["err_runtime.lua"] = "local t = nil\nprint(t.x)",
  ["exit_true.lua"] = "io.write('a') os.exit(true)",
  ["exit_false.lua"] = "io.write('a') os.exit(false)",
  ["exit_n.lua"] = "print('out') os.exit(7)",
  ["exit_close.lua"] = "local t <close> = setmetatable({}, {__close = function() print('closed') end})\n"
    .. "setmetatable({}, {__gc = function() print('gc') end}) os.exit(3, true)",
  ["exit_noclose.lua"] = "setmetatable({}, {__gc = function() print('gc') end}) os.exit(0)",
  ["gc_at_end.lua"] = "setmetatable({}, {__gc = function() print('gc at close') end})",
  ["returns.lua"] = "return 1, 2, 3",
  ["warn.lua"] = "warn('one') warn('@on') warn('two', 'parts') warn('@off') warn('three')",
  ["nilmod.lua"] = "x_loaded = true",
  ["falsemod.lua"] = "return false",
  ["overflow.lua"] = "local function f(n) return 1 + f(n + 1) end\nf(1)",
  ["coerr.lua"] = "local co = coroutine.wrap(function() error('in co') end)\nco()",
  ["gcerr.lua"] = "setmetatable({}, {__gc = function() error('gcerr') end})",
  ["nomem.lua"] = "local t = {} for i = 1, 40 do t[i] = string.rep('x', 2^30) end",
  ["partial.lua"] = "io.write('no newline')",
  ["readnum.lua"] = "print(io.read('n', 'n', 'l'))",
  ["closeout.lua"] = "io.stdout:close() print('x')",
  ["main_thread.lua"] = "print(coroutine.isyieldable(), select(2, coroutine.running()))",
}
for name, text in pairs(fixtures) do writefile(dir .. "/" .. name, text) end

-- The matrix: {name, args, stdin = ..., env = ...}.  'env' is a shell
-- prefix; LUA_PATH points at the fixtures unless a case sets its own.
local cases = {}
local function case(name, args, opts)
  opts = opts or {}
  opts.name, opts.args = name, args
  cases[#cases + 1] = opts
end

-- Options alone.
case("opt-none-stdin-script", "", {stdin = "print('from stdin', ...)"})
case("opt-none-empty-stdin", "")
case("opt-v", "-v")
case("opt-v-script", "-v args.lua x")
case("opt-v-e", "-v -e 'print(1)'")
case("opt-vv", "-v -v")
case("opt-e", "-e 'print(1)'")
case("opt-e-joined", "-e'print(1)'")
case("opt-e-several", "-e 'x=1' -e 'x=x+1' -e'print(x)'")
case("opt-e-missing", "-e")
case("opt-e-dash-arg", "-e -v")
case("opt-e-error", "-e 'error(\"e fails\")' -e 'print(\"not reached\")'")
case("opt-e-syntax", "-e 'x ='")
case("opt-e-returns", "-e 'return 1, 2'")
case("opt-l", "-l mod -e 'print(mod.name)'")
case("opt-l-joined", "-lmod -e 'print(mod.name)'")
case("opt-l-global", "-l m=mod -e 'print(m.name, mod)'")
case("opt-l-global-empty", "-l =mod -e 'print(_G[\"\"])'")
case("opt-l-missing", "-l nosuchmod")
case("opt-l-failing", "-l failmod -e 'print(\"not reached\")'")
case("opt-l-no-arg", "-l")
case("opt-l-dotted", "-l string.x")
case("opt-W", "-W -e 'warn(\"w1\")'")
case("opt-W-after-e", "-e 'warn(\"w1\")' -W -e 'warn(\"w2\")'")
case("opt-W-script", "-W warn.lua")
case("opt-warn-script", "warn.lua")
case("opt-Wx", "-Wx")
case("opt-E-joined-bad", "-Ex")
case("opt-vx", "-vx")
case("opt-ix", "-ix")
case("opt-unknown", "-x")
case("opt-unknown-long", "--foo")
case("opt-unknown-after-e", "-e 'print(1)' -z")
case("opt-dashdash", "-- args.lua a b")
case("opt-dashdash-only", "--", {stdin = "print('dd stdin', ...)"})
case("opt-dashdash-dash", "-- - a", {stdin = "print('stdin after --', ...)"})
case("opt-dash", "- a b", {stdin = "print('stdin', ...) print(arg[0], arg[-1])"})
case("opt-dash-e", "-e 'x=5' - a", {stdin = "print('stdin', x, ...)"})
case("opt-after-script", "args.lua -e 'print(2)' -v")
case("opt-script-then-dashdash", "args.lua -- x")
case("opt-order-1", "-W -e 'warn(\"a\")' -l mod args.lua 1")
case("opt-order-2", "-l mod -W -e 'print(mod.name)' -v args.lua 1")
case("opt-order-3", "-e 'print(1)' -l mod -e 'print(mod.name)'")
case("opt-E", "-E -e 'print(package.path == \"\" , x)'",
     {env = "LUA_INIT='x = 1'"})
-- LUA_INIT and friends.
case("init-code", "-e 'print(x)'", {env = "LUA_INIT='x = 10'"})
case("init-5_4-wins", "-e 'print(x)'", {env = "LUA_INIT='x = 10' LUA_INIT_5_4='x = 54'"})
case("init-file", "-e 'print(1)'", {env = "LUA_INIT=@init.lua"})
case("init-file-5_4", "args.lua", {env = "LUA_INIT_5_4=@init.lua"})
case("init-file-missing", "-e 'print(1)'", {env = "LUA_INIT=@nosuch.lua"})
case("init-file-failing", "-e 'print(1)'", {env = "LUA_INIT=@badinit.lua"})
case("init-code-failing", "-e 'print(1)'", {env = "LUA_INIT='error(\"init fails\")'"})
case("init-code-syntax", "-e 'print(1)'", {env = "LUA_INIT='x ='"})
case("init-5_4-failing", "-e 'print(1)'", {env = "LUA_INIT_5_4='error(\"init54\")'"})
case("init-empty", "-e 'print(1)'", {env = "LUA_INIT="})
case("init-E", "-E -e 'print(x)'", {env = "LUA_INIT='x = 10' LUA_INIT_5_4='x = 54'"})
case("init-E-file", "-E -e 'print(1)'", {env = "LUA_INIT=@badinit.lua"})
case("init-before-l", "-l mod", {env = "LUA_INIT='print(\"init first\")'"})
case("init-sees-arg", "args.lua a", {env = "LUA_INIT='print(#arg, arg[0])'"})
case("path-env", "-e 'print(package.path, package.cpath)'",
     {env = "LUA_PATH='/p/?.lua;;' LUA_CPATH='/c/?.so'"})
case("path-env-5_4", "-e 'print(package.path, package.cpath)'",
     {env = "LUA_PATH='/p/?.lua' LUA_PATH_5_4='/p54/?.lua' LUA_CPATH_5_4='/c54/?.so;;'"})
case("path-E", "-E -e 'print(package.path, package.cpath)'",
     {env = "LUA_PATH='/p/?.lua' LUA_PATH_5_4='/p54/?.lua' LUA_CPATH='/c/?.so'"})
case("path-E-l", "-E -l mod", {env = "LUA_PATH='./?.lua'"})
-- arg and ...
case("arg-script", "args.lua a b c")
case("arg-script-opts", "-W -e 'x=1' args.lua a")
case("arg-no-script", "-e 'for i = -3, 1 do print(i, arg[i]) end'")
case("arg-empty-args", "args.lua '' ''")
case("arg-dash-script", "- x y", {stdin = "print(#arg, arg[0], arg[-1], ...)"})
case("main-thread", "main_thread.lua")
case("script-returns", "returns.lua")
-- Errors.
for _, name in ipairs{"err_string", "err_level2", "err_level0", "err_table",
                      "err_tostring", "err_tostring_bad", "err_tostring_err",
                      "err_nil", "err_number", "err_bool", "err_runtime",
                      "syntax", "shebang_err"} do
  case("script-" .. name, name .. ".lua")
end
case("script-missing", "nosuch.lua")
case("script-directory", "adir")
case("script-shebang", "shebang.lua a")
case("script-error-e-after", "err_string.lua -e 'print(1)'")
case("e-error-table", "-e 'error({})'")
case("e-error-nil", "-e 'error(nil)'")
case("e-error-level", "-e 'error(\"x\", 2)'")
-- os.exit.
for _, name in ipairs{"exit_true", "exit_false", "exit_n", "exit_close",
                      "exit_noclose", "gc_at_end"} do
  case("script-" .. name, name .. ".lua")
end
case("exit-e-float", "-e 'os.exit(2.0)'")
case("exit-e-bad", "-e 'os.exit(\"x\")'")
case("exit-e-big", "-e 'os.exit(256 + 3)'")
case("exit-e-neg", "-e 'os.exit(-1)'")
case("arg-nil", "-e 'arg = nil' args.lua a")
case("arg-not-table", "args.lua a", {env = "LUA_INIT='arg = 5'"})
case("arg-shrunk", "-e 'arg[2] = nil' args.lua a b c")
case("script-empty-name", "''")
case("script-dash-twice", "- -", {stdin = "print(...)"})
case("l-nilmod", "-l nilmod -e 'print(nilmod, x_loaded)'")
case("l-falsemod", "-l falsemod -e 'print(falsemod)'")
case("script-overflow", "overflow.lua")
case("script-coerr", "coerr.lua")
case("script-gcerr", "gcerr.lua")
case("script-gcerr-W", "-W gcerr.lua")
case("script-nomem", "nomem.lua")
case("script-partial", "partial.lua")
case("script-readnum", "readnum.lua", {stdin = "12 3.5 rest\n"})
case("script-closeout", "closeout.lua")
case("opt-E-v", "-E -v")
case("opt-i-e-order", "-i -e 'print(1)'", {stdin = "2\n"})
case("opt-e-exit-before-script", "-e 'os.exit(4)' args.lua")
case("opt-e-exit-close", "-e 'os.exit(true, true)' args.lua")
-- Scripts reading stdin.
case("stdin-read-all", "stdin.lua", {stdin = "hello\nworld\n"})
case("stdin-lines", "lines.lua", {stdin = "a\nb\n\nc"})
case("stdin-empty", "stdin.lua")
case("stdin-script-shebang", "-", {stdin = "#!/x\nprint('sb', ...)"})
case("stdin-script-syntax", "-", {stdin = "x ="})
case("stdin-script-error", "", {stdin = "error('from stdin')",
     known = "status 1: lua.c ignores the status of stdin run as the script"})
-- The non-terminal REPL.
local repl = {
  expr = "1 + 1\nreturn 2, 3\n'str'\nnil\n",
  eq = "=1+2\n= 'x'\n=nil\n",
  stmt = "x = 5\nprint(x)\nlocal y = 1\nprint(y)\n",
  incomplete = "function f()\nreturn 42\nend\nprint(f())\nfor i = 1, 2 do\nprint(i)\nend\n",
  incomplete_eof = "if true then\n",
  string_incomplete = "x = [[\nabc\n]]\nprint(x)\n",
  errors = "error('boom')\nerror({})\nerror(setmetatable({}, {__tostring = function() return 'TS' end}))\n"
    .. "error()\nerror(1)\nx = =\nprint('after')\n",
  syntax = "1 +\n2\nlocal\n)\nprint('ok')\n",
  values = "print\n{}\nmath.huge\n1/0, -1/0, 0/0\n2^53\n",
  multi = "1, nil, 3\nnil, nil\n",
  tostring_err = "setmetatable({}, {__tostring = function() error('ts fails') end})\n"
    .. "setmetatable({}, {__tostring = function() return 1 end})\nprint('after')\n",
  name_field = "setmetatable({}, {__name = 'MyType'})\n",
  prompt_str = "_PROMPT = 'P> '\n1\n_PROMPT2 = 'Q> '\nif x then\nend\n",
  prompt_num = "_PROMPT = 42\n1\n",
  prompt_table = "_PROMPT = setmetatable({}, {__tostring = function() return 'T> ' end})\n"
    .. "_PROMPT2 = setmetatable({}, {__tostring = function() return 'T2> ' end})\n1\nif x then\nend\n",
  prompt_bad = "_PROMPT = setmetatable({}, {__tostring = function() error('prompt fails') end})\n1\n2\n",
  prompt_bad2 = "_PROMPT2 = setmetatable({}, {__tostring = function() return {} end})\nif x then\nend\nprint(1)\n",
  prompt_plain_table = "_PROMPT = {}\n1\n",
  exit = "print(1)\nos.exit(4)\nprint(2)\n",
  return_stmt = "return\nreturn nil\n",
  shebang_line = "#!/x\nprint(1)\n",
  dollar = "x = 1 print(x)\n",
  long_line = ("x = 1 "):rep(200) .. "\nprint(x)\n",
  no_newline = "print('no nl')",
  cr = "print(1)\r\n",
  comment = "-- just a comment\n--[[ long\ncomment ]]\n",
  arg_in_repl = "print(arg[0], #arg)\n",
  unfinished_string = "'abc\n",
  gc = "collectgarbage()\ncollectgarbage('count') > 0\n",
  many_results = "table.unpack({}, 1, 300)\n",
  print_nil = "print = nil\n1\nx = 1\n",
  print_errors = "print = error\n'msg'\n",
  error_levels = "error('l1', 1)\nerror('l2', 2)\nerror('l0', 0)\nlocal function f() error('deep', 2) end f()\n",
  prompt_mid = "_PROMPT2 = '+ '\nif x then _PROMPT2 = '* '\nend\nif x then\nend\n",
  exit_close = "os.exit(true, true)\n",
  semicolon = ";\n;;\nreturn;\n",
  goto_label = "::a::\ngoto b\n",
  long_string = "[==[\nx]==]\n",
  equals_only = "=\n= \n",
  incomplete_error = "for i = 1, 2 do\nerror('in loop')\nend\nprint('after')\n",
  utf8 = "'h\195\169'\nprint('\255')\n",
}
-- docs/cli.md, "Differences from lua.c, all deliberate".
local null = "the real message where lua.c prints (null)"
local repl_known = {
  incomplete_eof = null,
  unfinished_string = null,
  cr = "input is echoed as is; readline takes \\r for the end of a line",
}
local names = {}
for name in pairs(repl) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  case("repl-" .. name, "-i", {stdin = repl[name], known = repl_known[name]})
end
case("repl-after-script", "-i args.lua a", {stdin = "print(arg[1])\n"})
case("repl-after-e", "-e 'x = 9' -i", {stdin = "x\n"})
case("repl-after-failing-script", "-i err_string.lua", {stdin = "print(1)\n"})
case("repl-with-W", "-W -i", {stdin = "warn('in repl')\n"})
case("repl-dash-i", "-i -", {stdin = "print('script from stdin')\n"})
case("repl-v-i", "-v -i", {stdin = "1\n"})
case("repl-prompt-bad-from-e", "-e '_PROMPT = setmetatable({}, {__tostring = error})' -i",
     {stdin = "1\n", known = null})
case("repl-prompt-bad-from-script", "-i args.lua", {env = "LUA_INIT='_PROMPT2 = {}; _PROMPT = setmetatable({}, {__tostring = error})'",
     stdin = "1\n", known = null})

-- Run one program on a case; {code =, out =, err =}, normalized.
local function run(program, c)
  local out, err, input = dir .. "/.out", dir .. "/.err", dir .. "/.in"
  writefile(input, c.stdin or "")
  -- The caller's LUA_* variables do not leak in; c.env's come last, and win.
  local env = "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH_5_4 -u LUA_CPATH"
    .. " -u LUA_CPATH_5_4 LUA_PATH='./?.lua' " .. (c.env or "")
  local cmd = string.format("cd %s && %s timeout 10 %s %s <%s >%s 2>%s",
                            q(dir), env, q(program), c.args, q(input),
                            q(out), q(err))
  local _, _, code = os.execute(cmd)
  local function norm(s)
    s = s:gsub(program:gsub("%p", "%%%0"), "PROG")
    s = s:gsub("eddy %d+%.%d+%.%d+  (Lua 5%.4)", "%1")
    s = s:gsub("0x%x+", "ADDR")  -- tostring of tables and functions
    return s
  end
  return {code = code, out = norm(readfile(out)), err = norm(readfile(err))}
end

local function show(label, r)
  print(string.format("  %s: status %s", label, tostring(r.code)))
  print("    stdout: " .. string.format("%q", r.out))
  print("    stderr: " .. string.format("%q", r.err))
end

local total, differ, known = 0, 0, 0
for _, c in ipairs(cases) do
  if not only or c.name:sub(1, #only) == only then
    total = total + 1
    local l, e = run(LUA, c), run(EDDY, c)
    if l.code ~= e.code or l.out ~= e.out or l.err ~= e.err then
      local what = c.known and "KNOWN" or "DIFF"
      if c.known then known = known + 1 else differ = differ + 1 end
      print(string.format("%s %s: %s%s", what, c.name, c.env and (c.env .. " ") or "", c.args))
      if c.known then print("  (" .. c.known .. ")") end
      show("lua5.4", l)
      show("eddy  ", e)
    end
  end
end
os.execute("rm -rf " .. q(dir))
print(string.format("%d cases, %d differ, %d as documented", total, differ, known))
os.exit(differ == 0)
