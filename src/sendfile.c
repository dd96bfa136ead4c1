/*
** sendfile.c -- loop:sock_sendfile: a file's bytes to a stream socket
** with the kernel's sendfile(2), as asyncio's
** unix_events._sock_sendfile_native, or, when sendfile(2) cannot do it,
** by reading the file and sending what was read
** (base_events._sock_sendfile_fallback).
**
** An operation is a Job, a userdata on the stack of the method that runs
** it; the stack of that method is always
**   1 loop, 2 socket, 3 file, 4 job
** and its steps are suspending C functions called with lua_pcallk, so
** that the continuation runs after each one whether it succeeded, failed
** or was cancelled: asyncio's "finally: file.seek(offset + total_sent)".
** The native step and the fallback's read step are sockops.c attempts:
** try the call; when it would block, wait for the fd (eddy__sock_wait).
** The fallback sends with loop:sock_sendall.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Bytes one fallback read asks for (asyncio's
** SENDFILE_FALLBACK_READBUFFER_SIZE). */
#define FALLBACK_BLOCK ((lua_Integer)256 * 1024)
/* The most one sendfile(2) call sends on Linux. */
#define SENDFILE_MAX ((size_t)0x7ffff000)

/* Stack slots of the method running a Job. */
#define LOOP 1
#define SOCK 2
#define FILE_ 3
#define JOB 4

typedef struct Job {
  int fd;                   /* the file's descriptor */
  int sockfd;               /* the socket's descriptor */
  unsigned char fallback;   /* read and send when sendfile(2) cannot */
  unsigned char seekable;   /* the file has positions: pread, seek */
  lua_Integer offset;       /* where sending starts in the file */
  lua_Integer count;        /* bytes to send; 0: up to the end */
  lua_Integer sent;         /* bytes sent so far */
  lua_Integer chunk;        /* the fallback's chunk being sent */
  const char *what;         /* the method's name, for messages */
} Job;

/* Steps of the fallback (the continuation's context). */
enum { FB_START, FB_READ, FB_SENT };

#define WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == EINTR)

/* {====================================================== Arguments */

/* The options table at i: {fallback = boolean}; returns fallback. */
static int check_options(lua_State *L, int i) {
  int fallback = 1;
  if (lua_isnoneornil(L, i)) return fallback;
  if (!lua_istable(L, i) || lua_getmetatable(L, i))
    luaL_typeerror(L, i, "options table");
  lua_pushnil(L);
  while (lua_next(L, i)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                   : NULL;
    if (k == NULL || strcmp(k, "fallback") != 0)
      luaL_argerror(L, i, lua_pushfstring(L, "unknown option '%s'",
                                          luaL_tolstring(L, -2, NULL)));
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, i, lua_pushfstring(L, "option 'fallback' must be a "
                                          "boolean, got %s",
                                          luaL_typename(L, -1)));
    fallback = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return fallback;
}

/*
** Check file (3), offset (4), count (5) and options (6) as asyncio's
** _check_sendfile_params, and leave the stack as loop, socket, file, job.
*/
static Job *new_job(lua_State *L, int sockfd, const char *what) {
  int fd = eddy__checkfd(L, FILE_);
  lua_Integer offset = luaL_optinteger(L, 4, 0), count = 0;
  int fallback;
  Job *j;
  if (!lua_isnoneornil(L, 5)) {
    count = luaL_checkinteger(L, 5);
    if (count <= 0)
      eddy__error(L, "ValueError", "count must be a positive integer "
                  "(got %I)", count);
  }
  if (offset < 0)
    eddy__error(L, "ValueError", "offset must be a non-negative integer "
                "(got %I)", offset);
  fallback = check_options(L, 6);
  lua_settop(L, FILE_);
  j = (Job *)lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  j->fd = fd;
  j->sockfd = sockfd;
  j->fallback = (unsigned char)fallback;
  j->seekable = lseek(fd, 0, SEEK_CUR) >= 0;
  j->offset = offset;
  j->count = count;
  j->what = what;
  return j;
}

/* }====================================================== */

/* {====================================================== Finishing */

/* asyncio's _sock_sendfile_update_filepos: after sending, the file's
** position is offset + sent, set with file:seek when the file has that
** method (so a Lua file handle drops its buffer), else with lseek. */
static void update_position(lua_State *L, Job *j) {
  lua_Integer pos = j->offset + j->sent;
  if (j->sent == 0 || !j->seekable) return;
  if (lua_type(L, FILE_) != LUA_TNUMBER &&
      lua_getfield(L, FILE_, "seek") != LUA_TNIL) {
    lua_pushvalue(L, FILE_);
    lua_pushliteral(L, "set");
    lua_pushinteger(L, pos);
    lua_call(L, 3, 2);
    if (lua_isnil(L, -2))
      eddy__error(L, "OSError", "%s: file:seek failed: %s", j->what,
                  luaL_optstring(L, -1, "?"));
    lua_pop(L, 2);
  } else {
    if (lua_type(L, FILE_) != LUA_TNUMBER) lua_pop(L, 1);
    if (lseek(j->fd, (off_t)pos, SEEK_SET) < 0)
      eddy__uverror(L, -errno, j->what);
  }
}

