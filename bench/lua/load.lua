-- wrk script shared by every HTTP scenario of the benchmark (run with -t 1 when quota > 0).
--
-- Arguments (after `--`), each `key=value`:
--   method=PUT|POST|GET   path=/x/{n}?ts={now}   body=<file>   quota=<responses, 0 = by time>
--   unique=1 (stamp the first 32 body bytes with the request id, so no two bodies are equal)
--   run=<prefix of request ids>   out=<json file>   header=Name: value (repeatable)
--
-- {n} becomes `<run>-<counter>` (unique per request), {now} the current Unix time. With a quota the
-- script stops wrk itself once that many responses arrived (SIGINT to its own process, which is
-- how wrk ends a run early) and times the run with CLOCK_MONOTONIC: first request to last
-- response. With quota=0 no response() hook exists, so wrk never buffers response bodies.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
int kill(int pid, int sig);
int getpid(void);
]])

local CLOCK_MONOTONIC = 1
local SIGINT = 2
local STAMP = 32

local function now_ns()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local cfg = { headers = {} }
local body_tail = nil
local prebuilt = nil
local counter = 0

-- Globals read back by done() through thread:get().
responses = 0
statuses = {}
first_error = ""
last_body = ""
t_start = 0
t_end = 0
out = ""

function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k == "header" then
      local name, value = v:match("^([^:]+):%s*(.*)$")
      cfg.headers[name] = value
    elseif k then
      cfg[k] = v
    end
  end
  cfg.quota = tonumber(cfg.quota or "0")
  cfg.unique = cfg.unique == "1"
  out = cfg.out or ""
  if cfg.body and cfg.body ~= "" then
    local f = assert(io.open(cfg.body, "rb"))
    cfg.data = f:read("*a")
    f:close()
    body_tail = cfg.data:sub(STAMP + 1)
  end
  if not cfg.unique and not cfg.path:find("{", 1, true) then
    prebuilt = wrk.format(cfg.method, cfg.path, cfg.headers, cfg.data)
  end
  if cfg.quota == 0 then
    response = nil
  end
end

function request()
  if t_start == 0 then
    t_start = now_ns()
  end
  if prebuilt then
    return prebuilt
  end
  counter = counter + 1
  local id = (cfg.run or "r") .. "-" .. counter
  local path = cfg.path:gsub("{n}", id):gsub("{now}", tostring(os.time()))
  local body = cfg.data
  if cfg.unique and body then
    local stamp = id .. string.rep("-", STAMP)
    body = stamp:sub(1, STAMP) .. body_tail
  end
  return wrk.format(cfg.method, path, cfg.headers, body)
end

function response(status, headers, body)
  responses = responses + 1
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and first_error == "" then
    first_error = status .. " " .. body:sub(1, 500)
  end
  last_body = body
  if responses == cfg.quota then
    t_end = now_ns()
    ffi.C.kill(ffi.C.getpid(), SIGINT)
    wrk.thread:stop()
  end
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function done(summary, latency, requests)
  local total, merged, err, last, start, finish, path = 0, {}, "", "", 0, 0, ""
  for _, t in ipairs(threads) do
    total = total + (t:get("responses") or 0)
    for code, n in pairs(t:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + n
    end
    local e = t:get("first_error") or ""
    if err == "" then err = e end
    local b = t:get("last_body") or ""
    if b ~= "" then last = b end
    local s, f = t:get("t_start") or 0, t:get("t_end") or 0
    if s > 0 and (start == 0 or s < start) then start = s end
    if f > finish then finish = f end
    path = t:get("out") or path
  end
  local codes = {}
  for code, n in pairs(merged) do
    table.insert(codes, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  local doc = string.format(
    '{"requests": %d, "bytes": %d, "duration_us": %d, "responses": %d, "statuses": {%s},'
      .. ' "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d},'
      .. ' "elapsed_ns": %.0f, "latency_p50_us": %d, "latency_p99_us": %d,'
      .. ' "first_error": %s, "last_body": %s}\n',
    summary.requests, summary.bytes, summary.duration, total, table.concat(codes, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    (finish > 0 and start > 0) and (finish - start) or 0,
    latency:percentile(50), latency:percentile(99),
    json_string(err), json_string(last)
  )
  local f = assert(io.open(path, "w"))
  f:write(doc)
  f:close()
end
