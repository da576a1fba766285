#!/usr/bin/env python3
"""Clean shutdown under load: SIGTERM each kind of daemon, then an audit.

A cluster with 3 store nodes and 3 queue nodes (both R=3) and a frontend on
free ports, a steady SMTP stream (each message retried on 4xx or a broken
connection until it gets 250, as an MTA would) and an IMAP client changing
flags (e2e_failover's Stream). Then SIGTERM, one at a time and each
restarted after: the frontend, the queue node that leads the most queue
partitions, the store node that leads the most store partitions. Each must
exit by itself with status 0 within 10 s (no SIGKILL). Then the audit
through IMAP: every message that got 250 is in its mailbox exactly once,
UIDs strictly increase, UIDVALIDITY did not change, the queues drained.
Standard library only.
"""
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import local  # noqa: E402
import e2e_failover as fo  # noqa: E402
import e2e_harness  # noqa: E402

STOP_LIMIT_S = 10.0


def main():
    state = tempfile.mkdtemp(prefix="mail-shutdown-")
    c = local.Cluster.with_free_ports(state, e2e_harness.bin_dir(), stores=3, queues=3,
                                      lease_ttl=2)
    ok = False
    s = None
    problems = []
    try:
        c.up()
        for u in fo.USERS:
            c.mailctl("user", "add", u, stdin=fo.PASSWORD + "\n")
        s = fo.Stream(c)
        threads = [threading.Thread(target=s.sender, daemon=True),
                   threading.Thread(target=s.flagger, daemon=True)]
        for t in threads:
            t.start()
        time.sleep(3)
        uv_before = fo.uidvalidities(c)
        for victim in ("frontend-1", "queue", "store"):
            if victim in ("store", "queue"):
                victim = fo.busiest_primary(c, victim)
            time.sleep(2)
            sent = s.sent
            c.kill(victim)   # SIGTERM, SIGKILL only after 10 s
            st = c.stops[victim]
            print(f"SIGTERM {victim} (sent so far {sent}): exited in {st['seconds']:.2f}s "
                  f"status={st['status']} killed={st['killed']}", flush=True)
            if st["killed"] or st["status"] != 0 or st["seconds"] > STOP_LIMIT_S:
                problems.append(f"{victim}: did not stop cleanly on SIGTERM: {st}")
            time.sleep(1)
            c.start(victim)
        problems, acked = fo.stop_and_audit(c, s, threads, uv_before, "shutdown", problems)
        ok = not problems and acked > 0
    except Exception:
        traceback.print_exc()
    finally:
        if s is not None:
            s.stop.set()
        killed = c.down()
        if killed:
            print(f"FAIL down needed SIGKILL for {killed}")
            ok = False
        if not ok:
            for name, *_ in c.specs():
                print(f"--- {name} log tail ---\n{c.log_tail(name, 10)}")
        e2e_harness.remove_state(state, ok)
    print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
