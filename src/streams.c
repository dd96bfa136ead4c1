/*
** streams.c -- the hot path of asyncio's streams in C: the StreamReader
** (eddy.StreamReader), StreamReaderProtocol's data_received, and
** StreamWriter's write and drain.  The rest of the streams API
** (StreamReaderProtocol, StreamWriter, open_connection, start_server...)
** is lua/eddy/streams.lua.
**
** A reader buffers what the transport delivers as a queue of the strings
** it got: FIRST, consumed up to 'pos' bytes, then CHUNKS[head..tail];
** 'size' counts the bytes not consumed yet (FIRST is nil when 'size' is 0).
** Nothing is joined on arrival: read(n) hands back a whole chunk when it
** fits (an echo loop's case: no copy), and only readuntil joins the
** chunks it searches across.  FIRST is a user value of its own, so a
** reader that holds one chunk at a time, as an echo loop's does, never
** touches the CHUNKS table.
**
** One task at a time may wait for data.  It parks on the reader (task.c's
** eddy__park: no Future per wait); feed_data, feed_eof and set_exception
** wake it and its continuation looks at the buffer again.  The main
** chunk's top-level suspension (API.md §11) has no task to park: it waits
** on a Future.  Backpressure is asyncio's: the transport is paused when
** more than 2 * limit bytes are buffered, and resumed when a read leaves
** at most limit.
**
** The C functions here carry the reader metatable (for new readers) and
** the field names they look up as upvalues (see UV_), so reading a field
** costs no string interning; a reader carries a mark (eddy__newmarked),
** so recognizing one costs no metatable lookup.
*/
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define EDDY_STREAMREADER "eddy.StreamReader"
#define DEFAULT_LIMIT ((lua_Integer)1 << 16) /* asyncio's _DEFAULT_LIMIT */

/* A read of at least this many bytes steps the task waiting for it at
** once (eddy__task_wake_now), while the copy is in the cache.  Smaller
** ones wait for the other reads of the poll: the writes their tasks make
** then leave together, and wake the peer less often, which costs more
** than a small copy gone cold (docs/performance.md). */
#define STEP_NOW_READ 4096

typedef struct {
  eddy_Loop *loop;
  lua_Integer limit;
  size_t size;             /* bytes buffered and not consumed yet */
  size_t pos;              /* bytes consumed of FIRST */
  lua_Integer head, tail;  /* CHUNKS, after FIRST; empty when head > tail */
  void *waiter;            /* the eddy_Task or eddy_Future in WAITER */
  void *kept;              /* what WAITER holds: the last waiter */
  unsigned char waiter_is_task;
  unsigned char eof;
  unsigned char paused;    /* the reader paused its transport */
  unsigned char failed;    /* set_exception was called (R_EXCEPTION) */
  unsigned char exc_woke;  /* set_exception woke the waiter */
  unsigned char skip_exc;  /* the next raise_exception checks nothing */
  unsigned changes;        /* bumped by every take and feed (take) */
} Reader;

enum {
  R_FIRST = 1,   /* the first string of the queue */
  R_CHUNKS,      /* the strings after it */
  R_EXCEPTION,   /* set_exception's error */
  R_TRANSPORT,
  R_WAITER,      /* the parked task, or the top-level wait's future */
  R_LOOP,
  R_NUV = R_LOOP
};

/* Stack slot of the reader in every method. */
#define SELF 1

/* Upvalues of every function here. */
enum { UV_READER_MT = 1, UV_TRANSPORT, UV_READER, UV_NUPVALUES = UV_READER };

/* Push t[key] (raw) for the key string in upvalue uv; returns its type. */
static int rawfield(lua_State *L, int t, int uv) {
  lua_pushvalue(L, lua_upvalueindex(uv));
  return lua_rawget(L, t);
}

/* {====================================================== Basics */

/* The mark of readers (eddy__newmarked). */
static const char reader_key;

static Reader *toreader(lua_State *L, int i) {
  return (Reader *)eddy__tomarked(L, i, &reader_key);
}

static Reader *checkreader(lua_State *L, int i) {
  Reader *r = toreader(L, i);
  if (r == NULL) luaL_typeerror(L, i, EDDY_STREAMREADER);
  return r;
}

/* Call transport:name() on the reader's transport. */
static void call_transport(lua_State *L, const char *name) {
  lua_getiuservalue(L, SELF, R_TRANSPORT);
  lua_getfield(L, -1, name);
  lua_insert(L, -2);
  lua_call(L, 1, 0);
}

static void raise_exception(lua_State *L, Reader *r) {
  if (r->skip_exc) {  /* (retry_k) */
    r->skip_exc = 0;
    return;
  }
  if (!r->failed) return;
  lua_getiuservalue(L, SELF, R_EXCEPTION);
  lua_error(L);
}

static void maybe_resume_transport(lua_State *L, Reader *r) {
  if (r->paused && r->size <= (size_t)r->limit) {
    r->paused = 0;
    call_transport(L, "resume_reading");
  }
}

/* Wake the reader at ri's waiter: a parked task looks at the buffer
** again (at once when 'now' and the loop allows: eddy__task_wake_now),
** the top-level wait's future completes.  WAITER keeps the object until
** a wait by another replaces it ('waiter' NULL says there is none
** waiting; cleared first, since a task stepped now may wait again).
** A value may be left pushed (the waiter, or the ready queue): every
** caller is about to return, and a pop is a call of its own on the
** echo's path. */
static void wake_waiter(lua_State *L, Reader *r, int ri, int now) {
  void *waiter = r->waiter;
  if (waiter == NULL) return;
  r->waiter = NULL;
  if (r->waiter_is_task && !now) {
    eddy__task_wake_uv(L, (eddy_Task *)waiter, ri, R_WAITER, r);
    return;
  }
  lua_getiuservalue(L, ri, R_WAITER);
  if (r->waiter_is_task)
    eddy__task_wake_now(L, (eddy_Task *)waiter, -1, r);
  else if (((eddy_Future *)waiter)->state == EDDY_FUT_PENDING)
    eddy__future_set_result_unless_done(L, lua_gettop(L), 0);
}

