-- wrk script for bench/frontend.sh: after the run, one machine-readable line
-- (requests, duration, p50/p99 latency in µs, socket and status errors).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f socket_errors=%d status_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
