/*
** repl.c -- the REPL of the eddy executable (API.md §11): lua.c's
** read-eval-print loop, turned inside out so that it runs on the event
** loop.  Each entry runs as a task, so suspending functions work at the
** prompt, and timers, servers and tasks keep running between prompts.
**
** The driver is a state machine on the default loop:
**
**   READING --line completes a chunk--> RUNNING --task done--> READING
**   READING --line leaves it incomplete--> READING (second prompt)
**   READING --syntax error--> READING (message, first prompt)
**   READING --end of input--> DONE (the loop is stopped)
**
** Showing a prompt starts watching fd 0 (a uv_poll_t; a uv_idle_t when fd
** 0 is a regular file, which epoll cannot watch); the watch stops while an
** entry runs, so the entry may read stdin itself, as under lua.c.  A
** uv_signal_t for SIGINT cancels the running entry or clears the line.
**
** Input on a terminal goes through the line editor (repl_edit.c: line
** editing, history, completion), output from callbacks and tasks makes
** way for the line being edited (see Output), and results print
** readably: strings quoted, tables with their contents.  Other input is
** read one byte at a time, as GNU readline does, and each line is echoed
** after its prompt, so the output is that of lua.c built with readline
** (Debian's lua5.4), byte for byte.
*/
#define _GNU_SOURCE  /* fopencookie */
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "internal.h"
#include "repl.h"

#define PROMPT1 "> "
#define PROMPT2 ">> "
#define EOFMARK "<eof>"  /* ends the message of an incomplete chunk */
#define CHUNKNAME "=stdin"

typedef enum {
  REPL_READING,  /* a prompt is shown and fd 0 watched */
  REPL_RUNNING,  /* an entry's task runs; fd 0 is not watched */
  REPL_DONE      /* end of input: the loop is stopping */
} repl_Phase;

typedef struct Repl {
  lua_State *L;          /* the main thread */
  eddy_Loop *loop;       /* the loop the REPL runs on */
  repl_Phase phase;
  int tty;               /* stdin is a terminal: readable output */
  int edit;              /* ... and stdout too: libedit reads the lines */
  int firstline;         /* the next line starts an entry */
  int failed;            /* a prompt's tostring failed: the REPL ended */
  int pending;           /* registry ref: the incomplete chunk, or NOREF */
  int task;              /* registry ref: the running entry, or NOREF */
  lua_State *volatile co;  /* the entry's coroutine while its body runs */
  volatile sig_atomic_t hooked;  /* SIGINT set the interrupt hook on co */
  int pollable;          /* fd 0 is watched by 'poll', else by 'idle' */
  int stdin_flags;       /* fd 0's status flags, restored at the end */
  uv_poll_t poll;
  uv_idle_t idle;
  uv_signal_t sigint;
  uv_prepare_t redraw;   /* while a line is shown: redraw_cb */
  uv_signal_t sigcont;   /* resumed after a stop: sigcont_cb */
  int nopen;             /* libuv handles not closed yet */
  int closed;            /* close_handles ran */
  int guard;             /* registry ref: the guard (close_at_exit) */
  struct sigaction uv_action;  /* libuv's SIGINT action, chained */
  char *buf;             /* without a terminal: the line being read */
  size_t len, cap;
  int editing;           /* the line editor is open */
  FILE *term;            /* the real stdout, where it draws */
  locale_t charset;      /* the terminal's LC_CTYPE for libedit, or 0 */
  int shown;             /* libedit shows the prompt and a partial line */
  int lifted;            /* ... which output took off the screen */
  int midline;           /* that output's last line has no newline yet */
} Repl;

/* The one REPL of the process (its callbacks reach it through this). */
static Repl *repl;

static void show_prompt(Repl *r);
static void redraw_cb(uv_prepare_t *h);

/* {====================================================== Helpers */

/* Print an error message as lua.c's REPL does (no program name). */
static void report(const char *msg) {
  fprintf(stderr, "%s\n", msg != NULL ? msg : "(error object is not a string)");
  fflush(stderr);
}

