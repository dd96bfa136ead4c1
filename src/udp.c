/*
** udp.c -- datagram transports (asyncio's _SelectorDatagramTransport) for
** loop:create_datagram_endpoint (lua/eddy/selector_events.lua).
**
** The transport owns a non-blocking eddy.socket and watches its fd with
** poll.c's watchers, as asyncio's selector loop does, rather than with
** uv_udp_t: one implementation serves AF_INET, AF_INET6 and AF_UNIX
** datagram sockets (libuv's UDP handle has no AF_UNIX), ICMP errors reach
** error_received exactly when asyncio reports them, and a full send buffer
** queues datagrams with asyncio's flow control (pause_writing above the
** high-water mark, resume_writing at the low one).
**
** pause_reading() removes the reader and resume_reading() adds it again
** (asyncio's _SelectorTransport, which the datagram transport inherits).
**
** States: open -> closing (close(): no more reads; queued datagrams still
** go out) -> lost (connection_lost scheduled; the socket is closed when it
** runs).  The reader and writer callbacks run through the ready queue, so
** an error raised by a protocol method reaches the exception handler and
** leaves the transport as it was (asyncio).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* future.c: getmetatable() on the object gives a table with __name only. */
void eddy__seal_metatable(lua_State *L, int mt);

#define DGRAM "eddy.DatagramTransport"
#define MAX_SIZE (256 * 1024)  /* asyncio's max_size: bytes read at once */
/* What a queued datagram counts beyond its data (asyncio 3.13's
** _header_size), so empty ones reach the high-water mark too. */
#define HEADER_SIZE 8
#define HIGH_WATER (64 * 1024)

/* User values. */
enum { U_PROTOCOL = 1, U_SOCKET, U_ADDRESS, U_BUFFER, U_LOOP, U_EXTRA, U_N };

typedef struct {
  eddy_Loop *loop;
  int fd;
  int family;                  /* of the socket: how sendto reads addresses */
  unsigned char closing;
  unsigned char protocol_connected;
  unsigned char protocol_paused;
  unsigned char writing;       /* a writer is registered */
  unsigned char paused;        /* pause_reading(): no reader */
  unsigned char connected;     /* the socket has a peer: send(), not sendto() */
  int conn_lost;
  unsigned int lost_writes;    /* datagrams dropped after close (debug) */
  size_t buffer_size, high, low;
  lua_Integer bhead, btail;    /* queued {data, addr} in U_BUFFER[bhead..btail) */
} Dgram;

/* The mark of the transports (eddy__newmarked). */
static const char dgram_key = 'd';

static Dgram *checkdgram(lua_State *L, int i) {
  Dgram *d = (Dgram *)eddy__tomarked(L, i, &dgram_key);
  if (d == NULL) luaL_typeerror(L, i, DGRAM);
  return d;
}

/* Push protocol[name] bound for a call: method, protocol.  Returns 0 (and
** pushes nothing) when there is no protocol or no such method. */
static int push_method(lua_State *L, int t, const char *name) {
  t = lua_absindex(L, t);
  if (lua_getiuservalue(L, t, U_PROTOCOL) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_getfield(L, -1, name) == LUA_TNIL) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  return 1;
}

/* Call protocol:name() protected: errors go to the
** exception handler with asyncio's message (flow control callbacks). */
static void call_protected(lua_State *L, Dgram *d, int t, const char *name,
                           const char *message) {
  int top = lua_gettop(L);
  if (push_method(L, t, name)) eddy__pcall(L, d->loop, 1, 0, message);
  lua_settop(L, top);
}

/* Schedule a C function with the transport (and one value at v, 0: none)
** through the ready queue. */
static void call_soon(lua_State *L, Dgram *d, int t, lua_CFunction fn,
                      int v) {
  int n = 1;
  eddy__check_open(L, d->loop);
  t = lua_absindex(L, t);
  if (v != 0) v = lua_absindex(L, v);
  lua_pushcfunction(L, fn);
  lua_pushvalue(L, t);
  if (v != 0) {
    lua_pushvalue(L, v);
    n++;
  }
  eddy__handle_new(L, d->loop, n, 0);
  eddy__ready_push(L, d->loop, -1);
  lua_pop(L, 1);
}

/* {====================================================== Reading */

