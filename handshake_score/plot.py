"""Plotting: a score as a PNG picture, for a lesson or a report.

Two views (``docs/plot.md`` says more):

- **sequence** (short scores: up to :data:`AUTO_SEQUENCE_ATTEMPTS` attempts that fit
  in :data:`MAX_SEQUENCE_ROWS` rows): the handshakes as a sequence diagram, time
  going down, clients on the left and servers on the right, one arrow per note in
  its direction, coloured by the attempt's outcome, retries dashed, resets marked
  with a cross.
- **density** (long scores): notes per kind over time (about :data:`BINS` bins),
  handshakes per outcome over time, and histograms of the two delays.
- **rhythm** (asked for by name): a raster of the callers that keep a schedule
  (:mod:`.rhythm`), one row each, most regular at the top, each call a tick on a
  shared time axis, its period written beside it, the rest of the traffic faint
  behind (attempts per time bin, as a grey band).

Why these choices:

- Time in the sequence view is *ordinal*: each note has its own row, in time
  order, and the real time since the score's start is the row's label. On
  loopback the three notes of a handshake are microseconds apart while attempts
  are milliseconds or seconds apart: no linear axis shows both. Where the gap
  between two rows is much longer than usual, a dotted break line says how long
  it was; each answer's arrow states the real delay (``SYN->SYN-ACK 12.2 us``).
- The sequence view costs a few text artists per row (that is where its time
  goes: matplotlib lays out and rasterises each label), so it has a hard cap:
  at most :data:`MAX_SEQUENCE_ROWS` rows, whatever the score. "auto" picks it only
  for a score that fits; asked for on a bigger one, it draws the first rows, says
  so in the picture, and warns (one line on stderr).
- The density view is vectorised: a handful of artists (stairs, one stacked
  fill per outcome, two histograms) from bincounts, whatever the number of notes,
  so 1,000,000 notes take about as long as 100.
- matplotlib is imported inside :func:`plot_png` (it takes a while to import;
  ``hs score`` does not need it), drawn on a ``Figure`` with the Agg canvas (no
  pyplot state, no display), and written through :func:`~.files.atomic_write`.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np

from .errors import HandshakeScoreError
from .files import atomic_write, check_writable
from .score import NO_DELAY, Score, bracketed
from .tracker import Kind, Outcome

VIEWS = ("auto", "sequence", "density", "rhythm")
MAX_RHYTHM_ROWS = 40            # the rhythm view's rows: the most regular callers
AUTO_SEQUENCE_ATTEMPTS = 40     # "auto": the sequence view up to this many attempts (if they fit in its rows)
MAX_SEQUENCE_ROWS = 160         # the sequence view draws at most this many rows (a row a note, 0.9 a pause)
BINS = 200                      # the density view's time bins
DELAY_BINS = 60
DPI = 100

# colours by outcome (what a teacher names them: green went through, red refused, ...)
OUTCOME_COLOURS = {
    Outcome.COMPLETE: "#1a9e3a",    # green
    Outcome.REFUSED: "#d62728",     # red
    Outcome.UNANSWERED: "#7f7f7f",  # grey
    Outcome.INCOMPLETE: "#ff8c00",  # orange
}
# colours by kind (the density view's top panel): blues for the client, purples for the server
KIND_COLOURS = {
    Kind.SYN: "#1f5fb4", Kind.SYN_RETRY: "#6fa8dc", Kind.SYN_ACK: "#7b3fa0",
    Kind.SYN_ACK_RETRY: "#c39bd3", Kind.ACK: "#0f9fb0", Kind.RST: "#8b1a1a",
}
KIND_LABELS = {
    Kind.SYN: "SYN", Kind.SYN_RETRY: "SYN (retry)", Kind.SYN_ACK: "SYN-ACK",
    Kind.SYN_ACK_RETRY: "SYN-ACK (retry)", Kind.ACK: "ACK", Kind.RST: "RST",
}
_SYN, _SYN_RETRY, _SYN_ACK, _SYN_ACK_RETRY, _ACK, _RST = (Kind.ALL.index(k) for k in (
    Kind.SYN, Kind.SYN_RETRY, Kind.SYN_ACK, Kind.SYN_ACK_RETRY, Kind.ACK, Kind.RST))
_REFUSED = Outcome.ALL.index(Outcome.REFUSED)
_UNANSWERED = Outcome.ALL.index(Outcome.UNANSWERED)


# --- formatting -----------------------------------------------------------------------------------------

def format_duration(ns: int | float) -> str:
    """A duration as people read it: ``850 ns``, ``12.2 µs``, ``3.41 ms``, ``1.20 s``."""
    ns = float(ns)
    if abs(ns) < 1e3:
        return f"{ns:.0f} ns"
    if abs(ns) < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if abs(ns) < 1e9:
        return f"{ns / 1e6:.2f} ms"
    if abs(ns) < 600e9:
        return f"{ns / 1e9:.2f} s"
    return f"{ns / 60e9:.1f} min"


def _time_unit(span_ns: float) -> tuple[str, float]:
    """The unit for times since the start, and ns per unit."""
    if span_ns < 2e9:
        return "ms", 1e6
    if span_ns < 600e9:
        return "s", 1e9
    return "min", 60e9


def _endpoint(score: Score, host: int, port: int) -> str:
    return f"{bracketed(score.hosts[host])}:{port}"


def _attempt_outcomes(score: Score) -> tuple[np.ndarray, np.ndarray]:
    """Each attempt's first note (index into its notes) and outcome code."""
    first = score.first_notes()
    return first, score.notes["outcome"][first].astype(np.intp)