/* Whether a task is parked on the reader (or the main chunk waits on it):
** a second waiter is an error, as asyncio's _wait_for_data says. */
static int waiter_busy(Reader *r) {
  if (r->waiter == NULL) return 0;
  if (r->waiter_is_task) return ((eddy_Task *)r->waiter)->parked_on == r;
  return ((eddy_Future *)r->waiter)->state == EDDY_FUT_PENDING &&
         r->loop->rt->running == r->loop;
}

/* }====================================================== */

/* {====================================================== The buffer */

/* FIRST is consumed: the next chunk becomes FIRST (the stack is kept). */
static void drop_first(lua_State *L, Reader *r, int ri) {
  r->pos = 0;
  if (r->head > r->tail) {  /* no chunk after it */
    lua_pushnil(L);
    lua_setiuservalue(L, ri, R_FIRST);
    return;
  }
  lua_getiuservalue(L, ri, R_CHUNKS);
  lua_rawgeti(L, -1, r->head);
  lua_setiuservalue(L, ri, R_FIRST);
  lua_pushnil(L);
  lua_rawseti(L, -2, r->head);
  lua_pop(L, 1);
  if (++r->head > r->tail) {  /* empty: reuse the array slots from 1 */
    r->head = 1;
    r->tail = 0;
  }
}

/* A finalizer may run in any allocation, and one that reads from or
** feeds this reader there would change the buffer under take: take
** raises instead, having changed nothing itself yet. */
static void check_unchanged(lua_State *L, Reader *r, unsigned changes) {
  if (r->changes != changes)
    eddy__error(L, "RuntimeError", "StreamReader used by a finalizer during a read");
}

/* Push the first n bytes (0 < n <= size), removing them. */
static void take(lua_State *L, Reader *r, size_t n) {
  size_t len, done = 0;
  const char *s;
  char *p;
  luaL_Buffer b;
  unsigned changes = ++r->changes;
  lua_getiuservalue(L, SELF, R_FIRST);
  if (n == r->size && r->pos == 0 && r->head > r->tail) {
    r->size = 0;  /* all of FIRST, the only chunk: an echo's read */
    drop_first(L, r, SELF);
    return;
  }
  s = lua_tolstring(L, -1, &len);
  if (n < len - r->pos) {  /* part of the first chunk */
    lua_pushlstring(L, s + r->pos, n);
    check_unchanged(L, r, changes);
    lua_replace(L, -2);
    r->pos += n;
    r->size -= n;
  } else if (n == len - r->pos) {  /* the rest of the first chunk */
    if (r->pos > 0) {
      lua_pushlstring(L, s + r->pos, n);
      check_unchanged(L, r, changes);
      lua_replace(L, -2);
    }
    drop_first(L, r, SELF);
    r->size -= n;
  } else {  /* across chunks: join them */
    lua_pop(L, 1);
    p = luaL_buffinitsize(L, &b, n);
    check_unchanged(L, r, changes);
    while (done < n) {  /* (no allocation: no finalizer) */
      size_t piece;
      lua_getiuservalue(L, SELF, R_FIRST);
      s = lua_tolstring(L, -1, &len);
      piece = len - r->pos;
      if (piece > n - done) piece = n - done;
      memcpy(p + done, s + r->pos, piece);
      done += piece;
      lua_pop(L, 1);
      if (r->pos + piece == len) drop_first(L, r, SELF);
      else r->pos += piece;
    }
    r->size -= n;
    luaL_pushresultsize(&b, n);
    check_unchanged(L, r, changes);  /* coalesce goes on with the buffer */
  }
}

static void take_all(lua_State *L, Reader *r) {
  if (r->size == 0) lua_pushliteral(L, "");
  else take(L, r, r->size);
}

/* Join the buffer into one chunk and push it (readuntil searches it). */
static const char *coalesce(lua_State *L, Reader *r, size_t *len) {
  if (r->size > 0 && (r->head <= r->tail || r->pos > 0)) {
    size_t size = r->size;
    take(L, r, size);  /* leaves the queue empty */
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, SELF, R_FIRST);
    r->size = size;
  } else if (r->size > 0) {
    lua_getiuservalue(L, SELF, R_FIRST);
  } else {
    lua_pushliteral(L, "");
  }
  return lua_tolstring(L, -1, len);
}

/* The data_received of a reader at ri: the string of n bytes at the top
** (popped; the stack may keep more, as wake_waiter's).  'now' as for
** wake_waiter. */
static void feed(lua_State *L, Reader *r, int ri, size_t n, int now) {
  if (r->eof) eddy__error(L, "RuntimeError", "feed_data after feed_eof");
  if (n == 0) {
    lua_pop(L, 1);
    return;
  }
  if (r->size == 0) {
    lua_setiuservalue(L, ri, R_FIRST);
  } else {
    lua_getiuservalue(L, ri, R_CHUNKS);
    lua_insert(L, -2);
    lua_rawseti(L, -2, ++r->tail);
    lua_pop(L, 1);
  }
  r->size += n;
  r->changes++;
  wake_waiter(L, r, ri, now);
  if (r->size > 2 * (size_t)r->limit && !r->paused &&
      lua_getiuservalue(L, ri, R_TRANSPORT) != LUA_TNIL) {
    lua_getfield(L, -1, "pause_reading");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    r->paused = 1;
  }
}

