"""hs play --to osc, heard by an OSC implementation that is not ours: liblo's ``oscdump``.

oscdump prints every message it gets as ``TIMETAG /address types args...``, the
timetag in hex NTP (``seconds.fraction``): a bundle's own timetag, and for a
bundle timetagged "immediately" the moment it was received. It holds a bundle
timetagged ahead until that moment, so it prints in timetag order. liblo as
Debian builds it listens on IPv4 only: an IPv6 target is relayed to it by a
plain socket here, byte for byte.
"""

from __future__ import annotations

import csv
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, KINDS, OUTCOMES, missing
from handshake_score.score import NO_DELAY, compose
from handshake_score.scorefile import save_score
from handshake_score.timing import output_times_ns

HS = [sys.executable, "-m", "handshake_score"]
NTP_DELTA_NS = 2_208_988_800 * 10**9
LATENCY_NS = 50_000_000  # --osc-latency's default
MIXED = ["bgp-bgpsec.pcap", "nowebaccess3.pcapng", "http_ip4and6.pcapng", "latency2.pcapng",
         "resp_1_benchmark.pcap", "tcp_refuseconnection.pcapng", "tfo-5c1fa7f9ae91.pcap"]
"""Corpus captures with every kind of note but syn-ack-retry, refusals, retries, IPv4 and IPv6."""


