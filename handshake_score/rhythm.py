"""The network's rhythm: the callers that come back on a schedule.

A *caller* is a client calling one server on one port (client, server, server
port), or on any port (client, server). Its *calls* are the first SYNs of its
attempts: a SYN sent again (``syn-retry``) is part of its attempt, not a new
call. A caller is *periodic* when its calls keep a schedule:

>>> rhythm = find_rhythm(load_score("scores/home.score"))
>>> for c in rhythm.callers:                       # most regular first
...     print(c.describe(), c.score, c.p_value)
192.168.1.23 -> 52.94.233.1:443 every 15.0 s (40 calls) 0.93 1e-12
>>> quiet = score.with_notes(~rhythm.mask)        # the network without its heartbeats

How a schedule is told from chance (``docs/rhythm.md`` says why, and what was
taken from RITA and Flare):

- **Period.** The median interval between calls is a first guess; each interval
  is then counted in beats (``round(interval / guess)``: a missed call makes an
  interval of two beats, a call off the schedule one of none) and the period is
  the slope of call time over beat number, a least-squares fit that averages
  jitter out and that missing calls do not bend. Its *spread* is the median
  absolute deviation (MAD) of the intervals per beat.
- **Score** in [0, 1], from the statistics of the intervals per beat, as RITA
  scores a beacon's timestamps: their Bowley skew (a schedule's intervals are
  symmetric), their MAD against the period, the share of the beats between the
  first call and the last that have a call, the share of the score's time span
  the calls cover, and how many calls there are.
- **p-value** from a periodogram: Fisher's g test (the largest ordinate's share
  of the sum) on the Schuster periodogram of the call times, averaged over
  windows of :data:`WINDOW_BEATS` beats (a schedule whose jitter accumulates
  still has a sharp line in each window). A random (Poisson) caller's calls have
  no line, however regular a few of its intervals happen to be.

A caller is periodic when it has at least ``min_calls`` calls, its period is at
least :data:`MIN_PERIOD_S` (faster is a loop, not a schedule), its p-value is
below :data:`MAX_P_VALUE` and its score at least :data:`MIN_REGULARITY` (with
fewer than :data:`FEW_CALLS` calls, below :data:`FEW_P_VALUE` and at least
:data:`FEW_REGULARITY`: chance makes four regular-looking calls far more often
than eight). A
caller across ports is reported only where none of its callers on one port is
periodic (a device that changes port every call, say). All of it is numpy over
every caller at once, grouped by sorting: a million attempts take about a second.

:class:`CallLog` collects the calls of a capture as the tracker closes its
attempts (``hs score``'s summary), and :class:`RhythmWatch` notices callers one
call at a time, in bounded memory (``hs play --live``).
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .score import KIND_CODE, NO_DELAY, OUTCOME_CODE, Score, bracketed
from .tracker import Handshake, Kind, Outcome

MIN_CALLS = 4             # fewer calls say nothing about a schedule (RITA asks for 4 too)
MIN_PERIOD_S = 0.1        # calls closer than this are a loop or a burst, not a schedule
MAX_P_VALUE = 1e-3        # Fisher's g test: no more likely than this by chance
MIN_REGULARITY = 0.5      # and the intervals themselves regular
FEW_CALLS = 6             # a caller with fewer calls than this needs stronger evidence, chance
FEW_P_VALUE = 1e-5        # makes four or five regular-looking calls far more often than more
FEW_REGULARITY = 0.7
WINDOW_BEATS = 16         # the periodogram's window: jitter that accumulates stays coherent over it
_CHUNK_CALLS = 1 << 18    # periodogram work at once: memory stays bounded whatever the score

_SYN = KIND_CODE[Kind.SYN]
_COMPLETE = OUTCOME_CODE[Outcome.COMPLETE]
_NS = 1e9


@dataclass(frozen=True)
class Caller:
    """A caller that keeps a schedule. Times are nanoseconds since the score's start."""

    client: str
    server: str
    server_port: int | None  # None: the caller across every port of the server
    period_s: float          # the typical interval between calls
    spread_s: float          # the median absolute deviation of the intervals (per beat)
    calls: int
    score: float             # regularity in [0, 1]
    p_value: float           # Fisher's g test: how likely such a line is by chance
    first_ns: int
    last_ns: int
    completed: float         # the share of its attempts that completed
    syn_to_syn_ack_ms: float | None  # the median delay of its answers

    @property
    def target(self) -> str:
        """``server:port``, or ``server:*`` across ports."""
        return f"{bracketed(self.server)}:{'*' if self.server_port is None else self.server_port}"

    def describe(self) -> str:
        """``192.168.1.23 -> 52.94.233.1:443 every 15.0 s (40 calls)``."""
        return f"{self.client} -> {self.target} every {period_text(self.period_s)} ({self.calls:,} calls)"

    def as_dict(self) -> dict:
        return {"client": self.client, "server": self.server, "server_port": self.server_port,
                "period_s": round(self.period_s, 6), "spread_s": round(self.spread_s, 6), "calls": self.calls,
                "score": round(self.score, 3), "p_value": float(f"{self.p_value:.3g}"),
                "first_ns": self.first_ns, "last_ns": self.last_ns, "completed": round(self.completed, 3),
                "syn_to_syn_ack_ms": None if self.syn_to_syn_ack_ms is None else round(self.syn_to_syn_ack_ms, 3)}


