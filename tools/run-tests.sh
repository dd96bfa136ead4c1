#!/bin/sh
# run-tests.sh BUILD_DIR: every test suite of eddy against one build.
#   1. the busted specs (spec/*_spec.lua), run by eddy itself
#   2. the C embedding tests (tests/embed_test.c, tests/embed_host_test.c),
#      and hosts built with nothing but what the build directory's
#      pkg-config file says (embed_host_test.c built so also runs)
#   3. `require "eddy"` from the stock lua5.4 (module/eddy.so), and from
#      a C host of several lua_States (tests/lua_host.c)
#   4. tests/oom_host.c: the scenarios of tests/oom/ under failing
#      allocations; tests/fuzz_api.lua: every function called with
#      hostile arguments
#   5. every examples/*.lua script as a smoke test
#   6. tools/api_coverage.lua: its summary (a report, not a test)
# On a build without AddressSanitizer, 1, 2 and 4 run under
# tests/refcheck.c, which aborts at a registry reference freed or handed
# out twice.  SPECS="spec/a_spec.lua ..." runs only those specs in 1
# (make tsan).
# Ends with one line "N passed, M failed"; exits 1 if anything failed.
BUILD=${1:-build}
EDDY="$BUILD/eddy"
export EDDY_TEST_BINARY="$EDDY"
passed=0
failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

count_tap() {  # count "ok" / "not ok" lines of a TAP log
  p=$(grep -c '^ok ' "$1")
  f=$(grep -c '^not ok ' "$1")
  passed=$((passed + p))
  failed=$((failed + f))
}

echo "== specs (busted under eddy)"
refcheck=""
if [ -f "$BUILD/tests/librefcheck.so" ] && ! ldd "$EDDY" | grep -q libasan; then
  refcheck=$(realpath "$BUILD/tests/librefcheck.so")
  echo "  (registry references checked by tests/refcheck.c)"
