# Unicorn config: every worker serves its own /metrics on a port leased
# from promfork, and promfork publishes it as a scrape target.
#
#   promfork --port-range 9400-9463 --sd-file /etc/prometheus/promfork/app.json -- \
#       ruby /path/to/contrib/unicorn/herder.rb -- \
#       unicorn -c /path/to/contrib/unicorn/unicorn.conf.rb -l 0.0.0.0:8000 config.ru
#
# herder.rb stays promfork's child across USR2 upgrades (the new master is
# forked by the old one, which then exits); without USR2 it may be left out.
#
# Metrics: prometheus-client-mmap, one files directory per worker
# (contrib/ruby/promfork/mmap.rb).  Environment as in contrib/puma/puma.rb.

$LOAD_PATH.unshift(File.expand_path(ENV['PROMFORK_RUBYLIB'] || File.join(__dir__, '..', 'ruby')))
require 'promfork'
require 'promfork/mmap'

worker_processes Integer(ENV.fetch('WEB_CONCURRENCY', 4))
# herder.rb passes where the master's pid file goes; USR2 needs one.
pid ENV['PROMFORK_UNICORN_PID'] if ENV['PROMFORK_UNICORN_PID']

# In the master, before any fork (read again by a USR2 master).
Promfork::Mmap.setup if Promfork.enabled?

after_fork do |_server, worker|
  # In each new worker, before it loads the app (unless preload_app).
  # worker.nr is the preferred slot, so a replaced worker keeps its label.
  if Promfork.enabled?
    begin
      # retry_for: during a USR2 upgrade old and new workers overlap; if the
      # range cannot hold both, keep asking until the old ones are gone.
      Promfork::Mmap.start(slot: worker.nr, retry_for: 60)
      # QUIT ends a worker through exit, which runs at_exit (TERM and INT
      # do not: they are immediate).
      at_exit { Promfork::Mmap.finish }
    rescue StandardError, LoadError => e # LoadError: no prometheus-client-mmap
      Promfork.logger.error("worker #{worker.nr} runs without a metrics port: #{e.message}")
    end
  end
end
