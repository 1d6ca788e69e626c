# Client for promfork's registration API (Ruby standard library only).
#
# promfork exports PROMFORK_SOCKET, the path of a Unix socket that speaks
# HTTP/1.1 + JSON.  Each worker process registers itself there and gets a
# lease: a stable `worker` slot number and the TCP port on which it serves
# its own /metrics.  The lease ends by itself when the process exits.
#
#   require 'promfork'
#   lease = Promfork.start_http_server(slot: index) { exposition_text }
#   # lease is nil when the app runs without promfork
#
# Without PROMFORK_SOCKET, register and start_http_server return nil
# (logged once), so the same app runs unchanged without promfork.  Same
# behaviour as contrib/python/promfork.py.

require 'json'
require 'logger'
require 'socket'

module Promfork
  SOCKET_ENV = 'PROMFORK_SOCKET'
  ADDR_ENV = 'PROMFORK_METRICS_ADDR' # listen address when promfork names none
  CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
  RETIRE_TIMEOUT = 2.0 # a worker's exit is never held up longer
  HEAD_MAX = 8192      # bytes of a scrape request's head we read

  # promfork answered an error or could not be reached; status is the HTTP
  # status (nil when the socket could not be used).
  class Error < StandardError
    attr_reader :status

    def initialize(message, status = nil)
      super(message)
      @status = status
    end
  end

  # One registered worker.  bind: the address promfork wants the metrics
  # served on (nil: the caller's choice).
  Lease = Struct.new(:worker, :port, :target, :pid, :bind, :labels, :created,
                     :socket_path, keyword_init: true)

  @lock = Mutex.new
  @disabled_logged = false
  @served = nil # [pid, lease, server] of this process' metrics server

  class << self
    attr_writer :logger

    def logger
      @logger ||= Logger.new($stderr, progname: 'promfork')
    end

    def socket_path(path = nil)
      path = ENV[SOCKET_ENV] if path.nil? || path.empty?
      path.nil? || path.empty? ? nil : path
    end

    # True when a promfork socket is known; logs once per process when not
    # (a master that calls it before forking keeps its workers quiet).
    def enabled?(path = nil)
      return true if socket_path(path)

      unless @disabled_logged
        @disabled_logged = true
        logger.info("#{SOCKET_ENV} is not set: running without promfork " \
                    '(no per-worker metrics port)')
      end
      false
    end

    # Registers pid (default: this process) and returns its Lease, or nil
    # without promfork.  slot: the preferred slot (the server's worker
    # index); a daemon that does not know the field yet is asked again
    # without it.  Raises Promfork::Error when promfork refuses (403, 503 =
    # range exhausted, ...) or cannot be reached.
    def register(labels: nil, pid: nil, slot: nil, socket_path: nil,
                 timeout: 5.0)
      path = self.socket_path(socket_path)
      return nil unless enabled?(path)

      body = {}
      body['pid'] = Integer(pid) unless pid.nil?
      body['labels'] = labels.to_h { |k, v| [k.to_s, v.to_s] } if labels && !labels.empty?
      body['slot'] = Integer(slot) unless slot.nil?
      begin
        status, doc = request(path, 'POST', '/v1/workers', body, timeout)
      rescue Error => e
        raise unless e.status == 400 && body.key?('slot') && e.message.include?('slot')

        # A daemon from before preferred slots: it makes its usual choice.
        body.delete('slot')
        status, doc = request(path, 'POST', '/v1/workers', body, timeout)
      end
      lease_from(doc, status, pid, body['labels'], path)
    end

    # Asks promfork for a final scrape before a graceful exit; waits at
    # most RETIRE_TIMEOUT.  True when promfork took it, false otherwise (a
    # daemon without retire answers 404 or 405: nothing to do).  Never
    # raises: it runs on the way out.
    def retire(lease, timeout: RETIRE_TIMEOUT)
      return false if lease.nil?

      path = socket_path(lease.socket_path)
      return false if path.nil?

      request(path, 'POST', "/v1/workers/#{lease.worker}/retire", nil,
              [timeout, RETIRE_TIMEOUT].min)
      true
    rescue Error => e
      logger.warn("retire of worker #{lease.worker}: #{e.message}") unless [404, 405].include?(e.status)
      false
    end

    # Ends a lease early (promfork also ends it when the process exits).
    # True if released, false if it was already gone (404).
    def release(lease, socket_path: nil, timeout: 5.0)
      return false if lease.nil?

      path = self.socket_path(socket_path || lease.socket_path)
      return false if path.nil?

      request(path, 'DELETE', "/v1/workers/#{lease.worker}", nil, timeout)
      true
    rescue Error => e
      return false if e.status == 404

      raise
    end

    # Every current lease (GET /v1/workers); [] without promfork.
    def leases(socket_path: nil, timeout: 5.0)
      path = self.socket_path(socket_path)
      return [] if path.nil?

      request(path, 'GET', '/v1/workers', nil, timeout)[1] || []
    end

    # Registers this process and serves what the block returns (the text
    # exposition) on its port, from a thread.  Call it in each worker after
    # fork, never in a pre-fork master (threads do not survive fork).
    # Calling it again in the same process returns the same lease; nil
    # without promfork.  addr: listen address (default: the one promfork
    # names, else $PROMFORK_METRICS_ADDR, else all interfaces).
    # before_serve: called with the lease once registered, before the port
    # is served (e.g. to point the metrics library at the slot's files).
    # retry_for: when the range is exhausted (503, e.g. while old and new
    # workers overlap in a reload), return nil and keep asking from a
    # thread, once a second for that many seconds.
    def start_http_server(labels: nil, slot: nil, addr: nil, socket_path: nil,
                          timeout: 5.0, before_serve: nil, retry_for: 0, &body)
      raise ArgumentError, 'start_http_server needs a block that returns the metrics' unless body

      args = { labels: labels, slot: slot, addr: addr, socket_path: socket_path,
               timeout: timeout, before_serve: before_serve, body: body }
      @lock.synchronize do
        return @served[1] if @served && @served[0] == Process.pid

        begin
          start_locked(**args)
        rescue Error => e
          raise unless e.status == 503 && retry_for.positive?

          logger.warn("#{e.message}; retrying for #{retry_for}s in the background")
          @served = [Process.pid, nil, nil] # the retry thread owns this process now
          Thread.new { retry_start(Process.pid, retry_for, args) }
          nil
        end
      end
    end

    # The lease of this process' metrics server, or nil.
    def lease
      @served && @served[0] == Process.pid ? @served[1] : nil
    end

    # Serves the block's text on lease.port from a thread of its own;
    # returns the TCPServer.  Any path but /metrics and / is a 404.
    def serve(lease, addr: nil, &body)
      host = addr || lease.bind || env_addr || '0.0.0.0'
      server = TCPServer.new(host, lease.port)
      server.close_on_exec = true
      Thread.new do
        Thread.current.name = 'promfork-metrics' if Thread.current.respond_to?(:name=)
        loop do
          client = begin
            server.accept
          rescue IOError, SystemCallError
            break # closed
          end
          Thread.new(client) { |c| answer(c, body) }
        end
      end
      logger.info("worker #{lease.worker} (pid #{Process.pid}) serving metrics " \
                  "on #{host}:#{lease.port} (target #{lease.target})")
      server
    end

    private

    # Registers and serves; the caller holds @lock.
    def start_locked(labels:, slot:, addr:, socket_path:, timeout:, before_serve:, body:)
      lease = register(labels: labels, slot: slot, socket_path: socket_path,
                       timeout: timeout)
      return nil if lease.nil?

      begin
        before_serve&.call(lease)
        server = serve(lease, addr: addr, &body)
      rescue StandardError
        # Do not keep a slot whose port nobody serves.
        begin
          release(lease)
        rescue Error
          nil
        end
        raise
      end
      @served = [Process.pid, lease, server]
      lease
    end

    def retry_start(pid, secs, args)
      deadline = now + secs
      while now < deadline
        sleep 1
        @lock.synchronize do
          return if Process.pid != pid || @served.nil? || @served[0] != pid || @served[1]

          start_locked(**args)
          return
        rescue Error => e
          next if e.status == 503

          logger.error("giving up on a metrics port: #{e.message}")
          @served = nil
          return
        end
      end
      logger.error("giving up on a metrics port: port range still exhausted after #{secs}s")
      @lock.synchronize { @served = nil if @served && @served[0] == pid && @served[1].nil? }
    end

    def env_addr
      a = ENV[ADDR_ENV]
      a.nil? || a.empty? ? nil : a
    end

    def lease_from(doc, status, pid, labels, path)
      worker = doc.is_a?(Hash) ? doc['worker'] : nil
      port = doc.is_a?(Hash) ? doc['port'] : nil
      unless worker.is_a?(Integer) && port.is_a?(Integer)
        raise Error.new("promfork: POST /v1/workers: malformed answer #{doc.inspect}", status)
      end

      bind = doc['bind']
      bind = nil unless bind.is_a?(String) && !bind.empty?
      Lease.new(worker: worker, port: port,
                target: doc['target'] || "localhost:#{port}",
                pid: (doc['pid'] || pid || Process.pid).to_i, bind: bind,
                labels: doc['labels'] || labels || {}, created: status == 201,
                socket_path: path)
    end

    # One request on the Unix socket, within timeout seconds in all;
    # returns [status, parsed JSON or nil]; raises Error on >= 400.
    def request(path, method, url, body, timeout)
      what = "#{method} #{url}"
      deadline = now + timeout
      data = body.nil? ? '' : JSON.generate(body)
      head = "#{method} #{url} HTTP/1.1\r\nHost: promfork\r\n" \
             "Accept: application/json\r\nConnection: close\r\n"
      head += "Content-Type: application/json\r\n" unless body.nil?
      head += "Content-Length: #{data.bytesize}\r\n\r\n"
      raw = exchange(unix_path(path), head + data, deadline)
      status, payload = parse_response(raw)
      doc = begin
        payload.strip.empty? ? nil : JSON.parse(payload)
      rescue JSON::ParserError
        nil
      end
      if status >= 400
        msg = doc.is_a?(Hash) && doc['error'] ? doc['error'] : payload.strip
        raise Error.new("promfork: #{what}: #{status} #{msg}", status)
      end
      [status, doc]
    rescue SystemCallError, IOError, SocketError => e
      raise Error, "promfork at #{path}: #{what}: #{e.message}"
    end

    def unix_path(path)
      path.start_with?('@') ? "\0#{path[1..]}" : path
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # Sends req and reads until promfork closes (Connection: close).
    def exchange(path, req, deadline)
      sock = Socket.new(:UNIX, :STREAM)
      begin
        sock.connect(Socket.pack_sockaddr_un(path))
        off = 0
        while off < req.bytesize
          n = sock.write_nonblock(req.byteslice(off..), exception: false)
          if n == :wait_writable
            wait(sock, :write, deadline)
          else
            off += n
          end
        end
        buf = +''
        loop do
          chunk = sock.read_nonblock(65_536, exception: false)
          case chunk
          when :wait_readable then wait(sock, :read, deadline)
          when nil then break
          else
            buf << chunk
            raise Error, 'answer over 1 MiB' if buf.bytesize > 1 << 20
          end
        end
        buf
      ensure
        sock.close
      end
    end

    def wait(io, dir, deadline)
      left = deadline - now
      ok = left.positive? && (dir == :read ? io.wait_readable(left) : io.wait_writable(left))
      raise Error, 'timed out' unless ok
    end

    def parse_response(raw)
      head, payload = raw.split("\r\n\r\n", 2)
      m = %r{\AHTTP/1\.[01] (\d{3})}.match(head.to_s)
      raise Error, "not an HTTP answer: #{raw[0, 64].inspect}" unless m

      if (cl = head[/^content-length:\s*(\d+)/i, 1])
        payload = payload.to_s.byteslice(0, cl.to_i)
      end
      [m[1].to_i, payload.to_s]
    end

    # Answers one scrape: reads the request head (bounded in size and
    # time), then sends the block's text and closes.
    def answer(client, body)
      deadline = now + 5.0
      head = +''
      until head.include?("\r\n\r\n")
        chunk = client.read_nonblock(4096, exception: false)
        if chunk == :wait_readable
          wait(client, :read, deadline)
          next
        end
        return if chunk.nil? || head.bytesize > HEAD_MAX

        head << chunk
      end
      target = head[%r{\A[A-Z]+ (\S+) HTTP/1\.[01]\r\n}, 1]
      path = target.to_s.split('?', 2)[0]
      if path == '/metrics' || path == '/'
        text = body.call.to_s
        status = '200 OK'
        type = CONTENT_TYPE
      else
        text = "not found: try /metrics\n"
        status = '404 Not Found'
        type = 'text/plain; charset=utf-8'
      end
      client.write("HTTP/1.1 #{status}\r\nContent-Type: #{type}\r\n" \
                   "Content-Length: #{text.bytesize}\r\nConnection: close\r\n\r\n", text)
    rescue Error, SystemCallError, IOError
      nil # a client that went away or stalled: nothing to tell it
    rescue StandardError => e
      logger.warn("metrics request: #{e.class}: #{e.message}")
    ensure
      client.close
    end
  end
end