/* The operation ended: set the file position; then raise the error at
** the top ('failed') or return the bytes sent. */
static int finish(lua_State *L, int failed) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  update_position(L, j);
  if (failed) return lua_error(L);
  lua_pushinteger(L, j->sent);
  return 1;
}

/* }====================================================== */

/* {====================================================== Attempts */

/*
** The running function's arguments are loop, then an attempt's arguments
** from index 2: try once; if the call would block, wait for 'event' on fd
** and try again from the ready Handle (eddy__sock_wait).
*/
static int run(lua_State *L, Job *j, int fd, int event,
               eddy_SockAttempt attempt, lua_CFunction ready) {
  int r = attempt(L, 2);
  if (r >= 0) return r;
  if (r == EDDY_SOCK_FAILED) return lua_error(L);
  return eddy__sock_wait(L, eddy__toloop(L, LOOP), fd, event, ready, 2,
                         j->what);
}

/* sendfile(2) without SIGPIPE (a gone peer is EPIPE, as send with
** MSG_NOSIGNAL): the signal is blocked in this thread around the call
** and, if the call raised it, taken off the pending set. */
static ssize_t sendfile_nosigpipe(int out, int in, off_t *off, size_t n) {
  sigset_t pipe, old, pending;
  struct timespec zero = {0, 0};
  int e, was_pending;
  ssize_t r;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  r = sendfile(out, in, off, n);
  e = errno;
  if (r < 0 && e == EPIPE && !was_pending)
    while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {}
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

/*
** The native attempt: one sendfile(2) call per writability event, as
** asyncio.  Arguments at base: the socket (or transport), the Job.  A
** failure before any byte went is SendfileNotAvailableError (asyncio: the
** file is not a regular mmap-like file, or the socket does not do it);
** the fallback then sends with plain send(2).
*/
static int try_native(lua_State *L, int base) {
  Job *j = (Job *)lua_touserdata(L, base + 1);
  eddy_Socket *s = eddy__tosocket(L, base);
  off_t off = (off_t)(j->offset + j->sent);
  size_t n = SENDFILE_MAX;
  ssize_t r;
  if (s != NULL && s->fd != j->sockfd) {  /* closed meanwhile */
    eddy__pushuverror(L, UV_EBADF, j->what);
    return EDDY_SOCK_FAILED;
  }
  if (j->count != 0 && (lua_Unsigned)(j->count - j->sent) < n)
    n = (size_t)(j->count - j->sent);
  r = n == 0 ? 0 : sendfile_nosigpipe(j->sockfd, j->fd, &off, n);
  if (r < 0) {
    int e = errno;
    if (WOULD_BLOCK(e)) return EDDY_SOCK_AGAIN;
    if (j->sent == 0)
      eddy__pusherror(L, "SendfileNotAvailableError",
                      "sendfile() failed: %s", strerror(e));
    else
      eddy__pushuverror(L, -e, NULL);
    return EDDY_SOCK_FAILED;
  }
  j->sent += (lua_Integer)r;
  if (r > 0 && (j->count == 0 || j->sent < j->count))
    return EDDY_SOCK_AGAIN;  /* more to send when writable again */
  lua_pushinteger(L, j->sent);
  return 1;
}

static int native_ready(lua_State *L) {
  return eddy__sock_ready(L, try_native);
}

/* native(loop, socket, job) -> sent */
static int native(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, 3);
  return run(L, j, j->sockfd, UV_WRITABLE, try_native, native_ready);
}

/*
** The fallback's read attempt; arguments at base: the Job, the byte count.
** A seekable file is read with pread at offset + sent (the file position
** is left alone until the end); another one (a pipe, a terminal) with
** read once poll says it is readable, so a read never blocks the loop.
** Pushes the bytes read ("" at the end of the file).
*/
static int try_read(lua_State *L, int base) {
  Job *j = (Job *)lua_touserdata(L, base);
  size_t want = (size_t)lua_tointeger(L, base + 1);
  struct pollfd p;
  luaL_Buffer b;
  char *buf;
  ssize_t r;
  int top = lua_gettop(L);
  p.fd = j->fd;
  p.events = POLLIN;
  if (!j->seekable && poll(&p, 1, 0) == 0) return EDDY_SOCK_AGAIN;
  buf = luaL_buffinitsize(L, &b, want);
  do {
    r = j->seekable ? pread(j->fd, buf, want, (off_t)(j->offset + j->sent))
                    : read(j->fd, buf, want);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    lua_settop(L, top);
    if (!j->seekable && WOULD_BLOCK(e)) return EDDY_SOCK_AGAIN;
    eddy__pushuverror(L, -e, j->what);
    return EDDY_SOCK_FAILED;
  }
  luaL_pushresultsize(&b, (size_t)r);
  return 1;
}

