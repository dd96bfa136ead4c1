/*
** server.c -- asyncio's Server (API.md §4): listening sockets that accept
** connections into stream transports, and the connection count behind
** wait_closed (asyncio 3.12: it waits until the server is closed and every
** connection it accepted is gone).
**
** Each listening socket is a Listener object owning one libuv handle
** (handle.c's rules); the Server keeps them in its FIELDS table and each
** Listener keeps its Server alive.  Accepted transports hold their Server
** too (stream.c) and report back when they close (eddy__server_detach).
** serve_forever, start_serving and `<close>` are written in Lua
** (lua/eddy/transports.lua) on top of these methods.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"


#define EDDY_SERVER "eddy.Server"
#define EDDY_LISTENER "eddy.Listener"

struct eddy_Server {
  eddy_Loop *loop;
  int active;             /* connections alive (asyncio's _active_count) */
  int backlog;
  unsigned char kind;     /* eddy_StreamKind of accepted transports */
  unsigned char serving;  /* listening (start_serving ran, not closed) */
  unsigned char closed;   /* close() was called */
  unsigned char woken;    /* wait_closed waiters released: none will wait */
  unsigned char has_ctx;  /* FIELDS.context: the Context accepting runs in */
};

/* User values of a Server: the protocol factory; a table only C reaches
** with 'listeners' (array of Listeners), 'waiters' (futures of
** wait_closed) and 'context' (a copy of the Context it was created in, of
** which each accept makes a copy for the factory and the new transport's
** callbacks: accept_one), whose values C uses without checking them
** again; and the table of the Lua half (server:_fields()) with
** 'serving_fut' (the future serve_forever waits on). */
enum { SV_FACTORY = 1, SV_FIELDS, SV_LUA, SV_NUV = SV_LUA };

typedef struct Listener {
  eddy_UVObject uv;       /* first: the listening uv_tcp_t / uv_pipe_t */
  eddy_Server *server;    /* its Server: user value 1 keeps it alive */
  ino_t cleanup_ino;      /* UNIX: the socket file's inode, removed by
                          ** close() if it is still there; 0: none */
  int spare;              /* a descriptor kept for pausing out of EMFILE
                          ** (pause_accepting); -1: none */
  unsigned char paused;   /* out of descriptors: hold the next connection */
  unsigned char held;     /* libuv holds an accepted connection for us */
  eddy_Socket *view;      /* its view in server.sockets (user value 2), or
                          ** NULL: none made yet */
} Listener;

static eddy_Server *checkserver(lua_State *L, int i) {
  return (eddy_Server *)luaL_checkudata(L, i, EDDY_SERVER);
}

/* Close the listening handle, and with it the descriptor, which the
** socket view handed out in server.sockets forgets at once (asyncio's
** closed socket reads fileno() -1): the system may reuse the number. */
static void close_listener(lua_State *L, Listener *l) {
  if (l->view != NULL) l->view->fd = -1;
  eddy__uv_close(L, &l->uv);
}

/* Push field 'name' of the FIELDS table of the server at sv. */
static int push_field(lua_State *L, int sv, const char *name) {
  int t;
  lua_getiuservalue(L, sv, SV_FIELDS);
  t = lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return t;
}

/* Release the wait_closed waiters (asyncio's _wakeup). */
static void wakeup(lua_State *L, eddy_Server *sv, int svidx) {
  int w, top = lua_gettop(L);
  lua_Integer i, n;
  if (sv->woken) return;
  sv->woken = 1;
  if (push_field(L, svidx, "waiters") == LUA_TTABLE) {
    w = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, w);
    for (i = 1; i <= n; i++) {
      eddy_Future *f;
      lua_rawgeti(L, w, i);
      f = (eddy_Future *)lua_touserdata(L, -1);
      if (f->state == EDDY_FUT_PENDING &&
          f->loop->state != EDDY_LOOP_CLOSED)
        eddy__future_set_result_unless_done(L, lua_gettop(L), 0);
      lua_pop(L, 1);
    }
    lua_getiuservalue(L, svidx, SV_FIELDS);
    lua_pushnil(L);
    lua_setfield(L, -2, "waiters");
  }
  lua_settop(L, top);
}

