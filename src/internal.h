/*
** internal.h -- what eddy's C files share.  Never installed.
**
** Naming: exported names are eddy_, cross-file names eddy__, file-static
** names bare; libuv callbacks end in _cb.
*/
#ifndef EDDY_INTERNAL_H
#define EDDY_INTERNAL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "eddy.h"

/* For the rare paths of functions on the hot paths of reads and writes:
** kept out of line, they leave those functions fewer registers to save. */
#if defined(__GNUC__)
#define EDDY_NOINLINE __attribute__((noinline))
#else
#define EDDY_NOINLINE
#endif

#if LUA_VERSION_NUM != 504
#error "eddy needs Lua 5.4"
#endif

/* lua_closethread appeared in 5.4.6; lua_resetthread before. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define eddy__closethread(co, from) lua_closethread((co), (from))
#else
#define eddy__closethread(co, from) ((void)(from), lua_resetthread(co))
#endif

typedef struct eddy_Runtime eddy_Runtime;
typedef struct eddy_Loop eddy_Loop;
typedef struct eddy_Future eddy_Future;
typedef struct eddy_Task eddy_Task;
typedef struct eddy_Handle eddy_Handle;
typedef struct eddy_UVObject eddy_UVObject;

/* Metatable names. */
#define EDDY_LOOP "eddy.Loop"
#define EDDY_FUTURE "eddy.Future"
#define EDDY_TASK "eddy.Task"
#define EDDY_HANDLE "eddy.Handle"
#define EDDY_TIMERHANDLE "eddy.TimerHandle"

/*
** Everything the ready queue can hold starts with this header, so the
** loop can tell a callback Handle from a Task to step without a lookup.
*/
typedef enum {
  EDDY_KIND_HANDLE = 1,  /* eddy_Handle from call_soon / call_later */
  EDDY_KIND_FUTURE,      /* eddy_Future (never in the ready queue) */
  EDDY_KIND_TASK         /* eddy_Task: being in the queue means "step it" */
} eddy_Kind;

/* ------------------------------------------------------------------ */
/* Runtime: one per lua_State, shared by every loop of that state.     */
/* ------------------------------------------------------------------ */

struct eddy_Runtime {
  lua_State *L;             /* the main thread: every callback runs on it */
  eddy_Loop *running;       /* the loop inside run_forever, or NULL */
  eddy_Task *current_task;  /* the task being stepped, or NULL */
  int current_task_index;   /* its object's index on the main thread's
                               stack while it steps (see current_task()) */
  int task_counter;         /* for default task names "Task-N" */
  /* Metatables by registry integer ref (no string lookups on hot paths)
  ** and by address (to recognize objects quickly). */
  int mt_handle_ref, mt_timer_ref, mt_future_ref, mt_task_ref;
  int mt_future_gc_ref;     /* Future's twin with __gc (see future.c) */
  int default_loop_ref;     /* registry ref of the current loop, or NOREF */
  /* The current Context: a registry ref, or NOREF for the (empty) base
  ** context.  The ref belongs to this slot: whatever replaces it unrefs
  ** the old one (c_context_set in loop.c), and whoever entered a context
  ** (a task step, a callback) unrefs the slot's last value when it leaves
  ** and puts back what was there.  Refs are reused at once, so a change
  ** is told by context_epoch, which counts them, never by the ref. */
  int context_ref;
  unsigned context_epoch;
  int unhandled_error;      /* set when a main-chunk error was reported */
  /* os.exit(code, true) is closing the state: the process ends on
  ** purpose, so the tasks it ends are not reported (task.c). */
  int exiting;
  /* Ctrl-C reached a main chunk while it ran a loop (eddy__loop_interrupt):
  ** the run ends and raises "interrupted!" in the chunk. */
  volatile sig_atomic_t interrupted;
  uv_loop_t *host_uv;       /* loop handed in by an embedder, or NULL */
  struct eddy_Inbox *inbox; /* an embedding state's thread-safe calls, or
                               NULL (require "eddy" from a Lua host) */
  char *read_buf;           /* where reads land (eddy__read_buffer) */
  size_t read_buf_size;
  size_t read_offset;       /* where in read_buf the next stream read
                               starts (stream.c) */
  void *read_call;          /* what a stream's read_cb or alloc_cb hands
                               the protected call it makes, read at its
                               start (stream.c's ReadCall) */
};

/* A state with the standard allocator's large blocks kept for reuse
** (alloc.c), and its closing; NULL when out of memory. */
lua_State *eddy__newstate(void);
void eddy__closestate(lua_State *L);

/* os.exit of a state eddy made: closing the state frees the allocator
** and E, the embedding state (NULL: the executable's). */
void eddy__set_os_exit(lua_State *L, eddy_State *E);

/* The runtime of L (created by luaopen_eddy). */
eddy_Runtime *eddy__runtime(lua_State *L);
/* The runtime's read buffer, grown to at least 'size' bytes: made here,
** where raising is allowed, so that libuv's callbacks only use it. */
char *eddy__read_buffer(lua_State *L, eddy_Runtime *rt, size_t size);

/*
** The queue of eddy_call_soon_threadsafe (eddy.h).  It belongs to the
** embedding state, not to a loop, so it outlives any one loop: a script
** may close the default loop and set a new one.  Whatever loop of the
** state runs drains it at the start of each iteration; other threads wake
** 'target', the loop that will run next: the running one, else the
** default one (NULL while none is open: the calls wait for one).
*/
typedef struct eddy_Inbox {
  uv_mutex_t lock;
  /* Written under the lock, atomically: the loop checks it without the
  ** lock (eddy__inbox_pending in loop.c). */
  struct eddy_ThreadsafeCall *head, *tail;
  eddy_Loop *target;        /* under the lock; written by the loop thread */
  int refused;              /* under the lock: eddy_close has begun */
} eddy_Inbox;

void eddy__inbox_init(eddy_Inbox *in);
/* Refuse further calls and drop the queued ones (eddy_close): before
** lua_close, so no thread wakes a loop that is closing; then _free. */
void eddy__inbox_refuse(eddy_Inbox *in);
void eddy__inbox_free(eddy_Inbox *in);
int eddy__inbox_push(eddy_Inbox *in, void (*fn)(lua_State *L, void *arg),
                     void *arg);
/* Stop the loop's run after the current batch (loop:stop()). */
void eddy__loop_stop(eddy_Loop *loop);

/* Registry keys (addresses of these bytes). */
extern const char eddy__key_runtime;
extern const char eddy__key_errors;      /* the eddy.errors module table */
extern const char eddy__key_await_tag;   /* light userdata tagging eddy's yields */
extern const char eddy__key_context_copy;/* function(ctx) -> copy */
extern const char eddy__key_future;      /* the set of future metatables */
extern const char eddy__key_loops;       /* weak map: eddy_Loop* -> Loop */

/* The value every eddy suspension yields first, so nested coroutine.resume
** can tell eddy's yields from a generator's own. */
#define eddy__pushtag(L) lua_pushlightuserdata((L), (void *)&eddy__key_await_tag)
#define eddy__istag(L, i) \
  (lua_touserdata((L), (i)) == (void *)&eddy__key_await_tag)

/* ------------------------------------------------------------------ */
/* Loop                                                                 */
/* ------------------------------------------------------------------ */

