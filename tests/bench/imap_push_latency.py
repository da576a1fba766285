#!/usr/bin/env python3
"""How long a change takes to reach an IDLE session (a benchmark, not a
test: it prints figures and never fails on them).

  tests/bench/imap_push_latency.py [--repeat 200] [--via append,smtp]
                                   [--no-dovecot | --no-ours]

An IMAP session on server A does LOGIN, SELECT INBOX, IDLE. Then, --repeat
times, one message reaches the same user's INBOX through server B, and the
script times, on A, the untagged "* N EXISTS" announcing it:
  --via append: an IMAP APPEND on B (a client saving a message);
  --via smtp:   an SMTP delivery to B's MX (ours: frontend B, through the
                queue and the store; Dovecot has no MX: dovecot-lda, its
                local delivery agent, run by the script).
With --pause P the script waits P seconds after each EXISTS before the
next send (Dovecot: an IDLE session in an imap process announces a change
after a 0.5 s batching delay; one idle for 5 s sits in imap-hibernate,
which wakes it at once). It prints p50, p99 and max of two intervals: from the start of the send to
the EXISTS on A, and from the sender's acknowledgement (APPEND's tagged
OK, SMTP's 250 to the end of DATA, dovecot-lda's exit) to the EXISTS
(negative when the push beat the acknowledgement), and how many pushes did
not come within --timeout (default 5 s).

Ours: a cluster on free ports (cluster/local.py; 3 store and 3 queue nodes,
R=3) plus a second frontend (frontend-2, same options, ports of its own,
its own node certificate) started by this script: A is frontend-1, B is
frontend-2, so the change crosses the cluster (store -> frontend A's
watch). Today's main has no IDLE (IDLE answers BAD): the script then says
so and measures nothing for ours.

Dovecot: two connections to one scratch tuned Dovecot
(tests/support/dovecot.py: IDLE hibernation after 5 s, so A is in
imap-hibernate after the first 5 s).
"""
import argparse
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import imap_bench_common as common  # noqa: E402

USER, PASSWORD = "push1@example.test", "push-pw-1"


class Imap:
    """A raw IMAP connection (one command at a time)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.n = 0
        self.f = self  # readline() below
        greeting = self.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting {greeting!r}")

    def command(self, text, literal=None):
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.s.sendall(tag + b" " + text + b"\r\n")
        else:
            self.s.sendall(tag + b" " + text + b" {%d}\r\n" % len(literal))
            line = self.f.readline()
            if not line.startswith(b"+"):
                return [line]
            self.s.sendall(literal + b"\r\n")
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("connection closed")
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def readline(self, timeout=30):
        """One line (with its CRLF), b"" at EOF; socket.timeout after
        timeout seconds without one (what was read stays buffered)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line")
            self.s.settimeout(left)
            chunk = self.s.recv(65536)
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def exists_of(lines):
    for line in lines:
        mo = re.match(rb"\* (\d+) EXISTS", line)
        if mo:
            return int(mo.group(1))
    return None


def measure(port_a, send, repeat, timeout, pause=0.0):
    """IDLE on A; send(i) delivers message i (returns when acknowledged).
    Returns ([start->EXISTS], [ack->EXISTS], misses) in ms, or a string
    saying why nothing could be measured."""
    a = Imap(port_a)
    lines = a.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    if not lines[-1].split()[1:2] == [b"OK"]:
        return f"LOGIN on A: {lines[-1]!r}"
    lines = a.command(b"SELECT INBOX")
    exists = exists_of(lines)
    a.n += 1
    a.s.sendall(b"t%d IDLE\r\n" % a.n)
    line = a.f.readline()
    if not line.startswith(b"+"):
        a.close()
        return f"IDLE on A: {line.decode(errors='replace').strip()}"
    from_start, from_ack, misses = [], [], 0
    for i in range(repeat):
        if pause:
            time.sleep(pause)
        t0 = time.monotonic()
        send(i)
        t1 = time.monotonic()
        try:
            while True:
                line = a.readline(timeout - (time.monotonic() - t1))
                if not line:
                    raise RuntimeError("A closed the connection")
                mo = re.match(rb"\* (\d+) EXISTS", line)
                if mo and int(mo.group(1)) > exists:
                    t2 = time.monotonic()
                    exists = int(mo.group(1))
                    from_start.append((t2 - t0) * 1000)
                    from_ack.append((t2 - t1) * 1000)
                    break
        except (socket.timeout, TimeoutError):
            misses += 1
            # the late EXISTS may still come: take it at the next round
    a.s.sendall(b"DONE\r\n")
    a.close()
    return from_start, from_ack, misses


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def show(rows):
    print(f"\n{'server':<44} {'n':>4} {'miss':>4} | {'send->EXISTS ms p50/p99/max':>28} | "
          f"{'ack->EXISTS ms p50/p99/max':>28}")
    for name, res in rows:
        if isinstance(res, str):
            print(f"{name:<44} not measured: {res}")
            continue
        s, k, misses = res
        print(f"{name:<44} {len(s):>4} {misses:>4} | {pct(s, .5):>8.1f} {pct(s, .99):>8.1f} "
              f"{max(s) if s else float('nan'):>9.1f} | {pct(k, .5):>8.1f} {pct(k, .99):>8.1f} "
              f"{max(k) if k else float('nan'):>9.1f}")


