# Puma config (cluster mode): every worker serves its own /metrics on a
# port leased from promfork, and promfork publishes it as a scrape target.
#
#   promfork --port-range 9400-9463 --sd-file /etc/prometheus/promfork/app.json -- \
#       puma -C /path/to/contrib/puma/puma.rb -b tcp://0.0.0.0:8000 config.ru
#
# Metrics: prometheus-client-mmap, one files directory per worker
# (contrib/ruby/promfork/mmap.rb).  Phased restarts (SIGUSR1) work: no
# preload_app here, which a phased restart does not allow.
#
# Environment:
#   PROMFORK_SOCKET        set by promfork; without it nothing happens
#                          beyond one log line, and the app runs as before.
#   PROMFORK_METRICS_ADDR  address the metrics servers listen on (default
#                          all, unless promfork names one).
#   PROMFORK_RUBYLIB       directory holding promfork.rb (default ../ruby
#                          next to this file).
#   WEB_CONCURRENCY        workers (default 4).

$LOAD_PATH.unshift(File.expand_path(ENV['PROMFORK_RUBYLIB'] || File.join(__dir__, '..', 'ruby')))
require 'promfork'
require 'promfork/mmap'

workers Integer(ENV.fetch('WEB_CONCURRENCY', 4))
# Puma 5 preloads in cluster mode by default; a phased restart needs each
# worker to load the app itself.
preload_app! false
# A graceful stop on SIGTERM exits 0 (not 143), as promfork and systemd
# expect of a clean shutdown.
raise_exception_on_sigterm false

# In the master, before any fork.
Promfork::Mmap.setup if Promfork.enabled?

on_worker_boot do |index|
  # Runs in each new worker before it loads the app, also in the workers
  # of a phased restart.  The worker index is the preferred slot, so a
  # replaced worker keeps its `worker` label.  A failure here must not stop
  # the worker from serving requests: log and go on.
  begin
    Promfork::Mmap.start(slot: index) if Promfork.enabled?
  rescue StandardError, LoadError => e # LoadError: no prometheus-client-mmap
    Promfork.logger.error("worker #{index} runs without a metrics port: #{e.message}")
  end
end

# A graceful stop (phased restart, SIGTERM): the final scrape while the
# metrics thread still runs, then the worker's directory goes.
on_worker_shutdown { Promfork::Mmap.finish }
