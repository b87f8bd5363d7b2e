"""Every encapsulation and link type the kernel here cannot make, on crafted captures.

Each case wraps the same few attempts (a complete handshake, a refused one, a SYN
retried with the same ISN), a non-TCP inner packet and some outer noise in one
encapsulation (builders in :mod:`craft_tunnels`). Then:

1. tshark's own dissection of the file finds exactly the TCP segments built, with
   their inner addresses: the independent check that the bytes are right;
2. hs's reader finds the segments tshark finds, field by field, and ``hs score``
   tells the attempts apart by their inner addresses.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from decimal import Decimal

import pytest

import craft_tunnels as t
from craft import ACK, ETH_ARP, RST, SYN, arp, eth, pcap, tcp_ip, udp_ip, write
from handshake_score.segments import address
from handshake_score.sources import CaptureReader
from handshake_score.summary import score_files

T0 = 1_700_000_000 * 10**9
MS = 10**6
CLIENT = {False: "10.1.0.1", True: "2001:db8:1::1"}
SERVER = {False: "10.1.0.2", True: "2001:db8:1::2"}
ERROR = 0x00800000  # PI_ERROR, tshark's expert severity of a malformed or inconsistent frame
GARBAGE = b"\xff\xff\xff"  # shorter than any tunnel header: not a tunnel, not a crash


def attempts(v6: bool) -> list[tuple[int, tuple]]:
    """(time offset, TCP segment as (src, sport, dst, dport, flags, seq, ack)) of the three attempts."""
    c, s = CLIENT[v6], SERVER[v6]
    return [(0, (c, 40001, s, 80, SYN, 1000, 0)),              # complete
            (1 * MS, (s, 80, c, 40001, SYN | ACK, 5000, 1001)),
            (2 * MS, (c, 40001, s, 80, ACK, 1001, 5001)),
            (10 * MS, (c, 40002, s, 81, SYN, 2000, 0)),        # refused
            (11 * MS, (s, 81, c, 40002, RST | ACK, 0, 2001)),
            (20 * MS, (c, 40003, s, 80, SYN, 3000, 0)),        # unanswered, retried with the same ISN
            (1020 * MS, (c, 40003, s, 80, SYN, 3000, 0))]


EXPECTED_NOTES = {"syn": 3, "syn-retry": 1, "syn-ack": 1, "syn-ack-retry": 0, "ack": 1, "rst": 1}
EXPECTED_OUTCOMES = {"complete": 1, "refused": 1, "unanswered": 1, "incomplete": 0}


def outer(port: int, v6=False) -> list[bytes]:
    """Outer noise for a UDP tunnel: a datagram to its port too short to be its header."""
    return [eth(t.over_udp(port, GARBAGE, v6=v6))]


PLAIN_NOISE = [eth(udp_ip(*t.OUT4, 40001, 9999))]  # an outer datagram beside the tunnel
GRE_NOISE = PLAIN_NOISE + [eth(t.over_ip(47, t.gre(0x88B5, GARBAGE * 8)))]  # GRE of an experimental EtherType
VX2 = ("198.51.100.1", "198.51.100.2")  # the endpoints of a tunnel inside a tunnel
WLAN_SKIPPED = t.wlan(tcp_ip(CLIENT[False], SERVER[False], 40009, 80, SYN, 9000), protected=True)


def E(wrap, v6=False, noise=PLAIN_NOISE, decode=(), kind=None):
    """An Ethernet (link type 1) case: ``wrap`` turns an inner IP packet into what follows
    the Ethernet header, of EtherType ``kind`` (None: IPv4 or IPv6, by its version)."""
    return 1, lambda p: eth(wrap(p), kind), v6, noise, decode


def L(linktype, wrap, v6=False, noise=(), decode=()):
    return linktype, wrap, v6, list(noise), decode


def _gre(p, **kw):
    return t.over_ip(47, t.gre(t.etype(p), p, **kw))


def G(wrap, v6=False):
    """A case of GRE over Ethernet, with GRE noise."""
    return E(wrap, v6, GRE_NOISE)


# name -> (link type, inner IP packet -> frame, inner IPv6?, noise frames, tshark decode-as)
CASES = {
    "gre": G(_gre),
    "gre-key": G(lambda p: _gre(p, key=42)),
    "gre-key-seq-csum": G(lambda p: _gre(p, key=42, seq=9, csum=True), v6=True),
    "gre-teb": G(lambda p: t.over_ip(47, t.gre(t.ETH_TEB, t.ether(p)))),
    "erspan-1": G(lambda p: t.over_ip(47, t.erspan1(t.ether(p)))),
    "erspan-2": G(lambda p: t.over_ip(47, t.erspan2(t.ether(p)))),
    "erspan-3": G(lambda p: t.over_ip(47, t.erspan3(t.ether(p)))),
    "erspan-3-platform": G(lambda p: t.over_ip(47, t.erspan3(t.ether(p), platform=True)), v6=True),
    "vxlan-4789": E(lambda p: t.over_udp(4789, t.vxlan(t.ether(p))), noise=outer(4789)),
    # tshark gives 8472 (Linux's old default) to no dissector: it has to be told
    "vxlan-8472": E(lambda p: t.over_udp(8472, t.vxlan(t.ether(p))), noise=outer(8472),
                    decode=("udp.port==8472,vxlan",)),
    "geneve": E(lambda p: t.over_udp(6081, t.geneve(t.ether(p))), noise=outer(6081)),
    "geneve-options": E(lambda p: t.over_udp(6081, t.geneve(t.ether(p), options=True)), noise=outer(6081)),
    "geneve-ip": E(lambda p: t.over_udp(6081, t.geneve(p, t.etype(p))), noise=outer(6081)),
    "geneve-ip-options": E(lambda p: t.over_udp(6081, t.geneve(p, t.etype(p), options=True)), v6=True,
                           noise=outer(6081)),
    "gtpu": E(lambda p: t.over_udp(2152, t.gtpu(p)), noise=outer(2152)),
    "gtpu-pdu-session": E(lambda p: t.over_udp(2152, t.gtpu(p, ext=[t.PDU_SESSION_UL])), noise=outer(2152)),
    "gtpu-two-extensions": E(lambda p: t.over_udp(2152, t.gtpu(p, ext=[t.UDP_PORT_EXT, t.PDU_SESSION_UL])),
                             v6=True, noise=outer(2152)),
    "4in4": E(t.ip_in_ip),
    "6in4": E(t.ip_in_ip, v6=True),
    "4in6": E(lambda p: t.ip_in_ip(p, v6=True)),
    "6in6": E(lambda p: t.ip_in_ip(p, v6=True), v6=True),
    "teredo": E(lambda p: t.over_udp(3544, t.teredo(p)), v6=True, noise=outer(3544)),
    "teredo-origin": E(lambda p: t.over_udp(3544, t.teredo(p, origin=True)), v6=True, noise=outer(3544)),
    "ayiya": E(lambda p: t.over_udp(5072, t.ayiya(p), sport=5072), v6=True, noise=outer(5072)),
    "mpls": E(t.mpls, kind=t.ETH_MPLS),
    "mpls-stack-of-3": E(lambda p: t.mpls(p, labels=(100, 200, 300)), v6=True, kind=t.ETH_MPLS),
    "mpls-pw-control-word": E(lambda p: t.mpls(t.ether(p), labels=(100, 200), cw=True), kind=t.ETH_MPLS),
    # an Ethernet pseudowire without a control word: the inner MAC's first nibble is 0 too
    "mpls-pw": E(lambda p: t.mpls(t.ether(p), labels=(100, 200)), kind=t.ETH_MPLS),
    "pppoe-ipv4": E(t.pppoe, kind=t.ETH_PPPOE),
    "pppoe-ipv6": E(t.pppoe, v6=True, kind=t.ETH_PPPOE),
    # 802.1ah: the backbone's B-TAG (0x88A8), then the I-TAG (0x88E7) and the customer's frame
    "pbb": L(1, lambda p: eth(t.pbb(t.ether(p)), t.ETH_PBB_I, vlans=[(t.ETH_PBB_B, 100)]), noise=PLAIN_NOISE),
    "llc-snap": L(1, t.llc_snap_8023, noise=PLAIN_NOISE),
    "fabricpath": L(1, lambda p: t.fabricpath(t.ether(p)), noise=PLAIN_NOISE),
    "vlan-in-vxlan-in-ipv6": E(lambda p: t.over_udp(4789, t.vxlan(t.ether(p, vlan=9)), v6=True), v6=True,
                               noise=outer(4789, v6=True)),
    "gre-in-vxlan": E(lambda p: t.over_udp(4789, t.vxlan(t.ether(t.over_ip(47, t.gre(t.etype(p), p), outer=VX2)))),
                      noise=outer(4789)),
    "mpls-in-gre": G(lambda p: t.over_ip(47, t.gre(t.ETH_MPLS, t.mpls(p, labels=(100, 200)))), v6=True),
    "nflog-ipv4": L(239, t.nflog, noise=[t.nflog(None)]),
    "nflog-ipv6": L(239, t.nflog, v6=True, noise=[t.nflog(None)]),
    "ppp": L(9, t.ppp, noise=[t.PPP_LCP_ECHO]),
    "ppp-hdlc": L(50, t.ppp, v6=True, noise=[t.PPP_LCP_ECHO]),
    "802.11": L(105, t.wlan, noise=[WLAN_SKIPPED]),
    "radiotap-802.11": L(127, lambda p: t.radiotap(t.wlan(p)), v6=True, noise=[t.radiotap(WLAN_SKIPPED)]),
    "ipoib": L(242, t.ipoib, noise=[t.ipoib(arp(), ETH_ARP)]),
}
PROTECTED = {"802.11": 1, "radiotap-802.11": 1}  # protected frames the reader must skip and count


def build(tmp_path, name) -> tuple:
    """The case's capture, and the TCP segments built into it as (frame number, time_ns, segment)."""
    linktype, wrap, v6, noise, _ = CASES[name]
    frames, built = [], []
    for offset, seg in attempts(v6):
        src, sport, dst, dport, flags, seq, ack = seg
        frames.append((T0 + offset, wrap(tcp_ip(src, dst, sport, dport, flags, seq, ack))))
        built.append((T0 + offset, seg))
    frames.append((T0 + 30 * MS, wrap(udp_ip(CLIENT[v6], SERVER[v6]))))  # not TCP
    frames += [(T0 + (40 + i) * MS, f) for i, f in enumerate(noise)]
    frames.sort(key=lambda f: f[0])  # the retried SYN comes last
    number = {time: i + 1 for i, (time, _) in enumerate(frames)}  # times are distinct
    built = [(number[time], time, seg) for time, seg in built]
    return write(tmp_path / f"{name}.pcap", pcap(frames, linktype=linktype)), built


