"""WAV rendering, checked by listening with numbers: an onset detector (written here, on
the audio alone) finds every note where the score puts it, each timbre has the shape it
is meant to have, and long scores stream in bounded memory.

The detector knows nothing of the renderer: it takes the energy of the mono mix, and of
its first difference (its high frequencies), in 1 ms hops, and calls an onset where
either holds more than 4 times the energy of the 3 hops before (and more than a floor),
then places it at the first sample of that hop or the one before where the sound's
step (its first difference) reaches half its largest there. Onsets are 20 ms apart or more.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tracemalloc
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, assert_kept_unless_forced
from handshake_score.errors import HandshakeScoreError
from handshake_score.orchestra import DEFAULT, Instrument, Orchestra
from handshake_score.render import pan_position, render_wav
from handshake_score.timing import output_times_ns
from handshake_score.score import NOTE, Score, compose
from handshake_score.tracker import Kind
from synthetic import synthetic_score

RATE = 44_100
TOLERANCE_S = 0.002
CLUSTER_S = 0.030  # notes closer than this (after stretching) are heard as one onset
CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.1.20", "2001:db8::1", "fe80::1", "93.184.216.34", "::1"]


# --- helpers ---------------------------------------------------------------------------------------------

def read_wav(path) -> tuple[np.ndarray, int]:
    """Frames (frames x channels, -1..1) and the rate."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getcomptype() == "NONE"
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return x / 32768, w.getframerate()


def onsets(x: np.ndarray, rate: int, hop_s: float = 0.001, ratio: float = 4.0, floor: float = 1e-3,
           refractory_s: float = 0.020) -> np.ndarray:
    """Onset times (s) in the audio ``x`` (see the module's docstring)."""
    mono = x.mean(axis=1) if x.ndim == 2 else x
    hop = max(1, int(hop_s * rate))
    n = len(mono) // hop + 1
    padded = np.zeros(n * hop)
    padded[: len(mono)] = mono
    step = np.diff(padded, prepend=0.0)
    rise = np.zeros(n, bool)
    for signal in (padded, step):  # the sound, and its high frequencies
        e = (signal.reshape(n, hop) ** 2).mean(axis=1)
        before = np.zeros(n)
        for lag in (1, 2, 3):
            before[lag:] = np.maximum(before[lag:], e[:-lag])
        rise |= (e > floor ** 2) & (e > ratio * before)
    candidates = np.flatnonzero(rise)
    found, last = [], -np.inf
    for k in candidates.tolist():
        if (k - last) * hop < refractory_s * rate:
            continue
        lo = max(0, (k - 1) * hop)
        seg = np.abs(step[lo:(k + 1) * hop])
        found.append((lo + int(np.argmax(seg >= 0.5 * seg.max()))) / rate)
        last = k
    return np.array(found)


def expected_times(score_ns: np.ndarray, stretch: float, max_gap: float | None = None) -> np.ndarray:
    """Output times (s) worked out the slow, obvious way, one note after the other."""
    out, prev_in, prev_out = [], 0.0, 0.0
    for t in sorted(int(v) for v in score_ns):
        gap = (t - prev_in) * stretch / 1e9
        if max_gap is not None:
            gap = min(gap, max_gap)
        prev_in, prev_out = t, prev_out + gap
        out.append(prev_out)
    return np.array(out)


def cluster_starts(times: np.ndarray) -> np.ndarray:
    """The first time of each group of notes closer than CLUSTER_S to the one before."""
    times = np.sort(times)
    return times[np.concatenate([[True], np.diff(times) > CLUSTER_S])] if len(times) else times


def assert_onsets_match(found: np.ndarray, times: np.ndarray) -> None:
    """Every cluster found within 2 ms of its first note; every onset found is a note's (no extra)."""
    starts = cluster_starts(times)
    for t in starts:
        assert len(found) and np.abs(found - t).min() <= TOLERANCE_S, f"no onset at {t:.4f} s"
    for f in found:
        assert np.abs(times - f).min() <= TOLERANCE_S, f"an onset at {f:.4f} s where there is no note"
    assert len(starts) <= len(found) <= len(times)


