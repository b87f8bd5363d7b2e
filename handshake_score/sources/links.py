"""Link types beyond Ethernet, cooked and raw IP: what each record's link header
carries, as an EtherType and the offset where that payload starts.

:func:`link` is called by :mod:`.decode` for every link type in :data:`NAMES`;
it returns, for records starting at ``s`` and ending at ``end``, the EtherType
of what follows the link header (0x0800 IPv4, 0x86DD IPv6, 0x8847 MPLS, ...;
0 for anything that cannot carry TCP) and its byte offset, and how many records
were skipped as protected (encrypted 802.11) frames.

One small function per link-type family, each over all rows at once. Every
read of a function lies before the offset it returns, so one test of that
offset against ``end`` (in :func:`link`) drops every row whose link header was
cut or lied about its length: the gathers clip to the buffer and may have read
garbage for those rows, which is then never used.
"""

from __future__ import annotations

import numpy as np

NAMES: dict[int, str] = {  # as Wireshark's capinfos names them ("File encapsulation")
    9: "PPP", 50: "PPP", 51: "PPP-over-Ethernet session", 100: "RFC 1483 ATM", 104: "Cisco HDLC",
    105: "IEEE 802.11 Wireless LAN", 117: "OpenBSD PF Firewall logs",
    119: "IEEE 802.11 plus Prism II monitor mode radio header", 127: "IEEE 802.11 plus radiotap radio header",
    163: "IEEE 802.11 plus AVS radio header", 192: "Per-Packet Information header", 226: "Solaris IPNET",
    239: "NFLOG", 242: "IP over IB", 258: "Apple PKTAP",
}

IPV4, IPV6, MPLS = 0x0800, 0x86DD, 0x8847
_PPP = np.zeros(1 << 16, np.int64)  # PPP protocol number -> EtherType
_PPP[[0x0021, 0x0057, 0x0281, 0x0283]] = IPV4, IPV6, MPLS, 0x8848
_NFLOG_PAYLOAD, _NFLOG_PACKET_HDR = 9, 1
MAX_TLVS = 32  # NFLOG defines 21 attribute types; a record with more is given up
_WLAN_PROTECTED = 0x40


def _le16(b, i):
    return b.le32[np.minimum(i, b.last)] & np.uint32(0xFFFF)


def _le32(b, i):
    return b.le32[np.minimum(i, b.last)]


def _family(af, v4, v6):
    """An address family field -> EtherType: ``v4`` and ``v6`` are this system's values."""
    return np.where(np.isin(af, v4), IPV4, np.where(np.isin(af, v6), IPV6, 0))


def _snap(b, o):
    """LLC AA AA 03 and a SNAP OUI of 00 00 00 (or 00 00 F8, 802.1H) at ``o``: the EtherType after it."""
    oui = b.u32(o + 2)
    ok = (b.u16(o) == 0xAAAA) & ((oui == 0x03000000) | (oui == 0x030000F8))
    return np.where(ok, b.u16(o + 6), 0), o + 8


def _ppp_protocol(b, p):
    """The PPP protocol field at ``p``: one byte when compressed (an odd first byte), else two."""
    first = b.u8_(p).astype(np.int64)
    short = (first & 1) == 1
    return _PPP[np.where(short, first, b.u16(p))], p + np.where(short, 1, 2)


def ppp(b, s, end):
    """PPP (9) and PPP in HDLC-like framing (50), read alike as Wireshark does: address and
    control FF 03 when not compressed away, then the protocol; a Cisco HDLC frame
    (address 0F or 8F) may come on the same link."""
    first = b.u8_(s)
    hdlc = (first == 0x0F) | (first == 0x8F)
    et, off = _ppp_protocol(b, s + np.where(b.u16(s) == 0xFF03, 2, 0))
    return np.where(hdlc, b.u16(s + 2), et), np.where(hdlc, s + 4, off)


def ppp_ether(b, s, end):
    """PPPoE session (51): version/type 0x11, code 0, session id, length, then PPP."""
    et, off = _ppp_protocol(b, s + 6)
    return np.where(b.u16(s) == 0x1100, et, 0), off


