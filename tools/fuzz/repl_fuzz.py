#!/usr/bin/env python3
"""repl_fuzz.py EDDY TERM SEED CHUNKS: random keystrokes into the REPL.

Runs EDDY (the executable, or a script that execs it) on a pty with the
given TERM and a screen of 24 rows and 80, 20, 200 or 1 columns (chosen
by SEED), then types CHUNKS chunks of 1 to 8 random keys: printable
text, control keys, escape sequences, UTF-8 and bytes that are not,
fragments of Lua, long runs of one character, Enter now and then.  It
keeps reading the screen so eddy never blocks on output.  At the end it
waits for the output to settle, presses Ctrl-C four times, types an
entry and expects its output, then Ctrl-D and exit status 0.  Now and
then it sends SIGCONT, as a shell resuming eddy after Ctrl-Z does.

A finding is the process ending early (a crash: status 11 is SIGSEGV),
an entry that no longer runs, or no exit after Ctrl-D.  libedit is not
built with the sanitizers: to see its memory errors, run eddy with an
AddressSanitizer build of libedit (docs/testing.md, "The REPL fuzzer").
Prints "ok seed N" or the last screen bytes and the finding; exit status
1 on a finding.
"""
import fcntl
import os
import pty
import random
import select
import signal
import struct
import sys
import termios
import time

binary, term, seed, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
KEYS = [chr(c) for c in range(32, 127)] + [
    "\r", "\t", "\t\t", "\x7f", "\x08", "\x03", "\x01", "\x02", "\x05", "\x06",
    "\x0b", "\x0c", "\x0e", "\x10", "\x12", "\x14", "\x15", "\x16", "\x17", "\x19", "\x00",
    "\x1b", "\x1b[", "\x1b[A", "\x1b[B", "\x1b[C", "\x1b[D", "\x1b[H", "\x1b[F",
    "\x1b[2~", "\x1b[3~", "\x1b[1~", "\x1b[4~", "\x1bOH", "\x1bOF", "\x1b[1;5C", "\x1b[1;5D",
    "\x1bb", "\x1bf", "\x1b[200~", "\x1b[201~", "\x1b[99999999999999999999A",
    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xe2\x82", "\xf0\x9f",
    "\x80", "\xbf", "\xfe", "\xff", "\xc0\xaf",
    "eddy.", "loop:", "string.", "math.", "table.", "coroutine.",
    "eddy.sleep(0.01)", "eddy.sleep(5)", "loop:call_soon(", "return ", "local ",
    "function", "end", "then", "if ", "for i=1,3 do ", "{", "}", "(", ")", "[[", "]]",
    "'", '"', "\\", "--", "--[[", "...", " ", "  ", "x" * 300, "\r\r",
    "error('e')", "error(setmetatable({},{__tostring=function() error('t') end}))",
    "setmetatable({},{__index=function() error('i') end})",
    "_PROMPT2=", "_PROMPT='\\255\\1\\27[1m\\1> '", "collectgarbage()",
]  # no Ctrl-D, Ctrl-Z or Ctrl-\: they would end or stop the process

columns = rng.choice([80, 20, 200, 1])
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = term
    os.environ["HOME"] = "/nonexistent"  # no ~/.editrc
    os.execv(binary, [binary])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
screen = b""


def read_until(deadline):
    global screen
    while True:
        ready, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
        if not ready:
            return
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            return
        screen = (screen + data)[-200000:]


def finding(what):
    sys.stdout.write(repr(screen[-3000:]) + "\n")
    sys.stderr.write("seed %d (%s, %d columns): %s\n" % (seed, term, columns, what))
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    sys.exit(1)


def expect(text, secs=10):
    global screen
    deadline = time.time() + secs
    while text not in screen:
        if time.time() > deadline:
            finding("expected %r" % text)
        read_until(min(deadline, time.time() + 0.05))
    screen = screen[screen.index(text) + len(text):]


def settle(quiet=0.3, limit=20):
    """Until eddy has drawn everything: no output for 'quiet' seconds.
    (Ctrl-C is a signal and flushes the keys not read yet: keys typed
    after it must wait for it.)"""
    end = time.time() + limit
    while time.time() < end:
        before = len(screen)
        read_until(time.time() + quiet)
        if len(screen) == before:
            return
    finding("the output never settles")


expect(b"> ")
for _ in range(chunks):
    chunk = "".join(rng.choice(KEYS) for _ in range(rng.randint(1, 8)))
    os.write(fd, chunk.encode("latin-1"))
    if rng.random() < 0.03:  # as after a stop: the line editor resumes
        os.kill(pid, signal.SIGCONT)
    read_until(time.time() + 0.002)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        finding("ended early: wait status %d" % status)
settle()
for _ in range(4):  # cancel what runs, leave a continuation, clear the line
    os.write(fd, b"\x03")
    settle()
screen = b""
os.write(fd, b"io.write('ali', 'v', 'e', 6 * 7, '\\n')\r")
expect(b"alive42")
os.write(fd, b"\x04")
deadline = time.time() + 10
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            finding("exit status %d after Ctrl-D" % code)
        print("ok seed %d" % seed)
        sys.exit(0)
    read_until(time.time() + 0.05)
finding("still running 10 s after Ctrl-D")
