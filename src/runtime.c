/*
** runtime.c -- binds a lua_State to eddy: the runtime record, the embedded
** Lua modules, luaopen_eddy and the public embedding API of eddy.h.
*/
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

const char eddy__key_runtime = 0;
const char eddy__key_errors = 0;
const char eddy__key_await_tag = 0;
const char eddy__key_context_copy = 0;
const char eddy__key_future = 0;
const char eddy__key_loops = 0;

struct eddy_State {
  lua_State *L;
  eddy_Runtime *rt;
  eddy_Inbox inbox;     /* eddy_call_soon_threadsafe's queue */
  char *errmsg;
  int depth;            /* eddy_dostring, _dofile and _run calls under way */
  int close_requested;  /* eddy_close was called inside one of them */
};

/* {====================================================== Runtime record */

eddy_Runtime *eddy__runtime(lua_State *L) {
  eddy_Runtime *rt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_runtime);
  rt = (eddy_Runtime *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (rt == NULL) luaL_error(L, "eddy is not loaded in this Lua state");
  return rt;
}

/*
** Every read of a state lands in one buffer, then becomes a Lua string:
** stream reads (stream.c) and datagrams (udp.c) alike.  Every callback of
** a state runs on its main thread, and nothing keeps a pointer into the
** buffer past the copy.  It lives in a userdata the registry anchors, so
** it outlives every finalizer that might still close a handle; the
** offset within a cache line that stream.c asks of it is in the slack.
*/
#define READ_BUF_SLACK 64

char *eddy__read_buffer(lua_State *L, eddy_Runtime *rt, size_t size) {
  static const char read_buf_key = 'r';
  uintptr_t p;
  if (rt->read_buf != NULL && rt->read_buf_size >= size) return rt->read_buf;
  p = (uintptr_t)lua_newuserdatauv(L, size + 2 * READ_BUF_SLACK, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &read_buf_key);  /* drops the old one */
  p = (p + READ_BUF_SLACK - 1) & ~(uintptr_t)(READ_BUF_SLACK - 1);
  rt->read_buf = (char *)p;
  rt->read_buf_size = size;
  return rt->read_buf;
}

/*
** The runtime dies with the Lua state: its __gc closes the current loop so
** libuv releases everything before the state goes.  Loops not closed by
** then are closed by their own __gc.
*/
static int runtime_gc(lua_State *L) {
  eddy_Runtime *rt = (eddy_Runtime *)lua_touserdata(L, 1);
  rt->running = NULL;
  rt->current_task = NULL;
  return 0;
}

/* Push the chunk of embedded module 'name' ("eddy.x"). */
static void load_source(lua_State *L, const char *name) {
  const eddy_Source *s;
  for (s = eddy__sources; s->name != NULL; s++) {
    if (strcmp(s->name, name) == 0) {
      char chunkname[128];
      snprintf(chunkname, sizeof chunkname, "@eddy/%s.lua", s->name + 5);
      if (luaL_loadbuffer(L, s->source, s->size, chunkname) != LUA_OK)
        lua_error(L);
      return;
    }
  }
  luaL_error(L, "no embedded module '%s'", name);
}

/* package.preload loader of the embedded modules: (name) -> module */
static int load_embedded(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  load_source(L, name);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  return 1;
}

/* package.preload[name] = load_embedded for every embedded module, and
** the openers of the C parts that have module names of their own. */
static void register_embedded(lua_State *L) {
  const eddy_Source *s;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (s = eddy__sources; s->name != NULL; s++) {
    lua_pushcfunction(L, load_embedded);
    lua_setfield(L, -2, s->name);
  }
  lua_pushcfunction(L, luaopen_eddy_socket);
  lua_setfield(L, -2, "eddy.socket");
  lua_pushcfunction(L, luaopen_eddy_signal);
  lua_setfield(L, -2, "eddy.signal");
  lua_pop(L, 1);
}

