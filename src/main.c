/*
** main.c -- the eddy executable: Lua 5.4's stand-alone interpreter (lua.c)
** on a state where eddy is attached.
**
** The command line behaves as lua.c's: the same options (-e -l -i -v -E
** -W -- -), the same 'arg' table, LUA_INIT_5_4 / LUA_INIT, the same
** messages (prefixed by the program name) and exit codes.  Everything runs
** inside pmain() under lua_pcall, and every chunk through docall(), whose
** message handler adds a traceback.
**
** What eddy adds (API.md §11): `require "eddy"` works without a search
** path; a main chunk may suspend (the core runs the default loop until the
** awaited future is done); when the script and the -e chunks have
** returned, the default loop runs until no live work is left; and the REPL
** (repl.c) runs on that loop, each entry as a task.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "internal.h"
#include "repl.h"

/* The name in messages when argv[0] is missing or empty. */
#define PROGNAME "eddy"

static const char *progname = PROGNAME;

/* {====================================================== Interruption */

/*
** As lua.c: while a chunk runs, SIGINT sets a hook that raises
** "interrupted!" at the next Lua instruction of the main thread, and puts
** the default action back, so a second Ctrl-C ends a stuck process.
** While the chunk runs a loop (a top-level suspension, run_forever), the
** next Lua code on the main thread is a callback, whose errors go to the
** exception handler: the loop run itself is interrupted too, and raises
** "interrupted!" in the chunk (eddy__loop_interrupt).
*/
static lua_State *globalL = NULL;
static eddy_Runtime *globalRT = NULL;

static void setsignal(int sig, void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);  /* one interruption per signal */
  luaL_error(L, "interrupted!");
}

static void laction(int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  setsignal(sig, SIG_DFL);  /* a second Ctrl-C ends the process */
  lua_sethook(globalL, lstop, flag, 1);
  eddy__loop_interrupt(globalRT);
}

/* }====================================================== */

/* {====================================================== Messages */

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr,
    "usage: %s [options] [script [args]]\n"
    "Available options are:\n"
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -l mod    require library 'mod' into global 'mod'\n"
    "  -l g=mod  require library 'mod' into global 'g'\n"
    "  -v        show version information\n"
    "  -E        ignore environment variables\n"
    "  -W        turn warnings on\n"
    "  --        stop handling options\n"
    "  -         stop handling options and execute stdin\n",
    progname);
  fflush(stderr);
}

