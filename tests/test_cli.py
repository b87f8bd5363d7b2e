"""The ``hs`` command as a person meets it: help, version, progress on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from conftest import CORPUS, ROOT

HS = [sys.executable, "-m", "handshake_score"]


def test_help_lists_score_and_the_walkthrough():
    out = subprocess.run(HS + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "score" in out and "hs capture" in out


def test_version():
    out = subprocess.run(HS + ["--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "hs 0.1.0"


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
