"""``hs play``: a score performed on solenoids, a MIDI port or the console.

The pieces, each in its module: :mod:`.performer` (what every performer does),
:mod:`.console`, :mod:`.solenoids` (with :mod:`.coil`, the limits no option
lifts, and :mod:`.coildriver`, the real-time process that holds the pins),
:mod:`.midiport`; :mod:`.conductor`, the one thread that keeps time;
:mod:`.performance`, which plans the parts, runs the conductor and silences
everything on the way out.
"""

from importlib import import_module

_WHERE = {"ConsolePerformer": ".console", "MidiPortPerformer": ".midiport", "Part": ".performer",
          "Performance": ".performance", "Performer": ".performer", "Progress": ".performance",
          "perform": ".performance"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    # loaded when first asked for, so the coil driver's process starts without numpy or mido
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
