# Keeps one process in front of Unicorn across USR2 upgrades, so that a
# supervisor such as promfork, which ends when its command ends, survives
# them (standard library only; Linux).
#
#   ruby herder.rb [--grace SECS] -- unicorn -c unicorn.conf.rb config.ru
#
# Unicorn upgrades by forking a new master from the old one; the old master
# must then be sent QUIT and exits.  Run directly under promfork, that exit
# would end promfork.  The herder runs the master and follows it through
# its pid file ($PROMFORK_UNICORN_PID, which contrib/unicorn/unicorn.conf.rb
# passes to Unicorn's `pid`):
#   USR2        to the master; once the new master's workers are forked,
#               QUIT to the old one (back to the old master if the new one
#               fails to come up within --grace seconds, default 60);
#   TERM        as QUIT to the current master: Unicorn's graceful stop, in
#               which workers finish their requests and retire (its own
#               TERM kills them at once);
#   INT, QUIT, HUP, USR1, TTIN, TTOU, WINCH   to the current master;
# and exits when the current master exits (with its status when it is the
# herder's own child).

require 'fileutils'
require 'tmpdir'

GRACE = (ARGV[0] == '--grace' ? (ARGV.shift && Float(ARGV.shift)) : 60.0)
ARGV.shift if ARGV[0] == '--'
abort('usage: herder.rb [--grace SECS] -- unicorn ARGS...') if ARGV.empty?

unless ENV['PROMFORK_UNICORN_PID']
  piddir = Dir.mktmpdir('promfork-unicorn-')
  ENV['PROMFORK_UNICORN_PID'] = File.join(piddir, 'unicorn.pid')
  at_exit { FileUtils.rm_rf(piddir) }
end
PIDFILE = ENV['PROMFORK_UNICORN_PID']

def log(msg)
  warn("herder: #{msg}")
end

def alive?(pid)
  Process.kill(0, pid)
  true
rescue Errno::ESRCH
  false
rescue Errno::EPERM
  true
end

def children(pid)
  File.read("/proc/#{pid}/task/#{pid}/children").split.map(&:to_i)
rescue SystemCallError
  []
end

def pidfile_pid
  Integer(File.read(PIDFILE).strip)
rescue SystemCallError, ArgumentError
  nil
end

def signal(pid, sig)
  Process.kill(sig, pid)
rescue Errno::ESRCH
  nil
end

# Waits up to secs for the block to be true, every 50 ms.
def wait_for(secs)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + secs
  until yield
    return false if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

    sleep 0.05
  end
  true
end

child = Process.spawn(*ARGV)
master = child
status = nil
queue = Queue.new
%w[USR2 TERM INT QUIT HUP USR1 TTIN TTOU WINCH].each do |sig|
  trap(sig) { queue << sig }
end

upgrade = lambda do
  old = master
  workers = children(old).size
  signal(old, 'USR2')
  fresh = nil
  ok = wait_for(GRACE) do
    p = pidfile_pid
    fresh = p if p && p != old && alive?(p)
    fresh && children(fresh).size >= workers
  end
  if ok
    log("upgraded: master #{old} -> #{fresh}; QUIT to #{old}")
    master = fresh
    signal(old, 'QUIT')
  else
    log("the new master did not come up within #{GRACE}s; keeping #{old}")
  end
end

loop do
  until queue.empty?
    sig = queue.pop
    case sig
    when 'USR2' then upgrade.call
    when 'TERM' then signal(master, 'QUIT')
    else signal(master, sig)
    end
  end
  # The first master is the herder's own child: reap it, upgraded or not.
  status ||= Process.wait2(child, Process::WNOHANG)&.last
  gone = master == child ? !status.nil? : !alive?(master)
  if gone
    # Its USR2 master may be the current one by now (a QUIT sent by hand).
    p = pidfile_pid
    if p && p != master && alive?(p)
      master = p
      next
    end
    break
  end
  sleep 0.1
end
exit(master == child && status ? (status.exitstatus || 128 + status.termsig) : 0)