/* }====================================================== */

/* {====================================================== Waiting */

/*
** The suspending methods: each tries with what is buffered ("now"), and
** when it has to wait, calls wait_for_data(L, r, OP_x); once woken, the
** same try runs again with the method's 'nargs' stack slots.
*/
typedef enum { OP_READ, OP_READALL, OP_READEXACTLY, OP_READUNTIL, OP_READLINE } Op;

static int read_now(lua_State *L, Reader *r);
static int readall_now(lua_State *L, Reader *r);
static int readexactly_now(lua_State *L, Reader *r);
static int readuntil_now(lua_State *L, Reader *r);
static int readline_now(lua_State *L, Reader *r);

static const struct {
  int (*now)(lua_State *L, Reader *r);
  int nargs;
  const char *name;
} ops[] = {
  {read_now, 2, "read"},           /* reader, n */
  {readall_now, 3, "read"},        /* reader, n (< 0), blocks */
  {readexactly_now, 2, "readexactly"},
  {readuntil_now, 3, "readuntil"}, /* reader, separators, offset */
  {readline_now, 3, "readline"},
};

/* Every read method asks this first, once per call: where nothing can
** suspend it raises naming itself (API.md §1, §11), even when the buffer
** could serve it at once, and before it takes a byte.  Past it, a read
** that waits is in a task that can yield, or at top level. */
#define CHECK_CAN_SUSPEND(L, r, op) \
  ((void)eddy__can_suspend_rt(L, (r)->loop->rt, ops[op].name))

/* The continuation's context: the reader (at SELF, so alive; a
** userdata's block is aligned for any C type, so its low bits are
** free) and the Op. */
#define WAIT_CTX(r, op) ((lua_KContext)((uintptr_t)(r) | (uintptr_t)(op)))
#define WAIT_OP_MASK ((uintptr_t)7)

/* Continuation: the stack back to the method's slots; an error thrown in
** (cancellation) is raised, and a task woken by it rather than by the
** reader is no longer the waiter; then try again. */
static int retry_k(lua_State *L, int status, lua_KContext ctx) {
  Reader *r = (Reader *)((uintptr_t)ctx & ~WAIT_OP_MASK);
  Op op = (Op)((uintptr_t)ctx & WAIT_OP_MASK);
  int nargs = ops[op].nargs, exc_woke = r->exc_woke;
  (void)status;
  r->exc_woke = 0;
  if (r->waiter != NULL && r->waiter == (void *)r->loop->rt->current_task)
    r->waiter = NULL;
  if (lua_gettop(L) != nargs) {  /* resumed with values: (TAG, err)? */
    eddy__check_throw(L, nargs);
    lua_settop(L, nargs);
  }
  /* asyncio checks the exception when a read starts and, after a wait,
  ** only if set_exception is what woke it: a read woken by data or EOF
  ** goes on with them, though set_exception came before it ran (read()
  ** to EOF is a loop of reads: the one after checks, readall_now). */
  if (!exc_woke) r->skip_exc = 1;
  return ops[op].now(L, r);
}

/*
** Wait for feed_data, feed_eof or set_exception, then try 'op' again.  A
** paused transport is resumed first, or a read wanting more than
** 2 * limit bytes would wait forever.
*/
static int wait_for_data(lua_State *L, Reader *r, Op op) {
  eddy_Runtime *rt = r->loop->rt;
  if (waiter_busy(r))
    return eddy__error(L, "RuntimeError",
                       "%s() called while another coroutine is already "
                       "waiting for incoming data", ops[op].name);
  if (r->paused) {
    r->paused = 0;
    call_transport(L, "resume_reading");
  }
  if (rt->current_task != NULL) {  /* CHECK_CAN_SUSPEND said it can yield */
    if (r->kept != rt->current_task) {  /* a loop of reads keeps its task */
      eddy__push_current_task(L, rt);
      lua_setiuservalue(L, SELF, R_WAITER);
      r->kept = rt->current_task;
    }
    r->waiter = rt->current_task;
    r->waiter_is_task = 1;
    return eddy__park(L, rt, r, WAIT_CTX(r, op), retry_k);
  }
  /* top-level suspension: run the loop until a future completes */
  r->waiter = r->kept = eddy__future_new(L, r->loop);
  r->waiter_is_task = 0;
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, SELF, R_WAITER);
  eddy__wait_toplevel(L, lua_gettop(L), ops[op].name);
  lua_pop(L, 1);
  return retry_k(L, LUA_OK, WAIT_CTX(r, op));
}

/* }====================================================== */

/* {====================================================== read, readexactly */

/* A size argument: an integer, or a float with an integer value (6 / 2),
** as Lua's own functions take; strings are not sizes. */
static lua_Integer checksize(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) luaL_typeerror(L, i, "integer");
  return luaL_checkinteger(L, i);
}

/* Stack: reader, n (an integer, >= 0, also in 'n'). */
static int read_n(lua_State *L, Reader *r, lua_Integer n) {
  raise_exception(L, r);
  if (n == 0) {
    lua_pushliteral(L, "");
  } else if (r->size == 0) {
    if (!r->eof) return wait_for_data(L, r, OP_READ);
    lua_pushliteral(L, "");
  } else {
    take(L, r, (size_t)n < r->size ? (size_t)n : r->size);
  }
  maybe_resume_transport(L, r);
  return 1;
}

static int read_now(lua_State *L, Reader *r) {
  return read_n(L, r, lua_tointeger(L, 2));
}

