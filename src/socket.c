/*
** socket.c -- eddy.socket: the part of Python's socket module that asyncio
** code needs (API.md §10).
**
** A socket object is a userdata with the fd and the Python-style timeout:
** blocking (timeout < 0, Python's None), non-blocking (0), or a timeout in
** seconds (the fd is non-blocking and every call polls first).  Objects
** are created closed-first: fd is -1 until the descriptor exists.  An
** "owned" socket closes its descriptor on close()/__gc/__close; a view
** (eddy__socket_push with owned = 0, what transports return from
** get_extra_info("socket")) never does: closing the view only forgets
** the descriptor, and a view cannot be made blocking (asyncio's
** TransportSocket).
**
** Addresses: {host, port} arrays for AF_INET, {host, port, flowinfo,
** scope_id} for AF_INET6, path strings for AF_UNIX (abstract names start
** with "\0").  Host names are resolved with a blocking getaddrinfo, as
** Python's socket module does.  Errors raise eddy.errors.OSError
** subclasses with errno, code and strerror.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "internal.h"


/* {====================================================== Addresses */

/* Raise the DNSError (or OSError) for a getaddrinfo failure. */
static int raise_gai(lua_State *L, int rc) {
  int uverr;
  switch (rc) {
    case EAI_ADDRFAMILY: uverr = UV_EAI_ADDRFAMILY; break;
    case EAI_AGAIN: uverr = UV_EAI_AGAIN; break;
    case EAI_BADFLAGS: uverr = UV_EAI_BADFLAGS; break;
    case EAI_FAIL: uverr = UV_EAI_FAIL; break;
    case EAI_FAMILY: uverr = UV_EAI_FAMILY; break;
    case EAI_MEMORY: uverr = UV_EAI_MEMORY; break;
    case EAI_NODATA: uverr = UV_EAI_NODATA; break;
    case EAI_SERVICE: uverr = UV_EAI_SERVICE; break;
    case EAI_SOCKTYPE: uverr = UV_EAI_SOCKTYPE; break;
    case EAI_SYSTEM: uverr = -errno; break;
    default: uverr = UV_EAI_NONAME; break;
  }
  return eddy__uverror(L, uverr, NULL);
}

/*
** Fill 'ss' from an IPv4/IPv6 host string: "" is the wildcard,
** "<broadcast>" INADDR_BROADCAST, numeric hosts are parsed, and names are
** resolved (blocking) only if 'resolve'.  Returns 0, or 1 for a name that
** needs resolving when 'resolve' is 0.
*/
static int host_addr(lua_State *L, const char *host, int family, int port,
                     struct sockaddr_storage *ss, socklen_t *len,
                     int resolve) {
  struct addrinfo hints, *res;
  char service[16];
  int rc;
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    *len = sizeof *sin;
    if (*host == '\0') { sin->sin_addr.s_addr = htonl(INADDR_ANY); return 0; }
    if (strcmp(host, "<broadcast>") == 0) {
      sin->sin_addr.s_addr = htonl(INADDR_BROADCAST);
      return 0;
    }
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) return 0;
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    *len = sizeof *sin6;
    if (*host == '\0') { sin6->sin6_addr = in6addr_any; return 0; }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) return 0;
  }
  /* A name, or a numeric form inet_pton does not take ("fe80::1%lo"). */
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  snprintf(service, sizeof service, "%d", port);
  rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) {
    if (!resolve) return 1;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) return raise_gai(L, rc);
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = (socklen_t)res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/* Field i of the address array at idx: an integer, or def when absent. */
static lua_Integer opt_field(lua_State *L, int idx, int i, const char *name,
                             lua_Integer def) {
  int isnum;
  lua_Integer v;
  if (lua_rawgeti(L, idx, i) == LUA_TNIL) v = def;
  else {
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || lua_type(L, -1) != LUA_TNUMBER)  /* "80" is not a port */
      luaL_argerror(L, idx, lua_pushfstring(L, "address %s must be an integer", name));
  }
  lua_pop(L, 1);
  return v;
}

