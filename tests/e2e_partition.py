#!/usr/bin/env python3
"""Fault test: a store primary cut off by a network partition.

A network namespace `mailcut<pid>` joined to the root namespace by a veth
pair (root side 10.213.X.1/24, namespace side 10.213.X.2/24). etcd runs in
the root namespace on 127.0.0.1 and 10.213.X.1. store-1 runs INSIDE the
namespace (R=3, 8 partitions, lease TTL 2 s); store-2 and store-3 run in
the root namespace on 10.213.X.1. Once the controller has moved every
primary to its preferred node, the test picks users of partitions store-1
leads. Two store-writer processes (tests/support/store-writer.c) deliver
a steady stream to those users: one inside the namespace (its
router holds the map it loaded before the cut), one in the root namespace.

Then the namespace side of the veth goes down for about 3 x TTL, and comes
back. Asserted, in this order:
  1. before the cut both writers get "ok";
  2. during the cut the namespace writer gets no acknowledgement for a write
     started after the cut, nor any acknowledgement at all once the cut is
     0.5 s old (store-1 cannot gather a majority), while the root writer
     resumes within RESUME_BOUND_S (a new primary is promoted); the pause is
     printed;
  3. after the heal store-1 is back in the in-sync set of every partition
     as a replica (`mailctl partitions`), and the namespace writer gets "ok"
     again;
  4. after stopping everything (SIGTERM), an offline dump of each node's
     mailstore (tests/support/mailstore-dump.c): the three replicas are
     identical, every acknowledged delivery id is in its user's INBOX
     exactly once with the uid it was given, no uid or delivery id appears
     twice, uidnext is above every uid, and UIDVALIDITY is the one every
     acknowledgement reported.
Clean-up (processes by PID, the namespace and the veth, the temp dir) runs
whatever happens. Not root, or `ip netns add` refused: SKIP (exit 77).
Standard library only.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402

SKIP = 77
TTL_S = 2
PARTITIONS = 8
USERS = [f"cut{i}@example.test" for i in range(6)]
CUT_HOLD_S = 3 * TTL_S
RESUME_BOUND_S = 5 * TTL_S     # root writer: first ack after the cut
REJOIN_BOUND_S = 30            # store-1 back in every in-sync set
WRITER_DEADLINE_MS = 3000
# what a writer may see while nodes fail over (mail-error.c names)
TEMPORARY = {"temp", "unavailable", "not-primary", "stale-epoch", "deadline"}


def sh(*argv, check=True):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc={r.returncode} {r.stderr.strip()}")
    return r


class Net:
    """The namespace and the veth pair; every name carries our PID."""

    def __init__(self):
        pid = os.getpid()
        self.ns = f"mailcut{pid}"
        self.veth_root = f"mcr{pid}"[:15]
        self.veth_ns = f"mcn{pid}"[:15]
        self.x = None
        self.made = False

    def create(self):
        """Returns None, or a SKIP reason when namespaces are not allowed."""
        if os.geteuid() != 0:
            return "not root: `ip netns add` needs CAP_SYS_ADMIN"
        r = sh("ip", "netns", "add", self.ns, check=False)
        if r.returncode != 0:
            return f"`ip netns add` refused: {r.stderr.strip()}"
        self.made = True
        # a /24 of 10.213/16 nobody on this machine uses, picked from our PID
        for k in range(256):
            x = (os.getpid() + k) % 254 + 1
            if sh("ip", "-4", "route", "show", "root", f"10.213.{x}.0/24").stdout.strip() or \
                    sh("ip", "-4", "addr", "show", "to", f"10.213.{x}.0/24").stdout.strip():
                continue
            self.x = x
            break
        else:
            raise RuntimeError("no free 10.213.X.0/24")
        sh("ip", "link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_ns)
        sh("ip", "link", "set", self.veth_ns, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.root_ip}/24", "dev", self.veth_root)
        sh("ip", "link", "set", self.veth_root, "up")
        self.ns_exec("ip", "link", "set", "lo", "up")
        self.ns_exec("ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.veth_ns)
        self.ns_exec("ip", "link", "set", self.veth_ns, "up")
        return None

    @property
    def root_ip(self):
        return f"10.213.{self.x}.1"

    @property
    def ns_ip(self):
        return f"10.213.{self.x}.2"

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def ns_exec(self, *argv):
        return sh(*self.exec_prefix(), *argv)

    def cut(self):
        self.ns_exec("ip", "link", "set", self.veth_ns, "down")

    def heal(self):
        self.ns_exec("ip", "link", "set", self.veth_ns, "up")

    def destroy(self):
        if not self.made:
            return
        # deleting the namespace deletes the veth end inside it, and with it
        # the pair; delete the root end too in case it was never moved
        sh("ip", "netns", "del", self.ns, check=False)
        if sh("ip", "link", "show", self.veth_root, check=False).returncode == 0:
            sh("ip", "link", "del", self.veth_root, check=False)
        self.made = False


class PartitionCluster(local.Cluster):
    """local.Cluster's process handling (start by PID file, setsid, logs,
    kill by PID) over this test's own process table: etcd, store-1 in the
    namespace, store-2/3 and a writer in the root namespace, a writer in
    the namespace."""

    def __init__(self, state, bin_dir, net):
        ports = dict(local.DEFAULT_PORTS)
        ports["etcd"] = local.free_port()
        ports["etcd_peer"] = local.free_port()
        super().__init__(state, bin_dir, ports, stores=3, queues=0, lease_ttl=TTL_S,
                         partitions=PARTITIONS)
        self.net = net
        self.node_ports = {f"store-{i}": local.free_port() for i in (1, 2, 3)}
        # store-1 and writer-ns reach etcd at the root end of the veth
        self.etcd_extra_sans = [f"IP:{net.root_ip}"]

    def etcd_ns_url(self):
        return f"https://{self.net.root_ip}:{self.ports['etcd']}"

    def ensure_node_cert(self, name, role, sans=None):
        # the stores listen off loopback: their certificates name their IPs
        if role == "store":
            sans = f"IP:{self.store_host(name)}"
        super().ensure_node_cert(name, role, sans)

    def start(self, name, wait=True, timeout=20):
        if name.startswith("writer") and not self.pid(name):
            # the writers deliver and read: an admin certificate
            self.ensure_tls()
            self.ensure_node_cert(name, "admin")
        return super().start(name, wait, timeout)

    def store_host(self, name):
        return self.net.ns_ip if name == "store-1" else self.net.root_ip

    def specs(self):
        data = os.path.join(self.state, "data")
        e, ep = self.ports["etcd"], self.ports["etcd_peer"]
        out = [("etcd", "etcd", f"127.0.0.1:{e}", [
            "etcd", "--name", "m1", "--data-dir", os.path.join(data, "etcd"),
            "--logger", "zap", "--log-level", "error",
            "--listen-client-urls", f"https://127.0.0.1:{e},{self.etcd_ns_url()}",
            "--advertise-client-urls", f"https://127.0.0.1:{e}",
            "--listen-peer-urls", f"https://127.0.0.1:{ep}",
            "--initial-advertise-peer-urls", f"https://127.0.0.1:{ep}",
            "--initial-cluster", f"m1=https://127.0.0.1:{ep}",
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            *self.etcd_server_args(), *local.ETCD_BCRYPT,
            *local.ETCD_COMPACTION, "--quota-backend-bytes", str(local.ETCD_QUOTA_BYTES)], e)]
        for i in (1, 2, 3):
            name = f"store-{i}"
            inside = name == "store-1"
            host, port = self.store_host(name), self.node_port(name)
            argv = [os.path.join(self.bin, "store-node"), "--id", name,
                    "--listen", f"{host}:{port}", "--data", os.path.join(data, name),
                    *self.etcd_args(name, self.etcd_ns_url() if inside else None),
                    "--partitions", str(PARTITIONS), "--replicas", "3",
                    "--lease-ttl", str(TTL_S)] + self.node_tls_args(name)
            out.append((name, "store", f"{host}:{port}",
                        (self.net.exec_prefix() if inside else []) + argv, port))
        for name, inside in (("writer-ns", True), ("writer-root", False)):
            # a writer reads the ring as a frontend does
            argv = [os.path.join(self.bin, "store-writer"),
                    *self.etcd_args("frontend", self.etcd_ns_url() if inside else None),
                    "--prefix", "ns" if inside else "root", "--users", ",".join(USERS),
                    "--interval-ms", "40", "--deadline-ms", str(WRITER_DEADLINE_MS),
                    "--retry-ms", "500"] + (["--reads"] if inside else [])
            argv += self.node_tls_args(name)
            out.append((name, "writer", "-", (self.net.exec_prefix() if inside else []) + argv,
                        None))
        return out

    def wait_ready(self, name, timeout=20):
        _, role, _, _, port = self.spec(name)
        if role != "store":
            return super().wait_ready(name, timeout) if role == "etcd" else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pid(name):
                raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
            if local.port_open(port, self.store_host(name)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready after {timeout}s")

    def down(self):
        for name, *_ in reversed(self.specs()):
            self.kill(name)


# ---- observing ----------------------------------------------------------

LINE = re.compile(r"^(ok|err) (\S+) (\S+) (.*)$")


def writer_lines(c, name):
    """Every finished attempt of writer `name` so far, as dicts."""
    out = []
    try:
        with open(c.logfile(name), errors="replace") as f:
            for line in f:
                m = LINE.match(line.rstrip("\n"))
                if not m:
                    continue
                kv = dict(p.split("=", 1) for p in m.group(4).split() if "=" in p)
                rec = {"ok": m.group(1) == "ok", "id": m.group(2), "user": kv.get("user"),
                       "start": int(kv["start"]) / 1000.0, "end": int(kv["end"]) / 1000.0}
                if rec["ok"]:
                    rec["uid"] = int(m.group(3))
                    rec["uidvalidity"] = int(kv["uidvalidity"])
                    rec["dup"] = kv.get("dup") == "1"
                else:
                    rec["status"] = m.group(3)
                out.append(rec)
    except OSError:
        pass
    return out


READ = re.compile(r"^read (\S+) (\S+) exists=(\d+) uidnext=\d+ uidvalidity=\d+ "
                  r"start=(\d+) end=(\d+)$")


def reader_lines(c, name):
    """Every select of writer `name` (--reads) so far, as dicts."""
    out = []
    try:
        with open(c.logfile(name), errors="replace") as f:
            for line in f:
                m = READ.match(line.rstrip("\n"))
                if m:
                    out.append({"user": m.group(1), "status": m.group(2),
                                "exists": int(m.group(3)), "start": int(m.group(4)) / 1000.0,
                                "end": int(m.group(5)) / 1000.0})
    except OSError:
        pass
    return out


def partitions(c):
    """{partition: (primary, replicas, insync)} from `mailctl partitions`."""
    r = c.mailctl("partitions", "--role", "store", check=False)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^store (\d+) epoch=\d+ primary=(\S+?)(\(down\))? replicas=(\S+) "
                     r"insync=(\S+)( lag=\S+)?$", line)
        if m:
            out[int(m.group(1))] = (m.group(2), m.group(4).split(","), m.group(5).split(","))
    return out


def wait_for(what, fn, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_stable_primaries(c, quiet_s=3.0, timeout=60):
    """{partition: primary} once no primary changed for quiet_s."""
    last, since = None, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        now = {k: v[0] for k, v in partitions(c).items()}
        if now != last:
            last, since = now, time.monotonic()
        elif len(now) == PARTITIONS and time.monotonic() - since >= quiet_s:
            return now
        time.sleep(0.2)
    raise AssertionError(f"primaries still moving after {timeout}s")


def all_parts(c, pred):
    p = partitions(c)
    return len(p) == PARTITIONS and all(pred(*v) for v in p.values())


def oks(lines, since=None):
    """The acknowledged attempts, of writes started at or after `since`."""
    return [l for l in lines if l["ok"] and (since is None or l["start"] >= since)]


# ---- the offline audit -----------------------------------------------------

def dump(c, name):
    return e2e_harness.mailstore_dump(c, name, USERS)


def parse_dump(text):
    return e2e_harness.parse_mailstore_dump(text)


def audit(dumps, acked):
    """Problems found comparing the replicas' dumps with the acks."""
    problems = e2e_harness.dumps_differ(dumps)
    for name in sorted(dumps):
        boxes = parse_dump(dumps[name])
        for user in USERS:
            box = boxes.get(user)
            mine = [a for a in acked if a["user"] == user]
            if box is None:
                if mine:
                    problems.append(f"{name}: {user} has no INBOX but {len(mine)} acks")
                continue
            uids = [u for u, _, _ in box["msgs"]]
            if uids != sorted(set(uids)):
                problems.append(f"{name}: {user}: uids not strictly increasing")
            if uids and box["uidnext"] <= max(uids):
                problems.append(f"{name}: {user}: uidnext {box['uidnext']} <= uid {max(uids)}")
            by_id = {}
            for uid, did, _ in box["msgs"]:
                by_id.setdefault(did, []).append(uid)
            for did, us in by_id.items():
                if len(us) != 1:
                    problems.append(f"{name}: {user}: {did} stored {len(us)} times (uids {us})")
            for a in mine:
                got = by_id.get(a["id"], [])
                if got != [a["uid"]]:
                    problems.append(f"{name}: {user}: acked {a['id']} uid {a['uid']}, "
                                    f"stored at {got}")
                if a["uidvalidity"] != box["uidvalidity"]:
                    problems.append(f"{name}: {user}: acked {a['id']} with uidvalidity "
                                    f"{a['uidvalidity']}, mailbox has {box['uidvalidity']}")
    return problems