def period_text(seconds: float) -> str:
    """A period as people say it: ``0.25 s``, ``15.0 s``, ``5.0 min``, ``2.0 h``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Calls(NamedTuple):
    """One row per attempt: who called whom, when (its first SYN), and how it went."""

    client: np.ndarray      # index into hosts
    server: np.ndarray
    server_port: np.ndarray
    time_ns: np.ndarray     # since the score's start
    outcome: np.ndarray     # Outcome.ALL codes
    syn_to_syn_ack_ns: np.ndarray  # NO_DELAY where there is none
    hosts: list[str]
    span_ns: int            # the time the score covers (for the coverage of each caller)


class Rhythm(NamedTuple):
    """What :func:`find_rhythm` found."""

    callers: list[Caller]   # most regular first
    attempts: int           # attempts looked at
    mask: np.ndarray        # for each note of the score: whether it belongs to a periodic caller
    caller_of: np.ndarray   # for each note: the index of its caller in ``callers``, or -1


# -- the calls of a score --------------------------------------------------------------------------------

def _first_of_each_attempt(attempt: np.ndarray) -> np.ndarray:
    """The index of each attempt's first note. Attempts are numbered in the order of their
    first notes, so a number seen for the first time is a new attempt (O(n)); a score whose
    numbers are not in that order (one a filter on kinds thinned) is sorted instead."""
    if not len(attempt):
        return np.zeros(0, np.intp)
    a = attempt.astype(np.int64)
    before = np.maximum.accumulate(np.concatenate([[0], a[:-1]]))
    first = np.flatnonzero(a > before)
    seen = np.zeros(int(a.max()) + 1, bool)
    seen[a[first]] = True
    if seen[a].all():
        return first
    _, first = np.unique(a, return_index=True)
    return np.sort(first)


def calls_of(score: Score) -> Calls:
    """The calls of ``score``: one per attempt, at its SYN (at its first note if a filter left
    out its SYN)."""
    notes = score.notes
    first = _first_of_each_attempt(notes["attempt"])
    rows = notes[first]
    time = rows["time_ns"].copy()
    syn = np.flatnonzero(notes["kind"] == _SYN)
    if len(syn):  # an attempt's SYN may come after its first note (a SYN-ACK captured before it)
        where = np.full(int(notes["attempt"].max()) + 1, -1, np.int64)
        where[rows["attempt"]] = np.arange(len(rows))
        at = where[notes["attempt"][syn]]
        time[at] = notes["time_ns"][syn]
    span = int(notes["time_ns"].max() - notes["time_ns"].min()) if len(notes) else 0
    return Calls(rows["client"], rows["server"], rows["server_port"], time, rows["outcome"],
                 rows["syn_to_syn_ack_ns"], score.hosts, span)


# -- the analysis, every caller at once ------------------------------------------------------------------

def _sorted_in_groups(values: np.ndarray, group: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values`` (>= 0) sorted within each group (``group`` ascending), with each group's
    count and start. One float sort of ``group + value / (the group's largest value)``,
    which numpy does with SIMD: ten times faster than ``lexsort``; the values come back
    to within 1e-10 of their group's largest, far below any jitter."""
    count = np.bincount(group, minlength=groups)
    start = np.cumsum(count) - count
    has = count > 0
    top = np.zeros(groups)
    if len(values):
        top[has] = np.maximum.reduceat(values, start[has])
    scale = np.where(top > 0, top * (1 + 1e-9), 1.0)
    key = np.sort(group + values / scale[group])
    return np.clip((key - group) * scale[group], 0, None), count, start


