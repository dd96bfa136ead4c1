/*
** loop.c -- the event loop: asyncio's BaseEventLoop on a libuv loop.
**
** The ready queue is a ring over the array part of a Lua table (it anchors
** what it holds); a uv_idle handle runs while it is not empty, so libuv
** polls without blocking.  run_turn() is the only place where ready
** callbacks are called: each iteration first moves due timers to the ready
** queue, then runs exactly the entries that were ready when it started
** (asyncio's _run_once), so callbacks scheduled meanwhile wait for the
** next iteration.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#define READY_INITIAL 64
/* A queue grown past this by a burst shrinks back once empty. */
#define READY_KEEP 4096

/* A C function queued by eddy_call_soon_threadsafe from another thread. */
typedef struct eddy_ThreadsafeCall {
  struct eddy_ThreadsafeCall *next;
  void (*fn)(lua_State *L, void *arg);
  void *arg;
} eddy_ThreadsafeCall;

/* {====================================================== Ready queue */

static void idle_cb(uv_idle_t *h);

/*
** The ring is full.  Unwrapped (head at 1), it grows in place: writing
** past the end lets Lua double the table's array part, which the ring
** does first with a placeholder (so that, should that allocation fail,
** rcap still tells the array's size: eddy__ready_reserve counts on it).
** Wrapped, it is rebuilt in order into a new table (ring_gen tells
** run_turn).
*/
static void ready_rebuild(lua_State *L, eddy_Loop *loop, int ring,
                          lua_Integer ncap);

static void ready_grow(lua_State *L, eddy_Loop *loop, int ring) {
  if (loop->rhead == 1) {
    lua_pushboolean(L, 0);
    lua_rawseti(L, ring, loop->rcap + 1);
    loop->rcap *= 2;
    return;
  }
  ready_rebuild(L, loop, ring, loop->rcap * 2);
}

/* Move the ring at 'ring' in order into a new one of ncap entries. */
static void ready_rebuild(lua_State *L, eddy_Loop *loop, int ring,
                          lua_Integer ncap) {
  lua_Integer i;
  lua_createtable(L, (int)ncap, 0);
  for (i = 0; i < loop->rcount; i++) {
    lua_rawgeti(L, ring, (loop->rhead - 1 + i) % loop->rcap + 1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  lua_replace(L, ring);
  loop->rhead = 1;
  loop->rcap = ncap;
  loop->ring_gen++;
}

/* Push the ring, with room for one more entry. */
static void push_ring(lua_State *L, eddy_Loop *loop) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  if (loop->rcount == loop->rcap) ready_grow(L, loop, lua_gettop(L));
}

/* The value at the top (popped) becomes the last entry of the ring
** below it. */
static void append(lua_State *L, eddy_Loop *loop) {
  lua_rawseti(L, -2, (loop->rhead - 1 + loop->rcount) % loop->rcap + 1);
  if (loop->rcount++ == 0) uv_idle_start(&loop->idle, idle_cb);
}

/* Make room for n more entries, so that pushing them allocates nothing:
** the ring's array part holds rcap entries (ready_grow); beyond, a new
** ring of the size needed. */
void eddy__ready_reserve(lua_State *L, eddy_Loop *loop, int n) {
  lua_Integer ncap = loop->rcap;
  if (loop->rcount + n <= loop->rcap) return;
  while (ncap < loop->rcount + n) ncap *= 2;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  ready_rebuild(L, loop, lua_gettop(L), ncap);
  lua_pop(L, 1);
}

void eddy__ready_push(lua_State *L, eddy_Loop *loop, int i) {
  if (i < 0 && i > LUA_REGISTRYINDEX) i--;  /* the ring goes above it */
  push_ring(L, loop);
  lua_pushvalue(L, i);
  append(L, loop);
  lua_pop(L, 1);
}

void eddy__ready_push_uv(lua_State *L, eddy_Loop *loop, int ud, int uv) {
  push_ring(L, loop);
  lua_getiuservalue(L, ud, uv);
  append(L, loop);
}

/* Drop every ready entry (close()), or start an empty queue afresh. */
static void ready_clear(lua_State *L, eddy_Loop *loop) {
  lua_createtable(L, READY_INITIAL, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  loop->rhead = 1;
  loop->rcount = 0;
  loop->rcap = READY_INITIAL;
}

/* }====================================================== */

/* {====================================================== One iteration */

static int inbox_pending(eddy_Runtime *rt);
static void threadsafe_drain(lua_State *L, eddy_Loop *loop);
static void run_finalizers(lua_State *L, eddy_Loop *loop);
static int has_work_now(eddy_Loop *loop);

/*
** One asyncio iteration: due timers become ready, then the callbacks that
** were ready at this point run, in order.  Errors never escape: handles
** and task steps report them to the exception handler.
*/
/* Remove the head of the ready queue (it has run). */
static void ready_pop(lua_State *L, eddy_Loop *loop, int ring) {
  lua_pushnil(L);
  lua_rawseti(L, ring, loop->rhead);
  loop->rhead = loop->rhead % loop->rcap + 1;
  loop->rcount--;
}

/*
** One libuv turn runs asyncio iterations until the ready queue is empty or
** FUSE_BUDGET callbacks have run: each iteration keeps asyncio's semantics
** (due timers first, then exactly the batch that was ready: callbacks
** scheduled meanwhile wait for the next iteration), but libuv polls for
** I/O once per turn, not once per iteration, which halves the cost of a
** callback chain.  A turn ends early at stop() or when the future a
** top-level suspension waits for is done (run_until_complete stops the
** loop from its future's done callback, as asyncio's).
*/
#define FUSE_BUDGET 256

/* Start an iteration: due timers become ready; the batch is what is ready.
** The work collected objects left (run_finalizers) comes first, as the
** callback asyncio's finalizer hooks call_soon, but after the batch is
** taken: what it schedules (a dropped generator's closing task) waits for
** the next iteration, as what any callback schedules. */
static void begin_iteration(lua_State *L, eddy_Loop *loop) {
  if (inbox_pending(loop->rt)) threadsafe_drain(L, loop);
  eddy__timers_process(L, loop);
  loop->batch_left = loop->rcount;
  loop->turn_budget -= loop->rcount > 0 ? loop->rcount : 1;
  if (loop->finalizers_due) run_finalizers(L, loop);
}

/* Neither stop() nor the future of a top-level suspension ends the run. */
static int keeps_running(eddy_Loop *loop) {
  return !loop->stopping && loop->state == EDDY_LOOP_RUNNING &&
         !loop->rt->interrupted &&
         (loop->until == NULL || loop->until->state == EDDY_FUT_PENDING);
}

/* A handle closing (a transport's close() or abort()) ends the turn:
** libuv's close callbacks, connection_lost for a transport, run after
** it, before the next iteration, where asyncio's call_soon at close()
** puts _call_connection_lost (see docs/design.md). */
static int another_iteration(eddy_Loop *loop) {
  return loop->turn_budget > 0 && loop->rcount > 0 && loop->nclosing == 0 &&
         keeps_running(loop);
}

/* Step the task t at ti, the top of the stack, which the ready queue no
** longer holds or holds at its head.  The stack is left at ti - 1 or
** above (eddy__task_step). */
static void step_task(lua_State *L, eddy_Loop *loop, eddy_Task *t, int ti) {
  double t0;
  if (!loop->debug) {
    eddy__task_step(L, t);  /* protected inside */
    return;
  }
  t0 = eddy__time(loop);
  lua_pushvalue(L, ti);  /* for the warning */
  eddy__task_step(L, t);
  eddy__warn_slow(L, loop, ti, "task", eddy__time(loop) - t0);
  lua_settop(L, ti - 1);
}

/* run_turn's ring, at index 2, is stale once ready_grow has rebuilt the
** queue in a new table (bumping ring_gen): take the new one. */
static void refresh_ring(lua_State *L, eddy_Loop *loop, int *gen) {
  if (loop->ring_gen == *gen) return;
  *gen = loop->ring_gen;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  lua_replace(L, 2);
}

/*
** The turn, inside one protected call: (loop, ring).  An entry stays at
** the head of the queue while it runs, so when it raises, idle_cb finds it
** there to report and drop it, then calls this again to go on.
*/
static int run_turn(lua_State *L) {
  eddy_Loop *loop = (eddy_Loop *)lua_touserdata(L, 1);
  int gen = loop->ring_gen;
  for (;;) {
    unsigned char *kind;
    if (loop->batch_left <= 0 || loop->rcount == 0) {
      loop->batch_left = 0;
      if (!loop->first_iteration && !another_iteration(loop)) return 0;
      loop->first_iteration = 0;  /* a turn runs at least one iteration */
      begin_iteration(L, loop);
      refresh_ring(L, loop, &gen);  /* the due timers may have filled it */
      lua_settop(L, 2);  /* the entry goes to slot 3, whatever ran here */
      continue;
    }
    loop->batch_left--;
    lua_rawgeti(L, 2, loop->rhead);  /* 3: the entry */
    kind = (unsigned char *)lua_touserdata(L, 3);
    loop->in_entry = 1;
    if (*kind == EDDY_KIND_TASK) {
      step_task(L, loop, (eddy_Task *)kind, 3);
    } else {
      eddy__handle_call(L, loop, (eddy_Handle *)kind, 3);
    }
    loop->in_entry = 0;
    refresh_ring(L, loop, &gen);
    if (loop->rcount > 0) ready_pop(L, loop, 2);
    lua_settop(L, 2);
  }
}

/* (task, err): report the failed step.  A task whose body is not
** suspended (over, or never begun: no memory to complete or start it)
** also fails with the error, unless done: nothing else would wake it. */
static int fail_step(lua_State *L) {
  eddy_Task *t = (eddy_Task *)lua_touserdata(L, 1);
  eddy__newcontext(L, "Exception in a task step", 2);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "task");
  eddy__call_exception_handler(L, t->fut.loop);
  lua_settop(L, 2);
  if (lua_status(t->co) != LUA_YIELD)
    eddy__future_set_exception_unless_done(L, 1);
  return 0;
}

/* Call the report function and its first argument at the top with the
** error at err (an absolute index), protected: a report allocates.  With
** no memory for it, err is reported as eddy__report_error does. */
static void call_report(lua_State *L, eddy_Loop *loop, int err,
                        const char *message) {
  lua_pushvalue(L, err);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushvalue(L, err);
    eddy__report_error(L, loop, message);
  }
}