void eddy__attach(lua_State *L, uv_loop_t *uv) {
  eddy_Runtime *rt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_runtime);
  if (!lua_isnil(L, -1)) {  /* already attached */
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  eddy__fds_init();
  rt = (eddy_Runtime *)lua_newuserdatauv(L, sizeof(eddy_Runtime), 0);
  memset(rt, 0, sizeof *rt);
  /* the main thread, whatever thread opened us */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  rt->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  rt->default_loop_ref = LUA_NOREF;
  rt->context_ref = LUA_NOREF;
  rt->host_uv = uv;
  lua_newtable(L);
  lua_pushcfunction(L, runtime_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &eddy__key_runtime);
  register_embedded(L);
  eddy__open_errors(L);
  eddy__open_callbacks(L);
  eddy__open_future(L);
  eddy__open_task(L);
  eddy__open_coro(L);
  eddy__open_require(L);
}

/* }====================================================== */

/* {====================================================== luaopen_eddy */

/* eddy.socket and eddy.signal are fields of the module, which init.lua
** also stores in package.loaded; required first, they load eddy. */
static int open_part(lua_State *L, const char *field) {
  luaL_requiref(L, "eddy", luaopen_eddy, 0);
  lua_getfield(L, -1, field);
  return 1;
}

int luaopen_eddy_socket(lua_State *L) { return open_part(L, "socket"); }

int luaopen_eddy_signal(lua_State *L) { return open_part(L, "signal"); }

int luaopen_eddy(lua_State *L) {
  eddy__attach(L, NULL);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "eddy");
  if (lua_istable(L, -1)) return 1;  /* already loaded */
  lua_pop(L, 1);
  /* eddy.init receives the C core table and returns the module. */
  eddy__open_core(L);
  load_source(L, "eddy.init");
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}

/* }====================================================== */

/* {====================================================== Embedding API */

/*
** (error) -> the message for the host: its tostring, followed by the
** traceback an error object keeps in a field (the message handler, or the
** task it was raised in, put it there), as the executable prints it
** (API.md 12).  Protected: a __tostring or an __index may raise.
*/
static int format_error(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  if (lua_type(L, 1) == LUA_TTABLE &&
      lua_getfield(L, 1, "traceback") == LUA_TSTRING)
    lua_pushfstring(L, "%s\n%s", msg, lua_tostring(L, -1));
  else
    lua_settop(L, 2);
  return 1;
}

static int state_error(eddy_State *E, int status) {
  lua_State *L = E->L;
  free(E->errmsg);
  E->errmsg = NULL;
  if (status == LUA_OK) return 0;
  {
    int err = lua_gettop(L);
    char fallback[64];
    lua_pushcfunction(L, format_error);
    lua_pushvalue(L, err);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      E->errmsg = strdup(lua_tostring(L, -1));
    } else {  /* no Lua allocation: the failure may be out of memory */
      snprintf(fallback, sizeof fallback, "(error object is a %s value)",
               luaL_typename(L, err));
      E->errmsg = strdup(fallback);
    }
    lua_settop(L, err - 1);
  }
  return status;
}

void eddy__copy_context(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_context_copy);
  lua_insert(L, -2);
  if (lua_isfunction(L, -2)) lua_call(L, 1, 1);
  else lua_remove(L, -2);  /* no copy function: share it */
}

void eddy__push_context_copy(lua_State *L, eddy_Runtime *rt) {
  if (rt->context_ref == LUA_NOREF) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
  eddy__copy_context(L);
}

int eddy__keep_context(lua_State *L, eddy_Runtime *rt) {
  if (rt->context_ref == LUA_NOREF) return 0;
  eddy__push_context_copy(L, rt);
  return 1;
}

/*
** States eddy creates use Lua's generational collector, as lua.c's do: a
** loop makes many short-lived objects (handles, futures), which it
** collects far more cheaply than the incremental mode.  The multipliers
** are larger than Lua's defaults (20 and 100): a minor collection after
** the heap grew by 100%, a major one after 500%.  Data that waits in a
** task for a turn or two (a stream's last chunk) is otherwise promoted and
** only freed by full collections, which made a streams echo server spend
** a third of its time collecting.  Every minor collection traverses
** every coroutine (Lua keeps threads gray), so a larger minor multiplier
** is cheaper with a task per connection (200: ~2% fewer instructions per
** 16 KiB streams echo), but with connections or loops coming and going
** it let the heap grow to 6-7 times what 100 keeps (12,000 streams
** connections one after another: a 16 MB peak against 2.2 MB;
** spec/soak_spec.lua, docs/performance.md).  A host that loads eddy with
** require keeps its own choice.
*/
#define EDDY_GC_MINORMUL 100
#define EDDY_GC_MAJORMUL 500

