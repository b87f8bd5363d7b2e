"""The console performer: a running log, one line a strike, as the original piece printed.

::

    12.818188  SYN      192.168.8.128:38962 -> 192.168.8.1:80      #3
    12.818588  SYN-ACK  192.168.8.1:80 -> 192.168.8.128:38962      #3

The time is seconds since the first packet of the note's capture, as tshark
shows it (a score of several captures restarts it at each), whatever the stretch.
The addresses of each note are made into text before the performance (for a
long score that is some memory), and each line when its strike is cued, so a
strike only writes it.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np

from ..score import bracketed
from ..tracker import Kind
from .performer import LivePerformer, Part, keep

COLOURS = {  # ANSI SGR, by kind: requests warm, responses cool, resets red
    Kind.SYN: "33", Kind.SYN_RETRY: "2;33", Kind.SYN_ACK: "36", Kind.SYN_ACK_RETRY: "2;36",
    Kind.ACK: "32", Kind.RST: "1;31",
}
CLEAR_LINE = "\r\x1b[K"  # so a progress line drawn on the same terminal is written over


class ConsolePerformer(LivePerformer):
    """Prints each note as it is struck to ``stream`` (default: standard output), in colour
    when ``colour`` (default: when the stream is a terminal)."""

    name = "console"
    needs = "nothing: one line a strike on standard output"
    cost = 3.0  # one write() of a line made ahead

    @classmethod
    def build(cls, band, options, *, live):
        return cls()

    def __init__(self, stream=None, colour: bool | None = None):
        self.stream = stream if stream is not None else sys.stdout
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.colour = tty if colour is None else colour
        self.prefix = CLEAR_LINE if tty else ""
        self._ready: dict[int, str] = {}  # cued lines, by note

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        # lists, not numpy rows: a line is made at its strike, where every microsecond counts
        self._seconds: list[float] = []
        self._kinds: list[int] = []
        self._routes = None if "midi" in getattr(score, "options", {}) else _Routes()  # a MIDI file has no addresses
        width = max(map(len, Kind.ALL))
        pad = width if self._routes is not None else 0  # a column to line up only where more follows
        self._labels = [(f"\x1b[{COLOURS[k]}m{k.upper():<{pad}}\x1b[0m" if self.colour else f"{k.upper():<{pad}}")
                        for k in Kind.ALL]
        self._write, self._flush = self.stream.write, self.stream.flush
        self._encoding = getattr(self.stream, "encoding", None) or "utf-8"
        self._fd = _descriptor(self.stream)  # a line cued is written by one write(2), past Python's buffers
        # each source's first packet, from the score's start (a live score has no sources: 0)
        self._origin = np.array([score.start_ns - (s.start_ns if s.start_ns is not None else score.start_ns)
                                 for s in score.sources] or [0], np.int64)
        self.add(score, 0, len(score))
        return Part.on_time(times_ns)

    def add(self, score, note: int, end: int | None = None) -> None:
        notes = score.notes[note: note + 1 if end is None else end]
        origin = self._origin
        since = notes["time_ns"] + origin[np.clip(notes["source"].astype(np.int64) - 1, 0, len(origin) - 1)]
        keep(self._seconds, note, (since / 1e9).tolist())
        keep(self._kinds, note, notes["kind"].tolist())
        if self._routes is not None:
            self._routes.add(note, notes, score.hosts)

    def line(self, note: int) -> str:
        """Note ``note``'s line, as a strike writes it."""
        kind = self._kinds[note]
        route = self._routes.line(note, kind) if self._routes is not None else ""
        return f"{self.prefix}{self._seconds[note]:11.6f}  {self._labels[kind]}{route}\n"

    def cue(self, note: int, at_ns: int) -> None:
        line = self.line(note)
        self._ready[note] = line.encode(self._encoding, "replace") if self._fd is not None else line

    def strike(self, note: int) -> bool:
        line = self._ready.pop(note, None)
        if line is None:  # live, nothing is cued
            line = self.line(note)
            if self._fd is not None:
                line = line.encode(self._encoding, "replace")
        if self._fd is None:
            self._write(line)
            self._flush()
            return True
        written = os.write(self._fd, line)
        while written < len(line):  # a terminal or pipe may take a long line in parts
            line = line[written:]
            written = os.write(self._fd, line)
        return True

    def silence(self) -> None:
        """Nothing sounds: a line once written is done."""


def _descriptor(stream) -> int | None:
    """The stream's file descriptor, its buffer flushed, if it has one (a StringIO has not)."""
    try:
        fd = stream.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return None
    stream.flush()
    return fd


class _Routes:
    """Who spoke to whom, per note, as text: responses run server to client, a reset both ways."""

    _BACK = {Kind.ALL.index(Kind.SYN_ACK), Kind.ALL.index(Kind.SYN_ACK_RETRY)}
    _RESET = Kind.ALL.index(Kind.RST)

    def __init__(self):
        self._client: list[str] = []
        self._server: list[str] = []
        self._attempt: list[int] = []
        self._hosts: list[str] = []  # the score's hosts, bracketed; a live score's list only grows

    def add(self, first: int, notes: np.ndarray, hosts: list[str]) -> None:
        self._hosts.extend(bracketed(h) for h in hosts[len(self._hosts):])
        hosts = self._hosts
        keep(self._client, first, [f"{hosts[h]}:{p}" for h, p in zip(notes["client"].tolist(), notes["client_port"].tolist())])
        keep(self._server, first, [f"{hosts[h]}:{p}" for h, p in zip(notes["server"].tolist(), notes["server_port"].tolist())])
        keep(self._attempt, first, notes["attempt"].tolist())

    def line(self, note: int, kind: int) -> str:
        a, b = self._client[note], self._server[note]
        arrow = f"{b} -> {a}" if kind in self._BACK else f"{a} -x- {b}" if kind == self._RESET else f"{a} -> {b}"
        return f"  {arrow:<47}  #{self._attempt[note]}"
