-- Hold then release, over and over, without contention: every thread owns one connection and
-- its own slots (customer, showtime, seats), so no two holds ever want the same seat.
-- Arguments after `--`: slots file ("userId token showtimeId LABEL,LABEL" per line),
-- mode ("api": /api/bookings/lock-seats; "raw": the /bench/raw ceiling), thread count.
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  threads[#threads + 1] = thread
end

-- Globals: thread:get() in done() reads the counters of each thread.
local slots, mode, next_slot, pending
holds, conflicts, failures = 0, 0, 0

function init(args)
  local all = common.lines(args[1])
  mode = args[2]
  local nthreads = tonumber(args[3])
  slots = {}
  for i = index, #all, nthreads do slots[#slots + 1] = common.split(all[i]) end
  next_slot, pending, holds, conflicts, failures = 1, nil, 0, 0, 0
end

local base = { api = "/api/bookings/lock-seats", raw = "/bench/raw/lock-seats" }

function request()
  if pending then
    local token, auth = pending[1], pending[2]
    pending = nil
    return wrk.format("DELETE", base[mode] .. "/" .. token, { Authorization = auth })
  end
  local slot = slots[next_slot]
  next_slot = next_slot % #slots + 1
  local seats = {}
  for label in slot[4]:gmatch("[^,]+") do seats[#seats + 1] = '"' .. label .. '"' end
  local body = '{"showtimeId":"' .. slot[3] .. '","seatNumbers":[' .. table.concat(seats, ",") .. "]"
  if mode == "raw" then body = body .. ',"userId":"' .. slot[1] .. '"' end
  body = body .. "}"
  local auth = "Bearer " .. slot[2]
  last_auth = auth
  return wrk.format("POST", base[mode], { Authorization = auth, ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status == 201 then
    holds = holds + 1
    pending = { body:match('"lockToken":"([^"]+)"'), last_auth }
  elseif status == 409 then
    conflicts = conflicts + 1
  elseif status ~= 204 then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local total = { holds = 0, conflicts = 0, failures = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(total) do total[name] = total[name] + thread:get(name) end
  end
  common.report(summary, latency, total)
end
