/*
** future.c -- asyncio's Future in C.
**
** State machine: PENDING -> FINISHED (result or exception) or
**                PENDING -> CANCELLED; nothing leaves a done state.
** Done callbacks run through the ready queue (call_soon), each in the
** context captured when it was added.  A Task waiting on the future is
** kept as a callback too, but waking it queues the Task itself: no Handle
** is allocated for the hot await path.
**
** Storage: RESULT holds nil, the one result, a table of results (FUT_MULTI)
** or the exception (FUT_EXCEPTION).  CB0 holds the first callback; EXTRA
** (a table, created on demand) holds the others as {cb, ctx} pairs in its
** array part, plus "ctx0", "msg" (cancel message), "tb" (where it was
** created, in debug mode) and "traceback" (where a string error was
** raised: see key_reraised_error).
*/
#include <string.h>

#include "internal.h"

/*
** What is a Future.  A userdata is one when its metatable is in the
** runtime's set of future metatables (registry[&eddy__key_future], weak
** keys): Future's, its twin with __gc, Task's, and the copies _future_new
** makes of a Lua class.  C alone puts a metatable in the set and C alone
** gives userdata their metatables, so the test is sound: a marker stored
** in the metatable would not be, since Lua code can read the metatable of
** a future (eddy.Future) and copy the marker into another userdata's (an
** io file's), and make C read a FILE as an eddy_Future.
*/
eddy_Future *eddy__tofuture(lua_State *L, int i) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  if (lua_type(L, i) != LUA_TUSERDATA || !lua_getmetatable(L, i)) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_future);
  lua_pushvalue(L, -2);
  if (lua_rawget(L, -2) == LUA_TNIL) f = NULL;
  lua_pop(L, 3);
  return f;
}

/* Add the metatable at index mt to the set of future metatables. */
void eddy__future_metatable(lua_State *L, int mt) {
  mt = lua_absindex(L, mt);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_future);
  lua_pushvalue(L, mt);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* __newindex of sealed objects, upvalue their __name.  A userdata has no
** field Lua code may set (its fields, such as server.sockets, are
** read-only); a table (a Loop) takes new fields as any table does. */
static int sealed_newindex(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
  }
  return luaL_error(L, "cannot set field '%s' of %s",
                    luaL_tolstring(L, 2, NULL),
                    lua_tostring(L, lua_upvalueindex(1)));
}

/*
** Seal the metatable at index mt: Lua's getmetatable() returns a small
** table of its own holding only __name (so messages still say "got
** eddy.Future"), never the metatable, whose metamethods are C functions
** that may be called only with their own objects.  Assigning a field
** of a userdata raises an error that names the object, unless the
** metatable has a __newindex of its own (a Lua class's, _future_new).
*/
void eddy__newweaktable(lua_State *L, const char *mode) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

void eddy__weakset_put(lua_State *L, const void *set, int i, int in) {
  i = lua_absindex(L, i);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, set) != LUA_TTABLE) {
    lua_pop(L, 1);
    if (!in) return;
    eddy__newweaktable(L, "k");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, set);
  }
  lua_pushvalue(L, i);
  if (in) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

int eddy__weakset_has(lua_State *L, const void *set, int i) {
  int in;
  i = lua_absindex(L, i);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, set) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushvalue(L, i);
  in = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return in;
}

void eddy__seal_metatable(lua_State *L, int mt) {
  mt = lua_absindex(L, mt);
  lua_createtable(L, 0, 1);
  lua_getfield(L, mt, "__name");
  lua_setfield(L, -2, "__name");
  lua_setfield(L, mt, "__metatable");
  if (lua_getfield(L, mt, "__newindex") == LUA_TNIL) {  /* keep a class's */
    lua_getfield(L, mt, "__name");
    lua_pushcclosure(L, sealed_newindex, 1);
    lua_setfield(L, mt, "__newindex");
  }
  lua_pop(L, 1);
}

/*
** Marked userdata: the last word of the block holds its address mixed
** with the class's mark and a secret drawn once per process.  Telling
** one costs two reads of the value (lua_touserdata, lua_rawlen) where a
** metatable check costs four API calls and a table read, on every
** transport method.  It is sound because nothing else can hold that
** word: Lua code may fill a userdata's bytes (an eddy.Buffer's, by
** sock_recv_into) and learn addresses (tostring of a C function), but
** never the secret, which only C reads; and reading the last word of
** any full userdata stays inside its block, whoever made it.
** Unlike a mark in the metatable, it also holds when the debug library
** gives an object another's metatable.
*/
uintptr_t eddy__mark_secret;
static uv_once_t mark_once = UV_ONCE_INIT;

static void draw_mark_secret(void) {
  uintptr_t *secret = &eddy__mark_secret;
  uintptr_t seed = (uintptr_t)uv_hrtime() ^ (uintptr_t)secret;
  if (uv_random(NULL, NULL, secret, sizeof *secret, 0, NULL) != 0)
    *secret = seed * (uintptr_t)0x9E3779B97F4A7C15u;  /* no entropy */
}

