#!/usr/bin/env python3
"""Memory per IMAP session, our frontend against a tuned Dovecot (a
benchmark, not a test: it prints figures and never fails on them).

  tests/bench/imap_idle_mem.py [--connections 10000] [--messages 10000]
        [--ours-modes select,idle] [--dovecot-modes idle,select]
        [--dovecot-select-connections 1000] [--no-dovecot | --no-ours]

One user (idle1@example.test) gets a mailbox of --messages small messages
(Dovecot: pipelined APPEND with LITERAL+ into sdbox; ours: SMTP into a
cluster of 1 store and 1 queue node started by cluster/local.py on free
ports: the frontend's memory does not depend on the store's replication).
Then tests/bench/imap-idle-mem (cmake --build build --target imap-idle-mem)
opens --connections sessions, each LOGIN + SELECT INBOX (+ IDLE in mode
idle), and reads the server's memory before and after from
/proc/PID/smaps_rollup (Rss, Pss, Private; for Dovecot every process under
its master, so imap, imap-login and imap-hibernate are all counted).

Dovecot: tests/support/dovecot.py, tuned, IDLE hibernation after 5 s
(imap-idle-mem waits 150 s before reading: every session has been moved
to imap-hibernate, and the imap processes that served them, left
"[idling]" for new sessions, have been stopped by the master, which every
idle_kill interval (default 1 min) stops as many idle processes as were
idle all through the interval: two intervals after the ramp. That is the
steady state of a server whose sessions idle.) A fresh
Dovecot per mode. The script raises fs.inotify.max_user_instances (a
system-wide setting, Linux's default 128) to --connections + 1024: every
imap process of an IDLE session needs an inotify instance, all of them as
user nobody, and without one Dovecot cannot hibernate the session (it
logs "Couldn't extract notifications fd") and keeps an imap process per
IDLE session. Its mode select keeps one imap process per
session, so it runs with --dovecot-select-connections (default 1000).

Ours: the frontend's descriptor limit is raised with prlimit to
--connections + 1024 first (or its soft limit to the hard one where the
hard one cannot be raised) (cluster/local starts it with the shell's limit); its session caps
(--imap max sessions 1000, 20 per address) do not apply to loopback,
which cluster/local passes as --trusted-networks. Today's main has no
IDLE: mode idle then fails at IDLE (BAD) for every session and only mode
select measures anything.
"""
import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import imap_bench_common as common  # noqa: E402

USER, PASSWORD = "idle1@example.test", "idle-pw-1"


