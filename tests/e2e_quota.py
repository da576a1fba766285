#!/usr/bin/env python3
"""Quotas as an operator and the users see them (issue 12 item 1,
docs/operations.md "Quotas"): mailctl quota set/show (--json parsed, bad
input one line and a non-zero exit), delivery with smtplib until a mailbox
is full (552 5.2.2 at the end of DATA for a message that does not fit,
452 4.2.2 at RCPT once at the limit), IMAP (imaplib) GETQUOTAROOT/GETQUOTA
figures matching mailctl's, APPEND refused NO [OVERQUOTA], EXPUNGE working
over quota and freeing room so delivery works again, and a tenant quota
across two users. A real cluster (three stores, one queue). Standard
library only. ~60 s.
"""
import imaplib
import json
import os
import re
import smtplib
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import e2e_harness  # noqa: E402

TENANT = "quota.test"
ANN, BOB = f"ann@{TENANT}", f"bob@{TENANT}"
PW = {ANN: "ann-pw-1 long enough", BOB: "bob-pw-1 long enough"}
# the frontends' cache of a tenant's usage (client/quota-client.h)
TENANT_TTL_S = 10


class Quota:
    def __init__(self, c):
        self.c = c
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))
        self.sent = 0

    def mailctl(self, *args, stdin=None):
        return subprocess.run([os.path.join(self.c.bin, "mailctl"), *args], input=stdin,
                              capture_output=True, text=True, timeout=120,
                              env=self.c.mailctl_env())

    def ok(self, *args, stdin=None):
        r = self.mailctl(*args, stdin=stdin)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def show(self, target):
        return json.loads(self.ok("quota", "show", target, "--json"))

    def send(self, rcpt, size):
        """Send a message of about size bytes to rcpt on the MX: ("rcpt",
        code, text) when RCPT is refused, ("data", code, text) else."""
        s = smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=30)
        try:
            s.ehlo("sender.test")
            s.mail("someone@sender.test")
            code, text = s.rcpt(rcpt)
            if code != 250:
                return "rcpt", code, text.decode()
            self.sent += 1
            head = (f"From: someone@sender.test\r\nTo: {rcpt}\r\n"
                    f"Message-ID: <{self.sent}.{time.time()}@sender.test>\r\n"
                    f"Subject: quota {self.sent}\r\n\r\n")
            line = "x" * 76 + "\r\n"
            body = line * max(1, (size - len(head)) // len(line))
            code, text = s.data(head + body)
            return "data", code, text.decode()
        finally:
            try:
                s.quit()
            except smtplib.SMTPServerDisconnected:
                pass

    def wait_usage(self, target, messages, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            j = self.show(target)
            if j["usage"]["messages"] == messages:
                return j
            assert time.monotonic() < deadline, (target, messages, j)
            time.sleep(0.3)

    def imap(self, user):
        m = imaplib.IMAP4_SSL("localhost", self.c.ports["imaps"], ssl_context=self.ctx,
                              timeout=30)
        m.login(user, PW[user])
        return m

    # ---- checks ---------------------------------------------------------

    def setup(self):
        self.ok("tenant", "add", TENANT)
        for u in (ANN, BOB):
            self.ok("user", "add", u, stdin=PW[u] + "\n")

    def bad_input(self):
        for args, rc, words in (
                (("quota", "set", ANN, "--storage", "12Q"), 1, "--storage 12Q"),
                (("quota", "set", ANN, "--messages", "-3"), 1, "--messages"),
                (("quota", "show", f"nobody@{TENANT}"), 2, "not found"),
                (("quota", "set", f"nobody@{TENANT}", "--messages", "5"), 2, "not found"),
                (("quota", "show", "nosuch.test", "--json"), 2, "not found")):
            r = self.mailctl(*args)
            assert r.returncode == rc, (args, r.returncode, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0], (args, r.stderr)
            assert r.stdout == "", (args, r.stdout)

    def set_show(self):
        out = self.ok("quota", "set", ANN, "--storage", "10K")
        assert "storage 10240" in out, out
        j = self.show(ANN)
        assert j["address"] == ANN, j
        assert j["limits"] == {"storage": 10240, "messages": None}, j
        assert j["usage"] == {"bytes": 0, "messages": 0}, j
        assert j["tenant"]["limits"] == {"storage": None, "messages": None}, j
        # plain text: the same figures
        out = self.ok("quota", "show", ANN)
        assert "0 B used of 10240 B" in out and "unlimited" in out, out

    def fill_storage(self):
        for i in range(3):
            where, code, text = self.send(ANN, 2000)
            assert (where, code) == ("data", 250), (where, code, text)
            self.wait_usage(ANN, i + 1)
        used = self.show(ANN)["usage"]["bytes"]
        assert 6000 < used < 9000, used
        # it does not fit: refused at the end of DATA, for good
        where, code, text = self.send(ANN, 10240 - used + 500)
        assert (where, code) == ("data", 552) and text.startswith("5.2.2"), (where, code, text)
        # a small one still does
        where, code, text = self.send(ANN, 500)
        assert (where, code) == ("data", 250), (where, code, text)
        self.wait_usage(ANN, 4)

    def at_limit_rcpt(self):
        out = self.ok("quota", "set", ANN, "--messages", "5")   # alone: storage stays
        assert "messages 5" in out, out
        j = self.show(ANN)
        assert j["limits"] == {"storage": 10240, "messages": 5}, j
        assert self.send(ANN, 300)[:2] == ("data", 250)
        self.wait_usage(ANN, 5)
        where, code, text = self.send(ANN, 300)
        assert (where, code) == ("rcpt", 452) and text.startswith("4.2.2"), (where, code, text)
        # another recipient of the same transaction goes on
        s = smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=30)
        s.ehlo("sender.test")
        s.mail("someone@sender.test")
        assert s.rcpt(ANN)[0] == 452
        assert s.rcpt(BOB)[0] == 250
        code, _ = s.data("Subject: to bob only\r\n\r\nhi\r\n")
        assert code == 250
        s.quit()
        self.wait_usage(BOB, 1)

    def imap_quota(self):
        j = self.show(ANN)
        m = self.imap(ANN)
        try:
            typ, caps = m.capability()
            caps = caps[0].decode().split()
            for cap in ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"):
                assert cap in caps, caps
            typ, data = m.getquotaroot("INBOX")
            assert typ == "OK", (typ, data)
            roots, quotas = data
            assert roots[0].decode() == 'INBOX ""', roots
            used_kib = (j["usage"]["bytes"] + 1023) // 1024
            want = f'"" (STORAGE {used_kib} 10 MESSAGE 5 5)'
            assert quotas[0].decode() == want, (quotas, want)
            typ, data = m.getquota('""')
            assert typ == "OK" and data[0].decode() == want, (typ, data)
            # users do not set their quota
            typ, data = m._simple_command("SETQUOTA", '""', "(STORAGE 99999)")
            assert typ == "NO", (typ, data)
            # APPEND over quota
            typ, data = m.append("INBOX", None, None, b"Subject: appended\r\n\r\nhello\r\n")
            assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
            # COPY too; MOVE within the user is fine
            m.select("INBOX")
            typ, data = m.copy("1", "Archive")
            assert typ == "NO" and b"OVERQUOTA" in data[0], (typ, data)
            # deleting works over quota and frees room
            typ, _ = m.store("1:2", "+FLAGS", "(\\Deleted)")
            assert typ == "OK"
            typ, data = m.expunge()
            assert typ == "OK", (typ, data)
        finally:
            m.logout()
        self.wait_usage(ANN, 3)
        assert self.send(ANN, 300)[:2] == ("data", 250)
        self.wait_usage(ANN, 4)
        m = self.imap(ANN)
        try:
            typ, data = m.select("INBOX", readonly=True)
            assert int(data[0]) == 4, data
            typ, data = m.getquotaroot("INBOX")
            assert "MESSAGE 4 5" in data[1][0].decode(), data
        finally:
            m.logout()

    def tenant_quota(self):
        # bob has no limit of his own; the tenant's counts both users
        ann, bob = self.show(ANN)["usage"], self.show(BOB)["usage"]
        total = ann["messages"] + bob["messages"]
        out = self.ok("quota", "set", TENANT, "--messages", str(total + 1))
        assert f"messages {total + 1}" in out, out
        t = self.show(TENANT)
        assert t["domain"] == TENANT and t["limits"]["messages"] == total + 1, t
        assert t["usage"]["messages"] == total, t
        assert t["usage"]["bytes"] == ann["bytes"] + bob["bytes"], t
        users = {u["address"]: u for u in t["users"]}
        assert set(users) == {ANN, BOB}, users
        assert self.send(BOB, 300)[:2] == ("data", 250)
        self.wait_usage(TENANT, total + 1)
        # the frontend's tenant sum is up to TENANT_TTL_S old
        time.sleep(TENANT_TTL_S + 1)
        where, code, text = self.send(BOB, 300)
        assert (where, code) == ("rcpt", 452) and text.startswith("4.2.2"), (where, code, text)
        # and an IMAP APPEND of bob's too
        m = self.imap(BOB)
        try:
            typ, data = m.getquotaroot("INBOX")
            assert "MESSAGE 2 2" in data[1][0].decode(), data
            typ, data = m.append("INBOX", None, None, b"Subject: appended\r\n\r\nhello\r\n")
            assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
        finally:
            m.logout()
        # removing it: mail flows again
        self.ok("quota", "set", TENANT, "--messages", "unlimited", "--storage", "0")
        t = self.show(TENANT)
        assert t["limits"] == {"storage": None, "messages": None}, t
        time.sleep(TENANT_TTL_S + 1)
        assert self.send(BOB, 300)[:2] == ("data", 250)

    def several_rcpts_bounce(self):
        """A message that fits one recipient and not the other is accepted;
        the full one's copy is refused by the store at delivery and
        bounced to the sender (a DSN with Status 5.2.2)."""
        ann = self.show(ANN)
        bob_n = self.show(BOB)["usage"]["messages"]
        room = 10240 - ann["usage"]["bytes"]
        assert ann["usage"]["messages"] < 5 and room > 0, ann
        s = smtplib.SMTP("127.0.0.1", self.c.ports["submission"], timeout=30)
        s.ehlo("client.test")
        s.starttls(context=self.ctx)
        s.ehlo("client.test")
        s.login(BOB, PW[BOB])
        line = "y" * 76 + "\r\n"
        body = (f"From: {BOB}\r\nTo: {ANN}, {BOB}\r\nSubject: too big for ann\r\n\r\n"
                + line * ((room + 2000) // len(line)))
        refused = s.sendmail(BOB, [ANN, BOB], body)
        s.quit()
        assert refused == {}, refused
        # bob: his copy and the bounce
        self.wait_usage(BOB, bob_n + 2)
        assert self.show(ANN)["usage"] == ann["usage"]
        m = self.imap(BOB)
        try:
            m.select("INBOX", readonly=True)
            typ, data = m.fetch("1:*", "(BODY.PEEK[])")
            bodies = [d[1].decode(errors="replace") for d in data if isinstance(d, tuple)]
            dsns = [b for b in bodies if "Status: 5.2.2" in b]
            assert len(dsns) == 1, [b[:300] for b in bodies]
            dsn = dsns[0]
            assert "Status: 5.2.2" in dsn and ANN in dsn, dsn[:3000]
        finally:
            m.logout()
        import urllib.request
        port = self.c.metrics_port("queue-1")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        assert re.search(r'mail_quota_refusals_total\{[^}]*where="delivery"\} [1-9]',
                         text.decode()), [l for l in text.decode().splitlines() if "quota" in l]

    def metrics(self):
        """The frontend counts what it refused, by where."""
        import urllib.request
        port = self.c.metrics_port("frontend-1")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        s = text.decode()
        for where in ("rcpt", "data", "append"):
            assert re.search(r'mail_quota_refusals_total\{[^}]*where="' + where + r'"\} [1-9]',
                             s), (where, [l for l in s.splitlines() if "quota_ref" in l])


def main():
    def body(c, check):
        t = Quota(c)
        check("setup", t.setup)
        check("bad_input", t.bad_input)
        check("set_show", t.set_show)
        check("fill_storage_552", t.fill_storage)
        check("at_limit_rcpt_452", t.at_limit_rcpt)
        check("imap_quota_append_expunge", t.imap_quota)
        check("tenant_quota", t.tenant_quota)
        check("several_rcpts_bounce_5_2_2", t.several_rcpts_bounce)
        check("metrics", t.metrics)

    return e2e_harness.run("quota-e2e-", body, stores=3, queues=1)


if __name__ == "__main__":
    sys.exit(main())
