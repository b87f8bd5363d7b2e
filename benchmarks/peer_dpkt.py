"""Peer for bench_score.py: read every packet with dpkt, decode Ethernet -> IP/IPv6 -> TCP,
count SYN, SYN-ACK and RST packets. Prints one JSON object.

    python benchmarks/peer_dpkt.py FILE
"""

import json
import sys

import dpkt

SYN, RST, ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK


def count(path: str) -> dict:
    n = syn = syn_ack = rst = 0
    with open(path, "rb") as f:
        pcapng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        for _ts, frame in (dpkt.pcapng.Reader(f) if pcapng else dpkt.pcap.Reader(f)):
            n += 1
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = ip.data if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) else None
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            flags = tcp.flags
            if flags & SYN:
                syn_ack += bool(flags & ACK)
                syn += not flags & ACK
            rst += bool(flags & RST)
    return {"packets": n, "syn_packets": syn, "syn_ack_packets": syn_ack, "rst_packets": rst}


if __name__ == "__main__":
    print(json.dumps(count(sys.argv[1])))
