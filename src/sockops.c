/*
** sockops.c -- the loop's raw socket methods (sock_recv, sock_sendall,
** sock_connect, sock_accept, ...), as asyncio's selector_events does them:
** try the call on the non-blocking socket; on EAGAIN create a future,
** make a Handle retrying the call the reader or writer of the fd (poll.c),
** and await the future.  A done callback on the future removes the watcher
** (unless another operation replaced it meanwhile), so cancelling the
** awaiting task cancels the future and removes the watcher.
**
** Every operation is an "attempt": a C function reading its arguments
** (sock, extras...) from the stack at 'base' that pushes its results and
** returns their count, or returns EDDY_SOCK_AGAIN to wait, or pushes an
** error and returns EDDY_SOCK_FAILED.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* Whether errno means "try again when the fd is ready". */
#define WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == EINTR)

eddy_Socket *eddy__sock_checknb(lua_State *L, int i) {
  eddy_Socket *s = eddy__checksocket(L, i);
  if (s->timeout != 0)
    eddy__error(L, "ValueError", "the socket must be non-blocking");
  return s;
}

/* The result of a failed call: AGAIN, or FAILED with the OSError pushed. */
static int failed(lua_State *L, int err) {
  if (WOULD_BLOCK(err)) return EDDY_SOCK_AGAIN;
  eddy__pushuverror(L, -err, NULL);
  return EDDY_SOCK_FAILED;
}

/* {====================================================== Waiting */

/* Done callback of the future: done(fut), upvalues loop, fd, event, and
** the Handle it registered; removes the watcher unless it was replaced. */
static int wait_done(lua_State *L) {
  eddy_Loop *loop = eddy__toloop(L, lua_upvalueindex(1));
  eddy_Handle *h = (eddy_Handle *)lua_touserdata(L, lua_upvalueindex(4));
  if (!h->cancelled)
    eddy__fd_unwatch(L, loop, (int)lua_tointeger(L, lua_upvalueindex(2)),
                     (int)lua_tointeger(L, lua_upvalueindex(3)));
  return 0;
}

int eddy__sock_ready(lua_State *L, eddy_SockAttempt attempt) {
  eddy_Future *f = eddy__checkfuture(L, 1);
  int r;
  if (f->state != EDDY_FUT_PENDING) return 0;  /* cancelled meanwhile */
  r = attempt(L, 2);
  if (r == EDDY_SOCK_AGAIN) return 0;
  /* (what attempt made may have run a finalizer cancelling the future) */
  if (r == EDDY_SOCK_FAILED) eddy__future_set_exception_unless_done(L, 1);
  else eddy__future_set_result_unless_done(L, 1, r);
  return 0;
}

int eddy__sock_wait(lua_State *L, eddy_Loop *loop, int fd, int event,
                    lua_CFunction ready, int base, const char *what) {
  int top = lua_gettop(L), F, H, i;
  eddy__future_new(L, loop);
  F = top + 1;
  lua_pushcfunction(L, ready);
  lua_pushvalue(L, F);
  for (i = base; i <= top; i++) lua_pushvalue(L, i);
  eddy__handle_new(L, loop, top - base + 2, 0)->sock_wait = 1;
  H = lua_gettop(L);
  lua_pushvalue(L, H);
  eddy__fd_watch(L, loop, fd, event, 0);
  lua_getfield(L, F, "add_done_callback");
  lua_pushvalue(L, F);
  eddy__pushloop(L, loop);
  lua_pushinteger(L, fd);
  lua_pushinteger(L, event);
  lua_pushvalue(L, H);
  lua_pushcclosure(L, wait_done, 4);
  lua_call(L, 2, 0);
  lua_settop(L, F);
  return eddy__await(L, F, what);
}

/* Try once; wait for readiness if the call would block.  A suspending
** function raises where nothing can suspend before it tries (API.md §1),
** even when the call would not block: whether it waits must not decide
** whether it works. */
static int run(lua_State *L, eddy_Loop *loop, int event,
               eddy_SockAttempt attempt, lua_CFunction ready,
               const char *what) {
  eddy_Socket *s = (eddy_Socket *)lua_touserdata(L, 2);
  int r;
  eddy__can_suspend(L, what);  /* before the try: API.md §1 */
  r = attempt(L, 2);
  if (r >= 0) return r;
  if (r == EDDY_SOCK_FAILED) return lua_error(L);
  return eddy__sock_wait(L, loop, s->fd, event, ready, 2, what);
}

