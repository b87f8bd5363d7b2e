"""hs play: scores performed on solenoids (gpiozero's MockFactory), a MIDI port and the console.

Pins are checked from gpiozero's own record of their changes: the MockPins of the
coil driver's process, handed back as its pin log (the ``--pin-log`` a rehearsing
``hs play`` writes), never from what our code says it did. Times on this shared 2-core machine are held to
a few milliseconds here; the microsecond figures live in benchmarks/bench_play.py.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from coils import max_duty, pins, pulses
from conftest import KINDS, ROOT
from handshake_score.errors import HandshakeScoreError
from handshake_score.midi import export_midi, load_midi
from handshake_score.orchestra import DEFAULT
from handshake_score.play import ConsolePerformer, MidiPortPerformer, Performer, perform
from handshake_score.play.coil import DUTY_CAP, DUTY_WINDOW_NS, MAX_ON_NS, CoilRules
from handshake_score.play.solenoids import SolenoidPerformer, auto_stretch, coils_of
from handshake_score.score import NO_DELAY, NOTE, Score, Source, compose
from handshake_score.scorefile import load_score, save_score

HS = [sys.executable, "-m", "handshake_score"]
SAMPLE = ROOT / "scores" / "sample-loopback.score"
MS = 1_000_000
SLACK = 4 * MS  # how far a pin change may stray from its moment on this noisy machine


def score_of(times_ms, kinds) -> Score:
    """A score of notes at ``times_ms`` of ``kinds``, between two made-up hosts."""
    notes = np.zeros(len(times_ms), NOTE)
    notes["time_ns"] = np.round(np.asarray(times_ms, float) * MS)
    notes["kind"] = [KINDS.index(k) for k in kinds]
    notes["attempt"] = np.arange(1, len(notes) + 1)
    notes["client"], notes["server"] = 0, 1
    notes["client_port"], notes["server_port"] = 40000, 443
    notes["syn_to_syn_ack_ns"] = notes["syn_ack_to_ack_ns"] = NO_DELAY
    notes["source"] = 1
    return Score(notes, ["10.0.0.2", "192.0.2.80"], [Source("made.pcapng", 0, "0" * 64, 0)], 1_700_000_000 * 10**9)


def rehearse(score, **kw) -> tuple[SolenoidPerformer, object]:
    sol = SolenoidPerformer(kw.pop("orchestra", DEFAULT), dry_run=True, **{k: kw.pop(k) for k in ("too_soon", "defer_limit_ms") if k in kw})
    return sol, perform(score, [sol], **kw)


# --- solenoids: times, widths, limits ---------------------------------------------------------------

def test_pulses_at_their_times_and_widths():
    # syn on the woodblock (17), syn-ack on the tin drum (27), 100 ms apart on each coil
    times = [0, 40, 100, 140, 200, 240, 300, 340]
    score = score_of(times, ["syn", "syn-ack"] * 4)
    sol, result = rehearse(score, stretch=1.0)
    got = pins(sol)
    wood, tin = pulses(got[17]), pulses(got[27])
    assert len(wood) == len(tin) == 4 and pulses(got[22]) == []
    origin = wood[0][0]
    starts = np.array(sorted([s for s, _ in wood + tin])) - origin
    assert np.abs(starts - np.array(times) * MS).max() < SLACK
    for _, width in wood + tin:
        assert abs(width - 15 * MS) < SLACK
    assert result.played == {"solenoids": 8} and result.dropped == {"solenoids": 0}
    assert result.complete and result.passes == 1


def test_stretch_spreads_the_pulses():
    score = score_of([0, 50, 100], ["syn", "syn", "syn"])
    sol, _ = rehearse(score, stretch=2.5)
    starts = np.array([s for s, _ in pulses(pins(sol)[17])])
    assert np.abs(np.diff(starts) - 125 * MS).max() < SLACK


def test_dense_score_keeps_restrike_and_duty_limits():
    # 2 s of SYNs every millisecond on one coil: far more than it may strike
    score = score_of(np.arange(2000), ["syn"] * 2000)
    sol, result = rehearse(score, stretch=1.0)
    p = pulses(pins(sol)[17])
    starts = np.array([s for s, _ in p])
    assert np.diff(starts).min() >= 80 * MS - SLACK // 4
    assert max_duty(p) <= DUTY_CAP
    assert max(w for _, w in p) <= MAX_ON_NS
    # a strike too soon after a late one (a busy machine) is refused on the pins' times, and counted
    assert result.played["solenoids"] == len(p)
    assert result.dropped["solenoids"] + result.refused["solenoids"] == 2000 - len(p)
    assert 20 <= len(p) <= 26  # every 80 ms over 2 s


def test_duty_cap_holds_when_the_orchestra_would_break_it():
    # 90 ms pulses every 100 ms is 90 % on: the cap (25 % over any second) has the last word
    band = DEFAULT.updated({k: {"pulse_ms": 90.0, "restrike_ms": 100.0} for k in ("syn", "syn-retry", "ack")}, "hot")
    score = score_of(np.arange(0, 3000, 100), ["syn"] * 30)
    sol, result = rehearse(score, orchestra=band, stretch=1.0)
    p = pulses(pins(sol)[17])
    assert max_duty(p) <= DUTY_CAP
    assert max(w for _, w in p) <= MAX_ON_NS
    assert result.dropped["solenoids"] > 0 and len(p) >= 6


def test_defer_moves_a_strike_to_the_next_allowed_moment():
    score = score_of([0, 10, 20, 400], ["syn", "ack", "syn", "syn"])
    sol, result = rehearse(score, stretch=1.0, too_soon="defer", defer_limit_ms=200, timing_log="t.csv")
    starts = np.array([s for s, _ in pulses(pins(sol)[17])])
    assert len(starts) == 4
    assert np.abs((starts - starts[0]) - np.array([0, 80, 160, 400]) * MS).max() < SLACK
    assert result.deferred == {"solenoids": 2} and result.dropped == {"solenoids": 0}
    rows = list(csv.DictReader(open("t.csv")))
    assert [r["status"] for r in rows] == ["played", "deferred", "deferred", "played"]


def test_defer_gives_up_past_its_limit():
    score = score_of([0, 10, 20], ["syn"] * 3)
    _, result = rehearse(score, stretch=1.0, too_soon="defer", defer_limit_ms=100)
    # 10 ms -> 80 ms (70 ms late): deferred; 20 ms -> 160 ms (140 ms late): dropped
    assert result.deferred == {"solenoids": 1} and result.dropped == {"solenoids": 1}


class Stall(Performer):
    """A performer that hangs for a while on its first strike, as a stuck device might."""

    name = "stall"

    def strike(self, note):
        if note == 0:
            time.sleep(0.4)
        return True

    def silence(self):
        pass


def test_a_stalled_hs_does_not_hold_a_pulse_on():
    # the other performer hangs 0.4 s right after the coil's strike, before its release is due:
    # the coil driver ends the pulse itself, at its width
    score = score_of([0], ["syn"])
    sol = SolenoidPerformer(DEFAULT, dry_run=True)
    perform(score, [sol, Stall()], stretch=1.0)
    (start, width), = pulses(pins(sol)[17])
    assert abs(width - 15 * MS) < SLACK
    assert sol.report() == []  # no pulse ended late


class Boom(Performer):
    name = "boom"
    cost = 1000.0  # called after the solenoids at a moment they share

    def strike(self, note):
        if note == 2:
            raise RuntimeError("the performer broke")
        return True

    def silence(self):
        pass


def test_an_exception_in_a_performer_leaves_every_pin_low():
    # the coil is on (50 ms pulse; 20 % duty) when the other performer fails at the same moment
    band = DEFAULT.updated({k: {"pulse_ms": 50.0, "restrike_ms": 200.0} for k in ("syn", "syn-retry", "ack")}, "long")
    score = score_of([0, 250, 500, 750], ["syn"] * 4)
    sol = SolenoidPerformer(band, dry_run=True)
    with pytest.raises(RuntimeError, match="the performer broke") as raised:
        perform(score, [sol, Boom()], stretch=1.0)
    assert not raised.value.performance.complete and raised.value.performance.played["solenoids"] == 3
    for changes in pins(sol).values():
        assert not changes or changes[-1][1] == 0
    p = pulses(pins(sol)[17])
    assert len(p) == 3 and p[-1][1] < 30 * MS  # the third pulse was cut short, not left on


def test_restrike_must_exceed_the_pulse_and_kinds_on_a_coil_agree():
    with pytest.raises(HandshakeScoreError, match="pin 17 is given to syn, syn-retry, ack with different"):
        coils_of(DEFAULT.updated({"ack": {"restrike_ms": 120.0}}, "x"))
    with pytest.raises(HandshakeScoreError, match="not longer than the 50 ms pulse"):
        coils_of(DEFAULT.updated({"rst": {"pulse_ms": 50.0, "restrike_ms": 40.0}}, "x"))


def test_coil_rules_find_the_earliest_strike():
    rules = CoilRules(restrike_ns=80 * MS)
    assert rules.earliest(0, 15 * MS) == 0
    rules.record(0, 15 * MS)
    assert rules.earliest(10 * MS, 15 * MS) == 80 * MS
    # 250 ms of pulses in the last second: the next waits for the first to leave the window
    rules = CoilRules(restrike_ns=1)
    for k in range(10):
        rules.record(k * 30 * MS, k * 30 * MS + 25 * MS)
    at = rules.earliest(300 * MS, 25 * MS)
    assert at == 25 * MS + DUTY_WINDOW_NS - 25 * MS


def test_auto_stretch_is_the_least_factor_that_keeps_restrike():
    score = score_of([0, 10, 30, 2000], ["syn", "syn-ack", "ack", "syn"])  # syn->ack 30 ms on pin 17
    factor, coil = auto_stretch(score, DEFAULT)
    assert factor == pytest.approx(80 / 30, rel=0.05) and factor >= 80 / 30 and coil.pin == 17
    assert auto_stretch(score_of([0, 500], ["syn", "syn"]), DEFAULT) == (1.0, None)
    assert auto_stretch(score_of([0, 0], ["syn", "ack"]), DEFAULT)[0] == 1000
    sol, result = rehearse(score, stretch=factor)
    assert result.dropped == {"solenoids": 0}


# --- console and MIDI port ----------------------------------------------------------------------------

def test_console_prints_each_handshake_like_the_original_piece():
    out = io.StringIO()
    result = perform(load_score(SAMPLE), [ConsolePerformer(out)], stretch=1.0, max_gap=0.05, timing_log="t.csv")
    lines = out.getvalue().splitlines()
    assert len(lines) == 14 == result.played["console"]
    assert lines[0].split()[1:4] == ["SYN", "127.0.0.1:51856", "->"] and lines[0].endswith("#1")
    assert lines[1].split()[1:5] == ["SYN-ACK", "127.0.0.1:46279", "->", "127.0.0.1:51856"]
    assert "RST" in lines[10] and "-x-" in lines[10] and "[::1]:49498" in lines[11]
    assert "\x1b[" not in out.getvalue()
    rows = list(csv.DictReader(open("t.csv")))
    assert list(rows[0]) == ["pass", "note", "kind", "performer", "status", "time_ns", "scheduled_ns", "actual_ns"]
    late = [int(r["actual_ns"]) - int(r["scheduled_ns"]) for r in rows]
    assert [r["kind"] for r in rows] == list(load_score(SAMPLE).kinds())
    # never early; how little late is the benchmark's to say (bench_play.py), a loaded machine decides it
    assert min(late) >= 0 and np.median(late) < 50 * MS


def test_console_colours_each_kind():
    out = io.StringIO()
    perform(score_of([0, 1, 2], ["syn", "syn-ack", "rst"]), [ConsolePerformer(out, colour=True)])
    colours = [line.split("m", 1)[0] for line in out.getvalue().splitlines()]
    assert len(set(colours)) == 3 and all("\x1b[" in c for c in colours)


class RecordingPort:
    """A MIDI output port of our own (no ALSA sequencer here): keeps what it is sent, and when."""

    def __init__(self):
        self.sent: list[tuple[int, mido.Message]] = []
        self.closed = False

    def send(self, msg):
        self.sent.append((time.perf_counter_ns(), msg))

    def close(self):
        self.closed = True


def test_midi_port_gets_note_on_and_off_at_their_times():
    score = score_of([0, 20, 40, 41, 100], ["syn", "syn-ack", "ack", "syn", "rst"])
    port = RecordingPort()
    perform(score, [MidiPortPerformer(port, DEFAULT, close_port=True)], stretch=2.0)
    ons = [(t, m) for t, m in port.sent if m.type == "note_on"]
    offs = [(t, m) for t, m in port.sent if m.type == "note_off"]
    assert [m.note for _, m in ons] == [DEFAULT[k].note for k in ["syn", "syn-ack", "ack", "syn", "rst"]]
    assert all(m.channel == 9 and m.velocity == DEFAULT[k].velocity
               for (_, m), k in zip(ons, ["syn", "syn-ack", "ack", "syn", "rst"]))
    assert sorted(m.note for _, m in offs) == sorted(m.note for _, m in ons)
    t = np.array([t for t, _ in ons])
    assert np.abs((t - t[0]) - np.array([0, 40, 80, 82, 200]) * MS).max() < SLACK
    assert port.closed
    # every note-off comes after its note-on and before the next strike of its key
    sounding = set()
    for _, m in port.sent:
        if m.type == "note_on":
            assert m.note not in sounding
            sounding.add(m.note)
        else:
            sounding.discard(m.note)
    assert not sounding


def test_several_performers_at_once():
    out, port = io.StringIO(), RecordingPort()
    score = score_of([0, 100, 200], ["syn", "syn-ack", "ack"])
    sol = SolenoidPerformer(DEFAULT, dry_run=True)
    result = perform(score, [sol, MidiPortPerformer(port, DEFAULT), ConsolePerformer(out)])
    assert result.played == {"solenoids": 3, "midi": 3, "console": 3}
    assert len(out.getvalue().splitlines()) == 3 and len(port.sent) == 6
    assert len(pulses(pins(sol)[17])) == 2 and len(pulses(pins(sol)[27])) == 1


# --- MIDI files in -----------------------------------------------------------------------------------------

def test_a_midi_file_plays_as_its_score(tmp_path):
    score = load_score(SAMPLE)
    export_midi(score, "s.mid", stretch=10)
    again = load_midi("s.mid")
    assert list(again.kinds()) == list(score.kinds())
    assert np.abs(again.notes["time_ns"] - score.notes["time_ns"] * 10).max() <= 250_000  # half a tick
    assert again.hosts == [] and again.options["unmapped_notes"] == 0


def test_an_edited_arrangement_keeps_the_notes_the_orchestra_knows(tmp_path):
    export_midi(load_score(SAMPLE), "s.mid", stretch=10)
    mid = mido.MidiFile("s.mid")
    syn = mid.tracks[1]
    # a musician adds a cowbell (56, no instrument of ours) and moves the first SYN to a ride cymbal
    syn.insert(3, mido.Message("note_on", channel=9, note=56, velocity=80, time=0))
    first = next(i for i, m in enumerate(syn) if m.type == "note_on" and m.note == DEFAULT["syn"].note)
    syn[first] = syn[first].copy(note=51)
    mid.save("edited.mid")
    r = subprocess.run([*HS, "play", "edited.mid", "--stretch", "0.5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 notes on keys no instrument of the orchestra plays were left out" in r.stderr
    assert len(r.stdout.splitlines()) == 13
    assert r.stdout.splitlines()[0].split() == ["4.997500", "SYN-ACK"]  # the file's own times, in s


# --- the command ----------------------------------------------------------------------------------------------

def test_hs_play_rehearses_solenoids_and_console_with_logs():
    r = subprocess.run([*HS, "play", SAMPLE, "--to", "solenoids,console", "--dry-run", "--stretch", "100",
                        "--max-gap", "0.3", "--timing-log", "t.csv", "--pin-log", "p.csv"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 14
    assert "solenoids" in r.stderr and "dropped" in r.stderr
    rows = list(csv.DictReader(open("t.csv")))
    played = [x for x in rows if x["performer"] == "solenoids" and x["status"] == "played"]
    changes = list(csv.DictReader(open("p.csv")))
    assert len(changes) == 2 * len(played) > 0
    for row in played:  # each strike the log names is a rise of its pin within a millisecond
        assert any(c["state"] == "1" and 0 <= int(c["time_ns"]) - int(row["actual_ns"]) < MS for c in changes)
    assert {c["state"] for c in changes[-3:]} == {"0"}


def test_stretch_auto_says_what_it_chose():
    save_score(score_of([0, 10, 30], ["syn", "syn-ack", "ack"]), "s.score")
    r = subprocess.run([*HS, "play", "s.score", "--stretch", "auto"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "--stretch auto: 2.7 (pin 17 (syn, syn-retry, ack) re-strikes every 80 ms)" in r.stderr


def test_from_and_until_choose_the_notes(tmp_path):
    save_score(score_of([0, 100, 200, 300, 400], ["syn"] * 5), "s.score")
    for args, n in ((["--from", "0.1", "--until", "0.35"], 3), (["--to", "0.25"], 3), (["--from", "0.3", "--to", "console"], 2)):
        r = subprocess.run([*HS, "play", "s.score", *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.splitlines()) == n, args


@pytest.mark.parametrize("sig, again", [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, False),
                                        (signal.SIGINT, True), (signal.SIGTERM, True)])
def test_a_signal_mid_pulse_leaves_every_pin_low(tmp_path, sig, again):
    # 50 ms pulses every 250 ms for 10 s; the signal comes right after a strike, mid-pulse
    Path("long.toml").write_text("".join(f'[{k}]\npulse_ms = 50.0\nrestrike_ms = 200.0\n' for k in KINDS))
    save_score(score_of(np.arange(0, 10_000, 250), ["syn", "syn-ack"] * 20), "s.score")
    p = subprocess.Popen([*HS, "play", "s.score", "--to", "solenoids,console", "--dry-run", "--orchestra", "long.toml",
                          "--pin-log", "p.csv", "--timing-log", "t.csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for _ in range(3):
        assert p.stdout.readline()
    time.sleep(0.02)
    sent = time.perf_counter_ns()
    p.send_signal(sig)
    if again:  # an impatient second signal, while the first is being handled, must not cut the clean-up short
        time.sleep(0.0005)
        p.send_signal(sig)
    _, err = p.communicate(timeout=20)
    assert p.returncode == (130 if sig == signal.SIGINT else 128 + sig), err
    assert "Traceback" not in err and "every coil off" in err and "solenoids" in err
    changes = [(int(c["pin"]), int(c["time_ns"]), int(c["state"])) for c in csv.DictReader(open("p.csv"))]
    last = {pin: state for pin, _, state in changes}
    assert last == {17: 0, 27: 0}
    on, off = changes[-2], changes[-1]
    assert on[2] == 1 and off[2] == 0 and on[0] == off[0]
    # the last pulse no longer than its width (cut short by the signal, or over just before it was
    # heard on a busy machine), and no strike after the one moment the driver may already have been handed
    assert off[1] - on[1] <= 50 * MS + SLACK and on[1] < sent + 250 * MS
    assert Path("t.csv").exists() and "not-reached" in Path("t.csv").read_text()


def test_loop_plays_again_until_stopped():
    save_score(score_of([0, 100], ["syn", "ack"]), "s.score")
    p = subprocess.Popen([*HS, "play", "s.score", "--loop", "--timing-log", "t.csv"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    for _ in range(5):  # two notes a pass: the fifth line is the third pass
        assert p.stdout.readline()
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=20)
    passes = {int(r["pass"]) for r in csv.DictReader(open("t.csv")) if r["status"] == "played"}
    assert passes >= {1, 2, 3}


def test_plays_a_capture_the_test_records_itself(tmp_path, dumpcap):
    from loopback import V4, make_capture

    made = make_capture(dumpcap, tmp_path / "own.pcapng", [("complete", V4, 3), ("refused", V4, 1)])
    score = compose([tmp_path / "own.pcapng"]).score
    out = io.StringIO()
    perform(score, [ConsolePerformer(out)], max_gap=0.05)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [k.upper() for k in score.kinds()]
    assert len(made) == 4 and sum("RST" in line for line in lines) == 1


@pytest.mark.parametrize("args, message", [
    (["missing.score"], "missing.score"),
    (["s.score", "--stretch", "0"], "stretch must be a number above 0"),
    (["s.score", "--stretch", "-2"], "stretch must be a number above 0"),
    (["s.score", "--stretch", "fast"], "--stretch: 'fast' is not a number"),
    (["s.score", "--max-gap", "0"], "max-gap must be a number of seconds above 0"),
    (["s.score", "--to", "drums"], "unknown performer 'drums'"),
    (["s.score", "--to", "console,console"], "console is named twice"),
    (["s.score", "--to", "midi"], "--to midi needs --port"),
    (["s.score", "--to", "midi", "--port", "Nowhere"], "'Nowhere' is not a MIDI output port"),
    (["s.score", "--to", "solenoids", "--dry-run", "--orchestra", "pin40.toml"], "[syn] pin: 40 is outside 0-27"),
    (["s.score", "--to", "solenoids", "--dry-run", "--orchestra", "dup.toml"], "pin 27 is given to syn-ack, syn-ack-retry, rst"),
    (["s.score", "--to", "solenoids", "--dry-run", "--too-soon", "later"], "too-soon must be one of drop, defer"),
    (["s.score", "--pin-log", "p.csv"], "--pin-log is for --to solenoids: give that too"),
    (["s.score", "--to", "solenoids", "--pin-log", "p.csv"], "--pin-log records the rehearsal pins: give --dry-run too"),
    (["s.score", "--port", "FLUID"], "--port is for --to midi: give that too"),
    (["s.score", "--to", "console,drums9"], "unknown performer 'drums9'"),
    (["s.score", "--timing-log", "kept.csv"], "kept.csv: already exists"),
    (["notes.txt"], "notes.txt"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    save_score(score_of([0, 100], ["syn", "syn-ack"]), "s.score")
    Path("pin40.toml").write_text("[syn]\npin = 40\n")
    Path("dup.toml").write_text("[rst]\npin = 27\nrestrike_ms = 300.0\n")
    Path("kept.csv").write_text("mine")
    Path("notes.txt").write_text("not a score\n")
    r = subprocess.run([*HS, "play", *args], capture_output=True, text=True)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hs: error:") and message in lines[0], r.stderr
    assert r.stdout == "" and Path("kept.csv").read_text() == "mine"


def test_no_gpio_here_is_one_line():
    save_score(score_of([0], ["syn"]), "s.score")
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    r = subprocess.run([*HS, "play", "s.score", "--to", "solenoids"], capture_output=True, text=True, env=env)
    if Path("/dev/gpiochip0").exists():
        pytest.skip("this machine has GPIO")
    assert r.returncode == 2 and r.stderr.strip() == (
        "hs: error: no GPIO pins here: gpiozero found no pin library (lgpio on a Raspberry Pi); "
        "--dry-run rehearses on gpiozero's MockFactory")


def test_list_ports_says_when_there_are_none():
    r = subprocess.run([*HS, "play", "--list-ports"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    if not Path("/dev/snd/seq").exists():
        assert r.stdout.strip().startswith("no MIDI output ports here")


def test_progress_line_on_a_terminal():
    import pty

    save_score(score_of(np.arange(0, 1500, 100), ["syn", "syn"] * 7 + ["ack"]), "s.score")
    main, side = pty.openpty()
    r = subprocess.run([*HS, "play", "s.score", "--to", "solenoids", "--dry-run"], stderr=side,
                       stdout=subprocess.DEVNULL, timeout=30)
    os.close(side)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    text = shown.decode()
    assert r.returncode == 0, text
    lines = [part for part in text.split("\r\x1b[K") if " s left" in part]
    assert len(lines) >= 3  # about four a second over 1.4 s
    assert "s of 1.4 s" in lines[-1] and "played" in lines[-1] and "dropped" in lines[-1]
    assert "played 15 notes over 1.400 s" in text