/* The reader: read_ready(transport). */
static int read_ready(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char *p;
  ssize_t r;
  if (d->conn_lost) return 0;
  p = eddy__read_buffer(L, d->loop->rt, MAX_SIZE);
  r = recvfrom(d->fd, p, MAX_SIZE, 0, (struct sockaddr *)&ss, &len);
  if (r < 0) {
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return 0;
    if (!push_method(L, 1, "error_received")) return 0;
    eddy__pushuverror(L, -err, NULL);
    lua_call(L, 2, 0);
    return 0;
  }
  lua_pushlstring(L, p, (size_t)r);
  if (!push_method(L, 1, "datagram_received")) return 0;
  lua_rotate(L, -3, -1);  /* method, protocol, data */
  if (len == 0) lua_pushnil(L);
  else eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  lua_call(L, 3, 0);
  return 0;
}

/* Watch the fd for reading: read_ready(transport at t). */
static void add_reader(lua_State *L, Dgram *d, int t) {
  lua_pushcfunction(L, read_ready);
  lua_pushvalue(L, t);
  eddy__handle_new(L, d->loop, 1, 0);
  eddy__fd_watch(L, d->loop, d->fd, UV_READABLE, 1);
}

static int t_is_reading(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  lua_pushboolean(L, !d->closing && !d->paused);
  return 1;
}

static int t_pause_reading(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  if (d->closing || d->paused) return 0;
  d->paused = 1;
  eddy__fd_unwatch(L, d->loop, d->fd, UV_READABLE);
  return 0;
}

static int t_resume_reading(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  if (d->closing || !d->paused) return 0;
  add_reader(L, d, 1);  /* first: it raises once the loop is closed */
  d->paused = 0;
  return 0;
}

/* }====================================================== */

/* {====================================================== Closing */

/* call_connection_lost(transport [, exc]): tell the protocol, then close
** the socket whatever the protocol did. */
static int call_connection_lost(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  int status = LUA_OK;
  lua_settop(L, 2);
  if (d->protocol_connected && push_method(L, 1, "connection_lost")) {
    lua_pushvalue(L, 2);
    status = lua_pcall(L, 2, 0, 0);
  }
  d->protocol_connected = 0;
  lua_getiuservalue(L, 1, U_SOCKET);
  lua_getfield(L, -1, "close");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  d->fd = -1;
  /* The view get_extra_info("socket") handed out forgets the descriptor,
  ** which the system may reuse from now on. */
  lua_getiuservalue(L, 1, U_EXTRA);
  if (lua_getfield(L, -1, "socket") != LUA_TNIL) eddy__tosocket(L, -1)->fd = -1;
  lua_pop(L, 2);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, U_PROTOCOL);
  if (status != LUA_OK) return lua_error(L);
  return 0;
}

/* Note (or forget) the transport's fd in the loop's set of transport
** fds: add_reader, the sock_* methods and another datagram transport on
** it raise RuntimeError meanwhile, as asyncio's _ensure_fd_no_transport
** until the transport (at t; 0 to forget it) is closing. */
static void own_fd(lua_State *L, Dgram *d, int t) {
  eddy__pushfieldtable(L, d->loop, "transport_fds", "v");
  if (t != 0) lua_pushvalue(L, t);
  else lua_pushnil(L);
  lua_rawseti(L, -2, d->fd);
  lua_pop(L, 1);
}

static void clear_buffer(lua_State *L, Dgram *d, int t) {
  lua_newtable(L);
  lua_setiuservalue(L, t, U_BUFFER);
  d->bhead = d->btail = 1;
  d->buffer_size = 0;
}

static void stop_writing(lua_State *L, Dgram *d) {
  if (d->writing) eddy__fd_unwatch(L, d->loop, d->fd, UV_WRITABLE);
  d->writing = 0;
}

/* asyncio's _force_close: drop the queue, stop, lose the connection. */
static void force_close(lua_State *L, Dgram *d, int t, int exc) {
  if (d->conn_lost) return;
  if (d->btail > d->bhead) {
    clear_buffer(L, d, t);
    stop_writing(L, d);
  }
  if (!d->closing) {
    d->closing = 1;
    own_fd(L, d, 0);
    eddy__fd_unwatch(L, d->loop, d->fd, UV_READABLE);
  }
  d->conn_lost++;
  call_soon(L, d, t, call_connection_lost, exc);
}

static int t_close(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  if (d->closing) return 0;
  d->closing = 1;
  own_fd(L, d, 0);
  eddy__fd_unwatch(L, d->loop, d->fd, UV_READABLE);
  if (d->btail == d->bhead) {
    d->conn_lost++;
    stop_writing(L, d);
    call_soon(L, d, 1, call_connection_lost, 0);
  }
  return 0;
}

static int t_abort(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  force_close(L, d, 1, 0);
  return 0;
}

static int t_is_closing(lua_State *L) {
  lua_pushboolean(L, checkdgram(L, 1)->closing);
  return 1;
}

/* }====================================================== */

/* {====================================================== Writing */

