# Tiny Rack app with per-worker prometheus-client-mmap metrics (promfork
# example; the Ruby twin of app.py).
#
#   /             -> "hello from worker <pid>"
#   /slow?ms=N    -> sleeps N milliseconds (capped at 10 s)
#
# Each worker counts in its own files directory and serves it on the port
# promfork leased it (contrib/puma/puma.rb, contrib/unicorn/unicorn.conf.rb).

require 'prometheus/client'

registry = Prometheus::Client.registry
REQUESTS = registry.counter(:app_requests_total, 'HTTP requests handled.')
LATENCY = registry.histogram(:app_request_duration_seconds,
                             'Time spent handling a request.')

app = lambda do |env|
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  path = env['PATH_INFO'].to_s.empty? ? '/' : env['PATH_INFO']
  begin
    case path
    when '/'
      status, body = 200, "hello from worker #{Process.pid}\n"
    when '/slow'
      ms = Rack::Utils.parse_query(env['QUERY_STRING'].to_s)['ms'].to_s
      ms = ms.empty? ? 100.0 : ms.to_f
      sleep(ms.clamp(0.0, 10_000.0) / 1000.0)
      status, body = 200, "slept #{ms} ms in worker #{Process.pid}\n"
    else
      path = 'other' # keep the label's cardinality bounded
      status, body = 404, "not found\n"
    end
    [status, { 'Content-Type' => 'text/plain; charset=utf-8',
               'Content-Length' => body.bytesize.to_s }, [body]]
  ensure
    REQUESTS.increment(path: path)
    LATENCY.observe({}, Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)
  end
end

run app
