-- eddy.subprocess: child processes.  loop:subprocess_exec and
-- loop:subprocess_shell give a SubprocessTransport driving a
-- SubprocessProtocol (asyncio's base_subprocess.py); eddy.create_subprocess_exec
-- and create_subprocess_shell wrap them in a Process with streams
-- (asyncio/subprocess.py).  Spawning, the pipes and signals are C
-- (src/process.c); the child's pipes are pipe transports (src/pipe.c).

local eddy = require "eddy"
local args = require "eddy.args"
local errors = require "eddy.errors"
local C = eddy._core
local Loop = C.Loop
local can_suspend = C._can_suspend
local choices = C.subprocess_choices

local PIPE, STDOUT, DEVNULL, INHERIT = choices.PIPE, choices.STDOUT, choices.DEVNULL,
                                       choices.INHERIT

local subprocess = {PIPE = PIPE, STDOUT = STDOUT, DEVNULL = DEVNULL, INHERIT = INHERIT}
eddy.subprocess = subprocess

local DEFAULT_LIMIT = 1 << 16  -- asyncio's streams._DEFAULT_LIMIT

-- {================================================= Arguments

local function argerror(fname, n, expected, v, level)
  error(args.message(fname, n, expected, v), level or 3)
end

local loop_options = {stdin = true, stdout = true, stderr = true, cwd = true, env = true,
                      start_new_session = true, pass_fds = true}

-- A stdio choice: nil, PIPE, DEVNULL, STDOUT (stderr only), INHERIT, a
-- descriptor, a Lua file or an object with fileno().
local function check_stdio(fname, n, name, v)
  if v == nil or io.type(v) == "file" then return end
  if math.type(v) == "integer" then
    if v >= 0 or v == PIPE or v == DEVNULL or v == INHERIT or (v == STDOUT and name == "stderr") then
      return
    end
    local why = v == STDOUT and "STDOUT is only valid for stderr" or "invalid value " .. v
    error(errors.ValueError(name .. ": " .. why), 4)
  end
  if io.type(v) == "closed file" then error("attempt to use a closed file", 4) end
  if not args.has_fileno(v) then
    argerror(fname, n, "eddy.subprocess choice, descriptor or file for '" .. name .. "'", v, 5)
  end
end

-- Check the options table at argument n; returns the table _spawn takes,
-- with stdio defaulting to 'default_stdio'.
local function spawn_options(fname, n, opts, extra, default_stdio)
  if opts == nil then opts = {} end
  args.check_options_table(fname, n, opts, 3)
  for k in pairs(opts) do
    if not loop_options[k] and not (extra and extra[k]) then
      error(args.unknown_option(fname, n, k), 3)
    end
  end
  local spawn = {}
  for _, name in ipairs {"stdin", "stdout", "stderr"} do
    local v = opts[name]
    if v == nil then v = default_stdio end
    check_stdio(fname, n, name, v)
    spawn[name] = v
  end
  if opts.cwd ~= nil and type(opts.cwd) ~= "string" then
    argerror(fname, n, "string for 'cwd'", opts.cwd, 4)
  end
  spawn.cwd = opts.cwd
  if opts.env ~= nil then
    if type(opts.env) ~= "table" then argerror(fname, n, "table for 'env'", opts.env, 4) end
    local env = {}
    for k, v in pairs(opts.env) do
      if type(k) ~= "string" or type(v) ~= "string" then
        argerror(fname, n, "table of strings for 'env'", v, 4)
      end
      if k == "" or k:find("=", 1, true) then
        error(errors.ValueError("illegal environment variable name: " .. k), 3)
      end
      env[#env + 1] = k .. "=" .. v
    end
    table.sort(env)
    spawn.env = env
  end
  spawn.start_new_session = opts.start_new_session and true or false
  if opts.pass_fds ~= nil then
    if type(opts.pass_fds) ~= "table" then
      argerror(fname, n, "array for 'pass_fds'", opts.pass_fds, 4)
    end
    for _, fd in ipairs(opts.pass_fds) do  -- (the range is checked in C)
      if math.type(fd) ~= "integer" then
        argerror(fname, n, "array of integers for 'pass_fds'", fd, 4)
      end
    end
    spawn.pass_fds = opts.pass_fds
  end
  return spawn, opts
end

-- (program, arg1, ..., opts): the strings and the options table.
local function split_exec_args(fname, first, ...)
  local argv, n = {}, select("#", ...)
  local opts
  local last = n > 0 and (select(n, ...)) or nil
  if n > 0 and (type(last) == "table" or last == nil) then
    opts = last
    n = n - 1
  end
  for i = 1, n do
    local a = select(i, ...)
    if type(a) ~= "string" and type(a) ~= "number" then
      argerror(fname, first + i - 1, "string", a, 4)
    end
    argv[i] = tostring(a)
  end
  return argv, opts, first + n
end

-- }=================================================

-- {================================================= SubprocessTransport

local Transport = {__name = "eddy.SubprocessTransport"}
Transport.__index = Transport
subprocess.SubprocessTransport = Transport

-- The protocols of the child's pipes hand their events to the
-- subprocess transport, which passes them on (asyncio's
-- ReadSubprocessPipeProto / WriteSubprocessPipeProto).
local PipeProto = {}
PipeProto.__index = PipeProto

function PipeProto:connection_lost(exc)
  self.disconnected = true
  self.proc:_pipe_connection_lost(self.fd, exc)
end

function PipeProto:data_received(data)
  self.proc:_call("pipe_data_received", self.fd, data)
end

-- Flow control is passed on at once, not soon (asyncio's
-- WriteSubprocessPipeProto): a write over the high-water mark must have
-- paused the protocol when it returns, or drain() would not wait.
local function flow(name)
  return function(self)
    local protocol = self.proc._protocol
    local method = protocol and protocol[name]
    if method ~= nil then method(protocol) end
  end
end
PipeProto.pause_writing = flow("pause_writing")
PipeProto.resume_writing = flow("resume_writing")

-- Run protocol:name(...) soon, in the order the events came (asyncio's
-- _call); nothing once the transport has finished.  Nor on a closed loop:
-- loop:close() drops the pending callbacks, then closes the child's
-- pipes, whose connection_lost comes here; what they would schedule is
-- dropped the same way.
function Transport:_call(name, ...)
  local protocol = self._protocol
  if protocol ~= nil and not self._loop:is_closed() then
    self._loop:_call_method_soon(protocol, name, ...)
  end
end

function Transport:_pipe_connection_lost(fd, exc)
  self:_call("pipe_connection_lost", fd, exc)
  self:_try_finish()
end

-- The child has exited: process_exited soon, and wait() returns, even
-- while its pipes are open (unread, or held by a grandchild), as
-- Popen.wait and asyncio after gh-119710.  Setting the waiters' results
-- after the calls scheduled here lets those calls run first.
function Transport:_process_exited(returncode)
  self._returncode = returncode
  self:_call("process_exited")
  self:_try_finish()
  local waiters = self._exit_waiters
  self._exit_waiters = {}
  for _, waiter in ipairs(waiters) do
    if not waiter:done() then waiter:set_result(returncode) end
  end
end

-- Once the process has exited and every pipe is closed: connection_lost.
function Transport:_try_finish()
  if self._finished or self._returncode == nil then return end
  for _, pipe in pairs(self._pipes) do
    if pipe.transport and not pipe.disconnected then return end
  end
  self._finished = true
  if self._loop:is_closed() then return end  -- (as _call)
  self._loop:call_soon(function()
    local protocol = self._protocol
    self._protocol = nil
    self._done = true
    self._proc:close()
    if protocol ~= nil and protocol.connection_lost ~= nil then
      protocol:connection_lost(nil)
    end
  end)
end

function Transport:get_pid() return self._pid end
function Transport:get_returncode() return self._returncode end
function Transport:get_protocol() return self._protocol end
function Transport:set_protocol(protocol)
  args.check_protocol("set_protocol", 1, protocol)
  self._protocol = protocol
end
function Transport:is_closing() return self._closed end

function Transport:get_extra_info(name, default)
  if name == "subprocess" then return self._pid end
  return default
end

-- The pipe transport of the child's descriptor fd (0-2), or nil.
function Transport:get_pipe_transport(fd)
  local pipe = self._pipes[fd]
  return pipe and pipe.transport or nil
end

-- Send sig: nothing once the process has exited (as Popen);
-- ProcessLookupError once the transport has finished.  A sig of the
-- wrong type is the argument error of send_signal, at 'level' (the C
-- kill's own would name kill, at this file's line).
local function send_signal(self, sig, level)
  local t = type(sig)
  if t ~= "number" and t ~= "string" then
    error(args.message("send_signal", 1, "signal number or name", sig), level + 1)
  elseif t == "number" and math.tointeger(sig) == nil then
    error("bad argument #1 to 'send_signal' (number has no integer representation)", level + 1)
  end
  if self._done then error(errors.ProcessLookupError("the process has exited"), level + 1) end
  if self._returncode ~= nil then return end
  self._proc:kill(sig)
end

function Transport:send_signal(sig) send_signal(self, sig, 2) end

function Transport:terminate() self:send_signal("SIGTERM") end
function Transport:kill() self:send_signal("SIGKILL") end

-- close(): close the pipes; a child still running is killed, as asyncio.
function Transport:close()
  if self._closed then return end
  self._closed = true
  for fd = 0, 2 do  -- in fd order, as asyncio's _pipes dict: so go their connection_lost
    local pipe = self._pipes[fd]
    if pipe ~= nil and pipe.transport and not pipe.disconnected then pipe.transport:close() end
  end
  if self._returncode == nil then pcall(self._proc.kill, self._proc, "SIGKILL") end
end

-- As asyncio's repr: "closed" (if so), the pid, then the return code or
-- "running".
function Transport:__tostring()
  local state = (self._closed and "closed " or "") .. "pid=" .. self._pid
  if self._returncode ~= nil then state = state .. " returncode=" .. self._returncode
  else state = state .. " running" end
  return "<SubprocessTransport " .. state .. ">"
end

-- transport:_wait() (S): the return code, once the process has exited.
function Transport:_wait()
  can_suspend("wait")  -- even once it has exited (API.md §1)
  if self._returncode ~= nil then return self._returncode end
  local waiter = self._loop:create_future()
  local waiters = self._exit_waiters
  waiters[#waiters + 1] = waiter
  return waiter:await()
end

-- Spawn argv and connect its pipes; returns transport, protocol.
local function start(loop, fname, protocol_factory, argv, spawn)
  local protocol = protocol_factory()
  local t = type(protocol)
  if t ~= "table" and t ~= "userdata" then
    error(errors.RuntimeError("protocol_factory must return a protocol (table or userdata), got " .. t), 3)
  end
  local self = setmetatable({_loop = loop, _protocol = protocol, _pipes = {},
                             _exit_waiters = {}, _closed = false, _finished = false}, Transport)
  local proc, pid = loop:_spawn(argv, spawn, function(code) self:_process_exited(code) end)
  self._proc, self._pid = proc, pid
  local ok, err = pcall(function()
    -- (transport is false until made: setting it allocates nothing, so
    -- no transport is ever made that close() does not find)
    for fd = 0, 2 do
      local pipe = setmetatable({proc = self, fd = fd, disconnected = false,
                                 transport = false}, PipeProto)
      self._pipes[fd] = pipe
      pipe.transport = loop:_pipe_transport(proc, fd == 0, fd) or false
      if pipe.transport then pipe.transport:_start(pipe) else self._pipes[fd] = nil end
    end
  end)
  if not ok then
    proc:close()  -- the pipes not taken yet
    self:close()
    error(err, 0)
  end
  -- A lookup of connection_made that raises fails the call, the child
  -- killed (asyncio's _connect_pipes failing its waiter); an error in
  -- connection_made itself is only reported: asyncio's loop calls it as a
  -- callback, and the child and its pipes go on (as a stream transport's,
  -- src/stream.c).
  local found, made = pcall(function() return protocol.connection_made end)
  if not found then
    self:close()
    error(made, 0)
  end
  if made ~= nil then
    local ok2, err2 = pcall(made, protocol, self)
    if not ok2 then
      loop:call_exception_handler {
        message = "Exception in protocol.connection_made()",
        exception = err2, transport = self, protocol = protocol,
      }
    end
  end
  return self, protocol
end

-- loop:subprocess_exec(protocol_factory, program, arg1, ..., opts) (S)
function Loop:subprocess_exec(protocol_factory, program, ...)
  local fname = "subprocess_exec"
  can_suspend(fname)
  if not args.callable(protocol_factory) then argerror(fname, 1, "callable", protocol_factory) end
  if type(program) ~= "string" then argerror(fname, 2, "string", program) end
  local argv, opts, n = split_exec_args(fname, 3, ...)
  table.insert(argv, 1, program)
  local spawn = spawn_options(fname, n, opts, nil, PIPE)
  return start(self, fname, protocol_factory, argv, spawn)
end

-- loop:subprocess_shell(protocol_factory, cmd, opts) (S): cmd run by /bin/sh.
function Loop:subprocess_shell(protocol_factory, cmd, opts)
  local fname = "subprocess_shell"
  can_suspend(fname)
  if not args.callable(protocol_factory) then argerror(fname, 1, "callable", protocol_factory) end
  if type(cmd) ~= "string" then argerror(fname, 2, "string", cmd) end
  local spawn = spawn_options(fname, 3, opts, nil, PIPE)
  return start(self, fname, protocol_factory, {"/bin/sh", "-c", cmd}, spawn)
end

-- }=================================================

-- {================================================= Process (streams)

-- The protocol behind a Process: the child's output into StreamReaders,
-- its input through a StreamWriter (asyncio's SubprocessStreamProtocol).
local StreamProtocol = {}
StreamProtocol.__index = StreamProtocol

function StreamProtocol:connection_made(transport)
  self._transport = transport
  for fd, name in pairs {[1] = "stdout", [2] = "stderr"} do
    local pipe = transport:get_pipe_transport(fd)
    if pipe ~= nil then
      local reader = eddy.StreamReader(self._limit, self._loop)
      reader:set_transport(pipe)
      self[name] = reader
    end
  end
  local stdin = transport:get_pipe_transport(0)
  if stdin ~= nil then
    -- the writer's flow control and drain() come from a stream protocol
    self._flow = eddy.StreamReaderProtocol(nil, nil, self._loop)
    self.stdin = eddy.StreamWriter(stdin, self._flow, nil, self._loop)
  end
end

function StreamProtocol:pipe_data_received(fd, data)
  local reader = fd == 1 and self.stdout or fd == 2 and self.stderr or nil
  if reader ~= nil then reader:feed_data(data) end
end

function StreamProtocol:pipe_connection_lost(fd, exc)
  if fd == 0 then
    if self._flow ~= nil then self._flow:connection_lost(exc) end
    return
  end
  local reader = fd == 1 and self.stdout or fd == 2 and self.stderr or nil
  if reader ~= nil then
    if exc == nil then reader:feed_eof() else reader:set_exception(exc) end
  end
end

function StreamProtocol:pause_writing() if self._flow then self._flow:pause_writing() end end
function StreamProtocol:resume_writing() if self._flow then self._flow:resume_writing() end end

local Process = {__name = "eddy.Process"}
subprocess.Process = Process

local process_methods = {}

-- pid and returncode are read-only fields (asyncio's properties, API.md
-- §1); stdin, stdout and stderr are plain ones, as asyncio's attributes.
function Process.__index(self, key)
  if key == "returncode" then return rawget(self, "_transport"):get_returncode() end
  if key == "pid" then return rawget(self, "_pid") end
  return process_methods[key]
end

Process.__newindex = args.read_only(Process, {pid = true, returncode = true})

function Process:__tostring()
  return string.format("<Process %d>", self.pid)
end

-- process:wait() (S) -> the return code; transport:_wait() makes the
-- check of API.md §1.
function process_methods:wait()
  return self._transport:_wait()
end

function process_methods:send_signal(sig) send_signal(self._transport, sig, 2) end
function process_methods:terminate() self._transport:terminate() end
function process_methods:kill() self._transport:kill() end

-- Write input to stdin and close it; a child that does not read it all
-- (BrokenPipeError, ConnectionResetError) is not an error, as asyncio.
local function feed_stdin(stdin, input)
  local ok, err = pcall(function()
    if input ~= nil then
      stdin:write(input)
      stdin:drain()
    end
  end)
  if not ok and not (errors.is(err, errors.BrokenPipeError) or
                     errors.is(err, errors.ConnectionResetError)) then
    error(err, 0)
  end
  stdin:close()
end

-- process:communicate(input) (S) -> stdout, stderr (nil where not PIPE).
function process_methods:communicate(input)
  can_suspend("communicate")
  if input ~= nil and type(input) ~= "string" then
    argerror("communicate", 1, "string or nil", input)
  end
  local jobs = {}
  if self.stdin ~= nil then
    jobs[#jobs + 1] = function() feed_stdin(self.stdin, input) end
  end
  local out, err
  if self.stdout ~= nil then
    jobs[#jobs + 1] = function() out = self.stdout:read(-1) end
  end
  if self.stderr ~= nil then
    jobs[#jobs + 1] = function() err = self.stderr:read(-1) end
  end
  local tasks = {}
  for i, job in ipairs(jobs) do tasks[i] = self._transport._loop:create_task(job) end
  eddy.gather(table.unpack(tasks))
  self:wait()
  return out, err
end

local stream_options = {limit = true}

local function create_process(fname, n, opts, spawn_fn)
  local limit = DEFAULT_LIMIT
  if type(opts) == "table" and opts.limit ~= nil then
    limit = opts.limit
    if math.type(limit) ~= "integer" or limit <= 0 then
      error(errors.ValueError("limit must be a positive integer"), 3)
    end
  end
  -- The running loop, or at the main chunk's top level (API.md §11) the
  -- default one, which the suspending calls on the Process then run.
  local loop = C._get_running_loop() or C.get_event_loop()
  local protocol = setmetatable({_limit = limit, _loop = loop}, StreamProtocol)
  local spawn = spawn_options(fname, n, opts, stream_options, INHERIT)
  spawn.limit = nil
  local transport = spawn_fn(loop, function() return protocol end, spawn)
  return setmetatable({_transport = transport, _pid = transport:get_pid(),
                       stdin = protocol.stdin, stdout = protocol.stdout,
                       stderr = protocol.stderr}, Process)
end

-- eddy.create_subprocess_exec(program, arg1, ..., opts) (S) -> Process
function eddy.create_subprocess_exec(program, ...)
  local fname = "create_subprocess_exec"
  can_suspend(fname)
  if type(program) ~= "string" then argerror(fname, 1, "string", program) end
  local argv, opts, n = split_exec_args(fname, 2, ...)
  table.insert(argv, 1, program)
  return create_process(fname, n, opts, function(loop, factory, spawn)
    return start(loop, fname, factory, argv, spawn)
  end)
end

-- eddy.create_subprocess_shell(cmd, opts) (S) -> Process
function eddy.create_subprocess_shell(cmd, opts)
  local fname = "create_subprocess_shell"
  can_suspend(fname)
  if type(cmd) ~= "string" then argerror(fname, 1, "string", cmd) end
  return create_process(fname, 2, opts, function(loop, factory, spawn)
    return start(loop, fname, factory, {"/bin/sh", "-c", cmd}, spawn)
  end)
end

-- }=================================================

return subprocess
