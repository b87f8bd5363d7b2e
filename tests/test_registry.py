"""The performer registry: every performer by name, loaded only when asked for; performers of
other packages through the ``handshake_score.performers`` entry points; each one's options
on ``hs play``'s command line; and what every registered performer promises (silence from
any thread), tested by iterating the registry, not a list written here.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, jack_server
from handshake_score.errors import HandshakeScoreError
from handshake_score.orchestra import DEFAULT
from handshake_score.play import Performer, perform, registry
from handshake_score.play.performer import LivePerformer
from handshake_score.scorefile import save_score
from test_play import score_of

HS = [sys.executable, "-m", "handshake_score"]
HEAVY = ("gpiozero", "rtmidi", "sounddevice", "pythonosc")


def test_hs_play_to_console_imports_no_heavy_library():
    save_score(score_of([0, 10, 20], ["syn", "syn-ack", "ack"]), "s.score")
    code = ("import sys\nfrom handshake_score.cli import main\nsys.argv = ['hs', 'play', 's.score', '--to', 'console']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr


def test_no_other_command_reads_the_performers():
    code = ("import sys\nfrom handshake_score.cli import main\nsys.argv = ['hs', 'orchestra']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('handshake_score.play.')), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "['handshake_score.play.command']"


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_performer_declares_itself(name):
    try:
        cls = registry.load(name)
    except HandshakeScoreError as e:  # a performer of hs's own always loads: the heavy library waits for build
        assert registry.find(name).origin != registry.OURS, e
        pytest.skip(str(e))
    assert issubclass(cls, Performer) and cls.name == name and cls.needs
    assert issubclass(cls, LivePerformer)  # every one of hs's plays --live too
    for option in cls.options:
        assert option.help and option.key == option.name.replace("-", "_")
    assert set(registry.defaults(cls)) == {o.key for o in cls.options}


# --- silence from any thread, for every registered performer ---------------------------------------------

SILENCE_CHECK = textwrap.dedent('''
    import json, sys, threading, time
    from handshake_score.orchestra import DEFAULT
    from handshake_score.play import perform, registry
    from handshake_score.scorefile import load_score

    name, options = sys.argv[1], json.loads(sys.argv[2])
    sent = []
    if name == "midi" and options.get("port") is None:
        # no ALSA sequencer here: a port of our own, which the performer takes as it takes mido's
        class Port:
            def send(self, message): sent.append(message)
        from handshake_score.play.midiport import MidiPortPerformer
        performer = MidiPortPerformer(Port(), DEFAULT)
    else:
        performer = registry.build(name, DEFAULT, options)
    failures, going = [], threading.Event()

    def hush():
        try:
            while not going.is_set():
                performer.silence()
                time.sleep(0.003)
        except BaseException as e:
            failures.append(repr(e))

    hushers = [threading.Thread(target=hush) for _ in range(3)]
    for t in hushers:
        t.start()
    try:
        result = perform(load_score("s.score"), [performer], stretch=1.0)
    finally:
        going.set()
        for t in hushers:
            t.join()
    performer.silence()  # after close, and again: any time, more than once
    performer.silence()
    pins = performer.pin_log() if hasattr(performer, "pin_log") else []
    print(json.dumps({"played": result.played[name], "refused": result.refused[name],
                      "dropped": result.dropped[name], "complete": result.complete,
                      "failures": failures, "pins": pins,
                      "midi": [[m.type, m.note] for m in sent]}))
''')

REHEARSAL = {"solenoids": {"dry_run": True}, "browser": {"web_port": 0}}  # how a performer that needs hardware (or a port) plays here


@pytest.mark.parametrize("name", registry.names())
def test_silence_may_be_called_from_any_thread(name, request, tmp_path):
    """Three threads silence the performer every 3 ms while it plays 40 notes over a second,
    then it is silenced twice more after it closed: nothing raises, the performance goes on,
    and where what sounds can be seen, nothing is left sounding."""
    try:
        cls = registry.load(name)
    except HandshakeScoreError as e:
        pytest.skip(str(e))
    options = dict(REHEARSAL.get(name, {}))
    env = None
    listener = None
    if name == "speakers":
        jack = jack_server(f"hs-registry-{os.getpid()}")  # JACK's dummy driver: a sound card paced by the clock
        env = jack.__enter__()
        request.addfinalizer(lambda: jack.__exit__(None, None, None))
    if name == "osc":
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        options["osc"] = [f"127.0.0.1:{listener.getsockname()[1]}"]
    if name == "midi" and cls.check() is None:  # a real port: a virtual one of rtmidi's
        import mido

        virtual = mido.open_input("hs-silence-test", virtual=True)
        request.addfinalizer(virtual.close)
        options["port"] = "hs-silence-test"
    save_score(score_of(np.arange(40) * 25, ["syn", "syn-ack", "ack", "rst"] * 10), "s.score")
    try:
        r = subprocess.run([sys.executable, "-c", SILENCE_CHECK, name, json.dumps(options)], capture_output=True,
                           text=True, env=env, timeout=60)
    finally:
        if listener is not None:
            listener.close()
    if r.returncode != 0 and "HandshakeScoreError" in r.stderr and name not in REHEARSAL and name != "midi":
        pytest.skip(f"{name} cannot play here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["failures"] == [] and got["complete"]
    assert got["played"] + got["refused"] + got["dropped"] == 40  # every note played, or refused (a silenced coil
    # strikes no more), or dropped by the plan: none lost
    last = {}
    for pin, _, state in got["pins"]:
        last[pin] = state
    assert all(state == 0 for state in last.values())
    sounding = set()
    for kind, note in got["midi"]:
        (sounding.add if kind == "note_on" else sounding.discard)(note)
    assert not sounding


# --- hs play reads the registry -----------------------------------------------------------------------------

def test_each_performers_options_are_under_its_name_in_the_help():
    r = subprocess.run([*HS, "play", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for name, cls in registry.loadable().items():
        if not cls.options:
            continue
        panel = text.index(f"--to {name} ")
        for option in cls.options:
            assert text.index(option.flag + " ", panel) > panel, (name, option.flag)
    assert text.index("--dry-run") > text.index("--to solenoids") > text.index("--timing-log")
    assert text.index("--port ") > text.index("--to midi")


def test_performers_lists_what_is_installed_and_what_each_needs():
    r = subprocess.run([*HS, "play", "--performers"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    heads = [line for line in r.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split(":")[0] for h in heads] == registry.names()
    for name, cls in registry.loadable().items():
        block = r.stdout.split(f"\n{name}:", 1)[-1] if name != registry.names()[0] else r.stdout
        assert cls.needs in block
    assert "console: ready" in r.stdout
    assert "--dry-run, --pin-log FILE, --too-soon drop|defer, --defer-limit MS" in r.stdout


# --- a performer from another package -------------------------------------------------------------------------

WOODPECKER = textwrap.dedent('''
    """A performer of another package: one line per strike in a file of its own."""
    from pathlib import Path

    from handshake_score.play.performer import LivePerformer, Option


    class Woodpecker(LivePerformer):
        name = "woodpecker"
        options = (Option("peck-file", Path, "Where the pecks go.", metavar="FILE"),
                   Option("peck-word", str, "What a peck says.", default="tok"))
        needs = "a file to write"
        cost = 1.0

        @classmethod
        def build(cls, band, options, *, live):
            return cls(options["peck_file"], options["peck_word"])

        def __init__(self, path, word):
            self.out, self.word = open(path or "pecks.txt", "w"), word

        def prepare(self, score, times_ns):
            self.kinds = score.notes["kind"].tolist()
            return super().prepare(score, times_ns)

        def add(self, score, note):
            pass

        def strike(self, note):
            self.out.write(f"{self.word} {self.kinds[note]}\\n")
            return True

        def silence(self):
            pass

        def close(self):
            self.out.close()

        def report(self):
            return ["  woodpecker pecked"]
''')


def other_package(where: Path, name: str = "woodpecker", target: str = "hs_woodpecker:Woodpecker",
                  source: str = WOODPECKER) -> dict:
    """``hs_woodpecker``, installed as a distribution would be: its module, and a ``.dist-info``
    whose entry_points.txt names it in the group, found by importlib.metadata on PYTHONPATH.
    Returns the environment hs runs in."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "hs_woodpecker.py").write_text(source)
    info = where / "hs_woodpecker-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hs-woodpecker\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\n{name} = {target}\n")
    return {**os.environ, "PYTHONPATH": f"{where}{os.pathsep}{ROOT}"}


