-- Loaded by busted before every spec file (tools/run-tests.sh).
-- Each spec runs its async bodies on a fresh loop (eddy.test.async), which
-- asserts that the loop freed every handle it opened.
package.path = "spec/?.lua;" .. package.path