typedef enum {
  EDDY_LOOP_IDLE = 0,   /* not running, not closed */
  EDDY_LOOP_RUNNING,    /* inside run_forever */
  EDDY_LOOP_CLOSED      /* close() finished: every method raises */
} eddy_LoopState;

struct eddy_Loop {
  eddy_Runtime *rt;
  uv_loop_t *uv;
  uv_loop_t own_uv;         /* used when the loop owns its uv loop */
  eddy_Loop *fds_next;      /* the list of open loops (fds.c) */
  int owns_uv;
  eddy_LoopState state;
  int stopping;             /* stop() was called: leave after this batch */
  int starved;              /* no memory even for a report: the run ends
                               with the memory error (eddy__loop_starve) */
  eddy_Future *until;       /* a top-level suspension's future, or NULL */
  eddy_Future *backstop;    /* run_until_complete's future (l_run_until) */
  int keepalive;            /* running forever: block even with no work */
  lua_Integer pending_tasks;/* tasks not done: live work (API.md §11) */
  lua_Integer batch_left;   /* entries of the current batch not run yet */
  lua_Integer turn_budget;  /* callbacks this libuv turn may still run */
  int first_iteration;      /* the turn has not run an iteration yet */
  int in_turn;              /* idle_cb is running a turn (run_turn) */
  int in_entry;             /* run_turn is running the head entry: an
                               error reaching idle_cb is that entry's */
  int ring_gen;             /* bumped when the ready ring is replaced */
  int in_ctx, saved_ctx;    /* a handle's context (callbacks.c) */
  int handle_tb_ref;        /* debug mode: where the callback running was
                               scheduled (asyncio's _current_handle's
                               _source_traceback), or LUA_NOREF */
  int debug;
  int self_ref;             /* registry ref anchoring the Loop while open */
  int ready_ref;            /* registry ref of the ready ring (a table) */
  int anchors_ref;          /* registry ref of a table anchoring timers */
  int handler_ref;          /* exception handler (LUA_NOREF = default) */
  int factory_ref;          /* task factory (LUA_NOREF = default) */
  int tasks_ref;            /* weak set of the loop's tasks (all_tasks) */
  /* The ready queue: a ring over ready[1..cap] of the ready table. */
  lua_Integer rhead, rcount, rcap;
  /* The timer heap, ordered by (when, seq). */
  struct eddy_TimerHandle **heap;
  size_t nheap, heapcap, ncancelled_timers;
  uint64_t timer_seq;
  uint64_t wake_at_ms;      /* uv time the wake timer is armed for */
  uv_idle_t idle;           /* active while the ready queue is not empty */
  uv_timer_t wake;          /* wakes libuv for the earliest eddy timer */
  uv_async_t async;         /* call_soon_threadsafe wake-ups */
  uv_prepare_t fd_check;    /* before libuv polls: fds closed while their
                            ** poll was starting (poll.c) */
  int nfd_started;          /* fds noted for fd_check */
  int finalizers_due;       /* finalizers.lua's hook is to run */
  int uv_handles_open;      /* idle, wake, async not yet closed */
  /* Handle accounting for leak checks in specs. */
  lua_Integer handles_opened, handles_freed;
  int nclosing;  /* objects closing whose close callback has not run */
  int closing;   /* loop_close is closing the objects left open */
  eddy_UVObject *uvobjects;  /* open objects owning libuv handles */
};

/* Loop objects are tables; a map only C reaches gives each its core
** userdata, which holds the eddy_Loop (loop.c). */
/* Check that argument i is an open Loop. */
eddy_Loop *eddy__checkloop(lua_State *L, int i);
/* The Loop at argument i, open or closed, else a standard argument error. */
eddy_Loop *eddy__checkanyloop(lua_State *L, int i);
/* The eddy_Loop of the Loop object at i, open or closed; NULL if not one. */
eddy_Loop *eddy__toloop(lua_State *L, int i);
/* Push the table of the loop's state only C touches (tasks, watchers). */
void eddy__pushfields(lua_State *L, eddy_Loop *loop);
/* Push the table in field 'name' of those fields, creating it on first
** use (a watcher map, say); 'weak' is its __mode, or NULL. */
void eddy__pushfieldtable(lua_State *L, eddy_Loop *loop, const char *name,
                          const char *weak);
/* Push the table where the loop's Lua parts keep state (loop:_fields()). */
void eddy__pushluafields(lua_State *L, eddy_Loop *loop);
/* The loop's slow_callback_duration attribute (debug mode). */
double eddy__slow_callback_duration(lua_State *L, eddy_Loop *loop);
/* RuntimeError "Event loop is closed" when it is. */
void eddy__check_open(lua_State *L, eddy_Loop *loop);
/* Push the Loop object of 'loop'. */
void eddy__pushloop(lua_State *L, eddy_Loop *loop);
/* The current loop of the runtime: running one, else the default one
** (created on first use). Pushes it and returns it. */
eddy_Loop *eddy__getloop(lua_State *L);
/* The same, for work to schedule on it: raises RuntimeError "Event loop is
** closed" (as asyncio's loop methods do) instead of returning a closed one.
** Pops nothing, pushes nothing. */
eddy_Loop *eddy__getopenloop(lua_State *L);
/* Loop time, seconds. */
double eddy__time(eddy_Loop *loop);

/* A task of the loop was created (+1) or is done (-1). */
void eddy__loop_tasks(eddy_Loop *loop, int delta);
/* Push the userdata at index i onto the ready queue (a Handle or a Task). */
void eddy__ready_push(lua_State *L, eddy_Loop *loop, int i);
/* Room for n more entries, pushed then without allocating (future.c). */
void eddy__ready_reserve(lua_State *L, eddy_Loop *loop, int n);
/* The same for user value uv of the userdata at ud (an absolute index),
** leaving one value pushed: for callers about to return, to which a pop
** is a call of its own. */
void eddy__ready_push_uv(lua_State *L, eddy_Loop *loop, int ud, int uv);
/* Whether an I/O callback may step the task it woke at once, rather than
** queue it (loop.c says when asyncio's order allows it); and that step,
** protected, for the task t at index ti. */
int eddy__loop_may_step_now(eddy_Loop *loop);
void eddy__loop_step_task(lua_State *L, eddy_Loop *loop, eddy_Task *t,
                          int ti);
/* An I/O callback is about to run Lua code: the timers due join the ready
** queue first (loop.c says why).  Inline: it is on every read's path. */
void eddy__loop_timers_before_io(lua_State *L, eddy_Loop *loop);
static inline void eddy__loop_before_io(lua_State *L, eddy_Loop *loop) {
  if (loop->nheap > 0 && !loop->in_turn) eddy__loop_timers_before_io(L, loop);
}

/* Run the loop until the future at index i is done ('fut' non-NULL) or until
** stopped.  'keepalive': block when nothing is alive (run_forever), else
** return when no live work is left.  Returns 1 if it stopped normally, 0 if
** nothing was left alive. */
int eddy__loop_run(lua_State *L, eddy_Loop *loop, eddy_Future *fut,
                   int keepalive);