fi
specs=${SPECS:-$(ls spec/*_spec.lua 2>/dev/null)}
if [ -n "$specs" ]; then
  for spec in $specs; do
    LD_PRELOAD="$refcheck" timeout 600 "$EDDY" /usr/bin/busted \
      --helper=spec/helper.lua -o TAP "$spec" >"$log/spec.tap" 2>"$log/spec.err"
    rc=$?
    count_tap "$log/spec.tap"
    p=$(grep -c '^ok ' "$log/spec.tap"); f=$(grep -c '^not ok ' "$log/spec.tap")
    echo "  $spec: $p passed, $f failed"
    grep -A12 '^not ok ' "$log/spec.tap" | sed 's/^/    /' | head -60
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
      echo "    busted exited $rc with no failing test:"
      tail -n 20 "$log/spec.err" "$log/spec.tap" | sed 's/^/    /'
      failed=$((failed + 1))
    fi
  done
fi

run_c_tap() {  # run_c_tap NAME COMMAND...: a C test that prints TAP
  name=$1; shift
  "$@" >"$log/c.tap" 2>&1
  rc=$?
  count_tap "$log/c.tap"
  grep '^not ok' "$log/c.tap" | sed 's/^/  /'
  if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$log/c.tap"; then
    echo "  $name exited $rc"; cat "$log/c.tap"; failed=$((failed + 1))
  fi
  echo "  $(grep -c '^ok ' "$log/c.tap") passed"
}

echo "== C embedding tests"
if [ -x "$BUILD/tests/embed_test" ]; then
  run_c_tap embed_test env LD_PRELOAD="$refcheck" timeout 60 "$BUILD/tests/embed_test"
fi
if [ -x "$BUILD/tests/embed_host_test" ]; then
  run_c_tap embed_host_test env LD_PRELOAD="$refcheck" timeout 60 "$BUILD/tests/embed_host_test"
fi

# A sanitized libeddy (and eddy.so) needs the sanitizer runtimes loaded
# first into an uninstrumented program (lua5.4, a host cc built).
preload=""
if ldd "$BUILD/module/eddy.so" 2>/dev/null | grep -q libasan; then
  preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
elif ldd "$BUILD/module/eddy.so" 2>/dev/null | grep -q libtsan; then
  preload="$(gcc -print-file-name=libtsan.so)"
fi

echo "== pkg-config from the build directory (docs/embedding.md)"
# Hosts built only with what pkg-config says must find <eddy.h> and link;
# the black-box one then runs as the meson-built one does.
if pc=$(PKG_CONFIG_PATH="$BUILD/meson-uninstalled" pkg-config --cflags --libs eddy 2>&1) &&
   cc -o "$log/pc_host" tests/embed_test.c $pc -lpthread >"$log/pc.err" 2>&1 &&
   cc -o "$log/pc_bb" tests/embed_host_test.c $pc -lpthread >>"$log/pc.err" 2>&1; then
  passed=$((passed + 1))
  echo "  ok hosts compile and link with: $pc"
  run_c_tap pc_bb env LD_LIBRARY_PATH="$BUILD" LD_PRELOAD="$preload" timeout 60 "$log/pc_bb"
else
  failed=$((failed + 1))
  echo "  FAILED:"; { echo "$pc"; cat "$log/pc.err"; } | head -20 | sed 's/^/    /'
fi

echo "== require \"eddy\" from lua5.4"
# Its exit status counts too: work left open must end cleanly.
run_c_tap stock_lua env LD_PRELOAD="$preload" LUA_CPATH="$BUILD/module/?.so" timeout 60 lua5.4 tests/stock_lua.lua

echo "== require \"eddy\" from a C host of several lua_States (tests/lua_host.c)"
if [ -x "$BUILD/tests/lua_host" ]; then
  run_c_tap lua_host env LUA_CPATH="$BUILD/module/?.so" timeout 60 "$BUILD/tests/lua_host"
fi

echo "== allocation failures (tests/oom_host.c: tests/oom/*.lua)"
# Each scenario with its K+1st allocation failing, for every K from 0 to
# all it makes (docs/testing.md); the subprocess scenario, slow (a child
# per run), for every fourth K from a fixed offset; then every scenario
# with all allocations failing from K on.
oom_sweep() {  # oom_sweep [oom_host options] SCRIPT...
  run_c_tap oom_host env LUA_CPATH="$BUILD/module/?.so" timeout 300 \
    "$BUILD/tests/oom_host" "$@"
}
if [ -x "$BUILD/tests/oom_host" ]; then
  OOM_CERTS=$("$EDDY" -e 'print(dofile("spec/support/tls.lua").dir())')
  export OOM_CERTS
  for scenario in timers dns contextvars sync signals sockops udp futures executor \
                  tcp writes unix streams tls; do
    oom_sweep tests/oom/$scenario.lua
  done
  oom_sweep -s 4 -r 7 tests/oom/subprocess.lua
  # Memory exhausted for good (-a): each run must end with the memory
  # error, not hang.  Every fifth K of each scenario, in one process
  # (some 20 s on the sanitizer build).
  echo "  (-a: every allocation failing from the K+1st on)"
  oom_sweep -a -s 5 -r 11 $(ls tests/oom/*.lua | grep -v /support.lua)
fi

echo "== API fuzz (tests/fuzz_api.lua: hostile arguments to everything)"
# Run from a scratch directory: hostile strings such as "x" or "-1" become
# relative socket paths, which must not land in the work tree.
mkdir "$log/fuzz"
eddy_path=$(realpath "$EDDY"); fuzz_path=$(realpath tests/fuzz_api.lua)
for seed in 1 2 3 4 5 6 7 8; do
  if (cd "$log/fuzz" && LD_PRELOAD="$refcheck" timeout 120 "$eddy_path" "$fuzz_path" "$seed" 5000) </dev/null \
       >"$log/fuzz.out" 2>"$log/fuzz.err" && grep -q '^ok ' "$log/fuzz.out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "  FAILED seed $seed (rerun: $EDDY tests/fuzz_api.lua $seed 5000):"
    grep -a -v '^ok ' "$log/fuzz.err" | tail -20 | sed 's/^/    /'
  fi
done
echo "  $(grep -o '[0-9]* calls' "$log/fuzz.out") per seed, 8 seeds"

echo "== examples"
for ex in examples/*.lua; do
  [ -f "$ex" ] || continue
  if timeout 60 "$EDDY" "$ex" </dev/null >"$log/ex.out" 2>&1; then
    passed=$((passed + 1))
    echo "  ok $ex"
  else
    failed=$((failed + 1))
    echo "  FAILED $ex:"; tail -20 "$log/ex.out" | sed 's/^/    /'
  fi
done

if [ -f tools/api_coverage.lua ]; then
  echo "== API coverage (report)"
  "$EDDY" tools/api_coverage.lua --summary 2>&1 | sed 's/^/  /'
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
