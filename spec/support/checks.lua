-- Shared checks for the core specs: expected errors, loops that are not
-- running, bounded waits, and running the eddy binary as a subprocess.
local eddy = require "eddy"
local tmp = require "support.tmp"
local errors = eddy.errors
local assert = require "luassert"

local checks = {}

-- raises(fn, expected, ...): fn(...) must fail.  'expected' is an
-- eddy.errors class (the error must be an instance), or a string that the
-- error's text must contain (plain find), or a table {class, "text"}.
-- Returns the error.
function checks.raises(fn, expected, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  local class, text = expected, nil
  if type(expected) == "string" then
    class, text = nil, expected
  elseif type(expected) == "table" and not errors.isclass(expected) then
    class, text = expected[1], expected[2]
  end
  if class ~= nil then
    assert(errors.is(err, class), string.format("expected %s, got %s",
           tostring(class), tostring(err)))
  end
  if text ~= nil then
    assert(tostring(err):find(text, 1, true),
           string.format("expected an error containing %q, got %q", text, tostring(err)))
  end
  return err
end

-- expect_error(cls, fn, ...): fn(...) must raise an instance of the
-- eddy.errors class cls; returns the error.
function checks.expect_error(cls, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected " .. tostring(cls))
  assert.is_true(errors.is(err, cls), "got " .. tostring(err))
  return err
end

-- nonblocking_pair() -> a, b: a connected non-blocking eddy.socket pair.
function checks.nonblocking_pair()
  local a, b = require("eddy.socket").socketpair()
  a:setblocking(false)
  b:setblocking(false)
  return a, b
end

-- turns(n): let the loop run n turns (default 1), from inside a task.
function checks.turns(n)
  for _ = 1, n or 1 do eddy.sleep(0) end
end

-- bounded(fn, ...): from inside a task, run the suspending fn(...) as a
-- task of its own, at most 10 s (TimeoutError after); its results.
function checks.bounded(fn, ...)
  return eddy.wait_for(eddy.create_task(fn, ...), 10)
end

-- from_callback(loop, calls) -> errs: from inside a task, run each call
-- {key, fn, args...} of the array 'calls', in order, in one plain
-- callback (call_soon); errs[key] is the error it raised, as a string, or
-- "returned".  For the rule that a suspending function raises there
-- (API.md §1, §11).
function checks.from_callback(loop, calls)
  local errs = {}
  loop:call_soon(function()
    for _, call in ipairs(calls) do
      local ok, err = pcall(table.unpack(call, 2))
      errs[call[1]] = ok and "returned" or tostring(err)
    end
  end)
  checks.turns(2)
  return errs
end

-- argerror(fn, n, name): fn must raise a standard Lua argument error
-- "bad argument #n to 'name'" (API.md §1).
function checks.argerror(fn, n, name)
  return checks.raises(fn, string.format("bad argument #%d to '%s'", n, name))
end

-- refuses_bad_protocols(transport): set_protocol of a value that is no
-- protocol (a number, false, a function, nil) is an argument error, and
-- the transport keeps the protocol it had.
function checks.refuses_bad_protocols(transport)
  local protocol = transport:get_protocol()
  for _, bad in ipairs {42, false, print} do
    checks.argerror(function() transport:set_protocol(bad) end, 1, "set_protocol")
  end
  checks.argerror(function() transport:set_protocol(nil) end, 1, "set_protocol")
  assert.equal(protocol, transport:get_protocol())
end

-- blames_caller(fn, ...): fn(...) must raise an error positioned at the
-- line that called fn, as a C function's argument error is (API.md §1),
-- not at a line further up the stack.  Returns the error.
function checks.blames_caller(fn, ...)
  local info
  local ok, err = pcall(function(...)
    info = debug.getinfo(1, "Sl") fn(...)  -- one line: the one to blame
  end, ...)
  assert(not ok, "expected an error, got success")
  local where = info.short_src .. ":" .. info.currentline .. ": "
  assert(tostring(err):sub(1, #where) == where,
         string.format("expected an error at %q, got %q", where, tostring(err)))
  return err
end

-- with_loop(fn): a spec body running fn(loop) on a new loop that is not
-- running (for run_forever, stop, close); the loop is always closed and
-- must have freed every handle it opened.
function checks.with_loop(fn)
  return function()
    local loop = eddy.new_event_loop()
    local ok, err = xpcall(fn, debug.traceback, loop)
    local opened, freed = loop:_handle_counts()
    if not loop:is_running() then loop:close() end
    if not ok then error(err, 0) end
    assert.equal(opened, freed, "the loop leaked handles")
  end
end

-- run_forever(loop, timeout): run_forever, bounded: a timer stops the loop
-- after 'timeout' seconds (default 5) and the call fails if it fired.
function checks.run_forever(loop, timeout)
  local expired = false
  local guard = loop:call_later(timeout or 5, function()
    expired = true
    loop:stop()
  end)
  loop:run_forever()
  guard:cancel()
  assert(not expired, "run_forever did not stop within the time limit")
end

-- Run Lua source as a script of the eddy binary (EDDY_TEST_BINARY) with
-- environment changes (name = value, or name = false to unset it); returns
-- the exit status and the combined output.
function checks.run_script(source, env)
  local binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
  local path = tmp.file(source)
  local vars = {}
  for k, v in pairs(env or {}) do
    vars[#vars + 1] = v == false and ("-u " .. k) or (k .. "=" .. string.format("%q", v))
  end
  local cmd = string.format("env %s timeout 20 %s %s 2>&1", table.concat(vars, " "),
                            binary, path)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  os.remove(path)
  return code, out
end

-- The descriptors open in this process: those /proc/self/fdinfo has a
-- file for.  (For "nothing leaked" checks, collect garbage first, so that
-- garbage of earlier tests closing its descriptors does not count.)  (Opening /proc/self/fd/N could block, on a pipe whose
-- writers are gone; counting the lines of `ls /proc/PID/fd` may see the
-- pipe popen has not closed yet.)
function checks.count_fds()
  local n = 0
  for fd = 0, 4095 do
    local f = io.open("/proc/self/fdinfo/" .. fd)
    if f ~= nil then
      n = n + 1
      f:close()
    end
  end
  return n
end

return checks
