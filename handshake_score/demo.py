"""``hs demo``: every step at once, on real captures, with nothing to install or wire.

It scores the tour shipped inside the package, ``handshake_score/tour/`` (nine
small public captures, see that folder's README: a refused connection, clean handshakes at 30 ms to
880 ms of latency, a SYN retried and never answered, IPv4 and IPv6, BGP peers
refusing), writes the score, MIDI, WAV and PNG into a new folder, and plays it
on the console ten times slower. The captures were made years apart, so
silences are shortened to :data:`MAX_GAP_S`; the whole tour takes 18 s.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import HandshakeScoreError

STRETCH = 10.0
MAX_GAP_S = 1.2
LONGEST_S = 20.0  # the console performance stops here, whatever the captures hold
NAME = "tour"


def tour_captures(files: ExitStack | None = None) -> list[Path]:
    """The tour's captures: package data, wherever ``hs`` is installed (a checkout, a wheel, pipx).

    Read through :mod:`importlib.resources`; ``files``, when given, keeps a path valid for as long
    as it is open even where the package lives in a zip (there each capture is copied out)."""
    tour = resources.files(__package__) / "tour"
    found = sorted((t for t in tour.iterdir() if ".pcap" in t.name), key=lambda t: t.name) if tour.is_dir() else []
    if not found:
        raise HandshakeScoreError("the demo's captures are missing from this installation of hs "
                                  "(handshake_score/tour): reinstall the package")
    if files is None:
        return [Path(os.fspath(t)) for t in found]
    return [files.enter_context(resources.as_file(t)) for t in found]


def new_folder(base: str = "demo") -> Path:
    """``demo``, or ``demo-2``, ``demo-3``... : the first that does not exist, so nothing is replaced."""
    for n in range(1, 1000):
        path = Path(base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise HandshakeScoreError(f"{path}: cannot make the folder: {e.strerror or e}") from None
    raise HandshakeScoreError(f"{base}: 999 demo folders exist already")


@dataclass
class Made:
    """What :func:`make` wrote."""

    folder: Path
    score: object
    summary: object
    files: dict[str, Path]
    seconds: float  # the performance's length at STRETCH with MAX_GAP_S


def make(folder: Path | None = None) -> Made:
    """Score the tour and write ``tour.score``, ``.mid``, ``.wav`` and ``.png`` into ``folder``
    (default: a new one, see :func:`new_folder`)."""
    from .midi import export_midi
    from .plot import plot_png
    from .render import render_wav
    from .score import compose
    from .scorefile import save_score
    from .timing import output_times_ns

    with ExitStack() as opened:
        captures = tour_captures(opened)
        score, summary = compose(captures)
    folder = new_folder() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    files = {kind: folder / f"{NAME}.{kind}" for kind in ("score", "mid", "wav", "png")}
    save_score(score, files["score"])
    export_midi(score, files["mid"], stretch=STRETCH, max_gap=MAX_GAP_S)
    render_wav(score, files["wav"], stretch=STRETCH, max_gap=MAX_GAP_S)
    plot_png(score, files["png"], title=f"hs demo: {len(captures)} real captures, one handshake tour")
    times = output_times_ns(score.notes["time_ns"], STRETCH, MAX_GAP_S)
    return Made(folder, score, summary, files, float(times.max()) / 1e9 if len(times) else 0.0)


def perform_on_console(made: Made, stream=None):
    """Play the tour on the console at STRETCH, for at most LONGEST_S."""
    from .play import ConsolePerformer, perform
    from .timing import output_times_ns

    score = made.score
    keep = output_times_ns(score.notes["time_ns"], STRETCH, MAX_GAP_S) <= LONGEST_S * 1e9
    if not keep.all():
        score = score.with_notes(np.flatnonzero(keep))
    return perform(score, [ConsolePerformer(stream if stream is not None else sys.stdout)],
                   stretch=STRETCH, max_gap=MAX_GAP_S)


def next_steps(made: Made) -> str:
    s = os.fspath(made.files["score"])
    return "\n".join([
        "next:",
        f"  hs play {s} --stretch 10 --max-gap {MAX_GAP_S:g} --to solenoids,console --dry-run   # rehearse the solenoids",
        f"  hs plot {s} -o mine.png --view density                                  # another view",
        "  hs capture --duration 30 && hs score captures/<that file>                 # your own traffic",
    ])
