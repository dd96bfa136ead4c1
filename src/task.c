/*
** task.c -- asyncio's Task: a Future that drives a Lua coroutine.
**
** Invariant (as asyncio's tasks.py):
**  - either WAITER holds a Future and no step is scheduled,
**  - or WAITER is nil and a step is in the ready queue (t->scheduled),
**  - or the task is done.
**
** The coroutine's body is task_body(), a C function that calls the user
** function under a yieldable pcall (lua_pcallk): when the body fails, the
** error unwinds to that pcall inside the coroutine, so its <close>
** variables close where they may still suspend.  The body yields
** (TAG, future) to wait, or (TAG) alone to give up one turn; a yield of
** nothing (or nils) is a bare yield (one turn), of anything else an
** error raised at that yield (asyncio's "Task got bad yield").  To throw
** into a suspended task the step resumes it with (TAG, error): every eddy
** continuation checks that, coroutine.yield too (src/coro.c).
*/
#include <math.h>
#include <string.h>

#include "internal.h"

void eddy__push_cancelled_error(lua_State *L, int i);

eddy_Task *eddy__totask(lua_State *L, int i) {
  return (eddy_Task *)luaL_testudata(L, i, EDDY_TASK);
}

static eddy_Task *checktask(lua_State *L, int i) {
  return (eddy_Task *)luaL_checkudata(L, i, EDDY_TASK);
}

/* {====================================================== The body */

static int task_body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    lua_pushboolean(L, 1);
    lua_replace(L, 1);  /* replaces the message handler */
    return lua_gettop(L);
  }
  lua_pushboolean(L, 0);
  lua_replace(L, 1);
  lua_settop(L, 2);
  return 2;  /* false, error */
}

/* Levels of a stack get_stack looks at, from the innermost: lua_getstack
** walks the call chain from the top on every call, so reading a whole
** stack overflow's 200,000 levels would take minutes. */
#define MAX_STACK_LEVELS 200

/* Push an array of co's Lua frames from 'level' out to the oldest (at
** most MAX_STACK_LEVELS levels), oldest first, each {source =, line =,
** name =}; C functions are left out. */
static void push_frames(lua_State *L, lua_State *co, int level) {
  lua_Debug ar;
  int top;
  lua_newtable(L);
  for (top = level;
       top < level + MAX_STACK_LEVELS && lua_getstack(co, top, &ar); top++) {}
  while (--top >= level) {
    if (!lua_getstack(co, top, &ar) || !lua_getinfo(co, "Sln", &ar) ||
        ar.what[0] == 'C')
      continue;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, ar.short_src);
    lua_setfield(L, -2, "source");
    lua_pushinteger(L, ar.currentline);
    lua_setfield(L, -2, "line");
    lua_pushstring(L, ar.name != NULL ? ar.name : "?");
    lua_setfield(L, -2, "name");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
}

static void push_extra(lua_State *L, int i);

/*
** Message handler of task bodies: the error value stays what was raised
** (a task's error is re-raised as is where it is awaited); error objects
** get a 'traceback' field, as API.md §9 says, and any other error (a
** string) gets one kept with the task.  Either is the first one: an
** error re-raised from a task it awaited keeps that task's.  The frames
** the error passed through are kept for get_stack, as asyncio keeps a
** failed task's traceback.  Both go in the task's EXTRA here: its
** <close> variables may still suspend before it ends, and other tasks
** fail meanwhile.
*/
static int task_msgh(lua_State *L) {
  int extra;
  if (lua_isnil(L, 1)) {  /* exception() gives nil only when there is none */
    lua_pushliteral(L, "(error object is a nil value)");  /* as lua.c says */
    lua_replace(L, 1);
  }
  eddy__instantiate_class(L, 1);
  if (eddy__iserror(L, 1, "CancelledError")) return 1;
  eddy__push_current_task(L, eddy__runtime(L));
  push_extra(L, lua_gettop(L));
  extra = lua_gettop(L);
  /* Cleared first: an earlier error's (a <close> variable raised anew),
  ** or, if this handler itself fails (out of memory), none. */
  lua_pushnil(L);
  lua_setfield(L, extra, "stack");
  lua_pushnil(L);
  lua_setfield(L, extra, "traceback");
  if (lua_type(L, 1) == LUA_TTABLE) {
    eddy__keep_traceback(L, 1);
  } else {
    if (!eddy__push_reraised_traceback(L, 1, 0))
      luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, extra, "traceback");
  }
  push_frames(L, L, 1);
  lua_setfield(L, extra, "stack");
  lua_settop(L, 1);
  return 1;
}

/* The coroutine's main function: (fn, args...) -> true, results... or
** false, error. */
static int task_body(lua_State *L) {
  int n = lua_gettop(L) - 1;
  lua_pushcfunction(L, task_msgh);
  lua_insert(L, 1);
  return task_body_k(L, lua_pcallk(L, n, LUA_MULTRET, 1, 0, task_body_k), 0);
}

/* }====================================================== */

/* {====================================================== Creation */

extern int eddy__co_drive(lua_State *L);  /* coro.c */

eddy_Task *eddy__task_new(lua_State *L, eddy_Loop *loop, int nargs) {
  eddy_Runtime *rt = loop->rt;
  int fn = lua_gettop(L) - nargs;
  eddy_Task *t;
  lua_State *co;
  if (lua_type(L, fn) == LUA_TTHREAD && eddy__co_is_task(L, fn))
    eddy__error(L, "RuntimeError", "coroutine is already run by a task");
  if (lua_type(L, fn) == LUA_TTHREAD && eddy__co_is_active(L, fn))
    eddy__error(L, "RuntimeError", "cannot resume non-suspended coroutine");
  t = (eddy_Task *)lua_newuserdatauv(L, sizeof(eddy_Task), TASK_NUV - 1);
  memset(t, 0, sizeof *t);
  t->fut.kind = EDDY_KIND_TASK;
  t->fut.loop = loop;
  t->id = ++rt->task_counter;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->mt_task_ref);
  lua_setmetatable(L, -2);
  lua_insert(L, fn);      /* task, fn, args... */
  co = lua_newthread(L);  /* filed as the task's when Lua code sees it */
  lua_insert(L, fn + 1);  /* task, co, fn, args... */
  lua_pushcfunction(co, task_body);
  t->nargs = nargs + 1;
  if (lua_type(L, fn + 2) == LUA_TTHREAD) {
    /* A coroutine object: the body drives it (task_body(co_drive, co...)),
    ** so its results and errors follow the body's protocol. */
    lua_pushcfunction(co, eddy__co_drive);
    t->nargs++;
    eddy__co_mark_task(L, fn + 2);
    push_extra(L, fn);  /* get_coro() returns it, as asyncio does */
    lua_pushvalue(L, fn + 2);
    lua_setfield(L, -2, "coro");
    lua_pop(L, 1);
  }
  lua_xmove(L, co, nargs + 1);
  t->co = co;
  lua_setiuservalue(L, fn, TASK_UV_CORO);
  eddy__pushloop(L, loop);
  lua_setiuservalue(L, fn, FUT_UV_LOOP);
  t->has_ctx = (unsigned char)eddy__keep_context(L, rt);  /* runs in a copy */
  if (t->has_ctx) lua_setiuservalue(L, fn, TASK_UV_CTX);
  if (loop->debug) {
    push_extra(L, fn);
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "tb");
    lua_pop(L, 1);
  }
  /* all_tasks(): the loop's weak set of tasks */
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->tasks_ref);
  lua_pushvalue(L, fn);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  t->scheduled = 1;
  eddy__ready_push(L, loop, fn);
  eddy__loop_tasks(loop, 1);
  return t;
}

