#!/usr/bin/env python3
"""Soak test (label `soak`, not in the default suite): the default-shaped
cluster left idle, and etcd must not grow.

It starts what `cluster/local up` starts (etcd, 3 store nodes, 3 queue
nodes, 1 frontend, 64 partitions, R=3) on free ports in a temporary state
dir, lets it settle for --settle minutes, then samples etcd's dbSize,
dbSizeInUse and revision every --interval seconds for --minutes minutes and
prints each sample. An idle cluster still writes to etcd (leases, status
keys); once etcd compacts the old revisions their pages are reused, so the
database file should stop growing. It reports the growth of dbSize from the
first sample after the settle period to the last, per hour, and fails if
that is --limit-mb MB/hour or more (default 1). Every process it started is
stopped by PID, also on failure or SIGTERM. Standard library only.

  python3 tests/soak_idle.py [--minutes 60] [--interval 60] [--settle 5] [--limit-mb 1]
  python3 tests/soak_idle.py --minutes 3 --interval 10 --settle 0.5   # a short run
"""
import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster_probe as probe  # noqa: E402
import e2e_harness  # noqa: E402


def on_sigterm(signum, frame):
    # ctest's timeout sends SIGTERM: unwind so the harness stops the cluster
    raise SystemExit(f"signal {signum}")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60, help="how long to sample")
    ap.add_argument("--interval", type=float, default=60, help="seconds between samples")
    ap.add_argument("--settle", type=float, default=5,
                    help="minutes after start before the baseline sample")
    ap.add_argument("--limit-mb", type=float, default=1.0,
                    help="fail if dbSize grows this many MB per hour or more")
    return ap.parse_args()


def body(args):
    def run(c, check):
        print(f"cluster up: etcd {c.etcd_url}; settling {args.settle} min", flush=True)
        time.sleep(args.settle * 60)
        samples = []
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        print(f"{'min':>6} {'dbSize MB':>10} {'in use MB':>10} {'revision':>9} {'rev/min':>8}",
              flush=True)
        while True:
            st = probe.etcd_status(c)
            now = time.monotonic()
            if st is None:
                raise RuntimeError("etcd did not answer /v3/maintenance/status")
            samples.append((now, st))
            rate = ""
            if len(samples) > 1:
                (ta, a), (tb, b) = samples[-2], samples[-1]
                rate = f"{(b['revision'] - a['revision']) / ((tb - ta) / 60):.0f}"
            print(f"{(now - t0) / 60:>6.1f} {probe.mb(st['db']):>10.3f} "
                  f"{probe.mb(st['in_use']):>10.3f} {st['revision']:>9} {rate:>8}", flush=True)
            if now >= end:
                break
            time.sleep(max(0.0, min(args.interval, end - time.monotonic())))

        (ta, a), (tb, b) = samples[0], samples[-1]
        hours = (tb - ta) / 3600
        grow = b["db"] - a["db"]
        per_hour = grow / hours if hours > 0 else 0.0
        revs_per_min = (b["revision"] - a["revision"]) / (hours * 60) if hours > 0 else 0.0
        print(f"etcd idle over {hours * 60:.1f} min: dbSize {probe.mb(a['db']):.3f} -> "
              f"{probe.mb(b['db']):.3f} MB ({probe.mb(grow):+.3f} MB, "
              f"{probe.mb(per_hour):+.3f} MB/hour; limit {args.limit_mb} MB/hour); "
              f"in use {probe.mb(a['in_use']):.3f} -> {probe.mb(b['in_use']):.3f} MB; "
              f"revisions {a['revision']} -> {b['revision']} ({revs_per_min:.0f}/min)",
              flush=True)

        def growth_under_limit():
            assert probe.mb(per_hour) < args.limit_mb, (
                f"etcd dbSize grew {probe.mb(per_hour):.3f} MB/hour while idle "
                f"(limit {args.limit_mb})")
        check("etcd_idle_growth", growth_under_limit)
    return run


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    # the shape `cluster/local up` gives (64 partitions, R=3 are the defaults)
    return e2e_harness.run("mail-soak-idle-", body(args), stores=3, queues=3)


if __name__ == "__main__":
    sys.exit(main())
