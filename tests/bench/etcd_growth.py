#!/usr/bin/env python3
"""Benchmark (not a test): how fast the cluster makes etcd grow.

Starts a local cluster of the default shape (`cluster/local up`: 3 store
nodes, 3 queue nodes, one frontend, 64 partitions, R=3) on free ports in a
temporary directory, lets it settle for --warmup seconds, then every
--interval seconds prints etcd's revision and database size (POST
/v3/maintenance/status: header.revision, dbSize, dbSizeInUse) and, from a
watch on every key, which keys were written (ids and numbers folded, so
/mail/v1/status/store/store-1 counts as /mail/v1/status/store/*). With
--rate N it sends N messages per second over SMTP the whole time (one
connection, retried on errors), like a steady stream.

At the end: revisions per minute and dbSize growth per hour (first to last
sample), and the writers by key. Standard library only; never fails on
numbers, it only prints them.

  python3 tests/bench/etcd_growth.py [--minutes 10] [--interval 60] [--rate 0]
      [--warmup 30] [--keep]
"""
import argparse
import base64
import collections
import json
import os
import re
import shutil
import smtplib
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402


def etcd_status(c):
    j = c.etcd_call("/v3/maintenance/status", {})
    return (int(j["header"]["revision"]), int(j.get("dbSize", 0)),
            int(j.get("dbSizeInUse", 0)))


def fold(key):
    """A key with its node ids and numbers replaced by *."""
    key = re.sub(r"/(store|queue|frontend)-\d+", r"/*", key)
    return re.sub(r"/\d+(?=/|$)", "/*", key)


def watcher(c, counts, stop):
    # every key of ours (the admin user may read /mail/v1/, nothing else)
    body = {"create_request": {"key": local.b64("/mail/v1/"), "range_end": local.b64("/mail/v10")}}
    with c.etcd_open("/v3/watch", body, timeout=None) as r:
        for line in r:
            if stop.is_set():
                return
            try:
                res = json.loads(line).get("result", {})
            except ValueError:
                continue
            for ev in res.get("events", []):
                key = base64.b64decode(ev["kv"]["key"]).decode(errors="replace")
                counts[(ev.get("type", "PUT"), fold(key))] += 1


def sender(port, rate, rcpt, sent, stop):
    seq = 0
    s = None
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            if s is None:
                s = smtplib.SMTP("127.0.0.1", port, timeout=30)
                s.ehlo("bench.test")
            seq += 1
            body = (f"Subject: growth\r\nX-Seq: {seq}-{time.time_ns()}\r\n\r\n"
                    + "x" * 1000 + "\r\n").encode()
            s.sendmail("bench@remote.test", [rcpt], body)
            sent[0] += 1
        except (OSError, smtplib.SMTPException):
            sent[1] += 1
            s = None
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--interval", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--rate", type=float, default=0, help="SMTP messages per second")
    ap.add_argument("--rcpt", default="bench@example.test")
    ap.add_argument("--keep", action="store_true", help="keep the state dir")
    args = ap.parse_args()
    bin_dir = os.path.join(os.environ.get("MAIL_BUILD_DIR", os.path.join(ROOT, "build")), "bin")
    state = tempfile.mkdtemp(prefix="etcd-growth-")
    c = local.Cluster.with_free_ports(state, bin_dir, stores=3, queues=3)
    stop = threading.Event()
    try:
        c.up()
        c.mailctl("user", "add", args.rcpt, stdin="bench\n", check=False)
        sent = [0, 0]
        if args.rate > 0:
            threading.Thread(target=sender, args=(c.ports["smtp"], args.rate, args.rcpt,
                                                  sent, stop), daemon=True).start()
        time.sleep(args.warmup)
        counts = collections.Counter()
        threading.Thread(target=watcher, args=(c, counts, stop), daemon=True).start()
        samples = [(time.monotonic(),) + etcd_status(c)]
        print(f"{'t_s':>6} {'revision':>9} {'rev/min':>8} {'dbSize':>10} {'inUse':>10} "
              f"{'sent':>6}", flush=True)
        print(f"{0:6.0f} {samples[0][1]:9d} {'':>8} {samples[0][2]:10d} {samples[0][3]:10d} "
              f"{sent[0]:6d}", flush=True)
        end = samples[0][0] + args.minutes * 60
        while time.monotonic() < end - 1:
            time.sleep(min(args.interval, end - time.monotonic()))
            now = (time.monotonic(),) + etcd_status(c)
            prev = samples[-1]
            per_min = (now[1] - prev[1]) * 60.0 / (now[0] - prev[0])
            samples.append(now)
            print(f"{now[0] - samples[0][0]:6.0f} {now[1]:9d} {per_min:8.1f} {now[2]:10d} "
                  f"{now[3]:10d} {sent[0]:6d}", flush=True)
        first, last = samples[0], samples[-1]
        minutes = (last[0] - first[0]) / 60.0
        print(f"\nover {minutes:.1f} min: {(last[1] - first[1]) / minutes:.1f} revisions/min, "
              f"dbSize {first[2]} -> {last[2]} ({(last[2] - first[2]) / minutes * 60 / 1e6:.2f} "
              f"MB/hour), in use {first[3]} -> {last[3]}; "
              f"sent {sent[0]} messages ({sent[1]} errors)")
        print("writes by key (type, key, count, per minute):")
        for (typ, key), n in counts.most_common():
            print(f"  {typ:6} {key:50} {n:7d} {n / minutes:8.1f}")
        # what the daemons saw (mail_etcd_* metrics), when they export them
        for name in ("store-1", "queue-1", "frontend-1"):
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{c.metrics_port(name)}/metrics", timeout=2) as r:
                    lines = [ln for ln in r.read().decode().splitlines()
                             if ln.startswith("mail_etcd_")]
                print(f"{name}: " + "  ".join(lines))
            except OSError:
                pass
    finally:
        stop.set()
        c.down()
        if args.keep:
            print(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
