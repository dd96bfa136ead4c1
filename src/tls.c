/*
** tls.c -- the TLS engine: mbedTLS on memory buffers (DESIGN.md "TLS").
**
** Nothing here touches a socket.  A connection object ("eddy.TLSObject")
** takes the ciphertext its transport received (feed), hands back the
** ciphertext to send (take), and turns plaintext into records and records
** into plaintext; lua/eddy/sslproto.lua drives it between a transport
** and the application's protocol, as asyncio's sslproto drives
** ssl.SSLObject over two MemoryBIOs.
**
** A context ("eddy.TLSContext", the C half of eddy.ssl.SSLContext) holds
** what its connections share: the random generator, the CA store, the
** certificate chain with its key, the ALPN and cipher lists.  mbedTLS
** keeps pointers to all of these inside an mbedtls_ssl_config, and a
** connection keeps a pointer to its config; so these parts live in
** malloc'd, reference-counted blocks that the last user frees, whatever
** order the collector finalizes the Lua objects in.  A config is built
** at the first wrap after a change ("snapshot"), so changing a context
** never pulls a config from under a live connection.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "internal.h"

#define TLS_CONTEXT "eddy.TLSContext"
#define TLS_OBJECT "eddy.TLSObject"

/* Python's ssl.CERT_* and ssl.TLSVersion values. */
enum { CERT_NONE = 0, CERT_OPTIONAL = 1, CERT_REQUIRED = 2 };
#define TLS1_0 0x0301
#define TLS1_1 0x0302
#define TLS1_2 0x0303
#define TLS1_3 0x0304

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define HAVE_MBEDTLS3 1
#else
#define HAVE_MBEDTLS3 0
#endif

/* {====================================================== Shared parts */

/* The random generator and the CA store of one context. */
typedef struct Material {
  int refs;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  int ca_count;
} Material;

/* A certificate chain and its private key (load_cert_chain). */
typedef struct KeyPair {
  int refs;
  mbedtls_x509_crt chain;
  mbedtls_pk_context key;
} KeyPair;

/* An mbedtls_ssl_config and everything it points to. */
typedef struct Snapshot {
  int refs;
  mbedtls_ssl_config conf;
  Material *m;
  KeyPair *kp;
  int *ciphers;      /* 0-terminated, or NULL: mbedTLS's defaults */
  char **alpn;       /* NULL-terminated, or NULL */
  int verify_mode, min_version, max_version;
} Snapshot;

static void free_list(char **list) {
  char **p;
  if (list == NULL) return;
  for (p = list; *p != NULL; p++) free(*p);
  free(list);
}

static void material_release(Material *m) {
  if (m == NULL || --m->refs > 0) return;
  mbedtls_x509_crt_free(&m->ca);
  mbedtls_ctr_drbg_free(&m->drbg);
  mbedtls_entropy_free(&m->entropy);
  free(m);
}

static void keypair_release(KeyPair *kp) {
  if (kp == NULL || --kp->refs > 0) return;
  mbedtls_x509_crt_free(&kp->chain);
  mbedtls_pk_free(&kp->key);
  free(kp);
}

static void snapshot_release(Snapshot *s) {
  if (s == NULL || --s->refs > 0) return;
  mbedtls_ssl_config_free(&s->conf);
  material_release(s->m);
  keypair_release(s->kp);
  free(s->ciphers);
  free_list(s->alpn);
  free(s);
}

/* }====================================================== */

/* {====================================================== Errors */

/* Python's reason names for the failures people meet. */
static const char *reason_of(int code) {
  switch (code) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: return "CERTIFICATE_VERIFY_FAILED";
    case MBEDTLS_ERR_SSL_INVALID_RECORD: return "WRONG_VERSION_NUMBER";
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: return "TLSV1_ALERT";
#ifdef MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION /* mbedTLS 2 only, as the next two */
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION: return "UNSUPPORTED_PROTOCOL";
#endif
#ifdef MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
      return "PEER_DID_NOT_RETURN_A_CERTIFICATE";
#endif
#ifdef MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE
    case MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE: return "NO_SHARED_CIPHER";
#endif
    case MBEDTLS_ERR_SSL_INVALID_MAC: return "DECRYPTION_FAILED_OR_BAD_RECORD_MAC";
    case MBEDTLS_ERR_PK_PASSWORD_REQUIRED:
    case MBEDTLS_ERR_PK_PASSWORD_MISMATCH: return "BAD_DECRYPT";
    case MBEDTLS_ERR_PK_BAD_INPUT_DATA:
    case MBEDTLS_ERR_PK_KEY_INVALID_FORMAT: return "PEM_LIB";
    default: return "UNKNOWN";
  }
}

