/*
** process.c -- starting child processes on libuv (uv_spawn) for
** loop:subprocess_exec and subprocess_shell (lua/eddy/subprocess.lua).
**
** C does what needs the system: resolving the stdio choices to
** descriptors, making the pipes, spawning, reporting the exit, sending
** signals.  The process object holds our ends of the pipes until Lua
** takes them for pipe transports (pipe.c), which then close them; the
** rest of asyncio's SubprocessTransport is Lua.
**
** Every Lua call that can fail (fileno() methods, argument checks) comes
** before the first descriptor is opened, so an error cannot leak one.
*/
#define _GNU_SOURCE  /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define PROCESS "eddy.Process"

/* The stdio choices (eddy.subprocess): Python's values, and INHERIT for
** Python's None. */
enum { SP_PIPE = -1, SP_STDOUT = -2, SP_DEVNULL = -3, SP_INHERIT = -4 };

/* pass_fds: at most this many descriptors, each below this number. */
#define MAX_PASS_FD 4096

/* User value: the function the exit is reported to. */
enum { P_ONEXIT = 1, P_NUV = P_ONEXIT };

typedef struct {
  eddy_UVObject uv;  /* first: owns the uv_process_t */
  int pid;
  int exited;        /* the exit callback ran */
  int pipes[3];      /* our ends of the child's 0-2 until Lua takes them */
} Process;

static void close_pipes(Process *p) {
  int i;
  for (i = 0; i < 3; i++)
    if (p->pipes[i] >= 0) {
      close(p->pipes[i]);
      p->pipes[i] = -1;
    }
}

/* {====================================================== The handle */

static void exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  Process *p = (Process *)h->data;
  lua_State *L = p->uv.loop->rt->L;
  int top = lua_gettop(L);
  p->exited = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->uv.self_ref);
  lua_getiuservalue(L, -1, P_ONEXIT);
  /* asyncio's returncode: -N when killed by signal N */
  lua_pushinteger(L, term_signal > 0 ? -(lua_Integer)term_signal : (lua_Integer)status);
  eddy__pcall(L, p->uv.loop, 1, 0, "Exception in the process exit callback");
  lua_settop(L, top);
}

/* The loop or the state closes with the child still running: kill it,
** as closing its transport does (asyncio's, when the transport is closed
** or collected), rather than leave it running with nothing to wait for
** it.  Once the handle is closed libuv no longer reaps it, so reap it
** here, giving it a moment to die (a child stuck in the kernel stays a
** zombie rather than block the close). */
static void kill_running_child(Process *p) {
  int i;
  if (p->exited ||
      uv_process_kill((uv_process_t *)p->uv.handle, SIGKILL) < 0)
    return;
  for (i = 0; i < 100 && waitpid(p->pid, NULL, WNOHANG) == 0; i++)
    uv_sleep(1);
}

static void process_before_close(lua_State *L, eddy_UVObject *o, int self) {
  (void)L;
  (void)self;
  kill_running_child((Process *)o);
}

static void process_closed(lua_State *L, eddy_UVObject *o, int self) {
  (void)o;
  lua_pushnil(L);
  lua_setiuservalue(L, self, P_ONEXIT);
}

/* proc:kill(sig): send a signal (a number or a name); ProcessLookupError
** once the process has exited or the handle is closed. */
static int p_kill(lua_State *L) {
  Process *p = (Process *)luaL_checkudata(L, 1, PROCESS);
  int sig = eddy__checksignal(L, 2), err;
  if (p->uv.handle == NULL || p->uv.closing || p->exited)
    return eddy__error(L, "ProcessLookupError", "the process has exited");
  err = uv_process_kill((uv_process_t *)p->uv.handle, sig);
  if (err < 0) eddy__uverror(L, err, "send_signal");
  return 0;
}

/* (For a subprocess's pipe transports, pipe.c.) */
int eddy__process_pipe(lua_State *L, int idx, int i, int take) {
  Process *p = (Process *)luaL_checkudata(L, idx, PROCESS);
  int fd = p->pipes[i];
  if (take) p->pipes[i] = -1;
  return fd;
}

/* proc:close(): release the handle and the pipes not taken (idempotent;
** does not kill). */
static int p_close(lua_State *L) {
  Process *p = (Process *)luaL_checkudata(L, 1, PROCESS);
  close_pipes(p);
  if (p->uv.handle != NULL) eddy__uv_close(L, &p->uv);
  return 0;
}

/* An open handle is collected only at lua_close (it anchors itself). */
static int p_gc(lua_State *L) {
  Process *p = (Process *)lua_touserdata(L, 1);
  if (p->uv.handle != NULL && !p->uv.closing) kill_running_child(p);
  close_pipes(p);
  eddy__uv_gc(L, &p->uv, "process");
  return 0;
}

/* }====================================================== */

/* {====================================================== Spawning */

