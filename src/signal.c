/*
** signal.c -- Unix signals: loop:add_signal_handler/remove_signal_handler
** (asyncio's unix_events), the eddy.signal module, and Ctrl-C while
** eddy.run runs (asyncio.Runner's SIGINT handler).
**
** One watcher (a uv_signal_t) per signal and loop.  The watcher holds the
** Handle in its user value; when the signal arrives, libuv's own process
** handler wakes the loop and the Handle goes to the ready queue (asyncio's
** _handle_signal), so the callback runs in the loop like any other, in the
** context current when it was added, and its errors go to the exception
** handler.  Watchers are unreferenced: signal handlers alone do not keep a
** loop alive (API.md §11).  Stopping the last watcher of a signal in the
** process makes libuv restore the default action, as asyncio's
** remove_signal_handler does.
**
** The per-loop map signal -> watcher lives in the loop's fields table.
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"


#define SIGWATCHER "eddy.SignalWatcher"

/* User value of a watcher: the Handle to run, or eddy.run's main task. */
enum { S_VALUE = 1, S_NUV = S_VALUE };

typedef struct {
  eddy_UVObject uv;           /* first: owns the uv_signal_t */
  int signum;
  unsigned char interrupt;    /* eddy.run's Ctrl-C watcher (see below) */
} SignalWatcher;

/* {====================================================== Signal numbers */

typedef struct { const char *name; int signum; } SignalName;

/* What Linux has, as Python's signal module on Linux (SIGRTMIN and
** SIGRTMAX are not constants: see push_module). */
static const SignalName names[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT},
  {"SIGILL", SIGILL}, {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
  {"SIGIOT", SIGIOT}, {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE},
  {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},
  {"SIGUSR2", SIGUSR2}, {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},
  {"SIGTERM", SIGTERM}, {"SIGSTKFLT", SIGSTKFLT}, {"SIGCHLD", SIGCHLD},
  {"SIGCLD", SIGCLD},
  {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP},
  {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG},
  {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ}, {"SIGVTALRM", SIGVTALRM},
  {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
  {"SIGPOLL", SIGPOLL}, {"SIGPWR", SIGPWR}, {"SIGSYS", SIGSYS},
  {NULL, 0}
};

/* The number of a signal name, or 0. */
static int signum_of(const char *name) {
  const SignalName *n;
  if (strcmp(name, "SIGRTMIN") == 0) return SIGRTMIN;
  if (strcmp(name, "SIGRTMAX") == 0) return SIGRTMAX;
  for (n = names; n->name != NULL; n++)
    if (strcmp(name, n->name) == 0) return n->signum;
  return 0;
}

/* Python's signal.valid_signals(): what sigfillset fills (the C library
** keeps a few real-time signals for itself). */
static int is_valid(lua_Integer sig) {
  sigset_t all;
  sigfillset(&all);
  return sig >= 1 && sig < NSIG && sigismember(&all, (int)sig) == 1;
}

/* The signal at argument i: a number or a name.  Wrong types raise an
** argument error, unknown signals ValueError.  'zero': 0 is allowed (kill's
** "check the process exists"). */
static int checksignal(lua_State *L, int i, int zero) {
  lua_Integer sig;
  if (lua_type(L, i) == LUA_TSTRING) {
    const char *name = lua_tostring(L, i);
    /* "SIGINT\0x" is no name, not SIGINT */
    int n = strlen(name) == lua_rawlen(L, i) ? signum_of(name) : 0;
    if (n == 0) eddy__error(L, "ValueError", "unknown signal name '%s'", name);
    return n;
  }
  if (lua_type(L, i) != LUA_TNUMBER)
    luaL_typeerror(L, i, "signal number or name");
  sig = luaL_checkinteger(L, i);
  if (!(zero && sig == 0) && !is_valid(sig))
    eddy__error(L, "ValueError", "invalid signal number %I", sig);
  return (int)sig;
}

int eddy__checksignal(lua_State *L, int i) {
  return checksignal(L, i, 1);  /* a signal to send: 0 as os.kill's */
}

/* }====================================================== */

/* {====================================================== Watchers */

/* Push the loop's map signal -> watcher (created on first use). */
static void push_map(lua_State *L, eddy_Loop *loop) {
  eddy__pushfieldtable(L, loop, "signal_handlers", NULL);
}

/* Push the open watcher of 'sig' on the loop (or nil); returns it or NULL. */
static SignalWatcher *push_watcher(lua_State *L, eddy_Loop *loop, int sig) {
  SignalWatcher *w;
  push_map(L, loop);
  lua_rawgeti(L, -1, sig);
  lua_remove(L, -2);
  w = (SignalWatcher *)lua_touserdata(L, -1);
  if (w != NULL && (w->uv.handle == NULL || w->uv.closing)) {
    lua_pop(L, 1);  /* closed by loop:close(): as if absent */
    lua_pushnil(L);
    return NULL;
  }
  return w;
}

/* Forget the Handle of the watcher at index wi.  Not cancelled: as
** asyncio's add_signal_handler (replacing) and remove_signal_handler, a
** signal already read, its Handle on the ready queue, still runs it. */
static void forget_handle(lua_State *L, int wi) {
  lua_pushnil(L);
  lua_setiuservalue(L, wi, S_VALUE);
}

/* The loop closed the watcher: its Handle cannot run any more. */
static void watcher_closed(lua_State *L, eddy_UVObject *o, int self) {
  if (((SignalWatcher *)o)->interrupt) return;
  if (lua_getiuservalue(L, self, S_VALUE) == LUA_TUSERDATA)
    eddy__handle_cancel(L, lua_gettop(L));
  lua_pop(L, 1);
  forget_handle(L, self);
}

/*
** Close a user handler's watcher.  Closing the last watcher of a signal
** makes libuv put back its default action, as asyncio's
** remove_signal_handler does -- but SIGPIPE's default would let the next
** write to a reset peer kill the process, which eddy's streams rule out
** (eddy__open_stream ignores it): SIGPIPE goes back to ignored.
*/
static void close_watcher(lua_State *L, SignalWatcher *w) {
  int sig = w->signum;
  eddy__uv_close(L, &w->uv);
  if (sig == SIGPIPE) eddy__ignore_sigpipe();
}

/* before_close of a user handler's watcher: loop:close() closes it. */
static void watcher_before_close(lua_State *L, eddy_UVObject *o, int self) {
  (void)self;
  close_watcher(L, (SignalWatcher *)o);
}

/* A user handler's signal arrived: run its Handle from the ready queue. */
static void signal_cb(uv_signal_t *h, int signum) {
  SignalWatcher *w = (SignalWatcher *)h->data;
  lua_State *L = w->uv.loop->rt->L;
  (void)signum;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->uv.self_ref);
  if (lua_getiuservalue(L, -1, S_VALUE) == LUA_TUSERDATA)
    eddy__ready_push(L, w->uv.loop, -1);
  lua_pop(L, 2);
}