/* From a SIGINT action, while a main chunk runs on the main thread
** (async-signal-safe): the loop run it started (run_forever,
** run_until_complete, a top-level suspension) ends after the callback
** running now and raises "interrupted!" in the chunk, as asyncio's
** KeyboardInterrupt leaves run_forever.  Returns whether a loop runs. */
int eddy__loop_interrupt(eddy_Runtime *rt);
/* An error could not be reported for lack of memory (the report's own
** protected call failed): the loop is starved.  Its run, if it is the one
** running, stops and raises the memory error (docs/loop.md). */
void eddy__loop_starve(eddy_Loop *loop);

/* Report an error to the loop's exception handler.  Pops the context
** table at the top of the stack. */
void eddy__call_exception_handler(lua_State *L, eddy_Loop *loop);
/* Build a context {message=msg, exception=<value at errindex>} and report
** it; extra fields: name/value pairs pushed by the caller are not supported,
** set them on the table yourself with eddy__newcontext. */
void eddy__newcontext(lua_State *L, const char *message, int errindex);
/* The same, for C code that no protected call covers (a libuv callback):
** reports the error at the top (popped) with a context built in a
** protected call of its own, or, when even that fails (out of memory),
** writes both to stderr. */
void eddy__report_error(lua_State *L, eddy_Loop *loop, const char *message);

/* Account a libuv handle opened/freed by the loop (for leak checks). */
#define eddy__handle_opened(loop) ((loop)->handles_opened++)
#define eddy__handle_freed(loop) ((loop)->handles_freed++)

/* ------------------------------------------------------------------ */
/* Objects owning a libuv handle (handle.c): transports, servers, ...   */
/* ------------------------------------------------------------------ */

/*
** Put this first in the userdata struct of any object that owns a libuv
** handle.  Lifecycle: eddy__uv_init (closed) -> eddy__uv_open + uv_*_init
** (eddy__uv_abandon if init fails) -> ... -> eddy__uv_close -> the close
** callback frees the handle, calls on_closed, drops the anchor.
*/
struct eddy_UVObject {
  uv_handle_t *handle;      /* malloc'ed; NULL when closed */
  eddy_Loop *loop;
  int self_ref;             /* registry anchor while open or closing,
                               unless released (eddy__uv_anchor) */
  unsigned char closing;
  eddy_UVObject *next, *prev;  /* the loop's list of open objects */
  /* Called from the close callback with the object at stack index 'self':
  ** release references, resolve futures (optional). */
  void (*on_closed)(lua_State *L, eddy_UVObject *o, int self);
  /* Called by loop:close() before it closes the handle (optional): a
  ** transport may abort itself here; if it closes the handle itself, fine. */
  void (*before_close)(lua_State *L, eddy_UVObject *o, int self);
};

void eddy__uv_init(eddy_UVObject *o);
/* Allocate the libuv handle (handle_size bytes, h->data = o), anchor the
** object at index idx and link it into the loop.  Returns the handle for
** the caller's uv_*_init. */
uv_handle_t *eddy__uv_open(lua_State *L, eddy_UVObject *o, int idx,
                           eddy_Loop *loop, size_t handle_size);
void eddy__uv_abandon(lua_State *L, eddy_UVObject *o);
/* Anchor the open object at idx (anchored = 1), or release its anchor
** while libuv holds nothing that calls it back (0): it may be collected. */
void eddy__uv_anchor(lua_State *L, eddy_UVObject *o, int idx, int anchored);
/* Push the object, anchored or released; nil if a released one is being
** finalized. */
void eddy__uv_push(lua_State *L, eddy_UVObject *o);
/* Start closing (idempotent); returns 1 if it started now. */
int eddy__uv_close(lua_State *L, eddy_UVObject *o);
/* For __gc: close a still-open handle without calling back into Lua;
** 'what' names the object in the debug-mode warning. */
void eddy__uv_gc(lua_State *L, eddy_UVObject *o, const char *what);
/* luaL_checkudata + "attempt to use a closed <what>" if not open. */
void *eddy__uv_check(lua_State *L, int idx, const char *mt, const char *what);
/* loop:close(): close every open object of the loop. */
void eddy__uv_close_all(lua_State *L, eddy_Loop *loop);
/*
** Call a Lua function from a libuv callback: the function and its nargs
** arguments at the top.  Errors go to the loop's exception handler with
** context {message = message, exception = err}; returns the lua_pcall
** status (results left on the stack only on success).  Protocol methods
** (data_received, ...) are called this way.
*/
int eddy__pcall(lua_State *L, eddy_Loop *loop, int nargs, int nresults,
                const char *message);

/* ------------------------------------------------------------------ */
/* Callback handles (Handle, TimerHandle)                               */
/* ------------------------------------------------------------------ */

/* User values of a Handle: the callback, its arguments, the context when
** it has one (has_ctx), and in debug mode where it was created (has_tb):
** [1] = cb, [2 .. nargs+1] = args, [nargs+2] = ctx, then the traceback. */
#define HANDLE_UV_CB 1
#define HANDLE_UV_ARG(i) (2 + (i))  /* i from 0 */

struct eddy_Handle {
  unsigned char kind;       /* EDDY_KIND_HANDLE */
  unsigned char cancelled;
  unsigned char is_timer;   /* an eddy_TimerHandle */
  unsigned char has_ctx;    /* a Context follows the arguments */
  unsigned char has_tb;     /* then a traceback (debug mode) */
  unsigned char sock_wait;  /* a sock_* retry (sockops.c): arg 0 is its
                               future, failed when its socket closes */
  int nargs;
  eddy_Loop *loop;
};

/* A Handle due at a loop time (call_later, call_at). */
typedef struct eddy_TimerHandle {
  eddy_Handle h;
  unsigned char in_heap;    /* still in the loop's heap */
  double when;              /* loop time it is due */
  uint64_t seq;             /* FIFO tie-break among equal times */
  int anchor;               /* ref in the loop's anchors table while in heap */
} eddy_TimerHandle;

/* Create a Handle for the callback and its 'nargs' arguments at the top
** (cb, a1..an); pops them and pushes the handle.  It runs in the context
** at index 'ctxidx' (0: the current context). */
eddy_Handle *eddy__handle_new(lua_State *L, eddy_Loop *loop, int nargs,
                              int ctxidx);
/* The same for a timer due at 'when', scheduled in the loop's heap. */
eddy_TimerHandle *eddy__call_at(lua_State *L, eddy_Loop *loop, int nargs,
                                double when);
/* Call the handle at index hidx, unprotected (run_turn protects whole
** turns); leave its context after an error with eddy__handle_leave. */
void eddy__handle_call(lua_State *L, eddy_Loop *loop, eddy_Handle *h,
                       int hidx);
void eddy__handle_leave(lua_State *L, eddy_Loop *loop);
typedef struct eddy_IoContext {
  int active, saved;
  unsigned epoch;
} eddy_IoContext;

