/*
** embed_test.c -- the embedding API of eddy.h (API.md §12), tested from C
** as a host would use it.  Prints TAP: "ok N - what" / "not ok N - what".
** Every wait is bounded: a hang fails in seconds.
*/
#define _GNU_SOURCE  /* pthread_timedjoin_np */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <lauxlib.h>

#include "eddy.h"
#include "host.h"
#include "tap.h"

static int dostring(eddy_State *E, const char *chunk) {
  int rc = eddy_dostring(E, chunk, "=embed_test");
  if (rc != 0) printf("# error: %s\n", eddy_errmsg(E));
  return rc;
}

/* {====================================================== Running code */

static void test_strings_and_files(void) {
  eddy_State *E = eddy_new(NULL);
  char path[] = "/tmp/eddy_embed_XXXXXX";
  const char *msg;
  int fd;
  check(E != NULL && eddy_lua(E) != NULL, "eddy_new(NULL) makes a state");
  check(dostring(E, "x = 6 * 7; eddy = require 'eddy'") == 0 &&
        strcmp(global_string(E, "x"), "42") == 0,
        "eddy_dostring runs a chunk with the standard libraries");
  check(eddy_errmsg(E) == NULL, "eddy_errmsg is NULL after a success");
  check(dostring(E, "result = eddy.sleep(0.01, 'slept')") == 0 &&
        strcmp(global_string(E, "result"), "slept") == 0,
        "a suspending call at the top of a chunk runs the loop");
  check(eddy_dostring(E, "local function inner() error('boom') end inner()",
                      "=failing") != 0,
        "eddy_dostring returns non-zero on a runtime error");
  msg = eddy_errmsg(E);
  check(msg != NULL && strstr(msg, "boom") != NULL &&
        strstr(msg, "stack traceback") != NULL && strstr(msg, "inner") != NULL,
        "eddy_errmsg has the message and its traceback");
  check(eddy_dostring(E, "error(require('eddy').errors.ValueError('obj'))",
                      "=objerr") != 0 &&
        strstr(eddy_errmsg(E), "ValueError: obj") != NULL,
        "an error object's message is its tostring");
  check(eddy_dostring(E, "local function raiser()\n"
                         "  error(require('eddy').errors.ValueError('traced'))\n"
                         "end\nraiser()", "=objtrace") != 0 &&
        strstr(eddy_errmsg(E), "ValueError: traced\nstack traceback") != NULL &&
        strstr(eddy_errmsg(E), "raiser") != NULL,
        "an error object's message is followed by its traceback");
  check(eddy_dostring(E, "eddy.sleep(0.001)\n"
                         "error(eddy.errors.TimeoutError('suspended first'))",
                         "=objsusp") != 0 &&
        strstr(eddy_errmsg(E), "TimeoutError: suspended first\nstack traceback") != NULL,
        "... also after a top-level suspension");
  check(eddy_dostring(E, "this is not lua", "=syntax") != 0 &&
        strstr(eddy_errmsg(E), "syntax") != NULL,
        "a syntax error is reported");
  fd = mkstemp(path);
  if (fd >= 0) {
    const char *src = "from_file = (... == nil) and 'ran' or 'args?'\n";
    if (write(fd, src, strlen(src)) < 0) perror("write");
    close(fd);
  }
  check(fd >= 0 && eddy_dofile(E, path) == 0 &&
        strcmp(global_string(E, "from_file"), "ran") == 0,
        "eddy_dofile runs a file");
  unlink(path);
  check(eddy_dofile(E, "/nonexistent/eddy/file.lua") != 0 &&
        strstr(eddy_errmsg(E), "nonexistent") != NULL,
        "eddy_dofile reports a missing file");
  eddy_close(E);
}

static void test_run_default(void) {
  eddy_State *E = eddy_new(NULL);
  double t0;
  int rc;
  t0 = now();  /* before the timer is scheduled */
  dostring(E, "local eddy = require 'eddy'\n"
              "local loop = eddy.get_event_loop()\n"
              "loop:call_later(0.02, function() fired = true end)\n"
              "eddy.get_event_loop():create_task(function()\n"
              "  eddy.sleep(0.01) task_done = true end)\n");
  check(!global_true(E, "fired"), "the chunk returns before its timers fire");
  rc = eddy_run(E, UV_RUN_DEFAULT);
  check(rc == 0 && global_true(E, "fired") && global_true(E, "task_done"),
        "eddy_run(UV_RUN_DEFAULT) runs until no live work is left");
  check(now() - t0 >= 0.02 && now() - t0 < 5,
        "eddy_run(UV_RUN_DEFAULT) waited for the timer, not longer");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0, "eddy_run with nothing to do returns");
  eddy_close(E);
}

/* }====================================================== */

/* {====================================================== A host's loop */

static int host_ticks = 0;

