"""MIDI export, read back by mido and by an independent reader (symusic, C++), and heard through FluidSynth.

Every capture of the corpus and a 100,000-note synthetic score, at stretches 1,
2.5 and 10: each note where the score puts it (within 0.5 ms), on its
instrument, one marker per attempt, and no note still sounding when its key
is struck again.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import pytest
import symusic

from conftest import KINDS, ROOT, assert_kept_unless_forced, corpus_expectations, missing
from handshake_score.errors import HandshakeScoreError
from handshake_score.midi import export_midi, to_midi
from handshake_score.orchestra import DEFAULT, Instrument, Orchestra
from handshake_score.score import compose
from handshake_score.scorefile import dumps, load_score
from loopback import V4, V6, make_capture
from synthetic import synthetic_score

STRETCHES = [1, 2.5, 10]
HALF_MS = 500_000  # ns
NOTE_NS = 30_000_000  # a note's length when nothing cuts it short
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
EXPECTED = corpus_expectations()


@dataclass
class Track:
    """One track as mido reads it: its name and its notes (note-on paired with its note-off)."""

    name: str
    on: np.ndarray      # absolute ticks
    off: np.ndarray
    channel: np.ndarray
    note: np.ndarray
    velocity: np.ndarray
    restruck: int       # note-ons that came while the same key of this track was still sounding


@dataclass
class Reading:
    """One exported score, read back by mido and by symusic."""

    score: object
    stretch: float
    orchestra: Orchestra
    midi: mido.MidiFile
    tick_ns: float      # from the file's ticks_per_beat and tempo
    tracks: list[Track]  # the note tracks, in file order
    markers: list[tuple[int, str]]
    sym: symusic.Score


def mido_track(track: mido.MidiTrack) -> Track:
    ticks = np.cumsum([m.time for m in track])
    names = [m.name for m in track if m.type == "track_name"]
    sounding: dict[tuple[int, int], list[int]] = {}
    notes, restruck = [], 0
    for tick, m in zip(ticks.tolist(), track):
        if m.type == "note_on" and m.velocity > 0:
            restruck += bool(sounding.get((m.channel, m.note)))
            sounding.setdefault((m.channel, m.note), []).append(len(notes))
            notes.append([tick, -1, m.channel, m.note, m.velocity])
        elif m.type in ("note_off", "note_on"):
            assert sounding.get((m.channel, m.note)), f"a note-off at tick {tick} with no note sounding"
            notes[sounding[(m.channel, m.note)].pop(0)][1] = tick
    a = np.array(notes, np.int64).reshape(-1, 5)
    assert (a[:, 1] >= 0).all(), "a note without its note-off"
    return Track(names[0] if names else "", *a.T, restruck)


def read(score, path: Path, stretch: float, orchestra: Orchestra = DEFAULT) -> Reading:
    midi = mido.MidiFile(path)
    conductor = midi.tracks[0]
    ticks = np.cumsum([m.time for m in conductor])
    tempos = [(t, m.tempo) for t, m in zip(ticks, conductor) if m.type == "set_tempo"]
    assert len(tempos) == 1 and tempos[0][0] == 0, tempos
    assert not any(m.type == "set_tempo" for t in midi.tracks[1:] for m in t)
    markers = [(int(t), m.text) for t, m in zip(ticks, conductor) if m.type == "marker"]
    return Reading(score, stretch, orchestra, midi, tempos[0][1] * 1000 / midi.ticks_per_beat,
                   [mido_track(t) for t in midi.tracks[1:]], markers, symusic.Score(str(path)))


def export_and_read(score, folder: Path, name: str, stretch: float, orchestra=None) -> Reading:
    path = folder / f"{name}-x{stretch}.mid"
    export_midi(score, path, stretch=stretch, orchestra=orchestra)
    return read(score, path, stretch, orchestra or score.orchestra)


def expected_times(r: Reading, kind: int) -> np.ndarray:
    return np.sort(r.score.notes["time_ns"][r.score.notes["kind"] == kind]) * r.stretch


def label(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


@pytest.fixture(scope="module", params=[(what, s) for what in ("corpus", "synthetic-100k", "loopback") for s in STRETCHES],
                ids=lambda p: f"{p[0]}-x{p[1]}")
def readings(request, tmp_path_factory, corpus) -> list[Reading]:
    """Every corpus capture, the 100,000-note synthetic score, or the score file of a capture
    of our own, exported and read back."""
    what, stretch = request.param
    folder = tmp_path_factory.mktemp(f"{what}-{stretch}")
    if what == "corpus":
        captures = sorted(corpus.glob("*.pcap*"))
        assert len(captures) == len(EXPECTED) == 16
        return [export_and_read(compose([p]).score, folder, p.name, stretch) for p in captures]
    if what == "loopback":
        return [export_and_read(request.getfixturevalue("own_score"), folder, what, stretch)]
    return [export_and_read(big_score(), folder, what, stretch)]


@pytest.fixture(scope="module")
def own_score(tmp_path_factory, dumpcap):
    """A capture the test records on loopback (IPv4 and IPv6, completed and refused), scored
    by ``hs score`` into a file, which loads and writes back to the same bytes."""
    folder = tmp_path_factory.mktemp("own")
    capture, path = folder / "own.pcapng", folder / "own.score"
    made = make_capture(dumpcap, capture, [("complete", V4, 12), ("refused", V4, 3), ("complete", V6, 4),
                                           ("refused", V6, 2)])
    subprocess.run([sys.executable, "-m", "handshake_score", "score", capture, "-o", path],
                   check=True, capture_output=True)
    score = load_score(path)
    assert dumps(score) == path.read_text()
    assert score.attempts() == len(made) == 21
    _, first = np.unique(score.notes["attempt"], return_index=True)
    assert dict(zip(*np.unique(score.outcomes()[first], return_counts=True))) == {"complete": 16, "refused": 5}
    return score


@functools.cache
def big_score():
    return synthetic_score(100_000)


# --- what the file holds ------------------------------------------------------------------------

def test_layout_tracks_and_tempo(readings):
    for r in readings:
        assert r.midi.type == 1 and len(r.midi.tracks) == 1 + len(KINDS)
        assert [m.type for m in r.midi.tracks[0][:1]] == ["track_name"]
        assert [t.name for t in r.tracks] == KINDS
        assert r.tick_ns <= 1_000_000  # one tick at most 1 ms
        assert r.sym.ticks_per_quarter == r.midi.ticks_per_beat
        assert [t.mspq for t in r.sym.tempos] == [r.tick_ns * r.midi.ticks_per_beat / 1000]
        # every track ends with end_of_track, and only there
        for t in r.midi.tracks:
            assert [m.type for m in t].count("end_of_track") == 1 and t[-1].type == "end_of_track"


def test_each_kind_on_its_instrument(readings):
    for r in readings:
        counts = np.bincount(r.score.notes["kind"], minlength=len(KINDS))
        for kind, t in enumerate(r.tracks):
            inst = r.orchestra[KINDS[kind]]
            assert len(t.on) == counts[kind]
            assert set(t.channel.tolist()) <= {9} and set(t.note.tolist()) <= {inst.note}
            assert set(t.velocity.tolist()) <= {inst.velocity}
        names = {t.name: len(t.notes) for t in r.sym.tracks}  # symusic leaves out tracks without notes
        assert names == {k: int(c) for k, c in zip(KINDS, counts) if c}
        assert all(t.is_drum for t in r.sym.tracks)


def test_corpus_counts_are_the_readmes(readings):
    for r in readings:
        name = r.score.sources[0].name
        if name in EXPECTED:
            assert {t.name: len(t.on) for t in r.tracks} == EXPECTED[name]["notes"], name


def test_times_read_by_mido_within_half_a_millisecond(readings):
    for r in readings:
        for kind, t in enumerate(r.tracks):
            read_ns = np.sort(t.on) * r.tick_ns
            assert np.abs(read_ns - expected_times(r, kind)).max(initial=0) <= HALF_MS


def test_times_read_by_symusic_within_half_a_millisecond(readings):
    for r in readings:
        tempo_ns = r.sym.tempos[0].mspq * 1000
        for t in r.sym.tracks:
            read_ns = np.sort(t.notes.numpy()["time"].astype(np.int64)) * tempo_ns / r.sym.ticks_per_quarter
            assert np.abs(read_ns - expected_times(r, KINDS.index(t.name))).max() <= HALF_MS


def test_one_marker_per_attempt_at_its_first_note(readings):
    for r in readings:
        notes, hosts = r.score.notes, r.score.hosts
        first: dict[int, int] = {}
        for i, a in enumerate(notes["attempt"].tolist()):  # notes are in time order
            first.setdefault(a, i)
        want = [f"#{a} {label(hosts[notes['client'][i]])}:{notes['client_port'][i]} -> "
                f"{label(hosts[notes['server'][i]])}:{notes['server_port'][i]}" for a, i in sorted(first.items())]
        assert [text for _, text in r.markers] == want
        at = np.array([tick for tick, _ in r.markers]) * r.tick_ns
        assert np.abs(at - notes["time_ns"][sorted(first.values())] * r.stretch).max(initial=0) <= HALF_MS
        # at the very tick of the attempt's first note-on
        kind = notes["kind"][[first[a] for a in sorted(first)]]
        for k, t in enumerate(r.tracks):
            assert np.isin(np.array([tick for tick, _ in r.markers])[kind == k], t.on).all()
        assert [(m.time, m.text) for m in r.sym.markers] == r.markers


def assert_no_overlap(r: Reading) -> None:
    """For each key (channel, note) over all tracks: every note-off at or before the key's
    next note-on. A note lasts 30 ms unless the next strike of its key comes sooner: then
    it ends a tick before it (or at it, having no length, when that is at the same tick)."""
    full = round(NOTE_NS / r.tick_ns)
    assert full * r.tick_ns == NOTE_NS
    for t in r.tracks:
        assert t.restruck == 0, t.name
    on, off, key = (np.concatenate(x) for x in zip(*[(t.on, t.off, t.channel * 128 + t.note) for t in r.tracks]))
    order = np.lexsort((off, on, key))
    on, off, key = on[order], off[order], key[order]
    same = key[1:] == key[:-1]
    assert (off >= on).all()
    assert (off[:-1][same] <= on[1:][same]).all()
    assert (off[:-1][same] < on[1:][same])[on[:-1][same] < on[1:][same]].all()  # whatever order tracks merge in
    gap = np.where(same, on[1:] - on[:-1] - 1, full)
    assert (off - on == np.minimum(full, np.maximum(0, np.append(gap, full)))).all()


def test_no_note_sounds_into_the_next_strike_of_its_key(readings):
    for r in readings:
        assert_no_overlap(r)


def test_kinds_sharing_a_key_on_other_channels(tmp_path):
    """A user's orchestra: syn and ack on one key, syn-ack on channel 3 (not percussion)."""
    orchestra = DEFAULT.updated({"ack": {"note": 76, "velocity": 33}, "syn-ack": {"channel": 3, "note": 60}}, "mine")
    score = synthetic_score(20_000, seed=7)
    r = export_and_read(score, tmp_path, "shared", 2.5, orchestra)
    alone = export_and_read(score, tmp_path, "default", 2.5)
    syn, syn_ack, ack = (r.tracks[KINDS.index(k)] for k in ("syn", "syn-ack", "ack"))
    assert set(syn_ack.channel.tolist()) == {3} and set(syn_ack.note.tolist()) == {60}
    assert set(ack.note.tolist()) == {76} and set(ack.velocity.tolist()) == {33}
    assert_no_overlap(r)
    # the shared key cuts SYNs short: by the ACKs now, not only by other SYNs
    full = round(NOTE_NS / r.tick_ns)
    syn_alone = alone.tracks[KINDS.index("syn")]
    assert ((syn.off - syn.on) < full).sum() > ((syn_alone.off - syn_alone.on) < full).sum() + 100
    for kind, t in enumerate(r.tracks):
        assert np.abs(np.sort(t.on) * r.tick_ns - expected_times(r, kind)).max(initial=0) <= HALF_MS


