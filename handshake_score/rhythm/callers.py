"""The callers of a score and the entry points of the analysis. :class:`Caller` is one
periodic caller as found; :class:`Calls` the calls of a score, one per attempt at its
first SYN (:func:`calls_of`); :func:`analyse` finds the periodic callers among calls (each
port's callers first, then across ports where none of a pair's is periodic), and
:func:`find_rhythm` does it for a score, with the mask of the notes that belong to them.
:func:`selected` is what ``--only periodic`` and ``--except periodic`` keep of a score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..score import KIND_CODE, NO_DELAY, OUTCOME_CODE, Score, bracketed
from ..tracker import Kind, Outcome
from .schedule import _NS, _Stats, _analyse

MIN_CALLS = 4             # fewer calls say nothing about a schedule (RITA asks for 4 too)

_SYN = KIND_CODE[Kind.SYN]
_COMPLETE = OUTCOME_CODE[Outcome.COMPLETE]


@dataclass(frozen=True)
class Caller:
    """A caller that keeps a schedule. Times are nanoseconds since the score's start."""

    client: str
    server: str
    server_port: int | None  # None: the caller across every port of the server
    period_s: float          # the typical interval between calls
    spread_s: float          # the median absolute deviation of the intervals (per beat)
    calls: int
    score: float             # regularity in [0, 1]
    p_value: float           # Fisher's g test: how likely such a line is by chance
    first_ns: int
    last_ns: int
    completed: float         # the share of its attempts that completed
    syn_to_syn_ack_ms: float | None  # the median delay of its answers

    @property
    def target(self) -> str:
        """``server:port``, or ``server:*`` across ports."""
        return f"{bracketed(self.server)}:{'*' if self.server_port is None else self.server_port}"

    def describe(self) -> str:
        """``192.168.1.23 -> 52.94.233.1:443 every 15.0 s (40 calls)``."""
        return f"{self.client} -> {self.target} every {period_text(self.period_s)} ({self.calls:,} calls)"

    def as_dict(self) -> dict:
        return {"client": self.client, "server": self.server, "server_port": self.server_port,
                "period_s": round(self.period_s, 6), "spread_s": round(self.spread_s, 6), "calls": self.calls,
                "score": round(self.score, 3), "p_value": float(f"{self.p_value:.3g}"),
                "first_ns": self.first_ns, "last_ns": self.last_ns, "completed": round(self.completed, 3),
                "syn_to_syn_ack_ms": None if self.syn_to_syn_ack_ms is None else round(self.syn_to_syn_ack_ms, 3)}


