#!/usr/bin/python3
"""End-to-end: two clusters of ours exchange mail over MX lookups (issue 10
item 9 (a); docs/outbound.md).

Cluster A hosts a.test (alice@a.test), cluster B hosts b.test
(bob@b.test); each has its own etcd, store, queue node and frontend, in
its own state dir. One DNS server of ours (tests/support/dnszone.py)
serves both: a.test MX mx.a.test, b.test MX mx.b.test, both 127.0.0.1.
The two MXs are told apart by port: A's queue node delivers to remote MXs
on --smtp-out-port = B's MX port, and B's on A's MX port. Checks:
  * alice submits (STARTTLS + AUTH) to bob@b.test; bob reads it over IMAP
    on B, byte for byte what alice sent once the Received: fields of both
    clusters (A's submission, B's MX) are taken off;
  * bob replies from B to alice@a.test; alice reads it on A;
  * alice writes to nosuchuser@b.test: B refuses it at RCPT (550 5.1.1),
    so A bounces: a DSN (multipart/report, Action failed, Status 5.1.1,
    Remote-MTA mx.b.test, Diagnostic-Code smtp; 550) in alice's INBOX on
    A, from MAILER-DAEMON; B's own mail is untouched;
  * DKIM: after `mailctl dkim generate a.test` on A, what bob receives
    carries a DKIM-Signature d=a.test that dkimpy verifies
    (lib/dkim/dkim-verify.py, the key from `mailctl dkim txt a.test`);
  * nothing arrives twice; both clusters go down and leave no process.
Run with Debian's /usr/bin/python3 (python3-dnslib, python3-dkim).
"""
import email
import email.policy
import re
import email.utils
import imaplib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "support"))
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402
import dnszone  # noqa: E402

ALICE, ALICE_PW = "alice@a.test", "alice pass 1"
BOB, BOB_PW = "bob@b.test", "bob pass 2"

ZONE = """
$ORIGIN test.
$TTL 60
a           IN MX 10 mx.a.test.
a           IN TXT "v=spf1 ip4:127.0.0.1 -all"
mx.a        IN A 127.0.0.1
b           IN MX 10 mx.b.test.
mx.b        IN A 127.0.0.1
"""

QUEUE_EXTRA = ["--retry-schedule", "2,3", "--smtp-out-timeout", "5",
               "--config-refresh-ms", "500"]


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def strip_received(raw):
    """(the Received: fields at the top of raw, what follows them and the
    receiving MX's Authentication-Results and Received-SPF)."""
    fields, rest = e2e_harness.split_trace(raw)
    return [f for f in fields if f.startswith(b"Received:")], rest


class Side:
    """One cluster and its user."""

    def __init__(self, c, user, password):
        self.c = c
        self.user = user
        self.password = password
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.state, "tls", "ca.pem"))

    def setup(self):
        domain = self.user.split("@", 1)[1]
        self.c.mailctl("tenant", "add", domain)
        self.c.mailctl("user", "add", self.user, stdin=self.password + "\n")

    def compose(self, to, subject, extra=""):
        """A message with its own Date and Message-ID (so submission adds
        none: what arrives is exactly this after the Received: fields)."""
        domain = self.user.split("@", 1)[1]
        return (f"From: <{self.user}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
                f"Date: {email.utils.formatdate()}\r\n"
                f"Message-ID: {email.utils.make_msgid(domain=domain)}\r\n{extra}"
                f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                f"\r\nHello from {subject}.\r\n.leading dot line\r\nbye\r\n").encode()

    def submit(self, to, msg):
        e2e_harness.submit(self.c, self.ctx, self.user, self.password, [to], msg)

    def inbox(self):
        """[raw bytes] of every message in INBOX (read-only, over IMAP
        with STARTTLS)."""
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
        try:
            m.starttls(ssl_context=self.ctx)
            m.login(self.user, self.password)
            typ, data = m.select("INBOX", readonly=True)
            assert typ == "OK", (typ, data)
            n = int(data[0])
            out = []
            if n:
                typ, data = m.fetch(f"1:{n}", "(BODY.PEEK[])")
                assert typ == "OK", (typ, data)
                out = [item[1] for item in data if isinstance(item, tuple)]
            return out
        finally:
            m.logout()

    def with_subject(self, subject):
        """The messages of INBOX whose own header has this Subject."""
        needle = f"\r\nSubject: {subject}\r\n".encode()
        out = []
        for raw in self.inbox():
            header = strip_received(raw)[1].split(b"\r\n\r\n", 1)[0]
            if needle in b"\r\n" + header + b"\r\n":
                out.append(raw)
        return out

    def dsns_about(self, subject):
        out = []
        for raw in self.inbox():
            m = email.message_from_bytes(raw, policy=email.policy.default)
            if m.get_content_type() == "multipart/report" and \
                    f"Subject: {subject}".encode() in raw:
                out.append(m)
        return out