def test_markers_name_pseudonyms_as_they_are(tmp_path):
    score = synthetic_score(50, seed=2)
    score.hosts = [f"host-{i}" for i in range(len(score.hosts) - 1)] + ["h\u00f4te-\u2713"]  # Latin-1 and beyond
    r = export_and_read(score, tmp_path, "pseudonyms", 1)
    notes = score.notes[np.unique(score.notes["attempt"], return_index=True)[1]]
    want = [f"#{n['attempt']} {score.hosts[n['client']]}:{n['client_port']} -> "
            f"{score.hosts[n['server']]}:{n['server_port']}".replace("\u2713", "?") for n in notes]
    assert [text for _, text in r.markers] == want
    assert any("h\u00f4te-?" in text for text in want)


def test_to_midi_takes_the_scores_orchestra_and_saves_like_export(tmp_path):
    score = synthetic_score(2_000, seed=3)
    score.orchestra = DEFAULT.updated({"rst": {"note": 57, "velocity": 127}}, "crash 2")
    midi = to_midi(score, stretch=3)
    rst = [m for m in midi.tracks[1 + KINDS.index("rst")] if m.type == "note_on"]
    assert rst and {(m.note, m.velocity) for m in rst} == {(57, 127)}
    midi.save(tmp_path / "a.mid")
    export_midi(score, tmp_path / "b.mid", stretch=3)
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()