def _group_median(values: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """The median of ``values`` (>= 0) in each group (``group`` ascending); NaN for an empty group."""
    out = np.full(groups, np.nan)
    if not len(values):
        return out
    v, count, start = _sorted_in_groups(values, group, groups)
    has = count > 0
    lo, hi = start + (count - 1) // 2, start + count // 2
    out[has] = (v[lo[has]] + v[hi[has]]) / 2
    return out


def _group_quantiles(values: np.ndarray, group: np.ndarray, groups: int, qs) -> list[np.ndarray]:
    """Quantiles of ``values`` (>= 0) in each group (ascending, every group non-empty), by the
    nearest rank as RITA does."""
    v, count, start = _sorted_in_groups(values, group, groups)
    return [v[start + np.rint(q * (count - 1)).astype(np.int64)] for q in qs]


class _Stats(NamedTuple):
    """Per group of calls (a caller), what :func:`_analyse` works out."""

    first: np.ndarray       # index of the group's first call, in the sorted calls
    calls: np.ndarray
    period_ns: np.ndarray
    spread_ns: np.ndarray
    score: np.ndarray
    p_value: np.ndarray
    periodic: np.ndarray    # bool


class _Fit(NamedTuple):
    period: np.ndarray   # per group
    beats: np.ndarray    # per interval: how many beats it spans
    quality: np.ndarray  # per group: how well the intervals fall on whole beats, and how few beats are empty


def _fit(dt: np.ndarray, igid: np.ndarray, g: int, period: np.ndarray) -> _Fit:
    """Refine a guess of each group's period: count each interval in beats, take the median
    interval per beat, twice."""
    for _ in range(2):
        beats = np.rint(dt / period[igid])
        on = beats >= 1
        refined = _group_median(dt[on] / beats[on], igid[on], g)
        period = np.where(np.isnan(refined), period, np.maximum(refined, 1.0))
    beats = np.rint(dt / period[igid])
    spread = _group_median(np.abs(dt - beats * period[igid]), igid, g)
    kept = 1 + np.bincount(igid, beats >= 1, g)
    total = 1 + np.bincount(igid, beats, g)
    quality = 0.45 * np.clip(1 - 4 * spread / period, 0, 1) + 0.2 * kept / total
    return _Fit(period, beats, quality)


def _analyse(group: np.ndarray, time: np.ndarray, span_ns: int, min_calls: int) -> _Stats:
    """Every group with at least ``min_calls`` calls: its period, spread, score and p-value.

    ``group`` (int64, ascending) and ``time`` (ns, ascending within a group) are the calls.
    """
    n = len(time)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]])) if n else np.zeros(0, np.intp)
    counts = np.diff(np.append(starts, n))
    keep = counts >= max(min_calls, 3)
    starts, counts = starts[keep], counts[keep]
    g = len(starts)
    if not g:
        z = np.zeros(0)
        return _Stats(starts, counts, z, z, z, z, np.zeros(0, bool))
    # the calls of the groups kept, numbered 0..g-1
    gid = np.repeat(np.arange(g), counts)
    idx = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(len(gid))
    t = time[idx]
    t0 = t[np.cumsum(counts) - counts]
    rel = (t - t0[gid]).astype(np.float64)          # ns since the group's first call
    within = gid[1:] == gid[:-1]
    dt = np.diff(rel)[within]
    igid = gid[1:][within]                          # each interval's group

    # period: two guesses, the median interval and a low one (the median is two beats when many
    # calls are missing), each refined by counting intervals in beats; the better fit wins
    low, mid = _group_quantiles(dt, igid, g, (0.2, 0.5))
    fits = [_fit(dt, igid, g, np.maximum(guess, 1.0)) for guess in (mid, low)]
    best = np.where(fits[1].quality > fits[0].quality + 1e-9, 1, 0)
    period = np.where(best == 1, fits[1].period, fits[0].period)
    beats = np.where(best[igid] == 1, fits[1].beats, fits[0].beats)
    on = beats >= 1
    # the beat of each call; a call off the schedule (0 beats after the one before) is left out of the fit
    beat_of = np.zeros(len(t))
    taken = np.ones(len(t), bool)
    steps = np.zeros(len(t))
    steps[1:][within] = beats
    taken[1:][within] = on
    cum = np.cumsum(steps)
    beat_of = cum - cum[np.cumsum(counts) - counts][gid]
    w = taken.astype(np.float64)
    sn = np.bincount(gid, w, g)
    sx = np.bincount(gid, w * beat_of, g)
    sy = np.bincount(gid, w * rel, g)
    sxx = np.bincount(gid, w * beat_of * beat_of, g)
    sxy = np.bincount(gid, w * beat_of * rel, g)
    den = sn * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sn * sxy - sx * sy) / den
    period = np.where((den > 0) & (slope > 0), slope, period)

    # how far each interval is from a whole number of beats (a call off the schedule: from none),
    # the spread of that, and the skew of the intervals per beat (a schedule's are symmetric)
    residual = dt - beats * period[igid]
    spread = _group_median(np.abs(residual), igid, g)
    per_beat = dt[on] / beats[on]
    pgid = igid[on]
    has = np.bincount(pgid, minlength=g) > 0
    per_beat = np.concatenate([per_beat, period[~has]])  # a group without one: its period stands in
    pgid = np.concatenate([pgid, np.flatnonzero(~has)])
    order = np.argsort(pgid, kind="stable")
    q1, q2, q3 = _group_quantiles(per_beat[order], pgid[order], g, (0.25, 0.5, 0.75))
    iqr = q3 - q1
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where((iqr > 1e-3 * q2) & (q2 != q1) & (q2 != q3), (q1 + q3 - 2 * q2) / iqr, 0.0)
    skew_score = np.clip(1 - np.abs(skew), 0, 1)
    mad_score = np.clip(1 - 4 * spread / period, 0, 1)   # off by a quarter of a beat (chance's median) scores 0
    total_beats = cum[np.cumsum(counts) - 1] - cum[np.cumsum(counts) - counts]
    kept = np.bincount(gid, w, g)
    completeness = np.clip(kept / (total_beats + 1), 0, 1)
    last = rel[np.cumsum(counts) - 1]
    coverage = np.clip(last / span_ns, 0, 1) if span_ns > 0 else np.ones(g)
    count_score = np.clip(np.log(kept) / np.log(64), 0, 1)
    score = 0.45 * mad_score + 0.15 * skew_score + 0.2 * completeness + 0.1 * coverage + 0.1 * count_score

    # the periodogram's test, only where the intervals could be a schedule (the rest cannot pass)
    p_value = np.ones(g)
    candidate = (score >= MIN_REGULARITY) & (period >= MIN_PERIOD_S * _NS)
    if candidate.any():
        p_value[candidate] = _fisher_p(rel, gid, counts, period, candidate)
    few = counts < FEW_CALLS
    periodic = candidate & np.where(few, (p_value < FEW_P_VALUE) & (score >= FEW_REGULARITY), p_value < MAX_P_VALUE)
    return _Stats(starts, counts, period, spread, score, p_value, periodic)


