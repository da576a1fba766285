"""Shared frame of the end-to-end tests: a cluster on free ports in a
temporary state dir, named checks, and the closing rules every e2e test
asserts (`down` leaves no process behind; log tails on failure; the plain
"N passed, N failed" line). Standard library only."""
import os
import shutil
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import local  # noqa: E402


def bin_dir():
    return os.environ.get("MAIL_BIN_DIR") or os.path.join(os.path.dirname(HERE), "build", "bin")


def partition_of(key, partitions):
    """router_partition_of(): lib/util.c util_hash64 (FNV-1a 64, then a
    splitmix64 finaliser) mod partitions."""
    mask = (1 << 64) - 1
    h = 0xcbf29ce484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001b3) & mask
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & mask
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & mask
    h ^= h >> 31
    return h % partitions


def run(prefix, body, **cluster_kw):
    """Start local.Cluster.with_free_ports(**cluster_kw), then body(c, check)
    where check(name, fn) runs one named check; stop the cluster and report.
    Returns the process exit code."""
    passed, failed = [], []

    def check(name, fn):
        try:
            fn()
        except Exception:
            failed.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            passed.append(name)
            print(f"ok   {name}", flush=True)

    state = tempfile.mkdtemp(prefix=prefix)
    c = local.Cluster.with_free_ports(state, bin_dir(), **cluster_kw)
    pids = set()
    try:
        c.up()
        pids.update(c.pid(name) for name, *_ in c.specs())
        body(c, check)
        pids.update(c.pid(name) for name, *_ in c.specs())
    except Exception:
        failed.append("setup")
        traceback.print_exc()
    finally:
        c.down()
        left = [p for p in pids if p and local.pid_alive(p)]
        if left:
            failed.append("down_leaves_nothing")
            print(f"FAIL processes left after down: {left}")
        if failed:
            for name, *_ in c.specs():
                print(f"--- {name} log tail ---\n{c.log_tail(name, 15)}")
        shutil.rmtree(state, ignore_errors=True)
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0