/* Push a new watcher of 'sig' and open its (unstarted) uv_signal_t;
** raises on failure. */
static SignalWatcher *new_watcher(lua_State *L, eddy_Loop *loop, int sig) {
  SignalWatcher *w;
  uv_handle_t *h;
  int err;
  w = (SignalWatcher *)lua_newuserdatauv(L, sizeof *w, S_NUV);
  eddy__uv_init(&w->uv);
  luaL_setmetatable(L, SIGWATCHER);
  w->signum = sig;
  w->interrupt = 0;
  w->uv.on_closed = watcher_closed;
  h = eddy__uv_open(L, &w->uv, -1, loop, sizeof(uv_signal_t));
  err = uv_signal_init(loop->uv, (uv_signal_t *)h);
  if (err < 0) {
    eddy__uv_abandon(L, &w->uv);
    eddy__uverror(L, err, NULL);
  }
  return w;
}

/* Start the watcher with 'cb', unreferenced; on failure close it and
** return the libuv error. */
static int start_watcher(lua_State *L, SignalWatcher *w, uv_signal_cb cb) {
  uv_signal_t *h = (uv_signal_t *)w->uv.handle;
  int err = uv_signal_start(h, cb, w->signum);
  if (err < 0) {
    eddy__uv_close(L, &w->uv);
    return err;
  }
  uv_unref((uv_handle_t *)h);
  return 0;
}

/* }====================================================== */

/* {====================================================== Loop methods */

/* loop:add_signal_handler(sig, cb, ...): cb(...) runs in the loop whenever
** sig arrives; replaces the loop's previous handler of sig.
** The signal is checked before the loop, as asyncio's _check_signal comes
** before _check_closed: an invalid one is a ValueError on a closed loop
** too. */
static int l_add_signal_handler(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  int sig = checksignal(L, 2, 0);
  int hi, wi;
  SignalWatcher *w;
  eddy__checkcallable(L, 3);
  eddy__check_open(L, loop);
  eddy__handle_new(L, loop, lua_gettop(L) - 3, 0);
  hi = lua_gettop(L);
  w = push_watcher(L, loop, sig);
  wi = hi + 1;
  if (w == NULL) {
    int err;
    lua_pop(L, 1);
    w = new_watcher(L, loop, sig);
    w->uv.before_close = watcher_before_close;
    err = start_watcher(L, w, signal_cb);
    if (err == UV_EINVAL)
      eddy__error(L, "RuntimeError", "sig %d cannot be caught", sig);
    if (err < 0) eddy__uverror(L, err, NULL);
    push_map(L, loop);
    lua_pushvalue(L, wi);
    lua_rawseti(L, -2, sig);
    lua_pop(L, 1);
  }
  forget_handle(L, wi);
  lua_pushvalue(L, hi);
  lua_setiuservalue(L, wi, S_VALUE);
  return 0;
}