class Checks:
    def __init__(self, a, b, tmp, zone):
        self.a = a
        self.b = b
        self.tmp = tmp
        self.zone = zone

    def alice_to_bob(self):
        msg = self.a.compose(BOB, "a2b-1")
        self.a.submit(BOB, msg)
        got = wait_for(lambda: self.b.with_subject("a2b-1"), what="bob's copy on B")
        time.sleep(1)
        got = self.b.with_subject("a2b-1")
        assert len(got) == 1, f"{len(got)} copies"
        received, rest = strip_received(got[0])
        assert rest == msg, (rest, msg)
        # B's MX on top (from A's queue node), A's submission below it
        assert len(received) == 2, received
        assert received[0].startswith(b"Received: from mx.a.test "), received[0]
        assert b"ESMTPS" in received[0], received[0]      # A -> B over STARTTLS
        assert b"ESMTPSA" in received[1], received[1]     # alice's AUTH on A
        assert not self.a.with_subject("a2b-1"), "a copy on A"

    def bob_replies(self):
        msg = self.b.compose(ALICE, "Re: a2b-1", extra="In-Reply-To: <a2b-1@a.test>\r\n")
        self.b.submit(ALICE, msg)
        got = wait_for(lambda: self.a.with_subject("Re: a2b-1"), what="alice's copy on A")
        time.sleep(1)
        got = self.a.with_subject("Re: a2b-1")
        assert len(got) == 1, f"{len(got)} copies"
        received, rest = strip_received(got[0])
        assert rest == msg, (rest, msg)
        assert len(received) == 2, received
        assert received[0].startswith(b"Received: from mx.b.test "), received[0]
        assert b"ESMTPS" in received[0], received[0]

    def unknown_user_bounces(self):
        before_b = len(self.b.inbox())
        msg = self.a.compose("nosuchuser@b.test", "nouser-1")
        self.a.submit("nosuchuser@b.test", msg)
        dsn = wait_for(lambda: self.a.dsns_about("nouser-1"), what="the DSN in alice's INBOX")
        time.sleep(2)
        dsn = self.a.dsns_about("nouser-1")
        assert len(dsn) == 1, f"{len(dsn)} DSNs"
        m = dsn[0]
        assert m["From"].addresses[0].username.upper() == "MAILER-DAEMON", m["From"]
        assert m.get_param("report-type") == "delivery-status", m["Content-Type"]
        parts = list(m.iter_parts())
        status = parts[1].as_bytes().decode("utf-8", "replace")
        assert "Reporting-MTA: dns; mx.a.test" in status, status
        fields = e2e_harness.dsn_fields(m)
        assert len(fields) == 1, fields
        f = fields[0]
        assert f["final-recipient"].lower() == "rfc822; nosuchuser@b.test", f
        assert f["action"] == "failed", f
        assert f["status"] == "5.1.1", f
        assert "mx.b.test" in f.get("remote-mta", ""), f
        assert f.get("diagnostic-code", "").startswith("smtp; 550"), f
        assert len(self.b.inbox()) == before_b, "B's INBOX changed"

    def dkim_signed(self):
        self.a.c.mailctl("dkim", "generate", "a.test")
        txt = self.a.c.mailctl("dkim", "txt", "a.test").stdout
        keys = []
        for line in txt.splitlines():
            if "IN TXT" not in line:
                continue
            name = line.split()[0].rstrip(".")
            value = "".join(line.split('"')[1::2])
            keys.append(f"{name} {value}")
        assert keys, txt
        keyfile = os.path.join(self.tmp, "dkim-keys")
        with open(keyfile, "w") as f:
            f.write("\n".join(keys) + "\n")
        for k in keys:
            name, value = k.split(" ", 1)
            parts = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))
            self.zone.zone.add(f"{name}. 60 IN TXT {parts}\n")
        time.sleep(1.5)   # the queue nodes read etcd every --config-refresh-ms
        msg = self.a.compose(BOB, "dkim-1")
        self.a.submit(BOB, msg)
        got = wait_for(lambda: self.b.with_subject("dkim-1"), what="the signed message on B")
        assert len(got) == 1, f"{len(got)} copies"
        assert got[0].count(b"DKIM-Signature:") >= 1, got[0][:800]
        path = os.path.join(self.tmp, "dkim-1.eml")
        with open(path, "wb") as f:
            f.write(got[0])
        r = subprocess.run(["/usr/bin/python3",
                            os.path.join(os.path.dirname(HERE), "lib", "dkim", "dkim-verify.py"),
                            path, keyfile], capture_output=True, text=True)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "pass" in r.stdout and "d=a.test" in r.stdout, r.stdout
        # B's MX verified it too, with the key published in DNS (issue 11):
        # its Authentication-Results says so, and SPF passed for a.test
        ar = b" ".join(got[0].split(b"\r\n\t")).decode(errors="replace")
        assert "dkim=pass" in ar and "header.d=a.test" in ar, ar[:900]
        assert "spf=pass smtp.mailfrom=alice@a.test" in ar, ar[:900]
        _, rest = strip_received(got[0])
        # the signature is the only thing added to what alice wrote
        assert rest.endswith(msg), rest[:800]
        assert rest[:-len(msg)].startswith(b"DKIM-Signature:"), rest[:800]


    def srs_forward_and_bounce(self):
        """bob writes from B to an alias on A that forwards to him on B: A
        sends it under SRS0=...@a.test, so SPF passes at B; a bounce to
        that address (as B's MTA would send it) comes back to bob."""
        self.a.c.mailctl("alias", "add", "fwd@a.test", BOB)
        msg = self.b.compose("fwd@a.test", "srs-1")
        self.b.submit("fwd@a.test", msg)
        got = wait_for(lambda: self.b.with_subject("srs-1"), what="the forwarded copy on B")
        ar = b" ".join(got[0].split(b"\r\n\t")).decode(errors="replace")
        m = re.search(r"spf=pass smtp\.mailfrom=(SRS0=[^ ;]+@a\.test)", ar)
        assert m, ar[:900]
        srs = m.group(1)
        assert srs.endswith("=b.test=bob@a.test"), srs
        assert b"Delivered-To: fwd@a.test" in got[0], got[0][:900]
        # the bounce, to A's MX as B would send it
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.a.c.ports["smtp"], timeout=30) as s:
            s.ehlo("mx.b.test")
            s.sendmail("", [srs], (f"From: MAILER-DAEMON@b.test\r\nTo: {srs}\r\n"
                                   "Subject: srs-bounce\r\n\r\nundeliverable\r\n").encode())
        wait_for(lambda: self.b.with_subject("srs-bounce"), what="the bounce back at bob")


