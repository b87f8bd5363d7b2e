"""pcapng files: sections of either byte order, several interfaces, each with
its own link type and timestamp resolution; enhanced, simple and obsolete
packet blocks. Other block types are skipped.

Blocks are 4-byte aligned, so the walk over block lengths indexes a ``uint32``
memoryview directly (about 75 ns a block).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import CaptureError
from ..segments import INT64_MAX
from .decode import check_linktype
from .records import ChunkBuffer, Records, be_views, le_views, read_chunks

SHB, IDB, OPB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_BLOCK = 1 << 26  # 64 MiB: a longer block is taken as corrupt, not allocated
_JUMP = 1 << 40      # a zero-length block would loop forever: jump out instead


@dataclass
class Interface:
    linktype: int
    snaplen: int
    tsresol: int = 6         # 10^-6 s unless if_tsresol says otherwise
    binary: bool = False     # True: the resolution is 2^-tsresol
    tsoffset_ns: int = 0

    def to_ns(self, ts: np.ndarray) -> np.ndarray:
        """Timestamps in this interface's units (uint64) as integer nanoseconds since 1970.
        Any resolution a file may claim is handled without overflow; sub-nanosecond
        digits are dropped. A time before 1970 or after 2262 raises OverflowError
        (``"before"`` or ``"after"``): int64 nanoseconds hold neither, and with
        no time before 1970 the difference of any two times is an int64 too."""
        k = self.tsresol
        if len(ts) and int(ts.max()) > self._max_ticks():
            raise OverflowError("after")
        if self.binary:
            sec = ts >> np.uint64(k) if k < 64 else np.zeros_like(ts)
            frac = ts & np.uint64((1 << k) - 1) if k < 64 else ts
            if k > 30:  # keep the product in 64 bits: drop what is below a nanosecond
                frac = frac >> np.uint64(k - 30) if k - 30 < 64 else np.zeros_like(ts)
                k = 30
            ns = sec * np.uint64(10**9) + ((frac * np.uint64(10**9)) >> np.uint64(k))
        elif k <= 9:
            ns = ts * np.uint64(10 ** (9 - k))
        elif k - 9 < 20:
            ns = ts // np.uint64(10 ** (k - 9))
        else:  # finer than 10^-28 s: nothing is left of a 64-bit count in nanoseconds
            ns = np.zeros_like(ts)
        ns = ns.astype(np.int64)
        if len(ns) and int(ns.min()) + self.tsoffset_ns < 0:
            raise OverflowError("before")
        if len(ns) and int(ns.max()) + self.tsoffset_ns > INT64_MAX:
            raise OverflowError("after")
        return ns + np.int64(self.tsoffset_ns)

    def _max_ticks(self) -> int:
        """The largest count whose time in nanoseconds fits in an int64."""
        if self.binary:
            return ((INT64_MAX // 10**9) << self.tsresol) if self.tsresol < 64 else (1 << 64) - 1
        if self.tsresol <= 9:
            return INT64_MAX // 10 ** (9 - self.tsresol)
        return (1 << 64) - 1


def _walk(words: memoryview) -> array:
    """Word offsets of the blocks in ``words``; the last may point past the end."""
    lengths = words[1:]  # lengths[i]: the length of a block starting at word i
    i, out = 0, [0]  # a list appends faster than an array; one conversion at the end
    ap = out.append
    try:
        while True:
            i += (lengths[i] >> 2) or _JUMP
            ap(i)
    except IndexError:
        pass
    finally:
        lengths.release()
    return array("q", out)


class PcapngFile:
    """Reads the packet blocks of a pcapng file in chunks."""

    def __init__(self, f: BinaryIO, path: str, head: bytes, chunk_size: int):
        self.path = path
        self.buffer = ChunkBuffer(f, path, chunk_size, len(head), head)
        self.truncated_at: int | None = None
        self.swapped = False
        self.interfaces: list[Interface] = []
        self.last_ns = 0  # time of the last timed packet: simple packet blocks carry none

    def _corrupt(self, problem: str, at: int):
        raise CaptureError(self.path, f"corrupt pcapng block: {problem}", self.buffer.base + at)

    def chunks(self) -> Iterator[Records]:
        return read_chunks(self)

    def _section_header(self, mv: memoryview, n: int) -> tuple[int, int]:
        """Parse the SHB at the front; (bytes consumed, bytes needed)."""
        if n < 12:
            return self._short_header(12)
        magic = int.from_bytes(mv[8:12], "little")
        if magic == BYTE_ORDER_MAGIC:
            self.swapped = False
        elif magic == int.from_bytes(BYTE_ORDER_MAGIC.to_bytes(4, "big"), "little"):
            self.swapped = True
        else:
            self._corrupt("section header with an unknown byte-order magic", 0)
        length = int.from_bytes(mv[4:8], "big" if self.swapped else "little")
        if length < 28 or length % 4 or length > MAX_BLOCK:
            self._corrupt(f"section header length {length}", 0)
        if n < length:
            return self._short_header(length)
        self.interfaces = []
        self.last_ns = 0  # "the previous packet" of a simple packet block is within its section
        return length, 0

    def _short_header(self, need: int) -> tuple[int, int]:
        if self.buffer.eof and self.buffer.base == 0:  # a file cut inside its first header holds nothing
            raise CaptureError(self.path, "cut short inside the pcapng section header", self.buffer.base)
        return 0, need

    def _chunk(self, mv: memoryview, n: int):
        """Describe the whole blocks at the front of the buffer: (consumed, needed, records)."""
        if n >= 4 and int.from_bytes(mv[:4], "little") == SHB:
            consumed, need = self._section_header(mv, n)
            return consumed, need, None
        order = ">" if self.swapped else "<"
        n4 = n >> 2 << 2
        if self.swapped:
            words = memoryview(np.frombuffer(mv[:n4], ">u4").astype("<u4")).cast("B").cast("I")
        else:
            words = mv[:n4].cast("I")
        offs = np.frombuffer(_walk(words), np.int64) << 2
        words.release()
        u8, be16, be32 = be_views(mv)
        u16, u32 = (be16, be32) if self.swapped else le_views(mv)
        head_ok = offs + 8 <= n
        blen = np.zeros(len(offs), np.int64)
        blen[head_ok] = u32[offs[head_ok] + 4]
        ok = head_ok & (offs + blen <= n) & (blen >= 12)
        whole = len(ok) if ok.all() else int(np.argmin(ok))  # the leading run of whole blocks
        # a new section may change the byte order, so its own length may read wrong here: stop at it
        readable = np.flatnonzero(head_ok)
        shb = readable[u32[offs[readable]] == SHB]
        at_section = len(shb) > 0 and shb[0] <= whole
        if at_section:
            whole = int(shb[0])
        elif whole < len(offs) and head_ok[whole]:
            self._check_length(int(blen[whole]), int(offs[whole]))
        offs_all, blen_all = offs, blen
        offs, blen = offs[:whole], blen[:whole]
        btype = u32[offs].astype(np.int64) if whole else np.zeros(0, np.int64)
        bad = np.flatnonzero((blen % 4 != 0) | (blen < 12))
        if len(bad):
            self._check_length(int(blen[bad[0]]), int(offs[bad[0]]))
        if whole:
            trailer = u32[offs + blen - 4]
            wrong = np.flatnonzero(trailer != blen)
            if len(wrong):
                self._corrupt("trailing block length differs from the leading one", int(offs[wrong[0]]))
        consumed = int(offs_all[whole]) if whole < len(offs_all) else n
        need = 0
        if whole < len(offs_all) and not at_section:
            need = int(blen_all[whole]) if head_ok[whole] else 12
        for j in np.flatnonzero(btype == IDB):
            self._interface(mv, int(offs[j]), int(blen[j]), order)
        is_packet = (btype == EPB) | (btype == SPB) | (btype == OPB)
        if not is_packet.any():
            return consumed, need, None
        return consumed, need, self._records(mv, offs[is_packet], blen[is_packet], btype[is_packet], u16, u32)

    def _check_length(self, length: int, at: int):
        if length < 12 or length % 4:
            self._corrupt(f"block length {length}", at)
        if length > MAX_BLOCK:
            self._corrupt(f"block length {length} is implausibly large", at)

    def _interface(self, mv: memoryview, off: int, length: int, order: str):
        if length < 20:
            self._corrupt("interface description block too short", off)
        linktype, _, snaplen = struct.unpack_from(order + "HHI", mv, off + 8)
        iface = Interface(linktype, snaplen)
        pos, end = off + 16, off + length - 4
        while pos + 4 <= end:  # options: code, length, value padded to 4 bytes
            code, size = struct.unpack_from(order + "HH", mv, pos)
            pos += 4
            if code == 0 or pos + size > end:
                break
            if code == 9 and size >= 1:
                v = mv[pos]
                iface.binary, iface.tsresol = bool(v & 0x80), v & 0x7F
            elif code == 14 and size >= 8:
                iface.tsoffset_ns = struct.unpack_from(order + "q", mv, pos)[0] * 1_000_000_000
            pos += (size + 3) & ~3
        self.interfaces.append(iface)

    def _records(self, mv, offs, blen, btype, u16, u32) -> Records:
        epb, spb = btype == EPB, btype == SPB
        opb = btype == OPB
        iface = np.zeros(len(offs), np.int64)
        iface[epb] = u32[offs[epb] + 8]
        iface[opb] = u16[offs[opb] + 8]
        if len(self.interfaces) == 0 or iface.max() >= len(self.interfaces):
            first = int(np.flatnonzero(iface >= len(self.interfaces))[0])
            self._corrupt(f"packet on undefined interface {int(iface[first])}", int(offs[first]))
        start = offs + np.where(spb, 12, 28)
        caplen = np.zeros(len(offs), np.int64)
        timed = ~spb
        caplen[timed] = u32[offs[timed] + 20]
        if spb.any():
            snap0 = self.interfaces[0].snaplen or MAX_BLOCK
            caplen[spb] = np.minimum(np.minimum(u32[offs[spb] + 8], blen[spb] - 16), snap0)
        over = np.flatnonzero(caplen > blen - (start - offs) - 4)
        if len(over):
            self._corrupt(f"captured length {int(caplen[over[0]])} exceeds its block", int(offs[over[0]]))
        table = np.array([i.linktype for i in self.interfaces], np.int64)
        used = np.flatnonzero(np.bincount(iface, minlength=len(table)))
        for lt in set(table[used].tolist()):
            check_linktype(self.path, lt)
        # one link type for all (one interface, as nearly always): the decoder's fast path
        linktype = int(table[used[0]]) if len(used) == 1 else table[iface]
        interfaces = list(self.interfaces)

        def stamp(i: np.ndarray) -> np.ndarray:
            ts = (u32[offs[i] + 12].astype(np.uint64) << np.uint64(32)) | u32[offs[i] + 16].astype(np.uint64)
            if len(used) == 1:
                try:
                    return interfaces[used[0]].to_ns(ts)
                except OverflowError:
                    pass  # found and reported below
            out = np.empty(len(i), np.int64)
            which = iface[i]
            for k in np.unique(which):
                sel = which == k
                try:
                    out[sel] = interfaces[k].to_ns(ts[sel])
                except OverflowError as e:
                    at = int(offs[i[np.flatnonzero(sel)[0]]])
                    offset = interfaces[k].tsoffset_ns // 1_000_000_000
                    when = "before 1970" if e.args == ("before",) else "after 2262"
                    raise CaptureError(self.path, f"impossible packet time {when}" + (
                        f" (interface {k}'s if_tsoffset is {offset:+} s)" if offset else "")
                        + ", outside the years 1970-2262 hs reads (64-bit nanoseconds)", self.buffer.base + at) from None
            return out

        # simple packet blocks take the time of the packet before them
        timed_idx = np.flatnonzero(timed)
        prev_ns = self.last_ns
        if len(timed_idx):
            self.last_ns = int(stamp(timed_idx[-1:])[0])

        def time_ns(i: np.ndarray) -> np.ndarray:
            i = np.asarray(i, np.int64)
            out = np.empty(len(i), np.int64)
            has = timed[i]
            out[has] = stamp(i[has])
            if not has.all():
                last_timed = np.maximum.accumulate(np.where(timed, np.arange(len(timed)), -1))
                src = last_timed[i[~has]]
                filled = np.full(len(src), prev_ns, np.int64)
                ok = src >= 0
                filled[ok] = stamp(src[ok])
                out[~has] = filled
            return out

        def origlen(i: np.ndarray) -> np.ndarray:
            at = offs[i] + np.where(spb[i], 8, 24)
            return u32[at].astype(np.int64)

        return Records(mv, start, caplen, linktype, time_ns, origlen)
