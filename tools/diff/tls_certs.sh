#!/bin/sh
# Certificates for tools/diff/tls.py and tls.lua, made in directory $1:
# ca.pem, server.pem/.key (localhost, 127.0.0.1, signed by ca), rogue.pem/.key
# (self-signed localhost: an unknown CA), expired.pem/.key (signed by ca,
# valid only on 1 Jan 2020).  EC P-256 keys, as spec/support/tls.lua.
set -e
cd "$1"
key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"; }
key ca
openssl req -x509 -new -key ca.key -subj '/CN=diff test CA' -days 2 -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
# Python 3.13's strict verification wants keyUsage in the CA, key ids in the leaf
printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > san.ext
key server
openssl req -new -key server.key -subj /CN=localhost -out server.csr
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile san.ext -out server.pem 2>/dev/null
key rogue
openssl req -x509 -new -key rogue.key -subj /CN=localhost -days 2 -out rogue.pem
# openssl x509 cannot backdate a certificate; openssl ca can
key expired
openssl req -new -key expired.key -subj /CN=localhost -out expired.csr
mkdir -p db && : > db/index && echo 01 > db/serial
printf '[ca]\ndefault_ca = x\n[x]\ndatabase = db/index\nnew_certs_dir = db\nserial = db/serial\npolicy = p\ndefault_md = sha256\n[p]\ncommonName = supplied\n' > ca.cnf
openssl ca -batch -config ca.cnf -keyfile ca.key -cert ca.pem -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z -extfile san.ext 2>/dev/null
