"""PNG plotting: each picture is a valid PNG of a sensible size, draws what it should in the
colours it should (the outcome colours of the attempts the score has, and not the others),
picks the view it should, and is written safely.

Colour checks look for pixels within a small distance of an outcome colour. Antialiased
black text makes every shade of grey, so "unanswered" (grey) is only checked to be present,
never absent; green, red and orange appear only where such an attempt is drawn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from conftest import CORPUS, ROOT, assert_kept_unless_forced  # noqa: E402
from handshake_score.errors import HandshakeScoreError  # noqa: E402
from handshake_score.plot import (AUTO_SEQUENCE_ATTEMPTS, MAX_SEQUENCE_ATTEMPTS, OUTCOME_COLOURS,  # noqa: E402
                                  format_duration, outcome_counts, plot_png)
from handshake_score.score import compose  # noqa: E402
from handshake_score.scorefile import load_score  # noqa: E402
from handshake_score.tracker import Outcome  # noqa: E402
from synthetic import synthetic_score  # noqa: E402

SAMPLE = ROOT / "scores" / "sample-loopback.score"
CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
TOLERANCE = 10      # per channel, 0-255
MIN_PIXELS = 40     # "present": at least this many pixels of the colour


# --- helpers ---------------------------------------------------------------------------------------------

def read_png(path) -> np.ndarray:
    """The picture as uint8 RGB (height x width x 3); fails unless it is a PNG."""
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(str(path), format="png")
    return np.rint(img[..., :3] * 255).astype(np.int16)


def pixels_of(img: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - rgb).max(axis=2) <= TOLERANCE).sum())


def distinct_colours(img: np.ndarray) -> int:
    flat = img.reshape(-1, 3).astype(np.int64)
    return len(np.unique(flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]))


def check_picture(path, score) -> np.ndarray:
    """Valid, sensibly sized, non-trivial, and in exactly the outcome colours the score has."""
    img = read_png(path)
    h, w, _ = img.shape
    assert 600 <= w <= 2000 and 300 <= h <= 3500, (w, h)
    assert distinct_colours(img) >= 20
    assert (img < 200).any(axis=2).mean() > 0.01  # not blank: over 1% of the picture is drawn
    counts = outcome_counts(score)
    for outcome, colour in OUTCOME_COLOURS.items():
        n = pixels_of(img, colour)
        if counts[outcome]:
            assert n >= MIN_PIXELS, f"{outcome} ({colour}) drawn in only {n} pixels"
        elif outcome != Outcome.UNANSWERED:
            assert n < MIN_PIXELS, f"{outcome} ({colour}) in {n} pixels, but the score has none"
    return img


# --- the pictures ----------------------------------------------------------------------------------------

def test_sample_is_a_sequence_diagram(tmp_path):
    score = load_score(SAMPLE)
    out = tmp_path / "sample.png"
    assert plot_png(score, out) == "sequence"
    check_picture(out, score)  # complete (green) and refused (red); no orange


@pytest.mark.skipif(not CAPTURES, reason="no corpus")
@pytest.mark.parametrize("name", CAPTURES)
def test_corpus_capture(tmp_path, name):
    score = compose([CORPUS / name]).score
    out = tmp_path / f"{name}.png"
    assert plot_png(score, out) == "sequence"  # every corpus capture is short
    if len(score.notes):
        check_picture(out, score)
    else:
        img = read_png(out)
        assert distinct_colours(img) >= 5


@pytest.mark.skipif(not CAPTURES, reason="no corpus")
def test_corpus_has_the_outcomes_checked():
    """The corpus pictures above include refused and unanswered attempts (else the colour checks are idle)."""
    outcomes = set()
    for name in ("tcp_refuseconnection.pcapng", "nowebaccess3.pcapng", "tfo-5c1fa7f9ae91.pcap", "bgp-bgpsec.pcap"):
        if (CORPUS / name).exists():
            outcomes |= {o for o, c in outcome_counts(compose([CORPUS / name]).score).items() if c}
    assert {Outcome.COMPLETE, Outcome.REFUSED, Outcome.UNANSWERED} <= outcomes


def test_100k_handshakes_density(tmp_path):
    score = synthetic_score(300_000)
    assert score.attempts() >= 100_000
    out = tmp_path / "big.png"
    t0 = time.perf_counter()
    assert plot_png(score, out) == "density"
    elapsed = time.perf_counter() - t0
    check_picture(out, score)  # all four outcomes
    assert elapsed < 20, f"{elapsed:.1f} s to plot 100,000 handshakes"


def test_retries_and_all_outcomes_in_a_sequence(tmp_path):
    score = synthetic_score(100, seed=6)  # retries of both kinds, all four outcomes
    assert score.attempts() <= AUTO_SEQUENCE_ATTEMPTS
    out = tmp_path / "seq.png"
    assert plot_png(score, out) == "sequence"
    check_picture(out, score)


def test_auto_picks_by_attempts(tmp_path):
    for n in (20, 110, 130, 400):
        score = synthetic_score(n)
        expect = "sequence" if score.attempts() <= AUTO_SEQUENCE_ATTEMPTS else "density"
        assert plot_png(score, tmp_path / f"{n}.png") == expect
    small = synthetic_score(20)
    assert plot_png(small, tmp_path / "forced.png", view="density") == "density"
    check_picture(tmp_path / "forced.png", small)


def test_empty_score_says_so(tmp_path):
    score = load_score(SAMPLE)
    empty = score.with_notes(np.zeros(len(score.notes), bool))
    out = tmp_path / "empty.png"
    assert plot_png(empty, out, title="nothing here") in ("sequence", "density")
    img = read_png(out)
    assert (img < 128).any(axis=2).sum() > 500  # the words are drawn


def test_title(tmp_path):
    score = load_score(SAMPLE)
    plot_png(score, tmp_path / "a.png")
    plot_png(score, tmp_path / "b.png", title="Lesson 3: a refused connection")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    with pytest.raises(HandshakeScoreError):
        plot_png(score, tmp_path / "c.png", title=3)


# --- errors and safety ------------------------------------------------------------------------------------

def test_bad_view(tmp_path):
    score = load_score(SAMPLE)
    with pytest.raises(HandshakeScoreError, match="unknown view"):
        plot_png(score, tmp_path / "x.png", view="pie")
    big = synthetic_score(3 * (MAX_SEQUENCE_ATTEMPTS + 10))
    with pytest.raises(HandshakeScoreError, match="density"):
        plot_png(big, tmp_path / "x.png", view="sequence")
    assert not list(tmp_path.iterdir())


def test_existing_file_needs_force(tmp_path):
    score = load_score(SAMPLE)
    out = tmp_path / "out.png"
    views = []
    assert_kept_unless_forced(lambda p, **kw: views.append(plot_png(score, p, **kw)), out, {"view": "pie"}, "unknown view")
    assert views == ["sequence"]
    read_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_directory_refused(tmp_path):
    with pytest.raises(HandshakeScoreError, match="directory"):
        plot_png(load_score(SAMPLE), tmp_path)


def test_nothing_half_written(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, f, **kw):
        f.write(b"\x89PNG half")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", broken)
    out = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        plot_png(load_score(SAMPLE), out)
    assert not list(tmp_path.iterdir())
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        plot_png(load_score(SAMPLE), out, force=True)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_matplotlib_imported_only_to_plot():
    code = ("import sys, handshake_score.cli, handshake_score.plot; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_format_duration():
    assert format_duration(850) == "850 ns"
    assert format_duration(12_218) == "12.2 µs"
    assert format_duration(3_410_000) == "3.41 ms"
    assert format_duration(1.2e9) == "1.20 s"


def test_hs_plot_command(tmp_path):
    """The command: a score file in, a PNG out; errors are one line; the README's picture is current
    (the same drawing, allowing for another matplotlib's antialiasing)."""
    root = ROOT
    hs = [sys.executable, "-m", "handshake_score", "plot"]
    out = tmp_path / "a.png"
    r = subprocess.run([*hs, root / "scores" / "sample-loopback.score", "-o", out], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, f"wrote {out} (sequence view of 5 handshakes)\n"), r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    made, shown = imread(out), imread(root / "docs" / "sample-loopback.png")
    assert made.shape == shown.shape and np.abs(made - shown).mean() < 0.01
    for args, needle in [(["-o", out], "already exists"), (["-o", tmp_path / "b.png", "--view", "x"], "unknown view")]:
        r = subprocess.run([*hs, root / "scores" / "sample-loopback.score", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not (tmp_path / "b.png").exists()
