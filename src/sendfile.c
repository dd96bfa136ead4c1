/*
** sendfile.c -- loop:sock_sendfile and loop:sendfile: a file's bytes to
** a stream socket or a stream transport with the kernel's sendfile(2), as
** asyncio's unix_events._sock_sendfile_native, or, when sendfile(2)
** cannot do it, by reading the file and sending what was read
** (base_events._sock_sendfile_fallback and _sendfile_fallback).
**
** An operation is a Job, a userdata on the stack of the method that runs
** it; the stack of that method is always
**   1 loop, 2 socket or transport, 3 file, 4 job
** and its steps are suspending C functions called with lua_pcallk, so
** that the continuation runs after each one whether it succeeded, failed
** or was cancelled: asyncio's "finally: file.seek(offset + total_sent)".
** The native step and the fallback's read step are sockops.c attempts:
** try the call; when it would block, wait for the fd (eddy__sock_wait).
** The fallback sends with loop:sock_sendall, or transport:write.
**
** loop:sendfile on a transport (asyncio's selector _sendfile_native):
** pause reading, wait until the transport's write queue is empty, then
** sendfile(2) on a dup of its descriptor, so that waiting for writability
** (a uv_poll_t) never touches the descriptor libuv's stream watches; at
** the end the dup is closed and reading resumes.  Meanwhile the transport
** has a stand-in protocol forwarding every call to the real one (as
** asyncio's _SendfileFallbackProtocol): its connection_lost shuts the dup
** down, which wakes a wait for writability when the transport closes.
**
** A transport written in Lua (the SSL transport) has no descriptor to
** give sendfile(2); it offers a _sendfile_write(loop, transport, chunk)
** that writes a chunk and waits while the transport's writing is paused,
** and loop:sendfile runs only the fallback with it (asyncio's
** _SendfileMode.FALLBACK), reading paused meanwhile.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
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
  int sockfd;               /* the socket's descriptor (for a transport,
                               a dup of its own; -1 before and after) */
  unsigned char transport;  /* slot 2 holds a stream transport */
  unsigned char lua_transport;  /* slot 2 holds a transport written in Lua */
  unsigned char resume;     /* resume the transport's reading at the end */
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
  static const char *const allowed[] = {"fallback", NULL};
  int fallback = 1;
  if (lua_isnoneornil(L, i)) return fallback;
  eddy__checkoptions(L, i, allowed);
  if (lua_getfield(L, i, "fallback") != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, i, lua_pushfstring(L, "option 'fallback' must be a "
                                          "boolean, got %s",
                                          luaL_typename(L, -1)));
    fallback = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
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
  eddy__check_not_libuv_pipe(L, fd);  /* its reads would steal signals */
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
  j = (Job *)lua_newuserdatauv(L, sizeof *j, 1);  /* 1: real protocol */
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

/* The transports a loop:sendfile is running on: a weak-keyed set in the
** registry.  A second sendfile on one of them is refused, as asyncio's
** (its _make_empty_waiter: "Empty waiter is already set"), so that two
** files never interleave on one connection, nor does one of them put the
** other's stand-in protocol back at its end. */
static const char busy_key = 'b';

/* RuntimeError if a sendfile runs on the transport at SOCK: checked
** before this one touches the transport (its reading, its protocol).  It
** is marked busy last thing before the job starts, whose finish unmarks
** it: an error in between would leave it marked for good. */
static void check_not_busy(lua_State *L) {
  if (eddy__weakset_has(L, &busy_key, SOCK))
    eddy__error(L, "RuntimeError", "unable to sendfile; sendfile is in "
                "progress");
}

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

/* The end of the native path on a transport: writes go through again;
** close the dup of its descriptor, after removing its watcher. */
static void end_native(lua_State *L, Job *j) {
  eddy__tostream(L, SOCK)->in_sendfile = 0;
  if (j->sockfd < 0) return;
  eddy__fd_unwatch(L, eddy__toloop(L, LOOP), j->sockfd, UV_WRITABLE);
  close(j->sockfd);
  j->sockfd = -1;
}

/* Resume the transport's reading if sendfile paused it. */
static void resume_reading(lua_State *L, Job *j) {
  if (!j->resume) return;
  j->resume = 0;
  lua_getfield(L, SOCK, "resume_reading");
  lua_pushvalue(L, SOCK);
  lua_call(L, 1, 0);
}

