/*
** tls.c -- the TLS engine: mbedTLS on memory buffers (DESIGN.md "TLS").
**
** Nothing here touches a socket.  A connection object ("eddy.TLSObject",
** what get_extra_info("ssl_object") returns) takes the ciphertext its
** transport received (feed), hands back the ciphertext to send (take),
** and turns plaintext into records and records into plaintext;
** lua/eddy/sslproto.lua drives it between a transport and the
** application's protocol, as asyncio's sslproto drives ssl.SSLObject over
** two MemoryBIOs.  Its context and config come from tls_context.c.
*/
#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/oid.h>
#include <mbedtls/ssl_ciphersuites.h>

#include "tls.h"


/* A growable byte queue: bytes [off, len) of p are pending. */
typedef struct Bytes {
  char *p;
  size_t off, len, cap;
} Bytes;

static int bytes_append(Bytes *b, const char *data, size_t n) {
  if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
  if (b->len + n > b->cap) {
    size_t live = b->len - b->off, cap = b->cap ? b->cap : 16384;
    char *p;
    if (b->off > 0) {  /* slide the live bytes down first */
      memmove(b->p, b->p + b->off, live);
      b->off = 0;
      b->len = live;
    }
    while (cap < live + n) cap *= 2;
    if (cap != b->cap) {
      if ((p = (char *)realloc(b->p, cap)) == NULL) return 0;
      b->p = p;
      b->cap = cap;
    }
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 1;
}

/* Free the queue's block once everything in it was used: an idle
** connection keeps no buffer of its own (mbedTLS keeps its record
** buffers). */
static void bytes_trim(Bytes *b) {
  if (b->off < b->len) return;
  free(b->p);
  memset(b, 0, sizeof *b);
}

typedef struct Conn {
  mbedtls_ssl_context ssl;
  Snapshot *snap;
  Bytes in, out;
  int server_side, verify_mode, check_hostname;
  int ip_host;  /* the server_hostname is an IP address: check it here */
  unsigned char ip[16];
  size_t iplen;
  char host[MBEDTLS_SSL_MAX_HOST_NAME_LEN + 1];  /* or the DNS name, "" */
  int handshake_done, closed;
  int oom;  /* a send could not be buffered */
  char head[5];  /* the first bytes received, for not_tls */
  size_t nhead;
} Conn;

/* The connection's user values. */
enum { CONN_HOSTNAME = 1, CONN_CONTEXT, CONN_NUV = CONN_CONTEXT };

static Conn *checkconn(lua_State *L, int i) {
  Conn *c = (Conn *)luaL_checkudata(L, i, TLS_OBJECT);
  if (c->snap == NULL) luaL_error(L, "TLS object is closed");
  return c;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  Conn *c = (Conn *)ctx;
  if (!bytes_append(&c->out, (const char *)buf, len)) {
    c->oom = 1;
    return MBEDTLS_ERR_SSL_ALLOC_FAILED;
  }
  return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  Conn *c = (Conn *)ctx;
  size_t avail = c->in.len - c->in.off;
  if (avail == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  if (len > avail) len = avail;
  memcpy(buf, c->in.p + c->in.off, len);
  c->in.off += len;
  return (int)len;
}

/* Whether the certificate has the IP address of the connection among its
** subjectAltNames (mbedTLS 2 checks only DNS names and the CN). */
static int cert_has_ip(const mbedtls_x509_crt *crt, const Conn *c) {
  const mbedtls_x509_sequence *san;
  for (san = &crt->subject_alt_names; san != NULL; san = san->next) {
    if ((san->buf.tag & 0x1f) == 7 && san->buf.len == c->iplen &&
        memcmp(san->buf.p, c->ip, c->iplen) == 0)
      return 1;
  }
  return 0;
}

/* Whether the certificate has a DNS name among its subjectAltNames. */
static int cert_has_dns(const mbedtls_x509_crt *crt) {
  const mbedtls_x509_sequence *san;
  for (san = &crt->subject_alt_names; san != NULL; san = san->next) {
    if ((san->buf.tag & 0x1f) == 2 && san->buf.len > 0) return 1;
  }
  return 0;
}

/* Whether the certificate name 'pat' (n bytes) names 'host': case
** aside, the same, or "*.rest" for a host whose first label is followed
** by "rest", where "rest" has two labels at least ("*.com" names nothing,
** as OpenSSL's X509_check_host has it). */
static int name_matches(const unsigned char *pat, size_t n, const char *host) {
  size_t hlen = strlen(host);
  const char *dot;
  if (n == hlen && strncasecmp((const char *)pat, host, n) == 0) return 1;
  if (n < 3 || pat[0] != '*' || pat[1] != '.') return 0;
  if (memchr(pat + 2, '.', n - 2) == NULL) return 0;  /* "*.com" */
  if ((dot = strchr(host, '.')) == NULL || dot == host) return 0;
  return strlen(dot) == n - 1 && strncasecmp((const char *)pat + 1, dot, n - 1) == 0;
}

/* Whether one of the certificate's subject CNs names 'host'. */
static int cn_matches(const mbedtls_x509_crt *crt, const char *host) {
  const mbedtls_x509_name *name;
  for (name = &crt->subject; name != NULL; name = name->next) {
    if (name->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &name->oid) == 0 &&
        name_matches(name->val.p, name->val.len, host))
      return 1;
  }
  return 0;
}

/* The verify callback: the hostname part of verification follows the
** connection's check_hostname, and IP addresses are checked here.  A DNS
** name falls back to the CN when the certificate has no DNS
** subjectAltName, as OpenSSL's X509_check_host (so Python) does; mbedTLS
** gives up on the CN as soon as there is any subjectAltName (an IP
** address one, say). */
static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  Conn *c = (Conn *)ctx;
  if (depth != 0) return 0;
  if (!c->check_hostname) {
    *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
  } else if (c->ip_host) {
    if (!cert_has_ip(crt, c)) *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  } else if ((*flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) && c->host[0] != '\0' &&
             !cert_has_dns(crt) && cn_matches(crt, c->host)) {
    *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
  }
  return 0;
}