# ---- the test ---------------------------------------------------------------

def run_test(c, net, check):
    c.start("etcd")
    c.start("store-1")
    wait_for("store-1 primary of every partition",
             lambda: all_parts(c, lambda p, r, i: p == "store-1"), 20)
    c.start("store-2")
    c.start("store-3")
    wait_for("three in-sync replicas everywhere",
             lambda: all_parts(c, lambda p, r, i: len(i) == 3), 30)
    # The controller then moves primaries to their preferred nodes (one
    # partition per pass): wait until the primaries hold still, and write
    # to users whose partition store-1 leads (placement is deterministic).
    primaries = wait_stable_primaries(c)
    led = sorted(p for p, prim in primaries.items() if prim == "store-1")
    assert led, f"store-1 leads no partition: {primaries}"
    pool = (f"cut{i}@example.test" for i in range(100000))
    USERS[:] = [u for u in pool if e2e_harness.partition_of(u, PARTITIONS) in led][:6]
    print(f"store-1 leads partitions {led}; users {USERS}", flush=True)
    c.start("writer-ns")
    c.start("writer-root")

    def before():
        wait_for("acks from both writers", lambda: all(
            len(oks(writer_lines(c, w))) >= 10 for w in ("writer-ns", "writer-root")), 20)
    check("both_writers_acked_before_cut", before)

    net.cut()
    t_cut = time.time()
    print(f"cut at {t_cut:.3f} (namespace side of the veth down)", flush=True)

    def root_resumes():
        first = wait_for("a root-writer ack for a write started after the cut",
                         lambda: oks(writer_lines(c, "writer-root"), since=t_cut),
                         RESUME_BOUND_S + 5, step=0.05)
        resume = min(a["end"] for a in first) - t_cut
        before = [a["end"] for a in oks(writer_lines(c, "writer-root")) if a["end"] < t_cut]
        gap = min(a["end"] for a in first) - (max(before) if before else t_cut)
        print(f"root writer: first ack of a write started after the cut "
              f"{resume:.2f}s after the cut; ack gap across the cut {gap:.2f}s", flush=True)
        assert resume <= RESUME_BOUND_S, f"resumed after {resume:.2f}s > {RESUME_BOUND_S}s"
    check("root_writer_resumes_during_cut", root_resumes)

    def cut_promoted():
        wait_for("store-1 out of every primary slot and in-sync set", lambda: all_parts(
            c, lambda p, r, i: p != "store-1" and "store-1" not in i),
            RESUME_BOUND_S - (time.time() - t_cut))
        print(f"every partition promoted {time.time() - t_cut:.2f}s after the cut",
              flush=True)
    check("new_primaries_during_cut", cut_promoted)
    left = CUT_HOLD_S - (time.time() - t_cut)
    if left > 0:
        time.sleep(left)

    net.heal()
    t_heal = time.time()
    print(f"healed at {t_heal:.3f} (cut held {t_heal - t_cut:.2f}s)", flush=True)

    def ns_silent():
        lines = writer_lines(c, "writer-ns")
        tried = [l for l in lines if t_cut <= l["start"] and l["end"] < t_heal]
        # a write started just before the cut may still have had its
        # acks back in time: allow those a moment, nothing more
        acked = [l for l in lines if l["ok"] and l["end"] < t_heal and
                 (l["start"] >= t_cut or l["end"] >= t_cut + 0.5)]
        statuses = sorted({l["status"] for l in tried if not l["ok"]})
        print(f"namespace writer during the cut: {len(tried)} attempts ended, "
              f"{len(acked)} acked, errors {statuses}", flush=True)
        assert not acked, f"acked during the cut: {acked[:3]}"
        assert tried, "the namespace writer made no attempt during the cut"
    check("ns_writer_no_ack_during_cut", ns_silent)

    # The cut-off primary must not answer reads from its own state once a
    # replacement may exist: it stops serving reads when its lease may
    # have expired (router_member_lease_valid_until). A read is stale when
    # it shows fewer messages than were acknowledged before it started.
    def no_stale_reads():
        acked = oks(writer_lines(c, "writer-ns")) + oks(writer_lines(c, "writer-root"))
        reads = [r for r in reader_lines(c, "writer-ns")
                 if r["status"] == "ok" and t_cut <= r["start"] and r["end"] < t_heal]
        stale = [r for r in reads if r["exists"] < len({a["id"] for a in acked
                                                        if a["user"] == r["user"]
                                                        and a["end"] < r["start"]})]
        print(f"namespace reads during the cut: {len(reads)} answered, {len(stale)} stale "
              "(missing acknowledged messages)", flush=True)
        assert not stale, f"stale reads from the cut-off primary: {stale[:3]}"
    check("no_stale_reads_during_cut", no_stale_reads)

    def rejoin():
        wait_for("store-1 back in every in-sync set", lambda: all_parts(
            c, lambda p, r, i: "store-1" in i and len(i) == 3),
            REJOIN_BOUND_S)
        print(f"store-1 in-sync everywhere (as a replica) {time.time() - t_heal:.2f}s "
              "after the heal", flush=True)
    check("old_primary_rejoins_as_replica", rejoin)

    def truncated():
        # the namespace writer's proposals during the cut made store-1 append
        # entries nobody acknowledged; healing must have dropped them
        n = sum(1 for l in open(c.logfile("store-1"), errors="replace")
                if "event=truncate " in l)
        print(f"store-1 truncated an unacknowledged tail on {n} partition(s)", flush=True)
        assert n > 0, "store-1 had no unacknowledged tail to drop: the cut tested nothing"
    check("old_primary_dropped_unacked_tail", truncated)

    def ns_resumes():
        first = wait_for("a namespace-writer ack for a write started after the heal",
                         lambda: oks(writer_lines(c, "writer-ns"), since=t_heal), 30)
        print(f"namespace writer: first ack {min(a['end'] for a in first) - t_heal:.2f}s "
              "after the heal", flush=True)
    check("ns_writer_acked_after_heal", ns_resumes)

    for w in ("writer-ns", "writer-root"):
        c.kill(w)
    # the replicas learn the last commit index from the next heartbeat
    # (100 ms): give them a moment before stopping the nodes
    time.sleep(1.5)
    print(c.mailctl("partitions", "--role", "store", check=False).stdout.rstrip(), flush=True)
    for n in ("store-1", "store-2", "store-3"):
        c.kill(n)

    def no_divergence():
        dumps = {n: dump(c, n) for n in ("store-1", "store-2", "store-3")}
        acked = oks(writer_lines(c, "writer-ns")) + oks(writer_lines(c, "writer-root"))
        ids = {a["id"] for a in acked}
        stored = sum(len(b["msgs"]) for b in parse_dump(dumps["store-2"]).values())
        print(f"audit: {len(acked)} acks for {len(ids)} delivery ids; {stored} messages "
              f"on each replica ({stored - len(ids)} never acked)", flush=True)
        problems = audit(dumps, acked)
        for w in ("writer-ns", "writer-root"):
            bad = {l["status"] for l in writer_lines(c, w) if not l["ok"]} - TEMPORARY
            if bad:
                problems.append(f"{w}: non-temporary errors {sorted(bad)}")
        for p in problems[:20]:
            print("  " + p)
        assert not problems, f"{len(problems)} problems"
    check("replicas_identical_and_acks_exactly_once", no_divergence)


def main():
    net = Net()
    state = tempfile.mkdtemp(prefix="mail-partition-")
    c = None
    passed, failed = [], []
    check = e2e_harness.checker(passed, failed)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    try:
        reason = net.create()
        if reason:
            print(f"SKIP e2e_partition: {reason}", flush=True)
            return SKIP
        c = PartitionCluster(state, e2e_harness.bin_dir(), net)
        run_test(c, net, check)
    except BaseException:
        failed.append("setup")
        traceback.print_exc()
    finally:
        pids = []
        if c is not None:
            pids = [c.pid(name) for name, *_ in c.specs()]
            c.down()
            left = [p for p in pids if p and local.pid_alive(p)]
            if left:
                failed.append("down_leaves_nothing")
                print(f"FAIL processes left after down: {left}")
            if failed:
                for name, *_ in c.specs():
                    print(f"--- {name} log tail ---\n{c.log_tail(name, 15)}")
        net.destroy()
        if os.environ.get("MAIL_KEEP_TMP"):
            print(f"kept {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