static void host_timer_cb(uv_timer_t *t) {
  (void)t;
  host_ticks++;
}

static void test_host_loop(void) {
  uv_loop_t uv;
  uv_timer_t host_timer;
  eddy_State *E;
  int turns = 0;
  double t0;
  uv_loop_init(&uv);
  E = eddy_new(&uv);
  check(E != NULL, "eddy_new(own uv loop) makes a state");
  uv_timer_init(&uv, &host_timer);
  uv_timer_start(&host_timer, host_timer_cb, 1, 1);
  dostring(E, "local eddy = require 'eddy'\n"
              "local loop = eddy.get_event_loop()\n"
              "count = 0\n"
              "loop:create_task(function()\n"
              "  for i = 1, 5 do eddy.sleep(0.002) count = count + 1 end\n"
              "end)\n");
  /* The host drives: NOWAIT turns, then ONCE turns, bounded in time. */
  t0 = now();
  while (strcmp(global_string(E, "count"), "2") < 0 && now() - t0 < 5) {
    eddy_run(E, UV_RUN_NOWAIT);
    turns++;
  }
  check(strcmp(global_string(E, "count"), "2") >= 0 && turns > 1,
        "eddy_run(UV_RUN_NOWAIT) makes progress one turn at a time");
  while (strcmp(global_string(E, "count"), "5") != 0 && now() - t0 < 5)
    eddy_run(E, UV_RUN_ONCE);
  check(strcmp(global_string(E, "count"), "5") == 0,
        "eddy_run(UV_RUN_ONCE) drives the task to its end");
  check(host_ticks > 0, "the host's own libuv timer runs on the shared loop");
  uv_timer_stop(&host_timer);
  uv_close((uv_handle_t *)&host_timer, NULL);
  uv_run(&uv, UV_RUN_NOWAIT);
  /* The host may also run uv_run itself: eddy's callbacks run there. */
  dostring(E, "require('eddy').get_event_loop():call_soon(function() by_uv_run = true end)");
  uv_run(&uv, UV_RUN_NOWAIT);
  uv_run(&uv, UV_RUN_NOWAIT);
  check(global_true(E, "by_uv_run"), "a host's uv_run runs eddy's callbacks");
  eddy_close(E);
  check(uv_loop_close(&uv) == 0,
        "eddy_close releases every handle of a host's loop (uv_loop_close ok)");
}

/* }====================================================== */

/* {====================================================== Threads */

typedef struct {
  eddy_State *E;
  int rc;
  void (*fn)(lua_State *L, void *arg);  /* what send_later sends */
} wake_arg;

/* A thread: after the loop has had time to block in its poll, send fn. */
static void *send_later(void *p) {
  wake_arg *w = (wake_arg *)p;
  usleep(50 * 1000);
  w->rc = eddy_call_soon_threadsafe(w->E, w->fn, NULL);
  return NULL;
}

static void start_sender(pthread_t *th, wake_arg *w, eddy_State *E,
                         void (*fn)(lua_State *L, void *arg)) {
  w->E = E;
  w->rc = -1;
  w->fn = fn;
  pthread_create(th, NULL, send_later, w);
}

/* Runs on the loop thread: mark, cancel the far timer, stop the loop. */
static void on_loop_thread(lua_State *L, void *arg) {
  (void)arg;
  (void)luaL_dostring(L, "woken = true; far:cancel(); require('eddy').get_event_loop():stop()");
}

/* With a far timer set, a thread wakes E's loop blocked in its poll:
** the seconds eddy_run took; *rc is what the thread's call returned. */
static double wake_blocked_loop(eddy_State *E, int *rc) {
  pthread_t th;
  wake_arg w;
  double t0;
  dostring(E, "far = require('eddy').get_event_loop():call_later(10, function() end)");
  start_sender(&th, &w, E, on_loop_thread);
  t0 = now();
  eddy_run(E, UV_RUN_DEFAULT);  /* blocks until the other thread wakes it */
  t0 = now() - t0;
  pthread_join(th, NULL);
  *rc = w.rc;
  return t0;
}

static void test_threadsafe(void) {
  eddy_State *E = eddy_new(NULL);
  int rc;
  double dt = wake_blocked_loop(E, &rc);
  check(rc == 0, "eddy_call_soon_threadsafe returns 0");
  check(global_true(E, "woken") && dt < 5,
        "eddy_call_soon_threadsafe from another thread wakes a blocked loop");
  eddy_close(E);
}

/* Thread-safe calls that raise, and one that marks it ran. */
static void raising_call(lua_State *L, void *arg) {
  (void)arg;
  luaL_error(L, "raised by a thread-safe call");
}

static void marking_call(lua_State *L, void *arg) {
  (void)arg;
  lua_pushboolean(L, 1);
  lua_setglobal(L, "marked");
}

