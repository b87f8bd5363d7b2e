"""Captures read through Wireshark's dissectors: for link types the fast reader
does not know, and any other file tshark reads.

tshark (found as pyshark finds it) prints a few fields per frame as text
(``-T fields``), which is streamed into :data:`~handshake_score.segments.SEGMENT`
arrays a chunk at a time: bounded memory, whatever the file's size. pyshark's
packet objects would cost a millisecond a packet; its discovery of tshark is
all that is used.

>>> reader = TsharkReader("token-ring.pcap")
>>> for segments in reader:          # the same interface as CaptureReader
...     ...

A field tshark lists several times (addresses in a tunnel) is listed outer
first: the innermost, the last, is the segment's. ``frame.protocols`` says
whether that innermost IP header is IPv4 or IPv6, and whether the TCP header is
only quoted in an ICMP error (skipped, as the fast reader skips it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Iterator

import numpy as np

from ..errors import CaptureError, HandshakeScoreError
from ..segments import SEGMENT, TcpBatch
from .decoding import DEFAULT, Decapsulation
from .pcap import MAGICS
from .pcapng import SHB

FIELDS = ("frame.time_epoch", "frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
          "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "vlan.id")
# Analyses and reassembly that the fields above do not need; defragmenting would also
# move a first fragment's TCP header to the frame that completes it, unlike the fast reader.
PREFERENCES = ("tcp.analyze_sequence_numbers:FALSE", "tcp.relative_sequence_numbers:FALSE",
               "tcp.track_bytes_in_flight:FALSE", "tcp.desegment_tcp_streams:FALSE", "ip.defragment:FALSE",
               "ipv6.defragment:FALSE")
INSTALL = "sudo apt install tshark (Debian, Ubuntu, Raspberry Pi OS; elsewhere Wireshark's command-line tools)"
CHUNK_BYTES = 1 << 20  # of tshark's text: about 10,000 frames
_V4 = b"\x00" * 10 + b"\xff\xff"
_QUOTING = {"icmp", "icmpv6"}  # a TCP header after these is the quoted start of another packet


def find_tshark() -> str | None:
    """tshark's path as pyshark finds it (its config.ini, then PATH); shutil.which
    where pyshark is not installed (it is a test dependency, not the product's)."""
    try:
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except Exception:  # not installed, or broken: PATH alone
        return shutil.which("tshark")
    try:
        return get_process_path()
    except TSharkNotFoundException:
        return None


def tshark_or_say(why: str) -> str:
    """tshark's path, or a one-line error: ``why`` it was wanted, and what to install."""
    path = find_tshark()
    if path is None:
        raise HandshakeScoreError(f"{why}, and tshark is not installed: {INSTALL}")
    return path


def command(tshark: str, path: str, decapsulation: Decapsulation) -> list[str]:
    """tshark's arguments: the fields, the cheap preferences, and the tunnels' UDP ports
    (Wireshark knows IANA's; an extra port must be decoded as the tunnel by hand)."""
    args = [tshark, "-r", path, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
            "-E", "aggregator=,"]
    for field in FIELDS:
        args += ["-e", field]
    for pref in PREFERENCES:
        args += ["-o", pref]
    for ports, protocol in ((decapsulation.vxlan_ports, "vxlan"), (decapsulation.geneve_ports, "geneve"),
                            (decapsulation.gtp_ports, "gtp"), (decapsulation.teredo_ports, "teredo"),
                            (decapsulation.ayiya_ports, "ayiya")):
        for port in ports:
            args += ["-d", f"udp.port=={port},{protocol}"]
    return args


def epoch_ns(text: str) -> int:
    """``frame.time_epoch`` ("1700000000.123456789") as integer nanoseconds, exactly:
    never through a float, which keeps only about 0.2 us of a present-day time."""
    negative = text.startswith("-")
    seconds, _, fraction = text.lstrip("-").partition(".")
    ns = int(seconds or 0) * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))
    return -ns if negative else ns


_packed: dict[str, bytes] = {}


def packed(text: str) -> bytes:
    """An address as SEGMENT stores it: 16 bytes, IPv4 mapped (``::ffff:a.b.c.d``)."""
    raw = _packed.get(text)
    if raw is None:
        if ":" in text:
            raw = socket.inet_pton(socket.AF_INET6, text)
        else:
            raw = _V4 + socket.inet_pton(socket.AF_INET, text)
        if len(_packed) < 1 << 16:  # a capture's hosts repeat; a scan's need not be kept
            _packed[text] = raw
    return raw


def _last(values: str) -> str:
    return values.rpartition(",")[2]


