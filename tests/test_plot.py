"""PNG plotting: each picture is a valid PNG of a sensible size, draws what it should in the
colours it should (the outcome colours of the attempts the score has, and not the others),
picks the view it should, and is written safely. Any score draws in bounded time and memory:
the pathological ones (one SYN sent 3,001 times; 20,015 notes in 25 attempts) from crafted
captures, a 1,000,000-note score in a child process whose peak RSS is measured.

Colour checks look for pixels within a small distance of an outcome colour. Antialiased
black text makes every shade of grey, so "unanswered" (grey) is only checked to be present,
never absent; green, red and orange appear only where such an attempt is drawn.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from conftest import CORPUS, ROOT, assert_kept_unless_forced  # noqa: E402
from craft import ACK, SYN, eth, pcap, tcp_ip, write  # noqa: E402
from handshake_score.errors import HandshakeScoreError  # noqa: E402
from handshake_score.plot import (AUTO_SEQUENCE_ATTEMPTS, MAX_SEQUENCE_ROWS, OUTCOME_COLOURS,  # noqa: E402
                                  format_duration, outcome_counts, plot_png, sequence_rows)
from handshake_score.score import KIND_CODE, NO_DELAY, NOTE, OUTCOME_CODE, Score, compose  # noqa: E402
from handshake_score.scorefile import load_score, save_score  # noqa: E402
from handshake_score.tracker import Outcome  # noqa: E402
from synthetic import synthetic_score  # noqa: E402

SAMPLE = ROOT / "scores" / "sample-loopback.score"
CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
TOLERANCE = 10      # per channel, 0-255
MIN_PIXELS = 40     # "present": at least this many pixels of the colour
SECONDS = 10        # "bounded time" for a pathological score (it takes under 1 s; the old plot took 14-250 s)
MILLION_RSS_MB = 500  # peak RSS of a process that builds a 1,000,000-note score and plots it (measured: ~200 MB)


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


def png_chunks_ok(path) -> tuple[int, int]:
    """A PNG checked without matplotlib or PIL (which wrote it): signature, every chunk's CRC,
    IHDR first and IEND last, and the IDAT stream inflating to exactly the rows IHDR promises.
    Returns (width, height)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(data):
        length, name = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(name + body) == crc, f"bad CRC in {name!r}"
        chunks.append((name, body))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for name, body in chunks if name == b"IDAT"))
    assert len(raw) == height * (1 + width * channels)
    return width, height


def craft_storm(path, *, complete: int, storms: int, syns: int) -> Path:
    """A capture (tests/craft.py) of ``complete`` handshakes 5 s apart and, interleaved with them,
    ``storms`` clients each sending one SYN ``syns`` times 30 ms apart, never answered (within
    the tracker's 135 s: each storm is one attempt)."""
    t0 = 1_700_000_000 * 10**9
    c, s = "10.0.0.1", "10.0.0.2"
    records = []
    for j in range(storms):
        syn = eth(tcp_ip(c, s, 50000 + j, 80, SYN, 1000 * j))  # the same packet again and again: retries
        records += [(t0 + j * 7_000_000 + i * 30_000_000, syn) for i in range(syns)]
    for j in range(complete):
        at, port, isn = t0 + 2_500_000_000 + j * 5 * 10**9, 40000 + j, 77_000 * j
        records += [(at, eth(tcp_ip(c, s, port, 80, SYN, isn))),
                    (at + 1_000_000, eth(tcp_ip(s, c, 80, port, SYN | ACK, 900, isn + 1))),
                    (at + 1_100_000, eth(tcp_ip(c, s, port, 80, ACK, isn + 1, 901)))]
    records.sort(key=lambda r: r[0])
    return write(path, pcap(records))


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


def test_auto_picks_by_attempts_and_rows(tmp_path):
    for n in (20, 110, 130, 400):
        score = synthetic_score(n)
        fits = score.attempts() <= AUTO_SEQUENCE_ATTEMPTS and sequence_rows(score) <= MAX_SEQUENCE_ROWS
        assert plot_png(score, tmp_path / f"{n}.png") == ("sequence" if fits else "density")
    # 30 attempts of a SYN sent 5 times: 150 notes would fit, but with a pause after every third
    # note (1 s, against 10 µs) they take 150 + 49 x 0.9 rows
    notes = np.zeros(150, NOTE)
    notes["time_ns"] = np.cumsum(np.tile([10_000, 10_000, 10**9], 50))
    notes["attempt"] = np.arange(150) // 5 + 1
    notes["kind"] = np.where(np.arange(150) % 5, KIND_CODE["syn-retry"], KIND_CODE["syn"])
    notes["outcome"] = OUTCOME_CODE["unanswered"]
    notes["client"], notes["server"], notes["server_port"] = 0, 1, 80
    notes["client_port"] = 40000 + notes["attempt"]
    notes["syn_to_syn_ack_ns"] = notes["syn_ack_to_ack_ns"] = NO_DELAY
    paused = Score(notes, ["10.0.0.1", "10.0.0.2"], [], 0)
    assert paused.attempts() <= AUTO_SEQUENCE_ATTEMPTS and len(paused.notes) <= MAX_SEQUENCE_ROWS
    assert sequence_rows(paused) > MAX_SEQUENCE_ROWS
    assert plot_png(paused, tmp_path / "paused.png") == "density"
    assert plot_png(paused.with_notes(slice(0, 100)), tmp_path / "fewer.png") == "sequence"  # 100 + 33 x 0.9 rows
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


# --- pathological scores: bounded time and memory ---------------------------------------------------------

