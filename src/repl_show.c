/*
** repl_show.c -- how the REPL shows values on a terminal: strings quoted
** with escapes, tables with their contents (nested up to a depth, cycles
** marked, on one line when short).  Piped input keeps lua.c's plain print.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "repl.h"

/* Nested tables deeper than this show as {...}. */
#define SHOW_DEPTH 4
/* A table shows on one line when that line fits this many bytes. */
#define SHOW_WIDTH 72

/* Push the string at i quoted, with escapes for control characters. */
static void show_string(lua_State *L, int i) {
  size_t len, k;
  const unsigned char *s = (const unsigned char *)lua_tolstring(L, i, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (k = 0; k < len; k++) {
    unsigned char c = s[k];
    const char *esc = NULL;
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      case '\a': esc = "\\a"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      case '\v': esc = "\\v"; break;
    }
    if (esc != NULL) {
      luaL_addstring(&b, esc);
    } else if (c < 32 || c == 127) {
      char num[8];
      snprintf(num, sizeof num, "\\%03d", c);
      luaL_addstring(&b, num);
    } else {
      luaL_addchar(&b, (char)c);
    }
  }
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
}

int eddy__repl_is_identifier(const char *s, size_t len) {
  static const char *const keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for",
    "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat",
    "return", "then", "true", "until", "while", NULL
  };
  size_t k;
  int i;
  if (len == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (k = 0; k < len; k++) {
    char c = s[k];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  for (i = 0; keywords[i] != NULL; i++)
    if (strcmp(s, keywords[i]) == 0) return 0;
  return 1;
}

/* A key to sort: numbers first, then strings, then the rest as found. */
typedef struct {
  int rank;
  lua_Number num;
  const char *str;
  size_t len;
  int slot;  /* index in the keys table */
} SortKey;

static int sortkey_cmp(const void *a, const void *b) {
  const SortKey *x = (const SortKey *)a, *y = (const SortKey *)b;
  if (x->rank != y->rank) return x->rank - y->rank;
  if (x->rank == 0 && x->num != y->num) return x->num < y->num ? -1 : 1;
  if (x->rank == 1) {
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->str, y->str, n);
    if (c != 0) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
  }
  return x->slot - y->slot;
}

/* Push a key as it shows before " = ". */
static void show_key(lua_State *L, int k, int seen, int depth) {
  size_t len;
  k = lua_absindex(L, k);
  if (lua_type(L, k) == LUA_TSTRING) {
    const char *s = lua_tolstring(L, k, &len);
    if (eddy__repl_is_identifier(s, len)) {
      lua_pushvalue(L, k);
      return;
    }
  }
  lua_pushliteral(L, "[");
  eddy__repl_show(L, k, seen, depth);
  lua_pushliteral(L, "]");
  lua_concat(L, 3);
}

/*
** Push the table at t with its contents: the array part 1..n first, then
** the other keys sorted.  'seen' holds the tables on the current path, so
** a cycle shows as <cycle table: 0x...> instead of recursing.
*/
static void show_table(lua_State *L, int t, int seen, int depth) {
  lua_Integer n, k;
  size_t nkeys = 0, total = 0, i;
  int items, keys, multiline = 0;
  SortKey *sorted;
  if (lua_rawgetp(L, seen, lua_topointer(L, t)) != LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushfstring(L, "<cycle table: %p>", lua_topointer(L, t));
    return;
  }
  lua_pop(L, 1);
  if (depth >= SHOW_DEPTH) {
    lua_pushliteral(L, "{...}");
    return;
  }
  luaL_checkstack(L, 10, "table too deep to show");
  lua_pushboolean(L, 1);
  lua_rawsetp(L, seen, lua_topointer(L, t));
  lua_newtable(L);  /* the items' strings */
  items = lua_gettop(L);
  lua_newtable(L);  /* the keys past the array part */
  keys = lua_gettop(L);
  for (n = 0; lua_rawgeti(L, t, n + 1) != LUA_TNIL; n++) {
    eddy__repl_show(L, -1, seen, depth + 1);
    lua_rawseti(L, items, n + 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && (k = lua_tointeger(L, -1)) >= 1 && k <= n)
      continue;
    lua_pushvalue(L, -1);
    lua_rawseti(L, keys, (lua_Integer)++nkeys);
  }
  sorted = (SortKey *)lua_newuserdatauv(L, (nkeys ? nkeys : 1) * sizeof *sorted, 0);
  for (i = 0; i < nkeys; i++) {
    SortKey *sk = &sorted[i];
    int type = lua_rawgeti(L, keys, (lua_Integer)i + 1);
    sk->slot = (int)i + 1;
    sk->rank = type == LUA_TNUMBER ? 0 : type == LUA_TSTRING ? 1 : 2;
    sk->num = type == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    sk->str = type == LUA_TSTRING ? lua_tolstring(L, -1, &sk->len) : NULL;
    lua_pop(L, 1);  /* the keys table anchors it */
  }
  qsort(sorted, nkeys, sizeof *sorted, sortkey_cmp);
  for (i = 0; i < nkeys; i++) {
    lua_rawgeti(L, keys, sorted[i].slot);  /* key */
    show_key(L, -1, seen, depth + 1);
    lua_pushliteral(L, " = ");
    lua_pushvalue(L, -3);
    lua_rawget(L, t);  /* key, "key", " = ", value */
    eddy__repl_show(L, -1, seen, depth + 1);
    lua_remove(L, -2);
    lua_concat(L, 3);
    lua_rawseti(L, items, n + (lua_Integer)i + 1);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  lua_rawsetp(L, seen, lua_topointer(L, t));
  /* One line if it fits and no item spans lines. */
  for (k = 1; k <= n + (lua_Integer)nkeys; k++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, items, k);
    s = lua_tolstring(L, -1, &len);
    total += len + 2;
    if (memchr(s, '\n', len) != NULL) multiline = 1;
    lua_pop(L, 1);
  }
  if (total + 4 > SHOW_WIDTH) multiline = 1;
  {
    luaL_Buffer b;
    lua_Integer count = n + (lua_Integer)nkeys;
    int pad;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (k = 1; k <= count; k++) {
      if (multiline) {
        luaL_addchar(&b, '\n');
        for (pad = 0; pad < depth + 1; pad++) luaL_addstring(&b, "  ");
      } else {
        luaL_addchar(&b, ' ');
      }
      lua_rawgeti(L, items, k);
      luaL_addvalue(&b);
      if (k < count) luaL_addchar(&b, ',');
    }
    if (multiline) {
      luaL_addchar(&b, '\n');
      for (pad = 0; pad < depth; pad++) luaL_addstring(&b, "  ");
    } else if (count > 0) {
      luaL_addchar(&b, ' ');
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
  }
  lua_replace(L, items);
  lua_settop(L, items);
}

void eddy__repl_show(lua_State *L, int i, int seen, int depth) {
  i = lua_absindex(L, i);
  switch (lua_type(L, i)) {
    case LUA_TSTRING:
      show_string(L, i);
      return;
    case LUA_TTABLE:
      if (luaL_getmetafield(L, i, "__tostring") == LUA_TNIL &&
          luaL_getmetafield(L, i, "__name") == LUA_TNIL) {
        show_table(L, i, seen, depth);
        return;
      }
      lua_pop(L, 1);
      /* FALLTHROUGH */
    default:
      luaL_tolstring(L, i, NULL);
      return;
  }
}