def outcome_counts(score: Score) -> dict[str, int]:
    """Attempts per outcome."""
    if not len(score.notes):
        return {o: 0 for o in Outcome.ALL}
    _, outcome = _attempt_outcomes(score)
    counts = np.bincount(outcome, minlength=len(Outcome.ALL))
    return {o: int(counts[i]) for i, o in enumerate(Outcome.ALL)}


# --- the entry point ------------------------------------------------------------------------------------

def sequence_rows(score: Score) -> float:
    """How many rows the sequence view of the whole score takes (a row a note, and
    :data:`BREAK_ROWS` more for each long pause); numpy only, cheap for any score."""
    if not len(score.notes):
        return 0.0
    return float(_rows(score.notes["time_ns"])[0][-1]) + 1


def choose_view(score: Score, view: str = "auto") -> str:
    """The view ``view`` stands for with this score: "sequence", "density" or "rhythm".

    "auto" is the sequence view when the score has at most :data:`AUTO_SEQUENCE_ATTEMPTS`
    attempts and they fit in :data:`MAX_SEQUENCE_ROWS` rows (a score of one SYN sent
    3,000 times has one attempt, and 3,000 rows), else the density view.
    """
    if view not in VIEWS:
        raise HandshakeScoreError(f"unknown view {view!r} (the views are {', '.join(VIEWS)})")
    if view != "auto":
        return view
    n = len(score.notes)
    fits = n <= MAX_SEQUENCE_ROWS and (n == 0 or score.attempts() <= AUTO_SEQUENCE_ATTEMPTS)
    return "sequence" if fits and sequence_rows(score) <= MAX_SEQUENCE_ROWS else "density"


def _stderr_warning(line: str) -> None:
    print(f"hs: warning: {line}", file=sys.stderr, flush=True)


