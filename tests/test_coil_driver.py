"""The coil driver: the solenoids' hard limits hold on the pins' own times, however busy the machine.

The driver is the real process ``hs play --to solenoids`` starts, on gpiozero's
MockFactory (``--dry-run``); what the pins did is read from their own record of
their changes. The load is two ``while True: pass`` processes, one per core.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from coils import limits, pin_log_csv, pulses
from conftest import KINDS
from handshake_score.errors import HandshakeScoreError
from handshake_score.play.coil import DUTY_CAP, MAX_ON_NS
from handshake_score.play.coildriver import CoilDriver
from handshake_score.scorefile import save_score
from test_play import score_of

HS = [sys.executable, "-m", "handshake_score"]
MS = 1_000_000
RESTRIKE_MS = 375.0
# the longest pulse an orchestra may ask for, struck as often as the duty cap allows (90/375 = 24 %)
HOT = "".join(f"[{k}]\npulse_ms = 90.0\nrestrike_ms = {RESTRIKE_MS}\n" for k in KINDS)


def dense_score(seconds: int = 4) -> None:
    """A note every millisecond, on every coil in turn: far more than any coil may strike."""
    n = seconds * 1000
    save_score(score_of(np.arange(n), (["syn", "syn-ack", "rst"] * n)[:n]), "dense.score")
    Path("hot.toml").write_text(HOT)


def assert_within_limits(path: str) -> dict[int, dict]:
    got = {pin: limits(changes) for pin, changes in pin_log_csv(path).items()}
    assert set(got) == {17, 22, 27}
    for pin, seen in got.items():
        assert seen["pulses"] >= 2, (pin, seen)
        assert seen["longest_ns"] <= MAX_ON_NS, (pin, seen)
        assert seen["duty"] <= DUTY_CAP, (pin, seen)
        assert seen["closest_ns"] >= RESTRIKE_MS * MS, (pin, seen)
        assert seen["last"] == 0, (pin, seen)
    return got


def test_limits_hold_with_both_cores_busy(busy_cores):
    dense_score()
    r = subprocess.run([*HS, "play", "dense.score", "--orchestra", "hot.toml", "--to", "solenoids,console",
                        "--dry-run", "--pin-log", "p.csv"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "no real-time priority" not in r.stderr and "ended late" not in r.stderr
    assert len(r.stdout.splitlines()) == 4000
    got = assert_within_limits("p.csv")
    # every 375 ms over 4 s: the coils kept striking, not merely stayed safe
    assert all(seen["pulses"] >= 8 for seen in got.values()), got


def test_sigterm_mid_pulse_with_both_cores_busy(busy_cores):
    dense_score(10)
    p = subprocess.Popen([*HS, "play", "dense.score", "--orchestra", "hot.toml", "--to", "solenoids,console",
                          "--dry-run", "--pin-log", "p.csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(1500):  # 1.5 s in: a few strikes made, a pulse most likely on
        assert p.stdout.readline()
    sent = time.perf_counter_ns()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "every coil off" in err
    assert_within_limits("p.csv")
    last = max(t for changes in pin_log_csv("p.csv").values() for t, _ in changes)
    assert last - sent < MAX_ON_NS  # nothing struck or left on after the signal was heard


def test_without_realtime_priority_it_says_so_once():
    # root without CAP_SYS_NICE may not ask for SCHED_FIFO: the driver plays, and hs says what it cannot promise
    save_score(score_of([0, 100, 200], ["syn", "syn-ack", "ack"]), "s.score")
    r = subprocess.run(["setpriv", "--bounding-set", "-sys_nice", "--", *HS, "play", "s.score", "--to",
                        "solenoids", "--dry-run"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "setpriv" in r.stderr:
        pytest.skip(f"setpriv cannot drop a capability here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "no real-time priority" in line]
    assert len(warned) == 1 and warned[0].startswith("hs: warning: solenoids:"), r.stderr
    assert "solenoids  3 strikes" in r.stderr


def test_a_strike_too_soon_after_a_late_one_is_refused_on_pin_times():
    driver = CoilDriver([17], [80 * MS], dry_run=True)
    try:
        first = driver.answer(driver.strike_at(0, 15 * MS))  # "now": as a late strike comes
        assert first and first is not True
        # planned 70 ms after the one the pin made: 10 ms too soon, past the driver's hair of slack
        assert driver.answer(driver.strike_at(0, 15 * MS, first + 70 * MS)) is False
        # 79 ms after: within a hair of allowed, so it waits for its moment
        made = driver.answer(driver.strike_at(0, 15 * MS, first + 79 * MS))
        assert made - first >= 80 * MS
        time.sleep(0.05)  # its pulse ends before the driver is closed
    finally:
        driver.close()
    (a, wa), (b, wb) = pulses([(t, s) for _, t, s in driver.log])
    assert b - a >= 80 * MS and abs(wa - 15 * MS) < 4 * MS and abs(wb - 15 * MS) < 4 * MS
    assert driver.stats["refused"] == 1 and driver.stats["struck"] == 2


def test_defer_lets_a_strike_wait_for_its_coil():
    driver = CoilDriver([17], [80 * MS], dry_run=True, defer_limit_ns=50 * MS)
    try:
        first = driver.answer(driver.strike_at(0, 15 * MS))
        second = driver.answer(driver.strike_at(0, 15 * MS, first + 40 * MS))  # 40 ms early: deferred
        third = driver.answer(driver.strike_at(0, 15 * MS, second + 10 * MS))  # 70 ms early: past the limit
        time.sleep(0.05)
    finally:
        driver.close()
    assert second - first >= 80 * MS and third is False
    assert len(pulses([(t, s) for _, t, s in driver.log])) == 2


def test_sigterm_to_the_driver_switches_every_coil_off():
    driver = CoilDriver([17, 27], [200 * MS, 200 * MS], dry_run=True)
    try:
        assert driver.answer(driver.strike_at(0, 90 * MS))
        assert driver.answer(driver.strike_at(1, 90 * MS))
        time.sleep(0.01)
        sent = time.perf_counter_ns()
        os.kill(driver.proc.pid, signal.SIGTERM)
        time.sleep(0.05)
        assert driver.answer(driver.strike_at(0, 10 * MS)) is False  # and it strikes no more
    finally:
        driver.close()
    for pin in (17, 27):
        (start, width), = pulses([(t, s) for p, t, s in driver.log if p == pin])
        assert start + width - sent < 20 * MS and width < 60 * MS


def test_a_pin_that_cannot_be_had_is_one_error():
    with pytest.raises(HandshakeScoreError, match="no GPIO pins here"):
        CoilDriver([17], [80 * MS], dry_run=False)


def test_the_driver_does_not_outlive_a_killed_hs():
    save_score(score_of(np.arange(0, 60_000, 500), ["syn"] * 120), "s.score")
    hs = subprocess.Popen([*HS, "play", "s.score", "--to", "solenoids,console", "--dry-run"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert hs.stdout.readline()
    drivers = [pid for pid in _children(hs.pid) if b"coildriver" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(drivers) == 1
    hs.kill()
    hs.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{drivers[0]}").exists() and _state(drivers[0]) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{drivers[0]}").exists() or _state(drivers[0]) == "Z"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
