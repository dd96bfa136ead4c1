/*
** stream.c -- the stream transport shared by TCP and UNIX sockets
** (asyncio's _SelectorSocketTransport, on a libuv stream).
**
** Protocol callbacks come in asyncio's order: connection_made, then
** data_received* (or get_buffer/buffer_updated), eof_received, and
** connection_lost(err|nil) exactly once, never from inside the method that
** closed the transport.  As asyncio's _call_connection_lost, it runs with
** the descriptor still open, and the libuv handle (so the descriptor) is
** closed right after it.
**
** Writes first try uv_try_write; only what the kernel did not take is
** queued with uv_write, and the Lua string stays referenced (not copied)
** until the write callback.  Flow control follows asyncio: the protocol is
** paused when the queued bytes pass 'high' and resumed when they drain to
** 'low'.  Reads go through one per-thread 64 KiB buffer and become one Lua
** string each.
**
** Invariants:
**  - state OPEN: reading unless paused or EOF was received;
**  - state CLOSING: close() was called; no reads; the handle closes when
**    the last queued write completes (nwrites == 0);
**  - state CLOSED: no reads, no more bytes sent (force_close);
**    connection_lost is due (lost_soon, in the ready queue, or the close
**    callback of a pipe closed at once), with the error kept in the EXTRA
**    table, or done and the handle closed or closing (uv.closing).
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* User values of a stream transport. */
enum {
  ST_PROTOCOL = 1,  /* the protocol */
  ST_RECEIVED,      /* its data_received (buffer_updated when buffered),
                       cached by set_protocol as uvloop does */
  ST_SERVER,        /* the Server that accepted it, or nil */
  ST_BUFFER,        /* the buffer of the last get_buffer() call */
  ST_READER = ST_BUFFER, /* a protocol that is not buffered: the reader
                       its bound data_received feeds (s->direct), or nil */
  ST_EXTRA,         /* nil or a table: exc (for connection_lost) and the
                       cached extra info (peername, sockname, socket) */
  ST_NUV = ST_EXTRA
};

#define DEFAULT_HIGH (64 * 1024)

/* The mark of stream transports (eddy__newmarked). */
static const char stream_key = 's';

/* The metatable of each eddy_StreamKind; tostring shows the name without
** its "eddy." prefix. */
static const char *const kind_names[] = {
  NULL, "eddy.TCPTransport", "eddy.UnixTransport", "eddy.ReadPipeTransport",
  "eddy.WritePipeTransport"
};

static int is_pipe(const eddy_Stream *s) {
  return s->kind == EDDY_STREAM_READ_PIPE || s->kind == EDDY_STREAM_WRITE_PIPE;
}

/*
** Reads land in the runtime's read buffer (eddy__read_buffer, made with
** the state's first stream transport), then become one Lua string: no
** allocation per read besides that string.
**
** A read starts at the offset within a cache line that the bytes of the
** last large string made from a read had.  Copies of several KiB (glibc's
** 'rep movsb') take up to twice as long when source and destination sit
** at different offsets, and in the states eddy creates the strings of
** 1 KiB or more share one offset: their blocks are cache-line aligned
** (alloc.c) and Lua puts the bytes at a fixed distance from the start.
*/
#define READ_SIZE (64 * 1024)
#define CACHE_LINE 64
#define LARGE_READ 1024

typedef struct WriteReq {
  uv_write_t req;
  int ref;  /* registry reference of the string being written */
} WriteReq;

static void close_handle(lua_State *L, eddy_Stream *s, int t);
static size_t queued_bytes(eddy_Stream *s);

/* Add 'funcs' to the Loop class of the core table at the top (the other
** C files of the network part use it for their loop methods). */
void eddy__loop_methods(lua_State *L, const luaL_Reg *funcs) {
  lua_getfield(L, -1, "Loop");
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}

/* A stream transport carries &stream_key (eddy__newmarked): a check of
** two words, on the hot path of every write. */
eddy_Stream *eddy__tostream(lua_State *L, int i) {
  return (eddy_Stream *)eddy__tomarked(L, i, &stream_key);
}

/* (eddy__tomarked itself: a call to the exported eddy__tostream would go
** through the PLT) */
static eddy_Stream *checkstream(lua_State *L, int i) {
  eddy_Stream *s = (eddy_Stream *)eddy__tomarked(L, i, &stream_key);
  if (s == NULL) luaL_typeerror(L, i, "transport");
  return s;
}

/* Push the EXTRA table of the transport at t, creating it. */
static void push_extra(lua_State *L, int t) {
  if (lua_getiuservalue(L, t, ST_EXTRA) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, t, ST_EXTRA);
}

void eddy__stream_push_extra(lua_State *L, int t) {
  push_extra(L, lua_absindex(L, t));
}

