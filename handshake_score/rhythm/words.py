"""The rhythm in words: ``hs rhythm``'s table and JSON (:func:`report`, with its input read
by :func:`read_rhythm_input`), ``hs score``'s summary lines (:func:`summarize`,
:class:`Found`), the line ``hs play --live`` prints when it notices a caller
(:func:`live_line`), and callers pseudonymised as ``--anonymize`` names them."""

from __future__ import annotations

from dataclasses import dataclass

from ..score import Score
from .call_log import CallLog
from .callers import MIN_CALLS, Caller, Calls, Rhythm, _caller, _periodic, period_text


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


def anonymized(callers: list[Caller], key: bytes) -> list[Caller]:
    """``callers`` with their addresses replaced by the keyed pseudonyms ``hs score --anonymize``
    gives them under the same key."""
    from dataclasses import replace

    from ..anonymize import pseudonyms

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


def read_rhythm_input(paths) -> Score | Calls:
    """``hs rhythm``'s input, for :func:`~.callers.find_rhythm`: the calls of one score file
    (read by :func:`~..scorefile.load_attempts`, a third of the work of reading the score; the
    whole score if that reading gives up, so that a fault is named by its line), or captures
    scored in memory."""
    import os
    from pathlib import Path

    from ..errors import HandshakeScoreError
    from ..scorefile import MAGIC, load_attempts, load_score

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
        attempts = load_attempts(paths[0])  # the columns the analysis reads, checked (see its docstring)
        return load_score(paths[0]) if attempts is None else Calls(*attempts)
    from ..score import compose
    from ..sources.ring import expand

    return compose(expand([Path(p) for p in paths])).score


def report(found: Rhythm, min_calls: int = MIN_CALLS, *, json_out: bool = False, key: str | bytes | None = None,
           anonymize: bool = False) -> str:
    """What ``hs rhythm`` prints: the table, or with ``json_out`` one JSON object."""
    import json

    callers = found.callers
    if anonymize:
        from ..anonymize import new_key

        callers = anonymized(callers, new_key(key))
    if json_out:
        return json.dumps(Found(callers, found.attempts).as_dict())
    return table(callers, found.attempts, min_calls)
