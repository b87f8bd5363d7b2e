"""``hs play``: a score performed on solenoids, a MIDI port or the console.

The pieces, each in its module: :mod:`.performer` (what every performer does),
:mod:`.console`, :mod:`.solenoids` (with :mod:`.coil`, the limits no option
lifts), :mod:`.midiport`; :mod:`.conductor`, the one thread that keeps time;
:mod:`.performance`, which plans the parts, runs the conductor and silences
everything on the way out.
"""

from .console import ConsolePerformer
from .midiport import MidiPortPerformer
from .performance import Performance, Progress, perform
from .performer import Part, Performer

__all__ = ["ConsolePerformer", "MidiPortPerformer", "Part", "Performance", "Performer", "Progress", "perform"]
