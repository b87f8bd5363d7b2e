"""Which reader reads a capture: the fast one, or tshark for what it does not know.

>>> reader = open_capture("captures/mine.pcapng")              # --reader auto
>>> reader = open_capture("fddi.pcap", reader="tshark")         # always through tshark

``auto`` (the default) reads with :class:`~.CaptureReader` unless the file's link
type (a pcap's, or any interface's of a pcapng whose interfaces come before its
first packet, as they nearly always do) is one it does not know: then with
:class:`~.tshark.TsharkReader`, saying so in one line. ``fast`` never uses tshark
(an unknown link type is an error); ``tshark`` always does.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Callable, Iterator

from ..errors import CaptureError, HandshakeScoreError
from . import CaptureReader
from .decode import LINKTYPES
from .decoding import DEFAULT, Decapsulation
from .pcap import MAGICS
from .pcapng import EPB, IDB, OPB, SHB, SPB

READERS = ("auto", "fast", "tshark")
PEEK = 1 << 16  # bytes: a pcapng's interface blocks come long before this
UNKNOWN = "unsupported link type"  # how the fast reader's error starts


def _stderr(line: str) -> None:
    print(f"hs: {line}", file=sys.stderr, flush=True)


def open_capture(path: str | os.PathLike, *, strict: bool = False, reader: str = "auto",
                 decapsulation: Decapsulation = DEFAULT, say: Callable[[str], None] = _stderr):
    """A reader of ``path`` (``reader``: auto, fast or tshark); ``say`` gets the one line
    that says a file is read through tshark. Raises :class:`CaptureError` for a file
    that cannot be read, :class:`HandshakeScoreError` for a bad ``reader`` or a missing tshark."""
    check_reader(reader)
    if reader == "tshark":
        from .tshark import TsharkReader  # imported only when wanted: hs score's start is part of its speed

        return TsharkReader(path, strict=strict, decapsulation=decapsulation)
    fast = CaptureReader(path, strict=strict, decapsulation=decapsulation)  # a missing file fails here
    if reader == "fast":
        return fast
    linktype = foreign_linktype(fast.path)
    if linktype is None:
        return AutoReader(fast, say)
    return through_tshark(fast, linktype, say)


def check_reader(reader: str) -> None:
    if reader not in READERS:
        raise HandshakeScoreError(f"--reader: {reader!r} is not a reader; give auto, fast or tshark")


def through_tshark(fast: CaptureReader, linktype: int, say: Callable[[str], None]):
    """A :class:`~.tshark.TsharkReader` of ``fast``'s file, said in one line."""
    from .tshark import TsharkReader, tshark_or_say

    why = f"{fast.path}: link type {linktype} is not one hs reads itself"
    tshark = tshark_or_say(why)
    say(f"{why}: reading it through tshark (Wireshark's dissectors), tens of times slower than hs's own reader")
    return TsharkReader(fast.path, strict=fast.strict, decapsulation=fast.decapsulation, tshark=tshark)


def foreign_linktype(path: str) -> int | None:
    """The first link type at the start of ``path`` that the fast reader does not
    know, or None (for a file it cannot make sense of too: its reader says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(PEEK)
    except OSError:
        return None
    for linktype in _linktypes(head):
        if linktype not in LINKTYPES:
            return linktype
    return None


def _linktypes(head: bytes) -> list[int]:
    """A pcap's link type, or the link types of a pcapng's interface blocks before its
    first packet block, in ``head`` (the file's first bytes)."""
    if len(head) < 24:
        return []
    magic = int.from_bytes(head[:4], "little")
    if magic in MAGICS:
        order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        return [struct.unpack_from(order + "I", head, 20)[0] & 0xFFFF]
    if magic != SHB:
        return []
    order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    found, at = [], 0
    while at + 12 <= len(head):
        kind, length = struct.unpack_from(order + "II", head, at)
        if kind in (EPB, SPB, OPB) or length < 12 or length % 4:
            break
        if kind == IDB and at + 10 <= len(head):
            found.append(struct.unpack_from(order + "H", head, at + 8)[0])
        at += length
    return found


class AutoReader:
    """The fast reader, which hands over to tshark should its first records turn out to
    be of a link type it does not know (a pcapng whose interface block comes late); once
    segments have gone out that is an error saying to rerun with ``--reader tshark``.
    Otherwise the fast reader's attributes, as they are."""

    def __init__(self, fast: CaptureReader, say: Callable[[str], None] = _stderr):
        self.reader, self.say = fast, say

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def __iter__(self) -> Iterator:
        for batch in self.batches():
            yield batch.select()

    def batches(self) -> Iterator:
        fast = self.reader
        try:
            yield from fast.batches()
            return
        except CaptureError as e:
            if not e.problem.startswith(UNKNOWN):
                raise
            linktype = int(e.problem.removeprefix(UNKNOWN).split()[0].rstrip(";"))
            if fast.packets:
                raise CaptureError(e.path, f"{UNKNOWN} {linktype}, met after {fast.packets:,} packets of known link "
                                           "types: rerun with --reader tshark", e.offset) from None
        self.reader = through_tshark(fast, linktype, self.say)
        yield from self.reader.batches()


def with_ports(vxlan: tuple[int, ...] = (), geneve: tuple[int, ...] = (), gtp: tuple[int, ...] = (),
               vlan_key: bool = False) -> Decapsulation:
    """The command line's ``--vxlan-port``/``--geneve-port``/``--gtp-port`` (each adds to
    the defaults) and ``--vlan-key`` as a :class:`Decapsulation`."""
    for flag, ports in (("--vxlan-port", vxlan), ("--geneve-port", geneve), ("--gtp-port", gtp)):
        bad = [p for p in ports if not 0 < p < 65536]
        if bad:
            raise HandshakeScoreError(f"{flag}: {bad[0]} is not a UDP port (1-65535)")

    def more(defaults: tuple[int, ...], extra) -> tuple[int, ...]:
        return tuple(dict.fromkeys((*defaults, *extra)))

    return Decapsulation(vxlan_ports=more(DEFAULT.vxlan_ports, vxlan), geneve_ports=more(DEFAULT.geneve_ports, geneve),
                         gtp_ports=more(DEFAULT.gtp_ports, gtp), context=vlan_key)
