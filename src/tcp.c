/*
** tcp.c -- the TCP parts of create_connection and create_server: one
** connect attempt (suspending, on a libuv TCP handle) and the bound
** listening socket a server wraps.  Name resolution, happy eyeballs and
** the protocol setup are in lua/eddy/transports.lua.
*/
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* A connect request: completes the future in 'ref' with the transport. */
typedef struct Connect {
  uv_connect_t req;
  int ref;                       /* registry reference of the future */
  struct sockaddr_storage addr;  /* for the error message */
} Connect;

/* Push the error 'status' of a call about 'addr', prefixed with 'what'
** and the address, as asyncio words it. */
static void push_addr_error(lua_State *L, int status, const char *what,
                            const struct sockaddr *addr) {
  eddy__socket_pushaddr(L, addr, sizeof(struct sockaddr_storage));
  lua_pushfstring(L, "%s %s", what,
                  eddy__socket_addr_text(L, -1, addr->sa_family));
  eddy__pushuverror(L, status, lua_tostring(L, -1));
  lua_replace(L, -4);
  lua_pop(L, 2);
}

/* Push the error of a failed connect, as asyncio's sock_connect words it. */
static void push_connect_error(lua_State *L, int status,
                               const struct sockaddr_storage *addr) {
  push_addr_error(L, status, "Connect call failed", (const struct sockaddr *)addr);
}

/* (status, addr) -> the error, for connect_cb: protected, as it allocates
** in a libuv callback. */
static int connect_error(lua_State *L) {
  push_connect_error(L, (int)lua_tointeger(L, 1),
                     (const struct sockaddr_storage *)lua_touserdata(L, 2));
  return 1;
}

static void connect_cb(uv_connect_t *req, int status) {
  Connect *c = (Connect *)req;
  eddy_Stream *s = (eddy_Stream *)req->handle->data;
  lua_State *L;
  eddy_Future *f;
  int top;
  if (s == NULL) {  /* detached by __gc at lua_close */
    free(c);
    return;
  }
  L = s->uv.loop->rt->L;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
  f = (eddy_Future *)lua_touserdata(L, top + 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->uv.self_ref);
  if (f->state != EDDY_FUT_PENDING || status < 0 ||
      s->uv.loop->state == EDDY_LOOP_CLOSED) {
    /* Failed, or nobody waits any more (the task was cancelled). */
    if (s->state != EDDY_STREAM_CLOSED) {
      s->state = EDDY_STREAM_CLOSED;
      eddy__uv_close(L, &s->uv);
    }
    if (f->state == EDDY_FUT_PENDING &&
        s->uv.loop->state != EDDY_LOOP_CLOSED) {
      lua_pushcfunction(L, connect_error);
      lua_pushinteger(L, status);
      lua_pushlightuserdata(L, &c->addr);
      lua_pcall(L, 2, 1, 0);  /* (or the memory error) */
      eddy__future_set_exception_unless_done(L, top + 1);
    }
  } else {
    uv_tcp_nodelay((uv_tcp_t *)req->handle, 1);
    eddy__future_set_result_unless_done(L, top + 1, 1);  /* the transport */
  }
  lua_settop(L, top);
  free(c);
}

/* Done callback of a connect future (fut): once it is cancelled, close
** the transport in upvalue 1; its connect callback then sees ECANCELED. */
static int connect_done(lua_State *L) {
  eddy_Future *f = eddy__checkfuture(L, 1);
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, lua_upvalueindex(1));
  if (f->state == EDDY_FUT_CANCELLED && s->state != EDDY_STREAM_CLOSED) {
    s->state = EDDY_STREAM_CLOSED;
    eddy__uv_close(L, &s->uv);
  }
  return 0;
}

/* Read the {host, port} at i (a numeric host) for connect or bind. */
static int check_addr(lua_State *L, int i, struct sockaddr_storage *ss) {
  socklen_t len;
  int family = AF_INET;
  luaL_checktype(L, i, LUA_TTABLE);
  lua_rawgeti(L, i, 1);
  if (lua_type(L, -1) == LUA_TSTRING && strchr(lua_tostring(L, -1), ':'))
    family = AF_INET6;
  lua_pop(L, 1);
  if (eddy__socket_addr(L, i, family, ss, &len, 0) != 0)
    eddy__error(L, "ValueError", "not a numeric IP address");
  return family;
}

/* Close the not yet started stream at index t and raise the libuv error. */
static int fail(lua_State *L, eddy_Stream *s, int err, const char *what) {
  s->state = EDDY_STREAM_CLOSED;
  eddy__uv_close(L, &s->uv);
  return eddy__uverror(L, err, what);
}

