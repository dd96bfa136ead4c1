/*
** embed_host_test.c -- black-box tests of the embedding API (API.md §12),
** written from eddy.h and API.md alone, as realistic hosts would use it:
** a host that drives its own libuv loop and serves eddy's tasks from C,
** C functions called from tasks, the return codes and messages of
** eddy_dofile / eddy_dostring / eddy_run, thread-safe calls from several
** threads, eddy_close of a state full of live work, two states talking
** on one thread.  tools/run-tests.sh also builds it with nothing but the
** build directory's pkg-config flags and runs that build.  Prints TAP;
** every wait is bounded.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include <eddy.h>
#include "host.h"
#include "tap.h"

/* Whether the global 'name' is the string 'want'. */
static int global_is(eddy_State *E, const char *name, const char *want) {
  const char *s = global_string(E, name);
  return s != NULL && strcmp(s, want) == 0;
}

static int has(const char *s, const char *part) {
  return s != NULL && strstr(s, part) != NULL;
}

static int run(eddy_State *E, const char *chunk) {
  int rc = eddy_dostring(E, chunk, "=host");
  if (rc != 0) printf("# %s\n", eddy_errmsg(E));
  return rc;
}

/* {====================================================== A host's loop */

/*
** The host owns a libuv loop with a TCP echo server and a ticking timer,
** all plain libuv; eddy's state shares the loop and its task talks to the
** host's server.  The host runs uv_run itself and gives eddy turns with
** eddy_run(UV_RUN_NOWAIT) in between.
*/
typedef struct {
  uv_tcp_t tcp;
  char buf[256];
} Peer;

static struct {
  uv_tcp_t listener;
  uv_timer_t ticker;
  int ticks, accepted, peers_open;
  char notes[256];
  int notes_in_task;  /* host_note calls made from inside a task */
} host;

static void peer_closed(uv_handle_t *h) {
  free(h->data);
  host.peers_open--;
}

static void peer_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  Peer *p = (Peer *)h->data;
  (void)size;
  *buf = uv_buf_init(p->buf, sizeof p->buf);
}

static void peer_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n > 0) {  /* echo it (uv_write copies nothing: the peer's buffer is
                ** reused only after this write, since reads wait for it) */
    uv_write_t *req = (uv_write_t *)malloc(sizeof *req);
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    uv_write(req, s, &out, 1, peer_written);
  } else if (n < 0) {
    uv_close((uv_handle_t *)s, peer_closed);
  }
}

static void host_accept(uv_stream_t *server, int status) {
  Peer *p;
  if (status < 0) return;
  p = (Peer *)malloc(sizeof *p);
  uv_tcp_init(server->loop, &p->tcp);
  p->tcp.data = p;
  host.peers_open++;
  if (uv_accept(server, (uv_stream_t *)&p->tcp) == 0) {
    host.accepted++;
    uv_read_start((uv_stream_t *)&p->tcp, peer_alloc, peer_read);
  } else {
    uv_close((uv_handle_t *)&p->tcp, peer_closed);
  }
}

static void host_tick(uv_timer_t *t) {
  (void)t;
  host.ticks++;
}

/* host_note(s): a C function the script's task calls. */
static int l_host_note(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  if (lua_isyieldable(L)) host.notes_in_task++;
  strncat(host.notes, s, sizeof host.notes - strlen(host.notes) - 1);
  lua_pushinteger(L, (lua_Integer)strlen(host.notes));
  return 1;
}

