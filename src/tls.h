/*
** tls.h -- what the TLS files share (internal): tls_context.c (contexts
** and the configs they make), tls.c (connections), tls_cert.c
** (certificates as Python's tables), tls_pkcs8.c (encrypted keys).
** See tls.c for the design.
*/
#ifndef EDDY_TLS_H
#define EDDY_TLS_H

#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "internal.h"

#define TLS_CONTEXT "eddy.TLSContext"
#define TLS_OBJECT "eddy.TLSObject"

/* Python's ssl.CERT_* values. */
enum { CERT_NONE = 0, CERT_OPTIONAL = 1, CERT_REQUIRED = 2 };

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define HAVE_MBEDTLS3 1
#else
#define HAVE_MBEDTLS3 0
#endif

#if !HAVE_MBEDTLS3
/* mbedtls_pk_parse_keyfile, and the keys in OpenSSL's default encrypted
** form (PBES2 with AES) that mbedTLS 2.x cannot decrypt (tls_pkcs8.c). */
int eddy__tls_parse_keyfile(mbedtls_pk_context *pk, const char *path,
                            const char *pw);
#endif

struct Material;
struct KeyPair;

/* An mbedtls_ssl_config and everything it points to, reference-counted:
** its context holds one reference while it is current, each connection
** made with it one more. */
typedef struct Snapshot {
  int refs;
  mbedtls_ssl_config conf;
  struct Material *m;
  struct KeyPair *kp;
  int *ciphers;      /* 0-terminated, or NULL: mbedTLS's defaults */
  char **alpn;       /* NULL-terminated, or NULL */
  int verify_mode, min_version, max_version;
} Snapshot;

/* tls_context.c */
/* The config for a connection of the context at index 'ctx' (which must
** be of the side 'server_side') with these settings; the caller takes a
** reference. */
Snapshot *eddy__tls_config(lua_State *L, int ctx, int server_side, int verify_mode,
                           int min_version, int max_version);
void eddy__tls_config_release(Snapshot *s);
/* Push (or raise) eddy.errors.SSLError for mbedTLS error 'code'; 'what'
** (may be NULL) says what failed. */
void eddy__tls_pusherror(lua_State *L, int code, const char *what);
void eddy__tls_pusherror_as(lua_State *L, int code, const char *reason, const char *what);
const char *eddy__tls_alert_reason(int description);
int eddy__tls_error(lua_State *L, int code, const char *what);
/* Create the context metatable, whose methods are the context's own and
** 'wrap' (tls.c's), and put tls_context in the core table at the top. */
void eddy__open_tls_context(lua_State *L, lua_CFunction wrap);

/* tls_cert.c */
/* Push the certificate as Python's getpeercert() dict. */
void eddy__tls_push_cert(lua_State *L, const mbedtls_x509_crt *crt);

#endif
