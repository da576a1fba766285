#!/usr/bin/python3
"""Benchmark (not a test: it prints figures and never fails on timing; not in
ctest): inbound mail end to end, the default cluster against Postfix → LMTP
→ Dovecot on the same box, one after the other in one run, same load
(issue 12 item 4).

  /usr/bin/python3 tests/bench/smtp_vs_postfix.py [--messages 5000]
      [--sessions 50] [--size 5120] [--users 10] [--only ours|peers]
      [--postconf 'name = value' ...] [--idle 5] [--timeout 900] [--keep]

The two sides, each alone on the machine while it is measured (ours is
stopped before the peers start):

  ours   the default cluster (cluster/local.py on free ports: etcd, 3 store
         nodes, 3 queue nodes, 1 frontend, 64 partitions, R=3, node RPC over
         mutual TLS, every setting at its default), --users users
         bench1..N@example.test; load on the frontend's MX port, mail read
         on its IMAP port. The script waits for both rings to settle
         (every partition with R in-sync replicas, every node a primary of
         some, no change for 3 s) before any mail.
  peers  Postfix 3.7 (Debian's package, a scratch instance in a temporary
         directory, `postfix -c DIR`, its default performance settings)
         on a free 127.0.0.1 port, virtual_mailbox_domains example.test,
         every message handed by LMTP over a unix socket to Dovecot 2.3
         (scratch instance, Maildir, mail_fsync = optimized, i.e. a
         delivery is fsynced before LMTP's 250), which serves IMAP on a free
         port: tests/bench/smtp_peers.py says exactly what is set.

Per side, after one warm-up message per user (which also checks the path):

  1. the rate run: Postfix's smtp-source sends --messages messages with a
     --size byte payload over --sessions concurrent sessions (-d: each
     session sends message after message on one connection). smtp-source
     has one recipient per run, so the load is min(users, sessions)
     smtp-source processes at once, the sessions and messages split evenly
     among them, each to its own user (`smtp-source -A -d -s S -m M -l
     SIZE -f bench-RUN-K@remote.test -t benchK@example.test`). Figures:
     accepted msgs/s = messages / (last smtp-source exit - first start);
     end to end msgs/s = messages / (the moment IMAP STATUS INBOX
     (MESSAGES) shows every message in every user's mailbox - first
     start), polled every 50 ms over connections logged in beforehand
     (polling starts once the senders are done: no message can be visible
     before its 250); CPU seconds per process from first start to 2 s
     after everything is visible (trailing queue clean-up included).
  2. the latency run: the same load (sessions, messages, size, the same
     messages per user) from this script's own asyncio SMTP client, since
     smtp-source prints no latencies: each session MAIL, RCPT, DATA, the
     message, one transaction after the other; it times MAIL → its 250,
     RCPT → its 250, the end of DATA (the final ".") → its 250 (the
     acknowledgement: the figure of the p99 target) and the whole
     transaction, and also gives that run's rates. The client is one
     Python process sharing the cores: its own queueing is in every
     figure, on both sides alike.

Before the rate run, --idle seconds (5) with no load: each process's CPU
at rest (ours has leases, node status and ring watches going; the peers
sleep), shown beside the rate run's figures. For ours the script also
counts etcd's requests by gRPC method (etcd's /metrics; our daemons reach
etcd through its JSON gateway) and each daemon's etcd writes
(mail_etcd_writes_total), per message in the rate run and per second at
rest, as that is where much of our CPU goes.

CPU per process (utime + stime from /proc/PID/stat, sampled every 0.2 s
so short-lived processes count): ours by daemon (etcd, frontend, each
queue node, each store node); Postfix's daemons by name (master, smtpd,
cleanup, qmgr, trivial-rewrite, lmtp client, ...) and Dovecot's (lmtp,
imap, auth, ...) separately, plus "unattributed" (CPU of children reaped
between two samples, from the masters' cutime). Not counted on either
side: the load generator (smtp-source, or this script) and the sampler,
which share the same cores.

Targets (issue 12): end to end at least 3x the peers' rate; p99 of the
250 (DATA end → 250) at most Postfix's. The script prints both sides, the
ratios and whether each target is met; it never fails on them.

Needs root, Debian's postfix (smtp-source and the peer), dovecot-imapd,
dovecot-lmtpd, and our binaries in $MAIL_BIN_DIR or build/bin (frontend,
queue-node, store-node, mailctl).
"""
import argparse
import asyncio
import imaplib
import os
import re
import shlex
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402
import smtp_peers  # noqa: E402

