#!/usr/bin/env python3
"""End-to-end: a client that is not on loopback (a network namespace).

A cluster on free ports, plus a second frontend listening on the root end
of a veth pair (10.213.X.1); the client runs inside the namespace
(10.213.X.2), so the frontend sees a non-loopback peer:
  * a frontend with a listener off loopback and no --tls-cert refuses to
    start (exit 1);
  * IMAP: LOGINDISABLED, and LOGIN gets NO [PRIVACYREQUIRED] before TLS;
    after STARTTLS (verified against state/tls/ca.pem) LOGIN works;
  * submission: AUTH is not offered and gets 530 5.7.0 before TLS; after
    STARTTLS, AUTH PLAIN works;
  * POP3: USER and SASL are not in CAPA and USER gets -ERR [AUTH] before
    TLS; after STLS, USER/PASS work.
Needs root for `ip netns` (else SKIP, exit 77). Standard library only.
"""
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_partition import Net  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import local  # noqa: E402

USER, PASSWORD = "erin@example.test", "remote pass"

CLIENT = r'''
import imaplib, poplib, smtplib, ssl, sys, base64
host, imap_port, sub_port, ca, user, pw, pop3_port = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False  # the dev certificate names localhost, not 10.213.X.1
m = imaplib.IMAP4(host, int(imap_port), timeout=30)
assert "LOGINDISABLED" in m.capabilities, m.capabilities
try:
    m.login(user, pw)
    raise SystemExit("FAIL plaintext IMAP LOGIN accepted from a remote address")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.starttls(ssl_context=ctx)
assert "LOGINDISABLED" not in m.capabilities, m.capabilities
m.login(user, pw)
m.logout()
print("ok imap")
s = smtplib.SMTP(host, int(sub_port), timeout=30)
s.ehlo("remote.test")
assert not s.has_extn("auth"), s.esmtp_features
code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(
    b"\0" + user.encode() + b"\0" + pw.encode()).decode())
assert code == 530 and b"STARTTLS" in msg, (code, msg)
s.starttls(context=ctx)
s.ehlo("remote.test")
assert s.has_extn("auth"), s.esmtp_features
s.login(user, pw)
s.quit()
print("ok submission")
p = poplib.POP3(host, int(pop3_port), timeout=30)
caps = p.capa()
assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
try:
    p.user(user)
    raise SystemExit("FAIL plaintext POP3 USER accepted from a remote address")
except poplib.error_proto as e:
    assert b"-ERR [AUTH]" in e.args[0], e
p.stls(context=ctx)
assert "USER" in p.capa()
p.user(user)
assert p.pass_(pw).startswith(b"+OK")
p.quit()
print("ok pop3")
'''


def main():
    net = Net()
    why = net.create()
    if why is not None:
        print(f"SKIP: {why}")
        net.destroy()
        return 77

    def body(c, check):
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        tls = c.tls_dir()
        ports = {k: local.free_port() for k in ("smtp", "submission", "imap", "pop3")}
        host = net.root_ip

        c.ensure_node_cert("frontend-remote", "frontend")

        def argv(with_tls):
            a = [os.path.join(c.bin, "frontend"), "--id", "frontend-remote",
                 *c.node_tls_args("frontend-remote"),
                 *c.etcd_args("frontend"),
                 "--smtp", f"{host}:{ports['smtp']}",
                 "--submission", f"{host}:{ports['submission']}",
                 "--submissions", f"{host}:{local.free_port()}",
                 "--imap", f"{host}:{ports['imap']}",
                 "--imaps", f"{host}:{local.free_port()}",
                 "--pop3", f"{host}:{ports['pop3']}",
                 "--pop3s", f"{host}:{local.free_port()}"]
            if with_tls:
                a += ["--tls-cert", os.path.join(tls, "frontend.pem"),
                      "--tls-key", os.path.join(tls, "frontend.key"),
                      "--secret-file", os.path.join(tls, "frontend.secret")]
            return a

        def refuses_without_tls():
            r = subprocess.run(argv(False), capture_output=True, text=True, timeout=30)
            assert r.returncode == 1, (r.returncode, r.stderr[-500:])
            assert "needs --tls-cert" in r.stderr, r.stderr[-500:]
        check("refuses_without_tls", refuses_without_tls)

        log = open(os.path.join(c.state, "log", "frontend-remote.log"), "ab")
        proc = subprocess.Popen(argv(True), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not local.port_open(ports["imap"], host) and time.monotonic() < deadline:
                time.sleep(0.1)

            def remote_client():
                r = subprocess.run(net.exec_prefix() + [
                    "/usr/bin/python3", "-c", CLIENT, host, str(ports["imap"]),
                    str(ports["submission"]), os.path.join(tls, "ca.pem"), USER, PASSWORD,
                    str(ports["pop3"])],
                    capture_output=True, text=True, timeout=120)
                print(r.stdout, end="")
                assert r.returncode == 0 and "ok pop3" in r.stdout, r.stderr[-2000:]
            check("remote_client_needs_tls", remote_client)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            log.close()

    try:
        return e2e_harness.run("remote-client-", body, lease_ttl=3, stores=1, queues=1)
    finally:
        net.destroy()


if __name__ == "__main__":
    sys.exit(main())
