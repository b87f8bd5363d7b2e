"""The solenoid performer: a coil per pin, struck through gpiozero.

A coil is one gpiozero :class:`~gpiozero.DigitalOutputDevice` on the BCM pin
the orchestra names, switching a MOSFET (``docs/hardware.md``). Kinds may
share a coil (by default SYN, its retries and ACK all strike the woodblock);
each kind keeps its own pulse width, so a retry can strike softer, but a coil
has one re-strike interval, since that is how long its plunger takes to come
back.

The plan holds each coil's re-strike interval and a duty cap with a margin:
a note that comes too soon is dropped, or with ``too_soon="defer"`` moved to
the next allowed moment if that is within ``defer_limit_ms``. The pins
themselves are held by :mod:`.coildriver`, a real-time process of their own
that makes each strike at its deadline, ends each pulse on time however busy
the machine, and holds the hard limits again on the pins' actual times.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import HandshakeScoreError
from ..orchestra import Orchestra
from ..tracker import Kind
from .coil import MAX_ON_NS, PLAN_DUTY_CAP, CoilRules
from .coildriver import CoilDriver
from .performer import EVENT, RELEASE, STRIKE, LivePerformer, Option, Part, keep

TOO_SOON = ("drop", "defer")
LOOKAHEAD_NS = 50_000_000  # strikes this close after the next one are handed to the driver with it


@dataclass(frozen=True)
class CoilSpec:
    """One coil as the orchestra describes it."""

    pin: int
    restrike_ns: int
    kinds: tuple[str, ...]


def coils_of(orchestra: Orchestra) -> list[CoilSpec]:
    """The coils ``orchestra`` needs, one per pin, in pin order. Kinds on one pin must agree
    on its re-strike interval (a coil has one); raises :class:`HandshakeScoreError`."""
    by_pin: dict[int, list[str]] = {}
    for kind in Kind.ALL:
        by_pin.setdefault(orchestra[kind].pin, []).append(kind)
    coils = []
    for pin, kinds in sorted(by_pin.items()):
        restrikes = {orchestra[k].restrike_ms for k in kinds}
        if len(restrikes) > 1:
            said = ", ".join(f"{k} {orchestra[k].restrike_ms:g} ms" for k in kinds)
            raise HandshakeScoreError(f"pin {pin} is given to {', '.join(kinds)} with different re-strike "
                                      f"intervals ({said}): kinds on one coil share its restrike_ms")
        restrike = restrikes.pop()
        longest = max(kinds, key=lambda k: orchestra[k].pulse_ms)
        if restrike <= orchestra[longest].pulse_ms:
            raise HandshakeScoreError(f"pin {pin}: restrike_ms {restrike:g} is not longer than the "
                                      f"{orchestra[longest].pulse_ms:g} ms pulse of {longest}: it would strike while on")
        coils.append(CoilSpec(pin, round(restrike * 1e6), tuple(kinds)))
    return coils


def kinds_on_coils(orchestra: Orchestra, specs: list[CoilSpec]) -> list[tuple[int, int]]:
    """Per kind, in ``Kind.ALL`` order: the index of its coil in ``specs`` and its pulse in ns
    (never over the hard limit)."""
    coil_of = {s.pin: i for i, s in enumerate(specs)}
    return [(coil_of[orchestra[k].pin], min(round(orchestra[k].pulse_ms * 1e6), MAX_ON_NS)) for k in Kind.ALL]


class SolenoidPerformer(LivePerformer):
    """Strikes the orchestra's coils through a :class:`~.coildriver.CoilDriver`, the process
    that holds the pins and times each pulse. ``dry_run`` uses gpiozero's MockFactory
    (pins that record their changes; :meth:`pin_log`, and written to ``pin_log`` as CSV
    when closed), else gpiozero picks the pin library (lgpio on a Raspberry Pi 5). Raises
    :class:`HandshakeScoreError` when a pin cannot be had; :meth:`notices` says when the
    limits cannot be guaranteed."""

    name = "solenoids"
    options = (
        Option("dry-run", bool, "Rehearse on gpiozero's MockFactory (no GPIO needed).", default=False),
        Option("pin-log", Path, "With --dry-run: write every pin change (pin,time_ns,state) to this CSV.",
               metavar="FILE", writes=True),
        Option("too-soon", str, "A strike that comes sooner than its coil may strike again: drop it, or defer it "
               "to the next allowed moment (within --defer-limit).", default="drop", metavar="drop|defer"),
        Option("defer-limit", float, "With --too-soon defer: the longest a strike may be moved; later than that "
               "it is dropped.", default=500.0, metavar="MS"),
    )
    needs = ("coils on BCM pins through MOSFETs (docs/hardware.md) and gpiozero's pin library (lgpio on a Pi); "
             "--dry-run rehearses anywhere")
    cost = 100.0  # its call waits for the driver's word that the coil struck: the last at a moment
    at_rest = "every coil off"

    @classmethod
    def build(cls, band, options, *, live):
        if options["pin_log"] is not None and not options["dry_run"]:
            raise HandshakeScoreError("--pin-log records the rehearsal pins: give --dry-run too")
        if live:  # nothing is planned live: a strike too soon is dropped at the coil
            return cls(band, dry_run=options["dry_run"], pin_log=options["pin_log"])
        return cls(band, too_soon=options["too_soon"], defer_limit_ms=options["defer_limit"],
                   dry_run=options["dry_run"], pin_log=options["pin_log"])

    @classmethod
    def check(cls):
        if os.environ.get("GPIOZERO_PIN_FACTORY") or any(Path("/dev").glob("gpiochip*")):
            return None
        return "no GPIO pins here (--dry-run rehearses on gpiozero's MockFactory)"

    def __init__(self, orchestra: Orchestra, *, too_soon: str = "drop", defer_limit_ms: float = 500.0,
                 dry_run: bool = False, pin_log: str | os.PathLike | None = None):
        if too_soon not in TOO_SOON:
            raise HandshakeScoreError(f"too-soon must be one of {', '.join(TOO_SOON)}, not {too_soon!r}")
        if not defer_limit_ms >= 0:
            raise HandshakeScoreError(f"defer-limit must be 0 ms or more, not {defer_limit_ms!r}")
        self.orchestra = orchestra
        self.too_soon = too_soon
        self.defer_limit_ns = round(defer_limit_ms * 1e6)
        self.specs = coils_of(orchestra)
        self._by_kind = kinds_on_coils(orchestra, self.specs)
        self._kinds: list[int] = []
        self._cued: dict[int, int] = {}  # note -> its strike's number at the driver
        self._sounded: int | None = None  # the driver's moment of the last strike
        self.pin_log_path = pin_log
        self._played = False  # prepared: the pin log is written when closed
        self.driver = CoilDriver([s.pin for s in self.specs], [s.restrike_ns for s in self.specs], dry_run=dry_run,
                                 defer_limit_ns=self.defer_limit_ns if too_soon == "defer" else 0)

    def notices(self) -> list[str]:
        why = self.driver.realtime
        if why is None:
            return []
        return [f"solenoids: no real-time priority for the coil driver ({why}): a busy machine can hold a pulse "
                "past 100 ms or a strike too soon; run as root or grant it (docs/hardware.md)"]

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        self._played = True
        self._kinds = score.notes["kind"].tolist()
        part = plan(self._kinds, times_ns, self.orchestra, self.specs, self.too_soon, self.defer_limit_ns)
        strikes = part.events[part.events["action"] == STRIKE]  # in time order, as planned
        self._ahead_notes, self._ahead_due = strikes["note"].tolist(), strikes["due_ns"].tolist()
        self._index = {n: i for i, n in enumerate(self._ahead_notes)}
        self._base, self._next = None, 0
        return part

    def add(self, score, note: int) -> None:
        keep(self._kinds, note, [int(score.notes["kind"][note])])

    def hold_ns(self, note: int) -> int:
        return self._by_kind[self._kinds[note]][1]

    def cue(self, note: int, at_ns: int) -> None:
        # hand the driver this strike, the next one and any others within LOOKAHEAD_NS after that
        # (a chord goes whole): it makes them at their deadlines even if hs is held up meanwhile
        i = self._index[note]
        due = self._ahead_due
        base = at_ns - due[i]
        if base != self._base:  # the first cue of a pass
            self._base, self._next = base, i
        until = due[min(i + 1, len(due) - 1)] + LOOKAHEAD_NS
        while self._next < len(due) and (self._next <= i + 1 or due[self._next] <= until):
            n = self._ahead_notes[self._next]
            self._cued[n] = self.driver.strike_at(*self._by_kind[self._kinds[n]], base + due[self._next])
            self._next += 1

    def strike(self, note: int) -> bool:
        number = self._cued.pop(note, None)
        if number is None:  # not cued (a late deadline, or live): at once
            number = self.driver.strike_at(*self._by_kind[self._kinds[note]])
        at = self.driver.answer(number)
        if at is False:
            return False
        self._sounded = at
        return True

    def sounded_ns(self) -> int | None:
        """The driver's moment: just before it switched the pin, at the deadline by itself."""
        return self._sounded

    def release(self, note: int) -> None:
        """Nothing: the driver ends each pulse itself, on time whatever hs is doing."""

    def silence(self) -> None:
        self.driver.silence()

    def close(self) -> None:
        if self.driver.closed:
            return
        self.driver.close()
        if self.pin_log_path is not None and self._played:
            from ..files import atomic_write

            rows = self.pin_log()  # the name was checked before playing (hs play, --force)
            with atomic_write(self.pin_log_path, force=True) as f:
                f.write(("pin,time_ns,state\n" + "".join(f"{p},{t},{v}\n" for p, t, v in rows)).encode())

    def report(self) -> list[str]:
        late = self.driver.stats.get("late", 0)
        if not late:
            return []
        return [f"  solenoids  {late:,} pulse(s) ended late, the longest {self.driver.stats['longest_ns'] / 1e6:.1f} ms: "
                "the coil driver was held up"]

    def pin_log(self) -> list[tuple[int, int, int]]:
        """With ``dry_run``, after :meth:`close`: every pin change as (pin, perf_counter_ns, state), in time order."""
        return sorted(self.driver.log, key=lambda row: (row[1], row[0]))


