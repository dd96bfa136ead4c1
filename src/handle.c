/*
** handle.c -- the lifetime of libuv handles owned by Lua objects
** (transports, servers, fd watchers, signal handlers, processes).
**
** The rules (DESIGN.md, "Handle lifetime"):
**  - The userdata starts with an eddy_UVObject and points to a separately
**    malloc'ed libuv handle, freed only in the close callback: libuv may
**    touch it until then.
**  - Objects are created closed (handle == NULL) and opened only after the
**    uv_*_init call succeeded.
**  - While the handle is open or closing, the userdata is anchored in the
**    registry (self_ref), so it cannot be collected under libuv's feet;
**    the close callback drops the anchor.  An object may release its
**    anchor while libuv has nothing to call it back for (no read, no
**    request): eddy__uv_anchor.
**  - Every open object is on its loop's list, so loop:close() can close
**    whatever is left and wait for the close callbacks.
**  - __gc of an object whose handle is still open (only possible at
**    lua_close) detaches it, closes it, and warns in debug mode.
**  - The loop counts handles opened and freed: specs assert they balance.
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void eddy__uv_init(eddy_UVObject *o) {
  memset(o, 0, sizeof *o);
  o->self_ref = LUA_NOREF;
}

uv_handle_t *eddy__uv_open(lua_State *L, eddy_UVObject *o, int idx,
                           eddy_Loop *loop, size_t handle_size) {
  uv_handle_t *h;
  int ref;
  lua_pushvalue(L, idx);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* first: it may raise (memory) */
  if ((h = (uv_handle_t *)calloc(1, handle_size)) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "not enough memory");
    return NULL;
  }
  h->data = o;
  o->handle = h;
  o->loop = loop;
  o->closing = 0;
  o->self_ref = ref;
  /* link into the loop's list of open objects */
  o->prev = NULL;
  o->next = loop->uvobjects;
  if (loop->uvobjects) loop->uvobjects->prev = o;
  loop->uvobjects = o;
  eddy__handle_opened(loop);
  return h;
}

static void unlink_object(eddy_UVObject *o) {
  eddy_Loop *loop = o->loop;
  if (o->prev) o->prev->next = o->next;
  else if (loop->uvobjects == o) loop->uvobjects = o->next;
  if (o->next) o->next->prev = o->prev;
  o->next = o->prev = NULL;
}

/* The uv_*_init call failed: the handle was never live in libuv. */
void eddy__uv_abandon(lua_State *L, eddy_UVObject *o) {
  if (o->handle == NULL) return;
  unlink_object(o);
  free(o->handle);
  o->handle = NULL;
  eddy__handle_freed(o->loop);
  luaL_unref(L, LUA_REGISTRYINDEX, o->self_ref);
  o->self_ref = LUA_NOREF;
}

/*
** An object with no read and no request outstanding gets no callback from
** libuv, so it need not be anchored: like asyncio's transports, which the
** selector references only while they read, it is then collected once its
** user drops it, and its __gc closes the handle.  Released, it is found
** through a weak-valued table of its loop keyed by its address
** (eddy__uv_push).
*/
static void push_released(lua_State *L, eddy_UVObject *o) {
  eddy__pushfieldtable(L, o->loop, "released", "v");
}

void eddy__uv_anchor(lua_State *L, eddy_UVObject *o, int idx, int anchored) {
  if (o->handle == NULL || (o->self_ref != LUA_NOREF) == anchored) return;
  idx = lua_absindex(L, idx);
  push_released(L, o);
  if (anchored) {
    lua_pushvalue(L, idx);
    o->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushnil(L);
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, o->self_ref);
    o->self_ref = LUA_NOREF;
    lua_pushvalue(L, idx);
  }
  lua_rawsetp(L, -2, o);
  lua_pop(L, 1);
}

void eddy__uv_push(lua_State *L, eddy_UVObject *o) {
  if (o->self_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->self_ref);
    return;
  }
  push_released(L, o);
  lua_rawgetp(L, -1, o);
  lua_remove(L, -2);
}

