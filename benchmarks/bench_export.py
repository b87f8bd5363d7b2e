"""Time the MIDI export of a 100,000-note score: hs's export_midi against naive mido and symusic.

    python benchmarks/bench_export.py [--notes 100000] [--runs 5] [--out benchmarks/RESULTS-midi.md]

The score is tests/synthetic.py's (seeded). Each writer runs in this process, the writers
taking turns run by run so the noise of a shared machine falls on all of them; the table
gives the median. hs is timed end to end, from the score to a complete file (ticks, note-offs,
markers, mido messages, save, fsync and rename). The peers are given hs's events ready-made
(untimed) and timed building and writing the same file:

- naive mido: every message built with mido's checks (``mido.Message(...)``), then ``MidiFile.save``;
- symusic (C++): a ``symusic.Score`` from numpy arrays of the same notes, plus the markers, then ``dump_midi``.

Every output is read back by symusic and compared note by note with the score.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido
import numpy as np
import symusic

from machine import machine, publish  # benchmarks/machine.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))
from synthetic import synthetic_score  # noqa: E402

from handshake_score.midi import TEMPO, TICKS_PER_BEAT, export_midi, to_midi  # noqa: E402
from handshake_score.tracker import Kind  # noqa: E402


def events(midi: mido.MidiFile) -> list[list[tuple[str, dict]]]:
    """Each track's messages as (type, fields): what the naive writer builds again."""
    return [[(m.type, {k: v for k, v in m.dict().items() if k != "type"}) for m in t] for t in midi.tracks]


def naive_mido(tracks: list[list[tuple[str, dict]]], path: Path) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    for t in tracks:
        midi.tracks.append(mido.MidiTrack(
            mido.MetaMessage(kind, **fields) if kind in ("track_name", "instrument_name", "text", "set_tempo",
                                                         "marker", "end_of_track")
            else mido.Message(kind, **fields) for kind, fields in t))
    midi.save(path)


def symusic_notes(midi: mido.MidiFile) -> tuple[list[tuple[str, dict]], list[tuple[int, str]]]:
    """Per note track: its name and numpy arrays (time, duration, pitch, velocity); the markers."""
    out = []
    for t in midi.tracks[1:]:
        ticks = np.cumsum([m.time for m in t])
        on = [(tick, m.note, m.velocity) for tick, m in zip(ticks.tolist(), t) if m.type == "note_on"]
        off = [tick for tick, m in zip(ticks.tolist(), t) if m.type == "note_off"]
        a = np.array(on, np.int32).reshape(-1, 3)
        # one key a track, and no overlap: the k-th note-off ends the k-th note
        out.append((t.name, dict(time=a[:, 0], duration=np.array(off, np.int32) - a[:, 0],
                                 pitch=a[:, 1].astype(np.int8), velocity=a[:, 2].astype(np.int8))))
    ticks = np.cumsum([m.time for m in midi.tracks[0]])
    markers = [(tick, m.text) for tick, m in zip(ticks.tolist(), midi.tracks[0]) if m.type == "marker"]
    return out, markers


def symusic_write(notes, markers, path: Path) -> None:
    score = symusic.Score(TICKS_PER_BEAT)
    score.tempos.append(symusic.Tempo(0, mspq=TEMPO))
    for name, arrays in notes:
        score.tracks.append(symusic.Track(name, 0, True, symusic.Note.from_numpy(**arrays)))
    for tick, text in markers:
        score.markers.append(symusic.TextMeta(tick, text))
    score.dump_midi(path)


def check(score, path: Path, stretch: float = 1.0) -> str:
    """Read ``path`` with symusic: every note of every kind within 0.5 ms of the score's time?"""
    sym = symusic.Score(str(path))
    tick_ns = sym.tempos[0].mspq * 1000 / sym.ticks_per_quarter
    tracks = {t.name: np.sort(t.notes.numpy()["time"].astype(np.int64)) for t in sym.tracks}
    worst, n = 0.0, 0
    for k, kind in enumerate(Kind.ALL):
        want = np.sort(score.notes["time_ns"][score.notes["kind"] == k]) * stretch
        got = tracks.get(kind, np.zeros(0, np.int64)) * tick_ns
        if len(got) != len(want):
            return f"MISMATCH: {kind} {len(got)} notes, not {len(want)}"
        worst, n = max(worst, float(np.abs(got - want).max(initial=0))), n + len(got)
    markers = len(sym.markers)
    ok = worst <= 500_000 and markers == score.attempts()
    return (f"{n:,} notes, worst {worst / 1e6:.3f} ms off, {markers:,} markers" if ok
            else f"MISMATCH: worst {worst / 1e6:.3f} ms, {markers} markers")