DOMAIN = "example.test"
PASSWORD = "bench-pw-1"
SMTP_SOURCE = "/usr/sbin/smtp-source"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--size", type=int, default=5120, help="payload bytes (smtp-source -l)")
    ap.add_argument("--users", type=int, default=10,
                    help="recipients bench1..N@example.test (min(users, sessions) are used)")
    ap.add_argument("--only", choices=["ours", "peers"])
    ap.add_argument("--postconf", action="append", default=[],
                    help="one more main.cf line for the peer Postfix, e.g. "
                         "'in_flow_delay = 0' (repeatable)")
    ap.add_argument("--idle", type=float, default=5,
                    help="seconds of CPU measured at rest, before the load (0: skip)")
    ap.add_argument("--timeout", type=float, default=900,
                    help="seconds to wait for all messages to be visible")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories")
    ap.add_argument("--node-arg", action="append", default=[],
                    help="one more option word for every queue and store node, e.g. "
                         "--node-arg=--repl-write-thread --node-arg=0 (repeatable)")
    a = ap.parse_args()
    if min(a.messages, a.sessions, a.size, a.users) <= 0:
        ap.error("--messages, --sessions, --size and --users must be positive")
    a.users = min(a.users, a.sessions)
    return a


def pct(vals, p):
    if not vals:
        return float("nan")
    i = min(len(vals) - 1, int(round(p / 100.0 * (len(vals) - 1))))
    return vals[i]


def split(total, parts):
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


# ---- IMAP: when is everything visible -------------------------------------------

class Watcher:
    """One logged-in IMAP connection per user; counts() = {user: MESSAGES}."""

    def __init__(self, port, users):
        self.port = port
        self.conns = {}
        for u in users:
            self.conns[u] = self._login(u)

    def _login(self, u):
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=60)
        m.login(u, PASSWORD)
        return m

    def count(self, u):
        for attempt in range(3):
            try:
                typ, data = self.conns[u].status("INBOX", "(MESSAGES)")
                if typ == "OK":
                    m = re.search(rb"MESSAGES (\d+)", data[0])
                    if m:
                        return int(m.group(1))
                raise imaplib.IMAP4.error(f"STATUS: {typ} {data}")
            except (imaplib.IMAP4.error, OSError):
                if attempt == 2:
                    raise
                time.sleep(0.5)
                try:
                    self.conns[u] = self._login(u)
                except (imaplib.IMAP4.error, OSError):
                    pass
        return -1

    def counts(self):
        return {u: self.count(u) for u in self.conns}

    def wait(self, want, timeout, interval=0.05):
        """Poll until every user u has want[u] messages. Returns (the
        monotonic time it was seen, counts)."""
        deadline = time.monotonic() + timeout
        pending = dict(want)
        have = {}
        while pending:
            for u in list(pending):
                have[u] = self.count(u)
                if have[u] >= pending[u]:
                    del pending[u]
            if not pending:
                break
            if time.monotonic() > deadline:
                return None, have
            time.sleep(interval)
        return time.monotonic(), have

    def close(self):
        for m in self.conns.values():
            try:
                m.logout()
            except Exception:  # noqa: BLE001
                pass
        self.conns = {}


# ---- the load --------------------------------------------------------------------

