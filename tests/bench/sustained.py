#!/usr/bin/env python3
"""Benchmark (not a test): sustained SMTP load, slice by slice, to show
whether the cluster slows down or grows as messages accumulate.

It starts the default-shaped cluster (what `cluster/local up` starts: etcd,
3 store nodes, 3 queue nodes, 1 frontend, 64 partitions, R=3) on free ports
in a temporary state dir, or drives a running one (--smtp HOST:PORT --state
DIR of that cluster: its processes, disks, and etcd's TLS files and admin
password, e.g. `--state state` for `cluster/local up`). It creates --users users (mailctl)
and sends --messages messages of --size bytes over --sessions concurrent
SMTP sessions with Postfix's smtp-source, spread over the users.

After every --slice messages it prints: throughput (messages/s), each
daemon's CPU per message (utime+stime deltas from /proc/PID/stat) and RSS,
the disk used by each node's state dir, etcd's database size and revision
(/v3/maintenance/status), the queue depth, and the sender's own CPU. At the
end: a table, the ratio of the last slice's throughput to the first's (the
target is within 10%), and a CSV and an SVG chart in --out (default
bench-out/). It never fails on timing; it prints figures.

Every message is unique (the frontend derives the queue id from a hash of
envelope and body, so identical messages within 10 minutes would be stored
once): each smtp-source run gets its own envelope sender
(bench-<run>-<chunk>@remote.test) and smtp-source numbers the messages of
one run in their Message-Id.

smtp-source comes with Debian's postfix package:
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y --no-install-recommends postfix

  python3 tests/bench/sustained.py [--messages 1000000] [--slice 100000]
      [--size 5120] [--sessions 50] [--users 1000] [--out bench-out]
  python3 tests/bench/sustained.py --messages 20000 --slice 2000    # a short run
  python3 tests/bench/sustained.py --smtp 127.0.0.1:2525 --state state
"""
import argparse
import concurrent.futures
import csv
import glob
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
sys.path.insert(0, os.path.dirname(HERE))
import local  # noqa: E402
import cluster_probe as probe  # noqa: E402
import e2e_harness  # noqa: E402

