-- eddy.errors (API.md §9): the class hierarchy, errors.is, constructors,
-- tostring, fields, and OSError objects built from libuv codes.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async

-- The hierarchy of API.md §9: class -> parent.
local PARENT = {
  CancelledError = "Error", TimeoutError = "Error", InvalidStateError = "Error",
  RuntimeError = "Error", ValueError = "Error", LookupError = "Error",
  IncompleteReadError = "Error", LimitOverrunError = "Error",
  SendfileNotAvailableError = "Error", QueueEmpty = "Error", QueueFull = "Error",
  QueueShutDown = "Error", BrokenBarrierError = "Error", ExceptionGroup = "Error",
  OSError = "Error",
  ConnectionError = "OSError",
  ConnectionRefusedError = "ConnectionError", ConnectionResetError = "ConnectionError",
  ConnectionAbortedError = "ConnectionError", BrokenPipeError = "ConnectionError",
  DNSError = "OSError", FileNotFoundError = "OSError", PermissionError = "OSError",
  SSLError = "OSError", SSLCertVerificationError = "SSLError",
}

describe("eddy.errors", function()
  it("has every class of the hierarchy, each under its parent", function()
    assert.is_true(errors.isclass(errors.Error))
    for name, parent in pairs(PARENT) do
      local cls = errors[name]
      assert.is_true(errors.isclass(cls), name)
      local e = cls("m")
      assert.is_true(errors.is(e, errors[parent]), name .. " under " .. parent)
      assert.is_true(errors.is(e, errors.Error), name .. " under Error")
      assert.is_true(errors.is(e, cls))
    end
  end)

  it("errors.is walks up only, never down or sideways", function()
    local refused = errors.ConnectionRefusedError("no")
    assert.is_true(errors.is(refused, errors.ConnectionError))
    assert.is_true(errors.is(refused, errors.OSError))
    assert.is_false(errors.is(refused, errors.ConnectionResetError))
    assert.is_false(errors.is(errors.OSError("x"), errors.ConnectionError))
    assert.is_false(errors.is(errors.ValueError("x"), errors.OSError))
    assert.is_false(errors.is(errors.CancelledError(), errors.TimeoutError))
  end)

  it("errors.is is false for values that are not error objects", function()
    for _, v in ipairs {"ValueError", 42, true, {}, print, coroutine.create(print)} do
      assert.is_false(errors.is(v, errors.Error))
    end
    assert.is_false(errors.is(nil, errors.Error))
    assert.is_false(errors.is(errors.ValueError("x"), "ValueError"))
    assert.is_false(errors.is(errors.ValueError("x"), nil))
  end)

  it("classes are callable constructors; tostring is 'ClassName: message'", function()
    local e = errors.TimeoutError("slow peer")
    assert.equal("slow peer", e.message)
    assert.equal("TimeoutError: slow peer", tostring(e))
    assert.equal("CancelledError", tostring(errors.CancelledError()))
    assert.equal("ValueError", tostring(errors.ValueError("")))
    assert.equal("RuntimeError: 42", tostring(errors.RuntimeError(42)))
    assert.equal("<class ValueError>", tostring(errors.ValueError))
  end)

  it("constructors take a fields table", function()
    local e = errors.OSError("refused", {errno = 111, code = "ECONNREFUSED", strerror = "connection refused"})
    assert.equal(111, e.errno)
    assert.equal("ECONNREFUSED", e.code)
    assert.equal("connection refused", e.strerror)
    local ssl = errors.SSLCertVerificationError("bad cert", {reason = "CERTIFICATE_VERIFY_FAILED",
                                                             verify_message = "expired"})
    assert.equal("CERTIFICATE_VERIFY_FAILED", ssl.reason)
    assert.equal("expired", ssl.verify_message)
  end)

  it("a constructor's second argument that is no fields table is an argument error at "
     .. "the caller's line, never ignored", function()
    local checks = require "support.checks"
    local err = checks.blames_caller(errors.TimeoutError, "slow", 5)
    assert.matches("bad argument #2 to 'TimeoutError' (table or nil expected, got number)",
                   tostring(err), 1, true)
    err = checks.blames_caller(errors.OSError, "refused", "ECONNREFUSED")
    assert.matches("bad argument #2 to 'OSError' (table or nil expected, got string)",
                   tostring(err), 1, true)
    -- through the constructors taking asyncio's arguments too
    err = checks.blames_caller(errors.IncompleteReadError, nil, 10)
    assert.matches("bad argument #1 to 'IncompleteReadError' (string expected, got nil)",
                   tostring(err), 1, true)
    err = checks.blames_caller(errors.LimitOverrunError, "too long", "42")
    assert.matches("bad argument #2 to 'LimitOverrunError' (table or nil expected, got string)",
                   tostring(err), 1, true)
    err = checks.blames_caller(errors.ExceptionGroup, "failed", 5)
    assert.matches("bad argument #2 to 'ExceptionGroup' (table or nil expected, got number)",
                   tostring(err), 1, true)
  end)

  it("IncompleteReadError(partial, expected) as asyncio", function()
    local e = errors.IncompleteReadError("abc", 10)
    assert.equal("abc", e.partial)
    assert.equal(10, e.expected)
    assert.equal("IncompleteReadError: 3 bytes read on a total of 10 expected bytes", tostring(e))
    local open_ended = errors.IncompleteReadError("", nil)
    assert.matches("undefined expected bytes", tostring(open_ended))
  end)

  it("LimitOverrunError(message, consumed) as asyncio", function()
    local e = errors.LimitOverrunError("Separator is not found", 42)
    assert.equal(42, e.consumed)
    assert.equal("LimitOverrunError: Separator is not found", tostring(e))
  end)

  it("ExceptionGroup(message, exceptions) keeps the array", function()
    local inner = {errors.ValueError("a"), errors.TimeoutError("b")}
    local g = errors.ExceptionGroup("unhandled errors in a TaskGroup", inner)
    assert.equal(inner, g.exceptions)
    assert.is_true(errors.is(g, errors.Error))
    assert.equal("ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)", tostring(g))
    assert.equal("ExceptionGroup: (1 sub-exception)", tostring(errors.ExceptionGroup(nil, {inner[1]})))
  end)

  it("ExceptionGroup refuses an empty array, as asyncio's (ValueError)", function()
    local ok, err = pcall(errors.ExceptionGroup, "none", {})
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
    assert.equal("ValueError: second argument (exceptions) must be a non-empty sequence",
                 tostring(err))
    -- A bare class, as error(errors.ExceptionGroup) raises it, has no array.
    assert.equal("ExceptionGroup: (0 sub-exceptions)", tostring(errors.ExceptionGroup()))
  end)

  it("are raised with error() and caught with pcall as the same object", function()
    local e = errors.LookupError("missing key")
    local ok, got = pcall(error, e)
    assert.is_false(ok)
    assert.equal(e, got)
  end)

  it("fields are inherited from classes (class-level defaults)", function()
    errors.DNSError.spec_default = "inherited"
    assert.equal("inherited", errors.DNSError("x").spec_default)
    errors.DNSError.spec_default = nil
  end)

  it("errors from the core are eddy.errors objects", async(function(loop)
    local ok, err = pcall(loop.call_later, loop, 0 / 0, print)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.ValueError))
    local fut = loop:create_future()
    ok, err = pcall(fut.result, fut)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.InvalidStateError))
    assert.equal("InvalidStateError: Result is not ready.", tostring(err))
  end))

  it("a task's error gets a traceback field; CancelledError does not", async(function(loop)
    local failed = loop:create_task(function() error(errors.ValueError("v")) end)
    local ok, err = pcall(failed.await, failed)
    assert.is_false(ok)
    assert.is_string(err.traceback)
    assert.matches("stack traceback", err.traceback)
    local sleeper = loop:create_task(function() eddy.sleep(10) end)
    eddy.sleep(0)
    sleeper:cancel()
    ok, err = pcall(sleeper.await, sleeper)
    assert.is_false(ok)
    assert.is_nil(rawget(err, "traceback"))
  end))

  -- Python's `raise Cls` raises Cls().  Raising the class itself used to
  -- write the traceback into the class, where every later instance found
  -- it (and then never got its own).
  it("a class raised in a task or a callback becomes an instance of it", async(function(loop)
    local failed = loop:create_task(function() error(errors.LookupError) end)
    local ok, err = pcall(failed.await, failed)
    assert.is_false(ok)
    assert.is_true(errors.is(err, errors.LookupError))
    assert.is_false(rawequal(err, errors.LookupError))
    assert.is_string(rawget(err, "traceback"))
    assert.is_nil(rawget(errors.LookupError, "traceback"))
    assert.is_nil(errors.LookupError("fresh").traceback)

    local seen
    loop:set_exception_handler(function(_, context) seen = context.exception end)
    loop:call_soon(function() error(errors.LookupError) end)
    eddy.sleep(0)
    loop:set_exception_handler(nil)
    assert.is_true(errors.is(seen, errors.LookupError))
    assert.is_false(rawequal(seen, errors.LookupError))
    assert.is_nil(rawget(errors.LookupError, "traceback"))

    local cancelled = loop:create_task(function() error(errors.CancelledError) end)
    pcall(cancelled.await, cancelled)
    assert.is_true(cancelled:cancelled())
  end))