int eddy__socket_addr(lua_State *L, int idx, int family,
                      struct sockaddr_storage *ss, socklen_t *len,
                      int resolve) {
  idx = lua_absindex(L, idx);
  if (family == AF_UNIX) {
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    size_t n;
    const char *path;
    int file;  /* a file's path, else an abstract name (or "": autobind) */
    if (lua_type(L, idx) != LUA_TSTRING)
      return luaL_typeerror(L, idx, "string (AF_UNIX address)");
    path = lua_tolstring(L, idx, &n);
    file = n > 0 && path[0] != '\0';
    if (file)  /* no NUL inside */
      eddy__tocstring(L, idx, "UNIX socket path");
    /* a file's path ends with a NUL; an abstract name has none, so it
    ** may fill sun_path (CPython's limits) */
    if (n + (size_t)file > sizeof sun->sun_path)
      return eddy__error(L, "OSError", "AF_UNIX path too long");
    memset(ss, 0, sizeof *ss);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (size_t)file);
    return 0;
  }
  if (family == AF_INET || family == AF_INET6) {
    const char *host;
    lua_Integer port;
    int isnum, r;
    if (!lua_istable(L, idx))
      return luaL_typeerror(L, idx,
                            family == AF_INET ? "{host, port} (AF_INET address)"
                                              : "{host, port} (AF_INET6 address)");
    /* Python's TypeError for a tuple of the wrong size: nothing ignored */
    if (family == AF_INET && lua_rawlen(L, idx) != 2)
      return luaL_argerror(L, idx, "AF_INET address must be {host, port}");
    if (family == AF_INET6 && lua_rawlen(L, idx) > 4)
      return luaL_argerror(L, idx, "AF_INET6 address must be "
                           "{host, port[, flowinfo[, scope_id]]}");
    lua_rawgeti(L, idx, 1);
    lua_rawgeti(L, idx, 2);
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_argerror(L, idx, "address host must be a string");
    port = lua_tointegerx(L, -1, &isnum);
    if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
      return luaL_argerror(L, idx, "address port must be an integer");
    if (port < 0 || port > 65535)
      return eddy__error(L, "ValueError", "port must be 0-65535.");
    host = eddy__tocstring(L, -2, "host");
    r = host_addr(L, host, family, (int)port, ss, len, resolve);
    lua_pop(L, 2);
    if (r == 0 && family == AF_INET6) {
      struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
      lua_Integer flowinfo = opt_field(L, idx, 3, "flowinfo", 0);
      lua_Integer scope = opt_field(L, idx, 4, "scope_id", sin6->sin6_scope_id);
      if (flowinfo < 0 || flowinfo > 0xfffff)
        return eddy__error(L, "ValueError", "flowinfo must be 0-1048575.");
      sin6->sin6_flowinfo = htonl((uint32_t)flowinfo);
      sin6->sin6_scope_id = (uint32_t)scope;
    }
    return r;
  }
  return eddy__error(L, "OSError", "address family %d is not supported",
                     family);
}

/* inet_ntop for AF_INET: glibc's formats through sprintf, some 1,400
** instructions, and a datagram server formats every sender's address. */
static size_t format_ipv4(const struct in_addr *a, char *out) {
  const unsigned char *b = (const unsigned char *)&a->s_addr;
  char *p = out;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (i > 0) *p++ = '.';
    if (v >= 100) *p++ = (char)('0' + v / 100);
    if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
  }
  return (size_t)(p - out);
}

void eddy__socket_pushaddr(lua_State *L, const struct sockaddr *sa,
                            socklen_t len) {
  char host[INET6_ADDRSTRLEN];
  switch (sa->sa_family) {
    case AF_INET: {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
      size_t n = format_ipv4(&sin->sin_addr, host);
      lua_createtable(L, 2, 0);
      lua_pushlstring(L, host, n);
      lua_rawseti(L, -2, 1);
      lua_pushinteger(L, ntohs(sin->sin_port));
      lua_rawseti(L, -2, 2);
      return;
    }
    case AF_INET6: {
      const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
      inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
      lua_createtable(L, 4, 0);
      lua_pushstring(L, host);
      lua_rawseti(L, -2, 1);
      lua_pushinteger(L, ntohs(sin6->sin6_port));
      lua_rawseti(L, -2, 2);
      lua_pushinteger(L, ntohl(sin6->sin6_flowinfo));
      lua_rawseti(L, -2, 3);
      lua_pushinteger(L, sin6->sin6_scope_id);
      lua_rawseti(L, -2, 4);
      return;
    }
    case AF_UNIX: {
      const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
      size_t n = len > offsetof(struct sockaddr_un, sun_path)
                     ? len - offsetof(struct sockaddr_un, sun_path) : 0;
      if (n > 0 && sun->sun_path[0] != '\0')
        n = strnlen(sun->sun_path, n);  /* a path: up to its NUL */
      lua_pushlstring(L, sun->sun_path, n);
      return;
    }
    default:
      lua_pushnil(L);
  }
}

/* The address text of messages (internal.h): Python's str() of the
** address tuple, each element as Lua prints it. */
const char *eddy__socket_addr_text(lua_State *L, int idx, int family) {
  int n = family == AF_INET6 ? 4 : 2, k;
  luaL_Buffer b;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return luaL_tolstring(L, idx, NULL);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "('");
  for (k = 1; k <= n; k++) {
    if (lua_rawgeti(L, idx, k) == LUA_TNIL && k > 2) {
      lua_pop(L, 1);
      lua_pushinteger(L, 0);
    }
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(&b);
    luaL_addstring(&b, k == 1 ? "', " : k < n ? ", " : ")");
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* }====================================================== */

/* {====================================================== Objects */

/* The mark of socket objects (eddy__newmarked): the sock_* methods
** check their socket on every call. */
static const char socket_key = 's';

