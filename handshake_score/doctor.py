"""``hs doctor``: is everything ``hs`` needs here, and how to get what is not.

Each :class:`Check` is one line: ``ok`` or ``missing``, what was found, and how
to fix it. :func:`diagnose` runs them all and says which ones the performers you
mean to use need (``to``), and ``hs capture`` (``capture``) and ``hs play --live``
(``live``):

>>> d = diagnose(to=["solenoids", "console"])
>>> d.ready                       # False where gpiozero finds no pin library
False
>>> [c.name for c in d.checks if c.name in d.required and not c.ok]
['gpio', 'gpio-chip', 'pins']

Every check is quick, needs no root and leaves nothing open. What could hang or
print on its own (dumpcap, tcpdump, the GPIO, MIDI and sound libraries) runs in a
child process with a timeout: the libraries as ``python -m handshake_score.doctor
gpio|midi|sound``, each answering with one JSON line. A pin is claimed as an input
(never driven) to see whether another process holds it, and let go at once.
"""

from __future__ import annotations

import glob
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import HandshakeScoreError

ALWAYS = ("python", "hs", "orchestra")
# What each of hs's own performers needs beyond Python and hs itself. The console and OSC (a UDP
# socket) need nothing more; the solenoids' chip only where the pin library is lgpio (see
# _required). Another package's performer (an entry point) needs its class to load.
NEEDS = {"console": (), "osc": (), "midi": ("midi",), "speakers": ("sound",),
         "solenoids": ("gpio", "gpio-chip", "pins")}
TIMEOUT_S = 10.0  # for each child process: a tool or library that hangs is reported, not waited for

CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
DRY_RUN_HINT = "hs play --to solenoids --dry-run rehearses anywhere (gpiozero's MockFactory)"


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis. ``how`` says how to fix what is missing; on an ``ok`` line it
    may say how to get more (an ordinary user's capture rights, when you are root)."""

    name: str
    status: str  # "ok" or "missing"
    detail: str
    how: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def ok(name: str, detail: str, how: str = "") -> Check:
    return Check(name, "ok", detail, how)


def missing(name: str, detail: str, how: str = "") -> Check:
    return Check(name, "missing", detail, how)


@dataclass
class Diagnosis:
    """Every check, the names of those the given uses need, and the verdict."""

    checks: list[Check]
    required: tuple[str, ...]
    to: tuple[str, ...]
    capture: bool = False
    live: bool = False
    dry_run: bool = False
    lacking: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        self.lacking = tuple(c.name for c in self.checks if c.name in self.required and not c.ok)

    @property
    def ready(self) -> bool:
        return not self.lacking

    @property
    def exit_code(self) -> int:
        return 0 if self.ready else 2

    def uses(self) -> str:
        """What was asked for, as options: ``--to solenoids,console --capture``."""
        return " ".join([f"--to {','.join(self.to)}"] + [o for o, on in (("--dry-run", self.dry_run),
                        ("--capture", self.capture), ("--live", self.live)) if on])

    def as_dict(self) -> dict:
        return {"checks": [asdict(c) for c in self.checks], "to": list(self.to), "capture": self.capture,
                "live": self.live, "dry_run": self.dry_run, "required": list(self.required),
                "missing": list(self.lacking), "ready": self.ready, "exit": self.exit_code}

    def text(self) -> str:
        lines = []
        for c in self.checks:
            lines.append(f"{c.status:<8} {c.name:<15} {c.detail}")
            if c.how:
                lines.append(f"{'':<8} {'':<15} how: {c.how}")
        verdict = ("everything needed is here" if self.ready else
                   f"missing {', '.join(self.lacking)} (exit 2)")
        lines.append(f"\nfor {self.uses()}: {verdict}")
        return "\n".join(lines)


def parse_performers(values) -> tuple[str, ...]:
    """``--to``'s values (each may be comma-separated) as performer names, each one the registry
    knows (hs's own, or another package's); console when none."""
    from .play import registry

    names: list[str] = []
    for value in values or ():
        for n in (v.strip() for v in value.split(",")):
            if n and n not in names:
                registry.find(n)
                names.append(n)
    return tuple(names) or (registry.DEFAULT,)


def diagnose(to=("console",), orchestra: str | os.PathLike | None = None, *, capture: bool = False,
             live: bool = False, dry_run: bool = False, timeout_s: float = TIMEOUT_S) -> Diagnosis:
    """Run every check (at once: they mostly wait on child processes) and judge them for the
    performers ``to``, with ``hs capture`` (``capture``) and ``hs play --live`` (``live``) if asked.
    ``dry_run``: the solenoids only rehearse, so they need no GPIO."""
    to = parse_performers(to)
    band, band_check = check_orchestra(orchestra)
    pins = _pin_set(band)
    found: dict = {}  # what check_gpio learns: the pin library, which decides whether the chip is needed
    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [pool.submit(f) for f in (
            lambda: [check_python()], lambda: [check_hs()],
            lambda: check_capture_tool("dumpcap", timeout_s), lambda: check_capture_tool("tcpdump", timeout_s),
            lambda: [check_reader("tshark", timeout_s)], lambda: [check_reader("editcap", timeout_s)],
            lambda: check_gpio(pins, timeout_s, found), lambda: [check_midi(timeout_s)],
            lambda: [check_sound(timeout_s)])]
        jobs += [pool.submit(lambda n=n: [check_performer(n)]) for n in to if n not in NEEDS]
        checks = [c for job in jobs for c in job.result()]
    checks.append(band_check)
    return Diagnosis(checks, _required(to, found.get("library"), capture, live, dry_run), to, capture, live, dry_run)


def _required(to, library: str | None, capture: bool, live: bool, dry_run: bool) -> tuple[str, ...]:
    needs = list(ALWAYS)
    for name in to:
        wanted = NEEDS.get(name, (f"performer:{name}",))
        if name == "solenoids" and dry_run:
            wanted = ()  # rehearsed on gpiozero's MockFactory, in memory
        elif name == "solenoids" and library not in (None, "lgpio"):
            wanted = ("gpio", "pins")  # only lgpio opens /dev/gpiochip*; mock needs nothing, the others /dev/gpiomem
        needs += wanted
    if capture:
        needs += ["dumpcap", "dumpcap-rights"]
    if live:
        needs += ["tcpdump", "tcpdump-rights"]
    return tuple(dict.fromkeys(needs))


# --- Python and hs --------------------------------------------------------------------------

def check_python() -> Check:
    v = sys.version_info
    where = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return missing("python", where + ": hs needs 3.11 or later", "install Python 3.11 or later and reinstall hs with it")
    return ok("python", where)


def check_hs() -> Check:
    """hs's version from the package metadata, and hs demo's captures (package data)."""
    from importlib import metadata, resources

    here = Path(__file__).resolve().parent
    try:
        version = metadata.version("handshake-score")
    except metadata.PackageNotFoundError:
        return missing("hs", f"not installed as a package (running from {here})",
                       "pip install . in the checkout (scripts/setup.sh does), or pip install the wheel")
    tour = resources.files(__package__) / "tour"
    captures = [t for t in tour.iterdir() if ".pcap" in t.name] if tour.is_dir() else []
    if not captures:
        return missing("hs", f"{version} ({here}), but hs demo's tour captures are not in it",
                       "reinstall the package (pip install --force-reinstall handshake-score, or pip install . from a checkout)")
    return ok("hs", f"{version} ({here}), with hs demo's {len(captures)} tour captures")


# --- capture tools ----------------------------------------------------------------------------

INSTALL = {"dumpcap": "sudo apt install tshark (Debian, Ubuntu, Raspberry Pi OS; scripts/setup.sh does it)",
           "tcpdump": "sudo apt install tcpdump (scripts/setup.sh does it)",
           "tshark": "sudo apt install tshark", "editcap": "sudo apt install wireshark-common"}
GRANT = {"dumpcap": ("sudo dpkg-reconfigure wireshark-common (answer Yes), then sudo usermod -aG wireshark USER "
                     "and log in again; or sudo setcap cap_net_raw,cap_net_admin=eip {path}"),
         "tcpdump": ("sudo setcap cap_net_raw,cap_net_admin=eip {path} (then every user who may run it can capture; "
                     "sudo chgrp pcap and chmod 750 it to keep that to a group), or run hs play --live as root")}
USES = {"dumpcap": "hs capture", "tcpdump": "hs play --live"}


def _find(tool: str) -> tuple[str | None, bool]:
    """The tool on the PATH and whether we may run it. Debian's "non-superusers may capture"
    makes dumpcap 0754, group wireshark: there but not ours to run is not "not installed"."""
    found = shutil.which(tool)
    if found:
        return found, True
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        there = os.path.join(folder or ".", tool)
        if os.path.isfile(there):
            return there, False
    return None, False


def check_capture_tool(tool: str, timeout_s: float = TIMEOUT_S) -> list[Check]:
    """Two lines: the tool (version, the interfaces it lists), and whether you may capture with
    it, tried for real (``-L`` opens an interface, as a capture does)."""
    rights = f"{tool}-rights"
    path, runnable = _find(tool)
    if path is None:
        return [missing(tool, f"not found on the PATH ({USES[tool]} needs it)", INSTALL[tool]),
                missing(rights, f"no {tool} to capture with", INSTALL[tool])]
    if not runnable:
        why, how = _why_not(path, tool)
        return [ok(tool, f"{path}, but you may not run it"),
                missing(rights, f"you ({_me()}) may not capture: {why}", how)]
    version = _first_line(_run([path, "--version"], timeout_s)) or "version unknown"
    listed = _run([path, "-D"], timeout_s)
    names = _interface_names(listed.out) if listed.rc == 0 else []
    if listed.rc != 0:
        seen = f"cannot list interfaces ({listed.reason() or 'no reason given'})"
    else:
        seen = f"sees {len(names)} interface{'s' * (len(names) != 1)}: " + _some(names)
    tool_line = ok(tool, f"{version} at {path}; {seen}")
    probe = "lo" if "lo" in names else names[0] if names else "any"
    tried = _run([path, "-i", probe, "-L"], timeout_s)
    if tried.rc is None:
        return [tool_line, missing(rights, f"{tool} -L did not answer: {tried.reason()}", "")]
    if os.geteuid() == 0:
        if tried.rc != 0:
            return [tool_line, missing(rights, f"you are root, yet may not capture here ({_last_line(tried.err)}): "
                                       "a container without CAP_NET_RAW?", "give the container NET_RAW and NET_ADMIN")]
        could, why, how = _ordinary_user(path, tool)
        return [tool_line, ok(rights, f"you are root: root may capture; an ordinary user {'could' if could else 'could not'}: {why}",
                              how)]
    if tried.rc == 0:
        could, why, _ = _ordinary_user(path, tool)
        return [tool_line, ok(rights, f"you ({_me()}) may capture" + (f": {why}" if could else ""))]
    why, how = _why_not(path, tool)
    return [tool_line, missing(rights, f"you ({_me()}) may not capture: {why}", how)]


def capture_powers(path: str) -> list[str]:
    """What lets ``path`` capture for whoever runs it: ``setuid root`` and the capture
    capabilities in its file capabilities (``security.capability``, as getcap shows)."""
    st = os.stat(path)
    powers = ["setuid root"] if st.st_mode & stat.S_ISUID and st.st_uid == 0 else []
    try:
        raw = os.getxattr(path, "security.capability")
    except OSError:
        return powers
    permitted = struct.unpack_from("<I", raw, 4)[0] if len(raw) >= 8 else 0
    if len(raw) >= 16:
        permitted |= struct.unpack_from("<I", raw, 12)[0] << 32
    return powers + [name for bit, name in ((CAP_NET_RAW, "cap_net_raw"), (CAP_NET_ADMIN, "cap_net_admin"))
                     if permitted >> bit & 1]


def _ordinary_user(path: str, tool: str) -> tuple[bool, str, str]:
    """Whether an ordinary user could capture with ``path``, why, and how to let them: from its
    mode, group and powers; about the user who ran sudo, when the right is kept to a group."""
    powers = capture_powers(path)
    if not any(p in ("setuid root", "cap_net_raw") for p in powers):
        return False, f"{tool} has no capture capabilities and is not setuid root", GRANT[tool].format(path=path)
    st = os.stat(path)
    power = " and ".join(powers)
    if st.st_mode & stat.S_IXOTH:
        return True, f"any user ({tool} has {power})", ""
    if not st.st_mode & stat.S_IXGRP:
        return False, f"only its owner may run {tool}", GRANT[tool].format(path=path)
    group, members = _group_name(st.st_gid), _members(st.st_gid)
    join = f"sudo usermod -aG {group} USER, then log in again"
    user = os.environ.get("SUDO_USER") if os.geteuid() == 0 else None
    if user and user != "root":
        could = user in members
        return could, (f"{user} {'is' if could else 'is not'} in group {group}, whose members may run "
                       f"{tool} ({power})"), "" if could else join.replace("USER", user)
    return bool(members), (f"members of group {group} ({', '.join(sorted(members)) or 'none yet'}) may run "
                           f"{tool} ({power})"), "" if members else join


def _why_not(path: str, tool: str) -> tuple[str, str]:
    """Why the current user (not root) may not capture with ``path``, and how to fix it."""
    grant = GRANT[tool].format(path=path)
    powers = capture_powers(path)
    if not any(p in ("setuid root", "cap_net_raw") for p in powers):
        return f"{tool} has no capture capabilities and is not setuid root", grant
    st = os.stat(path)
    if st.st_mode & stat.S_IXOTH:
        return f"{tool} has {' and '.join(powers)}, yet capturing failed", grant
    group = _group_name(st.st_gid)
    if st.st_gid in os.getgroups() or st.st_gid == os.getegid():
        return f"you are in group {group}, yet capturing failed", grant
    if _me() in _members(st.st_gid):
        return (f"you were added to group {group} after this login began",
                f"log out and in again (or run newgrp {group})")
    return (f"only members of group {group} may run {tool}, and you are not one",
            f"sudo usermod -aG {group} {_me()}, then log in again")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _members(gid: int) -> set[str]:
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return set()
    return members | {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid and p.pw_uid != 0}


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _interface_names(listing: str) -> list[str]:
    # dumpcap: "3. lo (Loopback)"; tcpdump: "3.lo [Up, Running, Loopback]"
    pattern = r"\d+\.\s*(\S+)"
    return [m.group(1) for line in listing.splitlines() if (m := re.match(pattern, line.strip()))]


def _some(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_reader(tool: str, timeout_s: float = TIMEOUT_S) -> Check:
    """tshark (Wireshark's reader: hs reads captures itself, pyshark and the tests' reference
    use it) and editcap (hs play --live --record makes its pcapng with it): neither is needed
    to perform."""
    use = {"tshark": "Wireshark's reader: hs score --reader tshark, and link types hs does not read itself",
           "editcap": "makes hs play --live --record's pcapng"}[tool]
    path = shutil.which(tool)
    if path is None:
        return missing(tool, f"not found on the PATH ({use})", INSTALL[tool])
    version = _first_line(_run([path, "--version"], timeout_s)) or "version unknown"
    return ok(tool, f"{version} at {path} ({use})")


# --- child processes ----------------------------------------------------------------------------

@dataclass
class _Ran:
    rc: int | None  # None: could not run, or timed out
    out: str = ""
    err: str = ""
    why: str = ""

    def reason(self) -> str:
        return self.why or _last_line(self.err)


def _run(argv: list[str], timeout_s: float, env: dict | None = None) -> _Ran:
    """Run ``argv`` in a session of its own, killed with everything it started past ``timeout_s``
    (dumpcap -D runs Wireshark's extcap helpers, which may hang)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=env or {**os.environ, "LC_ALL": "C"},
                                start_new_session=True)
    except OSError as e:
        return _Ran(None, why=f"cannot run {argv[0]}: {e.strerror or e}")
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return _Ran(None, why=f"{os.path.basename(argv[0])} did not answer within {timeout_s:g} s")
    return _Ran(proc.returncode, out, err)


def _first_line(ran: _Ran) -> str:
    """A --version's first line, without Wireshark's "(Git v4.0.17 packaged as ...)"."""
    text = (ran.out or ran.err) if ran.rc == 0 else ""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "").removesuffix(".")
    return re.sub(r" \(Git [^)]*\)$", "", line)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _probe(kind: str, arg: str, timeout_s: float) -> dict:
    """``python -m handshake_score.doctor KIND ARG`` in a child: the library's answer as a dict,
    or ``{"failed": why}``. The child finds the package as the coil driver's does: where this
    Python finds it, from the same folder."""
    ran = _run([sys.executable, "-m", __name__, kind, arg], timeout_s, dict(os.environ))
    if ran.rc is None:
        return {"failed": ran.reason()}
    try:
        return json.loads(ran.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"failed": f"the {kind} probe ended with {ran.rc}: {_last_line(ran.err) or 'no answer'}"}


# --- GPIO -----------------------------------------------------------------------------------------

FACTORY_NAMES = {"LGPIOFactory": "lgpio", "RPiGPIOFactory": "rpigpio", "PiGPIOFactory": "pigpio",
                 "NativeFactory": "native", "MockFactory": "mock"}
GPIO_INSTALL = ("on a Raspberry Pi: scripts/setup.sh installs it (hs's pi extra: "
                "pip install lgpio into hs's venv); elsewhere " + DRY_RUN_HINT)


def check_gpio(pins: list[int], timeout_s: float = TIMEOUT_S, found: dict | None = None) -> list[Check]:
    """Three lines: the pin library gpiozero picks (``GPIOZERO_PIN_FACTORY``, else the first of
    its table that loads: lgpio, rpigpio, pigpio, native), the GPIO chip, and the orchestra's pins.
    ``found["library"]`` is set to the library's name (None: none)."""
    answer = _probe("gpio", ",".join(map(str, pins)), timeout_s)
    if found is not None:
        found["library"] = answer.get("library")
    return gpio_checks(answer, pins)


def gpio_checks(answer: dict, pins: list[int]) -> list[Check]:
    """The three GPIO lines from what :func:`probe_gpio` found."""
    chip = check_chip()
    tried = "; ".join(t.removeprefix("Falling back from ") for t in answer.get("tried", []))
    chosen = os.environ.get("GPIOZERO_PIN_FACTORY")
    if "failed" in answer or answer.get("library") is None:
        why = answer.get("failed") or answer.get("error", "")
        detail = (f"GPIOZERO_PIN_FACTORY={chosen}: {why}" if chosen else
                  why if "not installed" in why else f"gpiozero finds no pin library ({tried or why})")
        return [missing("gpio", detail, GPIO_INSTALL), chip,
                missing("pins", f"{_pins(pins)} not checked: no pin library", "see gpio")]
    library = answer["library"]
    source = "GPIOZERO_PIN_FACTORY" if chosen else f"gpiozero fell back to it: {tried}" if tried else "gpiozero's first choice"
    opened = f", opened /dev/gpiochip{answer['chip']}" if answer.get("chip") is not None else ""
    note = {"mock": ": pins in memory, nothing is struck",
            "native": ": gpiozero's last resort, which cannot see pins other processes hold"}.get(library, "")
    gpio = ok("gpio", f"{library} ({source}){opened}{note}",
              "" if library in ("lgpio", "mock") else "lgpio is the library hs is tested with: .venv/bin/pip install lgpio")
    busy = {int(k): v for k, v in answer.get("busy", {}).items()}
    if busy:
        held = "; ".join(f"pin {p}: {why}" for p, why in sorted(busy.items()))
        pin_check = missing("pins", f"in use: {held}",
                            "stop what holds it (another hs play, a service: systemctl status handshake-score), "
                            "or move that instrument to a free pin in the orchestra (pin = N)")
    else:
        pin_check = ok("pins", f"{_pins(pins)} free (each claimed as an input and let go)")
    return [gpio, chip, pin_check]


def _pins(pins) -> str:
    return ("pin " if len(pins) == 1 else "pins ") + ", ".join(map(str, pins))


def check_chip() -> Check:
    """The GPIO character devices, and whether you may open them. Opening one changes nothing."""
    chips = sorted(glob.glob("/dev/gpiochip*"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    if not chips:
        return missing("gpio-chip", "no /dev/gpiochip*: no GPIO controller here (the solenoids need a Raspberry Pi)",
                       "on a Raspberry Pi the chip is there; elsewhere " + DRY_RUN_HINT)
    denied = []
    for path in chips:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        except OSError as e:
            denied.append(f"{path} ({e.strerror})")
    if denied:
        group = _group_name(os.stat(chips[0]).st_gid)
        return missing("gpio-chip", f"you ({_me()}) may not open {', '.join(denied)}",
                       f"sudo usermod -aG {group} USER, then log in again")
    return ok("gpio-chip", f"{', '.join(chips)}: you may open {'it' if len(chips) == 1 else 'them'}")


def pins_in_use(factory, pins) -> dict[int, str]:
    """The pins of ``pins`` something else holds, each with the reason gpiozero or its pin
    library gives. Each pin is reserved, claimed as an input (lgpio: pull untouched, so a coil's
    gate stays low) and its reservation let go; closing ``factory`` frees the lines."""
    class Probe:  # a reserver in gpiozero's sense: it gives way to every other holder
        def _conflicts_with(self, other):
            return True

    probe, busy = Probe(), {}
    for pin in pins:
        try:
            factory.reserve_pins(probe, pin)
            try:
                factory.pin(pin)
            finally:
                factory.release_pins(probe, pin)
        except Exception as e:  # noqa: BLE001 - GPIOPinInUse, lgpio.error('GPIO busy'), a pin the board lacks...
            busy[int(pin)] = str(e).strip("'\"") or type(e).__name__
    return busy


def probe_gpio(pins: list[int]) -> dict:
    """In the child: the pin factory gpiozero picks (its own choice, by its own table), its chip,
    and which of ``pins`` are busy; the factory closed at the end."""
    import warnings

    try:
        from gpiozero import Device
    except ImportError as e:
        return {"library": None, "error": f"gpiozero is not installed ({e})"}
    factory, error = None, ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pick = getattr(Device, "_default_pin_factory", None)
            if pick is not None:
                factory = pick()
            else:  # another gpiozero: its public way, which keeps the factory
                Device.ensure_pin_factory()
                factory = Device.pin_factory
        except Exception as e:  # noqa: BLE001 - BadPinFactory, or a library that fails as it loads
            error = str(e)
        tried = [str(w.message) for w in caught if "Falling back" in str(w.message)]
    if factory is None:
        return {"library": None, "error": error, "tried": tried}
    try:
        return {"library": FACTORY_NAMES.get(type(factory).__name__, type(factory).__name__),
                "chip": getattr(factory, "chip", None), "tried": tried, "busy": pins_in_use(factory, pins)}
    finally:
        factory.close()


# --- MIDI and sound ----------------------------------------------------------------------------

def check_midi(timeout_s: float = TIMEOUT_S) -> Check:
    """MIDI output ports, as hs play finds them (mido's python-rtmidi backend, ALSA's sequencer)."""
    answer = _probe("midi", "-", timeout_s)
    ports = answer.get("ports") or []
    if ports:
        return ok("midi", f"{len(ports)} output port{'s' * (len(ports) != 1)}: {_some(ports, 4)}")
    if "library" in answer or "failed" in answer:
        return missing("midi", answer.get("library") or answer["failed"],
                       "pip install python-rtmidi (it needs libasound2: sudo apt install libasound2)")
    start = "start a synthesizer (fluidsynth -a alsa -m alsa_seq /usr/share/sounds/sf2/TimGM6mb.sf2) or plug in a MIDI interface"
    if not os.path.exists("/dev/snd/seq"):
        return missing("midi", "no MIDI output ports: no ALSA sequencer here (/dev/snd/seq)",
                       f"sudo modprobe snd-seq, then {start}")
    if not os.access("/dev/snd/seq", os.R_OK | os.W_OK):
        return missing("midi", f"you ({_me()}) may not open /dev/snd/seq",
                       f"sudo usermod -aG {_group_name(os.stat('/dev/snd/seq').st_gid)} USER, then log in again")
    return missing("midi", "no MIDI output ports", start)


def probe_midi() -> dict:
    try:
        import mido
        import rtmidi  # noqa: F401 - mido's backend; its absence is said here, not in a traceback
    except ImportError as e:
        return {"library": f"mido or python-rtmidi cannot load: {e}"}
    try:
        return {"ports": mido.Backend("mido.backends.rtmidi").get_output_names()}
    except Exception as e:  # noqa: BLE001 - rtmidi's SystemError where there is no ALSA sequencer
        return {"ports": [], "error": str(e)}


def check_sound(timeout_s: float = TIMEOUT_S) -> Check:
    """The default sound output, as hs play --to speakers opens it (sounddevice, PortAudio)."""
    answer = _probe("sound", "-", timeout_s)
    if "library" in answer or "failed" in answer:
        return missing("sound", answer.get("library") or answer["failed"],
                       "sudo apt install libportaudio2 (scripts/setup.sh does it)")
    default, outputs = answer.get("default"), answer.get("outputs", [])
    if default:
        return ok("sound", f"default output {default['name']!r} ({default['hostapi']}), {default['channels']} channels "
                           f"at {default['rate']:g} Hz; {len(outputs)} output device{'s' * (len(outputs) != 1)}")
    fix = ("connect a sound card (USB or HDMI; the Pi's headphone jack needs dtparam=audio=on), or start a JACK "
           "server; hs render -o OUT.wav writes the sound to a file instead")
    if os.path.isdir("/dev/snd") and not os.access("/dev/snd", os.R_OK | os.X_OK):
        fix = f"sudo usermod -aG audio USER, then log in again; or {fix}"
    where = "" if os.path.isdir("/dev/snd") else " (no /dev/snd)"
    return missing("sound", f"PortAudio finds no output device{where}", fix)


def probe_sound() -> dict:
    try:
        import sounddevice as sd
    except (OSError, ImportError) as e:  # OSError: the PortAudio library is missing
        return {"library": f"sounddevice cannot load PortAudio: {e}"}
    apis = [a["name"] for a in sd.query_hostapis()]
    outputs = [d["name"] for d in sd.query_devices() if d["max_output_channels"] > 0]
    try:
        d = sd.query_devices(kind="output")
        default = {"name": d["name"], "hostapi": apis[d["hostapi"]], "channels": d["max_output_channels"],
                   "rate": d["default_samplerate"]}
    except Exception:  # noqa: BLE001 - PortAudioError: no default output device
        default = None
    return {"default": default, "outputs": outputs}


# --- another package's performer ---------------------------------------------------------------

def check_performer(name: str) -> Check:
    """A performer another package adds (an entry point): whether its class loads, and what it
    says it needs."""
    from .play import registry

    entry = registry.find(name)
    try:
        cls = entry.load()
    except HandshakeScoreError as e:
        return missing(f"performer:{name}", str(e).removeprefix(f"--to {name}: "),
                       f"reinstall {entry.origin}, or ask its authors" if entry.origin != registry.OURS else "")
    needs = f"; it needs {cls.needs}" if cls.needs else ""
    return ok(f"performer:{name}", f"{entry.target} (from {entry.origin}) loads{needs}")


# --- the orchestra --------------------------------------------------------------------------------

def check_orchestra(path: str | os.PathLike | None):
    """The orchestra ``path`` (or the built-in one) and its check; a bad file is a ``missing``
    line naming the problem, and the built-in orchestra's pins are checked in its place."""
    from .orchestra import DEFAULT, load_orchestra

    if path is None:
        return DEFAULT, ok("orchestra", f"built-in ({_pins(_pin_set(DEFAULT))})")
    try:
        band = load_orchestra(path)
    except HandshakeScoreError as e:
        return DEFAULT, missing("orchestra", f"{e} (the pins checked are the built-in orchestra's)",
                                "fix the file; hs orchestra --show prints a valid orchestra to start from")
    return band, ok("orchestra", f"{os.fspath(path)} ({_pins(_pin_set(band))})")


def _pin_set(band) -> list[int]:
    return sorted({i.pin for i in band.instruments.values()})


def _child(argv: list[str]) -> None:
    """``python -m handshake_score.doctor gpio|midi|sound ARG``: one JSON line on stdout. What the
    libraries print themselves (pigpio, ALSA) goes to stderr, which the parent keeps apart."""
    answer_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    kind, arg = argv[0], argv[1] if len(argv) > 1 else ""
    if kind == "gpio":
        answer = probe_gpio([int(p) for p in arg.split(",") if p])
    elif kind == "midi":
        answer = probe_midi()
    elif kind == "sound":
        answer = probe_sound()
    else:
        answer = {"failed": f"unknown probe {kind!r}"}
    answer_to.write(json.dumps(answer) + "\n")
    answer_to.close()


if __name__ == "__main__":
    _child(sys.argv[1:])
