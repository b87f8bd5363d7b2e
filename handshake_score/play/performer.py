"""The performer: what turns a score's notes into strikes, sounds or lines.

A performer first plans its part, once, from the score and each note's output
time: which notes it strikes and when, and when it lets each go (a coil off, a
MIDI note-off). The conductor merges every performer's part into one timeline
and calls :meth:`Performer.strike` and :meth:`Performer.release` at their
moments from its one thread (with :meth:`Performer.cue` just before a strike),
so all must be quick; :meth:`Performer.silence`
may come from any thread at any time and must leave nothing sounding or
energised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RELEASE, STRIKE = 0, 1  # a release sorts before a strike due at the same moment

EVENT = np.dtype([
    ("due_ns", "<i8"),   # output time: ns after the performance's start
    ("note", "<u4"),     # index into the score's notes
    ("action", "u1"),    # RELEASE or STRIKE
])
"""One call the conductor makes of a performer."""


@dataclass
class Part:
    """What one performer will do: its calls in time order, and the notes it will not strike."""

    events: np.ndarray                          # EVENT rows
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # note indices
    deferred: int = 0                           # strikes moved later than their note

    @classmethod
    def on_time(cls, times_ns: np.ndarray, release_after_ns=None) -> Part:
        """Every note struck at its time; with ``release_after_ns`` (one value or one per
        note), each let go that long after, or at the next strike if sooner."""
        n = len(times_ns)
        strikes = np.zeros(n, EVENT)
        strikes["due_ns"], strikes["note"], strikes["action"] = times_ns, np.arange(n), STRIKE
        if release_after_ns is None:
            return cls(strikes)
        releases = strikes.copy()
        releases["action"] = RELEASE
        releases["due_ns"] = times_ns + release_after_ns
        return cls(np.concatenate([strikes, releases]))


class Performer:
    """Base of every performer. Subclasses set :attr:`name` and override what they need;
    this one strikes every note on time and does nothing."""

    name = "performer"

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        """Plan the part for ``score`` whose notes sound at ``times_ns`` (output ns)."""
        return Part.on_time(times_ns)

    def live(self) -> None:
        """The notes will come as they happen (:mod:`.live`), not from a plan: from now on
        :meth:`strike` alone decides whether a note can be struck."""

    def add(self, score, note: int) -> None:
        """Live: note ``note`` was put in ``score`` (after :meth:`prepare` on it), in a slot
        that may have held an earlier note: keep per-note values with :func:`keep`."""

    def hold_ns(self, note: int) -> int | None:
        """Live: how long after striking ``note`` to :meth:`release` it (None: no release)."""
        return None

    def cue(self, note: int, at_ns: int) -> None:
        """Note ``note`` is due at ``at_ns`` (``perf_counter_ns``): said as soon as the calls of
        the moment before were made (so any time ahead, or already past when the conductor
        runs late).
        Do what can be done ahead, so :meth:`strike` has less to do."""

    def strike(self, note: int):
        """Sound note ``note`` now. Return False if a hard limit refused it; or, where the
        performer knows better than the moment of this call when it sounded (a driver
        that strikes at the deadline itself), that moment in ``perf_counter_ns``."""

    def release(self, note: int) -> None:
        """Let note ``note`` go now."""

    def silence(self) -> None:
        """Stop everything at once: safe from any thread, at any time, more than once."""

    def close(self) -> None:
        """Give back what :meth:`prepare` or ``__init__`` took (pins, ports)."""

    def notices(self) -> list[str]:
        """Lines to say once before playing: what this performer cannot promise here."""
        return []

    def report(self) -> list[str]:
        """Lines of its own for the report after playing (after :meth:`close`)."""
        return []


def keep(cache: list, first: int, values: list) -> None:
    """``cache[first:first + len(values)] = values``, growing ``cache`` where they run past its
    end: per-note values of a score, or of a live score's ring, where slots are reused."""
    if first == len(cache):
        cache.extend(values)
    else:
        cache[first:first + len(values)] = values