/*
** The character set libedit decodes the terminal's bytes in.  libedit
** reads keys with the C library's multibyte functions, and in the "C"
** locale, which a Lua program runs in (lua.c never calls setlocale),
** every byte above 127 is invalid and dropped: typing "é" would lose it.
** So libedit runs in the environment's LC_CTYPE, or in C.UTF-8 when that
** is plain ASCII (LANG unset), as terminals are UTF-8 nowadays.  It is
** made current with uselocale, for this thread and only around libedit's
** calls, so entries and executor threads keep the program's locale.
*/
static locale_t terminal_charset(void) {
  locale_t loc = newlocale(LC_CTYPE_MASK, "", (locale_t)0);
  if (loc != (locale_t)0 &&
      strcmp(nl_langinfo_l(CODESET, loc), "ANSI_X3.4-1968") != 0)
    return loc;
  if (loc != (locale_t)0) freelocale(loc);
  return newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* Make the terminal's character set current; returns what to restore
** with leave_charset. */
static locale_t enter_charset(Repl *r) {
  return r->charset != (locale_t)0 ? uselocale(r->charset) : (locale_t)0;
}

static void leave_charset(locale_t old) {
  if (old != (locale_t)0) uselocale(old);
}

/* Call obj:name(args) where obj is at 'obj' and the 'nargs' arguments are
** at the top. */
static void call_method(lua_State *L, int obj, const char *name, int nargs,
                        int nres) {
  obj = lua_absindex(L, obj);
  lua_getfield(L, obj, name);
  lua_insert(L, -nargs - 1);
  lua_pushvalue(L, obj);
  lua_insert(L, -nargs - 1);
  lua_call(L, nargs + 1, nres);
}

/* Run f(L) protected, with 'nargs' arguments at the top; report an error
** (there is no Lua caller to raise to: we are in a libuv callback).
** Returns the status. */
static int protect(lua_State *L, lua_CFunction f, int nargs) {
  int status;
  lua_pushcfunction(L, f);
  lua_insert(L, -nargs - 1);
  status = lua_pcall(L, nargs, 0, 0);
  if (status != LUA_OK) {
    report(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

/* }====================================================== */

/* {====================================================== Output */

/*
** Output while a line is edited.  Callbacks and tasks run while libedit
** shows the prompt and a partial line; what they print would land in the
** middle of that line and hide it.  So, as GNU readline applications do,
** the first bytes written to the terminal take the line off the screen
** ("lift" it: back to the prompt's first column, clear to the end of the
** screen), the output follows, and before the loop waits again
** (redraw_cb, a uv_prepare_t running while the line is shown) libedit
** draws the prompt and the line again, the cursor where it was.
**
** The bytes are caught where all of them pass: on a terminal, stdout and
** stderr (when it is the terminal too) become streams of the REPL
** (fopencookie, capture_output) that lift the line and pass the bytes on
** to the real streams.  So print, io.write, io.stdout, io.stderr (the
** exception handler's reports) and warnings all go through them; libedit
** keeps writing to the real stdout.
**
** libedit can redraw (EL_REFRESH draws the prompt and the line from the
** cursor's position) but not erase, so the line editor erases with the
** terminal's own capabilities (eddy__edit_erase).  A terminal without
** them ("dumb") keeps the old line: the output starts on the next line
** and the prompt and the line are drawn again after it.
*/

/* Take the prompt and the partial line off the screen before output,
** once; redraw_cb puts them back. */
static void lift(Repl *r) {
  locale_t old;
  if (!r->shown || r->lifted) return;
  r->lifted = 1;
  old = enter_charset(r);
  eddy__edit_erase();
  leave_charset(old);
}

/* Draw the lifted prompt and line again, below the output, once stdout
** let out what it holds (io.write without a newline). */
static void redraw(Repl *r) {
  locale_t old;
  fflush(stdout);
  if (!r->lifted) return;
  r->lifted = 0;
  if (r->midline) fputs("\n", r->term);
  old = enter_charset(r);
  eddy__edit_redraw();
  leave_charset(old);
}

static void redraw_cb(uv_prepare_t *h) {  /* before the loop waits */
  redraw((Repl *)h->data);
}

/* The line leaves libedit (done, or dropped): settle its screen first. */
static void hide_line(Repl *r) {
  redraw(r);
  r->shown = 0;
  uv_prepare_stop(&r->redraw);
}

/* A stream of the REPL's: the real one, and the thread of the REPL. */
typedef struct OutStream {
  FILE *real;
  uv_thread_t owner;
} OutStream;

/* The write function of the REPL's streams: lift the line (not from
** other threads: executor threads print too), then pass the bytes on. */
static ssize_t out_write(void *cookie, const char *buf, size_t size) {
  OutStream *o = (OutStream *)cookie;
  uv_thread_t self = uv_thread_self();
  if (size > 0 && uv_thread_equal(&self, &o->owner) && repl != NULL) {
    lift(repl);
    if (repl->lifted) repl->midline = buf[size - 1] != '\n';
  }
  size = fwrite(buf, 1, size, o->real);
  fflush(o->real);
  return (ssize_t)size;
}

/* Their seek function: they are on a terminal. */
static int out_seek(void *cookie, off64_t *pos, int whence) {
  (void)cookie;
  (void)pos;
  (void)whence;
  errno = ESPIPE;  /* "Illegal seek", as io.stdout:seek() says on a tty */
  return -1;
}

/*
** Make the stream 'real' (stdout or stderr) a stream of the REPL's,
** buffered as the real one is ('mode'), and point Lua's file handle
** io[name] at it (io at the top); returns it ('real' when out of memory:
** no redraws around its output).
*/
static FILE *capture(lua_State *L, const char *name, FILE *real,
                     OutStream *o, int mode) {
  static const cookie_io_functions_t fns = {NULL, out_write, out_seek,
                                            NULL};
  FILE *f;
  o->real = real;
  o->owner = uv_thread_self();
  f = fopencookie(o, "w", fns);
  if (f == NULL) return real;
  setvbuf(f, NULL, mode, mode == _IONBF ? 0 : BUFSIZ);
  if (lua_type(L, -1) == LUA_TTABLE) {
    luaL_Stream *p;
    lua_getfield(L, -1, name);
    p = (luaL_Stream *)luaL_testudata(L, -1, LUA_FILEHANDLE);
    if (p != NULL && p->f == real) p->f = f;
    lua_pop(L, 1);
  }
  return f;
}

/*
** Make stdout, and stderr when it is the terminal too, the REPL's
** streams, for good: Lua's file handles may outlive the REPL, so these
** streams do too (without a REPL they only pass the bytes on).  libedit
** keeps the real ones.
*/
static void capture_output(lua_State *L) {
  static OutStream o_out, o_err;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_IOLIBNAME);
  stdout = capture(L, "stdout", stdout, &o_out, _IOLBF);
  if (isatty(2)) stderr = capture(L, "stderr", stderr, &o_err, _IONBF);
  lua_pop(L, 2);
}

/* }====================================================== */

/* {====================================================== Entries */

/* Continuation of run_entry: (msgh, results...) -> true, results... or
** (msgh, error) -> false, message. */
static int run_entry_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  repl->co = NULL;
  if (repl->hooked) lua_sethook(L, NULL, 0, 0);
  lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
  lua_replace(L, 1);
  if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L);
  lua_settop(L, 2);
  return 2;
}

static int run_entry(lua_State *L);

/*
** Message handler of entries: lua.c's, with the traceback cut below the
** level of run_entry, so that it ends as lua.c's does and the task
** machinery underneath does not show.
*/
static int entry_msgh(lua_State *L) {
  lua_Debug ar;
  int level, entry = -1;
  for (level = 0; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "f", &ar);
    if (lua_tocfunction(L, -1) == run_entry) entry = level;
    lua_pop(L, 1);
  }
  if (lua_type(L, 1) == LUA_TTABLE) {  /* raw: any table may be the error */
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, 1) != LUA_TNIL) entry = -1;
  }
  if (entry >= 0 && eddy__push_reraised_traceback(L, 1, 0))
    entry = -1;  /* the error brings its own traceback (or its task's) */
  lua_settop(L, 1);
  eddy__msghandler(L);
  if (entry >= 0) {
    size_t len;
    const char *tb = lua_tolstring(L, -1, &len);
    int cut = level - entry - 1;  /* the levels below run_entry */
    while (cut > 0 && len > 0) {
      if (tb[--len] == '\n') cut--;
    }
    if (cut == 0) lua_pushlstring(L, tb, len);
  }
  return 1;
}