class SmtpSource:
    """The rate run's senders: min(users, sessions) smtp-source processes."""

    def __init__(self):
        self.procs = []

    def run(self, port, users, a, tag):
        """Returns (t0, t_end, messages per user, problems)."""
        sess = split(a.sessions, len(users))
        msgs = split(a.messages, len(users))
        outs = []
        t0 = time.monotonic()
        for k, u in enumerate(users):
            if msgs[k] == 0:
                continue
            err = tempfile.TemporaryFile()
            p = subprocess.Popen([SMTP_SOURCE, "-A", "-d", "-s", str(min(sess[k], msgs[k])),
                                  "-m", str(msgs[k]), "-l", str(a.size),
                                  "-f", f"bench-{tag}-{k}@remote.test", "-t", u,
                                  "-M", "client.test", f"127.0.0.1:{port}"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err)
            self.procs.append(p)
            outs.append((p, err))
        problems = []
        for p, err in outs:
            p.wait()
            err.seek(0)
            text = err.read().decode(errors="replace")
            err.close()
            if p.returncode != 0:
                problems.append(f"smtp-source exit {p.returncode}")
            problems += [line for line in text.splitlines() if line.strip()]
        t_end = time.monotonic()
        self.procs = []
        return t0, t_end, dict(zip(users, msgs)), problems

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
        self.procs = []


def body(size):
    line = b"x" * 76 + b"\r\n"
    return line * (size // len(line)) + b"x" * max(0, size % len(line) - 2) + b"\r\n"


async def _reply(r):
    """One SMTP reply: its code (the last line's)."""
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3]), line