/*
** The context of Lua code the loop calls for libuv, outside every task
** step and callback.  asyncio runs a transport's protocol methods in a
** copy of the context the transport was made in (a server's, for the
** connections it accepts), and a variable they set stays there for the
** transport's next callbacks: so do stream transports and servers here
** (stream.c, server.c); datagram reads come through an fd watcher's
** Handle, which keeps its own copy.  The rest (a child's exit, datagram
** flow control: eddy__pcall) runs in the base context and drops whatever
** it switches to.  eddy__io_context_enter takes the object's Context from
** the top when 'has' is set; eddy__io_context_leave puts back what was
** current and, when the callback switched context (a first set in the
** base context), pushes the new one and returns 1, for the object to keep
** or drop.  Called from inside a task or a callback (a write that calls
** pause_writing), the method runs in the caller's context, as asyncio's
** do, and nothing is entered.
*/
static inline void eddy__io_context_enter(lua_State *L, eddy_Loop *loop,
                                          int has, eddy_IoContext *c) {
  eddy_Runtime *rt = loop->rt;
  c->active = rt->current_task == NULL && !loop->in_ctx;
  if (!c->active) {
    if (has) lua_pop(L, 1);
    return;
  }
  c->saved = rt->context_ref;
  c->epoch = rt->context_epoch;
  rt->context_ref = has ? luaL_ref(L, LUA_REGISTRYINDEX) : LUA_NOREF;
}

static inline int eddy__io_context_leave(lua_State *L, eddy_Loop *loop,
                                         eddy_IoContext *c) {
  eddy_Runtime *rt = loop->rt;
  int switched;
  if (!c->active) return 0;
  switched = rt->context_epoch != c->epoch;
  if (switched) lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
  if (rt->context_ref != LUA_NOREF)  /* see context_ref */
    luaL_unref(L, LUA_REGISTRYINDEX, rt->context_ref);
  rt->context_ref = c->saved;
  return switched;
}

/* Report the error at 'err' raised by the handle at hidx. */
void eddy__handle_report(lua_State *L, eddy_Loop *loop, int hidx, int err);
/* Debug mode: warn when the task, callback or transport (kind "task",
** "callback", "transport") at 'what' took dt seconds. */
void eddy__warn_slow(lua_State *L, eddy_Loop *loop, int what,
                     const char *kind, double dt);
/* Cancel the Handle or TimerHandle at index i. */
void eddy__handle_cancel(lua_State *L, int i);
/* Timers (timers.c). */
void eddy__timer_schedule(lua_State *L, eddy_Loop *loop, eddy_TimerHandle *h,
                          int idx);
void eddy__timer_cancelled(eddy_Loop *loop);
/* Move due timers to the ready queue; re-arm the wake timer. */
void eddy__timers_process(lua_State *L, eddy_Loop *loop);
void eddy__timers_rearm(eddy_Loop *loop);
int eddy__timers_due(eddy_Loop *loop);
void eddy__timers_clear(lua_State *L, eddy_Loop *loop);
void eddy__open_callbacks(lua_State *L);

/* Is / check argument i is callable (function, or value with __call). */
int eddy__iscallable(lua_State *L, int i);
void eddy__checkcallable(lua_State *L, int i);
/* Is / check argument i is an options table (API.md §1: a plain table),
** the check also refusing any name not in 'allowed' (NULL-ended). */
int eddy__isoptions(lua_State *L, int i);
void eddy__checkoptions(lua_State *L, int i, const char *const allowed[]);

/* ------------------------------------------------------------------ */
/* Futures and tasks                                                    */
/* ------------------------------------------------------------------ */

typedef enum {
  EDDY_FUT_PENDING = 0,
  EDDY_FUT_CANCELLED,
  EDDY_FUT_FINISHED
} eddy_FutState;

/* Uservalue slots of a Future (a Task has these and more). */
enum {
  FUT_UV_RESULT = 1,  /* nil, the single result, a table of results, or
                         the exception (flag FUT_EXCEPTION) */
  FUT_UV_CB0,         /* first done callback (a function or a waiting Task) */
  FUT_UV_LOOP,        /* the Loop object (keeps it alive) */
  FUT_UV_EXTRA,       /* nil or a table: callbacks 2.., ctx of cb0, cancel
                         message, source traceback */
  FUT_NUV
};
enum {
  TASK_UV_CORO = FUT_NUV,  /* the coroutine */
  TASK_UV_CTX,             /* the task's Context (nil = base context) */
  TASK_NUV
};
/* The future a task waits on shares RESULT's slot: a task waits only while
** pending, and gets a result only when done (16 bytes less per task). */
#define TASK_UV_WAITER FUT_UV_RESULT

/* Future flags. */
#define FUT_EXCEPTION 0x01     /* RESULT holds an exception */
#define FUT_MULTI 0x02         /* RESULT holds a table of nresults values */
#define FUT_LOG_TB 0x04        /* an exception nobody retrieved yet */
#define FUT_CB0_CTX 0x08       /* EXTRA.ctx0 holds cb0's context */

struct eddy_Future {
  unsigned char kind;       /* EDDY_KIND_FUTURE or EDDY_KIND_TASK */
  unsigned char state;      /* eddy_FutState */
  unsigned char flags;
  unsigned char cb0_is_task;/* CB0 is a Task waiting on this future */
  int nresults;
  int ncallbacks;           /* CB0 plus the ones in EXTRA */
  eddy_Loop *loop;
};

/* Task states beyond the future's. */
struct eddy_Task {
  eddy_Future fut;
  unsigned char must_cancel;   /* throw CancelledError at the next step */
  unsigned char scheduled;     /* a step is in the ready queue */
  unsigned char started;
  unsigned char throw_pending; /* next step resumes with an error */
  int nargs;                   /* arguments for the first resume */
  int num_cancels_requested;
  int id;                      /* for the default name "Task-<id>" */
  unsigned char has_ctx;       /* TASK_UV_CTX holds a Context */
  unsigned char cancel_woke;   /* a cancel() woke it; its step is due */
  unsigned char has_waiter;    /* TASK_UV_WAITER holds a future */
  unsigned char in_tostring;   /* its tostring is being built (t_tostring) */
  unsigned char quiet_destroy; /* no "destroyed but it is pending" report:
                                  run_until_complete's own task, whose
                                  caller got the RuntimeError instead
                                  (asyncio's _log_destroy_pending) */
  const void *parked_on;       /* eddy__park's key while parked, else NULL */
  lua_State *co;               /* the coroutine TASK_UV_CORO keeps alive */
};

eddy_Future *eddy__tofuture(lua_State *L, int i);   /* NULL if not one */
/* Add the metatable at mt to the set eddy__tofuture accepts. */
void eddy__future_metatable(lua_State *L, int mt);
/* Seal the metatable at mt: getmetatable() shows a table with its __name
** only, so Lua code can neither read nor change it. */
void eddy__seal_metatable(lua_State *L, int mt);
/* Push a new table whose __mode is 'mode' ("k", "v"). */
void eddy__newweaktable(lua_State *L, const char *mode);
/* A weak-keyed set in the registry at key 'set', made on first use: put
** the value at i in it (in 1) or take it out (in 0); whether it holds it. */
void eddy__weakset_put(lua_State *L, const void *set, int i, int in);
int eddy__weakset_has(lua_State *L, const void *set, int i);
/* A __gc checking its argument: upvalues (the C finalizer, its metatable). */
int eddy__checked_gc(lua_State *L);
/* luaL_newmetatable for a class whose methods run on hot paths and
** whose objects eddy__newmarked makes: ... */
int eddy__newmarkedmetatable(lua_State *L, const char *name);
/* ... lua_newuserdatauv whose block gets a hidden last word that
** eddy__tomarked checks, tied to the class by 'mark' (the address of a
** static of its file) ... */
void *eddy__newmarked(lua_State *L, size_t size, int nuv, const void *mark);
/* ... the userdata at i if eddy__newmarked made it with 'mark', else NULL:
** cheaper than a metatable check, and as sound (future.c says why).
** Inline: every transport and socket method checks its self with it. */
extern uintptr_t eddy__mark_secret;
static inline uintptr_t eddy__mark_seal(const void *p, const void *mark) {
  return (uintptr_t)p ^ (uintptr_t)mark ^ eddy__mark_secret;
}
static inline void *eddy__tomarked(lua_State *L, int i, const void *mark) {
  char *p = (char *)lua_touserdata(L, i);
  size_t len;
  uintptr_t seal;
  /* (a light userdata has length 0) */
  if (p == NULL || (len = lua_rawlen(L, i)) < sizeof seal) return NULL;
  memcpy(&seal, p + len - sizeof seal, sizeof seal);
  return seal == eddy__mark_seal(p, mark) ? p : NULL;
}
/* Put the core functions of futures in the core table at the top. */
void eddy__core_futures(lua_State *L);
eddy_Future *eddy__checkfuture(lua_State *L, int i);
int eddy__push_future_repr(lua_State *L, int i, const char *kind,
                           const char *details);