/* The body of an entry's task: run_entry(chunk) -> true, results... or
** false, message. */
static int run_entry(lua_State *L) {
  repl->co = L;
  repl->hooked = 0;
  lua_pushcfunction(L, entry_msgh);
  lua_insert(L, 1);
  return run_entry_k(L, lua_pcallk(L, 0, LUA_MULTRET, 1, 0, run_entry_k), 0);
}

/* Print an entry's results: lua.c's l_print (the global print), with
** readable values on a terminal. */
static int print_results(lua_State *L) {
  int n = lua_gettop(L), i;
  if (n == 0) return 0;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  if (repl->tty) {
    lua_newtable(L);  /* the tables on the path being shown */
    for (i = 1; i <= n; i++) {
      eddy__repl_show(L, i, n + 1, 0);
      lua_replace(L, i);
    }
    lua_settop(L, n);
  }
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK)
    report(lua_pushfstring(L, "error calling 'print' (%s)",
                           lua_tostring(L, -1)));
  return 0;
}

/* Done callback of the entry's task (1): print its results or error. */
static int l_entry_done(lua_State *L) {
  int n;
  repl->co = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, repl->task);
  repl->task = LUA_NOREF;
  lua_settop(L, 1);
  call_method(L, 1, "cancelled", 0, 1);
  if (lua_toboolean(L, -1)) {  /* cancelled before its body ran */
    report("interrupted!");
  } else {
    lua_settop(L, 1);
    call_method(L, 1, "result", 0, LUA_MULTRET);
    n = lua_gettop(L) - 1;
    if (lua_toboolean(L, 2)) {
      lua_pushcfunction(L, print_results);
      lua_replace(L, 2);
      lua_call(L, n - 1, 0);
    } else {
      report(lua_tostring(L, 3));
    }
  }
  return 0;
}

