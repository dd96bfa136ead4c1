-- asyncio's docs example "Set signal handlers for SIGINT and SIGTERM", in
-- Lua: the loop runs forever until one of the two signals arrives.
--
-- Run it from a shell and press Ctrl-C, or send it SIGTERM from another
-- shell (`kill -TERM <pid>`).  So that it also ends by itself (it runs as
-- a smoke test), it sends itself SIGTERM after a second, with
-- eddy.signal.kill and eddy.signal.getpid (eddy's os.kill and os.getpid).
local eddy = require "eddy"
local signal = require "eddy.signal"

local function ask_exit(signame, loop)
  print(string.format("got signal %s: exit", signame))
  loop:stop()
end

local loop = eddy.get_event_loop()
for _, signame in ipairs {"SIGINT", "SIGTERM"} do
  loop:add_signal_handler(signal[signame], ask_exit, signame, loop)
end

print("Event loop running forever, press Ctrl+C to interrupt.")
print(string.format("pid %d: send SIGINT or SIGTERM to exit.", signal.getpid()))
loop:call_later(1, signal.kill, signal.getpid(), signal.SIGTERM)
loop:run_forever()
loop:close()