def hand_score(times_s, kinds, clients=None) -> Score:
    """A score of notes at given times (s), kinds (indexes into Kind.ALL) and client hosts."""
    n = len(times_s)
    notes = np.zeros(n, NOTE)
    notes["time_ns"] = np.rint(np.asarray(times_s, float) * 1e9).astype(np.int64)
    notes["kind"] = kinds
    notes["attempt"] = np.arange(1, n + 1)
    notes["client"] = 0 if clients is None else clients
    notes["server"] = len(HOSTS) - 1
    notes["source"] = 1
    return Score(notes, list(HOSTS), [], 0)


def one_note(kind: str, tmp_path: Path, orchestra: Orchestra | None = None, stereo: bool = False) -> np.ndarray:
    """The sound of one note of ``kind`` at time 0, mono."""
    path = tmp_path / f"{kind}-{id(orchestra)}-{stereo}.wav"
    render_wav(hand_score([0.0], [Kind.ALL.index(kind)]), path, orchestra=orchestra, stereo=stereo)
    x, _ = read_wav(path)
    return x[:, 0]


# --- timing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("capture", CAPTURES)
def test_corpus_onsets_at_stretch_10(tmp_path, capture):
    score = compose([CORPUS / capture]).score
    render_wav(score, tmp_path / "a.wav", stretch=10)
    x, rate = read_wav(tmp_path / "a.wav")
    times = expected_times(score.notes["time_ns"], 10)
    assert_onsets_match(onsets(x, rate), times)


@pytest.mark.parametrize("capture", CAPTURES)
def test_corpus_every_note_apart_heard_alone(tmp_path, capture):
    """Stretched until its closest notes are 30 ms apart (up to 3,000 times), long silences cut
    to 0.5 s: one onset per note, each within 2 ms."""
    score = compose([CORPUS / capture]).score
    gaps = np.diff(score.notes["time_ns"])
    stretch = max(10.0, CLUSTER_S * 1e9 / gaps.min()) if len(gaps) and gaps.min() > 0 else 10.0
    render_wav(score, tmp_path / "a.wav", stretch=stretch, max_gap=0.5, stereo=False)
    x, rate = read_wav(tmp_path / "a.wav")
    times = expected_times(score.notes["time_ns"], stretch, 0.5)
    found = onsets(x, rate)
    assert len(found) == len(times)
    assert np.abs(found - times).max(initial=0) <= TOLERANCE_S


def test_every_kind_on_time_in_a_hand_made_score(tmp_path):
    """60 notes of every kind, 50-500 ms apart, on three hosts, in stereo."""
    rng = np.random.default_rng(7)
    times = np.cumsum(rng.uniform(0.05, 0.5, 60))
    kinds = np.arange(60) % 6
    score = hand_score(times, kinds, rng.integers(0, 3, 60))
    render_wav(score, tmp_path / "a.wav")
    x, rate = read_wav(tmp_path / "a.wav")
    found = onsets(x, rate)
    assert len(found) == 60
    assert np.abs(found - times).max() <= TOLERANCE_S


def test_synthetic_score_onsets(tmp_path):
    """A synthetic score (bursts, equal times, retries after 1-7 s) at stretch 10, silences over 1 s cut."""
    score = synthetic_score(400, seed=3)
    render_wav(score, tmp_path / "a.wav", stretch=10, max_gap=1.0)
    x, rate = read_wav(tmp_path / "a.wav")
    assert_onsets_match(onsets(x, rate), expected_times(score.notes["time_ns"], 10, 1.0))


def test_max_gap_shortens_a_long_silence(tmp_path):
    score = hand_score([0.5, 60.5, 60.8], [0, 2, 4])
    frames = render_wav(score, tmp_path / "a.wav", max_gap=2)
    x, rate = read_wav(tmp_path / "a.wav")
    assert len(x) == frames < 3 * rate  # not a minute
    found = onsets(x, rate)
    assert len(found) == 3
    assert np.abs(found - [0.5, 2.5, 2.8]).max() <= TOLERANCE_S


