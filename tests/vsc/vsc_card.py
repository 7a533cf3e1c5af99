#!/usr/bin/python3
"""A virtual VAT Signing Card for fdmd's tests.

It implements the APDU profile "fdmd-test-1" (configs/vsc-profile-fdmd-test.toml, docs/vsc.md)
with an Ed25519 key, a PIN and a tries counter, and plugs into the vpcd virtual reader of
vsmartcard (Debian package vsmartcard-vpcd) by speaking vpcd's socket protocol, the one vicc
speaks: each message is a 2-byte big-endian length and the bytes; a 1-byte message is a
control (0 power off, 1 power on, 2 reset, 4 send the ATR), anything longer is a command APDU,
answered with the response APDU. Connecting inserts the card; exiting pulls it out.

The card's state (key seed, VSC id, PIN, tries left) lives in a JSON file, so a card that is
pulled out and put back (this process stopped and started again) is the same card, with the
same tries counter.

Usage: vsc_card.py --port PORT --state FILE [--delay-ms N]
"""

import argparse
import json
import os
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ATR = bytes.fromhex("3B951381018073FF01000B")
AID = bytes.fromhex("F046444D4401")
OK = b"\x90\x00"


def sw(code):
    return struct.pack(">H", code)


class Card:
    def __init__(self, state_file, delay_ms):
        self.state_file = state_file
        self.delay = delay_ms / 1000.0
        with open(state_file) as f:
            self.state = json.load(f)
        self.key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.state["seed"]))
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.reset()

    def reset(self):
        self.selected = False
        self.verified = False

    def save(self):
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, self.state_file)

    def pin_bytes(self):
        return self.state["pin"].encode().ljust(8, b"\xff")

    def execute(self, apdu):
        if len(apdu) < 4:
            return sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[4:]
        lc_data = b""
        if len(body) > 1:
            lc = body[0]
            lc_data = body[1:1 + lc]
            if len(lc_data) != lc:
                return sw(0x6700)
        if (cla, ins) == (0x00, 0xA4):
            if p1 == 0x04 and lc_data == AID:
                self.selected = True
                self.verified = False
                return OK
            return sw(0x6A82)
        if not self.selected:
            return sw(0x6D00)
        if (cla, ins) == (0x80, 0xCA) and p1 == 0x00:
            if p2 == 0x01:
                return self.state["id"].encode() + OK
            if p2 == 0x02:
                return self.public + OK
            return sw(0x6A88)
        if (cla, ins, p1, p2) == (0x00, 0x20, 0x00, 0x81):
            if self.state["tries"] == 0:
                return sw(0x6983)
            if len(apdu) == 4:
                return OK if self.verified else sw(0x63C0 | self.state["tries"])
            if lc_data == self.pin_bytes():
                self.state["tries"] = self.state["max_tries"]
                self.verified = True
                self.save()
                return OK
            self.state["tries"] -= 1
            self.verified = False
            self.save()
            return sw(0x63C0 | self.state["tries"])
        if (cla, ins, p1, p2) == (0x80, 0x2A, 0x9E, 0x9A):
            if not self.verified:
                return sw(0x6982)
            if len(lc_data) != 32:
                return sw(0x6700)
            if self.delay:
                time.sleep(self.delay)
            return self.key.sign(lc_data) + OK
        return sw(0x6D00)


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        # vpcd writes the length and the APDU separately; acknowledging at once keeps its Nagle
        # algorithm from holding the APDU back for a delayed ACK (about 40 ms per exchange).
        if hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()
    card = Card(a.state, a.delay_ms)
    deadline = time.time() + 20
    while True:
        try:
            sock = socket.create_connection((a.host, a.port), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                print("vsc_card: vpcd does not answer on port %d" % a.port, file=sys.stderr)
                return 1
            time.sleep(0.1)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("vsc_card: inserted (%s)" % card.state["id"], flush=True)
    try:
        while True:
            (n,) = struct.unpack(">H", recv_exact(sock, 2))
            msg = recv_exact(sock, n) if n else b""
            if n == 1:
                if msg[0] in (0, 1, 2):
                    card.reset()
                elif msg[0] == 4:
                    sock.sendall(struct.pack(">H", len(ATR)) + ATR)
                continue
            answer = card.execute(msg)
            sock.sendall(struct.pack(">H", len(answer)) + answer)
    except (EOFError, ConnectionError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
