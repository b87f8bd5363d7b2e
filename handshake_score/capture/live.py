"""Live packets: tcpdump in libpcap's immediate mode, its pcap stream read as it comes.

Every other way to get packets into Python as they pass holds them back:
dumpcap and tshark writing to a pipe by about 130 ms, pyshark's LiveCapture
by half a second; tcpdump ``-U --immediate-mode -w -`` delivers each packet
about 0.1 ms after its capture timestamp. The stream is read by the project's
own reader (:class:`~..sources.follow.FollowReader`, on a non-blocking pipe),
so live packets become the same :class:`~..segments.TcpBatch` a file gives.

With ``record``, every byte of the stream is also written to a file as it is
read, and that pcap is turned into pcapng (Wireshark's ``editcap``) when the
capture stops; the file appears under its name only then, complete.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

from ..errors import HandshakeScoreError
from ..files import check_writable
from ..segments import TcpBatch
from ..sources.decoding import DEFAULT, Decapsulation
from ..sources.follow import FollowReader
from .dumpcap import c_locale
from .options import DEFAULT_SNAPLEN, filter_for, is_nflog  # headers only, tunnels' too, as hs capture keeps
from .session import stop_with_parent


class _Tee:
    """A raw pipe that also writes what is read from it to ``copy``."""

    def __init__(self, raw, copy):
        self.raw, self.copy = raw, copy

    def readinto(self, b) -> int | None:
        n = self.raw.readinto(b)
        if n:
            self.copy.write(b[:n])
        return n

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.copy.write(data)
        return data

    def fileno(self) -> int:
        return self.raw.fileno()

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.raw.close()


class LiveCapture:
    """Packets from ``interface`` as they pass, through tcpdump.

    >>> with LiveCapture("eth0") as live:
    ...     for batch in live.batches(timeout_s=0.1):   # what arrived, or nothing after 0.1 s
    ...         tracker.feed_batch(batch)

    ``bpf`` None: the default filter for the interface (:func:`~.options.filter_for`:
    TCP and the tunnels ``decapsulation`` names; none on ``nflog:N``, which libpcap
    cannot filter); "" none.
    """

    def __init__(self, interface: str | None = None, bpf: str | None = None, snaplen: int = DEFAULT_SNAPLEN,
                 record: str | os.PathLike | None = None, force: bool = False,
                 decapsulation: Decapsulation = DEFAULT):
        self.interface, self.snaplen, self.decapsulation = interface, snaplen, decapsulation
        self.bpf = filter_for(interface, decapsulation) if bpf is None else bpf
        self.record = Path(record) if record is not None else None
        self.force = force
        if self.record is not None:
            check_writable(self.record, force)
        self.proc: subprocess.Popen | None = None
        self.reader: FollowReader | None = None
        self._copy = None
        self._raw_path: Path | None = None
        self.error = ""

    @property
    def filter_said(self) -> str:
        """The filter in a few words, for the line that says the capture started."""
        if not self.bpf:
            return "no filter: NFLOG, its nft rule chose the packets" if is_nflog(self.interface) else "everything"
        return "TCP, and inside tunnels" if self.bpf == filter_for(self.interface, self.decapsulation) else self.bpf

    def __enter__(self) -> LiveCapture:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        for _ in self.rest():
            pass
        self.close()

    def start(self) -> None:
        tcpdump = shutil.which("tcpdump")
        if tcpdump is None:
            raise HandshakeScoreError("hs play --live needs tcpdump (Debian: apt install tcpdump), "
                                      "for libpcap's immediate mode")
        # as root, tcpdump would switch to its own user once capturing, and that change
        # clears the parent-death signal: stay root, so it still stops if hs is killed
        # NFLOG: microsecond time stamps only (libpcap refuses nano), and no snap length: libpcap
        # sizes its netlink buffer by it and then loses the messages that do not fit (the nft
        # rule's own "snaplen" keeps packets short there)
        link = ["-s", str(self.snaplen), "--time-stamp-precision=nano"] if not is_nflog(self.interface) else []
        command = [tcpdump, *(["-Z", "root"] if os.geteuid() == 0 else []),
                   *(["-i", self.interface] if self.interface else []), "-U", "--immediate-mode", "-n", *link,
                   "-w", "-", *([self.bpf] if self.bpf else [])]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                     env=c_locale(), preexec_fn=stop_with_parent(os.getpid()))
        os.set_blocking(self.proc.stdout.fileno(), False)
        source = self.proc.stdout
        if self.record is not None:
            folder = self.record.parent
            folder.mkdir(parents=True, exist_ok=True)
            self._raw_path = folder / f".{self.record.name}.{os.getpid()}.pcap.part"
            self._copy = open(self._raw_path, "wb")
            source = _Tee(self.proc.stdout, self._copy)
        self.reader = FollowReader(f"tcpdump -i {self.interface or '(its default)'}", f=source,
                                   decapsulation=self.decapsulation)
        self._wait_until_capturing()

    def _wait_until_capturing(self) -> None:
        """tcpdump says 'listening on' once it captures; before that, packets are missed."""
        err = self.proc.stderr
        seen = b""
        while b"listening on" not in seen:
            line = err.readline()
            if not line:
                self.proc.wait()
                said = seen.decode(errors="replace").strip().splitlines()
                self.error = said[-1] if said else f"exit status {self.proc.returncode}"
                self._discard()
                raise HandshakeScoreError(f"tcpdump cannot capture on {self.interface or 'its default interface'}: "
                                          f"{self.error}")
            seen += line

    def batches(self, timeout_s: float | None = None) -> Iterator[TcpBatch]:
        """The TCP segments that arrived since the last call, waiting up to ``timeout_s``
        for the first (None: until some come). Use each batch before asking for the next."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if ready:
            yield from self.reader.batches()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop tcpdump; it flushes and closes its output on SIGTERM. Then read :meth:`rest`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def rest(self) -> Iterator[TcpBatch]:
        """What tcpdump wrote before it stopped and was not read yet."""
        if self.proc is None or self.proc.stdout.closed:
            return
        os.set_blocking(self.proc.stdout.fileno(), True)
        yield from self.reader.batches()

    def close(self) -> None:
        """Close the pipe and finish the recording (pcapng, under its name only now)."""
        if self.proc is None:
            return
        self.stop()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc = None
        if self._copy is not None:
            self._copy.close()
            self._copy = None
            self._to_pcapng()

    def _to_pcapng(self) -> None:
        editcap = shutil.which("editcap")
        if editcap is None:
            self._discard()
            raise HandshakeScoreError("--record needs Wireshark's editcap (Debian: wireshark-common)")
        done = self._raw_path.with_suffix(".pcapng.part")
        r = subprocess.run([editcap, "-F", "pcapng", str(self._raw_path), str(done)], capture_output=True, text=True,
                           env=c_locale())
        self._raw_path.unlink(missing_ok=True)
        if r.returncode != 0:
            done.unlink(missing_ok=True)
            raise HandshakeScoreError(f"{self.record}: editcap could not write it: {r.stderr.strip()}")
        if not self.force and self.record.exists():
            done.unlink(missing_ok=True)
            check_writable(self.record, False)
        os.replace(done, self.record)

    def _discard(self) -> None:
        if self._copy is not None:
            self._copy.close()
            self._copy = None
        if self._raw_path is not None:
            self._raw_path.unlink(missing_ok=True)