def test_years_of_score_stretched_far_are_timed_with_max_gap_and_refused_without():
    year = 365 * 86400 * 10**9
    t = np.array([0, 12 * year, 12 * year + 10**6, 3 * year], np.int64)  # captures years apart
    # 1000x: 12,000 years of output, past int64 ns; shortened to 2 s silences it plays in seconds
    assert output_times_ns(t, 1000, 2).tolist() == [0, 4_000_000_000, 5_000_000_000, 2_000_000_000]
    with pytest.raises(HandshakeScoreError, match=r"lasts 4,380,000 days 0 h, longer than can be timed; --max-gap S"):
        output_times_ns(t, 1000)


def test_output_times_ns_exact_values():
    t = np.array([0, 10, 1000, 1_000_000_000], np.int64)
    assert output_times_ns(t, 2).tolist() == [0, 20, 2000, 2_000_000_000]
    assert output_times_ns(t, 2, 0.5).tolist() == [0, 20, 2000, 500_002_000]
    assert output_times_ns(t, 1, 1e-6).tolist() == [0, 10, 1000, 2000]
    assert output_times_ns([1, 3], 1.5).tolist() == [2, 4]  # rint: 1.5 -> 2, 4.5 -> 4 (to even)
    assert output_times_ns([3_000_000_000, 3_100_000_000], 1, 1).tolist() == [1_000_000_000, 1_100_000_000]  # lead-in too
    assert output_times_ns([5_000_000_000, 0, 5_000_000_000], 1, 1).tolist() == [1_000_000_000, 0, 1_000_000_000]
    assert output_times_ns([], 10, 1).tolist() == []
    assert output_times_ns(np.arange(5) * 10**9, 3, 2).tolist() == [0, 2 * 10**9, 4 * 10**9, 6 * 10**9, 8 * 10**9]
    assert output_times_ns([0, 10**12], 1, None).dtype == np.int64
    big = np.arange(0, 3600 * 10**9, 7 * 10**8 + 1)  # an hour: no drift, exactly time x stretch
    assert (output_times_ns(big, 10) == big * 10).all()


@pytest.mark.parametrize("max_gap", [0, -1, float("nan"), float("inf"), "two", True])
def test_bad_max_gap(tmp_path, max_gap):
    with pytest.raises(HandshakeScoreError, match="max-gap must be a number of seconds above 0"):
        render_wav(hand_score([0], [0]), tmp_path / "a.wav", max_gap=max_gap)
    with pytest.raises(HandshakeScoreError, match="max-gap"):
        output_times_ns([0], 1, max_gap)
    assert not list(tmp_path.iterdir())


def test_notes_before_the_start_are_refused():
    with pytest.raises(HandshakeScoreError, match="before its start"):
        output_times_ns([-1, 0], 1)


# --- timbres ---------------------------------------------------------------------------------------------