/* The transport's part of the end: close the dup, resume reading if
** sendfile paused it. */
static void release_transport(lua_State *L, Job *j) {
  end_native(L, j);
  if (lua_getiuservalue(L, JOB, 1) != LUA_TNIL &&
      eddy__tostream(L, SOCK)->state != EDDY_STREAM_CLOSED) {
    lua_getfield(L, SOCK, "set_protocol");  /* the real protocol back */
    lua_pushvalue(L, SOCK);
    lua_pushvalue(L, -3);
    lua_call(L, 2, 0);
  }
  lua_pop(L, 1);
  resume_reading(L, j);
}

/* The operation ended: set the file position; then raise the error at
** the top ('failed') or return the bytes sent. */
static int finish(lua_State *L, int failed) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  if (j->transport || j->lua_transport) eddy__weakset_put(L, &busy_key, SOCK, 0);
  if (j->transport) release_transport(L, j);
  if (j->lua_transport) resume_reading(L, j);
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

/* Whether the transport at i is still open; if not, push asyncio's
** ConnectionError for it. */
static int transport_open(lua_State *L, int i) {
  eddy_Stream *s = eddy__tostream(L, i);
  if (s->state == EDDY_STREAM_OPEN) return 1;
  eddy__pusherror(L, "ConnectionError", "Connection is closed by peer");
  return 0;
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
  if (j->transport && !transport_open(L, base)) return EDDY_SOCK_FAILED;
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

/* {====================================================== Transports */

/* A zero-byte write queued behind the transport's writes: libuv completes
** writes in order, so its callback means the write queue is empty. */
typedef struct Barrier {
  uv_write_t req;
  eddy_Loop *loop;
  int ref;                  /* registry reference of the future */
} Barrier;

static void barrier_cb(uv_write_t *req, int status) {
  Barrier *b = (Barrier *)req;
  lua_State *L = b->loop->rt->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, b->ref);
  free(b);
  if (eddy__tofuture(L, -1)->state == EDDY_FUT_PENDING) {
    if (status < 0) {
      eddy__pusherror(L, "ConnectionError", "Connection is closed by peer");
      eddy__future_set_exception_unless_done(L, top + 1);
    } else {
      eddy__future_set_result_unless_done(L, top + 1, 0);
    }
  }
  lua_settop(L, top);
}

/* A stand-in protocol's method: call the real protocol's (upvalue 1),
** named by upvalue 2, with the same arguments. */
static int forward(lua_State *L) {
  int n = lua_gettop(L) > 0 ? lua_gettop(L) : 1;  /* self, args... */
  lua_settop(L, n);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);  /* self: the real protocol */
  lua_getfield(L, 1, lua_tostring(L, lua_upvalueindex(2)));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* The stand-in's connection_lost (upvalue 3: the Job): shut the dup down
** first, so that a wait for writability ends, then forward if the real
** protocol has the method. */
static int lost(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, lua_upvalueindex(3));
  int has;
  if (j->sockfd >= 0) shutdown(j->sockfd, SHUT_RDWR);
  has = lua_getfield(L, lua_upvalueindex(1), "connection_lost") != LUA_TNIL;
  lua_pop(L, 1);
  return has ? forward(L) : 0;
}

/* Give the transport at SOCK a stand-in for its protocol, with the
** methods the real one has, and connection_lost always (the transfer
** must hear of the close); the Job keeps the real one. */
static void stand_in(lua_State *L) {
  static const char *const methods[] = {
    "connection_lost", "connection_made", "data_received", "eof_received",
    "pause_writing", "resume_writing", "get_buffer", "buffer_updated", NULL
  };
  int i;
  lua_getfield(L, SOCK, "get_protocol");
  lua_pushvalue(L, SOCK);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, JOB, 1);
  lua_newtable(L);
  for (i = 0; methods[i] != NULL; i++) {
    if (lua_getfield(L, -2, methods[i]) == LUA_TNIL && i != 0) {
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -2);
    lua_pushstring(L, methods[i]);
    if (i == 0) {  /* connection_lost */
      lua_pushvalue(L, JOB);
      lua_pushcclosure(L, lost, 3);
    } else {
      lua_pushcclosure(L, forward, 2);
    }
    lua_setfield(L, -2, methods[i]);
  }
  lua_getfield(L, SOCK, "set_protocol");
  lua_pushvalue(L, SOCK);
  lua_pushvalue(L, -3);
  lua_call(L, 2, 0);
  lua_pop(L, 2);
}

