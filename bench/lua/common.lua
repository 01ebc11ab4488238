-- Shared by the wrk scripts: a JSON summary line that bench/run.py parses.
local M = {}

function M.lines(path)
  local items = {}
  for line in io.lines(path) do
    if #line > 0 then items[#items + 1] = line end
  end
  return items
end

function M.split(line)
  local fields = {}
  for field in line:gmatch("%S+") do fields[#fields + 1] = field end
  return fields
end

function M.report(summary, latency, counters)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"seconds":%.3f', seconds),
    string.format('"p50_ms":%.3f', latency:percentile(50) / 1000),
    string.format('"p99_ms":%.3f', latency:percentile(99) / 1000),
    string.format('"max_ms":%.3f', latency.max / 1000),
    string.format('"non2xx":%d', errors.status),
    string.format('"socket_errors":%d', errors.connect + errors.read + errors.write + errors.timeout),
  }
  for name, value in pairs(counters or {}) do
    parts[#parts + 1] = string.format('"%s":%d', name, value)
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end

return M
