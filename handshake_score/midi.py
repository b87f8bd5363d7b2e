"""MIDI export: a score as a type 1 Standard MIDI File any sequencer or synth can play.

Why these choices (``docs/midi-export.md`` has the whole layout):

- Time: 120 beats per minute (500,000 us a beat, MIDI's own default, so even a
  reader that ignores the tempo gets the times right) at 1,000 ticks a beat:
  one tick is 0.5 ms, so a note is never more than 0.25 ms from its time.
- Ticks come from each note's absolute time, all at once with numpy; delta
  times are differences of absolute ticks, so rounding never accumulates over
  a long score.
- Percussion sounds on its own and does not need note-offs, but MIDI does: a
  note lasts :data:`NOTE_MS` and ends before the next strike of the same key
  (on any track), so a player never cuts a strike short with the end of the
  one before it.
- One track per note kind, named by it, so a sequencer shows, mutes and
  re-voices each kind; a first, conductor track holds the tempo and one marker
  per attempt. Each caller that keeps a schedule (:mod:`.rhythm`) has a track of
  its own after those, named after it (``192.168.1.23 -> 52.94.233.1:443 every
  15.0 s``), with its notes on their kinds' instruments: the heartbeat, to solo
  or mute. Its notes are on that track only.
- mido's messages are built with ``skip_checks`` (twice as fast) and the cycle
  collector paused: the values are Python ints, the orchestra's checked here.
  Building and saving 100,000 notes takes about 1 s, half of it mido's save.
"""

from __future__ import annotations

import hashlib
import io
import os

import mido
import numpy as np

from .errors import HandshakeScoreError
from .files import atomic_write, check_writable
from .gcpause import collector_paused
from .orchestra import Instrument, Orchestra
from .score import Score, bracketed
from .timing import checked_stretch, output_times_ns
from .tracker import Kind

TEMPO = 500_000                     # microseconds a beat
TICKS_PER_BEAT = 1_000
NS_PER_TICK = TEMPO * 1_000 // TICKS_PER_BEAT  # 500,000 ns: 0.5 ms
NOTE_MS = 30                        # how long a note sounds, in output time
NOTE_TICKS = NOTE_MS * 1_000_000 // NS_PER_TICK
RELEASE_VELOCITY = 64               # what a note-off says when there is no release velocity
MAX_DELTA = 0x0FFFFFFF              # the longest delta time a MIDI file can hold (4-byte variable length)


def export_midi(score: Score, path: str | os.PathLike, *, orchestra: Orchestra | None = None,
                stretch: float = 1.0, max_gap: float | None = None, force: bool = False) -> None:
    """Write ``score`` as a MIDI file at ``path`` (see :func:`to_midi`).

    An existing file is replaced only with ``force``; the file appears only once
    complete, so an interrupted export leaves the previous one as it was.
    """
    check_writable(path, force)  # before the work, not after it
    midi = to_midi(score, orchestra=orchestra, stretch=stretch, max_gap=max_gap)
    with atomic_write(path, force) as f:
        midi.save(file=f)


def to_midi(score: Score, *, orchestra: Orchestra | None = None, stretch: float = 1.0,
            max_gap: float | None = None, rhythm: bool = True) -> mido.MidiFile:
    """``score`` as a type 1 MIDI file: a conductor track, one track per note kind, then
    (with ``rhythm``) one per caller that keeps a schedule, most regular first.

    Time 0 of the file is time 0 of the score; ``stretch`` slows it down (10: ten
    times slower, so 1 ms between two packets becomes 10 ms); ``max_gap`` (seconds,
    after stretching) shortens every longer silence to it, as ``hs play`` and
    ``hs render`` do. ``orchestra`` (default: the score's) gives each kind its
    channel, key and velocity.
    """
    stretch = checked_stretch(stretch)
    orchestra = score.orchestra if orchestra is None else orchestra
    notes = score.notes
    kind = notes["kind"]
    instruments = [_checked_instrument(orchestra, k) for k in Kind.ALL]
    on = _ticks(notes["time_ns"], stretch, max_gap)
    key = np.array([i.channel * 128 + i.note for i in instruments], np.int64)[kind]
    off = _note_offs(on, key)
    rank = np.empty(len(on), np.int64)  # each note's place in the score, by time
    rank[np.argsort(on, kind="stable")] = np.arange(len(on))
    callers, caller_of = [], np.full(len(notes), -1)
    if rhythm:
        from .rhythm import find_rhythm

        found = find_rhythm(score)
        callers, caller_of = found.callers, found.caller_of
    alone = caller_of < 0
    voice = np.array([(i.channel, i.note, i.velocity) for i in instruments], np.int64)[kind]

    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    with collector_paused():
        midi.tracks.append(_conductor(score, orchestra, stretch, on))
        midi.tracks.extend(_note_track(name, _text(inst.name or name), (kind == k) & alone, on, off, rank, voice)
                           for k, (name, inst) in enumerate(zip(Kind.ALL, instruments)))
        midi.tracks.extend(_note_track(_text(c.describe().rsplit(" (", 1)[0][:200]), "handshakes on a schedule",
                                       caller_of == i, on, off, rank, voice) for i, c in enumerate(callers))
    return midi