/* A thread-safe call that raises goes to the exception handler, as a
** callback that raises (API.md 3): the callback ready with it and the
** thread-safe calls queued after it still run. */
static void test_threadsafe_raises(void) {
  eddy_State *E = eddy_new(NULL);
  dostring(E, "local loop = require('eddy').get_event_loop()\n"
              "loop:set_exception_handler(function(l, c)\n"
              "  reported, reported_error = c.message, tostring(c.exception) end)\n"
              "loop:call_soon(function() soon_ran = true end)");
  check(eddy_call_soon_threadsafe(E, raising_call, NULL) == 0 &&
        eddy_call_soon_threadsafe(E, marking_call, NULL) == 0 &&
        eddy_run(E, UV_RUN_DEFAULT) == 0,
        "a thread-safe call that raises: eddy_run goes on (the handler took it)");
  check(global_true(E, "soon_ran"),
        "... the callback ready with it still runs");
  check(global_true(E, "marked"),
        "... the thread-safe calls queued after it still run");
  check(global_string(E, "reported") != NULL &&
        strstr(global_string(E, "reported"), "thread-safe") != NULL &&
        strstr(global_string(E, "reported_error"), "raised by a thread-safe call") != NULL,
        "... its error reaches the exception handler, named as a thread-safe call's");
  eddy_close(E);
}

/* The state's thread-safe queue outlives any one loop: a script that
** closes the default loop and sets a new one still gets the calls, on the
** new loop (docs/embedding.md). */
static void test_threadsafe_new_default_loop(void) {
  eddy_State *E = eddy_new(NULL);
  int rc;
  dostring(E, "require('eddy').get_event_loop():close()");
  check(eddy_call_soon_threadsafe(E, marking_call, NULL) == 0,
        "eddy_call_soon_threadsafe with the default loop closed: accepted");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0 && !global_true(E, "marked"),
        "... it waits while no loop is open");
  dostring(E, "local eddy = require 'eddy'\n"
              "eddy.set_event_loop(eddy.new_event_loop())");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0 && global_true(E, "marked"),
        "... and runs on the new default loop that eddy_run runs");
  check(wake_blocked_loop(E, &rc) < 5 && rc == 0 && global_true(E, "woken"),
        "a thread's call wakes the new default loop");
  eddy_close(E);
}

/* eddy.run runs a loop of its own, not the default one: the calls reach
** the running loop, whichever it is. */
static void test_threadsafe_in_eddy_run(void) {
  eddy_State *E = eddy_new(NULL);
  pthread_t th;
  wake_arg w;
  start_sender(&th, &w, E, marking_call);
  check(dostring(E, "local eddy = require 'eddy'\n"
                    "seen = eddy.run(function()\n"
                    "  local loop = eddy.get_running_loop()\n"
                    "  local deadline = loop:time() + 5\n"
                    "  while not marked and loop:time() < deadline do eddy.sleep(0.005) end\n"
                    "  return marked\n"
                    "end)") == 0,
        "eddy.run with a thread sending a call meanwhile");
  pthread_join(th, NULL);
  check(w.rc == 0 && global_true(E, "seen"),
        "... the call ran inside eddy.run's loop");
  eddy_close(E);
}

/* Runs on the loop thread: complete the future the task waits on. */
static void complete_future(lua_State *L, void *arg) {
  (void)arg;
  (void)luaL_dostring(L, "fut:set_result('from a thread')");
}

/* API.md §11: a pending task is live work, so eddy_run waits for the
** thread that completes its future, with no timer or handle open. */
static void test_pending_task_is_live(void) {
  eddy_State *E = eddy_new(NULL);
  pthread_t th;
  wake_arg w;
  dostring(E, "local eddy = require 'eddy'\n"
              "local loop = eddy.get_event_loop()\n"
              "fut = loop:create_future()\n"
              "loop:create_task(function() got = fut:await() end)");
  start_sender(&th, &w, E, complete_future);
  check(eddy_run(E, UV_RUN_DEFAULT) == 0, "eddy_run waits for a pending task");
  pthread_join(th, NULL);
  check(w.rc == 0 && strcmp(global_string(E, "got"), "from a thread") == 0,
        "the task got the result another thread sent");
  eddy_close(E);
}