static void test_host_loop(void) {
  uv_loop_t uv;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound, turns = 0, eddy_turns = 0;
  eddy_State *E;
  lua_State *L;
  double deadline;
  uv_loop_init(&uv);
  uv_tcp_init(&uv, &host.listener);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&host.listener, (const struct sockaddr *)&addr, 0);
  uv_listen((uv_stream_t *)&host.listener, 16, host_accept);
  uv_tcp_getsockname(&host.listener, (struct sockaddr *)&bound, &len);
  uv_timer_init(&uv, &host.ticker);
  uv_timer_start(&host.ticker, host_tick, 2, 2);
  E = eddy_new(&uv);
  L = eddy_lua(E);
  lua_register(L, "host_note", l_host_note);
  lua_pushinteger(L, ntohs(((struct sockaddr_in *)&bound)->sin_port));
  lua_setglobal(L, "host_port");
  check(run(E, "local eddy = require 'eddy'\n"
               "eddy.get_event_loop():create_task(function()\n"
               "  local r, w = eddy.open_connection('127.0.0.1', host_port)\n"
               "  for i = 1, 3 do\n"
               "    w:write('line ' .. i .. '\\n')\n"
               "    noted = host_note(r:readline():gsub('\\n', '|'))\n"
               "    eddy.sleep(0.005)\n"
               "  end\n"
               "  w:close()\n"
               "  w:wait_closed()\n"
               "  finished = true\n"
               "end)") == 0,
        "§12 eddy_new(host loop): a script starts a task talking to the host's own TCP server");
  deadline = now() + 5;
  while (!global_true(E, "finished") && now() < deadline) {
    if (++turns % 2 == 0) {
      if (eddy_run(E, UV_RUN_NOWAIT) != 0) printf("# %s\n", eddy_errmsg(E));
      eddy_turns++;
    } else {
      uv_run(&uv, UV_RUN_ONCE);  /* the host's turn: runs eddy's work too */
    }
  }
  check(strcmp(host.notes, "line 1|line 2|line 3|") == 0 && host.accepted == 1 &&
        global_is(E, "noted", "21"),
        "§12 the host's uv_run and eddy_run(UV_RUN_NOWAIT), interleaved, carry the "
        "task's three round trips through the host's libuv server");
  check(host.notes_in_task == 3,
        "§12 a C function registered with eddy_lua runs inside the task (yieldable there)");
  check(host.ticks > 0 && eddy_turns > 0, "§12 the host's own timer ticked meanwhile");
  uv_close((uv_handle_t *)&host.listener, NULL);
  uv_close((uv_handle_t *)&host.ticker, NULL);
  eddy_close(E);
  deadline = now() + 5;
  while (host.peers_open > 0 && now() < deadline) uv_run(&uv, UV_RUN_NOWAIT);
  uv_run(&uv, UV_RUN_NOWAIT);
  check(uv_loop_close(&uv) == 0,
        "§12 after eddy_close and the host's own closes, uv_loop_close succeeds");
}

/*
** eddy_run(UV_RUN_DEFAULT) on a host's loop runs it as uv_run does: until
** nothing on it is alive, the host's active handles included (an
** unreferenced one does not count).  A top-level suspension runs the
** host's handles too.  (docs/embedding.md)
*/
static struct {
  uv_timer_t ticker, watchdog;
  int ticks, bitten;
} shared;

static void shared_tick(uv_timer_t *t) {
  if (++shared.ticks == 30) uv_timer_stop(t);
}

static void shared_bite(uv_timer_t *t) {  /* eddy_run hung: end it */
  shared.bitten = 1;
  uv_stop(t->loop);
}

static void test_run_default_on_host_loop(void) {
  uv_loop_t uv;
  eddy_State *E;
  double t0;
  int rc, during_sleep;
  uv_loop_init(&uv);
  uv_timer_init(&uv, &shared.watchdog);
  uv_timer_start(&shared.watchdog, shared_bite, 5000, 0);
  uv_unref((uv_handle_t *)&shared.watchdog);
  uv_timer_init(&uv, &shared.ticker);
  uv_timer_start(&shared.ticker, shared_tick, 2, 2);
  E = eddy_new(&uv);
  run(E, "local eddy = require 'eddy'\n"
         "slept = eddy.sleep(0.01, 'slept')\n"
         "eddy.get_event_loop():call_later(0.01, function() fired = true end)");
  during_sleep = shared.ticks;
  check(global_is(E, "slept", "slept") && during_sleep > 0 && during_sleep < 30,
        "§12 a top-level suspension on a host's loop runs the host's handles too");
  t0 = now();
  rc = eddy_run(E, UV_RUN_DEFAULT);
  check(rc == 0 && global_true(E, "fired") && shared.ticks == 30 && !shared.bitten &&
        now() - t0 < 5,
        "§12 eddy_run(UV_RUN_DEFAULT) on a host's loop returns once eddy's work and the "
        "host's active handles are done; an unreferenced host handle does not hold it");
  uv_close((uv_handle_t *)&shared.ticker, NULL);
  uv_close((uv_handle_t *)&shared.watchdog, NULL);
  eddy_close(E);
  uv_run(&uv, UV_RUN_NOWAIT);
  check(uv_loop_close(&uv) == 0, "§12 ... and the host's loop closes clean after eddy_close");
}