PASSWORD = "bench"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--slice", type=int, default=100_000, help="messages per reported slice")
    ap.add_argument("--size", type=int, default=5120, help="message body bytes (plus headers)")
    ap.add_argument("--sessions", type=int, default=50, help="concurrent SMTP sessions")
    ap.add_argument("--procs", type=int, default=10,
                    help="smtp-source processes at a time (sessions are split among them)")
    ap.add_argument("--chunk", type=int, default=0,
                    help="messages per smtp-source run, all to one user "
                         "(default: slice/20, between 20 and 400)")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--domain", default="bench.test")
    ap.add_argument("--out", default="bench-out", help="directory for the CSV and SVG")
    ap.add_argument("--smtp", help="HOST:PORT of a running cluster's SMTP (with --state)")
    ap.add_argument("--state", help="state dir of the running cluster (run/*.pid, data/*, "
                                    "tls/, etcd/, mailctl.conf)")
    ap.add_argument("--drain-timeout", type=float, default=300,
                    help="seconds to wait at the end for the queues to drain (0: don't)")
    ap.add_argument("--keep-state", action="store_true",
                    help="keep the temporary state dir of the cluster it started")
    args = ap.parse_args()
    if bool(args.smtp) != bool(args.state):
        ap.error("--smtp and --state go together")
    if args.slice <= 0 or args.messages <= 0:
        ap.error("--messages and --slice must be positive")
    args.procs = max(1, min(args.procs, args.sessions))
    if not args.chunk:
        args.chunk = max(20, min(400, args.slice // 20))
    return args


class Target:
    """What the benchmark drives and watches: SMTP address, the cluster's
    etcd (a local.Cluster: its TLS files and admin user), {name: pid} of the
    daemons, {name: data dir}, and the cluster when it started one itself
    (for queue depth)."""

    def __init__(self, smtp, etcd, state=None, cluster=None):
        self.smtp, self.etcd, self.state, self.cluster = smtp, etcd, state, cluster

    def pids(self):
        if self.cluster is not None:
            return {name: self.cluster.pid(name) for name, *_ in self.cluster.specs()}
        out = {}
        for f in sorted(glob.glob(os.path.join(self.state or "/nonexistent", "run", "*.pid"))):
            try:
                with open(f) as fh:
                    out[os.path.basename(f)[:-4]] = int(fh.read().strip())
            except (OSError, ValueError):
                pass
        return out

    def data_dirs(self):
        if not self.state:
            return {}
        base = os.path.join(self.state, "data")
        return {d: os.path.join(base, d) for d in sorted(os.listdir(base))
                if os.path.isdir(os.path.join(base, d))} if os.path.isdir(base) else {}

    def queue_depth(self):
        return probe.queue_depth(self.cluster) if self.cluster is not None else None


def mailctl(bin_dir, etcd, *args, stdin=None):
    """mailctl against cluster etcd (a local.Cluster: its mailctl.conf)."""
    return subprocess.run([os.path.join(bin_dir, "mailctl"), *args], env=etcd.mailctl_env(),
                          input=stdin, capture_output=True, text=True, timeout=120)


def create_users(bin_dir, etcd, domain, n):
    """The tenant and users bench0000@domain...; existing ones are kept."""
    r = mailctl(bin_dir, etcd, "tenant", "add", domain)
    if r.returncode not in (0, 3):
        raise RuntimeError(f"mailctl tenant add {domain}: rc={r.returncode} {r.stderr}")
    users = [f"bench{i:04d}@{domain}" for i in range(n)]

    def add(u):
        r = mailctl(bin_dir, etcd, "user", "add", u, stdin=PASSWORD + "\n")
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl user add {u}: rc={r.returncode} {r.stderr}")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(add, users))
    parts = {e2e_harness.partition_of(u, 64) for u in users}
    print(f"users: {n} in {time.monotonic() - t0:.1f}s; they fall in {len(parts)} of 64 "
          "store partitions (if the cluster has 64)", flush=True)
    return users


class Sender:
    """Keeps --procs smtp-source runs going, each sending one chunk of
    messages to one user over its share of the sessions, until --messages
    have been sent. Counts each message as its DATA completes (smtp-source
    -c prints "N\r" then), so slices are cut at the message, not at the end
    of a run; counts what smtp-source reports as rejected."""

    REJECT_WORDS = ("sender rejected", "recipient rejected", "data rejected",
                    "fatal", "lost connection", "timeout")

    def __init__(self, args, users, host_port):
        self.args, self.users, self.host_port = args, users, host_port
        self.run_id = f"{int(time.time()) % 100000:05d}"
        self.started = 0     # messages handed to smtp-source
        self.done = 0        # messages whose smtp-source run ended
        self.progress = 0    # messages whose DATA completed (-c counter)
        self.sel = selectors.DefaultSelector()
        self.rejected = 0
        self.failed_runs = 0
        self.chunk_no = 0
        self.running = []    # (Popen, count)
        self.first_errors = []

    def _start_one(self):
        a = self.args
        n = min(a.chunk, a.messages - self.started)
        # sessions for this run: the total split among the runs at a time
        sess = max(1, a.sessions // a.procs + (1 if self.chunk_no % a.procs
                                                < a.sessions % a.procs else 0))
        # users in a scattered order so consecutive runs hit other partitions
        user = self.users[(self.chunk_no * 7919) % len(self.users)]
        sender = f"bench-{self.run_id}-{self.chunk_no}@remote.test"
        p = subprocess.Popen(["smtp-source", "-c", "-A", "-d", "-s", str(min(sess, n)),
                              "-m", str(n), "-l", str(a.size), "-f", sender, "-t", user,
                              "-M", "bench.test", self.host_port],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        os.set_blocking(p.stdout.fileno(), False)
        self.sel.register(p.stdout, selectors.EVENT_READ)
        self.running.append((p, n))
        self.started += n
        self.chunk_no += 1

    def _read_counter(self, f):
        try:
            data = os.read(f.fileno(), 65536)
        except BlockingIOError:
            return True
        self.progress += data.count(b"\r")
        if not data:
            self._unregister(f)   # EOF: the run is ending
        return bool(data)

    def _unregister(self, f):
        try:
            self.sel.unregister(f)
        except (KeyError, ValueError):
            pass

    def _finish(self, p, n):
        while self._read_counter(p.stdout):
            pass
        p.stdout.close()
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        bad = [line for line in err.splitlines()
               if any(w in line for w in self.REJECT_WORDS) and "rset rejected" not in line]
        if p.returncode != 0:
            # the run died: count all of it as not accepted (we cannot tell)
            self.failed_runs += 1
            self.rejected += n
        else:
            self.rejected += min(n, len(bad))
        if (bad or p.returncode) and len(self.first_errors) < 5:
            self.first_errors.append(f"rc={p.returncode} " + (bad[0] if bad else err[-200:]))
        self.done += n

    def step(self):
        """Start runs up to --procs, reap finished ones. Returns False when
        everything has been sent and reaped."""
        while len(self.running) < self.args.procs and self.started < self.args.messages:
            self._start_one()
        for key, _ in self.sel.select(timeout=0.02):
            self._read_counter(key.fileobj)
        still = []
        for p, n in self.running:
            if p.poll() is None:
                still.append((p, n))
            else:
                self._finish(p, n)
        self.running = still
        return bool(self.running) or self.started < self.args.messages

    def stop(self):
        for p, _ in self.running:
            if p.poll() is None:
                p.kill()
            p.wait()
            self._unregister(p.stdout)
            p.stdout.close()
            p.stderr.close()
        self.running = []


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Slicer:
    """Samples at each slice boundary and keeps the rows."""

    def __init__(self, target):
        self.target = target
        self.rows = []
        self.names = []     # process names in first-seen order
        self.dirs = []
        self.prev = self._sample(0, 0)

    def _sample(self, done, rejected):
        procs = {}
        for name, pid in self.target.pids().items():
            s = probe.proc_sample(pid) if pid else None
            if s is not None:
                procs[name] = (pid, s[0], s[1])
                if name not in self.names:
                    self.names.append(name)
        disks = {name: probe.dir_bytes(d) for name, d in self.target.data_dirs().items()}
        for name in disks:
            if name not in self.dirs:
                self.dirs.append(name)
        return {"t": time.monotonic(), "done": done, "rejected": rejected, "procs": procs,
                "disks": disks, "etcd": probe.etcd_status(self.target.etcd),
                "depth": self.target.queue_depth(), "sender_cpu": children_cpu()}

    def cut(self, done, rejected):
        cur = self._sample(done, rejected)
        prev, self.prev = self.prev, cur
        n = cur["done"] - prev["done"]
        dt = cur["t"] - prev["t"]
        row = {"slice": len(self.rows) + 1, "messages_end": done, "messages": n,
               "seconds": dt, "msgs_per_s": n / dt if dt > 0 else 0.0,
               "rejected": cur["rejected"] - prev["rejected"],
               "etcd_db_bytes": (cur["etcd"] or {}).get("db"),
               "etcd_db_in_use_bytes": (cur["etcd"] or {}).get("in_use"),
               "etcd_revision": (cur["etcd"] or {}).get("revision"),
               "queue_depth": cur["depth"],
               "sender_cpu_ms_per_msg": (cur["sender_cpu"] - prev["sender_cpu"]) * 1000 / n
               if n else None}
        for name in self.names:
            a, b = prev["procs"].get(name), cur["procs"].get(name)
            # a restarted process (other PID) has no meaningful delta
            row[f"cpu_ms_per_msg:{name}"] = ((b[1] - a[1]) * 1000 / n
                                             if a and b and a[0] == b[0] and n else None)
            row[f"rss_bytes:{name}"] = b[2] if b else None
        for name in self.dirs:
            row[f"disk_bytes:{name}"] = cur["disks"].get(name)
        self.rows.append(row)
        return row


def fmt_mb(v):
    return "-" if v is None else f"{probe.mb(v):.1f}"


def fmt_ms(v):
    return "-" if v is None else f"{v:.3f}"


def print_slice(row, slicer, total):
    print(f"slice {row['slice']}: messages {row['messages_end']}/{total}  "
          f"{row['seconds']:.1f}s  {row['msgs_per_s']:.1f} msg/s  rejected {row['rejected']}  "
          f"etcd db {fmt_mb(row['etcd_db_bytes'])} MB (in use "
          f"{fmt_mb(row['etcd_db_in_use_bytes'])}) rev {row['etcd_revision']}  "
          f"queue depth {row['queue_depth'] if row['queue_depth'] is not None else '-'}  "
          f"sender cpu {fmt_ms(row['sender_cpu_ms_per_msg'])} ms/msg")
    names = sorted(set(slicer.names) | set(slicer.dirs))
    print(f"  {'process':<12} {'cpu ms/msg':>10} {'rss MB':>8} {'disk MB':>9}")
    for name in names:
        print(f"  {name:<12} {fmt_ms(row.get(f'cpu_ms_per_msg:{name}')):>10} "
              f"{fmt_mb(row.get(f'rss_bytes:{name}')):>8} "
              f"{fmt_mb(row.get(f'disk_bytes:{name}')):>9}")
    sys.stdout.flush()


def summary(rows, slicer, out_dir, label):
    cpu_keys = [f"cpu_ms_per_msg:{n}" for n in slicer.names]
    disk_keys = [f"disk_bytes:{n}" for n in slicer.dirs]
    rss_keys = [f"rss_bytes:{n}" for n in slicer.names]
    print(f"\n{'slice':>5} {'msgs':>9} {'msg/s':>8} {'cpu ms/msg':>10} {'etcd MB':>8} "
          f"{'etcd rev':>9} {'disk MB':>9} {'max rss MB':>10} {'q depth':>7} {'rej':>5}")
    for r in rows:
        cpu = sum(r[k] for k in cpu_keys if r.get(k) is not None)
        disk = sum(r[k] for k in disk_keys if r.get(k) is not None)
        rss = max([r[k] for k in rss_keys if r.get(k) is not None] or [0])
        print(f"{r['slice']:>5} {r['messages_end']:>9} {r['msgs_per_s']:>8.1f} {cpu:>10.3f} "
              f"{fmt_mb(r['etcd_db_bytes']):>8} {r['etcd_revision'] or '-':>9} "
              f"{probe.mb(disk):>9.1f} {probe.mb(rss):>10.1f} "
              f"{r['queue_depth'] if r['queue_depth'] is not None else '-':>7} "
              f"{r['rejected']:>5}")
    print("(cpu ms/msg: all daemons together, etcd included; disk MB: all state dirs)")
    os.makedirs(out_dir, exist_ok=True)
    keys = list(rows[0].keys()) if rows else []
    for r in rows:
        keys += [k for k in r if k not in keys]
    csv_path = os.path.join(out_dir, "sustained.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    xs = [r["messages_end"] / 1000 for r in rows]
    def col(key, scale=1.0):
        return [None if r.get(key) is None else r[key] * scale for r in rows]
    panels = [
        ("throughput (messages/s)", [("msg/s", col("msgs_per_s"))]),
        ("CPU per message (ms), by process",
         [(n, col(f"cpu_ms_per_msg:{n}")) for n in slicer.names]),
        ("RSS (MB), by process",
         [(n, col(f"rss_bytes:{n}", 1 / (1 << 20))) for n in slicer.names]),
        ("disk used by each node's state dir (MB)",
         [(n, col(f"disk_bytes:{n}", 1 / (1 << 20))) for n in slicer.dirs
          if not n.startswith("etcd") and any(col(f"disk_bytes:{n}"))]),
        ("etcd database (MB)", [("dbSize", col("etcd_db_bytes", 1 / (1 << 20))),
                                ("dbSizeInUse", col("etcd_db_in_use_bytes", 1 / (1 << 20)))]),
        ("etcd data dir, WAL included (MB)",
         [(n, col(f"disk_bytes:{n}", 1 / (1 << 20))) for n in slicer.dirs
          if n.startswith("etcd")]),
    ]
    svg_path = os.path.join(out_dir, "sustained.svg")
    probe.write_svg(svg_path, f"sustained load: {label}", "messages sent (thousands)",
                    xs, panels)
    print(f"wrote {csv_path} and {svg_path}")
    if rows and rows[0]["msgs_per_s"] > 0:
        ratio = rows[-1]["msgs_per_s"] / rows[0]["msgs_per_s"]
        print(f"throughput last/first slice: {rows[-1]['msgs_per_s']:.1f} / "
              f"{rows[0]['msgs_per_s']:.1f} = {ratio:.2f} "
              f"({'within' if abs(1 - ratio) <= 0.10 else 'NOT within'} the 10% target)")


def drive(args, target, users, label):
    host_port = target.smtp
    sender = Sender(args, users, host_port)
    slicer = Slicer(target)
    next_cut = args.slice
    t0 = time.monotonic()
    print(f"sending {args.messages} messages of {args.size} B body over {args.sessions} "
          f"sessions ({args.procs} smtp-source runs at a time, {args.chunk} messages "
          f"each) to {len(users)} users at {host_port}", flush=True)
    try:
        while sender.step():
            if sender.progress >= next_cut:
                print_slice(slicer.cut(sender.progress, sender.rejected), slicer,
                            args.messages)
                while next_cut <= sender.progress:
                    next_cut += args.slice
        if sender.progress > slicer.prev["done"]:
            print_slice(slicer.cut(sender.progress, sender.rejected), slicer, args.messages)
    finally:
        sender.stop()
    wall = time.monotonic() - t0
    print(f"\nsent {sender.progress} messages (DATA completed) of {sender.done} in {wall:.1f}s "
          f"({sender.progress / wall:.1f} msg/s), "
          f"rejected or lost {sender.rejected}, smtp-source runs that failed "
          f"{sender.failed_runs}")
    for e in sender.first_errors:
        print(f"  e.g. {e}")
    if args.drain_timeout > 0 and target.cluster is not None:
        t1 = time.monotonic()
        depth = target.queue_depth()
        while depth and time.monotonic() - t1 < args.drain_timeout:
            time.sleep(1)
            depth = target.queue_depth()
        print(f"queues drained to {depth} in {time.monotonic() - t1:.1f}s after the last message")
    summary(slicer.rows, slicer, args.out, label)


def install_smtp_source():
    """As root: install Debian's postfix (only for smtp-source) without
    configuring or starting it."""
    print("sustained.py: installing postfix for smtp-source", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type "
                   b"select No configuration\n", env=env, check=False)
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"],
                   env=env, check=False, stdout=subprocess.DEVNULL)


def on_sigterm(signum, frame):
    # unwind, so that the finally blocks stop smtp-source and the cluster
    raise SystemExit(f"signal {signum}")


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    if shutil.which("smtp-source") is None and os.geteuid() == 0:
        install_smtp_source()
    if shutil.which("smtp-source") is None:
        print("sustained.py needs smtp-source (Debian's postfix package):\n"
              '  echo "postfix postfix/main_mailer_type select No configuration" '
              "| debconf-set-selections\n"
              "  apt-get install -y --no-install-recommends postfix", file=sys.stderr)
        return 2
    bin_dir = os.environ.get("MAIL_BIN_DIR", os.path.join(ROOT, "build", "bin"))
    if args.smtp:
        # the running cluster's etcd: cluster/local's ports and shape
        shape = {"etcd_members": 1}
        try:
            with open(os.path.join(args.state, "cluster.json")) as f:
                shape.update(json.load(f))
        except (OSError, ValueError):
            pass
        etcd = local.Cluster(args.state, bin_dir, etcd_members=shape["etcd_members"])
        target = Target(args.smtp, etcd, state=args.state)
        users = create_users(bin_dir, etcd, args.domain, args.users)
        drive(args, target, users, f"running cluster {args.smtp}")
        return 0
    state = tempfile.mkdtemp(prefix="mail-sustained-")
    # the shape `cluster/local up` gives: 3 store, 3 queue, 1 frontend,
    # Cluster's defaults (64 partitions, R=3, lease TTL 5 s)
    c = local.Cluster.with_free_ports(state, bin_dir, stores=3, queues=3)
    try:
        c.up()
        print(f"cluster: 3 store, 3 queue, 1 frontend, {c.partitions} partitions, "
              f"R={c.replicas}; state {state}; SMTP 127.0.0.1:{c.ports['smtp']}, "
              f"etcd {c.etcd_url}", flush=True)
        users = create_users(bin_dir, c, args.domain, args.users)
        target = Target(f"127.0.0.1:{c.ports['smtp']}", c, state=state, cluster=c)
        drive(args, target, users, f"3 store + 3 queue + 1 frontend, R={c.replicas}, "
              f"{c.partitions} partitions, {args.sessions} sessions, {args.size} B")
    finally:
        c.down()
        if args.keep_state:
            print(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