def _fisher_p(rel: np.ndarray, gid: np.ndarray, counts: np.ndarray, period: np.ndarray,
              which: np.ndarray) -> np.ndarray:
    """Fisher's g test on each chosen group's Schuster periodogram, averaged over windows.

    A group's calls are cut into windows of :data:`WINDOW_BEATS` periods (or one window of
    its whole span and one more beat, if shorter); in each, the periodogram at the window's
    Fourier frequencies k = 1 .. 1.25 x its beats + 1 is ``|sum exp(2 pi i k u / D)|^2 / n``
    (u: a call's time in a window of length D). Its average over the windows gives g, the
    largest ordinate's share of their sum, and Fisher's exact p-value for g among that many
    frequencies (white noise's ordinates being independent exponentials, as a Poisson
    caller's are).
    """
    chosen = np.flatnonzero(which)
    out = np.ones(len(chosen))
    # at most _CHUNK_CALLS calls at a time (each chunk whole groups): bounded memory for any score
    chunk = np.cumsum(counts[chosen]) // _CHUNK_CALLS
    for c in np.unique(chunk).tolist():
        part = np.flatnonzero(chunk == c)
        mask = np.zeros(len(which), bool)
        mask[chosen[part]] = True
        out[part] = _fisher_chunk(rel, gid, counts, period, mask)
    return out


