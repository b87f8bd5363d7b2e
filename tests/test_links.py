"""Link types beyond Ethernet (``handshake_score.sources.links``), checked against
Wireshark's own dissection of the same bytes.

Each link type gets a crafted capture: a handshake (SYN, SYN-ACK, ACK) in the
link header's framings (PPP with and without address/control and protocol
compression, 802.11 with WDS, QoS, HT control, A-MSDU...), frames that carry no
TCP (UDP, a PPP LCP frame, a beacon, a Null frame) and, for 802.11, protected
frames. What tshark finds in the file is the expected result; nothing is
hard-coded beyond the frames themselves. NFLOG is also captured for real from
the kernel: an nftables ``log group`` rule in a network namespace the test makes.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from handshake_score.sources import CaptureReader, links
from handshake_score.sources.decode import _Bytes

import craft
from conftest import missing

SYN, ACK, RST = craft.SYN, craft.ACK, craft.RST
T0 = 1_700_000_000 * 10**9


def handshake(client, server, sport=40000, dport=80):
    """SYN, SYN-ACK, ACK between ``client`` and ``server`` as IP packets."""
    return [craft.tcp_ip(client, server, sport, dport, SYN, 1000, tcp_options=craft.SYN_OPTIONS),
            craft.tcp_ip(server, client, dport, sport, SYN | ACK, 5000, 1001, tcp_options=craft.SYN_OPTIONS),
            craft.tcp_ip(client, server, sport, dport, ACK, 1001, 5001)]


V4 = handshake("10.0.0.1", "10.0.0.2")
V6 = handshake("2001:db8::1", "2001:db8::2", 40001, 443)
UDP4, UDP6 = craft.udp_ip("10.0.0.1", "10.0.0.2"), craft.udp_ip("2001:db8::1", "2001:db8::2")


# --- link headers, written from the formats' specifications (struct only) -------------

def _proto(pkt, ppp=False):
    v6 = pkt[0] >> 4 == 6
    if ppp:
        return 0x0057 if v6 else 0x0021
    return craft.ETH_IP6 if v6 else craft.ETH_IP4


def ppp(pkt, hdlc=True, compressed=False):
    """PPP: address/control FF 03 unless compressed away; a 1-byte protocol when compressed."""
    proto = _proto(pkt, True)
    field = bytes([proto]) if compressed else struct.pack("!H", proto)
    return (b"\xff\x03" if hdlc else b"") + field + pkt


def lcp():
    """A PPP LCP echo request: no IP in it."""
    return b"\xff\x03\xc0\x21" + struct.pack("!BBHI", 9, 1, 8, 0x12345678)


def chdlc(pkt, etype=None):
    return struct.pack("!BBH", 0x0F, 0, etype or _proto(pkt)) + pkt


def pppoe(pkt):
    body = struct.pack("!H", _proto(pkt, True)) + pkt
    return struct.pack("!BBHH", 0x11, 0, 0x1234, len(body)) + body


def snap(pkt, etype=None):
    return b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype or _proto(pkt)) + pkt


def ipoib(pkt, etype=None):
    """IPoIB as libpcap writes it: a Global Route Header (40 bytes, as Wireshark reads it), then
    the EtherType and two reserved bytes."""
    grh = struct.pack("!IHBB16s16s", 6 << 28, len(pkt) + 4, 0x1B, 64, craft._ip("fe80::1"), craft._ip("fe80::2"))
    return grh + struct.pack("!HH", etype or _proto(pkt), 0) + pkt


def pflog(pkt, af=None):
    """OpenBSD's pfloghdr: 61 bytes (PFLOG_REAL_HDRLEN), padded to 64 as libpcap reads it."""
    af = af or (24 if pkt[0] >> 4 == 6 else 2)
    hdr = struct.pack("!BBBB16s16sIIIIII", 61, af, 0, 0, b"em0", b"", 3, 0xFFFFFFFF, 0, 0, 0, 0) + b"\x01"
    return hdr + b"\0" * 3 + pkt


