"""A scratch Dovecot for the IMAP benchmarks and the real-client tests
(tests/bench/dovecot-bench, imap-idle-mem, imap-push-latency,
tests/e2e_imap_clients.py --against-dovecot). Standard library only.

Debian's dovecot-imapd (and dovecot-pop3d for POP3), run as
`dovecot -F -c DIR/dovecot.conf` from a temporary directory, as root (its
login processes run as dovenull, the mail processes as nobody), on free
127.0.0.1 ports: IMAP (plaintext and STARTTLS), IMAPS, POP3 (STLS), POP3S.
Users come from a passwd-file ({PLAIN} passwords by default: the cheapest
scheme, so logins cost Dovecot as little as possible); mail under
DIR/home/<user>/ in sdbox (Dovecot's own "high-performance" format) or
Maildir. TLS: a certificate for localhost and 127.0.0.1 issued by a CA made
with cluster/dev-ca in DIR/tls (ca_file is the CA to trust).

The "tuned" settings, from Dovecot's documentation (doc.dovecot.org,
admin_manual/login_processes "High-performance mode", configuration_manual
/performance_tuning, /hibernation, /service_configuration):
  service imap-login { service_count = 0; process_min_avail = 2 (the cores);
                       client_limit = 20000; vsz_limit = 1G }
      one long-lived login process per core serves every connection;
  service imap/pop3 { service_count = 100; client_limit = 1 }
      mail processes reused for 100 sessions (the performance page's
      advice: not 0, "different users use different amounts of memory");
      client_limit 1 as the documentation recommends for mail processes;
  imap_hibernate_timeout = 5s, service imap { unix_listener imap-master {
      user = dovecot } }, service imap-hibernate { client_limit = 20000 }
      an IDLE session is moved out of its imap process into the shared
      imap-hibernate process after 5 s;
  mail_fsync = optimized (Dovecot's default: a saved message is fsynced
      before APPEND/delivery is answered; index updates are not): fsync
      stays on, for a fair comparison with our store, which fsyncs every
      write on a majority of its replicas before it answers.
  mail_max_userip_connections = 20000 (default 10 per user and address).
Hibernation also needs an inotify instance per imap process: see
raise_inotify_instances().
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CONF = """\
# scratch configuration written by tests/support/dovecot.py
base_dir = {d}/run
state_dir = {d}/state
instance_name = mail-test-dovecot-{port}
listen = 127.0.0.1
protocols = {protocols}
ssl = yes
ssl_cert = <{d}/tls/dovecot.pem
ssl_key = <{d}/tls/dovecot.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
mail_location = {mail_location}
mail_fsync = optimized
mail_max_userip_connections = 20000
default_client_limit = 20000
default_process_limit = 100
default_vsz_limit = 1G
first_valid_uid = 1
verbose_proctitle = yes
{hibernate}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
{login_tuning}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
{login_tuning}
}}
service imap {{
{mail_tuning}
}}
service pop3 {{
{mail_tuning_pop3}
}}
service auth {{
  client_limit = 40000
}}
service anvil {{
  client_limit = 40000
}}
protocol imap {{
  mail_max_userip_connections = 20000
}}
protocol pop3 {{
  mail_max_userip_connections = 20000
}}
"""

LOGIN_TUNING = """\
  service_count = 0
  process_min_avail = 2
  client_limit = 20000
  vsz_limit = 1G"""

MAIL_TUNING = """\
  service_count = 100
  client_limit = 1
  process_limit = 12000"""

HIBERNATE = """\
imap_hibernate_timeout = 5s
service imap {
  unix_listener imap-master {
    user = dovecot
  }
}
service imap-hibernate {
  client_limit = 20000
  unix_listener imap-hibernate {
    mode = 0660
    group = dovecot
  }
}"""


def free_port():
    """A free 127.0.0.1 port below the ephemeral range when possible (see
    cluster/local.py free_port())."""
    import sys
    sys.path.insert(0, os.path.join(ROOT, "cluster"))
    import local  # noqa: E402
    return local.free_port()


INOTIFY_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"


def raise_inotify_instances(n):
    """Make sure the kernel lets one user have n inotify instances (Linux's
    default is 128). Every Dovecot imap process of an IDLE session opens
    one, and all of them run as the same user (nobody): past the limit,
    IDLE still works but hibernation fails ("Couldn't hibernate imap
    client: Couldn't extract notifications fd") and every IDLE session
    keeps its imap process. A system-wide setting (until reboot), raised
    only, never lowered. Returns (before, after)."""
    with open(INOTIFY_INSTANCES) as f:
        before = int(f.read())
    if before < n:
        with open(INOTIFY_INSTANCES, "w") as f:
            f.write(str(n))
    with open(INOTIFY_INSTANCES) as f:
        return before, int(f.read())


def available():
    """Why a scratch Dovecot cannot run here, or None."""
    if shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"):
        return "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
    if os.geteuid() != 0:
        return "a scratch Dovecot needs root (its login and mail processes change user)"
    return None


class Dovecot:
    """users: {name: password}. mail_format: "sdbox" or "maildir". tuned:
    the documented performance settings (module docstring); hibernate:
    IDLE hibernation (with tuned)."""

    def __init__(self, users, mail_format="sdbox", tuned=True, hibernate=True, pop3=None):
        self.bin = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.dir = tempfile.mkdtemp(prefix="mail-test-dovecot-")
        os.chmod(self.dir, 0o755)   # dovenull and nobody must reach run/ and home/
        self.users = dict(users)
        self.mail_format = mail_format
        d = self.dir
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(d, sub))
        os.chown(os.path.join(d, "home"), 65534, 65534)
        self.ports = {k: free_port() for k in ("imap", "imaps", "pop3", "pop3s")}
        self.tls_dir = os.path.join(d, "tls")
        subprocess.run([os.path.join(ROOT, "cluster", "dev-ca"), self.tls_dir, "server",
                        "dovecot", "DNS:localhost,IP:127.0.0.1"], check=True)
        self.ca_file = os.path.join(self.tls_dir, "ca.pem")
        self.write_passwd()
        if pop3 is None:
            pop3 = os.path.exists("/usr/lib/dovecot/pop3")
        self.has_pop3 = pop3
        if mail_format == "maildir":
            location = "maildir:~/Maildir:LAYOUT=fs"
        else:
            location = "sdbox:~/sdbox"
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(
                d=d, protocols="imap pop3" if pop3 else "imap", mail_location=location,
                hibernate=HIBERNATE if (tuned and hibernate) else "",
                login_tuning=LOGIN_TUNING if tuned else "",
                mail_tuning=MAIL_TUNING if tuned else "  process_limit = 12000",
                mail_tuning_pop3=MAIL_TUNING.replace("12000", "100") if tuned else "",
                **self.ports, port=self.ports["imap"]))
        self.proc = None
        self.out = None

    def write_passwd(self):
        path = os.path.join(self.dir, "passwd")
        with open(path, "w") as f:
            for user, pw in self.users.items():
                f.write(f"{user}:{{PLAIN}}{pw}::::::\n")
        os.chmod(path, 0o644)

    def add_user(self, user, password):
        self.users[user] = password
        self.write_passwd()

    def start(self, timeout=20):
        self.out = open(os.path.join(self.dir, "stdout"), "wb")
        self.proc = subprocess.Popen([self.bin, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {self.log_tail()}")
            if all(self._port_open(p) for k, p in self.ports.items()
                   if self.has_pop3 or not k.startswith("pop3")):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"dovecot not listening after {timeout} s: {self.log_tail()}")

    @staticmethod
    def _port_open(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def log_tail(self, n=15):
        out = []
        for name in ("stdout", "dovecot.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f.readlines()[-n:]
            except OSError:
                pass
        return "".join(out)

    def pids(self):
        """The master and every process under it (PIDs)."""
        if self.proc is None:
            return []
        kids = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                kids.setdefault(ppid, []).append(int(d))
        out, todo = [], [self.proc.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    def doveadm(self, *args, stdin=None):
        return subprocess.run(["doveadm", "-c", self.conf, *args], input=stdin,
                              capture_output=True, timeout=120)

    def stop(self, keep_dir=False):
        """Stop the master (SIGTERM, by PID) and whatever it left behind;
        remove the directory unless keep_dir."""
        if self.proc is not None:
            kids = [p for p in self.pids() if p != self.proc.pid]
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            time.sleep(0.3)
            for p in kids:   # anything the master left behind, by PID
                try:
                    with open(f"/proc/{p}/stat") as f:
                        ppid = f.read().rsplit(") ", 1)[1].split()[1]
                    if ppid in ("1", str(self.proc.pid)):
                        os.kill(p, signal.SIGKILL)
                except (OSError, IndexError):
                    pass
            self.proc = None
        if self.out is not None:
            self.out.close()
            self.out = None
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
