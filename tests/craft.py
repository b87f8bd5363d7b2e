"""A small writer of capture files for tests, independent of ``handshake_score``
(``struct`` only): IPv4/IPv6/TCP/UDP/ARP packets, link-layer framing for every
supported link type, classic pcap and pcapng writers.

Times are integer nanoseconds since the epoch throughout. Every packet gets
correct IP/TCP/UDP checksums so tshark dissects it cleanly.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, AE = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100
ETH_IP4, ETH_IP6, ETH_ARP, ETH_VLAN, ETH_QINQ, ETH_9100 = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
# Record route with one slot, then EOL: 8 bytes of IPv4 options (IHL 7).
IP_OPTIONS = bytes([7, 7, 4, 0, 0, 0, 0, 0])
# MSS 1460, SACK permitted, NOP, window scale 7 (12 bytes after padding: data offset 8).
SYN_OPTIONS = bytes([2, 4, 5, 180, 4, 2, 1, 3, 3, 7])


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _l4(src: str, dst: str, proto: int, seg: bytes, at: int) -> bytes:
    """Fill in the checksum (at byte ``at``) of a TCP/UDP segment over its pseudo-header."""
    s, d = _ip(src), _ip(dst)
    pseudo = s + d + (struct.pack("!xBH", proto, len(seg)) if len(s) == 4 else struct.pack("!I3xB", len(seg), proto))
    c = checksum(pseudo + seg) or (0xFFFF if proto == 17 else 0)
    return seg[:at] + struct.pack("!H", c) + seg[at + 2 :]


def tcp(src, dst, sport, dport, flags, seq, ack=0, payload=b"", options=b"", window=64240) -> bytes:
    options = _pad4(options)
    hdr = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (5 + len(options) // 4) << 12 | flags, window, 0, 0)
    return _l4(src, dst, 6, hdr + options + payload, 16)


def udp(src, dst, sport, dport, payload=b"") -> bytes:
    return _l4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, 6)


def ipv4(src, dst, proto, body, options=b"", ident=1, offset=0, mf=False, df=True, ttl=64) -> bytes:
    """IPv4 packet; ``offset`` is the fragment offset in 8-byte units; DF set by default."""
    options = _pad4(options)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45 + len(options) // 4, 0, 20 + len(options) + len(body), ident,
                      df << 14 | mf << 13 | offset, ttl, proto, 0, _ip(src), _ip(dst)) + options
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + body


def ext_header(kind, nh: int) -> bytes:
    """One IPv6 extension header: ``kind`` is 0 (hop-by-hop), 60 (destination
    options), 43 (segment routing), 51 (AH) or ``(44, offset, more)`` (fragment)."""
    if isinstance(kind, tuple):
        _, offset, more = kind
        return struct.pack("!BBHI", nh, 0, offset << 3 | more, 0x1234)
    if kind in (0, 60):  # 16 bytes: PadN option of 12 zero bytes
        return struct.pack("!BBBB", nh, 1, 1, 12) + b"\0" * 12
    if kind == 43:  # 24 bytes: segment routing (type 4), segments left 0, one segment
        return struct.pack("!BBBBBBH", nh, 2, 4, 0, 0, 0, 0) + _ip("2001:db8::99")
    if kind == 51:  # 24 bytes: SPI, sequence, 12-byte ICV
        return struct.pack("!BBHII", nh, 4, 0, 0x100, 1) + b"\xaa" * 12
    raise ValueError(kind)


def _kind(k) -> int:
    return k[0] if isinstance(k, tuple) else k


def ipv6(src, dst, proto, body, ext=()) -> bytes:
    """IPv6 packet with extension headers ``ext`` (outermost first, see :func:`ext_header`)."""
    chain, nh = b"", proto
    for k in reversed(ext):
        chain, nh = ext_header(k, nh) + chain, _kind(k)
    return struct.pack("!IHBB16s16s", 6 << 28, len(chain) + len(body), nh, 64, _ip(src), _ip(dst)) + chain + body


def tcp_ip(src, dst, sport, dport, flags, seq, ack=0, payload=b"", tcp_options=b"", ip_options=b"", ext=(),
           **ip) -> bytes:
    """A TCP segment in IPv4 (``ip_options``, ``**ip`` for :func:`ipv4`) or IPv6 (``ext``), by ``src``'s family."""
    seg = tcp(src, dst, sport, dport, flags, seq, ack, payload, tcp_options)
    if ipaddress.ip_address(src).version == 4:
        return ipv4(src, dst, 6, seg, ip_options, **ip)
    return ipv6(src, dst, 6, seg, ext)