def appender(port):
    b = Imap(port)
    lines = b.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    if b" OK" not in lines[-1]:
        raise RuntimeError(f"LOGIN on B: {lines[-1]!r}")

    def send(i):
        lines = b.command(b"APPEND INBOX", common.message(USER, 100000 + i, 2048))
        if b" OK" not in lines[-1]:
            raise RuntimeError(f"APPEND on B: {lines[-1].decode(errors='replace').strip()}")
    return send, b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--via", default="append,smtp")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds between one EXISTS and the next send (default 0; "
                         "over 5 lets Dovecot hibernate the IDLE session in between)")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--no-ours", action="store_true")
    a = ap.parse_args()
    vias = [v for v in a.via.split(",") if v]
    rows = []
    if not a.no_dovecot:
        why = common.dovecot.available()
        if why:
            raise SystemExit(f"imap_push_latency: {why} (or --no-dovecot)")
        d = common.dovecot.Dovecot({USER: PASSWORD}).start()
        try:
            for via in vias:
                if via == "append":
                    send, b = appender(d.ports["imap"])
                else:
                    b = None

                    def send(i):
                        r = subprocess.run(["/usr/lib/dovecot/dovecot-lda", "-c", d.conf,
                                            "-d", USER, "-f", "bench@remote.test"],
                                           input=common.message(USER, 200000 + i, 2048),
                                           capture_output=True, timeout=30)
                        if r.returncode != 0:
                            raise RuntimeError(f"dovecot-lda: {r.stderr!r}")
                try:
                    res = measure(d.ports["imap"], send, a.repeat, a.timeout, a.pause)
                finally:
                    if b is not None:
                        b.close()
                rows.append((f"Dovecot, same server, via {'APPEND' if via == 'append' else 'dovecot-lda'}",
                             res))
                print(f"Dovecot via {via}: done", flush=True)
        finally:
            d.stop()
    if not a.no_ours:
        c = common.start_cluster()
        fe2 = None
        try:
            common.add_users(c, {USER: PASSWORD})
            fe2 = common.start_extra_frontend(c, "frontend-2")
            for via in vias:
                b = smtp = None
                if via == "append":
                    try:
                        send, b = appender(fe2.ports["imap"])
                    except RuntimeError as e:
                        rows.append(("ours, frontend-1 <- frontend-2, via APPEND", str(e)))
                        continue
                    # today's main has no APPEND: say so rather than time errors
                    try:
                        send(-1)
                    except RuntimeError as e:
                        rows.append(("ours, frontend-1 <- frontend-2, via APPEND", str(e)))
                        b.close()
                        continue
                else:
                    smtp = smtplib.SMTP("127.0.0.1", fe2.ports["smtp"], timeout=30)

                    def send(i, smtp=smtp):
                        smtp.sendmail("bench@remote.test", [USER],
                                      common.message(USER, 200000 + i, 2048))
                try:
                    res = measure(c.ports["imap"], send, a.repeat, a.timeout, a.pause)
                finally:
                    if b is not None:
                        b.close()
                    if smtp is not None:
                        smtp.quit()
                rows.append((f"ours, frontend-1 <- frontend-2, via {via.upper()}", res))
                print(f"ours via {via}: done", flush=True)
        finally:
            if fe2 is not None:
                fe2.stop()
            c.down()
            shutil.rmtree(c.state, ignore_errors=True)
    show(rows)


if __name__ == "__main__":
    main()
