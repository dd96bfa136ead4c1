-- Running the eddy executable as a subprocess, for cli_spec and repl_spec.
-- Every run goes through `timeout`, so a hang fails the test in seconds.

local tmp = require "support.tmp"

local M = {}

M.binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"

-- Quote a string for the shell.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

-- A temporary file holding 's', removed when the test ends.
M.tempfile = tmp.file

-- Run a shell command line with 'opts.stdin' (a string; default: no
-- input), 'opts.env' (a prefix such as "LUA_INIT=x"), under `timeout`.
-- Returns {code =, out =, err =}.
function M.sh(cmdline, opts)
  opts = opts or {}
  local out, err = M.tempfile(), M.tempfile()
  local input = opts.stdin_file or (opts.stdin and M.tempfile(opts.stdin)) or "/dev/null"
  local cmd = string.format("%s timeout %d %s <%s >%s 2>%s",
                            opts.env or "", opts.timeout or 10, cmdline,
                            M.q(input), M.q(out), M.q(err))
  local _, _, code = os.execute(cmd)
  return {code = code, out = M.readfile(out), err = M.readfile(err)}
end

-- Run eddy with an argument string (already quoted as needed).
function M.eddy(args, opts)
  return M.sh(M.q(M.binary) .. " " .. args, opts)
end

function M.has(program)
  local _, _, code = os.execute("command -v " .. program .. " >/dev/null 2>&1")
  return code == 0
end

return M
