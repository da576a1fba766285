"""mail_test_server: what the Python client tests of the IMAP and POP3
engines share (test-imap-imaplib.py, test-pop3-poplib.py): running
mail-test-server, and the bounded-output check of sessions that never read.
Standard library only."""
import os
import signal
import socket
import subprocess
import time


class MailTestServer:
    """mail-test-server on free ports (IMAP "port", POP3 "pop3port"; with
    tls, a dev-ca directory: IMAPS "tlsport" and POP3S "pop3sport" too).
    stop() signals it by PID and checks it exited 0."""

    def __init__(self, server_bin, user, password, paths, tls=None, budget=None):
        args = [server_bin]
        if budget:
            args += ["--body-budget", str(budget)]
        if tls:
            args += ["--tls", os.path.join(tls, "frontend.pem"), os.path.join(tls, "frontend.key")]
        self.proc = subprocess.Popen(args + ["0", user, password] + list(paths),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.ports = {}
        want = {"port", "pop3port"} | ({"tlsport", "pop3sport"} if tls else set())
        while not want <= set(self.ports):
            line = self.proc.stdout.readline()
            assert line, "mail-test-server did not start"
            key, value = line.strip().split("=")
            self.ports[key] = int(value)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        assert rc == 0, "mail-test-server exit code %d" % rc


def write_messages(tmp, messages):
    """Each message in a file of tmp; their paths."""
    paths = []
    for i, body in enumerate(messages):
        path = os.path.join(tmp, "m%d" % i)
        with open(path, "wb") as f:
            f.write(body)
        paths.append(path)
    return paths


def never_reading(port, count, request):
    """count sessions to 127.0.0.1:port with a tiny receive window that
    send request after the greeting and never read; returns their sockets
    2 s later (the caller closes them)."""
    socks = []
    for _ in range(count):
        sk = socket.socket()
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the window
        sk.settimeout(10)
        sk.connect(("127.0.0.1", port))
        sk.recv(4096)
        sk.sendall(request)
        socks.append(sk)
    time.sleep(2)
    return socks


def count_answered(socks, marker):
    """How many of the sockets have received marker, read without blocking
    (at most 64 KiB each: the answers counted are short, and a session
    still being sent a large body is not one of them)."""
    n = 0
    for sk in socks:
        sk.setblocking(False)
        seen = b""
        try:
            while len(seen) < 65536:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                seen += chunk
        except BlockingIOError:
            pass
        n += marker in seen
    return n
