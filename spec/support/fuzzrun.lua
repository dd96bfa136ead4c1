-- A fuzzer run from a spec: the eddy binary under test, as an absolute
-- path (a fuzzer may run from a scratch directory), and one seed's run,
-- which must end with the fuzzer's "ok SEED N: 0 findings" line.
local M = {}

M.binary = os.getenv("EDDY_TEST_BINARY") or "build/eddy"
if M.binary:sub(1, 1) ~= "/" then M.binary = os.getenv("PWD") .. "/" .. M.binary end

-- Run the shell command 'cmd' (a fuzzer given seed and n); fail with its
-- exit status, the command line 'rerun' and the end of its output unless
-- it reported no finding.
function M.expect_no_findings(cmd, seed, n, rerun)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  assert(ok and out:find(("ok %d %d: 0 findings"):format(seed, n), 1, true),
         ("exit %s; rerun: %s\n%s"):format(tostring(code), rerun, out:sub(-3000)))
end

return M