/*
** read(-1), asyncio's loop of read(limit) until one returns "": what
** arrives is taken out of the buffer at once, into BLOCKS (an array, nil
** until the first), so the buffer stays empty while it waits: another
** read meanwhile has to wait too (RuntimeError), and a cancelled read()
** loses what it took, as asyncio's does.  Stack: reader, n, blocks.
*/
static int readall_now(lua_State *L, Reader *r) {
  int woken = r->skip_exc;  /* by data or EOF (retry_k) */
  raise_exception(L, r);
  if (woken && r->failed && r->size > 0) {
    /* set_exception came after the wake: asyncio's woken read(limit)
    ** takes its block (lost, as all taken so far), the next one raises */
    take(L, r, r->size < (size_t)r->limit ? r->size : (size_t)r->limit);
    maybe_resume_transport(L, r);
    raise_exception(L, r);
  }
  if (r->size > 0) {
    if (lua_isnil(L, 3)) {
      if (r->eof) {  /* all of it in one: no array */
        take_all(L, r);
        maybe_resume_transport(L, r);
        return 1;
      }
      lua_newtable(L);
      lua_replace(L, 3);
    }
    take_all(L, r);
    lua_rawseti(L, 3, (lua_Integer)lua_rawlen(L, 3) + 1);
    maybe_resume_transport(L, r);
  }
  if (!r->eof) return wait_for_data(L, r, OP_READALL);
  if (lua_isnil(L, 3)) {
    lua_pushliteral(L, "");
  } else {
    luaL_Buffer b;
    lua_Integer i, nblocks = (lua_Integer)lua_rawlen(L, 3);
    luaL_buffinit(L, &b);
    for (i = 1; i <= nblocks; i++) {
      lua_rawgeti(L, 3, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
  }
  return 1;
}

/* reader:read(n) (S): up to n bytes (nil or negative: until EOF); ""
** at EOF. */
static int r_read(lua_State *L) {
  Reader *r;
  lua_Integer n;
  /* read(n) on a reader: the stack is already read_n's */
  if (lua_gettop(L) == 2 && lua_isinteger(L, 2) &&
      (n = lua_tointeger(L, 2)) >= 0 && (r = toreader(L, SELF)) != NULL) {
    CHECK_CAN_SUSPEND(L, r, OP_READ);
    return read_n(L, r, n);
  }
  r = checkreader(L, SELF);
  n = lua_isnoneornil(L, 2) ? -1 : checksize(L, 2);
  CHECK_CAN_SUSPEND(L, r, OP_READ);
  lua_settop(L, 1);
  lua_pushinteger(L, n);
  if (n >= 0) return read_n(L, r, n);
  lua_pushnil(L);
  return readall_now(L, r);
}

static int readexactly_now(lua_State *L, Reader *r) {
  lua_Integer n = lua_tointeger(L, 2);
  raise_exception(L, r);
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (r->size < (size_t)n) {
    if (!r->eof) return wait_for_data(L, r, OP_READEXACTLY);
    take_all(L, r);
    lua_pushinteger(L, n);
    eddy__newerror(L, "IncompleteReadError", 2);
    return lua_error(L);
  }
  take(L, r, (size_t)n);
  maybe_resume_transport(L, r);
  return 1;
}

/* reader:readexactly(n) (S): exactly n bytes, or IncompleteReadError. */
static int r_readexactly(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  lua_Integer n = checksize(L, 2);
  if (n < 0)
    return eddy__error(L, "ValueError",
                       "readexactly size can not be less than zero");
  CHECK_CAN_SUSPEND(L, r, OP_READEXACTLY);
  lua_settop(L, 1);
  lua_pushinteger(L, n);
  return readexactly_now(L, r);
}

/* }====================================================== */

/* {====================================================== readuntil, readline */

/*
** Stack of readuntil and readline: reader, separators (a string, or an
** array of strings sorted shortest first), offset (the bytes from the
** start known to hold no separator).
*/

typedef enum {
  UNTIL_FOUND,     /* *pos: where the match ends */
  UNTIL_EOF,       /* no match and no more data */
  UNTIL_NOT_FOUND, /* over the limit without a match; *pos: consumed */
  UNTIL_TOO_LONG,  /* a match beyond the limit; *pos: where it starts */
  UNTIL_WAIT
} UntilStatus;

static const char *separator(lua_State *L, lua_Integer i, size_t *len) {
  const char *sep;
  if (lua_type(L, 2) == LUA_TSTRING) return lua_tolstring(L, 2, len);
  lua_rawgeti(L, 2, i);
  sep = lua_tolstring(L, -1, len);
  lua_pop(L, 1);  /* the array keeps it */
  return sep;
}

static UntilStatus until_search(lua_State *L, Reader *r, size_t *pos) {
  lua_Integer i, nseps = 1;
  size_t minlen, maxlen, offset = (size_t)lua_tointeger(L, 3);
  size_t match_start = 0, match_end = 0;
  if (lua_type(L, 2) == LUA_TTABLE) nseps = (lua_Integer)lua_rawlen(L, 2);
  separator(L, 1, &minlen);
  separator(L, nseps, &maxlen);
  if (r->size >= offset + minlen) {
    size_t buflen;
    const char *buf = coalesce(L, r, &buflen);
    for (i = 1; i <= nseps; i++) {
      size_t seplen;
      const char *sep = separator(L, i, &seplen);
      const char *at = (const char *)memmem(buf + offset, buflen - offset,
                                            sep, seplen);
      if (at != NULL &&
          (match_end == 0 || (size_t)(at - buf) + seplen < match_end)) {
        match_start = (size_t)(at - buf);
        match_end = match_start + seplen;
      }
    }
    lua_pop(L, 1);
    if (match_end > 0) {
      if (match_start > (size_t)r->limit) {
        *pos = match_start;
        return UNTIL_TOO_LONG;
      }
      *pos = match_end;
      return UNTIL_FOUND;
    }
    /* a separator may straddle what came so far and what comes next */
    offset = buflen + 1 > maxlen ? buflen + 1 - maxlen : 0;
    lua_pushinteger(L, (lua_Integer)offset);
    lua_replace(L, 3);
    if (offset > (size_t)r->limit) {
      *pos = offset;
      return UNTIL_NOT_FOUND;
    }
  }
  /* data completing a separator may come with EOF: searched first */
  return r->eof ? UNTIL_EOF : UNTIL_WAIT;
}

static void push_overrun(lua_State *L, UntilStatus st, size_t pos) {
  lua_pushstring(L, st == UNTIL_NOT_FOUND
                        ? "Separator is not found, and chunk exceed the limit"
                        : "Separator is found, but chunk is longer than limit");
  lua_pushinteger(L, (lua_Integer)pos);
  eddy__newerror(L, "LimitOverrunError", 2);
}

static int readuntil_now(lua_State *L, Reader *r) {
  size_t pos = 0;
  UntilStatus st;
  raise_exception(L, r);
  switch ((st = until_search(L, r, &pos))) {
    case UNTIL_FOUND:
      take(L, r, pos);
      maybe_resume_transport(L, r);
      return 1;
    case UNTIL_EOF:
      take_all(L, r);
      lua_pushnil(L);
      eddy__newerror(L, "IncompleteReadError", 2);
      return lua_error(L);
    case UNTIL_WAIT:
      return wait_for_data(L, r, OP_READUNTIL);
    default:
      push_overrun(L, st, pos);
      return lua_error(L);
  }
}

static int by_length(const void *a, const void *b) {
  size_t la = ((const size_t *)a)[0], lb = ((const size_t *)b)[0];
  return la < lb ? -1 : la > lb;
}

/* Check readuntil's separator (slot 2): a non-empty string, or an array
** of them, which becomes a new array sorted shortest first (the shortest
** match wins). */
static void check_separators(lua_State *L) {
  lua_Integer i, n;
  size_t(*order)[2];
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "\n");
  }
  if (lua_type(L, 2) == LUA_TSTRING) {
    if (lua_rawlen(L, 2) == 0)
      eddy__error(L, "ValueError", "Separator should be at least one-byte string");
    lua_settop(L, 2);
    return;
  }
  if (lua_type(L, 2) != LUA_TTABLE || lua_getmetatable(L, 2))
    luaL_typeerror(L, 2, "string or list of strings");
  n = (lua_Integer)lua_rawlen(L, 2);
  if (n == 0)
    eddy__error(L, "ValueError", "Separator should contain at least one element");
  order = (size_t(*)[2])lua_newuserdatauv(L, (size_t)n * sizeof *order, 0);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
      luaL_error(L, "bad argument #1 to 'readuntil' (separator #%d: string "
                 "expected, got %s)", (int)i, luaL_typename(L, -1));
    order[i - 1][0] = lua_rawlen(L, -1);
    order[i - 1][1] = (size_t)i;
    lua_pop(L, 1);
    if (order[i - 1][0] == 0)
      eddy__error(L, "ValueError", "Separator should be at least one-byte string");
  }
  qsort(order, (size_t)n, sizeof *order, by_length);
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)order[i - 1][1]);
    lua_rawseti(L, -2, i);
  }
  lua_replace(L, 2);
  lua_settop(L, 2);
}