def ipnet(pkt):
    """Solaris IPNET: version 2, family (2 or 26), htype, length, ifindex, group ifindex, zones."""
    family = 26 if pkt[0] >> 4 == 6 else 2
    return struct.pack("!BBHIIIII", 2, family, 0, len(pkt), 2, 0, 0, 0) + pkt


def pktap(pkt):
    """Apple's PKTAP header (108 bytes, little-endian) before an Ethernet frame."""
    hdr = struct.pack("<III24sIIIIi20sIHHi20s", 108, 1, 1, b"en0", 0, 2, 0, 0, 321, b"curl", 0, 6, 0, 321, b"curl")
    return hdr + craft.eth(pkt)


def nflog(pkt, family=None, payload_at=2, prefix=b"hs\0", order="<"):
    """NFLOG: family, version 0, resource id; TLVs (length and type in the capturing host's
    byte order ``order``, padded to 4): the packet header, a prefix, an interface, the
    payload at ``payload_at``, a uid."""
    family = family or (10 if pkt[0] >> 4 == 6 else 2)

    def tlv(kind, value):
        return craft._pad4(struct.pack(order + "HH", 4 + len(value), kind) + value)

    tlvs = [tlv(1, struct.pack("!HBx", _proto(pkt), 3)), tlv(10, prefix), tlv(5, struct.pack("!I", 1)),
            tlv(11, struct.pack("!I", 0))]
    tlvs.insert(payload_at, tlv(9, pkt))
    return struct.pack("!BBH", family, 0, 5) + b"".join(tlvs)


def wlan(pkt, wds=False, qos=False, order=False, amsdu=False, protected=False, etype=None):
    """An 802.11 data frame (to the DS, or WDS) with LLC/SNAP. ``protected``: "ccmp" for an
    encrypted body, True for the protected bit over a plain body (as some drivers hand
    over decrypted frames), which is not read either, as in Wireshark by default."""
    subtype = 0x80 if qos else 0x00
    flags = (0x03 if wds else 0x01) | (0x80 if order else 0) | (0x40 if protected else 0)
    hdr = struct.pack("<BBH", 0x08 | subtype, flags, 0) + b"\x02\0\0\0\0\x0a" + craft.MAC_A + craft.MAC_B
    hdr += struct.pack("<H", 0x10)  # sequence 1, fragment 0
    if wds:
        hdr += b"\x02\0\0\0\0\x0b"
    if qos:
        hdr += struct.pack("<H", 0x80 if amsdu else 0)
        if order:
            hdr += b"\0\0\0\0"
    body = snap(pkt, etype)
    if amsdu:
        body = craft.MAC_B + craft.MAC_A + struct.pack("!H", len(body)) + body
    if protected == "ccmp":
        body = struct.pack("<BBBBI", 1, 0, 0, 0x20, 0) + bytes(len(body)) + bytes(8)  # CCMP header, MIC
    return hdr + body


def beacon():
    hdr = struct.pack("<BBH", 0x80, 0, 0) + b"\xff" * 6 + craft.MAC_A + craft.MAC_A + struct.pack("<H", 0)
    return hdr + struct.pack("<QHH", 0, 100, 1) + b"\x00\x02hs"


def null_data():
    return struct.pack("<BBH", 0x48, 0x11, 0) + b"\x02\0\0\0\0\x0a" + craft.MAC_A + craft.MAC_B + struct.pack("<H", 0)


def radiotap(frame):
    """Radiotap: version 0, length 12, present flags (bit 1) and rate (bit 2), then 2 bytes of padding."""
    return struct.pack("<BBHIBBxx", 0, 0, 12, 0x6, 0x00, 12) + frame


def ppi(frame):
    return struct.pack("<BBHI", 0, 0, 8, 105) + frame