def test_a_performer_of_another_package_plays_with_no_change_to_hs(tmp_path):
    env = other_package(tmp_path / "site")
    save_score(score_of([0, 20, 40, 60, 80], ["syn", "syn-ack", "ack", "syn", "rst"]), "s.score")
    r = subprocess.run([*HS, "play", "s.score", "--to", "woodpecker,console", "--peck-file", "out.txt",
                        "--peck-word", "tak", "--timing-log", "t.csv"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert Path("out.txt").read_text().splitlines() == ["tak 0", "tak 2", "tak 4", "tak 0", "tak 5"]
    assert len(r.stdout.splitlines()) == 5
    assert "woodpecker 5 strikes" in r.stderr and "  woodpecker pecked" in r.stderr
    rows = list(csv.DictReader(open("t.csv")))
    assert sum(row["performer"] == "woodpecker" and row["status"] == "played" for row in rows) == 5
    # it says what it is, and its options are hs play's, under its name
    listed = subprocess.run([*HS, "play", "--performers"], capture_output=True, text=True, env=env).stdout
    assert "woodpecker (from hs-woodpecker): ready" in listed and "--peck-file FILE" in listed
    shown = subprocess.run([*HS, "play", "--help"], capture_output=True, text=True, env={**env, "COLUMNS": "200"}).stdout
    assert shown.index("--peck-file") > shown.index("--to woodpecker")
    # an option of a performer not named is refused, as hs's own are
    r = subprocess.run([*HS, "play", "s.score", "--peck-word", "x"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.strip() == "hs: error: --peck-word is for --to woodpecker: give that too"


def test_a_performer_that_cannot_load_is_one_line_and_harms_no_other(tmp_path):
    env = other_package(tmp_path / "site", "broken", "hs_woodpecker:Woodpecker",
                        source="import no_such_library_here\n")
    save_score(score_of([0, 20], ["syn", "syn-ack"]), "s.score")
    r = subprocess.run([*HS, "play", "s.score"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
    r = subprocess.run([*HS, "play", "s.score", "--to", "broken"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "hs: error: --to broken: cannot load hs_woodpecker:Woodpecker: "
        "ModuleNotFoundError: No module named 'no_such_library_here'"]
    listed = subprocess.run([*HS, "play", "--performers"], capture_output=True, text=True, env=env).stdout
    assert "broken (from hs-woodpecker): cannot load: " in listed and "console: ready" in listed


def test_a_registry_entry_must_be_a_performer_of_its_name(tmp_path):
    env = other_package(tmp_path / "site", "tick", "hs_woodpecker:Woodpecker")
    save_score(score_of([0], ["syn"]), "s.score")
    r = subprocess.run([*HS, "play", "s.score", "--to", "tick"], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == ("hs: error: --to tick: hs_woodpecker:Woodpecker calls itself 'woodpecker'; "
                                "its name must be 'tick'")


def test_a_library_user_builds_performers_from_the_registry():
    assert registry.build("console", DEFAULT).stream is sys.stdout
    with pytest.raises(HandshakeScoreError, match="unknown performer 'drums'"):
        registry.build("drums", DEFAULT)
    with pytest.raises(HandshakeScoreError, match="--to console has no option port"):
        registry.build("console", DEFAULT, {"port": "x"})
    with pytest.raises(HandshakeScoreError, match="--to midi needs --port NAME"):
        registry.build("midi", DEFAULT, {})
    sol = registry.build("solenoids", DEFAULT, {"dry_run": True, "too_soon": "defer"}, live=True)
    assert sol.too_soon == "drop"  # live, nothing is planned: a strike too soon is dropped at its coil
    sol.close()


# --- at a moment they share, the cheapest is called first -----------------------------------------------------

class Timed(Performer):
    """Keeps the order of its calls in ``calls``; ``hold_s``: how long a strike takes."""

    def __init__(self, name, cost, calls, hold_s=0.0):
        self.name, self.cost, self.calls, self.hold_s = name, cost, calls, hold_s

    def strike(self, note):
        self.calls.append(self.name)
        if self.hold_s:
            import time

            time.sleep(self.hold_s)
        return True

    def silence(self):
        pass


def test_the_cheapest_performer_is_called_first_at_a_shared_moment():
    calls = []
    slow, quick = Timed("slow", 500.0, calls, hold_s=0.002), Timed("quick", 1.0, calls)
    result = perform(score_of([0, 30, 60], ["syn", "syn-ack", "ack"]), [slow, quick], timing_log="t.csv")
    assert calls == ["quick", "slow"] * 3 and result.played == {"slow": 3, "quick": 3}
    rows = list(csv.DictReader(open("t.csv")))
    assert [r["performer"] for r in rows] == ["quick", "slow"] * 3
    # the slow one's 2 ms never comes before the quick one's call
    for quick_row, slow_row in zip(rows[0::2], rows[1::2]):
        assert int(quick_row["actual_ns"]) <= int(slow_row["actual_ns"])
