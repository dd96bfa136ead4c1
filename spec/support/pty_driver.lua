-- The source of a python3 program that drives eddy on an 80-column pty
-- with the given TERM (repl_spec.lua, blackbox4_spec.lua).  Steps are
-- "send:<text>" (escapes allowed), "expect:<text>" (waits up to 5 s), "kill:<signal name>", "columns:<n>" (resizes the
-- pty; libedit reads the size at each new line) and "exit" (waits for
-- the process to end and prints its status).
-- Run: python3 DRIVER BINARY TERM STEP...
return [[
import fcntl, os, pty, select, signal, struct, sys, termios, time
binary, term, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = term
    os.environ["HOME"] = "/nonexistent"
    os.execv(binary, [binary])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
os.set_blocking(fd, False)
buf = b""
def fill(deadline):
    global buf
    r, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
    if not r:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    buf += data
    return len(data) > 0
def fail(msg):
    sys.stdout.write(repr(buf) + "\n")
    sys.stderr.write(msg + "\n")
    os.kill(pid, 9)
    sys.exit(1)
for step in steps:
    kind, _, arg = step.partition(":")
    data = arg.encode().decode("unicode_escape").encode("latin-1")
    if kind == "send":
        # In pieces, reading the output meanwhile, as a terminal does:
        # both directions of a pty hold a few KiB only.
        deadline = time.time() + 20
        while data:
            r, w, _ = select.select([fd], [fd], [], max(0, deadline - time.time()))
            if not r and not w:
                fail("cannot send")
            if r:
                fill(time.time())
            if w:
                try:
                    data = data[os.write(fd, data[:4096]):]
                except BlockingIOError:
                    pass
    elif kind == "kill":
        os.kill(pid, getattr(signal, "SIG" + arg))
    elif kind == "columns":
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, int(arg), 0, 0))
    elif kind == "expect":
        deadline = time.time() + 5
        while data not in buf:
            if not fill(deadline):
                fail("expected %r" % data)
        buf = buf[buf.index(data) + len(data):]
    elif kind == "exit":
        deadline = time.time() + 5
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("exit %d" % os.waitstatus_to_exitcode(status))
                sys.exit(0)
            fill(time.time() + 0.05)
        fail("still running")
fail("no exit step")
]]
