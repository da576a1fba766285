"""The peers of tests/bench/smtp_vs_postfix.py: Postfix receiving on a free
127.0.0.1 port and handing every message by LMTP to Dovecot, which stores
it in Maildir and serves it over IMAP; plus what the benchmark needs to
watch processes (per-process CPU from /proc, short-lived ones included).
Standard library only; run as root with Debian's /usr/bin/python3.

Both are scratch instances of the Debian packages (postfix, dovecot-imapd,
dovecot-lmtpd), configured here in temporary directories and never
touching /etc/postfix, /etc/dovecot or a system instance:

  DovecotLMTP(users)  tests/support/dovecot.py's Dovecot (its tuned IMAP
      settings, passwd-file passdb, static userdb, mail_fsync = optimized)
      in Maildir, with `protocols = imap lmtp` and an LMTP unix socket
      (.lmtp_socket, mode 0666 so Postfix's lmtp client, running as
      postfix, can connect). Dovecot's LMTP settings are its defaults.
  PostfixLMTP(domain, users, lmtp_socket, extra=())  a Postfix on the
      tests/support/postfix.py machinery (postfix -c DIR, unchrooted
      daemons, own queue_directory, its own log file) with its own main.cf:
      virtual_mailbox_domains = domain, virtual_mailbox_maps listing the
      users (unknown recipients get 550 at RCPT, as ours does),
      virtual_transport = lmtp:unix:<Dovecot's socket>. Performance
      settings are Postfix's defaults (in_flow_delay 1 s, process limits,
      qmgr and lmtp concurrency); only what a scratch instance needs is
      set, plus mynetworks = 127.0.0.0/8 so the load generator is exempt
      from anvil's per-client limits, as our frontend exempts its
      --trusted-networks 127.0.0.0/8. `extra`: more "name = value" lines.

CpuMeter: CPU seconds (utime + stime from /proc/PID/stat) per group of
processes between start() and stop(), sampled every `interval` seconds in
a thread so that processes that live only part of the window (Postfix's
cleanup and smtpd exit after max_use requests, Dovecot's lmtp and imap
processes come and go) are attributed by name; what they used after their
last sample is not lost but shown as "unattributed" (from the master's
cutime + cstime, which the kernel adds when it reaps a child).
"""
import os
import shutil
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import dovecot  # noqa: E402
import postfix  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

LMTP_CONF = """
# added by tests/bench/smtp_peers.py: LMTP for Postfix
service lmtp {{
  unix_listener {sock} {{
    mode = 0666
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{domain}
}}
"""

# postfix.MAIN_BASE (the scratch instance) and the relay to Dovecot's LMTP:
# none of the tests' tuning, Postfix's default performance settings.
MAIN_CF = postfix.MAIN_BASE + """\
mynetworks = 127.0.0.0/8
relay_domains =
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_transport = lmtp:unix:{sock}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
"""

def available():
    """Why the peers cannot run here, or None."""
    why = postfix.available() or dovecot.available()
    if why:
        return why
    if not os.path.exists("/usr/lib/dovecot/lmtp"):
        return "Dovecot's LMTP server is missing (apt-get install -y dovecot-lmtpd)"
    return None


