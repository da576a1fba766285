#!/usr/bin/python3
"""A scratch rspamd for tests (lib/rspamd's unit test, the MX end-to-end
test, `cluster/local up --rspamd`). Standard library only; run it with
Debian's /usr/bin/python3.

Debian's rspamd (3.4) runs as `rspamd -f` from a directory of its own,
never touching /etc/rspamd's local.d or a system instance:

  DIR/local/   LOCAL_CONFDIR: override.d rebinds the normal, controller
               and proxy workers to free 127.0.0.1 ports (count = 1 each;
               the proxy's upstream is our normal worker) and logs to a
               file; local.d/options.inc points DNS at --dns when given
  DIR/db/      DBDIR: the hyperscan databases (from the cache, below)
  DIR/run/     RUNDIR
  DIR/log/     LOGDIR: rspamd.log
  DIR/rspamd.json   what stop needs: pid, its start time, ports, url
Stopping removes DIR/db (a copy of the cache) and rspamd.json; the log
stays (a temp dir of the module's own goes whole).

No Redis: rspamd then disables Bayes, greylisting, ratelimit and history
by itself (they log that they are disabled). DNS is the system's resolver
(or --dns): a remote client with HELO and MAIL FROM domains costs ~20
lookups per message; where names do not resolve that adds symbols such
as HFILTER_*_NORES (a plain message from 192.0.2.1 scored 3.7, "no
action"), and a lookup that gets no answer costs rspamd's 1 s DNS
timeout. A loopback client without envelope domains costs none.

Start-up cost and the cache. rspamd compiles its regular expressions with
hyperscan the first time (measured 5-40 s, by machine and load, ~50-85 MB
in DBDIR) and reuses them when DBDIR has them (the next start answers
/ping in ~1 s). DBDIR is per instance (rspamd also keeps its sockets and
statistics there), so the databases live in a cache directory shared by
every run: $MAIL_RSPAMD_CACHE, else $XDG_CACHE_HOME/mail-rspamd, else
/var/tmp/mail-rspamd-cache; a subdirectory per rspamd binary (size and
mtime), since the databases depend on the version. A start copies the
cache into DIR/db under a shared flock; once the databases are loaded
(and again at stop) files the cache lacks are copied back, each through
a temporary name and rename(2), under an exclusive flock. Two tests
starting at once are therefore safe: at worst both compile.

Ready means GET /ping answers "pong" and (wait_hyperscan) the log says
the hyperscan database is loaded, so checks run at their steady speed.

Stopping is by PID: SIGTERM to rspamd's main process (checked against
the start time recorded at start, so a recycled PID is never signalled;
it stops its workers), then SIGKILL to whatever is left of its process
group (its own session, start_new_session: the PGID is the main PID,
which Linux does not hand out again while the group has a member). The
child is reaped when it is ours.

CLI:
  /usr/bin/python3 tests/support/rspamd.py start DIR [--dns IP:PORT]
      prints `url=http://127.0.0.1:PORT pid=N` once ready and leaves
      rspamd running (detached: stop it with `stop DIR`);
  /usr/bin/python3 tests/support/rspamd.py stop DIR
  /usr/bin/python3 tests/support/rspamd.py run DIR [--dns IP:PORT]
      the same line, then stays in the foreground until SIGTERM or SIGINT
      and stops rspamd; rspamd gets SIGTERM if this process dies
      (PR_SET_PDEATHSIG). What the C fixture (lib/rspamd) runs, itself
      with PR_SET_PDEATHSIG, so a crashed test leaves no rspamd behind.
Exit status 0, or 1 with the reason (and the log's tail) on stderr.

Module:
  with rspamd.Rspamd(dir=None, dns=None) as r:   # dir None: a temp dir
      r.url, r.pid, r.ports {"normal", "controller", "proxy"}, r.log_tail()
"""
import argparse
import ctypes
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

RSPAMD = "/usr/bin/rspamd"
READY_TIMEOUT_S = 180       # the first start compiles hyperscan
HYPERSCAN_TIMEOUT_S = 120   # after /ping answers
STOP_TIMEOUT_S = 15
BIND_TRIES = 3              # a port taken between our pick and rspamd's bind
CACHE_SUFFIXES = (".hs", ".hs.unser", ".hsmp", ".hsmc")
PR_SET_PDEATHSIG = 1

# the log lines that say a hyperscan database is in use: from main when
# the cache had it, from the normal worker after hs_helper compiled it
HS_LOADED = re.compile(r"hyperscan database of \d+ regexps has been loaded|"
                       r"\(normal\).*loading hyperscan expressions")
BIND_FAILED = re.compile(r"cannot bind|cannot listen|Address already in use")

WORKER_CONF = """\
# written by tests/support/rspamd.py
bind_socket = "127.0.0.1:{port}";
count = 1;
"""

PROXY_CONF = """\
# written by tests/support/rspamd.py
bind_socket = "127.0.0.1:{port}";
count = 1;
upstream "local" {{
  default = yes;
  hosts = "127.0.0.1:{normal}";
}}
"""

LOGGING_CONF = """\
# written by tests/support/rspamd.py
type = "file";
filename = "{dir}/log/rspamd.log";
level = "info";
"""