/* }====================================================== */

/* {====================================================== Stepping */

/* Push the EXTRA table of the task at i, creating it. */
static void push_extra(lua_State *L, int i) {
  if (lua_getiuservalue(L, i, FUT_UV_EXTRA) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, i, FUT_UV_EXTRA);
}

/* Make the next step resume the task with the error at the top (popped). */
static void throw_later(lua_State *L, eddy_Task *t, int ti) {
  push_extra(L, ti);
  lua_insert(L, -2);
  lua_setfield(L, -2, "throw");
  lua_pop(L, 1);
  t->throw_pending = 1;
  t->scheduled = 1;
  eddy__ready_push(L, t->fut.loop, ti);
}

/* Wake the parked task t, at ti, with its CancelledError.  The park
** stands for the future asyncio's task would wait on, which cancel()
** cancels: the error comes whatever uncancel() does before the step
** (uncancel() to 0 clears must_cancel, as asyncio's _must_cancel). */
static void cancel_park(lua_State *L, eddy_Task *t, int ti) {
  int top = lua_gettop(L);
  ti = lua_absindex(L, ti);
  t->parked_on = NULL;
  t->cancel_woke = 1;
  eddy__push_cancelled_error(L, ti);
  throw_later(L, t, ti);
  lua_settop(L, top);
}

/* Cancel the future at i through its own cancel method (a subclass, such
** as gather's, may override it).  Returns its boolean result. */
static int cancel_waiter(lua_State *L, int i, int msg) {
  int r;
  i = lua_absindex(L, i);
  if (msg != 0) msg = lua_absindex(L, msg);
  lua_getfield(L, i, "cancel");
  lua_pushvalue(L, i);
  if (msg != 0) lua_pushvalue(L, msg); else lua_pushnil(L);
  lua_call(L, 2, 1);
  r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

static void push_cancel_message(lua_State *L, int ti) {
  if (lua_getiuservalue(L, ti, FUT_UV_EXTRA) == LUA_TTABLE) {
    lua_getfield(L, -1, "msg");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

/* Set the message a cancelled task's CancelledError carries to the value
** at idx, nil included (no extra table is made for a nil). */
static void set_cancel_message(lua_State *L, int ti, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx)) {
    if (lua_getiuservalue(L, ti, FUT_UV_EXTRA) == LUA_TTABLE) {
      lua_pushnil(L);
      lua_setfield(L, -2, "msg");
    }
  } else {
    push_extra(L, ti);
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "msg");
  }
  lua_pop(L, 1);
}

/* The body returned or failed: complete the task.  Results (or the error)
** are the 'nres' values at the top of co. */
static void task_finish(lua_State *L, eddy_Task *t, int ti, lua_State *co,
                        int nres, int ok) {
  if (ok) {
    luaL_checkstack(L, nres, "too many results");
    lua_xmove(co, L, nres);
    if (t->must_cancel) {  /* cancel() came after the last suspension */
      lua_pop(L, nres);
      t->must_cancel = 0;
      push_cancel_message(L, ti);
      eddy__future_cancel(L, ti, -1);
      lua_pop(L, 1);
    } else {
      eddy__future_set_result_unless_done(L, ti, nres);
    }
  } else {
    lua_xmove(co, L, 1);
    if (eddy__iserror(L, -1, "CancelledError")) {
      /* It ends with the CancelledError it raised: that one's message,
      ** not one a cancel() left (asyncio keeps it as _cancelled_exc). */
      lua_getfield(L, -1, "message");
      set_cancel_message(L, ti, -1);
      eddy__future_cancel(L, ti, -1);
      lua_pop(L, 2);
    } else {
      eddy__future_set_exception(L, ti);
    }
  }
  lua_settop(co, 0);
}

