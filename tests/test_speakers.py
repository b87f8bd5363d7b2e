"""hs play --to speakers: the sound of hs render, live through PortAudio.

This machine has no sound card. Without one, ``hs play --to speakers`` must say
so in one line; for the sound itself, ALSA's ``file`` plugin stands in for a
card and keeps what PortAudio played in a WAV file.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, jack_server

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


# --- in time: JACK's dummy driver is a sound card paced by the clock, and jack_rec records it ---------

JACK_SERVER = f"hs-test-{os.getpid()}"


@pytest.fixture(scope="module", params=[44100, 48000], ids=["44.1kHz", "48kHz"])
def jack(request):
    """A JACK server on the dummy driver (real-time pacing, no hardware) at 44.1 kHz, and at
    48 kHz (a JACK server takes no other rate than its own); its monitor ports carry the mix of
    everything played, for jack_rec. Yields the environment that finds it."""
    with jack_server(f"{JACK_SERVER}-{request.param}", request.param, tools=("jackd", "jack_rec", "jack_lsp")) as env:
        yield env


def test_speakers_keep_time_through_a_paced_card(jack, tmp_path):
    from test_play import score_of
    from handshake_score.scorefile import save_score

    kinds = ["syn", "syn-ack", "ack", "rst", "syn-retry", "syn-ack-retry"] * 2
    save_score(score_of(np.arange(12) * 250 + np.array([0, 3, 7, 1, 9, 2, 5, 0, 8, 4, 6, 1]), kinds), "s.score")
    rec = subprocess.Popen(["jack_rec", "-f", "heard.wav", "-d", "10", "-b", "16", "system:monitor_1", "system:monitor_2"],
                           env=jack, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while b" " not in subprocess.run(["jack_lsp", "-c", "system:monitor_1"], env=jack, capture_output=True).stdout:
        assert time.monotonic() < deadline, "jack_rec did not connect"
        time.sleep(0.02)
    r = subprocess.run([*HS, "play", "s.score", "--to", "speakers", "--timing-log", "t.csv"], env=jack,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "speakers   12 strikes" in r.stderr
    rec.wait(20)  # it records its whole 10 s: room for a slow start on a busy machine
    from test_render import onsets, read_wav

    audio, rate = read_wav("heard.wav")
    heard = onsets(audio, rate)
    struck = np.array(sorted(int(row["actual_ns"]) for row in csv.DictReader(open("t.csv"))))
    assert len(heard) == 12, heard
    # the same spacing, to 2 ms (the recording is sample-exact, so this is the performer's timing),
    # or said: on a loaded machine the sound card's callback can be held back (an underrun shifts
    # every later note, a late voice the one), and hs counts what that did
    error_ms = ((heard - heard[0]) - (struck - struck[0]) / 1e9) * 1e3
    print("speakers spacing error, ms:", np.round(error_ms, 3))
    said = {what: int(n.replace(",", "")) for n, what in
            re.findall(r"speakers +([\d,]+) (note|underrun)", r.stderr)}
    broken = int(np.count_nonzero(np.abs(np.diff(error_ms)) >= 2.0))  # gaps between neighbours off
    assert broken <= 2 * said.get("note", 0) + said.get("underrun", 0), (error_ms, r.stderr)