static int read_ready(lua_State *L) { return eddy__sock_ready(L, try_read); }

/* read_chunk(loop, job, want) -> string */
static int read_chunk(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, 2);
  return run(L, j, j->fd, UV_READABLE, try_read, read_ready);
}

/* }====================================================== */

/* {====================================================== Fallback */

/*
** asyncio's _sock_sendfile_fallback: read a chunk, send it with
** loop:sock_sendall, until 'count' bytes or the end of the file.  The
** continuation of both steps; 'step' says which one just ended.
*/
static int fallback_k(lua_State *L, int status, lua_KContext step) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  for (;;) {
    lua_Integer want = FALLBACK_BLOCK;
    size_t len;
    if (status != LUA_OK && status != LUA_YIELD) return finish(L, 1);
    if (step == FB_READ) {  /* the chunk read is at the top */
      lua_tolstring(L, -1, &len);
      if (len == 0) break;  /* the end of the file */
      j->chunk = (lua_Integer)len;
      lua_getfield(L, LOOP, "sock_sendall");
      lua_pushvalue(L, LOOP);
      lua_pushvalue(L, SOCK);
      lua_rotate(L, -4, -1);  /* sock_sendall, loop, socket, chunk */
      step = FB_SENT;
      status = lua_pcallk(L, 3, 0, 0, step, fallback_k);
      continue;
    }
    if (step == FB_SENT) j->sent += j->chunk;
    lua_settop(L, JOB);
    if (j->count != 0 && j->count - j->sent < want)
      want = j->count - j->sent;
    if (want == 0) break;
    lua_pushcfunction(L, read_chunk);
    lua_pushvalue(L, LOOP);
    lua_pushvalue(L, JOB);
    lua_pushinteger(L, want);
    step = FB_READ;
    status = lua_pcallk(L, 3, 1, 0, step, fallback_k);
  }
  return finish(L, 0);
}

/* Start the fallback (the stack is loop, socket, file, job). */
static int fallback(lua_State *L, Job *j) {
  if (!j->seekable && j->offset > 0)  /* asyncio's file.seek(offset) */
    return eddy__uverror(L, UV_ESPIPE, j->what);
  return fallback_k(L, LUA_OK, FB_START);
}

/* }====================================================== */

/* {====================================================== sock_sendfile */

/* After the native step: done, or failed; SendfileNotAvailableError
** goes to the fallback when it is allowed (asyncio's sock_sendfile). */
static int native_k(lua_State *L, int status, lua_KContext ctx) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return finish(L, 0);
  if (j->sent == 0 && j->fallback &&
      eddy__iserror(L, -1, "SendfileNotAvailableError")) {
    lua_settop(L, JOB);
    return fallback(L, j);
  }
  return finish(L, 1);
}

/* Run the Job (the stack is loop, socket, file, job): sendfile(2) from a
** regular file, else SendfileNotAvailableError, as asyncio. */
static int start(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  struct stat st;
  if (fstat(j->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    eddy__pusherror(L, "SendfileNotAvailableError", "not a regular file");
    return native_k(L, LUA_ERRRUN, 0);
  }
  lua_pushcfunction(L, native);
  lua_pushvalue(L, LOOP);
  lua_pushvalue(L, SOCK);
  lua_pushvalue(L, JOB);
  return native_k(L, lua_pcallk(L, 3, 1, 0, 0, native_k), 0);
}

/* loop:sock_sendfile(sock, file, offset, count, {fallback}) -> sent */
static int l_sock_sendfile(lua_State *L) {
  eddy_Socket *s;
  eddy__checkloop(L, LOOP);
  s = eddy__sock_checknb(L, SOCK);
  if (s->type != SOCK_STREAM)
    return eddy__error(L, "ValueError",
                       "only SOCK_STREAM type sockets are supported");
  new_job(L, s->fd, "sock_sendfile");
  eddy__can_suspend(L, "sock_sendfile");  /* before any byte is sent */
  return start(L);
}

/* }====================================================== */

static const luaL_Reg sendfile_methods[] = {
  {"sock_sendfile", l_sock_sendfile},
  {NULL, NULL}
};

/* Add sock_sendfile to the Loop class of the core table at the top. */
void eddy__open_sendfile(lua_State *L) {
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, sendfile_methods, 0);
  lua_pop(L, 1);
}
