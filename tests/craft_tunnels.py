"""Tunnel and link-layer builders for tests, independent of ``handshake_score``
(``struct`` only, on top of :mod:`craft`): each wraps an inner packet (an IP
packet, or an Ethernet frame where the protocol carries Ethernet) in one
encapsulation's header, written from its specification:

GRE (RFC 2784/2890), ERSPAN I/II/III (draft-foschiano-erspan), VXLAN (RFC 7348),
Geneve (RFC 8926), GTP-U (3GPP TS 29.281, PDU session container TS 38.415),
Teredo (RFC 4380), AYIYA (draft-massar-v6ops-ayiya), MPLS (RFC 3032, pseudowire
control word RFC 4385), PPPoE (RFC 2516), 802.1ah PBB, 802.3 LLC/SNAP, Cisco
FabricPath; and the link headers NFLOG, PPP, PPP-in-HDLC, 802.11, radiotap, IPoIB.
"""

from __future__ import annotations

import struct
import zlib

from craft import ETH_IP4, ETH_IP6, MAC_A, MAC_B, _ip, _pad4, checksum, ipv4, ipv6, udp

OUT4 = ("192.0.2.1", "192.0.2.2")              # outer (underlay) endpoints
OUT6 = ("2001:db8:ffff::1", "2001:db8:ffff::2")
# Inner MACs with real vendors' OUIs: tshark's pseudowire heuristics look for them.
INNER_MACS = bytes.fromhex("001b213a4b5c" "0025906d7e8f")
ETH_TEB, ETH_MPLS, ETH_ERSPAN2, ETH_ERSPAN3 = 0x6558, 0x8847, 0x88BE, 0x22EB
ETH_PPPOE, ETH_PBB_I, ETH_PBB_B, ETH_FABRICPATH = 0x8864, 0x88E7, 0x88A8, 0x8903


def is6(pkt: bytes) -> bool:
    return pkt[0] >> 4 == 6


def etype(pkt: bytes) -> int:
    return ETH_IP6 if is6(pkt) else ETH_IP4


def ether(pkt: bytes, kind: int | None = None, vlan: int | None = None, macs=INNER_MACS) -> bytes:
    """An inner Ethernet frame, unpadded (padding would grow the outer length fields)."""
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return macs + tag + struct.pack("!H", kind or etype(pkt)) + pkt


# --- IP and UDP underlays -------------------------------------------------------

def over_ip(proto: int, body: bytes, v6=False, outer=None) -> bytes:
    """``body`` as the payload of protocol ``proto`` in an outer IPv4 or IPv6 packet."""
    return ipv6(*(outer or OUT6), proto, body) if v6 else ipv4(*(outer or OUT4), proto, body)


def over_udp(dport: int, body: bytes, sport=51234, v6=False) -> bytes:
    outer = OUT6 if v6 else OUT4
    return over_ip(17, udp(*outer, sport, dport, body), v6)


def ip_in_ip(pkt: bytes, v6=False) -> bytes:
    """4in4/6in4/4in6/6in6: protocol 4 for an inner IPv4 packet, 41 for IPv6."""
    return over_ip(41 if is6(pkt) else 4, pkt, v6)


# --- GRE and ERSPAN -------------------------------------------------------------

def gre(proto: int, body: bytes, key=None, seq=None, csum=False) -> bytes:
    """GRE with optional checksum (computed over the GRE header and payload), key, sequence."""
    flags = csum << 15 | (key is not None) << 13 | (seq is not None) << 12
    opt = (struct.pack("!I", key) if key is not None else b"") + (struct.pack("!I", seq) if seq is not None else b"")
    head = struct.pack("!HH", flags, proto)
    if not csum:
        return head + opt + body
    c = checksum(head + b"\0\0\0\0" + opt + body)
    return head + struct.pack("!HH", c, 0) + opt + body


def erspan1(frame: bytes) -> bytes:
    """Type I: GRE 0x88BE without a sequence number and no ERSPAN header."""
    return gre(ETH_ERSPAN2, frame)


