"""The MIDI port performer: note-on and note-off to a live MIDI port, through mido.

Ports are opened with mido's python-rtmidi backend, by their whole name or
the start of it (``hs play --list-ports`` lists them). Any object with mido's
``send(message)`` will do as the port, which is how the tests listen where no
ALSA sequencer exists. Each kind's messages are built once; a note lasts as
long as its solenoid pulse and ends before the next strike of its key. mido is
imported when a port is listed, opened or played, not with this module.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import numpy as np

from ..errors import HandshakeScoreError
from ..orchestra import Orchestra
from ..tracker import Kind
from .performer import EVENT, RELEASE, STRIKE, LivePerformer, Option, Part, keep

BACKEND = "mido.backends.rtmidi"
NO_PORTS = "no MIDI output ports here (is there an ALSA sequencer, /dev/snd/seq?)"


class MidiPortPerformer(LivePerformer):
    """Plays each note on ``port`` (an open mido output port, or anything with ``send``)
    with the orchestra's key, velocity and channel."""

    name = "midi"
    options = (
        Option("port", str, "The output port, by name or the start of it (see --list-ports).", metavar="NAME"),
        Option("list-ports", bool, "List the MIDI output ports and exit.", default=False),
    )
    needs = "a MIDI output port: ALSA's sequencer (/dev/snd/seq) and python-rtmidi; --port NAME"
    cost = 2.0  # one message to the sequencer, holding Python's lock: the first at a moment

    @classmethod
    def build(cls, band, options, *, live):
        if options["port"] is None:
            raise HandshakeScoreError("--to midi needs --port NAME (hs play --list-ports lists them)")
        return cls(open_port(options["port"]), band, close_port=True)

    @classmethod
    def query(cls, options):
        if options["list_ports"]:
            return "\n".join(output_names()) or NO_PORTS
        return None

    @classmethod
    def check(cls):
        return None if output_names() else NO_PORTS

    def __init__(self, port, orchestra: Orchestra, *, close_port: bool = False):
        import mido

        self.port = port
        self.close_port = close_port
        self._on = [mido.Message("note_on", channel=orchestra[k].channel, note=orchestra[k].note,
                                 velocity=orchestra[k].velocity) for k in Kind.ALL]
        self._off = [mido.Message("note_off", channel=orchestra[k].channel, note=orchestra[k].note)
                     for k in Kind.ALL]
        self._keys = [(orchestra[k].channel, orchestra[k].note) for k in Kind.ALL]
        self._length_ns = [round(orchestra[k].pulse_ms * 1e6) for k in Kind.ALL]
        self._sounding: set[int] = set()

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        self._kinds = score.notes["kind"].tolist()
        kinds = score.notes["kind"]
        ends = times_ns + np.array(self._length_ns, np.int64)[kinds]
        # a note ends no later than the next strike of its key
        key = np.array([c * 128 + n for c, n in self._keys])[kinds]
        order = np.lexsort((times_ns, key))
        same = key[order][1:] == key[order][:-1]
        nxt = np.full(len(order), np.iinfo(np.int64).max)
        nxt[:-1][same] = times_ns[order][1:][same]
        ends[order] = np.minimum(ends[order], nxt)
        n = len(times_ns)
        events = np.zeros(2 * n, EVENT)
        events["due_ns"][:n], events["due_ns"][n:] = times_ns, ends
        events["note"][:n] = events["note"][n:] = np.arange(n)
        events["action"][:n], events["action"][n:] = STRIKE, RELEASE
        return Part(events)

    def add(self, score, note: int) -> None:
        keep(self._kinds, note, [int(score.notes["kind"][note])])

    def hold_ns(self, note: int) -> int:
        return self._length_ns[self._kinds[note]]

    def strike(self, note: int) -> bool:
        kind = self._kinds[note]
        self.port.send(self._on[kind])
        self._sounding.add(kind)
        return True

    def release(self, note: int) -> None:
        kind = self._kinds[note]
        self.port.send(self._off[kind])
        self._sounding.discard(kind)

    def silence(self) -> None:
        for kind in list(self._sounding):
            self.port.send(self._off[kind])
        self._sounding.clear()

    def close(self) -> None:
        if self.close_port:
            self.port.close()

    def report(self) -> list[str]:
        name = getattr(self.port, "name", None)  # a mido port's; not every port-like object has one
        return [f"  midi       on port {name!r}"] if self.close_port and name else []


@contextmanager
def _quiet_stderr():
    """ALSA and RtMidi print their own complaints on file descriptor 2; we say it in one line."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        sys.stderr.flush()
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def output_names() -> list[str]:
    """The MIDI output ports there are (none where there is no MIDI system)."""
    try:
        import mido

        with _quiet_stderr():
            return mido.Backend(BACKEND).get_output_names()
    except Exception:  # noqa: BLE001 - rtmidi raises its own SystemError when there is no ALSA sequencer
        return []


def open_port(name: str):
    """The output port called ``name`` or whose name starts with it (case aside)."""
    names = output_names()
    exact = [n for n in names if n == name]
    found = exact or [n for n in names if n.lower().startswith(name.lower())]
    if len(found) != 1:
        there = ("the ports are: " + ", ".join(names)) if names else "there are no MIDI output ports here"
        what = "names several ports" if found else "is not a MIDI output port"
        raise HandshakeScoreError(f"{name!r} {what}; {there} (hs play --list-ports)")
    import mido

    try:
        with _quiet_stderr():
            return mido.Backend(BACKEND).open_output(found[0])
    except Exception as e:  # noqa: BLE001
        raise HandshakeScoreError(f"MIDI port {found[0]!r}: cannot open it: {e}") from None