/* The step of the task at ti raised the error at err (outside the task's
** own body: eddy__task_step's tail, such as no memory to complete it). */
static void report_failed_step(lua_State *L, eddy_Loop *loop, int ti,
                               int err) {
  lua_pushcfunction(L, fail_step);
  lua_pushvalue(L, ti);
  call_report(L, loop, err, "Exception in a task step");
}

/* (loop, err): report the error err of the entry at the head of the
** queue (protected: the report allocates). */
static int report_entry(lua_State *L) {
  eddy_Loop *loop = (eddy_Loop *)lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  lua_rawgeti(L, -1, loop->rhead);
  if (lua_touserdata(L, -1) != NULL &&
      *(unsigned char *)lua_touserdata(L, -1) == EDDY_KIND_HANDLE)
    eddy__handle_report(L, loop, -1, 2);
  else
    report_failed_step(L, loop, lua_gettop(L), 2);
  return 0;
}

/* The entry at the head of the queue raised the error at the top: report
** it and drop the entry. */
static void report_failed_entry(lua_State *L, eddy_Loop *loop) {
  int err = lua_gettop(L);
  /* A failed callback is reported before its context is left: the
  ** exception handler sees what the callback set, as asyncio runs it in
  ** the handle's context (gh-96704). */
  lua_pushcfunction(L, report_entry);
  lua_pushlightuserdata(L, loop);
  call_report(L, loop, err, "Exception in a callback");
  eddy__handle_leave(L, loop);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->ready_ref);
  if (loop->rcount > 0) ready_pop(L, loop, lua_gettop(L));
  lua_settop(L, err - 1);
}

/* (loop): ready_clear, protected (idle_cb is a libuv callback). */
static int ready_clear_protected(lua_State *L) {
  ready_clear(L, (eddy_Loop *)lua_touserdata(L, 1));
  return 0;
}

static void idle_cb(uv_idle_t *h) {
  eddy_Loop *loop = container_of(h, eddy_Loop, idle);
  lua_State *L = loop->rt->L;
  eddy_Runtime *rt = loop->rt;
  eddy_Loop *prev_running = rt->running;
  eddy_LoopState prev_state = loop->state;
  int top = lua_gettop(L);
  if (loop->state == EDDY_LOOP_CLOSED) return;
  rt->running = loop;  /* also when a host drives uv_run itself */
  loop->state = EDDY_LOOP_RUNNING;  /* close() is refused meanwhile */
  loop->turn_budget = FUSE_BUDGET;
  loop->batch_left = 0;
  loop->first_iteration = 1;
  loop->in_turn = 1;
  for (;;) {
    lua_pushcfunction(L, eddy__traceback);
    lua_pushcfunction(L, run_turn);
    lua_pushlightuserdata(L, loop);
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->ready_ref);
    if (lua_pcall(L, 2, 0, top + 1) == LUA_OK) break;
    if (!loop->in_entry) {
      /* The turn itself failed (out of memory: moving due timers, a
      ** thread-safe call): no entry to blame and none lost; the run
      ** ends, as at stop(), rather than retry at once. */
      eddy__report_error(L, loop, "Exception in the event loop");
      eddy__loop_stop(loop);
      break;
    }
    loop->in_entry = 0;
    report_failed_entry(L, loop);
    lua_settop(L, top);
  }
  lua_settop(L, top);
  loop->in_turn = 0;
  if (loop->rcount == 0) {
    loop->rhead = 1;
    /* A burst (100,000 callbacks: 2 MB of ring) leaves nothing behind;
    ** the regrowth is paid by pushes, as the growth was. */
    if (loop->rcap > READY_KEEP) {
      lua_pushcfunction(L, ready_clear_protected);
      lua_pushlightuserdata(L, loop);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK)  /* no memory: it stays big */
        lua_pop(L, 1);
    }
  }
  if (loop->state == EDDY_LOOP_RUNNING) loop->state = prev_state;
  if (!has_work_now(loop) && loop->state != EDDY_LOOP_CLOSED)
    uv_idle_stop(&loop->idle);
  rt->running = prev_running;
}

