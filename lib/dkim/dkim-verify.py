#!/usr/bin/python3
"""dkim-verify.py MESSAGE KEYS: the independent DKIM verifier of our tests.

Verifies every DKIM-Signature field of the file MESSAGE with dkimpy
(Debian's python3-dkim; run it as /usr/bin/python3: the python3 first on
PATH may not see Debian's packages). The public keys come from the file
KEYS, one "NAME VALUE" line each (NAME like s1._domainkey.example.test,
VALUE the TXT record's text "v=DKIM1; k=...; p=..."), through dkimpy's
dnsfunc hook: no DNS is asked.

Prints one line per signature, topmost first:
    pass a=rsa-sha256 d=example.test s=s1 h=from:to:...
    fail a=... d=... s=... (reason)
Exit status: 0 when there is at least one signature and every one
passes, 1 when one fails or there is none, 2 on usage errors or when
python3-dkim is missing.
"""
import sys

try:
    import dkim
    import dkim.util
except ImportError:
    print("python3-dkim is not installed (apt-get install python3-dkim)")
    sys.exit(2)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[0])
        return 2
    with open(sys.argv[1], "rb") as f:
        message = f.read()
    keys = {}
    with open(sys.argv[2]) as f:
        for line in f:
            name, _, value = line.strip().partition(" ")
            if name:
                keys[name.lower().rstrip(".")] = value.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return keys.get(name.lower().rstrip("."))

    d = dkim.DKIM(message, minkey=1024)
    sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
    if not sigs:
        print("fail no DKIM-Signature")
        return 1
    ok = True
    for idx, value in enumerate(sigs):
        tags = dkim.util.parse_tag_value(value)
        desc = "a=%s d=%s s=%s h=%s" % tuple(
            tags.get(t, b"?").decode().replace(" ", "").replace("\r\n", "").replace("\t", "")
            for t in (b"a", b"d", b"s", b"h"))
        try:
            passed = d.verify(idx=idx, dnsfunc=dnsfunc)
            reason = "signature does not verify"
        except dkim.DKIMException as e:
            passed, reason = False, str(e)
        print(("pass " + desc) if passed else ("fail %s (%s)" % (desc, reason)))
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