def free_udp_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def osc_message(address: str) -> bytes:
    """An OSC message with no arguments, by hand."""
    def padded(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return raw + b"\0" * (-len(raw) % 4)
    return padded(address) + padded(",")


class Received:
    """One line of oscdump: the timetag as ns since the Unix epoch, the address, the arguments."""

    def __init__(self, line: str):
        fields = shlex.split(line)
        seconds, fraction = fields[0].split(".")
        ntp = int(seconds, 16) << 32 | int(fraction, 16)
        self.unix_ns = (ntp * 10**9 >> 32) - NTP_DELTA_NS
        self.address = fields[1]
        types = fields[2] if len(fields) > 2 else ""
        convert = {"i": int, "f": float, "s": str}
        self.args = [convert[t](v) for t, v in zip(types, fields[3:])]
        self.types = types

    def __repr__(self):
        return f"Received({self.unix_ns}, {self.address!r}, {self.args!r})"


class OscDump:
    """``oscdump -L PORT`` on a free port of 127.0.0.1, its lines read as they come; ready
    once it has printed a probe sent to it."""

    def __init__(self):
        for _ in range(10):  # a free port may be taken between finding it and oscdump binding it
            self.port = free_udp_port()
            self.proc = subprocess.Popen(["oscdump", "-L", str(self.port)], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
            self.lines: list[str] = []
            threading.Thread(target=self._read, daemon=True).start()
            if self._answers_probe():
                return
            self.close()
        raise RuntimeError("oscdump did not start on any port")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _answers_probe(self) -> bool:
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while time.monotonic() < deadline and self.proc.poll() is None:
                s.sendto(osc_message("/probe"), ("127.0.0.1", self.port))
                time.sleep(0.05)
                if any(" /probe" in line for line in self.lines):
                    return True
        return False

    def messages(self, until: str = "/hs/stop", timeout: float = 15.0) -> list[Received]:
        """Every message but the probes, once one at ``until`` is printed (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(f" {until}" in line for line in self.lines):
            time.sleep(0.02)
        return [Received(line) for line in list(self.lines) if " /probe" not in line]

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Relay(threading.Thread):
    """Every datagram to ``[::1]:port`` sent on, the same bytes, to 127.0.0.1:``to``."""

    def __init__(self, to: int):
        super().__init__(daemon=True)
        self.inbound = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.inbound.bind(("::1", 0))
        self.inbound.settimeout(0.1)
        self.port, self.to, self.stopping = self.inbound.getsockname()[1], to, False
        self.start()

    def run(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            while not self.stopping:
                try:
                    data = self.inbound.recv(65536)
                except socket.timeout:
                    continue
                out.sendto(data, ("127.0.0.1", self.to))

    def close(self):
        self.stopping = True
        self.join()
        self.inbound.close()


@pytest.fixture
def oscdump():
    """Starts oscdumps (``oscdump()``), and ends them after the test."""
    if not shutil.which("oscdump"):
        missing("oscdump is not installed (Debian: liblo-tools)")
    started = []

    def start() -> OscDump:
        started.append(OscDump())
        return started[-1]

    yield start
    for dump in started:
        dump.close()


def wall_offset_ns() -> int:
    """time_ns() - perf_counter_ns() (CLOCK_MONOTONIC, the same in every process), from the
    closest of a few readings."""
    readings = []
    for _ in range(20):
        a = time.perf_counter_ns()
        wall = time.time_ns()
        b = time.perf_counter_ns()
        readings.append((b - a, wall - (a + b) // 2))
    return min(readings)[1]


def expected(score, live: bool = False) -> list[tuple[str, list]]:
    """Each note's message as the issue says it: /hs/KIND with attempt, client, client port,
    server, server port, the delay that ends with this note (ms), the attempt's outcome."""
    out = []
    notes = score.notes
    for i, n in enumerate(notes):
        kind = KINDS[n["kind"]]
        mine = [j for j in range(i) if notes["attempt"][j] == n["attempt"]]  # the attempt's notes before

        def since(kinds, first=False):
            earlier = [j for j in mine if KINDS[notes["kind"][j]] in kinds]
            if not earlier:
                return 0.0
            return (int(n["time_ns"]) - int(notes["time_ns"][earlier[0 if first else -1]])) / 1e6

        if kind == "syn":
            delay = 0.0
        elif kind == "syn-retry":
            delay = since(("syn", "syn-retry"))
        elif kind == "syn-ack":
            delay = n["syn_to_syn_ack_ns"] / 1e6 if n["syn_to_syn_ack_ns"] != NO_DELAY else since(("syn", "syn-retry"), first=True)
        elif kind == "syn-ack-retry":
            delay = since(("syn-ack", "syn-ack-retry"))
        elif kind == "ack":
            delay = n["syn_ack_to_ack_ns"] / 1e6 if n["syn_ack_to_ack_ns"] != NO_DELAY else since(("syn-ack", "syn-ack-retry"), first=True)
        else:
            delay = since(KINDS)
        if not live:
            outcome = OUTCOMES[n["outcome"]]
        else:  # what is known when the note sounds
            kinds_so_far = [KINDS[notes["kind"][j]] for j in mine] + [kind]
            outcome = "pending"
            for k, so_far in enumerate(kinds_so_far):
                if so_far == "ack":
                    outcome = "complete"
                    break
                if so_far == "rst":
                    outcome = "incomplete" if {"syn-ack", "syn-ack-retry"} & set(kinds_so_far[:k]) else "refused"
                    break
        out.append((f"/hs/{kind}", [int(n["attempt"]), score.hosts[n["client"]], int(n["client_port"]),
                                    score.hosts[n["server"]], int(n["server_port"]), delay, outcome]))
    return out


def assert_same_notes(got: list[Received], want: list[tuple[str, list]]) -> None:
    assert [m.address for m in got] == [address for address, _ in want]
    for m, (address, args) in zip(got, want):
        assert m.types == "isisifs", m
        assert m.args[:5] == args[:5] and m.args[6] == args[6], (m, args)
        assert m.args[5] == pytest.approx(args[5], rel=1e-6, abs=1e-6), (m, args)  # a float32, printed to 6 places


def corpus_score(names: list[str], path: str = "s.score"):
    score = compose([CORPUS / n for n in names]).score
    save_score(score, path)
    return score


def play(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*HS, "play", *args], capture_output=True, text=True, timeout=timeout)


# --- a score -----------------------------------------------------------------------------------

def test_every_note_arrives_once_in_order_with_its_timetag(oscdump):
    score = corpus_score(MIXED)
    assert len(np.unique(score.notes["time_ns"])) == len(score) == 78  # distinct moments: one order
    dump = oscdump()
    done = play("s.score", "--to", "osc", "--osc", f"127.0.0.1:{dump.port}", "--stretch", "2", "--max-gap", "0.05",
                "--timing-log", "t.csv")
    assert done.returncode == 0, done.stderr
    got = dump.messages()
    assert [m.address for m in got[:1] + got[-1:]] == ["/hs/start", "/hs/stop"]
    start, notes, stop = got[0], got[1:-1], got[-1]
    assert_same_notes(notes, expected(score))
    # each timetag is its note's output time (score time x 2, silences cut to 50 ms) after
    # /hs/start's, which is the performance's time 0 plus the latency: to the microsecond
    times = output_times_ns(score.notes["time_ns"], 2, 0.05)
    assert np.abs(np.array([m.unix_ns - start.unix_ns for m in notes]) - times).max() < 1_000
    # and the moment the conductor was to strike it, on the wall clock, plus 50 ms: within 1 ms,
    # however late the send was (the timing log's deadlines are CLOCK_MONOTONIC, as ours)
    with open("t.csv") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["note"]))
    assert [r["status"] for r in rows] == ["played"] * 78
    offset = wall_offset_ns()
    due = np.array([int(r["scheduled_ns"]) for r in rows]) + offset + LATENCY_NS
    assert np.abs(np.array([m.unix_ns for m in notes]) - due).max() < 1_000_000
    assert stop.unix_ns >= notes[-1].unix_ns  # after the last note, not before it
    assert "osc        78 strikes" in done.stderr
    assert f"127.0.0.1:{dump.port}: 78 notes sent" in done.stderr