static int entry_done(lua_State *L) {
  protect(L, l_entry_done, 1);
  if (repl->phase == REPL_RUNNING) {
    repl->firstline = 1;
    show_prompt(repl);
  }
  return 0;
}

/* Start the chunk at the top as an entry: a task on the loop. */
static void start_entry(lua_State *L, Repl *r) {
  int chunk = lua_gettop(L);
  eddy__pushloop(L, r->loop);
  lua_pushcfunction(L, run_entry);
  lua_pushvalue(L, chunk);
  call_method(L, -3, "create_task", 2, 1);
  lua_pushvalue(L, -1);
  r->task = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, entry_done);
  call_method(L, -2, "add_done_callback", 1, 0);
  r->phase = REPL_RUNNING;
  lua_settop(L, chunk - 1);
}

/* }====================================================== */

/* {====================================================== Lines */

/* Whether the load status and message at the top say "incomplete". */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t lmark = sizeof(EOFMARK) - 1;
    if (lmsg >= lmark && strcmp(msg + lmsg - lmark, EOFMARK) == 0) return 1;
  }
  return 0;
}

static void save_history(Repl *r, lua_State *L, int i) {
  size_t len;
  const char *text = lua_tolstring(L, i, &len);
  if (r->edit && len > 0) {
    locale_t old = enter_charset(r);
    eddy__edit_history(text, len);
    leave_charset(old);
  }
}

