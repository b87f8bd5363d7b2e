"""Peer for bench_score.py: pyshark FileCapture with tshark's display filter, counting the
SYN/RST packets it hands back (each one parsed into a Python object). Prints one JSON object.

    python benchmarks/peer_pyshark.py FILE
"""

import json
import sys

import pyshark

FILTER = "tcp.flags.syn==1 or tcp.flags.reset==1"


def count(path: str) -> dict:
    cap = pyshark.FileCapture(path, display_filter=FILTER, keep_packets=False)
    n = 0
    try:
        for packet in cap:
            n += bool(int(packet.tcp.flags, 16) & 0x06)
    finally:
        cap.close()
    return {"syn_or_rst_packets": n}


if __name__ == "__main__":
    print(json.dumps(count(sys.argv[1])))
