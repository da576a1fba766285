#!/usr/bin/python3
"""An independent reading of lib/dsn's reports: dsn-samples (argv[1])
writes them, Python's email package (Debian's /usr/bin/python3, stdlib
only) parses them, and this checks their structure: multipart/report with
report-type=delivery-status, the human part, the delivery-status fields
per message and per recipient, the type of the returned original, no
parser defects, CRLF lines of at most 998 octets, the boundary nowhere in
the content.

usage: test-dsn-email.py PATH/TO/dsn-samples
"""
import email
import email.policy
import os
import subprocess
import sys
import tempfile

FAILED = []


def check(cond, what):
    if not cond:
        FAILED.append(what)
        print("FAIL:", what)


def walk_defects(msg, name):
    for part in msg.walk():
        check(not part.defects, f"{name}: defects in {part.get_content_type()}: {part.defects}")


def raw_checks(raw, name):
    lines = raw.split(b"\r\n")
    check(lines[-1] == b"", f"{name}: does not end with CRLF")
    for i, line in enumerate(lines):
        check(b"\n" not in line and b"\r" not in line, f"{name}: bare CR or LF in line {i}")
        check(len(line) <= 998, f"{name}: line {i} has {len(line)} octets")


def status_blocks(part, name):
    """The delivery-status part as a list of field dicts (lower-case
    names), per-message block first."""
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        check(isinstance(blocks, list), f"{name}: delivery-status not parsed into blocks")
        return [{k.lower(): str(v) for k, v in b.items()} for b in blocks]
    # message/global-delivery-status: Python reads it as one message; parse
    # the blocks from its bytes ourselves
    body = part.get_payload(decode=True)
    if body is None:
        inner = part.get_payload()
        if isinstance(inner, list):
            inner = inner[0]
        body = inner.as_bytes() if hasattr(inner, "as_bytes") else inner.encode()
    text = body.decode("utf-8")
    out = []
    for chunk in text.replace("\r\n", "\n").strip("\n").split("\n\n"):
        fields = {}
        last = None
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and last:
                fields[last] += line
                continue
            k, _, v = line.partition(":")
            last = k.strip().lower()
            fields[last] = v.strip()
        out.append(fields)
    return out