/*
** l_line(line | nil): what a line (nil: the end of input) does, as lua.c's
** loadline: on a first line, "=e" means "return e", and "return <line>;"
** is tried first, so expressions print their values; then the text is
** compiled as statements, and an incomplete one waits for more lines.
*/
static int l_line(lua_State *L) {
  Repl *r = repl;
  int status;
  if (lua_isnil(L, 1)) {
    if (r->firstline) {  /* end of input at a first prompt: leave */
      r->phase = REPL_DONE;
      return 0;
    }
    /* End of input inside a statement: its syntax error, then a prompt. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->pending);
    luaL_unref(L, LUA_REGISTRYINDEX, r->pending);
    r->pending = LUA_NOREF;
    r->firstline = 1;
    save_history(r, L, -1);
    {
      size_t len;
      const char *text = lua_tolstring(L, -1, &len);
      luaL_loadbuffer(L, text, len, CHUNKNAME);
    }
    report(lua_tostring(L, -1));
    return 0;
  }
  if (r->firstline) {
    const char *line = lua_tostring(L, 1);
    if (line[0] == '=') lua_pushfstring(L, "return %s", line + 1);
    else lua_pushvalue(L, 1);
    {
      const char *text = lua_tostring(L, -1);
      const char *retline = lua_pushfstring(L, "return %s;", text);
      if (luaL_loadbuffer(L, retline, strlen(retline), CHUNKNAME) == LUA_OK) {
        save_history(r, L, -3);
        start_entry(L, r);
        return 0;
      }
      lua_pop(L, 2);
    }
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->pending);
    lua_pushliteral(L, "\n");
    lua_pushvalue(L, 1);
    lua_concat(L, 3);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, r->pending);
  r->pending = LUA_NOREF;
  {
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    status = luaL_loadbuffer(L, text, len, CHUNKNAME);
  }
  if (incomplete(L, status)) {
    lua_pop(L, 1);
    r->pending = luaL_ref(L, LUA_REGISTRYINDEX);
    r->firstline = 0;
    return 0;
  }
  r->firstline = 1;
  save_history(r, L, -2);
  if (status == LUA_OK) start_entry(L, r);
  else report(lua_tostring(L, -1));
  return 0;
}

static void stop_reading(Repl *r) {
  if (r->pollable) uv_poll_stop(&r->poll);
  else uv_idle_stop(&r->idle);
}

/* Stop the loop the REPL runs (the end of input). */
static int l_stop_loop(lua_State *L) {
  eddy__pushloop(L, repl->loop);
  call_method(L, -1, "stop", 0, 0);
  return 0;
}

/* A line was read ('line' NULL: the end of input): act on it. */
static void got_line(Repl *r, const char *line, size_t len) {
  lua_State *L = r->L;
  hide_line(r);
  stop_reading(r);
  if (line != NULL) lua_pushlstring(L, line, len);
  else lua_pushnil(L);
  if (protect(L, l_line, 1) != LUA_OK) {  /* out of memory: start over */
    r->firstline = 1;
    r->phase = REPL_READING;
  }
  if (r->phase == REPL_DONE) {
    fputs("\n", stdout);  /* lua.c ends its REPL with a newline */
    fflush(stdout);
    protect(L, l_stop_loop, 0);
  } else if (r->phase == REPL_READING) {
    show_prompt(r);
  }
}

/* }====================================================== */

/* {====================================================== Reading */

/* Whether fd 0 has a byte to read now. */
static int readable_now(Repl *r) {
  struct pollfd p;
  if (!r->pollable) return 1;  /* a regular file never blocks */
  p.fd = 0;
  p.events = POLLIN;
  p.revents = 0;
  return poll(&p, 1, 0) > 0;
}

/*
** Without a terminal: read what fd 0 has, one byte at a time (never past
** the end of the line, so an entry may read the rest of stdin itself), and
** echo a complete line after its prompt, as GNU readline does.
*/
static void read_bytes(Repl *r) {
  do {
    char c;
    size_t len;
    ssize_t n = read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0 || c == '\n') {  /* a line; the end of input ends one too */
      int eof = n <= 0 && r->len == 0;
      if (n < 0) report(strerror(errno));
      if (!eof) {
        if (r->len > 0) fwrite(r->buf, 1, r->len, stdout);  /* buf may be NULL */
        fputs("\n", stdout);
        fflush(stdout);
      }
      len = r->len;
      r->len = 0;
      got_line(r, eof ? NULL : len > 0 ? r->buf : "", len);
      return;
    }
    if (r->len + 1 >= r->cap) {
      size_t ncap = r->cap ? r->cap * 2 : 256;
      char *nbuf = (char *)realloc(r->buf, ncap);
      if (nbuf == NULL) {
        report("not enough memory");
        continue;  /* the byte is lost; the line goes on */
      }
      r->buf = nbuf;
      r->cap = ncap;
    }
    r->buf[r->len++] = c;
  } while (readable_now(r));
}

static void read_input(Repl *r) {
  locale_t old;
  char *line;
  size_t len;
  int done;
  if (!r->edit) {
    read_bytes(r);
    return;
  }
  redraw(r);  /* libedit edits what it drew: put it back first */
  old = enter_charset(r);
  done = eddy__edit_keys(&line, &len);
  leave_charset(old);
  if (done) {
    got_line(r, line, len);
    free(line);
  }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status < 0) {  /* fd 0 is unusable: like the end of input */
    report(uv_strerror(status));
    got_line(repl, NULL, 0);
    return;
  }
  read_input((Repl *)h->data);
}

