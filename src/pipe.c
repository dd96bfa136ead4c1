/*
** pipe.c -- connect_read_pipe and connect_write_pipe: the pipe ends a
** stream transport (stream.c) reads from or writes to.
**
** The transport works on its own duplicate of the pipe's descriptor, so
** that the caller's object (a Lua file handle, a socket, an integer)
** never sees its descriptor closed under it; like asyncio, the transport
** closes the pipe object itself once connection_lost has run.
**
** asyncio notices a write pipe's reader going away by watching the
** descriptor for readability (the kernel reports an error on it).  libuv
** refuses to read a write-only pipe and allows one watcher per
** descriptor, so a second duplicate is watched by a uv_poll_t here, for
** errors and hang-ups only: unlike asyncio's, a write pipe over a socket
** does not close when the peer merely sends data.  Character devices (a
** terminal) are not watched, as in asyncio.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

#include "internal.h"

struct eddy_Hangup {
  uv_poll_t poll;
  int fd;  /* the duplicate it watches, closed when it stops */
  eddy_Stream *stream;
};

/* A duplicate of fd above the standard descriptors, or -errno. */
static int dup_fd(int fd) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  return d < 0 ? -errno : d;
}

/* {====================================================== Write pipes' reader */

static void hangup_freed(uv_handle_t *h) {
  free(h->data);
}

static void hangup_cb(uv_poll_t *p, int status, int events) {
  struct eddy_Hangup *w = (struct eddy_Hangup *)p->data;
  eddy_Stream *s = w->stream;
  lua_State *L = s->uv.loop->rt->L;
  int top = lua_gettop(L);
  (void)status;
  (void)events;  /* any event: asyncio's "Pipe was closed by peer" */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->uv.self_ref);
  eddy__stream_hangup(L, s, top + 1);  /* stops this watch */
  lua_settop(L, top);
}

int eddy__hangup_start(eddy_Stream *s, int fd) {
  struct eddy_Hangup *w = (struct eddy_Hangup *)malloc(sizeof *w);
  int r;
  if (w == NULL) return UV_ENOMEM;
  if ((w->fd = dup_fd(fd)) < 0) {
    r = w->fd;
    free(w);
    return r;
  }
  w->stream = s;
  if ((r = uv_poll_init(s->uv.loop->uv, &w->poll, w->fd)) < 0) {
    close(w->fd);
    free(w);
    return r;
  }
  w->poll.data = w;
  s->hangup = w;
  if ((r = uv_poll_start(&w->poll, UV_DISCONNECT, hangup_cb)) < 0)
    eddy__hangup_stop(s);
  return r;
}

void eddy__hangup_stop(eddy_Stream *s) {
  struct eddy_Hangup *w = s->hangup;
  s->hangup = NULL;
  uv_close((uv_handle_t *)&w->poll, hangup_freed);
  /* Now, not in the close callback: uv_close has taken the descriptor out
  ** of the poll set, and a reader waiting for EOF (a pclose in
  ** connection_lost) must not wait on this duplicate. */
  close(w->fd);
}

/* }====================================================== */

/* {====================================================== Opening */

/* Raise unless fd is a pipe, socket or character device that the loop
** can poll, open in the direction asked; its fstat mode otherwise. */
static mode_t check_pipe(lua_State *L, int fd, int writable) {
  struct stat st;
  int mode;
  if (fstat(fd, &st) < 0 || (mode = fcntl(fd, F_GETFL)) < 0) {
    eddy__uverror(L, -errno, writable ? "connect_write_pipe"
                                      : "connect_read_pipe");
    return 0;
  }
  if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode))
    eddy__error(L, "ValueError", "Pipe transport is for pipes/sockets only.");
  eddy__check_not_libuv_pipe(L, fd);
#ifdef __linux__
  {  /* /dev/null and friends: epoll refuses them, and libuv would abort */
    int ep = epoll_create1(EPOLL_CLOEXEC), r;
    struct epoll_event ev = {0};
    if (ep < 0) {
      eddy__uverror(L, -errno, "epoll_create1");
      return 0;
    }
    ev.events = EPOLLIN;
    r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    close(ep);
    if (r < 0)
      eddy__error(L, "ValueError", "Pipe transport is for pipes/sockets only "
                  "(the loop cannot poll this device).");
  }