eddy_Future *eddy__future_new(lua_State *L, eddy_Loop *loop);  /* pushes */
/* Complete the future at index i with the n values at the top (popped). */
int eddy__future_set_result(lua_State *L, int i, int n);
/* Complete the future at index i with the error at the top (popped). */
int eddy__future_set_exception(lua_State *L, int i);
/* The same, but a future done by now is left as it is, the values
** dropped (asyncio's _set_result_unless_cancelled): for libuv's callbacks,
** which check the future is pending, then make its values, and a
** finalizer run by those allocations may cancel it meanwhile; outside any
** protected call, InvalidStateError would unwind through uv_run. */
int eddy__future_set_result_unless_done(lua_State *L, int i, int n);
int eddy__future_set_exception_unless_done(lua_State *L, int i);
/* Cancel; pushes nothing. Message at index msg (0 = none). */
int eddy__future_cancel(lua_State *L, int i, int msg);
/* Push the CancelledError of the cancelled future at i (its message). */
void eddy__push_cancelled_error(lua_State *L, int i);
/* Replace the value on top with one short line for messages: a string
** quoted if 'quote', anything else through tostring (protected: a failing
** __tostring shows the type name), cut at its first newline or 60 bytes. */
void eddy__brief(lua_State *L, int quote);
/* Push every result (or raise the error); returns how many. */
int eddy__future_result(lua_State *L, int i);
/* Push where the string error at i was raised, if it is the one result()
** re-raised last: 1 if pushed, else 0.  'take': forget that one. */
int eddy__push_reraised_traceback(lua_State *L, int i, int take);
/* For message handlers: if the error at 1 is that string, push it with
** that traceback ("msg\nstack traceback:...") and return 1; else 0.
** Forgets the remembered one either way. */
int eddy__push_raise_site(lua_State *L);
/* Add the task at index t as the waiter of the future at index i. */
void eddy__future_add_waiter(lua_State *L, int i, int t);
void eddy__future_remove_waiter(lua_State *L, int i, int t);
void eddy__open_future(lua_State *L);

eddy_Task *eddy__totask(lua_State *L, int i);
/* Create a task running the function (or coroutine) at index fn with nargs
** arguments above it; pops them, pushes the task. */
eddy_Task *eddy__task_new(lua_State *L, eddy_Loop *loop, int nargs);
/* The same through the loop's task factory when it has one (asyncio's
** loop.create_task, which every implicit task goes through): pops the
** function and its nargs arguments, pushes the factory's result. */
void eddy__loop_create_task(lua_State *L, eddy_Loop *loop, int nargs);
/* Step the task at the top of the stack.  The stack is left anywhere at or
** above the task's index - 1, for the caller to set (loop.c's callers set
** it or return anyway, and a step is hot). */
void eddy__task_step(lua_State *L, eddy_Task *task);
/* The same in two parts, for a step outside any protected call (an I/O
** callback's, loop.c): eddy__task_step_begin steps the task t at ti as
** far as it can without raising, and returns EDDY_STEP_DONE when that is
** all of the step, EDDY_STEP_NOT_BEGUN when nothing has run (the task's
** state asks for more: eddy__task_step does it all), else the status of
** its resume, with nres results, for eddy__task_step_outcome. */
#define EDDY_STEP_DONE (-1)
#define EDDY_STEP_NOT_BEGUN (-2)
int eddy__task_step_begin(lua_State *L, eddy_Task *t, int ti, int *nres);
void eddy__task_step_outcome(lua_State *L, eddy_Task *t, int ti, int status,
                             int nres);
/* Wake-up of a waiting task: its future at index f is done. */
void eddy__open_task(lua_State *L);

/*
** Suspend the running task until the future at index i is done, then
** return its results (the continuation raises its error).  Works from the
** main thread with no loop running too (top-level suspension).  'what'
** names the suspending function for the error raised outside a task,
** first, even when the future is done already (API.md §1, §11).
** Always use as: return eddy__await(L, i, "sleep");
*/
int eddy__await(lua_State *L, int i, const char *what);
/* Whether the calling thread may suspend (inside a task); raises the
** documented RuntimeError naming 'what' otherwise, unless top-level
** suspension applies, in which case it returns 0. */
int eddy__can_suspend(lua_State *L, const char *what);
/* The same for runtime rt: inline, as every wait asks it; the answer for
** a running task that can yield is 1 without a call. */
int eddy__can_suspend_other(lua_State *L, eddy_Runtime *rt, const char *what);
static inline int eddy__can_suspend_rt(lua_State *L, eddy_Runtime *rt,
                                       const char *what) {
  if (rt->current_task != NULL && lua_isyieldable(L)) return 1;
  return eddy__can_suspend_other(L, rt, what);
}
/* Top-level suspension: run the loop of the future at index F until it is
** done; raises when the loop stops first or has nothing left to run. */
void eddy__wait_toplevel(lua_State *L, int F, const char *what);
/* The same, protected, for a caller with something to undo when the wait
** fails (Ctrl-C, nothing left to run): the lua_pcall status, with the
** error at the top on failure. */
int eddy__pwait_toplevel(lua_State *L, int F, const char *what);
/* In a continuation: resumed with (TAG, err) above 'base' raises err. */
void eddy__check_throw(lua_State *L, int base);
/* Push the running task of runtime rt (nil outside one). */
void eddy__push_current_task(lua_State *L, eddy_Runtime *rt);

/*
** Parking: a wait lighter than a future, for the core's own objects.  The
** running task (eddy__can_suspend said so) parks on 'key', an address the
** waking object owns; the object keeps the task and calls eddy__task_wake
** with the same key.  A wake means "look again": the continuation k
** re-tests its condition.  Cancelling a parked task steps it with
** CancelledError, as cancelling an awaited future would.
** Always use as: return eddy__park(L, rt, key, ctx, k);
*/
int eddy__park(lua_State *L, eddy_Runtime *rt, const void *key,
               lua_KContext ctx, lua_KFunction k);
/* Wake the task t, at index ti, if it is parked on 'key'. */
void eddy__task_wake(lua_State *L, eddy_Task *t, int ti, const void *key);
/* The same for the task t held as user value uv of the userdata at ud
** (an absolute index); may leave a value pushed (eddy__ready_push_uv). */
void eddy__task_wake_uv(lua_State *L, eddy_Task *t, int ud, int uv,
                        const void *key);