static void maybe_pause(lua_State *L, Dgram *d, int t) {
  if (d->buffer_size > d->high && !d->protocol_paused) {
    d->protocol_paused = 1;
    call_protected(L, d, t, "pause_writing", "protocol.pause_writing() failed");
  }
}

static void maybe_resume(lua_State *L, Dgram *d, int t) {
  if (d->protocol_paused && d->buffer_size <= d->low) {
    d->protocol_paused = 0;
    call_protected(L, d, t, "resume_writing",
                   "protocol.resume_writing() failed");
  }
}

/* A destination address: what to_target fills in. */
typedef struct Target {
  struct sockaddr_storage ss;
  socklen_t len;
  int family, resolve;
} Target;

static int target_addr(lua_State *L) {
  Target *tg = (Target *)lua_touserdata(L, 2);
  eddy__socket_addr(L, 1, tg->family, &tg->ss, &tg->len, tg->resolve);
  return 0;
}

/* Read the address at ai into tg (resolving a host name if tg->resolve,
** as Python's sock.sendto).  Returns 0, or -1 with the OSError pushed
** (asyncio gives those to error_received: an unknown host, a host of
** another family, a path too long); any other error is raised. */
static int to_target(lua_State *L, int ai, Target *tg) {
  lua_pushcfunction(L, target_addr);
  lua_pushvalue(L, ai);
  lua_pushlightuserdata(L, tg);
  if (lua_pcall(L, 2, 0, 0) == LUA_OK) return 0;
  if (eddy__iserror(L, -1, "OSError")) return -1;
  /* The caller's mistake (a malformed address, a port out of range).
  ** Raised from target_addr it would read "bad argument #1 to '?'": read
  ** the address again here, without a lookup, so that the error names
  ** the caller and its argument.  Only a check made after a lookup (an
  ** IPv6 flowinfo) passes then: raise the error as it came. */
  eddy__socket_addr(L, ai, tg->family, &tg->ss, &tg->len, 0);
  return lua_error(L);
}

/* Send data (at di) with send() on a connected socket (as asyncio, which
** then ignores the address), else to the address at ai, read and resolved
** unless the caller has done so into 'to'; returns 0, the errno, or -1
** with the OSError of the address pushed. */
static int send_one(lua_State *L, Dgram *d, int di, int ai, const Target *to) {
  size_t len;
  const char *data = lua_tolstring(L, di, &len);
  ssize_t r;
  if (d->connected) {
    r = send(d->fd, data, len, MSG_NOSIGNAL);
  } else {
    Target tg;
    if (to == NULL) {
      tg.family = d->family;
      tg.resolve = 1;
      if (to_target(L, ai, &tg) < 0) return -1;
      to = &tg;
    }
    r = sendto(d->fd, data, len, MSG_NOSIGNAL, (const struct sockaddr *)&to->ss, to->len);
  }
  return r < 0 ? errno : 0;
}

/* Report a send error to protocol:error_received: the errno err, or for
** -1 the error on top of the stack (popped). */
static void error_received(lua_State *L, int t, int err) {
  if (err > 0) eddy__pushuverror(L, -err, NULL);
  if (!push_method(L, t, "error_received")) {
    lua_pop(L, 1);
    return;
  }
  lua_rotate(L, -3, -1);  /* method, protocol, error */
  lua_call(L, 2, 0);
}

/* The writer: sendto_ready(transport) flushes the queue. */
static int sendto_ready(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  int buf;
  if (d->conn_lost) return 0;
  lua_getiuservalue(L, 1, U_BUFFER);
  buf = lua_gettop(L);
  while (d->bhead < d->btail) {
    int err, entry = lua_gettop(L) + 1;
    size_t size;
    /* Off the queue before it is sent, as asyncio's popleft: an address
    ** that raises now (its table changed since sendto checked it) must
    ** not stay at the head and raise again at every writable turn. */
    lua_rawgeti(L, buf, d->bhead);
    lua_pushnil(L);
    lua_rawseti(L, buf, d->bhead++);
    lua_rawgeti(L, entry, 1);
    lua_rawgeti(L, entry, 2);
    size = lua_rawlen(L, entry + 1) + HEADER_SIZE;
    d->buffer_size -= size;
    err = send_one(L, d, entry + 1, entry + 2, NULL);
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
      lua_settop(L, entry);
      lua_rawseti(L, buf, --d->bhead);  /* back at the head */
      d->buffer_size += size;
      break;
    }
    if (err != 0) {
      if (err < 0) lua_replace(L, entry);  /* keep the error */
      lua_settop(L, err < 0 ? entry : entry - 1);
      error_received(L, 1, err);
      return 0;
    }
    lua_settop(L, entry - 1);
  }
  lua_settop(L, 1);
  maybe_resume(L, d, 1);
  if (d->bhead == d->btail) {
    stop_writing(L, d);
    if (d->closing && !d->conn_lost) {
      d->conn_lost++;
      call_soon(L, d, 1, call_connection_lost, 0);
    }
  }
  return 0;
}

