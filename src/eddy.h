/*
** eddy.h -- the public embedding API of eddy, a Lua 5.4 runtime whose
** event loop is Python asyncio's event loop on libuv.
**
** This is the only installed header.  Every function returning int returns
** 0 on success; otherwise the error message, with its traceback, is kept
** and eddy_errmsg() returns it until the next call.
*/
#ifndef EDDY_H
#define EDDY_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDDY_VERSION "0.1.0"

typedef struct eddy_State eddy_State;

/* A Lua 5.4 state with the standard libraries and eddy loaded, whose
** default event loop runs on 'loop' (NULL: eddy creates and owns one). */
eddy_State *eddy_new(uv_loop_t *loop);

/* The Lua state, to register your own functions or push values. */
lua_State *eddy_lua(eddy_State *E);

/* Run a file (NULL: stdin) or a string as a main chunk, as the eddy
** executable does: plain Lua on the main thread; suspending calls at top
** level run the default loop until their result is ready. */
int eddy_dofile(eddy_State *E, const char *path);
int eddy_dostring(eddy_State *E, const char *chunk, const char *chunkname);

/* Run the default loop.  UV_RUN_DEFAULT: until no live work is left;
** UV_RUN_ONCE / UV_RUN_NOWAIT: one turn, for hosts driving their own loop.
** Non-zero if a main chunk's task or a callback run here ended with an
** error that nothing handled; eddy_errmsg() then has the first one's
** report, as the default exception handler printed it. */
int eddy_run(eddy_State *E, uv_run_mode mode);

/* From any thread: schedule fn(L, arg) to run on the loop thread, in the
** next iteration of the loop the state runs (the default loop, a new one
** a script set, or eddy.run's).  Returns 0, or a negative libuv error:
** UV_ECANCELED once eddy_close has begun, UV_EINVAL for a NULL E or fn. */
int eddy_call_soon_threadsafe(eddy_State *E,
                              void (*fn)(lua_State *L, void *arg), void *arg);

/* The last error message, or NULL (a static message for a NULL E). */
const char *eddy_errmsg(eddy_State *E);

/* Close the default loop (and the uv loop if eddy owns it) and the state.
** Called from a callback, inside eddy_run / eddy_dostring / eddy_dofile,
** it stops the loop and closes the state when that call returns. */
void eddy_close(eddy_State *E);

/* The module opener: `require "eddy"` from any Lua 5.4 host (eddy.so). */
int luaopen_eddy(lua_State *L);

/* `require "eddy.socket"` and `require "eddy.signal"`, also before
** `require "eddy"` (Lua's all-in-one searcher finds them in eddy.so). */
int luaopen_eddy_socket(lua_State *L);
int luaopen_eddy_signal(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
