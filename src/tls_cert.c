/*
** tls_cert.c -- an X.509 certificate as the table Python's
** SSLObject.getpeercert() returns: subject and issuer as lists of RDNs of
** {attribute, value} pairs (OpenSSL's long attribute names), version,
** serialNumber, notBefore/notAfter in OpenSSL's text form, the
** subjectAltNames, and the URIs of OCSP, caIssuers and
** crlDistributionPoints.
*/
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>

#include "tls.h"

/* Push an OID in dotted form ("1.2.3.4"). */
static void push_oid(lua_State *L, const mbedtls_asn1_buf *oid) {
  char text[64];
  int n = mbedtls_oid_get_numeric_string(text, sizeof text, oid);
  lua_pushstring(L, n > 0 ? text : "?");
}

/* OpenSSL's long names (OBJ_nid2ln) for the attributes of a
** distinguished name, the names Python's getpeercert() uses, by dotted
** OID: mbedTLS's own table lacks many (businessCategory, the EV
** jurisdiction* ones, streetAddress, userId...). */
static const char *const attribute_names[][2] = {
  {"2.5.4.3", "commonName"}, {"2.5.4.4", "surname"}, {"2.5.4.5", "serialNumber"},
  {"2.5.4.6", "countryName"}, {"2.5.4.7", "localityName"},
  {"2.5.4.8", "stateOrProvinceName"}, {"2.5.4.9", "streetAddress"},
  {"2.5.4.10", "organizationName"}, {"2.5.4.11", "organizationalUnitName"},
  {"2.5.4.12", "title"}, {"2.5.4.13", "description"}, {"2.5.4.15", "businessCategory"},
  {"2.5.4.16", "postalAddress"}, {"2.5.4.17", "postalCode"}, {"2.5.4.18", "postOfficeBox"},
  {"2.5.4.20", "telephoneNumber"}, {"2.5.4.41", "name"}, {"2.5.4.42", "givenName"},
  {"2.5.4.43", "initials"}, {"2.5.4.44", "generationQualifier"},
  {"2.5.4.45", "x500UniqueIdentifier"}, {"2.5.4.46", "dnQualifier"},
  {"2.5.4.65", "pseudonym"}, {"2.5.4.72", "role"}, {"2.5.4.97", "organizationIdentifier"},
  {"1.2.840.113549.1.9.1", "emailAddress"}, {"0.9.2342.19200300.100.1.1", "userId"},
  {"0.9.2342.19200300.100.1.25", "domainComponent"},
  {"1.3.6.1.4.1.311.60.2.1.1", "jurisdictionLocalityName"},
  {"1.3.6.1.4.1.311.60.2.1.2", "jurisdictionStateOrProvinceName"},
  {"1.3.6.1.4.1.311.60.2.1.3", "jurisdictionCountryName"},
};