void eddy__server_detach(lua_State *L, eddy_Server *sv, int svidx) {
  sv->active--;
  if (sv->active == 0 && sv->closed) wakeup(L, sv, lua_absindex(L, svidx));
}

/* {====================================================== Accepting */

/* (stream, protocol, server) -> (): eddy__stream_start, for lua_pcall. */
static int start_accepted(lua_State *L) {
  eddy__stream_start(L, 1, 2, 3);
  return 0;
}

/* Protected part of an accept: (listener) -> (); raises on failure with
** nothing left open. */
static int accept_one(lua_State *L) {
  Listener *l = (Listener *)lua_touserdata(L, 1);
  eddy_Server *sv = l->server;
  eddy_Stream *s;
  uv_stream_t *h;
  int r, tp;
  eddy_IoContext ctx;
  lua_getiuservalue(L, 1, 1);  /* 2: the server */
  s = eddy__stream_new(L, sv->loop, sv->kind);  /* 3, in the base context */
  h = eddy__stream_open(L, s, 3);
  if ((r = uv_accept((uv_stream_t *)l->uv.handle, h)) < 0) {
    s->state = EDDY_STREAM_CLOSED;
    eddy__uv_close(L, &s->uv);
    return eddy__uverror(L, r, "accept");
  }
  if (sv->kind == EDDY_STREAM_TCP) uv_tcp_nodelay((uv_tcp_t *)h, 1);
  /* asyncio accepts in a task of its own: the factory runs in a fresh
  ** copy of the server's context, and the transport's callbacks in what
  ** the factory left there.  An error leaves the context to eddy__pcall's
  ** own leave (connection_cb). */
  if (sv->has_ctx) {
    push_field(L, 2, "context");
    eddy__copy_context(L);
  }
  eddy__io_context_enter(L, sv->loop, sv->has_ctx, &ctx);
  lua_pushcfunction(L, eddy__traceback);
  lua_getiuservalue(L, 2, SV_FACTORY);
  r = lua_pcall(L, 0, 1, 4);  /* 5: the protocol */
  if (r == LUA_OK && (tp = lua_type(L, 5)) != LUA_TTABLE &&
      tp != LUA_TUSERDATA) {
    eddy__pusherror(L, "RuntimeError", "protocol_factory must return a "
                    "protocol (table or userdata), got %s",
                    luaL_typename(L, 5));
    r = LUA_ERRRUN;
  }
  if (r != LUA_OK) {
    s->state = EDDY_STREAM_CLOSED;
    eddy__uv_close(L, &s->uv);
    return lua_error(L);
  }
  sv->active++;
  s->server = sv;
  eddy__stream_keep_context(L, s, 3);
  lua_pushcfunction(L, start_accepted);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 2);
  if (lua_pcall(L, 3, 0, 4) != LUA_OK) {  /* a protocol whose lookups raise */
    s->state = EDDY_STREAM_CLOSED;
    eddy__uv_close(L, &s->uv);  /* its close leaves the server */
    return lua_error(L);
  }
  if (eddy__io_context_leave(L, sv->loop, &ctx)) lua_pop(L, 1);
  return 0;
}

/*
** Running out of descriptors.  asyncio's _accept_connection logs
** "socket.accept() out of system resource" and stops accepting for
** ACCEPT_RETRY_DELAY (1 s), leaving the connections in the backlog.
** libuv's own answer (its reserve descriptor, which accepts and closes
** every pending connection) covers most cases before connection_cb sees
** anything; when that reserve is missing, libuv calls connection_cb with
** EMFILE and accepts again at once, in a loop that never returns to the
** event loop.  A listener stops it the one way libuv offers: accept one
** connection into the listener's spare descriptor (closed for that) and
** leave it unaccepted, which makes libuv stop polling the socket until
** uv_accept.  resume_accepting takes the connection a second later, once
** a new spare could be opened.
*/
#define ACCEPT_RETRY_DELAY 1.0