/* Resume the task t, at ti, with the nargs values at the top of its
** coroutine, as the running task, in its context; returns lua_resume's
** status, its nres results on the coroutine.  Raises only when t has a
** context of its own (luaL_ref). */
static int resume_task(lua_State *L, eddy_Task *t, int ti, int nargs,
                       int *nres) {
  eddy_Runtime *rt = t->fut.loop->rt;
  eddy_Task *prev_task = rt->current_task;
  int prev_index = rt->current_task_index, prevctx = rt->context_ref, status;
  unsigned epoch;
  /* Enter the task: current task and its context.  A task that has no
  ** context runs in the base one (nil) until it sets a variable. */
  rt->current_task = t;
  rt->current_task_index = ti;
  rt->context_ref = LUA_NOREF;
  if (t->has_ctx) {
    lua_getiuservalue(L, ti, TASK_UV_CTX);
    rt->context_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  epoch = rt->context_epoch;
  status = lua_resume(t->co, L, nargs, nres);
  if (rt->context_epoch != epoch) {  /* the task switched context */
    /* (ctx:run(fn) suspended in fn, a first variable set, or back to the
    ** base context): it resumes there next time */
    t->has_ctx = rt->context_ref != LUA_NOREF;
    if (t->has_ctx) lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
    else lua_pushnil(L);
    lua_setiuservalue(L, ti, TASK_UV_CTX);
  }
  if (rt->context_ref != LUA_NOREF)  /* see context_ref */
    luaL_unref(L, LUA_REGISTRYINDEX, rt->context_ref);
  rt->context_ref = prevctx;
  rt->current_task = prev_task;
  rt->current_task_index = prev_index;
  return status;
}

/* Whether a step that resumed t with 'status' ended with t parked again
** and nothing else to do: the step is over (the values of the yield
** dropped).  Raises nothing. */
static int parked_again(eddy_Task *t, int status, int nres) {
  if (status != LUA_YIELD || t->parked_on == NULL || t->must_cancel)
    return 0;
  if (nres > 0) lua_pop(t->co, nres);
  return 1;
}

static void step_outcome(lua_State *L, eddy_Task *t, int ti, int status,
                         int nres);

void eddy__task_step(lua_State *L, eddy_Task *t) {
  int ti = lua_gettop(L);
  int nargs, status, nres = 0, waiter = 0;
  lua_State *co;
  t->scheduled = 0;
  t->cancel_woke = 0;
  if (t->fut.state != EDDY_FUT_PENDING) {
    lua_settop(L, ti - 1);
    return;
  }
  /* The future it was woken from, if any (asyncio: _fut_waiter, cleared
  ** by __step); it stays at 'waiter' for the must_cancel case below. */
  if (t->has_waiter) {
    t->has_waiter = 0;
    lua_getiuservalue(L, ti, TASK_UV_WAITER);
    waiter = lua_gettop(L);
    lua_pushnil(L);
    lua_setiuservalue(L, ti, TASK_UV_WAITER);
  }
  co = t->co;
  if (!t->started) {
    t->started = 1;
    if (t->must_cancel) {  /* cancelled before it ran: nothing runs */
      t->must_cancel = 0;
      lua_settop(co, 0);
      push_cancel_message(L, ti);
      eddy__future_cancel(L, ti, -1);
      lua_settop(L, ti - 1);
      return;
    }
    nargs = t->nargs;
  } else if (t->must_cancel || t->throw_pending) {
    if (t->throw_pending) {
      push_extra(L, ti);
      lua_getfield(L, -1, "throw");
      lua_pushnil(L);
      lua_setfield(L, -3, "throw");
      lua_remove(L, -2);
      t->throw_pending = 0;
      if (t->must_cancel) {  /* a cancel() since: as asyncio's __step, */
        t->must_cancel = 0;  /* its CancelledError replaces any other */
        if (!eddy__iserror(L, -1, "CancelledError")) {
          lua_pop(L, 1);
          eddy__push_cancelled_error(L, ti);
        }
      }
    } else {
      /* cancel() came after the awaited future was done, before this
      ** step: as asyncio's __wakeup, its outcome is retrieved (its error
      ** is not reported), and a CancelledError it raises (it was
      ** cancelled, or failed with one, as gather's future does) is
      ** raised as is; any other outcome gives way to the task's. */
      eddy_Future *wf = waiter ? eddy__tofuture(L, waiter) : NULL;
      int raised = 0;
      t->must_cancel = 0;
      if (wf != NULL && wf->state == EDDY_FUT_CANCELLED) {
        eddy__push_cancelled_error(L, waiter);
        raised = 1;
      } else if (wf != NULL && wf->state == EDDY_FUT_FINISHED) {
        wf->flags &= (unsigned char)~FUT_LOG_TB;
        if (wf->flags & FUT_EXCEPTION) {
          lua_getiuservalue(L, waiter, FUT_UV_RESULT);
          if (eddy__iserror(L, -1, "CancelledError")) raised = 1;
          else lua_pop(L, 1);
        }
      }
      if (!raised) eddy__push_cancelled_error(L, ti);
    }
    eddy__pushtag(co);
    lua_xmove(L, co, 1);
    nargs = 2;
  } else {
    nargs = 0;
  }
  status = resume_task(L, t, ti, nargs, &nres);
  if (!parked_again(t, status, nres)) step_outcome(L, t, ti, status, nres);
}

int eddy__task_step_begin(lua_State *L, eddy_Task *t, int ti, int *nres) {
  int status;
  if (!t->started || t->must_cancel || t->throw_pending || t->has_ctx ||
      t->has_waiter || t->fut.state != EDDY_FUT_PENDING)
    return EDDY_STEP_NOT_BEGUN;
  t->scheduled = 0;
  t->cancel_woke = 0;
  status = resume_task(L, t, ti, 0, nres);
  return parked_again(t, status, *nres) ? EDDY_STEP_DONE : status;
}

/* Whether the nres values a task's coroutine yielded, none of them
** eddy's tag, hold one that is not nil: no bare yield (Python's `yield
** None`) but a value the task cannot use. */
static int bad_yield(lua_State *co, int nres) {
  int i;
  if (nres > 0 && eddy__istag(co, -nres)) return 0;
  for (i = 1; i <= nres; i++)
    if (!lua_isnil(co, -i)) return 1;
  return 0;
}

/* (future, task): the task waits on the future. */
static int add_waiter_protected(lua_State *L) {
  eddy__future_add_waiter(L, 1, 2);
  return 0;
}

/* Make the task at ti wait on the future f at the top; or, when there is
** no memory for that, have the await raise the error in the next step:
** suspended with nothing to wake it, the task would wait forever.
** Returns whether it waits. */
static int add_waiter(lua_State *L, eddy_Task *t, int ti, eddy_Future *f) {
  if (f->ncallbacks == 0) {  /* the waiter goes in its own slot: no memory */
    eddy__future_add_waiter(L, -1, ti);
    return 1;
  }
  lua_pushcfunction(L, add_waiter_protected);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, ti);
  if (lua_pcall(L, 2, 0, 0) == LUA_OK) return 1;
  throw_later(L, t, ti);
  return 0;
}

