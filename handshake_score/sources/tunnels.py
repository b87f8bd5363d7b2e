"""Decapsulation: from a link header's EtherType to the innermost TCP header.

Only the packets that are not plain TCP at the first level come here (the
plain path in :mod:`.decode` never does), or every packet when the context
(VLAN ids, tunnel endpoints) is asked for. Each row has a *kind*, what is at
its offset: an EtherType (0x0800 IPv4, 0x8847 MPLS, 0x6558 an Ethernet frame,
1..1500 an 802.3 length, so LLC/SNAP), or ``IP + protocol`` once an IP header
is behind (``TCP``, ``UDP``, ``GRE``). :func:`walk` steps every row whose kind
has a step through one header per round, up to ``max_depth`` rounds, until it
is ``TCP`` (found) or ``DEAD`` (not TCP, cut, lying or fragmented). Kind 0 is
``DEAD``: a header that names nothing we read.

Every step reads a subset of rows with numpy gathers (clipped to the buffer)
and moves each row's offset forward only; a row whose offset passes its
packet's captured length dies, so no segment comes from bytes past it.

The UDP ports of each tunnel come from
:class:`~handshake_score.sources.decoding.Decapsulation`. The steps of the
link-level encapsulations (VLAN, LLC/SNAP, MPLS, PPPoE, PBB, FabricPath) are
in :mod:`.shims`; IP, GRE/ERSPAN and the UDP tunnels here.
"""

from __future__ import annotations

import numpy as np

from . import shims
from .decoding import Decapsulation
from .shims import mix

IP = 0x10000  # kind of an IP payload: IP + protocol number
TCP, UDP, GRE = IP + 6, IP + 17, IP + 47
DEAD = shims.DEAD
IPV4, IPV6 = 0x0800, 0x86DD
# the first byte of an IPv4 header -> its length in bytes, or 0 if it is not IPv4 with IHL >= 5
IPV4_HEADER = np.array([(v & 15) * 4 if v >> 4 == 4 and v & 15 >= 5 else 0 for v in range(256)], np.int64)
IPV6_EXT = np.array([0, 43, 60, 135, 139, 140, 253, 254])  # length in 8-byte units, less one
IPV6_FRAGMENT, IPV6_AH = 44, 51
_PROTO = np.zeros(256, np.int64)  # IP protocol -> kind: what we step into
_PROTO[[4, 41, 6, 17, 47]] = IPV4, IPV6, TCP, UDP, GRE


class Walk:
    """Rows being unwrapped. ``kind``/``off``: what is where; ``end``: each packet's
    captured end; ``l3``/``version``: the innermost IP header seen; ``ctx``: the sum
    of hashes of VLAN ids and tunnel endpoints (None when not asked)."""

    def __init__(self, b, kind, off, end, decapsulation: Decapsulation):
        n = len(kind)
        self.b, self.kind, self.off, self.end = b, kind.astype(np.int64), off.astype(np.int64), end
        self.l3, self.version = np.zeros(n, np.int64), np.zeros(n, np.uint8)
        self.ctx = np.zeros(n, np.uint64) if decapsulation.context else None
        self.dec = decapsulation

    def mark(self, j, values):
        """Add ``values`` (hashes) to the context of rows ``j``."""
        if self.ctx is not None:
            self.ctx[j] += values


def ethernet(b, at):
    """An inner Ethernet frame at ``at``: its EtherType and payload offset."""
    return b.u16(at + 12).astype(np.int64), at + 14


def ip_kind(b, at):
    """Where a header says "IP" without saying which: the version nibble decides."""
    nibble = b.u8_(at) >> 4
    return np.where(nibble == 4, IPV4, np.where(nibble == 6, IPV6, DEAD))


# --- IP ---------------------------------------------------------------------------

def ipv4(w: Walk, j):
    """IPv4: TCP in a first fragment is read as the plain path reads it; a tunnel
    in any fragment is skipped (it would need reassembly)."""
    b, o = w.b, w.off[j]
    ihl = IPV4_HEADER[b.u8_(o)]
    word = b.u32(o + 6)  # flags and fragment offset, TTL, protocol
    proto, frag = (word & 0xFF).astype(np.int64), word >> 16
    kind = _PROTO[proto]
    whole = (frag & 0x3FFF) == 0
    ok = (ihl != 0) & (o + 20 <= w.end[j]) & (whole | ((kind == TCP) & ((frag & 0x1FFF) == 0)))
    w.kind[j] = np.where(ok, kind, DEAD)
    w.off[j], w.l3[j], w.version[j] = o + ihl, o, 4
    if w.ctx is not None:
        t = ok & (kind != TCP)
        both, v4 = b.u64(o[t] + 12), np.uint64(4 << 32)  # the two addresses; tagged apart from VLAN ids
        w.mark(j[t], mix((both >> np.uint64(32)) | v4) + mix((both & np.uint64(0xFFFFFFFF)) | v4))


