/*
** lua_host.c -- `require "eddy"` (eddy.so, found on LUA_CPATH) from a C
** host of its own Lua states, as any Lua 5.4 program loads a C module.
** Prints TAP.  Covers what a stock lua5.4 cannot show: several lua_States
** in one process, and lua_close of a state whose loops hold live handles.
*/
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "host.h"
#include "tap.h"

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

/* Run chunk; its global 'result' as a string, or NULL on error. */
static const char *run(lua_State *L, const char *chunk) {
  if (luaL_dostring(L, chunk) != LUA_OK) {
    printf("# %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  {
    const char *s;
    lua_getglobal(L, "result");
    s = lua_tostring(L, -1);
    lua_pop(L, 1);  /* the global keeps the string alive */
    return s;
  }
}

static int equals(const char *s, const char *want) {
  return s != NULL && strcmp(s, want) == 0;
}

int main(void) {
  int fds = open_fds();
  lua_State *A = new_state(), *B = new_state(), *C = new_state();
  const char *sleep_in_run =
      "eddy = require 'eddy'\n"
      "result = eddy.run(function() return eddy.sleep(0.01, tag) end)";
  lua_pushstring(A, "A");
  lua_setglobal(A, "tag");
  lua_pushstring(B, "B");
  lua_setglobal(B, "tag");
  check(equals(run(A, sleep_in_run), "A") && equals(run(B, sleep_in_run), "B"),
        "two lua_States in one process each require eddy and run a loop");
  check(equals(run(C, "local co = coroutine.create(function()\n"
                      "  local eddy = require 'eddy'\n"
                      "  return eddy.run(function() return eddy.sleep(0.01, 'co') end)\n"
                      "end)\n"
                      "local ok, r = coroutine.resume(co)\n"
                      "result = ok and r .. '+' .. require('eddy').run(function() return 'main' end)"),
               "co+main"),
        "eddy required from a coroutine runs there and on the main thread");
  check(equals(run(A, "local loop = eddy.get_event_loop()\n"
                      "server = eddy.start_server(function() end, '127.0.0.1', 0)\n"
                      "local port = server.sockets[1]:getsockname()[2]\n"
                      "conn = {eddy.open_connection('127.0.0.1', port)}\n"
                      "loop:call_later(100, print)\n"
                      "loop:create_task(function() eddy.sleep(100) end)\n"
                      "eddy.new_event_loop():call_later(100, print)\n"
                      "result = 'live'"), "live"),
        "a state with a server, a connection, timers, a pending task, two loops");
  lua_close(A);
  lua_close(B);
  lua_close(C);
  check(open_fds() == fds,
        "lua_close releases every libuv handle and fd of the loops it ends");
  return tap_done();
}