/* Push an attribute's value in UTF-8, as OpenSSL's ASN1_STRING_to_UTF8
** (Python's): a BMPString is UCS-2, a UniversalString UCS-4 and a
** T61String Latin-1 to it; the other string types are bytes already. */
static void push_value(lua_State *L, const mbedtls_asn1_buf *val) {
  size_t width = val->tag == MBEDTLS_ASN1_BMP_STRING ? 2
               : val->tag == MBEDTLS_ASN1_UNIVERSAL_STRING ? 4
               : val->tag == MBEDTLS_ASN1_T61_STRING ? 1 : 0;
  luaL_Buffer b;
  size_t i, k;
  if (width == 0 || val->len % width != 0) {
    lua_pushlstring(L, (const char *)val->p, val->len);
    return;
  }
  luaL_buffinit(L, &b);
  for (i = 0; i < val->len; i += width) {
    unsigned long cp = 0;
    for (k = 0; k < width; k++) cp = (cp << 8) | val->p[i + k];
    lua_pushfstring(L, "%U", (long)(cp > 0x10FFFF ? 0xFFFD : cp));
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}

/* Push one attribute of a name: {long name or dotted OID, value}. */
static void push_attribute(lua_State *L, const mbedtls_asn1_buf *oid,
                           const mbedtls_asn1_buf *val) {
  size_t i;
  lua_createtable(L, 2, 0);
  push_oid(L, oid);
  for (i = 0; i < sizeof attribute_names / sizeof attribute_names[0]; i++) {
    if (strcmp(lua_tostring(L, -1), attribute_names[i][0]) == 0) {
      lua_pop(L, 1);
      lua_pushstring(L, attribute_names[i][1]);
      break;
    }
  }
  lua_rawseti(L, -2, 1);
  push_value(L, val);
  lua_rawseti(L, -2, 2);
}

/* Push a name as Python does: a list of RDNs, each a list of
** {attribute, value} pairs. */
static void push_name(lua_State *L, const mbedtls_x509_name *name) {
  int rdn = 0, pair = 0;
  lua_newtable(L);
  for (; name != NULL; name = name->next) {
    if (name->oid.p == NULL) continue;
    if (pair == 0) {
      lua_newtable(L);
    }
    push_attribute(L, &name->oid, &name->val);
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

/* Push a DER Name (a subjectAltName's directoryName) as push_name does;
** false, with nothing pushed, when it is malformed. */
static int push_der_name(lua_State *L, unsigned char *p, const unsigned char *end) {
  size_t len;
  int rdn = 0;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
    return 0;
  end = p + len;
  lua_newtable(L);
  while (p < end) {
    const unsigned char *set_end;
    int pair = 0;
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SET) != 0)
      goto bad;
    set_end = p + len;
    lua_newtable(L);
    while (p < set_end) {
      mbedtls_asn1_buf oid, val;
      if (mbedtls_asn1_get_tag(&p, set_end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0 ||
          mbedtls_asn1_get_tag(&p, set_end, &oid.len, MBEDTLS_ASN1_OID) != 0)
        goto bad_rdn;
      oid.p = p;
      p += oid.len;
      if (p >= set_end) goto bad_rdn;
      val.tag = *p++;  /* any string type */
      if (mbedtls_asn1_get_len(&p, set_end, &val.len) != 0) goto bad_rdn;
      val.p = p;
      p += val.len;
      push_attribute(L, &oid, &val);
      lua_rawseti(L, -2, ++pair);
    }
    lua_rawseti(L, -2, ++rdn);
  }
  return 1;
bad_rdn:
  lua_pop(L, 1);
bad:
  lua_pop(L, 1);
  return 0;
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
    int tag = san->buf.tag & 0x1f;
    if (san->buf.p == NULL) continue;
    /* Python's names for the GeneralName kinds (_ssl.c, _get_peer_alt_names) */
    switch (tag) {
      case 0: kind = "othername"; break;
      case 1: kind = "email"; break;
      case 2: kind = "DNS"; break;
      case 3: kind = "X400Name"; break;
      case 4: kind = "DirName"; break;
      case 5: kind = "EdiPartyName"; break;
      case 6: kind = "URI"; break;
      case 7: kind = "IP Address"; break;
      case 8: kind = "Registered ID"; break;
      default: continue;
    }
    lua_createtable(L, 2, 0);
    lua_pushstring(L, kind);
    lua_rawseti(L, -2, 1);
    if (tag == 0 || tag == 3 || tag == 5) {
      lua_pushliteral(L, "<unsupported>");  /* as Python's (OpenSSL's print form) */
    } else if (tag == 4) {
      if (!push_der_name(L, san->buf.p, san->buf.p + san->buf.len)) {
        lua_pop(L, 1);
        continue;
      }
    } else if (tag == 8) {
      push_oid(L, &san->buf);
    } else if (tag == 7) {
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

/* {====================================================== Access info */

/* Python's getpeercert() also has the URIs of two extensions mbedTLS
** does not parse: authorityInfoAccess ("OCSP", "caIssuers") and
** cRLDistributionPoints ("crlDistributionPoints"); read from the DER. */

#define SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)
#define CTX0 (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0)

static const unsigned char OID_AIA[] = {0x2b, 6, 1, 5, 5, 7, 1, 1};     /* id-pe-authorityInfoAccess */
static const unsigned char OID_OCSP[] = {0x2b, 6, 1, 5, 5, 7, 0x30, 1}; /* id-ad-ocsp */
static const unsigned char OID_CA_ISSUERS[] = {0x2b, 6, 1, 5, 5, 7, 0x30, 2}; /* id-ad-caIssuers */
static const unsigned char OID_CRL_DP[] = {0x55, 0x1d, 0x1f};           /* id-ce-cRLDistributionPoints */

static int oid_is(const mbedtls_asn1_buf *oid, const unsigned char *want, size_t len) {
  return oid->len == len && memcmp(oid->p, want, len) == 0;
}

/* Read an OID at *p (before 'end') into 'oid'; false if there is none. */
static int get_oid(unsigned char **p, const unsigned char *end, mbedtls_asn1_buf *oid) {
  if (mbedtls_asn1_get_tag(p, end, &oid->len, MBEDTLS_ASN1_OID) != 0) return 0;
  oid->p = *p;
  *p += oid->len;
  return 1;
}

/* Append the URIs among the GeneralNames in [p, end) to the array at
** stack index 'list' (Python keeps only those). */
static void append_uris(lua_State *L, int list, unsigned char *p, const unsigned char *end) {
  while (p < end) {
    int tag = *p++;
    size_t len;
    if (mbedtls_asn1_get_len(&p, end, &len) != 0) return;
    if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 6)) {
      lua_pushlstring(L, (const char *)p, len);
      lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
    }
    p += len;
  }
}

/* AuthorityInfoAccessSyntax: SEQUENCE OF {accessMethod, accessLocation}. */
static void read_aia(lua_State *L, int ocsp, int issuers, unsigned char *p, const unsigned char *end) {
  size_t len;
  if (mbedtls_asn1_get_tag(&p, end, &len, SEQ) != 0) return;
  end = p + len;
  while (p < end) {
    mbedtls_asn1_buf method;
    unsigned char *next;
    if (mbedtls_asn1_get_tag(&p, end, &len, SEQ) != 0) return;
    next = p + len;
    if (!get_oid(&p, next, &method)) return;
    if (oid_is(&method, OID_OCSP, sizeof OID_OCSP)) append_uris(L, ocsp, p, next);
    else if (oid_is(&method, OID_CA_ISSUERS, sizeof OID_CA_ISSUERS)) append_uris(L, issuers, p, next);
    p = next;
  }
}

/* CRLDistributionPoints: SEQUENCE OF DistributionPoint, whose
** distributionPoint [0] may be a fullName [0] of GeneralNames. */
static void read_crl_dp(lua_State *L, int list, unsigned char *p, const unsigned char *end) {
  size_t len;
  if (mbedtls_asn1_get_tag(&p, end, &len, SEQ) != 0) return;
  end = p + len;
  while (p < end) {
    unsigned char *next;
    if (mbedtls_asn1_get_tag(&p, end, &len, SEQ) != 0) return;
    next = p + len;
    if (mbedtls_asn1_get_tag(&p, next, &len, CTX0) == 0) {
      const unsigned char *point_end = p + len;
      if (mbedtls_asn1_get_tag(&p, point_end, &len, CTX0) == 0) append_uris(L, list, p, p + len);
    }
    p = next;
  }
}

/* Set the fields OCSP, caIssuers and crlDistributionPoints of the table
** at the top, each only when it has a URI, as Python's. */
static void set_access_info(lua_State *L, const mbedtls_x509_crt *crt) {
  static const char *const fields[] = {"OCSP", "caIssuers", "crlDistributionPoints"};
  unsigned char *p = crt->v3_ext.p;
  const unsigned char *end;
  int cert = lua_gettop(L), i;
  size_t len;
  if (p == NULL) return;  /* no extensions */
  end = p + crt->v3_ext.len;
  if (mbedtls_asn1_get_tag(&p, end, &len, SEQ) != 0) return;
  end = p + len;
  for (i = 0; i < 3; i++) lua_newtable(L);  /* at cert + 1, + 2, + 3 */
  while (p < end) {  /* Extension: {extnID, critical (optional), extnValue} */
    mbedtls_asn1_buf id;
    unsigned char *next;
    int critical;
    if (mbedtls_asn1_get_tag(&p, end, &len, SEQ) != 0) break;
    next = p + len;
    if (!get_oid(&p, next, &id)) break;
    (void)mbedtls_asn1_get_bool(&p, next, &critical);  /* leaves p if absent */
    if (mbedtls_asn1_get_tag(&p, next, &len, MBEDTLS_ASN1_OCTET_STRING) != 0) break;
    if (oid_is(&id, OID_AIA, sizeof OID_AIA)) read_aia(L, cert + 1, cert + 2, p, p + len);
    else if (oid_is(&id, OID_CRL_DP, sizeof OID_CRL_DP)) read_crl_dp(L, cert + 3, p, p + len);
    p = next;
  }
  for (i = 0; i < 3; i++) {
    if (lua_rawlen(L, cert + 1 + i) == 0) continue;
    lua_pushvalue(L, cert + 1 + i);
    lua_setfield(L, cert, fields[i]);
  }
  lua_settop(L, cert);
}

/* }====================================================== */

void eddy__tls_push_cert(lua_State *L, const mbedtls_x509_crt *crt) {
  char serial[140];
  size_t i, n = 0;
  lua_newtable(L);
  push_name(L, &crt->subject);
  lua_setfield(L, -2, "subject");
  push_name(L, &crt->issuer);
  lua_setfield(L, -2, "issuer");
  lua_pushinteger(L, crt->version);
  lua_setfield(L, -2, "version");
  /* without DER's leading zero byte of a positive number whose top bit
  ** is set, as OpenSSL's i2a_ASN1_INTEGER (Python's "80", not "0080") */
  i = crt->serial.len > 1 && crt->serial.p[0] == 0;
  for (; i < crt->serial.len && n + 3 < sizeof serial; i++)
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
  set_access_info(L, crt);
}