/* The socket object at i, open or closed. */
static eddy_Socket *checkobject(lua_State *L, int i) {
  eddy_Socket *s = (eddy_Socket *)eddy__tomarked(L, i, &socket_key);
  if (s == NULL) luaL_typeerror(L, i, EDDY_SOCKET);
  return s;
}

static int checkint(lua_State *L, int i, const char *what) {
  lua_Integer v = luaL_checkinteger(L, i);
  if (v < INT_MIN || v > INT_MAX)
    return eddy__error(L, "ValueError", "%s out of range", what);
  return (int)v;
}

static int optint(lua_State *L, int i, int def, const char *what) {
  return lua_isnoneornil(L, i) ? def : checkint(L, i, what);
}

/* (): a new socket object, closed (protected by eddy__socket_push). */
static int new_closed(lua_State *L) {
  eddy_Socket *s = (eddy_Socket *)eddy__newmarked(L, sizeof *s, 0, &socket_key);
  s->fd = -1;  /* closed until set up */
  luaL_setmetatable(L, EDDY_SOCKET);
  return 1;
}

void eddy__socket_push(lua_State *L, int fd, int family, int type,
                       int owned) {
  eddy_Socket *s;
  int fl = fcntl(fd, F_GETFL);
  int proto = 0;
  socklen_t n = sizeof proto;
  lua_pushcfunction(L, new_closed);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {  /* no memory for it */
    if (owned) close(fd);  /* nobody else has it */
    lua_error(L);
  }
  s = (eddy_Socket *)lua_touserdata(L, -1);
  getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &n);
  s->family = family;
  s->type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  s->proto = proto;
  s->timeout = (fl != -1 && (fl & O_NONBLOCK)) ? 0 : -1;
  s->owned = (unsigned char)(owned != 0);
  s->fd = fd;
}

eddy_Socket *eddy__tosocket(lua_State *L, int idx) {
  return (eddy_Socket *)eddy__tomarked(L, idx, &socket_key);
}

eddy_Socket *eddy__checksocket(lua_State *L, int idx) {
  eddy_Socket *s = checkobject(L, idx);
  if (s->fd < 0) eddy__uverror(L, UV_EBADF, NULL);
  return s;
}

/* The fd of any value asyncio's _fileobj_to_fd accepts. */
int eddy__checkfd(lua_State *L, int idx) {
  lua_Integer fd;
  int t = lua_type(L, idx);
  idx = lua_absindex(L, idx);
  if (t == LUA_TNUMBER) {
    int isnum;
    fd = lua_tointegerx(L, idx, &isnum);
    if (!isnum) return luaL_argerror(L, idx, "file descriptor must be an integer");
  } else if (t == LUA_TUSERDATA && eddy__tosocket(L, idx) != NULL) {
    fd = eddy__tosocket(L, idx)->fd;
  } else if (t == LUA_TUSERDATA && luaL_testudata(L, idx, LUA_FILEHANDLE)) {
    luaL_Stream *p = (luaL_Stream *)lua_touserdata(L, idx);
    if (p->closef == NULL) return luaL_error(L, "attempt to use a closed file");
    fd = fileno(p->f);
  } else if ((t == LUA_TTABLE || t == LUA_TUSERDATA) &&
             lua_getfield(L, idx, "fileno") != LUA_TNIL) {
    int isnum;
    if (!eddy__iscallable(L, -1))  /* Python's TypeError: not callable */
      return luaL_typeerror(L, idx, "file descriptor, socket or file");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    fd = lua_tointegerx(L, -1, &isnum);
    if (!isnum)
      return eddy__error(L, "ValueError", "Invalid file object: fileno() "
                         "returned a %s", luaL_typename(L, -1));
    lua_pop(L, 1);
  } else {
    return luaL_typeerror(L, idx, "file descriptor, socket or file");
  }
  if (fd < 0 || fd > INT_MAX)
    return eddy__error(L, "ValueError", "Invalid file descriptor: %I", fd);
  return (int)fd;
}

/* Close (owned) or forget (view) the descriptor; idempotent. */
static int sock_close(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  int fd = s->fd, r;
  if (fd < 0 || !s->owned) {
    s->fd = -1;
    return 0;
  }
  eddy__fd_closing(L, fd, 1);  /* (out of memory: raises, the fd stays ours) */
  s->fd = -1;
  if ((r = eddy__fd_close(fd)) != 0 && r != -EINTR && r != -ECONNRESET)
    return eddy__uverror(L, r, NULL);  /* the fd is gone anyway */
  return 0;
}

/* (fd): sock_gc's eddy__fd_closing, protected: it may allocate (a
** loop's map of watchers), and with no memory left the descriptor must
** close all the same (a watcher left on it is dropped at the next poll,
** eddy__fd_check_cb). */
static int fd_closing_protected(lua_State *L) {
  eddy__fd_closing(L, (int)lua_tointeger(L, 1), 0);
  return 0;
}

/* __gc / __close: close without raising. */
static int sock_gc(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  if (s->fd >= 0 && s->owned) {
    lua_pushcfunction(L, fd_closing_protected);
    lua_pushinteger(L, s->fd);  /* (no wait holds a collected one) */
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    eddy__fd_close(s->fd);
  }
  s->fd = -1;
  return 0;
}

