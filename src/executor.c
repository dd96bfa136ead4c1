/*
** executor.c -- the thread-pool executor: eddy.ThreadPoolExecutor,
** loop:run_in_executor, loop:set_default_executor and eddy.to_thread
** (asyncio's executor methods over concurrent.futures' thread pool).
**
** A job runs a Lua function in a worker lua_State on a worker thread.  Lua
** states are single-threaded, so nothing is shared: the function travels
** as bytecode (lua_dump; only an _ENV upvalue is allowed), C functions of
** loaded modules travel by name, and arguments, results and errors are
** copied as bytes (nil, booleans, numbers, strings, and tables of these).
**
** Each executor owns a Pool: a FIFO of jobs, a mutex and a condition, and
** up to max_workers threads started on demand.  Each thread creates its
** own lua_State on its first job and keeps it until it exits, so a
** worker's globals persist between the jobs it runs.
**
** Results go back through the loop's Mailbox: a uv_async_t (handle.c owns
** it) that exists while jobs of the loop are in flight, which makes them
** live work (API.md section 11).  Workers append finished jobs to the
** mailbox's Post, a malloc'ed part that outlives the mailbox if the loop
** closes first: then a worker finds the Post detached and frees the job
** itself.  Lock order: a Pool's lock before a Post's.
**
** On the loop side a job belongs to a JobBox userdata holding the future
** and the executor (anchoring both); the mailbox anchors the box while the
** job is in flight.  A box's 'job' is valid exactly while it is not NULL.
*/
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

#define EXECUTOR "eddy.ThreadPoolExecutor"
#define MAILBOX "eddy.ExecutorMailbox"
#define JOBBOX "eddy.ExecutorJob"

/* How deep tables may nest in copied values. */
#define MAXDEPTH 64

/* {====================================================== Copying values */

/*
** Values cross threads as bytes: a tag byte per value, then its payload in
** native byte order (both ends are the same process).  A table is the size
** of its array part and its number of other pairs, then the array values
** (nil for holes), then the pairs (key, value, ...).
*/
enum {
  TAG_NIL = 'n', TAG_FALSE = 'f', TAG_TRUE = 't', TAG_INT = 'i',
  TAG_FLOAT = 'd', TAG_STRING = 's', TAG_TABLE = 'T',
  TAG_LFUNCTION = 'L',  /* bytecode of a Lua function */
  TAG_CFUNCTION = 'C'   /* "module.field" naming a C function */
};

typedef struct Buf {
  char *p;
  size_t n, cap;
} Buf;

/* Append n bytes; returns 0 when out of memory. */
static int buf_put(Buf *b, const void *s, size_t n) {
  if (b->cap - b->n < n) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    if (n > ((size_t)-1) / 2 - b->n) return 0;
    while (cap - b->n < n) cap *= 2;
    p = (char *)realloc(b->p, cap);
    if (p == NULL) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 1;
}

static void buf_add(lua_State *L, Buf *b, const void *s, size_t n) {
  if (!buf_put(b, s, n)) luaL_error(L, "not enough memory");
}

static void buf_tag(lua_State *L, Buf *b, int tag) {
  char c = (char)tag;
  buf_add(L, b, &c, 1);
}

static void buf_size(lua_State *L, Buf *b, size_t n) {
  buf_add(L, b, &n, sizeof n);
}

/* A tagged string, without raising (for the last-resort error message). */
static int buf_put_string(Buf *b, const char *s) {
  char tag = TAG_STRING;
  size_t len = strlen(s);
  return buf_put(b, &tag, 1) && buf_put(b, &len, sizeof len) &&
         buf_put(b, s, len);
}

/* Where a copy runs and what it copies, for its error messages. */
typedef struct Writer {
  lua_State *L;
  Buf *b;
  int argn;            /* loop side: the argument being copied; else 0 */
  const char *what;    /* worker side: "result" or "error value" */
  int index;           /* worker side: which result */
  int seen;            /* stack index of the set of tables being copied
                          (created by the first table), or 0 */
  int depth;
  int keys[MAXDEPTH];  /* stack indices of the keys leading to the value */
} Writer;

static int is_name(const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
    return 0;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9')))
      return 0;
  return 1;
}

/* Add the path to the value being copied (".name[2]") to msg. */
static void add_path(Writer *w, luaL_Buffer *msg) {
  lua_State *L = w->L;
  int i;
  for (i = 0; i < w->depth; i++) {
    int k = w->keys[i];
    if (lua_type(L, k) == LUA_TSTRING && is_name(lua_tostring(L, k)))
      lua_pushfstring(L, ".%s", lua_tostring(L, k));
    else if (lua_type(L, k) == LUA_TSTRING)
      lua_pushfstring(L, "[\"%s\"]", lua_tostring(L, k));
    else if (lua_isinteger(L, k))
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, k));
    else if (lua_type(L, k) == LUA_TNUMBER)
      lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, k));
    else
      lua_pushfstring(L, "[%s]", lua_toboolean(L, k) ? "true" : "false");
    luaL_addvalue(msg);
  }
}

/*
** Raise "cannot copy <what> at <path> to a worker thread": an argument
** error on the loop side; on a worker, a plain error naming the result.
*/
static int copy_error(Writer *w, const char *what) {
  lua_State *L = w->L;
  luaL_Buffer msg;
  luaL_buffinit(L, &msg);
  if (w->argn == 0) {
    lua_pushfstring(L, "%s #%d: ", w->what, w->index);
    luaL_addvalue(&msg);
  }
  luaL_addstring(&msg, "cannot copy ");
  luaL_addstring(&msg, what);
  if (w->depth > 0) {
    luaL_addstring(&msg, " at ");
    add_path(w, &msg);
  }
  luaL_addstring(&msg, w->argn ? " to a worker thread"
                               : " from a worker thread");
  luaL_pushresult(&msg);
  if (w->argn) return luaL_argerror(L, w->argn, lua_tostring(L, -1));
  return lua_error(L);
}

