"""A performance: a score played by some performers, from the first note to the last.

>>> from handshake_score.play import perform, ConsolePerformer
>>> perform(score, [ConsolePerformer()], stretch=10)

:func:`perform` plans every part, runs the :class:`~.conductor.Conductor`
thread and waits for it in the calling thread, which is where Python delivers
signals: Ctrl-C or a SIGTERM (which ``hs`` turns into ``SystemExit``) unwinds
through it, and on every way out, normal or not, the conductor is stopped and
every performer silenced before anything else happens, with further signals
held off until that is done.
"""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..files import atomic_write, check_writable
from ..timing import output_times_ns
from ..tracker import Kind
from .conductor import Conductor
from .performer import STRIKE, Performer

PROGRESS_EVERY_S = 0.25
MAX_ONSETS = 1_000_000  # onset errors kept for the report (the first ones)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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

    def counting(self, performers: list[Performer]) -> Performance:
        """Every count of every performer at 0, so a performer that strikes nothing is reported too."""
        for p in performers:
            for what in (self.played, self.deferred, self.dropped, self.refused):
                what[p.name] = 0
        return self


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

    ``timing_log``: a CSV of every strike (:data:`LOG_COLUMNS`), written pass by pass
    and kept however the performance ends (an existing file is replaced only with
    ``force``). ``on_progress`` is called from this thread about four times a second.
    An exception that ends the performance (a performer's, Ctrl-C's) is raised with
    what was played so far as its ``performance`` attribute.
    """
    if timing_log is not None:
        check_writable(timing_log, force)
    times = output_times_ns(score.notes["time_ns"], stretch, max_gap)
    result = Performance(len(score), int(times.max()) if len(times) else 0)
    failure = conductor = None
    with ExitStack() as files:
        log = files.enter_context(atomic_write(timing_log, force)) if timing_log is not None else None
        try:
            parts = [p.prepare(score, times) for p in performers]
            tally = _Tally(result, score, times, performers, parts, log)
            conductor = Conductor(performers, parts, loop=loop, on_pass=tally.add,
                                  pause_ns=max(1_000_000_000, int(result.length_ns * 0.05)))
            tally.conductor = conductor
            if on_start is not None:
                on_start(result)
            conductor.start()
            # each wake takes Python's lock from the conductor: wake only to draw progress
            every = PROGRESS_EVERY_S if on_progress is not None else None
            while not conductor.finished.wait(every):
                on_progress(tally.progress())
        except BaseException as e:  # noqa: BLE001 - raised again below, once all is quiet
            failure = e
        try:
            failure = stop_and_silence(conductor, performers) or failure
        except BaseException as e:  # noqa: BLE001 - a stop signal held during the clean-up, delivered as it ended
            failure = failure or e
        if conductor is not None:
            failure = failure or conductor.error
            result.complete = failure is None and conductor.completed
    if failure is not None:
        failure.performance = result
        raise failure
    return result


def stop_and_silence(conductor: Conductor | None, performers: list[Performer]) -> BaseException | None:
    """The conductor stopped and every performer silenced and closed, with the stop signals
    held until then, so a second Ctrl-C cannot cut this short; then the conductor's last
    pass counted. Returns what interrupted it (a signal that came just before it held
    them), to raise once all is quiet; raises a performer's failure to silence."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    interrupted = failure = None
    try:
        while True:  # every step may be done twice: stop, silence and close are idempotent
            try:
                if conductor is not None:
                    conductor.stop()
                    if conductor.ident is not None:
                        conductor.finished.wait(1.0)  # a strike under way ends; a stuck one is not awaited
                # every one silenced before any is closed
                for call in [p.silence for p in performers] + [p.close for p in performers]:
                    try:
                        call()
                    except Exception as e:  # noqa: BLE001 - the others must still be silenced
                        failure = failure or e
                if conductor is not None and conductor.ident is not None:
                    conductor.finished.wait()  # its last pass, counted and logged
                break
            except (KeyboardInterrupt, SystemExit) as e:
                interrupted = interrupted or e
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    if failure is not None:
        raise failure
    return interrupted