def prism(frame):
    """Prism II: msgcode 0x44 and length 144 (host order, little-endian), device, 10 DID items."""
    items = b"".join(struct.pack("<IHHI", 0x41 + i * 0x1000, 0, 4, i) for i in range(10))
    return struct.pack("<II16s", 0x44, 144, b"wlan0") + items + frame


def avs(frame):
    """AVS: version 0x80211001 and length 64, big-endian, and its 56 bytes of fields."""
    return struct.pack("!IIQQIIIIIIiiII", 0x80211001, 64, 1, 2, 4, 6, 540, 0, 0, 1, -30, -90, 0, 0) + frame


def _wlan_frames(pkts, outer):
    """A handshake in several 802.11 framings, a UDP frame, a protected frame, a beacon and a Null frame."""
    a, b_, c = pkts
    return [outer(wlan(a)), outer(wlan(b_, qos=True)), outer(beacon()), outer(wlan(c, wds=True, qos=True, order=True)),
            outer(wlan(UDP4, qos=True, amsdu=True)), outer(wlan(a, qos=True, protected=True)), outer(null_data()),
            outer(wlan(b_, qos=True, amsdu=True)), outer(wlan(c, protected="ccmp"))]


def _same(f):
    return f


CAPTURES = {  # link type -> frames
    9: [ppp(V4[0]), ppp(V4[1], hdlc=False), ppp(V4[2], compressed=True), lcp(), ppp(UDP4), ppp(V6[0], compressed=True)],
    50: [ppp(V4[0]), chdlc(V4[1]), ppp(V4[2]), lcp(), ppp(V6[0]), chdlc(b"\0" * 20, 0x8035)],
    51: [pppoe(V4[0]), pppoe(V6[1]), pppoe(V4[2]), pppoe(UDP4), b"\x11\x00\x12\x34\x00\x06\xc0\x21\x09\x01\x00\x04"],
    100: [snap(V4[0]), snap(V6[1]), snap(V4[2]), snap(UDP6), snap(craft.arp(), craft.ETH_ARP)],
    104: [chdlc(V4[0]), chdlc(V6[1]), chdlc(V4[2]), chdlc(UDP4), chdlc(b"\0" * 20, 0x8035)],
    105: _wlan_frames(V4, _same),
    117: [pflog(V4[0]), pflog(V6[1]), pflog(V6[2], af=28), pflog(UDP4), pflog(V6[0], af=30)],
    119: _wlan_frames(V6, prism),
    127: _wlan_frames(V4, radiotap),
    163: _wlan_frames(V6, avs),
    192: _wlan_frames(V4, ppi),
    226: [ipnet(V4[0]), ipnet(V6[1]), ipnet(V4[2]), ipnet(UDP6)],
    239: [nflog(V4[0]), nflog(V6[1], payload_at=0), nflog(V4[2], payload_at=4), nflog(UDP4),
          nflog(V6[2], prefix=b"a longer prefix\0"), nflog(V4[1], family=7)],
    242: [ipoib(V4[0]), ipoib(V6[1]), ipoib(V4[2]), ipoib(UDP4), ipoib(craft.arp(), craft.ETH_ARP)],
    258: [pktap(V4[0]), pktap(V6[1]), pktap(V4[2]), pktap(UDP4)],
}


def write_capture(path, linktype, frames):
    return craft.write(path, craft.pcap([(T0 + i * 10**6, f) for i, f in enumerate(frames)], linktype))


def dissect(tshark, path) -> dict[int, tuple]:
    """tshark's TCP segments in ``path``: frame number -> (source address, port, flags, seq)."""
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-E", "separator=,", "-E", "occurrence=l",
                          "-e", "frame.number", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
                          "-e", "tcp.flags", "-e", "tcp.seq_raw"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        number, ip4, ip6, port, flags, seq = line.split(",")
        if port:
            found[int(number)] = (ip4 or ip6, int(port), int(flags, 16), int(seq))
    return found


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _segment(s) -> tuple:
    """(source, port, flags, seq) of a SEGMENT row; IPv4 is held as ::ffff:a.b.c.d."""
    src = s["src"].tobytes()
    src = src[12:] if src[:12] == bytes(10) + b"\xff\xff" else src
    return _address(src), int(s["sport"]), int(s["flags"]), int(s["seq"])


