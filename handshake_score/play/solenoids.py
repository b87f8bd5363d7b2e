"""The solenoid performer: a coil per pin, struck through gpiozero.

A coil is one gpiozero :class:`~gpiozero.DigitalOutputDevice` on the BCM pin
the orchestra names, switching a MOSFET (``docs/hardware.md``). Kinds may
share a coil (by default SYN, its retries and ACK all strike the woodblock);
each kind keeps its own pulse width, so a retry can strike softer, but a coil
has one re-strike interval, since that is how long its plunger takes to come
back.

The plan holds each coil's re-strike interval and a duty cap with a margin:
a note that comes too soon is dropped, or with ``too_soon="defer"`` moved to
the next allowed moment if that is within ``defer_limit_ms``. At the moment of
each strike :class:`Coil` holds the hard limits again on measured times, and
a :class:`~.coil.Watchdog` switches off a coil left on too long. gpiozero's
``blink()`` is not used: it starts a thread per call.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import HandshakeScoreError
from ..orchestra import Orchestra
from ..tracker import Kind
from .coil import MAX_ON_NS, PLAN_DUTY_CAP, CoilRules, Watchdog
from .performer import EVENT, RELEASE, STRIKE, Part, Performer, keep

TOO_SOON = ("drop", "defer")


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


class Coil:
    """A coil at the moment of striking: refuses a strike while on or past the duty cap
    (on measured time), and goes off for good once :meth:`shut`. Thread-safe: the
    conductor strikes and releases, the watchdog and the main thread may force it off."""

    def __init__(self, device):
        self.device = device
        self.pin = device.pin     # kept: a closed device forgets its pin, and a rehearsal's record is on it
        self.rules = CoilRules()  # the hard duty cap; re-strike intervals are the plan's
        self.on_since = 0         # perf_counter_ns when switched on; 0 while off
        self.closed = False
        self._armed: int | None = None  # the pulse ready() cleared for the next strike
        self._lock = threading.Lock()

    def ready(self, at: int, pulse_ns: int) -> None:
        """A strike of ``pulse_ns`` is due at ``at``: check the duty cap now, and write the
        pin off (it is off) so the path to it is warm when the strike comes."""
        with self._lock:
            if self.closed or self.on_since:
                return
            self._armed = pulse_ns if self.rules.allows(at, pulse_ns) else None
            self.device.off()

    def strike(self, pulse_ns: int) -> bool:
        with self._lock:
            now = time.perf_counter_ns()
            armed, self._armed = self._armed, None
            if self.closed or self.on_since:
                return False
            # checked at the deadline by ready(): at any later moment the cap allows it too
            if armed != pulse_ns and not self.rules.allows(now, pulse_ns):
                return False
            self.device.on()
            self.on_since = now
            self.rules.record(now, now + pulse_ns)
            return True

    def release(self) -> None:
        with self._lock:
            if self.on_since:
                self.device.off()
                self.on_since = 0
                self.rules.ended(time.perf_counter_ns())

    force_off = release

    def shut(self) -> None:
        with self._lock:
            if not self.closed:  # once: after close() the device takes no more calls
                self.closed = True
                self.device.off()
                self.on_since = 0


class SolenoidPerformer(Performer):
    """Strikes the orchestra's coils. ``dry_run`` uses gpiozero's MockFactory (pins that
    record their changes; :meth:`pin_log`), else gpiozero picks the pin library
    (lgpio on a Raspberry Pi 5). Raises :class:`HandshakeScoreError` when a pin cannot
    be had."""

    name = "solenoids"

    def __init__(self, orchestra: Orchestra, *, too_soon: str = "drop", defer_limit_ms: float = 500.0,
                 dry_run: bool = False, pin_factory=None):
        if too_soon not in TOO_SOON:
            raise HandshakeScoreError(f"too-soon must be one of {', '.join(TOO_SOON)}, not {too_soon!r}")
        if not defer_limit_ms >= 0:
            raise HandshakeScoreError(f"defer-limit must be 0 ms or more, not {defer_limit_ms!r}")
        self.orchestra = orchestra
        self.too_soon = too_soon
        self.defer_limit_ns = round(defer_limit_ms * 1e6)
        self.specs = coils_of(orchestra)
        if dry_run and pin_factory is None:
            from gpiozero.pins.mock import MockFactory

            pin_factory = MockFactory(pin_class=RehearsalPin)
        self.coils = _open_coils([s.pin for s in self.specs], pin_factory)
        self._by_kind = [(self.coils[c], pulse) for c, pulse in kinds_on_coils(orchestra, self.specs)]
        self.watchdog = Watchdog(self.coils)
        self.watchdog.start()

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        self._kinds = score.notes["kind"].tolist()
        return plan(self._kinds, times_ns, self.orchestra, self.specs, self.too_soon, self.defer_limit_ns)

    def live(self) -> None:
        # no plan: each coil holds its re-strike interval itself, with the planner's duty margin
        for spec, coil in zip(self.specs, self.coils):
            coil.rules = CoilRules(spec.restrike_ns, PLAN_DUTY_CAP)

    def add(self, score, note: int) -> None:
        keep(self._kinds, note, [int(score.notes["kind"][note])])

    def hold_ns(self, note: int) -> int:
        return self._by_kind[self._kinds[note]][1]

    def cue(self, note: int, at_ns: int) -> None:
        coil, pulse_ns = self._by_kind[self._kinds[note]]
        coil.ready(at_ns, pulse_ns)

    def strike(self, note: int) -> bool:
        coil, pulse_ns = self._by_kind[self._kinds[note]]
        return coil.strike(pulse_ns)

    def release(self, note: int) -> None:
        self._by_kind[self._kinds[note]][0].release()

    def silence(self) -> None:
        for coil in self.coils:
            coil.shut()

    def close(self) -> None:
        self.silence()
        self.watchdog.stop()
        for coil in self.coils:
            coil.device.close()

    def pin_log(self) -> list[tuple[int, int, int]]:
        """With ``dry_run``: every pin change as (pin, perf_counter_ns, state), in time order."""
        return sorted((s.pin, t, v) for s, c in zip(self.specs, self.coils) for t, v in getattr(c.pin, "changes", ()))


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


def _open_coils(pins: list[int], pin_factory) -> list[Coil]:
    from gpiozero import DigitalOutputDevice
    from gpiozero.exc import BadPinFactory, GPIOZeroError

    coils: list[Coil] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero warns as it tries each pin library in turn
            for pin in pins:
                coils.append(Coil(DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory)))
    except BadPinFactory:
        _close(coils)
        raise HandshakeScoreError("no GPIO pins here: gpiozero found no pin library (lgpio on a Raspberry Pi); "
                                  "--dry-run rehearses on gpiozero's MockFactory") from None
    except ImportError as e:  # GPIOZERO_PIN_FACTORY names a pin library that is not installed
        _close(coils)
        raise HandshakeScoreError(f"gpiozero cannot load its pin library: {e}") from None
    except (GPIOZeroError, OSError, RuntimeError) as e:
        _close(coils)
        raise HandshakeScoreError(f"pin {pins[len(coils)]}: {e}") from None
    return coils


def _close(coils: list[Coil]) -> None:
    for c in coils:
        c.shut()
        c.device.close()


try:
    from gpiozero.pins.mock import MockPin
except ImportError:  # pragma: no cover - gpiozero is a dependency
    MockPin = object


class RehearsalPin(MockPin):
    """gpiozero's MockPin, also keeping each change as (perf_counter_ns, state), on the
    conductor's clock, for ``hs play --dry-run --pin-log``."""

    def __init__(self, factory, info):
        self.changes: list[tuple[int, int]] = []
        super().__init__(factory, info)

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self.changes.append((time.perf_counter_ns(), int(value)))
        return changed


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
