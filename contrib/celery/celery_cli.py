"""Celery's command line as a script: python3 celery_cli.py -A tasks worker ...

Debian's python3-celery installs no ``celery`` program, and a worker
started as ``python3 -m celery`` cannot re-execute itself on SIGHUP
(Celery's restart runs sys.argv[0], there celery/__main__.py, as a plain
script, whose relative import fails).  Started through this file, HUP
works: promfork forwards it, Celery shuts the pool down warmly (every pool
process retires) and execs itself again under the same pid.
"""

from celery.__main__ import main

if __name__ == "__main__":
    main()
