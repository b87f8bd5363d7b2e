"""hs play --live: handshakes on loopback struck as they happen, through tcpdump in
libpcap's immediate mode, the same tracker and the same performers."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import missing
from handshake_score.capture.live import LiveCapture
from handshake_score.orchestra import DEFAULT
from handshake_score.play import ConsolePerformer, MidiPortPerformer
from handshake_score.play.live import perform_live
from handshake_score.score import compose
from handshake_score.scorefile import load_score
from loopback import V4, V6, ClosedPort, Server, complete, refused
from test_play import RecordingPort

HS = [sys.executable, "-m", "handshake_score"]


@pytest.fixture(scope="module")
def tcpdump():
    path = shutil.which("tcpdump")
    if not path:
        missing("tcpdump is not installed")
    return path


EXAMPLE = Path(__file__).resolve().parent.parent / "captures" / "example-loopback.pcapng"


def one_batch_a_call(batches):
    """``perform_live``'s packet source and ``running`` from an iterable of batches: one batch
    each call, as a quiet link brings them, until there are none."""
    batches, over = iter(batches), []

    def feed(timeout_s):
        batch = next(batches, None)
        if batch is None:
            over.append(True)
            return
        yield batch

    return feed, lambda: not over


class One:
    """A batch of one segment."""

    def __init__(self, segment):
        self.segment = segment

    def __len__(self):
        return 1

    def select(self, which=None):
        return self.segment


def filter_for(*ports: int) -> str:
    return " or ".join(f"tcp port {p}" for p in ports)


def test_every_handshake_struck_once_in_order_as_it_happens(tcpdump):
    out, port = io.StringIO(), RecordingPort()
    with Server(V4) as server, ClosedPort(V4) as closed, Server(V6) as server6:
        live = LiveCapture("lo", filter_for(server.port, closed.port, server6.port))
        try:
            live.start()
        except Exception as e:  # no capture rights here
            missing(f"tcpdump cannot capture on lo: {e}")
        done = threading.Event()
        made = []

        def traffic():
            made.extend(("complete", p) for p in complete(V4, server.port, 4))
            made.extend(("refused", p) for p in refused(V4, closed.port, 2))
            made.extend(("complete", p) for p in complete(V6, server6.port, 2))
            time.sleep(0.3)
            done.set()

        threading.Thread(target=traffic, daemon=True).start()
        try:
            result = perform_live(live.batches, [MidiPortPerformer(port, DEFAULT), ConsolePerformer(out)], DEFAULT,
                                  running=lambda: not done.is_set())
        finally:
            live.close()
    lines = out.getvalue().splitlines()
    kinds = [line.split()[1] for line in lines]
    # 6 complete handshakes (SYN, SYN-ACK, ACK) and 2 refused (SYN, RST), each once, in order
    assert kinds.count("SYN") == 8 and kinds.count("SYN-ACK") == 6 and kinds.count("ACK") == 6 and kinds.count("RST") == 2
    for client_port in (p for _, p in made):
        mine = [line.split()[1] for line in lines if f":{client_port} " in line + " "]
        assert mine in (["SYN", "SYN-ACK", "ACK"], ["SYN", "RST"]), (client_port, mine)
    ons = [m for _, m in port.sent if m.type == "note_on"]
    assert [m.note for m in ons] == [DEFAULT[k.lower()].note for k in kinds]
    assert result.played == {"midi": 22, "console": 22}
    # from each packet's capture timestamp to its strike: well under a second
    assert np.median(result.onset_ns) < 50_000_000


def test_hs_play_live_records_and_scores_what_it_played(tcpdump, tmp_path):
    with Server(V4) as server, ClosedPort(V4) as closed:
        p = subprocess.Popen([*HS, "play", "--live", "-i", "lo", "--filter", filter_for(server.port, closed.port),
                              "--record", "captures/live.pcapng", "--to", "console"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        started = ""
        while "Ctrl-C stops" not in started:
            started += p.stderr.readline()
            if p.poll() is not None or time.monotonic() > deadline:
                out, err = p.communicate()
                missing(f"hs play --live cannot capture here: {started}{err}")
        ports = complete(V4, server.port, 3) + refused(V4, closed.port, 1)
        lines = [p.stdout.readline() for _ in range(11)]  # 3 x (SYN, SYN-ACK, ACK) + SYN, RST
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 143, err
    assert "Traceback" not in err
    assert [line.split()[1] for line in lines] == ["SYN", "SYN-ACK", "ACK"] * 3 + ["SYN", "RST"]
    assert all(f":{port} " in "".join(lines) for port in ports)
    # the recording is a whole pcapng, and the score written from it is what hs score makes of it
    assert Path("captures/live.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    written = load_score("scores/live.score")
    again = compose(["captures/live.pcapng"]).score
    assert written.attempts() == 4 == again.attempts()
    assert np.array_equal(written.notes, again.notes) and written.hosts == again.hosts
    assert list(written.kinds()) == [line.split()[1].lower() for line in lines]
    assert not [f for f in os.listdir("captures") if f.startswith(".")]  # no temporary file left
    assert subprocess.run(["pgrep", "-f", f"tcp port {server.port}"], capture_output=True).returncode == 1  # no tcpdump left


@pytest.mark.parametrize("args, message", [
    (["--live", "s.score"], "--live plays the network, not a score file"),
    (["--live", "--stretch", "10"], "--stretch is for a score; --live plays as it happens"),
    (["s.score", "--record", "x.pcapng"], "--record is for --live"),
    (["--live", "--duration", "0"], "--duration must be a number of seconds above 0"),
])
def test_live_options_misused_are_one_line(args, message):
    Path("s.score").write_text("")
    r = subprocess.run([*HS, "play", *args], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("hs: error:") and message in r.stderr, r.stderr


def test_a_missing_interface_is_one_line(tcpdump):
    r = subprocess.run([*HS, "play", "--live", "-i", "no-such-if0", "--duration", "1"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("hs: error: tcpdump cannot capture on no-such-if0:")


def test_live_solenoids_hold_their_limits_with_no_plan():
    # the bundled capture's 14 notes come within 1 ms: live, with nothing planned ahead,
    # each coil takes the first and drops what comes before it may strike again
    from handshake_score.play.solenoids import SolenoidPerformer
    from handshake_score.sources import CaptureReader
    from coils import pins as changes, pulses

    feed, running = one_batch_a_call(CaptureReader(EXAMPLE).batches())
    sol = SolenoidPerformer(DEFAULT, dry_run=True)
    result = perform_live(feed, [sol], DEFAULT, running=running)
    pins = changes(sol)
    assert [len(pulses(pins[p])) for p in (17, 27, 22)] == [1, 1, 1]
    assert result.played == {"solenoids": 3} and result.dropped == {"solenoids": 11} and result.notes == 14
    assert all(abs(w - 15_000_000) < 4_000_000 for p in (17, 27, 22) for _, w in pulses(pins[p]))


def test_tcpdump_does_not_outlive_a_killed_hs(tcpdump):
    p = subprocess.Popen([*HS, "play", "--live", "-i", "lo", "--filter", "tcp port 9"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    started = ""
    while "Ctrl-C stops" not in started:
        line = p.stderr.readline()
        if not line:
            missing(f"hs play --live cannot capture here: {started}")
        started += line
    child = subprocess.run(["pgrep", "-P", str(p.pid), "tcpdump"], capture_output=True, text=True).stdout.split()
    assert len(child) == 1
    p.kill()  # no clean-up runs: the kernel's parent-death signal must stop tcpdump
    p.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child[0]}").exists() or "Z" in Path(f"/proc/{child[0]}/stat").read_text().split()[2]


def test_a_handshake_split_over_many_small_batches_is_whole():
    # packets a few at a time, as a quiet link brings them: every ACK still completes its handshake
    from handshake_score.sources import CaptureReader

    segments = np.concatenate(list(CaptureReader(EXAMPLE)))
    feed, running = one_batch_a_call(One(segments[i:i + 1]) for i in range(len(segments)))
    out = io.StringIO()
    result = perform_live(feed, [ConsolePerformer(out)], DEFAULT, running=running)
    kinds = [line.split()[1] for line in out.getvalue().splitlines()]
    assert kinds == [k.upper() for k in compose([EXAMPLE]).score.kinds()] and result.notes == 14


def test_a_live_score_is_a_ring_of_the_same_memory():
    # 14 notes through a ring of 4 slots: every line right, though every slot is reused
    from handshake_score.sources import CaptureReader

    segments = np.concatenate(list(CaptureReader(EXAMPLE)))
    out = io.StringIO()
    feed, running = one_batch_a_call(One(segments[i:i + 1]) for i in range(len(segments)))
    result = perform_live(feed, [ConsolePerformer(out)], DEFAULT, running=running, capacity=4)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [k.upper() for k in compose([EXAMPLE]).score.kinds()]
    assert lines[-1].split()[2] == "[::1]:49498" and result.notes == 14