/* Push eddy.errors.SSLError for mbedTLS error 'code', with 'reason' and
** 'errno' (the mbedTLS code) fields. */
static void push_sslerror(lua_State *L, int code, const char *what) {
  char text[200], hex[16];
  const char *reason = reason_of(code);
  mbedtls_strerror(code, text, sizeof text);
  snprintf(hex, sizeof hex, "-0x%04x", (unsigned)-code);
  lua_pushfstring(L, "[SSL: %s] %s%s%s (mbedTLS %s)", reason,
                  what ? what : "", what ? ": " : "", text, hex);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "errno");
  lua_pushliteral(L, "SSL");
  lua_setfield(L, -2, "library");
  eddy__newerror(L, "SSLError", 2);
}

static int sslerror(lua_State *L, int code, const char *what) {
  push_sslerror(L, code, what);
  return lua_error(L);
}

/* A file mbedTLS is about to read: report a missing or unreadable one as
** the OSError open() gives (Python's FileNotFoundError), not as a parse
** failure. */
static void check_readable(lua_State *L, const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    int e = errno;
    eddy__pushuverror(L, uv_translate_sys_error(e), path);
    lua_error(L);
  }
  fclose(f);
}

/* }====================================================== */

/* {====================================================== Contexts */

typedef struct Context {
  Material *m;
  KeyPair *kp;
  Snapshot *snap;  /* the config of the last wrap, until a change */
  int server_side;
  int *ciphers;
  char **alpn;
} Context;

static Context *checkcontext(lua_State *L, int i) {
  Context *c = (Context *)luaL_checkudata(L, i, TLS_CONTEXT);
  if (c->m == NULL) luaL_error(L, "TLS context is closed");
  return c;
}

static void invalidate(Context *c) {
  snapshot_release(c->snap);
  c->snap = NULL;
}

static int ctx_gc(lua_State *L) {
  Context *c = (Context *)lua_touserdata(L, 1);
  invalidate(c);
  material_release(c->m);
  keypair_release(c->kp);
  free(c->ciphers);
  free_list(c->alpn);
  memset(c, 0, sizeof *c);
  return 0;
}

/* C.tls_context(server_side) -> a new context */
static int ctx_new(lua_State *L) {
  int server_side = lua_toboolean(L, 1);
  static const char pers[] = "eddy";
  Context *c = (Context *)lua_newuserdatauv(L, sizeof *c, 0);
  Material *m;
  int rc;
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, TLS_CONTEXT);
  if ((m = (Material *)calloc(1, sizeof *m)) == NULL) return luaL_error(L, "not enough memory");
  m->refs = 1;
  mbedtls_entropy_init(&m->entropy);
  mbedtls_ctr_drbg_init(&m->drbg);
  mbedtls_x509_crt_init(&m->ca);
  c->m = m;
  c->server_side = server_side;
  rc = mbedtls_ctr_drbg_seed(&m->drbg, mbedtls_entropy_func, &m->entropy,
                             (const unsigned char *)pers, sizeof pers - 1);
  if (rc != 0) return sslerror(L, rc, "seeding the random generator");
  return 1;
}

/* The password argument of load_cert_chain: nil, a string, or a function
** returning one (Python's callable). */
static const char *password_arg(lua_State *L, int i) {
  if (lua_isnoneornil(L, i)) return NULL;
  if (lua_isfunction(L, i)) {
    lua_pushvalue(L, i);
    lua_call(L, 0, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "password callback must return a string");
    lua_replace(L, i);
  }
  return luaL_checkstring(L, i);
}

#if HAVE_MBEDTLS3
#define PARSE_KEYFILE(pk, path, pw, m) \
  mbedtls_pk_parse_keyfile(pk, path, pw, mbedtls_ctr_drbg_random, &(m)->drbg)
#define CHECK_PAIR(pub, prv, m) \
  mbedtls_pk_check_pair(pub, prv, mbedtls_ctr_drbg_random, &(m)->drbg)
