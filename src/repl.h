/*
** repl.h -- what the files of the eddy executable share: main.c (the
** lua.c-style host), repl.c (the REPL on the default loop) and its parts
** repl_show.c, repl_edit.c, repl_complete.c and repl_keys.c.
*/
#ifndef EDDY_REPL_H
#define EDDY_REPL_H

#include <stddef.h>
#include <stdio.h>
#include <wchar.h>

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

/* The line editor on a terminal (repl_edit.c): libedit's own API, fed
** by the loop, one line at a time.  All of it runs in the terminal's
** character set (current). */
/* Set libedit up on fds 0, 1 and 2 (the real stdio streams); 0 or -1. */
int eddy__edit_open(lua_State *L);
void eddy__edit_close(void);
/* Show 'prompt' and start a line; drop the line being edited. */
void eddy__edit_begin(const char *prompt);
void eddy__edit_end(void);
/* Run the keys fd 0 has.  Returns 1 when the line is done: *line is it
** (malloc'ed; NULL at the end of input), *len its length; 0 when more
** keys are needed. */
int eddy__edit_keys(char **line, size_t *len);
/* Take the prompt and the line off the screen (a terminal that cannot:
** go below them) and draw them again. */
void eddy__edit_erase(void);
void eddy__edit_redraw(void);
/* After a stop (Ctrl-Z, then the shell's fg): the terminal in editing
** mode again, and when 'draw', the prompt and the line drawn anew from
** the start of the cursor's row. */
void eddy__edit_resume(int draw);
/* Add a statement to the history. */
void eddy__edit_history(const char *text, size_t len);

/* Tab completion (repl_complete.c): the sorted, distinct names that
** complete the expression 'word' ("na", "t.fi", "obj:me") in the
** globals of L, found without running Lua code.  Returns their number;
** *names (malloc'ed, each name too) is NULL when there are none. */
size_t eddy__repl_complete(lua_State *L, const char *word, char ***names);

/* The terminal's text (repl_keys.c), in its character set (current).
** The character that starts and ends the invisible parts of a prompt
** (terminal escapes), as in GNU readline: */
#define EDDY_PROMPT_IGNORE 1
/* libedit's key reader: 1 (a key in *c), 0 (end of input), -1 (error)
** or -2 (the rest of a key has not come: it never waits).  A byte that
** starts no character is kept as a character of its own. */
int eddy__repl_read_key(wchar_t *c);
/* Whether it read bytes ahead (fd 0 may have no more); drop them. */
int eddy__repl_keys_ahead(void);
void eddy__repl_drop_keys(void);
/* Text to wide characters and back, each kept byte as itself (malloc'ed;
** NULL when out of memory). */
wchar_t *eddy__repl_widen(const char *s, size_t n);
char *eddy__repl_narrow(const wchar_t *w, size_t n, size_t *len);
/* The screen column after drawing the n characters at s from column
** 'col', as libedit draws them; the parts of a prompt between
** EDDY_PROMPT_IGNORE characters count for nothing. */
size_t eddy__repl_column(const wchar_t *s, size_t n, size_t col);

#endif
