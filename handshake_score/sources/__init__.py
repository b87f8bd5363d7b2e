"""Packet sources: capture files read by the project's own fast reader.

>>> reader = CaptureReader("captures/example-loopback.pcapng")
>>> for segments in reader:          # numpy arrays of dtype SEGMENT
...     ...

``reader.batches()`` gives the lazy :class:`~handshake_score.segments.TcpBatch`
form the tracker's fast path uses.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from ..errors import CaptureError
from ..segments import SEGMENT, TcpBatch
from .decode import LINKTYPES, decode
from .decoding import DEFAULT, Decapsulation
from .pcap import MAGICS, MODIFIED_MAGICS, PcapFile
from .pcapng import SHB, PcapngFile

__all__ = ["CaptureReader", "Decapsulation", "LINKTYPES"]

CHUNK_SIZE = 2 << 20  # larger chunks gain nothing: the gathers of a smaller one stay in cache


class CaptureReader:
    """Streams the TCP segments of a pcap or pcapng file in bounded chunks.

    ``strict``: a file cut short in the middle of a record is an error instead
    of a warning. ``decapsulation``: which tunnels to look inside (see
    :class:`~.decoding.Decapsulation`). After iterating, ``packets`` is the number
    of records read, ``segments`` the TCP segments among them, ``protected`` the
    records skipped as protected (encrypted 802.11) frames, ``first_ns`` the time of the
    first record and ``truncated_at`` the byte offset where the record that the
    file ends inside starts (None when whole).
    """

    def __init__(self, path: str | os.PathLike, strict: bool = False, chunk_size: int | None = None,
                 decapsulation: Decapsulation = DEFAULT):
        self.path = os.fspath(path)
        self.decapsulation = decapsulation
        self.strict = strict
        self.chunk_size = chunk_size or CHUNK_SIZE
        self.packets = 0
        self.segments = 0
        self.protected = 0
        self.truncated_at: int | None = None
        self.first_ns: int | None = None  # the time of the first record
        self.bytes_read = 0
        self.format = ""
        try:
            self.size = os.stat(self.path).st_size
        except OSError as e:
            raise CaptureError(self.path, _os_problem(e)) from None
        if os.path.isdir(self.path):
            raise CaptureError(self.path, "is a directory, not a capture file")

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield batch.select() if len(batch) else np.zeros(0, SEGMENT)

    def batches(self) -> Iterator[TcpBatch]:
        try:
            f = open(self.path, "rb", buffering=0)
        except OSError as e:
            raise CaptureError(self.path, _os_problem(e)) from None
        with f:
            source = self._open(f)
            for records in source.chunks():
                if self.first_ns is None and len(records):
                    self.first_ns = int(records.time_ns(np.zeros(1, np.intp))[0])
                batch = decode(records, self.decapsulation)
                self.packets += batch.packets
                self.protected += batch.protected
                self.segments += len(batch)
                self.bytes_read = source.buffer.base
                yield batch
            self.bytes_read = self.size
            self.truncated_at = source.truncated_at
        if self.truncated_at is not None and self.strict:
            raise CaptureError(self.path, "cut short in the middle of a record", self.truncated_at)

    def _open(self, f) -> PcapFile | PcapngFile:
        try:
            head = f.read(64)
        except OSError as e:
            raise CaptureError(self.path, _os_problem(e)) from None
        if not head:
            raise CaptureError(self.path, "empty file, not a capture")
        magic = int.from_bytes(head[:4].ljust(4, b"\0"), "little")
        if magic == SHB:
            self.format = "pcapng"
            return PcapngFile(f, self.path, head, self.chunk_size)
        if magic in MAGICS:
            self.format = "pcap"
            return PcapFile(f, self.path, head, self.chunk_size)
        if magic in MODIFIED_MAGICS:
            raise CaptureError(self.path, "modified (Kuznetzov) pcap is not supported; convert it with: editcap -F pcapng IN OUT")
        if head[:2] == b"\x1f\x8b":
            raise CaptureError(self.path, "compressed (gzip) file; decompress it first (gunzip)")
        raise CaptureError(self.path, "not a capture file (neither pcap nor pcapng)")


def _os_problem(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a capture file"
    return f"cannot read: {e.strerror or e}"