/* sock:detach() -> fd: the object forgets the descriptor. */
static int sock_detach(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  lua_pushinteger(L, s->fd);
  s->fd = -1;
  return 1;
}

static int sock_fileno(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  lua_pushinteger(L, s->fd);
  return 1;
}

/* Put the descriptor in the mode the timeout asks for. */
static void apply_timeout(lua_State *L, eddy_Socket *s, double timeout) {
  int fl = fcntl(s->fd, F_GETFL);
  if (fl == -1) eddy__uverror(L, -errno, NULL);
  fl = timeout < 0 ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK);
  if (fcntl(s->fd, F_SETFL, fl) == -1) eddy__uverror(L, -errno, NULL);
  s->timeout = timeout;
}

static int sock_setblocking(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  int flag;
  luaL_checkany(L, 2);
  flag = lua_toboolean(L, 2);
  if (flag && !s->owned)
    return eddy__error(L, "ValueError",
                       "setblocking(): transport sockets cannot be blocking");
  apply_timeout(L, s, flag ? -1 : 0);
  return 0;
}

/* getblocking and gettimeout read the mode only: a closed socket
** answers too, as Python's. */
static int sock_getblocking(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  lua_pushboolean(L, s->timeout != 0);
  return 1;
}

/* The longest timeout, in seconds: Python's, whose clock counts
** nanoseconds in 64 bits (it raises OverflowError beyond). */
#define MAX_TIMEOUT 9.2e9

/* sock:settimeout(seconds | nil) */
static int sock_settimeout(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  double t = -1;
  if (!lua_isnoneornil(L, 2)) {
    t = (double)luaL_checknumber(L, 2);
    if (!(t >= 0 && t <= MAX_TIMEOUT))  /* NaN fails too */
      return eddy__error(L, "ValueError", "Timeout value out of range");
  }
  if (t != 0 && !s->owned)
    return eddy__error(L, "ValueError",
                       "settimeout(): only 0 timeout is allowed on "
                       "transport sockets");
  apply_timeout(L, s, t);
  return 0;
}

static int sock_gettimeout(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  if (s->timeout < 0) lua_pushnil(L);
  else lua_pushnumber(L, s->timeout);
  return 1;
}

/* }====================================================== */

/* {====================================================== Blocking calls */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
** poll() fd for 'events' for at most 'timeout' seconds (< 0: no limit),
** as CPython's sock_call_ex: the time left is computed again after EINTR,
** and a timeout longer than poll's int of milliseconds (24.8 days) waits
** in several polls.  Returns poll's result (0: the timeout expired).
*/
static int poll_fd(int fd, short events, double timeout) {
  struct pollfd p;
  double deadline = timeout < 0 ? 0 : now() + timeout;
  p.fd = fd;
  p.events = events;
  for (;;) {
    double ms = 0;
    int rc;
    if (timeout >= 0) {
      ms = ceil((deadline - now()) * 1000);
      if (ms < 0) ms = 0;
    }
    rc = poll(&p, 1, timeout < 0 ? -1 : ms > INT_MAX ? INT_MAX : (int)ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0 && ms > INT_MAX) continue;  /* not the deadline yet */
    return rc;
  }
}

/*
** A call failed with errno: decide whether to retry.  EINTR retries (PEP
** 475); with a timeout, EAGAIN waits for 'events' up to the timeout and
** retries, raising TimeoutError when it expires.  Returns 0 when the
** caller should raise errno.
*/
static int retry(lua_State *L, eddy_Socket *s, short events) {
  int rc, err = errno;
  if (err == EINTR) return 1;
  if (s->timeout <= 0 || (err != EAGAIN && err != EWOULDBLOCK)) {
    errno = err;
    return 0;
  }
  rc = poll_fd(s->fd, events, s->timeout);
  if (rc == 0) eddy__error(L, "TimeoutError", "timed out");
  if (rc < 0) eddy__uverror(L, -errno, NULL);
  return 1;
}

/* Raise the OSError for errno value 'err'.  libuv has no code for
** EINPROGRESS (a non-blocking connect), which would come out as "Unknown
** system error -115": build that one here, as Python's BlockingIOError. */
static int raise_oserror(lua_State *L, int err) {
  if (err != EINPROGRESS) return eddy__uverror(L, -err, NULL);
  lua_pushliteral(L, "operation now in progress");
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, err);
  lua_setfield(L, -2, "errno");
  lua_pushliteral(L, "EINPROGRESS");
  lua_setfield(L, -2, "code");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "strerror");
  eddy__newerror(L, "OSError", 2);
  return lua_error(L);
}

static int raise_errno(lua_State *L) {
  return raise_oserror(L, errno);
}

static void checkaddr(lua_State *L, eddy_Socket *s, int idx,
                      struct sockaddr_storage *ss, socklen_t *len) {
  eddy__socket_addr(L, idx, s->family, ss, len, 1);
}

