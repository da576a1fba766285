#!/usr/bin/python3
"""End-to-end: mail leaves the platform (issue 10; docs/outbound.md).

A cluster resolves through a DNS server of ours (tests/support/dnszone.py,
--dns) and delivers to remote MXs on one port (--smtp-out-port), where a
scripted sink (tests/support/smtp_sink.py) listens on 127.0.0.1. An MX
host whose address is ::1 refuses connections (nothing listens there on
that port): that is the dead MX. Mail is submitted with AUTH over
STARTTLS, as a user's client would, and checked where it lands:
  * MX priority and fallback: far.test's first MX is dead, the second one
    takes the mail (over STARTTLS);
  * per-recipient results: a recipient the remote refuses with 550 gets a
    DSN in the sender's INBOX (multipart/report, Action failed, Status
    5.1.1, Remote-MTA, Diagnostic-Code; read over IMAP), the other
    recipient of the same message is delivered once;
  * implicit MX (no MX record, the domain's own address), null MX (an
    immediate DSN 5.1.10, no connection);
  * a temporary failure (451) then success on the retry;
  * a domain that never answers stays queued (mail_queue_messages), then
    expires into a DSN;
  * DKIM: with keys made by `mailctl dkim generate` (RSA and Ed25519) the
    message arrives signed twice, and both signatures verify with dkimpy
    (lib/dkim/dkim-verify.py, keys from `mailctl dkim txt`);
  * the queue primary killed with -9 between a 451 and the retry: the
    retry comes from the new primary and the message arrives once;
  * a real Postfix as the remote MX (its first MX dead), refusing one
    recipient (DSN in INBOX), and as a smarthost that wants AUTH over
    STARTTLS (`mailctl relay set smtp+starttls://... --user ...`);
  * per-domain TLS policy (`mailctl tls-policy`): verify against a
    certificate no CA vouches for defers (never plaintext), encrypt
    delivers over TLS, none delivers without STARTTLS;
  * a transport (`mailctl transport set`) and a relay over smtps://
    (TLS from the first byte) with AUTH;
  * nothing is sent twice.
Run with Debian's /usr/bin/python3 (python3-dnslib).
"""
import email
import email.policy
import glob
import imaplib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "support"))
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402
import dnszone  # noqa: E402
import postfix  # noqa: E402

USER, PASSWORD = "alice@example.test", "s3cret pass"
EXPIRY_S = 40

ZONE = """
$ORIGIN test.
$TTL 60
far         IN MX 10 mx1.far.test.
far         IN MX 20 mx2.far.test.
mx1.far     IN AAAA ::1
mx2.far     IN A 127.0.0.1
implicit    IN A 127.0.0.1
nullmx      IN MX 0 .
dead        IN MX 10 mx.dead.test.
mx.dead     IN AAAA ::1
pf          IN MX 10 mx1.far.test.
pf          IN MX 20 mx2.far.test.
"""