void eddy__tune_gc(lua_State *L) {
  lua_gc(L, LUA_GCGEN, EDDY_GC_MINORMUL, EDDY_GC_MAJORMUL);
}

static int open_in_state(lua_State *L) {
  uv_loop_t *uv = (uv_loop_t *)lua_touserdata(L, 1);
  eddy_State *E = (eddy_State *)lua_touserdata(L, 2);
  eddy__tune_gc(L);
  luaL_openlibs(L);
  eddy__set_os_exit(L, E);
  eddy__attach(L, uv);
  E->rt = eddy__runtime(L);
  E->rt->inbox = &E->inbox;
  luaL_requiref(L, "eddy", luaopen_eddy, 0);
  /* The default loop now: the host's uv loop serves the first loop. */
  eddy__getloop(L);
  return 0;
}

eddy_State *eddy_new(uv_loop_t *loop) {
  eddy_State *E = (eddy_State *)calloc(1, sizeof *E);
  if (E == NULL) return NULL;
  E->L = eddy__newstate();
  if (E->L == NULL) {
    free(E);
    return NULL;
  }
  eddy__inbox_init(&E->inbox);
  lua_pushcfunction(E->L, open_in_state);
  lua_pushlightuserdata(E->L, loop);
  lua_pushlightuserdata(E->L, E);
  if (lua_pcall(E->L, 2, 0, 0) != LUA_OK) {
    eddy__closestate(E->L);
    eddy__inbox_free(&E->inbox);
    free(E);
    return NULL;
  }
  return E;
}

/*
** Misuse a host can make is refused with a message, not a crash: a NULL
** state (eddy_new failed), a NULL pointer where one is needed, a call
** into a state that eddy_close is closing.  A state already freed is not
** detectable.
*/
static const char no_state[] = "no eddy_State (eddy_new returned NULL)";

static int host_error(eddy_State *E, const char *msg) {
  free(E->errmsg);
  E->errmsg = strdup(msg);
  return LUA_ERRRUN;
}

/* Enter a call that runs Lua code (0), or refuse it (non-zero). */
static int enter(eddy_State *E) {
  if (E == NULL) return LUA_ERRRUN;
  if (E->close_requested)
    return host_error(E, "the eddy_State is closing (eddy_close was called)");
  E->depth++;
  return 0;
}

static void close_now(eddy_State *E);

/* Leave it: the outermost call carries out an eddy_close made inside. */
static int leave(eddy_State *E, int status) {
  if (--E->depth == 0 && E->close_requested) close_now(E);
  return status;
}

lua_State *eddy_lua(eddy_State *E) { return E != NULL ? E->L : NULL; }

/* Run the chunk at the top as a main chunk, with a traceback on error. */
static int run_main_chunk(eddy_State *E) {
  lua_State *L = E->L;
  int base = lua_gettop(L);
  int status;
  lua_pushcfunction(L, eddy__traceback);
  lua_insert(L, base);
  status = lua_pcall(L, 0, 0, base);
  lua_remove(L, base);
  return state_error(E, status);
}

/* Run what luaL_load* left, given its status, as a main chunk. */
static int do_chunk(eddy_State *E, int status) {
  status = status == LUA_OK ? run_main_chunk(E) : state_error(E, status);
  return leave(E, status);
}

int eddy_dofile(eddy_State *E, const char *path) {
  if (enter(E)) return LUA_ERRRUN;
  return do_chunk(E, luaL_loadfile(E->L, path));
}

int eddy_dostring(eddy_State *E, const char *chunk, const char *chunkname) {
  if (E != NULL && chunk == NULL)
    return host_error(E, "eddy_dostring: the chunk is NULL");
  if (enter(E)) return LUA_ERRRUN;
  return do_chunk(E, luaL_loadbuffer(E->L, chunk, strlen(chunk),
                                     chunkname ? chunkname : chunk));
}

