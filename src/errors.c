/*
** errors.c -- error objects from C: eddy.errors classes (lua/eddy/errors.lua)
** built from messages, libuv codes and errno values; the traceback message
** handler every protected call uses.
*/
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

/* The OSError subclass for a libuv error code. */
static const char *class_for(int uverr) {
  switch (uverr) {
    case UV_ECONNREFUSED: return "ConnectionRefusedError";
    case UV_ECONNRESET: return "ConnectionResetError";
    case UV_ECONNABORTED: return "ConnectionAbortedError";
    case UV_EPIPE: case UV_ESHUTDOWN: return "BrokenPipeError";
    case UV_ENOENT: return "FileNotFoundError";
    case UV_EACCES: case UV_EPERM: return "PermissionError";
    case UV_ETIMEDOUT: return "TimeoutError";
    default: break;
  }
  if (uverr <= UV_EAI_ADDRFAMILY && uverr >= UV_EAI_SOCKTYPE) return "DNSError";
  if (uverr == UV_EAI_NODATA || uverr == UV_EAI_OVERFLOW ||
      uverr == UV_EAI_PROTOCOL || uverr == UV_EAI_BADHINTS)
    return "DNSError";
  return "OSError";
}

void eddy__pushuverror(lua_State *L, int uverr, const char *what) {
  const char *cls = class_for(uverr);
  const char *code = uv_err_name(uverr);
  const char *strerror = uv_strerror(uverr);
  push_class(L, cls);
  if (what != NULL) lua_pushfstring(L, "%s: %s", what, strerror);
  else lua_pushstring(L, strerror);
  lua_createtable(L, 0, 3);
  if (strncmp(code, "EAI_", 4) != 0) {
    lua_pushinteger(L, -uverr);  /* libuv codes are -errno on Unix */
    lua_setfield(L, -2, "errno");
  }
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, strerror);
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

/*
** Message handler: error objects (tables) get a 'traceback' field (kept
** if they have one); anything else becomes its string plus a traceback,
** as lua.c's msghandler does.
*/
int eddy__traceback(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE) {
    if (lua_getfield(L, 1, "traceback") == LUA_TNIL &&
        !eddy__iserror(L, 1, "CancelledError")) {
      luaL_traceback(L, L, NULL, 1);
      lua_setfield(L, 1, "traceback");
    }
    lua_settop(L, 1);
    return 1;
  }
  {
    const char *msg = lua_tostring(L, 1);
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
