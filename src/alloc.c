/*
** alloc.c -- the allocator of the Lua states eddy creates itself: the
** eddy executable's, eddy_new's and the executor workers'.  (A host that
** does `require "eddy"` keeps its own allocator.)
**
** glibc's malloc hands out blocks of up to 1032 bytes from per-thread
** caches in a few instructions.  Larger ones go through its bins: free
** merges the block with its free neighbours and the next malloc splits
** one again, some 400 instructions a pair.  An I/O loop allocates just
** such blocks at a high rate -- a Lua string for every read of 1 KiB or
** more -- and the collector frees them in batches.  So these states keep
** the blocks of 1 KiB to 128 KiB they free on a free list per size class
** (eight classes per power of two) and take from those lists first, up
** to a budget of cached bytes; past it, blocks go back to free().
**
** The blocks of the classes are aligned to cache lines, so that the bytes
** of all strings of 1 KiB or more sit at one offset within a line: the
** read path copies into them fastest from a source at that same offset
** (stream.c).
**
** A freed block is filed by malloc_usable_size, not by the size Lua says
** it had, so the blocks luaL_newstate allocated before this allocator
** was installed are as good as its own.
*/
#include <assert.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "internal.h"

#define CLASS_MIN_LOG2 10 /* 1 KiB: smaller blocks are glibc's tcache's */
#define CLASS_MAX_LOG2 17 /* 128 KiB: larger reads do not exist (stream.c) */
#define BLOCK_ALIGN 64    /* a cache line; every class size is a multiple */
#define STEPS_LOG2 3      /* 8 classes per power of two: at most 12.5% slack */
#define NCLASSES (((CLASS_MAX_LOG2 - CLASS_MIN_LOG2) << STEPS_LOG2) + 1)
#define CLASS_MIN ((size_t)1 << CLASS_MIN_LOG2)
#define CLASS_MAX ((size_t)1 << CLASS_MAX_LOG2)

/* Under AddressSanitizer nothing is reused, so that it still sees every
** use of a freed block; the class arithmetic runs all the same. */
#ifdef __SANITIZE_ADDRESS__
#define BUDGET 0
#else
#define BUDGET ((size_t)4 << 20) /* bytes kept on the free lists */
#endif

typedef struct FreeBlock {
  struct FreeBlock *next;
} FreeBlock;

typedef struct {
  FreeBlock *free[NCLASSES];
  size_t cached; /* bytes on the lists */
} Cache;

static size_t class_size(int c) {
  int p = CLASS_MIN_LOG2 + (c >> STEPS_LOG2);
  size_t steps = ((size_t)1 << STEPS_LOG2) + (size_t)(c & ((1 << STEPS_LOG2) - 1));
  return steps << (p - STEPS_LOG2);
}

static int log2_floor(size_t n) {
  return (int)(sizeof(unsigned long long) * 8 - 1) - __builtin_clzll(n);
}

/* The class of size n: its leading power of two and next STEPS_LOG2 bits
** (n >= CLASS_MIN). */
static int class_index(size_t n) {
  int p = log2_floor(n);
  int step = (int)(n >> (p - STEPS_LOG2)) & ((1 << STEPS_LOG2) - 1);
  return ((p - CLASS_MIN_LOG2) << STEPS_LOG2) + step;
}

/* The smallest class whose blocks hold n bytes (CLASS_MIN <= n <= CLASS_MAX). */
static int class_above(size_t n) {
  return n == CLASS_MIN ? 0 : class_index(n - 1) + 1;
}

static int in_classes(size_t n) { return n >= CLASS_MIN && n <= CLASS_MAX; }

static void *acquire(Cache *c, size_t n) {
  int k;
  FreeBlock *b;
  if (!in_classes(n)) return malloc(n);
  k = class_above(n);
  if ((b = c->free[k]) == NULL) return aligned_alloc(BLOCK_ALIGN, class_size(k));
  c->free[k] = b->next;
  c->cached -= class_size(k);
  assert(malloc_usable_size(b) >= n);
  return b;
}

/* Free p, of osize bytes for Lua: onto a list when it fits one.  A block
** Lua knew as smaller than CLASS_MIN goes back to glibc unexamined. */
static void release(Cache *c, void *p, size_t osize) {
  size_t usable;
  int k;
  if (osize < CLASS_MIN || (usable = malloc_usable_size(p)) < CLASS_MIN) {
    free(p);
    return;
  }
  if (usable >= 2 * CLASS_MAX) {  /* not one of ours */
    free(p);
    return;
  }
  k = usable >= CLASS_MAX ? NCLASSES - 1 : class_index(usable);
  if (c->cached + class_size(k) > BUDGET) {
    free(p);
    return;
  }
  ((FreeBlock *)p)->next = c->free[k];
  c->free[k] = (FreeBlock *)p;
  c->cached += class_size(k);
}

/* lua_Alloc: osize is the old size when ptr is not NULL.  Lua counts on
** a shrinking call never failing. */
static void *cache_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Cache *c = (Cache *)ud;
  void *n;
  if (nsize == 0) {
    if (ptr != NULL) release(c, ptr, osize);
    return NULL;
  }
  if (ptr == NULL) return acquire(c, nsize);
  if (!in_classes(nsize) && !in_classes(osize)) return realloc(ptr, nsize);
  if (nsize <= osize || nsize <= malloc_usable_size(ptr)) {
    /* shrinking keeps the block unless most of it would be idle */
    if (nsize >= osize / 2) return ptr;
  }
  if ((n = acquire(c, nsize)) == NULL) return nsize <= osize ? ptr : NULL;
  memcpy(n, ptr, osize < nsize ? osize : nsize);
  release(c, ptr, osize);
  return n;
}

static void drop_cache(Cache *c) {
  int k;
  for (k = 0; k < NCLASSES; k++) {
    while (c->free[k] != NULL) {
      FreeBlock *b = c->free[k];
      c->free[k] = b->next;
      free(b);
    }
  }
  free(c);
}

lua_State *eddy__newstate(void) {
  Cache *c = (Cache *)calloc(1, sizeof *c);
  lua_State *L;
  if (c == NULL) return NULL;
  if ((L = luaL_newstate()) == NULL) {
    free(c);
    return NULL;
  }
  lua_setallocf(L, cache_alloc, c);
  return L;
}

void eddy__closestate(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  lua_close(L);
  drop_cache((Cache *)ud);
}