/* reader:readuntil(separator) (S): the data up to and including the
** separator (default "\n"; a list of strings: the earliest ending match).
** IncompleteReadError at EOF, LimitOverrunError past the limit. */
static int r_readuntil(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  check_separators(L);
  CHECK_CAN_SUSPEND(L, r, OP_READUNTIL);
  lua_pushinteger(L, 0);  /* offset */
  return readuntil_now(L, r);
}

static int readline_now(lua_State *L, Reader *r) {
  size_t pos = 0;
  UntilStatus st;
  raise_exception(L, r);
  switch ((st = until_search(L, r, &pos))) {
    case UNTIL_FOUND:
      take(L, r, pos);
      break;
    case UNTIL_EOF:  /* the partial line, maybe "" */
      take_all(L, r);
      break;
    case UNTIL_WAIT:
      return wait_for_data(L, r, OP_READLINE);
    default: {  /* drop the line, as asyncio does, and raise ValueError */
      size_t len;
      const char *buf = coalesce(L, r, &len);
      if (st == UNTIL_TOO_LONG && pos < len && buf[pos] == '\n') pos++;
      else pos = len;
      lua_pop(L, 1);
      if (pos > 0) take(L, r, pos);
      maybe_resume_transport(L, r);
      push_overrun(L, st, pos);
      lua_getfield(L, -1, "message");
      eddy__newerror(L, "ValueError", 1);
      return lua_error(L);
    }
  }
  maybe_resume_transport(L, r);
  return 1;
}

/* reader:readline() (S): a line with its "\n"; at EOF the partial line
** (maybe ""); ValueError when the line is longer than the limit (what
** was buffered of it is dropped). */
static int r_readline(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  CHECK_CAN_SUSPEND(L, r, OP_READLINE);
  lua_settop(L, 1);
  lua_pushliteral(L, "\n");
  lua_pushinteger(L, 0);
  return readline_now(L, r);
}

/* }====================================================== */

/* {====================================================== Other methods */