/* flush(loop, transport): wait until the transport's write queue is
** empty (asyncio's _make_empty_waiter). */
static int flush(lua_State *L) {
  eddy_Stream *s = eddy__tostream(L, 2);
  uv_buf_t nothing = uv_buf_init(NULL, 0);
  Barrier *b;
  int r;
  if (!transport_open(L, 2)) return lua_error(L);
  if (s->nwrites == 0) return 0;
  b = (Barrier *)malloc(sizeof *b);
  if (b == NULL) return luaL_error(L, "not enough memory");
  r = uv_write(&b->req, (uv_stream_t *)s->uv.handle, &nothing, 1,
               barrier_cb);
  if (r < 0) {
    free(b);
    return eddy__uverror(L, r, "sendfile");
  }
  b->loop = s->uv.loop;
  eddy__future_new(L, b->loop);
  lua_pushvalue(L, -1);
  b->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return eddy__await(L, lua_gettop(L), "sendfile");
}

/* write_chunk(loop, transport, chunk): the fallback's send step, as
** asyncio's _sendfile_fallback: the transport must still be open
** (ConnectionError), the chunk is written, and when the transport's
** buffer is past its high-water mark the write queue drains first. */
static int write_chunk(lua_State *L) {
  eddy_Stream *s = eddy__tostream(L, 2);
  if (!transport_open(L, 2)) return lua_error(L);
  lua_getfield(L, 2, "write");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_call(L, 2, 0);
  lua_settop(L, 2);
  if (s->state == EDDY_STREAM_OPEN &&
      uv_stream_get_write_queue_size((uv_stream_t *)s->uv.handle) <= s->high)
    return 0;
  return flush(L);
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
      if (j->transport) lua_pushcfunction(L, write_chunk);
      else if (j->lua_transport) lua_getfield(L, SOCK, "_sendfile_write");
      else lua_getfield(L, LOOP, "sock_sendall");
      lua_pushvalue(L, LOOP);
      lua_pushvalue(L, SOCK);
      lua_rotate(L, -4, -1);  /* send, loop, socket or transport, chunk */
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
  if (!j->seekable && j->offset > 0) {  /* asyncio's file.seek(offset) */
    eddy__pushuverror(L, UV_ESPIPE, j->what);
    return finish(L, 1);  /* the transport's protocol and reading back */
  }
  return fallback_k(L, LUA_OK, FB_START);
}

/* }====================================================== */

/* {====================================================== Methods */

/* After the native step: done, or failed; SendfileNotAvailableError
** goes to the fallback when it is allowed (asyncio's sock_sendfile and
** sendfile). */
static int native_k(lua_State *L, int status, lua_KContext ctx) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return finish(L, 0);
  if (j->sent == 0 && j->fallback &&
      eddy__iserror(L, -1, "SendfileNotAvailableError")) {
    lua_settop(L, JOB);
    if (j->transport) end_native(L, j);
    return fallback(L, j);
  }
  return finish(L, 1);
}

static int run_native(lua_State *L) {
  lua_pushcfunction(L, native);
  lua_pushvalue(L, LOOP);
  lua_pushvalue(L, SOCK);
  lua_pushvalue(L, JOB);
  return native_k(L, lua_pcallk(L, 3, 1, 0, 0, native_k), 0);
}

/* The transport's write queue is empty: sendfile(2) on a dup of its
** descriptor. */
static int flushed_k(lua_State *L, int status, lua_KContext ctx) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  eddy_Stream *s = eddy__tostream(L, SOCK);
  uv_os_fd_t fd;
  int r;
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) return finish(L, 1);
  lua_settop(L, JOB);
  r = uv_fileno(s->uv.handle, &fd);
  if (r == 0 && (j->sockfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) r = -errno;
  if (r < 0) {
    eddy__pushuverror(L, r, j->what);
    return finish(L, 1);
  }
  return run_native(L);
}

