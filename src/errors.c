/*
** errors.c -- error objects from C: eddy.errors classes (lua/eddy/errors.lua)
** built from messages, libuv codes and errno values; the traceback message
** handler every protected call uses.
*/
#define _GNU_SOURCE /* strerrorname_np */
#include <netdb.h>
#include <stdarg.h>
#include <string.h>

#include "internal.h"

/* Push eddy.errors[cls]. */
static void push_class(lua_State *L, const char *cls) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_errors);
  if (lua_getfield(L, -1, cls) == LUA_TNIL) {
    lua_pop(L, 2);
    luaL_error(L, "eddy: unknown error class '%s'", cls);
  }
  lua_remove(L, -2);
}

void eddy__newerror(lua_State *L, const char *cls, int nargs) {
  push_class(L, cls);
  lua_insert(L, -nargs - 1);
  lua_call(L, nargs, 1);
}

static void push_new(lua_State *L, const char *cls, const char *msg) {
  push_class(L, cls);
  if (msg != NULL) lua_pushstring(L, msg); else lua_pushnil(L);
  lua_call(L, 1, 1);
}

void eddy__pusherror(lua_State *L, const char *cls, const char *fmt, ...) {
  if (fmt == NULL) {
    push_new(L, cls, NULL);
    return;
  }
  {
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
  }
  push_new(L, cls, lua_tostring(L, -1));
  lua_remove(L, -2);
}

int eddy__error(lua_State *L, const char *cls, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  push_new(L, cls, lua_tostring(L, -1));
  return lua_error(L);
}

const char *eddy__tocstring(lua_State *L, int i, const char *what) {
  size_t len;
  const char *str = lua_tolstring(L, i, &len);
  if (strlen(str) != len)
    eddy__error(L, "ValueError", "embedded null byte in %s", what);
  return str;
}

/* The OSError subclass for a libuv error code. */
static const char *class_for(int uverr) {
  switch (uverr) {
    case UV_ECONNREFUSED: return "ConnectionRefusedError";
    case UV_ECONNRESET: return "ConnectionResetError";
    case UV_ECONNABORTED: return "ConnectionAbortedError";
    case UV_EPIPE: case UV_ESHUTDOWN: return "BrokenPipeError";
    case UV_ENOENT: return "FileNotFoundError";
    case UV_EACCES: case UV_EPERM: return "PermissionError";
    case UV_ESRCH: return "ProcessLookupError";
    case UV_ETIMEDOUT: return "TimeoutError";
    default: break;
  }
  if (uverr <= UV_EAI_ADDRFAMILY && uverr >= UV_EAI_SOCKTYPE) return "DNSError";
  if (uverr == UV_EAI_NODATA || uverr == UV_EAI_OVERFLOW ||
      uverr == UV_EAI_PROTOCOL || uverr == UV_EAI_BADHINTS)
    return "DNSError";
  return "OSError";
}

/* The getaddrinfo code (EAI_x, negative on glibc) of a libuv UV_EAI_x:
** Python's socket.gaierror has it as its errno.  0 for other codes. */
static int eai_of(int uverr) {
  switch (uverr) {
    case UV_EAI_ADDRFAMILY: return EAI_ADDRFAMILY;
    case UV_EAI_AGAIN: return EAI_AGAIN;
    case UV_EAI_BADFLAGS: return EAI_BADFLAGS;
    case UV_EAI_CANCELED: return EAI_CANCELED;
    case UV_EAI_FAIL: return EAI_FAIL;
    case UV_EAI_FAMILY: return EAI_FAMILY;
    case UV_EAI_MEMORY: return EAI_MEMORY;
    case UV_EAI_NODATA: return EAI_NODATA;
    case UV_EAI_NONAME: return EAI_NONAME;
    case UV_EAI_OVERFLOW: return EAI_OVERFLOW;
    case UV_EAI_SERVICE: return EAI_SERVICE;
    case UV_EAI_SOCKTYPE: return EAI_SOCKTYPE;
    default: return 0;
  }
}