static int sock_bind(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  checkaddr(L, s, 2, &ss, &len);
  if (bind(s->fd, (struct sockaddr *)&ss, len) != 0) return raise_errno(L);
  return 0;
}

static int sock_listen(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  lua_Integer backlog = luaL_optinteger(L, 2, SOMAXCONN < 128 ? SOMAXCONN : 128);
  if (backlog < 0) backlog = 0;
  if (backlog > INT_MAX) backlog = INT_MAX;
  if (listen(s->fd, (int)backlog) != 0) return raise_errno(L);
  return 0;
}

/*
** connect(): returns 0 or an errno.  A blocking connect interrupted by a
** signal, or one with a timeout, completes by waiting for writability and
** reading SO_ERROR, as CPython's internal_connect does.
*/
static int do_connect(lua_State *L, eddy_Socket *s, int idx) {
  struct sockaddr_storage ss;
  socklen_t len;
  int err = 0;
  checkaddr(L, s, idx, &ss, &len);
  if (connect(s->fd, (struct sockaddr *)&ss, len) == 0) return 0;
  err = errno;
  if ((err == EINTR && s->timeout != 0) ||
      (err == EINPROGRESS && s->timeout > 0)) {
    socklen_t n = sizeof err;
    int rc = poll_fd(s->fd, POLLOUT, s->timeout);
    if (rc == 0) eddy__error(L, "TimeoutError", "timed out");
    if (rc < 0) return errno;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &n) != 0) return errno;
  }
  return err;
}

static int sock_connect(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  int err = do_connect(L, s, 2);
  if (err != 0) return raise_oserror(L, err);
  return 0;
}

/* sock:connect_ex(addr) -> 0 or errno */
static int sock_connect_ex(lua_State *L) {
  /* not checksocket: a closed socket's connect(-1) gives EBADF to return,
  ** as Python's (it returns "errors returned by the C-level connect()") */
  eddy_Socket *s = checkobject(L, 1);
  lua_pushinteger(L, do_connect(L, s, 2));
  return 1;
}

/* sock:accept() -> conn, address (conn is blocking, as in Python) */
static int sock_accept(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  int fd;
  for (;;) {
    len = sizeof ss;
    fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
    if (fd >= 0) break;
    if (!retry(L, s, POLLIN)) return raise_errno(L);
  }
  eddy__socket_push(L, fd, s->family, s->type, 1);
  ((eddy_Socket *)lua_touserdata(L, -1))->proto = s->proto;
  if (len == 0) ss.ss_family = (sa_family_t)s->family;
  eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

static size_t checksize(lua_State *L, int i, const char *what) {
  lua_Integer n = luaL_checkinteger(L, i);
  if (n < 0) eddy__error(L, "ValueError", "negative buffersize in %s", what);
  return (size_t)n;
}

size_t eddy__recv_size(const eddy_Socket *s, size_t n, int flags) {
  if (s->type == SOCK_STREAM && !(flags & MSG_WAITALL) && n > EDDY_RECV_MAX)
    return EDDY_RECV_MAX;  /* a short read, as any stream recv may give */
  return n;
}

/* Receive up to n bytes into a Lua buffer; pushes the string.  With 'sa'
** the sender's address is stored there.  Returns the byte count. */
static ssize_t recv_string(lua_State *L, eddy_Socket *s, size_t n, int flags,
                           struct sockaddr_storage *sa, socklen_t *salen) {
  luaL_Buffer b;
  char *p;
  ssize_t r;
  n = eddy__recv_size(s, n, flags);
  p = luaL_buffinitsize(L, &b, n);
  for (;;) {
    if (sa != NULL) *salen = sizeof *sa;
    r = recvfrom(s->fd, p, n, flags, (struct sockaddr *)sa,
                 sa != NULL ? salen : NULL);
    if (r >= 0) break;
    if (!retry(L, s, POLLIN)) raise_errno(L);
  }
  luaL_pushresultsize(&b, (size_t)r);
  return r;
}

/* sock:recv(n [, flags]) -> string; recv(0) is "" at once, as Python's
** (the kernel would wait, or say EAGAIN, for a zero-byte read). */
static int sock_recv(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  size_t n = checksize(L, 2, "recv");
  int flags = optint(L, 3, 0, "flags");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  s = eddy__checksocket(L, 1);
  recv_string(L, s, n, flags, NULL, NULL);
  return 1;
}

/* sock:recvfrom(n [, flags]) -> string, address */
static int sock_recvfrom(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  size_t n = checksize(L, 2, "recvfrom");
  struct sockaddr_storage ss;
  socklen_t len = 0;
  recv_string(L, s, n, optint(L, 3, 0, "flags"), &ss, &len);
  if (len == 0) lua_pushnil(L);  /* connected sockets may give none */
  else eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

/* Send from data once (retrying as retry() says); returns bytes sent. */
static size_t send_once(lua_State *L, eddy_Socket *s, const char *data,
                        size_t len, int flags,
                        const struct sockaddr_storage *sa, socklen_t salen) {
  ssize_t r;
  for (;;) {
    r = sendto(s->fd, data, len, flags | MSG_NOSIGNAL,
               (const struct sockaddr *)sa, sa != NULL ? salen : 0);
    if (r >= 0) return (size_t)r;
    if (!retry(L, s, POLLOUT)) raise_errno(L);
  }
}

/* sock:send(data [, flags]) -> n */
static int sock_send(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int flags = optint(L, 3, 0, "flags");
  lua_pushinteger(L, (lua_Integer)send_once(L, s, data, len, flags, NULL, 0));
  return 1;
}

/* sock:sendall(data [, flags]) */
static int sock_sendall(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  size_t len, off = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  int flags = optint(L, 3, 0, "flags");
  do {
    off += send_once(L, s, data + off, len - off, flags, NULL, 0);
  } while (off < len);
  return 0;
}

/* sock:sendto(data, [flags,] address) -> n */
static int sock_sendto(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int flags = 0, addr = 3;
  struct sockaddr_storage ss;
  socklen_t salen;
  if (lua_gettop(L) >= 4) {
    flags = checkint(L, 3, "flags");
    addr = 4;
  }
  checkaddr(L, s, addr, &ss, &salen);
  lua_pushinteger(L, (lua_Integer)send_once(L, s, data, len, flags, &ss, salen));
  return 1;
}

static int sock_shutdown(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  int how = checkint(L, 2, "how");
  if (shutdown(s->fd, how) != 0) return raise_errno(L);
  return 0;
}

static int name_of(lua_State *L, int peer) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc;
  memset(&ss, 0, sizeof ss);
  rc = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
            : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (rc != 0) return raise_errno(L);
  if (len == 0) ss.ss_family = (sa_family_t)s->family;
  eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}

static int sock_getsockname(lua_State *L) { return name_of(L, 0); }
static int sock_getpeername(lua_State *L) { return name_of(L, 1); }

/* sock:setsockopt(level, opt, value): value an integer, a boolean or a
** string of raw bytes. */
static int sock_setsockopt(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  int level = checkint(L, 2, "level"), opt = checkint(L, 3, "option");
  int rc, ival;
  switch (lua_type(L, 4)) {
    case LUA_TBOOLEAN:
      ival = lua_toboolean(L, 4);
      rc = setsockopt(s->fd, level, opt, &ival, sizeof ival);
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *v = lua_tolstring(L, 4, &len);
      rc = setsockopt(s->fd, level, opt, v, (socklen_t)len);
      break;
    }
    default:
      ival = checkint(L, 4, "option value");
      rc = setsockopt(s->fd, level, opt, &ival, sizeof ival);
  }
  if (rc != 0) return raise_errno(L);
  return 0;
}