def append_pipelined(port, user, pw, count, size, batch=200):
    """APPEND count messages over one connection, batch at a time
    pipelined with LITERAL+ (the server must announce it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f'l LOGIN "{user}" "{pw}"\r\nc CAPABILITY\r\n'.encode())
    caps = b""
    while True:
        line = f.readline()
        caps += line
        if line.startswith(b"c "):
            break
    if b"LITERAL+" not in caps.upper():
        raise RuntimeError("no LITERAL+")
    done = 0
    while done < count:
        n = min(batch, count - done)
        out = []
        for i in range(done, done + n):
            msg = common.message(user, i, size)
            out.append(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(msg)) + msg + b"\r\n")
        s.sendall(b"".join(out))
        got = 0
        while got < n:
            line = f.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line.startswith(b"a"):
                if b" OK" not in line:
                    raise RuntimeError(line)
                got += 1
        done += n
    s.sendall(b"z LOGOUT\r\n")
    s.close()


def run_tool(port, pid, connections, mode, settle, parallel):
    argv = [common.tool("imap-idle-mem"), "--port", str(port), "--pid", str(pid),
            "--user-pattern", USER.replace("idle1", "idle%d"), "--password", PASSWORD,
            "--connections", str(connections), "--mode", mode, "--settle", str(settle),
            "--parallel", str(parallel)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    print(r.stdout + r.stderr, flush=True)
    for line in r.stdout.splitlines():
        if line.startswith("result "):
            return dict((k, float(v)) for k, v in (p.split("=") for p in line.split()[1:]))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--message-size", type=int, default=1024)
    ap.add_argument("--parallel", type=int, default=100)
    ap.add_argument("--ours-modes", default="select,idle")
    ap.add_argument("--dovecot-modes", default="idle,select")
    ap.add_argument("--dovecot-select-connections", type=int, default=1000)
    ap.add_argument("--dovecot-idle-settle", type=float, default=150,
                    help="seconds before reading Dovecot's memory in mode idle")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--no-ours", action="store_true")
    a = ap.parse_args()
    common.tool("imap-idle-mem")
    rows = []
    if not a.no_dovecot:
        why = common.dovecot.available()
        if why:
            raise SystemExit(f"imap_idle_mem: {why} (or --no-dovecot)")
        before, after = common.dovecot.raise_inotify_instances(a.connections + 1024)
        print(f"fs.inotify.max_user_instances: {before} -> {after} (Dovecot's hibernation "
              "needs one per imap process)", flush=True)
        for mode in [m for m in a.dovecot_modes.split(",") if m]:
            # a fresh Dovecot per mode: imap processes left idle by one
            # measurement would serve the next one's sessions
            d = common.dovecot.Dovecot({USER: PASSWORD})
            try:
                d.start()
                t0 = time.monotonic()
                append_pipelined(d.ports["imap"], USER, PASSWORD, a.messages, a.message_size)
                print(f"Dovecot: {a.messages} messages appended in "
                      f"{time.monotonic() - t0:.1f} s", flush=True)
                n = a.connections if mode == "idle" else a.dovecot_select_connections
                # idle: hibernation after 5 s moves each session to
                # imap-hibernate; the imap processes it leaves "[idling]"
                # are stopped within two idle_kill intervals (1 min each)
                settle = a.dovecot_idle_settle if mode == "idle" else 3
                print(f"\n== Dovecot, mode {mode}, {n} sessions ==", flush=True)
                res = run_tool(d.ports["imap"], d.proc.pid, n, mode, settle, a.parallel)
                rows.append(("Dovecot 2.3 tuned" + (", hibernated" if mode == "idle" else ""),
                             mode, res))
            finally:
                d.stop()
    if not a.no_ours:
        c = common.start_cluster(replicas=1, stores=1, queues=1)
        try:
            common.add_users(c, {USER: PASSWORD})
            t = common.populate_smtp(c.ports["smtp"], [USER], a.messages, a.message_size)
            common.wait_exists(c.ports["imap"], {USER: PASSWORD}, a.messages, timeout=600)
            print(f"ours: {a.messages} messages through SMTP in {t:.1f} s", flush=True)
            pid = c.pid("frontend-1")
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            want = a.connections + 1024
            try:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
            except (PermissionError, ValueError):
                # no CAP_SYS_RESOURCE here: the soft limit up to the hard one
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
            print(f"frontend pid {pid}: RLIMIT_NOFILE was {soft}/{hard}, now "
                  f"{resource.prlimit(pid, resource.RLIMIT_NOFILE)}", flush=True)
            for mode in [m for m in a.ours_modes.split(",") if m]:
                print(f"\n== ours (frontend), mode {mode}, {a.connections} sessions ==",
                      flush=True)
                res = run_tool(c.ports["imap"], pid, a.connections, mode, 3, a.parallel)
                rows.append(("ours (frontend)", mode, res))
        finally:
            c.down()
            shutil.rmtree(c.state, ignore_errors=True)
    print(f"\n== memory per session, mailbox of {a.messages} messages ==")
    print(f"{'server':<34} {'mode':<7} {'sessions':>8} {'Rss KiB':>9} {'Pss KiB':>9} "
          f"{'Private KiB':>11}")
    for name, mode, res in rows:
        if res is None:
            print(f"{name:<34} {mode:<7} {'(no session got up)':>40}")
        else:
            print(f"{name:<34} {mode:<7} {int(res['sessions']):>8} {res['rss_kib']:>9.1f} "
                  f"{res['pss_kib']:>9.1f} {res['private_kib']:>11.1f}")


if __name__ == "__main__":
    main()