#else
#define PARSE_KEYFILE(pk, path, pw, m) mbedtls_pk_parse_keyfile(pk, path, pw)
#define CHECK_PAIR(pub, prv, m) mbedtls_pk_check_pair(pub, prv)
#endif

/* ctx:load_cert_chain(certfile, keyfile, password) */
static int ctx_load_cert_chain(lua_State *L) {
  Context *c = checkcontext(L, 1);
  const char *certfile = luaL_checkstring(L, 2);
  const char *keyfile = luaL_optstring(L, 3, certfile);
  const char *password = password_arg(L, 4);
  KeyPair *kp;
  int rc;
  check_readable(L, certfile);
  check_readable(L, keyfile);
  if ((kp = (KeyPair *)calloc(1, sizeof *kp)) == NULL) return luaL_error(L, "not enough memory");
  kp->refs = 1;
  mbedtls_x509_crt_init(&kp->chain);
  mbedtls_pk_init(&kp->key);
  if ((rc = mbedtls_x509_crt_parse_file(&kp->chain, certfile)) != 0) {
    keypair_release(kp);
    return sslerror(L, rc, certfile);
  }
  if ((rc = PARSE_KEYFILE(&kp->key, keyfile, password, c->m)) != 0) {
    keypair_release(kp);
    return sslerror(L, rc, keyfile);
  }
  if ((rc = CHECK_PAIR(&kp->chain.pk, &kp->key, c->m)) != 0) {
    keypair_release(kp);
    lua_pushliteral(L, "[SSL: KEY_VALUES_MISMATCH] the private key does not match the certificate");
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "KEY_VALUES_MISMATCH");
    lua_setfield(L, -2, "reason");
    eddy__newerror(L, "SSLError", 2);
    return lua_error(L);
  }
  keypair_release(c->kp);
  c->kp = kp;
  invalidate(c);
  return 0;
}

/* ctx:load_verify_locations(cafile, capath, cadata): each may be nil;
** certificates are added to the store, as Python's. */
static int ctx_load_verify_locations(lua_State *L) {
  Context *c = checkcontext(L, 1);
  const char *cafile = luaL_optstring(L, 2, NULL);
  const char *capath = luaL_optstring(L, 3, NULL);
  size_t len = 0;
  const char *cadata = luaL_optlstring(L, 4, NULL, &len);
  int rc;
  if (cafile == NULL && capath == NULL && cadata == NULL)
    return luaL_error(L, "bad argument to 'load_verify_locations' "
                      "(cafile, capath and cadata cannot be all omitted)");
  if (cafile != NULL) {
    check_readable(L, cafile);
    if ((rc = mbedtls_x509_crt_parse_file(&c->m->ca, cafile)) < 0)
      return sslerror(L, rc, cafile);
    c->m->ca_count++;
  }
  if (capath != NULL) {
    /* files that are not certificates are skipped, as OpenSSL's lookup */
    if ((rc = mbedtls_x509_crt_parse_path(&c->m->ca, capath)) < 0)
      return sslerror(L, rc, capath);
    c->m->ca_count++;
  }
  if (cadata != NULL) {
    /* PEM must include its terminating NUL in the length; DER must not */
    int pem = strstr(cadata, "-----BEGIN") != NULL;
    rc = mbedtls_x509_crt_parse(&c->m->ca, (const unsigned char *)cadata,
                                pem ? len + 1 : len);
    if (rc < 0) return sslerror(L, rc, "cadata");
    c->m->ca_count++;
  }
  invalidate(c);
  return 0;
}

/* ctx:cert_store_stats() -> {x509 = n, x509_ca = n, crl = 0} */
static int ctx_cert_store_stats(lua_State *L) {
  Context *c = checkcontext(L, 1);
  const mbedtls_x509_crt *crt;
  lua_Integer n = 0, ca = 0;
  if (c->m->ca_count > 0) {
    for (crt = &c->m->ca; crt != NULL && crt->raw.len > 0; crt = crt->next) {
      n++;
#if HAVE_MBEDTLS3
      ca += crt->MBEDTLS_PRIVATE(ca_istrue) != 0;
#else
      ca += crt->ca_istrue != 0;
#endif
    }
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "x509");
  lua_pushinteger(L, ca);
  lua_setfield(L, -2, "x509_ca");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "crl");
  return 1;
}

