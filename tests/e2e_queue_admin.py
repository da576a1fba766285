#!/usr/bin/python3
"""End-to-end: `mailctl queue` (issue 10 item 7; docs/outbound.md "Queue
administration") against a cluster of three queue nodes, each leading a
share of the partitions, so every command has to ask all of them.

The cluster resolves through a DNS server of ours (tests/support/dnszone.py)
whose MX hosts for dead.test and slow.test are 127.0.0.1, and delivers to
remote MXs on a port where nothing listens: every attempt fails with a
refused connection and the messages stay queued, deferred (the first retry
is a minute later). Mail is submitted with AUTH over STARTTLS; the queue
id comes from the 250 reply to DATA. Checks:
  * list (text and --json) shows each message once, deferred, with its
    attempts, last error, pending recipients' domains and answering node;
  * --domain and --state filters; show (text and --json): the envelope and
    each recipient's state (the local recipient delivered, the remote one
    deferred with the reply);
  * hold -> state held (list --state held, show) -> release -> deferred
    again after a new attempt; retry QID, --domain D and --all make new
    attempts (the attempt count moves) and say how many messages;
  * delete: gone from list, `queue show` of it exits 2 (so do hold and
    retry of an unknown queue id); delete --bounce: gone, and the DSN
    reaches the sender's INBOX;
  * stats (text and --json): counts by state, an age histogram and the
    top destination domains agree with list;
  * the node options: from the command line instead of the settings file;
    without them (plaintext against node TLS) exit 4; a certificate whose
    role is not admin (a frontend's) is refused, exit 5.
Run with Debian's /usr/bin/python3 (python3-dnslib).
"""
import email
import email.policy
import imaplib
import json
import os
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

USER, PASSWORD = "dora@example.test", "queue admin pass"

ZONE = """
$ORIGIN test.
$TTL 60
dead        IN MX 10 mx.dead.test.
mx.dead     IN A 127.0.0.1
slow        IN MX 10 mx.slow.test.
mx.slow     IN A 127.0.0.1
"""


def wait_for(fn, timeout=60, what="the condition"):
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
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