/* Run the Job (the stack is loop, socket or transport, file, job):
** sendfile(2) from a regular file, else SendfileNotAvailableError, as
** asyncio; a transport's queued writes go first. */
static int start(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, JOB);
  struct stat st;
  if (fstat(j->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    eddy__pusherror(L, "SendfileNotAvailableError", "not a regular file");
    return native_k(L, LUA_ERRRUN, 0);
  }
  if (!j->transport) return run_native(L);
  /* asyncio's _make_empty_waiter: from here writes raise. */
  eddy__tostream(L, SOCK)->in_sendfile = 1;
  lua_pushcfunction(L, flush);
  lua_pushvalue(L, LOOP);
  lua_pushvalue(L, SOCK);
  return flushed_k(L, lua_pcallk(L, 2, 0, 0, 0, flushed_k), 0);
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

/* Call transport:name() (slot SOCK); returns its first result's truth. */
static int call_transport(lua_State *L, const char *name) {
  int r;
  lua_getfield(L, SOCK, name);
  lua_pushvalue(L, SOCK);
  lua_call(L, 1, 1);
  r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* loop:sendfile on a transport written in Lua: the fallback, when the
** transport has a _sendfile_write; else RuntimeError, as asyncio's for
** an UNSUPPORTED transport. */
static int lua_sendfile(lua_State *L) {
  Job *j;
  int has_is_closing = lua_getfield(L, SOCK, "is_closing") == LUA_TFUNCTION;
  lua_pop(L, 1);
  /* is_closing first, as asyncio asks it before the transport's mode */
  if (has_is_closing && call_transport(L, "is_closing"))
    return eddy__error(L, "RuntimeError", "Transport is closing");
  if (lua_getfield(L, SOCK, "_sendfile_write") != LUA_TFUNCTION)
    return eddy__error(L, "RuntimeError", "sendfile is not supported for "
                       "transport %s", luaL_tolstring(L, SOCK, NULL));
  lua_pop(L, 1);
  j = new_job(L, -1, "sendfile");
  /* A plain RuntimeError, as asyncio's for a FALLBACK-mode transport:
  ** SendfileNotAvailableError is what a native attempt raises. */
  if (!j->fallback)
    return eddy__error(L, "RuntimeError", "fallback is disabled "
                       "and native sendfile is not supported for transport %s",
                       luaL_tolstring(L, SOCK, NULL));
  eddy__can_suspend(L, "sendfile");
  check_not_busy(L);
  j->lua_transport = 1;
  if ((j->resume = (unsigned char)call_transport(L, "is_reading")))
    call_transport(L, "pause_reading");
  eddy__weakset_put(L, &busy_key, SOCK, 1);
  return fallback(L, j);
}

/* loop:sendfile(transport, file, offset, count, {fallback}) -> sent, for
** the TCP and UNIX stream transports (asyncio's TRY_NATIVE ones). */
static int l_sendfile(lua_State *L) {
  eddy_Stream *s;
  Job *j;
  eddy__checkloop(L, LOOP);
  s = eddy__tostream(L, SOCK);
  if (s == NULL) {
    int t = lua_type(L, SOCK);
    if (t != LUA_TTABLE && t != LUA_TUSERDATA)
      return luaL_typeerror(L, SOCK, "transport");
    return lua_sendfile(L);
  }
  if (s->state != EDDY_STREAM_OPEN)
    return eddy__error(L, "RuntimeError", "Transport is closing");
  j = new_job(L, -1, "sendfile");
  eddy__can_suspend(L, "sendfile");
  check_not_busy(L);
  j->transport = 1;
  /* Reading pauses meanwhile, as asyncio's _sendfile_native and
  ** _SendfileFallbackProtocol. */
  j->resume = s->reading;
  lua_getfield(L, SOCK, "pause_reading");
  lua_pushvalue(L, SOCK);
  lua_call(L, 1, 0);
  stand_in(L);
  eddy__weakset_put(L, &busy_key, SOCK, 1);
  return start(L);
}

/* }====================================================== */

static const luaL_Reg sendfile_methods[] = {
  {"sock_sendfile", l_sock_sendfile},
  {"sendfile", l_sendfile},
  {NULL, NULL}
};

/* Add sock_sendfile and sendfile to the Loop class of the core table at
** the top. */
void eddy__open_sendfile(lua_State *L) {
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, sendfile_methods, 0);
  lua_pop(L, 1);
}
