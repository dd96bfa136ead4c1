/*
** dns.c -- loop:getaddrinfo and loop:getnameinfo on libuv's resolver
** (both suspending), with results shaped as Python's: entries
** {family=, type=, proto=, canonname=, sockaddr=} whose sockaddr is
** {host, port} (IPv4) or {host, port, flowinfo, scope_id} (IPv6).
*/
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* {====================================================== Addresses */

/* The family of a numeric IP address string (AF_INET, AF_INET6 with an
** optional %scope), or AF_UNSPEC. */
static int ip_family(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  char tmp[INET6_ADDRSTRLEN + 1];
  const char *pct;
  if (inet_pton(AF_INET, host, buf) == 1) return AF_INET;
  pct = strchr(host, '%');
  if (pct != NULL) {
    size_t n = (size_t)(pct - host);
    if (n >= sizeof tmp) return AF_UNSPEC;
    memcpy(tmp, host, n);
    tmp[n] = '\0';
    host = tmp;
  }
  if (inet_pton(AF_INET6, host, buf) == 1) return AF_INET6;
  return AF_UNSPEC;
}

/* C.ip_family(host) -> AF_INET, AF_INET6, or nil for a name. */
static int c_ip_family(lua_State *L) {
  int family = ip_family(luaL_checkstring(L, 1));
  if (family == AF_UNSPEC) lua_pushnil(L);
  else lua_pushinteger(L, family);
  return 1;
}

/* }====================================================== */

/* {====================================================== Requests */

/* A resolver request: completes the future in 'ref'. */
typedef struct Request {
  union {
    uv_getaddrinfo_t gai;
    uv_getnameinfo_t gni;
  } u;
  eddy_Loop *loop;
  int ref;  /* registry reference of the future */
} Request;

/* Push the request's future and forget it; returns its index, or 0 when
** nobody waits for it any more (cancelled). */
static int pop_future(lua_State *L, Request *r) {
  eddy_Future *f;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
  f = (eddy_Future *)lua_touserdata(L, -1);
  if (f->state != EDDY_FUT_PENDING || r->loop->state == EDDY_LOOP_CLOSED) {
    lua_pop(L, 1);
    return 0;
  }
  return lua_gettop(L);
}

/* Push {family=, type=, proto=, canonname=, sockaddr=} for each entry. */
static void push_addrinfo(lua_State *L, const struct addrinfo *ai) {
  lua_Integer n = 0;
  lua_newtable(L);
  for (; ai != NULL; ai = ai->ai_next) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, ai->ai_family);
    lua_setfield(L, -2, "family");
    lua_pushinteger(L, ai->ai_socktype);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, ai->ai_protocol);
    lua_setfield(L, -2, "proto");
    lua_pushstring(L, ai->ai_canonname != NULL ? ai->ai_canonname : "");
    lua_setfield(L, -2, "canonname");
    eddy__socket_pushaddr(L, ai->ai_addr, ai->ai_addrlen);
    lua_setfield(L, -2, "sockaddr");
    lua_rawseti(L, -2, ++n);
  }
}

/* (future, status, what, res, request): the outcome of the request on
** its future. */
static int settle_protected(lua_State *L) {
  int status = (int)lua_tointeger(L, 2);
  Request *r = (Request *)lua_touserdata(L, 5);
  if (status < 0) {
    eddy__pushuverror(L, status, (const char *)lua_touserdata(L, 3));
    eddy__future_set_exception_unless_done(L, 1);
  } else if (r->u.gai.type == UV_GETADDRINFO) {
    push_addrinfo(L, (const struct addrinfo *)lua_touserdata(L, 4));
    eddy__future_set_result_unless_done(L, 1, 1);
  } else {
    lua_pushstring(L, r->u.gni.host);
    lua_pushstring(L, r->u.gni.service);
    eddy__future_set_result_unless_done(L, 1, 2);
  }
  return 0;
}

/* The request r finished with 'status' (getaddrinfo's list res, or NULL
** for getnameinfo): settle its future, if someone still waits, in a
** protected call, since it allocates inside a libuv callback.  Should that
** fail (no memory for the results), the future fails with the error. */
static void settle(Request *r, int status, const char *what,
                   struct addrinfo *res) {
  lua_State *L = r->loop->rt->L;
  int top = lua_gettop(L);
  int f = pop_future(L, r);
  if (f != 0) {
    lua_pushcfunction(L, settle_protected);
    lua_pushvalue(L, f);
    lua_pushinteger(L, status);
    lua_pushlightuserdata(L, (void *)what);
    lua_pushlightuserdata(L, res);
    lua_pushlightuserdata(L, r);
    if (lua_pcall(L, 5, 0, 0) != LUA_OK)
      eddy__future_set_exception_unless_done(L, f);
  }
  lua_settop(L, top);
}

/* A new request on 'loop', with the future its callback settles pushed
** and anchored: both made before the request starts, since nothing may
** raise once it has (its callback would find no future). */
static Request *request_new(lua_State *L, eddy_Loop *loop) {
  Request *r;
  int ref;
  eddy__future_new(L, loop);
  lua_pushvalue(L, -1);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if ((r = (Request *)malloc(sizeof *r)) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "not enough memory");
  }
  r->loop = loop;
  r->ref = ref;
  return r;
}

/* The request r started (err 0): wait on its future, at the top; or it
** did not: drop it and raise. */
static int await_request(lua_State *L, Request *r, int err,
                         const char *what) {
  if (err < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
    free(r);
    return eddy__uverror(L, err, what);
  }
  return eddy__await(L, lua_gettop(L), what);
}

static void getaddrinfo_cb(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res) {
  Request *r = (Request *)req;
  settle(r, status, "getaddrinfo", res);
  uv_freeaddrinfo(res);
  free(r);
}