/* The same from an I/O callback: the task steps before the call returns
** when the loop allows it (eddy__loop_may_step_now), else is queued. */
void eddy__task_wake_now(lua_State *L, eddy_Task *t, int ti,
                         const void *key);

/* ------------------------------------------------------------------ */
/* Errors (errors.c)                                                    */
/* ------------------------------------------------------------------ */

/* Push a new error object of class 'cls' (a name in eddy.errors). */
void eddy__pusherror(lua_State *L, const char *cls, const char *fmt, ...);
/* Raise it. */
int eddy__error(lua_State *L, const char *cls, const char *fmt, ...);
/* The string at i (a string) for a C function taking a NUL-terminated
** one: one with a NUL inside raises ValueError naming 'what', as Python
** does, instead of being cut short (a host, a service, a path). */
const char *eddy__tocstring(lua_State *L, int i, const char *what);
/* Push an OSError subclass for a libuv (negative) error code;
** 'what' prefixes the message (may be NULL). */
void eddy__pushuverror(lua_State *L, int uverr, const char *what);
int eddy__uverror(lua_State *L, int uverr, const char *what);
/* Whether the value at i is an instance of eddy.errors[cls]. */
int eddy__iserror(lua_State *L, int i, const char *cls);
/* Python's `raise Cls` raises Cls(), and Future.set_exception(Cls) sets
** Cls(): an eddy.errors class at i is replaced by a new instance of it.
** So a traceback is never written into a class, where every instance
** would inherit it. */
void eddy__instantiate_class(lua_State *L, int i);
void eddy__open_errors(lua_State *L);

/* Push a new error of class 'cls' built from the 'nargs' values at the
** top (popped), as calling the class from Lua would. */
void eddy__newerror(lua_State *L, const char *cls, int nargs);

/* For message handlers: give the table error at i a 'traceback' field,
** where L is now (level 1: what raised), unless it has one.  Raw: the
** error may be any table, and a strict object's __index or __newindex
** that raises would replace the error being handled. */
void eddy__keep_traceback(lua_State *L, int i);

/* Message handler adding a traceback: error objects (tables) get a
** 'traceback' field; other values are turned into their string with the
** traceback appended, as lua.c's msghandler. */
int eddy__traceback(lua_State *L);

/* ------------------------------------------------------------------ */
/* Runtime entry points                                                 */
/* ------------------------------------------------------------------ */

/* Open eddy on an existing state (the executable, eddy_new, luaopen_eddy):
** creates the runtime on 'uv' (NULL: own loops). Leaves nothing on the
** stack. */
void eddy__attach(lua_State *L, uv_loop_t *uv);
/* Push a copy of the runtime's current context (nil for the base one),
** made by the function contextvars registered (eddy__key_context_copy). */
void eddy__push_context_copy(lua_State *L, eddy_Runtime *rt);
/* Replace the Context at the top with a copy of it. */
void eddy__copy_context(lua_State *L);
/* For an object that keeps the context it was made in (a task, a stream
** transport, a server): push a copy of the current Context and return 1,
** or push nothing and return 0 in the base context. */
int eddy__keep_context(lua_State *L, eddy_Runtime *rt);
/* Switch a state eddy created to the collector mode eddy runs best with. */
void eddy__tune_gc(lua_State *L);
/* The coroutine library's resume/wrap replaced by versions that forward
** eddy's suspensions (coro.c). */
void eddy__open_coro(lua_State *L);
/* Mark the coroutine at i as run by a task: coroutine.resume and
** coroutine.close refuse it, and no other task may drive it (coro.c). */
void eddy__co_mark_task(lua_State *L, int i);
int eddy__co_is_task(lua_State *L, int i);
/* Whether the coroutine at i is running or normal: no task may take it. */
int eddy__co_is_active(lua_State *L, int i);
/* Replace the global require with one whose module may suspend (require.c). */
void eddy__open_require(lua_State *L);
/* The C core table handed to eddy.init (loop.c). */
int eddy__open_core(lua_State *L);
/* task.c's functions for that table: sleep, await, current_task... */
void eddy__core_tasks(lua_State *L);
/* executor.c's: ThreadPoolExecutor, to_thread, run_in_executor... */
void eddy__open_executor(lua_State *L);
/* Drain the default loop after a main chunk (API.md §11). */
int eddy__run_default(lua_State *L, uv_run_mode mode);
/* Push what the default exception handler printed for the first error
** of the last eddy__run_default that nothing handled, or nil. */
void eddy__push_unhandled(lua_State *L);
/* Embedded Lua sources (generated). */
typedef struct { const char *name; const char *source; size_t size; } eddy_Source;
extern const eddy_Source eddy__sources[];


/* ------------------------------------------------------------------ */
/* Byte buffers (buffer.c): eddy.Buffer(size)                          */
/* ------------------------------------------------------------------ */

#define EDDY_BUFFER "eddy.Buffer"

/* Check that argument i is an eddy.Buffer; returns its bytes and size. */
char *eddy__checkbuffer(lua_State *L, int i, size_t *size);
/* Its bytes and size, or NULL if the value at i is not a Buffer. */
char *eddy__tobuffer(lua_State *L, int i, size_t *size);
void eddy__open_buffer(lua_State *L);

/* ------------------------------------------------------------------ */
/* Stream transports (stream.c): TCP, UNIX sockets, pipes               */
/* ------------------------------------------------------------------ */

/* Kinds of stream transport; each has its own metatable (stream.c). */
typedef enum {
  EDDY_STREAM_TCP = 1,
  EDDY_STREAM_UNIX,
  EDDY_STREAM_READ_PIPE,  /* connect_read_pipe: reading only */
  EDDY_STREAM_WRITE_PIPE  /* connect_write_pipe: writing only */
} eddy_StreamKind;

typedef struct eddy_Stream eddy_Stream;
typedef struct eddy_Server eddy_Server;

/*
** States: OPEN (reading and writing) -> CLOSING (close() called: no more
** reads, queued writes drain) -> CLOSED (connection_lost is due, with the
** descriptor still open; the handle closes right after it).
*/
typedef enum {
  EDDY_STREAM_OPEN = 0,
  EDDY_STREAM_CLOSING,
  EDDY_STREAM_CLOSED
} eddy_StreamState;

struct eddy_Stream {
  eddy_UVObject uv;           /* first: owns the uv_tcp_t / uv_pipe_t */
  unsigned char kind;         /* eddy_StreamKind */
  unsigned char state;        /* eddy_StreamState */
  unsigned char started;      /* connection_made was called */
  unsigned char reading;      /* not paused by pause_reading() */
  unsigned char eof_sent;     /* write_eof() was called */
  unsigned char eof_received; /* the peer shut its write side */
  unsigned char proto_paused; /* pause_writing() was called */
  unsigned char buffered;     /* the protocol has get_buffer */
  unsigned char in_sendfile;  /* loop:sendfile's native path owns the
                              ** socket: write() is refused */
  unsigned char has_ctx;      /* EXTRA.context: the Context its protocol's
                              ** methods run in (pcall_protocol) */
  unsigned char in_get_buffer;  /* alloc_cb is running Lua code: reads
                              ** stop and the handle closes in read_cb */
  int reset_err;              /* a reset found at EOF, reported in the next
                              ** iteration (stream.c's pending_error) */
  unsigned int nwrites;       /* uv_write requests in flight */
  unsigned int lost_writes;   /* writes dropped after close (debug) */
  size_t high, low;           /* write buffer limits */
  eddy_Server *server;        /* the server that accepted it, or NULL */
  struct eddy_Hangup *hangup; /* write pipes: watches for the reader
                              ** going away (pipe.c), or NULL */
  void *direct;               /* its protocol's data_received feeds a
                              ** reader: what eddy__streams_feed_direct
                              ** takes (set_protocol), or NULL */
};