/* eddy_run reports an error nothing handled (the default handler saw it). */
static void test_unhandled_error(void) {
  eddy_State *E = eddy_new(NULL);
  dostring(E, "local loop = require('eddy').get_event_loop()\n"
              "loop:call_soon(function() error('unhandled in a callback') end)");
  check(eddy_run(E, UV_RUN_DEFAULT) != 0,
        "eddy_run returns non-zero after an unhandled callback error");
  check(eddy_errmsg(E) != NULL &&
        strstr(eddy_errmsg(E), "unhandled in a callback") != NULL &&
        strstr(eddy_errmsg(E), "stack traceback") != NULL,
        "eddy_errmsg then has that error's message and traceback");
  dostring(E, "local loop = require('eddy').get_event_loop()\n"
              "loop:call_soon(function() error('first') end)\n"
              "loop:call_soon(function() error('second') end)");
  check(eddy_run(E, UV_RUN_ONCE) != 0 && strstr(eddy_errmsg(E), "first") != NULL &&
        strstr(eddy_errmsg(E), "second") == NULL,
        "eddy_run(UV_RUN_ONCE) reports the first unhandled error of its turn");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0 && eddy_errmsg(E) == NULL,
        "and 0 again when the next run is clean");
  dostring(E, "local loop = require('eddy').get_event_loop()\n"
              "local bad = setmetatable({}, {__tostring = function() error('tostring broke') end})\n"
              "loop:call_soon(function() loop:call_exception_handler{message = bad, exception = 'x'} end)");
  check(eddy_run(E, UV_RUN_DEFAULT) != 0 && eddy_errmsg(E) != NULL &&
        strstr(eddy_errmsg(E), "tostring broke") == NULL,
        "a context the handler cannot format: eddy_errmsg is no error of the formatting");
  dostring(E, "require('eddy').get_event_loop():call_soon(function() end)");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0, "and the next run is clean");
  dostring(E, "local loop = require('eddy').get_event_loop()\n"
              "loop:set_exception_handler(function() handled = true end)\n"
              "loop:call_soon(function() error('handled') end)");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0 && global_true(E, "handled"),
        "an error a custom exception handler took is not reported by eddy_run");
  eddy_close(E);
}

/* }====================================================== */

/* {====================================================== Thread storms */

#define STORM_THREADS 4
#define STORM_CALLS 3000

static int storm_count;  /* on the loop thread only */

static void count_call(lua_State *L, void *arg) {
  (void)arg;
  storm_count++;
  lua_pushinteger(L, storm_count);
  lua_setglobal(L, "count");
}

static void *stormer(void *p) {
  wake_arg *w = (wake_arg *)p;
  int i;
  w->rc = 0;
  for (i = 0; i < STORM_CALLS; i++) {
    int rc = eddy_call_soon_threadsafe(w->E, count_call, NULL);
    if (rc != 0) w->rc = rc;
    if (i % 500 == 0) usleep(1000);
  }
  return NULL;
}

/* Run until 'count' reaches n (bounded): a pending task keeps eddy_run
** waiting for the threads. */
static void run_until_count(eddy_State *E, int n) {
  char chunk[256];
  snprintf(chunk, sizeof chunk,
           "local eddy = require 'eddy'\n"
           "eddy.get_event_loop():create_task(function()\n"
           "  local deadline = eddy.get_running_loop():time() + 10\n"
           "  while (count or 0) < %d and eddy.get_running_loop():time() < deadline do\n"
           "    eddy.sleep(0.001)\n"
           "  end\n"
           "end)", n);
  dostring(E, chunk);
  eddy_run(E, UV_RUN_DEFAULT);
}

/* Calls from several threads at once, while the loop runs and while a
** script closes it and sets a new one: each runs exactly once. */
static void test_threadsafe_storm(void) {
  eddy_State *E = eddy_new(NULL);
  pthread_t th[STORM_THREADS];
  wake_arg w[STORM_THREADS];
  int i, refused = 0;
  storm_count = 0;
  for (i = 0; i < STORM_THREADS; i++) {
    w[i].E = E;
    pthread_create(&th[i], NULL, stormer, &w[i]);
  }
  run_until_count(E, STORM_THREADS * STORM_CALLS / 3);
  dostring(E, "local eddy = require 'eddy'\n"
              "eddy.get_event_loop():close()\n"
              "eddy.set_event_loop(eddy.new_event_loop())");
  run_until_count(E, STORM_THREADS * STORM_CALLS);
  for (i = 0; i < STORM_THREADS; i++) {
    pthread_join(th[i], NULL);
    if (w[i].rc != 0) refused++;
  }
  eddy_run(E, UV_RUN_NOWAIT);  /* calls queued after the task saw the last */
  check(refused == 0 && storm_count == STORM_THREADS * STORM_CALLS,
        "calls stormed from 4 threads across a loop's close each run once");
  eddy_close(E);
}

/*
** Threads that call until they are refused, while eddy_close runs with
** executor jobs in flight: the refusal (eddy__inbox_refuse) meets the
** threads' pushes, lua_close meets the workers.  The threads are joined
** from a finalizer that lua_close runs, so before eddy_close returns, as
** docs/embedding.md requires.  (A run for ThreadSanitizer: make tsan.)
*/
static pthread_t refused_th[STORM_THREADS];
static wake_arg refused_w[STORM_THREADS];

static void noop_call(lua_State *L, void *arg) { (void)L, (void)arg; }

