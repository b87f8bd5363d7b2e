"""Capture records of one chunk, and the buffer that streams a file in chunks.

Format readers (:mod:`.pcap`, :mod:`.pcapng`) walk record headers and describe
each chunk as :class:`Records`; :mod:`.decode` reads the packets in it. Times
and original lengths are computed only for the records that are asked for,
which on a busy capture is a small part of them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Protocol

import numpy as np

from ..errors import CaptureError


def be_views(buf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``u8``, big-endian ``u16`` and ``u32`` views of ``buf`` indexed by *byte* offset
    (stride 1, so reads need no alignment and copy nothing)."""
    u8 = np.frombuffer(buf, np.uint8)
    n = len(u8)
    u16 = np.ndarray((max(n - 1, 0),), ">u2", buf, 0, (1,))
    u32 = np.ndarray((max(n - 3, 0),), ">u4", buf, 0, (1,))
    return u8, u16, u32


def be_u64(buf) -> np.ndarray:
    """A big-endian ``u64`` view indexed by byte offset: two 32-bit fields in one gather."""
    return np.ndarray((max(len(buf) - 7, 0),), ">u8", buf, 0, (1,))


def le_views(buf) -> tuple[np.ndarray, np.ndarray]:
    """Little-endian ``u16`` and ``u32`` views indexed by byte offset."""
    n = len(buf)
    return (np.ndarray((max(n - 1, 0),), "<u2", buf, 0, (1,)),
            np.ndarray((max(n - 3, 0),), "<u4", buf, 0, (1,)))


@dataclass
class Records:
    """The packet records of one chunk of a capture file.

    ``start`` and ``caplen`` locate each packet's bytes in ``buf``; ``linktype``
    is one link type for all (pcap) or one per record (pcapng).
    ``time_ns(i)`` and ``origlen(i)`` compute those fields for the records ``i``.
    """

    buf: memoryview
    start: np.ndarray
    caplen: np.ndarray
    linktype: int | np.ndarray
    time_ns: Callable[[np.ndarray], np.ndarray]
    origlen: Callable[[np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return len(self.start)


class ChunkBuffer:
    """A fixed buffer over a file: the unread tail of one chunk moves to the
    front and the rest is filled from the file, so memory stays bounded by the
    chunk size (or by the largest single record, if that is larger)."""

    def __init__(self, f: BinaryIO, path: str, size: int, offset: int, head: bytes = b""):
        self.f, self.path = f, path
        self.file_size = self._size()  # None: not a regular file (a pipe), so no size to go by
        self.buf = bytearray(max(size, len(head) + 4096))
        self.buf[: len(head)] = head
        self.n = len(head)          # valid bytes in buf
        self.base = offset - len(head)  # file offset of buf[0]
        self.eof = False

    def _size(self) -> int | None:
        try:
            st = os.fstat(self.f.fileno())
        except (OSError, AttributeError, ValueError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def ends_before(self, end: int) -> bool:
        """Whether the file ends before byte ``end``: a record claiming to end there is cut
        short (or corrupt), and no buffer is grown for it. The size is looked at again
        before saying so, in case the file has grown since it was opened."""
        if self.file_size is None or end <= self.file_size:
            return False
        self.file_size = self._size()
        return self.file_size is not None and end > self.file_size

    def view(self) -> memoryview:
        return memoryview(self.buf)[: self.n]

    def advance(self, consumed: int, need: int = 0) -> bool:
        """Drop ``consumed`` bytes and read on, making room for at least ``need``
        bytes; False once the file is exhausted and nothing new was read."""
        rest = self.n - consumed
        if rest and consumed:
            self.buf[:rest] = self.buf[consumed : self.n]
        self.base += consumed
        self.n = rest
        if need > len(self.buf):
            size = need + (need >> 2)  # a quarter more, for the next ones, but never past the end of the file
            if self.file_size is not None:
                size = max(need, min(size, self.file_size - self.base))
            grown = bytearray(size)
            grown[:rest] = self.buf[:rest]
            self.buf = grown
        if self.eof:
            return False
        before = self.n
        with memoryview(self.buf) as mv:
            while self.n < len(self.buf):
                try:
                    got = self.f.readinto(mv[self.n :])
                except OSError as e:
                    raise CaptureError(self.path, f"read failed: {e.strerror or e}") from None
                if not got:
                    self.eof = True
                    break
                self.n += got
        return self.n > before


class RecordFormat(Protocol):
    buffer: ChunkBuffer
    truncated_at: int | None

    def _chunk(self, mv: memoryview, n: int) -> tuple[int, int, Records | None]:
        """Describe the whole records at the front of ``mv[:n]``:
        (bytes consumed, bytes needed to go on, records or None)."""


RECORDS_PER_CHUNK = 16_384  # what a 2 MiB chunk of headers-only records holds
GROW_FROM, GROW_TO = 1 << 20, 4 << 20  # past a few MiB the buffer falls out of cache: slower


def read_chunks(fmt: RecordFormat) -> Iterator[Records]:
    """Drive a format's ``_chunk`` over its file; a file that ends inside a
    record sets ``fmt.truncated_at`` to where that record starts.

    A chunk of whole frames holds ten times fewer records than one of headers, and
    every chunk costs the same few hundred microseconds of numpy calls beside its
    records: so a buffer of at least ``GROW_FROM`` bytes grows (up to ``GROW_TO``)
    until it holds about ``RECORDS_PER_CHUNK`` records."""
    buf = fmt.buffer
    buf.advance(0)
    while buf.n:
        consumed, need, records = fmt._chunk(buf.view(), buf.n)
        grow = 0
        if records is not None:
            size = len(buf.buf)
            rest = None if buf.file_size is None else buf.file_size - buf.base  # never more than the file holds
            if GROW_FROM <= size < GROW_TO and len(records) < RECORDS_PER_CHUNK // 2 and (rest is None or rest > size):
                grow = min(GROW_TO, size * RECORDS_PER_CHUNK // max(len(records), 1), rest or GROW_TO)
            yield records
            del records
        # a record begun at ``consumed`` needs ``need`` bytes: if the file ends first, it is cut there,
        # and what it claims is never allocated (a corrupt length in a small file costs nothing)
        begun = consumed < buf.n
        if (begun and need and buf.ends_before(buf.base + consumed + need)) or (not consumed and buf.eof):
            fmt.truncated_at = buf.base + consumed
            return
        if not consumed:
            need = max(need, buf.n + 1)
        buf.advance(consumed, max(need, grow))