static int open_spare(void) {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void drop_spare(Listener *l) {
  if (l->spare >= 0) eddy__fd_close(l->spare);
  l->spare = -1;
}

static void later(lua_State *L, Listener *l, int lidx, lua_CFunction f);

/* Timer callback (listener): accept again once a spare is back. */
static int resume_accepting(lua_State *L) {
  Listener *l = (Listener *)lua_touserdata(L, 1);
  if (l->uv.handle == NULL || l->uv.closing) return 0;  /* closed: libuv
                                                  ** closed a held one */
  if ((l->spare = open_spare()) < 0) {  /* still out of descriptors */
    later(L, l, 1, resume_accepting);
    return 0;
  }
  l->paused = 0;
  if (l->held) {  /* uv_accept it; libuv polls the socket again */
    l->held = 0;
    lua_pushcfunction(L, accept_one);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);  /* the timer's handle reports an error */
  }
  return 0;
}

/* Call f(listener at lidx) in ACCEPT_RETRY_DELAY seconds. */
static void later(lua_State *L, Listener *l, int lidx, lua_CFunction f) {
  lua_pushcfunction(L, f);
  lua_pushvalue(L, lidx);
  eddy__call_at(L, l->uv.loop, 1, eddy__time(l->uv.loop) + ACCEPT_RETRY_DELAY);
  lua_pop(L, 1);
}

/* connection_cb got EMFILE/ENFILE (listener at lidx, the error at the
** top, popped): report it and pause with the spare; without one, only
** closing the socket ends libuv's loop. */
static void pause_accepting(lua_State *L, Listener *l, int lidx) {
  int spare = l->spare >= 0;
  eddy__newcontext(L, spare ? "socket.accept() out of system resource"
                   : "socket.accept() out of system resource, with no spare "
                     "descriptor to pause on: the listening socket is closed",
                   -1);
  eddy__call_exception_handler(L, l->uv.loop);
  if (spare) {
    drop_spare(l);
    l->paused = 1;
    later(L, l, lidx, resume_accepting);
  } else {
    close_listener(L, l);
  }
}

static Listener *new_listener(lua_State *L, int sv, int fd, ino_t cleanup_ino,
                              int replaced);
static void connection_cb(uv_stream_t *h, int status);

/*
** Any other accept error that persists (ENOBUFS, ENOMEM, a firewall's
** EPERM...): libuv calls connection_cb with it and accepts again at once,
** forever, and no spare descriptor helps, so only closing the handle ends
** that loop.  The socket itself stays open and keeps its backlog: a
** duplicate descriptor of it becomes a new Listener in this one's place
** in the server's list, which listens again after ACCEPT_RETRY_DELAY.
** asyncio pauses so for ENOBUFS and ENOMEM; for other errors it raises
** from its reader callback and polls again at once, an endless stream of
** reports.  The listening socket then has another descriptor (a socket of
** server.sockets taken before refers to the old one, closed).
*/

/* Timer callback (the new listener): listen again, unless closed since. */
static int resume_listening(lua_State *L) {
  Listener *l = (Listener *)lua_touserdata(L, 1);
  int r;
  if (l->uv.handle == NULL || l->uv.closing) return 0;
  r = uv_listen((uv_stream_t *)l->uv.handle, l->server->backlog,
                connection_cb);
  if (r < 0) {
    close_listener(L, l);
    return eddy__uverror(L, r, "listen");  /* the timer's handle reports */
  }
  if (l->spare < 0) l->spare = open_spare();
  return 0;
}

/* Protected part of reopen_later: (listener) -> (); the new Listener over
** a duplicate of the socket replaces it, and resumes in a second. */
static int reopen(lua_State *L) {
  Listener *l = (Listener *)lua_touserdata(L, 1), *fresh;
  uv_os_fd_t fd;
  int dup;
  lua_getiuservalue(L, 1, 1);  /* 2: the server */
  drop_spare(l);  /* a descriptor free for the duplicate */
  if (uv_fileno(l->uv.handle, &fd) != 0 ||
      (dup = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1)) < 0)
    return eddy__error(L, "OSError", "cannot duplicate the listening "
                       "socket: %s", strerror(errno));
  fresh = new_listener(L, 2, dup, l->cleanup_ino, 1);  /* 3 */
  l->cleanup_ino = 0;  /* the new one removes the socket file at close() */
  later(L, fresh, 3, resume_listening);
  return 0;
}