def period_text(seconds: float) -> str:
    """A period as people say it: ``0.25 s``, ``15.0 s``, ``5.0 min``, ``2.0 h``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Calls(NamedTuple):
    """One row per attempt: who called whom, when (its first SYN), and how it went."""

    client: np.ndarray      # index into hosts
    server: np.ndarray
    server_port: np.ndarray
    time_ns: np.ndarray     # since the score's start
    outcome: np.ndarray     # Outcome.ALL codes
    syn_to_syn_ack_ns: np.ndarray  # NO_DELAY where there is none
    hosts: list[str]
    span_ns: int            # the time the score covers (for the coverage of each caller)


class Rhythm(NamedTuple):
    """What :func:`find_rhythm` found."""

    callers: list[Caller]   # most regular first
    attempts: int           # attempts looked at
    mask: np.ndarray        # for each note of the score: whether it belongs to a periodic caller
    caller_of: np.ndarray   # for each note: the index of its caller in ``callers``, or -1


# -- the calls of a score --------------------------------------------------------------------------------

def _first_of_each_attempt(attempt: np.ndarray) -> np.ndarray:
    """The index of each attempt's first note. Attempts are numbered in the order of their
    first notes, so a number seen for the first time is a new attempt (O(n)); a score whose
    numbers are not in that order (one a filter on kinds thinned) is sorted instead."""
    if not len(attempt):
        return np.zeros(0, np.intp)
    a = attempt.astype(np.int64)
    before = np.maximum.accumulate(np.concatenate([[0], a[:-1]]))
    first = np.flatnonzero(a > before)
    seen = np.zeros(int(a.max()) + 1, bool)
    seen[a[first]] = True
    if seen[a].all():
        return first
    _, first = np.unique(a, return_index=True)
    return np.sort(first)


def calls_of(score: Score) -> Calls:
    """The calls of ``score``: one per attempt, at its SYN (at its first note if a filter left
    out its SYN)."""
    notes = score.notes
    first = _first_of_each_attempt(notes["attempt"])
    rows = notes[first]
    time = rows["time_ns"].copy()
    syn = np.flatnonzero(notes["kind"] == _SYN)
    if len(syn):  # an attempt's SYN may come after its first note (a SYN-ACK captured before it)
        where = np.full(int(notes["attempt"].max()) + 1, -1, np.int64)
        where[rows["attempt"]] = np.arange(len(rows))
        at = where[notes["attempt"][syn]]
        time[at] = notes["time_ns"][syn]
    span = int(notes["time_ns"].max() - notes["time_ns"].min()) if len(notes) else 0
    return Calls(rows["client"], rows["server"], rows["server_port"], time, rows["outcome"],
                 rows["syn_to_syn_ack_ns"], score.hosts, span)


# -- callers ---------------------------------------------------------------------------------------------

def analyse(calls: Calls, *, min_calls: int = MIN_CALLS, min_score: float = 0.0,
            top: int | None = None) -> tuple[list[Caller], np.ndarray]:
    """The periodic callers among ``calls``, most regular first, and for each call the index
    of its caller among them (-1: none). With ``top``, only the ``top`` most regular."""
    found = _periodic(calls, min_calls, min_score)
    member = np.full(len(calls.time_ns), -1, np.int32)
    callers = []
    for i, (_, _, _, rows, stats, at, across) in enumerate(found[:top]):
        callers.append(_caller(calls, rows, stats, at, across))
        member[rows] = i
    return callers, member


def _periodic(calls: Calls, min_calls: int, min_score: float) -> list[tuple]:
    """Every periodic caller as (-score, p-value, first call, its rows, stats, index in them,
    across ports), most regular first: light, so that a flood's thousands cost little."""
    if min_calls < 3:
        from ..errors import HandshakeScoreError

        raise HandshakeScoreError(f"--min-calls: {min_calls} is too few (two intervals make no schedule; at least 3)")
    if not len(calls.time_ns):
        return []
    t = calls.time_ns.astype(np.int64)
    pair = (calls.client.astype(np.uint64) << np.uint64(32)) | calls.server.astype(np.uint64)
    _, pair_of = np.unique(pair, return_inverse=True)
    del pair
    pair_of = pair_of.ravel().astype(np.int64)
    port_key = (pair_of << 16) | calls.server_port.astype(np.int64)
    # a pair whose calls all go to one port is that port's caller: only pairs of several ports are
    # looked at again across ports
    ports_of_pair = np.bincount(np.unique(port_key) >> 16, minlength=int(pair_of.max()) + 1)
    several = np.flatnonzero(ports_of_pair[pair_of] > 1)
    found: list[tuple] = []
    periodic_pairs: set[int] = set()
    for rows_of, across in ((None, False), (several, True)):
        if rows_of is None:
            order = np.lexsort((t, port_key))
            stats = _analyse(port_key[order], t[order], calls.span_ns, min_calls)
        else:
            order = rows_of[np.lexsort((t[rows_of], pair_of[rows_of]))]
            stats = _analyse(pair_of[order], t[order], calls.span_ns, min_calls)
        for i in np.flatnonzero(stats.periodic & (stats.score >= min_score)).tolist():
            rows = order[stats.first[i]:stats.first[i] + stats.calls[i]]
            pair_id = int(pair_of[rows[0]])
            if across:
                if pair_id in periodic_pairs:  # its callers on one port say it better
                    continue
            else:
                periodic_pairs.add(pair_id)
            found.append((-float(stats.score[i]), float(stats.p_value[i]), int(t[rows].min()), rows, stats, i, across))
    found.sort(key=lambda f: f[:3])
    return found