def plan(kinds: list[int], times_ns: np.ndarray, orchestra: Orchestra, specs: list[CoilSpec],
         too_soon: str = "drop", defer_limit_ns: int = 500_000_000) -> Part:
    """Each note's strike and release on its coil, keeping every coil's re-strike interval
    and the planning duty cap; a note too soon is dropped or (``defer``) moved later."""
    rules = [CoilRules(s.restrike_ns, PLAN_DUTY_CAP) for s in specs]
    by_kind = [(rules[c], pulse) for c, pulse in kinds_on_coils(orchestra, specs)]
    starts, notes, dropped = [], [], []
    ends = []
    deferred = 0
    for i, (kind, t) in enumerate(zip(kinds, times_ns.tolist())):
        coil, pulse = by_kind[kind]
        at = coil.earliest(t, pulse)
        if at != t:
            if too_soon == "drop" or at - t > defer_limit_ns:
                dropped.append(i)
                continue
            deferred += 1
        coil.record(at, at + pulse)
        starts.append(at)
        ends.append(at + pulse)
        notes.append(i)
    events = np.zeros(2 * len(notes), EVENT)
    events["due_ns"] = starts + ends
    events["note"] = notes + notes
    events["action"][: len(notes)], events["action"][len(notes):] = STRIKE, RELEASE
    return Part(events, np.array(dropped, np.uint32), deferred)


AUTO_STRETCH_CAP = 1000.0


def auto_stretch(score, orchestra: Orchestra, cap: float = AUTO_STRETCH_CAP) -> tuple[float, CoilSpec | None]:
    """The smallest stretch, at least 1, at which no coil is asked to strike closer than its
    re-strike interval, rounded up to two significant figures and at most ``cap``; and the
    coil that needs it (None when 1 will do)."""
    t = score.notes["time_ns"]
    need, worst = 1.0, None
    for spec in coils_of(orchestra):
        on_coil = np.isin(score.notes["kind"], [Kind.ALL.index(k) for k in spec.kinds])
        gaps = np.diff(t[on_coil])
        if not len(gaps):
            continue
        smallest = int(gaps.min())
        factor = cap if smallest <= 0 else spec.restrike_ns / smallest
        if factor > need:
            need, worst = factor, spec
    if need > 1.0:
        digits = 10 ** (np.floor(np.log10(need)) - 1)
        need = round(float(np.ceil(round(need / digits, 9)) * digits), 10)
    return min(need, cap), worst