void eddy__stream_set_extra(lua_State *L, int t, const char *name) {
  t = lua_absindex(L, t);
  push_extra(L, t);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* {====================================================== Calling the protocol */

/* (protocol, name, args...) -> protocol:name(args...), or nothing when
** the protocol has no such method.  Looked up inside the protected call:
** an __index that fails is reported like a failing method. */
static int protocol_method(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, 2);
  if (lua_gettable(L, 1) == LUA_TNIL) return 0;
  lua_replace(L, 2);      /* protocol, method, args... */
  lua_pushvalue(L, 1);
  lua_insert(L, 3);       /* protocol, method, protocol, args... */
  lua_call(L, n - 1, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

/* Registry key of the traceback of the last failed protocol call. */
static const char traceback_key = 't';

/*
** Message handler of protocol calls: the error value stays what was
** raised, since connection_lost gets it (as tasks keep theirs); error
** objects get a 'traceback' field, and for other values the message with
** its traceback waits in the registry for the exception handler.
*/
static int protocol_msgh(lua_State *L) {
  lua_settop(L, 1);
  if (lua_type(L, 1) == LUA_TTABLE) return eddy__traceback(L);
  eddy__traceback(L);  /* pushes the message and the traceback */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
  return 1;
}

/* A protocol call failed with the error at the top: the exception handler
** gets it with a context {message, exception, transport, protocol}. */
static EDDY_NOINLINE void report_error(lua_State *L, eddy_Loop *loop,
                                       int t, const char *message) {
  eddy__newcontext(L, message, -1);
  if (lua_type(L, -2) != LUA_TTABLE) {
    /* the handler shows the message with its traceback */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &traceback_key);
    if (lua_isstring(L, -1)) lua_setfield(L, -2, "exception");
    else lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
  }
  lua_pushvalue(L, t);
  lua_setfield(L, -2, "transport");
  lua_getiuservalue(L, t, ST_PROTOCOL);
  lua_setfield(L, -2, "protocol");
  eddy__call_exception_handler(L, loop);
}

/*
** A protocol method's call: what protocol_enter changes around it (the
** loop running, the transport's context), for protocol_restore to put
** back, also after the call raised into an outer protected call (the
** read path's).  'entered' says whether there is anything to put back.
*/
typedef struct ProtocolCall {
  eddy_Loop *prev;          /* rt->running before the call */
  double t0;                /* loop time at its start (debug mode) */
  eddy_IoContext ctx;
  unsigned char debug;      /* loop->debug at its start (it may change it) */
  unsigned char entered;
} ProtocolCall;

static inline void protocol_enter(lua_State *L, eddy_Stream *s, int t,
                                  ProtocolCall *pc) {
  eddy_Loop *loop = s->uv.loop;
  eddy_Runtime *rt = loop->rt;
  eddy__loop_before_io(L, loop);
  if (s->has_ctx) {
    push_extra(L, t);
    lua_getfield(L, -1, "context");
    lua_remove(L, -2);
  }
  eddy__io_context_enter(L, loop, s->has_ctx, &pc->ctx);
  pc->prev = rt->running;
  if (pc->prev == NULL) rt->running = loop;
  pc->debug = (unsigned char)loop->debug;
  pc->t0 = pc->debug ? eddy__time(loop) : 0;
  pc->entered = 1;
}

/* The end of the call, first what allocates nothing: whether it switched
** context (then the new one is pushed, for protocol_keep). */
static inline int protocol_restore(lua_State *L, eddy_Stream *s,
                                   ProtocolCall *pc) {
  pc->entered = 0;
  s->uv.loop->rt->running = pc->prev;
  return eddy__io_context_leave(L, s->uv.loop, &pc->ctx);
}

/* Then the rest: debug mode's slow-call warning, and the context the call
** switched to (at the top when 'switched', popped) kept for the next ones
** (asyncio's protocol calls are handles of _run_once, _read_ready, which
** debug mode times as it times the other callbacks). */
static inline void protocol_keep(lua_State *L, eddy_Stream *s, int t,
                                 ProtocolCall *pc, int switched) {
  if (pc->debug)
    eddy__warn_slow(L, s->uv.loop, t, "transport",
                    eddy__time(s->uv.loop) - pc->t0);
  if (switched) {
    s->has_ctx = !lua_isnil(L, -1);
    eddy__stream_set_extra(L, t, "context");
  }
}

/*
** Call the function below its 'nargs' arguments at the top, protected by
** protocol_msgh, which the caller put just below the function, at index
** h (known to the callers, which spares a lua_gettop per call).  On
** failure the error goes to the exception handler with a context
** {message, exception, transport, protocol} and stays at the top; the
** status is returned.  On success 'nres' results are left.  The handler
** stays where it was: the callers drop it with the rest of their frame.
** Its own allocations are not protected: its callers run inside a
** protected call (the ready queue's, read_cb's, write_cb's) or are called
** from Lua.
*/
static inline int pcall_protocol(lua_State *L, eddy_Stream *s, int t,
                                 int h, int nargs, int nres,
                                 const char *message) {
  ProtocolCall pc;
  int status, switched;
  protocol_enter(L, s, t, &pc);
  status = lua_pcall(L, nargs, nres, h);
  switched = protocol_restore(L, s, &pc);
  protocol_keep(L, s, t, &pc, switched);
  if (status != LUA_OK) report_error(L, s->uv.loop, t, message);
  return status;
}

/* Call protocol:name(args) with the 'nargs' arguments at the top; see
** pcall_protocol.  Missing methods do nothing (and return nil). */
static int call_protocol(lua_State *L, eddy_Stream *s, int t,
                         const char *name, int nargs, int nres,
                         const char *message) {
  int first = lua_gettop(L) - nargs + 1, status;
  lua_pushcfunction(L, protocol_msgh);
  lua_pushcfunction(L, protocol_method);
  lua_getiuservalue(L, t, ST_PROTOCOL);
  lua_pushstring(L, name);
  lua_rotate(L, first, 4);  /* msgh, protocol_method, protocol, name, args... */
  status = pcall_protocol(L, s, t, first, nargs + 2, nres, message);
  lua_remove(L, first);  /* the handler, below the results or the error */
  return status;
}

/* }====================================================== */

/* {====================================================== Closing */

static void keep_addresses(lua_State *L, eddy_Stream *s, int t);

static void stop_reading(eddy_Stream *s);
static int lost_soon(lua_State *L);

/* The transport at t stops: no more reads, the addresses kept (asyncio's
** protocols may still read them in connection_lost); its handle stays
** open for connection_lost (call_lost). */
static void stop_stream(lua_State *L, eddy_Stream *s, int t) {
  eddy__uv_anchor(L, &s->uv, t, 1);  /* for connection_lost */
  if (s->started && !is_pipe(s)) keep_addresses(L, s, t);
  if (s->hangup != NULL) eddy__hangup_stop(s);
  s->state = EDDY_STREAM_CLOSED;
  stop_reading(s);
}

/* A server's connection at t leaves it (its wait_closed may return). */
static void leave_server(lua_State *L, eddy_Stream *s, int t) {
  eddy_Server *sv = s->server;
  if (sv == NULL) return;
  s->server = NULL;
  lua_getiuservalue(L, t, ST_SERVER);
  eddy__server_detach(L, sv, lua_gettop(L));
  lua_settop(L, t);
}

/* connection_lost, once, unless the protocol never started: whether it
** ran (a pipe's object is then closed once the handle is, so that the
** reader of an io.popen file sees EOF before pclose waits for it). */
static int notify_lost(lua_State *L, eddy_Stream *s, int t) {
  if (!s->started) return 0;
  s->started = 0;
  if (lua_getiuservalue(L, t, ST_EXTRA) == LUA_TTABLE)
    lua_getfield(L, -1, "exc");
  else
    lua_pushnil(L);
  call_protocol(L, s, t, "connection_lost", 1, 0,
                "Exception in protocol.connection_lost()");
  lua_settop(L, t);
  return 1;
}

/* asyncio's _call_connection_lost: connection_lost (notify_lost), then
** the handle closes, and with it the descriptor; a server's connection
** leaves its server (server._detach) without waiting for libuv's close
** callback.  Once only: the loop's close may come first. */
static int lost_closing(lua_State *L);

static void call_lost(lua_State *L, eddy_Stream *s, int t) {
  int lost = s->started;
  if (s->uv.handle == NULL || s->uv.closing) return;
  /* protected: out of memory there, the handle closes all the same */
  lua_pushcfunction(L, lost_closing);
  lua_pushvalue(L, t);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    eddy__report_error(L, s->uv.loop, "Exception closing a transport");
  eddy__uv_close(L, &s->uv);
  if (lost && is_pipe(s)) eddy__pipe_release(L, s, t);
  lua_settop(L, t);
  leave_server(L, s, t);
}

/* (transport) -> (): call_lost's part that allocates: connection_lost,
** then what else has the descriptor forgets it. */
static int lost_closing(lua_State *L) {
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, 1);
  uv_os_fd_t fd;
  notify_lost(L, s, 1);
  /* fd watchers may take a closing transport's descriptor (as asyncio's):
  ** they forget it before it closes, as with an eddy.socket's close. */
  if (uv_fileno(s->uv.handle, &fd) == 0) eddy__fd_closing(L, (int)fd, 1);
  /* A socket view handed out by get_extra_info forgets the descriptor. */
  if (lua_getiuservalue(L, 1, ST_EXTRA) == LUA_TTABLE &&
      lua_getfield(L, -1, "socket") != LUA_TNIL) {
    eddy_Socket *sock = eddy__tosocket(L, -1);
    if (sock != NULL) sock->fd = -1;
  }
  return 0;
}

/* Close the transport at t (asyncio's close() once its writes are out,
** abort()): connection_lost comes from the ready queue, as asyncio's
** call_soon(_call_connection_lost); a transport never started closes at
** once. */
static void close_handle(lua_State *L, eddy_Stream *s, int t) {
  int h;
  if (!s->started) {
    stop_stream(L, s, t);
    call_lost(L, s, t);
    return;
  }
  /* what allocates first: out of memory, the transport stays as it was,
  ** and a close() again closes it */
  lua_pushcfunction(L, lost_soon);
  lua_pushvalue(L, t);
  eddy__handle_new(L, s->uv.loop, 1, 0);
  h = lua_gettop(L);
  eddy__ready_reserve(L, s->uv.loop, 1);
  stop_stream(L, s, t);
  eddy__ready_push(L, s->uv.loop, h);
  lua_settop(L, h - 1);
}

/* asyncio's close(): the handle closes once the queued writes are out. */
static void begin_close(lua_State *L, eddy_Stream *s, int t) {
  if (s->nwrites == 0) {
    close_handle(L, s, t);
    return;
  }
  s->state = EDDY_STREAM_CLOSING;
  stop_reading(s);
}

/* lost_soon(transport), from the ready queue. */
static int lost_soon(lua_State *L) {
  call_lost(L, checkstream(L, 1), 1);
  return 0;
}

/*
** A socket transport that is open, started, and neither reads (paused, or
** EOF received and kept open) nor writes gets no callback from libuv: it
** releases its anchor (handle.c), so that, as asyncio's, it is collected
** and closed once its user drops it.  Pipes keep theirs (a write pipe
** watches for its reader's hangup), and so do a server's connections:
** the server reaches them (close_clients) and counts them until their
** connection_lost (wait_closed), which a collected one never gets.
*/
static int is_idle(const eddy_Stream *s) {
  return s->state == EDDY_STREAM_OPEN && s->started && !is_pipe(s) &&
         s->server == NULL && s->nwrites == 0 &&
         (!s->reading || s->eof_received);
}

static void update_anchor(lua_State *L, eddy_Stream *s, int t) {
  eddy__uv_anchor(L, &s->uv, t, !is_idle(s));
}

/* Stop libuv reading, unless that must wait for read_cb (alloc_cb). */
static void stop_reading(eddy_Stream *s) {
  if (s->uv.handle != NULL && !s->in_get_buffer)
    uv_read_stop((uv_stream_t *)s->uv.handle);
}

/*
** asyncio's _force_close: drop queued writes and close now; the error at
** index 'err' (0: none) goes to connection_lost.
**
** Nothing queued may be sent from then on, as asyncio clears its buffer,
** but libuv cannot cancel a write short of closing its handle, and a
** socket's stays open until connection_lost.  Shutting down the socket's
** write side makes libuv's queued writes fail (EPIPE, which write_cb
** ignores once the transport is closed) while the kernel still delivers
** what it had taken, then FIN, as the close would.  A pipe cannot be shut
** down, but its descriptor is the transport's own duplicate, never seen
** from Lua: its handle closes at once, cancelling the writes, and
** connection_lost comes from the close callback (stream_closed).
*/
static void force_close(lua_State *L, eddy_Stream *s, int t, int err) {
  uv_os_fd_t fd;
  if (s->state == EDDY_STREAM_CLOSED) return;
  if (err != 0 && !lua_isnil(L, err)) {
    err = lua_absindex(L, err);
    push_extra(L, t);
    lua_pushvalue(L, err);
    lua_setfield(L, -2, "exc");
    lua_pop(L, 1);
  }
  if (s->nwrites > 0 && is_pipe(s)) {
    stop_stream(L, s, t);
    eddy__uv_close(L, &s->uv);
    return;
  }
  if (s->nwrites > 0 && uv_fileno(s->uv.handle, &fd) == 0)
    shutdown(fd, SHUT_WR);  /* ENOTCONN after a reset: nothing to stop */
  close_handle(L, s, t);
}

/* A read or write failed with a libuv error: connection_lost(OSError). */
static void os_error(lua_State *L, eddy_Stream *s, int t, int uverr) {
  eddy__pushuverror(L, uverr, NULL);
  force_close(L, s, t, -1);
  lua_pop(L, 1);
}

void eddy__stream_hangup(lua_State *L, eddy_Stream *s, int t) {
  if (queued_bytes(s) > 0) os_error(L, s, t, UV_EPIPE);  /* data lost */
  else force_close(L, s, t, 0);
}

/* The close callback (handle.c): connection_lost if still due (a pipe
** that force_close closed at once), then forget the protocol and leave
** the server. */
static void stream_closed(lua_State *L, eddy_UVObject *o, int t) {
  eddy_Stream *s = (eddy_Stream *)o;
  s->state = EDDY_STREAM_CLOSED;
  /* a pipe that force_close closed at once */
  if (notify_lost(L, s, t) && is_pipe(s)) eddy__pipe_release(L, s, t);
  leave_server(L, s, t);
  lua_pushnil(L);
  lua_setiuservalue(L, t, ST_PROTOCOL);
  s->direct = NULL;
  lua_pushnil(L);
  lua_setiuservalue(L, t, ST_RECEIVED);
  lua_pushnil(L);
  lua_setiuservalue(L, t, ST_SERVER);
  lua_pushnil(L);
  lua_setiuservalue(L, t, ST_BUFFER);
}

/* loop:close() with the transport still open: abort it, and call
** connection_lost now, since the loop drops its ready queue. */
static void stream_before_close(lua_State *L, eddy_UVObject *o, int t) {
  force_close(L, (eddy_Stream *)o, t, 0);
  call_lost(L, (eddy_Stream *)o, t);
}

int eddy__stream_is_closing(const eddy_UVObject *o) {
  return o->on_closed == stream_closed &&
         ((const eddy_Stream *)o)->state != EDDY_STREAM_OPEN;
}

/* }====================================================== */

/* {====================================================== Reading */

/* (static, so that deliver has it inline) */
static void push_read(lua_State *L, eddy_Runtime *rt, const char *data,
                      size_t n) {
  const char *bytes = lua_pushlstring(L, data, n);
  if (n >= LARGE_READ) rt->read_offset = (uintptr_t)bytes & (CACHE_LINE - 1);
}

void eddy__stream_push_read(lua_State *L, eddy_Runtime *rt, const char *data,
                            size_t n) {
  push_read(L, rt, data, n);
}

/*
** What read_cb and alloc_cb hand their protected part: one protected call
** per callback, inside which the protocol's hot method (data_received,
** buffer_updated, get_buffer) is called unprotected, so that a read costs
** one protected call, as before, while the bytes' string, a reader's
** feed and whatever else the read does are protected too.  A failure,
** the method's or an allocation's, reaches read_failed: reported as
** 'message', and the transport aborted when 'fatal' (asyncio's
** _fatal_error), the protocol call's changes undone first.
*/
typedef struct ReadCall {
  eddy_Stream *s;
  ssize_t nread;            /* read_cb's; alloc_cb: 0 */
  const char *data;         /* read_cb: the bytes */
  uv_buf_t *buf;            /* alloc_cb: the buffer to fill in */
  const char *message;
  unsigned char fatal;
  ProtocolCall pc;
} ReadCall;

/* asyncio's _fatal_error messages, the socket's or the pipe's. */
static const char *fatal_message(const eddy_Stream *s, int writing) {
  if (is_pipe(s))
    return writing ? "Fatal write error on pipe transport"
                   : "Fatal read error on pipe transport";
  return writing ? "Fatal write error on socket transport"
                 : "Fatal read error on socket transport";
}

/* (rc, transport, error, switched, context) -> (): read_failed's part
** that allocates; 'switched' is nil when the protocol call had not begun.
** (rc is an argument, not an upvalue: a closure would be an allocation
** made unprotected, that can fail too.) */
static int read_failure(lua_State *L) {
  ReadCall *rc = (ReadCall *)lua_touserdata(L, 1);
  eddy_Stream *s = rc->s;
  lua_remove(L, 1);
  if (!lua_isnil(L, 3)) protocol_keep(L, s, 1, &rc->pc, lua_toboolean(L, 3));
  lua_settop(L, 2);
  report_error(L, s->uv.loop, 1, rc->message);
  if (rc->fatal) force_close(L, s, 1, 2);
  return 0;
}

/* The protected part of a read callback failed with the error at the top
** (its transport at t): undo the protocol call's changes, store a
** get_buffer's error for read_cb, then report and abort in a protected
** call of its own; when even that fails, report it as eddy__report_error
** does and stop reading. */
static EDDY_NOINLINE void read_failed(lua_State *L, ReadCall *rc) {
  eddy_Stream *s = rc->s;
  int err = lua_gettop(L), entered = rc->pc.entered, switched = 0, t;
  if (entered) switched = protocol_restore(L, s, &rc->pc);
  if (!switched) lua_pushnil(L);
  eddy__uv_push(L, &s->uv);  /* (read_cb's is gone with the call) */
  t = lua_gettop(L);
  if (lua_isnil(L, t)) {  /* being finalized: nothing left to close */
    lua_pushvalue(L, err);
    eddy__report_error(L, s->uv.loop, rc->message);
    return;
  }
  if (rc->buf != NULL) {  /* get_buffer: read_cb closes with it */
    lua_pushvalue(L, err);
    lua_setiuservalue(L, t, ST_BUFFER);
    rc->buf->len = 0;
  }
  lua_pushcfunction(L, read_failure);
  lua_pushlightuserdata(L, rc);
  lua_pushvalue(L, t);
  lua_pushvalue(L, err);
  if (entered) lua_pushboolean(L, switched);
  else lua_pushnil(L);
  lua_pushvalue(L, err + 1);  /* the context, or nil */
  if (lua_pcall(L, 5, 0, 0) != LUA_OK) {
    eddy__report_error(L, s->uv.loop, rc->message);
    if (rc->buf == NULL && s->state == EDDY_STREAM_OPEN)
      uv_read_stop((uv_stream_t *)s->uv.handle);
  }
}

/* BufferedProtocol: read into the protocol's own buffer.  The sizehint is
** -1, "any size", as asyncio's selector transport asks: a read takes
** whatever buffer it is given.  (transport) -> (), protected. */
static int get_buffer(lua_State *L) {
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, 1);
  ReadCall *rc = (ReadCall *)s->uv.loop->rt->read_call;
  uv_buf_t *buf = rc->buf;
  size_t size = 0;
  char *data;
  lua_pushcfunction(L, protocol_method);
  lua_getiuservalue(L, 1, ST_PROTOCOL);
  lua_pushliteral(L, "get_buffer");
  lua_pushinteger(L, -1);
  protocol_enter(L, s, 1, &rc->pc);
  lua_call(L, 3, 1);
  protocol_keep(L, s, 1, &rc->pc, protocol_restore(L, s, &rc->pc));
  if ((data = eddy__tobuffer(L, 2, &size)) == NULL || size == 0)
    return eddy__error(L, "RuntimeError", "get_buffer() returned %s",
                       data == NULL ? "no eddy.Buffer" : "an empty buffer");
  if (s->state != EDDY_STREAM_OPEN || !s->reading) {
    lua_pushnil(L);  /* no error: read_cb only stops reading or closes */
    lua_setiuservalue(L, 1, ST_BUFFER);
    buf->len = 0;
  } else {
    lua_setiuservalue(L, 1, ST_BUFFER);  /* alive until the read is done */
    buf->base = data;
    buf->len = size;
  }
  return 0;
}