/* }====================================================== */

/* {====================================================== Errors */

/* c_checksum(s) -> sum of its bytes, its length; c_fail(msg) raises an
** eddy.errors.ValueError, as a host reports bad input from C. */
static int l_checksum(lua_State *L) {
  size_t n, i;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer sum = 0;
  for (i = 0; i < n; i++) sum += (unsigned char)s[i];
  lua_pushinteger(L, sum);
  lua_pushinteger(L, (lua_Integer)n);
  return 2;
}

static int l_fail(lua_State *L) {
  const char *msg = luaL_checkstring(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "errors");
  lua_getfield(L, -1, "ValueError");
  lua_pushfstring(L, "c_fail: %s", msg);
  lua_call(L, 1, 1);
  return lua_error(L);
}

static void test_c_functions_in_tasks(void) {
  eddy_State *E = eddy_new(NULL);
  const char *msg;
  lua_register(eddy_lua(E), "c_checksum", l_checksum);
  lua_register(eddy_lua(E), "c_fail", l_fail);
  check(run(E, "local eddy = require 'eddy'\n"
               "local a, b, c = eddy.gather(\n"
               "  function() eddy.sleep(0.01) return table.concat({c_checksum('abc')}, ',') end,\n"
               "  function() return select(2, c_checksum(('x'):rep(1000))) end,\n"
               "  function() eddy.sleep(0) c_fail('in gather') end,\n"
               "  {return_exceptions = true})\n"
               "summary = a .. ' ' .. b .. ' ' .. tostring(c)") == 0 &&
        has(global_string(E, "summary"), "294,3 1000 ") && has(global_string(E, "summary"), "c_fail: in gather"),
        "§12 C functions called from gathered tasks: their results, and an error one raises "
        "reaches gather(return_exceptions)");
  check(eddy_dostring(E, "local eddy = require 'eddy'\n"
                         "local function worker() eddy.sleep(0) c_fail('main task') end\n"
                         "eddy.run(function() worker() end)", "=main") != 0,
        "§12 a C function's error in eddy.run's main task: eddy_dostring fails");
  msg = eddy_errmsg(E);
  check(has(msg, "ValueError: c_fail: main task\nstack traceback:") &&
        has(msg, "function 'c_fail'") && has(msg, "worker"),
        "§12 ... eddy_errmsg has the message and the task's traceback (the C function, the "
        "Lua function that called it)");
  eddy_close(E);
}

/* A temporary file holding 'src'; its name is written into 'path'. */
static int temp_script(char *path, const char *src) {
  int fd;
  strcpy(path, "/tmp/eddy_host_XXXXXX");
  fd = mkstemp(path);
  if (fd < 0) return -1;
  if (write(fd, src, strlen(src)) < 0) perror("write");
  close(fd);
  return 0;
}

