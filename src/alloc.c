/*
** alloc.c -- the allocator of the Lua states eddy creates itself: the
** eddy executable's, eddy_new's and the executor workers'.  (A host that
** does `require "eddy"` keeps its own allocator.)
**
** A loop allocates and frees blocks at a high rate: a Lua string for
** every read, and the collector frees them in batches of thousands.
** glibc's malloc serves a block from its per-thread cache in a few
** instructions, but that cache holds only seven blocks of a size: past
** them a small block goes through its fast bins (some 190 instructions a
** malloc and free), and a block of more than 1032 bytes through its
** bins, where free merges it with its free neighbours and the next malloc
** splits one again (some 400 a pair).  So these states keep the blocks
** they free on free lists per size class and take from those lists
** first, up to a budget of cached bytes each for small and large blocks;
** past it, blocks go back to free().
**
**   small: up to 520 bytes, a class per 16 bytes;
**   large: 1 KiB to 128 KiB, eight classes per power of two.
**
** The blocks of the large classes are aligned to cache lines, so that the
** bytes of all strings of 1 KiB or more sit at one offset within a line:
** the read path copies into them fastest from a source at that same
** offset (stream.c).
**
** A freed block is filed by malloc_usable_size, not by the size Lua says
** it had, so the blocks luaL_newstate allocated before this allocator
** was installed are as good as its own.  Small blocks are the exception
** with glibc's malloc, whose usable sizes are those of the small classes:
** there the size Lua says gives the class, and a free (one for every
** string the collector sweeps) costs no call.
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
/* Small class k (1 <= k <= NSMALL) holds blocks of at least 16k + 8
** bytes: glibc's usable sizes, a 16-byte chunk step less its 8-byte
** header, so a block of a class is no bigger than glibc's own would be. */
#define NSMALL 32
#define SMALL_SIZE(k) (((size_t)(k) << 4) + 8)
#define SMALL_MAX SMALL_SIZE(NSMALL) /* 520 */

/* Under AddressSanitizer nothing is reused, so that it still sees every
** use of a freed block; the class arithmetic runs all the same. */
#ifdef __SANITIZE_ADDRESS__
#define BUDGET 0
#define SMALL_BUDGET 0
#else
/* Bytes kept on the large lists, and on the small ones: one collection
** of a server's requests (HTTP, 50 connections) frees some 1.4 MiB of
** small strings at once, and what a budget turns away the next cycle
** takes from malloc again. */
#define BUDGET ((size_t)4 << 20)
#define SMALL_BUDGET ((size_t)4 << 20)
#endif

typedef struct FreeBlock {
  struct FreeBlock *next;
} FreeBlock;

