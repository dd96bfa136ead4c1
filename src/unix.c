/*
** unix.c -- the UNIX-socket parts of create_unix_connection and
** create_unix_server: connecting to a path and binding one.  Paths
** starting with "\0" are Linux abstract names (no file; every byte of the
** string counts).  The sockets are made here, not by uv_pipe_connect or
** uv_pipe_bind, because libuv 1.44 takes only NUL-terminated paths.
*/
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* The address of the path at index i; raises for a bad one. */
static void unix_addr(lua_State *L, int i, struct sockaddr_storage *ss,
                      socklen_t *len) {
  luaL_checktype(L, i, LUA_TSTRING);
  if (lua_rawlen(L, i) == 0)
    eddy__error(L, "ValueError", "empty UNIX socket path");
  eddy__socket_addr(L, i, AF_UNIX, ss, len, 0);
}

/* A new non-blocking AF_UNIX stream socket, or -1 (errno). */
static int new_socket(void) {
  return socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* Both; raises on failure. */
static int unix_socket(lua_State *L, int i, struct sockaddr_storage *ss,
                       socklen_t *len) {
  int fd;
  unix_addr(L, i, ss, len);
  if ((fd = new_socket()) < 0) return eddy__uverror(L, -errno, "socket");
  return fd;
}

/* Raise the error of a failed call on 'fd' (closed here) about 'path'. */
static int fail(lua_State *L, int fd, int e, const char *what, int i) {
  close(fd);
  lua_pushfstring(L, "%s %s", what, lua_tostring(L, i));
  return eddy__uverror(L, -e, lua_tostring(L, -1));
}

/* loop:_unix_connect(path) -> transport without a protocol yet.  What
** allocates comes before the socket, whose descriptor an allocation
** failure would leak: the transport object and its handle, closed again
** if the socket cannot be made, connected or opened. */
static int l_unix_connect(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  eddy_Stream *s;
  uv_stream_t *h;
  const char *what = "create_unix_connection";
  int fd, uvfd = -1, r;
  unix_addr(L, 2, &ss, &len);
  s = eddy__stream_new(L, loop, EDDY_STREAM_UNIX);
  h = eddy__stream_open(L, s, lua_gettop(L));
  if ((fd = new_socket()) < 0) {
    r = -errno;
    what = "socket";
  } else if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
    r = -errno;
    what = NULL;
  } else if ((r = uvfd = eddy__fd_for_uv(fd)) >= 0) {
    r = uv_pipe_open((uv_pipe_t *)h, uvfd);
  }
  if (r >= 0) return 1;
  if (fd >= 0) eddy__fd_close(uvfd >= 0 ? uvfd : fd);
  s->state = EDDY_STREAM_CLOSED;
  eddy__uv_close(L, &s->uv);
  if (what == NULL) what = lua_pushfstring(L, "connect to %s", lua_tostring(L, 2));
  return eddy__uverror(L, r, what);
}

/* As asyncio before binding: remove the socket file at 'path' (an
** abstract name has none); any other kind of file stays. */
static void remove_socket_file(const char *path) {
  struct stat st;
  if (path[0] != '\0' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(path);
}

/* C.remove_socket_file(path): for create_datagram_endpoint's AF_UNIX
** local_addr. */
static int c_remove_socket_file(lua_State *L) {
  remove_socket_file(luaL_checkstring(L, 1));
  return 0;
}

/*
** C.unix_bind(path) -> fd: a bound socket for create_unix_server.  As
** asyncio, a stale socket file at the path is removed first; a path in
** use raises OSError "Address '...' is already in use".
*/
static int c_unix_bind(lua_State *L) {
  struct sockaddr_storage ss;
  socklen_t len;
  const char *path = luaL_checkstring(L, 1);
  int fd = unix_socket(L, 1, &ss, &len);
  remove_socket_file(path);
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    int e = errno;
    if (e == EADDRINUSE) {
      close(fd);
      lua_pushfstring(L, "Address '%s' is already in use", path);
      return eddy__uverror(L, UV_EADDRINUSE, lua_tostring(L, -1));
    }
    return fail(L, fd, e, "bind on", 1);
  }
  lua_pushinteger(L, fd);
  return 1;
}

static const luaL_Reg unix_methods[] = {
  {"_unix_connect", l_unix_connect},
  {NULL, NULL}
};

/* The loop methods; the core table at the top gets unix_bind and
** remove_socket_file. */
void eddy__open_unix(lua_State *L) {
  eddy__loop_methods(L, unix_methods);
  lua_pushcfunction(L, c_unix_bind);
  lua_setfield(L, -2, "unix_bind");
  lua_pushcfunction(L, c_remove_socket_file);
  lua_setfield(L, -2, "remove_socket_file");
}
