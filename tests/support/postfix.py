"""A scratch Postfix for the outbound-delivery tests: a remote MX that
stores what it receives, and an authenticating smarthost. Standard
library only (run with Debian's /usr/bin/python3), as root.

Debian's postfix (3.7) run as `postfix -c DIR/conf start` from a temporary
directory, on a free 127.0.0.1 port, never touching /etc/postfix or a
system instance: everything (queue, data, log, maps, TLS, SASL) is under
DIR, every daemon runs unchrooted, and no DNS is ever asked
(smtp_dns_support_level = disabled, smtpd_peername_lookup = no).
Install: `echo "postfix postfix/main_mailer_type select No configuration" |
debconf-set-selections; apt-get install -y postfix sasl2-bin
libsasl2-modules` (sasl2-bin for saslpasswd2, libsasl2-modules for
PLAIN/LOGIN; `No configuration` leaves the system instance unconfigured
and stopped).

  PostfixMX(domains, reject=(), tls=True, rcpt_actions=None, port=None)
      accepts mail for any user of `domains` (virtual mailbox domains with
      a catch-all maildir per domain, delivered by virtual(8) as nobody
      under DIR/mail/<domain>/), refuses the addresses in `reject` at RCPT
      with "550 5.1.1 <addr>: Recipient address rejected: User unknown"
      (rcpt_actions: {addr: "450 4.2.1 try later", ...}: any other access(5)
      action), refuses to relay elsewhere (554 5.7.1), and offers STARTTLS
      with a self-signed certificate (cert_file) unless tls=False.
      .messages(addr=None, count=1, timeout=10): the delivered messages
      (bytes, oldest first), for one recipient or all, waiting for count.
  PostfixSmarthost(user, password, relay_to_port, relay_host="127.0.0.1",
                   relay_tls="may")
      relays for a client that authenticated (AUTH PLAIN or LOGIN, offered
      only after STARTTLS: smtpd_tls_auth_only) to
      [relay_host]:relay_to_port, everything else is "554 5.7.1 <rcpt>:
      Relay access denied" (mynetworks is TEST-NET-1, so 127.0.0.1 gets no
      favours). Users in a Cyrus sasldb; "user1@realm" logs in as such, a
      bare "user1" as itself (smtpd_sasl_local_domain = its realm).
      .add_user(user, password).

Both: start() (the constructor only writes the configuration; `with`
starts and stops), .port, .dir, .log() (DIR/maillog, Postfix's own log
file: no syslog is involved), .queue() (postqueue -p), .flush()
(postqueue -f: retry deferred mail now), .postconf(name), .stop(keep_dir=False).
Retries are fast: queue_run_delay 1 s, backoff 1-2 s. .port is chosen
(cluster/local.py free_port()) when the object is made (or given: a
PostfixMX on the port our queue delivers to), so a test can
configure what it points at the instance before starting it. Starting
takes ~0.6 s, stopping ~0.1 s; instances are independent (own queue,
data, pid file, sockets, syslog_name), several can run at once.

Postfix details this relies on (3.7.11, Debian 12):
  * without syslog the postfix command prints its errors only to a tty:
    commands run under `script -qec`, and maillog_file (with DIR in
    maillog_file_prefixes, else fatal) plus the postlog service log the
    daemons;
  * queue/ must exist (root, 755) before `postfix check`, which creates the
    rest, data/ included (made by us, root-owned: "master.lock: Permission
    denied");
  * main.cf and texthash maps are read by dict_load_file(), which sleeps
    0.3 s at a time until the file is a second old: a freshly written
    main.cf cost ~2 s per postfix command, so the files are backdated;
  * Debian's smtpd reads $config_directory/sasl/smtpd.conf (not
    cyrus_sasl_config_path);
  * the daemons' processes are found by MAIL_CONFIG=DIR/conf in their
    environment (postfix -c exports it, master passes it on), which is how
    stop() finds leftovers to SIGKILL by PID after `postfix stop`.
"""
import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

NOBODY = 65534

# main.cf settings shared by both roles. mydestination, alias_maps and
# local_recipient_maps are empty: nothing is delivered by local(8).
# What every scratch instance needs (its own directories, log and name, no
# local delivery, no DNS); tests/bench/smtp_peers.py uses it alone, so that
# the bench runs Postfix with its default performance settings.
MAIN_BASE = """\
# scratch configuration written by tests/support/postfix.py
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/maillog
maillog_file_prefixes = /var, /dev/stdout, {d}
syslog_name = {syslog_name}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {hostname}
myorigin = $myhostname
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_banner = $myhostname ESMTP Postfix (scratch)
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
"""

