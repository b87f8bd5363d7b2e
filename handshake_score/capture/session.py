"""One recording: dumpcap started, followed, stopped cleanly and reaped."""

from __future__ import annotations

import ctypes
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import CaptureError, HandshakeScoreError
from ..files import OutputExistsError, check_writable
from ..sources.follow import FollowReader
from ..sources.ring import ring_files
from ..tracker import HandshakeTracker, Kind, Outcome
from .dumpcap import c_locale, find_dumpcap, list_interfaces, no_permission, reason, statistics
from .options import (DEFAULT_SNAPLEN, MIN_SNAPLEN, CaptureFailed, CaptureOptions, CaptureResult, Ring, Status,
                      default_output, filter_for, is_nflog)

STOP_WAIT_S = 10.0     # how long dumpcap gets to close its file once told to stop
POLL_S = 0.2

@dataclass
class _Plan:
    dumpcap: str
    interface: str
    output: Path       # what the user names: the file, or the ring's base name
    ring: Ring | None
    argv: list[str]
    write_to: Path     # what dumpcap is told (single file: a temporary name beside output)
    bpf: str           # the capture filter: the user's, or the default for the interface
    replaced: list[Path]  # what --force replaces once the capture has started


def _plan(opts: CaptureOptions) -> _Plan:
    if opts.duration is not None and not opts.duration > 0:
        raise HandshakeScoreError(f"--duration {opts.duration:g}: give a number of seconds above 0")
    if opts.packets is not None and opts.packets < 1:
        raise HandshakeScoreError(f"--packets {opts.packets}: give a number of packets above 0")
    if opts.snaplen and opts.snaplen < MIN_SNAPLEN:
        raise HandshakeScoreError(f"--snaplen {opts.snaplen}: at least {MIN_SNAPLEN} bytes, to keep the TCP header "
                                  f"({DEFAULT_SNAPLEN} keeps it inside tunnels too)")
    ring = Ring.parse(opts.ring) if isinstance(opts.ring, str) else opts.ring
    if opts.output is not None:  # what the user can fix without dumpcap, first
        _check_output(Path(opts.output), ring, opts.force)
    dumpcap = find_dumpcap()
    interface = _interface(opts.interface, dumpcap)
    output = Path(opts.output) if opts.output is not None else default_output(interface)
    _check_output(output, ring, opts.force)
    replaced = []
    if ring is not None:
        replaced = ring_files(output) + ([output] if output.exists() else [])
        write_to = output
    else:
        folder, name = os.path.split(output)
        write_to = Path(folder) / f".{name}.{secrets.token_hex(4)}.part"
    bpf = filter_for(interface, opts.decapsulation) if opts.bpf is None else opts.bpf
    argv = [dumpcap, "-i", interface, "-n", "-q", "-w", os.path.abspath(write_to)]
    if bpf:
        argv += ["-f", bpf]
    if opts.snaplen and not is_nflog(interface):  # libpcap loses NFLOG messages longer than it
        argv += ["-s", str(opts.snaplen)]
    if opts.duration is not None:
        argv += ["-a", f"duration:{opts.duration:g}"]
    if opts.packets is not None:
        argv += ["-c", str(opts.packets)]
    if ring is not None:
        argv += ["-b", f"filesize:{ring.kilobytes}", "-b", f"files:{ring.files}"]
    return _Plan(dumpcap, interface, output, ring, argv, write_to, bpf, replaced)


def _check_output(output: Path, ring: Ring | None, force: bool) -> None:
    check_writable(output, force)
    old = ring_files(output) if ring is not None else []
    if old and not force:
        raise HandshakeScoreError(f"{output}: a ring buffer of that name exists ({len(old)} files, such as "
                                  f"{old[0].name}); use --force to replace it, or choose another name")


def _interface(name: str | None, dumpcap: str) -> str:
    if name is not None and not name.isdigit():
        return name
    found = list_interfaces(dumpcap)
    if name is None:
        for iface in found:
            if not iface.loopback:
                return iface.name
        if found:
            return found[0].name
        raise HandshakeScoreError("dumpcap lists no interface to capture on")
    for iface in found:
        if iface.number == int(name):
            return iface.name
    raise HandshakeScoreError(f"no interface number {name} (hs capture --list shows them)")