def test_empty_score_has_six_silent_named_tracks(tmp_path):
    score = synthetic_score(0)
    export_midi(score, tmp_path / "empty.mid")
    midi = mido.MidiFile(tmp_path / "empty.mid")
    assert [t.name for t in midi.tracks[1:]] == KINDS
    assert not [m for t in midi.tracks for m in t if m.type in ("note_on", "note_off", "marker")]


def test_ticks_from_absolute_times_do_not_drift(tmp_path):
    """Notes 0.3 ms apart (0.6 tick) for 20,000 notes: summed rounded gaps would drift by
    seconds; the file keeps every note within half a tick of its time."""
    score = synthetic_score(20_000, seed=1)
    score.notes["time_ns"] = np.arange(20_000) * 300_000
    r = export_and_read(score, tmp_path, "drift", 1)
    on = np.sort(np.concatenate([t.on for t in r.tracks]))
    assert np.abs(on * r.tick_ns - score.notes["time_ns"]).max() <= r.tick_ns / 2


# --- heard through FluidSynth ---------------------------------------------------------------------

def render(mid: Path) -> tuple[np.ndarray, int]:
    """The MIDI file as FluidSynth plays it: mono samples (-1..1) and the sample rate."""
    if not shutil.which("fluidsynth") or not SOUNDFONT.exists():
        missing("fluidsynth is not installed")
    wav = mid.with_suffix(".wav")
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "1", "-F", wav, "-r", "44100", SOUNDFONT, mid],
                   check=True, capture_output=True, timeout=60)
    with wave.open(str(wav)) as w:
        assert w.getsampwidth() == 2 and w.getframerate() == 44100
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
    return frames.mean(axis=1) / 32768, 44100


