"""Errors a user can meet, each said in one line."""

from __future__ import annotations

import os


class HandshakeScoreError(Exception):
    """Base of every error the ``hs`` command reports as one line with exit code 2."""


class CaptureError(HandshakeScoreError):
    """A capture file that cannot be read: not a capture, corrupt, cut short, unsupported."""

    def __init__(self, path: str | os.PathLike, problem: str, offset: int | None = None):
        self.path = os.fspath(path)
        self.problem = problem
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path}: {problem}{where}")