/* sock:getsockopt(level, opt [, buflen]) -> integer, or a string of at
** most buflen bytes */
static int sock_getsockopt(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1);
  int level = checkint(L, 2, "level"), opt = checkint(L, 3, "option");
  if (lua_isnoneornil(L, 4)) {
    int v = 0;
    socklen_t n = sizeof v;
    if (getsockopt(s->fd, level, opt, &v, &n) != 0) return raise_errno(L);
    lua_pushinteger(L, v);
  } else {
    lua_Integer buflen = luaL_checkinteger(L, 4);
    char buf[1024];
    socklen_t n;
    if (buflen <= 0 || buflen > (lua_Integer)sizeof buf)
      return eddy__error(L, "OSError", "getsockopt buflen out of range");
    n = (socklen_t)buflen;
    if (getsockopt(s->fd, level, opt, buf, &n) != 0) return raise_errno(L);
    lua_pushlstring(L, buf, n);
  }
  return 1;
}

/* sock:dup() -> a new owned socket on a duplicate descriptor, with the
** original's proto and timeout, as Python's (the duplicate shares its
** O_NONBLOCK, which cannot tell a timeout from non-blocking). */
static int sock_dup(lua_State *L) {
  eddy_Socket *s = eddy__checksocket(L, 1), *d;
  int fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return raise_errno(L);
  eddy__socket_push(L, fd, s->family, s->type, 1);
  d = eddy__tosocket(L, -1);
  d->proto = s->proto;
  d->timeout = s->timeout;
  return 1;
}

static int sock_tostring(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  if (s->fd < 0)
    lua_pushfstring(L, "<eddy.socket [closed] family=%d, type=%d, proto=%d>",
                    s->family, s->type, s->proto);
  else
    lua_pushfstring(L, "<eddy.socket fd=%d, family=%d, type=%d, proto=%d%s>",
                    s->fd, s->family, s->type, s->proto,
                    s->owned ? "" : ", transport view");
  return 1;
}

