/*
** tls_context.c -- TLS contexts ("eddy.TLSContext", the C half of
** eddy.ssl.SSLContext), the configs they make, and the SSLError of an
** mbedTLS failure.
**
** A context holds what its connections share: the random generator, the
** CA store, the certificate chain with its key, the ALPN and cipher
** lists.  mbedTLS keeps pointers to all of these inside an
** mbedtls_ssl_config, and a connection keeps a pointer to its config; so
** these parts live in malloc'd, reference-counted blocks that the last
** user frees, whatever order the collector finalizes the Lua objects in.
** A config is built at the first wrap after a change ("snapshot"), so
** changing a context never pulls a config from under a live connection.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>

#include "tls.h"

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

void eddy__tls_config_release(Snapshot *s) {
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

/* OpenSSL's reason for a fatal alert the peer sent (RFC 8446 §6, 5246
** §7.2), as Python's SSLError has it ("SSLV3_ALERT_HANDSHAKE_FAILURE"),
** or "TLSV1_ALERT" for a description it has no name for. */
const char *eddy__tls_alert_reason(int description) {
  switch (description) {
    case 10: return "SSLV3_ALERT_UNEXPECTED_MESSAGE";
    case 20: return "SSLV3_ALERT_BAD_RECORD_MAC";
    case 30: return "SSLV3_ALERT_DECOMPRESSION_FAILURE";
    case 40: return "SSLV3_ALERT_HANDSHAKE_FAILURE";
    case 41: return "SSLV3_ALERT_NO_CERTIFICATE";
    case 42: return "SSLV3_ALERT_BAD_CERTIFICATE";
    case 43: return "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE";
    case 44: return "SSLV3_ALERT_CERTIFICATE_REVOKED";
    case 45: return "SSLV3_ALERT_CERTIFICATE_EXPIRED";
    case 46: return "SSLV3_ALERT_CERTIFICATE_UNKNOWN";
    case 47: return "SSLV3_ALERT_ILLEGAL_PARAMETER";
    case 48: return "TLSV1_ALERT_UNKNOWN_CA";
    case 49: return "TLSV1_ALERT_ACCESS_DENIED";
    case 50: return "TLSV1_ALERT_DECODE_ERROR";
    case 51: return "TLSV1_ALERT_DECRYPT_ERROR";
    case 60: return "TLSV1_ALERT_EXPORT_RESTRICTION";
    case 70: return "TLSV1_ALERT_PROTOCOL_VERSION";
    case 71: return "TLSV1_ALERT_INSUFFICIENT_SECURITY";
    case 80: return "TLSV1_ALERT_INTERNAL_ERROR";
    case 86: return "TLSV1_ALERT_INAPPROPRIATE_FALLBACK";
    case 90: return "TLSV1_ALERT_USER_CANCELLED";
    case 100: return "TLSV1_ALERT_NO_RENEGOTIATION";
    case 109: return "TLSV13_ALERT_MISSING_EXTENSION";
    case 110: return "TLSV1_ALERT_UNSUPPORTED_EXTENSION";
    case 112: return "TLSV1_UNRECOGNIZED_NAME";
    case 113: return "TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE";
    case 115: return "TLSV1_ALERT_UNKNOWN_PSK_IDENTITY";
    case 116: return "TLSV13_ALERT_CERTIFICATE_REQUIRED";
    case 120: return "TLSV1_ALERT_NO_APPLICATION_PROTOCOL";
    default: return "TLSV1_ALERT";
  }
}

/* Push eddy.errors.SSLError for mbedTLS error 'code', with 'reason',
** 'errno' (the mbedTLS code) and 'strerror' (the message, as Python's
** SSLError has it) fields. */
void eddy__tls_pusherror(lua_State *L, int code, const char *what) {
  eddy__tls_pusherror_as(L, code, reason_of(code), what);
}

/* The same with Python's 'reason' for it. */
void eddy__tls_pusherror_as(lua_State *L, int code, const char *reason, const char *what) {
  char text[200], hex[16];
  mbedtls_strerror(code, text, sizeof text);
  snprintf(hex, sizeof hex, "-0x%04x", (unsigned)-code);
  lua_pushfstring(L, "[SSL: %s] %s%s%s (mbedTLS %s)", reason,
                  what ? what : "", what ? ": " : "", text, hex);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "errno");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "strerror");
  lua_pushliteral(L, "SSL");
  lua_setfield(L, -2, "library");
  eddy__newerror(L, "SSLError", 2);
}

int eddy__tls_error(lua_State *L, int code, const char *what) {
  eddy__tls_pusherror(L, code, what);
  return lua_error(L);
}

