#!/bin/sh
# Run a harness under CPython and under eddy and diff their traces.
# Usage: tools/diff/run.sh [proc|tls|socket|net|streams|sync] [scenario-prefix]  (proc
# by default: proc.py/proc.lua; tls: tls.py/tls.lua, with certificates
# made for the run; socket: socket.py/socket.lua; net: net.py/net.lua, in
# a mount namespace of their own whose /etc/hosts gives the name dual.test
# both ::1 and 127.0.0.1, for happy eyeballs; streams: streams.py/
# streams.lua, STREAMS_SEEDS random programs; sync: sync.py/sync.lua,
# SYNC_SEEDS random programs of each kind).  PYTHON: the interpreter,
# default CPython 3.13 from pyenv; EDDY: the eddy binary, default
# build/eddy.
here=$(dirname "$0")
PYTHON=${PYTHON:-$(ls /root/.pyenv/versions/3.13*/bin/python3 2>/dev/null | tail -1)}
EDDY=${EDDY:-$here/../../build/eddy}
harness=proc
case "$1" in proc|tls|socket|net|streams|sync) harness=$1; shift ;; esac
if [ "$harness" = tls ]; then
  certs=$(mktemp -d)
  trap 'rm -rf "$certs"' EXIT
  "$here/tls_certs.sh" "$certs" 2>/dev/null || exit 1
  set -- "$certs" "$@"
fi
in_hosts() { "$@"; }
if [ "$harness" = net ]; then
  hosts=$(mktemp)
  trap 'rm -f "$hosts"' EXIT
  printf '127.0.0.1 localhost\n::1 localhost\n127.0.0.1 dual.test\n::1 dual.test\n' > "$hosts"
  in_hosts() { unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$hosts" "$@"; }
fi
in_hosts "$PYTHON" "$here/$harness.py" "$@" > /tmp/diff-$harness.py.out 2>&1
PYTHON="$PYTHON" in_hosts "$EDDY" "$here/$harness.lua" "$@" > /tmp/diff-$harness.lua.out 2>&1
diff -u /tmp/diff-$harness.py.out /tmp/diff-$harness.lua.out && echo "no differences"
