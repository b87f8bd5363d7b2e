"""The coil driver: a small process of its own that holds the pins and times every pulse.

A pulse timed by a Python thread ends late when that thread is starved: on a
machine whose cores are busy (a Pi that also captures and scores), the
scheduler may not run it for tens of milliseconds, and a coil left on that long
overheats. So the pins live in a child process (``python -m
handshake_score.play.coildriver``) that asks for real-time scheduling
(``SCHED_FIFO``, which runs it ahead of every ordinary process the moment it
wakes), locks its memory, and does nothing but strike: it sleeps until the next
pin change and makes it itself. hs hands it each strike a moment ahead
(:meth:`CoilDriver.strike_at`), with its deadline on the shared monotonic
clock, and reads back whether the coil struck.

The driver holds the hard limits on the pins' actual times, whatever it is
asked: no pulse longer than :data:`~.coil.MAX_ON_NS`, no strike within a
coil's re-strike interval of its last one, at most :data:`~.coil.DUTY_CAP` on
over any second. A strike that comes too soon waits for its moment if that is
within :data:`HOLD_NS` (or the performer's defer limit), and is refused
otherwise. Every coil goes off when hs says so, when hs's pipe closes (hs
ended, however), when hs dies (the parent-death signal) and on SIGTERM.
Where real-time scheduling is refused, :attr:`CoilDriver.realtime` says why,
and the limits then hold only as well as the machine's load allows.

Both ends of the protocol are here. hs -> driver: :data:`COMMAND` records.
Driver -> hs: frames of a type byte, a length and a payload.
"""

from __future__ import annotations

import ctypes
import errno
import heapq
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings

from ..errors import HandshakeScoreError
from .coil import DUTY_CAP, MAX_ON_NS, CoilRules

COMMAND = struct.Struct("<BBHIqq")  # op, coil, (pad), strike number, pulse ns, due (perf_counter_ns; 0: now)
STRIKE, SILENCE, QUIT = b"S"[0], b"X"[0], b"Q"[0]
FRAME = struct.Struct("<BI")        # type, payload length
VERDICT = struct.Struct("<IBq")     # strike number, struck (1) or refused (0), pin time (ns)
READY, FAILED, ANSWER, LOG, DONE = (c[0] for c in (b"R", b"F", b"V", b"L", b"D"))

PRIORITY = 50                 # SCHED_FIFO priority: above every ordinary process, below the kernel's own threads
SPIN_NS = 500_000             # sleep until this long before a pin change, then spin to it
HOLD_NS = 2_000_000           # a strike this close to allowed waits for its moment instead of being refused
CUT_NS = MAX_ON_NS - 5_000_000  # no pulse is timed longer than this, whatever it is asked
START_TIMEOUT_S = 20.0        # the driver's start: Python, gpiozero, the pins
ANSWER_TIMEOUT_S = 0.5        # the longest a strike waits for the driver's word before counting it refused
ANSWER_SPIN_S = 0.001         # for the first of it, it polls (the word comes microseconds after the pin)
LOG_ROWS = 40_000             # pin changes per log frame


# --------------------------------------------------------------------------- hs's end