# The tests' tuning on top: no error sleeps or rate limits, fast retries,
# TLS as the test asks.
MAIN_COMMON = MAIN_BASE + """\
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
smtp_host_lookup = native
smtp_connect_timeout = 5s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
message_size_limit = {size_limit}
virtual_mailbox_limit = 0
mailbox_size_limit = 0
smtpd_tls_cert_file = {conf}/tls/cert.pem
smtpd_tls_key_file = {conf}/tls/key.pem
smtpd_tls_security_level = {tls_level}
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtp_tls_loglevel = 1
"""

MAIN_MX = """\
mynetworks = 192.0.2.1/32
relay_domains =
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{conf}/rcpt_access
"""

MAIN_SMARTHOST = """\
mynetworks = 192.0.2.1/32
relay_domains =
relayhost = [{relay_host}]:{relay_port}
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = {realm}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
smtp_tls_security_level = {relay_tls}
"""

# Every daemon unchrooted ("n" in the chroot column): nothing to copy into
# a jail, and maps and the sasldb are read at their real paths.
MASTER = """\
# scratch master.cf written by tests/support/postfix.py
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port():
    """A free 127.0.0.1 port below the ephemeral range when possible (see
    cluster/local.py free_port())."""
    import sys
    sys.path.insert(0, os.path.join(ROOT, "cluster"))
    import local  # noqa: E402
    return local.free_port()


def available(sasl=False):
    """Why a scratch Postfix cannot run here, or None. sasl: the
    smarthost's needs too (saslpasswd2 and the PLAIN/LOGIN plugins)."""
    if not os.path.exists("/usr/sbin/postfix"):
        return ("postfix is not installed (echo 'postfix postfix/main_mailer_type select "
                "No configuration' | debconf-set-selections; apt-get install -y postfix)")
    if os.geteuid() != 0:
        return "a scratch Postfix needs root (postfix -c, and its daemons change user)"
    if shutil.which("script") is None:
        return "script (util-linux) is missing"
    if sasl:
        if shutil.which("saslpasswd2") is None:
            return "saslpasswd2 is missing (apt-get install -y sasl2-bin)"
        if not glob.glob("/usr/lib/*/sasl2/libplain.so*"):
            return "the SASL PLAIN plugin is missing (apt-get install -y libsasl2-modules)"
    return None