/* The value at i cannot be copied: name it ("function: 0x..."). */
static int type_error(Writer *w, int i, const char *role) {
  const char *s = luaL_tolstring(w->L, i, NULL);
  return copy_error(w, lua_pushfstring(w->L, "%s%s", s, role));
}

static void write_value(Writer *w, int i);

static void write_table(Writer *w, int t) {
  lua_State *L = w->L;
  lua_Integer n, k;
  size_t npairs = 0, at;
  if (lua_getmetatable(L, t)) copy_error(w, "a table with a metatable");
  if (w->depth >= MAXDEPTH) copy_error(w, "tables nested more than 64 deep");
  if (w->seen == 0) {  /* only at depth 0: write_values pops it */
    lua_newtable(L);
    w->seen = lua_gettop(L);
  }
  lua_pushvalue(L, t);
  if (lua_rawget(L, w->seen) != LUA_TNIL)
    copy_error(w, "a table that contains itself");
  lua_pop(L, 1);
  luaL_checkstack(L, 6, "tables nested too deep");
  lua_pushvalue(L, t);
  lua_pushboolean(L, 1);
  lua_rawset(L, w->seen);
  n = (lua_Integer)lua_rawlen(L, t);
  buf_tag(L, w->b, TAG_TABLE);
  buf_add(L, w->b, &n, sizeof n);
  at = w->b->n;
  buf_size(L, w->b, 0);  /* the pair count, patched below */
  for (k = 1; k <= n; k++) {
    lua_pushinteger(L, k);
    lua_rawgeti(L, t, k);
    w->keys[w->depth++] = lua_gettop(L) - 1;
    write_value(w, lua_gettop(L));
    w->depth--;
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int key = lua_gettop(L) - 1;
    if (lua_isinteger(L, key) && lua_tointeger(L, key) >= 1 &&
        lua_tointeger(L, key) <= n) {
      lua_pop(L, 1);
      continue;
    }
    switch (lua_type(L, key)) {
      case LUA_TSTRING: case LUA_TNUMBER: case LUA_TBOOLEAN: break;
      default: type_error(w, key, " (a table key)");
    }
    write_value(w, key);
    w->keys[w->depth++] = key;
    write_value(w, key + 1);
    w->depth--;
    npairs++;
    lua_pop(L, 1);
  }
  memcpy(w->b->p + at, &npairs, sizeof npairs);
  lua_pushvalue(L, t);
  lua_pushnil(L);
  lua_rawset(L, w->seen);
}

static void write_value(Writer *w, int i) {
  lua_State *L = w->L;
  switch (lua_type(L, i)) {
    case LUA_TNIL:
      buf_tag(L, w->b, TAG_NIL);
      break;
    case LUA_TBOOLEAN:
      buf_tag(L, w->b, lua_toboolean(L, i) ? TAG_TRUE : TAG_FALSE);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, i)) {
        lua_Integer v = lua_tointeger(L, i);
        buf_tag(L, w->b, TAG_INT);
        buf_add(L, w->b, &v, sizeof v);
      } else {
        lua_Number v = lua_tonumber(L, i);
        buf_tag(L, w->b, TAG_FLOAT);
        buf_add(L, w->b, &v, sizeof v);
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, i, &len);
      buf_tag(L, w->b, TAG_STRING);
      buf_size(L, w->b, len);
      buf_add(L, w->b, s, len);
      break;
    }
    case LUA_TTABLE:
      write_table(w, i);
      break;
    default:
      type_error(w, i, "");
  }
}

/*
** Copy the n values from stack index 'first' into b: a count, then the
** values.  argn > 0 (loop side): value k is argument argn + k - 1 for
** error messages; argn == 0 (worker): value k is "<what> #k".
*/
static void write_values(lua_State *L, Buf *b, int first, int n, int argn,
                         const char *what) {
  Writer w;
  int k, top = lua_gettop(L);
  w.L = L;
  w.b = b;
  w.what = what;
  w.depth = 0;
  w.seen = 0;
  buf_size(L, b, (size_t)n);
  for (k = 0; k < n; k++) {
    w.argn = argn > 0 ? argn + k : 0;
    w.index = k + 1;
    write_value(&w, first + k);
  }
  lua_settop(L, top);
}

typedef struct Reader {
  const char *p;
  size_t pos;
} Reader;

/* Bytes we wrote ourselves: no bounds to check. */
static const char *read_bytes(Reader *r, size_t n) {
  const char *s = r->p + r->pos;
  r->pos += n;
  return s;
}

static size_t read_size(Reader *r) {
  size_t n;
  memcpy(&n, read_bytes(r, sizeof n), sizeof n);
  return n;
}

/* Push the next value. */
static void read_value(lua_State *L, Reader *r) {
  luaL_checkstack(L, 3, "tables nested too deep");
  switch (*read_bytes(r, 1)) {
    case TAG_NIL: lua_pushnil(L); break;
    case TAG_FALSE: lua_pushboolean(L, 0); break;
    case TAG_TRUE: lua_pushboolean(L, 1); break;
    case TAG_INT: {
      lua_Integer v;
      memcpy(&v, read_bytes(r, sizeof v), sizeof v);
      lua_pushinteger(L, v);
      break;
    }
    case TAG_FLOAT: {
      lua_Number v;
      memcpy(&v, read_bytes(r, sizeof v), sizeof v);
      lua_pushnumber(L, v);
      break;
    }
    case TAG_STRING: {
      size_t len = read_size(r);
      lua_pushlstring(L, read_bytes(r, len), len);
      break;
    }
    default: {  /* TAG_TABLE */
      lua_Integer n, k;
      size_t npairs;
      memcpy(&n, read_bytes(r, sizeof n), sizeof n);
      npairs = read_size(r);
      lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n,
                      npairs > INT_MAX ? INT_MAX : (int)npairs);
      for (k = 1; k <= n; k++) {
        read_value(L, r);
        lua_rawseti(L, -2, k);
      }
      for (; npairs > 0; npairs--) {
        read_value(L, r);
        read_value(L, r);
        lua_rawset(L, -3);
      }
    }
  }
}

