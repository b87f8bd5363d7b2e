"""The batch path: capture files -> tracker -> a summary of their handshakes.

>>> summary = score_files(["captures/example-loopback.pcapng"])
>>> summary.as_dict()["handshakes"]["complete"]

Files that go on in time, one after the other (a capture split by editcap, a
ring buffer's files), are one capture: a handshake cut between two of them is
found whole. A file that starts before the previous one ended is a capture of
its own with a tracker of its own; the totals add up.
"""

from __future__ import annotations

import math
import os
import time
from array import array
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .gcpause import collector_paused
from .pipeline import WorkerReader, wanted_segments, worth_a_worker
from .sources.decoding import DEFAULT, Decapsulation
from .sources.readers import check_reader, open_capture
from .tracker import Closings, Handshake, HandshakeTracker, Kind, Note, Outcome


@dataclass
class FileSummary:
    path: str
    format: str
    size: int
    packets: int
    segments: int
    truncated_at: int | None
    first_ns: int | None = None  # the time of its first packet
    protected: int = 0  # protected (encrypted) 802.11 frames skipped
    reader: str = "fast"  # or "tshark"
    cut_short: bool = False  # tshark's way of saying truncated_at, without the offset


@dataclass
class Summary:
    """What ``hs score`` reports: packets read, notes by kind, attempts by outcome, delays."""

    files: list[FileSummary] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Kind.ALL, 0))
    handshakes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome.ALL, 0))
    evicted: int = 0
    seconds: float = 0.0
    syn_to_syn_ack: Delays = field(default_factory=lambda: Delays())
    syn_ack_to_ack: Delays = field(default_factory=lambda: Delays())

    @property
    def packets(self) -> int:
        return sum(f.packets for f in self.files)

    def add(self, closings: Closings) -> None:
        """Record the delays of finished attempts (the tracker's ``on_closes``)."""
        self.syn_to_syn_ack.add_many(closings.syn_to_syn_ack_ns[closings.has_syn_to_syn_ack])
        self.syn_ack_to_ack.add_many(closings.syn_ack_to_ack_ns[closings.has_syn_ack_to_ack])

    def as_dict(self) -> dict:
        def delays(d: Delays) -> dict:
            median = d.median()
            return {"median": None if median is None else round(median / 1e6, 6), "count": d.count}

        return {
            "packets": self.packets,
            "tcp_segments": sum(f.segments for f in self.files),
            "notes": dict(self.notes),
            "handshakes": dict(self.handshakes),
            "delays_ms": {
                "syn_to_syn_ack": delays(self.syn_to_syn_ack),
                "syn_ack_to_ack": delays(self.syn_ack_to_ack),
            },
            "evicted": self.evicted,
            "seconds": round(self.seconds, 6),
            "files": [vars(f) for f in self.files],
        }


