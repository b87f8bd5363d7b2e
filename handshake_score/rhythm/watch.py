"""Callers noticed live, one call at a time (``hs play --live``): :class:`RhythmWatch`
keeps each caller's last calls, in bounded memory (so many callers, so many calls each,
the silent forgotten), and says the first time a caller's calls keep a schedule, by the
same test as the analysis of a whole score (:mod:`.schedule`)."""

from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np

from ..score import NO_DELAY
from .callers import Caller
from .schedule import _NS, _analyse


class _Track:
    __slots__ = ("times", "calls", "first_ns", "last_ns", "period_ns", "noticed", "complete", "d1")

    def __init__(self, window: int, time_ns: int):
        self.times: deque[int] = deque(maxlen=window)
        self.calls, self.first_ns, self.last_ns = 0, time_ns, time_ns
        self.period_ns: float | None = None
        self.noticed = False
        self.complete: deque[bool] = deque(maxlen=window)
        self.d1: deque[int] = deque(maxlen=window)


class RhythmWatch:
    """Notices callers as their calls come, one at a time, as ``hs play --live`` hears them.

    :meth:`call` takes a caller's call and returns a :class:`Caller` the first time that
    caller's last ``window`` calls keep a schedule (by the same test as :func:`analyse`,
    needing ``min_calls``), else None. Memory is bounded: at most ``max_callers`` are
    tracked (the one heard from longest ago goes first), a caller is forgotten once it has
    been silent for ``forget_periods`` periods (or ``idle_s`` before it has one), and each
    keeps only its last ``window`` calls. A caller forgotten and heard again starts afresh.

    >>> watch = RhythmWatch()
    >>> for t in range(0, 100 * 10**9, 15 * 10**9):
    ...     found = watch.call("192.168.1.23", "52.94.233.1", 443, t)
    >>> live_line(found)
    '192.168.1.23 -> 52.94.233.1:443 every 15.0 s (6 calls so far)'
    """

    def __init__(self, *, min_calls: int = 6, max_callers: int = 4096, window: int = 32,
                 forget_periods: float = 10, idle_s: float = 900):
        if min_calls < 3 or max_callers < 1 or window < min_calls:
            raise ValueError("min_calls >= 3, max_callers >= 1 and window >= min_calls")
        self.min_calls, self.max_callers, self.window = min_calls, max_callers, window
        self.forget_periods, self.idle_ns = forget_periods, idle_s * _NS
        self._tracks: OrderedDict[tuple, _Track] = OrderedDict()  # least recently heard first
        self.forgotten = 0  # callers let go, silent or crowded out

    def __len__(self) -> int:
        return len(self._tracks)

    def _expired(self, track: _Track, now_ns: int) -> bool:
        silent = now_ns - track.last_ns
        if track.period_ns is not None:
            return silent > self.forget_periods * track.period_ns
        return silent > self.idle_ns

    def forget_silent(self, now_ns: int) -> None:
        """Let go of callers silent for too long (:meth:`call` does it as time goes on)."""
        tracks = self._tracks
        while tracks:
            key, oldest = next(iter(tracks.items()))
            # the least recently heard is the first to expire, but a caller with a short period may
            # expire before it: those are swept when heard from or crowded out
            if not self._expired(oldest, now_ns):
                break
            del tracks[key]
            self.forgotten += 1

    def call(self, client: str, server: str, server_port: int | None, time_ns: int, *,
             complete: bool = True, syn_to_syn_ack_ns: int | None = None) -> Caller | None:
        """One call (an attempt's first SYN) at ``time_ns``; a :class:`Caller` when this call
        makes its caller's schedule plain for the first time."""
        key = (client, server, server_port)
        tracks = self._tracks
        track = tracks.get(key)
        if track is not None and self._expired(track, time_ns):
            del tracks[key]
            self.forgotten += 1
            track = None
        if track is None:
            track = tracks[key] = _Track(self.window, time_ns)
            if len(tracks) > self.max_callers:
                tracks.popitem(last=False)
                self.forgotten += 1
        else:
            tracks.move_to_end(key)
        self.forget_silent(time_ns)
        track.times.append(time_ns)
        track.complete.append(complete)
        track.d1.append(NO_DELAY if syn_to_syn_ack_ns is None else syn_to_syn_ack_ns)
        track.calls += 1
        track.last_ns = time_ns
        if track.noticed or len(track.times) < self.min_calls:
            return None
        times = np.sort(np.fromiter(track.times, np.int64, len(track.times)))
        stats = _analyse(np.zeros(len(times), np.int64), times - times[0], 0, self.min_calls)
        if not len(stats.periodic):
            return None
        track.period_ns = float(stats.period_ns[0])
        if not stats.periodic[0]:
            return None
        track.noticed = True
        d1 = [d for d in track.d1 if d != NO_DELAY]
        return Caller(client, server, server_port, track.period_ns / _NS, float(stats.spread_ns[0]) / _NS,
                      track.calls, float(stats.score[0]), float(stats.p_value[0]), track.first_ns, time_ns,
                      sum(track.complete) / len(track.complete), float(np.median(d1)) / 1e6 if d1 else None)