/* Read-only fields family, type, proto; then the methods. */
static int sock_index(lua_State *L) {
  eddy_Socket *s = checkobject(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k != NULL) {
    if (strcmp(k, "family") == 0) { lua_pushinteger(L, s->family); return 1; }
    if (strcmp(k, "type") == 0) { lua_pushinteger(L, s->type); return 1; }
    if (strcmp(k, "proto") == 0) { lua_pushinteger(L, s->proto); return 1; }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* }====================================================== */

/* {====================================================== Module */

/* Its 'proto' field is the one asked for, as Python's (the kernel's
** SO_PROTOCOL names the one it chose: 6 for TCP when 0 was asked). */
static void push_made(lua_State *L, int fd, int family, int type, int proto) {
  eddy__socket_push(L, fd, family, type, 1);
  ((eddy_Socket *)lua_touserdata(L, -1))->proto = proto;
}

static int new_socket(lua_State *L, int family, int type, int proto) {
  int fd = socket(family, type | SOCK_CLOEXEC, proto);
  if (fd < 0) return raise_errno(L);
  push_made(L, fd, family, type, proto);
  return 1;
}

/* socket.socket(family, type, proto [, fileno]) */
static int m_socket(lua_State *L) {
  int family = optint(L, 1, AF_INET, "family");
  int type = optint(L, 2, SOCK_STREAM, "type");
  int proto = optint(L, 3, 0, "proto");
  if (!lua_isnoneornil(L, 4)) {  /* wrap an existing descriptor */
    int fd = checkint(L, 4, "fileno"), real_type;
    if (fd < 0)
      return eddy__error(L, "ValueError", "negative file descriptor");
    socklen_t n = sizeof family;
    if (lua_isnoneornil(L, 1) &&
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &n) != 0)
      return raise_errno(L);
    /* Always asked: only a socket may be wrapped, never a descriptor of
    ** libuv's own (its epoll or wake-up descriptors), which closing
    ** would break. */
    n = sizeof real_type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &real_type, &n) != 0)
      return raise_errno(L);
    if (lua_isnoneornil(L, 2)) type = real_type;
    /* Nor a transport's or a server's: closing the new socket would
    ** close it under libuv (get_extra_info("socket") gives a view). */
    eddy__check_fd_unused(L, fd);
    eddy__socket_push(L, fd, family, type, 0);  /* (still the caller's) */
    ((eddy_Socket *)lua_touserdata(L, -1))->owned = 1;  /* made: ours */
    return 1;
  }
  return new_socket(L, family, type, proto);
}

/* socket.socketpair(family, type, proto) -> a, b */
static int m_socketpair(lua_State *L) {
  int family = optint(L, 1, AF_UNIX, "family");
  int type = optint(L, 2, SOCK_STREAM, "type");
  int proto = optint(L, 3, 0, "proto");
  int sv[2];
  if (socketpair(family, type | SOCK_CLOEXEC, proto, sv) != 0)
    return raise_errno(L);
  push_made(L, sv[0], family, type, proto);
  push_made(L, sv[1], family, type, proto);
  return 2;
}

static const luaL_Reg socket_methods[] = {
  {"fileno", sock_fileno},
  {"close", sock_close},
  {"detach", sock_detach},
  {"dup", sock_dup},
  {"bind", sock_bind},
  {"listen", sock_listen},
  {"connect", sock_connect},
  {"connect_ex", sock_connect_ex},
  {"accept", sock_accept},
  {"recv", sock_recv},
  {"recvfrom", sock_recvfrom},
  {"send", sock_send},
  {"sendall", sock_sendall},
  {"sendto", sock_sendto},
  {"shutdown", sock_shutdown},
  {"setblocking", sock_setblocking},
  {"getblocking", sock_getblocking},
  {"settimeout", sock_settimeout},
  {"gettimeout", sock_gettimeout},
  {"getsockname", sock_getsockname},
  {"getpeername", sock_getpeername},
  {"setsockopt", sock_setsockopt},
  {"getsockopt", sock_getsockopt},
  {NULL, NULL}
};

/* socket.inet_pton(family, host) -> packed string (OSError if invalid) */
static int m_inet_pton(lua_State *L) {
  int family = checkint(L, 1, "family");
  const char *host;
  unsigned char buf[sizeof(struct in6_addr)];
  int rc;
  luaL_checkstring(L, 2);
  host = eddy__tocstring(L, 2, "address");  /* "1.2.3.4\0x" is none */
  if (family != AF_INET && family != AF_INET6)
    return eddy__uverror(L, UV_EAFNOSUPPORT, NULL);
  rc = inet_pton(family, host, buf);
  if (rc != 1)
    return eddy__error(L, "OSError", "illegal IP address string passed "
                       "to inet_pton");
  lua_pushlstring(L, (const char *)buf, family == AF_INET ? 4 : 16);
  return 1;
}

/* socket.inet_ntop(family, packed) -> host */
static int m_inet_ntop(lua_State *L) {
  int family = checkint(L, 1, "family");
  size_t len;
  const char *packed = luaL_checklstring(L, 2, &len);
  char host[INET6_ADDRSTRLEN];
  if (family != AF_INET && family != AF_INET6)
    return eddy__uverror(L, UV_EAFNOSUPPORT, NULL);
  if (len != (family == AF_INET ? 4u : 16u))
    return eddy__error(L, "ValueError", "invalid length of packed IP "
                       "address string");
  inet_ntop(family, packed, host, sizeof host);
  lua_pushstring(L, host);
  return 1;
}

