/*
** acceptfail.c -- an LD_PRELOAD library for spec/server_spec.lua: accept4
** (libuv's accept) fails with errno EDDY_ACCEPT_ERRNO for as long as the
** file EDDY_ACCEPT_FAIL_WHILE exists.  Errors like ENOBUFS or ENOMEM
** cannot be caused at will otherwise; the test removes the file to end
** them.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  static accept4_fn real;
  const char *path = getenv("EDDY_ACCEPT_FAIL_WHILE");
  const char *err = getenv("EDDY_ACCEPT_ERRNO");
  if (path != NULL && err != NULL && access(path, F_OK) == 0) {
    errno = atoi(err);
    return -1;
  }
  if (real == NULL) *(void **)&real = dlsym(RTLD_NEXT, "accept4");
  return real(fd, addr, len, flags);
}