def decay_s(x: np.ndarray, db: float = 20) -> float:
    """Time until the sound last reaches -``db`` dB of its peak (envelope in 1 ms hops)."""
    hop = RATE // 1000
    env = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1)
    return (np.flatnonzero(env >= env.max() * 10 ** (-db / 20)).max() + 1) / 1000


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x[np.flatnonzero(x)[0]:][: RATE // 5]
    power = np.abs(np.fft.rfft(x, RATE)) ** 2  # 1 Hz bins
    return np.fft.rfftfreq(RATE, 1 / RATE), power


def centroid(x: np.ndarray) -> float:
    f, p = spectrum(x)
    return float((f * p).sum() / p.sum())


def flatness(x: np.ndarray, lo: float = 200, hi: float = 15000) -> float:
    """Geometric over arithmetic mean of the power spectrum (1 for white noise, near 0 for tones),
    in 100 Hz bands so that one band's noise is averaged."""
    f, p = spectrum(x)
    band = p[(f >= lo) & (f < hi)]
    band = band[: len(band) // 100 * 100].reshape(-1, 100).mean(axis=1)
    return float(np.exp(np.log(band).mean()) / band.mean())


def peaks_hz(x: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` strongest spectral peaks at least 100 Hz apart."""
    f, p = spectrum(x)
    p = p.copy()
    out = []
    for _ in range(count):
        i = int(np.argmax(p))
        out.append(f[i])
        p[max(0, i - 100):i + 100] = 0
    return np.sort(np.array(out))


def test_timbres_have_their_shapes(tmp_path):
    wood, tin, click, noise = (one_note(k, tmp_path) for k in ("syn", "syn-ack", "ack", "rst"))
    # the woodblock: strongest partial near 1 kHz, its energy there, gone within ~0.1 s, tonal
    assert 800 <= peaks_hz(wood, 1)[0] <= 1200
    assert 700 < centroid(wood) < 1500
    assert 0.02 < decay_s(wood) < 0.1
    # the tin drum: rings longest, with partials that are not a harmonic series
    assert decay_s(tin) > 2 * decay_s(wood) and decay_s(tin) > 0.1
    p = peaks_hz(tin, 4)
    ratios = p[1:] / p[0]
    assert np.abs(ratios - np.round(ratios)).min() > 0.1, p  # inharmonic: metallic
    # the click: a few milliseconds, broadband
    assert decay_s(click) <= 0.005
    assert len(np.flatnonzero(click)) <= 0.006 * RATE
    assert centroid(click) > 4000
    # the noise burst: ~0.15 s, a flat-ish spectrum; the tones' spectra are not flat at all
    assert 0.05 < decay_s(noise) < 0.16
    assert flatness(noise) > 0.5
    assert flatness(wood) < 0.05 and flatness(tin) < 0.05
    # the order of lengths the kinds are meant to have
    assert decay_s(click) < decay_s(wood) < decay_s(noise) < decay_s(tin) + 0.05


def test_each_sound_starts_at_its_loudest(tmp_path):
    """The attack is sample 0 of the note: the onset is the note's time."""
    for kind in Kind.ALL:
        x = one_note(kind, tmp_path)
        assert x[0] > 0 and abs(x[0]) >= np.abs(x).max() - 1 / 32768, kind


def test_retries_are_quieter(tmp_path):
    peak = {k: np.abs(one_note(k, tmp_path)).max() for k in Kind.ALL}
    assert peak["syn-retry"] < 0.6 * peak["syn"]
    assert peak["syn-ack-retry"] < 0.6 * peak["syn-ack"]
    assert peak["ack"] < peak["syn"] < peak["rst"]  # velocities 90, 100, 110


def test_velocity_from_the_orchestra(tmp_path):
    loud = DEFAULT.updated({"syn": {"velocity": 127}}, "loud")
    soft = DEFAULT.updated({"syn": {"velocity": 20}}, "soft")
    a, b = (np.abs(one_note("syn", tmp_path, o)).max() for o in (loud, soft))
    assert a == pytest.approx(0.5, abs=1e-3)  # at velocity 127 half of full scale
    assert b < a / 10
    tin = DEFAULT.updated({"syn": {"timbre": "tin"}}, "tin")
    assert decay_s(one_note("syn", tmp_path, tin)) > 0.1  # the timbre follows the orchestra too


def test_a_few_notes_together_do_not_clip_and_many_are_clipped_not_wrapped(tmp_path):
    render_wav(hand_score([0.1] * 3, [0, 2, 4]), tmp_path / "three.wav", stereo=False)
    x, _ = read_wav(tmp_path / "three.wav")
    assert np.abs(x).max() < 0.99
    render_wav(hand_score([0.1] * 20, [5] * 20), tmp_path / "twenty.wav", stereo=False)
    x, rate = read_wav(tmp_path / "twenty.wav")
    first = int(0.1 * rate)
    assert x[first, 0] == pytest.approx(32767 / 32768)  # clipped at the top, not wrapped around
    assert np.abs(x).max() <= 1.0


# --- stereo ----------------------------------------------------------------------------------------------

def lr_ratio(x: np.ndarray, at_s: float, rate: int) -> float:
    seg = x[int(at_s * rate):int((at_s + 0.08) * rate)]
    return float((seg[:, 0] ** 2).sum() / (seg[:, 1] ** 2).sum())


def test_same_host_same_place_different_hosts_apart(tmp_path):
    left, right = min(HOSTS, key=pan_position), max(HOSTS, key=pan_position)
    assert pan_position(right) - pan_position(left) > 0.5
    a, b = HOSTS.index(left), HOSTS.index(right)
    times = [0.1, 0.5, 0.9, 1.3, 1.7, 2.1]
    render_wav(hand_score(times, [0, 2, 4, 0, 2, 4], [a, b, a, b, a, b]), tmp_path / "a.wav")
    x, rate = read_wav(tmp_path / "a.wav")
    assert x.shape[1] == 2
    ratio = [lr_ratio(x, t, rate) for t in times]
    assert max(ratio[0::2]) / min(ratio[0::2]) < 1.01  # host a always where it was
    assert max(ratio[1::2]) / min(ratio[1::2]) < 1.01
    assert ratio[0] > 2 and ratio[1] < 0.5  # a on the left, b on the right
    # in another score, with another hosts table, the host keeps its place
    other = hand_score([0.1], [2], [0])
    other.hosts = [left] + [h for h in HOSTS if h != left]
    render_wav(other, tmp_path / "b.wav")
    y, _ = read_wav(tmp_path / "b.wav")
    assert lr_ratio(y, 0.1, rate) == pytest.approx(ratio[0], rel=0.01)


def test_mono(tmp_path):
    frames = render_wav(hand_score([0.1, 0.3], [0, 2], [0, 1]), tmp_path / "a.wav", stereo=False, rate=22050)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (1, 22050, frames)


# --- the file --------------------------------------------------------------------------------------------

def test_wav_reads_back_with_its_rate_channels_and_length(tmp_path):
    score = hand_score([0.0, 1.0], [0, 2])
    frames = render_wav(score, tmp_path / "a.wav")
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, RATE, frames)
    assert frames == RATE + int(0.30 * RATE)  # the last note (the tin drum, 0.3 s) sounds to its end
    assert os.path.getsize(tmp_path / "a.wav") == 44 + frames * 4
    # the header by hand, as the RIFF/WAVE format defines it
    head = struct.unpack("<4sI4s4sIHHIIHH4sI", (tmp_path / "a.wav").read_bytes()[:44])
    assert head == (b"RIFF", 36 + frames * 4, b"WAVE", b"fmt ", 16, 1, 2, RATE, RATE * 4, 4, 16, b"data", frames * 4)
    if not shutil.which("soxi"):
        pytest.skip("sox is not installed: checked with the wave module only")
    info = subprocess.run(["soxi", tmp_path / "a.wav"], capture_output=True, text=True, check=True).stdout
    assert "Channels       : 2" in info and "Sample Rate    : 44100" in info and f"{frames} samples" in info


def test_empty_score_is_half_a_second_of_silence(tmp_path):
    score = hand_score([], [])
    frames = render_wav(score, tmp_path / "a.wav")
    x, rate = read_wav(tmp_path / "a.wav")
    assert frames == len(x) == rate // 2 and not x.any()


def test_long_score_streams_in_bounded_memory(tmp_path):
    """Two hours of audio (mono, 8 kHz: 115 MB) with a note now and then: memory stays small,
    progress is told block by block, and the last note is where it belongs."""
    hours = 2
    times = np.linspace(0, hours * 3600, 9)
    score = hand_score(times, np.arange(9) % 6)
    calls = []
    tracemalloc.start()
    try:
        frames = render_wav(score, tmp_path / "long.wav", rate=8000, stereo=False,
                            on_progress=lambda done, total: calls.append((done, total)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = os.path.getsize(tmp_path / "long.wav")
    assert size > 100e6
    assert peak < 4e6, peak  # less than 4% of the file
    assert len(calls) == -(-frames // 65536) and calls[-1] == (frames, frames)
    assert all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    with wave.open(str(tmp_path / "long.wav")) as w:
        w.setpos(int(times[-1] * 8000) - 800)
        tail = np.frombuffer(w.readframes(1600), "<i2")
    assert not tail[:800].any() and tail[800] > 1000  # silence, then the note on its sample
    os.unlink(tmp_path / "long.wav")


def test_a_note_across_block_boundaries_is_whole(tmp_path):
    """Notes straddling the 65,536-frame blocks sound exactly as a note alone does."""
    alone = one_note("syn-ack", tmp_path)  # the tin drum, 0.3 s: it spans a boundary wherever it starts
    starts = [65_536 - 100, 2 * 65_536 - 1, 3 * 65_536 + 5_000]
    render_wav(hand_score(np.array(starts) / RATE, [2] * 3), tmp_path / "a.wav", stereo=False)
    x, _ = read_wav(tmp_path / "a.wav")
    for s in starts:
        assert np.array_equal(x[s:s + len(alone), 0], alone), s
    assert not x[: starts[0], 0].any()


# --- safety ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stretch", [0, -1, float("nan"), float("inf"), "ten", None, True])
def test_bad_stretch_fails_before_anything_is_written(tmp_path, stretch):
    with pytest.raises(HandshakeScoreError, match="stretch must be a number above 0"):
        render_wav(hand_score([0], [0]), tmp_path / "a.wav", stretch=stretch)
    assert not list(tmp_path.iterdir())


def test_existing_file_is_kept_unless_forced(tmp_path):
    path = tmp_path / "a.wav"
    score = hand_score([0], [0])
    assert_kept_unless_forced(lambda p, **kw: render_wav(score, p, **kw), path, {"stretch": 0}, "stretch")
    assert read_wav(path)[0].any()


def test_error_halfway_leaves_nothing_half_written(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"previous")
    score = hand_score([0, 10], [0, 2])

    def interrupt(done, total):
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_wav(score, path, force=True, on_progress=interrupt)
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["a.wav"]
    with pytest.raises(KeyboardInterrupt):
        render_wav(score, tmp_path / "b.wav", on_progress=interrupt)
    assert os.listdir(tmp_path) == ["a.wav"]


def test_orchestra_made_in_code_is_checked(tmp_path):
    bad = Orchestra({**DEFAULT.instruments, "ack": replace(DEFAULT["ack"], timbre="gong")}, "bad")
    with pytest.raises(HandshakeScoreError, match=r"\[ack\] timbre: 'gong'"):
        render_wav(hand_score([0], [4]), tmp_path / "a.wav", orchestra=bad)
    bad = Orchestra({**DEFAULT.instruments, "syn": Instrument(76, 0)}, "bad")
    with pytest.raises(HandshakeScoreError, match=r"\[syn\] velocity: 0"):
        render_wav(hand_score([0], [0]), tmp_path / "a.wav", orchestra=bad)
    assert not list(tmp_path.iterdir())


def test_too_long_for_a_wav_file(tmp_path):
    with pytest.raises(HandshakeScoreError, match="more than a WAV file can hold"):
        render_wav(hand_score([0, 7 * 3600], [0, 0]), tmp_path / "a.wav")
    assert not list(tmp_path.iterdir())


def test_hs_render_command(tmp_path):
    """The command: a score file in, a WAV out that the wave module reads; errors are one line."""
    import sys

    hs = [sys.executable, "-m", "handshake_score", "render"]
    sample = Path(__file__).resolve().parent.parent / "scores" / "sample-loopback.score"
    out = tmp_path / "a.wav"
    r = subprocess.run([*hs, sample, "-o", out, "--stretch", "100", "--max-gap", "1", "--mono"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(f"wrote {out} (14 notes, "), r.stderr
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 44100, 2)
        assert 1.0 < w.getnframes() / 44100 < 10.0  # 0.5 s of lead-in x 100, cut to 1 s; the notes after it
    for args, needle in [(["-o", out], "already exists"), (["-o", tmp_path / "b.wav", "--stretch", "0"], "stretch"),
                         (["-o", tmp_path / "b.wav", "--max-gap", "-1"], "max-gap")]:
        r = subprocess.run([*hs, sample, *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not (tmp_path / "b.wav").exists()