def _caller(calls: Calls, rows: np.ndarray, stats: _Stats, i: int, across: bool) -> Caller:
    d1 = calls.syn_to_syn_ack_ns[rows]
    d1 = d1[d1 != NO_DELAY]
    r = int(rows[0])
    return Caller(
        client=calls.hosts[int(calls.client[r])], server=calls.hosts[int(calls.server[r])],
        server_port=None if across else int(calls.server_port[r]),
        period_s=float(stats.period_ns[i]) / _NS, spread_s=float(stats.spread_ns[i]) / _NS,
        calls=int(stats.calls[i]), score=float(stats.score[i]), p_value=float(stats.p_value[i]),
        first_ns=int(calls.time_ns[rows].min()), last_ns=int(calls.time_ns[rows].max()),
        completed=float(np.mean(calls.outcome[rows] == _COMPLETE)),
        syn_to_syn_ack_ms=float(np.median(d1)) / 1e6 if len(d1) else None)


def find_rhythm(score: Score | Calls, *, min_calls: int = MIN_CALLS, min_score: float = 0.0) -> Rhythm:
    """The periodic callers of ``score`` (most regular first) and the mask of the notes that
    belong to them: ``score.with_notes(rhythm.mask)`` is the heartbeat alone,
    ``score.with_notes(~rhythm.mask)`` the network without it. Given the :class:`Calls`
    alone (``hs rhythm`` reads no more of a score file), the mask is of the calls.

    ``min_calls``: a caller needs at least this many calls (at least 3); ``min_score``: and
    at least this score. A score without addresses (read from a MIDI file) has no callers.
    """
    if isinstance(score, Calls):
        callers, member = analyse(score, min_calls=min_calls, min_score=min_score)
        return Rhythm(callers, len(score.time_ns), member >= 0, member)
    if not len(score.notes) or not score.hosts:
        if min_calls < 3:
            analyse(calls_of(score), min_calls=min_calls)  # says what is wrong with it
        none = np.full(len(score.notes), -1, np.int32)
        return Rhythm([], score.attempts() if score.hosts else 0, none >= 0, none)  # MIDI-read: no callers
    calls = calls_of(score)
    callers, member = analyse(calls, min_calls=min_calls, min_score=min_score)
    attempt = score.notes["attempt"]
    row_of = np.full(int(attempt.max()) + 1, 0, np.int64)
    first = _first_of_each_attempt(attempt)
    row_of[attempt[first]] = np.arange(len(first))
    caller_of = member[row_of[attempt]]
    return Rhythm(callers, len(first), caller_of >= 0, caller_of)


SELECTIONS = ("periodic",)


def check_selection(only: str | None, without: str | None) -> None:
    """Raise for an ``--only``/``--except`` that :func:`selected` cannot do."""
    from ..errors import HandshakeScoreError

    for option, value in (("--only", only), ("--except", without)):
        if value is not None and value not in SELECTIONS:
            raise HandshakeScoreError(f"{option}: {value!r} is not something to select (there is: "
                                      f"{', '.join(SELECTIONS)})")
    if only is not None and without is not None:
        raise HandshakeScoreError("give --only or --except, not both")


def selected_saying(score: Score, only: str | None, without: str | None, say=None) -> Score:
    """:func:`selected`, and a warning through ``say`` (a function of one line) when it leaves
    no note of a score that had some."""
    kept = selected(score, only, without)
    if say is not None and len(score) and not len(kept):
        say(f"no note is {'periodic' if only else 'left once the periodic callers are out'}")
    return kept


def selected(score: Score, only: str | None = None, without: str | None = None,
             min_calls: int = MIN_CALLS) -> Score:
    """``score`` as ``--only periodic`` (the notes of its periodic callers: the heartbeat
    alone) or ``--except periodic`` (every other note: the network without it) ask for;
    as it is when neither is given. Notes keep their times."""
    check_selection(only, without)
    if only is None and without is None:
        return score
    mask = find_rhythm(score, min_calls=min_calls).mask
    return score.with_notes(mask if only is not None else ~mask)