def parse(path):
    with open(path, "rb") as f:
        raw = f.read()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def common(name, raw, msg, subject, n_rcpts, original_type):
    raw_checks(raw, name)
    walk_defects(msg, name)
    check(msg.get_content_type() == "multipart/report", f"{name}: top type {msg.get_content_type()}")
    check(msg.get_param("report-type") == "delivery-status", f"{name}: report-type")
    check(str(msg["Subject"]) == subject, f"{name}: subject {msg['Subject']!r}")
    check(msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example.net", f"{name}: From")
    check(msg["From"].addresses[0].display_name == "Mail Delivery System", f"{name}: From name")
    check(str(msg["Auto-Submitted"]) == "auto-replied", f"{name}: Auto-Submitted")
    check(msg["Date"] is not None and msg["Date"].datetime is not None, f"{name}: Date")
    check(msg["Message-ID"] is not None and str(msg["Message-ID"]).endswith("@mx.example.net>"),
          f"{name}: Message-ID")
    check(str(msg["MIME-Version"]) == "1.0", f"{name}: MIME-Version")
    boundary = msg.get_boundary()
    check(boundary is not None, f"{name}: boundary")
    parts = msg.get_payload()
    want = 3 if original_type else 2
    check(len(parts) == want, f"{name}: {len(parts)} parts, want {want}")
    check(parts[0].get_content_type() == "text/plain", f"{name}: part 1 {parts[0].get_content_type()}")
    text = parts[0].get_content()
    check("This is the mail system at mx.example.net." in text, f"{name}: human text")
    # the boundary appears only as delimiters
    n = raw.count(boundary.encode())
    check(n == want + 2, f"{name}: boundary occurs {n} times, want {want + 2}")
    blocks = status_blocks(parts[1], name)
    check(len(blocks) == 1 + n_rcpts, f"{name}: {len(blocks)} status blocks, want {1 + n_rcpts}")
    per_msg = blocks[0]
    check(per_msg.get("reporting-mta") == "dns; mx.example.net", f"{name}: Reporting-MTA {per_msg}")
    for b in blocks[1:]:
        for f in ("final-recipient", "action", "status"):
            check(f in b, f"{name}: {f} missing in {b}")
    if original_type:
        check(parts[2].get_content_type() == original_type,
              f"{name}: original is {parts[2].get_content_type()}, want {original_type}")
    return parts, blocks


def main():
    samples = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([samples, d], check=True)
        reports = {f[:-4]: parse(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".eml")}

    undeliv = "Undelivered Mail Returned to Sender"

    name = "failed-hdrs"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, undeliv, 2, "text/rfc822-headers")
    check(msg["To"].addresses[0].addr_spec == "alice@example.org", f"{name}: To")
    check(str(msg["In-Reply-To"]) == "<20240301.1@example.org>", f"{name}: In-Reply-To")
    check(blocks[0].get("original-envelope-id") == "QQ314159", f"{name}: envid {blocks[0]}")
    check(blocks[0].get("arrival-date") == "Fri, 01 Mar 2024 10:00:00 +0000", f"{name}: arrival")
    b = blocks[1]
    check(b.get("original-recipient") == "rfc822; Bob@Example.COM", f"{name}: orcpt {b}")
    check(b.get("final-recipient") == "rfc822; bob@example.com", f"{name}: final {b}")
    check(b.get("action") == "failed" and b.get("status") == "5.1.1", f"{name}: action {b}")
    check(b.get("remote-mta") == "dns; mx1.example.com", f"{name}: remote {b}")
    check(b.get("diagnostic-code", "").startswith("smtp; 550 5.1.1 <bob@example.com>: Recipient"),
          f"{name}: diagnostic {b}")
    check(b.get("diagnostic-code", "").endswith("User unknown in virtual mailbox table"),
          f"{name}: diagnostic unfolds {b}")
    check(b.get("last-attempt-date") == "Fri, 01 Mar 2024 10:01:00 +0000", f"{name}: last attempt")
    check(b.get("final-log-id") == "Q1234", f"{name}: log id")
    check("will-retry-until" not in b, f"{name}: will-retry-until")
    check(blocks[2].get("status") == "5.2.2", f"{name}: rcpt 2 {blocks[2]}")
    hdrs = parts[2].get_content()
    check("Subject: Hello" in hdrs and "SECRET-BODY-MARKER" not in hdrs, f"{name}: headers part")

    name = "failed-full"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, undeliv, 2, "message/rfc822")
    check(blocks[0].get("original-envelope-id") == "QQ+2718", f"{name}: envid decoded {blocks[0]}")
    inner = parts[2].get_payload()[0]
    check(str(inner["Subject"]) == "Hello", f"{name}: inner subject")
    check("SECRET-BODY-MARKER" in inner.get_content(), f"{name}: inner body")

    name = "failed-oversize"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, undeliv, 2, "text/rfc822-headers")
    check(b"SECRET-BODY-MARKER" not in raw, f"{name}: body returned")

    name = "failed-plain"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, undeliv, 1, "text/rfc822-headers")
    check(set(blocks[0]) == {"reporting-mta"}, f"{name}: per-message fields {blocks[0]}")
    check(set(blocks[1]) == {"final-recipient", "action", "status"}, f"{name}: fields {blocks[1]}")

    name = "failed-no-original"
    raw, msg = reports[name]
    common(name, raw, msg, undeliv, 1, None)

    name = "delayed"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, "Delayed Mail (still being retried)", 2,
                           "text/rfc822-headers")
    for b in blocks[1:]:
        check(b.get("action") == "delayed", f"{name}: action {b}")
        check(b.get("will-retry-until") == "Wed, 06 Mar 2024 10:00:00 +0000", f"{name}: retry {b}")
    check("Original-Recipient" not in str(blocks[2]), f"{name}: orcpt on rcpt 2")
    check(b"SECRET-BODY-MARKER" not in raw, f"{name}: body in a delay report")

    name = "delivered"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, "Successful Mail Delivery Report", 3,
                           "text/rfc822-headers")
    check([b.get("action") for b in blocks[1:]] == ["delivered", "relayed", "expanded"],
          f"{name}: actions")
    check(blocks[2].get("original-recipient") == "rfc822; Carol@Example.COM", f"{name}: orcpt")

    name = "failed-8bit"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, undeliv, 1, "message/rfc822")
    check(str(msg["Content-Transfer-Encoding"]) == "8bit", f"{name}: top CTE")
    check(str(parts[2]["Content-Transfer-Encoding"]) == "8bit", f"{name}: part CTE")
    check(parts[1].get_content_type() == "message/delivery-status", f"{name}: 7-bit status")
    inner = parts[2].get_payload()[0]
    check("na\u00efve" in inner.get_content(), f"{name}: 8-bit body")

    for name, otype in (("global-full", "message/global"), ("global-hdrs", "message/global-headers")):
        raw, msg = reports[name]
        parts, blocks = common(name, raw, msg, undeliv, 1, otype)
        check(parts[1].get_content_type() == "message/global-delivery-status", f"{name}: status type")
        # Python reads raw UTF-8 header bytes as surrogate escapes (RFC 6532
        # is not supported when parsing); undo that to compare
        to = str(msg["To"]).encode("utf-8", "surrogateescape").decode("utf-8")
        check(to == "\u7528\u6237@example.org", f"{name}: UTF-8 To {to!r}")
        b = blocks[1]
        check(b.get("final-recipient") == "utf-8; \u00e9l\u00e8ve@example.com", f"{name}: final {b}")
        check(b.get("original-recipient") == "utf-8; \u00e9l\u00e8ve@example.com", f"{name}: orcpt {b}")
        check(parts[0].get_content_charset() == "utf-8", f"{name}: text charset")
        check("\u00e9l\u00e8ve@example.com" in parts[0].get_content(), f"{name}: UTF-8 in text")
        inner = parts[2].get_payload()
        if isinstance(inner, list):
            inner = inner[0]
            check(str(inner["Subject"]) == "\u4f60\u597d", f"{name}: UTF-8 subject of the original")
        check((b"SECRET-BODY-MARKER" in raw) == (name == "global-full"), f"{name}: body returned?")

    name = "hostile"
    raw, msg = reports[name]
    parts, blocks = common(name, raw, msg, undeliv, 1, "message/rfc822")
    check(msg.get_boundary() != "=_dsn_sampleh", f"{name}: boundary not changed")
    check("bcc" not in {k.lower() for k in msg.keys()}, f"{name}: injected header")
    check(set(blocks[1]) == {"final-recipient", "action", "status", "remote-mta", "diagnostic-code"},
          f"{name}: injected status field {blocks[1]}")
    inner = parts[2].get_payload()[0]
    check(str(inner["Message-ID"]) == "<h@example.org>", f"{name}: header after a long line")
    check(len(str(inner["X-Long"]).replace(" ", "")) == 3000, f"{name}: long header refolded")

    missing = {"failed-hdrs", "failed-full", "failed-oversize", "failed-plain", "failed-no-original",
               "delayed", "delivered", "failed-8bit", "global-full", "global-hdrs",
               "hostile"} - set(reports)
    check(not missing, f"samples not written: {missing}")
    print(f"{len(reports)} reports checked, {len(FAILED)} failures")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
