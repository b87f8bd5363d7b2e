"""The link-level encapsulations :mod:`.tunnels` steps through, one header each:
VLAN tags, LLC/SNAP, MPLS, PPPoE, 802.1ah PBB, Cisco FabricPath, and an inner
Ethernet frame (transparent Ethernet bridging, 0x6558).

Each step takes a :class:`~.tunnels.Walk` and rows ``j`` whose kind is one of
its EtherTypes, and sets their next kind and offset (0 = DEAD: nothing we read).
"""

from __future__ import annotations

import numpy as np

DEAD = 0
IPV4, IPV6, MPLS = 0x0800, 0x86DD, 0x8847
MAX_LABELS = 16  # an MPLS stack deeper than this is given up
_PPP = np.zeros(1 << 16, np.int64)  # PPP protocol -> EtherType
_PPP[[0x0021, 0x0057, 0x0281, 0x0283]] = IPV4, IPV6, MPLS, 0x8848
_COMMON = np.zeros(1 << 16, bool)  # EtherTypes that make 14 bytes look like an Ethernet header
_COMMON[[IPV4, IPV6, 0x8100, 0x88A8, 0x9100, MPLS, 0x8848, 0x8864]] = True


def mix(x):
    """splitmix64's finaliser: a well-spread uint64 hash of a uint64 (for the context)."""
    x = np.asarray(x, np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _inner_ethernet(w, j, at):
    """An Ethernet frame starts at ``at``: on to its EtherType."""
    w.kind[j], w.off[j] = w.b.u16(at + 12).astype(np.int64), at + 14


def vlan(w, j):
    """802.1Q, 802.1ad (QinQ) and 0x9100 tags: the VLAN id (not the priority) goes
    into the context."""
    o = w.off[j]
    if w.ctx is not None:
        w.mark(j, mix((w.b.u16(o) & np.uint16(0x0FFF)).astype(np.uint64) | np.uint64(1 << 40)))
    w.kind[j], w.off[j] = w.b.u16(o + 2).astype(np.int64), o + 4


def llc_snap(w, j):
    """An 802.3 length field, then LLC AA AA 03 and SNAP (OUI, EtherType)."""
    b, o = w.b, w.off[j]
    et = b.u16(o + 6).astype(np.int64)
    ok = (b.u16(o) == 0xAAAA) & (b.u8_(o + 2) == 3) & (et > 1500)
    w.kind[j], w.off[j] = np.where(ok, et, DEAD), o + 8


def mpls(w, j):
    """A label stack to its bottom-of-stack bit; then IPv4 or IPv6 by the first
    nibble, else an Ethernet pseudowire: with no control word when its bytes 12-13
    are a common EtherType (a MAC may start with nibble 0 too), else after a control
    word (first nibble 0). Wireshark decides alike, though it also asks whether
    the MACs' OUIs are known."""
    b, p = w.b, w.off[j].copy()
    open_ = np.ones(len(j), bool)
    for _ in range(MAX_LABELS):
        k = np.flatnonzero(open_)
        if not len(k):
            break
        bottom = (b.u8_(p[k] + 2) & 1) == 1
        p[k] += 4
        open_[k[bottom]] = False
    nibble = b.u8_(p) >> 4
    ip = (nibble == 4) | (nibble == 6)
    plain = _COMMON[b.u16(p + 12)]
    cw = ~ip & ~plain & (nibble == 0)
    eth = np.where(cw, p + 4, p)  # the Ethernet frame, after the control word if there is one
    kind = np.where(nibble == 4, IPV4, np.where(nibble == 6, IPV6, b.u16(eth + 12).astype(np.int64)))
    w.kind[j], w.off[j] = np.where(open_, DEAD, kind), np.where(ip, p, eth + 14)


def pppoe(w, j):
    """A PPPoE session (version 1, type 1, code 0) carrying PPP: IPv4, IPv6 or MPLS."""
    b, o = w.b, w.off[j]
    ok = (b.u16(o) == 0x1100)
    w.kind[j], w.off[j] = np.where(ok, _PPP[b.u16(o + 6)], DEAD), o + 8


def pbb(w, j):
    """802.1ah provider backbone bridging: a 4-byte I-tag, then the customer's frame."""
    _inner_ethernet(w, j, w.off[j] + 4)


def fabricpath(w, j):
    """Cisco FabricPath: the outer MACs, 0x8903 and a 2-byte FTag/TTL, then the
    classic Ethernet frame."""
    _inner_ethernet(w, j, w.off[j] + 2)


def bridged(w, j):
    """Transparent Ethernet bridging (0x6558, in GRE or Geneve): an Ethernet frame."""
    _inner_ethernet(w, j, w.off[j])


STEPS = {
    (0x8100, 0x88A8, 0x9100): vlan,
    tuple(range(1, 1501)): llc_snap,
    (MPLS, 0x8848): mpls,
    (0x8864,): pppoe,
    (0x88E7,): pbb,
    (0x8903,): fabricpath,
    (0x6558,): bridged,
}
"""The EtherTypes each step reads."""
