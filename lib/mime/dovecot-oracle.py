#!/usr/bin/python3
"""dovecot-oracle.py: what Dovecot's IMAP server answers for messages.

A developer's tool (not a test: CI has no Dovecot). It APPENDs each
message file given on the command line to a scratch maildir through
Dovecot's imap binary run in PREAUTH mode (Debian dovecot-imapd), then
FETCHes ENVELOPE, BODYSTRUCTURE, BODY and any sections given with -s, and
prints the untagged FETCH answers. Used to check the expected strings in
lib/mime/test-mime.c that say "verified with Dovecot".

  lib/mime/dovecot-oracle.py [-s 'BODY.PEEK[1.MIME]' ...] msg.eml...

Runs as root: the scratch directory is owned by the "mail" user, whom
Dovecot's imap drops to (it refuses root).
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

IMAP = "/usr/lib/dovecot/imap"


def main(argv):
    sections = []
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "-s":
            sections.append(argv[i + 1])
            i += 2
        else:
            files.append(argv[i])
            i += 1
    top = tempfile.mkdtemp(prefix="dv-oracle-")
    try:
        mail = pwd.getpwnam("mail")
        os.chmod(top, 0o755)
        for d in ("run", "state", "mail", "home"):
            os.mkdir(os.path.join(top, d))
        for d in ("mail", "home"):
            os.chown(os.path.join(top, d), mail.pw_uid, mail.pw_gid)
        conf = os.path.join(top, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"""protocols =
base_dir = {top}/run
state_dir = {top}/state
log_path = {top}/log
first_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
mail_uid = mail
mail_gid = mail
mail_location = maildir:{top}/mail/%u
ssl = no
""")
        cmd = b""
        for n, path in enumerate(files):
            with open(path, "rb") as f:
                data = f.read()
            cmd += b"a%d APPEND INBOX {%d}\r\n" % (n, len(data)) + data + b"\r\n"
        items = " ".join(["ENVELOPE BODYSTRUCTURE BODY"] + sections)
        cmd += b"s SELECT INBOX\r\nf FETCH 1:* (" + items.encode() + b")\r\nl LOGOUT\r\n"
        env = {"USER": "oracle", "HOME": f"{top}/home", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([IMAP, "-c", conf], input=cmd, env=env,
                             stdout=subprocess.PIPE, check=False).stdout
        start = out.find(b"* 1 FETCH")
        end = out.find(b"\r\nf OK")
        sys.stdout.buffer.write(out[start:end + 2] if start >= 0 else out)
    finally:
        shutil.rmtree(top)


if __name__ == "__main__":
    main(sys.argv[1:])
