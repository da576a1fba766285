#!/usr/bin/python3
"""End-to-end: `mailctl status` (issue 12 item 6; docs/status.md) against
a cluster of three store and three queue nodes (lease TTL 3 s).

Mail to dead.test stays queued: our DNS server (tests/support/dnszone.py)
points its MX at 127.0.0.1, and remote delivery goes to a port where
nothing listens, so every attempt is refused and the message is deferred.
Checks:
  * healthy: exit 0, health "ok", every store and queue node listed alive
    under its role, each tenant's user count right after adding users,
    the queue's depth and states equal to what `queue stats --json` says;
    the text screen names every node; usage errors exit 1; etcd
    unreachable exits 4 with etcd.reachable false;
  * --watch 1 prints a screen a second until SIGINT (exit 0); with --json
    one object per line;
  * kill -9 of the store node leading most partitions: status shows it
    dead, and within the lease TTL (plus the controller's reaction) the
    partitions it led have live primaries elsewhere while its copies make
    them under-replicated; every sample's exit code agrees with what it
    shows (5 while a partition has no live primary, else 4: a dead node).
Run with Debian's /usr/bin/python3 (python3-dnslib). ~25 s.
"""
import json
import os
import signal
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "support"))
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402
import dnszone  # noqa: E402

TENANTS = {"alpha.test": ["ann", "bob", "cid"], "beta.test": ["dee"], "gamma.test": []}
SENDER, PASSWORD = "ann@alpha.test", "status test pass"
LEASE_TTL = 3

ZONE = """
$ORIGIN test.
$TTL 60
dead        IN MX 10 mx.dead.test.
mx.dead     IN A 127.0.0.1
"""