/* }====================================================== */

/* {====================================================== Receiving */

static size_t checknbytes(lua_State *L, int i, const char *what) {
  lua_Integer n = luaL_checkinteger(L, i);
  if (n < 0) eddy__error(L, "ValueError", "negative buffersize in %s", what);
  return (size_t)n;
}

/* Receive into p (n bytes); with 'from', push the sender's address after
** the count.  With 'b', p is the Lua buffer on the top of the stack, which
** is dropped on failure (before the error is pushed: a buffer's box is a
** to-be-closed slot, and moving another value into it has Lua call that
** value's __close).  Returns the results count, AGAIN or FAILED. */
static int recv_into(lua_State *L, int fd, char *p, size_t n, int from,
                     luaL_Buffer *b) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  ssize_t r = recvfrom(fd, p, n, 0, from ? (struct sockaddr *)&ss : NULL,
                       from ? &len : NULL);
  if (r < 0) {
    int e = errno;
    if (b != NULL) lua_pop(L, 1);  /* closes the box */
    return failed(L, e);
  }
  if (b != NULL) luaL_pushresultsize(b, (size_t)r);
  else lua_pushinteger(L, (lua_Integer)r);
  if (!from) return 1;
  if (len == 0) lua_pushnil(L);
  else eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

/* Receive at most n bytes as a string (sock at base, n at base + 1). */
static int recv_string(lua_State *L, int base, int from) {
  eddy_Socket *s = eddy__checksocket(L, base);
  size_t n = eddy__recv_size(s, (size_t)lua_tointeger(L, base + 1), 0);
  luaL_Buffer b;
  char *p;
  if (n == 0 && !from) {  /* sock.recv(0): b"" at once, as Python's */
    lua_pushliteral(L, "");
    return 1;
  }
  p = luaL_buffinitsize(L, &b, n);  /* pushes a placeholder or a box */
  return recv_into(L, s->fd, p, n, from, &b);
}

static int try_recv(lua_State *L, int base) { return recv_string(L, base, 0); }
static int try_recvfrom(lua_State *L, int base) {
  return recv_string(L, base, 1);
}

/* sock, buf, nbytes at base: receive into the Buffer. */
static int recv_buffer(lua_State *L, int base, int from) {
  eddy_Socket *s = eddy__checksocket(L, base);
  size_t size;
  char *p = eddy__checkbuffer(L, base + 1, &size);
  size_t n = (size_t)lua_tointeger(L, base + 2);
  if (n == 0) n = size;
  if (n == 0 && !from) {  /* sock.recv_into(empty): 0 at once, as Python's */
    lua_pushinteger(L, 0);
    return 1;
  }
  return recv_into(L, s->fd, p, n, from, NULL);
}

static int try_recv_into(lua_State *L, int base) {
  return recv_buffer(L, base, 0);
}
static int try_recvfrom_into(lua_State *L, int base) {
  return recv_buffer(L, base, 1);
}

static int recv_ready(lua_State *L) { return eddy__sock_ready(L, try_recv); }
static int recvfrom_ready(lua_State *L) {
  return eddy__sock_ready(L, try_recvfrom);
}
static int recv_into_ready(lua_State *L) {
  return eddy__sock_ready(L, try_recv_into);
}
static int recvfrom_into_ready(lua_State *L) {
  return eddy__sock_ready(L, try_recvfrom_into);
}

/* loop:sock_recv(sock, nbytes) -> string */
static int l_sock_recv(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy__sock_checknb(L, 2);
  checknbytes(L, 3, "recv");
  lua_settop(L, 3);
  return run(L, loop, UV_READABLE, try_recv, recv_ready, "sock_recv");
}

/* loop:sock_recvfrom(sock, bufsize) -> data, address */
static int l_sock_recvfrom(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy__sock_checknb(L, 2);
  checknbytes(L, 3, "recvfrom");
  lua_settop(L, 3);
  return run(L, loop, UV_READABLE, try_recvfrom, recvfrom_ready,
             "sock_recvfrom");
}

