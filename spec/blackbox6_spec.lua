-- Black-box cases, sixth pass: written from /work/shared/API.md alone (and
-- asyncio's documented behaviour, by API.md §1's translation rules) as a
-- user porting asyncio programs and deploying them the three ways eddy is
-- run: `eddy app.lua`, the REPL through a pipe, and embedding (a C host
-- built against eddy.h, `require "eddy"` from lua5.4).  The programs: an
-- HTTPS-style client and server against openssl as the independent peer,
-- a daemon stopped by real signals, a CPU-bound worker pool, a static file
-- server on sendfile, a watchdog on fd watchers, raw sock_* peers, and
-- debug mode with the exception handler; each with the error paths a user
-- hits.  Every description cites the API.md section it checks.
local eddy = require "eddy"
local errors = eddy.errors
local ssl = require "eddy.ssl"
local socket = require "eddy.socket"
local async = require("eddy.test").async
local run_collecting = require("eddy.test").run_collecting
local checks = require "support.checks"
local net = require "support.net"
local tls = require "support.tls"
local tmp = require "support.tmp"
local cli = require "cli_helper"
local expect_error = checks.expect_error
local bounded = checks.bounded

teardown(function() tls.cleanup() end)

-- The build directory of the eddy under test (build/eddy -> build).
local BUILD = cli.binary:match("^(.*)/[^/]*$") or "."

-- The sanitizer runtimes an uninstrumented program (lua5.4, a host built
-- here) must preload to use a sanitized libeddy, as tools/run-tests.sh.
local function sanitizer_preload()
  local p = io.popen("ldd " .. cli.q(BUILD .. "/module/eddy.so") .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  if not out:find("libasan", 1, true) then return "" end
  local libs = {}
  for _, lib in ipairs {"libasan.so", "libubsan.so"} do
    local g = io.popen("gcc -print-file-name=" .. lib)
    libs[#libs + 1] = g:read("l")
    g:close()
  end
  return "LD_PRELOAD=" .. cli.q(table.concat(libs, " "))
    .. " ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1"
end

describe("§11 `eddy app.lua`: a command-line program", function()
  it("§11/§3 a filter reads piped stdin through connect_read_pipe, takes its arguments from "
     .. "`arg` and `...`, writes stdout, and the drain finishes a task it left pending", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local prefix, times = ...
assert(arg[1] == prefix and arg[2] == times and arg[0]:match("%.lua$"))
local loop = eddy.get_event_loop()
local done = loop:create_future()
local data = {}
local proto = {
  data_received = function(_, d) data[#data + 1] = d end,
  eof_received = function() end,
  connection_lost = function(_, err) done:set_result(err) end,
}
loop:connect_read_pipe(function() return proto end, io.stdin)  -- top-level suspension
assert(done:await() == nil)
for line in table.concat(data):gmatch("[^\n]+") do
  io.write(prefix, line:upper():rep(tonumber(times)), "\n")
end
-- left pending when the chunk returns: the drain runs it
loop:create_task(function() eddy.sleep(0.05) io.write("late\n") end)
]], ".lua")
    -- stdin a real pipe: a regular file is no pipe (ValueError, as asyncio)
    local r = cli.sh("sh -c " .. cli.q("printf 'ab\\ncd\\n' | " .. cli.q(cli.binary) .. " "
                                       .. cli.q(script) .. " '> ' 2"))
    assert.same({code = 0, out = "> ABAB\n> CDCD\nlate\n", err = ""}, r)
  end)

  it("§11/§9 an error object escaping the main chunk prints 'ClassName: message' and a "
     .. "traceback on stderr, exits 1, and the pending work is not run", function()
    local r = cli.eddy(cli.q(cli.tempfile([[
local eddy = require "eddy"
eddy.get_event_loop():call_later(0.05, print, "never")
local function deep() error(eddy.errors.ValueError("port must be a number")) end
deep()
]], ".lua")))
    assert.equal(1, r.code)
    assert.equal("", r.out)
    assert.truthy(r.err:find("ValueError: port must be a number", 1, true), r.err)
    assert.truthy(r.err:find("stack traceback:", 1, true), r.err)
    assert.truthy(r.err:find("'deep'", 1, true), r.err)  -- the traceback names the raiser
  end)

  it("§11 os.exit(3) from a task of a server script ends it at once with status 3, the open "
     .. "server no obstacle", function()
    local r = cli.eddy(cli.q(cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
loop:create_task(function() eddy.sleep(0.02) io.write("bye\n") io.stdout:flush() os.exit(3) end)
]], ".lua")), {timeout = 5})
    assert.same({code = 3, out = "bye\n", err = ""}, r)
  end)

  it("§11/§5 a task that fails while the script drains: its error and traceback reach "
     .. "stderr through the default handler and the status is 1; the other tasks still finish",
     function()
    local r = cli.eddy(cli.q(cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
loop:create_task(function() eddy.sleep(0.01) error(eddy.errors.RuntimeError("worker died")) end)
loop:create_task(function() eddy.sleep(0.05) print("other done") end)
]], ".lua")))
    assert.equal(1, r.code, r.err)
    assert.equal("other done\n", r.out)
    assert.truthy(r.err:find("Task exception was never retrieved", 1, true), r.err)
    assert.truthy(r.err:find("RuntimeError: worker died", 1, true), r.err)
    assert.truthy(r.err:find("traceback", 1, true), r.err)
  end)
  it("§11/§3/§7 a producer writing stdout through connect_write_pipe into `head -c 5`: the "
     .. "closed pipe is connection_lost(BrokenPipeError), not a SIGPIPE death; later writes "
     .. "are dropped silently", function()
    local script = cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
local lost = loop:create_future()
local t = loop:connect_write_pipe(function()
  return {connection_lost = function(_, err) lost:set_result(err) end}
end, io.stdout)
for _ = 1, 64 do t:write(string.rep("y", 65536)) end
local err = eddy.wait_for(lost, 5)
assert(eddy.errors.is(err, eddy.errors.BrokenPipeError), tostring(err))
assert(t:is_closing())
t:write("more")
io.stderr:write("handled ", tostring(err), "\n")
]], ".lua")
    local r = cli.sh("sh -c " .. cli.q("{ " .. cli.q(cli.binary) .. " " .. cli.q(script)
                                       .. "; echo status $? >&2; } | head -c 5"))
    assert.equal("yyyyy", r.out)
    assert.equal("handled BrokenPipeError: broken pipe\nstatus 0\n", r.err)
  end)
end)

describe("§11 the REPL driven through a pipe", function()
  it("§11 a server started at one entry answers a client of a later entry; an error entry "
     .. "and a callback's error do not end the session; end of input closes the loop with status 0", function()
    local r = cli.eddy("-i", {stdin = table.concat({
      "srv = eddy.start_server(function(r, w) w:write('echo ' .. r:readline()) w:close() end, '127.0.0.1', 0)",
      "port = srv.sockets[1]:getsockname()[2]",
      "error(eddy.errors.TimeoutError('slow peer'))",
      "loop:call_later(0.01, error, 'background boom')",
      "eddy.sleep(0.05)",
      "r, w = eddy.open_connection('127.0.0.1', port)",
      "w:write('hi\\n')",
      "= r:readline()",
      "= eddy.sleep(0.01, 'slept', 7)",
      "srv:close() srv:wait_closed() w:close()",
      "= srv:is_serving(), loop:is_running()",
      ""}, "\n")})
    assert.equal(0, r.code, r.err)
    -- lua.c's output with input that is not a terminal: each entry after
    -- its prompt, then its values
    assert.matches("\n> = r:readline%(%)\necho hi\n\n> = eddy.sleep%(0.01, 'slept', 7%)\nslept\t7\n"
                   .. "> srv:close%(%) srv:wait_closed%(%) w:close%(%)\n"
                   .. "> = srv:is_serving%(%), loop:is_running%(%)\nfalse\ttrue\n> \n?$", r.out)
    assert.truthy(r.err:find("TimeoutError: slow peer", 1, true), r.err)
    -- a callback's error between entries goes to the default handler
    assert.truthy(r.err:find("Exception in callback", 1, true), r.err)
    assert.truthy(r.err:find("background boom", 1, true), r.err)
  end)
end)

