"""Following a capture while it is written (``tail -f`` for captures): a pcapng
file dumpcap writes, or a pcap or pcapng stream on a pipe (``tcpdump -w -``).

dumpcap flushes its output as it goes, but a flush can end anywhere, even in
the middle of a block. :class:`FollowReader` reads only whole blocks (pcapng
states a block's length at both ends) and remembers where it stopped; each
call to :meth:`FollowReader.batches` returns what was appended since. It is
the project's own pcapng reader (:class:`~.pcapng.PcapngFile`, :mod:`.decode`)
driven by a different loop: where :func:`~.records.read_chunks` takes the end
of the bytes for the end of the file (and a block cut there for a truncation),
this loop takes it for "not written yet" and waits.

>>> follow = FollowReader("captures/now.pcapng")
>>> while capturing:
...     for batch in follow.batches():    # TcpBatch, as CaptureReader.batches() gives
...         tracker.feed_batch(batch)
...     time.sleep(0.25)
"""

from __future__ import annotations

import os
from typing import BinaryIO, Iterator

from ..errors import CaptureError
from ..segments import TcpBatch
from .decode import decode
from .decoding import DEFAULT, Decapsulation
from .pcap import HEADER, MAGICS, PcapFile
from .pcapng import SHB, PcapngFile

__all__ = ["FollowReader"]

CHUNK_SIZE = 1 << 20


class FollowReader:
    """The TCP segments of a growing pcapng file, in whole blocks, as they are written.

    ``packets`` counts the records read so far, ``segments`` the TCP segments among
    them (``protected``: those skipped as protected 802.11 frames); ``decapsulation``
    says which tunnels to look inside; ``whole_bytes`` is where the last whole block ends (the file's length once
    it is complete) and ``size`` how many bytes were in the file at the last look,
    so ``size - whole_bytes`` bytes are a block being written, or one cut short for
    good once the writer is gone. A file that does not exist yet is waited for too.
    """

    def __init__(self, path: str | os.PathLike, chunk_size: int = CHUNK_SIZE, f: BinaryIO | None = None,
                 decapsulation: Decapsulation = DEFAULT):
        """``f``: the file already open (unbuffered), for a file that may be deleted or
        renamed before we get to it; else ``path`` is opened when it appears."""
        self.path = os.fspath(path)
        self.chunk_size = chunk_size
        self.packets = 0
        self.segments = 0
        self.protected = 0
        self.decapsulation = decapsulation
        self.whole_bytes = 0
        self.size = 0
        self._f = f
        self._head = b""  # a pipe's first bytes, read before the format is known
        self._source: PcapngFile | PcapFile | None = None
        self._consumed = 0  # bytes at the buffer's front already read, to drop first
        self._need = 0
        self._closed = False

    def open(self) -> bool:
        """Open the file if it is there (and keep it open: a ring buffer may delete it
        while it is read). False while it does not exist or has no header yet; raises
        CaptureError if it is not pcapng."""
        if self._closed:
            return False
        if self._f is None:
            try:
                self._f = open(self.path, "rb", buffering=0)
            except FileNotFoundError:
                return False
            except OSError as e:
                raise CaptureError(self.path, f"cannot read: {e.strerror or e}") from None
        if self._source is None:
            if not self._f.seekable():  # a pipe: what is read of it is gone, so keep it as the head
                got = self._f.read(HEADER - len(self._head))  # None: nothing yet on a non-blocking pipe
                self._head += got or b""
                head = self._head
            else:
                head = os.pread(self._f.fileno(), HEADER, 0)
            if len(head) < 4:  # nothing written yet: look again later
                return False
            magic = int.from_bytes(head[:4], "little")
            if magic == SHB:
                self._source = PcapngFile(self._f, self.path, self._head, self.chunk_size)
            elif magic in MAGICS and self._head:  # the pcap header is only read whole from a pipe
                if len(head) < HEADER:
                    return False
                self._source = PcapFile(self._f, self.path, head, self.chunk_size)
            else:
                raise CaptureError(self.path, "not a pcapng file (only pcapng, or pcap on a pipe, can be "
                                   "followed while it is written)")
        return True

    def batches(self) -> Iterator[TcpBatch]:
        """The batches of the whole blocks appended since the last call. As with
        CaptureReader, use each batch before asking for the next."""
        if not self.open():
            return
        source = self._source
        buf = source.buffer
        while True:
            buf.eof = False
            buf.advance(self._consumed, self._need)  # drop what was used, read what was appended
            self._consumed = 0
            # The format must never take the end of what is written for the end of the file
            # (it would call a block being written a truncation): hide that it is the end.
            at_end, buf.eof = buf.eof, False
            consumed, need, records = source._chunk(buf.view(), buf.n) if buf.n else (0, 0, None)
            self._consumed = consumed  # dropped on the next read, even if our caller stops here
            if records is not None:
                batch = decode(records, self.decapsulation)
                del records
                self.packets += batch.packets
                self.protected += batch.protected
                self.segments += len(batch)
                yield batch
            if consumed:
                self._need = need
                continue
            if at_end or not buf.n:
                self._need = need
                self.whole_bytes = buf.base
                self.size = buf.base + buf.n
                return
            self._need = max(need, buf.n + 1)  # a block larger than the buffer: let it grow

    @property
    def pending(self) -> int:
        """Bytes after the last whole block: a block being written (or cut short)."""
        return self.size - self.whole_bytes

    def close(self) -> None:
        """Stop following and free the buffer (the counts stay): later calls read nothing."""
        self._closed = True
        self._source = None
        if self._f is not None:
            self._f.close()
            self._f = None