/* loop:sock_recv_into(sock, buf) -> n */
static int l_sock_recv_into(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  size_t size;
  eddy__sock_checknb(L, 2);
  eddy__checkbuffer(L, 3, &size);
  lua_settop(L, 3);
  lua_pushinteger(L, 0);  /* the whole buffer */
  return run(L, loop, UV_READABLE, try_recv_into, recv_into_ready,
             "sock_recv_into");
}

/* loop:sock_recvfrom_into(sock, buf, nbytes) -> n, address */
static int l_sock_recvfrom_into(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  size_t size;
  lua_Integer n;
  eddy__sock_checknb(L, 2);
  eddy__checkbuffer(L, 3, &size);
  n = luaL_optinteger(L, 4, 0);
  if (n < 0) return eddy__error(L, "ValueError", "negative buffersize in recvfrom_into");
  if ((lua_Unsigned)n > size)
    return eddy__error(L, "ValueError",
                       "nbytes is greater than the length of the buffer");
  lua_settop(L, 3);
  lua_pushinteger(L, n);
  return run(L, loop, UV_READABLE, try_recvfrom_into, recvfrom_into_ready,
             "sock_recvfrom_into");
}

/* }====================================================== */

/* {====================================================== Sending */

/* sock, data, progress table ({[1] = bytes sent}) at base. */
static int try_sendall(lua_State *L, int base) {
  eddy_Socket *s = eddy__checksocket(L, base);
  size_t len, off;
  const char *data = lua_tolstring(L, base + 1, &len);
  lua_rawgeti(L, base + 2, 1);
  off = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  while (off < len) {
    ssize_t r = send(s->fd, data + off, len - off, MSG_NOSIGNAL);
    if (r < 0) {
      int e = errno;
      lua_pushinteger(L, (lua_Integer)off);
      lua_rawseti(L, base + 2, 1);
      return failed(L, e);
    }
    off += (size_t)r;
  }
  return 0;
}

static int sendall_ready(lua_State *L) {
  return eddy__sock_ready(L, try_sendall);
}

/* loop:sock_sendall(sock, data) */
static int l_sock_sendall(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy__sock_checknb(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  lua_createtable(L, 1, 0);
  lua_pushinteger(L, 0);
  lua_rawseti(L, -2, 1);
  return run(L, loop, UV_WRITABLE, try_sendall, sendall_ready,
             "sock_sendall");
}

/* sock, data, address at base. */
static int try_sendto(lua_State *L, int base) {
  eddy_Socket *s = eddy__checksocket(L, base);
  size_t len;
  const char *data = lua_tolstring(L, base + 1, &len);
  struct sockaddr_storage ss;
  socklen_t salen;
  ssize_t r;
  eddy__socket_addr(L, base + 2, s->family, &ss, &salen, 1);
  r = sendto(s->fd, data, len, MSG_NOSIGNAL, (struct sockaddr *)&ss, salen);
  if (r < 0) return failed(L, errno);
  lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

static int sendto_ready(lua_State *L) {
  return eddy__sock_ready(L, try_sendto);
}

/* loop:sock_sendto(sock, data, address) -> n */
static int l_sock_sendto(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy__sock_checknb(L, 2);
  luaL_checkstring(L, 3);
  luaL_checkany(L, 4);
  lua_settop(L, 4);
  return run(L, loop, UV_WRITABLE, try_sendto, sendto_ready, "sock_sendto");
}

/* }====================================================== */

/* {====================================================== Connecting */

/* The connection finished (writable): sock, address at base. */
static int try_connect_done(lua_State *L, int base) {
  eddy_Socket *s = eddy__checksocket(L, base);
  int err = 0;
  socklen_t n = sizeof err;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &n) != 0) err = errno;
  if (err == 0) return 0;
  if (WOULD_BLOCK(err) || err == EINPROGRESS) return EDDY_SOCK_AGAIN;
  lua_pushfstring(L, "Connect call failed %s",
                  eddy__socket_addr_text(L, base + 1, s->family));
  eddy__pushuverror(L, -err, lua_tostring(L, -1));
  return EDDY_SOCK_FAILED;
}

static int connect_ready(lua_State *L) {
  return eddy__sock_ready(L, try_connect_done);
}

