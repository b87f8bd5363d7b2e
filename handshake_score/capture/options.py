"""What to record and what was recorded: the plain data types of a capture."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import HandshakeScoreError
from ..sources.decoding import DEFAULT, Decapsulation
from ..tracker import Kind, Outcome

# The first 160 bytes keep the inner TCP header's fixed 20 bytes (all the reader needs) under
# the deepest common wrapping: VXLAN or ERSPAN III over IPv6 around a VLAN-tagged inner IPv6
# (14+40+8+8+14+4+40+20 = 148; ERSPAN III with its subheader 156), and plain TCP over IPv6 whole
# with every option (114). More would keep payload: it stops short of a TLS ClientHello's
# server name in ordinary IPv4 TCP (at least ~116 bytes into the payload, which starts at 54-66).
DEFAULT_SNAPLEN = 160
MIN_SNAPLEN = 64

def _ip(d: Decapsulation) -> str:
    """TCP, and the IP packets the reader can look inside for it: GRE (ERSPAN too),
    IPv4 in IP (4), IPv6 in IP (41), and UDP to a tunnel's port (VXLAN and Geneve by
    destination port, as the reader takes them; GTP-U, Teredo and AYIYA by either)."""
    udp = [f"udp dst port {p}" for p in dict.fromkeys((*d.vxlan_ports, *d.geneve_ports))]
    udp += [f"udp port {p}" for p in dict.fromkeys((*d.gtp_ports, *d.teredo_ports, *d.ayiya_ports))]
    return " or ".join(["tcp", "proto 47", "proto 4", "proto 41", *udp])


def _ip_at(at: int, d: Decapsulation) -> str:
    """:func:`_ip` for an IPv4 or IPv6 header at byte ``at`` of an Ethernet frame, by offsets
    (for where libpcap's own words cannot go)."""
    dst = sorted(set(d.vxlan_ports) | set(d.geneve_ports))
    either = sorted(set(d.gtp_ports) | set(d.teredo_ports) | set(d.ayiya_ports))

    def ports(udp: str) -> str:
        return " or ".join([f"ether[{udp} + 2:2] = {p}" for p in dst]
                           + [f"ether[{udp}:2] = {p} or ether[{udp} + 2:2] = {p}" for p in either])
    v4 = " or ".join(f"ether[{at + 9}] = {p}" for p in (6, 47, 4, 41))
    v6 = " or ".join(f"ether[{at + 6}] = {p}" for p in (6, 47, 4, 41))
    # libpcap's "and" and "or" bind alike, left to right: every mix is in parentheses
    return (f"(ether[{at}] & 0xf0 = 0x40 and ({v4} or (ether[{at + 9}] = 17 and "
            f"({ports(f'{at} + (ether[{at}] & 0xf) * 4')})))) or "
            f"(ether[{at}] & 0xf0 = 0x60 and ({v6} or (ether[{at + 6}] = 17 and ({ports(str(at + 40))}))))")


def capture_filter(decapsulation: Decapsulation = DEFAULT, ethernet: bool = True) -> str:
    """The default capture filter (libpcap syntax): every packet the reader can find TCP in,
    tunnelled or not, and no other payloads (plain or tagged UDP, DNS...). A tunnel's packets
    (GRE, IP in IP, UDP to its port), MPLS and a tagged PPPoE session are kept whole: the
    filter does not look inside them.

    ``ethernet`` adds what only an Ethernet link carries: MPLS, PPPoE sessions and 802.1Q
    tags (QinQ, and PPPoE in a tag, as DSL uplinks have it). libpcap's ``vlan``,
    ``pppoes`` and ``mpls`` move its offsets for the rest of the expression (and refuse
    a ``vlan`` after ``pppoes``), so MPLS and PPPoE are matched by their EtherType
    (``ether proto`` follows the tags) and the ``vlan`` branch comes last. On other
    links (``-i any``, tun devices) these words do not compile."""
    ip = _ip(decapsulation)
    if not ethernet:
        return ip
    # whole: a label stack's depth varies, and a tag hides PPP's protocol field from libpcap
    wrapped = "ether proto 0x8847 or ether proto 0x8848 or ether proto 0x8864"
    pppoe = f"ether[12:2] = 0x8864 and ({_ip_at(22, decapsulation)})"  # untagged: looked inside, by offsets
    tagged = f"{ip} or {wrapped}"
    mpls = "ether proto 0x8847 or ether proto 0x8848"
    return f"{ip} or {mpls} or ({pppoe}) or (vlan and ({tagged} or (vlan and ({tagged}))))"


DEFAULT_FILTER = capture_filter()


def is_nflog(interface: str | None) -> bool:
    """``nflog`` or ``nflog:N``: the packets a netfilter ``log group N`` rule copies (Linux)."""
    return bool(interface) and (interface == "nflog" or interface.startswith("nflog:"))


def filter_for(interface: str | None, decapsulation: Decapsulation = DEFAULT) -> str:
    """The default filter for ``interface``: none on NFLOG (libpcap cannot filter it, and
    the nft rule that feeds it chose the packets), the IP-only one on a link that is not
    Ethernet (Linux's ``/sys/class/net/IF/type``, 1 for Ethernet), the whole one otherwise."""
    if is_nflog(interface):
        return ""
    try:
        ethernet = Path(f"/sys/class/net/{interface}/type").read_text().strip() == "1" if interface else True
    except OSError:  # "any" (Linux cooked), or not Linux: Ethernet unless it is "any"
        ethernet = interface != "any"
    return capture_filter(decapsulation, ethernet)


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
    keeps whole packets; ``bpf`` None: :func:`filter_for` the interface (TCP, tunnelled
    or not, by ``decapsulation``'s ports), "" captures everything. ``ring`` is a
    :class:`Ring` or its text (``100MB:10``). ``force`` replaces an existing file or ring."""

    interface: str | None = None
    output: str | os.PathLike | None = None
    duration: float | None = None
    packets: int | None = None
    bpf: str | None = None
    snaplen: int = DEFAULT_SNAPLEN
    ring: Ring | str | None = None
    force: bool = False
    decapsulation: Decapsulation = DEFAULT


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
    bpf: str = ""  # the capture filter dumpcap was given ("" none)
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
