/*
** callbacks.c -- asyncio's Handle and TimerHandle: a callback with its
** arguments and the context it runs in, as scheduled by call_soon,
** call_later and call_at; and the bridge from C to the exception handler.
**
** A handle is one userdata: the callback, the context and the arguments
** live in its user values, so scheduling allocates exactly one object.
*/
#include <stdio.h>
#include <string.h>

#include "internal.h"

int eddy__iscallable(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, i, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

void eddy__checkcallable(lua_State *L, int i) {
  if (!eddy__iscallable(L, i))
    luaL_typeerror(L, i, "function");  /* API.md's wording */
}

int eddy__isoptions(lua_State *L, int i) {
  if (!lua_istable(L, i)) return 0;
  if (!lua_getmetatable(L, i)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* A table with a metatable is an object, never options (API.md §1): the
** error says so when the metatable has no __name to say what it is. */
void eddy__checkoptions(lua_State *L, int i, const char *const allowed[]) {
  if (!eddy__isoptions(L, i)) {
    if (lua_istable(L, i) && luaL_getmetafield(L, i, "__name") != LUA_TSTRING)
      luaL_argerror(L, i, "options table expected, got table with a metatable");
    luaL_typeerror(L, i, "options table");
  }
  lua_pushnil(L);
  while (lua_next(L, i)) {
    int n = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      while (allowed[n] != NULL && strcmp(lua_tostring(L, -1), allowed[n]) != 0)
        n++;
    if (lua_type(L, -1) != LUA_TSTRING || allowed[n] == NULL)
      luaL_argerror(L, i, lua_pushfstring(L, "unknown option '%s'",
                                          luaL_tolstring(L, -1, NULL)));
  }
}

/* Build a handle of 'size' bytes around the callback and arguments at the
** top; see eddy__handle_new. */
static eddy_Handle *handle_build(lua_State *L, eddy_Loop *loop, int nargs,
                                 int ctxidx, size_t size, int mtref) {
  eddy_Runtime *rt = loop->rt;
  int base = lua_gettop(L) - nargs;  /* index of the callback */
  int has_ctx, i;
  eddy_Handle *h;
  if (ctxidx != 0) {
    ctxidx = lua_absindex(L, ctxidx);
    has_ctx = !lua_isnil(L, ctxidx);
  } else {
    has_ctx = rt->context_ref != LUA_NOREF;
  }
  h = (eddy_Handle *)lua_newuserdatauv(L, size,
                                       1 + nargs + has_ctx + loop->debug);
  h->kind = EDDY_KIND_HANDLE;
  h->cancelled = 0;
  h->is_timer = mtref == rt->mt_timer_ref;
  h->has_ctx = (unsigned char)has_ctx;
  h->sock_wait = 0;
  h->has_tb = (unsigned char)loop->debug;
  h->nargs = nargs;
  h->loop = loop;
  lua_rawgeti(L, LUA_REGISTRYINDEX, mtref);
  lua_setmetatable(L, -2);
  if (has_ctx) {
    /* asyncio runs a callback in a copy of the context it was scheduled in */
    if (ctxidx != 0) lua_pushvalue(L, ctxidx);
    else eddy__push_context_copy(L, rt);
    lua_setiuservalue(L, -2, HANDLE_UV_ARG(nargs));
  }
  if (h->has_tb) {
    /* asyncio's Handle._source_traceback, for the exception handler */
    luaL_traceback(L, L, NULL, 1);
    lua_setiuservalue(L, -2, HANDLE_UV_ARG(nargs + has_ctx));
  }
  lua_insert(L, base);  /* handle below its callback and arguments */
  for (i = nargs; i >= 1; i--) lua_setiuservalue(L, base, HANDLE_UV_ARG(i - 1));
  lua_setiuservalue(L, base, HANDLE_UV_CB);
  return h;
}

eddy_Handle *eddy__handle_new(lua_State *L, eddy_Loop *loop, int nargs,
                              int ctxidx) {
  return handle_build(L, loop, nargs, ctxidx, sizeof(eddy_Handle),
                      loop->rt->mt_handle_ref);
}

eddy_TimerHandle *eddy__call_at(lua_State *L, eddy_Loop *loop, int nargs,
                                double when) {
  eddy_TimerHandle *t = (eddy_TimerHandle *)handle_build(
      L, loop, nargs, 0, sizeof(eddy_TimerHandle), loop->rt->mt_timer_ref);
  t->in_heap = 0;
  t->when = when;
  t->seq = 0;
  t->anchor = LUA_NOREF;
  eddy__timer_schedule(L, loop, t, -1);
  return t;
}

/* Describe the callback at cb for messages: "function <file:line>" for a
** Lua function, else its tostring.  Pushes exactly that string. */
static void push_callback_name(lua_State *L, int cb) {
  lua_Debug ar;
  cb = lua_absindex(L, cb);
  if (lua_isfunction(L, cb)) {
    lua_pushvalue(L, cb);
    lua_getinfo(L, ">S", &ar);  /* pops the function */
    if (ar.linedefined > 0) {
      lua_pushfstring(L, "function %s:%d", ar.short_src, ar.linedefined);
      return;
    }
  }
  luaL_tolstring(L, cb, NULL);
}

/* Warn (debug mode) about a task step, a callback or a transport's call
** of its protocol that took 'dt' seconds, asyncio's "Executing <...> took
** 0.123 seconds": 'what' is the task, the callback itself (its handle may
** have dropped it since), or the transport; 'kind' says which. */
void eddy__warn_slow(lua_State *L, eddy_Loop *loop, int what,
                     const char *kind, double dt) {
  char took[32];  /* lua_pushfstring has no precision: format here */
  if (dt < eddy__slow_callback_duration(L, loop)) return;
  if (strcmp(kind, "callback") == 0)
    push_callback_name(L, what);
  else
    luaL_tolstring(L, what, NULL);
  snprintf(took, sizeof took, "%.3f", dt);
  lua_pushfstring(L, "Executing %s %s took %s seconds", kind,
                  lua_tostring(L, -1), took);
  lua_warning(L, lua_tostring(L, -1), 0);
  lua_pop(L, 2);
}

/*
** Call the handle at index h, unprotected: run_turn calls handles inside
** one protected call per libuv turn.  A context the callback runs in is
** entered here and left by eddy__handle_leave, also after an error.
*/
void eddy__handle_call(lua_State *L, eddy_Loop *loop, eddy_Handle *h, int hidx) {
  eddy_Runtime *rt = loop->rt;
  int i;
  int debug = loop->debug;  /* the callback may change it */
  double t0 = 0;
  if (h->cancelled) return;
  if (h->has_tb) {  /* debug mode when it was scheduled */
    lua_getiuservalue(L, hidx, HANDLE_UV_ARG(h->nargs + h->has_ctx));
    loop->handle_tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* eddy__handle_leave drops it */
  }
  /* Debug mode: the callback, for the slow-callback warning, kept here
  ** since cancelling its own handle drops it (asyncio keeps the repr). */
  if (debug) lua_getiuservalue(L, hidx, HANDLE_UV_CB);
  lua_getiuservalue(L, hidx, HANDLE_UV_CB);
  for (i = 0; i < h->nargs; i++) lua_getiuservalue(L, hidx, HANDLE_UV_ARG(i));
  /* The context the callback runs in; whatever it switches to is left
  ** behind by eddy__handle_leave (a callback in the base context that sets
  ** a variable must not change the context of what runs next). */
  loop->saved_ctx = rt->context_ref;
  loop->in_ctx = 1;
  rt->context_ref = LUA_NOREF;
  if (h->has_ctx) {
    lua_getiuservalue(L, hidx, HANDLE_UV_ARG(h->nargs));
    rt->context_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (debug) t0 = eddy__time(loop);
  lua_call(L, h->nargs, 0);
  eddy__handle_leave(L, loop);
  if (debug) {
    eddy__warn_slow(L, loop, lua_gettop(L), "callback", eddy__time(loop) - t0);
    lua_pop(L, 1);
  }
}

void eddy__handle_leave(lua_State *L, eddy_Loop *loop) {
  eddy_Runtime *rt = loop->rt;
  if (loop->handle_tb_ref != LUA_NOREF) {  /* debug mode only: not per call */
    luaL_unref(L, LUA_REGISTRYINDEX, loop->handle_tb_ref);
    loop->handle_tb_ref = LUA_NOREF;
  }
  if (!loop->in_ctx) return;
  /* the context entered, or the one the callback switched to (whose
  ** switch unref'd the one entered) */
  luaL_unref(L, LUA_REGISTRYINDEX, rt->context_ref);
  rt->context_ref = loop->saved_ctx;
  loop->in_ctx = 0;
}

/* The handle at hidx raised the error at err: report it. */
void eddy__handle_report(lua_State *L, eddy_Loop *loop, int hidx, int err) {
  int top = lua_gettop(L);
  eddy_Handle *h = (eddy_Handle *)lua_touserdata(L, hidx);
  hidx = lua_absindex(L, hidx);
  err = lua_absindex(L, err);
  lua_getiuservalue(L, hidx, HANDLE_UV_CB);
  push_callback_name(L, -1);
  lua_pushfstring(L, "Exception in callback %s", lua_tostring(L, -1));
  eddy__newcontext(L, lua_tostring(L, -1), err);
  lua_pushvalue(L, hidx);
  lua_setfield(L, -2, "handle");
  if (h->has_tb) {
    lua_getiuservalue(L, hidx, HANDLE_UV_ARG(h->nargs + h->has_ctx));
    lua_setfield(L, -2, "source_traceback");
  }
  eddy__call_exception_handler(L, loop);
  lua_settop(L, top);
}

/* {====================================================== Exception handler */

void eddy__newcontext(lua_State *L, const char *message, int errindex) {
  if (errindex != 0) errindex = lua_absindex(L, errindex);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  if (errindex != 0) {
    lua_pushvalue(L, errindex);
    lua_setfield(L, -2, "exception");
  }
}

/* (loop, message, err): eddy__report_error's report, protected. */
static int report_protected(lua_State *L) {
  eddy_Loop *loop = (eddy_Loop *)lua_touserdata(L, 1);
  eddy__newcontext(L, (const char *)lua_touserdata(L, 2), 3);
  eddy__call_exception_handler(L, loop);
  return 0;
}

void eddy__report_error(lua_State *L, eddy_Loop *loop, const char *message) {
  int err = lua_gettop(L);
  lua_pushcfunction(L, report_protected);
  lua_pushlightuserdata(L, loop);
  lua_pushlightuserdata(L, (void *)message);
  lua_pushvalue(L, err);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) { /* no memory for a report */
    fprintf(stderr, "eddy: %s: %s\n", message,
            lua_type(L, err) == LUA_TSTRING ? lua_tostring(L, err)
                                            : "(an error object)");
    eddy__loop_starve(loop);
  }
  lua_settop(L, err - 1);
}

/*
** loop:call_exception_handler(context), protected: a failing handler is
** reported on stderr and never propagates into libuv.  Not after a Ctrl-C
** interrupted the run (eddy__loop_interrupt): the error is the
** interruption itself, which lua.c's hook raised in the callback running,
** and the run raises it in the main chunk, as asyncio's KeyboardInterrupt
** leaves the loop without reaching the handler.
*/
void eddy__call_exception_handler(lua_State *L, eddy_Loop *loop) {
  int top = lua_gettop(L);  /* the context */
  int status;
  if (loop->rt->interrupted) {
    lua_settop(L, top - 1);
    return;
  }
  lua_pushcfunction(L, eddy__traceback);
  eddy__pushloop(L, loop);
  if (lua_getfield(L, -1, "call_exception_handler") != LUA_TFUNCTION) {
    lua_settop(L, top - 1);
    return;
  }
  lua_insert(L, -2);        /* method, loop */
  lua_pushvalue(L, top);    /* context */
  status = lua_pcall(L, 2, 0, top + 1);
  if (status != LUA_OK)
    lua_writestringerror("eddy: exception handler failed: %s\n",
                         luaL_tolstring(L, -1, NULL));
  if (status == LUA_ERRMEM) eddy__loop_starve(loop);  /* nor for a report */
  lua_settop(L, top - 1);
}

/* }====================================================== */

/* {====================================================== Handle methods */

static eddy_Handle *checkhandle(lua_State *L, int i) {
  eddy_Handle *h = (eddy_Handle *)luaL_testudata(L, i, EDDY_HANDLE);
  if (h == NULL) h = (eddy_Handle *)luaL_checkudata(L, i, EDDY_TIMERHANDLE);
  return h;
}

void eddy__handle_cancel(lua_State *L, int i) {
  eddy_Handle *h = (eddy_Handle *)lua_touserdata(L, i);
  int k;
  i = lua_absindex(L, i);
  if (h->cancelled) return;
  h->cancelled = 1;
  for (k = 0; k <= h->nargs; k++) {  /* drop the callback and arguments */
    lua_pushnil(L);
    lua_setiuservalue(L, i, HANDLE_UV_CB + k);
  }
  if (h->is_timer && ((eddy_TimerHandle *)h)->in_heap)
    eddy__timer_cancelled(h->loop);
}

/* handle:cancel(): the callback will not run; drops its references. */
static int h_cancel(lua_State *L) {
  checkhandle(L, 1);
  eddy__handle_cancel(L, 1);
  return 0;
}

static int h_cancelled(lua_State *L) {
  lua_pushboolean(L, checkhandle(L, 1)->cancelled);
  return 1;
}

static int h_when(lua_State *L) {
  eddy_TimerHandle *t =
      (eddy_TimerHandle *)luaL_checkudata(L, 1, EDDY_TIMERHANDLE);
  lua_pushnumber(L, t->when);
  return 1;
}

/* h1 < h2, h1 <= h2: TimerHandles order by when() alone, as asyncio's
** (two of equal when() are neither <, both <=).  Equality stays Lua's
** identity: asyncio's == compares when, callback and arguments, which
** would make two distinct timers one table key's worth (docs/loop.md). */
static double timer_when(lua_State *L, int i) {
  return ((eddy_TimerHandle *)luaL_checkudata(L, i, EDDY_TIMERHANDLE))->when;
}

static int h_lt(lua_State *L) {
  lua_pushboolean(L, timer_when(L, 1) < timer_when(L, 2));
  return 1;
}

static int h_le(lua_State *L) {
  lua_pushboolean(L, timer_when(L, 1) <= timer_when(L, 2));
  return 1;
}

static int h_get_context(lua_State *L) {
  eddy_Handle *h = checkhandle(L, 1);
  if (!h->has_ctx) return 0;
  lua_getiuservalue(L, 1, HANDLE_UV_ARG(h->nargs));
  return 1;
}

/* asyncio's repr: "<Handle cb() at file.py:12>", "<TimerHandle when=5.2
** ...>"; a cancelled handle has dropped its callback, and says so
** ("<Handle cancelled>", as asyncio's outside debug mode). */
static int h_tostring(lua_State *L) {
  eddy_Handle *h = checkhandle(L, 1);
  lua_pushstring(L, h->is_timer ? "<TimerHandle" : "<Handle");
  if (h->cancelled) lua_pushliteral(L, " cancelled");
  if (h->is_timer) lua_pushfstring(L, " when=%f", ((eddy_TimerHandle *)h)->when);
  if (!h->cancelled) {
    lua_getiuservalue(L, 1, HANDLE_UV_CB);
    lua_pushliteral(L, " ");
    push_callback_name(L, -2);
    lua_remove(L, -3);
  }
  lua_pushliteral(L, ">");
  lua_concat(L, lua_gettop(L) - 1);
  return 1;
}

static const luaL_Reg handle_methods[] = {
  {"cancel", h_cancel},
  {"cancelled", h_cancelled},
  {"get_context", h_get_context},
  {NULL, NULL}
};

void eddy__open_callbacks(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  luaL_newmetatable(L, EDDY_HANDLE);
  luaL_newlib(L, handle_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, h_tostring);
  lua_setfield(L, -2, "__tostring");
  rt->mt_handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_newmetatable(L, EDDY_TIMERHANDLE);
  luaL_newlib(L, handle_methods);
  lua_pushcfunction(L, h_when);
  lua_setfield(L, -2, "when");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, h_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, h_lt);
  lua_setfield(L, -2, "__lt");
  lua_pushcfunction(L, h_le);
  lua_setfield(L, -2, "__le");
  rt->mt_timer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* }====================================================== */