def chdlc(b, s, end):
    """Cisco HDLC (104): address, control, and an EtherType."""
    return b.u16(s + 2), s + 4


def ipoib(b, s, end):
    """IP over InfiniBand (242): a 40-byte pseudo-header (the Global Route Header, or the
    destination's address when there is none), an EtherType and two reserved bytes."""
    return b.u16(s + 40), s + 44


def atm_rfc1483(b, s, end):
    """ATM with RFC 1483 LLC encapsulation (100): LLC/SNAP, then the packet."""
    return _snap(b, s)


def pflog(b, s, end):
    """OpenBSD/FreeBSD pf's log (117): the header's length (rounded up to 4 bytes, as
    libpcap does) and the address family (IPv6 is 24, 28 or 30 by BSD)."""
    size = b.u8_(s).astype(np.int64)
    et = _family(b.u8_(s + 1), [2], [24, 28, 30])
    return np.where(size >= 4, et, 0), s + ((size + 3) & ~3)


def ipnet(b, s, end):
    """Solaris IPNET (226): version 2, the address family (2 IPv4, 26 IPv6), 24 bytes in all."""
    return np.where(b.u8_(s) == 2, _family(b.u8_(s + 1), [2], [26]), 0), s + 24


def pktap(b, s, end):
    """Apple's PKTAP (258), little-endian: the header's length, record type 1 (a packet),
    and the packet's own link type, of which Ethernet, BSD loopback and raw IP are read."""
    size, inner = _le32(b, s).astype(np.int64), _le32(b, s + 8)
    o = s + size
    ok = (size >= 12) & (_le32(b, s + 4) == 1)
    et = np.select([inner == 1, inner == 0, inner == 12],
                   [b.u16(o + 12), _family(_le32(b, o), [2], [24, 28, 30]),
                    _family(b.u8_(o) >> 4, [4], [6])], 0)
    off = np.select([inner == 1, inner == 0], [o + 14, o + 4], o)
    return np.where(ok, et, 0), np.where(ok, off, s)


def nflog(b, s, end):
    """Linux netfilter's NFLOG (239): family (2 IPv4, 10 IPv6, 7 a bridge, where the
    packet header's hardware protocol says: the kernel puts that TLV first), version 0,
    resource id; then TLVs (length with the 4-byte TLV header, type; padded to 4 bytes)
    in any order. The packet is the payload TLV's value. Each round reads one TLV of
    every row still looking; rows that found the payload, or whose TLVs stopped making
    sense, drop out."""
    n = len(s)
    pos, found = s + 4, np.zeros(n, bool)
    hw = np.zeros(n, np.int64)
    # TLVs are in the capturing host's byte order (big-endian on some MIPS routers): the
    # first TLV is short, so the zero byte of its length tells which
    big = (b.u8_(s + 4) == 0) & (b.u8_(s + 5) != 0)
    live = np.flatnonzero(b.u8_(s + 1) == 0)
    for _ in range(MAX_TLVS):
        if not len(live):
            break
        p, be = pos[live], big[live]
        size = np.where(be, b.u16(p), _le16(b, p)).astype(np.int64)
        kind = np.where(be, b.u16(p + 2), _le16(b, p + 2)) & 0x3FFF  # without the NLA_F_* bits
        fits = (size >= 4) & (p + size <= end[live])
        payload = fits & (kind == _NFLOG_PAYLOAD)
        header = np.flatnonzero(fits & (kind == _NFLOG_PACKET_HDR) & (size >= 8))
        hw[live[header]] = b.u16(p[header] + 4)
        found[live[payload]] = True
        pos[live] = np.where(payload, p + 4, p + ((size + 3) & ~3))
        live = live[fits & ~payload]
    family = b.u8_(s)
    et = np.where(family == 7, hw, _family(family, [2], [10]))
    return np.where(found, et, 0), pos


