"""Fisher's g test on the Schuster periodogram of a caller's calls: the p-value that tells a
schedule from chance. The calls are cut into windows of :data:`WINDOW_BEATS` beats, the
periodogram is averaged over them, and the largest ordinate's share of the sum is weighed by
Fisher's exact distribution for white noise (a random, Poisson, caller's calls). Pure numpy
over many callers at once, in chunks of bounded memory; :mod:`.schedule` asks it only about
callers whose intervals already look regular."""

from __future__ import annotations

import math

import numpy as np

WINDOW_BEATS = 16         # the periodogram's window: jitter that accumulates stays coherent over it
_CHUNK_CALLS = 1 << 18    # periodogram work at once: memory stays bounded whatever the score


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