/* connection_cb got another error (listener at lidx, the error at the
** top, popped): report it, then close the handle and reopen the socket. */
static void reopen_later(lua_State *L, Listener *l, int lidx, int status) {
  eddy_Loop *loop = l->uv.loop;
  eddy__newcontext(L, status == UV_ENOBUFS || status == UV_ENOMEM
                   ? "socket.accept() out of system resource"
                   : "socket.accept() failed", -1);
  eddy__call_exception_handler(L, loop);
  lua_pushcfunction(L, reopen);
  lua_pushvalue(L, lidx);
  eddy__pcall(L, loop, 1, 0, "Error reopening the listening socket after "
              "an accept error: it is closed");
  close_listener(L, l);
}

static void connection_cb(uv_stream_t *h, int status) {
  Listener *l = (Listener *)h->data;
  eddy_Loop *loop;
  lua_State *L;
  int top;
  if (l == NULL) return;
  loop = l->uv.loop;
  L = loop->rt->L;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, l->uv.self_ref);  /* top + 1 */
  if (status < 0) {
    eddy__pushuverror(L, status, "accept");
    if (status == UV_EMFILE || status == UV_ENFILE)
      pause_accepting(L, l, top + 1);
    else
      reopen_later(L, l, top + 1, status);
  } else if (l->paused) {
    l->held = 1;  /* not accepted: libuv stops polling until it is */
  } else {
    if (l->spare < 0) l->spare = open_spare();  /* lost at a pause */
    lua_pushcfunction(L, accept_one);
    lua_pushvalue(L, top + 1);
    eddy__pcall(L, loop, 1, 0,
                "Error on transport creation for incoming connection");
  }
  lua_settop(L, top);
}

/* }====================================================== */

/* {====================================================== Methods */

/* on_closed: loop:close() or the fallback of pause_accepting closed it. */
static void listener_closed(lua_State *L, eddy_UVObject *o, int self) {
  Listener *l = (Listener *)o;
  (void)L; (void)self;
  drop_spare(l);
  if (l->view != NULL) l->view->fd = -1;  /* closed by loop:close() too */
}

/* The filesystem path a UNIX listening socket is bound to, into 'path';
** 0 for an abstract or unnamed one. */
static int bound_path(int fd, char *path, size_t size) {
  struct sockaddr_un sun;
  socklen_t len = sizeof sun;
  size_t n;
  if (getsockname(fd, (struct sockaddr *)&sun, &len) != 0 ||
      sun.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path)
      || sun.sun_path[0] == '\0')
    return 0;
  n = len - offsetof(struct sockaddr_un, sun_path);
  if (n >= size) n = size - 1;
  memcpy(path, sun.sun_path, n);
  path[n] = '\0';
  return 1;
}

/* asyncio 3.13's cleanup_socket: the inode of the socket file 'fd' is
** bound to, to remember; 0 for none. */
static ino_t socket_file_ino(int fd) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  struct stat st;
  if (bound_path(fd, path, sizeof path) && stat(path, &st) == 0)
    return st.st_ino;
  return 0;
}

/* Remove the listener's socket file, unless it was replaced since (the
** inode differs) or is gone already; as asyncio's _stop_serving. */
static void cleanup_socket(Listener *l) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  struct stat st;
  uv_os_fd_t fd;
  if (l->cleanup_ino == 0 || uv_fileno(l->uv.handle, &fd) != 0) return;
  if (bound_path(fd, path, sizeof path) && stat(path, &st) == 0 &&
      st.st_ino == l->cleanup_ino)
    unlink(path);
  l->cleanup_ino = 0;
}