def _port_open(port, banner=True):
    """Whether 127.0.0.1:port accepts a connection (and, with banner, an
    smtpd there greets with 220)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if not banner:
                return True
            s.settimeout(5)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    return False
                data += chunk
            s.sendall(b"QUIT\r\n")
            return data.startswith(b"220")
    except OSError:
        return False


class _Postfix:
    role = "postfix"

    def __init__(self, hostname, tls=True, size_limit=10240000, port=None):
        why = available(sasl=isinstance(self, PostfixSmarthost))
        if why:
            raise RuntimeError(why)
        self.dir = tempfile.mkdtemp(prefix=f"mail-test-postfix-{self.role}-")
        os.chmod(self.dir, 0o755)   # postfix and nobody must reach queue/ and mail/
        self.conf_dir = os.path.join(self.dir, "conf")
        os.makedirs(os.path.join(self.conf_dir, "tls"))
        self.port = port or free_port()
        self.hostname = hostname
        self.tls = tls
        self.cert_file = os.path.join(self.conf_dir, "tls", "cert.pem")
        self.key_file = os.path.join(self.conf_dir, "tls", "key.pem")
        self.master_pid = None
        self.started = False
        self._make_cert()
        self.main_cf = MAIN_COMMON.format(
            d=self.dir, conf=self.conf_dir, hostname=hostname, size_limit=size_limit,
            syslog_name=f"postfix-{self.role}-{self.port}",
            tls_level="may" if tls else "none")
        self.master_cf = MASTER.format(port=self.port)

    def _make_cert(self):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
             "-subj", f"/CN={self.hostname}",
             "-addext", f"subjectAltName=DNS:{self.hostname},DNS:localhost,IP:127.0.0.1",
             "-keyout", self.key_file, "-out", self.cert_file],
            check=True, capture_output=True)
        os.chmod(self.key_file, 0o600)

    def _write_conf(self):
        with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
            f.write(self.main_cf)
        with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
            f.write(self.master_cf)
        self._backdate()

    def _backdate(self):
        """Set every configuration file's mtime 10 s back. Postfix reads
        main.cf and texthash maps through dict_load_file(), which waits
        (0.3 s at a time) until the file is at least a second old, in case
        an editor is still writing it: up to 2 s per command otherwise."""
        past = time.time() - 10
        for dirpath, _, names in os.walk(self.conf_dir):
            for n in names:
                os.utime(os.path.join(dirpath, n), (past, past))

    def _postfix(self, *args, timeout=60):
        """Run `postfix -c CONF ARGS` under script(1): without syslog the
        postfix command shows its errors only on a tty. Returns
        (exit status, output)."""
        cmd = " ".join(shlex.quote(a) for a in ["/usr/sbin/postfix", "-c", self.conf_dir, *args])
        p = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace").replace("\r\n", "\n")

    def postconf(self, name):
        p = subprocess.run(["/usr/sbin/postconf", "-c", self.conf_dir, "-h", name],
                           capture_output=True, text=True, check=True)
        return p.stdout.strip()

    def start(self, timeout=30):
        """Start the instance and wait until its smtpd greets (220);
        returns self. A second call does nothing."""
        if self.started:
            return self
        self._write_conf()
        # postfix needs queue/ to exist (root, 755, as postfix-files says);
        # `postfix check` creates its subdirectories and data/ (a data/ made
        # by us, root-owned, would give "master.lock: Permission denied").
        os.makedirs(os.path.join(self.dir, "queue"), mode=0o755, exist_ok=True)
        rc, out = self._postfix("check")
        if rc != 0:
            raise RuntimeError(f"postfix check failed ({rc}): {out}{self.log_tail()}")
        self.started = True
        rc, out = self._postfix("start")
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                self.master_pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError) as e:
            if rc == 0:
                out += f"no master.pid after postfix start ({e})\n"
                rc = -1
        if rc != 0:
            err = f"postfix start failed ({rc}): {out}{self.log_tail()}"
            self.stop(keep_dir=True)
            raise RuntimeError(err + f" (kept {self.dir})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _port_open(self.port):
                return self
            if not self._alive(self.master_pid):
                break
            time.sleep(0.1)
        err = f"postfix not greeting on 127.0.0.1:{self.port}: {self.log_tail()}"
        self.stop(keep_dir=True)
        raise RuntimeError(err + f" (kept {self.dir})")

    @staticmethod
    def _alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def log(self):
        """Postfix's log (maillog_file) so far, as text."""
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=20):
        return "".join(self.log().splitlines(True)[-n:])

    def queue(self):
        """postqueue -p: the messages still queued (or "Mail queue is empty")."""
        p = subprocess.run(["/usr/sbin/postqueue", "-c", self.conf_dir, "-p"],
                           capture_output=True, text=True, timeout=30)
        return p.stdout + p.stderr

    def flush(self):
        """postqueue -f: attempt every deferred message now."""
        subprocess.run(["/usr/sbin/postqueue", "-c", self.conf_dir, "-f"],
                       capture_output=True, timeout=30)

    def pids(self):
        """Every process of this instance: those whose environment names our
        configuration directory (postfix(1) exports MAIL_CONFIG and master(8)
        passes it on to every daemon: import_environment), plus the master."""
        tag = b"MAIL_CONFIG=" + self.conf_dir.encode()
        out = set()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if tag in f.read().split(b"\0"):
                        out.add(int(d))
            except OSError:
                pass
        if self.master_pid and self._alive(self.master_pid):
            out.add(self.master_pid)
        out.discard(os.getpid())
        return sorted(out)

    def stop(self, keep_dir=False):
        """`postfix -c CONF stop`, then SIGKILL (by PID) whatever of this
        instance is left; remove the directory unless keep_dir."""
        if self.started:
            self.started = False
            if self.master_pid and self._alive(self.master_pid):
                try:
                    self._postfix("stop", timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            deadline = time.monotonic() + 5
            while (self.master_pid and self._alive(self.master_pid)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            # The master SIGTERMs its children as it goes; anything still
            # alive with our MAIL_CONFIG (or the master itself) gets SIGKILL.
            left = self.pids()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + 5
            while any(self._alive(p) for p in left) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.master_pid = None
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PostfixMX(_Postfix):
    """A remote MX for `domains` (a name or a list): see the module
    docstring. Not started until start() or `with`."""
    role = "mx"

    def __init__(self, domains, reject=(), tls=True, rcpt_actions=None, hostname=None,
                 size_limit=10240000, port=None):
        if isinstance(domains, str):
            domains = [domains]
        self.domains = [d.lower() for d in domains]
        super().__init__(hostname or f"mx.{self.domains[0]}", tls=tls, size_limit=size_limit,
                         port=port)
        self.mail_dir = os.path.join(self.dir, "mail")
        os.makedirs(self.mail_dir)
        os.chown(self.mail_dir, NOBODY, NOBODY)
        with open(os.path.join(self.conf_dir, "vmailbox"), "w") as f:
            for dom in self.domains:       # catch-all: one maildir per domain
                f.write(f"@{dom} {dom}/\n")
        actions = {a.lower(): "550 5.1.1 User unknown" for a in reject}
        for a, act in (rcpt_actions or {}).items():
            actions[a.lower()] = act
        with open(os.path.join(self.conf_dir, "rcpt_access"), "w") as f:
            for a, act in actions.items():
                f.write(f"{a} {act}\n")
        self.main_cf += MAIN_MX.format(d=self.dir, conf=self.conf_dir, uid=NOBODY,
                                       domains=", ".join(self.domains))

    def _files(self):
        files = []
        for dom in self.domains:
            for sub in ("new", "cur"):
                for p in glob.glob(os.path.join(self.mail_dir, dom, sub, "*")):
                    try:
                        files.append((os.stat(p).st_mtime_ns, os.path.basename(p), p))
                    except OSError:
                        pass
        return [p for _, _, p in sorted(files)]

    @staticmethod
    def _recipient(data):
        """The Delivered-To: virtual(8) put first in the file."""
        for line in data.split(b"\n", 3)[:3]:
            if line.lower().startswith(b"delivered-to:"):
                return line.split(b":", 1)[1].strip().decode(errors="replace").lower()
        return None

    def messages(self, addr=None, count=1, timeout=10):
        """The messages delivered so far (to addr, or to anyone), oldest
        first, as bytes: the file virtual(8) wrote, LF line ends, starting
        with Return-Path: and Delivered-To: (one copy per recipient), then
        Postfix's Received: and the message. Waits up to timeout seconds
        for at least count of them; returns what there is (maybe fewer)."""
        want = addr.lower().strip("<>") if addr else None
        deadline = time.monotonic() + timeout
        while True:
            out = []
            for p in self._files():
                try:
                    with open(p, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                if want is None or self._recipient(data) == want:
                    out.append(data)
            if len(out) >= count or time.monotonic() >= deadline:
                return out
            time.sleep(0.1)


class PostfixSmarthost(_Postfix):
    """An authenticating relay to [relay_host]:relay_to_port: see the module
    docstring. Not started until start() or `with`. relay_tls: its
    smtp_tls_security_level towards the next hop ("may", "encrypt",
    "none")."""
    role = "smarthost"

    def __init__(self, user, password, relay_to_port, relay_host="127.0.0.1",
                 relay_tls="may", hostname="smarthost.test", size_limit=10240000):
        super().__init__(hostname, tls=True, size_limit=size_limit)
        self.relay_to_port = relay_to_port
        self.realm = hostname
        sasl = os.path.join(self.conf_dir, "sasl")
        os.makedirs(sasl)
        self.sasldb = os.path.join(sasl, "sasldb2")
        # Debian's smtpd reads $config_directory/sasl/smtpd.conf (and ignores
        # cyrus_sasl_config_path); without it, /etc/sasldb2 and 454.
        with open(os.path.join(sasl, "smtpd.conf"), "w") as f:
            f.write(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    f"mech_list: PLAIN LOGIN\nsasldb_path: {self.sasldb}\n")
        self.add_user(user, password)
        self.user, self.password = user, password
        self.main_cf += MAIN_SMARTHOST.format(relay_host=relay_host, relay_port=relay_to_port,
                                              realm=self.realm, relay_tls=relay_tls)

    def add_user(self, user, password):
        """user1@realm (logs in as that) or user1 (logs in as user1)."""
        local, realm = user.rsplit("@", 1) if "@" in user else (user, self.realm)
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", self.sasldb, "-u", realm, local],
                       input=password.encode(), check=True, capture_output=True)
        os.chown(self.sasldb, 0, self._gid("postfix"))
        os.chmod(self.sasldb, 0o640)

    @staticmethod
    def _gid(group):
        import grp
        return grp.getgrnam(group).gr_gid