def plot_png(score: Score, path: str | os.PathLike, *, view: str = "auto", force: bool = False,
             title: str | None = None, warn: Callable[[str], None] | None = _stderr_warning) -> str:
    """Draw ``score`` as a PNG at ``path``; returns the view drawn, "sequence", "density" or "rhythm".

    ``view`` "rhythm" draws the callers that keep a schedule; "auto" picks the sequence
    diagram for a score of at most
    :data:`AUTO_SEQUENCE_ATTEMPTS` attempts in at most :data:`MAX_SEQUENCE_ROWS` rows,
    else the density view. "sequence" on a score longer than that draws its first
    :data:`MAX_SEQUENCE_ROWS` rows, says so in the picture and calls ``warn`` with one
    line (default: printed on stderr; ``None``: silent). ``title`` replaces the
    default title (the score's sources). An existing file is replaced only with
    ``force``; the file appears only once complete. A score without notes gives a
    picture saying "no handshakes".
    """
    if title is not None and not isinstance(title, str):
        raise HandshakeScoreError(f"the title must be text, not {type(title).__name__}")
    if warn is not None and not callable(warn):
        raise HandshakeScoreError(f"warn must be a function of one line of text, not {type(warn).__name__}")
    chosen = choose_view(score, view)
    check_writable(path, force)  # before the work, not after it
    if len(score.notes) and int(score.notes["kind"].max()) >= len(Kind.ALL):
        raise HandshakeScoreError(f"the score has a note of unknown kind {int(score.notes['kind'].max())}")
    if len(score.notes) and int(score.notes["outcome"].max()) >= len(Outcome.ALL):
        raise HandshakeScoreError(f"the score has a note of unknown outcome {int(score.notes['outcome'].max())}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise HandshakeScoreError("hs plot needs matplotlib: pip install matplotlib") from None

    if title is None:
        names = [s.name for s in score.sources]
        title = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") or "score"
    if not len(score.notes):
        fig = Figure(figsize=(8, 4.5), dpi=DPI)
        fig.text(0.5, 0.6, title, ha="center", va="center", fontsize=14)
        fig.text(0.5, 0.4, "no handshakes", ha="center", va="center", fontsize=22, color="#555555")
    elif chosen == "rhythm":
        fig = _rhythm(Figure, score, title)
    elif chosen == "sequence":
        fig = _sequence(Figure, score, title, warn)
    else:
        fig = _density(Figure, score, title)
    FigureCanvasAgg(fig)
    with atomic_write(path, force) as f:
        fig.savefig(f, format="png", dpi=DPI)
    return chosen


# --- the sequence view ----------------------------------------------------------------------------------

X_TIME, X_CLIENT, X_SERVER, X_MAX = 0.0, 3.2, 7.4, 10.6  # data x of the lanes
ROW_IN = 0.30        # inches per row
LANE = "#2b3a55"     # the lifelines: dark slate, no outcome's colour
BREAK_ROWS = 0.9     # extra rows a break takes


def _server_sends(kind: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Whether each note goes server -> client: SYN-ACKs, and a reset that refused the attempt
    (any other reset is drawn from the client: a capture does not say who sent it)."""
    return (kind == _SYN_ACK) | (kind == _SYN_ACK_RETRY) | ((kind == _RST) & (outcome == _REFUSED))


def _rows(time_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each note's row (y, going down), and the breaks where the gap is much longer than
    usual (over 4 times the median gap and over 100 µs): their y (between two rows) and gap
    in ns. numpy only: cheap for any score."""
    gaps = np.diff(time_ns)
    y = np.zeros(len(time_ns))
    if not len(gaps):
        return y, np.zeros(0), np.zeros(0, np.int64)
    threshold = max(4 * float(np.median(gaps)), 100e3)
    long = gaps > threshold
    y[1:] = np.cumsum(np.where(long, 1 + BREAK_ROWS, 1.0))
    at = np.flatnonzero(long)
    return y, y[at + 1] - (1 + BREAK_ROWS) / 2, gaps[at]


def _sequence(Figure, score: Score, title: str, warn):
    from matplotlib.lines import Line2D

    notes = score.notes
    n = len(notes)
    t = notes["time_ns"]
    y, break_y, break_gap = _rows(t)
    # the hard cap: the rows that fit, the first ones (a score too long for this view is cut, and says so)
    shown = int(np.searchsorted(y, MAX_SEQUENCE_ROWS - 1, "right"))
    cut = shown < n
    kind = notes["kind"][:shown].astype(np.intp)
    outcome = notes["outcome"][:shown].astype(np.intp)
    attempt = notes["attempt"][:shown]
    height_rows = float(y[shown - 1]) + 1 + (1 + BREAK_ROWS if cut else 0)
    row_in = max(0.19, min(ROW_IN, 26 / (height_rows + 2)))  # long diagrams: rows shrink (the cap bounds them)
    fontsize = 10 if row_in >= 0.25 else 8
    fig = Figure(figsize=(12, 2.4 + row_in * (height_rows + 1)), dpi=DPI)
    top = 1 - 1.25 / fig.get_figheight()
    bottom = 0.75 / fig.get_figheight()
    ax = fig.add_axes((0.01, bottom, 0.98, top - bottom))
    ax.set_xlim(X_TIME - 0.1, X_MAX)
    ax.set_ylim(height_rows - 0.3, -1.4)  # time goes down
    ax.axis("off")

    unit, per = _time_unit(float(t[shown - 1]))
    # column heads and lanes
    ax.text(X_TIME, -1.0, f"time since start ({unit})", fontsize=fontsize, fontweight="bold", va="center")
    ax.text(X_CLIENT, -1.0, "client", ha="center", va="center", fontsize=fontsize + 2, fontweight="bold")
    ax.text(X_SERVER, -1.0, "server", ha="center", va="center", fontsize=fontsize + 2, fontweight="bold")
    for x in (X_CLIENT, X_SERVER):
        ax.plot([x, x], [-0.6, height_rows - 0.4], color=LANE, lw=2.5, solid_capstyle="butt")

    def across(yb: float, text: str, strong: bool = False) -> None:  # a dotted line across, with words on it
        ax.plot([X_TIME, X_MAX - 0.1], [yb, yb], color="#aaaaaa", lw=1, ls=":")
        ax.text((X_CLIENT + X_SERVER) / 2, yb, text, ha="center", va="center",
                fontsize=fontsize - (0 if strong else 1), color="#222222" if strong else "#666666", style="italic",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))

    counts = outcome_counts(score)
    attempts = sum(counts.values())
    drawn_attempts = np.unique(attempt)
    for yb, gap in zip(break_y.tolist(), break_gap.tolist()):
        if yb > y[shown - 1]:
            break
        across(yb, f"{format_duration(gap)} later")
    if cut:
        left_attempts = attempts - len(drawn_attempts)  # attempts begin in order: those not drawn come later
        across(float(y[shown - 1]) + (1 + BREAK_ROWS) / 2,
               f"not drawn: {n - shown:,} more notes, to {format_duration(t[-1])}"
               + (f", {left_attempts:,} more handshakes" if left_attempts else "")
               + f" (this view has room for {MAX_SEQUENCE_ROWS} rows; the density view shows every note)", strong=True)

    back = _server_sends(kind, outcome)
    # an attempt's last note, to say "no answer" there: the last drawn, unless the attempt goes on past the cut
    goes_on = set(drawn_attempts[np.isin(drawn_attempts, notes["attempt"][shown:])].tolist()) if cut else set()
    last_of_attempt = {a: i for i, a in enumerate(attempt.tolist())}
    previous: dict[int, int] = {}  # each attempt's note drawn last so far
    decimals = 3 if unit == "ms" else 4
    for i in range(shown):
        row = notes[i]
        k, o, a, yi = Kind.ALL[kind[i]], Outcome.ALL[outcome[i]], int(row["attempt"]), float(y[i])
        colour = OUTCOME_COLOURS[o]
        x0, x1 = (X_SERVER, X_CLIENT) if back[i] else (X_CLIENT, X_SERVER)
        dashed = kind[i] in (_SYN_RETRY, _SYN_ACK_RETRY)
        ax.annotate("", xy=(x1, yi), xytext=(x0, yi),
                    arrowprops=dict(arrowstyle="-|>,head_length=0.6,head_width=0.3", color=colour, lw=2.2,
                                    linestyle=(0, (4, 2.5)) if dashed else "-", shrinkA=0, shrinkB=1))
        if kind[i] == _RST:
            ax.plot([x1], [yi], marker="X", markersize=11, color=colour, markeredgecolor="white", zorder=5)
        # the label: what it is, and for an answer the real delay
        label = KIND_LABELS[k]
        if kind[i] == _SYN_ACK and row["syn_to_syn_ack_ns"] != NO_DELAY:
            label += f"  ({format_duration(row['syn_to_syn_ack_ns'])} after SYN)"
        elif kind[i] == _ACK and row["syn_ack_to_ack_ns"] != NO_DELAY:
            label += f"  ({format_duration(row['syn_ack_to_ack_ns'])} after SYN-ACK)"
        elif a in previous:
            label += f"  (+{format_duration(t[i] - t[previous[a]])})"
        # on the arrow, on white: it never runs into the next row
        ax.text((X_CLIENT + X_SERVER) / 2, yi, label, ha="center", va="center", fontsize=fontsize,
                color=colour, fontweight="bold" if not dashed else "normal", zorder=4,
                bbox=dict(boxstyle="square,pad=0.12", fc="white", ec="none"))
        # time, and who: the endpoints on the attempt's first note, its number on every note
        ax.text(X_TIME, yi, f"{t[i] / per:.{decimals}f}", va="center", fontsize=fontsize - 1, family="monospace",
                color="#333333")
        unanswered = last_of_attempt[a] == i and a not in goes_on and outcome[i] == _UNANSWERED
        if a not in previous:
            ax.text(X_CLIENT - 0.12, yi, f"#{a}  {_endpoint(score, int(row['client']), int(row['client_port']))}",
                    ha="right", va="center", fontsize=fontsize - 1, color=colour)
            server = _endpoint(score, int(row["server"]), int(row["server_port"]))
            ax.text(X_SERVER + 0.12, yi, server + ("  no answer" if unanswered else ""),
                    ha="left", va="center", fontsize=fontsize - 1, color=colour)
        else:
            ax.text(X_CLIENT - 0.12, yi, f"#{a}", ha="right", va="center", fontsize=fontsize - 1, color=colour)
            if unanswered:
                ax.text(X_SERVER + 0.12, yi, "no answer", ha="left", va="center", fontsize=fontsize - 1,
                        color=colour, style="italic")
        previous[a] = i

    if cut and warn is not None:
        warn(f"the sequence view has room for {MAX_SEQUENCE_ROWS} rows: drew the first {shown:,} of {n:,} notes "
             f"({format_duration(t[shown - 1])} of {format_duration(t[-1])}, {len(drawn_attempts):,} of "
             f"{attempts:,} handshakes); --view density shows them all")

    summary = "   ".join(f"{o} {c:,}" for o, c in counts.items() if c)
    drawn = f"   (the first {shown:,} of {n:,} notes)" if cut else ""
    fig.suptitle(f"{title}\n{attempts:,} handshake{'s' * (attempts != 1)}: {summary}{drawn}",
                 fontsize=13, y=1 - 0.15 / fig.get_figheight(), va="top")
    # the outcomes drawn (a colour in the legend is a colour in the picture)
    drawn_outcomes = {Outcome.ALL[o] for o in np.unique(outcome).tolist()}
    handles = [Line2D([], [], color=c, lw=3, label=o) for o, c in OUTCOME_COLOURS.items() if o in drawn_outcomes]
    if np.isin(kind, (_SYN_RETRY, _SYN_ACK_RETRY)).any():
        handles.append(Line2D([], [], color=LANE, lw=2, ls=(0, (4, 2.5)), label="retry (dashed)"))
    if (kind == _RST).any():
        handles.append(Line2D([], [], color=LANE, lw=0, marker="X", markersize=10, label="reset (RST)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.05 / fig.get_figheight()))
    return fig


# --- the density view -----------------------------------------------------------------------------------

def _density(Figure, score: Score, title: str):
    notes = score.notes
    t = notes["time_ns"].astype(np.float64)
    kind = notes["kind"].astype(np.intp)
    span = max(float(t[-1]), 1.0)
    unit, per = _time_unit(span)
    edges_ns = np.linspace(0.0, span * (1 + 1e-9), BINS + 1)
    bin_s = (edges_ns[1] - edges_ns[0]) / 1e9
    edges = edges_ns / per

    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    count_format = FuncFormatter(lambda v, _: f"{v:,.0f}")

    fig = Figure(figsize=(12, 10.5), dpi=DPI)
    # the time panels leave room on the right for their legends; the histograms use the full width
    grid = fig.add_gridspec(2, 1, hspace=0.45, left=0.07, right=0.80, top=0.86, bottom=0.40)
    low = fig.add_gridspec(1, 2, wspace=0.18, left=0.07, right=0.98, top=0.31, bottom=0.06)

    # notes per kind over time: one stairs line per kind, log y (retries and resets are rare)
    ax = fig.add_subplot(grid[0])
    which = np.minimum(np.searchsorted(edges_ns, t, "right") - 1, BINS - 1)
    per_kind = np.bincount(kind * BINS + which, minlength=len(Kind.ALL) * BINS).reshape(len(Kind.ALL), BINS)
    for i, k in enumerate(Kind.ALL):
        if per_kind[i].any():  # baseline None: no edge down to 0 (off a log axis) at either end
            ax.stairs(per_kind[i], edges, baseline=None, color=KIND_COLOURS[k], lw=1.6,
                      ls="--" if k in (Kind.SYN_RETRY, Kind.SYN_ACK_RETRY) else "-",
                      label=f"{KIND_LABELS[k]} ({int(per_kind[i].sum()):,})")
    ax.set_yscale("log", nonpositive="clip")
    ax.set_ylim(0.8, None)
    ax.yaxis.set_major_formatter(count_format)
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(edges[0], edges[-1])
    ax.set_title(f"notes per kind over time (per {format_duration(bin_s * 1e9)})", fontsize=12, loc="left")
    ax.set_ylabel("notes (log scale)")
    ax.set_xlabel(f"time since start ({unit})")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="kind")
    ax.grid(True, axis="y", alpha=0.3)

    # handshakes per outcome over time (by each attempt's first note), stacked
    ax = fig.add_subplot(grid[1])
    first, outcome = _attempt_outcomes(score)
    per_outcome = np.bincount(outcome * BINS + which[first],
                              minlength=len(Outcome.ALL) * BINS).reshape(len(Outcome.ALL), BINS)
    base = np.zeros(BINS)
    for i, o in enumerate(Outcome.ALL):
        if per_outcome[i].any():
            ax.stairs(base + per_outcome[i], edges, baseline=base.copy(), fill=True, color=OUTCOME_COLOURS[o],
                      label=f"{o} ({int(per_outcome[i].sum()):,})")
            base = base + per_outcome[i]
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(1.0, float(base.max())) * 1.1)
    ax.set_title(f"handshakes started per {format_duration(bin_s * 1e9)}, by outcome (stacked)", fontsize=12,
                 loc="left")
    ax.set_ylabel("handshakes")
    ax.set_xlabel(f"time since start ({unit})")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="outcome")
    ax.grid(True, axis="y", alpha=0.3)

    # the two delays, one value per attempt, log-spaced bins in ms
    for col, (field, name, colour) in enumerate((("syn_to_syn_ack_ns", "SYN → SYN-ACK", KIND_COLOURS[Kind.SYN_ACK]),
                                                 ("syn_ack_to_ack_ns", "SYN-ACK → ACK", KIND_COLOURS[Kind.ACK]))):
        ax = fig.add_subplot(low[0, col])
        d = notes[field][first]
        d = d[d != NO_DELAY]
        ax.set_title(f"{name} delay ({len(d):,} handshakes)", fontsize=12, loc="left")
        ax.set_xlabel("delay (log scale)")
        ax.set_ylabel("handshakes" if col == 0 else "")
        if not len(d):
            ax.text(0.5, 0.5, "no such delay in this score", ha="center", va="center", transform=ax.transAxes,
                    color="#666666")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ms = np.maximum(d, 1).astype(np.float64) / 1e6  # a delay of 0 ns (equal timestamps) counts as 1 ns
        lo, hi = float(ms.min()), float(ms.max())
        if hi <= lo * 1.01:
            lo, hi = lo / 1.5, hi * 1.5
        bins = np.geomspace(lo, hi, DELAY_BINS + 1)
        counts, _ = np.histogram(ms, bins)
        ax.stairs(counts, bins, fill=True, color=colour, alpha=0.85)
        ax.set_xscale("log")
        # 1-2-5 ticks on a narrow range (else one tick, or matplotlib's 3x10^-2 labels), decades on a wide one
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if hi / lo < 100 else (1.0,)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_formatter(count_format)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_duration(v * 1e6).replace(".00", "")
                                                   .replace(".0 ", " ")))
        median = float(np.median(ms))
        ax.axvline(median, color="#222222", lw=1.2, ls="--")
        ax.text(median, 0.97, f" median {format_duration(median * 1e6)}", transform=ax.get_xaxis_transform(),
                ha="left", va="top", fontsize=9, color="#222222",
                bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.8))
        ax.grid(True, axis="y", alpha=0.3)

    counts = dict(zip(Outcome.ALL, per_outcome.sum(axis=1).tolist()))
    total = sum(counts.values())
    summary = "   ".join(f"{o} {c:,} ({100 * c / total:.1f}%)" for o, c in counts.items() if c)
    fig.suptitle(f"{title}\n{total:,} handshake{'s' * (total != 1)}, {len(notes):,} notes over "
                 f"{format_duration(span)}\n{summary}",
                 fontsize=13)
    return fig


