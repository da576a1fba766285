#!/usr/bin/python3
"""dkim-sign.py MESSAGE KEY ALGORITHM SELECTOR DOMAIN [OPTIONS]: the
independent DKIM signer of our verifier's tests.

Signs the file MESSAGE with dkimpy (Debian's python3-dkim; run it as
/usr/bin/python3: the python3 first on PATH may not see Debian's packages)
and prints the DKIM-Signature field followed by the message, as one
message, on stdout. KEY is a PKCS#8 PEM private key file (what
lib/dkim's dkim_key_generate() writes); ALGORITHM is rsa-sha256 or
ed25519-sha256 (the Ed25519 seed is taken out of the PEM with
python3-cryptography, since dkimpy wants it raw).

Options:
  --length            add l= (the body length signed)
  --canon H/B         canonicalization, default relaxed/relaxed
  --headers a:b:c     the header fields to sign, default from:to:subject:date

Exit status: 0 when signed, 1 when dkimpy refused, 2 on usage errors or
when python3-dkim or python3-cryptography is missing.
"""
import base64
import sys

try:
    import dkim
    from cryptography.hazmat.primitives import serialization
except ImportError:
    print("python3-dkim and python3-cryptography are needed", file=sys.stderr)
    sys.exit(2)


def main():
    args = sys.argv[1:]
    if len(args) < 5:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    msg_path, key_path, alg, selector, domain = args[:5]
    length = False
    canon = (b"relaxed", b"relaxed")
    headers = [b"from", b"to", b"subject", b"date"]
    rest = args[5:]
    while rest:
        opt = rest.pop(0)
        if opt == "--length":
            length = True
        elif opt == "--canon" and rest:
            h, _, b = rest.pop(0).partition("/")
            canon = (h.encode(), b.encode())
        elif opt == "--headers" and rest:
            headers = [h.encode() for h in rest.pop(0).split(":")]
        else:
            print("unknown option " + opt, file=sys.stderr)
            return 2
    with open(msg_path, "rb") as f:
        message = f.read()
    with open(key_path, "rb") as f:
        pem = f.read()
    if alg == "ed25519-sha256":
        key = serialization.load_pem_private_key(pem, None)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        privkey = base64.b64encode(raw)
    elif alg == "rsa-sha256":
        privkey = pem
    else:
        print("unknown algorithm " + alg, file=sys.stderr)
        return 2
    try:
        sig = dkim.sign(message, selector.encode(), domain.encode(), privkey,
                        canonicalize=canon, signature_algorithm=alg.encode(),
                        include_headers=headers, length=length)
    except dkim.DKIMException as e:
        print("dkimpy refused: %s" % e, file=sys.stderr)
        return 1
    sys.stdout.buffer.write(sig + message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