async def _latency_run(port, users, a, tag):
    sess_users = [users[j % len(users)] for j in range(a.sessions)]
    per = split(a.messages, a.sessions)
    payload = body(a.size)
    mail_lat, rcpt_lat, data_lat, txn_lat, errors = [], [], [], [], []
    accepted = {}           # rcpt -> messages that got their 250
    go = asyncio.Event()
    ready = [0]
    last = [0.0]

    async def session(j):
        rcpt = sess_users[j]
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
        try:
            await _reply(r)
            w.write(b"EHLO client.test\r\n")
            await _reply(r)
            ready[0] += 1
            await go.wait()
            for i in range(per[j]):
                sender = f"lat-{tag}-{j}@remote.test"
                head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\n"
                        f"Subject: latency run {tag} {j}.{i}\r\n"
                        f"Message-Id: <{tag}.{j}.{i}@client.test>\r\n\r\n").encode()
                t0 = time.perf_counter()
                w.write(f"MAIL FROM:<{sender}>\r\n".encode())
                code, line = await _reply(r)
                t1 = time.perf_counter()
                if code != 250:
                    errors.append(f"MAIL: {line!r}")
                    w.write(b"RSET\r\n")
                    await _reply(r)
                    continue
                w.write(f"RCPT TO:<{rcpt}>\r\n".encode())
                code, line = await _reply(r)
                t_rcpt = time.perf_counter() - t1
                if code != 250:
                    errors.append(f"RCPT: {line!r}")
                    w.write(b"RSET\r\n")
                    await _reply(r)
                    continue
                w.write(b"DATA\r\n")
                code, line = await _reply(r)
                if code != 354:
                    errors.append(f"DATA: {line!r}")
                    continue
                w.write(head + payload + b".\r\n")
                await w.drain()
                t2 = time.perf_counter()
                code, line = await _reply(r)
                t3 = time.perf_counter()
                if code != 250:
                    errors.append(f"end of DATA: {line!r}")
                    continue
                mail_lat.append(t1 - t0)
                rcpt_lat.append(t_rcpt)
                accepted[rcpt] = accepted.get(rcpt, 0) + 1
                data_lat.append(t3 - t2)
                txn_lat.append(t3 - t0)
                last[0] = max(last[0], time.monotonic())
            w.write(b"QUIT\r\n")
            await _reply(r)
        except (OSError, ConnectionError, ValueError) as e:
            errors.append(f"session {j}: {type(e).__name__}: {e}")
        finally:
            w.close()

    tasks = [asyncio.ensure_future(session(j)) for j in range(a.sessions)]
    deadline = time.monotonic() + 60
    while ready[0] < a.sessions and time.monotonic() < deadline and \
            not all(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    go.set()
    await asyncio.gather(*tasks)
    lat = {"mail": sorted(mail_lat), "rcpt": sorted(rcpt_lat), "data": sorted(data_lat),
           "txn": sorted(txn_lat)}
    return t0, last[0], accepted, lat, errors


def latency_run(port, users, a, tag):
    return asyncio.run(_latency_run(port, users, a, tag))


# ---- the two sides ---------------------------------------------------------------

def bin_dir():
    return os.environ.get("MAIL_BIN_DIR") or os.path.join(ROOT, "build", "bin")


class Ours:
    name = "ours"
    title = "ours (default cluster, R=3)"

    def __init__(self, a, users):
        self.a = a
        self.users = users
        self.state = tempfile.mkdtemp(prefix="mail-smtp-vs-postfix-")
        self.c = None

    def start(self):
        missing = [b for b in ("frontend", "queue-node", "store-node", "mailctl")
                   if not os.path.exists(os.path.join(bin_dir(), b))]
        if missing:
            raise SystemExit(f"missing in {bin_dir()}: {', '.join(missing)} (build them)")
        self.c = local.Cluster.with_free_ports(self.state, bin_dir(), stores=3, queues=3,
                                               queue_extra=self.a.node_arg,
                                               store_extra=self.a.node_arg)
        self.c.up()
        for u in self.users:
            r = self.c.mailctl("user", "add", u, stdin=PASSWORD + "\n", check=False)
            if r.returncode not in (0, 3):
                raise RuntimeError(f"mailctl user add {u}: {r.stderr}")
        self.settle()
        self.smtp_port = self.c.ports["smtp"]
        self.imap_port = self.c.ports["imap"]
        self.describe = (f"etcd, 3 store, 3 queue, 1 frontend, {self.c.partitions} partitions, "
                         f"R={self.c.replicas}, node TLS {'on' if self.c.node_tls else 'off'}; "
                         f"state {self.state}; SMTP 127.0.0.1:{self.smtp_port}, "
                         f"IMAP 127.0.0.1:{self.imap_port}")

    def settle(self, timeout=180):
        """Both rings: every partition with R replicas all in sync, every
        node primary of some, the maps unchanged for 3 s."""
        import json
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while True:
            done, key = True, []
            for role, n in (("queue", self.c.queues), ("store", self.c.stores)):
                raw = self.c.etcd_get(f"/mail/v1/ring/{role}")
                parts = (json.loads(raw) if raw else {"map": []}).get("map", [])
                leads = {p["r"][0] for p in parts if p.get("r")}
                done = done and bool(parts) and len(leads) == n and all(
                    len(p["r"]) == self.c.replicas and sorted(p.get("i", [])) == sorted(p["r"])
                    for p in parts)
                key.append(parts)
            key = json.dumps(key, sort_keys=True)
            if key != last:
                last, since = key, time.monotonic()
            if done and time.monotonic() - since >= 3:
                return
            if time.monotonic() > deadline:
                print(f"[ours] the rings did not settle in {timeout} s; going on", flush=True)
                return
            time.sleep(0.5)

    def meter(self):
        names = [(name, role) for name, role, *_ in self.c.specs()]

        def groups():
            out = {}
            for name, role in names:
                pid = self.c.pid(name)
                if pid:
                    out[pid] = name
            return out
        return smtp_peers.CpuMeter(groups)

    def etcd_calls(self):
        """{what: count}: etcd's gRPC requests handled, by method (its
        /metrics; our daemons reach it through its JSON gateway, which
        calls gRPC), and each daemon's etcd writes (mail_etcd_writes_total
        from its metrics port)."""
        out = {}
        try:
            url = f"https://127.0.0.1:{self.c.ports['etcd']}/metrics"
            with urllib.request.urlopen(url, timeout=5, context=self.c.etcd_ssl_context()) as r:
                text = r.read().decode()
            for line in text.splitlines():
                m = re.match(r'grpc_server_handled_total\{.*grpc_method="(\w+)".*\} (\S+)', line)
                if m:
                    k = f"etcd {m.group(1)}"
                    out[k] = out.get(k, 0) + float(m.group(2))
        except (OSError, ValueError):
            pass
        for name, role, *_ in self.c.specs():
            if role == "etcd":
                continue
            try:
                url = f"http://127.0.0.1:{self.c.metrics_port(name)}/metrics"
                with urllib.request.urlopen(url, timeout=5) as r:
                    text = r.read().decode()
            except (OSError, ValueError):
                continue
            n = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("mail_etcd_writes_total"))
            out[f"writes by {name}"] = n
        return out

    @staticmethod
    def rollup(cpu):
        """[(label, seconds)] in display order: each process, then totals."""
        rows = []
        order = ["etcd", "frontend-1"] + [f"queue-{i}" for i in range(1, 4)] + \
                [f"store-{i}" for i in range(1, 4)]
        for k in order + sorted(set(cpu) - set(order)):
            if k in cpu:
                rows.append((k, cpu[k]))
        q = sum(v for k, v in cpu.items() if k.startswith("queue"))
        s = sum(v for k, v in cpu.items() if k.startswith("store"))
        rows += [("= queue nodes", q), ("= store nodes", s)]
        return rows

    def stop(self):
        if self.c is not None:
            self.c.down()
        if self.a.keep:
            print(f"[ours] kept {self.state}", flush=True)
        else:
            shutil.rmtree(self.state, ignore_errors=True)