static void *call_until_refused(void *p) {
  wake_arg *w = (wake_arg *)p;
  double deadline = now() + 10;
  int rc;
  while ((rc = eddy_call_soon_threadsafe(w->E, noop_call, NULL)) == 0 &&
         now() < deadline) {}
  w->rc = rc;
  return NULL;
}

static int join_refused(lua_State *L) {
  int i;
  (void)L;
  for (i = 0; i < STORM_THREADS; i++) pthread_join(refused_th[i], NULL);
  return 0;
}

static void test_calls_during_close(void) {
  eddy_State *E = eddy_new(NULL);
  lua_State *L = eddy_lua(E);
  int i, refused = 0;
  lua_newuserdatauv(L, 1, 0);
  lua_newtable(L);
  lua_pushcfunction(L, join_refused);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setglobal(L, "joiner");
  dostring(E, "local eddy = require 'eddy'\n"
              "local loop = eddy.get_event_loop()\n"
              "local function spin() local s = 0 for k = 1, 1e6 do s = s + k end return s end\n"
              "for i = 1, 4 do loop:run_in_executor(nil, spin) end\n"
              "local ex = eddy.ThreadPoolExecutor(2)\n"
              "for i = 1, 4 do loop:run_in_executor(ex, spin) end");
  for (i = 0; i < STORM_THREADS; i++) {
    refused_w[i].E = E;
    pthread_create(&refused_th[i], NULL, call_until_refused, &refused_w[i]);
  }
  eddy_run(E, UV_RUN_NOWAIT);  /* some calls run, the others wait */
  eddy_close(E);
  for (i = 0; i < STORM_THREADS; i++)
    if (refused_w[i].rc == UV_ECANCELED) refused++;
  check(refused == STORM_THREADS,
        "threads calling while eddy_close runs with jobs in flight are refused (UV_ECANCELED)");
}

/* Several states, each on its own thread with its own loop, at once. */
static void *state_thread(void *p) {
  wake_arg *w = (wake_arg *)p;
  eddy_State *E = eddy_new(NULL);
  wake_arg sender;
  pthread_t th;
  start_sender(&th, &sender, E, marking_call);
  w->rc = eddy_dostring(E,
      "local eddy = require 'eddy'\n"
      "local server = eddy.start_server(function(r, w)\n"
      "  w:write(r:readline()) w:close() end, '127.0.0.1', 0)\n"
      "local port = server.sockets[1]:getsockname()[2]\n"
      "local r, w = eddy.open_connection('127.0.0.1', port)\n"
      "w:write('echo\\n')\n"
      "assert(r:readline() == 'echo\\n')\n"
      "w:close() server:close()\n"
      "local deadline = eddy.get_event_loop():time() + 5\n"
      "while not marked and eddy.get_event_loop():time() < deadline do eddy.sleep(0.005) end\n"
      "assert(marked, 'no thread-safe call')", "=state_thread");
  if (w->rc != 0) printf("# %s\n", eddy_errmsg(E));
  pthread_join(th, NULL);
  eddy_close(E);
  return NULL;
}

static void test_states_in_threads(void) {
  pthread_t th[STORM_THREADS];
  wake_arg w[STORM_THREADS];
  int i, failed = 0;
  for (i = 0; i < STORM_THREADS; i++) {
    w[i].rc = -1;
    pthread_create(&th[i], NULL, state_thread, &w[i]);
  }
  for (i = 0; i < STORM_THREADS; i++) {
    pthread_join(th[i], NULL);
    if (w[i].rc != 0) failed++;
  }
  check(failed == 0, "4 states on 4 threads at once: TCP echo and a thread-safe call each");
}

/* }====================================================== */

/* {====================================================== TLS on threads */

/*
** TLS_THREADS threads, each with a state of its own, run TLS servers and
** clients at once (tests/embed_tls.lua), loading the same certificate
** files at the same moment; one client of each connects to a server of
** the main thread's state, which does TLS itself meanwhile.  What a
** state holds is its own (the mbedTLS contexts, their random generators):
** ThreadSanitizer (make tsan) checks eddy shares nothing between them.
** The Lua files are named from the source root, where tools/run-tests.sh
** runs this test.
*/
#define TLS_THREADS 6

static struct {
  char certs[256];     /* spec/support/tls.lua's directory */
  lua_Integer port;    /* of the main state's server */
  atomic_int waiting;  /* threads at the starting line */
  int started;
  pthread_t th[TLS_THREADS];
  int rc[TLS_THREADS];
} tls_run;

/* all_at_once() in a thread's state: wait (5 s at most) until every
** thread has come here. */
static int l_all_at_once(lua_State *L) {
  double deadline = now() + 5;
  (void)L;
  atomic_fetch_add(&tls_run.waiting, 1);
  while (atomic_load(&tls_run.waiting) < TLS_THREADS && now() < deadline)
    usleep(100);
  return 0;
}

