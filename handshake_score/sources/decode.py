"""From capture records to TCP segments: link layer, IPv4/IPv6, TCP.

Two passes. The cheap one runs over every record and finds the TCP header of
each segment with its flags, ports and acknowledgement number: the fields the
tracker's prefilter reads. ``TcpBatch.select`` decodes the rest (time,
addresses, sequence number, payload length) only for the segments asked for.
Every read is a numpy gather by byte offset; offsets past a packet's captured
length are masked out, never trusted.
"""

from __future__ import annotations

import numpy as np

from ..errors import CaptureError
from ..segments import SEGMENT, TcpBatch
from .records import Records, be_u64, be_views, le_views

LINKTYPES = {
    0: "BSD loopback (NULL)", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP",
    108: "OpenBSD loopback (LOOP)", 113: "Linux cooked (SLL)", 228: "raw IPv4", 229: "raw IPv6",
    276: "Linux cooked v2 (SLL2)",
}
_OTHER_NAMES = {105: "IEEE 802.11", 127: "802.11 radiotap", 187: "Bluetooth HCI", 189: "USB Linux", 220: "USB Linux mmapped"}
_VLAN = (0x8100, 0x88A8, 0x9100)
_IPV6_EXT = np.array([0, 43, 60, 135, 139, 140, 253, 254])  # length in 8-byte units, less one
_IPV6_FRAGMENT, _IPV6_AH = 44, 51


def check_linktype(path: str, linktype: int) -> None:
    if linktype not in LINKTYPES:
        name = _OTHER_NAMES.get(linktype)
        what = f" ({name})" if name else ""
        raise CaptureError(path, f"unsupported link type {linktype}{what}; hs reads Ethernet, Linux cooked, loopback and raw IP captures")


class _Bytes:
    """Gathers from one chunk, clipped to the buffer so a bogus offset reads garbage
    (masked out later) instead of raising."""

    def __init__(self, buf):
        self.u8, self.be16, self.be32 = be_views(buf)
        self.le32 = le_views(buf)[1]
        self.be64 = be_u64(buf)
        self.last = len(self.u8) - 8  # every gather clips here: safe for the widest

    def u8_(self, i):
        return self.u8[np.minimum(i, self.last)]

    def u16(self, i):
        return self.be16[np.minimum(i, self.last)]

    def u32(self, i):
        return self.be32[np.minimum(i, self.last)]

    def u64(self, i):
        return self.be64[np.minimum(i, self.last)]


