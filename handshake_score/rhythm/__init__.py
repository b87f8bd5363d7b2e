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
every caller at once, grouped by sorting, and ``hs rhythm`` on a score file reads only
each attempt's call (:func:`~..scorefile.load_attempts`); ``benchmarks/RESULTS-rhythm.md``
has the figures.

:class:`CallLog` collects the calls of a capture as the tracker closes its
attempts (``hs score``'s summary), and :class:`RhythmWatch` notices callers one
call at a time, in bounded memory (``hs play --live``).

The pieces, each in its module: :mod:`.callers` (:class:`Caller`, :class:`Calls`,
:func:`calls_of`, :func:`analyse`, :func:`find_rhythm` and the ``--only``/``--except``
selection); :mod:`.schedule` (the statistics of the intervals: period, spread, score,
and the thresholds); :mod:`.periodogram` (Fisher's g test); :mod:`.call_log`
(:class:`CallLog`); :mod:`.watch` (:class:`RhythmWatch`); :mod:`.words` (what the
commands print).
"""

from .call_log import CallLog
from .callers import (MIN_CALLS, SELECTIONS, Caller, Calls, Rhythm, analyse, calls_of, check_selection, find_rhythm,
                      period_text, selected, selected_saying)
from .periodogram import WINDOW_BEATS
from .schedule import FEW_CALLS, FEW_P_VALUE, FEW_REGULARITY, MAX_P_VALUE, MIN_PERIOD_S, MIN_REGULARITY
from .watch import RhythmWatch
from .words import Found, anonymized, live_line, read_rhythm_input, report, summarize, summary_lines, table

__all__ = ["CallLog", "Caller", "Calls", "FEW_CALLS", "FEW_P_VALUE", "FEW_REGULARITY", "Found", "MAX_P_VALUE",
           "MIN_CALLS", "MIN_PERIOD_S", "MIN_REGULARITY", "Rhythm", "RhythmWatch", "SELECTIONS", "WINDOW_BEATS",
           "analyse", "anonymized", "calls_of", "check_selection", "find_rhythm", "live_line", "period_text",
           "read_rhythm_input", "report", "selected", "selected_saying", "summarize", "summary_lines", "table"]
