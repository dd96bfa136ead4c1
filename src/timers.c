/*
** timers.c -- the loop's timer heap (call_later / call_at).
**
** Timers are TimerHandles in a binary heap ordered by (when, seq): due time
** on the nanosecond clock, then scheduling order, so equal times run FIFO.
** One libuv timer ("wake") is armed for the earliest one; libuv's
** millisecond timers only wake the loop, the heap decides what is due, so
** a callback never runs before its time.  A heap entry is anchored in the
** loop's anchors table until it leaves the heap.  Cancelled timers are
** dropped lazily: when they reach the top, or all at once when they are
** more than half of a large heap (asyncio's rule), so memory stays bounded.
*/
#include <math.h>
#include <stdlib.h>

#include "internal.h"

#define container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#define MIN_COMPACT 100

static int earlier(const eddy_TimerHandle *a, const eddy_TimerHandle *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void sift_up(eddy_TimerHandle **heap, size_t i) {
  eddy_TimerHandle *h = heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(h, heap[parent])) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = h;
}

static void sift_down(eddy_TimerHandle **heap, size_t n, size_t i) {
  eddy_TimerHandle *h = heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && earlier(heap[child + 1], heap[child])) child++;
    if (!earlier(heap[child], h)) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = h;
}

/* Remove the top of the heap. */
static eddy_TimerHandle *heap_pop(eddy_Loop *loop) {
  eddy_TimerHandle *top = loop->heap[0];
  if (--loop->nheap > 0) {
    loop->heap[0] = loop->heap[loop->nheap];
    sift_down(loop->heap, loop->nheap, 0);
  }
  top->in_heap = 0;
  return top;
}

static void unanchor(lua_State *L, eddy_Loop *loop, eddy_TimerHandle *h) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->anchors_ref);
  luaL_unref(L, -1, h->anchor);
  lua_pop(L, 1);
  h->anchor = LUA_NOREF;
}

/*
** libuv's timer fired: the due timers join the ready queue.  Not once
** stop() ends a run of eddy__loop_run or eddy_run (the loop is RUNNING
** until they return): libuv still runs the timers due at the end of that
** uv_run, but asyncio makes timers ready only at the start of an
** iteration, so they wait in the heap, behind what is scheduled before
** the next run, which arms the wake timer again.
*/
static void wake_cb(uv_timer_t *t) {
  eddy_Loop *loop = container_of(t, eddy_Loop, wake);
  loop->wake_at_ms = 0;
  if (loop->stopping && loop->state == EDDY_LOOP_RUNNING) return;
  eddy__timers_process(loop->rt->L, loop);
}

/* Drop cancelled timers from the top. */
static void drop_cancelled_top(lua_State *L, eddy_Loop *loop) {
  while (loop->nheap > 0 && loop->heap[0]->h.cancelled) {
    eddy_TimerHandle *h = heap_pop(loop);
    loop->ncancelled_timers--;
    unanchor(L, loop, h);
  }
}

/* Arm the wake timer for the earliest timer, or stop it. */
void eddy__timers_rearm(eddy_Loop *loop) {
  double delay;
  uint64_t ms;
  if (loop->nheap == 0) {
    if (loop->wake_at_ms != 0) uv_timer_stop(&loop->wake);
    loop->wake_at_ms = 0;
    return;
  }
  delay = loop->heap[0]->when - eddy__time(loop);
  if (delay <= 0) {
    ms = 0;
  } else {
    double d = ceil(delay * 1000.0);
    ms = d > 9.0e15 ? (uint64_t)9.0e15 : (uint64_t)d;
  }
  /* Compare due times on libuv's clock; 0 means "not armed". */
  if (loop->wake_at_ms == uv_now(loop->uv) + ms + 1) return;
  loop->wake_at_ms = uv_now(loop->uv) + ms + 1;
  uv_timer_start(&loop->wake, wake_cb, ms, 0);
}

void eddy__timer_schedule(lua_State *L, eddy_Loop *loop, eddy_TimerHandle *h,
                          int idx) {
  idx = lua_absindex(L, idx);
  if (loop->nheap == loop->heapcap) {
    size_t ncap = loop->heapcap ? loop->heapcap * 2 : 64;
    eddy_TimerHandle **nh =
        (eddy_TimerHandle **)realloc(loop->heap, ncap * sizeof(eddy_TimerHandle *));
    if (nh == NULL) luaL_error(L, "not enough memory");
    loop->heap = nh;
    loop->heapcap = ncap;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->anchors_ref);
  lua_pushvalue(L, idx);
  h->anchor = luaL_ref(L, -2);
  lua_pop(L, 1);
  h->seq = loop->timer_seq++;
  h->in_heap = 1;
  loop->heap[loop->nheap] = h;
  sift_up(loop->heap, loop->nheap);
  loop->nheap++;
  if (loop->heap[0] == h) eddy__timers_rearm(loop);
}

/* Rebuild the heap without its cancelled timers. */
static void compact(lua_State *L, eddy_Loop *loop) {
  size_t i, n = 0;
  for (i = 0; i < loop->nheap; i++) {
    eddy_TimerHandle *h = loop->heap[i];
    if (h->h.cancelled) {
      h->in_heap = 0;
      unanchor(L, loop, h);
    } else {
      loop->heap[n++] = h;
    }
  }
  loop->nheap = n;
  loop->ncancelled_timers = 0;
  for (i = n / 2; i-- > 0;) sift_down(loop->heap, n, i);
}

void eddy__timer_cancelled(eddy_Loop *loop) {
  lua_State *L = loop->rt->L;
  if (loop->state == EDDY_LOOP_CLOSED) return;
  loop->ncancelled_timers++;
  if (loop->nheap > MIN_COMPACT && loop->ncancelled_timers * 2 > loop->nheap)
    compact(L, loop);
  else
    drop_cancelled_top(L, loop);
  eddy__timers_rearm(loop);  /* a cancelled timer must not keep us alive */
}

void eddy__timers_process(lua_State *L, eddy_Loop *loop) {
  double now;
  if (loop->nheap == 0) return;
  now = eddy__time(loop);
  while (loop->nheap > 0) {
    eddy_TimerHandle *h = loop->heap[0];
    if (h->h.cancelled) {
      heap_pop(loop);
      loop->ncancelled_timers--;
      unanchor(L, loop, h);
      continue;
    }
    if (h->when > now) break;
    eddy__ready_reserve(L, loop, 1);  /* then nothing raises: not lost */
    heap_pop(loop);
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->anchors_ref);
    lua_rawgeti(L, -1, h->anchor);
    eddy__ready_push(L, loop, -1);
    luaL_unref(L, -2, h->anchor);
    h->anchor = LUA_NOREF;
    lua_pop(L, 2);
  }
  eddy__timers_rearm(loop);
}

/* Whether the earliest timer is due: the next iteration makes it ready.
** A cancelled one at the top counts too (it is dropped then). */
int eddy__timers_due(eddy_Loop *loop) {
  return loop->nheap > 0 && loop->heap[0]->when <= eddy__time(loop);
}

void eddy__timers_clear(lua_State *L, eddy_Loop *loop) {
  size_t i;
  for (i = 0; i < loop->nheap; i++) loop->heap[i]->in_heap = 0;
  loop->nheap = 0;
  loop->ncancelled_timers = 0;
  /* (their anchors go with the table, which the closed loop drops) */
  if (loop->wake_at_ms != 0) uv_timer_stop(&loop->wake);
  loop->wake_at_ms = 0;
  (void)L;
}