def _wlan(b, h, end):
    """An 802.11 frame at ``h``: data frames that carry data (type 2, not the Null
    subtypes), not fragments; WDS (to and from the DS) adds a fourth address, QoS
    subtypes their 2-byte control and, with the order bit, a 4-byte HT control. An
    A-MSDU's first subframe is read. Protected frames are skipped: their EtherType is 0
    and they come back in the mask (those whose header is all there)."""
    fc, flags = b.u8_(h), b.u8_(h + 1)
    data = ((fc & 0x0F) == 0x08) & ((fc & 0x40) == 0)
    qos, order = (fc & 0x80) != 0, (flags & 0x80) != 0
    at_qos = h + 24 + np.where((flags & 3) == 3, 6, 0)
    o = at_qos + np.where(qos, 2, 0) + np.where(qos & order, 4, 0)
    amsdu = qos & ((b.u8_(at_qos) & 0x80) != 0)
    fragment = ((flags & 0x04) != 0) | ((b.u8_(h + 22) & 0x0F) != 0)
    protected = data & ((flags & _WLAN_PROTECTED) != 0)
    et, off = _snap(b, o + np.where(amsdu, 14, 0))
    return np.where(data & ~fragment & ~protected, et, 0), off, protected & (o <= end)


def ieee80211(b, s, end):
    """802.11 (105), no radio header."""
    return _wlan(b, s, end)


def radiotap(b, s, end):
    """Radiotap (127): version 0, a pad byte, the header's length (little-endian), then 802.11."""
    size = _le16(b, s + 2).astype(np.int64)
    et, off, protected = _wlan(b, s + size, end)
    ok = (b.u8_(s) == 0) & (size >= 8)
    return np.where(ok, et, 0), off, ok & protected


def ppi(b, s, end):
    """Per-Packet Information (192): version 0, flags, the header's length and the
    link type inside (little-endian); 802.11 is read."""
    size = _le16(b, s + 2).astype(np.int64)
    et, off, protected = _wlan(b, s + size, end)
    ok = (b.u8_(s) == 0) & (size >= 8) & (_le32(b, s + 4) == 105)
    return np.where(ok, et, 0), off, ok & protected


def prism(b, s, end):
    """Prism II monitor mode (119): a message code and the header's length in the
    capturing host's byte order (told by the code, which is small), then 802.11. An AVS
    header (163) may come under this link type too."""
    code_le = _le32(b, s)
    size = np.where(code_le < 0x10000, _le32(b, s + 4), b.u32(s + 4)).astype(np.int64)
    avs_et, avs_off, avs_protected = avs(b, s, end)
    et, off, protected = _wlan(b, s + np.minimum(size, 1 << 16), end)
    is_avs = (b.u32(s) & 0xFFFFFFF0) == 0x80211000
    return (np.where(is_avs, avs_et, et), np.where(is_avs, avs_off, off),
            np.where(is_avs, avs_protected, protected))


def avs(b, s, end):
    """AVS (163): version 0x8021100N and the header's length, big-endian, then 802.11."""
    size = b.u32(s + 4).astype(np.int64)
    et, off, protected = _wlan(b, s + np.minimum(size, 1 << 16), end)
    ok = ((b.u32(s) & 0xFFFFFFF0) == 0x80211000) & (size >= 8)
    return np.where(ok, et, 0), off, ok & protected


_LINKS = {9: ppp, 50: ppp, 51: ppp_ether, 100: atm_rfc1483, 104: chdlc, 105: ieee80211, 117: pflog, 119: prism,
          127: radiotap, 163: avs, 192: ppi, 226: ipnet, 239: nflog, 242: ipoib, 258: pktap}


def link(b, linktype: int, s: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """EtherType (0 for nothing that can carry TCP, or a header cut short), payload offset
    and the number of protected 802.11 frames, for rows starting at ``s``, ending at ``end``."""
    got = _LINKS[linktype](b, s, end)
    et, off = got[0], got[1]
    inside = off <= end
    protected = int(np.count_nonzero(got[2])) if len(got) == 3 else 0
    return np.where(inside, et, 0).astype(np.uint16), off.astype(np.int64), protected
