"""Writing output files safely: to a temporary name beside the target, then renamed.

An interrupted run (Ctrl-C, SIGTERM, a full disk, an error halfway) leaves the
previous file as it was and no half-written one; an existing file is replaced
only when asked (``force``).

A run killed outright (SIGKILL, a power cut) cannot remove its temporary file,
``.NAME.PID.XXXXXXXX.part``: the next write to the same target does. Each writer
holds a lock (``flock``) on its temporary file until it is renamed, and a
temporary is taken for stale only when its lock is free and the process its name
carries is gone, so a write still under way, in this process or another, is never
disturbed.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from .errors import HandshakeScoreError


_STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


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
    # Ctrl-C, SIGTERM and SIGHUP wait while the temporary file is made, so none comes between
    # its creation and the ``try`` that removes it (a signal held is raised at the first line of it)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        fd, tmp = _create_beside(folder or ".", name)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        _remove_stale(folder or ".", name)  # what a killed run left
        with os.fdopen(fd, "wb") as f:  # closed, so unlocked, only once renamed
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
    """A new temporary file ``.NAME.PID.xxxxxxxx.part`` in ``folder``, locked, its mode what a
    plain ``open()`` would give (``mkstemp`` would make it 0600; reading the umask means changing it)."""
    while True:
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise HandshakeScoreError(f"{os.path.join(folder, name)}: cannot write: {e.strerror or e}") from None
        try:  # an exception from here on must not leave the file behind
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                return fd, tmp  # a file system without locks: written unlocked, and never taken for stale
            try:
                if _same_file(tmp, fd):
                    return fd, tmp
            except OSError:
                pass
        except BaseException:
            os.close(fd)
            _remove(tmp)
            raise
        os.close(fd)  # another run took it for stale in the moment before it was locked: make another


def _remove_stale(folder: str, name: str) -> None:
    """Remove what runs killed while writing ``name`` left: temporary files of our naming
    whose lock is free and whose process is gone. Best effort: nothing here is an error."""
    pattern = re.compile(rf"\.{re.escape(name)}\.([1-9][0-9]{{0,9}})\.[0-9a-f]{{8}}\.part")
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match is None or _alive(int(match.group(1))):
            continue
        path = os.path.join(folder, entry)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a write under way (raises)
            if _same_file(path, fd):  # not renamed away (and the name reused) since it was opened
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    a, b = os.stat(path, follow_symlinks=False), os.fstat(fd)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing: True unless it surely is not."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's (EPERM), or a number that is no process id here: not ours to judge
    try:  # killed but not yet waited for by its parent: a zombie holds no file
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[:1] not in ([b"Z"], [b"X"])
    except OSError:
        return True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