def _context(cols: list[str], inner: tuple[str, str]) -> int:
    """Where a segment was seen, as :meth:`TcpBatch.context` says: its VLAN ids and the
    endpoints of every IP header around the innermost, each pair in either order (so
    both directions agree); 0 for neither."""
    vlans = tuple(sorted(v for v in cols[12].split(",") if v))
    pairs = []
    for src, dst in ((cols[2], cols[3]), (cols[4], cols[5])):
        pairs += [tuple(sorted(p)) for p in zip(src.split(","), dst.split(",")) if p[0]]
    outer = sorted(pairs)
    if tuple(sorted(inner)) in outer:
        outer.remove(tuple(sorted(inner)))
    if not vlans and not outer:
        return 0
    digest = hashlib.blake2b(repr((vlans, outer)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def _row(cols: list[str]) -> tuple | None:
    """One frame's segment as (time, src, dst, sport, dport, flags, seq, ack, payload), or
    None: no TCP header (or one cut before its flags), or one quoted in an ICMP error."""
    if len(cols) < len(FIELDS) or not cols[8]:
        return None
    protocols = cols[1].split(":")
    if "tcp" not in protocols:
        return None
    below = protocols[:len(protocols) - 1 - protocols[::-1].index("tcp")]
    if _QUOTING.intersection(below):
        return None
    v6 = "ipv6" in below and ("ip" not in below or below[::-1].index("ipv6") < below[::-1].index("ip"))
    src, dst = (_last(cols[4]), _last(cols[5])) if v6 else (_last(cols[2]), _last(cols[3]))
    try:
        return (epoch_ns(cols[0]), packed(src), packed(dst), int(_last(cols[6])), int(_last(cols[7])),
                int(_last(cols[8]), 16) & 0x0FFF, int(_last(cols[9]) or 0), int(_last(cols[10]) or 0),
                int(_last(cols[11]) or 0), src, dst)
    except (ValueError, OSError):  # a field tshark could not fill (a header cut short): no segment
        return None


def segments_of(lines: list[bytes], context: bool = False) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """The TCP segments among tshark's lines (one per frame), their contexts (when
    asked), and the first frame's time."""
    rows, where, first = [], [], None
    for line in lines:
        cols = line.decode("ascii", "replace").rstrip("\r\n").split("\t")
        if first is None and cols[0]:
            first = epoch_ns(cols[0])
        row = _row(cols)
        if row is not None:
            rows.append(row)
            if context:
                where.append(_context(cols, row[-2:]))
    out = np.zeros(len(rows), SEGMENT)
    if rows:
        times, srcs, dsts, *numbers = list(zip(*rows))[:9]
        out["time_ns"] = times
        out["src"] = np.frombuffer(b"".join(srcs), "V16")
        out["dst"] = np.frombuffer(b"".join(dsts), "V16")
        for name, values in zip(("sport", "dport", "flags", "seq", "ack", "payload"), numbers):
            out[name] = values
    return out, (np.array(where, np.uint64) if context else None), first


class TsharkReader:
    """Streams the TCP segments of any capture tshark reads, with
    :class:`~handshake_score.sources.CaptureReader`'s interface (iteration,
    :meth:`batches`, and after them ``packets``, ``segments``, ``first_ns``, ...).
    Slower: Wireshark dissects every frame completely. ``truncated_at`` stays None
    (tshark does not say where a file is cut); ``cut_short`` says that it was."""

    kind = "tshark"

    def __init__(self, path: str | os.PathLike, strict: bool = False, decapsulation: Decapsulation = DEFAULT,
                 tshark: str | None = None):
        self.path = os.fspath(path)
        self.strict = strict
        self.decapsulation = decapsulation
        self.packets = self.segments = self.protected = 0
        self.bytes_read = 0  # how far tshark has read (Linux: its file position), the size once done
        self.first_ns: int | None = None
        self.truncated_at: int | None = None
        self.cut_short = False
        self.process: subprocess.Popen | None = None
        try:
            self.size = os.stat(self.path).st_size
            with open(self.path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            from . import _os_problem

            raise CaptureError(self.path, _os_problem(e)) from None
        number = int.from_bytes(magic, "little")
        self.format = "pcapng" if number == SHB else "pcap" if number in MAGICS else "other"
        self.tshark = tshark or tshark_or_say(f"{self.path}: --reader tshark reads through tshark")

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield batch.select() if len(batch) else np.zeros(0, SEGMENT)

    def batches(self) -> Iterator[TcpBatch]:
        """One batch per chunk of tshark's output. Stopping early (closing the
        generator) stops tshark and reaps it."""
        from ..capture.dumpcap import c_locale
        from ..capture.session import stop_with_parent

        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: tshark never blocks on it
            self.process = proc = subprocess.Popen(command(self.tshark, self.path, self.decapsulation),
                                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                                   env=c_locale(), preexec_fn=stop_with_parent(os.getpid()))
            try:
                while lines := proc.stdout.readlines(CHUNK_BYTES):
                    segments, where, first = segments_of(lines, self.decapsulation.context)
                    if self.first_ns is None:
                        self.first_ns = first
                    self.packets += len(lines)
                    self.segments += len(segments)
                    self.bytes_read = max(self.bytes_read, _position(proc.pid, self.path))
                    yield _batch(segments, len(lines), where)
                proc.wait()
            finally:
                if proc.poll() is None:  # the consumer stopped early
                    proc.terminate()
                    proc.wait()
                proc.stdout.close()
            errors.seek(0)
            self._check(proc.returncode, errors.read().decode("utf-8", "replace"))
        self.bytes_read = self.size

    def _check(self, returncode: int, text: str) -> None:
        lines = [ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.startswith(("Running as user", "tshark: Lua:"))]
        said = " ".join(lines)
        if "cut short in the middle of a packet" in said:
            self.cut_short = True
            if self.strict:
                raise CaptureError(self.path, "cut short in the middle of a record (tshark does not say where)")
            return
        if returncode != 0 or lines:
            problem = said.removeprefix("tshark: ").replace(f'The file "{self.path}" ', "").rstrip(".")
            raise CaptureError(self.path, f"tshark: {problem or f'exited with status {returncode}'}")


def _position(pid: int, path: str) -> int:
    """How far process ``pid`` has read ``path``: its file offset, from Linux's /proc
    (0 elsewhere, or when it cannot be seen), for a progress bar."""
    try:
        target = os.path.realpath(path)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])  # "pos:\t<offset>"
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _batch(segments: np.ndarray, packets: int, where: np.ndarray | None) -> TcpBatch:
    """A batch over ready-made segment rows."""
    return TcpBatch(segments["flags"], segments["sport"].astype(np.uint16), segments["dport"].astype(np.uint16),
                    segments["seq"], segments["ack"], lambda i: segments[np.asarray(i, np.int64)], packets,
                    context=None if where is None else where.__getitem__)