/* What the child's descriptors 0-2 and the pass_fds become. */
typedef struct {
  int choice[3];       /* SP_* or a descriptor to inherit */
  int parent[3];       /* our end of a pipe, or -1 */
  int opened[3];       /* child ends we opened (pipes, /dev/null), or -1 */
  uv_stdio_container_t *stdio;
  int nstdio;
} Stdio;

/* The stdio choice in field 'name' of the options at t (types checked
** in Lua): an SP_* value or a descriptor; child descriptor 'which'. */
static int check_choice(lua_State *L, int t, const char *name, int which) {
  int c;
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) c = SP_INHERIT;
  else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) < 0) {
    lua_Integer v = lua_tointeger(L, -1);
    if (v < SP_INHERIT || (v == SP_STDOUT && which != 2))
      return eddy__error(L, "ValueError", "invalid %s: %I", name, v);
    c = (int)v;
  } else {
    c = eddy__checkfd(L, lua_gettop(L));
    eddy__check_not_libuv_pipe(L, c);
  }
  lua_pop(L, 1);
  return c;
}

static void close_opened(Stdio *s) {
  int i;
  for (i = 0; i < 3; i++) {
    if (s->opened[i] >= 0) close(s->opened[i]);
    if (s->parent[i] >= 0) close(s->parent[i]);
    s->opened[i] = s->parent[i] = -1;
  }
}

/* Open the pipes and /dev/null the choices ask for and fill the stdio
** containers 0-2; 0 or -errno (everything opened is closed again). */
static int open_stdio(Stdio *s) {
  int i, fd;
  for (i = 0; i < 3; i++) {
    int c = s->choice[i], p[2];
    if (c == SP_PIPE) {
      if (pipe2(p, O_CLOEXEC) < 0) goto fail;
      s->parent[i] = i == 0 ? p[1] : p[0];
      s->opened[i] = fd = i == 0 ? p[0] : p[1];
    } else if (c == SP_DEVNULL) {
      if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) goto fail;
      s->opened[i] = fd;
    } else if (c == SP_STDOUT) {
      fd = s->stdio[1].data.fd;
    } else if (c == SP_INHERIT) {
      fd = i;
    } else {
      fd = c;
    }
    s->stdio[i].flags = UV_INHERIT_FD;
    s->stdio[i].data.fd = fd;
  }
  return 0;
fail:
  fd = -errno;
  close_opened(s);
  return fd;
}

/* The strings of the array at index t, NULL-terminated, in a userdata
** pushed on the stack (collected with it). */
static char **string_array(lua_State *L, int t, const char *what) {
  lua_Integer n = luaL_len(L, t), i;
  char **v;
  if (n < 0 || n > 1 << 20) eddy__error(L, "ValueError", "too many %s", what);
  v = (char **)lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 1);
  lua_newtable(L);  /* keeps the strings alive */
  for (i = 1; i <= n; i++) {
    const char *str;
    if (lua_geti(L, t, i) != LUA_TSTRING) {
      eddy__error(L, "TypeError", "%s must be strings, not %s", what, luaL_typename(L, -1));
      return NULL;
    }
    str = eddy__tocstring(L, -1, what);
    v[i - 1] = (char *)str;
    lua_rawseti(L, -2, i);
  }
  v[n] = NULL;
  lua_setiuservalue(L, -2, 1);
  return v;
}

/* The pass_fds array at index t into s->stdio (descriptors 3 and up).
** Each element is read once, into fds: a metamethod or a finalizer that
** runs between two reads may change what a second read gives. */
static void check_pass_fds(lua_State *L, int t, Stdio *s) {
  lua_Integer n = luaL_len(L, t), i, top = 3;
  int *fds;
  if (n < 0 || n > 1 << 20) eddy__error(L, "ValueError", "too many pass_fds");
  fds = (int *)lua_newuserdatauv(L, (size_t)n * sizeof *fds, 0);
  for (i = 1; i <= n; i++) {
    lua_Integer fd;
    lua_geti(L, t, i);
    if (!lua_isinteger(L, -1)) luaL_error(L, "pass_fds must hold integers");
    fd = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (fd < 3 || fd >= MAX_PASS_FD)
      eddy__error(L, "ValueError", "pass_fds: %I is not a descriptor in 3..%d",
                  fd, MAX_PASS_FD - 1);
    eddy__check_not_libuv_pipe(L, (int)fd);
    fds[i - 1] = (int)fd;
    if (fd + 1 > top) top = fd + 1;
  }
  s->nstdio = (int)top;
  s->stdio = (uv_stdio_container_t *)lua_newuserdatauv(L, (size_t)top * sizeof *s->stdio, 0);
  for (i = 0; i < top; i++) s->stdio[i].flags = UV_IGNORE;
  for (i = 0; i < n; i++) {
    s->stdio[fds[i]].flags = UV_INHERIT_FD;
    s->stdio[fds[i]].data.fd = fds[i];
  }
}