static int conn_gc(lua_State *L) {
  Conn *c = (Conn *)lua_touserdata(L, 1);
  if (c->snap != NULL) {
    mbedtls_ssl_free(&c->ssl);
    eddy__tls_config_release(c->snap);
    c->snap = NULL;
  }
  free(c->in.p);
  free(c->out.p);
  memset(&c->in, 0, sizeof c->in);
  memset(&c->out, 0, sizeof c->out);
  return 0;
}

/* ctx:wrap(server_side, server_hostname, verify_mode, check_hostname,
**          min_version, max_version, context) -> a TLS object; 'context'
** (eddy.ssl's SSLContext) is what tls.context returns. */
static int ctx_wrap(lua_State *L) {
  int server_side = lua_toboolean(L, 2);
  const char *hostname = luaL_optstring(L, 3, NULL);
  int verify_mode = (int)luaL_checkinteger(L, 4);
  int check_hostname = lua_toboolean(L, 5);
  int lo = (int)luaL_checkinteger(L, 6), hi = (int)luaL_checkinteger(L, 7);
  Snapshot *s;
  Conn *c;
  int rc;
  /* Cut at a NUL, the name checked against the certificate would not be
  ** the one asked for. */
  if (hostname != NULL) eddy__tocstring(L, 3, "server_hostname");
  lua_settop(L, 8);
  s = eddy__tls_config(L, 1, server_side, verify_mode, lo, hi);
  c = (Conn *)lua_newuserdatauv(L, sizeof *c, CONN_NUV);
  memset(c, 0, sizeof *c);
  mbedtls_ssl_init(&c->ssl);
  c->snap = s;
  s->refs++;
  luaL_setmetatable(L, TLS_OBJECT);
  c->server_side = server_side;
  c->verify_mode = verify_mode;
  c->check_hostname = check_hostname;
  if ((rc = mbedtls_ssl_setup(&c->ssl, &s->conf)) != 0) return eddy__tls_error(L, rc, "TLS setup");
  mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
  mbedtls_ssl_set_verify(&c->ssl, verify_cb, c);
  if (hostname != NULL) {
    if (inet_pton(AF_INET, hostname, c->ip) == 1) {
      c->ip_host = 1, c->iplen = 4;
    } else if (inet_pton(AF_INET6, hostname, c->ip) == 1) {
      c->ip_host = 1, c->iplen = 16;
    } else if ((rc = mbedtls_ssl_set_hostname(&c->ssl, hostname)) != 0) {
      return eddy__tls_error(L, rc, "server_hostname");  /* SNI and the name check */
    } else {  /* (set_hostname refuses a name too long for c->host) */
      strncpy(c->host, hostname, sizeof c->host - 1);
    }
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, CONN_HOSTNAME);
  }
  lua_pushvalue(L, 8);
  lua_setiuservalue(L, -2, CONN_CONTEXT);
  return 1;
}

