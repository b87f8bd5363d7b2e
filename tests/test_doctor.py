"""hs doctor: each check against what is really here, and again with each thing taken away.

Taken away for real: dumpcap from the PATH (a folder of links to the other tools), capture
rights (the same command run as ``nobody``), the sound card (none here, or JACK's dummy
driver as one), a good orchestra file. A pin held by another device is held for real, on
gpiozero's MockFactory.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, jack_server, missing

HS = [sys.executable, "-m", "handshake_score"]
NAMES = ["python", "hs", "dumpcap", "dumpcap-rights", "tcpdump", "tcpdump-rights", "tshark", "editcap",
         "gpio", "gpio-chip", "pins", "midi", "sound", "orchestra"]
NO_SOUND = not Path("/dev/snd").exists()
NO_SEQUENCER = not Path("/dev/snd/seq").exists()


def doctor(*args, env=None, cwd=None, command=HS):
    """hs doctor ARGS --json: (exit code, the JSON object, stderr)."""
    r = subprocess.run([*command, "doctor", *args, "--json"], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def by_name(found: dict) -> dict:
    return {c["name"]: c for c in found["checks"]}


def without_gpio_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}


# --- with what is here -------------------------------------------------------------------------

def test_text_is_a_line_per_check_and_the_verdict(tmp_path):
    r = subprocess.run([*HS, "doctor"], capture_output=True, text=True, env=without_gpio_env(), timeout=120)
    assert r.returncode == 0 and r.stderr == ""  # the console needs only Python and hs
    lines = r.stdout.splitlines()
    checks = [ln for ln in lines if ln.startswith(("ok ", "missing "))]
    assert [ln.split()[1] for ln in checks] == NAMES
    for ln in lines[:-2]:  # every other line is the how of the line above it
        assert ln.startswith(("ok ", "missing ")) or ln.lstrip().startswith("how: ")
    assert lines[-1] == "for --to console: everything needed is here"
    if not glob.glob("/dev/gpiochip*"):
        r = subprocess.run([*HS, "doctor", "--to", "solenoids,console", "--capture"], capture_output=True, text=True,
                           env=without_gpio_env(), timeout=120)
        assert r.returncode == 2 and r.stderr == ""
        assert r.stdout.splitlines()[-1].startswith("for --to solenoids,console --capture: missing gpio, gpio-chip, pins")


def test_json_says_what_is_here():
    rc, found, err = doctor("--to", "console,osc", env=without_gpio_env())
    assert rc == 0 and err == "" and found["exit"] == 0 and found["ready"] is True
    assert [c["name"] for c in found["checks"]] == NAMES
    assert all(set(c) == {"name", "status", "detail", "how"} and c["status"] in ("ok", "missing")
               for c in found["checks"])
    assert found["to"] == ["console", "osc"] and found["required"] == ["python", "hs", "orchestra"]
    c = by_name(found)
    from importlib.metadata import version

    assert c["python"]["status"] == "ok" and c["python"]["detail"].startswith("%d.%d.%d " % sys.version_info[:3])
    assert c["hs"]["status"] == "ok" and c["hs"]["detail"].startswith(version("handshake-score") + " ")
    for tool in ("dumpcap", "tcpdump", "tshark", "editcap"):
        assert (c[tool]["status"] == "ok") == bool(shutil.which(tool)), c[tool]
    assert (c["gpio-chip"]["status"] == "ok") == bool(glob.glob("/dev/gpiochip*"))
    assert c["orchestra"] == {"name": "orchestra", "status": "ok", "detail": "built-in (pins 17, 22, 27)", "how": ""}


def test_the_interfaces_are_dumpcaps(dumpcap):
    listed = subprocess.run([dumpcap, "-D"], capture_output=True, text=True, check=True).stdout.splitlines()
    _, found, _ = doctor()
    detail = by_name(found)["dumpcap"]["detail"]
    assert f"sees {len(listed)} interface" in detail
    first = listed[0].split(". ", 1)[1].split()[0]
    assert f": {first}," in detail or detail.endswith(f": {first}")


def test_root_may_capture_and_is_told_about_ordinary_users(dumpcap):
    if os.geteuid() != 0:
        pytest.skip("runs as root")
    rc, found, _ = doctor("--capture", "--live")
    c = by_name(found)
    for tool in ("dumpcap", "tcpdump"):
        line = c[f"{tool}-rights"]
        assert line["status"] == "ok" and line["detail"].startswith("you are root: root may capture; an ordinary user ")
    assert rc == 0


@pytest.mark.parametrize("to, extra, here_if", [
    ("console", (), True),
    ("osc", (), True),
    ("console,osc", (), True),
    ("solenoids", ("--dry-run",), True),
    ("solenoids", (), False),
    ("console,solenoids", (), False),
    ("midi", (), False),
    ("speakers", (), False),
])
def test_exit_code_per_performer(to, extra, here_if):
    """Here: no pin library, no GPIO chip, no ALSA sequencer, no sound card."""
    if not here_if and ("solenoids" in to and glob.glob("/dev/gpiochip*") or "midi" in to and not NO_SEQUENCER
                        or "speakers" in to and not NO_SOUND):
        pytest.skip("this machine has it")
    env = {**without_gpio_env(), "JACK_NO_START_SERVER": "1", "JACK_DEFAULT_SERVER": f"hs-none-{os.getpid()}"}
    rc, found, err = doctor("--to", to, *extra, env=env)
    assert rc == (0 if here_if else 2) == found["exit"], found["missing"]
    assert err == ""
    if "solenoids" in to and not extra:
        assert found["missing"] == ["gpio", "gpio-chip", "pins"]
        gpio = by_name(found)["gpio"]
        assert gpio["detail"].startswith("gpiozero finds no pin library (lgpio: ")  # gpiozero's own first choice
        assert "pip install lgpio" in gpio["how"] and "--dry-run" in gpio["how"]


def test_to_takes_repeats_and_commas():
    _, found, _ = doctor("--to", "console", "--to", "osc,console", env=without_gpio_env())
    assert found["to"] == ["console", "osc"]


def test_an_unknown_performer_is_one_line():
    r = subprocess.run([*HS, "doctor", "--to", "piano"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("hs: error: --to: unknown performer 'piano' (the performers are console, ")
    assert len(r.stderr.splitlines()) == 1


def plugin(tmp_path: Path, target: str) -> dict:
    """A distribution on the path that adds the performer ``theremin`` (an entry point, found
    by importlib.metadata as any installed package's), pointing at ``target``."""
    dist = tmp_path / "plugins" / "theremin_dist-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: theremin-dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[handshake_score.performers]\ntheremin = {target}\n")
    (tmp_path / "plugins" / "theremin_mod.py").write_text(
        "from handshake_score.play.console import ConsolePerformer\n\n"
        "class Theremin(ConsolePerformer):\n    name = 'theremin'\n    needs = 'two antennas'\n")
    return {**without_gpio_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), str(ROOT)])}