class Delays:
    """Delays in integer nanoseconds and their median, in bounded memory.

    The first ``EXACT`` values are kept, so the median of a capture of up to that
    many handshakes is exact; past it every value goes into a fixed histogram of
    buckets 0.1 % wide, and the median is the middle bucket's centre (within
    0.05 %). So the summary of a capture of any length stays under a megabyte.
    """

    EXACT = 1 << 16
    _STEP = math.log1p(1e-3)  # bucket k >= 1 holds |ns| in [e^((k-1) STEP), e^(k STEP))
    _ZERO = int(math.log(2.0**63) / _STEP) + 2  # the bucket of 0; negative delays below it

    def __init__(self):
        self.count = 0
        self._values: array | None = array("q")
        self._histogram: np.ndarray | None = None

    def add_many(self, ns: np.ndarray) -> None:
        """``add`` each of ``ns`` (int64), in order."""
        if not len(ns):
            return
        self.count += len(ns)
        if self._histogram is None:
            self._values.frombytes(ns.astype(np.int64).tobytes())
            if len(self._values) > self.EXACT:
                values = np.frombuffer(self._values, np.int64)
                self._histogram = np.bincount(self._bucket(values), minlength=2 * self._ZERO + 1)
                self._values = None
        else:
            self._histogram += np.bincount(self._bucket(ns), minlength=len(self._histogram))

    def add(self, ns: int) -> None:
        self.count += 1
        if self._histogram is not None:
            self._histogram[self._ZERO + (int(math.log(ns) / self._STEP) + 1 if ns > 0 else
                                          -int(math.log(-ns) / self._STEP) - 1 if ns < 0 else 0)] += 1
            return
        self._values.append(ns)
        if len(self._values) > self.EXACT:  # from now on, a histogram
            values = np.frombuffer(self._values, np.int64)
            self._histogram = np.bincount(self._bucket(values), minlength=2 * self._ZERO + 1)
            self._values = None

    @classmethod
    def _bucket(cls, ns: np.ndarray) -> np.ndarray:
        size = np.abs(ns.astype(np.float64))
        k = (np.log(np.maximum(size, 1)) / cls._STEP).astype(np.int64) + 1
        return cls._ZERO + np.sign(ns) * k

    def median(self) -> float | None:
        """The median in nanoseconds (None if there is none)."""
        if not self.count:
            return None
        if self._histogram is None:
            return float(np.median(np.frombuffer(self._values, np.int64)))
        middle = int(np.searchsorted(np.cumsum(self._histogram), (self.count + 1) // 2))
        k = middle - self._ZERO
        return 0.0 if k == 0 else math.copysign(math.exp((abs(k) - 0.5) * self._STEP), k)


_READING: ContextVar[tuple[str, Decapsulation]] = ContextVar("reading", default=("auto", DEFAULT))


@contextmanager
def reading(reader: str = "auto", decapsulation: Decapsulation = DEFAULT):
    """How :func:`score_files` reads captures where its caller does not say (``reader=None``,
    ``decapsulation=None``): the command line's ``--reader`` and tunnel options reach
    every scoring path (``compose``, ``score_to_file``, ``hs rhythm``) through this."""
    check_reader(reader)
    token = _READING.set((reader, decapsulation))
    try:
        yield
    finally:
        _READING.reset(token)


def score_files(
    paths: Iterable[str | os.PathLike],
    *,
    strict: bool = False,
    timeout_s: float = 135.0,
    max_attempts: int = 200_000,
    on_notes: Callable[[list[Note]], None] | None = None,
    on_close: Callable[[Handshake], None] | None = None,
    on_closes: Callable[[Closings], None] | None = None,
    on_file: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    parallel: bool | None = None,
    reader: str | None = None,
    decapsulation: Decapsulation | None = None,
) -> Summary:
    """Read each capture, track its handshakes and sum them up.

    ``on_notes`` receives the notes in capture order, a list at a time;
    ``on_close`` each attempt as it ends (attempt ids are unique across the
    run); ``on_closes`` the same attempts as :class:`~.tracker.Closings`, a
    step's at a time; ``on_file`` the index of each file as its reading starts;
    ``on_progress`` the bytes read so far (across files). ``parallel``: read
    in a second process (None: for large files on a machine with two cores or
    more; never when ``decapsulation.context`` is asked, which the worker's rows do
    not carry, nor for a capture read through tshark). ``reader``: auto, fast or
    tshark, and ``decapsulation``: the tunnels to look inside (see
    :func:`~.sources.readers.open_capture`; None: what :func:`reading` set).
    Python's cycle collector is paused while it runs (see
    :func:`~.gcpause.collector_paused`). Raises :class:`~handshake_score.errors.CaptureError`.
    """
    ambient = _READING.get()
    reader_kind = ambient[0] if reader is None else reader
    decapsulation = ambient[1] if decapsulation is None else decapsulation
    check_reader(reader_kind)
    summary = Summary()
    started = time.perf_counter()
    done = 0

    def closed(closings: Closings) -> None:
        summary.add(closings)
        on_closes(closings)

    def start_tracker(first_id: int = 1) -> HandshakeTracker:
        return HandshakeTracker(timeout_s=timeout_s, max_attempts=max_attempts, first_id=first_id,
                                on_close=on_close, on_closes=summary.add if on_closes is None else closed)

    def finish(tracker: HandshakeTracker) -> None:
        tracker.close()
        for kind, n in tracker.notes.items():
            summary.notes[kind] += n
        for outcome, n in tracker.outcomes.items():
            summary.handshakes[outcome] += n
        summary.evicted += tracker.evicted

    with collector_paused():
        tracker = start_tracker()
        prefilter = tracker.prefilter  # it watches the packet stream, so it serves every tracker of the run
        for index, path in enumerate(paths):
            if on_file is not None:
                on_file(index)
            reader = open_capture(path, strict=strict, reader=reader_kind, decapsulation=decapsulation)
            fast = getattr(reader, "kind", "fast") == "fast"
            if fast and not decapsulation.context and (parallel or (parallel is None and worth_a_worker(path))):
                reader = WorkerReader(path, strict, prefilter, reader_kind, decapsulation)
                wanted = iter(reader)
            else:
                wanted = wanted_segments(reader, prefilter)
            first = True
            for segments in wanted:
                if first and len(segments):  # a file that goes on in time goes on with the same tracker
                    first = False
                    if segments["time_ns"][0] < tracker.now:
                        finish(tracker)
                        tracker = start_tracker(tracker.next_id)
                notes = tracker.feed(segments)
                if on_notes is not None and notes:
                    on_notes(notes)
                if on_progress is not None:
                    on_progress(done + reader.bytes_read)
            done += reader.size
            summary.files.append(FileSummary(reader.path, reader.format, reader.size, reader.packets,
                                             reader.segments, reader.truncated_at, reader.first_ns,
                                             getattr(reader, "protected", 0), getattr(reader, "kind", "fast"),
                                             getattr(reader, "cut_short", False)))
        finish(tracker)
    summary.seconds = time.perf_counter() - started
    return summary