/* f(transport), protected by the protocol message handler, for the
** transport s whose ReadCall is rc.  The stack is left as it was. */
static inline void read_pcall(lua_State *L, lua_CFunction f, eddy_Stream *s,
                              ReadCall *rc) {
  int top = lua_gettop(L);
  s->uv.loop->rt->read_call = rc;
  lua_pushcfunction(L, protocol_msgh);
  lua_pushcfunction(L, f);
  /* (a paused transport may have released its anchor: update_anchor;
  ** nil if it is being finalized) */
  if (s->uv.self_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->uv.self_ref);
  else if (eddy__uv_push(L, &s->uv), lua_isnil(L, -1))
    f = NULL;
  if (f != NULL && lua_pcall(L, 1, 0, top + 1) != LUA_OK) read_failed(L, rc);
  lua_settop(L, top);
}

/* alloc_cb for a BufferedProtocol: its get_buffer. */
static EDDY_NOINLINE void buffered_alloc(eddy_Stream *s, uv_buf_t *buf) {
  ReadCall rc;
  rc.s = s;
  rc.buf = buf;
  rc.message = "Fatal error: protocol.get_buffer() call failed.";
  rc.fatal = 0;  /* read_cb closes: see in_get_buffer */
  rc.pc.entered = 0;
  /* libuv calls alloc_cb inside its read loop and goes on to read the
  ** descriptor into the buffer and call read_cb: if get_buffer (or the
  ** exception handler) paused or closed the transport, stopping reads or
  ** closing the handle now would have it read a closed descriptor or call
  ** a NULL read_cb.  Both wait for read_cb (in_get_buffer), which an
  ** empty buffer brings at once (UV_ENOBUFS).  On failure too the
  ** transport closes there, the error in ST_BUFFER. */
  s->in_get_buffer = 1;
  read_pcall(s->uv.loop->rt->L, get_buffer, s, &rc);
  s->in_get_buffer = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  eddy_Stream *s = (eddy_Stream *)h->data;
  eddy_Runtime *rt;
  (void)suggested;
  if (s == NULL) {  /* detached: closing, so no read is coming */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  rt = s->uv.loop->rt;
  buf->base = rt->read_buf + rt->read_offset;
  buf->len = READ_SIZE;
  if (s->buffered) buffered_alloc(s, buf);
}

/* The peer shut its write side (asyncio's _read_ready__on_eof). */
static void on_eof(lua_State *L, eddy_Stream *s, int t) {
  if (!is_pipe(s)) keep_addresses(L, s, t);
  uv_read_stop((uv_stream_t *)s->uv.handle);
  s->eof_received = 1;
  if (is_pipe(s)) {
    /* asyncio's read pipe calls eof_received as a callback of its own,
    ** then connection_lost(None): an error is only reported. */
    call_protocol(L, s, t, "eof_received", 0, 1,
                  "Exception in protocol.eof_received()");
  } else if (call_protocol(L, s, t, "eof_received", 0, 1,
                           "Fatal error: protocol.eof_received() call failed.")
             != LUA_OK) {
    force_close(L, s, t, -1);
    return;
  }
  /* A read pipe closes whatever eof_received says, as asyncio's. */
  if ((!lua_toboolean(L, -1) || is_pipe(s)) && s->state == EDDY_STREAM_OPEN) {
    begin_close(L, s, t);
  }
  update_anchor(L, s, t);
}

/* Hand the bytes read to the protocol: its data_received (buffer_updated
** when buffered), or straight into the reader of a StreamReaderProtocol
** (streams.c).  The transport at t is the top; inside read_cb's protected
** call (rc). */
static void deliver(lua_State *L, eddy_Stream *s, int t, ReadCall *rc) {
  size_t n = (size_t)rc->nread;
  if (s->direct != NULL) {  /* RECEIVED is its bound data_received */
    eddy__loop_before_io(L, s->uv.loop);  /* before a reader's task wakes */
    lua_getiuservalue(L, t, ST_READER);
    rc->message = "Fatal error: protocol.data_received() call failed.";
    if (eddy__streams_feed_direct(L, s->direct, rc->data, n)) return;
    lua_pop(L, 1);
  }
  if (lua_getiuservalue(L, t, ST_RECEIVED) == LUA_TNIL) return;
  lua_getiuservalue(L, t, ST_PROTOCOL);
  if (s->buffered) {
    lua_pushinteger(L, (lua_Integer)n);
    lua_pushnil(L);
    lua_setiuservalue(L, t, ST_BUFFER);
    rc->message = "Fatal error: protocol.buffer_updated() call failed.";
  } else {
    push_read(L, s->uv.loop->rt, rc->data, n);
    /* asyncio's read pipe calls data_received from its reader callback:
    ** an error is the callback's, reported, and the pipe reads on. */
    if (is_pipe(s)) {
      rc->message = "Exception in protocol.data_received()";
      rc->fatal = 0;
    } else {
      rc->message = "Fatal error: protocol.data_received() call failed.";
    }
  }
  protocol_enter(L, s, t, &rc->pc);
  lua_call(L, 2, 0);
  protocol_keep(L, s, t, &rc->pc, protocol_restore(L, s, &rc->pc));
}

/*
** The error a socket has pending, as a libuv error (0: none, or not a
** socket).  libuv reports EOF, without reading on, when a read came short
** and the poll said HUP; a reset that followed the data (both queued
** while the transport was paused, say) would pass for the peer's clean
** end, where asyncio's next recv() raises ECONNRESET.  Peeking asks the
** same question, and takes no byte: after a FIN it returns 0, as recv().
*/
static int pending_error(eddy_Stream *s) {
  uv_os_fd_t fd;
  char c;
  if (uv_fileno(s->uv.handle, &fd) != 0 ||
      recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0)
    return 0;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTSOCK ? 0 : -errno;
}

/* reset_later(transport): the error pending_error took, reported in the
** next iteration, where asyncio's recv() that raises it comes: a task the
** data woke reads the data first. */
static int reset_later(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  if (s->state == EDDY_STREAM_OPEN) os_error(L, s, 1, s->reset_err);
  return 0;
}

/* A read that brought no bytes: the end of the stream or an error. */
static EDDY_NOINLINE void read_ended(lua_State *L, eddy_Stream *s,
                                     int t, ssize_t nread) {
  if (nread == UV_EOF && !is_pipe(s) && (s->reset_err = pending_error(s)) != 0) {
    uv_read_stop((uv_stream_t *)s->uv.handle);  /* start_reading does not restart it */
    lua_pushcfunction(L, reset_later);
    lua_pushvalue(L, t);
    eddy__handle_new(L, s->uv.loop, 1, 0);
    eddy__ready_push(L, s->uv.loop, -1);
    lua_pop(L, 1);
    return;
  }
  if (nread == UV_EOF) {
    on_eof(L, s, t);
  } else if (nread == UV_ENOBUFS) {  /* from alloc_cb */
    if (lua_getiuservalue(L, t, ST_BUFFER) != LUA_TNIL)
      force_close(L, s, t, -1);  /* get_buffer failed: its error */
    else  /* get_buffer paused or closed the transport */
      uv_read_stop((uv_stream_t *)s->uv.handle);
  } else {
    os_error(L, s, t, (int)nread);
  }
}

/* (transport) -> (): read_cb's protected part. */
static int on_read(lua_State *L) {
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, 1);
  ReadCall *rc = (ReadCall *)s->uv.loop->rt->read_call;
  if (rc->nread > 0) deliver(L, s, 1, rc);
  else read_ended(L, s, 1, rc->nread);
  return 0;
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  eddy_Stream *s = (eddy_Stream *)h->data;
  ReadCall rc;
  if (s == NULL || nread == 0) return;
  if (s->state == EDDY_STREAM_CLOSED) {  /* closed inside get_buffer */
    uv_read_stop(h);
    return;
  }
  rc.s = s;
  rc.nread = nread;
  rc.data = buf->base;
  rc.buf = NULL;
  rc.message = fatal_message(s, 0);  /* until the protocol's turn */
  rc.fatal = 1;
  rc.pc.entered = 0;
  read_pcall(s->uv.loop->rt->L, on_read, s, &rc);
}

