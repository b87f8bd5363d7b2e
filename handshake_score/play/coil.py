"""What a solenoid coil may be asked to do, whoever asks.

A coil driven too long or too often overheats, and one left on after a crash
can burn out. :class:`CoilRules` says when a coil may next be struck: never
within its re-strike interval of the last strike, and never so that its
on-time in any window of :data:`DUTY_WINDOW_NS` exceeds :data:`DUTY_CAP`. The
planner uses it on scheduled times (to drop or defer notes that come too
soon), the coil driver (:mod:`.coildriver`) on the pins' measured times, as
hard limits. :data:`MAX_ON_NS` is the other hard limit, held by the driver,
which times every pulse itself.
"""

from __future__ import annotations

from collections import deque

MAX_ON_NS = 100_000_000         # no pulse longer than 100 ms, whatever the orchestra says
DUTY_CAP = 0.25                 # at most 25 % on ...
DUTY_WINDOW_NS = 1_000_000_000  # ... over any 1 s
PLAN_DUTY_CAP = 0.24            # the planner keeps a margin, so timing jitter never meets the hard cap


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
