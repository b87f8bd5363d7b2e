"""Whether a caller's calls keep a schedule: the statistics of their intervals. For every
caller at once (calls grouped by sorting), :func:`_analyse` counts each interval in beats,
fits the period (least squares of call time over beat number), its spread (the MAD of the
intervals per beat) and a score in [0, 1] (skew, spread, completeness, coverage, number of
calls, as RITA scores a beacon), asks :mod:`.periodogram` for a p-value, and says which
callers are periodic by the thresholds held here (:data:`MIN_PERIOD_S`, :data:`MAX_P_VALUE`,
:data:`MIN_REGULARITY` and the stricter ones for fewer than :data:`FEW_CALLS` calls)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .periodogram import _fisher_p

MIN_PERIOD_S = 0.1        # calls closer than this are a loop or a burst, not a schedule
MAX_P_VALUE = 1e-3        # Fisher's g test: no more likely than this by chance
MIN_REGULARITY = 0.5      # and the intervals themselves regular
FEW_CALLS = 6             # a caller with fewer calls than this needs stronger evidence, chance
FEW_P_VALUE = 1e-5        # makes four or five regular-looking calls far more often than more
FEW_REGULARITY = 0.7

_NS = 1e9


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