/* (static, so that eddy__task_step has it inline) */
static void step_outcome(lua_State *L, eddy_Task *t, int ti, int status,
                         int nres) {
  eddy_Loop *loop = t->fut.loop;
  lua_State *co = t->co;
  if (status == LUA_YIELD) {
    /* Room for the task in the ready queue first, so that a push below
    ** cannot fail (no memory) and leave it suspended for ever. */
    eddy__ready_reserve(L, loop, 1);
    /* (TAG, future) comes from eddy__await and sleep, which checked the
    ** future; but a coroutine.resume saved before eddy replaced it can
    ** hand the tag to Lua code, so the future is checked again. */
    if (t->parked_on == NULL && nres == 2 && eddy__istag(co, -2) &&
        lua_islightuserdata(co, -1))  /* eddy__park from a nested coroutine */
      t->parked_on = lua_touserdata(co, -1);
    if (t->parked_on != NULL) {  /* eddy__park: its object wakes it */
      if (nres > 0) lua_pop(co, nres);
      if (t->must_cancel) {  /* cancel() came while it ran */
        t->must_cancel = 0;
        cancel_park(L, t, ti);
      }
    } else if (nres >= 2 && eddy__istag(co, -nres) &&
        eddy__tofuture(co, -nres + 1) != NULL) {
      eddy_Future *f;
      lua_pushvalue(co, -nres + 1);
      lua_xmove(co, L, 1);
      lua_pop(co, nres);
      f = (eddy_Future *)lua_touserdata(L, -1);
      if (f->loop != loop) {
        eddy__pusherror(L, "RuntimeError",
                        "Task got Future attached to a different loop");
        throw_later(L, t, ti);
      } else if ((void *)f == (void *)t) {
        eddy__pusherror(L, "RuntimeError", "Task cannot await on itself");
        throw_later(L, t, ti);
      } else if (f->state != EDDY_FUT_PENDING) {
        t->scheduled = 1;
        eddy__ready_push(L, loop, ti);
      } else if (add_waiter(L, t, ti, f)) {
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, ti, TASK_UV_WAITER);
        t->has_waiter = 1;
        if (t->must_cancel) {
          push_cancel_message(L, ti);
          if (cancel_waiter(L, -2, -1)) t->must_cancel = 0;
        }
      }
    } else if (bad_yield(co, nres)) {
      /* asyncio's "Task got bad yield": a value yielded to the task is
      ** no suspension (a coroutine.yield(fut) meant as an await, a value
      ** nobody consumes); it is raised at that yield, in the next step */
      lua_pushvalue(co, -nres);
      lua_xmove(co, L, 1);
      lua_pop(co, nres);
      eddy__brief(L, 1);
      eddy__pusherror(L, "RuntimeError", "Task got bad yield: %s",
                      lua_tostring(L, -1));
      lua_remove(L, -2);
      throw_later(L, t, ti);
    } else {  /* bare yield (nothing, or nils): one turn */
      lua_pop(co, nres);
      t->scheduled = 1;
      eddy__ready_push(L, loop, ti);
    }
  } else if (status == LUA_OK) {
    int ok = lua_toboolean(co, -nres);
    if (ok) {
      task_finish(L, t, ti, co, nres - 1, 1);
    } else {
      task_finish(L, t, ti, co, 1, 0);
    }
  } else {  /* an error outside the body's pcall (memory, drive errors) */
    lua_xmove(co, L, 1);
    eddy__closethread(co, L);
    if (eddy__iserror(L, -1, "CancelledError")) {
      lua_getfield(L, -1, "message");
      eddy__future_cancel(L, ti, -1);
    } else {
      eddy__future_set_exception(L, ti);
    }
  }
  /* the stack above ti - 1 is the caller's to drop */
}

void eddy__task_step_outcome(lua_State *L, eddy_Task *t, int ti, int status,
                             int nres) {
  step_outcome(L, t, ti, status, nres);
}

/* }====================================================== */

/* {====================================================== Suspending */

int eddy__can_suspend(lua_State *L, const char *what) {
  return eddy__can_suspend_rt(L, eddy__runtime(L), what);
}

/* eddy__can_suspend_rt when no task runs or L cannot yield: why not. */
int eddy__can_suspend_other(lua_State *L, eddy_Runtime *rt, const char *what) {
  int ismain = lua_pushthread(L);
  lua_pop(L, 1);
  if (ismain && rt->running == NULL) return 0;  /* top-level suspension */
  if (rt->current_task != NULL)  /* a task runs, but L cannot yield to it */
    return eddy__error(L, "RuntimeError",
                       "%s() cannot suspend here: a C function (such as "
                       "table.sort, string.gsub or a metamethod called from "
                       "C) stands between this call and its task", what);
  return eddy__error(L, "RuntimeError",
                     "%s() cannot suspend here: call it from a task "
                     "(eddy.run(main), loop:run_until_complete or "
                     "loop:create_task)", what);
}

/* After a suspension: resumed with (TAG, err) means "raise err". */
void eddy__check_throw(lua_State *L, int base) {
  if (lua_gettop(L) >= base + 2 && eddy__istag(L, base + 1)) {
    lua_pushvalue(L, base + 2);
    lua_error(L);
  }
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  int F = (int)ctx;
  (void)status;
  eddy__check_throw(L, F);
  lua_settop(L, F);
  return eddy__future_result(L, F);
}

void eddy__wait_toplevel(lua_State *L, int F, const char *what) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, F);
  int alive;
  eddy__check_open(L, f->loop);
  alive = eddy__loop_run(L, f->loop, f, 0);
  if (f->state == EDDY_FUT_PENDING) {
    if (!alive)
      eddy__error(L, "RuntimeError",
                  "%s(): the loop has no live work left that could "
                  "complete this future", what);
    eddy__error(L, "RuntimeError",
                "Event loop stopped before Future completed.");
  }
}

/* (what, fut): eddy__wait_toplevel, for eddy__pwait_toplevel. */
static int wait_toplevel_protected(lua_State *L) {
  eddy__wait_toplevel(L, 2, lua_tostring(L, 1));
  return 0;
}

int eddy__pwait_toplevel(lua_State *L, int F, const char *what) {
  F = lua_absindex(L, F);
  lua_pushcfunction(L, wait_toplevel_protected);
  lua_pushstring(L, what);
  lua_pushvalue(L, F);
  return lua_pcall(L, 2, 0, 0);
}

int eddy__await(lua_State *L, int i, const char *what) {
  eddy_Future *f = eddy__checkfuture(L, i);
  /* First, even for a done future: where nothing can suspend it raises
  ** (API.md §1, §11), whether or not it would have had to wait. */
  int in_task = eddy__can_suspend_rt(L, f->loop->rt, what), F;
  if (f->state != EDDY_FUT_PENDING) return eddy__future_result(L, i);
  lua_pushvalue(L, i);
  F = lua_gettop(L);
  if (in_task) {
    eddy__pushtag(L);
    lua_pushvalue(L, F);
    return lua_yieldk(L, 2, (lua_KContext)F, await_k);
  }
  eddy__wait_toplevel(L, F, what);
  return eddy__future_result(L, F);
}

