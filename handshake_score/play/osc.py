"""The OSC performer: each note as an Open Sound Control message over UDP.

SuperCollider, Pure Data, Max, TouchDesigner and Sonic Pi all listen to OSC;
``docs/osc/`` has a receiver for three of them. Each note is one message,
addressed by its kind, with seven arguments::

    /hs/syn-ack  attempt client client_port server server_port delay_ms outcome
                 i       s      i           s      i           f        s

``delay_ms`` is the wait that ends with this note, in milliseconds of the
network's own time (not stretched): 0 for a SYN; SYN->SYN-ACK for a SYN-ACK and
SYN-ACK->ACK for an ACK (the score's delays); the retransmission wait since the
attempt's previous SYN for a ``syn-retry``, since its previous SYN-ACK for a
``syn-ack-retry``; since the attempt's previous note for an ``rst``. 0 where that
note is not in the score. ``outcome`` is what became of the attempt
(``complete``, ``refused``, ``unanswered``, ``incomplete``); live, it is not
known yet when most notes sound, so it is ``pending`` until a note settles it
(an ACK: ``complete``; a reset: ``refused`` before any SYN-ACK, else
``incomplete``). ``/hs/start`` (no arguments) comes before the first note and
``/hs/stop`` after the last, however the performance ends.

Timing. Playing a score, each message goes in a bundle whose timetag is the
moment the note is due plus ``latency_ms`` (default 50): the receiver holds it
and plays it exactly then, whatever the network's jitter. The timetag comes
from the conductor's deadline (:meth:`cue`), mapped to the wall clock with one
offset taken at the start of each pass, never from the moment of sending, so
a late or busy sender does not move it. Live, each bundle is timetagged
"immediately" unless a latency is given. A latency of 0 sends plain messages,
no bundles: the same "at once" to OSC, and the form receivers that drop bundles
take (Sonic Pi 3.2 among them). The bytes are made ahead, so :meth:`strike` is
one non-blocking ``send`` per target.

Several targets get the same bytes, each through a connected UDP socket of its
own: a port where nothing listens answers with an ICMP "port unreachable",
which makes a later send on that socket fail (``ECONNREFUSED``). Such sends are
counted per target and said in :meth:`report`; the performance goes on.

>>> from handshake_score.play import perform
>>> from handshake_score.play.osc import OscPerformer
>>> perform(score, [OscPerformer(["127.0.0.1:57120", "[::1]:9000"])], stretch=10)
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time

import numpy as np

from ..errors import HandshakeScoreError
from ..score import NO_DELAY
from ..tracker import Kind, Outcome
from .performer import LivePerformer, Option, Part, keep

DEFAULT_TARGET = "127.0.0.1:57120"  # sclang, SuperCollider's language, listens here by default
DEFAULT_LATENCY_MS = 50.0
PENDING = "pending"                 # live: the attempt's outcome is not known yet
TYPE_TAGS = ",isisifs"
NTP_DELTA_S = 2_208_988_800         # from NTP's epoch (1900) to the Unix epoch (1970)
IMMEDIATELY = struct.pack(">Q", 1)  # OSC's "play at once" timetag
BUNDLE = b"#bundle\0"
LIVE_ATTEMPTS = 1 << 16             # live: attempts whose notes are remembered for their delays

_SYN, _SYN_RETRY, _SYN_ACK, _SYN_ACK_RETRY, _ACK, _RST = range(len(Kind.ALL))
_PENDING = len(Outcome.ALL)         # an outcome code past the score's own


def ntp_timetag(unix_ns: int) -> bytes:
    """OSC's timetag for a moment in ns since the Unix epoch: NTP seconds and 2**-32 fractions,
    in integers (a float of seconds since 1900 keeps only about half a microsecond)."""
    return struct.pack(">Q", ((unix_ns + NTP_DELTA_S * 1_000_000_000) << 32) // 1_000_000_000)


def wall_offset_ns() -> int:
    """``time.time_ns() - time.perf_counter_ns()``, from the closest of a few readings (a
    reading the scheduler interrupted between the two clocks is off by as long)."""
    best = None
    for _ in range(7):
        a = time.perf_counter_ns()
        wall = time.time_ns()
        b = time.perf_counter_ns()
        if best is None or b - a < best[0]:
            best = (b - a, wall - (a + b) // 2)
    return best[1]


class Target:
    """One receiver: ``HOST:PORT`` resolved and a UDP socket connected to it, with its counts."""

    def __init__(self, text: str):
        host, port = parse_target(text)
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as e:
            why = e.strerror if isinstance(e, socket.gaierror) else "not a host name"
            raise HandshakeScoreError(f"--osc {text}: cannot resolve {host!r} ({why})") from None
        self.text = text
        self.address = address
        self.sock = socket.socket(family, kind, proto)
        try:
            self.sock.connect(address)  # so an ICMP "port unreachable" comes back as ECONNREFUSED
        except OSError as e:
            self.sock.close()
            raise HandshakeScoreError(f"--osc {text}: cannot send there ({e.strerror or e})") from None
        self.sock.setblocking(False)
        self.send = self.sock.send
        self.sent = 0
        self.failed: dict[int, int] = {}  # errno -> notes not sent

    def close(self) -> None:
        self.sock.close()

    def report(self) -> str:
        failed = sum(self.failed.values())
        tried = self.sent + failed
        where = f"  {'osc':<10} {self.text}"
        if not failed:
            return f"{where}: {self.sent:,} notes sent"
        reasons = "; ".join(_REASONS.get(e, os.strerror(e)) for e in sorted(self.failed, key=self.failed.get, reverse=True))
        return f"{where}: {failed:,} of {tried:,} notes not sent: {reasons}"


_REASONS = {
    errno.ECONNREFUSED: "nothing listens there (port unreachable)",
    errno.EAGAIN: "the send buffer was full",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EHOSTUNREACH: "the host is unreachable",
}


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` for an IPv6 address) as (host, port); one line naming
    ``--osc`` if it is not that."""
    form = f"--osc {text!r}: give HOST:PORT, such as {DEFAULT_TARGET} or [::1]:57120"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host:
            raise HandshakeScoreError(form)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise HandshakeScoreError(form)
        if ":" in host:
            raise HandshakeScoreError(f"--osc {text!r}: put an IPv6 address in brackets: [{host}]:{port}")
    if not (port.isdigit() and port.isascii() and 1 <= int(port) <= 65535):
        raise HandshakeScoreError(f"--osc {text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class OscPerformer(LivePerformer):
    """Sends each note to every target in ``targets`` (``HOST:PORT`` texts; default
    sclang's ``127.0.0.1:57120``), timetagged ``latency_ms`` ahead (default: 50 ms for a
    score, "immediately" live). Resolves and connects every target before anything
    plays: a bad one raises :class:`~..errors.HandshakeScoreError`."""

    name = "osc"
    cost = 4.0  # a send() of ~100 bytes per target: a few microseconds on loopback
    needs = "a receiver listening for OSC over UDP (SuperCollider's sclang listens on 127.0.0.1:57120); docs/osc/"
    options = (
        Option("osc", str, f"Where to send OSC, HOST:PORT ([::1]:PORT for IPv6); give it again for more "
                           f"receivers (default {DEFAULT_TARGET}, SuperCollider's language).",
               metavar="HOST:PORT", multiple=True),
        Option("osc-latency", float, f"Timetag each note this far ahead, so the receiver plays it on time "
                                     f"whatever the network's jitter (default {DEFAULT_LATENCY_MS:g} for a score; "
                                     "live, \"immediately\"); 0: plain messages, no bundle (Sonic Pi 3).",
               metavar="MS"),
    )

    @classmethod
    def build(cls, band, options: dict, *, live: bool) -> OscPerformer:
        return cls(options.get("osc") or [DEFAULT_TARGET], latency_ms=options.get("osc_latency"))

    @classmethod
    def check(cls) -> str | None:
        from importlib.util import find_spec

        return None if find_spec("pythonosc") else "python-osc is not installed (pip install python-osc)"

    def __init__(self, targets=(DEFAULT_TARGET,), latency_ms: float | None = None):
        from pythonosc.osc_message_builder import OscMessageBuilder
        from pythonosc.parsing import osc_types

        if latency_ms is not None and not 0 <= latency_ms <= 3_600_000:
            raise HandshakeScoreError(f"--osc-latency must be 0 or more milliseconds (at most an hour), not {latency_ms:g}")
        if isinstance(targets, str):
            targets = [targets]
        self.latency_ms = latency_ms
        if latency_ms != 0:  # timetagged ahead, a send a few microseconds late moves nothing: after the others
            self.cost = 50.0
        self.targets: list[Target] = []
        try:
            for text in targets:
                target = Target(text)
                same = next((t for t in self.targets if t.address == target.address), None)
                if same is not None:
                    target.close()
                    raise HandshakeScoreError(f"--osc {text} reaches the same receiver as {same.text}: give it once")
                self.targets.append(target)
        except BaseException:
            self.close()
            raise
        # the constant parts of every message, encoded once by python-osc
        self._string = osc_types.write_string
        self._heads = [osc_types.write_string(f"/hs/{k}") + osc_types.write_string(TYPE_TAGS) for k in Kind.ALL]
        self._nobody = osc_types.write_string("")
        self._outcomes = [osc_types.write_string(o) for o in (*Outcome.ALL, PENDING)]
        self._start = OscMessageBuilder("/hs/start").build().dgram
        self._stop = OscMessageBuilder("/hs/stop").build().dgram
        self._sends = [t.send for t in self.targets]
        self._ready: dict[int, bytes] = {}  # note -> its bundle, made by cue() or add()
        self._live = False
        self._started = False
        self._stopping = threading.Lock()   # held for good by the first silence()
        self._silent = False
        self._offset_ns = wall_offset_ns()
        self._t0 = None                     # the pass's output time 0, perf_counter_ns

    @property
    def _ahead_ns(self) -> int | None:
        """How far ahead each note is timetagged; None: "immediately" (or, with a latency
        of 0, no bundle at all)."""
        ms = self.latency_ms if self.latency_ms is not None else (None if self._live else DEFAULT_LATENCY_MS)
        return None if not ms else round(ms * 1e6)

    def _bundle(self, message: bytes, unix_ns: int | None) -> bytes:
        if self.latency_ms == 0:  # a plain message: "at once" too, for receivers that drop bundles
            return message
        tag = IMMEDIATELY if unix_ns is None else ntp_timetag(unix_ns)
        return BUNDLE + tag + len(message).to_bytes(4, "big") + message

    # --- what each note says ---

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        self._times = times_ns.tolist()
        self._hosts: list[bytes] = []
        notes = score.notes
        self._kinds = notes["kind"].tolist()
        self._attempts = notes["attempt"].tolist()
        self._client, self._client_port = notes["client"].tolist(), notes["client_port"].tolist()
        self._server, self._server_port = notes["server"].tolist(), notes["server_port"].tolist()
        self._outcome = notes["outcome"].tolist()
        self._recall = _Attempts(len(notes) or None)
        self._delays = self._recall.delays(notes)
        self._add_hosts(score)
        return Part.on_time(times_ns)

    def _add_hosts(self, score) -> None:
        self._hosts.extend(self._string(h) for h in score.hosts[len(self._hosts):])

    def _message(self, i: int) -> bytes:
        hosts, client, server = self._hosts, self._client[i], self._server[i]
        nobody = self._nobody  # a score read from a MIDI file has no addresses
        return b"".join((
            self._heads[self._kinds[i]], struct.pack(">i", self._attempts[i] & 0x7FFFFFFF),
            hosts[client] if client < len(hosts) else nobody, struct.pack(">i", self._client_port[i]),
            hosts[server] if server < len(hosts) else nobody,
            struct.pack(">if", self._server_port[i], self._delays[i]), self._outcomes[self._outcome[i]],
        ))

    # --- a score ---

    def cue(self, note: int, at_ns: int) -> None:
        t0 = at_ns - self._times[note]
        ahead = self._ahead_ns
        if t0 != self._t0:  # a new pass: the wall clock read again (it may have been slewed since)
            self._t0 = t0
            self._offset_ns = wall_offset_ns()
            if not self._started:
                self._started = True
                self._send_all(self._bundle(self._start, None if ahead is None else t0 + self._offset_ns + ahead))
        when = None if ahead is None else at_ns + self._offset_ns + ahead
        self._ready[note] = self._bundle(self._message(note), when)

    def strike(self, note: int) -> bool:
        data = self._ready.pop(note, None)
        if self._silent:
            return False
        if data is None:  # not cued (a caller of our own): timetagged from now
            ahead = self._ahead_ns
            data = self._bundle(self._message(note), None if ahead is None else time.time_ns() + ahead)
        sent = False
        for target in self.targets:
            try:
                target.send(data)
            except OSError as e:
                target.failed[e.errno] = target.failed.get(e.errno, 0) + 1
            else:
                target.sent += 1
                sent = True
        return sent

    # --- live ---

    def live(self) -> None:
        self._live = True
        if self._ahead_ns is None:
            self.cost = type(self).cost
        self._started = True
        self._send_all(self._bundle(self._start, None if self._ahead_ns is None else time.time_ns() + self._ahead_ns))

    def add(self, score, note: int) -> None:
        row = score.notes[note]
        kind, attempt = int(row["kind"]), int(row["attempt"])
        delay, outcome = self._recall.note(kind, attempt, int(row["time_ns"]), NO_DELAY, NO_DELAY)
        for values, value in ((self._kinds, kind), (self._attempts, attempt), (self._client, int(row["client"])),
                              (self._client_port, int(row["client_port"])), (self._server, int(row["server"])),
                              (self._server_port, int(row["server_port"])), (self._delays, delay),
                              (self._outcome, outcome)):
            keep(values, note, [value])
        self._add_hosts(score)
        ahead = self._ahead_ns
        self._ready[note] = self._bundle(self._message(note), None if ahead is None else time.time_ns() + ahead)

    # --- the end ---

    def _send_all(self, data: bytes) -> None:
        for send in self._sends:
            try:
                send(data)
            except OSError:  # a receiver that is not there is said by the notes' counts
                pass

    def silence(self) -> None:
        """Says ``/hs/stop`` once (timetagged as a note sent now would be, so it comes after
        the notes already sent), and sends nothing more."""
        if not self._stopping.acquire(blocking=False):
            return
        self._silent = True
        if self._started and self.targets:
            ahead = self._ahead_ns
            self._send_all(self._bundle(self._stop, None if ahead is None else time.time_ns() + ahead))

    def close(self) -> None:
        for target in self.targets:
            target.close()

    def report(self) -> list[str]:
        return [t.report() for t in self.targets]


class _Attempts:
    """Each attempt's latest notes, for the delay that ends each note (see the module's text)
    and, live, the outcome known so far. Live, only the last :data:`LIVE_ATTEMPTS` attempts
    are kept, so memory stays the same for months."""

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity or LIVE_ATTEMPTS
        self._seen: dict[int, list] = {}  # attempt -> [first SYN, last SYN, first SYN-ACK, last SYN-ACK, last note, outcome]

    def delays(self, notes: np.ndarray) -> list[float]:
        """A score's notes (in time order): each note's delay in ms."""
        return [self.note(k, a, t, d1, d2)[0] for k, a, t, d1, d2 in zip(
            notes["kind"].tolist(), notes["attempt"].tolist(), notes["time_ns"].tolist(),
            notes["syn_to_syn_ack_ns"].tolist(), notes["syn_ack_to_ack_ns"].tolist())]

    def note(self, kind: int, attempt: int, t: int, syn_to_syn_ack: int, syn_ack_to_ack: int) -> tuple[float, int]:
        """The next note of ``attempt``, at ``t`` ns: its delay in ms, and the outcome known so far."""
        seen = self._seen.get(attempt)
        if seen is None:
            if len(self._seen) >= self.capacity:
                del self._seen[next(iter(self._seen))]  # the oldest attempt
            seen = self._seen[attempt] = [None, None, None, None, None, _PENDING]
        first_syn, last_syn, first_syn_ack, last_syn_ack, last, _ = seen
        if kind == _SYN:
            delay = 0
        elif kind == _SYN_RETRY:
            delay = t - last_syn if last_syn is not None else 0
        elif kind == _SYN_ACK:
            delay = syn_to_syn_ack if syn_to_syn_ack != NO_DELAY else t - first_syn if first_syn is not None else 0
        elif kind == _SYN_ACK_RETRY:
            delay = t - last_syn_ack if last_syn_ack is not None else 0
        elif kind == _ACK:
            delay = syn_ack_to_ack if syn_ack_to_ack != NO_DELAY else t - first_syn_ack if first_syn_ack is not None else 0
        else:
            delay = t - last if last is not None else 0
        if kind in (_SYN, _SYN_RETRY):
            seen[0] = first_syn if first_syn is not None else t
            seen[1] = t
        elif kind in (_SYN_ACK, _SYN_ACK_RETRY):
            seen[2] = first_syn_ack if first_syn_ack is not None else t
            seen[3] = t
        if seen[5] == _PENDING:  # live: what this note settles
            if kind == _ACK:
                seen[5] = Outcome.ALL.index(Outcome.COMPLETE)
            elif kind == _RST:
                seen[5] = Outcome.ALL.index(Outcome.REFUSED if first_syn_ack is None else Outcome.INCOMPLETE)
        seen[4] = t
        return delay / 1e6, seen[5]