def ipv6_chain(b, o: np.ndarray, end: np.ndarray):
    """IPv6 headers at ``o`` followed through their extension headers: ``(ok, at, nh,
    fragmented)``, where ``at`` is the offset of the protocol ``nh`` that follows them,
    ``ok`` False for what is not IPv6 or is a later fragment (no header of ours in it)
    and ``fragmented`` True for a first fragment with more to come. The plain path in
    :mod:`.decode` walks them with this too."""
    ok = ((b.u8_(o) >> 4) == 6) & (o + 40 <= end)
    nh = b.u8_(o + 6).astype(np.int64)
    p, fragmented = o + 40, np.zeros(len(o), bool)
    for _ in range(10):
        ext = np.isin(nh, IPV6_EXT)
        frag, ah = nh == IPV6_FRAGMENT, nh == IPV6_AH
        k = np.flatnonzero((ext | frag | ah) & ok)
        if not len(k):
            break
        q = p[k]
        hlen = b.u8_(q + 1).astype(np.int64)
        field = b.u16(q + 2)
        ok[k[frag[k] & ((field & 0xFFF8) != 0)]] = False
        fragmented[k[frag[k] & ((field & 1) != 0)]] = True
        nh[k] = b.u8_(q)
        p[k] = q + np.where(ah[k], (hlen + 2) * 4, np.where(frag[k], 8, (hlen + 1) * 8))
    return ok, p, nh, fragmented


def ipv6(w: Walk, j):
    """IPv6 after its extension headers; fragments as for IPv4."""
    b, o = w.b, w.off[j]
    ok, p, nh, fragmented = ipv6_chain(b, o, w.end[j])
    kind = _PROTO[nh]
    ok &= ~fragmented | (kind == TCP)
    w.kind[j] = np.where(ok, kind, DEAD)
    w.off[j], w.l3[j], w.version[j] = p, o, 6
    if w.ctx is not None:
        t = ok & (kind != TCP)
        ends = [mix(mix(b.u64(o[t] + at)) ^ b.u64(o[t] + at + 8)) for at in (8, 24)]
        w.mark(j[t], ends[0] + ends[1])


# --- GRE and ERSPAN ----------------------------------------------------------------

def gre(w: Walk, j):
    """GRE version 0 (RFC 2784/2890): 4 bytes, and 4 more for each of the checksum
    (C), key (K) and sequence number (S) flags. ERSPAN type I is 0x88BE without a
    sequence number and no header of its own; type II has one (8 bytes); type III
    is 0x22EB, 12 bytes and an 8-byte platform subheader when its O bit is set."""
    b, o = w.b, w.off[j]
    flags, proto = b.u16(o).astype(np.int64), b.u16(o + 2).astype(np.int64)
    p = o + 4 + 4 * ((flags >> 15) & 1) + 4 * ((flags >> 13) & 1) + 4 * ((flags >> 12) & 1)
    kind = np.where(((flags & 0x4007) == 0) & (proto > 1500), proto, DEAD)  # no routing, version 0
    off = p.copy()
    erspan2 = (kind == 0x88BE) & ((flags & 0x1000) != 0)
    erspan1 = (kind == 0x88BE) & ~erspan2
    erspan3 = kind == 0x22EB
    at = np.where(erspan2, p + 8, np.where(erspan3, p + 12 + 8 * (b.u8_(p + 11) & 1), p))
    inner_kind, inner_off = ethernet(b, at)
    version = b.u8_(p) >> 4  # ERSPAN's own: 1 for type II, 2 for type III
    framed = erspan1 | (erspan2 & (version == 1)) | (erspan3 & (version == 2))
    kind = np.where(framed, inner_kind, np.where(erspan2 | erspan3, DEAD, kind))
    w.kind[j], w.off[j] = kind, np.where(framed, inner_off, off)


# --- UDP tunnels -------------------------------------------------------------------

def vxlan(b, p):
    """VXLAN (RFC 7348): 8 bytes, the I flag set, then an Ethernet frame."""
    kind, off = ethernet(b, p + 8)
    return np.where((b.u8_(p) & 0x08) != 0, kind, DEAD), off