def test_another_packages_performer_that_loads(tmp_path):
    rc, found, _ = doctor("--to", "theremin", env=plugin(tmp_path, "theremin_mod:Theremin"))
    line = by_name(found)["performer:theremin"]
    assert line["status"] == "ok"
    assert line["detail"] == "theremin_mod:Theremin (from theremin-dist) loads; it needs two antennas"
    assert found["required"] == ["python", "hs", "orchestra", "performer:theremin"] and rc == 0


def test_another_packages_performer_that_does_not_load(tmp_path):
    rc, found, _ = doctor("--to", "console,theremin", env=plugin(tmp_path, "theremin_gone:Theremin"))
    line = by_name(found)["performer:theremin"]
    assert line["status"] == "missing" and "cannot load theremin_gone:Theremin: ModuleNotFoundError" in line["detail"]
    assert line["how"] == "reinstall theremin-dist, or ask its authors"
    assert rc == 2 and found["missing"] == ["performer:theremin"]


# --- GPIO: gpiozero's choice, its pins ----------------------------------------------------------

def test_the_library_named_by_gpiozero_pin_factory_and_its_pins(tmp_path):
    (tmp_path / "o.toml").write_text("[syn]\npin = 5\n[syn-retry]\npin = 5\n[ack]\npin = 5\n")
    rc, found, _ = doctor("--to", "solenoids", "--orchestra", str(tmp_path / "o.toml"),
                          env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})
    c = by_name(found)
    assert c["gpio"]["status"] == "ok" and c["gpio"]["detail"].startswith("mock (GPIOZERO_PIN_FACTORY)")
    assert c["pins"] == {"name": "pins", "status": "ok", "how": "",
                         "detail": "pins 5, 22, 27 free (each claimed as an input and let go)"}
    assert "gpio-chip" not in found["required"]  # mock pins live in memory
    assert rc == 0