static const luaL_Reg socket_funcs[] = {
  {"socket", m_socket},
  {"socketpair", m_socketpair},
  {"inet_pton", m_inet_pton},
  {"inet_ntop", m_inet_ntop},
  {NULL, NULL}
};

#define C(name) {#name, name}
static const struct { const char *name; lua_Integer value; } constants[] = {
  C(AF_INET), C(AF_INET6), C(AF_UNIX), C(AF_UNSPEC),
  C(SOCK_STREAM), C(SOCK_DGRAM), C(SOCK_RAW), C(SOCK_SEQPACKET),
  C(SOCK_NONBLOCK), C(SOCK_CLOEXEC),
  C(SOL_SOCKET), C(SO_REUSEADDR), C(SO_REUSEPORT), C(SO_BROADCAST),
  C(SO_KEEPALIVE), C(SO_ERROR), C(SO_RCVBUF), C(SO_SNDBUF), C(SO_TYPE),
  C(SO_LINGER), C(SO_RCVLOWAT), C(SO_SNDLOWAT), C(SO_DOMAIN),
  C(SO_PROTOCOL), C(SO_ACCEPTCONN), C(SO_RCVTIMEO), C(SO_SNDTIMEO),
  C(SO_OOBINLINE), C(SO_DONTROUTE), C(SO_BINDTODEVICE), C(SO_PEERCRED),
  C(SO_PASSCRED),
  C(IPPROTO_IP), C(IPPROTO_TCP), C(IPPROTO_UDP), C(IPPROTO_IPV6),
  C(IPPROTO_ICMP), C(IPPROTO_ICMPV6), C(IPPROTO_RAW),
  C(IP_TTL), C(IP_TOS), C(IP_MULTICAST_TTL), C(IP_MULTICAST_LOOP),
  C(IP_MULTICAST_IF), C(IP_ADD_MEMBERSHIP), C(IP_DROP_MEMBERSHIP),
  C(IPV6_V6ONLY), C(IPV6_UNICAST_HOPS), C(IPV6_MULTICAST_HOPS),
  C(IPV6_MULTICAST_IF), C(IPV6_MULTICAST_LOOP), C(IPV6_JOIN_GROUP),
  C(IPV6_LEAVE_GROUP),
  C(TCP_NODELAY), C(TCP_KEEPIDLE), C(TCP_KEEPINTVL), C(TCP_KEEPCNT),
  C(TCP_MAXSEG), C(TCP_CORK), C(TCP_QUICKACK), C(TCP_USER_TIMEOUT),
  C(TCP_FASTOPEN),
  C(INADDR_ANY), C(INADDR_BROADCAST), C(INADDR_LOOPBACK), C(INADDR_NONE),
  C(INADDR_ALLHOSTS_GROUP),
  C(AI_PASSIVE), C(AI_CANONNAME), C(AI_NUMERICHOST), C(AI_NUMERICSERV),
  C(AI_ADDRCONFIG), C(AI_V4MAPPED), C(AI_ALL),
  C(NI_NUMERICHOST), C(NI_NUMERICSERV), C(NI_NOFQDN), C(NI_NAMEREQD),
  C(NI_DGRAM), C(NI_MAXHOST), C(NI_MAXSERV),
  C(EAI_ADDRFAMILY), C(EAI_AGAIN), C(EAI_BADFLAGS), C(EAI_FAIL),
  C(EAI_FAMILY), C(EAI_MEMORY), C(EAI_NODATA), C(EAI_NONAME),
  C(EAI_OVERFLOW), C(EAI_SERVICE), C(EAI_SOCKTYPE), C(EAI_SYSTEM),
  C(SHUT_RD), C(SHUT_WR), C(SHUT_RDWR),
  C(MSG_PEEK), C(MSG_DONTWAIT), C(MSG_WAITALL), C(MSG_OOB), C(MSG_TRUNC),
  C(MSG_CTRUNC), C(MSG_DONTROUTE), C(MSG_EOR), C(MSG_NOSIGNAL), C(SOMAXCONN),
  {NULL, 0}
};
#undef C

/* Create the socket metatable and push the eddy.socket module table. */
void eddy__open_socket(lua_State *L) {
  int i;
  if (eddy__newmarkedmetatable(L, EDDY_SOCKET)) {
    luaL_newlib(L, socket_methods);
    lua_pushcclosure(L, sock_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sock_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sock_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, sock_tostring);
    lua_setfield(L, -2, "__tostring");
    eddy__seal_metatable(L, -1);
  }
  lua_pop(L, 1);
  luaL_newlib(L, socket_funcs);
  for (i = 0; constants[i].name != NULL; i++) {
    lua_pushinteger(L, constants[i].value);
    lua_setfield(L, -2, constants[i].name);
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "has_ipv6");
}

/* }====================================================== */
