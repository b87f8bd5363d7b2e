"""The TCP segment: the boundary between packet sources and the tracker.

A packet source turns capture records into a numpy structured array of
:data:`SEGMENT`, one row per TCP segment, holding only what the handshake
tracker needs. Addresses are 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped
IPv6 address (``::ffff:a.b.c.d``), so both families share one layout.

``flow`` overlaps ``src``, ``sport``, ``dst`` and ``dport`` (36 bytes, ports in
network byte order): one bytes value that names the direction of a connection
and hashes fast as a dictionary key.
"""

from __future__ import annotations

import ipaddress
import socket

import numpy as np

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, AE = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100

SEGMENT = np.dtype(
    {
        "names": ["time_ns", "src", "sport", "dst", "dport", "flow", "flags", "seq", "ack", "payload"],
        "formats": ["<i8", "V16", ">u2", "V16", ">u2", "V36", "<u2", "<u4", "<u4", "<u4"],
        "offsets": [0, 8, 24, 26, 42, 8, 44, 46, 50, 54],
        "itemsize": 58,
    }
)
"""One TCP segment. ``time_ns``: capture time in integer nanoseconds since the
Unix epoch; ``flags``: the 12 TCP flag bits (``AE`` is the old NS bit);
``payload``: TCP payload length in bytes (from the IP lengths, not the snap
length)."""

SEGMENT_IN_CONTEXT = np.dtype(
    {
        "names": ["time_ns", "src", "sport", "dst", "dport", "flow", "context", "key", "flags", "seq", "ack", "payload"],
        "formats": ["<i8", "V16", ">u2", "V16", ">u2", "V36", "<u8", "V44", "<u2", "<u4", "<u4", "<u4"],
        "offsets": [0, 8, 24, 26, 42, 8, 44, 8, 52, 54, 58, 62],
        "itemsize": 66,
    }
)
"""A :data:`SEGMENT` with where it was seen (``Decapsulation(context=True)``):
``context`` is :meth:`TcpBatch.context`, and ``key`` overlaps ``flow`` and
``context`` (44 bytes): the tracker's attempt key, like Zeek's ``vlan_fivetuple``,
so the same addresses and ports on two VLANs or behind two tunnels are two attempts."""

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # the range of time_ns, and of any difference of two
ZERO_HIGH = np.uint64(0)  # TcpBatch.addresses's high halves when every address is IPv4