def _fisher_chunk(rel: np.ndarray, gid: np.ndarray, counts: np.ndarray, period: np.ndarray,
                  which: np.ndarray) -> np.ndarray:
    """:func:`_fisher_p` for the groups in ``which``."""
    chosen = np.flatnonzero(which)
    select = which[gid]
    cgid, crel = gid[select], rel[select]
    # renumber the chosen groups 0..len-1
    remap = np.full(len(which), -1)
    remap[chosen] = np.arange(len(chosen))
    cgid = remap[cgid]
    ccounts = counts[chosen]
    P = period[chosen]
    span = crel[np.cumsum(ccounts) - 1]
    beats_spanned = span / P
    short = beats_spanned < WINDOW_BEATS
    length = np.where(short, span + P, WINDOW_BEATS * P)            # D: a whole number of beats
    window_beats = np.where(short, np.rint(beats_spanned) + 1, WINDOW_BEATS)
    windows = np.where(short, 1, np.ceil(span / length)).astype(np.int64)
    # windows start evenly from the first call to the last call minus D, so the last ends on the last call
    step = np.where(windows > 1, (span - length) / np.maximum(windows - 1, 1), 0.0)
    freqs = (np.ceil(1.25 * window_beats) + 1).astype(np.int64)
    k_max = int(freqs.max())

    # a call is in the window its time starts in, and in the one before if that one reaches it
    st = step[cgid]
    j1 = np.where(st > 0, np.floor(crel / np.where(st > 0, st, 1)), 0).astype(np.int64)
    j1 = np.minimum(j1, windows[cgid] - 1)
    rows, phases, owners = [], [], []
    offset = np.cumsum(windows) - windows
    for j in (j1, j1 - 1):
        u = crel - j * st
        inside = (j >= 0) & (u >= 0) & (u <= length[cgid] * (1 + 1e-12))
        rows.append(offset[cgid[inside]] + j[inside])
        phases.append(2 * np.pi * u[inside] / length[cgid[inside]])
        owners.append(cgid[inside])
    row, phase, owner = (np.concatenate(x) for x in (rows, phases, owners))
    n_rows = int(windows.sum())
    in_row = np.bincount(row, minlength=n_rows).astype(np.float64)
    # ordinates: z^k by repeated multiplication (one exp a call, not k_max)
    z = np.exp(1j * phase)
    zk = np.ones_like(z)
    power = np.zeros((k_max, n_rows))
    for k in range(k_max):
        zk *= z
        re = np.bincount(row, zk.real, n_rows)
        im = np.bincount(row, zk.imag, n_rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            power[k] = np.where(in_row > 0, (re * re + im * im) / in_row, 0.0)
    # average over each group's windows that hold calls
    row_group = np.repeat(np.arange(len(chosen)), windows)
    used = np.bincount(row_group, in_row > 0, len(chosen))
    mean = np.stack([np.bincount(row_group, power[k], len(chosen)) for k in range(k_max)]) / np.maximum(used, 1)
    mask = np.arange(1, k_max + 1)[:, None] <= freqs[None, :]
    mean = np.where(mask, mean, 0.0)
    total = mean.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(total > 0, mean.max(axis=0) / total, 0.0)
    return _fisher_exact(g, freqs)


def _fisher_exact(g: np.ndarray, m: np.ndarray) -> np.ndarray:
    """P(max/sum >= g) for ``m`` independent exponentials (Fisher 1929), each group its own m."""
    p = np.zeros(len(g))
    for j in range(1, int(m.max()) + 1):
        base = 1 - j * g
        ok = (base > 0) & (j <= m)
        if not ok.any():
            break
        logc = _log_comb(m, j)
        term = np.exp(logc + (m - 1) * np.log(np.where(ok, base, 1.0)))
        p += np.where(ok, (-1) ** (j - 1) * term, 0.0)
    return np.clip(np.where(g > 0, p, 1.0), 0.0, 1.0)


def _log_comb(m: np.ndarray, j: int) -> np.ndarray:
    """log C(m, j) for each m (0 where m < j: those terms are masked)."""
    table = np.array([math.lgamma(x + 1) for x in range(int(m.max()) + 1)])
    mm = np.maximum(m, j)
    return table[mm] - math.lgamma(j + 1) - table[mm - j]


# -- callers ---------------------------------------------------------------------------------------------

def analyse(calls: Calls, *, min_calls: int = MIN_CALLS, min_score: float = 0.0,
            top: int | None = None) -> tuple[list[Caller], np.ndarray]:
    """The periodic callers among ``calls``, most regular first, and for each call the index
    of its caller among them (-1: none). With ``top``, only the ``top`` most regular."""
    found = _periodic(calls, min_calls, min_score)
    member = np.full(len(calls.time_ns), -1, np.int32)
    callers = []
    for i, (_, _, _, rows, stats, at, across) in enumerate(found[:top]):
        callers.append(_caller(calls, rows, stats, at, across))
        member[rows] = i
    return callers, member


def _periodic(calls: Calls, min_calls: int, min_score: float) -> list[tuple]:
    """Every periodic caller as (-score, p-value, first call, its rows, stats, index in them,
    across ports), most regular first: light, so that a flood's thousands cost little."""
    if min_calls < 3:
        from .errors import HandshakeScoreError

        raise HandshakeScoreError(f"--min-calls: {min_calls} is too few (two intervals make no schedule; at least 3)")
    if not len(calls.time_ns):
        return []
    t = calls.time_ns.astype(np.int64)
    pair = (calls.client.astype(np.uint64) << np.uint64(32)) | calls.server.astype(np.uint64)
    _, pair_of = np.unique(pair, return_inverse=True)
    del pair
    pair_of = pair_of.ravel().astype(np.int64)
    port_key = (pair_of << 16) | calls.server_port.astype(np.int64)
    # a pair whose calls all go to one port is that port's caller: only pairs of several ports are
    # looked at again across ports
    ports_of_pair = np.bincount(np.unique(port_key) >> 16, minlength=int(pair_of.max()) + 1)
    several = np.flatnonzero(ports_of_pair[pair_of] > 1)
    found: list[tuple] = []
    periodic_pairs: set[int] = set()
    for rows_of, across in ((None, False), (several, True)):
        if rows_of is None:
            order = np.lexsort((t, port_key))
            stats = _analyse(port_key[order], t[order], calls.span_ns, min_calls)
        else:
            order = rows_of[np.lexsort((t[rows_of], pair_of[rows_of]))]
            stats = _analyse(pair_of[order], t[order], calls.span_ns, min_calls)
        for i in np.flatnonzero(stats.periodic & (stats.score >= min_score)).tolist():
            rows = order[stats.first[i]:stats.first[i] + stats.calls[i]]
            pair_id = int(pair_of[rows[0]])
            if across:
                if pair_id in periodic_pairs:  # its callers on one port say it better
                    continue
            else:
                periodic_pairs.add(pair_id)
            found.append((-float(stats.score[i]), float(stats.p_value[i]), int(t[rows].min()), rows, stats, i, across))
    found.sort(key=lambda f: f[:3])
    return found


def _caller(calls: Calls, rows: np.ndarray, stats: _Stats, i: int, across: bool) -> Caller:
    d1 = calls.syn_to_syn_ack_ns[rows]
    d1 = d1[d1 != NO_DELAY]
    r = int(rows[0])
    return Caller(
        client=calls.hosts[int(calls.client[r])], server=calls.hosts[int(calls.server[r])],
        server_port=None if across else int(calls.server_port[r]),
        period_s=float(stats.period_ns[i]) / _NS, spread_s=float(stats.spread_ns[i]) / _NS,
        calls=int(stats.calls[i]), score=float(stats.score[i]), p_value=float(stats.p_value[i]),
        first_ns=int(calls.time_ns[rows].min()), last_ns=int(calls.time_ns[rows].max()),
        completed=float(np.mean(calls.outcome[rows] == _COMPLETE)),
        syn_to_syn_ack_ms=float(np.median(d1)) / 1e6 if len(d1) else None)


def find_rhythm(score: Score, *, min_calls: int = MIN_CALLS, min_score: float = 0.0) -> Rhythm:
    """The periodic callers of ``score`` (most regular first) and the mask of the notes that
    belong to them: ``score.with_notes(rhythm.mask)`` is the heartbeat alone,
    ``score.with_notes(~rhythm.mask)`` the network without it.

    ``min_calls``: a caller needs at least this many calls (at least 3); ``min_score``: and
    at least this score. A score without addresses (read from a MIDI file) has no callers.
    """
    if not len(score.notes) or not score.hosts:
        if min_calls < 3:
            analyse(calls_of(score), min_calls=min_calls)  # says what is wrong with it
        none = np.full(len(score.notes), -1, np.int32)
        return Rhythm([], score.attempts() if score.hosts else 0, none >= 0, none)  # MIDI-read: no callers
    calls = calls_of(score)
    callers, member = analyse(calls, min_calls=min_calls, min_score=min_score)
    attempt = score.notes["attempt"]
    row_of = np.full(int(attempt.max()) + 1, 0, np.int64)
    first = _first_of_each_attempt(attempt)
    row_of[attempt[first]] = np.arange(len(first))
    caller_of = member[row_of[attempt]]
    return Rhythm(callers, len(first), caller_of >= 0, caller_of)


SELECTIONS = ("periodic",)


def check_selection(only: str | None, without: str | None) -> None:
    """Raise for an ``--only``/``--except`` that :func:`selected` cannot do."""
    from .errors import HandshakeScoreError

    for option, value in (("--only", only), ("--except", without)):
        if value is not None and value not in SELECTIONS:
            raise HandshakeScoreError(f"{option}: {value!r} is not something to select (there is: "
                                      f"{', '.join(SELECTIONS)})")
    if only is not None and without is not None:
        raise HandshakeScoreError("give --only or --except, not both")


def selected_saying(score: Score, only: str | None, without: str | None, say=None) -> Score:
    """:func:`selected`, and a warning through ``say`` (a function of one line) when it leaves
    no note of a score that had some."""
    kept = selected(score, only, without)
    if say is not None and len(score) and not len(kept):
        say(f"no note is {'periodic' if only else 'left once the periodic callers are out'}")
    return kept


def selected(score: Score, only: str | None = None, without: str | None = None,
             min_calls: int = MIN_CALLS) -> Score:
    """``score`` as ``--only periodic`` (the notes of its periodic callers: the heartbeat
    alone) or ``--except periodic`` (every other note: the network without it) ask for;
    as it is when neither is given. Notes keep their times."""
    check_selection(only, without)
    if only is None and without is None:
        return score
    mask = find_rhythm(score, min_calls=min_calls).mask
    return score.with_notes(mask if only is not None else ~mask)


# -- words -----------------------------------------------------------------------------------------------

def _p_text(p: float) -> str:
    return "<1e-300" if p <= 0 else f"{p:.0e}" if p < 0.001 else f"{p:.3f}"


def table(callers: list[Caller], attempts: int, min_calls: int = MIN_CALLS) -> str:
    """``hs rhythm``'s table: one line per periodic caller, most regular first; a score
    with none says so in one line."""
    if not callers:
        return (f"no periodic caller among {attempts:,} attempt{'s' * (attempts != 1)} "
                f"(a caller needs {min_calls}+ calls on a schedule)")
    head = ("client", "server:port", "period", "spread", "calls", "score", "p")
    rows = [(c.client, c.target, period_text(c.period_s), period_text(c.spread_s), f"{c.calls:,}",
             f"{c.score:.2f}", _p_text(c.p_value)) for c in callers]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 4, 5, 6}
    lines = ["  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
             for r in [head, *rows]]
    n = len(callers)
    lines.append(f"{n:,} periodic caller{'s' * (n != 1)} among {attempts:,} attempts")
    return "\n".join(lines)


