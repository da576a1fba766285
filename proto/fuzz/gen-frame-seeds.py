#!/usr/bin/env python3
"""Write the seed inputs of fuzz_rpc_frame into corpus-frame/.

Input layout (see ../fuzz-rpc-frame.c): 1 byte limit selector (odd: the
pre-HELLO limit), 8 chunk sizes, then the byte stream."""
import os
import struct

def frame(kind, method=0, status=0, rid=0, deadline=0, payload=b"", version=1):
    return struct.pack(">IBBHIQI", 20 + len(payload), version, kind, method,
                       status, rid, deadline) + payload

def hello(service=b"store", major=1, minor=0):
    return frame(1, payload=bytes([len(service)]) + service + struct.pack(">HH", major, minor))

fetch = b"\x0a\x11alice@example.com\x12\x05INBOX\x18\x07"
seeds = {
    "hello-request-bytewise": b"\x00" + bytes(8) + hello() + frame(2, 4, 0, 1, 5000, fetch),
    "hello-only-small-limit": b"\x01" + bytes([1, 2, 3, 4, 5, 6, 7, 8]) + hello(b"queue", 1, 3),
    "responses-big-chunks": b"\x00" + bytes([255] * 8) + hello()
        + frame(3, 4, 3, 1) + frame(3, 4, 0, 2, 0, b"\x12\x06body-2") + frame(3, 2, 14, 3),
    "bad-version": b"\x00" + bytes([7] * 8) + hello() + frame(2, 4, 0, 1, 10, fetch, version=2),
    "oversize-length": b"\x01" + bytes([3] * 8) + b"\x00\x01\x00\x00" + bytes(20),
    "short-length": b"\x00" + bytes([2] * 8) + b"\x00\x00\x00\x13" + bytes(19),
    "truncated": b"\x00" + bytes([5] * 8) + frame(2, 4, 0, 9, 100, fetch)[:-3],
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-frame")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
