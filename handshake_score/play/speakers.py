"""The speakers performer: the sounds of ``hs render``, live through the sound card.

sounddevice (PortAudio) pulls audio from a callback in its own thread; a
strike hands that callback a voice: the kind's sound (the very arrays
``hs render`` mixes), panned by the client host. So that a strike is placed to
the sample and not merely to the next buffer, each voice is stamped with the
stream's clock at the strike and starts :attr:`SpeakersPerformer.delay_s`
later in output time: how far ahead of the sound card the callback runs (as
measured in the first callback; PortAudio's own ``latency`` says a period
short under JACK) plus two blocks, a constant, so the spacing of the notes is
kept to the sample. A strike the conductor cued is placed by its deadline, not by
the moment of the call, so a call held up by another performer at the same moment
does not move the sound.

What a loaded machine can break is said, not hidden: a voice that reaches the callback
after its place has passed (the callback ran behind) begins at once and is counted late,
and every underrun PortAudio reports is counted; :meth:`SpeakersPerformer.report` says both.
The stream runs at the device's own rate (a JACK server at 48 kHz takes nothing else).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..errors import HandshakeScoreError
from ..orchestra import Orchestra
from .performer import LivePerformer, Part, keep

BLOCK_FRAMES = 256  # 5.8 ms at 44.1 kHz
LATE_FRAMES = 44    # a voice begun this far past its place (1 ms at 44.1 kHz) is counted late


def open_sounddevice():
    """The sounddevice module, or one line saying why there is no sound here."""
    try:
        import sounddevice
    except OSError:  # its import fails when the PortAudio library is missing
        raise HandshakeScoreError("no sound output here: the PortAudio library is not installed "
                                  "(Debian: libportaudio2); hs render -o OUT.wav writes the sound to a file") from None
    try:
        sounddevice.query_devices(kind="output")
    except Exception:  # noqa: BLE001 - sounddevice.PortAudioError or ValueError: no default output device
        raise HandshakeScoreError("no sound card here: PortAudio finds no output device; "
                                  "hs render -o OUT.wav writes the sound to a file") from None
    return sounddevice


class SpeakersPerformer(LivePerformer):
    """Plays each note's sound on the default output device (or ``device``)."""

    name = "speakers"
    needs = "a sound card: PortAudio (Debian's libportaudio2) with an output device"
    # a voice handed to the callback's queue; but reading the stream's clock lets PortAudio's thread take
    # Python's lock for its mix (~15 us), and the voice is placed by its deadline anyway: after the others
    cost = 15.0

    @classmethod
    def build(cls, band, options, *, live):
        return cls(band)

    @classmethod
    def check(cls):
        try:
            open_sounddevice()
        except HandshakeScoreError as e:
            return str(e).split(";")[0]
        return None

    def __init__(self, orchestra: Orchestra, *, device=None, rate: int | None = None):
        from ..render import kind_sounds

        sd = open_sounddevice()
        if rate is None:  # the device's own rate: a JACK server, for one, takes no other
            try:
                rate = round(sd.query_devices(device, "output")["default_samplerate"])
            except Exception as e:  # noqa: BLE001 - sounddevice.PortAudioError, ValueError: a bad device
                raise HandshakeScoreError(f"cannot open the sound output: {e}") from None
        self.rate = rate
        self.sounds = kind_sounds(orchestra, rate)
        self._voices: deque = deque()  # (start in stream seconds, stereo sound) handed to the callback
        self._playing: list = []        # the callback's own: [next frame of the sound, stereo sound]
        self._lock = threading.Lock()
        try:
            self.stream = sd.OutputStream(samplerate=rate, channels=2, dtype="float32", blocksize=BLOCK_FRAMES,
                                          latency="low", device=device, callback=self._fill)
            self.underruns = 0
            self.late = 0  # voices begun past their place
            self._lead_s = None
            self._measured = threading.Event()
            self.stream.start()
        except Exception as e:  # noqa: BLE001 - PortAudio's errors
            raise HandshakeScoreError(f"cannot open the sound output: {e}") from None
        self._measured.wait(1.0)
        lead = self._lead_s if self._lead_s and self._lead_s > 0 else self.stream.latency
        self.delay_s = max(lead, self.stream.latency) + 2 * BLOCK_FRAMES / rate
        self._lead_min_s = max(lead, self.stream.latency) + BLOCK_FRAMES / rate  # a voice placed later is late
        self._placed: dict[int, tuple] = {}  # cued notes: (deadline perf_counter_ns, the voice's stereo sound)
        self._sounded: int | None = None

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        self._kinds, self._gains = [], []
        self.add(score, 0, len(score))
        # a release when each sound has rung out: the performance ends after the last one has
        ring_ns = round((self.delay_s + max(len(x) for x in self.sounds) / self.rate) * 1e9)
        return Part.on_time(times_ns, release_after_ns=ring_ns)

    def add(self, score, note: int, end: int | None = None) -> None:
        from ..render import host_gains

        notes = score.notes[note: note + 1 if end is None else end]
        keep(self._kinds, note, notes["kind"].tolist())
        if score.hosts:  # the gains of the hosts these notes name, not of every host (a live score grows)
            used, which = np.unique(notes["client"], return_inverse=True)
            keep(self._gains, note, list(host_gains([score.hosts[h] for h in used.tolist()])[which]))
        else:  # a MIDI file's notes: no hosts, in the middle
            keep(self._gains, note, [np.full(2, np.sqrt(0.5), np.float32)] * len(notes))

    def _stereo(self, note: int) -> np.ndarray:
        """The note's sound panned: made before it is due, so the audio callback (which holds
        Python's lock while it mixes, and so holds up every other performer) only adds."""
        return self.sounds[self._kinds[note]][:, None] * self._gains[note]

    def cue(self, note: int, at_ns: int) -> None:
        self._placed[note] = (at_ns, self._stereo(note))

    def strike(self, note: int) -> bool:
        now, (at, stereo) = self.stream.time, self._placed.pop(note, (None, None))
        # placed by its deadline: the call's lateness taken out (both clocks read now, so they agree)
        late = (time.perf_counter_ns() - at) / 1e9 if at is not None else None
        if late is None or late > self.delay_s - self._lead_min_s:  # live (not cued), or too late for its place
            late, at = 0.0, None
        self._voices.append((now + self.delay_s - late, stereo if stereo is not None else self._stereo(note)))
        self._sounded = at
        return True

    def sounded_ns(self) -> int | None:
        """The deadline, where the voice was placed by it; None where it was placed by the call."""
        return self._sounded

    def _fill(self, out: np.ndarray, frames: int, when, status) -> None:
        """PortAudio's callback: mix what sounds in this buffer."""
        if status.output_underflow:
            self.underruns += 1
        if self._lead_s is None:  # how far ahead of the card this callback runs
            self._lead_s = when.outputBufferDacTime - when.currentTime
            self._measured.set()
        out.fill(0)
        with self._lock:
            while self._voices:
                start, snd = self._voices.popleft()
                # where in this buffer the voice begins (negative: it is late, so begin now)
                offset = round((start - when.outputBufferDacTime) * self.rate)
                if offset < -LATE_FRAMES:
                    self.late += 1
                self._playing.append([-offset if offset > 0 else 0, snd])
            kept = []
            for voice in self._playing:
                at, snd = voice
                lead = -at if at < 0 else 0  # frames of silence before it starts in this buffer
                if lead >= frames:
                    voice[0] = at + frames
                    kept.append(voice)
                    continue
                begin = max(at, 0)
                n = min(frames - lead, len(snd) - begin)
                out[lead:lead + n] += snd[begin:begin + n]
                voice[0] = begin + n
                if voice[0] < len(snd):
                    kept.append(voice)
            self._playing = kept

    def report(self) -> list[str]:
        said = [f"{self.late:,} note{'s' if self.late != 1 else ''} sounded late (the sound card's callback ran "
                "behind)"] if self.late else []
        said += [f"{self.underruns:,} underrun{'s' if self.underruns != 1 else ''} (the sound card ran out of "
                 "sound; notes around them may be late)"] if self.underruns else []
        return [f"  {'speakers':<10} {line}" for line in said]

    def silence(self) -> None:
        with self._lock:
            self._voices.clear()
            self._playing = []

    def close(self) -> None:
        self.silence()
        if not self.stream.closed:
            self.stream.stop()
            self.stream.close()
