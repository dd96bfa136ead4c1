/*
** coro.c -- nested coroutines stay transparent inside tasks (API.md §6).
**
** coroutine.resume and coroutine.wrap are replaced by versions that behave
** exactly like lcorolib's, except for eddy's own yields (those whose first
** value is the await tag): these are passed on outward, from the nested
** coroutine to the one that resumed it and so on up to the task, and the
** values the task is resumed with are passed back in.  A generator's own
** yields still reach its consumer.  coroutine.yield is replaced too, so
** that a task at a bare yield can be thrown into (co_yield).
*/
#include "internal.h"

enum { MODE_RESUME, MODE_WRAP, MODE_DRIVE };

/*
** A task's coroutine, and a coroutine object a task drives, belong to
** that task: resumed or closed from elsewhere, it moves on without its
** task, which then waits forever or steps it with the results of the
** wrong await.  The task files them in a weak-keyed set in the registry.
** (Not in the threads' extra space: a host that loads eddy with require
** may keep its own pointer there, which every coroutine inherits.)
** A task's own coroutine is filed only when Lua code first gets hold of
** it, from coroutine.running() or task:get_coro(): most never are, and an
** entry cost every task ~31 bytes and the collector a weak entry to clear.
** A coroutine that coroutine.resume (or a wrap) runs inside a task is
** filed while it waits for eddy, passing the suspension out to the task.
*/
static const char key_task_coros = 0;

void eddy__co_mark_task(lua_State *L, int i) {
  eddy__weakset_put(L, &key_task_coros, i, 1);
}

int eddy__co_is_task(lua_State *L, int i) {
  return eddy__weakset_has(L, &key_task_coros, i);
}

/* Not dead: suspended, or not started yet (or running). */
static int is_alive(lua_State *co) {
  return lua_status(co) == LUA_YIELD ||
         (lua_status(co) == LUA_OK && lua_gettop(co) > 0);
}

#define TASK_OWNED "cannot %s a coroutine that a task runs"

static int resume_k(lua_State *L, int status, lua_KContext ctx);

/* Finish like lcorolib's auxresume + luaB_coresume / auxwrap. */
static int finish(lua_State *L, lua_State *co, int status, int nres,
                  int mode) {
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      if (mode == MODE_RESUME) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "too many results to resume");
        return 2;
      }
      return luaL_error(L, "too many results to resume");
    }
    if (mode == MODE_RESUME) lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return mode == MODE_RESUME ? nres + 1 : nres;
  }
  lua_xmove(co, L, 1);  /* the error */
  if (mode == MODE_RESUME) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  if (mode == MODE_WRAP) {
    int stat = eddy__closethread(co, L);
    if (stat != LUA_OK && stat != status) {  /* error while closing */
      lua_pop(L, 1);
      lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
  }
  return lua_error(L);
}

/*
** Resume the coroutine at index 1 with the 'narg' values at the top.
** Loops while the coroutine suspends for eddy and the caller cannot pass
** the suspension on (then the coroutine gets an error thrown in).
*/
static int resume_step(lua_State *L, int narg, int mode) {
  lua_State *co = lua_tothread(L, 1);
  int status, nres;
  if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    lua_settop(L, 1);
    lua_pushliteral(L, "cannot resume dead coroutine");
    if (mode == MODE_RESUME) {
      lua_pushboolean(L, 0);
      lua_insert(L, -2);
      return 2;
    }
    if (mode == MODE_WRAP) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  if (!lua_checkstack(co, narg)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "too many arguments to resume");
    if (mode == MODE_RESUME) {
      lua_pushboolean(L, 0);
      lua_insert(L, -2);
      return 2;
    }
    return lua_error(L);
  }
  lua_xmove(L, co, narg);
  status = lua_resume(co, L, narg, &nres);
  if (status == LUA_YIELD &&
      (mode == MODE_DRIVE || (nres >= 1 && eddy__istag(co, -nres)))) {
    if (!lua_isyieldable(L)) {
      /* The suspension cannot go further out: fail it inside. */
      lua_pop(co, nres);
      eddy__pushtag(co);
      eddy__pusherror(L, "RuntimeError",
                      "cannot suspend: a C function (such as table.sort or "
                      "a metamethod called from C) stands between this "
                      "coroutine and its task");
      lua_xmove(L, co, 1);
      status = lua_resume(co, L, 2, &nres);
      if (status == LUA_YIELD && nres >= 1 && eddy__istag(co, -nres)) {
        lua_pop(co, nres);
        return luaL_error(L, "coroutine kept suspending after an error");
      }
      if (mode == MODE_DRIVE && status == LUA_OK) return nres;
      return finish(L, co, status, nres, mode == MODE_DRIVE ? MODE_WRAP : mode);
    }
    if (!lua_checkstack(L, nres)) return luaL_error(L, "too many results");
    if (mode != MODE_DRIVE) eddy__weakset_put(L, &key_task_coros, 1, 1);  /* until resume_k */
    lua_xmove(co, L, nres);
    return lua_yieldk(L, nres, (lua_KContext)mode, resume_k);
  }
  if (mode == MODE_DRIVE) {
    if (status == LUA_OK) {
      luaL_checkstack(L, nres, "too many results");
      lua_xmove(co, L, nres);
      return nres;
    }
    lua_xmove(co, L, 1);
    eddy__closethread(co, L);  /* run its pending <close> variables */
    return lua_error(L);
  }
  return finish(L, co, status, nres, mode);
}

