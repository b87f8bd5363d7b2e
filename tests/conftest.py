"""Shared fixtures.

``HS_REQUIRE_TSHARK=1`` (set by ``.ci/run``) turns every "tshark/dumpcap not
installed" or "cannot capture here" skip into a failure, so CI never passes by
skipping the tests that stand on the real Wireshark tools.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"  # a copy of ../shared/corpus, so a clone needs nothing beside it
KINDS = ["syn", "syn-retry", "syn-ack", "syn-ack-retry", "ack", "rst"]
OUTCOMES = ["complete", "refused", "unanswered", "incomplete"]


def missing(what: str) -> None:
    """Skip for a missing tool or permission, or fail where CI requires the real thing."""
    if os.environ.get("HS_REQUIRE_TSHARK") == "1":
        pytest.fail(f"{what} (HS_REQUIRE_TSHARK=1 turns this skip into a failure)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if not path:
        missing("tshark is not installed")
    return path


@pytest.fixture(scope="session")
def dumpcap() -> str:
    path = shutil.which("dumpcap")
    if not path:
        missing("dumpcap is not installed")
    return path


def corpus_expectations() -> dict[str, dict]:
    """The expected figures table of ``../shared/corpus/README.md``, per file:
    note counts, outcome counts and the delays its last column states (ms)."""
    text = (CORPUS / "README.md").read_text()
    rows: dict[str, dict] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 12 or not re.fullmatch(r"[\w.-]+\.pcap(ng)?", cells[0]):
            continue
        numbers = [int(c) for c in cells[1:11]]
        note = cells[11]
        delays = re.findall(r"SYN->SYN-ACK (?:exactly )?([\d.]+) (m?s), SYN-ACK->ACK (?:exactly )?([\d.]+) (m?s)", note)
        rows[cells[0]] = {
            "notes": dict(zip(KINDS, numbers[:6])),
            "handshakes": dict(zip(OUTCOMES, numbers[6:])),
            "delays": delays[0] if delays else None,
            "what": note,
        }
    return rows


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing at {CORPUS}")
    return CORPUS


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch):
    """Each test runs in a folder of its own, so ``hs score``'s default ``scores/NAME.score``
    lands there and never in the checkout (or on another test's file)."""
    monkeypatch.chdir(tmp_path)


def assert_kept_unless_forced(write, path: Path, bad_kwargs: dict | None = None, bad_match: str = "") -> None:
    """A writer ``write(path, **kwargs)`` (export_midi, render_wav, plot_png...): an existing
    file is kept without ``force``; with it, a call that fails (``bad_kwargs``) still keeps it
    and leaves nothing beside it; a good one replaces it. Returns nothing: the caller checks
    what the new file holds."""
    from handshake_score.errors import HandshakeScoreError
    from handshake_score.files import OutputExistsError

    path.write_bytes(b"mine")
    with pytest.raises(OutputExistsError):
        write(path)
    assert path.read_bytes() == b"mine"
    if bad_kwargs is not None:
        with pytest.raises(HandshakeScoreError, match=bad_match):
            write(path, force=True, **bad_kwargs)
        assert path.read_bytes() == b"mine" and os.listdir(path.parent) == [path.name]
    write(path, force=True)
    assert path.read_bytes() != b"mine" and os.listdir(path.parent) == [path.name]


@pytest.fixture
def busy_cores():
    """Both cores of this machine kept busy, as on a Pi that also captures and scores: two
    ``python3 -c 'while True: pass'`` for the length of the test."""
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield spinners
    finally:
        for p in spinners:
            p.kill()
            p.wait()


@contextmanager
def jack_server(name: str, rate: int = 44100, env: dict | None = None, tools=("jackd", "jack_lsp")):
    """A JACK server called ``name`` on the dummy driver: a sound card paced by the clock, no
    hardware, with real-time scheduling where it is allowed (else on a busy machine the driver
    can miss a period) and monitor ports that carry the mix of everything played. Yields the
    environment (``env``, default os.environ) that finds it and never starts another."""
    import subprocess
    import time

    for tool in tools:
        if not shutil.which(tool):
            missing(f"{tool} is not installed (scripts/setup.sh --tests installs jackd2)")
    env = {**(os.environ if env is None else env), "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    server = subprocess.Popen(["jackd", "-n", name, "-p", "32", "-R", "-d", "dummy", "-r", str(rate), "-p", "256", "-m"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                missing("jackd would not start here")
            time.sleep(0.05)
        yield env
    finally:
        server.terminate()
        server.wait(10)