/* loop:remove_signal_handler(sig) -> whether the loop had a handler. */
static int l_remove_signal_handler(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  int sig = checksignal(L, 2, 0);
  int wi = lua_gettop(L) + 1;
  SignalWatcher *w;
  if (loop->state == EDDY_LOOP_CLOSED) {
    lua_pushboolean(L, 0);
    return 1;
  }
  w = push_watcher(L, loop, sig);
  if (w == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  push_map(L, loop);
  lua_pushnil(L);
  lua_rawseti(L, -2, sig);
  lua_pop(L, 1);
  forget_handle(L, wi);
  close_watcher(L, w);  /* stops it: libuv may restore SIG_DFL */
  lua_pushboolean(L, 1);
  return 1;
}

/* }====================================================== */

/* {====================================================== Ctrl-C in eddy.run */

/*
** While eddy.run runs its main task on the main thread, SIGINT cancels
** that task (asyncio.Runner._on_sigint); eddy.run then raises
** KeyboardInterrupt (lua/eddy/runners.lua).  It is installed only when
** SIGINT has its ordinary action: not while another uv_signal_t watches
** it anywhere in the process (the REPL's, a handler of another loop),
** which asyncio checks as "SIGINT has default_int_handler".  A handler
** the loop itself gets later (add_signal_handler) takes Ctrl-C over.
**
** A Ctrl-C the loop cannot see (a task busy in a loop that never
** suspends) must still end the process.  So the process action is a
** wrapper around libuv's: it forwards a SIGINT to libuv unless one is
** still undelivered or the main task was already cancelled; then it puts
** the action from before eddy.run back (lua.c's, or the default) and
** delivers the signal to it.  Signal actions are process-wide, hence the
** statics; only the main thread ever sets them.
*/
static struct {
  SignalWatcher *owner;             /* the running eddy.run's, or NULL */
  struct sigaction before;          /* SIGINT's action before it */
  struct sigaction uv;              /* libuv's action, forwarded to */
  volatile sig_atomic_t pending;    /* forwarded, not delivered yet */
  volatile sig_atomic_t cancelled;  /* the main task was cancelled */
} interrupt;

static void interrupt_action(int sig) {
  if (interrupt.pending || interrupt.cancelled) {
    int saved = errno;
    sigaction(sig, &interrupt.before, NULL);
    raise(sig);  /* delivered to that action when this one returns */
    errno = saved;
    return;
  }
  interrupt.pending = 1;
  interrupt.uv.sa_handler(sig);
}

static void interrupt_cb(uv_signal_t *h, int signum) {
  SignalWatcher *w = (SignalWatcher *)h->data;
  eddy_Loop *loop = w->uv.loop;
  lua_State *L = loop->rt->L;
  int top = lua_gettop(L);
  (void)signum;
  interrupt.pending = 0;
  if (push_watcher(L, loop, SIGINT) == NULL && !interrupt.cancelled) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->uv.self_ref);
    lua_getiuservalue(L, -1, S_VALUE);  /* the main task */
    lua_getfield(L, -1, "cancel");
    lua_insert(L, -2);
    /* Only a cancellation that took counts.  The signal reaches the loop
    ** a little after it came: a main task that ended meanwhile (say by a
    ** cancellation of its own) keeps its outcome, where asyncio's
    ** handler, which runs at once, would have added to its cancel count
    ** (test_interrupt_cancelled_task). */
    if (eddy__pcall(L, loop, 1, 1, "exception in eddy.run's SIGINT handler")
            == LUA_OK && lua_toboolean(L, -1))
      interrupt.cancelled = 1;
  }
  lua_settop(L, top);
}

/* Stop eddy.run's watcher and put back the SIGINT action from before,
** unless another watcher still needs libuv's.  Returns whether a Ctrl-C
** cancelled the main task. */
static int interrupt_release(lua_State *L, SignalWatcher *w) {
  struct sigaction cur;
  if (interrupt.owner != w) return 0;
  interrupt.owner = NULL;
  eddy__uv_close(L, &w->uv);  /* libuv restores SIG_DFL if it was the last */
  sigaction(SIGINT, NULL, &cur);
  if (cur.sa_handler == interrupt_action)
    sigaction(SIGINT, &interrupt.uv, NULL);
  else if (cur.sa_handler == SIG_DFL)
    sigaction(SIGINT, &interrupt.before, NULL);
  return interrupt.cancelled;
}

