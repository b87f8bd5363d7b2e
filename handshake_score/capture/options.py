"""What to record and what was recorded: the plain data types of a capture."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import HandshakeScoreError
from ..tracker import Kind, Outcome

DEFAULT_FILTER = "tcp"
DEFAULT_SNAPLEN = 128  # Ethernet + IPv6 + a TCP header with every option is 114 bytes
MIN_SNAPLEN = 64
STOP_WAIT_S = 10.0     # how long dumpcap gets to close its file once told to stop
POLL_S = 0.2


class CaptureFailed(HandshakeScoreError):
    """dumpcap stopped with an error after the capture had started (a full disk, an interface
    gone): what was captured is kept, and ``result`` describes it."""

    def __init__(self, message: str, result: CaptureResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Interface:
    """A capture interface as ``dumpcap -D`` lists it."""

    number: int
    name: str
    description: str = ""
    addresses: tuple[str, ...] = ()
    loopback: bool = False


_UNITS = {"": None, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6, "mib": 1 << 20,
          "g": 10**9, "gb": 10**9, "gib": 1 << 30}


@dataclass(frozen=True)
class Ring:
    """A ring buffer: a new file every ``size`` bytes, the oldest deleted past ``files``."""

    size: int
    files: int

    @classmethod
    def parse(cls, text: str) -> Ring:
        """``100MB:10`` (kB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)."""
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*:\s*(\d+)\s*", text)
        if not m or m.group(2).lower() not in _UNITS:
            raise HandshakeScoreError(f"--ring {text}: write SIZE:FILES, such as 100MB:10")
        unit = _UNITS[m.group(2).lower()]
        if unit is None:
            raise HandshakeScoreError(f"--ring {text}: give the size a unit, such as {m.group(1)}MB:{m.group(3)}")
        ring = cls(int(float(m.group(1)) * unit), int(m.group(3)))
        if ring.size < 1000:
            raise HandshakeScoreError(f"--ring {text}: a file must be allowed at least 1kB")
        if ring.files < 2:
            raise HandshakeScoreError(f"--ring {text}: a ring needs at least 2 files")
        return ring

    @property
    def kilobytes(self) -> int:
        """The size as dumpcap takes it (``-b filesize:`` in units of 1000 bytes)."""
        return -(-self.size // 1000)


@dataclass
class CaptureOptions:
    """What to record. ``interface`` None: the first interface that is not a loopback,
    as dumpcap would choose (a number: that line of :func:`list_interfaces`).
    ``output`` None: ``captures/IFACE-YYYYmmddTHHMMSSZ.pcapng`` (UTC). ``snaplen`` 0
    keeps whole packets; ``bpf`` "" captures everything. ``ring`` is a :class:`Ring`
    or its text (``100MB:10``). ``force`` replaces an existing file or ring."""

    interface: str | None = None
    output: str | os.PathLike | None = None
    duration: float | None = None
    packets: int | None = None
    bpf: str = DEFAULT_FILTER
    snaplen: int = DEFAULT_SNAPLEN
    ring: Ring | str | None = None
    force: bool = False


@dataclass
class Status:
    """How a running capture is doing (given to ``on_progress``)."""

    elapsed_s: float
    left_s: float | None  # with a duration
    packets: int
    handshakes: int       # attempts seen (their SYNs)
    complete: int         # attempts completed so far
    refused: int          # attempts refused so far
    bytes: int            # written in all, across ring files
    files: int            # files written (ring: including those rotated away)
    path: Path | None     # the file being written


@dataclass
class CaptureResult:
    """What was recorded. ``files``: the capture's files on disk at the end (a ring's
    files that are left), ``size`` their bytes; ``written``: files written in all;
    ``stopped``: ``duration``, ``packets``, a signal's name (``SIGINT``...) or
    ``dumpcap`` (it ended by itself, see ``error``)."""

    interface: str
    output: Path
    options: CaptureOptions
    files: list[Path] = field(default_factory=list)
    written: int = 0
    size: int = 0
    packets: int = 0
    segments: int = 0
    notes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Kind.ALL, 0))
    handshakes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome.ALL, 0))
    seconds: float = 0.0
    stopped: str = ""
    received: int | None = None  # dumpcap's own count of packets the filter passed
    dropped: int | None = None   # and of those it could not keep up with
    cut_bytes: int = 0           # a half-written record removed from the end
    missed: list[Path] = field(default_factory=list)  # ring files deleted before they could be read
    not_followed: str | None = None  # why packets could not be counted as they came, if so
    killed: bool = False         # dumpcap did not stop when told and was killed
    error: str | None = None


def default_output(interface: str, now: datetime | None = None) -> Path:
    """``captures/IFACE-YYYYmmddTHHMMSSZ.pcapng``, the time in UTC."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", interface).strip("._") or "capture"
    return Path("captures") / f"{safe}-{stamp}.pcapng"