def test_a_library_named_by_gpiozero_pin_factory_that_is_not_here():
    import importlib.util

    if importlib.util.find_spec("lgpio"):
        pytest.skip("lgpio is installed here")
    rc, found, _ = doctor("--to", "solenoids", env={**os.environ, "GPIOZERO_PIN_FACTORY": "lgpio"})
    gpio = by_name(found)["gpio"]
    assert gpio["status"] == "missing" and gpio["detail"] == "GPIOZERO_PIN_FACTORY=lgpio: No module named 'lgpio'"
    assert rc == 2


def test_a_pin_already_held_is_named_and_the_check_lets_go_of_the_others():
    from gpiozero import DigitalOutputDevice
    from gpiozero.pins.mock import MockFactory

    from handshake_score.doctor import pins_in_use

    factory = MockFactory()
    held = DigitalOutputDevice(17, pin_factory=factory)
    busy = pins_in_use(factory, [17, 22, 27])
    assert list(busy) == [17] and "in use" in busy[17]
    # nothing of the check is left holding 22 and 27, nor 17 once its holder lets go
    others = [DigitalOutputDevice(p, pin_factory=factory) for p in (22, 27)]
    held.close()
    again = DigitalOutputDevice(17, pin_factory=factory)
    for d in (*others, again):
        d.close()
    assert pins_in_use(factory, [17, 22, 27]) == {}


def test_a_pin_held_is_a_missing_line():
    from gpiozero import DigitalOutputDevice
    from gpiozero.pins.mock import MockFactory

    from handshake_score.doctor import gpio_checks, pins_in_use

    factory = MockFactory()
    with DigitalOutputDevice(22, pin_factory=factory):
        answer = {"library": "mock", "chip": None, "busy": pins_in_use(factory, [17, 22, 27])}
    gpio, _, pins = gpio_checks(answer, [17, 22, 27])
    assert gpio.ok and pins.status == "missing"
    assert pins.detail.startswith("in use: pin 22: pin GPIO22 is already in use by <gpiozero.DigitalOutputDevice")
    assert "stop what holds it" in pins.how and "pin = N" in pins.how


# --- capture tools taken away --------------------------------------------------------------------

def tools_but(tmp: Path, *left_out: str) -> str:
    """A PATH of one folder: links to the tools hs doctor runs, but not ``left_out``."""
    tmp.mkdir(exist_ok=True)
    for tool in ("dumpcap", "tcpdump", "tshark", "editcap"):
        if tool not in left_out and shutil.which(tool):
            (tmp / tool).symlink_to(shutil.which(tool))
    return str(tmp)


def test_no_dumpcap_on_the_path(tmp_path):
    env = {**without_gpio_env(), "PATH": tools_but(tmp_path / "bin", "dumpcap")}
    rc, found, _ = doctor("--capture", env=env)
    c = by_name(found)
    assert c["dumpcap"]["status"] == c["dumpcap-rights"]["status"] == "missing"
    assert c["dumpcap"]["detail"] == "not found on the PATH (hs capture needs it)"
    assert c["dumpcap"]["how"].startswith("sudo apt install tshark")
    assert rc == 2 and found["missing"] == ["dumpcap", "dumpcap-rights"]
    assert doctor(env=env)[0] == 0  # the console does not capture
    if shutil.which("tcpdump") and os.geteuid() == 0:
        assert doctor("--live", env=env)[0] == 0  # hs play --live captures with tcpdump


def test_a_capture_tool_that_hangs_is_reported_not_waited_for(tmp_path, monkeypatch):
    from handshake_score.doctor import check_capture_tool

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dumpcap").write_text(f"#!/bin/sh\necho $$ >> {tmp_path}/pids\nexec {shutil.which('sleep')} 60\n")
    (bin_dir / "dumpcap").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    began = time.monotonic()
    tool, rights = check_capture_tool("dumpcap", timeout_s=0.5)
    assert time.monotonic() - began < 20
    assert "dumpcap did not answer within 0.5 s" in tool.detail
    assert rights.status == "missing" and "did not answer" in rights.detail
    for pid in map(int, (tmp_path / "pids").read_text().split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # killed and reaped: nothing left behind


# --- a user without capture rights, and one given them -------------------------------------------

def as_nobody() -> tuple[list[str], dict]:
    """The command prefix that runs as ``nobody`` (no groups), and the environment in which that
    user finds a Python and this package. hs doctor starts its Python again for its probes, so
    nobody must be able to run the interpreter itself, not only to be handed it."""
    if os.geteuid() != 0:
        missing("running as another user needs root")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        missing("setpriv (util-linux) is not installed")
    drop = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    version = "%d.%d" % sys.version_info[:2]
    for python in (sys.executable, os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        if subprocess.run([*drop, "/bin/sh", "-c", 'test -x "$0"', python]).returncode == 0:
            break
    else:
        missing(f"no Python {version} here that nobody may run")
    paths = [str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {k: v for k, v in without_gpio_env().items() if not k.startswith("VIRTUAL_ENV")}
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)), HOME="/nonexistent")
    return [*drop, python, "-m", "handshake_score"], env