static void *tls_thread(void *p) {
  int *rc = (int *)p, id = (int)(rc - tls_run.rc) + 1;
  eddy_State *E = eddy_new(NULL);
  lua_State *L = eddy_lua(E);
  lua_pushinteger(L, id);
  lua_setglobal(L, "id");
  lua_pushstring(L, tls_run.certs);
  lua_setglobal(L, "certs");
  lua_pushinteger(L, tls_run.port);
  lua_setglobal(L, "main_port");
  lua_register(L, "all_at_once", l_all_at_once);
  *rc = eddy_dostring(E, "dofile('tests/embed_tls.lua').thread(id, certs, main_port, all_at_once)",
                      "=tls_thread");
  if (*rc != 0) printf("# thread %d: %s\n", id, eddy_errmsg(E));
  eddy_close(E);
  return NULL;
}

/* start_threads(certs, port) in the main state. */
static int l_start_threads(lua_State *L) {
  snprintf(tls_run.certs, sizeof tls_run.certs, "%s", luaL_checkstring(L, 1));
  tls_run.port = luaL_checkinteger(L, 2);
  for (; tls_run.started < TLS_THREADS; tls_run.started++) {
    tls_run.rc[tls_run.started] = -1;
    if (pthread_create(&tls_run.th[tls_run.started], NULL, tls_thread,
                       &tls_run.rc[tls_run.started]) != 0)
      return luaL_error(L, "pthread_create failed");
  }
  return 0;
}

static void test_tls_in_threads(void) {
  eddy_State *E = eddy_new(NULL);
  struct timespec deadline;
  int i, failed = 0, hung = 0;
  lua_State *L = eddy_lua(E);
  lua_pushinteger(L, TLS_THREADS);
  lua_setglobal(L, "threads");
  lua_register(L, "start_threads", l_start_threads);
  check(dostring(E, "tls = dofile('spec/support/tls.lua')\n"
                    "dofile('tests/embed_tls.lua').main(tls.dir(), threads, start_threads)") == 0,
        "TLS: the main state serves its own client and one of each thread, "
        "while they run theirs");
  /* The threads' own bound has passed by now, or soon will. */
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  for (i = 0; i < tls_run.started; i++) {
    if (pthread_timedjoin_np(tls_run.th[i], NULL, &deadline) != 0) hung++;
    else if (tls_run.rc[i] != 0) failed++;
  }
  if (hung > 0) {  /* they still use their states: no way on */
    check(0, "TLS: a thread hung");
    fflush(stdout);
    _exit(tap_done());
  }
  check(tls_run.started == TLS_THREADS && failed == 0,
        "TLS: 6 states on 6 threads, each with a server requiring client "
        "certificates, 256 KiB both ways, close_notify, same files at once");
  dostring(E, "tls.cleanup()");
  eddy_close(E);
}

/* }====================================================== */

/* {====================================================== Misuse */

static eddy_State *closing_state;  /* what the C functions below close */

static int after_close_rc;  /* what a call made after that eddy_close got */

static int l_host_close(lua_State *L) {
  (void)L;
  eddy_close(closing_state);
  after_close_rc = eddy_dostring(closing_state, "x = 1", "=after");
  return 0;
}

static void closing_call(lua_State *L, void *arg) {
  (void)L, (void)arg;
  eddy_close(closing_state);
}

static int inner_run_rc;
static const char *inner_run_msg;

static void rerunning_call(lua_State *L, void *arg) {
  (void)L, (void)arg;
  inner_run_rc = eddy_run(closing_state, UV_RUN_DEFAULT);
  inner_run_msg = eddy_errmsg(closing_state);
  inner_run_msg = inner_run_msg ? strdup(inner_run_msg) : NULL;
}

/* NULL where a pointer is needed is refused, never dereferenced. */
static void test_null_arguments(void) {
  eddy_State *E = eddy_new(NULL);
  check(eddy_lua(NULL) == NULL && eddy_errmsg(NULL) != NULL,
        "eddy_lua(NULL) is NULL; eddy_errmsg(NULL) says there is no state");
  check(eddy_dostring(NULL, "x = 1", "=x") != 0 && eddy_dofile(NULL, "/dev/null") != 0 &&
        eddy_run(NULL, UV_RUN_DEFAULT) != 0 &&
        eddy_call_soon_threadsafe(NULL, marking_call, NULL) < 0,
        "every function refuses a NULL state");
  check(eddy_dostring(E, NULL, "=x") != 0 && eddy_errmsg(E) != NULL &&
        strstr(eddy_errmsg(E), "NULL") != NULL,
        "eddy_dostring(E, NULL, ...) fails with a message");
  check(eddy_dostring(E, "unnamed = true", NULL) == 0 && global_true(E, "unnamed"),
        "a NULL chunk name is allowed");
  check(eddy_call_soon_threadsafe(E, NULL, NULL) < 0 &&
        eddy_run(E, UV_RUN_DEFAULT) == 0,
        "eddy_call_soon_threadsafe(E, NULL, arg) is refused");
  dostring(E, "require('eddy').get_event_loop():call_soon(function() bad_mode_ran = true end)");
  check(eddy_run(E, (uv_run_mode)42) != 0 && strstr(eddy_errmsg(E), "mode") != NULL &&
        !global_true(E, "bad_mode_ran"),
        "eddy_run with a mode libuv does not have fails with a message");
  eddy_close(E);
}

