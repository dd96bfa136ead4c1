/*
** poll.c -- fd watchers: loop:add_reader/remove_reader/add_writer/
** remove_writer (asyncio's selector callbacks) on libuv poll handles.
**
** One watcher (a uv_poll_t) per fd and loop, with the read and write
** interest combined, as uvloop does: libuv cannot poll one fd with two
** handles.  The watcher holds the reader and the writer Handle in its user
** values; when the fd is ready, the Handle goes to the ready queue (asyncio's
** _add_callback), so the callback runs in the loop like any other, its
** errors go to the exception handler, and a callback may remove its own
** watcher.  A watcher with no interest left is closed.
**
** The per-loop map fd -> watcher lives in the loop's fields table.  The
** sock_* methods (sockops.c), datagram transports (udp.c) and sendfile use
** the same watchers through eddy__fd_watch/eddy__fd_unwatch.
**
** libuv aborts the process if a polled fd is invalid when the interest
** changes, so every change first checks the fd is open, and restarts the
** poll from scratch (stop, then start) so that libuv re-adds the fd.
** libuv hands the change to epoll only when it next polls, and Lua code
** may close the fd in between (sock:close(), a file's close): each fd
** whose poll started is noted, and the loop's fd_check prepare handle,
** which runs right before libuv polls, drops the watchers of those that
** were closed meanwhile, as epoll forgets a closed fd.
*/
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>

#include "internal.h"


#define FDWATCHER "eddy.FdWatcher"

/* User values of a watcher. */
enum { W_READER = 1, W_WRITER, W_NUV = W_WRITER };

typedef struct {
  eddy_UVObject uv;         /* first: owns the uv_poll_t */
  int fd;
  int events;               /* UV_READABLE | UV_WRITABLE being watched */
  unsigned char transport;  /* a transport owns the fd (udp.c) */
} FdWatcher;

static int slot_of(int event) {
  return event == UV_READABLE ? W_READER : W_WRITER;
}

/* Push the loop's map fd -> watcher (created on first use). */
static void push_map(lua_State *L, eddy_Loop *loop) {
  eddy__pushfieldtable(L, loop, "fd_watchers", NULL);
}

/* Push the open watcher of fd (or nil); returns it or NULL. */
static FdWatcher *push_watcher(lua_State *L, eddy_Loop *loop, int fd) {
  FdWatcher *w;
  push_map(L, loop);
  lua_rawgeti(L, -1, fd);
  lua_remove(L, -2);
  w = (FdWatcher *)lua_touserdata(L, -1);
  if (w != NULL && (w->uv.handle == NULL || w->uv.closing)) {
    lua_pop(L, 1);  /* closed by loop:close() or closing: as if absent */
    lua_pushnil(L);
    return NULL;
  }
  return w;
}

/* Cancel the handle in 'slot' of the watcher at index wi; returns 1 if
** there was one. */
static int drop_handle(lua_State *L, int wi, int slot) {
  if (lua_getiuservalue(L, wi, slot) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  eddy__handle_cancel(L, lua_gettop(L));  /* needs an absolute index */
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, wi, slot);
  return 1;
}

/* Push the loop's array of the fds noted for fd_check. */
static void push_started(lua_State *L, eddy_Loop *loop) {
  eddy__pushfieldtable(L, loop, "fd_started", NULL);
}

/* The poll of w just (re)started: have fd_check look at its fd before
** libuv hands it to epoll. */
static void note_started(lua_State *L, FdWatcher *w) {
  eddy_Loop *loop = w->uv.loop;
  push_started(L, loop);
  lua_pushinteger(L, w->fd);
  lua_rawseti(L, -2, ++loop->nfd_started);
  lua_pop(L, 1);
  if (loop->nfd_started == 1)
    uv_prepare_start(&loop->fd_check, eddy__fd_check_cb);
}

/* unwatch(loop, fd, event): eddy__fd_unwatch, for eddy__pcall (it raises
** when the fd was closed while watched). */
static int unwatch(lua_State *L) {
  eddy__fd_unwatch(L, (eddy_Loop *)lua_touserdata(L, 1),
                   (int)lua_tointeger(L, 2), (int)lua_tointeger(L, 3));
  return 0;
}