def udp_ip(src, dst, sport=40001, dport=9999, payload=b"noise") -> bytes:
    seg = udp(src, dst, sport, dport, payload)
    return ipv4(src, dst, 17, seg) if ipaddress.ip_address(src).version == 4 else ipv6(src, dst, 17, seg)


def arp(sender="10.0.0.1", target="10.0.0.2") -> bytes:
    """An ARP request (an Ethernet/SLL payload, ethertype 0x0806)."""
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC_A, _ip(sender), b"\0" * 6, _ip(target))


def ethertype(pkt: bytes) -> int:
    return ETH_IP6 if pkt[0] >> 4 == 6 else ETH_IP4


# --- link-layer framing -----------------------------------------------------

def eth(pkt, etype=None, vlans=(), fcs=False) -> bytes:
    """Ethernet II, ``vlans`` a sequence of (TPID, VID) tags outermost first,
    padded to 60 bytes, optionally with a 4-byte FCS."""
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    f = MAC_B + MAC_A + tags + struct.pack("!H", etype or ethertype(pkt)) + pkt
    f += b"\0" * max(0, 60 - len(f))
    return f + struct.pack("<I", zlib.crc32(f)) if fcs else f


def sll(pkt, etype=None) -> bytes:
    """Linux cooked v1 (link type 113): 16-byte header."""
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", etype or ethertype(pkt)) + pkt


def sll2(pkt, etype=None) -> bytes:
    """Linux cooked v2 (link type 276): 20-byte header."""
    return struct.pack("!HHIHBB8s", etype or ethertype(pkt), 0, 3, 1, 4, 6, MAC_A + b"\0\0") + pkt


def null(pkt, order="<", family=None) -> bytes:
    """BSD loopback (0): address family in the capturing host's byte order; 30 = Darwin AF_INET6."""
    return struct.pack(order + "I", family or (2 if pkt[0] >> 4 == 4 else 30)) + pkt


def loop(pkt, family=None) -> bytes:
    """OpenBSD loopback (108): address family in network byte order; 24 = OpenBSD AF_INET6."""
    return null(pkt, ">", family or (2 if pkt[0] >> 4 == 4 else 24))


def frame(linktype: int, pkt: bytes, order="<", **kw) -> bytes:
    """``pkt`` (an IP packet) framed for ``linktype``; ``order`` is the capture's byte order (for NULL)."""
    if linktype == 1:
        return eth(pkt, **kw)
    if linktype == 113:
        return sll(pkt, **kw)
    if linktype == 276:
        return sll2(pkt, **kw)
    if linktype == 0:
        return null(pkt, order, **kw)
    if linktype == 108:
        return loop(pkt, **kw)
    if linktype in (101, 12, 14, 228, 229):
        return pkt
    raise ValueError(linktype)


# --- classic pcap -----------------------------------------------------------

FCS_4 = 0x04000000 | 2 << 28  # "FCS length present" bit 26, FCS length 2 x 16 bits in bits 28-31


