#!/bin/sh
# cpu_per_request.sh SERVER SIZE CONNS: the server's user and system CPU
# time per echo request, from /proc/PID/stat over 3 s of load.
#   SERVER: "uv" (../shared/bench/peers/uv_echo, built by the harness's make)
#           or an eddy script taking the port (bench/eddy/echo_protocol.lua)
# The server runs on core 0, the load generator on core 1, as run.sh.
# Example: sh bench/cpu_per_request.sh bench/eddy/echo_streams.lua 16384 100
set -e
SERVER=$1 SIZE=$2 CONNS=$3
SHARED=${SHARED:-../shared/bench}
LG=$SHARED/loadgen/loadgen
make -s -C "$SHARED/loadgen" >/dev/null
PORT=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000))
if [ "$SERVER" = uv ]; then
  make -s -C "$SHARED/peers" >/dev/null
  taskset -c 0 "$SHARED/peers/uv_echo" "$PORT" &
else
  taskset -c 0 "${EDDY:-build/eddy}" "$SERVER" "$PORT" &
fi
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
$LG wait -p "$PORT" -T 5 >/dev/null
ticks() { awk '{print $14, $15}' "/proc/$PID/stat"; }
(sleep 1; ticks > /tmp/cpr.$$.a; sleep 3; ticks > /tmp/cpr.$$.b) &
out=$(taskset -c 1 $LG echo -p "$PORT" -s "$SIZE" -c "$CONNS" -d 3 -w 1 -P "$PID" | tail -1)
wait $!
rps=$(echo "$out" | sed -n 's/.* rps=\([0-9]*\).*/\1/p')
hz=$(getconf CLK_TCK)
paste /tmp/cpr.$$.a /tmp/cpr.$$.b | awk -v rps="$rps" -v hz="$hz" '{
  printf "rps=%d user_us_per_req=%.2f sys_us_per_req=%.2f\n", rps,
         ($3 - $1) * 1e6 / hz / (rps * 3), ($4 - $2) * 1e6 / hz / (rps * 3) }'
rm -f /tmp/cpr.$$.a /tmp/cpr.$$.b
