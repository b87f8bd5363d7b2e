"""The sha256 of each capture a score is made from, worked out beside the scoring.

>>> digests = Digests(["a.pcapng", "b.pcapng"])   # starts at once, in a thread
>>> ...                                           # score the captures meanwhile
>>> digests.result()                              # ['9f86d0…', '2c26b4…']

hashlib lets go of the GIL, so the thread runs on a core the scoring leaves idle: while
Python starts, while the tracker waits for the reading process, while the score's lines
are formatted. The command line starts it before its large imports, and hands it to the
scoring.
"""

from __future__ import annotations

import hashlib
import os
import threading

_STEP = 4 << 20  # bytes read and hashed at a time


class Digests(threading.Thread):
    """The sha256 of each of ``paths``, in a daemon thread started at once; ``result()``
    waits for them ("" for a file it could not read: the capture's reader says why).
    ``stop`` abandons them (when nobody will want them)."""

    def __init__(self, paths: list[str | os.PathLike]):
        super().__init__(daemon=True, name="hs-digests")
        self.paths = [os.fspath(p) for p in paths]
        self.digests = [""] * len(self.paths)
        self._abandoned = threading.Event()
        self.start()

    def run(self) -> None:
        for i, path in enumerate(self.paths):
            try:
                self.digests[i] = self._sha256(path)
            except OSError:
                return

    def _sha256(self, path: str) -> str:
        """Read into one buffer and hashed a few MB at a time: each step lets go of the GIL
        twice (reads of 1 MB and their hash asked the scoring thread for it more than a
        thousand times a second), and memory stays at the buffer (a map of the whole file
        would count it all in the process's memory, and a file cut short meanwhile would
        kill it with SIGBUS)."""
        digest = hashlib.sha256()
        buffer = bytearray(_STEP)
        with open(path, "rb", buffering=0) as f, memoryview(buffer) as view:
            while not self._abandoned.is_set() and (n := f.readinto(buffer)):
                digest.update(view[:n])
        return digest.hexdigest()

    def stop(self) -> None:
        self._abandoned.set()

    def done(self) -> bool:
        return not self.is_alive()

    def result(self) -> list[str]:
        self.join()
        return self.digests

    def of(self, paths: list[str | os.PathLike]) -> Digests:
        """These digests if they are of ``paths``; else (stopped) new ones that are."""
        if [os.fspath(p) for p in paths] == self.paths:
            return self
        self.stop()
        return Digests(paths)
