"""A ring buffer's files, found from the name it was given.

``dumpcap -w captures/gallery.pcapng -b filesize:... -b files:N`` never writes
``captures/gallery.pcapng`` itself: it writes ``gallery_00001_20261124043512.pcapng``,
``gallery_00002_...`` and so on (a sequence number, then the local time the
file was opened), deleting the oldest past N. So that one name stands
for the whole set, :func:`expand` turns a base name that does not exist into its
ring files, in sequence order: numerically, since a shell's glob puts
``_100000_`` before ``_99999_``, and not by the time in the name, which jumps
when a Raspberry Pi without a clock battery sets its clock after booting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

__all__ = ["expand", "ring_files", "split_name"]


def split_name(base: str | os.PathLike) -> tuple[Path, str, str]:
    """(folder, prefix, suffix) as dumpcap splits a ring's base name: at the last dot of the
    file name, so ``captures/a.pcapng`` gives ring files ``captures/a_NNNNN_YYYYmmddHHMMSS.pcapng``."""
    path = Path(base)
    name = path.name
    dot = name.rfind(".")
    if dot <= 0:
        return path.parent, name, ""
    return path.parent, name[:dot], name[dot:]


def ring_files(base: str | os.PathLike) -> list[Path]:
    """The files of the ring buffer named ``base`` that exist, in sequence order."""
    folder, prefix, suffix = split_name(base)
    pattern = re.compile(re.escape(prefix) + r"_(\d{5,})_(\d{14})" + re.escape(suffix))
    found = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = pattern.fullmatch(name)
        if m:
            found.append((int(m.group(1)), m.group(2), folder / name))
    return [path for _, _, path in sorted(found)]


def expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Each path as it is, except a name that does not exist but names a ring buffer's
    files: those, in sequence order. A path that is neither stays, so that reading it
    says "no such file"."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        ring = [] if os.path.lexists(path) else ring_files(path)
        out.extend(ring or [path])
    return out