static void idle_cb(uv_idle_t *h) {
  read_input((Repl *)h->data);
}

/* Push the prompt: _PROMPT / _PROMPT2 through tostring, or the default. */
static int l_prompt(lua_State *L) {
  if (lua_getglobal(L, repl->firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL)
    lua_pushstring(L, repl->firstline ? PROMPT1 : PROMPT2);
  else
    luaL_tolstring(L, -1, NULL);
  return 1;
}

/*
** Show the prompt and watch fd 0 (-> READING).  lua.c computes the prompt
** unprotected, so an error there ends its REPL with status 1: here the
** REPL ends (-> DONE) as at the end of input, but marked failed.
*/
static void show_prompt(Repl *r) {
  lua_State *L = r->L;
  const char *prompt;
  lua_pushcfunction(L, l_prompt);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    report(lua_tostring(L, -1));
    lua_pop(L, 1);
    r->failed = 1;
    r->phase = REPL_DONE;
    if (r->loop->state == EDDY_LOOP_RUNNING) protect(L, l_stop_loop, 0);
    return;
  }
  prompt = lua_tostring(L, -1);
  r->phase = REPL_READING;
  if (r->edit) {
    locale_t old;
    fflush(stdout);  /* what the entry left unflushed goes first */
    old = enter_charset(r);
    eddy__edit_begin(prompt);
    leave_charset(old);
    r->shown = 1;
    uv_prepare_start(&r->redraw, redraw_cb);
  } else {
    fputs(prompt, stdout);
    fflush(stdout);
  }
  lua_pop(L, 1);
  if (r->pollable) uv_poll_start(&r->poll, UV_READABLE, poll_cb);
  else uv_idle_start(&r->idle, idle_cb);
}

/* }====================================================== */