end)

describe("argument errors for options tables (API.md §1)", function()
  it("a table with a metatable where options go is refused the same way by every "
     .. "checker, C and Lua, at the caller's line", async(function(loop)
    local object = setmetatable({backlog = 5}, {})
    local expected = "options table expected, got table with a metatable"
    local sock <close> = eddy.socket.socket()
    sock:setblocking(false)
    local ex <close> = eddy.ThreadPoolExecutor(1)
    local calls = {
      {"create_server", 4, function(o) loop:create_server(function() end, "127.0.0.1", 0, o) end},
      {"create_datagram_endpoint", 4,
        function(o) loop:create_datagram_endpoint(function() end, {"127.0.0.1", 0}, nil, o) end},
      {"getaddrinfo", 3, function(o) loop:getaddrinfo("localhost", 80, o) end},
      {"add_done_callback", 2, function(o) loop:create_future():add_done_callback(print, o) end},
      {"open_connection", 3, function(o) eddy.open_connection("127.0.0.1", 1, o) end},
      {"create_subprocess_exec", 2, function(o) eddy.create_subprocess_exec("true", o) end},
      {"sock_sendfile", 5, function(o) loop:sock_sendfile(sock, io.tmpfile(), 0, nil, o) end},
      {"shutdown", 2, function(o) ex:shutdown(true, o) end},
    }
    for _, call in ipairs(calls) do
      local fname, n, fn = call[1], call[2], call[3]
      local ok, err = pcall(fn, object)
      assert.is_false(ok)
      -- (at the line calling fname, in this file)
      assert.equal(string.format("spec/errors_spec.lua:%d: bad argument #%d to '%s' (%s)",
                                 debug.getinfo(fn, "S").linedefined, n, fname, expected),
                   tostring(err))
      -- an object that names its type is named
      ok, err = pcall(fn, eddy.Queue())
      assert.matches("options table expected, got eddy.Queue)", tostring(err), 1, true)
    end
  end))
end)