describe("§12 embedding", function()
  -- Build the C source file 'src' with nothing but what pkg-config says
  -- (the build directory's meson-uninstalled, as docs/embedding.md) and
  -- -lpthread, and run it; cli.sh's result.
  local function run_host(src)
    local pc = io.popen("PKG_CONFIG_PATH=" .. cli.q(BUILD .. "/meson-uninstalled")
                        .. " pkg-config --cflags --libs eddy 2>&1")
    local flags = pc:read("a"):gsub("\n", " ")
    assert.is_true(pc:close(), flags)
    local exe = tmp.path("")
    local cc = cli.sh("cc -o " .. cli.q(exe) .. " " .. cli.q(src) .. " " .. flags .. " -lpthread",
                      {timeout = 60})
    assert.equal(0, cc.code, cc.err)
    return cli.sh(cli.q(exe), {env = sanitizer_preload() .. " LD_LIBRARY_PATH=" .. cli.q(BUILD)})
  end

  it("§12 a C host built with the pkg-config flags: its own C function, a top-level "
     .. "suspension, eddy_run to the end, an error's message with traceback in eddy_errmsg, and "
     .. "eddy_run failing on a task error nobody retrieved", function()
    local src = tmp.file([[
#include <eddy.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

static int host_add(lua_State *L) {
  lua_pushinteger(L, luaL_checkinteger(L, 1) + luaL_checkinteger(L, 2));
  return 1;
}

int main(void) {
  eddy_State *E = eddy_new(NULL);
  if (E == NULL) return 2;
  lua_register(eddy_lua(E), "host_add", host_add);
  if (eddy_dostring(E,
      "local eddy = require 'eddy'\n"
      "result = host_add(eddy.sleep(0.01, 40), 2)\n"
      "eddy.get_event_loop():call_later(0.02, function() result = result * 10 end)\n",
      "=main") != 0) {
    printf("dostring: %s\n", eddy_errmsg(E));
    return 3;
  }
  if (eddy_run(E, UV_RUN_DEFAULT) != 0) return 4;
  lua_getglobal(eddy_lua(E), "result");
  printf("result %d\n", (int)lua_tointeger(eddy_lua(E), -1));
  lua_pop(eddy_lua(E), 1);
  if (eddy_dostring(E, "local function f() host_add('x', 1) end f()", "=bad") == 0) return 5;
  printf("errmsg %s\n", eddy_errmsg(E));
  /* an unretrieved task error reaches the default handler: eddy_run fails */
  if (eddy_dostring(E, "require('eddy').get_event_loop():create_task(error, 'lost', 0)", "=t") != 0)
    return 6;
  printf("run %d\n", eddy_run(E, UV_RUN_DEFAULT) != 0);
  printf("report %s\n", eddy_errmsg(E));
  eddy_close(E);
  return 0;
}
]], ".c")
    local r = run_host(src)
    assert.equal(0, r.code, r.out .. r.err)
    assert.equal("result 420", r.out:match("^[^\n]*"))
    local msg = r.out:match("errmsg (.*)\nrun ")
    assert.truthy(msg:find("bad argument #1 to 'host_add' (number expected, got string)", 1, true), msg)
    assert.truthy(msg:find("stack traceback:", 1, true), msg)
    assert.matches("\nrun 1\nreport Task exception was never retrieved\n.*lost", r.out)
    assert.matches("Task exception was never retrieved", r.err)  -- printed too
  end)

  it("§12 a host driving its own loop: eddy_run(UV_RUN_ONCE) turns until a task sets a "
     .. "global, woken by eddy_call_soon_threadsafe from a pthread; a missing file and a bad "
     .. "run mode fail with a message", function()
    local src = tmp.file([[
#include <eddy.h>
#include <pthread.h>
#include <stdio.h>

static void from_thread(lua_State *L, void *arg) {
  lua_getglobal(L, "on_thread");
  lua_pushstring(L, (const char *)arg);
  lua_call(L, 1, 0);
}

static void *worker(void *E) {
  eddy_call_soon_threadsafe((eddy_State *)E, from_thread, "hello from a thread");
  return NULL;
}

int main(void) {
  eddy_State *E = eddy_new(NULL);
  pthread_t th;
  int turns = 0, done = 0;
  if (eddy_dofile(E, "/nonexistent/app.lua") == 0) return 2;
  printf("dofile: %s\n", eddy_errmsg(E));
  if (eddy_dostring(E,
      "local eddy = require 'eddy'\n"
      "local loop = eddy.get_event_loop()\n"
      "local got = loop:create_future()\n"
      "function on_thread(s) got:set_result(s) end\n"
      "loop:create_task(function() print('task', got:await()) done = true end)\n",
      "=host") != 0) return 3;
  pthread_create(&th, NULL, worker, E);
  while (!done && turns < 1000) {
    if (eddy_run(E, UV_RUN_ONCE) != 0) return 4;
    turns++;
    lua_getglobal(eddy_lua(E), "done");
    done = lua_toboolean(eddy_lua(E), -1);
    lua_pop(eddy_lua(E), 1);
  }
  pthread_join(th, NULL);
  printf("done %d\n", done);
  printf("bad mode %d\n", eddy_run(E, (uv_run_mode)42) != 0);
  eddy_close(E);
  return 0;
}
]], ".c")
    local r = run_host(src)
    assert.equal(0, r.code, r.out .. r.err)
    assert.equal("dofile: cannot open /nonexistent/app.lua: No such file or directory\n"
                 .. "task\thello from a thread\ndone 1\nbad mode 1\n", r.out)
  end)

  it("§12 require 'eddy' from stock lua5.4 (eddy.so on LUA_CPATH): eddy.run with a TCP "
     .. "echo and an executor job, a signal sent to itself, results back to the host", function()
    if not cli.has("lua5.4") then pending("no lua5.4") return end
    local script = tmp.file([[
local eddy = require "eddy"
print(eddy.run(function(n)
  local loop = eddy.get_running_loop()
  local got = loop:create_future()
  loop:add_signal_handler("SIGUSR1", function(v) got:set_result(v) end, "usr1")
  os.execute("kill -USR1 " .. require("eddy.signal").getpid())
  local srv = eddy.start_server(function(r, w) w:write(r:readline():upper()) w:close() end,
                                "127.0.0.1", 0)
  local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
  w:write("ping\n")
  local line = r:read()
  w:close()
  srv:close()
  srv:wait_closed()
  return line, eddy.to_thread(function(k) return k * 2 end, n), eddy.wait_for(got, 5)
end, 21))
]], ".lua")
    local r = cli.sh("lua5.4 " .. cli.q(script), {env = sanitizer_preload() .. " LUA_CPATH="
                                                   .. cli.q(BUILD .. "/module/?.so")})
    assert.same({code = 0, out = "PING\n\t42\tusr1\n", err = ""}, r)
  end)
end)

-- A background openssl command (its stdin held open 'hold' seconds);
-- net.spawn's handle.
local function openssl(args, hold)
  return net.spawn(string.format("sleep %d | openssl %s", hold or 5, args), 20)
end

-- openssl s_server on a free port with 'cert' (default the localhost one,
-- signed by the test CA) and extra arguments; returns its handle and port
-- once it listens.
local function s_server(loop, extra, cert)
  local probe = loop:create_server(function() return {} end, "127.0.0.1", 0)
  local port = probe.sockets[1]:getsockname()[2]
  probe:close()
  probe:wait_closed()
  cert = cert or "server"
  local proc = openssl(string.format("s_server -accept %d -cert %s -key %s %s", port,
                                     tls.path(cert .. ".pem"), tls.path(cert .. ".key"), extra or ""))
  net.wait_until(function()  -- s_server says ACCEPT once it listens
    if proc.done() then error("openssl s_server ended: " .. proc.output()) end
    return proc.output():find("ACCEPT", 1, true) ~= nil
  end, 10)
  return proc, port
end

-- A client context trusting the test CA, with ALPN protocols if given.
local function client_ctx(alpn)
  local ctx = tls.client_context()
  if alpn then ctx:set_alpn_protocols(alpn) end
  return ctx
end

describe("§10/§3 an HTTPS-style client and server, openssl as the peer", function()
  it("§10/§7 an HTTPS GET from open_connection to `openssl s_server -www`: ALPN chosen, "
     .. "get_extra_info's sslcontext, ssl_object, peercert, cipher, peername and sockname",
     async(function(loop)
    local proc, port = s_server(loop, "-www -alpn http/1.1 -naccept 1")
    local ctx = client_ctx({"h2", "http/1.1"})
    local r, w = eddy.open_connection("127.0.0.1", port, {ssl = ctx, server_hostname = "localhost"})
    assert.equal(ctx, w:get_extra_info("sslcontext"))
    local obj = w:get_extra_info("ssl_object")
    assert.equal("http/1.1", obj:selected_alpn_protocol())
    assert.equal("localhost", obj.server_hostname)
    assert.is_false(obj.server_side)
    assert.equal("TLSv1.2", obj:version())
    local cert = w:get_extra_info("peercert")
    -- Python writes "0:0:0:0:0:0:0:1"; eddy's documented choice is "::1"
    -- (docs/tls.md, differences)
    assert.same({{"DNS", "localhost"}, {"IP Address", "127.0.0.1"}, {"IP Address", "::1"}},
                cert.subjectAltName)
    assert.same({{"commonName", "eddy test CA"}}, cert.issuer[1])
    -- the DER form is the certificate's own bytes, as openssl writes them
    local der = io.popen("openssl x509 -in " .. cli.q(tls.path("server.pem")) .. " -outform DER")
    assert.equal(der:read("a"), obj:getpeercert(true))
    der:close()
    assert.is_nil(w:get_extra_info("compression"))
    local cipher = w:get_extra_info("cipher")
    local name, version, bits = obj:cipher()
    assert.same({name, version, bits}, cipher)
    assert.equal("TLSv1.2", version)
    assert.is_true(math.type(bits) == "integer" and bits >= 128)
    assert.same({"127.0.0.1", port}, w:get_extra_info("peername"))
    assert.equal("127.0.0.1", w:get_extra_info("sockname")[1])
    assert.equal("none", w:get_extra_info("no such key", "none"))
    w:write("GET / HTTP/1.0\r\n\r\n")
    local page = bounded(r.read, r)
    assert.equal("HTTP/1.0 200 ok\r\n", page:match("^[^\n]*\n"))
    -- s_server's status page: its command line, then the session it saw
    assert.truthy(page:find("s_server -accept " .. port, 1, true), page)
    assert.truthy(page:find("New, TLSv1.2, Cipher is", 1, true), page)
    assert.is_true(r:at_eof())
    w:close()
    w:wait_closed()
    proc.cleanup()
  end, 20))

  it("§9/§10 verification against s_server: a wrong server_hostname and an untrusted "
     .. "certificate raise SSLCertVerificationError (an SSLError, an OSError) with verify_message",
     async(function(loop)
    local proc, port = s_server(loop, "-naccept 1")
    local err = expect_error(errors.SSLCertVerificationError, eddy.open_connection, "127.0.0.1", port,
                             {ssl = client_ctx(), server_hostname = "www.example.org"})
    assert.is_true(errors.is(err, errors.SSLError) and errors.is(err, errors.OSError))
    assert.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
    -- mbedTLS's words (docs/tls.md)
    assert.truthy(err.verify_message:find("CN", 1, true), err.verify_message)
    proc.cleanup()
    local rogue, rport = s_server(loop, "-naccept 1", "rogue")
    err = expect_error(errors.SSLCertVerificationError, eddy.open_connection, "127.0.0.1", rport,
                       {ssl = client_ctx(), server_hostname = "localhost"})
    assert.truthy(err.verify_message:find("not correctly signed by the trusted CA", 1, true),
                  err.verify_message)
    rogue.cleanup()
  end, 20))

  it("§10/§9 mutual TLS against `openssl s_server -Verify 1`: no client certificate fails the "
     .. "handshake with the peer's alert as SSLError's reason; load_cert_chain's certificate is "
     .. "accepted; an ALPN list the server does not share is its fatal alert", async(function(loop)
    local verify = "-Verify 1 -CAfile " .. tls.path("ca.pem") .. " -naccept 1"
    local proc, port = s_server(loop, verify)
    local err = expect_error(errors.SSLError, eddy.open_connection, "127.0.0.1", port,
                             {ssl = client_ctx(), server_hostname = "localhost"})
    assert.equal("SSLV3_ALERT_HANDSHAKE_FAILURE", err.reason)
    proc.cleanup()
    proc, port = s_server(loop, verify)
    local ctx = client_ctx()
    ctx:load_cert_chain(tls.path("client.pem"), tls.path("client.key"))
    local _, w = eddy.open_connection("127.0.0.1", port, {ssl = ctx, server_hostname = "localhost"})
    w:write("with a certificate\n")
    net.wait_until(function() return proc.output():find("with a certificate", 1, true) ~= nil end, 10)
    assert.truthy(proc.output():find("subject=O = eddy, CN = eddy client", 1, true), proc.output())
    w:close()
    w:wait_closed()
    proc.cleanup()
    proc, port = s_server(loop, "-alpn h2 -naccept 1")
    err = expect_error(errors.SSLError, eddy.open_connection, "127.0.0.1", port,
                       {ssl = client_ctx({"http/1.1"}), server_hostname = "localhost"})
    assert.equal("TLSV1_ALERT_NO_APPLICATION_PROTOCOL", err.reason)
    proc.cleanup()
  end, 25))

  it("§10/§8 `openssl s_client -alpn` against an eddy start_server: the server's ssl_object "
     .. "is server_side with the ALPN choice and no peercert; s_client verifies the chain", async(function(loop)
    local ctx = tls.server_context()
    ctx:set_alpn_protocols({"http/1.1"})
    local seen = loop:create_future()
    local srv <close> = eddy.start_server(function(r, w)
      local obj = w:get_extra_info("ssl_object")
      local line = r:readline()
      w:write("HTTP/1.0 200 OK\r\n\r\nyou said " .. line)
      w:close()
      seen:set_result({obj.server_side, obj:selected_alpn_protocol(), w:get_extra_info("peercert"),
                       w:get_extra_info("peername")[1], line})
    end, "127.0.0.1", 0, {ssl = ctx})
    local proc = net.spawn(string.format(
      "(echo 'GET /'; sleep 3) | openssl s_client -connect 127.0.0.1:%d -CAfile %s -alpn http/1.1 "
      .. "-servername localhost -verify_return_error", srv.sockets[1]:getsockname()[2],
      tls.path("ca.pem")), 20)
    assert.same({true, "http/1.1", nil, "127.0.0.1", "GET /\n"}, net.wait(seen, 10))
    net.wait_until(function() return proc.output():find("you said GET /", 1, true) ~= nil end, 10)
    assert.truthy(proc.output():find("ALPN protocol: http/1.1", 1, true), proc.output())
    assert.truthy(proc.output():find("Verify return code: 0", 1, true), proc.output())
    proc.cleanup()
  end, 20))

  it("§10 `openssl s_client -reconnect` offers its session again five times: the eddy server "
     .. "answers each with a full handshake (no session reuse, docs/tls.md) and serves all six",
     async(function(loop)
    local served = 0
    local srv <close> = eddy.start_server(function(r, w)
      served = served + 1
      r:readline()
      w:close()
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local proc = net.spawn(string.format(
      "echo hi | openssl s_client -connect 127.0.0.1:%d -CAfile %s -servername localhost "
      .. "-verify_return_error -reconnect", srv.sockets[1]:getsockname()[2], tls.path("ca.pem")), 20)
    net.wait_until(proc.done, 15)
    assert.equal(0, proc.status(), proc.output())
    local out = proc.output()
    assert.equal(6, select(2, out:gsub("\nNew, TLSv1%.2, Cipher is ", "")), out)
    assert.is_nil(out:find("\nReused,", 1, true))
    assert.equal(6, served)
    proc.cleanup()
  end, 25))

  it("§8 StreamWriter:start_tls on the server side of an SMTP-style STARTTLS, "
     .. "against `openssl s_client -starttls smtp`; and loop:start_tls from an eddy client",
     async(function(loop)
    local got = {}
    local srv <close> = eddy.start_server(function(r, w)
      w:write("220 eddy ESMTP\r\n")
      assert.truthy(r:readline():match("^EHLO"))
      w:write("250-eddy\r\n250 STARTTLS\r\n")
      assert.equal("STARTTLS\r\n", r:readline())
      w:write("220 go ahead\r\n")
      assert.is_nil(w:get_extra_info("ssl_object"))
      w:start_tls(tls.server_context())
      local obj = w:get_extra_info("ssl_object")
      local line = r:readline()
      got[#got + 1] = {obj.server_side, line}
      w:write("250 " .. line)
      w:close()
    end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    local proc = net.spawn(string.format(
      "(sleep 0.5; echo 'secret mail'; sleep 3) | openssl s_client -connect 127.0.0.1:%d -starttls smtp "
      .. "-CAfile %s -servername localhost -verify_return_error -quiet", port, tls.path("ca.pem")), 20)
    net.wait_until(function() return #got == 1 end, 10)
    assert.same({true, "secret mail\n"}, got[1])
    net.wait_until(function() return proc.output():find("250 secret mail", 1, true) ~= nil end, 10)
    proc.cleanup()
    -- the same server, upgraded from a Protocol client with loop:start_tls
    local rec = net.recorder(loop)
    local t = loop:create_connection(function() return rec end, "127.0.0.1", port)
    rec:wait_bytes(#"220 eddy ESMTP\r\n")
    t:write("EHLO me\r\n")
    rec:wait_bytes(#"220 eddy ESMTP\r\n250-eddy\r\n250 STARTTLS\r\n")
    t:write("STARTTLS\r\n")
    rec:wait_bytes(#"220 eddy ESMTP\r\n250-eddy\r\n250 STARTTLS\r\n220 go ahead\r\n")
    local tt = loop:start_tls(t, rec, client_ctx(), {server_hostname = "localhost"})
    assert.are_not.equal(t, tt)  -- a new transport; the plain one now belongs to the TLS layer
    assert.equal(rec, tt:get_protocol())
    tt:write("via loop\n")
    net.wait(rec.lost_fut)
    assert.truthy(rec:data():find("250 via loop\n", 1, true), rec:data())
    assert.same({true, "via loop\n"}, got[2])
  end, 25))

  it("§9/§3 a plain HTTP peer where TLS is expected: the client's handshake raises SSLError; "
     .. "the server never runs its callback for a plain client and goes on serving TLS ones",
     async(function(loop)
    -- the client side: an HTTP server answers the ClientHello with text
    local http = eddy.start_server(function(r, w)
      r:read(10)
      w:write("HTTP/1.0 400 Bad Request\r\n\r\n")
      w:close()
    end, "127.0.0.1", 0)
    local err = expect_error(errors.SSLError, eddy.open_connection, "127.0.0.1",
                             http.sockets[1]:getsockname()[2],
                             {ssl = client_ctx(), server_hostname = "localhost"})
    assert.equal("WRONG_VERSION_NUMBER", err.reason)
    http:close()
    http:wait_closed()
    -- the server side: a plain client speaks HTTP to a TLS server
    local served = 0
    local srv <close> = eddy.start_server(function(r, w)
      served = served + 1
      w:write("tls " .. r:readline())
      w:close()
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local port = srv.sockets[1]:getsockname()[2]
    local r, w = eddy.open_connection("127.0.0.1", port)
    w:write("GET / HTTP/1.0\r\n\r\n")
    local answer = bounded(r.read, r)  -- an alert at most, then EOF
    assert.is_nil(answer:find("tls", 1, true))
    assert.is_true(r:at_eof())
    w:close()
    local r2, w2 = eddy.open_connection("127.0.0.1", port, {ssl = client_ctx(), server_hostname = "localhost"})
    w2:write("hello\n")
    assert.equal("tls hello\n", bounded(r2.read, r2))
    w2:close()
    w2:wait_closed()
    assert.equal(1, served)
  end, 20))

  it("§3/§7 a client that vanishes mid-handshake (half a ClientHello record, then EOF, "
     .. "or a reset): the TLS server makes no connection, reports nothing, and serves the next; "
     .. "a server vanishing after half a record: the client's ConnectionResetError",
     async(function(loop)
    local made = 0
    local srv = loop:create_server(function()
      return {connection_made = function() made = made + 1 end}
    end, "127.0.0.1", 0, {ssl = tls.server_context()})
    local port = srv.sockets[1]:getsockname()[2]
    for _, how in ipairs {"eof", "reset"} do
      local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s:setblocking(false)
      loop:sock_connect(s, {"127.0.0.1", port})
      loop:sock_sendall(s, "\22\3\1\2\0\1\0\1\252\3\3")  -- a record of 512 bytes, 11 sent
      eddy.sleep(0.05)
      if how == "reset" then
        s:setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, string.pack("ii", 1, 0))
      end
      s:close()
    end
    local t, rec = loop:create_connection(function() return net.recorder(loop) end, "127.0.0.1", port,
                                          {ssl = client_ctx(), server_hostname = "localhost"})
    net.wait_until(function() return made == 1 end)
    t:close()
    net.wait(rec.lost_fut)
    srv:close()
    srv:wait_closed()
    -- the client's side: a server that sends part of its first record and
    -- goes (a close, or a reset) fails the handshake with ConnectionResetError
    for _, how in ipairs {"close", "abort"} do
      local half = eddy.start_server(function(r, w)
        r:read(5)
        w:write("\22\3\3\0\100" .. string.rep("\0", 10))
        w:drain()
        w.transport[how](w.transport)
      end, "127.0.0.1", 0)
      expect_error(errors.ConnectionResetError, eddy.open_connection, "127.0.0.1",
                   half.sockets[1]:getsockname()[2], {ssl = client_ctx(), server_hostname = "localhost"})
      half:close()
      half:wait_closed()
    end
  end, 20))

  it("§3/§9 TLS options without ssl raise ValueError; bad timeouts and a missing "
     .. "server_hostname are refused before connecting; a silent server ends in "
     .. "ConnectionAbortedError after ssl_handshake_timeout", async(function(loop)
    local srv = loop:create_server(function() return {} end, "127.0.0.1", 0)
    local port = srv.sockets[1]:getsockname()[2]
    for _, opt in ipairs {{server_hostname = "localhost"}, {ssl_handshake_timeout = 1},
                          {ssl_shutdown_timeout = 1}} do
      local err = expect_error(errors.ValueError, eddy.open_connection, "127.0.0.1", port, opt)
      assert.truthy(tostring(err):find("only meaningful with ssl", 1, true), tostring(err))
    end
    for _, bad in ipairs {0, -1} do
      expect_error(errors.ValueError, loop.create_connection, loop, function() return {} end,
                   "127.0.0.1", port, {ssl = client_ctx(), ssl_handshake_timeout = bad})
    end
    local s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s:setblocking(false)
    loop:sock_connect(s, {"127.0.0.1", port})
    local err = expect_error(errors.ValueError, loop.create_connection, loop, function() return {} end,
                             nil, nil, {sock = s, ssl = client_ctx()})
    assert.truthy(tostring(err):find("server_hostname", 1, true), tostring(err))
    s:close()
    -- the server never answers the ClientHello
    local ctx = client_ctx()
    local t0 = loop:time()
    expect_error(errors.ConnectionAbortedError, eddy.open_connection, "127.0.0.1", port,
                 {ssl = ctx, server_hostname = "localhost", ssl_handshake_timeout = 0.2})
    local took = loop:time() - t0
    assert.is_true(took >= 0.19 and took < 1, tostring(took))
    -- and StreamWriter:start_tls on a plain connection to it
    local _, w = eddy.open_connection("127.0.0.1", port)
    t0 = loop:time()
    expect_error(errors.ConnectionAbortedError, w.start_tls, w, ctx,
                 {server_hostname = "localhost", ssl_handshake_timeout = 0.2})
    took = loop:time() - t0
    assert.is_true(took >= 0.19 and took < 1, tostring(took))
    assert.is_true(w:is_closing())
    checks.argerror(function() w:start_tls(ctx, {bogus = 1}) end, 2, "start_tls")
    srv:close()
    srv:wait_closed()
  end, 20))
end)

describe("§3 signals: a daemon that shuts down gracefully", function()
  -- A server daemon: SIGTERM and SIGINT set a stop event; it then closes
  -- its server, removes its handlers (printing remove's results) and ends.
  local DAEMON = [[
local eddy = require "eddy"
local signal = require "eddy.signal"
eddy.run(function()
  local loop = eddy.get_running_loop()
  local stop, which = eddy.Event(), nil
  loop:add_signal_handler("SIGTERM", function(name) which = name stop:set() end, "term")
  loop:add_signal_handler(signal.SIGINT, function(name) which = name stop:set() end, "int")
  local srv = eddy.start_server(function(r, w) w:write(r:readline()) w:close() end, "127.0.0.1", 0)
  print("ready " .. signal.getpid() .. " " .. srv.sockets[1]:getsockname()[2])
  io.stdout:flush()
  stop:wait()
  srv:close()
  srv:wait_closed()
  print("removed", loop:remove_signal_handler(signal.SIGTERM), loop:remove_signal_handler("SIGTERM"),
        loop:remove_signal_handler("SIGINT"))
  print("bye " .. which)
end)
]]

  for _, sig in ipairs {{"TERM", "term"}, {"INT", "int"}} do
    it("§3/§11 `kill -" .. sig[1] .. "` from another process reaches add_signal_handler's callback "
       .. "with its argument; the daemon closes its server, remove_signal_handler says true then "
       .. "false, and it exits 0", async(function()
      local proc = net.spawn(cli.q(cli.binary) .. " " .. cli.q(tmp.file(DAEMON, ".lua")), 20)
      local pid, port
      net.wait_until(function()
        pid, port = proc.output():match("^ready (%d+) (%d+)\n")
        return pid ~= nil or proc.done()
      end, 10)
      assert(pid, proc.output())
      local r, w = eddy.open_connection("127.0.0.1", tonumber(port))
      w:write("alive\n")
      assert.equal("alive\n", bounded(r.readline, r))
      w:close()
      os.execute("kill -" .. sig[1] .. " " .. pid)
      net.wait_until(proc.done, 10)
      assert.equal(0, proc.status(), proc.output())
      assert.equal("ready " .. pid .. " " .. port .. "\nremoved\ttrue\tfalse\ttrue\nbye " .. sig[2] .. "\n",
                   proc.output())
      proc.cleanup()
    end, 20))
  end

  it("§3/§10 a supervisor's SIGCHLD handler runs for its children's exits while "
     .. "create_subprocess_exec's wait() still gets each returncode, before and after removing it",
     async(function(loop)
    local chld = 0
    loop:add_signal_handler("SIGCHLD", function() chld = chld + 1 end)
    local p = eddy.create_subprocess_exec("sh", "-c", "exit 3")
    assert.equal(3, bounded(p.wait, p))
    net.wait_until(function() return chld >= 1 end)
    assert.is_true(loop:remove_signal_handler("SIGCHLD"))
    local p2 = eddy.create_subprocess_exec("sh", "-c", "exit 4")
    assert.equal(4, bounded(p2.wait, p2))
    assert.is_false(loop:remove_signal_handler("SIGCHLD"))
  end))

  it("§3/§1 bad input: signals of the wrong type are argument errors, invalid ones ValueError "
     .. "for add and remove alike, an uncatchable one RuntimeError to add and false to remove",
     async(function(loop)
    checks.argerror(function() loop:add_signal_handler({}, print) end, 1, "add_signal_handler")
    checks.argerror(function() loop:add_signal_handler(2.5, print) end, 1, "add_signal_handler")
    checks.argerror(function() loop:add_signal_handler("SIGUSR1", 42) end, 2, "add_signal_handler")
    checks.argerror(function() loop:remove_signal_handler(nil) end, 1, "remove_signal_handler")
    for _, bad in ipairs {0, -1, 65, 1000, "SIGNOPE", "USR1", ""} do
      expect_error(errors.ValueError, loop.add_signal_handler, loop, bad, print)
      expect_error(errors.ValueError, loop.remove_signal_handler, loop, bad)
    end
    expect_error(errors.RuntimeError, loop.add_signal_handler, loop, "SIGKILL", print)
    expect_error(errors.RuntimeError, loop.add_signal_handler, loop, 19, print)  -- SIGSTOP
    assert.is_false(loop:remove_signal_handler("SIGKILL"))
    assert.is_false(loop:remove_signal_handler("SIGUSR2"))
  end))
end)

describe("§3/§6 a CPU-bound worker pool", function()
  it("§3/§6 run_in_executor on a ThreadPoolExecutor and to_thread split a prime count "
     .. "across workers: arguments in, tables and several results out, in order via gather",
     async(function(loop)
    local function count_primes(lo, hi)  -- no upvalues: it crosses to a worker
      local n, found = 0, {}
      for k = math.max(lo, 2), hi do
        local prime = true
        for d = 2, math.floor(math.sqrt(k)) do
          if k % d == 0 then prime = false break end
        end
        if prime then n = n + 1 if #found < 3 then found[#found + 1] = k end end
      end
      return n, {lo = lo, first = found}
    end
    local pool <close> = eddy.ThreadPoolExecutor(4)
    local futs = {}
    for i = 0, 7 do
      futs[#futs + 1] = loop:run_in_executor(pool, count_primes, i * 25000, i * 25000 + 24999)
    end
    local total, ticks = 0, 0
    local ticker = loop:call_later(0, function() ticks = ticks + 1 end)
    local results = {eddy.gather(table.unpack(futs))}
    for i, fut in ipairs(futs) do
      local n, info = fut:result()
      assert.equal(results[i], n)
      assert.equal((i - 1) * 25000, info.lo)
      total = total + n
    end
    assert.equal(17984, total)  -- pi(200000)
    assert.same({2, 3, 5}, select(2, futs[1]:result()).first)
    assert.equal(1, ticks)  -- the loop ran its timer meanwhile
    ticker:cancel()
    local n, info = eddy.to_thread(count_primes, 1, 100)
    assert.same({25, {lo = 1, first = {2, 3, 5}}}, {n, info})
  end, 30))

  it("§5/§6 an error raised in a worker is re-raised where it is awaited, with the worker's "
     .. "position; error tables come back as tables; the other jobs are unaffected", async(function(loop)
    local ok, err = pcall(eddy.to_thread, function(x)
      if x > 1 then error("value too large: " .. x) end
    end, 5)
    assert.is_false(ok)
    assert.matches("^.-blackbox6_spec%.lua:%d+: value too large: 5$", err)
    local fut = loop:run_in_executor(nil, function() error({code = 42, what = "disk"}) end)
    local good = loop:run_in_executor(nil, function(s) return s:upper() end, "fine")
    local ok2, err2 = pcall(fut.await, fut)
    assert.is_false(ok2)
    assert.same({code = 42, what = "disk"}, err2)
    assert.same({code = 42, what = "disk"}, fut:exception())
    assert.equal("FINE", good:await())
  end))

  it("§6/§5 cancelling a task awaiting to_thread raises CancelledError in it at once; "
     .. "shutdown_default_executor then waits for the running job and refuses new ones",
     async(function(loop)
    -- The job says it ended by a file, not by the time taken: a loaded
    -- machine may start it late or stall before the cancel.
    local started, ended = loop:create_future(), tmp.path()
    local t = eddy.create_task(function()
      loop:call_soon(started.set_result, started, true)
      return eddy.to_thread(function(path) os.execute("sleep 3; touch " .. path) return "late" end,
                            ended)
    end)
    started:await()
    eddy.sleep(0.05)
    local t0 = loop:time()
    t:cancel()
    expect_error(errors.CancelledError, t.await, t)
    assert.is_true(t:cancelled())
    assert.is_true(loop:time() - t0 < 1)  -- not held until the job ends
    assert.is_nil(io.open(ended))
    loop:shutdown_default_executor(5)
    assert.is_true(os.remove(ended))  -- it waited for the running job
    local err = expect_error(errors.RuntimeError, loop.run_in_executor, loop, nil, print)
    assert.truthy(tostring(err):find("shutdown", 1, true), tostring(err))
  end))

  it("§3/§6 set_default_executor(ThreadPoolExecutor(1)): to_thread and run_in_executor(nil) "
     .. "queue on its one thread; shutdown_default_executor shuts that pool down", async(function(loop)
    local pool = eddy.ThreadPoolExecutor(1)
    loop:set_default_executor(pool)
    local t0 = loop:time()
    local function nap(tag) os.execute("sleep 0.1") return tag end
    local a, b = eddy.gather(function() return eddy.to_thread(nap, "a") end,
                             loop:run_in_executor(nil, nap, "b"))
    assert.same({"a", "b"}, {a, b})
    assert.is_true(loop:time() - t0 >= 0.19)  -- one after the other
    loop:shutdown_default_executor()
    expect_error(errors.RuntimeError, loop.run_in_executor, loop, pool, nap, "c")
    expect_error(errors.RuntimeError, eddy.to_thread, nap, "d")
  end))

  it("§3/§1 bad input to run_in_executor: a non-callable, an executor that is none, and values "
     .. "that cannot cross threads (a coroutine, a file, a function with an upvalue) are argument "
     .. "errors naming them", async(function(loop)
    checks.argerror(function() loop:run_in_executor(nil, 42) end, 2, "run_in_executor")
    checks.argerror(function() loop:run_in_executor({}, print) end, 1, "run_in_executor")
    local err = checks.argerror(function() loop:run_in_executor(nil, print, 1, coroutine.create(print)) end,
                                4, "run_in_executor")
    assert.truthy(tostring(err):find("cannot copy thread", 1, true), tostring(err))
    err = checks.argerror(function() loop:run_in_executor(nil, print, {f = io.stdout}) end, 3, "run_in_executor")
    assert.truthy(tostring(err):find("cannot copy", 1, true), tostring(err))
    local up = 7
    err = checks.argerror(function() loop:run_in_executor(nil, function() return up end) end, 2,
                          "run_in_executor")
    assert.truthy(tostring(err):find("upvalue 'up'", 1, true), tostring(err))
    -- a result that cannot come back fails the future, not the loop
    local fut = loop:run_in_executor(nil, function() return coroutine.create(print) end)
    local ok, msg = pcall(fut.await, fut)
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("cannot copy thread", 1, true), tostring(msg))
  end))
end)

-- A file of 'size' bytes whose byte i (0-based) is (i * 7) % 251, open
-- for reading; and the expected slice of it.
local function pattern_file(size)
  local parts = {}
  for i = 0, size - 1 do parts[#parts + 1] = string.char((i * 7) % 251) end
  local content = table.concat(parts)
  return assert(io.open(tmp.file(content), "rb")), content
end

describe("§3 a static file server on sendfile", function()
  it("§3/§8 a range-serving file server: loop:sendfile on a stream's transport with offset "
     .. "and count returns the bytes sent and leaves the file at offset + sent; a range past "
     .. "the end sends what is there, one past EOF nothing", async(function(loop)
    local f, content = pattern_file(300000)
    local log = {}
    local srv <close> = eddy.start_server(function(r, w)
      for line in r:lines() do
        local first, count = line:match("^GET (%d+) (%d*)$")
        first, count = tonumber(first), tonumber(count)
        w:write(string.format("%d %s\n", first, tostring(count)))
        w:drain()
        local sent = loop:sendfile(w.transport, f, first, count, {fallback = false})
        log[#log + 1] = {sent, f:seek()}
      end
      w:close()
    end, "127.0.0.1", 0)
    local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
    local function get(first, count, want)
      w:write(string.format("GET %d %s\n", first, count or ""))
      assert.equal(string.format("%d %s\n", first, tostring(count)), bounded(r.readline, r))
      assert.equal(want, want == "" and "" or bounded(r.readexactly, r, #want))
    end
    get(0, nil, content)
    get(1000, 5000, content:sub(1001, 6000))
    get(299990, 100, content:sub(299991))
    get(300001, 10, "")
    w:write_eof()
    assert.equal("", bounded(r.read, r))  -- nothing more came
    w:close()
    -- nothing sent leaves the position as it was (asyncio moves it only
    -- when total_sent > 0)
    assert.same({{300000, 300000}, {5000, 6000}, {10, 300000}, {0, 300000}}, log)
    f:close()
  end, 20))

  it("§3 sock_sendfile over raw sockets: offset/count, fallback to read-and-send where "
     .. "sendfile(2) cannot go (a pipe) or SendfileNotAvailableError with fallback = false; "
     .. "bad offsets and counts raise ValueError", async(function(loop)
    local f, content = pattern_file(70000)
    local a, b = checks.nonblocking_pair()
    local received = {}
    local reader = eddy.create_task(function()
      while true do
        local d = loop:sock_recv(b, 65536)
        if d == "" then return end
        received[#received + 1] = d
      end
    end)
    assert.equal(1000, loop:sock_sendfile(a, f, 100, 1000))
    assert.equal(1100, f:seek())
    assert.equal(69900, loop:sock_sendfile(a, f, 100))
    assert.equal(70000, f:seek())
    -- a pipe is no regular file: fallback or the documented error
    local p = assert(io.popen("printf 'piped bytes'"))
    local err = expect_error(errors.SendfileNotAvailableError, loop.sock_sendfile, loop, a, p, 0, nil,
                             {fallback = false})
    assert.truthy(tostring(err):find("SendfileNotAvailableError", 1, true))
    assert.equal(11, loop:sock_sendfile(a, p))
    p:close()
    for _, bad in ipairs {{-1, nil}, {0, 0}, {0, -5}} do
      expect_error(errors.ValueError, loop.sock_sendfile, loop, a, f, bad[1], bad[2])
    end
    checks.argerror(function() loop:sock_sendfile(a, f, "x") end, 3, "sock_sendfile")
    a:shutdown(socket.SHUT_WR)
    bounded(reader.await, reader)
    assert.equal(content:sub(101, 1100) .. content:sub(101) .. "piped bytes", table.concat(received))
    a:close()
    b:close()
    f:close()
  end, 20))
end)

describe("§3/§10 file descriptors and raw sockets", function()
  it("§3 a watchdog: add_reader on a socketpair resets a timer on each heartbeat, fires once "
     .. "the beats stop; add_writer fills the socket until it would block and resumes when "
     .. "drained; remove_reader/remove_writer say true, then false", async(function(loop)
    local a, b = checks.nonblocking_pair()
    local beats, barks = 0, 0
    local dog
    local function rearm()
      if dog then dog:cancel() end
      dog = loop:call_later(0.3, function() barks = barks + 1 end)
    end
    rearm()
    loop:add_reader(b, function(tag)
      assert.equal("beat-tag", tag)
      beats = beats + #b:recv(100)
      rearm()
    end, "beat-tag")
    -- each beat is waited for: a stall past the sleep would make the
    -- sleep's timer ready ahead of the reader's callback (docs/loop.md)
    for i = 1, 5 do
      a:send("x")
      net.wait_until(function() return beats == i end)
      eddy.sleep(0.03)
    end
    assert.equal(0, barks)
    net.wait_until(function() return barks == 1 end)
    assert.is_true(loop:remove_reader(b))
    assert.is_false(loop:remove_reader(b))
    -- the writer side: send until EAGAIN, then wait to be writable again
    local sent, blocked, wakeups = 0, false, 0
    loop:add_writer(a:fileno(), function()
      wakeups = wakeups + 1
      while true do
        local ok, err = pcall(a.send, a, string.rep("w", 4096))
        if not ok then
          assert.equal("EAGAIN", err.code)
          blocked = true
          return
        end
        sent = sent + err
      end
    end)
    net.wait_until(function() return blocked end)
    local before = wakeups
    eddy.sleep(0.05)
    assert.equal(before, wakeups)  -- a full socket is not writable: no busy loop
    -- read it all (a UNIX socket is writable again only once most of
    -- its buffer is free)
    local drained, target = 0, sent
    while drained < target do
      local ok, d = pcall(b.recv, b, 65536)
      if ok then drained = drained + #d else eddy.sleep(0.001) end
    end
    net.wait_until(function() return wakeups > before end)
    assert.is_true(loop:remove_writer(a))
    assert.is_false(loop:remove_writer(a:fileno()))
    a:close()
    b:close()
  end))

  it("§3 a watchdog on a child's heartbeat pipe: add_reader takes the io.popen file handle, "
     .. "each line re-arms the timer, the silence after the beats fires it once, EOF ends "
     .. "the watch", async(function(loop)
    local f = assert(io.popen("for i in 1 2 3 4; do echo beat $i; sleep 0.05; done; sleep 0.8; echo late"))
    f:setvbuf("no")  -- one line per read: nothing left in the stdio buffer unseen
    local beats, barks, eof = {}, {}, loop:create_future()
    local dog
    local function rearm()
      if dog then dog:cancel() end
      dog = loop:call_later(0.3, function() barks[#barks + 1] = #beats end)
    end
    rearm()
    loop:add_reader(f, function()
      local line = f:read("l")
      if line == nil then
        assert.is_true(loop:remove_reader(f))
        eof:set_result(true)
        return
      end
      beats[#beats + 1] = line
      rearm()
    end)
    net.wait(eof)
    dog:cancel()
    assert.same({"beat 1", "beat 2", "beat 3", "beat 4", "late"}, beats)
    assert.same({4}, barks)  -- once, after the fourth beat
    assert.is_false(loop:remove_reader(f))
    assert.is_true(f:close())
  end))

  it("§3/§10 a raw sock_* echo server and clients: sock_accept's address, sock_sendall, "
     .. "sock_recv, sock_recv_into an eddy.Buffer, EOF as ''; a refused sock_connect raises "
     .. "ConnectionRefusedError", async(function(loop)
    local lsock = net.listening_socket()
    local port = lsock:getsockname()[2]
    local server = eddy.create_task(function()
      for _ = 1, 2 do
        local conn, addr = loop:sock_accept(lsock)
        assert.equal("127.0.0.1", addr[1])
        assert.is_false(conn:getblocking())  -- asyncio sets accepted sockets non-blocking
        eddy.create_task(function()
          while true do
            local d = loop:sock_recv(conn, 1024)
            if d == "" then break end
            loop:sock_sendall(conn, d:reverse())
          end
          conn:close()
        end)
      end
    end)
    for i = 1, 2 do
      local c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      c:setblocking(false)
      loop:sock_connect(c, {"127.0.0.1", port})
      loop:sock_sendall(c, "abc" .. i)
      local buf = eddy.Buffer(16)
      local n = loop:sock_recv_into(c, buf)
      assert.equal(4, n)
      assert.equal(i .. "cba", buf:tostring(1, n))
      c:shutdown(socket.SHUT_WR)
      assert.equal("", loop:sock_recv(c, 10))
      c:close()
    end
    bounded(server.await, server)
    lsock:close()
    local c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c:setblocking(false)
    expect_error(errors.ConnectionRefusedError, loop.sock_connect, loop, c, {"127.0.0.1", port})
    c:close()
  end))

  it("§3/§1 bad input to sock_*: a blocking socket is a ValueError, a closed one an error, "
     .. "not a crash; wrong types are argument errors; a plain callback gets RuntimeError",
     async(function(loop)
    local a, b = socket.socketpair()
    expect_error(errors.ValueError, loop.sock_recv, loop, a, 10)
    expect_error(errors.ValueError, loop.sock_sendall, loop, a, "x")
    a:setblocking(false)
    checks.argerror(function() loop:sock_recv(a, "ten") end, 2, "sock_recv")
    checks.argerror(function() loop:sock_recv(42, 10) end, 1, "sock_recv")
    checks.argerror(function() loop:sock_sendall(a, {}) end, 2, "sock_sendall")
    a:close()
    local ok = pcall(loop.sock_recv, loop, a, 10)
    assert.is_false(ok)
    ok = pcall(loop.sock_sendall, loop, a, "x")
    assert.is_false(ok)
    b:setblocking(false)
    local errs = checks.from_callback(loop, {{"recv", loop.sock_recv, loop, b, 1}})
    assert.truthy(errs.recv:find("RuntimeError", 1, true), errs.recv)
    b:close()
  end))
end)

describe("§3 debug mode and the exception handler", function()
  -- A script that routes every report to a handler printing the message
  -- and the context's keys, sorted; then puts the default handler back.
  local REPORTS = [[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
print("debug", loop:get_debug(), loop.slow_callback_duration)
local function handler(l, ctx)
  assert(l == loop)
  local keys = {}
  for k in pairs(ctx) do keys[#keys + 1] = k end
  table.sort(keys)
  print(ctx.message, table.concat(keys, ","))
end
loop:set_exception_handler(handler)
assert(loop:get_exception_handler() == handler)
loop:call_soon(function() error("callback boom") end)
loop:call_exception_handler({message = "custom", extra = 1})
do loop:create_task(function() error("task boom") end) end
do loop:create_future():set_exception(eddy.errors.ValueError("future boom")) end
local srv = loop:create_server(function()
  return {data_received = function() error("protocol boom") end}
end, "127.0.0.1", 0)
local r, w = eddy.open_connection("127.0.0.1", srv.sockets[1]:getsockname()[2])
w:write("x")
assert(r:read() == "")  -- the server side closed after the protocol's error
w:close()
srv:close()
eddy.sleep(0.01)
collectgarbage() collectgarbage()
eddy.sleep(0.01)
loop:set_exception_handler(nil)
assert(loop:get_exception_handler() == nil)
print(pcall(loop.set_exception_handler, loop, 42))
]]

  it("§3 a script's exception handler gets handler(loop, context) with asyncio's keys for a "
     .. "failed callback, call_exception_handler's own context, an unretrieved task and "
     .. "future, a failing protocol; set_exception_handler(nil) restores the default", function()
    local r = cli.eddy(cli.q(cli.tempfile(REPORTS, ".lua")), {env = "EDDY_DEBUG="})
    assert.equal(0, r.code, r.err)
    -- call_exception_handler reports at once, the collector whenever it runs
    assert.matches("^debug\tfalse\t0.1\ncustom\textra,message\n", r.out)
    for _, line in ipairs {
      "Exception in callback function [^\n]*:13\texception,handle,message\n",
      "Fatal error: protocol.data_received%(%) call failed.\texception,message,protocol,transport\n",
      "Task exception was never retrieved\texception,future,message\n",
      "Future exception was never retrieved\texception,future,message\n",
    } do
      assert.matches(line, r.out)
    end
    assert.matches("\nfalse\t[^\n]*bad argument #1 to 'set_exception_handler' %(callable expected, got number%)\n$",
                   r.out)
    assert.equal(7, select(2, r.out:gsub("\n", "")))
  end)

  it("§3 EDDY_DEBUG=1: the same reports carry source_traceback (where the callback, task or "
     .. "future was made); a slow callback is warned about with its duration", function()
    local r = cli.eddy("-W " .. cli.q(cli.tempfile(REPORTS .. [[
loop.slow_callback_duration = 0.05
loop:call_soon(function() local t = loop:time() while loop:time() - t < 0.08 do end end)
eddy.sleep(0.01)
]], ".lua")), {env = "EDDY_DEBUG=1"})
    assert.equal(0, r.code, r.err)
    assert.matches("^debug\ttrue\t0.1\n", r.out)
    assert.matches("Exception in callback [^\n]*\texception,handle,message,source_traceback\n", r.out)
    assert.matches("Task exception was never retrieved\texception,future,message,source_traceback\n", r.out)
    assert.matches("Future exception was never retrieved\texception,future,message,source_traceback\n", r.out)
    local took = tonumber(r.err:match("Executing callback [^\n]* took (%d+%.%d+) seconds"))
    assert.is_true(took ~= nil and took >= 0.08, r.err)
  end)

  it("§5/§6 an error retrieved any documented way (exception() in a done callback, result() "
     .. "under pcall, gather's return_exceptions, a cancellation, a future's exception()) is "
     .. "never reported, and the script's status stays 0", function()
    local r = cli.eddy(cli.q(cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
local function failing(msg) return function() eddy.sleep(0.01) error(msg, 0) end end
local t1 = loop:create_task(failing("one"))
local t2 = loop:create_task(failing("two"))
local t3 = loop:create_task(failing("three"))
t1:add_done_callback(function(t) print("exception", t:exception()) end)
t2:add_done_callback(function(t) print("result", pcall(t.result, t)) end)
print("gather", eddy.gather(t3, {return_exceptions = true}))
local t4 = loop:create_task(failing("four"))
eddy.sleep(0)
t4:cancel()
print("cancelled", pcall(t4.await, t4))
local f = loop:create_future()
f:set_exception(eddy.errors.ValueError("five"))
print("future", f:exception())
t1, t2, t3, t4, f = nil, nil, nil, nil, nil
eddy.sleep(0.05)
collectgarbage()
collectgarbage()
]], ".lua")))
    assert.same({code = 0, err = "", out = "exception\tone\nresult\tfalse\ttwo\ngather\tthree\n"
                 .. "cancelled\tfalse\tCancelledError\nfuture\tValueError: five\n"}, r)
  end)

  it("§3 default_exception_handler prints the message, the other keys and the error with its "
     .. "traceback on stderr; an error handled by it makes a script's status 1", function()
    local r = cli.eddy(cli.q(cli.tempfile([[
local eddy = require "eddy"
local loop = eddy.get_event_loop()
loop:default_exception_handler({message = "direct call", exception = eddy.errors.ValueError("bad value"),
                                peer = "10.0.0.1"})
loop:call_soon(function() error(eddy.errors.TimeoutError("slow disk")) end)
]], ".lua")))
    assert.equal(1, r.code)
    assert.equal("", r.out)
    assert.matches("direct call\n", r.err)
    assert.matches("peer: 10%.0%.0%.1\n", r.err)
    assert.matches("ValueError: bad value", r.err)
    assert.matches("Exception in callback", r.err)
    assert.matches("TimeoutError: slow disk\nstack traceback:", r.err)
  end)
end)

describe("§1 arguments a porter gets wrong", function()
  it("§1/§3 asyncio's argument orders swapped or left out are standard Lua argument errors "
     .. "naming the function and the argument, raised at the caller's line", async(function(loop)
    local a, b = socket.socketpair()
    a:setblocking(false)
    local f <close> = assert(io.open(tmp.file("x"), "rb"))
    local argerror = checks.argerror
    argerror(function() loop:call_later(print, 1) end, 1, "call_later")
    argerror(function() loop:call_at(print, loop:time()) end, 1, "call_at")
    argerror(function() loop:call_soon(42) end, 1, "call_soon")
    argerror(function() loop:run_in_executor(function() end) end, 2, "run_in_executor")
    argerror(function() loop:add_reader(print, a) end, 1, "add_reader")
    argerror(function() loop:add_writer(a) end, 2, "add_writer")
    argerror(function() loop:sock_sendall("data", a) end, 1, "sock_sendall")
    argerror(function() loop:sock_recv(1024, a) end, 1, "sock_recv")
    argerror(function() loop:sock_sendfile(f, a) end, 1, "sock_sendfile")
    argerror(function() loop:sendfile(42, f) end, 1, "sendfile")
    argerror(function() eddy.wait_for(1, function() end) end, 2, "wait_for")
    argerror(function() eddy.sleep(nil) end, 1, "sleep")
    argerror(function() eddy.open_connection(80, "127.0.0.1") end, 1, "open_connection")
    argerror(function() loop:create_server("127.0.0.1", 0, function() end) end, 1, "create_server")
    argerror(function() eddy.start_server("127.0.0.1", 0, function() end) end, 1, "start_server")
    argerror(function() loop:add_signal_handler(print, "SIGINT") end, 1, "add_signal_handler")
    argerror(function() loop:start_tls(nil, nil, nil) end, 1, "start_tls")
    argerror(function() loop:set_default_executor(42) end, 1, "set_default_executor")
    argerror(function() loop:shutdown_default_executor("soon") end, 1, "shutdown_default_executor")
    argerror(function() loop:default_exception_handler(nil) end, 1, "default_exception_handler")
    checks.blames_caller(loop.call_later, loop, print, 1)
    a:close()
    b:close()
  end))
end)

describe("§3 a closed loop", function()
  it("§3 after close(): scheduling, tasks, fd watchers, the executor and running raise "
     .. "RuntimeError 'Event loop is closed'; close() again and the queries still answer",
     function()
    local loop = eddy.new_event_loop()
    local a, b = socket.socketpair()
    loop:close()
    for name, call in pairs {
      call_soon = function() loop:call_soon(print) end,
      call_soon_threadsafe = function() loop:call_soon_threadsafe(print) end,
      call_later = function() loop:call_later(1, print) end,
      call_at = function() loop:call_at(loop:time() + 1, print) end,
      create_task = function() loop:create_task(print) end,
      run_in_executor = function() loop:run_in_executor(nil, print) end,
      add_reader = function() loop:add_reader(a, print) end,
      add_writer = function() loop:add_writer(a, print) end,
      run_until_complete = function() loop:run_until_complete(function() end) end,
      run_forever = function() loop:run_forever() end,
    } do
      local err = expect_error(errors.RuntimeError, call)
      assert.truthy(tostring(err):find("Event loop is closed", 1, true), name .. ": " .. tostring(err))
    end
    loop:close()
    assert.is_true(loop:is_closed())
    assert.is_false(loop:is_running())
    assert.is_false(loop:remove_reader(a))
    assert.is_false(loop:remove_writer(b))
    assert.is_number(loop:time())
    a:close()
    b:close()
  end)
end)