/* Push the values written by write_values; returns how many. */
static int read_values(lua_State *L, Reader *r) {
  size_t n = read_size(r), k;
  if (n > INT_MAX / 2) luaL_error(L, "too many values");
  luaL_checkstack(L, (int)n, "too many values");
  for (k = 0; k < n; k++) read_value(L, r);
  return (int)n;
}

/* }====================================================== */

/* {====================================================== Functions */

static int dump_writer(lua_State *L, const void *p, size_t n, void *b) {
  (void)L;
  return !buf_put((Buf *)b, p, n);
}

/* Push "module.field" naming the C function at fn, found in
** package.loaded as tracebacks find names; returns 0 if none. */
static int push_cname(lua_State *L, int fn) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_rawequal(L, -1, fn) && lua_type(L, -2) == LUA_TSTRING) {
          lua_pushfstring(L, "%s.%s", lua_tostring(L, -4),
                          lua_tostring(L, -2));
          lua_replace(L, -6);
          lua_pop(L, 4);
          return 1;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/*
** Copy the function at fn (argument argn): a Lua function as bytecode
** (debug information kept, for error messages and tracebacks), a C
** function by its name in package.loaded.
*/
static void write_function(lua_State *L, Buf *b, int fn, int argn) {
  if (lua_iscfunction(L, fn)) {
    size_t len;
    const char *name;
    if (!push_cname(L, fn))
      luaL_argerror(L, argn, "cannot copy a C function to a worker thread "
                    "unless it is a field of a loaded module");
    name = lua_tolstring(L, -1, &len);
    buf_tag(L, b, TAG_CFUNCTION);
    buf_size(L, b, len);
    buf_add(L, b, name, len);
    lua_pop(L, 1);
  } else if (lua_type(L, fn) == LUA_TFUNCTION) {
    const char *up;
    size_t at, size;
    int i;
    for (i = 1; (up = lua_getupvalue(L, fn, i)) != NULL; i++) {
      lua_pop(L, 1);
      if (strcmp(up, "_ENV") != 0)
        luaL_argerror(L, argn, lua_pushfstring(L,
                      "cannot copy a function with upvalue '%s' to a worker "
                      "thread (only _ENV may be an upvalue)", up));
    }
    buf_tag(L, b, TAG_LFUNCTION);
    at = b->n;
    buf_size(L, b, 0);  /* the bytecode size, patched below */
    lua_pushvalue(L, fn);
    if (lua_dump(L, dump_writer, b, 0) != 0) luaL_error(L, "not enough memory");
    lua_pop(L, 1);
    size = b->n - at - sizeof size;
    memcpy(b->p + at, &size, sizeof size);
  } else {
    luaL_typeerror(L, argn, "function");
  }
}

static const char *bytes_reader(lua_State *L, void *data, size_t *size) {
  Reader *r = (Reader *)data;
  (void)L;
  *size = r->pos;  /* the bytes left, set by read_function */
  r->pos = 0;
  return r->p;
}

/* Worker side: push the function written by write_function. */
static void read_function(lua_State *L, Reader *r) {
  char tag = *read_bytes(r, 1);
  size_t len = read_size(r);
  const char *s = read_bytes(r, len);
  if (tag == TAG_LFUNCTION) {
    Reader chunk;
    chunk.p = s;
    chunk.pos = len;
    if (lua_load(L, bytes_reader, &chunk, "=(executor)", "b") != LUA_OK)
      lua_error(L);
    return;
  }
  {  /* "module.field": the module from package.loaded, else require */
    const char *dot = s + len;
    int base = lua_gettop(L);
    while (dot[-1] != '.') dot--;
    lua_pushlstring(L, s, (size_t)(dot - s - 1));
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, lua_tostring(L, base + 1)) != LUA_TTABLE) {
      lua_getglobal(L, "require");
      lua_pushvalue(L, base + 1);
      lua_call(L, 1, 1);
    }
    lua_pushlstring(L, dot, (size_t)(s + len - dot));
    if (lua_gettable(L, -2) != LUA_TFUNCTION)
      luaL_error(L, "no function '%s' in the worker",
                 lua_pushlstring(L, s, len));
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
  }
}

/* }====================================================== */

/* {====================================================== Jobs and pools */

typedef enum { JOB_CALL, JOB_DRAIN } JobKind;

/* Where a job is, under its pool's lock. */
typedef enum { JOB_QUEUED, JOB_TAKEN } JobState;

/* How it ended. */
typedef enum {
  JOB_OK,         /* 'out' holds the results */
  JOB_ERROR,      /* 'out' holds the error value */
  JOB_CANCELLED,  /* never ran: shutdown(false, {cancel_futures = true}) */
  JOB_NOMEM       /* not even an error message could be written */
} JobStatus;

typedef struct Pool Pool;
typedef struct Post Post;

typedef struct Job {
  struct Job *next, *prev;  /* a pool's queue or watchers; a post's list */
  Pool *pool;
  Post *post;       /* the loop's post while the job holds a reference */
  int ref;          /* loop side: the box's anchor in the mailbox */
  unsigned char kind, state, status;
  Buf in;           /* the function and its arguments */
  Buf out;          /* the results or the error */
} Job;

/*
** The shared part of a mailbox.  'refs' counts the mailbox (until it is
** detached) and every job not yet posted.
*/
struct Post {
  uv_mutex_t lock;
  uv_async_t *async;  /* NULL once the loop side is gone */
  Job *head, *tail;   /* finished jobs, for the loop */
  int refs;
};

struct Pool {
  uv_mutex_t lock;
  uv_cond_t cond;         /* workers wait here for jobs */
  Job *head, *tail;       /* queued jobs, FIFO */
  Job *watchers;          /* JOB_DRAIN jobs, posted when no thread is left */
  unsigned int nqueued, nidle, nrunning;
  unsigned int nlive;     /* threads that have not exited */
  unsigned int nthreads;  /* threads started (loop side only) */
  unsigned int njoined;   /* of those, joined (loop side only) */
  unsigned int max_workers;
  unsigned char shutdown;
  unsigned char orphaned; /* the executor is gone: the last thread frees */
  uv_thread_t *threads;
};

