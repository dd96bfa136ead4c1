/*
** exactmalloc.c -- an LD_PRELOAD malloc for spec/cli_spec.lua whose
** blocks have exactly the size asked (malloc_usable_size says so), as
** valgrind's, AddressSanitizer's or another malloc's may: eddy's allocator
** (src/alloc.c) must not assume glibc's size steps then.  Each block is
** followed by guard bytes, checked when it is freed: a write past its end
** aborts with a message.
*/
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

#define GUARD 16
#define GUARD_BYTE 0xa5
#define HEAD 32  /* base pointer and size, keeping 16-byte alignment */

typedef struct {
  void *base;
  size_t size;
} Head;

static Head *head_of(void *p) { return (Head *)((char *)p - sizeof(Head)); }

static void *alloc(size_t align, size_t n) {
  char *base, *p;
  if (align < 16) align = 16;
  if (n > SIZE_MAX / 2) return NULL;
  base = (char *)__libc_memalign(align, align + HEAD + n + GUARD);
  if (base == NULL) return NULL;
  p = (char *)(((uintptr_t)base + HEAD + align - 1) & ~(uintptr_t)(align - 1));
  head_of(p)->base = base;
  head_of(p)->size = n;
  memset(p + n, GUARD_BYTE, GUARD);
  return p;
}

void *malloc(size_t n) { return alloc(16, n); }

void free(void *p) {
  size_t i, n;
  if (p == NULL) return;
  n = head_of(p)->size;
  for (i = 0; i < GUARD; i++) {
    if (((unsigned char *)p)[n + i] != GUARD_BYTE) {
      static const char msg[] = "exactmalloc: write past the end of a block\n";
      if (write(2, msg, sizeof msg - 1) < 0) {}
      abort();
    }
  }
  __libc_free(head_of(p)->base);
}

void *calloc(size_t k, size_t n) {
  void *p;
  if (n != 0 && k > SIZE_MAX / n) return NULL;
  if ((p = alloc(16, k * n)) != NULL) memset(p, 0, k * n);
  return p;
}

void *realloc(void *p, size_t n) {
  void *q;
  if (p == NULL) return malloc(n);
  if (n == 0) {
    free(p);
    return NULL;
  }
  if ((q = malloc(n)) == NULL) return NULL;
  memcpy(q, p, head_of(p)->size < n ? head_of(p)->size : n);
  free(p);
  return q;
}

void *aligned_alloc(size_t align, size_t n) { return alloc(align, n); }
void *memalign(size_t align, size_t n) { return alloc(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
  void *p = alloc(align, n);
  if (p == NULL) return 12;  /* ENOMEM */
  *out = p;
  return 0;
}

size_t malloc_usable_size(void *p) { return p == NULL ? 0 : head_of(p)->size; }
