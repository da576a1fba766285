#!/usr/bin/python3
"""End-to-end: inbound trust and the addresses a tenant receives on (issue
11; docs/inbound.md).

A cluster resolves through a DNS server of ours (tests/support/dnszone.py,
--dns) holding SPF, DKIM and DMARC records of genuine and forged senders.
Mail comes in on the MX from 127.0.0.1 with smtplib, and every verdict is
checked where a user sees it: the stored message's Authentication-Results
read over IMAP.
  * SPF pass (ip4:127.0.0.1) and fail (another address), for MAIL FROM
    and HELO; spf=reject refuses a hard fail at RCPT with 550 5.7.23;
  * DKIM signed by an independent signer (dkimpy, python3-dkim), RSA and
    Ed25519: pass; the body changed after signing: fail;
  * DMARC: aligned pass; a forged From of a p=reject domain: 550 5.7.1 at
    the end of DATA when the tenant says dmarc=enforce (and delivered,
    dmarc=fail recorded, when it says record); p=quarantine: into Junk;
  * a forged Authentication-Results claiming our authserv-id is removed;
  * more than 100 Received fields: 554 5.4.6;
  * aliases, a list with a member of another tenant, the catch-all,
    subaddressing into an existing folder (and INBOX when it does not
    exist), a domain alias, postmaster@ and <postmaster>: each set with
    mailctl and checked in the mailboxes.
Run with Debian's /usr/bin/python3 (python3-dnslib, python3-dkim).
"""
import base64
import email
import email.policy
import imaplib
import os
import smtplib
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "support"))
import e2e_harness  # noqa: E402
import dnszone  # noqa: E402
import dkim  # noqa: E402  (python3-dkim)
from e2e_harness import local  # noqa: E402
from e2e_outbound import Sink  # noqa: E402

PASSWORD = "in s3cret"
TENANT = "inbound.test"
USERS = ["ann@inbound.test", "bob@inbound.test", "pm@inbound.test", "zoe@inbound.test",
         "cy@enf.test", "ola@off.test"]
AUTHSERV = "localhost"  # the frontend's --hostname (cluster/local's default)