def dissect(tshark, path, decode) -> list[tuple]:
    """tshark's innermost TCP segments: (frame number, time_ns, (src, sport, dst, dport, flags, seq, ack)).
    Address fields list every header's value, outer first: the innermost IP header
    is the last ip/ipv6 before tcp in frame.protocols, its address the last value.
    A frame tshark finds an error in (a malformed one, a length that lies) fails."""
    fields = ["frame.number", "frame.time_epoch", "_ws.expert.severity", "frame.protocols", "ip.src", "ip.dst",
              "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw"]
    cmd = [tshark, "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=/t"]
    cmd += [a for d in decode for a in ("-d", d)] + [a for f in fields for a in ("-e", f)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        number, epoch, severity, protocols, ip_src, ip_dst, ip6_src, ip6_dst, *tcp = line.split("\t")
        assert str(ERROR) not in severity.split(","), f"tshark finds an error in frame {number}: {protocols}"
        layers = protocols.split(":")
        last_ip = [p for p in layers[:layers.index("tcp")] if p in ("ip", "ipv6")][-1]
        src, dst = (ip_src, ip_dst) if last_ip == "ip" else (ip6_src, ip6_dst)
        sport, dport, flags, seq, ack = (v.split(",")[-1] for v in tcp)
        rows.append((int(number), int(Decimal(epoch) * 10**9),
                     (str(ipaddress.ip_address(src.split(",")[-1])), int(sport),
                      str(ipaddress.ip_address(dst.split(",")[-1])), int(dport), int(flags, 16), int(seq), int(ack))))
    return rows


def ours(path) -> list[tuple]:
    """hs's segments: (time_ns, (src, sport, dst, dport, flags, seq, ack))."""
    return [(int(r["time_ns"]), (str(address(r["src"].tobytes())), int(r["sport"]), str(address(r["dst"].tobytes())),
                                 int(r["dport"]), int(r["flags"]), int(r["seq"]), int(r["ack"])))
            for rows in CaptureReader(str(path)) for r in rows]


@pytest.mark.parametrize("name", list(CASES))
def test_tshark_sees_the_segments_built(tshark, tmp_path, name):
    """The independent reference: tshark finds in each frame the inner segment built there, and nothing else."""
    path, built = build(tmp_path, name)
    assert dissect(tshark, path, CASES[name][4]) == built


@pytest.mark.parametrize("name", list(CASES))
def test_hs_reads_what_tshark_dissects(tshark, tmp_path, name):
    """hs's reader finds tshark's segments, in order, to the nanosecond, with the innermost addresses."""
    path, _ = build(tmp_path, name)
    assert ours(path) == [(time, seg) for _, time, seg in dissect(tshark, path, CASES[name][4])]


@pytest.mark.parametrize("name", list(CASES))
def test_hs_scores_the_inner_attempts(tmp_path, name):
    """Notes and outcomes of the three attempts, each attempt named by its inner addresses."""
    path, _ = build(tmp_path, name)
    v6 = CASES[name][2]
    closed = []
    summary = score_files([path], on_close=closed.append)
    assert (summary.notes, summary.handshakes) == (EXPECTED_NOTES, EXPECTED_OUTCOMES)
    c, s = CLIENT[v6], SERVER[v6]
    assert sorted((h.client, h.server, h.outcome) for h in closed) == [
        ((c, 40001), (s, 80), "complete"), ((c, 40002), (s, 81), "refused"), ((c, 40003), (s, 80), "unanswered")]
    assert summary.files[0].protected == PROTECTED.get(name, 0)


@pytest.mark.parametrize("name", ["vlan-in-vxlan-in-ipv6", "erspan-3-platform", "radiotap-802.11"])
def test_cli_scores_the_inner_attempts(tmp_path, name):
    """``hs score --json`` as a user runs it: same notes, nothing written."""
    path, _ = build(tmp_path, name)
    r = subprocess.run([sys.executable, "-m", "handshake_score", "score", str(path), "--json", "--no-write"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["notes"], got["handshakes"]) == (EXPECTED_NOTES, EXPECTED_OUTCOMES)
    assert not (tmp_path / "scores").exists()
