"""Rendering: a score as a WAV file of synthesised percussion, one sound per note kind.

Why these choices (``docs/render.md`` says more):

- Each timbre is a short numpy waveform (at most 0.3 s) made once per
  (timbre, velocity, rate), deterministic (its noise is seeded), at its
  loudest on sample 0: the onset of a note is its time, to the sample.
- Time: a note sounds at ``round(output_time * rate / 1e9)``, where the output
  time is the score time times ``stretch``, with every silence longer than
  ``max_gap`` shortened to it (:func:`~.timing.output_times_ns`, the rule ``hs play``
  shares). Integer nanoseconds, absolute times: rounding never accumulates.
- Streaming: the WAV's length is known before the first sample, so its header
  is written first and the audio follows block by block (65,536 frames),
  each block mixing only the notes that sound in it; a silent block is one
  buffer of zeros written again. Memory depends on the number of notes, not on
  the length of the audio.
- Loudness: a note at velocity 127 peaks at half of full scale (velocity
  squared below that), so a handshake on loopback (three notes within
  microseconds) does not clip; what still exceeds full scale is clipped.
- Stereo: each note is panned by its client host (a hash of the host's text,
  constant-power), so one host always sits at one place.
"""

from __future__ import annotations

import hashlib
import math
import os
import wave
from functools import lru_cache
from typing import Callable

import numpy as np

from .errors import HandshakeScoreError
from .files import atomic_write, check_writable
from .orchestra import TIMBRES, Orchestra
from .score import Score
from .timing import checked_max_gap, checked_stretch, output_times_ns
from .tracker import Kind

RATE = 44_100
BLOCK_FRAMES = 65_536
EMPTY_SECONDS = 0.5          # a score with no notes: this much silence
HEADROOM = 0.5               # peak of a note at velocity 127, of full scale
PAN_WIDTH = 0.8              # hosts spread over -0.8 (left) .. 0.8 (right)
FADE_S = 0.005               # every sound ends with a fade this long (no click when it stops)
MAX_WAV_BYTES = 0xFFFF_FFFF - 44  # a RIFF file's sizes are 32-bit
FULL_SCALE = 32767

ProgressFn = Callable[[int, int], None]


# --- timing ---------------------------------------------------------------------------------------------

def sample_indices(output_ns: np.ndarray, rate: int) -> np.ndarray:
    """The sample at which each output time falls: ``round(t * rate / 1e9)``."""
    return np.rint(np.asarray(output_ns, np.int64) * (rate / 1e9)).astype(np.int64)


# --- timbres --------------------------------------------------------------------------------------------

def amplitude(velocity: int) -> float:
    """Peak of a note (of full scale) at ``velocity`` 1-127: velocity squared, as synths do."""
    return HEADROOM * (velocity / 127) ** 2


@lru_cache(maxsize=64)
def sound(timbre: str, velocity: int, rate: int = RATE) -> np.ndarray:
    """The waveform of one strike (float32, full scale 1.0), its peak at sample 0 and
    :func:`amplitude` of ``velocity``. Read-only; the same arguments give the same array."""
    if timbre not in _MAKERS:
        raise HandshakeScoreError(f"unknown timbre {timbre!r} (the timbres are {', '.join(TIMBRES)})")
    wave_ = _MAKERS[timbre](rate)
    fade = min(len(wave_), max(1, int(FADE_S * rate)))
    wave_[-fade:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, fade))
    wave_ *= amplitude(velocity) / np.abs(wave_).max()
    out = wave_.astype(np.float32)
    out.setflags(write=False)
    return out


def _partials(rate: int, seconds: float, partials) -> np.ndarray:
    """Damped cosines (each at its peak at sample 0): (frequency Hz, amplitude, decay time constant s)."""
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros(len(t))
    for f, a, tau in partials:
        if f < rate / 2:
            out += a * np.cos(2 * np.pi * f * t) * np.exp(-t / tau)
    return out


def _woodblock(rate: int) -> np.ndarray:
    """A hollow knock: two partials near 1 kHz and a faint upper one, all gone within ~0.1 s."""
    return _partials(rate, 0.12, [(880, 1.0, 0.025), (1230, 0.6, 0.018), (2650, 0.15, 0.006)])


