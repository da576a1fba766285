#!/usr/bin/env python3
"""Benchmark (not a test): SMTP accept rate and latency of the 250 after DATA.

Starts its own local cluster on free ports (or uses --port of a running one),
then sends --messages messages of --size bytes over --conns concurrent SMTP
connections (one message per transaction, connections reused) and prints
messages/s and the p50/p99/max latency from the end of DATA to the 250, which
is the time to make the message durable in the queue. Standard library only.
Never fails on timing; it only prints figures.

  python3 tests/bench/smtp_accept.py [--messages 2000] [--conns 8] [--size 4096] [--stores 3]

The 250 waits for the queue's durable write only (the queue tier is not
replicated yet), so --stores changes delivery, not the 250 latency.
"""
import argparse
import os
import shutil
import smtplib
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402


def worker(port, n, size, rcpt, lat, errors):
    body = (b"Subject: bench\r\n\r\n" + b"x" * 76 + b"\r\n") * max(1, size // 78)
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("bench.test")
    for _ in range(n):
        try:
            s.mail("bench@remote.test")
            s.rcpt(rcpt)
            t0 = time.perf_counter()
            code, _ = s.data(body)
            dt = time.perf_counter() - t0
            if code == 250:
                lat.append(dt)
            else:
                errors.append(code)
        except smtplib.SMTPException as e:
            errors.append(str(e))
            s.rset()
    s.quit()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--port", type=int, help="SMTP port of a running cluster")
    ap.add_argument("--rcpt", default="bench@example.test")
    ap.add_argument("--stores", type=int, default=1,
                    help="store nodes of the cluster it starts (R = min(3, stores))")
    args = ap.parse_args()

    cluster = state = None
    port = args.port
    if port is None:
        bin_dir = os.environ.get("MAIL_BIN_DIR", os.path.join(ROOT, "build", "bin"))
        state = tempfile.mkdtemp(prefix="mail-bench-")
        cluster = local.Cluster.with_free_ports(state, bin_dir, stores=args.stores)
        cluster.up()
        port = cluster.ports["smtp"]
    try:
        if cluster is not None:
            cluster.mailctl("user", "add", args.rcpt, stdin="bench\n", check=False)
        lat, errors, threads = [], [], []
        per = args.messages // args.conns
        t0 = time.perf_counter()
        for _ in range(args.conns):
            t = threading.Thread(target=worker,
                                 args=(port, per, args.size, args.rcpt, lat, errors))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        lat.sort()
        print(f"smtp_accept store_replicas={min(3, args.stores) if cluster else '?'} "
              f"queue_replicas=1 messages={len(lat)} errors={len(errors)} "
              f"conns={args.conns} size={args.size}B wall={wall:.2f}s")
        print(f"  rate        {len(lat) / wall:8.1f} msg/s")
        print(f"  250 latency p50 {pct(lat, 50) * 1000:7.2f} ms   p99 {pct(lat, 99) * 1000:7.2f} ms"
              f"   max {lat[-1] * 1000 if lat else float('nan'):7.2f} ms")
    finally:
        if cluster is not None:
            cluster.down()
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