class Peers:
    name = "peers"
    title = "Postfix -> LMTP -> Dovecot"

    def __init__(self, a, users):
        self.a = a
        self.users = users
        self.dove = None
        self.pf = None

    def start(self):
        why = smtp_peers.available()
        if why:
            raise SystemExit(f"smtp_vs_postfix: the peers cannot run: {why} (or --only ours)")
        self.dove = smtp_peers.DovecotLMTP({u: PASSWORD for u in self.users}, DOMAIN).start()
        self.pf = smtp_peers.PostfixLMTP(DOMAIN, self.users, self.dove.lmtp_socket,
                                         extra=self.a.postconf).start()
        self.smtp_port = self.pf.port
        self.imap_port = self.dove.ports["imap"]
        self.describe = (f"Postfix {self.pf.postconf('mail_version')} in {self.pf.dir} on "
                         f"127.0.0.1:{self.smtp_port}, LMTP to Dovecot "
                         f"{dovecot_version()} in {self.dove.dir} (Maildir), IMAP "
                         f"127.0.0.1:{self.imap_port}")

    def meter(self):
        pf_master, dv_master = self.pf.master_pid, self.dove.proc.pid

        def groups():
            out = {}
            for pid in smtp_peers.descendants(pf_master):
                st = smtp_peers.stat_of(pid)
                if st:
                    out[pid] = "postfix " + st[0]
            for pid in smtp_peers.descendants(dv_master):
                st = smtp_peers.stat_of(pid)
                if st:
                    out[pid] = "dovecot " + st[0]
            return out
        return smtp_peers.CpuMeter(groups, roots=[pf_master, dv_master])

    def etcd_calls(self):
        return {}

    @staticmethod
    def rollup(cpu):
        rows = []
        for prefix in ("postfix ", "dovecot "):
            mine = sorted(((k, v) for k, v in cpu.items() if k.startswith(prefix)),
                          key=lambda kv: -kv[1])
            rows += mine
        if "unattributed" in cpu:
            rows.append(("unattributed (reaped)", cpu["unattributed"]))
        pf = sum(v for k, v in cpu.items() if k.startswith("postfix "))
        dv = sum(v for k, v in cpu.items() if k.startswith("dovecot "))
        rows += [("= postfix", pf), ("= dovecot", dv)]
        return rows

    def stop(self):
        if self.pf is not None:
            self.pf.stop(keep_dir=self.a.keep)
            if self.a.keep:
                print(f"[peers] kept {self.pf.dir}", flush=True)
        if self.dove is not None:
            self.dove.stop(keep_dir=self.a.keep)
            if self.a.keep:
                print(f"[peers] kept {self.dove.dir}", flush=True)