def code_state() -> str:
    git = lambda *a: subprocess.run(["git", "-C", HERE.parent, *a], capture_output=True, text=True).stdout.strip()
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "handshake_score") else ""
    return f"- handshake_score: commit {git('rev-parse', '--short', 'HEAD') or '?'}{dirty}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "RESULTS-midi.md",
                    help="write the results here (default benchmarks/RESULTS-midi.md)")
    args = ap.parse_args(argv)

    score = synthetic_score(args.notes)
    ready = to_midi(score)  # the peers' events, made once, untimed
    naive_events = events(ready)
    sym_notes, sym_markers = symusic_notes(ready)
    with tempfile.TemporaryDirectory() as tmp:
        out = {name: Path(tmp, f"{name}.mid") for name in ("hs", "hs-build", "naive", "symusic")}
        writers = {
            "hs": ("hs `export_midi`", "score -> complete file (numpy ticks, unchecked mido messages, save, fsync)",
                   lambda: export_midi(score, out["hs"], force=True)),
            "hs-build": ("hs `to_midi`, no file", "score -> mido.MidiFile in memory (part of the line above)",
                         lambda: to_midi(score)),
            "naive": ("naive mido", "ready events -> checked `mido.Message(...)` each, `MidiFile.save`",
                      lambda: naive_mido(naive_events, out["naive"])),
            "symusic": ("symusic (C++)", "ready numpy arrays + markers -> `symusic.Score`, `dump_midi`",
                        lambda: symusic_write(sym_notes, sym_markers, out["symusic"])),
        }
        seconds = {name: [] for name in writers}
        for i in range(args.runs):
            for name, (_, _, run) in writers.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
                print(f"  run {i + 1}/{args.runs} {name}: {seconds[name][-1]:.3f} s", file=sys.stderr, flush=True)
        results = {name: check(score, out[name]) if name in out and out[name].exists() else "(in memory)"
                   for name in writers}
        identical = out["naive"].read_bytes() == out["hs"].read_bytes()

    hs = statistics.median(seconds["hs"])
    lines = [
        "# MIDI export", "",
        f"`python benchmarks/bench_export.py --notes {args.notes} --runs {args.runs}`: a {args.notes:,}-note synthetic "
        f"score ({score.attempts():,} attempts, tests/synthetic.py, seed 0) to a type 1 MIDI file, stretch 1. "
        "All in one process, writers taking turns, median of the runs. The peers get hs's events ready-made "
        "(untimed) and are timed building and writing the same file; every file is read back by symusic.", "",
        *machine(["numpy", "mido", "symusic", "handshake-score"]), code_state(), "",
        "| writer | what is timed | runs | median s | notes/s | vs hs | output read back by symusic |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, (title, what, _) in writers.items():
        med = statistics.median(seconds[name])
        x = med / hs
        vs = ("1x (itself)" if name == "hs" else f"{x:.0%} of hs's time" if name == "hs-build"
              else f"hs is {x:.1f}x faster" if x >= 1 else f"hs is {1 / x:.0f}x slower")
        result = results[name] + ("; byte-identical to hs's" if name == "naive" and identical else "")
        lines.append(f"| {title} | {what} | {args.runs} | {med:.3f} | {args.notes / med:,.0f} | {vs} | {result} |")
    target = "met" if hs < 2 else "NOT met"
    lines += ["", f"- Target: {args.notes:,} notes well under 2 s: **{target}** (median {hs:.3f} s; "
              f"runs {', '.join(f'{s:.3f}' for s in seconds['hs'])}).", ""]
    text = publish(lines, args.out)
    return 0 if "MISMATCH" not in text else 1


if __name__ == "__main__":
    sys.exit(main())