/* The secret is drawn before the first class of marked objects has its
** methods, so before any eddy__tomarked call. */
int eddy__newmarkedmetatable(lua_State *L, const char *name) {
  uv_once(&mark_once, draw_mark_secret);
  return luaL_newmetatable(L, name);
}

void *eddy__newmarked(lua_State *L, size_t size, int nuv, const void *mark) {
  size_t at = (size + sizeof(uintptr_t) - 1) & ~(sizeof(uintptr_t) - 1);
  char *p = (char *)lua_newuserdatauv(L, at + sizeof(uintptr_t), nuv);
  uintptr_t seal = eddy__mark_seal(p, mark);
  memcpy(p + at, &seal, sizeof seal);
  return p;
}

/*
** A finalizer that checks its argument: (obj), upvalues (the C finalizer,
** the metatable it belongs to).  For metatables Lua code can reach
** (eddy.Task), whose __gc could otherwise be called with any value.
*/
int eddy__checked_gc(lua_State *L) {
  int same = lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1) &&
             lua_rawequal(L, -1, lua_upvalueindex(2));
  if (!same) {
    lua_getfield(L, lua_upvalueindex(2), "__name");
    return luaL_typeerror(L, 1, lua_tostring(L, -1));
  }
  lua_settop(L, 1);
  return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

eddy_Future *eddy__checkfuture(lua_State *L, int i) {
  eddy_Future *f = eddy__tofuture(L, i);
  if (f == NULL) luaL_typeerror(L, i, "Future");
  return f;
}

eddy_Future *eddy__future_new(lua_State *L, eddy_Loop *loop) {
  eddy_Future *f =
      (eddy_Future *)lua_newuserdatauv(L, sizeof(eddy_Future), FUT_NUV - 1);
  memset(f, 0, sizeof *f);
  f->kind = EDDY_KIND_FUTURE;
  f->loop = loop;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->rt->mt_future_ref);
  lua_setmetatable(L, -2);
  eddy__pushloop(L, loop);
  lua_setiuservalue(L, -2, FUT_UV_LOOP);
  if (loop->debug) {
    luaL_traceback(L, L, NULL, 1);
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "tb");
    lua_setiuservalue(L, -2, FUT_UV_EXTRA);
  }
  return f;
}

/* Push EXTRA of the future at i, creating it if asked (else may be nil). */
static int push_extra(lua_State *L, int i, int create) {
  if (lua_getiuservalue(L, i, FUT_UV_EXTRA) == LUA_TTABLE || !create)
    return lua_istable(L, -1);
  lua_pop(L, 1);
  lua_newtable(L);  /* may run a finalizer that makes the future's first */
  if (lua_getiuservalue(L, i, FUT_UV_EXTRA) == LUA_TTABLE) {
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, i, FUT_UV_EXTRA);
  return 1;
}

/* {====================================================== Callbacks */

/*
** A done callback cannot be scheduled on a closed loop: asyncio's
** Future.__schedule_callbacks calls call_soon, which raises RuntimeError.
** Except while loop:close() closes what was left open: the
** connection_lost it calls may complete futures, and their callbacks are
** dropped with the rest of the ready queue.
*/
static void refuse_closed(lua_State *L, eddy_Loop *loop) {
  if (!loop->closing)
    eddy__error(L, "RuntimeError", "Event loop is closed");
}

/* Queue the callback at cb, with its context at ctx, for the done future
** at fi (add_done_callback on a done future). */
static void schedule_one(lua_State *L, eddy_Future *f, int fi, int cb,
                         int ctx) {
  eddy_Loop *loop = f->loop;
  if (loop->state == EDDY_LOOP_CLOSED) {
    refuse_closed(L, loop);
    return;
  }
  lua_pushvalue(L, cb);
  lua_pushvalue(L, fi);
  eddy__handle_new(L, loop, 1, ctx);
  eddy__ready_push(L, loop, -1);
  lua_pop(L, 1);
}

/*
** Completing a future must not lose a callback to an allocation failure:
** a task or a callback waiting on it would wait forever.  So it happens
** in two phases.  prepare_callbacks, the future still pending, makes
** everything that scheduling allocates: what each callback puts in the
** ready queue (the Task itself for a waiting task, a Handle calling the
** function with the future), in a list it pushes, and room in the ready
** queue for all of it; it may raise.  The caller then sets the outcome
** and commit_callbacks queues the list and forgets the callbacks,
** allocating nothing.  On a closed loop nothing is prepared and
** commit_callbacks forgets the callbacks all the same, then refuse_closed
** raises, the future staying done (asyncio's C Future clears its
** callbacks when call_soon fails).
*/
/* Push what the callback at cb (its context at ctx) queues. */
static void prepare_one(lua_State *L, eddy_Future *f, int fi, int cb, int ctx,
                        int is_task) {
  lua_pushvalue(L, cb);
  if (!is_task) {
    lua_pushvalue(L, fi);
    eddy__handle_new(L, f->loop, 1, ctx);
  }
}