/* ctx:set_alpn_protocols(list) */
static int ctx_set_alpn_protocols(lua_State *L) {
  Context *c = checkcontext(L, 1);
  lua_Integer i, n;
  char **list;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i <= n; i++) {
    size_t len;
    if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
      return luaL_error(L, "bad argument #1 to 'set_alpn_protocols' (protocol #%d: string expected)", (int)i);
    lua_tolstring(L, -1, &len);
    if (len == 0 || len > 255)
      return eddy__error(L, "ValueError", "ALPN protocols must be 1 to 255 in length");
    lua_pop(L, 1);
  }
  if ((list = (char **)calloc((size_t)n + 1, sizeof *list)) == NULL)
    return luaL_error(L, "not enough memory");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    list[i - 1] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (list[i - 1] == NULL) {
      free_list(list);
      return luaL_error(L, "not enough memory");
    }
  }
  free_list(c->alpn);
  c->alpn = n > 0 ? list : NULL;
  if (n == 0) free_list(list);
  invalidate(c);
  return 0;
}

/* One cipher suite name of set_ciphers: mbedTLS's ("TLS-ECDHE-RSA-WITH-
** AES-128-GCM-SHA256") or IANA's, with underscores. */
static int suite_id(const char *name, size_t len) {
  char buf[128];
  size_t i;
  if (len == 0 || len >= sizeof buf) return 0;
  for (i = 0; i < len; i++) buf[i] = name[i] == '_' ? '-' : name[i];
  buf[len] = '\0';
  return mbedtls_ssl_get_ciphersuite_id(buf);
}

/* ctx:set_ciphers(spec): a colon-separated list of suite names.
** OpenSSL's cipher-string language ("HIGH:!aNULL") is not mbedTLS's, so
** a name that is no suite is an error, not ignored. */
static int ctx_set_ciphers(lua_State *L) {
  Context *c = checkcontext(L, 1);
  size_t len;
  const char *spec = luaL_checklstring(L, 2, &len);
  const char *p = spec, *end = spec + len;
  int *ids, n = 0;
  if ((ids = (int *)calloc(len / 2 + 2, sizeof *ids)) == NULL)
    return luaL_error(L, "not enough memory");
  while (p < end) {
    const char *q = memchr(p, ':', (size_t)(end - p));
    size_t l = q ? (size_t)(q - p) : (size_t)(end - p);
    if (l > 0) {
      int id = suite_id(p, l);
      if (id == 0) {
        free(ids);
        lua_pushfstring(L, "[SSL: NO_CIPHER_MATCH] no cipher suite named '%s' "
                        "(set_ciphers takes mbedTLS or IANA suite names, "
                        "not OpenSSL cipher strings)", lua_pushlstring(L, p, l));
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "NO_CIPHER_MATCH");
        lua_setfield(L, -2, "reason");
        eddy__newerror(L, "SSLError", 2);
        return lua_error(L);
      }
      ids[n++] = id;
    }
    p += l + 1;
  }
  if (n == 0) {
    free(ids);
    return eddy__error(L, "SSLError", "No cipher can be selected.");
  }
  free(c->ciphers);
  c->ciphers = ids;
  invalidate(c);
  return 0;
}

static int *copy_ints(const int *a) {
  size_t n = 0;
  int *b;
  if (a == NULL) return NULL;
  while (a[n] != 0) n++;
  if ((b = (int *)malloc((n + 1) * sizeof *b)) != NULL) memcpy(b, a, (n + 1) * sizeof *b);
  return b;
}

static char **copy_list(char **a) {
  size_t n = 0, i;
  char **b;
  if (a == NULL) return NULL;
  while (a[n] != NULL) n++;
  if ((b = (char **)calloc(n + 1, sizeof *b)) == NULL) return NULL;
  for (i = 0; i < n; i++) {
    if ((b[i] = strdup(a[i])) == NULL) {
      free_list(b);
      return NULL;
    }
  }
  return b;
}

static void set_versions(mbedtls_ssl_config *conf, int lo, int hi) {
#if HAVE_MBEDTLS3
  mbedtls_ssl_conf_min_tls_version(conf, (mbedtls_ssl_protocol_version)lo);
  mbedtls_ssl_conf_max_tls_version(conf, (mbedtls_ssl_protocol_version)hi);
#else
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, lo & 0xff);
  mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, hi & 0xff);
#endif
}