static void job_free(Job *job) {
  free(job->in.p);
  free(job->out.p);
  free(job);
}

static void post_release(Post *p) {
  int last;
  uv_mutex_lock(&p->lock);
  last = --p->refs == 0;
  uv_mutex_unlock(&p->lock);
  if (last) {
    uv_mutex_destroy(&p->lock);
    free(p);
  }
}

/* Hand a finished job to its loop, or free it if the loop is gone. */
static void post_job(Job *job) {
  Post *p = job->post;
  uv_mutex_lock(&p->lock);
  job->post = NULL;
  if (p->async != NULL) {
    job->next = NULL;
    if (p->tail) p->tail->next = job; else p->head = job;
    p->tail = job;
    uv_async_send(p->async);
    job = NULL;
  }
  uv_mutex_unlock(&p->lock);
  if (job != NULL) job_free(job);
  post_release(p);
}

static void pool_free(Pool *pool) {
  uv_cond_destroy(&pool->cond);
  uv_mutex_destroy(&pool->lock);
  free(pool->threads);
  free(pool);
}

/* Unlink a job from the list at *head (pool lock held). */
static void list_remove(Job **head, Job **tail, Job *job) {
  if (job->prev) job->prev->next = job->next; else *head = job->next;
  if (job->next) job->next->prev = job->prev;
  else if (tail != NULL) *tail = job->prev;
}

/* Take back a job that no worker took yet; returns 0 if too late. */
static int pool_unqueue(Job *job) {
  Pool *pool = job->pool;
  int queued;
  uv_mutex_lock(&pool->lock);
  queued = job->state == JOB_QUEUED;
  if (queued && job->kind == JOB_CALL) {
    list_remove(&pool->head, &pool->tail, job);
    pool->nqueued--;
  } else if (queued) {
    list_remove(&pool->watchers, NULL, job);
  }
  job->state = JOB_TAKEN;
  uv_mutex_unlock(&pool->lock);
  return queued;
}

/* No new jobs; with 'cancel', queued jobs go back cancelled. */
static void pool_shutdown(Pool *pool, int cancel) {
  Job *job = NULL;
  uv_mutex_lock(&pool->lock);
  pool->shutdown = 1;
  if (cancel) {
    Job *j;
    job = pool->head;
    pool->head = pool->tail = NULL;
    pool->nqueued = 0;
    for (j = job; j != NULL; j = j->next) {
      j->state = JOB_TAKEN;
      j->status = JOB_CANCELLED;
    }
  }
  uv_cond_broadcast(&pool->cond);
  uv_mutex_unlock(&pool->lock);
  while (job != NULL) {
    Job *next = job->next;
    post_job(job);
    job = next;
  }
}

/* Wait for every thread to exit (after pool_shutdown). */
static void pool_join(Pool *pool) {
  for (; pool->njoined < pool->nthreads; pool->njoined++)
    uv_thread_join(&pool->threads[pool->njoined]);
}

/* }====================================================== */

/* {====================================================== Workers */

static int open_worker(lua_State *W) {
  luaL_openlibs(W);
  return 0;
}

/* A fresh worker state with the standard libraries, or NULL. */
static lua_State *worker_state(void) {
  lua_State *W = eddy__newstate();
  if (W == NULL) return NULL;
  lua_pushcfunction(W, open_worker);
  if (lua_pcall(W, 0, 0, 0) != LUA_OK) {
    eddy__closestate(W);
    return NULL;
  }
  return W;
}

/* Copy the error value at the top into the job, protected: (job, err). */
static int write_error(lua_State *W) {
  Job *job = (Job *)lua_touserdata(W, 1);
  write_values(W, &job->out, 2, 1, 0, "error value");
  return 0;
}

/*
** The job's error is at the top: copy it, or if it cannot be copied (nil,
** a table with a metatable...), its tostring.
*/
static void job_error(lua_State *W, Job *job) {
  int err = lua_gettop(W);
  job->status = JOB_ERROR;
  if (!lua_isnil(W, err)) {
    lua_pushcfunction(W, write_error);
    lua_pushlightuserdata(W, job);
    lua_pushvalue(W, err);
    if (lua_pcall(W, 2, 0, 0) == LUA_OK) return;
    lua_pop(W, 1);
    job->out.n = 0;
  }
  if (!luaL_callmeta(W, err, "__tostring") || lua_type(W, -1) != LUA_TSTRING)
    lua_pushfstring(W, "(error object is a %s value)", luaL_typename(W, err));
  write_values(W, &job->out, lua_gettop(W), 1, 0, "error value");
}

/* On a worker, protected: (job).  Load the function, copy the arguments
** in, call it, copy its results or its error out. */
static int job_run(lua_State *W) {
  Job *job = (Job *)lua_touserdata(W, 1);
  Reader r;
  int nargs;
  r.p = job->in.p;
  r.pos = 0;
  read_function(W, &r);  /* 2 */
  nargs = read_values(W, &r);
  if (lua_pcall(W, nargs, LUA_MULTRET, 0) != LUA_OK) {
    job_error(W, job);
    return 0;
  }
  write_values(W, &job->out, 2, lua_gettop(W) - 1, 0, "result");
  job->status = JOB_OK;
  return 0;
}

/*
** Run the job on W (NULL: no state could be created).  Errors outside the
** function itself (loading it, copying its results, memory) become a
** string error.
*/
static void job_execute(lua_State *W, Job *job) {
  const char *msg = "not enough memory";
  size_t one = 1;
  if (W != NULL) {
    lua_pushcfunction(W, job_run);
    lua_pushlightuserdata(W, job);
    if (lua_pcall(W, 1, 0, 0) == LUA_OK) {
      lua_settop(W, 0);
      return;
    }
    msg = lua_type(W, -1) == LUA_TSTRING ? lua_tostring(W, -1)
                                         : "error in a worker thread";
  }
  job->out.n = 0;
  job->status = JOB_ERROR;
  if (!buf_put(&job->out, &one, sizeof one) || !buf_put_string(&job->out, msg))
    job->status = JOB_NOMEM;
  if (W != NULL) lua_settop(W, 0);
}

