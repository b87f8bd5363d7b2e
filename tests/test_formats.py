"""Every capture format variant and link type the reader supports.

Each test crafts a capture with ``craft.py`` (independent of the package),
reads it with :class:`CaptureReader` and compares every TCP segment with what
was written; where tshark reads the file, its dissection must agree too.
A row is ``(time_ns, src, sport, dst, dport, flags, seq, ack, payload)``.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from decimal import Decimal

import numpy as np
import pytest

from craft import (ACK, AE, CWR, ECE, ETH_ARP, ETH_QINQ, ETH_VLAN, ETH_9100, FCS_4, IP_OPTIONS, PSH, SYN,
                   SYN_OPTIONS, Pcapng, arp, eth, frame, ipv4, ipv6, loop, null, pcap, pcap_header, sll, sll2, tcp,
                   tcp_ip, udp_ip, write)
from handshake_score.segments import SEGMENT, address, address_text, flow_endpoints
from handshake_score.sources import CaptureReader

T0 = 1_700_000_000_123_456_789        # odd nanoseconds: a float would lose them
STEPS = (127_521_774, 87_895, 1_003)  # SYN->SYN-ACK, SYN-ACK->ACK, ACK->data
V4, V6 = ("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")
EXT = (0, 43, 60, 51)                 # hop-by-hop, routing, destination options, AH


def handshake(c, s, t0=T0, q=1, steps=STEPS, cport=40000, sport=80, isn=(1000, 5000), syn_flags=SYN, **ip):
    """SYN, SYN-ACK, ACK and a 37-byte data segment, times floored to multiples of
    ``q`` ns: ``[(time_ns, IP packet)]`` and the rows a reader must give for them."""
    times = [t0]
    for d in steps:
        times.append(times[-1] + d)
    ic, is_ = isn
    ic1, is1 = (ic + 1) % 2**32, (is_ + 1) % 2**32
    segs = [(c, cport, s, sport, syn_flags, ic, 0, b"", SYN_OPTIONS),
            (s, sport, c, cport, SYN | ACK, is_, ic1, b"", SYN_OPTIONS),
            (c, cport, s, sport, ACK, ic1, is1, b"", b""),
            (c, cport, s, sport, PSH | ACK, ic1, is1, b"d" * 37, b"")]
    pkts, rows = [], []
    for t, (a, ap, b, bp, f, sq, ak, pl, o) in zip(times, segs):
        t = t // q * q
        pkts.append((t, tcp_ip(a, b, ap, bp, f, sq, ak, pl, tcp_options=o, **ip)))
        rows.append((t, a, ap, b, bp, f, sq, ak, len(pl)))
    return pkts, rows


def rows_of(seg: np.ndarray) -> list[tuple]:
    out = []
    for r in seg:
        (a, ap), (b, bp) = flow_endpoints(r["flow"].tobytes())
        # src/dst/sport/dport are the same bytes as flow, seen field by field
        assert (str(address(r["src"].tobytes())), int(r["sport"]), str(address(r["dst"].tobytes())),
                int(r["dport"])) == (a, ap, b, bp)
        out.append((int(r["time_ns"]), a, ap, b, bp, int(r["flags"]), int(r["seq"]), int(r["ack"]), int(r["payload"])))
    return out


def read(path, **kw):
    """(reader, rows) after iterating the whole capture."""
    reader = CaptureReader(str(path), **kw)
    chunks = list(reader)
    assert all(isinstance(c, np.ndarray) and c.dtype == SEGMENT for c in chunks)
    return reader, rows_of(np.concatenate(chunks) if chunks else np.zeros(0, SEGMENT))


def check(path, rows, packets, **kw):
    """The reader gives exactly ``rows`` and counts ``packets`` records, nothing truncated."""
    reader, got = read(path, **kw)
    assert got == rows
    assert reader.packets == packets
    assert reader.truncated_at is None
    return got


FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
          "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len"]


def tshark_dissect(tshark, path) -> tuple[list[tuple], int]:
    """tshark's TCP segments (reassembly off) as rows, and its count of frames;
    None where tshark has no value (the time of an SPB, the TCP payload length
    of a fragment)."""
    cmd = [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
           "-T", "fields", "-E", "occurrence=f"]
    out = subprocess.run(cmd + [x for f in FIELDS for x in ("-e", f)], capture_output=True, text=True, check=True)
    rows, lines = [], out.stdout.splitlines()
    for line in lines:
        t, s4, s6, sp, d4, d6, dp, fl, sq, ak, ln = line.split("\t")
        if fl:  # a TCP header through the flags
            rows.append((int(Decimal(t) * 10**9) if t else None, str(ipaddress.ip_address(s4 or s6)), int(sp),
                         str(ipaddress.ip_address(d4 or d6)), int(dp), int(fl, 16), int(sq), int(ak or 0),
                         int(ln) if ln else None))
    return rows, len(lines)


def agree(tshark, path, rows):
    theirs = tshark_dissect(tshark, path)[0]
    assert len(theirs) == len(rows)
    for mine, t in zip(rows, theirs):
        assert tuple(m if x is None else x for m, x in zip(mine, t)) == mine


# --- classic pcap: every link type, both magics, both byte orders -------------

LINKTYPES = {1: "46", 113: "46", 276: "46", 0: "46", 108: "46", 101: "46", 12: "46", 14: "46", 228: "4", 229: "6"}


def mixed(linktype, order="<", q=1, families="46", **fkw):
    """An IPv4 handshake (IPv4 options, AccECN SYN flags) and an IPv6 one
    (extension header chain) framed for ``linktype``, with UDP/ARP noise:
    records and expected rows."""
    recs, rows = [], []

    def add(pkts, expect=()):
        recs.extend((t // q * q, frame(linktype, p, order, **fkw)) for t, p in pkts)
        rows.extend(expect)

    if "4" in families:
        add(*handshake(*V4, q=q, ip_options=IP_OPTIONS, syn_flags=SYN | ECE | CWR | AE))
        add([(T0 + 500_000_000, udp_ip("10.0.0.3", "10.0.0.4"))])
    if linktype in (1, 113, 276):
        recs.append((T0 // q * q + 600_000_000, frame(linktype, arp(), order, etype=ETH_ARP, **fkw)))
    if "6" in families:
        add(*handshake(*V6, t0=T0 + 10**9, q=q, cport=40001, sport=443, isn=(0xFFFFFFFF, 0x80000000), ext=EXT))
        add([(T0 + 2 * 10**9, udp_ip("2001:db8::3", "2001:db8::4"))])
    return recs, rows


@pytest.mark.parametrize("nano,order", [(False, "<"), (True, "<"), (False, ">"), (True, ">")],
                         ids=["us-le", "ns-le", "us-be", "ns-be"])
@pytest.mark.parametrize("linktype", list(LINKTYPES))
def test_pcap_link_types(tmp_path, tshark, linktype, nano, order):
    recs, rows = mixed(linktype, order, q=1 if nano else 1000, families=LINKTYPES[linktype])
    path = write(tmp_path / "f.pcap", pcap(recs, linktype, nano, order))
    check(path, rows, len(recs))
    agree(tshark, path, rows)


@pytest.mark.parametrize("vlans", [(), ((ETH_VLAN, 10),), ((ETH_QINQ, 100), (ETH_VLAN, 200)),
                                   ((ETH_9100, 5), (ETH_VLAN, 6)), ((ETH_VLAN, 1), (ETH_VLAN, 2))],
                         ids=["untagged", "8021q", "qinq-88a8", "qinq-9100", "double-8100"])
@pytest.mark.parametrize("fcs", [False, True], ids=["", "fcs"])
def test_ethernet_vlans_and_fcs_bits(tmp_path, tshark, vlans, fcs):
    """VLAN tags of every TPID; the link type with FCS bits set in its upper
    16 bits (frames then end in a 4-byte FCS) is still Ethernet."""
    recs, rows = mixed(1, "<", vlans=vlans, fcs=fcs)
    path = write(tmp_path / "f.pcap", pcap(recs, 1 | FCS_4 if fcs else 1, nano=True))
    check(path, rows, len(recs))
    agree(tshark, path, rows)


@pytest.mark.parametrize("family", [24, 28, 30])
@pytest.mark.parametrize("linktype,order", [(0, "<"), (0, ">"), (108, "<"), (108, ">")],
                         ids=["null-le", "null-be", "loop-le", "loop-be"])
def test_loopback_ipv6_families(tmp_path, tshark, linktype, order, family):
    """NULL's family is in the file's (capturing host's) byte order, LOOP's in network order."""
    p, rows = handshake(*V6, ext=EXT)
    recs = [(t, null(x, order, family) if linktype == 0 else loop(x, family)) for t, x in p]
    recs.insert(1, (T0 + 1, null(b"\x00" * 40, order, 7) if linktype == 0 else loop(b"\x00" * 40, 7)))  # not IP
    path = write(tmp_path / "f.pcap", pcap(recs, linktype, nano=True, order=order))
    check(path, rows, len(recs))
    agree(tshark, path, rows)


def test_pcap_unsigned_seconds(tmp_path, tshark):
    """pcap seconds are unsigned 32-bit: times after 2038 stay positive."""
    pkt = eth(tcp_ip(*V4, 1, 2, SYN, 7))
    for nano, frac in ((False, 999_999), (True, 999_999_999)):
        data = pcap_header(1, nano) + struct.pack("<IIII", 0xFFFFFFFF, frac, len(pkt), len(pkt)) + pkt
        path = write(tmp_path / f"f{nano}.pcap", data)
        t = 0xFFFFFFFF * 10**9 + (frac if nano else frac * 1000)
        rows = check(path, [(t, V4[0], 1, V4[1], 2, SYN, 7, 0, 0)], 1)
        agree(tshark, path, rows)


# --- pcapng ---------------------------------------------------------------------

Q20 = 1_953_125  # ns per 2048 ticks of 2^-20 s: times exact in that resolution


def multi_section():
    """Three sections (LE, BE, LE), seven interfaces with different link types,
    resolutions and offsets, EPB/SPB/OPB, NRB/ISB/unknown blocks interleaved:
    (file bytes, expected rows, packet records)."""
    n, rows, count = Pcapng(), [], 0

    def put(kind, iface, pkts, fr, expect=()):
        nonlocal count
        for t, p in pkts:
            getattr(n, kind)(iface, t, fr(p))
        count += len(pkts)
        rows.extend(expect)

    def spb(data, row):
        nonlocal count
        n.spb(data)
        count += 1
        rows.append(row)

    # Section 1, little-endian.
    n.section("<")
    e = n.interface(1, tsresol=9)                                  # 10^-9
    r = n.interface(101, tsresol=0x80 | 20, tsoffset=1_000_000)    # 2^-20, +10^6 s
    s = n.interface(113)                                           # default 10^-6
    n.nrb()
    n.unknown()
    p, x = handshake(*V4, ip_options=IP_OPTIONS)
    put("epb", e, p[:2], eth, x[:2])
    n.isb(e)
    put("epb", e, p[2:], eth, x[2:])
    p, x = handshake(*V6, t0=1_700_000_100 * 10**9, steps=(64 * Q20, 3 * Q20, Q20), ext=EXT, cport=5000)
    put("epb", r, p, lambda y: y, x)
    noise = T0 + 5_000_000_007
    put("epb", e, [(noise, udp_ip("10.0.0.3", "10.0.0.4"))], eth)
    # SPB: the time of the previous packet (the UDP one)
    spb(eth(tcp_ip(*V4, 40002, 80, SYN, 42)), (noise, V4[0], 40002, V4[1], 80, SYN, 42, 0, 0))
    p, x = handshake("192.168.1.1", "192.168.1.2", t0=T0 + 6 * 10**9, q=1000)
    put("opb", s, p, sll, x)
    n.unknown(0x00000BAD)

    # Section 2, big-endian: interface numbers start again at 0.
    n.section(">", opts=())
    nl = n.interface(0)                                            # 10^-6, family in BE
    lp = n.interface(108, tsresol=3, tsoffset=-5)                  # 10^-3, -5 s
    # SPB, first packet of its section: time 0
    spb(null(tcp_ip(*V6, 40003, 22, SYN, 43), ">"), (0, V6[0], 40003, V6[1], 22, SYN, 43, 0, 0))
    p, x = handshake("172.16.0.1", "172.16.0.2", t0=T0 + 7 * 10**9, q=1000)
    put("epb", nl, p, lambda y: null(y, ">"), x)
    n.unknown(0x80000001)
    p, x = handshake(*V6, t0=T0 + 8 * 10**9, q=10**6, steps=(10**6, 2 * 10**6, 0), cport=40004)
    put("epb", lp, p, loop, x)
    n.nrb()

    # Section 3, little-endian again, stating its length instead of -1.
    n.section("<")
    s2 = n.interface(276, tsresol=6)
    e2 = n.interface(1, tsresol=9, tsoffset=2)
    p, x = handshake(*V4, t0=T0 + 9 * 10**9, q=1000, cport=40005)
    put("epb", s2, p, sll2, x)
    put("epb", e2, [(T0 + 10 * 10**9 + 1, udp_ip("10.0.0.3", "10.0.0.4"))], eth)
    # SPB after a packet of interface 1: that packet's time
    spb(sll2(tcp_ip(*V4, 40006, 80, SYN, 44)), (T0 + 10 * 10**9 + 1, V4[0], 40006, V4[1], 80, SYN, 44, 0, 0))
    n.seal()
    return n.bytes(), rows, count


def test_pcapng_sections_interfaces_blocks(tmp_path, tshark):
    data, rows, count = multi_section()
    path = write(tmp_path / "f.pcapng", data)
    check(path, rows, count)
    agree(tshark, path, rows)


@pytest.mark.parametrize("orders", ["<><", "><>", "<<>"])
def test_pcapng_sections_change_byte_order(tmp_path, tshark, orders):
    """Each section has its own byte order; one handshake per section."""
    n, rows = Pcapng(), []
    for k, order in enumerate(orders):
        n.section(order)
        i = n.interface(1, tsresol=9)
        p, r = handshake(*V4, t0=T0 + k * 10**9, cport=40000 + k)
        for t, x in p:
            n.epb(i, t, eth(x))
        rows += r
    path = write(tmp_path / "f.pcapng", n.bytes())
    check(path, rows, 12)
    agree(tshark, path, rows)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_simple_packet_block_times(tmp_path, order):
    """An SPB takes the time of the previous packet of its section (any
    interface, TCP or not), or 0 when it is the section's first packet."""
    n = Pcapng().section(order)
    i = n.interface(1, tsresol=9)
    n.spb(eth(tcp_ip(*V4, 1, 80, SYN, 1)))                       # first of section 1: 0
    n.epb(i, T0, eth(udp_ip("10.0.0.3", "10.0.0.4")))
    n.spb(eth(tcp_ip(*V4, 2, 80, SYN, 2)))                       # after the UDP packet: T0
    n.section(order)
    i0 = n.interface(1, tsresol=9)
    i1, T1 = n.interface(101, tsresol=6), T0 // 1000 * 1000 + 5000
    n.spb(eth(tcp_ip(*V4, 3, 80, SYN, 3)))                       # first of section 2: 0, not T0
    n.epb(i1, T1, tcp_ip(*V4, 4, 80, SYN, 4))
    n.spb(eth(tcp_ip(*V4, 5, 80, SYN, 5)))                       # after a packet of interface 1
    n.epb(i0, T0 + 7, eth(tcp_ip(*V4, 6, 80, SYN, 6)))
    rows = [(t, V4[0], k, V4[1], 80, SYN, k, 0, 0) for k, t in
            [(1, 0), (2, T0), (3, 0), (4, T1), (5, T1), (6, T0 + 7)]]
    check(write(tmp_path / "f.pcapng", n.bytes()), rows, 7)


def test_pcapng_binary_resolution_rounding(tmp_path):
    """2^-20 s ticks that are not whole nanoseconds: within 1 ns of the exact time,
    computed in integers (a float of 1.7e18 ns is off by up to 128 ns)."""
    n = Pcapng().section("<")
    i = n.interface(101, tsresol=0x80 | 20)
    ticks = [1, 1_700_000_000 * 2**20 + 12345, 1_700_000_000 * 2**20 + 2**20 - 1]
    for k, tk in enumerate(ticks):
        n.epb(i, 0, tcp_ip(*V4, 1000 + k, 80, SYN, k), ticks=tk)
    reader, got = read(write(tmp_path / "f.pcapng", n.bytes()))
    assert [g[2] for g in got] == [1000, 1001, 1002]
    for g, tk in zip(got, ticks):
        exact = Decimal(tk) * 10**9 / 2**20
        assert abs(g[0] - exact) < 1


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_byte_orders_and_obsolete_blocks(tmp_path, tshark, order):
    """One section of either byte order; the same handshake once as EPBs, once as OPBs."""
    n = Pcapng().section(order)
    i = n.interface(1, tsresol=9)
    j = n.interface(229, tsresol=0x80 | 30)  # 2^-30 s ticks; whole seconds are exact
    p, rows = handshake(*V4)
    for t, x in p:
        n.epb(i, t, eth(x))
    p2, rows2 = handshake(*V6, t0=1_800_000_000 * 10**9, q=10**9, steps=(10**9, 10**9, 10**9), ext=((44, 0, 0),))
    for t, x in p2:
        n.opb(j, t, x)
    path = write(tmp_path / "f.pcapng", n.bytes())
    check(path, rows + rows2, 8)
    agree(tshark, path, rows + rows2)


# --- records straddling chunks, snap lengths, fragments -------------------------

def many(k, q=1):
    """``k`` handshakes alternating IPv4/IPv6, each followed by UDP noise:
    ``[(time_ns, IP packet, expected row or None)]``."""
    out = []
    for h in range(k):
        c, s = (V4 if h % 2 else V6)
        p, r = handshake(c, s, t0=T0 + h * 10**9, q=q, cport=10000 + h, isn=(h * 7919, h * 104729),
                         **({"ip_options": IP_OPTIONS} if h % 4 == 1 else {"ext": EXT} if h % 4 == 2 else {}))
        out += [(t, x, row) for (t, x), row in zip(p, r)]
        out.append((T0 // q * q + h * 10**9 + 900_000_000, udp_ip(c, s, payload=b"u" * (h % 50)), None))
    return out


CHUNKS = [{"chunk_size": 4096}, {}]  # 4 kB chunks, and the default


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("kw", CHUNKS, ids=["4k", "default"])
def test_pcap_larger_than_chunk(tmp_path, kw, order):
    items = many(800)  # 4000 records, ~350 kB: records straddle 4 kB chunk boundaries
    path = write(tmp_path / "f.pcap", pcap([(t, eth(p)) for t, p, _ in items], 1, nano=True, order=order))
    check(path, [r for _, _, r in items if r], len(items), **kw)


def test_chunk_size_none_is_the_default(tmp_path):
    """The documented signature: ``CaptureReader(path, strict=False, chunk_size=None)``."""
    p, rows = handshake(*V4)
    check(write(tmp_path / "f.pcap", pcap([(t, eth(x)) for t, x in p], 1, nano=True)), rows, 4, chunk_size=None)


@pytest.mark.parametrize("kw", CHUNKS, ids=["4k", "default"])
def test_pcapng_larger_than_chunk(tmp_path, kw):
    """A new section every 900 packets, byte order alternating; a second
    interface defined mid-section; every 10th packet an SPB (the time of the
    packet before it, maybe in the previous chunk; 0 first in a section);
    unknown blocks between."""
    n, rows, prev = Pcapng(), [], 0
    items = many(700, q=1000)
    for k, (t, p, row) in enumerate(items):
        if k % 900 == 0:
            n.section("<>"[k // 900 % 2])
            i, j, prev = n.interface(1), None, 0
        if k % 900 == 450:
            j = n.interface(113, tsresol=9)
        if k % 10 == 9:
            n.spb(eth(p))
            t = prev
        elif j is None or k % 3:
            n.epb(i, t, eth(p))
        else:
            n.epb(j, t, sll(p))
        prev = t
        if row:
            rows.append((t, *row[1:]))
        if k % 97 == 0:  # a custom block (0xBAD: PEN + data), or an unknown type with an empty body
            n.unknown(0x00000BAD, b"\0\0\x7f\xfe" + b"u" * (k % 13)) if k % 2 else n.unknown(0x00001234, b"")
    check(write(tmp_path / "f.pcapng", n.bytes()), rows, len(items), **kw)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_record_larger_than_chunk(tmp_path, fmt):
    """A 9000-byte jumbo frame between small ones, read in 4 kB chunks."""
    p, rows = handshake(*V4)
    p[3] = (p[3][0], tcp_ip(*V4, 40000, 80, PSH | ACK, 1001, 5001, b"j" * 9000))
    rows[3] = rows[3][:-1] + (9000,)
    if fmt == "pcap":
        data = pcap([(t, eth(x)) for t, x in p], 1, nano=True)
    else:
        n = Pcapng().section("<")
        i = n.interface(1, tsresol=9)
        for t, x in p:
            n.epb(i, t, eth(x))
        data = n.bytes()
    check(write(tmp_path / f"f.{fmt}", data), rows, 4, chunk_size=4096)


def test_snap_length_cuts(tmp_path, tshark):
    """Records cut inside the IP header, the IPv6 extension chain or the TCP header
    are skipped; cut in the payload they are kept with the payload length of the IP
    header; Ethernet padding does not count as payload."""
    big4 = tcp_ip(*V4, 40000, 80, PSH | ACK, 1001, 5001, b"p" * 1000)
    big6 = tcp_ip(*V6, 40001, 443, PSH | ACK, 9, 10, b"q" * 500, ext=EXT)
    cut = [(eth(tcp_ip(*V4, 1, 2, ACK, 3, 4)), 14 + 12),                 # in the IPv4 header
           (eth(tcp_ip(*V4, 1, 2, SYN | ACK, 3, 4)), 14 + 20 + 10),       # in the TCP header
           (eth(tcp_ip(*V6, 1, 2, SYN, 3, ext=EXT)), 14 + 40 + 20),        # in the extension chain
           (eth(tcp_ip(*V6, 1, 2, SYN, 3, ext=EXT)), 14 + 40 + 80 + 12),   # in the TCP header after it
           (eth(big4), 14 + 20 + 20 + 6),                                  # in the payload
           (eth(big6), 14 + 40 + 80 + 20)]                                 # right after the TCP header
    recs = [(T0 + k, f[:n], len(f)) for k, (f, n) in enumerate(cut)]
    recs.append((T0 + 12, eth(tcp_ip(*V4, 7, 8, ACK, 1, 2))))  # 54 bytes padded to 60
    path = write(tmp_path / "f.pcap", pcap(recs, 1, nano=True, snaplen=128))
    rows = [(T0 + 4, V4[0], 40000, V4[1], 80, PSH | ACK, 1001, 5001, 1000),
            (T0 + 5, V6[0], 40001, V6[1], 443, PSH | ACK, 9, 10, 500),
            (T0 + 12, V4[0], 7, V4[1], 8, ACK, 1, 2, 0)]
    check(path, rows, len(recs))
    agree(tshark, path, rows)


@pytest.mark.parametrize("src,dst", [V4, V6], ids=["ipv4", "ipv6"])
def test_tcp_header_cut_at_the_end_of_the_file(tmp_path, src, dst):
    """The last record of a file, its TCP header cut after ``cut`` bytes: skipped
    while the flags are missing; from the flags on, skipped or read right (never
    read from bytes that are not there)."""
    p = tcp_ip(src, dst, 1000, 80, SYN | ACK, 0x11223344, 0x55667788)
    right = [(T0, src, 1000, dst, 80, SYN | ACK, 0x11223344, 0x55667788, 0)]
    ip = len(p) - 20
    for cut in range(21):
        path = write(tmp_path / f"cut{cut}.pcap", pcap([(T0, p[:ip + cut], len(p))], 101, nano=True))
        reader, got = read(path)
        assert reader.packets == 1
        if cut < 14:
            assert got == [], cut
        elif cut < 20:
            assert got in ([], right), cut
        else:
            assert got == right


def test_fragments(tmp_path, tshark):
    """First fragments (offset 0) are read as TCP, with the payload their own IP
    length holds; later fragments are ignored even when their bytes look like TCP."""
    seg = tcp(*V4, 40000, 80, PSH | ACK, 1001, 5001, b"f" * 60)
    fake = tcp(*V4, 6666, 7777, SYN, 1)  # a later fragment's data shaped like a TCP SYN
    seg6 = tcp(*V6, 40001, 443, SYN, 77, 0, b"g" * 16)
    fake6 = tcp(*V6, 6666, 7777, SYN, 1)
    pkts = [ipv4(*V4, 6, seg[:40], ident=5, mf=True, df=False),        # first: header + 20 bytes
            ipv4(*V4, 6, fake, ident=5, offset=5, df=False),            # offset 40 bytes
            ipv4(*V4, 6, fake, ident=6, offset=1, mf=True, df=False),   # a middle fragment
            ipv6(*V6, 6, seg6, ext=(0, 60, (44, 0, 1))),                  # first fragment behind options
            ipv6(*V6, 6, fake6, ext=(0, (44, 3, 0))),                     # offset 24 bytes
            ipv6(*V6, 6, fake6, ext=((44, 2, 1),)),
            ipv6(*V6, 6, tcp(*V6, 40002, 443, SYN, 88), ext=((44, 0, 0),))]  # atomic fragment
    path = write(tmp_path / "f.pcap", pcap([(T0 + k, eth(p)) for k, p in enumerate(pkts)], 1, nano=True))
    rows = [(T0, V4[0], 40000, V4[1], 80, PSH | ACK, 1001, 5001, 20),
            (T0 + 3, V6[0], 40001, V6[1], 443, SYN, 77, 0, 16),
            (T0 + 6, V6[0], 40002, V6[1], 443, SYN, 88, 0, 0)]
    check(path, rows, len(pkts))
    agree(tshark, path, rows)


def test_corpus_agrees_with_tshark(corpus, tshark):
    """Real captures from other tools: the same segments and packet count as tshark."""
    files = sorted(f for f in corpus.iterdir() if f.suffix in (".pcap", ".pcapng"))
    assert len(files) >= 10
    for f in files:
        reader, rows = read(f)
        theirs, frames = tshark_dissect(tshark, f)
        assert (reader.packets, reader.truncated_at) == (frames, None), f.name
        assert len(rows) == len(theirs), f.name
        for mine, t in zip(rows, theirs):
            assert tuple(m if x is None else x for m, x in zip(mine, t)) == mine, f.name


@pytest.mark.parametrize("text", ["0.0.0.0", "10.1.4.177", "255.255.255.255", "::", "::1", "2001:db8::1",
                                  "fe80::1:0:0:1", "2001:db8:0:1:1:1:1:1", "::102:304", "64:ff9b::c000:221"])
def test_address_text_is_what_ipaddress_writes(text):
    import ipaddress

    ip = ipaddress.ip_address(text)
    raw = (b"\0" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed
    assert address_text(raw) == str(address(raw)) == text
