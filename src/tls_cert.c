/*
** tls_cert.c -- an X.509 certificate as the table Python's
** SSLObject.getpeercert() returns: subject and issuer as lists of RDNs of
** {attribute, value} pairs (OpenSSL's long attribute names), version,
** serialNumber, notBefore/notAfter in OpenSSL's text form, and the
** subjectAltNames.
*/
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/oid.h>

#include "tls.h"

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
}