/* A thread leaves: the last one wakes those waiting for it (JOB_DRAIN)
** and frees the pool if its executor is gone. */
static void worker_exit(Pool *pool) {
  Job *w = NULL, *j;
  int last_out;
  uv_mutex_lock(&pool->lock);
  if (--pool->nlive == 0) {
    w = pool->watchers;
    pool->watchers = NULL;
    for (j = w; j != NULL; j = j->next) j->state = JOB_TAKEN;
  }
  last_out = pool->nlive == 0 && pool->orphaned;
  uv_mutex_unlock(&pool->lock);
  while (w != NULL) {
    Job *next = w->next;
    w->status = JOB_OK;
    post_job(w);
    w = next;
  }
  if (last_out) pool_free(pool);
}

static void worker_main(void *arg) {
  Pool *pool = (Pool *)arg;
  lua_State *W = NULL;
  uv_mutex_lock(&pool->lock);
  for (;;) {
    Job *job;
    while (pool->head == NULL && !pool->shutdown) {
      pool->nidle++;
      uv_cond_wait(&pool->cond, &pool->lock);
      pool->nidle--;
    }
    job = pool->head;
    if (job == NULL) break;  /* shut down and nothing queued */
    list_remove(&pool->head, &pool->tail, job);
    pool->nqueued--;
    pool->nrunning++;
    job->state = JOB_TAKEN;
    uv_mutex_unlock(&pool->lock);
    if (W == NULL) W = worker_state();
    job_execute(W, job);
    post_job(job);
    uv_mutex_lock(&pool->lock);
    pool->nrunning--;
  }
  uv_mutex_unlock(&pool->lock);
  if (W != NULL) eddy__closestate(W);
  worker_exit(pool);
}

/*
** Queue a job (pool lock held), starting a thread if no idle one will
** take it.  Returns 0, or a libuv error when no thread could be started
** and none is alive.
*/
static int pool_enqueue(Pool *pool, Job *job) {
  job->state = JOB_QUEUED;
  job->next = NULL;
  job->prev = pool->tail;
  if (pool->tail) pool->tail->next = job; else pool->head = job;
  pool->tail = job;
  pool->nqueued++;
  if (pool->nidle < pool->nqueued && pool->nthreads < pool->max_workers) {
    int err = 0;
    if (pool->nthreads % 8 == 0) {
      uv_thread_t *t = (uv_thread_t *)realloc(pool->threads,
          (pool->nthreads + 8) * sizeof *t);
      if (t == NULL) err = UV_ENOMEM; else pool->threads = t;
    }
    if (err == 0)
      err = uv_thread_create(&pool->threads[pool->nthreads], worker_main,
                             pool);
    if (err == 0) {
      pool->nthreads++;
      pool->nlive++;
    } else if (pool->nlive == 0) {
      list_remove(&pool->head, &pool->tail, job);
      pool->nqueued--;
      job->state = JOB_TAKEN;
      return err;
    }
  }
  uv_cond_signal(&pool->cond);
  return 0;
}

/* }====================================================== */

/* {====================================================== Mailboxes */

typedef struct Mailbox {
  eddy_UVObject uv;   /* first: owns the uv_async_t */
  Post *post;         /* NULL once detached */
  int inflight;       /* jobs of the loop not delivered yet */
} Mailbox;

/* A job on the loop side (user values: 1 the future, 2 the executor). */
typedef struct JobBox {
  Job *job;           /* NULL once the job is over for the loop */
  int prepared;       /* the job is still being prepared: the box owns it */
} JobBox;

typedef struct Executor {
  Pool *pool;         /* NULL once collected */
} Executor;

/*
** The loop side goes away (the mailbox closes, the loop closes, or
** lua_close collects it): jobs still with the workers are theirs to free.
*/
static void mailbox_detach(lua_State *L, Mailbox *mb, int self) {
  Post *p = mb->post;
  Job *job;
  if (p == NULL) return;
  uv_mutex_lock(&p->lock);
  p->async = NULL;
  job = p->head;
  p->head = p->tail = NULL;
  uv_mutex_unlock(&p->lock);
  mb->post = NULL;
  while (job != NULL) {
    Job *next = job->next;
    job_free(job);
    job = next;
  }
  lua_getiuservalue(L, self, 1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    JobBox *box = (JobBox *)lua_touserdata(L, -1);
    if (box != NULL) box->job = NULL;  /* skip luaL_ref's free list */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, self, 1);
  post_release(p);
}

/* Close the mailbox at index self (no job in flight any more). */
static void mailbox_close(lua_State *L, Mailbox *mb, int self) {
  mailbox_detach(L, mb, self);
  eddy__pushluafields(L, mb->uv.loop);
  lua_getfield(L, -1, "executor_mailbox");
  if (lua_rawequal(L, -1, self)) {  /* still the loop's mailbox */
    lua_pushnil(L);
    lua_setfield(L, -3, "executor_mailbox");
  }
  lua_pop(L, 2);
  eddy__uv_close(L, &mb->uv);
}

/* loop:close() closes the mailbox: detach first. */
static void mailbox_before_close(lua_State *L, eddy_UVObject *o, int self) {
  mailbox_detach(L, (Mailbox *)o, self);
}

static int mailbox_gc(lua_State *L) {
  Mailbox *mb = (Mailbox *)lua_touserdata(L, 1);
  mailbox_detach(L, mb, 1);
  eddy__uv_gc(L, &mb->uv, "executor mailbox");
  return 0;
}

