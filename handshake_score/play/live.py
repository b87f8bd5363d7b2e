"""A live performance: each handshake packet struck as it arrives.

The same tracker as for files is fed packet batches as they come; each note it
makes is appended to a :class:`LiveScore` (a score that grows) and struck at
once by every performer, from the calling thread, which also lets each strike
go when its performer says (:meth:`~.performer.Performer.hold_ns`) and hears
the signals. Nothing is queued: a note a coil cannot take in time (too soon
after its last strike, or past its duty cap) is dropped and counted, so a busy
link never builds a backlog. The score of a recorded live performance is made
from its capture file afterwards, exactly as ``hs score`` would.
"""

from __future__ import annotations

import heapq
import time
from array import array
from typing import Callable, Iterator

import numpy as np

from ..score import KIND_CODE, NO_DELAY, NOTE, Source
from ..segments import address_text
from ..tracker import HandshakeTracker, Note
from ..errors import HandshakeScoreError
from .performance import MAX_ONSETS, Performance, stop_and_silence
from .performer import LivePerformer

IDLE_TICK_S = 0.1  # on a quiet wire, let the tracker's clock move this often
RING = 1 << 16     # notes a live score holds: far more than sound within one longest release


class LiveScore:
    """A score that grows: notes appended as the tracker makes them (outcome and delays
    unknown yet), hosts as they appear. Times are ns since the first note's packet.

    The notes are a ring of ``capacity`` rows, so a performance that runs for months keeps
    the same memory: a note's index (its slot) is reused ``capacity`` notes later, long
    after its strike was let go. Performers keep their own per-note values by slot too."""

    def __init__(self, orchestra, capacity: int = RING):
        self._rows = np.zeros(capacity, NOTE)
        self.n = 0  # notes appended, all told
        self.hosts: list[str] = []
        self.sources: list[Source] = []
        self.start_ns: int | None = None
        self.orchestra = orchestra
        self._hosts: dict[bytes, int] = {}

    def __len__(self) -> int:
        return min(self.n, len(self._rows))

    @property
    def notes(self) -> np.ndarray:
        """The notes in the ring, by slot."""
        return self._rows[: len(self)]

    def append(self, note: Note) -> int:
        """The note's slot."""
        if self.start_ns is None:
            self.start_ns = note.time_ns
        h = note.handshake
        flow = h.flow
        slot = self.n % len(self._rows)
        row = self._rows[slot]
        row["time_ns"] = note.time_ns - self.start_ns
        row["kind"] = KIND_CODE[note.kind]
        row["attempt"] = h.id  # the tracker's own number: no table of them to grow
        row["client"], row["server"] = self._host(flow[:16]), self._host(flow[18:34])
        row["client_port"] = int.from_bytes(flow[16:18], "big")
        row["server_port"] = int.from_bytes(flow[34:36], "big")
        row["syn_to_syn_ack_ns"] = row["syn_ack_to_ack_ns"] = NO_DELAY
        row["source"] = 1
        self.n += 1
        return slot

    def _host(self, raw: bytes) -> int:
        i = self._hosts.get(raw)
        if i is None:
            i = self._hosts[raw] = len(self.hosts)
            self.hosts.append(address_text(raw))
        return i


def perform_live(
    batches: Callable[[float | None], Iterator],
    performers: list[LivePerformer],
    orchestra,
    *,
    tracker: HandshakeTracker | None = None,
    running: Callable[[], bool] = lambda: True,
    on_note: Callable[[LiveScore, int], None] | None = None,
    capacity: int = RING,
) -> Performance:
    """Strike every handshake packet ``batches(timeout_s)`` brings, as it comes, until
    ``running()`` says no (or an exception, Ctrl-C, SIGTERM). ``Performance.onset_ns``
    holds, per strike, the wall-clock delay from the packet's capture timestamp to the
    performer's call. ``capacity``: the notes the live score holds (see :class:`LiveScore`).

    >>> from handshake_score.play import registry
    >>> perform_live(capture.batches, [registry.build("console", band, live=True)], band)
    """
    for p in performers:
        if not isinstance(p, LivePerformer):
            raise HandshakeScoreError(f"{p.name} plays scores, not the network as it happens (--live)")
    tracker = tracker or HandshakeTracker()
    score = LiveScore(orchestra, capacity)
    result = Performance(0, 0, passes=1).counting(performers)
    latencies = array("q")  # the first MAX_ONSETS of them: the same memory for months
    releases: list[tuple[int, int, int, int]] = []  # (due perf_counter_ns, order, performer, note)
    failure = None
    try:
        for p in performers:
            p.prepare(score, np.zeros(0, np.int64))
            p.live()
        order = 0
        clock = None  # (the last packet's capture time, the monotonic time it was read): the wire's clock
        while running():
            now = time.perf_counter_ns()
            while releases and releases[0][0] <= now:
                _, _, k, i = heapq.heappop(releases)
                performers[k].release(i)
            wait = IDLE_TICK_S if not releases else max(0.0, (releases[0][0] - now) / 1e9)
            for batch in batches(min(wait, IDLE_TICK_S)):
                # every segment to the tracker: a few packets at a time, it takes them all sooner
                # than the prefilter (made for files) picks among them; and the prefilter must see
                # every batch or none, or it forgets a SYN-ACK whose ACK comes in a later batch
                segments = batch.select()
                if len(segments):
                    clock = (int(segments["time_ns"].max()), time.monotonic_ns())
                for note in tracker.feed(segments):
                    i = score.append(note)
                    for p in performers:
                        p.add(score, i)
                    for k, p in enumerate(performers):
                        called = time.time_ns()
                        if p.strike(i) is False:
                            result.dropped[p.name] += 1
                            continue
                        if len(latencies) < MAX_ONSETS:
                            latencies.append(called - note.time_ns)
                        result.played[p.name] += 1
                        hold = p.hold_ns(i)
                        if hold is not None:
                            order += 1
                            heapq.heappush(releases, (time.perf_counter_ns() + hold, order, k, i))
                    if on_note is not None:
                        on_note(score, i)
            if clock is not None:  # on a quiet wire too, attempts past their timeout leave
                tracker.tick(clock[0] + time.monotonic_ns() - clock[1])
        while releases:  # the end: the last strikes get their whole pulse
            due, _, k, i = heapq.heappop(releases)
            time.sleep(max(0, due - time.perf_counter_ns()) / 1e9)
            performers[k].release(i)
    except BaseException as e:  # noqa: BLE001 - raised again below, once all is quiet
        failure = e
    try:
        failure = stop_and_silence(None, performers) or failure
    except BaseException as e:  # noqa: BLE001
        failure = failure or e
    result.notes = score.n
    result.length_ns = int(score.notes["time_ns"].max()) if len(score) else 0
    result.onset_ns = np.frombuffer(latencies, np.int64).copy() if latencies else np.zeros(0, np.int64)
    result.complete = failure is None
    if failure is not None:
        failure.performance = result
        raise failure
    return result