class DovecotLMTP(dovecot.Dovecot):
    def __init__(self, users, domain):
        super().__init__(users, mail_format="maildir", tuned=True, hibernate=False, pop3=False)
        self.lmtp_socket = os.path.join(self.dir, "lmtp")
        with open(self.conf) as f:
            conf = f.read()
        if "protocols = imap\n" not in conf:
            raise RuntimeError("tests/support/dovecot.py's configuration changed: "
                               "no 'protocols = imap' line to extend")
        conf = conf.replace("protocols = imap\n", "protocols = imap lmtp\n")
        conf += LMTP_CONF.format(sock=self.lmtp_socket, domain=domain)
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self, timeout=20):
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.lmtp_socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no LMTP socket {self.lmtp_socket}: {self.log_tail()}")
            time.sleep(0.05)
        return self

    def stop(self, keep_dir=False):
        """As Dovecot.stop(), but the directory goes only once every process
        of the instance is gone: an lmtp process still finishing a
        delivery would otherwise write into it while it is removed."""
        procs = [p for p in self.pids() if self.proc is not None and p != self.proc.pid]
        d = self.dir
        super().stop(keep_dir=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(stat_of(p) for p in procs):
            time.sleep(0.05)
        for p in procs:
            if stat_of(p) is not None:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        if not keep_dir:
            for _ in range(3):
                shutil.rmtree(d, ignore_errors=True)
                if not os.path.exists(d):
                    break
                time.sleep(0.2)


class PostfixLMTP(postfix._Postfix):
    role = "lmtp"

    def __init__(self, domain, users, lmtp_socket, extra=()):
        super().__init__(f"mx.{domain}", tls=False)
        self.main_cf = MAIN_CF.format(d=self.dir, conf=self.conf_dir,
                                      syslog_name=f"postfix-bench-{self.port}",
                                      hostname=self.hostname, domain=domain,
                                      sock=lmtp_socket)
        for line in extra:
            self.main_cf += line.strip() + "\n"
        with open(os.path.join(self.conf_dir, "vmailbox"), "w") as f:
            for u in users:
                f.write(f"{u} ok\n")


# ---- CPU per process, from /proc ---------------------------------------------

def stat_of(pid):
    """(comm, utime + stime, cutime + cstime) in ticks, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.find("(") + 1:raw.rfind(")")]
    fields = raw.rsplit(") ", 1)[1].split()
    if fields[0] == "Z":
        return None
    return comm, int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def descendants(root):
    """root and every process below it (through /proc/PID/task/TID/children)."""
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


class CpuMeter:
    """groups(): {pid: group name} of the processes to watch right now;
    roots: PIDs whose reaped children's CPU (cutime) belongs to the side
    (Postfix's and Dovecot's masters)."""

    def __init__(self, groups, roots=(), interval=0.2):
        self.groups = groups
        self.roots = list(roots)
        self.interval = interval
        self.seen = {}       # pid -> [group, base ticks, last ticks]
        self.root_c0 = {}
        self.stop_ev = threading.Event()
        self.thread = None
        self.result = None

    def _sample(self, first=False):
        for pid, group in self.groups().items():
            st = stat_of(pid)
            if st is None:
                continue
            rec = self.seen.get(pid)
            if rec is None:
                # there at start: count from now; born later: its whole life
                self.seen[pid] = [group, st[1] if first else 0, st[1]]
            else:
                rec[2] = max(rec[2], st[1])

    def start(self):
        for r in self.roots:
            st = stat_of(r)
            self.root_c0[r] = st[2] if st else 0
        self._sample(first=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop_ev.wait(self.interval):
            self._sample()

    def stop(self):
        """{group: CPU seconds}, with "unattributed" for what reaped children
        used after their last sample (or before it, for those born and gone
        between two samples)."""
        self.stop_ev.set()
        if self.thread is not None:
            self.thread.join()
        self._sample()
        out = {}
        alive = set()
        for pid, (group, base, last) in self.seen.items():
            out[group] = out.get(group, 0.0) + (last - base) / TICK
            if stat_of(pid) is not None:
                alive.add(pid)
        # reaped children: the kernel added their whole lives to the root's
        # cutime; what we attributed of the dead ones is (last - base), and
        # base was 0 for those born in the window
        reaped = 0
        for r in self.roots:
            st = stat_of(r)
            if st:
                reaped += st[2] - self.root_c0.get(r, 0)
        dead_seen = sum(last for pid, (_, base, last) in self.seen.items()
                        if pid not in alive and pid not in self.roots)
        # reaped - (whole lives of the dead we saw) = the ones never seen
        # plus what the seen ones used after their last sample
        rest = (reaped - dead_seen) / TICK
        if self.roots and rest > 0:
            out["unattributed"] = out.get("unattributed", 0.0) + rest
        self.result = out
        return out
