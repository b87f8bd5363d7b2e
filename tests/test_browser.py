"""hs play --to browser: the stage, watched by a real browser.

Debian's chromium, driven by Playwright (headless; ``--no-sandbox`` as root). Each test runs
``hs play`` as a child process, takes the stage's URL from the first ``http://`` it prints,
opens it and presses the sound button (id ``sound``), then reads the page's test hooks:
``window.hsStage.notes`` (every note drawn, in order) and ``window.hsStage.onsets`` (the
AudioContext start time of every sound scheduled). What is asserted is what the stage
promises on any machine, a busy one too; how soon a note is drawn is the benchmark's
(``benchmarks/bench_browser.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, KINDS, OUTCOMES, missing
from handshake_score.orchestra import DEFAULT
from handshake_score.score import NO_DELAY, NOTE, Score, Source, compose, select
from handshake_score.scorefile import save_score
from handshake_score.timing import output_times_ns

HS = [sys.executable, "-m", "handshake_score"]
CHROMIUM = "/usr/bin/chromium"
MIXED = ["bgp-bgpsec.pcap", "nowebaccess3.pcapng", "http_ip4and6.pcapng", "latency2.pcapng",
         "resp_1_benchmark.pcap", "tcp_refuseconnection.pcapng", "tfo-5c1fa7f9ae91.pcap"]
"""Corpus captures with every kind of note but syn-ack-retry, refusals, retries, IPv4 and IPv6."""
EXAMPLE = Path(__file__).resolve().parent.parent / "captures" / "example-loopback.pcapng"


# --- the browser and hs --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (scripts/setup.sh --tests installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed (scripts/setup.sh --tests installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


class Hs:
    """``hs play ARGS`` as a child process, both its outputs read as they come; :attr:`url` is
    the first ``http://`` on them."""

    def __init__(self, *args: str, wait_for: str = "http://", timeout: float = 30):
        self.proc = subprocess.Popen([*HS, "play", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.said = threading.Condition()
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()
        self.wait_for(wait_for, timeout)
        found = re.search(r"http://\S+", "".join(self.out + self.err)) if wait_for == "http://" else None
        self.url = found.group(0) if found else None

    def _read(self, stream, into):
        for line in stream:
            with self.said:
                into.append(line)
                self.said.notify_all()
        with self.said:
            self.said.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self.said:
            while text not in "".join(self.out + self.err):
                if self.proc.poll() is not None and not self.said.wait(0.2):
                    raise AssertionError(f"hs ended before saying {text!r}: {self.stderr}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"hs did not say {text!r} within {timeout} s: {self.stderr}")
                self.said.wait(0.1)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        time.sleep(0.1)  # the readers take the last lines
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def hs():
    """Starts ``hs play`` (``hs(*args)``), and kills whatever is left after the test."""
    started = []

    def start(*args, **kw) -> Hs:
        started.append(Hs(*args, **kw))
        return started[-1]

    yield start
    for p in started:
        p.close()


def until(page, expression: str, timeout_s: float = 30):
    """Wait until ``expression`` is true in the page. (Playwright's wait_for_function evaluates
    a string in the page, which the stage's Content-Security-Policy forbids, as it should.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} not true within {timeout_s} s")
        time.sleep(0.05)


def open_stage(chromium, url: str, sound: bool = True):
    """A new page at ``url`` recording every request it makes; its sound started (a click)."""
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.requests = []
    page.sockets = []
    page.errors = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("websocket", lambda ws: page.sockets.append(ws.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    until(page, "window.hsStage && hsStage.connected && hsStage.mode !== null", 15)
    if sound:
        page.click("#sound")
        until(page, "hsStage.soundReady", 15)
    return page


def wait_notes(page, n: int, timeout_s: float = 30) -> list[dict]:
    until(page, f"hsStage.notes.length >= {n}", timeout_s)
    return page.evaluate("hsStage.notes")


def strikes(stderr: str) -> dict[str, int]:
    """Strikes per performer, from hs play's report."""
    return {m.group(1): int(m.group(2).replace(",", "")) for m in re.finditer(r"^  (\w+)\s+([\d,]+) strikes", stderr, re.M)}


def corpus_score(names=MIXED, path="s.score") -> Score:
    score = compose([CORPUS / n for n in names]).score
    save_score(score, path)
    return score


def made_score(times_ms, kinds, attempts, path="made.score", clients=None) -> Score:
    """A score of notes at ``times_ms``, between made-up hosts (client ``clients[i]``, default all one)."""
    n = len(times_ms)
    notes = np.zeros(n, NOTE)
    notes["time_ns"] = np.round(np.asarray(times_ms, float) * 1e6)
    notes["kind"] = [KINDS.index(k) for k in kinds]
    notes["attempt"] = attempts
    notes["client"] = 0 if clients is None else clients
    notes["server"] = 1 if clients is None else int(max(clients)) + 1
    notes["client_port"], notes["server_port"] = 40000, 443
    notes["outcome"] = OUTCOMES.index("complete")
    notes["syn_to_syn_ack_ns"] = notes["syn_ack_to_ack_ns"] = NO_DELAY
    notes["source"] = 1
    hosts = [f"10.0.0.{i + 2}" for i in range(1 if clients is None else int(max(clients)) + 1)] + ["192.0.2.80"]
    score = Score(notes, hosts, [Source("made.pcapng", 0, "0" * 64, 0)], 1_700_000_000 * 10**9)
    save_score(score, path)
    return score


def handshakes(n: int, every_ms: float, within_ms: float = 0.2) -> tuple[list, list, list]:
    """``n`` clean handshakes (SYN, SYN-ACK, ACK ``within_ms`` apart), one every ``every_ms``."""
    times, kinds, attempts = [], [], []
    for a in range(n):
        for k, kind in enumerate(("syn", "syn-ack", "ack")):
            times.append(a * every_ms + k * within_ms)
            kinds.append(kind)
            attempts.append(a + 1)
    return times, kinds, attempts


# --- a score ---------------------------------------------------------------------------------------------

def test_the_page_loads_with_no_request_leaving_the_machine(chromium, hs):
    corpus_score()
    p = hs("s.score", "--to", "browser", "--web-port", "0", "--wait-browser", "--stretch", "0.5", "--max-gap", "0.01")
    assert p.url.startswith("http://127.0.0.1:")
    page = open_stage(chromium, p.url)
    wait_notes(page, 78)
    assert p.wait() == 0, p.stderr
    origin = p.url.rstrip("/")
    assert page.requests and all(u.startswith(origin + "/") for u in page.requests), page.requests
    assert page.sockets == [origin.replace("http://", "ws://") + "/ws"]
    assert page.errors == []
    # and every response forbids the page anything from elsewhere
    page.close()


def test_every_note_is_drawn_in_order_and_sounded_with_the_scores_spacing(chromium, hs, busy_cores):
    score = corpus_score()
    p = hs("s.score", "--to", "browser,console", "--web-port", "0", "--wait-browser", "--stretch", "10",
           "--max-gap", "0.3")
    page = open_stage(chromium, p.url)
    notes = wait_notes(page, 78)
    assert p.wait() == 0, p.stderr
    assert strikes(p.stderr) == {"console": 78, "browser": 78}
    # every note, in the score's order, drawn as a row of the sequence diagram (counted in the DOM)
    want = [(str(k), int(a)) for k, a in zip(score.kinds(), score.notes["attempt"])]
    assert [(n["kind"], n["attempt"]) for n in notes] == want
    assert [n["i"] for n in notes] == list(range(78))
    rows = page.eval_on_selector_all("#rows .note", "rows => rows.map(r => [r.dataset.kind, Number(r.dataset.attempt)])")
    assert [tuple(r) for r in rows] == want
    assert [n["outcome"] for n in notes] == list(score.outcomes())
    # each sound on the AudioContext clock, spaced as the score x 10 (silences cut to 0.3 s): within 1 ms
    onsets = np.array(page.evaluate("hsStage.onsets"))
    assert len(onsets) == 78 and [n["onset"] for n in notes] == onsets.tolist()
    times = output_times_ns(score.notes["time_ns"], 10, 0.3) / 1e9
    assert np.abs((onsets - onsets[0]) - (times - times[0])).max() < 0.001
    assert page.evaluate("[hsStage.late, hsStage.thinnedNotes, hsStage.view]") == [0, 0, "sequence"]
    # the tally: the score's attempts by outcome
    firsts = score.outcomes()[score.first_notes()]
    for outcome in OUTCOMES:
        assert page.inner_text(f"#n-{outcome}") == str(int((firsts == outcome).sum()))
    # teaching: an arrow clicked shows its packet
    page.click("#rows .note[data-kind='syn-ack'] .arrow")
    said = " ".join(page.inner_text("#details").split())
    assert "flags SYN, ACK" in said and "ack x + 1 (client ISN + 1)" in said and "after the SYN" in said
    assert page.errors == []


def test_from_until_and_loop_play_as_for_every_performer(chromium, hs):
    full = corpus_score()
    start, end = int(full.notes["time_ns"][10]), int(full.notes["time_ns"][40])
    chosen = select(full, start=f"{start / 1e9:.9f}", end=f"{end / 1e9:.9f}")
    assert 20 < len(chosen) < 40
    p = hs("s.score", "--to", "browser", "--web-port", "0", "--wait-browser", "--stretch", "5", "--max-gap", "0.1",
           "--from", f"{start / 1e9:.9f}", "--until", f"{end / 1e9:.9f}", "--loop")
    page = open_stage(chromium, p.url)
    notes = wait_notes(page, 2 * len(chosen))
    p.proc.send_signal(signal.SIGINT)
    assert p.wait() == 130, p.stderr
    want = [(str(k), int(a)) for k, a in zip(chosen.kinds(), chosen.notes["attempt"])]
    times = output_times_ns(chosen.notes["time_ns"], 5, 0.1) / 1e9
    for one in (1, 2):
        mine = [n for n in notes if n["pass"] == one][: len(chosen)]
        assert [(n["kind"], n["attempt"]) for n in mine] == want
        onsets = np.array([n["onset"] for n in mine])
        assert np.abs((onsets - onsets[0]) - (times - times[0])).max() < 0.001
    assert page.locator("#rows .mark", has_text="pass 2").count() == 1


def test_fast_notes_take_the_density_view_and_the_sound_thins_and_says_so(chromium, hs):
    # 60 handshakes a second for 3 s: too fast to follow one by one
    times, kinds, attempts = handshakes(180, every_ms=1000 / 60)
    made_score(times, kinds, attempts)
    p = hs("made.score", "--to", "browser", "--web-port", "0", "--wait-browser")
    page = open_stage(chromium, p.url)
    until(page, "hsStage.view === 'density'", 20)
    assert page.is_visible("#density-canvas") and not page.is_visible("#rows")
    assert "too fast" in page.inner_text("#density-why")
    until(page, "!document.getElementById('thinned').hidden", 5)
    assert "sound thinned" in page.inner_text("#thinned")
    notes = wait_notes(page, len(times))
    assert p.wait() == 0, p.stderr
    assert [(n["kind"], n["attempt"]) for n in notes] == list(zip(kinds, attempts))  # every note still counted
    # whole handshakes sound, and at most one begins every 150 ms: audibly thinner, not noise
    heard = {}
    for n in notes:
        heard.setdefault(n["attempt"], []).append(n["onset"] is not None)
    assert all(all(h) or not any(h) for h in heard.values())
    begun = [n["onset"] for n in notes if n["kind"] == "syn" and n["onset"] is not None]
    assert 5 < len(begun) < 60
    thinned = [n["onset"] for n in notes if n["kind"] == "syn" and n["onset"] is not None and n["attempt"] > 20]
    assert np.diff(thinned).min() >= 0.149  # from the 21st handshake in a second on
    assert page.evaluate("hsStage.thinnedNotes") == sum(n["onset"] is None for n in notes)


def test_a_caller_that_keeps_a_schedule_is_named(chromium, hs):
    # a client calling every 10 s (score time), played 20 times faster; and one at random beside it
    rng = np.random.default_rng(3)
    calls = [(t, 0) for t in np.arange(10) * 10_000.0] + [(t, 1) for t in np.sort(rng.uniform(0, 90_000, 10))]
    calls.sort()
    times, kinds, attempts, clients = [], [], [], []
    for a, (t, who) in enumerate(calls):
        for k, kind in enumerate(("syn", "syn-ack", "ack")):
            times.append(t + k * 0.2)
            kinds.append(kind)
            attempts.append(a + 1)
            clients.append(who)
    made_score(times, kinds, attempts, clients=clients)
    p = hs("made.score", "--to", "browser", "--web-port", "0", "--wait-browser", "--stretch", "0.05")
    page = open_stage(chromium, p.url, sound=False)
    wait_notes(page, len(times))
    assert p.wait() == 0, p.stderr
    callers = page.eval_on_selector_all("#caller-list li", "items => items.map(i => i.textContent)")
    assert len(callers) == 1 and callers[0].startswith("10.0.0.2 -> 192.0.2.80:443 every 10.0 s"), callers


def test_the_sounds_are_hs_renders(hs):
    from handshake_score.render import kind_sounds

    save_score(compose([EXAMPLE]).score, "s.score")
    p = hs("s.score", "--to", "browser", "--web-port", "0", "--wait-browser")
    for rate in (44100, 48000):
        body = urllib.request.urlopen(f"{p.url}sounds/{rate}").read()
        count = int.from_bytes(body[:4], "little")
        lengths = np.frombuffer(body[4:4 + 4 * count], "<u4")
        samples = np.frombuffer(body[4 + 4 * count:], "<f4")
        made = kind_sounds(DEFAULT, rate)
        assert count == len(KINDS) and lengths.tolist() == [len(s) for s in made]
        assert np.array_equal(samples, np.concatenate(made))
    p.proc.send_signal(signal.SIGINT)
    assert p.wait() == 130


def test_only_the_stages_own_page_may_watch(hs):
    # another web site open in the same browser cannot read the handshakes (Origin), nor can a
    # page reach the stage by a name of its own (DNS rebinding: Host)
    save_score(compose([EXAMPLE]).score, "s.score")
    p = hs("s.score", "--to", "browser", "--web-port", "0", "--wait-browser")
    port = int(p.url.rsplit(":", 1)[1].strip("/"))

    def get(path, **headers):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers)

    status, headers = get("/")
    assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
    assert get("/", Host="evil.example")[0] == 403
    assert upgrade(port, origin="http://evil.example") == 403
    assert upgrade(port, origin=f"http://127.0.0.1:{port}") == 101
    assert get("/../../etc/passwd")[0] == 404 and get("/sounds/7")[0] == 404
    p.proc.send_signal(signal.SIGINT)
    assert p.wait() == 130


# --- what a browser cannot do ---------------------------------------------------------------------------

async def _misbehave(port: int, report: dict) -> None:
    """Junk and huge frames on the WebSocket, 100 browsers connecting and vanishing, raw junk
    on the port, and one that never reads: while the performance plays."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/ws"
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        for junk in ("", "{", "not json", json.dumps({"type": "stop"}), json.dumps({"stretch": 0})):
            await ws.send_str(junk)
        await ws.send_bytes(bytes(range(256)) * 4)
        await ws.send_bytes(b"\0" * (1 << 20))  # a megabyte: more than the stage reads
        got = await ws.receive(timeout=10)
        while got.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            got = await ws.receive(timeout=10)
        report["huge_closed"] = ws.close_code

        async def vanish() -> None:
            ws = await session.ws_connect(url)
            await ws.receive(timeout=10)  # the hello
            await ws.close()

        await asyncio.gather(*(vanish() for _ in range(50)))
    for _ in range(50):  # and 50 gone without a word: a reset, mid-stream
        gone = slow_viewer(port)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        gone.close()

    def raw(data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # a reset at close
            s.sendall(data)

    for data in (b"\x16\x03\x01\x02\x00junk", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"\xff" * 70000):
        raw(data)
    report["done"] = True


def ask_for_the_socket(port: int, origin: str | None = None, rcvbuf: int | None = None) -> tuple[socket.socket, int]:
    """A WebSocket upgrade asked for by hand (as a browser would, ``Origin`` and all): the
    socket and the HTTP status of the answer."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    ask = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           + (f"Origin: {origin}\r\n" if origin else "") + "\r\n")
    s.sendall(ask.encode())
    head = s.recv(12)
    return s, int(head[9:12])


def upgrade(port: int, origin: str | None = None) -> int:
    s, status = ask_for_the_socket(port, origin)
    s.close()
    return status


def slow_viewer(port: int) -> socket.socket:
    """A browser that asks for the WebSocket and then never reads: its receive buffer small."""
    s, status = ask_for_the_socket(port, rcvbuf=4096)
    assert status == 101
    return s


def test_junk_huge_frames_and_vanishing_browsers_stop_nothing(chromium, hs):
    score = corpus_score()
    p = hs("s.score", "--to", "browser,console", "--web-port", "0", "--wait-browser", "--stretch", "10",
           "--max-gap", "0.3")
    port = int(p.url.rsplit(":", 1)[1].strip("/"))
    page = open_stage(chromium, p.url)
    report: dict = {}
    attack = threading.Thread(target=lambda: asyncio.run(_misbehave(port, report)), daemon=True)
    attack.start()
    notes = wait_notes(page, 78)
    attack.join(60)
    assert p.wait() == 0, p.stderr
    assert report.get("done") and report["huge_closed"] == 1009  # "message too big"
    assert strikes(p.stderr) == {"console": 78, "browser": 78}
    assert len(p.stdout.splitlines()) == 78
    assert [(n["kind"], n["attempt"]) for n in notes] == [(str(k), int(a)) for k, a in
                                                        zip(score.kinds(), score.notes["attempt"])]
    assert page.evaluate("hsStage.late") == 0
    assert "messages from browsers ignored (the stage is read-only)" in p.stderr
    assert "1 closed for sending more than 4 KiB at once" in p.stderr
    came = re.search(r"([\d,]+) browsers came", p.stderr)
    assert came and int(came.group(1).replace(",", "")) >= 102  # the page, the junk one, 100 that vanished
    assert "Traceback" not in p.stderr


def test_a_browser_that_never_reads_holds_nothing_up(hs):
    # 30,000 notes in about 3 s; one viewer takes nothing: what it cannot take is dropped and
    # counted, and the performance ends on time
    times, kinds, attempts = handshakes(10_000, every_ms=0.3, within_ms=0.05)
    made_score(times, kinds, attempts)
    p = hs("made.score", "--to", "browser", "--web-port", "0", "--wait-browser", "--timing-log", "t.csv")
    port = int(p.url.rsplit(":", 1)[1].strip("/"))
    stuck = slow_viewer(port)
    try:
        assert p.wait(60) == 0, p.stderr
    finally:
        stuck.close()
    assert strikes(p.stderr) == {"browser": 30_000}
    dropped = re.search(r"([\d,]+) dropped for 1 browser too slow to take them", p.stderr)
    assert dropped and int(dropped.group(1).replace(",", "")) > 0, p.stderr
    # the conductor was never held: the last strike came within a second of its deadline
    import pandas as pd

    log = pd.read_csv("t.csv")
    assert (log.status == "played").all() and len(log) == 30_000
    assert (log.actual_ns - log.scheduled_ns).iloc[-1] < 1e9


def test_a_port_in_use_is_one_line(hs):
    save_score(compose([EXAMPLE]).score, "s.score")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([*HS, "play", "s.score", "--to", "browser,console", "--web-port", str(port)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [f"hs: error: --web-port {port}: 127.0.0.1:{port} is in use (another hs play "
                                     f"--to browser?); give another --web-port, or 0 for any free one"]


@pytest.mark.parametrize("args, message", [
    (["--web-port", "70000"], "--web-port must be a port number from 0 to 65535"),
    (["--host", "203.0.113.9"], "--host 203.0.113.9: not an address of this machine"),
    (["--host", "no.such.host.invalid"], "--host no.such.host.invalid: cannot resolve it"),
    (["--live", "--wait-browser"], "--wait-browser is for a score"),
    (["--wait-browser"], "--wait-browser is for --to browser: give that too"),
])
def test_bad_options_are_one_line(args, message):
    save_score(compose([EXAMPLE]).score, "s.score")
    to = [] if "--wait-browser" in args and "--live" not in args else ["--to", "browser"]
    score = [] if "--live" in args else ["s.score"]
    r = subprocess.run([*HS, "play", *score, *to, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("hs: error: ") and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_shared_on_the_network_it_says_so_in_one_line(hs):
    save_score(compose([EXAMPLE]).score, "s.score")
    p = hs("s.score", "--to", "browser", "--host", "0.0.0.0", "--web-port", "0", "--stretch", "100")
    assert p.wait() == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0].startswith("hs: the stage is at http://") and "127.0.0.1" not in lines[0]
    shared = [line for line in lines if "the stage is shared" in line]
    assert len(shared) == 1 and p.url in shared[0]


def test_hs_play_to_console_imports_no_web_server():
    save_score(compose([EXAMPLE]).score, "s.score")
    code = ("import sys\nfrom handshake_score.cli import main\nsys.argv = ['hs', 'play', 's.score', '--to', 'console']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl', 'multidict')"
            " or m == 'handshake_score.play.stage'), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "[]", r.stderr


# --- live ---------------------------------------------------------------------------------------------

def test_live_on_loopback_the_page_shows_each_handshake(chromium, hs):
    from loopback import V4, V6, ClosedPort, Server, complete, refused

    if not shutil.which("tcpdump"):
        missing("tcpdump is not installed")
    with Server(V4) as server, ClosedPort(V4) as closed, Server(V6) as server6:
        ports = (server.port, closed.port, server6.port)
        try:
            p = hs("--live", "-i", "lo", "--filter", " or ".join(f"tcp port {x}" for x in ports),
                   "--to", "browser,console", "--web-port", "0", wait_for="Ctrl-C stops")
        except AssertionError as e:
            missing(f"hs play --live cannot capture here: {e}")
        url = re.search(r"http://\S+", p.stderr).group(0)
        page = open_stage(chromium, url)
        assert page.evaluate("hsStage.mode") == "live"
        made = [("complete", c) for c in complete(V4, server.port, 3)]
        made += [("refused", c) for c in refused(V4, closed.port, 2)]
        made += [("complete", c) for c in complete(V6, server6.port, 2)]
        notes = wait_notes(page, 5 * 3 + 2 * 2)
        # slow x10: the next two handshakes queue, and play ten times slower than they happened
        page.check("#slow")
        made += [("complete", c) for c in complete(V4, server.port, 2)]
        notes = wait_notes(page, 5 * 3 + 2 * 2 + 6)
        until(page, "document.getElementById('lag').textContent === 'caught up'", 10)
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait() == 143, p.stderr
    for outcome, client in made:
        mine = [n for n in notes if n["client_port"] == client]
        assert [n["kind"] for n in mine] == (["syn", "syn-ack", "ack"] if outcome == "complete" else ["syn", "rst"])
        assert {n["outcome"] for n in page.evaluate("hsStage.notes") if n["client_port"] == client} <= {outcome, "pending"}
    assert strikes(p.stderr) == {"console": 25, "browser": 25}
    rows = page.locator("#rows .note")
    assert rows.count() == 25
    assert page.inner_text("#n-complete") == "7" and page.inner_text("#n-refused") == "2"
    slow = notes[-6:]
    spacing = [(n["due"] - slow[0]["due"]) - 10 * (n["time_ns"] - slow[0]["time_ns"]) / 1e6 for n in slow]
    assert max(abs(s) for s in spacing) < 1.0  # ms
    assert all(n["onset"] is not None for n in notes)