/* The path at index i of a file (or, with 'dir', a directory) mbedTLS is
** about to read: a path with a NUL inside is a ValueError, as Python's
** (mbedTLS would read a shorter one); a missing or unreadable file, or
** one of the wrong kind, is the OSError open() gives (Python's
** FileNotFoundError, IsADirectoryError), not a parse failure. */
static const char *check_path(lua_State *L, int i, const char *what, int dir) {
  const char *path = eddy__tocstring(L, i, what);
  struct stat st;
  int e = 0;
  if (stat(path, &st) != 0) e = errno;
  else if (dir && !S_ISDIR(st.st_mode)) e = ENOTDIR;
  else if (!dir && S_ISDIR(st.st_mode)) e = EISDIR;
  else if (access(path, R_OK) != 0) e = errno;
  if (e != 0) {
    eddy__pushuverror(L, uv_translate_sys_error(e), path);
    lua_error(L);
  }
  return path;
}

/* Parse DER certificates one after the other (mbedTLS's parse takes one). */
static int parse_der_certs(mbedtls_x509_crt *chain, const unsigned char *p, size_t len) {
  const unsigned char *end = p + len;
  while (p < end) {
    unsigned char *q = (unsigned char *)p;
    size_t n;
    int rc = mbedtls_asn1_get_tag(&q, end, &n, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
    if (rc != 0) return rc;
    n += (size_t)(q - p);
    if ((rc = mbedtls_x509_crt_parse_der(chain, p, n)) != 0) return rc;
    p += n;
  }
  return 0;
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
  eddy__tls_config_release(c->snap);
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
  if (rc != 0) return eddy__tls_error(L, rc, "seeding the random generator");
  return 1;
}

/* The password argument of load_cert_chain: nil or a string (ssl.lua
** calls Python's callable form first); mbedTLS takes it up to a NUL. */
static const char *password_arg(lua_State *L, int i) {
  if (lua_isnoneornil(L, i)) return NULL;
  luaL_checkstring(L, i);
  return eddy__tocstring(L, i, "password");
}

#if HAVE_MBEDTLS3
#define PARSE_KEYFILE(pk, path, pw, m) \
  mbedtls_pk_parse_keyfile(pk, path, pw, mbedtls_ctr_drbg_random, &(m)->drbg)
#define CHECK_PAIR(pub, prv, m) \
  mbedtls_pk_check_pair(pub, prv, mbedtls_ctr_drbg_random, &(m)->drbg)
#else
#define PARSE_KEYFILE(pk, path, pw, m) eddy__tls_parse_keyfile(pk, path, pw)
#define CHECK_PAIR(pub, prv, m) mbedtls_pk_check_pair(pub, prv)
#endif

/* ctx:load_cert_chain(certfile, keyfile, password) */
static int ctx_load_cert_chain(lua_State *L) {
  Context *c = checkcontext(L, 1);
  const char *certfile, *keyfile, *password = password_arg(L, 4);
  KeyPair *kp;
  int rc;
  luaL_checkstring(L, 2);
  luaL_optstring(L, 3, NULL);
  certfile = check_path(L, 2, "certfile", 0);
  keyfile = lua_isnoneornil(L, 3) ? certfile : check_path(L, 3, "keyfile", 0);
  if ((kp = (KeyPair *)calloc(1, sizeof *kp)) == NULL) return luaL_error(L, "not enough memory");
  kp->refs = 1;
  mbedtls_x509_crt_init(&kp->chain);
  mbedtls_pk_init(&kp->key);
  if ((rc = mbedtls_x509_crt_parse_file(&kp->chain, certfile)) != 0) {
    keypair_release(kp);
    return eddy__tls_error(L, rc, certfile);
  }
  if ((rc = PARSE_KEYFILE(&kp->key, keyfile, password, c->m)) != 0) {
    keypair_release(kp);
    return eddy__tls_error(L, rc, keyfile);
  }
  if ((rc = CHECK_PAIR(&kp->chain.pk, &kp->key, c->m)) != 0) {
    keypair_release(kp);
    lua_pushliteral(L, "[X509: KEY_VALUES_MISMATCH] the private key does not match the certificate");
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "KEY_VALUES_MISMATCH");
    lua_setfield(L, -2, "reason");
    lua_pushliteral(L, "X509");  /* OpenSSL's, as Python's */
    lua_setfield(L, -2, "library");
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
    check_path(L, 2, "cafile", 0);
    if ((rc = mbedtls_x509_crt_parse_file(&c->m->ca, cafile)) < 0)
      return eddy__tls_error(L, rc, cafile);
    c->m->ca_count++;
  }
  if (capath != NULL) {
    /* files that are not certificates are skipped, as OpenSSL's lookup */
    check_path(L, 3, "capath", 1);
    if ((rc = mbedtls_x509_crt_parse_path(&c->m->ca, capath)) < 0)
      return eddy__tls_error(L, rc, capath);
    c->m->ca_count++;
  }
  if (cadata != NULL) {
    /* PEM must include its terminating NUL in the length; DER may hold
    ** several certificates, as Python's */
    if (strstr(cadata, "-----BEGIN") != NULL)
      rc = mbedtls_x509_crt_parse(&c->m->ca, (const unsigned char *)cadata, len + 1);
    else
      rc = parse_der_certs(&c->m->ca, (const unsigned char *)cadata, len);
    if (rc < 0) return eddy__tls_error(L, rc, "cadata");
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

/* The key exchange groups, fastest first as OpenSSL orders them: mbedTLS
** 2's own order starts with secp521r1, which made every handshake spend
** most of its time in that curve's arithmetic. */
#if HAVE_MBEDTLS3
static const uint16_t groups[] = {
  MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
  MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
  MBEDTLS_SSL_IANA_TLS_GROUP_NONE
};
#define SET_GROUPS(conf) mbedtls_ssl_conf_groups(conf, groups)
#else
static const mbedtls_ecp_group_id groups[] = {
#ifdef MBEDTLS_ECP_DP_CURVE25519_ENABLED
  MBEDTLS_ECP_DP_CURVE25519,
#endif
#ifdef MBEDTLS_ECP_DP_SECP256R1_ENABLED
  MBEDTLS_ECP_DP_SECP256R1,
#endif
#ifdef MBEDTLS_ECP_DP_SECP384R1_ENABLED
  MBEDTLS_ECP_DP_SECP384R1,
#endif
#ifdef MBEDTLS_ECP_DP_SECP521R1_ENABLED
  MBEDTLS_ECP_DP_SECP521R1,
#endif
  MBEDTLS_ECP_DP_NONE
};
#define SET_GROUPS(conf) mbedtls_ssl_conf_curves(conf, groups)
#endif

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
  if (rc != 0) eddy__tls_error(L, rc, "configuring TLS");
  mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &c->m->drbg);
  /* CERT_OPTIONAL verifies a certificate the peer sends (checked after
  ** the handshake); a client always gets one, so it is CERT_REQUIRED. */
  authmode = verify_mode == CERT_NONE ? MBEDTLS_SSL_VERIFY_NONE
             : verify_mode == CERT_OPTIONAL && c->server_side ? MBEDTLS_SSL_VERIFY_OPTIONAL
             : MBEDTLS_SSL_VERIFY_REQUIRED;
  mbedtls_ssl_conf_authmode(&s->conf, authmode);
  mbedtls_ssl_conf_ca_chain(&s->conf, &c->m->ca, NULL);
  set_versions(&s->conf, lo, hi);
  SET_GROUPS(&s->conf);
  if (s->kp != NULL &&
      (rc = mbedtls_ssl_conf_own_cert(&s->conf, &s->kp->chain, &s->kp->key)) != 0)
    eddy__tls_error(L, rc, "the certificate chain");
  if (c->ciphers != NULL) {
    if ((s->ciphers = copy_ints(c->ciphers)) == NULL) luaL_error(L, "not enough memory");
    mbedtls_ssl_conf_ciphersuites(&s->conf, s->ciphers);
  }
  if (c->alpn != NULL) {
    if ((s->alpn = copy_list(c->alpn)) == NULL) luaL_error(L, "not enough memory");
    if ((rc = mbedtls_ssl_conf_alpn_protocols(&s->conf, (const char **)s->alpn)) != 0)
      eddy__tls_error(L, rc, "ALPN");
  }
  return s;
}

