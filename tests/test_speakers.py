"""hs play --to speakers: the sound of hs render, live through PortAudio.

This machine has no sound card. Without one, ``hs play --to speakers`` must say
so in one line; for the sound itself, ALSA's ``file`` plugin stands in for a
card and keeps what PortAudio played in a WAV file.
"""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

HS = [sys.executable, "-m", "handshake_score"]
SAMPLE = ROOT / "scores" / "sample-loopback.score"


def file_card(home: Path) -> Path:
    """An ALSA default device that writes what it is sent to ``home/played.wav`` (16-bit stereo)."""
    out = home / "played.wav"
    (home / ".asoundrc").write_text(f"""
pcm.!default {{
    type plug
    slave {{ pcm "keep"; format S16_LE; rate 44100; channels 2 }}
}}
pcm.keep {{
    type file
    slave.pcm "null"
    file "{out}"
    format "wav"
}}
""")
    return out


def env_with_home(home: Path) -> dict:
    import os

    return {**os.environ, "HOME": str(home)}


def test_no_sound_card_is_one_line(tmp_path):
    if Path("/dev/snd").exists():
        pytest.skip("this machine has a sound card")
    r = subprocess.run([*HS, "play", SAMPLE, "--to", "speakers"], capture_output=True, text=True,
                       env=env_with_home(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == ("hs: error: no sound card here: PortAudio finds no output device; "
                                "hs render -o OUT.wav writes the sound to a file")


def test_every_strike_sounds_through_the_card(tmp_path):
    played = file_card(tmp_path)
    r = subprocess.run([*HS, "play", SAMPLE, "--to", "speakers,console", "--stretch", "100", "--max-gap", "0.2"],
                       capture_output=True, text=True, env=env_with_home(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "speakers   14 strikes" in r.stderr
    with wave.open(str(played)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 44100, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(float) / 32768
    # ALSA's null device takes audio as fast as it comes, so where the notes fall in the
    # file says nothing of time; what it holds does: every strike's sound, none clipped
    level = np.abs(audio).max(axis=1)
    assert level.max() > 0.05 and level.max() < 1.0
    assert np.count_nonzero(level > 0.01) > 14 * 100
