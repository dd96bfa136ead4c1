-- Differential harness, eddy side: StreamReader and StreamWriter.  The
-- same seeded random programs and writer scenarios as
-- tools/diff/streams.py (CPython), printed the same way, one line per
-- call or event, "scenario: label result"; `tools/diff/run.sh streams`
-- diffs the two.  Usage: eddy streams.lua [scenario-prefix];
-- STREAMS_SEEDS and STREAMS_ONE_SEPARATOR as streams.py's.
local eddy = require "eddy"
local S = require "eddy.socket"
local errors = require "eddy.errors"

package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local trace = require "trace"

local SEEDS = math.tointeger(os.getenv("STREAMS_SEEDS")) or 300
local TMP = io.popen("mktemp -d /tmp/eddy-streams-XXXXXX"):read("l")

-- A string show() prints as it is.
local Raw = {}
local function raw(s) return setmetatable({s = s}, Raw) end

-- A value as streams.py prints it (see its show).
local function show(v)
  if getmetatable(v) == Raw then return v.s end
  if type(v) == "string" then
    if #v > 24 then
      local _, nl = v:gsub("\n", "")
      v = string.format("%s..%s(%d,%d)", v:sub(1, 8), v:sub(-8), #v, nl)
    end
    return '"' .. v:gsub("\r", "\\r"):gsub("\n", "\\n") .. '"'
  end
  if math.type(v) == "integer" then return tostring(v) end
  return trace.pyshow(v, show)
end

-- A (host, port) address, its ephemeral port as PORT.
local function addr(a)
  return raw(string.format("{%s, %s}", a[1], a[2] >= 10000 and "PORT" or a[2]))
end

-- An error with what it carries, as streams.py's err; a Lua argument
-- error is Python's TypeError.
local function err(e)
  if type(e) ~= "table" or not e.__name then
    return raw("error ArgError (" .. trace.emsg(e) .. ")")
  end
  if e.code then return raw(string.format("error %s %s", e.__name, e.code)) end
  local words = {"error", e.__name, "(" .. (e.message or "") .. ")"}
  if e.__name == "IncompleteReadError" then
    table.move({"partial", show(e.partial), "expected", show(e.expected)}, 1, 4, #words + 1, words)
  elseif e.__name == "LimitOverrunError" then
    table.move({"consumed", show(e.consumed)}, 1, 2, #words + 1, words)
  end
  return raw(table.concat(words, " "))
end

local Trace = {}
Trace.__index = Trace

function Trace:__call(label, ...)
  local words = table.pack(...)
  for i = 1, words.n do words[i] = show(words[i]) end
  local line = string.format("%s: %s %s", self.name, label, table.concat(words, " ", 1, words.n))
  print((line:gsub("%s+$", "")))
  io.stdout:flush()
end

local function tick(n)
  for _ = 1, n or 5 do eddy.sleep(0) end
end

-- Let what was sent arrive (streams.py's settle).
local function settle(net)
  if net then eddy.sleep(0.005) else tick() end
end

local function loop() return eddy.get_running_loop() end

-- {================================================= random programs

local TOKENS = {"a", "bcd", "\n", "\r\n", "XY", "--", "*"}
local LIMITS = {1, 2, 3, 5, 8, 16, 64, 65536}
local SEPARATORS = {"\n", "XY", "\r\n", "--", "Y\n", {"\n"}, {"XY", "\n"},
                    {"--", "\r\n", "Y"}, {"Y\n", "\n"}, {"-", "--"}, "", {}, {"a", ""}}
if os.getenv("STREAMS_ONE_SEPARATOR") then  -- for 3.12 (streams.py)
  local strings = {}
  for _, sep in ipairs(SEPARATORS) do
    if type(sep) == "string" then strings[#strings + 1] = sep end
  end
  SEPARATORS = strings
end

-- Up to 3 x limit bytes of tokens, cut at a random length (streams.py's chunk).
local function chunk(rng, limit)
  local size = rng:pick {0, 1, 2, 3, limit // 2, limit, limit + 1, 2 * limit, 3 * limit}
  local parts, n = {}, 0
  while n < size do
    local p = rng:pick(TOKENS)
    if p == "*" then p = string.rep("f", rng:pick {1, 7, limit, 2 * limit}) end
    parts[#parts + 1] = p
    n = n + #p
  end
  return table.concat(parts):sub(1, size)
end

-- data cut at random points (writelines' list).
local function split(rng, data)
  local parts = {}
  while #data > 0 do
    local n = rng:pick {1, 2, 5, #data}
    parts[#parts + 1] = data:sub(1, n)
    data = data:sub(n + 1)
  end
  return parts
end

-- A reader call: label, function of the reader.
local function random_op(rng, limit)
  local what = rng:pick {"read", "read", "readline", "readexactly", "readuntil",
                         "at_eof", "lines", "buffered"}
  if what == "read" then
    local n = rng:pick {-1, 0, 1, 2, limit, 2 * limit + 1, 3 * limit}
    return "read " .. n, function(r) return r:read(n) end
  elseif what == "readline" then
    return "readline", function(r) return r:readline() end
  elseif what == "readexactly" then
    local n = rng:pick {-1, 0, 1, 2, limit, limit + 1, 3 * limit}
    return "readexactly " .. n, function(r) return r:readexactly(n) end
  elseif what == "readuntil" then
    local sep = rng:pick(SEPARATORS)
    return "readuntil " .. show(sep), function(r) return r:readuntil(sep) end
  elseif what == "lines" then
    local k = rng:pick {1, 2, 5}
    return "lines " .. k, function(r)
      local got = {}
      for line in r:lines() do
        got[#got + 1] = line
        if #got >= k then break end
      end
      return got
    end
  end
  return what, function(r)
    if what == "at_eof" then return r:at_eof() end
    return r:_status().size
  end
end

local function run_op(t, label, fn, reader)
  local ok, r = pcall(fn, reader)
  if not ok and errors.is(r, errors.CancelledError) then error(r, 0) end  -- as Python's
  if ok then t(label, r) else t(label, err(r)) end
end

local function reset(writer)
  writer:get_extra_info("socket"):setsockopt(S.SOL_SOCKET, S.SO_LINGER, string.pack("i4i4", 1, 0))
end

-- One random program (streams.py's program).
local function program(t, seed, kind)
  local net = kind ~= "feed"
  local rng = trace.Rng(seed)
  local limit = rng:pick(LIMITS)
  t("limit", limit)
  local lp = loop()
  local reader, server, cw, sw
  if net then
    local accepted = lp:create_future()
    local function cb(r, w) accepted:set_result({r, w}) end
    local _
    if kind == "unix" then
      server = eddy.start_unix_server(cb, TMP .. "/s", {limit = limit})
      _, cw = eddy.open_unix_connection(TMP .. "/s")
    else
      server = eddy.start_server(cb, "127.0.0.1", 0, {limit = limit})
      _, cw = eddy.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
    end
    reader, sw = table.unpack(accepted:await())
  else
    reader = eddy.StreamReader(limit)
  end
  local pending, ended

  local function feed(data)
    if not net then
      reader:feed_data(data)
    elseif rng:pick {false, true} then
      local parts = split(rng, data)
      t("writelines", #parts)
      cw:writelines(parts)
    else
      cw:write(data)
    end
    if net then
      local ok, e = pcall(eddy.wait_for, function() return cw:drain() end, 3)
      if not ok then t("drain", err(e)) end
      eddy.sleep(0.01)
    end
  end

  local function finish()
    local how = net and rng:pick {"write_eof", "write_eof", "close", "abort", "reset", "own_close",
                                  "own_abort"}
                or rng:pick {"feed_eof", "feed_eof", "feed_eof", "set_exception",
                             "feed_then_fail", "eof_then_fail"}
    t(how)
    if how == "feed_eof" then
      reader:feed_eof()
    elseif how == "set_exception" then
      reader:set_exception(errors.ValueError("boom"))
    elseif how == "feed_then_fail" or how == "eof_then_fail" then  -- a read woken, then the error
      if how == "feed_then_fail" then
        local data = chunk(rng, limit)
        t("feed", data)
        reader:feed_data(data)
      else
        reader:feed_eof()
      end
      reader:set_exception(errors.ValueError("boom"))
    elseif how == "write_eof" then
      cw:write_eof()
    elseif how == "close" then
      cw:close()
    elseif how == "own_close" then  -- the reader's own side closes
      sw:close()
    elseif how == "own_abort" then
      sw.transport:abort()
    else
      if how == "reset" then reset(cw) end
      cw.transport:abort()
    end
    if net then eddy.sleep(0.01) end
  end

  for _ = 1, rng:pick {3, 5, 8, 12} do
    if pending == nil and (ended or rng:pick {false, true, true}) then
      local label, fn = random_op(rng, limit)
      pending = lp:create_task(run_op, t, label, fn, reader)
    elseif pending and rng:pick {false, false, false, false, true} then
      if rng:pick {false, true} then
        t("cancel")
        pending:cancel()
      else  -- a second read while one waits
        local label, fn = random_op(rng, limit)
        run_op(t, "second " .. label, fn, reader)
      end
    elseif not ended and rng:pick {true, true, true, true, false} then
      local data = chunk(rng, limit)
      t("feed", data)
      feed(data)
    elseif not ended then
      finish()
      ended = true
    end
    settle(net)
    if pending then
      if pending:done() then pending = nil else t("waiting") end
    end
  end
  if not ended then
    finish()
    settle(net)
  end
  if pending then eddy.wait_for(function() return pending:await() end, 3) end
  if reader:exception() then t("exception", err(reader:exception())) end
  run_op(t, "rest", function(r) return r:read() end, reader)
  t("at_eof", reader:at_eof())
  if net then
    cw:close()
    sw:close()
    for _, w in ipairs {cw, sw} do
      local ok, e = pcall(eddy.wait_for, function() return w:wait_closed() end, 3)
      if not ok then t("wait_closed", err(e)) end
    end
    server:close()
  end
end

-- }=================================================
-- {================================================= the writer

-- A connected writer and the peer's reader, writer.
local function pair(limit)
  local accepted = loop():create_future()
  local server = eddy.start_server(function(r, w) accepted:set_result({r, w}) end,
                                   "127.0.0.1", 0, {limit = limit})
  local cr, cw = eddy.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
  local sr, sw = table.unpack(accepted:await())
  server:close()
  return cr, cw, sr, sw
end

-- fn(...): prints what it returned (several values as one {...}, a
-- Python tuple) or raised.
local function call(t, label, fn, ...)
  local r = table.pack(pcall(fn, ...))
  if not r[1] then
    t(label, err(r[2]))
    return nil
  end
  t(label, r.n > 2 and table.pack(table.unpack(r, 2, r.n)) or r[2])
  return r[2]
end

-- As call, for a suspending fn, bounded by 'timeout' (3 s by default).
local function aw(t, label, fn, timeout, ...)
  local args = table.pack(...)
  return call(t, label, eddy.wait_for, function() return fn(table.unpack(args, 1, args.n)) end,
              timeout or 3)
end

local writer = {}

function writer.w_flow(t)
  local _, cw, sr, sw = pair()
  local tr = cw.transport
  call(t, "limits", tr.get_write_buffer_limits, tr)
  call(t, "set limits", tr.set_write_buffer_limits, tr, 100000, 50000)
  call(t, "limits", tr.get_write_buffer_limits, tr)
  call(t, "low above high", tr.set_write_buffer_limits, tr, 10, 20)
  call(t, "high only", tr.set_write_buffer_limits, tr, 40000)
  call(t, "limits", tr.get_write_buffer_limits, tr)
  call(t, "set limits", tr.set_write_buffer_limits, tr, 100000, 50000)
  local block = string.rep("x", 65536)
  for _ = 1, 200 do  -- until the kernel's buffers are full
    cw:write(block)
    if tr:get_write_buffer_size() > 100000 then break end
  end
  t("buffered over high", tr:get_write_buffer_size() > 100000)
  t("protocol paused", cw._protocol._paused)  -- pause_writing was called
  local drain = loop():create_task(cw.drain, cw)
  tick()
  t("drain waits", not drain:done())
  local drain2 = loop():create_task(cw.drain, cw)
  tick()
  t("second drain waits", not drain2:done())
  local got = 0
  while not drain:done() do got = got + #sr:read(65536) end
  t("drained below low", tr:get_write_buffer_size() <= 50000)
  t("protocol paused", cw._protocol._paused)
  aw(t, "drain", drain.await, nil, drain)
  aw(t, "second drain", drain2.await, nil, drain2)
  aw(t, "drain again", cw.drain, nil, cw)
  call(t, "write_eof", cw.write_eof, cw)
  while true do
    local data = sr:read(65536)
    if data == "" then break end
    got = got + #data
  end
  t("received all", got % 65536)
  cw:close()
  sw:close()
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
end

-- New limits while paused (streams.py's w_limits).
function writer.w_limits(t)
  local _, cw, sr, sw = pair()
  local tr = cw.transport
  call(t, "negative high", tr.set_write_buffer_limits, tr, -1)
  call(t, "negative low", tr.set_write_buffer_limits, tr, 10, -1)
  call(t, "zero", tr.set_write_buffer_limits, tr, 0)
  call(t, "limits", tr.get_write_buffer_limits, tr)
  cw:write("x")  -- taken by the socket: nothing queued, no pause
  t("paused after a small write", cw._protocol._paused)
  local block = string.rep("x", 65536)
  while tr:get_write_buffer_size() == 0 do cw:write(block) end
  t("paused once queued", cw._protocol._paused)
  call(t, "raise high", tr.set_write_buffer_limits, tr, 2 ^ 30 // 1)
  t("paused after raising high", cw._protocol._paused)
  local drain = loop():create_task(cw.drain, cw)
  tick()
  t("drain waits", not drain:done())
  call(t, "high back to 0", tr.set_write_buffer_limits, tr, 0)
  t("paused", cw._protocol._paused)
  while not drain:done() do sr:read(65536) end
  aw(t, "drain", drain.await, nil, drain)
  t("paused", cw._protocol._paused, tr:get_write_buffer_size())
  cw:close()
  while sr:read(65536) ~= "" do end
  sw:close()
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
end

function writer.w_eof(t)
  local cr, cw, sr, sw = pair()
  t("can_write_eof", cw:can_write_eof())
  cw:write("half")
  call(t, "write_eof", cw.write_eof, cw)
  t("is_closing", cw:is_closing())
  call(t, "write_eof again", cw.write_eof, cw)
  call(t, "write after write_eof", cw.write, cw, "more")
  call(t, "empty write after write_eof", cw.write, cw, "")
  call(t, "writelines after write_eof", cw.writelines, cw, {"x"})
  aw(t, "drain after write_eof", cw.drain, nil, cw)
  aw(t, "peer read", sr.read, nil, sr)
  t("peer at_eof", sr:at_eof())
  sw:write("answer")
  aw(t, "peer drain", sw.drain, nil, sw)
  sw:close()
  aw(t, "read answer", cr.read, nil, cr)
  aw(t, "wait_closed", cw.wait_closed, 0.3, cw)  -- half-closed: it stays open
  aw(t, "peer wait_closed", sw.wait_closed, nil, sw)
  t("is_closing", cw:is_closing())
  cw:close()
  aw(t, "wait_closed after close", cw.wait_closed, nil, cw)
end

function writer.w_close(t)
  local cr, cw, sr, sw = pair()
  cw:write("before close")
  call(t, "close", cw.close, cw)
  t("is_closing", cw:is_closing())
  call(t, "close again", cw.close, cw)
  call(t, "write after close", cw.write, cw, "x")
  call(t, "writelines after close", cw.writelines, cw, {"x"})
  call(t, "write_eof after close", cw.write_eof, cw)
  aw(t, "drain after close", cw.drain, nil, cw)
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
  aw(t, "wait_closed again", cw.wait_closed, nil, cw)
  aw(t, "drain after closed", cw.drain, nil, cw)
  aw(t, "read after closed", cr.read, nil, cr)
  aw(t, "peer read", sr.read, nil, sr)
  sw:close()
  aw(t, "peer wait_closed", sw.wait_closed, nil, sw)
end

function writer.w_reset(t)
  local cr, cw, _, sw = pair()
  reset(sw)
  sw.transport:abort()
  eddy.sleep(0.05)
  aw(t, "read after reset", cr.read, nil, cr)
  local failed
  for _ = 1, 50 do
    cw:write(string.rep("y", 1000))
    local ok, e = pcall(eddy.wait_for, function() return cw:drain() end, 3)
    if not ok then failed = e break end
    eddy.sleep(0.01)
  end
  t("drain failed", failed and err(failed))
  t("is_closing", cw:is_closing())
  aw(t, "drain again", cw.drain, nil, cw)
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
  aw(t, "peer wait_closed", sw.wait_closed, nil, sw)
end

-- The peer resets while a read waits, and with data buffered.
function writer.w_reset_reader(t)
  local cr, cw, _, sw = pair()
  local read = loop():create_task(cr.readexactly, cr, 10)
  sw:write("12345")
  eddy.sleep(0.05)
  reset(sw)
  sw.transport:abort()
  aw(t, "waiting read", read.await, nil, read)
  t("exception", cr:exception() and err(cr:exception()))
  t("at_eof", cr:at_eof())
  aw(t, "read", cr.read, nil, cr, 1)
  aw(t, "drain", cw.drain, nil, cw)
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
end

function writer.w_extra(t)
  local _, cw, _, sw = pair()
  t("peername", addr(cw:get_extra_info("peername")))
  t("sockname", addr(cw:get_extra_info("sockname")))
  local peer, name = sw:get_extra_info("peername"), cw:get_extra_info("sockname")
  t("peer peername", peer[1] == name[1] and peer[2] == name[2])
  local s = cw:get_extra_info("socket")
  t("socket", s.family, s.type)
  t("missing", cw:get_extra_info("nothing"))
  t("missing default", cw:get_extra_info("nothing", "dflt"))
  t("sslcontext", cw:get_extra_info("sslcontext"))
  cw:close()
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
  t("peername after close", addr(cw:get_extra_info("peername")))
  sw:close()
end

function writer.w_writelines(t)
  local _, cw, sr, sw = pair()
  call(t, "writelines", cw.writelines, cw, {"a", "", "bc", "\n"})
  call(t, "writelines empty", cw.writelines, cw, {})
  call(t, "write empty", cw.write, cw, "")
  aw(t, "drain", cw.drain, nil, cw)
  aw(t, "peer readline", sr.readline, nil, sr)
  cw:close()
  sw:close()
  aw(t, "wait_closed", cw.wait_closed, nil, cw)
  -- an empty chunk last, then close (CPython gh-155888: it never closes)
  _, cw, sr, sw = pair()
  cw:writelines({"hello", ""})
  cw:close()
  aw(t, "wait_closed after an empty chunk", cw.wait_closed, 0.5, cw)
  aw(t, "peer read", sr.read, nil, sr)
  sw:close()
end

local WRITER = {"w_flow", "w_limits", "w_eof", "w_close", "w_reset", "w_reset_reader", "w_extra", "w_writelines"}

-- }=================================================

local function new_trace(name) return setmetatable({name = name}, Trace) end

local prefix = arg[1] or ""
eddy.run(function()
  for _, name in ipairs(WRITER) do
    if name:sub(1, #prefix) == prefix then writer[name](new_trace(name)) end
  end
  for _, kind in ipairs {{"feed", SEEDS}, {"tcp", math.max(1, SEEDS // 3)},
                         {"unix", math.max(1, SEEDS // 6)}} do
    for seed = 1, kind[2] do
      local name = kind[1] .. seed
      if name:sub(1, #prefix) == prefix or kind[1] == prefix then
        local t = new_trace(name)
        local ok, e = pcall(program, t, seed, kind[1])
        if not ok then t("harness", err(e)) end
      end
    end
  end
end)
os.execute("rm -rf " .. TMP)