Snapshot *eddy__tls_config(lua_State *L, int ctx, int server_side, int verify_mode,
                           int min_version, int max_version) {
  Context *c = checkcontext(L, ctx);
  if (server_side != c->server_side)  /* Python's words, and its SSLError */
    eddy__error(L, "SSLError", server_side
        ? "Cannot create a server socket with a PROTOCOL_TLS_CLIENT context"
        : "Cannot create a client socket with a PROTOCOL_TLS_SERVER context");
  return snapshot_for(L, c, verify_mode, min_version, max_version);
}

/* }====================================================== */

static const luaL_Reg context_methods[] = {
  {"load_cert_chain", ctx_load_cert_chain},
  {"load_verify_locations", ctx_load_verify_locations},
  {"cert_store_stats", ctx_cert_store_stats},
  {"set_alpn_protocols", ctx_set_alpn_protocols},
  {"set_ciphers", ctx_set_ciphers},
  {NULL, NULL}
};

void eddy__open_tls_context(lua_State *L, lua_CFunction wrap) {
  luaL_newmetatable(L, TLS_CONTEXT);
  luaL_newlib(L, context_methods);
  lua_pushcfunction(L, wrap);
  lua_setfield(L, -2, "wrap");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  eddy__seal_metatable(L, -1);
  lua_pop(L, 1);
  lua_pushcfunction(L, ctx_new);
  lua_setfield(L, -2, "tls_context");
  lua_pushinteger(L, MBEDTLS_VERSION_NUMBER);
  lua_setfield(L, -2, "mbedtls_version");
}