/* The config for these settings: the context's current one when it
** matches, else a new one. */
static Snapshot *snapshot_for(lua_State *L, Context *c, int verify_mode,
                              int lo, int hi) {
  Snapshot *s = c->snap;
  int rc, authmode;
  if (s != NULL && s->verify_mode == verify_mode && s->min_version == lo &&
      s->max_version == hi)
    return s;
  invalidate(c);
  if ((s = (Snapshot *)calloc(1, sizeof *s)) == NULL) {
    luaL_error(L, "not enough memory");
    return NULL;
  }
  s->refs = 1;
  mbedtls_ssl_config_init(&s->conf);
  s->m = c->m;
  c->m->refs++;
  if ((s->kp = c->kp) != NULL) c->kp->refs++;
  s->verify_mode = verify_mode;
  s->min_version = lo;
  s->max_version = hi;
  c->snap = s;  /* owned by the context from here: freed on any error */
  rc = mbedtls_ssl_config_defaults(&s->conf, c->server_side ? MBEDTLS_SSL_IS_SERVER
                                                            : MBEDTLS_SSL_IS_CLIENT,
                                   MBEDTLS_SSL_TRANSPORT_STREAM,
                                   MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) sslerror(L, rc, "configuring TLS");
  mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &c->m->drbg);
  /* CERT_OPTIONAL verifies a certificate the peer sends (checked after
  ** the handshake); a client always gets one, so it is CERT_REQUIRED. */
  authmode = verify_mode == CERT_NONE ? MBEDTLS_SSL_VERIFY_NONE
             : verify_mode == CERT_OPTIONAL && c->server_side ? MBEDTLS_SSL_VERIFY_OPTIONAL
             : MBEDTLS_SSL_VERIFY_REQUIRED;
  mbedtls_ssl_conf_authmode(&s->conf, authmode);
  mbedtls_ssl_conf_ca_chain(&s->conf, &c->m->ca, NULL);
  set_versions(&s->conf, lo, hi);
  if (s->kp != NULL &&
      (rc = mbedtls_ssl_conf_own_cert(&s->conf, &s->kp->chain, &s->kp->key)) != 0)
    sslerror(L, rc, "the certificate chain");
  if (c->ciphers != NULL) {
    if ((s->ciphers = copy_ints(c->ciphers)) == NULL) luaL_error(L, "not enough memory");
    mbedtls_ssl_conf_ciphersuites(&s->conf, s->ciphers);
  }
  if (c->alpn != NULL) {
    if ((s->alpn = copy_list(c->alpn)) == NULL) luaL_error(L, "not enough memory");
    if ((rc = mbedtls_ssl_conf_alpn_protocols(&s->conf, (const char **)s->alpn)) != 0)
      sslerror(L, rc, "ALPN");
  }
  return s;
}

/* }====================================================== */

/* {====================================================== Connections */

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

typedef struct Conn {
  mbedtls_ssl_context ssl;
  Snapshot *snap;
  Bytes in, out;
  int server_side, verify_mode, check_hostname;
  int ip_host;  /* the server_hostname is an IP address: check it here */
  unsigned char ip[16];
  size_t iplen;
  int handshake_done, closed;
  int oom;  /* a send could not be buffered */
} Conn;

/* The connection's user values. */
enum { CONN_HOSTNAME = 1, CONN_NUV = 1 };

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

/* The verify callback: the hostname part of verification follows the
** connection's check_hostname, and IP addresses are checked here. */
static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  Conn *c = (Conn *)ctx;
  if (depth != 0) return 0;
  if (!c->check_hostname) {
    *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
  } else if (c->ip_host && !cert_has_ip(crt, c)) {
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  }
  return 0;
}

static int conn_gc(lua_State *L) {
  Conn *c = (Conn *)lua_touserdata(L, 1);
  if (c->snap != NULL) {
    mbedtls_ssl_free(&c->ssl);
    snapshot_release(c->snap);
    c->snap = NULL;
  }
  free(c->in.p);
  free(c->out.p);
  memset(&c->in, 0, sizeof c->in);
  memset(&c->out, 0, sizeof c->out);
  return 0;
}