static void start_reading(eddy_Stream *s) {
  if (s->state == EDDY_STREAM_OPEN && s->reading && !s->eof_received &&
      s->reset_err == 0)
    uv_read_start((uv_stream_t *)s->uv.handle, alloc_cb, read_cb);
}

/* }====================================================== */

/* {====================================================== Writing */

static size_t queued_bytes(eddy_Stream *s) {
  if (s->uv.handle == NULL) return 0;
  return uv_stream_get_write_queue_size((uv_stream_t *)s->uv.handle);
}

/* asyncio's _maybe_pause_protocol. */
static void maybe_pause(lua_State *L, eddy_Stream *s, int t) {
  if (s->proto_paused || queued_bytes(s) <= s->high) return;
  s->proto_paused = 1;
  call_protocol(L, s, t, "pause_writing", 0, 0,
                "protocol.pause_writing() failed");
}

/* Whether asyncio's _maybe_resume_protocol would resume the protocol. */
static int resume_due(eddy_Stream *s) {
  return s->proto_paused && queued_bytes(s) <= s->low;
}

/* asyncio's _maybe_resume_protocol. */
static void maybe_resume(lua_State *L, eddy_Stream *s, int t) {
  if (!resume_due(s)) return;
  s->proto_paused = 0;
  call_protocol(L, s, t, "resume_writing", 0, 0,
                "protocol.resume_writing() failed");
}

