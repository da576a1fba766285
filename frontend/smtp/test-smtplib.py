#!/usr/bin/env python3
"""test-smtplib.py SERVER_BINARY: drive the SMTP engine with Python's
smtplib and ssl (stdlib only). The binary is test-smtp-server in --serve
mode: it prints "PORT n" (and "TLSPORT n" with --tls), then "DATA rcpts=N
size=N" per accepted message. The TLS part verifies the certificates of a
development CA made by cluster/dev-ca: STARTTLS, implicit TLS, and the
STARTTLS command injection case (bytes pipelined after STARTTLS are
dropped, and the session starts over)."""
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    proc = subprocess.Popen([sys.argv[1], "--serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline().split()
        assert first[0] == "PORT", first
        port = int(first[1])
        msg = ("From: a@b.test\r\nTo: x@c.test\r\nSubject: hello\r\n\r\n"
               ".a line with a leading dot\r\nbye\r\n")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            code, caps = s.ehlo("client.test")
            assert code == 250, code
            for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
                assert s.has_extn(ext), ext
            refused = s.sendmail("a@b.test", ["x@c.test", "nouser@c.test", "y@c.test"],
                                 msg)
            assert list(refused) == ["nouser@c.test"], refused
            assert refused["nouser@c.test"][0] == 550
            line = proc.stdout.readline().strip()
            # smtplib dot-stuffs; the engine must undo it exactly.
            assert line == "DATA rcpts=2 size=%d" % len(msg), (line, len(msg))
            code, text = s.docmd("FOO")
            assert code == 500, (code, text)
            code, text = s.docmd("RCPT TO:<x@c.test>")
            assert code == 503, (code, text)
            try:
                s.sendmail("a@b.test", ["nouser@c.test"], msg)
                raise AssertionError("all recipients refused must raise")
            except smtplib.SMTPRecipientsRefused:
                pass
        print("smtplib: 1 passed, 0 failed")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    tls_tests()


def read_reply(f):
    """One SMTP reply (all its lines) from a file object."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise AssertionError(f"connection closed after {lines}")
        lines.append(line.decode().rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return lines


def tls_tests():
    tmp = tempfile.mkdtemp(prefix="smtp-tls-")
    proc = None
    try:
        subprocess.run([os.path.join(SRC, "cluster", "dev-ca"), tmp], check=True)
        proc = subprocess.Popen([sys.argv[1], "--serve", "--tls",
                                 os.path.join(tmp, "frontend.pem"),
                                 os.path.join(tmp, "frontend.key")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(proc.stdout.readline().split()[1])
        tls_port = int(proc.stdout.readline().split()[1])
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.pem"))
        msg = "Subject: tls\r\n\r\nhello over TLS\r\n"

        # STARTTLS, verified; STARTTLS is offered before and not after
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.ehlo("client.test")
            assert s.has_extn("starttls")
            code, _ = s.starttls(context=ctx)  # verifies 127.0.0.1 (a SAN)
            assert code == 220, code
            assert s.sock.version() in ("TLSv1.2", "TLSv1.3"), s.sock.version()
            s.ehlo("client.test")
            assert not s.has_extn("starttls"), "STARTTLS offered again under TLS"
            code, text = s.docmd("STARTTLS")
            assert code == 503, (code, text)
            assert not s.sendmail("a@b.test", ["x@c.test"], msg)
            assert proc.stdout.readline().startswith("DATA rcpts=1 ")

        # implicit TLS: the handshake first, then the greeting
        with smtplib.SMTP_SSL("localhost", tls_port, context=ctx, timeout=10) as s:
            code, _ = s.ehlo("client.test")
            assert code == 250
            assert not s.has_extn("starttls")
            assert not s.sendmail("a@b.test", ["x@c.test"], msg)
            assert proc.stdout.readline().startswith("DATA rcpts=1 ")

        # a client that does not trust the CA fails verification
        bad = ssl.create_default_context()
        try:
            with smtplib.SMTP_SSL("localhost", tls_port, context=bad, timeout=10):
                raise AssertionError("an untrusted certificate was accepted")
        except ssl.SSLCertVerificationError:
            pass

        # injection: commands pipelined after STARTTLS are never run
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = raw.makefile("rb")
        read_reply(f)
        raw.sendall(b"EHLO client.test\r\n")
        read_reply(f)
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRSET\r\n")
        assert read_reply(f)[0].startswith("220 "), "no 220 to STARTTLS"
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tf = tls.makefile("rb")
        # the session starts over: MAIL before EHLO is refused; had the
        # injected MAIL run, this would be "nested MAIL" and a stray 250
        # would come first
        tls.sendall(b"MAIL FROM:<a@b.test>\r\n")
        first = read_reply(tf)
        assert first[0].startswith("503 5.5.1") and "HELO" in first[0], first
        tls.sendall(b"EHLO client.test\r\n")
        ehlo = read_reply(tf)
        assert ehlo[0].startswith("250-mx.test"), ehlo
        assert not any("STARTTLS" in line for line in ehlo), ehlo
        tls.sendall(b"QUIT\r\n")
        assert read_reply(tf)[0].startswith("221"), "no 221"
        tls.close()
        print("smtp tls: 4 passed, 0 failed")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