def _tin(rate: int) -> np.ndarray:
    """A small metal drum: inharmonic partials (ratios of a struck plate), ringing for ~0.3 s,
    with two close pairs that beat."""
    base = 540
    ratios = [(1.0, 1.0, 0.110), (1.006, 0.5, 0.110), (2.31, 0.7, 0.090), (3.57, 0.55, 0.070),
              (3.59, 0.3, 0.070), (5.12, 0.4, 0.050), (6.93, 0.3, 0.040), (8.77, 0.2, 0.030)]
    return _partials(rate, 0.30, [(base * r, a, tau) for r, a, tau in ratios])


def _click(rate: int) -> np.ndarray:
    """A dry click of 3 ms: an impulse and seeded white noise dying in about a millisecond."""
    n = max(4, int(0.003 * rate))
    rng = np.random.default_rng(75)
    out = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.0006 * rate))
    out[0] = 4.0  # the impulse: the click's peak is its first sample
    return out


def _noise(rate: int) -> np.ndarray:
    """A noise burst of 0.15 s (a reset): seeded white noise, gently brightened by a
    first-order filter, decaying with a 40 ms time constant."""
    n = int(0.15 * rate)
    rng = np.random.default_rng(49)
    white = rng.standard_normal(n + 1)
    out = (white[1:] - 0.3 * white[:-1]) * np.exp(-np.arange(n) / (0.040 * rate))
    out[0] = 1.2 * np.abs(out).max()  # its loudest at the first sample
    return out


_MAKERS = {"woodblock": _woodblock, "tin": _tin, "click": _click, "noise": _noise}
assert set(_MAKERS) == set(TIMBRES)


# --- placement ------------------------------------------------------------------------------------------

def pan_position(host: str) -> float:
    """Where ``host`` sits, -PAN_WIDTH (left) to PAN_WIDTH (right): from a hash of its text,
    so the same host is always at the same place, in every score."""
    h = int.from_bytes(hashlib.blake2b(host.encode(), digest_size=8).digest(), "big")
    return PAN_WIDTH * (2 * h / (2**64 - 1) - 1)


def pan_gains(position: float) -> tuple[float, float]:
    """Left and right gains of a position -1..1, constant power (their squares sum to 1)."""
    angle = (position + 1) * math.pi / 4
    return math.cos(angle), math.sin(angle)


def host_gains(hosts: list[str]) -> np.ndarray:
    """Left and right gains of each host (rows: hosts; float32)."""
    return np.array([pan_gains(pan_position(h)) for h in hosts] or np.zeros((0, 2)), np.float32).reshape(-1, 2)


def kind_sounds(orchestra: Orchestra, rate: int = RATE) -> list[np.ndarray]:
    """The sound of each note kind, in ``Kind.ALL`` order (kinds sharing a timbre and
    velocity share the array); the orchestra checked first."""
    return [sound(*_checked_instrument(orchestra, k), rate) for k in Kind.ALL]


# --- rendering ------------------------------------------------------------------------------------------

