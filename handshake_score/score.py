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
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
from array import array
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Iterable, NamedTuple

import numpy as np

from . import __version__
from .errors import HandshakeScoreError
from .orchestra import DEFAULT, Orchestra
from .segments import INT64_MIN, address_text
from .summary import Summary, score_files
from .tracker import Handshake, Kind, Note, Outcome

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
OUTCOME_CODE = {o: i for i, o in enumerate(Outcome.ALL)}


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
    tool: str = f"hs {__version__}"

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


class _Collector:
    """Takes the tracker's notes and, as each attempt ends, its final state;
    keeps both in compact columns (a long capture's notes do not each hold a
    :class:`Handshake`)."""

    def __init__(self):
        self.time, self.kind, self.attempt, self.source = array("q"), array("B"), array("q"), array("H")
        self.h_id, self.h_outcome, self.h_d1, self.h_d2 = array("q"), array("B"), array("q"), array("q")
        self.h_flows: list[bytes] = []

    def notes(self, notes: list[Note], source: int) -> None:
        times, kinds, attempts = zip(*notes)  # columns, and map() with C callables: no Python frame a note
        self.time.extend(times)
        self.kind.extend(map(KIND_CODE.__getitem__, kinds))
        self.attempt.extend(map(_ID, attempts))
        self.source.extend([source] * len(notes))

    def closed(self, h: Handshake) -> None:
        self.h_id.append(h.id)
        self.h_outcome.append(OUTCOME_CODE[h.outcome])
        self.h_flows.append(h.flow)
        d1, d2 = h.syn_to_syn_ack_ns, h.syn_ack_to_ack_ns
        self.h_d1.append(NO_DELAY if d1 is None else d1)
        self.h_d2.append(NO_DELAY if d2 is None else d2)

    def score(self, sources: list[Source], start_ns: int, options: dict, orchestra: Orchestra) -> Score:
        n = len(self.time)
        time = np.frombuffer(self.time, np.int64) if n else np.zeros(0, np.int64)
        if n:  # a capture's records need not be in time order: no note may come before time 0
            start_ns = min(start_ns, int(time.min()))
        order = np.argsort(time, kind="stable")  # notes come nearly in time order; ties keep capture order
        ids = np.frombuffer(self.h_id, np.int64) if self.h_id else np.zeros(0, np.int64)
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
        notes["outcome"] = np.frombuffer(self.h_outcome, np.uint8)[row]
        notes["syn_to_syn_ack_ns"] = np.frombuffer(self.h_d1, np.int64)[row]
        notes["syn_ack_to_ack_ns"] = np.frombuffer(self.h_d2, np.int64)[row]
        # hosts and ports per attempt first (an attempt has several notes), then per note
        index: dict[bytes, int] = {}
        flows = self.h_flows
        client = np.fromiter((index.setdefault(f[:16], len(index)) for f in flows), np.uint32, len(flows))
        server = np.fromiter((index.setdefault(f[18:34], len(index)) for f in flows), np.uint32, len(flows))
        ports = np.frombuffer(b"".join(f[16:18] + f[34:36] for f in flows), ">u2").reshape(-1, 2)
        notes["client"], notes["server"] = client[row], server[row]
        notes["client_port"], notes["server_port"] = ports[row, 0], ports[row, 1]
        hosts = [address_text(a) for a in index]
        return Score(notes, hosts, sources, start_ns, options, orchestra)


class _Digests(threading.Thread):
    """The sha256 of each capture, worked out in a thread while the captures are read
    (hashlib lets go of the GIL), and abandoned if the reading fails."""

    def __init__(self, paths: list[str]):
        super().__init__(daemon=True)
        self.paths, self.digests = paths, [""] * len(paths)
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        for i, path in enumerate(self.paths):
            digest = hashlib.sha256()
            try:
                with open(path, "rb", buffering=0) as f:
                    while not self.stop.is_set() and (block := f.read(1 << 20)):
                        digest.update(block)
            except OSError:
                return  # the reader says what is wrong with the file
            self.digests[i] = digest.hexdigest()

    def result(self) -> list[str]:
        self.join()
        return self.digests


def compose(
    paths: Iterable[str | os.PathLike],
    *,
    strict: bool = False,
    timeout_s: float = 135.0,
    max_attempts: int = 200_000,
    orchestra: Orchestra = DEFAULT,
    on_progress=None,
    parallel: bool | None = None,
) -> Composed:
    """Score the handshakes of captures, merged in time order, each note tagged with its source.

    Time 0 is the earliest first packet of the captures (or an earlier note: records
    need not be in time order). Returns the score and the :class:`~.summary.Summary`
    of the same run.
    """
    paths = [os.fspath(p) for p in paths]
    collector = _Collector()
    current = [0]

    def on_file(index: int) -> None:
        current[0] = index + 1

    digests = _Digests(paths)
    try:
        summary = score_files(paths, strict=strict, timeout_s=timeout_s, max_attempts=max_attempts,
                              on_notes=lambda notes: collector.notes(notes, current[0]), on_close=collector.closed,
                              on_file=on_file, on_progress=on_progress, parallel=parallel)
    except BaseException:
        digests.stop.set()  # nobody will want the digests
        raise
    sources = [Source(os.path.basename(f.path), f.size, digest, f.first_ns)
               for f, digest in zip(summary.files, digests.result())]
    starts = [s.start_ns for s in sources if s.start_ns is not None]
    start_ns = min(starts) if starts else 0
    options = {"timeout_s": timeout_s, "max_attempts": max_attempts}
    return Composed(collector.score(sources, start_ns, options, orchestra), summary)


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
        for p in ports:
            if not 0 <= p <= 0xFFFF:
                raise HandshakeScoreError(f"--port: {p} is not a port (0-65535)")
        keep &= np.isin(notes["client_port"], ports) | np.isin(notes["server_port"], ports)
        options["port"] = ports
    if kinds is not None:
        kinds = list(kinds)
        unknown = [k for k in kinds if k not in Kind.ALL]
        if unknown:
            raise HandshakeScoreError(f"--kinds: unknown note kind {unknown[0]!r} (the kinds are {', '.join(Kind.ALL)})")
        keep &= np.isin(notes["kind"], [KIND_CODE[k] for k in kinds])
        options["kinds"] = kinds
    origin = 0
    if start is not None:
        origin = moment(start, score.start_ns, "--from")
        keep &= notes["time_ns"] >= origin
        options["from"] = start
    if end is not None:
        until = moment(end, score.start_ns, "--to")
        if until <= origin:
            raise HandshakeScoreError(f"--to: {end!r} is not after the start of the score")
        keep &= notes["time_ns"] < until
        options["to"] = end
    out = score.with_notes(keep, options=options, start_ns=score.start_ns + origin)
    out.notes["time_ns"] -= origin
    return out


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
        if seconds.is_finite():
            return int(seconds * 1_000_000_000)
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