class _Signals:
    """Ctrl-C, SIGTERM and SIGHUP ask the capture to stop (dumpcap then closes its file),
    instead of unwinding at whatever line they land on. Signals ignored when we started
    (nohup, a background job) stay ignored."""

    NAMES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self._old: dict = {}

    def _got(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self):
        if self.enabled:
            for sig in self.NAMES:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._got)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Lines(threading.Thread):
    """dumpcap's stderr, line by line (a full pipe must never stall it). Each file dumpcap
    names ("File: ...") is opened the moment it is named: a fast ring buffer deletes
    its oldest file a few files later, and what is open can still be read."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.queue, self.text = stream, queue.Queue(), []

    def run(self):
        with self.stream:
            for raw in self.stream:
                line = raw.decode(errors="replace").rstrip("\r\n")
                opened = None
                if line.startswith("File: "):
                    try:
                        opened = open(line[6:], "rb", buffering=0)
                    except OSError:
                        pass  # gone already: counted as missed
                self.queue.put((line, opened))

    def new(self) -> list[tuple[str, BinaryIO | None]]:
        """The files named since the last call, with their open file objects (or None);
        every line is kept in ``text``."""
        files = []
        while True:
            try:
                line, opened = self.queue.get_nowait()
            except queue.Empty:
                return files
            self.text.append(line)
            if line.startswith("File: "):
                files.append((line[6:], opened))


def record(opts: CaptureOptions, on_start: Callable[[CaptureResult], None] | None = None,
           on_progress: Callable[[Status], None] | None = None, handle_signals: bool = True,
           stop: threading.Event | None = None) -> CaptureResult:
    """Record until the duration or packet count is reached, or until stopped: by
    ``stop`` being set, or (``handle_signals``, from the main thread) by SIGINT,
    SIGTERM or SIGHUP. ``on_start`` gets the result-to-be once dumpcap is capturing;
    ``on_progress`` a :class:`Status` five times a second.

    Raises :class:`~.errors.HandshakeScoreError` with one line if the capture cannot
    start (dumpcap missing, no permission, unknown interface, bad filter, output
    exists), and :class:`CaptureFailed`, carrying the result, if dumpcap fails
    after starting (the disk full: what was captured is kept)."""
    plan = _plan(opts)
    with _Signals(handle_signals) as signals:
        return _Run(plan, opts, signals, stop).run(on_start, on_progress)


class _Run:
    """One dumpcap child, from its start to its reaping, and the files it writes."""

    def __init__(self, plan: _Plan, opts: CaptureOptions, signals: _Signals, stop: threading.Event | None):
        self.plan, self.opts, self.signals, self.stop = plan, opts, signals, stop
        self.result = CaptureResult(plan.interface, plan.output, opts, plan.bpf)
        self.tracker = HandshakeTracker()
        self.current: FollowReader | None = None  # the file being written
        self.done = [0, 0, 0]  # packets, segments, bytes of the files before it
        self.paths: set[str] = set()
        self.started = time.monotonic()
        self.told: float | None = None  # when dumpcap was told to stop

    def stop_asked(self) -> bool:
        return self.signals.received is not None or (self.stop is not None and self.stop.is_set())

    def run(self, on_start, on_progress) -> CaptureResult:
        plan, result = self.plan, self.result
        folder = plan.output.parent
        made_folder = not folder.is_dir()
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise HandshakeScoreError(f"{folder}: cannot create the folder: {e.strerror or e}") from None
        try:
            proc = subprocess.Popen(plan.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=c_locale(), preexec_fn=stop_with_parent(os.getpid()))
        except PermissionError:  # not in the group that may run it (Debian's setuid-less setup)
            _remove_folder(folder, made_folder)
            raise HandshakeScoreError(no_permission(plan.interface, plan.dumpcap)) from None
        self.proc, self.lines = proc, _Lines(proc.stderr)
        self.lines.start()
        try:
            first = self.wait_for_start()
            if first is None:  # dumpcap never started
                if plan.ring is None:
                    plan.write_to.unlink(missing_ok=True)
                _remove_folder(folder, made_folder)
                if self.stop_asked():
                    result.stopped = self.stop_name()
                    return result
                raise HandshakeScoreError(self.reason())
            if plan.ring is None:  # the old file (--force) is replaced only now that the new one is there
                if not self.opts.force and plan.output.exists():
                    raise OutputExistsError(plan.output)
                os.replace(plan.write_to, plan.output)
                first = [(str(plan.output), opened) for _, opened in first]
            else:
                for old in plan.replaced:
                    old.unlink(missing_ok=True)
            if on_start is not None:
                on_start(result)
            self.follow(first)
            while proc.poll() is None:
                self.follow(self.announced())
                if on_progress is not None:
                    on_progress(self.status())
                if self.told is None and self.stop_asked():
                    proc.send_signal(signal.SIGINT)  # dumpcap's clean stop: it closes the file
                    self.told = time.monotonic()
                elif self.told is not None and time.monotonic() - self.told > STOP_WAIT_S:
                    proc.kill()
                    result.killed = True
                time.sleep(POLL_S)
            self.reap()
            self.follow(self.announced())
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            self.reap()
            if plan.ring is None and plan.write_to.exists():  # stopped before the rename
                plan.write_to.unlink(missing_ok=True)
            if self.current is not None:
                self.current.close()
        return self.finish()

    def wait_for_start(self) -> list[tuple[str, BinaryIO | None]] | None:
        """The files dumpcap announces once it is capturing ("Capturing on" comes even
        before a bad filter fails), or None if it ended without starting."""
        while True:
            named = self.announced()
            if named:
                return named
            if self.proc.poll() is not None:
                self.reap()
                return self.announced() or None
            if self.stop_asked() and self.told is None:
                self.proc.send_signal(signal.SIGINT)
                self.told = time.monotonic()
            time.sleep(0.02)

    def announced(self) -> list[tuple[str, BinaryIO | None]]:
        return self.lines.new()

    def follow(self, files: list[tuple[str, BinaryIO | None]]) -> None:
        """Read what was appended to the file being written; move on to the files
        named since (a ring's next files), reading the one before to its end."""
        for name, opened in files:
            if self.current is not None:
                self.drain()
                self.close_current()
            self.current = FollowReader(name, f=opened, decapsulation=self.opts.decapsulation)
            self.paths.add(os.path.abspath(name))
            self.result.written += 1
            if opened is None:
                self.result.missed.append(Path(name))  # the ring deleted it before it could be opened
        if self.current is not None:
            self.drain()

    def drain(self) -> None:
        if self.result.not_followed is not None:
            return
        try:
            if not self.current.open():
                return
            for batch in self.current.batches():
                self.tracker.feed_batch(batch)
        except CaptureError as e:  # a link type we cannot decode, say: the capture goes on regardless
            self.result.not_followed = e.problem

    def close_current(self) -> None:
        f = self.current
        self.done = [self.done[0] + f.packets, self.done[1] + f.segments, self.done[2] + f.size]
        f.close()

    def status(self) -> Status:
        elapsed = time.monotonic() - self.started
        duration = self.opts.duration
        f = self.current
        notes, outcomes = self.tracker.notes, self.tracker.outcomes
        return Status(elapsed, None if duration is None else max(duration - elapsed, 0.0),
                      self.done[0] + (f.packets if f else 0), notes[Kind.SYN], notes[Kind.ACK],
                      outcomes[Outcome.REFUSED], self.done[2] + (f.size if f else 0), self.result.written,
                      Path(f.path) if f else None)

    def reap(self) -> None:
        """Wait for dumpcap (killing it if it will not stop) and for the end of its stderr."""
        try:
            self.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.result.killed = True
            self.proc.wait()
        self.lines.join(timeout=5)

    def stop_name(self) -> str:
        received = self.signals.received
        return signal.Signals(received).name if received is not None else "stop"

    def reason(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0 and not any(ln.startswith("dumpcap: ") for ln in self.lines.text):
            return f"dumpcap was ended by {signal.Signals(-code).name}"
        return reason("\n".join(self.lines.text), self.plan.interface, self.plan.bpf, self.plan.dumpcap,
                       self.plan.output)

    def finish(self) -> CaptureResult:
        plan, result, tracker, last = self.plan, self.result, self.tracker, self.current
        tracker.close()
        result.seconds = time.monotonic() - self.started
        result.notes, result.handshakes = dict(tracker.notes), dict(tracker.outcomes)
        if last is not None:
            self.close_current()
            if last.pending and result.not_followed is None and os.path.exists(last.path):
                os.truncate(last.path, last.whole_bytes)  # a record cut in half: keep what is whole
                result.cut_bytes = last.pending
        result.packets, result.segments = self.done[0], self.done[1]
        if plan.ring is not None:
            files = [f for f in ring_files(plan.output) if os.path.abspath(f) in self.paths]
        else:
            files = [plan.output] if plan.output.exists() else []
        result.files = files
        result.size = sum(f.stat().st_size for f in files)
        statistics(self.lines.text, result)
        code = self.proc.returncode
        if self.stop_asked():
            result.stopped = self.stop_name()
        elif code == 0 and self.opts.packets is not None and result.packets >= self.opts.packets:
            result.stopped = "packets"
        elif code == 0 and self.opts.duration is not None:
            result.stopped = "duration"
        else:
            result.stopped = "dumpcap"
        if code != 0 and not result.killed:
            reason = self.reason()
            if self.told is not None and "the disk is full" not in reason:
                return result  # told to stop, and stopped: whatever it said on the way out
            result.error = reason
            where = str(files[-1]) if files else str(plan.output)
            if "the disk is full" in reason:
                raise CaptureFailed(f"{where}: the disk is full: the capture stopped there; the "
                                    f"{result.packets:,} packets captured before it are kept", result)
            raise CaptureFailed(f"{reason}; the {result.packets:,} packets captured before it are kept "
                                f"in {where}", result)
        return result


def stop_with_parent(parent: int):
    """What a capture child (dumpcap, tcpdump) runs before it starts: should hs die without stopping it
    (``kill -9``), the kernel sends dumpcap SIGINT, its clean stop, so no capture runs on
    unwatched. Linux only; exec clears it for a dumpcap with file capabilities (the
    non-root setup), where ``kill -9`` of hs still leaves dumpcap capturing."""
    if not sys.platform.startswith("linux"):
        return None

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # hs died before that took effect
            os.kill(os.getpid(), signal.SIGINT)

    return set_parent_death_signal


def _remove_folder(folder: Path, made: bool) -> None:
    if made:
        try:
            folder.rmdir()
        except OSError:
            pass
