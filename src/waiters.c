/*
** waiters.c -- a FIFO of tasks waiting on an object of the Lua layer
** (the getters and putters of eddy.Queue): C.Waiters(owner).
**
** asyncio gives each waiter a Future of its own and wakes it with
** set_result.  Here a waiting task parks on the Waiters (task.c's
** eddy__park), so a wait allocates nothing and a wake is one push onto
** the ready queue.  The main chunk's top-level suspension (API.md §11) has
** no task to park: it waits on a Future, as streams.c does.
**
**   w:wait(what) -> nothing when woken; err, woken when the wait failed
**               (the task was cancelled): 'woken' says that wake_one had
**               already picked it, so the caller may pass the wake on as
**               asyncio does when a woken waiter is cancelled.  'what'
**               names the suspending method in errors ("get").
**   w:wake_one() -> whether a waiter was woken (the first one still
**               waiting, in FIFO order)
**   w:wake_all()   wake every waiter, and forget them
**   #w           waiters not gone yet (asyncio's len(self._getters))
**
** Like asyncio's _LoopBoundMixin, the first wait binds the Waiters to its
** loop; a wait from another loop raises RuntimeError naming the owner.
*/
#include <string.h>

#include "internal.h"

#define EDDY_WAITERS "eddy.Waiters"

typedef struct {
  eddy_Runtime *rt;
  eddy_Loop *loop;         /* bound by the first wait, else NULL */
  lua_Integer head, tail;  /* ENTRIES[head..tail]; empty when head > tail */
} Waiters;

/* User values: the entries, each an eddy_Task (parked on the Waiters
** while it waits) or an eddy_Future (a top-level wait); the owner. */
enum { W_ENTRIES = 1, W_OWNER, W_NUV = W_OWNER };

/* Stack slots of wait(): the Waiters, what; resumed values come after. */
#define SELF 1
#define WHAT 2

static Waiters *checkwaiters(lua_State *L) {
  Waiters *w = (Waiters *)lua_touserdata(L, SELF);
  if (w == NULL || !lua_getmetatable(L, SELF) ||
      !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typeerror(L, SELF, EDDY_WAITERS);
  lua_pop(L, 1);
  return w;
}

/* {====================================================== Entries */

/* Append the value at the top (popped); counted once stored (storing it
** may fail for lack of memory). */
static void push_entry(lua_State *L, Waiters *w) {
  lua_getiuservalue(L, SELF, W_ENTRIES);
  lua_rotate(L, -2, 1);
  lua_rawseti(L, -2, w->tail + 1);
  w->tail++;
  lua_pop(L, 1);
}

/* Remove entry i of the table at index e; the later ones move down. */
static void remove_entry(lua_State *L, Waiters *w, int e, lua_Integer i) {
  lua_Integer j;
  if (i == w->head) {
    lua_pushnil(L);
    lua_rawseti(L, e, w->head++);
  } else {
    for (j = i; j < w->tail; j++) {
      lua_rawgeti(L, e, j + 1);
      lua_rawseti(L, e, j);
    }
    lua_pushnil(L);
    lua_rawseti(L, e, w->tail--);
  }
  if (w->head > w->tail) {  /* empty: restart at 1 */
    w->head = 1;
    w->tail = 0;
  }
}

/* The index of the entry whose userdata is 'p', or 0. */
static lua_Integer find_entry(lua_State *L, Waiters *w, int e, void *p) {
  lua_Integer i;
  for (i = w->head; i <= w->tail; i++) {
    void *q;
    lua_rawgeti(L, e, i);
    q = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (q == p) return i;
  }
  return 0;
}

/* Whether the entry at the top still waits: a task parked here, or a
** pending future.  A task cancelled while parked is no longer parked: its
** entry stays until its own wait removes it. */
static int waiting(lua_State *L, Waiters *w) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, -1);
  if (f->kind == EDDY_KIND_TASK) return ((eddy_Task *)f)->parked_on == w;
  return f->state == EDDY_FUT_PENDING;
}

/* Wake the entry at the top (popped). */
static void wake(lua_State *L, Waiters *w) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, -1);
  if (f->kind == EDDY_KIND_TASK)
    eddy__task_wake(L, (eddy_Task *)f, lua_gettop(L), w);
  else eddy__future_set_result(L, lua_gettop(L), 0);
  lua_pop(L, 1);
}

/* }====================================================== */

/* {====================================================== Waiting */

/* The bound loop, binding 'loop' on the first wait. */
static void bind_loop(lua_State *L, Waiters *w, eddy_Loop *loop) {
  if (w->loop == NULL) {
    w->loop = loop;
  } else if (w->loop != loop) {
    lua_getiuservalue(L, SELF, W_OWNER);
    eddy__error(L, "RuntimeError", "%s is bound to a different event loop",
                luaL_tolstring(L, -1, NULL));
  }
}

