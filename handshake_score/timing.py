"""Output time: when each note of a score sounds, for every performer alike.

A score's notes are in integer nanoseconds since its start. Played, exported
or rendered, a note sounds at its score time times ``stretch`` (10: ten times
slower), and with ``max_gap`` every silence longer than that many seconds
(after stretching) is shortened to it, so a sparse hour does not take ten.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import HandshakeScoreError


def _above_zero(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (number > 0 and math.isfinite(number)):
        raise HandshakeScoreError(f"{what}, not {value!r}")
    return number


def checked_stretch(stretch) -> float:
    """``stretch`` as a float, or a :class:`HandshakeScoreError` unless it is a finite number
    above 0. A command can call this before its long work."""
    return _above_zero(stretch, "stretch must be a number above 0 (10 plays ten times slower)")


def checked_max_gap(max_gap) -> float | None:
    """``max_gap`` (seconds) as a float, None for none, or a :class:`HandshakeScoreError`
    unless it is a finite number above 0."""
    return None if max_gap is None else _above_zero(max_gap, "max-gap must be a number of seconds above 0")


LONGEST_NS = float(2**62)  # output times are int64 ns: a stretched score must end well before 2**63


def output_times_ns(score_times_ns, stretch: float, max_gap: float | None = None) -> np.ndarray:
    """When each note sounds (int64 ns since the output's start), from its score time.

    The score time times ``stretch``; then, with ``max_gap`` (seconds of output time),
    every silence longer than it (from time 0 to the first note, and between two
    consecutive notes) is shortened to ``max_gap``. The notes need not be in time
    order; each keeps its place in the array. Exact integer arithmetic after one
    rounding per note, so nothing drifts over a long score.
    """
    stretch = checked_stretch(stretch)
    max_gap = checked_max_gap(max_gap)
    t = np.asarray(score_times_ns, dtype=np.int64)
    if t.ndim != 1:
        raise HandshakeScoreError("score times must be a one-dimensional array")
    if len(t) and t.min() < 0:
        raise HandshakeScoreError("the score has notes before its start (time < 0): they cannot be placed")
    if not len(t):
        return t.copy()
    if float(t.max()) * stretch >= LONGEST_NS:  # years of captures, stretched past int64's ns
        if max_gap is None:
            raise HandshakeScoreError(
                f"stretched {stretch:g} times this score lasts {duration_text(float(t.max()) * stretch)}, "
                "longer than can be timed; --max-gap S shortens every silence to S seconds")
        # each silence stretched on its own (exact in score time, rounded once each), then shortened
        order = np.argsort(t, kind="stable")
        gaps = np.minimum(np.rint(np.diff(t[order], prepend=0) * stretch), round(max_gap * 1e9)).astype(np.int64)
        result = np.empty_like(t)
        result[order] = np.cumsum(gaps)
        return result
    out = np.rint(t * stretch).astype(np.int64)
    if max_gap is None:
        return out
    order = np.argsort(out, kind="stable")
    gaps = np.diff(out[order], prepend=0)
    np.minimum(gaps, round(max_gap * 1e9), out=gaps)
    result = np.empty_like(out)
    result[order] = np.cumsum(gaps)
    return result


LONG_SILENCE_S = 60.0  # a silence longer than this, when nothing says so, looks like a performance that hangs


def silences_ns(output_times_ns) -> tuple[np.ndarray, np.ndarray]:
    """The silence before each note in output time (from time 0 to the first note, then
    between consecutive notes), in the order the notes sound: (silences, note indices)."""
    t = np.asarray(output_times_ns, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    return np.diff(t[order], prepend=0), order


def duration_text(ns: int) -> str:
    """A length of time for a person, to its two largest units: ``42.0 s``, ``12 min 5 s``,
    ``3 h 20 min``, ``91 days 6 h``."""
    ns = max(0, int(ns))
    if ns < 59_950_000_000:
        return f"{ns / 1e9:.1f} s"
    if (s := round(ns / 1e9)) < 3600:
        return f"{s // 60} min {s % 60} s"
    if (m := round(ns / 60e9)) < 1440:
        return f"{m // 60} h {m % 60} min"
    h = round(ns / 3600e9)
    return f"{h // 24:,} day{'s' if h // 24 != 1 else ''} {h % 24} h"