/* eddy.StreamReader(limit, loop) -- through the class's __call */
static int r_new(lua_State *L) {
  lua_Integer limit = DEFAULT_LIMIT;
  Reader *r;
  eddy_Loop *loop;
  int isint;
  if (!lua_isnoneornil(L, 2)) {
    limit = lua_tointegerx(L, 2, &isint);
    if (!isint)
      return luaL_error(L, "bad argument #1 to 'StreamReader' (integer "
                        "expected, got %s)", luaL_typename(L, 2));
    if (limit <= 0) return eddy__error(L, "ValueError", "Limit cannot be <= 0");
  }
  if (lua_isnoneornil(L, 3)) {
    loop = eddy__getloop(L);
  } else {
    loop = eddy__toloop(L, 3);
    if (loop == NULL)
      return luaL_error(L, "bad argument #2 to 'StreamReader' (loop or nil "
                        "expected, got %s)", luaL_typename(L, 3));
    lua_pushvalue(L, 3);
  }
  r = (Reader *)eddy__newmarked(L, sizeof *r, R_NUV, &reader_key);
  memset(r, 0, sizeof *r);
  r->loop = loop;
  r->limit = limit;
  r->head = 1;
  lua_pushvalue(L, lua_upvalueindex(UV_READER_MT));
  lua_setmetatable(L, -2);
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, R_LOOP);
  lua_newtable(L);
  lua_setiuservalue(L, -2, R_CHUNKS);
  return 1;
}

static int r_feed_data(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  feed(L, r, SELF, lua_rawlen(L, 2), 0);
  return 0;
}

static int r_feed_eof(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  r->eof = 1;
  wake_waiter(L, r, SELF, 0);
  return 0;
}

static int r_at_eof(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  lua_pushboolean(L, r->eof && r->size == 0);
  return 1;
}

static int r_exception(lua_State *L) {
  checkreader(L, SELF);
  lua_getiuservalue(L, SELF, R_EXCEPTION);
  return 1;
}

static int r_set_exception(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  lua_settop(L, 2);
  r->failed = !lua_isnil(L, 2);
  lua_setiuservalue(L, SELF, R_EXCEPTION);
  if (r->waiter != NULL) r->exc_woke = 1;
  wake_waiter(L, r, SELF, 0);
  return 0;
}

static int r_set_transport(lua_State *L) {
  checkreader(L, SELF);
  luaL_checkany(L, 2);
  if (lua_getiuservalue(L, SELF, R_TRANSPORT) != LUA_TNIL)
    return eddy__error(L, "RuntimeError", "Transport already set");
  lua_settop(L, 2);
  lua_setiuservalue(L, SELF, R_TRANSPORT);
  return 0;
}

/* reader:_status() -> {size =, paused =, eof =}: for tests. */
static int r_status(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)r->size);
  lua_setfield(L, -2, "size");
  lua_pushboolean(L, r->paused);
  lua_setfield(L, -2, "paused");
  lua_pushboolean(L, r->eof);
  lua_setfield(L, -2, "eof");
  return 1;
}

/* <StreamReader 5 bytes eof limit=3 waiter=... exception=... transport=...> */
static int r_tostring(lua_State *L) {
  Reader *r = checkreader(L, SELF);
  luaL_Buffer b;
  static const struct { int uv; const char *label; } fields[] = {
    {R_WAITER, " waiter="}, {R_EXCEPTION, " exception="},
    {R_TRANSPORT, " transport="}};
  size_t i;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "<StreamReader");
  if (r->size > 0) {
    lua_pushfstring(L, " %I bytes", (lua_Integer)r->size);
    luaL_addvalue(&b);
  }
  if (r->eof) luaL_addstring(&b, " eof");
  if (r->limit != DEFAULT_LIMIT) {
    lua_pushfstring(L, " limit=%I", r->limit);
    luaL_addvalue(&b);
  }
  for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    /* WAITER keeps the last waiter after it woke (a loop of reads reuses
    ** it); asyncio shows a waiter only while one waits. */
    if (fields[i].uv == R_WAITER && !waiter_busy(r)) continue;
    if (lua_getiuservalue(L, SELF, fields[i].uv) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    lua_pushstring(L, fields[i].label);
    lua_insert(L, -2);
    lua_concat(L, 2);
    luaL_addvalue(&b);
  }
  if (r->paused) luaL_addstring(&b, " paused");
  luaL_addchar(&b, '>');
  luaL_pushresult(&b);
  return 1;
}

/* }====================================================== */

/* {====================================================== Protocol and writer */

/*
** A StreamReaderProtocol with a reader and a StreamWriter over one of
** eddy's own transports get their per-message methods (data_received;
** write and drain) as closures of their own, bound to a Link: the reader
** and the transport's eddy_Stream, found and recognized once, when the
** object is made, rather than at every message (some 1,000 instructions
** fewer per echo).  A C closure's upvalues are out of Lua's reach (but
** for the debug library: string.gmatch trusts its state the same way),
** so the Link is trusted.  Called on another object than its own, a
** bound method does what the class's does, and so does one whose Link
** was retired: connection_lost unbinds the protocol, and start_tls binds
** the writer again, to the TLS transport.
*/
typedef struct {
  const void *owner;  /* the protocol or writer table the closures are of */
  eddy_Stream *s;     /* a writer's transport */
  Reader *r;          /* the reader, or NULL */
} Link;

/* The Link's user values keep what its pointers point into alive. */
enum { LINK_OWNER = 1, LINK_TRANSPORT, LINK_READER, LINK_NUV = LINK_READER };

/* Upvalue of the bound methods, after the UV_ ones. */
#define UV_LINK (UV_NUPVALUES + 1)

static Link *link_of(lua_State *L) {
  return (Link *)lua_touserdata(L, lua_upvalueindex(UV_LINK));
}