def level(samples: np.ndarray, rate: int, start_s: float, end_s: float) -> float:
    """Peak amplitude between two times."""
    return float(np.abs(samples[max(0, int(start_s * rate)):int(end_s * rate)]).max())


def onset(samples: np.ndarray, rate: int, t: float, threshold: float = 1e-3) -> float:
    """When the sound first passes ``threshold`` around time ``t`` (s)."""
    lo = int((t - 0.1) * rate)
    return (lo + int(np.argmax(np.abs(samples[lo:int((t + 0.1) * rate)]) > threshold))) / rate


def test_fluidsynth_plays_a_real_capture_where_the_score_says(tmp_path, corpus):
    """latency2.pcapng ten times slower: SYN at 0, SYN-ACK 8.785 s later, ACK 0.166 s after it."""
    score = compose([corpus / "latency2.pcapng"]).score
    export_midi(score, tmp_path / "latency2.mid", stretch=10)
    samples, rate = render(tmp_path / "latency2.mid")
    syn, syn_ack, ack = score.notes["time_ns"] * 10 / 1e9
    assert syn == 0 and 8.7 < syn_ack < 8.8 and ack - syn_ack > 0.15
    for t in (syn, syn_ack, ack):
        assert level(samples, rate, t, t + 0.05) > 0.02, t          # struck
    assert level(samples, rate, syn + 1, syn_ack - 0.01) < 1e-3       # the long wait for the answer: silence
    assert -0.002 < onset(samples, rate, syn_ack) - syn_ack < 0.04   # the answer starts on time
    assert level(samples, rate, ack, ack + 0.04) > 2 * level(samples, rate, ack - 0.04, ack - 0.005)


def test_fluidsynth_sounds_every_kind_on_time(tmp_path):
    """One note of each kind, 1 s apart in the score, 2.5 s apart once stretched."""
    score = synthetic_score(6)
    score.notes["time_ns"] = np.arange(1, 7) * 1_000_000_000
    score.notes["kind"] = np.arange(6)
    score.notes["attempt"] = np.arange(1, 7)
    export_midi(score, tmp_path / "kinds.mid", stretch=2.5)
    samples, rate = render(tmp_path / "kinds.mid")
    assert level(samples, rate, 0, 2.4) < 1e-3  # silence before the first note
    for t in score.notes["time_ns"] * 2.5 / 1e9:
        assert level(samples, rate, t - 0.5, t - 0.002) < 1e-3, t  # the note before has died away
        assert level(samples, rate, t, t + 0.06) > 0.02, t
        assert -0.002 < onset(samples, rate, t) - t < 0.04, t


