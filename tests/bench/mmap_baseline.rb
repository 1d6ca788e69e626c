# The Ruby baseline for bench_fanout (BENCH_BASELINE=mmap): GitLab's
# prometheus-client-mmap (Debian's ruby-prometheus-client-mmap) read the
# way its multi-process exporters read it: one process summing every
# worker's files (Formats::Text.marshal_multiprocess, what its Rack
# exporter serves).
#
# Each worker process writes the same 1 000 counter series bench_fanout
# serves (10 families of 100 paths), then exits.  Timed with 16 workers'
# files, then again after RESTARTS more workers came and went: their files
# stay behind, as they do in production.  Prints one line per case, in
# multiproc_baseline.py's format:
#
#     multiproc FILES MEDIAN_MS

require 'fileutils'
require 'tmpdir'

DIR = Dir.mktmpdir('promfork-bench-mmap-')
ENV['prometheus_multiproc_dir'] = DIR
require 'prometheus/client'
require 'prometheus/client/formats/text'

FAMILIES = 10
PATHS = 100
Prometheus::Client.configure do |c|
  c.multiprocess_files_dir = DIR
  c.logger = Logger.new(IO::NULL)
end
COUNTERS = (0...FAMILIES).map do |f|
  Prometheus::Client.registry.counter(:"bench_family_#{f}", "Family #{f}.")
end

# One worker process: writes its series, then goes away.
def worker(w)
  pid = fork do
    COUNTERS.each_with_index do |c, f|
      PATHS.times { |p| c.increment({ path: "/api/v1/item/#{p}" }, w + f + p + 1) }
    end
    exit!(0)
  end
  Process.wait(pid)
  raise "worker #{w} failed" unless $?.success?
end

def time_collect(rounds)
  out = nil
  times = (1..rounds).map do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out = Prometheus::Client::Formats::Text.marshal_multiprocess(DIR)
    (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
  end
  series = out.scan(/^bench_family_/).size
  raise "series lost: #{series}" if series < FAMILIES * PATHS

  times.sort[times.size / 2]
end

workers = Integer(ARGV[0] || 16)
restarts = Integer(ARGV[1] || 256)
begin
  workers.times { |w| worker(w) }
  $stdout.printf("multiproc %d %.3f\n", workers, time_collect(20))
  $stdout.flush
  restarts.times { |w| worker(workers + w) }
  $stdout.printf("multiproc %d %.3f\n", workers + restarts, time_collect(5))
ensure
  FileUtils.rm_rf(DIR)
end
