#!/bin/sh
# Run tools/diff/proc.py under CPython and tools/diff/proc.lua under eddy
# and diff their traces.  Usage: tools/diff/run.sh [scenario-prefix]
# (PYTHON: the interpreter, default CPython 3.13 from pyenv; EDDY: the
# eddy binary, default build/eddy).
here=$(dirname "$0")
PYTHON=${PYTHON:-$(ls /root/.pyenv/versions/3.13*/bin/python3 2>/dev/null | tail -1)}
EDDY=${EDDY:-$here/../../build/eddy}
"$PYTHON" "$here/proc.py" "$@" > /tmp/diff-proc.py.out 2>&1
"$EDDY" "$here/proc.lua" "$@" > /tmp/diff-proc.lua.out 2>&1
diff -u /tmp/diff-proc.py.out /tmp/diff-proc.lua.out && echo "no differences"