int eddy__park(lua_State *L, eddy_Runtime *rt, const void *key,
               lua_KContext ctx, lua_KFunction k) {
  eddy_Task *t = rt->current_task;
  if (L == t->co) {
    t->parked_on = key;
    return lua_yieldk(L, 0, ctx, k);  /* straight to its step */
  }
  /* From a nested coroutine the task is parked only once the yield
  ** reaches its step (step_outcome): a resume that does not pass it on
  ** (across a C function, or a coroutine.resume saved before eddy replaced
  ** it) would leave the task marked parked, its next suspension taken for
  ** this park and never woken. */
  eddy__pushtag(L);  /* tagged, so nested coroutine.wrap forwards it */
  lua_pushlightuserdata(L, (void *)key);
  return lua_yieldk(L, 2, ctx, k);
}

/* Whether a wake for 'key' wakes t, now scheduled if so. */
/* Whether t, parked on key, is woken now: then it is no longer parked,
** and has room in the ready queue, made first (it may raise: no memory),
** so that the push that follows cannot fail and lose it. */
static int wakes(lua_State *L, eddy_Task *t, const void *key) {
  if (t->parked_on != key || t->fut.loop->state == EDDY_LOOP_CLOSED) return 0;
  eddy__ready_reserve(L, t->fut.loop, 1);
  t->parked_on = NULL;
  t->scheduled = 1;
  return 1;
}

void eddy__task_wake(lua_State *L, eddy_Task *t, int ti, const void *key) {
  if (wakes(L, t, key)) eddy__ready_push(L, t->fut.loop, ti);
}

void eddy__task_wake_uv(lua_State *L, eddy_Task *t, int ud, int uv,
                        const void *key) {
  if (wakes(L, t, key)) eddy__ready_push_uv(L, t->fut.loop, ud, uv);
}

void eddy__task_wake_now(lua_State *L, eddy_Task *t, int ti,
                         const void *key) {
  if (t->parked_on != key || !eddy__loop_may_step_now(t->fut.loop)) {
    eddy__task_wake(L, t, ti, key);
    return;
  }
  t->parked_on = NULL;
  eddy__loop_step_task(L, t->fut.loop, t, ti);
}

/* eddy.await(aw): a Future/Task, or a function run as a task (made by the
** loop's task factory, if any, as gather's and wait_for's are). */
static int c_await(lua_State *L) {
  luaL_checkany(L, 1);
  if (eddy__tofuture(L, 1) == NULL) {
    eddy_Loop *loop;
    if (lua_type(L, 1) != LUA_TTHREAD && lua_type(L, 1) != LUA_TFUNCTION) {
      if (luaL_getmetafield(L, 1, "__call") == LUA_TNIL)
        return luaL_argerror(L, 1, lua_pushfstring(L,
            "awaitable expected: Future, Task or function; got %s",
            luaL_typename(L, 1)));
      lua_pop(L, 1);
    }
    /* Raise before a task is made that nobody would wait for. */
    eddy__can_suspend(L, "await");
    loop = eddy__getopenloop(L);
    eddy__loop_create_task(L, loop, lua_gettop(L) - 1);  /* the task at 1 */
  }
  lua_settop(L, 1);
  return eddy__await(L, 1, "await");
}

/* Timer callback of sleep(): complete the future unless already done. */
static int set_result_unless_done(lua_State *L) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, 1);
  if (f->state == EDDY_FUT_PENDING)
    eddy__future_set_result_unless_done(L, 1, lua_gettop(L) - 1);
  return 0;
}

/* Argument i is a plain future (not a task). */
static void check_plain_future(lua_State *L, int i) {
  luaL_argexpected(L, eddy__checkfuture(L, i)->kind == EDDY_KIND_FUTURE, i,
                   "Future");
}

/* _set_result_unless_done(fut, ...): how the done callbacks and timers of
** eddy's Lua parts (wait, TaskGroup) complete the future someone awaits:
** a done one is left as it is, and with no memory for the outcome the
** future fails with that memory error instead, so that its waiter wakes
** up rather than wait for ever (eddy__future_set_result_unless_done). */
static int c_set_result_unless_done(lua_State *L) {
  check_plain_future(L, 1);
  return set_result_unless_done(L);
}

/* Stack of sleep: delay, extras..., fut (F), handle (F + 1). */
static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  int F = (int)ctx;
  (void)status;
  eddy__handle_cancel(L, F + 1);
  eddy__check_throw(L, F + 1);
  eddy__future_result(L, F);  /* raises CancelledError if cancelled */
  lua_settop(L, F - 1);
  return F - 2;  /* the extra arguments */
}

static int sleep0_k(lua_State *L, int status, lua_KContext ctx) {
  int base = (int)ctx;
  (void)status;
  eddy__check_throw(L, base);
  lua_settop(L, base);
  return base - 1;
}

/* eddy.sleep(delay, ...) -> ...: suspends for delay seconds. */
static int c_sleep(lua_State *L) {
  double delay = (double)luaL_checknumber(L, 1);
  int base = lua_gettop(L), F, in_task;
  eddy_Loop *loop;
  if (isnan(delay)) return eddy__error(L, "ValueError", "delay cannot be NaN");
  in_task = eddy__can_suspend(L, "sleep");  /* before a timer is made */
  if (delay <= 0 && in_task) {
    eddy__pushtag(L);  /* a bare turn: no future, no timer */
    return lua_yieldk(L, 1, (lua_KContext)base, sleep0_k);
  }
  loop = eddy__getopenloop(L);
  eddy__future_new(L, loop);
  F = lua_gettop(L);
  lua_pushcfunction(L, set_result_unless_done);
  lua_pushvalue(L, F);
  eddy__call_at(L, loop, 1, eddy__time(loop) + (delay > 0 ? delay : 0));
  if (in_task) {
    eddy__pushtag(L);
    lua_pushvalue(L, F);
    return lua_yieldk(L, 2, (lua_KContext)F, sleep_k);
  }
  /* At top level: a run that fails (Ctrl-C, nothing left to run) drops
  ** the timer, as asyncio's sleep cancels it in its finally clause; the
  ** drain after the chunk must not wait for a sleep nobody is in. */
  if (eddy__pwait_toplevel(L, F, "sleep") != LUA_OK) {
    eddy__handle_cancel(L, F + 1);
    return lua_error(L);
  }
  return sleep_k(L, LUA_OK, (lua_KContext)F);
}

/* }====================================================== */

/* {====================================================== Methods */

static int t_get_name(lua_State *L) {
  eddy_Task *t = checktask(L, 1);
  if (lua_getiuservalue(L, 1, FUT_UV_EXTRA) == LUA_TTABLE &&
      lua_getfield(L, -1, "name") != LUA_TNIL)
    return 1;
  lua_pushfstring(L, "Task-%d", t->id);
  return 1;
}