/* getaddrinfo's options, as Python's keyword-only parameters. */
static const char *const gai_options[] = {"family", "type", "proto", "flags",
                                          NULL};

/*
** Check the options table at i: nil, or a plain table holding only those
** names, each a C int.  A misspelt option is an argument error (Python's
** TypeError for an unexpected keyword), never silently ignored; a value
** no int holds is one too (Python's OverflowError), never truncated into
** another constant.
*/
static void check_options(lua_State *L, int i) {
  int k;
  if (lua_isnoneornil(L, i)) return;
  eddy__checkoptions(L, i, gai_options);
  for (k = 0; gai_options[k] != NULL; k++) {
    const char *key = gai_options[k];
    if (lua_getfield(L, i, key) != LUA_TNIL && !lua_isinteger(L, -1))
      luaL_argerror(L, i, lua_pushfstring(L, "option '%s' must be an "
                                          "integer, got %s", key,
                                          luaL_typename(L, -1)));
    if (lua_tointeger(L, -1) < INT_MIN || lua_tointeger(L, -1) > INT_MAX)
      luaL_argerror(L, i, lua_pushfstring(L, "option '%s' out of range",
                                          key));
    lua_pop(L, 1);  /* (nil, when absent: 0 is in range) */
  }
}

/* Integer option 'name' of the checked options table at i (0 if absent). */
static int int_option(lua_State *L, int i, const char *name) {
  int v = 0;
  if (lua_istable(L, i)) {
    if (lua_getfield(L, i, name) != LUA_TNIL) v = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  return v;
}

/* loop:getaddrinfo(host, port, {family, type, proto, flags}) -> array */
static int l_getaddrinfo(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  const char *host = NULL, *service = NULL;
  char portbuf[32];
  struct addrinfo hints;
  Request *r;
  int err, tp;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checkstring(L, 2);
    host = eddy__tocstring(L, 2, "host");
  }
  tp = lua_type(L, 3);
  if (tp == LUA_TNUMBER) {
    lua_Integer port = luaL_checkinteger(L, 3);
    snprintf(portbuf, sizeof portbuf, "%lld", (long long)port);
    service = portbuf;
  } else if (tp == LUA_TSTRING) {
    service = eddy__tocstring(L, 3, "port");
  } else if (tp != LUA_TNIL && tp != LUA_TNONE) {
    return luaL_typeerror(L, 3, "integer, string or nil");
  }
  check_options(L, 4);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = int_option(L, 4, "family");
  hints.ai_socktype = int_option(L, 4, "type");
  hints.ai_protocol = int_option(L, 4, "proto");
  hints.ai_flags = int_option(L, 4, "flags");
  eddy__can_suspend(L, "getaddrinfo");
  /* Python's socket.getaddrinfo hands "" to the C function as it is, and
  ** no host with no port fails there too; libuv would say EINVAL. */
  if ((host != NULL && *host == '\0') || (host == NULL && service == NULL))
    return eddy__uverror(L, UV_EAI_NONAME, "getaddrinfo");
  r = request_new(L, loop);
  err = uv_getaddrinfo(loop->uv, &r->u.gai, getaddrinfo_cb, host, service,
                       &hints);
  return await_request(L, r, err, "getaddrinfo");
}

static void getnameinfo_cb(uv_getnameinfo_t *req, int status,
                           const char *host, const char *service) {
  Request *r = (Request *)req;
  (void)host;  /* (also in req, where settle_protected reads them) */
  (void)service;
  settle(r, status, "getnameinfo", NULL);
  free(r);
}

/* The family of a numeric host as Python's socket.getnameinfo finds it,
** with getaddrinfo(AI_NUMERICHOST): that takes inet_aton's forms ("127.1")
** and IPv6 scopes, and never a name (AF_UNSPEC). */
static int numeric_family(const char *host) {
  struct addrinfo hints, *res;
  int family;
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(host, NULL, &hints, &res) != 0) return AF_UNSPEC;
  family = res->ai_family;
  freeaddrinfo(res);
  return family;
}

/* loop:getnameinfo(sockaddr, flags) -> host, service */
static int l_getnameinfo(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  int flags = (int)luaL_optinteger(L, 3, 0);
  Request *r;
  int err, family;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_rawgeti(L, 2, 1) != LUA_TSTRING)
    return luaL_argerror(L, 2, "{host, port} expected (host is not a string)");
  family = numeric_family(lua_tostring(L, -1));
  lua_pop(L, 1);
  if (family == AF_UNSPEC)
    return eddy__uverror(L, UV_EAI_NONAME, "getnameinfo");
  /* as Python's: a well-formed sockaddr of four fields is an OSError for
  ** IPv4; any other wrong size is an argument error (eddy__socket_addr) */
  if (family == AF_INET && (lua_rawlen(L, 2) == 3 || lua_rawlen(L, 2) == 4))
    return eddy__error(L, "OSError", "IPv4 sockaddr must be 2 tuple");
  eddy__socket_addr(L, 2, family, &ss, &len, 0);
  eddy__can_suspend(L, "getnameinfo");
  r = request_new(L, loop);
  err = uv_getnameinfo(loop->uv, &r->u.gni, getnameinfo_cb,
                       (struct sockaddr *)&ss, flags);
  return await_request(L, r, err, "getnameinfo");
}

/* }====================================================== */

static const luaL_Reg dns_methods[] = {
  {"getaddrinfo", l_getaddrinfo},
  {"getnameinfo", l_getnameinfo},
  {NULL, NULL}
};

/* The loop methods; the core table at the top gets ip_family. */
void eddy__open_dns(lua_State *L) {
  eddy__loop_methods(L, dns_methods);
  lua_pushcfunction(L, c_ip_family);
  lua_setfield(L, -2, "ip_family");
}