def dovecot_version():
    try:
        return subprocess.run(["dovecot", "--version"], capture_output=True, text=True,
                              timeout=10).stdout.split()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


# ---- one side, measured ----------------------------------------------------------

def warm_up(side, users, watcher, tag):
    s = smtplib.SMTP("127.0.0.1", side.smtp_port, timeout=60)
    s.ehlo("client.test")
    for u in users:
        s.sendmail(f"warm-{tag}@remote.test", [u],
                   (f"From: <warm-{tag}@remote.test>\r\nTo: <{u}>\r\nSubject: warm-up\r\n"
                    f"Message-Id: <warm.{tag}.{u}>\r\n\r\nwarm-up\r\n").encode())
    s.quit()
    t, have = watcher.wait({u: 1 for u in users}, 120)
    if t is None:
        raise RuntimeError(f"{side.name}: the warm-up messages did not arrive: {have}")


def measure(side, a, users, sender, tag):
    res = {"name": side.name, "title": side.title, "side": side}
    side.start()
    print(f"[{side.name}] {side.describe}", flush=True)
    watcher = Watcher(side.imap_port, users)
    try:
        # Open every INBOX over IMAP before any mail: Dovecot creates a
        # Maildir INBOX on first access, and a STATUS racing the first LMTP
        # delivery into the same new mailbox made its imap process panic
        # and LMTP answer "451 4.2.0 Mailbox already exists" (Postfix then
        # defers that message for minimal_backoff_time, 300 s).
        watcher.counts()
        warm_up(side, users, watcher, tag)
        base = watcher.counts()
        time.sleep(2)
        if a.idle > 0:
            meter = side.meter().start()
            calls0 = side.etcd_calls()
            time.sleep(a.idle)
            res["idle_calls"] = delta(side.etcd_calls(), calls0, a.idle)
            res["idle"] = {k: v / a.idle for k, v in meter.stop().items()}
            print(f"[{side.name}] at rest: {sum(res['idle'].values()) * 100:.1f}% of a CPU "
                  f"over {a.idle:.0f} s", flush=True)

        # 1. the rate run (smtp-source)
        load0 = os.getloadavg()[0]
        meter = side.meter().start()
        calls0 = side.etcd_calls()
        t0, t_end, per_user, problems = sender.run(side.smtp_port, users, a, tag)
        print(f"[{side.name}] smtp-source done: {a.messages} messages in {t_end - t0:.2f} s "
              f"({a.messages / (t_end - t0):.1f} msg/s); waiting for IMAP", flush=True)
        t_vis, have = watcher.wait({u: base[u] + n for u, n in per_user.items()},
                                   a.timeout)
        time.sleep(2)
        cpu = meter.stop()
        t_cpu = time.monotonic() - t0
        res["calls"] = delta(side.etcd_calls(), calls0, 1)
        res["cpu_window"] = t_cpu
        delivered = sum(have[u] - base[u] for u in per_user)
        res.update(accept_rate=a.messages / (t_end - t0), accept_s=t_end - t0,
                   e2e_rate=(a.messages / (t_vis - t0)) if t_vis else None,
                   e2e_s=(t_vis - t0) if t_vis else None, delivered=delivered,
                   problems=problems, cpu=cpu, rollup=side.rollup(cpu), load=load0)
        print(f"[{side.name}] rate run: accepted {res['accept_rate']:.1f} msg/s, end to end "
              + (f"{res['e2e_rate']:.1f} msg/s ({res['e2e_s']:.2f} s)" if t_vis else
                 f"NOT all visible after {a.timeout:.0f} s ({delivered} of {a.messages})")
              + f", CPU {sum(cpu.values()):.1f} s, smtp-source problems {len(problems)}",
              flush=True)
        for line in problems[:5]:
            print(f"    {line}", flush=True)
        time.sleep(2)

        # 2. the latency run (our client)
        base = watcher.counts()
        t0, t_last, want, lat, errors = latency_run(side.smtp_port, users, a, tag + "L")
        data_lat = lat["data"]
        ok = len(data_lat)
        t_vis, have = watcher.wait({u: base[u] + n for u, n in want.items()}, a.timeout)
        res.update(lat_ok=ok, lat_errors=errors, mail_lat=lat["mail"], data_lat=data_lat,
                   rcpt_lat=lat["rcpt"], txn_lat=lat["txn"],
                   lat_accept_rate=ok / (t_last - t0) if t_last > t0 else None,
                   lat_e2e_rate=(ok / (t_vis - t0)) if t_vis and ok else None)
        print(f"[{side.name}] latency run: {ok} accepted, {len(errors)} errors; "
              f"DATA end -> 250 p50 {pct(data_lat, 50) * 1000:.1f} ms, "
              f"p99 {pct(data_lat, 99) * 1000:.1f} ms", flush=True)
        for e in errors[:5]:
            print(f"    {e}", flush=True)
    finally:
        watcher.close()
    return res


