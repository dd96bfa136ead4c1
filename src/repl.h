/*
** repl.h -- what the two files of the eddy executable share: main.c (the
** lua.c-style host) and repl.c (the REPL on the default loop).
*/
#ifndef EDDY_REPL_H
#define EDDY_REPL_H

#include <stddef.h>

#include <lua.h>

/* lua.c's message handler, where eddy's error objects (eddy.errors) also
** get a traceback: their own 'traceback' field (where a task raised them)
** or the current one. */
int eddy__msghandler(lua_State *L);

/* Print the version line ("eddy 0.1.0  Lua 5.4.4  Copyright ..."). */
void eddy__print_version(void);

/* Run the REPL on the default loop until the end of input (API.md §11);
** then cancel what still runs and close that loop.  Raises a Lua error
** if the REPL cannot start. */
void eddy__repl(lua_State *L);

/* Whether s (len bytes) is a Lua name that is not a keyword: such keys
** show as name = value and complete after a dot. */
int eddy__repl_is_identifier(const char *s, size_t len);

/* Push how the value at i shows at a terminal prompt.  'seen' is the
** index of a table holding the tables on the path being shown (cycles);
** 'depth' the nesting so far (0 at the top). */
void eddy__repl_show(lua_State *L, int i, int seen, int depth);

#endif
