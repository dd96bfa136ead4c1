/*
** fds.c -- keeping the standard descriptors 0, 1 and 2 open.
**
** libuv asserts (and aborts the process) when it closes a descriptor
** below 3, and a descriptor that was closed is handed out again by the
** next socket() or accept().  So eddy keeps 0-2 open for the process's
** whole life, as Node does: missing ones are opened on /dev/null when
** eddy starts, a Lua socket object that "closes" one of them points it
** at /dev/null instead, and a socket adopted from one of them (stdin as
** a socket under inetd) is moved above 2 before libuv sees it.
*/
#include <errno.h>
#include <fcntl.h>
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

void eddy__keep_stdio_open(void) {
  int fd;
  for (fd = 0; fd <= STDERR_FILENO; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) to_devnull(fd);
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