/* Push a new, not yet opened stream transport of 'kind'. */
eddy_Stream *eddy__stream_new(lua_State *L, eddy_Loop *loop, int kind);
/* From now on the protocol's methods of the stream s at t run in the
** current Context itself, not a copy (a server's accept: server.c). */
void eddy__stream_keep_context(lua_State *L, eddy_Stream *s, int t);
/* The stream transport at i, or NULL. */
eddy_Stream *eddy__tostream(lua_State *L, int i);
/* transport:write() of the string or eddy.Buffer at index data on the
** stream s at index t (0: not on the stack, pushed if an error or a
** queued write needs it). */
void eddy__stream_write(lua_State *L, eddy_Stream *s, int t, int data);
/* Push the n bytes a read left at 'data' as a Lua string. */
void eddy__stream_push_read(lua_State *L, eddy_Runtime *rt, const char *data,
                            size_t n);
/* streams.c: StreamReader and the streams' hot path, added to the core
** table at the top. */
void eddy__core_streams(lua_State *L);
/* For set_protocol: when the data_received at fn is a StreamReader-
** Protocol's bound to the protocol at p, push its reader and return what
** eddy__streams_feed_direct takes; else return NULL, pushing nothing. */
void *eddy__streams_direct(lua_State *L, int fn, int p);
/* read_cb's shortcut: feed the n bytes read to the reader at the top,
** which eddy__streams_direct gave with 'direct'; returns 0 when the
** protocol's data_received must be called instead. */
int eddy__streams_feed_direct(lua_State *L, void *direct, const char *data,
                              size_t n);
/* waiters.c: C.Waiters, the FIFO of parked tasks behind eddy.Queue. */
void eddy__core_waiters(lua_State *L);
/* Open the libuv handle of the new stream at index t (uv_*_init done);
** raises on failure. */
uv_stream_t *eddy__stream_open(lua_State *L, eddy_Stream *s, int t);
/* Wrap the connected socket 'fd' in the new stream at index t, which owns
** it from now on; returns 0 or a libuv error (fd closed, stream closed).
** It opens the stream unless eddy__stream_open did: a caller that must
** not lose fd to a raise opens it first, then gets fd. */
int eddy__stream_adopt(lua_State *L, eddy_Stream *s, int t, int fd);
/* The (high, low) arguments at 2 and 3 of set_write_buffer_limits, with
** asyncio's defaults (high: default_high, or 4 * low; low: high // 4, Python's
** floor division); ValueError unless high >= low >= 0. */
void eddy__write_limits_args(lua_State *L, lua_Integer default_high,
                             size_t *high, size_t *low);
/* Start the open stream at index t with the protocol at index p:
** connection_made, then reading; the Server at index sv (0: none) is the
** one that accepted it.  May raise on a bad protocol type, or on a
** protocol whose method lookups raise: the stream is then not started. */
void eddy__stream_start(lua_State *L, int t, int p, int sv);
/* Close (or abort) every transport accepted by server 'sv'. */
void eddy__stream_close_clients(lua_State *L, eddy_Loop *loop,
                                eddy_Server *sv, int abort);
void eddy__open_stream(lua_State *L);
/* Ignore SIGPIPE unless the host set a handler of its own (stream.c):
** at start, and when libuv puts back its default (signal.c). */
void eddy__ignore_sigpipe(void);
/* Push the extra-info table of the stream at index t (made if needed). */
void eddy__stream_push_extra(lua_State *L, int t);
/* Pop a value into the extra info of the stream at index t as 'name'. */
void eddy__stream_set_extra(lua_State *L, int t, const char *name);
/* The write pipe at index t lost its reader: close it as asyncio's
** _UnixWritePipeTransport._read_ready does. */
void eddy__stream_hangup(lua_State *L, eddy_Stream *s, int t);
/* Whether o is a stream transport that is closing (its descriptor stays
** open until connection_lost): fd watchers may take the descriptor, as
** asyncio's _ensure_fd_no_transport lets them. */
int eddy__stream_is_closing(const eddy_UVObject *o);

/* Pipes (pipe.c).  Start watching the dup of a write pipe's descriptor
** for its reader going away; 0 or a libuv error. */
int eddy__hangup_start(eddy_Stream *s, int fd);
/* Stop and free the watch (the close completes in libuv's callback). */
void eddy__hangup_stop(eddy_Stream *s);
/* Close the pipe object of the closed pipe transport at index t, as
** asyncio closes its pipe after connection_lost. */
void eddy__pipe_release(lua_State *L, eddy_Stream *s, int t);
void eddy__open_pipe(lua_State *L);

/* Servers (server.c): a connection of server 'sv' (at index svidx) went
** away. */
void eddy__server_detach(lua_State *L, eddy_Server *sv, int svidx);

/* Openers: loop methods, and entries in the core table at the top. */
void eddy__open_server(lua_State *L);
void eddy__open_tcp(lua_State *L);
void eddy__open_unix(lua_State *L);
void eddy__open_dns(lua_State *L);
/* Add 'funcs' to the Loop class of the core table at the top. */
void eddy__loop_methods(lua_State *L, const luaL_Reg *funcs);

/* ------------------------------------------------------------------ */
/* Descriptors (fds.c): 0-2 stay open, libuv's own pipes are refused  */
/* ------------------------------------------------------------------ */

/* At start-up: open the missing ones of 0-2 on /dev/null, and find
** libuv's lock pipe before any loop exists. */
void eddy__fds_init(void);
/* close(fd), except that 0-2 are pointed at /dev/null; 0 or -errno. */
int eddy__fd_close(int fd);
/* The descriptor to hand to libuv for fd, which it will close: fd itself,
** or for 0-2 a duplicate above them (fd then points at /dev/null);
** -errno on failure (fd untouched). */
int eddy__fd_for_uv(int fd);
/* Open eddy loops are listed (from uv_loop_init to uv_loop_close) so that
** their signal pipes can be recognized. */
void eddy__fds_track_loop(eddy_Loop *loop);
void eddy__fds_untrack_loop(eddy_Loop *loop);
/* Whether fd is one of the pipes libuv keeps for itself (a loop's signal
** pipe, the process's signal lock), which Lua must not touch. */
int eddy__fd_is_libuv_pipe(int fd);
/* Raise ValueError when fd is one of them. */
void eddy__check_not_libuv_pipe(lua_State *L, int fd);

/* ------------------------------------------------------------------ */
/* Sockets (socket.c): eddy.socket                                      */
/* ------------------------------------------------------------------ */

#define EDDY_SOCKET "eddy.socket"

typedef struct eddy_Socket {
  int fd;                   /* -1: closed or detached */
  int family, type, proto;  /* type without SOCK_NONBLOCK/SOCK_CLOEXEC */
  double timeout;           /* < 0: blocking; 0: non-blocking; > 0: seconds */
  unsigned char owned;      /* 0: a view; close() never closes the fd */
} eddy_Socket;