# --- the rhythm view ------------------------------------------------------------------------------------

RHYTHM_COLOURS = ["#1f5fb4", "#d62728", "#1a9e3a", "#7b3fa0", "#ff8c00", "#0f9fb0", "#8b1a1a", "#b8860b"]


def _rhythm(Figure, score: Score, title: str):
    from .rhythm import calls_of, find_rhythm, period_text

    found = find_rhythm(score)
    callers = found.callers[:MAX_RHYTHM_ROWS]
    calls = calls_of(score)
    first = score.first_notes()
    caller_of = found.caller_of[first] if len(first) else np.zeros(0, np.int32)
    times = calls.time_ns.astype(np.float64)
    span = max(float(times.max()) if len(times) else 1.0, 1.0)
    unit, per = _time_unit(span)
    rows = max(len(callers), 1)
    fig = Figure(figsize=(12, 1.9 + 0.42 * rows), dpi=DPI)
    bottom = 0.7 / fig.get_figheight()
    top = 1 - 0.85 / fig.get_figheight()
    ax = fig.add_axes((0.25, bottom, 0.5, top - bottom))
    ax.set_xlim(-0.01 * span / per, 1.01 * span / per)
    ax.set_ylim(rows - 0.5, -0.5)
    # the rest of the traffic, faint behind: attempts per time bin, as a grey band over every row
    rest = times[caller_of < 0]
    if len(rest):
        edges = np.linspace(0, span * (1 + 1e-9), BINS + 1)
        counts = np.bincount(np.minimum((rest / edges[-1] * BINS).astype(np.int64), BINS - 1), minlength=BINS)
        shade = counts / counts.max()
        ax.imshow(shade[None, :], aspect="auto", cmap="Greys", vmin=0, vmax=4, alpha=0.9,
                  extent=(0, edges[-1] / per, rows - 0.5, -0.5), interpolation="nearest", zorder=0)
    for i, c in enumerate(callers):
        mine = times[caller_of == i] / per
        colour = RHYTHM_COLOURS[i % len(RHYTHM_COLOURS)]
        ax.vlines(mine, i - 0.34, i + 0.34, colors=colour, lw=1.6, zorder=2)
        ax.text(-0.01, i, f"{c.client} -> {c.target}", transform=ax.get_yaxis_transform(), ha="right", va="center",
                fontsize=9, family="monospace")
        ax.text(1.01, i, f"every {period_text(c.period_s)}  ({c.calls:,} calls, score {c.score:.2f})",
                transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=9, color=colour)
    if not callers:
        ax.text(0.5, 0, "no caller on a schedule", transform=ax.get_yaxis_transform(), ha="center", va="center",
                fontsize=16, color="#555555")
    ax.set_yticks([])
    ax.set_xlabel(f"time since start ({unit}); grey behind: the other {len(rest):,} attempts")
    ax.grid(True, axis="x", alpha=0.3)
    more = len(found.callers) - len(callers)
    n = len(found.callers)
    fig.suptitle(f"{title}\n{n:,} caller{'s' * (n != 1)} on a schedule among {found.attempts:,} attempts"
                 + (f" (the {len(callers)} most regular drawn)" if more else ""),
                 fontsize=13, y=1 - 0.12 / fig.get_figheight(), va="top")
    return fig
