"""The browser performer: a stage in the browser, for a classroom's projector.

``hs play SCORE --to browser`` (or ``--live --to browser,console``) starts the stage
(:mod:`.stage`, a small aiohttp server in a thread of its own) and prints its URL; the
page shows the handshakes as a sequence diagram as they happen (a density view when
they come too fast to follow) and sounds them with the very waveforms ``hs render``
mixes, through WebAudio. ``docs/browser.md`` shows it.

Each note goes to the page as one JSON message with the score's columns (``time_ns``,
``kind``, ``attempt``, ``client``, ``client_port``, ``server``, ``server_port``,
``outcome``, ``syn_to_syn_ack_ns``, ``syn_ack_to_ack_ns``), its index ``i``, the pass,
``pan`` (where ``hs render`` places its client host) and ``at``: when it is due, in the
stage's milliseconds (:meth:`.stage.Stage.ms`).

Timing. Playing a score, each note is handed to the stage :data:`AHEAD_NS` before it
is due: the conductor's :meth:`cue` gives the deadline (as it gives OSC's timetags), and
the notes up to a second past it go too. The page maps the stage's clock to its own
once, from the first frame it gets, and schedules each sound on the AudioContext clock
at its deadline: onsets keep the score's spacing (x stretch, ``--max-gap``) to the
sample, whatever the network's jitter, and the page plays as far behind hs as that first
frame took to arrive. :meth:`strike` then has nothing left to do. Live, there is no
plan: a note is handed over when it is struck, and drawn and sounded as it arrives.

Nothing waits for a browser (unless ``--wait-browser`` says so, before a score begins):
handing a note over is a deque append; a browser that cannot keep up misses notes,
counted in :meth:`report`.

>>> from handshake_score.play import perform
>>> from handshake_score.play.browser import BrowserPerformer
>>> stage = BrowserPerformer(score.orchestra, port=0)
>>> print(stage.url)   # open it, then:
>>> perform(score, [stage], stretch=10)
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time

import numpy as np

from ..errors import HandshakeScoreError
from ..score import NO_DELAY
from ..tracker import Kind, Outcome
from .performer import LivePerformer, Option, Part

AHEAD_NS = 1_000_000_000   # a score's notes go to the page this long before they are due
MAX_AHEAD_NOTES = 128      # ... at most this many at one cue (the rest at the next ones)
COUNTDOWN_S = 3            # --wait-browser: from the first browser to the first note
RHYTHM_CALLS_PER_S = 100   # SYNs a second the rhythm watch looks at; more (a flood) are passed by
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8700  # as in .stage (not imported: it imports aiohttp)

_SYN = Kind.ALL.index(Kind.SYN)
_NOTE, _LIVE, _STOP, _COUNTDOWN = range(4)


class BrowserPerformer(LivePerformer):
    """Serves the stage on ``host``:``port`` (default ``127.0.0.1:8700``; port 0: any free
    one) for orchestra ``band``, from the moment it is made (:attr:`url`) until :meth:`close`.
    ``wait_browser``: :meth:`prepare` returns only once a browser has opened the page (and
    :data:`COUNTDOWN_S` more). Raises :class:`~..errors.HandshakeScoreError` in one line
    if the address cannot be had."""

    name = "browser"
    needs = "a web browser (any recent one) on this machine, or on the network with --host"
    cost = 4.0  # live: a deque append, and at most one wake-up of the stage's loop
    options = (
        Option("host", str, "Where the stage listens: 127.0.0.1, this machine only; 0.0.0.0 (or ::) shares it "
                            "with the networks this machine is on, a classroom's projector or the students' "
                            "laptops (read-only).", default=DEFAULT_HOST, metavar="ADDRESS"),
        Option("web-port", int, "The stage's port; 0 picks a free one.", default=DEFAULT_PORT, metavar="PORT"),
        Option("wait-browser", bool, f"Playing a score: wait for a browser to open the stage, then count down "
                                     f"{COUNTDOWN_S} s (time to press its sound button) before the first note.", default=False),
    )

    @classmethod
    def build(cls, band, options: dict, *, live: bool) -> BrowserPerformer:
        if live and options.get("wait_browser"):
            raise HandshakeScoreError("--wait-browser is for a score; live, the page shows the network "
                                      "from the moment it opens")
        made = cls(band, host=options.get("host") or DEFAULT_HOST, port=options.get("web_port", DEFAULT_PORT),
                   wait_browser=bool(options.get("wait_browser")))
        print(f"hs: the stage is at {made.url} (open it in a browser)", file=sys.stderr, flush=True)
        return made

    @classmethod
    def check(cls) -> str | None:
        from importlib.util import find_spec

        return None if find_spec("aiohttp") else "aiohttp is not installed (pip install aiohttp)"

    def __init__(self, orchestra, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, wait_browser: bool = False):
        # imported now, not on the stage's loop mid-performance (an import holds Python's lock)
        from ..render import pan_position
        from ..rhythm import RhythmWatch, live_line
        from .stage import Stage

        self.orchestra = orchestra
        self.wait_browser = wait_browser
        self._session = secrets.token_hex(8)
        self._live = False
        self._prepared = False
        self._silent = False
        self._stopping = threading.Lock()  # held for good by the first silence()
        self._t0: int | None = None        # this pass's output time 0, perf_counter_ns
        self._pass = 0
        self._next = 0                     # the next note of this pass to hand over
        self._title = ""
        self._start_ns: int | None = None  # what a note's time 0 stands for, ns since the Unix epoch
        self._origin_said: int | None = None
        self._hosts: list[str] = []        # each host as JSON text
        self._host_names: list[str] = []
        self._pans: list[float] = []
        self._watch = None
        self._pan_position, self._rhythm_watch, self._live_line = pan_position, RhythmWatch, live_line
        self._watch_budget = [0.0, 0]      # (second, calls looked at in it)
        self.stage = Stage(host, port, encode=self._encode, hello=self._hello, sounds=self._sounds)
        self.stage.start()

    @property
    def url(self) -> str:
        """Where to open the stage: ``http://127.0.0.1:8700/``."""
        return self.stage.url

    def notices(self) -> list[str]:
        if self.stage.loopback:
            return []
        return [f"the stage is shared: anyone who can reach {self.url} can watch the handshakes (read-only); "
                "--host 127.0.0.1 keeps it to this machine"]

    # --- a score ---

    def prepare(self, score, times_ns: np.ndarray) -> Part:
        self._notes = score.notes
        self._times = times_ns.tolist()
        self._start_ns = score.start_ns
        self._title = ", ".join(s.name for s in score.sources[:3]) + (
            f" and {len(score.sources) - 3} more" if len(score.sources) > 3 else "")
        self._add_hosts(score)
        self._prepared = True
        self.cost = 50.0  # a score's notes went ahead with their deadlines: its strike moves nothing, so it comes last
        self.stage.greet()  # a page opened before learns what is coming
        if self.wait_browser:
            print(f"hs: waiting for a browser at {self.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
            self.stage.wait_for_viewer()
            for left in range(COUNTDOWN_S, 0, -1):
                self.stage.publish((_COUNTDOWN, left))
                time.sleep(1)
        return Part.on_time(times_ns)

    def cue(self, note: int, at_ns: int) -> None:
        times = self._times
        t0 = at_ns - times[note]
        if t0 != self._t0:  # a new pass: its notes from the first
            self._t0, self._next = t0, 0
            self._pass += 1
        j, publish, p = self._next, self.stage.publish, self._pass
        end = min(len(times), max(note + 1, j + MAX_AHEAD_NOTES))
        horizon = times[note] + AHEAD_NS
        while j < end and (j <= note or times[j] <= horizon):
            publish((_NOTE, j, p, t0 + times[j]))
            j += 1
        self._next = max(self._next, j)

    def strike(self, note: int) -> bool:
        if self._silent:
            return False
        if not self._live and note >= self._next:  # not cued (a caller of our own): due now
            self.stage.publish((_NOTE, note, self._pass, time.perf_counter_ns()))
        elif self._live:
            self.stage.publish((_LIVE, self._ready.pop(note, None), time.perf_counter_ns()))
        return True

    # --- live ---

    def live(self) -> None:
        self._live = True
        self.cost = type(self).cost
        self.stage.greet()
        self._ready: dict[int, tuple] = {}

    def add(self, score, note: int) -> None:
        self._add_hosts(score)
        self._ready[note] = (score.notes[note].item(), score.n - 1, score.start_ns)

    def _add_hosts(self, score) -> None:
        pan_position = self._pan_position
        for host in score.hosts[len(self._hosts):]:
            self._hosts.append(json.dumps(host))
            self._host_names.append(host)
            self._pans.append(round(pan_position(host), 3))

    # --- the end ---

    def silence(self) -> None:
        """Tells the pages to stop (a sound scheduled ahead is cancelled), and sends nothing more."""
        if not self._stopping.acquire(blocking=False):
            return
        self._silent = True
        self.stage.publish((_STOP, time.perf_counter_ns()))

    def close(self) -> None:
        self.stage.close()

    def report(self) -> list[str]:
        s = self.stage
        came = f"{s.came:,} browser{'s' if s.came != 1 else ''} came" + (f" ({s.most:,} at most at once)" if s.came > 1 else "")
        lines = [f"  {'browser':<10} {s.url}: {came}, {s.published:,} messages"]
        if s.dropped:
            lines[0] += (f"; {s.dropped:,} dropped for {s.slow:,} browser{'s' if s.slow != 1 else ''} too slow to "
                         "take them (hs never waits for one)")
        if s.ignored or s.too_big:
            said = [f"{s.ignored:,} messages from browsers ignored (the stage is read-only)"] if s.ignored else []
            if s.too_big:
                said.append(f"{s.too_big:,} closed for sending more than 4 KiB at once")
            lines.append(f"  {'':<10} " + "; ".join(said))
        return lines

    # --- on the stage's loop ---

    def _hello(self) -> str:
        from .. import version

        mode = "live" if self._live else "score" if self._prepared else "waiting"
        return json.dumps({
            "type": "hello", "session": self._session, "mode": mode, "version": version(),
            "title": self._title if not self._live else "live", "notes": len(self._times) if mode == "score" else None,
            "start_ns": None if self._start_ns is None else str(self._start_ns),
            "kinds": list(Kind.ALL), "outcomes": list(Outcome.ALL),
            "timbres": {k: self.orchestra[k].timbre for k in Kind.ALL}, "stopped": self._silent,
        })

    def _sounds(self, rate: int) -> bytes:
        """``/sounds/RATE``: the sound of each kind (``hs render``'s, at ``rate``), as
        little-endian uint32 count, the lengths, then the float32 samples one after the other."""
        from ..render import kind_sounds

        sounds = kind_sounds(self.orchestra, rate)
        head = np.array([len(sounds), *map(len, sounds)], "<u4").tobytes()
        return head + b"".join(np.asarray(s, "<f4").tobytes() for s in sounds)

    def _encode(self, item) -> list[str]:
        what = item[0]
        if what == _NOTE:
            _, i, p, at_ns = item
            return [self._note(self._notes[i].item(), i, p, at_ns)]
        if what == _LIVE:
            _, ready, at_ns = item
            if ready is None:
                return []
            values, i, start_ns = ready
            said = []
            if start_ns != self._origin_said:
                self._origin_said = self._start_ns = start_ns
                said.append(json.dumps({"type": "origin", "start_ns": str(start_ns)}))
            said.append(self._note(values, i, 1, at_ns))
            return said
        if what == _STOP:
            return [json.dumps({"type": "stop", "at": round(self.stage.at_ms(item[1]), 3)})]
        if what == _COUNTDOWN:
            return [json.dumps({"type": "countdown", "seconds": item[1]})]
        return []

    def _note(self, values: tuple, i: int, p: int, at_ns: int) -> str:
        t, kind, attempt, client_i, client_port, server_i, server_port, outcome, d1, d2, _ = values
        hosts = self._hosts
        client_text = hosts[client_i] if client_i < len(hosts) else '""'  # a score from a MIDI file has no hosts
        server_text = hosts[server_i] if server_i < len(hosts) else '""'
        pan = self._pans[client_i] if client_i < len(hosts) else 0
        caller = self._rhythm(kind, attempt, t, client_i, server_i, server_port, p) if hosts else None
        return (f'{{"type":"note","i":{i},"pass":{p},"live":{"true" if self._live else "false"},'
                f'"at":{self.stage.at_ms(at_ns):.3f},'
                f'"time_ns":{t},"kind":"{Kind.ALL[kind]}","attempt":{attempt},"client":{client_text},'
                f'"client_port":{client_port},"server":{server_text},"server_port":{server_port},'
                f'"outcome":{"null" if self._live else chr(34) + Outcome.ALL[outcome] + chr(34)},'
                f'"syn_to_syn_ack_ns":{"null" if d1 == NO_DELAY or self._live else d1},'
                f'"syn_ack_to_ack_ns":{"null" if d2 == NO_DELAY or self._live else d2},"pan":{pan}'
                + (f',"caller":{json.dumps(caller)}' if caller else "") + "}")

    def _rhythm(self, kind, attempt, t, client, server, port, p) -> str | None:
        """A caller that keeps a schedule, the first time this SYN makes it plain (the rhythm
        watch of ``hs play --live``), as a line; else None. Past :data:`RHYTHM_CALLS_PER_S`
        SYNs a second (a flood), the rest are passed by, so the watch costs a bounded share."""
        if kind != _SYN:
            return None
        second = int(time.monotonic())
        if self._watch_budget[0] != second:
            self._watch_budget = [second, 0]
        self._watch_budget[1] += 1
        if self._watch_budget[1] > RHYTHM_CALLS_PER_S:
            return None
        if self._watch is None or self._watch[0] != p:  # each pass is heard afresh
            self._watch = (p, self._rhythm_watch())
        names = self._host_names
        found = self._watch[1].call(names[client], names[server], port, t)
        return None if found is None else self._live_line(found)
