/*
** oom_host.c -- allocation failures: a C host whose lua_Alloc says no.
**
**   oom_host [-a] [-R] [-k K | -s STRIDE [-r SEED]] SCRIPT...
**
** For each SCRIPT (a scenario of tests/oom/), first a run with no limit,
** which must end well and counts N, the allocations that grow memory it
** makes; then runs with a countdown: after K such allocations succeed,
** the next one fails, and Lua's retry of it after an emergency collection
** (-a: it and every later one fail, until lua_close).
** K goes over 0 .. N by STRIDE (default 1), each step at a random offset
** below STRIDE (seeded by SEED, default 1), or is the one K of -k.  The
** countdown starts once `require "eddy"` (eddy.so on LUA_CPATH) has
** loaded, or before it with -R.  Every run has a fresh lua_State, closed
** at its end; it must end with the script's success or a clear error (an
** allocation failure or an eddy error object), and give back the
** descriptors it opened.  A crash, a sanitizer report or a hang (SIGALRM
** after 20 s) is a failure of the whole process.  Prints TAP: a line
** for each failing run, and one for a scenario whose runs all passed.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "host.h"
#include "tap.h"

#define RUN_SECONDS 20

static long countdown;  /* growing allocations left; < 0: no limit */
static int fail_always; /* -a: after the first failure, fail them all */
static int retry_fails; /* the failed one's retry fails too */
static long grown;      /* growing allocations since the countdown was armed */

/* Where an allocation fails: a breakpoint for gdb (break alloc_failed). */
static __attribute__((noinline)) void *alloc_failed(void) {
  __asm__ volatile("");
  return NULL;
}

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (ptr == NULL) osize = 0;  /* then osize is a type tag */
  if (nsize > osize) {
    /* Lua retries a failed allocation once after an emergency
    ** collection: to raise an error, the retry fails too. */
    if (countdown == 0 || retry_fails) {
      retry_fails = !retry_fails;
      if (!fail_always && !retry_fails) countdown = -1;
      return alloc_failed();
    }
    if (countdown > 0) countdown--;
    grown++;
  }
  return realloc(ptr, nsize);
}

/* The run in progress, for the alarm's report. */
static const char *run_script;
static long run_k;

static void on_alarm(int sig) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "not ok - %s K=%ld%s: hang (over %d s)\n",
                   run_script, run_k, fail_always ? " (-a)" : "", RUN_SECONDS);
  (void)sig;
  if (n > 0) (void)!write(1, msg, (size_t)n);
  _exit(2);
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {  /* an error object: its __tostring, if any */
    if (!luaL_callmeta(L, 1, "__tostring") || !lua_isstring(L, -1))
      return 1;
    msg = lua_tostring(L, -1);
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Start counting, the countdown at k (< 0: none). */
static void arm(long k) {
  countdown = k;
  grown = 0;
}

/* The run, protected: (script, k, before_require). */
static int scenario(lua_State *L) {
  const char *script = lua_touserdata(L, 1);
  long k = (long)lua_tointeger(L, 2);
  int before_require = lua_toboolean(L, 3);
  lua_settop(L, 0);
  if (before_require) arm(k);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy");
  lua_call(L, 1, 0);
  if (!before_require) arm(k);
  if (luaL_loadfile(L, script) != LUA_OK) return lua_error(L);
  lua_call(L, 0, 0);
  return 0;
}

/* An eddy error object's tostring: "ClassName: message" or "ClassName". */
static int is_eddy_error(const char *msg) {
  const char *p = msg;
  if (*p < 'A' || *p > 'Z') return 0;
  while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
         (*p >= '0' && *p <= '9'))
    p++;
  return *p == ':' || *p == '\0';
}

/* Whether a run that ended with status and msg ended clearly.  With -a
** only the memory error is: nothing else can be made once memory is out
** (an eddy error object would mean a failure seen as something else). */
static int clear_ending(int status, const char *msg) {
  if (status == LUA_OK || status == LUA_ERRMEM || status == LUA_ERRERR)
    return 1;
  return msg != NULL && (strstr(msg, "not enough memory") != NULL ||
                         (!fail_always && is_eddy_error(msg)));
}