def nobody_captures(drop: list[str], dumpcap: str) -> bool:
    """The truth, by a real capture on loopback as nobody, whatever hs doctor says."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        r = subprocess.run([*drop, dumpcap, "-i", "lo", "-a", "duration:1", "-w", f"{d}/x.pcapng", "-q"],
                           capture_output=True, timeout=30)
    return r.returncode == 0


def test_a_user_without_capture_rights(dumpcap):
    command, env = as_nobody()
    drop = command[:4]
    if nobody_captures(drop, dumpcap):
        pytest.skip("nobody may capture on this machine")
    rc, found, err = doctor("--capture", "--live", command=command, env=env, cwd="/")
    c = by_name(found)
    assert c["python"]["status"] == "ok" and c["hs"]["status"] == "ok"
    line = c["dumpcap-rights"]
    assert line["status"] == "missing" and line["detail"].startswith("you (nobody) may not capture: ")
    assert "usermod -aG wireshark" in line["how"] or "setcap" in line["how"]
    if shutil.which("tcpdump"):
        assert c["tcpdump-rights"]["status"] == "missing"
        assert c["tcpdump-rights"]["how"].startswith("sudo setcap cap_net_raw,cap_net_admin=eip ")
    assert rc == 2 and {"dumpcap-rights"} <= set(found["missing"])
    # the probes ran as nobody too: a library's answer, not "cannot run"
    assert "cannot run" not in c["gpio"]["detail"] + c["midi"]["detail"] + c["sound"]["detail"]
    assert doctor("--capture", command=command, env=env, cwd="/")[0] == 2
    assert doctor(command=command, env=env, cwd="/")[0] == 0  # the console needs no capture rights


@pytest.fixture
def own_dumpcap(dumpcap):
    """A copy of dumpcap in a folder nobody may enter, given the capture capabilities (setcap)."""
    setcap = shutil.which("setcap")
    if not setcap:
        missing("setcap (libcap2-bin) is not installed")
    folder = Path(tempfile.mkdtemp(prefix="hs-doctor-"))
    try:
        folder.chmod(0o755)
        copy = folder / "dumpcap"
        shutil.copy2(dumpcap, copy)
        r = subprocess.run([setcap, "cap_net_raw,cap_net_admin=eip", str(copy)], capture_output=True, text=True)
        if r.returncode != 0:
            missing(f"setcap failed here: {r.stderr.strip()}")
        yield copy
    finally:
        shutil.rmtree(folder)


def test_a_user_given_capture_rights_by_file_capabilities(own_dumpcap):
    command, env = as_nobody()
    env["PATH"] = f"{own_dumpcap.parent}:{env['PATH']}"
    assert nobody_captures(command[:4], str(own_dumpcap))  # the copy really lets nobody capture
    rc, found, _ = doctor("--capture", command=command, env=env, cwd="/")
    line = by_name(found)["dumpcap-rights"]
    assert line == {"name": "dumpcap-rights", "status": "ok", "how": "",
                    "detail": "you (nobody) may capture: any user (dumpcap has cap_net_raw and cap_net_admin)"}
    assert rc == 0
    rc, found, _ = doctor("--capture", env={**os.environ, "PATH": env["PATH"]})  # and root hears it
    assert by_name(found)["dumpcap-rights"]["detail"] == (
        "you are root: root may capture; an ordinary user could: any user (dumpcap has cap_net_raw and cap_net_admin)")


def test_capture_rights_kept_to_a_group_nobody_is_not_in(own_dumpcap):
    command, env = as_nobody()
    env["PATH"] = str(own_dumpcap.parent)  # alone: a dumpcap further on would be the one found
    shutil.chown(own_dumpcap, group="adm")
    own_dumpcap.chmod(0o750)
    subprocess.run([shutil.which("setcap"), "cap_net_raw,cap_net_admin=eip", str(own_dumpcap)], check=True)  # chown drops it
    rc, found, _ = doctor("--capture", command=command, env=env, cwd="/")
    c = by_name(found)
    assert c["dumpcap"]["detail"] == f"{own_dumpcap}, but you may not run it"
    assert c["dumpcap-rights"]["detail"] == ("you (nobody) may not capture: only members of group adm may run "
                                             "dumpcap, and you are not one")
    assert c["dumpcap-rights"]["how"] == "sudo usermod -aG adm nobody, then log in again"
    assert rc == 2
    # root, through sudo, hears about the user who ran it
    _, found, _ = doctor("--capture", env={**os.environ, "PATH": env["PATH"], "SUDO_USER": "nobody"})
    line = by_name(found)["dumpcap-rights"]
    assert line["detail"] == ("you are root: root may capture; an ordinary user could not: nobody is not in group adm, "
                              "whose members may run dumpcap (cap_net_raw and cap_net_admin)")
    assert line["how"] == "sudo usermod -aG adm nobody, then log in again"


# --- sound -----------------------------------------------------------------------------------------

@pytest.fixture
def jack():
    """A JACK server on its dummy driver: a sound card paced by the clock, no hardware."""
    with jack_server(f"hs-doctor-{os.getpid()}", env=without_gpio_env()) as env:
        yield env


def test_a_sound_device_through_jack(jack):
    rc, found, _ = doctor("--to", "speakers", env=jack)
    sound = by_name(found)["sound"]
    assert sound["status"] == "ok" and "(JACK Audio Connection Kit), 2 channels at 44100 Hz" in sound["detail"]
    assert rc == 0


@pytest.mark.skipif(not NO_SOUND, reason="this machine has a sound card")
def test_no_sound_device():
    env = {**without_gpio_env(), "JACK_NO_START_SERVER": "1", "JACK_DEFAULT_SERVER": f"hs-none-{os.getpid()}"}
    rc, found, _ = doctor("--to", "speakers,console", env=env)
    sound = by_name(found)["sound"]
    assert sound["status"] == "missing" and sound["detail"] == "PortAudio finds no output device (no /dev/snd)"
    assert "hs render -o OUT.wav" in sound["how"]
    assert rc == 2 and found["missing"] == ["sound"]


@pytest.mark.skipif(not NO_SEQUENCER, reason="this machine has an ALSA sequencer")
def test_no_midi_port():
    rc, found, _ = doctor("--to", "midi", env=without_gpio_env())
    midi = by_name(found)["midi"]
    assert midi["detail"] == "no MIDI output ports: no ALSA sequencer here (/dev/snd/seq)"
    assert "modprobe snd-seq" in midi["how"] and "fluidsynth" in midi["how"]
    assert rc == 2 and found["missing"] == ["midi"]


# --- the orchestra ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, said", [
    ("[syn]\nnote = 130\n", "[syn] note: 130 is outside 0-127"),
    ("[syn\n", "not valid TOML"),
    (None, "cannot read"),
])
def test_a_bad_orchestra_file_is_a_missing_line_and_exit_2(tmp_path, text, said):
    path = tmp_path / "band.toml"
    if text is not None:
        path.write_text(text)
    rc, found, err = doctor("--orchestra", str(path), env=without_gpio_env())
    line = by_name(found)["orchestra"]
    assert line["status"] == "missing" and line["detail"].startswith(f"{path}: ") and said in line["detail"]
    assert "hs orchestra --show" in line["how"]
    assert [c["name"] for c in found["checks"]] == NAMES  # everything else is still checked
    assert rc == 2 and found["missing"] == ["orchestra"] and err == ""


def test_a_good_orchestra_file_names_its_pins(tmp_path):
    path = tmp_path / "band.toml"
    path.write_text("[rst]\npin = 23\n")
    rc, found, _ = doctor("--orchestra", str(path), env=without_gpio_env())
    assert by_name(found)["orchestra"]["detail"] == f"{path} (pins 17, 23, 27)"
    assert by_name(found)["pins"]["detail"].startswith("pins 17, 23, 27 ")
    assert rc == 0