# --- safety -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stretch", [0, -1, float("nan"), float("inf"), "ten", None, True])
def test_stretch_must_be_a_number_above_zero(tmp_path, stretch):
    with pytest.raises(HandshakeScoreError, match="stretch must be a number above 0"):
        export_midi(synthetic_score(10), tmp_path / "a.mid", stretch=stretch)
    assert not list(tmp_path.iterdir())


def test_existing_file_is_kept_unless_forced(tmp_path):
    path = tmp_path / "a.mid"
    score = synthetic_score(100)
    assert_kept_unless_forced(lambda p, **kw: export_midi(score, p, **kw), path, {"stretch": 0}, "stretch")
    assert mido.MidiFile(path).type == 1


def test_orchestra_made_in_code_is_checked(tmp_path):
    bad = Orchestra({**DEFAULT.instruments, "ack": Instrument(128, 90)}, "bad")
    with pytest.raises(HandshakeScoreError, match=r"\[ack\] note: 128"):
        export_midi(synthetic_score(10), tmp_path / "a.mid", orchestra=bad)
    assert not list(tmp_path.iterdir())


def test_a_gap_longer_than_midi_holds_is_an_error(tmp_path):
    score = synthetic_score(3)
    score.notes["time_ns"] = [0, 1, 135_000 * 10**9]  # 37.5 h: past 2^28 ticks of 0.5 ms
    with pytest.raises(HandshakeScoreError, match="more than a MIDI file can hold"):
        export_midi(score, tmp_path / "a.mid")
    export_midi(score, tmp_path / "a.mid", stretch=0.5)  # the same, twice as fast, fits


def test_interrupted_export_leaves_the_old_file(tmp_path):
    """Ctrl-C while the file is being written: the old file is intact and no part file is left."""
    path = tmp_path / "a.mid"
    path.write_bytes(b"previous")
    code = ("import sys; sys.path.insert(0, 'tests'); from synthetic import synthetic_score; "
            "from handshake_score.midi import export_midi; "
            f"export_midi(synthetic_score(300_000), {str(path)!r}, force=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.suffix == ".part" for p in tmp_path.iterdir()):  # it is writing now
        assert proc.poll() is None and time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["a.mid"]


def test_synthetic_score_is_plausible_and_repeatable():
    a, b = synthetic_score(5_000, seed=4), synthetic_score(5_000, seed=4)
    assert len(a) == 5_000 and (a.notes == b.notes).all() and a.hosts == b.hosts
    assert not (a.notes == synthetic_score(5_000, seed=5).notes).all()
    time_ns = a.notes["time_ns"]
    assert (np.diff(time_ns) >= 0).all() and (np.diff(time_ns) == 0).any()   # in order, with equal times
    assert (np.diff(time_ns) > 2 * 10**9).any()                                # and long pauses
    assert set(np.unique(a.notes["kind"]).tolist()) == set(range(6))
    assert {ipaddress.ip_address(h).version for h in a.hosts} == {4, 6}
    first = np.unique(a.notes["attempt"], return_index=True)[1]
    assert (np.diff(first) > 0).all() and a.notes["attempt"][0] == 1       # numbered by first note


def test_max_gap_shortens_silences_as_play_and_render_do(tmp_path, corpus):
    # captures years apart: no MIDI file holds those gaps, unless --max-gap shortens them
    from handshake_score.timing import output_times_ns

    names = ["tcp_handshake.pcapng", "latency2.pcapng", "bgp-bgpsec.pcap"]
    score = compose([corpus / n for n in names]).score
    with pytest.raises(HandshakeScoreError, match="more than a MIDI file can hold.*--max-gap"):
        to_midi(score, stretch=10)
    export_midi(score, tmp_path / "tour.mid", stretch=10, max_gap=1.5)
    r = read(score, tmp_path / "tour.mid", 10)
    want = output_times_ns(score.notes["time_ns"], 10, 1.5)
    got = np.full(len(score), -1, np.int64)
    for k, track in enumerate(r.tracks):
        got[score.notes["kind"] == k] = np.sort(track.on) * 500_000  # notes of a kind are in time order
    assert np.abs(got - want).max() <= HALF_MS // 2
    assert np.diff(np.sort(want)).max() <= 1_500_000_000
