/* placeholder: replaced by the lua.c-style host */
#include <stdio.h>
#include <lualib.h>
#include "internal.h"
int main(int argc, char **argv) {
  eddy_State *E = eddy_new(NULL);
  lua_State *L = eddy_lua(E);
  int i, status;
  lua_createtable(L, argc, 0);
  for (i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i - 1); }
  lua_setglobal(L, "arg");
  status = eddy_dofile(E, argc > 1 ? argv[1] : NULL);
  if (status == 0) status = eddy_run(E, UV_RUN_DEFAULT);
  if (status) fprintf(stderr, "eddy: %s\n", eddy_errmsg(E));
  eddy_close(E);
  return status ? 1 : 0;
}