def rsa_key(tmp):
    """A 2048-bit RSA key: (PEM private key bytes, base64 public key)."""
    key = os.path.join(tmp, "dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(key, "rb") as f:
        return f.read(), base64.b64encode(pub).decode()


def ed25519_key():
    """(private 32-byte seed as base64 for dkimpy, public key base64)."""
    import nacl.signing  # python3-nacl
    sk = nacl.signing.SigningKey.generate()
    return base64.b64encode(bytes(sk)), base64.b64encode(bytes(sk.verify_key)).decode()


def txt(name, value):
    """A TXT record line, the value cut into 255-byte strings."""
    parts = [value[i:i + 250] for i in range(0, len(value), 250)]
    return f'{name} IN TXT ' + " ".join(f'"{p}"' for p in parts) + "\n"


def zone_text(rsa_pub, ed_pub):
    z = "$ORIGIN test.\n$TTL 60\n"
    z += txt("good", "v=spf1 ip4:127.0.0.1 -all")
    z += txt("_dmarc.good", "v=DMARC1; p=reject")
    z += txt("forged", "v=spf1 ip4:192.0.2.1 -all")
    z += txt("_dmarc.forged", "v=DMARC1; p=reject")
    z += txt("quar", "v=spf1 ip4:192.0.2.1 -all")
    z += txt("_dmarc.quar", "v=DMARC1; p=quarantine")
    z += txt("signer", "v=spf1 -all")
    z += txt("_dmarc.signer", "v=DMARC1; p=reject")
    z += txt("rsa._domainkey.signer", f"v=DKIM1; k=rsa; p={rsa_pub}")
    z += txt("ed._domainkey.signer", f"v=DKIM1; k=ed25519; p={ed_pub}")
    z += txt("helo-ok", "v=spf1 ip4:127.0.0.1 -all")
    # the client's reverse DNS (127.0.0.1 has FCrDNS; 127.0.0.2 none)
    z += "1.0.0.127.in-addr.arpa. IN PTR helo-ok.test.\n"
    z += "helo-ok IN A 127.0.0.1\n"
    # a DNSBL listing 127.0.0.1, one listing nobody; an RHSBL listing bad.test
    z += "1.0.0.127.bl IN A 127.0.0.2\n"
    z += txt("1.0.0.127.bl", "listed for testing")
    z += "clean IN TXT \"zone apex\"\n"
    z += "bad.test.rhs IN A 127.0.0.2\n"
    z += txt("bad", "v=spf1 ip4:127.0.0.1 -all")
    # outside domains whose MX is the sink (forwards and bounces go there)
    z += "far IN MX 10 mx.far.test.\nmx.far IN A 127.0.0.1\n"
    z += "good IN MX 10 mx.far.test.\n"
    return z


def message(frm, to, subject, extra=b""):
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n").encode() + extra + \
        b"\r\nHello from the inbound test.\r\n"


def wait_records(sink, n, timeout=30):
    """The sink's records once there are at least n."""
    deadline = time.time() + timeout
    while True:
        recs = sink.records()
        if len(recs) >= n:
            return recs
        assert time.time() < deadline, f"the sink got {len(recs)} of {n} messages"
        time.sleep(0.2)


class Inbound:
    def __init__(self, c, tmp):
        self.c = c
        self.tmp = tmp

    def send(self, mail_from, rcpts, body, helo="helo-ok.test", port=None, source=None):
        """MAIL/RCPT/DATA on the MX (frontend-1's unless port; from the
        address source, else 127.0.0.1); returns (rcpt replies, data reply)."""
        with smtplib.SMTP("127.0.0.1", port or self.c.ports["smtp"], timeout=60,
                          source_address=(source, 0) if source else None) as s:
            s.ehlo(helo)
            code, resp = s.mail(mail_from)
            assert code == 250, (code, resp)
            replies = [s.rcpt(r) for r in rcpts]
            if not any(code == 250 for code, _ in replies):
                s.rset()
                return replies, None
            try:
                code, resp = s.data(body)
            except smtplib.SMTPDataError as e:
                code, resp = e.smtp_code, e.smtp_error
            return replies, (code, resp.decode(errors="replace"))

    def metrics(self):
        import urllib.request
        port = self.c.metrics_port("frontend-1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()

    def spam_counts(self):
        """mail_spam_checks_total by result, from frontend-1's /metrics."""
        out = {}
        for line in self.metrics().splitlines():
            if line.startswith("mail_spam_checks_total{"):
                result = line.split('result="', 1)[1].split('"', 1)[0]
                out[result] = int(line.rsplit(" ", 1)[1])
        return out

    def imap(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
        m.login(user, PASSWORD)
        return m

    def find(self, user, subject, mailbox="INBOX", timeout=30):
        """The message with subject in user's mailbox (an EmailMessage),
        waiting for delivery; None if it never came."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.imap(user)
            try:
                typ, _ = m.select(f'"{mailbox}"')
                if typ == "OK":
                    typ, data = m.search(None, "SUBJECT", f'"{subject}"')
                    ids = data[0].split()
                    if ids:
                        typ, data = m.fetch(ids[-1], "(BODY.PEEK[])")
                        return email.message_from_bytes(data[0][1], policy=email.policy.default)
            finally:
                m.logout()
            time.sleep(0.3)
        return None

    def count(self, user, subject, mailbox="INBOX"):
        m = self.imap(user)
        try:
            typ, _ = m.select(f'"{mailbox}"')
            if typ != "OK":
                return 0
            typ, data = m.search(None, "SUBJECT", f'"{subject}"')
            return len(data[0].split())
        finally:
            m.logout()

    def ar(self, msg):
        """Our Authentication-Results, as one unfolded string."""
        ours = [str(v) for v in msg.get_all("Authentication-Results", [])
                if str(v).split(";")[0].strip().lower() == AUTHSERV]
        assert len(ours) == 1, msg.get_all("Authentication-Results")
        return " ".join(ours[0].split())

    def delivered(self, mail_from, rcpt, body, subject, user=None, mailbox="INBOX"):
        replies, data = self.send(mail_from, [rcpt], body)
        assert replies[0][0] == 250, replies
        assert data[0] == 250, data
        msg = self.find(user or rcpt, subject, mailbox)
        assert msg is not None, f"{subject} not in {user or rcpt}'s {mailbox}"
        return msg

    # ---- checks --------------------------------------------------------------

    def spf_pass_and_fail(self):
        msg = self.delivered("someone@good.test", "ann@inbound.test",
                             message("someone@good.test", "ann@inbound.test", "spf good"),
                             "spf good")
        ar = self.ar(msg)
        assert "spf=pass smtp.mailfrom=someone@good.test" in ar, ar
        assert "spf=pass smtp.helo=helo-ok.test" in ar, ar
        assert "dmarc=pass" in ar and "header.from=good.test" in ar, ar
        assert str(msg["Received-SPF"]).startswith("pass"), msg["Received-SPF"]
        msg = self.delivered("someone@forged.test", "ann@inbound.test",
                             message("x@inbound.test", "ann@inbound.test", "spf forged"),
                             "spf forged")
        ar = self.ar(msg)
        assert "spf=fail smtp.mailfrom=someone@forged.test" in ar, ar
        assert "dkim=none" in ar, ar

    def spf_reject(self):
        self.c.mailctl("tenant", "set", "enf.test", "spf=reject")
        replies, data = self.send("someone@forged.test", ["cy@enf.test", "ann@inbound.test"],
                                  message("a@forged.test", "cy@enf.test", "spf rejected"))
        assert replies[0][0] == 550 and b"5.7.23" in replies[0][1], replies
        assert replies[1][0] == 250, replies  # the other tenant only records
        assert data[0] == 250, data
        assert self.find("ann@inbound.test", "spf rejected") is not None
        assert self.count("cy@enf.test", "spf rejected") == 0
        # a pass gets through
        self.delivered("someone@good.test", "cy@enf.test",
                       message("someone@good.test", "cy@enf.test", "spf ok enf"), "spf ok enf")

    def dkim_independent_signer(self):
        body = message("news@signer.test", "ann@inbound.test", "dkim signed")
        signed = dkim.sign(body, b"rsa", b"signer.test", self.rsa_priv,
                           include_headers=[b"from", b"to", b"subject"])
        signed = dkim.sign(signed + body, b"ed", b"signer.test", self.ed_priv,
                           signature_algorithm=b"ed25519-sha256",
                           include_headers=[b"from", b"to", b"subject"]) + signed
        msg = self.delivered("bounce@signer.test", "ann@inbound.test", signed + body,
                             "dkim signed")
        ar = self.ar(msg)
        assert "dkim=pass" in ar and "header.d=signer.test" in ar and "header.s=rsa" in ar, ar
        assert "header.a=ed25519-sha256" in ar and "header.s=ed" in ar, ar
        assert ar.count("dkim=pass") == 2, ar
        # SPF fails (-all) but the aligned DKIM pass makes DMARC pass
        assert "spf=fail" in ar and "dmarc=pass" in ar, ar
        # the body changed after signing
        body2 = message("news@signer.test", "ann@inbound.test", "dkim broken")
        sig = dkim.sign(body2, b"rsa", b"signer.test", self.rsa_priv,
                        include_headers=[b"from", b"to", b"subject"])
        msg = self.delivered("bounce@signer.test", "ann@inbound.test",
                             sig + body2.replace(b"Hello", b"Jello"), "dkim broken")
        ar = self.ar(msg)
        assert "dkim=fail" in ar and "dmarc=fail" in ar, ar

    def dmarc_reject_and_quarantine(self):
        self.c.mailctl("tenant", "set", "enf.test", "dmarc=enforce", "spf=record")
        out = self.c.mailctl("tenant", "show", "enf.test").stdout
        assert "dmarc" in out and "enforce" in out, out
        # a forged From of a p=reject domain: refused at the end of DATA
        replies, data = self.send("x@forged.test", ["cy@enf.test"],
                                  message("ceo@forged.test", "cy@enf.test", "dmarc forged"))
        assert replies[0][0] == 250, replies
        assert data[0] == 550 and "5.7.1" in data[1] and "forged.test" in data[1], data
        # the tenant that records gets it, with dmarc=fail
        msg = self.delivered("x@forged.test", "ann@inbound.test",
                             message("ceo@forged.test", "ann@inbound.test", "dmarc recorded"),
                             "dmarc recorded")
        ar = self.ar(msg)
        assert "dmarc=fail" in ar and "header.from=forged.test" in ar, ar
        # p=quarantine: into Junk
        self.delivered("x@quar.test", "cy@enf.test",
                       message("ceo@quar.test", "cy@enf.test", "dmarc quarantined"),
                       "dmarc quarantined", mailbox="Junk")
        assert self.count("cy@enf.test", "dmarc quarantined") == 0

    def forged_authres_removed(self):
        extra = (f"Authentication-Results: {AUTHSERV}; spf=pass smtp.mailfrom=x@forged.test;"
                 " dmarc=pass header.from=forged.test\r\n"
                 "Authentication-Results: other.example; dkim=pass header.d=x\r\n").encode()
        msg = self.delivered("x@forged.test", "ann@inbound.test",
                             message("x@forged.test", "ann@inbound.test", "ar forged", extra),
                             "ar forged")
        ar = self.ar(msg)  # exactly one of ours: the forged one went
        assert "spf=fail" in ar, ar
        others = [str(v) for v in msg.get_all("Authentication-Results")]
        assert any(v.startswith("other.example") for v in others), others

    def checks_off(self):
        """A tenant with spf=off, dmarc=off, spam=off: no DNS, "none", ours still
        stripped."""
        self.c.mailctl("tenant", "set", "off.test", "spf=off", "dmarc=off", "spam=off")
        extra = f"Authentication-Results: {AUTHSERV}; dmarc=pass\r\n".encode()
        msg = self.delivered("x@forged.test", "ola@off.test",
                             message("ceo@forged.test", "ola@off.test", "checks off", extra),
                             "checks off")
        assert self.ar(msg) == f"{AUTHSERV}; none", self.ar(msg)
        assert msg["Received-SPF"] is None, msg["Received-SPF"]

    def greylisting(self):
        """Two frontends agree on one triplet; a retry after the delay
        passes; an SPF pass of a domain that passed before skips it."""
        c = self.c
        c.mailctl("tenant", "set", "enf.test", "greylisting=on", "greylist_delay=2")
        fe2 = c.frontend_ports(2)["smtp"]
        body = message("x@grey.test", "cy@enf.test", "greylisted")
        t0 = time.time()
        replies, _ = self.send("x@grey.test", ["cy@enf.test"], body)
        assert replies[0][0] == 451 and b"4.7.1" in replies[0][1], replies
        # the other frontend knows the triplet: too early there too
        replies, _ = self.send("x@grey.test", ["cy@enf.test"], body, port=fe2)
        assert replies[0][0] == 451, replies
        # another tenant's recipient in the same transaction is not greylisted
        replies, data = self.send("x@grey.test", ["cy@enf.test", "ann@inbound.test"],
                                  message("x@grey.test", "ann@inbound.test", "not grey"))
        assert replies[0][0] == 451 and replies[1][0] == 250 and data[0] == 250, (replies, data)
        time.sleep(max(0, t0 + 2.5 - time.time()))
        replies, data = self.send("x@grey.test", ["cy@enf.test"], body, port=fe2)
        assert replies[0][0] == 250 and data[0] == 250, (replies, data)
        assert self.find("cy@enf.test", "greylisted") is not None
        # a new sender is a new triplet
        replies, _ = self.send("y@grey.test", ["cy@enf.test"], body)
        assert replies[0][0] == 451, replies
        # good.test passes SPF: once one of its senders got through, the
        # domain is known and another of its senders is not held
        b2 = message("a@good.test", "cy@enf.test", "grey good")
        replies, _ = self.send("a@good.test", ["cy@enf.test"], b2)
        assert replies[0][0] == 451, replies
        time.sleep(2.5)
        replies, data = self.send("a@good.test", ["cy@enf.test"], b2)
        assert replies[0][0] == 250 and data[0] == 250, (replies, data)
        replies, data = self.send("b@good.test", ["cy@enf.test"],
                                  message("b@good.test", "cy@enf.test", "grey known"))
        assert replies[0][0] == 250 and data[0] == 250, (replies, data)
        assert 'mail_greylist_checks_total{' in self.metrics()
        c.mailctl("tenant", "set", "enf.test", "greylisting=off")

    def connection_checks(self):
        """iprev recorded; DNSBL and RHSBL refuse per tenant; ptr=reject
        refuses a client without forward-confirmed reverse DNS."""
        c = self.c
        msg = self.delivered("x@good.test", "ann@inbound.test",
                             message("x@good.test", "ann@inbound.test", "iprev"), "iprev")
        ar = self.ar(msg)
        assert "iprev=pass (helo-ok.test) policy.iprev=127.0.0.1" in ar, ar
        c.mailctl("tenant", "set", "enf.test", "dnsbl=clean.test,bl.test")
        replies, data = self.send("x@good.test", ["cy@enf.test", "ann@inbound.test"],
                                  message("x@good.test", "ann@inbound.test", "dnsbl"))
        assert replies[0][0] == 554 and b"blocked using bl.test" in replies[0][1], replies
        assert b"listed for testing" in replies[0][1], replies
        assert replies[1][0] == 250 and data[0] == 250, (replies, data)
        c.mailctl("tenant", "set", "enf.test", "dnsbl=clean.test", "rhsbl=rhs.test")
        replies, _ = self.send("x@bad.test", ["cy@enf.test"], b"")
        assert replies[0][0] == 554 and b"bad.test blocked using rhs.test" in replies[0][1], \
            replies
        self.delivered("x@good.test", "cy@enf.test",
                       message("x@good.test", "cy@enf.test", "not listed"), "not listed")
        c.mailctl("tenant", "set", "enf.test", "dnsbl=", "rhsbl=", "ptr=reject")
        replies, _ = self.send("x@good.test", ["cy@enf.test"], b"", source="127.0.0.2")
        assert replies[0][0] == 550 and b"5.7.25" in replies[0][1], replies
        replies, _ = self.send("x@good.test", ["cy@enf.test"], b"")
        assert replies[0][0] == 250, replies
        c.mailctl("tenant", "set", "enf.test", "ptr=record")

    def srs_forward_and_bounce(self):
        """An alias with an outside target: the forwarded copy leaves under
        an SRS sender of the tenant, with Delivered-To; a bounce to that
        address comes back to the original sender; a forged one is
        refused; the copy coming back to us is a loop."""
        c = self.c
        c.mailctl("alias", "add", "fwd@inbound.test", "ann@inbound.test", "someone@far.test")
        before = len(self.sink.records())
        self.delivered("sender@good.test", "fwd@inbound.test",
                       message("sender@good.test", "fwd@inbound.test", "forwarded"), "forwarded",
                       user="ann@inbound.test")
        recs = wait_records(self.sink, before + 1)
        rec = recs[-1]
        assert rec["rcpts"][0].startswith("<someone@far.test>"), rec
        srs = rec["mail"].split(">")[0].lstrip("<")
        assert srs.startswith("SRS0=") and srs.endswith("=good.test=sender@inbound.test"), srs
        assert "Delivered-To: fwd@inbound.test" in rec["data"], rec["data"][:600]
        assert "Authentication-Results: localhost;" in rec["data"], rec["data"][:600]
        # the far side bounces: to the SRS address, with the null sender
        replies, data = self.send("", [srs], message("mailer-daemon@far.test", srs, "bounce"))
        assert replies[0][0] == 250 and data[0] == 250, (replies, data)
        recs = wait_records(self.sink, before + 2)
        assert recs[-1]["mail"].startswith("<>"), recs[-1]
        assert recs[-1]["rcpts"][0].startswith("<sender@good.test>"), recs[-1]
        # an SRS address not made here (a changed hash; the hash is
        # compared without case, so 'a' -> 'A' would change nothing)
        forged = srs[:5] + ("A" if srs[5].upper() != "A" else "B") + srs[6:]
        replies, _ = self.send("", [forged], b"")
        assert replies[0][0] == 550, replies
        # our forwarded copy coming back to the same alias: a loop
        replies, data = self.send("x@good.test", ["fwd@inbound.test"],
                                  message("x@good.test", "fwd@inbound.test", "looped",
                                          b"Delivered-To: fwd@inbound.test\r\n"))
        assert data[0] == 554 and "5.4.6" in data[1], data

    def spam_verdicts(self):
        """A real rspamd (cluster/local's --rspamd): GTUBE refused with
        550 5.7.1 at the end of DATA for a tenant with spam=on (the
        default); ham is taken; a tenant with spam=off is not asked; rspamd
        down: the message passes unchecked, counted in /metrics."""
        c = self.c
        gtube = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
        # spam=on is the default; inbound.test turns it off
        c.mailctl("tenant", "set", TENANT, "spam=off")
        _, data = self.send("x@good.test", ["cy@enf.test"],
                            message("x@good.test", "cy@enf.test", "gtube", b"") + gtube + b"\r\n")
        assert data[0] == 550 and "5.7.1" in data[1], data
        # spam=off (inbound.test): the same message is taken
        self.delivered("x@good.test", "ann@inbound.test",
                       message("x@good.test", "ann@inbound.test", "gtube off") + gtube + b"\r\n",
                       "gtube off")
        msg = self.delivered("x@good.test", "cy@enf.test",
                             message("x@good.test", "cy@enf.test", "ham"), "ham")
        assert msg["X-Spam-Flag"] is None or str(msg["X-Spam-Flag"]) == "NO", msg["X-Spam-Flag"]
        # rspamd gone: unchecked, delivered, counted
        before = self.spam_counts()
        assert before["ok"] >= 2, before    # GTUBE and ham at least
        c.rspamd_stop()
        self.delivered("x@good.test", "cy@enf.test",
                       message("x@good.test", "cy@enf.test", "unchecked"), "unchecked")
        after = self.spam_counts()
        assert after["unavailable"] == before["unavailable"] + 1, (before, after)
        assert after["ok"] == before["ok"], (before, after)
        c.mailctl("tenant", "set", "enf.test", "spam=off")
        c.mailctl("tenant", "set", TENANT, "spam=on")

    def loop_refused(self):
        hops = b"".join(b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                        for _ in range(101))
        _, data = self.send("x@good.test", ["ann@inbound.test"],
                            hops + message("x@good.test", "ann@inbound.test", "looping"))
        assert data[0] == 554 and "5.4.6" in data[1], data

    def aliases(self):
        c = self.c
        c.mailctl("alias", "add", "sales@inbound.test", "bob@inbound.test")
        c.mailctl("alias", "add", "team@inbound.test", "ann@inbound.test", "bob@inbound.test",
                  "cy@enf.test")
        out = c.mailctl("alias", "list", TENANT).stdout
        assert "sales@inbound.test bob@inbound.test" in out, out
        assert "team@inbound.test ann@inbound.test,bob@inbound.test,cy@enf.test" in out, out
        self.delivered("x@good.test", "Sales@Inbound.test",
                       message("x@good.test", "sales@inbound.test", "to sales"), "to sales",
                       user="bob@inbound.test")
        replies, data = self.send("x@good.test", ["team@inbound.test"],
                                  message("x@good.test", "team@inbound.test", "to team"))
        assert replies[0][0] == 250 and data[0] == 250, (replies, data)
        for u in ("ann@inbound.test", "bob@inbound.test", "cy@enf.test"):
            assert self.find(u, "to team") is not None, u
            assert self.count(u, "to team") == 1, u
        # unknown still 550 5.1.1; del removes
        replies, _ = self.send("x@good.test", ["nobody@inbound.test"], b"")
        assert replies[0][0] == 550 and b"5.1.1" in replies[0][1], replies
        c.mailctl("alias", "del", "sales@inbound.test")
        replies, _ = self.send("x@good.test", ["sales@inbound.test"], b"")
        assert replies[0][0] == 550, replies

    def catch_all(self):
        self.c.mailctl("alias", "add", "@inbound.test", "zoe@inbound.test")
        self.delivered("x@good.test", "whatever123@inbound.test",
                       message("x@good.test", "whatever123@inbound.test", "caught"), "caught",
                       user="zoe@inbound.test")
        # a user still gets its own mail
        self.delivered("x@good.test", "bob@inbound.test",
                       message("x@good.test", "bob@inbound.test", "not caught"), "not caught")
        self.c.mailctl("alias", "del", "@inbound.test")

    def subaddressing(self):
        m = self.imap("ann@inbound.test")
        assert m.create("Lists")[0] == "OK"
        m.logout()
        self.delivered("x@good.test", "ann+Lists@inbound.test",
                       message("x@good.test", "ann+Lists@inbound.test", "plus folder"),
                       "plus folder", user="ann@inbound.test", mailbox="Lists")
        self.delivered("x@good.test", "ann+nosuch@inbound.test",
                       message("x@good.test", "ann+nosuch@inbound.test", "plus inbox"),
                       "plus inbox", user="ann@inbound.test")

    def domain_alias(self):
        self.c.mailctl("domain", "alias", "add", "inbound.example", TENANT)
        out = self.c.mailctl("domain", "alias", "list").stdout
        assert "inbound.example inbound.test" in out, out
        self.delivered("x@good.test", "bob@inbound.example",
                       message("x@good.test", "bob@inbound.example", "via domain alias"),
                       "via domain alias", user="bob@inbound.test")

    def postmaster(self):
        self.c.mailctl("tenant", "set", TENANT, "postmaster=pm@inbound.test")
        self.delivered("x@good.test", "postmaster@inbound.test",
                       message("x@good.test", "postmaster@inbound.test", "pm domain"),
                       "pm domain", user="pm@inbound.test")
        # <postmaster> without a domain: the first tenant's (enf.test sorts
        # first of the tenants with users; its postmaster is its first user)
        replies, data = self.send("x@good.test", ["postmaster"],
                                  message("x@good.test", "postmaster", "pm bare"))
        assert replies[0][0] == 250 and data[0] == 250, (replies, data)
        assert self.find("cy@enf.test", "pm bare") is not None


def main():
    tmp = tempfile.mkdtemp(prefix="inbound-e2e-")
    rsa_priv, rsa_pub = rsa_key(tmp)
    ed_priv, ed_pub = ed25519_key()
    zone = dnszone.ZoneServer(zone_text(rsa_pub, ed_pub))
    zone.__enter__()
    port = local.free_port()
    sink = Sink(port, tmp)

    def body(c, check):
        for d in (TENANT, "enf.test", "off.test"):
            c.mailctl("tenant", "add", d, check=False)
        for u in USERS:
            c.mailctl("user", "add", u, stdin=PASSWORD + "\n")
        t = Inbound(c, tmp)
        t.rsa_priv, t.ed_priv = rsa_priv, ed_priv
        t.sink = sink
        check("spf_pass_and_fail", t.spf_pass_and_fail)
        check("spf_reject", t.spf_reject)
        check("dkim_independent_signer", t.dkim_independent_signer)
        check("dmarc_reject_and_quarantine", t.dmarc_reject_and_quarantine)
        check("forged_authres_removed", t.forged_authres_removed)
        check("checks_off", t.checks_off)
        check("greylisting", t.greylisting)
        check("connection_checks", t.connection_checks)
        check("srs_forward_and_bounce", t.srs_forward_and_bounce)
        check("spam_verdicts", t.spam_verdicts)
        check("loop_refused", t.loop_refused)
        check("aliases", t.aliases)
        check("catch_all", t.catch_all)
        check("subaddressing", t.subaddressing)
        check("domain_alias", t.domain_alias)
        check("postmaster", t.postmaster)

    try:
        return e2e_harness.run("inbound-e2e-", body, dns=zone.server, frontends=2,
                               smtp_out_port=port, rspamd=True)
    finally:
        sink.stop()
        zone.__exit__(None, None, None)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