/*
** Whether a task an I/O callback has just woken may step at once instead
** of after the other callbacks of the poll (eddy__task_wake_now).  The
** streams read path does so (streams.c): the task then reads its data
** while the copy is still in the cache, and the strings of a whole poll
** are not all alive at once when the collector looks (docs/performance.md).
** asyncio's order holds: nothing that asyncio would run before the
** wake-up is passed over -- the ready queue is empty, no thread-safe call
** is pending, no timer is due, and no object is closing (its close
** callback, connection_lost for a transport, is what asyncio schedules
** with call_soon at close()) -- and the step runs as it would had its data
** arrived in a poll of its own, a moment earlier.  After stop() (which
** run_until_complete's done callback calls), or once a top-level
** suspension's future is done, the step is queued, as asyncio leaves it.
*/
int eddy__loop_may_step_now(eddy_Loop *loop) {
  return loop->rcount == 0 && !inbox_pending(loop->rt) &&
         !loop->finalizers_due &&
         loop->nclosing == 0 && !eddy__timers_due(loop) && keeps_running(loop);
}

/*
** A transport's I/O callback is about to run Lua code or wake a task
** (eddy__loop_before_io, outside a turn and with timers pending):
** libuv runs it during its poll, ahead of the iteration that will run
** what it schedules.  asyncio's _run_once makes the timers due at the
** poll ready after the poll's I/O callbacks and before anything those
** schedule, so the due timers join the ready queue now.
*/
void eddy__loop_timers_before_io(lua_State *L, eddy_Loop *loop) {
  if (loop->state == EDDY_LOOP_RUNNING && eddy__timers_due(loop))
    eddy__timers_process(L, loop);
}

/* (task, status, nres): the rest of eddy__loop_step_task's step, inside
** a pcall: all of it (EDDY_STEP_NOT_BEGUN), or the outcome of the resume
** it made. */
static int step_protected(lua_State *L) {
  eddy_Task *t = (eddy_Task *)lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 2);
  if (status != EDDY_STEP_NOT_BEGUN) {
    eddy__task_step_outcome(L, t, 1, status, (int)lua_tointeger(L, 3));
    return 0;
  }
  lua_settop(L, 1);
  step_task(L, t->fut.loop, t, 1);
  return 0;
}

/* Step the task t at ti from an I/O callback: protected as run_turn's
** steps are, since an error must not unwind through libuv.  The common
** step, a task that runs until it parks again, cannot raise: it runs
** outside the protected call (~300 instructions fewer per 16 KiB read of
** bench/eddy/echo_streams.lua). */
void eddy__loop_step_task(lua_State *L, eddy_Loop *loop, eddy_Task *t,
                          int ti) {
  int top = lua_gettop(L), nres = 0, status;
  ti = lua_absindex(L, ti);  /* (current_task_index) */
  status = loop->debug ? EDDY_STEP_NOT_BEGUN
                       : eddy__task_step_begin(L, t, ti, &nres);
  if (status == EDDY_STEP_DONE) return;
  lua_pushcfunction(L, eddy__traceback);
  lua_pushcfunction(L, step_protected);
  lua_pushvalue(L, ti);
  lua_pushinteger(L, status);
  lua_pushinteger(L, nres);
  if (lua_pcall(L, 3, 0, top + 1) != LUA_OK)
    report_failed_step(L, loop, ti, lua_gettop(L));
  lua_settop(L, top);
}

/* }====================================================== */

/* {====================================================== Thread-safe calls */

static void async_cb(uv_async_t *h) {
  eddy_Loop *loop = container_of(h, eddy_Loop, async);
  /* Wake the loop: an iteration drains the inbox at its start. */
  if (inbox_pending(loop->rt)) uv_idle_start(&loop->idle, idle_cb);
}

/* Whether a thread-safe call is queued.  The loop's thread asks without
** taking the lock, on every iteration; the writers hold it and store
** head atomically, so the answer is a race, never a torn read. */
static int inbox_pending(eddy_Runtime *rt) {
  return rt->inbox != NULL &&
         __atomic_load_n(&rt->inbox->head, __ATOMIC_ACQUIRE) != NULL;
}

void eddy__inbox_init(eddy_Inbox *in) {
  memset(in, 0, sizeof *in);
  uv_mutex_init(&in->lock);
}

/* Take the whole queue of thread-safe calls, leaving it empty. */
static eddy_ThreadsafeCall *inbox_take(eddy_Inbox *in) {
  eddy_ThreadsafeCall *c;
  uv_mutex_lock(&in->lock);
  c = in->head;
  __atomic_store_n(&in->head, NULL, __ATOMIC_RELAXED);
  in->tail = NULL;
  uv_mutex_unlock(&in->lock);
  return c;
}

/* Put the calls of list (taken, not run yet) back at the queue's head. */
static void inbox_requeue(eddy_Inbox *in, eddy_ThreadsafeCall *list) {
  eddy_ThreadsafeCall *last = list;
  if (list == NULL) return;
  while (last->next != NULL) last = last->next;
  uv_mutex_lock(&in->lock);
  last->next = in->head;
  if (in->tail == NULL) in->tail = last;
  __atomic_store_n(&in->head, list, __ATOMIC_RELEASE);
  uv_mutex_unlock(&in->lock);
}

static void free_calls(eddy_ThreadsafeCall *c) {
  while (c != NULL) {
    eddy_ThreadsafeCall *next = c->next;
    free(c);
    c = next;
  }
}

void eddy__inbox_refuse(eddy_Inbox *in) {
  uv_mutex_lock(&in->lock);
  in->refused = 1;
  in->target = NULL;
  uv_mutex_unlock(&in->lock);
  free_calls(inbox_take(in));
}

void eddy__inbox_free(eddy_Inbox *in) { uv_mutex_destroy(&in->lock); }

int eddy__inbox_push(eddy_Inbox *in, void (*fn)(lua_State *L, void *arg),
                     void *arg) {
  eddy_ThreadsafeCall *c = (eddy_ThreadsafeCall *)malloc(sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  c->next = NULL;
  c->fn = fn;
  c->arg = arg;
  uv_mutex_lock(&in->lock);
  if (in->refused) {
    uv_mutex_unlock(&in->lock);
    free(c);
    return UV_ECANCELED;
  }
  if (in->tail) in->tail->next = c;
  else __atomic_store_n(&in->head, c, __ATOMIC_RELEASE);
  in->tail = c;
  /* Under the lock: the loop thread clears target before it closes the
  ** async handle (inbox_retarget, loop_close). */
  if (in->target != NULL) uv_async_send(&in->target->async);
  uv_mutex_unlock(&in->lock);
  return 0;
}

/*
** Point the inbox at the loop that drains it next: the running loop, else
** the default loop while it is open.  Called on the loop thread wherever
** either changes; when calls wait, the new target is woken for them.
*/
static void inbox_retarget(lua_State *L, eddy_Runtime *rt) {
  eddy_Inbox *in = rt->inbox;
  eddy_Loop *loop = rt->running;
  if (in == NULL) return;
  if (loop == NULL && rt->default_loop_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->default_loop_ref);
    loop = eddy__toloop(L, -1);
    lua_pop(L, 1);
  }
  if (loop != NULL && loop->state == EDDY_LOOP_CLOSED) loop = NULL;
  if (loop == in->target) return;  /* only this thread writes it */
  uv_mutex_lock(&in->lock);
  in->target = loop;
  if (loop != NULL && in->head != NULL) uv_async_send(&loop->async);
  uv_mutex_unlock(&in->lock);
}