/* (transport, status) -> (): write_cb's protected part, what a write's
** end may bring about: a write error's close, resume_writing, the close
** that waited for the writes, the anchor's release. */
static int on_written(lua_State *L) {
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 2);
  if (status < 0) {
    os_error(L, s, 1, status);
    return 0;
  }
  maybe_resume(L, s, 1);
  if (s->nwrites == 0 && s->state == EDDY_STREAM_CLOSING) {
    /* asyncio's _write_ready calls _call_connection_lost itself */
    stop_stream(L, s, 1);
    call_lost(L, s, 1);
  }
  update_anchor(L, s, 1);
  return 0;
}

/* (transport, error) -> (): the fatal error's report and abort. */
static int write_failure(lua_State *L) {
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, 1);
  report_error(L, s->uv.loop, 1, fatal_message(s, 1));
  force_close(L, s, 1, 2);
  return 0;
}

/* on_written, protected: a failure (an allocation's) is reported and
** aborts the transport, as asyncio's _fatal_error, itself in a protected
** call; when even that fails, it is reported as eddy__report_error
** does. */
static EDDY_NOINLINE void written(lua_State *L, eddy_Stream *s, int status) {
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->uv.self_ref);  /* (until update_anchor) */
  lua_pushcfunction(L, on_written);
  lua_pushvalue(L, top + 1);
  lua_pushinteger(L, status);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_pushcfunction(L, write_failure);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, top + 2);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      eddy__report_error(L, s->uv.loop, fatal_message(s, 1));
  }
  lua_settop(L, top);
}

static void write_cb(uv_write_t *req, int status) {
  WriteReq *w = (WriteReq *)req;
  eddy_Stream *s = (eddy_Stream *)req->handle->data;
  int ref = w->ref;
  lua_State *L;
  free(w);
  if (s == NULL) return;  /* detached by __gc at lua_close */
  L = s->uv.loop->rt->L;
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  s->nwrites--;
  if (s->state == EDDY_STREAM_CLOSED) return;
  /* A write done with more queued, or the last one of a transport that
  ** keeps its anchor, calls nothing; the rest is on_written's. */
  if (status < 0 || resume_due(s) ||
      (s->nwrites == 0 && (s->state == EDDY_STREAM_CLOSING || is_idle(s))))
    written(L, s, status);
}

static EDDY_NOINLINE void queue_write(lua_State *L, eddy_Stream *s,
                                      int t, int str, uv_buf_t b, int r);

/*
** Send 'len' bytes of the string at index 'str': what uv_try_write does
** not take is queued, keeping the string referenced.  t is the
** transport's index, or 0 when it is not on the stack (a writer's bound
** write, streams.c): it is pushed only when needed, from its anchor (an
** open transport has one: handle.c).
*/
static void stream_send(lua_State *L, eddy_Stream *s, int t, int str,
                        const char *data, size_t len) {
  uv_buf_t b;
  int r = 0;
  b.base = (char *)data;  /* (uv_buf_init is a call into libuv) */
  b.len = len;
  if (s->nwrites == 0 &&
      (r = uv_try_write((uv_stream_t *)s->uv.handle, &b, 1)) == (int)len)
    return;
  queue_write(L, s, t, str, b, r);
}