/* Push what the first callback (the slot of its own) queues. */
static void prepare_cb0(lua_State *L, eddy_Future *f, int fi) {
  int cb = lua_gettop(L);  /* the callback, pushed by the caller */
  if (f->flags & FUT_CB0_CTX) {
    push_extra(L, fi, 0);
    lua_getfield(L, -1, "ctx0");
    lua_remove(L, -2);
  } else {
    lua_pushnil(L);
  }
  prepare_one(L, f, fi, cb, cb + 1, f->cb0_is_task);
  lua_replace(L, cb);
  lua_settop(L, cb);
}

/* Push the list (or, for the usual lone callback, its entry alone: no
** table to make on every completion). */
static void prepare_once(lua_State *L, eddy_Future *f, int fi) {
  int top, list;
  lua_Integer k, n;
  if (f->ncallbacks == 0 || f->loop->state == EDDY_LOOP_CLOSED) {
    lua_pushnil(L);
    return;
  }
  if (f->ncallbacks == 1 &&
      lua_getiuservalue(L, fi, FUT_UV_CB0) != LUA_TNIL) {
    prepare_cb0(L, f, fi);
    eddy__ready_reserve(L, f->loop, 1);
    return;
  }
  if (f->ncallbacks == 1) lua_pop(L, 1);
  lua_createtable(L, f->ncallbacks, 0);
  list = top = lua_gettop(L);
  if (lua_getiuservalue(L, fi, FUT_UV_CB0) != LUA_TNIL) {
    prepare_cb0(L, f, fi);
    lua_rawseti(L, list, 1);
  }
  lua_settop(L, top);
  if (push_extra(L, fi, 0)) {
    int extra = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, extra);
    for (k = 1; k + 1 <= n; k += 2) {
      int is_task;
      lua_rawgeti(L, extra, k);
      lua_rawgeti(L, extra, k + 1);
      /* true marks a waiting task; false, a callback with no context */
      is_task = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
      if (lua_type(L, -1) == LUA_TBOOLEAN) {
        lua_pop(L, 1);
        lua_pushnil(L);
      }
      if (!lua_isnil(L, -2)) {
        prepare_one(L, f, fi, extra + 1, extra + 2, is_task);
        lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
      }
      lua_pop(L, 2);
    }
  }
  lua_settop(L, top);
  eddy__ready_reserve(L, f->loop, (int)lua_rawlen(L, list));
}

/* Push the list of what completing the future at fi queues (nil: none).
** Its allocations may run a finalizer that adds a callback: then again. */
static void prepare_callbacks(lua_State *L, eddy_Future *f, int fi) {
  int n;
  do {
    n = f->ncallbacks;
    prepare_once(L, f, fi);
    if (f->ncallbacks != n) lua_pop(L, 1);
  } while (f->ncallbacks != n);
}

/* Queue the entry at the top (popped), in room prepare_callbacks made. */
static void queue_entry(lua_State *L, eddy_Loop *loop) {
  eddy_Task *t = (eddy_Task *)lua_touserdata(L, -1);
  if (t->fut.kind == EDDY_KIND_TASK) {
    /* (its TASK_UV_WAITER stays until the step: a cancel() before it
    ** then finds the waiter done, as asyncio's _fut_waiter) */
    if (t->fut.state != EDDY_FUT_PENDING || t->scheduled) {
      lua_pop(L, 1);
      return;
    }
    t->scheduled = 1;
  }
  eddy__ready_push(L, loop, -1);
  lua_pop(L, 1);
}

/* Queue the list at 'list' made by prepare_callbacks (popped) and forget
** the callbacks. */
static void commit_callbacks(lua_State *L, eddy_Future *f, int fi, int list) {
  eddy_Loop *loop = f->loop;
  int open = loop->state != EDDY_LOOP_CLOSED;
  lua_Integer k, n;
  list = lua_absindex(L, list);
  fi = lua_absindex(L, fi);
  if (f->ncallbacks == 0) {
    lua_remove(L, list);
    return;
  }
  if (open && lua_istable(L, list)) {
    n = (lua_Integer)lua_rawlen(L, list);
    for (k = 1; k <= n; k++) {
      lua_rawgeti(L, list, k);
      queue_entry(L, loop);
    }
  } else if (open && !lua_isnil(L, list)) {  /* a lone entry */
    lua_pushvalue(L, list);
    queue_entry(L, loop);
  }
  lua_pushnil(L);
  lua_setiuservalue(L, fi, FUT_UV_CB0);
  if (push_extra(L, fi, 0)) {
    for (k = (lua_Integer)lua_rawlen(L, -1); k >= 1; k--) {
      lua_pushnil(L);
      lua_rawseti(L, -2, k);
    }
  }
  lua_pop(L, 1);
  lua_remove(L, list);
  f->ncallbacks = 0;
  f->cb0_is_task = 0;
  f->flags &= (unsigned char)~FUT_CB0_CTX;
  if (!open) refuse_closed(L, loop);
}