/* The loop is closing: no thread may wake it any more. */
static void inbox_untarget(eddy_Loop *loop) {
  eddy_Inbox *in = loop->rt->inbox;
  if (in == NULL || in->target != loop) return;
  uv_mutex_lock(&in->lock);
  in->target = NULL;
  uv_mutex_unlock(&in->lock);
}

/* Whether an iteration has something to run without waiting for I/O. */
static int has_work_now(eddy_Loop *loop) {
  return loop->rcount > 0 || inbox_pending(loop->rt) || loop->finalizers_due;
}

/* (call): run one thread-safe call, on an empty stack. */
static int threadsafe_call(lua_State *L) {
  eddy_ThreadsafeCall *c = (eddy_ThreadsafeCall *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  c->fn(L, c->arg);
  return 0;
}

/*
** Each call runs protected: one that raises (a luaL_error in fn) goes to
** the exception handler and the others still run, as a callback that
** raises (API.md 3).  Unprotected, its error used to unwind run_turn, whose
** recovery reported it as the failure of the ready queue's head, dropped
** that unrelated entry and lost the calls still to run.  After a Ctrl-C
** the error is the interruption, which ends the run: the calls not run
** yet wait for the next one.
*/
static void threadsafe_drain(lua_State *L, eddy_Loop *loop) {
  eddy_Inbox *in = loop->rt->inbox;
  eddy_ThreadsafeCall *c = inbox_take(in);
  while (c != NULL) {
    eddy_ThreadsafeCall *next = c->next;
    int top = lua_gettop(L);
    lua_pushcfunction(L, eddy__traceback);
    lua_pushcfunction(L, threadsafe_call);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 1, 0, top + 1) != LUA_OK) {
      if (loop->rt->interrupted) {
        lua_settop(L, top);
        free(c);
        inbox_requeue(in, next);
        return;
      }
      eddy__newcontext(L, "Exception in a thread-safe callback", -1);
      eddy__call_exception_handler(L, loop);
    }
    lua_settop(L, top);
    free(c);
    c = next;
  }
}

/* }====================================================== */

/* {====================================================== Creation */

double eddy__time(eddy_Loop *loop) {
  (void)loop;
  return (double)uv_hrtime() / 1e9;
}

static const char *debug_env(void) {
  const char *v = getenv("EDDY_DEBUG");
  return (v != NULL && *v != '\0') ? v : NULL;
}

/*
** A Loop object is a plain table: its fields are the loop's attributes
** (asyncio's slow_callback_duration).  Its metatable, EDDY_LOOP, has the
** methods table as __index, so calling a method costs two table lookups
** and no function call.  Its core, a userdata holding the eddy_Loop
** (metatable EDDY_LOOPCORE, whose __gc closes a loop nobody closed), is
** found in the cores table: Loop object -> core, weak keys, so the core
** lives as long as its Loop.  Only C reaches that table (the registry at
** &key_cores, and upvalue 1 of the methods), so a table is a Loop exactly
** when it is a key there: a table slot Lua code could write (the core
** used to be the Loop's [1]) would let it hand C an io file as a loop.
**
** User values of the core: the fields only C touches (FIELDS_C: the
** tasks, fd watchers, signal watchers) and the ones loop:_fields() hands
** to the Lua parts (FIELDS_LUA: exception handler, default executor...).
** C reads a value from FIELDS_LUA only after checking what it is.
*/
#define EDDY_LOOPCORE "eddy.LoopCore"
enum { FIELDS_C = 1, FIELDS_LUA, CORE_NUV = FIELDS_LUA };

static const char key_cores = 0;

/* Push the core of the Loop object at i (nil if it is not one) from the
** cores table at index cores; returns the eddy_Loop or NULL. */
static eddy_Loop *push_core(lua_State *L, int cores, int i) {
  lua_pushvalue(L, i);
  lua_rawget(L, cores);
  return (eddy_Loop *)lua_touserdata(L, -1);
}

/* Release the loop's registry references but its anchor (self_ref), at
** its close or when its set-up fails. */
static void drop_refs(lua_State *L, eddy_Loop *loop) {
  luaL_unref(L, LUA_REGISTRYINDEX, loop->ready_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, loop->anchors_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, loop->handler_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, loop->factory_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, loop->tasks_ref);
  loop->tasks_ref = LUA_NOREF;
  loop->ready_ref = loop->anchors_ref = LUA_NOREF;
  loop->handler_ref = loop->factory_ref = LUA_NOREF;
}

/* Create a Loop on 'uv' (NULL: its own); pushes the Loop object. */
static eddy_Loop *loop_new(lua_State *L, uv_loop_t *uv) {
  eddy_Runtime *rt = eddy__runtime(L);
  eddy_Loop *loop;
  int err;
  lua_createtable(L, 0, 1);  /* the Loop object */
  loop = (eddy_Loop *)lua_newuserdatauv(L, sizeof(eddy_Loop), CORE_NUV);
  memset(loop, 0, sizeof *loop);
  loop->state = EDDY_LOOP_CLOSED;  /* closed until fully set up */
  loop->self_ref = loop->ready_ref = loop->anchors_ref = LUA_NOREF;
  loop->handler_ref = loop->factory_ref = loop->tasks_ref = LUA_NOREF;
  loop->handle_tb_ref = LUA_NOREF;
  luaL_setmetatable(L, EDDY_LOOPCORE);
  lua_newtable(L);  /* fields only C touches */
  eddy__newweaktable(L, "k");  /* .tasks: weak set for all_tasks() */
  lua_pushvalue(L, -1);
  loop->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "tasks");
  lua_setiuservalue(L, -2, FIELDS_C);
  lua_newtable(L);  /* fields set from Lua (exception handler, executor...) */
  lua_setiuservalue(L, -2, FIELDS_LUA);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cores);  /* cores[Loop] = core */
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
  lua_pushnumber(L, 0.1);
  lua_setfield(L, -2, "slow_callback_duration");
  luaL_setmetatable(L, EDDY_LOOP);
  loop->rt = rt;
  lua_createtable(L, READY_INITIAL, 0);
  loop->ready_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  loop->rhead = 1;
  loop->rcap = READY_INITIAL;
  lua_newtable(L);
  loop->anchors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  loop->debug = debug_env() != NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_loops);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, loop);
  lua_pop(L, 1);
  /* Anchored while open; the weak map finds it afterwards. */
  lua_pushvalue(L, -1);
  loop->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* libuv last: from here on nothing raises (an allocation failure
  ** would leave its descriptors, and this loop in fds.c's list). */
  if (uv == NULL) {
    err = uv_loop_init(&loop->own_uv);
    if (err < 0) {
      drop_refs(L, loop);
      luaL_unref(L, LUA_REGISTRYINDEX, loop->self_ref);
      loop->self_ref = LUA_NOREF;
      eddy__uverror(L, err, "new_event_loop");
    }
    loop->uv = &loop->own_uv;
    loop->owns_uv = 1;
  } else {
    loop->uv = uv;
  }
  eddy__fds_track_loop(loop);
  uv_idle_init(loop->uv, &loop->idle);
  uv_timer_init(loop->uv, &loop->wake);
  uv_async_init(loop->uv, &loop->async, async_cb);
  uv_unref((uv_handle_t *)&loop->async);  /* see update_keepalive */
  uv_prepare_init(loop->uv, &loop->fd_check);
  uv_unref((uv_handle_t *)&loop->fd_check);  /* no work of its own */
  loop->uv_handles_open = 4;
  loop->state = EDDY_LOOP_IDLE;
  return loop;
}