/* OpenSSL's reason when the peer's first bytes are no TLS record header:
** its record layer names an HTTP request and a wrong version, where
** mbedTLS's server sees only a bad ClientHello.  NULL otherwise. */
static const char *not_tls(const Conn *c) {
  static const char *const requests[] = {"GET ", "POST ", "HEAD ", "PUT "};
  for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
    size_t n = strlen(requests[i]);
    if (c->nhead >= n && memcmp(c->head, requests[i], n) == 0) return "HTTP_REQUEST";
  }
  if (c->nhead == 5 && memcmp(c->head, "CONNE", 5) == 0) return "HTTPS_PROXY_REQUEST";
  if (c->nhead >= 2 && c->head[1] != 3) return "WRONG_VERSION_NUMBER";  /* major 3: SSL 3 on */
  return NULL;
}

/* Raise the failure 'rc' of a handshake, read or write. */
static int conn_error(lua_State *L, Conn *c, int rc) {
  uint32_t flags;
  const char *reason;
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED &&
      (flags = mbedtls_ssl_get_verify_result(&c->ssl)) != 0) {
    char info[512];
    size_t n;
    mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
    n = strlen(info);
    while (n > 0 && info[n - 1] == '\n') info[--n] = '\0';
    for (char *p = info; *p; p++) if (*p == '\n') *p = ';';
    lua_pushfstring(L, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: %s", info);
    lua_createtable(L, 0, 6);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "strerror");  /* with errno, as Python's */
    lua_pushstring(L, info);
    lua_setfield(L, -2, "verify_message");
    lua_pushinteger(L, (lua_Integer)flags);
    lua_setfield(L, -2, "verify_code");
    lua_pushliteral(L, "CERTIFICATE_VERIFY_FAILED");
    lua_setfield(L, -2, "reason");
    lua_pushliteral(L, "SSL");
    lua_setfield(L, -2, "library");
    lua_pushinteger(L, rc);
    lua_setfield(L, -2, "errno");
    eddy__newerror(L, "SSLCertVerificationError", 2);
    return lua_error(L);
  }
  if (c->oom) return luaL_error(L, "not enough memory");
  reason = c->handshake_done ? NULL : not_tls(c);
  if (reason == NULL && rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE &&
      c->ssl.in_msgtype == MBEDTLS_SSL_MSG_ALERT)  /* in_msg is still the alert */
    reason = eddy__tls_alert_reason(c->ssl.in_msg[1]);
  if (reason != NULL) {
    eddy__tls_pusherror_as(L, rc, reason, NULL);
    return lua_error(L);
  }
  return eddy__tls_error(L, rc, NULL);
}

