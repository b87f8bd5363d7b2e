"""The fast reader looks inside tunnels: one crafted frame per encapsulation, each
read by CaptureReader and by tshark, whose innermost addresses must agree with
the ones the frame was built around. Then the context values, the port
options, fragments and depth.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from craft import ACK, MAC_A, MAC_B, SYN, Pcapng, eth, ipv4, ipv6, null, pcap, sll, sll2, tcp_ip, udp, write
from handshake_score.segments import SEGMENT, SEGMENT_IN_CONTEXT, address_text
from handshake_score.sources import CaptureReader
from handshake_score.sources.decoding import Decapsulation

T0 = 1_700_000_000_000_000_000
OUT4, OUT6 = ("192.0.2.1", "192.0.2.2"), ("2001:db8:ffff::1", "2001:db8:ffff::2")


def inner(k: int, v6=False, flags=SYN, back=False) -> bytes:
    """Case ``k``'s inner TCP segment (its own addresses and ports), 5 bytes of payload."""
    a, b = (f"2001:db8:{k}::1", f"2001:db8:{k}::2") if v6 else (f"10.{k}.0.1", f"10.{k}.0.2")
    if back:
        return tcp_ip(b, a, 80, 40000 + k, flags, 7, 2, b"hello")
    return tcp_ip(a, b, 40000 + k, 80, flags, 1, 0, b"hello")


INNER_MACS = bytes.fromhex("001b213a4b5c" "0025906d7e8f")  # vendors' OUIs, as tshark's heuristics expect


def frame(pkt: bytes) -> bytes:
    """An inner Ethernet frame, unpadded (padding would grow the outer length fields)."""
    return INNER_MACS + struct.pack("!H", 0x86DD if pkt[0] >> 4 == 6 else 0x0800) + pkt


def gre(proto: int, body: bytes, c=False, k=False, s=False) -> bytes:
    flags = c << 15 | k << 13 | s << 12
    opt = (b"\0\0\0\0" if c else b"") + (struct.pack("!I", 42) if k else b"") + (struct.pack("!I", 9) if s else b"")
    return struct.pack("!HH", flags, proto) + opt + body


def in4(proto: int, body: bytes, outer=OUT4) -> bytes:
    return ipv4(*outer, proto, body)


def in6(proto: int, body: bytes) -> bytes:
    return ipv6(*OUT6, proto, body)


def over_udp(dport: int, body: bytes, sport=51234) -> bytes:
    return in4(17, udp(*OUT4, sport, dport, body))


def mpls(body: bytes, labels=(100, 200)) -> bytes:
    return b"".join(struct.pack("!I", lab << 12 | (i == len(labels) - 1) << 8 | 64) for i, lab in enumerate(labels)) + body


def vxlan(body: bytes, vni=77) -> bytes:
    return struct.pack("!II", 0x08000000, vni << 8) + body


def gtp(body: bytes) -> bytes:
    """GTP-U G-PDU with E and S flags, one extension header (PDU session container, 4 bytes)."""
    ext = bytes([1, 0x00, 0x09, 0])  # length 1 (x4), content, next type 0
    head = struct.pack("!BBHIHBB", 0x36, 0xFF, 4 + len(ext) + len(body), 0x1234, 5, 0, 0x85)
    return head + ext + body


def teredo(body: bytes) -> bytes:
    return struct.pack("!HH4s", 0, 0x1234 ^ 0xFFFF, bytes([63, 255, 255, 254])) + body  # origin indication


def ayiya(body: bytes, nh=41) -> bytes:
    """Identity 16 bytes (2^4), signature 20 bytes (5 x 4), opcode 1 (forward)."""
    return bytes([0x41, 0x52, 0x21, nh]) + struct.pack("!I", 1_700_000_000) + b"\x20" * 16 + b"\x5a" * 20 + body


def erspan2(body: bytes) -> bytes:
    return struct.pack("!HHI", 0x1000 | 10, 0x0001, 0) + body  # version 1, VLAN 10; session 1


def erspan3(body: bytes) -> bytes:
    """Version 2, then timestamp, SGT and flags with O (platform subheader follows)."""
    return struct.pack("!HHIHH", 0x2000 | 10, 0x0001, 123456, 0, 0x0001) + struct.pack("!II", 0x00000001, 99) + body