def run():
    passed, failed = [], []
    check = e2e_harness.checker(passed, failed)
    tmp = tempfile.mkdtemp(prefix="outbound-clusters-e2e-")
    states = [os.path.join(tmp, "a"), os.path.join(tmp, "b")]
    bin_dir = e2e_harness.bin_dir()
    zone = dnszone.ZoneServer(ZONE)
    zone.start()
    kw = dict(stores=1, queues=1, replicas=1, lease_ttl=3, dns=zone.server)
    # the queue nodes' EHLO name (and the DSNs' Reporting-MTA) says which
    # cluster sent
    ca = local.Cluster.with_free_ports(states[0], bin_dir, **kw,
                                       queue_extra=QUEUE_EXTRA + ["--hostname", "mx.a.test"])
    cb = local.Cluster.with_free_ports(states[1], bin_dir, **kw,
                                       queue_extra=QUEUE_EXTRA + ["--hostname", "mx.b.test"])
    # each cluster's outbound port is the other's MX: both MXs are
    # 127.0.0.1 in DNS, the port says which cluster answers
    ca.smtp_out_port = cb.ports["smtp"]
    cb.smtp_out_port = ca.ports["smtp"]
    clusters = [ca, cb]
    pids = set()
    t0 = time.monotonic()
    try:
        for c in clusters:
            c.up()
            pids.update(c.pid(name) for name, *_ in c.specs())
        print(f"both clusters up in {time.monotonic() - t0:.1f}s", flush=True)
        a, b = Side(ca, ALICE, ALICE_PW), Side(cb, BOB, BOB_PW)
        a.setup()
        b.setup()
        t = Checks(a, b, tmp, zone)
        check("alice_to_bob", t.alice_to_bob)
        check("bob_replies", t.bob_replies)
        check("unknown_user_bounces", t.unknown_user_bounces)
        check("dkim_signed", t.dkim_signed)
        check("srs_forward_and_bounce", t.srs_forward_and_bounce)
        for c in clusters:
            pids.update(c.pid(name) for name, *_ in c.specs())
    except Exception:
        failed.append("setup")
        traceback.print_exc()
    finally:
        for c in clusters:
            pids.update(c.pid(name) for name, *_ in c.specs())
            try:
                c.down()
            except Exception:
                failed.append("down")
                traceback.print_exc()
        zone.stop()
        left = [p for p in pids if p and local.pid_alive(p)]
        if left:
            failed.append("down_leaves_nothing")
            print(f"FAIL processes left after down: {left}")
        if failed:
            for label, c in zip("AB", clusters):
                for name, *_ in c.specs():
                    print(f"--- {label} {name} log tail ---\n{c.log_tail(name, 25)}")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(passed)} passed, {len(failed)} failed ({time.monotonic() - t0:.1f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