def geneve(b, p):
    """Geneve (RFC 8926): 8 bytes and the options (length in 4-byte units), then
    what its protocol type names (0x6558 Ethernet, or IP)."""
    first, proto = b.u8_(p).astype(np.int64), b.u16(p + 2).astype(np.int64)
    ok = (first >> 6 == 0) & (proto > 1500)
    return np.where(ok, proto, DEAD), p + 8 + (first & 0x3F) * 4


def gtp(b, p):
    """GTP-U version 1 G-PDU (message type 0xFF): 8 bytes, 12 with any of the E,
    S, PN flags, then extension headers (length in 4-byte units, next type in
    their last byte) until next type 0, then an IP packet."""
    flags = b.u8_(p).astype(np.int64)
    ok = (flags >> 5 == 1) & ((flags & 0x10) != 0) & (b.u8_(p + 1) == 0xFF)
    q = p + 8 + 4 * ((flags & 7) != 0)
    nt = np.where((flags & 4) != 0, b.u8_(p + 11), 0).astype(np.int64)
    for _ in range(8):
        k = np.flatnonzero((nt != 0) & ok)
        if not len(k):
            break
        size = b.u8_(q[k]).astype(np.int64) * 4
        ok[k[size == 0]] = False
        nt[k] = b.u8_(q[k] + size - 1)
        q[k] += size
    ok &= nt == 0
    return np.where(ok, ip_kind(b, q), DEAD), q


def teredo(b, p):
    """Teredo (RFC 4380): an optional authentication indicator (0x0001, lengths),
    an optional origin indication (0x0000, 8 bytes), then IPv6."""
    q = p.copy()
    auth = b.u16(q) == 1
    q[auth] += 13 + b.u8_(q[auth] + 2).astype(np.int64) + b.u8_(q[auth] + 3)
    q[b.u16(q) == 0] += 8
    return np.where((b.u8_(q) >> 4) == 6, IPV6, DEAD), q


def ayiya(b, p):
    """AYIYA: 8 bytes, an identity of 2^n bytes, a signature of 4*m bytes (n, m in
    its first two bytes); a forward (opcode 1) carries next header 4 or 41."""
    idlen = np.int64(1) << (b.u8_(p) >> 4).astype(np.int64)
    siglen = (b.u8_(p + 1) >> 4).astype(np.int64) * 4
    opcode, nh = b.u8_(p + 2) & 15, b.u8_(p + 3)
    kind = np.where(opcode == 1, np.where(nh == 4, IPV4, np.where(nh == 41, IPV6, DEAD)), DEAD)
    return kind, p + 8 + idlen + siglen


def udp(w: Walk, j):
    """UDP to a tunnel's port: VXLAN and Geneve by destination port (the source
    port varies by flow), GTP-U, Teredo and AYIYA by either."""
    b, o, d = w.b, w.off[j], w.dec
    sport, dport = b.u16(o), b.u16(o + 2)
    either = lambda ports: np.isin(sport, ports) | np.isin(dport, ports)  # noqa: E731
    kind, off, free = np.full(len(j), DEAD, np.int64), o + 8, np.ones(len(j), bool)
    for hit, parse in ((np.isin(dport, d.vxlan_ports), vxlan), (np.isin(dport, d.geneve_ports), geneve),
                       (either(d.gtp_ports), gtp), (either(d.teredo_ports), teredo), (either(d.ayiya_ports), ayiya)):
        k = np.flatnonzero(hit & free)  # the first tunnel whose port matches reads it
        if len(k):
            kind[k], off[k] = parse(b, o[k] + 8)
            free[k] = False
    w.kind[j], w.off[j] = kind, off


# --- the loop -----------------------------------------------------------------------

STEPS = [None, *shims.STEPS.values(), ipv4, ipv6, gre, udp]
_TABLE = np.zeros(IP + 256, np.int8)  # kind -> index in STEPS (0: none)
for _i, _kinds in enumerate(shims.STEPS, 1):
    _TABLE[list(_kinds)] = _i
_TABLE[[IPV4, IPV6, GRE, UDP]] = range(len(STEPS) - 4, len(STEPS))


def walk(w: Walk, depth: int) -> np.ndarray:
    """Step every row through up to ``depth`` headers; which rows reached TCP."""
    for _ in range(depth):
        live = np.flatnonzero(_TABLE[w.kind])
        if not len(live):
            break
        step = _TABLE[w.kind[live]]
        for s in np.unique(step):
            STEPS[s](w, live[step == s])
        w.kind[w.off > w.end] = DEAD
    return w.kind == TCP
