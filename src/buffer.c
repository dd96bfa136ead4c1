/*
** buffer.c -- eddy.Buffer(size): a fixed-size mutable byte buffer, the
** target of sock_recv_into, sock_recvfrom_into and BufferedProtocol's
** get_buffer (API.md §10).  Its bytes live inside the userdata, so a C
** reader writes into it with no copy; Lua reads them back with
** buf:tostring(i, j).
*/
#include <string.h>

#include "internal.h"

typedef struct Buffer {
  size_t size;
  char data[1];  /* 'size' bytes (at least one, so the struct is valid) */
} Buffer;

char *eddy__tobuffer(lua_State *L, int i, size_t *size) {
  Buffer *b = (Buffer *)luaL_testudata(L, i, EDDY_BUFFER);
  if (b == NULL) return NULL;
  *size = b->size;
  return b->data;
}

char *eddy__checkbuffer(lua_State *L, int i, size_t *size) {
  Buffer *b = (Buffer *)luaL_checkudata(L, i, EDDY_BUFFER);
  *size = b->size;
  return b->data;
}

/* eddy.Buffer(size) -> a buffer of 'size' zero bytes. */
static int buffer_new(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  Buffer *b;
  luaL_argcheck(L, n >= 0, 1, "size must not be negative");
  luaL_argcheck(L, (lua_Unsigned)n <= (lua_Unsigned)(SIZE_MAX / 2), 1,
                "size too large");
  b = (Buffer *)lua_newuserdatauv(L, offsetof(Buffer, data) + (size_t)n + 1, 0);
  b->size = (size_t)n;
  memset(b->data, 0, (size_t)n + 1);
  luaL_setmetatable(L, EDDY_BUFFER);
  return 1;
}

static int buffer_len(lua_State *L) {
  size_t size;
  eddy__checkbuffer(L, 1, &size);
  lua_pushinteger(L, (lua_Integer)size);
  return 1;
}

/* buf:tostring(i, j) -> the bytes i..j (as string.sub: defaults 1 and
** -1, negative indices count from the end). */
static int buffer_tostring(lua_State *L) {
  size_t size;
  const char *data = eddy__checkbuffer(L, 1, &size);
  lua_Integer i = luaL_optinteger(L, 2, 1);
  lua_Integer j = luaL_optinteger(L, 3, -1);
  lua_Integer n = (lua_Integer)size;
  if (i < 0) i = (i < -n) ? 1 : n + i + 1;
  else if (i == 0) i = 1;
  if (j < 0) j = n + j + 1;
  else if (j > n) j = n;
  if (i > j) lua_pushliteral(L, "");
  else lua_pushlstring(L, data + i - 1, (size_t)(j - i + 1));
  return 1;
}

static int buffer_repr(lua_State *L) {
  size_t size;
  const char *data = eddy__checkbuffer(L, 1, &size);
  lua_pushfstring(L, "eddy.Buffer(%I) %p", (lua_Integer)size, (void *)data);
  return 1;
}

static const luaL_Reg buffer_methods[] = {
  {"tostring", buffer_tostring},
  {NULL, NULL}
};

/* Create the metatable; the core table at the top gets Buffer. */
void eddy__open_buffer(lua_State *L) {
  lua_pushcfunction(L, buffer_new);
  lua_setfield(L, -2, "Buffer");
  if (luaL_newmetatable(L, EDDY_BUFFER)) {
    luaL_newlib(L, buffer_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, buffer_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, buffer_repr);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}