/* Add a callback (at cb) with its context (at ctx; a Task waiter passes
** a boolean true there). */
static void add_callback(lua_State *L, eddy_Future *f, int fi, int cb,
                         int ctx, int is_task) {
  int with_ctx = !is_task && !lua_isnil(L, ctx);
  cb = lua_absindex(L, cb);
  ctx = lua_absindex(L, ctx);
  /* The table first: making it may run a finalizer that adds a callback
  ** of its own, and this one then comes after it. */
  if (f->ncallbacks > 0 || with_ctx) push_extra(L, fi, 1);
  else lua_pushnil(L);
  if (f->ncallbacks == 0) {
    lua_pushvalue(L, cb);
    lua_setiuservalue(L, fi, FUT_UV_CB0);
    f->cb0_is_task = (unsigned char)is_task;
    if (with_ctx) {
      lua_pushvalue(L, ctx);
      lua_setfield(L, -2, "ctx0");
      f->flags |= FUT_CB0_CTX;
    }
  } else {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    lua_pushvalue(L, cb);
    lua_rawseti(L, -2, n + 1);
    if (is_task) lua_pushboolean(L, 1);
    else if (lua_isnil(L, ctx)) lua_pushboolean(L, 0);
    else lua_pushvalue(L, ctx);
    lua_rawseti(L, -2, n + 2);
  }
  lua_pop(L, 1);
  f->ncallbacks++;
}

void eddy__future_add_waiter(lua_State *L, int i, int t) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  i = lua_absindex(L, i);
  lua_pushboolean(L, 1);
  add_callback(L, f, i, t, -1, 1);
  lua_pop(L, 1);
}

/* Remove every callback equal to the value at cb; returns the count. */
static int remove_callback(lua_State *L, eddy_Future *f, int fi, int cb) {
  int removed = 0;
  cb = lua_absindex(L, cb);
  if (f->ncallbacks == 0) return 0;
  lua_getiuservalue(L, fi, FUT_UV_CB0);
  if (lua_rawequal(L, -1, cb)) {
    lua_pushnil(L);
    lua_setiuservalue(L, fi, FUT_UV_CB0);
    f->cb0_is_task = 0;
    f->flags &= (unsigned char)~FUT_CB0_CTX;
    removed++;
  }
  lua_pop(L, 1);
  if (push_extra(L, fi, 0)) {
    int extra = lua_gettop(L);
    lua_Integer k, n = (lua_Integer)lua_rawlen(L, extra), w = 1;
    for (k = 1; k + 1 <= n; k += 2) {  /* compact the pairs in place */
      lua_rawgeti(L, extra, k);
      if (lua_rawequal(L, -1, cb)) {
        removed++;
        lua_pop(L, 1);
        continue;
      }
      lua_rawseti(L, extra, w);
      lua_rawgeti(L, extra, k + 1);
      lua_rawseti(L, extra, w + 1);
      w += 2;
    }
    for (k = n; k >= w; k--) {
      lua_pushnil(L);
      lua_rawseti(L, extra, k);
    }
  }
  lua_pop(L, 1);
  f->ncallbacks -= removed;
  if (f->ncallbacks < 0) f->ncallbacks = 0;
  return removed;
}

void eddy__future_remove_waiter(lua_State *L, int i, int t) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  remove_callback(L, f, lua_absindex(L, i), t);
}

/* }====================================================== */

/* {====================================================== Completion */

static int invalid_state(lua_State *L, eddy_Future *f) {
  static const char *const names[] = {"PENDING", "CANCELLED", "FINISHED"};
  return eddy__error(L, "InvalidStateError", "invalid state: %s",
                     names[f->state]);
}

/* Complete the future at i with the n values at the top (popped).  The
** state is checked once they are packed: a finalizer run by that
** allocation may have completed the future meanwhile.  A done future is
** an InvalidStateError when 'strict', else the values are dropped. */
static int set_result(lua_State *L, int i, int n, int strict) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  i = lua_absindex(L, i);
  if (n > 1) {  /* packed in one table */
    int k;
    lua_createtable(L, n, 0);
    lua_insert(L, -n - 1);
    for (k = n; k >= 1; k--) lua_rawseti(L, -k - 1, k);
  }
  if (f->state == EDDY_FUT_PENDING) prepare_callbacks(L, f, i);
  else lua_pushnil(L);
  if (f->state != EDDY_FUT_PENDING) {  /* (prepare's finalizers too) */
    if (strict) return invalid_state(L, f);
    lua_pop(L, n > 1 ? 2 : n + 1);
    return 0;
  }
  if (n >= 1) {
    lua_insert(L, -2);  /* the list below the result */
    lua_setiuservalue(L, i, FUT_UV_RESULT);
  }
  if (n > 1) f->flags |= FUT_MULTI;
  f->nresults = n;
  f->state = EDDY_FUT_FINISHED;
  if (f->kind == EDDY_KIND_TASK) eddy__loop_tasks(f->loop, -1);
  commit_callbacks(L, f, i, -1);
  return 0;
}

