#!/usr/bin/env python3
"""Check the maps of CPython's asyncio tests onto eddy's specs.

Each MAP.txt here (named after a module of Lib/test/test_asyncio) has one
line per test function of that module, in the module's order:

    test_name  spec/x_spec.lua [spec/y_spec.lua ...]   ported: cited there
    test_name  n/a: why it does not apply to eddy      (mocks, Windows, ...)
    test_name  differs: docs/page.md                   a documented choice

check.py verifies that every test function of the module has exactly one
line, that no line names a test the module lacks, that every spec named
exists and cites the test by name, and that every docs page named exists.

usage: tools/cpython-tests/check.py [--python PYTHON] [MAP.txt ...]
(default: every map here, against CPython 3.13's tests under pyenv)
"""
import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_names(module_path):
    """The module's test functions, in order, each once."""
    names = []
    with open(module_path) as f:
        for m in re.finditer(r"^\s*(?:async\s+)?def\s+(test_\w+)", f.read(), re.M):
            if m.group(1) not in names:
                names.append(m.group(1))
    return names


def check_map(map_path, tests_dir):
    errors = []
    module = os.path.splitext(os.path.basename(map_path))[0]
    module_path = os.path.join(tests_dir, module + ".py")
    if not os.path.exists(module_path):
        return ["%s: no %s" % (map_path, module_path)], 0, 0
    wanted = test_names(module_path)
    seen = {}
    ported = 0
    with open(map_path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            where = "%s:%d" % (os.path.relpath(map_path, ROOT), lineno)
            name, _, rest = line.strip().partition(" ")
            rest = rest.strip()
            if name in seen:
                errors.append("%s: %s listed twice" % (where, name))
            seen[name] = rest
            if name not in wanted:
                errors.append("%s: %s is not a test of %s" % (where, name, module))
            if rest.startswith("n/a:"):
                if len(rest) < 10:
                    errors.append("%s: %s: say why it does not apply" % (where, name))
            elif rest.startswith("differs:"):
                page = rest[len("differs:"):].split()[0] if rest[len("differs:"):].split() else ""
                if not os.path.exists(os.path.join(ROOT, page)):
                    errors.append("%s: %s: no docs page %r" % (where, name, page))
            else:
                specs = rest.split()
                if not specs:
                    errors.append("%s: %s: no spec, n/a: or differs:" % (where, name))
                for spec in specs:
                    path = os.path.join(ROOT, spec)
                    if not os.path.exists(path):
                        errors.append("%s: %s: no file %s" % (where, name, spec))
                    elif not re.search(r"\b%s\b" % re.escape(name), open(path).read()):
                        errors.append("%s: %s is not cited in %s" % (where, name, spec))
                ported += 1
    for name in wanted:
        if name not in seen:
            errors.append("%s: %s has no line" % (os.path.relpath(map_path, ROOT), name))
    return errors, ported, len(wanted)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python-tests", default=None,
                    help="Lib/test/test_asyncio of the CPython to compare with")
    ap.add_argument("maps", nargs="*")
    args = ap.parse_args()
    tests_dir = args.python_tests or next(iter(sorted(glob.glob(
        "/root/.pyenv/versions/3.13*/lib/python3.13/test/test_asyncio"))), None)
    if tests_dir is None:
        sys.exit("check.py: no CPython 3.13 tests found; pass --python-tests DIR")
    maps = args.maps or sorted(glob.glob(os.path.join(HERE, "test_*.txt")))
    failed = False
    for m in maps:
        errors, ported, total = check_map(m, tests_dir)
        for e in errors:
            print(e)
        failed = failed or bool(errors)
        print("%-28s %3d of %3d ported%s" % (os.path.basename(m), ported, total,
                                             "" if not errors else "  (%d errors)" % len(errors)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
