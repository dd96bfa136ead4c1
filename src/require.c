/*
** require.c -- a `require` whose module may suspend (API.md §6).
**
** Lua's own require runs the module's main chunk with lua_call, which a
** coroutine cannot yield across: a module calling eddy.sleep at load time,
** required from a task, failed with "cannot suspend here".  This one does
** what package.loadlib's ll_require does, step for step, but calls the
** loader with lua_callk, so the chunk may suspend the task requiring it.
*/
#include <lualib.h>

#include "internal.h"

/* Push the loader for 'name' and its extra data, as ll_require's
** findloader; raises "module 'name' not found" with every searcher's
** message.  upvalue 1 is the package table. */
static void find_loader(lua_State *L, const char *name) {
  int i, searchers;
  luaL_Buffer msg;
  if (lua_getfield(L, lua_upvalueindex(1), "searchers") != LUA_TTABLE)
    luaL_error(L, "'package.searchers' must be a table");
  searchers = lua_gettop(L);
  luaL_buffinit(L, &msg);
  for (i = 1;; i++) {
    luaL_addstring(&msg, "\n\t");
    if (lua_rawgeti(L, searchers, i) == LUA_TNIL) {
      lua_pop(L, 1);
      luaL_buffsub(&msg, 2);
      luaL_pushresult(&msg);
      luaL_error(L, "module '%s' not found:%s", name, lua_tostring(L, -1));
    }
    lua_pushstring(L, name);
    lua_call(L, 1, 2);
    if (lua_isfunction(L, -2)) break;
    if (lua_isstring(L, -2)) {
      lua_pop(L, 1);
      luaL_addvalue(&msg);
    } else {
      lua_pop(L, 2);
      luaL_buffsub(&msg, 2);
    }
  }
  /* searchers, [buffer box,] loader, data -> loader, data */
  lua_rotate(L, searchers, 2);
  lua_settop(L, searchers + 1);
}

/* Stack: name, LOADED, loader data, the loader's result. */
static int finish_require(lua_State *L, int status, lua_KContext ctx) {
  const char *name = lua_tostring(L, 1);
  (void)status, (void)ctx;
  if (!lua_isnil(L, -1)) lua_setfield(L, 2, name);
  else lua_pop(L, 1);
  if (lua_getfield(L, 2, name) == LUA_TNIL) {  /* the module set nothing */
    lua_pushboolean(L, 1);
    lua_copy(L, -1, -2);
    lua_setfield(L, 2, name);
  }
  lua_rotate(L, -2, 1);  /* the module's value, then the loader data */
  return 2;
}

static int yieldable_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, 2, name) != LUA_TNIL && lua_toboolean(L, -1)) return 1;
  lua_pop(L, 1);
  find_loader(L, name);  /* name, LOADED, loader, data */
  lua_rotate(L, -2, 1);  /* name, LOADED, data, loader */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3);
  lua_callk(L, 2, 1, 0, finish_require);
  return finish_require(L, LUA_OK, 0);
}

void eddy__open_require(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE) {
    lua_pushcclosure(L, yieldable_require, 1);
    lua_setglobal(L, "require");
    lua_pop(L, 1);
  } else {
    lua_pop(L, 2);  /* no package library: nothing to replace */
  }
}