/* {====================================================== Ctrl-C */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/*
** The process's SIGINT action while the REPL runs: libuv's (which wakes
** the loop for sigint_cb), preceded, when the entry's body is running Lua
** code right now, by lua.c's trick: a hook that raises "interrupted!" at
** its next instruction.  A busy entry ('while true do end') never returns
** to the loop, so cancelling its task could not stop it.
*/
static void sigint_action(int sig) {
  lua_State *co = repl->co;
  if (co != NULL && lua_status(co) == LUA_OK) {
    repl->hooked = 1;
    lua_sethook(co, interrupt_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
  }
  repl->uv_action.sa_handler(sig);
}

/* Cancel the running entry's task (a suspended entry). */
static int l_cancel_entry(lua_State *L) {
  if (repl->task == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, repl->task);
  lua_pushliteral(L, "interrupted!");
  call_method(L, -2, "cancel", 1, 0);
  return 0;
}

static void sigint_cb(uv_signal_t *h, int signum) {
  Repl *r = (Repl *)h->data;
  (void)signum;
  if (r->hooked) {  /* the hook interrupts the entry */
    lua_State *co = r->co;
    r->hooked = 0;
    if (co == NULL || lua_status(co) != LUA_YIELD) return;
    lua_sethook(co, NULL, 0, 0);  /* it suspended since: cancel it */
  }
  switch (r->phase) {
    case REPL_RUNNING:
      protect(r->L, l_cancel_entry, 0);
      break;
    case REPL_READING:  /* drop the line and any incomplete statement */
      hide_line(r);
      if (r->edit) {
        locale_t old = enter_charset(r);
        eddy__edit_end();
        leave_charset(old);
      }
      fputs("\n", stdout);
      fflush(stdout);
      r->len = 0;
      eddy__repl_drop_keys();
      luaL_unref(r->L, LUA_REGISTRYINDEX, r->pending);
      r->pending = LUA_NOREF;
      r->firstline = 1;
      show_prompt(r);
      break;
    case REPL_DONE:
      break;
  }
}

/* }====================================================== */

/* {====================================================== Ctrl-Z */

/*
** Ctrl-Z stops eddy (the terminal's "susp" character: the kernel stops
** the process group, no code of eddy's runs).  The shell that resumes it
** (fg) has written below the line and gives the terminal back in the
** shell's own mode, so at SIGCONT the line editor sets its mode up again
** and draws the prompt and the line once more.  While an entry runs the
** terminal is in the shell's mode anyway.
*/
static void sigcont_cb(uv_signal_t *h, int signum) {
  Repl *r = (Repl *)h->data;
  locale_t old;
  (void)signum;
  if (!r->shown) return;
  old = enter_charset(r);
  eddy__edit_resume(!r->lifted);  /* else redraw_cb draws it */
  leave_charset(old);
}

/* }====================================================== */

/* {====================================================== Setup */

static void close_cb(uv_handle_t *h) {
  ((Repl *)h->data)->nopen--;
}

/* Open the REPL's handles on the loop; returns 0 or a libuv error. */
static int open_handles(Repl *r) {
  uv_loop_t *uv = r->loop->uv;
  int err;
  struct sigaction sa;
  r->stdin_flags = fcntl(0, F_GETFL);
  err = uv_poll_init(uv, &r->poll, 0);
  if (err == UV_EPERM) {  /* a regular file: always readable */
    err = uv_idle_init(uv, &r->idle);
    r->idle.data = r;
  } else {
    r->pollable = 1;
    r->poll.data = r;
    /* libuv made fd 0 non-blocking; entries reading stdin expect it as
    ** it was, and reads here only come after poll said readable. */
    if (r->stdin_flags != -1) fcntl(0, F_SETFL, r->stdin_flags);
  }
  if (err < 0) return err;
  r->nopen++;
  err = uv_signal_init(uv, &r->sigint);
  if (err == 0) {
    r->sigint.data = r;
    r->nopen++;
    err = uv_signal_start(&r->sigint, sigint_cb, SIGINT);
  }
  if (err == 0) {
    err = uv_prepare_init(uv, &r->redraw);
    r->redraw.data = r;
  }
  if (err < 0) return err;
  r->nopen++;
  err = uv_signal_init(uv, &r->sigcont);
  if (err < 0) return err;
  r->sigcont.data = r;
  r->nopen++;
  if (r->edit) err = uv_signal_start(&r->sigcont, sigcont_cb, SIGCONT);
  if (err < 0) return err;
  /* Chain our action before libuv's (sigint_action). */
  sigaction(SIGINT, NULL, &r->uv_action);
  sa = r->uv_action;
  sa.sa_handler = sigint_action;
  sigaction(SIGINT, &sa, NULL);
  return 0;
}

/* Start closing the REPL's handles and undo its settings (once). */
static void release(Repl *r) {
  if (r->closed) return;
  r->closed = 1;
  if (r->uv_action.sa_handler != NULL)
    sigaction(SIGINT, &r->uv_action, NULL);
  if (r->nopen > 0) {
    uv_close(r->pollable ? (uv_handle_t *)&r->poll
                         : (uv_handle_t *)&r->idle, close_cb);
  }
  if (r->nopen > 1) uv_close((uv_handle_t *)&r->sigint, close_cb);
  if (r->nopen > 2) uv_close((uv_handle_t *)&r->redraw, close_cb);
  if (r->nopen > 3) uv_close((uv_handle_t *)&r->sigcont, close_cb);
  if (r->stdin_flags != -1) fcntl(0, F_SETFL, r->stdin_flags);
  if (r->editing) {
    locale_t old = enter_charset(r);
    eddy__edit_close();
    leave_charset(old);
  }
  if (r->charset != (locale_t)0) freelocale(r->charset);
}

static void close_handles(Repl *r) {
  release(r);
  while (r->nopen > 0) uv_run(r->loop->uv, UV_RUN_NOWAIT);
}

/* __gc of the guard: os.exit(code, true) from an entry closes the state
** while the REPL still runs (its frame never returns).  The loop's close
** waits until every handle on it has closed (it hung on the REPL's), so
** they start closing first: the guard, made after the loop, is finalized
** before it.  Their close callbacks run in the loop's close; running the
** loop here would step the entry that is exiting. */
static int close_at_exit(lua_State *L) {
  (void)L;
  if (repl != NULL) release(repl);
  return 0;
}

static void make_guard(lua_State *L, Repl *r) {
  lua_newuserdatauv(L, 0, 0);
  lua_newtable(L);
  lua_pushcfunction(L, close_at_exit);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  r->guard = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The loop for the REPL: the current one, or a new current one if a
** script closed it.  Sets the globals eddy and loop. */
static eddy_Loop *prepare(lua_State *L) {
  eddy_Loop *loop;
  luaL_requiref(L, "eddy", luaopen_eddy, 1);
  loop = eddy__getloop(L);
  if (loop->state == EDDY_LOOP_CLOSED) {
    lua_pop(L, 1);
    lua_getfield(L, -1, "new_event_loop");
    lua_call(L, 0, 1);
    lua_getfield(L, -2, "set_event_loop");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
    loop = eddy__toloop(L, -1);
  }
  lua_setglobal(L, "loop");
  lua_pop(L, 1);
  return loop;
}

/* Run the loop until the end of input (stop() at the prompt only pauses
** it: run it again). */
static int l_run(lua_State *L) {
  while (repl->phase != REPL_DONE)
    eddy__loop_run(L, repl->loop, NULL, 1);
  return 0;
}

/*
** After the end of input: what eddy.run does at its end (shutdown_loop in
** lua/eddy/runners.lua): cancel the tasks still pending and let them
** finish (a task may suspend again while it cleans up), shut down the
** async generators and the executor, and close the loop.
*/
static int l_finish(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "eddy.runners.shutdown_loop");
  eddy__pushloop(L, repl->loop);
  lua_call(L, 1, 0);
  return 0;
}

int eddy__repl(lua_State *L) {
  Repl r;
  int status, err;
  locale_t old;
  memset(&r, 0, sizeof r);
  r.L = L;
  r.pending = r.task = r.guard = LUA_NOREF;
  r.firstline = 1;
  r.tty = isatty(0);
  /* libedit edits only when it also writes to a terminal: with stdout
  ** redirected it would neither echo nor ever hand over a line.  Then the
  ** terminal's own line discipline edits, and lines are read as from a
  ** pipe (echoed after their prompts, as GNU readline writes them). */
  r.edit = r.tty && isatty(1);
  r.loop = prepare(L);
  repl = &r;
  err = open_handles(&r);
  if (err < 0) {
    close_handles(&r);
    repl = NULL;
    luaL_error(L, "cannot start the REPL: %s", uv_strerror(err));
  }
  if (r.edit) {
    r.charset = terminal_charset();
    r.term = stdout;
    old = enter_charset(&r);
    r.editing = eddy__edit_open(L) == 0;
    leave_charset(old);
    if (!r.editing) {
      close_handles(&r);
      repl = NULL;
      luaL_error(L, "cannot start the REPL: libedit could not be set up");
    }
    capture_output(L);  /* after: libedit writes to the real streams */
  }
  make_guard(L, &r);
  show_prompt(&r);
  lua_pushcfunction(L, l_run);
  status = lua_pcall(L, 0, 0, 0);
  close_handles(&r);
  luaL_unref(L, LUA_REGISTRYINDEX, r.guard);
  free(r.buf);
  luaL_unref(L, LUA_REGISTRYINDEX, r.pending);
  luaL_unref(L, LUA_REGISTRYINDEX, r.task);
  if (status != LUA_OK) {
    repl = NULL;
    lua_error(L);
  }
  lua_pushcfunction(L, l_finish);
  status = lua_pcall(L, 0, 0, 0);
  repl = NULL;
  if (status != LUA_OK) lua_error(L);
  return r.failed ? -1 : 0;
}

/* }====================================================== */
