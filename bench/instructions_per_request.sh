#!/bin/sh
# instructions_per_request.sh SERVER MODE [LOADGEN OPTIONS]: the user-space
# instructions an eddy server executes per request, counted by callgrind
# over 4 s of load (deterministic where wall-clock figures are not: use it
# to compare two builds of one path).
#   SERVER: an eddy script taking the port (bench/eddy/echo_protocol.lua)
#   MODE:   echo or http, then the load generator's options (-s, -c)
# The counters are zeroed once the server listens, so start-up is left out.
# Example: sh bench/instructions_per_request.sh bench/eddy/echo_streams.lua echo -s 1024 -c 10
# EDDY=path/to/eddy picks another build; callgrind's output stays in
# /tmp/ipr.PID.* for callgrind_annotate (LD_LIBRARY_PATH to a liblua
# with debug symbols names Lua's functions).
set -e
SERVER=$1 MODE=$2
shift 2
SHARED=${SHARED:-../shared/bench}
LG=$SHARED/loadgen/loadgen
make -s -C "$SHARED/loadgen" >/dev/null
PORT=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000))
OUT=/tmp/ipr.$$
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  "${EDDY:-build/eddy}" "$SERVER" "$PORT" >/dev/null 2>"$OUT.log" &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
$LG wait -p "$PORT" -T 60 >/dev/null
callgrind_control -z $PID >/dev/null 2>&1
requests=$($LG "$MODE" -p "$PORT" "$@" -d 4 -w 0 | sed -n 's/.* requests=\([0-9]*\).*/\1/p')
callgrind_control -d $PID >/dev/null 2>&1
dump=$(ls "$OUT".* | grep -v '\.log$' | head -1)
callgrind_annotate "$dump" | awk -v n="$requests" -v f="$dump" '/PROGRAM TOTALS/ {
  gsub(",", "", $1); printf "requests=%d instructions_per_req=%d (%s)\n", n, $1 / n, f }'
