# promfork with GitLab's prometheus-client-mmap (Debian's
# ruby-prometheus-client-mmap): every worker keeps its metric files in a
# directory of its own, one per promfork slot, and serves only those on its
# leased port.  Nothing piles up: a slot's directory is emptied when its
# next worker registers (promfork hands a slot out only once its previous
# process is gone) and removed when a worker exits gracefully.
#
#   Promfork::Mmap.setup              # in the master, before any fork
#   Promfork::Mmap.start(slot: index) # in each worker, after fork
#   Promfork::Mmap.finish             # in each worker, on a graceful exit
#
# The parent directory is $prometheus_multiproc_dir when set (a tmpfs is
# best), else a private temporary directory made by setup.

require 'fileutils'
require 'tmpdir'
require 'promfork'

module Promfork
  module Mmap
    MULTIPROC_ENV = 'prometheus_multiproc_dir' # prometheus-client-mmap's own
    OWNED_ENV = 'PROMFORK_MMAP_OWNED' # set to it when setup made it

    class << self
      attr_reader :dir

      # In the master: the parent of the workers' directories, exported so
      # that workers, and a master re-executed by Unicorn's USR2, inherit
      # it.  prometheus-client-mmap makes a temporary directory of its own
      # per process when the variable is not set: this keeps it from that.
      def setup
        base = ENV[MULTIPROC_ENV]
        if base.nil? || base.empty?
          base = Dir.mktmpdir('promfork-mmap-')
          ENV[MULTIPROC_ENV] = base
          ENV[OWNED_ENV] = base
        end
        master = Process.pid
        # A directory made here (by this master or the one that re-executed
        # into it) is empty once every worker removed its own: the last
        # master out removes it; rmdir leaves it to a newer master's
        # workers otherwise.  One the operator named stays.
        at_exit do
          Dir.rmdir(base) if Process.pid == master && ENV[OWNED_ENV] == base
        rescue SystemCallError
          nil
        end
        base
      end

      # In a worker: registers (slot: the server's worker index), points
      # prometheus-client-mmap at the slot's own directory and serves it.
      # Returns the lease, or nil without promfork (the library is then
      # left as the app configured it).
      # retry_for: see Promfork.start_http_server.
      def start(slot: nil, labels: nil, retry_for: 0)
        require 'prometheus/client'
        require 'prometheus/client/formats/text'

        Promfork.start_http_server(slot: slot, labels: labels, retry_for: retry_for,
                                   before_serve: method(:use_slot_dir)) do
          Prometheus::Client::Formats::Text.marshal_multiprocess(@dir)
        end
      end

      # On a graceful exit, once: the final scrape (retire), then the
      # directory goes.  Safe to call from several hooks and at_exit.
      def finish
        lease = Promfork.lease
        return if lease.nil? || @finished == Process.pid

        @finished = Process.pid
        Promfork.retire(lease)
        FileUtils.rm_rf(@dir) if @dir
      end

      private

      def use_slot_dir(lease)
        base = ENV[MULTIPROC_ENV]
        base = setup if base.nil? || base.empty?
        @dir = File.join(base, "worker-#{lease.worker}")
        FileUtils.mkdir_p(@dir, mode: 0o700)
        # Files left by the slot's previous process (killed, or from before
        # a restart): it is gone, its counts are promfork's to carry.
        Dir.glob(File.join(@dir, '*.db')).each { |f| File.unlink(f) }
        Prometheus::Client.configure { |c| c.multiprocess_files_dir = @dir }
        # Values created before now (preloaded app) move to the new files.
        Prometheus::Client.reinitialize_on_pid_change(force: true)
      end
    end
  end
end
