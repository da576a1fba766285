#!/usr/bin/env python3
"""Benchmark (not a test): IMAP logins per second, our frontend against
Debian's Dovecot on the same box.

Each client opens a connection, reads the greeting, sends `LOGIN user
password`, waits for the tagged OK, sends `LOGOUT`, reads the tagged OK and
closes; --concurrency clients (default 1,10,50) do that in a loop for
--duration seconds (default 10) per server and level. Both servers run at
once and take turns, in --rounds slices per level (default 2: ours,
Dovecot, ours, Dovecot), so that the noise of a shared machine falls on
both. It prints logins/s (logins done, divided by the time from a
slice's start to the end of its last login: clients start no login after
the slice's --duration/--rounds seconds, and what the server still holds
then is worked off at full speed), LOGIN latency (p50, p99), failures,
the CPU of the server (ms per login and % of one core; more than 100%
means it used both cores), and the ratio ours/Dovecot. The project's
target is at least 5x Dovecot's logins/s.

Both sides pay the same argon2id: the user's hash is read back from etcd
(what `mailctl user add` stored: libsodium crypto_pwhash_str, interactive
limits, m=64 MiB t=2 p=1) and written into Dovecot's passwd-file as
{ARGON2ID}; Dovecot verifies it with libsodium as well. (`--dovecot-hash
doveadm` uses `doveadm pw -s ARGON2ID` instead, which gives t=3, 1.5x the
work.)

Ours: a local cluster on free ports in a temporary state dir (1 store and
1 queue node; logins touch etcd and the frontend only), plain IMAP from
loopback (plaintext LOGIN is allowed from loopback), binaries from
$MAIL_BIN_DIR or --bin-dir. Every LOGIN reads the user's record from
etcd and verifies argon2id on the libuv thread pool (4 threads by default,
UV_THREADPOOL_SIZE); the frontend has no authentication cache yet.

Dovecot (apt-get install -y dovecot-imapd; not started by the package
here): `dovecot -F -c DIR/dovecot.conf` from a scratch directory, on a free
127.0.0.1 port, as root (its login processes run as dovenull, the mail
processes as nobody), with:
  ssl = no (yes with --imaps), disable_plaintext_auth = no
  passdb passwd-file (one user, {ARGON2ID}), userdb static
  service imap-login { service_count = 0; process_min_avail = 2 }  (high-performance mode)
  auth_cache_size = 10M, auth_cache_ttl = 60s (auth_cache_negative_ttl left at 1h)
  protocol imap { mail_max_userip_connections = 1000 }  (the default 10 would refuse
      the 11th concurrent session of one user from one address)
Two things about Dovecot 2.3's cache, checked by the script: the
passwd-file passdb defines no cache key, so the cache is never consulted
(SIGUSR2 to the auth process logs "Authentication cache hits 0/0"; the
script prints that line); and even a cache hit (SQL, LDAP passdbs) verifies
the password against the cached hash, argon2id again. The verification
runs in the single auth process: one core at most. Every login also forks
an imap process (Dovecot's post-login design). At the end Dovecot is
stopped by its PID and the directory removed.

--imaps adds the same comparison over implicit TLS (our IMAPS port;
Dovecot's imaps listener with the cluster's development certificate), one
full TLS 1.3 handshake per login.

Standard library only. It never fails on timing.

  python3 tests/bench/imap_logins.py
  python3 tests/bench/imap_logins.py --concurrency 1,10 --duration 5
  python3 tests/bench/imap_logins.py --imaps
"""
import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402

TENANT = "example.test"
USER = "bench@example.test"
PASSWORD = "bench-login-pw"
TICK = os.sysconf("SC_CLK_TCK")


def parse_args():
    ap = argparse.ArgumentParser(
        description="IMAP logins per second (LOGIN then LOGOUT per connection): our "
                    "frontend against Debian's Dovecot, both paying argon2id.",
        epilog="Prints figures; never fails on timing. See the module docstring for the "
               "Dovecot configuration.")
    ap.add_argument("--concurrency", default="1,10,50",
                    help="comma-separated concurrent clients (default 1,10,50)")
    ap.add_argument("--duration", type=float, default=10.0,
                    help="seconds per server and level (default 10)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="slices per server and level, taken in turns (default 2)")
    ap.add_argument("--imaps", action="store_true",
                    help="also compare over implicit TLS (IMAPS)")
    ap.add_argument("--no-dovecot", action="store_true", help="measure our frontend only")
    ap.add_argument("--dovecot-hash", choices=("ours", "doveadm"), default="ours",
                    help="Dovecot's hash: the one mailctl stored (default) or doveadm pw's")
    ap.add_argument("--bin-dir", default=os.environ.get("MAIL_BIN_DIR",
                                                        os.path.join(ROOT, "build", "bin")))
    args = ap.parse_args()
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x]
    if not args.concurrency or min(args.concurrency) <= 0 or args.duration <= 0 \
            or args.rounds <= 0:
        ap.error("--concurrency, --duration and --rounds must be positive")
    return args


