-- api_fuzz.lua SEED STEPS: a randomized search over sequences of calls.
--
-- Makes live objects of every kind eddy has (loops, futures, tasks,
-- timers, servers, connections, datagram and UNIX endpoints, pipes,
-- subprocesses, sockets, synchronization primitives, queues, streams, TLS
-- contexts, buffers, context variables, executor calls), then, step by
-- step, calls a random method of a random object with random arguments,
-- under pcall.  Some steps run the loop for a bit, drop objects and
-- collect garbage, or close things; the arguments include callbacks and
-- protocols that do random steps themselves (re-entrancy).
--
-- Errors raised are the expected outcome.  A finding is: a crash or a
-- sanitizer report (the process dies), a hang (the caller's `timeout`
-- kills it), a Lua error raised from eddy's own Lua code by an unchecked
-- value ("attempt to index a nil value") or one whose text is not
-- printable, or a loop whose libuv handles do not all come back once
-- everything is closed.  Findings are printed as "FINDING ..." lines on
-- stderr and make the exit status 1; the last line on stdout is
-- "ok SEED STEPS" when the run went to its end.
--
-- Run it from a scratch directory (hostile strings become relative
-- socket paths): see docs/testing.md for a long campaign.
-- FUZZ_TRACE=1 names every step on stderr, to minimise a finding.
local eddy = require "eddy"
local esocket = require "eddy.socket"
local ssl = require "eddy.ssl"
local errors = eddy.errors

local seed = assert(tonumber(arg[1]), "usage: api_fuzz.lua SEED STEPS")
local nsteps = tonumber(arg[2]) or 200
local trace = os.getenv("FUZZ_TRACE")
math.randomseed(seed)

-- The repository root, for the test certificates' maker in spec/support.
local root = arg[0]:match("^(.*)/tools/fuzz/[^/]*$") or "."
package.path = root .. "/spec/?.lua;" .. package.path

-- Calls that end or stall the process by design, not by a bug.
local SKIP = {
  setblocking = true, settimeout = true,  -- a blocking recv waits forever
  run_forever = true,  -- stops only by a callback's stop: covered by chaos
}

local workdir = os.tmpname()
os.remove(workdir)
assert(os.execute("mkdir -p " .. workdir))
local certs = os.getenv("FUZZ_CERTS")
local own_certs = certs == nil  -- made here: removed at the end
if own_certs then certs = require("support.tls").dir() end

local findings = 0
local calls, raised = 0, 0
local step_no = 0
local function finding(what)
  findings = findings + 1
  io.stderr:write(("FINDING seed %d step %d: %s\n"):format(seed, step_no, what))
end