class CoilDriver:
    """hs's handle on the driver process for ``pins`` (BCM numbers), each with its
    re-strike interval in ``restrike_ns``. ``dry_run``: gpiozero's MockFactory, every
    pin change kept for :meth:`pin_log`; otherwise gpiozero picks the pin library (as
    ``GPIOZERO_PIN_FACTORY`` says). ``defer_limit_ns``: how late a strike too soon for
    its coil may still be made. Raises :class:`HandshakeScoreError` when a pin cannot be had.

    :meth:`strike_at` and :meth:`answer` are for one thread (the conductor, or the live
    loop); :meth:`silence` may come from any thread at any time."""

    def __init__(self, pins: list[int], restrike_ns: list[int], *, dry_run: bool = False, defer_limit_ns: int = 0):
        setup = {"pins": pins, "restrike_ns": restrike_ns, "dry_run": dry_run,
                 "hold_ns": max(HOLD_NS, int(defer_limit_ns)), "parent": os.getpid()}
        # its stderr to a file, never a pipe: a full pipe would stop the driver mid-pulse
        self._said = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(setup)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._said, close_fds=True)
        self._out, self._in = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        self._buffer = bytearray()
        self._answers: dict[int, int | bool] = {}
        self._reading = threading.Lock()
        self._number = 0
        self.closed = False
        self.log: list[tuple[int, int, int]] = []
        self.stats: dict = {}
        kind, payload = self._frame(START_TIMEOUT_S)
        if kind != READY:
            self._end()
            raise HandshakeScoreError(payload.decode(errors="replace") if kind == FAILED else
                                      "the coil driver did not start" + self._why())
        ready = json.loads(payload)
        self.realtime: str | None = ready["realtime"]  # None: granted; else why not

    def strike_at(self, coil: int, pulse_ns: int, due_ns: int = 0) -> int:
        """Ask for a strike of ``coil`` at ``due_ns`` (``perf_counter_ns``; 0: at once).
        Returns its number, for :meth:`answer`."""
        self._number = number = (self._number + 1) & 0xFFFFFFFF
        self._send(COMMAND.pack(STRIKE, coil, 0, number, pulse_ns, due_ns))
        return number

    def answer(self, number: int, timeout_s: float = ANSWER_TIMEOUT_S) -> int | bool:
        """When strike ``number`` was made (``perf_counter_ns`` just before its pin changed), or
        False if it was refused; waits for it (it is made at its due time)."""
        deadline = time.monotonic() + timeout_s
        with self._reading:
            while number not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False  # the driver is held up: counted refused; its late word is dropped
                kind, payload = self._frame(left, ANSWER_SPIN_S)
                if kind is None:
                    continue
                if kind == ANSWER:
                    n, struck, at = VERDICT.unpack(payload)
                    self._answers[n] = at if struck else False
            struck = self._answers.pop(number)
            if self._answers:  # words that came after their strike stopped waiting
                self._answers = {n: s for n, s in self._answers.items() if n > number}
            return struck

    def silence(self) -> None:
        """Every coil off now, and no strike after this one. Safe from any thread, any number of times."""
        if not self.closed:
            self._send(COMMAND.pack(SILENCE, 0, 0, 0, 0, 0), quiet=True)

    def close(self) -> None:
        """Every coil off, the driver ended, its pin log and counts read (:attr:`log`, :attr:`stats`)."""
        if self.closed:
            return
        self.silence()
        self._send(COMMAND.pack(QUIT, 0, 0, 0, 0, 0), quiet=True)
        got = self._reading.acquire(timeout=2.0)  # a strike stuck waiting gives way within its timeout
        try:
            while got:
                kind, payload = self._frame(5.0)
                if kind == LOG:
                    rows = memoryview(payload).cast("q")
                    self.log.extend(zip(rows[0::3], rows[1::3], rows[2::3]))
                elif kind == DONE:
                    self.stats = json.loads(payload)
                    break
                elif kind != ANSWER:
                    break
        except HandshakeScoreError:
            pass
        finally:
            if got:
                self._reading.release()
            self.closed = True
            self._end()

    def _send(self, command: bytes, quiet: bool = False) -> None:
        try:
            os.write(self._out, command)  # one record, under PIPE_BUF: never interleaved with another thread's
        except OSError:
            if not quiet:
                raise HandshakeScoreError("the coil driver stopped" + self._why()) from None

    def _frame(self, timeout_s: float, spin_s: float = 0.0) -> tuple[int | None, bytes]:
        """The next frame from the driver, (None, b"") after ``timeout_s``; raises if it ended.
        For the first ``spin_s`` it polls instead of sleeping: waking a sleeping thread costs
        more than the driver takes to answer a strike due now."""
        now = time.monotonic()
        deadline, spin_until = now + timeout_s, now + min(spin_s, timeout_s)
        while True:
            if len(self._buffer) >= FRAME.size:
                kind, size = FRAME.unpack_from(self._buffer)
                if len(self._buffer) >= FRAME.size + size:
                    payload = bytes(self._buffer[FRAME.size:FRAME.size + size])
                    del self._buffer[:FRAME.size + size]
                    return kind, payload
            try:
                chunk = os.read(self._in, 1 << 20)
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    return None, b""
                if now >= spin_until:
                    select.select([self._in], [], [], deadline - now)
                continue
            if not chunk:
                raise HandshakeScoreError("the coil driver stopped" + self._why())
            self._buffer += chunk

    def _why(self) -> str:
        try:
            self.proc.wait(timeout=1.0)
            self._said.seek(0)
            said = self._said.read().decode(errors="replace").strip().splitlines()
        except (subprocess.TimeoutExpired, OSError, ValueError):
            said = []
        return f": {said[-1]}" if said else f" (exit {self.proc.returncode})" if self.proc.returncode is not None else ""

    def _end(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._said.close()


# --------------------------------------------------------------------------- the driver's end

class _Coil:
    """One pin, its rules on measured times, and the pulse it is in."""

    def __init__(self, bcm: int, device, restrike_ns: int):
        self.bcm, self.device = bcm, device
        self.rules = CoilRules(restrike_ns, DUTY_CAP)
        self.on_since = 0   # before the pin went on, perf_counter_ns; 0 while off
        self.off_at = 0     # when this pulse ends
        self.armed = 0      # the strike warm() found allowed at its moment

    def on(self, pulse_ns: int, clock) -> int:
        before = clock()
        self.device.on()
        after = clock()
        self.on_since, self.off_at = before, before + min(pulse_ns, CUT_NS)
        # restrike from the latest the pin can have risen, duty from the earliest: both hold on the pin's own times
        self.rules.record(before, self.off_at)
        self.rules.last_start = after
        return before

    def off(self, clock) -> int:
        if not self.on_since:
            return 0
        self.device.off()
        end = clock()
        self.rules.pulses[-1] = (self.rules.pulses[-1][0], end)
        width, self.on_since = end - self.on_since, 0
        return width


class _Driver:
    def __init__(self, coils: list[_Coil], hold_ns: int, out: int):
        self.coils, self.hold_ns, self.out = coils, hold_ns, out
        self.due: list[tuple[int, int, int, int, int]] = []  # (at, asked at, number, coil, pulse)
        self.closed = False
        self.struck = self.refused = self.held = self.late = self.unsaid = 0
        self.longest = 0

    def send(self, kind: int, payload: bytes) -> None:
        try:
            os.write(self.out, FRAME.pack(kind, len(payload)) + payload)
        except BlockingIOError:
            # hs is not reading: its strike will count the word as lost, and no coil waits for it
            # (a frame under PIPE_BUF is written whole or not at all)
            self.unsaid += 1
        except BrokenPipeError:
            self.all_off()

    def answer(self, number: int, struck: bool, at: int) -> None:
        if number:
            self.send(ANSWER, VERDICT.pack(number, int(struck), at))

    def all_off(self) -> None:
        clock = time.perf_counter_ns
        for c in self.coils:
            self._off(c, clock)

    def silence(self) -> None:
        self.all_off()
        self.closed = True
        for _, _, number, _, _ in self.due:
            self.answer(number, False, 0)
            self.refused += 1
        self.due.clear()

    def command(self, op: int, coil: int, number: int, pulse_ns: int, due_ns: int, now: int) -> bool:
        """Take one command, read at ``now``; False once told to quit."""
        if op == STRIKE:
            if self.closed or coil >= len(self.coils):
                self.refused += 1
                self.answer(number, False, 0)
            else:
                asked = due_ns or now
                heapq.heappush(self.due, (asked, asked, number, coil, pulse_ns))
        elif op == SILENCE:
            self.silence()
        elif op == QUIT:
            return False
        return True

    def warm(self) -> None:
        """Just before the next strike: check its limits now, for its moment, and write its pin
        off (it is off), so that at the deadline only the pin change is left to do."""
        if self.due:
            at, asked, number, k, pulse = self.due[0]
            coil = self.coils[k]
            if not coil.on_since:
                # allowed at its moment, allowed at any later one: pulses only leave the window
                coil.armed = number if coil.rules.earliest(at, pulse) == at else 0
                coil.device.off()

    def next_change(self) -> int | None:
        ends = [c.off_at for c in self.coils if c.on_since]
        if self.due:
            ends.append(self.due[0][0])
        return min(ends) if ends else None

    def act(self, now: int, clock) -> None:
        """Every pin change due by ``now``: pulses that end first, then strikes."""
        for c in self.coils:
            if c.on_since and c.off_at <= now:
                self._off(c, clock)
        while self.due and self.due[0][0] <= now:
            _, asked, number, k, pulse = heapq.heappop(self.due)
            coil = self.coils[k]
            armed, coil.armed = coil.armed == number and not coil.on_since, 0
            allowed = now if armed else coil.rules.earliest(now, pulse)  # on the pins' own times
            if allowed > now:
                if allowed - asked <= self.hold_ns:
                    self.held += 1
                    heapq.heappush(self.due, (allowed, asked, number, k, pulse))
                else:
                    self.refused += 1
                    self.answer(number, False, 0)
                continue
            self.struck += 1
            self.answer(number, True, coil.on(pulse, clock))

    def _off(self, c: _Coil, clock) -> None:
        width = c.off(clock)
        if width > self.longest:
            self.longest = width
        if width > MAX_ON_NS:
            self.late += 1


def _pins(setup: dict):
    from gpiozero import DigitalOutputDevice
    from gpiozero.exc import BadPinFactory, GPIOZeroError

    factory = None
    if setup["dry_run"]:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory(pin_class=_rehearsal_pin())
    devices = []
    pins = setup["pins"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero warns as it tries each pin library in turn
            for pin in pins:
                devices.append(DigitalOutputDevice(pin, initial_value=False, pin_factory=factory))
    except BadPinFactory:
        raise HandshakeScoreError("no GPIO pins here: gpiozero found no pin library (lgpio on a Raspberry Pi); "
                                  "--dry-run rehearses on gpiozero's MockFactory") from None
    except ImportError as e:  # GPIOZERO_PIN_FACTORY names a pin library that is not installed
        raise HandshakeScoreError(f"gpiozero cannot load its pin library: {e}") from None
    except (GPIOZeroError, OSError, RuntimeError) as e:
        raise HandshakeScoreError(f"pin {pins[len(devices)]}: {e}") from None
    finally:
        if len(devices) < len(pins):
            for d in devices:
                d.close()
    return devices


def _rehearsal_pin():
    from gpiozero.pins.mock import MockPin

    class RehearsalPin(MockPin):
        """gpiozero's MockPin, also keeping each change as (perf_counter_ns, state), on hs's
        clock (the monotonic clock every process shares), for ``hs play --dry-run --pin-log``."""

        def __init__(self, factory, info):
            self.changes: list[tuple[int, int]] = []
            super().__init__(factory, info)

        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed:
                self.changes.append((time.perf_counter_ns(), int(value)))
            return changed

    return RehearsalPin


def _realtime() -> str | None:
    """Ask for SCHED_FIFO and locked memory; None when granted, else why not."""
    try:
        top = PRIORITY if os.geteuid() == 0 else min(PRIORITY, _rtprio_limit())
        if top < 1:
            raise PermissionError(errno.EPERM, "no real-time priority allowed (RLIMIT_RTPRIO is 0)")
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(top))
    except (OSError, AttributeError) as e:
        return getattr(e, "strerror", None) or str(e)
    try:  # a page fault mid-pulse is a delay too; where no limit holds (root), future pages are locked as well
        ctypes.CDLL(None, use_errno=True).mlockall(3 if os.geteuid() == 0 else 1)  # MCL_CURRENT | MCL_FUTURE
    except (OSError, AttributeError):
        pass
    return None


def _rtprio_limit() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return PRIORITY if soft == resource.RLIM_INFINITY else int(soft)


def serve(setup: dict, commands: int = 0, out: int = 1) -> int:
    """The driver's life: open the pins, say ready, strike until told to quit or hs is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches hs, which silences us in order
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: hs gone, coils off
    try:
        devices = _pins(setup)
    except HandshakeScoreError as e:
        os.write(out, FRAME.pack(FAILED, len(str(e).encode())) + str(e).encode())
        return 2
    coils = [_Coil(*c) for c in zip(setup["pins"], devices, setup["restrike_ns"])]
    driver = _Driver(coils, setup["hold_ns"], out)
    signal.signal(signal.SIGTERM, lambda *_: driver.silence())
    if os.getppid() != setup["parent"]:  # hs died before the parent-death signal was set
        driver.silence()
        return 0
    realtime = _realtime()
    driver.send(READY, json.dumps({"realtime": realtime}).encode())
    os.set_blocking(out, False)  # from now on a pin change never waits for hs to read
    clock, pending = time.perf_counter_ns, bytearray()
    try:
        while True:
            change = driver.next_change()
            now = clock()
            wait = None if change is None else (change - now - SPIN_NS) / 1e9
            if wait is None or wait > 0:
                readable = select.select([commands], [], [], wait)[0]
            else:
                readable = select.select([commands], [], [], 0)[0]
                if not readable and change is not None:
                    driver.warm()
                    while clock() < change:
                        pass
            if readable:
                chunk = os.read(commands, 65536)
                if not chunk:
                    break  # hs ended: its pipe closed
                pending += chunk
                usable = len(pending) - len(pending) % COMMAND.size
                going = True
                now = clock()
                for op, coil, _, number, pulse, due in COMMAND.iter_unpack(bytes(pending[:usable])):
                    going = driver.command(op, coil, number, pulse, due, now) and going
                del pending[:usable]
                if not going:
                    break
            driver.act(clock(), clock)
    finally:
        driver.all_off()
        driver.closed = True
    _hand_back(driver, devices)
    return 0


def _hand_back(driver: _Driver, devices) -> None:
    os.set_blocking(driver.out, True)  # every coil is off: now the log may wait for hs
    rows = sorted((c.bcm, t, v) for c in driver.coils for t, v in getattr(c.device.pin, "changes", ()))
    for i in range(0, len(rows), LOG_ROWS):
        flat = [x for row in rows[i:i + LOG_ROWS] for x in row]
        driver.send(LOG, struct.pack(f"<{len(flat)}q", *flat))
    for d in devices:
        d.close()
    driver.send(DONE, json.dumps({"struck": driver.struck, "refused": driver.refused, "held": driver.held,
                                  "late": driver.late, "longest_ns": driver.longest, "unsaid": driver.unsaid}).encode())


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.argv[1]), sys.stdin.fileno(), sys.stdout.fileno()))