def _note_track(name: str, instrument: str, mask: np.ndarray, on: np.ndarray, off: np.ndarray,
                rank: np.ndarray, voice: np.ndarray) -> mido.MidiTrack:
    """A track of the notes in ``mask`` (a note kind's, or a caller's): its name, then a
    note-on and a note-off per note, each on its own (channel, key, velocity) of ``voice``."""
    which = np.flatnonzero(mask)
    n = len(which)
    # events: the note-ons, then the note-offs; at one tick, a note-off goes first
    # (-1), unless its note has no length: then right after its own note-on
    # (2 * rank + 1) and before any later one
    tick = np.concatenate([on[which], off[which]])
    sounding = off[which] > on[which]
    seq = np.concatenate([2 * rank[which] + 1, np.where(sounding, -1, 2 * rank[which] + 2)])
    order = np.lexsort((seq, tick))
    delta = _deltas(tick[order], name)
    played = voice[np.concatenate([which, which])[order]]
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name),
                            mido.MetaMessage("instrument_name", name=instrument)])
    track.extend(
        mido.Message("note_on", skip_checks=True, channel=channel, note=note, velocity=velocity, time=d)
        if is_on else
        mido.Message("note_off", skip_checks=True, channel=channel, note=note, velocity=RELEASE_VELOCITY, time=d)
        for is_on, d, (channel, note, velocity) in zip((order < n).tolist(), delta.tolist(), played.tolist()))
    track.append(mido.MetaMessage("end_of_track"))
    return track


def _checked_instrument(orchestra: Orchestra, kind: str) -> Instrument:
    """The kind's instrument, its MIDI values checked: messages are built unchecked, and
    an orchestra made in code (not read by :func:`~.orchestra.load_orchestra`) was never checked."""
    if kind not in orchestra.instruments:
        raise HandshakeScoreError(f"orchestra {orchestra.name}: no instrument for {kind}")
    inst = orchestra[kind]
    for key, lo, hi in (("note", 0, 127), ("velocity", 1, 127), ("channel", 0, 15)):
        value = getattr(inst, key)
        if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
            raise HandshakeScoreError(f"orchestra [{kind}] {key}: {value!r} is not a MIDI value ({lo}-{hi})")
    return inst


def _ticks(time_ns: np.ndarray, stretch: float, max_gap: float | None = None) -> np.ndarray:
    """Absolute ticks of score times (ns), rounded to the nearest tick; with ``max_gap``,
    of their output times (:func:`~.timing.output_times_ns`)."""
    if len(time_ns) and time_ns.min() < 0:
        raise HandshakeScoreError("the score has notes before its start (time < 0): MIDI cannot place them")
    if max_gap is not None:
        return np.rint(output_times_ns(time_ns, stretch, max_gap) / NS_PER_TICK).astype(np.int64)
    return np.rint(time_ns * (stretch / NS_PER_TICK)).astype(np.int64)