/* Print 'msg' on stderr, after "progname: " when pname is not NULL. */
static void message(const char *pname, const char *msg) {
  if (pname != NULL) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Report a failed status: print and pop the message at the top. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    message(progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

int eddy__msghandler(lua_State *L) {
  const char *msg;
  /* A task's string error, re-raised by result() or await: the traceback
  ** of where it was raised, as for error objects below. */
  if (eddy__push_raise_site(L)) return 1;
  msg = lua_tostring(L, 1);
  if (msg == NULL) {  /* not a string: an error object? */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      if (!eddy__iserror(L, 1, "Error")) return 1;  /* lua.c: just that */
      msg = lua_tostring(L, -1);
      /* A task's error carries the traceback of where it was raised. */
      if (lua_type(L, 1) == LUA_TTABLE &&
          lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
        lua_pushfstring(L, "%s\n%s", msg, lua_tostring(L, -1));
        return 1;
      }
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

void eddy__print_version(void) {
  printf("eddy %s  %s\n", EDDY_VERSION, LUA_COPYRIGHT);
  fflush(stdout);
}

/* }====================================================== */

/* {====================================================== Running chunks */

/* Call the function below its 'narg' arguments with the message handler;
** SIGINT interrupts it as in lua.c. */
static int docall(lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;  /* the function's index */
  lua_pushcfunction(L, eddy__msghandler);
  lua_insert(L, base);
  globalL = L;
  globalRT = eddy__runtime(L);
  setsignal(SIGINT, laction);
  status = lua_pcall(L, narg, nres, base);
  setsignal(SIGINT, SIG_DFL);
  globalRT->interrupted = 0;  /* a Ctrl-C no loop run took ends here */
  lua_remove(L, base);
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dofile(lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* The mark that ends a module name's "version" suffix (loadlib.c's). */
#if !defined(LUA_IGMARK)
#define LUA_IGMARK "-"
#endif

/* -l g=mod (or -l mod): global g = require(mod).  As Lua 5.4.6's lua.c,
** which brought 'g=mod': without one, the global's name is the module's
** cut at its suffix mark ('-l mod-v2' sets mod = require("mod-v2")). */
static int dolibrary(lua_State *L, char *globname) {
  int status;
  char *suffix = NULL;
  char *modname = strchr(globname, '=');
  if (modname == NULL) {
    modname = globname;
    suffix = strchr(modname, *LUA_IGMARK);
  } else {
    *modname = '\0';  /* the global's name ends at the '=' */
    modname++;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = docall(L, 1, 1);
  if (status == LUA_OK) {
    if (suffix != NULL) *suffix = '\0';  /* after require saw the name */
    lua_setglobal(L, globname);
  }
  return report(L, status);
}

/* Push arg[1..#arg], the script's arguments; returns how many. */
static int pushargs(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);  /* the table */
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  int status;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;  /* "-" (not after "--") is stdin */
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* LUA_INIT_5_4, else LUA_INIT: "@file" runs the file, else the string. */
static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dofile(L, init + 1);
  return dostring(L, init, name);
}

/* run_default under protection: true if nothing failed unhandled. */
static int run_default(lua_State *L) {
  lua_pushboolean(L, eddy__run_default(L, UV_RUN_DEFAULT) == 0);
  return 1;
}

/*
** After the main chunks: the default loop runs until no live work is left
** (API.md §11).  Ctrl-C keeps its default action here: the chunks are
** done, and a server left running ends at once, as under lua.c.
*/
static int drain(lua_State *L) {
  int status, ok;
  lua_pushcfunction(L, eddy__msghandler);
  lua_pushcfunction(L, run_default);
  status = lua_pcall(L, 0, 1, -2);
  if (status != LUA_OK) {
    lua_remove(L, -2);
    return report(L, status);
  }
  ok = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return ok ? LUA_OK : LUA_ERRRUN;
}

/* }====================================================== */

/* {====================================================== Options */

#define has_error 1  /* bad option */
#define has_i 2      /* -i */
#define has_v 4      /* -v */
#define has_e 8      /* -e */
#define has_E 16     /* -E */

/*
** Check the options; sets '*first' to the index of the script (argc if
** none) or of the bad option.  Returns the has_* flags.
*/
static int collectargs(char **argv, int *first) {
  int args = 0;
  int i;
  if (argv[0] == NULL) {  /* no program name: no options either */
    *first = -1;
    return 0;
  }
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;  /* the script */
    switch (argv[i][1]) {
      case '-':  /* "--" */
        if (argv[i][2] != '\0') return has_error;
        *first = i + 1;
        return args;
      case '\0':  /* "-": the script is stdin */
        return args;
      case 'E':
        if (argv[i][2] != '\0') return has_error;
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'i':
        args |= has_i;  /* -i implies -v */
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        args |= has_v;
        break;
      case 'e':
        args |= has_e;
        /* FALLTHROUGH */
      case 'l':  /* both take an argument, joined or the next one */
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return has_error;
        }
        break;
      default:
        return has_error;
    }
  }
  *first = i;  /* no script */
  return args;
}

/* Run -e, -l and -W in order; 0 if one failed. */
static int runargs(lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
      case 'e':
      case 'l': {
        int status;
        char *extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        status = option == 'e' ? dostring(L, extra, "=(command line)")
                               : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);
        break;
    }
  }
  return 1;
}

/* arg[0] is the script, arg[1..] its arguments, arg[-1..] what precedes. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  int i, narg;
  if (script == argc) script = 0;  /* no script: arg[0] is the program */
  narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* }====================================================== */

/* {====================================================== Main */

/* Attach eddy and make `require "eddy"` find its opener. */
static void open_eddy(lua_State *L) {
  eddy__attach(L, NULL);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_eddy);
  lua_setfield(L, -2, "eddy");
  lua_pop(L, 1);
}

/* pmain(argc, argv) -> true if nothing failed. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int args = collectargs(argv, &script);
  luaL_checkversion(L);
  if (argv[0] != NULL && argv[0][0] != '\0') progname = argv[0];
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if ((args & has_i) && !isatty(0)) {
    /* A piped REPL prints what lua.c prints, byte for byte (API.md §11),
    ** banner included. */
    puts(LUA_COPYRIGHT);
    fflush(stdout);
  } else if (args & has_v) {
    eddy__print_version();
  }
  if (args & has_E) {  /* libraries ignore environment variables */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  eddy__set_os_exit(L, NULL);
  open_eddy(L);
  createargtable(L, argv, argc, script);
  eddy__tune_gc(L);  /* generational, as lua.c's (runtime.c) */
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    if (eddy__repl(L) != 0) return 0;
  } else if (script == argc && !(args & (has_e | has_v)) && isatty(0)) {
    eddy__print_version();
    if (eddy__repl(L) != 0) return 0;
  } else {
    if (script == argc && !(args & (has_e | has_v)) &&
        dofile(L, NULL) != LUA_OK)  /* no arguments: stdin is the script */
      return 0;
    if (drain(L) != LUA_OK) return 0;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int status, result;
  lua_State *L = eddy__newstate();
  if (L == NULL) {
    message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  result = lua_toboolean(L, -1);
  report(L, status);
  eddy__closestate(L);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* }====================================================== */