/* (mode) -> failed, what the default exception handler printed */
static int run_protected(lua_State *L) {
  uv_run_mode mode = (uv_run_mode)lua_tointeger(L, 1);
  lua_pushinteger(L, eddy__run_default(L, mode));
  eddy__push_unhandled(L);
  return 2;
}

/* Run the default loop; a run whose error nothing handled fails with
** that error's report (the message and its traceback, API.md 12), as the
** handler printed it. */
static int run_default(eddy_State *E, uv_run_mode mode) {
  lua_State *L = E->L;
  int status, failed;
  lua_pushcfunction(L, eddy__traceback);
  lua_pushcfunction(L, run_protected);
  lua_pushinteger(L, (lua_Integer)mode);
  status = lua_pcall(L, 1, 2, -3);
  if (status != LUA_OK) {
    lua_remove(L, -2);
    return state_error(E, status);
  }
  failed = (int)lua_tointeger(L, -2);
  if (!failed) {
    lua_pop(L, 3);
    return state_error(E, LUA_OK);
  }
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "an error was reported by the loop");
  }
  lua_remove(L, -2);
  lua_remove(L, -2);  /* the message handler */
  return state_error(E, LUA_ERRRUN) != 0;
}

int eddy_run(eddy_State *E, uv_run_mode mode) {
  if (E != NULL && mode != UV_RUN_DEFAULT && mode != UV_RUN_ONCE &&
      mode != UV_RUN_NOWAIT)
    return host_error(E, "eddy_run: the mode is not UV_RUN_DEFAULT, "
                         "UV_RUN_ONCE or UV_RUN_NOWAIT");
  /* From a callback: the loop runs already (and its report of an
  ** unhandled error must not be reset under it). */
  if (E != NULL && E->rt->running != NULL)
    return host_error(E, "eddy_run: a loop of this state is running "
                         "(eddy_run called from a callback)");
  if (enter(E)) return LUA_ERRRUN;
  return leave(E, run_default(E, mode));
}

int eddy_call_soon_threadsafe(eddy_State *E,
                              void (*fn)(lua_State *L, void *arg), void *arg) {
  if (E == NULL || fn == NULL) return UV_EINVAL;
  return eddy__inbox_push(&E->inbox, fn, arg);
}

const char *eddy_errmsg(eddy_State *E) {
  return E != NULL ? E->errmsg : no_state;
}

static void close_now(eddy_State *E) {
  eddy__inbox_refuse(&E->inbox);  /* before the loops close */
  eddy__closestate(E->L);  /* loops close in their __gc */
  eddy__inbox_free(&E->inbox);
  free(E->errmsg);
  free(E);
}

/*
** os.exit([code [, close]]): Lua's own, except that closing the state
** also frees what eddy made for it -- the allocator (alloc.c) and, in an
** embedding state, the eddy_State (upvalue 1; NULL for the executable)
** -- and the tasks it ends are not reported as destroyed while pending
** (the exit is meant).
*/
static int os_exit(lua_State *L) {
  eddy_State *E = (eddy_State *)lua_touserdata(L, lua_upvalueindex(1));
  int status;
  if (lua_isboolean(L, 1))
    status = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    status = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  if (lua_toboolean(L, 2)) {
    eddy__runtime(L)->exiting = 1;
    if (E != NULL) close_now(E);
    else eddy__closestate(L);
  }
  exit(status);
}

void eddy__set_os_exit(lua_State *L, eddy_State *E) {
  lua_getglobal(L, "os");
  lua_pushlightuserdata(L, E);
  lua_pushcclosure(L, os_exit, 1);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
}

/* Inside a call that runs Lua code (from a C function it called), the
** state cannot go yet: the running loop stops, and the outermost call
** closes it on its way out. */
void eddy_close(eddy_State *E) {
  if (E == NULL) return;
  if (E->depth > 0) {
    E->close_requested = 1;
    if (E->rt->running != NULL) eddy__loop_stop(E->rt->running);
    return;
  }
  close_now(E);
}

/* }====================================================== */