int eddy__future_set_result(lua_State *L, int i, int n) {
  return set_result(L, i, n, 1);
}

/* (fut, values...): set_result, protected. */
static int set_result_protected(lua_State *L) {
  return set_result(L, 1, lua_gettop(L) - 1, 0);
}

/* eddy's own completions (a timer of sleep, DNS, the executor, socket
** operations) go this way: when there is no memory to complete the future
** with its result, it fails with that error instead, so that whoever
** waits on it wakes up rather than wait forever. */
int eddy__future_set_result_unless_done(lua_State *L, int i, int n) {
  i = lua_absindex(L, i);
  lua_pushcfunction(L, set_result_protected);
  lua_pushvalue(L, i);
  lua_rotate(L, -n - 2, 2);  /* below the values */
  if (lua_pcall(L, n + 1, 0, 0) != LUA_OK)
    return eddy__future_set_exception_unless_done(L, i);
  return 0;
}

/*
** A plain Future needs a finalizer only to report an exception nobody
** retrieved, and finalizers make every object slower to collect: futures
** start with a metatable without __gc and get its twin with __gc when an
** exception is stored.  Subclasses (a metatable of their own) keep theirs.
*/
static void set_gc_metatable(lua_State *L, eddy_Future *f, int i) {
  eddy_Runtime *rt = f->loop->rt;
  lua_getmetatable(L, i);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->mt_future_ref);
  if (lua_rawequal(L, -1, -2)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->mt_future_gc_ref);
    lua_setmetatable(L, i);
  }
  lua_pop(L, 2);
}

int eddy__future_set_exception(lua_State *L, int i) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  i = lua_absindex(L, i);
  if (f->state != EDDY_FUT_PENDING) return invalid_state(L, f);
  prepare_callbacks(L, f, i);
  if (f->state != EDDY_FUT_PENDING) return invalid_state(L, f);
  lua_insert(L, -2);  /* the list below the exception */
  lua_setiuservalue(L, i, FUT_UV_RESULT);
  f->flags |= FUT_EXCEPTION | FUT_LOG_TB;
  f->state = EDDY_FUT_FINISHED;
  if (f->kind == EDDY_KIND_TASK) eddy__loop_tasks(f->loop, -1);
  if (f->kind == EDDY_KIND_FUTURE) set_gc_metatable(L, f, i);
  commit_callbacks(L, f, i, -1);
  return 0;
}

/* (future, err): set_exception, protected. */
static int set_exception_protected(lua_State *L) {
  return eddy__future_set_exception(L, 1);
}

/* As eddy__future_set_result_unless_done: should there be no memory to
** store the error, the future fails with that memory error instead.  It
** never raises (libuv's callbacks call it): with no memory even for that,
** the future stays pending and the loop is starved (eddy__loop_starve):
** its run ends with the memory error rather than wait for it forever. */
int eddy__future_set_exception_unless_done(lua_State *L, int i) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  int tries;
  i = lua_absindex(L, i);
  for (tries = 0; tries < 2; tries++) {
    if (f->state != EDDY_FUT_PENDING) break;
    lua_pushcfunction(L, set_exception_protected);
    lua_pushvalue(L, i);
    lua_rotate(L, -3, 2);  /* below the error */
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) return 0;
  }
  if (f->state == EDDY_FUT_PENDING) eddy__loop_starve(f->loop);
  lua_pop(L, 1);
  return 0;
}

int eddy__future_cancel(lua_State *L, int i, int msg) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  i = lua_absindex(L, i);
  /* Even on a done future: whoever cancels it has given up on its
  ** outcome, so its error is not reported (asyncio's cancel() clears
  ** __log_traceback first). */
  f->flags &= (unsigned char)~FUT_LOG_TB;
  if (f->state != EDDY_FUT_PENDING) return 0;
  if (msg != 0 && !lua_isnil(L, msg)) {
    msg = lua_absindex(L, msg);
    push_extra(L, i, 1);
    lua_pushvalue(L, msg);
    lua_setfield(L, -2, "msg");
    lua_pop(L, 1);
  }
  prepare_callbacks(L, f, i);
  if (f->state != EDDY_FUT_PENDING) {  /* (a finalizer meanwhile) */
    lua_pop(L, 1);
    return 0;
  }
  f->state = EDDY_FUT_CANCELLED;
  if (f->kind == EDDY_KIND_TASK) eddy__loop_tasks(f->loop, -1);
  commit_callbacks(L, f, i, -1);
  return 1;
}

void eddy__push_cancelled_error(lua_State *L, int i) {
  const char *msg = NULL;
  if (push_extra(L, i, 0)) {
    lua_getfield(L, -1, "msg");
    msg = lua_tostring(L, -1);
  }
  if (msg != NULL) eddy__pusherror(L, "CancelledError", "%s", msg);
  else eddy__pusherror(L, "CancelledError", NULL);
}