/* Close every listener of the server at sv. */
static void close_listeners(lua_State *L, int sv) {
  lua_Integer i, n;
  if (push_field(L, sv, "listeners") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    Listener *l;
    lua_rawgeti(L, -1, i);
    l = (Listener *)lua_touserdata(L, -1);
    if (l->uv.handle != NULL) cleanup_socket(l);
    drop_spare(l);
    close_listener(L, l);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* server:close(): stop listening; connections stay (close_clients). */
static int s_close(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  if (sv->closed) return 0;
  sv->closed = 1;
  sv->serving = 0;
  close_listeners(L, 1);
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, SV_LUA);
  if (lua_getfield(L, 2, "serving_fut") != LUA_TNIL) {
    lua_pushnil(L);
    lua_setfield(L, 2, "serving_fut");
    lua_getfield(L, 3, "cancel");  /* serving_fut:cancel(), as from Lua */
    lua_insert(L, 3);
    lua_call(L, 1, 0);
  }
  lua_settop(L, 1);
  if (sv->active == 0) wakeup(L, sv, 1);
  return 0;
}

static int s_close_clients(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  eddy__stream_close_clients(L, sv->loop, sv, 0);
  return 0;
}

static int s_abort_clients(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  eddy__stream_close_clients(L, sv->loop, sv, 1);
  return 0;
}

static int s_get_loop(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  eddy__pushloop(L, sv->loop);
  return 1;
}

/* Listening: not after loop:close(), which closed the listening sockets
** (asyncio's stays serving, its sockets left open with nothing accepting
** on them). */
static int is_serving(eddy_Server *sv) {
  return sv->serving && sv->loop->state != EDDY_LOOP_CLOSED;
}

static int s_is_serving(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  lua_pushboolean(L, is_serving(sv));
  return 1;
}

/* server:wait_closed() (suspending): until close() and every accepted
** connection is gone (asyncio 3.12.1+). */
static int s_wait_closed(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  eddy__can_suspend_rt(L, sv->loop->rt, "wait_closed");  /* API.md §1 */
  if (sv->woken) return 0;
  lua_settop(L, 1);
  if (push_field(L, 1, "waiters") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_getiuservalue(L, 1, SV_FIELDS);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "waiters");
    lua_pop(L, 1);
  }
  eddy__future_new(L, sv->loop);
  lua_pushvalue(L, -1);
  lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
  return eddy__await(L, 3, "wait_closed");
}

/* server:_start() -> false if closed: listen on every socket (asyncio's
** _start_serving). */
static int s_start(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  lua_Integer i, n;
  lua_settop(L, 1);
  lua_pushboolean(L, !sv->closed);
  if (sv->serving || sv->closed) return 1;
  sv->serving = 1;
  push_field(L, 1, "listeners");
  n = (lua_Integer)lua_rawlen(L, 3);
  for (i = 1; i <= n; i++) {
    Listener *l;
    int r;
    lua_rawgeti(L, 3, i);
    l = (Listener *)lua_touserdata(L, -1);
    r = uv_listen((uv_stream_t *)l->uv.handle, sv->backlog, connection_cb);
    if (r < 0) return eddy__uverror(L, r, "listen");
    if (l->spare < 0) l->spare = open_spare();  /* none: taken at accepts */
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  return 1;
}

/*
** Push a new Listener of the server at sv over the bound socket fd, which
** it owns from now on (closed on failure), and put it in the server's
** list: in place of the Listener at index 'replaced', or at the end when
** that is 0.  For UNIX, close() removes the socket file if its inode is
** still cleanup_ino (0: never).  Raises on failure.
*/
/* (server): a new Listener of the server, its handle allocated and
** anchored but not initialised (protected by new_listener). */
static int make_listener(lua_State *L) {
  eddy_Server *s = (eddy_Server *)lua_touserdata(L, 1);
  Listener *l = (Listener *)lua_newuserdatauv(L, sizeof(Listener), 2);
  eddy__uv_init(&l->uv);
  l->server = s;
  l->view = NULL;
  l->spare = -1;
  l->paused = l->held = 0;
  l->uv.on_closed = listener_closed;
  luaL_setmetatable(L, EDDY_LISTENER);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  eddy__uv_open(L, &l->uv, -1, s->loop, s->kind == EDDY_STREAM_TCP
                                            ? sizeof(uv_tcp_t)
                                            : sizeof(uv_pipe_t));
  return 1;
}

/* (server, listener, replaced): the listener into the server's list, in
** the place of 'replaced' if given (protected by new_listener). */
static int list_listener(lua_State *L) {
  lua_Integer i, n;
  int replaced = !lua_isnil(L, 3);
  push_field(L, 1, "listeners");
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n && replaced; i++) {
    int same = lua_rawgeti(L, -1, i) != LUA_TNIL && lua_rawequal(L, -1, 3);
    lua_pop(L, 1);
    if (same) break;
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, replaced && i <= n ? i : n + 1);
  return 0;
}

