"""The score: the handshakes of one or more captures as timed notes.

A :class:`Score` is what the tracker's notes become once every attempt is
over: each note knows its attempt's outcome and delays. Notes are a numpy
structured array of :data:`NOTE` in time order; text (addresses, kinds,
outcomes, sources) is kept once, in small tables the rows index:

>>> score = compose(["captures/example-loopback.pcapng"]).score
>>> score.kinds()[:3], score.notes["time_ns"][:3]

Times are integer nanoseconds since ``start_ns`` (the capture's first packet,
or the ``--from`` moment), which is nanoseconds since the Unix epoch.
:mod:`.scorefile` reads and writes the text form.

:func:`score_to_file` writes the score file of captures of any size in bounded
memory, never holding the score: the same bytes as saving what :func:`compose`
and :func:`select` make.
"""

from __future__ import annotations

import ipaddress
import os
from array import array
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from . import version
from .digests import Digests
from .errors import HandshakeScoreError
from .orchestra import DEFAULT, Orchestra
from .segments import INT64_MAX, INT64_MIN, address_text
from .summary import Summary, score_files
from .tracker import OUTCOME_CODE, Closings, Kind, Note, Outcome

NOTE = np.dtype([
    ("time_ns", "<i8"),            # since Score.start_ns
    ("kind", "u1"),                # index into Kind.ALL
    ("attempt", "<u4"),            # 1, 2, ... in order of each attempt's first note
    ("client", "<u4"),             # index into Score.hosts
    ("client_port", "<u2"),
    ("server", "<u4"),
    ("server_port", "<u2"),
    ("outcome", "u1"),             # index into Outcome.ALL
    ("syn_to_syn_ack_ns", "<i8"),  # NO_DELAY where there is none
    ("syn_ack_to_ack_ns", "<i8"),
    ("source", "<u2"),             # 1, 2, ...: Score.sources[source - 1]
])
"""One note of a score."""

NO_DELAY = INT64_MIN
KIND_CODE = {k: i for i, k in enumerate(Kind.ALL)}


@dataclass(frozen=True)
class Source:
    """A capture a score was made from."""

    name: str            # the file's name, without its folder
    size: int            # bytes
    sha256: str
    start_ns: int | None  # its first packet, ns since the Unix epoch; None for a capture with no packets


@dataclass
class Score:
    """Timed notes and where they came from. See :data:`NOTE` and ``docs/score-format.md``."""

    notes: np.ndarray                 # NOTE rows, in time order
    hosts: list[str]                  # addresses (or pseudonyms) the notes' client/server index
    sources: list[Source]
    start_ns: int                     # the moment note time 0 stands for, ns since the Unix epoch
    options: dict = field(default_factory=dict)  # how it was made: scoring options, filters, anonymisation
    orchestra: Orchestra = DEFAULT
    tool: str = field(default_factory=lambda: f"hs {version()}")

    def __len__(self) -> int:
        return len(self.notes)

    def kinds(self) -> np.ndarray:
        """Each note's kind as a string."""
        return np.array(Kind.ALL, dtype=object)[self.notes["kind"]]

    def outcomes(self) -> np.ndarray:
        return np.array(Outcome.ALL, dtype=object)[self.notes["outcome"]]

    def attempts(self) -> int:
        return len(np.unique(self.notes["attempt"]))

    def first_notes(self) -> np.ndarray:
        """The index of each attempt's first note, in time order (so in attempt order)."""
        _, first = np.unique(self.notes["attempt"], return_index=True)
        return np.sort(first)

    def with_notes(self, which, **changes) -> Score:
        """A score of the notes ``which`` (a mask or indices), hosts unused by them dropped."""
        notes = self.notes[which]
        if not self.hosts:  # a score with no addresses (one read from a MIDI file)
            return replace(self, notes=notes.copy(), **changes)
        used, index = np.unique(np.concatenate([notes["client"], notes["server"]]), return_inverse=True)
        notes = notes.copy()
        notes["client"], notes["server"] = index[: len(notes)], index[len(notes):]
        return replace(self, notes=notes, hosts=[self.hosts[i] for i in used], **changes)