/* ctx:wrap(server_side, server_hostname, verify_mode, check_hostname,
**          min_version, max_version) -> a TLS object */
static int ctx_wrap(lua_State *L) {
  Context *ctx = checkcontext(L, 1);
  int server_side = lua_toboolean(L, 2);
  const char *hostname = luaL_optstring(L, 3, NULL);
  int verify_mode = (int)luaL_checkinteger(L, 4);
  int check_hostname = lua_toboolean(L, 5);
  int lo = (int)luaL_checkinteger(L, 6), hi = (int)luaL_checkinteger(L, 7);
  Snapshot *s;
  Conn *c;
  int rc;
  if (server_side != ctx->server_side)
    return eddy__error(L, "ValueError", server_side
        ? "a client context (PROTOCOL_TLS_CLIENT) cannot wrap a server side"
        : "a server context (PROTOCOL_TLS_SERVER) cannot wrap a client side");
  s = snapshot_for(L, ctx, verify_mode, lo, hi);
  c = (Conn *)lua_newuserdatauv(L, sizeof *c, CONN_NUV);
  memset(c, 0, sizeof *c);
  mbedtls_ssl_init(&c->ssl);
  c->snap = s;
  s->refs++;
  luaL_setmetatable(L, TLS_OBJECT);
  c->server_side = server_side;
  c->verify_mode = verify_mode;
  c->check_hostname = check_hostname;
  if ((rc = mbedtls_ssl_setup(&c->ssl, &s->conf)) != 0) return sslerror(L, rc, "TLS setup");
  mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
  mbedtls_ssl_set_verify(&c->ssl, verify_cb, c);
  if (hostname != NULL) {
    if (inet_pton(AF_INET, hostname, c->ip) == 1) {
      c->ip_host = 1, c->iplen = 4;
    } else if (inet_pton(AF_INET6, hostname, c->ip) == 1) {
      c->ip_host = 1, c->iplen = 16;
    } else if ((rc = mbedtls_ssl_set_hostname(&c->ssl, hostname)) != 0) {
      return sslerror(L, rc, "server_hostname");  /* SNI and the name check */
    }
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, CONN_HOSTNAME);
  }
  return 1;
}

/* Raise the failure 'rc' of a handshake, read or write. */
static int conn_error(lua_State *L, Conn *c, int rc) {
  uint32_t flags;
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED &&
      (flags = mbedtls_ssl_get_verify_result(&c->ssl)) != 0) {
    char info[512];
    size_t n;
    mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
    n = strlen(info);
    while (n > 0 && info[n - 1] == '\n') info[--n] = '\0';
    for (char *p = info; *p; p++) if (*p == '\n') *p = ';';
    lua_pushfstring(L, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: %s", info);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, info);
    lua_setfield(L, -2, "verify_message");
    lua_pushinteger(L, (lua_Integer)flags);
    lua_setfield(L, -2, "verify_code");
    lua_pushliteral(L, "CERTIFICATE_VERIFY_FAILED");
    lua_setfield(L, -2, "reason");
    lua_pushinteger(L, rc);
    lua_setfield(L, -2, "errno");
    eddy__newerror(L, "SSLCertVerificationError", 2);
    return lua_error(L);
  }
  if (c->oom) return luaL_error(L, "not enough memory");
  return sslerror(L, rc, NULL);
}

