#!/usr/bin/env python3
"""Frontend memory under floods (issue 8's memory targets). Not a test.

  tests/bench/frontend_memory.py [--smtp-sessions N] [--size-mib S]
                                 [--imap-sessions M] [--imap-size-mib T]

Starts a cluster on free ports (1 store, 1 queue, 1 frontend; the
binaries of MAIL_BIN_DIR or build/bin), then:
  1. N SMTP sessions at once, each sending one S MiB message as fast as
     loopback allows;
  2. M IMAP sessions that each FETCH 8 x BODY[] of a T MiB message and
     never read;
while a normal client (SMTP NOOP and an IMAP login + SELECT) is timed every
second. Prints the frontend's peak RSS per phase, how many messages got
250 / 451, and the normal client's slowest answer. Standard library only.
"""
import argparse
import imaplib
import os
import smtplib
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402

USER, PASSWORD = "mem@example.test", "mem pass"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.2)


class Prober(threading.Thread):
    """A normal client, timed: SMTP NOOP and an IMAP login + SELECT."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c, self.worst, self.fails, self.stop = c, 0.0, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=60) as s:
                    s.noop()
                m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=60)
                m.login(USER, PASSWORD)
                m.select("INBOX", readonly=True)
                m.logout()
            except Exception:
                self.fails += 1
            self.worst = max(self.worst, time.monotonic() - t0)
            time.sleep(1)


def smtp_flood(c, n, size_mib):
    line = b"x" * 1022 + b"\r\n"
    block = line * 64
    blocks = size_mib * 1024 * 1024 // len(block)
    codes = []
    lock = threading.Lock()

    def one():
        code = 0
        try:
            s = socket.create_connection(("127.0.0.1", c.ports["smtp"]), timeout=300)
            f = s.makefile("rb")
            f.readline()
            s.sendall(f"EHLO flood.test\r\nMAIL FROM:<f@remote.test>\r\nRCPT TO:<{USER}>\r\n"
                      "DATA\r\n".encode())
            for _ in range(4):
                while True:
                    reply = f.readline()
                    if reply[3:4] != b"-":
                        break
            for _ in range(blocks):
                s.sendall(block)
            s.sendall(b".\r\n")
            code = int(f.readline()[:3] or b"0")
            s.close()
        except Exception:
            code = -1
        with lock:
            codes.append(code)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def imap_flood(c, m, socks):
    for _ in range(m):
        s = socket.create_connection(("127.0.0.1", c.ports["imap"]), timeout=60)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.recv(4096)
        s.sendall(b'a LOGIN "%s" "%s"\r\nb SELECT INBOX\r\nc FETCH 1 (BODY.PEEK[] BODY.PEEK[] '
                  b"BODY.PEEK[] BODY.PEEK[] BODY.PEEK[] BODY.PEEK[] BODY.PEEK[] BODY.PEEK[])\r\n"
                  % (USER.encode(), PASSWORD.encode()))
        socks.append(s)  # never read again


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smtp-sessions", type=int, default=100)
    ap.add_argument("--size-mib", type=int, default=30)
    ap.add_argument("--imap-sessions", type=int, default=100)
    ap.add_argument("--imap-size-mib", type=int, default=30)
    a = ap.parse_args()
    bin_dir = os.environ.get("MAIL_BIN_DIR", os.path.join(ROOT, "build", "bin"))
    state = tempfile.mkdtemp(prefix="frontend-memory-")
    c = local.Cluster.with_free_ports(state, bin_dir, stores=1, queues=1, lease_ttl=3)
    rows = []
    try:
        c.up()
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        pid = c.pid("frontend-1")
        base = rss_mib(pid)
        # the big message the IMAP flood fetches: sent once, normally
        body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (a.imap_size_mib * 1024)
        with smtplib.SMTP("127.0.0.1", c.ports["smtp"], timeout=300) as s:
            s.sendmail("b@remote.test", [USER], body)
        time.sleep(3)
        for phase in ("smtp", "imap"):
            sampler, prober = Sampler(pid), Prober(c)
            sampler.start()
            prober.start()
            t0 = time.monotonic()
            socks = []
            if phase == "smtp":
                codes = smtp_flood(c, a.smtp_sessions, a.size_mib)
                what = (f"{a.smtp_sessions} SMTP sessions x {a.size_mib} MiB: "
                        f"{codes.count(250)} x 250, {codes.count(451)} x 451, "
                        f"{sum(1 for x in codes if x not in (250, 451))} other")
            else:
                imap_flood(c, a.imap_sessions, socks)
                time.sleep(10)
                what = (f"{a.imap_sessions} IMAP sessions FETCH 8 x BODY[] of "
                        f"{a.imap_size_mib} MiB, never reading")
            sampler.stop.set()
            prober.stop.set()
            prober.join()
            for s in socks:
                s.close()
            rows.append((what, sampler.peak, prober.worst, prober.fails,
                         time.monotonic() - t0))
            time.sleep(3)
    finally:
        c.down()
    print(f"\nfrontend RSS before: {base:.0f} MiB")
    print(f"{'phase':<78} {'peak RSS MiB':>12} {'normal client worst s':>22} {'fails':>5} {'secs':>6}")
    for what, peak, worst, fails, secs in rows:
        print(f"{what:<78} {peak:>12.0f} {worst:>22.2f} {fails:>5} {secs:>6.0f}")


if __name__ == "__main__":
    main()