/* The eddy_Loop of the Loop object at i (open or closed), or NULL. */
eddy_Loop *eddy__toloop(lua_State *L, int i) {
  eddy_Loop *loop;
  i = lua_absindex(L, i);
  if (lua_type(L, i) != LUA_TTABLE) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cores);
  loop = push_core(L, lua_gettop(L), i);
  lua_pop(L, 2);
  return loop;
}

eddy_Loop *eddy__checkanyloop(lua_State *L, int i) {
  eddy_Loop *loop = eddy__toloop(L, i);
  if (loop == NULL) luaL_typeerror(L, i, "Loop");
  return loop;
}

eddy_Loop *eddy__checkloop(lua_State *L, int i) {
  eddy_Loop *loop = eddy__checkanyloop(L, i);
  eddy__check_open(L, loop);
  return loop;
}

/*
** The open Loop a method was called on: methods of the Loop class carry
** the cores table as upvalue 1, so recognizing self is one lookup.
*/
static eddy_Loop *self_loop(lua_State *L) {
  eddy_Loop *loop = push_core(L, lua_upvalueindex(1), 1);
  lua_pop(L, 1);
  if (loop != NULL && loop->state != EDDY_LOOP_CLOSED) return loop;
  return eddy__checkloop(L, 1);  /* raises the right error */
}

/* Raise asyncio's RuntimeError for a closed loop. */
void eddy__check_open(lua_State *L, eddy_Loop *loop) {
  if (loop->state == EDDY_LOOP_CLOSED)
    eddy__error(L, "RuntimeError", "Event loop is closed");
}

void eddy__pushloop(lua_State *L, eddy_Loop *loop) {
  if (loop->self_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->self_ref);
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_loops);  /* closed loop */
  lua_rawgetp(L, -1, loop);
  lua_remove(L, -2);
}

/* Push user value 'uv' of the core of 'loop'. */
static void push_core_value(lua_State *L, eddy_Loop *loop, int uv) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cores);
  eddy__pushloop(L, loop);
  lua_rawget(L, -2);
  lua_getiuservalue(L, -1, uv);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* The fields only C reaches (see loop_new). */
void eddy__pushfields(lua_State *L, eddy_Loop *loop) {
  push_core_value(L, loop, FIELDS_C);
}

void eddy__pushfieldtable(lua_State *L, eddy_Loop *loop, const char *name,
                          const char *weak) {
  eddy__pushfields(L, loop);
  if (lua_getfield(L, -1, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    if (weak != NULL) eddy__newweaktable(L, weak);
    else lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
  }
  lua_remove(L, -2);  /* the fields */
}

/* The fields of the Lua parts, loop:_fields(): Lua code may have put
** anything there. */
void eddy__pushluafields(lua_State *L, eddy_Loop *loop) {
  push_core_value(L, loop, FIELDS_LUA);
}

double eddy__slow_callback_duration(lua_State *L, eddy_Loop *loop) {
  double d;
  eddy__pushloop(L, loop);
  lua_getfield(L, -1, "slow_callback_duration");
  d = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : 0.1;
  lua_pop(L, 2);
  return d;
}

/* The loop of the runtime: running, else current (created on first use). */
eddy_Loop *eddy__getloop(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  if (rt->running != NULL) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->running->self_ref);
    return rt->running;
  }
  if (rt->default_loop_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->default_loop_ref);
    return eddy__toloop(L, -1);
  }
  {
    eddy_Loop *loop = loop_new(L, rt->host_uv);
    rt->host_uv = NULL;  /* the host's uv loop serves the first loop only */
    lua_pushvalue(L, -1);
    rt->default_loop_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    inbox_retarget(L, rt);
    return loop;
  }
}

/*
** A suspending function called at top level schedules its work on the
** current loop, which a script may have closed: a closed loop has no
** ready queue or timer heap left to put it in.
*/
eddy_Loop *eddy__getopenloop(lua_State *L) {
  eddy_Loop *loop = eddy__getloop(L);
  lua_pop(L, 1);
  eddy__check_open(L, loop);
  return loop;
}

/* }====================================================== */

/* {====================================================== Running */

/*
** The async handle is referenced (keeps uv_run from returning) while the
** loop runs forever, or while tasks are pending: API.md §11 counts them as
** live work, so a task waiting for another thread's call_soon_threadsafe
** keeps the loop waiting.  Otherwise wake-ups are not live work.
*/
static void update_keepalive(eddy_Loop *loop) {
  if (loop->state == EDDY_LOOP_CLOSED) return;
  if (loop->keepalive || loop->pending_tasks > 0)
    uv_ref((uv_handle_t *)&loop->async);
  else
    uv_unref((uv_handle_t *)&loop->async);
}

void eddy__loop_tasks(eddy_Loop *loop, int delta) {
  loop->pending_tasks += delta;
  if (loop->pending_tasks == 0 || (delta > 0 && loop->pending_tasks == 1))
    update_keepalive(loop);
}

static int is_done(eddy_Future *fut) {
  return fut != NULL && fut->state != EDDY_FUT_PENDING;
}

/*
** The run ended for a Ctrl-C (eddy__loop_interrupt): raise it in the main
** chunk.  The SIGINT action also set lua.c's hook, to stop a callback busy
** in Lua code; when no Lua code ran since, it would fire later in the
** chunk, a second interruption for one Ctrl-C.
*/
static void raise_interrupted(lua_State *L, eddy_Runtime *rt) {
  lua_Debug ar;
  int level;
  rt->interrupted = 0;
  lua_sethook(rt->L, NULL, 0, 0);
  /* positioned at the Lua code that ran the loop, past C frames (the
  ** suspending function, a protected call of its own) */
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: interrupted!", ar.short_src, ar.currentline);
      lua_error(L);
    }
  }
  luaL_error(L, "interrupted!");
}

/*
** The run ended starved (eddy__loop_starve): raise the memory error, as
** a failed allocation would.  Its message is the one Lua keeps: pushing
** it allocates nothing, and lua_error raises it with LUA_ERRMEM.
*/
static void raise_starved(lua_State *L, eddy_Loop *loop) {
  loop->starved = 0;
  lua_pushliteral(L, "not enough memory");
  lua_error(L);
}

