"""``hs play``: a score performed on solenoids, a MIDI port, the speakers, OSC or the console.

The pieces, each in its module: :mod:`.performer` (the two protocols every performer
keeps, planned and live, and :class:`~.performer.Option`); :mod:`.registry` (who can
play, by name: hs's own table and the ``handshake_score.performers`` entry points);
the performers :mod:`.console`, :mod:`.solenoids` (with :mod:`.coil`, the limits no
option lifts, and :mod:`.coildriver`, the real-time process that holds the pins),
:mod:`.midiport`, :mod:`.speakers`, :mod:`.osc`; :mod:`.conductor`, the one thread
that keeps time; :mod:`.performance`, which plans the parts, runs the conductor and
silences everything on the way out; :mod:`.live`, the network as it happens;
:mod:`.command`, ``hs play``'s options and reports.

>>> from handshake_score.play import perform, registry
>>> perform(score, [registry.build("console", score.orchestra)], stretch=10)
"""

from importlib import import_module

_WHERE = {"ConsolePerformer": ".console", "LivePerformer": ".performer", "MidiPortPerformer": ".midiport",
          "Option": ".performer", "Part": ".performer", "Performance": ".performance", "Performer": ".performer",
          "Progress": ".performance", "perform": ".performance", "perform_live": ".live"}
__all__ = sorted([*_WHERE, "registry"])


def __getattr__(name: str):
    # loaded when first asked for, so the coil driver's process starts without numpy or mido
    if name == "registry":
        return import_module(".registry", __name__)
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
