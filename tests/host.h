/*
** host.h -- what the C test hosts share: counting the process's open
** descriptors and, after <eddy.h>, reading an eddy_State's globals.
*/
#ifndef HOST_H
#define HOST_H

#include <dirent.h>

/* The descriptors open in this process (and the one reading them). */
static inline int open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  while (readdir(d) != NULL) n++;
  closedir(d);
  return n;
}

#ifdef EDDY_H

/* The global 'name' of E's state as a string (or NULL when it is nil). */
static inline const char *global_string(eddy_State *E, const char *name) {
  lua_State *L = eddy_lua(E);
  const char *s;
  lua_getglobal(L, name);
  s = lua_tostring(L, -1);
  lua_pop(L, 1);  /* the global keeps the string alive */
  return s;
}

static inline int global_true(eddy_State *E, const char *name) {
  lua_State *L = eddy_lua(E);
  int b;
  lua_getglobal(L, name);
  b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

static inline double now(void) { return (double)uv_hrtime() / 1e9; }

#endif

#endif