/* The job of the box at index b is over for the loop: drop its anchor in
** the mailbox at index self and free it. */
static void job_release(lua_State *L, Mailbox *mb, int self, JobBox *box) {
  Job *job = box->job;
  lua_getiuservalue(L, self, 1);
  luaL_unref(L, -1, job->ref);
  lua_pop(L, 1);
  box->job = NULL;
  mb->inflight--;
  if (job->post != NULL) post_release(job->post);
  job_free(job);
}

/* Protected: (future, job).  Complete the future as the job says,
** unless it is done already (cancelled): also by a finalizer that ran
** while the values were copied in (asyncio's _copy_future_state checks
** just before setting). */
static int complete_future(lua_State *L) {
  eddy_Future *f = (eddy_Future *)lua_touserdata(L, 1);
  Job *job = (Job *)lua_touserdata(L, 2);
  Reader r;
  if (f->state != EDDY_FUT_PENDING) return 0;
  r.p = job->out.p;
  r.pos = 0;
  switch (job->status) {
    case JOB_OK:
      if (job->kind == JOB_DRAIN) return eddy__future_set_result_unless_done(L, 1, 0);
      return eddy__future_set_result_unless_done(L, 1, read_values(L, &r));
    case JOB_ERROR:
      read_values(L, &r);
      return eddy__future_set_exception_unless_done(L, 1);
    case JOB_CANCELLED:
      return eddy__future_cancel(L, 1, 0);
    default:
      lua_pushliteral(L, "not enough memory");
      return eddy__future_set_exception_unless_done(L, 1);
  }
}

/* Deliver the job to its future (the mailbox at index self). */
static void job_deliver(lua_State *L, Mailbox *mb, int self, Job *job) {
  int top = lua_gettop(L);
  JobBox *box;
  lua_getiuservalue(L, self, 1);
  lua_rawgeti(L, -1, job->ref);
  box = (JobBox *)lua_touserdata(L, -1);
  lua_pushcfunction(L, complete_future);
  lua_getiuservalue(L, top + 2, 1);
  lua_pushlightuserdata(L, job);
  eddy__pcall(L, mb->uv.loop, 2, 0, "Exception while completing an "
              "executor job's future");
  job_release(L, mb, self, box);
  lua_settop(L, top);
}

static void mailbox_async_cb(uv_async_t *h) {
  Mailbox *mb = (Mailbox *)h->data;
  lua_State *L;
  Job *job;
  int top;
  if (mb == NULL || mb->post == NULL) return;
  L = mb->uv.loop->rt->L;
  uv_mutex_lock(&mb->post->lock);
  job = mb->post->head;
  mb->post->head = mb->post->tail = NULL;
  uv_mutex_unlock(&mb->post->lock);
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, mb->uv.self_ref);
  while (job != NULL) {
    Job *next = job->next;
    if (mb->post != NULL) job_deliver(L, mb, top + 1, job);
    else job_free(job);  /* the loop closed in an exception handler */
    job = next;
  }
  if (mb->inflight == 0 && mb->post != NULL) mailbox_close(L, mb, top + 1);
  lua_settop(L, top);
}

/* Push the loop's open mailbox, opening one if needed. */
static Mailbox *mailbox_get(lua_State *L, eddy_Loop *loop) {
  Mailbox *mb;
  Post *p;
  uv_handle_t *h;
  int err;
  /* The mailbox is in loop:_fields() (the Lua parts see whether one is
  ** open), where Lua code could put any value: use it only if it is an
  ** open Mailbox of this loop. */
  eddy__pushluafields(L, loop);
  lua_getfield(L, -1, "executor_mailbox");
  mb = (Mailbox *)luaL_testudata(L, -1, MAILBOX);
  if (mb != NULL && mb->post != NULL && mb->uv.loop == loop) {
    lua_remove(L, -2);
    return mb;
  }
  lua_pop(L, 1);
  mb = (Mailbox *)lua_newuserdatauv(L, sizeof *mb, 1);
  eddy__uv_init(&mb->uv);
  mb->uv.before_close = mailbox_before_close;
  mb->post = NULL;
  mb->inflight = 0;
  luaL_setmetatable(L, MAILBOX);
  /* What may raise (no memory) first: the post then never leaks, and a
  ** mailbox that has one has its table of anchors (mailbox_detach). */
  lua_newtable(L);  /* the anchors of the boxes in flight */
  lua_setiuservalue(L, -2, 1);
  h = eddy__uv_open(L, &mb->uv, -1, loop, sizeof(uv_async_t));
  p = (Post *)calloc(1, sizeof *p);
  err = p == NULL ? UV_ENOMEM
                  : uv_async_init(loop->uv, (uv_async_t *)h, mailbox_async_cb);
  if (err < 0) {
    free(p);
    eddy__uv_abandon(L, &mb->uv);
    eddy__uverror(L, err, "run_in_executor");
  }
  uv_mutex_init(&p->lock);
  p->async = (uv_async_t *)h;
  p->refs = 1;
  mb->post = p;
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "executor_mailbox");
  lua_remove(L, -2);
  return mb;
}

/* }====================================================== */

/* {====================================================== Submitting */

static int box_gc(lua_State *L) {
  JobBox *box = (JobBox *)lua_touserdata(L, 1);
  if (box->prepared) job_free(box->job);  /* copying the arguments failed */
  box->job = NULL;
  box->prepared = 0;
  return 0;
}

/* Push a box owning a new job of the executor at exidx. */
static JobBox *box_new(lua_State *L, int exidx, int kind) {
  Executor *ex = (Executor *)lua_touserdata(L, exidx);
  JobBox *box = (JobBox *)lua_newuserdatauv(L, sizeof *box, 2);
  box->job = NULL;
  box->prepared = 0;
  luaL_setmetatable(L, JOBBOX);
  box->job = (Job *)calloc(1, sizeof(Job));
  if (box->job == NULL) luaL_error(L, "not enough memory");
  box->prepared = 1;
  box->job->pool = ex->pool;
  box->job->kind = (unsigned char)kind;
  box->job->state = JOB_TAKEN;
  lua_pushvalue(L, exidx);
  lua_setiuservalue(L, -2, 2);
  return box;
}