def delta(after, before, div):
    return {k: (v - before.get(k, 0)) / div for k, v in after.items()}


# ---- the report --------------------------------------------------------------------

def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def lat_cell(vals):
    if not vals:
        return "-"
    return "/".join(f"{pct(vals, p) * 1000:.1f}" for p in (50, 95, 99))


def report(results, a):
    ours, peers = results.get("ours"), results.get("peers")
    cols = [r for r in (ours, peers) if r]
    w = 28
    print("\n== smtp_vs_postfix: "
          f"{a.messages} messages, {a.sessions} sessions, {a.size} B payload, "
          f"{a.users} users ==")
    print(f"{'':<40}" + "".join(f"{r['title']:>{w}}" for r in cols))

    def row(label, f):
        print(f"{label:<40}" + "".join(f"{f(r):>{w}}" for r in cols))
    row("rate run (smtp-source):", lambda r: "")
    row("  accepted msgs/s", lambda r: fmt(r.get("accept_rate")))
    row("  end to end msgs/s (250 -> IMAP)", lambda r: fmt(r.get("e2e_rate")))
    row("  seconds to all accepted / visible", lambda r: f"{fmt(r.get('accept_s'), '.2f')} / "
        f"{fmt(r.get('e2e_s'), '.2f')}")
    row("  delivered / smtp-source problems", lambda r: f"{r['delivered']} / {len(r['problems'])}")
    row("  CPU s, all processes", lambda r: fmt(sum(r["cpu"].values()), ".2f"))
    row("  CPU ms per message", lambda r: fmt(sum(r["cpu"].values()) * 1000 / a.messages, ".2f"))
    row("  load average at start (1 min)", lambda r: fmt(r.get("load"), ".2f"))
    row("latency run (asyncio client):", lambda r: "")
    row("  DATA end -> 250 p50/p95/p99 ms", lambda r: lat_cell(r.get("data_lat")))
    row("  MAIL -> 250 p50/p95/p99 ms", lambda r: lat_cell(r.get("mail_lat")))
    row("  RCPT -> 250 p50/p95/p99 ms", lambda r: lat_cell(r.get("rcpt_lat")))
    row("  MAIL sent -> final 250 p50/p95/p99", lambda r: lat_cell(r.get("txn_lat")))
    row("  accepted msgs/s", lambda r: fmt(r.get("lat_accept_rate")))
    row("  end to end msgs/s", lambda r: fmt(r.get("lat_e2e_rate")))
    row("  accepted / errors", lambda r: f"{r.get('lat_ok', 0)} / {len(r.get('lat_errors', []))}")

    for r in cols:
        idle = dict(r["side"].rollup(r["idle"])) if r.get("idle") else {}
        print(f"\nCPU of the rate run, {r['title']} (first send to all visible + 2 s = "
              f"{r['cpu_window']:.1f} s), and at rest before it:")
        print(f"  {'process':<28} {'CPU s':>8} {'ms/msg':>8} {'at rest, % of a CPU':>21}")
        for label, v in r["rollup"]:
            rest = f"{idle[label] * 100:.1f}" if label in idle else "-"
            print(f"  {label:<28} {v:8.2f} {v * 1000 / a.messages:8.2f} {rest:>21}")
        if r.get("calls"):
            print(f"  etcd requests in the rate run, per message (at rest, per second):")
            idle_calls = r.get("idle_calls", {})
            for k, v in sorted(r["calls"].items()):
                if k.startswith("etcd ") and (v or idle_calls.get(k)):
                    print(f"    {k:<26} {v / a.messages:8.2f} ({idle_calls.get(k, 0):.1f}/s)")
            writes = {k[len("writes by "):]: v for k, v in r["calls"].items()
                      if k.startswith("writes by ")}
            if writes:
                print("  etcd writes by our daemons (mail_etcd_writes_total) in the rate run: "
                      + ", ".join(f"{k} {v:.0f}" for k, v in sorted(writes.items()))
                      + f"; at rest {sum(idle_calls.get('writes by ' + k, 0) for k in writes):.1f}/s")

    if ours and peers:
        print("\ntargets:")
        if ours.get("e2e_rate") and peers.get("e2e_rate"):
            ratio = ours["e2e_rate"] / peers["e2e_rate"]
            print(f"  end to end ours/peers = {ours['e2e_rate']:.1f} / {peers['e2e_rate']:.1f}"
                  f" = {ratio:.2f}x (target >= 3x: {'met' if ratio >= 3 else 'NOT met'})")
        else:
            print("  end to end: a side did not deliver everything in time (no ratio)")
        if ours.get("data_lat") and peers.get("data_lat"):
            po, pp = pct(ours["data_lat"], 99) * 1000, pct(peers["data_lat"], 99) * 1000
            print(f"  p99 of the 250 (DATA end): ours {po:.1f} ms, Postfix {pp:.1f} ms, "
                  f"ours/Postfix = {po / pp:.2f} (target <= 1: "
                  f"{'met' if po <= pp else 'NOT met'})")
        if ours.get("accept_rate") and peers.get("accept_rate"):
            print(f"  accepted (smtp-source) ours/peers = "
                  f"{ours['accept_rate'] / peers['accept_rate']:.2f}x (no target)")
    print(f"\nmachine: {os.cpu_count()} CPUs; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the box "
          "moves these figures; not counted in either side's CPU)")
    print("reproduce: /usr/bin/python3 tests/bench/smtp_vs_postfix.py "
          + " ".join(shlex.quote(x) for x in sys.argv[1:]))


def on_signal(signum, frame):
    raise SystemExit(f"smtp_vs_postfix: signal {signum}")


def main():
    a = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("smtp_vs_postfix: run as root (the peers change user)")
    if not os.path.exists(SMTP_SOURCE):
        raise SystemExit(f"{SMTP_SOURCE} is missing: Debian's postfix package (echo "
                         "'postfix postfix/main_mailer_type select No configuration' | "
                         "debconf-set-selections; apt-get install -y postfix)")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    users = [f"bench{i}@{DOMAIN}" for i in range(1, a.users + 1)]
    tag = f"{int(time.time()) % 100000:05d}"
    sender = SmtpSource()
    results = {}
    sides = [s for s in (Ours, Peers) if a.only in (None, s.name)]
    for cls in sides:
        side = cls(a, users)
        try:
            results[side.name] = measure(side, a, users, sender, f"{tag}{side.name[0]}")
        finally:
            sender.kill()
            side.stop()
    report(results, a)


if __name__ == "__main__":
    main()