/* tls:feed(ciphertext): bytes the transport received. */
static int conn_feed(lua_State *L) {
  Conn *c = checkconn(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (!bytes_append(&c->in, data, n)) return luaL_error(L, "not enough memory");
  return 0;
}

/* tls:take() -> the ciphertext to send, or nil */
static int conn_take(lua_State *L) {
  Conn *c = checkconn(L, 1);
  if (c->out.len == c->out.off) return 0;
  lua_pushlstring(L, c->out.p + c->out.off, c->out.len - c->out.off);
  c->out.off = c->out.len = 0;
  return 1;
}

/* tls:handshake() -> true when done, false when it needs more input */
static int conn_handshake(lua_State *L) {
  Conn *c = checkconn(L, 1);
  int rc;
  if (!c->handshake_done) {
    rc = mbedtls_ssl_handshake(&c->ssl);
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

/* tls:read() -> plaintext (maybe ""), closed: all the application data
** the fed records hold; 'closed' once the peer's close_notify came. */
static int conn_read(lua_State *L) {
  Conn *c = checkconn(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (!c->closed) {
    char *p = luaL_prepbuffsize(&b, 16384);
    int rc = mbedtls_ssl_read(&c->ssl, (unsigned char *)p, 16384);
    if (rc > 0) {
      luaL_addsize(&b, (size_t)rc);
    } else if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      break;
    } else if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      c->closed = 1;
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    } else if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
      continue;
#endif
    } else {
      return conn_error(L, c, rc);
    }
  }
  luaL_pushresult(&b);
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

/* {------------------------------------------------------ peer certificate */

/* OpenSSL's long names for the attributes of a distinguished name, the
** names Python's getpeercert() uses. */
static const char *long_name(const char *short_name) {
  static const char *const names[][2] = {
    {"CN", "commonName"}, {"C", "countryName"}, {"L", "localityName"},
    {"ST", "stateOrProvinceName"}, {"O", "organizationName"},
    {"OU", "organizationalUnitName"}, {"emailAddress", "emailAddress"},
    {"serialNumber", "serialNumber"}, {"DC", "domainComponent"},
    {"title", "title"}, {"SN", "surname"}, {"GN", "givenName"},
    {"initials", "initials"}, {"pseudonym", "pseudonym"},
    {"generationQualifier", "generationQualifier"}, {"uid", "userId"},
    {"postalCode", "postalCode"}, {"street", "streetAddress"},
  };
  size_t i;
  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(short_name, names[i][0]) == 0) return names[i][1];
  return short_name;
}

/* Push a name as Python does: a list of RDNs, each a list of
** {attribute, value} pairs. */
static void push_name(lua_State *L, const mbedtls_x509_name *name) {
  int rdn = 0, pair = 0;
  lua_newtable(L);
  for (; name != NULL; name = name->next) {
    const char *sn = NULL;
    if (name->oid.p == NULL) continue;
    if (pair == 0) {
      lua_newtable(L);
    }
    lua_createtable(L, 2, 0);
    if (mbedtls_oid_get_attr_short_name(&name->oid, &sn) == 0) {
      lua_pushstring(L, long_name(sn));
    } else {
      char oid[64];
      int n = mbedtls_oid_get_numeric_string(oid, sizeof oid, &name->oid);
      lua_pushstring(L, n > 0 ? oid : "?");
    }
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, (const char *)name->val.p, name->val.len);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++pair);
#if HAVE_MBEDTLS3
    if (!name->MBEDTLS_PRIVATE(next_merged)) {
#else
    if (!name->next_merged) {
#endif
      lua_rawseti(L, -2, ++rdn);
      pair = 0;
    }
  }
  if (pair > 0) lua_rawseti(L, -2, ++rdn);
}

/* Python's notBefore/notAfter format: "Jan  5 09:34:43 2018 GMT". */
static void push_time(lua_State *L, const mbedtls_x509_time *t) {
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[40];
  snprintf(buf, sizeof buf, "%s %2d %02d:%02d:%02d %04d GMT",
           months[(t->mon >= 1 && t->mon <= 12) ? t->mon - 1 : 0], t->day, t->hour,
           t->min, t->sec, t->year);
  lua_pushstring(L, buf);
}

static void push_san(lua_State *L, const mbedtls_x509_crt *crt) {
  const mbedtls_x509_sequence *san;
  int n = 0;
  lua_newtable(L);
  for (san = &crt->subject_alt_names; san != NULL; san = san->next) {
    const char *kind = NULL;
    char ip[INET6_ADDRSTRLEN];
    if (san->buf.p == NULL) continue;
    switch (san->buf.tag & 0x1f) {
      case 1: kind = "email"; break;
      case 2: kind = "DNS"; break;
      case 6: kind = "URI"; break;
      case 7: kind = "IP Address"; break;
      default: continue;
    }
    lua_createtable(L, 2, 0);
    lua_pushstring(L, kind);
    lua_rawseti(L, -2, 1);
    if ((san->buf.tag & 0x1f) == 7) {
      int af = san->buf.len == 4 ? AF_INET : san->buf.len == 16 ? AF_INET6 : 0;
      if (af == 0 || inet_ntop(af, san->buf.p, ip, sizeof ip) == NULL) {
        lua_pop(L, 1);
        continue;
      }
      /* Python writes IPv6 addresses in full, upper case: keep inet_ntop's
      ** compressed form, which is what people compare with. */
      lua_pushstring(L, ip);
    } else {
      lua_pushlstring(L, (const char *)san->buf.p, san->buf.len);
    }
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++n);
  }
}