static void test_dofile_and_dostring_errors(void) {
  eddy_State *E = eddy_new(NULL);
  char path[64], where[96];
  const char *msg;
  temp_script(path, "local x = 1\nx = = 2\n");
  snprintf(where, sizeof where, "%s:2:", path);
  check(eddy_dofile(E, path) != 0 && strncmp(eddy_errmsg(E), where, strlen(where)) == 0 &&
        has(eddy_errmsg(E), "unexpected symbol"),
        "§12 eddy_dofile of a syntax error: non-zero, eddy_errmsg is 'path:line: message'");
  unlink(path);
  temp_script(path, "local function inner() error('deep') end\n"
                    "local function outer() inner() end\n"
                    "outer()\n");
  snprintf(where, sizeof where, "%s:1: deep\nstack traceback:", path);
  check(eddy_dofile(E, path) != 0 && strncmp(eddy_errmsg(E), where, strlen(where)) == 0 &&
        has(eddy_errmsg(E), "inner") && has(eddy_errmsg(E), "outer") &&
        has(eddy_errmsg(E), "in main chunk"),
        "§12 eddy_dofile of a runtime error: its message and traceback, frame by frame");
  unlink(path);
  check(eddy_dostring(E, "local eddy = require 'eddy'\n"
                         "eddy.run(function()\n"
                         "  local child = eddy.create_task(function()\n"
                         "    eddy.sleep(0)\n"
                         "    error(eddy.errors.ValueError('in child'))\n"
                         "  end)\n"
                         "  child:await()\n"
                         "end)", "=tasks") != 0,
        "§12 eddy_dostring: an error a child task raised, awaited by the main task");
  msg = eddy_errmsg(E);
  check(msg != NULL && strncmp(msg, "ValueError: in child\nstack traceback:", 37) == 0 &&
        has(msg, "tasks:5:"),
        "§12 ... eddy_errmsg is 'ValueError: in child' and the traceback of where it was raised");
  check(eddy_dostring(E, "x = ", "=syntax") != 0 && has(eddy_errmsg(E), "syntax:1:") &&
        eddy_dostring(E, "state_goes_on = true", "=after") == 0 && eddy_errmsg(E) == NULL &&
        global_true(E, "state_goes_on"),
        "§12 after failures the state goes on and a success clears eddy_errmsg");
  eddy_close(E);
}

static void test_run_result(void) {
  eddy_State *E = eddy_new(NULL);
  const char *msg;
  run(E, "local eddy = require 'eddy'\n"
         "local function failing() eddy.sleep(0.01) error(eddy.errors.ValueError('unretrieved')) end\n"
         "eddy.get_event_loop():create_task(failing)");
  check(eddy_run(E, UV_RUN_DEFAULT) != 0,
        "§12 eddy_run: non-zero when a task ended with an error nobody retrieved");
  msg = eddy_errmsg(E);
  check(has(msg, "ValueError: unretrieved\nstack traceback") && has(msg, "host:2:"),
        "§12 ... eddy_errmsg has its message and the traceback where it was raised");
  run(E, "local eddy = require 'eddy'\n"
         "local loop = eddy.get_event_loop()\n"
         "local t = loop:create_task(function() eddy.sleep(0) error('caught by the waiter') end)\n"
         "loop:create_task(function() caught = select(2, pcall(t.await, t)) end)\n"
         "local u = loop:create_task(function() error('seen by a done callback') end)\n"
         "u:add_done_callback(function(f) seen = tostring(f:exception()) end)");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0 && eddy_errmsg(E) == NULL &&
        has(global_string(E, "caught"), "caught by the waiter") &&
        has(global_string(E, "seen"), "seen by a done callback"),
        "§12 eddy_run: 0 when every task error was retrieved (await, exception())");
  eddy_close(E);
}

/* }====================================================== */

/* {====================================================== Threads */

#define SENDERS 4
#define CALLS 4000

typedef struct {
  int thread, seq;
} Call;

static struct {
  eddy_State *E;
  pthread_t loop_thread;
  int last[SENDERS];
  int delivered, out_of_order, off_thread, refused;
} calls;

/* Runs on the loop thread: check the order, free the call. */
static void receive(lua_State *L, void *arg) {
  Call *c = (Call *)arg;
  if (c->seq != calls.last[c->thread] + 1) calls.out_of_order++;
  calls.last[c->thread] = c->seq;
  if (!pthread_equal(pthread_self(), calls.loop_thread)) calls.off_thread++;
  free(c);
  if (++calls.delivered == SENDERS * CALLS)
    (void)luaL_dostring(L, "all_in:set_result(true)");
}