DNS_CONF = """\
# written by tests/support/rspamd.py
dns {{
  nameserver = ["{server}"];
}}
"""


def free_port():
    """A 127.0.0.1 port free now, below Linux's ephemeral range (32768-60999)
    so that what other processes get from bind(0) cannot take it before
    rspamd binds it (cluster/local.py does the same)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_dir():
    base = os.environ.get("MAIL_RSPAMD_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = os.path.join(xdg, "mail-rspamd") if xdg else "/var/tmp/mail-rspamd-cache"
    st = os.stat(RSPAMD)
    d = os.path.join(base, f"{st.st_size}-{int(st.st_mtime)}")
    os.makedirs(d, exist_ok=True)
    return d


class _Lock:
    """flock on CACHE/.lock: shared while copying out, exclusive while
    adding files."""

    def __init__(self, cache, exclusive):
        self.path = os.path.join(cache, ".lock")
        self.mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, self.mode)

    def __exit__(self, *exc):
        os.close(self.fd)


def _cacheable(name):
    return name.endswith(CACHE_SUFFIXES) and not name.startswith(".")


def cache_fetch(cache, db):
    if cache is None:
        return
    with _Lock(cache, exclusive=False):
        for name in os.listdir(cache):
            if _cacheable(name):
                shutil.copyfile(os.path.join(cache, name), os.path.join(db, name))


def cache_store(cache, db):
    """Copy what the cache lacks from db (whole files: rspamd writes each
    database under a temporary name and renames it)."""
    if cache is None:
        return
    try:
        names = [n for n in os.listdir(db) if _cacheable(n)]
    except OSError:
        return
    with _Lock(cache, exclusive=True):
        have = set(os.listdir(cache))
        for name in names:
            if name in have:
                continue
            tmp = os.path.join(cache, f".{name}.{os.getpid()}.tmp")
            try:
                shutil.copyfile(os.path.join(db, name), tmp)
                os.rename(tmp, os.path.join(cache, name))
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _start_time(pid):
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None when the
    process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _group(pgid):
    """PIDs whose process group is pgid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(d))
    return out