def test_two_targets_ipv4_and_ipv6_both_receive_everything(oscdump):
    score = corpus_score(["bgp-bgpsec.pcap"])
    first, second = oscdump(), oscdump()
    relay = Relay(second.port)
    try:
        done = play("s.score", "--to", "osc", "--stretch", "0.1", "--osc-latency", "20",
                    "--osc", f"127.0.0.1:{first.port}", "--osc", f"[::1]:{relay.port}")
        assert done.returncode == 0, done.stderr
        one, two = first.messages(), second.messages()
    finally:
        relay.close()
    assert [(m.unix_ns, m.address, m.args) for m in one] == [(m.unix_ns, m.address, m.args) for m in two]
    assert_same_notes(one[1:-1], expected(score))
    stretched = np.rint(score.notes["time_ns"] * 0.1).astype(np.int64)
    assert np.abs(np.array([m.unix_ns - one[0].unix_ns for m in one[1:-1]]) - stretched).max() < 1_000
    assert f"[::1]:{relay.port}: 12 notes sent" in done.stderr


def test_a_score_played_twice_with_loop_timetags_each_pass(oscdump):
    # --loop: one /hs/start, the notes again each pass at their new moment, one /hs/stop
    score = corpus_score(["latency1.pcapng"])
    dump = oscdump()
    p = subprocess.Popen([*HS, "play", "s.score", "--to", "osc", "--osc", f"127.0.0.1:{dump.port}", "--loop"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while sum(" /hs/ack" in line for line in dump.lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    p.terminate()
    out, err = p.communicate(timeout=20)
    assert p.returncode == 143, err
    got = dump.messages()
    addresses = [m.address for m in got]
    assert addresses[0] == "/hs/start" and addresses[-1] == "/hs/stop"
    assert addresses.count("/hs/start") == 1 and addresses.count("/hs/stop") == 1
    assert addresses[1:7] == ["/hs/syn", "/hs/syn-ack", "/hs/ack"] * 2
    # the second pass comes a period later: the pause (at least 1 s) after the last note
    period = got[4].unix_ns - got[1].unix_ns
    span = int(score.notes["time_ns"][-1])
    assert period == pytest.approx(span + 1_000_000_000, abs=1_000)
    assert [m.unix_ns - got[4].unix_ns for m in got[4:7]] == pytest.approx([m.unix_ns - got[1].unix_ns for m in got[1:4]], abs=1_000)


def test_a_latency_of_0_sends_plain_messages(oscdump):
    # no bundle at all (Sonic Pi 3.2 drops bundles): each note a message of its own, at its moment
    score = corpus_score(["tcp_refuseconnection.pcapng"])
    dump = oscdump()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(5)
    done = play("s.score", "--to", "osc", "--osc-latency", "0", "--osc", f"127.0.0.1:{dump.port}",
                "--osc", f"127.0.0.1:{raw.getsockname()[1]}")
    assert done.returncode == 0, done.stderr
    datagrams = [raw.recv(65536) for _ in range(4)]
    raw.close()
    assert [d[:d.index(b"\0")] for d in datagrams] == [b"/hs/start", b"/hs/syn", b"/hs/rst", b"/hs/stop"]
    got = dump.messages()
    assert [m.address for m in got] == ["/hs/start", "/hs/syn", "/hs/rst", "/hs/stop"]
    assert_same_notes(got[1:3], expected(score))


# --- receivers that are not there -----------------------------------------------------------------

def test_a_port_nobody_listens_on_is_played_and_counted(oscdump):
    corpus_score(["bgp-bgpsec.pcap"])
    dump = oscdump()
    nobody = free_udp_port()
    done = play("s.score", "--to", "osc", "--stretch", "0.05", "--osc", f"127.0.0.1:{dump.port}",
                "--osc", f"127.0.0.1:{nobody}")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(dump.messages()) == 12 + 2  # the one that listens has every note
    line = next(line for line in done.stderr.splitlines() if f"127.0.0.1:{nobody}" in line)
    # each refusal (an ICMP port unreachable) fails a later send on that socket
    counted = int(line.split(f"127.0.0.1:{nobody}: ")[1].split(" of ")[0])
    assert 1 <= counted <= 12
    assert line.endswith(" of 12 notes not sent: nothing listens there (port unreachable)")
    assert "osc        12 strikes" in done.stderr  # each note reached a receiver

    # alone, the notes it could not send are counted refused
    done = play("s.score", "--to", "osc", "--stretch", "0.05", "--osc", f"127.0.0.1:{nobody}")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("  osc        ") and "strikes" in line)
    refused = int(line.split("refused ")[1].rstrip(")"))
    assert 1 <= refused <= 12
    assert f"127.0.0.1:{nobody}: {refused} of 12 notes not sent" in done.stderr


def test_an_unknown_host_stops_before_anything_plays(oscdump):
    corpus_score(["latency1.pcapng"])
    dump = oscdump()
    done = play("s.score", "--to", "osc,console", "--osc", f"127.0.0.1:{dump.port}",
                "--osc", "no-such-host.invalid:57120")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "hs: error: --osc no-such-host.invalid:57120: cannot resolve 'no-such-host.invalid' (Name or service not known)"]
    assert done.stdout == ""  # the console played nothing
    time.sleep(0.3)
    assert dump.messages(timeout=0) == []  # nor was anything sent


@pytest.mark.parametrize("target, says", [
    ("127.0.0.1", "give HOST:PORT"),
    (":57120", "give HOST:PORT"),
    ("[::1]57120", "give HOST:PORT"),
    ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
    ("127.0.0.1:65536", "the port must be a number from 1 to 65535"),
    ("127.0.0.1:osc", "the port must be a number from 1 to 65535"),
    ("::1:57120", "put an IPv6 address in brackets: [::1]:57120"),
])
def test_a_bad_host_port_is_one_line(target, says):
    corpus_score(["latency1.pcapng"])
    done = play("s.score", "--to", "osc", "--osc", target)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hs: error: --osc {target!r}: ") and says in lines[0], done.stderr


def test_bad_latency_and_a_target_given_twice_are_one_line():
    corpus_score(["latency1.pcapng"])
    for args, says in ((["--osc-latency", "-5"], "hs: error: --osc-latency must be 0 or more milliseconds"),
                       (["--osc", "127.0.0.1:9000", "--osc", "localhost:9000"],
                        "hs: error: --osc localhost:9000 reaches the same receiver as 127.0.0.1:9000: give it once")):
        done = play("s.score", "--to", "osc", *args)
        assert done.returncode == 2
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(says), done.stderr


# --- live --------------------------------------------------------------------------------------

def live_performance(names, performer, capacity=4):
    """The captures' packets one at a time through perform_live, as a quiet link brings them."""
    from handshake_score.orchestra import DEFAULT
    from handshake_score.play.live import perform_live
    from handshake_score.sources import CaptureReader
    from test_live import One, one_batch_a_call

    segments = np.concatenate([s for n in names for s in CaptureReader(CORPUS / n)])
    segments = segments[np.argsort(segments["time_ns"], kind="stable")]  # one wire, as compose() merges them
    feed, running = one_batch_a_call(One(segments[i:i + 1]) for i in range(len(segments)))
    return perform_live(feed, [performer], DEFAULT, running=running, capacity=capacity)


def test_live_each_note_is_sent_at_once_with_what_is_known_then(oscdump):
    from handshake_score.play.osc import OscPerformer

    dump = oscdump()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(5)
    names = ["bgp-bgpsec.pcap", "nowebaccess3.pcapng"]  # refusals, completions, retries
    performer = OscPerformer([f"127.0.0.1:{dump.port}", f"127.0.0.1:{raw.getsockname()[1]}"])
    result = live_performance(names, performer)  # a ring of 4 slots: every slot reused
    assert result.played == {"osc": 15}
    got = dump.messages()
    assert [m.address for m in got[:1] + got[-1:]] == ["/hs/start", "/hs/stop"]
    score = compose([CORPUS / n for n in names]).score
    # live the attempt is the tracker's own number: the same ones here, both count from 1 in order
    assert_same_notes(got[1:-1], expected(score, live=True))
    # timetag "immediately": 63 zero bits and a one
    datagrams = [raw.recv(65536) for _ in range(len(got))]
    port = raw.getsockname()[1]
    raw.close()
    assert all(d[:8] == b"#bundle\0" and d[8:16] == (1).to_bytes(8, "big") for d in datagrams)
    assert performer.report() == [f"  osc        127.0.0.1:{dump.port}: 15 notes sent",
                                  f"  osc        127.0.0.1:{port}: 15 notes sent"]


def test_live_with_a_latency_timetags_that_far_ahead(oscdump):
    from handshake_score.play.osc import OscPerformer

    dump = oscdump()
    before = time.time_ns()
    live_performance(["latency1.pcapng"], OscPerformer([f"127.0.0.1:{dump.port}"], latency_ms=200))
    after = time.time_ns()
    got = dump.messages()
    assert [m.address for m in got] == ["/hs/start", "/hs/syn", "/hs/syn-ack", "/hs/ack", "/hs/stop"]
    # each stamped with the wall clock when it was sent, 200 ms on
    assert all(before + 200_000_000 <= m.unix_ns <= after + 200_000_000 for m in got)


def test_silence_says_stop_once_from_any_thread(oscdump):
    from handshake_score.play.osc import OscPerformer

    dump = oscdump()
    performer = OscPerformer([f"127.0.0.1:{dump.port}"])
    performer.prepare(compose([CORPUS / "latency1.pcapng"]).score, np.zeros(3, np.int64))
    performer.live()
    threads = [threading.Thread(target=performer.silence) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    performer.silence()
    performer.close()
    performer.close()
    assert [m.address for m in dump.messages()] == ["/hs/start", "/hs/stop"]
    assert performer.strike(0) is False  # nothing is sent once silenced


def test_the_module_loads_without_python_osc():
    # hs play --help reads every performer's options: python-osc is imported only to play
    code = "import sys, handshake_score.play.osc as o; o.OscPerformer.options; print('pythonosc' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- the receivers of docs/osc ----------------------------------------------------------------------

PD_PATCH = Path(__file__).resolve().parent.parent / "docs" / "osc" / "handshake.pd"


def test_the_pure_data_patch_hears_every_note():
    # Pd vanilla, no GUI, no sound card: the patch prints each note it routes to its instruments
    # (Debian: puredata-core; not installed by scripts/setup.sh, so skipped where it is absent)
    pd = shutil.which("pd")
    if pd is None:
        pytest.skip("Pure Data is not installed (Debian: puredata-core)")
    score = corpus_score(["bgp-bgpsec.pcap", "nowebaccess3.pcapng", "http_ip4and6.pcapng"])
    port = free_udp_port()
    p = subprocess.Popen([pd, "-nogui", "-nosound", "-stderr", "-send", f"hs-port {port}", "-open", str(PD_PATCH)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in p.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while "hs: probe" not in lines and time.monotonic() < deadline and p.poll() is None:
                s.sendto(osc_message("/hs/probe"), ("127.0.0.1", port))
                time.sleep(0.1)
        assert "hs: probe" in lines, lines
        done = play("s.score", "--to", "osc", "--osc", f"127.0.0.1:{port}", "--max-gap", "0.05")
        assert done.returncode == 0, done.stderr
        while "hs: stop" not in lines and time.monotonic() < deadline + 20:
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(timeout=10)
    heard = [line.split()[1:] for line in lines if line.startswith("hs: ") and line != "hs: probe"]
    assert heard[0] == ["start"] and heard[-1] == ["stop"]
    want = expected(score)
    assert [h[0] for h in heard[1:-1]] == [address.removeprefix("/hs/") for address, _ in want]
    for h, (_, args) in zip(heard[1:-1], want):
        assert [int(h[1]), h[2], int(h[3]), h[4], int(h[5]), h[7]] == [*args[:5], args[6]]
        assert float(h[6]) == pytest.approx(args[5], rel=1e-5, abs=1e-3)  # Pd prints 6 digits
