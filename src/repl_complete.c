/*
** repl_complete.c -- Tab completion at the REPL's prompt: the global
** names, fields and methods that complete the expression before the
** cursor ("na", "t.fi", "obj:me"), found by raw lookups, without running
** Lua code; Lua's keywords too.  The line editor (repl_edit.c) asks.
*/
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "repl.h"

/* The names found so far. */
typedef struct Names {
  char **v;
  size_t n;
} Names;

/* Add "prefix..name" when name starts with 'part'. */
static void add_name(Names *names, const char *prefix, size_t plen,
                     const char *name, const char *part) {
  size_t nlen = strlen(name);
  char *c, **more;
  if (strncmp(name, part, strlen(part)) != 0) return;
  more = (char **)realloc(names->v, (names->n + 1) * sizeof *more);
  if (more == NULL) return;
  names->v = more;
  c = (char *)malloc(plen + nlen + 1);
  if (c == NULL) return;
  memcpy(c, prefix, plen);
  memcpy(c + plen, name, nlen + 1);
  names->v[names->n++] = c;
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

/* l_complete(names, text), both light userdata: add the names that
** complete the expression 'text' ("na", "t.fi", "obj:me"): globals,
** fields, or methods. */
static int l_complete(lua_State *L) {
  static const char *const keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for",
    "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat",
    "return", "then", "true", "until", "while", NULL
  };
  Names *names = (Names *)lua_touserdata(L, 1);
  const char *text = (const char *)lua_touserdata(L, 2);
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
      add_name(names, "", 0, keywords[i], part);
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
            add_name(names, text, (size_t)(part - text), name, part);
        }
        lua_pop(L, 1);
      }
    }
    fallback_table(L);
  }
  return 0;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t eddy__repl_complete(lua_State *L, const char *word, char ***out) {
  Names names = {NULL, 0};
  size_t i, n = 0;
  lua_pushcfunction(L, l_complete);
  lua_pushlightuserdata(L, &names);
  lua_pushlightuserdata(L, (void *)word);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);  /* out of memory */
  if (names.n > 0) qsort(names.v, names.n, sizeof *names.v, compare_names);
  for (i = 0; i < names.n; i++) {  /* a name both in a table and in its */
    if (n > 0 && strcmp(names.v[n - 1], names.v[i]) == 0)  /* __index */
      free(names.v[i]);
    else
      names.v[n++] = names.v[i];
  }
  if (n == 0) {
    free(names.v);
    names.v = NULL;
  }
  *out = names.v;
  return n;
}
