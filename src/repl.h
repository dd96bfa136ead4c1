/*
** repl.h -- what the files of the eddy executable share: main.c (the
** lua.c-style host), repl.c (the REPL on the default loop) and its parts
** repl_show.c, repl_complete.c and repl_keys.c.
*/
#ifndef EDDY_REPL_H
#define EDDY_REPL_H

#include <stddef.h>
#include <stdio.h>

#include <lua.h>

/* lua.c's message handler, where eddy's error objects (eddy.errors) also
** get a traceback: their own 'traceback' field (where a task raised them)
** or the current one. */
int eddy__msghandler(lua_State *L);

/* Print the version line ("eddy 0.1.0  Lua 5.4.4  Copyright ..."). */
void eddy__print_version(void);

/* Run the REPL on the default loop until the end of input (API.md §11);
** then cancel what still runs and close that loop.  Returns 0, or -1
** when a prompt's tostring failed (reported; lua.c exits with status 1
** then).  Raises a Lua error if the REPL cannot start. */
int eddy__repl(lua_State *L);

/* Whether s (len bytes) is a Lua name that is not a keyword: such keys
** show as name = value and complete after a dot. */
int eddy__repl_is_identifier(const char *s, size_t len);

/* Push how the value at i shows at a terminal prompt.  'seen' is the
** index of a table holding the tables on the path being shown (cycles);
** 'depth' the nesting so far (0 at the top). */
void eddy__repl_show(lua_State *L, int i, int seen, int depth);

/* Tab completion in the globals of L (repl_complete.c): set libedit's
** readline layer up for it; free the candidates at the end. */
void eddy__repl_complete_start(lua_State *L);
void eddy__repl_complete_end(void);

/* The terminal's text (repl_keys.c), in its character set (current).
** libedit's key reader on a UTF-8 terminal (rl_getc_function), which
** keeps the bytes that are not UTF-8 as characters of their own: */
int eddy__repl_read_key(FILE *f);
/* Whether it read bytes ahead (fd 0 may have no more); drop them. */
int eddy__repl_keys_ahead(void);
void eddy__repl_drop_keys(void);
/* A line from libedit with those bytes back, in place: its length. */
size_t eddy__repl_unescape_raw(char *s);
/* A copy of s (malloc'ed, or NULL) with them as libedit holds them. */
char *eddy__repl_escape_raw(const char *s);
/* The screen column after drawing the n bytes at s from column 'col',
** as libedit draws them; the \1...\1 parts of a prompt count for
** nothing (RL_PROMPT_START_IGNORE). */
size_t eddy__repl_column(const char *s, size_t n, size_t col);

#endif
