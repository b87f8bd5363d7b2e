"""hs demo: from a fresh clone, with no root, no tshark, no Raspberry Pi and no sound card."""

from __future__ import annotations

import subprocess
import sys
import time
import wave
from pathlib import Path

import mido
import numpy as np

from conftest import CORPUS, ROOT, corpus_expectations
from handshake_score.scorefile import load_score

TOUR = ROOT / "handshake_score" / "tour"


def bare_env(home: Path) -> dict[str, str]:
    """Only the venv's own programs on PATH: no tshark, no dumpcap, no fluidsynth, no sox."""
    return {"PATH": str(Path(sys.executable).parent), "HOME": str(home), "LANG": "C.UTF-8"}


def test_demo_on_a_bare_machine_writes_everything_and_plays_under_20_s(tmp_path):
    # (not as another user: this machine's Python lives in root's home, which no one else may enter)
    where = tmp_path / "work"
    where.mkdir()
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "handshake_score", "demo"], cwd=where,
                       env=bare_env(where), capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert took < 20 + 15  # 18 s of playing, and the rest
    folder = where / "demo"
    assert sorted(p.name for p in folder.iterdir()) == ["tour.mid", "tour.png", "tour.score", "tour.wav"]

    score = load_score(folder / "tour.score")
    assert len(score.sources) == 9 and len(score) == 38 and score.attempts() == 14
    kinds, counts = np.unique(score.kinds(), return_counts=True)
    assert dict(zip(kinds, counts)) == {"syn": 14, "syn-retry": 2, "syn-ack": 9, "ack": 9, "rst": 4}

    # the console performance: one line per note, in order, at 10 times slower
    lines = [line for line in r.stdout.splitlines() if line.startswith("   ") and "#" in line]
    assert [line.split()[1] for line in lines] == [k.upper() for k in score.kinds()]

    midi = mido.MidiFile(folder / "tour.mid")
    assert sum(m.type == "note_on" for m in midi) == 38 and 15 < midi.length < 20

    with wave.open(str(folder / "tour.wav")) as w:
        assert w.getnchannels() == 2 and 15 < w.getnframes() / w.getframerate() < 20
    png = (folder / "tour.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_demo_never_replaces_an_earlier_one(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "tour.score").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "handshake_score", "demo", "--no-play"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo" / "tour.score").read_text() == "mine"
    assert load_score(tmp_path / "demo-2" / "tour.score").attempts() == 14
    r = subprocess.run([sys.executable, "-m", "handshake_score", "demo", "--no-play", "-o", "demo"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "hs: error: demo: exists and is not empty; hs demo writes into a new or empty folder"


def test_tour_captures_are_the_corpus_files_unchanged(corpus):
    expected = corpus_expectations()
    for path in sorted(TOUR.glob("*.pcap*")):
        assert path.read_bytes() == (CORPUS / path.name).read_bytes(), path.name
        assert path.name in expected and path.name in (TOUR / "README.md").read_text()


def test_readme_starts_with_the_demo():
    text = (ROOT / "README.md").read_text()
    first = text[text.index("```sh"):].split("\n")[1]
    assert "hs demo" in first
    assert "docs/demo-tour.png" in text and (ROOT / "docs" / "demo-tour.png").stat().st_size > 50_000
