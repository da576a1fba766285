#!/usr/bin/env python3
"""test-smtplib.py SERVER_BINARY: drive the SMTP engine with Python's
smtplib (stdlib only). The binary is test-smtp-server in --serve mode: it
prints "PORT n", then "DATA rcpts=N size=N" per accepted message."""
import smtplib
import subprocess
import sys


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


if __name__ == "__main__":
    main()