class Sink:
    """tests/support/smtp_sink.py on 127.0.0.1:port with STARTTLS."""

    def __init__(self, port, tmp, *extra):
        self.dir = tempfile.mkdtemp(dir=tmp, prefix="sink-")
        self.out = os.path.join(self.dir, "out.jsonl")
        cert, key = os.path.join(tmp, "sink.pem"), os.path.join(tmp, "sink.key")
        if not os.path.exists(cert):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", cert, "-days", "2",
                            "-subj", "/CN=mx2.far.test"], check=True, capture_output=True)
        pf = os.path.join(self.dir, "port")
        self.p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "support", "smtp_sink.py"),
                                   "--port", str(port), "--port-file", pf, "--out", self.out,
                                   "--starttls", "--cert", cert, "--key", key, *extra])
        deadline = time.time() + 10
        while not os.path.exists(pf):
            assert time.time() < deadline and self.p.poll() is None, "sink did not start"
            time.sleep(0.05)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(10)

    def records(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [json.loads(line) for line in f if line.strip()]

    def commands(self):
        path = self.out + ".cmds"
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Outbound:
    def __init__(self, c, tmp, port):
        self.c = c
        self.tmp = tmp
        self.port = port
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.state, "tls", "ca.pem"))
        self.sink = Sink(port, tmp, "--rcpt-reply", "nobody@far.test=550 5.1.1 no such user here")

    def submit(self, rcpts, subject, extra_headers=""):
        """Submit with AUTH; returns the queue id of the 250."""
        msg = (f"From: Alice <{USER}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
               f"{extra_headers}\r\nHello from {subject}.\r\n").encode()
        return e2e_harness.submit(self.c, self.ctx, USER, PASSWORD, rcpts, msg)

    def sent_with(self, sink, subject):
        return [r for r in sink.records() if f"Subject: {subject}" in r["data"]]

    def inbox(self):
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
        m.starttls(ssl_context=self.ctx)
        m.login(USER, PASSWORD)
        typ, data = m.select("INBOX", readonly=True)
        n = int(data[0])
        out = []
        if n:
            typ, data = m.fetch(f"1:{n}", "(BODY.PEEK[])")
            out = [email.message_from_bytes(item[1], policy=email.policy.default)
                   for item in data if isinstance(item, tuple)]
        m.logout()
        return out

    def dsns_about(self, subject):
        out = []
        for m in self.inbox():
            if m.get_content_type() != "multipart/report":
                continue
            raw = m.as_bytes().decode("utf-8", "replace")
            if f"Subject: {subject}" in raw:
                out.append(m)
        return out

    def metric_sum(self, name, *needles, agg=sum):
        vals = []
        for node, role, *_ in self.c.specs():
            if role != "queue":
                continue
            url = f"http://127.0.0.1:{self.c.metrics_port(node)}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith(name + "{") and all(n in line for n in needles):
                    vals.append(int(float(line.split()[-1])))
        return agg(vals) if vals else 0

    def queue_messages(self):
        return self.metric_sum("mail_queue_messages")

    def swap_sink(self, *extra):
        self.sink.stop()
        self.sink = Sink(self.port, self.tmp, *extra)

    def queue_log(self, name):
        with open(os.path.join(self.c.state, "log", f"{name}.log"), errors="replace") as f:
            return f.read()

    # ---- the checks ----

    def dkim_signed(self):
        txt = ""
        for alg, sel in (("rsa-sha256", "r1"), ("ed25519-sha256", "e1")):
            self.c.mailctl("dkim", "generate", "example.test", "--selector", sel,
                           "--algorithm", alg)
        txt = self.c.mailctl("dkim", "txt", "example.test").stdout
        keys = []
        for line in txt.splitlines():
            if "IN TXT" not in line:
                continue
            name = line.split()[0].rstrip(".")
            value = "".join(part for part in line.split('"')[1::2])
            keys.append(f"{name} {value}")
        assert len(keys) == 2, txt
        keyfile = os.path.join(self.tmp, "dkim-keys")
        with open(keyfile, "w") as f:
            f.write("\n".join(keys) + "\n")
        time.sleep(1.5)   # the queue nodes read etcd every --config-refresh-ms
        self.submit(["dkim@far.test"], "dkim-1")
        rec = wait_for(lambda: self.sent_with(self.sink, "dkim-1"), what="the signed message")
        emls = sorted(glob.glob(self.sink.out + ".*.eml"), key=os.path.getmtime)
        path = [p for p in emls if b"Subject: dkim-1" in open(p, "rb").read()][0]
        data = open(path, "rb").read()
        assert data.count(b"DKIM-Signature:") == 2, data[:600]
        r = subprocess.run(["/usr/bin/python3",
                            os.path.join(os.path.dirname(HERE), "lib", "dkim", "dkim-verify.py"),
                            path, keyfile], capture_output=True, text=True)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "a=rsa-sha256 d=example.test s=r1" in r.stdout, r.stdout
        assert "a=ed25519-sha256 d=example.test s=e1" in r.stdout, r.stdout
        assert len(rec) == 1

    def eight_bit_cannot_downgrade(self):
        """8-bit mail to a server without 8BITMIME is not altered: it
        bounces with the reason."""
        self.swap_sink("--no-8bitmime")
        try:
            self.submit(["uwe@far.test"], "eightbit-1",
                        extra_headers="Content-Type: text/plain; charset=utf-8\r\n"
                                      "Content-Transfer-Encoding: 8bit\r\n"
                                      "X-Note: gr\u00fc\u00dfe\r\n")
            dsn = wait_for(lambda: self.dsns_about("eightbit-1"), what="the 8BITMIME DSN")
            f = e2e_harness.dsn_fields(dsn[0])[0]
            assert f["action"] == "failed" and f["status"].startswith("5."), f
            assert not self.sent_with(self.sink, "eightbit-1")
        finally:
            self.swap_sink("--rcpt-reply", "nobody@far.test=550 5.1.1 no such user here")

    def tls_policies(self):
        self.c.mailctl("tls-policy", "set", "far.test", "verify")
        time.sleep(1.5)
        self.submit(["tina@far.test"], "tls-verify")
        wait_for(lambda: "event=deferred_remote" in "".join(
            self.queue_log(n) for n, role, *_ in self.c.specs() if role == "queue")
            and "rcpt=tina@far.test" in "".join(
                self.queue_log(n) for n, role, *_ in self.c.specs() if role == "queue"),
            what="the deferral under verify")
        assert not self.sent_with(self.sink, "tls-verify"), "sent without a verified certificate"
        self.c.mailctl("tls-policy", "set", "far.test", "encrypt")
        rec = wait_for(lambda: self.sent_with(self.sink, "tls-verify"), what="delivery under encrypt")
        assert rec[0]["tls"] and len(rec) == 1, rec
        out = self.c.mailctl("tls-policy", "list").stdout
        assert "far.test" in out and "encrypt" in out, out
        self.c.mailctl("tls-policy", "set", "far.test", "none")
        time.sleep(1.5)
        self.submit(["tom@far.test"], "tls-none")
        rec = wait_for(lambda: self.sent_with(self.sink, "tls-none"), what="delivery under none")
        assert not rec[0]["tls"], rec
        self.c.mailctl("tls-policy", "remove", "far.test")

    def transport_and_smtps_relay(self):
        port = local.free_port()
        other = Sink(port, self.tmp)
        try:
            self.c.mailctl("transport", "set", "elsewhere.test", f"smtp://127.0.0.1:{port}")
            time.sleep(1.5)
            self.submit(["una@elsewhere.test"], "transport-1")
            wait_for(lambda: self.sent_with(other, "transport-1"), what="delivery by transport")
        finally:
            self.c.mailctl("transport", "remove", "elsewhere.test", check=False)
            other.stop()
        port = local.free_port()
        smtps = Sink(port, self.tmp, "--implicit-tls", "--auth", "relayuser:relay pw")
        try:
            self.c.mailctl("relay", "set", f"smtps://127.0.0.1:{port}", "--user", "relayuser",
                           stdin="relay pw\n")
            time.sleep(1.5)
            self.submit(["vic@far.test"], "smtps-1")
            rec = wait_for(lambda: self.sent_with(smtps, "smtps-1"), what="delivery via smtps")
            assert rec[0]["tls"] and rec[0]["auth"] == "relayuser", rec
            assert "STARTTLS" not in smtps.commands()
            assert not self.sent_with(self.sink, "smtps-1")
        finally:
            self.c.mailctl("relay", "remove", check=False)
            smtps.stop()

    def primary_killed_mid_retry(self):
        self.swap_sink("--rcpt-reply", "kim@far.test=451 4.3.0 try later")
        qid = self.submit(["kim@far.test"], "failover-1")
        wait_for(lambda: "RCPT TO:<kim@far.test>" in self.sink.commands(),
                 what="the first attempt")
        primary = wait_for(lambda: [n for n, role, *_ in self.c.specs() if role == "queue"
                                    and f"qid={qid}" in self.queue_log(n)
                                    and "event=deferred_remote" in self.queue_log(n)],
                           what="the primary's deferral")[0]
        self.c.kill(primary, signal.SIGKILL)
        self.swap_sink("--rcpt-reply", "nobody@far.test=550 5.1.1 no such user here")
        rec = wait_for(lambda: self.sent_with(self.sink, "failover-1"), timeout=90,
                       what="delivery by the new primary")
        time.sleep(4)
        assert len(self.sent_with(self.sink, "failover-1")) == 1, "sent twice"
        others = [n for n, role, *_ in self.c.specs() if role == "queue" and n != primary
                  and f"event=sent qid={qid}" in self.queue_log(n)]
        assert others, "not sent by another queue node"
        assert len(rec) == 1
        self.c.up()   # the killed node back

    def postfix_peers(self):
        self.sink.stop()
        mx = postfix.PostfixMX(["pf.test"], reject=["nobody@pf.test"], port=self.port,
                               hostname="mx2.far.test")
        relay = postfix.PostfixSmarthost("relay@smarthost.test", "relay pass", self.port)
        try:
            mx.start()
            qid = self.submit(["ann@pf.test", "nobody@pf.test"], "postfix-1")
            got = mx.messages("ann@pf.test", timeout=60)
            assert len(got) == 1 and b"Subject: postfix-1" in got[0], got
            dsn = wait_for(lambda: self.dsns_about("postfix-1"), what="the DSN from Postfix's 550")
            f = e2e_harness.dsn_fields(dsn[0])[0]
            assert f["final-recipient"].lower() == "rfc822; nobody@pf.test", f
            assert f["status"] == "5.1.1" and f["action"] == "failed", f
            assert "mx2.far.test" in f["remote-mta"], f
            # the smarthost: AUTH PLAIN/LOGIN over STARTTLS, then relayed to mx
            relay.start()
            self.c.mailctl("relay", "set", f"smtp+starttls://127.0.0.1:{relay.port}",
                           "--user", "relay@smarthost.test", stdin="relay pass\n")
            time.sleep(1.5)
            self.submit(["bea@pf.test"], "smarthost-1")
            got = mx.messages("bea@pf.test", timeout=60)
            assert len(got) == 1 and b"Subject: smarthost-1" in got[0], got
            log = relay.log()
            assert "sasl_method=" in log and "sasl_username=relay@smarthost.test" in log, \
                relay.log_tail(20)
            assert qid
        finally:
            self.c.mailctl("relay", "remove", check=False)
            relay.stop()
            mx.stop()
        self.sink = Sink(self.port, self.tmp,
                         "--rcpt-reply", "nobody@far.test=550 5.1.1 no such user here")

    def mx_fallback(self):
        self.submit(["bob@far.test"], "fallback-1")
        rec = wait_for(lambda: self.sent_with(self.sink, "fallback-1"), what="delivery via mx2")
        assert len(rec) == 1, rec
        assert rec[0]["rcpts"][0].startswith("<bob@far.test>"), rec
        assert rec[0]["tls"], "delivered without STARTTLS although it was offered"
        assert rec[0]["mail"].startswith(f"<{USER}>"), rec
        # the metrics per destination domain count it
        assert self.metric_sum("mail_outbound_rcpts_total", 'domain="far.test"',
                               'result="sent"') >= 1

    def per_recipient_bounce(self):
        self.submit(["carol@far.test", "nobody@far.test"], "bounce-1")
        rec = wait_for(lambda: self.sent_with(self.sink, "bounce-1"), what="delivery")
        assert [r.split()[0] for r in rec[0]["rcpts"]] == ["<carol@far.test>"], rec
        dsn = wait_for(lambda: self.dsns_about("bounce-1"), what="the DSN in INBOX")
        assert len(dsn) == 1, len(dsn)
        m = dsn[0]
        assert m["From"].addresses[0].username.upper() == "MAILER-DAEMON", m["From"]
        assert m.get_param("report-type") == "delivery-status"
        fields = e2e_harness.dsn_fields(m)
        assert len(fields) == 1, fields
        f = fields[0]
        assert f["final-recipient"].lower() == "rfc822; nobody@far.test", f
        assert f["action"] == "failed", f
        assert f["status"] == "5.1.1", f
        assert "mx2.far.test" in f.get("remote-mta", ""), f
        assert f.get("diagnostic-code", "").startswith("smtp; 550"), f
        time.sleep(2)
        assert len(self.sent_with(self.sink, "bounce-1")) == 1, "sent twice"
        assert len(self.dsns_about("bounce-1")) == 1, "two DSNs"

    def implicit_mx(self):
        self.submit(["dave@implicit.test"], "implicit-1")
        wait_for(lambda: self.sent_with(self.sink, "implicit-1"), what="implicit MX delivery")

    def null_mx(self):
        self.submit(["erin@nullmx.test"], "nullmx-1")
        dsn = wait_for(lambda: self.dsns_about("nullmx-1"), what="the null MX DSN")
        f = e2e_harness.dsn_fields(dsn[0])[0]
        assert f["status"] == "5.1.10" and f["action"] == "failed", f
        assert "erin@nullmx.test" not in self.sink.commands(), "connected for a null MX"

    def temp_then_success(self):
        self.sink.stop()
        busy = Sink(self.port, self.tmp, "--rcpt-reply", "frank@far.test=451 4.3.0 try later")
        try:
            self.submit(["frank@far.test"], "retry-1")
            wait_for(lambda: "RCPT TO:<frank@far.test>" in busy.commands(),
                     what="the first attempt")
            assert not self.sent_with(busy, "retry-1")
        finally:
            busy.stop()
        self.sink = Sink(self.port, self.tmp,
                         "--rcpt-reply", "nobody@far.test=550 5.1.1 no such user here")
        rec = wait_for(lambda: self.sent_with(self.sink, "retry-1"), what="delivery on retry")
        assert len(rec) == 1, rec
        assert not self.dsns_about("retry-1"), "a DSN for a delivered message"

    def never_answers_then_expires(self):
        before = self.queue_messages()
        self.submit(["gina@dead.test"], "dead-1")
        wait_for(lambda: self.queue_messages() > before, what="the message held in the queue")
        time.sleep(3)
        assert self.queue_messages() > before, "a dead domain's mail left the queue"
        assert self.metric_sum("mail_queue_oldest_seconds", agg=max) >= 2
        assert self.metric_sum("mail_outbound_rcpts_total", 'domain="dead.test"',
                               'result="deferred"') >= 1
        assert not self.dsns_about("dead-1")
        dsn = wait_for(lambda: self.dsns_about("dead-1"), timeout=EXPIRY_S + 60,
                       what="the expiry DSN")
        f = e2e_harness.dsn_fields(dsn[0])[0]
        assert f["action"] == "failed", f
        assert f["status"].startswith("4."), f
        wait_for(lambda: self.queue_messages() <= before, what="the queue to empty")


def main():
    tmp = tempfile.mkdtemp(prefix="outbound-e2e-")
    zone = dnszone.ZoneServer(ZONE)
    zone.__enter__()
    port = local.free_port()
    state = {}

    def body(c, check):
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        t = Outbound(c, tmp, port)
        state["t"] = t
        check("mx_fallback", t.mx_fallback)
        check("per_recipient_bounce", t.per_recipient_bounce)
        check("implicit_mx", t.implicit_mx)
        check("null_mx", t.null_mx)
        check("temp_then_success", t.temp_then_success)
        check("dkim_signed", t.dkim_signed)
        check("eight_bit_cannot_downgrade", t.eight_bit_cannot_downgrade)
        check("tls_policies", t.tls_policies)
        check("transport_and_smtps_relay", t.transport_and_smtps_relay)
        check("primary_killed_mid_retry", t.primary_killed_mid_retry)
        check("postfix_peers", t.postfix_peers)
        check("never_answers_then_expires", t.never_answers_then_expires)

    try:
        return e2e_harness.run("outbound-e2e-", body, lease_ttl=3, dns=zone.server,
                               smtp_out_port=port, queues=3,
                               queue_extra=["--retry-schedule", "2,3", "--expiry", str(EXPIRY_S),
                                            "--smtp-out-timeout", "5",
                                            "--config-refresh-ms", "500"])
    finally:
        if "t" in state:
            state["t"].sink.stop()
        zone.__exit__(None, None, None)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