/* (o, closed): o's on_closed hook (closed) or its before_close, unless o
** is released and being finalized. */
static int call_hook(lua_State *L) {
  eddy_UVObject *o = (eddy_UVObject *)lua_touserdata(L, 1);
  int closed = lua_toboolean(L, 2);
  eddy__uv_push(L, o);
  if (lua_isnil(L, -1)) return 0;
  if (closed) o->on_closed(L, o, 3);
  else o->before_close(L, o, 3);
  return 0;
}

/* Run a hook of o, protected: it calls into Lua, and an error there (an
** allocation failure) must neither unwind through libuv nor stop a close
** half-way; it goes to the exception handler. */
static void run_hook(lua_State *L, eddy_UVObject *o, int closed) {
  eddy_Loop *loop = o->loop;
  int top = lua_gettop(L);
  lua_pushcfunction(L, call_hook);
  lua_pushlightuserdata(L, o);
  lua_pushboolean(L, closed);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK)
    eddy__report_error(L, loop, closed ? "Exception in a close callback"
                                       : "Exception while closing the loop");
  lua_settop(L, top);
}

static void close_cb(uv_handle_t *h) {
  eddy_UVObject *o = (eddy_UVObject *)h->data;
  free(h);
  if (o == NULL) return;  /* detached by __gc: nothing else to do */
  {
    eddy_Loop *loop = o->loop;
    lua_State *L = loop->rt->L;
    o->handle = NULL;
    eddy__handle_freed(loop);
    if (o->closing) loop->nclosing--;
    if (o->on_closed != NULL) run_hook(L, o, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, o->self_ref);
    o->self_ref = LUA_NOREF;
  }
}

int eddy__uv_close(lua_State *L, eddy_UVObject *o) {
  (void)L;
  if (o->handle == NULL || o->closing) return 0;
  o->closing = 1;
  o->loop->nclosing++;
  unlink_object(o);
  uv_close(o->handle, close_cb);
  return 1;
}

void eddy__uv_close_all(lua_State *L, eddy_Loop *loop) {
  while (loop->uvobjects != NULL) {
    eddy_UVObject *o = loop->uvobjects;
    if (o->before_close != NULL) run_hook(L, o, 0);
    if (loop->uvobjects == o) eddy__uv_close(L, o);  /* if the hook did not */
  }
}

void eddy__uv_gc(lua_State *L, eddy_UVObject *o, const char *what) {
  if (o->handle == NULL) return;
  if (o->closing) {
    o->loop->nclosing--;
    o->handle->data = NULL;  /* the close callback frees the handle */
  } else {
    unlink_object(o);
    o->handle->data = NULL;
    uv_close(o->handle, close_cb);
  }
  eddy__handle_freed(o->loop);  /* freed as far as this object goes */
  if (o->loop->debug) {
    char msg[128];
    snprintf(msg, sizeof msg, "eddy: unclosed %s %p", what, (void *)o);
    lua_warning(L, msg, 0);
  }
  o->handle = NULL;
}

void *eddy__uv_check(lua_State *L, int idx, const char *mt, const char *what) {
  eddy_UVObject *o = (eddy_UVObject *)luaL_checkudata(L, idx, mt);
  if (o->handle == NULL || o->closing)
    luaL_error(L, "attempt to use a closed %s", what);
  return o;
}

/* {====================================================== Calling Lua */

int eddy__pcall(lua_State *L, eddy_Loop *loop, int nargs, int nresults,
                const char *message) {
  eddy_Runtime *rt = loop->rt;
  eddy_Loop *prev = rt->running;
  int base = lua_gettop(L) - nargs;  /* the function */
  int status;
  eddy_IoContext ctx;
  lua_pushcfunction(L, eddy__traceback);
  lua_insert(L, base);
  eddy__loop_before_io(L, loop);
  eddy__io_context_enter(L, loop, 0, &ctx);
  if (prev == NULL) rt->running = loop;
  status = lua_pcall(L, nargs, nresults, base);
  rt->running = prev;
  if (eddy__io_context_leave(L, loop, &ctx)) lua_pop(L, 1);  /* dropped */
  lua_remove(L, base);
  if (status != LUA_OK) eddy__report_error(L, loop, message);
  return status;
}

/* }====================================================== */