/* The rest of stream_send, out of line: what uv_try_write did not take
** ('r': what it did, unless writes were queued already) waits in a
** uv_write. */
static EDDY_NOINLINE void queue_write(lua_State *L, eddy_Stream *s,
                                      int t, int str, uv_buf_t b, int r) {
  uv_stream_t *h = (uv_stream_t *)s->uv.handle;
  WriteReq *w;
  if (t == 0) {
    eddy__uv_push(L, &s->uv);
    t = lua_gettop(L);
  }
  if (s->nwrites == 0) {  /* r: what uv_try_write did */
    if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
      os_error(L, s, t, r);
      return;
    }
    if (r > 0) {
      b.base += r;
      b.len -= (unsigned int)r;
    }
  }
  w = (WriteReq *)malloc(sizeof *w);
  if (w == NULL) {
    luaL_error(L, "not enough memory");
    return;
  }
  r = uv_write(&w->req, h, &b, 1, write_cb);
  if (r < 0) {
    free(w);
    os_error(L, s, t, r);
    return;
  }
  lua_pushvalue(L, str);
  w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->nwrites++;
  eddy__uv_anchor(L, &s->uv, t, 1);  /* until write_cb */
  maybe_pause(L, s, t);
}

/* Whether a write may go ahead; asyncio's checks, whose messages name
** the method ('op': "write" or "writelines"). */
static int can_send(lua_State *L, eddy_Stream *s, size_t len,
                    const char *op) {
  if (s->eof_sent)
    eddy__error(L, "RuntimeError", "Cannot call %s() after write_eof()", op);
  if (s->in_sendfile)
    eddy__error(L, "RuntimeError", "unable to %s; sendfile is in progress",
                op);
  if (len == 0) return 0;
  if (s->state != EDDY_STREAM_OPEN) {
    /* asyncio drops writes after close; debug mode says so. */
    if (s->uv.loop->debug && s->lost_writes++ == 5)
      lua_warning(L, "eddy: transport is closed: writes are dropped", 0);
    return 0;
  }
  return 1;
}

/* t: as for stream_send.  (static, so that t_write has it inline) */
static void stream_write(lua_State *L, eddy_Stream *s, int t, int data) {
  size_t len;
  const char *bytes;
  if (lua_type(L, data) == LUA_TSTRING) {
    bytes = lua_tolstring(L, data, &len);
  } else if ((bytes = eddy__tobuffer(L, data, &len)) != NULL) {
    lua_pushlstring(L, bytes, len);
    lua_replace(L, data);
    bytes = lua_tostring(L, data);
  } else {
    luaL_typeerror(L, data, "string");
    return;
  }
  if (can_send(L, s, len, "write")) stream_send(L, s, t, data, bytes, len);
}

void eddy__stream_write(lua_State *L, eddy_Stream *s, int t, int data) {
  stream_write(L, s, t, data);
}

/* transport:write(data): data is a string or an eddy.Buffer (copied). */
static int t_write(lua_State *L) {
  stream_write(L, checkstream(L, 1), 1, 2);
  return 0;
}

/* transport:writelines(list): one write of the concatenation; the
** elements are strings or eddy.Buffers, as write's data. */
static int t_writelines(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  luaL_Buffer b;
  lua_Integer i, n;
  size_t len;
  const char *data;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    if ((data = eddy__tobuffer(L, -1, &len)) != NULL) {
      lua_pushlstring(L, data, len);  /* luaL_addvalue takes the top */
      lua_remove(L, -2);
    } else if (lua_type(L, -1) != LUA_TSTRING) {
      return luaL_error(L, "bad element #%I in 'writelines' (string or "
                        "eddy.Buffer expected, got %s)", i,
                        luaL_typename(L, -1));
    }
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  data = lua_tolstring(L, -1, &len);
  if (can_send(L, s, len, "writelines"))
    stream_send(L, s, 1, lua_gettop(L), data, len);
  return 0;
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;  /* a reset peer shows up on the reading side */
  free(req);
}

static int t_close(lua_State *L);

/* transport:write_eof(): shut the write side once queued data is out.
** A pipe has no half-close: as asyncio's, it closes. */
static int t_write_eof(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  uv_shutdown_t *req;
  int r;
  if (is_pipe(s)) return t_close(L);
  if (s->state != EDDY_STREAM_OPEN || s->eof_sent) return 0;
  keep_addresses(L, s, 1);
  s->eof_sent = 1;
  if (s->nwrites == 0) {
    /* Nothing queued: shut down now, as asyncio's sock.shutdown(), whose
    ** error (ENOTCONN once the peer reset the connection) the caller gets;
    ** the transport stays open with its EOF sent, as asyncio's. */
    uv_os_fd_t fd;
    if (uv_fileno(s->uv.handle, &fd) == 0 && shutdown(fd, SHUT_WR) < 0)
      return eddy__uverror(L, uv_translate_sys_error(errno), NULL);
    return 0;
  }
  req = (uv_shutdown_t *)malloc(sizeof *req);
  if (req == NULL) return luaL_error(L, "not enough memory");
  r = uv_shutdown(req, (uv_stream_t *)s->uv.handle, shutdown_cb);
  if (r < 0) {
    free(req);
    return eddy__uverror(L, r, "write_eof");
  }
  return 0;
}

