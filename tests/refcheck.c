/*
** refcheck.c -- an LD_PRELOAD library that checks every registry reference
** the process takes and frees (luaL_ref / luaL_unref on
** LUA_REGISTRYINDEX), for tools/run-tests.sh.
**
** Freeing a reference twice does not fail where it happens: Lua's free
** list then holds the slot twice, the next two luaL_ref calls return the
** same number, and one object anchored there is silently replaced by
** another -- found later as a callback run on the wrong object, or a crash
** far away.  Here the second free aborts at once, with a backtrace, and so
** does a luaL_ref that returns a slot still in use.
**
** Each lua_State's registry has its own table of slots (executor workers
** and embedders run several states, on several threads); lua_close drops
** it, since the next state may get the same address.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

enum { FREE_SLOT = 0, IN_USE = 1 };

typedef struct {
  const void *registry;    /* identifies the state: its registry table */
  unsigned char *slots;    /* IN_USE or FREE_SLOT, by reference number */
  size_t nslots;
} Registry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Registry *registries;
static size_t nregistries;

static const void *registry_of(lua_State *L) {
  const void *p;
  lua_pushvalue(L, LUA_REGISTRYINDEX);
  p = lua_topointer(L, -1);
  lua_pop(L, 1);
  return p;
}

/* The slot table of 'registry', made on first use; under the lock. */
static Registry *find(const void *registry) {
  size_t i;
  Registry *grown;
  for (i = 0; i < nregistries; i++)
    if (registries[i].registry == registry) return &registries[i];
  grown = realloc(registries, (nregistries + 1) * sizeof *grown);
  if (grown == NULL) abort();
  registries = grown;
  memset(&registries[nregistries], 0, sizeof *registries);
  registries[nregistries].registry = registry;
  return &registries[nregistries++];
}

/* Slot 'ref' of r, growing the table; under the lock. */
static unsigned char *slot(Registry *r, int ref) {
  if ((size_t)ref >= r->nslots) {
    size_t n = ((size_t)ref + 1) * 2;
    unsigned char *grown = realloc(r->slots, n);
    if (grown == NULL) abort();
    memset(grown + r->nslots, FREE_SLOT, n - r->nslots);
    r->slots = grown;
    r->nslots = n;
  }
  return &r->slots[ref];
}

static void fail(const char *what, int ref) {
  void *frames[40];
  int n = backtrace(frames, 40);
  fprintf(stderr, "refcheck: %s (registry reference %d)\n", what, ref);
  backtrace_symbols_fd(frames, n, 2);
  abort();
}

/* The wrapped function 'name', looked up once into *cache.  Threads (the
** executor's workers close their states) may race to fill it: the
** accesses are atomic, and every thread stores the same value. */
static void *real(void **cache, const char *name) {
  void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
  if (f != NULL) return f;
  f = dlsym(RTLD_NEXT, name);
  if (f == NULL) {
    fprintf(stderr, "refcheck: no %s to wrap\n", name);
    abort();
  }
  __atomic_store_n(cache, f, __ATOMIC_RELEASE);
  return f;
}

int luaL_ref(lua_State *L, int t) {
  static void *cache;
  int (*next)(lua_State *, int) =
      (int (*)(lua_State *, int))real(&cache, "luaL_ref");
  int ref = next(L, t);
  if (t == LUA_REGISTRYINDEX && ref > 0) {
    unsigned char *s;
    pthread_mutex_lock(&lock);
    s = slot(find(registry_of(L)), ref);
    if (*s == IN_USE) fail("luaL_ref returned a reference in use", ref);
    *s = IN_USE;
    pthread_mutex_unlock(&lock);
  }
  return ref;
}

void luaL_unref(lua_State *L, int t, int ref) {
  static void *cache;
  void (*next)(lua_State *, int, int) =
      (void (*)(lua_State *, int, int))real(&cache, "luaL_unref");
  if (t == LUA_REGISTRYINDEX && ref > 0) {
    unsigned char *s;
    pthread_mutex_lock(&lock);
    s = slot(find(registry_of(L)), ref);
    if (*s != IN_USE) fail("luaL_unref of a reference not taken", ref);
    *s = FREE_SLOT;
    pthread_mutex_unlock(&lock);
  }
  next(L, t, ref);
}

void lua_close(lua_State *L) {
  static void *cache;
  void (*next)(lua_State *) = (void (*)(lua_State *))real(&cache, "lua_close");
  const void *registry = registry_of(L);
  size_t i;
  next(L);
  pthread_mutex_lock(&lock);
  for (i = 0; i < nregistries; i++)
    if (registries[i].registry == registry) {
      free(registries[i].slots);
      registries[i] = registries[--nregistries];
      break;
    }
  pthread_mutex_unlock(&lock);
}