static int t_set_name(lua_State *L) {
  checktask(L, 1);
  luaL_checkany(L, 2);
  luaL_tolstring(L, 2, NULL);
  push_extra(L, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "name");
  return 0;
}

/* task:get_coro(): the coroutine object it was created with, else the
** coroutine running its function. */
static int t_get_coro(lua_State *L) {
  checktask(L, 1);
  if (lua_getiuservalue(L, 1, FUT_UV_EXTRA) == LUA_TTABLE &&
      lua_getfield(L, -1, "coro") == LUA_TTHREAD)
    return 1;
  lua_getiuservalue(L, 1, TASK_UV_CORO);
  eddy__co_mark_task(L, -1);
  return 1;
}

/* task:get_context(): the Context the task runs in.  A task that has set
** no variable runs in the base context, without a Context object (the
** core's fast path); asking for it makes one, which the task then keeps. */
static int t_get_context(lua_State *L) {
  eddy_Task *t = checktask(L, 1);
  eddy_Runtime *rt = t->fut.loop->rt;
  int running = rt->current_task == t;
  if (lua_getiuservalue(L, 1, TASK_UV_CTX) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (running && rt->context_ref != LUA_NOREF) {  /* made in this step */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
    return 1;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_context_copy);
  lua_pushnil(L);
  lua_call(L, 1, 1);  /* a copy of the base context */
  lua_pushvalue(L, -1);
  if (running) {  /* the step's end saves it as the task's (task_step) */
    rt->context_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rt->context_epoch++;
  } else {
    lua_setiuservalue(L, 1, TASK_UV_CTX);
    t->has_ctx = 1;
  }
  return 1;
}

/* task:cancel(msg) -> boolean: CancelledError at its suspension point. */
static int t_cancel(lua_State *L) {
  eddy_Task *t = checktask(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checkstring(L, 2);
  lua_settop(L, 2);
  t->fut.flags &= (unsigned char)~FUT_LOG_TB;  /* as eddy__future_cancel */
  if (t->fut.state != EDDY_FUT_PENDING) {
    lua_pushboolean(L, 0);
    return 1;
  }
  t->num_cancels_requested++;
  /* An earlier cancel() already woke it: it will see that CancelledError
  ** and its message; asyncio's later cancel() calls change nothing. */
  if (t->cancel_woke) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (lua_getiuservalue(L, 1, TASK_UV_WAITER) != LUA_TNIL &&
      cancel_waiter(L, -1, 2)) {
    /* Done now (a future, not a task that may ignore it): its wake-up
    ** is due.  A task waited on stays cancellable again, as in asyncio. */
    t->cancel_woke = eddy__tofuture(L, -1)->state != EDDY_FUT_PENDING;
    lua_pushboolean(L, 1);
    return 1;
  }
  /* The message the task will see, nil included: asyncio's cancel()
  ** replaces _cancel_message whenever the waiter could not take it. */
  set_cancel_message(L, 1, 2);
  if (t->parked_on != NULL) {  /* step it now: the error wakes it */
    /* ...which a closed loop cannot: asyncio's waiter.cancel() raises
    ** there too (its call_soon) */
    eddy__check_open(L, t->fut.loop);
    cancel_park(L, t, 1);
  } else {
    t->must_cancel = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Replace the array at the top with its elements first..last. */
static void keep_slice(lua_State *L, lua_Integer first, lua_Integer last) {
  lua_Integer i;
  lua_createtable(L, last >= first ? (int)(last - first + 1) : 0, 0);
  for (i = first; i <= last; i++) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -2, i - first + 1);
  }
  lua_remove(L, -2);
}

/*
** task:get_stack({limit =}) -> array of frames, oldest first, each
** {source =, line =, name =}.  A suspended or running task: the Lua
** functions it is in, with limit the newest 'limit'.  A task that failed: the frames its
** error came through, with limit the oldest 'limit' (asyncio's
** traceback order).  Other tasks have none.  asyncio's limit is
** keyword-only: an options table; a positional limit is accepted too.
*/
/* An options table at i (a plain table: asyncio's keyword-only
** parameters, API.md §1) holding only the names in 'allowed' (NULL
** ended): 1, with each option's value pushed in 'allowed' order; 0 when
** the argument at i is not a plain table. */
static int stack_options(lua_State *L, int i, const char *const allowed[]) {
  int n;
  if (!eddy__isoptions(L, i)) return 0;
  eddy__checkoptions(L, i, allowed);
  for (n = 0; allowed[n] != NULL; n++) lua_getfield(L, i, allowed[n]);
  return 1;
}

static int t_get_stack(lua_State *L) {
  static const char *const opts[] = {"limit", NULL};
  eddy_Task *t = checktask(L, 1);
  lua_Integer limit, n;
  lua_State *co = t->co;
  if (stack_options(L, 2, opts)) lua_replace(L, 2);  /* {limit =} */
  limit = luaL_optinteger(L, 2, -1);
  if (t->fut.state == EDDY_FUT_PENDING && t->started) {
    /* The running task asking for its own stack (co == L) gets it too,
    ** up to its caller: get_stack's own C frame is left out. */
    push_frames(L, co, 0);
    n = (lua_Integer)lua_rawlen(L, -1);
    if (limit >= 0 && limit < n) keep_slice(L, n - limit + 1, n);
    return 1;
  }
  if ((t->fut.flags & FUT_EXCEPTION) &&
      lua_getiuservalue(L, 1, FUT_UV_EXTRA) == LUA_TTABLE &&
      lua_getfield(L, -1, "stack") == LUA_TTABLE) {
    n = (lua_Integer)lua_rawlen(L, -1);
    keep_slice(L, 1, limit >= 0 && limit < n ? limit : n);  /* a copy */
    return 1;
  }
  lua_newtable(L);
  return 1;
}

/* Write the string at the top (popped) to the file-like object at out. */
static void write_popped(lua_State *L, int out) {
  lua_getfield(L, out, "write");
  lua_pushvalue(L, out);
  lua_rotate(L, -3, -1);  /* write, out, string */
  lua_call(L, 2, 0);
}

/* task:print_stack({limit =, file =}) (or positional limit, file):
** asyncio's format, on file (default io.stderr: anything with a write
** method).  A failed task's frames end
** with its error, as asyncio's traceback does. */
static int t_print_stack(lua_State *L) {
  static const char *const opts[] = {"limit", "file", NULL};
  eddy_Task *t = checktask(L, 1);
  int failed = (t->fut.flags & FUT_EXCEPTION) != 0, frames, out = 3, task;
  int file_arg = 3;  /* where the caller gave the file, for its errors */
  lua_Integer i, n;
  lua_settop(L, 3);
  if (stack_options(L, 2, opts)) {  /* {limit =, file =} */
    lua_replace(L, 3);
    lua_replace(L, 2);
    file_arg = 2;
  }
  /* Checked here, so that the errors name print_stack. */
  luaL_optinteger(L, 2, 0);
  if (!lua_isnil(L, out) && !lua_istable(L, out) && !lua_isuserdata(L, out))
    luaL_argerror(L, file_arg, lua_pushfstring(L, "file expected, got %s",
                                               luaL_typename(L, out)));
  lua_pushcfunction(L, t_get_stack);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  frames = lua_gettop(L);
  if (lua_isnil(L, out)) {
    lua_getglobal(L, "io");
    lua_getfield(L, -1, "stderr");
    lua_replace(L, out);
    lua_pop(L, 1);
  }
  luaL_tolstring(L, 1, NULL);  /* the task, as <Task ...> */
  task = lua_gettop(L);
  n = (lua_Integer)lua_rawlen(L, frames);
  lua_pushfstring(L, n == 0   ? "No stack for %s\n"
                     : failed ? "Traceback for %s (most recent call last):\n"
                              : "Stack for %s (most recent call last):\n",
                  lua_tostring(L, task));
  write_popped(L, out);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, frames, i);
    lua_getfield(L, -1, "source");
    lua_getfield(L, -2, "line");
    lua_getfield(L, -3, "name");
    lua_pushfstring(L, "  File \"%s\", line %d, in %s\n", lua_tostring(L, -3),
                    (int)lua_tointeger(L, -2), lua_tostring(L, -1));
    write_popped(L, out);
    lua_pop(L, 4);
  }
  if (failed && n > 0) {
    lua_getiuservalue(L, 1, FUT_UV_RESULT);
    lua_pushfstring(L, "%s\n", luaL_tolstring(L, -1, NULL));
    write_popped(L, out);
  }
  return 0;
}