/* connect() with the address at 3 (already resolved). */
static int do_connect(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy_Socket *s = eddy__checksocket(L, 2);
  struct sockaddr_storage ss;
  socklen_t len;
  eddy__socket_addr(L, 3, s->family, &ss, &len, 0);
  lua_settop(L, 3);
  if (connect(s->fd, (struct sockaddr *)&ss, len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EINTR)
    return eddy__uverror(L, -errno, NULL);
  return eddy__sock_wait(L, loop, s->fd, UV_WRITABLE, connect_ready, 2,
                         "sock_connect");
}

/* After loop:getaddrinfo: connect to the first result's sockaddr. */
static int connect_resolved_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  if (!lua_istable(L, -1) || lua_rawgeti(L, -1, 1) != LUA_TTABLE)
    return eddy__error(L, "OSError", "getaddrinfo() returned empty list");
  lua_getfield(L, -1, "sockaddr");
  lua_replace(L, 3);
  lua_settop(L, 3);
  return do_connect(L);
}

/* Whether the IP address at i needs loop:getaddrinfo: a host name, or
** "" (the wildcard for sock:connect, but asyncio's _ensure_resolved
** hands it to getaddrinfo, which fails). */
static int needs_resolving(lua_State *L, eddy_Socket *s, int i) {
  struct sockaddr_storage ss;
  socklen_t len;
  int empty;
  if (s->family != AF_INET && s->family != AF_INET6) return 0;
  if (eddy__socket_addr(L, i, s->family, &ss, &len, 0) == 1) return 1;
  lua_rawgeti(L, i, 1);
  empty = lua_rawlen(L, -1) == 0;
  lua_pop(L, 1);
  return empty;
}

/* loop:sock_connect(sock, address): IP host names are resolved with
** loop:getaddrinfo first, as asyncio's _ensure_resolved. */
static int l_sock_connect(lua_State *L) {
  eddy_Socket *s;
  eddy__checkloop(L, 1);
  s = eddy__sock_checknb(L, 2);
  eddy__can_suspend(L, "sock_connect");  /* before connect(): API.md §1 */
  lua_settop(L, 3);
  if (needs_resolving(L, s, 3)) {
    lua_getfield(L, 1, "getaddrinfo");
    lua_pushvalue(L, 1);
    lua_rawgeti(L, 3, 1);
    lua_rawgeti(L, 3, 2);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, s->family);
    lua_setfield(L, -2, "family");
    lua_pushinteger(L, s->type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, s->proto);
    lua_setfield(L, -2, "proto");
    lua_callk(L, 4, 1, 0, connect_resolved_k);
    return connect_resolved_k(L, LUA_OK, 0);
  }
  return do_connect(L);
}

/* }====================================================== */

/* {====================================================== Accepting */

static int try_accept(lua_State *L, int base) {
  eddy_Socket *s = eddy__checksocket(L, base);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd = accept4(s->fd, (struct sockaddr *)&ss, &len,
                   SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return failed(L, errno);
  eddy__socket_push(L, fd, s->family, s->type, 1);
  /* The listener's proto, as Python's accept() and sock:accept(). */
  ((eddy_Socket *)lua_touserdata(L, -1))->proto = s->proto;
  if (len == 0) ss.ss_family = (sa_family_t)s->family;
  eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

static int accept_ready(lua_State *L) {
  return eddy__sock_ready(L, try_accept);
}

/* loop:sock_accept(sock) -> conn (non-blocking), address */
static int l_sock_accept(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  eddy__sock_checknb(L, 2);
  lua_settop(L, 2);
  return run(L, loop, UV_READABLE, try_accept, accept_ready, "sock_accept");
}

/* }====================================================== */

static const luaL_Reg sockops_methods[] = {
  {"sock_recv", l_sock_recv},
  {"sock_recv_into", l_sock_recv_into},
  {"sock_recvfrom", l_sock_recvfrom},
  {"sock_recvfrom_into", l_sock_recvfrom_into},
  {"sock_sendall", l_sock_sendall},
  {"sock_sendto", l_sock_sendto},
  {"sock_connect", l_sock_connect},
  {"sock_accept", l_sock_accept},
  {NULL, NULL}
};

/* Add the sock_* methods to the Loop class of the core table at the top. */
void eddy__open_sockops(lua_State *L) {
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, sockops_methods, 0);
  lua_pop(L, 1);
}
