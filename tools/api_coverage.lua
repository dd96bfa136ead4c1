-- api_coverage.lua: is every loop method of API.md §3 bound, documented and
-- specced?  (In the spirit of luv's .ci/bindcov.sh and docscov.sh.)
--
--   eddy tools/api_coverage.lua [--summary] [--api PATH]
--
-- A method is
--   bound       when a Loop made by eddy.new_event_loop() has it,
--   documented  when its name appears in docs/*.md,
--   specced     when its name appears in spec/*.lua.
-- The method list is parsed from API.md (--api PATH, else ../shared/API.md
-- beside the repository, else /work/shared/API.md); without one, the list
-- embedded below is used.  Without flags, a full table; --summary prints
-- the counts and the missing names.  The exit status is 0: it is a report.

local eddy = require "eddy"

-- The methods of API.md §3, for when API.md is not at hand.
local EMBEDDED = [[
run_until_complete run_forever stop is_running is_closed close
shutdown_asyncgens shutdown_default_executor call_soon call_soon_threadsafe
call_later call_at time create_future create_task set_task_factory
get_task_factory create_connection create_datagram_endpoint
create_unix_connection connect_accepted_socket create_server
create_unix_server sendfile start_tls add_reader remove_reader add_writer
remove_writer sock_recv sock_recv_into sock_recvfrom sock_recvfrom_into
sock_sendall sock_sendto sock_connect sock_accept sock_sendfile getaddrinfo
getnameinfo connect_read_pipe connect_write_pipe add_signal_handler
remove_signal_handler run_in_executor set_default_executor
set_exception_handler get_exception_handler default_exception_handler
call_exception_handler get_debug set_debug subprocess_exec subprocess_shell
]]

-- {================================================= Files

-- The repository root: this script lives in <root>/tools/.
local function repo_root()
  local script = arg and arg[0] or "tools/api_coverage.lua"
  local dir = script:match("^(.*)/[^/]*$") or "."
  local root = dir:match("^(.*)/[^/]*$")
  if root == nil then root = (dir == "tools") and "." or dir .. "/.." end
  return root
end

local function read(path)
  local f = io.open(path, "r")
  if f == nil then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Concatenated text of the files of 'dir' whose names end in 'suffix'.
local function read_all(dir, suffix)
  local parts = {}
  local p = io.popen('ls "' .. dir .. '" 2>/dev/null')
  if p == nil then return "" end
  for name in p:lines() do
    if name:sub(-#suffix) == suffix then parts[#parts + 1] = read(dir .. "/" .. name) or "" end
  end
  p:close()
  return table.concat(parts, "\n")
end

-- }=================================================

-- {================================================= The method list

-- Method names of API.md §3: every `name(` opening a code span.
local function parse_api(text)
  local section = text:match("\n## 3%.(.-)\n## 4%.")
  if section == nil then return nil end
  local names, seen = {}, {}
  for name in section:gmatch("`([%a_][%w_]*)%(") do
    if not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  return #names > 0 and names or nil
end

local function method_list(root, api_path)
  local candidates = {api_path, root .. "/../shared/API.md", "/work/shared/API.md"}
  for i = 1, 3 do
    local path = candidates[i]
    local text = path and read(path)
    local names = text and parse_api(text)
    if names then return names, path end
  end
  local names = {}
  for name in EMBEDDED:gmatch("%S+") do names[#names + 1] = name end
  return names, "the embedded list (API.md not found)"
end

-- }=================================================

local function mentions(text, name)
  return text:find("%f[%w_]" .. name .. "%f[^%w_]") ~= nil
end

local function main(...)
  local summary, api_path = false, nil
  local args = table.pack(...)
  local i = 1
  while i <= args.n do
    if args[i] == "--summary" then summary = true
    elseif args[i] == "--api" then i = i + 1; api_path = args[i]
    else io.stderr:write("usage: eddy tools/api_coverage.lua [--summary] [--api PATH]\n") os.exit(2) end
    i = i + 1
  end

  local root = repo_root()
  local names, source = method_list(root, api_path)
  local docs = read_all(root .. "/docs", ".md")
  local specs = read_all(root .. "/spec", ".lua")
  local loop = eddy.new_event_loop()
  local rows = {}
  local missing = {bound = {}, documented = {}, specced = {}}
  local counts = {bound = 0, documented = 0, specced = 0}
  for _, name in ipairs(names) do
    local row = {
      name = name,
      bound = type(loop[name]) == "function",
      documented = mentions(docs, name),
      specced = mentions(specs, name),
    }
    for _, what in ipairs {"bound", "documented", "specced"} do
      if row[what] then counts[what] = counts[what] + 1
      else missing[what][#missing[what] + 1] = name end
    end
    rows[#rows + 1] = row
  end
  loop:close()

  local n = #names
  if summary then
    print(string.format("%d loop methods (from %s)", n, source))
    for _, what in ipairs {"bound", "documented", "specced"} do
      local line = string.format("%-10s %3d/%d", what, counts[what], n)
      if #missing[what] > 0 then line = line .. "  missing: " .. table.concat(missing[what], " ") end
      print(line)
    end
    return
  end
  print(string.format("Loop methods of API.md §3 (from %s)\n", source))
  print(string.format("%-28s %-6s %-11s %-8s", "method", "bound", "documented", "specced"))
  print(string.rep("-", 56))
  local function mark(b) return b and "yes" or "-" end
  for _, row in ipairs(rows) do
    print(string.format("%-28s %-6s %-11s %-8s", row.name, mark(row.bound),
                        mark(row.documented), mark(row.specced)))
  end
  print(string.rep("-", 56))
  print(string.format("%-28s %-6s %-11s %-8s", n .. " methods",
                      counts.bound, counts.documented, counts.specced))
end

-- The script's arguments: lua.c passes them as ... and in 'arg'.
if select("#", ...) > 0 or arg == nil then
  main(...)
else
  main(table.unpack(arg, 1, #arg))
end