def summary_lines(callers: list[Caller], top: int = 3, periodic: int | None = None) -> list[str]:
    """``hs score``'s lines: the ``top`` most regular callers, or that there is none
    (``periodic``: how many there are, if more than ``callers``)."""
    if not callers:
        return ["rhythm      no caller on a schedule"]
    lines = [f"{'rhythm' if i == 0 else '':<11} {c.describe()}, score {c.score:.2f}"
             for i, c in enumerate(callers[:top])]
    more = (len(callers) if periodic is None else periodic) - min(top, len(callers))
    if more > 0:
        lines.append(f"{'':<11} and {more:,} more (hs rhythm lists them)")
    return lines


def live_line(caller: Caller) -> str:
    """What ``hs play --live`` prints when it notices a caller:
    ``192.168.1.23 -> 52.94.233.1:443 every 15.0 s (6 calls so far)``."""
    return f"{caller.client} -> {caller.target} every {period_text(caller.period_s)} ({caller.calls:,} calls so far)"


# -- the calls of a capture, as the tracker closes its attempts ------------------------------------------

class CallLog:
    """The calls of captures being scored, kept as the tracker closes each attempt (give
    :meth:`add` as ``on_close``), in compact columns: 51 bytes an attempt. Past ``limit``
    attempts it keeps no more (``full`` says so), so a flood cannot grow it, nor the
    analysis of it, without bound.

    >>> log = CallLog()
    >>> summary = score_files(["captures/home.pcapng"], on_close=log.add)
    >>> callers, _ = analyse(log.calls())
    """

    def __init__(self, limit: int = 200_000):
        self.limit, self.full = limit, False
        self._ends = bytearray()          # client address, server address, server port: 34 bytes a call
        self._time, self._d1 = array("q"), array("q")
        self._outcome = array("B")

    def __len__(self) -> int:
        return len(self._time)

    def add(self, h: Handshake) -> None:
        if len(self._time) >= self.limit:
            self.full = True
            return
        flow = h.flow
        self._ends += flow[:16] + flow[18:36]
        self._time.append(h.syn_ns)
        d1 = h.syn_to_syn_ack_ns
        self._d1.append(NO_DELAY if d1 is None else d1)
        self._outcome.append(OUTCOME_CODE[h.outcome])

    def calls(self) -> Calls:
        """The calls so far, times since the first of them."""
        n = len(self._time)
        ends = np.frombuffer(self._ends, np.uint8).reshape(n, 34)  # no copy
        time = np.frombuffer(self._time, np.int64) if n else np.zeros(0, np.int64)
        client, server, hosts = _address_ids(ends[:, :16], ends[:, 16:32])
        port = ends[:, 32:34].copy().view(">u2").ravel().astype(np.uint16)
        start = int(time.min()) if n else 0
        return Calls(client, server, port, time - start,
                     np.frombuffer(self._outcome, np.uint8) if n else np.zeros(0, np.uint8),
                     np.frombuffer(self._d1, np.int64) if n else np.zeros(0, np.int64),
                     hosts, int(time.max()) - start if n else 0)