_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def address(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IP address stored in a 16-byte ``src``/``dst`` value (trailing NULs
    that numpy may strip are restored)."""
    raw = bytes(raw).ljust(16, b"\x00")
    if raw[:12] == _V4_PREFIX:
        return ipaddress.IPv4Address(raw[12:])
    return ipaddress.IPv6Address(raw)


def address_text(raw: bytes) -> str:
    """``str(address(raw))``, with IPv4 formatted by the C library (a score names
    tens of thousands of hosts; ipaddress takes a microsecond or more each)."""
    raw = bytes(raw).ljust(16, b"\x00")
    if raw[:12] == _V4_PREFIX:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return str(ipaddress.IPv6Address(raw))


def flow_endpoints(flow: bytes) -> tuple[tuple[str, int], tuple[str, int]]:
    """``((src, sport), (dst, dport))`` of a 36-byte flow value, addresses as text."""
    flow = bytes(flow).ljust(36, b"\x00")
    src, dst = address(flow[0:16]), address(flow[18:34])
    return (str(src), int.from_bytes(flow[16:18], "big")), (str(dst), int.from_bytes(flow[34:36], "big"))


def reverse_flow(flow: bytes) -> bytes:
    """The flow value of the opposite direction."""
    flow = bytes(flow).ljust(36, b"\x00")
    return flow[18:] + flow[:18]


def endpoint_bytes(host: str, port: int) -> bytes:
    """The 18-byte (address, port) half of a flow value, for building one by hand."""
    ip = ipaddress.ip_address(host)
    raw = _V4_PREFIX + ip.packed if ip.version == 4 else ip.packed
    return raw + port.to_bytes(2, "big")


def in_context(segments: np.ndarray, context: np.ndarray) -> np.ndarray:
    """``segments`` (:data:`SEGMENT`) with their ``context`` (``uint64`` each), as
    :data:`SEGMENT_IN_CONTEXT`."""
    out = np.empty(len(segments), SEGMENT_IN_CONTEXT)
    for name in SEGMENT.names:
        out[name] = segments[name]
    out["context"] = context
    return out


def make_segments(rows) -> np.ndarray:
    """Build a segment array from ``(time_ns, (src, sport), (dst, dport), flags, seq, ack, payload)``
    tuples: for tests and for feeding the tracker by hand."""
    rows = list(rows)
    out = np.zeros(len(rows), SEGMENT)
    for i, (t, (s, sp), (d, dp), flags, seq, ack, payload) in enumerate(rows):
        out[i]["time_ns"] = t
        out[i]["flow"] = endpoint_bytes(s, sp) + endpoint_bytes(d, dp)
        out[i]["flags"] = flags
        out[i]["seq"] = seq
        out[i]["ack"] = ack
        out[i]["payload"] = payload
    return out


class TcpBatch:
    """The TCP segments of one chunk of a capture, decoded lazily.

    ``flags``, ``sport``, ``dport``, ``seq`` and ``ack`` are there for every segment
    (what the tracker's prefilter needs); :meth:`select` decodes whole
    :data:`SEGMENT` rows for the ones asked for, :meth:`times` and :meth:`addresses`
    only those fields. ``packets`` counts every record of the chunk, TCP or not;
    ``protected`` those skipped as protected (encrypted 802.11) frames. A batch
    reads the reader's buffer: use it before asking the reader for the next one.
    """

    __slots__ = ("flags", "sport", "dport", "seq", "ack", "_select", "_addresses", "_times", "_context", "packets", "protected")

    def __init__(self, flags, sport, dport, seq, ack, select, packets: int, addresses=None, times=None, context=None,
                 protected: int = 0):
        self.flags, self.sport, self.dport, self.seq, self.ack = flags, sport, dport, seq, ack
        self._select, self.packets, self.protected = select, packets, protected
        self._addresses, self._times, self._context = addresses, times, context

    def __len__(self) -> int:
        return len(self.flags)

    def select(self, which=None) -> np.ndarray:
        """Segments ``which`` (a boolean mask or indices), or all of them: :data:`SEGMENT`
        rows, or :data:`SEGMENT_IN_CONTEXT` when the reader works out the context."""
        if which is None:
            which = np.arange(len(self))
        elif np.asarray(which).dtype == bool:
            which = np.flatnonzero(which)
        if self._context is not None:
            which = np.asarray(which, np.int64)
            return in_context(self._select(which), self._context(which))
        return self._select(which)

    def times(self, which: np.ndarray) -> np.ndarray:
        """The ``time_ns`` of segments ``which`` (indices)."""
        if self._times is not None:
            return self._times(which)
        return self._select(np.asarray(which, np.int64))["time_ns"]

    def addresses(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The source and destination addresses of segments ``which`` (indices) as
        ``(src_high, src_low, dst_high, dst_low)``: each 16-byte ``src``/``dst`` value
        as two big-endian ``uint64`` halves, without decoding the rest of the rows. When
        every one is IPv4 (``::ffff:a.b.c.d``) both high halves are :data:`ZERO_HIGH`."""
        if self._addresses is not None:
            return self._addresses(which)
        rows = self._select(np.asarray(which, np.int64))
        halves = [np.ascontiguousarray(rows[f]).view(">u8").reshape(-1, 2) for f in ("src", "dst")]
        return tuple(h[:, k].astype(np.uint64) for h in halves for k in (0, 1))

    def context(self, which: np.ndarray) -> np.ndarray | None:
        """For segments ``which`` (indices), a ``uint64`` naming where each was seen:
        its VLAN ids and the outer endpoints of the tunnels around it, the same in
        both directions of a conversation, 0 for a segment with neither. None when
        the reader was not asked for it (``Decapsulation(context=True)``)."""
        if self._context is None:
            return None
        return self._context(np.asarray(which, np.int64))