/* Errors whose formatting raises: the host still gets a message. */
static void test_unprintable_errors(void) {
  eddy_State *E = eddy_new(NULL);
  check(eddy_dostring(E, "error(setmetatable({}, {__tostring = function() error('ts broke') end}))",
                      "=ts") != 0 && eddy_errmsg(E) != NULL &&
        strstr(eddy_errmsg(E), "table") != NULL,
        "an error table whose __tostring raises: a message, no crash");
  check(eddy_dostring(E, "error(setmetatable({}, {__tostring = function() return {} end}))",
                      "=ts") != 0 && eddy_errmsg(E) != NULL,
        "an error table whose __tostring returns no string: a message");
  check(eddy_dostring(E, "local u = io.tmpfile()\n"
                         "debug.setmetatable(u, {__tostring = function() error('ud broke') end})\n"
                         "error(u)", "=ud") != 0 && eddy_errmsg(E) != NULL,
        "an error userdata whose __tostring raises: a message");
  check(dostring(E, "after = 'fine'") == 0 && strcmp(global_string(E, "after"), "fine") == 0,
        "the state goes on after them");
  eddy_close(E);
}

/* eddy_run from inside a running loop is refused, and the outer run's
** report of an unhandled error stands. */
static void test_run_reentered(void) {
  eddy_State *E = closing_state = eddy_new(NULL);
  int rc;
  inner_run_rc = 0;
  dostring(E, "require('eddy').get_event_loop():call_soon(function() error('outer failure') end)");
  eddy_call_soon_threadsafe(E, rerunning_call, NULL);
  rc = eddy_run(E, UV_RUN_DEFAULT);
  check(inner_run_rc != 0 && inner_run_msg != NULL && strstr(inner_run_msg, "running") != NULL,
        "eddy_run called from a callback fails with a message");
  check(rc != 0 && strstr(eddy_errmsg(E), "outer failure") != NULL,
        "... and the outer run still reports its unhandled error");
  free((void *)inner_run_msg);
  eddy_close(E);
}

/* eddy_close from inside a call that runs Lua code: the state closes when
** that call returns (ASan checks nothing is used after it is freed). */
static void test_close_inside(void) {
  double t0;
  closing_state = eddy_new(NULL);
  lua_register(eddy_lua(closing_state), "host_close", l_host_close);
  check(eddy_dostring(closing_state, "host_close() after_close = true", "=c") == 0,
        "eddy_close from a C function a chunk calls: the chunk ends");
  check(after_close_rc != 0, "... a call into the closing state meanwhile is refused");
  closing_state = eddy_new(NULL);
  lua_register(eddy_lua(closing_state), "host_close", l_host_close);
  eddy_dostring(closing_state,
                "local loop = require('eddy').get_event_loop()\n"
                "loop:call_later(10, function() end)\n"
                "loop:call_soon(host_close)", "=c");
  t0 = now();
  eddy_run(closing_state, UV_RUN_DEFAULT);
  check(now() - t0 < 5, "eddy_close from a callback: eddy_run returns at once");
  closing_state = eddy_new(NULL);
  dostring(closing_state, "require('eddy').get_event_loop():call_later(10, function() end)");
  eddy_call_soon_threadsafe(closing_state, closing_call, NULL);
  t0 = now();
  eddy_run(closing_state, UV_RUN_DEFAULT);
  check(now() - t0 < 5, "eddy_close from a thread-safe call: eddy_run returns at once");
}

/* Work scheduled and never run: eddy_close releases it all, also on a
** host's loop, with a server listening. */
static void test_never_run(void) {
  uv_loop_t uv;
  eddy_State *E = eddy_new(NULL);
  check(dostring(E, "local eddy = require 'eddy'\n"
                    "local loop = eddy.get_event_loop()\n"
                    "loop:call_later(100, print)\n"
                    "loop:create_task(function() eddy.sleep(100) end)\n"
                    "server = eddy.start_server(function() end, '127.0.0.1', 0)") == 0,
        "a state with timers, a task and a server never run");
  check(eddy_call_soon_threadsafe(E, marking_call, NULL) == 0,
        "... and a thread-safe call queued (eddy_close frees it unrun)");
  eddy_close(E);
  uv_loop_init(&uv);
  E = eddy_new(&uv);
  dostring(E, "local eddy = require 'eddy'\n"
              "eddy.get_event_loop():call_later(100, print)\n"
              "server = eddy.start_server(function() end, '127.0.0.1', 0)");
  eddy_close(E);
  check(uv_loop_close(&uv) == 0, "... closed on a host's loop, nothing is left on it");
}

