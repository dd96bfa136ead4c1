/*
** fds.c -- descriptors Lua must not break: the standard ones, and the
** pipes libuv keeps for itself.
**
** libuv asserts (and aborts the process) when it closes a descriptor
** below 3, and a descriptor that was closed is handed out again by the
** next socket() or accept().  So eddy keeps 0-2 open for the process's
** whole life, as Node does: missing ones are opened on /dev/null when
** eddy starts, a Lua socket object that "closes" one of them points it
** at /dev/null instead, and a socket adopted from one of them (stdin as
** a socket under inetd) is moved above 2 before libuv sees it.
**
** libuv delivers signals through pipes: one per loop (signal_pipefd)
** and a process-wide one it uses as a lock.  A pipe transport given one
** of their numbers would steal its bytes or feed it garbage (libuv then
** reads a wild handle pointer) and finally close it, and so would a
** child given one as its stdio or in pass_fds, or sendfile reading one,
** so eddy__fd_is_libuv_pipe recognizes them: the lock pipe is found once,
** by the descriptors a first uv_loop_init leaves behind, and every eddy
** loop is on a list while open.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Point fd (0-2) at /dev/null; 0 or -errno. */
static int to_devnull(int fd) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC), r = 0;
  if (null < 0) return -errno;
  if (null != fd) {
    if (dup2(null, fd) < 0) r = -errno;
    close(null);
  }
  return r;
}

static void find_lock_pipe(void);
static uv_once_t libuv_pipes_once = UV_ONCE_INIT;

void eddy__fds_init(void) {
  int fd;
  for (fd = 0; fd <= STDERR_FILENO; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) to_devnull(fd);
  uv_once(&libuv_pipes_once, find_lock_pipe);
}

int eddy__fd_close(int fd) {
  if (fd <= STDERR_FILENO) return to_devnull(fd);
  return close(fd) == 0 ? 0 : -errno;
}

int eddy__fd_for_uv(int fd) {
  int moved;
  if (fd > STDERR_FILENO) return fd;
  moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) return -errno;
  to_devnull(fd);
  return moved;
}

/* {====================================================== libuv's pipes */

typedef struct {
  dev_t dev;
  ino_t ino;
} PipeId;

static PipeId lock_pipe;
static int have_lock_pipe;
static uv_mutex_t loops_lock;  /* guards open_loops */
static eddy_Loop *open_loops;  /* every open eddy loop, by fds_next */

static int pipe_id(int fd, PipeId *id) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) return 0;
  id->dev = st.st_dev;
  id->ino = st.st_ino;
  return 1;
}

static int same_pipe(const PipeId *a, const PipeId *b) {
  return a->dev == b->dev && a->ino == b->ino;
}

/* The open descriptors of this process, from /proc (Linux); n = -1 when
** they cannot be listed.  The array is malloc'ed. */
static int *list_fds(int *n) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int *fds = NULL, cap = 0;
  *n = -1;
  if (d == NULL) return NULL;
  *n = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (*n == cap) {
      int *grown = (int *)realloc(fds, (size_t)(cap = cap * 2 + 16) * sizeof *fds);
      if (grown == NULL) {
        *n = -1;
        break;
      }
      fds = grown;
    }
    fds[(*n)++] = atoi(e->d_name);
  }
  closedir(d);
  return fds;
}

/* The lock pipe is made by the first uv_loop_init of the process: make
** one and keep the pipe it leaves open.  (If the host initialized libuv
** before eddy, nothing is new and the lock pipe stays unknown.) */
static void find_lock_pipe(void) {
  uv_loop_t probe;
  int nbefore, nafter = -1, i, j, *before, *after = NULL;
  uv_mutex_init(&loops_lock);
  before = list_fds(&nbefore);
  if (nbefore >= 0 && uv_loop_init(&probe) == 0) {
    uv_loop_close(&probe);
    after = list_fds(&nafter);
  }
  for (i = 0; i < nafter && !have_lock_pipe; i++) {
    for (j = 0; j < nbefore && before[j] != after[i]; j++) {}
    if (j == nbefore) have_lock_pipe = pipe_id(after[i], &lock_pipe);
  }
  free(before);
  free(after);
}

void eddy__fds_track_loop(eddy_Loop *loop) {
  uv_mutex_lock(&loops_lock);
  loop->fds_next = open_loops;
  open_loops = loop;
  uv_mutex_unlock(&loops_lock);
}

void eddy__fds_untrack_loop(eddy_Loop *loop) {
  eddy_Loop **p;
  uv_mutex_lock(&loops_lock);
  for (p = &open_loops; *p != NULL; p = &(*p)->fds_next)
    if (*p == loop) {
      *p = loop->fds_next;
      break;
    }
  uv_mutex_unlock(&loops_lock);
}

int eddy__fd_is_libuv_pipe(int fd) {
  PipeId id, other;
  eddy_Loop *l;
  int found = 0, i;
  if (!pipe_id(fd, &id)) return 0;
  if (have_lock_pipe && same_pipe(&id, &lock_pipe)) return 1;
  uv_mutex_lock(&loops_lock);
  for (l = open_loops; l != NULL && !found; l = l->fds_next)
    for (i = 0; i < 2; i++)
      if (pipe_id(l->uv->signal_pipefd[i], &other) && same_pipe(&id, &other))
        found = 1;
  uv_mutex_unlock(&loops_lock);
  return found;
}

void eddy__check_not_libuv_pipe(lua_State *L, int fd) {
  if (eddy__fd_is_libuv_pipe(fd))
    eddy__error(L, "ValueError", "descriptor %d is a pipe libuv uses for "
                "itself (signal delivery)", fd);
}

/* }====================================================== */