/* tls:getpeercert(binary_form): the peer's certificate as Python's dict,
** {} when it was not verified, nil before the handshake or without one;
** binary_form: the DER bytes. */
static int conn_getpeercert(lua_State *L) {
  Conn *c = checkconn(L, 1);
  int binary = lua_toboolean(L, 2);
  const mbedtls_x509_crt *crt;
  char serial[140];
  size_t i, n = 0;
  if (!c->handshake_done)
    return eddy__error(L, "ValueError", "handshake not done yet");
  if ((crt = mbedtls_ssl_get_peer_cert(&c->ssl)) == NULL) return 0;
  if (binary) {
    lua_pushlstring(L, (const char *)crt->raw.p, crt->raw.len);
    return 1;
  }
  lua_newtable(L);
  if (c->verify_mode == CERT_NONE) return 1;
  push_name(L, &crt->subject);
  lua_setfield(L, -2, "subject");
  push_name(L, &crt->issuer);
  lua_setfield(L, -2, "issuer");
  lua_pushinteger(L, crt->version);
  lua_setfield(L, -2, "version");
  for (i = 0; i < crt->serial.len && n + 3 < sizeof serial; i++)
    n += (size_t)snprintf(serial + n, sizeof serial - n, "%02X", crt->serial.p[i]);
  serial[n] = '\0';
  lua_pushstring(L, serial);
  lua_setfield(L, -2, "serialNumber");
  push_time(L, &crt->valid_from);
  lua_setfield(L, -2, "notBefore");
  push_time(L, &crt->valid_to);
  lua_setfield(L, -2, "notAfter");
  push_san(L, crt);
  if (lua_rawlen(L, -1) > 0) lua_setfield(L, -2, "subjectAltName");
  else lua_pop(L, 1);
  return 1;
}

/* }------------------------------------------------------ */

/* tls:cipher() -> name, protocol, secret bits (API.md §10), or nothing
** before the handshake. */
static int conn_cipher(lua_State *L) {
  Conn *c = checkconn(L, 1);
  const char *name;
  const mbedtls_ssl_ciphersuite_t *suite;
  int bits = 0;
  if (!c->handshake_done || (name = mbedtls_ssl_get_ciphersuite(&c->ssl)) == NULL) return 0;
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
  if (!c->handshake_done) return 0;
  lua_pushstring(L, mbedtls_ssl_get_version(&c->ssl));
  return 1;
}

/* tls:selected_alpn_protocol() -> the protocol both sides chose, or nil */
static int conn_selected_alpn_protocol(lua_State *L) {
  Conn *c = checkconn(L, 1);
  const char *p = c->handshake_done ? mbedtls_ssl_get_alpn_protocol(&c->ssl) : NULL;
  if (p == NULL) return 0;
  lua_pushstring(L, p);
  return 1;
}

/* tls:pending() -> decrypted bytes ready to read */
static int conn_pending(lua_State *L) {
  Conn *c = checkconn(L, 1);
  lua_pushinteger(L, (lua_Integer)mbedtls_ssl_get_bytes_avail(&c->ssl));
  return 1;
}

/* tls.server_side, tls.server_hostname, tls:method() */
static int conn_index(lua_State *L) {
  Conn *c = (Conn *)luaL_checkudata(L, 1, TLS_OBJECT);
  const char *key = lua_tostring(L, 2);
  if (key != NULL && strcmp(key, "server_side") == 0) {
    lua_pushboolean(L, c->server_side);
  } else if (key != NULL && strcmp(key, "server_hostname") == 0) {
    lua_getiuservalue(L, 1, CONN_HOSTNAME);
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

static const luaL_Reg context_methods[] = {
  {"load_cert_chain", ctx_load_cert_chain},
  {"load_verify_locations", ctx_load_verify_locations},
  {"cert_store_stats", ctx_cert_store_stats},
  {"set_alpn_protocols", ctx_set_alpn_protocols},
  {"set_ciphers", ctx_set_ciphers},
  {"wrap", ctx_wrap},
  {NULL, NULL}
};

static const luaL_Reg conn_methods[] = {
  {"feed", conn_feed},
  {"take", conn_take},
  {"handshake", conn_handshake},
  {"read", conn_read},
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
  luaL_newmetatable(L, TLS_CONTEXT);
  luaL_newlib(L, context_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
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
  lua_pushcfunction(L, ctx_new);
  lua_setfield(L, -2, "tls_context");
  lua_pushinteger(L, MBEDTLS_VERSION_NUMBER);
  lua_setfield(L, -2, "mbedtls_version");
}