static int raise_usr1(lua_State *L) {
  (void)L;
  raise(SIGUSR1);
  return 0;
}

/* os.exit(code, true) from a script ends the host process with that code,
** having closed the state and freed the eddy_State (LSan, in the sanitized
** build, fails the exit status otherwise). */
static void test_os_exit(void) {
  int status = -1;
  pid_t pid;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    eddy_State *E = eddy_new(NULL);
    eddy_dostring(E, "require('eddy').get_event_loop():call_later(10, print)\n"
                     "os.exit(3, true)", "=exit");
    _exit(99);  /* not reached */
  }
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 3,
        "os.exit(3, true) in a script: the host exits with 3, nothing leaked");
}

/* A signal handler of an embedded state runs on its loop. */
static void test_signal(void) {
  eddy_State *E = eddy_new(NULL);
  lua_register(eddy_lua(E), "raise_usr1", raise_usr1);
  dostring(E, "local eddy = require 'eddy'\n"
              "local loop = eddy.get_event_loop()\n"
              "local far = loop:call_later(10, function() end)\n"
              "loop:add_signal_handler(eddy.signal.SIGUSR1, function()\n"
              "  got_signal = true far:cancel()\n"
              "  loop:remove_signal_handler(eddy.signal.SIGUSR1)\n"
              "end)\n"
              "loop:call_soon(raise_usr1)");
  check(eddy_run(E, UV_RUN_DEFAULT) == 0 && global_true(E, "got_signal"),
        "a signal handler in an embedded state runs");
  eddy_close(E);
}

/* Big chunks load, and a big error message reaches the host whole. */
static void test_big(void) {
  eddy_State *E = eddy_new(NULL);
  size_t n = 16u << 20, len;
  char *chunk = (char *)malloc(n + 32);
  memset(chunk, ' ', n);
  strcpy(chunk + n, "big_ran = true");
  check(eddy_dostring(E, chunk, "=big") == 0 && global_true(E, "big_ran"),
        "a 16 MiB chunk runs");
  free(chunk);
  check(eddy_dostring(E, "error(string.rep('x', 4 << 20) .. 'end', 0)", "=bigerr") != 0,
        "a 4 MiB error message");
  len = strlen(eddy_errmsg(E));
  check(len > (4u << 20) && strncmp(eddy_errmsg(E) + (4u << 20), "end\n", 4) == 0,
        "... reaches eddy_errmsg whole, then its traceback");
  eddy_close(E);
}

/* }====================================================== */

/* {====================================================== Two states */

static void test_two_states(void) {
  eddy_State *A = eddy_new(NULL);
  eddy_State *B = eddy_new(NULL);
  const char *chunk =
      "local eddy = require 'eddy'\n"
      "eddy.get_event_loop():call_later(0.01, function() name = name .. '!' end)\n";
  check(A != NULL && B != NULL && eddy_lua(A) != eddy_lua(B),
        "two eddy_States coexist");
  dostring(A, "name = 'A'");
  dostring(B, "name = 'B'");
  dostring(A, chunk);
  dostring(B, chunk);
  eddy_run(A, UV_RUN_DEFAULT);
  check(strcmp(global_string(A, "name"), "A!") == 0 &&
        strcmp(global_string(B, "name"), "B") == 0,
        "running one state's loop leaves the other alone");
  eddy_run(B, UV_RUN_DEFAULT);
  check(strcmp(global_string(B, "name"), "B!") == 0, "the other state runs too");
  eddy_close(A);
  check(dostring(B, "assert(require('eddy').sleep(0, 'still') == 'still')") == 0,
        "closing one state leaves the other usable");
  eddy_close(B);
  eddy_close(NULL);
  check(1, "eddy_close(NULL) is harmless");
}

/* }====================================================== */

int main(void) {
  test_strings_and_files();
  test_run_default();
  test_host_loop();
  test_threadsafe();
  test_threadsafe_raises();
  test_threadsafe_new_default_loop();
  test_threadsafe_in_eddy_run();
  test_pending_task_is_live();
  test_unhandled_error();
  test_two_states();
  test_threadsafe_storm();
  test_states_in_threads();
  test_tls_in_threads();
  test_calls_during_close();
  test_null_arguments();
  test_unprintable_errors();
  test_run_reentered();
  test_close_inside();
  test_never_run();
  test_os_exit();
  test_signal();
  test_big();
  return tap_done();
}