/* After the park: woken (nothing to return), or cancelled: (TAG, err)
** above WHAT. */
static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  Waiters *w = (Waiters *)lua_touserdata(L, SELF);
  lua_Integer i;
  (void)status;
  (void)ctx;
  if (!(lua_gettop(L) >= WHAT + 2 && eddy__istag(L, WHAT + 1))) return 0;
  lua_getiuservalue(L, SELF, W_ENTRIES);
  i = find_entry(L, w, lua_gettop(L), w->rt->current_task);
  if (i != 0) remove_entry(L, w, lua_gettop(L), i);
  lua_pushvalue(L, WHAT + 2);
  lua_pushboolean(L, i == 0);  /* not found: a wake had picked it */
  return 2;
}

/* w:wait(what) -> nothing, or err, woken */
static int w_wait(lua_State *L) {
  Waiters *w = checkwaiters(L);
  eddy_Runtime *rt = w->rt;
  const char *what = luaL_checkstring(L, WHAT);
  lua_settop(L, WHAT);  /* keeps 'what' alive */
  if (eddy__can_suspend_rt(L, rt, what)) {
    bind_loop(L, w, rt->current_task->fut.loop);
    eddy__push_current_task(L, rt);
    push_entry(L, w);
    return eddy__park(L, rt, w, 0, wait_k);
  }
  bind_loop(L, w, eddy__getloop(L));
  lua_pop(L, 1);  /* eddy__getloop pushed the loop */
  eddy__future_new(L, w->loop);  /* WHAT + 1 */
  lua_pushvalue(L, WHAT + 1);
  push_entry(L, w);
  if (eddy__pwait_toplevel(L, WHAT + 1, what) != LUA_OK) {  /* leave the FIFO */
    lua_Integer i;
    lua_getiuservalue(L, SELF, W_ENTRIES);
    i = find_entry(L, w, lua_gettop(L), lua_touserdata(L, WHAT + 1));
    if (i != 0) remove_entry(L, w, lua_gettop(L), i);
    lua_pop(L, 1);
    return lua_error(L);
  }
  return 0;
}

/* w:wake_one() -> whether a waiter was woken */
static int w_wake_one(lua_State *L) {
  Waiters *w = checkwaiters(L);
  int e;
  lua_Integer i;
  if (w->head > w->tail) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_getiuservalue(L, SELF, W_ENTRIES);
  e = lua_gettop(L);
  for (i = w->head; i <= w->tail; i++) {
    lua_rawgeti(L, e, i);
    if (waiting(L, w)) {
      wake(L, w);  /* first: should it fail (no memory), it still waits */
      remove_entry(L, w, e, i);
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* w:wake_all(): wake every waiter and empty the FIFO.  Each is woken
** before the FIFO forgets them: should a wake fail (no memory), the rest
** still wait, and the ones woken no longer do. */
static int w_wake_all(lua_State *L) {
  Waiters *w = checkwaiters(L);
  lua_Integer i;
  lua_getiuservalue(L, SELF, W_ENTRIES);
  for (i = w->head; i <= w->tail; i++) {
    lua_rawgeti(L, -1, i);
    if (waiting(L, w)) wake(L, w);
    else lua_pop(L, 1);
  }
  while (w->head <= w->tail) remove_entry(L, w, lua_gettop(L), w->head);
  return 0;
}

/* }====================================================== */

static int w_len(lua_State *L) {
  Waiters *w = checkwaiters(L);
  lua_pushinteger(L, w->tail - w->head + 1);
  return 1;
}

static int w_tostring(lua_State *L) {
  Waiters *w = checkwaiters(L);
  lua_pushfstring(L, "<eddy.Waiters %I waiting>",
                  (LUAI_UACINT)(w->tail - w->head + 1));
  return 1;
}

/* C.Waiters(owner) -> a new, empty FIFO */
static int c_waiters_new(lua_State *L) {
  Waiters *w = (Waiters *)lua_newuserdatauv(L, sizeof(Waiters), W_NUV);
  w->rt = eddy__runtime(L);
  w->loop = NULL;
  w->head = 1;
  w->tail = 0;
  lua_newtable(L);
  lua_setiuservalue(L, -2, W_ENTRIES);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, W_OWNER);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return 1;
}

static const luaL_Reg waiters_methods[] = {
  {"wait", w_wait},
  {"wake_one", w_wake_one},
  {"wake_all", w_wake_all},
  {NULL, NULL}
};

/* The core table at the top gets Waiters (a constructor; its methods are
** in Waiters_methods for the hot paths to keep as upvalues). */
void eddy__core_waiters(lua_State *L) {
  int mt;
  luaL_newmetatable(L, EDDY_WAITERS);
  mt = lua_gettop(L);
  lua_newtable(L);
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, waiters_methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Waiters_methods");
  lua_setfield(L, mt, "__index");
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, w_len, 1);
  lua_setfield(L, mt, "__len");
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, w_tostring, 1);
  lua_setfield(L, mt, "__tostring");
  lua_pushcclosure(L, c_waiters_new, 1);  /* the metatable is its upvalue */
  lua_setfield(L, -2, "Waiters");
}
