#!/usr/bin/env python3
"""End-to-end: one message through every tier, with real clients.

Starts its own etcd, store node, queue node and frontend on free 127.0.0.1
ports (so it runs while a development cluster is up), creates a user with
mailctl, sends with smtplib, reads back with imaplib and checks:
  * the bytes read back are the bytes sent;
  * unknown recipients get 550 5.1.1, foreign domains 550 5.7.1 (no relay);
  * malformed SMTP commands get 500/501, an over-long line a clear error;
  * a message that got 250 survives kill -9 of the queue node before
    delivery and arrives exactly once;
  * IMAP flags and expunge behave, bad IMAP commands get BAD;
  * DSN (RFC 3461) is advertised, RET/ENVID/NOTIFY/ORCPT are accepted and
    reach the queue's record (its enqueue log line), bad values get 501;
  * `down` leaves no process behind.
Standard library only.
"""
import imaplib
import os
import re
import signal
import smtplib
import socket
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402

def make_message(subject, body_lines):
    lines = [f"From: Sender <sender@remote.test>", "To: alice@example.test",
             f"Subject: {subject}", "Message-ID: <%s@remote.test>" % subject.replace(" ", "-"),
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit", ""] + body_lines
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class E2E:
    def __init__(self, cluster):
        self.c = cluster
        self.smtp_port = cluster.ports["smtp"]
        self.imap_port = cluster.ports["imap"]

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)
        s.ehlo("client.test")
        return s

    def imap(self, user="alice@example.test", password="s3cret pass"):
        m = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        m.login(user, password)
        return m

    def inbox_bodies(self, user="alice@example.test", password="s3cret pass", raw=False):
        m = self.imap(user, password)
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", data
        n = int(data[0])
        bodies = []
        if n:
            typ, data = m.fetch(f"1:{n}", "(UID BODY.PEEK[])")
            assert typ == "OK", data
            for item in data:
                if isinstance(item, tuple):
                    bodies.append(item[1])
        m.logout()
        return bodies if raw else [e2e_harness.as_sent(b) for b in bodies]

    def wait_for(self, pred, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = pred()
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} (last={last!r})")

    # ---- checks --------------------------------------------------------

    def send_and_read_back(self):
        msg = make_message("first", ["Hello Alice,", "", "caf\u00e9 \u2603 -- bytes matter.",
                                     ".a line starting with a dot", "..two dots", "bye"])
        s = self.smtp()
        refused = s.sendmail("sender@remote.test", ["alice@example.test"], msg)
        assert refused == {}, refused
        s.quit()
        bodies = self.wait_for(lambda: self.inbox_bodies(), what="delivery")
        assert bodies == [msg], (bodies, msg)
        # our trace field first (RFC 5321 4.4): the client's HELO and address,
        # us, the queue id, the one recipient, a date
        raw = self.inbox_bodies(raw=True)[0]
        first = e2e_harness.split_trace(raw)[0][0].rstrip(b"\r\n")
        assert re.fullmatch(rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
                            rb"\tby \S+ with ESMTP id [0-9a-f]{24}\r\n"
                            rb"\tfor <alice@example\.test>; \w{3}, \d{2} \w{3} \d{4} "
                            rb"\d{2}:\d{2}:\d{2} \+0000", first), first

    def unknown_recipient(self):
        s = self.smtp()
        s.mail("sender@remote.test")
        code, text = s.rcpt("nobody@example.test")
        assert code == 550 and b"5.1.1" in text, (code, text)
        code, text = s.rcpt("someone@elsewhere.test")
        assert code == 550 and b"5.7.1" in text, (code, text)
        code, text = s.rcpt("Alice@Example.TEST")
        assert code == 250, (code, text)
        s.rset()
        # and sendmail with only an unknown recipient raises
        try:
            s.sendmail("sender@remote.test", ["nobody@example.test"], b"Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused as e:
            assert e.recipients["nobody@example.test"][0] == 550
        else:
            raise AssertionError("unknown recipient accepted")
        s.quit()

    def malformed_commands(self):
        with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=10) as sock:
            f = sock.makefile("rb")

            def reply():
                lines = []
                while True:
                    line = f.readline()
                    assert line, "connection closed"
                    lines.append(line)
                    if line[3:4] != b"-":
                        return int(line[:3]), b"".join(lines)

            assert reply()[0] == 220
            for cmd, codes in ((b"FOO bar", (500,)), (b"MAIL FROM:<a@b.test>", (503,)),
                               (b"EHLO", (501,)), (b"EHLO client.test", (250,)),
                               (b"MAIL TO:<x@y.test>", (501,)), (b"RCPT TO:<a@example.test>", (503,)),
                               (b"MAIL FROM:<bad address>", (501, 553)),
                               (b"MAIL FROM:<>", (250,)), (b"RCPT TO:<<>>", (501, 553)),
                               (b"DATA", (503, 554)), (b"NOOP", (250,)), (b"RSET", (250,))):
                sock.sendall(cmd + b"\r\n")
                code, text = reply()
                assert code in codes, (cmd, code, text)
            sock.sendall(b"NOOP " + b"x" * 1100 + b"\r\n")
            code, text = reply()
            assert code == 500 and b"too long" in text.lower(), (code, text)
            sock.sendall(b"NOOP\r\n")
            assert reply()[0] == 250
            sock.sendall(b"QUIT\r\n")
            assert reply()[0] == 221

    def survives_queue_kill(self):
        before = len(self.inbox_bodies())
        # 1. store down: the queue accepts (durable), cannot deliver yet
        self.c.kill("store-1", signal.SIGTERM)
        msg = make_message("durable", ["this one got 250 while the store was down"])
        s = self.smtp()
        assert s.sendmail("sender@remote.test", ["alice@example.test"], msg) == {}
        s.quit()
        # 2. kill -9 the queue node with the message undelivered
        self.c.kill("queue-1", signal.SIGKILL)
        self.c.start("store-1")
        self.c.start("queue-1")
        bodies = self.wait_for(lambda: (lambda b: b if len(b) > before else None)(
            self.inbox_bodies()), timeout=60, what="delivery after queue restart")
        time.sleep(2)  # a duplicate would arrive about now
        bodies = self.inbox_bodies()
        assert bodies.count(msg) == 1, [b[:60] for b in bodies]
        assert len(bodies) == before + 1

    def kill_right_after_250(self):
        before = len(self.inbox_bodies())
        msg = make_message("killed-after-250", ["kill -9 right after the 250"])
        s = self.smtp()
        assert s.sendmail("sender@remote.test", ["alice@example.test"], msg) == {}
        self.c.kill("queue-1", signal.SIGKILL)
        s.close()
        self.c.start("queue-1")
        self.wait_for(lambda: len(self.inbox_bodies()) > before, timeout=60,
                      what="delivery after kill -9")
        time.sleep(2)
        bodies = self.inbox_bodies()
        assert bodies.count(msg) == 1
        assert len(bodies) == before + 1

    def dsn_parameters(self):
        before = len(self.inbox_bodies())
        s = self.smtp()
        assert s.has_extn("dsn"), s.esmtp_features
        code, text = s.mail("sender@remote.test", ["RET=HDRS", "ENVID=e2e+2Bdsn"])
        assert code == 250, (code, text)
        code, text = s.rcpt("alice@example.test", ["NOTIFY=NEVER,SUCCESS"])
        assert code == 501 and text.startswith(b"5.5.4"), (code, text)
        code, text = s.rcpt("alice@example.test", ["NOTIFY=SUCCESS,FAILURE",
                                                   "ORCPT=rfc822;Alice@Example.TEST"])
        assert code == 250, (code, text)
        msg = make_message("dsn", ["with DSN parameters"])
        code, text = s.data(msg)
        assert code == 250, (code, text)
        s.quit()
        self.wait_for(lambda: len(self.inbox_bodies()) > before, what="DSN message delivery")
        line = self.wait_for(lambda: self.c.log_events(
            "queue-1", r"event=enqueue(d|_proposed) .* ret=hdrs envid=e2e\+dsn notify=1 orcpt=1"),
            timeout=10, what="the DSN values in the queue's log")
        assert "rcpts=1" in line, line

    def metrics(self):
        """Every daemon serves Prometheus text on /metrics; the counters move."""
        def scrape(name):
            url = f"http://127.0.0.1:{self.c.metrics_port(name)}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                assert r.status == 200
                return r.read().decode()
        for name in ("store-1", "queue-1", "frontend-1"):
            text = scrape(name)
            assert f'node="{name}"' in text and "mail_process_uptime_seconds{" in text, text
        store = scrape("store-1")
        ok = [l for l in store.splitlines()
              if l.startswith("mail_rpc_calls_total{") and 'status="ok"' in l]
        assert ok and float(ok[0].rsplit(" ", 1)[1]) > 0, store
        assert "mail_queue_messages{" in scrape("queue-1")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.c.metrics_port('store-1')}/x",
                                   timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 404
        else:
            raise AssertionError("/x served")

    def imap_semantics(self):
        m = self.imap()
        typ, data = m.select("INBOX")
        assert typ == "OK"
        n = int(data[0])
        assert n >= 1
        typ, uv = m.response("UIDVALIDITY")
        assert uv[0] and int(uv[0]) > 0, uv
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
        assert typ == "OK" and data[0], data
        uids = [int(x.split(b"UID ")[1].split()[0]) for x in data if isinstance(x, bytes)]
        assert uids == sorted(uids) and len(set(uids)) == len(uids), uids
        typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
        assert typ == "OK" and b"\\Flagged" in data[0], data
        typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
        assert typ == "OK"
        typ, data = m.expunge()
        assert typ == "OK" and data[0] == b"1", data
        typ, data = m.select("INBOX")
        assert int(data[0]) == n - 1
        # bad input: BAD, never a crash
        try:
            m.xatom("FROBNICATE")
        except imaplib.IMAP4.error as e:
            assert "BAD" in str(e), e
        else:
            raise AssertionError("unknown command accepted")
        typ, data = m.noop()
        assert typ == "OK"
        # RFC822 returns the same bytes as BODY[] and sets \Seen
        typ, data = m.uid("FETCH", str(uids[-1]), "(RFC822)")
        assert typ == "OK" and isinstance(data[0], tuple), data
        whole = data[0][1]
        typ, data = m.uid("FETCH", str(uids[-1]), "(FLAGS)")
        assert b"\\Seen" in data[0], data
        typ, data = m.uid("STORE", str(uids[-1]), "-FLAGS.SILENT", "(\\Seen)")
        assert typ == "OK"
        typ, data = m.uid("FETCH", str(uids[-1]), "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == whole and b"\\Seen" not in data[0][0], data
        # EXAMINE is read-only: STORE refused, FETCH BODY[] does not set \Seen
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = m.fetch("1", "(BODY[])")
        assert typ == "OK"
        typ, data = m.fetch("1", "(FLAGS)")
        assert b"\\Seen" not in data[0], data
        typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
        assert typ == "NO" and b"READ-ONLY" in data[0].upper(), (typ, data)
        # CLOSE after SELECT expunges \Deleted messages silently
        typ, data = m.select("INBOX")
        count = int(data[0])
        m.store("1", "+FLAGS", "(\\Deleted)")
        typ, data = m.close()
        assert typ == "OK", data
        typ, data = m.select("INBOX")
        assert int(data[0]) == count - 1, data
        m.logout()
        # wrong password
        try:
            self.imap(password="wrong")
        except imaplib.IMAP4.error:
            pass
        else:
            raise AssertionError("bad password accepted")


def main():
    def body(c, check):
        c.mailctl("user", "add", "alice@example.test", stdin="s3cret pass\n")
        t = E2E(c)
        check("send_and_read_back", t.send_and_read_back)
        check("unknown_recipient", t.unknown_recipient)
        check("malformed_commands", t.malformed_commands)
        check("survives_queue_kill", t.survives_queue_kill)
        check("kill_right_after_250", t.kill_right_after_250)
        check("imap_semantics", t.imap_semantics)
        check("dsn_parameters", t.dsn_parameters)
        check("metrics", t.metrics)

        def outbound_test_interfaces():
            # issue 10's test interfaces reach the daemons: --dns every one,
            # --smtp-out-port the queue nodes (the daemons check the values)
            for name, role, *_ in c.specs():
                if role == "etcd":
                    continue
                with open(f"/proc/{c.pid(name)}/cmdline", "rb") as f:
                    argv = f.read().decode().split("\0")
                assert argv[argv.index("--dns") + 1] == dns, (name, argv)
                if role == "queue":
                    assert argv[argv.index("--smtp-out-port") + 1] == str(out_port), argv
                else:
                    assert "--smtp-out-port" not in argv, (name, argv)
        check("outbound_test_interfaces", outbound_test_interfaces)
    # nothing answers on these yet: the daemons only take them
    dns = f"127.0.0.1:{local.free_port()}"
    out_port = local.free_port()
    return e2e_harness.run("mail-e2e-", body, lease_ttl=3, dns=dns, smtp_out_port=out_port)


if __name__ == "__main__":
    sys.exit(main())