class _Hosts:
    """Addresses as text, made only for the few a caller names (a flood has a million)."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw  # (n, 16) uint8

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> str:
        from .segments import address_text

        return address_text(self.raw[i].tobytes())


def _address_ids(*columns: np.ndarray) -> tuple:
    """Each column of 16-byte addresses as indices into one table of them, and the table.
    Keys are a 64-bit mix of each address's two words, sorted (checked for the collision
    that never comes, then done exactly)."""
    words = [np.ascontiguousarray(c).view("<u8") for c in columns]
    keys = np.concatenate([(w[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ w[:, 1] for w in words])
    unique, first, index = np.unique(keys, return_index=True, return_inverse=True)
    index = index.ravel().astype(np.uint32)
    both = np.concatenate(words)
    if not np.array_equal(both[first][index], both):
        _, first, index = np.unique(both.view([("a", "<u8"), ("b", "<u8")]).ravel(), return_index=True,
                                    return_inverse=True)
        index = index.ravel().astype(np.uint32)
    n = len(columns[0])
    raw = both[first].view(np.uint8).reshape(-1, 16)
    return (*(index[i * n:(i + 1) * n] for i in range(len(columns))), _Hosts(raw))


# -- live: one call at a time ----------------------------------------------------------------------------

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


def anonymized(callers: list[Caller], key: bytes) -> list[Caller]:
    """``callers`` with their addresses replaced by the keyed pseudonyms ``hs score --anonymize``
    gives them under the same key."""
    from dataclasses import replace

    from .anonymize import pseudonyms

    names = pseudonyms(sorted({h for c in callers for h in (c.client, c.server)}), key)
    return [replace(c, client=names[c.client], server=names[c.server]) for c in callers]


# -- what the commands print -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    """Callers and how many attempts they were found among, as ``--json`` gives them."""

    callers: list[Caller]
    attempts: int
    complete: bool = True      # False: only the first ``attempts`` of more were looked at
    top: int | None = None     # ``callers`` are the first ``top`` of ``periodic``
    periodic: int | None = None

    def as_dict(self) -> dict:
        out = {"callers": [c.as_dict() for c in self.callers], "attempts": self.attempts}
        if self.top is not None:
            out["periodic"] = len(self.callers) if self.periodic is None else self.periodic
        if not self.complete:
            out["limited"] = True
        return out

    def lines(self) -> list[str]:
        """``hs score``'s lines (see :func:`summary_lines`)."""
        lines = summary_lines(self.callers, self.top or 3, self.periodic)
        if not self.complete:
            lines.append(f"{'':<11} (among the first {self.attempts:,} attempts only)")
        return lines