static int t_can_write_eof(lua_State *L) {
  checkstream(L, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* Nothing once the handle is closing (abort(), a fatal error): libuv
** still holds the queued writes until it cancels them, but they will never
** be sent, as asyncio's _force_close clearing its buffer. */
static int t_get_write_buffer_size(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  size_t n = s->state == EDDY_STREAM_CLOSED ? 0 : queued_bytes(s);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* transport:get_write_buffer_limits() -> low, high */
static int t_get_write_buffer_limits(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  lua_pushinteger(L, (lua_Integer)s->low);
  lua_pushinteger(L, (lua_Integer)s->high);
  return 2;
}

void eddy__write_limits_args(lua_State *L, lua_Integer default_high,
                             size_t *high_out, size_t *low_out) {
  lua_Integer high, low;
  if (lua_isnoneornil(L, 2)) {
    if (lua_isnoneornil(L, 3)) {
      high = default_high;
    } else {  /* 4 * low, saturated: Python's integers do not overflow */
      low = luaL_checkinteger(L, 3);
      high = low > LUA_MAXINTEGER / 4 ? LUA_MAXINTEGER
           : low < LUA_MININTEGER / 4 ? LUA_MININTEGER : 4 * low;
    }
  } else {
    high = luaL_checkinteger(L, 2);
  }
  low = lua_isnoneornil(L, 3) ? high / 4 - (high % 4 < 0)
                              : luaL_checkinteger(L, 3);
  if (!(high >= low && low >= 0))
    eddy__error(L, "ValueError", "high (%I) must be >= low (%I) must be >= 0",
                high, low);
  *high_out = (size_t)high;
  *low_out = (size_t)low;
}

/* transport:set_write_buffer_limits(high, low) */
static int t_set_write_buffer_limits(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  eddy__write_limits_args(L, DEFAULT_HIGH, &s->high, &s->low);
  if (s->state == EDDY_STREAM_OPEN) maybe_pause(L, s, 1);
  return 0;
}

/* }====================================================== */

/* {====================================================== Methods */

/* Set the protocol at index p, caching the method reads call.  The
** lookups come first: a protocol whose __index raises is not set. */
static void set_protocol(lua_State *L, eddy_Stream *s, int t, int p) {
  int tp = lua_type(L, p), buffered;
  if (tp != LUA_TTABLE && tp != LUA_TUSERDATA)
    luaL_typeerror(L, p, "protocol (table or userdata)");
  buffered = lua_getfield(L, p, "get_buffer") != LUA_TNIL;
  lua_getfield(L, p, buffered ? "buffer_updated" : "data_received");
  lua_pushvalue(L, p);
  lua_setiuservalue(L, t, ST_PROTOCOL);
  s->buffered = (unsigned char)buffered;
  s->direct = s->buffered ? NULL : eddy__streams_direct(L, -1, p);
  if (s->direct == NULL) lua_pushnil(L);
  lua_setiuservalue(L, t, ST_READER);  /* or the buffer: none yet */
  lua_setiuservalue(L, t, ST_RECEIVED);
  lua_pop(L, 1);
}

/* connection_made, then reading.  An error connection_made raises goes
** to the exception handler only: as asyncio, whose loop calls it as a
** callback, the transport stays open.  Running out of memory there is
** another matter: the protocol is left half set up (a server's reader
** with no task to serve it), and nobody may ever close the transport,
** which a server's wait_closed would wait for: it is aborted, and
** connection_lost gets the error. */
static void start(lua_State *L, eddy_Stream *s, int t) {
  int status;
  s->started = 1;
  s->reading = s->kind != EDDY_STREAM_WRITE_PIPE;
  lua_pushvalue(L, t);
  status = call_protocol(L, s, t, "connection_made", 1, 0,
                         "Exception in protocol.connection_made()");
  if (status == LUA_ERRMEM) force_close(L, s, t, -1);
  if (status != LUA_OK) lua_pop(L, 1);  /* reported already */
  start_reading(s);
}

void eddy__stream_start(lua_State *L, int t, int p, int sv) {
  eddy_Stream *s = (eddy_Stream *)lua_touserdata(L, t);
  t = lua_absindex(L, t);
  p = lua_absindex(L, p);
  if (sv != 0) {  /* first: closing after set_protocol raised leaves it */
    lua_pushvalue(L, sv);
    lua_setiuservalue(L, t, ST_SERVER);
  }
  set_protocol(L, s, t, p);
  start(L, s, t);
}

/* transport:_start(protocol): connection_made, then reading. */
static int t_start(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  if (s->started || s->state != EDDY_STREAM_OPEN)
    return luaL_error(L, "transport already started or closed");
  lua_settop(L, 2);
  set_protocol(L, s, 1, 2);  /* type errors raise before anything runs */
  start(L, s, 1);
  return 0;
}

static int t_close(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  if (s->state == EDDY_STREAM_OPEN) begin_close(L, s, 1);
  return 0;
}

static int t_abort(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  force_close(L, s, 1, 0);
  return 0;
}

static int t_is_closing(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  lua_pushboolean(L, s->state != EDDY_STREAM_OPEN);
  return 1;
}

static int t_is_reading(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  lua_pushboolean(L, s->state == EDDY_STREAM_OPEN && s->reading);
  return 1;
}

static int t_pause_reading(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  if (s->state != EDDY_STREAM_OPEN || !s->reading) return 0;
  s->reading = 0;
  stop_reading(s);
  update_anchor(L, s, 1);
  return 0;
}

static int t_resume_reading(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  if (s->state != EDDY_STREAM_OPEN || s->reading) return 0;
  s->reading = 1;
  if (s->started) start_reading(s);
  update_anchor(L, s, 1);
  return 0;
}

static int t_set_protocol(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  luaL_checkany(L, 2);
  set_protocol(L, s, 1, 2);
  return 0;
}

static int t_get_protocol(lua_State *L) {
  checkstream(L, 1);
  lua_getiuservalue(L, 1, ST_PROTOCOL);
  return 1;
}

/* Push the address getsockname/getpeername gives for the stream, or
** nothing; returns whether it pushed. */
static int push_address(lua_State *L, eddy_Stream *s, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  uv_os_fd_t fd;
  if (s->uv.handle == NULL || uv_fileno(s->uv.handle, &fd) < 0) return 0;
  memset(&ss, 0, sizeof ss);
  if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
            : getsockname(fd, (struct sockaddr *)&ss, &len)) < 0)
    return 0;
  eddy__socket_pushaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}

/*
** Once a side of the connection is shut, the other may follow and the
** kernel then forgets the peer: keep both addresses in the extra info
** (asyncio reads them when the transport is made; doing it here instead
** costs idle connections nothing).
*/
static void keep_addresses(lua_State *L, eddy_Stream *s, int t) {
  static const char *const names[] = {"sockname", "peername"};
  int peer;
  t = lua_absindex(L, t);
  push_extra(L, t);
  for (peer = 0; peer <= 1; peer++) {
    if (lua_getfield(L, -1, names[peer]) == LUA_TNIL && push_address(L, s, peer))
      lua_setfield(L, -3, names[peer]);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Push the transport's socket as an eddy.socket object (not owning the
** descriptor); returns whether it pushed. */
static int push_socket(lua_State *L, eddy_Stream *s) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  uv_os_fd_t fd;
  if (s->uv.handle == NULL || uv_fileno(s->uv.handle, &fd) < 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return 0;
  eddy__socket_push(L, fd, ss.ss_family, SOCK_STREAM, 0);
  return 1;
}

/* transport:get_extra_info(name, default): peername, sockname, socket;
** values are cached on first use (asyncio reads them at creation). */
static int t_get_extra_info(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  const char *name = luaL_checkstring(L, 2);
  int peer = strcmp(name, "peername") == 0;
  lua_settop(L, 3);
  if (is_pipe(s)) {  /* only "pipe", kept at creation */
    if (strcmp(name, "pipe") != 0) return 1;
    push_extra(L, 1);
    if (lua_getfield(L, -1, name) == LUA_TNIL) lua_pushvalue(L, 3);
    return 1;
  }
  if (!peer && strcmp(name, "sockname") != 0 && strcmp(name, "socket") != 0)
    return 1;  /* the default */
  push_extra(L, 1);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (strcmp(name, "socket") == 0) {
    if (!push_socket(L, s)) {
      lua_pushvalue(L, 3);
      return 1;
    }
  } else if (!push_address(L, s, peer)) {
    lua_pushvalue(L, 3);
    return 1;
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

static int t_tostring(lua_State *L) {
  eddy_Stream *s = checkstream(L, 1);
  static const char *const states[] = {"open", "closing", "closed"};
  uv_os_fd_t fd = -1;
  if (s->uv.handle != NULL) uv_fileno(s->uv.handle, &fd);
  lua_pushfstring(L, "<%s fd=%d %s>", kind_names[s->kind] + strlen("eddy."),
                  (int)fd, states[s->state]);
  return 1;
}

/* __gc: a transport nobody closed: at lua_close, or one dropped while
** idle (update_anchor).  Anything else the debug library gave this
** metatable is left alone. */
static int t_gc(lua_State *L) {
  eddy_Stream *s = (eddy_Stream *)eddy__tomarked(L, 1, &stream_key);
  if (s == NULL) return 0;
  if (s->hangup != NULL) eddy__hangup_stop(s);
  eddy__uv_gc(L, &s->uv, "transport");
  s->state = EDDY_STREAM_CLOSED;  /* for a finalizer that still holds it */
  return 0;
}

/* }====================================================== */

/* {====================================================== Creation */

eddy_Stream *eddy__stream_new(lua_State *L, eddy_Loop *loop, int kind) {
  eddy_Stream *s;
  eddy__read_buffer(L, loop->rt, READ_SIZE);
  s = (eddy_Stream *)eddy__newmarked(L, sizeof *s, ST_NUV, &stream_key);
  memset(s, 0, sizeof *s);
  eddy__uv_init(&s->uv);
  s->uv.loop = loop;
  s->uv.on_closed = stream_closed;
  s->uv.before_close = stream_before_close;
  s->kind = (unsigned char)kind;
  s->state = EDDY_STREAM_CLOSED;  /* until the handle is open */
  s->high = DEFAULT_HIGH;
  s->low = DEFAULT_HIGH / 4;
  luaL_setmetatable(L, kind_names[kind]);
  /* its protocol's methods run in it: eddy__io_context_enter */
  s->has_ctx = (unsigned char)eddy__keep_context(L, loop->rt);
  if (s->has_ctx) eddy__stream_set_extra(L, -2, "context");
  return s;
}

void eddy__stream_keep_context(lua_State *L, eddy_Stream *s, int t) {
  eddy_Runtime *rt = s->uv.loop->rt;
  if (rt->context_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->context_ref);
  eddy__stream_set_extra(L, t, "context");
  s->has_ctx = 1;
}

/* Open the libuv handle of the new stream at index t; returns the
** handle (after uv_*_init) or raises. */
uv_stream_t *eddy__stream_open(lua_State *L, eddy_Stream *s, int t) {
  eddy_Loop *loop = s->uv.loop;
  uv_handle_t *h;
  int r;
  if (s->kind == EDDY_STREAM_TCP) {
    h = eddy__uv_open(L, &s->uv, t, loop, sizeof(uv_tcp_t));
    r = uv_tcp_init(loop->uv, (uv_tcp_t *)h);
  } else {
    h = eddy__uv_open(L, &s->uv, t, loop, sizeof(uv_pipe_t));
    r = uv_pipe_init(loop->uv, (uv_pipe_t *)h, 0);
  }
  if (r < 0) {
    eddy__uv_abandon(L, &s->uv);
    eddy__uverror(L, r, "transport");
  }
  s->state = EDDY_STREAM_OPEN;
  return (uv_stream_t *)h;
}

/* Wrap the connected socket 'fd' in the new stream at index t (the
** stream owns it from now on); returns 0 or a libuv error (fd closed). */
int eddy__stream_adopt(lua_State *L, eddy_Stream *s, int t, int fd) {
  uv_stream_t *h = s->uv.handle != NULL ? (uv_stream_t *)s->uv.handle
                                        : eddy__stream_open(L, s, t);
  int uvfd = eddy__fd_for_uv(fd), r;
  if (uvfd < 0) r = uvfd;
  else r = s->kind == EDDY_STREAM_TCP ? uv_tcp_open((uv_tcp_t *)h, uvfd)
                                      : uv_pipe_open((uv_pipe_t *)h, uvfd);
  if (r < 0) {
    eddy__fd_close(uvfd < 0 ? fd : uvfd);
    close_handle(L, s, t);
    return r;
  }
  if (s->kind == EDDY_STREAM_TCP) uv_tcp_nodelay((uv_tcp_t *)h, 1);
  return 0;
}

/* Close (abort = 0) or abort every transport accepted by server 'sv'. */
void eddy__stream_close_clients(lua_State *L, eddy_Loop *loop,
                                eddy_Server *sv, int abort) {
  eddy_UVObject *o;
  int n = 0, i, top = lua_gettop(L);
  /* Collect first: closing unlinks objects from the loop's list. */
  lua_newtable(L);
  for (o = loop->uvobjects; o != NULL; o = o->next)
    if (o->on_closed == stream_closed && ((eddy_Stream *)o)->server == sv) {
      eddy__uv_push(L, o);  /* nil: released and being finalized */
      if (lua_isnil(L, -1)) lua_pop(L, 1);
      else lua_rawseti(L, top + 1, ++n);
    }
  for (i = 1; i <= n; i++) {
    lua_pushcfunction(L, abort ? t_abort : t_close);
    lua_rawgeti(L, top + 1, i);
    lua_call(L, 1, 0);
  }
  lua_settop(L, top);
}

/* loop:_transport_from_fd(fd) -> a transport without a protocol yet
** for the connected stream socket 'fd', which it owns from now on (TCP,
** or UNIX for an AF_UNIX socket). */
static int l_transport_from_fd(lua_State *L) {
  eddy_Loop *loop = eddy__checkloop(L, 1);
  lua_Integer fd = luaL_checkinteger(L, 2);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int type = 0, r;
  socklen_t tlen = sizeof type;
  eddy_Stream *s;
  if (fd < 0 || fd > INT_MAX) return eddy__error(L, "ValueError", "bad fd");
  if (getsockname((int)fd, (struct sockaddr *)&ss, &len) < 0 ||
      getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0)
    return eddy__uverror(L, -errno, "transport");
  if (type != SOCK_STREAM)
    return eddy__error(L, "ValueError",
                       "A Stream Socket was expected, got a socket of type %d",
                       type);
  s = eddy__stream_new(L, loop, ss.ss_family == AF_UNIX ? EDDY_STREAM_UNIX
                                                         : EDDY_STREAM_TCP);
  if ((r = eddy__stream_adopt(L, s, lua_gettop(L), (int)fd)) < 0)
    return eddy__uverror(L, r, "transport");
  return 1;
}

static const luaL_Reg loop_methods[] = {
  {"_transport_from_fd", l_transport_from_fd},
  {NULL, NULL}
};

/* Every transport's methods (asyncio's BaseTransport). */
static const luaL_Reg base_methods[] = {
  {"close", t_close},
  {"is_closing", t_is_closing},
  {"set_protocol", t_set_protocol},
  {"get_protocol", t_get_protocol},
  {"get_extra_info", t_get_extra_info},
  {"_start", t_start},
  {NULL, NULL}
};

/* ReadTransport's. */
static const luaL_Reg read_methods[] = {
  {"is_reading", t_is_reading},
  {"pause_reading", t_pause_reading},
  {"resume_reading", t_resume_reading},
  {NULL, NULL}
};

/* WriteTransport's. */
static const luaL_Reg write_methods[] = {
  {"write", t_write},
  {"writelines", t_writelines},
  {"write_eof", t_write_eof},
  {"can_write_eof", t_can_write_eof},
  {"abort", t_abort},
  {"get_write_buffer_size", t_get_write_buffer_size},
  {"get_write_buffer_limits", t_get_write_buffer_limits},
  {"set_write_buffer_limits", t_set_write_buffer_limits},
  {NULL, NULL}
};

/* A methods table with the base methods and, as asked, the read and the
** write ones. */
static void new_methods(lua_State *L, int readable, int writable) {
  luaL_newlib(L, base_methods);
  if (readable) luaL_setfuncs(L, read_methods, 0);
  if (writable) luaL_setfuncs(L, write_methods, 0);
}

/* The stream metatables: TCP and UNIX transports share one methods
** table, which the core table at the top gets as StreamTransport; each
** pipe kind has the methods of its direction only. */
/* A write to a reset connection must fail with EPIPE, not kill the
** process: SIGPIPE is ignored as Python and Node do, unless the host set
** a handler of its own. */
void eddy__ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

void eddy__open_stream(lua_State *L) {
  int kind;
  eddy__ignore_sigpipe();
  eddy__loop_methods(L, loop_methods);
  new_methods(L, 1, 1);
  for (kind = EDDY_STREAM_TCP; kind <= EDDY_STREAM_WRITE_PIPE; kind++) {
    eddy__newmarkedmetatable(L, kind_names[kind]);
    if (kind == EDDY_STREAM_READ_PIPE || kind == EDDY_STREAM_WRITE_PIPE)
      new_methods(L, kind == EDDY_STREAM_READ_PIPE,
                  kind == EDDY_STREAM_WRITE_PIPE);
    else
      lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, t_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    eddy__seal_metatable(L, -1);
    lua_pop(L, 1);
  }
  lua_setfield(L, -2, "StreamTransport");  /* core table: for Lua parts */
}

/* }====================================================== */