/* Bind the not yet connected socket of h to 'local' as asyncio's
** _connect_sock does: a socket of its own, bound without the SO_REUSEADDR
** uv_tcp_bind would set (with it, a port that another such connection
** holds would bind, and only the connect would fail, if at all).
** Returns 0 or a libuv error. */
static int bind_local(uv_tcp_t *h, const struct sockaddr_storage *local, int family) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), uvfd, r;
  if (fd < 0) return -errno;
  if (bind(fd, (const struct sockaddr *)local, family == AF_INET6
           ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) < 0) {
    r = -errno;
    eddy__fd_close(fd);
    return r;
  }
  uvfd = eddy__fd_for_uv(fd);
  if (uvfd < 0) {
    eddy__fd_close(fd);
    return uvfd;
  }
  r = uv_tcp_open(h, uvfd);
  if (r < 0) eddy__fd_close(uvfd);
  return r;
}

/*
** loop:_tcp_connect({host, port}, local_addr, holder) -> transport
** (suspending): a connected TCP transport without a protocol yet
** (transport:_start).  holder[1] gets the transport at once: if the task
** is cancelled after the connect completed but before it resumed, the
** caller closes it from there (as asyncio closes the socket).
*/
static int l_tcp_connect(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  struct sockaddr_storage addr, local;
  int has_local = !lua_isnoneornil(L, 3), local_family = 0;
  eddy_Stream *s;
  uv_tcp_t *h;
  Connect *c;
  int r, t, ref;
  check_addr(L, 2, &addr);
  if (has_local) local_family = check_addr(L, 3, &local);
  eddy__can_suspend(L, "create_connection");
  s = eddy__stream_new(L, loop, EDDY_STREAM_TCP);
  t = lua_gettop(L);
  if (lua_type(L, 4) == LUA_TTABLE) {
    lua_pushvalue(L, t);
    lua_rawseti(L, 4, 1);
  }
  h = (uv_tcp_t *)eddy__stream_open(L, s, t);
  if (has_local && (r = bind_local(h, &local, local_family)) < 0) {
    push_addr_error(L, r, "error while attempting to bind on address",
                    (struct sockaddr *)&local);
    s->state = EDDY_STREAM_CLOSED;
    eddy__uv_close(L, &s->uv);
    return lua_error(L);
  }
  /* The future and its reference first: nothing between the malloc and
  ** uv_tcp_connect may raise (c would leak), and once the request is
  ** made connect_cb needs c->ref. */
  eddy__future_new(L, loop);
  lua_pushvalue(L, -1);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c = (Connect *)malloc(sizeof *c);
  if (c == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return fail(L, s, UV_ENOMEM, "create_connection");
  }
  c->ref = ref;
  memcpy(&c->addr, &addr, sizeof addr);
  r = uv_tcp_connect(&c->req, h, (struct sockaddr *)&addr, connect_cb);
  if (r < 0) {
    free(c);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    push_connect_error(L, r, &addr);
    s->state = EDDY_STREAM_CLOSED;
    eddy__uv_close(L, &s->uv);
    return lua_error(L);
  }
  /* If the waiting task is cancelled, stop connecting at once. */
  lua_getfield(L, -1, "add_done_callback");
  lua_pushvalue(L, -2);
  lua_pushvalue(L, t);
  lua_pushcclosure(L, connect_done, 1);
  lua_call(L, 2, 0);
  return eddy__await(L, lua_gettop(L), "create_connection");
}

/* Raise the OSError for errno, prefixed with 'what'. */
static int errno_error(lua_State *L, const char *what) {
  return eddy__uverror(L, -errno, what);
}

/*
** C.tcp_bind({host, port}, reuse_address, reuse_port, keep_alive) -> fd:
** a bound TCP socket for a server (asyncio's create_server options;
** IPv6 sockets are IPv6-only, as asyncio makes them).
*/
static int c_tcp_bind(lua_State *L) {
  struct sockaddr_storage addr;
  int family = check_addr(L, 1, &addr);
  int reuse_address = lua_toboolean(L, 2);
  int reuse_port = lua_toboolean(L, 3);
  int keep_alive = lua_toboolean(L, 4);
  int one = 1;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error(L, "socket");
  if ((reuse_address &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
      (reuse_port &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      (keep_alive &&
       setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0) ||
      (family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)) {
    int e = errno;
    close(fd);
    errno = e;
    return errno_error(L, "setsockopt");
  }
  if (bind(fd, (struct sockaddr *)&addr,
           family == AF_INET6 ? sizeof(struct sockaddr_in6)
                              : sizeof(struct sockaddr_in)) < 0) {
    int e = errno;
    close(fd);
    push_addr_error(L, -e, "error while attempting to bind on address",
                    (const struct sockaddr *)&addr);
    return lua_error(L);
  }
  lua_pushinteger(L, fd);
  return 1;
}

static const luaL_Reg tcp_methods[] = {
  {"_tcp_connect", l_tcp_connect},
  {NULL, NULL}
};

/* The loop methods; the core table at the top gets tcp_bind. */
void eddy__open_tcp(lua_State *L) {
  eddy__loop_methods(L, tcp_methods);
  lua_pushcfunction(L, c_tcp_bind);
  lua_setfield(L, -2, "tcp_bind");
}