def summarize(log: CallLog, key: bytes | None = None, top: int = 3) -> Found:
    """``hs score``'s rhythm: the ``top`` callers in ``log`` (pseudonymised under ``key`` if
    given), and how many there are."""
    calls = log.calls()
    found = _periodic(calls, MIN_CALLS, 0.0)
    callers = [_caller(calls, rows, stats, at, across) for _, _, _, rows, stats, at, across in found[:top]]
    if key is not None:
        callers = anonymized(callers, key)
    return Found(callers, len(log), not log.full, top, len(found))


def read_rhythm_input(paths) -> Score:
    """``hs rhythm``'s input: one score file, or captures scored in memory."""
    import os
    from pathlib import Path

    from .errors import HandshakeScoreError
    from .scorefile import MAGIC, load_score

    paths = [os.fspath(p) for p in paths]
    heads = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                heads.append(f.read(len(MAGIC) + 3).removeprefix(b"\xef\xbb\xbf").startswith(MAGIC.encode()))
        except OSError:
            heads.append(False)  # the reader says what is wrong with it
    if any(heads):
        if len(paths) > 1:
            raise HandshakeScoreError("hs rhythm takes one score file, or captures (not several scores, nor both)")
        return load_score(paths[0])
    from .score import compose
    from .sources.ring import expand

    return compose(expand([Path(p) for p in paths])).score


def report(found: Rhythm, min_calls: int = MIN_CALLS, *, json_out: bool = False, key: str | bytes | None = None,
           anonymize: bool = False) -> str:
    """What ``hs rhythm`` prints: the table, or with ``json_out`` one JSON object."""
    import json

    callers = found.callers
    if anonymize:
        from .anonymize import new_key

        callers = anonymized(callers, new_key(key))
    if json_out:
        return json.dumps(Found(callers, found.attempts).as_dict())
    return table(callers, found.attempts, min_calls)
