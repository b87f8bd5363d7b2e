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
import mmap
import os
import stat
import threading

_STEP = 32 << 20  # bytes hashed at a time


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
            except (OSError, ValueError):  # ValueError: mmap of an empty file
                return

    def _sha256(self, path: str) -> str:
        """Hashed through a map of the file in large steps: each step lets go of the GIL once
        (a read of a small block and its hash would ask the scoring thread for it a thousand
        times a second)."""
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) or size == 0:
                while not self._abandoned.is_set() and (block := f.read(_STEP)):
                    digest.update(block)
                return digest.hexdigest()
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
                for at in range(0, len(view), _STEP):
                    if self._abandoned.is_set():
                        break
                    with view[at:at + _STEP] as step:
                        digest.update(step)
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