/* The fd of the watcher at wi is ready for 'event': queue its Handle.  A
** Handle cancelled by the user is never queued; as asyncio's
** _process_events, its interest is removed instead, else the ready fd would
** wake the loop on every turn (level-triggered) for nothing. */
static void fire(lua_State *L, FdWatcher *w, int wi, int event) {
  eddy_Loop *loop = w->uv.loop;
  if (lua_getiuservalue(L, wi, slot_of(event)) == LUA_TNIL)
    ;  /* no interest in this event */
  else if (!((eddy_Handle *)lua_touserdata(L, -1))->cancelled)
    eddy__ready_push(L, loop, -1);
  else {
    lua_pushcfunction(L, unwatch);
    lua_pushlightuserdata(L, loop);
    lua_pushinteger(L, w->fd);
    lua_pushinteger(L, event);
    eddy__pcall(L, loop, 3, 0, "Exception in removing a cancelled fd watcher");
  }
  lua_pop(L, 1);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  FdWatcher *w = (FdWatcher *)h->data;
  eddy_Loop *loop = w->uv.loop;
  lua_State *L = loop->rt->L;
  int top = lua_gettop(L), wi;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->uv.self_ref);
  wi = top + 1;
  if (status < 0) {
    /* POLLERR: libuv stopped the poll.  A selector reports the fd ready
    ** and the callbacks' own calls fetch the error (SO_ERROR, ICMP
    ** errors), so wake both and keep watching while the fd is open. */
    events = w->events;
    if (fcntl(w->fd, F_GETFD) != -1 &&
        uv_poll_start(h, w->events, poll_cb) == 0)
      note_started(L, w);
  }
  if (events & UV_READABLE) fire(L, w, wi, UV_READABLE);
  if (events & UV_WRITABLE) fire(L, w, wi, UV_WRITABLE);
  lua_settop(L, top);
}

static void watcher_closed(lua_State *L, eddy_UVObject *o, int self) {
  (void)o;
  drop_handle(L, self, W_READER);
  drop_handle(L, self, W_WRITER);
}

/* Whether a libuv stream or UDP handle of the loop (a transport's, a
** server's) has fd. */
static int used_by_uv(eddy_Loop *loop, int fd) {
  eddy_UVObject *o;
  for (o = loop->uvobjects; o != NULL; o = o->next) {
    uv_os_fd_t ofd;
    uv_handle_type t = o->handle->type;
    if ((t == UV_TCP || t == UV_NAMED_PIPE || t == UV_UDP || t == UV_TTY) &&
        !eddy__stream_is_closing(o) &&
        uv_fileno(o->handle, &ofd) == 0 && ofd == fd)
      return 1;
  }
  return 0;
}

static void raise_used(lua_State *L, int fd) {
  eddy__error(L, "RuntimeError", "File descriptor %d is used by transport",
              fd);
}

/* Whether a datagram transport (udp.c) that is not closing owns fd: it
** is in the loop's "transport_fds" table (asyncio's weak
** loop._transports) even while its reading is paused and it has no
** watcher. */
static int owned_by_transport(lua_State *L, eddy_Loop *loop, int fd) {
  int owned;
  eddy__pushfieldtable(L, loop, "transport_fds", "v");
  owned = lua_rawgeti(L, -1, fd) != LUA_TNIL;
  lua_pop(L, 2);
  return owned;
}

/* Raise the RuntimeError asyncio gives when fd belongs to a transport:
** one of ours (udp.c) or a libuv stream/UDP handle of the loop. */
static void check_no_transport(lua_State *L, eddy_Loop *loop, int fd,
                               FdWatcher *w) {
  if ((w != NULL && w->transport) || owned_by_transport(L, loop, fd) ||
      used_by_uv(loop, fd))
    raise_used(L, fd);
}

void eddy__fd_check_no_transport(lua_State *L, eddy_Loop *loop, int fd) {
  int top = lua_gettop(L);
  check_no_transport(L, loop, fd, push_watcher(L, loop, fd));
  lua_settop(L, top);
}

void eddy__check_fd_unused(lua_State *L, int fd) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_loops);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    eddy_Loop *loop = (eddy_Loop *)lua_touserdata(L, -2);
    lua_pop(L, 1);
    if (loop->state != EDDY_LOOP_CLOSED && used_by_uv(loop, fd))
      raise_used(L, fd);
  }
  lua_pop(L, 1);
}