/* Whether libuv has a name for the code: for others uv_err_name and
** uv_strerror say "Unknown system error N" (and uv_err_name leaks it). */
static int uv_knows(int uverr) {
  char name[64];
  uv_err_name_r(uverr, name, sizeof name);
  return strncmp(name, "Unknown system error", 20) != 0;
}

void eddy__pushuverror(lua_State *L, int uverr, const char *what) {
  const char *cls = class_for(uverr);
  const char *code, *strerror_text;
  int eai = eai_of(uverr);
  if (uv_knows(uverr)) {
    code = uv_err_name(uverr);
    strerror_text = uv_strerror(uverr);
  } else {  /* an errno libuv does not list: the C library's names */
    code = strerrorname_np(-uverr);
    strerror_text = strerror(-uverr);
  }
  push_class(L, cls);
  if (what != NULL) lua_pushfstring(L, "%s: %s", what, strerror_text);
  else lua_pushstring(L, strerror_text);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, eai != 0 ? eai : -uverr);  /* libuv codes are -errno */
  lua_setfield(L, -2, "errno");
  if (code != NULL) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  lua_pushstring(L, strerror_text);
  lua_setfield(L, -2, "strerror");
  lua_call(L, 2, 1);
}

int eddy__uverror(lua_State *L, int uverr, const char *what) {
  eddy__pushuverror(L, uverr, what);
  return lua_error(L);
}

int eddy__iserror(lua_State *L, int i, const char *cls) {
  int r;
  i = lua_absindex(L, i);
  if (!lua_istable(L, i)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_errors);
  lua_getfield(L, -1, "is");
  lua_pushvalue(L, i);
  lua_getfield(L, -3, cls);
  lua_call(L, 2, 1);
  r = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return r;
}

void eddy__instantiate_class(lua_State *L, int i) {
  i = lua_absindex(L, i);
  if (!lua_istable(L, i)) return;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &eddy__key_errors);
  lua_getfield(L, -1, "isclass");
  lua_pushvalue(L, i);
  lua_call(L, 1, 1);
  if (lua_toboolean(L, -1)) {
    lua_pushvalue(L, i);
    lua_call(L, 0, 1);  /* Class() */
    lua_replace(L, i);
  }
  lua_pop(L, 2);
}

void eddy__keep_traceback(lua_State *L, int i) {
  i = lua_absindex(L, i);
  lua_pushliteral(L, "traceback");
  if (lua_rawget(L, i) == LUA_TNIL) {
    lua_pushliteral(L, "traceback");
    luaL_traceback(L, L, NULL, 1);
    lua_rawset(L, i);
  }
  lua_pop(L, 1);
}

/*
** Message handler: error objects (tables) get a 'traceback' field (kept
** if they have one); anything else becomes its string plus a traceback,
** as lua.c's msghandler does, unless it is a string that has one already
** (rethrown from an inner protected call, whose traceback goes deeper) or
** a task's error re-raised (the traceback where the task raised it).
*/
int eddy__traceback(lua_State *L) {
  eddy__instantiate_class(L, 1);
  if (lua_type(L, 1) == LUA_TTABLE) {
    if (!eddy__iserror(L, 1, "CancelledError")) eddy__keep_traceback(L, 1);
    lua_settop(L, 1);
    return 1;
  }
  {
    const char *msg = lua_tostring(L, 1);
    if (lua_type(L, 1) == LUA_TSTRING && strstr(msg, "\nstack traceback:"))
      return 1;
    /* A task's string error re-raised by result() or await: where it was
    ** raised (eddy__msghandler does the same for the executable). */
    if (lua_type(L, 1) == LUA_TSTRING && eddy__push_raise_site(L))
      return 1;
    if (msg == NULL) {
      if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
        return 1;
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
  }
}

/* Load eddy.errors (embedded) and keep it in the registry for C. */
void eddy__open_errors(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "eddy.errors") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_getfield(L, -1, "eddy.errors");
    lua_remove(L, -2);
    lua_pushliteral(L, "eddy.errors");
    lua_call(L, 1, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "eddy.errors");
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &eddy__key_errors);
  lua_pop(L, 1);
}