/* One run of script with the countdown at k (< 0: none); before_require:
** the countdown covers `require "eddy"` too.  Returns the status and
** copies the first line of the error message into msg. */
static int run(const char *script, long k, int before_require, char *msg,
               size_t msgsize) {
  lua_State *L;
  int status;
  countdown = -1;
  retry_fails = 0;
  grown = 0;
  L = lua_newstate(limited_alloc, NULL);
  luaL_openlibs(L);
  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, scenario);
  lua_pushlightuserdata(L, (void *)script);
  lua_pushinteger(L, k);
  lua_pushboolean(L, before_require);
  status = lua_pcall(L, 3, 0, 1);
  snprintf(msg, msgsize, "%s",
           status == LUA_OK ? "ok"
           : lua_tostring(L, -1) ? lua_tostring(L, -1)
                                 : "(error object is not a string)");
  msg[strcspn(msg, "\n")] = '\0';
  lua_close(L);
  countdown = -1;
  return status;
}

static unsigned long rng_state;

static long rng_below(long n) {
  rng_state = rng_state * 6364136223846793005UL + 1442695040888963407UL;
  return n <= 1 ? 0 : (long)((rng_state >> 33) % (unsigned long)n);
}

/* Sweep script: the unlimited run, then the limited ones. */
static void sweep(const char *script, long only_k, long stride,
                  int before_require) {
  char msg[300], what[600];
  long n, k, runs = 0;
  int status, fds, failures = 0;
  run_script = script;
  run_k = -1;
  alarm(RUN_SECONDS);
  status = run(script, -1, before_require, msg, sizeof msg);
  alarm(0);
  n = grown;
  snprintf(what, sizeof what, "%s runs with no limit (%ld allocations): %s",
           script, n, msg);
  check(status == LUA_OK, what);
  if (status != LUA_OK) return;
  fds = open_fds();
  for (k = 0; k <= n; k += stride) {
    run_k = only_k >= 0 ? only_k : k + rng_below(stride);
    alarm(RUN_SECONDS);
    status = run(script, run_k, before_require, msg, sizeof msg);
    alarm(0);
    snprintf(what, sizeof what, "%s K=%ld%s: %s", script, run_k,
             fail_always ? " (-a)" : "", msg);
    runs++;
    if (!clear_ending(status, msg)) {
      check(0, what);
      failures++;
    }
    if (open_fds() != fds) {
      snprintf(what, sizeof what, "%s K=%ld%s leaves %d descriptors open",
               script, run_k, fail_always ? " (-a)" : "", open_fds() - fds);
      check(0, what);
      failures++;
      fds = open_fds();
    }
    if (only_k >= 0) break;
  }
  /* One test per scenario: each failing run is one of its own above. */
  snprintf(what, sizeof what, "%s: %ld runs with an allocation failing, each "
           "ending clearly, descriptors given back", script, runs);
  if (failures == 0) check(1, what);
}

int main(int argc, char **argv) {
  long only_k = -1, stride = 1;
  int before_require = 0, opt;
  rng_state = 1;
  signal(SIGALRM, on_alarm);
  while ((opt = getopt(argc, argv, "aRk:s:r:")) != -1) {
    switch (opt) {
      case 'a': fail_always = 1; break;
      case 'R': before_require = 1; break;
      case 'k': only_k = atol(optarg); break;
      case 's': stride = atol(optarg) > 0 ? atol(optarg) : 1; break;
      case 'r': rng_state = strtoul(optarg, NULL, 10); break;
      default:
        fprintf(stderr, "usage: %s [-a] [-R] [-k K | -s STRIDE [-r SEED]] SCRIPT...\n",
                argv[0]);
        return 2;
    }
  }
  for (; optind < argc; optind++)
    sweep(argv[optind], only_k, stride, before_require);
  return tap_done();
}