def test_one_syn_sent_3001_times(tmp_path):
    """One attempt, 3,001 notes (the old plot drew a 57,000-pixel sequence diagram: 14-41 s, 463 MB):
    auto picks the density view; the sequence view, asked for, draws its first rows and says so."""
    score = compose([craft_storm(tmp_path / "storm.pcap", complete=0, storms=1, syns=3001)]).score
    assert (len(score.notes), score.attempts()) == (3001, 1)
    start = time.perf_counter()
    assert plot_png(score, tmp_path / "auto.png") == "density"
    assert time.perf_counter() - start < SECONDS
    check_picture(tmp_path / "auto.png", score)  # grey only: one unanswered attempt

    said = []
    start = time.perf_counter()
    assert plot_png(score, tmp_path / "seq.png", view="sequence", warn=said.append) == "sequence"
    assert time.perf_counter() - start < SECONDS
    assert len(said) == 1 and "\n" not in said[0], said
    assert f"the first {MAX_SEQUENCE_ROWS} of 3,001 notes" in said[0] and "--view density" in said[0]
    width, height = png_chunks_ok(tmp_path / "seq.png")
    assert width == 1200 and height <= 3500
    check_picture(tmp_path / "seq.png", score)


def test_20015_notes_in_few_attempts(tmp_path):
    """25 attempts (auto's sequence view would take them by count) but 20,015 notes: the density view
    (the old plot: 253 s and 2.65 GB)."""
    score = compose([craft_storm(tmp_path / "storms.pcap", complete=20, storms=5, syns=3991)]).score
    assert (len(score.notes), score.attempts()) == (20_015, 25)
    assert score.attempts() <= AUTO_SEQUENCE_ATTEMPTS
    start = time.perf_counter()
    assert plot_png(score, tmp_path / "auto.png") == "density"
    assert time.perf_counter() - start < SECONDS
    check_picture(tmp_path / "auto.png", score)  # green and grey, no red, no orange
    start = time.perf_counter()
    assert plot_png(score, tmp_path / "seq.png", view="sequence", warn=None) == "sequence"
    assert time.perf_counter() - start < SECONDS
    assert png_chunks_ok(tmp_path / "seq.png")[1] <= 3500


def test_sequence_view_is_capped(tmp_path):
    """However long the score, a sequence view asked for is at most MAX_SEQUENCE_ROWS rows: the picture's
    height is bounded, and it draws the first notes, in the outcome colours they have."""
    score = synthetic_score(100_000)
    said = []
    assert plot_png(score, tmp_path / "seq.png", view="sequence", warn=said.append) == "sequence"
    assert len(said) == 1 and "of 100,000 notes" in said[0]
    width, height = png_chunks_ok(tmp_path / "seq.png")
    assert width == 1200 and 2000 <= height <= 3500
    first = score.with_notes(slice(0, MAX_SEQUENCE_ROWS // 2))  # surely drawn
    img = read_png(tmp_path / "seq.png")
    for outcome, n in outcome_counts(first).items():
        if n:
            assert pixels_of(img, OUTCOME_COLOURS[outcome]) >= MIN_PIXELS, outcome


def test_a_million_notes_in_bounded_memory(tmp_path):
    """A 1,000,000-note score plots (density), in a child process whose peak RSS (score built and
    picture drawn) is read with getrusage(RUSAGE_CHILDREN) by a process that runs only that child;
    the PNG is checked chunk by chunk with zlib, then for content."""
    out = tmp_path / "million.png"
    child = ("import sys; sys.path[:0] = [{tests!r}, {root!r}]\n"
             "from synthetic import synthetic_score\n"
             "from handshake_score.plot import plot_png\n"
             "score = synthetic_score(1_000_000)\n"
             "print(plot_png(score, {out!r}), len(score.notes), score.attempts())\n"
             ).format(tests=str(ROOT / "tests"), root=str(ROOT), out=str(out))
    measure = ("import resource, subprocess, sys\n"
               "r = subprocess.run([sys.executable, '-c', sys.argv[1]], capture_output=True, text=True)\n"
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.stdout.strip())\n"
               "sys.stderr.write(r.stderr)\n")
    r = subprocess.run([sys.executable, "-c", measure, child], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    code, max_kb, view, notes, attempts = r.stdout.split()
    assert code == "0", r.stderr
    assert (view, int(notes)) == ("density", 1_000_000)
    assert int(max_kb) / 1024 < MILLION_RSS_MB, f"peak RSS {int(max_kb) / 1024:.0f} MB"
    width, height = png_chunks_ok(out)
    assert (width, height) == (1200, 1050)
    score = synthetic_score(2_000)  # the same kind of score: it has every outcome, as the million has
    assert all(outcome_counts(score).values())
    check_picture(out, score)


# --- errors and safety ------------------------------------------------------------------------------------

def test_bad_view(tmp_path):
    score = load_score(SAMPLE)
    with pytest.raises(HandshakeScoreError, match="unknown view"):
        plot_png(score, tmp_path / "x.png", view="pie")
    with pytest.raises(HandshakeScoreError, match="warn"):
        plot_png(score, tmp_path / "x.png", warn="loudly")
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


def test_hs_plot_sequence_of_a_long_score(tmp_path):
    """--view sequence on a score too long for it: the picture of its first rows, exit 0, and one line on
    stderr saying what was left out and which view shows it all."""
    score = synthetic_score(1_000)
    save_score(score, tmp_path / "long.score")
    out = tmp_path / "long.png"
    r = subprocess.run([sys.executable, "-m", "handshake_score", "plot", tmp_path / "long.score", "-o", out,
                        "--view", "sequence"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote {out} (sequence view of {score.attempts():,} handshakes)\n"
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hs: warning: the sequence view has room for"), r.stderr
    assert "of 1,000 notes" in r.stderr and "--view density" in r.stderr
    assert png_chunks_ok(out)[1] <= 3500