def _pdeathsig():
    """A preexec_fn: SIGTERM to the child when its parent dies. The libc
    function is looked up here, before fork."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec():
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return preexec


class Rspamd:
    """A scratch rspamd in dir (made if missing; None: a temp dir, removed
    at stop). dns: "IP:PORT" for rspamd's resolver (None: the system's).
    die_with_parent: rspamd gets SIGTERM when the thread that started it
    ends (PR_SET_PDEATHSIG); off for the detached CLI start."""

    def __init__(self, dir=None, dns=None, die_with_parent=True, wait_hyperscan=True):
        self.own_dir = dir is None
        self.dir = os.path.abspath(dir or tempfile.mkdtemp(prefix="mail-test-rspamd-"))
        self.dns = dns
        self.die_with_parent = die_with_parent
        self.wait_hyperscan = wait_hyperscan
        self.proc = None
        self.pid = None
        self.start_time = None
        self.ports = {}
        self.url = None
        self.cache = None
        self.stored = False

    # ---- configuration ----

    def _write(self, rel, text):
        path = os.path.join(self.dir, rel)
        with open(path, "w") as f:
            f.write(text)

    def _configure(self):
        for sub in ("local/override.d", "local/local.d", "db", "run", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.ports = {k: free_port() for k in ("normal", "controller", "proxy")}
        self._write("local/override.d/worker-normal.inc",
                    WORKER_CONF.format(port=self.ports["normal"]))
        self._write("local/override.d/worker-controller.inc",
                    WORKER_CONF.format(port=self.ports["controller"]))
        self._write("local/override.d/worker-proxy.inc",
                    PROXY_CONF.format(port=self.ports["proxy"], normal=self.ports["normal"]))
        self._write("local/override.d/logging.inc", LOGGING_CONF.format(dir=self.dir))
        if self.dns:
            self._write("local/local.d/options.inc", DNS_CONF.format(server=self.dns))
        self.url = f"http://127.0.0.1:{self.ports['normal']}"

    def _argv(self):
        argv = [RSPAMD, "-f"]
        if os.geteuid() == 0:   # rspamd refuses root workers without -u/-g
            argv += ["-u", "root", "-g", "root"]
        for var, sub in (("LOCAL_CONFDIR", "local"), ("DBDIR", "db"), ("RUNDIR", "run"),
                         ("LOGDIR", "log")):
            argv += ["--var", f"{var}={os.path.join(self.dir, sub)}"]
        return argv

    # ---- start ----

    def log_path(self):
        return os.path.join(self.dir, "log", "rspamd.log")

    def log_tail(self, n=20):
        out = []
        for path in (self.log_path(), os.path.join(self.dir, "stdout")):
            try:
                with open(path, errors="replace") as f:
                    out += f.readlines()[-n:]
            except OSError:
                pass
        return "".join(out)

    def _log_has(self, pattern):
        try:
            with open(self.log_path(), errors="replace") as f:
                return pattern.search(f.read()) is not None
        except OSError:
            return False

    def _ping(self):
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return r.status == 200 and r.read().strip() == b"pong"
        except OSError:
            return False

    def _spawn(self):
        for name in ("rspamd.log",):
            try:
                os.unlink(os.path.join(self.dir, "log", name))
            except OSError:
                pass
        out = open(os.path.join(self.dir, "stdout"), "wb")
        try:
            self.proc = subprocess.Popen(
                self._argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_pdeathsig() if self.die_with_parent else None)
        finally:
            out.close()
        self.pid = self.proc.pid
        self.start_time = _start_time(self.pid)

    def start(self, timeout=READY_TIMEOUT_S):
        """Start and wait until ready; returns self. Raises RuntimeError."""
        os.makedirs(self.dir, exist_ok=True)
        try:
            self.cache = cache_dir()
        except OSError as e:   # no cache: every start compiles
            print(f"rspamd.py: no cache directory ({e}); going on without",
                  file=sys.stderr)
            self.cache = None
        for attempt in range(BIND_TRIES):
            self._configure()
            db = os.path.join(self.dir, "db")
            cache_fetch(self.cache, db)
            self._spawn()
            deadline = time.monotonic() + timeout
            why = None
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    why = f"rspamd exited {self.proc.returncode}"
                    break
                if self._ping():
                    break
                time.sleep(0.1)
            else:
                why = f"rspamd not answering /ping after {timeout} s"
            if why is None:
                break
            bind = self._log_has(BIND_FAILED)
            tail = self.log_tail()
            self._kill()
            if not bind or attempt == BIND_TRIES - 1:
                raise RuntimeError(f"{why}: {tail}")
        if self.wait_hyperscan:
            deadline = time.monotonic() + HYPERSCAN_TIMEOUT_S
            while not self._log_has(HS_LOADED):
                if self.proc.poll() is not None:
                    tail = self.log_tail()
                    self._kill()
                    raise RuntimeError(f"rspamd exited {self.proc.returncode}: {tail}")
                if time.monotonic() > deadline:
                    print(f"rspamd.py: no hyperscan database loaded after "
                          f"{HYPERSCAN_TIMEOUT_S} s; going on", file=sys.stderr)
                    break
                time.sleep(0.2)
            else:
                cache_store(self.cache, os.path.join(self.dir, "db"))
                self.stored = True
        self._write("rspamd.json", json.dumps({
            "pid": self.pid, "start_time": self.start_time, "url": self.url,
            "ports": self.ports, "cache": self.cache}) + "\n")
        return self

    # ---- stop ----

    def _alive(self):
        return self.pid is not None and _start_time(self.pid) == self.start_time

    def _kill(self):
        """SIGTERM the main process, wait, SIGKILL what is left of its
        group; reap our child."""
        if self.pid is None:
            return
        if self._alive():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._alive() and time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        # the group is the main process's own (a new session): its PGID is
        # its PID, and nothing else uses that number while any member lives
        for _ in range(50):
            left = _group(self.pid)
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        self.pid = None

    def stop(self):
        if self.pid is not None and self.cache and not self.stored:
            cache_store(self.cache, os.path.join(self.dir, "db"))
        self._kill()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            # the log stays; the databases are a copy of the cache
            shutil.rmtree(os.path.join(self.dir, "db"), ignore_errors=True)
            try:
                os.unlink(os.path.join(self.dir, "rspamd.json"))
            except OSError:
                pass

    @classmethod
    def attach(cls, dir):
        """The instance a detached `start DIR` left running."""
        r = cls(dir=dir, die_with_parent=False)
        r.own_dir = False
        with open(os.path.join(r.dir, "rspamd.json")) as f:
            info = json.load(f)
        r.pid, r.start_time = info["pid"], info["start_time"]
        r.url, r.ports, r.cache = info["url"], info["ports"], info.get("cache")
        return r

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Stop(Exception):
    """SIGTERM or SIGINT in `run` mode, also while still starting."""


def _stop_signal(*_):
    raise _Stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("start", "stop", "run"))
    ap.add_argument("dir")
    ap.add_argument("--dns", help="IP:PORT of the DNS server rspamd asks")
    args = ap.parse_args()
    if args.command == "stop":
        try:
            r = Rspamd.attach(args.dir)
        except (OSError, ValueError, KeyError) as e:
            print(f"rspamd.py: nothing to stop in {args.dir}: {e}", file=sys.stderr)
            return 1
        r.stop()
        return 0
    r = Rspamd(dir=args.dir, dns=args.dns, die_with_parent=args.command == "run")
    if args.command == "run":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stop_signal)
    try:
        r.start()
        print(f"url={r.url} pid={r.pid}", flush=True)
        if args.command == "start":
            return 0
        while r.proc.poll() is None:
            time.sleep(0.2)
        print(f"rspamd.py: rspamd exited {r.proc.returncode}: {r.log_tail()}",
              file=sys.stderr)
        status = 1
    except _Stop:
        status = 0
    except RuntimeError as e:
        print(f"rspamd.py: {e}", file=sys.stderr)
        return 1
    # a second signal while stopping must not cut the stop short
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    r.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