local function pick(list) return list[math.random(#list)] end

local loop = eddy.new_event_loop()
eddy.set_event_loop(loop)
local loops = {loop}       -- every loop made, to watch and close at the end
local objects = {}         -- {kind =, obj =}: the live objects
-- Every object made and not yet collected, dropped ones too: all are
-- closed at the end.
local made = setmetatable({}, {__mode = "k"})
local made_count = 0
local function add(kind, obj)
  if obj ~= nil then
    objects[#objects + 1] = {kind = kind, obj = obj}
    made[obj] = kind
    made_count = made_count + 1
  end
  return obj
end
local function of_kind(kind)
  local found = {}
  for _, o in ipairs(objects) do if o.kind == kind then found[#found + 1] = o.obj end end
  return found
end

-- A clear error is an eddy.errors object, a standard argument error at
-- the caller's line, or text that says what went wrong; unclear is an
-- "attempt to ..." raised inside eddy's own Lua code (but for comparing
-- a PriorityQueue's items: the user's values, as heapq's TypeError), an
-- argument error naming a line of eddy's own code, or text that is not
-- printable.
local UNPRINTABLE_ARG = "[%z\255]"  -- the bytes of the argument "\0\255", echoed back
local function check_error(err, where)
  if errors.is(err, errors.Error) then
    local ok, text = pcall(tostring, err)
    if not ok then return finding(where .. ": tostring of an eddy error raised: " .. tostring(text)) end
    err = text
  end
  if type(err) ~= "string" then return end  -- a value one of our arguments raised
  if err:find("fuzz:", 1, true) then return end
  local file = err:match("^([%w_/%.]+%.lua):%d+:")
  local own = file and file:find("eddy") and not file:find("fuzz")
  if own and err:find("attempt to ") and not err:find("attempt to compare") then
    finding(where .. ": unchecked value: " .. err)
  elseif own and err:find("bad argument") then
    finding(where .. ": an argument error at eddy's own line: " .. err)
  elseif err:gsub(UNPRINTABLE_ARG, ""):find("[%z\1-\8\14-\31\127-\255]") then
    finding(where .. ": unprintable error text: " .. ("%q"):format(err))
  end
end

-- The loop's exception handler sees errors of callbacks and tasks.
local function handler(_, context)
  if context.exception ~= nil then check_error(context.exception, "exception handler") end
end

-- chaos(depth): one random step from inside a callback; defined below.
local chaos

-- A protocol whose every callback may do a random step.
local function protocol()
  local p = {}
  for _, name in ipairs {"connection_made", "connection_lost", "data_received",
                         "eof_received", "pause_writing", "resume_writing",
                         "datagram_received", "error_received",
                         "pipe_data_received", "pipe_connection_lost", "process_exited"} do
    p[name] = function(self, first)
      if name == "connection_made" then add("transport", first) end
      if math.random() < 0.3 then chaos(1) end
    end
  end
  return p
end

-- Sockets are non-blocking: a blocking recv waits forever by design.
local function nonblocking(sock)
  sock:setblocking(false)
  return sock
end

-- Argument generators: valid values, objects of every kind, extremes.
local HUGE = ("x"):rep(1 << 20)
local ARGS = {
  function() return nil end, function() return false end, function() return true end,
  function() return 0 end, function() return -1 end, function() return 1 end,
  function() return 2^53 end, function() return math.huge end, function() return -math.huge end,
  function() return 0/0 end, function() return math.mininteger end,
  function() return math.maxinteger end, function() return 0.001 end, function() return 3 end,
  function() return "" end, function() return "x" end, function() return "\0\255" end,
  function() return HUGE end, function() return "127.0.0.1" end,
  function() return workdir .. "/s" .. math.random(3) end,
  function() return {} end, function() return {"127.0.0.1", 0} end,
  function() return {"127.0.0.1", -1} end,
  function() return setmetatable({}, {__index = function() error("fuzz: __index") end}) end,
  function() return setmetatable({}, {__call = function() error("fuzz: __call") end}) end,
  function() return setmetatable({}, {__call = function() coroutine.yield() end}) end,
  function() return setmetatable({}, {__close = function() error("fuzz: __close") end}) end,
  function() return setmetatable({}, {__tostring = function() error("fuzz: __tostring") end}) end,
  function() return setmetatable({}, {__len = function() return -1 end}) end,
  function() return setmetatable({}, {__gc = function() pcall(chaos, 1) end}) end,  -- a finalizer
  function() return function() error("fuzz: raised") end end,
  function() return function() coroutine.yield("fuzz") end end,
  function() return function() eddy.sleep(0.001) return 1 end end,
  function() return function() chaos(1) end end,
  function() return function() loop:stop() end end,
  function() return function() return loop:run_until_complete(function() eddy.sleep(0) end) end end,
  function() return protocol end,
  function() return function() return 42 end end,  -- a factory of no protocol
  function() return coroutine.create(function() eddy.sleep(0) end) end,
  function() return nonblocking(esocket.socket()) end,
  function() return eddy.Buffer(math.random(0, 8)) end,
  function() return esocket.AF_INET end, function() return esocket.SOCK_STREAM end,
  function() return {timeout = 0.01} end, function() return {ssl = pick(of_kind("sslctx")) or true} end,
  function() return eddy.subprocess.PIPE end,
  function() return #objects > 0 and pick(objects).obj or nil end,
  function() return #objects > 0 and pick(objects).obj or nil end,
  function() return #objects > 0 and pick(objects).obj or nil end,
}

local function random_args(self_kind)
  local args, n = {}, math.random(0, 4)
  for i = 1, n do
    local same = of_kind(self_kind)
    if math.random() < 0.2 and #same > 0 then args[i] = pick(same)
    else args[i] = pick(ARGS)() end
  end
  return args, n
end

-- Object makers, by kind; each runs inside a task on 'loop' and returns
-- its object (several kinds may add more objects themselves).
local function a_server_port()
  local servers = of_kind("server")
  for _, s in ipairs(servers) do
    local ok, port = pcall(function() return s.sockets[1]:getsockname()[2] end)
    if ok and s:is_serving() then return port end
  end
  local s = add("server", loop:create_server(protocol, "127.0.0.1", 0))
  return s.sockets[1]:getsockname()[2]
end
local function tls_context(server_side)
  local ctx = ssl.SSLContext(server_side and ssl.PROTOCOL_TLS_SERVER or ssl.PROTOCOL_TLS_CLIENT)
  if server_side then ctx:load_cert_chain(certs .. "/server.pem", certs .. "/server.key")
  else ctx:load_verify_locations(certs .. "/ca.pem") end
  return ctx
end
local function sleeper() eddy.sleep(math.random() < 0.5 and 0 or 0.01) return 1 end

local MAKERS = {
  loop = function() local l = eddy.new_event_loop(); loops[#loops + 1] = l; return l end,
  future = function() return pick(loops):create_future() end,
  task = function() return loop:create_task(pick {sleeper, function() chaos(1) end}) end,
  timer = function() return loop:call_later(math.random() * 0.02, function() chaos(1) end) end,
  handle = function() return loop:call_soon(function() chaos(1) end) end,
  server = function() return loop:create_server(protocol, "127.0.0.1", 0) end,
  transport = function() return (loop:create_connection(protocol, "127.0.0.1", a_server_port())) end,
  udp = function() return (loop:create_datagram_endpoint(protocol, {"127.0.0.1", 0})) end,
  unix = function()
    local path = workdir .. "/u" .. math.random(1e9)
    add("server", loop:create_unix_server(protocol, path))
    return (loop:create_unix_connection(protocol, path))
  end,
  pipe = function()
    local a, b = esocket.socketpair()
    add("socket", nonblocking(b))
    return (loop:connect_read_pipe(protocol, a))
  end,
  subprocess = function()
    if math.random() < 0.5 then return (loop:subprocess_exec(protocol, "/bin/cat")) end
    return (loop:subprocess_shell(protocol, "echo out; echo err >&2; sleep 0.01"))
  end,
  process = function()
    local P = eddy.subprocess.PIPE
    return eddy.create_subprocess_exec("/bin/cat", {stdin = P, stdout = P, stderr = P})
  end,
  socket = function()
    if math.random() < 0.5 then return nonblocking(esocket.socket()) end
    local a, b = esocket.socketpair()
    a:setblocking(false); b:setblocking(false)
    add("socket", b)
    loop:add_reader(a, function() chaos(1) end)
    return a
  end,
  queue = function() return pick {eddy.Queue, eddy.PriorityQueue, eddy.LifoQueue}(math.random(0, 2)) end,
  lock = function() return eddy.Lock() end,
  event = function() return eddy.Event() end,
  semaphore = function() return pick {eddy.Semaphore, eddy.BoundedSemaphore}(math.random(0, 2)) end,
  condition = function() return eddy.Condition() end,
  barrier = function() return eddy.Barrier(math.random(1, 3)) end,
  stream = function()
    local reader, writer = eddy.open_connection("127.0.0.1", a_server_port())
    add("stream", reader)
    return writer
  end,
  sslctx = function() return tls_context(math.random() < 0.5) end,
  tls = function()
    local path = workdir .. "/t" .. math.random(1e9)
    add("server", loop:create_unix_server(protocol, path, {ssl = tls_context(true)}))
    return (loop:create_unix_connection(protocol, path, {ssl = tls_context(false),
                                        server_hostname = "localhost",
                                        ssl_handshake_timeout = 0.05}))
  end,
  buffer = function() return eddy.Buffer(math.random(0, 64)) end,
  contextvar = function()
    local var = eddy.ContextVar("v" .. math.random(9), math.random(9))
    add("token", var:set(1))
    add("context", eddy.copy_context())
    return var
  end,
  executor = function()
    add("executor", eddy.ThreadPoolExecutor(1))
    return loop:run_in_executor(nil, function(x) return x end, 1)
  end,
}
local KINDS = {}
for kind in pairs(MAKERS) do KINDS[#KINDS + 1] = kind end
table.sort(KINDS)  -- pairs() order is not the same from run to run

-- Method names: every `name(` of API.md (when shared/ is beside the
-- repository) and these, plus what an object's metatable lists.
local NAMES = {
  "close", "abort", "cancel", "cancelled", "done", "result", "exception", "set_result",
  "set_exception", "add_done_callback", "remove_done_callback", "get_loop", "await",
  "write", "writelines", "write_eof", "can_write_eof", "is_closing", "get_extra_info",
  "pause_reading", "resume_reading", "is_reading", "set_protocol", "get_protocol",
  "get_write_buffer_size", "get_write_buffer_limits", "set_write_buffer_limits", "sendto",
  "get_pid", "get_returncode", "get_pipe_transport", "send_signal", "terminate", "kill",
  "when", "close_clients", "abort_clients", "start_serving", "serve_forever", "is_serving",
  "wait_closed", "fileno", "bind", "listen", "connect", "accept", "recv", "send",
  "getsockname", "getpeername", "setsockopt", "getsockopt", "shutdown", "tostring",
  "read", "readline", "readexactly", "readuntil", "at_eof", "drain", "start_tls",
  "acquire", "release", "locked", "wait", "set", "clear", "is_set", "notify",
  "notify_all", "wait_for", "reset", "put", "put_nowait", "get", "get_nowait", "qsize",
  "empty", "full", "task_done", "join", "shutdown", "run", "communicate",
  "load_cert_chain", "load_verify_locations", "set_alpn_protocols", "set_ciphers",
  "submit", "stop", "is_running", "is_closed", "run_until_complete", "call_soon",
  "call_later", "call_at", "create_future", "create_task", "add_reader", "remove_reader",
  "add_writer", "remove_writer", "sock_recv", "sock_sendall", "sock_connect", "sock_accept",
  "set_exception_handler", "call_exception_handler", "get_name", "set_name", "get_coro",
  "get_stack", "cancelling", "uncancel",
}
do
  local f = io.open(root .. "/../shared/API.md") or io.open("/work/shared/API.md")
  if f then
    for name in f:read("a"):gmatch("`[%w_.:]-([%a_][%w_]*)%(") do NAMES[#NAMES + 1] = name end
    f:close()
  end
end
local function methods_of(obj)
  local names, list = {}, {}
  for _, n in ipairs(NAMES) do names[n] = true end
  local mt = getmetatable(obj)
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) == "table" then
    for k in pairs(index) do if type(k) == "string" then names[k] = true end end
  end
  for n in pairs(names) do
    local ok, f = pcall(function() return obj[n] end)
    if ok and type(f) == "function" and not SKIP[n] and n:sub(1, 1) ~= "_" then
      list[#list + 1] = n
    end
  end
  table.sort(list)
  return list
end

-- Every loop that is not closed gets a watchdog that stops it: no step
-- runs a loop for longer than 0.2 s at a time.  It re-arms itself, for
-- a step that runs its loop again once stopped (a finalizer's steps).
local function watchdog(l, dogs, i)
  local ok, h = pcall(l.call_later, l, 0.2, function()
    l:stop()
    watchdog(l, dogs, i)
  end)
  dogs[i] = ok and h or nil
end

local function with_watchdogs(fn, ...)
  local dogs = {}
  for i, l in ipairs(loops) do
    if not l:is_closed() then watchdog(l, dogs, i) end
  end
  local result = table.pack(pcall(fn, ...))
  for i = 1, #loops do
    if dogs[i] then dogs[i]:cancel() end
  end
  return table.unpack(result, 1, result.n)
end

-- run(fn): fn as a task on 'loop', cut off after 0.05 s.
local function run(fn)
  if loop:is_closed() or loop:is_running() then return pcall(fn) end
  return with_watchdogs(loop.run_until_complete, loop, function()
    local scope <close> = eddy.timeout(0.05)
    return fn()
  end)
end

local function describe(v)
  local ok, s = pcall(tostring, v)
  return ok and s:sub(1, 40) or "?"
end
local function describe_error(err)
  local ok, s = pcall(tostring, err)
  return ok and s:gsub("\n.*", ""):sub(1, 160) or "?"
end

-- call(depth): call a random method of a random object with random
-- arguments, right here (a task, a callback, or the main chunk).
local function call(depth, mode)
  if #objects == 0 then return end
  local target = pick(objects)
  local names = methods_of(target.obj)
  if #names == 0 then return end
  local name = pick(names)
  local args, n = random_args(target.kind)
  if trace then
    local shown = {}
    for i = 1, n do shown[i] = describe(args[i]) end
    io.stderr:write(("%sstep %d %s %s %s:%s(%s)\n"):format((" "):rep(depth), step_no, mode,
      target.kind, describe(target.obj), name, table.concat(shown, ", ")))
  end
  calls = calls + 1
  local ok, err = pcall(function() return target.obj[name](target.obj, table.unpack(args, 1, n)) end)
  if not ok then
    raised = raised + 1
    if trace then io.stderr:write(("%s  -> %s\n"):format((" "):rep(depth), describe_error(err))) end
    check_error(err, target.kind .. ":" .. name)
  end
end

function chaos(depth)
  if depth > 2 then return end
  local r = math.random()
  if r < 0.7 then call(depth + 1, "callback")
  elseif r < 0.8 then error("fuzz: a callback raised")
  elseif r < 0.85 then loop:stop()
  else
    local t = pick(of_kind("transport"))
    if t then t:close() end
  end
end

-- The steps: make, call (from a task, a callback, or the main chunk),
-- run the loop, drop and collect, close.
local function close_one(o)
  for _, m in ipairs {"close", "abort_clients", "cancel", "abort", "kill", "shutdown"} do
    local ok, f = pcall(function() return o.obj[m] end)
    if ok and type(f) == "function" then pcall(f, o.obj) end
  end
end

local KEEP = {process = true, subprocess = true}
local STEPS = {
  {weight = 3, name = "make", fn = function()
    local kind = pick(KINDS)
    if trace then io.stderr:write(("step %d make %s\n"):format(step_no, kind)) end
    -- added from inside the task: a run cut short (a callback stopped the
    -- loop) may still finish it later
    local ok, err = run(function() add(kind, MAKERS[kind]()) end)
    if not ok then check_error(err, "make " .. kind) end
  end},
  {weight = 6, name = "in a task", fn = function() run(function() call(0, "task") end) end},
  {weight = 3, name = "in a callback", fn = function()
    if not loop:is_closed() then
      pcall(loop.call_soon, loop, call, 0, "soon")
      run(function() eddy.sleep(0) end)
    end
  end},
  {weight = 2, name = "main chunk", fn = function() call(0, "main") end},
  {weight = 2, name = "run a bit", fn = function() run(function() eddy.sleep(0.005) end) end},
  {weight = 1, name = "drop and collect", fn = function()
    local i = #objects > 0 and math.random(#objects)
    -- A child process dropped unfinished runs on, and keeps its handles,
    -- as in asyncio: the check at the end would count them.
    if i and not KEEP[objects[i].kind] then
      local o = table.remove(objects, i)
      if trace then io.stderr:write(("  drop %s %s\n"):format(o.kind, describe(o.obj))) end
    end
    collectgarbage()
  end},
  {weight = 1, name = "new loop", fn = function()
    -- rarely: close the loop with everything on it still open, and go on
    -- with a new one (the old objects stay, on a closed loop)
    if math.random() < 0.9 or loop:is_running() then return end
    pcall(loop.close, loop)
    loop = eddy.new_event_loop()
    eddy.set_event_loop(loop)
    loops[#loops + 1] = loop
  end},
  {weight = 1, name = "close", fn = function()
    if #objects > 0 then
      local o = pick(objects)
      if trace then io.stderr:write(("  close %s %s\n"):format(o.kind, describe(o.obj))) end
      close_one(o)
    end
  end},
}
local weighted = {}
for _, s in ipairs(STEPS) do for _ = 1, s.weight do weighted[#weighted + 1] = s end end

-- The loop.
for _ = 1, 3 do run(function() add("server", MAKERS.server()) end) end
for i = 1, nsteps do
  step_no = i
  if not loop:is_closed() then pcall(loop.set_exception_handler, loop, handler) end
  pcall(loop.set_task_factory, loop, nil)
  local step = pick(weighted)
  if trace and not loop:is_closed() then
    io.stderr:write(("step %d: %s (handles opened/freed: %d/%d)\n")
                    :format(i, step.name, loop:_handle_counts()))
  end
  -- a finalizer's step in the main chunk may suspend: a watchdog for all
  with_watchdogs(step.fn)
end

-- Close everything and check that every loop got its handles back.
step_no = nsteps + 1
-- (twice: closing may make more, as a protocol callback's step; and from
-- a list, as a table must not grow while pairs() walks it)
for _ = 1, 2 do
  local list = {}
  for obj in pairs(made) do list[#list + 1] = obj end
  for _, obj in ipairs(list) do close_one({obj = obj}) end
  for _ = 1, 3 do run(function() eddy.sleep(0.01) end) end
end
objects = {}
collectgarbage()
for _, l in ipairs(loops) do
  if not l:is_closed() then
    pcall(l.run_until_complete, l, function() eddy.sleep(0) eddy.sleep(0) end)
    local opened, freed = l:_handle_counts()
    if opened ~= freed then
      finding(("a loop opened %d handles and freed %d"):format(opened, freed))
    end
    l:close()
  end
end
collectgarbage()
os.execute("rm -rf " .. workdir)
if own_certs then os.execute("rm -rf " .. certs) end
print(("ok %d %d: %d findings (%d calls, %d raised, %d objects made)")
      :format(seed, nsteps, findings, calls, raised, made_count))
os.exit(findings == 0 and 0 or 1)