#endif
  mode &= O_ACCMODE;
  if (writable ? mode == O_RDONLY : mode == O_WRONLY)
    eddy__error(L, "ValueError", "the pipe is not open for %s",
                writable ? "writing" : "reading");
  return st.st_mode;
}

/* transport:close() of the transport at t. */
static void close_transport(lua_State *L, int t) {
  lua_getfield(L, t, "close");
  lua_pushvalue(L, t);
  lua_call(L, 1, 0);
}

/*
** loop:_pipe_transport(pipe, writable[, i]) -> a transport without a
** protocol yet: a read pipe transport, or a write pipe transport when
** writable.  pipe is an integer descriptor, a Lua file, an eddy.socket or
** an object with fileno(); get_extra_info("pipe") returns it.  With i,
** pipe is a Process whose pipe to the child's descriptor i the transport
** takes as it is (nil: the process has none); taken only once nothing can
** fail before the transport owns it, so no descriptor is ever left with
** neither.
*/
static int l_pipe_transport(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  int owned = !lua_isnoneornil(L, 4), writable = lua_toboolean(L, 3);
  int i = owned ? (int)luaL_checkinteger(L, 4) : 0, fd, mine, r, t;
  mode_t mode;
  eddy_Stream *s;
  luaL_argcheck(L, i >= 0 && i <= 2, 4, "0, 1 or 2 expected");
  fd = owned ? eddy__process_pipe(L, 2, i, 0) : eddy__checkfd(L, 2);
  if (fd < 0) return 0;
  mode = check_pipe(L, fd, writable);
  s = eddy__stream_new(L, loop, writable ? EDDY_STREAM_WRITE_PIPE
                                         : EDDY_STREAM_READ_PIPE);
  t = lua_gettop(L);
  if (!owned) {
    lua_pushvalue(L, 2);
    eddy__stream_set_extra(L, t, "pipe");
  }
  eddy__stream_open(L, s, t);  /* what may raise, before the descriptor */
  mine = owned ? eddy__process_pipe(L, 2, i, 1) : dup_fd(fd);
  if (mine < 0) {
    close_transport(L, t);
    return eddy__uverror(L, mine, "dup");
  }
  if ((r = eddy__stream_adopt(L, s, t, mine)) < 0)
    return eddy__uverror(L, r, "pipe transport");
  if (writable && !S_ISCHR(mode) && (r = eddy__hangup_start(s, mine)) < 0) {
    close_transport(L, t);
    return eddy__uverror(L, r, "pipe transport");
  }
  return 1;
}

/* (pipe) -> nothing: close an integer descriptor, or call pipe:close();
** nil (an owned descriptor, closed with the transport): nothing. */
static int close_pipe_object(lua_State *L) {
  luaL_Stream *file;
  if (lua_isnil(L, 1)) return 0;
  if (lua_isinteger(L, 1)) {
    eddy__fd_close((int)lua_tointeger(L, 1));
    return 0;
  }
  file = (luaL_Stream *)luaL_testudata(L, 1, LUA_FILEHANDLE);
  if (file != NULL && file->closef == NULL) return 0;  /* closed already */
  if (lua_getfield(L, 1, "close") != LUA_TNIL) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
  }
  return 0;
}

void eddy__pipe_release(lua_State *L, eddy_Stream *s, int t) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, close_pipe_object);
  eddy__stream_push_extra(L, t);
  lua_getfield(L, -1, "pipe");
  lua_remove(L, -2);
  eddy__pcall(L, s->uv.loop, 1, 0, "Exception closing the pipe");
  lua_settop(L, top);
}

static const luaL_Reg pipe_methods[] = {
  {"_pipe_transport", l_pipe_transport},
  {NULL, NULL}
};

void eddy__open_pipe(lua_State *L) {
  eddy__loop_methods(L, pipe_methods);
}

/* }====================================================== */