static int t_cancelling(lua_State *L) {
  lua_pushinteger(L, checktask(L, 1)->num_cancels_requested);
  return 1;
}

static int t_uncancel(lua_State *L) {
  eddy_Task *t = checktask(L, 1);
  if (t->num_cancels_requested > 0) t->num_cancels_requested--;
  if (t->num_cancels_requested == 0) t->must_cancel = 0;
  lua_pushinteger(L, t->num_cancels_requested);
  return 1;
}

/* (waiter) -> tostring(waiter), for t_tostring's protected call */
static int waiter_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

static int t_tostring(lua_State *L) {
  eddy_Task *t = checktask(L, 1);
  int status;
  /* Tasks waiting for each other: the one already being shown is "...",
  ** as asyncio's reprlib.recursive_repr, not a C stack overflow. */
  if (t->in_tostring) {
    lua_pushliteral(L, "...");
    return 1;
  }
  t_get_name(L);
  lua_pushfstring(L, " name=%s", lua_tostring(L, -1));
  if (t->has_waiter) {  /* asyncio's repr shows _fut_waiter as wait_for */
    lua_pushliteral(L, " wait_for=");
    lua_pushcfunction(L, waiter_tostring);
    lua_getiuservalue(L, 1, TASK_UV_WAITER);
    t->in_tostring = 1;
    status = lua_pcall(L, 1, 1, 0);  /* the flag is reset whatever happens */
    t->in_tostring = 0;
    if (status != LUA_OK) return lua_error(L);
    lua_concat(L, 3);
  }
  return eddy__push_future_repr(L, 1, "Task", lua_tostring(L, -1));
}

extern int eddy__future_gc(lua_State *L);

/* __gc: report a pending task being destroyed, or its lost error. */
static int t_gc(lua_State *L) {
  eddy_Task *t = (eddy_Task *)lua_touserdata(L, 1);
  if (t->fut.state == EDDY_FUT_PENDING) eddy__loop_tasks(t->fut.loop, -1);
  if (t->fut.state == EDDY_FUT_PENDING && t->started && !t->quiet_destroy &&
      t->fut.loop->state != EDDY_LOOP_CLOSED && !t->fut.loop->rt->exiting) {
    eddy__newcontext(L, "Task was destroyed but it is pending!", 0);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "task");
    if (lua_getiuservalue(L, 1, FUT_UV_EXTRA) == LUA_TTABLE) {
      lua_getfield(L, -1, "tb");  /* debug mode: where it was created */
      lua_setfield(L, -3, "source_traceback");
    }
    lua_pop(L, 1);
    eddy__call_exception_handler(L, t->fut.loop);
    return 0;
  }
  return eddy__future_gc(L);
}

static const luaL_Reg task_methods[] = {
  {"get_name", t_get_name},
  {"set_name", t_set_name},
  {"get_coro", t_get_coro},
  {"get_context", t_get_context},
  {"cancel", t_cancel},
  {"get_stack", t_get_stack},
  {"print_stack", t_print_stack},
  {"cancelling", t_cancelling},
  {"uncancel", t_uncancel},
  {NULL, NULL}
};

extern const luaL_Reg *eddy__future_methods(void);

void eddy__open_task(lua_State *L) {
  /* future.c: see there */
  extern int eddy__checked_gc(lua_State *L);
  eddy_Runtime *rt = eddy__runtime(L);
  luaL_newmetatable(L, EDDY_TASK);
  lua_newtable(L);
  luaL_setfuncs(L, eddy__future_methods(), 0);
  luaL_setfuncs(L, task_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, t_tostring);
  lua_setfield(L, -2, "__tostring");
  /* Lua code reaches this metatable (eddy.Task): its __gc checks that it
  ** got a Task before t_gc reads one. */
  lua_pushcfunction(L, t_gc);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, eddy__checked_gc, 2);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  eddy__future_metatable(L, -1);
  lua_pushvalue(L, -1);
  rt->mt_task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
}

void eddy__push_current_task(lua_State *L, eddy_Runtime *rt) {
  if (rt->current_task == NULL) {
    lua_pushnil(L);
  } else if (L == rt->L) {
    lua_pushvalue(L, rt->current_task_index);
  } else {
    /* While a task steps, its object is on the main thread's stack (the
    ** stepper's frame); copy it over to the calling coroutine. */
    lua_pushvalue(rt->L, rt->current_task_index);
    lua_xmove(rt->L, L, 1);
  }
}

