"""The orchestra: what each note kind is played on.

A small TOML file maps each note kind to its instrument: the General MIDI
percussion key and velocity (for MIDI), the BCM pin, pulse width and
re-strike interval of its solenoid (for ``hs play``), and a timbre (for
``hs render``). The built-in orchestra follows the original piece: the
requests (SYN, ACK) on a woodblock, the responses (SYN-ACK) on a tin drum, so
a clean handshake sounds 1-2-1. A file overrides the built-in values key by
key: ``[syn]`` with ``note = 60`` alone changes just that.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, fields, replace

from .errors import HandshakeScoreError
from .tracker import Kind

TIMBRES = ("woodblock", "tin", "click", "noise")


class OrchestraError(HandshakeScoreError):
    """An orchestra that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Instrument:
    """How one note kind sounds and strikes."""

    note: int               # General MIDI percussion key, 0-127
    velocity: int           # 1-127
    channel: int = 9        # MIDI channel index 0-15; 9 is General MIDI percussion
    pin: int = 17           # BCM pin of its solenoid
    pulse_ms: float = 15.0  # how long the coil is on per strike (at most 90: hs play cuts any pulse at 95)
    restrike_ms: float = 80.0  # least time between two strikes of that coil (15/80: under a 25 % duty cap)
    timbre: str = "woodblock"
    name: str = ""          # what the note is called, for people


_LIMITS = {"note": (0, 127), "velocity": (1, 127), "channel": (0, 15), "pin": (0, 27),
           "pulse_ms": (1.0, 90.0), "restrike_ms": (1.0, 10_000.0)}


@dataclass(frozen=True)
class Orchestra:
    """An instrument for every note kind, and where it came from (``name``)."""

    instruments: dict[str, Instrument]
    name: str = "built-in"

    def __getitem__(self, kind: str) -> Instrument:
        return self.instruments[kind]

    def as_dict(self) -> dict:
        """Plain JSON-able values; :meth:`from_dict` reads them back."""
        return {"name": self.name, "instruments": {k: asdict(i) for k, i in self.instruments.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Orchestra:
        if not isinstance(d, dict) or not isinstance(d.get("instruments"), dict):
            raise OrchestraError("an orchestra needs an 'instruments' table")
        return DEFAULT.updated(d["instruments"], str(d.get("name", "")))

    def updated(self, table: dict, name: str) -> Orchestra:
        """This orchestra with the values of ``table`` (kind -> key -> value) in place of its own."""
        instruments = dict(self.instruments)
        for kind, values in table.items():
            if kind not in Kind.ALL:
                raise OrchestraError(f"[{kind}]: unknown note kind (the kinds are {', '.join(Kind.ALL)})")
            if not isinstance(values, dict):
                raise OrchestraError(f"{kind}: must be a table ([{kind}]) of keys")
            instruments[kind] = replace(instruments[kind], **{k: _checked(kind, k, v) for k, v in values.items()})
        return Orchestra(instruments, name)

    def to_toml(self) -> str:
        lines = [
            "# handshake-score orchestra: what each note kind is played on.",
            "# note, velocity: General MIDI percussion key (0-127) and loudness (1-127);",
            "#   channel: MIDI channel index 0-15 (9 is the General MIDI percussion channel).",
            "# pin, pulse_ms, restrike_ms: the BCM pin of its solenoid, how long a strike keeps",
            "#   the coil on, and the least time between two strikes of that coil (hs play).",
            f"# timbre: its synthesised sound (hs render): {', '.join(TIMBRES)}.",
            "# A file given with --orchestra needs only the keys it changes.",
        ]
        for kind, inst in self.instruments.items():
            lines.append(f"\n[{kind}]")
            for f in fields(inst):
                value = getattr(inst, f.name)
                lines.append(f"{f.name} = " + (_toml_string(value) if isinstance(value, str) else repr(value)))
        return "\n".join(lines) + "\n"


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _checked(kind: str, key: str, value):
    where = f"[{kind}] {key}"
    types = {f.name: f.type for f in fields(Instrument)}
    if key not in types:
        raise OrchestraError(f"{where}: unknown key (the keys are {', '.join(types)})")
    want = types[key]
    if want == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise OrchestraError(f"{where}: {value!r} is not {'an integer' if want == 'int' else 'a number' if want == 'float' else 'a string'}")
    if key in _LIMITS:
        lo, hi = _LIMITS[key]
        if not lo <= value <= hi:
            raise OrchestraError(f"{where}: {value:g} is outside {lo:g}-{hi:g}")
    if key == "timbre" and value not in TIMBRES:
        raise OrchestraError(f"{where}: {value!r} is not one of {', '.join(TIMBRES)}")
    return value


def load_orchestra(path: str | os.PathLike) -> Orchestra:
    """Read a TOML orchestra file over the built-in orchestra. Raises :class:`OrchestraError`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise OrchestraError(f"{path}: cannot read: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OrchestraError(f"{path}: not valid TOML: {e}") from None
    try:
        return DEFAULT.updated(table, os.path.basename(path))
    except OrchestraError as e:
        raise OrchestraError(f"{path}: {e}") from None


# Requests on the woodblock (pin 17), responses on the tin drum (pin 27), resets on a third coil.
DEFAULT = Orchestra({
    Kind.SYN: Instrument(76, 100, pin=17, timbre="woodblock", name="Hi Wood Block"),
    Kind.SYN_RETRY: Instrument(77, 70, pin=17, timbre="woodblock", name="Low Wood Block"),
    Kind.SYN_ACK: Instrument(81, 100, pin=27, timbre="tin", name="Open Triangle"),
    Kind.SYN_ACK_RETRY: Instrument(80, 70, pin=27, timbre="tin", name="Mute Triangle"),
    Kind.ACK: Instrument(75, 90, pin=17, timbre="click", name="Claves"),
    Kind.RST: Instrument(49, 110, pin=22, timbre="noise", name="Crash Cymbal 1"),
})