/* Whether the address at a equals the connected address at b. */
static int same_address(lua_State *L, int a, int b) {
  int i, same = 1;
  if (lua_type(L, a) == LUA_TSTRING || lua_type(L, b) == LUA_TSTRING)
    return lua_rawequal(L, a, b);
  if (!lua_istable(L, a)) return 0;
  for (i = 1; i <= 2 && same; i++) {
    lua_rawgeti(L, a, i);
    lua_rawgeti(L, b, i);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  return same;
}

/* transport:sendto(data [, addr]) */
static int t_sendto(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  size_t len;
  int err, idle;
  Target tg;
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_typeerror(L, 2, "string");
  lua_tolstring(L, 2, &len);
  lua_settop(L, 3);
  if (lua_getiuservalue(L, 1, U_ADDRESS) != LUA_TNIL) {
    if (!lua_isnil(L, 3) && !same_address(L, 3, 4))
      return eddy__error(L, "ValueError", "Invalid address: must be nil "
                         "or the connected address");
    lua_replace(L, 3);  /* asyncio: addr = self._address (allow_broadcast
                        ** leaves the socket unconnected) */
  } else if (lua_isnil(L, 3) && !d->connected) {
    return luaL_argerror(L, 3, "address expected (the transport is not connected)");
  }
  lua_settop(L, 3);
  if (d->closing || d->conn_lost) {  /* API.md §9: dropped; debug warns */
    if (d->loop->debug && d->lost_writes++ == 5)
      lua_warning(L, "eddy: transport is closed: datagrams are dropped", 0);
    return 0;
  }
  idle = d->bhead == d->btail;
  if (!d->connected) {
    /* Read the address now, once: a malformed one raises here rather than
    ** once queued.  A host name is resolved only for a datagram sent at
    ** once; a queued one's is when its turn comes. */
    tg.family = d->family;
    tg.resolve = idle;
    if (to_target(L, 3, &tg) < 0) {
      error_received(L, 1, -1);
      return 0;
    }
  }
  if (idle) {
    err = send_one(L, d, 2, 3, d->connected ? NULL : &tg);
    if (err == 0) return 0;
    if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
      error_received(L, 1, err);
      return 0;
    }
    lua_pushcfunction(L, sendto_ready);
    lua_pushvalue(L, 1);
    eddy__handle_new(L, d->loop, 1, 0);
    eddy__fd_watch(L, d->loop, d->fd, UV_WRITABLE, 1);
    d->writing = 1;
  }
  lua_getiuservalue(L, 1, U_BUFFER);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, d->btail++);
  d->buffer_size += len + HEADER_SIZE;
  maybe_pause(L, d, 1);
  return 0;
}

static int t_get_write_buffer_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkdgram(L, 1)->buffer_size);
  return 1;
}

static int t_get_write_buffer_limits(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  lua_pushinteger(L, (lua_Integer)d->low);
  lua_pushinteger(L, (lua_Integer)d->high);
  return 2;
}

/* set_write_buffer_limits(high, low) */
static int t_set_write_buffer_limits(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  eddy__write_limits_args(L, HIGH_WATER, &d->high, &d->low);
  maybe_pause(L, d, 1);
  return 0;
}

/* }====================================================== */

/* {====================================================== Other methods */

/* get_extra_info(name, default): peername, sockname, socket. */
static int t_get_extra_info(lua_State *L) {
  checkdgram(L, 1);
  luaL_checkstring(L, 2);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, U_EXTRA);
  if (lua_getfield(L, -1, lua_tostring(L, 2)) == LUA_TNIL)
    lua_pushvalue(L, 3);  /* the default */
  return 1;
}

static int t_get_protocol(lua_State *L) {
  checkdgram(L, 1);
  lua_getiuservalue(L, 1, U_PROTOCOL);
  return 1;
}

static int t_set_protocol(lua_State *L) {
  int tp = lua_type(L, 2);
  checkdgram(L, 1);
  if (tp != LUA_TTABLE && tp != LUA_TUSERDATA)  /* as a stream's */
    luaL_typeerror(L, 2, "protocol (table or userdata)");
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, U_PROTOCOL);
  return 0;
}

