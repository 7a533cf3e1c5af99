#!/usr/bin/python3
"""Makes docs/test-vectors/: journal exports and their expected verdicts, for anyone who writes a
verifier from docs/journal-format.md (issue 17).

    tests/vectors/make-vectors.py target/release/fdmd target/release/fdmctl docs/test-vectors

It starts the real `fdmd --dev` on a temporary data directory and free loopback ports, registers a
short day (clock-in, two sales with a discount and a menu, a refund, clock-out, an X and a Z report)
over HTTP, exports the journal with the real `fdmctl export`, then derives tampered copies from
that export (each change made as an attacker would make it, re-hashing and re-signing where the
case says so) and writes expected.json. Run it again only to replace the vectors: they are checked
in, and fdmctl/tests/test_vectors.rs checks `fdmctl verify` against them on every test run.
Needs python3-cryptography (Ed25519).
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

OP = "85073003328"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(port, path, token, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def make_day(fdmd, fdmctl, work):
    data = os.path.join(work, "data")
    http, mqtt = free_port(), free_port()
    log = open(os.path.join(work, "fdmd.log"), "w")
    proc = subprocess.Popen(
        [fdmd, "--dev", "--data-dir", data, "--http-listen", f"127.0.0.1:{http}",
         "--mqtt-listen", f"127.0.0.1:{mqtt}"],
        stdout=log, stderr=log)
    try:
        creds_file = os.path.join(data, "dev-credentials.json")
        deadline = time.time() + 30
        while not os.path.exists(creds_file):
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("fdmd did not start: " + open(os.path.join(work, "fdmd.log")).read())
            time.sleep(0.1)
        time.sleep(0.5)
        token = json.load(open(creds_file))["http_token"]
        orders = "/v1/registers/dev-register/orders"
        post(http, orders, token, {"request_id": "in-1", "operator": OP, "event_type": "normal",
                                   "purpose": "work_in"})
        post(http, orders, token, {
            "request_id": "s-1", "operator": OP, "event_type": "normal",
            "lines": [{"description": "Spaghetti", "quantity": 2, "unit_price": "14.50", "vat": "B",
                       "category": "meal"},
                      {"description": "Cola", "quantity": 2, "unit_price": "3.20", "vat": "A",
                       "category": "drink"}],
            "payments": [{"method": "card", "amount": "35.40"}]})
        post(http, orders, token, {
            "request_id": "s-2", "operator": OP, "event_type": "normal",
            "lines": [{"description": "Menu", "quantity": 1, "unit_price": "50.00",
                       "menu_split": "coefficient", "category": "meal"},
                      {"description": "Crème brûlée", "quantity": 1, "unit_price": "7.50", "vat": "B"}],
            "discounts": [{"description": "Korting", "percent": "10"}],
            "payments": [{"method": "cash", "amount": "51.75"}]})
        post(http, orders, token, {
            "request_id": "r-1", "operator": OP, "event_type": "normal",
            "original": {"request_id": "s-1"},
            "lines": [{"description": "Cola", "quantity": -1, "unit_price": "3.20", "vat": "A",
                       "original_line": 1}],
            "payments": [{"method": "card", "amount": "-3.20"}]})
        post(http, orders, token, {"request_id": "out-1", "operator": OP, "event_type": "normal",
                                   "purpose": "work_out"})
        post(http, "/v1/registers/dev-register/reports", token, {"kind": "x"})
        post(http, "/v1/registers/dev-register/reports", token, {"kind": "z"})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    out = os.path.join(work, "good.jsonl")
    subprocess.run([fdmctl, "export", "--data-dir", data, "-o", out], check=True)
    return [json.loads(line) for line in open(out)]


def write(path, lines):
    with open(path, "w") as f:
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def records(lines):
    return [l for l in lines if l["type"] == "record"]


def with_end(lines):
    """The lines with a header and end line that agree with the records (as a forger would)."""
    recs = records(lines)
    header = dict(lines[0])
    header["first_seq"], header["last_seq"] = recs[0]["seq"], recs[-1]["seq"]
    return [header] + recs + [{"type": "end", "records": len(recs), "last_hash": recs[-1]["hash"]}]


def fiscal_seqs(lines):
    return [r["seq"] for r in records(lines) if json.loads(r["record"])["kind"] == "fiscal_event"]


def main():
    fdmd, fdmctl, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fdmd-vectors-")
    good = make_day(fdmd, fdmctl, work)
    recs = records(good)
    sales = fiscal_seqs(good)
    last = recs[-1]["seq"]
    by_seq = {r["seq"]: i for i, r in enumerate(good) if r["type"] == "record"}
    cases = {}

    def case(name, lines, valid, first_bad=None, what="", anchors=None):
        write(os.path.join(out_dir, name), lines)
        cases[name] = {"valid": valid, "first_bad_record": first_bad, "what": what}
        if anchors:
            cases[name]["anchors"] = anchors

    case("good.jsonl", good, True, what="a whole day: clock-in, two sales (one with an all-in menu and a discount), a refund, clock-out, X and Z")

    # A sale's total changed in place: the stored hash no longer matches.
    k = sales[1]
    lines = [dict(l) for l in good]
    lines[by_seq[k]]["record"] = lines[by_seq[k]]["record"].replace('"total":"', '"total":"1', 1)
    case("edited-amount.jsonl", lines, False, k, "hash: the record's bytes do not hash to its stored hash")

    # The same edit with the hash recomputed: the signature no longer matches.
    lines = [dict(l) for l in lines]
    lines[by_seq[k]]["hash"] = sha256(lines[by_seq[k]]["record"])
    case("edited-amount-rehashed.jsonl", lines, False, k,
         "signature: the hash was recomputed, the signature does not verify")

    # One bit of a signature flipped.
    lines = [dict(l) for l in good]
    sig = bytearray.fromhex(lines[by_seq[k]]["signature"])
    sig[10] ^= 0x01
    lines[by_seq[k]]["signature"] = sig.hex()
    case("bad-signature.jsonl", lines, False, k, "signature does not verify")

    # A sale deleted, header and end line made to agree.
    lines = with_end([l for l in good if l.get("seq") != k])
    case("deleted-record.jsonl", lines, False, k, "sequence: this record is missing")

    # Two records swapped.
    lines = [dict(l) for l in good]
    a, b = by_seq[k], by_seq[k + 1]
    lines[a], lines[b] = lines[b], lines[a]
    case("swapped-records.jsonl", lines, False, k, "sequence: records out of order")

    # The tail cut off without an end line: refused.
    lines = [l for l in good if l["type"] != "end" and l.get("seq", 0) <= last - 2]
    case("cut-without-end.jsonl", lines, False, None, "the end line is missing: a cut-off export")

    # The tail cut off and the end line rewritten: the file verifies on its own, but a receipt of
    # a cut record (its seq and hash) given as an anchor shows the cut.
    lines = with_end([l for l in good if l.get("seq", 0) <= last - 2])
    cut = good[by_seq[last]]
    case("cut-tail.jsonl", lines, True, None,
         "verifies alone; with the anchor of the last record (a printed Z) it is refused",
         anchors=[f'{cut["seq"]}:{cut["hash"]}'])

    # The last sales rewritten and re-signed with a key of the forger's, declared only in the
    # export's (unsigned) header: refused, the key is not anchored in the chain.
    forger = Ed25519PrivateKey.generate()
    public = forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    forged_id = "DEVSW-" + public[:8]
    lines = [dict(l) for l in good]
    header = dict(lines[0])
    header["signers"] = list(header["signers"]) + [
        {"id": forged_id, "algorithm": "ed25519", "public_key": public}]
    lines[0] = header
    prev = None
    for i, l in enumerate(lines):
        if l["type"] != "record":
            continue
        if l["seq"] >= k:
            env = json.loads(l["record"])
            if prev is not None:
                env["prev_hash"] = prev
            env["signer_id"] = forged_id
            if l["seq"] == k:
                env["body"]["total"] = "1" + env["body"]["total"]
            text = json.dumps(env, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
            l["record"] = text
            l["hash"] = sha256(text)
            l["signature"] = forger.sign(bytes.fromhex(l["hash"])).hex()
        prev = l["hash"]
    lines[-1] = {"type": "end", "records": len(records(lines)), "last_hash": prev}
    case("resigned-with-header-key.jsonl", lines, False, k,
         "signer: a key only the unsigned header lists, never declared by the chain")

    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(cases, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