/* tls:feed(ciphertext): bytes the transport received. */
static int conn_feed(lua_State *L) {
  Conn *c = checkconn(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (!bytes_append(&c->in, data, n)) return luaL_error(L, "not enough memory");
  for (size_t i = 0; i < n && c->nhead < sizeof c->head; i++) c->head[c->nhead++] = data[i];
  return 0;
}

/* tls:take() -> the ciphertext to send, or nil */
static int conn_take(lua_State *L) {
  Conn *c = checkconn(L, 1);
  if (c->out.len == c->out.off) return 0;
  lua_pushlstring(L, c->out.p + c->out.off, c->out.len - c->out.off);
  c->out.off = c->out.len;
  bytes_trim(&c->out);
  return 1;
}

/* tls:handshake() -> true when done, false when it needs more input */
static int conn_handshake(lua_State *L) {
  Conn *c = checkconn(L, 1);
  int rc;
  if (!c->handshake_done) {
    rc = mbedtls_ssl_handshake(&c->ssl);
    bytes_trim(&c->in);
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      lua_pushboolean(L, 0);
      return 1;
    }
    if (rc != 0) return conn_error(L, c, rc);
    c->handshake_done = 1;
    /* CERT_OPTIONAL on a server: a certificate the client did send must
    ** have verified. */
    if (c->verify_mode == CERT_OPTIONAL && mbedtls_ssl_get_peer_cert(&c->ssl) != NULL &&
        mbedtls_ssl_get_verify_result(&c->ssl) != 0)
      return conn_error(L, c, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Read up to len plaintext bytes into p: how many (0: nothing more for
** now), or the failure's mbedTLS code (< 0).  c->closed is set once the
** peer's close_notify came. */
static int read_some(Conn *c, unsigned char *p, size_t len) {
  if (len > INT_MAX) len = INT_MAX;
  for (;;) {
    int rc = mbedtls_ssl_read(&c->ssl, p, len);
    if (rc > 0) return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      c->closed = 1;
      return 0;
    }
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue;
#endif
    return rc;
  }
}

/* tls:read() -> plaintext (maybe ""), closed: all the application data
** the fed records hold; 'closed' once the peer's close_notify came. */
static int conn_read(lua_State *L) {
  Conn *c = checkconn(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (!c->closed) {
    char *p = luaL_prepbuffsize(&b, 16384);
    int rc = read_some(c, (unsigned char *)p, 16384);
    if (rc < 0) return conn_error(L, c, rc);
    if (rc == 0) break;
    luaL_addsize(&b, (size_t)rc);
  }
  bytes_trim(&c->in);
  luaL_pushresult(&b);
  lua_pushboolean(L, c->closed);
  return 2;
}

/* tls:read_into(buf) -> n, closed: as read, but into the eddy.Buffer
** 'buf' (a BufferedProtocol's), at most #buf bytes; what does not fit
** stays for the next call, as ssl.SSLObject.read(n, buffer). */
static int conn_read_into(lua_State *L) {
  Conn *c = checkconn(L, 1);
  size_t size, n = 0;
  unsigned char *p = (unsigned char *)eddy__checkbuffer(L, 2, &size);
  while (!c->closed && n < size) {
    int rc = read_some(c, p + n, size - n);
    if (rc < 0) return conn_error(L, c, rc);
    if (rc == 0) break;
    n += (size_t)rc;
  }
  bytes_trim(&c->in);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushboolean(L, c->closed);
  return 2;
}

/* tls:write(plaintext): all of it becomes records for take(). */
static int conn_write(lua_State *L) {
  Conn *c = checkconn(L, 1);
  size_t n, done = 0;
  const char *data = luaL_checklstring(L, 2, &n);
  while (done < n) {
    int rc = mbedtls_ssl_write(&c->ssl, (const unsigned char *)data + done, n - done);
    if (rc < 0) return conn_error(L, c, rc);
    done += (size_t)rc;
  }
  return 0;
}

/* tls:close_notify(): queue the close_notify alert for take(). */
static int conn_close_notify(lua_State *L) {
  Conn *c = checkconn(L, 1);
  int rc = mbedtls_ssl_close_notify(&c->ssl);
  if (rc != 0 && rc != MBEDTLS_ERR_SSL_WANT_WRITE) return conn_error(L, c, rc);
  return 0;
}

/* tls:getpeercert(binary_form): the peer's certificate as Python's dict,
** {} when it was not verified, nil without one (ValueError before the
** handshake); binary_form: the DER bytes. */
static int conn_getpeercert(lua_State *L) {
  Conn *c = checkconn(L, 1);
  int binary = lua_toboolean(L, 2);
  const mbedtls_x509_crt *crt;
  if (!c->handshake_done)
    return eddy__error(L, "ValueError", "handshake not done yet");
  if ((crt = mbedtls_ssl_get_peer_cert(&c->ssl)) == NULL)
    lua_pushnil(L);  /* one nil, Python's None, not nothing */
  else if (binary)
    lua_pushlstring(L, (const char *)crt->raw.p, crt->raw.len);
  else if (c->verify_mode == CERT_NONE)
    lua_newtable(L);
  else
    eddy__tls_push_cert(L, crt);
  return 1;
}

/* tls:cipher() -> name, protocol, secret bits (API.md §10), or nil
** before the handshake. */
static int conn_cipher(lua_State *L) {
  Conn *c = checkconn(L, 1);
  const char *name;
  const mbedtls_ssl_ciphersuite_t *suite;
  int bits = 0;
  if (!c->handshake_done || (name = mbedtls_ssl_get_ciphersuite(&c->ssl)) == NULL) {
    lua_pushnil(L);
    return 1;
  }
  suite = mbedtls_ssl_ciphersuite_from_string(name);
  if (suite != NULL) {
#if HAVE_MBEDTLS3
    const mbedtls_cipher_info_t *info =
        mbedtls_cipher_info_from_type((mbedtls_cipher_type_t)suite->MBEDTLS_PRIVATE(cipher));
    if (info != NULL) bits = (int)mbedtls_cipher_info_get_key_bitlen(info);
#else
    const mbedtls_cipher_info_t *info = mbedtls_cipher_info_from_type(suite->cipher);
    if (info != NULL) bits = (int)info->key_bitlen;
#endif
  }
  lua_pushstring(L, name);
  lua_pushstring(L, mbedtls_ssl_get_version(&c->ssl));
  lua_pushinteger(L, bits);
  return 3;
}

/* tls:version() -> "TLSv1.2", or nil before the handshake */
static int conn_version(lua_State *L) {
  Conn *c = checkconn(L, 1);
  if (!c->handshake_done) lua_pushnil(L);
  else lua_pushstring(L, mbedtls_ssl_get_version(&c->ssl));
  return 1;
}

/* tls:selected_alpn_protocol() -> the protocol both sides chose, or nil */
static int conn_selected_alpn_protocol(lua_State *L) {
  Conn *c = checkconn(L, 1);
  const char *p = c->handshake_done ? mbedtls_ssl_get_alpn_protocol(&c->ssl) : NULL;
  lua_pushstring(L, p);  /* nil when NULL: one value, Python's None */
  return 1;
}

/* tls:pending() -> decrypted bytes ready to read */
static int conn_pending(lua_State *L) {
  Conn *c = checkconn(L, 1);
  lua_pushinteger(L, (lua_Integer)mbedtls_ssl_get_bytes_avail(&c->ssl));
  return 1;
}

/* tls.server_side, tls.server_hostname, tls.context, tls:method() */
static int conn_index(lua_State *L) {
  Conn *c = (Conn *)luaL_checkudata(L, 1, TLS_OBJECT);
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "server_side") == 0) {
    lua_pushboolean(L, c->server_side);
  } else if (key != NULL && strcmp(key, "server_hostname") == 0) {
    lua_getiuservalue(L, 1, CONN_HOSTNAME);
  } else if (key != NULL && strcmp(key, "context") == 0) {
    lua_getiuservalue(L, 1, CONN_CONTEXT);
  } else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
  }
  return 1;
}

static int conn_tostring(lua_State *L) {
  Conn *c = (Conn *)luaL_checkudata(L, 1, TLS_OBJECT);
  lua_pushfstring(L, "<eddy.ssl.SSLObject %s %p>", c->server_side ? "server" : "client",
                  (void *)c);
  return 1;
}

/* }====================================================== */

static const luaL_Reg conn_methods[] = {
  {"feed", conn_feed},
  {"take", conn_take},
  {"handshake", conn_handshake},
  {"read", conn_read},
  {"read_into", conn_read_into},
  {"write", conn_write},
  {"close_notify", conn_close_notify},
  {"getpeercert", conn_getpeercert},
  {"cipher", conn_cipher},
  {"version", conn_version},
  {"selected_alpn_protocol", conn_selected_alpn_protocol},
  {"pending", conn_pending},
  {NULL, NULL}
};

/* Add tls_context (and the metatables) to the core table at the top. */
void eddy__open_tls(lua_State *L) {
  luaL_newmetatable(L, TLS_OBJECT);
  luaL_newlib(L, conn_methods);
  lua_pushcclosure(L, conn_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, conn_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, conn_tostring);
  lua_setfield(L, -2, "__tostring");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  eddy__open_tls_context(L, ctx_wrap);
}
