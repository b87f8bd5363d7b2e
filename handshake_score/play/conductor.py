"""The conductor: one thread that calls the performers at their moments.

Every call has an absolute deadline on the monotonic ``perf_counter_ns``
clock, counted from one start, so lateness never accumulates. The thread
sleeps until :data:`SPIN_NS` before a deadline (a sleep overshoots by tens of
microseconds, more on a busy machine), then spins on the clock to the
deadline itself. As soon as the calls of one moment are made it cues the
performers of the next moment's strikes (:meth:`~.performer.Performer.cue`), so
what can be done ahead is. At a moment several performers share, the cheapest
(:attr:`~.performer.Performer.cost`) is called first, so a slow call holds up
no quick one. The hot loop works on Python lists made once from the timeline,
since reading numpy scalars one at a time is slower.
"""

from __future__ import annotations

import threading
import time
from array import array

import numpy as np

from .performer import EVENT, STRIKE, Part, Performer

SPIN_NS = 1_500_000        # spin the last 1.5 ms before a deadline
LEAD_NS = 50_000_000       # the first deadline comes this long after start(), once all is ready
LONG_WAIT_NS = 50_000_000  # longer sleeps are taken in pieces, so stop() is heard promptly


class Conductor(threading.Thread):
    """Plays the merged parts of ``performers``; ``loop`` repeats them until stopped, each pass
    ``pause_ns`` after the end of the one before.

    Read while it plays: :attr:`passes` (begun), :attr:`done` (events of this pass
    called), :attr:`actual`, :attr:`error` (an exception a performer raised, which ends
    the performance). At the end of each pass, finished or not, it hands the pass to
    ``on_pass(index, actual_ns, refused)`` and forgets it, so a loop runs for months in
    the same memory: ``actual_ns`` holds each event's call time (0: not reached), or for
    a strike the moment it sounded where its performer knows better
    (:meth:`~.performer.Performer.sounded_ns`); ``refused`` the events a performer refused.
    """

    def __init__(self, performers: list[Performer], parts: list[Part], *, loop: bool = False,
                 pause_ns: int = 1_000_000_000, on_pass=None):
        super().__init__(name="hs-conductor", daemon=True)
        self.performers = performers
        self.parts = parts
        timeline = np.concatenate([np.zeros(0, EVENT)] + [p.events for p in parts])
        who = np.concatenate([np.zeros(0, np.uint8)] + [np.full(len(p.events), i, np.uint8) for i, p in enumerate(parts)])
        # by time, releases first, then the cheapest performer first (in the order given, where they cost the same)
        rank = np.argsort(np.argsort([p.cost for p in performers], kind="stable")).astype(np.uint8)
        order = np.lexsort((who, rank[who] if len(who) else who, timeline["action"], timeline["due_ns"]))
        self.timeline, self.who = timeline[order], who[order]
        self.loop = loop
        self.span_ns = int(self.timeline["due_ns"].max()) if len(timeline) else 0
        self.pause_ns = pause_ns
        self.start_ns = 0          # the perf_counter_ns of output time 0, of the first pass
        self.on_pass = on_pass
        self.passes = 0
        self.actual = array("q")   # this pass: each event's call time, perf_counter_ns
        self.refused: list[int] = []
        self.done = 0
        self.error: BaseException | None = None
        self.completed = False     # the last pass reached its end (never, with loop)
        self.stopping = False
        self._wake = threading.Event()
        # set when run() ends; wait on this, not join(): a join() a signal interrupts marks
        # the thread as ended while it still runs (CPython's bpo-45274 fix does that)
        self.finished = threading.Event()

    @property
    def period_ns(self) -> int:
        return self.span_ns + self.pause_ns

    def stop(self) -> None:
        self.stopping = True
        self._wake.set()

    def run(self) -> None:
        due = self.timeline["due_ns"].tolist()
        note = self.timeline["note"].tolist()
        strike = (self.timeline["action"] == STRIKE).tolist()
        calls = [(p.release, p.strike) for p in self.performers]
        # asked only of performers that know when they sounded better than the call's moment
        knows = [p.sounded_ns if type(p).sounded_ns is not Performer.sounded_ns else None for p in self.performers]
        who = self.who.tolist()
        call = [calls[w][s] for w, s in zip(who, strike)]
        sounded = [knows[w] if s else None for w, s in zip(who, strike)]
        cue = [self.performers[w].cue if s else None for w, s in zip(who, strike)]
        # the end of each moment's events: a moment's strikes are all cued before its first call
        moment_end = np.searchsorted(self.timeline["due_ns"], self.timeline["due_ns"], "right").tolist()
        clock, sleep, wake = time.perf_counter_ns, time.sleep, self._wake.wait
        n = len(due)
        t0 = self.start_ns = clock() + LEAD_NS
        try:
            while not self.stopping:
                if self.passes:
                    self._hand_over()
                actual = self.actual = array("q", bytes(8 * n))
                refused = self.refused = []
                self.done = 0
                self.passes += 1
                cued = 0
                for j in range(n):
                    deadline = t0 + due[j]
                    if j >= cued:  # a new moment: cue its strikes now, as far ahead as can be
                        cued = moment_end[j]
                        for k in range(j, cued):
                            if cue[k] is not None:
                                cue[k](note[k], deadline)
                    wait = deadline - clock() - SPIN_NS
                    while wait > 0 and not self.stopping:
                        if wait > LONG_WAIT_NS:
                            wake(LONG_WAIT_NS / 1e9)
                        else:
                            sleep(wait / 1e9)
                        wait = deadline - clock() - SPIN_NS
                    if self.stopping:
                        return
                    while clock() < deadline:
                        pass
                    t = clock()
                    if call[j](note[j]) is False:
                        refused.append(j)
                    elif sounded[j] is not None:
                        t = sounded[j]() or t
                    actual[j] = t
                    self.done = j + 1
                if not self.loop:
                    self.completed = True
                    return
                t0 += self.period_ns
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which silences everything
            self.error = e
        finally:
            try:
                if self.passes:
                    self._hand_over()
            except BaseException as e:  # noqa: BLE001
                self.error = self.error or e
            self.finished.set()

    def _hand_over(self) -> None:
        if self.on_pass is not None:
            self.on_pass(self.passes - 1, self.actual, self.refused)