def segment_at(buf: bytes, et: int, off: int):
    """(source, port, flags, seq) of the IP/TCP packet at ``off``, read with struct (not by hs)."""
    if et == craft.ETH_IP4 and buf[off] >> 4 == 4 and buf[off + 9] == 6:
        src, l4 = _address(buf[off + 12: off + 16]), off + (buf[off] & 15) * 4
    elif et == craft.ETH_IP6 and buf[off] >> 4 == 6 and buf[off + 6] == 6:
        src, l4 = _address(buf[off + 8: off + 24]), off + 40
    else:
        return None
    port, seq, word = struct.unpack_from("!H2xI4xH", buf, l4)
    return src, port, word & 0x0FFF, seq


def run_link(linktype, frames, tail=b""):
    """``links.link`` over ``frames`` laid end to end as in a chunk (``tail`` after them)."""
    buf = bytearray(b"".join(frames) + tail)
    size = np.array([len(f) for f in frames], np.int64)
    s = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    et, off, protected = links.link(_Bytes(memoryview(buf)), linktype, s, s + size)
    return bytes(buf), et, off, protected


# --- the tests -------------------------------------------------------------

@pytest.mark.parametrize("linktype", sorted(CAPTURES))
def test_link_finds_the_segments_tshark_finds(tshark, tmp_path, linktype):
    """Where tshark sees a TCP segment, link() points at an IP header holding it; where
    it sees none, link() gives 0 or points at something that is not TCP."""
    frames = CAPTURES[linktype]
    path = write_capture(tmp_path / f"{linktype}.pcap", linktype, frames)
    expected = dissect(tshark, path)
    assert expected, "tshark found no TCP in the crafted capture: its frames are wrong"
    buf, et, off, _ = run_link(linktype, frames)
    got = {}
    for i in range(len(frames)):
        assert et[i] == 0 or off[i] <= len(buf)
        seg = segment_at(buf, int(et[i]), int(off[i])) if et[i] else None
        if seg:
            got[i + 1] = seg
    assert got == expected


@pytest.mark.parametrize("linktype", sorted(CAPTURES))
def test_capture_reader_reads_what_tshark_reads(tshark, tmp_path, linktype):
    """End to end through the fast reader: the same segments, in the same order, as tshark."""
    frames = CAPTURES[linktype]
    path = write_capture(tmp_path / f"{linktype}.pcap", linktype, frames)
    expected = list(dissect(tshark, path).values())
    reader = CaptureReader(path)
    segs = np.concatenate(list(reader))
    got = [_segment(s) for s in segs]
    assert got == expected
    assert reader.packets == len(frames)


def test_pcapng_with_interfaces_of_several_link_types(tshark, tmp_path):
    """One pcapng, one interface per link type (NFLOG, radiotap, PPP, Ethernet), records
    interleaved: the segments tshark finds, in file order."""
    ng = craft.Pcapng().section()
    kinds = [(239, nflog), (127, lambda p: radiotap(wlan(p, qos=True))), (9, ppp), (1, craft.eth)]
    ifaces = [ng.interface(linktype, name=f"if{linktype}") for linktype, _ in kinds]
    n = 0
    for pkts in (V4, V6):
        for pkt in pkts + [UDP4]:
            for iface, (_, wrap) in zip(ifaces, kinds):
                ng.epb(iface, T0 + n * 1000, wrap(pkt))
                n += 1
    path = craft.write(tmp_path / "mixed.pcapng", ng.bytes())
    expected = list(dissect(tshark, path).values())
    assert len(expected) == 6 * len(kinds)
    reader = CaptureReader(path)
    assert [_segment(s) for s in np.concatenate(list(reader))] == expected
    assert reader.packets == n


