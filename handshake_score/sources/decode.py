"""From capture records to TCP segments: link layer, IPv4/IPv6, TCP.

Two passes. The cheap one runs over every record and finds the TCP header of
each segment with its flags, ports, sequence and acknowledgement numbers: the
fields the tracker's prefilter reads. ``TcpBatch.select`` decodes the rest (time,
addresses, payload length) only for the segments asked for, and
``TcpBatch.addresses`` only the addresses, for the few the prefilter must tell apart.
Every read is a numpy gather by byte offset; offsets past a packet's captured
length are masked out, never trusted.
"""

from __future__ import annotations

import numpy as np

from ..errors import CaptureError
from ..segments import SEGMENT, ZERO_HIGH, TcpBatch
from .records import Records, be_u64, be_views, le_views

LINKTYPES = {
    0: "BSD loopback (NULL)", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP",
    108: "OpenBSD loopback (LOOP)", 113: "Linux cooked (SLL)", 228: "raw IPv4", 229: "raw IPv6",
    276: "Linux cooked v2 (SLL2)",
}
_OTHER_NAMES = {105: "IEEE 802.11", 127: "802.11 radiotap", 187: "Bluetooth HCI", 189: "USB Linux", 220: "USB Linux mmapped"}
_VLAN = (0x8100, 0x88A8, 0x9100)
_TAGGED = 255
_ETHER = np.zeros(1 << 16, np.uint8)  # EtherType -> IP version (0: not IP), or _TAGGED for a VLAN tag
_ETHER[0x0800], _ETHER[0x86DD], _ETHER[list(_VLAN)] = 4, 6, _TAGGED
# the first byte of an IPv4 header -> its length in bytes, or 0 if it is not IPv4 with IHL >= 5
_IPV4_HEADER = np.array([(v & 15) * 4 if v >> 4 == 4 and v & 15 >= 5 else 0 for v in range(256)], np.int64)
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
    version = _ETHER[et]
    for _ in range(4):
        tagged = np.flatnonzero(version == _TAGGED)
        if not len(tagged):
            break
        off = off.copy()
        off[tagged] += 4
        version[tagged] = _ETHER[b.u16(off[tagged] - 2)]
    version[version == _TAGGED] = 0  # more tags than anyone stacks
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
    ihl = _IPV4_HEADER[b.u8_(o)]
    # the word at byte 6 holds the flags and fragment offset, the TTL and the protocol
    ok = ((b.u32(o + 6) & 0x1FFF00FF) == 6) & (ihl != 0) & (o + 20 <= end)
    return o + ihl, ok


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


def _column(rows: np.ndarray, offset: int, dtype: str) -> np.ndarray:
    """A view of ``dtype`` at byte ``offset`` of every row of a structured array."""
    return np.ndarray(len(rows), dtype, rows, offset, (rows.itemsize,))


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
    if ok.all():  # every record a TCP segment, as in most captures: no copies
        rows = np.arange(n)
    else:
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
        # addresses word by word through strided views of the rows (a 2-D byte gather is slower)
        k4, k6 = np.flatnonzero(v4), np.flatnonzero(~v4)
        for field, v4_at, v6_at in ((8, 12, 8), (26, 16, 24)):  # src, dst: offsets in the row and in IP
            if len(k4):
                _column(out, field + 8, ">u4")[k4] = 0xFFFF  # ::ffff:a.b.c.d
                _column(out, field + 12, ">u4")[k4] = b.u32(o3[k4] + v4_at)
            if len(k6):
                o = o3[k6] + v6_at
                _column(out, field, ">u8")[k6] = b.u64(o)
                _column(out, field + 8, ">u8")[k6] = b.u64(o + 8)
        return out

    def addresses(i: np.ndarray):
        i = np.asarray(i, np.int64)
        o3, v4 = l3[i], version[i] == 4
        if v4.all():  # as in most captures: the two addresses in one read
            both = b.u64(o3 + 12)
            mapped = np.uint64(0xFFFF << 32)  # ::ffff:a.b.c.d, as in SEGMENT
            return ZERO_HIGH, (both >> np.uint64(32)) | mapped, ZERO_HIGH, (both & np.uint64(0xFFFFFFFF)) | mapped
        out = []
        for v4_at, v6_at in ((12, 8), (16, 24)):  # src, dst
            high = np.zeros(len(i), np.uint64)
            low = np.zeros(len(i), np.uint64)
            if v4.any():  # ::ffff:a.b.c.d, as in SEGMENT
                low[v4] = b.u32(o3[v4] + v4_at).astype(np.uint64) | np.uint64(0xFFFF << 32)
            if not v4.all():
                o = o3[~v4] + v6_at
                high[~v4], low[~v4] = b.u64(o), b.u64(o + 8)
            out += [high, low]
        return tuple(out)

    return TcpBatch(word & 0x0FFF, (ports >> 16).astype(np.uint16), (ports & 0xFFFF).astype(np.uint16), seq, ack, select,
                    packets=n, addresses=addresses, times=lambda i: rec.time_ns(rows[np.asarray(i, np.int64)]))
