"""From capture records to TCP segments: link layer, IPv4/IPv6, TCP, and the
tunnels around them.

Two passes. The cheap one runs over every record and finds the TCP header of
each segment with its flags, ports, sequence and acknowledgement numbers: the
fields the tracker's prefilter reads. ``TcpBatch.select`` decodes the rest (time,
addresses, payload length) only for the segments asked for, and
``TcpBatch.addresses`` only the addresses, for the few the prefilter must tell apart.
Every read is a numpy gather by byte offset; offsets past a packet's captured
length are masked out, never trusted.

The first pass reads plain TCP (link, VLAN tags, IP, TCP) and nothing else, so
the common capture pays nothing for tunnels. The records it finds no TCP in go
through :func:`.tunnels.walk` (GRE, VXLAN, MPLS, ...); their segments carry the
innermost IP header's addresses and lengths.
"""

from __future__ import annotations

import numpy as np

from ..errors import CaptureError
from ..segments import SEGMENT, ZERO_HIGH, TcpBatch
from . import links, tunnels
from .decoding import DEFAULT, Decapsulation
from .records import Records, be_u64, be_views, le_views

_BUILTIN = {
    0: "BSD loopback (NULL)", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP",
    108: "OpenBSD loopback (LOOP)", 113: "Linux cooked (SLL)", 228: "raw IPv4", 229: "raw IPv6",
    276: "Linux cooked v2 (SLL2)",
}
LINKTYPES = {**links.NAMES, **_BUILTIN}
_OTHER_NAMES = {187: "Bluetooth HCI", 189: "USB Linux", 195: "IEEE 802.15.4", 220: "USB Linux mmapped", 249: "USBPcap"}
_VLAN = (0x8100, 0x88A8, 0x9100)
_TAGGED = 255
_ETHER = np.zeros(1 << 16, np.uint8)  # EtherType -> IP version (0: not IP), or _TAGGED for a VLAN tag
_ETHER[0x0800], _ETHER[0x86DD], _ETHER[list(_VLAN)] = 4, 6, _TAGGED
_IPV4_HEADER = tunnels.IPV4_HEADER


def check_linktype(path: str, linktype: int) -> None:
    if linktype not in LINKTYPES:
        name = _OTHER_NAMES.get(linktype)
        what = f" ({name})" if name else ""
        raise CaptureError(path, f"unsupported link type {linktype}{what}; hs reads Ethernet, Linux cooked, loopback and raw IP captures "
                                 "and the link types in docs/tunnels.md; rerun with --reader tshark for the rest")


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


