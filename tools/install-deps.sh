#!/bin/sh
# Installs the Debian packages eddy needs that this machine lacks
# (apt-get, as root or through sudo).  Safe to run again: it does nothing
# when everything is there.  With "bench", also the peers that
# ../shared/bench/run.sh measures eddy against (make bench).
set -e
PKGS="gcc pkg-config meson ninja-build lua5.4 liblua5.4-dev libuv1-dev \
libmbedtls-dev libedit-dev lua-busted openssl ca-certificates python3"
if [ "$1" = bench ]; then
  PKGS="$PKGS make python3-uvloop lua-luv lua-cqueues wrk"
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing
