"""A performance: a score played by some performers, from the first note to the last.

>>> from handshake_score.play import perform, ConsolePerformer
>>> perform(score, [ConsolePerformer()], stretch=10)

:func:`perform` plans every part, runs the :class:`~.conductor.Conductor`
thread and waits for it in the calling thread, which is where Python delivers
signals: Ctrl-C or a SIGTERM (which ``hs`` turns into ``SystemExit``) unwinds
through it, and on every way out, normal or not, the conductor is stopped and
every performer silenced before anything else happens.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..files import atomic_write, check_writable
from ..timing import output_times_ns
from ..tracker import Kind
from .conductor import Conductor
from .performer import STRIKE, Performer

PROGRESS_EVERY_S = 0.25


@dataclass
class Progress:
    """Where a performance is, for a progress line."""

    position_ns: int      # output time reached in this pass
    length_ns: int        # output time of the last note
    passes: int           # passes begun (1 unless --loop)
    played: int           # strikes made, all passes, all performers
    dropped: int          # strikes planned away or refused, all passes, all performers


@dataclass
class Performance:
    """What happened: per performer, strikes played, deferred, dropped (too soon, by its
    plan) and refused (by a hard limit, at the moment)."""

    notes: int
    length_ns: int
    passes: int = 0
    complete: bool = False      # the last pass reached its end
    played: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    onset_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # actual - scheduled, per strike


def perform(
    score,
    performers: list[Performer],
    *,
    stretch: float = 1.0,
    max_gap: float | None = None,
    loop: bool = False,
    timing_log: str | os.PathLike | None = None,
    force: bool = False,
    on_start: Callable[[Performance], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Performance:
    """Play ``score`` on ``performers`` at ``stretch`` (see :mod:`..timing`); returns what happened.

    ``timing_log``: a CSV of every strike, written at the end however the performance
    ends (an existing file is replaced only with ``force``). ``on_progress`` is called
    from this thread about four times a second.
    """
    if timing_log is not None:
        check_writable(timing_log, force)
    times = output_times_ns(score.notes["time_ns"], stretch, max_gap)
    result = Performance(len(score), int(times.max()) if len(times) else 0)
    conductor = None
    try:
        parts = [p.prepare(score, times) for p in performers]
        conductor = Conductor(performers, parts, loop=loop,
                              pause_ns=max(1_000_000_000, int(result.length_ns * 0.05)))
        if on_start is not None:
            on_start(result)
        conductor.start()
        while not conductor.finished.wait(PROGRESS_EVERY_S):
            if on_progress is not None:
                on_progress(_progress(conductor, result))
        result.complete = conductor.error is None and not conductor.stopping
    finally:
        if conductor is not None:
            conductor.stop()
            if conductor.ident is not None:
                conductor.finished.wait(1.0)
        _silence(performers)
        if conductor is not None:
            _tally(result, conductor, performers)
            if timing_log is not None:
                _write_log(timing_log, force, score, times, conductor, performers)
    if conductor.error is not None:
        raise conductor.error
    return result


def _silence(performers: list[Performer]) -> None:
    """Every performer silenced and closed, even when one of them fails at it."""
    failure = None
    for how in ("silence", "close"):
        for p in performers:
            try:
                getattr(p, how)()
            except Exception as e:  # noqa: BLE001 - the others must still be silenced
                failure = failure or e
    if failure is not None:
        raise failure


def _progress(c: Conductor, result: Performance) -> Progress:
    reached = c.done
    position = int(c.timeline["due_ns"][reached - 1]) if reached else 0
    strikes = c.timeline["action"] == STRIKE
    played = sum(int(np.count_nonzero(np.frombuffer(a, np.int64)[strikes])) for a in c.passes[:-1])
    played += int(np.count_nonzero(strikes[:reached]))
    refused = sum(len(r) for r in c.refused)
    dropped = sum(len(p.dropped) for p in c.parts) * max(1, len(c.passes)) + refused
    return Progress(position, result.length_ns, len(c.passes), played - refused, dropped)


def _tally(result: Performance, c: Conductor, performers: list[Performer]) -> None:
    result.passes = len(c.passes)
    strikes = c.timeline["action"] == STRIKE
    passes = max(1, len(c.passes))
    for i, (p, part) in enumerate(zip(performers, c.parts)):
        mine = strikes & (c.who == i)
        played = refused = 0
        for actual, refusals in zip(c.passes, c.refused):
            refused_here = np.zeros(len(mine), bool)
            refused_here[refusals] = True
            played += int(np.count_nonzero(mine & (np.frombuffer(actual, np.int64) != 0) & ~refused_here))
            refused += int(np.count_nonzero(mine & refused_here))
        result.played[p.name] = played
        result.refused[p.name] = refused
        result.dropped[p.name] = len(part.dropped) * passes
        result.deferred[p.name] = part.deferred * passes
    result.onset_ns = _onsets(c, strikes)


def _onsets(c: Conductor, strikes: np.ndarray) -> np.ndarray:
    """actual - scheduled of every strike made, in ns."""
    out = []
    for k, actual in enumerate(c.passes):
        reached = np.frombuffer(actual, np.int64)
        hit = strikes & (reached != 0)
        scheduled = c.start_ns + k * c.period_ns + c.timeline["due_ns"][hit]
        out.append(reached[hit] - scheduled)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


LOG_COLUMNS = ("pass", "note", "kind", "performer", "status", "time_ns", "scheduled_ns", "actual_ns")


def _write_log(path, force: bool, score, times: np.ndarray, c: Conductor, performers: list[Performer]) -> None:
    """The timing log: a CSV row per strike each performer planned, and per note it dropped.

    ``time_ns`` is the note's output time (after stretch), ``scheduled_ns`` and
    ``actual_ns`` are on the ``time.perf_counter_ns`` clock: the deadline and the
    moment the performer was called. Status: played, deferred (played later than its
    note), refused (by a hard limit), dropped (by the plan), not-reached (stopped first).
    """
    kinds = np.array(Kind.ALL, dtype=object)[score.notes["kind"]]
    strikes = c.timeline["action"] == STRIKE
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(LOG_COLUMNS)
    rows = np.flatnonzero(strikes)
    for k, actual in enumerate(c.passes or [None]):
        reached = np.zeros(len(strikes), np.int64) if actual is None else np.frombuffer(actual, np.int64)
        refused = set(c.refused[k]) if actual is not None else set()
        base = c.start_ns + k * c.period_ns
        for j in rows.tolist():
            n = int(c.timeline["note"][j])
            due = int(c.timeline["due_ns"][j])
            at = int(reached[j])
            status = ("refused" if j in refused else "not-reached" if not at
                      else "deferred" if due != times[n] else "played")
            out.writerow((k + 1, n, kinds[n], performers[c.who[j]].name, status, int(times[n]), base + due, at or ""))
        for i, part in enumerate(c.parts):
            for n in part.dropped.tolist():
                out.writerow((k + 1, n, kinds[n], performers[i].name, "dropped", int(times[n]), "", ""))
    with atomic_write(path, force) as f:
        f.write(text.getvalue().encode())
