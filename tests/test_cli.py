"""The ``hs`` command as a person meets it: help, version, progress on a terminal."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from conftest import CORPUS, ROOT

HS = [sys.executable, "-m", "handshake_score"]


def test_help_lists_score_and_the_walkthrough():
    out = subprocess.run(HS + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "score" in out and "hs capture" in out


def test_version():
    out = subprocess.run(HS + ["--version"], capture_output=True, text=True, check=True).stdout
    import tomllib

    assert out.strip() == "hs " + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_usage_error_exits_2_without_traceback():
    r = subprocess.run(HS + ["score"], capture_output=True, text=True)
    assert r.returncode == 2 and "Missing argument" in r.stderr and "Traceback" not in r.stderr


def test_progress_bar_on_a_terminal_for_a_large_capture(tmp_path):
    path = tmp_path / "big.pcap"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", path, "--packets", "340000"],
                   check=True, capture_output=True)
    assert path.stat().st_size > 32 << 20
    leader, follower = pty.openpty()
    proc = subprocess.Popen(HS + ["score", str(path)], stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        terminal += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 0
    assert b"scoring" in terminal and b"MB" in terminal  # rich's bar: description and bytes read
    assert "340,000 packets" in out


def test_no_progress_bar_when_not_a_terminal():
    r = subprocess.run(HS + ["score", CORPUS / "tcp_handshake.pcapng"], capture_output=True, text=True, check=True)
    assert r.stderr == ""


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.pcap"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", path, "--packets", "1500000"],
                   check=True, capture_output=True)
    return path


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)])
def test_killing_hs_alone_leaves_no_reading_worker(big_capture, sig, code, tmp_path):
    """A large capture is read by a forked worker. SIGTERM to hs (not its group) stops it
    through cleanup; even SIGKILL, where no cleanup runs, leaves no worker blocked for ever."""
    errors = tmp_path / "stderr"  # a file, not a pipe: a stuck worker would hold a pipe open
    with errors.open("w") as err:
        proc = subprocess.Popen(HS + ["score", str(big_capture)], stdout=subprocess.DEVNULL, stderr=err)
    children = []
    for _ in range(400):  # until the worker is there (20 s on a loaded machine)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if children or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert children, "no reading worker was started"
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == code
    for pid in children:
        for _ in range(100):
            state = subprocess.run(["ps", "-o", "stat=", "-p", pid], capture_output=True, text=True).stdout.strip()
            if state in ("", "Z"):  # gone, or exited and waiting for init to reap it
                break
            time.sleep(0.05)
        assert state in ("", "Z"), f"worker {pid} still running ({state})"
    assert "Traceback" not in errors.read_text()