/*
** Where a string error was raised.  A task keeps it (EXTRA "traceback")
** for an error that is not a table (only tables can carry it as error
** objects do: the string must stay the same value).  When result() or
** await re-raises such an error, these slots remember the string and
** that traceback, the last one only, until the next re-raise or until
** the executable's message handler takes them (src/main.c): the handler
** prints it for an error raw-equal to that string, wherever it was
** re-raised from since (eddy.run's error(err, 0), say).
*/
static const char key_reraised_error = 0;
static const char key_reraised_traceback = 0;

/* Raise the exception of the failed future at i; a string is remembered
** with where it was raised (none known: forgotten).  (Out of line: not
** on result()'s way to a result.) */
static EDDY_NOINLINE int reraise(lua_State *L, int i) {
  if (lua_getiuservalue(L, i, FUT_UV_RESULT) == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_reraised_error);
    if (push_extra(L, i, 0)) lua_getfield(L, -1, "traceback");
    else lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_reraised_traceback);
    lua_pop(L, 1);
  }
  return lua_error(L);
}

int eddy__push_reraised_traceback(lua_State *L, int i, int take) {
  int found = 0;
  i = lua_absindex(L, i);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_reraised_traceback) !=
      LUA_TNIL) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_reraised_error);
    found = lua_rawequal(L, -1, i);
    lua_pop(L, 1);
  }
  if (!found) lua_pop(L, 1);
  if (take) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_reraised_error);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_reraised_traceback);
  }
  return found;
}

int eddy__push_raise_site(lua_State *L) {
  if (!eddy__push_reraised_traceback(L, 1, 1)) return 0;
  lua_pushfstring(L, "%s\n%s", lua_tostring(L, 1), lua_tostring(L, -1));
  return 1;
}

int eddy__future_result(lua_State *L, int i) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  i = lua_absindex(L, i);
  if (f->state == EDDY_FUT_FINISHED) {
    f->flags &= (unsigned char)~FUT_LOG_TB;
    if (f->flags & FUT_EXCEPTION) return reraise(L, i);
    if (f->flags & FUT_MULTI) {
      int k, tbl;
      luaL_checkstack(L, f->nresults + 1, "too many results");
      lua_getiuservalue(L, i, FUT_UV_RESULT);
      tbl = lua_gettop(L);
      for (k = 1; k <= f->nresults; k++) lua_rawgeti(L, tbl, k);
      lua_remove(L, tbl);
      return f->nresults;
    }
    if (f->nresults == 0) return 0;
    lua_getiuservalue(L, i, FUT_UV_RESULT);
    return 1;
  }
  if (f->state == EDDY_FUT_CANCELLED) {
    eddy__push_cancelled_error(L, i);
    return lua_error(L);
  }
  return eddy__error(L, "InvalidStateError", "Result is not ready.");
}

/* }====================================================== */

/* {====================================================== Methods */

static int f_result(lua_State *L) {
  eddy__checkfuture(L, 1);
  return eddy__future_result(L, 1);
}

static int f_set_result(lua_State *L) {
  if (eddy__checkfuture(L, 1)->kind == EDDY_KIND_TASK)
    return eddy__error(L, "RuntimeError",
                       "Task does not support set_result() operation");
  eddy__future_set_result(L, 1, lua_gettop(L) - 1);
  return 0;
}

static int f_set_exception(lua_State *L) {
  if (eddy__checkfuture(L, 1)->kind == EDDY_KIND_TASK)
    return eddy__error(L, "RuntimeError",
                       "Task does not support set_exception() operation");
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "error value");
  lua_settop(L, 2);
  eddy__instantiate_class(L, 2);  /* set_exception(Cls) sets Cls() */
  eddy__future_set_exception(L, 1);
  return 0;
}

static int f_exception(lua_State *L) {
  eddy_Future *f = eddy__checkfuture(L, 1);
  if (f->state == EDDY_FUT_CANCELLED) {
    eddy__push_cancelled_error(L, 1);
    return lua_error(L);
  }
  if (f->state == EDDY_FUT_PENDING)
    return eddy__error(L, "InvalidStateError", "Exception is not set.");
  f->flags &= (unsigned char)~FUT_LOG_TB;
  if (f->flags & FUT_EXCEPTION) lua_getiuservalue(L, 1, FUT_UV_RESULT);
  else lua_pushnil(L);
  return 1;
}

static int f_done(lua_State *L) {
  lua_pushboolean(L, eddy__checkfuture(L, 1)->state != EDDY_FUT_PENDING);
  return 1;
}

static int f_cancelled(lua_State *L) {
  lua_pushboolean(L, eddy__checkfuture(L, 1)->state == EDDY_FUT_CANCELLED);
  return 1;
}

