/*
** tls_pkcs8.c -- private keys in OpenSSL's default encrypted form, for
** mbedTLS 2.x (internal; load_cert_chain in tls_context.c).
**
** mbedTLS 2.x decrypts a PKCS#8 key encrypted with PBES2 only when its
** cipher is DES or 3DES (AES came with 3.6): keys encrypted in OpenSSL's
** default format ("openssl genrsa -aes256", "openssl req" with a
** passphrase, "openssl pkcs8 -topk8": PBES2, PBKDF2, AES-CBC) failed with
** PKCS5_FEATURE_UNAVAILABLE, where Python's load_cert_chain reads them.
** This decrypts that format itself, with mbedTLS's own PBKDF2, AES and
** ASN.1 parsers, and hands the PrivateKeyInfo inside to mbedtls_pk.
*/
#include "tls.h"

#if !HAVE_MBEDTLS3

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/base64.h>
#include <mbedtls/cipher.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#define PBES2_BAD MBEDTLS_ERR_PK_KEY_INVALID_FORMAT
#define UNAVAILABLE MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE
#define SEQUENCE (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

/* The whole file at path, NUL-terminated, malloc'd; NULL on failure. */
static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  char *data = NULL;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 &&
      fseek(f, 0, SEEK_SET) == 0 &&
      (data = (char *)malloc((size_t)n + 1)) != NULL &&
      fread(data, 1, (size_t)n, f) == (size_t)n) {
    data[n] = '\0';
    *size = (size_t)n;
  } else {
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

/* The DER inside the file's ENCRYPTED PRIVATE KEY PEM block (PEM only, as
** Python's): a malloc'd buffer, or NULL. */
static unsigned char *read_encrypted_der(const char *path, size_t *len) {
  static const char begin[] = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
  static const char end[] = "-----END ENCRYPTED PRIVATE KEY-----";
  size_t size = 0, n = 0, i;
  char *data = read_file(path, &size), *b64 = NULL;
  const char *b, *e = NULL;
  unsigned char *der = NULL;
  if (data == NULL) return NULL;
  if ((b = strstr(data, begin)) != NULL) {
    b += sizeof begin - 1;
    e = strstr(b, end);
  }
  if (e != NULL && (b64 = (char *)malloc((size_t)(e - b) + 1)) != NULL) {
    for (i = 0; b + i < e; i++)  /* the base64 text, without white space */
      if (b[i] != '\n' && b[i] != '\r' && b[i] != ' ' && b[i] != '\t')
        b64[n++] = b[i];
    if ((der = (unsigned char *)malloc(n + 1)) != NULL &&
        mbedtls_base64_decode(der, n + 1, len, (const unsigned char *)b64,
                              n) != 0) {
      free(der);
      der = NULL;
    }
    free(b64);
  }
  mbedtls_platform_zeroize(data, size);
  free(data);
  return der;
}

/* The AES-CBC ciphers PBES2 may name (DER contents of their OIDs). */
static const struct {
  unsigned char oid[9];
  mbedtls_cipher_type_t type;
} aes_cbc[] = {
  {{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02},
   MBEDTLS_CIPHER_AES_128_CBC},
  {{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16},
   MBEDTLS_CIPHER_AES_192_CBC},
  {{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a},
   MBEDTLS_CIPHER_AES_256_CBC},
};

static const mbedtls_cipher_info_t *aes_cipher(const mbedtls_asn1_buf *oid) {
  size_t i;
  for (i = 0; i < sizeof aes_cbc / sizeof aes_cbc[0]; i++)
    if (oid->len == sizeof aes_cbc[i].oid &&
        memcmp(oid->p, aes_cbc[i].oid, oid->len) == 0)
      return mbedtls_cipher_info_from_type(aes_cbc[i].type);
  return NULL;
}

/* The parameters of PBES2 that decryption needs. */
typedef struct {
  const mbedtls_cipher_info_t *cipher;
  const mbedtls_md_info_t *prf;
  mbedtls_asn1_buf salt, iv;
  int iterations;
} Pbes2;

/* Parse PBES2-params at params into *k: 0, or an mbedTLS error. */
static int parse_pbes2(const mbedtls_asn1_buf *params, Pbes2 *k) {
  unsigned char *q = params->p, *qend = q + params->len;
  mbedtls_asn1_buf kdf, kdfp, enc;
  mbedtls_md_type_t md = MBEDTLS_MD_SHA1;
  int keylen = 0;
  /* PBES2-params ::= SEQUENCE { keyDerivationFunc, encryptionScheme } */
  if (params->tag != SEQUENCE ||
      mbedtls_asn1_get_alg(&q, qend, &kdf, &kdfp) != 0 ||
      mbedtls_asn1_get_alg(&q, qend, &enc, &k->iv) != 0)
    return PBES2_BAD;
  if (MBEDTLS_OID_CMP(MBEDTLS_OID_PKCS5_PBKDF2, &kdf) != 0) return UNAVAILABLE;
  if ((k->cipher = aes_cipher(&enc)) == NULL) return UNAVAILABLE;
  if (k->iv.tag != MBEDTLS_ASN1_OCTET_STRING || k->iv.len != 16)
    return PBES2_BAD;
  /* PBKDF2-params ::= SEQUENCE { salt OCTET STRING, iterationCount
  **   INTEGER, keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier
  **   DEFAULT hmacWithSHA1 } */
  if (kdfp.tag != SEQUENCE) return PBES2_BAD;
  q = kdfp.p;
  qend = q + kdfp.len;
  if (mbedtls_asn1_get_tag(&q, qend, &k->salt.len,
                           MBEDTLS_ASN1_OCTET_STRING) != 0)
    return PBES2_BAD;
  k->salt.p = q;
  q += k->salt.len;
  if (mbedtls_asn1_get_int(&q, qend, &k->iterations) != 0 ||
      k->iterations <= 0)
    return PBES2_BAD;
  if (q < qend && *q == MBEDTLS_ASN1_INTEGER &&
      mbedtls_asn1_get_int(&q, qend, &keylen) != 0)
    return PBES2_BAD;
  if (keylen != 0 && (unsigned)keylen != k->cipher->key_bitlen / 8)
    return PBES2_BAD;
  if (q < qend) {
    mbedtls_asn1_buf prf, prfp;
    if (mbedtls_asn1_get_alg(&q, qend, &prf, &prfp) != 0) return PBES2_BAD;
    if (mbedtls_oid_get_md_hmac(&prf, &md) != 0) return UNAVAILABLE;
  }
  if ((k->prf = mbedtls_md_info_from_type(md)) == NULL) return UNAVAILABLE;
  return 0;
}

/* Derive the key with password pw and decrypt data (len bytes) into out,
** which has room for len bytes (CBC decryption writes no more): 0 and
** *outlen, or an mbedTLS error. */
static int decrypt(const Pbes2 *k, const char *pw, const unsigned char *data,
                   size_t len, unsigned char *out, size_t *outlen) {
  unsigned char key[32];  /* AES-256's */
  size_t klen = k->cipher->key_bitlen / 8;
  mbedtls_md_context_t mdc;
  mbedtls_cipher_context_t cc;
  int rc;
  mbedtls_md_init(&mdc);
  mbedtls_cipher_init(&cc);
  if ((rc = mbedtls_md_setup(&mdc, k->prf, 1)) == 0 &&
      (rc = mbedtls_pkcs5_pbkdf2_hmac(
           &mdc, (const unsigned char *)pw, strlen(pw), k->salt.p,
           k->salt.len, (unsigned)k->iterations, (uint32_t)klen, key)) == 0 &&
      (rc = mbedtls_cipher_setup(&cc, k->cipher)) == 0 &&
      (rc = mbedtls_cipher_setkey(&cc, key, (int)k->cipher->key_bitlen,
                                  MBEDTLS_DECRYPT)) == 0 &&
      (rc = mbedtls_cipher_set_padding_mode(&cc, MBEDTLS_PADDING_PKCS7)) == 0)
    rc = mbedtls_cipher_crypt(&cc, k->iv.p, k->iv.len, data, len, out,
                              outlen);
  mbedtls_md_free(&mdc);
  mbedtls_cipher_free(&cc);
  mbedtls_platform_zeroize(key, sizeof key);
  /* a wrong password shows as bad padding (or, rarely, as garbage that
  ** mbedtls_pk then fails to parse) */
  return rc == MBEDTLS_ERR_CIPHER_INVALID_PADDING
             ? MBEDTLS_ERR_PK_PASSWORD_MISMATCH : rc;
}

/* Decrypt the EncryptedPrivateKeyInfo at der (PBES2: PBKDF2 + AES-CBC)
** into out (room for len bytes): 0 and *outlen, or an mbedTLS error. */
static int pbes2_aes_decrypt(unsigned char *der, size_t len, const char *pw,
                             unsigned char *out, size_t *outlen) {
  unsigned char *p = der, *end = der + len;
  mbedtls_asn1_buf alg, params;
  Pbes2 k;
  size_t n;
  int rc;
  /* EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier,
  **   OCTET STRING } */
  if (mbedtls_asn1_get_tag(&p, end, &n, SEQUENCE) != 0 ||
      mbedtls_asn1_get_alg(&p, p + n, &alg, &params) != 0)
    return PBES2_BAD;
  if (MBEDTLS_OID_CMP(MBEDTLS_OID_PKCS5_PBES2, &alg) != 0) return UNAVAILABLE;
  if ((rc = parse_pbes2(&params, &k)) != 0) return rc;
  if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_OCTET_STRING) != 0)
    return PBES2_BAD;
  return decrypt(&k, pw, p, n, out, outlen);
}

int eddy__tls_parse_keyfile(mbedtls_pk_context *pk, const char *path,
                            const char *pw) {
  int rc = mbedtls_pk_parse_keyfile(pk, path, pw), drc;
  unsigned char *der, *plain;
  size_t len = 0, plainlen = 0;
  if (rc != UNAVAILABLE || pw == NULL) return rc;
  if ((der = read_encrypted_der(path, &len)) == NULL) return rc;
  if ((plain = (unsigned char *)malloc(len)) == NULL) {
    free(der);
    return MBEDTLS_ERR_PK_ALLOC_FAILED;
  }
  if ((drc = pbes2_aes_decrypt(der, len, pw, plain, &plainlen)) == 0) {
    mbedtls_pk_free(pk);
    mbedtls_pk_init(pk);
    rc = mbedtls_pk_parse_key(pk, plain, plainlen, NULL, 0);
    if (rc != 0) rc = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
  } else if (drc == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
    rc = drc;
  }
  mbedtls_platform_zeroize(plain, len);
  mbedtls_platform_zeroize(der, len);
  free(plain);
  free(der);
  return rc;
}

#endif
