-- DNS: loop:getaddrinfo and loop:getnameinfo (API.md §3 "DNS"), on
-- libuv's resolver.
local eddy = require "eddy"
local errors = eddy.errors
local async = require("eddy.test").async
local checks = require "support.checks"
local raises, argerror = checks.raises, checks.argerror
local socket = eddy.socket

describe("getaddrinfo", function()
  it("resolves localhost into entries shaped as Python's", async(function(loop)
    local infos = loop:getaddrinfo("localhost", 80, {type = socket.SOCK_STREAM})
    assert.is_true(#infos >= 1)
    local seen = {}
    for _, info in ipairs(infos) do
      assert.equal(socket.SOCK_STREAM, info.type)
      assert.equal("number", math.type(info.proto) and "number")
      assert.equal("string", type(info.canonname))
      assert.equal(80, info.sockaddr[2])
      seen[info.family] = info.sockaddr[1]
    end
    assert.is_true(seen[socket.AF_INET] == "127.0.0.1" or seen[socket.AF_INET6] == "::1")
  end))

  it("takes family, numeric hosts, service names and flags", async(function(loop)
    local infos = loop:getaddrinfo("127.0.0.1", "http", {family = socket.AF_INET,
                                                       type = socket.SOCK_STREAM,
                                                       flags = socket.AI_NUMERICHOST})
    assert.equal(1, #infos)
    assert.same({"127.0.0.1", 80}, infos[1].sockaddr)
    local v6 = loop:getaddrinfo("::1", 8080, {family = socket.AF_INET6, type = socket.SOCK_STREAM})
    assert.same({"::1", 8080, 0, 0}, v6[1].sockaddr)
    local passive = loop:getaddrinfo(nil, 0, {family = socket.AF_INET, type = socket.SOCK_STREAM,
                                              flags = socket.AI_PASSIVE})
    assert.equal("0.0.0.0", passive[1].sockaddr[1])
    local canon = loop:getaddrinfo("localhost", nil, {family = socket.AF_INET,
                                                      type = socket.SOCK_STREAM,
                                                      flags = socket.AI_CANONNAME})
    assert.equal("localhost", canon[1].canonname)
  end))

  it("writes IPv4 addresses as inet_ntop does, octets of every width", async(function(loop)
    for _, host in ipairs{"0.0.0.0", "255.255.255.255", "1.10.100.200", "9.99.199.250",
                          "10.0.20.109"} do
      local infos = loop:getaddrinfo(host, 1, {family = socket.AF_INET, type = socket.SOCK_DGRAM,
                                               flags = socket.AI_NUMERICHOST})
      assert.same({host, 1}, infos[1].sockaddr)
    end
  end))

  it("raises DNSError with the EAI code", async(function(loop)
    local err = raises(function() loop:getaddrinfo("no-such-host.invalid", 80) end, errors.DNSError)
    assert.truthy(err.code == "EAI_NONAME" or err.code == "EAI_AGAIN", err.code)
    err = raises(function()
      loop:getaddrinfo("localhost", "no-such-service-x", {type = socket.SOCK_STREAM})
    end, errors.DNSError)
    assert.equal("EAI_SERVICE", err.code)
    -- errno is the resolver's EAI value, as in Python's socket.gaierror
    assert.equal(socket.EAI_SERVICE, err.errno)
    assert.is_true(socket.EAI_SERVICE < 0)
    err = raises(function() loop:getaddrinfo("127.0.0.1", 1, {family = 12345}) end, errors.DNSError)
    assert.equal("EAI_FAMILY", err.code)
    assert.equal(socket.EAI_FAMILY, err.errno)
    -- as Python's socket.getaddrinfo: "" goes to the C resolver as it is,
    -- and neither host nor port is EAI_NONAME too (not libuv's EINVAL)
    err = raises(function() loop:getaddrinfo("", 80) end, errors.DNSError)
    assert.equal("EAI_NONAME", err.code)
    err = raises(function()
      loop:getaddrinfo("", 80, {flags = socket.AI_PASSIVE, type = socket.SOCK_STREAM})
    end, errors.DNSError)
    assert.equal("EAI_NONAME", err.code)
    err = raises(function() loop:getaddrinfo(nil, nil) end, errors.DNSError)
    assert.equal("EAI_NONAME", err.code)
    assert.equal(socket.EAI_NONAME, err.errno)
  end))

  it("rejects bad arguments", async(function(loop)
    argerror(function() loop:getaddrinfo({}, 80) end, 1, "getaddrinfo")
    argerror(function() loop:getaddrinfo("h", {}) end, 2, "getaddrinfo")
    argerror(function() loop:getaddrinfo("h", 1, 5) end, 3, "getaddrinfo")
    argerror(function() loop:getaddrinfo("h", 1, {family = "x"}) end, 3, "getaddrinfo")
    argerror(function() loop:getaddrinfo("h", 1, setmetatable({}, {})) end, 3, "getaddrinfo")
    -- cut at the NUL, "127.0.0.1\0evil" resolved as 127.0.0.1
    raises(loop.getaddrinfo, {errors.ValueError, "embedded null byte in host"}, loop,
           "127.0.0.1\0evil", 80)
    raises(loop.getaddrinfo, {errors.ValueError, "embedded null byte in port"}, loop,
           "127.0.0.1", "http\0x")
    local s <close> = socket.socket()
    raises(s.connect, {errors.ValueError, "embedded null byte in host"}, s, {"127.0.0.1\0x", 1})
    raises(loop.sock_connect, errors.ValueError, loop, s, {"127.0.0.1\0x", 1})
    local ctx = eddy.ssl.create_default_context()
    raises(ctx._wrap, {errors.ValueError, "embedded null byte in server_hostname"}, ctx,
           false, "example.com\0.evil")
  end))

  it("rejects unknown options and option values no C int holds", async(function(loop)
    -- Python: getaddrinfo() got an unexpected keyword argument (TypeError);
    -- family=2**32 + 2 is OverflowError, not AF_INET.  A typo such as
    -- socktype used to be ignored, giving entries of every socket type.
    raises(function() loop:getaddrinfo("127.0.0.1", 80, {socktype = socket.SOCK_STREAM}) end,
           "bad argument #3 to 'getaddrinfo' (unknown option 'socktype')")
    raises(function() loop:getaddrinfo("127.0.0.1", 80, {[1] = 2}) end, "unknown option '1'")
    raises(function() loop:getaddrinfo("127.0.0.1", 80, {family = (1 << 32) + socket.AF_INET}) end,
           "bad argument #3 to 'getaddrinfo' (option 'family' out of range)")
    raises(function() loop:getaddrinfo("127.0.0.1", 80, {flags = -(1 << 40)}) end,
           "bad argument #3 to 'getaddrinfo' (option 'flags' out of range)")
  end))

  it("a cancelled lookup leaves nothing behind", async(function(loop)
    local task = loop:create_task(function() return loop:getaddrinfo("localhost", 80) end)
    eddy.sleep(0)
    task:cancel()
    raises(function() eddy.await(task) end, errors.CancelledError)
    eddy.sleep(0.05)
  end))

  it("raises outside a task", function()
    local loop = eddy.new_event_loop()
    loop:call_soon(function()
      local ok, err = pcall(loop.getaddrinfo, loop, "localhost", 80)
      assert(not ok and tostring(err):find("cannot suspend here"))
      loop:stop()
    end)
    loop:run_forever()
    loop:close()
  end)
end)

describe("getnameinfo", function()
  it("returns host and service (test_getnameinfo)", async(function(loop)
    local host, service = loop:getnameinfo({"127.0.0.1", 80},
                                           socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    assert.equal("127.0.0.1", host)
    assert.equal("80", service)
    host, service = loop:getnameinfo({"::1", 22, 0, 0}, socket.NI_NUMERICSERV)
    assert.equal("string", type(host))
    assert.equal("22", service)
    host = loop:getnameinfo({"127.0.0.1", 0})
    assert.equal("string", type(host))
    -- Python parses the host with getaddrinfo(AI_NUMERICHOST), which takes
    -- inet_aton's short forms
    host, service = loop:getnameinfo({"127.1", 80},
                                     socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    assert.equal("127.0.0.1", host)
    assert.equal("80", service)
  end))

  it("rejects bad sockaddrs", async(function(loop)
    argerror(function() loop:getnameinfo("127.0.0.1") end, 1, "getnameinfo")
    -- a name is not resolved: socket.getnameinfo's AI_NUMERICHOST (gaierror)
    local e = raises(function() loop:getnameinfo({"localhost", 80}) end, errors.DNSError)
    assert.equal("EAI_NONAME", e.code)
    argerror(function() loop:getnameinfo({42, 80}) end, 1, "getnameinfo")
    raises(function() loop:getnameinfo({"127.0.0.1", 70000}) end, errors.ValueError)
    e = raises(function() loop:getnameinfo({"127.0.0.1", 80, 0, 0}) end, errors.OSError)
    assert.equal("OSError: IPv4 sockaddr must be 2 tuple", tostring(e))
    raises(function() loop:getnameinfo({"127.0.0.1", 80}, "x") end, "bad argument #2")
    -- Python parses "si|II;getnameinfo(): illegal sockaddr argument" first
    -- (TypeError: an argument error here), then wants an IPv4 pair (OSError)
    argerror(function() loop:getnameinfo({"127.0.0.1"}) end, 1, "getnameinfo")
    argerror(function() loop:getnameinfo({"::1", 80, 0, 0, 0}) end, 1, "getnameinfo")
  end))
end)