def test_nflog_from_a_big_endian_host(tshark, tmp_path):
    """A big-endian router writes NFLOG's TLVs big-endian, in a big-endian pcap (which
    is how tshark knows to read them so): the same segments either way."""
    frames = [nflog(p, order=">") for p in V4 + V6] + [nflog(V4[0], payload_at=0, order=">")]
    path = craft.write(tmp_path / "be.pcap", craft.pcap([(T0 + i * 1000, f) for i, f in enumerate(frames)], 239,
                                                        order=">"))
    expected = list(dissect(tshark, path).values())
    assert len(expected) == len(frames)
    assert [_segment(s) for s in np.concatenate(list(CaptureReader(path)))] == expected


def test_protected_frames_are_skipped_and_counted(tshark, tmp_path):
    """Every 802.11 flavour: the frames tshark calls protected are counted, none read."""
    for linktype in (105, 119, 127, 163, 192):
        frames = CAPTURES[linktype]
        path = write_capture(tmp_path / f"{linktype}.pcap", linktype, frames)
        out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", "wlan.fc.protected == 1", "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True, check=True).stdout
        protected = len(out.split())
        assert protected == 2
        assert run_link(linktype, frames)[3] == protected
        reader = CaptureReader(path)
        list(reader)
        assert reader.protected == protected


def test_names_are_wiresharks(tmp_path):
    """``NAMES`` says what Wireshark's capinfos says of a capture of that link type."""
    capinfos = shutil.which("capinfos")
    if not capinfos:
        missing("capinfos is not installed (it comes with tshark)")
    for linktype, name in links.NAMES.items():
        path = write_capture(tmp_path / f"{linktype}.pcap", linktype, [b"\0" * 64])
        out = subprocess.run([capinfos, "-E", str(path)], capture_output=True, text=True).stdout
        assert f"File encapsulation:  {name}\n" in out, (linktype, out)


@pytest.mark.parametrize("linktype", sorted(CAPTURES))
def test_cut_headers_are_never_read_past_their_end(linktype):
    """Every frame cut at every length, with the next bytes in the buffer a valid
    packet: link() never points past a record's end, and finds nothing in a cut header."""
    for frame in CAPTURES[linktype]:
        _, et, off, _ = run_link(linktype, [frame])
        whole = int(off[0]) if et[0] else len(frame)
        for cut in range(len(frame)):
            frames = [frame[:cut]]
            _, et, off, _ = run_link(linktype, frames, tail=frame[cut:] + V4[0])
            if et[0]:
                assert off[0] <= cut and cut >= whole, (cut, whole)


def test_lying_lengths():
    """Header lengths that lie (past the end, too short, zero) and NFLOG TLVs that never
    reach a payload: nothing is found, nothing raises."""
    body = wlan(V4[0])
    lies = {
        127: [struct.pack("<BBHI", 0, 0, 0xFFFF, 0) + body, struct.pack("<BBHI", 0, 0, 2, 0) + body,
              struct.pack("<BBHI", 1, 0, 8, 0) + body],
        192: [struct.pack("<BBHI", 0, 0, 0xFFFF, 105) + body, struct.pack("<BBHI", 0, 0, 8, 1) + body],
        163: [struct.pack("!II", 0x80211001, 0xFFFFFFFF) + body, struct.pack("!II", 0x80211001, 0) + body],
        119: [struct.pack("<II", 0x44, 0xFFFFFFFF) + body],
        117: [bytes([0, 2]) + V4[0], bytes([255, 2]) + V4[0]],
        258: [struct.pack("<III", 0xFFFFFFFF, 1, 1) + craft.eth(V4[0]), struct.pack("<III", 0, 1, 1) + craft.eth(V4[0])],
        239: [struct.pack("<BBH", 2, 0, 0) + struct.pack("<HH", 0, 9) + V4[0],        # TLV of length 0
              struct.pack("<BBH", 2, 0, 0) + struct.pack("<HH", 0xFFFF, 9) + V4[0],   # past the end
              struct.pack("<BBH", 2, 0, 0) + struct.pack("<HH", 4, 10) * (links.MAX_TLVS + 1)
              + struct.pack("<HH", 4 + len(V4[0]), 9) + V4[0],                        # too many TLVs
              struct.pack("<BBH", 2, 1, 0) + struct.pack("<HH", 4 + len(V4[0]), 9) + V4[0]],  # version 1
    }
    for linktype, frames in lies.items():
        _, et, off, protected = run_link(linktype, frames, tail=V4[0] * 4)
        assert (et == 0).all(), (linktype, et)
        assert protected == 0


