"""What a solenoid coil may be asked to do, whoever asks.

A coil driven too long or too often overheats, and one left on after a crash
can burn out. :class:`CoilRules` says when a coil may next be struck: never
within its re-strike interval of the last strike, and never so that its
on-time in any window of :data:`DUTY_WINDOW_NS` exceeds :data:`DUTY_CAP`. The
planner uses it on scheduled times (to drop or defer notes that come too
soon), the runtime guard on measured times (the duty cap only, as a hard
limit). :data:`MAX_ON_NS` is the other hard limit, held by the scheduler's
release and, should that stall, by :class:`Watchdog`.
"""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_ON_NS = 100_000_000         # no pulse longer than 100 ms, whatever the orchestra says
DUTY_CAP = 0.25                 # at most 25 % on ...
DUTY_WINDOW_NS = 1_000_000_000  # ... over any 1 s
PLAN_DUTY_CAP = 0.24            # the planner keeps a margin, so timing jitter never meets the hard cap
WATCHDOG_POLL_S = 0.02     # how often the watchdog looks for a coil that came on
WATCHDOG_SLACK_S = 0.0005  # it wakes this long after a coil's limit


class CoilRules:
    """The strike history of one coil and the earliest moment it may strike again.

    Times are ns on any one clock. The on-time that matters is within a window
    ending when the new pulse ends: on-time only grows while a pulse is on, so
    the fullest window always ends at the end of some pulse, and checking each
    pulse's own window holds the cap for every window.
    """

    def __init__(self, restrike_ns: int = 0, duty_cap: float = DUTY_CAP):
        self.restrike_ns = int(restrike_ns)
        self.cap_ns = int(duty_cap * DUTY_WINDOW_NS)
        self.last_start: int | None = None
        self.pulses: deque[tuple[int, int]] = deque()  # (start, end) that may still fall in a window

    def earliest(self, t: int, pulse_ns: int) -> int:
        """The first moment at or after ``t`` at which a pulse of ``pulse_ns`` may start."""
        if self.last_start is not None:
            t = max(t, self.last_start + self.restrike_ns, self.pulses[-1][1] if self.pulses else t)
        while True:
            window_start = t + pulse_ns - DUTY_WINDOW_NS
            used = sum(min(e, t + pulse_ns) - max(s, window_start) for s, e in self.pulses if e > window_start)
            if used + pulse_ns <= self.cap_ns:
                return t
            # wait until the oldest pulse still in the window has left it
            oldest_end = next(e for s, e in self.pulses if e > window_start)
            t = oldest_end + DUTY_WINDOW_NS - pulse_ns

    def allows(self, t: int, pulse_ns: int) -> bool:
        return self.earliest(t, pulse_ns) == t

    def record(self, start: int, end: int) -> None:
        """A pulse from ``start`` to ``end``."""
        self.last_start = start
        self.pulses.append((start, end))
        while self.pulses and self.pulses[0][1] <= start - DUTY_WINDOW_NS:
            self.pulses.popleft()

    def ended(self, end: int) -> None:
        """The last pulse ended at ``end`` (earlier, say, than it was recorded to)."""
        if self.pulses:
            start, planned = self.pulses[-1]
            self.pulses[-1] = (start, min(planned, end))


class Watchdog(threading.Thread):
    """Switches off any coil on for longer than :data:`MAX_ON_NS`, even when the
    scheduler thread stalls. ``coils`` have ``on_since`` (ns on the
    ``perf_counter_ns`` clock, 0 when off) and ``force_off()``.

    It looks every :data:`WATCHDOG_POLL_S`, and when a coil is on it sleeps until
    that coil would pass its limit instead. It is not woken by each strike: waking
    a thread costs the striking thread tens of microseconds on this kind of machine,
    and every wake takes Python's lock from the conductor, which may be about to strike.
    """

    def __init__(self, coils, limit_ns: int = MAX_ON_NS - 5_000_000):
        super().__init__(name="hs-coil-watchdog", daemon=True)
        self.coils = list(coils)
        self.limit_ns = limit_ns
        self.tripped = 0
        self._halt = False
        self._wake = threading.Event()

    def run(self) -> None:
        clock = time.perf_counter_ns
        while not self._halt:
            now = clock()
            wait = WATCHDOG_POLL_S
            for coil in self.coils:
                since = coil.on_since
                if since:
                    if now - since >= self.limit_ns:
                        coil.force_off()
                        self.tripped += 1
                    else:
                        wait = min(wait, (since + self.limit_ns - now) / 1e9 + WATCHDOG_SLACK_S)
            self._wake.wait(wait)

    def stop(self) -> None:
        self._halt = True
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