/* Take over fd (closed on failure, also for lack of memory: nothing is
** made before the object that owns it) as a new Listener of the server at
** sv, pushed; in the place of the one at 'replaced' (0: none) in its list. */
static Listener *new_listener(lua_State *L, int sv, int fd, ino_t cleanup_ino,
                              int replaced) {
  eddy_Server *s = (eddy_Server *)lua_touserdata(L, sv);
  Listener *l;
  uv_handle_t *h;
  int r;
  sv = lua_absindex(L, sv);
  replaced = replaced != 0 ? lua_absindex(L, replaced) : 0;
  lua_pushcfunction(L, make_listener);
  lua_pushvalue(L, sv);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    eddy__fd_close(fd);
    lua_error(L);
  }
  l = (Listener *)lua_touserdata(L, -1);
  l->cleanup_ino = cleanup_ino;
  h = l->uv.handle;
  if (s->kind == EDDY_STREAM_TCP) {
    r = uv_tcp_init(s->loop->uv, (uv_tcp_t *)h);
    if (r == 0 && (r = uv_tcp_open((uv_tcp_t *)h, fd)) < 0) {
      eddy__uv_close(L, &l->uv);
      eddy__fd_close(fd);
      eddy__uverror(L, r, "create_server");
    }
  } else {
    r = uv_pipe_init(s->loop->uv, (uv_pipe_t *)h, 0);
    if (r == 0 && (r = uv_pipe_open((uv_pipe_t *)h, fd)) < 0) {
      eddy__uv_close(L, &l->uv);
      eddy__fd_close(fd);
      eddy__uverror(L, r, "create_unix_server");
    }
  }
  if (r < 0) {
    eddy__uv_abandon(L, &l->uv);
    eddy__fd_close(fd);
    eddy__uverror(L, r, "create_server");
  }
  lua_pushcfunction(L, list_listener);
  lua_pushvalue(L, sv);
  lua_pushvalue(L, -3);
  if (replaced != 0) lua_pushvalue(L, replaced);
  else lua_pushnil(L);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {  /* no memory: unlisted, closed */
    eddy__uv_close(L, &l->uv);
    lua_error(L);
  }
  return l;
}