def erspan2(frame: bytes, session=1, vlan=10, seq=7) -> bytes:
    """Type II: GRE with sequence, 0x88BE, 8-byte header (version 1, VLAN, COS/En/T, session id, index)."""
    return gre(ETH_ERSPAN2, struct.pack("!HHI", 1 << 12 | vlan, session, 0) + frame, seq=seq)


def erspan3(frame: bytes, session=1, vlan=10, seq=7, platform=False) -> bytes:
    """Type III: GRE 0x22EB, 12-byte header (version 2, VLAN, session, timestamp, SGT,
    flags with O = bit 0 when the 8-byte platform-specific subheader follows)."""
    head = struct.pack("!HHIHH", 2 << 12 | vlan, session, 123456, 0, int(platform))
    sub = struct.pack("!II", 0x00000001, 99) if platform else b""  # platform id 0, port id 1, timestamp
    return gre(ETH_ERSPAN3, head + sub + frame, seq=seq)


# --- UDP tunnels ----------------------------------------------------------------

def vxlan(frame: bytes, vni=77) -> bytes:
    return struct.pack("!II", 0x08000000, vni << 8) + frame


def geneve(body: bytes, proto=ETH_TEB, vni=5, options=False) -> bytes:
    """Geneve header (version 0); with ``options``, two TLVs (4 and 8 bytes of data)."""
    opts = struct.pack("!HBB", 0x0102, 3, 1) + b"\0\0\0\xab" + struct.pack("!HBB", 0x0103, 4, 2) + bytes(8) \
        if options else b""
    return struct.pack("!BBHI", len(opts) // 4, 0, proto, vni << 8) + opts + body


def gtpu(pkt: bytes, teid=0x1234, ext=()) -> bytes:
    """GTP-U G-PDU (type 255); ``ext`` a list of (type, content) extension headers, content
    sized 4n-2 bytes. Any extension sets E, and the optional 4 bytes (sequence, N-PDU, next type) follow."""
    if not ext:
        return struct.pack("!BBHI", 0x30, 0xFF, len(pkt), teid) + pkt
    chain = b""
    for i, (kind, content) in enumerate(ext):
        nxt = ext[i + 1][0] if i + 1 < len(ext) else 0
        chain += bytes([(len(content) + 2) // 4]) + content + bytes([nxt])
    body = struct.pack("!HBB", 0, 0, ext[0][0]) + chain + pkt
    return struct.pack("!BBHI", 0x34, 0xFF, len(body), teid) + body


PDU_SESSION_UL = (0x85, bytes([0x10, 0x09]))  # PDU session container: UL PDU session information, QFI 9
UDP_PORT_EXT = (0x40, struct.pack("!H", 2152))  # UDP port extension header


def teredo(pkt: bytes, origin=False) -> bytes:
    """Teredo (an IPv6 packet in UDP); ``origin``: the 8-byte origin indication (port and address, obfuscated)."""
    if not origin:
        return pkt
    return struct.pack("!HH4s", 0, 3544 ^ 0xFFFF, bytes(b ^ 0xFF for b in _ip("192.0.2.9"))) + pkt


def ayiya(pkt: bytes) -> bytes:
    """AYIYA forward: 16-byte identity (2^4), 20-byte SHA-1 signature (5 x 4), next header 41 or 4."""
    nh = 41 if is6(pkt) else 4
    return bytes([0x41, 0x52, 0x21, nh]) + struct.pack("!I", 1_700_000_000) + b"\x20" * 16 + b"\x5a" * 20 + pkt


# --- layer 2.5 ------------------------------------------------------------------

def mpls(body: bytes, labels=(100,), cw=False) -> bytes:
    """An MPLS label stack (bottom of stack on the last), and a pseudowire control word of zeros."""
    stack = b"".join(struct.pack("!I", lab << 12 | (i == len(labels) - 1) << 8 | 64) for i, lab in enumerate(labels))
    return stack + (b"\0\0\0\0" if cw else b"") + body


def pppoe(pkt: bytes, session=0x1234) -> bytes:
    """PPPoE session stage (ethertype 0x8864): PPP protocol 0x0021 for IPv4, 0x0057 for IPv6."""
    body = struct.pack("!H", 0x0057 if is6(pkt) else 0x0021) + pkt
    return struct.pack("!BBHH", 0x11, 0, session, len(body)) + body


def pbb(frame: bytes, isid=0x12345) -> bytes:
    """802.1ah I-TAG (priority 0, I-SID) before the customer's frame."""
    return struct.pack("!I", isid) + frame


def fabricpath(frame: bytes) -> bytes:
    """A whole Cisco FabricPath frame: the outer addresses (switch ids), EtherType 0x8903,
    FTag/TTL, the classical frame, and the outer FCS (which tshark expects there)."""
    f = bytes.fromhex("020001000100" "020002000100") + struct.pack("!HH", ETH_FABRICPATH, 0x0401) + frame
    return f + struct.pack("<I", zlib.crc32(f))


def llc_snap_8023(pkt: bytes) -> bytes:
    """An 802.3 frame: a length instead of an EtherType, LLC AA AA 03, SNAP OUI 0 and the EtherType."""
    body = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype(pkt)) + pkt
    return MAC_B + MAC_A + struct.pack("!H", len(body)) + body


# --- link headers ---------------------------------------------------------------

def nflog(pkt: bytes | None) -> bytes:
    """NFLOG (239): family, version 0, group (big-endian); TLVs in host order (little-endian
    here), each padded to 4: packet header, prefix, then the payload (None: a record without one)."""
    def tlv(kind, value):
        return _pad4(struct.pack("<HH", 4 + len(value), kind) + value)

    head = struct.pack("!BBH", 10 if pkt and is6(pkt) else 2, 0, 5) + tlv(10, b"hs\0")
    if pkt is None:
        return head
    return head + tlv(1, struct.pack("!HBx", etype(pkt), 3)) + tlv(9, pkt)


def ppp(pkt: bytes) -> bytes:
    """PPP (9) and PPP in HDLC-like framing (50): address FF, control 03, protocol."""
    return b"\xff\x03" + struct.pack("!H", 0x0057 if is6(pkt) else 0x0021) + pkt


PPP_LCP_ECHO = b"\xff\x03\xc0\x21" + struct.pack("!BBHI", 9, 1, 8, 0x12345678)  # PPP without IP


def wlan(pkt: bytes, protected=False) -> bytes:
    """An 802.11 data frame to the DS with LLC/SNAP; ``protected``: the Protected bit,
    a CCMP header, the body (as ciphertext) and an 8-byte MIC."""
    flags = 0x01 | (0x40 if protected else 0)
    hdr = struct.pack("<BBH", 0x08, flags, 0) + b"\x02\0\0\0\0\x0a" + MAC_A + MAC_B + struct.pack("<H", 0x10)
    body = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype(pkt)) + pkt
    if protected:
        body = struct.pack("<BBBBI", 1, 0, 0, 0x20, 0) + body + bytes(8)
    return hdr + body


def radiotap(frame: bytes) -> bytes:
    """Radiotap (127): version 0, length 12, present: flags (bit 1) and rate (bit 2), 2 bytes of padding."""
    return struct.pack("<BBHIBBxx", 0, 0, 12, 0x6, 0x00, 12) + frame


def ipoib(pkt: bytes, kind: int | None = None) -> bytes:
    """IPoIB (242) as Wireshark reads it: a 40-byte Global Route Header, then EtherType and 2 reserved bytes."""
    grh = struct.pack("!IHBB16s16s", 6 << 28, len(pkt) + 4, 0x1B, 64, _ip("fe80::1"), _ip("fe80::2"))
    return grh + struct.pack("!HH", kind or etype(pkt), 0) + pkt
