"""What the solenoids did, read from the pins' own record: for tests and benchmarks.

Every helper takes pin changes as (perf_counter_ns, state) in time order, as the
coil driver's rehearsal pins record them (``SolenoidPerformer.pin_log()``, or the
CSV ``hs play --dry-run --pin-log`` writes).
"""

from __future__ import annotations

import csv
from collections import defaultdict

from handshake_score.play.coil import DUTY_WINDOW_NS


def pins(sol) -> dict[int, list[tuple[int, int]]]:
    """Each coil's pin changes, from a closed ``SolenoidPerformer``'s pin log."""
    got = {s.pin: [] for s in sol.specs}
    for pin, t, state in sol.pin_log():
        got[pin].append((t, state))
    return got


def pin_log_csv(path) -> dict[int, list[tuple[int, int]]]:
    """Each pin's changes, from the CSV of ``hs play --pin-log``."""
    got = defaultdict(list)
    for row in csv.DictReader(open(path)):
        got[int(row["pin"])].append((int(row["time_ns"]), int(row["state"])))
    return dict(got)


def pulses(changes) -> list[tuple[int, int]]:
    """(start, width) in ns of every pulse in one pin's changes; fails if the pin was left on."""
    rises = [t for t, s in changes if s]
    falls = [t for t, s in changes if not s]
    assert len(rises) == len(falls), "a pin was left on"
    assert all(r < f for r, f in zip(rises, falls))
    return [(r, f - r) for r, f in zip(rises, falls)]


def max_duty(p: list[tuple[int, int]]) -> float:
    """The largest on-time fraction of any DUTY_WINDOW: the fullest window ends at a pulse's end."""
    best = 0
    for s, w in p:
        end = s + w
        on = sum(min(e + ww, end) - max(e, end - DUTY_WINDOW_NS) for e, ww in p if e + ww > end - DUTY_WINDOW_NS and e < end)
        best = max(best, on)
    return best / DUTY_WINDOW_NS


def limits(changes) -> dict[str, float]:
    """One pin's longest pulse (ns), fullest second (fraction on), closest two strikes (ns; None
    with fewer than two) and last state."""
    p = pulses(changes)
    starts = [s for s, _ in p]
    return {"pulses": len(p), "longest_ns": max((w for _, w in p), default=0), "duty": max_duty(p),
            "closest_ns": min((b - a for a, b in zip(starts, starts[1:])), default=None),
            "last": changes[-1][1] if changes else 0}
