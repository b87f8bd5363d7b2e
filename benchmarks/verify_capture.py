"""Score a capture from tshark's dissection and compare with its ``.expected.json``.

    python benchmarks/verify_capture.py FILE [FILE...]

An independent check of ``make_capture.py``'s ground truth (tshark is the reference
dissector), applying the handshake rules of ``../shared/corpus/README.md`` in plain Python.
Also fails on any packet tshark marks malformed. Slow (tshark speed): meant for checking the
generator, not for timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
          "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "_ws.malformed"]
SYN, RST, ACK = 0x02, 0x04, 0x10


def packets(path):
    """(src, dst, flags, seq, ack, malformed) per TCP packet, in file order."""
    cmd = ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "occurrence=f"]
    cmd += [a for f in FIELDS for a in ("-e", f)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        for line in p.stdout:
            s4, s6, sp, d4, d6, dp, flags, seq, ack, bad = line.rstrip("\n").split("\t")
            yield (s4 or s6, sp), (d4 or d6, dp), int(flags, 16), int(seq), int(ack or 0), bool(bad)


def score(path) -> dict:
    """Notes and outcomes: an attempt is (client, server, client ISN); the latest one per pair counts."""
    notes, attempts, latest, n, bad = Counter(), {}, {}, 0, 0
    for src, dst, flags, seq, ack, malformed in packets(path):
        n, bad = n + 1, bad + malformed
        if flags & SYN and not flags & ACK:
            key = (src, dst, seq)
            notes["syn-retry" if key in attempts else "syn"] += 1
            attempts.setdefault(key, {"synack": None, "done": None})
            latest[(src, dst)] = key
            continue
        from_client = (src, dst) in latest
        key = latest.get((src, dst)) or latest.get((dst, src))
        a = attempts.get(key)
        if a is None or a["done"] == "complete":
            continue
        if flags & RST:
            if a["done"] is None:
                notes["rst"] += 1
                a["done"] = "refused" if a["synack"] is None and not from_client else "incomplete"
        elif flags & SYN and not from_client and ack == (key[2] + 1) % 2**32 and a["done"] is None:
            if a["synack"] is None:
                notes["syn-ack"], a["synack"] = notes["syn-ack"] + 1, seq
            elif a["synack"] == seq:
                notes["syn-ack-retry"] += 1
        elif flags & ACK and from_client and a["synack"] is not None and a["done"] is None \
                and ack == (a["synack"] + 1) % 2**32:
            notes["ack"], a["done"] = notes["ack"] + 1, "complete"
    outcomes = Counter(a["done"] or ("incomplete" if a["synack"] is not None else "unanswered")
                       for a in attempts.values())
    kinds = ["syn", "syn-retry", "syn-ack", "syn-ack-retry", "ack", "rst"]
    return {"packets": n, "malformed": bad, "notes": {k: notes[k] for k in kinds},
            "handshakes": {k: outcomes[k] for k in ["complete", "refused", "unanswered", "incomplete"]}}


def main(paths) -> int:
    failed = 0
    for path in paths:
        got = score(path)
        exp_path = Path(f"{path}.expected.json")
        exp = json.loads(exp_path.read_text()) if exp_path.exists() else None
        ok = got["malformed"] == 0 and (exp is None or all(got[k] == exp[k] for k in ("packets", "notes", "handshakes")))
        failed += not ok
        print(f"{'OK  ' if ok else 'FAIL'} {path}: {json.dumps(got)}")
        if exp and not ok:
            print(f"     expected: {json.dumps({k: exp[k] for k in ('packets', 'notes', 'handshakes')})}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