static void interrupt_before_close(lua_State *L, eddy_UVObject *o,
                                   int self) {
  (void)self;
  interrupt_release(L, (SignalWatcher *)o);
}

static int on_main_thread(void) {
  return syscall(SYS_gettid) == getpid();
}

/* loop:_catch_interrupt(task) -> whether SIGINT now cancels the task. */
static int l_catch_interrupt(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  SignalWatcher *w;
  struct sigaction before, uv;
  luaL_argexpected(L, eddy__totask(L, 2) != NULL, 2, "Task");
  if (interrupt.owner != NULL || !on_main_thread()) {
    lua_pushboolean(L, 0);
    return 1;
  }
  sigaction(SIGINT, NULL, &before);
  if (before.sa_handler == SIG_IGN) {  /* as Python leaves it ignored */
    lua_pushboolean(L, 0);
    return 1;
  }
  w = new_watcher(L, loop, SIGINT);
  w->interrupt = 1;
  w->uv.before_close = interrupt_before_close;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, S_VALUE);
  if (start_watcher(L, w, interrupt_cb) < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  sigaction(SIGINT, NULL, &uv);
  if (uv.sa_handler == before.sa_handler) {
    /* libuv's action was there already: SIGINT is watched elsewhere. */
    eddy__uv_close(L, &w->uv);
    lua_pushboolean(L, 0);
    return 1;
  }
  interrupt.owner = w;
  interrupt.before = before;
  interrupt.uv = uv;
  interrupt.pending = 0;
  interrupt.cancelled = 0;
  uv.sa_handler = interrupt_action;
  sigaction(SIGINT, &uv, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* loop:_release_interrupt() -> whether a Ctrl-C cancelled the main task. */
static int l_release_interrupt(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  SignalWatcher *w = interrupt.owner;
  lua_pushboolean(L, w != NULL && w->uv.loop == loop &&
                     interrupt_release(L, w));
  return 1;
}

/* }====================================================== */

/* {====================================================== eddy.signal */

/* eddy.signal.kill(pid, sig): send sig (a number, a name, or 0) to a
** process (Python's os.kill).  A pid past an int is refused, as Python's
** OverflowError: cut to an int, 2^32 - 1 would be -1, every process. */
static int s_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  int sig = checksignal(L, 2, 1);
  int err;
  if (pid < INT_MIN || pid > INT_MAX)
    return eddy__error(L, "ValueError", "pid out of range");
  err = uv_kill((int)pid, sig);
  if (err < 0) eddy__uverror(L, err, "kill");
  return 0;
}

/* eddy.signal.getpid() -> the process id (Python's os.getpid). */
static int s_getpid(lua_State *L) {
  lua_pushinteger(L, uv_os_getpid());
  return 1;
}

/* Push the eddy.signal table: numbers by name, NSIG, kill, getpid. */
static void push_module(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"kill", s_kill},
    {"getpid", s_getpid},
    {NULL, NULL}
  };
  const SignalName *n;
  luaL_newlib(L, funcs);
  for (n = names; n->name != NULL; n++) {
    lua_pushinteger(L, n->signum);
    lua_setfield(L, -2, n->name);
  }
  lua_pushinteger(L, SIGRTMIN);
  lua_setfield(L, -2, "SIGRTMIN");
  lua_pushinteger(L, SIGRTMAX);
  lua_setfield(L, -2, "SIGRTMAX");
  lua_pushinteger(L, NSIG);
  lua_setfield(L, -2, "NSIG");
}

/* }====================================================== */

/* __gc: only reached once the handle is closed, or at lua_close. */
static int watcher_gc(lua_State *L) {
  SignalWatcher *w = (SignalWatcher *)lua_touserdata(L, 1);
  if (w->interrupt) interrupt_release(L, w);
  eddy__uv_gc(L, &w->uv, "signal handler");
  return 0;
}

static const luaL_Reg signal_methods[] = {
  {"add_signal_handler", l_add_signal_handler},
  {"remove_signal_handler", l_remove_signal_handler},
  {"_catch_interrupt", l_catch_interrupt},
  {"_release_interrupt", l_release_interrupt},
  {NULL, NULL}
};

/* Add the signal methods to the Loop class of the core table at the top,
** and the eddy.signal table as its field 'signal'. */
void eddy__open_signal(lua_State *L) {
  luaL_newmetatable(L, SIGWATCHER);
  lua_pushcfunction(L, watcher_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, signal_methods, 0);
  lua_pop(L, 1);
  push_module(L);
  lua_setfield(L, -2, "signal");
}
