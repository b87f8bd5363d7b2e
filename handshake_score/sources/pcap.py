"""Classic libpcap files: micro- or nanosecond, either byte order.

The record walk is the one sequential part of reading a capture: each record
header says where the next one starts. It runs as a tight Python loop over
memoryview casts (about 100 ns a record); everything after it is numpy.
"""

from __future__ import annotations

import struct
from array import array
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import CaptureError
from .decode import check_linktype
from .records import ChunkBuffer, Records, be_views, le_views, read_chunks

# first four bytes read little-endian -> (file byte order, nanoseconds per fraction unit)
MAGICS = {0xA1B2C3D4: ("<", 1000), 0xA1B23C4D: ("<", 1), 0xD4C3B2A1: (">", 1000), 0x4D3CB2A1: (">", 1)}
MODIFIED_MAGICS = {0xA1B2CD34, 0x34CDB2A1}
HEADER = 24
RECORD = 16
MAX_RECORD = 1 << 18  # libpcap's largest snap length; a record beyond it is corrupt


def _walk_native(mv: memoryview, n: int) -> array:
    """Offsets of the records in ``mv[:n]``, walking little-endian headers.
    The last offsets may point past ``n``: the caller keeps the whole records."""
    # views[r][q] is the u32 at byte 4q + r + 8: a record's caplen is views[off & 3][off >> 2]
    views = tuple(mv[k + 8 : k + 8 + ((n - k - 8) >> 2 << 2)].cast("I") for k in range(4))
    off, out = 0, [0]  # a list appends faster than an array; one conversion at the end
    ap = out.append
    try:
        while True:  # IndexError ends it: cheaper than a bounds test per record
            off += views[off & 3][off >> 2] + 16
            ap(off)
    except IndexError:
        pass
    finally:
        for v in views:
            v.release()
    return array("q", out)  # numpy takes an array without a copy


def _walk_swapped(mv: memoryview, n: int) -> array:
    unpack = struct.Struct(">I").unpack_from
    off, out = 0, array("q", [0])
    ap = out.append
    try:
        while True:
            off += 16 + unpack(mv, off + 8)[0]
            ap(off)
    except struct.error:
        pass
    return out


class PcapFile:
    """Reads the records of a classic pcap file in chunks."""

    def __init__(self, f: BinaryIO, path: str, head: bytes, chunk_size: int):
        if len(head) < HEADER:
            raise CaptureError(path, f"cut short inside the {HEADER}-byte pcap file header")
        order, self.frac_ns = MAGICS[int.from_bytes(head[:4], "little")]
        self.swapped = order == ">"
        self.snaplen, network = struct.unpack_from(order + "II", head, 16)
        self.linktype = network & 0xFFFF  # the upper bits carry FCS information
        check_linktype(path, self.linktype)
        self.path = path
        self.limit = min(max(self.snaplen, MAX_RECORD), 1 << 26)  # 64 MiB, as for pcapng blocks
        self.buffer = ChunkBuffer(f, path, chunk_size, len(head), head[HEADER:])
        self.truncated_at: int | None = None
        self.walk = _walk_swapped if self.swapped else _walk_native

    def chunks(self) -> Iterator[Records]:
        return read_chunks(self)

    def _chunk(self, mv: memoryview, n: int) -> tuple[int, int, Records | None]:
        offs = np.frombuffer(self.walk(mv, n), np.int64)
        u32 = be_views(mv)[2] if self.swapped else le_views(mv)[1]
        head_ok = offs + RECORD <= n
        incl = np.empty(len(offs), np.int64)
        incl[:-1] = offs[1:] - offs[:-1] - RECORD  # the walk already read every length but the last
        incl[-1] = u32[offs[-1] + 8] if head_ok[-1] else 0
        bad = np.flatnonzero(head_ok & (incl > self.limit))
        if len(bad):
            at = self.buffer.base + int(offs[bad[0]])
            raise CaptureError(self.path, f"corrupt record header (claims {incl[bad[0]]} bytes)", at)
        whole = int(np.count_nonzero(head_ok & (offs + RECORD + incl <= n)))  # a prefix: offsets only grow
        if whole == len(offs):
            return n, 0, self._records(mv, offs, incl, u32)
        need = RECORD + int(incl[whole]) if head_ok[whole] else RECORD
        records = self._records(mv, offs[:whole], incl[:whole], u32) if whole else None
        return int(offs[whole]), need, records

    def _records(self, mv, offs, incl, u32) -> Records:
        frac_ns = self.frac_ns

        def time_ns(i: np.ndarray) -> np.ndarray:  # unsigned 32-bit seconds: 1970-2106, always an int64
            at = offs[i]
            return u32[at].astype(np.int64) * 1_000_000_000 + u32[at + 4].astype(np.int64) * frac_ns

        def origlen(i: np.ndarray) -> np.ndarray:
            return u32[offs[i] + 12].astype(np.int64)

        return Records(mv, offs + RECORD, incl, self.linktype, time_ns, origlen)