def _note_offs(on: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Each note's note-off tick: NOTE_TICKS after its note-on, but a tick before the next
    note-on of the same key (channel and note), on whatever track: at one tick, players
    merge tracks in their own order. A note struck again at its own tick has no length."""
    order = np.lexsort((on, key))  # by key, then time, then place in the score
    t, k = on[order], key[order]
    end = t + NOTE_TICKS
    same = k[1:] == k[:-1]
    end[:-1] = np.where(same, np.clip(t[1:] - 1, t[:-1], end[:-1]), end[:-1])
    off = np.empty_like(on)
    off[order] = end
    return off


def _deltas(ticks: np.ndarray, track: str) -> np.ndarray:
    """Delta times of sorted absolute ticks; a gap MIDI cannot hold is an error."""
    delta = np.diff(ticks, prepend=0)
    if len(delta) and delta.max() > MAX_DELTA:
        at = int(np.argmax(delta))
        raise HandshakeScoreError(
            f"{track}: {delta[at] * NS_PER_TICK / 3.6e12:.1f} h pass between two events, more than a MIDI file "
            f"can hold ({MAX_DELTA * NS_PER_TICK / 3.6e12:.1f} h); use --max-gap, a smaller stretch or a shorter score")
    return delta


def _conductor(score: Score, orchestra: Orchestra, stretch: float, on: np.ndarray) -> mido.MidiTrack:
    """The first track: name, tempo, and a marker at each attempt's first note."""
    notes = score.notes
    first = score.first_notes()
    hosts = [_text(bracketed(h)) for h in score.hosts]
    sources = ", ".join(s.name for s in score.sources) or "no capture"
    track = mido.MidiTrack([
        mido.MetaMessage("track_name", name=_text(f"handshakes: {sources}"[:200])),
        mido.MetaMessage("text", text=_text(f"{score.tool}; orchestra {orchestra.name}; stretch {stretch:g}")),
        mido.MetaMessage("set_tempo", tempo=TEMPO),
    ])
    rows = notes[first]
    delta = _deltas(on[first], "markers")
    track.extend(
        mido.MetaMessage("marker", skip_checks=True, text=f"#{a} {hosts[c]}:{cp} -> {hosts[s]}:{sp}", time=d)
        for a, c, cp, s, sp, d in zip(rows["attempt"].tolist(), rows["client"].tolist(), rows["client_port"].tolist(),
                                      rows["server"].tolist(), rows["server_port"].tolist(), delta.tolist()))
    track.append(mido.MetaMessage("end_of_track"))
    return track


def _text(s: str) -> str:
    """``s`` as a MIDI text event can hold it (mido writes Latin-1): others become '?'."""
    return s.encode("latin-1", "replace").decode("latin-1")


def load_midi(path: str | os.PathLike, orchestra: Orchestra | None = None) -> Score:
    """A MIDI file (ours, or an arrangement a musician made of it) as a score to play.

    Each note-on whose channel and key an instrument of ``orchestra`` (default: the
    built-in one) plays becomes a note of that kind, at the file's own time (its tempo
    map read by mido); the first instrument listed wins where two share a key. Others
    are counted in ``options["unmapped_notes"]`` and left out. A MIDI file knows no
    addresses, attempts or outcomes, so the score has no hosts and attempt 0.
    """
    from .orchestra import DEFAULT
    from .score import KIND_CODE, NO_DELAY, NOTE, Source

    orchestra = DEFAULT if orchestra is None else orchestra
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        midi = mido.MidiFile(file=io.BytesIO(data))
    except OSError as e:
        raise HandshakeScoreError(f"{path}: cannot read: {e.strerror or e}") from None
    except (EOFError, ValueError, KeyError, IndexError, TypeError) as e:
        raise HandshakeScoreError(f"{path}: not a MIDI file mido can read ({e or type(e).__name__})") from None
    if midi.type == 2:
        raise HandshakeScoreError(f"{path}: a type 2 MIDI file (independent patterns) has no one timeline to play")
    kinds = {}
    for kind in reversed(Kind.ALL):
        inst = orchestra[kind]
        kinds[(inst.channel, inst.note)] = KIND_CODE[kind]
    times, codes, unmapped, now = [], [], 0, 0.0
    for msg in midi:  # every track merged, in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            code = kinds.get((msg.channel, msg.note))
            if code is None:
                unmapped += 1
            else:
                times.append(round(now * 1e9))
                codes.append(code)
    notes = np.zeros(len(times), NOTE)
    notes["time_ns"], notes["kind"] = times, codes
    notes["syn_to_syn_ack_ns"] = notes["syn_ack_to_ack_ns"] = NO_DELAY
    notes["source"] = 1
    source = Source(os.path.basename(path), len(data), hashlib.sha256(data).hexdigest(), None)
    return Score(notes, [], [source], 0, {"midi": source.name, "unmapped_notes": unmapped}, orchestra)


def is_midi_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts as a Standard MIDI File does."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"MThd"
    except OSError:
        return False