# name -> (Ethernet frame, case number, inner IPv6?)
CASES = {
    "vlan": (eth(inner(1), vlans=[(0x8100, 5)]), 1, False),
    "llc-snap": (MAC_B + MAC_A + struct.pack("!H", 8 + len(inner(2))) + bytes.fromhex("aaaa03000000") + b"\x08\x00"
                 + inner(2), 2, False),
    "mpls": (eth(mpls(inner(3)), 0x8847), 3, False),
    "mpls-pw": (eth(mpls(b"\0\0\0\0" + frame(inner(4))), 0x8847), 4, False),
    "mpls-pw-no-control-word": (eth(mpls(frame(inner(26))), 0x8847), 26, False),
    "pppoe": (eth(struct.pack("!BBHHH", 0x11, 0, 7, 2 + len(inner(5)), 0x0021) + inner(5), 0x8864), 5, False),
    "pbb": (eth(struct.pack("!I", 0x00012345) + frame(inner(6)), 0x88E7), 6, False),
    "fabricpath": (eth(struct.pack("!H", 0x0401) + frame(inner(25)), 0x8903), 25, False),
    "gre": (eth(in4(47, gre(0x0800, inner(7)))), 7, False),
    "gre-key-seq-csum": (eth(in4(47, gre(0x86DD, inner(8, v6=True), c=True, k=True, s=True))), 8, True),
    "gretap": (eth(in4(47, gre(0x6558, frame(inner(9))))), 9, False),
    "erspan-1": (eth(in4(47, gre(0x88BE, frame(inner(10))))), 10, False),
    "erspan-2": (eth(in4(47, gre(0x88BE, erspan2(frame(inner(11))), s=True))), 11, False),
    "erspan-3": (eth(in4(47, gre(0x22EB, erspan3(frame(inner(12))), s=True))), 12, False),
    "4in4": (eth(in4(4, inner(13))), 13, False),
    "6in4": (eth(in4(41, inner(14, v6=True))), 14, True),
    "4in6": (eth(in6(4, inner(15))), 15, False),
    "6in6": (eth(in6(41, inner(16, v6=True))), 16, True),
    "vxlan": (eth(over_udp(4789, vxlan(eth(inner(17), vlans=[(0x8100, 7)])))), 17, False),
    "vxlan-8472": (eth(over_udp(8472, vxlan(frame(inner(18))))), 18, False),
    "geneve": (eth(over_udp(6081, struct.pack("!BBHI", 2, 0, 0x6558, 5 << 8) + struct.pack("!HBBI", 0x0102, 3, 1, 0xAB)
                            + frame(inner(19)))), 19, False),
    "gtp-u": (eth(over_udp(2152, gtp(inner(20)), sport=2152)), 20, False),
    "teredo": (eth(over_udp(3544, teredo(inner(21, v6=True)), sport=3544)), 21, True),
    "ayiya": (eth(over_udp(5072, ayiya(inner(22, v6=True)), sport=5072)), 22, True),
    "vlan-in-vxlan-in-ipv6": (eth(in6(17, udp(*OUT6, 50000, 4789, vxlan(eth(inner(23, v6=True),
                                                                             vlans=[(0x8100, 9)]))))), 23, True),
    "gre-in-gre": (eth(in4(47, gre(0x0800, in4(47, gre(0x0800, inner(24)), ("198.51.100.1", "198.51.100.2"))))),
                   24, False),
}


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("decap") / "cases.pcap"
    return write(path, pcap([(T0 + i * 1000, data) for i, (data, _, _) in enumerate(CASES.values())]))


def read(path, **kw) -> np.ndarray:
    got = [s.copy() for s in CaptureReader(str(path), decapsulation=Decapsulation(**kw))]
    return np.concatenate(got)


def expected(k: int, v6: bool):
    return (f"2001:db8:{k}::1", f"2001:db8:{k}::2") if v6 else (f"10.{k}.0.1", f"10.{k}.0.2")


@pytest.mark.parametrize("name", list(CASES))
def test_each_encapsulation(tmp_path, name):
    """Every encapsulation yields its inner segment: inner addresses, ports, flags, payload."""
    data, k, v6 = CASES[name]
    seg = read(write(tmp_path / "one.pcap", pcap([(T0, data)])))
    assert len(seg) == 1
    assert (address_text(seg["src"][0]), address_text(seg["dst"][0])) == expected(k, v6)
    assert (seg["sport"][0], seg["dport"][0], seg["flags"][0], seg["payload"][0]) == (40000 + k, 80, SYN, 5)


