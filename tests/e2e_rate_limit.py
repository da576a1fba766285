#!/usr/bin/python3
"""End-to-end: the per-user outbound rate limit (issue 10 item 6) and the
tenant settings behind it (docs/rate-limits.md), with smtplib over
STARTTLS on the submission port.

Starts its own cluster on free 127.0.0.1 ports and checks:
  * `mailctl tenant set DOMAIN --outbound-per-hour 3 --delay-warning on`
    and `tenant show DOMAIN [--json]` print the settings;
  * a user of that tenant submits 3 messages to an address outside our
    tenants: each 250; the 4th gets 451 4.7.1 (at RCPT: the frontend knows
    the user is at the limit) and is not queued;
  * a transaction whose remote RCPT passed before the limit was reached
    gets 451 4.7.1 at the end of DATA instead (the count is taken there);
  * while over the limit, mail to a local recipient is still accepted and
    delivered, and a message to a local and a remote recipient reaches the
    local one (only the remote RCPT is refused);
  * another user of the same tenant has counts of their own, and a tenant
    without a limit is not limited;
  * a tenant-wide limit (tenant_outbound_per_hour=4): two users of the
    tenant together send 4, then either gets 451 4.7.1;
  * the tenant's delay-warning reaches the queue with each submitted
    message: its users get one "delayed" DSN for mail still deferred after
    the queue's --delay-warning (3 s here), a tenant without it gets none.
The remote domain's MX (our DNS server, tests/support/dnszone.py) refuses
connections, so every remote message stays deferred. Run with Debian's
/usr/bin/python3 (python3-dnslib); otherwise the standard library only.
"""
import imaplib
import json
import os
import smtplib
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "support"))
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402
import dnszone  # noqa: E402

TENANT = "limits.test"
ALICE = "alice@" + TENANT
BOB = "bob@" + TENANT
CAROL = "carol@" + TENANT
FREE = "dave@free.test"          # a tenant without a limit
# a tenant with a tenant-wide limit only (tenant_outbound_per_hour)
ERIN, FRANK = "erin@team.test", "frank@team.test"
TEAM_LIMIT = 4
PASSWORD = "rate pass"
REMOTE = "someone@dead.test"
LIMIT = 3
DELAY_WARNING_S = 3
ZONE = """
$ORIGIN test.
$TTL 60
dead        IN MX 10 mx.dead.test.
mx.dead     IN A 127.0.0.1
"""


def message(sender, to, subject):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
            f"{subject}\r\n")


