"""The performer: what turns a score's notes into strikes, sounds, lines or messages.

Two protocols, each an abstract base:

- :class:`Performer`, the **planned** one. A performer first plans its part, once, from
  the score and each note's output time (:meth:`~Performer.prepare`): which notes it
  strikes and when, and when it lets each go (a coil off, a MIDI note-off). The
  conductor merges every part into one timeline and calls :meth:`~Performer.strike`
  and :meth:`~Performer.release` at their moments from its one thread (with
  :meth:`~Performer.cue` ahead of a strike), so all must be quick.
- :class:`LivePerformer`, the **live** one (``hs play --live``): no plan; each note is
  added to a growing score (:meth:`~LivePerformer.add`) and struck at once, and let go
  :meth:`~LivePerformer.hold_ns` later.

Either way :meth:`~Performer.silence` may come from any thread at any time and must
leave nothing sounding or energised, and :meth:`~Performer.close` gives back what the
performer took.

A performer also says how ``hs play`` makes it: its :attr:`~Performer.name` (what
``--to`` calls it), its :attr:`~Performer.options` (each an :class:`Option`, a flag
of ``hs play``), what it :attr:`~Performer.needs`, and :meth:`~Performer.build`,
which makes it from those options. :mod:`.registry` finds performers by name.
"""

from __future__ import annotations

import pathlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

RELEASE, STRIKE = 0, 1  # a release sorts before a strike due at the same moment

EVENT = np.dtype([
    ("due_ns", "<i8"),   # output time: ns after the performance's start
    ("note", "<u4"),     # index into the score's notes
    ("action", "u1"),    # RELEASE or STRIKE
])
"""One call the conductor makes of a performer."""

OPTION_TYPES = (str, int, float, bool, pathlib.Path)


@dataclass(frozen=True)
class Option:
    """One option of a performer, given to ``hs play`` as ``--NAME``.

    >>> Option("port", str, "The MIDI output port, by name or the start of it.", metavar="NAME")

    ``type`` is one of ``str, int, float, bool, pathlib.Path`` (a ``bool`` is a flag:
    ``--dry-run``); ``multiple``: the flag may be given several times and its value
    is a list. ``writes``: the value names a file the performer writes, which ``hs
    play`` checks before playing (an existing one is replaced only with ``--force``).
    :meth:`Performer.build` gets the value under :attr:`key`.
    """

    name: str                  # the flag without its dashes: "osc-latency" is --osc-latency
    type: type
    help: str
    default: object = None
    metavar: str | None = None
    multiple: bool = False
    writes: bool = False

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def key(self) -> str:
        """The name in the options :meth:`Performer.build` is given: ``osc_latency``."""
        return self.name.replace("-", "_")

    @property
    def empty(self):
        """The value when the flag is not given."""
        return [] if self.multiple and self.default is None else self.default


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