/* The core functions that suspend (handed to eddy.init). */
static int c_current_task(lua_State *L) {
  eddy__push_current_task(L, eddy__runtime(L));
  return 1;
}

/* all_tasks(loop) -> array of the loop's tasks not done yet */
static int c_all_tasks(lua_State *L) {
  lua_Integer n = 0;
  eddy_Loop *loop = eddy__toloop(L, 1);
  if (loop == NULL) luaL_typeerror(L, 1, "Loop");
  lua_newtable(L);
  eddy__pushfields(L, loop);
  if (lua_getfield(L, -1, "tasks") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      eddy_Task *t = (eddy_Task *)lua_touserdata(L, -2);
      lua_pop(L, 1);
      if (t->fut.state == EDDY_FUT_PENDING) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, -5, ++n);
      }
    }
  }
  lua_pop(L, 2);
  return 1;
}

/*
** eddy.Task([loop,] fn_or_coroutine, ...): asyncio's Task(coro, loop=loop),
** a Task made directly, never through a task factory, so that a factory
** can make the default Task (loop:set_task_factory(eddy.Task) behaves as
** no factory).  Without a loop, the running loop's, else the current
** one's (asyncio's get_event_loop()).  A loop is no callable, so the
** first argument tells which form it is.
*/
static int task_class_call(lua_State *L) {
  eddy_Loop *loop;
  int fn;
  lua_remove(L, 1);  /* the class; a metamethod has no name for luaL_argerror */
  fn = eddy__toloop(L, 1) != NULL ? 2 : 1;
  if (lua_type(L, fn) != LUA_TTHREAD && !eddy__iscallable(L, fn))
    return luaL_error(L, "bad argument #%d to 'Task' (function expected, got %s)",
                      fn, luaL_typename(L, fn));
  if (fn == 2) {
    loop = eddy__checkloop(L, 1);
  } else {
    loop = eddy__getopenloop(L);
    eddy__pushloop(L, loop);
    lua_insert(L, 1);
  }
  eddy__task_new(L, loop, lua_gettop(L) - 2);
  return 1;
}

static int c_isfuture(lua_State *L) {
  lua_pushboolean(L, eddy__tofuture(L, 1) != NULL);
  return 1;
}

/* _can_suspend(name) -> in a task: raise, naming the function, when a
** suspending function written in Lua is called where nothing can suspend
** (API.md §1); the functions it goes on to call would name themselves.
** false: top-level suspension. */
static int c_can_suspend(lua_State *L) {
  lua_pushboolean(L, eddy__can_suspend(L, luaL_checkstring(L, 1)));
  return 1;
}

/* _quiet_destroy(task): a pending task collected is not reported; for
** run_until_complete's own task (a Future or a factory's object: nothing). */
static int c_quiet_destroy(lua_State *L) {
  eddy_Task *t = eddy__totask(L, 1);
  if (t != NULL) t->quiet_destroy = 1;
  return 0;
}

/*
** gather()'s bookkeeping (tasks.lua), in C so that a child's completion is
** never lost to an allocation failure: the callback counts it and decides
** allocating nothing, then sets the outcome through the Lua function
** 'complete' under a protected call; should that fail (no memory for the
** results), the gather fails with that error instead of waiting for ever.
** _gather_callback(state) -> the done callback of state's children; state
** holds outer (false until made), nfuts, return_exceptions and complete.
*/
static int gather_done(lua_State *L) {  /* (child): upvalue state, count */
  eddy_Future *child = eddy__checkfuture(L, 1), *outer;
  lua_Integer nfinished = lua_tointeger(L, lua_upvalueindex(2)) + 1;
  int failed;
  lua_settop(L, 1);
  lua_pushinteger(L, nfinished);
  lua_replace(L, lua_upvalueindex(2));
  lua_getfield(L, lua_upvalueindex(1), "outer");  /* 2 */
  outer = eddy__tofuture(L, 2);
  if (outer == NULL || outer->kind != EDDY_KIND_FUTURE ||  /* (no task's) */
      outer->state != EDDY_FUT_PENDING) {
    child->flags &= (unsigned char)~FUT_LOG_TB;  /* nobody's: retrieved */
    return 0;
  }
  failed = child->state == EDDY_FUT_CANCELLED ||
           (child->flags & FUT_EXCEPTION);
  lua_getfield(L, lua_upvalueindex(1), "return_exceptions");
  if (failed && lua_toboolean(L, -1)) failed = 0;
  lua_getfield(L, lua_upvalueindex(1), "nfuts");
  if (!failed && nfinished != lua_tointeger(L, -1)) return 0;
  lua_getfield(L, lua_upvalueindex(1), "complete");
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    eddy__future_set_exception_unless_done(L, 2);
  return 0;
}

static int c_gather_callback(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushinteger(L, 0);  /* children done so far */
  lua_pushcclosure(L, gather_done, 2);
  return 1;
}

/* _guarded(fn, fut) -> a done callback calling fn with its arguments,
** protected: should fn fail (no memory for the outcome it sets), the
** future fut it was to complete fails with that error instead, so that
** whoever awaits fut wakes up (shield, wait: tasks.lua). */
static int guarded_call(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, -2);
    if (((eddy_Future *)lua_touserdata(L, -2))->state == EDDY_FUT_PENDING)
      eddy__future_set_exception_unless_done(L, -2);
  }
  return 0;
}

static int c_guarded(lua_State *L) {
  eddy__checkcallable(L, 1);
  lua_settop(L, 2);
  check_plain_future(L, 2);
  lua_pushcclosure(L, guarded_call, 2);
  return 1;
}

static const luaL_Reg core_task_funcs[] = {
  {"sleep", c_sleep},
  {"await", c_await},
  {"current_task", c_current_task},
  {"all_tasks", c_all_tasks},
  {"isfuture", c_isfuture},
  {"_can_suspend", c_can_suspend},
  {"_quiet_destroy", c_quiet_destroy},
  {"_set_result_unless_done", c_set_result_unless_done},
  {"_gather_callback", c_gather_callback},
  {"_guarded", c_guarded},
  {NULL, NULL}
};

void eddy__core_tasks(lua_State *L) {
  luaL_setfuncs(L, core_task_funcs, 0);
  luaL_getmetatable(L, EDDY_FUTURE);
  lua_setfield(L, -2, "Future");
  luaL_getmetatable(L, EDDY_TASK);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, task_class_call);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "Task");
}

/* }====================================================== */