class RateLimit:
    def __init__(self, c):
        self.c = c
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))

    def submission(self, user):
        s = smtplib.SMTP("127.0.0.1", self.c.ports["submission"], timeout=30)
        s.ehlo("client.test")
        s.starttls(context=self.ctx)
        s.ehlo("client.test")
        s.login(user, PASSWORD)
        return s

    def send(self, user, rcpts, subject):
        """sendmail's refused dict ({} when every recipient took it)."""
        with self.submission(user) as s:
            return s.sendmail(user, rcpts, message(user, ", ".join(rcpts), subject))

    def assert_limited(self, fn):
        """fn() must fail with 451 4.7.1, at RCPT or at DATA."""
        try:
            fn()
        except smtplib.SMTPRecipientsRefused as e:
            (code, text), = e.recipients.values()
            assert code == 451 and text.startswith(b"4.7.1"), e.recipients
            assert b"Outbound rate limit exceeded" in text, text
            return "rcpt"
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 451 and e.smtp_error.startswith(b"4.7.1"), e
            return "data"
        raise AssertionError("over the limit and accepted")

    def frontend_log(self):
        return self.c.log_tail("frontend-1", 2000)

    def settings_show(self):
        r = self.c.mailctl("tenant", "set", TENANT, "--outbound-per-hour", str(LIMIT),
                           "--delay-warning", "on")
        assert "outbound-per-hour  3 per hour" in r.stdout, r.stdout
        r = self.c.mailctl("tenant", "show", TENANT)
        assert "tenant             limits.test" in r.stdout, r.stdout
        assert "outbound-per-hour  3 per hour" in r.stdout, r.stdout
        assert "delay-warning      on" in r.stdout, r.stdout
        d = json.loads(self.c.mailctl("tenant", "show", TENANT, "--json").stdout)
        assert d["outbound_per_hour"] == LIMIT and d["delay_warning"] is True, d
        d = json.loads(self.c.mailctl("tenant", "show", "free.test", "--json").stdout)
        assert d["outbound_per_hour"] == 0 and d["delay_warning"] is False, d
        r = self.c.mailctl("tenant", "show", "nope.test", check=False)
        assert r.returncode == 2 and "not found" in r.stderr, (r.returncode, r.stderr)

    def limit_reached(self):
        # a transaction whose remote RCPT passes now, its DATA sent later
        early = self.submission(ALICE)
        code, _ = early.mail(ALICE)
        assert code == 250, code
        code, text = early.rcpt(REMOTE)
        assert code == 250, (code, text)
        for i in range(LIMIT):
            refused = self.send(ALICE, [REMOTE], f"remote {i + 1}")
            assert refused == {}, refused
        # the 4th: refused at RCPT (the tenant's settings are cached now)
        at = self.assert_limited(lambda: self.send(ALICE, [REMOTE], "remote 4"))
        assert at == "rcpt", at
        # the early transaction's DATA: the count is taken there, and full
        code, text = early.data(message(ALICE, REMOTE, "remote early"))
        assert code == 451 and text.startswith(b"4.7.1"), (code, text)
        early.quit()
        log = self.frontend_log()
        assert "event=rate_limited" in log and "at=rcpt" in log and "at=data" in log, log[-2000:]
        assert f"user={ALICE} limit={LIMIT}" in log, log[-2000:]

    def local_not_counted(self):
        # over the limit, yet local mail goes (twice: it is not counted)
        for i in range(2):
            refused = self.send(ALICE, [BOB], f"local {i + 1}")
            assert refused == {}, refused
        # local and remote: the local recipient takes it, the remote is refused
        with self.submission(ALICE) as s:
            refused = s.sendmail(ALICE, [BOB, REMOTE], message(ALICE, BOB, "mixed"))
        assert list(refused) == [REMOTE] and refused[REMOTE][0] == 451, refused
        # all three reach bob
        want = {"local 1", "local 2", "mixed"}
        deadline = time.monotonic() + 30
        got = set()
        while time.monotonic() < deadline and not want <= got:
            got = set(self.subjects(BOB))
            time.sleep(0.5)
        assert want <= got, got

    def subjects(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
        m.starttls(ssl_context=self.ctx)
        m.login(user, PASSWORD)
        typ, data = m.select("INBOX", readonly=True)
        got = [s for _, s in e2e_harness.uid_subjects(m, int(data[0]))]
        m.logout()
        return got

    def delay_warning(self):
        """alice's tenant wants the warning: one "delayed" DSN per deferred
        message (3 of them); dave's does not: none, though his mail waits
        as long."""
        delayed = "Delayed Mail (still being retried)"
        deadline = time.monotonic() + 60
        while True:
            got = self.subjects(ALICE)
            if got.count(delayed) >= LIMIT:
                break
            assert time.monotonic() < deadline, got
            time.sleep(1)
        time.sleep(DELAY_WARNING_S + 2)   # dave's mail is as old by now
        got = self.subjects(FREE)
        assert delayed not in got, got

    def others_unaffected(self):
        # another user of the tenant: counts of their own
        for i in range(LIMIT):
            assert self.send(CAROL, [REMOTE], f"carol {i + 1}") == {}
        self.assert_limited(lambda: self.send(CAROL, [REMOTE], "carol 4"))
        # a tenant with no limit
        for i in range(LIMIT + 2):
            assert self.send(FREE, [REMOTE], f"free {i + 1}") == {}
        # alice is still limited
        self.assert_limited(lambda: self.send(ALICE, [REMOTE], "remote 5"))

    def tenant_wide(self):
        r = self.c.mailctl("tenant", "set", "team.test", f"tenant_outbound_per_hour={TEAM_LIMIT}")
        assert r.returncode == 0, (r.returncode, r.stderr)
        d = json.loads(self.c.mailctl("tenant", "show", "team.test", "--json").stdout)
        assert d["tenant_outbound_per_hour"] == TEAM_LIMIT and d["outbound_per_hour"] == 0, d
        for i in range(TEAM_LIMIT // 2):
            assert self.send(ERIN, [REMOTE], f"erin {i + 1}") == {}
            assert self.send(FRANK, [REMOTE], f"frank {i + 1}") == {}
        self.assert_limited(lambda: self.send(ERIN, [REMOTE], "erin over"))
        self.assert_limited(lambda: self.send(FRANK, [REMOTE], "frank over"))
        assert "user=@team.test limit=4" in self.frontend_log()


def main():
    def body(c, check):
        c.mailctl("tenant", "add", TENANT)
        c.mailctl("tenant", "add", "free.test")
        c.mailctl("tenant", "add", "team.test")
        for user in (ALICE, BOB, CAROL, FREE, ERIN, FRANK):
            c.mailctl("user", "add", user, stdin=PASSWORD + "\n")
        t = RateLimit(c)
        check("settings_show", t.settings_show)
        check("limit_reached", t.limit_reached)
        check("local_not_counted", t.local_not_counted)
        check("others_unaffected", t.others_unaffected)
        check("tenant_wide", t.tenant_wide)
        check("delay_warning", t.delay_warning)

    zone = dnszone.ZoneServer(ZONE)
    zone.__enter__()
    dead_port = local.free_port()   # nothing listens there: connections refused
    try:
        return e2e_harness.run("rate-limit-e2e-", body, lease_ttl=3, stores=1, queues=1,
                               dns=zone.server, smtp_out_port=dead_port,
                               queue_extra=["--retry-schedule", "2",
                                            "--delay-warning", str(DELAY_WARNING_S)])
    finally:
        zone.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
