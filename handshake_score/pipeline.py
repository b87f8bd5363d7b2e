"""Reading a large capture in a second process while the tracker runs in this one.

The record walk, the decoding and the :class:`~.tracker.Prefilter` need no
tracker state, so on a machine with two cores they run ahead in a forked
worker and send this process only the segments worth tracking (about one in
seven on a busy capture). Small files are read in process: a fork costs more
than it saves there.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from .errors import CaptureError, HandshakeScoreError
from .segments import SEGMENT
from .sources import CaptureReader
from .sources.decoding import DEFAULT, Decapsulation
from .sources.readers import open_capture
from .tracker import Prefilter

PARALLEL_FROM = 16 << 20  # bytes


def worth_a_worker(path: str | os.PathLike) -> bool:
    try:
        if os.stat(path).st_size < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
            return False
    except OSError:
        return False
    import multiprocessing  # only now: small captures never need it

    return "fork" in multiprocessing.get_all_start_methods()


def wanted_segments(reader: CaptureReader, prefilter: Prefilter) -> Iterator[np.ndarray]:
    """The segments of a capture that can change a handshake, chunk by chunk."""
    for batch in reader.batches():
        if len(batch):
            yield batch.select(prefilter.wanted(batch))


def _read(conn, parents_end, path: str, strict: bool, prefilter: Prefilter, reader: str,
          decapsulation: Decapsulation) -> None:
    """The worker: ("batch", bytes read) + raw segments per chunk, then ("done", stats)
    and the prefilter's state, for the next file of the same capture."""
    # The fork copied the parent's reading end too: close it, so that if the parent
    # dies the pipe has no reader and our next send fails, instead of blocking forever.
    parents_end.close()
    try:
        try:
            reader = open_capture(path, strict=strict, reader=reader, decapsulation=decapsulation)
            for segments in wanted_segments(reader, prefilter):
                conn.send(("batch", reader.bytes_read))
                conn.send_bytes(segments.tobytes())
            conn.send(("done", (reader.format, reader.size, reader.packets, reader.segments, reader.truncated_at,
                                reader.first_ns, getattr(reader, "protected", 0), getattr(reader, "kind", "fast"))))
            conn.send(prefilter.state())
        except CaptureError as e:
            conn.send(("error", (e.path, e.problem, e.offset)))
        except HandshakeScoreError as e:  # tshark wanted and missing
            conn.send(("failed", str(e)))
        except BaseException as e:  # reported as one line by the parent
            conn.send(("crash", f"{type(e).__name__}: {e}"))
    except OSError:
        pass  # the parent is gone: there is nobody to tell
    finally:
        conn.close()


class WorkerReader:
    """Iterates the wanted segments of one capture file read by a forked worker
    through ``prefilter`` (a copy: the worker's state comes back into it at the
    end); after the iteration, the same attributes as :class:`CaptureReader`.
    ``reader`` and ``decapsulation``: as :func:`~.sources.readers.open_capture`'s
    (the rows sent back are plain SEGMENT rows: no context, so not for
    ``decapsulation.context``)."""

    def __init__(self, path: str | os.PathLike, strict: bool, prefilter: Prefilter, reader: str = "auto",
                 decapsulation: Decapsulation = DEFAULT):
        self.path = os.fspath(path)
        self.prefilter = prefilter
        self._args = (self.path, strict, prefilter, reader, decapsulation)
        self.bytes_read = 0
        self.protected = 0
        self.kind = "fast"
        CaptureReader(path, strict=strict)  # fail on a missing or unreadable path here, not in the worker

    def __iter__(self) -> Iterator[np.ndarray]:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe(duplex=False)
        worker = ctx.Process(target=_read, args=(theirs, ours, *self._args), daemon=True)
        worker.start()
        theirs.close()
        try:
            while True:
                try:
                    kind, value = ours.recv()
                except EOFError:
                    raise HandshakeScoreError(f"{self.path}: the reading process ended unexpectedly") from None
                if kind == "batch":
                    self.bytes_read = value
                    yield np.frombuffer(ours.recv_bytes(), SEGMENT)
                elif kind == "done":
                    (self.format, self.size, self.packets, self.segments, self.truncated_at,
                     self.first_ns, self.protected, self.kind) = value
                    self.prefilter.restore(ours.recv())
                    return
                elif kind == "error":
                    raise CaptureError(*value)
                elif kind == "failed":
                    raise HandshakeScoreError(value)
                else:
                    raise HandshakeScoreError(f"{self.path}: reading failed: {value}")
        finally:
            ours.close()
            if worker.is_alive():
                worker.terminate()
            worker.join()