static void *sender(void *p) {
  int i, id = (int)(intptr_t)p;
  for (i = 1; i <= CALLS; i++) {
    Call *c = (Call *)malloc(sizeof *c);
    c->thread = id;
    c->seq = i;
    if (eddy_call_soon_threadsafe(calls.E, receive, c) != 0) {
      free(c);
      calls.refused++;
    }
    if (i % 1000 == 0) usleep(500);
  }
  return NULL;
}

static int ran_after_close;

static void never_runs(lua_State *L, void *arg) {
  (void)L, (void)arg;
  ran_after_close++;
}

static void test_threadsafe_order(void) {
  pthread_t th[SENDERS];
  int i;
  double t0;
  calls.E = eddy_new(NULL);
  calls.loop_thread = pthread_self();
  run(calls.E, "local eddy = require 'eddy'\n"
               "local loop = eddy.get_event_loop()\n"
               "all_in = loop:create_future()\n"
               "local bound = loop:call_later(10, all_in.cancel, all_in)\n"
               "loop:create_task(function() pcall(all_in.await, all_in) bound:cancel() end)");
  for (i = 0; i < SENDERS; i++)
    pthread_create(&th[i], NULL, sender, (void *)(intptr_t)i);
  t0 = now();
  eddy_run(calls.E, UV_RUN_DEFAULT);  /* a pending task: until all arrived */
  for (i = 0; i < SENDERS; i++) pthread_join(th[i], NULL);
  check(calls.refused == 0 && calls.delivered == SENDERS * CALLS && now() - t0 < 10,
        "§12 eddy_call_soon_threadsafe from 4 threads at once: every call delivered once");
  check(calls.out_of_order == 0, "§12 ... each thread's calls run in the order it made them");
  check(calls.off_thread == 0, "§12 ... all on the loop thread");
  for (i = 0; i < 50; i++) eddy_call_soon_threadsafe(calls.E, never_runs, NULL);
  eddy_close(calls.E);
  check(ran_after_close == 0,
        "§12 calls still queued at eddy_close never run (docs/embedding.md)");
}

/* }====================================================== */

/* {====================================================== Live work */

/*
** A state full of live work, closed without running it to its end: a
** server with a client that has 1 MiB in flight, a UDP endpoint, a
** child process, an fd watcher, a signal handler, timers, tasks waiting
** in a <close> scope, an executor job.  eddy_close must release every
** descriptor and child (LeakSanitizer checks the memory in the sanitized
** build).
*/
static void test_close_with_live_work(void) {
  int fds = open_fds();
  eddy_State *E = eddy_new(NULL);
  pid_t child;
  check(run(E, "local eddy = require 'eddy'\n"
               "local loop = eddy.get_event_loop()\n"
               "server = eddy.start_server(function(r, w) eddy.sleep(100) end, '127.0.0.1', 0)\n"
               "local r, w = eddy.open_connection('127.0.0.1', server.sockets[1]:getsockname()[2])\n"
               "w:write(('x'):rep(1 << 20))\n"
               "loop:create_datagram_endpoint(function() return {} end, {'127.0.0.1', 0})\n"
               "local proc = eddy.create_subprocess_exec('sleep', '30')\n"
               "child = proc.pid\n"
               "local a, b = eddy.socket.socketpair()\n"
               "loop:add_reader(a, function() end)\n"
               "loop:add_signal_handler('SIGUSR2', function() end)\n"
               "loop:call_later(100, print)\n"
               "for i = 1, 3 do loop:create_task(function()\n"
               "  local guard <close> = setmetatable({}, {__close = function() end})\n"
               "  eddy.sleep(100)\n"
               "end) end\n"
               "loop:run_in_executor(nil, function() local s = 0 for i = 1, 1e6 do s = s + i end return s end)\n"
               "eddy.sleep(0.02)") == 0,
        "§12 a state with a server, a client with 1 MiB in flight, UDP, a child, an fd "
        "watcher, a signal handler, timers, tasks and an executor job");
  lua_getglobal(eddy_lua(E), "child");
  child = (pid_t)lua_tointeger(eddy_lua(E), -1);
  lua_pop(eddy_lua(E), 1);
  eddy_close(E);
  check(open_fds() == fds, "§12 eddy_close releases every descriptor of that live work");
  check(child > 0 && kill(child, 0) == -1 && errno == ESRCH,
        "§12 ... and the child still running is killed and reaped");
}

