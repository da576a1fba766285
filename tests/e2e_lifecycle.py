#!/usr/bin/env python3
"""The tenant lifecycle, as an operator and the users see it (issue 12
item 1, docs/operations.md): mailctl user disable/enable, tenant
suspend/resume, user del erasing the mailbox (a user created again sees an
empty INBOX with a new UIDVALIDITY), a failed erase leaving the user
disabled, tenant del refused with users and --purge deleting them, and the
--json forms parsed. Real SMTP (smtplib, the MX) and IMAP (imaplib) on a
three-store cluster. Standard library only.
"""
import imaplib
import json
import os
import poplib
import smtplib
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import e2e_harness  # noqa: E402

TENANT = "life.test"
ANN, BOB = f"ann@{TENANT}", f"bob@{TENANT}"
PW = {ANN: "ann-pw-1 long enough", BOB: "bob-pw-1 long enough"}


class Lifecycle:
    def __init__(self, c):
        self.c = c
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))
        self.sent = 0

    def mailctl(self, *args, stdin=None, env=None):
        import subprocess
        return subprocess.run([os.path.join(self.c.bin, "mailctl"), *args], input=stdin,
                              capture_output=True, text=True, timeout=120,
                              env=env or self.c.mailctl_env())

    def ok(self, *args, stdin=None):
        r = self.mailctl(*args, stdin=stdin)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def rcpt(self, rcpt):
        """The MX's answer to RCPT TO:<rcpt> (code, text); sends the
        message when it is taken."""
        s = smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=30)
        try:
            s.ehlo("sender.test")
            s.mail("someone@sender.test")
            code, text = s.rcpt(rcpt)
            if code == 250:
                # each message its own (the same bytes again are a resend,
                # stored once)
                self.sent += 1
                s.data(f"From: someone@sender.test\r\nTo: {rcpt}\r\n"
                       f"Message-ID: <{self.sent}.{time.time()}@sender.test>\r\n"
                       f"Subject: hello {rcpt} {self.sent}\r\n\r\nfor {rcpt}\r\n")
            return code, text.decode()
        finally:
            s.quit()

    def login(self, user):
        """(an IMAP session, None) or (None, the error)."""
        m = imaplib.IMAP4_SSL("localhost", self.c.ports["imaps"], ssl_context=self.ctx,
                              timeout=30)
        try:
            m.login(user, PW[user])
        except imaplib.IMAP4.error as e:
            m.shutdown()
            return None, str(e)
        return m, None

    def inbox(self, user):
        """(messages, UIDVALIDITY) of user's INBOX."""
        m, err = self.login(user)
        assert m is not None, err
        try:
            typ, data = m.select("INBOX", readonly=True)
            n = int(data[0])
            typ, data = m.status("INBOX", "(UIDVALIDITY)")
            uv = int(data[0].decode().split("UIDVALIDITY ")[1].rstrip(")"))
            return n, uv
        finally:
            m.logout()

    def wait_inbox(self, user, n):
        e2e_harness_wait(lambda: self.inbox(user)[0] >= n, f"{n} message(s) for {user}")

    # ---- checks ---------------------------------------------------------

    def setup_users(self):
        self.ok("tenant", "add", TENANT)
        for u in (ANN, BOB):
            self.ok("user", "add", u, stdin=PW[u] + "\n")
        for _ in range(3):
            assert self.rcpt(ANN)[0] == 250
        self.wait_inbox(ANN, 3)

    def json_forms(self):
        users = json.loads(self.ok("user", "list", TENANT, "--json"))
        assert users["tenant"] == TENANT, users
        assert {u["address"] for u in users["users"]} == {ANN, BOB}, users
        assert all(u["state"] == "active" and u["created_ms"] > 0 for u in users["users"])
        show = json.loads(self.ok("user", "show", ANN, "--json"))
        assert show["address"] == ANN and show["scram"] is True, show
        tenants = json.loads(self.ok("tenant", "list", "--json"))
        mine = [t for t in tenants["tenants"] if t["domain"] == TENANT]
        assert mine and mine[0]["users"] == 2 and mine[0]["suspended"] is False, tenants
        r = self.mailctl("user", "show", f"nobody@{TENANT}")
        assert r.returncode == 2 and "not found" in r.stderr, (r.returncode, r.stderr)
        # every list takes --json
        self.ok("alias", "add", f"sales@{TENANT}", ANN, BOB)
        aliases = json.loads(self.ok("alias", "list", TENANT, "--json"))
        assert aliases["aliases"] == [{"alias": f"sales@{TENANT}",
                                       "targets": sorted([ANN, BOB])}], aliases
        self.ok("alias", "del", f"sales@{TENANT}")
        self.ok("domain", "alias", "add", "life-alias.test", TENANT)
        da = json.loads(self.ok("domain", "alias", "list", "--json"))
        assert {"alias": "life-alias.test", "target": TENANT} in da["domain_aliases"], da
        self.ok("domain", "alias", "del", "life-alias.test")
        self.ok("block", "add", "192.0.2.77", "--ttl", "60")
        blocks = json.loads(self.ok("block", "list", "--json"))
        mine = [b for b in blocks["blocks"] if b["address"] == "192.0.2.77"]
        assert mine and mine[0]["reason"] == "operator" and mine[0]["lease"], blocks
        self.ok("block", "remove", "192.0.2.77")
        assert isinstance(json.loads(self.ok("tls", "list", "--json"))["certificates"], list)
        # a tenant's user limit
        self.ok("tenant", "set", TENANT, "max_users=2")
        r = self.mailctl("user", "add", f"third@{TENANT}", stdin="third pw long enough\n")
        assert r.returncode == 5 and "max_users" in r.stderr, (r.returncode, r.stderr)
        self.ok("tenant", "set", TENANT, "max_users=0")

    def disable_enable(self):
        out = self.ok("user", "disable", ANN)
        assert "disabled" in out, out
        m, err = self.login(ANN)
        assert m is None, "a disabled user logged in"
        code, text = self.rcpt(ANN)
        assert code == 550 and "5.2.1" in text, (code, text)
        assert "(disabled)" in self.ok("user", "list", TENANT)
        self.ok("user", "enable", ANN)
        m, err = self.login(ANN)
        assert m is not None, err
        m.logout()
        assert self.rcpt(ANN)[0] == 250
        self.wait_inbox(ANN, 4)

    def suspend_resume(self):
        out = self.ok("tenant", "suspend", TENANT)
        assert "suspended" in out, out
        assert json.loads(self.ok("tenant", "show", TENANT, "--json"))["suspended"] is True
        for u in (ANN, BOB):
            m, err = self.login(u)
            assert m is None, f"{u} logged in while the tenant is suspended"
        code, text = self.rcpt(BOB)
        assert code == 450 and "4.2.1" in text, (code, text)
        self.ok("tenant", "resume", TENANT)
        m, err = self.login(BOB)
        assert m is not None, err
        m.logout()
        assert self.rcpt(BOB)[0] == 250

    def app_passwords(self):
        r = self.mailctl("user", "app-password", "add", ANN, "--name", "phone")
        assert r.returncode == 0, (r.returncode, r.stderr)
        pw = r.stdout.strip()
        assert len(pw) == 19 and pw.count("-") == 3, pw
        assert "shown once" in r.stderr, r.stderr
        # IMAP, POP3 and SMTP AUTH take it
        m = imaplib.IMAP4_SSL("localhost", self.c.ports["imaps"], ssl_context=self.ctx,
                              timeout=30)
        m.login(ANN, pw)
        m.logout()
        p = poplib.POP3_SSL("localhost", self.c.ports["pop3s"], context=self.ctx, timeout=30)
        p.user(ANN)
        p.pass_(pw)
        p.quit()
        s = smtplib.SMTP("localhost", self.c.ports["submission"], timeout=30)
        s.starttls(context=self.ctx)
        s.login(ANN, pw)
        s.quit()
        listed = json.loads(self.ok("user", "app-password", "list", ANN, "--json"))
        assert [a["name"] for a in listed["app_passwords"]] == ["phone"], listed
        assert pw not in json.dumps(listed)
        r = self.mailctl("user", "app-password", "add", ANN, "--name", "phone")
        assert r.returncode == 3, (r.returncode, r.stderr)
        # revoked: refused at the next login, on every service
        self.ok("user", "app-password", "revoke", ANN, "phone")
        m = imaplib.IMAP4_SSL("localhost", self.c.ports["imaps"], ssl_context=self.ctx,
                              timeout=30)
        try:
            m.login(ANN, pw)
            raise AssertionError("a revoked app password logged in")
        except imaplib.IMAP4.error:
            pass
        finally:
            m.shutdown()
        s = smtplib.SMTP("localhost", self.c.ports["submission"], timeout=30)
        s.starttls(context=self.ctx)
        try:
            s.login(ANN, pw)
            raise AssertionError("a revoked app password got SMTP AUTH")
        except smtplib.SMTPAuthenticationError:
            pass
        finally:
            s.close()
        r = self.mailctl("user", "app-password", "revoke", ANN, "phone")
        assert r.returncode == 2, (r.returncode, r.stderr)

    def failed_erase_leaves_disabled(self):
        # no node certificate: the store cannot be asked (node TLS)
        with open(self.c.mailctl_conf()) as f:
            lines = [l for l in f.read().splitlines()
                     if not l.startswith(("node-cert", "node-key", "cluster-ca"))]
        path = os.path.join(self.c.state, "mailctl-nonode.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = self.mailctl("user", "del", BOB, env=dict(os.environ, MAIL_ETCD_CONF=path))
        assert r.returncode in (4, 5), (r.returncode, r.stdout, r.stderr)
        assert "stays disabled" in r.stderr and "user del" in r.stderr, r.stderr
        assert json.loads(self.ok("user", "show", BOB, "--json"))["state"] == "deleting"
        m, err = self.login(BOB)
        assert m is None, "a user being deleted logged in"
        out = self.ok("user", "del", BOB)
        assert "1 message" in out and "erased" in out, out

    def delete_recreate(self):
        n, old_uv = self.inbox(ANN)
        assert n == 4, n
        out = self.ok("user", "del", ANN)
        assert out.startswith(f"{ANN}: deleted; 4 messages"), out
        r = self.mailctl("user", "show", ANN)
        assert r.returncode == 2, (r.returncode, r.stderr)
        code, text = self.rcpt(ANN)
        assert code == 550 and "5.1.1" in text, (code, text)
        self.ok("user", "add", ANN, stdin=PW[ANN] + "\n")
        n, uv = self.inbox(ANN)
        assert n == 0, f"the new {ANN} sees {n} old message(s)"
        assert uv != old_uv, (uv, old_uv)
        assert self.rcpt(ANN)[0] == 250
        self.wait_inbox(ANN, 1)

    def tenant_del(self):
        self.ok("alias", "add", f"team@{TENANT}", ANN)
        r = self.mailctl("tenant", "del", TENANT)
        assert r.returncode == 5 and "--purge" in r.stderr, (r.returncode, r.stderr)
        out = self.ok("tenant", "del", TENANT, "--purge")
        assert "[1/1]" in out and f"{TENANT}: deleted with 1 user and 1 alias" in out, out
        tenants = json.loads(self.ok("tenant", "list", "--json"))
        assert TENANT not in {t["domain"] for t in tenants["tenants"]}, tenants
        code, text = self.rcpt(ANN)
        assert code == 550, (code, text)
        r = self.mailctl("tenant", "del", TENANT)
        assert r.returncode == 2, (r.returncode, r.stderr)


def e2e_harness_wait(fn, what, timeout=30):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except (AssertionError, OSError, imaplib.IMAP4.error):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def main():
    def body(c, check):
        t = Lifecycle(c)
        check("setup", t.setup_users)
        check("json_forms", t.json_forms)
        check("disable_enable", t.disable_enable)
        check("suspend_resume", t.suspend_resume)
        check("app_passwords", t.app_passwords)
        check("failed_erase_leaves_disabled", t.failed_erase_leaves_disabled)
        check("delete_recreate", t.delete_recreate)
        check("tenant_del_purge", t.tenant_del)

    # every refused login here comes from 127.0.0.1: a short penalty cap
    # keeps the auth guard's 2, 4, 8, 15 s waits from being the run time
    return e2e_harness.run("lifecycle-e2e-", body, stores=3, queues=1,
                           frontend_extra=["--auth-failure-delay-max", "300"])


if __name__ == "__main__":
    sys.exit(main())
