/*
** acceptfail.c -- an LD_PRELOAD library for spec/server_spec.lua: accept4
** (libuv's accept) fails with errno EDDY_ACCEPT_ERRNO for as long as the
** file EDDY_ACCEPT_FAIL_WHILE exists.  Errors like ENOBUFS or ENOMEM
** cannot be caused at will otherwise; the test removes the file to end
** them.  With EDDY_DUP_FAIL set too, fcntl(F_DUPFD_CLOEXEC) fails with
** EMFILE meanwhile: the server's reopening of its socket then fails.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*fcntl_fn)(int, int, ...);

static int failing(void) {
  const char *path = getenv("EDDY_ACCEPT_FAIL_WHILE");
  return path != NULL && access(path, F_OK) == 0;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  static accept4_fn real;
  const char *err = getenv("EDDY_ACCEPT_ERRNO");
  if (err != NULL && failing()) {
    errno = atoi(err);
    return -1;
  }
  if (real == NULL) *(void **)&real = dlsym(RTLD_NEXT, "accept4");
  return real(fd, addr, len, flags);
}

/* The argument is passed on as glibc's own fcntl reads it. */
int fcntl(int fd, int cmd, ...) {
  static fcntl_fn real;
  va_list ap;
  void *arg;
  va_start(ap, cmd);
  arg = va_arg(ap, void *);
  va_end(ap);
  if (cmd == F_DUPFD_CLOEXEC && getenv("EDDY_DUP_FAIL") != NULL && failing()) {
    errno = EMFILE;
    return -1;
  }
  if (real == NULL) *(void **)&real = dlsym(RTLD_NEXT, "fcntl");
  return real(fd, cmd, arg);
}