/* Done callback of a job's future: (future).  A cancelled future takes
** back its job if no worker started it; a running job goes on and its
** result is dropped when it arrives. */
static int job_future_done_cb(lua_State *L) {
  Mailbox *mb = (Mailbox *)lua_touserdata(L, lua_upvalueindex(1));
  JobBox *box = (JobBox *)lua_touserdata(L, lua_upvalueindex(2));
  eddy_Future *f = eddy__tofuture(L, 1);
  if (f == NULL || f->state != EDDY_FUT_CANCELLED || box->job == NULL ||
      !pool_unqueue(box->job))
    return 0;
  job_release(L, mb, lua_upvalueindex(1), box);
  if (mb->inflight == 0) mailbox_close(L, mb, lua_upvalueindex(1));
  return 0;
}

/*
** Launch the prepared job of the box at the top on 'loop': push its
** future.  A JOB_CALL job is queued; a JOB_DRAIN job waits for the pool's
** threads to exit.  Pops the box.
*/
static void job_launch(lua_State *L, eddy_Loop *loop) {
  int boxidx = lua_gettop(L), mbidx, futidx, err = 0, drained = 0;
  JobBox *box = (JobBox *)lua_touserdata(L, boxidx);
  Job *job = box->job;
  Pool *pool = job->pool;
  Mailbox *mb = mailbox_get(L, loop);
  mbidx = lua_gettop(L);
  eddy__future_new(L, loop);
  futidx = lua_gettop(L);
  lua_pushvalue(L, futidx);
  lua_setiuservalue(L, boxidx, 1);
  /* Anchor the box; from here on the loop side owns the job through it. */
  lua_getiuservalue(L, mbidx, 1);
  lua_pushvalue(L, boxidx);
  job->ref = luaL_ref(L, -2);
  lua_pop(L, 1);
  box->prepared = 0;
  mb->inflight++;
  job->post = mb->post;
  uv_mutex_lock(&job->post->lock);
  job->post->refs++;
  uv_mutex_unlock(&job->post->lock);
  uv_mutex_lock(&pool->lock);
  if (job->kind == JOB_CALL) {
    err = pool_enqueue(pool, job);
  } else if (pool->nlive == 0) {
    drained = 1;
  } else {
    job->state = JOB_QUEUED;
    job->prev = NULL;
    job->next = pool->watchers;
    if (pool->watchers) pool->watchers->prev = job;
    pool->watchers = job;
  }
  uv_mutex_unlock(&pool->lock);
  if (err < 0 || drained) {
    job_release(L, mb, mbidx, box);
    if (mb->inflight == 0) mailbox_close(L, mb, mbidx);
    if (err < 0) eddy__uverror(L, err, "run_in_executor");
    eddy__future_set_result(L, futidx, 0);
  } else {
    lua_getfield(L, futidx, "add_done_callback");
    lua_pushvalue(L, futidx);
    lua_pushvalue(L, mbidx);
    lua_pushvalue(L, boxidx);
    lua_pushcclosure(L, job_future_done_cb, 2);
    lua_call(L, 2, 0);
  }
  lua_replace(L, boxidx);
  lua_settop(L, boxidx);
}

/* Default max_workers, as concurrent.futures: min(32, CPUs + 4). */
static int default_workers(void) {
#if UV_VERSION_HEX >= 0x012c00
  unsigned int n = uv_available_parallelism();
#else
  uv_cpu_info_t *info;
  int n = 1;
  if (uv_cpu_info(&info, &n) == 0) uv_free_cpu_info(info, n);
  else n = 1;
#endif
  return n + 4 < 32 ? (int)n + 4 : 32;
}

static Executor *executor_new(lua_State *L, int max_workers) {
  Executor *ex = (Executor *)lua_newuserdatauv(L, sizeof *ex, 0);
  Pool *pool;
  ex->pool = NULL;
  luaL_setmetatable(L, EXECUTOR);
  pool = (Pool *)calloc(1, sizeof *pool);
  if (pool == NULL) luaL_error(L, "not enough memory");
  uv_mutex_init(&pool->lock);
  uv_cond_init(&pool->cond);
  pool->max_workers = (unsigned int)max_workers;
  ex->pool = pool;
  return ex;
}

static Executor *check_executor(lua_State *L, int i) {
  return (Executor *)luaL_checkudata(L, i, EXECUTOR);
}

/* Push the loop's default executor, created on first use. */
static void push_default_executor(lua_State *L, eddy_Loop *loop) {
  eddy__pushluafields(L, loop);
  lua_getfield(L, -1, "executor_shutdown_called");
  if (lua_toboolean(L, -1))
    eddy__error(L, "RuntimeError", "Executor shutdown has been called");
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "default_executor") == LUA_TNIL) {
    lua_pop(L, 1);
    executor_new(L, default_workers());
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "default_executor");
  } else if (luaL_testudata(L, -1, EXECUTOR) == NULL) {
    eddy__error(L, "RuntimeError", "the loop's default executor is not a "
                "ThreadPoolExecutor (got %s)", luaL_typename(L, -1));
  }
  lua_remove(L, -2);
}

/*
** Submit fn (at fnidx, a stack index that is also its argument number)
** with its nargs arguments to the executor at exidx; push the future.
*/
static void submit(lua_State *L, eddy_Loop *loop, int exidx, int fnidx,
                   int nargs) {
  Executor *ex = (Executor *)lua_touserdata(L, exidx);
  JobBox *box;
  if (ex->pool->shutdown)
    eddy__error(L, "RuntimeError",
                "cannot schedule new futures after shutdown");
  box = box_new(L, exidx, JOB_CALL);
  write_function(L, &box->job->in, fnidx, fnidx);
  write_values(L, &box->job->in, fnidx + 1, nargs, fnidx + 1, NULL);
  job_launch(L, loop);
}

