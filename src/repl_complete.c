/*
** repl_complete.c -- Tab completion at the REPL's prompt: the global
** names, fields and methods that complete the expression before the
** cursor ("na", "t.fi", "obj:me"), found by raw lookups, without running
** Lua code; Lua's keywords too.  libedit asks through its readline layer.
*/
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>
#include <lua.h>

#include "repl.h"

static lua_State *completing;  /* the REPL's state */
static char **cands;           /* the candidates for the text completed */
static size_t ncands, nextcand;

static void free_cands(void) {
  size_t i;
  for (i = 0; i < ncands; i++) free(cands[i]);
  free(cands);
  cands = NULL;
  ncands = nextcand = 0;
}

/* Add "prefix..name" when name starts with 'part'. */
static void add_cand(const char *prefix, size_t plen, const char *name,
                     const char *part) {
  size_t nlen = strlen(name);
  char *c, **more;
  if (strncmp(name, part, strlen(part)) != 0) return;
  more = (char **)realloc(cands, (ncands + 1) * sizeof *more);
  if (more == NULL) return;
  cands = more;
  c = (char *)malloc(plen + nlen + 1);
  if (c == NULL) return;
  memcpy(c, prefix, plen);
  memcpy(c + plen, name, nlen + 1);
  cands[ncands++] = c;
}

/*
** Replace the value at the top by the table where its missing fields are
** looked up: its metatable's __index when that is a table, or the first
** upvalue of an __index function when that is a table (eddy's classes
** with attributes, such as Loop, index their methods so); else nil.
** Nothing runs: completion must not call Lua code.
*/
static void fallback_table(lua_State *L) {
  if (!lua_getmetatable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  lua_pushliteral(L, "__index");
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TFUNCTION &&
      lua_getupvalue(L, -1, 1) != NULL)
    lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* Replace the value at the top by its field 'name', found in it or along
** its fallback tables (nil when there is none). */
static void raw_index(lua_State *L, const char *name, size_t len) {
  int depth;
  for (depth = 0; depth < 16 && !lua_isnil(L, -1); depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushlstring(L, name, len);
      if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_remove(L, -2);
        return;
      }
      lua_pop(L, 1);
    }
    fallback_table(L);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* l_complete(text): fill the candidates completing the expression 'text'
** ("na", "t.fi", "obj:me"): globals, fields, or methods. */
static int l_complete(lua_State *L) {
  static const char *const keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for",
    "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat",
    "return", "then", "true", "until", "while", NULL
  };
  const char *text = lua_tostring(L, 1);
  const char *sep = strpbrk(text, ".:"), *part = text, *p;
  int depth, methods = 0;
  lua_pushglobaltable(L);
  /* Walk "a.b.c" down to the last table. */
  for (p = text; sep != NULL; sep = strpbrk(p, ".:")) {
    raw_index(L, p, (size_t)(sep - p));
    methods = *sep == ':';
    p = part = sep + 1;
    if (methods && strpbrk(p, ".:") != NULL) return 0;
  }
  if (part == text) {
    int i;
    for (i = 0; keywords[i] != NULL; i++)
      add_cand("", 0, keywords[i], part);
  }
  /* The table's keys, then those of its __index chain. */
  for (depth = 0; depth < 16 && !lua_isnil(L, -1); depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        size_t len;
        if (lua_type(L, -2) == LUA_TSTRING &&
            (!methods || lua_type(L, -1) == LUA_TFUNCTION)) {
          const char *name = lua_tolstring(L, -2, &len);
          if (eddy__repl_is_identifier(name, len))
            add_cand(text, (size_t)(part - text), name, part);
        }
        lua_pop(L, 1);
      }
    }
    fallback_table(L);
  }
  return 0;
}

/* libedit's generator: the candidates one by one (state 0: compute them). */
static char *complete_next(const char *text, int state) {
  lua_State *L = completing;
  if (state == 0) {
    free_cands();
    lua_pushstring(L, text);
    lua_pushcfunction(L, l_complete);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  if (nextcand < ncands) return strdup(cands[nextcand++]);
  return NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;  /* no file names */
  return rl_completion_matches(text, complete_next);
}

void eddy__repl_complete_start(lua_State *L) {
  static char breaks[] = " \t\n\"\\'`@$><=;|&{(+-*/%^~#,[)}";
  completing = L;
  rl_attempted_completion_function = complete;
  rl_basic_word_break_characters = breaks;
  rl_completion_append_character = '\0';
}

void eddy__repl_complete_end(void) {
  free_cands();
  completing = NULL;
}