/* server:_listen(fd, cleanup): take over the bound socket 'fd' (closed on
** failure); for UNIX, 'cleanup' removes its socket file at close(). */
static int s_listen(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  lua_Integer given = luaL_checkinteger(L, 2);
  int fd, type;
  socklen_t len = sizeof type;
  /* Only a socket: never close a descriptor libuv itself uses. */
  if (given < 0 || given > INT_MAX ||
      getsockopt((int)given, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return eddy__error(L, "ValueError", "not a socket: %I", given);
  if (sv->closed) {
    eddy__fd_close((int)given);
    return eddy__error(L, "RuntimeError", "server is closed");
  }
  if ((fd = eddy__fd_for_uv((int)given)) < 0) {
    eddy__fd_close((int)given);
    return eddy__uverror(L, fd, "listen");
  }
  new_listener(L, 1, fd, sv->kind == EDDY_STREAM_UNIX && lua_toboolean(L, 3)
                        ? socket_file_ino(fd) : 0, 0);
  return 0;
}

/* server:_fields() -> the table of the Lua half. */
static int s_fields(lua_State *L) {
  checkserver(L, 1);
  lua_getiuservalue(L, 1, SV_LUA);
  return 1;
}

/* Push the socket view of the listener at lidx: made at the first
** server.sockets, then the same one, so that close_listener reaches it
** (a new one if its user closed it, which only forgets the descriptor).
** Returns 0, pushing nothing, for a listener whose socket is gone. */
static int push_view(lua_State *L, Listener *l, int lidx) {
  uv_os_fd_t fd;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (l->uv.handle == NULL || l->uv.closing) return 0;
  if (l->view != NULL && l->view->fd >= 0) {
    lua_getiuservalue(L, lidx, 2);
    return 1;
  }
  if (uv_fileno(l->uv.handle, &fd) < 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return 0;
  eddy__socket_push(L, fd, ss.ss_family, SOCK_STREAM, 0);
  l->view = eddy__tosocket(L, -1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, lidx, 2);
  return 1;
}

/* The read-only field 'sockets': views of the listening sockets (an
** empty array once closed). */
static int s_index(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  const char *k = lua_tostring(L, 2);
  lua_Integer i, n, m = 0;
  if (k == NULL || strcmp(k, "sockets") != 0) {
    lua_pushvalue(L, 2);
    lua_gettable(L, lua_upvalueindex(1));  /* the methods */
    return 1;
  }
  lua_newtable(L);
  if (sv->closed || push_field(L, 1, "listeners") != LUA_TTABLE) return 1;
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (push_view(L, (Listener *)lua_touserdata(L, -1), lua_gettop(L)))
      lua_rawseti(L, -4, ++m);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

static int s_tostring(lua_State *L) {
  eddy_Server *sv = checkserver(L, 1);
  lua_pushfstring(L, "<Server %s%s %p>",
                  is_serving(sv) ? "serving" : "not serving",
                  sv->closed ? " closed" : "", (void *)sv);
  return 1;
}

/* __gc of a Listener: only at lua_close can an open one be collected. */
static int listener_gc(lua_State *L) {
  Listener *l = (Listener *)lua_touserdata(L, 1);
  drop_spare(l);
  eddy__uv_gc(L, &l->uv, "server");
  return 0;
}

/* loop:_new_server(protocol_factory, kind, backlog) -> Server; kind is
** "tcp" or "unix". */
static int l_new_server(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  static const char *const kinds[] = {"tcp", "unix", NULL};
  int kind = luaL_checkoption(L, 3, NULL, kinds);
  lua_Integer backlog = luaL_checkinteger(L, 4);
  eddy_Server *sv;
  eddy__checkcallable(L, 2);
  sv = (eddy_Server *)lua_newuserdatauv(L, sizeof(eddy_Server), SV_NUV);
  memset(sv, 0, sizeof *sv);
  sv->loop = loop;
  sv->kind = (unsigned char)(kind == 0 ? EDDY_STREAM_TCP : EDDY_STREAM_UNIX);
  sv->backlog = backlog < 1 ? 1 : backlog > 65535 ? 65535 : (int)backlog;
  luaL_setmetatable(L, EDDY_SERVER);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, SV_FACTORY);
  lua_createtable(L, 0, 3);
  lua_newtable(L);
  lua_setfield(L, -2, "listeners");
  sv->has_ctx = (unsigned char)eddy__keep_context(L, loop->rt);
  if (sv->has_ctx) lua_setfield(L, -2, "context");
  lua_setiuservalue(L, -2, SV_FIELDS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, SV_LUA);
  return 1;
}

/* }====================================================== */

static const luaL_Reg server_methods[] = {
  {"close", s_close},
  {"close_clients", s_close_clients},
  {"abort_clients", s_abort_clients},
  {"get_loop", s_get_loop},
  {"is_serving", s_is_serving},
  {"wait_closed", s_wait_closed},
  {"_start", s_start},
  {"_listen", s_listen},
  {"_fields", s_fields},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"_new_server", l_new_server},
  {NULL, NULL}
};

/* Metatables, the loop method, and Server (the methods table the Lua
** half extends) in the core table at the top. */
void eddy__open_server(lua_State *L) {
  eddy__loop_methods(L, loop_methods);
  luaL_newmetatable(L, EDDY_SERVER);
  luaL_newlib(L, server_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Server");
  lua_pushcclosure(L, s_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, s_tostring);
  lua_setfield(L, -2, "__tostring");
  eddy__seal_metatable(L, -1);
  lua_setfield(L, -2, "ServerMeta");
  luaL_newmetatable(L, EDDY_LISTENER);
  lua_pushcfunction(L, listener_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
}