# ---- CPU accounting ----------------------------------------------------

def stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, rest = f.read().rsplit(") ", 1)
    except (OSError, ValueError):
        return None
    return head.split(" (", 1)[1], rest.split()


def proc_cpu(pid, children=False):
    """utime+stime (plus cutime+cstime: reaped children) in seconds."""
    st = stat_fields(pid)
    if st is None:
        return 0.0
    f = st[1]
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / TICK


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat_fields(d)
            if st is not None and int(st[1][1]) == pid:
                out.append((int(d), st[0]))
    return out


class Server:
    """One side of the comparison: a name, ports, and how to read its CPU."""

    def __init__(self, name, port, tls_port, cpu_fn, detail_fn=None):
        self.name, self.port, self.tls_port = name, port, tls_port
        self.cpu, self.detail = cpu_fn, detail_fn


# ---- the client ------------------------------------------------------------

def read_tagged(f, tag):
    """Lines up to the tagged reply of tag; returns that line."""
    while True:
        line = f.readline()
        if not line:
            raise OSError("connection closed")
        if line.startswith(tag + b" "):
            return line


def login_once(port, ctx):
    """One connection: greeting, LOGIN, LOGOUT. Returns LOGIN latency (s)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    s = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    try:
        f = s.makefile("rb")
        greeting = f.readline()
        if not greeting.startswith(b"* OK"):
            raise OSError(f"greeting {greeting[:60]!r}")
        t0 = time.perf_counter()
        s.sendall(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
        line = read_tagged(f, b"a")
        dt = time.perf_counter() - t0
        if not line.startswith(b"a OK"):
            raise OSError(f"LOGIN: {line[:80]!r}")
        s.sendall(b"b LOGOUT\r\n")
        line = read_tagged(f, b"b")
        if not line.startswith(b"b OK"):
            raise OSError(f"LOGOUT: {line[:80]!r}")
        f.close()
        return dt
    finally:
        s.close()


def measure(server, conc, duration, tls, cafile):
    """One slice: conc clients log in and out for duration seconds. Returns
    the raw figures (summed over slices by combine())."""
    port = server.tls_port if tls else server.port
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=cafile)
    lat, done, fails, lock = [], [], [], threading.Lock()
    deadline = [0.0]

    def client():
        while time.monotonic() < deadline[0]:
            try:
                dt = login_once(port, ctx)
                with lock:
                    lat.append(dt)
                    done.append(time.monotonic())
            except (OSError, ssl.SSLError) as e:
                with lock:
                    fails.append(repr(e)[:120])
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(conc)]
    cpu0 = server.cpu()
    d0 = server.detail() if server.detail else {}
    t0 = time.monotonic()
    deadline[0] = t0 + duration
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = server.cpu() - cpu0
    d1 = server.detail() if server.detail else {}
    # wall runs to the last login's end: no client starts one after the
    # deadline, and the logins the server still holds then are worked off at
    # full speed (Dovecot's auth process even answers a whole batch at once)
    return {"server": server.name, "tls": tls, "conc": conc, "lat": lat, "fails": fails,
            "in_window": sum(1 for t in done if t <= deadline[0]), "duration": duration,
            "wall": wall, "cpu": cpu, "detail": {k: d1[k] - d0.get(k, 0.0) for k in d1},
            "loads": [os.getloadavg()[0]]}


def combine(slices):
    """The figures of one server and level over its slices."""
    r = dict(slices[0])
    for k in ("lat", "fails", "loads"):
        r[k] = [x for sl in slices for x in sl[k]]
    for k in ("in_window", "duration", "wall", "cpu"):
        r[k] = sum(sl[k] for sl in slices)
    r["detail"] = {k: sum(sl["detail"][k] for sl in slices) for k in slices[0]["detail"]}
    lat = sorted(r["lat"])
    n = r["n"] = len(lat)
    r["rate"] = n / r["wall"]
    r["p50"] = lat[n // 2] * 1000 if n else float("nan")
    r["p99"] = lat[min(n - 1, int(0.99 * n))] * 1000 if n else float("nan")
    r["cpu_pct"] = 100 * r["cpu"] / r["wall"]
    r["cpu_ms"] = 1000 * r["cpu"] / max(n, 1)
    r["load"] = "%.1f" % max(r["loads"])
    r["detail"] = ", ".join(f"{k} {100 * v / r['wall']:.0f}%" for k, v in r["detail"].items())
    return r


# ---- Dovecot ----------------------------------------------------------------

DOVECOT_CONF = """\
# scratch configuration written by tests/bench/imap_logins.py
base_dir = {d}/run
state_dir = {d}/state
instance_name = mail-bench-dovecot
listen = 127.0.0.1
protocols = imap
ssl = {ssl}
{ssl_files}disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {d}/dovecot.log
mail_location = maildir:~/Maildir
auth_cache_size = 10M
auth_cache_ttl = 60s
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
  service_count = 0
  process_min_avail = 2
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
"""


class Dovecot:
    def __init__(self, hash_str, tls, tls_dir):
        self.bin = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.dir = tempfile.mkdtemp(prefix="mail-bench-dovecot-")
        os.chmod(self.dir, 0o755)   # dovenull and nobody must reach run/ and home/
        self.port = local.free_port()
        self.tls_port = local.free_port() if tls else 0
        d = self.dir
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(d, sub))
        os.chown(os.path.join(d, "home"), 65534, 65534)
        with open(os.path.join(d, "passwd"), "w") as f:
            f.write(f"{USER}:{{ARGON2ID}}{hash_str}::::::\n")
        os.chmod(os.path.join(d, "passwd"), 0o644)
        ssl_files = ""
        if tls:
            ssl_files = (f"ssl_cert = <{tls_dir}/frontend.pem\n"
                         f"ssl_key = <{tls_dir}/frontend.key\n")
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(d=d, ssl="yes" if tls else "no", ssl_files=ssl_files,
                                        port=self.port, tls_port=self.tls_port))
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.dir, "stdout"), "wb")
        self.proc = subprocess.Popen([self.bin, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {self.log_tail()}")
            if local.port_open(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"dovecot not listening after 15 s: {self.log_tail()}")

    def log_tail(self, n=10):
        out = []
        for name in ("stdout", "dovecot.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f.readlines()[-n:]
            except OSError:
                pass
        return "".join(out)

    def cpu(self):
        """The master and its live children, plus what reaped children used
        (the master's cutime/cstime): imap processes come and go."""
        if self.proc is None:
            return 0.0
        pid = self.proc.pid
        return proc_cpu(pid, children=True) + sum(proc_cpu(c) for c, _ in children_of(pid))

    def detail(self):
        """CPU seconds of the auth process and of the imap-login processes."""
        out = {"auth": 0.0, "imap-login": 0.0}
        for c, comm in children_of(self.proc.pid):
            if comm in out:
                out[comm] += proc_cpu(c)
        return out

    def cache_stats(self):
        """Ask the auth process for its cache statistics (SIGUSR2) and return
        the 'cache hits' line of the log."""
        for c, comm in children_of(self.proc.pid):
            if comm == "auth":
                os.kill(c, signal.SIGUSR2)
        time.sleep(0.5)
        lines = [ln.strip() for ln in self.log_tail(50).splitlines()
                 if "Authentication cache hits" in ln]
        return lines[-1] if lines else "(no cache statistics in the log)"

    def stop(self):
        if self.proc is not None:
            kids = [c for c, _ in children_of(self.proc.pid)]
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            # the master stops its children; anything left (by PID) is killed
            time.sleep(0.3)
            for c in kids:
                st = stat_fields(c)
                if st is not None and st[1][1] in ("1", str(self.proc.pid)):
                    try:
                        os.kill(c, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def hash_from_etcd(c, user):
    local_part, domain = user.split("@")
    value = c.etcd_get(f"/mail/v1/users/{domain}/{local_part}")
    if value is None:
        raise RuntimeError(f"no record for {user} in etcd")
    return json.loads(value)["hash"]


def doveadm_hash():
    r = subprocess.run(["doveadm", "pw", "-s", "ARGON2ID", "-p", PASSWORD],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().split("}", 1)[1]


# ---- main -------------------------------------------------------------------

def commit():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def show(r):
    detail = f"; {r['detail']}" if r["detail"] else ""
    print(f"  {r['server']:<8}{' IMAPS' if r['tls'] else ' IMAP '} c={r['conc']:<3} "
          f"{r['n']} logins in {r['wall']:.1f}s ({r['in_window']} by the deadline): "
          f"{r['rate']:.1f}/s, LOGIN p50 {r['p50']:.0f} ms p99 {r['p99']:.0f} ms, "
          f"fails {len(r['fails'])}; server {r['cpu_pct']:.0f}% ({r['cpu_ms']:.0f} ms/login)"
          f"{detail}, load {r['load']}", flush=True)
    for f in r["fails"][:3]:
        print(f"    failure: {f}")


def main():
    args = parse_args()
    have_dovecot = not args.no_dovecot and (shutil.which("dovecot")
                                            or os.path.exists("/usr/sbin/dovecot"))
    if not args.no_dovecot and not have_dovecot:
        print("imap_logins: dovecot not found (apt-get install -y dovecot-imapd); "
              "measuring our frontend only", file=sys.stderr)
    state = tempfile.mkdtemp(prefix="mail-login-bench-")
    c = local.Cluster.with_free_ports(state, args.bin_dir, stores=1, queues=1, replicas=1)
    dc = None
    rows = []
    t_start = time.monotonic()
    try:
        c.up()
        r = c.mailctl("tenant", "add", TENANT, check=False)   # up() made it already: rc 3
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl tenant add: {r.stderr}")
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        ours_hash = hash_from_etcd(c, USER)
        fe = c.pid("frontend-1")
        servers = [Server("ours", c.ports["imap"], c.ports["imaps"], lambda: proc_cpu(fe))]
        print(f"imap_logins: checkout {commit()}, binaries {args.bin_dir}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print(f"  ours:    {USER}, {ours_hash.split('$')[3]} (from etcd), "
              f"IMAP 127.0.0.1:{c.ports['imap']}, IMAPS {c.ports['imaps']}, frontend pid {fe}, "
              f"UV_THREADPOOL_SIZE={os.environ.get('UV_THREADPOOL_SIZE', '4 (default)')}")
        if have_dovecot:
            h = ours_hash if args.dovecot_hash == "ours" else doveadm_hash()
            dc = Dovecot(h, args.imaps, c.tls_dir())
            dc.start()
            ver = subprocess.run([dc.bin, "--version"], capture_output=True,
                                 text=True).stdout.strip()
            servers.append(Server("dovecot", dc.port, dc.tls_port, dc.cpu, dc.detail))
            print(f"  dovecot: {ver}, {h.split('$')[3]} ({args.dovecot_hash}), IMAP "
                  f"127.0.0.1:{dc.port}" + (f", IMAPS {dc.tls_port}" if args.imaps else "")
                  + f", master pid {dc.proc.pid}, config {dc.conf}")
        cafile = os.path.join(c.tls_dir(), "ca.pem")
        modes = [False, True] if args.imaps else [False]
        for s in servers:   # warm up: etcd connections, Dovecot's processes
            for tls in modes:
                login_once(s.tls_port if tls else s.port,
                           ssl.create_default_context(cafile=cafile) if tls else None)
        for tls in modes:
            print(f"== {'IMAPS (implicit TLS)' if tls else 'IMAP, plaintext from loopback'}: "
                  f"LOGIN + LOGOUT per connection, {args.duration:g} s per server and level "
                  f"in {args.rounds} turns",
                  flush=True)
            for conc in args.concurrency:
                slices = {s.name: [] for s in servers}
                for _ in range(args.rounds):
                    for s in servers:
                        slices[s.name].append(
                            measure(s, conc, args.duration / args.rounds, tls, cafile))
                for s in servers:
                    r = combine(slices[s.name])
                    rows.append(r)
                    show(r)
        if dc is not None:
            print(f"  dovecot auth cache: {dc.cache_stats()}")
    finally:
        if dc is not None:
            dc.stop()
        c.down()
        shutil.rmtree(state, ignore_errors=True)

    print(f"\n== Summary ({time.monotonic() - t_start:.0f} s in all; server CPU as % of one "
          f"core and ms per login; target: ours >= 5x Dovecot)")
    print(f"{'proto':<7}{'conc':>5}{'ours/s':>9}{'dovecot/s':>11}{'ratio':>8}"
          f"{'ours ms':>9}{'dc ms':>8}{'ours %':>8}{'dc %':>7}{'ours p50':>10}{'dc p50':>8}"
          f"{'fails':>7}")
    for tls in (False, True):
        for conc in args.concurrency:
            o = [r for r in rows if r["tls"] == tls and r["conc"] == conc and r["server"] == "ours"]
            d = [r for r in rows if r["tls"] == tls and r["conc"] == conc
                 and r["server"] == "dovecot"]
            if not o:
                continue
            o = o[0]
            d = d[0] if d else None
            nan = float("nan")
            print(f"{'IMAPS' if tls else 'IMAP':<7}{conc:>5}{o['rate']:>9.1f}"
                  f"{d['rate'] if d else nan:>11.1f}"
                  f"{(o['rate'] / d['rate']) if d and d['rate'] else nan:>7.2f}x"
                  f"{o['cpu_ms']:>9.0f}{d['cpu_ms'] if d else nan:>8.0f}"
                  f"{o['cpu_pct']:>8.0f}{d['cpu_pct'] if d else nan:>7.0f}"
                  f"{o['p50']:>10.0f}{d['p50'] if d else nan:>8.0f}"
                  f"{len(o['fails']) + (len(d['fails']) if d else 0):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