def wait_for(fn, timeout, what):
    """fn() until it returns something true (returned), or fail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = fn()
            if r:
                return r
        except AssertionError as e:
            last = e
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


class Status:
    def __init__(self, c):
        self.c = c
        self.qids = []
        self.killed = None

    def mailctl(self, *args, env=None, timeout=60):
        return subprocess.run([os.path.join(self.c.bin, "mailctl"), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=env or self.c.mailctl_env())

    def status(self):
        """(exit code, the parsed --json object)."""
        r = self.mailctl("status", "--json")
        assert r.returncode in (0, 4, 5), (r.returncode, r.stdout, r.stderr)
        try:
            return r.returncode, json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"not JSON: {r.stdout!r} {r.stderr}")

    def nodes(self, st, role):
        return {n["id"]: n for n in st["nodes"][role]}

    # ---- checks ---------------------------------------------------------

    def setup(self):
        for domain, users in TENANTS.items():
            self.c.mailctl("tenant", "add", domain)
            for u in users:
                self.c.mailctl("user", "add", f"{u}@{domain}", stdin=PASSWORD + "\n")
        ctx = ssl.create_default_context(cafile=os.path.join(self.c.tls_dir(), "ca.pem"))
        for i in range(3):
            body = (f"From: {SENDER}\r\nTo: x{i}@dead.test\r\nSubject: status {i}\r\n"
                    f"\r\nstays queued\r\n").encode()
            self.qids.append(e2e_harness.submit(self.c, ctx, SENDER, PASSWORD,
                                                [f"x{i}@dead.test"], body))

        def deferred():
            out = json.loads(self.mailctl("queue", "list", "--json").stdout)
            mine = [m for m in out["messages"] if m["queue_id"] in self.qids]
            return len(mine) == 3 and all(m["state"] == "deferred" for m in mine)
        wait_for(deferred, 30, "the three messages deferred")

    def healthy(self):
        def ok():
            rc, st = self.status()
            assert rc == 0 and st["health"] == "ok", (rc, st["health"], st["partitions"])
            return st
        st = wait_for(ok, 40, "exit 0 and health ok")
        assert st["version"] == 1 and st["exit"] == 0, st
        assert st["etcd"]["reachable"] and st["etcd"]["error"] is None, st["etcd"]
        assert st["controller"], st
        for role in ("store", "queue"):
            nodes = self.nodes(st, role)
            assert set(nodes) == {f"{role}-{i}" for i in (1, 2, 3)}, nodes
            for n in nodes.values():
                assert n["alive"] and n["address"].startswith("127.0.0.1:"), n
                assert not n["draining"] and n["held"] == 64, n
            assert sum(n["led"] for n in nodes.values()) == 64, nodes
            p = st["partitions"][role]
            assert p["map"] and p["partitions"] == 64 and p["replicas"] == 3, p
            assert p["healthy"] == 64 and p["unhealthy"] == [], p
        assert st["nodes"]["frontend"] == [], st["nodes"]

    def tenants(self):
        rc, st = self.status()
        counts = {t["domain"]: t["users"] for t in st["tenants"]}
        for domain, users in TENANTS.items():
            assert counts.get(domain) == len(users), (domain, counts)
        assert st["tenants_total"] == len(counts), st
        # one more user shows at once
        self.c.mailctl("user", "add", "eve@gamma.test", stdin=PASSWORD + "\n")
        rc, st = self.status()
        counts = {t["domain"]: t["users"] for t in st["tenants"]}
        assert counts["gamma.test"] == 1, counts

    def queue(self):
        rc, st = self.status()
        stats = json.loads(self.mailctl("queue", "stats", "--json").stdout)
        q = st["queue"]
        assert q["reachable"] and q["error"] is None, q
        assert q["nodes"] == 3 and q["answered"] == 3, q
        assert q["messages"] == stats["messages"] >= 3, (q, stats)
        assert q["by_state"] == stats["by_state"], (q["by_state"], stats["by_state"])
        assert q["by_state"]["deferred"] >= 3, q
        assert q["bytes"] == stats["bytes"], (q, stats)
        assert abs(q["oldest_age_s"] - stats["oldest_age_s"]) <= 2, (q, stats)
        assert q["partitions"] == 64 and q["unled_partitions"] == 0, q

    def text(self):
        r = self.mailctl("status")
        assert r.returncode == 0, (r.returncode, r.stderr)
        out = r.stdout
        assert out.startswith("cluster status ") and ": ok, exit 0" in out.splitlines()[0], out
        for role in ("store", "queue"):
            for i in (1, 2, 3):
                line = [l for l in out.splitlines() if l.split()[:2] == [role, f"{role}-{i}"]]
                assert len(line) == 1 and " alive " in line[0], (role, i, out)
        for want in ("PARTITIONS", "store: 64 partitions, R=3", "all healthy", "QUEUE",
                     "deferred", "TENANTS", "alpha.test"):
            assert want in out, (want, out)

    def usage(self):
        for args in (["status", "--bogus"], ["status", "--watch", "0"], ["status", "extra"]):
            r = self.mailctl(*args)
            assert r.returncode == 1, (args, r.returncode, r.stderr)
        # etcd where nothing listens: 4, said in the JSON and on stderr
        r = self.mailctl("--etcd", f"https://127.0.0.1:{local.free_port()}", "status", "--json")
        assert r.returncode == 4, (r.returncode, r.stderr)
        st = json.loads(r.stdout)
        assert not st["etcd"]["reachable"] and st["etcd"]["error"], st["etcd"]
        assert st["health"] == "unreachable" and st["nodes"]["store"] is None, st
        assert "etcd" in r.stderr, r.stderr

    def watch(self, *extra):
        """status --watch 1 EXTRA for ~5 s, then SIGINT: (exit, stdout)."""
        p = subprocess.Popen([os.path.join(self.c.bin, "mailctl"), "status", "--watch", "1",
                              *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=self.c.mailctl_env())
        try:
            time.sleep(5)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, (p.returncode, err)
        return out

    def watch_text(self):
        out = self.watch()
        screens = [l for l in out.splitlines() if l.startswith("cluster status ")]
        assert len(screens) >= 2, out

    def watch_json(self):
        out = self.watch("--json")
        lines = [l for l in out.splitlines() if l.strip()]
        assert len(lines) >= 2, out
        for l in lines:
            st = json.loads(l)
            assert st["exit"] == 0 and "queue" in st, st

    def kill_store(self):
        rc, st = self.status()
        nodes = self.nodes(st, "store")
        victim = max(sorted(nodes), key=lambda i: nodes[i]["led"])
        led_before = nodes[victim]["led"]
        assert led_before > 0, nodes
        self.killed = victim
        self.c.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        seen = []

        def moved():
            rc, st = self.status()
            p = st["partitions"]["store"]
            dead = [n for n in st["nodes"]["store"] if not n["alive"]]
            # the exit code agrees with what the sample shows
            if p["no_primary"] > 0:
                assert rc == 5 and st["health"] == "no_primary", (rc, st["health"])
            elif dead:
                assert rc == 4 and st["health"] == "unreachable", (rc, st["health"])
            seen.append((round(time.monotonic() - t0, 1), rc, p["no_primary"],
                         p["under_replicated"]))
            n = self.nodes(st, "store")[victim]
            return (not n["alive"] and n["led"] == 0 and p["no_primary"] == 0
                    and p["under_replicated"] > 0 and rc == 4 and st)
        st = wait_for(moved, 6 * LEASE_TTL, f"{victim}'s partitions led elsewhere")
        print(f"     after kill -9 {victim} (led {led_before}): (s, exit, no primary, "
              f"under-replicated) {seen}", flush=True)
        p = st["partitions"]["store"]
        assert p["healthy"] + len(p["unhealthy"]) == 64, p
        for u in p["unhealthy"]:
            assert "under_replicated" in u["problems"] and u["primary_live"], u
            assert u["primary"] != victim and victim not in u["insync"], u
        alive = [n for n in st["nodes"]["store"] if n["alive"]]
        assert sum(n["led"] for n in alive) == 64, st["nodes"]["store"]
        # the text screen and stderr say it too
        r = self.mailctl("status")
        assert r.returncode == 4, (r.returncode, r.stderr)
        line = [l for l in r.stdout.splitlines() if l.split()[:2] == ["store", victim]]
        assert len(line) == 1 and " dead " in line[0], r.stdout
        assert "under-replicated" in r.stdout, r.stdout
        assert f"store node {victim}: dead" in r.stderr, r.stderr


def main():
    zone = dnszone.ZoneServer(ZONE)
    zone.__enter__()
    dead_port = local.free_port()   # nothing listens there: connections refused

    def body(c, check):
        t = Status(c)
        check("setup_mail_queued", t.setup)
        check("healthy", t.healthy)
        check("tenant_user_counts", t.tenants)
        check("queue_depth_as_queue_stats", t.queue)
        check("text_screen", t.text)
        check("usage_and_etcd_unreachable", t.usage)
        check("watch_text", t.watch_text)
        check("watch_json", t.watch_json)
        check("kill_store_node", t.kill_store)

    try:
        return e2e_harness.run("mailctl-status-", body, stores=3, queues=3,
                               lease_ttl=LEASE_TTL, dns=zone.server,
                               smtp_out_port=dead_port)
    finally:
        zone.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
