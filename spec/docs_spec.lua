-- The examples of docs/*.md run: every ```lua block (indented ones too)
-- is a complete script, run with the eddy binary in a scratch directory
-- with no input, under `timeout`, and must exit 0.  A block that is a
-- signature or a shape on purpose is marked by the line just before its
-- fence:
--
--   <!-- fragment: not run -->
--
-- Every API page must keep at least one runnable block (docs/ has "a page
-- per area with runnable examples"); the pages below are exempt.
local cli = require "cli_helper"
local q = cli.q

local NOT_API = {["design.md"] = true, ["performance.md"] = true, ["performance-log.md"] = true,
                 ["embedding.md"] = true, ["testing.md"] = true}
local MARK = "<!-- fragment: not run -->"

-- The blocks of a page: {line =, code =, fragment =}, in order.
local function blocks(text)
  local found, cur, prev, n = {}, nil, "", 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^%s*```%s*$") then
        cur.code = table.concat(cur.lines, "\n") .. "\n"
        found[#found + 1], cur = cur, nil
      else
        -- drop the fence's indentation (a block inside a list item)
        local body = line:sub(1, #cur.indent) == cur.indent and line:sub(#cur.indent + 1) or line
        cur.lines[#cur.lines + 1] = body
      end
    else
      local indent = line:match("^(%s*)```lua%s*$")
      if indent then
        cur = {line = n, indent = indent, lines = {},
               fragment = prev:match("^%s*(.-)%s*$") == MARK}
      end
    end
    prev = line
  end
  assert(not cur, "unterminated ```lua block at line " .. (cur and cur.line or 0))
  return found
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = assert(io.popen("pwd"))
  local dir = p:read("l")
  p:close()
  return dir .. "/" .. path
end

local binary = absolute(cli.binary)

local pages = {}
do
  local p = assert(io.popen("ls docs/*.md"))
  for path in p:lines() do pages[#pages + 1] = path end
  p:close()
end
assert(#pages > 0, "no docs/*.md: run from the top of the source tree")

for _, path in ipairs(pages) do
  local page = path:match("[^/]+$")
  local list = blocks(cli.readfile(path))

  describe(page, function()
    local runnable = 0
    for i, b in ipairs(list) do
      if not b.fragment then
        runnable = runnable + 1
        it(("block %d (line %d) runs"):format(i, b.line), function()
          local dir = os.tmpname()
          os.remove(dir)
          assert(os.execute("mkdir " .. q(dir)))
          local script = dir .. "/" .. page:gsub("%.md$", "") .. "_" .. i .. ".lua"
          cli.writefile(script, b.code)
          local r = cli.sh("sh -c " .. q("cd " .. q(dir) .. " && exec " .. q(binary) .. " " .. q(script)))
          os.execute("rm -rf " .. q(dir))
          assert(r.code == 0, ("%s:%d: exit %s\n--- stdout\n%s--- stderr\n%s")
                              :format(path, b.line, tostring(r.code), r.out, r.err))
        end)
      end
    end

    if not NOT_API[page] then
      it("has a runnable example", function()
        assert(runnable > 0, path .. " has no ```lua block without " .. MARK)
      end)
    end
  end)
end
