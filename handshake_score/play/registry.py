"""Who can play: every performer by its ``--to`` name, loaded only when asked for.

:data:`PERFORMERS` is hs's own table, name to ``"module:Class"``, as mido names its
backends: nothing is imported until a performer is asked for, so ``hs play --to
console`` never imports gpiozero, rtmidi, sounddevice or pythonosc. Other packages
add performers through the entry-point group :data:`GROUP`, as gpiozero finds pin
factories; in their ``pyproject.toml``::

    [project.entry-points."handshake_score.performers"]
    theremin = "my_theremin.performer:ThereminPerformer"

after which ``hs play SCORE --to theremin`` plays on it, and its options appear in
``hs play --help`` under its name. Adding a performer to hs itself is a module in
this package and a line in :data:`PERFORMERS` (``docs/play.md`` shows one).

>>> from handshake_score.play import registry
>>> console = registry.build("console", band, {})
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import import_module, metadata

from ..errors import HandshakeScoreError
from .performer import OPTION_TYPES, LivePerformer, Performer

PERFORMERS = {
    "console": "handshake_score.play.console:ConsolePerformer",
    "solenoids": "handshake_score.play.solenoids:SolenoidPerformer",
    "midi": "handshake_score.play.midiport:MidiPortPerformer",
    "speakers": "handshake_score.play.speakers:SpeakersPerformer",
    "osc": "handshake_score.play.osc:OscPerformer",
    "browser": "handshake_score.play.browser:BrowserPerformer",
}
GROUP = "handshake_score.performers"
DEFAULT = "console"
OURS = "hs"  # the origin of the performers in PERFORMERS


@dataclass(frozen=True)
class Entry:
    """A performer that can be asked for: its name, where its class is (``module:Class``),
    and who provides it (``hs``, or the distribution whose entry point names it)."""

    name: str
    target: str
    origin: str = OURS

    def load(self) -> type[Performer]:
        """Its class, imported now; raises :class:`HandshakeScoreError` saying why it cannot be."""
        return _load(self)


@functools.cache
def _load(entry: Entry) -> type[Performer]:
    module, _, attribute = entry.target.partition(":")
    try:
        found = import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
    except Exception as e:  # noqa: BLE001 - a plug-in's import may fail any way; say it in one line
        raise HandshakeScoreError(f"--to {entry.name}: cannot load {entry.target}: {type(e).__name__}: {e}") from None
    if not (isinstance(found, type) and issubclass(found, Performer)):
        raise HandshakeScoreError(f"--to {entry.name}: {entry.target} is not a Performer "
                                  "(handshake_score.play.performer.Performer)")
    if found.name != entry.name:
        raise HandshakeScoreError(f"--to {entry.name}: {entry.target} calls itself {found.name!r}; "
                                  f"its name must be {entry.name!r}")
    for option in found.options:
        if option.type not in OPTION_TYPES or not option.name or option.name.startswith("-"):
            raise HandshakeScoreError(f"--to {entry.name}: option {option.name!r} of {entry.target}: a name without "
                                      "dashes and a type of str, int, float, bool or pathlib.Path")
    return found


@functools.cache
def entries() -> dict[str, Entry]:
    """Every performer there is, hs's own first (in :data:`PERFORMERS` order), then those of
    other packages by name. An entry point cannot take the name of one of hs's own."""
    found = {name: Entry(name, target) for name, target in PERFORMERS.items()}
    for point in sorted(metadata.entry_points(group=GROUP), key=lambda p: p.name):
        if point.name not in found:
            found[point.name] = Entry(point.name, point.value, point.dist.name if point.dist else "?")
    return found


def names() -> list[str]:
    return list(entries())


def find(name: str) -> Entry:
    """The entry called ``name``; raises :class:`HandshakeScoreError` listing them if there is none."""
    try:
        return entries()[name]
    except KeyError:
        raise HandshakeScoreError(f"--to: unknown performer {name!r} (the performers are {', '.join(names())}; "
                                  "hs play --performers lists them)") from None


def load(name: str) -> type[Performer]:
    """The class of the performer called ``name``, imported now."""
    return find(name).load()


def loadable() -> dict[str, type[Performer]]:
    """The classes of every performer that loads here, by name (those that do not are left out:
    ``hs play --performers`` says why)."""
    classes = {}
    for name, entry in entries().items():
        try:
            classes[name] = entry.load()
        except HandshakeScoreError:
            continue
    return classes


def defaults(cls: type[Performer]) -> dict[str, object]:
    """Every option of ``cls`` by key, at its value when not given."""
    return {o.key: o.empty for o in cls.options}


def build(name: str, band, options: dict[str, object] | None = None, *, live: bool = False) -> Performer:
    """The performer called ``name``, made for orchestra ``band`` from ``options`` (by
    :attr:`~.performer.Option.key`; those not given take their defaults). ``live``: to play
    the network as it happens, which a performer must be a :class:`~.performer.LivePerformer` for."""
    cls = load(name)
    given = dict(options or {})
    unknown = set(given) - {o.key for o in cls.options}
    if unknown:
        raise HandshakeScoreError(f"--to {name} has no option {', '.join(sorted(unknown))}")
    if live and not issubclass(cls, LivePerformer):
        raise HandshakeScoreError(f"--to {name} plays scores, not the network as it happens (--live)")
    made = cls.build(band, {**defaults(cls), **given}, live=live)
    if not isinstance(made, Performer):
        raise HandshakeScoreError(f"--to {name}: {cls.__name__}.build made {type(made).__name__}, not a performer")
    return made