def render_wav(score: Score, path: str | os.PathLike, *, stretch: float = 1.0, max_gap: float | None = None,
               orchestra: Orchestra | None = None, rate: int = RATE, stereo: bool = True, force: bool = False,
               on_progress: ProgressFn | None = None) -> int:
    """Write ``score`` as a 16-bit PCM WAV at ``path``; returns the number of frames.

    Each note kind sounds its instrument's timbre at its velocity (``orchestra``,
    default the score's); ``stretch`` and ``max_gap`` place the notes
    (:func:`output_times_ns`); ``stereo`` pans each note by its client host.
    ``on_progress(done_frames, total_frames)`` is called after each block. An
    existing file is replaced only with ``force``; the file appears only once
    complete. A score without notes gives half a second of silence.
    """
    stretch = checked_stretch(stretch)
    max_gap = checked_max_gap(max_gap)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 192_000:
        raise HandshakeScoreError(f"sample rate must be a whole number of Hz from 8000 to 192000, not {rate!r}")
    sounds = kind_sounds(score.orchestra if orchestra is None else orchestra, rate)
    check_writable(path, force)  # before the work, not after it

    notes = score.notes
    channels = 2 if stereo else 1
    start = sample_indices(output_times_ns(notes["time_ns"], stretch, max_gap), rate)
    length = np.array([len(s) for s in sounds], np.int64)
    kind = notes["kind"].astype(np.intp)
    if len(kind) and kind.max() >= len(Kind.ALL):
        raise HandshakeScoreError(f"the score has a note of unknown kind {int(kind.max())}")
    total = int((start + length[kind]).max()) if len(start) else int(EMPTY_SECONDS * rate)
    if total * channels * 2 > MAX_WAV_BYTES:
        hours = total / rate / 3600
        raise HandshakeScoreError(
            f"{hours:.1f} h of audio is more than a WAV file can hold ({MAX_WAV_BYTES / (2 * channels * rate * 3600):.1f} h "
            f"{'stereo' if stereo else 'mono'} at {rate} Hz); use a smaller stretch, --max-gap or mono")
    order = np.argsort(start, kind="stable")
    start, kind = start[order], kind[order]
    if stereo:
        gains = host_gains(score.hosts)[notes["client"][order].astype(np.intp)]
    else:
        gains = np.ones((len(start), 1), np.float32)
    longest = int(length.max())

    with atomic_write(path, force) as f:
        w = wave.open(f, "wb")
        try:
            _write(w, channels, rate, total, start, kind, gains, sounds, longest, on_progress)
        except BaseException:
            try:
                w.close()  # now, while the file is open (else its finaliser fails later); the file is dropped
            except Exception:
                pass
            raise
        w.close()  # flushes; the file itself is atomic_write's to close
    return total


def _write(w: wave.Wave_write, channels: int, rate: int, total: int, start: np.ndarray, kind: np.ndarray,
           gains: np.ndarray, sounds: list[np.ndarray], longest: int, on_progress: ProgressFn | None) -> None:
    """The header, then the audio block by block."""
    w.setnchannels(channels)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.setnframes(total)  # known now: the header is right from the start, never rewritten
    silence = bytes(BLOCK_FRAMES * channels * 2)
    block = np.zeros((BLOCK_FRAMES, channels), np.float32)
    for b0 in range(0, total, BLOCK_FRAMES):
        b1 = min(total, b0 + BLOCK_FRAMES)
        lo = int(np.searchsorted(start, b0 - longest, "right"))
        hi = int(np.searchsorted(start, b1, "left"))
        if lo == hi:
            w.writeframesraw(silence[: (b1 - b0) * channels * 2])
        else:
            block[:] = 0
            _mix(block, b0, b1, start[lo:hi].tolist(), kind[lo:hi].tolist(), gains[lo:hi], sounds)
            pcm = np.clip(np.rint(block[: b1 - b0] * FULL_SCALE), -FULL_SCALE - 1, FULL_SCALE).astype("<i2")
            w.writeframesraw(pcm.tobytes())
        if on_progress is not None:
            on_progress(b1, total)


def _mix(block: np.ndarray, b0: int, b1: int, starts: list[int], kinds: list[int], gains: np.ndarray,
         sounds: list[np.ndarray]) -> None:
    """Add the notes that sound between frames b0 and b1 into ``block`` (frame 0 is b0)."""
    for s, k, g in zip(starts, kinds, gains):
        snd = sounds[k]
        a, e = max(b0, s), min(b1, s + len(snd))
        if e > a:
            block[a - b0:e - b0] += snd[a - s:e - s, None] * g


def _checked_instrument(orchestra: Orchestra, kind: str) -> tuple[str, int]:
    """The kind's timbre and velocity, checked (an orchestra made in code was never checked)."""
    if kind not in orchestra.instruments:
        raise HandshakeScoreError(f"orchestra {orchestra.name}: no instrument for {kind}")
    inst = orchestra[kind]
    if inst.timbre not in TIMBRES:
        raise HandshakeScoreError(f"orchestra [{kind}] timbre: {inst.timbre!r} is not one of {', '.join(TIMBRES)}")
    v = inst.velocity
    if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 127):
        raise HandshakeScoreError(f"orchestra [{kind}] velocity: {v!r} is not 1-127")
    return inst.timbre, v