/* Apply the watcher's interest: restart, or close it when none is left. */
static void update(lua_State *L, FdWatcher *w, int wi) {
  int err;
  uv_poll_t *h = (uv_poll_t *)w->uv.handle;
  if (w->events == 0) {
    push_map(L, w->uv.loop);
    lua_pushnil(L);
    lua_rawseti(L, -2, w->fd);
    lua_pop(L, 1);
    eddy__uv_close(L, &w->uv);
    return;
  }
  uv_poll_stop(h);
  err = fcntl(w->fd, F_GETFD) == -1 ? -errno
                                     : uv_poll_start(h, w->events, poll_cb);
  if (err == 0) note_started(L, w);
  if (err < 0) {
    w->events = 0;
    drop_handle(L, wi, W_READER);
    drop_handle(L, wi, W_WRITER);
    update(L, w, wi);
    eddy__uverror(L, err, NULL);
  }
}

void eddy__fd_watch(lua_State *L, eddy_Loop *loop, int fd, int event,
                    int transport) {
  int hi, wi;
  FdWatcher *w;
  /* A transport the loop's close left open (a datagram one) has no uv
  ** loop to poll with any more: asyncio's _add_reader raises the same. */
  eddy__check_open(L, loop);
  hi = lua_gettop(L);
  w = push_watcher(L, loop, fd);
  wi = hi + 1;
  if (!transport && (w == NULL || w->transport))
    check_no_transport(L, loop, fd, w);
  if (w == NULL) {
    uv_handle_t *h;
    int err, fl;
    lua_pop(L, 1);
    w = (FdWatcher *)lua_newuserdatauv(L, sizeof *w, W_NUV);
    eddy__uv_init(&w->uv);
    luaL_setmetatable(L, FDWATCHER);
    w->fd = fd;
    w->events = 0;
    w->transport = 0;
    w->uv.on_closed = watcher_closed;
    h = eddy__uv_open(L, &w->uv, wi, loop, sizeof(uv_poll_t));
    fl = fcntl(fd, F_GETFL);
    err = uv_poll_init(loop->uv, (uv_poll_t *)h, fd);
    if (err < 0) {
      eddy__uv_abandon(L, &w->uv);
      eddy__uverror(L, err, NULL);
    }
    /* uv_poll_init made the fd non-blocking; a selector leaves it as it
    ** was (a blocking socket or pipe stays blocking), and libuv never
    ** reads or writes a polled fd itself. */
    if (fl != -1 && !(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl);
    push_map(L, loop);
    lua_pushvalue(L, wi);
    lua_rawseti(L, -2, fd);
    lua_pop(L, 1);
  }
  w->transport = (unsigned char)(w->transport | (transport != 0));
  drop_handle(L, wi, slot_of(event));
  lua_pushvalue(L, hi);
  lua_setiuservalue(L, wi, slot_of(event));
  if (!(w->events & event) || !uv_is_active(w->uv.handle)) {
    w->events |= event;
    update(L, w, wi);
  }
  lua_settop(L, hi - 1);
}

int eddy__fd_unwatch(lua_State *L, eddy_Loop *loop, int fd, int event) {
  int top = lua_gettop(L), had;
  FdWatcher *w;
  if (loop->state == EDDY_LOOP_CLOSED) return 0;
  w = push_watcher(L, loop, fd);
  if (w == NULL) {
    lua_settop(L, top);
    return 0;
  }
  had = drop_handle(L, top + 1, slot_of(event));
  if (w->events & event) {
    w->events &= ~event;
    if (w->events == 0) w->transport = 0;
    update(L, w, top + 1);
  }
  lua_settop(L, top);
  return had;
}

/* With its fd closing, fail the future of the sock_* wait (sockops.c)
** whose Handle is in 'slot' of the watcher at wi, as the call raises on
** a closed socket, rather than leave it waiting forever. */
static void fail_wait(lua_State *L, int wi, int slot) {
  eddy_Handle *h;
  if (lua_getiuservalue(L, wi, slot) != LUA_TNIL &&
      (h = (eddy_Handle *)lua_touserdata(L, -1))->sock_wait && !h->cancelled) {
    lua_getiuservalue(L, -1, HANDLE_UV_ARG(0));
    if (eddy__checkfuture(L, -1)->state == EDDY_FUT_PENDING) {
      eddy__pushuverror(L, UV_EBADF, NULL);
      eddy__future_set_exception_unless_done(L, lua_gettop(L) - 1);
    }
  }
  lua_settop(L, wi);
}

/* The fd of the watcher w at wi (the top) is closed, or about to be:
** drop its interest and Handles (their callbacks) and close it, as epoll
** forgets a closed fd; with fail_waits, fail the sock_* waits first. */
static void forget(lua_State *L, FdWatcher *w, int wi, int fail_waits) {
  if (fail_waits) {
    fail_wait(L, wi, W_READER);
    fail_wait(L, wi, W_WRITER);
  }
  w->events = 0;
  w->transport = 0;
  drop_handle(L, wi, W_READER);
  drop_handle(L, wi, W_WRITER);
  update(L, w, wi);
}

/* Right before libuv polls: a noted fd closed since its poll started
** loses its watcher (and the callbacks their Handles), else libuv would
** abort on epoll_ctl's EBADF. */
void eddy__fd_check_cb(uv_prepare_t *h) {
  eddy_Loop *loop = (eddy_Loop *)((char *)h - offsetof(eddy_Loop, fd_check));
  lua_State *L = loop->rt->L;
  int top = lua_gettop(L), n = loop->nfd_started, i;
  loop->nfd_started = 0;
  uv_prepare_stop(h);
  push_started(L, loop);
  for (i = 1; i <= n; i++) {
    FdWatcher *w;
    lua_rawgeti(L, top + 1, i);
    w = push_watcher(L, loop, (int)lua_tointeger(L, -1));
    if (w != NULL && w->events != 0 && fcntl(w->fd, F_GETFD) == -1)
      forget(L, w, top + 3, 0);
    lua_settop(L, top + 1);
  }
  lua_settop(L, top);
}

/* An eddy.socket is about to close fd: every open loop forgets its
** watcher of fd now.  Left for fd_check, a watcher would outlive the
** close: epoll forgets the fd but the map does not, so a later add_reader
** of a new socket given the same number would never be polled; and if the
** number is handed out again before the next poll, the old callbacks
** would fire for the new socket. */
void eddy__fd_closing(lua_State *L, int fd, int fail_waits) {
  int top = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_loops);
  lua_pushnil(L);
  while (lua_next(L, top + 1)) {
    eddy_Loop *loop = (eddy_Loop *)lua_touserdata(L, -2);
    FdWatcher *w;
    lua_pop(L, 1);
    if (loop->state != EDDY_LOOP_CLOSED &&
        (w = push_watcher(L, loop, fd)) != NULL)
      forget(L, w, top + 3, fail_waits);
    lua_settop(L, top + 2);  /* the map and its key */
  }
  lua_settop(L, top);
}