def _link(b: _Bytes, linktype: int, s: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """IP version (4, 6, or 0 for anything else), network-layer offset, and how
    many records were protected (encrypted 802.11) frames."""
    if linktype not in _BUILTIN:
        et, off, protected = links.link(b, linktype, s, end)
        return *_ethertype(b, np.asarray(et, np.uint16), np.asarray(off, np.int64)), protected
    if linktype == 1:
        return *_ethertype(b, b.u16(s + 12), s + 14), 0
    if linktype == 113:
        return *_ethertype(b, b.u16(s + 14), s + 16), 0
    if linktype == 276:
        return *_ethertype(b, b.u16(s), s + 20), 0
    if linktype == 0:  # the capturing host's byte order, which the file does not record
        le = b.le32[np.minimum(s, b.last)]
        return _loopback_family(np.where(le <= 0xFFFF, le, b.u32(s))), s + 4, 0
    if linktype == 108:
        return _loopback_family(b.u32(s)), s + 4, 0
    version = (b.u8_(s) >> 4).astype(np.uint8)
    allowed = {228: (4,), 229: (6,)}.get(linktype, (4, 6))
    version = np.where(np.isin(version, allowed), version, 0).astype(np.uint8)
    return version, s.copy(), 0


def _link_kind(b: _Bytes, linktype: int, s: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the link header carries, as :mod:`.tunnels` reads it: an EtherType
    (0 for none) and its offset."""
    if linktype not in _BUILTIN:
        et, off, _ = links.link(b, linktype, s, end)  # protected frames were counted by the first pass
        return np.asarray(et, np.int64), np.asarray(off, np.int64)
    at = {1: 12, 113: 14, 276: 0}.get(linktype)
    if at is not None:
        return b.u16(s + at).astype(np.int64), s + (20 if linktype == 276 else at + 2)
    version, off, _ = _link(b, linktype, s, end)  # loopback and raw IP: the family or version says it
    return np.where(version == 4, tunnels.IPV4, np.where(version == 6, tunnels.IPV6, 0)), off


def _ipv4(b: _Bytes, o: np.ndarray, end: np.ndarray):
    """TCP offset of IPv4 packets and whether each is a TCP first fragment."""
    ihl = _IPV4_HEADER[b.u8_(o)]
    # the word at byte 6 holds the flags and fragment offset, the TTL and the protocol
    ok = ((b.u32(o + 6) & 0x1FFF00FF) == 6) & (ihl != 0) & (o + 20 <= end)
    return o + ihl, ok


def _ipv6(b: _Bytes, o: np.ndarray, end: np.ndarray):
    """TCP offset of IPv6 packets after any extension headers; non-first fragments dropped."""
    ok, l4, nh, _ = tunnels.ipv6_chain(b, o, end)
    return l4, ok & (nh == 6)


def _column(rows: np.ndarray, offset: int, dtype: str) -> np.ndarray:
    """A view of ``dtype`` at byte ``offset`` of every row of a structured array."""
    return np.ndarray(len(rows), dtype, rows, offset, (rows.itemsize,))


def _linktypes(rec: Records):
    """``(linktype, rows)`` for each link type among the records (rows None: all)."""
    if isinstance(rec.linktype, (int, np.integer)):
        return [(int(rec.linktype), None)]
    return [(int(lt), np.flatnonzero(rec.linktype == lt)) for lt in np.unique(rec.linktype)]


def _decapsulate(b: _Bytes, rec: Records, rows: np.ndarray, decapsulation: Decapsulation):
    """Walk records ``rows`` from their link header through every encapsulation: the
    :class:`~.tunnels.Walk`, and which of them end in a TCP header whose flags and
    window were captured."""
    start, end = rec.start[rows], rec.start[rows] + rec.caplen[rows]
    kind, off = np.zeros(len(rows), np.int64), start.copy()
    for lt, which in _linktypes(rec):
        if which is None:
            kind, off = _link_kind(b, lt, start, end)
        else:
            k = np.flatnonzero(rec.linktype[rows] == lt)
            kind[k], off[k] = _link_kind(b, lt, start[k], end[k])
    w = tunnels.Walk(b, kind, off, end, decapsulation)
    return w, tunnels.walk(w, decapsulation.max_depth) & (w.off + 16 <= end)


def decode(rec: Records, decapsulation: Decapsulation = DEFAULT) -> TcpBatch:
    """The TCP segments among ``rec``, in record order, unwrapped from the tunnels
    ``decapsulation`` names."""
    b = _Bytes(rec.buf)
    start, end = rec.start, rec.start + rec.caplen
    n = len(start)
    version = np.zeros(n, np.uint8)
    l3 = start.copy()
    protected = 0
    for lt, rows in _linktypes(rec):
        if rows is None:
            version, l3, protected = _link(b, lt, start, end)
        else:
            version[rows], l3[rows], p = _link(b, lt, start[rows], end[rows])
            protected += p
    l4 = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    for v, parse in ((4, _ipv4), (6, _ipv6)):
        rows = np.flatnonzero(version == v)
        if len(rows):
            l4[rows], ok[rows] = parse(b, l3[rows], end[rows])
    ok &= l4 + 16 <= end  # through the flags and window; options and payload may be cut by the snap length
    context = None
    if decapsulation.context:  # every record walked, for its VLAN ids too
        w, ok = _decapsulate(b, rec, np.arange(n), decapsulation)
        l3, l4, version, context = w.l3, w.off, w.version, w.ctx
    elif not ok.all():
        deeper = np.flatnonzero(~ok)
        w, found = _decapsulate(b, rec, deeper, decapsulation)
        if found.any():
            inner = deeper[found]
            ok[inner], l3[inner], l4[inner], version[inner] = True, w.l3[found], w.off[found], w.version[found]
    if ok.all():  # every record a TCP segment, as in most captures: no copies
        rows = np.arange(n)
    else:
        rows = np.flatnonzero(ok)
        l3, l4, version = l3[rows], l4[rows], version[rows]
        context = None if context is None else context[rows]
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
                    packets=n, addresses=addresses, times=lambda i: rec.time_ns(rows[np.asarray(i, np.int64)]),
                    context=None if context is None else context.__getitem__, protected=protected)