class QueueAdmin:
    def __init__(self, c):
        self.c = c
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))
        self.qid = {}   # name -> queue id

    # ---- helpers --------------------------------------------------------

    def mailctl(self, *args, env=None, check=False):
        r = subprocess.run([os.path.join(self.c.bin, "mailctl"), *args],
                           capture_output=True, text=True, timeout=90,
                           env=env or self.c.mailctl_env())
        if check:
            assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r

    def queue_json(self, *args):
        r = self.mailctl("queue", *args, "--json", check=True)
        return json.loads(r.stdout)

    def listed(self, *args):
        """{queue id: summary} of `queue list ARGS --json`."""
        out = self.queue_json("list", *args)
        ids = [m["queue_id"] for m in out["messages"]]
        assert len(ids) == len(set(ids)), f"a message listed twice: {ids}"
        return {m["queue_id"]: m for m in out["messages"]}

    def mine(self, listing):
        """The part of a listing that is this test's messages, by name."""
        by_id = {v: k for k, v in self.qid.items()}
        return {by_id[q]: m for q, m in listing.items() if q in by_id}

    def submit(self, name, rcpts):
        body = (f"From: {USER}\r\nTo: {', '.join(rcpts)}\r\nSubject: queue admin {name}\r\n"
                f"\r\nmessage {name}\r\n")
        self.qid[name] = e2e_harness.submit(self.c, self.ctx, USER, PASSWORD, rcpts,
                                            body.encode(), helo="client.test")

    def attempts(self, name):
        return self.queue_json("show", self.qid[name])["attempts"]

    def conf_env(self, drop_node=False, node_cert=None):
        """An environment whose settings file is the cluster's without the
        node lines (drop_node) or with another certificate (node_cert:
        the name of a process's certificate in state/tls/)."""
        with open(self.c.mailctl_conf()) as f:
            lines = [l for l in f.read().splitlines()
                     if not (drop_node or node_cert) or
                     not l.startswith(("node-cert", "node-key", "cluster-ca"))]
        if node_cert:
            d = self.c.tls_dir()
            lines += [f"node-cert = {os.path.join(d, node_cert + '.pem')}",
                      f"node-key = {os.path.join(d, node_cert + '.key')}",
                      f"cluster-ca = {os.path.join(d, 'ca.pem')}"]
        path = os.path.join(self.c.state, f"mailctl-{node_cert or 'plain'}.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return dict(os.environ, MAIL_ETCD_CONF=path)

    # ---- checks ---------------------------------------------------------

    def submit_all(self):
        self.submit("m1", ["bob@dead.test"])
        self.submit("m2", [USER, "carol@slow.test"])
        self.submit("m3", ["x@dead.test", "y@dead.test"])

        def deferred():
            mine = self.mine(self.listed())
            assert set(mine) == {"m1", "m2", "m3"}, mine
            for name, m in mine.items():
                assert m["state"] == "deferred" and m["attempts"] >= 1, (name, m)
            return mine
        wait_for(deferred, what="the three messages deferred")

    def list_json(self):
        mine = self.mine(self.listed())
        nodes = {f"queue-{i}" for i in (1, 2, 3)}
        for name, m in mine.items():
            assert m["node"] in nodes, m
            assert m["mail_from"] == USER, m
            assert m["last_error"].startswith("4"), m
            assert m["size"] > 0 and m["age_s"] >= 0 and m["received_at"] > 0, m
            assert m["next_attempt_at"] > time.time() * 1000, m
        assert mine["m1"]["domains"] == ["dead.test"] and mine["m1"]["rcpts"] == 1
        assert mine["m3"]["domains"] == ["dead.test"] and mine["m3"]["pending"] == 2
        # m2's local recipient is delivered: one of two pending, slow.test only
        assert mine["m2"]["domains"] == ["slow.test"], mine["m2"]
        assert (mine["m2"]["rcpts"], mine["m2"]["pending"]) == (2, 1), mine["m2"]

    def list_text(self):
        out = self.mailctl("queue", "list", check=True).stdout
        lines = out.splitlines()
        assert lines[0].startswith("QUEUE ID"), out
        for name in ("m1", "m2", "m3"):
            row = [l for l in lines if l.startswith(self.qid[name])]
            assert len(row) == 1 and " deferred " in row[0], (name, out)
        assert "dead.test" in out and "slow.test (1/2)" in out, out
        assert "last error: 4" in out, out
        assert lines[-1].startswith("-- ") and "message" in lines[-1], out

    def filters(self):
        assert set(self.mine(self.listed("--domain", "slow.test"))) == {"m2"}
        assert set(self.mine(self.listed("--domain", "DEAD.test"))) == {"m1", "m3"}
        # m2's delivered recipient's domain does not select it
        assert not self.mine(self.listed("--domain", "example.test"))
        assert set(self.mine(self.listed("--state", "deferred"))) == {"m1", "m2", "m3"}
        assert not self.mine(self.listed("--state", "held"))
        assert not self.mine(self.listed("--state", "active"))
        assert set(self.mine(self.listed("--state", "deferred", "--domain", "slow.test"))) \
            == {"m2"}
        r = self.mailctl("queue", "list", "--state", "stuck")
        assert r.returncode == 1 and "--state" in r.stderr, (r.returncode, r.stderr)
        r = self.mailctl("queue", "list", "--domain", "not a domain")
        assert r.returncode == 1, (r.returncode, r.stderr)

    def show(self):
        s = self.queue_json("show", self.qid["m2"])
        assert s["queue_id"] == self.qid["m2"] and s["state"] == "deferred", s
        assert s["auth_user"] == USER and s["helo"] == "client.test", s
        assert s["client_addr"].startswith("127.0.0.1"), s
        rc = {r["addr"]: r for r in s["recipients"]}
        assert set(rc) == {USER, "carol@slow.test"}, rc
        local, remote = rc[USER], rc["carol@slow.test"]
        assert local["done"] and not local["remote"], local
        assert remote["remote"] and not remote["done"], remote
        assert remote["status"] == "deferred", remote
        assert remote["enh"].startswith("4.") and remote["text"], remote
        assert remote["at"] > 0, remote
        out = self.mailctl("queue", "show", self.qid["m2"], check=True).stdout
        for want in (f"queue id:     {self.qid['m2']}", "state:        deferred",
                     f"sender:       {USER}", "recipients:   2 (1 pending)", "carol@slow.test",
                     "remote deferred", "next attempt: in "):
            assert want in out, (want, out)

    def hold_release(self):
        q = self.qid["m3"]
        r = self.mailctl("queue", "hold", q, check=True)
        assert r.stdout.strip() == f"{q}: held", r.stdout
        assert set(self.mine(self.listed("--state", "held"))) == {"m3"}
        s = self.queue_json("show", q)
        assert s["state"] == "held", s
        assert "next attempt: held" in self.mailctl("queue", "show", q, check=True).stdout
        before = s["attempts"]
        r = self.mailctl("queue", "release", q, check=True)
        assert r.stdout.strip() == f"{q}: released", r.stdout
        assert not self.mine(self.listed("--state", "held"))
        # released: attempted now, deferred again
        wait_for(lambda: self.attempts("m3") > before, what="an attempt after release")
        wait_for(lambda: self.queue_json("show", q)["state"] == "deferred",
                 what="m3 deferred again")

    def retry(self):
        before = {n: self.attempts(n) for n in ("m1", "m2", "m3")}
        r = self.mailctl("queue", "retry", self.qid["m1"], check=True)
        assert r.stdout.strip() == f"{self.qid['m1']}: retry now", r.stdout
        wait_for(lambda: self.attempts("m1") > before["m1"], what="m1's retry")
        r = self.mailctl("queue", "retry", "--domain", "dead.test", check=True)
        assert r.stdout.strip() == "2 messages: retry now", r.stdout
        wait_for(lambda: self.attempts("m3") > before["m3"], what="m3's retry")
        r = self.mailctl("queue", "retry", "--all", check=True)
        n = int(r.stdout.split()[0])
        assert n >= 3 and r.stdout.strip().endswith("retry now"), r.stdout
        wait_for(lambda: self.attempts("m2") > before["m2"], what="m2's retry")
        for args in (["retry"], ["retry", "--all", self.qid["m1"]], ["hold"],
                     ["hold", "--all"], ["delete", "--domain", "dead.test"]):
            r = self.mailctl("queue", *args)
            assert r.returncode == 1, (args, r.returncode, r.stderr)

    def stats(self):
        mine = self.mine(self.listed())
        listed = self.listed()
        st = self.queue_json("stats")
        assert st["messages"] == len(listed), (st, len(listed))
        by_state = {k: sum(1 for m in listed.values() if m["state"] == k)
                    for k in ("active", "deferred", "held")}
        assert st["by_state"] == by_state, (st["by_state"], by_state)
        assert sum(b["messages"] for b in st["age"]) == st["messages"], st["age"]
        assert st["age"][0]["bucket"] == "< 5m" and st["age"][0]["messages"] >= len(mine)
        top = {d["domain"]: d["messages"] for d in st["top_domains"]}
        assert top.get("dead.test", 0) >= 2 and top.get("slow.test", 0) >= 1, top
        assert st["bytes"] >= sum(m["size"] for m in mine.values()), st
        out = self.mailctl("queue", "stats", check=True).stdout
        assert f"messages: {len(listed)} " in out, out
        assert "top destination domains" in out and "dead.test" in out, out
        assert "< 5m" in out, out

    def unknown(self):
        for args in (["show", "0" * 24], ["hold", "0" * 24], ["retry", "0" * 24],
                     ["delete", "0" * 24]):
            r = self.mailctl("queue", *args)
            assert r.returncode == 2 and "not found" in r.stderr, (args, r.returncode, r.stderr)
        r = self.mailctl("queue", "show", "not-a-qid")
        assert r.returncode == 1 and "not a queue id" in r.stderr, (r.returncode, r.stderr)

    def delete(self):
        q = self.qid["m3"]
        r = self.mailctl("queue", "delete", q, check=True)
        assert r.stdout.strip() == f"{q}: deleted", r.stdout
        assert q not in self.listed()
        r = self.mailctl("queue", "show", q)
        assert r.returncode == 2 and "not found" in r.stderr, (r.returncode, r.stderr)
        r = self.mailctl("queue", "delete", q)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert set(self.mine(self.listed())) == {"m1", "m2"}

    def delete_bounce(self):
        q = self.qid["m1"]
        r = self.mailctl("queue", "delete", q, "--bounce", check=True)
        assert r.stdout.strip() == f"{q}: deleted, bounce queued", r.stdout
        assert q not in self.listed()
        assert self.mailctl("queue", "show", q).returncode == 2

        def dsn():
            m = imaplib.IMAP4_SSL("localhost", self.c.ports["imaps"], ssl_context=self.ctx,
                                  timeout=30)
            try:
                m.login(USER, PASSWORD)
                typ, data = m.select("INBOX", readonly=True)
                n = int(data[0])
                found = []
                if n:
                    typ, data = m.fetch(f"1:{n}", "(BODY.PEEK[])")
                    for item in data:
                        if not isinstance(item, tuple):
                            continue
                        msg = email.message_from_bytes(item[1], policy=email.policy.default)
                        if msg.get_content_type() == "multipart/report" and \
                                b"queue admin m1" in item[1]:
                            found.append(msg)
                return found
            finally:
                m.logout()
        found = wait_for(dsn, what="the DSN of m1 in the sender's INBOX")
        text = found[0].as_string()
        assert "bob@dead.test" in text and "failed" in text.lower(), text[-2000:]

    def node_options(self):
        plain = self.conf_env(drop_node=True)
        # the same certificate, from the command line
        d = self.c.tls_dir()
        r = self.mailctl("--node-cert", os.path.join(d, "mailctl.pem"),
                         "--node-key", os.path.join(d, "mailctl.key"),
                         "--cluster-ca", os.path.join(d, "ca.pem"),
                         "queue", "list", env=plain)
        assert r.returncode == 0 and self.qid["m2"] in r.stdout, (r.returncode, r.stderr)
        r = self.mailctl("--node-cert", os.path.join(d, "mailctl.pem"), "queue", "list",
                         env=plain)
        assert r.returncode == 1 and "go together" in r.stderr, (r.returncode, r.stderr)
        # no node options: plaintext against node TLS, refused at the handshake
        r = self.mailctl("queue", "list", env=plain)
        assert r.returncode == 4, (r.returncode, r.stderr)
        assert "unreachable" in r.stderr and "--node-cert" in r.stderr, r.stderr
        # a node certificate that is not an admin's
        r = self.mailctl("queue", "list", env=self.conf_env(node_cert="frontend-1"))
        assert r.returncode == 5 and "permission denied" in r.stderr, (r.returncode, r.stderr)
        assert r.stderr.count("queue node") == 3, r.stderr   # each node said no
        r = self.mailctl("queue", "hold", self.qid["m2"],
                         env=self.conf_env(node_cert="frontend-1"))
        assert r.returncode == 5, (r.returncode, r.stderr)
        assert self.queue_json("show", self.qid["m2"])["state"] != "held"


def main():
    zone = dnszone.ZoneServer(ZONE)
    zone.__enter__()
    dead_port = local.free_port()   # nothing listens there: connections refused

    def body(c, check):
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        t = QueueAdmin(c)
        check("submit_and_deferred", t.submit_all)
        check("list_json", t.list_json)
        check("list_text", t.list_text)
        check("filters", t.filters)
        check("show", t.show)
        check("stats", t.stats)
        check("unknown_queue_id", t.unknown)
        check("node_options", t.node_options)
        check("hold_release", t.hold_release)
        check("retry", t.retry)
        check("delete", t.delete)
        check("delete_bounce", t.delete_bounce)

    try:
        return e2e_harness.run("queue-admin-e2e-", body, lease_ttl=3, stores=1, queues=3,
                               dns=zone.server, smtp_out_port=dead_port)
    finally:
        zone.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