/* }====================================================== */

/* {====================================================== Two states */

/* Two states on one thread, each with its own loop: A serves, B is the
** client; the host gives each a turn in turn. */
static void test_two_states_talk(void) {
  eddy_State *A = eddy_new(NULL), *B = eddy_new(NULL);
  double deadline = now() + 5;
  run(A, "local eddy = require 'eddy'\n"
         "server = eddy.start_server(function(r, w)\n"
         "  for line in r:lines() do w:write('A saw ' .. line .. '\\n') end\n"
         "  w:close()\n"
         "end, '127.0.0.1', 0)\n"
         "port = server.sockets[1]:getsockname()[2]");
  lua_getglobal(eddy_lua(A), "port");
  lua_pushinteger(eddy_lua(B), lua_tointeger(eddy_lua(A), -1));
  lua_pop(eddy_lua(A), 1);
  lua_setglobal(eddy_lua(B), "port");
  run(B, "local eddy = require 'eddy'\n"
         "eddy.get_event_loop():create_task(function()\n"
         "  local r, w = eddy.open_connection('127.0.0.1', port)\n"
         "  w:write('one\\ntwo\\n') w:write_eof()\n"
         "  reply = r:read()\n"
         "end)");
  while (global_string(B, "reply") == NULL && now() < deadline) {
    eddy_run(A, UV_RUN_NOWAIT);
    eddy_run(B, UV_RUN_NOWAIT);
    usleep(200);
  }
  check(global_is(B, "reply", "A saw one\nA saw two\n"),
        "§12 two states on one thread, turns with UV_RUN_NOWAIT: B's client talks to A's server");
  eddy_close(B);
  check(run(A, "server:close() server:wait_closed() closed = not server:is_serving()") == 0 &&
        global_true(A, "closed"),
        "§12 ... closing B leaves A working");
  eddy_close(A);
}

/* A host that makes a state per job, one after the other: each state's
** server, connection and pending timer go with it.  (The first state
** also makes what libuv keeps for the process: its signal pipe.) */
static void test_states_in_turn(void) {
  const char *job = "local eddy = require 'eddy'\n"
                    "local s = eddy.start_server(function(r, w) w:write(r:readline()) w:close() end,\n"
                    "                            '127.0.0.1', 0)\n"
                    "local r, w = eddy.open_connection('127.0.0.1', s.sockets[1]:getsockname()[2])\n"
                    "w:write('job\\n') assert(r:readline() == 'job\\n')\n"
                    "eddy.get_event_loop():call_later(10, print)";
  int i, fds, failed = 0;
  eddy_State *E = eddy_new(NULL);
  run(E, job);
  eddy_close(E);
  fds = open_fds();
  for (i = 0; i < 100; i++) {
    E = eddy_new(NULL);
    if (run(E, job) != 0) failed++;
    eddy_close(E);
  }
  check(failed == 0 && open_fds() == fds,
        "§12 100 states made and closed in turn, each with a server, a connection and a "
        "pending timer: every descriptor released");
}

/* }====================================================== */

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  test_host_loop();
  test_run_default_on_host_loop();
  test_c_functions_in_tasks();
  test_dofile_and_dostring_errors();
  test_run_result();
  test_threadsafe_order();
  test_close_with_live_work();
  test_two_states_talk();
  test_states_in_turn();
  return tap_done();
}