/*
** Run 'loop' until 'fut' is done, stop() is called, or (without
** 'keepalive') no live work is left.  The caller checks the loop is not
** running.  Returns 0 when it ended because nothing was left alive.
*/
int eddy__loop_run(lua_State *L, eddy_Loop *loop, eddy_Future *fut,
                   int keepalive) {
  eddy_Runtime *rt = loop->rt;
  eddy_Loop *prev = rt->running;
  int alive = 1;
  loop->state = EDDY_LOOP_RUNNING;
  rt->running = loop;
  loop->until = fut;
  loop->keepalive = keepalive;
  update_keepalive(loop);
  eddy__timers_rearm(loop);  /* wake_cb left due timers alone after a stop() */
  inbox_retarget(L, rt);
  if (loop->stopping || has_work_now(loop)) uv_idle_start(&loop->idle, idle_cb);
  /* stop() before run_forever: still one iteration, as asyncio does. */
  if (loop->stopping) uv_run(loop->uv, UV_RUN_NOWAIT);
  while (!loop->stopping && !is_done(fut) && !rt->interrupted &&
         loop->state == EDDY_LOOP_RUNNING &&
         !(is_done(loop->backstop) && loop->rcount == 0)) {
    if (uv_run(loop->uv, UV_RUN_ONCE) == 0 && !keepalive &&
        loop->rcount == 0 && !is_done(fut)) {
      alive = 0;
      break;
    }
  }
  if (loop->state == EDDY_LOOP_RUNNING) {
    loop->keepalive = 0;
    update_keepalive(loop);
    loop->state = EDDY_LOOP_IDLE;
  }
  loop->stopping = 0;
  loop->until = NULL;
  loop->backstop = NULL;  /* (l_run_until's, also when this raises) */
  rt->running = prev;
  inbox_retarget(L, rt);
  if (rt->interrupted) raise_interrupted(L, rt);
  if (loop->starved) raise_starved(L, loop);
  return alive;
}

int eddy__loop_interrupt(eddy_Runtime *rt) {
  eddy_Loop *loop = rt->running;  /* a running loop is not closed */
  if (loop == NULL) return 0;
  rt->interrupted = 1;
  uv_async_send(&loop->async);  /* async-signal-safe: ends a blocked poll */
  return 1;
}

void eddy__loop_starve(eddy_Loop *loop) {
  if (loop->rt->running != loop) return;  /* no run to end */
  loop->starved = 1;
  eddy__loop_stop(loop);
}

static void check_can_run(lua_State *L, eddy_Loop *loop) {
  if (loop->closing)  /* a callback of loop_close's (connection_lost) */
    eddy__error(L, "RuntimeError", "Event loop is closed");
  if (loop->state == EDDY_LOOP_RUNNING)
    eddy__error(L, "RuntimeError", "This event loop is already running");
  if (loop->rt->running != NULL)
    eddy__error(L, "RuntimeError",
                "Cannot run the event loop while another loop is running");
}

/* loop:run_forever() */
static int l_run_forever(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  check_can_run(L, loop);
  eddy__loop_run(L, loop, NULL, 1);
  return 0;
}

/*
** loop:_run_until(fut): run_forever for run_until_complete, whose done
** callback on fut stops the loop; should that callback fail (no memory to
** call it), the run still ends once fut is done and nothing is ready,
** rather than wait forever.
*/
static int l_run_until(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy_Future *fut = eddy__checkfuture(L, 2);
  check_can_run(L, loop);
  loop->backstop = fut;
  eddy__loop_run(L, loop, NULL, 1);
  return 0;
}

void eddy__loop_stop(eddy_Loop *loop) {
  if (loop->state == EDDY_LOOP_CLOSED) return;
  loop->stopping = 1;
  uv_idle_start(&loop->idle, idle_cb);  /* make sure an iteration ends */
}

/* loop:stop(): leave run_forever after the current batch. */
static int l_stop(lua_State *L) {
  eddy__loop_stop(eddy__checkanyloop(L, 1));
  return 0;
}

static int l_is_running(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  lua_pushboolean(L, loop->state == EDDY_LOOP_RUNNING);
  return 1;
}

static int l_is_closed(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  lua_pushboolean(L, loop->state == EDDY_LOOP_CLOSED || loop->closing);
  return 1;
}

/* Registry key of what the default exception handler printed for the
** first unhandled error of a run (eddy__push_unhandled). */
static const char key_unhandled = 0;

/* Drive the default loop after a main chunk (API.md §11) or for a host. */
int eddy__run_default(lua_State *L, uv_run_mode mode) {
  eddy_Runtime *rt = eddy__runtime(L);
  eddy_Loop *loop;
  rt->unhandled_error = 0;  /* set by the default exception handler */
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_unhandled);
  if (rt->default_loop_ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->default_loop_ref);
  loop = eddy__toloop(L, -1);
  lua_pop(L, 1);
  if (loop->state != EDDY_LOOP_IDLE || rt->running != NULL)
    return rt->unhandled_error;
  if (mode == UV_RUN_DEFAULT) {
    eddy__loop_run(L, loop, NULL, 0);
    /* A task or future whose error nobody retrieved reports it when it is
    ** collected (asyncio's __del__).  Collect now, so that report counts
    ** in the result whether or not the collector happened to run during
    ** the drain: otherwise a script's exit status would depend on it. */
    lua_gc(L, LUA_GCCOLLECT);
  } else {
    loop->state = EDDY_LOOP_RUNNING;
    rt->running = loop;
    inbox_retarget(L, rt);
    eddy__timers_rearm(loop);  /* wake_cb left due timers alone after a stop() */
    if (has_work_now(loop)) uv_idle_start(&loop->idle, idle_cb);
    uv_run(loop->uv, mode);
    if (loop->state == EDDY_LOOP_RUNNING) loop->state = EDDY_LOOP_IDLE;
    loop->stopping = 0;
    rt->running = NULL;
    inbox_retarget(L, rt);
    if (loop->starved) raise_starved(L, loop);
  }
  return rt->unhandled_error;
}

/* }====================================================== */

/* {====================================================== Closing */

static void loop_handle_close_cb(uv_handle_t *h) {
  eddy_Loop *loop;
  if (h->type == UV_IDLE)
    loop = container_of(h, eddy_Loop, idle);
  else if (h->type == UV_TIMER)
    loop = container_of(h, eddy_Loop, wake);
  else if (h->type == UV_PREPARE)
    loop = container_of(h, eddy_Loop, fd_check);
  else
    loop = container_of(h, eddy_Loop, async);
  loop->uv_handles_open--;
}

/* Close everything libuv holds for this loop; handles of other eddy
** objects (transports, servers) close through their own close callback. */
static void close_uv(eddy_Loop *loop) {
  eddy__fds_untrack_loop(loop);
  uv_close((uv_handle_t *)&loop->idle, loop_handle_close_cb);
  uv_close((uv_handle_t *)&loop->wake, loop_handle_close_cb);
  uv_close((uv_handle_t *)&loop->async, loop_handle_close_cb);
  uv_close((uv_handle_t *)&loop->fd_check, loop_handle_close_cb);
  /* Wait for our handles' close callbacks and those of the objects
  ** eddy__uv_close_all closed. */
  while (loop->uv_handles_open > 0 ||
         loop->handles_freed < loop->handles_opened)
    if (uv_run(loop->uv, UV_RUN_NOWAIT) == 0 && loop->uv_handles_open == 0)
      break;
  if (loop->owns_uv) {
    if (uv_loop_close(loop->uv) == UV_EBUSY) {
      /* Handles of objects not closed yet: run their close callbacks. */
      uv_run(loop->uv, UV_RUN_DEFAULT);
      uv_loop_close(loop->uv);
    }
  }
}