def bracketed(host: str) -> str:
    """A host as it goes before ``:port``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class Composed(NamedTuple):
    score: Score
    summary: Summary


_ID = attrgetter("id")


class _Closed:
    """Closed attempts' final state in compact columns: id, outcome code, delays (``NO_DELAY``
    where none) and flow (36 bytes, without a context key's 8), as :class:`~.tracker.Closings`
    give them (``on_closes``)."""

    def __init__(self):
        self.id, self.outcome, self.d1, self.d2 = array("q"), array("B"), array("q"), array("q")
        self.flows = bytearray()

    def __len__(self) -> int:
        return len(self.id)

    def add(self, closings: Closings) -> None:
        self.id.frombytes(closings.id.tobytes())
        self.outcome.frombytes(closings.outcome.tobytes())
        self.d1.frombytes(closings.syn_to_syn_ack_ns.tobytes())  # INT64_MIN = NO_DELAY where none
        self.d2.frombytes(closings.syn_ack_to_ack_ns.tobytes())
        self.flows += closings.flows.tobytes()

    def column(self, name: str, dtype) -> np.ndarray:
        values = getattr(self, name)
        return np.frombuffer(values, dtype) if len(values) else np.zeros(0, dtype)


class _Collector:
    """Takes the tracker's notes and, as each attempt ends, its final state;
    keeps both in compact columns (a long capture's notes do not each hold a
    :class:`Handshake`)."""

    def __init__(self):
        self.time, self.kind, self.attempt, self.source = array("q"), array("B"), array("q"), array("H")
        self.closed = _Closed()

    def notes(self, notes: list[Note], source: int) -> None:
        times, kinds, attempts = zip(*notes)  # columns, and map() with C callables: no Python frame a note
        self.time.extend(times)
        self.kind.extend(map(KIND_CODE.__getitem__, kinds))
        self.attempt.extend(map(_ID, attempts))
        self.source.extend([source] * len(notes))

    def score(self, sources: list[Source], start_ns: int, options: dict, orchestra: Orchestra) -> Score:
        n = len(self.time)
        time = np.frombuffer(self.time, np.int64) if n else np.zeros(0, np.int64)
        if n:  # a capture's records need not be in time order: no note may come before time 0
            start_ns = min(start_ns, int(time.min()))
        order = np.argsort(time, kind="stable")  # notes come nearly in time order; ties keep capture order
        closed = self.closed
        ids = closed.column("id", np.int64)
        by_id = np.argsort(ids)
        row = by_id[np.searchsorted(ids[by_id], np.frombuffer(self.attempt, np.int64)[order])] if n else np.zeros(0, int)
        notes = np.zeros(n, NOTE)
        notes["time_ns"] = time[order] - start_ns
        notes["kind"] = np.frombuffer(self.kind, np.uint8)[order]
        notes["source"] = np.frombuffer(self.source, np.uint16)[order]
        # attempts numbered in the order of their first note
        _, first, inverse = np.unique(row, return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
        notes["attempt"] = rank[inverse]
        notes["outcome"] = closed.column("outcome", np.uint8)[row]
        notes["syn_to_syn_ack_ns"] = closed.column("d1", np.int64)[row]
        notes["syn_ack_to_ack_ns"] = closed.column("d2", np.int64)[row]
        # hosts and ports per attempt first (an attempt has several notes), then per note
        index: dict[bytes, int] = {}
        every = bytes(closed.flows)
        flows = [every[at:at + 36] for at in range(0, len(every), 36)]
        client = np.fromiter((index.setdefault(f[:16], len(index)) for f in flows), np.uint32, len(flows))
        server = np.fromiter((index.setdefault(f[18:34], len(index)) for f in flows), np.uint32, len(flows))
        ports = np.frombuffer(b"".join(f[16:18] + f[34:36] for f in flows), ">u2").reshape(-1, 2)
        notes["client"], notes["server"] = client[row], server[row]
        notes["client_port"], notes["server_port"] = ports[row, 0], ports[row, 1]
        hosts = [address_text(a) for a in index]
        return Score(notes, hosts, sources, start_ns, options, orchestra)


def _both(first, then):
    """``first``, and ``then`` too if given (an ``on_closes`` the caller adds)."""
    if then is None:
        return first

    def both(closings: Closings) -> None:
        first(closings)
        then(closings)

    return both


def compose(
    paths: Iterable[str | os.PathLike],
    *,
    strict: bool = False,
    timeout_s: float = 135.0,
    max_attempts: int = 200_000,
    orchestra: Orchestra = DEFAULT,
    on_progress=None,
    parallel: bool | None = None,
    on_close=None,
    on_closes=None,
    digests: Digests | None = None,
) -> Composed:
    """Score the handshakes of captures, merged in time order, each note tagged with its source.

    Time 0 is the earliest first packet of the captures (or an earlier note: records
    need not be in time order). Returns the score and the :class:`~.summary.Summary`
    of the same run. ``on_close`` also receives each attempt as it closes, ``on_closes``
    each step's as :class:`~.tracker.Closings` (see :func:`~.summary.score_files`).
    ``digests``: the captures' sha256 begun earlier (see :mod:`~.digests`), else begun here.
    """
    paths = [os.fspath(p) for p in paths]
    collector = _Collector()
    current = [0]

    def on_file(index: int) -> None:
        current[0] = index + 1

    digests = Digests(paths) if digests is None else digests.of(paths)
    try:
        summary = score_files(paths, strict=strict, timeout_s=timeout_s, max_attempts=max_attempts,
                              on_notes=lambda notes: collector.notes(notes, current[0]),
                              on_close=on_close, on_closes=_both(collector.closed.add, on_closes),
                              on_file=on_file, on_progress=on_progress, parallel=parallel)
    except BaseException:
        digests.stop()  # nobody will want the digests
        raise
    sources = [Source(os.path.basename(f.path), f.size, digest, f.first_ns)
               for f, digest in zip(summary.files, digests.result())]
    starts = [s.start_ns for s in sources if s.start_ns is not None]
    start_ns = min(starts) if starts else 0
    options = {"timeout_s": timeout_s, "max_attempts": max_attempts}
    return Composed(collector.score(sources, start_ns, options, orchestra), summary)


# -- a score file of any size, in bounded memory ------------------------------------------------------------

_WAIT = np.dtype([("time_ns", "<i8"), ("seq", "<i8"), ("id", "<i8"), ("source", "<u2"), ("kind", "u1")], align=True)
"""A note whose attempt is still open: its capture time, its place in the tracker's output
(``seq``: ties in time keep it), its attempt's id, source and kind."""

_ROW = np.dtype([("time_ns", "<i8"), ("seq", "<i8"), ("id", "<i8"), ("syn_to_syn_ack_ns", "<i8"),
                 ("syn_ack_to_ack_ns", "<i8"), ("flow", "V36"), ("source", "<u2"), ("kind", "u1"),
                 ("outcome", "u1"), ("mark", "u1")], align=True)
"""A note whose attempt has closed, with all a line of the score file needs but the attempt's
number and the addresses as text. 88 bytes, so that every row's integers are aligned (81 bytes
packed, and numpy reads misaligned fields a fifth slower)."""

_AHEAD = 4  # blocks of lines made before the header (a block's text is a few MB)
_FIRST, _LAST = 1, 2  # _ROW.mark: the first and the last note of its attempt, in time order


def _in_time_order(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort((rows["seq"], rows["time_ns"]))]


class _Spool:
    """A run's notes on their way to a score file, in bounded memory.

    A note's outcome and delays are known only when its attempt closes (up to ``--timeout``
    after its SYN), and notes come nearly, not exactly, in time order (a SYN-ACK seen before
    its SYN is noted after it; a capture's records or overlapping captures may go back in
    time). So each note waits, in compact columns (19 bytes), until its attempt closes.
    Every ``settle_every`` notes (or as many as are waiting, if more), and past the first
    ``settle_every`` notes whenever a quarter of that many attempts have closed, the notes
    of the attempts closed meanwhile are completed and sorted; up to ``run_rows`` of them stay in
    memory, past that each sorted batch goes to a temporary file (unnamed, in ``folder``)
    as a run, and :meth:`sorted` merges the runs in time order, ``fan_in`` at a time. A
    batch that begins after the last run ends extends it, so notes that close in time
    order (a SYN flood's, evicted oldest first) make one run, read straight through.
    Memory: the notes of the attempts in flight (bounded by the tracker's
    ``--max-attempts``), a batch, and while merging ``merge_rows`` rows in all.
    """

    def __init__(self, folder: str | None = None, run_rows: int = 1 << 18, fan_in: int = 32,
                 merge_rows: int = 1 << 18, settle_every: int = 1 << 18):
        if run_rows < 1 or fan_in < 2 or settle_every < 1:
            raise ValueError("run_rows and settle_every must be at least 1, fan_in at least 2")
        self.folder, self.run_rows, self.fan_in, self.merge_rows = folder, run_rows, fan_in, merge_rows
        self.settle_every = settle_every  # fresh notes (19 bytes each) kept before settling them
        self.count = 0                # notes settled
        self.min_time = INT64_MAX     # the earliest of their times
        self.runs: list[list[tuple[int, int]]] = []  # each run: its (offset, rows) pieces in the file
        self._fresh()
        self._seq = 0                 # the place of the first fresh note
        self._waiting = np.zeros(0, _WAIT)
        self._closed()
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._file = None
        self._end = 0                 # bytes in the file
        self._last: tuple[int, int] | None = None  # (time, seq) of the last note of the last run

    def _fresh(self) -> None:
        self._time, self._kind, self._id, self._source = array("q"), array("B"), array("q"), array("H")

    def _closed(self) -> None:
        self._c = _Closed()

    # -- what the tracker gives ---------------------------------------------------------------

    def notes(self, notes: list[Note], source: int) -> None:
        """Notes as the tracker emits them (``score_files``' ``on_notes``), from capture ``source``."""
        times, kinds, attempts = zip(*notes)
        self._time.extend(times)
        self._kind.extend(map(KIND_CODE.__getitem__, kinds))
        self._id.extend(map(_ID, attempts))
        self._source.extend([source] * len(notes))
        # Settled only here, after the notes of the tracker's last step: an attempt it closed in
        # that step (on_close comes first) may have notes among these. A long run settles
        # whenever a quarter of settle_every attempts have closed (the notes settled at once are
        # what a settling holds in memory); a short one, once at the end.
        n = len(self._time)
        if n >= max(self.settle_every, len(self._waiting)) or (
                len(self._c) >= self.settle_every >> 2 and self._seq + n >= self.settle_every):
            self._settle()

    def closed(self, closings: Closings) -> None:
        """Attempts the tracker closed (``on_closes``): their outcome and delays are final."""
        self._c.add(closings)

    # -- sorting ---------------------------------------------------------------------------------

    def _settle(self, final: bool = False) -> None:
        """Complete the notes of the attempts closed since the last call: sorted in time, they
        are kept in memory while they are few, else written to the file."""
        n = len(self._time)
        fresh = np.empty(n, _WAIT)
        if n:
            fresh["time_ns"] = np.frombuffer(self._time, np.int64)
            fresh["seq"] = np.arange(self._seq, self._seq + n)
            fresh["id"] = np.frombuffer(self._id, np.int64)
            fresh["source"] = np.frombuffer(self._source, np.uint16)
            fresh["kind"] = np.frombuffer(self._kind, np.uint8)
        self._seq += n
        self._fresh()
        notes = np.concatenate([self._waiting, fresh]) if len(self._waiting) else fresh
        del fresh
        closed = self._c
        ids = closed.column("id", np.int64)
        by_id = np.argsort(ids, kind="stable")
        at = np.minimum(np.searchsorted(ids[by_id], notes["id"]), max(len(ids) - 1, 0))
        done = ids[by_id][at] == notes["id"] if len(ids) else np.zeros(len(notes), bool)
        if final and not done.all():
            raise AssertionError("a note of an attempt that never closed")
        settled = np.flatnonzero(done)
        # in time order (ties in the tracker's order), so the rows are made sorted, once
        settled = settled[np.lexsort((notes["seq"][settled], notes["time_ns"][settled]))]
        row = by_id[at[settled]]
        del at, by_id
        rows = np.empty(len(settled), _ROW)
        if len(rows):
            for name in ("time_ns", "seq", "id", "source", "kind"):
                rows[name] = notes[name][settled]
            rows["outcome"] = closed.column("outcome", np.uint8)[row]
            rows["syn_to_syn_ack_ns"] = closed.column("d1", np.int64)[row]
            rows["syn_ack_to_ack_ns"] = closed.column("d2", np.int64)[row]
            rows["flow"] = closed.column("flows", "V36")[row]
        del row, settled
        self._waiting = notes[~done]
        del notes
        self._closed()
        if not len(rows):
            return
        self._mark(rows)
        self.count += len(rows)
        self.min_time = min(self.min_time, int(rows["time_ns"][0]))
        self._buffer.append(rows)
        self._buffered += len(rows)
        if self._file is not None or self._buffered > self.run_rows:  # too many to keep: to the file
            for rows in self._buffer:
                self._write_run(rows)
            self._buffer, self._buffered = [], 0

    @staticmethod
    def _mark(rows: np.ndarray) -> None:
        """Mark each attempt's first and last note (``rows`` in time order, every note of its attempts here)."""
        ids = rows["id"]
        order = np.argsort(ids, kind="stable")  # each attempt's notes stay in time order
        same = ids[order][1:] == ids[order][:-1]
        mark = np.full(len(rows), _FIRST | _LAST, np.uint8)
        mark[1:][same] &= ~np.uint8(_FIRST)
        mark[:-1][same] &= ~np.uint8(_LAST)
        rows["mark"][order] = mark

    def _write_run(self, rows: np.ndarray) -> None:
        """Sorted rows to the file: they extend the last run if they come after it, else begin one."""
        import tempfile  # only now: its imports cost a short run 6 ms

        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=self.folder)
            self._file.write(rows.view(np.uint8))
        except OSError as e:
            raise HandshakeScoreError(f"{self.folder or tempfile.gettempdir()}: cannot write the notes' "
                                      f"temporary file: {e.strerror or e}") from None
        piece = (self._end, len(rows))
        self._end += rows.nbytes
        first = (int(rows["time_ns"][0]), int(rows["seq"][0]))
        if self.runs and self._last is not None and self._last < first:
            self.runs[-1].append(piece)
        else:
            self.runs.append([piece])
        self._last = (int(rows["time_ns"][-1]), int(rows["seq"][-1]))

    def sorted(self, block: int = 1 << 16) -> Iterator[np.ndarray]:
        """Every note, in time order (ties in the order the tracker emitted them), in blocks of
        at most ``block`` rows. Call once the tracker has closed every attempt; ``count`` and
        ``min_time`` are final when it returns."""
        self._settle(final=True)
        return self._sorted(block)

    def _sorted(self, block: int) -> Iterator[np.ndarray]:
        pieces, self._buffer, self._buffered = self._buffer, [], 0  # never more than run_rows in all
        if not self.runs:
            for rows in _merge([iter([rows]) for rows in pieces]):
                for at in range(0, len(rows), block):
                    yield rows[at:at + block]
            return
        self._file.flush()
        while len(self.runs) > self.fan_in:  # too many to merge at once: merge some first
            group, self.runs = self.runs[:self.fan_in], self.runs[self.fan_in:]
            self._last = None
            for rows in _merge([self._read(run, len(group)) for run in group]):
                self._write_run(rows)
            self._last = None  # the merged run stands alone
            self._file.flush()
        for rows in _merge([self._read(run, len(self.runs)) for run in self.runs]):
            for at in range(0, len(rows), block):
                yield rows[at:at + block]

    def _read(self, run: list[tuple[int, int]], runs: int) -> Iterator[np.ndarray]:
        """A run's rows from the file, a slice at a time (a share of ``merge_rows``)."""
        step = max(1024, self.merge_rows // max(runs, 1))
        fd = self._file.fileno()
        for offset, count in run:
            for at in range(0, count, step):
                n = min(step, count - at)
                data = os.pread(fd, n * _ROW.itemsize, offset + at * _ROW.itemsize)
                if len(data) != n * _ROW.itemsize:
                    raise HandshakeScoreError("the notes' temporary file was cut short")
                yield np.frombuffer(data, _ROW)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _merge(sources: list[Iterator[np.ndarray]]) -> Iterator[np.ndarray]:
    """Merge sorted runs, each given as slices in time order, into blocks in time order."""
    heads = []
    for source in sources:
        for rows in source:
            if len(rows):
                heads.append([rows, source])
                break
    while heads:
        if len(heads) == 1:
            rows, source = heads[0]
            yield rows
            yield from source
            return
        # Every note up to the least of the heads' last keys is in the heads: take those.
        bound = min((int(rows["time_ns"][-1]), int(rows["seq"][-1])) for rows, _ in heads)
        taken = []
        for head in heads:
            rows = head[0]
            times = rows["time_ns"]
            lo, hi = np.searchsorted(times, bound[0], "left"), np.searchsorted(times, bound[0], "right")
            n = int(lo + np.searchsorted(rows["seq"][lo:hi], bound[1], "right"))
            if n:
                taken.append(rows[:n])
                head[0] = rows[n:]
        yield _in_time_order(np.concatenate(taken))
        left = []
        for head in heads:
            if not len(head[0]):
                head[0] = next((rows for rows in head[1] if len(rows)), None)
            if head[0] is not None:
                left.append(head)
        heads = left


class _Numbers:
    """Attempt numbers, 1, 2, ... in order of each attempt's first note, for notes given in
    time order a block at a time; and how many attempts the notes kept belong to."""

    def __init__(self):
        self.next = 1
        self._open = np.zeros(0, np.int64)       # ids of attempts numbered whose last note is to come
        self._numbers = np.zeros(0, np.int64)    # and their numbers
        self._counted = np.zeros(0, np.int64)    # sorted ids of attempts counted whose last note is to come
        self.kept = 0

    def number(self, ids: np.ndarray, marks: np.ndarray) -> np.ndarray:
        first, last = (marks & _FIRST) != 0, (marks & _LAST) != 0
        numbers = np.empty(len(ids), np.int64)
        new = int(np.count_nonzero(first))
        numbers[first] = np.arange(self.next, self.next + new)
        self.next += new
        later, opened, ending = ~first, first & ~last, last & ~first
        if not (later.any() or opened.any()):  # every note its attempt's only one (a flood's)
            return numbers
        both = np.concatenate([self._open, ids])
        lo, hi = int(both.min()), int(both.max())
        if hi - lo <= 4 * len(both) + 4096:  # ids are dense (attempts numbered in turn): tables by id
            table = np.zeros(hi - lo + 1, np.int64)
            table[self._open - lo] = self._numbers
            table[ids[first] - lo] = numbers[first]
            numbers[later] = table[ids[later] - lo]
            alive = np.zeros(hi - lo + 1, bool)
            alive[self._open - lo] = True
            alive[ids[opened] - lo] = True
            alive[ids[ending] - lo] = False
            self._open = np.flatnonzero(alive) + lo
            self._numbers = table[self._open - lo]
            return numbers
        if later.any():
            known = np.concatenate([self._open, ids[first]])
            order = np.argsort(known)
            numbers[later] = np.concatenate([self._numbers, numbers[first]])[order][
                np.searchsorted(known[order], ids[later])]
        ended = ids[ending]
        if opened.any() or len(ended):
            still = np.concatenate([self._open, ids[opened]])
            numbers_still = np.concatenate([self._numbers, numbers[opened]])
            if len(ended):
                going = ~np.isin(still, ended)
                still, numbers_still = still[going], numbers_still[going]
            self._open, self._numbers = still, numbers_still
        return numbers

    def count(self, kept_ids: np.ndarray, ids: np.ndarray, marks: np.ndarray) -> None:
        """Count the attempts of ``kept_ids`` not counted before (``ids``, ``marks``: the whole block)."""
        fresh = np.setdiff1d(kept_ids, self._counted)
        self.kept += len(fresh)
        ended = ids[(marks & _LAST) != 0]
        self._counted = np.setdiff1d(np.union1d(self._counted, fresh), ended, assume_unique=True)


class _Lines:
    """Blocks of settled notes, in time order, as the note lines of a score file: numbered,
    filtered (as :func:`select` does), addresses as text."""

    _CACHE = 1 << 16  # addresses kept as text from one block to the next

    def __init__(self, start_ns: int, filters: _Filters, origin: int, until: int | None):
        self.start_ns, self.filters, self.origin, self.until = start_ns, filters, origin, until
        self.filtering = filters.active or bool(origin) or until is not None
        self.numbers = _Numbers()
        self.written = 0
        self._text: dict[bytes, str] = {}

    def __call__(self, rows: np.ndarray) -> bytes:
        from .scorefile import rows_bytes

        numbers = self.numbers.number(rows["id"], rows["mark"])
        times = rows["time_ns"] - self.start_ns
        flows = rows.view(np.uint8).reshape(-1, _ROW.itemsize)[:, _FLOW:_FLOW + 36]
        (clients, client), (servers, server) = self._hosts(flows, 0), self._hosts(flows, 18)
        client_port, server_port = self._port(flows, 16), self._port(flows, 34)
        if self.filtering:
            f, keep = self.filters, np.ones(len(rows), bool)
            if f.hosts:
                keep &= f.matching(clients)[client] | f.matching(servers)[server]
            if f.ports:
                keep &= np.isin(client_port, f.ports) | np.isin(server_port, f.ports)
            if f.kind_codes is not None:
                keep &= np.isin(rows["kind"], f.kind_codes)
            if self.origin:
                keep &= times >= self.origin
            if self.until is not None:
                keep &= times < self.until
            self.numbers.count(np.unique(rows["id"][keep]), rows["id"], rows["mark"])
            if not keep.all():
                rows, numbers, times = rows[keep], numbers[keep], times[keep]
                client, server, client_port, server_port = client[keep], server[keep], client_port[keep], server_port[keep]
        self.written += len(rows)
        if not len(rows):
            return b""
        return rows_bytes(times - self.origin, rows["kind"], numbers, clients, client, client_port, servers, server,
                          server_port, rows["outcome"], rows["syn_to_syn_ack_ns"], rows["syn_ack_to_ack_ns"],
                          rows["source"])

    @property
    def attempts(self) -> int:
        """The attempts of the notes written."""
        return self.numbers.kept if self.filtering else self.numbers.next - 1

    def _hosts(self, flows: np.ndarray, at: int) -> tuple[list[str], np.ndarray]:
        """The addresses at byte ``at`` of the flows: each one's text, and which it is for each row."""
        words = np.ascontiguousarray(flows[:, at:at + 16]).view("<u8")
        key = (words[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ words[:, 1]  # IPv4 (::ffff:a.b.c.d): word 1 alone
        order = np.argsort(key)
        key = key[order]
        new = np.empty(len(key), bool)
        new[:1] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        which = np.empty(len(key), np.intp)
        which[order] = np.cumsum(new) - 1
        first = order[new]
        if not np.array_equal(words[first][which], words):  # two addresses of one key: never seen, but exact
            _, first, which = np.unique(words.view([("a", "<u8"), ("b", "<u8")]).ravel(), return_index=True,
                                        return_inverse=True)
        unique = words[first]
        keys = unique.view("V16").ravel().tolist()
        text = self._text
        if len(text) > self._CACHE:
            text.clear()
        missing = [i for i, key in enumerate(keys) if key not in text]
        if missing:
            new = unique[missing]
            v4 = (new[:, 0] == 0) & ((new[:, 1] & np.uint64(0xFFFFFFFF)) == np.uint64(0xFFFF0000))  # ::ffff:a.b.c.d
            if v4.any():  # IPv4 addresses formatted all at once, as inet_ntop does: "a.b.c.d"
                octets = new[v4].view(np.uint8).reshape(-1, 16)[:, 12:]
                names = ("%d.%d.%d.%d," * len(octets) % tuple(octets.ravel().tolist())).split(",")
                text.update(zip([keys[i] for i in np.asarray(missing)[v4].tolist()], names))
            for i in np.asarray(missing)[~v4].tolist():
                text[keys[i]] = address_text(keys[i])
        return list(map(text.__getitem__, keys)), which.ravel()

    @staticmethod
    def _port(flows: np.ndarray, at: int) -> np.ndarray:
        return np.ascontiguousarray(flows[:, at:at + 2]).view(">u2").ravel()


_FLOW = _ROW.fields["flow"][1]  # the byte offset of a row's flow


class _Filters:
    """``--host``, ``--port`` and ``--kinds`` as :func:`select` applies them, checked at once."""

    def __init__(self, hosts: Iterable[str] = (), ports: Iterable[int] = (), kinds: Iterable[str] | None = None):
        self.hosts, self.ports = list(hosts), list(ports)
        self.kinds = None if kinds is None else list(kinds)
        _check_ports(self.ports)
        self.kind_codes = None if self.kinds is None else _kind_codes(self.kinds)
        for w in self.hosts:
            if "/" in w:
                _host_matches("0.0.0.0", [w])  # a network that is none fails here, before any work
        self.active = bool(self.hosts or self.ports or self.kinds is not None)
        self._matches: dict[str, bool] = {}

    def options(self, options: dict) -> None:
        if self.hosts:
            options["host"] = self.hosts
        if self.ports:
            options["port"] = self.ports
        if self.kinds is not None:
            options["kinds"] = self.kinds

    def matching(self, hosts: list[str]) -> np.ndarray:
        """Whether each of ``hosts`` (text) passes ``--host``."""
        matches = self._matches
        if len(matches) > 1 << 16:
            matches.clear()
        for host in hosts:
            if host not in matches:
                matches[host] = _host_matches(host, self.hosts)
        return np.fromiter(map(matches.__getitem__, hosts), bool, len(hosts))


@dataclass(frozen=True)
class Written:
    """What :func:`score_to_file` did."""

    summary: Summary
    notes: int      # notes written
    attempts: int   # the attempts they belong to
    scored: int     # notes before the filters


def score_to_file(
    paths: Iterable[str | os.PathLike],
    path: str | os.PathLike,
    *,
    force: bool = False,
    strict: bool = False,
    timeout_s: float = 135.0,
    max_attempts: int = 200_000,
    orchestra: Orchestra = DEFAULT,
    hosts: Iterable[str] = (),
    ports: Iterable[int] = (),
    start: str | None = None,
    end: str | None = None,
    kinds: Iterable[str] | None = None,
    on_progress=None,
    parallel: bool | None = None,
    tmp_dir: str | os.PathLike | None = None,
    buffer_notes: int = 1 << 18,
    on_close=None,
    on_closes=None,
    digests: Digests | None = None,
) -> Written:
    """Score captures and write the score file ``path`` in bounded memory, whatever its size.

    The file has the same bytes as ``save_score(select(compose(paths).score, hosts=...,
    ...), path)``, but no score is held: notes wait for their attempt to close, then go
    to a temporary file in sorted runs of ``buffer_notes`` (88 bytes each) that are
    merged in time order as the file is written (see :class:`_Spool`). The temporary file is
    unnamed, in ``tmp_dir`` (default: the score's folder, which has room for the score),
    and gone when this returns. The filters are :func:`select`'s; a bad one fails before
    any capture is read (``--from``/``--to`` as soon as the score's start is known).
    ``on_close`` also receives each attempt as it closes, ``on_closes`` each step's as
    :class:`~.tracker.Closings` (see :func:`~.summary.score_files`). ``digests``: the
    captures' sha256 begun earlier (see :mod:`~.digests`), else begun here.
    """
    from .files import atomic_write, check_writable
    from .scorefile import header_text

    paths = [os.fspath(p) for p in paths]
    check_writable(path, force)
    filters = _Filters(hosts, ports, kinds)
    spool = _Spool(_spill_folder(path) if tmp_dir is None else os.fspath(tmp_dir), run_rows=buffer_notes,
                   settle_every=buffer_notes)
    current = [0]

    def on_file(index: int) -> None:
        current[0] = index + 1

    digests = Digests(paths) if digests is None else digests.of(paths)
    try:
        summary = score_files(paths, strict=strict, timeout_s=timeout_s, max_attempts=max_attempts,
                              on_notes=lambda notes: spool.notes(notes, current[0]),
                              on_close=on_close, on_closes=_both(spool.closed, on_closes),
                              on_file=on_file, on_progress=on_progress, parallel=parallel)
        blocks = spool.sorted(min(1 << 16, buffer_notes))  # settles every note: their earliest time is known
        starts = [f.first_ns for f in summary.files if f.first_ns is not None]
        start_ns = min(starts) if starts else 0
        if spool.count:  # a capture's records need not be in time order: no note may come before time 0
            start_ns = min(start_ns, spool.min_time)
        options = {"timeout_s": timeout_s, "max_attempts": max_attempts}
        filters.options(options)
        origin, until = _window(start, end, start_ns, options)
        lines = _Lines(start_ns, filters, origin, until)
        ahead = []  # the first lines, made while the digests the header needs are worked out
        for rows in blocks:
            ahead.append(lines(rows))
            if digests.done() or len(ahead) >= _AHEAD:
                break
        sources = [Source(os.path.basename(f.path), f.size, digest, f.first_ns)
                   for f, digest in zip(summary.files, digests.result())]
        with atomic_write(path, force) as f:
            f.write(header_text(f"hs {version()}", start_ns + origin, sources, options, orchestra).encode())
            while ahead:
                f.write(ahead.pop(0))
            for rows in blocks:
                f.write(lines(rows))
    except BaseException:
        digests.stop()  # nobody will want the digests
        raise
    finally:
        spool.close()
    return Written(summary, lines.written, lines.attempts, spool.count)


def _spill_folder(path: str | os.PathLike) -> str:
    """The folder ``path`` will be in, or the nearest one above that exists (made later)."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def select(
    score: Score,
    *,
    hosts: Iterable[str] = (),
    ports: Iterable[int] = (),
    start: str | None = None,
    end: str | None = None,
    kinds: Iterable[str] | None = None,
) -> Score:
    """The notes of ``score`` that pass every filter given.

    ``hosts``: addresses, networks (``10.0.0.0/8``) or pseudonyms; a note
    passes when its client or server is one. ``ports``: client or server port.
    ``start``/``end``: moments as :func:`moment` reads them; notes from
    ``start`` (inclusive) to ``end`` (exclusive) pass, and ``start`` becomes the
    score's time 0. ``kinds``: note kinds to keep.
    """
    notes = score.notes
    keep = np.ones(len(notes), bool)
    options = dict(score.options)
    hosts, ports = list(hosts), list(ports)
    if hosts:
        wanted = np.array([_host_matches(h, hosts) for h in score.hosts] or [False])
        keep &= wanted[notes["client"]] | wanted[notes["server"]]
        options["host"] = hosts
    if ports:
        _check_ports(ports)
        keep &= np.isin(notes["client_port"], ports) | np.isin(notes["server_port"], ports)
        options["port"] = ports
    if kinds is not None:
        kinds = list(kinds)
        keep &= np.isin(notes["kind"], _kind_codes(kinds))
        options["kinds"] = kinds
    origin, until = _window(start, end, score.start_ns, options)
    if start is not None:
        keep &= notes["time_ns"] >= origin
    if until is not None:
        keep &= notes["time_ns"] < until
    out = score.with_notes(keep, options=options, start_ns=score.start_ns + origin)
    out.notes["time_ns"] -= origin
    return out


def _check_ports(ports: list[int]) -> None:
    for p in ports:
        if not 0 <= p <= 0xFFFF:
            raise HandshakeScoreError(f"--port: {p} is not a port (0-65535)")


def _kind_codes(kinds: list[str]) -> list[int]:
    unknown = [k for k in kinds if k not in Kind.ALL]
    if unknown:
        raise HandshakeScoreError(f"--kinds: unknown note kind {unknown[0]!r} (the kinds are {', '.join(Kind.ALL)})")
    return [KIND_CODE[k] for k in kinds]


def _window(start: str | None, end: str | None, start_ns: int, options: dict) -> tuple[int, int | None]:
    """``--from`` and ``--to`` as nanoseconds after ``start_ns`` (0 and None when not given);
    records them in ``options``."""
    origin = until = None
    if start is not None:
        origin = moment(start, start_ns, "--from")
        options["from"] = start
    if end is not None:
        until = moment(end, start_ns, "--to")
        if until <= (origin or 0):
            raise HandshakeScoreError(f"--to: {end!r} is not after the start of the score")
        options["to"] = end
    return origin or 0, until


def _host_matches(host: str, wanted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for w in wanted:
        if w == host:
            return True
        if ip is not None and "/" in w:
            try:
                if ip in ipaddress.ip_network(w, strict=False):
                    return True
            except ValueError:
                raise HandshakeScoreError(f"--host: {w!r} is not an address or a network") from None
    return False


def moment(text: str, start_ns: int, option: str = "time") -> int:
    """Nanoseconds after ``start_ns`` that ``text`` names: seconds (``90``, ``1.5``),
    a time of day (``14:03``, ``14:03:05.25``; local time, or UTC with a ``Z``;
    the first such moment at or after the start), or an ISO 8601 date and time."""
    text = text.strip()
    try:
        seconds = Decimal(text)
        if seconds.is_finite():  # held within int64 with room to add a start: past either end means "all"
            return max(-2**62, min(2**62, int(seconds * 1_000_000_000)))
    except InvalidOperation:
        pass
    started = datetime.fromtimestamp(start_ns // 1_000_000_000, timezone.utc)
    try:
        if "T" in text or "-" in text[1:]:  # a date and time
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.astimezone()
        else:
            utc_given = text.endswith(("Z", "z"))
            of_day = time.fromisoformat(text.rstrip("Zz"))
            zone = timezone.utc if utc_given else started.astimezone().tzinfo
            day = started.astimezone(zone).date()
            when = datetime.combine(day, of_day, zone)
            if when.timestamp() < start_ns // 1_000_000_000:  # before the start: that time the next day
                when += timedelta(days=1)
    except ValueError:
        raise HandshakeScoreError(f"{option}: {text!r} is not seconds, a time of day (HH:MM[:SS]) "
                                  "or a date and time") from None
    whole = int(when.replace(microsecond=0).timestamp()) * 1_000_000_000 + when.microsecond * 1000
    return whole - start_ns
