#!/usr/bin/python3
"""Self-test of tests/support/postfix.py: a real PostfixMX and a real
PostfixSmarthost in front of it.

  * the MX takes mail over STARTTLS for far.test, refuses a recipient listed
    in `reject` at RCPT with 550 5.1.1 and stores the other one's copy,
    which messages() reads back; it refuses to relay for other domains;
  * the smarthost offers no AUTH before STARTTLS, refuses to relay for a
    client that has not authenticated (554 5.7.1, even from 127.0.0.1 and
    over TLS), refuses a bad password (535), and with STARTTLS + AUTH PLAIN
    (and LOGIN) accepts a message that then arrives at the MX;
  * stop() leaves no process and no directory behind.
Exits 77 (skipped) when Postfix is not installed, non-zero on failure.
Run: /usr/bin/python3 tests/support/test_postfix_support.py
"""
import os
import smtplib
import ssl
import sys
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import postfix  # noqa: E402

USER, PASSWORD = "user1@relay.test", "s3cret pw"


def tls_context(cert_file=None):
    """Trusting the instance's self-signed certificate (check_hostname
    off: it names the instance's host name, we connect to 127.0.0.1...
    which it also names, but keep the test independent of that)."""
    ctx = ssl.create_default_context(cafile=cert_file) if cert_file else \
        ssl.create_default_context()
    ctx.check_hostname = False
    if not cert_file:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(subject):
    tag = uuid.uuid4().hex
    return tag, (f"From: sender@near.test\r\nTo: someone\r\nSubject: {subject}\r\n"
                 f"Message-ID: <{tag}@near.test>\r\n\r\nbody {tag}\r\n").encode()


def connect(port, starttls, cert_file=None):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("client.test")
    if starttls:
        assert s.has_extn("starttls"), s.esmtp_features
        s.starttls(context=tls_context(cert_file))
        s.ehlo("client.test")
    return s


def test_mx(mx):
    s = connect(mx.port, starttls=True, cert_file=mx.cert_file)
    tag, msg = message("to the MX")
    assert s.mail("sender@near.test") == (250, b"2.1.0 Ok")
    code, text = s.rcpt("good@far.test")
    assert code == 250, (code, text)
    code, text = s.rcpt("bad@far.test")
    assert code == 550 and text.startswith(b"5.1.1 "), (code, text)
    code, text = s.rcpt("elsewhere@other.test")
    assert code == 554 and b"Relay access denied" in text, (code, text)
    code, text = s.data(msg)
    assert code == 250, (code, text)
    s.quit()
    got = mx.messages("good@far.test", timeout=10)
    assert len(got) == 1, got
    assert f"body {tag}".encode() in got[0], got[0]
    assert b"Delivered-To: good@far.test" in got[0], got[0]
    assert b"with ESMTPS" in got[0], got[0]          # it did come over TLS
    assert mx.messages("bad@far.test", count=0) == []
    print(f"ok: MX 127.0.0.1:{mx.port}: 250 good, 550 5.1.1 bad, 554 relay, delivered")


def test_smarthost(sh, mx):
    # plaintext: no AUTH offered, and no relaying
    s = connect(sh.port, starttls=False)
    assert not s.has_extn("auth"), s.esmtp_features
    assert s.has_extn("starttls"), s.esmtp_features
    code, text = s.docmd("AUTH", "PLAIN AHVzZXIxQHJlbGF5LnRlc3QAeA==")
    assert code >= 500, (code, text)                 # 503 5.5.1 ... (not offered)
    s.rset()
    s.mail("sender@near.test")
    code, text = s.rcpt("someone@far.test")
    assert code == 554 and text.startswith(b"5.7.1 ") and b"Relay access denied" in text, \
        (code, text)
    s.quit()
    # TLS but no AUTH: still refused
    s = connect(sh.port, starttls=True, cert_file=sh.cert_file)
    auth = s.esmtp_features.get("auth", "").upper().split()
    assert "PLAIN" in auth and "LOGIN" in auth, s.esmtp_features
    s.mail("sender@near.test")
    code, text = s.rcpt("someone@far.test")
    assert code == 554 and text.startswith(b"5.7.1 "), (code, text)
    s.quit()
    # a bad password
    s = connect(sh.port, starttls=True, cert_file=sh.cert_file)
    try:
        s.login(USER, "wrong")
        raise AssertionError("bad password accepted")
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535, e
    s.quit()
    # STARTTLS + AUTH PLAIN: relayed to the MX
    s = connect(sh.port, starttls=True, cert_file=sh.cert_file)
    s.user, s.password = USER, PASSWORD
    code, text = s.auth("PLAIN", s.auth_plain)
    assert code == 235, (code, text)
    tag, msg = message("through the smarthost (PLAIN)")
    assert s.sendmail("sender@near.test", ["relayed@far.test"], msg) == {}
    s.quit()
    # STARTTLS + AUTH LOGIN too
    s = connect(sh.port, starttls=True, cert_file=sh.cert_file)
    s.user, s.password = USER, PASSWORD
    code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    assert code == 235, (code, text)
    tag2, msg2 = message("through the smarthost (LOGIN)")
    assert s.sendmail("sender@near.test", ["relayed@far.test"], msg2) == {}
    s.quit()
    got = mx.messages("relayed@far.test", count=2, timeout=15)
    assert len(got) == 2, (got, sh.log_tail(), sh.queue())
    bodies = b"".join(got)
    assert f"body {tag}".encode() in bodies and f"body {tag2}".encode() in bodies, got
    assert b"by smarthost.test (Postfix) with ESMTPSA" in got[0], got[0]
    log = sh.log()
    assert "sasl_method=PLAIN" in log and "sasl_method=LOGIN" in log, log
    assert "status=sent" in log, log
    print(f"ok: smarthost 127.0.0.1:{sh.port}: no AUTH before STARTTLS, 554 5.7.1 without "
          f"AUTH, 535 bad password, PLAIN and LOGIN relayed to the MX")


def main():
    why = postfix.available(sasl=True)
    if why:
        print(f"SKIP: {why}")
        return 77
    t0 = time.monotonic()
    mx = postfix.PostfixMX(["far.test"], reject=["bad@far.test"])
    sh = None
    dirs = [mx.dir]
    pids = []
    try:
        mx.start()
        print(f"MX up in {time.monotonic() - t0:.1f} s")
        test_mx(mx)
        sh = postfix.PostfixSmarthost(USER, PASSWORD, mx.port)
        dirs.append(sh.dir)
        sh.start()
        test_smarthost(sh, mx)
        pids = mx.pids() + sh.pids()
        assert len(set(pids)) == len(pids), pids      # two instances, disjoint
    except Exception:
        traceback.print_exc()
        for inst in (mx, sh):
            if inst is not None:
                print(f"--- {inst.role} log tail ---\n{inst.log_tail(30)}", file=sys.stderr)
        return 1
    finally:
        for inst in (sh, mx):
            if inst is not None:
                inst.stop()
    left = [p for p in pids if postfix._Postfix._alive(p)]
    if left or any(os.path.exists(d) for d in dirs):
        print(f"FAIL: left behind: processes {left}, dirs {[d for d in dirs if os.path.exists(d)]}")
        return 1
    print(f"PASS in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
