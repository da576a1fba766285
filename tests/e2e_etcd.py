#!/usr/bin/env python3
"""End-to-end: the platform on a 3-member etcd cluster.

  * mail flows with all members up;
  * kill -9 of one member (the first one every daemon is configured with)
    changes nothing for mail: send and read back still work;
  * with two members down (no quorum), SMTP answers temporary errors (4xx),
    never a 250 that could be lost; with a member back, mail flows again;
  * `down` leaves no process behind.
Standard library only.
"""
import imaplib
import os
import signal
import smtplib
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_mail import make_message  # noqa: E402

class T:
    def __init__(self, c):
        self.c = c

    def send(self, subject):
        msg = make_message(subject, [f"body of {subject}"])
        with smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=60) as s:
            assert s.sendmail("sender@remote.test", ["alice@example.test"], msg) == {}
        return msg

    def bodies(self):
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
        m.login("alice@example.test", "pw")
        typ, data = m.select("INBOX", readonly=True)
        n = int(data[0])
        out = []
        if n:
            typ, data = m.fetch(f"1:{n}", "(BODY.PEEK[])")
            out = [e2e_harness.as_sent(x[1]) for x in data if isinstance(x, tuple)]
        m.logout()
        return out

    def wait_delivered(self, msg, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if msg in self.bodies():
                    return
            except (OSError, imaplib.IMAP4.error):
                pass
            time.sleep(0.2)
        raise AssertionError("message not delivered")

    def all_up(self):
        self.wait_delivered(self.send("all-members-up"))

    def one_member_down(self):
        self.c.kill("etcd-1", signal.SIGKILL)
        msg = self.send("one-member-down")
        self.wait_delivered(msg)
        # and again a few seconds later: leases renewed on the survivors
        time.sleep(4)
        self.wait_delivered(self.send("one-member-down-later"))

    def quorum_lost(self):
        self.c.kill("etcd-2", signal.SIGKILL)
        time.sleep(1)
        refused = 0
        for i in range(3):
            msg = make_message(f"no-quorum-{i}", ["must not be acknowledged"])
            try:
                with smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=60) as s:
                    r = s.sendmail("sender@remote.test", ["alice@example.test"], msg)
                    raise AssertionError(f"250 without an etcd quorum: {r}")
            except smtplib.SMTPRecipientsRefused as e:
                code = e.recipients["alice@example.test"][0]
                assert 400 <= code < 500, e.recipients
                refused += 1
            except smtplib.SMTPResponseException as e:
                assert 400 <= e.smtp_code < 500, (e.smtp_code, e.smtp_error)
                refused += 1
        assert refused == 3
        # a member returns: quorum again, mail flows
        self.c.start("etcd-2")
        deadline = time.monotonic() + 60
        while True:
            try:
                msg = self.send("quorum-back")
                break
            except (smtplib.SMTPException, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.wait_delivered(msg)


def main():
    def body(c, check):
        c.mailctl("user", "add", "alice@example.test", stdin="pw\n")
        t = T(c)
        check("all_up", t.all_up)
        check("one_member_down", t.one_member_down)
        check("quorum_lost", t.quorum_lost)
    return e2e_harness.run("mail-e2e-etcd-", body, lease_ttl=3, etcd_members=3)


if __name__ == "__main__":
    sys.exit(main())