/* Resumed from outside: pass what we got into the coroutine. */
static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if ((int)ctx != MODE_DRIVE) eddy__weakset_put(L, &key_task_coros, 1, 0);
  return resume_step(L, lua_gettop(L) - 1, (int)ctx);
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  if (is_alive(co) && eddy__co_is_task(L, 1)) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, TASK_OWNED, "resume");
    return 2;
  }
  return resume_step(L, lua_gettop(L) - 1, MODE_RESUME);
}

/* coroutine.close, the original at upvalue 1, refusing a task's. */
static int co_close(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co != NULL && is_alive(co) && eddy__co_is_task(L, 1))
    return luaL_error(L, TASK_OWNED " (cancel the task instead)", "close");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int co_auxwrap(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return resume_step(L, lua_gettop(L) - 1, MODE_WRAP);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  {
    lua_State *NL = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, NL, 1);
  }
  lua_pushcclosure(L, co_auxwrap, 1);
  return 1;
}

/* Whether the coroutine at i is running (the main thread, the one
** running now) or normal (it resumed the one running): a task must not
** take it, as coroutine.resume refuses to resume it. */
int eddy__co_is_active(lua_State *L, int i) {
  lua_State *co = lua_tothread(L, i);
  lua_Debug ar;
  return co == L || (lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar));
}

/* Task body for a coroutine object: (co, args...) -> its results, passing
** every yield (eddy's or bare) on to the task. */
int eddy__co_drive(lua_State *L);
int eddy__co_drive(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  if (!is_alive(lua_tothread(L, 1)))  /* finished, or died of an error */
    return eddy__error(L, "RuntimeError",
                       "cannot reuse already awaited coroutine");
  return resume_step(L, lua_gettop(L) - 1, MODE_DRIVE);
}

/* coroutine.yield, lcorolib's but for a throw: a task (or the coroutine
** object it drives) giving up a turn with a bare yield is resumed with
** (TAG, err) to be cancelled, and err is raised there, as asyncio throws
** into a coroutine at its bare yield; returned as values, the Lua code
** would never see it, and the task would go on as if never cancelled.
** Only eddy resumes with the tag: a generator's consumer cannot make it. */
static int co_yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  eddy__check_throw(L, 0);
  return lua_gettop(L);
}

static int co_yield(lua_State *L) {
  return lua_yieldk(L, lua_gettop(L), 0, co_yield_k);
}

/* coroutine.running, filing the coroutine of the task running it (see
** key_task_coros). */
static int co_running(lua_State *L) {
  eddy_Task *t = eddy__runtime(L)->current_task;
  int ismain = lua_pushthread(L);
  if (t != NULL && t->co == L) eddy__co_mark_task(L, -1);
  lua_pushboolean(L, ismain);
  return 2;
}

void eddy__open_coro(lua_State *L) {
  lua_getglobal(L, "coroutine");
  if (lua_istable(L, -1)) {
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_running);
    lua_setfield(L, -2, "running");
    lua_pushcfunction(L, co_yield);
    lua_setfield(L, -2, "yield");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
    if (lua_getfield(L, -1, "close") == LUA_TFUNCTION) {
      lua_pushcclosure(L, co_close, 1);
      lua_setfield(L, -2, "close");
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}