static int t_tostring(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  lua_pushfstring(L, "<DatagramTransport fd=%d%s %p>", d->fd,
                  d->conn_lost ? " closed" : d->closing ? " closing" : "",
                  (void *)d);
  return 1;
}

/* }====================================================== */

/* {====================================================== Creation */

/* Handle: connection_made happened; start reading unless the protocol
** paused it meanwhile (asyncio's _add_reader checks is_reading()). */
static int start_reading(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  if (d->closing || d->paused) return 0;
  add_reader(L, d, 1);
  return 0;
}

/* Handle: the protocol is connected (after connection_made). */
static int connection_made(lua_State *L) {
  Dgram *d = checkdgram(L, 1);
  d->protocol_connected = 1;
  if (push_method(L, 1, "connection_made")) {
    lua_pushvalue(L, 1);
    lua_call(L, 2, 0);
  }
  return 0;
}

/* Handle: set the waiter's result unless it was cancelled. */
static int wake_waiter(lua_State *L) {
  eddy_Future *f = eddy__checkfuture(L, 2);
  if (f->state == EDDY_FUT_PENDING)
    eddy__future_set_result_unless_done(L, 2, 0);
  return 0;
}

/* Store a name of the socket (peer or own) in the extra table at e. */
static void extra_name(lua_State *L, int fd, int e, int peer,
                       const char *key) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                : getsockname(fd, (struct sockaddr *)&ss, &len);
  if (rc != 0) return;
  eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  lua_setfield(L, e, key);
}

/* loop:_make_datagram_transport(sock, protocol, address, waiter) ->
** transport: takes over the (non-blocking) socket. */
static int l_make_datagram_transport(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy_Socket *s = eddy__checksocket(L, 2);
  Dgram *d;
  int t, e;
  luaL_checkany(L, 3);
  eddy__checkfuture(L, 5);
  lua_settop(L, 5);
  /* As asyncio's: two transports reading one fd would steal each other's
  ** watcher (a view from get_extra_info("socket") has the same fd). */
  eddy__fd_check_no_transport(L, loop, s->fd);
  d = (Dgram *)eddy__newmarked(L, sizeof *d, U_N - 1, &dgram_key);
  memset(d, 0, sizeof *d);
  t = lua_gettop(L);
  d->loop = loop;
  d->fd = s->fd;
  d->family = s->family;
  d->high = HIGH_WATER;
  d->low = HIGH_WATER / 4;
  d->bhead = d->btail = 1;
  luaL_setmetatable(L, DGRAM);
  own_fd(L, d, t);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, t, U_PROTOCOL);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, t, U_SOCKET);
  lua_pushvalue(L, 4);
  lua_setiuservalue(L, t, U_ADDRESS);
  lua_newtable(L);
  lua_setiuservalue(L, t, U_BUFFER);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, t, U_LOOP);
  lua_newtable(L);
  e = lua_gettop(L);
  eddy__socket_push(L, s->fd, s->family, s->type, 0);
  lua_setfield(L, e, "socket");
  extra_name(L, s->fd, e, 0, "sockname");
  extra_name(L, s->fd, e, 1, "peername");
  d->connected = lua_getfield(L, e, "peername") != LUA_TNIL;
  lua_pop(L, 1);
  lua_setiuservalue(L, t, U_EXTRA);
  call_soon(L, d, t, connection_made, 0);
  call_soon(L, d, t, start_reading, 0);
  call_soon(L, d, t, wake_waiter, 5);
  lua_settop(L, t);
  return 1;
}

static const luaL_Reg dgram_methods[] = {
  {"sendto", t_sendto},
  {"close", t_close},
  {"abort", t_abort},
  {"is_closing", t_is_closing},
  {"is_reading", t_is_reading},
  {"pause_reading", t_pause_reading},
  {"resume_reading", t_resume_reading},
  {"get_extra_info", t_get_extra_info},
  {"get_write_buffer_size", t_get_write_buffer_size},
  {"get_write_buffer_limits", t_get_write_buffer_limits},
  {"set_write_buffer_limits", t_set_write_buffer_limits},
  {"get_protocol", t_get_protocol},
  {"set_protocol", t_set_protocol},
  {NULL, NULL}
};

/* Create the transport metatable; add _make_datagram_transport to the
** Loop class of the core table at the top. */
void eddy__open_udp(lua_State *L) {
  eddy__newmarkedmetatable(L, DGRAM);
  luaL_newlib(L, dgram_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, t_tostring);
  lua_setfield(L, -2, "__tostring");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "Loop");
  lua_pushcfunction(L, l_make_datagram_transport);
  lua_setfield(L, -2, "_make_datagram_transport");
  lua_pop(L, 1);
}

/* }====================================================== */