def test_tshark_sees_the_same_inner_packets(tshark, capture):
    """tshark's innermost IP source and TCP port in each frame are the ones hs reads."""
    out = subprocess.run([tshark, "-r", str(capture), "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "occurrence=l", "-e", "ip.src",
                          "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "frame.protocols"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    seg = read(capture)
    ours = [(address_text(s), str(p)) for s, p in zip(seg["src"], seg["sport"])]
    theirs = []
    for line, (name, (_, k, v6)) in zip(out, CASES.items()):
        v4src, v6src, port, protocols = line.split("\t")
        # occurrence=l gives the last of each field; the innermost family is the one built
        theirs.append((v6src if v6 else v4src, port))
        assert port == str(40000 + k), (name, protocols)
    assert ours == theirs


def test_context(tmp_path):
    """Both directions share a context; another VLAN or tunnel endpoint makes another; none is 0."""
    vx = lambda pkt, outer=OUT4: eth(in4(17, udp(*outer, 5000, 4789, vxlan(frame(pkt))), outer))  # noqa: E731
    frames = [
        eth(inner(1)),                                              # plain: 0
        eth(inner(1), vlans=[(0x8100, 5)]),                         # VLAN 5
        eth(inner(1, flags=SYN | ACK, back=True), vlans=[(0x8100, 0x2005)]),  # VLAN 5 (priority 1), back
        eth(inner(1), vlans=[(0x8100, 6)]),                         # VLAN 6
        vx(inner(1)),                                               # VXLAN between OUT4
        vx(inner(1, flags=SYN | ACK, back=True), OUT4[::-1]),       # its reply, outer reversed
        vx(inner(1), ("192.0.2.1", "192.0.2.9")),                   # another tunnel endpoint
    ]
    path = write(tmp_path / "ctx.pcap", pcap([(T0 + i * 1000, f) for i, f in enumerate(frames)]))
    batch = next(CaptureReader(str(path), decapsulation=Decapsulation(context=True)).batches())
    assert len(batch) == len(frames)
    ctx = batch.context(np.arange(len(batch)))
    assert ctx[0] == 0 and ctx[1] == ctx[2] != 0 and ctx[3] not in (0, ctx[1])
    assert ctx[4] == ctx[5] and ctx[4] not in (0, ctx[1], ctx[3]) and ctx[6] not in (0, ctx[4])
    plain = next(CaptureReader(str(path)).batches())
    assert plain.context(np.arange(len(plain))) is None
    rows = batch.select()
    assert rows.dtype == SEGMENT_IN_CONTEXT and plain.select().dtype == SEGMENT
    assert all(np.array_equal(rows[f], plain.select()[f]) for f in SEGMENT.names)
    assert np.array_equal(rows["context"], ctx)
    assert all(bytes(k) == bytes(f) + int(c).to_bytes(8, "little") for k, f, c in zip(rows["key"], rows["flow"], ctx))


# --- --vlan-key: the context in the attempt's key ------------------------------------

C, S = ("10.9.0.1", 40000), ("10.9.0.2", 443)


def handshake_frames(t0: int, there=(), back=(), isn=1000) -> list:
    """A complete handshake C -> S as Ethernet frames, the client's tagged with VLANs
    ``there`` and the server's with ``back``."""
    def tagged(pkt, vids):
        return eth(pkt, vlans=[(0x8100, v) for v in vids])
    return [(t0, tagged(tcp_ip(C[0], S[0], C[1], S[1], SYN, isn), there)),
            (t0 + 10**6, tagged(tcp_ip(S[0], C[0], S[1], C[1], SYN | ACK, 5000 + isn, isn + 1), back)),
            (t0 + 2 * 10**6, tagged(tcp_ip(C[0], S[0], C[1], S[1], ACK, isn + 1, 5001 + isn), there))]


def score_json(path, *args) -> dict:
    """``hs score --json``'s summary, with ``attempts``: the attempts the rhythm counted."""
    r = subprocess.run([sys.executable, "-m", "handshake_score", "score", "--no-write", "--json", str(path), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    summary = json.loads(r.stdout)
    summary["handshakes"]["attempts"] = summary["rhythm"]["attempts"]
    return summary


@pytest.mark.parametrize("gap_ns", [50_000, 3 * 10**9])  # a mirrored copy, or the same four-tuple again later
def test_vlan_key_keeps_the_same_four_tuple_on_two_vlans_apart(tmp_path, gap_ns):
    """Routed between two VLANs, one connection is seen twice: one attempt (its copies
    merged) by default, two complete ones with --vlan-key, each note on its own."""
    records = sorted(handshake_frames(T0, (10,), (10,)) + handshake_frames(T0 + gap_ns, (20,), (20,)))
    path = write(tmp_path / "two-vlans.pcap", pcap(records, nano=True))
    merged, apart = score_json(path), score_json(path, "--vlan-key")
    assert merged["handshakes"]["attempts"] == 1 and merged["handshakes"]["complete"] == 1
    assert apart["handshakes"]["attempts"] == 2 and apart["handshakes"]["complete"] == 2
    assert apart["notes"]["syn"] == apart["notes"]["syn-ack"] == apart["notes"]["ack"] == 2


def test_vlan_key_splits_a_conversation_whose_directions_take_two_vlans(tmp_path):
    """The key is the place, so asymmetric routing (out on VLAN 10, back on 20) completes
    only without --vlan-key: which is why it is not the default."""
    path = write(tmp_path / "asymmetric.pcap", pcap(handshake_frames(T0, (10,), (20,)), nano=True))
    assert score_json(path)["handshakes"]["complete"] == 1
    apart = score_json(path, "--vlan-key")["handshakes"]
    assert apart["attempts"] == 1 and apart["complete"] == 0


def test_vlan_key_gives_the_same_notes_whatever_the_batching(tmp_path):
    """The tracker's context keys hold per packet: fed one segment at a time or all at
    once (through the prefilter), the same notes."""
    from handshake_score.tracker import HandshakeTracker

    records = []
    for k in range(40):  # the same four-tuple on VLANs 10..13, repeated
        records += handshake_frames(T0 + k * 10**7, (10 + k % 4,), (10 + k % 4,), isn=1000 + 7919 * k)
    path = write(tmp_path / "many.pcap", pcap(sorted(records), nano=True))
    batch = next(CaptureReader(str(path), decapsulation=Decapsulation(context=True)).batches())
    whole, one = HandshakeTracker(), HandshakeTracker()
    notes_whole = [(n.time_ns, n.kind, n.handshake.id) for n in whole.feed_batch(batch)]
    rows = batch.select()
    notes_one = [(n.time_ns, n.kind, n.handshake.id) for i in range(len(rows)) for n in one.feed(rows[i:i + 1])]
    assert notes_whole == notes_one
    assert sum(kind == "ack" for _, kind, _ in notes_whole) == 40


def test_tunnel_ports_are_options(tmp_path):
    """VXLAN on a port of the user's: read only when the option names it."""
    path = write(tmp_path / "port.pcap", pcap([(T0, eth(over_udp(9999, vxlan(frame(inner(3))))))]))
    assert len(read(path)) == 0
    seg = read(path, vxlan_ports=(9999,))
    assert address_text(seg["src"][0]) == "10.3.0.1"


def test_fragmented_tunnels_are_skipped(tmp_path):
    """An outer packet with more fragments, or a later fragment, is not reassembled: no segment."""
    body = gre(0x0800, inner(4))
    frames = [eth(ipv4(*OUT4, 47, body, mf=True, df=False)), eth(ipv4(*OUT4, 47, body, offset=8, df=False)),
              eth(ipv6(*OUT6, 41, inner(5, v6=True), ext=((44, 0, 1),)))]
    path = write(tmp_path / "frag.pcap", pcap([(T0 + i * 1000, f) for i, f in enumerate(frames)]))
    assert len(read(path)) == 0


def test_depth(tmp_path):
    """Tunnels nest as deep as ``max_depth`` allows, and a loop of them ends there."""
    pkt = inner(6)
    for _ in range(3):  # IPv4 and GRE: a step each, and the inner IPv4 one more: 7
        pkt = in4(47, gre(0x0800, pkt))
    path = write(tmp_path / "deep.pcap", pcap([(T0, eth(pkt))]))
    assert len(read(path)) == 1
    assert len(read(path, max_depth=6)) == 0 and len(read(path, max_depth=7)) == 1


def test_tunnels_behind_every_link_type(tmp_path):
    """A pcapng whose interfaces have different link types, a tunnel behind each (and a plain
    segment between them): each found, in record order."""
    n = Pcapng().section()
    ifaces = {lt: n.interface(lt, tsresol=9) for lt in (1, 101, 113, 276, 0)}
    packets = [(1, CASES["vxlan"][0]), (101, in4(47, gre(0x0800, inner(2)))), (1, eth(inner(3))),
               (113, sll(mpls(inner(4)), 0x8847)), (276, sll2(in6(4, inner(5)))), (0, null(in4(4, inner(6))))]
    for i, (lt, data) in enumerate(packets):
        n.epb(ifaces[lt], T0 + i * 1000, data)
    seg = read(write(tmp_path / "links.pcapng", n.bytes()))
    assert [address_text(a) for a in seg["src"]] == ["10.17.0.1"] + [f"10.{k}.0.1" for k in range(2, 7)]


def test_zero_ip_length_inside_a_tunnel(tmp_path):
    """An inner IPv4 length of 0 (segmentation offload on the mirrored host): the payload comes
    from the wire length less the bytes before the inner IP header and the inner headers."""
    pkt = bytearray(inner(8))
    pkt[2:4] = b"\0\0"
    data = eth(in4(47, gre(0x6558, frame(bytes(pkt)))))
    seg = read(write(tmp_path / "tso.pcap", pcap([(T0, data)])))
    assert len(seg) == 1 and seg["payload"][0] == 5