/* {====================================================== Loop methods */

/* add_reader(fd, cb, ...) / add_writer(fd, cb, ...) -> Handle */
static int add_watch(lua_State *L, int event) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  int fd = eddy__checkfd(L, 2);
  eddy__checkcallable(L, 3);
  eddy__handle_new(L, loop, lua_gettop(L) - 3, 0);
  lua_pushvalue(L, -1);
  eddy__fd_watch(L, loop, fd, event, 0);
  return 1;
}

static int remove_watch(lua_State *L, int event) {
  eddy_Loop *loop = eddy__checkanyloop(L, 1);
  FdWatcher *w;
  int fd;
  if (loop->state == EDDY_LOOP_CLOSED) {
    lua_pushboolean(L, 0);
    return 1;
  }
  fd = eddy__checkfd(L, 2);
  /* asyncio's _ensure_fd_no_transport, as add_reader and add_writer */
  w = push_watcher(L, loop, fd);
  if (w == NULL || w->transport) check_no_transport(L, loop, fd, w);
  lua_pop(L, 1);
  lua_pushboolean(L, eddy__fd_unwatch(L, loop, fd, event));
  return 1;
}

static int l_add_reader(lua_State *L) { return add_watch(L, UV_READABLE); }
static int l_add_writer(lua_State *L) { return add_watch(L, UV_WRITABLE); }
static int l_remove_reader(lua_State *L) { return remove_watch(L, UV_READABLE); }
static int l_remove_writer(lua_State *L) { return remove_watch(L, UV_WRITABLE); }

/* __gc: only reached once the handle is closed, or at lua_close. */
static int watcher_gc(lua_State *L) {
  FdWatcher *w = (FdWatcher *)lua_touserdata(L, 1);
  eddy__uv_gc(L, &w->uv, "fd watcher");
  return 0;
}

static const luaL_Reg poll_methods[] = {
  {"add_reader", l_add_reader},
  {"remove_reader", l_remove_reader},
  {"add_writer", l_add_writer},
  {"remove_writer", l_remove_writer},
  {NULL, NULL}
};

/* Add the fd watcher methods to the Loop class of the core table at the
** top. */
void eddy__open_poll(lua_State *L) {
  luaL_newmetatable(L, FDWATCHER);
  lua_pushcfunction(L, watcher_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, poll_methods, 0);
  lua_pop(L, 1);
}

/* }====================================================== */