def test_empty_batch():
    for linktype in links.NAMES:
        s = np.zeros(0, np.int64)
        et, off, protected = links.link(_Bytes(memoryview(bytearray(64))), linktype, s, s)
        assert len(et) == len(off) == 0 and protected == 0


# --- NFLOG from the kernel -----------------------------------------------------

GROUP = 7


def _netns_tools():
    for tool in ("ip", "nft", "dumpcap", "tshark"):
        if not shutil.which(tool):
            missing(f"{tool} is not installed (scripts/setup.sh --tests installs nftables and tshark)")
    if os.geteuid() != 0:
        missing("network namespaces need root")


@pytest.fixture
def netns():
    _netns_tools()
    name = f"hs-links-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        missing(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


CONNECT = """
import socket, sys
server = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
server.bind((sys.argv[1], 0)); server.listen(8)
for _ in range(int(sys.argv[2])):
    c = socket.create_connection((sys.argv[1], server.getsockname()[1])); a, _ = server.accept(); c.close(); a.close()
"""


def test_nflog_from_the_kernel(netns, tmp_path, tshark):
    """An nftables ``log group`` rule logs SYNs to NFLOG, dumpcap writes them: hs reads
    every SYN and SYN-ACK tshark dissects, with the addresses of the namespace's loopback.
    ``queue-threshold 1``: the kernel otherwise batches log messages for up to a second,
    and libpcap (so dumpcap) keeps only the first message of a batch."""
    ruleset = f"""table inet hs {{
        chain out {{
            type filter hook output priority 0;
            tcp flags & syn == syn log group {GROUP} queue-threshold 1
        }}
    }}"""
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=ruleset, text=True, check=True)
    path = tmp_path / "nflog.pcapng"
    # dumpcap binds the NFLOG group from inside the namespace, where the rule logs
    dump = subprocess.Popen(["ip", "netns", "exec", netns, "dumpcap", "-q", "-i", f"nflog:{GROUP}", "-w", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_capture(path, dump)
        for host in ("127.0.0.1", "::1"):
            subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CONNECT, host, "3"], check=True, timeout=60)
        expected = _wait_for_frames(tshark, path, 12)
    finally:
        dump.terminate()
        dump.wait(20)
    expected = list(dissect(tshark, path).values())
    assert len(expected) == 12 and {f & 0x12 for _, _, f, _ in expected} == {SYN, SYN | ACK}
    assert {a for a, *_ in expected} == {"127.0.0.1", "::1"}
    segs = np.concatenate(list(CaptureReader(path)))
    got = [_segment(s) for s in segs]
    assert got == expected


def _wait_for_capture(path, dump, timeout=30):
    """dumpcap has bound the group once it has written the file's header."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size > 0):
        if dump.poll() is not None:
            pytest.fail(f"dumpcap stopped: {dump.stderr.read().strip()}")
        if time.monotonic() > deadline:
            pytest.fail("dumpcap did not start writing in 30 s")
        time.sleep(0.05)


def _wait_for_frames(tshark, path, n, timeout=60):
    """dumpcap writes as packets come; wait until tshark sees ``n`` TCP segments."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run([tshark, "-n", "-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "frame.number"],
                               capture_output=True, text=True).stdout.split()
        if len(found) >= n:
            return found
        time.sleep(0.2)
    pytest.fail(f"dumpcap wrote fewer than {n} logged segments in {timeout} s")