static int f_cancel(lua_State *L) {
  eddy__checkfuture(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checkstring(L, 2);
  lua_pushboolean(L, eddy__future_cancel(L, 1, lua_isnone(L, 2) ? 0 : 2));
  return 1;
}

/* The options table of add_done_callback at 3 (asyncio's keyword-only
** context): a plain table holding only 'context', an eddy.Context.
** Pushes that context, or (absent, as asyncio's context=None) a copy of
** the current one. */
static void push_option_context(lua_State *L, eddy_Runtime *rt) {
  static const char *const allowed[] = {"context", NULL};
  eddy__checkoptions(L, 3, allowed);
  if (lua_getfield(L, 3, "context") == LUA_TNIL) {
    lua_pop(L, 1);
    eddy__push_context_copy(L, rt);
    return;
  }
  if (!lua_getmetatable(L, -1) ||
      lua_getfield(L, -1, "__name") != LUA_TSTRING ||
      strcmp(lua_tostring(L, -1), "eddy.Context") != 0)
    luaL_argerror(L, 3, lua_pushfstring(L, "option 'context' must be an "
                                        "eddy.Context, got %s",
                                        luaL_typename(L, 4)));
  lua_settop(L, 4);
}

/* add_done_callback(cb [, {context = ctx}]) */
static int f_add_done_callback(lua_State *L) {
  eddy_Future *f = eddy__checkfuture(L, 1);
  eddy__checkcallable(L, 2);
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) eddy__push_context_copy(L, f->loop->rt);
  else push_option_context(L, f->loop->rt);
  if (f->state != EDDY_FUT_PENDING) {
    schedule_one(L, f, 1, 2, 4);
    return 0;
  }
  add_callback(L, f, 1, 2, 4, 0);
  return 0;
}

static int f_remove_done_callback(lua_State *L) {
  eddy_Future *f = eddy__checkfuture(L, 1);
  luaL_checkany(L, 2);
  lua_pushinteger(L, remove_callback(L, f, 1, 2));
  return 1;
}

static int f_get_loop(lua_State *L) {
  eddy__checkfuture(L, 1);
  lua_getiuservalue(L, 1, FUT_UV_LOOP);
  return 1;
}

/* fut:await() -- suspending */
static int f_await(lua_State *L) {
  lua_settop(L, 1);
  return eddy__await(L, 1, "await");  /* checks the future */
}

#define BRIEF_MAX 60 /* bytes of a result or exception shown by tostring */

static int tostring_value(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

void eddy__brief(lua_State *L, int quote) {
  size_t len, n;
  const char *s;
  quote = quote && lua_type(L, -1) == LUA_TSTRING;
  lua_pushcfunction(L, tostring_value);
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, luaL_typename(L, -1));
  }
  s = lua_tolstring(L, -1, &len);
  for (n = 0; n < len && n < BRIEF_MAX && s[n] != '\n'; n++) {}
  lua_pushfstring(L, quote ? "\"%s%s\"" : "%s%s",
                  lua_pushlstring(L, s, n), n < len ? "..." : "");
  lua_replace(L, -4);
  lua_pop(L, 2);
}

/* Push "<Kind state[details][ result=R| exception=E] 0x...>" for the
** future at i, as asyncio's repr of a future or task; details (a task's
** " name=N wait_for=F") may be NULL. */
int eddy__push_future_repr(lua_State *L, int i, const char *kind,
                           const char *details) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, i);
  static const char *const states[] = {"pending", "cancelled", "finished"};
  int top = lua_gettop(L);
  i = lua_absindex(L, i);
  lua_pushfstring(L, "<%s %s", kind, states[f->state]);
  if (details != NULL) lua_pushstring(L, details);
  if (f->state == EDDY_FUT_FINISHED) {
    lua_pushstring(L, (f->flags & FUT_EXCEPTION) ? " exception=" : " result=");
    lua_getiuservalue(L, i, FUT_UV_RESULT);
    if (f->flags & FUT_MULTI) {
      lua_rawgeti(L, -1, 1);
      lua_remove(L, -2);
    } else if (f->nresults == 0 && !(f->flags & FUT_EXCEPTION)) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    eddy__brief(L, !(f->flags & FUT_EXCEPTION));
    if ((f->flags & FUT_MULTI) && f->nresults > 1) lua_pushliteral(L, ", ...");
  }
  lua_pushfstring(L, " %p>", (void *)f);
  lua_concat(L, lua_gettop(L) - top);
  return 1;
}

static int f_tostring(lua_State *L) {
  eddy__checkfuture(L, 1);
  return eddy__push_future_repr(L, 1, "Future", NULL);
}

/*
** __gc: an exception nobody retrieved is reported, as asyncio's __del__
** does ("Future exception was never retrieved").
*/
static int f_gc(lua_State *L) {
  eddy_Future *f = eddy__checkfuture(L, 1);
  if (f->flags & FUT_LOG_TB) {
    int top = lua_gettop(L);
    f->flags &= (unsigned char)~FUT_LOG_TB;
    lua_getiuservalue(L, 1, FUT_UV_RESULT);
    eddy__newcontext(L,
                     f->kind == EDDY_KIND_TASK
                         ? "Task exception was never retrieved"
                         : "Future exception was never retrieved",
                     top + 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "future");  /* a Task too: asyncio's Future.__del__ */
    if (push_extra(L, 1, 0)) {
      lua_getfield(L, -1, "tb");
      lua_setfield(L, -3, "source_traceback");
    }
    lua_pop(L, 1);
    eddy__call_exception_handler(L, f->loop);
    lua_settop(L, top);
  }
  return 0;
}