/* loop:run_in_executor(executor, fn, ...) -> Future */
static int l_run_in_executor(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  int nargs;
  luaL_checkany(L, 3);
  nargs = lua_gettop(L) - 3;
  if (lua_isnil(L, 2)) {
    push_default_executor(L, loop);
    lua_replace(L, 2);
  } else {
    check_executor(L, 2);
  }
  submit(L, loop, 2, 3, nargs);
  return 1;
}

/* loop:set_default_executor(executor), on a closed loop too, as asyncio */
static int l_set_default_executor(lua_State *L) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  if (luaL_testudata(L, 2, EXECUTOR) == NULL)
    luaL_typeerror(L, 2, "ThreadPoolExecutor");
  eddy__pushluafields(L, loop);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "default_executor");
  return 0;
}

/* S eddy.to_thread(fn, ...): fn(...) in the running loop's default
** executor; returns its results. */
static int c_to_thread(lua_State *L) {
  int top = lua_gettop(L);
  eddy_Loop *loop;
  luaL_checkany(L, 1);
  eddy__can_suspend(L, "to_thread");
  loop = eddy__getopenloop(L);
  push_default_executor(L, loop);
  submit(L, loop, top + 1, 1, top > 1 ? top - 1 : 0);
  return eddy__await(L, -1, "to_thread");
}

/* }====================================================== */

/* {====================================================== Executor objects */

/* eddy.ThreadPoolExecutor([max_workers]) */
static int c_thread_pool_executor(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, default_workers());
  if (!lua_isnoneornil(L, 2))
    luaL_argerror(L, 2, "thread_name_prefix, initializer and initargs are "
                  "not supported");
  if (n <= 0)
    eddy__error(L, "ValueError", "max_workers must be greater than 0");
  luaL_argcheck(L, n <= INT_MAX, 1, "max_workers is too large");
  executor_new(L, (int)n);
  return 1;
}

static Pool *check_pool(lua_State *L, int i) {
  Executor *ex = check_executor(L, i);
  if (ex->pool == NULL) luaL_argerror(L, i, "executor is being collected");
  return ex->pool;
}

/* executor:shutdown([wait [, {cancel_futures = bool}]]) */
static int ex_shutdown(lua_State *L) {
  Pool *pool = check_pool(L, 1);
  int wait = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  int cancel = 0;
  if (!lua_isnoneornil(L, 3)) {
    static const char *const allowed[] = {"cancel_futures", NULL};
    eddy__checkoptions(L, 3, allowed);
    lua_getfield(L, 3, "cancel_futures");
    cancel = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  pool_shutdown(pool, cancel);
  if (wait) pool_join(pool);
  return 0;
}

/* __close: shutdown(true), as concurrent.futures' "with". */
static int ex_close(lua_State *L) {
  Pool *pool = check_pool(L, 1);
  pool_shutdown(pool, 0);
  pool_join(pool);
  return 0;
}

/* executor:_threads_exited(loop) -> Future done once every thread of the
** shut-down executor has exited (shutdown_default_executor). */
static int ex_threads_exited(lua_State *L) {
  Pool *pool = check_pool(L, 1);
  eddy_Loop *loop = eddy__checkloop(L, 2);
  if (!pool->shutdown)
    eddy__error(L, "RuntimeError", "the executor was not shut down");
  box_new(L, 1, JOB_DRAIN);
  job_launch(L, loop);
  return 1;
}

/*
** __gc: queued jobs are cancelled.  Idle threads exit now and are joined;
** if a job is running, its threads are detached instead (a collection
** must not block) and the last one frees the pool.
*/
static int ex_gc(lua_State *L) {
  Executor *ex = check_executor(L, 1);
  Pool *pool = ex->pool;
  int busy;
  if (pool == NULL) return 0;
  ex->pool = NULL;
  pool_shutdown(pool, 1);
  uv_mutex_lock(&pool->lock);
  busy = pool->nrunning > 0;
  if (busy) {
    for (; pool->njoined < pool->nthreads; pool->njoined++)
      pthread_detach(pool->threads[pool->njoined]);
    pool->orphaned = 1;
  }
  uv_mutex_unlock(&pool->lock);
  if (!busy) {
    pool_join(pool);
    pool_free(pool);
  }
  return 0;
}

static int ex_tostring(lua_State *L) {
  Executor *ex = check_executor(L, 1);
  Pool *pool = ex->pool;
  if (pool == NULL) {
    lua_pushliteral(L, "<ThreadPoolExecutor collected>");
    return 1;
  }
  lua_pushfstring(L, "<ThreadPoolExecutor max_workers=%d threads=%d%s>",
                  (int)pool->max_workers, (int)(pool->nthreads - pool->njoined),
                  pool->shutdown ? " shutdown" : "");
  return 1;
}

static const luaL_Reg executor_methods[] = {
  {"shutdown", ex_shutdown},
  {"_threads_exited", ex_threads_exited},
  {NULL, NULL}
};

static const luaL_Reg executor_meta[] = {
  {"__gc", ex_gc},
  {"__close", ex_close},
  {"__tostring", ex_tostring},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"run_in_executor", l_run_in_executor},
  {"set_default_executor", l_set_default_executor},
  {NULL, NULL}
};

static const luaL_Reg core_funcs[] = {
  {"ThreadPoolExecutor", c_thread_pool_executor},
  {"to_thread", c_to_thread},
  {NULL, NULL}
};

/* Metatables, loop methods and core functions (the core table at the
** top). */
void eddy__open_executor(lua_State *L) {
  luaL_newmetatable(L, EXECUTOR);
  luaL_setfuncs(L, executor_meta, 0);
  luaL_newlib(L, executor_methods);
  lua_setfield(L, -2, "__index");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  luaL_newmetatable(L, MAILBOX);
  lua_pushcfunction(L, mailbox_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  luaL_newmetatable(L, JOBBOX);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  luaL_setfuncs(L, core_funcs, 0);
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, loop_methods, 0);
  lua_pop(L, 1);
}

/* }====================================================== */