class Performer(ABC):
    """A performer of planned scores. Subclasses set :attr:`name` and write
    :meth:`strike` and :meth:`silence`; the rest has defaults that strike every note
    on time and hold nothing.

    Importing a performer's module must stay cheap (``hs play --help`` reads every
    performer's options): import its library (gpiozero, rtmidi, sounddevice...) in
    :meth:`build` or its methods, not at the top of the module.
    """

    name: ClassVar[str] = "performer"
    """What ``--to`` calls it, and how reports and the timing log name it."""
    options: ClassVar[tuple[Option, ...]] = ()
    """Its flags of ``hs play``, grouped under its name in ``hs play --help``."""
    needs: ClassVar[str] = ""
    """One line: what it needs to play here (``hs play --performers`` shows it)."""
    cost: ClassVar[float] = 10.0
    """About how many microseconds a strike holds the conductor's thread, counting what
    other threads may do meanwhile (a C call that lets go of Python's lock lets them run).
    At a moment performers share, the cheapest is called first, so a slow one delays no
    quick one. A performer whose sound does not follow its call (a driver that strikes by
    itself, a voice placed by its deadline) may declare more, to be called last."""
    at_rest: ClassVar[str] = ""
    """What a stopped ``hs play`` may promise of it ("every coil off"), or nothing."""

    @classmethod
    def build(cls, band, options: dict[str, object], *, live: bool) -> Performer:
        """The performer, made for orchestra ``band`` from ``options`` (every one of
        :attr:`options`, by :attr:`Option.key`, defaults filled in); ``live``: for
        :func:`~.live.perform_live`. Raises :class:`~handshake_score.errors.HandshakeScoreError`
        (one line, naming the flag) for a bad value or what it cannot have here.
        This one takes no options: ``cls()``."""
        return cls()

    @classmethod
    def query(cls, options: dict[str, object]) -> str | None:
        """Text to print instead of playing when an option asks a question rather than
        sets how to play (midi's ``--list-ports``); None to play."""
        return None

    @classmethod
    def check(cls) -> str | None:
        """Why it cannot play on this machine (no sound card, no GPIO...), in a few words,
        or None. Cheap, and never raises: ``hs play --performers`` says it."""
        return None

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        """Plan the part for ``score`` whose notes sound at ``times_ns`` (output ns)."""
        return Part.on_time(times_ns)

    def cue(self, note: int, at_ns: int) -> None:
        """Note ``note`` is due at ``at_ns`` (``perf_counter_ns``): said as soon as the calls of
        the moment before were made (so any time ahead, or already past when the conductor
        runs late). Do what can be done ahead, so :meth:`strike` has less to do."""

    @abstractmethod
    def strike(self, note: int) -> bool:
        """Sound note ``note`` now. True if it was struck (or sent); False if a hard limit
        refused it or it could not be sent (counted refused, not played)."""

    def sounded_ns(self) -> int | None:
        """The moment (``perf_counter_ns``) the last strike really sounded, where the
        performer knows it better than the moment it was called (a driver that strikes at
        the deadline by itself); None: the call was the moment. The timing log keeps it."""
        return None

    def release(self, note: int) -> None:
        """Let note ``note`` go now."""

    @abstractmethod
    def silence(self) -> None:
        """Stop everything at once: safe from any thread, at any time, more than once."""

    def close(self) -> None:
        """Give back what :meth:`build` or :meth:`prepare` took (pins, ports, sockets).
        Called once the performance is over, however it ended; more than once is harmless."""

    def notices(self) -> list[str]:
        """Lines to say once before playing: what this performer cannot promise here."""
        return []

    def report(self) -> list[str]:
        """Lines of its own for the report after playing (after :meth:`close`): notes it
        could not send, watchdog trips, the port it played on..."""
        return []


class LivePerformer(Performer):
    """A performer that can also play the network as it happens (``hs play --live``).

    :meth:`prepare` is called once on an empty, growing score; then :meth:`live`; then,
    per note, :meth:`add` and at once :meth:`strike`, and :meth:`release` when
    :meth:`hold_ns` says. Nothing is planned: :meth:`strike` alone decides whether a
    note can be struck."""

    def live(self) -> None:
        """The notes will come as they happen, not from a plan."""

    @abstractmethod
    def add(self, score, note: int) -> None:
        """Note ``note`` was put in ``score`` (after :meth:`prepare` on it), in a slot
        that may have held an earlier note: keep per-note values with :func:`keep`."""

    def hold_ns(self, note: int) -> int | None:
        """How long after striking ``note`` to :meth:`release` it (None: no release)."""
        return None


def keep(cache: list, first: int, values: list) -> None:
    """``cache[first:first + len(values)] = values``, growing ``cache`` where they run past its
    end: per-note values of a score, or of a live score's ring, where slots are reused."""
    if first == len(cache):
        cache.extend(values)
    else:
        cache[first:first + len(values)] = values