/* Push a socket object for fd.  An owned one closes fd on close()/__gc; a
** view (owned = 0: get_extra_info("socket") of a transport) never does and
** cannot be made blocking. */
void eddy__socket_push(lua_State *L, int fd, int family, int type,
                       int owned);
/* The socket at idx, or NULL if it is not one. */
eddy_Socket *eddy__tosocket(lua_State *L, int idx);
/* Check that argument idx is an open socket (OSError EBADF if closed). */
eddy_Socket *eddy__checksocket(lua_State *L, int idx);
/* The fd of argument idx: an integer, an eddy.socket, a Lua file handle,
** or anything with :fileno().  Wrong types raise a Lua argument error, a
** negative fd ValueError (asyncio's _fileobj_to_fd). */
int eddy__checkfd(lua_State *L, int idx);
/* Read the address at idx for 'family' ({host, port[, flowinfo,
** scope_id]}, or a path string for AF_UNIX) into ss/len.  Numeric hosts
** only unless 'resolve' (blocking getaddrinfo); returns 1 for a host name
** left unresolved, 0 when ss is filled.  Bad addresses raise. */
int eddy__socket_addr(lua_State *L, int idx, int family,
                      struct sockaddr_storage *ss, socklen_t *len,
                      int resolve);
/* Push an address as eddy shows it ({host, port} array, or a path). */
void eddy__socket_pushaddr(lua_State *L, const struct sockaddr *sa,
                            socklen_t len);
/* Push and return the text asyncio's messages show for the address at
** idx of a socket of 'family': Python's tuple, ('host', port), with
** flowinfo and scope_id (0 when left out) for AF_INET6; a path as it is. */
const char *eddy__socket_addr_text(lua_State *L, int idx, int family);
/* How many bytes a recv of n should make room for: n, but at most
** EDDY_RECV_MAX on a stream socket (without MSG_WAITALL), where a short
** read is normal: a huge n then costs no huge allocation. */
#define EDDY_RECV_MAX ((size_t)1 << 20)
size_t eddy__recv_size(const eddy_Socket *s, size_t n, int flags);
/* Push the eddy.socket module table (constants, socket, socketpair). */
void eddy__open_socket(lua_State *L);

/* ------------------------------------------------------------------ */
/* Fd watchers (poll.c): one uv_poll_t per fd, as asyncio's selector    */
/* ------------------------------------------------------------------ */

/* Watch fd for 'event' (UV_READABLE or UV_WRITABLE): the Handle at the top
** of the stack (popped) goes to the ready queue whenever the fd is ready;
** the previous handle for that event is cancelled.  'transport': the fd
** belongs to a transport (add_reader on it then raises RuntimeError).
** Raises OSError for an fd that cannot be polled. */
void eddy__fd_watch(lua_State *L, eddy_Loop *loop, int fd, int event,
                    int transport);
/* Stop watching 'event' on fd and cancel its handle; returns 1 if there
** was one.  The watcher closes when no interest is left. */
int eddy__fd_unwatch(lua_State *L, eddy_Loop *loop, int fd, int event);
/* Raise asyncio's RuntimeError "File descriptor N is used by transport"
** if a transport of 'loop' (a datagram one, or a libuv stream) has fd. */
void eddy__fd_check_no_transport(lua_State *L, eddy_Loop *loop, int fd);
/* Add add_reader/remove_reader/add_writer/remove_writer to the Loop class
** of the core table at the top. */
void eddy__open_poll(lua_State *L);
/* Raise RuntimeError if a transport or server of one of this state's
** open loops has fd: closing it under libuv breaks the handle. */
void eddy__check_fd_unused(lua_State *L, int fd);
/* The callback of the loop's fd_check prepare handle (loop.c inits it). */
void eddy__fd_check_cb(uv_prepare_t *h);
/* fd is about to be closed: drop the watchers of fd in every open loop;
** with fail_waits, the sock_* calls waiting on fd raise OSError EBADF. */
void eddy__fd_closing(lua_State *L, int fd, int fail_waits);

/* ------------------------------------------------------------------ */
/* Raw socket operations (sockops.c): loop:sock_*                       */
/* ------------------------------------------------------------------ */

/* An attempt reads its arguments (sock, extras...) at 'base', and pushes
** its results and returns their count, or returns EDDY_SOCK_AGAIN (the
** call would block), or pushes an error and returns EDDY_SOCK_FAILED. */
typedef int (*eddy_SockAttempt)(lua_State *L, int base);
#define EDDY_SOCK_AGAIN (-1)
#define EDDY_SOCK_FAILED (-2)

/* Check argument i is an open non-blocking socket (ValueError if not). */
eddy_Socket *eddy__sock_checknb(lua_State *L, int i);
/* Suspend until an attempt succeeds: a future, a Handle ready(fut, the
** values at base..top) as the reader or writer ('event') of fd, and a done
** callback removing the watcher.  Use as: return eddy__sock_wait(...). */
int eddy__sock_wait(lua_State *L, eddy_Loop *loop, int fd, int event,
                    lua_CFunction ready, int base, const char *what);
/* The body of a 'ready' function: ready(fut, args...) runs the attempt
** unless the future is done and completes the future with its outcome. */
int eddy__sock_ready(lua_State *L, eddy_SockAttempt attempt);
/* Add the sock_* methods to the Loop class of the core table at the top. */
void eddy__open_sockops(lua_State *L);

/* ------------------------------------------------------------------ */
/* Datagram transports (udp.c)                                          */
/* ------------------------------------------------------------------ */

/* The DatagramTransport metatable and loop:_make_datagram_transport(sock,
** protocol, address, waiter), used by create_datagram_endpoint
** (lua/eddy/selector_events.lua). */
void eddy__open_udp(lua_State *L);

/* ------------------------------------------------------------------ */
/* Signals (signal.c)                                                   */
/* ------------------------------------------------------------------ */

/* Add add_signal_handler/remove_signal_handler (and eddy.run's Ctrl-C
** methods) to the Loop class of the core table at the top, and the
** eddy.signal table as its field 'signal'. */
void eddy__open_signal(lua_State *L);
/* The signal to send at argument i (a number or a name, or 0, which only
** checks that the process exists, as os.kill): argument error for a
** wrong type, ValueError for an unknown signal. */
int eddy__checksignal(lua_State *L, int i);

/* Child processes (process.c): loop:_spawn and the eddy.Process handle;
** the core table gets 'subprocess_choices' (PIPE, STDOUT, DEVNULL,
** INHERIT). */
void eddy__open_process(lua_State *L);
/* Our end of the pipe to the child's descriptor i (0-2) of the Process at
** idx, or -1 (none asked for, or taken already); with 'take', the caller
** owns it from now on. */
int eddy__process_pipe(lua_State *L, int idx, int i, int take);

/* ------------------------------------------------------------------ */
/* Sending files (sendfile.c)                                           */
/* ------------------------------------------------------------------ */

/* Add sock_sendfile and sendfile to the Loop class of the core table at
** the top. */
void eddy__open_sendfile(lua_State *L);

/* tls.c: the mbedTLS engine (tls_context and its objects). */
void eddy__open_tls(lua_State *L);

#endif
