-- Differential harness, eddy side: subprocesses, pipes, signals, the
-- executor.  The same scenarios as tools/diff/proc.py (CPython), printed
-- the same way, one line per event, "scenario: event"; tools/diff/run.sh
-- diffs the two.  Usage: eddy proc.lua [scenario-name-prefix]
local eddy = require "eddy"
local errors = eddy.errors
local signal = eddy.signal
local sp = eddy.subprocess
local PIPE, DEVNULL, STDOUT = sp.PIPE, sp.DEVNULL, sp.STDOUT

local scenarios = {}
local function scenario(name, fn) scenarios[#scenarios + 1] = {name = name, fn = fn} end

package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local trace = require "trace"
local q, show, ename, emsg = trace.q, trace.show, trace.ename, trace.emsg

local Trace = trace.class()

function Trace:data_of(fd, data)
  if self.data and self.data[1] == fd then
    self.data[2] = self.data[2] + #data
  else
    self:flush()
    self.data = {fd, #data}
  end
end

function Trace:flush()
  if self.data then
    self.lines[#self.lines + 1] = string.format("data fd=%d n=%d", self.data[1], self.data[2])
    self.data = nil
  end
end

local function sleep(s) eddy.sleep(s) end
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- os.pipe(): a FIFO opened at both ends (the read-write open keeps
-- the other two opens from blocking).
local function os_pipe()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkfifo " .. path))
  local both = assert(io.open(path, "r+"))
  local r, w = assert(io.open(path, "r")), assert(io.open(path, "w"))
  both:close()
  os.remove(path)
  r:setvbuf("no")
  w:setvbuf("no")
  return r, w
end

-- {================================================= subprocess protocol

-- A protocol tracing its callbacks, with 'extra' ones (a table of
-- functions of t) on top of those every protocol here traces alike.
local function recorder(t, done, extra)
  local p = {
    connection_made = function() t("connection_made") end,
    pause_writing = function() t("pause_writing") end,
    resume_writing = function() t("resume_writing") end,
    connection_lost = function(_, exc)
      t("connection_lost", ename(exc))
      if not done:done() then done:set_result(nil) end
    end,
  }
  for name, f in pairs(extra) do p[name] = f end
  return p
end

local function protocol(t, done)
  return recorder(t, done, {
    pipe_data_received = function(_, fd, data) t:data_of(fd, data) end,
    pipe_connection_lost = function(_, fd, exc) t("pipe_connection_lost", fd, ename(exc)) end,
    process_exited = function() t("process_exited") end,
  })
end

local function shell(t, cmd, opts)
  local loop = eddy.get_running_loop()
  local done = loop:create_future()
  local tr = loop:subprocess_shell(function() return protocol(t, done) end, cmd, opts)
  return tr, done
end

-- Until connection_lost; then the return code, and the trace.
local function finish(t, tr, done, sort_middle)
  eddy.wait_for(done, 5)
  t("returncode", tr:get_returncode())
  t:dump(sort_middle)
end

scenario("sp_close_then_exit", function(t)
  local tr, done = shell(t, "printf out; printf err >&2; sleep 0.05; exec 1>&-; sleep 0.05; exec 2>&-; sleep 0.2; exit 3",
                         {stdin = DEVNULL})
  finish(t, tr, done)
end)

scenario("sp_exit_then_close", function(t)
  local tr, done = shell(t, "printf early; sleep 0.05; (sleep 0.3; printf late) & exit 0",
                         {stdin = DEVNULL, stderr = DEVNULL})
  sleep(0.2)
  t("returncode", tr:get_returncode())
  local w = eddy.create_task(function() return tr:_wait() end)
  sleep(0.01)
  t("wait done", w:done())
  eddy.wait_for(done, 5)
  t("wait", w:await())
  t:dump()
end)

scenario("sp_killed", function(t)
  local tr, done = shell(t, "exec sleep 5", {stdin = DEVNULL})
  tr:send_signal(signal.SIGTERM)
  finish(t, tr, done, true)
end)

scenario("sp_unread_stdin", function(t)
  local tr, done = shell(t, "exec sleep 0.2", {stdout = DEVNULL, stderr = DEVNULL})
  tr:get_pipe_transport(0):write(("x"):rep(300000))
  t("buffered", tr:get_pipe_transport(0):get_write_buffer_size())
  finish(t, tr, done, true)
end)

local function try_signals(t, tr, when)
  for _, m in ipairs {"send_signal", "terminate", "kill"} do
    local ok, err = pcall(tr[m], tr, m == "send_signal" and signal.SIGHUP or nil)
    t(when, m, ok and "ok" or ename(err))
  end
end

scenario("sp_after_exit", function(t)
  -- A grandchild keeps stdout open a while after the shell exited.
  local tr, done = shell(t, "sleep 0.05; (sleep 0.3; :) & exit 7", {stdin = DEVNULL, stderr = DEVNULL})
  t("pid", math.type(tr:get_pid()) == "integer" and "int" or type(tr:get_pid()))
  for fd = 0, 2 do t("pipe", fd, tr:get_pipe_transport(fd) ~= nil) end
  while tr:get_returncode() == nil do sleep(0.01) end
  try_signals(t, tr, "exited")
  eddy.wait_for(done, 5)
  try_signals(t, tr, "finished")
  t("returncode", tr:get_returncode(), "closing", tr:is_closing())
  tr:close()
  t("pipe 1 after close", tr:get_pipe_transport(1) ~= nil)
  t:dump()
end)

scenario("sp_close_after_exit", function(t)
  -- The shell has exited; a grandchild holds stdout; close() then.
  local tr, done = shell(t, "(sleep 0.5; printf late) & exit 6", {stdin = DEVNULL, stderr = DEVNULL})
  while tr:get_returncode() == nil do sleep(0.01) end
  tr:close()
  t("closing", tr:is_closing())
  finish(t, tr, done)
end)

scenario("sp_close_running", function(t)
  local tr, done = shell(t, "exec sleep 5")
  tr:close()
  t("closing", tr:is_closing())
  finish(t, tr, done, true)
end)

-- A shell script writing, closing and sleeping at random, then ending by
-- exit or by signal; and the parent's choice for stdin.
local function random_child(rng)
  local steps, open_fds = {"sleep 0.05"}, {[1] = true, [2] = true}  -- the parent writes stdin first
  for _ = 1, rng:pick {1, 2, 3, 4, 5} do
    local what = rng:pick {"write", "write", "close", "sleep"}
    local fd = rng:pick {1, 2}
    if what == "write" and open_fds[fd] then
      local n = rng:pick {0, 1, 5000, 70000}
      steps[#steps + 1] = string.format("head -c %d /dev/zero%s", n, fd == 2 and " >&2" or "")
    elseif what == "close" and open_fds[fd] then
      open_fds[fd] = nil
      steps[#steps + 1] = string.format("exec %d>&-", fd)
    elseif what == "sleep" then
      steps[#steps + 1] = "sleep 0.0" .. rng:pick {1, 2, 3}
    end
  end
  steps[#steps + 1] = rng:pick {"exit 0", "exit 1", "exit 42", "kill -TERM $$", "kill -KILL $$"}
  local stdin = rng:pick {"DEVNULL", "PIPE"}
  local written = stdin == "PIPE" and rng:pick {0, 10, 100000} or 0
  return table.concat(steps, "; "), stdin, written
end

-- Seeded random children: the set of callbacks, the bytes per fd and the
-- return code must agree (their order may race).
scenario("sp_random", function(t)
  for seed = 1, 40 do
    local cmd, stdin, written = random_child(trace.Rng(seed))
    local lt = setmetatable({name = "sp_random " .. seed, lines = {}}, Trace)
    local tr, done = shell(lt, cmd, {stdin = stdin == "DEVNULL" and DEVNULL or PIPE})
    if written > 0 then tr:get_pipe_transport(0):write(("i"):rep(written)) end
    eddy.wait_for(done, 5)
    local totals, seen, events = {}, {}, {}
    for i = 2, #lt.lines - 1 do
      local line = lt.lines[i]
      local fd, n = line:match("^data (fd=%d) n=(%d+)")
      if fd then
        totals[fd] = (totals[fd] or 0) + tonumber(n)
      elseif not seen[line] then
        seen[line] = true
        events[#events + 1] = (line:gsub("pause_writing", "pause_writing (stdin)"))
      end
    end
    table.sort(events)
    local data = {}
    for _, fd in ipairs {"fd=1", "fd=2"} do
      if totals[fd] then data[#data + 1] = fd .. ":" .. totals[fd] end
    end
    t(seed, cmd, "stdin", stdin, written)
    t(seed, "first", lt.lines[1], "last", lt.lines[#lt.lines], "returncode", tr:get_returncode())
    t(seed, "data", table.concat(data, " "), "events", events)
  end
  t:dump()
end)

-- }=================================================

-- {================================================= Process (streams)

scenario("pr_returncodes", function(t)
  for _, cmd in ipairs {"exit 3", "kill -9 $$", "kill -TERM $$", "true"} do
    local p = eddy.create_subprocess_shell(cmd)
    t("'" .. cmd .. "'", p:wait(), p.returncode)
  end
  t:dump()
end)

local function opt(s) return s and q(s) or nil end

scenario("pr_communicate", function(t)
  local p = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE, stderr = PIPE})
  local out, err = p:communicate("hello")
  t("out", q(out), "err", q(err), p.returncode)
  p = eddy.create_subprocess_exec("true", {stdin = PIPE, stdout = PIPE})
  out, err = p:communicate(("y"):rep(1000000))  -- never read
  t("unread", q(out), err, p.returncode)
  local cmd = "head -c 1000000 /dev/zero; head -c 700000 /dev/zero >&2"
  p = eddy.create_subprocess_shell(cmd, {stdout = PIPE, stderr = PIPE})
  out, err = p:communicate()
  t("large", #out, #err, p.returncode)
  p = eddy.create_subprocess_shell("exit 4")
  t("no pipes", {n = 2, p:communicate()}, p.returncode)
  t:dump()
end)

scenario("pr_wait_timeout", function(t)
  local p = eddy.create_subprocess_exec("sleep", "5")
  local ok, e = pcall(eddy.wait_for, function() return p:wait() end, 0.1)
  t("wait_for", ename(e), p.returncode)
  p:kill()
  t("wait", p:wait())
  ok, e = pcall(p.send_signal, p, signal.SIGTERM)
  t("send_signal after wait", ok and "ok" or ename(e))
  p = eddy.create_subprocess_exec("sleep", "5", {stdout = PIPE})
  ok, e = pcall(eddy.wait_for, function() return p:communicate() end, 0.1)
  t("communicate wait_for", ename(e), p.returncode)
  p:terminate()
  local out, err = p:communicate()
  t("communicate again", {n = 2, opt(out), err}, p.returncode)
  t:dump()
end)

scenario("pr_big_both_ways", function(t)
  local p = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE})
  local out, err = p:communicate(("q"):rep(3000000))
  t("cat", #out, err, p.returncode)
  p = eddy.create_subprocess_shell("sleep 0.1; exec 0<&-; sleep 0.1; echo closed-stdin", {stdin = PIPE, stdout = PIPE})
  p.stdin:write(("w"):rep(200000))
  local ok, e = pcall(p.stdin.drain, p.stdin)
  t("drain", ok and "ok" or ename(e))
  t("read", q(p.stdout:read()), p:wait())
  t:dump()
end)

scenario("pr_options", function(t)
  local p = eddy.create_subprocess_shell("echo $A-$B; pwd", {stdout = PIPE,
    env = {A = "1", PATH = os.getenv("PATH")}, cwd = "/tmp"})
  t("env cwd", q((p:communicate())))
  p = eddy.create_subprocess_shell("ps -o sid= -p $$ | tr -d ' '; echo $$", {stdout = PIPE,
    start_new_session = true})
  local sid, pid = (p:communicate()):match("(%d+)%s+(%d+)")
  t("new session", sid == pid)
  local a, b = eddy.socket.socketpair(eddy.socket.AF_UNIX, eddy.socket.SOCK_STREAM)
  p = eddy.create_subprocess_exec("bash", "-c", "echo passed >&" .. b:fileno(), {pass_fds = {b:fileno()}})
  p:wait()
  b:close()
  t("pass_fds", q(a:recv(100)))
  a:close()
  local loop = eddy.get_running_loop()
  local done = loop:create_future()
  local tr = loop:subprocess_shell(function() return protocol(t, done) end, "echo o; echo e >&2; exec 1>&-; sleep 0.05",
                                   {stdin = DEVNULL, stderr = STDOUT})
  local pipes = {}
  for fd = 0, 2 do pipes[#pipes + 1] = tr:get_pipe_transport(fd) ~= nil end
  t("stderr=STDOUT pipes", pipes)
  eddy.wait_for(done, 5)
  t:dump()
end)

-- Seeded communicate() mixes: children that read all, some or none of
-- their input; stderr piped, dropped or merged.
scenario("pr_random", function(t)
  for seed = 1, 30 do
    local rng = trace.Rng(seed)
    local child = rng:pick {"cat", "head -c 5000", "true", "sleep 0.05; cat", "cat >/dev/null; echo done",
                            "head -c 70000 >/dev/null; echo e >&2; exit 3", "kill -9 $$"}
    local stderr = rng:pick {"PIPE", "DEVNULL", "STDOUT"}
    local size = rng:pick {"nil", 0, 10, 100000, 1000000}
    local p = eddy.create_subprocess_shell(child, {stdin = PIPE, stdout = PIPE, stderr = sp[stderr]})
    local out, err = eddy.wait_for(function()
      return p:communicate(size ~= "nil" and ("i"):rep(size) or nil)
    end, 10)
    t(seed, "'" .. child .. "'", stderr, size, "->", #out, opt(err), p.returncode)
  end
  t:dump()
end)

scenario("pr_wait_unread", function(t)
  -- The child writes more than the reader buffers (2 * limit) plus what
  -- the pipe holds, minus a little: it exits, its stdout stays unread.
  local p = eddy.create_subprocess_shell("head -c 150000 /dev/zero", {stdout = PIPE})
  sleep(0.2)
  t("exited", p.returncode)
  local ok, rc = pcall(eddy.wait_for, function() return p:wait() end, 1)
  t("wait", ok and rc or ename(rc))
  t("read", #p.stdout:read(), p:wait())
  t:dump()
end)

scenario("pr_stdio", function(t)
  local p = eddy.create_subprocess_shell("echo o; echo e >&2", {stdout = DEVNULL, stderr = PIPE})
  t("devnull", p.stdin, p.stdout, q(p.stderr:read()))
  p:wait()
  p = eddy.create_subprocess_shell("echo o; echo e >&2", {stdout = PIPE, stderr = STDOUT})
  t("stdout", p.stderr, q(p.stdout:read()))
  p:wait()
  local r, w = os_pipe()
  p = eddy.create_subprocess_shell("echo tofd", {stdout = w})
  w:close()
  p:wait()
  t("fd", q(r:read(100)))
  r:close()
  local f = io.tmpfile()
  p = eddy.create_subprocess_shell("echo tofile; echo err >&2", {stdout = f, stderr = f})
  p:wait()
  f:seek("set")
  t("file", q(f:read("a")))
  f:close()
  p = eddy.create_subprocess_shell("cat", {stdin = DEVNULL, stdout = PIPE})
  t("stdin devnull", q(p.stdout:read()), p:wait())
  f = io.tmpfile()
  f:write("from-file")
  f:seek("set")
  p = eddy.create_subprocess_shell("cat", {stdin = f, stdout = PIPE})
  t("stdin file", q(p.stdout:read()), p:wait())
  f:close()
  t:dump()
end)

scenario("pr_edges", function(t)
  local loop = eddy.get_running_loop()
  local errs = {}
  loop:set_exception_handler(function(_, c) errs[#errs + 1] = ename(c.exception) end)
  for _, prog in ipairs {"/nonexistent/prog", "/etc/passwd"} do
    local ok, e = pcall(eddy.create_subprocess_exec, prog)
    t("spawn", prog, ename(e))
  end
  local ok, e = pcall(eddy.create_subprocess_exec, "true", {cwd = "/nonexistent"})
  t("cwd", ename(e))
  local p = eddy.create_subprocess_exec("true", {stdin = PIPE})
  p:wait()
  sleep(0.05)
  p.stdin:write("x")
  ok, e = pcall(p.stdin.drain, p.stdin)
  t("drain after exit", ok and "ok" or ename(e))
  p = eddy.create_subprocess_exec("cat", {stdin = PIPE, stdout = PIPE})
  t("communicate", {n = 2, opt(p:communicate("once"))})
  t("again", {n = 2, opt(p:communicate("twice"))})
  p = eddy.create_subprocess_exec("sleep", "5")
  for _, sig in ipairs {0, 999} do
    ok, e = pcall(p.send_signal, p, sig)
    t("send_signal", sig, ok and "ok" or ename(e))
  end
  p:kill()
  p:wait()
  local bad = {
    connection_made = function() error(errors.ValueError("in connection_made")) end,
    connection_lost = function(_, exc) t("bad connection_lost", ename(exc)) end,
  }
  local tr
  ok, tr = pcall(loop.subprocess_exec, loop, function() return bad end, "sh", "-c", "exit 2",
                 {stdin = DEVNULL})
  if ok then
    t("connection_made raised: returned, closing", tr:is_closing())
    sleep(0.2)
    t("returncode", tr:get_returncode())
  else
    t("connection_made raised", ename(tr))
  end
  sleep(0.05)
  t("handler", errs)
  loop:set_exception_handler(nil)
  t:dump()
end)

-- }=================================================

-- {================================================= pipes

local function pipe_protocol(t, done)
  return recorder(t, done, {
    data_received = function(_, data) t:data_of(0, data) end,
    eof_received = function() t("eof_received") end,
  })
end

local function connect(t, method, file)
  local loop = eddy.get_running_loop()
  local done = loop:create_future()
  local tr = loop[method](loop, function() return pipe_protocol(t, done) end, file)
  return tr, done
end

scenario("pipe_read", function(t)
  local r, w = os_pipe()
  local tr, done = connect(t, "connect_read_pipe", r)
  t("is_reading", tr:is_reading())
  w:write("abc")
  sleep(0.05)
  tr:pause_reading()
  t("paused", tr:is_reading())
  w:write("defg")
  sleep(0.05)
  tr:resume_reading()
  sleep(0.05)
  w:close()
  eddy.wait_for(done, 5)
  t("closing", tr:is_closing(), "reading", tr:is_reading())
  tr:close()
  r, w = os_pipe()
  tr, done = connect(t, "connect_read_pipe", r)
  tr:close()
  t("closed", tr:is_closing())
  eddy.wait_for(done, 5)
  w:close()
  t:dump()
end)

scenario("pipe_write_flow", function(t)
  local r, w = os_pipe()
  local tr, done = connect(t, "connect_write_pipe", w)
  tr:set_write_buffer_limits(100000, 1000)
  t("limits", {tr:get_write_buffer_limits()})
  tr:write(("z"):rep(300000))
  t("buffered", tr:get_write_buffer_size())
  local got = 0
  while got < 300000 do
    sleep(0.01)
    got = got + #r:read(math.min(65536, 300000 - got))
    t("read", got, "buffered", tr:get_write_buffer_size())
  end
  t("can_write_eof", tr:can_write_eof())
  tr:write_eof()
  t("closing", tr:is_closing())
  tr:write("after")
  eddy.wait_for(done, 5)
  t("eof read", q(r:read(10) or ""))
  r:close()
  t:dump()
end)

scenario("pipe_write_abort_close", function(t)
  local r, w = os_pipe()
  local tr, done = connect(t, "connect_write_pipe", w)
  tr:write(("a"):rep(100000))
  t("queued", tr:get_write_buffer_size())
  tr:abort()
  t("aborted: closing", tr:is_closing(), "buffered", tr:get_write_buffer_size())
  eddy.wait_for(done, 5)
  t("in pipe", #r:read(65536))
  r:close()
  r, w = os_pipe()
  tr, done = connect(t, "connect_write_pipe", w)
  tr:writelines {("b"):rep(50000), ("c"):rep(50000)}
  t("queued", tr:get_write_buffer_size())
  tr:close()
  t("closed: closing", tr:is_closing(), "buffered", tr:get_write_buffer_size())
  local got = 0
  while got < 100000 do
    sleep(0.01)
    got = got + #r:read(math.min(65536, 100000 - got))
  end
  eddy.wait_for(done, 5)
  t("got", got, "then", q(r:read(10) or ""))
  r:close()
  r, w = os_pipe()
  tr, done = connect(t, "connect_write_pipe", w)
  tr:write(("d"):rep(100000))
  tr:close()
  r:read(1000)
  r:close()
  eddy.wait_for(done, 5)
  t:dump()
end)

scenario("pipe_misc", function(t)
  local r, w = os_pipe()
  local rt, rdone = connect(t, "connect_read_pipe", r)
  local wt, wdone = connect(t, "connect_write_pipe", w)
  t("limits", {wt:get_write_buffer_limits()})
  for _, a in ipairs {{10, 20}, {n = 2}, {100}, {nil, 5, n = 2}} do
    local shown = {n = 2, a[1], a[2]}
    local ok, e = pcall(wt.set_write_buffer_limits, wt, a[1], a[2])
    if ok then t("set limits", shown, {wt:get_write_buffer_limits()})
    else t("set limits", shown, ename(e)) end
  end
  wt:write("")
  t("empty write: buffered", wt:get_write_buffer_size())
  wt:write_eof()
  for _, c in ipairs {{"write_eof again", function() wt:write_eof() end},
                      {"write after eof", function() wt:write("x") end},
                      {"writelines after eof", function() wt:writelines {"x"} end},
                      {"close", function() wt:close() end}} do
    local ok, e = pcall(c[2])
    t(c[1], ok and "ok" or ename(e))
  end
  eddy.wait_for(rdone, 5)
  eddy.wait_for(wdone, 5)
  rt:close()
  rt:pause_reading()
  rt:resume_reading()
  t("after close: reading", rt:is_reading(), "closing", rt:is_closing())
  t:dump()
end)

scenario("pipe_reader_gone", function(t)
  local r, w = os_pipe()
  local tr, done = connect(t, "connect_write_pipe", w)
  tr:write(("a"):rep(10))
  r:read(10)
  r:close()
  eddy.wait_for(done, 5)
  t("nothing queued: closing", tr:is_closing())
  r, w = os_pipe()
  tr, done = connect(t, "connect_write_pipe", w)
  tr:write(("b"):rep(100000))
  t("queued", tr:get_write_buffer_size())
  r:close()
  eddy.wait_for(done, 5)
  r, w = os_pipe()
  tr, done = connect(t, "connect_write_pipe", w)
  r:close()
  tr:write("c")  -- before the loop noticed: EPIPE from write()
  t("after write", tr:is_closing())
  eddy.wait_for(done, 5)
  t:dump()
end)

scenario("pipe_child", function(t)
  -- A child holds the other end; it exits.
  local r, w = os_pipe()
  local p = eddy.create_subprocess_shell("printf from-child", {stdout = w})
  w:close()
  local tr, done = connect(t, "connect_read_pipe", r)
  eddy.wait_for(done, 5)
  p:wait()
  r, w = os_pipe()
  p = eddy.create_subprocess_shell("exec head -c 5 >/dev/null", {stdin = r})
  r:close()
  tr, done = connect(t, "connect_write_pipe", w)
  tr:write("12345")
  p:wait()
  sleep(0.05)
  tr:write("more")
  eddy.wait_for(done, 5)
  t:dump()
end)

scenario("pipe_raising", function(t)
  local loop = eddy.get_running_loop()
  local errs = {}
  loop:set_exception_handler(function(_, c) errs[#errs + 1] = ename(c.exception) end)
  local r, w = os_pipe()
  local done = loop:create_future()
  local proto = pipe_protocol(t, done)
  proto.data_received = function()
    t("data_received raises")
    error(errors.ValueError("data"))
  end
  proto.eof_received = function()
    t("eof_received raises")
    error(errors.ValueError("eof"))
  end
  loop:connect_read_pipe(function() return proto end, r)
  w:write("1")
  sleep(0.05)
  w:write("2")
  sleep(0.05)
  w:close()
  eddy.wait_for(done, 5)
  t("errors", errs)
  errs = {}
  r, w = os_pipe()
  proto = pipe_protocol(t, done)
  proto.connection_made = function()
    t("connection_made raises")
    error(errors.ValueError("made"))
  end
  local ok, tr = pcall(loop.connect_read_pipe, loop, function() return proto end, r)
  if ok then
    sleep(0.05)
    t("returned, closing", tr:is_closing(), "errors", errs)
    tr:close()
  else
    t("connect_read_pipe", ename(tr))
  end
  w:close()
  loop:set_exception_handler(nil)
  t:dump()
end)

-- }=================================================

-- {================================================= signals

local function catch(t, what, fn, ...)
  local r = table.pack(pcall(fn, ...))
  if r[1] then t(what, "->", show(r[2]))
  else t(what, "->", ename(r[2]), emsg(r[2])) end
end

local function noop() end

scenario("sig_api", function(t)
  local loop = eddy.get_running_loop()
  catch(t, "add USR1", loop.add_signal_handler, loop, signal.SIGUSR1, noop)
  catch(t, "add USR1 again", loop.add_signal_handler, loop, signal.SIGUSR1, noop)
  catch(t, "remove USR1", loop.remove_signal_handler, loop, signal.SIGUSR1)
  catch(t, "remove USR1 again", loop.remove_signal_handler, loop, signal.SIGUSR1)
  for _, sig in ipairs {0, -1, 32, 65, signal.SIGKILL, signal.SIGSTOP} do
    catch(t, "add " .. sig, loop.add_signal_handler, loop, sig, noop)
    catch(t, "remove " .. sig, loop.remove_signal_handler, loop, sig)
  end
  t:dump()
end)

scenario("sig_delivery", function(t)
  local loop = eddy.get_running_loop()
  local pid = signal.getpid()
  local errs = {}
  loop:set_exception_handler(function(_, c) errs[#errs + 1] = ename(c.exception) end)
  loop:add_signal_handler(signal.SIGUSR1, t, "old USR1")
  loop:add_signal_handler(signal.SIGUSR1, t, "USR1")
  loop:add_signal_handler(signal.SIGUSR2, t, "USR2")
  loop:add_signal_handler(signal.SIGHUP, function()
    t("HUP raises")
    error(errors.ValueError("boom"))
  end)
  for _, sig in ipairs {"SIGUSR1", "SIGUSR2", "SIGUSR1", "SIGHUP", "SIGUSR2"} do
    signal.kill(pid, sig)
  end
  t("sent")
  sleep(0.1)
  signal.kill(pid, "SIGHUP")
  sleep(0.1)
  t("errors", errs)
  loop:add_signal_handler(signal.SIGUSR2, function()
    t("USR2 removes itself", loop:remove_signal_handler(signal.SIGUSR2))
  end)
  signal.kill(pid, "SIGUSR2")
  signal.kill(pid, "SIGUSR1")
  sleep(0.1)
  for _, sig in ipairs {signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP} do
    t("remove", sig, loop:remove_signal_handler(sig))
  end
  loop:set_exception_handler(nil)
  t:dump()
end)

scenario("sig_burst", function(t)
  local loop = eddy.get_running_loop()
  local pid = signal.getpid()
  loop:add_signal_handler(signal.SIGUSR1, t, "USR1")
  loop:add_signal_handler(signal.SIGUSR2, function()
    t("USR2 adds a HUP handler")
    loop:add_signal_handler(signal.SIGHUP, t, "HUP")
    signal.kill(pid, "SIGHUP")
    loop:call_soon(t, "soon after HUP")
  end)
  loop:call_soon(t, "soon 1")
  for _ = 1, 3 do signal.kill(pid, "SIGUSR1") end
  loop:call_soon(t, "soon 2")
  signal.kill(pid, "SIGUSR2")
  sleep(0.1)
  for _, sig in ipairs {"SIGUSR1", "SIGUSR2", "SIGHUP"} do loop:remove_signal_handler(sig) end
  t:dump()
end)

-- Seeded bursts of signals and call_soon callbacks sent from one
-- callback: the order the handlers and callbacks run in.
scenario("sig_random", function(t)
  local loop = eddy.get_running_loop()
  local pid = signal.getpid()
  local names = {"SIGUSR1", "SIGUSR2", "SIGHUP", "SIGWINCH"}
  for _, name in ipairs(names) do loop:add_signal_handler(name, t, name) end
  local choices = {table.unpack(names)}
  choices[#choices + 1] = "soon"
  for seed = 1, 20 do
    local rng = trace.Rng(seed)
    local steps = {}
    for i = 1, rng:pick {1, 3, 6} do steps[i] = rng:pick(choices) end
    t("seed", seed, steps)
    loop:call_soon(function()
      for i, step in ipairs(steps) do
        if step == "soon" then loop:call_soon(t, "soon " .. (i - 1))
        else signal.kill(pid, step) end
      end
    end)
    sleep(0.05)
  end
  t:dump()
end)

scenario("sig_chld", function(t)
  local loop = eddy.get_running_loop()
  local got = {}
  loop:add_signal_handler("SIGCHLD", function() got[#got + 1] = "CHLD" end)
  local p = eddy.create_subprocess_exec("sh", "-c", "exit 9")
  t("wait", eddy.wait_for(function() return p:wait() end, 5))
  sleep(0.05)
  t("handler ran", #got > 0, "removed", loop:remove_signal_handler("SIGCHLD"))
  p = eddy.create_subprocess_exec("sh", "-c", "exit 8")
  t("after removal", eddy.wait_for(function() return p:wait() end, 5))
  t:dump()
end)

scenario("sig_closed_loop", function(t)
  local loop = eddy.new_event_loop()
  loop:close()
  catch(t, "add on closed", loop.add_signal_handler, loop, signal.SIGUSR1, noop)
  catch(t, "remove on closed", loop.remove_signal_handler, loop, signal.SIGUSR1)
  t:dump()
end)

-- }=================================================

-- {================================================= executor

-- Runs on a worker thread: a plain function without upvalues.
local function job(marker, delay, value)
  if delay > 0 then os.execute("sleep " .. delay) end
  if marker then
    local f = io.open(marker, "w")
    f:write("ran")
    f:close()
  end
  return value
end

local function raiser() error("from thread") end

scenario("ex_results", function(t)
  local loop = eddy.get_running_loop()
  t("result", loop:run_in_executor(nil, job, nil, 0, 42):await())
  local ok, e = pcall(function() return loop:run_in_executor(nil, raiser):await() end)
  t("error", emsg(e))
  t("to_thread", eddy.to_thread(job, nil, 0, "x"))
  ok, e = pcall(eddy.to_thread, raiser)
  t("to_thread error", emsg(e))
  t:dump()
end)

scenario("ex_cancel", function(t)
  local loop = eddy.get_running_loop()
  local m1, m2 = os.tmpname(), os.tmpname()
  os.remove(m1)
  os.remove(m2)
  local fut = loop:run_in_executor(nil, job, m1, 0.2, 1)
  local ok, e = pcall(eddy.wait_for, fut, 0.05)
  t("wait_for", ename(e), "cancelled", fut:cancelled())
  local task = eddy.create_task(function() return eddy.to_thread(job, m2, 0.2, 2) end)
  sleep(0.05)
  task:cancel()
  ok, e = pcall(task.await, task)
  t("to_thread task", ename(e))
  t("ran yet", exists(m1), exists(m2))
  sleep(0.4)
  t("ran later", exists(m1), exists(m2))
  t:dump()
end)

scenario("ex_shutdown", function(t)
  local loop = eddy.get_running_loop()
  local futs = {}
  for i = 0, 2 do futs[#futs + 1] = loop:run_in_executor(nil, job, nil, 0.1, i) end
  loop:shutdown_default_executor()
  local done = {}
  for i, f in ipairs(futs) do done[i] = f:done() end
  t("after shutdown", done)
  t("results", {eddy.gather(table.unpack(futs))})
  local ok, e = pcall(loop.run_in_executor, loop, nil, job, nil, 0, 0)
  t("run_in_executor", ename(e), emsg(e))
  ok, e = pcall(eddy.to_thread, job, nil, 0, 0)
  t("to_thread", ename(e), emsg(e))
  t("second shutdown", show(loop:shutdown_default_executor()))
  t:dump()
end)

scenario("ex_pool", function(t)
  local loop = eddy.get_running_loop()
  local marker = os.tmpname()
  os.remove(marker)
  local pool = eddy.ThreadPoolExecutor(1)
  local first = loop:run_in_executor(pool, job, nil, 0.1, "first")
  local queued = loop:run_in_executor(pool, job, marker, 0, "queued")
  queued:cancel()
  local later = loop:run_in_executor(pool, job, nil, 0, "later")
  sleep(0.02)  -- the thread has taken the first job
  pool:shutdown(false, {cancel_futures = true})
  local ok, e = pcall(loop.run_in_executor, loop, pool, job, nil, 0, 0)
  t("after pool shutdown", ename(e), emsg(e))
  t("first", first:await())
  sleep(0.05)
  t("queued", queued:cancelled(), "later", later:cancelled(), exists(marker))
  t:dump()
end)

scenario("ex_set_default", function(t)
  local loop = eddy.get_running_loop()
  local pool = eddy.ThreadPoolExecutor(2)
  loop:set_default_executor(pool)
  t("on pool", loop:run_in_executor(nil, job, nil, 0, "p"):await())
  loop:shutdown_default_executor()
  local ok, e = pcall(loop.run_in_executor, loop, pool, job, nil, 0, 0)
  if ok then t("pool after default shutdown", "ok")
  else t("pool after default shutdown", ename(e), emsg(e)) end
  local other = eddy.new_event_loop()
  other:close()
  ok, e = pcall(other.run_in_executor, other, nil, job, nil, 0, 0)
  if ok then t("closed loop", "ok") else t("closed loop", ename(e), emsg(e)) end
  t:dump()
end)

scenario("ex_shutdown_timeout", function(t)
  local loop = eddy.get_running_loop()
  local fut = loop:run_in_executor(nil, job, nil, 0.3, "late")
  local start = loop:time()
  loop:shutdown_default_executor(0.05)
  t("returned within", string.format("%.1f", loop:time() - start))
  t("job done yet", fut:done())
  t("job", eddy.wait_for(fut, 2))
  t:dump()
end)

-- }=================================================

local prefix = arg[1] or ""
for _, s in ipairs(scenarios) do  -- each on a loop of its own
  if s.name:sub(1, #prefix) == prefix then
    eddy.run(s.fn, setmetatable({name = s.name, lines = {}}, Trace))
  end
end
