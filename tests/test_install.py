"""hs as a real package: a wheel built from this tree, installed into a fresh venv in a
temporary folder, works from any other folder (the demo's captures are package data)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv holding only the wheel ``python -m build`` makes of this tree
    (and its dependencies from the package index)."""
    where = tmp_path_factory.mktemp("install")
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(where / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel, = (where / "dist").glob("handshake_score-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv / "bin"


def elsewhere(tmp_path: Path, bindir: Path) -> dict:
    """A folder far from the checkout, and an environment that cannot see it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bindir}:/usr/bin:/bin", HOME=str(tmp_path), PYTHONSAFEPATH="1")
    return env


def test_the_wheel_holds_the_package_and_its_tour_and_nothing_of_the_checkout(installed):
    wheel, = installed.parent.parent.glob("dist/*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tour = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("handshake_score/tour/"))
    assert tour == sorted(p.name for p in (ROOT / "handshake_score" / "tour").iterdir())
    web = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("handshake_score/play/web/"))
    assert web == sorted(p.name for p in (ROOT / "handshake_score" / "play" / "web").iterdir())  # the stage's page
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "captures/", "scores/", "docs/"))]


def test_version_comes_from_the_installed_metadata(installed, tmp_path):
    r = subprocess.run([str(installed / "hs"), "--version"], cwd=tmp_path, env=elsewhere(tmp_path, installed),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"hs {VERSION}", r.stderr


def test_demo_from_any_folder_writes_everything_and_plays(installed, tmp_path):
    hs = subprocess.Popen([str(installed / "hs"), "demo"], cwd=tmp_path, env=elsewhere(tmp_path, installed),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    played = []
    try:
        deadline = time.monotonic() + 120
        for line in hs.stdout:  # wait for the console's first notes, then cut the performance short
            played.append(line)
            if sum(" SYN " in x for x in played) >= 2 or time.monotonic() > deadline:
                break
        hs.send_signal(signal.SIGINT)
        out, err = hs.communicate(timeout=60)
    finally:
        hs.kill()
    text = "".join(played) + out
    assert hs.returncode == 0, err
    assert "playing it on the console" in text and sum(" SYN " in x for x in played) >= 2, text
    assert "next:" in text  # Ctrl-C stops the playing, not the demo
    made = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert made == ["tour.mid", "tour.png", "tour.score", "tour.wav"]
    score = (tmp_path / "demo" / "tour.score").read_text()
    assert f'# tool: "hs {VERSION}"' in score and score.count("# source: ") == 9


def test_doctor_reports_as_json(installed, tmp_path):
    r = subprocess.run([str(installed / "hs"), "doctor", "--json"], cwd=tmp_path,
                       env=elsewhere(tmp_path, installed), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr  # console playback needs nothing this venv lacks
    report = json.loads(r.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert VERSION in checks["hs"]["detail"]
    assert all(c["status"] in ("ok", "missing") for c in checks.values())
