-- wrk script of make bench: POST one Events API body to the stand-in, the
-- way the worker does (Content-Type: application/json), and report the
-- figures bench.py reads, as "bench <name> <value>" lines.
--
--   BENCH_BODY=body.json wrk -t2 -c16 -d10s -s post.lua http://127.0.0.1:PORT/v2/enqueue
--
-- With BENCH_GAP_MS set, each connection waits that long before each
-- request: single requests at a steady pace rather than a flood.

local gap = tonumber(os.getenv("BENCH_GAP_MS") or "")
if gap ~= nil then
   function delay()
      return gap
   end
end

-- Runs in each thread before its request is built.
function init(args)
   local path = os.getenv("BENCH_BODY")
   if path == nil then
      error("BENCH_BODY (the file holding the request body) is not set")
   end
   local file = assert(io.open(path, "rb"))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

-- Runs once, at the end.  Durations and latencies are in microseconds.
function done(summary, latency, requests)
   local errors = summary.errors
   local lines = {
      { "requests", summary.requests },
      { "duration_us", summary.duration },
      { "errors_connect", errors.connect },
      { "errors_read", errors.read },
      { "errors_write", errors.write },
      { "errors_status", errors.status },
      { "errors_timeout", errors.timeout },
      { "latency_p50_us", latency:percentile(50) },
      { "latency_p99_us", latency:percentile(99) },
      { "latency_max_us", latency.max },
   }
   for _, line in ipairs(lines) do
      io.write(string.format("bench %s %d\n", line[1], line[2]))
   end
end