typedef struct {
  FreeBlock *free[NCLASSES];
  size_t cached; /* bytes on the large lists */
  FreeBlock *small[NSMALL + 1]; /* small[k]: blocks of SMALL_SIZE(k) bytes or more */
  size_t small_cached;
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

/* Pop a block of 'size' bytes off 'list' (NULL: empty), keeping the
** count of cached bytes. */
static void *pop(FreeBlock **list, size_t *cached, size_t size) {
  FreeBlock *b = *list;
  if (b == NULL) return NULL;
  *list = b->next;
  *cached -= size;
  return b;
}

/* Push p, a block of 'size' bytes, onto 'list' unless that would take
** the cached bytes past 'budget'; otherwise free it. */
static void push(FreeBlock **list, size_t *cached, size_t size,
                 size_t budget, void *p) {
  if (*cached + size > budget) {
    free(p);
    return;
  }
  ((FreeBlock *)p)->next = *list;
  *list = (FreeBlock *)p;
  *cached += size;
}

/* The small class of blocks of n bytes (n <= SMALL_MAX): the smallest
** that holds them. */
static int small_class(size_t n) {
  return n <= SMALL_SIZE(1) ? 1 : (int)((n + 7) >> 4);
}

/* A small block of n bytes (n <= SMALL_MAX). */
static void *acquire_small(Cache *c, size_t n) {
  int k = small_class(n);
  void *b = pop(&c->small[k], &c->small_cached, SMALL_SIZE(k));
  /* (with nothing cached, the exact size: ASan then sees a 1-byte overrun) */
  if (b == NULL) return malloc(SMALL_BUDGET > 0 ? SMALL_SIZE(k) : n);
  assert(malloc_usable_size(b) >= n);
  return b;
}

static void *acquire(Cache *c, size_t n) {
  int k;
  void *b;
  if (n <= SMALL_MAX) return acquire_small(c, n);
  if (!in_classes(n)) return malloc(n);
  k = class_above(n);
  if ((b = pop(&c->free[k], &c->cached, class_size(k))) == NULL)
    return aligned_alloc(BLOCK_ALIGN, class_size(k));
  assert(malloc_usable_size(b) >= n);
  return b;
}

/*
** Whether a block Lua says has n bytes has the usable size of small class
** small_class(n) or more.  With glibc's malloc it does: a malloc of n
** bytes gets a chunk of n + 8 rounded up to 16 bytes (32 at least), less
** 8 for the header: SMALL_SIZE(small_class(n)), whoever allocated it;
** realloc keeps that rule, and a block cache_alloc keeps for a smaller
** size only has more room.  Another malloc may stand in for glibc's at
** run time (AddressSanitizer's, valgrind's, a preloaded jemalloc), with
** blocks of the size asked or other steps: eddy__newstate asks malloc
** once, and elsewhere malloc_usable_size tells.
*/
#if defined(__GLIBC__)
static int small_sizes_are_glibcs;
static uv_once_t small_sizes_once = UV_ONCE_INIT;

static void probe_small_sizes(void) {
  static const size_t sizes[] = {1, 24, 25, 40, 41, 100, 519, SMALL_MAX};
  size_t i;
  int same = 1;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = malloc(sizes[i]);
    if (p == NULL || malloc_usable_size(p) != SMALL_SIZE(small_class(sizes[i])))
      same = 0;
    free(p);
  }
  small_sizes_are_glibcs = same;
}
#define PROBE_SMALL_SIZES() uv_once(&small_sizes_once, probe_small_sizes)
#define SIZE_TELLS_SMALL_CLASS(n) (small_sizes_are_glibcs && (n) <= SMALL_MAX)
#else
#define PROBE_SMALL_SIZES() ((void)0)
#define SIZE_TELLS_SMALL_CLASS(n) 0
#endif

/* Free p, a block Lua says has 'osize' bytes: onto the list of the
** largest class it can serve, when it fits one. */
static void release(Cache *c, void *p, size_t osize) {
  size_t usable;
  int k;
  if (SIZE_TELLS_SMALL_CLASS(osize)) {
    k = small_class(osize);
    push(&c->small[k], &c->small_cached, SMALL_SIZE(k), SMALL_BUDGET, p);
    return;
  }
  usable = malloc_usable_size(p);
  if (usable < SMALL_SIZE(1) || usable >= 2 * CLASS_MAX) {  /* not ours */
    free(p);
  } else if (usable < CLASS_MIN) {
    k = usable >= SMALL_MAX ? NSMALL : (int)((usable - 8) >> 4);
    push(&c->small[k], &c->small_cached, SMALL_SIZE(k), SMALL_BUDGET, p);
  } else {
    k = usable >= CLASS_MAX ? NCLASSES - 1 : class_index(usable);
    push(&c->free[k], &c->cached, class_size(k), BUDGET, p);
  }
}

/* Resize ptr, a block of osize bytes, to nsize (> 0) bytes.  Lua counts
** on a shrinking call never failing.  (Out of line: cache_alloc's usual
** calls, a malloc or a free, then save no registers.) */
static EDDY_NOINLINE void *resize(Cache *c, void *ptr, size_t osize,
                                  size_t nsize) {
  void *n;
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

/* lua_Alloc: osize is the old size when ptr is not NULL. */
static void *cache_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Cache *c = (Cache *)ud;
  if (nsize == 0) {
    if (ptr != NULL) release(c, ptr, osize);
    return NULL;
  }
  if (ptr == NULL) return acquire(c, nsize);
  return resize(c, ptr, osize, nsize);
}

static void free_list(FreeBlock *b) {
  while (b != NULL) {
    FreeBlock *next = b->next;
    free(b);
    b = next;
  }
}

static void drop_cache(Cache *c) {
  int k;
  for (k = 0; k < NCLASSES; k++) free_list(c->free[k]);
  for (k = 0; k <= NSMALL; k++) free_list(c->small[k]);
  free(c);
}

lua_State *eddy__newstate(void) {
  Cache *c;
  lua_State *L;
  PROBE_SMALL_SIZES();
  if ((c = (Cache *)calloc(1, sizeof *c)) == NULL) return NULL;
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