def pcap_header(linktype=1, nano=False, order="<", snaplen=262144) -> bytes:
    return struct.pack(order + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(time_ns, data, orig=None, nano=False, order="<") -> bytes:
    sec, frac = divmod(time_ns, 10**9)
    if not nano:
        assert frac % 1000 == 0, "microsecond pcap cannot hold this time"
        frac //= 1000
    return struct.pack(order + "IIII", sec, frac, len(data), len(data) if orig is None else orig) + data


def pcap(records, linktype=1, nano=False, order="<", snaplen=262144) -> bytes:
    """Classic pcap; ``records`` are (time_ns, data) or (time_ns, data, original length);
    ``linktype`` may carry FCS bits in its upper 16 bits (e.g. ``1 | FCS_4``)."""
    return pcap_header(linktype, nano, order, snaplen) + b"".join(
        pcap_record(*r[:2], r[2] if len(r) > 2 else None, nano, order) for r in records)


# --- pcapng -----------------------------------------------------------------

def options(order, opts) -> bytes:
    """Options (code, value bytes) followed by opt_endofopt; nothing if none."""
    if not opts:
        return b""
    return b"".join(struct.pack(order + "HH", c, len(v)) + _pad4(v) for c, v in opts) + struct.pack(order + "HH", 0, 0)


def block(order, btype, body) -> bytes:
    total = 12 + len(_pad4(body))
    return struct.pack(order + "II", btype, total) + _pad4(body) + struct.pack(order + "I", total)


def resolution(tsresol) -> int:
    """Ticks per second of an ``if_tsresol`` value (None = default 10^-6)."""
    if tsresol is None:
        return 10**6
    return 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol


class Pcapng:
    """Builds a pcapng file block by block; keeps each interface's time base so
    packets are given in nanoseconds (which must be exact in its resolution)."""

    def __init__(self):
        self.blocks: list[bytes] = []

    def section(self, order="<", opts=((4, b"craft.py"),), section_length=-1):
        self.order, self.ifaces, self.shb = order, [], len(self.blocks)
        self._shb_args = (order, opts)
        body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, section_length) + options(order, opts)
        self.blocks.append(block(order, 0x0A0D0D0A, body))
        return self

    def seal(self):
        """Write the current section's real length into its header (instead of -1)."""
        length = sum(map(len, self.blocks[self.shb + 1:]))
        self.blocks[self.shb] = Pcapng().section(*self._shb_args, section_length=length).blocks[0]

    def interface(self, linktype, tsresol=None, tsoffset=None, snaplen=0, name="lo0") -> int:
        o = self.order
        opts = [(2, name.encode())]
        if tsresol is not None:
            opts.append((9, bytes([tsresol])))
        if tsoffset is not None:
            opts.append((14, struct.pack(o + "q", tsoffset)))
        opts.append((3, b"a crafted interface"))  # if_description after the ones that matter
        self.blocks.append(block(o, 1, struct.pack(o + "HHI", linktype, 0, snaplen) + options(o, opts)))
        self.ifaces.append((resolution(tsresol), tsoffset or 0))
        return len(self.ifaces) - 1

    def ticks(self, iface, time_ns) -> int:
        per_sec, offset = self.ifaces[iface]
        t = (time_ns - offset * 10**9) * per_sec
        assert t % 10**9 == 0, f"{time_ns} ns is not exact in {per_sec} ticks/s"
        return t // 10**9

    def epb(self, iface, time_ns, data, orig=None, ticks=None):
        """Enhanced packet block (type 6) with an epb_flags option (inbound); ``ticks`` overrides the time."""
        o, ts = self.order, self.ticks(iface, time_ns) if ticks is None else ticks
        body = struct.pack(o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), orig or len(data))
        self.blocks.append(block(o, 6, body + _pad4(data) + options(o, [(2, struct.pack(o + "I", 1))])))

    def opb(self, iface, time_ns, data, orig=None):
        """Obsolete packet block (type 2)."""
        o, ts = self.order, self.ticks(iface, time_ns)
        body = struct.pack(o + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), orig or len(data))
        self.blocks.append(block(o, 2, body + _pad4(data)))

    def spb(self, data, orig=None):
        """Simple packet block (type 3): interface 0, no timestamp."""
        self.blocks.append(block(self.order, 3, struct.pack(self.order + "I", orig or len(data)) + _pad4(data)))

    def nrb(self):
        """Name resolution block (type 4): one IPv4 and one IPv6 record."""
        o = self.order
        recs = [(1, _ip("10.0.0.1") + b"client.example\0"), (2, _ip("2001:db8::1") + b"v6.example\0")]
        self.blocks.append(block(o, 4, options(o, recs)))

    def isb(self, iface=0):
        """Interface statistics block (type 5) with isb_ifrecv."""
        o = self.order
        ifrecv = options(o, [(4, struct.pack(o + "Q", 7))])
        self.blocks.append(block(o, 5, struct.pack(o + "III", iface, 0, 0) + ifrecv))

    def unknown(self, btype=0x00000BAD, body=b"\xde\xad\xbe\xef unknown block body"):
        """A block the reader does not know: 0xBAD is a custom block (PEN, then data)."""
        self.blocks.append(block(self.order, btype, body))

    def raw(self, data: bytes):
        self.blocks.append(data)

    def bytes(self) -> bytes:
        return b"".join(self.blocks)


def write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return path