LOG_COLUMNS = ("pass", "note", "kind", "performer", "status", "time_ns", "scheduled_ns", "actual_ns")


class _Tally:
    """Counts each pass the conductor hands over, and writes it to the timing log.

    The log has a row per strike each performer planned, and per note it dropped.
    ``time_ns`` is the note's output time (after stretch), ``scheduled_ns`` and
    ``actual_ns`` are on the ``time.perf_counter_ns`` clock: the deadline and the
    moment the performer was called. Status: played, deferred (played later than
    its note), refused (by a hard limit), dropped (by the plan), not-reached (stopped first).
    """

    def __init__(self, result: Performance, score, times, performers, parts, log):
        self.result, self.times, self.performers, self.parts, self.log = result, times, performers, parts, log
        self.kinds = np.array(Kind.ALL, dtype=object)[score.notes["kind"]]
        self.conductor: Conductor | None = None
        self.onsets: list[np.ndarray] = []
        self.kept_onsets = 0
        self.totals = [0, 0]  # played, dropped: for the progress line
        result.counting(performers)
        if log is not None:
            log.write((",".join(LOG_COLUMNS) + "\n").encode())

    def add(self, k: int, actual, refused: list[int]) -> None:
        c, result = self.conductor, self.result
        reached = np.frombuffer(actual, np.int64)
        strikes = c.timeline["action"] == STRIKE
        refusal = np.zeros(len(reached), bool)
        refusal[refused] = True
        result.passes = k + 1
        for i, (p, part) in enumerate(zip(self.performers, self.parts)):
            mine = strikes & (c.who == i)
            result.played[p.name] += int(np.count_nonzero(mine & (reached != 0) & ~refusal))
            result.refused[p.name] += int(np.count_nonzero(mine & refusal))
            result.dropped[p.name] += len(part.dropped)
            result.deferred[p.name] += part.deferred
        hit = strikes & (reached != 0) & ~refusal
        self.totals[0] += int(np.count_nonzero(hit))
        self.totals[1] += sum(len(part.dropped) for part in self.parts) + len(refused)
        base = c.start_ns + k * c.period_ns
        if self.kept_onsets < MAX_ONSETS:
            onsets = (reached[hit] - (base + c.timeline["due_ns"][hit]))[: MAX_ONSETS - self.kept_onsets]
            self.onsets.append(onsets)
            self.kept_onsets += len(onsets)
            result.onset_ns = np.concatenate(self.onsets)
        if self.log is not None:
            self._write(k, base, reached, refusal, strikes)

    def _write(self, k: int, base: int, reached: np.ndarray, refusal: np.ndarray, strikes: np.ndarray) -> None:
        c, times, kinds = self.conductor, self.times, self.kinds
        rows = np.flatnonzero(strikes)
        note = c.timeline["note"][rows].astype(np.int64)
        due = c.timeline["due_ns"][rows]
        at = reached[rows]
        status = np.where(refusal[rows], "refused", np.where(at == 0, "not-reached",
                          np.where(due != times[note], "deferred", "played")))
        names = [p.name for p in self.performers]
        lines = [f"{k + 1},{n},{kinds[n]},{names[w]},{s},{times[n]},{base + d},{a or ''}\n"
                 for n, w, s, d, a in zip(note.tolist(), c.who[rows].tolist(), status.tolist(), due.tolist(), at.tolist())]
        for name, part in zip(names, self.parts):
            lines.extend(f"{k + 1},{n},{kinds[n]},{name},dropped,{times[n]},,\n" for n in part.dropped.tolist())
        self.log.write("".join(lines).encode())

    def progress(self) -> Progress:
        c = self.conductor
        done, refused = c.done, c.refused
        position = int(c.timeline["due_ns"][done - 1]) if done else 0
        strikes = c.timeline["action"][:done] == STRIKE
        now = int(np.count_nonzero(strikes)) - len(refused)
        dropped = self.totals[1] + len(refused) + sum(len(part.dropped) for part in self.parts)
        return Progress(position, self.result.length_ns, c.passes, self.totals[0] + now, dropped)