def _ethertype(b: _Bytes, et: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step over 802.1Q / QinQ tags; the IP version and network-layer offset."""
    for _ in range(4):
        tagged = (et == _VLAN[0]) | (et == _VLAN[1]) | (et == _VLAN[2])
        if not tagged.any():
            break
        et = np.where(tagged, b.u16(off + 2), et)
        off = np.where(tagged, off + 4, off)
    version = np.where(et == 0x0800, 4, np.where(et == 0x86DD, 6, 0)).astype(np.uint8)
    return version, off


def _loopback_family(family: np.ndarray) -> np.ndarray:
    return np.where(family == 2, 4, np.where((family == 24) | (family == 28) | (family == 30), 6, 0)).astype(np.uint8)


def _link(b: _Bytes, linktype: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IP version (4, 6, or 0 for anything else) and network-layer offset."""
    if linktype == 1:
        return _ethertype(b, b.u16(s + 12), s + 14)
    if linktype == 113:
        return _ethertype(b, b.u16(s + 14), s + 16)
    if linktype == 276:
        return _ethertype(b, b.u16(s), s + 20)
    if linktype == 0:  # the capturing host's byte order, which the file does not record
        le = b.le32[np.minimum(s, b.last)]
        return _loopback_family(np.where(le <= 0xFFFF, le, b.u32(s))), s + 4
    if linktype == 108:
        return _loopback_family(b.u32(s)), s + 4
    version = (b.u8_(s) >> 4).astype(np.uint8)
    allowed = {228: (4,), 229: (6,)}.get(linktype, (4, 6))
    version = np.where(np.isin(version, allowed), version, 0).astype(np.uint8)
    return version, s.copy()


def _ipv4(b: _Bytes, o: np.ndarray, end: np.ndarray):
    """TCP offset of IPv4 packets and whether each is a TCP first fragment."""
    b0 = b.u8_(o)
    ihl = (b0 & 0x0F).astype(np.int64) * 4
    ok = ((b0 >> 4) == 4) & (ihl >= 20) & (b.u8_(o + 9) == 6) & ((b.u16(o + 6) & 0x1FFF) == 0)
    return o + ihl, ok & (o + 20 <= end)


def _ipv6(b: _Bytes, o: np.ndarray, end: np.ndarray):
    """TCP offset of IPv6 packets after any extension headers; non-first fragments dropped."""
    ok = ((b.u8_(o) >> 4) == 6) & (o + 40 <= end)
    nh = b.u8_(o + 6).astype(np.int64)
    l4 = o + 40
    for _ in range(10):
        ext = np.isin(nh, _IPV6_EXT)
        frag, ah = nh == _IPV6_FRAGMENT, nh == _IPV6_AH
        j = np.flatnonzero((ext | frag | ah) & ok)
        if not len(j):
            break
        p = l4[j]
        hlen = b.u8_(p + 1).astype(np.int64)
        size = np.where(ah[j], (hlen + 2) * 4, np.where(frag[j], 8, (hlen + 1) * 8))
        later_fragment = frag[j] & ((b.u16(p + 2) & 0xFFF8) != 0)
        ok[j[later_fragment]] = False
        nh[j] = b.u8_(p)
        l4[j] = p + size
    return l4, ok & (nh == 6)


def decode(rec: Records) -> TcpBatch:
    """The TCP segments among ``rec``, in record order."""
    b = _Bytes(rec.buf)
    start, end = rec.start, rec.start + rec.caplen
    n = len(start)
    version = np.zeros(n, np.uint8)
    l3 = start.copy()
    if isinstance(rec.linktype, (int, np.integer)):
        version, l3 = _link(b, int(rec.linktype), start)
    else:
        for lt in np.unique(rec.linktype):
            rows = np.flatnonzero(rec.linktype == lt)
            version[rows], l3[rows] = _link(b, int(lt), start[rows])
    l4 = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    for v, parse in ((4, _ipv4), (6, _ipv6)):
        rows = np.flatnonzero(version == v)
        if len(rows):
            l4[rows], ok[rows] = parse(b, l3[rows], end[rows])
    ok &= l4 + 16 <= end  # through the flags and window; options and payload may be cut by the snap length
    rows = np.flatnonzero(ok)
    l3, l4, version = l3[rows], l4[rows], version[rows]
    head = b.u64(l4)        # ports, sequence number
    tail = b.u64(l4 + 8)    # acknowledgement number, data offset and flags, window
    ports, seq = (head >> np.uint64(32)).astype(np.uint32), head.astype(np.uint32)
    ack, word = (tail >> np.uint64(32)).astype(np.uint32), (tail >> np.uint64(16)).astype(np.uint16)

    def select(i: np.ndarray) -> np.ndarray:
        i = np.asarray(i, np.int64)
        r, o3, o4 = rows[i], l3[i], l4[i]
        v4 = version[i] == 4
        out = np.zeros(len(i), SEGMENT)
        out["time_ns"] = rec.time_ns(r)
        out["sport"], out["dport"] = ports[i] >> 16, ports[i] & 0xFFFF
        out["flags"] = word[i] & 0x0FFF
        out["seq"], out["ack"] = seq[i], ack[i]
        doff = (word[i] >> 12).astype(np.int64) * 4
        # payload from the IP lengths; a zero length (segmentation offload) falls back to the wire length
        iplen = np.where(v4, b.u16(o3 + 2).astype(np.int64), b.u16(o3 + 4).astype(np.int64) + 40)
        if (iplen == np.where(v4, 0, 40)).any():
            wire = rec.origlen(r) - (o3 - start[r])
            iplen = np.where(iplen == np.where(v4, 0, 40), wire, iplen)
        out["payload"] = np.maximum(iplen - (o4 - o3) - doff, 0)
        raw = out.view(np.uint8).reshape(len(i), SEGMENT.itemsize)
        k4, k6 = np.flatnonzero(v4), np.flatnonzero(~v4)
        if len(k4):
            raw[k4, 18:20] = raw[k4, 36:38] = 0xFF  # ::ffff:a.b.c.d
            raw[k4, 20:24] = b.u8[o3[k4, None] + np.arange(12, 16)]
            raw[k4, 38:42] = b.u8[o3[k4, None] + np.arange(16, 20)]
        if len(k6):
            raw[k6, 8:24] = b.u8[o3[k6, None] + np.arange(8, 24)]
            raw[k6, 26:42] = b.u8[o3[k6, None] + np.arange(24, 40)]
        return out

    return TcpBatch(word & 0x0FFF, (ports >> 16).astype(np.uint16), (ports & 0xFFFF).astype(np.uint16), seq, ack, select, packets=n)