/* The start of the protocol's and the writer's functions: 'nargs'
** arguments, the first a table; push its field for the key in upvalue
** uv and return its type. */
static int self_field(lua_State *L, int nargs, int uv) {
  lua_settop(L, nargs);
  luaL_checktype(L, 1, LUA_TTABLE);
  return rawfield(L, 1, uv);
}

/* StreamReaderProtocol:data_received(data): straight into the reader. */
static int protocol_data_received(lua_State *L) {
  Reader *r;
  if (self_field(L, 2, UV_READER) == LUA_TNIL) return 0;
  r = checkreader(L, 3);
  luaL_checktype(L, 2, LUA_TSTRING);
  lua_pushvalue(L, 2);
  feed(L, r, 3, lua_rawlen(L, 2), 0);
  return 0;
}

/* A bound protocol's data_received: read_cb feeds it directly (below);
** called from Lua, it is the class's. */
static int bound_data_received(lua_State *L) {
  return protocol_data_received(L);
}

/* A retired Link's owner: no Lua value is at this address, so its
** closures, wherever they were copied to, act as the class's methods. */
static const char retired;

/*
** read_cb's shortcut (stream.c) past the protected call of the
** protocol's data_received: when that is a bound one, called for its own
** protocol (set_protocol finds it once: eddy__streams_direct), and
** feeding the reader cannot raise (no error, no call out to pause the
** transport; running out of memory aside, as for the string itself),
** the n bytes go straight into the reader.  A task waiting for a large
** read reads it at once when nothing else is ready (STEP_NOW_READ).
*/
void *eddy__streams_direct(lua_State *L, int fn, int p) {
  Link *k;
  if (lua_tocfunction(L, fn) != bound_data_received) return NULL;
  lua_getupvalue(L, fn, UV_LINK);
  k = (Link *)lua_touserdata(L, -1);
  if (k->r == NULL || k->owner != lua_topointer(L, p)) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_getiuservalue(L, -1, LINK_READER);
  lua_remove(L, -2);
  return k;  /* kept alive by fn, which the transport keeps */
}

int eddy__streams_feed_direct(lua_State *L, void *direct, const char *data,
                              size_t n) {
  Link *k = (Link *)direct;
  Reader *r = k->r;
  int ri = lua_gettop(L);
  if (k->owner == &retired || r->eof ||
      (!r->paused && r->size + n > 2 * (size_t)r->limit))
    return 0;
  eddy__stream_push_read(L, r->loop->rt, data, n);
  feed(L, r, ri, n, n >= STEP_NOW_READ);
  return 1;
}

/* StreamWriter:write(data): the transport's write, called directly when
** it is eddy's own. */
static int writer_write(lua_State *L) {
  eddy_Stream *s;
  self_field(L, 2, UV_TRANSPORT);
  if ((s = eddy__tostream(L, 3)) != NULL) {
    eddy__stream_write(L, s, 3, 2);
    return 0;
  }
  lua_getfield(L, 3, "write");  /* transport:write(data) */
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  return 0;
}

static int bound_write(lua_State *L) {
  Link *k = link_of(L);
  if (lua_topointer(L, 1) != k->owner) return writer_write(L);
  if (lua_gettop(L) != 2) lua_settop(L, 2);
  eddy__stream_write(L, k->s, 0, 2);  /* pushes the transport if needed */
  return 0;
}

static int drain_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L, (void)status, (void)ctx;
  return 0;
}

/*
** StreamWriter:drain() (S) for the writer at 1, with its reader (r, at
** index ri when not NULL) and its transport's stream (s, NULL when the
** transport is not eddy's).  The common case, nothing to wait for, is
** decided here, after the check every suspending function makes first:
** the reader has no error, and eddy's transport is open
** and has not paused its protocol (the protocol's '_paused' mirrors that
** pause).  Anything else is StreamWriter:_drain_wait in Lua, told
** whether eddy's transport has closed its handle and so will call
** connection_lost from the close callback.  Inline: it runs once per
** message of a write/drain loop, and with the check the compiler no longer
** inlined it on its own (callgrind, bench/eddy/echo_streams.lua: 124 ->
** 111 instructions per drain).
*/
static inline int drain(lua_State *L, Reader *r, int ri, eddy_Stream *s) {
  int lost_coming;
  /* First, even when there is nothing to wait for (API.md §1, §11); the
  ** waits in _drain_wait rely on it. */
  eddy__can_suspend_rt(L, r != NULL ? r->loop->rt : eddy__runtime(L), "drain");
  if (r != NULL && r->failed) {
    lua_getiuservalue(L, ri, R_EXCEPTION);
    return lua_error(L);
  }
  if (s != NULL && s->state == EDDY_STREAM_OPEN && !s->proto_paused) return 0;
  lost_coming = s != NULL && s->state == EDDY_STREAM_CLOSED && s->started;
  lua_settop(L, 1);
  lua_getfield(L, 1, "_drain_wait");
  lua_insert(L, 1);
  lua_pushboolean(L, lost_coming);
  lua_callk(L, 2, 0, 0, drain_k);
  return 0;
}

static int writer_drain(lua_State *L) {
  Reader *r = NULL;
  if (self_field(L, 1, UV_READER) != LUA_TNIL) r = toreader(L, 2);
  rawfield(L, 1, UV_TRANSPORT);
  return drain(L, r, 2, eddy__tostream(L, 3));
}

static int bound_drain(lua_State *L) {
  Link *k = link_of(L);
  if (lua_topointer(L, 1) != k->owner) return writer_drain(L);
  if (k->r != NULL && k->r->failed) {
    lua_settop(L, 1);
    lua_getiuservalue(L, lua_upvalueindex(UV_LINK), LINK_READER);
  }
  return drain(L, k->r, 2, k->s);  /* the reader is at 2 if failed */
}

