"""The batch path: capture files -> tracker -> a summary of their handshakes.

>>> summary = score_files(["captures/example-loopback.pcapng"])
>>> summary.as_dict()["handshakes"]["complete"]

Files that go on in time, one after the other (a capture split by editcap, a
ring buffer's files), are one capture: a handshake cut between two of them is
found whole. A file that starts before the previous one ended is a capture of
its own with a tracker of its own; the totals add up.
"""

from __future__ import annotations

import os
import statistics
import time
from array import array
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .pipeline import WorkerReader, wanted_segments, worth_a_worker
from .sources import CaptureReader
from .tracker import Handshake, HandshakeTracker, Kind, Note, Outcome


@dataclass
class FileSummary:
    path: str
    format: str
    size: int
    packets: int
    segments: int
    truncated_at: int | None
    first_ns: int | None = None  # the time of its first packet


@dataclass
class Summary:
    """What ``hs score`` reports: packets read, notes by kind, attempts by outcome, delays."""

    files: list[FileSummary] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Kind.ALL, 0))
    handshakes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome.ALL, 0))
    evicted: int = 0
    seconds: float = 0.0
    syn_to_syn_ack_ns: array = field(default_factory=lambda: array("q"))
    syn_ack_to_ack_ns: array = field(default_factory=lambda: array("q"))

    @property
    def packets(self) -> int:
        return sum(f.packets for f in self.files)

    def add(self, h: Handshake) -> None:
        """Record the delays of a finished attempt (the tracker's ``on_close``)."""
        delay = h.syn_to_syn_ack_ns
        if delay is not None:
            self.syn_to_syn_ack_ns.append(delay)
        delay = h.syn_ack_to_ack_ns
        if delay is not None:
            self.syn_ack_to_ack_ns.append(delay)

    def as_dict(self) -> dict:
        def median_ms(values: array) -> float | None:
            return round(statistics.median(values) / 1e6, 6) if values else None

        return {
            "packets": self.packets,
            "tcp_segments": sum(f.segments for f in self.files),
            "notes": dict(self.notes),
            "handshakes": dict(self.handshakes),
            "delays_ms": {
                "syn_to_syn_ack": {"median": median_ms(self.syn_to_syn_ack_ns), "count": len(self.syn_to_syn_ack_ns)},
                "syn_ack_to_ack": {"median": median_ms(self.syn_ack_to_ack_ns), "count": len(self.syn_ack_to_ack_ns)},
            },
            "evicted": self.evicted,
            "seconds": round(self.seconds, 6),
            "files": [vars(f) for f in self.files],
        }


def score_files(
    paths: Iterable[str | os.PathLike],
    *,
    strict: bool = False,
    timeout_s: float = 135.0,
    max_attempts: int = 200_000,
    on_notes: Callable[[list[Note]], None] | None = None,
    on_close: Callable[[Handshake], None] | None = None,
    on_file: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    parallel: bool | None = None,
) -> Summary:
    """Read each capture, track its handshakes and sum them up.

    ``on_notes`` receives the notes in capture order, a list at a time;
    ``on_close`` each attempt as it ends (attempt ids are unique across the
    run); ``on_file`` the index of each file as its reading starts;
    ``on_progress`` the bytes read so far (across files). ``parallel``: read
    in a second process (None: for large files on a machine with two cores or
    more). Raises :class:`~handshake_score.errors.CaptureError`.
    """
    summary = Summary()
    started = time.perf_counter()
    done = 0

    def closed(h: Handshake) -> None:
        summary.add(h)
        on_close(h)

    def start_tracker(first_id: int = 1) -> HandshakeTracker:
        return HandshakeTracker(timeout_s=timeout_s, max_attempts=max_attempts, first_id=first_id,
                                on_close=summary.add if on_close is None else closed)

    def finish(tracker: HandshakeTracker) -> None:
        tracker.close()
        for kind, n in tracker.notes.items():
            summary.notes[kind] += n
        for outcome, n in tracker.outcomes.items():
            summary.handshakes[outcome] += n
        summary.evicted += tracker.evicted

    tracker = start_tracker()
    prefilter = tracker.prefilter  # it watches the packet stream, so it serves every tracker of the run
    for index, path in enumerate(paths):
        if on_file is not None:
            on_file(index)
        if parallel or (parallel is None and worth_a_worker(path)):
            reader = WorkerReader(path, strict, prefilter)
            wanted = iter(reader)
        else:
            reader = CaptureReader(path, strict=strict)
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
                                         reader.segments, reader.truncated_at, reader.first_ns))
    finish(tracker)
    summary.seconds = time.perf_counter() - started
    return summary