static const luaL_Reg future_methods[] = {
  {"result", f_result},
  {"set_result", f_set_result},
  {"set_exception", f_set_exception},
  {"exception", f_exception},
  {"done", f_done},
  {"cancelled", f_cancelled},
  {"cancel", f_cancel},
  {"add_done_callback", f_add_done_callback},
  {"remove_done_callback", f_remove_done_callback},
  {"get_loop", f_get_loop},
  {"await", f_await},
  {NULL, NULL}
};

const luaL_Reg *eddy__future_methods(void);
const luaL_Reg *eddy__future_methods(void) { return future_methods; }

void eddy__open_future(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  eddy__newweaktable(L, "k");  /* the set of future metatables */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &eddy__key_future);
  luaL_newmetatable(L, EDDY_FUTURE);
  luaL_newlib(L, future_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, f_tostring);
  lua_setfield(L, -2, "__tostring");
  eddy__seal_metatable(L, -1);
  eddy__future_metatable(L, -1);
  /* the twin with a finalizer, for futures holding an exception */
  lua_createtable(L, 0, 5);
  lua_getfield(L, -2, "__index");
  lua_setfield(L, -2, "__index");
  lua_getfield(L, -2, "__tostring");
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, EDDY_FUTURE);
  lua_setfield(L, -2, "__name");
  lua_pushcfunction(L, f_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  eddy__future_metatable(L, -1);
  rt->mt_future_gc_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rt->mt_future_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/*
** _future_new(loop [, class]) -> a new Future; with a class (a table such
** as tasks.lua's GatheringFuture), its metatable is a copy of the class
** that C made, sealed and added to the set of future metatables.  The
** class itself is never given to the future: it is a Lua table, maybe
** the metatable of something else (an io file's), which would then pass
** for a future.  Copies are cached per class (upvalue 1, weak keys); a
** class changed after its first future keeps its old copy.
*/
static int c_future_new(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  int has_class = lua_istable(L, 2);
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (has_class && lua_rawget(L, lua_upvalueindex(1)) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);  /* 3: the copy */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 3);
    }
    lua_pushnil(L);
    lua_setfield(L, 3, "__metatable");
    if (lua_getfield(L, 3, "__name") != LUA_TSTRING) {
      lua_pushliteral(L, EDDY_FUTURE);
      lua_setfield(L, 3, "__name");
    }
    lua_pop(L, 1);
    eddy__seal_metatable(L, 3);
    eddy__future_metatable(L, 3);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, lua_upvalueindex(1));
  }
  eddy__future_new(L, loop);
  if (has_class) {
    lua_pushvalue(L, 3);
    lua_setmetatable(L, -2);
  }
  return 1;
}

/* _traceback(fut) -> where the string error of a failed task was raised
** (a Lua traceback), or nil. */
static int c_traceback(lua_State *L) {
  eddy__checkfuture(L, 1);
  if (push_extra(L, 1, 0)) lua_getfield(L, -1, "traceback");
  return 1;
}

/* _copy_traceback(to, from): the future 'to', failed with the error of
** 'from' (gather's, shield's outer future), keeps where it was raised. */
static int c_copy_traceback(lua_State *L) {
  eddy__checkfuture(L, 1);
  eddy__checkfuture(L, 2);
  if (push_extra(L, 2, 0) &&
      lua_getfield(L, -1, "traceback") != LUA_TNIL) {
    push_extra(L, 1, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "traceback");
  }
  return 0;
}

/* _await_as(fut, name): fut:await(), for a suspending method that waits
** on a future: its errors (a plain callback, a top level with nothing
** left to run) name that method, not await(). */
static int c_await_as(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  lua_settop(L, 2);  /* (keeps the name alive) */
  return eddy__await(L, 1, what);
}

/* Put _future_new, _await_as, _traceback and _copy_traceback in the core
** table at the top. */
void eddy__core_futures(lua_State *L) {
  lua_pushcfunction(L, c_await_as);
  lua_setfield(L, -2, "_await_as");
  lua_pushcfunction(L, c_traceback);
  lua_setfield(L, -2, "_traceback");
  lua_pushcfunction(L, c_copy_traceback);
  lua_setfield(L, -2, "_copy_traceback");
  eddy__newweaktable(L, "k");  /* class -> its copy */
  lua_pushcclosure(L, c_future_new, 1);
  lua_setfield(L, -2, "_future_new");
}

int eddy__future_gc(lua_State *L);
int eddy__future_gc(lua_State *L) { return f_gc(L); }

/* }====================================================== */