/*
** What a failed uv_spawn is about, for the error's text: the working
** directory when it is missing or unusable (libuv's child reports chdir's
** errno as it does exec's), else the program.  Python's subprocess names
** the directory too.
*/
static const char *spawn_subject(const uv_process_options_t *o, int err) {
  struct stat st;
  if (o->cwd == NULL
      || (err != UV_ENOENT && err != UV_ENOTDIR && err != UV_EACCES))
    return o->file;
  if (stat(o->cwd, &st) != 0 || !S_ISDIR(st.st_mode)
      || access(o->cwd, X_OK) != 0)
    return o->cwd;
  return o->file;
}

/*
** loop:_spawn(args, opts, on_exit) -> process, pid
** args: the program then its arguments (strings).  opts: stdin, stdout,
** stderr (eddy.subprocess choices), cwd, env (array of "NAME=value" or
** nil to inherit), start_new_session, pass_fds (array).  on_exit(code)
** runs once the child has exited.  Our ends of the pipes asked for go to
** the pipe transports loop:_pipe_transport makes (eddy__process_pipe).
*/
static int l_spawn(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  uv_process_options_t o;
  Stdio s;
  Process *p;
  uv_handle_t *h;
  int i, err, pidx;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  memset(&o, 0, sizeof o);
  memset(&s, 0, sizeof s);
  for (i = 0; i < 3; i++) s.parent[i] = s.opened[i] = -1;
  /* everything that may raise first */
  o.args = string_array(L, 2, "program arguments");
  if (o.args[0] == NULL) return luaL_error(L, "no program to run");
  o.file = o.args[0];
  if (lua_getfield(L, 3, "env") == LUA_TTABLE) o.env = string_array(L, lua_gettop(L), "environment entries");
  if (lua_getfield(L, 3, "cwd") == LUA_TSTRING)
    o.cwd = eddy__tocstring(L, -1, "cwd");
  lua_getfield(L, 3, "start_new_session");
  if (lua_toboolean(L, -1)) o.flags |= UV_PROCESS_DETACHED;  /* setsid() */
  if (lua_getfield(L, 3, "pass_fds") == LUA_TTABLE) check_pass_fds(L, lua_gettop(L), &s);
  else {
    s.nstdio = 3;
    s.stdio = (uv_stdio_container_t *)lua_newuserdatauv(L, 3 * sizeof *s.stdio, 0);
  }
  s.choice[0] = check_choice(L, 3, "stdin", 0);
  s.choice[1] = check_choice(L, 3, "stdout", 1);
  s.choice[2] = check_choice(L, 3, "stderr", 2);
  p = (Process *)lua_newuserdatauv(L, sizeof *p, P_NUV);
  eddy__uv_init(&p->uv);
  p->pid = 0;
  p->exited = 0;
  p->pipes[0] = p->pipes[1] = p->pipes[2] = -1;
  p->uv.on_closed = process_closed;
  p->uv.before_close = process_before_close;
  luaL_setmetatable(L, PROCESS);
  pidx = lua_gettop(L);
  lua_pushvalue(L, 4);
  lua_setiuservalue(L, pidx, P_ONEXIT);
  /* now the descriptors */
  if ((err = open_stdio(&s)) < 0) return eddy__uverror(L, err, o.file);
  o.stdio = s.stdio;
  o.stdio_count = s.nstdio;
  o.exit_cb = exit_cb;
  h = eddy__uv_open(L, &p->uv, pidx, loop, sizeof(uv_process_t));
  err = uv_spawn(loop->uv, (uv_process_t *)h, &o);
  for (i = 0; i < 3; i++)  /* the child has its copies */
    if (s.opened[i] >= 0) {
      close(s.opened[i]);
      s.opened[i] = -1;
    }
  if (err < 0) {
    close_opened(&s);
    eddy__uv_close(L, &p->uv);  /* libuv wants the failed handle closed */
    return eddy__uverror(L, err, spawn_subject(&o, err));
  }
  p->pid = ((uv_process_t *)h)->pid;
  memcpy(p->pipes, s.parent, sizeof p->pipes);
  lua_pushvalue(L, pidx);
  lua_pushinteger(L, p->pid);
  return 2;
}

/* }====================================================== */

static const luaL_Reg process_methods[] = {
  {"kill", p_kill},
  {"close", p_close},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"_spawn", l_spawn},
  {NULL, NULL}
};

void eddy__open_process(lua_State *L) {
  luaL_newmetatable(L, PROCESS);
  luaL_newlib(L, process_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, p_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  eddy__loop_methods(L, loop_methods);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, SP_PIPE);
  lua_setfield(L, -2, "PIPE");
  lua_pushinteger(L, SP_STDOUT);
  lua_setfield(L, -2, "STDOUT");
  lua_pushinteger(L, SP_DEVNULL);
  lua_setfield(L, -2, "DEVNULL");
  lua_pushinteger(L, SP_INHERIT);
  lua_setfield(L, -2, "INHERIT");
  lua_setfield(L, -2, "subprocess_choices");
}