/* Set t[name] (raw) to f with this file's upvalues and, when 'bound', the
** Link at the top as UV_LINK. */
static void set_method(lua_State *L, int t, const char *name,
                       lua_CFunction f, int bound) {
  int i;
  lua_pushstring(L, name);
  for (i = 1; i <= UV_NUPVALUES; i++)
    lua_pushvalue(L, lua_upvalueindex(i));
  if (bound) lua_pushvalue(L, -2 - UV_NUPVALUES);
  lua_pushcclosure(L, f, UV_NUPVALUES + (bound ? 1 : 0));
  lua_rawset(L, t);
}

/* Push a new Link for the table at t and the reader (if any) at ri. */
static Link *new_link(lua_State *L, int t, int ri) {
  Link *k = (Link *)lua_newuserdatauv(L, sizeof *k, LINK_NUV);
  k->owner = lua_topointer(L, t);
  k->s = NULL;
  k->r = toreader(L, ri);
  lua_pushvalue(L, t);
  lua_setiuservalue(L, -2, LINK_OWNER);
  if (k->r != NULL) {
    lua_pushvalue(L, ri);
    lua_setiuservalue(L, -2, LINK_READER);
  }
  return k;
}

/* Retire the Link of t[name] if that is a method bound with f; returns
** whether it was. */
static int retire(lua_State *L, int t, const char *name, lua_CFunction f) {
  int bound = 0;
  lua_pushstring(L, name);
  if (lua_rawget(L, t) == LUA_TFUNCTION && lua_tocfunction(L, -1) == f) {
    lua_getupvalue(L, -1, UV_LINK);
    ((Link *)lua_touserdata(L, -1))->owner = &retired;
    lua_pop(L, 1);
    bound = 1;
  }
  lua_pop(L, 1);
  return bound;
}

/* C._protocol_bind(protocol): bind its data_received to its reader. */
static int protocol_bind(lua_State *L) {
  self_field(L, 1, UV_READER);
  if (toreader(L, 2) != NULL) {
    new_link(L, 1, 2);
    set_method(L, 1, "data_received", bound_data_received, 1);
  }
  return 0;
}

/* C._protocol_unbind(protocol): connection_lost; the protocol has no
** reader any more, and the class's data_received is its again. */
static int protocol_unbind(lua_State *L) {
  lua_settop(L, 1);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (retire(L, 1, "data_received", bound_data_received)) {
    lua_pushnil(L);
    lua_setfield(L, 1, "data_received");
  }
  return 0;
}

/* C._writer_bind(writer): bind its write and drain to its transport and
** reader when the transport is eddy's, else give it the class's methods;
** the ones it had are retired (start_tls replaced the transport).  Either
** way they are the writer's own fields, so that looking them up never
** calls StreamWriter's __index (a function: streams.lua). */
static int writer_bind(lua_State *L) {
  eddy_Stream *s;
  self_field(L, 1, UV_READER);
  retire(L, 1, "write", bound_write);
  retire(L, 1, "drain", bound_drain);
  rawfield(L, 1, UV_TRANSPORT);
  if ((s = eddy__tostream(L, 3)) != NULL) {
    new_link(L, 1, 2)->s = s;
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, LINK_TRANSPORT);
    set_method(L, 1, "write", bound_write, 1);
    set_method(L, 1, "drain", bound_drain, 1);
  } else {
    set_method(L, 1, "write", writer_write, 0);
    set_method(L, 1, "drain", writer_drain, 0);
  }
  return 0;
}

/* }====================================================== */

static const luaL_Reg reader_methods[] = {
  {"read", r_read},
  {"readexactly", r_readexactly},
  {"readuntil", r_readuntil},
  {"readline", r_readline},
  {"feed_data", r_feed_data},
  {"feed_eof", r_feed_eof},
  {"at_eof", r_at_eof},
  {"exception", r_exception},
  {"set_exception", r_set_exception},
  {"set_transport", r_set_transport},
  {"_status", r_status},
  {NULL, NULL}
};

static const luaL_Reg stream_funcs[] = {
  {"_stream_reader_new", r_new},
  {"_protocol_data_received", protocol_data_received},
  {"_writer_write", writer_write},
  {"_writer_drain", writer_drain},
  {"_writer_bind", writer_bind},
  {"_protocol_bind", protocol_bind},
  {"_protocol_unbind", protocol_unbind},
  {NULL, NULL}
};

/* Add StreamReader (its metatable) and the functions above to the core
** table at the top. */
/* Push the upvalues of the functions here (UV_). */
static void push_upvalues(lua_State *L, int reader_mt) {
  lua_pushvalue(L, reader_mt);
  lua_pushliteral(L, "_transport");  /* the writer's 'transport' field */
  lua_pushliteral(L, "_reader");
}

void eddy__core_streams(lua_State *L) {
  int core = lua_gettop(L), mt;
  eddy__newmarkedmetatable(L, EDDY_STREAMREADER);
  mt = lua_gettop(L);
  lua_newtable(L);
  push_upvalues(L, mt);
  luaL_setfuncs(L, reader_methods, UV_NUPVALUES);
  lua_setfield(L, mt, "__index");
  push_upvalues(L, mt);
  lua_pushcclosure(L, r_tostring, UV_NUPVALUES);
  lua_setfield(L, mt, "__tostring");
  lua_pushvalue(L, core);
  push_upvalues(L, mt);
  luaL_setfuncs(L, stream_funcs, UV_NUPVALUES);
  lua_pop(L, 1);
  lua_setfield(L, core, "StreamReader");
}