/* Nothing here allocates (a loop nobody closed is closed by its __gc, at
** lua_close at the latest, maybe with no memory left): the hooks of
** eddy__uv_close_all run protected, and the ready queue and the timers'
** anchors go with their tables, which drop_refs releases. */
static void loop_close(lua_State *L, eddy_Loop *loop) {
  loop->closing = 1;  /* futures completed meanwhile drop their callbacks */
  eddy__uv_close_all(L, loop);
  eddy__timers_clear(L, loop);
  loop->rhead = 1;
  loop->rcount = 0;
  loop->state = EDDY_LOOP_CLOSED;
  inbox_untarget(loop);
  close_uv(loop);
  loop->closing = 0;
  free(loop->heap);
  loop->heap = NULL;
  loop->nheap = loop->heapcap = 0;
  drop_refs(L, loop);
}

/* loop:close(): pending callbacks are dropped; idempotent. */
static int l_close(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  eddy_Runtime *rt = loop->rt;
  if (loop->state == EDDY_LOOP_RUNNING)
    return eddy__error(L, "RuntimeError", "Cannot close a running event loop");
  /* Closed, or closing: a connection_lost that loop_close calls (the
  ** loop reads closed there) must not start a second close under it. */
  if (loop->state == EDDY_LOOP_CLOSED || loop->closing) return 0;
  (void)rt;
  loop_close(L, loop);
  /* Closed: nothing needs the loop any more; whoever holds it (futures,
  ** the current-loop slot) keeps it reachable. */
  luaL_unref(L, LUA_REGISTRYINDEX, loop->self_ref);
  loop->self_ref = LUA_NOREF;
  return 0;
}

/* __gc of the core: a loop nobody closed is closed here (at lua_close at
** the latest).  A running loop is collected only when os.exit(code, true)
** closes the state from one of its callbacks: uv_run never returns to it
** (exit follows), so it is closed too, and libuv frees what it holds. */
static int l_core_gc(lua_State *L) {
  eddy_Loop *loop = (eddy_Loop *)luaL_checkudata(L, 1, EDDY_LOOPCORE);
  if (loop->state == EDDY_LOOP_IDLE ||
      (loop->state == EDDY_LOOP_RUNNING && loop->rt->exiting))
    loop_close(L, loop);
  else if (loop->state == EDDY_LOOP_CLOSED)
    drop_refs(L, loop);  /* of a loop whose set-up failed */
  return 0;
}

/* }====================================================== */

/* {====================================================== Scheduling */

/* loop:call_soon(cb, ...) -> Handle */
static int l_call_soon(lua_State *L) {
  eddy_Loop *loop = self_loop(L);
  eddy__checkcallable(L, 2);
  eddy__handle_new(L, loop, lua_gettop(L) - 2, 0);
  eddy__ready_push(L, loop, -1);
  return 1;
}

/* loop:call_soon_threadsafe(cb, ...) -> Handle: call_soon that also wakes
** a blocked loop (Lua states are single-threaded, so the caller is on this
** thread; C code on other threads uses eddy_call_soon_threadsafe). */
static int l_call_soon_threadsafe(lua_State *L) {
  l_call_soon(L);
  uv_async_send(&self_loop(L)->async);
  return 1;
}

static double check_time(lua_State *L, int i, const char *what) {
  double d = (double)luaL_checknumber(L, i);
  if (isnan(d)) eddy__error(L, "ValueError", "%s cannot be NaN", what);
  return d;
}

/* loop:call_later(delay, cb, ...) -> TimerHandle */
static int l_call_later(lua_State *L) {
  eddy_Loop *loop = self_loop(L);
  double delay = check_time(L, 2, "delay");
  eddy__checkcallable(L, 3);
  eddy__call_at(L, loop, lua_gettop(L) - 3, eddy__time(loop) + delay);
  return 1;
}

/* loop:call_at(when, cb, ...) -> TimerHandle */
static int l_call_at(lua_State *L) {
  eddy_Loop *loop = self_loop(L);
  double when = check_time(L, 2, "when");
  eddy__checkcallable(L, 3);
  eddy__call_at(L, loop, lua_gettop(L) - 3, when);
  return 1;
}

static int l_time(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  lua_pushnumber(L, eddy__time(loop));
  return 1;
}

/* loop:create_future(), on a closed loop too: asyncio's makes the Future
** (completing it fails only when it has done callbacks to schedule). */
static int l_create_future(lua_State *L) {
  eddy_Loop *loop = push_core(L, lua_upvalueindex(1), 1);
  lua_pop(L, 1);
  eddy__future_new(L, loop != NULL ? loop : eddy__checkanyloop(L, 1));
  return 1;
}

void eddy__loop_create_task(lua_State *L, eddy_Loop *loop, int nargs) {
  int fn = lua_gettop(L) - nargs;
  if (loop->factory_ref == LUA_NOREF) {
    eddy__task_new(L, loop, nargs);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->factory_ref);
  lua_insert(L, fn);
  eddy__pushloop(L, loop);
  lua_insert(L, fn + 1);
  lua_call(L, nargs + 2, 1);  /* factory(loop, fn, ...) */
  /* Whoever made the task goes on to call its methods: a value that has
  ** none is the factory's error, said here rather than as an "attempt to
  ** index" in eddy's own code further on. */
  if (!lua_istable(L, -1) && !lua_isuserdata(L, -1)) {
    lua_pushfstring(L, "task factory returned %s, not a Future-compatible object",
                    luaL_typename(L, -1));
    lua_error(L);  /* no position: the factory's line is not known here */
  }
}

/* loop:create_task(fn_or_coroutine, ...) -> Task (or the factory's). */
static int l_create_task(lua_State *L) {
  eddy_Loop *loop = self_loop(L);
  if (lua_type(L, 2) != LUA_TTHREAD) eddy__checkcallable(L, 2);
  eddy__loop_create_task(L, loop, lua_gettop(L) - 2);
  return 1;
}

/* Make the registry slot *ref hold the value at the top (popped); nil
** empties it. */
static void set_ref(lua_State *L, int *ref) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    *ref = LUA_NOREF;
  } else {
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

/* loop:set_task_factory(factory|nil), on a closed loop too, as asyncio */
static int l_set_task_factory(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  if (!lua_isnoneornil(L, 2)) eddy__checkcallable(L, 2);
  lua_settop(L, 2);
  set_ref(L, &loop->factory_ref);
  return 0;
}

/* loop:_handle_traceback() -> in debug mode, inside a callback: where it
** was scheduled (the default exception handler's handle_traceback). */
static int l_handle_traceback(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  if (loop->handle_tb_ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->handle_tb_ref);
  return 1;
}

static int l_get_task_factory(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  if (loop->factory_ref == LUA_NOREF) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, loop->factory_ref);
  return 1;
}

/* }====================================================== */

/* {====================================================== Debug & fields */

static int l_get_debug(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  lua_pushboolean(L, loop->debug);
  return 1;
}

static int l_set_debug(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  luaL_checkany(L, 2);
  loop->debug = lua_toboolean(L, 2);
  return 0;
}

