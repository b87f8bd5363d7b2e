"""Writing output files safely: to a temporary name beside the target, then renamed.

An interrupted run (Ctrl-C, SIGTERM, a full disk, an error halfway) leaves the
previous file as it was and no half-written one; an existing file is replaced
only when asked (``force``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from .errors import HandshakeScoreError


class OutputExistsError(HandshakeScoreError):
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: already exists; use --force to replace it, or choose another name")


def check_writable(path: str | os.PathLike, force: bool = False) -> None:
    """Fail early, before any work, if ``path`` exists (without ``force``) or could not be made.
    Creates nothing: a run that fails later leaves no empty folder behind."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise HandshakeScoreError(f"{path}: is a directory")
    if os.path.exists(path) and not force:
        raise OutputExistsError(path)
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder):  # the folder is made when the file is written
        if os.path.exists(folder):
            raise HandshakeScoreError(f"{path}: {folder} is not a folder")
        folder = os.path.dirname(folder)
    if not os.access(folder, os.W_OK):
        raise HandshakeScoreError(f"{path}: cannot write in {folder}: permission denied")


@contextmanager
def atomic_write(path: str | os.PathLike, force: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``path`` only once complete.

    >>> with atomic_write("scores/a.score") as f:
    ...     f.write(b"...")
    """
    path = os.fspath(path)
    check_writable(path, force)
    folder, name = os.path.split(path)
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise HandshakeScoreError(f"{folder}: cannot create the folder: {e.strerror or e}") from None
    fd, tmp = _create_beside(folder or ".", name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not force and os.path.exists(path):  # appeared while we wrote
            raise OutputExistsError(path)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise HandshakeScoreError(f"{path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp)
        raise


def _create_beside(folder: str, name: str) -> tuple[int, str]:
    """A new temporary file ``.NAME.xxxxxxxx.part`` in ``folder``, its mode what a plain
    ``open()`` would give (``mkstemp`` would make it 0600; reading the umask means changing it)."""
    while True:
        tmp = os.path.join(folder, f".{name}.{os.urandom(4).hex()}.part")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise HandshakeScoreError(f"{os.path.join(folder, name)}: cannot write: {e.strerror or e}") from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