/* loop:_handle_counts() -> opened, freed (libuv handles of eddy objects) */
static int l_handle_counts(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  lua_pushinteger(L, loop->handles_opened);
  lua_pushinteger(L, loop->handles_freed);
  return 2;
}

/* loop:_fields() -> the table where Lua parts keep per-loop state */
static int l_fields(lua_State *L) {
  eddy__pushluafields(L, eddy__checkanyloop(L, 1));
  return 1;
}

static int l_tostring(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  static const char *const names[] = {"idle", "running", "closed"};
  lua_pushfstring(L, "<Loop %s debug=%s %p>", names[loop->state],
                  loop->debug ? "true" : "false", (void *)loop);
  return 1;
}

/* }====================================================== */

/* {====================================================== Module core */

static int c_new_event_loop(lua_State *L) {
  loop_new(L, NULL);
  return 1;
}

static int c_get_event_loop(lua_State *L) {
  eddy__getloop(L);
  return 1;
}

static int c_set_event_loop(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  if (!lua_isnoneornil(L, 1)) eddy__checkanyloop(L, 1);
  lua_settop(L, 1);
  set_ref(L, &rt->default_loop_ref);
  inbox_retarget(L, rt);
  return 0;
}

/* _get_running_loop() -> loop or nil */
static int c_get_running_loop(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  if (rt->running == NULL) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, rt->running->self_ref);
  return 1;
}

/* Context: the runtime's current Context value (nil = base context). */
static int c_context_get(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  if (rt->context_ref == LUA_NOREF) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
  return 1;
}

/* Switch the current Context (rt->context_ref says who owns the ref). */
static int c_context_set(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  lua_settop(L, 1);
  set_ref(L, &rt->context_ref);
  rt->context_epoch++;
  return 0;
}

/* _note_unhandled(text): an error reached the default exception handler,
** which prints 'text' (eddy_run reports it). */
static int c_note_unhandled(lua_State *L) {
  eddy_Runtime *rt = eddy__runtime(L);
  if (!rt->unhandled_error && lua_type(L, 1) == LUA_TSTRING) {
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_unhandled);
  }
  rt->unhandled_error = 1;
  return 0;
}

void eddy__push_unhandled(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_unhandled);
}

/* Keep the function at 1 in the registry under 'key': a hook the Lua
** layer gives the core. */
static int set_hook(lua_State *L, const void *key) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  return 0;
}

/* C.set_context_copy(fn): contextvars.lua's copy of a Context. */
static int c_set_context_copy(lua_State *L) {
  return set_hook(L, &eddy__key_context_copy);
}

/* }====================================================== */

/* {====================================================== Finalizers */

/*
** An object collected with work left for its loop (an async generator
** suspended at a yield, to be closed by a task; a StreamWriter whose
** transport is open, to be closed) hands that work to finalizers.lua's
** queue, one per loop.  Its __gc may run inside any allocation, even one
** in the middle of the ready queue's growth, so it only asks for the
** queue's hook to run at the start of the next iteration (a safe point).
*/
static const char key_finalizer_hook = 0;

static void run_finalizers(lua_State *L, eddy_Loop *loop) {
  int top = lua_gettop(L);  /* run_turn reads its entries at fixed slots */
  loop->finalizers_due = 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_finalizer_hook);
  eddy__pushloop(L, loop);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    eddy__newcontext(L, "Error while finalizing collected objects", -1);
    eddy__call_exception_handler(L, loop);
  }
  lua_settop(L, top);  /* the error under the context */
}

/* loop:_finalize_soon(): from a __gc that queued work for the hook. */
static int l_finalize_soon(lua_State *L) {
  eddy_Loop *loop = self_loop(L);
  loop->finalizers_due = 1;
  uv_idle_start(&loop->idle, idle_cb);  /* no Lua: safe inside a __gc */
  return 0;
}

/* C.set_finalizer_hook(fn): the hook run_finalizers calls with the loop. */
static int c_set_finalizer_hook(lua_State *L) {
  return set_hook(L, &key_finalizer_hook);
}

/* }====================================================== */

/* {====================================================== Registration */

static const luaL_Reg loop_methods[] = {
  {"run_forever", l_run_forever},
  {"_run_until", l_run_until},
  {"stop", l_stop},
  {"is_running", l_is_running},
  {"is_closed", l_is_closed},
  {"close", l_close},
  {"call_soon", l_call_soon},
  {"call_soon_threadsafe", l_call_soon_threadsafe},
  {"call_later", l_call_later},
  {"call_at", l_call_at},
  {"time", l_time},
  {"create_future", l_create_future},
  {"create_task", l_create_task},
  {"set_task_factory", l_set_task_factory},
  {"get_task_factory", l_get_task_factory},
  {"get_debug", l_get_debug},
  {"set_debug", l_set_debug},
  {"_handle_counts", l_handle_counts},
  {"_handle_traceback", l_handle_traceback},
  {"_fields", l_fields},
  {"_finalize_soon", l_finalize_soon},
  {NULL, NULL}
};

static const luaL_Reg core_funcs[] = {
  {"new_event_loop", c_new_event_loop},
  {"get_event_loop", c_get_event_loop},
  {"set_event_loop", c_set_event_loop},
  {"_get_running_loop", c_get_running_loop},
  {"context_get", c_context_get},
  {"context_set", c_context_set},
  {"set_context_copy", c_set_context_copy},
  {"set_finalizer_hook", c_set_finalizer_hook},
  {"_note_unhandled", c_note_unhandled},
  {NULL, NULL}
};

/* The C core: a table handed to eddy.init (lua/eddy/init.lua). */
int eddy__open_core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cores) == LUA_TNIL) {
    eddy__newweaktable(L, "k");  /* Loop object -> its core */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_cores);
    lua_replace(L, -2);
  }
  /* Loop metatable; methods table doubles as the class Lua extends. */
  if (luaL_newmetatable(L, EDDY_LOOPCORE)) {
    lua_pushcfunction(L, l_core_gc);
    lua_setfield(L, -2, "__gc");
    eddy__seal_metatable(L, -1);
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, EDDY_LOOP)) {
    luaL_newlibtable(L, loop_methods);
    lua_pushvalue(L, -3);  /* the cores table, upvalue of every method */
    luaL_setfuncs(L, loop_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    eddy__seal_metatable(L, -1);
    /* A closed loop is found through this weak map (eddy__pushloop). */
    eddy__newweaktable(L, "v");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &eddy__key_loops);
  }
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -4, "Loop");
  lua_pop(L, 2);  /* the metatable, the cores table */
  eddy__core_tasks(L);
  eddy__core_futures(L);  /* replaces task.c's _future_new */
  eddy__core_streams(L);
  eddy__core_waiters(L);
  eddy__open_socket(L);
  lua_setfield(L, -2, "socket");
  eddy__open_poll(L);
  eddy__open_sockops(L);
  eddy__open_udp(L);
  eddy__open_buffer(L);
  eddy__open_stream(L);
  eddy__open_server(L);
  eddy__open_tcp(L);
  eddy__open_unix(L);
  eddy__open_pipe(L);
  eddy__open_process(L);
  eddy__open_dns(L);
  eddy__open_signal(L);
  eddy__open_sendfile(L);
  eddy__open_tls(L);
  eddy__open_executor(L);
  return 1;
}

/* From any thread (eddy.h). */

/* }====================================================== */
